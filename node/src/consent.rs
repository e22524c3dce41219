//! Receiving is consent: accept everything (`--yes`), accept trusted peers
//! only (`--trusted-only`), or ask the user on the terminal about anyone not
//! trusted, one question at a time. Blocked peers are always refused; with no
//! terminal to ask on, only trusted peers get in.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use crate::config::Consent;

/// How long a prompt waits for an answer before refusing.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// What this node's peer store says about the peer making an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Verified by the user.
    Trusted,
    /// Refused, always.
    Blocked,
    /// Anything else (new, or known but not verified).
    Untrusted,
}

/// The outcome of asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Accept,
    /// Go ahead, and trust this peer from now on.
    AcceptAndTrust,
    /// The user said no.
    Decline,
    /// The peer is blocked.
    Blocked,
    /// The policy accepts trusted peers only (`no_terminal`: because there
    /// is no terminal to ask on).
    NotTrusted {
        /// Whether it is only for want of a terminal.
        no_terminal: bool,
    },
    /// Nobody answered in time.
    TimedOut,
    /// Too many offers are already waiting for the user.
    Busy,
    /// The sender spoke (or went away) before the answer: the question was
    /// withdrawn.
    Withdrawn,
}

/// Offers that may wait for the terminal at once; more are refused as busy.
pub const MAX_WAITING: usize = 4;

/// Decides on offers. Shared by every connection of a listener.
#[derive(Debug)]
pub struct Gate {
    policy: Consent,
    /// Serialises prompts so two offers never interleave on the terminal.
    prompt: Mutex<()>,
    waiting: AtomicUsize,
    lines: StdMutex<Option<mpsc::Receiver<String>>>,
}

/// Counts an offer as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A gate with the given policy.
    pub fn new(policy: Consent) -> Self {
        Gate {
            policy,
            prompt: Mutex::new(()),
            waiting: AtomicUsize::new(0),
            lines: StdMutex::new(None),
        }
    }

    /// Whether only trusted peers are accepted (`--trusted-only`): others
    /// are refused right after their handshake.
    #[must_use]
    pub fn trusted_only(&self) -> bool {
        self.policy == Consent::TrustedOnly
    }

    /// Decides on an offer from a peer of `standing`, described by
    /// `question` (already escaped for the terminal). If `withdrawn`
    /// completes first (the sender sent something or went away while the
    /// question waits), the question is withdrawn.
    pub async fn decide(
        &self,
        standing: Standing,
        question: &str,
        withdrawn: impl Future<Output = ()>,
    ) -> Decision {
        match (standing, self.policy) {
            (Standing::Blocked, _) => return Decision::Blocked,
            (_, Consent::AcceptAll) | (Standing::Trusted, _) => return Decision::Accept,
            (Standing::Untrusted, Consent::TrustedOnly) => {
                return Decision::NotTrusted { no_terminal: false };
            }
            (Standing::Untrusted, Consent::Ask) => {}
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Decision::NotTrusted { no_terminal: true };
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Decision::Busy;
        }
        let _waiting = Waiting(&self.waiting);
        // Waiting for our turn counts against the prompt's time: the sender
        // gives up after PROMPT_TIMEOUT plus a margin anyway.
        let deadline = tokio::time::Instant::now() + PROMPT_TIMEOUT;
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.prompt.lock()).await else {
            return Decision::TimedOut;
        };
        let mut rx = match self.take_lines() {
            Some(rx) => rx,
            None => return Decision::NotTrusted { no_terminal: true },
        };
        // Anything typed before the question is not an answer to it.
        while rx.try_recv().is_ok() {}
        {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "{question}\n[a]ccept once, accept and [t]rust, or [r]eject? [a/t/R] "
            );
            let _ = err.flush();
        }
        let answer = async {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => parse_answer(&line),
                Ok(None) => Decision::NotTrusted { no_terminal: true },
                Err(_) => {
                    eprintln!("\n(no answer in time: declined)");
                    Decision::TimedOut
                }
            }
        };
        let decision = tokio::select! {
            d = answer => d,
            () = withdrawn => {
                eprintln!("\n(the sender went away or did not wait for the answer: question withdrawn)");
                Decision::Withdrawn
            }
        };
        self.put_lines(rx);
        decision
    }

    /// The channel of terminal lines, started on first use by one reader thread.
    fn take_lines(&self) -> Option<mpsc::Receiver<String>> {
        let mut guard = self.lines.lock().ok()?;
        if let Some(rx) = guard.take() {
            return Some(rx);
        }
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(rx)
    }

    fn put_lines(&self, rx: mpsc::Receiver<String>) {
        if let Ok(mut guard) = self.lines.lock() {
            *guard = Some(rx);
        }
    }
}

/// Reads the user's answer; anything unclear is a rejection.
fn parse_answer(line: &str) -> Decision {
    match line.trim().to_lowercase().as_str() {
        "a" | "accept" | "y" | "yes" => Decision::Accept,
        "t" | "trust" => Decision::AcceptAndTrust,
        _ => Decision::Decline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer("a\n"), Decision::Accept);
        assert_eq!(parse_answer(" Yes "), Decision::Accept);
        assert_eq!(parse_answer("t"), Decision::AcceptAndTrust);
        assert_eq!(parse_answer("TRUST"), Decision::AcceptAndTrust);
        for no in ["", "r", "n", "no", "reject", "at", "yes please"] {
            assert_eq!(parse_answer(no), Decision::Decline, "{no:?}");
        }
    }

    #[tokio::test]
    async fn policies_without_a_terminal() {
        // Test processes have no terminal on stdin, so nothing here can prompt.
        let d = |policy, standing| async move {
            Gate::new(policy)
                .decide(standing, "q", std::future::pending())
                .await
        };
        for policy in [Consent::AcceptAll, Consent::TrustedOnly, Consent::Ask] {
            assert_eq!(d(policy, Standing::Blocked).await, Decision::Blocked);
            assert_eq!(d(policy, Standing::Trusted).await, Decision::Accept);
        }
        assert_eq!(
            d(Consent::AcceptAll, Standing::Untrusted).await,
            Decision::Accept
        );
        assert_eq!(
            d(Consent::TrustedOnly, Standing::Untrusted).await,
            Decision::NotTrusted { no_terminal: false }
        );
        if !std::io::stdin().is_terminal() {
            assert_eq!(
                d(Consent::Ask, Standing::Untrusted).await,
                Decision::NotTrusted { no_terminal: true }
            );
        }
    }
}
