//! Receiving is consent: accept everything (`--yes`), or ask the user on the
//! terminal, one question at a time, or refuse when nobody can be asked.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex as StdMutex;
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
}

/// Decides on offers. Shared by every connection of a listener.
#[derive(Debug)]
pub struct Gate {
    policy: Consent,
    /// Serialises prompts so two offers never interleave on the terminal.
    prompt: Mutex<()>,
    lines: StdMutex<Option<mpsc::Receiver<String>>>,
}

impl Gate {
    /// A gate with the given policy.
    pub fn new(policy: Consent) -> Self {
        Gate {
            policy,
            prompt: Mutex::new(()),
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
        let _turn = self.prompt.lock().await;
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
        let decision = match tokio::time::timeout(PROMPT_TIMEOUT, rx.recv()).await {
            Ok(Some(line)) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => Decision::Accept,
                _ => Decision::Decline,
            },
            Ok(None) => Decision::NoTerminal,
            Err(_) => {
                eprintln!("\n(no answer in {} s: declined)", PROMPT_TIMEOUT.as_secs());
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
