//! The `localstream` command: parse, configure, dispatch to the engine, and
//! turn the outcome into one line on stderr and an exit code (0 success, 1
//! failure, 2 usage, 130 interrupted).
//!
//! It lives in the library so that other binaries (the multi-host test
//! scenarios in `tests/`) run exactly the same command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use localstream_node::confirm::FirstContact;
use localstream_node::consent::Policy;
use localstream_node::identity::{fingerprint_hex, short_fingerprint};
use localstream_node::listen::ListenEnd;
use localstream_node::settings::ConsentSetting;
use localstream_node::{Error, EventStream, Node, Shutdown};
use localstream_proto::names::escape_for_terminal;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::config::{Common, Config, ListenView, View};
use crate::outln;
use crate::render::{self, Renderer};
use crate::signals::Interrupts;

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
    render::start_clock();
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
    match write(&mut out).and_then(|()| std::io::Write::flush(&mut out)) {
        // The reader had what it wanted (`manpage | head`): not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        done => {
            done?;
            Ok(Exit::Success)
        }
    }
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
    eprintln!("localstream: {}", crate::hint::explain(e));
    match e {
        Error::Usage(_) => Exit::Usage,
        e if e.is_interrupted() => Exit::Interrupted,
        _ => Exit::Failure,
    }
}

fn run(config: Config) -> Exit {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return report(&Error::Io(e)),
    };
    let result = runtime.block_on(dispatch(config));
    // Do not wait for blocking threads (a stdin reader may be parked forever).
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// One command, one arm.
async fn dispatch(config: Config) -> Result<Exit, Error> {
    match config {
        Config::Completions(shell) => generated(|out| {
            // Made in memory first: clap_complete panics when a write fails
            // (`completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "localstream", &mut script);
            out.write_all(&script)
        }),
        Config::Manpage(None) => generated(crate::manpage::page),
        Config::Manpage(Some(dir)) => {
            let written = crate::manpage::pages(&dir).map_err(|source| Error::File {
                path: dir.clone(),
                source,
            })?;
            for page in written {
                outln!("{}", page.display());
            }
            Ok(Exit::Success)
        }
        Config::Id(common) => {
            let node = Node::start(common.node_config())?;
            let id = node.identity();
            outln!("name        {}", id.name());
            outln!("id          {}", node.id());
            outln!("fingerprint {}", short_fingerprint(&id.fingerprint()));
            outln!("sha256      {}", fingerprint_hex(&id.fingerprint()));
            #[cfg(feature = "localsend")]
            {
                let cert = localstream_node::localsend::certificate(node.home())?;
                outln!("localsend   {}", cert.fingerprint_text());
            }
            Ok(Exit::Success)
        }
        Config::Listen(common, cfg, view) => {
            let node = Node::start(common.node_config())?;
            listen(&node, &common, cfg, view).await
        }
        Config::Ui(common, cfg, view) => ui(&common, cfg, view).await,
        Config::Integrate(action) => {
            crate::integrate::run(action)?;
            Ok(Exit::Success)
        }
        Config::Peers(common, cfg, view) => {
            crate::settings::warn_left_out(&cfg.interfaces);
            crate::peers::run(&common, &cfg, view).await?;
            Ok(Exit::Success)
        }
        Config::Add(common, name, addr, first) => add(&common, &name, addr, first).await,
        Config::Doctor(port, interfaces) => Ok(if crate::doctor::run(port, &interfaces).await? {
            Exit::Success
        } else {
            Exit::Failure
        }),
        Config::Service(home, action) => Ok(if crate::service::run(&home, action)? {
            Exit::Success
        } else {
            Exit::Failure
        }),
        Config::Settings(home, cmd) => {
            crate::settings::run(&home, &cmd)?;
            Ok(Exit::Success)
        }
        Config::Store(common, cmd) => {
            crate::trust::run_looking(&common, cmd).await?;
            Ok(Exit::Success)
        }
        Config::Send(common, cfg, view, receivers) if receivers.len() > 1 => {
            send_many(&common, cfg, view, &receivers).await
        }
        Config::Send(common, cfg, view, _) => send(&common, cfg, view).await,
    }
}

/// Runs `op` while rendering the node's events; every event is shown
/// before the outcome is.
pub(crate) async fn rendering<T>(
    events: &mut EventStream,
    renderer: &mut Renderer,
    op: impl Future<Output = T>,
) -> T {
    let mut op = std::pin::pin!(op);
    let out = loop {
        tokio::select! {
            biased;
            Some(ev) = events.next() => renderer.show(ev),
            out = &mut op => break out,
        }
    };
    while let Some(ev) = events.try_next() {
        renderer.show(ev);
    }
    out
}

/// The first-contact policy, now that we know whether a terminal can be
/// asked, and the prompter that asks when one can.
fn settle(
    first: FirstContact,
    node: &Node,
) -> (
    FirstContact,
    Option<tokio::sync::mpsc::UnboundedSender<crate::prompt::Ask>>,
) {
    match first {
        FirstContact::Ask if !crate::prompt::can_ask() => (FirstContact::Unattended, None),
        FirstContact::Ask => (first, Some(crate::prompt::start(node.clone()))),
        other => (other, None),
    }
}

async fn send(
    common: &Common,
    mut cfg: localstream_node::config::SendConfig,
    view: View,
) -> Result<Exit, Error> {
    let mut interrupts = Interrupts::new()?;
    if let localstream_node::config::Discovery::On(interfaces) = &cfg.discovery
        && matches!(cfg.target, localstream_node::config::Target::Lookup(_))
    {
        crate::settings::warn_left_out(interfaces);
    }
    let node = Node::start(common.node_config())?;
    let mut events = node.events_where(Renderer::wants(view.json));
    let (first, prompts) = settle(cfg.first_contact, &node);
    cfg.first_contact = first;
    let mut renderer = Renderer::new(view.json, common.progress)
        .quiet(view.quiet)
        .prompts(prompts)
        .sending_text(cfg.localsend.text.is_some());
    let mut r;
    let mut asked = 0;
    loop {
        // First Ctrl-C (or SIGTERM): the engine stops and records how far
        // it got; a second one: at once.
        let op = async {
            let stop = tokio_util::sync::CancellationToken::new();
            let mut sending = std::pin::pin!(node.send_until(&cfg, &stop));
            tokio::select! {
                r = &mut sending => return r.map(|_| Exit::Success),
                () = interrupts.next() => stop.cancel(),
            }
            tokio::select! {
                r = &mut sending => r.map(|_| Exit::Success),
                () = interrupts.next() => Err(Error::Interrupted),
            }
        };
        r = rendering(&mut events, &mut renderer, op).await;
        // A LocalSend device that wants a PIN: ask for it (three tries).
        let wants_pin = matches!(
            &r,
            Err(Error::LocalSend(
                LocalSendError::PinRequired { .. } | LocalSendError::WrongPin { .. }
            ))
        );
        if !wants_pin || asked == 3 || view.json || !crate::prompt::can_ask() {
            break;
        }
        if let Err(e) = &r {
            eprintln!("{e}");
        }
        asked += 1;
        match crate::prompt::read_pin().await {
            Some(pin) => cfg.localsend.pin = Some(pin),
            None => break,
        }
    }
    // A refusal is the receiver's answer, said in words: "h2 declined".
    let refusal = r.as_ref().err().and_then(|e| renderer.refusal(e));
    let transfer = renderer.last_transfer();
    renderer.finish().await;
    if let Err(e) = &r
        && view.json
    {
        render::json_error_of(e, transfer);
    } else if let Some(line) = refusal {
        eprintln!("localstream: {line}");
        return Ok(Exit::Failure);
    }
    r
}

use localstream_node::error::LocalSendError;

/// `send --to A --to B ...`: every receiver at once, a line for each one
/// that did not get everything, and the summary; 0 only if all did.
async fn send_many(
    common: &Common,
    mut cfg: localstream_node::config::SendConfig,
    view: View,
    receivers: &[crate::config::Receiver],
) -> Result<Exit, Error> {
    let mut interrupts = Interrupts::new()?;
    let node = Node::start(common.node_config())?;
    let (first, prompts) = settle(cfg.first_contact, &node);
    cfg.first_contact = first;
    let mut renderer = Renderer::new(view.json, common.progress)
        .quiet(view.quiet)
        .prompts(prompts)
        .sending_text(cfg.localsend.text.is_some());
    let outcomes =
        crate::receivers::send_all(&node, &cfg, receivers, &mut renderer, &mut interrupts).await;
    renderer.finish().await;
    Ok(match crate::receivers::report(receivers, &outcomes, view) {
        (true, _) => Exit::Success,
        (false, true) => Exit::Interrupted,
        (false, false) => Exit::Failure,
    })
}

async fn add(
    common: &Common,
    name: &str,
    addr: std::net::SocketAddr,
    first: FirstContact,
) -> Result<Exit, Error> {
    let node = Node::start(common.node_config())?;
    let mut events = node.events();
    let (first, prompts) = settle(first, &node);
    let mut renderer = Renderer::new(false, false).prompts(prompts);
    let added = rendering(&mut events, &mut renderer, node.add(name, addr, first)).await?;
    outln!(
        "added {} as '{alias}': its key is pinned now, and `localstream send {alias} FILE` \
         reaches it (where discovery finds it, else at {})",
        added.peer,
        added.addr,
        alias = escape_for_terminal(&added.alias),
    );
    // One name, one peer: what the new name replaced.
    if let Some(old) = &added.replaced.previous {
        outln!(
            "  its earlier name '{old}' is gone: `localstream send {old}` no longer reaches it",
            old = escape_for_terminal(old)
        );
    }
    for (id, name) in &added.replaced.taken_from {
        outln!(
            "  '{alias}' named {} (id {}) before; that peer keeps only its own name",
            escape_for_terminal(name),
            &id.to_string()[..8],
            alias = escape_for_terminal(&added.alias),
        );
    }
    Ok(Exit::Success)
}

/// `ui`: the UI of the node already running on this home, else a new
/// listener with its UI.
async fn ui(
    common: &Common,
    cfg: localstream_node::config::ListenConfig,
    view: ListenView,
) -> Result<Exit, Error> {
    let node = Node::start(common.node_config())?;
    let Some(running) =
        crate::ui::control::find_running(&common.home, &node.id().to_string()).await
    else {
        let started = listen(&node, common, cfg, view).await;
        if let Err(Error::PortTaken {
            holder: localstream_node::error::PortHolder::LocalStream,
            ..
        }) = &started
        {
            // Most likely this home's own listener, one without a UI.
            crate::screen::err_line(
                "localstream: no listener of this home serves a web UI to open (one started \
                 with --no-ui, or with the setting ui = \"off\", serves none)",
            );
        }
        return started;
    };
    if !view.ui.chosen.is_empty() {
        crate::ui::control::choose(&running, &view.ui.chosen).await?;
    }
    outln!(
        "LocalStream already runs on this home (process {}); its web UI:\n{}",
        running.pid,
        running.url()
    );
    if view.ui.open {
        crate::ui::open_browser(&running.url());
    }
    Ok(Exit::Success)
}

/// The listener's policy, now that we know who can be asked: the web UI
/// (`--ui`), the terminal, or nobody.
fn policy(consent: ConsentSetting, ui_asks: bool) -> Policy {
    match consent {
        ConsentSetting::Yes => Policy::Yes,
        ConsentSetting::TrustedOnly => Policy::TrustedOnly,
        ConsentSetting::Ask if ui_asks || crate::prompt::can_ask() => Policy::Ask,
        ConsentSetting::Ask => Policy::Unattended,
    }
}

/// Starts the web UI beside a listener: a failure is fatal only when the
/// UI was asked for.
async fn start_ui(
    node: &Node,
    cfg: &localstream_node::config::ListenConfig,
    view: &ListenView,
) -> Result<Option<crate::ui::Ui>, Error> {
    if cfg.destination == localstream_node::config::Destination::Stdout {
        return Ok(None);
    }
    if !view.ui.serve {
        tracing::info!("no web UI (`--no-ui`, or the setting ui = off)");
        return Ok(None);
    }
    let around = crate::ui::Surroundings {
        dir: cfg.dir.clone(),
        discovery: cfg.discovery.clone(),
        compress: localstream_node::compress::Mode::default(),
        desktop: view.notify.desktop,
        localsend: cfg.localsend.as_ref().map(|l| l.port),
    };
    match crate::ui::start(node, view.ui.clone(), around).await {
        Ok(ui) => {
            if view.ui.asks {
                // `ui` prints the link that signs in; a service's log gets
                // no token (`localstream ui` reads it from the home).
                if view.ui.link || crate::prompt::can_ask() {
                    eprintln!("web UI: {}", ui.url);
                } else {
                    eprintln!("web UI: {} (`localstream ui` opens it signed in)", ui.base);
                }
                if !view.ui.bind.is_loopback() {
                    eprintln!(
                        "warning: the web UI listens on {} and is reachable from the network, \
                         over plain HTTP: anyone on the way can read the password. \
                         Prefer `ssh -L {port}:127.0.0.1:{port}` to a loopback UI.",
                        ui.addr,
                        port = ui.addr.port()
                    );
                }
            } else {
                tracing::info!(url = %ui.base, "web UI on loopback (`localstream ui` opens it)");
            }
            Ok(Some(ui))
        }
        Err(e) if view.ui.asks => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "no web UI for this listener");
            Ok(None)
        }
    }
}

async fn listen(
    node: &Node,
    common: &Common,
    mut cfg: localstream_node::config::ListenConfig,
    view: ListenView,
) -> Result<Exit, Error> {
    let mut interrupts = Interrupts::new()?;
    if cfg.destination == localstream_node::config::Destination::Folder {
        // Before the UI starts: a folder that cannot take files stops here.
        localstream_node::listen::preflight::writable_folder(&cfg.dir)?;
    }
    // Before the UI starts and prints its link: a port taken stops here.
    localstream_node::listen::preflight::port_free(cfg.bind).await?;
    if let localstream_node::config::Discovery::On(interfaces) = &cfg.discovery
        && !cfg.bind.ip().is_loopback()
    {
        crate::settings::warn_left_out(interfaces);
    }
    let mut events = node.events_where(Renderer::wants(view.json));
    let ui_asks = view.ui.asks;
    cfg.policy = policy(view.consent, ui_asks);
    // With the web UI answering, the terminal does not ask too.
    let prompts =
        (cfg.policy == Policy::Ask && !ui_asks).then(|| crate::prompt::start(node.clone()));
    let stdout_is_data = cfg.destination == localstream_node::config::Destination::Stdout;
    let ui = start_ui(node, &cfg, &view).await?;
    let clipboard = crate::clipboard::Wanted::new(view.clipboard);
    if let crate::clipboard::Wanted::Missing = clipboard {
        crate::screen::err_line(&crate::clipboard::missing_line());
    }
    let mut renderer = Renderer::new(view.json, common.progress && !ui_asks)
        .stdout_is_data(stdout_is_data)
        .quiet(view.quiet)
        .prompts(prompts)
        .notify(view.notify)
        .clipboard(clipboard);
    // First Ctrl-C: stop accepting, let transfers finish a moment; second: at once.
    let shutdown = Shutdown::default();
    let signals = shutdown.clone();
    let ctrl_c = tokio::spawn(async move {
        interrupts.next().await;
        signals.graceful.cancel();
        interrupts.next().await;
        signals.now.cancel();
    });
    let end = rendering(&mut events, &mut renderer, node.listen(&cfg, shutdown)).await;
    ctrl_c.abort();
    if let Some(ui) = ui {
        ui.stop().await;
    }
    // The user's own commands finish (Ctrl-C reaches them too).
    renderer.finish().await;
    Ok(match end? {
        ListenEnd::OnceSucceeded => Exit::Success,
        ListenEnd::OnceFailed => Exit::Failure,
        ListenEnd::Interrupted => Exit::Interrupted,
    })
}
