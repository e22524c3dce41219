//! Limits of the LocalSend API that hold against a sender who retries:
//! connections per source address, and wrong PINs per source and overall
//! (a trusted device is never locked out by the overall count that
//! strangers fill).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Wrong PINs allowed from one address per [`PIN_WINDOW`].
pub const PINS_PER_SOURCE: usize = 5;
/// Wrong PINs allowed overall per [`PIN_WINDOW`] (trusted devices exempt).
pub const PINS_OVERALL: usize = 30;
/// The PIN window.
pub const PIN_WINDOW: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connections open per source address.
#[derive(Debug)]
pub struct PerSource {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection counted against its source while it lives.
#[derive(Debug)]
pub struct SourceSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerSource {
    /// At most `max` connections per address.
    #[must_use]
    pub fn new(max: usize) -> Self {
        PerSource {
            max,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `ip`, if it has fewer than the maximum.
    #[must_use]
    pub fn enter(&self, ip: IpAddr) -> Option<SourceSlot> {
        let ip = ip.to_canonical();
        let mut open = lock(&self.open);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            open: self.open.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Wrong PINs seen recently.
#[derive(Debug, Default)]
pub struct Attempts(Mutex<VecDeque<(Instant, IpAddr)>>);

impl Attempts {
    /// Whether `ip` may try a PIN now (`trusted`: a device the user trusts,
    /// held only to its own count).
    pub fn allowed(&self, ip: IpAddr, trusted: bool, now: Instant) -> bool {
        let mut seen = lock(&self.0);
        while seen
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= PIN_WINDOW)
        {
            seen.pop_front();
        }
        let mine = seen.iter().filter(|(_, a)| *a == ip).count();
        mine < PINS_PER_SOURCE && (trusted || seen.len() < PINS_OVERALL)
    }

    /// A wrong PIN from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut seen = lock(&self.0);
        seen.push_back((now, ip));
        // Bounded: older entries than the window are useless anyway.
        while seen.len() > 4 * PINS_OVERALL {
            seen.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_pins_lock_out_per_source_and_overall_but_not_a_trusted_device() {
        let a = Attempts::default();
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        for _ in 0..PINS_PER_SOURCE {
            assert!(a.allowed(ip(1), false, t0));
            a.failed(ip(1), t0);
        }
        assert!(!a.allowed(ip(1), false, t0));
        assert!(
            !a.allowed(ip(1), true, t0),
            "a trusted device has its own count too"
        );
        assert!(a.allowed(ip(2), false, t0));
        for n in 0..PINS_OVERALL as u8 {
            a.failed(ip(100 + n), t0);
        }
        assert!(
            !a.allowed(ip(3), false, t0),
            "strangers fill the overall count"
        );
        assert!(
            a.allowed(ip(3), true, t0),
            "a trusted device is not locked out by them"
        );
        assert!(
            a.allowed(ip(1), false, t0 + PIN_WINDOW),
            "the window passes"
        );
    }

    #[test]
    fn connections_are_counted_per_source_until_they_end() {
        let p = PerSource::new(2);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let a = p.enter(ip);
        let b = p.enter(ip);
        assert!(a.is_some() && b.is_some());
        assert!(p.enter(ip).is_none());
        assert!(p.enter(IpAddr::from([10, 0, 0, 2])).is_some());
        drop(a);
        assert!(p.enter(ip).is_some());
    }
}
