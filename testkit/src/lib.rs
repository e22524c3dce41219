//! Process helpers shared by the LocalStream test harnesses: the binary's
//! integration tests (`cli/tests/localstream/common`), the multi-host LAN
//! scenarios (`localstream-scenarios`) and the loopback benchmark
//! (`cli/benches/transfer.rs`).
//!
//! Only what they need and is not about how a node is started: running a
//! command to completion with a deadline, keeping a child running while its
//! stdout lines and stderr are collected on threads, polling with a deadline,
//! signals, and a few helpers for messages and test data; [`procs`] has
//! processes whose output goes to log files and whose exit times matter,
//! with errors as values. Each harness keeps its own wrappers (its `--home`,
//! its `ip netns exec`, its step lengths).
//!
//! Nothing here sleeps for a fixed time: waits poll with a deadline, and a
//! failed step panics with everything the process printed (in [`procs`], it
//! is an `Err` with the tail of the process's logs).

// Test support: a failed step should fail the test loudly, with context.
#![allow(clippy::unwrap_used)]

pub mod files;
pub mod measure;
pub mod procs;
pub mod proxy;
pub mod shaped;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lossy UTF-8, for messages.
#[must_use]
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `cond` every `every` until it holds or `limit` passes; returns
/// whether it held.
pub fn poll_until(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Waits for a child to exit, at most `limit` (checking every `every`).
pub fn wait_deadline(child: &mut Child, limit: Duration, every: Duration) -> Option<ExitStatus> {
    let mut status = None;
    poll_until(limit, every, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

/// Runs `cmd` to completion (stdin closed, stdout and stderr collected), at
/// most `limit`; kills it and fails on timeout with everything it printed.
/// `what` names the command in messages.
pub fn run(cmd: &mut Command, what: &str, limit: Duration, every: Duration) -> Output {
    let mut child = spawn_piped(cmd, what);
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let Some(status) = wait_deadline(&mut child, limit, every) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not finish in {limit:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out.join().unwrap()),
            text(&err.join().unwrap())
        );
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `cmd` with [`Command::output`] (no deadline: for short setup steps)
/// and fails unless it succeeds, with its stderr.
pub fn output_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", text(&out.stderr));
    out
}

/// Runs `cmd` (stdin closed, stderr discarded, no deadline: for short
/// queries such as `--version`) and returns its stdout, trimmed, if it
/// succeeded and printed something.
pub fn stdout_of(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Spawns `cmd` with stdin closed and stdout and stderr piped.
fn spawn_piped(cmd: &mut Command, what: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"))
}

/// Reads `r` to the end on a thread.
fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = vec![];
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Sends signal `sig` (a name such as `INT`, what Ctrl-C sends) to a process.
pub fn signal(pid: u32, sig: &str) {
    assert!(try_signal(pid, sig), "kill -s {sig} {pid} failed");
}

/// Like [`signal`], but says whether it worked instead of failing (the
/// process may be gone already).
pub fn try_signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

/// A long-running child whose stdout lines arrive on [`Running::lines`] and
/// whose stderr accumulates in [`Running::stderr`], both read on threads.
#[derive(Debug)]
pub struct Running {
    /// The process (the caller kills and reaps it).
    pub child: Child,
    /// Stdout, line by line; disconnected once stdout closes.
    pub lines: Receiver<String>,
    /// Everything written to stderr so far (lossy UTF-8).
    pub stderr: Arc<Mutex<String>>,
    /// Set once stderr is closed and all of it is in `stderr` (after the
    /// process exited, wait for this before reading its last lines).
    pub stderr_closed: Arc<std::sync::atomic::AtomicBool>,
}

/// Spawns `cmd` with stdin closed and its output read as in [`Running`].
/// `what` names the command in messages.
pub fn spawn(cmd: &mut Command, what: &str) -> Running {
    let mut child = spawn_piped(cmd, what);
    let (tx, lines) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sink, closed) = (stderr.clone(), stderr_closed.clone());
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        closed.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    Running {
        child,
        lines,
        stderr,
        stderr_closed,
    }
}

/// What [`next_line`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The next stdout line.
    Line(String),
    /// None came before the deadline.
    Timeout,
    /// Stdout is closed and every line has been read.
    Closed,
}

/// The next line from `lines`, waiting at most until `deadline`.
pub fn next_line(lines: &Receiver<String>, deadline: Instant) -> Next {
    let left = deadline.saturating_duration_since(Instant::now());
    match lines.recv_timeout(left) {
        Ok(line) => Next::Line(line),
        Err(RecvTimeoutError::Timeout) => Next::Timeout,
        Err(RecvTimeoutError::Disconnected) => Next::Closed,
    }
}

/// What `localstream id` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdInfo {
    /// Display name.
    pub name: String,
    /// Node id (hyphenated UUID).
    pub id: String,
    /// Short fingerprint `xxxx:xxxx:xxxx:xxxx`.
    pub fingerprint: String,
    /// Full SHA-256 fingerprint.
    pub sha256: String,
}

impl IdInfo {
    /// Parses the `KEY value` lines of `localstream id`.
    #[must_use]
    pub fn parse(stdout: &str) -> IdInfo {
        let field = |key: &str| {
            stdout
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(char::is_whitespace)?;
                    (k == key).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no `{key}` line in id output:\n{stdout}"))
        };
        IdInfo {
            name: field("name"),
            id: field("id"),
            fingerprint: field("fingerprint"),
            sha256: field("sha256"),
        }
    }
}

/// The file count N of a listener's `received N files ...` line.
#[must_use]
pub fn received_count(head: &str) -> Option<usize> {
    head.strip_prefix("received ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Asserts that the file at `path` holds exactly `expected` (without
/// printing megabytes of bytes when it does not).
pub fn assert_content(path: &Path, expected: &[u8]) {
    let got = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        got.len(),
        expected.len(),
        "{}: length differs",
        path.display()
    );
    if let Some(at) = got.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{}: content differs from byte {at} on", path.display());
    }
}

/// Deterministic text (the same for the same `seed`): lines of 5 to 14
/// words of 2 to 9 letters, drawn from a list of 5,000; zstd -1 makes about
/// 47 % of it, like prose or logs that do not repeat.
#[must_use]
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11
    };
    let words: Vec<Vec<u8>> = (0..5000)
        .map(|_| {
            let n = 2 + next() % 8;
            (0..n).map(|_| b'a' + (next() % 26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        let n = 5 + next() % 10;
        for i in 0..n {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(&words[(next() % 5000) as usize]);
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
#[must_use]
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
