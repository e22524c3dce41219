//! The LocalSend HTTPS API of a listener: `register` and `info` (who this
//! node is), and the upload API (`prepare-upload`, `upload`, `cancel`).
//!
//! ```text
//!  TCP ─► TLS (client certificate) ─► HTTP/1.1 ─► route
//!    prepare-upload: certificate ─► store (blocked, impostor) ─► PIN ─► one session at a time
//!                    ─► names, space ─► consent (the listener's Gate) ─► pin, history ─► tokens
//!    upload:         session, token, address ─► partial file ─► size, SHA-256 ─► final name
//!    cancel:         the session ends, its partial files go
//! ```
//!
//! Every incoming session goes through the same gate, peer store, history
//! and file rules as LocalStream's own transfers ([`super::receive`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::limits::{Attempts, PerSource};
use super::receive::{self, Offered};
use super::wire::{self, DeviceInfo};
use crate::receive::Shared;

/// Connections served at once, overall and from one address.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one address.
pub(crate) const MAX_CONNECTIONS_PER_SOURCE: usize = 16;
/// How long the TLS handshake and each request's head may take.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    /// Its address.
    pub addr: SocketAddr,
    /// Its client certificate's fingerprint, if it showed one.
    pub cert: Option<[u8; 32]>,
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct Served {
    /// The listener's gate, store, folder and events.
    pub shared: Arc<Shared>,
    /// How this node describes itself.
    pub me: DeviceInfo,
    /// This node's certificate fingerprint.
    pub own: [u8; 32],
    /// The PIN senders must give, if any.
    pub pin: Option<String>,
    /// Wrong PINs, per source and overall.
    pub pins: Attempts,
    /// The one session, asked about or running.
    pub slot: receive::Slot,
    /// Sessions that ended (`ok`), for `listen --once`.
    pub ended: tokio::sync::mpsc::UnboundedSender<bool>,
    /// Devices that registered with this node.
    pub devices: Arc<super::Devices>,
}

/// The HTTPS server, running until `stop`.
///
/// # Errors
/// When the certificate cannot be used.
pub(crate) fn spawn(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    served: Arc<Served>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = router(served.clone());
    tokio::spawn(async move {
        let all = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let per_source = Arc::new(PerSource::new(MAX_CONNECTIONS_PER_SOURCE));
        let mut backoff = Duration::from_millis(50);
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "LocalSend accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            let Some(source_slot) = per_source.enter(addr.ip()) else {
                debug!(%addr, "LocalSend: too many connections from this address");
                continue;
            };
            let Ok(slot) = all.clone().try_acquire_owned() else {
                debug!(%addr, "LocalSend: too many connections");
                continue;
            };
            let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
            tokio::spawn(async move {
                let _slots = (slot, source_slot);
                tokio::select! {
                    () = serve_connection(tcp, addr, acceptor, app) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    })
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%addr, error = %e, "LocalSend: TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%addr, "LocalSend: TLS handshake timed out");
            return;
        }
    };
    let conn = Conn {
        addr,
        cert: super::tls::peer_fingerprint(tls.get_ref().1),
    };
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn);
            app.clone().oneshot(req)
        });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        debug!(%addr, error = %e, "LocalSend connection ended");
    }
}

fn router(served: Arc<Served>) -> Router {
    let api = wire::API;
    Router::new()
        .route(&format!("{api}/register"), post(register))
        .route(&format!("{api}/info"), get(info))
        .route("/api/localsend/v1/info", get(info))
        .route(
            &format!("{api}/prepare-upload"),
            post(prepare_upload).layer(DefaultBodyLimit::max(wire::MAX_PREPARE_BODY)),
        )
        .route(
            &format!("{api}/upload"),
            post(receive::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(&format!("{api}/cancel"), post(cancel))
        .layer(DefaultBodyLimit::max(wire::MAX_INFO_BODY))
        .with_state(served)
}

/// An error answer: the code and a short text (LocalSend shows the code).
pub(crate) fn answer(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        axum::Json(serde_json::json!({ "message": message.into() })),
    )
        .into_response()
}

/// `register`: a device answers this node's announcement (or scans the
/// subnet); it is noted, and told who this node is.
async fn register(
    State(s): State<Arc<Served>>,
    Extension(conn): Extension<Conn>,
    body: Bytes,
) -> Response {
    if let Ok(info) = serde_json::from_slice::<DeviceInfo>(&body) {
        let fp = conn.cert.or_else(|| info.fingerprint());
        if let Some(fp) = fp
            && fp != s.own
        {
            let port = info.port.unwrap_or(wire::PORT);
            s.devices.saw(
                &info,
                fp,
                SocketAddr::new(conn.addr.ip().to_canonical(), port),
            );
        }
    }
    axum::Json(&s.me).into_response()
}

/// `info`: who this node is.
async fn info(State(s): State<Arc<Served>>) -> Response {
    axum::Json(&s.me).into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct PinQuery {
    pin: Option<String>,
}

/// `prepare-upload`: see the module docs.
async fn prepare_upload(
    State(s): State<Arc<Served>>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<PinQuery>,
    body: Bytes,
) -> Response {
    let Some(cert) = conn.cert else {
        return answer(
            StatusCode::FORBIDDEN,
            "no client certificate: this receiver takes files from LocalSend 1.18 or later, \
             in encrypted (HTTPS) mode",
        );
    };
    let req: wire::PrepareUpload = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let offered = Offered {
        from: conn.addr.ip().to_canonical(),
        remote: conn.addr,
        cert,
        info: req.info.clone(),
        pin: q.pin,
    };
    receive::prepare(&s, offered, &req).await
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionQuery {
    session_id: Option<String>,
}

/// `cancel`: the sender ends its session.
async fn cancel(
    State(s): State<Arc<Served>>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<SessionQuery>,
) -> Response {
    let from: IpAddr = conn.addr.ip().to_canonical();
    match s
        .slot
        .cancel_from(q.session_id.as_deref().unwrap_or(""), from)
    {
        true => StatusCode::OK.into_response(),
        false => answer(StatusCode::FORBIDDEN, "no such session from this address"),
    }
}
