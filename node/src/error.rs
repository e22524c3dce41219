//! The node's errors: one type per stage where stages fail differently
//! ([`ResolveError`]: finding the peer; [`TrustError`]: who it is;
//! [`TransferError`]: the exchange), gathered in [`Error`] with the failures
//! every stage shares (I/O, the protocol, usage). Payloads are typed; each
//! message states what happened, and front ends add their hints (the CLI's
//! `localstream forget ...` suggestions are its own).

use std::net::SocketAddr;
use std::path::PathBuf;

use localstream_proto::Status;
use localstream_proto::names::escape_for_terminal;

/// Result alias for the node.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors a command can end with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// Finding the peer failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The peer is not who it must be, or is not trusted to go on.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The exchange failed: refused, incomplete, unconfirmed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// Loading or creating the identity failed.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Nothing accepted the connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// What answered there does not speak LocalStream (a web server, another
    /// program on the port): its first bytes were no handshake.
    #[error(
        "{addr} does not answer as a LocalStream listener (its first bytes were not a \
         handshake: {source}); is it the right address and port?"
    )]
    NotLocalStream {
        /// Where.
        addr: SocketAddr,
        /// What the first bytes broke.
        source: localstream_proto::Error,
    },
    /// A local file could not be used.
    #[error("{}: {source}", escape_for_terminal(&path.display().to_string()))]
    File {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listening port is taken (`EADDRINUSE`), and by whom.
    #[error("cannot listen on {addr}: the port is taken by {holder}")]
    PortTaken {
        /// Where.
        addr: SocketAddr,
        /// What answers on that port.
        holder: PortHolder,
    },
    /// The folder for received files cannot be made, or a file cannot be
    /// written in it (checked with a probe file before listening).
    #[error(
        "cannot save received files in {}: {source}",
        escape_for_terminal(&dir.display().to_string())
    )]
    FolderNotWritable {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol or failed authentication.
    #[error("{0}")]
    Protocol(#[from] localstream_proto::Error),
    /// The peer did not answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// A worker thread of this program failed (a bug, not the peer's doing).
    #[error("internal error: a worker thread failed: {0}")]
    Worker(String),
    /// The peer store cannot be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// mDNS discovery could not start.
    #[error("discovery: {0}")]
    Discovery(#[from] localstream_discovery::Error),
    /// Talking LocalSend failed.
    #[error(transparent)]
    LocalSend(#[from] LocalSendError),
}

/// What can go wrong with the LocalSend protocol in particular.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LocalSendError {
    /// The device wants a PIN and none was given.
    #[error("{device} asks for a PIN: give it with --pin")]
    PinRequired {
        /// `name [fingerprint]`.
        device: String,
    },
    /// The device refused the PIN.
    #[error("{device} refused the PIN")]
    WrongPin {
        /// `name [fingerprint]`.
        device: String,
    },
    /// Too many requests (wrong PINs) for the device.
    #[error("{device} refuses for now: too many attempts; wait a minute before trying again")]
    TooManyAttempts {
        /// `name [fingerprint]`.
        device: String,
    },
    /// An answer with an unexpected HTTP status.
    #[error("the LocalSend device at {addr} answered {what} with HTTP {code}{}", if message.is_empty() { String::new() } else { format!(": {}", escape_for_terminal(message)) })]
    Http {
        /// Where.
        addr: SocketAddr,
        /// Which request.
        what: &'static str,
        /// The status.
        code: u16,
        /// Its message, if any.
        message: String,
    },
    /// An answer that is not LocalSend's, or HTTP broke.
    #[error(
        "the device at {addr} does not answer as LocalSend does: {}",
        escape_for_terminal(reason)
    )]
    BadAnswer {
        /// Where.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// TLS could not be set up with this node's certificate.
    #[error("LocalSend TLS: {0}")]
    Tls(String),
    /// Another program holds the LocalSend port.
    #[error(
        "the LocalSend port {port} is taken (is the LocalSend app, or another localstream, running?): use --localsend-port, or --no-localsend"
    )]
    PortTaken {
        /// The port.
        port: u16,
    },
    /// The multicast socket could not be opened.
    #[error("LocalSend discovery: {0}")]
    Multicast(String),
    /// This program was built without LocalSend.
    #[error("this localstream was built without LocalSend support (the `localsend` feature)")]
    NotBuilt,
}

/// Finding the peer the user means.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No node on the network matches what the user asked for.
    #[error("{}", not_found(query, seen, suggestions, *waited, interfaces))]
    NotFound {
        /// What the user asked for.
        query: String,
        /// The nodes that did answer.
        seen: Vec<PeerMatch>,
        /// The names among them close to the one asked for (a typo?).
        suggestions: Vec<String>,
        /// How long we looked.
        waited: std::time::Duration,
        /// Where we looked.
        interfaces: Vec<String>,
    },
    /// Several nodes match a name.
    #[error("'{}' matches {} peers", escape_for_terminal(query), matches.len())]
    Ambiguous {
        /// What the user asked for.
        query: String,
        /// Every match.
        matches: Vec<PeerMatch>,
    },
    /// A `trust`/`forget`/`block`/`sessions` (or `send`) argument names no
    /// single known peer.
    #[error("'{}': {reason}", escape_for_terminal(query))]
    UnknownPeer {
        /// What the user typed.
        query: String,
        /// Not found, or which peers match.
        reason: crate::store::Lookup,
    },
    /// `trust` names no peer met here, but a node on the network answers to it.
    #[error("{} is on the network but you have not met it yet", found)]
    NotMet {
        /// What the user typed.
        query: String,
        /// The node that answers to it.
        found: PeerMatch,
    },
    /// Discovery is off and the peer store knows no address for the name.
    #[error(
        "no peer named '{}' with a known address in the peer store",
        escape_for_terminal(name)
    )]
    NotInStore {
        /// The name typed.
        name: String,
    },
    /// There was no address to connect to.
    #[error("the receiver has no address")]
    NoAddress,
}

/// A node as a resolve error lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMatch {
    /// The name it announces (untrusted text).
    pub name: String,
    /// Its id.
    pub id: uuid::Uuid,
    /// Its addresses, as shown.
    pub addresses: Vec<String>,
    /// Its trust state when it is pinned here with the key it announces.
    pub trust: Option<crate::store::Trust>,
}

impl std::fmt::Display for PeerMatch {
    /// `name (3f2a9c1e)`, safe for a terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = crate::label::short_id(&self.id);
        write!(f, "{} ({short})", crate::label::shown_name(&self.name))
    }
}

/// Who the peer is, and whether it may go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A pinned peer presented another key.
    #[error(
        "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @  WARNING: THE KEY OF PEER {peer} HAS CHANGED  @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         node id {id} is pinned to a different key.\n\
         pinned key:    sha256 {pinned}\n\
         presented key: sha256 {presented}\n\
         Someone may be impersonating this peer, or it was reinstalled with a new key.\n\
         The connection was refused."
    )]
    KeyChanged {
        /// The peer's claimed name (escaped).
        peer: String,
        /// Its node id.
        id: uuid::Uuid,
        /// The pinned fingerprint (hex).
        pinned: String,
        /// The presented fingerprint (hex).
        presented: String,
    },
    /// A node met for the first time answers under the name, or at the
    /// address, of a pinned peer.
    #[error("{0}")]
    NewKeyForPinnedPeer(Box<PinConflict>),
    /// Discovery found a pinned node id announced with another key.
    #[error(
        "a node on the network announces itself as {peer} with node id {id}, pinned here to key \
         [{pinned}], but with key [{announced}]: not sending."
    )]
    AnnouncedKeyDiffers {
        /// The announced name (escaped).
        peer: String,
        /// The node id.
        id: uuid::Uuid,
        /// The pinned fingerprint (short form).
        pinned: String,
        /// The announced fingerprint prefix.
        announced: String,
    },
    /// Discovery found, by name, a node other than the pinned peer of that name.
    #[error(
        "the node answering to '{name}' on the network has id {found}, but the '{name}' you know \
         has id {known}: not sending."
    )]
    NameTaken {
        /// The name typed (escaped).
        name: String,
        /// The node discovery found.
        found: uuid::Uuid,
        /// The pinned node with that name.
        known: uuid::Uuid,
    },
    /// The node that answered at a discovered address proved another identity.
    #[error(
        "the node at {addr} proved to be {actual}, not {expected} that discovery announced there; \
         stopping (another node may be answering for it)"
    )]
    WrongPeer {
        /// Where we connected.
        addr: SocketAddr,
        /// Who discovery said it is (`name (id, fingerprint)`, escaped).
        expected: String,
        /// Who it proved to be (escaped).
        actual: String,
    },
    /// This node blocked the peer it was about to send to.
    #[error("you have blocked {0}")]
    Blocked(String),
    /// The user did not confirm a first contact (or could not be asked).
    #[error("{0}")]
    NotConfirmed(NotConfirmed),
    /// The pin changed while the user was deciding.
    #[error("the peer's pinned key changed meanwhile")]
    PinChangedMeanwhile,
}

/// Why a first contact was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotConfirmed {
    /// Nobody can be asked (no terminal).
    #[error(
        "{peer} is a node this one has never met, and there is no terminal to ask whether its \
         verification code is {code}: nothing was sent"
    )]
    Unattended {
        /// `name (id) [fingerprint]`, escaped.
        peer: String,
        /// Its name alone, escaped.
        name: String,
        /// The code.
        code: String,
    },
    /// The user said no.
    #[error("not confirmed: nothing was sent")]
    Declined,
    /// Nobody answered in time.
    #[error("no answer in {0} s: nothing was sent")]
    TimedOut(u64),
}

/// The exchange of offer, data and verdict.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The receiver refused the transfer or a file.
    #[error("refused by the receiver: {} ({})", refusal(*status, message), status.code())]
    Refused {
        /// The receiver's status.
        status: Status,
        /// The receiver's message (escaped on display).
        message: String,
    },
    /// `listen --stdout`: the program reading standard output closed it
    /// before the end (`| head`): the rest cannot be written.
    #[error(
        "standard output was closed by the program reading it during {name}: the rest was \
         not written"
    )]
    OutputClosed {
        /// The file being written (its wire path, escaped).
        name: String,
    },
    /// Some files did not arrive verified.
    #[error("{failed} of {total} files did not arrive")]
    Incomplete {
        /// How many failed.
        failed: usize,
        /// How many were offered.
        total: usize,
    },
    /// Everything offered arrived verified, but paths inside the folders
    /// sent could not be read and were left out (each was reported with
    /// [`crate::event::Event::Skipped`]).
    #[error("{}", skipped_paths(*sent, (*skipped, *names, *changed), *grown))]
    Unreadable {
        /// Files that arrived (folders not counted).
        sent: usize,
        /// Paths left out because they could not be read.
        skipped: usize,
        /// Paths left out because their names cannot be sent.
        names: usize,
        /// Paths left out because they changed after they were counted: gone,
        /// or more than the receiver accepted (each was reported with
        /// [`crate::event::Event::Skipped`]).
        changed: usize,
        /// Files that grew while they were sent: only what they had when
        /// they were counted went (each was reported with
        /// [`crate::event::Notice::Grew`]).
        grown: usize,
    },
    /// Everything was sent, but the receiver's verdict never came.
    #[error(
        "everything was sent, but the receiver did not confirm it ({0}): it may have saved \
         the files; check there before sending again"
    )]
    Unconfirmed(String),
    /// The transfer stopped in the middle (interrupted, the connection
    /// lost, the peer silent or gone): what was done so far, and what a
    /// later run resumes from.
    #[error("{0}")]
    Stopped(Box<Stopped>),
    /// `send --text` to a node of an older protocol version, which has no
    /// text messages (they came with version 3).
    #[error(
        "the receiver speaks LocalStream protocol version {version}, which has no text \
         messages (they need version 3): send the text as a file instead"
    )]
    TextUnsupported {
        /// The version the handshake agreed on.
        version: u16,
    },
}

/// Why a transfer stopped in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopCause {
    /// This node was told to stop (Ctrl-C, SIGTERM, a front end's cancel,
    /// a listener shutting down).
    Interrupted,
    /// The connection closed or broke.
    Lost,
    /// The other node went silent (a deadline passed).
    Silent,
    /// The other node stopped the transfer and said why (an alert).
    Ended,
    /// The receiver refused a later batch of a large send (its own checks:
    /// names, disk space, folders); the batches before it were delivered.
    Refused,
}

/// A transfer that stopped in the middle, seen from one side. Bytes are
/// file bytes: `bytes` moved in this session, `resumed` already held by the
/// receiver from an earlier one, `total` offered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stopped {
    /// Which side this node was.
    pub side: crate::event::Side,
    /// The other node's name (as it claims it; escaped when serialized).
    #[serde(serialize_with = "crate::label::escaped")]
    pub peer: String,
    /// Why.
    pub cause: StopCause,
    /// The error underneath, as text ("connection closed in the middle of a
    /// message", "timed out: ...", the peer's alert).
    pub reason: String,
    /// The file in progress (its wire path), if one was.
    pub file: Option<String>,
    /// Receiver: the bytes of `file` kept as a partial file, for a resume.
    pub kept: u64,
    /// File bytes moved in this session.
    pub bytes: u64,
    /// File bytes the receiver held already (resumed).
    pub resumed: u64,
    /// File bytes offered.
    pub total: u64,
    /// Files completed in this session (sender: ended; receiver: saved).
    pub files: u64,
    /// Whether `file` is a stream (standard input): no later run resumes it.
    pub stream: bool,
    /// Whether another attempt may get further (`--retry` tries again).
    pub transient: bool,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::event::Side;
        let peer = crate::label::shown_name(&self.peer);
        let during = match &self.file {
            Some(name) => format!(" during {}", escape_for_terminal(name)),
            None => String::new(),
        };
        match self.side {
            Side::Send => {
                // A stream's size is not known: how far it got, alone.
                let at = if self.stream && self.total == 0 {
                    crate::units::human_bytes(self.bytes)
                } else {
                    fraction(self.resumed + self.bytes, self.total)
                };
                match self.cause {
                    StopCause::Interrupted => write!(f, "interrupted{during} at {at}"),
                    StopCause::Lost => write!(f, "connection to {peer} lost{during} at {at}"),
                    StopCause::Silent => write!(
                        f,
                        "{peer} stopped answering{during} at {at} ({})",
                        self.reason
                    ),
                    StopCause::Ended => {
                        write!(
                            f,
                            "{peer} stopped the transfer{during} at {at}: {}",
                            self.reason
                        )
                    }
                    StopCause::Refused => write!(
                        f,
                        "{peer} refused the rest of the transfer at {at}, after {}: {}",
                        crate::units::plural(self.files, "file"),
                        self.reason
                    ),
                }
            }
            Side::Receive => {
                if self.cause == StopCause::Refused {
                    // Nothing is in progress, and the same send would be refused again.
                    return write!(
                        f,
                        "refused the rest of the transfer from {peer}, after {} saved: {}",
                        crate::units::plural(self.files, "file"),
                        self.reason
                    );
                }
                match self.cause {
                    StopCause::Interrupted => write!(f, "stopped receiving{during} from {peer}"),
                    StopCause::Lost => write!(f, "{peer} disconnected{during}"),
                    StopCause::Silent => {
                        write!(f, "{peer} stopped sending{during} ({})", self.reason)
                    }
                    StopCause::Ended | StopCause::Refused => {
                        write!(f, "{peer} stopped{during}: {}", self.reason)
                    }
                }?;
                if self.stream {
                    // Its partial is removed: a stream is never resumed.
                    return write!(f, "; a stream is not kept: {peer} must send it again");
                }
                if self.file.is_some() {
                    write!(f, "; {} kept", crate::units::human_bytes(self.kept))?;
                }
                write!(f, "; it resumes when {peer} sends it again")
            }
        }
    }
}

/// "1.57/2.00 GiB": a part of a whole, both in the whole's unit.
fn fraction(part: u64, whole: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if whole < 1024 {
        return format!("{part}/{whole} B");
    }
    let (mut p, mut w) = (part as f64 / 1024.0, whole as f64 / 1024.0);
    let mut unit = 0;
    while w >= 1024.0 && unit + 1 < UNITS.len() {
        p /= 1024.0;
        w /= 1024.0;
        unit += 1;
    }
    format!("{p:.2}/{w:.2} {}", UNITS[unit])
}

fn not_found(
    query: &str,
    seen: &[PeerMatch],
    suggestions: &[String],
    waited: std::time::Duration,
    interfaces: &[String],
) -> String {
    let query = escape_for_terminal(query);
    let on = interfaces.join(", ");
    if seen.is_empty() {
        return format!(
            "no peer named '{query}' (or with an id starting so) answered within {:.1} s on {on}; \
             no LocalStream node answered at all",
            waited.as_secs_f64()
        );
    }
    // Names as they are; the id too where two nodes share one.
    let names: Vec<String> = seen
        .iter()
        .map(|m| {
            if seen.iter().filter(|o| o.name == m.name).count() > 1 {
                m.to_string()
            } else {
                crate::label::shown_name(&m.name)
            }
        })
        .collect();
    let mut msg = format!(
        "no peer named '{query}' (or with an id starting so) on {on}; on the network: {}",
        names.join(", ")
    );
    if !suggestions.is_empty() {
        let shown: Vec<String> = suggestions
            .iter()
            .map(|n| crate::label::shown_name(n))
            .collect();
        let list = match shown.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        msg.push_str(&format!(" (did you mean {list}?)"));
    }
    msg
}

/// `sent 4 files; skipped 1 unreadable and 2 whose names cannot be sent`.
fn skipped_paths(
    sent: usize,
    (unreadable, names, changed): (usize, usize, usize),
    grown: usize,
) -> String {
    let files = if sent == 1 { "file" } else { "files" };
    let mut why = Vec::new();
    if unreadable > 0 {
        why.push(format!("{unreadable} unreadable"));
    }
    if names > 0 {
        let whose = if names == 1 {
            "whose name cannot"
        } else {
            "whose names cannot"
        };
        why.push(format!("{names} {whose} be sent"));
    }
    if changed > 0 {
        why.push(format!(
            "{changed} that appeared or vanished after the count"
        ));
    }
    let mut line = format!("sent {sent} {files}");
    if !why.is_empty() {
        line.push_str(&format!("; skipped {}", why.join(" and ")));
    }
    if grown > 0 {
        line.push_str(&format!(
            "; {grown} grew while {} sent: only what {} when counted went",
            if grown == 1 { "it was" } else { "they were" },
            if grown == 1 { "it had" } else { "they had" }
        ));
    }
    line
}

/// A refusal's message as shown (its status's description when it has none).
pub(crate) fn refusal(status: Status, message: &str) -> String {
    if message.is_empty() {
        status.description().to_owned()
    } else {
        escape_for_terminal(message)
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Worker(e.to_string())
    }
}

impl Error {
    /// A refusal by the receiver.
    pub fn refused(status: Status, message: impl Into<String>) -> Self {
        Error::Transfer(TransferError::Refused {
            status,
            message: message.into(),
        })
    }

    /// Whether this node was told to stop (Ctrl-C, SIGTERM, a cancel): before
    /// the transfer began, or in the middle of it.
    #[must_use]
    pub fn is_interrupted(&self) -> bool {
        match self {
            Error::Interrupted => true,
            Error::Transfer(TransferError::Stopped(s)) => s.cause == StopCause::Interrupted,
            _ => false,
        }
    }

    /// The receiver's refusal, if this is one.
    #[must_use]
    pub fn as_refusal(&self) -> Option<(Status, &str)> {
        match self {
            Error::Transfer(TransferError::Refused { status, message }) => Some((*status, message)),
            _ => None,
        }
    }

    /// Wraps an I/O error on a local file.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::File {
            path: path.into(),
            source,
        }
    }
}

/// What holds a port `listen` wanted ([`Error::PortTaken`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortHolder {
    /// A LocalStream listener (it answered a probe as one does).
    LocalStream,
    /// Something that accepts connections but does not speak LocalStream.
    OtherProgram,
    /// Something that does not accept connections from here (bound to
    /// another address, or not answering).
    Unknown,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortHolder::LocalStream => "another LocalStream listener",
            PortHolder::OtherProgram => "another program (it does not speak LocalStream)",
            PortHolder::Unknown => "another program",
        })
    }
}

/// A node met for the first time that answers under the name, or at the
/// address, of a pinned peer (see [`TrustError::NewKeyForPinnedPeer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinConflict {
    /// The pinned peer's name (escaped).
    pub peer: String,
    /// How it answered: "under that name", "at its address 10.0.0.2:47470".
    pub how: String,
    /// The pinned peer's node id.
    pub known: uuid::Uuid,
    /// Its pinned fingerprint (hex).
    pub pinned: String,
    /// The newcomer's node id.
    pub found: uuid::Uuid,
    /// The newcomer's fingerprint (hex).
    pub presented: String,
}

impl std::fmt::Display for PinConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PinConflict {
            peer,
            how,
            known,
            pinned,
            found,
            presented,
        } = self;
        write!(
            f,
            "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             @  WARNING: A NEW KEY ANSWERS AS PEER {peer}  @\n\
             @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             {peer} (node id {known}) is pinned here to key sha256 {pinned}.\n\
             The node that answered {how} has node id {found}, key sha256 {presented}.\n\
             Someone may be impersonating {peer}, or it was reinstalled with a new key.\n\
             The connection was refused."
        )
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn seen(name: &str, id: u128) -> PeerMatch {
        PeerMatch {
            name: name.into(),
            id: uuid::Uuid::from_u128(id),
            addresses: vec![],
            trust: None,
        }
    }

    #[test]
    fn not_found_names_the_peers_and_the_close_ones() {
        let e = ResolveError::NotFound {
            query: "h4".into(),
            seen: vec![seen("h1", 1 << 96), seen("h2", 2 << 96)],
            suggestions: vec!["h1".into(), "h2".into()],
            waited: std::time::Duration::from_millis(1300),
            interfaces: vec!["eth0".into()],
        };
        assert_eq!(
            e.to_string(),
            "no peer named 'h4' (or with an id starting so) on eth0; on the network: h1, h2 \
             (did you mean h1 or h2?)"
        );
        // Two nodes of one name are told apart by their ids; no suggestion.
        let e = ResolveError::NotFound {
            query: "nosuch".into(),
            seen: vec![seen("box", 0x3f2a_9c1e << 96), seen("box", 0x77aa << 112)],
            suggestions: vec![],
            waited: std::time::Duration::from_millis(1300),
            interfaces: vec!["eth0".into(), "wlan0".into()],
        };
        assert_eq!(
            e.to_string(),
            "no peer named 'nosuch' (or with an id starting so) on eth0, wlan0; on the network: \
             box (3f2a9c1e), box (77aa0000)"
        );
        let e = ResolveError::NotFound {
            query: "x\x1b".into(),
            seen: vec![],
            suggestions: vec![],
            waited: std::time::Duration::from_secs(5),
            interfaces: vec!["eth0".into()],
        };
        assert_eq!(
            e.to_string(),
            "no peer named 'x\\x1b' (or with an id starting so) answered within 5.0 s on eth0; \
             no LocalStream node answered at all"
        );
    }
}

#[cfg(test)]
mod stopped_tests {
    use super::*;
    use crate::event::Side;

    fn stopped(side: Side, cause: StopCause, file: Option<&str>) -> Stopped {
        Stopped {
            side,
            peer: "h2".into(),
            cause,
            reason: "timed out: the sender makes no progress".into(),
            file: file.map(str::to_owned),
            kept: 1_707_300_000,
            bytes: 1_600_000_000,
            resumed: 85_800_000,
            total: 2 << 30,
            files: 0,
            stream: false,
            transient: true,
        }
    }

    #[test]
    fn a_stream_stopped_is_not_promised_a_resume() {
        let mut s = stopped(Side::Send, StopCause::Interrupted, Some("stream.bin"));
        (s.stream, s.total, s.resumed) = (true, 0, 0);
        assert_eq!(s.to_string(), "interrupted during stream.bin at 1.49 GiB");
        s.side = Side::Receive;
        s.cause = StopCause::Lost;
        assert_eq!(
            s.to_string(),
            "h2 disconnected during stream.bin; a stream is not kept: h2 must send it again"
        );
    }

    #[test]
    fn the_sender_says_where_it_stopped() {
        let s = |cause| stopped(Side::Send, cause, Some("big.bin")).to_string();
        assert_eq!(
            s(StopCause::Interrupted),
            "interrupted during big.bin at 1.57/2.00 GiB"
        );
        assert_eq!(
            s(StopCause::Lost),
            "connection to h2 lost during big.bin at 1.57/2.00 GiB"
        );
        assert_eq!(
            s(StopCause::Silent),
            "h2 stopped answering during big.bin at 1.57/2.00 GiB (timed out: the sender makes \
             no progress)"
        );
        let between = stopped(Side::Send, StopCause::Interrupted, None);
        assert_eq!(between.to_string(), "interrupted at 1.57/2.00 GiB");
    }

    #[test]
    fn the_receiver_says_what_it_kept_and_how_it_resumes() {
        let s = |cause| stopped(Side::Receive, cause, Some("big.bin")).to_string();
        assert_eq!(
            s(StopCause::Lost),
            "h2 disconnected during big.bin; 1.59 GiB kept; it resumes when h2 sends it again"
        );
        assert_eq!(
            s(StopCause::Interrupted),
            "stopped receiving during big.bin from h2; 1.59 GiB kept; it resumes when h2 sends \
             it again"
        );
        assert_eq!(
            s(StopCause::Silent),
            "h2 stopped sending during big.bin (timed out: the sender makes no progress); \
             1.59 GiB kept; it resumes when h2 sends it again"
        );
    }

    #[test]
    fn fractions_share_the_unit_of_the_whole() {
        assert_eq!(fraction(0, 100), "0/100 B");
        assert_eq!(fraction(512, 2048), "0.50/2.00 KiB");
        assert_eq!(fraction(3 << 20, 24 << 20), "3.00/24.00 MiB");
    }

    #[test]
    fn names_from_the_network_are_escaped() {
        let mut s = stopped(Side::Receive, StopCause::Lost, Some("a\u{1b}[2J.bin"));
        s.peer = "evil\u{7}".into();
        let text = s.to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
    }
}
