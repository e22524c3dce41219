//! LocalSend on a listener (on 127.0.0.1, discovery off, its LocalSend port
//! given with `--localsend-port 0`): a hostile LocalSend sender built from
//! the library's client (traversal names, lying sizes, wrong hashes, wrong
//! tokens) is refused, keeps nothing under a final name and nothing outside
//! the folder, and the listener then serves an honest sender (this
//! `localstream send`, speaking LocalSend); PINs, text messages, refusals.

#![allow(clippy::unwrap_used)]

use super::common;

use std::path::Path;
use std::time::Duration;

use common::{Listener, Node, Role, names_in, poll_until, run};
use localstream_node::localsend::client::{Client, Request, empty_body, json_body};
use localstream_node::localsend::wire;

/// The listener's LocalSend port, from its banner.
fn localsend_port(l: &mut Listener) -> u16 {
    let line = l.wait_line(|l| l.starts_with("LocalSend   on port "));
    line.trim_start_matches("LocalSend   on port ")
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

fn start(node: &Node, dir: &Path, extra: &[&str]) -> (Listener, u16) {
    let mut args = vec!["--localsend-port", "0"];
    args.extend_from_slice(extra);
    let mut l = node.listen(dir, &args);
    let port = localsend_port(&mut l);
    (l, port)
}

/// A LocalSend client with a certificate of its own.
struct Evil {
    client: Client,
    addr: std::net::SocketAddr,
    info: serde_json::Value,
    _home: tempfile::TempDir,
}

impl Evil {
    fn new(port: u16) -> Evil {
        let home = tempfile::tempdir().unwrap();
        let cert = localstream_node::localsend::certificate(home.path()).unwrap();
        Evil {
            client: Client::new(&cert).unwrap(),
            addr: ([127, 0, 0, 1], port).into(),
            info: serde_json::json!({
                "alias": "mallory", "version": "2.1", "deviceModel": "Evil", "deviceType": "mobile",
                "fingerprint": cert.fingerprint_text(), "port": 53317, "protocol": "https", "download": false
            }),
            _home: home,
        }
    }

    async fn post(&self, path: &str, body: (wire_body::Body, u64)) -> (u16, serde_json::Value) {
        let a = self
            .client
            .post(
                self.addr,
                Request {
                    path,
                    body: body.0,
                    length: body.1,
                    expect: None,
                    answer_limit: 1 << 20,
                    timeout: Some(Duration::from_secs(30)),
                },
            )
            .await
            .unwrap();
        (
            a.status,
            serde_json::from_slice(&a.body).unwrap_or_default(),
        )
    }

    /// `prepare-upload` of `files` (name, size, sha256).
    async fn prepare(&self, files: &[(&str, u64, Option<String>)]) -> (u16, serde_json::Value) {
        let mut map = serde_json::Map::new();
        for (i, (name, size, sha)) in files.iter().enumerate() {
            map.insert(
                i.to_string(),
                serde_json::json!({"id": i.to_string(), "fileName": name, "size": size,
                                   "fileType": "application/octet-stream", "sha256": sha}),
            );
        }
        let body = serde_json::json!({"info": self.info, "files": map});
        self.post(&format!("{}/prepare-upload", wire::API), json_body(&body))
            .await
    }

    /// `prepare` once the previous session has ended (409 until then: one
    /// session at a time).
    async fn prepare_next(&self, files: &[(&str, u64, Option<String>)]) -> serde_json::Value {
        let deadline = std::time::Instant::now() + common::STEP;
        loop {
            let (code, ans) = self.prepare(files).await;
            if code != 409 || std::time::Instant::now() > deadline {
                assert_eq!(code, 200, "{ans}");
                return ans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn upload(&self, session: &str, file: &str, token: &str, bytes: &[u8]) -> u16 {
        let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::Full::new(bytes::Bytes::from(bytes.to_vec())),
            |e| match e {},
        ));
        let path = format!(
            "{}/upload?sessionId={session}&fileId={file}&token={token}",
            wire::API
        );
        self.post(&path, (body, bytes.len() as u64)).await.0
    }
}

mod wire_body {
    pub(super) type Body = localstream_node::localsend::client::Body;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// No file under a final name, no partial left: only `allowed` in `dir`.
fn only(dir: &Path, allowed: &[&str]) {
    let ok = poll_until(common::STEP, || {
        names_in(dir).iter().all(|n| allowed.contains(&n.as_str()))
    });
    assert!(
        ok,
        "unexpected files in {}: {:?}",
        dir.display(),
        names_in(dir)
    );
}

fn err(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &std::process::Output, want: i32) {
    assert_eq!(out.status.code(), Some(want), "{}", err(out));
}

fn sha(bytes: &[u8]) -> String {
    wire::fingerprint_text(&wire::sha256(bytes)).to_lowercase()
}

#[test]
fn a_hostile_localsend_sender_is_refused_and_an_honest_one_served_after_it() {
    let rx = Node::new(Role::Receiver);
    let dir = rx.dir("in");
    let (mut listener, port) = start(&rx, &dir, &["--yes"]);
    let evil = Evil::new(port);
    let rt = runtime();
    rt.block_on(async {
        // Names that escape the folder or carry control characters: 400,
        // before anyone is asked.
        for name in [
            "../../evil.txt",
            "/etc/evil",
            "a/../../evil",
            "x\u{1b}[2J",
            "C:\\evil",
            "f.lspart",
        ] {
            let (code, body) = evil.prepare(&[(name, 3, None)]).await;
            assert_eq!(code, 400, "{name:?}: {body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("refused file name"),
                "{body}"
            );
        }
        // More bytes than announced: refused, nothing kept.
        let (code, ans) = evil.prepare(&[("liar.bin", 10, None)]).await;
        assert_eq!(code, 200, "{ans}");
        let (sid, token) = (
            ans["sessionId"].as_str().unwrap(),
            ans["files"]["0"].as_str().unwrap(),
        );
        assert_eq!(
            evil.upload(sid, "0", "wrong-token", b"0123456789").await,
            403
        );
        assert_eq!(evil.upload(sid, "0", token, &[7u8; 20]).await, 400);
        // Fewer bytes than announced, in a new session.
        let ans = evil.prepare_next(&[("short.bin", 10, None)]).await;
        let (sid, token) = (
            ans["sessionId"].as_str().unwrap(),
            ans["files"]["0"].as_str().unwrap(),
        );
        assert_eq!(evil.upload(sid, "0", token, b"12345").await, 400);
        // A hash that does not match what arrives.
        let ans = evil
            .prepare_next(&[("hash.bin", 5, Some(sha(b"other")))])
            .await;
        let (sid, token) = (
            ans["sessionId"].as_str().unwrap(),
            ans["files"]["0"].as_str().unwrap(),
        );
        assert_eq!(evil.upload(sid, "0", token, b"hello").await, 400);
        // A cancel for a session that is not its own, from its address: refused.
        let (code, _) = evil
            .post(
                &format!("{}/cancel?sessionId=nope", wire::API),
                (empty_body(), 0),
            )
            .await;
        assert_eq!(code, 403);
    });
    only(&dir, &[]);
    assert!(!dir.parent().unwrap().join("evil.txt").exists());
    // An honest sender: this `localstream send`, over LocalSend, with a folder.
    let tx = Node::new(Role::Sender);
    let a = tx.file("src", "a.bin", &common::random_bytes(7, 300_000));
    let sub = tx.dir("src/folder");
    std::fs::write(sub.join("b.txt"), b"nested").unwrap();
    // `--retry`: the last refused session may still hold the one place.
    let out = run(tx
        .cmd()
        .args(["send", "--no-discovery", "--retry=30", "--localsend-port"])
        .arg(port.to_string())
        .arg(format!("127.0.0.1:{port}"))
        .arg(&a)
        .arg(&sub));
    code(&out, 0);
    // (The refused sessions before it reported theirs.)
    listener.wait_line(|l| l.starts_with("received 2 files"));
    assert_eq!(
        std::fs::read(dir.join("a.bin")).unwrap(),
        std::fs::read(&a).unwrap()
    );
    assert_eq!(std::fs::read(dir.join("folder/b.txt")).unwrap(), b"nested");
    assert!(
        err(&out).contains("LocalSend has no verification code"),
        "{}",
        err(&out)
    );
    only(&dir, &["a.bin", "folder"]);
}

#[test]
fn a_pin_is_asked_for_and_wrong_ones_are_limited() {
    let rx = Node::new(Role::Receiver);
    let dir = rx.dir("in");
    let (_listener, port) = start(&rx, &dir, &["--yes", "--pin", "4321"]);
    let tx = Node::new(Role::Sender);
    let f = tx.file("src", "pinned.txt", b"pinned");
    let send = |pin: Option<&str>| {
        let mut cmd = tx.cmd();
        cmd.args(["send", "--no-discovery", "--localsend-port"])
            .arg(port.to_string());
        if let Some(p) = pin {
            cmd.args(["--pin", p]);
        }
        run(cmd.arg(format!("127.0.0.1:{port}")).arg(&f))
    };
    let out = send(None);
    code(&out, 1);
    assert!(
        err(&out).contains("asks for a PIN: give it with --pin"),
        "{}",
        err(&out)
    );
    code(&send(Some("4321")), 0);
    assert_eq!(std::fs::read(dir.join("pinned.txt")).unwrap(), b"pinned");
    let out = send(Some("0000"));
    code(&out, 1);
    assert!(err(&out).contains("refused the PIN"), "{}", err(&out));
    // A missing PIN is not a guess; this wrong one and four more fill the
    // source's five a minute.
    for _ in 0..4 {
        code(&send(Some("0000")), 1);
    }
    let out = send(Some("4321"));
    code(&out, 1);
    assert!(err(&out).contains("too many attempts"), "{}", err(&out));
}

#[test]
fn a_text_message_is_shown_escaped_and_saved() {
    let rx = Node::new(Role::Receiver);
    let dir = rx.dir("in");
    let (mut listener, port) = start(&rx, &dir, &["--yes"]);
    let tx = Node::new(Role::Sender);
    let out = run(tx
        .cmd()
        .args(["send", "--no-discovery", "--localsend-port"])
        .arg(port.to_string())
        .arg(format!("127.0.0.1:{port}"))
        .args(["--text", "hello \u{1b}[31mphone"]));
    code(&out, 0);
    listener.wait_line(|l| l.starts_with("message from "));
    let text = listener.wait_line(|_| true);
    assert!(
        text.contains("hello") && !text.contains('\u{1b}'),
        "{text:?}"
    );
    listener.wait_line(|l| l.starts_with("(saved as "));
    assert_eq!(
        std::fs::read(dir.join("message.txt")).unwrap(),
        "hello [31mphone".as_bytes()
    );
}

#[test]
fn a_listener_that_takes_trusted_peers_only_refuses_a_new_device() {
    let rx = Node::new(Role::Receiver);
    let dir = rx.dir("in");
    let (_listener, port) = start(&rx, &dir, &["--trusted-only"]);
    let tx = Node::new(Role::Sender);
    let f = tx.file("src", "x.txt", b"x");
    let out = run(tx
        .cmd()
        .args(["send", "--no-discovery", "--localsend-port"])
        .arg(port.to_string())
        .arg(format!("127.0.0.1:{port}"))
        .arg(&f));
    code(&out, 1);
    assert!(err(&out).contains("receiver refused: "), "{}", err(&out));
    assert!(
        err(&out).contains("accepts only peers it trusts"),
        "{}",
        err(&out)
    );
    only(&dir, &[]);
}
