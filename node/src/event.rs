//! What the node reports: typed [`Event`]s, delivered to every subscriber.
//!
//! ```text
//!  listen / send / receive ──emit──► Events ──► subscriber 1 (CLI renderer)
//!                                          └──► subscriber 2 (web UI stream) ...
//! ```
//!
//! Events are serde-serializable (`#[serde(tag = "event")]`): the CLI's
//! `--json` output is each event as one line, and the same schema serves
//! both sides of a transfer. [`Notice`]s are the lines a person wants to read
//! (a verification code, a warning); front ends render them,
//! and `--json` leaves them to the human text on stderr.
//!
//! Emitting never blocks: each subscriber has an unbounded queue, and
//! progress events are throttled at the source ([`PROGRESS_EVERY`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use localstream_proto::{PeerIdentity, Sas, Status};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::label::{NodeId, PeerLabel};
use crate::store::Trust;

/// Least time between two progress events of one transfer.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Which side of a transfer an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// This node sends.
    Send,
    /// This node receives.
    Receive,
}

/// An incoming offer waiting for [`crate::Node::decide`], by number.
pub type OfferId = u64;
/// A question to the user waiting for [`crate::Node::confirm`], by number.
pub type QuestionId = u64;

/// One entry of an offer, as events show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    /// Its path in the offer (as the peer sent it: escape before printing).
    #[serde(serialize_with = "crate::label::escaped")]
    pub path: String,
    /// Its size (0 for a folder).
    pub size: u64,
    /// A folder.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub folder: bool,
    /// Marked executable.
    pub executable: bool,
    /// A text message (shown once accepted), not a file.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub text: bool,
    /// Its modification time on the sender, in seconds since the Unix
    /// epoch (senders of protocol version 3 give it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified: Option<i64>,
}

/// A file that did not arrive, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedFile {
    /// Its wire path.
    pub name: String,
    /// The receiver's status for it.
    #[serde(serialize_with = "crate::label::status_code")]
    pub status: Status,
    /// What happened to it, in words (receiver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What the node reports, in the order it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The listener is up.
    Listening {
        /// This node's name.
        name: String,
        /// This node's id.
        id: NodeId,
        /// This node's fingerprint (hex).
        fingerprint: String,
        /// The folder files go to.
        dir: PathBuf,
        /// Whether the one file goes to standard output instead.
        #[serde(skip)]
        stdout: bool,
        /// Where it is announced (`off`, or `mDNS`-style text with the interfaces).
        discovery: String,
        /// Addresses peers can use.
        addresses: Vec<SocketAddr>,
        /// The LocalSend port, when LocalSend devices can send here too.
        #[serde(skip_serializing_if = "Option::is_none")]
        localsend: Option<u16>,
    },
    /// Authenticated with a peer (the sender's side; the receiver reports an offer).
    Connected {
        /// Who.
        peer: PeerLabel,
        /// Where.
        address: SocketAddr,
    },
    /// The sender found the first contact it must confirm: answer with
    /// [`crate::Node::confirm`] (`true`: go on).
    Confirm {
        /// The question's number.
        question: QuestionId,
        /// Who.
        peer: PeerLabel,
        /// The verification code both screens show.
        #[serde(serialize_with = "crate::label::display")]
        code: Sas,
        /// What follows a yes.
        #[serde(skip)]
        then: Then,
    },
    /// An offer: sent (the sender waits for the answer), or received (with
    /// `offer_id` when it waits for [`crate::Node::decide`]).
    Offer {
        /// Which side.
        #[serde(skip)]
        side: Side,
        /// Set when the front end must decide (policy `ask`).
        #[serde(skip_serializing_if = "Option::is_none")]
        offer_id: Option<OfferId>,
        /// The other node.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerLabel>,
        /// Files offered (streams and a text included; folders not).
        files: usize,
        /// Folders offered.
        folders: usize,
        /// Bytes offered.
        bytes: u64,
        /// The first entries (at most [`OFFER_EVENT_ENTRIES`]); receiver only.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        entries: Vec<EntryInfo>,
        /// How many entries are marked executable among the first
        /// `executables_among` (the first batch of a large send: the rest is
        /// not seen before the answer; all of them otherwise).
        #[serde(skip)]
        executables: usize,
        /// How many entries `executables` counts in.
        #[serde(skip)]
        executables_among: usize,
        /// The verification code; receiver only.
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "crate::label::display_opt"
        )]
        code: Option<Sas>,
        /// Key exchanges abandoned in the last 10 minutes (someone may be
        /// trying to fake the code); receiver only.
        #[serde(skip_serializing_if = "Option::is_none")]
        abandoned_exchanges: Option<u64>,
        /// A LocalSend device's description (`LocalSend mobile, Pixel`): it
        /// has no verification code.
        #[serde(skip_serializing_if = "Option::is_none")]
        localsend: Option<String>,
        /// A text message (LocalSend), shown before it is accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A text message arrived (LocalSend) and was accepted.
    Message {
        /// From whom.
        peer: PeerLabel,
        /// The text (untrusted: escape before printing).
        #[serde(serialize_with = "crate::label::escaped")]
        text: String,
        /// Where it was saved, if it could be.
        #[serde(skip_serializing_if = "Option::is_none")]
        saved: Option<PathBuf>,
    },
    /// A question (an offer's `offer_id`, a first contact's `question`) is
    /// closed without an answer: a front end takes it off the screen.
    QuestionClosed {
        /// Which question.
        id: QuestionId,
        /// Why.
        reason: Closed,
    },
    /// The offer was accepted: data follows.
    Accepted {
        /// Which side.
        #[serde(skip)]
        side: Side,
        /// Files that will cross the wire.
        files: usize,
        /// Bytes that will cross the wire.
        bytes: u64,
        /// Bytes held from an interrupted transfer (not sent again).
        resumed: u64,
    },
    /// `send` counts what it offers (the totals the receiver is asked to
    /// accept) before the offer. A count that takes a while (from
    /// [`COUNTING_SHOWN_AFTER`] on: a large tree, a slow disk) says what it
    /// has found so far, at most every 250 ms, and once more at its end
    /// with `done`; a quick one says nothing.
    Counting {
        /// Files, folders and streams found so far.
        entries: u64,
        /// The sum of their sizes.
        bytes: u64,
        /// The count is over: these are the totals.
        done: bool,
    },
    /// A check of the prefixes the receiver holds from an earlier,
    /// interrupted transfer (and, under `skip-identical`, of the copies
    /// already there): the receiver hashes them before it answers the offer,
    /// then the sender hashes its side of them before the rest goes. `done`
    /// of `bytes` so far, at most every 250 ms, first with `done` 0 and last
    /// with `done` equal to `bytes`.
    Checking {
        /// Which side hashes.
        #[serde(skip)]
        side: Side,
        /// The other node: the receiver that holds them (on the sender), the
        /// sender that offered them again (on the receiver).
        peer: PeerLabel,
        /// Bytes held, to check.
        bytes: u64,
        /// Bytes checked so far.
        done: u64,
    },
    /// The offer was refused (on the receiver also a peer refused before
    /// it could offer: not trusted, blocked).
    Refused {
        /// Which side.
        #[serde(skip)]
        side: Side,
        /// The other node, when known (it proved its key).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerLabel>,
        /// Why (the status code).
        #[serde(serialize_with = "crate::label::status_code")]
        status: Status,
        /// The receiver's message.
        message: String,
    },
    /// Bytes moved so far.
    Progress {
        /// Which side.
        #[serde(skip)]
        side: Side,
        /// Bytes so far.
        bytes: u64,
        /// Bytes expected (it grows when a stream turns out longer).
        total: u64,
        /// The file being moved now.
        #[serde(skip)]
        file: Option<FileProgress>,
    },
    /// A file is done: sent, or saved under `path`.
    FileDone {
        /// Which side.
        #[serde(skip)]
        side: Side,
        /// Its wire path.
        name: String,
        /// Its size.
        size: u64,
        /// Where it was saved (receiver).
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// A path inside a folder is left out of the offer (sender, before
    /// it connects).
    Skipped(Skipped),
    /// The transfer ended with the receiver's verdict.
    TransferDone(Box<TransferDone>),
    /// A transfer (or the command) failed.
    Error {
        /// Which side, when a transfer failed.
        #[serde(skip)]
        side: Option<Side>,
        /// The other node, when known.
        #[serde(skip)]
        peer: Option<PeerLabel>,
        /// The session (hex), when there was one.
        #[serde(skip)]
        session: Option<String>,
        /// What went wrong.
        message: String,
        /// When the transfer stopped in the middle (and resumes later): how
        /// far it got.
        #[serde(skip_serializing_if = "Option::is_none")]
        stopped: Option<Box<crate::error::Stopped>>,
    },
    /// A node appeared on the network (`peers --watch`).
    #[serde(rename = "up")]
    PeerSeen {
        /// What it announces.
        peer: PeerInfo,
    },
    /// A node left the network.
    #[serde(rename = "down")]
    PeerGone {
        /// What it announced.
        peer: PeerInfo,
    },
    /// A node's addresses changed.
    #[serde(rename = "changed")]
    PeerChanged {
        /// What it announces now.
        peer: PeerInfo,
    },
    /// Something a person wants to read; not part of the `--json` stream.
    #[serde(skip)]
    Notice(Notice),
}

impl Event {
    /// Whether the event belongs in a machine-readable stream (`--json`):
    /// everything but [`Notice`]s.
    #[must_use]
    pub fn is_machine(&self) -> bool {
        !matches!(self, Event::Notice(_))
    }
}

/// One node on the network, as `peers` shows it (and `--json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// The name it announces (untrusted text).
    pub name: String,
    /// Its id.
    pub id: String,
    /// The id's first 8 hex digits.
    pub short_id: String,
    /// Its addresses (IPv6 link-local ones with `%scope`).
    pub addresses: Vec<String>,
    /// Its port.
    pub port: u16,
    /// The first 64 bits of its key's SHA-256, as announced.
    pub fingerprint: String,
    /// Its MAC, when it announces one.
    pub mac: Option<String>,
    /// Its protocol version.
    pub version: u16,
    /// `unpinned`, a trust state, or `CHANGED` (a pinned id with another key).
    pub trust: &'static str,
    /// The name given to it here with `localstream add`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Other keys announced under the same id (fingerprint prefixes).
    #[serde(skip)]
    pub conflicting: Vec<String>,
    /// The key pinned here for its id, when the announcement shows another one.
    #[serde(skip)]
    pub pinned_key: Option<String>,
    /// `localstream`, or `localsend` for a LocalSend device.
    pub protocol: &'static str,
    /// A LocalSend device's type and model (`mobile, Pixel 8`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// What follows a confirmed first contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Sending this many files and folders.
    Send {
        /// Files (streams included).
        files: usize,
        /// Folders.
        folders: usize,
    },
    /// `add`: pinning the peer under this name.
    Pin(String),
}

/// The file being moved, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    /// Its wire path.
    pub name: String,
    /// Bytes of it so far.
    pub bytes: u64,
    /// Its size (0: unknown, a stream).
    pub size: u64,
}

/// Why a question was closed without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closed {
    /// Nobody answered in time.
    TimedOut,
    /// The sender went away or did not wait for the answer.
    Withdrawn,
}

/// The end of a transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferDone {
    /// Which side.
    #[serde(skip)]
    pub side: Side,
    /// The other node.
    #[serde(skip)]
    pub peer: PeerLabel,
    /// The session (hex).
    #[serde(skip)]
    pub session: String,
    /// Every file arrived verified.
    pub ok: bool,
    /// Files delivered (folders not counted).
    pub files: usize,
    /// Files offered (folders not counted).
    pub offered: usize,
    /// Bytes the files hold.
    pub bytes: u64,
    /// Bytes held from an interrupted transfer.
    pub resumed: u64,
    /// Seconds from the answer to the verdict.
    pub seconds: f64,
    /// What did not arrive (the first 1000; on the receiver, the first 100
    /// of each batch of a large send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Vec<FailedFile>>,
    /// Where the files were saved (receiver; the first 1000: `files` counts
    /// them all, and `file_done` events list each).
    #[serde(skip)]
    pub saved: Vec<PathBuf>,
    /// File bytes moved and the bytes they took on the wire, when
    /// compression was on.
    #[serde(skip)]
    pub wire: Option<(u64, u64)>,
    /// Files that failed verification (receiver).
    #[serde(skip)]
    pub discarded: usize,
    /// Files that arrived verified but could not be saved (receiver).
    #[serde(skip)]
    pub unsaved: usize,
}

/// Why a path inside a folder given to `send` is left out (`reason` in
/// the `skipped` event). Links and partial files are left out by rule; the
/// others could not be read ([`Skip::is_unreadable`]) or have a name that
/// cannot be sent ([`Skip::Name`]), and make the send end with
/// [`crate::error::TransferError::Unreadable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Skip {
    /// A symbolic link (never followed inside a folder).
    Symlink,
    /// A partial file of an unfinished transfer.
    Partial,
    /// A named pipe (FIFO).
    Fifo,
    /// A socket.
    Socket,
    /// A device node.
    Device,
    /// Neither a file, a folder nor any of the above.
    NotRegular,
    /// Permission denied: a file that cannot be opened, a folder that
    /// cannot be listed.
    PermissionDenied,
    /// It was listed, then gone before it could be opened.
    Vanished,
    /// Another error opening the file or listing the folder (in `error`).
    Unreadable,
    /// Its name cannot go on the wire (in `error`: not UTF-8, a colon, a
    /// name Windows reserves, a control character...): rename it to send it.
    Name,
    /// It appeared (or grew) after the files were counted: the receiver
    /// consented to the count, so it is left for another send.
    Grew,
}

impl Skip {
    /// Whether the path was meant to go and could not be read (a pipe,
    /// socket or device has no content to send), as opposed to being left
    /// out by rule (a link, a partial file) or for its name.
    #[must_use]
    pub fn is_unreadable(self) -> bool {
        !matches!(
            self,
            Skip::Symlink | Skip::Partial | Skip::Name | Skip::Grew
        )
    }
}

/// A path inside a folder that `send` leaves out of the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Which (as found locally: the folder given, then the path inside it).
    #[serde(serialize_with = "path_text")]
    pub path: PathBuf,
    /// Whether it is a folder (nothing in it is sent).
    pub folder: bool,
    /// Why.
    pub reason: Skip,
    /// The system's error, for [`Skip::Unreadable`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A local path as text, escaped (file names are anyone's).
fn path_text<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&localstream_proto::names::escape_for_terminal(
        &path.display().to_string(),
    ))
}

/// How the sender found its receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Discovery found it.
    Found {
        /// `name (id)`.
        who: String,
        /// After this long.
        seconds: f64,
    },
    /// Discovery did not; its last known addresses are tried.
    Remembered {
        /// `name (id)`.
        who: String,
        /// How long discovery looked.
        looked: f64,
        /// The addresses tried.
        addrs: Vec<SocketAddr>,
    },
    /// Discovery is off: the peer store knows where it is.
    FromStore {
        /// `name (id)`.
        who: String,
        /// The addresses tried.
        addrs: Vec<SocketAddr>,
    },
}

/// The sender's verdict on a prefix the receiver holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeVerdict {
    /// It matches: the rest follows.
    Resuming,
    /// The file changed since: it goes whole.
    Changed,
    /// The file cannot be compared: it goes whole.
    Unreadable(String),
    /// The file is shorter than what is held: it goes whole.
    Shorter,
    /// The receiver has a whole file of this size under its name
    /// (`listen --on-collision skip-identical`) with other bytes: it goes
    /// whole and replaces that one.
    Differs,
}

/// Lines for people, each typed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// How the receiver was found.
    Resolved(Resolved),
    /// The verification code of this session (not shown for trusted peers
    /// or while a first contact is being confirmed).
    Code {
        /// Who.
        peer: PeerLabel,
        /// The code.
        code: Sas,
        /// Whether this contact is the first.
        first: bool,
        /// The peer's trust state.
        trust: Trust,
    },
    /// The receiver skipped one file of the offer.
    SkippedByReceiver {
        /// Which (as given locally).
        path: PathBuf,
        /// Why.
        status: Status,
    },
    /// A file offered could not be read when its turn came (gone or
    /// closed since it was listed, a read error): it ends short, so the
    /// receiver discards it, and the other files go on.
    Unread {
        /// Which (as given locally).
        path: PathBuf,
        /// What the system said.
        error: String,
    },
    /// An accepted file did not arrive verified and saved (receiver).
    NotReceived {
        /// Its path in the offer (the peer's: escape before printing).
        path: String,
        /// What happened, in words, and what became of its bytes.
        why: String,
    },
    /// A file offered shrank while it was sent: it ends short, so the
    /// receiver discards it, and the other files go on.
    Shrank {
        /// Which (as given locally).
        path: PathBuf,
        /// Bytes of it that could be read.
        read: u64,
        /// Its size when it was offered.
        size: u64,
    },
    /// A file offered grew while it was sent: what it had when counted
    /// went (and arrives verified), the rest did not.
    Grew {
        /// Which (as given locally).
        path: PathBuf,
        /// Its size when it was counted: what went.
        size: u64,
    },
    /// A file did not arrive verified.
    NotDelivered {
        /// Which (as given locally).
        path: PathBuf,
        /// Why.
        status: Status,
    },
    /// Files the receiver already has, byte for byte (`listen
    /// --on-collision skip-identical`, or a partial that was all of it):
    /// their bytes were not sent.
    Identical {
        /// How many.
        files: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// A held prefix was checked.
    Resume {
        /// The file's wire path.
        name: String,
        /// Bytes held.
        offset: u64,
        /// The verdict.
        verdict: ResumeVerdict,
    },
    /// Another attempt follows (`--retry`).
    Retrying {
        /// What failed.
        error: String,
        /// Seconds until the next attempt.
        pause: f64,
        /// Its number.
        attempt: u32,
        /// Seconds left of the window.
        left: u64,
    },
    /// `--retry` gives up.
    GivingUp {
        /// What failed last.
        error: String,
        /// Attempts made.
        attempts: u32,
        /// The window, in seconds.
        window: f64,
    },
    /// A peer was refused loudly (a changed key, an impostor).
    PeerRefused(crate::error::TrustError),
    /// The user trusted a peer while accepting its offer.
    TrustedNow(PeerLabel),
    /// The listener's LocalSend side could not start (it runs without).
    LocalSendOff(String),
    /// Sending to a LocalSend device not trusted yet: it has no
    /// verification code; its certificate fingerprint is what to compare.
    LocalSendDevice {
        /// The device.
        peer: PeerLabel,
        /// Its whole certificate fingerprint, as LocalSend shows it.
        fingerprint: String,
        /// Met for the first time.
        first: bool,
    },
    /// The peer store could not be written (the transfer goes on).
    StoreFailed(String),
    /// A partial file is offered back for resuming.
    Held {
        /// The entry's path (as offered).
        name: String,
        /// Bytes held.
        bytes: u64,
    },
    /// Partial files of old transfers were removed at start.
    PartialsRemoved {
        /// How many.
        files: u64,
        /// Their bytes.
        bytes: u64,
        /// After how many days they go.
        days: u64,
    },
    /// Partial files of interrupted transfers are kept for resuming.
    PartialsKept {
        /// How many.
        files: u64,
        /// Their bytes.
        bytes: u64,
        /// After how many days they go.
        days: u64,
    },
    /// Stopping: transfers still running get a moment to finish.
    Stopping,
    /// The node is not announced on the network.
    NotAnnounced(String),
}

/// A transfer, by number: every event of one send (its retries included) or
/// of one incoming connection carries the same one.
pub type TransferId = u64;

tokio::task_local! {
    /// The transfer the current task works for.
    static TRANSFER: TransferId;
}

/// Runs `fut` as a new transfer: what it emits carries its id.
pub(crate) async fn in_transfer<F: Future>(fut: F) -> F::Output {
    TRANSFER.scope(next_transfer(), fut).await
}

/// Runs `fut` as transfer `id` (from [`next_transfer`]).
pub(crate) async fn in_transfer_as<F: Future>(id: TransferId, fut: F) -> F::Output {
    TRANSFER.scope(id, fut).await
}

/// A number no other transfer of this process has.
pub(crate) fn next_transfer() -> TransferId {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The transfer the current task works for, if any.
fn current_transfer() -> Option<TransferId> {
    TRANSFER.try_with(|t| *t).ok()
}

/// An event as a subscriber gets it: the event, and the transfer it belongs
/// to (`None` for the node's own: listening, peers coming and going).
/// Serialized flat: `{"event": "progress", ..., "transfer": 3}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// Which transfer it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferId>,
}

/// A subscriber that has just been given an event and finds its queue empty
/// waits this long before it asks to be woken by the next one.
///
/// A transfer of many small files emits an event per file from its writer
/// thread; were the subscriber woken for each (it usually keeps up, so it
/// usually sleeps on the queue), every file would cost a cross-thread
/// wake-up and a context switch on a shared core. Paced, a busy stream is
/// read in bursts, at most one wake-up per pace; an event after a quiet
/// spell is seen at once.
pub const EVENT_PACE: Duration = Duration::from_millis(5);

/// One subscriber's queue of events.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Envelope>,
    /// When the last event was taken from the queue.
    last: Option<Instant>,
}

impl EventStream {
    fn new(rx: mpsc::UnboundedReceiver<Envelope>) -> Self {
        EventStream { rx, last: None }
    }

    /// The next event; `None` once the node and everything it runs are gone.
    pub async fn next(&mut self) -> Option<Envelope> {
        let event = match self.rx.try_recv() {
            Ok(event) => Some(event),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Some(last) = self.last.filter(|t| t.elapsed() < EVENT_PACE) {
                    // Events are coming fast: gather the next ones without
                    // being woken for each.
                    tokio::time::sleep_until((last + EVENT_PACE).into()).await;
                }
                self.rx.recv().await
            }
        };
        self.last = event.is_some().then(Instant::now);
        event
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<Envelope> {
        self.rx.try_recv().ok()
    }
}

/// One subscriber: its queue, and which events it wants.
#[derive(Debug)]
struct Subscriber {
    tx: mpsc::UnboundedSender<Envelope>,
    interest: Interest,
}

/// What one subscriber keeps of the node's events.
#[derive(Debug, Clone, Copy)]
pub struct Interest {
    /// The kinds of event it keeps: it may be asked about a probe whose
    /// fields are empty ([`Events::wanted`]).
    pub wants: fn(&Event) -> bool,
    /// `file_done` of the first this many files of each transfer only (a
    /// front end that lists the first files of a send spares the rest of a
    /// 100,000-file transfer the event's two allocations, its queueing and
    /// its wake-up per file).
    pub files_done: u64,
}

impl Interest {
    /// Every event.
    pub const ALL: Interest = Interest {
        wants: |_| true,
        files_done: u64::MAX,
    };

    /// Whether it keeps `event`, the `nth` (from 0) `file_done` of its
    /// transfer when it is one.
    fn keeps(&self, event: &Event, nth: Option<u64>) -> bool {
        nth.is_none_or(|n| n < self.files_done) && (self.wants)(event)
    }
}

/// Where the node's events go: every subscriber. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Events {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    /// The transfer every event of this handle belongs to (for threads that
    /// do not run in the transfer's task).
    transfer: Option<TransferId>,
}

impl Events {
    /// A new subscriber: it sees every event from now on.
    #[must_use]
    pub fn subscribe(&self) -> EventStream {
        self.subscribe_to(Interest::ALL)
    }

    /// A new subscriber of the events `wants` keeps, from now on (the
    /// others are not even copied for it: a front end that shows no
    /// `file_done` spares a large transfer two allocations per file).
    /// `wants` decides by the kind of event: it may be asked about a probe
    /// whose fields are empty ([`Events::wanted`]).
    #[must_use]
    pub fn subscribe_where(&self, wants: fn(&Event) -> bool) -> EventStream {
        self.subscribe_to(Interest {
            wants,
            ..Interest::ALL
        })
    }

    /// A new subscriber of what `interest` keeps, from now on.
    #[must_use]
    pub fn subscribe_to(&self, interest: Interest) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(Subscriber { tx, interest });
        EventStream::new(rx)
    }

    /// This handle, bound to the transfer of the current task (for a
    /// blocking thread to take along).
    #[must_use]
    pub fn here(&self) -> Events {
        Events {
            subscribers: self.subscribers.clone(),
            transfer: self.transfer.or_else(current_transfer),
        }
    }

    /// The transfer this handle's events belong to, here.
    #[must_use]
    pub fn transfer(&self) -> Option<TransferId> {
        self.transfer.or_else(current_transfer)
    }

    /// This handle, bound to transfer `id`.
    #[must_use]
    pub fn for_transfer(&self, id: TransferId) -> Events {
        Events {
            subscribers: self.subscribers.clone(),
            transfer: Some(id),
        }
    }

    /// Delivers `event` to every subscriber still there.
    pub fn emit(&self, event: Event) {
        self.emit_nth(event, None);
    }

    /// Sends `event` (the `nth` `file_done` of its transfer when it is one)
    /// to the subscribers that keep it.
    fn emit_nth(&self, event: Event, nth: Option<u64>) {
        let envelope = Envelope {
            event,
            transfer: self.transfer.or_else(current_transfer),
        };
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.tx.is_closed());
        let wanted = |s: &&Subscriber| s.interest.keeps(&envelope.event, nth);
        let Some(last) = subscribers.iter().rposition(|s| wanted(&s)) else {
            return;
        };
        for s in subscribers[..last].iter().filter(wanted) {
            let _ = s.tx.send(envelope.clone());
        }
        let _ = subscribers[last].tx.send(envelope);
    }

    /// A line for people.
    pub fn notice(&self, notice: Notice) {
        self.emit(Event::Notice(notice));
    }

    /// Whether a subscriber wants events of `probe`'s kind (so that one
    /// nobody wants need not be made).
    #[must_use]
    pub fn wanted(&self, probe: &Event) -> bool {
        self.wanted_nth(probe, None)
    }

    fn wanted_nth(&self, probe: &Event, nth: Option<u64>) -> bool {
        self.lock()
            .iter()
            .any(|s| !s.tx.is_closed() && s.interest.keeps(probe, nth))
    }

    /// Whether anyone listens (a transfer skips its per-file progress work otherwise).
    #[must_use]
    pub fn watched(&self) -> bool {
        self.lock().iter().any(|s| !s.tx.is_closed())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a count runs before [`Event::Counting`] says how far it got.
pub const COUNTING_SHOWN_AFTER: Duration = Duration::from_millis(500);

/// The [`Event::Counting`] events of one count: none before `after`, then at
/// most every [`PROGRESS_EVERY`], and the last at the end when any came.
#[derive(Debug)]
pub(crate) struct CountProgress<'a> {
    events: &'a Events,
    after: Duration,
    started: Instant,
    /// When the last event went, once one has.
    last: Option<Instant>,
    /// Entries since the clock was last read (it is read every
    /// [`CountProgress::LOOK_EVERY`] entries, not for each).
    unlooked: u32,
}

impl<'a> CountProgress<'a> {
    const LOOK_EVERY: u32 = 256;

    /// A count that starts now, shown from `after` on.
    pub(crate) fn new(events: &'a Events, after: Duration) -> Self {
        CountProgress {
            events,
            after,
            started: Instant::now(),
            last: None,
            unlooked: Self::LOOK_EVERY,
        }
    }

    /// Found so far: `entries` of `bytes`.
    pub(crate) fn found(&mut self, entries: u64, bytes: u64) {
        self.unlooked += 1;
        if self.unlooked < Self::LOOK_EVERY {
            return;
        }
        self.unlooked = 0;
        let due = match self.last {
            None => self.started.elapsed() >= self.after,
            Some(last) => last.elapsed() >= PROGRESS_EVERY,
        };
        if due {
            self.last = Some(Instant::now());
            self.emit(entries, bytes, false);
        }
    }

    /// The count is over, with these totals: said when anything was.
    pub(crate) fn finish(&mut self, entries: u64, bytes: u64) {
        if self.last.is_some() {
            self.emit(entries, bytes, true);
        }
    }

    fn emit(&self, entries: u64, bytes: u64, done: bool) {
        self.events.emit(Event::Counting {
            entries,
            bytes,
            done,
        });
    }
}

/// The [`Event::Checking`] events of one side's check of held prefixes: the
/// first at 0, then at most every [`PROGRESS_EVERY`], the last at the end
/// (none when there is nothing to check).
#[derive(Debug)]
pub(crate) struct Checking<'a> {
    events: &'a Events,
    side: Side,
    peer: &'a PeerLabel,
    bytes: u64,
    done: u64,
    /// The prefixes checked so far (however their hashing ended).
    base: u64,
    last: Instant,
    /// When the check began (for its `checked held prefixes` log line).
    started: Instant,
}

impl<'a> Checking<'a> {
    /// A check of `bytes` held on `side`, with `peer`; says so at once.
    pub(crate) fn new(events: &'a Events, side: Side, peer: &'a PeerLabel, bytes: u64) -> Self {
        let c = Checking {
            events,
            side,
            peer,
            bytes,
            done: 0,
            base: 0,
            last: Instant::now(),
            started: Instant::now(),
        };
        if bytes > 0 {
            c.emit();
        }
        c
    }

    fn emit(&self) {
        self.events.emit(Event::Checking {
            side: self.side,
            peer: self.peer.clone(),
            bytes: self.bytes,
            done: self.done,
        });
    }

    /// `n` more bytes hashed.
    pub(crate) fn advance(&mut self, n: u64) {
        self.done = (self.done + n).min(self.bytes);
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            self.emit();
        }
    }

    /// A prefix of `len` bytes is checked (hashed, or found unreadable).
    pub(crate) fn prefix_done(&mut self, len: u64) {
        self.base += len;
        self.done = self.base.min(self.bytes);
    }

    /// The check is over: the last event, at `bytes`, and its time in the
    /// log (`-v`; the benchmark's resume series reads it).
    pub(crate) fn finish(&mut self) {
        if self.bytes > 0 {
            self.done = self.bytes;
            self.emit();
            let side = match self.side {
                Side::Send => "send",
                Side::Receive => "receive",
            };
            tracing::info!(
                side,
                bytes = self.bytes,
                ms = self.started.elapsed().as_secs_f64() * 1e3,
                "checked held prefixes"
            );
        }
    }
}

/// Files listed in a received `offer` event.
pub const OFFER_EVENT_ENTRIES: usize = 1000;

/// Progress of one transfer: counts bytes and reports them at most every
/// [`PROGRESS_EVERY`] (and once at the end).
#[derive(Debug, Clone)]
pub struct Progress {
    inner: Option<Arc<Mutex<Meter>>>,
    events: Events,
    side: Side,
}

#[derive(Debug)]
struct Meter {
    bytes: u64,
    total: u64,
    file: Option<FileProgress>,
    last: Option<Instant>,
    /// The `file_done` calls so far.
    files_done: u64,
}

impl Progress {
    /// Says `notice` to the transfer's front ends (from the thread that
    /// reads the files).
    pub(crate) fn notice(&self, notice: Notice) {
        self.events.notice(notice);
    }

    /// Progress of `total` bytes on `side`, reported to `events` (nothing is
    /// counted when nobody listens).
    #[must_use]
    pub fn new(events: &Events, side: Side, total: u64) -> Self {
        let inner = events.watched().then(|| {
            Arc::new(Mutex::new(Meter {
                bytes: 0,
                total,
                file: None,
                last: None,
                files_done: 0,
            }))
        });
        Progress {
            inner,
            events: events.here(),
            side,
        }
    }

    /// Whether anyone watches: callers may skip their per-file calls otherwise.
    #[must_use]
    pub fn watched(&self) -> bool {
        self.inner.is_some()
    }

    fn with(&self, f: impl FnOnce(&mut Meter)) {
        if let Some(m) = &self.inner {
            f(&mut m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }

    /// A new file begins.
    pub fn start_file(&self, name: &str, size: u64) {
        self.with(|m| match &mut m.file {
            // The name's buffer is reused: one file after another, a
            // hundred thousand times.
            Some(f) => {
                f.name.clear();
                f.name.push_str(name);
                f.bytes = 0;
                f.size = size;
            }
            None => {
                m.file = Some(FileProgress {
                    name: name.to_owned(),
                    bytes: 0,
                    size,
                });
            }
        });
    }

    /// `n` more bytes to move than announced.
    pub fn grow(&self, n: u64) {
        self.with(|m| m.total += n);
    }

    /// `n` bytes fewer to move than announced (held by the receiver, or
    /// not sent after all).
    pub(crate) fn shrink(&self, n: u64) {
        self.with(|m| m.total = m.total.saturating_sub(n));
    }

    /// `n` more bytes moved.
    pub fn advance(&self, n: u64) {
        let mut due = None;
        self.with(|m| {
            m.bytes += n;
            if let Some(f) = &mut m.file {
                f.bytes += n;
            }
            let now = Instant::now();
            if m.last
                .is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY)
            {
                m.last = Some(now);
                due = Some((m.bytes, m.total, m.file.clone()));
            }
        });
        if let Some((bytes, total, file)) = due {
            self.emit(bytes, total, file);
        }
    }

    fn emit(&self, bytes: u64, total: u64, file: Option<FileProgress>) {
        self.events.emit(Event::Progress {
            side: self.side,
            bytes,
            total,
            file,
        });
    }

    /// A file is done: sent, or saved under `path`.
    /// `name` is asked for only when someone listens for the event.
    pub fn file_done<N: Into<String>>(
        &self,
        name: impl FnOnce() -> N,
        size: u64,
        path: Option<&std::path::Path>,
    ) {
        let mut nth = 0;
        self.with(|m| {
            nth = m.files_done;
            m.files_done += 1;
        });
        let probe = Event::FileDone {
            side: self.side,
            name: String::new(),
            size,
            path: None,
        };
        if self.inner.is_some() && self.events.wanted_nth(&probe, Some(nth)) {
            self.events.emit_nth(
                Event::FileDone {
                    side: self.side,
                    name: name().into(),
                    size,
                    path: path.map(std::path::Path::to_path_buf),
                },
                Some(nth),
            );
        }
    }

    /// The last progress event (the final figures).
    pub fn finish(&self) {
        let mut last = None;
        self.with(|m| last = Some((m.bytes, m.total)));
        if let Some((bytes, total)) = last {
            self.emit(bytes, total, None);
        }
    }
}

/// The label of a proven peer.
#[must_use]
pub fn peer_label(peer: &PeerIdentity) -> PeerLabel {
    PeerLabel::of(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_throttled_but_the_last_one_always_goes() {
        let events = Events::default();
        let mut rx = events.subscribe();
        let p = Progress::new(&events, Side::Send, 10);
        p.advance(1);
        p.advance(1);
        p.finish();
        let got: Vec<u64> = std::iter::from_fn(|| rx.try_next())
            .map(|e| match e.event {
                Event::Progress { bytes, .. } => bytes,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [1, 2],
            "the second advance is throttled, the end is not"
        );
        drop(rx);
        assert!(!events.watched());
        assert!(!Progress::new(&events, Side::Send, 1).watched());
    }

    #[test]
    fn a_subscriber_gets_only_what_it_wants_and_the_others_everything_in_order() {
        let events = Events::default();
        let all_before = events.subscribe();
        let mut picky = events.subscribe_where(|e| !matches!(e, Event::FileDone { .. }));
        let mut all = [all_before, events.subscribe()];
        let p = Progress::new(&events, Side::Receive, 1);
        p.file_done(|| "a", 1, None);
        events.notice(Notice::Stopping);
        p.file_done(|| "b", 1, Some(std::path::Path::new("/in/b")));
        let kinds = |rx: &mut EventStream| -> Vec<String> {
            std::iter::from_fn(|| rx.try_next())
                .map(|e| match e.event {
                    Event::FileDone { name, path, .. } => format!("{name} {path:?}"),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        for rx in &mut all {
            assert_eq!(
                kinds(rx),
                ["a None", "Notice(Stopping)", "b Some(\"/in/b\")"]
            );
        }
        assert_eq!(kinds(&mut picky), ["Notice(Stopping)"]);
        // Only a picky subscriber left: nothing it does not want is queued.
        drop(all);
        p.file_done(|| "c", 1, None);
        assert!(picky.try_next().is_none());
    }

    #[test]
    fn a_subscriber_of_the_first_files_gets_their_file_done_per_transfer_and_every_other_event() {
        let events = Events::default();
        let names = |rx: &mut EventStream| -> Vec<String> {
            std::iter::from_fn(|| rx.try_next())
                .map(|e| match e.event {
                    Event::FileDone { name, .. } => name,
                    other => format!("{other:?}"),
                })
                .collect()
        };
        let mut first_two = events.subscribe_to(Interest {
            files_done: 2,
            ..Interest::ALL
        });
        let mut none = events.subscribe_to(Interest {
            files_done: 0,
            ..Interest::ALL
        });
        let mut all = events.subscribe();
        let one = Progress::new(&events, Side::Receive, 1);
        let made = std::cell::Cell::new(0);
        for name in ["a", "b", "c"] {
            one.file_done(
                || {
                    made.set(made.get() + 1);
                    name
                },
                1,
                None,
            );
        }
        events.notice(Notice::Stopping);
        // The next transfer counts its own files.
        let two = Progress::new(&events, Side::Receive, 1);
        two.file_done(|| "d", 1, None);
        assert_eq!(names(&mut all), ["a", "b", "c", "Notice(Stopping)", "d"]);
        assert_eq!(names(&mut first_two), ["a", "b", "Notice(Stopping)", "d"]);
        assert_eq!(names(&mut none), ["Notice(Stopping)"]);
        drop(all);
        one.file_done(
            || {
                made.set(made.get() + 1);
                "e"
            },
            1,
            None,
        );
        assert!(first_two.try_next().is_none());
        assert_eq!(made.get(), 3, "a name nobody keeps is not even made");
    }

    #[tokio::test]
    async fn events_of_a_transfer_carry_its_id_even_from_another_thread() {
        let events = Events::default();
        let mut rx = events.subscribe();
        events.notice(Notice::Stopping);
        let (one, two) = tokio::join!(
            in_transfer(async { events.here() }),
            in_transfer(async { events.here() })
        );
        assert_ne!(one.transfer(), two.transfer());
        std::thread::spawn(move || one.notice(Notice::Stopping))
            .join()
            .unwrap();
        let first = rx.try_next().unwrap();
        assert_eq!(first.transfer, None, "the node's own event");
        let second = rx.try_next().unwrap();
        assert!(second.transfer.is_some(), "{second:?}");
        let error = Envelope {
            event: Event::Error {
                side: None,
                peer: None,
                session: None,
                message: "x".into(),
                stopped: None,
            },
            transfer: Some(7),
        };
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"event":"error","message":"x","transfer":7}"#
        );
    }

    #[test]
    fn notices_stay_out_of_the_machine_stream() {
        let n = Event::Notice(Notice::Stopping);
        assert!(!n.is_machine());
        let e = Event::Error {
            side: None,
            peer: None,
            session: None,
            message: "x".into(),
            stopped: None,
        };
        assert!(e.is_machine());
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event": "error", "message": "x"})
        );
    }
}
