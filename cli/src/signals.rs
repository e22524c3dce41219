//! Ctrl-C, registered up front: the handler is installed when [`Interrupts::new`]
//! returns, so a Ctrl-C that arrives at any later moment is seen (never the
//! default action that kills the process without a clean shutdown).

/// A stream of Ctrl-C (SIGINT) events.
#[derive(Debug)]
pub struct Interrupts {
    #[cfg(unix)]
    inner: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handler now.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            let kind = tokio::signal::unix::SignalKind::interrupt();
            Ok(Interrupts {
                inner: tokio::signal::unix::signal(kind)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    /// Waits for the next Ctrl-C.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.inner.recv().await.is_none() {
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
