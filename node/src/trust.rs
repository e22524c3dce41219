//! Trust on first use, in the node: pin peers at first contact, refuse a
//! changed key loudly, keep per-peer session history, and what the `trust`,
//! `forget`, `block` and `sessions` commands change and read.
//!
//! ```text
//!  handshake ─► contact() ─┬─ first contact: pin, show the verification code
//!                          ├─ known: trust state (decides consent)
//!                          └─ key changed: refuse, both fingerprints + `localstream forget <id>`
//!  transfer  ─► Session::begin ... Session::end (outcome, files, bytes) ─► peers.json
//!               (first contact, trust: written at begin; a pinned peer: at the end, one write)
//! ```
//!
//! The store is a file shared by every localstream process of this home, so
//! every access goes through a blocking thread (it may wait for the lock).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use localstream_discovery::PeerRecord;
use localstream_proto::PeerIdentity;
use localstream_proto::names::escape_for_terminal;
use tracing::info;
use uuid::Uuid;

use crate::error::{Error, ResolveError, Result, TransferError, TrustError};
use crate::event::{Events, Notice};
use crate::identity::{fingerprint_hex, short_fingerprint};
use crate::store::{
    Contact, Direction, Outcome, PeerEntry, PeerStore, Seen, SessionEnd, SessionRecord, StoreData,
    Trust, now_ms, now_secs,
};

/// Runs `f` on the store in a blocking thread.
async fn with_store<T: Send + 'static>(
    store: &PeerStore,
    f: impl FnOnce(&PeerStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store)).await?
}

/// Checks that the store is readable (at start-up, so that a corrupt store
/// is reported before anyone connects).
///
/// # Errors
/// [`Error::Store`] naming the file.
pub async fn check_store(store: &PeerStore) -> Result<()> {
    with_store(store, |s| s.load().map(drop).map_err(Error::from)).await
}

/// What first contact or a later one established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contacted {
    /// The peer's trust state now.
    pub trust: Trust,
    /// Whether this contact pinned its key.
    pub first: bool,
}

/// What the store says about `peer`, which just proved its key: first
/// contact, or its trust state. Reads only: a pin is written when the user
/// (or the policy) consents to a transfer ([`Session::begin`]), so a node that
/// merely connects, claiming any id it likes, cannot take a pin over.
///
/// # Errors
/// [`TrustError::KeyChanged`] when the peer's id is pinned to another key, or the
/// store cannot be read.
pub async fn check(store: &PeerStore, peer: &PeerIdentity) -> Result<Contacted> {
    let id = Uuid::from_bytes(peer.node_id);
    let pinned = with_store(store, move |s| {
        Ok(s.load()?.get(&id).map(|e| (e.fingerprint, e.trust)))
    })
    .await?;
    match pinned {
        None => Ok(Contacted {
            trust: Trust::New,
            first: true,
        }),
        Some((fp, trust)) if fp == peer.fingerprint => Ok(Contacted {
            trust,
            first: false,
        }),
        Some((fp, _)) => Err(key_changed(peer, &fp)),
    }
}

/// Where a proven peer was met: the address this node dialled (sender,
/// `add`), or the address it connected from (receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// We connected to it there.
    Dialed(SocketAddr),
    /// It connected from there.
    From(IpAddr),
}

/// Why a proven peer may not go on ([`admit`]).
#[derive(Debug)]
pub enum Refusal {
    /// Its id is pinned to another key ([`TrustError::KeyChanged`]).
    KeyChanged(Error),
    /// The peer store cannot be used.
    Store(Error),
    /// The user blocked it.
    Blocked,
    /// A node not trusted yet under another pinned peer's name, or a new one
    /// at a pinned peer's address ([`TrustError::NewKeyForPinnedPeer`]).
    Impostor(Error),
}

/// The one "authenticated peer" step of the sender, the receiver and `add`:
/// what the store says about `peer`, which just proved its key, and whether
/// it may go on. A changed key, a blocked node, and a node not trusted yet
/// that uses a pinned peer's name (a pinned stranger may rename itself after
/// one that is away), or a new node where a pinned peer was met, are refused.
///
/// # Errors
/// The [`Refusal`]; each caller tells its peer why in its own words.
pub async fn admit(
    store: &PeerStore,
    peer: &PeerIdentity,
    reached: Reached,
) -> std::result::Result<Contacted, Refusal> {
    let contacted = match check(store, peer).await {
        Ok(c) => c,
        Err(e @ Error::Trust(TrustError::KeyChanged { .. })) => return Err(Refusal::KeyChanged(e)),
        Err(e) => return Err(Refusal::Store(e)),
    };
    match contacted.trust {
        Trust::Blocked => return Err(Refusal::Blocked),
        Trust::Trusted => return Ok(contacted),
        Trust::New | Trust::Known => {}
    }
    let impostor = match name_of_pinned(store, peer).await {
        Some(e) => Some(e),
        None if contacted.first => match reached {
            Reached::Dialed(addr) => address_of_pinned(store, peer, addr).await,
            Reached::From(ip) => source_of_pinned(store, peer, ip).await,
        },
        None => None,
    };
    match impostor {
        Some(e) => Err(Refusal::Impostor(e)),
        None => Ok(contacted),
    }
}

fn key_changed(peer: &PeerIdentity, pinned: &[u8; 32]) -> Error {
    Error::Trust(TrustError::KeyChanged {
        peer: escape_for_terminal(&peer.name),
        id: Uuid::from_bytes(peer.node_id),
        pinned: fingerprint_hex(pinned),
        presented: fingerprint_hex(&peer.fingerprint),
    })
}

fn seen(peer: &PeerIdentity, addr: Option<SocketAddr>, from: Option<IpAddr>) -> Seen {
    Seen {
        node_id: Uuid::from_bytes(peer.node_id),
        fingerprint: peer.fingerprint,
        name: peer.name.clone(),
        mac: peer.mac,
        addr,
        from,
        // LocalSend devices prove a certificate, not a LocalStream key.
        localsend: peer.public_key_der.is_empty(),
    }
}

/// A node met for the first time (`peer`) that uses the name of a pinned
/// peer with another key: the loud refusal to show, or `None`.
pub async fn name_of_pinned(store: &PeerStore, peer: &PeerIdentity) -> Option<Error> {
    let (id, name) = (Uuid::from_bytes(peer.node_id), peer.name.clone());
    let data = with_store(store, |s| s.load().map_err(Error::from))
        .await
        .ok()?;
    // One machine may speak both protocols under one name with two keys (its
    // LocalStream key and its LocalSend certificate): names are compared
    // within a protocol.
    let localsend = peer.public_key_der.is_empty();
    let known = data.peers().iter().find(|e| {
        e.node_id != id
            && e.localsend == localsend
            && e.name()
                .is_some_and(|n| crate::discover::looks_like(&name, n))
    })?;
    Some(new_key_for(peer, known, "under that name".into()))
}

/// A node met for the first time (`peer`) answering at `addr`, where a
/// pinned peer was reached within the last [`SOURCE_MEMORY_SECS`] (after
/// that the address may well belong to someone else: DHCP): the loud
/// refusal to show, or `None`.
pub async fn address_of_pinned(
    store: &PeerStore,
    peer: &PeerIdentity,
    addr: SocketAddr,
) -> Option<Error> {
    let known = recent_other(store, peer, move |e| e.addresses.contains(&addr)).await?;
    Some(new_key_for(peer, &known, format!("at its address {addr}")))
}

/// Another pinned peer than `peer`, seen within [`SOURCE_MEMORY_SECS`],
/// for which `held` is true.
async fn recent_other(
    store: &PeerStore,
    peer: &PeerIdentity,
    held: impl Fn(&PeerEntry) -> bool + Send + 'static,
) -> Option<PeerEntry> {
    let id = Uuid::from_bytes(peer.node_id);
    let localsend = peer.public_key_der.is_empty();
    let data = with_store(store, |s| s.load().map_err(Error::from))
        .await
        .ok()?;
    let now = now_secs();
    data.peers()
        .iter()
        .find(|e| {
            e.node_id != id
                && e.localsend == localsend
                && now.saturating_sub(e.last_seen) < SOURCE_MEMORY_SECS
                && held(e)
        })
        .cloned()
}

fn new_key_for(peer: &PeerIdentity, known: &PeerEntry, how: String) -> Error {
    Error::Trust(TrustError::NewKeyForPinnedPeer(Box::new(
        crate::error::PinConflict {
            peer: escape_for_terminal(known.name().unwrap_or("(unnamed)")),
            how,
            known: known.node_id,
            pinned: fingerprint_hex(&known.fingerprint),
            found: Uuid::from_bytes(peer.node_id),
            presented: fingerprint_hex(&peer.fingerprint),
        },
    )))
}

/// How long a pinned peer's source address is held against a newcomer.
pub const SOURCE_MEMORY_SECS: u64 = 24 * 3600;

/// A node met for the first time (`peer`) connecting from `ip`, where a
/// pinned peer connected from within the last [`SOURCE_MEMORY_SECS`]: the
/// loud refusal to show, or `None`. Loopback is exempt: several nodes on one
/// machine (users, tests) all connect from it.
pub async fn source_of_pinned(store: &PeerStore, peer: &PeerIdentity, ip: IpAddr) -> Option<Error> {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return None;
    }
    let known = recent_other(store, peer, move |e| e.came_from.contains(&ip)).await?;
    Some(new_key_for(peer, &known, format!("from its address {ip}")))
}

/// Before connecting to a peer that discovery found for `typed`: refuses an
/// announcement that claims a pinned node id with another key, and one that
/// is found by a name that belongs to another, pinned peer (an impostor
/// taking the name of a node that is away, say). Nothing is sent to either.
///
/// # Errors
/// [`TrustError::AnnouncedKeyDiffers`], [`TrustError::NameTaken`], or the store cannot
/// be read.
pub async fn check_found(store: &PeerStore, typed: &str, record: &PeerRecord) -> Result<()> {
    let data = with_store(store, |s| s.load().map_err(Error::from)).await?;
    if let Some(e) = data.get(&record.node_id)
        && !e.fingerprint.starts_with(&record.fingerprint_prefix)
    {
        return Err(Error::Trust(TrustError::AnnouncedKeyDiffers {
            peer: escape_for_terminal(&record.name),
            id: record.node_id,
            pinned: short_fingerprint(&e.fingerprint),
            announced: crate::identity::group_hex(&record.fingerprint_prefix),
        }));
    }
    // Found by a name that belongs to another pinned peer: whether or not
    // the node found is pinned too (a pinned stranger may have renamed
    // itself after the node that is away).
    let by_id = crate::store::hex_prefix(typed, '-')
        .is_some_and(|p| crate::discover::id_starts_with(&record.node_id, &p));
    // A node the user trusts is what its name means, over one merely pinned.
    let trusted = data
        .get(&record.node_id)
        .is_some_and(|e| e.trust == Trust::Trusted);
    if !by_id
        && let Some(known) = data.peers().iter().find(|e| {
            e.node_id != record.node_id
                && !(trusted && e.trust != Trust::Trusted)
                && (e
                    .name()
                    .is_some_and(|n| crate::discover::same_name(typed, n))
                    || e.alias
                        .as_deref()
                        .is_some_and(|n| crate::discover::same_name(typed, n)))
        })
    {
        return Err(Error::Trust(TrustError::NameTaken {
            name: escape_for_terminal(typed),
            found: record.node_id,
            known: known.node_id,
        }));
    }
    Ok(())
}

/// Session ids as stored: hex of the handshake's session id.
#[must_use]
pub fn session_hex(session_id: &[u8; 16]) -> String {
    localstream_proto::error::hex(session_id)
}

/// What a transfer has done so far, counted as it runs (by the sender's
/// producer, the receiver's writer), so that its history and its message
/// say how far it got when it stops half way.
#[derive(Debug, Default)]
pub struct Tally {
    /// File bytes moved in this session.
    pub bytes: std::sync::atomic::AtomicU64,
    /// Regular files completed in this session (sender: ended; receiver: saved).
    pub files: std::sync::atomic::AtomicU64,
    /// File bytes the receiver held already, resumed.
    pub resumed: std::sync::atomic::AtomicU64,
    /// File bytes offered.
    pub total: std::sync::atomic::AtomicU64,
    /// Whether data began to flow (the receiver answered).
    pub streaming: std::sync::atomic::AtomicBool,
    /// The file in progress (wire path), and (receiver) the bytes its
    /// partial holds; the name's buffer is kept between files.
    current: std::sync::Mutex<Current>,
    /// Files that grew while they were sent (sender): only what they had
    /// when counted went.
    pub(crate) grown: std::sync::atomic::AtomicUsize,
    /// Files the sender's user was told about already as they ended short
    /// (unreadable, shrunk): their failure needs no second line.
    told: std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
}

/// [`Tally`]'s file in progress.
#[derive(Debug, Default)]
struct Current {
    name: String,
    kept: u64,
    /// Whether it is a stream (standard input), which no later run resumes.
    stream: bool,
    /// Whether a file is in progress (`name` and `kept` are its).
    now: bool,
}

impl Tally {
    /// `path` ended short, and the user was told why.
    pub(crate) fn told(&self, path: &std::path::Path) {
        if let Ok(mut told) = self.told.lock() {
            told.insert(path.to_owned());
        }
    }

    /// Whether [`Tally::told`] was said of `path`.
    pub(crate) fn was_told(&self, path: &std::path::Path) -> bool {
        self.told.lock().is_ok_and(|told| told.contains(path))
    }

    /// The counts as they stand.
    #[must_use]
    pub fn figures(&self) -> Figures {
        use std::sync::atomic::Ordering::Relaxed;
        Figures {
            files: self.files.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
        }
    }

    /// Sets the file in progress, `name`, the bytes its partial holds, and
    /// whether it is a stream (no allocation per file once the name's
    /// buffer is large enough).
    pub fn set_current(&self, name: &str, kept: u64, stream: bool) {
        let mut c = self.lock_current();
        c.name.clear();
        c.name.push_str(name);
        c.kept = kept;
        c.stream = stream;
        c.now = true;
    }

    /// No file is in progress (between files).
    pub fn clear_current(&self) {
        self.lock_current().now = false;
    }

    /// The file in progress, if any, the bytes its partial holds, and
    /// whether it is a stream.
    #[must_use]
    pub fn current(&self) -> Option<(String, u64, bool)> {
        let c = self.lock_current();
        c.now.then(|| (c.name.clone(), c.kept, c.stream))
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `e`, when it stopped the transfer in the middle in a way a later
    /// run resumes from (interrupted, the connection lost, the peer silent
    /// or gone), as [`TransferError::Stopped`] with how far it got; any
    /// other error as it is. `transient`: whether `--retry` may try again.
    #[must_use]
    pub fn stopped(
        &self,
        e: Error,
        side: crate::event::Side,
        peer: &str,
        transient: bool,
    ) -> Error {
        use crate::error::{StopCause, Stopped};
        use localstream_proto::Error as ProtoError;
        let cause = match &e {
            Error::Interrupted => StopCause::Interrupted,
            Error::Io(_) | Error::Protocol(ProtoError::Truncated) => StopCause::Lost,
            Error::Timeout(_) => StopCause::Silent,
            // The peer stopped or gave up for now (shutting down, timed
            // out); its other reasons (a full disk, a bad record) stand as
            // they are.
            Error::Protocol(ProtoError::PeerAlert {
                status:
                    localstream_proto::Status::Busy
                    | localstream_proto::Status::Timeout
                    | localstream_proto::Status::Cancelled,
                ..
            }) => StopCause::Ended,
            // A later batch refused by the receiver's own checks: what came
            // before it was delivered.
            Error::Transfer(TransferError::Refused { .. }) => StopCause::Refused,
            _ => return e,
        };
        let reason = match &e {
            Error::Transfer(TransferError::Refused { status, message }) => {
                format!(
                    "{} ({})",
                    crate::error::refusal(*status, message),
                    status.code()
                )
            }
            e => e.to_string(),
        };
        let f = self.figures();
        let (file, kept, stream) = self
            .current()
            .map_or((None, 0, false), |(n, k, s)| (Some(n), k, s));
        let total = self.total.load(std::sync::atomic::Ordering::Relaxed);
        Error::Transfer(TransferError::Stopped(Box::new(Stopped {
            side,
            peer: peer.to_owned(),
            cause,
            reason,
            file,
            kept,
            bytes: f.bytes,
            resumed: f.resumed,
            total,
            files: f.files,
            stream,
            transient,
        })))
    }
}

/// A transfer's counts for its history: regular files, file bytes moved in
/// this session, and bytes resumed (held already from an earlier one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Regular files delivered (folders are not counted).
    pub files: u64,
    /// File bytes moved in this session.
    pub bytes: u64,
    /// File bytes the receiver held already.
    pub resumed: u64,
}

/// How long a session with a peer already pinned may run before its start
/// goes into the store ([`Session::begin`]); one that ends sooner is
/// recorded whole at its end, in one store write.
pub const START_DELAY: Duration = Duration::from_secs(1);

/// A transfer being recorded in the peer's history.
#[derive(Debug, Clone)]
pub struct Session {
    store: PeerStore,
    peer: Uuid,
    id: String,
    /// The session's start and the contact, while not written yet (a peer
    /// pinned before): written with its end, or by a task after
    /// [`START_DELAY`]. `None` once written at [`Session::begin`].
    start: Option<Arc<Mutex<Start>>>,
}

/// A deferred session start ([`Session::begin`]): what the contact and the
/// start record while they are not in the store yet, `None` once written
/// (or recorded with the end).
type Start = Option<Pending>;

/// What a deferred session start writes.
#[derive(Debug)]
struct Pending {
    seen: Seen,
    record: SessionRecord,
}

impl Session {
    /// Begins the session's history once the transfer is consented to; with
    /// `trust`, the peer is trusted from now on (the user said so).
    ///
    /// A peer met for the first time is pinned, and the session's start
    /// written (outcome "interrupted" until it ends, so a crash leaves a
    /// trace), before this returns: the pin the user consented to is durable
    /// before any data is accepted, and a concurrent newcomer with its name
    /// or address is refused from then on. So is a change of trust.
    ///
    /// For a peer already pinned with this key nothing is written now: the
    /// contact and the start go into the store with the end
    /// ([`Session::end`]), one write per session, or after [`START_DELAY`]
    /// when the transfer lasts (a crash then still leaves a trace). Nothing
    /// about its pin changes: it was checked (and is checked again by the
    /// write) to be this key.
    ///
    /// # Errors
    /// [`TrustError::KeyChanged`] if another key is pinned for the peer's id
    /// (in the meantime), or the store cannot be read or written.
    pub async fn begin(
        store: &PeerStore,
        events: &Events,
        peer: &PeerIdentity,
        from: Option<IpAddr>,
        session_id: &[u8; 16],
        direction: Direction,
        trust: bool,
    ) -> Result<Session> {
        Self::begin_after(
            store,
            events,
            peer,
            (from, session_id, direction),
            trust,
            START_DELAY,
        )
        .await
    }

    /// [`Session::begin`], with a deferred start written after `delay`.
    async fn begin_after(
        store: &PeerStore,
        events: &Events,
        peer: &PeerIdentity,
        (from, session_id, direction): (Option<IpAddr>, &[u8; 16], Direction),
        trust: bool,
        delay: Duration,
    ) -> Result<Session> {
        let mut session = Session {
            store: store.clone(),
            peer: Uuid::from_bytes(peer.node_id),
            id: session_hex(session_id),
            start: None,
        };
        let (id, fp) = (session.peer, peer.fingerprint);
        let record = SessionRecord::begin(session.id.clone(), direction, now_ms());
        let seen = seen(peer, None, from);
        let pinned = with_store(store, move |s| {
            Ok(s.load()?.get(&id).is_some_and(|e| e.fingerprint == fp))
        })
        .await?;
        if pinned && !trust {
            let start = Arc::new(Mutex::new(Some(Pending { seen, record })));
            session.start = Some(start.clone());
            let (store, events) = (store.clone(), events.here());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let r = with_store(&store, move |s| write_start(s, id, &start, None)).await;
                if let Err(e) = r {
                    events.notice(Notice::StoreFailed(format!(
                        "could not record the session in the peer store: {e}"
                    )));
                }
            });
            return Ok(session);
        }
        let contact = with_store(store, move |s| {
            s.update(|d| {
                let c = d.contact(&seen, now_secs());
                if !matches!(c, Contact::KeyChanged { .. }) {
                    d.begin_session(&id, record);
                    if trust {
                        d.set_trust(&id, Trust::Trusted);
                    }
                }
                c
            })
            .map_err(Error::from)
        })
        .await?;
        if let Contact::KeyChanged { pinned, .. } = contact {
            return Err(key_changed(peer, &pinned));
        }
        Ok(session)
    }

    /// Writes how the session ended (with its start and the contact, when
    /// they were deferred). Failures are logged: the transfer's own outcome
    /// matters more than its history.
    pub async fn end(self, events: &Events, outcome: Outcome, figures: Figures, detail: &str) {
        let end = SessionEnd {
            ended_ms: now_ms(),
            files: figures.files,
            bytes: figures.bytes,
            resumed: figures.resumed,
            outcome,
            detail: detail.to_owned(),
        };
        let Session {
            store,
            peer,
            id,
            start,
        } = self;
        let r = with_store(&store, move |s| match start {
            Some(start) => write_start(s, peer, &start, Some((&id, end))),
            None => s
                .update(|d| d.end_session(&peer, &id, end))
                .map(drop)
                .map_err(Error::from),
        })
        .await;
        if let Err(e) = r {
            events.notice(Notice::StoreFailed(format!(
                "could not record the session in the peer store: {e}"
            )));
        }
    }
}

/// Writes a deferred session start with the contact (and the session's
/// `end`, when given), if the peer is still pinned with the key it proved
/// (a peer forgotten meanwhile is not pinned again); once written, only the
/// end. The lock is held across the write, so the start is written once.
fn write_start(
    store: &PeerStore,
    id: Uuid,
    start: &Mutex<Start>,
    end: Option<(&str, SessionEnd)>,
) -> Result<()> {
    let mut start = start.lock().unwrap_or_else(PoisonError::into_inner);
    match &*start {
        Some(Pending { seen, record }) => store.update(|d| {
            if d.get(&id)
                .is_some_and(|e| e.fingerprint == seen.fingerprint)
            {
                d.contact(seen, now_secs());
                d.begin_session(&id, record.clone());
                if let Some((sid, end)) = end {
                    d.end_session(&id, sid, end);
                }
            }
        })?,
        None => {
            if let Some((sid, end)) = end {
                store.update(|d| d.end_session(&id, sid, end))?;
            }
        }
    }
    *start = None;
    Ok(())
}

/// How a transfer's result goes into the history: outcome and a short detail.
#[must_use]
pub fn outcome(err: Option<&Error>, all_delivered: bool) -> (Outcome, String) {
    match err {
        None if all_delivered => (Outcome::Ok, String::new()),
        None => (Outcome::Incomplete, String::new()),
        Some(Error::Transfer(TransferError::Refused { status, .. })) => {
            (Outcome::Refused, status.to_string())
        }
        Some(Error::Transfer(TransferError::Incomplete { failed, total })) => (
            Outcome::Incomplete,
            format!("{failed} of {total} files failed"),
        ),
        Some(Error::Interrupted) => (Outcome::Interrupted, "interrupted".into()),
        Some(e @ Error::Transfer(TransferError::Stopped(s))) => {
            let outcome = match s.cause {
                crate::error::StopCause::Interrupted => Outcome::Interrupted,
                // Batches were delivered before the refusal.
                crate::error::StopCause::Refused => Outcome::Incomplete,
                _ => Outcome::Failed,
            };
            (outcome, e.to_string())
        }
        Some(e) => (Outcome::Failed, e.to_string()),
    }
}

/// Sets a pinned peer's trust (the user answered the prompt), only if the
/// pin is still the key the user just saw.
///
/// # Errors
/// When the store cannot be written, or the pin is not that key any more.
pub async fn set_trust(store: &PeerStore, peer: &PeerIdentity, trust: Trust) -> Result<()> {
    let (id, fp) = (Uuid::from_bytes(peer.node_id), peer.fingerprint);
    let done = with_store(store, move |s| {
        s.update(|d| d.get(&id).is_some_and(|e| e.fingerprint == fp) && d.set_trust(&id, trust))
            .map_err(Error::from)
    })
    .await?;
    if done {
        Ok(())
    } else {
        Err(TrustError::PinChangedMeanwhile.into())
    }
}

/// Records a whole session after the fact (the sender's side: it chose the
/// peer, so a transfer the receiver accepted pins it on first contact).
/// Failures are logged.
#[allow(clippy::too_many_arguments)]
pub async fn record_session(
    store: &PeerStore,
    events: &Events,
    peer: &PeerIdentity,
    addr: Option<SocketAddr>,
    session_id: &[u8; 16],
    direction: Direction,
    started_ms: u64,
    end: SessionEnd,
) {
    let (id, seen) = (Uuid::from_bytes(peer.node_id), seen(peer, addr, None));
    let record = SessionRecord::begin(session_hex(session_id), direction, started_ms);
    let r = with_store(store, move |s| {
        s.update(|d| {
            let c = d.contact(&seen, now_secs());
            if !matches!(c, Contact::KeyChanged { .. }) {
                let sid = record.id.clone();
                d.begin_session(&id, record);
                d.end_session(&id, &sid, end);
            }
            c
        })
        .map_err(Error::from)
    })
    .await;
    match r {
        Ok(Contact::KeyChanged { pinned, .. }) => {
            let e = key_changed(peer, &pinned);
            events.notice(Notice::StoreFailed(format!("not recorded: {e}")));
        }
        Ok(_) => {}
        Err(e) => events.notice(Notice::StoreFailed(format!(
            "could not record the session in the peer store: {e}"
        ))),
    }
}

/// Records a session that pins nothing (refused, or ended before the
/// receiver accepted) in the history of a peer that is already pinned with
/// this key; a never-met peer leaves no trace (see [`check`]).
pub async fn record_if_pinned(
    store: &PeerStore,
    events: &Events,
    peer: &PeerIdentity,
    session_id: &[u8; 16],
    direction: Direction,
    outcome: Outcome,
    detail: &str,
) {
    let (id, fp) = (Uuid::from_bytes(peer.node_id), peer.fingerprint);
    let now = now_ms();
    let record = SessionRecord::begin(session_hex(session_id), direction, now);
    let end = SessionEnd {
        ended_ms: now,
        files: 0,
        bytes: 0,
        resumed: 0,
        outcome,
        detail: detail.to_owned(),
    };
    let r = with_store(store, move |s| {
        s.update(|d| {
            if d.get(&id).is_some_and(|e| e.fingerprint == fp) {
                let sid = record.id.clone();
                d.begin_session(&id, record);
                d.end_session(&id, &sid, end);
            }
        })
        .map_err(Error::from)
    })
    .await;
    if let Err(e) = r {
        events.notice(Notice::StoreFailed(format!(
            "could not record the session in the peer store: {e}"
        )));
    }
}

/// The sessions running now, per peer node id: one peer may run several
/// transfers at once, and several peers may.
#[derive(Debug, Default)]
pub struct ActiveSessions(std::sync::Mutex<std::collections::HashMap<uuid::Uuid, Vec<String>>>);

impl ActiveSessions {
    /// Registers a session until the returned guard is dropped; returns the
    /// guard and how many sessions that peer has running, this one included.
    pub(crate) fn enter(&self, peer: uuid::Uuid, session: String) -> (ActiveGuard<'_>, usize) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = map.entry(peer).or_default();
        list.push(session.clone());
        let n = list.len();
        (
            ActiveGuard {
                owner: self,
                peer,
                session,
            },
            n,
        )
    }
}

/// Removes its session from [`ActiveSessions`] when dropped.
#[derive(Debug)]
pub struct ActiveGuard<'a> {
    owner: &'a ActiveSessions,
    peer: uuid::Uuid,
    session: String,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .owner
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = map.get_mut(&self.peer) {
            list.retain(|s| *s != self.session);
            if list.is_empty() {
                map.remove(&self.peer);
            }
        }
    }
}

/// What the store of `home` holds (for `peers`).
///
/// # Errors
/// When the store cannot be read.
pub fn load_store(home: &Path) -> Result<StoreData> {
    PeerStore::new(home).load().map_err(Error::from)
}

/// `lookup` just returned this id, so the entry exists; should it not, an
/// entry with nothing but the id keeps the command's output honest.
fn unreachable_entry(node_id: Uuid) -> PeerEntry {
    PeerEntry {
        node_id,
        fingerprint: [0; 32],
        mac: None,
        names: vec![],
        addresses: vec![],
        came_from: vec![],
        alias: None,
        trust: Trust::New,
        first_seen: 0,
        last_seen: 0,
        sessions: vec![],
        localsend: false,
    }
}

/// Finds the stored peer the user means by `query` (a name, the start of
/// its id or of its fingerprint).
fn find(d: &StoreData, q: &str) -> Result<Uuid> {
    d.lookup(q).map(|p| p.node_id).map_err(|reason| {
        Error::Resolve(ResolveError::UnknownPeer {
            query: q.to_owned(),
            reason,
        })
    })
}

/// Marks the peer the user means by `query` as trusted or blocked
/// (`trust`, `block`); returns it as stored now.
///
/// # Errors
/// When the peer is unknown or ambiguous, or the store cannot be used.
pub fn set_trust_of(store: &PeerStore, query: &str, trust: Trust) -> Result<PeerEntry> {
    let entry = store.update(|d| -> Result<PeerEntry> {
        let id = find(d, query)?;
        d.set_trust(&id, trust);
        Ok(d.get(&id).cloned().unwrap_or_else(|| unreachable_entry(id)))
    })??;
    info!(peer = %entry.node_id, %trust, "trust changed");
    Ok(entry)
}

/// Drops the pin of the peer the user means by `query` (`forget`); returns
/// what was stored.
///
/// # Errors
/// When the peer is unknown or ambiguous, or the store cannot be used.
pub fn forget(store: &PeerStore, query: &str) -> Result<PeerEntry> {
    store.update(|d| -> Result<PeerEntry> {
        let id = find(d, query)?;
        Ok(d.forget(&id).unwrap_or_else(|| unreachable_entry(id)))
    })?
}

/// The peers whose history `sessions` shows: the one `query` means, or all.
///
/// # Errors
/// When the peer is unknown or ambiguous, or the store cannot be read.
pub fn sessions(store: &PeerStore, query: Option<&str>) -> Result<Vec<PeerEntry>> {
    let data = store.load()?;
    Ok(match query {
        Some(q) => {
            let id = find(&data, q)?;
            data.peers()
                .iter()
                .filter(|p| p.node_id == id)
                .cloned()
                .collect()
        }
        None => data.peers().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerIdentity {
        let fingerprint = [n; 32];
        PeerIdentity {
            node_id: localstream_proto::node_id_for(&fingerprint),
            name: format!("peer{n}"),
            mac: None,
            public_key_der: vec![n; 8],
            fingerprint,
        }
    }

    const FROM: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7)));
    const NEVER: Duration = Duration::from_secs(24 * 3600);

    fn done(files: u64) -> Figures {
        Figures {
            files,
            bytes: files * 10,
            resumed: 0,
        }
    }

    /// The peer's sessions as stored: (outcome, files) each.
    fn sessions_of(store: &PeerStore, p: &PeerIdentity) -> Vec<(Outcome, u64)> {
        let data = store.load().unwrap();
        let entry = data.get(&Uuid::from_bytes(p.node_id));
        entry.map_or(vec![], |e| {
            e.sessions.iter().map(|s| (s.outcome, s.files)).collect()
        })
    }

    async fn begin(
        store: &PeerStore,
        p: &PeerIdentity,
        sid: u8,
        trust: bool,
        delay: Duration,
    ) -> Session {
        let how = (FROM, &[sid; 16], Direction::Receive);
        Session::begin_after(store, &Events::default(), p, how, trust, delay)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_pinned_peer_costs_one_store_write_per_session() {
        let home = tempfile::tempdir().unwrap();
        let store = PeerStore::new(home.path());
        let events = Events::default();
        let p = peer(1);
        // First contact: pinned (and trusted, as asked) before the Answer.
        let first = begin(&store, &p, 1, true, NEVER).await;
        assert_eq!(store.writes(), 1, "the pin and the start, in one write");
        let entry = store
            .load()
            .unwrap()
            .get(&Uuid::from_bytes(p.node_id))
            .cloned()
            .unwrap();
        assert_eq!(entry.trust, Trust::Trusted);
        assert_eq!(sessions_of(&store, &p), [(Outcome::Interrupted, 0)]);
        first.end(&events, Outcome::Ok, done(1), "").await;
        assert_eq!(store.writes(), 2);
        // Pinned now: nothing is written before the Answer...
        let second = begin(&store, &p, 2, false, NEVER).await;
        assert_eq!(
            store.writes(),
            2,
            "no write before the Answer for a pinned peer"
        );
        assert_eq!(sessions_of(&store, &p), [(Outcome::Ok, 1)]);
        // ... and the whole session at its end, in one write, with the contact.
        second.end(&events, Outcome::Ok, done(3), "").await;
        assert_eq!(store.writes(), 3);
        assert_eq!(
            sessions_of(&store, &p),
            [(Outcome::Ok, 1), (Outcome::Ok, 3)]
        );
        let entry = store
            .load()
            .unwrap()
            .get(&Uuid::from_bytes(p.node_id))
            .cloned()
            .unwrap();
        assert_eq!(entry.came_from, [FROM.unwrap()]);
        assert_eq!(entry.sessions[1].id, session_hex(&[2; 16]));
    }

    #[tokio::test]
    async fn a_long_session_of_a_pinned_peer_leaves_a_trace() {
        let home = tempfile::tempdir().unwrap();
        let store = PeerStore::new(home.path());
        let events = Events::default();
        let p = peer(2);
        begin(&store, &p, 1, false, NEVER)
            .await
            .end(&events, Outcome::Ok, done(1), "")
            .await;
        assert_eq!(store.writes(), 2, "first contact: the pin, then the end");
        // Deferred, but written once the delay is over (here at once): a
        // crash during the transfer still shows in the history.
        let long = begin(&store, &p, 2, false, Duration::ZERO).await;
        for _ in 0..1000 {
            if store.writes() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            store.writes(),
            3,
            "the start was written while the transfer runs"
        );
        assert_eq!(
            sessions_of(&store, &p),
            [(Outcome::Ok, 1), (Outcome::Interrupted, 0)]
        );
        long.end(&events, Outcome::Failed, done(0), "lost").await;
        assert_eq!(store.writes(), 4);
        assert_eq!(
            sessions_of(&store, &p),
            [(Outcome::Ok, 1), (Outcome::Failed, 0)]
        );
    }

    #[tokio::test]
    async fn trusting_a_pinned_peer_is_written_before_the_answer() {
        let home = tempfile::tempdir().unwrap();
        let store = PeerStore::new(home.path());
        let events = Events::default();
        let p = peer(4);
        let first = begin(&store, &p, 1, false, NEVER).await;
        first.end(&events, Outcome::Ok, done(1), "").await;
        let before = store.writes();
        let trusting = begin(&store, &p, 2, true, NEVER).await;
        assert_eq!(store.writes(), before + 1, "the user's decision, at once");
        let data = store.load().unwrap();
        let entry = data.get(&Uuid::from_bytes(p.node_id)).unwrap();
        assert_eq!(entry.trust, Trust::Trusted);
        assert_eq!(entry.sessions.len(), 2);
        trusting.end(&events, Outcome::Ok, done(1), "").await;
        assert_eq!(store.writes(), before + 2);
        assert_eq!(
            sessions_of(&store, &p),
            [(Outcome::Ok, 1), (Outcome::Ok, 1)]
        );
    }

    #[tokio::test]
    async fn a_peer_forgotten_during_a_session_is_not_pinned_again() {
        let home = tempfile::tempdir().unwrap();
        let store = PeerStore::new(home.path());
        let events = Events::default();
        let p = peer(3);
        begin(&store, &p, 1, false, NEVER)
            .await
            .end(&events, Outcome::Ok, done(1), "")
            .await;
        let running = begin(&store, &p, 2, false, NEVER).await;
        forget(&store, "peer3").unwrap();
        running.end(&events, Outcome::Ok, done(1), "").await;
        assert!(
            store.load().unwrap().peers().is_empty(),
            "{:?}",
            store.load().unwrap().peers()
        );
    }

    #[test]
    fn active_sessions_per_peer() {
        let active = ActiveSessions::default();
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let (g1, n1) = active.enter(a, "s1".into());
        let (g2, n2) = active.enter(a, "s2".into());
        let (g3, n3) = active.enter(b, "s3".into());
        assert_eq!((n1, n2, n3), (1, 2, 1));
        drop(g1);
        let (g4, n4) = active.enter(a, "s4".into());
        assert_eq!(n4, 2, "s1 ended, s2 and s4 run");
        drop((g2, g3, g4));
        assert!(active.0.lock().unwrap().is_empty());
    }
}
