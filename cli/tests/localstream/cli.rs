//! End-to-end tests of the `localstream` binary: real processes, real sockets
//! on 127.0.0.1 (port 0), temporary directories, and assertions on what the
//! user gets: the bytes on disk, exit codes and messages.

#![allow(clippy::unwrap_used)]

use super::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    Node, Pair, Relay, Role, STEP, assert_content, assert_sent_ok, names_in, poll_until,
    random_bytes, text, wait_deadline,
};

const MIB: usize = 1024 * 1024;

#[test]
fn empty_tiny_and_large_files_arrive_intact_and_once_exits_zero() {
    let p = Pair::new();
    let empty: Vec<u8> = vec![];
    let one = vec![0x5a_u8];
    let big = random_bytes(1, 10 * MIB);
    let files = [
        p.sender.file("out", "empty.bin", &empty),
        p.sender.file("out", "one.bin", &one),
        p.sender.file("out", "big.bin", &big),
    ];
    let mut l = p
        .receiver
        .listen(&p.inbox, &["--yes", "--once", "--name", "inbox-node"]);

    let out = p.sender.send(l.port, &files);
    assert_sent_ok(&out, 3);
    let (head, saved) = l.wait_received();
    assert!(head.starts_with("received 3 files, 10.00 MiB"), "{head}");
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());

    let inbox = std::fs::canonicalize(&p.inbox).unwrap();
    assert_eq!(
        saved,
        ["empty.bin", "one.bin", "big.bin"]
            .map(|n| inbox.join(n))
            .to_vec()
    );
    assert_eq!(names_in(&p.inbox), ["big.bin", "empty.bin", "one.bin"]);
    assert_content(&p.inbox.join("empty.bin"), &empty);
    assert_content(&p.inbox.join("one.bin"), &one);
    assert_content(&p.inbox.join("big.bin"), &big);
}

#[test]
fn three_files_in_one_send_name_the_receiver_by_fingerprint() {
    let p = Pair::new();
    let contents: Vec<Vec<u8>> = (0..3)
        .map(|i| random_bytes(10 + i, 1000 + 7777 * i as usize))
        .collect();
    let files: Vec<_> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| p.sender.file("out", &format!("f{i}.dat"), c))
        .collect();
    let receiver_id = p.receiver.id();
    let sender_id = p.sender.id();
    let mut l = p
        .receiver
        .listen(&p.inbox, &["--yes", "--once", "--name", "three-node"]);

    let out = p.sender.send(l.port, &files);
    assert_sent_ok(&out, 3);
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("to three-node [{}]", receiver_id.fingerprint)),
        "{stdout:?} should name the receiver and its fingerprint {}",
        receiver_id.fingerprint
    );
    let (head, _) = l.wait_received();
    assert!(
        head.ends_with(&format!(
            "from {} [{}]",
            sender_id.name, sender_id.fingerprint
        )),
        "{head:?} should name the sender {sender_id:?}"
    );
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(names_in(&p.inbox), ["f0.dat", "f1.dat", "f2.dat"]);
    for (i, c) in contents.iter().enumerate() {
        assert_content(&p.inbox.join(format!("f{i}.dat")), c);
    }
}

#[test]
fn unicode_name_arrives_unchanged() {
    let p = Pair::new();
    let name = "résumé 日本語 ✓.txt";
    let content = "Grüße, 世界\n".as_bytes();
    let f = p.sender.file("out", name, content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    let (_, saved) = l.wait_received();
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(names_in(&p.inbox), [name]);
    assert_eq!(saved, [std::fs::canonicalize(&p.inbox).unwrap().join(name)]);
    assert_content(&p.inbox.join(name), content);
}

#[test]
fn existing_file_is_kept_and_the_new_one_gets_a_free_name() {
    let p = Pair::new();
    let old = b"the old report, not to be touched".to_vec();
    std::fs::write(p.inbox.join("report.pdf"), &old).unwrap();
    let new = random_bytes(4, 5000);
    let f = p.sender.file("out", "report.pdf", &new);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    let (_, saved) = l.wait_received();
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(
        saved,
        [std::fs::canonicalize(&p.inbox)
            .unwrap()
            .join("report (1).pdf")]
    );
    assert_eq!(names_in(&p.inbox), ["report (1).pdf", "report.pdf"]);
    assert_content(&p.inbox.join("report.pdf"), &old);
    assert_content(&p.inbox.join("report (1).pdf"), &new);
}

#[test]
fn without_yes_or_terminal_the_offer_is_refused() {
    let p = Pair::new();
    let f = p.sender.file("out", "unwanted.txt", b"please take me");
    // Stdin is /dev/null: nobody can be asked.
    let mut l = p.receiver.listen(&p.inbox, &["--once"]);

    let out = p.sender.send(l.port, &[&f]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        text(&out.stdout).is_empty(),
        "nothing on stdout: {:?}",
        text(&out.stdout)
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("localstream: receiver refused: "),
        "{stderr}"
    );
    assert!(
        last.contains("--yes") && !common::has_word(last, "406"),
        "{stderr}"
    );
    // A refusal by policy is not a transfer: `--once` keeps waiting for one.
    assert!(l.is_running(), "stderr: {}", l.stderr());
    assert!(
        names_in(&p.inbox).is_empty(),
        "inbox: {:?}",
        names_in(&p.inbox)
    );
}

#[test]
fn garbage_and_silent_clients_do_not_stop_the_listener() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);

    // A silent client holds a connection open during the whole test.
    let silent = TcpStream::connect(("127.0.0.1", l.port)).unwrap();

    let garbage = random_bytes(6, 64 * 1024);
    let http = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec();
    let truncated_header = vec![0u8; 3];
    for junk in [garbage, http, truncated_header] {
        let mut s = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        // The listener may close while we write: that is fine.
        let _ = s.write_all(&junk);
        if junk.len() == 3 {
            // End of stream inside a frame header.
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        // The listener must close the connection by itself, well before its idle timeout.
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut sink = vec![];
        match s.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "listener kept a garbage connection open ({e}); stderr: {}",
                l.stderr()
            ),
        }
    }
    assert!(l.is_running(), "listener died: {}", l.stderr());

    let content = random_bytes(66, 300_000);
    let f = p.sender.file("out", "after-garbage.bin", &content);
    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    l.wait_received();
    assert_content(&p.inbox.join("after-garbage.bin"), &content);
    assert_eq!(names_in(&p.inbox), ["after-garbage.bin"]);
    assert!(
        l.is_running(),
        "listener without --once exited: {}",
        l.stderr()
    );
    drop(silent);
}

#[test]
fn sending_to_a_closed_port_says_cannot_connect() {
    let node = Node::new(Role::Sender);
    let f = node.file("out", "x.txt", b"x");
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = node.send(port, &[&f]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.starts_with(&format!("localstream: cannot connect to 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("localstream listen"),
        "a hint is expected: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_file_fails_before_anything_is_sent() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let relay = Relay::start(l.port, None);
    let present = p.sender.file("out", "present.txt", b"here");
    p.sender.file("out/folder", "inside.txt", b"in");
    let folder = p.sender.dir("out").join("folder");
    let missing = p.sender.dir("out").join("missing-file.txt");

    // Also after a folder: every path is checked before one is walked.
    let out = p.sender.send(relay.port, &[&folder, &present, &missing]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("localstream: {}", missing.display())),
        "the message names the file: {stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        0,
        "send connected anyway"
    );
    assert!(names_in(&p.inbox).is_empty());
    assert!(
        l.is_running(),
        "the listener saw a transfer: {:?}",
        l.stdout
    );
}

/// Runs `args`; it must fail as a usage error (exit 2), print nothing on
/// stdout, and print one line on stderr starting with `localstream: {says}`.
fn usage_error(node: &Node, args: &[&str], says: &str) {
    let out = common::run(node.cmd().args(args));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr: {stderr}");
    assert!(
        stderr.starts_with(&format!("localstream: {says}")),
        "{args:?}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
}

#[test]
fn bad_address_is_a_usage_error() {
    let node = Node::new(Role::Sender);
    usage_error(
        &node,
        &["send", "--no-discovery", "10.0.0.300", "x"],
        "'10.0.0.300' is not an address",
    );
    // A name without discovery must be in the peer store (and is escaped).
    let f = node.file("out", "x", b"x");
    usage_error(
        &node,
        &["send", "--no-discovery", "box\x1b[2J", f.to_str().unwrap()],
        "no peer named 'box\\x1b[2J' with a known address in the peer store",
    );
    // A host name with a port is not taken for a peer's name.
    usage_error(
        &node,
        &[
            "send",
            "--no-discovery",
            "localhost:47470",
            f.to_str().unwrap(),
        ],
        "'localhost:47470' is not an address: host names are not looked up; give the IP \
         address (IP:47470, e.g. 127.0.0.1:47470 for this machine)",
    );
    // `peers` has no --no-discovery at all: see `setup::peers_offers_no_no_discovery`.
}

#[test]
fn id_is_stable_and_the_key_is_private() {
    let node = Node::fresh();
    let first = node.id();
    let second = node.id();
    assert_eq!(first, second);

    // Same home through the environment variable.
    let out = common::run(
        common::localstream()
            .env("LOCALSTREAM_HOME", &node.home)
            .arg("id"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(common::IdInfo::parse(&text(&out.stdout)), first);

    assert!(
        uuid::Uuid::parse_str(&first.id).is_ok_and(|u| !u.is_nil()),
        "{first:?}"
    );
    assert_eq!(first.sha256.len(), 64, "{first:?}");
    assert!(
        first
            .sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let short: Vec<&str> = first.fingerprint.split(':').collect();
    assert_eq!(short.len(), 4, "{first:?}");
    assert_eq!(
        short.concat(),
        first.sha256[..16],
        "short fingerprint is the hash's prefix"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.home.join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "identity.key mode {mode:o}");
    let home_mode = std::fs::metadata(&node.home).unwrap().permissions().mode();
    assert_eq!(home_mode & 0o077, 0, "home mode {home_mode:o}");

    // Another home is another node.
    let other = Node::fresh().id();
    assert_ne!(other.id, first.id);
    assert_ne!(other.sha256, first.sha256);
}

/// Bytes the relay lets through in the mid-file tests: the handshake, the
/// offer and two and a half 1 MiB data records.
const CAP: u64 = 5 * MIB as u64 / 2;

/// Starts a send of `file` through a relay that forwards only `cap` bytes,
/// waits until the receiver holds a partial file, and returns the sender.
fn send_frozen_mid_file(
    p: &Pair,
    l: &common::Listener,
    file: &Path,
    cap: u64,
) -> (std::process::Child, Relay) {
    let relay = Relay::start(l.port, Some(cap));
    // Piped but only read after exit: the sender prints a few short lines at most.
    let sender = p
        .sender
        .send_cmd(relay.port, &[file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let name = file.file_name().unwrap().to_str().unwrap();
    let frozen = poll_until(STEP, || {
        relay.forwarded.load(Ordering::SeqCst) >= cap
            && partial_of(&p.inbox, name)
                .is_some_and(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
    });
    assert!(
        frozen,
        "no partial file appeared (forwarded {} bytes); inbox {:?}; stderr {}",
        relay.forwarded.load(Ordering::SeqCst),
        names_in(&p.inbox),
        l.stderr()
    );
    (sender, relay)
}

/// The one resumable partial file of `name` in `dir` (`<name>.<key>.lspart`).
fn partial_of(dir: &Path, name: &str) -> Option<PathBuf> {
    let found: Vec<String> = names_in(dir)
        .into_iter()
        .filter(|n| {
            n.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.strip_suffix(".lspart"))
                .is_some_and(|key| key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    match found.as_slice() {
        [one] => Some(dir.join(one)),
        _ => None,
    }
}

/// Asserts that `dir` holds exactly one file: the partial of `name`.
fn assert_only_partial(dir: &Path, name: &str) -> PathBuf {
    let partial = partial_of(dir, name);
    assert!(
        partial.is_some() && names_in(dir).len() == 1,
        "only the partial file of {name} may exist: {:?}",
        names_in(dir)
    );
    partial.unwrap()
}

#[test]
fn sender_killed_mid_file_leaves_only_a_partial_and_the_listener_goes_on() {
    let p = Pair::new();
    let content = random_bytes(11, 8 * MIB);
    let f = p.sender.file("out", "big.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);

    let (mut sender, _relay) = send_frozen_mid_file(&p, &l, &f, CAP);
    sender.kill().unwrap();
    sender.wait().unwrap();

    // Not a failure: what it kept, and that it resumes.
    l.wait_stderr("sender disconnected during big.bin; ");
    l.wait_stderr(" kept; it resumes when sender sends it again");
    assert!(l.is_running(), "listener exited: {}", l.stderr());
    let partial = assert_only_partial(&p.inbox, "big.bin");
    // What was kept is a prefix of the file.
    let kept = std::fs::read(&partial).unwrap();
    assert!(
        !kept.is_empty() && kept.len() < CAP as usize,
        "partial holds {} bytes",
        kept.len()
    );
    assert!(
        content.starts_with(&kept),
        "the partial file is not a prefix of the sent file"
    );

    // The same send again, directly: it resumes after the held prefix and
    // the file arrives whole under its own name.
    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("resuming big.bin at byte {}", kept.len())),
        "{err}"
    );
    l.wait_received();
    assert_content(&p.inbox.join("big.bin"), &content);
    assert_eq!(names_in(&p.inbox), ["big.bin"]);
    assert!(l.is_running());
}

#[test]
fn connection_cut_mid_file_fails_the_sender_and_once_listener() {
    let p = Pair::new();
    let content = random_bytes(12, 8 * MIB);
    let f = p.sender.file("out", "cut.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let (mut sender, relay) = send_frozen_mid_file(&p, &l, &f, CAP);
    relay.cut();

    let status = wait_deadline(&mut sender, STEP).expect("the sender did not notice the cut");
    let mut stderr = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("localstream: "), "{stderr}");
    assert!(
        // (The relay drains what it does not forward: the sender may have
        // handed over every byte by the cut, and then names no file.)
        last.contains("connection to receiver lost ") || last.contains("connection closed"),
        "the user should learn the connection broke: {stderr}"
    );
    let mut stdout = String::new();
    sender
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.is_empty(), "nothing claims success: {stdout}");

    assert_eq!(l.wait_exit(), Some(1), "stderr: {}", l.stderr());
    // Its stderr is read by another thread, which may be a line behind the exit.
    l.wait_stderr("sender disconnected during cut.bin; ");
    assert_only_partial(&p.inbox, "cut.bin");
}

/// Ctrl-C to a running sender: its exit status and what it said on stderr.
fn interrupt_sender(sender: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    common::interrupt(sender.id());
    let status = wait_deadline(sender, STEP).expect("the sender ignored Ctrl-C");
    let mut stderr = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn ctrl_c_on_a_sender_mid_file_exits_130() {
    let p = Pair::new();
    let content = random_bytes(13, 8 * MIB);
    let f = p.sender.file("out", "stopped.bin", &content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let (mut sender, _relay) = send_frozen_mid_file(&p, &l, &f, CAP);
    let (status, stderr) = interrupt_sender(&mut sender);
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    // Where it stopped, and how to go on (`history` checks the figures).
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("localstream: interrupted ")
            && last.ends_with("/8.00 MiB; run the same command to resume (or add --retry)"),
        "{stderr}"
    );

    assert_eq!(l.wait_exit(), Some(1), "stderr: {}", l.stderr());
    assert_only_partial(&p.inbox, "stopped.bin");
}

#[test]
fn ctrl_c_stops_a_listener_with_130() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    // One transfer first: by then the listener certainly handles Ctrl-C
    // (see `ctrl_c_right_after_listening_on_exits_130` for the moment before).
    let f = p.sender.file("out", "before-ctrl-c.txt", b"one");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    common::interrupt(l.pid());
    assert_eq!(l.wait_exit(), Some(130), "stderr: {}", l.stderr());
    assert!(!l.stderr().contains("failed"), "{}", l.stderr());
    assert_content(&p.inbox.join("before-ctrl-c.txt"), b"one");
}

/// A script that waits for `listening on` and then sends SIGINT must get the
/// graceful exit 130, not a death by signal.
#[test]
fn ctrl_c_right_after_listening_on_exits_130() {
    let p = Pair::new();
    for round in 0..100 {
        let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
        common::interrupt(l.pid());
        let code = l.wait_exit();
        assert_eq!(
            code,
            Some(130),
            "round {round}: exit {code:?} (None = killed by the signal)"
        );
    }
}

/// `localstream id | head -0`: the reader of stdout is gone before we print.
#[test]
fn closed_stdout_is_not_a_crash() {
    let node = Node::new(Role::Sender);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = node
        .cmd()
        .arg("id")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit {:?}, stderr: {stderr}",
        out.status
    );
}

#[test]
fn a_folder_arrives_as_a_tree_and_links_inside_are_not_followed() {
    let p = Pair::new();
    let root = p.sender.dir("out").join("album");
    std::fs::create_dir_all(root.join("2024/summer")).unwrap();
    let files = [
        ("album/cover.jpg", random_bytes(21, 3000)),
        ("album/2024/summer/beach.raw", random_bytes(22, 2 * MIB)),
        ("album/2024/notes.txt", b"notes".to_vec()),
    ];
    for (rel, content) in &files {
        std::fs::write(p.sender.dir("out").join(rel), content).unwrap();
    }
    // A link pointing out of the tree: never followed, never sent.
    let secret = p.sender.file("elsewhere", "secret.txt", b"do not send");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, root.join("2024/secret-link")).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);

    let out = p.sender.send(l.port, &[&root]);
    assert_sent_ok(&out, 3);
    #[cfg(unix)]
    assert!(
        text(&out.stderr).contains("secret-link: symbolic links are not sent"),
        "{}",
        text(&out.stderr)
    );
    let (_, saved) = l.wait_received();
    assert_eq!(saved.len(), 3);
    for (rel, content) in &files {
        assert_content(&p.inbox.join(rel), content);
    }
    assert_eq!(
        names_in(&p.inbox.join("album/2024")),
        ["notes.txt", "summer"]
    );
}

#[cfg(unix)]
#[test]
fn on_complete_runs_with_the_transfer_in_its_environment() {
    let p = Pair::new();
    let content = random_bytes(31, 5000);
    let f = p.sender.file("out", "report.pdf", &content);
    let env_file = p.receiver.dir("hook").join("env.txt");
    // The command is the user's; the peer's data only ever arrives in variables.
    let hook = format!(
        "env | grep '^LOCALSTREAM_' | sort > '{}'; echo the hook says hi",
        env_file.display()
    );
    let mut l = p.receiver.listen(
        &p.inbox,
        &["--yes", "--once", "--json", "--on-complete", &hook],
    );
    let out = p.sender.send(l.port, &[&f]);
    assert_sent_ok(&out, 1);
    // `--once` waits for the command before it exits.
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    // What the command prints goes to stderr: stdout stays JSON lines.
    for line in l.all_stdout() {
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_ok(),
            "not JSON on stdout: {line:?}"
        );
    }
    assert!(l.stderr().contains("the hook says hi\n"), "{}", l.stderr());
    let env = std::fs::read_to_string(&env_file).unwrap();
    let id = p.sender.id();
    let saved = p.inbox.join("report.pdf");
    for expected in [
        "LOCALSTREAM_STATUS=ok".to_owned(),
        "LOCALSTREAM_FILE_COUNT=1".to_owned(),
        format!("LOCALSTREAM_FILES={}", saved.display()),
        format!("LOCALSTREAM_BYTES={}", content.len()),
        format!(
            "LOCALSTREAM_DIR={}",
            p.inbox.canonicalize().unwrap().display()
        ),
        format!("LOCALSTREAM_PEER_ID={}", id.id),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing in:\n{env}"
        );
    }
    assert!(env.contains("LOCALSTREAM_PEER_NAME="), "{env}");
    assert!(env.contains("LOCALSTREAM_SESSION="), "{env}");
    assert!(!env.contains("LOCALSTREAM_ERROR"), "{env}");
    assert_content(&saved, &content);
}

/// With a desktop session, a notification goes to `notify-send` as plain
/// arguments, markup escaped; without one nothing is started at all.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn a_desktop_notification_names_the_sender_and_files() {
    use std::os::unix::fs::PermissionsExt;
    let p = Pair::new();
    let bin = p.receiver.dir("fakebin");
    let args = bin.join("args.txt");
    let tool = bin.join("notify-send");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}.tmp' && mv '{}.tmp' '{}'\n",
            args.display(),
            args.display(),
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let listen = |session_bus: bool| {
        let mut cmd = p.receiver.cmd();
        cmd.arg("listen")
            .arg("--no-discovery")
            .arg("--dir")
            .arg(&p.inbox)
            .args(["--port", "0", "--bind", "127.0.0.1", "--yes", "--once"])
            .env("PATH", &path)
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        if session_bus {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
        }
        common::spawn_listener(cmd, &p.inbox)
    };

    // No session bus: quietly nothing.
    let mut l = listen(false);
    let f = p.sender.file("out", "plain.txt", b"x");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    std::thread::sleep(Duration::from_millis(300));
    assert!(!args.exists(), "notify-send ran without a session bus");

    let mut l = listen(true);
    let f = p.sender.file("out", "a <b>&c.txt", b"y");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    assert!(poll_until(STEP, || args.exists()), "no notification");
    let got = std::fs::read_to_string(&args).unwrap();
    let name = p.sender.id().name;
    assert_eq!(
        got,
        format!("--app-name=LocalStream\n--\nReceived 1 file from {name}\na &lt;b&gt;&amp;c.txt\n")
    );
}

/// The events of one `--json` stream, checked for shape: every line a JSON
/// object with `event` and a non-decreasing `t`; progress never goes back
/// and ends at its total. Returns the event names without `progress`.
fn json_events(lines: &[String]) -> Vec<serde_json::Value> {
    let mut t = 0.0;
    let mut done = 0;
    let mut last_progress = None;
    let mut events = Vec::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let now = v["t"].as_f64().unwrap_or_else(|| panic!("no t: {line}"));
        assert!(now >= t, "time went back: {line}");
        t = now;
        let event = v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no event: {line}"));
        if event == "progress" {
            let bytes = v["bytes"].as_u64().unwrap();
            assert!(
                bytes >= done && bytes <= v["total"].as_u64().unwrap(),
                "{line}"
            );
            done = bytes;
            last_progress = Some(v);
        } else {
            events.push(v);
        }
    }
    let last = last_progress.expect("no progress event");
    assert_eq!(
        last["bytes"], last["total"],
        "progress must end at its total"
    );
    events
}

fn names(events: &[serde_json::Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[test]
fn json_events_parse_and_arrive_in_order_on_both_sides() {
    let p = Pair::new();
    let a = random_bytes(41, 3 * MIB);
    let b = random_bytes(42, 10);
    let fa = p.sender.file("out", "a.bin", &a);
    let fb = p.sender.file("out", "b.txt", &b);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once", "--json"]);
    let out = common::run(p.sender.send_cmd(l.port, &[&fa, &fb]).arg("--json"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());

    let sent: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let sent = json_events(&sent);
    assert_eq!(
        names(&sent),
        [
            "connected",
            "offer",
            "accepted",
            "file_done",
            "file_done",
            "transfer_done"
        ]
    );
    assert_eq!(sent[0]["peer"]["id"], p.receiver.id().id.as_str());
    assert_eq!(sent[1]["files"], 2);
    assert_eq!(sent[1]["bytes"], a.len() + b.len());
    assert_eq!(sent[3]["name"], "a.bin");
    assert_eq!(sent[4]["name"], "b.txt");
    assert_eq!(sent[5]["ok"], true);
    assert_eq!(sent[5]["files"], 2);

    // The listener's stdout: nothing but events (the banner is one too).
    let got = json_events(&l.all_stdout());
    assert_eq!(
        names(&got),
        [
            "listening",
            "offer",
            "accepted",
            "file_done",
            "file_done",
            "transfer_done"
        ]
    );
    assert_eq!(got[1]["peer"]["id"], p.sender.id().id.as_str());
    assert_eq!(got[1]["entries"][0]["path"], "a.bin");
    let saved: Vec<&str> = got[3..5]
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_content(Path::new(saved[0]), &a);
    assert_content(Path::new(saved[1]), &b);
    assert_eq!(got[5]["ok"], true);
}

/// Two files of one send with the same name and size but different content
/// (`a/x` and `b/x` sent as plain files) share a partial-file key: each must
/// still arrive as itself.
#[test]
fn same_name_same_size_files_in_one_send_both_arrive_intact() {
    let p = Pair::new();
    let one = random_bytes(51, 3 * MIB);
    let two = random_bytes(52, 3 * MIB);
    let small_one = random_bytes(53, 100);
    let small_two = random_bytes(54, 100);
    let f1 = p.sender.file("a", "x.bin", &one);
    let f2 = p.sender.file("b", "x.bin", &two);
    let s1 = p.sender.file("a", "s.txt", &small_one);
    let s2 = p.sender.file("b", "s.txt", &small_two);
    // Small files wait in a commit group; the first one's handle is kept for
    // the group's sync, so `w` goes first to make `s` an ordinary member.
    let w = p.sender.file("a", "w.txt", b"w");
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let out = p.sender.send(l.port, &[&f1, &f2, &w, &s1, &s2]);
    assert_sent_ok(&out, 5);
    l.wait_received();
    assert_content(&p.inbox.join("x.bin"), &one);
    assert_content(&p.inbox.join("x (1).bin"), &two);
    assert_content(&p.inbox.join("s.txt"), &small_one);
    assert_content(&p.inbox.join("s (1).txt"), &small_two);
    assert_eq!(names_in(&p.inbox).len(), 5, "{:?}", names_in(&p.inbox));
}

/// Every file and folder under `root`, as (relative path, mode bits, content
/// or None for a folder), sorted: two trees are equal when these are.
#[cfg(unix)]
fn tree_listing(root: &Path) -> Vec<(String, u32, Option<Vec<u8>>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                stack.push(path);
                out.push((rel, mode, None));
            } else {
                out.push((rel, mode, Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[cfg(unix)]
#[test]
fn a_tree_with_empty_folders_executables_and_2000_small_files_arrives_identical() {
    use std::os::unix::fs::PermissionsExt;
    let p = Pair::new();
    let root = p.sender.dir("out").join("project");
    std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
    std::fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..2000 {
        let sub = root.join("many").join(format!("d{}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:04}.txt")),
            random_bytes(i, (i % 700) as usize),
        )
        .unwrap();
    }
    std::fs::write(root.join("src/deep/er/big.bin"), random_bytes(7, 5 * MIB)).unwrap();
    let tool = root.join("src/run.sh");
    std::fs::write(&tool, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let out = p.sender.send(l.port, &[&root]);
    assert_sent_ok(&out, 2002);
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    let (sent, got) = (tree_listing(&root), tree_listing(&p.inbox.join("project")));
    assert_eq!(sent.len(), got.len());
    for (a, b) in sent.iter().zip(&got) {
        assert_eq!((&a.0, a.1), (&b.0, b.1), "path or mode differs");
        assert!(a.2 == b.2, "{} differs", a.0);
    }
    assert!(
        got.iter()
            .any(|(p, _, c)| p == "empty/nested-empty" && c.is_none())
    );
    assert!(got.iter().any(|(p, m, _)| p == "src/run.sh" && *m == 0o755));
}

/// More files than one batch (8192 entries) in one send: one question, one
/// transfer, every byte, the empty folder, a large file in the last batch,
/// and the listener's listing capped with the count of the rest.
#[cfg(unix)]
#[test]
fn a_tree_larger_than_one_batch_arrives_identical_in_one_send() {
    let p = Pair::new();
    let root = p.sender.dir("out").join("big-tree");
    let files = 9_000;
    for i in 0..files {
        let sub = root.join(format!("d{:02}", i % 30));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i:05}.txt")),
            random_bytes(i, (i % 300) as usize),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    // Walked last: it goes in the second batch.
    std::fs::create_dir_all(root.join("zz")).unwrap();
    std::fs::write(root.join("zz/big.bin"), random_bytes(9, 3 * MIB)).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let out = p.sender.send(l.port, &[&root]);
    assert_sent_ok(&out, files as usize + 1);
    let (head, listed) = l.wait_received();
    assert!(head.starts_with("received 9001 files"), "{head}");
    assert_eq!(listed.len(), 1000);
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    let (sent, got) = (tree_listing(&root), tree_listing(&p.inbox.join("big-tree")));
    assert_eq!(sent.len(), got.len());
    for (a, b) in sent.iter().zip(&got) {
        assert_eq!((&a.0, a.1), (&b.0, b.1), "path or mode differs");
        assert!(a.2 == b.2, "{} differs", a.0);
    }
    assert!(got.iter().any(|(p, _, c)| p == "empty" && c.is_none()));
    assert!(got.iter().any(|(p, _, c)| p == "zz/big.bin" && c.is_some()));
}

#[test]
fn stdin_of_unknown_length_round_trips_through_listen_stdout() {
    let p = Pair::new();
    // Not a multiple of any record size, and longer than one record.
    let content = random_bytes(61, 3 * MIB + 12_345);
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut listener = p
        .receiver
        .cmd()
        .arg("listen")
        .arg("--no-discovery")
        .arg("--dir")
        .arg(&p.inbox)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--yes", "--once", "--stdout"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = listener.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).unwrap();
        got
    });
    // The listener says where it listens on stderr; wait until it accepts.
    assert!(
        poll_until(STEP, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "listener did not start"
    );
    let mut sender = p
        .sender
        .send_cmd(port, &["-"])
        .args(["--name", "stream.bin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = sender.stdin.take().unwrap();
    let feed = content.clone();
    // Written in pieces, as a pipe would deliver it.
    std::thread::spawn(move || {
        for piece in feed.chunks(100_000) {
            input.write_all(piece).unwrap();
        }
    });
    let out = sender.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("sent 1 file, 3.01 MiB"),
        "{}",
        text(&out.stdout)
    );
    let status = wait_deadline(&mut listener, STEP).expect("listener did not exit");
    assert_eq!(status.code(), Some(0));
    let got = reader.join().unwrap();
    assert!(
        got == content,
        "stdout differs: {} bytes vs {}",
        got.len(),
        content.len()
    );
    // Nothing went to the folder.
    assert!(names_in(&p.inbox).is_empty(), "{:?}", names_in(&p.inbox));
}

/// Bytes that compress very well (log-like lines with a counter).
fn log_lines(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-11-24T05:00:{:02} INFO request {i} served in 3 ms\n",
                i % 60
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// Sends `file` through a counting relay with `--compress WHEN`; returns
/// the client bytes that crossed the relay and the sender's stderr.
fn send_counted(p: &Pair, port: u16, file: &Path, when: &str) -> (u64, String) {
    send_counted_files(p, port, file, when, 1)
}

/// [`send_counted`] for a folder of `files` files.
fn send_counted_files(p: &Pair, port: u16, path: &Path, when: &str, files: usize) -> (u64, String) {
    let relay = Relay::start(port, None);
    let out = common::run(
        p.sender
            .send_cmd(relay.port, &[path])
            .args(["--compress", when]),
    );
    assert_sent_ok(&out, files);
    (relay.forwarded.load(Ordering::SeqCst), text(&out.stderr))
}

#[test]
fn compressible_data_crosses_the_wire_small_and_random_data_no_bigger() {
    let p = Pair::new();
    let logs = log_lines(256 * MIB);
    let noise = random_bytes(71, 8 * MIB);
    let fl = p.sender.file("out", "app.log", &logs);
    let fr = p.sender.file("out", "noise.bin", &noise);
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);

    let (wire, err) = send_counted(&p, l.port, &fl, "on");
    l.wait_received();
    assert_content(&p.inbox.join("app.log"), &logs);
    eprintln!("256 MiB of log lines, --compress on: {wire} bytes on the wire");
    assert!(
        wire < (logs.len() / 10) as u64,
        "{wire} bytes on the wire for {}",
        logs.len()
    );
    assert!(err.contains("on the wire for 256.00 MiB"), "{err}");

    let (off, _) = send_counted(&p, l.port, &fr, "off");
    l.wait_received();
    // (Else the same file again is found there and not sent.)
    std::fs::remove_file(p.inbox.join("noise.bin")).unwrap();
    let (on, _) = send_counted(&p, l.port, &fr, "on");
    l.wait_received();
    assert_content(&p.inbox.join("noise.bin"), &noise);
    eprintln!("8 MiB random: {off} bytes with --compress off, {on} with on");
    assert!(on <= off, "random data grew: {on} > {off}");
}

#[test]
fn small_files_cross_the_wire_compressed_one_by_one() {
    let p = Pair::new();
    // 300 log files of 1.5 to 13 KiB, one of 300 bytes (never compressed)
    // and one of random bytes (does not shrink).
    let mut want = Vec::new();
    for i in 0..300 {
        let content = log_lines(1500 + i * 40);
        want.push((format!("logs/day{i:03}.log"), content));
    }
    want.push(("logs/tiny.log".to_string(), log_lines(300)));
    want.push(("logs/noise.bin".to_string(), random_bytes(72, 6000)));
    for (name, content) in &want {
        let name = name.strip_prefix("logs/").unwrap();
        p.sender.file("out/logs", name, content);
    }
    let total: usize = want.iter().map(|(_, c)| c.len()).sum();
    let dir = p.sender.dir("out/logs");
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);

    let mut sent = |when| {
        let (wire, err) = send_counted_files(&p, l.port, &dir, when, want.len());
        l.wait_received();
        for (name, content) in &want {
            assert_content(&p.inbox.join(name), content);
        }
        std::fs::remove_dir_all(p.inbox.join("logs")).unwrap();
        (wire, err)
    };
    let (off, _) = sent("off");
    let (on, err) = sent("on");
    eprintln!("{total} bytes in small files: {off} on the wire with --compress off, {on} with on");
    assert!(off > total as u64, "{off} bytes for {total} uncompressed");
    assert!(
        on < off / 4,
        "small files were not compressed: {on} bytes on the wire, {off} without"
    );
    assert!(err.contains("on the wire for "), "{err}");
}

#[test]
fn completions_for_each_shell_and_a_manual_page() {
    for (shell, marker) in [
        ("bash", "complete -F _localstream"),
        ("zsh", "#compdef localstream"),
        ("fish", "complete -c localstream"),
    ] {
        let out = common::run(common::localstream().args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // Every subcommand and the send flags are completed.
        for word in ["listen", "send", "peers", "sessions", "retry", "compress"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    let out = common::run(common::localstream().arg("manpage"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains(".TH localstream 1"),
        "{}",
        &page[..page.len().min(400)]
    );
    for word in ["listen", "send", "completions"] {
        assert!(page.contains(word), "{word} missing from the manual page");
    }
    // One complete page: every command's options, no pages it does not ship.
    for flag in ["\\-\\-retry", "\\-\\-trusted\\-only", "\\-\\-on\\-complete"] {
        assert!(page.contains(flag), "{flag} missing from the manual page");
    }
    assert!(!page.contains("localstream-send(1)"));
    // A page per command, in a folder.
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    let out = common::run(common::localstream().arg("manpage").arg("--dir").arg(&man1));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("localstream-send.1"));
    let send = std::fs::read_to_string(man1.join("localstream-send.1")).unwrap();
    assert!(send.contains(".TH localstream-send 1") && send.contains("\\-\\-retry"));
    // Where a folder cannot be made, one line says which.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = common::run(common::localstream().arg("manpage").arg("--dir").arg(&file));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("file"), "{}", text(&out.stderr));
    // A reader that stops early (`manpage | head -1`) is no failure: no
    // "connection lost: Broken pipe" (the pipe's reading end is closed
    // before anything is written, so every write fails).
    for args in [&["manpage"][..], &["completions", "bash"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = common::localstream()
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            (out.status.code(), text(&out.stderr)),
            (Some(0), String::new()),
            "{args:?}"
        );
    }
}

#[test]
fn settings_file_values_take_effect_and_flags_override_them() {
    let p = Pair::new();
    let free_port = || {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (port, other_port) = (free_port(), free_port());
    let saved = p.receiver.dir("from-settings");
    for (key, value) in [
        ("dir", saved.to_str().unwrap()),
        ("port", &port.to_string()),
        ("consent", "yes"),
    ] {
        let out = common::run(p.receiver.cmd().args(["config", "set", key, value]));
        assert_eq!(out.status.code(), Some(0), "{key}: {}", text(&out.stderr));
    }
    let shown = common::run(p.receiver.cmd().args(["config", "show"]));
    assert!(
        text(&shown.stdout).contains(&format!("port = {port}")),
        "{}",
        text(&shown.stdout)
    );
    let f = p.sender.file("out", "a.txt", b"settings");

    // No --dir, --port or --yes: the file's values apply (a stranger is
    // accepted although there is no terminal to ask on).
    let mut cmd = p.receiver.cmd();
    cmd.args(["listen", "--no-discovery", "--bind", "127.0.0.1", "--once"]);
    let mut l = common::spawn_listener(cmd, &saved);
    assert_eq!(l.port, port);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    assert_content(&saved.join("a.txt"), b"settings");

    // Flags win: another port, another folder, trusted peers only.
    let mut cmd = p.receiver.cmd();
    cmd.args([
        "listen",
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--trusted-only",
    ])
    .args(["--port", &other_port.to_string(), "--dir"])
    .arg(&p.inbox);
    let l = common::spawn_listener(cmd, &p.inbox);
    assert_eq!(l.port, other_port);
    let out = p.sender.send(l.port, &[&f]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // Refused right after the handshake, before the listener signs anything:
    // in plaintext, so shown as unverified.
    let err = text(&out.stderr);
    assert!(!err.contains("(409 "), "words only: {err}");
    assert!(err.contains("--trusted-only"), "{err}");
    assert!(err.contains("not authenticated"), "{err}");
    drop(l);

    // A broken file is an error naming its line, for every command that reads it.
    std::fs::write(
        p.receiver.home.join("config.toml"),
        "port = 1\n\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = common::run(p.receiver.cmd().arg("id"));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("config.toml line 3: unknown setting \"colour\" (the settings are name, "),
        "{err}"
    );
    // A bad value is refused, saying what it can be; the file is mended
    // with the commands, one line at a time.
    let out = common::run(p.receiver.cmd().args(["config", "set", "consent", "maybe"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "localstream: consent: \"maybe\" is not ask, yes or trusted-only (nothing changed)\n"
    );
    let out = common::run(p.receiver.cmd().args(["config", "unset", "colour"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "colour removed from {}: it is no setting of LocalStream's\n",
            p.receiver.home.join("config.toml").display()
        )
    );
    let out = common::run(p.receiver.cmd().arg("id"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(p.receiver.home.join("config.toml")).unwrap(),
        "port = 1\n"
    );
}

/// One name, one peer: `add` under a new name says the old one is gone,
/// and a name taken from another peer says so too.
#[test]
fn add_says_what_a_new_name_replaces() {
    let p = Pair::new();
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let add = |name: &str, port: u16| {
        let out =
            common::run(
                p.sender
                    .cmd()
                    .args(["add", "--yes", name, &format!("127.0.0.1:{port}")]),
            );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(add("studio", l.port).is_empty());
    assert_eq!(
        add("studio2", l.port),
        ["  its earlier name 'studio' is gone: `localstream send studio` no longer reaches it"]
    );
    // The same name again changes nothing.
    assert!(add("studio2", l.port).is_empty());
    let other = Node::new(Role::Other);
    let other_inbox = other.dir("inbox");
    let mut lo = other.listen(&other_inbox, &["--yes"]);
    let r_id = p.receiver.id();
    assert_eq!(
        add("studio2", lo.port),
        [format!(
            "  'studio2' named receiver (id {}) before; that peer keeps only its own name",
            &r_id.id[..8]
        )]
    );
    // `send studio2` reaches the other node now.
    let f = p.sender.file("out", "to-other.txt", b"other");
    let out = common::run(
        p.sender
            .cmd()
            .args(["send", "--yes", "--no-discovery", "studio2"])
            .arg(&f),
    );
    assert_sent_ok(&out, 1);
    lo.wait_received();
    assert_content(&other_inbox.join("to-other.txt"), b"other");
    assert!(names_in(&p.inbox).is_empty());
    let store: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.sender.store_path()).unwrap()).unwrap();
    let alias_of = |id: &str| {
        store["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node_id"] == id)
            .map(|e| e["alias"].clone())
            .unwrap()
    };
    assert_eq!(alias_of(&r_id.id), serde_json::Value::Null);
    assert_eq!(alias_of(&other.id().id), "studio2");
}

#[test]
fn add_names_a_peer_reachable_only_by_address() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let out = common::run(p.sender.cmd().args([
        "add",
        "--yes",
        "studio",
        &format!("127.0.0.1:{}", l.port),
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let r_id = p.receiver.id();
    assert_eq!(
        text(&out.stdout),
        format!(
            "added receiver ({}) [{}] as 'studio': its key is pinned now, and `localstream send \
             studio FILE` reaches it (where discovery finds it, else at 127.0.0.1:{})\n",
            &r_id.id[..8],
            r_id.fingerprint,
            l.port
        )
    );
    // Every store command takes the name it was given.
    let sessions = common::run(p.sender.cmd().args(["sessions", "studio"]));
    assert_eq!(
        sessions.status.code(),
        Some(0),
        "{}",
        text(&sessions.stderr)
    );
    assert_eq!(
        text(&sessions.stdout),
        format!(
            "receiver 'studio' ({}) [{}]  new\n  no sessions recorded yet\n",
            r_id.id, r_id.fingerprint
        )
    );
    // Its code is shown, as on every first contact.
    assert!(
        text(&out.stderr).contains("first contact with"),
        "{}",
        text(&out.stderr)
    );
    // The store pinned it under its proven id, with the address and the name.
    let store: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.sender.store_path()).unwrap()).unwrap();
    let entry = &store["peers"][0];
    assert_eq!(entry["node_id"], p.receiver.id().id.as_str());
    assert_eq!(entry["alias"], "studio");
    assert_eq!(entry["addresses"][0], format!("127.0.0.1:{}", l.port));

    // Now by name, with discovery off.
    let f = p.sender.file("out", "mix.wav", &random_bytes(81, 70_000));
    let out = common::run(
        p.sender
            .cmd()
            .args(["send", "--yes", "--no-discovery", "studio"])
            .arg(&f),
    );
    assert_sent_ok(&out, 1);
    assert!(
        text(&out.stderr).contains("(from the peer store)"),
        "{}",
        text(&out.stderr)
    );
    l.wait_received();
    assert_content(&p.inbox.join("mix.wav"), &std::fs::read(&f).unwrap());
    let out = common::run(p.sender.cmd().args(["trust", "--no-discovery", "studio"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!(
            "trusted: receiver 'studio' ({}) [{}]\n",
            r_id.id, r_id.fingerprint
        )),
        "{}",
        text(&out.stdout)
    );
    let out = common::run(p.sender.cmd().args(["block", "studio"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = common::run(p.sender.cmd().args(["forget", "studio"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&format!("forgot receiver 'studio' ({})", r_id.id)),
        "{}",
        text(&out.stdout)
    );
}

/// The unit `service install` writes (shown with `--print`) runs this
/// binary's `listen` with this home, and systemd accepts it.
#[test]
fn the_service_unit_runs_listen_and_passes_systemd_analyze() {
    let node = Node::new(Role::Receiver);
    let out = common::run(node.cmd().args(["service", "install", "--print"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let unit = text(&out.stdout);
    let home = node.home.canonicalize().unwrap();
    assert!(
        unit.contains(&format!(
            "--home \"{}\" listen --ui --no-progress",
            home.display()
        )),
        "{unit}"
    );
    assert!(
        unit.contains("[Install]\nWantedBy=default.target"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("localstream.service");
    std::fs::write(&file, &unit).unwrap();
    match std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
    {
        Ok(v) => assert!(
            v.status.success(),
            "systemd-analyze verify: {}{}",
            text(&v.stdout),
            text(&v.stderr)
        ),
        Err(_) => eprintln!("NOTE: systemd-analyze is not installed: the unit was not verified"),
    }
}

#[test]
fn a_stream_stopped_midway_is_not_promised_a_resume_on_either_side() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let mut sender = p
        .sender
        .send_cmd(l.port, &["-"])
        .args(["--name", "stream.bin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some bytes, then standard input stays open: the stream is midway.
    let mut input = sender.stdin.take().unwrap();
    input.write_all(&random_bytes(17, MIB)).unwrap();
    input.flush().unwrap();
    assert!(
        poll_until(STEP, || names_in(&p.inbox)
            .iter()
            .any(|n| n.starts_with("stream.bin"))),
        "the stream did not start: {}",
        l.stderr()
    );
    let (status, stderr) = interrupt_sender(&mut sender);
    drop(input);
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    // How far it got (no size to compare with), and no resume promised.
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("localstream: interrupted during stream.bin at ")
            && last.ends_with(" MiB; a stream is not resumed: send it again")
            && !last.contains('/'),
        "{stderr}"
    );
    l.wait_stderr("during stream.bin");
    l.wait_stderr("; a stream is not kept: sender must send it again");
    assert!(!l.stderr().contains("resumes when"), "{}", l.stderr());
    assert!(l.is_running(), "listener exited: {}", l.stderr());
    // Nothing of it is left.
    assert!(
        poll_until(STEP, || names_in(&p.inbox).is_empty()),
        "{:?}",
        names_in(&p.inbox)
    );
}

/// `listen --stdout | head -c 100`: the reader goes away early. Both sides
/// say so in words (no "Broken pipe" with an empty path).
#[test]
fn listen_stdout_whose_reader_stops_early_says_so_on_both_sides() {
    let p = Pair::new();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let logs = p.receiver.dir("logs");
    let mut listener = p
        .receiver
        .cmd()
        .args(["listen", "--no-discovery", "--bind", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--yes", "--once", "--stdout"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    assert!(
        poll_until(STEP, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "listener did not start"
    );
    // Nothing reads the output: the listener's first write fails at once.
    drop(listener.stdout.take());
    let f = p.sender.file("out", "big.bin", &random_bytes(93, 4 * MIB));
    let out = p.sender.send(port, &[&f]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.ends_with(
            "localstream: peer aborted: the receiver's standard output was closed by the \
             program reading it (`listen --stdout | head`?): the rest could not be written\n"
        ),
        "{err}"
    );
    let status = wait_deadline(&mut listener, STEP).expect("listener did not exit");
    let said = std::fs::read_to_string(logs.join("stderr")).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.ends_with(
            "transfer failed: standard output was closed by the program reading it during \
             big.bin: the rest was not written\n"
        ),
        "{said}"
    );
}

#[test]
fn listen_stdout_refuses_a_text_and_several_files_saying_what_came() {
    let p = Pair::new();
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut listener = p
        .receiver
        .cmd()
        .args(["listen", "--no-discovery", "--bind", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--yes", "--once", "--stdout"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        poll_until(STEP, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "listener did not start"
    );
    let none: [&str; 0] = [];
    let out = common::run(p.sender.send_cmd(port, &none).args(["--text", "hello"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "the receiver takes one file, for its standard output (`listen --stdout`), not a \
             text message"
        ),
        "{}",
        text(&out.stderr)
    );
    let a = p.sender.file("two", "a.txt", b"a");
    p.sender.file("two", "b.txt", b"b");
    let out = p.sender.send(port, &[a.parent().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(`listen --stdout`); this offer has 2 files and 1 folder"),
        "{}",
        text(&out.stderr)
    );
    // Neither ended `--once`, and nothing went to the output.
    assert!(
        listener.try_wait().unwrap().is_none(),
        "the listener exited"
    );
    common::interrupt(listener.id());
    let status = wait_deadline(&mut listener, STEP).expect("listener did not exit");
    assert_eq!(status.code(), Some(130));
    let mut got = Vec::new();
    listener
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert!(got.is_empty(), "{}", text(&got));
}

/// `--name` names the one file or folder sent (without `-`); with several
/// paths it is a usage error, not silently ignored.
#[test]
fn name_renames_the_one_file_or_folder_sent() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let f = p.sender.file("out", "draft-7.pdf", b"final");
    let out = common::run(
        p.sender
            .send_cmd(l.port, &[&f])
            .args(["--name", "report.pdf"]),
    );
    assert_sent_ok(&out, 1);
    l.wait_received();
    assert_content(&p.inbox.join("report.pdf"), b"final");
    let inner = p.sender.file("photos", "a.jpg", b"jpeg");
    let out = common::run(
        p.sender
            .send_cmd(l.port, &[inner.parent().unwrap()])
            .args(["--name", "trip"]),
    );
    assert_sent_ok(&out, 1);
    l.wait_received();
    assert_content(&p.inbox.join("trip").join("a.jpg"), b"jpeg");
    assert_eq!(names_in(&p.inbox), ["report.pdf", "trip"]);

    let g = p.sender.file("out", "other.txt", b"other");
    let out = common::run(p.sender.send_cmd(l.port, &[&f, &g]).args(["--name", "x"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "localstream: --name x: it names standard input (`-`) or the one file or folder \
         sent, and this send has 2 paths (rename them, or send them one by one)\n"
    );
    let out = common::run(p.sender.send_cmd(l.port, &[&f]).args(["--name", "a/b"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "localstream: --name a/b: not a usable file name\n"
    );
    assert_eq!(names_in(&p.inbox), ["report.pdf", "trip"]);
}

/// A port where something else answers (here a web server) is named as
/// such, not as a framing error.
#[test]
fn a_port_where_something_else_answers_is_said_so() {
    let p = Pair::new();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = server.accept() {
            let _ = c.write_all(
                b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html></html>",
            );
            let mut sink = [0u8; 4096];
            let _ = c.read(&mut sink);
        }
    });
    let f = p.sender.file("out", "a.txt", b"a");
    let out = p.sender.send(port, &[&f]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "localstream: 127.0.0.1:{port} does not answer as a LocalStream listener (its first \
             bytes were not a handshake: "
        )) && err.contains("); is it the right address and port?"),
        "{err}"
    );
}
