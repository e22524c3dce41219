//! `send --to A --to B PATH...`: the same files to several receivers at
//! once (two listeners on 127.0.0.1, different ports), each receiving the
//! exact bytes; one line per receiver and a summary; the exit status is 0
//! only if every receiver got everything.

#![allow(clippy::unwrap_used)]

use super::common;

use common::{Node, Role, assert_content, names_in, text};

/// `send --yes --no-discovery --to 127.0.0.1:P... FILES`.
fn send_to(sender: &Node, ports: &[u16], files: &[&std::path::Path]) -> std::process::Output {
    let mut cmd = sender.cmd();
    cmd.args(["send", "--yes", "--no-discovery"]);
    for p in ports {
        cmd.arg("--to").arg(format!("127.0.0.1:{p}"));
    }
    common::run(cmd.args(files))
}

#[test]
fn two_receivers_at_once_each_get_the_exact_bytes() {
    let sender = Node::new(Role::Sender);
    let (r1, r2) = (Node::new(Role::Receiver), Node::new(Role::Other));
    let (in1, in2) = (r1.dir("inbox"), r2.dir("inbox"));
    let mut l1 = r1.listen(&in1, &["--yes", "--once"]);
    let mut l2 = r2.listen(&in2, &["--yes", "--once"]);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let a = sender.file("out", "big.bin", &big);
    let b = sender.file("out", "note.txt", b"for both of you\n");

    let out = send_to(&sender, &[l1.port, l2.port], &[&a, &b]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    // One result line per receiver, then the summary.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("sent 2 files, "))
            .count(),
        2,
        "{stdout}"
    );
    for name in ["receiver", "other"] {
        assert!(
            lines.iter().any(|l| l.contains(&format!(" to {name} ["))),
            "no line for {name}: {stdout}"
        );
    }
    assert_eq!(lines[2], "sent to all 2 receivers", "{stdout}");
    for (l, inbox) in [(&mut l1, &in1), (&mut l2, &in2)] {
        assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
        assert_eq!(names_in(inbox), ["big.bin", "note.txt"]);
        assert_content(&inbox.join("big.bin"), &big);
        assert_content(&inbox.join("note.txt"), b"for both of you\n");
    }
}

#[test]
fn one_receiver_refusing_fails_the_send_and_the_summary_says_who() {
    let sender = Node::new(Role::Sender);
    let (r1, r2) = (Node::new(Role::Receiver), Node::new(Role::Other));
    let (in1, in2) = (r1.dir("inbox"), r2.dir("inbox"));
    let mut l1 = r1.listen(&in1, &["--yes", "--once"]);
    // Takes offers from trusted peers only: the sender is not one.
    let l2 = r2.listen(&in2, &["--trusted-only"]);
    let a = sender.file("out", "report.pdf", b"%PDF-1.7 for one of you");

    let out = send_to(&sender, &[l1.port, l2.port], &[&a]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let second = format!("127.0.0.1:{}", l2.port);
    assert_eq!(
        stdout.lines().last(),
        Some(
            format!(
                "sent to 1 of 2 receivers; {second}: refused: peer not trusted, or its key \
                 differs from the pinned one"
            )
            .as_str()
        ),
        "{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sent 1 file, ") && l.contains(" to receiver [")),
        "{stdout}"
    );
    // The receiver that refused has its own line on stderr.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("localstream: {second}: "))
                && l.contains("the receiver accepts only peers it trusts (--trusted-only)")),
        "{stderr}"
    );
    assert_eq!(l1.wait_exit(), Some(0), "{}", l1.stderr());
    assert_content(&in1.join("report.pdf"), b"%PDF-1.7 for one of you");
    assert!(names_in(&in2).is_empty(), "{:?}", names_in(&in2));
}

#[test]
fn receivers_are_named_once_and_a_group_comes_from_the_settings() {
    let sender = Node::new(Role::Sender);
    let f = sender.file("out", "a.txt", b"a");
    let out = common::run(
        sender
            .cmd()
            .args([
                "send",
                "--no-discovery",
                "--to",
                "127.0.0.1:9",
                "--to",
                "127.0.0.1:9",
            ])
            .arg(&f),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "localstream: 127.0.0.1:9 is named twice: each receiver gets the files once"
    );
    let out = common::run(
        sender
            .cmd()
            .args(["send", "--no-discovery", "--to", "@office"])
            .arg(&f),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "localstream: no group 'office' in the settings: make it with `localstream config set \
         group.office PEER,PEER`"
    );

    // A group of two listeners.
    let (r1, r2) = (Node::new(Role::Receiver), Node::new(Role::Other));
    let (in1, in2) = (r1.dir("inbox"), r2.dir("inbox"));
    let mut l1 = r1.listen(&in1, &["--yes", "--once"]);
    let mut l2 = r2.listen(&in2, &["--yes", "--once"]);
    let members = format!("127.0.0.1:{},127.0.0.1:{}", l1.port, l2.port);
    let set = common::run(
        sender
            .cmd()
            .args(["config", "set", "group.office", &members]),
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    let out = common::run(
        sender
            .cmd()
            .args(["send", "--yes", "--no-discovery", "--to", "@office"])
            .arg(&f),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().last(),
        Some("sent to all 2 receivers")
    );
    for (l, inbox) in [(&mut l1, &in1), (&mut l2, &in2)] {
        assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
        assert_content(&inbox.join("a.txt"), b"a");
    }
}
