//! Ctrl-C and the stop signals, registered up front: the handlers are
//! installed when [`Interrupts::new`] returns, so a signal that arrives at any
//! later moment is seen (never the default action that kills the process
//! without a clean shutdown).
//!
//! SIGTERM (what `systemctl --user stop` and `kill` send) and SIGHUP (the
//! terminal went away) count as a Ctrl-C: the first one stops gracefully (a
//! listener says goodbye over mDNS, a sender records where it stopped), a
//! second one of any kind stops at once.

/// A stream of interruptions: SIGINT, SIGTERM or SIGHUP.
#[derive(Debug)]
pub struct Interrupts {
    #[cfg(unix)]
    inner: [tokio::signal::unix::Signal; 3],
}

impl Interrupts {
    /// Installs the handlers now.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                inner: [
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ],
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next interruption, whichever signal it is.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            let [int, term, hup] = &mut self.inner;
            let got = tokio::select! {
                got = int.recv() => got,
                got = term.recv() => got,
                got = hup.recv() => got,
            };
            if got.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Prints a line on stdout; a closed stdout (`| head`) is not an error worth a crash.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
