//! What a person reads on the terminal: refusals said in words on both
//! sides (no status codes, no "failed"), one line on the receiver for every
//! peer it refuses, the summary line ("1 file", a rate in a unit that
//! reads), the wire note only when compression saved something, errors
//! without the OS's error numbers, and `--quiet`.

#![allow(clippy::unwrap_used)]

use super::common;

use common::{Node, Pair, Role, text};

/// The last line of `out`'s stderr, after checking it failed with 1.
fn failed_last_line(out: &std::process::Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    stderr.lines().last().unwrap_or_default().to_owned()
}

#[test]
fn an_offer_nobody_can_answer_is_refused_in_words_on_both_sides() {
    let p = Pair::new();
    let f = p.sender.file("out", "big.bin", b"not wanted here");
    // Stdin is not a terminal: nobody can be asked.
    let l = p.receiver.listen(&p.inbox, &[]);

    let last = failed_last_line(&p.sender.send(l.port, &[&f]));
    assert!(
        last.starts_with(
            "localstream: receiver refused: the receiver accepts only peers it trusts (it has \
             no terminal to ask on)"
        ),
        "{last}"
    );
    assert!(
        !common::has_word(&last, "406") && !last.contains("failed"),
        "{last}"
    );

    l.wait_stderr(&format!(
        "refused sender's offer: not trusted, and there is no terminal to ask on \
         (`localstream trust {}`, or run `listen --yes`)\n",
        &p.sender.id().id[..8]
    ));
    let err = l.stderr();
    assert!(!err.contains("transfer failed"), "{err}");
    // The code of a connection that was refused is of no use: not shown.
    assert!(!err.contains("verification code"), "{err}");
}

#[test]
fn peers_refused_for_who_they_are_get_one_plain_line_on_the_receiver() {
    let p = Pair::new();
    let f = p.sender.file("out", "hello.txt", b"hello");

    let l = p.receiver.listen(&p.inbox, &["--trusted-only"]);
    failed_last_line(&p.sender.send(l.port, &[&f]));
    l.wait_stderr(&format!(
        "refused sender's offer: never met here, so not trusted (--trusted-only; to let it in, \
         accept one transfer from it with `localstream listen` (or `--ui`), comparing the \
         codes, then `localstream trust {}`)\n",
        &p.sender.id().id[..8]
    ));
    let err = l.stderr();
    assert!(!err.contains("verification code"), "{err}");
    assert!(!err.contains("WARN"), "{err}");
    drop(l);

    // Met once (accepted), then blocked.
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    common::assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_eq!(l.wait_exit(), Some(0), "stderr: {}", l.stderr());
    let id = p.sender.id().id;
    let out = common::run(p.receiver.cmd().args(["block", &id[..8]]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    failed_last_line(&p.sender.send(l.port, &[&f]));
    l.wait_stderr("refused sender: blocked\n");
    assert!(!l.stderr().contains("transfer failed"), "{}", l.stderr());
}

#[test]
fn a_tiny_file_is_1_file_at_a_readable_rate_with_no_wire_note() {
    let p = Pair::new();
    let content = b"hello, world!\n";
    let f = p.sender.file("out", "tiny.txt", content);
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);

    let out = common::run(p.sender.send_cmd(l.port, &[&f]).args(["--compress", "on"]));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("sent 1 file, 14 B in "), "{stdout}");
    // 14 bytes never make 0.1 MiB/s: the rate is in B/s or KiB/s.
    assert!(
        stdout.contains(" B/s) to receiver [") || stdout.contains(" KiB/s) to receiver ["),
        "{stdout}"
    );
    // Compression ran and could not make 14 bytes smaller.
    assert!(!stderr.contains("on the wire"), "{stderr}");

    let (line, _) = l.wait_received();
    assert!(line.starts_with("received 1 file, 14 B in "), "{line}");
    assert!(!line.contains("MiB/s"), "{line}");
    let rest = l.all_stdout().join("\n");
    assert!(!rest.contains("on the wire"), "{rest}");
    // The trust hint comes after the transfer went through, not before.
    let err = l.stderr();
    let code = err
        .find("verification code")
        .unwrap_or_else(|| panic!("{err}"));
    let hint = err
        .find("if the codes matched: `localstream trust ")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(code < hint, "{err}");
    assert!(
        err.contains("The code is new for each connection; the fingerprint in"),
        "{err}"
    );
    assert_eq!(err.matches("verification code").count(), 1, "{err}");
}

#[test]
fn errors_name_a_missing_file_once_and_without_os_error_numbers() {
    let n = Node::new(Role::Sender);
    let missing = n.dir("out").join("missing-file.txt");
    let out = common::run(
        n.cmd()
            .args(["send", "--no-discovery", "127.0.0.1:9"])
            .arg(&missing),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "localstream: {}: No such file or directory\n",
            missing.display()
        )
    );
}

#[test]
fn quiet_send_and_listen_print_only_their_result_lines() {
    let p = Pair::new();
    let f = p.sender.file("out", "q.txt", b"quiet please");
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once", "--quiet"]);
    assert_eq!(l.stdout.len(), 1, "only where it listens: {:?}", l.stdout);

    let out = common::run(p.sender.send_cmd(l.port, &[&f]).arg("--quiet"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "nothing but the result");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("sent 1 file, 12 B in "), "{stdout}");

    let (line, paths) = l.wait_received();
    assert!(line.starts_with("received 1 file, 12 B in "), "{line}");
    assert_eq!(paths, [p.inbox.join("q.txt")]);
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(l.stderr(), "", "no code, no hint");
}

#[test]
fn a_sender_refused_by_trusted_only_reads_words_and_the_code_only_with_v() {
    let p = Pair::new();
    let f = p.sender.file("out", "hello.txt", b"hello");
    let l = p.receiver.listen(&p.inbox, &["--trusted-only"]);
    let id = p.sender.id().id;

    let out = p.sender.send(l.port, &[&f]);
    assert_eq!(
        text(&out.stderr).lines().last().unwrap_or_default(),
        format!(
            "localstream: the peer (or someone on the path: a plaintext alert is not \
             authenticated) said: the receiver accepts only peers it trusts (--trusted-only) \
             and has never met this node; its user can let this node in by accepting one \
             transfer from it without --trusted-only, after comparing verification codes, then \
             `localstream trust {}`",
            &id[..8]
        )
    );
    assert_eq!(out.status.code(), Some(1));

    // The status code is for -v.
    let out = common::run(p.sender.send_cmd(l.port, &[&f]).arg("-v"));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("status=409"), "{stderr}");
    assert!(
        !stderr.lines().last().unwrap_or_default().contains("(409 "),
        "{stderr}"
    );
}
