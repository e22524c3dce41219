//! One incoming connection: handshake, offer, consent, then the data pipeline
//! that writes, hashes and verifies files, and the final status.
//!
//! ```text
//!  socket ──► reader task (frames, idle timeout) ──► bounded channel of batches ──►
//!      writer thread (open record, BLAKE3, write partial, verify, fsync, rename)
//!      small files:  (open record, BLAKE3, write partial, verify) x N, syncfs, renames
//! ```
//!
//! A file appears under its final name only after its authenticated FileEnd
//! matched size and hash and its content is on disk; until then it is
//! `<name>.<key>.lspart` (see [`fsutil::resumable`]). Existing files are never
//! overwritten: a free name such as `report (1).pdf` is chosen.
//!
//! Resume: a partial left by an interrupted transfer of the same file from
//! the same sender is offered back in the Answer (its length and BLAKE3); the
//! sender's Resume record says, per file, whether its own prefix matches. Only
//! then does the rest cross the wire.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use localstream_proto::handshake::Config as HandshakeConfig;
use localstream_proto::names::escape_for_terminal;
use localstream_proto::record::{MAX_RECORD_BODY, RecordType};
use localstream_proto::transfer::fsm::{self, Accepted, Batches, Deciding, Done};
use localstream_proto::transfer::{FileDecision, MAX_RESUMED, Manifest, OfferEntry};
use localstream_proto::{
    Error as ProtoError, Handshake, LocalIdentity, Opener, PeerIdentity, Sas, Status,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::compress;
use crate::config::Destination;
use crate::conn::{self, BufPool, FrameReader, IDLE_TIMEOUT, RawFrame, RecordWriter};
use crate::consent::{Gate, Ruling, Standing};
use crate::error::{Error, Result, TransferError, TrustError};
use crate::event::{
    Checking, EntryInfo, Event, Events, Notice, OFFER_EVENT_ENTRIES, Progress, Side,
};
use crate::fsutil;
use crate::fsutil::resumable::{self, Resumable};
use crate::identity::short_fingerprint;
use crate::label::PeerLabel;
use crate::store::{Direction, PeerStore, Trust};
use crate::trust;
use crate::units::{human_bytes, summary};

mod offer;
mod plan;
mod write;
pub use offer::{
    MAX_OFFERS_PER_PEER, MAX_STRANGER_OFFERS, OFFER_DEADLINE, OfferSlots, PRE_CONSENT_BYTES,
    SLOT_WAIT,
};
use write::write_files;

/// Batches of frames buffered between the socket reader and the file writer.
const PIPELINE_DEPTH: usize = 8;
/// A batch of frames is passed on once it holds this many bytes (so a large
/// record goes alone)
const BATCH_BYTES: usize = 128 * 1024;
/// or this many frames.
const BATCH_FRAMES: usize = 64;
/// File bytes a sender must deliver within each [`IDLE_TIMEOUT`].
const MIN_PROGRESS: u64 = 4096;

/// What every connection of a listener shares.
#[derive(Debug)]
pub struct Shared {
    /// Our identity.
    pub identity: Arc<LocalIdentity>,
    /// Where files go.
    pub dir: PathBuf,
    /// Consent policy, and the questions to the front end.
    pub gate: Gate,
    /// Offers being collected or decided at once (each holds its manifest in memory).
    pub offers: offer::OfferSlots,
    /// What this node knows about its peers.
    pub store: PeerStore,
    /// Sessions running now, per peer.
    pub active: trust::ActiveSessions,
    /// Where events go.
    pub events: Events,
    /// The connections a front end may cancel.
    pub(crate) cancels: Arc<crate::cancel::Cancels>,
    /// Where the files go.
    pub destination: Destination,
    /// What happens to a file whose name is taken.
    pub on_collision: crate::config::OnCollision,
    /// When each blocked peer's refusal was last written to its history (at
    /// most once a minute: a blocked peer must not make us rewrite the store
    /// per connection).
    pub blocked_noted: std::sync::Mutex<HashMap<[u8; 16], Instant>>,
}

/// A finished (or refused) transfer.
#[derive(Debug)]
pub struct Received {
    /// Peer display name (escaped).
    pub peer: String,
    /// Whether every offered file arrived verified.
    pub ok: bool,
    /// Final paths of the files saved.
    pub saved: Vec<PathBuf>,
    /// Bytes offered.
    pub bytes: u64,
    /// Accepted files that did not arrive verified and saved, of how many.
    pub failed: (usize, usize),
}

/// How a connection ended.
#[derive(Debug)]
pub enum ConnEnd {
    /// It never got as far as an offer (garbage, failed handshake, idle).
    NoTransfer(Error),
    /// It made an offer; this is how the transfer went, and with whom.
    Transfer(Result<Received>, Box<Sender>),
}

/// Who sent a transfer.
#[derive(Debug, Clone)]
pub struct Sender {
    /// Which transfer it was.
    pub transfer: crate::event::TransferId,
    /// Who.
    pub peer: PeerLabel,
    /// Session id (hex).
    pub session: String,
}

/// One file as the receiver plans it.
#[derive(Debug)]
struct Planned {
    index: u32,
    /// Its wire path (checked; shown escaped, [`Planned::shown`]).
    path: String,
    /// Where its file name begins in `path`.
    name_at: usize,
    /// Its folder, shared by the files planned there.
    parent: Arc<Path>,
    size: u64,
    /// The sender's node id: with `path` and `size`, the key of its
    /// resumable partial file ([`Planned::partial_name`]).
    sender: [u8; 16],
    /// Make it executable.
    exec: bool,
    /// A stream of unknown size (`size` is 0).
    stream: bool,
    /// A text message: shown, not saved.
    text: bool,
    /// The sender's modification time, given to the file once it is complete.
    mtime: Option<localstream_proto::transfer::Mtime>,
    /// It replaces a file of its name (`--on-collision overwrite` or
    /// `skip-identical`), rather than taking a free name.
    replace: bool,
    /// The file of its name there looked the same (its size, and its time
    /// or policy) but was past the Answer's limit on held files: once
    /// received, it is compared with that one by hash, and an identical
    /// one is not saved again.
    same_maybe: bool,
    /// Its folder is inside the one this batch made under a hidden name
    /// (the index among the batch's [`fsutil::Staged`]), which that folder
    /// gets once its files are durable: a small file is then created under
    /// its own name at once.
    staged: Option<usize>,
}

impl Planned {
    /// Its name in `parent`.
    fn file_name(&self) -> &str {
        &self.path[self.name_at..]
    }

    /// Its path as a terminal may show it.
    fn shown(&self) -> std::borrow::Cow<'_, str> {
        localstream_proto::names::escaped_for_terminal(&self.path)
    }

    /// The name of its resumable partial file in `parent`.
    fn partial_name(&self) -> String {
        let key = resumable::partial_key(&self.sender, &self.path, self.size);
        resumable::partial_name(self.file_name(), &key)
    }
}

/// A prefix held from an earlier transfer, offered to the sender in the
/// Answer: its partial file (open and locked) and the hash of its bytes.
#[derive(Debug)]
struct Held {
    partial: Resumable,
    hasher: blake3::Hasher,
    /// `partial` is the file already in the folder under this name, the
    /// same size (`--on-collision skip-identical`), open for reading only:
    /// it is compared, never written to, truncated, renamed or removed.
    copy: bool,
}

/// A connection whose peer proved itself and was admitted: the listener
/// signed, the session keys are set.
struct Authenticated {
    reader: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: RecordWriter<tokio::net::tcp::OwnedWriteHalf>,
    opener: Opener,
    facts: Facts,
    /// Its place among the sessions, held to the end.
    slot: crate::admission::SessionSlot,
}

/// Who the peer of an authenticated connection is, and what we know of it.
struct Facts {
    peer: PeerIdentity,
    contacted: trust::Contacted,
    standing: Standing,
    session_id: [u8; 16],
    code: Sas,
    /// Key exchanges abandoned recently (someone may be grinding codes).
    abandoned: Option<crate::admission::AbandonedNote>,
    /// The session speaks protocol version 4: a Manifest, then batches.
    batches: bool,
}

/// Serves one connection to the end: authenticate, read the offer, the
/// transfer's stages, then its history and, on failure, the reason to the
/// sender. `concluding` is cancelled once the transfer is over and only
/// its end remains to be written (a shutdown then lets it finish).
pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    handshaking: crate::admission::Handshaking,
    concluding: CancellationToken,
) -> ConnEnd {
    let Authenticated {
        mut reader,
        mut writer,
        mut opener,
        facts,
        slot: _slot,
    } = match authenticate(stream, remote, &shared, handshaking).await {
        Ok(c) => c,
        Err(e) => return ConnEnd::NoTransfer(e),
    };
    let peer_id = uuid::Uuid::from_bytes(facts.peer.node_id);
    let session_hex = trust::session_hex(&facts.session_id);
    let _active = announce_session(&facts, &shared, remote, &session_hex);
    let trusted = facts.standing == Standing::Trusted;
    let read = offer::read_offer(
        &mut reader,
        &mut opener,
        &shared.offers,
        peer_id.into_bytes(),
        trusted,
        facts.batches,
    );
    let (offer, offer_slot, manifest) = match read.await {
        Ok(o) => o,
        Err(e) => {
            let message = match &e {
                Error::Transfer(TransferError::Refused { message, .. }) => message.clone(),
                e => e.to_string(),
            };
            if !matches!(e, Error::Protocol(ProtoError::PeerAlert { .. })) {
                writer.alert(status_of(&e), &message).await;
            }
            return ConnEnd::NoTransfer(e);
        }
    };
    let mut decided = false;
    let mut history = None;
    let tally = Arc::new(trust::Tally::default());
    let ctx = Ctx {
        peer: &facts.peer,
        remote,
        contacted: facts.contacted,
        standing: facts.standing,
        code: facts.code,
        session_id: facts.session_id,
        shared: &shared,
        stop: &stop,
        offer_slot,
        abandoned: facts.abandoned,
        decided: &mut decided,
        history: &mut history,
        tally: &tally,
    };
    let result = transfer(&mut reader, &mut writer, opener, (offer, manifest), ctx).await;
    concluding.cancel();
    let alert = alert_for(&result);
    // Stopped in the middle: say how far it got and what is kept for a resume.
    let result = match result {
        Err(e) if tally.streaming.load(std::sync::atomic::Ordering::SeqCst) => {
            Err(tally.stopped(e, Side::Receive, &facts.peer.name, false))
        }
        r => r,
    };
    let end = Concluded {
        result: &result,
        alert,
        history,
        tally: &tally,
    };
    conclude(&mut reader, &mut writer, &facts, &shared, end).await;
    if decided {
        let sender = Sender {
            transfer: shared.events.here().transfer().unwrap_or_default(),
            peer: PeerLabel::of(&facts.peer),
            session: session_hex,
        };
        ConnEnd::Transfer(result, Box::new(sender))
    } else {
        // Refused before anyone was asked (bad names, too large): not a transfer,
        // so a stray or hostile offer cannot end `listen --once`.
        ConnEnd::NoTransfer(result.err().unwrap_or(Error::Interrupted))
    }
}

/// Authenticate: the handshake up to the peer's proof, the admission checks
/// (its standing, the signature budget, a session slot), then our signature.
async fn authenticate(
    stream: TcpStream,
    remote: SocketAddr,
    shared: &Shared,
    mut handshaking: crate::admission::Handshaking,
) -> Result<Authenticated> {
    let _ = stream.set_nodelay(true);
    // Until its first byte a connection is silent, the first to make room
    // for a newcomer (see `listen::Admission`).
    let mut first = [0u8; 1];
    let peeked = conn::timed(
        conn::HANDSHAKE_TIMEOUT,
        conn::STOPPED_SENDING,
        stream.peek(&mut first),
    );
    match peeked.await? {
        0 => return Err(ProtoError::Truncated.into()),
        _ => handshaking.talking(),
    }
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd);
    let config = HandshakeConfig::new(shared.identity.clone());
    let proven = conn::handshake_until_proven(
        &mut reader,
        &mut wr,
        Handshake::responder(config),
        vec![],
        |step| match step {
            conn::Step::Hello => handshaking.hello(),
            conn::Step::Proving => {
                handshaking.proving();
                true
            }
        },
    )
    .await?;
    // The key-exchange token goes back only once the session is served
    // (`authenticated` below): a peer refused before the listener signs
    // counts as an abandoned exchange, since it learnt its code all the same.
    let peer = proven.peer().clone();
    let (contacted, standing) = admit_peer(&mut wr, shared, &peer, remote).await?;
    let busy = |message: &str| Error::refused(Status::Busy, message);
    if standing != Standing::Trusted && !handshaking.may_sign_for_stranger() {
        let message = "the receiver is answering too many handshakes from untrusted peers; \
                       try again in a few seconds";
        conn::handshake_alert(&mut wr, Status::Busy, message).await;
        return Err(busy(message));
    }
    let abandoned = handshaking.limits().recently_abandoned();
    let stranger = (standing != Standing::Trusted).then_some(peer.node_id);
    let Some(slot) = handshaking.authenticated(stranger) else {
        let message = "the receiver is serving too many sessions; try again";
        conn::handshake_alert(&mut wr, Status::Busy, message).await;
        return Err(busy(message));
    };
    let session = conn::finish_handshake(&mut wr, proven).await?;
    Ok(Authenticated {
        reader,
        writer: RecordWriter {
            inner: wr,
            sealer: session.sealer,
        },
        opener: session.opener,
        facts: Facts {
            peer,
            contacted,
            standing,
            session_id: session.session_id,
            code: session.sas,
            abandoned,
            batches: localstream_proto::handshake::has_batches(session.version),
        },
        slot,
    })
}

/// The session begins: in the log, among the active sessions (the guard
/// returned), and, for a peer not trusted yet, its verification code.
fn announce_session<'a>(
    conn: &Facts,
    shared: &'a Shared,
    remote: SocketAddr,
    session_hex: &str,
) -> trust::ActiveGuard<'a> {
    let peer = &conn.peer;
    let peer_id = uuid::Uuid::from_bytes(peer.node_id);
    let span = tracing::Span::current();
    span.record(
        "peer",
        tracing::field::display(crate::discover::short_id(&peer_id)),
    );
    span.record("session", tracing::field::display(session_hex));
    let (active, running) = shared.active.enter(peer_id, session_hex.to_owned());
    info!(
        %remote,
        name = %escape_for_terminal(&peer.name),
        fingerprint = %short_fingerprint(&peer.fingerprint),
        sessions_with_peer = running,
        "authenticated"
    );
    if conn.standing == Standing::Untrusted {
        shared.events.notice(Notice::Code {
            peer: PeerLabel::of(peer),
            code: conn.code,
            first: conn.contacted.first,
            trust: conn.contacted.trust,
        });
    } else {
        let trust = conn.contacted.trust;
        info!(code = %conn.code, %trust, "verification code");
    }
    active
}

/// How a transfer ended, for [`conclude`].
struct Concluded<'a> {
    result: &'a Result<Received>,
    /// What to tell the sender ([`alert_for`]).
    alert: Option<(Status, String)>,
    history: Option<trust::Session>,
    tally: &'a trust::Tally,
}

/// Why the transfer failed, for the sender: `None` when it succeeded, was
/// refused (the Answer said so) or the sender said why first (an alert).
fn alert_for(result: &Result<Received>) -> Option<(Status, String)> {
    let e = result.as_ref().err()?;
    if matches!(
        e,
        Error::Protocol(ProtoError::PeerAlert { .. })
            | Error::Transfer(TransferError::Refused { .. })
    ) {
        return None;
    }
    let message = match e {
        Error::Interrupted => "the receiver is shutting down".to_owned(),
        Error::Transfer(TransferError::OutputClosed { .. }) => {
            "the receiver's standard output was closed by the program reading it (`listen \
             --stdout | head`?): the rest could not be written"
                .to_owned()
        }
        // The receiver's own paths are none of the sender's business.
        Error::File { source, .. } => format!("the receiver cannot write: {}", source.kind()),
        e => e.to_string(),
    };
    Some((status_of(e), message))
}

/// After the transfer: the refusal as an event, the session's history, and
/// why it failed to the sender (unless the sender said so first).
async fn conclude<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut RecordWriter<W>,
    conn: &Facts,
    shared: &Shared,
    end: Concluded<'_>,
) where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let Concluded {
        result,
        alert,
        history,
        tally,
    } = end;
    if let Err(Error::Transfer(TransferError::Refused { status, message })) = result {
        shared.events.emit(Event::Refused {
            side: Side::Receive,
            peer: Some(PeerLabel::of(&conn.peer)),
            status: *status,
            message: message.clone(),
        });
    }
    if let Some(history) = history {
        let (outcome, mut detail) =
            trust::outcome(result.as_ref().err(), result.as_ref().is_ok_and(|r| r.ok));
        if let Ok(Received {
            failed: (failed @ 1.., files),
            ..
        }) = result
        {
            // As the sender's history says it.
            detail = format!("{failed} of {files} files failed");
        }
        // Regular files saved and this session's file bytes, as the sender counts them.
        history
            .end(&shared.events, outcome, tally.figures(), &detail)
            .await;
    } else if let Err(Error::Transfer(TransferError::Refused { status, .. })) = result {
        trust::record_if_pinned(
            &shared.store,
            &shared.events,
            &conn.peer,
            &conn.session_id,
            Direction::Receive,
            crate::store::Outcome::Refused,
            &status.to_string(),
        )
        .await;
    }
    if let Some((status, message)) = alert {
        writer.alert(status, &message).await;
        linger(reader, &mut writer.inner).await;
    }
}

/// After an alert: closes our side and reads (and drops) what the sender
/// still sends, for a moment, so that the close is not a reset that could
/// overtake the alert on its way (the sender then sees the reason, not
/// "connection reset").
async fn linger<R: tokio::io::AsyncRead + Unpin, W: tokio::io::AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
) {
    use tokio::io::AsyncWriteExt;
    let _ = writer.shutdown().await;
    let _ = tokio::time::timeout(LINGER, reader.drain()).await;
}

/// How long [`linger`] reads after an alert.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How the refusal of a node never met, under `--trusted-only`, begins.
pub const NEVER_MET: &str =
    "the receiver accepts only peers it trusts (--trusted-only) and has never met this node";

/// Decides, before the listener signs anything, whether this proven peer may
/// go on: a changed key, a blocked peer, a stranger under `--trusted-only`
/// and a newcomer using a pinned peer's name are refused here with a
/// plaintext alert (the peer has not authenticated us yet, so that is the
/// only way to tell it).
async fn admit_peer<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    shared: &Shared,
    peer: &PeerIdentity,
    remote: SocketAddr,
) -> Result<(trust::Contacted, Standing)> {
    let reached = trust::Reached::From(remote.ip());
    let (status, message, err) = match trust::admit(&shared.store, peer, reached).await {
        Ok(contacted) => {
            let standing = match contacted.trust {
                Trust::Trusted => Standing::Trusted,
                Trust::Blocked => Standing::Blocked,
                Trust::New | Trust::Known => Standing::Untrusted,
            };
            if standing != Standing::Untrusted || !shared.gate.trusted_only() {
                return Ok((contacted, standing));
            }
            let message = if contacted.trust == Trust::New {
                // Nothing is pinned for a stranger refused so: `trust` would
                // find nothing to trust.
                format!(
                    "{NEVER_MET}; its user can let this node in by accepting one transfer from \
                     it without --trusted-only, after comparing verification codes, then \
                     `localstream trust {}`",
                    peer_id_hint(peer)
                )
            } else {
                format!(
                    "the receiver accepts only peers it trusts (--trusted-only); its user can \
                     trust this node with `localstream trust {}` after comparing verification \
                     codes",
                    peer_id_hint(peer)
                )
            };
            info!(%remote, "refused an untrusted peer (--trusted-only)");
            refused_before_offer(shared, peer, Status::NotTrusted, &message);
            let e = Error::refused(Status::NotTrusted, message.clone());
            (Status::NotTrusted, message, e)
        }
        Err(trust::Refusal::KeyChanged(e)) => {
            if let Error::Trust(t) = &e {
                shared.events.notice(Notice::PeerRefused(t.clone()));
            }
            let id = uuid::Uuid::from_bytes(peer.node_id);
            let message = format!(
                "the receiver has a different key pinned for node id {id}: it refuses this \
                 connection (if your key changed legitimately, its user can run \
                 `localstream forget {id}`)"
            );
            (Status::NotTrusted, message, e)
        }
        Err(trust::Refusal::Store(e)) => {
            warn!(error = %e, "peer store unusable");
            let message = "the receiver cannot use its peer store".to_owned();
            (Status::InternalError, message, e)
        }
        Err(trust::Refusal::Blocked) => {
            info!(%remote, "refused a blocked peer");
            note_blocked(shared, peer).await;
            let message = "the receiver has blocked this node".to_owned();
            refused_before_offer(shared, peer, Status::Declined, &message);
            let e = Error::refused(Status::Declined, message.clone());
            (Status::Declined, message, e)
        }
        Err(trust::Refusal::Impostor(e)) => {
            if let Error::Trust(t) = &e {
                shared.events.notice(Notice::PeerRefused(t.clone()));
            }
            let message = format!(
                "the receiver knows another node named '{}', or at this address, with another \
                 key, and refuses this one; if this node's key changed legitimately, its user \
                 can run `localstream forget` for the old one",
                escape_for_terminal(&peer.name)
            );
            (Status::NotTrusted, message, e)
        }
    };
    conn::handshake_alert(wr, status, &message).await;
    Err(err)
}

/// A peer refused for who it is (not trusted, blocked) before it could
/// offer: the receiver's front end is told too. (A changed key or an
/// impostor has its loud [`Notice::PeerRefused`] instead.)
fn refused_before_offer(shared: &Shared, peer: &PeerIdentity, status: Status, message: &str) {
    shared.events.emit(Event::Refused {
        side: Side::Receive,
        peer: Some(PeerLabel::of(peer)),
        status,
        message: message.to_owned(),
    });
}

/// A blocked peer's refusal goes into its history at most once a minute (a
/// blocked peer must not make us rewrite the store per connection). It is
/// refused before a session existed: the history gets an id of its own.
async fn note_blocked(shared: &Shared, peer: &PeerIdentity) {
    let note = {
        let mut noted = shared
            .blocked_noted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if noted.len() > 4096 {
            noted.clear();
        }
        let last = noted.insert(peer.node_id, Instant::now());
        last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60))
    };
    if note {
        let id: [u8; 16] = rand::random();
        trust::record_if_pinned(
            &shared.store,
            &shared.events,
            peer,
            &id,
            Direction::Receive,
            crate::store::Outcome::Refused,
            &Status::Declined.to_string(),
        )
        .await;
    }
}

/// What a transfer needs besides the socket halves.
struct Ctx<'a> {
    peer: &'a PeerIdentity,
    /// Where the sender connected from.
    remote: SocketAddr,
    contacted: trust::Contacted,
    standing: Standing,
    code: Sas,
    session_id: [u8; 16],
    shared: &'a Shared,
    stop: &'a CancellationToken,
    offer_slot: offer::OfferSlot,
    /// Key exchanges abandoned recently (someone may be grinding codes).
    abandoned: Option<crate::admission::AbandonedNote>,
    /// Set when someone (or the policy) decided about the offer.
    decided: &'a mut bool,
    /// The session's history entry, once consent pinned the peer.
    history: &'a mut Option<trust::Session>,
    /// What the transfer did so far.
    tally: &'a Arc<trust::Tally>,
}

/// How the receiver's user can name the sender: the start of its id.
fn peer_id_hint(peer: &PeerIdentity) -> String {
    crate::discover::short_id(&uuid::Uuid::from_bytes(peer.node_id))
}

fn status_of(e: &Error) -> Status {
    match e {
        Error::Protocol(p) => p.status(),
        Error::Timeout(_) => Status::Timeout,
        Error::Interrupted => Status::Busy,
        Error::Transfer(TransferError::Refused { status, .. }) => *status,
        Error::File { source, .. } | Error::Io(source) => io_status(source),
        Error::Transfer(TransferError::OutputClosed { .. }) => Status::WriteFailed,
        _ => Status::InternalError,
    }
}

/// `n` as `human_bytes` says it, or in bytes when `other` would read the
/// same ("needs 5.00 MiB but only 5.00 MiB is free" says nothing).
fn exact_if_alike(n: u64, other: u64) -> String {
    let (a, b) = (human_bytes(n), human_bytes(other));
    if a == b { format!("{n} B") } else { a }
}

fn io_status(e: &std::io::Error) -> Status {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            Status::InsufficientStorage
        }
        _ => Status::WriteFailed,
    }
}

/// Refuses the offer with `status`: tells the sender, returns the refusal.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut RecordWriter<W>,
    deciding: Deciding,
    (status, message): (Status, String),
) -> Result<Received> {
    let mut body = vec![];
    deciding.refuse(status, &message, &mut body)?;
    writer.send(RecordType::Answer, &body).await?;
    Err(Error::refused(status, message))
}

/// The stages of one incoming transfer, after the offer was read: offer
/// validation, decision, then for each batch (one, before version 4)
/// prepare, pipeline, its Status; then the end. `offer` is the first batch
/// and, in version 4, the Manifest that the decision covers.
async fn transfer<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut RecordWriter<W>,
    mut opener: Opener,
    offer: (Deciding, Option<Manifest>),
    ctx: Ctx<'_>,
) -> Result<Received>
where
    R: tokio::io::AsyncRead + Unpin + Send,
    W: tokio::io::AsyncWrite + Unpin,
{
    let (mut deciding, manifest) = offer;
    let who = PeerLabel::of(ctx.peer).short();
    let mut batches = manifest.map(Batches::new);
    if let Some(batches) = &mut batches {
        batches.admit(deciding.entries())?;
    }
    let scope = Scope::of(&deciding, manifest);
    let mut new_folders = plan::NewFolders::default();
    let (mut held_lens, mut copies) = match validate_offer(
        deciding.entries(),
        scope.bytes,
        ctx.shared,
        ctx.peer,
        &who,
        &mut new_folders,
    ) {
        Ok(lens) => lens,
        Err(refusal) => return refuse(writer, deciding, refusal).await,
    };
    let ruling = decide(reader, deciding.entries(), &scope, &ctx).await;
    if ruling == Ruling::Withdrawn || reader.has_pending().await {
        return Err(match reader.read_record(&mut opener, IDLE_TIMEOUT).await {
            // An alert (the sender cancelled) is the reason itself.
            Err(e) => e,
            Ok((typ, body)) => Deciding::unexpected(typ, &body).into(),
        });
    }
    let Ctx {
        peer,
        remote,
        contacted,
        session_id,
        shared,
        stop,
        offer_slot,
        decided,
        history,
        tally,
        ..
    } = ctx;
    drop(offer_slot);
    // Only a real answer ends `listen --once`: a refusal by policy (a stranger,
    // a blocked peer) or a busy queue must not.
    *decided = matches!(
        ruling,
        Ruling::Accept | Ruling::AcceptAndTrust | Ruling::Decline | Ruling::TimedOut
    );
    if let Some(refusal) = refusal(ruling, peer) {
        return refuse(writer, deciding, refusal).await;
    }
    let pin = Pin {
        peer,
        shared,
        remote,
        session_id,
        contacted,
    };
    match consent_given(&pin, ruling).await {
        Ok(h) => *history = h,
        Err(refusal) => return refuse(writer, deciding, refusal).await,
    }
    let started = Instant::now();
    let progress = Progress::new(&shared.events, Side::Receive, scope.bytes);
    let mut sum = Sum::default();
    loop {
        let holding = Holding {
            lens: &held_lens,
            copies: &copies,
        };
        let entries = deciding.entries();
        let (prepared, decisions) = match prepare(entries, holding, shared, peer, &who, stop).await
        {
            Ok(p) => p,
            // Shutting down while held files were checked: the sender hears
            // why (an alert, not a refusal: it may send again later).
            Err(_) if stop.is_cancelled() => return Err(Error::Interrupted),
            Err(refusal) => return refuse(writer, deciding, refusal).await,
        };
        let total = deciding.total_bytes();
        let accepted = answer(writer, deciding, decisions).await?;
        info!(peer = %who, files = prepared.planned.len(), bytes = total, held = prepared.held.len(), batch = sum.batches, "receiving");
        let first = sum.batches == 0;
        if first {
            tally
                .total
                .store(scope.bytes, std::sync::atomic::Ordering::Relaxed);
            tally
                .streaming
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let io = Io {
            shared,
            stop,
            tally,
            progress: &progress,
            resumed_before: sum.resumed,
            announce: first.then_some(if batches.is_some() {
                scope.files
            } else {
                prepared.planned.len()
            }),
        };
        let staged = prepared.staged.clone();
        // (Failed: the folders get their names as `staged` goes, with what
        // arrived whole; the writer removed what did not.)
        let (written, back) = pipeline(reader, opener, accepted, prepared, total, io).await?;
        if !staged.is_empty() {
            // Named before the Status says the files are saved.
            let _ = tokio::task::spawn_blocking(move || staged.publish()).await;
        }
        opener = back;
        let more = written.done.more();
        finish_batch(writer, written, started, &mut sum, (tally, &shared.events)).await?;
        if !more {
            break;
        }
        deciding = offer::read_batch(reader, &mut opener).await?;
        if let Some(batches) = &mut batches {
            batches.admit(deciding.entries())?;
        }
        let bytes = deciding.total_bytes();
        (held_lens, copies) = match validate_offer(
            deciding.entries(),
            bytes,
            shared,
            peer,
            &who,
            &mut new_folders,
        ) {
            Ok(lens) => lens,
            Err(refusal) => return refuse(writer, deciding, refusal).await,
        };
    }
    progress.finish();
    finish(writer, started, sum, &pin).await
}

/// What the user consents to: the whole transfer (the Manifest's totals in
/// version 4), not only its first batch.
struct Scope {
    /// Entries: files, folders, streams.
    entries: usize,
    /// Files and streams among them.
    files: usize,
    /// The sum of their sizes.
    bytes: u64,
}

impl Scope {
    fn of(first: &Deciding, manifest: Option<Manifest>) -> Scope {
        match manifest {
            Some(m) => Scope {
                entries: m.entries as usize,
                files: (m.entries - m.folders) as usize,
                bytes: m.bytes,
            },
            None => Scope {
                entries: first.entries().len(),
                files: first.entries().iter().filter(|e| !e.is_dir()).count(),
                bytes: first.total_bytes(),
            },
        }
    }
}

/// Offer validation: names first (one hostile name refuses the whole
/// offer), then what `--stdout` takes, then the disk space. Nothing per
/// entry is kept before consent but the held prefix lengths and which of
/// them are copies already in the folder (returned).
fn validate_offer(
    entries: &[OfferEntry],
    total: u64,
    shared: &Shared,
    peer: &PeerIdentity,
    who: &str,
    new_folders: &mut plan::NewFolders,
) -> std::result::Result<(Vec<u64>, Vec<bool>), (Status, String)> {
    let to_stdout = shared.destination == Destination::Stdout;
    let checked = plan::check(
        entries,
        &shared.dir,
        &peer.node_id,
        to_stdout,
        shared.on_collision,
        new_folders,
    )
    .inspect_err(|(_, message)| {
        info!(peer = %who, "refused offer: {message}");
    })?;
    if to_stdout && (checked.files != 1 || checked.folders != 0) {
        return Err((
            Status::Declined,
            format!(
                "the receiver takes exactly one file, for its standard output \
                 (`listen --stdout`); this offer has {}",
                crate::units::files_and_folders(checked.files as u64, checked.folders as u64)
            ),
        ));
    }
    // A text would be shown, not written: the output would stay empty.
    if to_stdout && entries.iter().any(OfferEntry::is_text) {
        return Err((
            Status::Declined,
            "the receiver takes one file, for its standard output (`listen --stdout`), \
             not a text message"
                .into(),
        ));
    }
    // Bytes held from an interrupted transfer need no new space (nor, most
    // likely, copies of the same size: they are the same files again).
    let held: u64 = checked.held_lens.iter().sum();
    let needed = total - held;
    if !to_stdout
        && let Some(free) = fsutil::available_space(&shared.dir)
        && free < needed
    {
        info!(peer = %who, needed, free, "refused offer: not enough disk space");
        return Err((
            Status::InsufficientStorage,
            format!(
                "not enough disk space: the offer needs {} but only {} is free",
                exact_if_alike(needed, free),
                exact_if_alike(free, needed)
            ),
        ));
    }
    Ok((checked.held_lens, checked.copies))
}

/// Decision: the offer event (with its code and the abandoned-exchange
/// count), then the policy or the front end. The sender must wait for the
/// Answer: anything it sends meanwhile (or its going away) withdraws the
/// question.
async fn decide<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    entries: &[OfferEntry],
    scope: &Scope,
    ctx: &Ctx<'_>,
) -> Ruling {
    let offer = Event::Offer {
        side: Side::Receive,
        offer_id: None,
        peer: Some(PeerLabel::of(ctx.peer)),
        files: scope.files,
        folders: scope.entries - scope.files,
        bytes: scope.bytes,
        // The first ones, for a front end to show (all of them can be 100 000).
        entries: entries
            .iter()
            .take(OFFER_EVENT_ENTRIES)
            .map(|e| EntryInfo {
                path: e.path.clone(),
                size: e.size,
                folder: e.is_dir(),
                executable: e.is_exec(),
                text: e.is_text(),
                modified: e.mtime.map(|t| t.secs),
            })
            .collect(),
        executables: entries.iter().filter(|e| e.is_exec()).count(),
        executables_among: entries.len(),
        code: Some(ctx.code),
        abandoned_exchanges: Some(ctx.abandoned.map_or(0, |n| n.count)),
        localsend: None,
        text: None,
    };
    ctx.shared
        .gate
        .decide(ctx.standing, offer, async {
            reader.readable().await;
        })
        .await
}

/// The refusal a ruling stands for (`None`: go ahead).
pub(crate) fn refusal(ruling: Ruling, peer: &PeerIdentity) -> Option<(Status, String)> {
    Some(match ruling {
        Ruling::Accept | Ruling::AcceptAndTrust | Ruling::Withdrawn => return None,
        Ruling::Decline => (Status::Declined, "the receiver declined".into()),
        Ruling::Blocked => (
            Status::Declined,
            "the receiver has blocked this node".into(),
        ),
        Ruling::TimedOut => (Status::Timeout, "nobody answered the prompt".into()),
        Ruling::Busy => (
            Status::Busy,
            "the receiver has too many offers waiting for an answer; try again".into(),
        ),
        Ruling::NotTrusted { unattended } => (
            if unattended {
                Status::ConsentUnavailable
            } else {
                Status::NotTrusted
            },
            format!(
                "the receiver accepts only peers it trusts{}; its user can trust this node with \
                 `localstream trust {}` after comparing verification codes{}",
                if unattended {
                    " (it has no terminal to ask on)"
                } else {
                    " (--trusted-only)"
                },
                peer_id_hint(peer),
                if unattended {
                    ", or start `listen --yes`"
                } else {
                    ""
                }
            ),
        ),
    })
}

/// Whom consent pins, and where it is recorded.
pub(crate) struct Pin<'a> {
    pub(crate) peer: &'a PeerIdentity,
    pub(crate) shared: &'a Shared,
    pub(crate) remote: SocketAddr,
    pub(crate) session_id: [u8; 16],
    pub(crate) contacted: trust::Contacted,
}

/// Consent given: now the peer is pinned (on first contact), the session
/// recorded, and, when the user said so, the peer trusted: one store write
/// before the Answer, and none for a peer pinned before (its history is
/// written at the end, see [`trust::Session::begin`]).
pub(crate) async fn consent_given(
    pin: &Pin<'_>,
    ruling: Ruling,
) -> std::result::Result<Option<trust::Session>, (Status, String)> {
    let (peer, shared) = (pin.peer, pin.shared);
    let events = &shared.events;
    let from = Some(pin.remote.ip().to_canonical());
    let id = &pin.session_id;
    let trust = ruling == Ruling::AcceptAndTrust;
    let who = PeerLabel::of(peer);
    let begun = trust::Session::begin(
        &shared.store,
        events,
        peer,
        from,
        id,
        Direction::Receive,
        trust,
    );
    let history = match begun.await {
        Ok(h) => {
            if trust {
                events.notice(Notice::TrustedNow(who.clone()));
            }
            Some(h)
        }
        Err(e @ Error::Trust(TrustError::KeyChanged { .. })) => {
            if let Error::Trust(t) = &e {
                events.notice(Notice::PeerRefused(t.clone()));
            }
            return Err((
                Status::NotTrusted,
                "the receiver has a different key pinned for this node id".into(),
            ));
        }
        Err(e) => {
            events.notice(Notice::StoreFailed(format!(
                "could not record the session in the peer store: {e}"
            )));
            if trust {
                events.notice(Notice::StoreFailed(format!(
                    "could not mark {} as trusted: {e}",
                    who.short()
                )));
            }
            None
        }
    };
    if pin.contacted.first {
        info!(peer = %who.short(), "pinned at first contact");
    }
    Ok(history)
}

/// What [`prepare`] made ready for the writer: the files' places, and the
/// held prefixes by offer index.
struct Prepared {
    planned: Vec<Planned>,
    held: HashMap<u32, Held>,
    /// The folders made under hidden names, published at the batch's end
    /// (by the last holder: the writer, when it stops first).
    staged: Arc<fsutil::Staged>,
}

/// What the receiver holds of each offered file, in offer order (from
/// [`plan::check`]).
#[derive(Clone, Copy)]
struct Holding<'a> {
    /// Bytes held (0: nothing).
    lens: &'a [u64],
    /// The bytes held are the copy already in the folder.
    copies: &'a [bool],
}

/// One held prefix to open and hash: its place in the plan, where it is,
/// the offered size, the bytes held when the offer came, and whether it is
/// the copy already in the folder.
struct Candidate {
    planned: usize,
    parent: Arc<Path>,
    name: String,
    size: u64,
    held: u64,
    copy: bool,
}

/// Prepare: the folders the offer names (even empty ones), the parents its
/// files need (once per distinct directory), and the held prefixes (opened,
/// locked and hashed now, offered in the Answer; under `skip-identical` the
/// copies of the same size already there too, whole). Returns them with the
/// Answer's decisions, one per offered entry.
async fn prepare(
    entries: &[OfferEntry],
    holding: Holding<'_>,
    shared: &Shared,
    peer: &PeerIdentity,
    who: &str,
    stop: &CancellationToken,
) -> std::result::Result<(Prepared, Vec<FileDecision>), (Status, String)> {
    let (plan, folders) = plan::plan(entries);
    let making = Instant::now();
    // New folders are staged (the files of a batch need no move each),
    // except for a text or standard output, which make none.
    let stage = (shared.destination != Destination::Stdout).then(rand::random::<u64>);
    let mut made = match make_folders(&shared.dir, &folders, stage) {
        Ok(made) => {
            debug!(
                folders = folders.len(),
                ms = making.elapsed().as_secs_f64() * 1e3,
                "folders made"
            );
            made
        }
        Err((components, err, made)) => {
            // The refused offer leaves none of the folders it made.
            made.undo();
            info!(peer = %who, error = %err, "refused offer: cannot create a folder");
            return Err((
                io_status(&err),
                format!(
                    "cannot create the folder {}: {}",
                    escape_for_terminal(&components.join("/")),
                    escape_for_terminal(&err.to_string())
                ),
            ));
        }
    };
    let mut planned = match place_files(plan, shared, &mut made, &peer.node_id, who) {
        Ok(planned) => planned,
        Err(refused) => {
            made.undo();
            return Err(refused);
        }
    };
    let candidates: Vec<Candidate> = planned
        .iter()
        .enumerate()
        .filter(|(i, _)| holding.lens[*i] > 0)
        .take(MAX_RESUMED)
        .map(|(i, p)| {
            let copy = holding.copies[i];
            Candidate {
                planned: i,
                parent: p.parent.clone(),
                name: if copy {
                    p.file_name().to_owned()
                } else {
                    p.partial_name()
                },
                size: p.size,
                held: holding.lens[i],
                copy,
            }
        })
        .collect();
    // Copies past the limit: compared once received (see `same_maybe`).
    let chosen: std::collections::HashSet<usize> = candidates.iter().map(|c| c.planned).collect();
    for (i, p) in planned.iter_mut().enumerate() {
        p.same_maybe = holding.copies[i] && !chosen.contains(&i);
    }
    let held = if candidates.is_empty() {
        HashMap::new()
    } else {
        let (events, peer, stopping) = (shared.events.here(), PeerLabel::of(peer), stop.clone());
        let held = tokio::task::spawn_blocking(move || {
            hold_prefixes(candidates, &events, &peer, &stopping)
        })
        .await
        .map_err(|e| (Status::InternalError, e.to_string()))?;
        if stop.is_cancelled() {
            made.undo();
            return Err((Status::Busy, "the receiver is shutting down".into()));
        }
        held
    };
    // One decision per offered entry: folders are done (created), files wait.
    let mut decisions = vec![FileDecision::whole(); entries.len()];
    for (&i, (h, hash)) in &held {
        decisions[planned[i].index as usize] = FileDecision {
            status: Status::Ok,
            offset: h.partial.len,
            held: *hash,
        };
        if !h.copy {
            shared.events.notice(Notice::Held {
                name: planned[i].shown().into_owned(),
                bytes: h.partial.len,
            });
        }
    }
    let held = held
        .into_iter()
        .map(|(i, (h, _))| (planned[i].index, h))
        .collect();
    let staged = Arc::new(made.into_staged());
    Ok((
        Prepared {
            planned,
            held,
            staged,
        },
        decisions,
    ))
}

/// Folders of one batch from which they are made on two threads: a mkdir
/// is most of what the receiver does between the offer and its Answer,
/// while the sender waits (the cargo tree's 1,185 folders: 6 ms on tmpfs).
const FOLDERS_SHARED_FROM: usize = 256;

/// Makes the offered folders (each component made, or found to be a real
/// folder), in two halves side by side when there are many: a folder whose
/// parent is in the other half makes that parent too (or finds it made).
/// The error names the first folder, in offer order, that failed, with
/// what was made before (and beside) it.
fn make_folders<'a>(
    dir: &Path,
    folders: &'a [Vec<String>],
    stage: Option<u64>,
) -> std::result::Result<fsutil::MadeFolders, FoldersFailed<'a>> {
    let make = |folders: &'a [Vec<String>]| {
        let mut made =
            stage.map_or_else(fsutil::MadeFolders::default, fsutil::MadeFolders::staging);
        for components in folders {
            let parts: Vec<&str> = components.iter().map(String::as_str).collect();
            if let Err(e) = made.prepare(dir, &parts) {
                return Err((components.as_slice(), e, Box::new(made)));
            }
        }
        Ok(made)
    };
    let two = folders.len() >= FOLDERS_SHARED_FROM
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    if !two {
        return make(folders);
    }
    let (first, second) = folders.split_at(folders.len() / 2);
    let (a, b) = std::thread::scope(|scope| {
        let other = scope.spawn(|| make(second));
        let a = make(first);
        // The thread only makes folders; should it panic, this side makes them.
        (a, other.join().unwrap_or_else(|_| make(second)))
    });
    match (a, b) {
        (Ok(mut made), Ok(other)) => {
            let _ = made.absorb(other);
            Ok(made)
        }
        (Err((components, e, mut made)), Ok(other)) => {
            let _ = made.absorb(other);
            Err((components, e, made))
        }
        (Err((components, e, mut made)), Err((_, _, other))) => {
            let _ = made.absorb(*other);
            Err((components, e, made))
        }
        (Ok(mut made), Err((components, e, other))) => {
            let _ = made.absorb(*other);
            Err((components, e, Box::new(made)))
        }
    }
}

/// The folder [`make_folders`] could not make, why, and what it made.
type FoldersFailed<'a> = (&'a [String], std::io::Error, Box<fsutil::MadeFolders>);

/// Creates the directories the files need (none for plain files), once per
/// distinct directory.
fn place_files(
    plan: Vec<plan::FileLayout<'_>>,
    shared: &Shared,
    made: &mut fsutil::MadeFolders,
    sender: &[u8; 16],
    who: &str,
) -> std::result::Result<Vec<Planned>, (Status, String)> {
    let mut planned = Vec::with_capacity(plan.len());
    let mut parents: HashMap<&str, (Arc<Path>, Option<usize>)> = HashMap::new();
    let destination: Arc<Path> = Arc::from(shared.dir.as_path());
    // Two entries of one offer with the same path never replace each other:
    // only the first may replace what was there before.
    let mut named: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for plan::FileLayout {
        index,
        dirs,
        name_at,
        entry: e,
    } in plan
    {
        let (parent, staged) = if shared.destination == Destination::Stdout {
            // Nothing is written to the folder.
            (destination.clone(), None)
        } else if let Some(parent) = parents.get(dirs) {
            parent.clone()
        } else {
            let components: Vec<&str> = dirs.split('/').filter(|d| !d.is_empty()).collect();
            match made.prepare_staged(&shared.dir, &components) {
                Ok((p, staged)) => {
                    let p: Arc<Path> = Arc::from(p);
                    parents.insert(dirs, (p.clone(), staged));
                    (p, staged)
                }
                Err(err) => {
                    // Errors name paths inside the destination only.
                    info!(peer = %who, error = %err, "refused offer: cannot create its folders");
                    return Err((
                        io_status(&err),
                        format!(
                            "cannot create the folders of {}: {}",
                            escape_for_terminal(&e.path),
                            escape_for_terminal(&err.to_string())
                        ),
                    ));
                }
            }
        };
        planned.push(Planned {
            index,
            path: e.path.clone(),
            name_at,
            parent,
            size: e.size,
            sender: *sender,
            exec: e.is_exec(),
            stream: e.is_stream(),
            text: e.is_text(),
            mtime: e.mtime,
            replace: shared.on_collision.replaces() && named.insert(e.path.as_str()),
            same_maybe: false,
            staged,
        });
    }
    Ok(planned)
}

/// The Answer: accepted, with the per-entry decisions. Returns what the
/// sender's next records must be: its Resume first when some prefix is held.
async fn answer<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut RecordWriter<W>,
    deciding: Deciding,
    decisions: Vec<FileDecision>,
) -> Result<Accepted> {
    let mut body = vec![];
    let accepted = deciding.accept(decisions, compress::FEATURES, &mut body)?;
    writer.send(RecordType::Answer, &body).await?;
    Ok(accepted)
}

/// Pipeline: the socket reader task hands batches of frames to the writer
/// thread (open, hash, write, verify, commit) until the TransferEnd (or a
/// BatchEnd). Gives the record opener back with what was written.
async fn pipeline<R: tokio::io::AsyncRead + Unpin + Send>(
    reader: &mut FrameReader<R>,
    opener: Opener,
    accepted: Accepted,
    prepared: Prepared,
    total: u64,
    io: Io<'_>,
) -> Result<(write::Written, Opener)> {
    let Io {
        shared,
        stop,
        tally,
        progress,
        resumed_before,
        announce,
    } = io;
    let offered_held: u64 = prepared.held.values().map(|h| h.partial.len).sum();
    tally.resumed.store(
        resumed_before + offered_held,
        std::sync::atomic::Ordering::Relaxed,
    );
    progress.shrink(offered_held);
    if let Some(files) = announce {
        shared.events.emit(Event::Accepted {
            side: Side::Receive,
            files,
            bytes: tally
                .total
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(offered_held),
            resumed: offered_held,
        });
    }
    let _ = total;
    let (tx, rx) = mpsc::channel::<Vec<RawFrame>>(PIPELINE_DEPTH);
    let pool = BufPool::default();
    let returns = pool.clone();
    // The writer skips the per-file progress calls (a lock, a clock read and
    // a message string each) when nobody watches.
    let bar = progress.watched().then(|| progress.clone());
    let destination = shared.destination;
    // File bytes the writer has written (`tally.bytes`): what the progress
    // rule counts (a compressed record's size on the wire says little).
    let counted = tally.clone();
    let mut write_task = tokio::task::spawn_blocking(move || {
        write_files(
            opener,
            rx,
            &returns,
            accepted,
            prepared,
            bar.as_ref(),
            destination,
            &counted,
        )
    });
    let written = &tally.bytes;
    let mut early = None;
    let first_wait = IDLE_TIMEOUT + resumable::hashing_time(offered_held);
    let read_result = tokio::select! {
        // The sender first hashes its side of the held prefixes.
        r = forward_frames(reader, tx, &pool, first_wait, written) => r,
        // Shutting down: stop reading; the writer keeps what it has as partial files.
        () = stop.cancelled() => Err(Error::Interrupted),
        // The writer stopped first (bad record, disk full): stop reading at once.
        w = &mut write_task => {
            early = Some(w);
            Ok(())
        }
    };
    let written = match early {
        Some(w) => w,
        None => write_task.await,
    }?;
    // The writer's verdict wins when it failed (it saw the real problem);
    // otherwise a reader failure (timeout, cut connection) is the error.
    match (written, read_result) {
        (Ok(mut r), _) => {
            let opener = r.opener.take().ok_or(ProtoError::Poisoned)?;
            Ok((r, opener))
        }
        (Err(e), Ok(())) => Err(e),
        (Err(Error::Protocol(ProtoError::Truncated)), Err(read_err)) => Err(read_err),
        (Err(_), Err(Error::Interrupted)) => Err(Error::Interrupted),
        (Err(e), Err(_)) => Err(e),
    }
}

/// What the pipeline works with besides the connection.
struct Io<'a> {
    shared: &'a Shared,
    stop: &'a CancellationToken,
    tally: &'a Arc<trust::Tally>,
    /// The whole transfer's progress.
    progress: &'a Progress,
    /// Bytes held already in the batches before this one.
    resumed_before: u64,
    /// For the first batch: the files to announce as accepted.
    announce: Option<usize>,
}

/// Saved paths a transfer's end lists (the rest are counted).
const MAX_SAVED_LISTED: usize = 1000;

/// What the batches of a transfer did, added up.
#[derive(Default)]
struct Sum {
    batches: u32,
    /// Accepted files, how many of them failed, and of those how many
    /// failed verification (the others could not be saved).
    files: usize,
    failed: usize,
    unverified: usize,
    /// Data bytes received, bytes held already (confirmed).
    data_bytes: u64,
    resumed: u64,
    /// Sealed data bytes, when some records were compressed.
    wire: Option<u64>,
    /// Files saved, and the first [`MAX_SAVED_LISTED`] of their paths.
    delivered: usize,
    saved: Vec<PathBuf>,
    /// The text message, when the transfer was one.
    text: Option<String>,
    /// The files that did not arrive, and why (the first
    /// [`MAX_SAVED_LISTED`]).
    not_received: Vec<crate::event::FailedFile>,
}

/// One batch's end: its Status to the sender, its figures added to `sum`.
async fn finish_batch<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut RecordWriter<W>,
    written: write::Written,
    started: Instant,
    sum: &mut Sum,
    (tally, events): (&trust::Tally, &Events),
) -> Result<()> {
    let write::Written {
        results,
        wire,
        done,
        message: text,
        failed: listed,
        ..
    } = written;
    for f in listed {
        if sum.not_received.len() < MAX_SAVED_LISTED {
            sum.not_received.push(crate::event::FailedFile {
                name: f.path.clone(),
                status: f.status,
                why: Some(f.why.clone()),
            });
        }
        events.notice(Notice::NotReceived {
            path: f.path,
            why: f.why,
        });
    }
    // One per accepted file, now that every one has ended.
    let files = results.len();
    let failed = done.statuses().iter().filter(|s| !s.is_ok()).count();
    let unverified = done
        .statuses()
        .iter()
        .filter(|s| matches!(s, Status::HashMismatch | Status::SizeMismatch))
        .count();
    let (data_bytes, resumed) = (done.received().bytes, done.resumed_bytes());
    let message = if failed == 0 {
        summary(files, data_bytes + resumed, started.elapsed())
    } else {
        failures(files, unverified, failed - unverified)
    };
    let mut body = vec![];
    done.final_status(&message, &mut body)?;
    writer.send(RecordType::Status, &body).await?;
    sum.batches += 1;
    sum.files += files;
    sum.failed += failed;
    sum.unverified += unverified;
    sum.data_bytes += data_bytes;
    sum.resumed += resumed;
    if let Some(w) = wire {
        *sum.wire.get_or_insert(0) += w;
    }
    for path in results.into_iter().filter_map(|r| r.ok()) {
        sum.delivered += 1;
        if let Some(path) = path
            && sum.saved.len() < MAX_SAVED_LISTED
        {
            sum.saved.push(path);
        }
    }
    if text.is_some() {
        sum.text = text;
    }
    {
        use std::sync::atomic::Ordering::Relaxed;
        tally.resumed.store(sum.resumed, Relaxed);
    }
    Ok(())
}

/// The Status message for a batch in which files failed: how many of the
/// `files` accepted failed verification, and how many could not be saved.
fn failures(files: usize, unverified: usize, unsaved: usize) -> String {
    let of = |n: usize, what: &str| format!("{n} of {files} files {what}");
    match (unverified, unsaved) {
        (n, 0) => of(n, "failed verification"),
        (0, n) => of(n, "could not be saved by the receiver"),
        (n, m) => format!(
            "{}; {m} could not be saved by the receiver",
            of(n, "failed verification")
        ),
    }
}

/// Finish: the transfer's end as an event, after the last Status.
async fn finish<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut RecordWriter<W>,
    started: Instant,
    sum: Sum,
    pin: &Pin<'_>,
) -> Result<Received> {
    use tokio::io::AsyncWriteExt;
    let _ = writer.inner.shutdown().await;
    let (peer, shared) = (pin.peer, pin.shared);
    // What the files hold (streams announce no size).
    let bytes: u64 = sum.data_bytes + sum.resumed;
    let label = PeerLabel::of(peer);
    if let Some(text) = sum.text {
        shared.events.emit(Event::Message {
            peer: label.clone(),
            text,
            saved: None,
        });
    }
    shared
        .events
        .emit(Event::TransferDone(Box::new(crate::event::TransferDone {
            side: Side::Receive,
            peer: label.clone(),
            session: trust::session_hex(&pin.session_id),
            ok: sum.failed == 0,
            files: sum.delivered,
            offered: sum.files,
            bytes,
            resumed: sum.resumed,
            seconds: started.elapsed().as_secs_f64(),
            failed: Some(sum.not_received),
            saved: sum.saved.clone(),
            wire: sum.wire.map(|w| (sum.data_bytes, w)),
            discarded: sum.unverified,
            unsaved: sum.failed - sum.unverified,
        })));
    Ok(Received {
        peer: label.short(),
        ok: sum.failed == 0,
        saved: sum.saved,
        bytes,
        failed: (sum.failed, sum.files),
    })
}

/// Opens, locks and hashes each candidate's held prefix (blocking), with
/// `checking` events for `peer`'s transfer while it runs. A partial that
/// cannot be used is simply not offered: the file then comes whole.
fn hold_prefixes(
    candidates: Vec<Candidate>,
    events: &Events,
    peer: &PeerLabel,
    stop: &CancellationToken,
) -> HashMap<usize, (Held, [u8; 32])> {
    let mut held = HashMap::new();
    let bytes = candidates.iter().map(|c| c.held).sum();
    let mut checking = Checking::new(events, Side::Receive, peer, bytes);
    for Candidate {
        planned: i,
        parent,
        name,
        size,
        held: expected,
        copy,
    } in candidates
    {
        let opened = if copy {
            // The file already there: read, never followed through a link.
            fsutil::collision::open_existing(&parent, &name, size).map(|f| {
                f.map(|file| Resumable {
                    path: parent.join(&name),
                    file,
                    len: size,
                })
            })
        } else {
            resumable::open_resumable(&parent, &name)
        };
        let mut partial = match opened {
            Ok(Some(p)) if p.len > 0 && p.len <= size => p,
            Ok(_) => {
                checking.prefix_done(expected);
                continue;
            }
            Err(e) => {
                warn!(partial = %parent.join(&name).display(), error = %e, "cannot reopen partial file");
                checking.prefix_done(expected);
                continue;
            }
        };
        let hashed = resumable::hash_prefix_counting(&mut partial.file, partial.len, |n| {
            checking.advance(n);
            if stop.is_cancelled() {
                // Within one buffer: a shutdown's grace is short.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "the receiver is shutting down",
                ));
            }
            Ok(())
        });
        checking.prefix_done(expected);
        if stop.is_cancelled() {
            break;
        }
        match hashed {
            Ok((hash, hasher)) => {
                let h = Held {
                    partial,
                    hasher,
                    copy,
                };
                held.insert(i, (h, hash));
            }
            Err(e) => {
                warn!(partial = %partial.path.display(), error = %e, "cannot read partial file");
            }
        }
    }
    checking.finish();
    held
}

/// Reads frames from the socket and hands them to the writer, until the
/// sender's TransferEnd (or an alert) has been passed on.
///
/// Frames go in batches: those the socket already holds are gathered (up to
/// [`BATCH_BYTES`] or [`BATCH_FRAMES`]) and the batch is passed on before the
/// reader waits for more. Many small files then cost one wake-up of the writer
/// per batch instead of one per frame; a large record fills a batch alone, so
/// no more large records are held than [`PIPELINE_DEPTH`] allows.
///
/// A sender must make progress: at least [`MIN_PROGRESS`] bytes of file data
/// written (`written`, counted by the writer) or another record, such as a
/// FileEnd, within every [`IDLE_TIMEOUT`], so that empty or tiny Data
/// records cannot hold a session for ever.
async fn forward_frames<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    tx: mpsc::Sender<Vec<RawFrame>>,
    pool: &BufPool,
    first_wait: std::time::Duration,
    written: &std::sync::atomic::AtomicU64,
) -> Result<()> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut deadline = tokio::time::Instant::now() + first_wait;
    let mut mark = 0u64;
    loop {
        let mut wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        if wait.is_zero() {
            // The writer may have been busy (we waited for it): count what it wrote.
            let now_written = written.load(std::sync::atomic::Ordering::Relaxed);
            if now_written.saturating_sub(mark) < MIN_PROGRESS {
                return Err(Error::Timeout("the sender makes no progress"));
            }
            mark = now_written;
            deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
            wait = IDLE_TIMEOUT;
        }
        let read = reader.read_frame_pooled(pool, MAX_RECORD_BODY, wait);
        let mut read = std::pin::pin!(read);
        // Poll once; only if the frame is not there yet, pass the batch on
        // and then wait for it (the same read: nothing is lost).
        let read = match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => {
                if !batch.is_empty() {
                    bytes = 0;
                    if !pass_on(&tx, std::mem::take(&mut batch)).await {
                        // The writer stopped; it has the reason.
                        return Ok(());
                    }
                }
                read.await
            }
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            // What arrived before the failure still goes to the writer.
            end => {
                if !batch.is_empty() {
                    let _ = tx.send(batch).await;
                }
                return match end {
                    Err(e) => Err(e),
                    _ => Err(ProtoError::Truncated.into()),
                };
            }
        };
        let typ = frame.header.typ;
        let now_written = written.load(std::sync::atomic::Ordering::Relaxed);
        let data = typ == RecordType::Data as u8 || typ == RecordType::DataZstd as u8;
        if !data || now_written.saturating_sub(mark) >= MIN_PROGRESS {
            mark = now_written;
            deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        }
        let last = [
            RecordType::TransferEnd,
            RecordType::BatchEnd,
            RecordType::Alert,
        ]
        .iter()
        .any(|t| *t as u8 == typ);
        // Capacity, not length: a pooled buffer that once held a large record
        // keeps its megabyte even when it now holds a tiny one.
        bytes += frame.capacity();
        batch.push(frame);
        if last || bytes >= BATCH_BYTES || batch.len() >= BATCH_FRAMES {
            bytes = 0;
            if !pass_on(&tx, std::mem::take(&mut batch)).await {
                return Ok(());
            }
            if last {
                return Ok(());
            }
        }
    }
}

/// Passes a batch on to the writer (`false`: the writer stopped). When the
/// queue is full this waits until half of it is free: one wake-up of the
/// reader per half queue, not one per batch the writer takes (which, with
/// the reader faster than the writer, was a wake-up of each by the other for
/// every batch).
async fn pass_on(tx: &mpsc::Sender<Vec<RawFrame>>, batch: Vec<RawFrame>) -> bool {
    if tx.capacity() == 0 {
        return match tx.reserve_many(PIPELINE_DEPTH / 2).await {
            Ok(mut permits) => permits.next().map(|p| p.send(batch)).is_some(),
            Err(_) => false,
        };
    }
    tx.send(batch).await.is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_that_would_read_the_same_are_said_in_bytes() {
        assert_eq!(exact_if_alike(5 << 20, 4 << 20), "5.00 MiB");
        assert_eq!(exact_if_alike((5 << 20) + 1, 5 << 20), "5242881 B");
        assert_eq!(exact_if_alike(5 << 20, (5 << 20) + 1), "5242880 B");
    }

    #[test]
    fn the_status_message_tells_verification_from_saving() {
        assert_eq!(failures(3, 2, 0), "2 of 3 files failed verification");
        assert_eq!(
            failures(3, 0, 1),
            "1 of 3 files could not be saved by the receiver"
        );
        assert_eq!(
            failures(5, 1, 2),
            "1 of 5 files failed verification; 2 could not be saved by the receiver"
        );
    }

    /// `n` folders in pre-order, as an offer lists them: `top/gK`, then
    /// `top/gK/sJ` below each.
    fn folders(n: usize) -> Vec<Vec<String>> {
        let mut out = vec![vec!["top".to_owned()]];
        let mut k = 0;
        while out.len() < n {
            out.push(vec!["top".into(), format!("g{k}")]);
            for j in 0..3 {
                out.push(vec!["top".into(), format!("g{k}"), format!("s{j}")]);
            }
            k += 1;
        }
        out
    }

    #[test]
    fn many_folders_are_all_made_on_two_threads() {
        let dir = tempfile::tempdir().unwrap();
        let list = folders(FOLDERS_SHARED_FROM * 2);
        let mut made = make_folders(dir.path(), &list, None).unwrap();
        for components in &list {
            assert!(
                dir.path().join(components.join("/")).is_dir(),
                "{components:?}"
            );
        }
        // What was made is known: asking again makes nothing (a file in
        // the place of one would otherwise be found).
        let last = list.last().unwrap();
        let path = dir.path().join(last.join("/"));
        std::fs::remove_dir(&path).unwrap();
        let parts: Vec<&str> = last.iter().map(String::as_str).collect();
        assert_eq!(made.prepare(dir.path(), &parts).unwrap(), path);
        assert!(!path.exists());
    }

    #[test]
    fn new_folders_made_on_two_threads_are_staged_under_one_hidden_name_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let list = folders(FOLDERS_SHARED_FROM * 2);
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let mut made = make_folders(dir.path(), &list, Some(0xabc)).unwrap();
        let hidden = dir.path().join(".top.0000000000000abc.lspart");
        assert_eq!(names(dir.path()), [".top.0000000000000abc.lspart"]);
        for components in &list {
            let inside = hidden.join(components[1..].join("/"));
            assert!(inside.is_dir(), "{components:?}");
        }
        // Files go where the folder is now; they are named for where it goes.
        let last: Vec<&str> = list.last().unwrap().iter().map(String::as_str).collect();
        let (at, staged) = made.prepare_staged(dir.path(), &last).unwrap();
        assert_eq!(at, hidden.join(last[1..].join("/")));
        let staged = staged.expect("inside the staged folder");
        let published = made.into_staged();
        assert_eq!(
            published.named(staged, &at.join("f.txt")),
            dir.path().join(last.join("/")).join("f.txt")
        );
        published.publish();
        assert_eq!(names(dir.path()), ["top"]);
        for components in &list {
            assert!(
                dir.path().join(components.join("/")).is_dir(),
                "{components:?}"
            );
        }
    }

    #[test]
    fn the_first_folder_that_cannot_be_made_is_the_error_in_either_half() {
        let list = folders(FOLDERS_SHARED_FROM * 2);
        for blocked in [3, list.len() - 2] {
            let dir = tempfile::tempdir().unwrap();
            let target = &list[blocked];
            let path = dir.path().join(target.join("/"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"a file where a folder goes").unwrap();
            let (failed, err, made) = make_folders(dir.path(), &list, None).unwrap_err();
            assert_eq!(failed, target.as_slice());
            assert!(err.to_string().contains("is not a directory"), "{err}");
            // Undone, the folders made for the refused offer are gone; the
            // one holding the file in the way stays, with it.
            made.undo();
            let mut left = vec![];
            for e in walkdir::WalkDir::new(dir.path()).min_depth(1) {
                left.push(
                    e.unwrap()
                        .path()
                        .strip_prefix(dir.path())
                        .unwrap()
                        .to_owned(),
                );
            }
            let holder: Vec<PathBuf> = path
                .strip_prefix(dir.path())
                .unwrap()
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect();
            left.sort();
            let mut want = holder;
            want.sort();
            assert_eq!(left, want, "only the file in the way and its folders stay");
        }
    }
}
