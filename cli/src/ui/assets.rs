//! The page's files, embedded at build time (`cli/build.rs` lists
//! `cli/src/ui/assets/`): served under `/assets/<name>` with their type.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The one page.
pub(crate) const INDEX: &str = include_str!("assets/index.html");
/// The page for someone without a session when a password is set.
pub(crate) const LOGIN: &str = include_str!("assets/login.html");
/// The page for someone without a session (no password: only the link works).
pub(crate) const DENIED: &str = include_str!("assets/denied.html");

/// A file's bytes, by name.
pub(crate) fn file(name: &str) -> Option<&'static [u8]> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The media type of a file name.
fn media_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// `GET /assets/<name>`.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    match file(&name) {
        Some(bytes) => {
            let mut resp = bytes.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media_type(&name)),
            );
            resp
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A page, as HTML.
pub(crate) fn page(html: &'static str) -> Response {
    let mut resp = html.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_script_is_embedded() {
        for name in [
            "index.html",
            "app.js",
            "style.css",
            "login.html",
            "login.js",
            "denied.html",
        ] {
            assert!(file(name).is_some_and(|b| !b.is_empty()), "{name}");
        }
        assert_eq!(media_type("app.js"), "text/javascript; charset=utf-8");
        assert!(file("../Cargo.toml").is_none());
    }
}
