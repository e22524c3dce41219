//! Sending: check the files, connect, authenticate, offer, stream, and wait
//! for the receiver's verdict.
//!
//! ```text
//!  reader thread (read file, BLAKE3, seal record) ──► bounded channel ──►
//!      socket writer task      (while another branch listens for the receiver's alerts)
//! ```

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
use localstream_proto::transfer::{
    ATTR_DIR, ATTR_EXEC, ATTR_STREAM, Answer, FileEnd, FinalStatus, MAX_FILES, OfferEntry,
    OfferPart, Resume, ResumeFile, TransferEnd,
};
use localstream_proto::{Error as ProtoError, Handshake, LocalIdentity, Opener, Sealer, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span};

use crate::compress::{self, Compressor};
use crate::config::{Discovery, SendConfig, Target};
use crate::confirm;
use crate::conn::{self, BufPool, FrameReader, IDLE_TIMEOUT, RecordWriter};
use crate::consent::PROMPT_TIMEOUT;
use crate::discover;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::fsutil::resumable::{hash_prefix, hashing_time};
use crate::identity::short_fingerprint;
use crate::progress::{Progress, human_bytes, resumed_note, summary, wire_note};
use crate::store::{Direction, Lookup, PeerStore, SessionEnd, Trust, now_ms};
use crate::trust;
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

/// A local file about to be offered.
#[derive(Debug, Clone)]
struct Source {
    /// Where to read it (`-`: standard input).
    path: PathBuf,
    /// Its wire path.
    name: String,
    /// Its size (0 for a directory or standard input).
    size: u64,
    /// `ATTR_*` bits for the offer.
    attrs: u8,
}

impl Source {
    fn is_dir(&self) -> bool {
        self.attrs & ATTR_DIR != 0
    }

    fn is_stream(&self) -> bool {
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

/// Connects to the first address that answers, in order. With several
/// addresses each gets a shorter time, and all of them together at most
/// [`CONNECT_TIMEOUT`] (an announcement can list many, some dead).
async fn connect(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr)> {
    let each = if addrs.len() > 1 {
        CONNECT_TIMEOUT_EACH
    } else {
        CONNECT_TIMEOUT
    };
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut last = None;
    for &addr in addrs.iter().take(MAX_ADDRESSES_TRIED) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let err = match tokio::time::timeout(each.min(left), connect_one(addr)).await {
            Ok(Ok(s)) => return Ok((s, addr)),
            Ok(Err(source)) => source,
            Err(_) => std::io::ErrorKind::TimedOut.into(),
        };
        info!(%addr, error = %err, "connect failed");
        last = Some(Error::Connect { addr, source: err });
    }
    Err(last.unwrap_or_else(|| Error::Usage("the receiver has no address".into())))
}

/// Connects to the first of `addrs` that answers and runs the handshake as
/// the initiator: the reading half, the writing half, the session, and the
/// address that answered.
pub(crate) async fn open(
    identity: Arc<LocalIdentity>,
    addrs: &[SocketAddr],
) -> Result<(
    FrameReader<OwnedReadHalf>,
    OwnedWriteHalf,
    localstream_proto::Session,
    SocketAddr,
)> {
    let (stream, addr) = connect(addrs).await?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd);
    let mut hello = vec![];
    let hs = Handshake::initiator(HandshakeConfig::new(identity), &mut rand::rng(), &mut hello);
    let session = conn::handshake(&mut reader, &mut wr, hs, hello).await?;
    Ok((reader, wr, session, addr))
}

/// One TCP connection with a large send buffer: a megabyte record then goes
/// to the kernel in one write while the next one is being sealed.
async fn connect_one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Err(e) = socket.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the send buffer");
    }
    socket.connect(addr).await
}

/// Expands the command line into the files to offer, checking each before
/// anything touches the network: a file goes under its own name, a folder as
/// every file below it, under `folder/sub/file`. Inside a folder, symbolic
/// links (and sockets, pipes, devices) are skipped with a notice: nothing
/// outside the tree is ever sent because a link pointed there. A path given
/// on the command line is followed, even when it is a link: that is an
/// explicit choice.
fn sources(paths: &[PathBuf], stdin_name: &str) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let stdin_count = paths.iter().filter(|p| p.as_os_str() == STDIN).count();
    if stdin_count > 1 {
        return Err(Error::Usage(
            "standard input (`-`) can be sent only once per send".into(),
        ));
    }
    for path in paths {
        if path.as_os_str() == STDIN {
            validate_wire_path(stdin_name)
                .ok()
                .filter(|components| components.len() == 1)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--name {}: not a usable file name",
                        escape_for_terminal(stdin_name)
                    ))
                })?;
            out.push(Source {
                path: path.clone(),
                name: stdin_name.to_owned(),
                size: 0,
                attrs: ATTR_STREAM,
            });
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
        let name = top_name(path)?;
        if meta.is_dir() {
            check_name(path, &name)?;
            // The folder itself, so that it exists even when empty.
            out.push(Source {
                path: path.clone(),
                name: name.clone(),
                size: 0,
                attrs: ATTR_DIR,
            });
            add_tree(path, &name, &mut out)?;
        } else if meta.is_file() {
            out.push(source(path, name, &meta)?);
        } else {
            return Err(Error::Usage(format!(
                "{}: not a regular file or folder",
                shown(path)
            )));
        }
        if out.len() > MAX_FILES as usize {
            return Err(Error::Usage(format!(
                "more than {MAX_FILES} files in one send: send the folders one by one"
            )));
        }
    }
    Ok(out)
}

/// The name a command-line path is sent under: its last component (of the
/// absolute path for `.` and the like).
fn top_name(path: &Path) -> Result<String> {
    let named = match path.file_name() {
        Some(n) => Some(n.to_owned()),
        None => std::fs::canonicalize(path)
            .map_err(|e| Error::file(path, e))?
            .file_name()
            .map(ToOwned::to_owned),
    };
    let named = named.ok_or_else(|| {
        Error::Usage(format!(
            "{}: has no name to send it under (send the files inside it instead)",
            shown(path)
        ))
    })?;
    named
        .into_string()
        .map_err(|_| Error::Usage(format!("{}: the name is not valid UTF-8", shown(path))))
}

/// A local path as shown on the terminal (escaped: file names are anyone's).
fn shown(path: &Path) -> String {
    escape_for_terminal(&path.display().to_string())
}

/// Whether `name` can go on the wire for `path`.
fn check_name(path: &Path, name: &str) -> Result<()> {
    validate_wire_path(name).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot be sent under this name: {e}",
            shown(path)
        ))
    })?;
    Ok(())
}

/// Whether the file is executable (by anyone): the receiver then makes its
/// copy executable too.
#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// One file, checked: readable, and a valid wire path.
fn source(path: &Path, name: String, meta: &std::fs::Metadata) -> Result<Source> {
    File::open(path).map_err(|e| Error::file(path, e))?;
    check_name(path, &name)?;
    if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
        return Err(Error::Usage(format!(
            "{}: a partial file of an unfinished transfer (receivers refuse names ending in {})",
            shown(path),
            crate::fsutil::PARTIAL_SUFFIX
        )));
    }
    Ok(Source {
        path: path.to_owned(),
        name,
        size: meta.len(),
        attrs: if executable(meta) { ATTR_EXEC } else { 0 },
    })
}

/// Every file under the folder `root`, sent as `top/...`, in name order.
fn add_tree(root: &Path, top: &str, out: &mut Vec<Source>) -> Result<()> {
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            Error::file(&path, e.into())
        })?;
        let path = entry.path();
        let kind = entry.file_type();
        if !kind.is_file() && !kind.is_dir() {
            eprintln!(
                "skipping {}: {}",
                shown(path),
                if kind.is_symlink() {
                    "symbolic links are not sent"
                } else {
                    "not a regular file"
                }
            );
            continue;
        }
        let mut name = top.to_owned();
        for c in entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
        {
            let c = c.as_os_str().to_str().ok_or_else(|| {
                Error::Usage(format!("{}: the name is not valid UTF-8", shown(path)))
            })?;
            name.push('/');
            name.push_str(c);
        }
        if kind.is_dir() {
            check_name(path, &name)?;
            out.push(Source {
                path: path.to_owned(),
                name,
                size: 0,
                attrs: ATTR_DIR,
            });
        } else if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
            eprintln!(
                "skipping {}: a partial file of an unfinished transfer",
                shown(path)
            );
            continue;
        } else {
            let meta = entry.metadata().map_err(|e| Error::file(path, e.into()))?;
            out.push(source(path, name, &meta)?);
        }
        if out.len() > MAX_FILES as usize {
            return Ok(());
        }
    }
    Ok(())
}

/// First pause before another attempt (`--retry`); it doubles each time
const RETRY_FIRST_PAUSE: Duration = Duration::from_secs(1);
/// up to this.
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Runs `localstream send`, again and again after transient failures while
/// `--retry` allows (each attempt resumes where the last one stopped).
pub async fn run_retrying(
    identity: Arc<LocalIdentity>,
    store: &PeerStore,
    cfg: &SendConfig,
    progress: bool,
) -> Result<Sent> {
    let Some(window) = cfg.retry else {
        return run(identity, store, cfg, progress).await;
    };
    let give_up = Instant::now() + window;
    let mut pause = RETRY_FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        let err = match run(identity.clone(), store, cfg, progress).await {
            Err(e) if is_transient(&e) => e,
            done => return done,
        };
        let left = give_up.saturating_duration_since(Instant::now());
        if left < pause {
            eprintln!("{err}");
            eprintln!(
                "giving up after {attempt} attempt{} ({} s of --retry)",
                if attempt == 1 { "" } else { "s" },
                window.as_secs_f64().round()
            );
            return Err(err);
        }
        attempt += 1;
        eprintln!("{err}");
        eprintln!(
            "retrying in {} s (attempt {attempt}, giving up in {} s)",
            pause.as_secs_f64(),
            left.as_secs()
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX_PAUSE);
    }
}

/// Whether another attempt may succeed: the network or the receiver went
/// away for a moment, or was busy. Refusals, key changes, bad files and
/// protocol violations are final.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::Connect { .. } | Error::Io(_) | Error::Timeout(_) | Error::PeerNotFound { .. } => {
            true
        }
        Error::Refused { status, .. } => *status == Status::Busy,
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
            return Err(Error::UnknownPeer {
                query: name.to_owned(),
                reason,
            });
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

/// "10.0.0.2:47470, 10.8.0.2:47470"
fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `localstream send` once.
pub async fn run(
    identity: Arc<LocalIdentity>,
    store: &PeerStore,
    cfg: &SendConfig,
    progress: bool,
) -> Result<Sent> {
    let sources = sources(&cfg.files, &cfg.stdin_name)?;
    let (addrs, expected) = match (&cfg.target, &cfg.discovery) {
        (Target::Addr(a), _) => (vec![*a], None),
        (Target::Lookup(name), Discovery::On(interfaces)) => {
            let started = Instant::now();
            let own = uuid::Uuid::from_bytes(identity.node_id());
            match discover::find(interfaces, name, cfg.find_timeout, own).await {
                Ok(peer) => {
                    eprintln!(
                        "found {} in {:.2} s",
                        discover::describe(&peer.record),
                        started.elapsed().as_secs_f64()
                    );
                    trust::check_found(store, name, &peer.record).await?;
                    (peer.addrs, Some(peer.record))
                }
                // Not on the network (another subnet, a VPN, multicast blocked):
                // where it was reached last time may still work.
                Err(e @ Error::PeerNotFound { .. }) => match remembered(store, name)? {
                    Some((addrs, record)) => {
                        eprintln!(
                            "{} did not answer on the network in {:.1} s; trying its last known \
                             address{} {}",
                            discover::describe(&record),
                            cfg.find_timeout.as_secs_f64(),
                            if addrs.len() == 1 { "" } else { "es" },
                            list(&addrs)
                        );
                        (addrs, Some(record))
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        (Target::Lookup(name), Discovery::Off) => match remembered(store, name)? {
            Some((addrs, record)) => {
                eprintln!(
                    "{} is at {} (from the peer store)",
                    discover::describe(&record),
                    list(&addrs)
                );
                (addrs, Some(record))
            }
            None => {
                return Err(Error::Usage(format!(
                    "no peer named '{}' with a known address in the peer store: with \
                     --no-discovery give its address (IP or IP:PORT), or `localstream add {} IP`",
                    escape_for_terminal(name),
                    escape_for_terminal(name)
                )));
            }
        },
    };
    let connecting = Instant::now();
    let (reader, wr, session, addr) = open(identity, &addrs).await?;
    let handshake_done = connecting.elapsed();
    if let Some(expected) = &expected {
        discover::check_identity(expected, &session.peer, addr)?;
    }
    let who = format!(
        "{} [{}]",
        crate::discover::shown_name(&session.peer.name),
        short_fingerprint(&session.peer.fingerprint)
    );
    let mut writer = RecordWriter {
        inner: wr,
        sealer: session.sealer,
    };
    let peer = session.peer;
    let contacted = match trust::check(store, &peer).await {
        Ok(c) => c,
        Err(e) => {
            let (status, message) = match &e {
                Error::KeyChanged { .. } => (
                    Status::NotTrusted,
                    "the sender has a different key pinned for your node id and refuses to send",
                ),
                _ => (
                    Status::InternalError,
                    "the sender cannot use its peer store",
                ),
            };
            writer.alert(status, message).await;
            return Err(e);
        }
    };
    if contacted.trust == Trust::Blocked {
        writer
            .alert(Status::Cancelled, "the sender has blocked this node")
            .await;
        return Err(Error::Blocked(format!(
            "{who} (id {})",
            uuid::Uuid::from_bytes(peer.node_id)
        )));
    }
    eprintln!("connected to {who} at {addr}");
    cfg.events.emit(
        "connected",
        serde_json::json!({
            "peer": {
                "name": escape_for_terminal(&peer.name),
                "id": uuid::Uuid::from_bytes(peer.node_id).to_string(),
                "fingerprint": crate::identity::fingerprint_hex(&peer.fingerprint),
            },
            "address": addr.to_string(),
        }),
    );
    // A node not trusted yet that uses another pinned peer's name (a pinned
    // stranger may rename itself after one that is away), or a new one at a
    // pinned peer's address: refused before anything about the files leaves.
    let impostor = if contacted.trust == Trust::Trusted {
        None
    } else if let Some(e) = trust::name_of_pinned(store, &peer).await {
        Some(e)
    } else if contacted.first {
        trust::address_of_pinned(store, &peer, addr).await
    } else {
        None
    };
    if let Some(e) = impostor {
        writer
            .alert(
                Status::NotTrusted,
                "the sender knows another node by this name or address",
            )
            .await;
        return Err(e);
    }
    if contacted.first {
        // Nothing about the files leaves before the user vouched for this node.
        let what = format!(
            "Send {} file{}",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" }
        );
        if let Err(e) = confirm::first_contact(cfg.first_contact, &peer, &session.sas, &what).await
        {
            writer
                .alert(
                    Status::Cancelled,
                    "the sender did not confirm the verification code of this first contact",
                )
                .await;
            return Err(e);
        }
        if cfg.first_contact == confirm::FirstContact::Yes {
            eprintln!("{}", trust::code_line(&peer, &session.sas, contacted));
        }
    } else if contacted.trust != Trust::Trusted {
        eprintln!("{}", trust::code_line(&peer, &session.sas, contacted));
    } else {
        info!(code = %session.sas, "verification code (peer trusted)");
    }
    let started_ms = now_ms();
    let span = info_span!(
        "session",
        id = %trust::session_hex(&session.session_id),
        peer = %discover::short_id(&uuid::Uuid::from_bytes(peer.node_id))
    );
    let timing = Timing {
        connecting,
        handshake_done,
    };
    let accepted = std::sync::atomic::AtomicBool::new(false);
    let result = exchange(
        reader,
        writer,
        session.opener,
        &sources,
        &who,
        &accepted,
        View {
            bars: progress,
            events: cfg.events.clone(),
            compress: cfg.compress,
        },
        timing,
    )
    .instrument(span)
    .await;
    if !accepted.load(std::sync::atomic::Ordering::SeqCst) {
        // No Answer 200: a refusal, an alert, a cut or a timeout pins nothing
        // (one redirected connection must not pin an impostor's key).
        let (outcome, detail) = trust::outcome(result.as_ref().err(), false);
        let id = session.session_id;
        trust::record_if_pinned(store, &peer, &id, Direction::Send, outcome, &detail).await;
    } else {
        let (outcome, detail) = trust::outcome(result.as_ref().err(), result.is_ok());
        let (files, bytes) = result
            .as_ref()
            .map_or((0, 0), |s| (s.delivered as u64, s.bytes));
        let end = SessionEnd {
            ended_ms: now_ms(),
            files,
            bytes,
            outcome,
            detail,
        };
        let id = session.session_id;
        trust::record_session(
            store,
            &peer,
            Some(addr),
            &id,
            Direction::Send,
            started_ms,
            end,
        )
        .await;
    }
    result
}

/// When the connection started and how long the handshake took, for the
/// `timing` log line (`-v`) that benchmarks read.
#[derive(Debug, Clone, Copy)]
struct Timing {
    connecting: Instant,
    handshake_done: Duration,
}

impl Timing {
    /// Logs the handshake time and the time from connect to the first data
    /// byte written (the offer and the receiver's answer included).
    fn report(self) {
        info!(
            handshake_ms = format_args!("{:.2}", self.handshake_done.as_secs_f64() * 1e3),
            first_data_ms = format_args!("{:.2}", self.connecting.elapsed().as_secs_f64() * 1e3),
            "timing"
        );
    }
}

/// What the user sees of a transfer (bars, events), and how it goes.
struct View {
    bars: bool,
    events: Events,
    compress: compress::Mode,
}

/// Offers the files, streams the accepted ones and reads the verdict;
/// `accepted` is set once the receiver answered 200 (only then is it pinned).
#[allow(clippy::too_many_arguments)] // the stages' inputs, each used once
async fn exchange(
    mut reader: FrameReader<OwnedReadHalf>,
    mut writer: RecordWriter<OwnedWriteHalf>,
    mut opener: Opener,
    sources: &[Source],
    who: &str,
    accepted: &std::sync::atomic::AtomicBool,
    view: View,
    timing: Timing,
) -> Result<Sent> {
    let events = &view.events;
    let entries: Vec<OfferEntry> = sources
        .iter()
        .map(|s| OfferEntry {
            path: s.name.clone(),
            size: s.size,
            attrs: s.attrs,
        })
        .collect();
    for part in OfferPart::split(&entries)? {
        let mut body = vec![];
        part.encode(&mut body)?;
        writer.send(RecordType::Offer, &body).await?;
    }
    eprintln!("waiting for {who} to accept...");
    events.emit(
        "offer",
        serde_json::json!({
            "files": sources.len(),
            "bytes": sources.iter().map(|s| s.size).sum::<u64>(),
        }),
    );
    // The receiver may first hash what it holds of these files.
    let offered: u64 = sources.iter().map(|s| s.size).sum();
    let answer_wait = PROMPT_TIMEOUT + IDLE_TIMEOUT + hashing_time(offered);
    let (typ, body) = reader.read_record(&mut opener, answer_wait).await?;
    expect_record(typ, RecordType::Answer, "Answer")?;
    let answer = Answer::decode(&body)?;
    if !answer.status.is_ok() {
        return Err(Error::Refused {
            status: answer.status,
            message: answer.message,
        });
    }
    if answer.files.len() != sources.len() {
        return Err(ProtoError::Malformed("Answer does not cover every file").into());
    }
    accepted.store(true, std::sync::atomic::Ordering::SeqCst);
    let held: Vec<(u32, Source, u64, [u8; 32])> = sources
        .iter()
        .zip(&answer.files)
        .enumerate()
        .filter(|(_, (_, d))| d.resumes())
        .map(|(i, (s, d))| (i as u32, s.clone(), d.offset, d.held))
        .collect();
    let mut continued = if held.is_empty() {
        Vec::new()
    } else {
        let verdicts = tokio::task::spawn_blocking(move || check_held(held)).await?;
        let mut body = vec![];
        Resume {
            files: verdicts
                .iter()
                .map(|v| ResumeFile {
                    index: v.index,
                    offset: v.hasher.as_ref().map_or(0, |_| v.offset),
                })
                .collect(),
        }
        .encode(&mut body)?;
        writer.send(RecordType::Resume, &body).await?;
        verdicts
    };
    let plan: Vec<Planned> = sources
        .iter()
        .zip(&answer.files)
        .enumerate()
        // Directories have no data: the receiver created them.
        .filter(|(_, (s, d))| d.status.is_ok() && !s.is_dir())
        .map(|(i, (s, _))| {
            let index = i as u32;
            let (offset, hasher) = match continued.iter_mut().find(|v| v.index == index) {
                Some(v) => match v.hasher.take() {
                    Some(h) => (v.offset, h),
                    None => (0, blake3::Hasher::new()),
                },
                None => (0, blake3::Hasher::new()),
            };
            Planned {
                index,
                source: s.clone(),
                offset,
                hasher,
            }
        })
        .collect();
    let resumed: u64 = plan.iter().map(|p| p.offset).sum();
    for (s, d) in sources.iter().zip(&answer.files) {
        if !d.status.is_ok() {
            eprintln!("{}: skipped by the receiver: {}", shown(&s.path), d.status);
        }
    }

    let started = Instant::now();
    let bytes: u64 = plan
        .iter()
        .map(|p| p.source.size.saturating_sub(p.offset))
        .sum();
    events.emit(
        "accepted",
        serde_json::json!({ "files": plan.len(), "bytes": bytes, "resumed": resumed }),
    );
    let progress = Progress::new(view.bars, bytes, plan.len(), events);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PIPELINE_DEPTH);
    let RecordWriter {
        inner: mut wr,
        sealer,
    } = writer;
    let bar = progress.clone();
    let pool = BufPool::default();
    let returns = pool.clone();
    let compressor = Compressor::new(view.compress, answer.features)?;
    let producer = tokio::task::spawn_blocking(move || {
        let mut sealer = sealer;
        let r = produce(&mut sealer, plan, tx, &returns, &bar, compressor);
        (sealer, r)
    });

    // The receiver speaks again only at the end (Status) or to abort (Alert).
    // Listen for that in its own task, with no deadline while data flows.
    let (word_tx, mut word_rx) = oneshot::channel();
    let listening = tokio::spawn(async move {
        let r = reader.read_record(&mut opener, WHILE_STREAMING).await;
        let _ = word_tx.send(r);
    });
    let _abort_listening = AbortOnDrop(listening);
    let mut word = None;
    let mut first_write = true;
    let stream_result: Result<()> = async {
        loop {
            tokio::select! {
                biased;
                r = &mut word_rx, if word.is_none() => {
                    word = Some(r.unwrap_or(Err(ProtoError::Truncated.into())));
                    break;
                }
                rec = rx.recv() => match rec {
                    // Each write is bounded: a receiver that stops reading cannot hang us.
                    Some(buf) => {
                        conn::timed(IDLE_TIMEOUT, conn::STOPPED_READING, wr.write_all(&buf)).await?;
                        pool.put(buf);
                        if first_write {
                            first_write = false;
                            timing.report();
                        }
                    }
                    None => break,
                },
            }
        }
        conn::timed(IDLE_TIMEOUT, conn::STOPPED_READING, wr.flush()).await
    }
    .await;
    drop(rx);
    let (sealer, produced) = producer.await?;
    progress.finish();
    if stream_result.is_err() && word.is_none() {
        // A write failed because the receiver closed: it may have said why
        // first (an alert), and that beats "broken pipe".
        if let Ok(Ok(r @ Err(Error::Protocol(ProtoError::PeerAlert { .. })))) =
            tokio::time::timeout(Duration::from_millis(500), &mut word_rx).await
        {
            word = Some(r);
        }
    }
    if let Some(Err(e)) = word {
        return Err(e);
    }
    stream_result?;
    // What crossed the wire (streams announce no size up front).
    let (bytes, wire) = match produced {
        Ok(p) => (p.bytes, p.compressed.then_some(p.wire)),
        Err(e) => {
            // Tell the receiver why we stop (it keeps what it has as partial files).
            let mut writer = RecordWriter { inner: wr, sealer };
            writer
                .alert(Status::Cancelled, &format!("the sender failed: {e}"))
                .await;
            return Err(e);
        }
    };

    // Everything is sent: now the receiver has STATUS_TIMEOUT to verify, fsync and answer.
    // From here on a lost connection is not a failed transfer: the receiver
    // may have saved everything, so it is never retried on a guess.
    let unconfirmed = |why: String| Error::Unconfirmed(why);
    let (typ, body) = match word {
        Some(r) => r?,
        None => match tokio::time::timeout(STATUS_TIMEOUT, word_rx).await {
            Ok(Ok(Ok(r))) => r,
            Ok(Ok(Err(e @ Error::Protocol(ProtoError::PeerAlert { .. })))) => return Err(e),
            Ok(Ok(Err(e))) => return Err(unconfirmed(e.to_string())),
            Ok(Err(_)) => return Err(unconfirmed("the connection closed".into())),
            Err(_) => {
                return Err(unconfirmed(format!(
                    "no answer in {} s",
                    STATUS_TIMEOUT.as_secs()
                )));
            }
        },
    };
    expect_record(typ, RecordType::Status, "Status")?;
    let status = FinalStatus::decode(&body)?;
    let elapsed = started.elapsed();
    let delivered = status.files.iter().filter(|s| s.is_ok()).count();
    // Files, not the folders that came with them.
    let delivered_files = sources
        .iter()
        .zip(&status.files)
        .filter(|(s, st)| st.is_ok() && !s.is_dir())
        .count();
    for (s, st) in sources.iter().zip(&status.files) {
        if !st.is_ok() {
            eprintln!("{}: not delivered: {st}", shown(&s.path));
        }
    }
    info!(peer = %who, status = %status.status, "transfer finished");
    let ok = status.status.is_ok() && delivered == sources.len();
    events.emit(
        "transfer_done",
        serde_json::json!({
            "ok": ok,
            "files": delivered_files,
            "offered": sources.len(),
            "bytes": bytes,
            "resumed": resumed,
            "seconds": elapsed.as_secs_f64(),
            "failed": sources.iter().zip(&status.files)
                .filter(|(_, st)| !st.is_ok())
                .map(|(s, st)| serde_json::json!({ "name": s.name, "status": st.code() }))
                .collect::<Vec<_>>(),
        }),
    );
    if ok {
        if !events.on() {
            crate::outln!(
                "sent {} to {who}{}",
                summary(delivered_files, bytes, elapsed),
                resumed_note(resumed)
            );
            if let Some(wire) = wire {
                eprintln!("{}", wire_note(bytes, wire));
            }
        }
        Ok(Sent {
            delivered,
            offered: sources.len(),
            bytes,
        })
    } else if delivered == 0 && status.files.is_empty() {
        Err(Error::Refused {
            status: status.status,
            message: status.message,
        })
    } else {
        Err(Error::Incomplete {
            failed: sources.len() - delivered,
            total: sources.len(),
        })
    }
}

/// One accepted file, as the sender streams it.
struct Planned {
    /// Its index in the offer.
    index: u32,
    source: Source,
    /// Where to start: bytes the receiver holds and we confirmed.
    offset: u64,
    /// BLAKE3 state after the first `offset` bytes.
    hasher: blake3::Hasher,
}

/// The sender's verdict on one held prefix.
struct Verdict {
    index: u32,
    offset: u64,
    /// The hash state after the prefix when it matches ours; `None` when it
    /// does not (the file is sent whole).
    hasher: Option<blake3::Hasher>,
}

/// Hashes the prefix of each file the receiver holds and compares (blocking).
fn check_held(held: Vec<(u32, Source, u64, [u8; 32])>) -> Vec<Verdict> {
    held.into_iter()
        .map(|(index, src, offset, theirs)| {
            let name = escape_for_terminal(&src.name);
            let ours = if offset > src.size {
                Err("it is shorter than what the receiver holds".to_owned())
            } else {
                File::open(&src.path)
                    .and_then(|mut f| hash_prefix(&mut f, offset))
                    .map_err(|e| format!("cannot read it to compare ({e})"))
            };
            let hasher = match ours {
                Ok((hash, hasher)) if hash == theirs => {
                    eprintln!(
                        "resuming {name} at byte {offset} ({} already held by the receiver)",
                        human_bytes(offset)
                    );
                    Some(hasher)
                }
                Ok(_) => {
                    eprintln!(
                        "{name}: changed since the interrupted transfer; sending it from the start"
                    );
                    None
                }
                Err(why) => {
                    eprintln!("{name}: {why}; sending it from the start");
                    None
                }
            };
            Verdict {
                index,
                offset,
                hasher,
            }
        })
        .collect()
}

/// Records with less plaintext than this are gathered into one buffer with
/// their neighbours (small files, FileEnd, TransferEnd): one write, not one
/// per record.
const GATHER_BELOW: usize = 64 * 1024;
/// A gathering buffer is sent once it holds this much
const GATHER_UP_TO: usize = 256 * 1024;
/// or once its oldest record has waited this long.
const GATHER_WAIT: Duration = Duration::from_millis(20);

/// Sealed bytes on their way to the socket: large records each in their own
/// pooled buffer, small ones gathered.
struct Outbox<'a> {
    tx: mpsc::Sender<Vec<u8>>,
    pool: &'a BufPool,
    gathered: Vec<u8>,
    /// When the oldest gathered record was sealed.
    since: Option<Instant>,
    /// Compression of large data records.
    compressor: Compressor,
    /// Sealed data bytes queued so far (what crosses the wire for file content).
    wire: u64,
}

impl Outbox<'_> {
    fn send(&self, buf: Vec<u8>) -> Result<()> {
        self.tx
            .blocking_send(buf)
            .map_err(|_| Error::Io(std::io::ErrorKind::BrokenPipe.into()))
    }

    /// Sends a large sealed data record holding `bytes` file bytes.
    fn send_data(&mut self, buf: Vec<u8>, bytes: usize) -> Result<()> {
        self.wire += buf.len() as u64;
        self.send(buf)?;
        self.compressor.sent(bytes as u64);
        Ok(())
    }

    /// Sends what has been gathered, if anything.
    fn flush(&mut self) -> Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let mut next = self.pool.get();
        next.clear();
        let full = std::mem::replace(&mut self.gathered, next);
        self.since = None;
        self.send(full)
    }

    /// After a small record was gathered: send the gathered records once
    /// they fill a write, or once the oldest has waited [`GATHER_WAIT`] (so a
    /// slow source cannot hold sealed records back until the receiver times out).
    fn gathered_one(&mut self) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.gathered.len() >= GATHER_UP_TO || since.elapsed() >= GATHER_WAIT {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Seals a small message record (FileEnd, TransferEnd) into the gathering buffer.
    fn message(&mut self, sealer: &mut Sealer, typ: RecordType, body: &[u8]) -> Result<()> {
        sealer.seal(typ, body, &mut self.gathered)?;
        self.gathered_one()
    }

    /// Reads up to `want` bytes of `file` straight into a record buffer,
    /// hashes and seals them, and queues the record. Returns the bytes read
    /// (0 at the end of the file).
    fn data(
        &mut self,
        sealer: &mut Sealer,
        file: &mut File,
        want: usize,
        hasher: &mut blake3::Hasher,
    ) -> std::io::Result<Result<usize>> {
        let small = want < GATHER_BELOW;
        let mut own = if small { Vec::new() } else { self.pool.get() };
        let buf = if small { &mut self.gathered } else { &mut own };
        let start = if small { buf.len() } else { 0 };
        conn::set_len(buf, start + HEADER_LEN + want);
        let got = match read_full(file, &mut buf[start + HEADER_LEN..]) {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + HEADER_LEN + got);
        if got == 0 {
            buf.truncate(start);
            return Ok(Ok(0));
        }
        hasher.update(&buf[start + HEADER_LEN..]);
        if !small && self.compressor.enabled() {
            // Large records may go compressed (small files are not worth it)
            // when the receiver takes them.
            let mut packed = self.pool.get();
            if self
                .compressor
                .compress(&own[HEADER_LEN..], &mut packed, HEADER_LEN)
                .is_some()
            {
                self.pool.put(std::mem::replace(&mut own, packed));
                if let Err(e) = sealer.seal_in_place_at(RecordType::DataZstd, &mut own, 0) {
                    return Ok(Err(e.into()));
                }
                return Ok(self
                    .flush()
                    .and_then(|()| self.send_data(own, got))
                    .map(|()| got));
            }
            self.pool.put(packed);
        }
        let buf = if small { &mut self.gathered } else { &mut own };
        if let Err(e) = sealer.seal_in_place_at(RecordType::Data, buf, start) {
            return Ok(Err(e.into()));
        }
        let queued = if small {
            self.wire += (self.gathered.len() - start) as u64;
            self.gathered_one()
        } else {
            self.flush().and_then(|()| self.send_data(own, got))
        };
        Ok(queued.map(|()| got))
    }
}

/// The blocking half: reads each accepted file, hashes it and seals records.
fn produce(
    sealer: &mut Sealer,
    plan: Vec<Planned>,
    tx: mpsc::Sender<Vec<u8>>,
    pool: &BufPool,
    progress: &Progress,
    compressor: Compressor,
) -> Result<Produced> {
    let compressed = compressor.enabled();
    let mut out = Outbox {
        tx,
        pool,
        gathered: Vec::new(),
        since: None,
        compressor,
        wire: 0,
    };
    let result = produce_into(&mut out, sealer, plan, progress);
    if result.is_err() {
        // Records already sealed must still go out, in order: the receiver
        // then gets every file completed so far, and the sender's alert is
        // the next record it expects (not a gap that looks like tampering).
        let _ = out.flush();
    }
    result.map(|bytes| Produced {
        bytes,
        wire: out.wire,
        compressed,
    })
}

/// What the producer sent.
struct Produced {
    /// File bytes.
    bytes: u64,
    /// Sealed data records, as they crossed the wire.
    wire: u64,
    /// Whether compression was in use.
    compressed: bool,
}

fn produce_into(
    out: &mut Outbox<'_>,
    sealer: &mut Sealer,
    plan: Vec<Planned>,
    progress: &Progress,
) -> Result<u64> {
    let mut files = 0u32;
    let mut bytes = 0u64;
    for Planned {
        index,
        source: src,
        offset,
        mut hasher,
    } in plan
    {
        progress.start_file(&src.name, src.size - offset);
        let mut file = if src.is_stream() {
            stdin_file().map_err(|e| Error::file("<standard input>", e))?
        } else {
            File::open(&src.path).map_err(|e| Error::file(&src.path, e))?
        };
        if offset > 0 {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| Error::file(&src.path, e))?;
        }
        // A stream goes on until its end, whatever its length.
        let mut remaining = if src.is_stream() {
            u64::MAX
        } else {
            src.size - offset
        };
        let mut sent = offset;
        while remaining > 0 {
            let want = remaining.min(CHUNK as u64) as usize;
            let got = out
                .data(sealer, &mut file, want, &mut hasher)
                .map_err(|e| Error::file(&src.path, e))??;
            if got == 0 {
                // The file shrank since it was offered: end it short; the receiver discards it.
                break;
            }
            remaining -= got as u64;
            sent += got as u64;
            progress.advance(got as u64);
        }
        let mut body = vec![];
        FileEnd {
            index,
            size: sent,
            hash: *hasher.finalize().as_bytes(),
        }
        .encode(&mut body);
        out.message(sealer, RecordType::FileEnd, &body)?;
        progress.file_done(&src.name, sent, None);
        files += 1;
        bytes += sent - offset;
    }
    let mut body = vec![];
    TransferEnd { files, bytes }.encode(&mut body);
    out.message(sealer, RecordType::TransferEnd, &body)?;
    out.flush()?;
    Ok(bytes)
}

/// Standard input as a file, read straight from the descriptor.
#[cfg(unix)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::windows::io::AsHandle;
    Ok(File::from(
        std::io::stdin().as_handle().try_clone_to_owned()?,
    ))
}

/// Fails unless the receiver's record is of the type this step needs.
fn expect_record(got: RecordType, want: RecordType, expected: &'static str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(ProtoError::UnexpectedMessage {
            expected,
            got: got as u8,
        }
        .into())
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Aborts a task when dropped (so no reader outlives the send).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
