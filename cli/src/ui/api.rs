//! The UI's requests (`docs/ui-api.md`), one handler each. The guard has
//! already checked the Host, the session and the Origin.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use localstream_node::config::{
    DEFAULT_PORT, SendConfig, default_download_dir, parse_peer_addr, parse_target,
};
use localstream_node::confirm::FirstContact;
use localstream_node::store::Trust;
use localstream_node::{Decision, Error};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::App;
use super::guard::Guard;

/// An answer that is an error: its status and a line for people.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match e {
            Error::Usage(_) | Error::Resolve(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, crate::hint::explain(&e))
    }
}

type Answer = Result<Json<Value>, ApiError>;

/// `GET /`: the page (the guard let a session through).
pub(crate) async fn index() -> Response {
    super::assets::page(super::assets::INDEX)
}

/// `GET /login`.
pub(crate) async fn login_page() -> Response {
    super::assets::page(super::assets::LOGIN)
}

/// `GET /api/ping`: who this is (for `ui`, finding a running node).
pub(crate) async fn ping(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({ "id": app.node.id().to_string(), "name": app.node.identity().name() }))
}

/// `GET /api/state`.
pub(crate) async fn state(State(app): State<Arc<App>>) -> Json<Value> {
    Json(app.lock().state())
}

/// A page following the event stream; counted while it is connected.
struct Watcher(Arc<App>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `GET /api/events`: the whole picture, then every change.
pub(crate) async fn events(
    State(app): State<Arc<App>>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    app.start_browsing();
    app.watchers.fetch_add(1, Ordering::SeqCst);
    // Snapshot and subscription under one lock: no change falls between.
    let (first, rx) = {
        let m = app.lock();
        (m.state().to_string(), app.tx.subscribe())
    };
    let watcher = Watcher(app.clone());
    let stream = futures_util::stream::unfold(
        (Some(first), rx, watcher),
        |(first, mut rx, w)| async move {
            if let Some(f) = first {
                return Some((Ok(sse::Event::default().data(f)), (None, rx, w)));
            }
            let app = w.0.clone();
            let next = tokio::select! {
                m = rx.recv() => m,
                () = app.stop.cancelled() => return None,
            };
            let data = match next {
                Ok(m) => m.to_string(),
                // Too far behind: the whole picture again.
                Err(RecvError::Lagged(_)) => app.lock().state().to_string(),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(sse::Event::default().data(data)), (None, rx, w)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /api/history`: the sessions per peer, newest first.
pub(crate) async fn history(State(app): State<Arc<App>>) -> Answer {
    let store = app.node.store().clone();
    let entries =
        tokio::task::spawn_blocking(move || localstream_node::trust::sessions(&store, None))
            .await
            .map_err(|e| bad(e.to_string()))??;
    let peers: Vec<Value> = {
        let m = app.lock();
        entries
            .iter()
            .map(|e| {
                let id = e.node_id.to_string();
                // Every stored peer is in the model; should one not be, the
                // store says enough to name it.
                let view = m.peers().find(|p| p.id == id).map_or_else(
                    || {
                        json!({
                            "id": id,
                            "short_id": e.node_id.simple().to_string()[..8].to_owned(),
                            "name": localstream_proto::names::escape_for_terminal(e.name().unwrap_or("?")),
                            "trust": super::model::trust_name(e.trust),
                        })
                    },
                    |p| json!(p),
                );
                let mut sessions = e.sessions.clone();
                sessions.reverse();
                json!({ "peer": view, "sessions": sessions })
            })
            .collect()
    };
    Ok(Json(Value::Array(peers)))
}

/// The settings as the page shows them.
fn settings_list(home: &FsPath) -> Result<Value, ApiError> {
    let s = localstream_node::settings::load(home)?;
    let defaults = |key: &str| -> String {
        match key {
            "name" => "the host name".into(),
            "dir" => {
                default_download_dir().map_or_else(|e| e.to_string(), |d| d.display().to_string())
            }
            "port" => DEFAULT_PORT.to_string(),
            "interfaces" => "every usable interface".into(),
            "consent" | "first-contact" => "ask".into(),
            "compress" => "auto".into(),
            "on-collision" => "rename".into(),
            "ui" => "on (on loopback)".into(),
            "localsend" => "on (with discovery)".into(),
            "localsend-port" => localstream_node::config::LOCALSEND_PORT.to_string(),
            _ => "none".into(),
        }
    };
    let help = |key: &str| {
        localstream_node::settings::KEYS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, h)| *h)
    };
    let list: Vec<Value> = localstream_node::settings::values(&s)
        .into_iter()
        .filter(|(k, _)| *k != "ui-password")
        .map(|(key, value)| {
            json!({
                "key": key,
                "value": value,
                "default": defaults(key),
                "help": help(key),
                "note": "applies from the next start",
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// `GET /api/settings`.
pub(crate) async fn settings(State(app): State<Arc<App>>) -> Answer {
    Ok(Json(settings_list(app.node.home())?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetSetting {
    key: String,
    /// `None` (or empty): back to the default.
    value: Option<String>,
}

/// `POST /api/settings`: one key (the password is set on the command line).
pub(crate) async fn set_setting(
    State(app): State<Arc<App>>,
    Json(req): Json<SetSetting>,
) -> Answer {
    if req.key == "ui-password" {
        return Err(bad(
            "the UI password is set on the command line: `localstream config set ui-password -`",
        ));
    }
    match req.value.as_deref().map(str::trim) {
        None | Some("") => localstream_node::settings::unset(app.node.home(), &req.key)?,
        Some(v) => localstream_node::settings::set(app.node.home(), &req.key, v)?,
    };
    Ok(Json(settings_list(app.node.home())?))
}

/// `POST /api/uploads`.
pub(crate) async fn new_upload(State(app): State<Arc<App>>) -> Answer {
    let id = app.uploads.create().map_err(bad)?;
    Ok(Json(json!({ "upload": id })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadPath {
    path: String,
}

/// `PUT /api/uploads/<id>?path=...`: one file, streamed to disk.
pub(crate) async fn put_upload(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<UploadPath>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    app.uploads.put(&id, &q.path, body).await.map_err(bad)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct SendRequest {
    peer: String,
    upload: Option<String>,
    #[serde(default)]
    chosen: bool,
    /// A text message (LocalSend devices) instead of files.
    text: Option<String>,
    /// The PIN a LocalSend device asks for.
    pin: Option<String>,
}

/// `POST /api/send`: files dropped in the browser (an upload), or the paths
/// `ui --send` chose, to a peer.
pub(crate) async fn send(State(app): State<Arc<App>>, Json(req): Json<SendRequest>) -> Answer {
    let files = match (&req.upload, req.chosen) {
        _ if req.text.is_some() => Vec::new(),
        (Some(u), _) => app.uploads.entries(u).map_err(bad)?,
        (None, true) => {
            let chosen = app.lock().chosen.clone();
            if chosen.is_empty() {
                return Err(bad("no paths are chosen"));
            }
            chosen
        }
        (None, false) => return Err(bad("nothing to send: give an upload or chosen: true")),
    };
    let target = parse_target(&req.peer)?;
    let s = localstream_node::settings::load(app.node.home()).unwrap_or_default();
    let cfg = SendConfig {
        target,
        files,
        exclude: localstream_node::exclude::Exclude::default(),
        find_timeout: std::time::Duration::from_secs(5),
        discovery: app.around.discovery.clone(),
        retry: None,
        name: None,
        compress: s.compress.map_or(app.around.compress, Into::into),
        first_contact: FirstContact::Ask,
        localsend: localstream_node::config::LocalSendSend {
            on: s.localsend != Some(localstream_node::settings::OnOff::Off),
            port: s
                .localsend_port
                .unwrap_or(localstream_node::config::LOCALSEND_PORT),
            pin: req.pin.clone(),
            text: req.text.clone(),
            scan: false,
        },
    };
    let transfer = app.node.start_send(cfg);
    let id = transfer.id();
    app.publish(|m| m.started_send(id, &req.peer));
    let upload = req.upload;
    let a = app.clone();
    tokio::spawn(async move {
        let result = match transfer.finish().await {
            Ok(_) => Ok(()),
            Err(e) if e.is_interrupted() => Err((true, String::new())),
            Err(e) => Err((false, crate::hint::explain(&e))),
        };
        // Dropped again, the same files resume from what the peer holds
        // (resuming goes by name and content, not by this copy).
        if let Some(u) = &upload {
            a.uploads.remove(u);
        }
        a.publish(|m| m.send_ended(id, result));
    });
    Ok(Json(json!({ "transfer": id })))
}

/// `POST /api/transfers/<id>/cancel`.
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    app.node
        .cancel(id)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))?;
    app.publish(|m| m.cancelled(id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideRequest {
    decision: Decision,
}

/// `POST /api/offers/<id>`: accept once, accept and trust, or reject.
pub(crate) async fn decide(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    Json(req): Json<DecideRequest>,
) -> Result<StatusCode, ApiError> {
    let gone = || ApiError(StatusCode::CONFLICT, "this offer no longer waits".into());
    if !app.lock().has_offer(id) {
        return Err(gone());
    }
    app.node.decide(id, req.decision).map_err(|_| gone())?;
    app.publish(|m| m.answered_offer(id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmRequest {
    yes: bool,
}

/// `POST /api/confirms/<id>`: the codes match (or not).
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    Path(id): Path<u64>,
    Json(req): Json<ConfirmRequest>,
) -> Result<StatusCode, ApiError> {
    app.node
        .confirm(id, req.yes)
        .map_err(|_| ApiError(StatusCode::CONFLICT, "this question no longer waits".into()))?;
    app.publish(|m| m.answered_confirm(id));
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/peers/<id>/<action>`: trust, untrust, block, forget.
pub(crate) async fn peer_action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
) -> Answer {
    let store = app.node.store().clone();
    let query = id.clone();
    let done = tokio::task::spawn_blocking(move || match action.as_str() {
        "trust" => {
            localstream_node::trust::set_trust_of(&store, &query, Trust::Trusted).map(|_| ())
        }
        "untrust" => {
            localstream_node::trust::set_trust_of(&store, &query, Trust::Known).map(|_| ())
        }
        "block" => {
            localstream_node::trust::set_trust_of(&store, &query, Trust::Blocked).map(|_| ())
        }
        "forget" => localstream_node::trust::forget(&store, &query).map(|_| ()),
        other => Err(Error::Usage(format!(
            "{other:?} is not an action: trust, untrust, block or forget"
        ))),
    })
    .await
    .map_err(|e| bad(e.to_string()))?;
    done?;
    let peer = app.change(|m| {
        let mut out = Vec::new();
        m.reload_store(&mut out);
        (m.peers().find(|p| p.id == id).cloned(), out)
    });
    Ok(Json(json!({ "peer": peer })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddRequest {
    name: String,
    address: String,
}

/// `POST /api/add`: reach a node by address, confirm it, pin it under a
/// name; the outcome comes as a banner.
pub(crate) async fn add(State(app): State<Arc<App>>, Json(req): Json<AddRequest>) -> Answer {
    let name = req.name.trim().to_owned();
    if name.is_empty() {
        return Err(bad("give the node a name"));
    }
    let addr = parse_peer_addr(req.address.trim())?;
    let a = app.clone();
    tokio::spawn(async move {
        let result = a.node.add(&name, addr, FirstContact::Ask).await;
        a.publish(|m| {
            let mut out = Vec::new();
            m.reload_store(&mut out);
            out.push(match result {
                Ok(added) => m.banner(
                    "info",
                    format!(
                        "Added '{}'",
                        localstream_proto::names::escape_for_terminal(&added.alias)
                    ),
                    format!(
                        "{} at {} is pinned; send to it by name from now on",
                        added.peer, added.addr
                    ),
                    Some(super::model::PeerRef::of(&added.peer)),
                ),
                Err(e) => m.banner(
                    "warning",
                    format!("Could not add {addr}"),
                    crate::hint::explain(&e),
                    None,
                ),
            });
            out
        });
    });
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub(crate) struct OpenRequest {
    path: Option<PathBuf>,
}

/// `POST /api/open`: the receive folder (or the folder of a file received
/// into it) in this machine's file manager.
pub(crate) async fn open(
    State(app): State<Arc<App>>,
    Json(req): Json<OpenRequest>,
) -> Result<StatusCode, ApiError> {
    let root = std::fs::canonicalize(&app.around.dir)
        .map_err(|e| bad(format!("{}: {e}", app.around.dir.display())))?;
    let folder = match req.path {
        None => root,
        Some(p) => {
            let p = std::fs::canonicalize(&p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
            if !p.starts_with(&root) {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    "only the receive folder and what is in it can be opened".into(),
                ));
            }
            if p.is_dir() {
                p
            } else {
                p.parent().map_or(root, FsPath::to_path_buf)
            }
        }
    };
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(&folder)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut c| {
            std::thread::spawn(move || c.wait());
        })
        .map_err(|e| {
            bad(format!(
                "cannot open a file manager on this machine ({opener}: {e}); the files are in {}",
                folder.display()
            ))
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChooseRequest {
    paths: Vec<PathBuf>,
}

/// `POST /api/choose`: `ui --send` hands its paths to this node (programs
/// with the token only: a page cannot name files on this machine).
pub(crate) async fn choose(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<ChooseRequest>,
) -> Result<StatusCode, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", app.guard.token));
    if !bearer {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only `localstream ui --send` chooses paths".into(),
        ));
    }
    let mut paths = Vec::new();
    for p in req.paths {
        paths.push(std::fs::canonicalize(&p).map_err(|e| bad(format!("{}: {e}", p.display())))?);
    }
    app.publish(|m| {
        m.chosen = paths;
        vec![json!({ "kind": "chosen", "chosen": m.chosen })]
    });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequest {
    password: String,
}

/// `POST /api/login`: the password for a session cookie, a few guesses a
/// minute per source and overall.
pub(crate) async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let Some(hash) = app.password.clone() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "this UI has no password".into(),
        ));
    };
    if !app.attempts.may_try(from.ip(), Instant::now()) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong passwords: wait a minute".into(),
        ));
    }
    let ok = tokio::task::spawn_blocking(move || super::password::verify(&hash, &req.password))
        .await
        .unwrap_or(false);
    if !ok {
        app.attempts.failed(from.ip(), Instant::now());
        return Err(ApiError(StatusCode::UNAUTHORIZED, "wrong password".into()));
    }
    let session = app.guard.new_session();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, Guard::set_cookie(&session));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
