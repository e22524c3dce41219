//! The web UI over plain HTTP (no browser; the browser tests are in
//! `tests/tests/ui.rs`): its security (token, cookie, Host, Origin, headers),
//! and the API driving real transfers between two nodes on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// A node running `ui --no-open`, and what its `ui.json` says.
struct Ui {
    listener: Listener,
    port: u16,
    token: String,
}

impl Ui {
    fn start(node: &Node, dir: &Path, extra: &[&str]) -> Ui {
        let mut cmd = node.cmd();
        cmd.args([
            "ui",
            "--no-open",
            "--no-discovery",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra);
        let listener = spawn_listener(cmd, dir);
        let control = node.home.join("ui.json");
        assert!(
            poll_until(STEP, || control.exists()),
            "no ui.json: {}",
            listener.stderr()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&control).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "ui.json must be private");
        }
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&control).unwrap()).unwrap();
        let base = c["base"].as_str().unwrap();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Ui {
            listener,
            port,
            token: c["token"].as_str().unwrap().to_owned(),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A signed-in browser session's cookie (`/?token=` exchanged).
    fn sign_in(&self) -> String {
        let r = self.request("GET", &format!("/?token={}", self.token), &[], "");
        assert_eq!(r.status, 303, "{r:?}");
        let cookie = r.header("set-cookie").expect("a cookie");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        cookie.split(';').next().unwrap().to_owned()
    }

    /// A request as the page makes it: our Host, our Origin, the cookie.
    fn page(&self, cookie: &str, method: &str, path: &str, body: &str) -> Answer {
        let origin = self.origin();
        self.request(
            method,
            path,
            &[("Cookie", cookie), ("Origin", &origin)],
            body,
        )
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let host = self.host();
        let mut all: Vec<(&str, &str)> = vec![("Host", &host)];
        all.extend_from_slice(headers);
        http(self.port, method, path, &all, body)
    }

    /// Opens the event stream, as a page does.
    fn events(&self, cookie: &str) -> Stream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /api/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
            self.host()
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Stream {
            reader: BufReader::new(s),
            line: String::new(),
        }
    }

    /// Reads a new event stream until a message satisfies `pred` (the first
    /// message, the whole picture, counts as one message per transfer, offer
    /// and question it holds).
    fn wait_event(
        &self,
        cookie: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.events(cookie).wait(&self.listener, pred)
    }
}

/// An open event stream.
struct Stream {
    reader: BufReader<TcpStream>,
    /// The line being read (kept across read timeouts).
    line: String,
}

impl Stream {
    /// Reads on until a message satisfies `pred`.
    fn wait(
        &mut self,
        listener: &Listener,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.reader.read_line(&mut self.line) {
                Ok(0) => break,
                Ok(_) => {}
                // A timeout: what was read so far stays in `line`.
                Err(_) => continue,
            }
            let line = std::mem::take(&mut self.line);
            if let Some(data) = line.trim_end().strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
            {
                for m in as_messages(v) {
                    if pred(&m) {
                        return m;
                    }
                    seen.push(m["kind"].to_string());
                }
            }
        }
        panic!(
            "no such event; saw {seen:?}\nlistener: {}",
            listener.stderr()
        );
    }
}

/// A `state` message as the messages that would have built it.
fn as_messages(v: serde_json::Value) -> Vec<serde_json::Value> {
    if v["kind"] != "state" {
        return vec![v];
    }
    let mut out = vec![v.clone()];
    for (list, kind) in [
        ("transfers", "transfer"),
        ("offers", "offer"),
        ("confirms", "confirm"),
    ] {
        for item in v[list].as_array().into_iter().flatten() {
            out.push(serde_json::json!({ "kind": kind, kind: item }));
        }
    }
    out
}

#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }
}

/// One HTTP/1.1 request (`Connection: close`) to 127.0.0.1:`port`.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

#[test]
fn without_the_token_or_from_another_site_nothing_is_served_or_changed() {
    let node = Node::new(Role::Receiver);
    let peer = Node::new(Role::Sender);
    let inbox = node.dir("inbox");
    // A peer in the store, to try to block.
    let l = node.listen(&inbox, &["--yes"]);
    assert_sent_ok(&peer.send(l.port, &[peer.file("f", "a.txt", b"hi")]), 1);
    drop(l);
    let peer_id = peer.id().id;
    let store_before = std::fs::read(node.store_path()).unwrap();
    let ui = Ui::start(&node, &inbox, &[]);
    let host = ui.host();

    // No session: the API refuses, the page says how to get in.
    let r = ui.request("GET", "/api/state", &[], "");
    assert_eq!(r.status, 403, "{r:?}");
    let r = ui.request("GET", "/", &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("localstream ui"), "{}", r.body);
    let r = ui.request("GET", "/?token=0123456789abcdef0123456789abcdef", &[], "");
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none(), "{r:?}");

    // A foreign Host (DNS rebinding) is refused even with the token.
    let r = http(
        ui.port,
        "GET",
        &format!("/?token={}", ui.token),
        &[("Host", &format!("rebind.example:{}", ui.port))],
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("set-cookie").is_none());

    let cookie = ui.sign_in();
    let ok = ui.request("GET", "/api/state", &[("Cookie", &cookie)], "");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json()["kind"], "state");
    // Strict headers on every answer, and no CORS.
    for r in [&ok, &ui.request("GET", "/api/state", &[], "")] {
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("access-control-allow-origin").is_none());
    }

    // State changes from another origin, or with no origin at all, are refused.
    let block = format!("/api/peers/{peer_id}/block");
    let setting = r#"{"key":"name","value":"pwned"}"#;
    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![("Cookie", &cookie), ("Origin", "http://evil.example")],
        vec![("Cookie", &cookie), ("Origin", "null")],
        vec![("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
        vec![("Cookie", &cookie)],
        vec![("Origin", "http://127.0.0.1")],
    ];
    for headers in &attempts {
        for (path, body) in [(block.as_str(), ""), ("/api/settings", setting)] {
            let r = ui.request("POST", path, headers, body);
            assert_eq!(r.status, 403, "{path} with {headers:?}: {r:?}");
        }
    }
    // The event stream too.
    let r = ui.request(
        "GET",
        "/api/events",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(r.status, 403);
    // Nothing changed.
    assert_eq!(std::fs::read(node.store_path()).unwrap(), store_before);
    assert!(!node.home.join("config.toml").exists());
    let _ = host;

    // Our own page may.
    let r = ui.page(&cookie, "POST", &block, "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["peer"]["trust"], "blocked");
    let stored = text(&std::fs::read(node.store_path()).unwrap());
    assert!(stored.contains("\"blocked\""), "{stored}");
    // Settings: set, then back to the default; nonsense is a clear error.
    let config = node.home.join("config.toml");
    let r = ui.page(
        &cookie,
        "POST",
        "/api/settings",
        r#"{"key":"compress","value":"off"}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("compress = \"off\"")
    );
    let r = ui.page(
        &cookie,
        "POST",
        "/api/settings",
        r#"{"key":"compress","value":null}"#,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains("compress")
    );
    let r = ui.page(
        &cookie,
        "POST",
        "/api/settings",
        r#"{"key":"consent","value":"maybe"}"#,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("maybe"),
        "{r:?}"
    );
    let r = ui.page(&cookie, "POST", "/api/settings", "not json");
    assert!(r.status >= 400 && r.status < 500, "{r:?}");
    assert!(r.json()["error"].is_string(), "{r:?}");
}

#[test]
fn files_dropped_in_the_page_reach_the_peer_and_offers_are_answered_in_it() {
    let ui_node = Node::new(Role::Receiver);
    let other = Node::new(Role::Sender);
    let inbox = ui_node.dir("inbox");
    let ui = Ui::start(&ui_node, &inbox, &[]);
    let cookie = ui.sign_in();

    // Upload two files (one in a folder) and send them to a listener.
    let theirs = other.dir("inbox");
    let listener = other.listen(&theirs, &["--yes"]);
    let r = ui.page(&cookie, "POST", "/api/uploads", "");
    assert_eq!(r.status, 200, "{r:?}");
    let upload = r.json()["upload"].as_str().unwrap().to_owned();
    let big = random_bytes(7, 3 * 1024 * 1024 + 17);
    for (path, bytes) in [
        ("notes.txt", b"dropped in a browser".to_vec()),
        ("photos/big.bin", big.clone()),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", ui.port)).unwrap();
        let q = path.replace('/', "%2F");
        write!(
            s,
            "PUT /api/uploads/{upload}?path={q} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nOrigin: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            ui.host(),
            ui.origin(),
            bytes.len()
        )
        .unwrap();
        s.write_all(&bytes).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
    // A hostile path is refused.
    let r = ui.page(
        &cookie,
        "PUT",
        &format!("/api/uploads/{upload}?path=..%2Fescape"),
        "x",
    );
    assert_eq!(r.status, 400, "{r:?}");

    let body = format!(
        r#"{{"peer":"127.0.0.1:{}","upload":"{upload}"}}"#,
        listener.port
    );
    let r = ui.page(&cookie, "POST", "/api/send", &body);
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.json()["transfer"].as_u64().unwrap();
    // A first contact: the page is asked to compare the code.
    let confirm = ui.wait_event(&cookie, |v| v["kind"] == "confirm");
    assert_eq!(confirm["confirm"]["transfer"], id);
    let code = confirm["confirm"]["code"].as_str().unwrap().to_owned();
    assert!(!code.is_empty());
    let q = confirm["confirm"]["question"].as_u64().unwrap();
    let r = ui.page(
        &cookie,
        "POST",
        &format!("/api/confirms/{q}"),
        r#"{"yes":true}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let done = ui.wait_event(&cookie, |v| {
        v["kind"] == "transfer" && v["transfer"]["id"] == id && v["transfer"]["ended"].is_u64()
    });
    assert_eq!(done["transfer"]["state"], "done", "{done}");
    assert_eq!(done["transfer"]["moved"], done["transfer"]["total"]);
    assert_content(&theirs.join("notes.txt"), b"dropped in a browser");
    assert_content(&theirs.join("photos/big.bin"), &big);
    // The staging copy is gone once sent.
    assert!(poll_until(STEP, || names_in(
        &ui_node.home.join("ui-uploads")
    )
    .is_empty()));

    // Now an offer to the UI node: shown, then accepted in the page.
    let file = other.file("out", "report.pdf", b"%PDF for the page");
    let mut send = other.send_cmd(ui.listener.port, &[&file]);
    let sending = std::thread::spawn(move || run(&mut send));
    let offer = ui.wait_event(&cookie, |v| v["kind"] == "offer");
    let o = &offer["offer"];
    assert_eq!(o["entries"][0]["path"], "report.pdf");
    assert_eq!(o["files"], 1);
    assert_eq!(o["peer"]["name"], "sender");
    assert!(o["code"].as_str().is_some_and(|c| !c.is_empty()), "{o}");
    let offer_id = o["offer_id"].as_u64().unwrap();
    let r = ui.page(
        &cookie,
        "POST",
        &format!("/api/offers/{offer_id}"),
        r#"{"decision":"accept"}"#,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_sent_ok(&sending.join().unwrap(), 1);
    assert_content(&inbox.join("report.pdf"), b"%PDF for the page");
    // Answered: the offer no longer waits.
    let r = ui.page(
        &cookie,
        "POST",
        &format!("/api/offers/{offer_id}"),
        r#"{"decision":"reject"}"#,
    );
    assert_eq!(r.status, 409);

    // And a rejected one writes nothing; the sender hears it was declined.
    let file = other.file("out", "unwanted.bin", b"no");
    let mut send = other.send_cmd(ui.listener.port, &[&file]);
    let sending = std::thread::spawn(move || run(&mut send));
    let offer = ui.wait_event(&cookie, |v| {
        v["kind"] == "offer" && v["offer"]["entries"][0]["path"] == "unwanted.bin"
    });
    let offer_id = offer["offer"]["offer_id"].as_u64().unwrap();
    let r = ui.page(
        &cookie,
        "POST",
        &format!("/api/offers/{offer_id}"),
        r#"{"decision":"reject"}"#,
    );
    assert_eq!(r.status, 204);
    let out = sending.join().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("declined"),
        "{}",
        text(&out.stderr)
    );
    assert!(!inbox.join("unwanted.bin").exists());
}

#[test]
fn ui_opens_the_running_node_with_the_chosen_paths() {
    let node = Node::new(Role::Receiver);
    let inbox = node.dir("inbox");
    let ui = Ui::start(&node, &inbox, &[]);
    let cookie = ui.sign_in();
    let chosen = node.file("pick", "holiday.jpg", b"jpeg");
    let out = run(node.cmd().args(["ui", "--no-open", "--send"]).arg(&chosen));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("already runs"), "{said}");
    assert!(said.contains(&format!("/?token={}", ui.token)), "{said}");
    let state = ui
        .request("GET", "/api/state", &[("Cookie", &cookie)], "")
        .json();
    let want = std::fs::canonicalize(&chosen).unwrap();
    assert_eq!(state["chosen"][0], want.display().to_string(), "{state}");
    // A page cannot choose paths itself (only the token holder can).
    let body = r#"{"paths":["/etc/passwd"]}"#;
    let r = ui.page(&cookie, "POST", "/api/choose", body);
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn a_ui_on_a_lan_address_needs_a_password() {
    let node = Node::new(Role::Receiver);
    let inbox = node.dir("inbox");
    let out = run(node
        .cmd()
        .args([
            "ui",
            "--no-open",
            "--no-discovery",
            "--port",
            "0",
            "--ui-bind",
            "0.0.0.0",
        ])
        .arg("--dir")
        .arg(&inbox));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ui-password"),
        "{}",
        text(&out.stderr)
    );
    // Short passwords are refused; the stored value is a hash, never the password.
    let mut set = node.cmd();
    set.args(["config", "set", "ui-password", "-"])
        .stdin(std::process::Stdio::piped());
    let mut child = set
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"open sesame 42\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let settings = std::fs::read_to_string(node.home.join("config.toml")).unwrap();
    assert!(settings.contains("$argon2"), "{settings}");
    assert!(!settings.contains("open sesame"), "{settings}");
    let out = run(node.cmd().args(["config", "set", "ui-password", "short"]));
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&run(node.cmd().args(["config", "show"])).stdout);
    assert!(shown.contains("ui-password = (set)"), "{shown}");

    // With it, the UI starts on every address, says so loudly, and asks for it.
    let ui = Ui::start(&node, &inbox, &["--ui-bind", "0.0.0.0"]);
    ui.listener.wait_stderr("reachable from the network");
    let r = ui.request("GET", "/", &[], "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("login.js"), "the login page: {}", r.body);
    let origin = ui.origin();
    let login = |password: &str| {
        let body = format!(r#"{{"password":"{password}"}}"#);
        ui.request("POST", "/api/login", &[("Origin", &origin)], &body)
    };
    let r = login("open sesame 42");
    assert_eq!(r.status, 204, "{r:?}");
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        ui.request("GET", "/api/state", &[("Cookie", &cookie)], "")
            .status,
        200
    );
    // Guessing is cut short per source (and overall), but the token still works.
    for _ in 0..5 {
        assert_eq!(login("wrong guess").status, 401);
    }
    assert_eq!(login("open sesame 42").status, 429);
    ui.sign_in();
}

#[test]
fn a_transfer_is_cancelled_from_the_page_either_way() {
    let ui_node = Node::new(Role::Receiver);
    let other = Node::new(Role::Sender);
    let inbox = ui_node.dir("inbox");
    let ui = Ui::start(&ui_node, &inbox, &["--yes"]);
    let cookie = ui.sign_in();
    let running = |v: &serde_json::Value, side: &str| {
        v["kind"] == "transfer"
            && v["transfer"]["side"] == side
            && v["transfer"]["state"] == "running"
            && v["transfer"]["moved"].as_u64().unwrap_or(0) > 0
    };

    // Incoming: frozen mid-file by a relay, then cancelled in the page.
    let relay = Relay::start(ui.listener.port, Some(2 << 20));
    let big = other.file("out", "big.bin", &random_bytes(3, 8 << 20));
    let mut send = other.send_cmd(relay.port, &[&big]);
    let sending = std::thread::spawn(move || run(&mut send));
    let t = ui.wait_event(&cookie, |v| running(v, "receive"));
    let id = t["transfer"]["id"].as_u64().unwrap();
    let r = ui.page(&cookie, "POST", &format!("/api/transfers/{id}/cancel"), "");
    assert_eq!(r.status, 204, "{r:?}");
    let t = ui.wait_event(&cookie, |v| {
        v["kind"] == "transfer" && v["transfer"]["id"] == id && v["transfer"]["ended"].is_u64()
    });
    assert_eq!(t["transfer"]["state"], "cancelled", "{t}");
    assert_ne!(sending.join().unwrap().status.code(), Some(0));
    assert!(!inbox.join("big.bin").exists());
    assert_eq!(
        ui.page(&cookie, "POST", &format!("/api/transfers/{id}/cancel"), "")
            .status,
        404
    );
    drop(relay);

    // Outgoing: the page's own send, frozen the same way, then cancelled.
    let theirs = other.dir("inbox");
    let listener = other.listen(&theirs, &["--yes"]);
    let relay = Relay::start(listener.port, Some(2 << 20));
    let r = ui.page(&cookie, "POST", "/api/uploads", "");
    let upload = r.json()["upload"].as_str().unwrap().to_owned();
    let bytes = random_bytes(4, 8 << 20);
    let mut s = TcpStream::connect(("127.0.0.1", ui.port)).unwrap();
    write!(
        s,
        "PUT /api/uploads/{upload}?path=out.bin HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nOrigin: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ui.host(),
        ui.origin(),
        bytes.len()
    )
    .unwrap();
    s.write_all(&bytes).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    // Pinned already (its offer above was accepted): no first-contact question.
    let body = format!(
        r#"{{"peer":"127.0.0.1:{}","upload":"{upload}"}}"#,
        relay.port
    );
    let r = ui.page(&cookie, "POST", "/api/send", &body);
    let id = r.json()["transfer"].as_u64().unwrap();
    ui.wait_event(&cookie, |v| running(v, "send") && v["transfer"]["id"] == id);
    let r = ui.page(&cookie, "POST", &format!("/api/transfers/{id}/cancel"), "");
    assert_eq!(r.status, 204, "{r:?}");
    let t = ui.wait_event(&cookie, |v| {
        v["kind"] == "transfer" && v["transfer"]["id"] == id && v["transfer"]["ended"].is_u64()
    });
    assert_eq!(t["transfer"]["state"], "cancelled", "{t}");
    assert!(!theirs.join("out.bin").exists());
}

#[test]
fn an_offer_whose_sender_went_away_leaves_the_page() {
    let ui_node = Node::new(Role::Receiver);
    let other = Node::new(Role::Sender);
    let inbox = ui_node.dir("inbox");
    let ui = Ui::start(&ui_node, &inbox, &[]);
    let cookie = ui.sign_in();
    let file = other.file("out", "later.txt", b"never mind");
    let mut sender = other
        .send_cmd(ui.listener.port, &[&file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // One stream throughout, as a page has: the closing is not missed.
    let mut events = ui.events(&cookie);
    let offer = events.wait(&ui.listener, |v| v["kind"] == "offer");
    let offer_id = offer["offer"]["offer_id"].as_u64().unwrap();
    sender.kill().unwrap();
    sender.wait().unwrap();
    let closed = events.wait(&ui.listener, |v| {
        v["kind"] == "offer_closed" && v["offer_id"] == offer_id
    });
    assert_eq!(closed["reason"], "withdrawn", "{closed}");
    let state = ui
        .request("GET", "/api/state", &[("Cookie", &cookie)], "")
        .json();
    assert_eq!(state["offers"], serde_json::json!([]), "{state}");
    let r = ui.page(
        &cookie,
        "POST",
        &format!("/api/offers/{offer_id}"),
        r#"{"decision":"accept"}"#,
    );
    assert_eq!(r.status, 409);
    assert!(!inbox.join("later.txt").exists());
}

#[test]
fn integrate_writes_the_menu_entry_and_file_manager_actions_and_removes_them() {
    let node = Node::fresh();
    let data = node.dir("share");
    let out = run(node
        .cmd()
        .env("XDG_DATA_HOME", &data)
        .args(["integrate", "install"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let exe = std::fs::canonicalize(bin()).unwrap();
    let menu = std::fs::read_to_string(data.join("applications/localstream.desktop")).unwrap();
    assert!(
        menu.contains(&format!("Exec={} ui\n", exe.display())),
        "{menu}"
    );
    let dolphin =
        std::fs::read_to_string(data.join("kio/servicemenus/localstream-send.desktop")).unwrap();
    assert!(dolphin.contains("ui --send %F"), "{dolphin}");
    let script = data.join("nautilus/scripts/Send with LocalStream");
    assert!(
        std::fs::read_to_string(&script)
            .unwrap()
            .contains("ui --send \"$@\"")
    );
    assert!(
        data.join("nemo/actions/localstream-send.nemo_action")
            .exists()
    );
    assert!(
        data.join("icons/hicolor/scalable/apps/localstream.svg")
            .exists()
    );
    let out = run(node
        .cmd()
        .env("XDG_DATA_HOME", &data)
        .args(["integrate", "uninstall"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("removed "))
            .count(),
        5
    );
    assert!(!script.exists());
    assert!(!data.join("applications/localstream.desktop").exists());
}

#[test]
fn a_listener_runs_no_ui_with_no_ui_or_the_setting_and_still_receives() {
    let p = Pair::new();
    let control = p.receiver.home.join("ui.json");
    let f = p.sender.file("out", "a.txt", b"no ui here\n");
    // By default every listener serves its UI on loopback (and says where).
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    assert!(poll_until(STEP, || control.exists()), "{}", l.stderr());
    drop(l);
    std::fs::remove_file(&control).unwrap();

    // --no-ui: none is started, before or after a transfer.
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--no-ui"]);
    assert!(!control.exists(), "{}", l.stderr());
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_content(&p.inbox.join("a.txt"), b"no ui here\n");
    assert!(!control.exists(), "{}", l.stderr());
    drop(l);

    // The setting does the same; --ui still asks for one, for this run.
    let out = run(p.receiver.cmd().args(["config", "set", "ui", "off"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = run(p.receiver.cmd().args(["config", "show"]));
    assert!(
        text(&shown.stdout).contains("ui = \"off\""),
        "{}",
        text(&shown.stdout)
    );
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    assert!(!control.exists(), "{}", l.stderr());
    drop(l);
    let l = p.receiver.listen(&p.inbox, &["--yes", "--ui"]);
    assert!(poll_until(STEP, || control.exists()), "{}", l.stderr());
    drop(l);

    // Contradictions are usage errors.
    let out = run(p.receiver.cmd().args(["listen", "--no-ui", "--ui"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--no-ui"),
        "{}",
        text(&out.stderr)
    );
    let out = run(p.receiver.cmd().args(["config", "set", "ui", "maybe"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ui"), "{}", text(&out.stderr));
}
