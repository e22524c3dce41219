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
    Answered, AwaitStatus, HeldPrefix, Next, Offering, Outcome, Prefix, Resuming, SendingFile,
    Streaming,
};
use localstream_proto::transfer::{ATTR_DIR, ATTR_EXEC, ATTR_STREAM, MAX_FILES, OfferEntry};
use localstream_proto::{
    Error as ProtoError, Handshake, LocalIdentity, Opener, PeerIdentity, Sas, Sealer, Status,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span};

use crate::compress::{self, Compressor};
use crate::config::{Discovery, SendConfig, Target};
use crate::confirm::{self, Asker, FirstContact};
use crate::conn::{self, BufPool, FrameReader, IDLE_TIMEOUT, RecordWriter};
use crate::consent::PROMPT_TIMEOUT;
use crate::context::Context;
use crate::discover;
use crate::error::{Error, ResolveError, Result, TransferError, TrustError};
use crate::event::{
    Event, Events, FailedFile, Notice, Progress, Resolved, ResumeVerdict, Side, Skip, Then,
    TransferDone,
};
use crate::fsutil::resumable::{hash_prefix_counting, hashing_time};
use crate::label::PeerLabel;
use crate::store::{Direction, Lookup, PeerStore, SessionEnd, Trust, now_ms};
use crate::trust::{self, Refusal, Tally};
use tokio_util::sync::CancellationToken;
use localstream_discovery::PeerRecord;
use localstream_discovery::txt::FINGERPRINT_PREFIX_BYTES;

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
}

impl Source {
    /// How the offer lists it.
    fn entry(&self) -> OfferEntry {
        OfferEntry {
            path: self.name.clone(),
            size: self.size,
            attrs: self.attrs,
            mtime: None,
        }
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
}

mod connect;
mod exchange;
mod sources;
mod stream;
pub(crate) use connect::open;
use exchange::{Agreed, Timing, exchange};
pub(crate) use sources::{Listed, sources};
use stream::{AbortOnDrop, produce};

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
    // The files are listed once: every attempt offers the same ones, and
    // each skipped path is reported once.
    let listed = if cfg.localsend.text.is_some() {
        Listed::default()
    } else {
        sources(&cfg.files, &cfg.stdin_name, &cfg.exclude, &cx.events)?
    };
    let sent = retrying(cx, cfg, stop, &listed.sources).await?;
    listed.verdict(sent)
}

/// [`run`], again after transient failures while `--retry` allows.
async fn retrying(
    cx: &Context,
    cfg: &SendConfig,
    stop: &CancellationToken,
    sources: &[Source],
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

/// Where the peer store last reached the peer the user means by `name`, and
/// what it must prove to be (its id and pinned key): `None` when no such
/// peer, or none with an address.
fn remembered(store: &PeerStore, name: &str) -> Result<Option<(Vec<SocketAddr>, PeerRecord)>> {
    let data = store.load()?;
    let entry = match data.lookup(name) {
        Ok(e) => e,
        Err(Lookup::NotFound) => return Ok(None),
        Err(reason) => {
            return Err(Error::from(ResolveError::UnknownPeer {
                query: name.to_owned(),
                reason,
            }));
        }
    };
    if entry.addresses.is_empty() || entry.trust == Trust::Blocked {
        return Ok(None);
    }
    let mut fingerprint_prefix = [0u8; FINGERPRINT_PREFIX_BYTES];
    fingerprint_prefix.copy_from_slice(&entry.fingerprint[..FINGERPRINT_PREFIX_BYTES]);
    let record = PeerRecord {
        version: 1,
        node_id: entry.node_id,
        fingerprint_prefix,
        name: entry.name().unwrap_or_default().to_owned(),
        mac: entry.mac,
    };
    Ok(Some((entry.addresses.clone(), record)))
}

/// Runs `localstream send` once, with the files listed: resolve, connect and
/// authenticate, then the exchange, and the session's history. `stop`
/// (Ctrl-C, a front end's cancel) ends it as interrupted: before the
/// exchange at once, during it with its history and how far it got.
async fn run(
    cx: &Context,
    cfg: &SendConfig,
    stop: &CancellationToken,
    sources: &[Source],
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
    let exchanged = exchange(link, &sources, &peer, &accepted, cx, cfg.compress, timing, &tally)
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
    // Regular files and this session's file bytes, as the receiver counts them.
    let figures = tally.figures();
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
    sources: Vec<Source>,
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
async fn reach(cx: &Context, cfg: &SendConfig, sources: &[Source]) -> Result<Ready> {
    let (addrs, expected) = match resolve(cx, cfg).await? {
        Resolution::LocalStream(addrs, expected) => (addrs, expected),
        #[cfg(feature = "localsend")]
        Resolution::LocalSend(reach) => {
            return Ok(Ready::LocalSend(crate::localsend::send::Job {
                reach,
                payload: match &cfg.localsend.text {
                    Some(t) => crate::localsend::send::Payload::Text(t.clone()),
                    None => crate::localsend::send::Payload::Files(sources.to_vec()),
                },
                pin: cfg.localsend.pin.clone(),
                port: cfg.localsend.port,
            }));
        }
    };
    if cfg.localsend.text.is_some() {
        return Err(Error::Usage(
            "--text goes to LocalSend devices only; send a LocalStream node a file instead".into(),
        ));
    }
    let sources = sources.to_vec();
    let connecting = Instant::now();
    let (reader, wr, session, addr) = open(cx.identity.clone(), &addrs).await?;
    let timing = Timing {
        connecting,
        handshake_done: connecting.elapsed(),
    };
    if let Some(expected) = &expected {
        discover::check_identity(expected, &session.peer, addr)?;
    }
    let mut writer = RecordWriter {
        inner: wr,
        sealer: session.sealer,
    };
    let peer = session.peer;
    authenticate(
        cx,
        cfg,
        &mut writer,
        &peer,
        &session.sas,
        addr,
        sources.len(),
    )
    .await?;
    let link = exchange::Link {
        reader,
        writer,
        opener: session.opener,
    };
    Ok(Ready::LocalStream(Box::new(Connected {
        sources,
        link,
        peer,
        session_id: session.session_id,
        addr,
        timing,
    })))
}

/// Resolve: the receiver's addresses, and what it must prove to be when it
/// was found by name (by discovery, else where the peer store last reached it).
async fn resolve(cx: &Context, cfg: &SendConfig) -> Result<Resolution> {
    let name = match &cfg.target {
        #[cfg(feature = "localsend")]
        Target::Addr(a) if cfg.localsend.on && a.port() == cfg.localsend.port => {
            return Ok(Resolution::LocalSend(crate::localsend::send::Reach {
                addr: *a,
                expect: None,
            }));
        }
        Target::Addr(a) => return Ok(Resolution::LocalStream(vec![*a], None)),
        Target::Lookup(name) => name,
    };
    #[cfg(feature = "localsend")]
    if cfg.localsend.on
        && let Some(found) = localsend_pick(cx, cfg, name).await?
    {
        return Ok(found);
    }
    resolve_localstream(cx, cfg, name)
        .await
        .map(|(a, r)| Resolution::LocalStream(a, r))
}

/// Whom [`resolve`] found, and which protocol reaches it.
enum Resolution {
    /// A LocalStream node: its addresses, and what it must prove to be.
    LocalStream(Vec<SocketAddr>, Option<PeerRecord>),
    /// A LocalSend device.
    #[cfg(feature = "localsend")]
    LocalSend(crate::localsend::send::Reach),
}

/// A LocalSend device for `name`: from the store with discovery off, or
/// when discovery finds one and no LocalStream node answers to the name.
/// `None`: look for a LocalStream node as usual.
#[cfg(feature = "localsend")]
async fn localsend_pick(cx: &Context, cfg: &SendConfig, name: &str) -> Result<Option<Resolution>> {
    use crate::localsend::send::Reach;
    let remembered = {
        let data = cx.store.load()?;
        data.lookup(name).ok().and_then(|e| {
            let is_device = e.localsend;
            let addr = e.addresses.first().copied();
            (is_device && e.trust != Trust::Blocked)
                .then_some(addr)
                .flatten()
                .map(|addr| Reach {
                    addr,
                    expect: Some(e.fingerprint),
                })
        })
    };
    let Discovery::On(interfaces) = &cfg.discovery else {
        return Ok(remembered.map(Resolution::LocalSend));
    };
    let started = Instant::now();
    let own = uuid::Uuid::from_bytes(cx.identity.node_id());
    let lstream = discover::find(interfaces, name, cfg.find_timeout, own);
    let lsend = crate::localsend::find(
        cx,
        cfg.localsend.port,
        name,
        interfaces,
        cfg.find_timeout,
        cfg.localsend.scan,
    );
    tokio::pin!(lstream, lsend);
    let devices = tokio::select! {
        r = &mut lstream => match r {
            // A LocalStream node of that name: the usual way.
            Ok(_) => return Ok(None),
            Err(Error::Resolve(ResolveError::NotFound { .. })) => lsend.await?,
            Err(e) => return Err(e),
        },
        d = &mut lsend => {
            let d = d?;
            if d.is_empty() {
                return Ok(None);
            }
            // A LocalStream node of the same name wins, if it answers now;
            // one that also speaks LocalSend is waited for in full.
            let wait = if d.iter().all(crate::localsend::Device::is_localstream) {
                cfg.find_timeout
            } else {
                Duration::from_millis(300)
            };
            match tokio::time::timeout(wait, &mut lstream).await {
                Ok(Ok(_)) => return Ok(None),
                _ => d,
            }
        }
    };
    match devices.as_slice() {
        [] => Ok(remembered.map(Resolution::LocalSend)),
        [d] => {
            cx.events.notice(Notice::Resolved(Resolved::Found {
                who: format!(
                    "{} (LocalSend, {}) [{}]",
                    escape_for_terminal(&d.info.shown_alias()),
                    discover::short_id(&d.node_id()),
                    crate::identity::short_fingerprint(&d.fingerprint)
                ),
                seconds: started.elapsed().as_secs_f64(),
            }));
            Ok(Some(Resolution::LocalSend(Reach {
                addr: d.addr,
                expect: Some(d.fingerprint),
            })))
        }
        many => Err(ResolveError::Ambiguous {
            query: name.to_owned(),
            matches: many.iter().map(device_match).collect(),
        }
        .into()),
    }
}

#[cfg(feature = "localsend")]
fn device_match(d: &crate::localsend::Device) -> crate::error::PeerMatch {
    crate::error::PeerMatch {
        name: format!("{} (LocalSend)", d.info.shown_alias()),
        id: d.node_id(),
        addresses: vec![d.addr.to_string()],
    }
}

/// Resolve a LocalStream node by name: by discovery, else where the peer
/// store last reached it.
async fn resolve_localstream(
    cx: &Context,
    cfg: &SendConfig,
    name: &str,
) -> Result<(Vec<SocketAddr>, Option<PeerRecord>)> {
    let store = &cx.store;
    let Discovery::On(interfaces) = &cfg.discovery else {
        let Some((addrs, record)) = remembered(store, name)? else {
            return Err(Error::Usage(format!(
                "no peer named '{}' with a known address in the peer store: with \
                 --no-discovery give its address (IP or IP:PORT), or `localstream add {} IP`",
                escape_for_terminal(name),
                escape_for_terminal(name)
            )));
        };
        let who = discover::describe(&record);
        let found = Resolved::FromStore {
            who,
            addrs: addrs.clone(),
        };
        cx.events.notice(Notice::Resolved(found));
        return Ok((addrs, Some(record)));
    };
    let started = Instant::now();
    let own = uuid::Uuid::from_bytes(cx.identity.node_id());
    match discover::find(interfaces, name, cfg.find_timeout, own).await {
        Ok(peer) => {
            cx.events.notice(Notice::Resolved(Resolved::Found {
                who: discover::describe(&peer.record),
                seconds: started.elapsed().as_secs_f64(),
            }));
            trust::check_found(store, name, &peer.record).await?;
            Ok((peer.addrs, Some(peer.record)))
        }
        // Not on the network (another subnet, a VPN, multicast blocked):
        // where it was reached last time may still work.
        Err(e @ Error::Resolve(ResolveError::NotFound { .. })) => match remembered(store, name)? {
            Some((addrs, record)) => {
                cx.events.notice(Notice::Resolved(Resolved::Remembered {
                    who: discover::describe(&record),
                    looked: cfg.find_timeout.as_secs_f64(),
                    addrs: addrs.clone(),
                }));
                Ok((addrs, Some(record)))
            }
            None => Err(e),
        },
        Err(e) => Err(e),
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
    files: usize,
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
        let asker = Asker {
            policy: cfg.first_contact,
            questions: &cx.questions,
            events: &cx.events,
        };
        if let Err(e) = confirm::first_contact(asker, peer, sas, Then::Send(files)).await {
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
