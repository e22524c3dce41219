//! The `localstream` command: parse, configure, run, and turn the outcome into
//! one line on stderr and an exit code (0 success, 1 failure, 2 usage, 130 interrupted).
//!
//! It lives in the library so that other binaries (the multi-host test
//! scenarios in `tests/`) run exactly the same command.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::Cli;
use crate::config::{Common, Config};
use crate::error::Error;
use crate::identity::{self, DEFAULT_KEY_BITS, fingerprint_hex, short_fingerprint};
use crate::listen::{self, ListenEnd};
use crate::signals::Interrupts;
use crate::store::PeerStore;
use crate::{discover, outln, send, trust};
use clap::{CommandFactory, Parser};
use localstream_proto::LocalIdentity;
use tracing_subscriber::EnvFilter;

/// Exit codes.
#[derive(Debug, Clone, Copy)]
enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Interrupted = 130,
}

/// Runs the command line of this process and returns its exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let code = match Config::from_cli(cli) {
        Ok(config) => run(config),
        Err(e) => report(&e),
    };
    ExitCode::from(code as u8)
}

/// Writes generated text (completions, the manual page) to stdout.
fn generated(
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<Exit, Error> {
    let mut out = std::io::stdout().lock();
    write(&mut out).and_then(|()| std::io::Write::flush(&mut out))?;
    Ok(Exit::Success)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn report(e: &Error) -> Exit {
    eprintln!("localstream: {e}");
    match e {
        Error::Usage(_) => Exit::Usage,
        Error::Interrupted => Exit::Interrupted,
        _ => Exit::Failure,
    }
}

fn load_identity(common: &Common) -> Result<Arc<LocalIdentity>, Error> {
    let id = identity::load_or_create(&common.home, DEFAULT_KEY_BITS, common.name.as_deref())?;
    let local = LocalIdentity::new(&id.name, id.mac, id.key)?;
    Ok(Arc::new(local))
}

fn run(config: Config) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return report(&Error::Io(e)),
    };
    let result = runtime.block_on(async {
        match config {
            Config::Completions(shell) => generated(|out| {
                clap_complete::generate(shell, &mut Cli::command(), "localstream", out);
                Ok(())
            }),
            Config::Manpage => generated(|out| clap_mangen::Man::new(Cli::command()).render(out)),
            Config::Id(common) => {
                let id = load_identity(&common)?;
                outln!("name        {}", id.name());
                outln!("id          {}", uuid::Uuid::from_bytes(id.node_id()));
                outln!("fingerprint {}", short_fingerprint(&id.fingerprint()));
                outln!("sha256      {}", fingerprint_hex(&id.fingerprint()));
                Ok(Exit::Success)
            }
            Config::Listen(common, cfg) => {
                let id = load_identity(&common)?;
                Ok(match listen::run(id, &common, &cfg).await? {
                    ListenEnd::OnceSucceeded => Exit::Success,
                    ListenEnd::OnceFailed => Exit::Failure,
                    ListenEnd::Interrupted => Exit::Interrupted,
                })
            }
            Config::Peers(common, cfg) => {
                let mut interrupts = Interrupts::new()?;
                let id = load_identity(&common)?;
                let own = uuid::Uuid::from_bytes(id.node_id());
                let store = trust::load_store(&common.home)?;
                discover::peers(&cfg, own, &store, &mut interrupts).await?;
                Ok(Exit::Success)
            }
            Config::Add(common, name, addr, first) => {
                let id = load_identity(&common)?;
                crate::add::run(id, &PeerStore::new(&common.home), &name, addr, first).await?;
                Ok(Exit::Success)
            }
            Config::Doctor(port, interfaces) => Ok(if crate::doctor::run(port, &interfaces).await? {
                Exit::Success
            } else {
                Exit::Failure
            }),
            Config::Service(home, action) => {
                crate::service::run(&home, action)?;
                Ok(Exit::Success)
            }
            Config::Settings(home, cmd) => {
                crate::settings::run_command(&home, &cmd)?;
                Ok(Exit::Success)
            }
            Config::Store(common, cmd) => {
                tokio::task::spawn_blocking(move || trust::run_command(&common.home, &cmd))
                    .await??;
                Ok(Exit::Success)
            }
            Config::Send(common, cfg) => {
                let mut interrupts = Interrupts::new()?;
                let id = load_identity(&common)?;
                let store = PeerStore::new(&common.home);
                let r = tokio::select! {
                    r = send::run_retrying(id, &store, &cfg, common.progress) => r.map(|_| Exit::Success),
                    _ = interrupts.next() => Err(Error::Interrupted),
                };
                if let Err(e) = &r {
                    cfg.events
                        .emit("error", serde_json::json!({ "message": e.to_string() }));
                }
                r
            }
        }
    });
    // Do not wait for blocking threads (a stdin reader may be parked forever).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}
