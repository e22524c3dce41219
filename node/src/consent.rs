//! Receiving is consent: accept everything (`--yes`), or ask the user on the
//! terminal, one question at a time, or refuse when nobody can be asked.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};

use crate::config::Consent;

/// How long a prompt waits for an answer before refusing.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Accept,
    /// The user said no.
    Decline,
    /// Nobody answered in time.
    TimedOut,
    /// There is no terminal to ask on.
    NoTerminal,
    /// Too many offers are already waiting for the user.
    Busy,
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

    /// Decides on an offer described by `question` (already escaped for the terminal).
    pub async fn decide(&self, question: &str) -> Decision {
        match self.policy {
            Consent::AcceptAll => return Decision::Accept,
            Consent::Ask => {}
        }
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Decision::NoTerminal;
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
            None => return Decision::NoTerminal,
        };
        // Anything typed before the question is not an answer to it.
        while rx.try_recv().is_ok() {}
        {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{question}\nAccept? [y/N] ");
            let _ = err.flush();
        }
        let decision = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => Decision::Accept,
                _ => Decision::Decline,
            },
            Ok(None) => Decision::NoTerminal,
            Err(_) => {
                eprintln!("\n(no answer in time: declined)");
                Decision::TimedOut
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
