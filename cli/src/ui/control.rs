//! How `localstream ui` finds a node already running on the same home: the
//! running node writes its UI's address and token to `<home>/ui.json` (mode
//! 0600, so only this user can read it), and removes it when it stops. `ui`
//! reads it, asks that address who it is (`GET /api/ping` with the token), and
//! opens that node's UI instead of starting a second node.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The file's name in the home.
pub const FILE: &str = "ui.json";
/// How long a running node gets to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_ANSWER: u64 = 64 * 1024;

/// What `<home>/ui.json` says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Control {
    /// `http://127.0.0.1:PORT` (no slash at the end).
    pub base: String,
    /// The UI's token (per start).
    pub token: String,
    /// The node's process.
    pub pid: u32,
    /// The node's id.
    pub id: String,
}

impl Control {
    /// The link that signs a browser in.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}/?token={}", self.base, self.token)
    }

    fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// Writes the file (mode 0600).
///
/// # Errors
/// When it cannot be written.
pub fn write(home: &Path, c: &Control) -> io::Result<PathBuf> {
    let text = serde_json::to_vec_pretty(c).map_err(io::Error::other)?;
    localstream_node::fsutil::write_atomic(home, FILE, &text, 0o600)
        .map_err(|e| io::Error::new(e.source.kind(), e.to_string()))?;
    Ok(home.join(FILE))
}

/// Removes the file if it is still ours (another node may have started on
/// the same home since and written its own).
pub fn remove_if_ours(home: &Path, token: &str) {
    if read(home).is_some_and(|c| c.token == token) {
        let _ = std::fs::remove_file(home.join(FILE));
    }
}

/// What the file says, if it exists and makes sense.
#[must_use]
pub fn read(home: &Path) -> Option<Control> {
    let text = std::fs::read(home.join(FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The node running on `home` whose id is `id`, if one answers.
pub async fn find_running(home: &Path, id: &str) -> Option<Control> {
    let c = read(home)?;
    if c.id != id || !c.base.starts_with("http://127.0.0.1:") {
        return None;
    }
    let (status, body) = request(&c, "GET", "/api/ping", None).await.ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
    (status == 200 && answer["id"] == id).then_some(c)
}

/// Hands `paths` to the running node's UI (`ui --send`).
///
/// # Errors
/// When it does not take them.
pub async fn choose(c: &Control, paths: &[PathBuf]) -> io::Result<()> {
    let body = serde_json::json!({ "paths": paths }).to_string();
    let (status, answer) = request(c, "POST", "/api/choose", Some(&body)).await?;
    if status == 200 || status == 204 {
        return Ok(());
    }
    let why: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    Err(io::Error::other(format!(
        "the running node refused the paths ({status}): {}",
        why["error"].as_str().unwrap_or("no reason given")
    )))
}

/// One HTTP/1.1 request to the running node, with the token.
async fn request(
    c: &Control,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<(u16, Vec<u8>)> {
    let host = c.host().to_owned();
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            c.token,
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut answer = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "the running node did not answer")
        })??;
    parse_answer(&answer)
}

/// The status and body of an HTTP/1.1 answer (`Connection: close`, so the
/// body is the rest; chunked bodies are not used by our server for these).
fn parse_answer(answer: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = std::str::from_utf8(&answer[..split]).map_err(|_| bad())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, answer[split + 4..].to_vec()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_and_removed_only_by_its_writer() {
        let home = tempfile::tempdir().unwrap();
        let c = Control {
            base: "http://127.0.0.1:1234".into(),
            token: "abc".into(),
            pid: 1,
            id: "x".into(),
        };
        let path = write(home.path(), &c).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(read(home.path()), Some(c.clone()));
        assert_eq!(c.url(), "http://127.0.0.1:1234/?token=abc");
        remove_if_ours(home.path(), "other");
        assert!(path.exists());
        remove_if_ours(home.path(), "abc");
        assert!(!path.exists());
    }

    #[test]
    fn answers_are_parsed() {
        let (s, b) = parse_answer(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n{\"id\":1}").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"{\"id\":1}"[..]));
        assert!(parse_answer(b"garbage").is_err());
    }
}
