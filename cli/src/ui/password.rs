//! The UI password, for a UI bound to a LAN address (`--ui-bind`): kept as
//! an argon2 hash in the settings (`ui-password`), and guessed at most a few
//! times a minute, per source address and overall. A person on the machine
//! itself is never locked out: the token in the URL `ui` opens needs no
//! password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Failed guesses allowed per source address in [`WINDOW`].
pub(crate) const PER_SOURCE: u32 = 5;
/// Failed guesses allowed from everyone together in [`WINDOW`].
pub(crate) const OVERALL: u32 = 30;
/// The window the limits count in.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Shortest password accepted.
pub const MIN_LENGTH: usize = 8;

/// The argon2 hash (PHC string) of `password`.
///
/// # Errors
/// When it is too short.
pub fn hash(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!(
            "the UI password needs at least {MIN_LENGTH} characters"
        ));
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash`.
#[must_use]
pub fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Failed guesses, per source and overall, in the current window.
#[derive(Debug, Default)]
pub(crate) struct Attempts(Mutex<Counts>);

#[derive(Debug, Default)]
struct Counts {
    since: Option<Instant>,
    overall: u32,
    per_source: HashMap<IpAddr, u32>,
}

impl Attempts {
    /// Whether `source` may guess now.
    pub(crate) fn may_try(&self, source: IpAddr, now: Instant) -> bool {
        let mut c = self.lock();
        c.roll(now);
        c.overall < OVERALL && c.per_source.get(&source).copied().unwrap_or(0) < PER_SOURCE
    }

    /// A wrong guess from `source`.
    pub(crate) fn failed(&self, source: IpAddr, now: Instant) {
        let mut c = self.lock();
        c.roll(now);
        c.overall += 1;
        *c.per_source.entry(source).or_default() += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Counts {
    fn roll(&mut self, now: Instant) {
        if self.since.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            *self = Counts {
                since: Some(now),
                ..Counts::default()
            };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify("not a hash", "correct horse"));
        assert!(hash("short").is_err());
    }

    #[test]
    fn guesses_are_limited_per_source_and_overall_per_window() {
        let a = Attempts::default();
        let t0 = Instant::now();
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_SOURCE {
            assert!(a.may_try(one, t0));
            a.failed(one, t0);
        }
        assert!(!a.may_try(one, t0));
        // Others still may, until everyone together has used the budget.
        let mut n = PER_SOURCE;
        let mut last = 2u8;
        while n < OVERALL {
            let ip: IpAddr = format!("10.0.1.{last}").parse().unwrap();
            assert!(a.may_try(ip, t0));
            a.failed(ip, t0);
            n += 1;
            if n.is_multiple_of(PER_SOURCE) {
                last += 1;
            }
        }
        assert!(!a.may_try("10.0.9.9".parse().unwrap(), t0));
        // A new window starts over.
        assert!(a.may_try(one, t0 + WINDOW));
    }
}
