//! Trust on first use, end to end: the peer stores both sides keep, the
//! verification codes, consent by trust, refusal of a changed key (and
//! `forget`), concurrent writers of one store, a corrupt store, and `block`.
//!
//! Real `localstream` processes on 127.0.0.1 with `--no-discovery`; nothing
//! sleeps to wait: conditions are polled with a deadline.

#![allow(clippy::unwrap_used)]

use super::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use common::{
    IdInfo, Node, Pair, Role, STEP, assert_content, assert_sent_ok, names_in, poll_until,
    random_bytes, text,
};
use serde_json::Value;

impl Pair {
    /// One transfer to a `listen --yes --once`, checked.
    fn first_transfer(&self, name: &str, len: usize) -> Done {
        let content = random_bytes(len as u64 ^ 0x7755, len);
        let f = self.sender.file("out", name, &content);
        let mut l = self.receiver.listen(&self.inbox, &["--yes", "--once"]);
        let out = self.sender.send(l.port, &[&f]);
        assert_sent_ok(&out, 1);
        l.wait_received();
        assert_eq!(l.wait_exit(), Some(0), "listener stderr:\n{}", l.stderr());
        assert_content(&self.inbox.join(name), &content);
        Done {
            content,
            sender_err: text(&out.stderr),
            listener_err: l.stderr(),
            port: l.port,
        }
    }
}

/// What [`Pair::first_transfer`] did.
struct Done {
    /// The file's content.
    content: Vec<u8>,
    /// The sender's stderr.
    sender_err: String,
    /// The listener's stderr.
    listener_err: String,
    /// The port the listener listened on.
    port: u16,
}

/// Asserts that a command failed with exit status 1 and printed nothing on
/// stdout; returns its stderr.
fn assert_failed(out: &Output, what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit 1 expected\nstdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).is_empty(),
        "{what}: nothing on stdout expected: {:?}",
        text(&out.stdout)
    );
    stderr
}

/// Runs a store command (`trust`, `forget`, `block`, `sessions`) and asserts
/// it succeeded; returns its stdout.
fn store_cmd(node: &Node, args: &[&str]) -> String {
    let out = common::run(node.cmd().args(args));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?} failed\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The first 8 hex digits of a node id (what the node calls its short id).
fn short(id: &IdInfo) -> String {
    id.id.replace('-', "")[..8].to_owned()
}

/// The node's `peers.json`, parsed (fails the test unless it is a schema 1 store).
fn store(node: &Node) -> Value {
    let path = node.store_path();
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("{} is not valid JSON ({e}):\n{raw}", path.display()));
    assert_eq!(v["schema"], 1, "{raw}");
    assert!(v["peers"].is_array(), "{raw}");
    v
}

/// The store's entry for node id `id`.
fn peer<'a>(store: &'a Value, id: &str) -> &'a Value {
    store["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == id)
        .unwrap_or_else(|| panic!("no peer {id} in store:\n{store:#}"))
}

/// Asserts that the node's store has no entry for node id `id` (or that
/// the node has no store at all).
fn assert_no_entry(node: &Node, id: &str) {
    if !node.store_path().exists() {
        return;
    }
    let v = store(node);
    assert!(
        !v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == id),
        "no entry expected for {id} in {}:\n{v:#}",
        node.store_path().display()
    );
}

fn sessions(peer: &Value) -> &Vec<Value> {
    peer["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {peer:#}"))
}

/// Polls the node's store until `cond` holds; returns it. Fails with the
/// store's content otherwise.
fn wait_store(node: &Node, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = poll_until(STEP, || {
        if !node.store_path().exists() {
            return false;
        }
        last = store(node);
        cond(&last)
    });
    assert!(ok, "{what}: the store never got there:\n{last:#}");
    last
}

/// The verification codes printed in `stderr`, in order (`DDD DDD`), from
/// both the first-contact line and the later-session line.
fn codes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let lower = l.to_lowercase();
            let i = lower.find("verification code ")?;
            let rest = &l[i + "verification code ".len()..];
            // 12 digits in three groups of four: "0421 9377 0615".
            let code = rest.get(..14)?;
            let b = code.as_bytes();
            let valid = b[4] == b' '
                && b[9] == b' '
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || i == 9 || c.is_ascii_digit());
            assert!(valid, "malformed verification code in {l:?}");
            Some(code.to_owned())
        })
        .collect()
}

/// The heading of each verification code block in `stderr`: the line
/// before the code, which names the peer ("first contact with ..." or
/// "NAME (ID) [FINGERPRINT] (known)").
fn code_lines(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[1].to_lowercase().contains("verification code "))
        .map(|w| w[0].trim_end_matches('.'))
        .collect()
}

/// `text` with every run of whitespace made one space: messages are wrapped
/// to the terminal, so a phrase may span lines.
fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks one session record.
fn assert_session(s: &Value, direction: &str, outcome: &str, files: u64, bytes: u64) {
    assert_eq!(s["direction"], direction, "{s:#}");
    assert_eq!(s["outcome"], outcome, "{s:#}");
    assert_eq!(s["files"], files, "{s:#}");
    assert_eq!(s["bytes"], bytes, "{s:#}");
    let started = s["started"].as_u64().unwrap_or_else(|| panic!("{s:#}"));
    let ended = s["ended"]
        .as_u64()
        .unwrap_or_else(|| panic!("not ended: {s:#}"));
    assert!(started > 0 && ended >= started, "{s:#}");
    let id = s["id"].as_str().unwrap_or_else(|| panic!("{s:#}"));
    assert!(
        !id.is_empty() && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{s:#}"
    );
}

/// Files in `dir` other than those named (partial files included).
fn others_in(dir: &Path, expected: &[&str]) -> Vec<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

#[test]
fn first_transfer_pins_both_sides_and_records_the_session() {
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());
    assert!(!p.sender.store_path().exists() && !p.receiver.store_path().exists());
    let done = p.first_transfer("first.bin", 300_001);
    let size = done.content.len() as u64;

    let ss = store(&p.sender);
    let rs = store(&p.receiver);
    assert_eq!(ss["peers"].as_array().unwrap().len(), 1, "{ss:#}");
    assert_eq!(rs["peers"].as_array().unwrap().len(), 1, "{rs:#}");

    // The sender pinned the receiver, the receiver pinned the sender.
    let sp = peer(&ss, &r_id.id);
    let rp = peer(&rs, &s_id.id);
    // The sender keeps where the receiver listens; the receiver keeps no
    // address for the sender (its source port is not where it listens).
    let listening = format!("127.0.0.1:{}", done.port);
    assert_eq!(
        sp["addresses"],
        serde_json::json!([listening]),
        "sender's entry: {sp:#}"
    );
    assert_eq!(
        rp["addresses"],
        serde_json::json!([]),
        "receiver's entry: {rp:#}"
    );
    for (entry, other, role) in [(sp, &r_id, "receiver"), (rp, &s_id, "sender")] {
        assert_eq!(
            entry["fingerprint"],
            other.sha256.as_str(),
            "{role}: {entry:#}"
        );
        assert_eq!(entry["trust"], "known", "{role}: {entry:#}");
        assert!(
            entry["names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == other.name.as_str()),
            "{role}: {entry:#}"
        );
        let (first, last) = (
            entry["first_seen"].as_u64().unwrap(),
            entry["last_seen"].as_u64().unwrap(),
        );
        assert!(first > 0 && last >= first, "{role}: {entry:#}");
        assert_eq!(sessions(entry).len(), 1, "{role}: {entry:#}");
    }
    let (s_sess, r_sess) = (&sessions(sp)[0], &sessions(rp)[0]);
    assert_session(s_sess, "send", "ok", 1, size);
    assert_session(r_sess, "receive", "ok", 1, size);
    assert_eq!(
        s_sess["id"], r_sess["id"],
        "one session, one id on both sides"
    );

    // No secret in either store: no key material, and private to the user.
    for node in [&p.sender, &p.receiver] {
        let raw = std::fs::read_to_string(node.store_path()).unwrap();
        assert!(!raw.contains("PRIVATE") && !raw.contains("BEGIN"), "{raw}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(node.store_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "peers.json mode {mode:o}");
        }
    }
}

#[test]
fn codes_match_on_both_sides_and_differ_across_sessions() {
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());
    let (one, two) = (
        p.first_transfer("one.txt", 10),
        p.first_transfer("two.txt", 20),
    );
    let (s1, l1) = (one.sender_err, one.listener_err);
    let (s2, l2) = (two.sender_err, two.listener_err);

    let (s1c, l1c, s2c, l2c) = (codes(&s1), codes(&l1), codes(&s2), codes(&l2));
    for (c, side) in [(&s1c, &s1), (&l1c, &l1), (&s2c, &s2), (&l2c, &l2)] {
        assert_eq!(c.len(), 1, "one code per session and side:\n{side}");
    }
    assert_eq!(s1c, l1c, "first session\nsender:\n{s1}\nlistener:\n{l1}");
    assert_eq!(s2c, l2c, "second session\nsender:\n{s2}\nlistener:\n{l2}");
    assert_ne!(s1c, s2c, "the code must differ per session");

    // First contact says so, later ones show the trust state; each names the peer.
    let line = |s: &str| code_lines(s)[0].to_owned();
    assert!(line(&s1).starts_with("first contact with "), "{s1}");
    assert!(line(&l1).starts_with("first contact with "), "{l1}");
    assert!(!line(&s2).starts_with("first contact"), "{s2}");
    assert!(line(&s2).ends_with(" (known)"), "{s2}");
    assert!(line(&l2).ends_with(" (known)"), "{l2}");
    for (s, who) in [(&s1, &r_id), (&s2, &r_id), (&l1, &s_id), (&l2, &s_id)] {
        let tag = format!("({}) [{}]", short(who), who.fingerprint);
        assert!(line(s).contains(&tag), "{tag} expected in {:?}", line(s));
    }
}

#[test]
fn trusted_peer_needs_no_prompt_and_unknown_peers_are_refused_with_a_reason() {
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());
    p.first_transfer("first.txt", 100);

    // Both sides verify each other's code and say so.
    let out = store_cmd(&p.receiver, &["trust", &short(&s_id)]);
    assert!(
        out.starts_with(&format!("trusted: {} ({})", s_id.name, s_id.id)),
        "{out}"
    );
    assert_eq!(peer(&store(&p.receiver), &s_id.id)["trust"], "trusted");
    store_cmd(&p.sender, &["trust", &short(&r_id)]);
    assert_eq!(peer(&store(&p.sender), &r_id.id)["trust"], "trusted");

    // No --yes, no terminal: trusted peers only. A node never seen before is
    // refused, and told why.
    let mut l = p.receiver.listen(&p.inbox, &["--once"]);
    let third = Node::new(Role::Other);
    let t_id = third.id();
    assert_ne!(t_id.id, s_id.id);
    let f3 = third.file("out", "intruder.txt", b"let me in");
    let stderr = assert_failed(&third.send(l.port, &[&f3]), "unknown peer, no terminal");
    assert!(stderr.contains("accepts only peers it trusts"), "{stderr}");
    assert!(stderr.contains("no terminal"), "{stderr}");
    assert!(
        !common::has_word(&stderr, "406"),
        "codes stay out of sentences: {stderr}"
    );
    assert!(
        stderr.contains(&format!("localstream trust {}", short(&t_id))),
        "{stderr}"
    );
    // A refusal by policy is not a transfer: `--once` keeps listening, and
    // the stranger left no trace in either store.
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert_no_entry(&p.receiver, &t_id.id);
    assert_no_entry(&third, &r_id.id);

    // The trusted sender gets in without a prompt, which ends `--once`.
    let second = random_bytes(3, 70_000);
    let f = p.sender.file("out", "second.bin", &second);
    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    assert_content(&p.inbox.join("second.bin"), &second);
    assert!(
        code_lines(&text(&out.stderr)).is_empty(),
        "a trusted receiver needs no code on the sender:\n{}",
        text(&out.stderr)
    );

    // The listener showed no code for the trusted sender (no prompt), one
    // for the stranger, and (now that it has exited) still has no entry for
    // the stranger, only the trusted sender with two received sessions.
    let lerr = l.stderr();
    assert!(
        code_lines(&lerr).is_empty(),
        "no code expected: the trusted sender is not asked about, the stranger refused:\n{lerr}"
    );
    assert!(
        lerr.lines()
            .any(|l| l.starts_with("refused") && l.contains(&short(&t_id))),
        "one refusal line names the stranger:\n{lerr}"
    );
    assert_no_entry(&p.receiver, &t_id.id);
    let rs = store(&p.receiver);
    assert_eq!(rs["peers"].as_array().unwrap().len(), 1, "{rs:#}");
    let rp = peer(&rs, &s_id.id);
    assert_eq!(rp["trust"], "trusted", "{rp:#}");
    let list = sessions(rp);
    assert_eq!(list.len(), 2, "{rp:#}");
    assert_session(&list[1], "receive", "ok", 1, second.len() as u64);
    assert_eq!(
        others_in(&p.inbox, &["first.txt", "second.bin"]),
        Vec::<String>::new()
    );
    drop(l);

    // --trusted-only: the stranger (still never met: a refusal pins nothing)
    // is refused with the reason and `--once` keeps listening; the trusted
    // sender gets in and ends it.
    let mut l = p.receiver.listen(&p.inbox, &["--trusted-only", "--once"]);
    let stderr = assert_failed(&third.send(l.port, &[&f3]), "--trusted-only");
    assert!(stderr.contains("accepts only peers it trusts"), "{stderr}");
    assert!(stderr.contains("--trusted-only"), "{stderr}");
    assert!(!stderr.contains("(409 "), "words only: {stderr}");
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert_no_entry(&p.receiver, &t_id.id);
    let f4 = p.sender.file("out", "third.txt", b"trusted again");
    assert_sent_ok(&p.sender.send(l.port, &[&f4]), 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    assert_content(&p.inbox.join("third.txt"), b"trusted again");
    assert_eq!(
        others_in(&p.inbox, &["first.txt", "second.bin", "third.txt"]),
        Vec::<String>::new()
    );
    assert_no_entry(&p.receiver, &t_id.id);
    assert_no_entry(&third, &r_id.id);
}

/// With `--json`, a refusal by policy names the node refused.
#[test]
fn a_refusal_in_the_listeners_json_names_the_node_refused() {
    let p = Pair::new();
    let s_id = p.sender.id();
    let mut l = p
        .receiver
        .listen(&p.inbox, &["--trusted-only", "--once", "--json"]);
    let f = p.sender.file("out", "hello.txt", b"hello");
    assert_failed(
        &p.sender.send(l.port, &[&f]),
        "--trusted-only, first contact",
    );
    let line = l.wait_line(|l| l.starts_with(r#"{"event":"refused""#));
    let refused: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(refused["peer"]["name"], "sender", "{line}");
    assert_eq!(refused["peer"]["id"], s_id.id.as_str(), "{line}");
    assert!(refused["status"].is_u64(), "{line}");
    assert!(names_in(&p.inbox).is_empty());
}

#[test]
fn trusted_only_refuses_a_never_seen_peer_and_the_sender_says_why() {
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());

    // The receiver already trusts another node (met once, then verified).
    let friend = Node::new(Role::Other);
    let f_id = friend.id();
    assert_ne!(f_id.id, s_id.id);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let hi = friend.file("out", "hi.txt", b"hi");
    assert_sent_ok(&friend.send(l.port, &[&hi]), 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    store_cmd(&p.receiver, &["trust", &short(&f_id)]);
    drop(l);

    let mut l = p.receiver.listen(&p.inbox, &["--trusted-only", "--once"]);
    let f = p.sender.file("out", "hello.txt", b"hello");
    let stderr = assert_failed(
        &p.sender.send(l.port, &[&f]),
        "--trusted-only, first contact",
    );
    let last = stderr.lines().last().unwrap_or_default();
    // Refused right after the handshake, before the listener signed anything:
    // a plaintext alert, shown as unauthenticated.
    assert!(
        last.starts_with("localstream: the peer (or someone on the path"),
        "{stderr}"
    );
    assert!(last.contains("accepts only peers it trusts"), "{stderr}");
    assert!(
        last.contains("(--trusted-only)") && !last.contains("(409 "),
        "{stderr}"
    );
    // A stranger is not pinned, so `trust` alone cannot let it in: both
    // sides say what can.
    assert!(
        last.contains(
            "has never met this node; its user can let this node in by accepting one \
             transfer from it without --trusted-only"
        ),
        "{stderr}"
    );
    l.wait_stderr("then `localstream trust ");
    let refused = l.stderr();
    assert!(
        refused.contains(&format!(
            "refused sender's offer: never met here, so not trusted (--trusted-only; to let it \
             in, accept one transfer from it with `localstream listen` (or `--ui`), comparing \
             the codes, then `localstream trust {}`)",
            short(&s_id)
        )),
        "{refused}"
    );
    let trust = common::run(p.receiver.cmd().args(["trust", &short(&s_id)]));
    assert_eq!(trust.status.code(), Some(1), "indeed nothing to trust yet");
    // A refusal by policy does not end `--once`.
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert_eq!(names_in(&p.inbox), ["hi.txt"]);
    // Nothing written before consent: the receiver did not pin the
    // stranger, and the refused sender did not pin the receiver.
    assert_no_entry(&p.receiver, &s_id.id);
    assert_no_entry(&p.sender, &r_id.id);

    // The trusted node gets in, and that ends `--once`.
    let f2 = friend.file("out", "again.txt", b"trusted");
    assert_sent_ok(&friend.send(l.port, &[&f2]), 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    assert_content(&p.inbox.join("again.txt"), b"trusted");
    assert_eq!(names_in(&p.inbox), ["again.txt", "hi.txt"]);

    // Settled (the listener has exited): still no trace of the stranger.
    assert_no_entry(&p.receiver, &s_id.id);
    let rs = store(&p.receiver);
    assert_eq!(rs["peers"].as_array().unwrap().len(), 1, "{rs:#}");
    let fp = peer(&rs, &f_id.id);
    assert_eq!(fp["trust"], "trusted", "{fp:#}");
    assert_eq!(sessions(fp).len(), 2, "{fp:#}");
    assert_session(&sessions(fp)[1], "receive", "ok", 1, 7);
    assert_no_entry(&p.sender, &r_id.id);
}

#[test]
fn connecting_with_a_claimed_id_takes_no_pin_over() {
    let p = Pair::new();
    let (v_id, r_id) = (p.sender.id(), p.receiver.id());
    // A stranger claiming the genuine sender's node id (and name) with its
    // own key; the receiver has never met either.
    let stranger = p.sender.with_key_of(Role::Other);
    let x_id = stranger.id();
    // Ids are bound to keys: copying node.json claims the name, never the id.
    assert_ne!(x_id.id, v_id.id);
    assert_eq!(x_id.name, v_id.name);
    assert_ne!(x_id.sha256, v_id.sha256);

    let mut l = p.receiver.listen(&p.inbox, &["--trusted-only", "--once"]);
    let bad = stranger.file("out", "claim.txt", b"I am V");
    let stderr = assert_failed(&stranger.send(l.port, &[&bad]), "claimed id");
    assert!(stderr.contains("accepts only peers it trusts"), "{stderr}");
    assert!(!stderr.contains("(409 "), "words only: {stderr}");
    assert!(
        !stderr.contains("different key pinned"),
        "nothing was pinned yet:\n{stderr}"
    );
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert!(names_in(&p.inbox).is_empty(), "{:?}", names_in(&p.inbox));
    assert_no_entry(&p.receiver, &v_id.id);
    assert_no_entry(&stranger, &r_id.id);
    drop(l);
    // Settled (the listener is gone): the claim left nothing behind.
    assert_no_entry(&p.receiver, &v_id.id);

    // The genuine node, accepted, is a first contact: no key-change refusal,
    // and the pin is its real key.
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let good = p.sender.file("out", "real.txt", b"I really am V");
    let out = p.sender.send(l.port, &[&good]);
    assert_sent_ok(&out, 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    assert_content(&p.inbox.join("real.txt"), b"I really am V");
    let lerr = l.stderr();
    assert!(!lerr.contains("HAS CHANGED"), "{lerr}");
    let line = code_lines(&lerr)[0].to_owned();
    assert!(line.starts_with("first contact with "), "{lerr}");
    assert!(line.contains(&v_id.fingerprint), "{lerr}");

    let rs = store(&p.receiver);
    assert_eq!(rs["peers"].as_array().unwrap().len(), 1, "{rs:#}");
    let vp = peer(&rs, &v_id.id);
    assert_eq!(vp["fingerprint"], v_id.sha256.as_str(), "{vp:#}");
    assert_eq!(vp["trust"], "known", "{vp:#}");
    assert_eq!(sessions(vp).len(), 1, "{vp:#}");
    assert_session(&sessions(vp)[0], "receive", "ok", 1, 13);

    // Now the claim meets the genuine pin, even by a listener that says yes
    // to everyone, and moves nothing.
    let before = std::fs::read(p.receiver.store_path()).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let stderr = assert_failed(&stranger.send(l.port, &[&bad]), "claimed id, after");
    assert!(stderr.contains("knows another node named"), "{stderr}");
    l.wait_stderr("A NEW KEY ANSWERS AS PEER");
    assert!(l.is_running(), "stderr: {}", l.stderr());
    drop(l);
    assert_eq!(
        text(&std::fs::read(p.receiver.store_path()).unwrap()),
        text(&before)
    );
    assert_eq!(names_in(&p.inbox), ["real.txt"]);
}

#[test]
fn regenerated_sender_key_is_refused_until_forgotten() {
    let p = Pair::new();
    let s_id = p.sender.id();
    p.first_transfer("first.txt", 10);

    // Same node.json (id and name), another key.
    let impostor = p.sender.with_key_of(Role::Other);
    let i_id = impostor.id();
    // A new key is a new node id (bound to the key), under the same name.
    assert_ne!(i_id.id, s_id.id);
    assert_eq!(i_id.name, s_id.name);
    assert_ne!(i_id.sha256, s_id.sha256);

    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let before = std::fs::read(p.receiver.store_path()).unwrap();
    let f = impostor.file("out", "second.txt", b"from the new key");
    let stderr = assert_failed(&impostor.send(l.port, &[&f]), "changed sender key");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("knows another node named"), "{stderr}");
    assert!(last.contains("localstream forget"), "{stderr}");
    assert!(!last.contains("(409 "), "words only: {stderr}");

    // The receiver's warning: loud, both fingerprints, the way out.
    l.wait_stderr("A NEW KEY ANSWERS AS PEER");
    let lerr = l.stderr();
    for needle in [
        format!("sha256 {}", s_id.sha256),
        format!("sha256 {}", i_id.sha256),
        format!("localstream forget {}", s_id.id),
    ] {
        assert!(
            unwrapped(&lerr).contains(&needle),
            "{needle:?} missing from:\n{lerr}"
        );
    }
    assert!(
        lerr.find(&s_id.sha256) < lerr.find(&i_id.sha256),
        "pinned key first, then the presented one:\n{lerr}"
    );
    assert_eq!(names_in(&p.inbox), ["first.txt"]);
    // The pin did not move by itself: the store is exactly as it was.
    assert_eq!(
        text(&std::fs::read(p.receiver.store_path()).unwrap()),
        text(&before)
    );
    let rs = store(&p.receiver);
    assert_eq!(peer(&rs, &s_id.id)["fingerprint"], s_id.sha256.as_str());
    assert_eq!(peer(&rs, &s_id.id)["trust"], "known");

    // Trying again changes nothing.
    assert_failed(&impostor.send(l.port, &[&f]), "changed sender key, again");
    assert_eq!(
        peer(&store(&p.receiver), &s_id.id)["fingerprint"],
        s_id.sha256.as_str()
    );

    let out = store_cmd(&p.receiver, &["forget", &s_id.id]);
    assert!(out.starts_with("forgot "), "{out}");
    assert!(
        !store(&p.receiver)["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == s_id.id.as_str())
    );

    let out = impostor.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    assert!(
        codes(&text(&out.stderr)).len() == 1,
        "the receiver's key did not change: a normal code line\n{}",
        text(&out.stderr)
    );
    l.wait_received();
    assert_content(&p.inbox.join("second.txt"), b"from the new key");
    let rs = wait_store(&p.receiver, "new pin, session ok", |v| {
        v["peers"].as_array().unwrap().iter().any(|p| {
            p["node_id"] == i_id.id.as_str()
                && p["fingerprint"] == i_id.sha256.as_str()
                && p["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["outcome"] == "ok")
        })
    });
    assert_eq!(peer(&rs, &i_id.id)["trust"], "known");

    // Now the old key is the newcomer under a pinned name.
    let f2 = p.sender.file("out", "old.txt", b"old key");
    let stderr = assert_failed(&p.sender.send(l.port, &[&f2]), "old key after forget");
    assert!(stderr.contains("knows another node named"), "{stderr}");
    assert_eq!(names_in(&p.inbox), ["first.txt", "second.txt"]);
}

#[test]
fn regenerated_receiver_key_is_refused_by_the_sender_until_forgotten() {
    let p = Pair::new();
    let r_id = p.receiver.id();
    p.first_transfer("first.txt", 10);

    let replaced = p.receiver.with_key_of(Role::Other);
    let n_id = replaced.id();
    assert_ne!(n_id.id, r_id.id);
    assert_eq!(n_id.name, r_id.name);
    assert_ne!(n_id.sha256, r_id.sha256);
    let inbox = replaced.dir("inbox");
    let mut l = replaced.listen(&inbox, &["--yes"]);

    let f = p.sender.file("out", "second.txt", b"to the new key");
    let stderr = assert_failed(&p.sender.send(l.port, &[&f]), "changed receiver key");
    for needle in [
        "A NEW KEY ANSWERS AS PEER".to_owned(),
        format!("sha256 {}", r_id.sha256),
        format!("sha256 {}", n_id.sha256),
        format!("localstream forget {}", r_id.id),
    ] {
        assert!(
            unwrapped(&stderr).contains(&needle),
            "{needle:?} missing from:\n{stderr}"
        );
    }
    assert!(
        stderr.find(&r_id.sha256) < stderr.find(&n_id.sha256),
        "pinned key first, then the presented one:\n{stderr}"
    );
    assert!(
        !stderr.contains("waiting for"),
        "nothing offered:\n{stderr}"
    );
    assert!(names_in(&inbox).is_empty(), "{:?}", names_in(&inbox));
    let ss = store(&p.sender);
    assert_eq!(peer(&ss, &r_id.id)["fingerprint"], r_id.sha256.as_str());
    assert_eq!(
        sessions(peer(&ss, &r_id.id)).len(),
        1,
        "no session for a refused key: {ss:#}"
    );

    store_cmd(&p.sender, &["forget", &short(&r_id)]);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_content(&inbox.join("second.txt"), b"to the new key");
    let ss = store(&p.sender);
    assert_eq!(peer(&ss, &n_id.id)["fingerprint"], n_id.sha256.as_str());
    assert_eq!(peer(&ss, &n_id.id)["trust"], "known");
}

#[test]
fn stores_survive_concurrent_writers() {
    // Two sender processes share one home, two listener processes share
    // another: every store write of the four races with others.
    const EACH: usize = 6;
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());
    let inboxes = [p.receiver.dir("inbox-a"), p.receiver.dir("inbox-b")];
    let mut listeners: Vec<_> = inboxes
        .iter()
        .map(|d| p.receiver.listen(d, &["--yes"]))
        .collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    let contents: Vec<Vec<Vec<u8>>> = (0..2)
        .map(|w| {
            (0..EACH)
                .map(|i| random_bytes((w * 100 + i) as u64, 1000 + 4099 * i + w))
                .collect()
        })
        .collect();

    std::thread::scope(|scope| {
        for (w, port) in ports.iter().enumerate() {
            let (sender, contents) = (&p.sender, &contents[w]);
            scope.spawn(move || {
                for (i, c) in contents.iter().enumerate() {
                    let f = sender.file(&format!("out-{w}"), &format!("w{w}-{i}.bin"), c);
                    assert_sent_ok(&sender.send(*port, &[&f]), 1);
                }
            });
        }
    });

    for (w, l) in listeners.iter_mut().enumerate() {
        for _ in 0..EACH {
            l.wait_received();
        }
        for (i, c) in contents[w].iter().enumerate() {
            assert_content(&inboxes[w].join(format!("w{w}-{i}.bin")), c);
        }
    }
    let all_bytes: BTreeSet<u64> = contents.iter().flatten().map(|c| c.len() as u64).collect();
    assert_eq!(
        all_bytes.len(),
        2 * EACH,
        "sizes distinct, to match records"
    );

    // Senders have exited, so their history is complete.
    let ss = store(&p.sender);
    assert_eq!(ss["peers"].as_array().unwrap().len(), 1, "{ss:#}");
    let sp = peer(&ss, &r_id.id);
    assert_eq!(sp["fingerprint"], r_id.sha256.as_str());
    assert_eq!(sp["trust"], "known");
    // The listeners write the end of a session after telling the sender.
    let rs = wait_store(&p.receiver, "every receive session ended", |v| {
        v["peers"].as_array().unwrap().iter().any(|p| {
            p["node_id"] == s_id.id.as_str()
                && p["sessions"].as_array().unwrap().len() >= 2 * EACH
                && p["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|s| !s["ended"].is_null())
        })
    });
    assert_eq!(rs["peers"].as_array().unwrap().len(), 1, "{rs:#}");
    let rp = peer(&rs, &s_id.id);
    assert_eq!(rp["fingerprint"], s_id.sha256.as_str());

    let check = |entry: &Value, direction: &str| -> BTreeSet<String> {
        let list = sessions(entry);
        assert_eq!(list.len(), 2 * EACH, "{direction}: {entry:#}");
        let mut sizes = BTreeSet::new();
        for s in list {
            let bytes = s["bytes"].as_u64().unwrap();
            assert_session(s, direction, "ok", 1, bytes);
            sizes.insert(bytes);
        }
        assert_eq!(
            sizes, all_bytes,
            "{direction}: every transfer recorded once"
        );
        list.iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let sent = check(sp, "send");
    let received = check(rp, "receive");
    assert_eq!(sent.len(), 2 * EACH, "session ids are distinct");
    assert_eq!(sent, received, "the same sessions on both sides");
}

#[test]
fn corrupt_store_is_an_error_naming_the_file_and_left_untouched() {
    let p = Pair::new();
    let garbage: &[u8] = b"{\"schema\":1,\"peers\":[{\"node_id\": garbage\xff\n";
    let f = p.sender.file("out", "x.txt", b"x");

    // listen: fails at start, before anyone connects.
    std::fs::write(p.receiver.store_path(), garbage).unwrap();
    let out = common::run(
        p.receiver
            .cmd()
            .args([
                "listen",
                "--no-discovery",
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--yes",
                "--dir",
            ])
            .arg(&p.inbox),
    );
    let stderr = assert_failed(&out, "listen with a corrupt store");
    assert!(
        stderr.contains(&p.receiver.store_path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("move it aside"), "{stderr}");
    assert_eq!(std::fs::read(p.receiver.store_path()).unwrap(), garbage);

    // send: fails, nothing transferred (to a healthy listener).
    let healthy = Node::new(Role::Receiver);
    let inbox = healthy.dir("inbox");
    let l = healthy.listen(&inbox, &["--yes"]);
    for bad in [garbage, b"" as &[u8], br#"{"schema":99,"peers":[]}"#] {
        std::fs::write(p.sender.store_path(), bad).unwrap();
        let stderr = assert_failed(&p.sender.send(l.port, &[&f]), "send with a corrupt store");
        assert!(
            stderr.contains(&p.sender.store_path().display().to_string()),
            "{stderr}"
        );
        assert!(stderr.contains("move it aside"), "{stderr}");
        assert_eq!(std::fs::read(p.sender.store_path()).unwrap(), bad);
        assert!(names_in(&inbox).is_empty(), "{:?}", names_in(&inbox));
    }

    // The store commands too.
    std::fs::write(p.sender.store_path(), garbage).unwrap();
    for args in [&["sessions"][..], &["trust", "abcd"], &["forget", "abcd"]] {
        let stderr = assert_failed(&common::run(p.sender.cmd().args(args)), "store command");
        assert!(
            stderr.contains(&p.sender.store_path().display().to_string()),
            "{args:?}: {stderr}"
        );
        assert_eq!(std::fs::read(p.sender.store_path()).unwrap(), garbage);
    }
}

#[test]
fn blocked_sender_is_refused_even_with_yes_and_history_says_so() {
    let p = Pair::new();
    let (s_id, r_id) = (p.sender.id(), p.receiver.id());
    p.first_transfer("first.txt", 10);

    // Unknown peers are an error, not a silent no-op.
    let out = common::run(p.receiver.cmd().args(["block", "ffff0000"]));
    let stderr = assert_failed(&out, "block an unknown peer");
    assert!(stderr.contains("ffff0000"), "{stderr}");

    let out = store_cmd(&p.receiver, &["block", &short(&s_id)]);
    assert!(out.starts_with("blocked: "), "{out}");
    assert!(out.contains(&s_id.id), "{out}");

    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let f = p.sender.file("out", "blocked.txt", b"nope");
    let stderr = assert_failed(&p.sender.send(l.port, &[&f]), "blocked sender");
    assert!(
        stderr.contains("the receiver has blocked this node"),
        "{stderr}"
    );
    // A refusal by policy does not end `--once`.
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert_eq!(names_in(&p.inbox), ["first.txt"]);
    // The receiver refused before proving itself (it signs nothing for a
    // blocked peer), so the sender has no authenticated session to record.
    let ss = store(&p.sender);
    let sl = sessions(peer(&ss, &r_id.id));
    assert_eq!(sl.len(), 1, "{ss:#}");

    // The receiver records the refusal after telling the sender.
    wait_store(&p.receiver, "the refusal recorded", |v| {
        v["peers"].as_array().unwrap().iter().any(|p| {
            p["node_id"] == s_id.id.as_str() && p["sessions"].as_array().unwrap().len() == 2
        })
    });
    let out = store_cmd(&p.receiver, &["sessions", "--json"]);
    let all: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("sessions --json is not JSON ({e}):\n{out}"));
    let all = all
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"));
    assert_eq!(all.len(), 1, "{out}");
    let entry = &all[0];
    assert_eq!(entry["id"], s_id.id.as_str(), "{out}");
    assert_eq!(entry["name"], s_id.name.as_str(), "{out}");
    assert_eq!(entry["fingerprint"], s_id.sha256.as_str(), "{out}");
    assert_eq!(entry["trust"], "blocked", "{out}");
    let list = entry["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{out}");
    assert_eq!(list[0]["outcome"], "ok", "{out}");
    assert_eq!(list[1]["outcome"], "refused", "{out}");
    assert_eq!(list[1]["direction"], "receive", "{out}");
    assert_eq!(list[1]["files"], 0, "{out}");

    // Filtered by peer, the same; in text, one line per session.
    let one = store_cmd(&p.receiver, &["sessions", &short(&s_id), "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap(),
        Value::Array(all.clone())
    );
    let plain = store_cmd(&p.receiver, &["sessions"]);
    assert!(
        plain.contains("blocked") && plain.contains("refused"),
        "{plain}"
    );

    // The listener is still waiting for a transfer: another node's ends it.
    let other = Node::new(Role::Other);
    let o_id = other.id();
    let g = other.file("out", "welcome.txt", b"welcome");
    assert_sent_ok(&other.send(l.port, &[&g]), 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    assert_content(&p.inbox.join("welcome.txt"), b"welcome");
    assert_eq!(names_in(&p.inbox), ["first.txt", "welcome.txt"]);
    let rs = store(&p.receiver);
    assert_eq!(rs["peers"].as_array().unwrap().len(), 2, "{rs:#}");
    assert_eq!(peer(&rs, &o_id.id)["trust"], "known", "{rs:#}");
    let bp = peer(&rs, &s_id.id);
    assert_eq!(bp["trust"], "blocked", "{rs:#}");
    assert_eq!(sessions(bp).len(), 2, "{rs:#}");
}

#[test]
fn a_sender_that_blocked_the_receiver_sends_nothing() {
    let p = Pair::new();
    let r_id = p.receiver.id();
    p.first_transfer("first.txt", 10);
    let out = store_cmd(&p.sender, &["block", &r_id.sha256[..12]]);
    assert!(
        out.starts_with("blocked: ") && out.contains(&r_id.id),
        "{out}"
    );

    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let f = p.sender.file("out", "nope.txt", b"nope");
    let stderr = assert_failed(&p.sender.send(l.port, &[&f]), "send to a blocked peer");
    assert!(stderr.contains("you have blocked"), "{stderr}");
    assert!(
        !stderr.contains("waiting for"),
        "nothing offered:\n{stderr}"
    );
    assert_eq!(names_in(&p.inbox), ["first.txt"]);
    let ss = store(&p.sender);
    assert_eq!(peer(&ss, &r_id.id)["trust"], "blocked");
    assert_eq!(sessions(peer(&ss, &r_id.id)).len(), 1, "{ss:#}");
    // By name or id, with discovery off: the same refusal, not "no such
    // peer" (the store knows it, and where it was).
    for name in ["receiver", &short(&r_id)] {
        let out = common::run(
            p.sender
                .cmd()
                .args(["send", "--no-discovery", name])
                .arg(&f),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "localstream: you have blocked receiver (id {}): `localstream trust {}` or \
                 `forget` it to send to it again",
                r_id.id,
                short(&r_id)
            )),
            "{stderr}"
        );
    }
}
