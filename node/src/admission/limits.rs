//! Rate limits on what strangers can make the listener do, per source
//! address and overall, and the record of abandoned key exchanges that the
//! user is told about.
//!
//! Two things cost the listener something a stranger can exploit by
//! retrying, since connections are free:
//!
//! - **A key exchange** (a ServerHello). Each one abandoned before the
//!   initiator proved itself is one guess at the verification code (a man in
//!   the middle computes the code, and resets unless it matches the one it
//!   forced on the other victim). A ServerHello takes a token from the
//!   source's bucket and the global one; the token is given back when the
//!   handshake completes, so honest peers never use the budget up. What an
//!   attacker can abandon in any window `W` is at most
//!   `GLOBAL_BURST + GLOBAL_RATE x W` (PROTOCOL.md, Security notes, gives the
//!   resulting odds).
//! - **An RSA signature** (the responder's Verify). The initiator proves
//!   itself first, so only a peer that signed for this very handshake gets
//!   one, and trusted peers are exempt; untrusted ones take a token per
//!   signature, per source and overall, which bounds the CPU strangers can
//!   spend.
//!
//! Buckets are kept per address (IPv4, and IPv6 whole: hosts on a LAN share
//! one /64); the per-source table is bounded and forgets idle sources.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Key exchanges one source may abandon at once
pub(super) const EXCHANGE_SOURCE_BURST: f64 = 40.0;
/// and per second after that.
pub(super) const EXCHANGE_SOURCE_RATE: f64 = 20.0;
/// Key exchanges all sources together may abandon at once
pub(super) const EXCHANGE_GLOBAL_BURST: f64 = 4000.0;
/// and per second after that.
pub(super) const EXCHANGE_GLOBAL_RATE: f64 = 2000.0;
/// Signatures for untrusted peers, per source: at once
pub(super) const SIGN_SOURCE_BURST: f64 = 64.0;
/// and per second.
pub(super) const SIGN_SOURCE_RATE: f64 = 16.0;
/// Signatures for untrusted peers, all sources: at once
pub(super) const SIGN_GLOBAL_BURST: f64 = 128.0;
/// and per second.
pub(super) const SIGN_GLOBAL_RATE: f64 = 64.0;
/// Sources remembered at most (the idlest are forgotten first; a forgotten
/// source starts with a full bucket, which the global bucket still bounds).
const MAX_SOURCES: usize = 4096;
/// How far back "recently abandoned" reaches (the consent prompt's count).
pub const RECENT: Duration = Duration::from_secs(600);
/// The listener warns when this many exchanges were abandoned within
const WARN_COUNT: u64 = 5;
/// this long,
const WARN_WINDOW: Duration = Duration::from_secs(60);
/// at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, rate: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
    }

    fn give_back(&mut self, burst: f64) {
        self.tokens = (self.tokens + 1.0).min(burst);
    }
}

/// One limit: a global bucket and one per source.
#[derive(Debug)]
struct Limit {
    source_burst: f64,
    source_rate: f64,
    global_burst: f64,
    global_rate: f64,
    global: Bucket,
    sources: HashMap<IpAddr, Bucket>,
}

impl Limit {
    fn new(source: (f64, f64), global: (f64, f64), now: Instant) -> Limit {
        Limit {
            source_burst: source.0,
            source_rate: source.1,
            global_burst: global.0,
            global_rate: global.1,
            global: Bucket::full(global.0, now),
            sources: HashMap::new(),
        }
    }

    /// Takes one token from the source's bucket and the global one, or none.
    fn take(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.global.refill(self.global_burst, self.global_rate, now);
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.forget_full(now);
        }
        let (burst, rate) = (self.source_burst, self.source_rate);
        let source = self
            .sources
            .entry(ip)
            .or_insert_with(|| Bucket::full(burst, now));
        source.refill(burst, rate, now);
        if source.tokens < 1.0 || self.global.tokens < 1.0 {
            return false;
        }
        source.tokens -= 1.0;
        self.global.tokens -= 1.0;
        true
    }

    fn give_back(&mut self, ip: IpAddr) {
        self.global.give_back(self.global_burst);
        if let Some(b) = self.sources.get_mut(&ip) {
            b.give_back(self.source_burst);
        }
    }

    /// Drops the sources whose buckets have refilled (they hold no state
    /// worth keeping), or the idlest half when none has.
    fn forget_full(&mut self, now: Instant) {
        let (burst, rate) = (self.source_burst, self.source_rate);
        self.sources.retain(|_, b| {
            b.refill(burst, rate, now);
            b.tokens < burst
        });
        if self.sources.len() >= MAX_SOURCES {
            let mut ages: Vec<Instant> = self.sources.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.sources.retain(|_, b| b.at > cut);
        }
    }
}

/// Abandoned key exchanges, counted per second for the last [`RECENT`].
#[derive(Debug, Default)]
struct Abandoned {
    /// (second since `epoch`, count), oldest first.
    seconds: VecDeque<(u64, u64)>,
    /// Sources seen abandoning in the current warning window.
    sources: HashSet<IpAddr>,
    warned: Option<Instant>,
}

#[derive(Debug)]
struct State {
    epoch: Instant,
    exchanges: Limit,
    signatures: Limit,
    abandoned: Abandoned,
}

/// The listener's rate limits (cheap to clone: handles to one state).
#[derive(Debug, Clone)]
pub struct Limits {
    state: Arc<Mutex<State>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

/// What to tell the user about abandoned exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbandonedNote {
    /// Exchanges abandoned within [`RECENT`].
    pub count: u64,
}

impl Limits {
    /// The limits with the documented numbers.
    #[must_use]
    pub fn new() -> Limits {
        let now = Instant::now();
        Limits {
            state: Arc::new(Mutex::new(State {
                epoch: now,
                exchanges: Limit::new(
                    (EXCHANGE_SOURCE_BURST, EXCHANGE_SOURCE_RATE),
                    (EXCHANGE_GLOBAL_BURST, EXCHANGE_GLOBAL_RATE),
                    now,
                ),
                signatures: Limit::new(
                    (SIGN_SOURCE_BURST, SIGN_SOURCE_RATE),
                    (SIGN_GLOBAL_BURST, SIGN_GLOBAL_RATE),
                    now,
                ),
                abandoned: Abandoned::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters only: nothing a panic could leave half-done matters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a key-exchange token for `ip` (before a ServerHello is sent).
    #[must_use]
    pub fn take_exchange(&self, ip: IpAddr) -> bool {
        self.lock()
            .exchanges
            .take(ip.to_canonical(), Instant::now())
    }

    /// The exchange completed (the peer proved itself): its token is given back.
    pub fn exchange_completed(&self, ip: IpAddr) {
        self.lock().exchanges.give_back(ip.to_canonical());
    }

    /// The exchange was abandoned after our ServerHello: recorded, and
    /// logged as a warning when they pile up.
    pub fn exchange_abandoned(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut s = self.lock();
        let sec = now.duration_since(s.epoch).as_secs();
        let a = &mut s.abandoned;
        match a.seconds.back_mut() {
            Some((t, n)) if *t == sec => *n += 1,
            _ => a.seconds.push_back((sec, 1)),
        }
        if a.sources.len() < MAX_SOURCES {
            a.sources.insert(ip.to_canonical());
        }
        let horizon = sec.saturating_sub(RECENT.as_secs());
        while a.seconds.front().is_some_and(|(t, _)| *t < horizon) {
            a.seconds.pop_front();
        }
        let window = sec.saturating_sub(WARN_WINDOW.as_secs());
        let lately: u64 = a
            .seconds
            .iter()
            .filter(|(t, _)| *t >= window)
            .map(|(_, n)| n)
            .sum();
        if lately >= WARN_COUNT && a.warned.is_none_or(|w| now.duration_since(w) >= WARN_EVERY) {
            a.warned = Some(now);
            let sources = std::mem::take(&mut a.sources).len();
            tracing::warn!(
                abandoned = lately,
                sources,
                "{lately} key exchanges were abandoned in the last minute (from {sources} \
                 address{}): someone may be trying to fake a verification code",
                if sources == 1 { "" } else { "es" }
            );
        }
    }

    /// Exchanges abandoned within [`RECENT`], if any.
    #[must_use]
    pub fn recently_abandoned(&self) -> Option<AbandonedNote> {
        let s = self.lock();
        let sec = Instant::now().duration_since(s.epoch).as_secs();
        let horizon = sec.saturating_sub(RECENT.as_secs());
        let count: u64 = s
            .abandoned
            .seconds
            .iter()
            .filter(|(t, _)| *t >= horizon)
            .map(|(_, n)| n)
            .sum();
        (count > 0).then_some(AbandonedNote { count })
    }

    /// Takes a signature token for an untrusted peer at `ip`.
    #[must_use]
    pub fn take_signature(&self, ip: IpAddr) -> bool {
        self.lock()
            .signatures
            .take(ip.to_canonical(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn a_source_gets_its_burst_then_is_refused_while_others_are_not() {
        let now = Instant::now();
        let mut l = Limit::new((3.0, 0.0), (100.0, 0.0), now);
        let taken = (0..10).filter(|_| l.take(ip("10.0.0.1"), now)).count();
        assert_eq!(taken, 3);
        assert!(
            l.take(ip("10.0.0.2"), now),
            "another source has its own bucket"
        );
    }

    #[test]
    fn the_global_bucket_bounds_every_source_together() {
        let now = Instant::now();
        let mut l = Limit::new((5.0, 0.0), (12.0, 0.0), now);
        let taken: usize = (0..64)
            .map(|i| {
                let a = ip(&format!("10.0.1.{i}"));
                (0..5).filter(|_| l.take(a, now)).count()
            })
            .sum();
        assert_eq!(taken, 12);
    }

    #[test]
    fn buckets_refill_at_their_rate_and_completed_exchanges_give_back() {
        let now = Instant::now();
        let mut l = Limit::new((2.0, 1.0), (100.0, 100.0), now);
        let a = ip("10.0.0.1");
        assert!(l.take(a, now) && l.take(a, now));
        assert!(!l.take(a, now));
        assert!(l.take(a, now + Duration::from_millis(1000)));
        assert!(!l.take(a, now + Duration::from_millis(1000)));
        l.give_back(a);
        assert!(l.take(a, now + Duration::from_millis(1000)));
    }

    #[test]
    fn the_source_table_is_bounded() {
        let now = Instant::now();
        let mut l = Limit::new((2.0, 0.0), (1e9, 0.0), now);
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.take(a, now + Duration::from_micros(u64::from(i)));
        }
        assert!(l.sources.len() <= MAX_SOURCES);
    }

    #[test]
    fn abandoned_exchanges_are_counted_for_the_prompt() {
        let limits = Limits::new();
        assert_eq!(limits.recently_abandoned(), None);
        for _ in 0..7 {
            limits.exchange_abandoned(ip("10.0.0.66"));
        }
        assert_eq!(
            limits.recently_abandoned(),
            Some(AbandonedNote { count: 7 })
        );
    }
}
