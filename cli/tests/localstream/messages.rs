//! Text messages between LocalStream nodes (`send --text`), shown by the
//! receiver, in its `--json` events, and copied with `--clipboard`.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::common::{self, Pair, STEP, names_in, poll_until, text};

/// `send --yes --no-discovery 127.0.0.1:PORT --text TEXT`.
fn send_text(p: &Pair, port: u16, message: &str) -> std::process::Output {
    common::run(
        p.sender
            .cmd()
            .args(["send", "--yes", "--no-discovery"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--text", message]),
    )
}

#[test]
fn a_text_is_shown_by_the_receiver_and_saved_nowhere() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let message = "meet at 6, room \u{1b}[31m2b\nbring the cable";
    let out = send_text(&p, l.port, message);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let head = l.wait_line(|l| l.starts_with("message from "));
    assert!(
        head.starts_with("message from sender [") && head.ends_with("]:"),
        "{head:?}"
    );
    // Line by line, the escape sequence shown, not obeyed.
    assert_eq!(l.wait_line(|_| true), "meet at 6, room \\x1b[31m2b");
    assert_eq!(l.wait_line(|_| true), "bring the cable");
    assert_eq!(l.wait_exit(), Some(0));
    // The message is the result on both sides, not "1 file".
    let sent = text(&out.stdout);
    assert!(
        sent.starts_with(&format!(
            "sent a text message ({} B) to receiver [",
            message.len()
        )),
        "{sent:?}"
    );
    let rest = l.all_stdout();
    assert!(!rest.iter().any(|l| l.starts_with("received ")), "{rest:?}");
    assert!(names_in(&p.inbox).is_empty(), "{:?}", names_in(&p.inbox));
}

#[test]
fn a_text_from_standard_input_is_a_json_message_event() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once", "--json"]);
    let mut child = p
        .sender
        .cmd()
        .args(["send", "--yes", "--no-discovery"])
        .arg(format!("127.0.0.1:{}", l.port))
        .args(["--text", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // As `echo` gives it: the final newline is not part of the message.
    child
        .stdin
        .take()
        .unwrap()
        .write_all("two lines,\nnon-ASCII: héllo ✓\n".as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let offer: Value =
        serde_json::from_str(&l.wait_line(|l| l.starts_with(r#"{"event":"offer""#))).unwrap();
    assert_eq!(offer["files"], 1, "{offer:#}");
    assert_eq!(offer["entries"][0]["text"], true, "{offer:#}");
    let message: Value =
        serde_json::from_str(&l.wait_line(|l| l.starts_with(r#"{"event":"message""#))).unwrap();
    // Escaped like every string from the network in the events (a newline
    // is a control character); the rest as sent.
    assert_eq!(
        message["text"], "two lines,\\x0anon-ASCII: héllo ✓",
        "{message:#}"
    );
    assert_eq!(message["peer"]["name"], "sender", "{message:#}");
    assert!(message.get("saved").is_none(), "{message:#}");
    assert_eq!(l.wait_exit(), Some(0));
    assert!(names_in(&p.inbox).is_empty());
}

#[test]
fn a_text_needs_consent_like_a_file() {
    let p = Pair::new();
    let l = p.receiver.listen(&p.inbox, &["--trusted-only"]);
    let out = send_text(&p, l.port, "let me in");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("the receiver accepts only peers it trusts"),
        "{}",
        text(&out.stderr)
    );
    // The refusal is said; the text never came (it follows consent).
    assert!(
        poll_until(STEP, || l.stderr().contains("refused")),
        "{}",
        l.stderr()
    );
    assert!(!l.stderr().contains("let me in"), "{}", l.stderr());
    assert!(
        !l.stdout.iter().any(|line| line.contains("let me in")),
        "{:?}",
        l.stdout
    );
}

/// A `wl-copy` that records what it was given in `got`.
fn fake_wl_copy(bin: &Path, got: &Path) {
    let tool = bin.join("wl-copy");
    std::fs::write(&tool, format!("#!/bin/sh\ncat > '{}'\n", got.display())).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// PATH with `first` in front.
fn path_with(first: &Path) -> std::ffi::OsString {
    let mut dirs = vec![first.to_owned()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

#[cfg(unix)]
#[test]
fn clipboard_gets_the_text_through_the_tool_on_path() {
    let p = Pair::new();
    let bin = p.receiver.dir("bin");
    let got = p.receiver.dir("clip").join("got");
    fake_wl_copy(&bin, &got);
    let mut cmd = p.receiver.cmd();
    cmd.env("PATH", path_with(&bin))
        .arg("listen")
        .args(["--no-discovery", "--dir"])
        .arg(&p.inbox)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--yes",
            "--once",
            "--clipboard",
        ]);
    let mut l = common::spawn_listener(cmd, &p.inbox);
    let out = send_text(&p, l.port, "copy me: 42 ü");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // `listen --once` waits for the copy before it exits.
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "copy me: 42 ü");
    assert!(
        l.stderr().contains("copied to the clipboard (wl-copy)"),
        "{}",
        l.stderr()
    );
}

#[test]
fn clipboard_without_a_tool_says_so() {
    let p = Pair::new();
    let empty = p.receiver.dir("no-tools");
    let mut cmd = p.receiver.cmd();
    cmd.env("PATH", &empty)
        .arg("listen")
        .args(["--no-discovery", "--dir"])
        .arg(&p.inbox)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--yes",
            "--once",
            "--clipboard",
        ]);
    let mut l = common::spawn_listener(cmd, &p.inbox);
    let line = "warning: --clipboard: no clipboard tool found on PATH (looked for wl-copy, xclip, \
                xsel, pbcopy, clip.exe): text messages are shown, not copied";
    assert!(
        poll_until(STEP, || l.stderr().contains(line)),
        "{}",
        l.stderr()
    );
    let out = send_text(&p, l.port, "still shown");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    l.wait_line(|l| l == "still shown");
    assert_eq!(l.wait_exit(), Some(0));
    // Said again when a message came and could not be copied.
    assert_eq!(l.stderr().matches(line).count(), 2, "{}", l.stderr());
}
