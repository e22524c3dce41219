//! History and interruptions: what `sessions --json` records on both sides
//! (regular files, the file bytes moved in the session, what a resume found
//! held), what each side says when a transfer stops in the middle (cut,
//! Ctrl-C, SIGTERM) and how it resumes, and that SIGTERM stops like Ctrl-C.
//!
//! Transfers are stopped mid-file deterministically: a proxy cuts or
//! stalls the connection after a fixed number of bytes, and a signal is sent
//! only once the receiver's partial file exists. The figures each side says
//! are compared with each other, with its history and with the partial file
//! on disk, never with a guess of how fast the machine is.

#![allow(clippy::unwrap_used)]

use super::common;

use std::path::{Path, PathBuf};

use common::{
    Listener, Node, Pair, STEP, assert_content, assert_sent_ok, names_in, poll_until, random_bytes,
    text,
};
use localstream_node::units::human_bytes;
use localstream_testkit::proxy::{Close, Mode, Proxy};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
/// The interrupted file: much larger than what socket buffers and the
/// sender's pipeline can hold, so a stall stops the sender mid-file.
const SIZE: usize = 64 * MIB as usize;
/// Where in the client->server stream the proxy strikes.
const AT: u64 = 8 * MIB;

/// `sessions --json` of `node`, parsed: an array of peers with their sessions.
fn sessions_json(node: &Node) -> Vec<Value> {
    let out = common::run(node.cmd().args(["sessions", "--json"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "sessions failed: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("sessions --json is not JSON ({e}):\n{}", text(&out.stdout)));
    v.as_array().unwrap().clone()
}

/// The sessions `node` recorded, with every peer, oldest first.
fn all_sessions(node: &Node) -> Vec<Value> {
    sessions_json(node)
        .iter()
        .flat_map(|p| p["sessions"].as_array().unwrap().clone())
        .collect()
}

/// Waits until `node` has recorded `n` sessions that ended (a listener
/// writes its history after the transfer's last event); returns them all.
fn ended_sessions(node: &Node, n: usize) -> Vec<Value> {
    let mut last = vec![];
    let done = poll_until(STEP, || {
        last = all_sessions(node);
        last.len() == n && last.iter().all(|s| s["ended"].is_u64())
    });
    assert!(done, "expected {n} ended sessions, have {last:#?}");
    last
}

/// The one `.lspart` file in `dir` and its length.
fn partial_in(dir: &Path) -> (PathBuf, u64) {
    let names: Vec<String> = names_in(dir)
        .into_iter()
        .filter(|n| n.ends_with(".lspart"))
        .collect();
    assert_eq!(
        names.len(),
        1,
        "one partial expected in {:?}",
        names_in(dir)
    );
    let path = dir.join(&names[0]);
    let len = std::fs::metadata(&path).unwrap().len();
    (path, len)
}

/// Waits until `dir` holds a partial file with some bytes in it.
fn wait_partial(dir: &Path, l: &Listener) {
    let there = poll_until(STEP, || {
        names_in(dir).iter().any(|n| {
            n.ends_with(".lspart") && std::fs::metadata(dir.join(n)).is_ok_and(|m| m.len() > 0)
        })
    });
    if !there {
        l.fail("no partial file with data appeared");
    }
}

/// "12.34": `bytes` in MiB as the position of a 64 MiB transfer is shown.
fn mib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / MIB as f64)
}

/// The last `localstream: ...` line of a command's stderr.
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("localstream: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"))
        .to_owned()
}

/// A running `send`, with its stderr read as it comes.
struct Sending {
    run: localstream_testkit::Running,
}

impl Sending {
    fn start(p: &Pair, port: u16, file: &Path) -> Sending {
        let run = localstream_testkit::spawn(&mut p.sender.send_cmd(port, &[file]), "send");
        Sending { run }
    }

    fn stderr(&self) -> String {
        self.run.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit; returns the exit code and, once the error line
    /// is in, stderr.
    fn wait(&mut self) -> (Option<i32>, String) {
        let status = common::wait_deadline(&mut self.run.child, STEP)
            .unwrap_or_else(|| panic!("the sender did not exit:\n{}", self.stderr()));
        poll_until(STEP, || self.stderr().contains("localstream: "));
        (status.code(), self.stderr())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let _ = self.run.child.kill();
        let _ = self.run.child.wait();
    }
}

/// A folder of 3 files in 2 subfolders is 3 files on both sides, with the
/// same bytes (the files' bytes), and the same session id.
#[test]
fn a_folder_of_three_files_is_recorded_as_three_files_on_both_sides() {
    let p = Pair::new();
    let root = p.sender.dir("album");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("a.txt"), random_bytes(1, 100)).unwrap();
    std::fs::write(root.join("sub/b.txt"), random_bytes(2, 2_000)).unwrap();
    std::fs::write(root.join("sub/deeper/c.bin"), random_bytes(3, 70_000)).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let out = p.sender.send(l.port, &[&root]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    l.wait_received();

    let sent = ended_sessions(&p.sender, 1);
    let received = ended_sessions(&p.receiver, 1);
    for (side, s, direction) in [
        ("sender", &sent[0], "send"),
        ("receiver", &received[0], "receive"),
    ] {
        assert_eq!(s["direction"], direction, "{side}: {s:#}");
        assert_eq!(s["outcome"], "ok", "{side}: {s:#}");
        assert_eq!(s["files"], 3, "{side}: folders are not files: {s:#}");
        assert_eq!(s["bytes"], 72_100, "{side}: {s:#}");
        assert!(s.get("resumed").is_none(), "{side}: nothing resumed: {s:#}");
    }
    assert_eq!(sent[0]["id"], received[0]["id"]);
}

/// A connection cut mid-file: the sender says where it stopped and how to
/// go on, the receiver what it kept; both record "failed" with the bytes
/// they moved (the receiver's are its partial file). The same send again
/// checks the held prefix (with a line saying so), sends only the rest, and
/// both sides record the same bytes, and the held prefix as resumed.
#[test]
fn a_cut_mid_file_is_recorded_with_its_bytes_and_the_resume_counts_the_same_on_both_sides() {
    let p = Pair::new();
    let content = random_bytes(91, SIZE);
    let file = p.sender.file("out", "cut.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let proxy = Proxy::start(
        l.port,
        Mode::Cut {
            after: AT,
            close: Close::Fin,
        },
    );
    let out = common::run(&mut p.sender.send_cmd(proxy.port, &[&file]));
    assert!(proxy.last().unwrap().tripped);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    let sent = ended_sessions(&p.sender, 1);
    let s = &sent[0];
    assert_eq!(s["outcome"], "failed", "{s:#}");
    assert_eq!(s["files"], 0, "{s:#}");
    let sent_bytes = s["bytes"].as_u64().unwrap();
    assert!(
        (1..SIZE as u64).contains(&sent_bytes),
        "sender recorded {sent_bytes} bytes"
    );
    let said = format!(
        "connection to receiver lost during cut.bin at {}/64.00 MiB",
        mib(sent_bytes)
    );
    assert_eq!(
        error_line(&stderr),
        format!("localstream: {said}; run the same command to resume (or add --retry)")
    );
    assert_eq!(s["detail"], said.as_str(), "{s:#}");

    // The receiver: what it kept, in words, in its history and on disk.
    l.wait_stderr("sender disconnected during cut.bin; ");
    let received = ended_sessions(&p.receiver, 1);
    let r = &received[0];
    let (_, kept) = partial_in(&p.inbox);
    assert!(kept > 0 && kept <= AT, "kept {kept}");
    let line = format!(
        "sender disconnected during cut.bin; {} kept; it resumes when sender sends it again",
        human_bytes(kept)
    );
    assert!(
        l.stderr().lines().any(|l| l == line),
        "{line:?} in\n{}",
        l.stderr()
    );
    assert!(!l.stderr().contains("transfer failed"), "{}", l.stderr());
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(r["files"], 0, "{r:#}");
    assert_eq!(r["bytes"].as_u64(), Some(kept), "{r:#}");
    assert_eq!(r["detail"], line.as_str(), "{r:#}");
    assert!(sent_bytes >= kept, "sent {sent_bytes} < kept {kept}");

    // Again, directly: the check of what is held is announced, only the
    // rest moves, and both sides count it the same way.
    let out = common::run(p.sender.send_cmd(l.port, &[&file]).arg("--json"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let checking = format!(
        "checking the {} receiver already holds...",
        human_bytes(kept)
    );
    assert!(
        stderr.lines().any(|l| l == checking),
        "{checking:?} in\n{stderr}"
    );
    // For scripts: `checking` events from 0 to what is held, before `accepted`.
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["event"] == "checking")
        .map(|e| {
            assert_eq!(e["peer"]["name"], "receiver", "{e}");
            (e["bytes"].as_u64().unwrap(), e["done"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(checks.first(), Some(&(kept, 0)), "{checks:?}");
    assert_eq!(checks.last(), Some(&(kept, kept)), "{checks:?}");
    let last_check = events.iter().rposition(|e| e["event"] == "checking");
    let accepted = events.iter().position(|e| e["event"] == "accepted");
    assert!(last_check < accepted, "{events:#?}");
    l.wait_received();
    // The receiver checked its side first, and said so, before what it held.
    let listener = l.stderr();
    let lines: Vec<&str> = listener.lines().collect();
    let checked = format!("checking the {} held here for sender...", human_bytes(kept));
    let held = format!(
        "cut.bin: {} held from an interrupted transfer",
        human_bytes(kept)
    );
    let at = |want: &str| {
        lines
            .iter()
            .position(|l| *l == want)
            .unwrap_or_else(|| panic!("{want:?} in\n{listener}"))
    };
    assert!(at(&checked) < at(&held), "{listener}");
    assert_content(&p.inbox.join("cut.bin"), &content);
    let sent = ended_sessions(&p.sender, 2);
    let received = ended_sessions(&p.receiver, 2);
    for (side, s) in [("sender", &sent[1]), ("receiver", &received[1])] {
        assert_eq!(s["outcome"], "ok", "{side}: {s:#}");
        assert_eq!(s["files"], 1, "{side}: {s:#}");
        assert_eq!(
            s["bytes"].as_u64(),
            Some(SIZE as u64 - kept),
            "{side}: {s:#}"
        );
        assert_eq!(s["resumed"].as_u64(), Some(kept), "{side}: {s:#}");
    }
    // In text too: the bytes moved, and what was resumed.
    let plain = text(&common::run(p.receiver.cmd().arg("sessions")).stdout);
    assert!(
        plain.contains(&format!(
            "{} (+{} already there)",
            human_bytes(SIZE as u64 - kept),
            human_bytes(kept)
        )),
        "{plain}"
    );
}

/// A sender stopped mid-file by `signal` (Ctrl-C, or SIGTERM as `kill`
/// sends): it exits 130 saying where it stopped and how to resume, and
/// records "interrupted" with the bytes it sent; the receiver, once the
/// connection goes, records the bytes it kept.
fn sender_stopped_by(signal: &str, name: &str) {
    let p = Pair::new();
    let content = random_bytes(92, SIZE);
    let file = p.sender.file("out", name, &content);
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let proxy = Proxy::start(l.port, Mode::Stall { after: AT });
    let mut sending = Sending::start(&p, proxy.port, &file);
    assert!(poll_until(STEP, || proxy.last().is_some_and(|s| s.tripped)));
    wait_partial(&p.inbox, &l);
    localstream_testkit::signal(sending.run.child.id(), signal);
    let (code, stderr) = sending.wait();
    assert_eq!(code, Some(130), "{stderr}");

    let sent = ended_sessions(&p.sender, 1);
    let s = &sent[0];
    assert_eq!(s["outcome"], "interrupted", "{s:#}");
    assert_eq!(s["files"], 0, "{s:#}");
    let sent_bytes = s["bytes"].as_u64().unwrap();
    assert!(
        (1..SIZE as u64).contains(&sent_bytes),
        "sender recorded {sent_bytes} bytes"
    );
    let said = format!("interrupted during {name} at {}/64.00 MiB", mib(sent_bytes));
    assert_eq!(
        error_line(&stderr),
        format!("localstream: {said}; run the same command to resume (or add --retry)")
    );
    assert_eq!(s["detail"], said.as_str(), "{s:#}");

    // The stalled connection still holds the receiver: let it go.
    proxy.cut_all(Close::Fin);
    l.wait_stderr(&format!("sender disconnected during {name}; "));
    let received = ended_sessions(&p.receiver, 1);
    let r = &received[0];
    let (_, kept) = partial_in(&p.inbox);
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(r["bytes"].as_u64(), Some(kept), "{r:#}");
    assert!(sent_bytes >= kept, "sent {sent_bytes} < kept {kept}");
}

#[test]
fn ctrl_c_on_a_sender_mid_file_says_where_and_records_interrupted() {
    sender_stopped_by("INT", "int.bin");
}

#[test]
fn sigterm_on_a_sender_mid_file_stops_it_as_ctrl_c_does() {
    sender_stopped_by("TERM", "term.bin");
}

/// A listener stopped by SIGTERM mid-file: it says what it kept and that
/// the file resumes, records "interrupted" with the bytes of its partial
/// file, and exits 130.
#[test]
fn sigterm_on_a_listener_mid_file_keeps_the_partial_and_records_it() {
    let p = Pair::new();
    let content = random_bytes(93, SIZE);
    let file = p.sender.file("out", "held.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let proxy = Proxy::start(l.port, Mode::Stall { after: AT });
    let mut sending = Sending::start(&p, proxy.port, &file);
    assert!(poll_until(STEP, || proxy.last().is_some_and(|s| s.tripped)));
    wait_partial(&p.inbox, &l);
    localstream_testkit::signal(l.pid(), "TERM");
    assert_eq!(l.wait_exit(), Some(130), "{}", l.stderr());

    let (_, kept) = partial_in(&p.inbox);
    let line = format!(
        "stopped receiving during held.bin from sender; {} kept; it resumes when sender sends \
         it again",
        human_bytes(kept)
    );
    assert!(
        l.stderr().lines().any(|l| l == line),
        "{line:?} in\n{}",
        l.stderr()
    );
    let received = ended_sessions(&p.receiver, 1);
    let r = &received[0];
    assert_eq!(r["outcome"], "interrupted", "{r:#}");
    assert_eq!(r["bytes"].as_u64(), Some(kept), "{r:#}");
    assert_eq!(r["files"], 0, "{r:#}");

    // The sender learns it when the connection goes: from the listener's
    // alert when it got through the stalled proxy before the cut, else
    // from the cut itself.
    proxy.cut_all(Close::Fin);
    let (code, stderr) = sending.wait();
    assert_eq!(code, Some(1), "{stderr}");
    let last = error_line(&stderr);
    let at = last
        .strip_prefix("localstream: connection to receiver lost during held.bin at ")
        .or_else(|| {
            last.strip_prefix("localstream: receiver stopped the transfer during held.bin at ")
        })
        .unwrap_or_else(|| panic!("{last}"));
    let told = ": peer aborted: the receiver is shutting down (503 receiver busy or shutting down)";
    let rest = at
        .split_once("/64.00 MiB")
        .unwrap_or_else(|| panic!("{last}"))
        .1;
    assert!(
        ["", told]
            .iter()
            .any(|why| rest == format!("{why}; run the same command to resume (or add --retry)")),
        "{last}"
    );
}

/// SIGTERM (what `systemctl --user stop` sends) stops a listener exactly
/// as Ctrl-C does: the same exit code, the same lines after the signal.
#[test]
fn sigterm_stops_listen_with_the_same_status_and_lines_as_ctrl_c() {
    let ends: Vec<(Option<i32>, Vec<String>, String)> = ["INT", "TERM"]
        .into_iter()
        .map(|signal| {
            let p = Pair::new();
            let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
            // One transfer first: by then the listener certainly handles
            // signals (they are installed before it says it listens, too).
            let f = p.sender.file("out", "one.txt", b"one");
            assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
            l.wait_received();
            // The first contact's notice, written before the transfer, is
            // read from stderr by another thread than stdout: all of it
            // before the count of what was said so far.
            l.wait_stderr("accepts sender's offers without asking\n");
            let (lines, said) = (l.stdout.len(), l.stderr().len());
            localstream_testkit::signal(l.pid(), signal);
            let code = l.wait_exit();
            let stdout = l.all_stdout()[lines..].to_vec();
            // Said only when the signal comes while the session is still
            // closing (after its "received" lines), which a loaded machine
            // makes happen either way.
            let stderr =
                l.stderr()[said..].replace("stopping (Ctrl-C again to quit at once)\n", "");
            (code, stdout, stderr)
        })
        .collect();
    assert_eq!(ends[0].0, Some(130), "{:?}", ends[0]);
    assert_eq!(ends[0], ends[1], "after SIGINT, then after SIGTERM");
}

/// `listen --json`: a transfer cut mid-file ends with an `error` event that
/// carries how far it got (`stopped`), the same figures the history has.
#[test]
fn listen_json_reports_a_cut_transfer_with_its_figures() {
    let p = Pair::new();
    let content = random_bytes(94, SIZE);
    let file = p.sender.file("out", "json.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--json"]);
    let proxy = Proxy::start(
        l.port,
        Mode::Cut {
            after: AT,
            close: Close::Fin,
        },
    );
    let out = common::run(&mut p.sender.send_cmd(proxy.port, &[&file]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let line = l.wait_line(|l| l.starts_with(r#"{"event":"error""#));
    let event: Value = serde_json::from_str(&line).unwrap();
    let (_, kept) = partial_in(&p.inbox);
    let message = format!(
        "sender disconnected during json.bin; {} kept; it resumes when sender sends it again",
        human_bytes(kept)
    );
    assert_eq!(event["message"], message.as_str(), "{event:#}");
    let stopped = &event["stopped"];
    assert_eq!(stopped["side"], "receive", "{event:#}");
    assert_eq!(stopped["peer"], "sender", "{event:#}");
    assert_eq!(stopped["cause"], "lost", "{event:#}");
    assert_eq!(stopped["file"], "json.bin", "{event:#}");
    assert_eq!(stopped["kept"].as_u64(), Some(kept), "{event:#}");
    assert_eq!(stopped["bytes"].as_u64(), Some(kept), "{event:#}");
    assert_eq!(stopped["resumed"], 0, "{event:#}");
    assert_eq!(stopped["total"].as_u64(), Some(SIZE as u64), "{event:#}");
    assert_eq!(stopped["files"], 0, "{event:#}");
    let received = ended_sessions(&p.receiver, 1);
    assert_eq!(received[0]["bytes"].as_u64(), Some(kept));
}

/// A large send whose second batch the receiver refuses (here a path that
/// fits below the sender's folder but not below the receiver's, which is
/// much deeper): the first batch was delivered and stays; both sides say
/// that the rest was refused after how many files, and record the session
/// as incomplete with those files, not as refused. No "run the same command
/// to resume": it would be refused again.
#[cfg(unix)]
#[test]
fn a_later_batch_the_receiver_refuses_ends_the_send_with_what_was_delivered() {
    let p = Pair::new();
    let root = p.sender.dir("out").join("tree");
    for i in 0..8_300 {
        let sub = root.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:05}")), random_bytes(i, 8)).unwrap();
    }
    // Walked last, in the second batch: 2,856 bytes of folders.
    let deep: PathBuf = (0..14)
        .map(|i| format!("{}{i:02}", "z".repeat(200)))
        .collect();
    let far = root.join("zz").join(&deep);
    std::fs::create_dir_all(&far).unwrap();
    std::fs::write(far.join("last.txt"), b"far").unwrap();
    // The receiver's folder is 1,500 bytes deeper than its inbox.
    let inbox: PathBuf = std::iter::once(p.inbox.clone())
        .chain((0..6).map(|i| PathBuf::from(format!("{}{i}", "i".repeat(249)))))
        .collect();
    std::fs::create_dir_all(&inbox).unwrap();
    let l = p.receiver.listen(&inbox, &["--yes"]);

    let out = common::run(&mut p.sender.send_cmd(l.port, &[&root]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // What arrived: the first batch's files, under their names.
    let got = inbox.join("tree");
    let saved: usize = (0..20)
        .map(|i| names_in(&got.join(format!("d{i:02}"))).len())
        .sum();
    assert!((8_000..8_300).contains(&saved), "{saved} files saved");
    assert!(!got.join("zz").exists());
    let line = error_line(&stderr);
    assert!(
        line.starts_with("localstream: receiver refused the rest of the transfer at "),
        "{line}"
    );
    let after = format!(", after {saved} files: refused file name: tree/zz/zzzz");
    assert!(line.contains(&after), "{after:?} in {line}");
    assert!(
        line.ends_with("the path would be longer than the receiver's limit of 4095 bytes (422)"),
        "{line}"
    );
    assert!(!line.contains("resume"), "{line}");
    eprintln!("sender said: {line}");

    let said = format!("refused the rest of the transfer from sender, after {saved} files saved: ");
    l.wait_stderr(&said);
    for (side, node) in [("sender", &p.sender), ("receiver", &p.receiver)] {
        let s = &ended_sessions(node, 1)[0];
        assert_eq!(s["outcome"], "incomplete", "{side}: {s:#}");
        assert_eq!(s["files"], saved, "{side}: {s:#}");
        assert_eq!(s["bytes"], 8 * saved, "{side}: {s:#}");
    }
}

/// `send --json` stopped by Ctrl-C mid-file ends with an `error` event that
/// says how far it got (`stopped`), as the listener's does, and names its
/// transfer.
#[test]
fn a_json_sender_stopped_by_ctrl_c_says_how_far_it_got() {
    let p = Pair::new();
    let file = p.sender.file("out", "json.bin", &random_bytes(94, SIZE));
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let proxy = Proxy::start(l.port, Mode::Stall { after: AT });
    let mut cmd = p.sender.send_cmd(proxy.port, &[&file]);
    cmd.arg("--json");
    let mut sending = Sending {
        run: localstream_testkit::spawn(&mut cmd, "send --json"),
    };
    assert!(poll_until(STEP, || proxy.last().is_some_and(|s| s.tripped)));
    wait_partial(&p.inbox, &l);
    localstream_testkit::signal(sending.run.child.id(), "INT");
    let (code, stderr) = sending.wait();
    assert_eq!(code, Some(130), "{stderr}");
    let lines: Vec<String> = sending.run.lines.try_iter().collect();
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["event"], "error", "{last}");
    assert!(last["transfer"].is_u64(), "{last}");
    let progress = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "progress")
        .unwrap_or_else(|| panic!("no progress before the error: {lines:?}"));
    assert_eq!(progress["transfer"], last["transfer"], "the same transfer");
    let stopped = &last["stopped"];
    assert_eq!(stopped["cause"], "interrupted", "{last}");
    assert_eq!(stopped["file"], "json.bin", "{last}");
    assert_eq!(stopped["total"], SIZE as u64, "{last}");
    assert!(stopped["bytes"].as_u64().is_some_and(|b| b > 0), "{last}");
    proxy.cut_all(Close::Fin);
}

/// Ctrl-C on a listener while it checks what it holds of an offered file
/// (a copy of the same size and time already there, 8 GiB sparse: seconds
/// of reading on any machine): the check stops at once, the sender hears
/// that the receiver is shutting down (not that the connection closed in
/// the middle of a message), the listener ends the transfer with an
/// `error` event and records the session, and the copy stays as it was.
#[test]
fn ctrl_c_while_the_listener_checks_a_held_copy_tells_both_sides_and_keeps_it() {
    const HUGE: u64 = 8 << 30;
    let p = Pair::new();
    let src = p.sender.file("out", "huge.img", b"");
    let here = p.inbox.join("huge.img");
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for path in [&src, &here] {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(HUGE).unwrap();
        f.set_modified(when).unwrap();
    }
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once", "--json"]);
    let sender = p
        .sender
        .send_cmd(l.port, &[&src])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    l.wait_line(|l| l.starts_with(r#"{"event":"checking""#));
    common::interrupt(l.pid());
    let code = l.wait_exit();
    let out = sender.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "sender: {stderr}");
    assert!(
        stderr.contains(
            "the receiver is shutting down (send again once it is back, or add --retry to keep \
             trying)"
        ),
        "sender: {stderr}"
    );
    assert!(
        !stderr.contains("in the middle of a message"),
        "sender: {stderr}"
    );
    let lines = l.all_stdout();
    let error = lines
        .iter()
        .find(|l| l.starts_with(r#"{"event":"error""#))
        .unwrap_or_else(|| l.fail(&format!("no error event (exit {code:?})")));
    let event: Value = serde_json::from_str(error).unwrap();
    assert_eq!(event["message"], "interrupted", "{event:#}");
    assert_eq!(names_in(&p.inbox), ["huge.img"]);
    assert_eq!(std::fs::metadata(&here).unwrap().len(), HUGE);
    let received = ended_sessions(&p.receiver, 1);
    assert_eq!(received[0]["outcome"], "interrupted", "{:#}", received[0]);
}
