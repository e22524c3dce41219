//! The web UI: one page app served by the node itself (`localstream ui`,
//! `listen --ui`), on loopback by default. The HTTP API and the event stream
//! are in `docs/ui-api.md`; the page's files are in `assets/`, embedded in
//! the binary.
//!
//! ```text
//!  Node events ─► feed ─► Model (the picture) ─► broadcast ─► GET /api/events (SSE) ─► page
//!  page ─► POST /api/... ─► api ─► Node::{start_send, decide, confirm, cancel, add},
//!                                  trust, settings, uploads (files dropped in the browser)
//!  every request ─► guard (Host, cookie or token, Origin) ─► strict headers (CSP, no CORS)
//! ```
//!
//! Every listener serves it (so `ui` can open a running service's UI via
//! `<home>/ui.json`); with `--ui` the UI also answers incoming offers, and the
//! node tells the desktop about an offer when no page is open.

mod api;
mod assets;
pub mod control;
mod guard;
mod model;
pub mod password;
mod uploads;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use localstream_node::config::{Discovery, PeersConfig};
use localstream_node::event::Envelope;
use localstream_node::identity::short_fingerprint;
use localstream_node::{Error, Event, Node};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use model::{Message, Model, NodeView};

/// How the UI is served.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// The address to listen on (loopback unless `--ui-bind`).
    pub bind: IpAddr,
    /// The port (0: a free one).
    pub port: u16,
    /// Whether the UI runs at all: not with `listen --no-ui`, nor with the
    /// setting `ui = off` unless the command line asks for it (`--ui`,
    /// `--ui-bind`, `--ui-port`, the `ui` command).
    pub serve: bool,
    /// Whether the UI answers incoming offers (`ui`, `listen --ui`).
    pub asks: bool,
    /// Open the default browser at the start (`ui` without `--no-open`).
    pub open: bool,
    /// Print the link that signs in (`ui`; a service's log gets none).
    pub link: bool,
    /// Paths chosen to send (`ui --send PATH...`).
    pub chosen: Vec<PathBuf>,
    /// The password's argon2 hash (needed for a non-loopback `bind`).
    pub password: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            serve: true,
            asks: false,
            open: false,
            link: false,
            chosen: Vec::new(),
            password: None,
        }
    }
}

/// What sends from the UI use, and where the node looks for peers.
#[derive(Debug, Clone)]
pub struct Surroundings {
    /// The receive folder (what "open folder" may open).
    pub dir: PathBuf,
    /// Discovery, as the listener has it.
    pub discovery: Discovery,
    /// `send` compression.
    pub compress: localstream_node::compress::Mode,
    /// Desktop notifications wanted.
    pub desktop: bool,
    /// LocalSend's port, for finding LocalSend devices (`None`: not looked for).
    pub localsend: Option<u16>,
}

/// The server's shared state: what every handler works with.
#[derive(Debug)]
pub(crate) struct App {
    node: Node,
    model: Mutex<Model>,
    tx: broadcast::Sender<Arc<str>>,
    guard: guard::Guard,
    uploads: uploads::Uploads,
    password: Option<String>,
    attempts: password::Attempts,
    around: Surroundings,
    /// Pages connected to the event stream now.
    watchers: AtomicUsize,
    browsing: AtomicBool,
    stop: CancellationToken,
}

impl App {
    /// Runs `f` on the model and sends what it returns, in order, while the
    /// model is still locked (so no page sees a change before its cause).
    fn change<T>(&self, f: impl FnOnce(&mut Model) -> (T, Vec<Message>)) -> T {
        let mut m = self.lock();
        // Nobody watching (a listener's usual state): nothing to write out.
        let watched = self.tx.receiver_count() > 0;
        m.unwatched = !watched;
        let (out, messages) = f(&mut m);
        if watched {
            for msg in messages {
                let _ = self.tx.send(Arc::from(msg.to_string()));
            }
        }
        out
    }

    fn publish(&self, f: impl FnOnce(&mut Model) -> Vec<Message>) {
        self.change(|m| ((), f(m)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks for peers (from the first page on: a listener nobody watches
    /// does not browse).
    fn start_browsing(self: &Arc<Self>) {
        let Discovery::On(interfaces) = &self.around.discovery else {
            return;
        };
        if self.browsing.swap(true, Ordering::SeqCst) {
            return;
        }
        let cfg = PeersConfig {
            timeout: None,
            watch: true,
            interfaces: interfaces.clone(),
            localsend: self.around.localsend,
            scan: false,
        };
        let app = self.clone();
        tokio::spawn(async move {
            let store = app.node.peer_store().unwrap_or_default();
            if let Err(e) = app.node.browse(&cfg, &store, &app.stop).await {
                warn!(error = %e, "the web UI cannot look for peers");
                app.publish(|m| {
                    vec![m.banner(
                        "warning",
                        "Cannot look for peers on the network".into(),
                        e.to_string(),
                        None,
                    )]
                });
            }
        });
    }
}

/// The running UI.
#[derive(Debug)]
pub struct Ui {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The link that signs a browser in (`base/?token=...`).
    pub url: String,
    /// Where it listens.
    pub addr: SocketAddr,
    home: PathBuf,
    token: String,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Ui {
    /// Stops serving (pages' event streams end) and removes `ui.json`.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
        }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.stop.cancel();
        control::remove_if_ours(&self.home, &self.token);
    }
}

/// Starts the UI of `node`: binds, writes `<home>/ui.json`, follows the
/// node's events from now on.
///
/// # Errors
/// When the address cannot be bound, or a LAN address has no password.
pub async fn start(node: &Node, cfg: UiConfig, around: Surroundings) -> Result<Ui, Error> {
    if !cfg.bind.is_loopback() && cfg.password.is_none() {
        return Err(Error::Usage(format!(
            "--ui-bind {} makes the web UI reachable from the network: set a password first \
             (`localstream config set ui-password -` reads it from standard input)",
            cfg.bind
        )));
    }
    let bind = SocketAddr::new(cfg.bind, cfg.port);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| Error::Bind { addr: bind, source })?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_loopback() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let base = format!("http://{host}");
    let token = guard::random_hex(16);
    let url = format!("{base}/?token={token}");
    let id = node.identity();
    let view = NodeView {
        name: id.name().to_owned(),
        id: node.id().to_string(),
        short_id: node.id().short(),
        fingerprint: short_fingerprint(&id.fingerprint()),
        dir: around.dir.clone(),
        ui_url: base.clone(),
        asks: cfg.asks,
        ..NodeView::default()
    };
    let mut model = Model::new(view, node.store().clone());
    model.chosen = cfg.chosen.clone();
    let (tx, _) = broadcast::channel(1024);
    let stop = CancellationToken::new();
    let app = Arc::new(App {
        node: node.clone(),
        model: Mutex::new(model),
        tx,
        guard: guard::Guard::new(addr, token.clone()),
        uploads: uploads::Uploads::new(node.home()),
        password: cfg.password.clone(),
        attempts: password::Attempts::default(),
        around,
        watchers: AtomicUsize::new(0),
        browsing: AtomicBool::new(false),
        stop: stop.clone(),
    });
    // Subscribed now: the listener's first event is not missed.
    // (The page lists the first files of a transfer: the others' `file_done`
    // is not even made for it.)
    feed(
        app.clone(),
        node.events_to(localstream_node::event::Interest {
            files_done: model::MAX_DONE_FILES as u64,
            ..localstream_node::event::Interest::ALL
        }),
    );
    let router = routes(app.clone());
    let shutdown = stop.clone();
    let server = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            warn!(error = %e, "the web UI stopped");
        }
    });
    let control = control::Control {
        base: base.clone(),
        token: token.clone(),
        pid: std::process::id(),
        id: node.id().to_string(),
    };
    if let Err(e) = control::write(node.home(), &control) {
        warn!(error = %e, "cannot write ui.json: `localstream ui` will not find this node");
    }
    if cfg.open {
        open_browser(&url);
    }
    if cfg.asks {
        app.start_browsing();
    }
    Ok(Ui {
        base,
        url,
        addr,
        home: node.home().to_owned(),
        token,
        stop,
        server: Some(server),
    })
}

fn routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(api::index))
        .route("/login", get(api::login_page))
        .route("/assets/{name}", get(assets::serve))
        .route("/api/ping", get(api::ping))
        .route("/api/state", get(api::state))
        .route("/api/events", get(api::events))
        .route("/api/history", get(api::history))
        .route("/api/settings", get(api::settings).post(api::set_setting))
        .route("/api/uploads", post(api::new_upload))
        .route("/api/uploads/{id}", put(api::put_upload))
        .route("/api/send", post(api::send))
        .route("/api/transfers/{id}/cancel", post(api::cancel))
        .route("/api/offers/{id}", post(api::decide))
        .route("/api/confirms/{id}", post(api::confirm))
        .route("/api/peers/{id}/{action}", post(api::peer_action))
        .route("/api/add", post(api::add))
        .route("/api/open", post(api::open))
        .route("/api/choose", post(api::choose))
        .route("/api/login", post(api::login))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::check,
        ))
        .with_state(app)
}

/// How often the peer store's file is looked at: it changes after a
/// transfer's last event (the history is written then), and from other
/// commands (`localstream trust` in a terminal).
const STORE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The store file's length and time of change, to notice that it changed.
fn store_stamp(app: &App) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(app.node.store().path()).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Follows the node's events into the model (and tells the desktop about an
/// offer when no page is open), and the peer store's changes.
fn feed(app: Arc<App>, mut events: localstream_node::EventStream) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STORE_POLL);
        let mut stamp = store_stamp(&app);
        loop {
            let next = tokio::select! {
                e = events.next() => e,
                _ = tick.tick() => {
                    let now = store_stamp(&app);
                    if now != stamp {
                        stamp = now;
                        app.publish(|m| {
                            let mut out = Vec::new();
                            m.reload_store(&mut out);
                            out
                        });
                    }
                    continue;
                }
                () = app.stop.cancelled() => None,
            };
            let Some(envelope) = next else { break };
            let offer = offer_line(&envelope);
            app.publish(|m| m.apply(envelope));
            if let Some(line) = offer
                && app.around.desktop
                && app.watchers.load(Ordering::SeqCst) == 0
                && app.lock().node.asks
            {
                let url = app.lock().node.ui_url.clone();
                crate::notify::desktop(&line, &format!("Answer it in the web UI: {url}"));
            }
        }
        debug!("the web UI stopped following events");
    });
}

/// "Offer from NAME: 3 files, 2.0 MB", for an offer that waits for an answer.
fn offer_line(e: &Envelope) -> Option<String> {
    match &e.event {
        Event::Offer {
            offer_id: Some(_),
            peer: Some(peer),
            files,
            bytes,
            ..
        } => Some(format!(
            "Offer from {}: {} item{}, {}",
            localstream_proto::names::escape_for_terminal(&peer.name),
            files,
            if *files == 1 { "" } else { "s" },
            localstream_node::units::human_bytes(*bytes)
        )),
        _ => None,
    }
}

/// The app's icon (SVG).
#[must_use]
pub fn icon() -> &'static [u8] {
    assets::file("icon.svg").unwrap_or_default()
}

/// Opens `url` in the default browser (xdg-open, open, start), not waiting.
pub fn open_browser(url: &str) {
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.spawn() {
        // Reaped in the background: the browser keeps running on its own.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("cannot open a browser ({e}): open the link above by hand"),
    }
}
