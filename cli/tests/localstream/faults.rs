//! Fault injection: transfers through a proxy that cuts, stalls or corrupts
//! the connection, and processes killed with SIGKILL mid-transfer. After each
//! fault: the sender fails with a clear message, nothing appears under the
//! final name, the listener goes on, and the same send run again resumes and
//! delivers the file byte for byte.
//!
//! Everything runs on 127.0.0.1 with discovery off.

#![allow(clippy::unwrap_used)]

use super::common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    Listener, Pair, STEP, assert_content, assert_sent_ok, names_in, poll_until, random_bytes, text,
};
use localstream_testkit::proxy::{Close, Mode, Proxy};

const MIB: usize = 1024 * 1024;
/// The file of the proxy cases.
const SIZE: usize = 24 * MIB;
/// Where in the client->server stream the proxy strikes: well inside the data.
const AT: u64 = 8 * MIB as u64;
/// Partial files (kept for a resume) end so.
const PARTIAL: &str = ".lspart";

/// A listener (`--yes`) and a sender with a random file of `size` bytes.
struct Case {
    p: Pair,
    l: Listener,
    name: String,
    file: PathBuf,
    content: Vec<u8>,
}

impl Case {
    fn new(name: &str, seed: u64, size: usize) -> Case {
        let p = Pair::new();
        let content = random_bytes(seed, size);
        let file = p.sender.file("out", name, &content);
        let l = p.receiver.listen(&p.inbox, &["--yes"]);
        Case {
            p,
            l,
            name: name.to_owned(),
            file,
            content,
        }
    }

    /// Runs the send through `proxy` to completion.
    fn send(&self, proxy: &Proxy) -> Output {
        common::run(&mut self.p.sender.send_cmd(proxy.port, &[&self.file]))
    }

    /// After a failed transfer: no file under its final name, only partials,
    /// and the listener still running, having reported the failure.
    fn assert_nothing_delivered(&mut self, listener_says: &str) {
        self.l.wait_stderr(listener_says);
        assert!(self.l.is_running(), "listener exited: {}", self.l.stderr());
        let names = names_in(&self.p.inbox);
        assert!(
            names
                .iter()
                .all(|n| n.starts_with(&self.name) && n.ends_with(PARTIAL)),
            "only partial files may be left: {names:?}"
        );
        assert!(
            !self.p.inbox.join(&self.name).exists(),
            "{names:?}: a file under the final name"
        );
    }

    /// Runs the same send again through a pass-through proxy: it must resume
    /// (only the rest crosses the wire) and deliver the file byte for byte.
    fn assert_resumes(&mut self) {
        let proxy = Proxy::start(self.l.port, Mode::Pass);
        let out = self.send(&proxy);
        let stderr = text(&out.stderr);
        assert_sent_ok(&out, 1);
        self.l.wait_received();
        assert_content(&self.p.inbox.join(&self.name), &self.content);
        let up = proxy.last().unwrap().up;
        let at = resumed_at(&stderr, &self.name)
            .unwrap_or_else(|| panic!("no `resuming {} at ...` line:\n{stderr}", self.name));
        eprintln!("resumed at {at} bytes; {up} bytes crossed the wire");
        let size = self.content.len() as u64;
        assert!(at > 0 && at < size, "resumed at {at} of {size}");
        assert!(
            up < size - at + 256 * 1024,
            "{up} bytes sent for the {} bytes left",
            size - at
        );
        assert!(
            up < size - MIB as u64,
            "{up} bytes crossed the wire for a {size}-byte file"
        );
        self.assert_clean();
    }

    /// Only the delivered file is left in the destination.
    fn assert_clean(&self) {
        assert_eq!(names_in(&self.p.inbox), std::slice::from_ref(&self.name));
    }
}

/// The sender failed (exit 1) with one `localstream: ...` line containing
/// one of `says`; returns that line.
fn assert_send_failed(out: &Output, says: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("localstream: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        says.iter().any(|s| line.contains(s)),
        "unexpected error {line:?}, expected one of {says:?}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    eprintln!("sender said: {line}");
    line.to_owned()
}

/// The offset `N` of the sender's `resuming <name> at byte N (...)` line.
fn resumed_at(stderr: &str, name: &str) -> Option<u64> {
    let rest = stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("resuming {name} at ")))?;
    let rest = rest.strip_prefix("byte ").unwrap_or(rest);
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What a sender whose connection was cut under it says: during a file, or
/// (when the socket had taken every byte before the cut) at the end.
const CUT: &[&str] = &[
    "connection to receiver lost during ",
    "connection to receiver lost at ",
];

/// What the listener says of a sender that went away during `name`.
fn disconnected(name: &str) -> String {
    format!("sender disconnected during {name}; ")
}

/// Cuts the connection mid-file (`close` decides how), then resumes.
fn cut_then_resume(name: &str, seed: u64, close: Close) {
    let mut c = Case::new(name, seed, SIZE);
    let proxy = Proxy::start(c.l.port, Mode::Cut { after: AT, close });
    let out = c.send(&proxy);
    assert!(proxy.last().unwrap().tripped);
    assert_send_failed(&out, CUT);
    c.assert_nothing_delivered(&disconnected(&c.name.clone()));
    c.assert_resumes();
}

/// A cut in the second batch of a large send (more than 8192 entries): the
/// first batch was delivered and stays; the same send again resumes the big
/// file of the second batch where the cut left it, and everything arrives.
#[test]
fn a_cut_in_a_later_batch_keeps_the_first_and_resumes_the_rest() {
    let p = Pair::new();
    let root = p.sender.dir("out").join("tree");
    let small = 8_300;
    for i in 0..small {
        let sub = root.join(format!("d{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i:05}")), random_bytes(i, 64)).unwrap();
    }
    // Walked last: in the second batch.
    let big = random_bytes(77, SIZE);
    std::fs::create_dir_all(root.join("zz")).unwrap();
    std::fs::write(root.join("zz/big.bin"), &big).unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    // Well past the first batch's bytes (about 530 KB of files), inside the big file.
    let proxy = Proxy::start(
        l.port,
        Mode::Cut {
            after: AT,
            close: Close::Rst,
        },
    );
    let out = common::run(&mut p.sender.send_cmd(proxy.port, &[&root]));
    assert!(proxy.last().unwrap().tripped);
    assert_send_failed(&out, CUT);
    l.wait_stderr(&disconnected("tree/zz/big.bin"));
    // The first batch is there under its names; the big file only as a partial.
    let got = p.inbox.join("tree");
    assert!(got.join("d00/f00000").is_file());
    assert!(!got.join("zz/big.bin").exists());
    assert!(
        names_in(&got.join("zz"))
            .iter()
            .all(|n| n.ends_with(PARTIAL)),
        "{:?}",
        names_in(&got.join("zz"))
    );

    let pass = Proxy::start(l.port, Mode::Pass);
    let out = common::run(&mut p.sender.send_cmd(pass.port, &[&root]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let at = resumed_at(&stderr, "tree/zz/big.bin")
        .unwrap_or_else(|| panic!("no `resuming tree/zz/big.bin at ...` line:\n{stderr}"));
    assert!(at > 0 && at < SIZE as u64, "resumed at {at}");
    assert_content(&got.join("zz/big.bin"), &big);
    // The resent small files took free names beside the first copies (the
    // listener never overwrites); the first copies are intact.
    assert_content(&got.join("d00/f00000"), &random_bytes(0, 64));
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn cut_mid_file_with_a_fin_then_resume() {
    cut_then_resume("cut-fin.bin", 61, Close::Fin);
}

#[test]
fn cut_mid_file_with_a_reset_then_resume() {
    cut_then_resume("cut-rst.bin", 62, Close::Rst);
}

/// The idle timeout (30 s, `conn::IDLE_TIMEOUT`) has no flag or variable to
/// shorten it, so this checks what can be checked in test time: a stalled
/// connection leaves the sender waiting (not failing, not finishing) and
/// nothing under the final name; once the stalled connection is cut the
/// sender fails clearly, and the transfer resumes.
#[test]
fn stall_mid_file_then_cut_then_resume() {
    let mut c = Case::new("stall.bin", 63, SIZE);
    let proxy = Proxy::start(c.l.port, Mode::Stall { after: AT });
    let mut sender = localstream_testkit::spawn(
        &mut c.p.sender.send_cmd(proxy.port, &[&c.file]),
        "stalled send",
    );
    assert!(poll_until(STEP, || proxy.last().is_some_and(|s| s.tripped)));
    // The point here is that nothing happens for a while.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        sender.child.try_wait().unwrap().is_none(),
        "the sender gave up on a stalled connection within a second: {}",
        sender.stderr.lock().unwrap()
    );
    assert!(!c.p.inbox.join(&c.name).exists());
    assert!(c.l.is_running());
    proxy.cut_all(Close::Fin);
    let status = common::wait_deadline(&mut sender.child, STEP)
        .unwrap_or_else(|| panic!("the sender did not notice the cut"));
    // Let the stderr reader thread catch up with the exit.
    let stderr = || sender.stderr.lock().unwrap().clone();
    poll_until(STEP, || stderr().contains("localstream: "));
    let out = Output {
        status,
        stdout: vec![],
        stderr: stderr().into_bytes(),
    };
    // The proxy stops reading at the stall, but its socket's receive buffer
    // (autotuned up to `net.ipv4.tcp_rmem`'s maximum, 32 MiB here) may take
    // every remaining byte first: then the sender's last word is that the
    // receiver never confirmed.
    assert_send_failed(
        &out,
        &[
            CUT,
            &["everything was sent, but the receiver did not confirm it"],
        ]
        .concat(),
    );
    c.assert_nothing_delivered(&disconnected(&c.name.clone()));
    c.assert_resumes();
}

#[test]
fn corrupted_data_is_rejected_on_both_sides_then_resume() {
    let mut c = Case::new("corrupt.bin", 64, SIZE);
    let proxy = Proxy::start(
        c.l.port,
        Mode::Corrupt {
            at: AT + 12_345,
            mask: 0x04,
        },
    );
    let out = c.send(&proxy);
    assert!(proxy.last().unwrap().tripped);
    let line = assert_send_failed(&out, &["record authentication failed"]);
    assert!(line.contains("peer aborted"), "{line}");
    c.assert_nothing_delivered("transfer failed: record authentication failed");
    c.assert_resumes();
}

#[test]
fn a_file_changed_after_the_interruption_is_sent_from_the_start() {
    let mut c = Case::new("changed.bin", 65, SIZE);
    let proxy = Proxy::start(
        c.l.port,
        Mode::Cut {
            after: AT,
            close: Close::Fin,
        },
    );
    assert_send_failed(&c.send(&proxy), CUT);
    c.assert_nothing_delivered(&disconnected(&c.name.clone()));

    // One byte near the start changes: the prefix the receiver holds is stale.
    c.content[1000] ^= 0xff;
    std::fs::write(&c.file, &c.content).unwrap();
    let proxy = Proxy::start(c.l.port, Mode::Pass);
    let out = c.send(&proxy);
    let stderr = text(&out.stderr);
    assert_sent_ok(&out, 1);
    c.l.wait_received();
    assert_content(&c.p.inbox.join(&c.name), &c.content);
    assert!(
        stderr.contains(&format!(
            "{}: changed since the interrupted transfer; sending it from the start",
            c.name
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("resuming"), "{stderr}");
    let up = proxy.last().unwrap().up;
    assert!(up >= SIZE as u64, "only {up} bytes crossed the wire");
    c.assert_clean();
}

#[test]
fn send_retry_resumes_after_a_reset() {
    let mut c = Case::new("retry.bin", 66, SIZE);
    let proxy = Proxy::start(c.l.port, Mode::Pass);
    // Only the first connection breaks.
    proxy.queue(&[Mode::Cut {
        after: AT,
        close: Close::Rst,
    }]);
    let out = common::run(
        c.p.sender
            .send_cmd(proxy.port, &[&c.file])
            .arg("--retry=20"),
    );
    let stderr = text(&out.stderr);
    assert_sent_ok(&out, 1);
    c.l.wait_received();
    assert_content(&c.p.inbox.join(&c.name), &c.content);
    assert!(stderr.contains("retrying in 1 s (attempt 2"), "{stderr}");
    let conns = proxy.conns();
    assert_eq!(conns.len(), 2, "{conns:?}");
    assert!(conns[0].tripped);
    let at = resumed_at(&stderr, &c.name).unwrap_or_else(|| panic!("no resume:\n{stderr}"));
    assert!(
        conns[1].up < SIZE as u64 - at + 256 * 1024,
        "{conns:?}, resumed at {at}"
    );
    eprintln!(
        "retried: resumed at {at}; {} bytes on the retry",
        conns[1].up
    );
    c.assert_clean();
}

/// A small deterministic generator (xorshift64*), so a failing iteration
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Which process a kill loop iteration kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Sender,
    Receiver,
}

const KILL_ITERATIONS: usize = 20;
const KILL_SEED: u64 = 0x5eed_f4b1_d00d;

/// SIGKILL the sender or the receiver at a seeded point of a transfer, then
/// check that no wrong file exists under the final name, restart what was
/// killed, and run the send again: it completes byte for byte.
///
/// The point is a number of client->server bytes (seeded, from 5% of the
/// file to its end, or to 10 MiB before it for the sender): on loopback a transfer takes well under a second, so a delay
/// in time would mostly land before or after the data; bytes land inside it,
/// while the kill still races the transfer (a late kill may find the file
/// complete, which is fine as long as it is correct).
#[test]
fn kill_9_loop() {
    let started = Instant::now();
    let mut rng = Rng(KILL_SEED);
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let mut total_resumed = 0;
    for i in 0..KILL_ITERATIONS {
        let size = rng.range(16 * MIB as u64, 32 * MIB as u64 + 1) as usize;
        let victim = if rng.next().is_multiple_of(2) {
            Victim::Sender
        } else {
            Victim::Receiver
        };
        // A killed sender's socket buffers (megabytes) still reach the
        // receiver, so its kill point stops well before the end.
        let last = match victim {
            Victim::Sender => size as u64 - 10 * MIB as u64,
            Victim::Receiver => size as u64,
        };
        let threshold = rng.range(size as u64 / 20, last);
        let name = format!("kill-{i:02}.bin");
        let content = random_bytes(rng.next(), size);
        let file = p.sender.file("out", &name, &content);
        let dest = p.inbox.join(&name);

        let proxy = Proxy::start(l.port, Mode::Pass);
        let failed_before = failures(&l);
        let mut sender =
            localstream_testkit::spawn(&mut p.sender.send_cmd(proxy.port, &[&file]), "send");
        let reached = localstream_testkit::poll_until(STEP, Duration::from_millis(1), || {
            proxy.up() >= threshold || sender.child.try_wait().unwrap().is_some()
        });
        assert!(reached, "iteration {i}: the transfer did not get going");
        let at = proxy.up();
        let t0 = Instant::now();
        match victim {
            Victim::Sender => {
                let _ = sender.child.kill();
                let _ = sender.child.wait();
                // The listener finishes the transfer one way or the other.
                let ended = poll_until(STEP, || failures(&l) > failed_before || dest.exists());
                assert!(
                    ended,
                    "iteration {i}: the listener did not end the transfer"
                );
                if dest.exists() {
                    l.wait_received();
                }
            }
            Victim::Receiver => {
                localstream_testkit::signal(l.pid(), "KILL");
                let end = common::wait_deadline(&mut sender.child, STEP);
                assert!(end.is_some(), "iteration {i}: the sender did not notice");
            }
        }
        let complete = dest.exists();
        if complete {
            assert_content(&dest, &content);
        }
        let names = names_in(&p.inbox);
        assert!(
            names.iter().all(|n| *n == name || n.ends_with(PARTIAL)),
            "iteration {i}: {names:?}"
        );
        let held: u64 = names
            .iter()
            .filter(|n| n.ends_with(PARTIAL))
            .map(|n| std::fs::metadata(p.inbox.join(n)).map_or(0, |m| m.len()))
            .sum();
        eprintln!(
            "iteration {i}: killed the {victim:?} after {at} of {size} bytes had passed the \
             proxy ({} ms to end); file {}, partial {held} bytes",
            t0.elapsed().as_millis(),
            if complete { "complete" } else { "absent" }
        );
        if victim == Victim::Receiver {
            l = p.receiver.listen(&p.inbox, &["--yes"]);
        }
        if complete {
            std::fs::remove_file(&dest).unwrap();
            std::fs::remove_file(&file).unwrap();
            continue;
        }
        let proxy = Proxy::start(l.port, Mode::Pass);
        let out = common::run(&mut p.sender.send_cmd(proxy.port, &[&file]));
        assert_sent_ok(&out, 1);
        l.wait_received();
        assert_content(&dest, &content);
        let up = proxy.last().unwrap().up;
        let resumed = resumed_at(&text(&out.stderr), &name);
        eprintln!(
            "iteration {i}: re-sent: {up} bytes crossed the wire (resumed at {})",
            resumed.map_or("-".to_owned(), |r| r.to_string())
        );
        if let Some(r) = resumed {
            assert!(
                up < size as u64 - r + 256 * 1024,
                "iteration {i}: {up} bytes sent to resume at {r} of {size}"
            );
            total_resumed += 1;
        }
        std::fs::remove_file(&dest).unwrap();
        std::fs::remove_file(&file).unwrap();
        let left = names_in(&p.inbox);
        assert!(left.is_empty(), "iteration {i}: left behind: {left:?}");
    }
    eprintln!(
        "{KILL_ITERATIONS} iterations in {:.1} s, {total_resumed} resumed",
        started.elapsed().as_secs_f64()
    );
    assert!(total_resumed > 0, "no interrupted transfer resumed");
}

/// How many transfers the listener reported as failed (or stopped, to be
/// resumed) so far.
fn failures(l: &Listener) -> usize {
    let said = l.stderr();
    said.matches("transfer failed").count() + said.matches("; it resumes when ").count()
}

/// A `listen --yes --once` and a send of `files` to it through a valve:
/// the first 1.5 MiB pass, then the sender blocks on a full socket, far from
/// the end of its first (large) file, until the valve opens. Returns once
/// the receiver holds at least 1 MiB of it.
fn held_mid_file<P: AsRef<std::path::Path>>(
    p: &Pair,
    files: &[P],
) -> (Listener, std::process::Child, common::Valve) {
    let l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let valve = common::Valve::start(l.port, 3 * MIB / 2);
    let sender = p
        .sender
        .send_cmd(valve.port, files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let partial = || {
        names_in(&p.inbox)
            .iter()
            .filter(|n| n.ends_with(PARTIAL))
            .filter_map(|n| std::fs::metadata(p.inbox.join(n)).ok())
            .any(|m| m.len() >= MIB as u64)
    };
    if !poll_until(STEP, partial) {
        l.fail("the first record was not written");
    }
    (l, sender, valve)
}

/// A file that shrinks while it is sent ends short and fails alone: the
/// sender says so once, in words (not also as a status), the receiver says
/// what arrived and discards it, and the next file arrives.
#[test]
fn a_file_that_shrinks_while_it_is_sent_fails_alone_and_both_sides_say_why() {
    let p = Pair::new();
    let big = p.sender.file("out", "big.bin", &random_bytes(91, 48 * MIB));
    let after = p.sender.file("out", "after.txt", b"after");
    let (mut l, sender, valve) = held_mid_file(&p, &[&big, &after]);
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(0)
        .unwrap();
    valve.open();
    let out = sender.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let shrank: Vec<&str> = err.lines().filter(|l| l.contains("big.bin")).collect();
    assert_eq!(shrank.len(), 1, "one line for it:\n{err}");
    assert!(
        shrank[0].starts_with(&format!(
            "{}: it shrank while it was sent (it had 48.00 MiB when counted, ",
            big.display()
        )) && shrank[0].ends_with(" could be read): it is not delivered, the rest goes on"),
        "{err}"
    );
    assert!(
        err.ends_with("localstream: 1 of 2 files did not arrive\n"),
        "{err}"
    );

    assert_eq!(l.wait_exit(), Some(1), "{}", l.stderr());
    let said = l.stderr();
    let lines: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("big.bin") || l.contains("discarded"))
        .collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines[0].starts_with("not received from sender: big.bin: it failed verification: ")
            && lines[0].ends_with(
                " of the 48.00 MiB offered arrived (it changed on the sender while it was \
                 sent?): discarded"
            ),
        "{said}"
    );
    assert!(lines[1].starts_with("1 file from sender ["), "{said}");
    assert!(
        l.all_stdout()
            .iter()
            .any(|line| line.starts_with("received 1 file, ")),
        "the next file's line"
    );
    assert_eq!(names_in(&p.inbox), ["after.txt"]);
    assert_content(&p.inbox.join("after.txt"), b"after");
}

/// A file that grows while it is sent: what it had when counted goes and
/// arrives verified, and the sender says the rest did not (exit status 1,
/// as `tar` does for a file that changed as it was read).
#[test]
fn a_file_that_grows_while_it_is_sent_says_so_and_what_it_had_arrives() {
    let p = Pair::new();
    let content = random_bytes(92, 48 * MIB);
    let log = p.sender.file("out", "app.log", &content);
    let (mut l, sender, valve) = held_mid_file(&p, &[&log]);
    {
        use std::io::Write;
        let mut f = std::fs::File::options().append(true).open(&log).unwrap();
        f.write_all(b"one more line\n").unwrap();
    }
    valve.open();
    let out = sender.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: it grew while it was sent: what it had when counted (48.00 MiB) went, the rest \
             did not; send it again for all of it\n",
            log.display()
        )),
        "{err}"
    );
    assert!(
        err.ends_with(
            "localstream: sent 1 file; 1 grew while it was sent: only what it had when counted \
             went (see above)\n"
        ),
        "{err}"
    );
    assert_eq!(l.wait_exit(), Some(0), "{}", l.stderr());
    assert_content(&p.inbox.join("app.log"), &content);
}

/// A new folder cut in the middle: the receiver makes it under a hidden
/// name, and it gets its name anyway with what arrived whole (the small
/// files before the cut; the 900 KiB files, created under their own names
/// inside it, those that arrived whole), never with one that did not;
/// nothing hidden is left. The same command again
/// brings the rest, nothing twice.
#[test]
fn a_new_folder_cut_mid_file_gets_its_name_with_only_what_arrived_whole() {
    let p = Pair::new();
    let small: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let content = format!("small file {i}\n").into_bytes();
            p.sender
                .file("out/tree/a", &format!("{i:02}.txt"), &content);
            content
        })
        .collect();
    // 9 MiB in all: the cut at 8 MiB is inside one of them.
    let mid: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            let content = random_bytes(70 + i, 900 * 1024);
            p.sender.file("out/tree/b", &format!("m{i}.bin"), &content);
            content
        })
        .collect();
    p.sender.file("out/tree/c", "z.txt", b"after them\n");
    let tree = p.sender.dir("out/tree");
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let proxy = Proxy::start(
        l.port,
        Mode::Cut {
            after: AT,
            close: Close::Fin,
        },
    );
    let out = common::run(&mut p.sender.send_cmd(proxy.port, &[&tree]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    l.wait_stderr("sender disconnected");
    let named = p.inbox.join("tree");
    assert!(
        poll_until(STEP, || named.is_dir()),
        "{:?}",
        names_in(&p.inbox)
    );
    assert_eq!(names_in(&p.inbox), ["tree"]);
    for (i, content) in small.iter().enumerate() {
        assert_content(&named.join(format!("a/{i:02}.txt")), content);
    }
    let arrived = names_in(&named.join("b"));
    assert!(arrived.len() < mid.len(), "{arrived:?}");
    for (i, name) in arrived.iter().enumerate() {
        assert_eq!(*name, format!("m{i}.bin"), "{arrived:?}");
        assert_content(&named.join("b").join(name), &mid[i]);
    }
    // (Its folders were made before any data: the last one is empty.)
    assert!(
        names_in(&named.join("c")).is_empty(),
        "{:?}",
        names_in(&named)
    );
    let again = common::run(&mut p.sender.send_cmd(l.port, &[&tree]));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    for (i, content) in mid.iter().enumerate() {
        assert_content(&named.join(format!("b/m{i}.bin")), content);
    }
    assert_content(&named.join("c/z.txt"), b"after them\n");
    assert_eq!(names_in(&named.join("a")).len(), 20);
    assert_eq!(names_in(&named.join("b")).len(), 10);
    assert_eq!(names_in(&p.inbox), ["tree"]);
}
