//! Admission: which connections the listener serves, and which it drops.
//!
//! A connection is *unauthenticated* from accept until its handshake
//! completes, then an *authenticated session*. The two are capped apart:
//!
//! ```text
//!  accept ──► every session slot taken? ──yes──► plaintext Busy alert, close
//!               │ no
//!               ▼
//!  unauthenticated pool (MAX_UNAUTHENTICATED)
//!       full? evict the oldest connection of the address holding the most places
//!               │ handshake done
//!               ▼
//!  session slot (MAX_SESSIONS) ── none left? ──► encrypted Busy alert, close
//! ```
//!
//! Opening a TCP connection costs an attacker nothing, so an unauthenticated
//! connection never keeps its place against a newcomer: any number of silent
//! sockets only push each other out, while an honest handshake (a few
//! milliseconds) is done long before it becomes the oldest. The victim is
//! taken from the address (an IPv6 /64) that holds the most places, so one
//! host flooding the listener evicts its own connections, not another host's
//! handshake; that is the per-address limit, without a second number to tune.
//! The handshake timeout still ends every connection that stays silent.
//!
//! ```
//! use localstream::listen::Admission;
//!
//! let admission = Admission::new(1, 1);
//! let first = admission.admit("192.0.2.7:50000".parse().unwrap());
//! let evicted = first.eviction();
//! let second = admission.admit("192.0.2.8:50000".parse().unwrap());
//! assert!(evicted.is_cancelled(), "the oldest made room for the newcomer");
//! assert!(second.authenticated().is_some(), "a free session slot");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Connections still in the handshake at once; a newcomer evicts the oldest.
pub const MAX_UNAUTHENTICATED: usize = 32;
/// Authenticated sessions at once; beyond, newcomers are told Busy.
pub const MAX_SESSIONS: usize = 32;
/// Evictions are logged one by one at debug level, and summed up at info
/// level at most this often.
const NOTE_EVERY: Duration = Duration::from_secs(60);

/// The listener's two pools: unauthenticated connections and session slots.
/// Cheap to clone (handles to the same pools).
#[derive(Debug, Clone)]
pub struct Admission {
    pending: Arc<Mutex<Pending>>,
    sessions: Arc<Semaphore>,
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
    /// What the per-address fairness counts by (see [`remote_key`]).
    key: IpAddr,
    since: Instant,
    evict: CancellationToken,
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
            sessions: Arc::new(Semaphore::new(sessions)),
        }
    }

    /// Whether every session slot is taken (a newcomer could not be served
    /// even if its handshake succeeded).
    #[must_use]
    pub fn sessions_full(&self) -> bool {
        self.sessions.available_permits() == 0
    }

    /// Connections now in the handshake.
    #[must_use]
    pub fn unauthenticated(&self) -> usize {
        self.lock().conns.len()
    }

    /// Takes a place for a connection just accepted from `remote`, evicting
    /// one (see the module docs) when the pool is full.
    #[must_use]
    pub fn admit(&self, remote: SocketAddr) -> Handshaking {
        let evict = CancellationToken::new();
        let now = Instant::now();
        let (id, victim, note) = {
            let mut p = self.lock();
            let victim = if p.conns.len() >= p.cap {
                p.victim().and_then(|id| p.conns.remove(&id))
            } else {
                None
            };
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
                    key: remote_key(remote.ip()),
                    since: now,
                    evict: evict.clone(),
                },
            );
            (id, victim, note)
        };
        if let Some(evicted) = note {
            info!(
                evicted,
                "too many connections in the handshake: evicting the oldest (silent or slow peers)"
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
        Handshaking {
            admission: self.clone(),
            id,
            evict,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The lock guards no invariant a panic could break halfway.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pending {
    /// The oldest connection of the address holding the most places.
    fn victim(&self) -> Option<u64> {
        let mut held: HashMap<IpAddr, usize> = HashMap::new();
        for e in self.conns.values() {
            *held.entry(e.key).or_default() += 1;
        }
        let most = held.values().copied().max()?;
        self.conns
            .iter()
            .find(|(_, e)| held.get(&e.key) == Some(&most))
            .map(|(id, _)| *id)
    }
}

/// The address fairness counts by: the IP, or its /64 for IPv6 (one host
/// usually has a whole /64), with IPv4-mapped IPv6 seen as IPv4.
fn remote_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// A connection's place among the unauthenticated ones, from accept until
/// its handshake completes; dropping it gives the place up.
#[derive(Debug)]
pub struct Handshaking {
    admission: Admission,
    id: u64,
    evict: CancellationToken,
}

impl Handshaking {
    /// Cancelled if this connection is evicted before it authenticates
    /// (never after).
    #[must_use]
    pub fn eviction(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// The handshake is complete: leaves the unauthenticated pool and takes a
    /// session slot, held until the returned value is dropped. `None` means
    /// refuse with Busy: every slot is taken (or this connection was evicted
    /// a moment ago and is about to be closed anyway).
    #[must_use]
    pub fn authenticated(self) -> Option<SessionSlot> {
        // Gone from the pool: evicted.
        self.admission.lock().conns.remove(&self.id)?;
        self.admission
            .sessions
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| SessionSlot { _permit: permit })
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.admission.lock().conns.remove(&self.id);
    }
}

/// An authenticated session's slot, given back when dropped.
#[derive(Debug)]
pub struct SessionSlot {
    _permit: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn a_full_pool_evicts_the_oldest_and_only_it() {
        let a = Admission::new(3, 8);
        let conns: Vec<Handshaking> = (0..5)
            .map(|i| a.admit(at(&format!("10.0.0.1:{}", 1000 + i))))
            .collect();
        let evicted: Vec<bool> = conns.iter().map(|c| c.eviction().is_cancelled()).collect();
        assert_eq!(evicted, [true, true, false, false, false]);
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn the_address_holding_most_places_pays_for_the_newcomer() {
        let a = Admission::new(4, 8);
        let honest = a.admit(at("10.0.0.9:4000"));
        let flood: Vec<Handshaking> = (0..50)
            .map(|i| a.admit(at(&format!("10.0.0.66:{}", 1000 + i))))
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
        assert!(honest.authenticated().is_some());
        assert_eq!(a.unauthenticated(), 3);
    }

    #[test]
    fn ties_between_addresses_evict_the_oldest() {
        let a = Admission::new(2, 8);
        let first = a.admit(at("10.0.0.1:1"));
        let second = a.admit(at("10.0.0.2:1"));
        let third = a.admit(at("10.0.0.3:1"));
        assert!(first.eviction().is_cancelled());
        assert!(!second.eviction().is_cancelled());
        assert!(!third.eviction().is_cancelled());
    }

    #[test]
    fn ipv6_hosts_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            remote_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            remote_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            remote_key("2001:db8:1:2::1".parse().unwrap()),
            remote_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            remote_key("::ffff:192.0.2.1".parse().unwrap()),
            remote_key("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn authenticated_connections_leave_the_pool_and_cannot_be_evicted() {
        let a = Admission::new(1, 8);
        let first = a.admit(at("10.0.0.1:1"));
        let evict = first.eviction();
        let slot = first.authenticated();
        assert!(slot.is_some());
        assert_eq!(a.unauthenticated(), 0);
        let _second = a.admit(at("10.0.0.1:2"));
        let _third = a.admit(at("10.0.0.1:3"));
        assert!(!evict.is_cancelled());
    }

    #[test]
    fn session_slots_are_capped_and_given_back() {
        let a = Admission::new(8, 2);
        let s1 = a.admit(at("10.0.0.1:1")).authenticated().unwrap();
        let _s2 = a.admit(at("10.0.0.1:2")).authenticated().unwrap();
        assert!(a.sessions_full());
        assert!(a.admit(at("10.0.0.1:3")).authenticated().is_none());
        drop(s1);
        assert!(!a.sessions_full());
        assert!(a.admit(at("10.0.0.1:4")).authenticated().is_some());
    }

    #[test]
    fn an_evicted_connection_does_not_get_a_session() {
        let a = Admission::new(1, 8);
        let first = a.admit(at("10.0.0.1:1"));
        let _second = a.admit(at("10.0.0.1:2"));
        assert!(first.authenticated().is_none());
    }

    #[test]
    fn a_connection_that_ends_in_the_handshake_frees_its_place() {
        let a = Admission::new(2, 8);
        let first = a.admit(at("10.0.0.1:1"));
        let second = a.admit(at("10.0.0.1:2"));
        drop(first);
        assert_eq!(a.unauthenticated(), 1);
        let _third = a.admit(at("10.0.0.1:3"));
        assert!(!second.eviction().is_cancelled());
    }
}
