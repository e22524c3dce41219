//! The UI's own security, checked on every request before any handler runs:
//!
//! ```text
//!  request ─► Host is ours? (DNS rebinding) ─► authenticated? (cookie, Bearer token,
//!             or `/?token=` exchanged for the cookie) ─► Origin ours on anything that
//!             changes state and on the event stream? ─► handler ─► strict headers
//! ```
//!
//! The token is random per start; the cookie is a separate random value per
//! browser session (HttpOnly, SameSite=Strict), so the token in a URL that
//! leaked into a history file stops working at the next start.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;

/// The cookie that carries a browser session.
pub(crate) const COOKIE: &str = "ls_ui";

/// The page's Content-Security-Policy: only our own scripts, styles and
/// connections; nothing inline; no frames; no plugins.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Who may use the UI, and how they prove it.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The per-start token (in the opened URL and in `<home>/ui.json`).
    pub(crate) token: String,
    /// The address the UI listens on.
    addr: SocketAddr,
    /// Browser sessions (cookie values) handed out.
    sessions: Mutex<HashSet<String>>,
}

impl Guard {
    /// A guard for a UI listening on `addr`.
    pub(crate) fn new(addr: SocketAddr, token: String) -> Self {
        Guard {
            token,
            addr,
            sessions: Mutex::default(),
        }
    }

    /// Whether `host` (a Host header) names this UI: `localhost` or an IP
    /// literal that is ours (a loopback address, the bound one, or any when
    /// bound to all), with our port. A DNS name other than `localhost` is
    /// what a rebinding attack uses, so none is accepted.
    fn is_ours(&self, host: &str) -> bool {
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        // Digits only (`parse` alone takes "+4000").
        if !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().ok() != Some(self.addr.port())
        {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let name = name.trim_start_matches('[').trim_end_matches(']');
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.addr.ip() || self.addr.ip().is_unspecified(),
            Err(_) => false,
        }
    }

    /// A new browser session: the cookie's value.
    pub(crate) fn new_session(&self) -> String {
        let value = random_hex(32);
        self.lock().insert(value.clone());
        value
    }

    /// The `Set-Cookie` header for a session.
    pub(crate) fn set_cookie(session: &str) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.is_ours(h))
    }

    /// Whether the request comes from our own page (or from a program that
    /// holds the token, which browsers cannot send cross-site).
    fn origin_ok(&self, headers: &HeaderMap, changes_state: bool, bearer: bool) -> bool {
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && !matches!(site, "same-origin" | "none")
        {
            return false;
        }
        // Our origin is the (checked) Host the request was sent to.
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            Some(Ok(o)) => host.is_some_and(|h| {
                o.strip_prefix("http://")
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(h))
            }),
            Some(Err(_)) => false,
            // Without an Origin: a same-origin GET (browsers leave it out), or
            // a program with the token. A state change needs one of the two proofs.
            None => !changes_state || bearer || headers.contains_key("sec-fetch-site"),
        }
    }

    fn bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.as_bytes(), self.token.as_bytes()))
    }

    fn cookie(&self, headers: &HeaderMap) -> bool {
        let sessions = self.lock();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == COOKIE && sessions.contains(v))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The middleware: Host, authentication, Origin; then the strict headers on
/// whatever the handler answered.
pub(crate) async fn check(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let guard = &app.guard;
    let headers = req.headers();
    let path = req.uri().path().to_owned();
    if !guard.host_ok(headers) {
        return harden(denied(
            StatusCode::FORBIDDEN,
            "this address is not the UI's",
        ));
    }
    let public = path.starts_with("/assets/") || path == "/login" || path == "/api/login";
    let bearer = guard.bearer(headers);
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let checks_origin = changes_state || path == "/api/events";
    if checks_origin && !guard.origin_ok(headers, changes_state, bearer) {
        return harden(denied(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    if !public && !bearer && !guard.cookie(headers) {
        if path == "/" {
            if let Some(resp) = exchange_token(guard, req.uri().query()) {
                return harden(resp);
            }
            return harden(front_door(&app));
        }
        return harden(denied(StatusCode::FORBIDDEN, "not signed in to this UI"));
    }
    harden(json_errors(next.run(req).await).await)
}

/// axum's own refusals (a body that is not JSON, a missing field) are plain
/// text: the page shows `{ error }`, so they become that.
async fn json_errors(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !resp.status().is_client_error() || !plain {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    denied_with(status, text)
}

/// `/?token=T`: the token for a session cookie, and the URL without it.
fn exchange_token(guard: &Guard, query: Option<&str>) -> Option<Response> {
    let given = query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)?;
    if !constant_time_eq(given.as_bytes(), guard.token.as_bytes()) {
        return None;
    }
    let session = guard.new_session();
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    resp.headers_mut()
        .insert(header::SET_COOKIE, Guard::set_cookie(&session));
    Some(resp)
}

/// What someone without a session sees at `/`: the login page when a
/// password is set, else how to get the link.
fn front_door(app: &App) -> Response {
    let page = if app.password.is_some() {
        super::assets::LOGIN
    } else {
        super::assets::DENIED
    };
    let mut resp = (StatusCode::FORBIDDEN, page).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn denied(status: StatusCode, why: &'static str) -> Response {
    denied_with(status, why.to_owned())
}

fn denied_with(status: StatusCode, why: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

/// The headers every answer carries.
fn harden(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_our_own_host_names_are_served() {
        let g = Guard::new("127.0.0.1:4000".parse().unwrap(), "t".into());
        assert!(g.host_ok(&headers(&[("host", "127.0.0.1:4000")])));
        assert!(g.host_ok(&headers(&[("host", "LOCALHOST:4000")])));
        assert!(!g.host_ok(&headers(&[("host", "evil.example:4000")])));
        assert!(!g.host_ok(&headers(&[("host", "127.0.0.1:4001")])));
        assert!(!g.host_ok(&headers(&[])));
        assert!(!g.host_ok(&headers(&[("host", "10.0.0.5:4000")])));
        assert!(!g.host_ok(&headers(&[("host", "[::1]:4000x")])));
        assert!(!g.host_ok(&headers(&[("host", "127.0.0.1:+4000")])));
        assert!(g.host_ok(&headers(&[("host", "[::1]:4000")])));
        // Bound to every address: any IP literal of ours, never a DNS name.
        let all = Guard::new("0.0.0.0:4000".parse().unwrap(), "t".into());
        assert!(all.host_ok(&headers(&[("host", "10.0.0.5:4000")])));
        assert!(!all.host_ok(&headers(&[("host", "nas.example:4000")])));
    }

    #[test]
    fn state_changes_need_our_origin_or_the_token() {
        let g = Guard::new("127.0.0.1:4000".parse().unwrap(), "t".into());
        let host = ("host", "127.0.0.1:4000");
        let ours = headers(&[host, ("origin", "http://127.0.0.1:4000")]);
        let other_name = headers(&[host, ("origin", "http://localhost:4000")]);
        let foreign = headers(&[host, ("origin", "http://evil.example")]);
        let cross = headers(&[host, ("sec-fetch-site", "cross-site")]);
        assert!(g.origin_ok(&ours, true, false));
        assert!(!g.origin_ok(&other_name, true, false));
        assert!(!g.origin_ok(&foreign, true, false));
        assert!(!g.origin_ok(&foreign, false, false));
        assert!(!g.origin_ok(&cross, false, true));
        assert!(!g.origin_ok(&headers(&[host]), true, false));
        assert!(g.origin_ok(&headers(&[host]), true, true));
        assert!(g.origin_ok(&headers(&[host]), false, false));
    }

    #[test]
    fn a_session_cookie_is_one_we_handed_out() {
        let g = Guard::new("127.0.0.1:4000".parse().unwrap(), "t".into());
        let s = g.new_session();
        assert!(g.cookie(&headers(&[("cookie", &format!("a=b; {COOKIE}={s}"))])));
        assert!(!g.cookie(&headers(&[("cookie", &format!("{COOKIE}=x{s}"))])));
        assert!(!g.cookie(&headers(&[("cookie", "a=b")])));
    }
}
