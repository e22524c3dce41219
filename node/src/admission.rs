//! Admission: which connections the listener serves, and which it drops.
//!
//! A connection is *unauthenticated* from accept until its peer has proved
//! who it is, then an *authenticated session*. The two are capped apart:
//!
//! ```text
//!  accept ──► every session slot taken? ──yes──► plaintext Busy alert, close
//!               │ no
//!               ▼
//!  unauthenticated pool (MAX_UNAUTHENTICATED, at most PER_SOURCE per address)
//!       full? evict a silent or stalled connection (see below), else refuse
//!               │ ClientHello ──► key-exchange token (limits.rs), else 503
//!               │ peer proven
//!               ▼
//!  session slot (MAX_SESSIONS, MAX_SESSIONS_PER_PEER) ── none? ──► Busy, close
//! ```
//!
//! Opening a TCP connection costs an attacker nothing, so a connection that
//! has not said anything (no ClientHello yet), or that stopped after our
//! ServerHello for longer than an honest peer ever takes ([`STALLED`]), never
//! keeps its place against a newcomer. A connection in the middle of its
//! handshake (the peer is talking, or we are computing) is never evicted: an
//! honest handshake takes milliseconds, so a flood of new sockets cannot push
//! it out before it completes. Among the evictable ones the victim is the
//! oldest of the address holding the most places, so one host flooding the
//! listener evicts its own connections, not another host's. A connection
//! accepted a moment ago (100 ms) that has not spoken may only be
//! unread yet (a busy listener): it makes room only for a newcomer from its
//! own address, or when its address holds at least two places more than the
//! newcomer's, so an honest host's one connection is not displaced by a flood
//! from many addresses (the newcomer waits a moment instead). An address at its
//! own cap ([`PER_SOURCE`]) only replaces its own silent or stalled
//! connections, else waits for one of them to finish. A connection that
//! started talking but has not finished its ClientHello within [`STALLED`]
//! is stalled too. Addresses count whole (IPv6 too: every host on a LAN
//! shares one /64).
//!
//! ```
//! use localstream_node::admission::{Admission, Refusal};
//!
//! let admission = Admission::new(1, 1);
//! let first = admission.admit("192.0.2.7:50000".parse().unwrap()).unwrap();
//! let evicted = first.eviction();
//! let newcomer = "192.0.2.8:50000".parse().unwrap();
//! // Accepted a moment ago, the first may only be unread yet: the newcomer waits.
//! assert_eq!(admission.admit(newcomer).err(), Some(Refusal::Full));
//! std::thread::sleep(std::time::Duration::from_millis(150));
//! let second = admission.admit(newcomer).unwrap();
//! assert!(evicted.is_cancelled(), "a silent connection made room for the newcomer");
//! assert!(second.authenticated(None).is_some(), "a free session slot");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

mod limits;
pub use limits::{AbandonedNote, Limits, RECENT};

/// How far back the consent prompt counts abandoned key exchanges, in minutes.
pub const RECENT_MINUTES: u64 = RECENT.as_secs() / 60;

/// Sessions per node id.
type PeerCounts = Arc<Mutex<HashMap<[u8; 16], usize>>>;

/// Connections before authentication at once (more than 64 addresses with
/// one handshake each: a flood from that many cannot fill it by itself).
pub const MAX_UNAUTHENTICATED: usize = 128;
/// ... of which one address may hold at most this many.
pub const PER_SOURCE: usize = 8;
/// Authenticated sessions at once; beyond, newcomers are told Busy.
pub const MAX_SESSIONS: usize = 32;
/// Of those, untrusted peers together may hold this many: the rest are kept
/// for trusted peers, whom strangers can never lock out.
pub const MAX_STRANGER_SESSIONS: usize = 24;
/// Authenticated sessions one untrusted peer (node id) may hold at once.
pub const MAX_SESSIONS_PER_PEER: usize = 16;
/// A peer that has not answered our ServerHello for this long is stalled
/// (an honest one answers within a round trip and a signature).
pub const STALLED: Duration = Duration::from_secs(1);
/// A newcomer finding every place mid-handshake waits this long for one to
/// free up (honest handshakes take milliseconds) before it is told Busy
pub const ADMIT_WAIT: Duration = Duration::from_secs(3);
/// and at most this many wait at once (at most [`PER_SOURCE`] per address).
pub const MAX_WAITING: usize = 256;
/// Evictions are logged one by one at debug level, and summed up at info
/// level at most this often.
const NOTE_EVERY: Duration = Duration::from_secs(60);

/// The listener's two pools: unauthenticated connections and session slots.
/// Cheap to clone (handles to the same pools).
#[derive(Debug, Clone)]
pub struct Admission {
    pending: Arc<Mutex<Pending>>,
    /// Woken whenever a place before authentication frees up.
    freed: Arc<tokio::sync::Notify>,
    /// Newcomers waiting for a place, per address.
    waiting: Arc<Mutex<HashMap<IpAddr, usize>>>,
    sessions: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    per_peer: PeerCounts,
    limits: Limits,
}

/// A connection accepted this recently that has not spoken yet may simply
/// not have been read yet (its ClientHello waiting in the socket): it is
/// evicted only when no older one can be.
pub(super) const SILENT_GRACE: Duration = Duration::from_millis(100);

/// Where a connection is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted; the peer has sent nothing yet.
    Silent,
    /// The peer has started to talk at this moment (its ClientHello is
    /// arriving); stalled if it does not finish within [`STALLED`].
    Talking(Instant),
    /// We sent ServerHello at this moment; the peer owes us its KeyReveal.
    Hello(Instant),
    /// The peer is proving itself (or we are checking it).
    Proving,
}

/// The unauthenticated connections, oldest first.
#[derive(Debug)]
struct Pending {
    cap: usize,
    /// Accept order: ids only grow.
    next: u64,
    conns: BTreeMap<u64, Entry>,
    /// When evictions were last summed up at info level.
    noted: Option<Instant>,
    /// Evictions since then.
    unnoted: u64,
}

#[derive(Debug)]
struct Entry {
    remote: SocketAddr,
    key: IpAddr,
    since: Instant,
    phase: Phase,
    evict: CancellationToken,
}

impl Entry {
    /// Whether this connection may make room for a newcomer; `strict`: a
    /// silent one only once it is older than [`SILENT_GRACE`].
    fn evictable(&self, now: Instant, strict: bool) -> bool {
        match self.phase {
            Phase::Silent => !strict || now.duration_since(self.since) >= SILENT_GRACE,
            Phase::Hello(at) | Phase::Talking(at) => now.duration_since(at) >= STALLED,
            Phase::Proving => false,
        }
    }
}

/// Why a newcomer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every place is held by a connection in the middle of its handshake.
    Full,
}

impl Admission {
    /// Pools of `unauthenticated` places (at least one) and `sessions` slots.
    #[must_use]
    pub fn new(unauthenticated: usize, sessions: usize) -> Admission {
        Admission {
            pending: Arc::new(Mutex::new(Pending {
                cap: unauthenticated.max(1),
                next: 0,
                conns: BTreeMap::new(),
                noted: None,
                unnoted: 0,
            })),
            freed: Arc::new(tokio::sync::Notify::new()),
            waiting: Arc::default(),
            sessions: Arc::new(Semaphore::new(sessions)),
            strangers: Arc::new(Semaphore::new(
                sessions
                    .saturating_sub(MAX_SESSIONS - MAX_STRANGER_SESSIONS)
                    .max(1),
            )),
            per_peer: Arc::default(),
            limits: Limits::new(),
        }
    }

    /// The rate limits connections are checked against.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether every session slot is taken (a newcomer could not be served
    /// even if its handshake succeeded).
    #[must_use]
    pub fn sessions_full(&self) -> bool {
        self.sessions.available_permits() == 0
    }

    /// Connections now before authentication.
    #[must_use]
    pub fn unauthenticated(&self) -> usize {
        self.lock().conns.len()
    }

    /// Takes a place for a connection just accepted from `remote`, evicting
    /// a silent or stalled one (see the module docs) when needed.
    ///
    /// # Errors
    /// [`Refusal::Full`] when no place can be made.
    pub fn admit(&self, remote: SocketAddr) -> Result<Handshaking, Refusal> {
        let evict = CancellationToken::new();
        let now = Instant::now();
        let key = remote.ip().to_canonical();
        let (id, victim, note) = {
            let mut p = self.lock();
            let own = p.conns.values().filter(|e| e.key == key).count();
            // An address at its cap only ever replaces one of its own
            // (silent past the grace, or stalled); else it waits its turn.
            let victim = if own >= PER_SOURCE.min(p.cap) {
                Some(p.victim(now, key, Among::Own).ok_or(Refusal::Full)?)
            } else if p.conns.len() >= p.cap {
                let any = p
                    .victim(now, key, Among::Known)
                    .or_else(|| p.victim(now, key, Among::Young(own)));
                Some(any.ok_or(Refusal::Full)?)
            } else {
                None
            };
            let victim = victim.and_then(|id| p.conns.remove(&id));
            let mut note = None;
            if victim.is_some() {
                p.unnoted += 1;
                if p.noted.is_none_or(|t| now.duration_since(t) >= NOTE_EVERY) {
                    p.noted = Some(now);
                    note = Some(std::mem::take(&mut p.unnoted));
                }
            }
            let id = p.next;
            p.next += 1;
            p.conns.insert(
                id,
                Entry {
                    remote,
                    key,
                    since: now,
                    phase: Phase::Silent,
                    evict: evict.clone(),
                },
            );
            (id, victim, note)
        };
        if let Some(evicted) = note {
            info!(
                evicted,
                "too many connections before authentication: evicting silent or stalled ones"
            );
        }
        if let Some(v) = victim {
            debug!(
                victim = %v.remote,
                waited_ms = now.duration_since(v.since).as_millis() as u64,
                %remote,
                "evicted an unauthenticated connection to make room"
            );
            v.evict.cancel();
        }
        Ok(Handshaking {
            admission: self.clone(),
            id,
            ip: key,
            evict,
            exchange: Exchange::None,
        })
    }

    /// [`Admission::admit`], waiting up to `wait` for a place when every
    /// one is mid-handshake (they free up within milliseconds). At most
    /// [`MAX_WAITING`] newcomers wait at once, [`PER_SOURCE`] per address.
    ///
    /// # Errors
    /// [`Refusal::Full`] when no place came free in time (or too many wait).
    pub async fn admit_waiting(
        &self,
        remote: SocketAddr,
        wait: Duration,
    ) -> Result<Handshaking, Refusal> {
        // Nobody waiting: try at once. Else queue behind them (a stream of
        // newcomers must not keep taking the places they wait for).
        if !self.anyone_waiting()
            && let Ok(h) = self.admit(remote)
        {
            return Ok(h);
        }
        let _turn = self
            .wait_turn(remote.ip().to_canonical())
            .ok_or(Refusal::Full)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Made before looking, so a place freed in between is not missed.
            let freed = self.freed.notified();
            if let Ok(h) = self.admit(remote) {
                return Ok(h);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Refusal::Full);
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(20)), freed).await;
        }
    }

    fn anyone_waiting(&self) -> bool {
        !self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// A place in the waiting line for `ip`, given back when dropped.
    fn wait_turn(&self, ip: IpAddr) -> Option<WaitTurn> {
        let mut w = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = w.values().sum();
        let mine = w.entry(ip).or_default();
        if total >= MAX_WAITING || *mine >= PER_SOURCE {
            return None;
        }
        *mine += 1;
        Some(WaitTurn {
            waiting: self.waiting.clone(),
            ip,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The lock guards no invariant a panic could break halfway.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_phase(&self, id: u64, phase: Phase) {
        if let Some(e) = self.lock().conns.get_mut(&id) {
            e.phase = phase;
        }
    }
}

/// Which connections a newcomer from an address holding `n` places may evict.
#[derive(Debug, Clone, Copy)]
enum Among {
    /// Only its own address's silent or stalled ones (it is at its cap).
    Own,
    /// Known silent or stalled ones, of any address.
    Known,
    /// Silent ones accepted a moment ago (perhaps only not read yet): its
    /// own, or those of an address that would still hold more than it after
    /// the swap. An address never displaces one holding no more than it
    /// does: a host with one connection (an honest peer whose hello the
    /// listener has not read yet) does not make room for a flood from many.
    Young(usize),
}

impl Pending {
    /// The oldest evictable connection of the address holding the most
    /// places, of those `among` allows a newcomer from `newcomer`.
    fn victim(&self, now: Instant, newcomer: IpAddr, among: Among) -> Option<u64> {
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for e in self.conns.values() {
            *held.entry(e.key).or_default() += 1;
        }
        let held = |e: &Entry| held.get(&e.key).copied().unwrap_or(0);
        let allowed = |e: &Entry| {
            let own = e.key == newcomer;
            match among {
                Among::Own => own && e.evictable(now, true),
                Among::Known => e.evictable(now, true),
                Among::Young(n) => (own || held(e) > n + 1) && e.evictable(now, false),
            }
        };
        let candidates = || self.conns.iter().filter(|(_, e)| allowed(e));
        let most = candidates().map(|(_, e)| held(e)).max()?;
        candidates()
            .find(|(_, e)| held(e) == most)
            .map(|(id, _)| *id)
    }
}

/// The key-exchange token of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// No ServerHello sent yet.
    None,
    /// ServerHello sent: abandoned unless the peer proves itself.
    Open,
    /// The peer proved itself; the token went back.
    Completed,
}

/// A connection's place among the unauthenticated ones, from accept until
/// its handshake completes; dropping it gives the place up (and counts an
/// open key exchange as abandoned).
#[derive(Debug)]
pub struct Handshaking {
    admission: Admission,
    id: u64,
    ip: IpAddr,
    evict: CancellationToken,
    exchange: Exchange,
}

impl Handshaking {
    /// Cancelled if this connection is evicted before it authenticates
    /// (never after).
    #[must_use]
    pub fn eviction(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// The peer has started to talk: no longer evictable as silent.
    pub fn talking(&self) {
        self.admission
            .set_phase(self.id, Phase::Talking(Instant::now()));
    }

    /// The peer sent its ClientHello and we are about to answer with a
    /// ServerHello: takes a key-exchange token. `false`: over the limit,
    /// refuse (the connection must not get a ServerHello).
    #[must_use]
    pub fn hello(&mut self) -> bool {
        if !self.admission.limits.take_exchange(self.ip) {
            return false;
        }
        self.exchange = Exchange::Open;
        self.admission
            .set_phase(self.id, Phase::Hello(Instant::now()));
        true
    }

    /// The peer opened its commitment and is proving itself: no longer evictable.
    pub fn proving(&self) {
        self.admission.set_phase(self.id, Phase::Proving);
    }

    /// The session is served: the key exchange was not abandoned.
    fn proven(&mut self) {
        if self.exchange == Exchange::Open {
            self.admission.limits.exchange_completed(self.ip);
        }
        self.exchange = Exchange::Completed;
    }

    /// Whether an untrusted peer at this address may have a signature now.
    #[must_use]
    pub fn may_sign_for_stranger(&self) -> bool {
        self.admission.limits.take_signature(self.ip)
    }

    /// The rate limits (for the consent prompt's note).
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.admission.limits
    }

    /// The handshake is complete: leaves the unauthenticated pool and takes a
    /// session slot for `peer` (its node id; `None` for a trusted peer),
    /// held until the returned value is dropped. `None` means refuse with
    /// Busy: every slot is taken (for an untrusted peer: every slot
    /// strangers may have, or its own [`MAX_SESSIONS_PER_PEER`]), or this
    /// connection was evicted a moment ago and is about to be closed anyway.
    #[must_use]
    pub fn authenticated(mut self, stranger: Option<[u8; 16]>) -> Option<SessionSlot> {
        // Gone from the pool: evicted.
        self.admission.lock().conns.remove(&self.id)?;
        self.admission.freed.notify_one();
        self.proven();
        let mut slot = SessionSlot {
            permits: Vec::new(),
            per_peer: None,
        };
        if let Some(id) = stranger {
            let mut m = self
                .admission
                .per_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = m.entry(id).or_default();
            if *n >= MAX_SESSIONS_PER_PEER {
                return None;
            }
            *n += 1;
            drop(m);
            slot.per_peer = Some((self.admission.per_peer.clone(), id));
            slot.permits
                .push(self.admission.strangers.clone().try_acquire_owned().ok()?);
        }
        slot.permits
            .push(self.admission.sessions.clone().try_acquire_owned().ok()?);
        Some(slot)
    }
}

/// A newcomer's place in the line for a place ([`Admission::admit_waiting`]).
struct WaitTurn {
    waiting: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for WaitTurn {
    fn drop(&mut self) {
        let mut w = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = w.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(&self.ip);
            }
        }
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        if self.admission.lock().conns.remove(&self.id).is_some() {
            self.admission.freed.notify_one();
        }
        if self.exchange == Exchange::Open {
            self.admission.limits.exchange_abandoned(self.ip);
        }
    }
}

/// An authenticated session's slot, given back when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    permits: Vec<OwnedSemaphorePermit>,
    per_peer: Option<(PeerCounts, [u8; 16])>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some((map, id)) = &self.per_peer {
            let mut m = map.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = m.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    /// Makes a connection look accepted long enough ago to be known silent.
    fn age(a: &Admission, c: &Handshaking) {
        if let Some(e) = a.lock().conns.get_mut(&c.id) {
            e.since -= SILENT_GRACE;
        }
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_silent_and_only_it() {
        let a = Admission::new(3, 8);
        let conns: Vec<Handshaking> = (0..5)
            .map(|i| {
                let c = a.admit(at(&format!("10.0.0.1:{}", 1000 + i))).unwrap();
                age(&a, &c);
                c
            })
            .collect();
        let evicted: Vec<bool> = conns.iter().map(|c| c.eviction().is_cancelled()).collect();
        assert_eq!(evicted, [true, true, false, false, false]);
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn the_address_holding_most_places_pays_for_the_newcomer() {
        let a = Admission::new(4, 8);
        let honest = a.admit(at("10.0.0.9:4000")).unwrap();
        let flood: Vec<Handshaking> = (0..50)
            .map(|i| a.admit(at(&format!("10.0.0.66:{}", 1000 + i))).unwrap())
            .collect();
        assert!(
            !honest.eviction().is_cancelled(),
            "a flood from one address evicts only its own connections"
        );
        assert_eq!(
            flood
                .iter()
                .filter(|c| !c.eviction().is_cancelled())
                .count(),
            3
        );
        assert!(honest.authenticated(None).is_some());
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn a_connection_in_its_handshake_is_never_evicted_by_a_flood_from_many_addresses() {
        let a = Admission::new(8, 8);
        let mut honest = a.admit(at("10.0.0.9:4000")).unwrap();
        assert!(honest.hello());
        honest.proving();
        let mut refused = 0;
        let mut flood = vec![];
        for i in 0..640 {
            match a.admit(at(&format!("10.0.{}.{}:1000", i % 64, 1 + i / 64))) {
                Ok(c) => {
                    age(&a, &c);
                    flood.push(c);
                }
                Err(Refusal::Full) => refused += 1,
            }
        }
        assert!(!honest.eviction().is_cancelled());
        assert_eq!(refused, 0, "known silent ones made room for each other");
        assert!(honest.authenticated(None).is_some());
    }

    #[test]
    fn a_host_with_one_unread_connection_is_not_displaced_by_a_flood_from_many() {
        // Grinders from 32 addresses fill the pool with exchanges they have
        // already dropped (the listener has not noticed yet), and keep
        // coming; an honest peer's connection was accepted a moment ago and
        // its hello is still unread.
        let a = Admission::new(64, 8);
        let mut pending = vec![];
        for i in 0..63 {
            let mut c = a
                .admit(at(&format!("10.0.1.{}:{}", i % 32, 1000 + i)))
                .unwrap();
            assert!(c.hello());
            pending.push(c);
        }
        let honest = a.admit(at("10.0.0.9:4000")).unwrap();
        for i in 0..32 {
            let newcomer = a.admit(at(&format!("10.0.1.{i}:2000")));
            assert_eq!(newcomer.err(), Some(Refusal::Full), "it waits for a place");
        }
        assert!(!honest.eviction().is_cancelled());
        // A grinder's own young connection makes room for its next one.
        let mut first = a.admit(at("10.0.2.1:1")).err();
        assert_eq!(first.take(), Some(Refusal::Full));
        drop(pending.pop());
        let young = a.admit(at("10.0.2.1:1")).unwrap();
        let next = a.admit(at("10.0.2.1:2")).unwrap();
        assert!(young.eviction().is_cancelled());
        assert!(!honest.eviction().is_cancelled());
        // Once known silent, it makes room like any silent socket.
        age(&a, &honest);
        let _fresh = a.admit(at("10.0.3.1:1")).unwrap();
        assert!(honest.eviction().is_cancelled());
        assert!(!next.eviction().is_cancelled());
    }

    #[test]
    fn an_address_at_its_cap_waits_rather_than_evicting_its_own_young_connections() {
        let a = Admission::new(64, 8);
        let conns: Vec<Handshaking> = (0..PER_SOURCE)
            .map(|i| a.admit(at(&format!("10.0.0.1:{i}"))).unwrap())
            .collect();
        // Not read yet, perhaps: a young connection is not taken for silent.
        assert_eq!(a.admit(at("10.0.0.1:98")).err(), Some(Refusal::Full));
        // Nor one that talks (until it stalls).
        conns[0].talking();
        age(&a, &conns[1]);
        let newcomer = a.admit(at("10.0.0.1:99")).unwrap();
        assert!(conns[1].eviction().is_cancelled());
        assert!(!conns[0].eviction().is_cancelled());
        // Another address is not held up by this one.
        assert!(a.admit(at("10.0.0.2:1")).is_ok());
        drop(newcomer);
    }

    #[test]
    fn a_connection_that_starts_its_hello_and_stops_becomes_evictable() {
        let a = Admission::new(1, 8);
        let c = a.admit(at("10.0.0.1:1")).unwrap();
        c.talking();
        assert_eq!(a.admit(at("10.0.0.2:1")).err(), Some(Refusal::Full));
        a.set_phase(c.id, Phase::Talking(Instant::now() - STALLED));
        assert!(a.admit(at("10.0.0.2:1")).is_ok());
        assert!(c.eviction().is_cancelled());
    }

    #[test]
    fn when_every_place_is_mid_handshake_a_newcomer_is_refused() {
        let a = Admission::new(2, 8);
        let mut c1 = a.admit(at("10.0.0.1:1")).unwrap();
        let mut c2 = a.admit(at("10.0.0.2:1")).unwrap();
        assert!(c1.hello() && c2.hello());
        c1.proving();
        c2.proving();
        assert_eq!(a.admit(at("10.0.0.3:1")).err(), Some(Refusal::Full));
        assert!(!c1.eviction().is_cancelled() && !c2.eviction().is_cancelled());
    }

    #[tokio::test]
    async fn a_newcomer_waits_for_a_place_when_every_one_is_mid_handshake() {
        let a = Admission::new(1, 8);
        let mut busy = a.admit(at("10.0.0.1:1")).unwrap();
        assert!(busy.hello());
        busy.proving();
        // Nothing frees up: refused after the wait.
        let waited = a
            .admit_waiting(at("10.0.0.2:1"), Duration::from_millis(50))
            .await;
        assert_eq!(waited.err(), Some(Refusal::Full));
        // The place frees up while it waits: admitted.
        let b = a.clone();
        let waiter =
            tokio::spawn(async move { b.admit_waiting(at("10.0.0.2:1"), ADMIT_WAIT).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(busy);
        let got = waiter.await.unwrap();
        assert!(got.is_ok());
        assert_eq!(a.unauthenticated(), 1);
    }

    #[test]
    fn a_peer_stalled_after_our_server_hello_becomes_evictable() {
        let a = Admission::new(1, 8);
        let mut c = a.admit(at("10.0.0.1:1")).unwrap();
        assert!(c.hello());
        assert_eq!(a.admit(at("10.0.0.2:1")).err(), Some(Refusal::Full));
        a.set_phase(c.id, Phase::Hello(Instant::now() - STALLED));
        let _d = a.admit(at("10.0.0.2:1")).unwrap();
        assert!(c.eviction().is_cancelled());
    }

    #[test]
    fn an_address_at_its_cap_only_replaces_its_own() {
        let a = Admission::new(64, 8);
        let other = a.admit(at("10.0.0.2:1")).unwrap();
        let own: Vec<Handshaking> = (0..PER_SOURCE + 3)
            .map(|i| {
                let c = a.admit(at(&format!("10.0.0.1:{}", 100 + i))).unwrap();
                // Old enough to be known silent.
                let mut p = a.lock();
                if let Some(e) = p.conns.get_mut(&c.id) {
                    e.since -= SILENT_GRACE;
                }
                drop(p);
                c
            })
            .collect();
        assert!(!other.eviction().is_cancelled());
        assert_eq!(
            own.iter().filter(|c| c.eviction().is_cancelled()).count(),
            3
        );
        assert_eq!(a.unauthenticated(), PER_SOURCE + 1);
    }

    #[test]
    fn ipv6_addresses_count_whole_and_mapped_ipv4_as_ipv4() {
        let a = Admission::new(2, 8);
        let first = a.admit(at("[2001:db8:1:2::1]:1")).unwrap();
        let second = a.admit(at("[2001:db8:1:2::2]:1")).unwrap();
        age(&a, &first);
        age(&a, &second);
        let _third = a.admit(at("[::ffff:192.0.2.1]:1")).unwrap();
        // Three addresses with one place each: the oldest made room.
        assert!(first.eviction().is_cancelled());
        let b = Admission::new(8, 8);
        let _v4 = b.admit(at("192.0.2.1:1")).unwrap();
        let mapped = b.admit(at("[::ffff:192.0.2.1]:2")).unwrap();
        assert_eq!(mapped.ip, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn authenticated_connections_leave_the_pool_and_cannot_be_evicted() {
        let a = Admission::new(1, 8);
        let first = a.admit(at("10.0.0.1:1")).unwrap();
        let evict = first.eviction();
        let slot = first.authenticated(None);
        assert!(slot.is_some());
        assert_eq!(a.unauthenticated(), 0);
        let second = a.admit(at("10.0.0.1:2")).unwrap();
        age(&a, &second);
        let _third = a.admit(at("10.0.0.1:3")).unwrap();
        assert!(second.eviction().is_cancelled());
        assert!(!evict.is_cancelled());
    }

    #[test]
    fn session_slots_are_capped_and_given_back() {
        let a = Admission::new(8, 2);
        let s1 = a
            .admit(at("10.0.0.1:1"))
            .unwrap()
            .authenticated(None)
            .unwrap();
        let _s2 = a
            .admit(at("10.0.0.1:2"))
            .unwrap()
            .authenticated(None)
            .unwrap();
        assert!(a.sessions_full());
        assert!(
            a.admit(at("10.0.0.1:3"))
                .unwrap()
                .authenticated(None)
                .is_none()
        );
        drop(s1);
        assert!(!a.sessions_full());
        assert!(
            a.admit(at("10.0.0.1:4"))
                .unwrap()
                .authenticated(None)
                .is_some()
        );
    }

    #[test]
    fn one_untrusted_peer_holds_at_most_its_share_and_strangers_never_take_the_last_slots() {
        let a = Admission::new(64, 32);
        let slots: Vec<SessionSlot> = (0..MAX_SESSIONS_PER_PEER)
            .map(|i| {
                a.admit(at(&format!("10.0.0.1:{i}")))
                    .unwrap()
                    .authenticated(Some([7; 16]))
                    .unwrap()
            })
            .collect();
        let more = a.admit(at("10.0.0.1:99")).unwrap();
        assert!(more.authenticated(Some([7; 16])).is_none());
        let other = a.admit(at("10.0.0.2:99")).unwrap();
        assert!(other.authenticated(Some([8; 16])).is_some());
        drop(slots);
        let again = a.admit(at("10.0.0.1:98")).unwrap();
        assert!(again.authenticated(Some([7; 16])).is_some());
        // Strangers fill every slot they may have: a trusted peer still gets in.
        let strangers: Vec<SessionSlot> = (0..64u8)
            .filter_map(|i| {
                a.admit(at(&format!("10.0.1.{i}:1")))
                    .unwrap()
                    .authenticated(Some([i; 16]))
            })
            .collect();
        assert_eq!(strangers.len(), MAX_STRANGER_SESSIONS);
        let trusted = a.admit(at("10.0.2.1:1")).unwrap();
        assert!(trusted.authenticated(None).is_some());
    }

    #[test]
    fn an_evicted_connection_does_not_get_a_session() {
        let a = Admission::new(1, 8);
        let first = a.admit(at("10.0.0.1:1")).unwrap();
        age(&a, &first);
        let _second = a.admit(at("10.0.0.1:2")).unwrap();
        assert!(first.authenticated(None).is_none());
    }

    #[test]
    fn key_exchanges_abandoned_after_server_hello_are_counted_served_ones_not() {
        let a = Admission::new(8, 8);
        let mut honest = a.admit(at("10.0.0.1:1")).unwrap();
        assert!(honest.hello());
        let slot = honest.authenticated(None);
        assert!(slot.is_some());
        assert_eq!(a.limits().recently_abandoned(), None);
        // A peer that completes its proof but is refused before the listener
        // signs learnt its code all the same: abandoned.
        let mut refused = a.admit(at("10.0.0.4:1")).unwrap();
        assert!(refused.hello());
        refused.proving();
        drop(refused);
        assert_eq!(a.limits().recently_abandoned().map(|n| n.count), Some(1));
        let silent = a.admit(at("10.0.0.2:1")).unwrap();
        drop(silent);
        assert_eq!(a.limits().recently_abandoned().map(|n| n.count), Some(1));
        for i in 0..3 {
            let mut grinder = a.admit(at(&format!("10.0.0.3:{i}"))).unwrap();
            assert!(grinder.hello());
        }
        assert_eq!(a.limits().recently_abandoned().map(|n| n.count), Some(4));
    }

    #[test]
    fn one_address_can_abandon_only_its_burst_of_key_exchanges() {
        let a = Admission::new(8, 8);
        let mut granted = 0;
        for i in 0..200 {
            let mut c = a.admit(at(&format!("10.0.0.3:{i}"))).unwrap();
            if c.hello() {
                granted += 1;
            }
        }
        // The bucket refills at its rate while the loop runs: allow a little.
        assert!(
            (super::limits::EXCHANGE_SOURCE_BURST as usize
                ..super::limits::EXCHANGE_SOURCE_BURST as usize + 5)
                .contains(&granted),
            "{granted}"
        );
        let mut other = a.admit(at("10.0.0.4:1")).unwrap();
        assert!(other.hello(), "another address is not affected");
    }
}
