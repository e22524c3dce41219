//! Sending, in named stages: sources (check the files), resolve (find the
//! receiver), connect and authenticate, then the exchange: offer/answer,
//! resume, stream, verdict.
//!
//! ```text
//!  run ─► sources::sources ─► resolve ─► connect::open ─► authenticate (trust::admit, confirm)
//!      ─► exchange::{offer, resume, stream, verdict, report}
//!  stream: reader thread (read file, BLAKE3, seal record) ──► bounded channel ──►
//!      socket writer task      (while another branch listens for the receiver's alerts)
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use localstream_proto::codec::HEADER_LEN;
use localstream_proto::handshake::Config as HandshakeConfig;
use localstream_proto::names::{escape_for_terminal, validate_wire_path};
use localstream_proto::record::{MAX_PLAINTEXT, RecordType};
use localstream_proto::transfer::fsm::{
    Answered, AwaitStatus, Batches, HeldPrefix, Next, Offering, Outcome, Prefix, Resuming,
    SendingFile, Streaming,
};
use localstream_proto::transfer::{
    ATTR_DIR, ATTR_EXEC, ATTR_STREAM, ATTR_TEXT, MAX_FILES, MAX_TEXT, Manifest, Mtime, OfferEntry,
};
use localstream_proto::{
    Error as ProtoError, Handshake, LocalIdentity, Opener, PeerIdentity, Sas, Sealer, Status,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span};

use crate::compress::{self, Compressor};
use crate::config::SendConfig;
use crate::confirm::{self, Asker, FirstContact};
use crate::conn::{self, BufPool, FrameReader, IDLE_TIMEOUT, RecordWriter};
use crate::consent::PROMPT_TIMEOUT;
use crate::context::Context;
use crate::discover;
use crate::error::{Error, ResolveError, Result, TransferError, TrustError};
use crate::event::{
    Event, Events, FailedFile, Notice, Progress, ResumeVerdict, Side, Skip, Then, TransferDone,
};
use crate::fsutil::resumable::{hash_prefix_counting, hashing_time};
use crate::label::PeerLabel;
use crate::store::{Direction, SessionEnd, Trust, now_ms};
use crate::trust::{self, Refusal, Tally};
use tokio_util::sync::CancellationToken;

/// How long to wait for the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ... per address, when discovery gave several.
const CONNECT_TIMEOUT_EACH: Duration = Duration::from_secs(3);
/// Socket send buffer asked for (the kernel may cap it, `net.core.wmem_max`).
const SEND_BUFFER: u32 = 4 << 20;
/// Addresses of one peer tried at most.
const MAX_ADDRESSES_TRIED: usize = 8;
/// How long to wait for the receiver's final status after the last byte.
const STATUS_TIMEOUT: Duration = Duration::from_secs(120);
/// Read deadline for the receiver's next word while we are still sending:
/// effectively none (progress is bounded by the write timeouts instead).
const WHILE_STREAMING: Duration = Duration::from_secs(24 * 3600);
/// Plaintext bytes per data record.
const CHUNK: usize = MAX_PLAINTEXT;
/// Sealed records buffered between the file reader and the socket.
const PIPELINE_DEPTH: usize = 4;

/// A local file about to be offered (listed from the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Where to read it (`-`: standard input).
    pub(crate) path: PathBuf,
    /// Its wire path.
    pub(crate) name: String,
    /// Its size (0 for a directory or standard input).
    pub(crate) size: u64,
    /// `ATTR_*` bits for the offer.
    attrs: u8,
    /// Its modification time (files only), offered to version 3 receivers.
    mtime: Option<Mtime>,
    /// The text of `send --text` (then `attrs` is [`ATTR_TEXT`] and there is
    /// no path).
    text: Option<Arc<[u8]>>,
}

/// The name a text message is offered under (a receiver shows it, and
/// saves nothing under it).
pub const TEXT_NAME: &str = "message.txt";

impl Source {
    /// How the offer lists it: with its modification time only for a
    /// receiver of protocol version 3 (`v3`; an older one refuses the bit).
    fn entry(&self, v3: bool) -> OfferEntry {
        OfferEntry {
            path: self.name.clone(),
            size: self.size,
            attrs: self.attrs,
            mtime: self.mtime.filter(|_| v3),
        }
    }

    /// The one entry of `send --text`.
    pub(crate) fn text(text: &str) -> Self {
        Source {
            path: PathBuf::new(),
            name: TEXT_NAME.to_owned(),
            size: text.len() as u64,
            attrs: ATTR_TEXT,
            mtime: None,
            text: Some(text.as_bytes().into()),
        }
    }

    pub(crate) fn is_text(&self) -> bool {
        self.text.is_some()
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.attrs & ATTR_DIR != 0
    }

    pub(crate) fn is_stream(&self) -> bool {
        self.attrs & ATTR_STREAM != 0
    }
}

/// The command-line path that means standard input.
pub const STDIN: &str = "-";

/// What a finished send reports.
#[derive(Debug)]
pub struct Sent {
    /// Files that arrived verified.
    pub delivered: usize,
    /// Files offered.
    pub offered: usize,
    /// Bytes sent.
    pub bytes: u64,
    /// Files that grew while they were sent (what they had when counted
    /// went).
    pub grown: usize,
}

mod connect;
mod exchange;
mod resolve;
mod sources;
mod stream;
pub(crate) use connect::open;
use exchange::{Agreed, Timing, exchange};
use resolve::{Resolution, resolve};
pub(crate) use sources::Listing;
use stream::produce;

/// First pause before another attempt (`--retry`); it doubles each time
const RETRY_FIRST_PAUSE: Duration = Duration::from_secs(1);
/// up to this.
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Runs `localstream send`, again and again after transient failures while
/// `--retry` allows (each attempt resumes where the last one stopped).
pub(crate) async fn run_retrying(
    cx: &Context,
    cfg: &SendConfig,
    stop: &CancellationToken,
) -> Result<Sent> {
    // The files are counted once (a small send is kept in memory): every
    // attempt offers the same ones, and each skipped path is reported once.
    let mut counting = if let Some(text) = &cfg.localsend.text {
        if text.len() as u64 > MAX_TEXT {
            return Err(Error::Usage(format!(
                "--text: {} is longer than a text message may be ({}); send it as a file",
                crate::units::human_bytes(text.len() as u64),
                crate::units::human_bytes(MAX_TEXT)
            )));
        }
        Counting::done(Listing::text(text))
    } else {
        Counting::start(cfg, &cx.events).await?
    };
    let sent = retrying(cx, cfg, stop, &mut counting).await?;
    counting.listing().await?.verdict(sent)
}

/// The count of a send's files ([`Listing::count`]): walking its folders
/// while the receiver is found and the handshake runs (the command-line
/// paths are checked before), then done.
struct Counting {
    walking: Option<tokio::task::JoinHandle<Result<Listing>>>,
    listing: Option<Arc<Listing>>,
}

impl Counting {
    fn done(listing: Listing) -> Counting {
        Counting {
            walking: None,
            listing: Some(Arc::new(listing)),
        }
    }

    /// Starts the count, on a blocking thread (walking a large tree takes
    /// a while), and returns once the command-line paths passed: a mistake
    /// there is an error before anything touches the network.
    async fn start(cfg: &SendConfig, events: &Events) -> Result<Counting> {
        let (files, name, exclude) = (cfg.files.clone(), cfg.name.clone(), cfg.exclude.clone());
        let events = events.here();
        let (checked, passed) = tokio::sync::oneshot::channel();
        let walking = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let listing = Listing::count(&files, name.as_deref(), &exclude, &events, move || {
                let _ = checked.send(());
            })?;
            tracing::debug!(
                entries = listing.entries,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "counted"
            );
            Ok(listing)
        });
        let mut counting = Counting {
            walking: Some(walking),
            listing: None,
        };
        if passed.await.is_err() {
            // The count ended before its paths passed: its error.
            counting.listing().await?;
        }
        Ok(counting)
    }

    /// The listing, once the count is done.
    async fn listing(&mut self) -> Result<Arc<Listing>> {
        if let Some(walking) = self.walking.take() {
            self.listing = Some(Arc::new(walking.await??));
        }
        self.listing
            .clone()
            .ok_or_else(|| Error::Usage("the files could not be counted".into()))
    }
}

/// [`run`], again after transient failures while `--retry` allows.
async fn retrying(
    cx: &Context,
    cfg: &SendConfig,
    stop: &CancellationToken,
    sources: &mut Counting,
) -> Result<Sent> {
    let Some(window) = cfg.retry else {
        return run(cx, cfg, stop, sources).await;
    };
    let give_up = Instant::now() + window;
    let mut pause = RETRY_FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        let err = match run(cx, cfg, stop, sources).await {
            Err(e) if is_transient(&e) => e,
            done => return done,
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left < pause {
            cx.events.notice(Notice::GivingUp {
                error: err.to_string(),
                attempts: attempt,
                window: window.as_secs_f64().round(),
            });
            return Err(err);
        }
        attempt += 1;
        cx.events.notice(Notice::Retrying {
            error: err.to_string(),
            pause: pause.as_secs_f64(),
            attempt,
            left: left.as_secs(),
        });
        tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Error::Interrupted),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_MAX_PAUSE);
    }
}

/// Whether another attempt may succeed: the network or the receiver went
/// away for a moment, or was busy. Refusals, key changes, bad files and
/// protocol violations are final.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::Connect { .. }
        | Error::Io(_)
        | Error::Timeout(_)
        | Error::Resolve(ResolveError::NotFound { .. }) => true,
        Error::Transfer(TransferError::Refused { status, .. }) => *status == Status::Busy,
        Error::Transfer(TransferError::Stopped(s)) => s.transient,
        Error::Protocol(p) => match p {
            ProtoError::Truncated => true,
            ProtoError::PeerAlert { status, .. } => {
                matches!(status, Status::Busy | Status::Timeout)
            }
            _ => false,
        },
        _ => false,
    }
}

/// Runs `localstream send` once, with the files listed: resolve, connect and
/// authenticate, then the exchange, and the session's history. `stop`
/// (Ctrl-C, a front end's cancel) ends it as interrupted: before the
/// exchange at once, during it with its history and how far it got.
async fn run(
    cx: &Context,
    cfg: &SendConfig,
    stop: &CancellationToken,
    sources: &mut Counting,
) -> Result<Sent> {
    let ready = tokio::select! {
        biased;
        () = stop.cancelled() => return Err(Error::Interrupted),
        r = reach(cx, cfg, sources) => r?,
    };
    let ready = match ready {
        Ready::LocalStream(ready) => ready,
        #[cfg(feature = "localsend")]
        Ready::LocalSend(job) => {
            return tokio::select! {
                biased;
                () = stop.cancelled() => Err(Error::Interrupted),
                r = crate::localsend::send::run(cx, &job) => r,
            };
        }
    };
    let Connected {
        sources,
        first_walk,
        link,
        peer,
        session_id: id,
        addr,
        timing,
    } = *ready;
    let started_ms = now_ms();
    let span = info_span!(
        "session",
        id = %trust::session_hex(&id),
        peer = %discover::short_id(&uuid::Uuid::from_bytes(peer.node_id))
    );
    let accepted = std::sync::atomic::AtomicBool::new(false);
    let tally = Arc::new(Tally::default());
    let exchanged = exchange(
        link,
        &sources,
        first_walk,
        &peer,
        &accepted,
        cx,
        cfg.compress,
        timing,
        &tally,
    )
    .instrument(span);
    let result = tokio::select! {
        biased;
        () = stop.cancelled() => Err(Error::Interrupted),
        r = exchanged => r,
    };
    if !accepted.load(std::sync::atomic::Ordering::SeqCst) {
        // No Answer 200: a refusal, an alert, a cut or a timeout pins nothing
        // (one redirected connection must not pin an impostor's key).
        let (outcome, detail) = trust::outcome(result.as_ref().err(), false);
        let store = &cx.store;
        trust::record_if_pinned(
            store,
            &cx.events,
            &peer,
            &id,
            Direction::Send,
            outcome,
            &detail,
        )
        .await;
        return result;
    }
    // Stopped half way: say how far it got (a later run resumes from there).
    let result = result.map_err(|e| {
        let transient = is_transient(&e);
        tally.stopped(e, Side::Send, &peer.name, transient)
    });
    let (outcome, detail) = trust::outcome(result.as_ref().err(), result.is_ok());
    // Regular files and this session's file bytes, as the receiver counts them;
    // for a stop, the figures its message gave (the reader thread may still
    // count a record after it).
    let figures = match &result {
        Err(Error::Transfer(TransferError::Stopped(s))) => trust::Figures {
            files: s.files,
            bytes: s.bytes,
            resumed: s.resumed,
        },
        _ => tally.figures(),
    };
    let end = SessionEnd {
        ended_ms: now_ms(),
        files: figures.files,
        bytes: figures.bytes,
        resumed: figures.resumed,
        outcome,
        detail,
    };
    trust::record_session(
        &cx.store,
        &cx.events,
        &peer,
        Some(addr),
        &id,
        Direction::Send,
        started_ms,
        end,
    )
    .await;
    result
}

/// A receiver reached and authenticated, ready for the exchange.
struct Connected {
    sources: Arc<Listing>,
    /// The first batch, walked and encoded while the receiver is
    /// authenticated (for a version 4 receiver).
    first_walk: Option<tokio::task::JoinHandle<exchange::Walked>>,
    link: exchange::Link,
    peer: PeerIdentity,
    session_id: [u8; 16],
    addr: SocketAddr,
    timing: Timing,
}

/// What [`reach`] reached.
enum Ready {
    /// A LocalStream node, authenticated.
    LocalStream(Box<Connected>),
    /// A LocalSend device, and what to send it.
    #[cfg(feature = "localsend")]
    LocalSend(crate::localsend::send::Job),
}

/// Resolve, connect and authenticate: everything before the
/// exchange (nothing of it needs a history when it is stopped).
async fn reach(cx: &Context, cfg: &SendConfig, counting: &mut Counting) -> Result<Ready> {
    let (addrs, expected) = match resolve(cx, cfg).await? {
        Resolution::LocalStream(addrs, expected) => (addrs, expected),
        #[cfg(feature = "localsend")]
        Resolution::LocalSend(reach) => {
            let sources = counting.listing().await?;
            return Ok(Ready::LocalSend(crate::localsend::send::Job {
                reach,
                payload: match &cfg.localsend.text {
                    Some(t) => crate::localsend::send::Payload::Text(t.clone()),
                    None => crate::localsend::send::Payload::Files(
                        sources
                            .all(
                                crate::localsend::wire::MAX_FILES,
                                "a LocalSend session takes at most that many",
                            )?
                            .to_vec(),
                    ),
                },
                pin: cfg.localsend.pin.clone(),
                port: cfg.localsend.port,
            }));
        }
    };
    let connecting = Instant::now();
    let (reader, wr, session, addr) = open(cx.identity.clone(), &addrs).await?;
    let v3 = localstream_proto::handshake::has_v3_transfer(session.version);
    let batches = localstream_proto::handshake::has_batches(session.version);
    let handshake_done = connecting.elapsed();
    let mut writer = RecordWriter {
        inner: wr,
        sealer: session.sealer,
    };
    let timing = Timing {
        connecting,
        handshake_done,
    };
    if let Some(expected) = &expected {
        discover::check_identity(expected, &session.peer, addr)?;
    }
    let peer = session.peer;
    // The peer is checked while the count may still run (only a first
    // contact's question waits for it).
    authenticate(cx, cfg, &mut writer, &peer, &session.sas, addr, counting).await?;
    let sources = listed(counting, &mut writer).await?;
    if !v3 && sources.is_text() {
        return Err(TransferError::TextUnsupported {
            version: session.version,
        }
        .into());
    }
    // The first batch is cut and encoded in the background (a receiver
    // older than version 4 takes every file at once).
    let first_walk = batches.then(|| {
        exchange::walk_ahead(
            sources.batches(&cx.events),
            Batches::new(sources.manifest()),
        )
    });
    let link = exchange::Link {
        reader,
        writer,
        opener: session.opener,
        v3,
        batches,
    };
    Ok(Ready::LocalStream(Box::new(Connected {
        sources,
        first_walk,
        link,
        peer,
        session_id: session.session_id,
        addr,
        timing,
    })))
}

/// The count, once done; if it failed, the receiver is told why the
/// sender goes.
async fn listed(
    counting: &mut Counting,
    writer: &mut RecordWriter<OwnedWriteHalf>,
) -> Result<Arc<Listing>> {
    match counting.listing().await {
        Ok(sources) => Ok(sources),
        Err(e) => {
            writer
                .alert(Status::Cancelled, "the sender could not list its files")
                .await;
            Err(e)
        }
    }
}

/// Authenticate: the proven peer against the peer store (a changed key, a
/// blocked node, an impostor under a pinned name or address), then, on
/// first contact, the user's comparison of the codes. Nothing about the
/// files leaves before this passes; a refusal tells the receiver why.
#[allow(clippy::too_many_arguments)] // the connection's facts, each used once
async fn authenticate(
    cx: &Context,
    cfg: &SendConfig,
    writer: &mut RecordWriter<OwnedWriteHalf>,
    peer: &PeerIdentity,
    sas: &Sas,
    addr: SocketAddr,
    counting: &mut Counting,
) -> Result<()> {
    let contacted = match trust::admit(&cx.store, peer, trust::Reached::Dialed(addr)).await {
        Ok(c) => c,
        Err(refusal) => {
            let (status, message, e) = match refusal {
                Refusal::KeyChanged(e) => (
                    Status::NotTrusted,
                    "the sender has a different key pinned for your node id and refuses to send",
                    e,
                ),
                Refusal::Store(e) => (
                    Status::InternalError,
                    "the sender cannot use its peer store",
                    e,
                ),
                Refusal::Blocked => (
                    Status::Cancelled,
                    "the sender has blocked this node",
                    Error::from(TrustError::Blocked(format!(
                        "{} (id {})",
                        PeerLabel::of(peer).short(),
                        uuid::Uuid::from_bytes(peer.node_id)
                    ))),
                ),
                Refusal::Impostor(e) => (
                    Status::NotTrusted,
                    "the sender knows another node by this name or address",
                    e,
                ),
            };
            writer.alert(status, message).await;
            return Err(e);
        }
    };
    cx.events.emit(Event::Connected {
        peer: PeerLabel::of(peer),
        address: addr,
    });
    if contacted.first {
        // The question says how many files and folders would go.
        let listing = listed(counting, writer).await?;
        let then = Then::Send {
            files: (listing.entries - listing.folders) as usize,
            folders: listing.folders as usize,
        };
        let asker = Asker {
            policy: cfg.first_contact,
            questions: &cx.questions,
            events: &cx.events,
        };
        if let Err(e) = confirm::first_contact(asker, peer, sas, then).await {
            writer
                .alert(
                    Status::Cancelled,
                    "the sender did not confirm the verification code of this first contact",
                )
                .await;
            return Err(e);
        }
    }
    let shown = !contacted.first || cfg.first_contact == FirstContact::Yes;
    if contacted.trust != Trust::Trusted && shown {
        cx.events.notice(Notice::Code {
            peer: PeerLabel::of(peer),
            code: *sas,
            first: contacted.first,
            trust: contacted.trust,
        });
    } else {
        info!(code = %sas, "verification code (peer trusted or confirmed)");
    }
    Ok(())
}
