//! Processes inside the LAN: run to completion with a deadline, or keep running
//! and read their stdout line by line with deadlines.
//!
//! Every long-running process is registered with its [`crate::Lan`], which
//! kills it at teardown even if the test dropped nothing (a panic mid-test).

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use localstream_testkit::{Next, Running, signal, wait_deadline};

use crate::{POLL, STEP, text};

/// Every child process started in one LAN, killed and reaped at teardown.
pub(crate) type Registry = Arc<Mutex<Vec<Arc<Mutex<Child>>>>>;

/// A finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// What ran (for messages).
    pub what: String,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub took: Duration,
}

impl Output {
    /// The command, its exit code and everything it printed.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{}\nexit code: {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            self.what, self.code, self.took, self.stdout, self.stderr
        )
    }

    /// Fails the test unless the command exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code:\n{}",
            self.describe()
        );
        self
    }
}

/// Runs `cmd` to completion, at most `limit`; kills it and fails on timeout.
pub(crate) fn run(cmd: &mut Command, what: String, limit: Duration) -> Output {
    let start = Instant::now();
    let out = localstream_testkit::run(cmd, &what, limit, POLL);
    Output {
        what,
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        took: start.elapsed(),
    }
}

/// A running process in the LAN whose stdout is read line by line. Killed
/// (SIGKILL) and reaped when dropped, and at the LAN's teardown.
#[derive(Debug)]
pub struct Proc {
    what: String,
    child: Arc<Mutex<Child>>,
    pid: u32,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    /// Index in `stdout` of the first line [`Proc::wait_line`] has not consumed.
    cursor: usize,
    stderr: Arc<Mutex<String>>,
    stderr_closed: Arc<std::sync::atomic::AtomicBool>,
    started: Instant,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, what: String, registry: &Registry) -> Proc {
        let Running {
            child,
            lines,
            stderr,
            stderr_closed,
        } = localstream_testkit::spawn(cmd, &what);
        let started = Instant::now();
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        registry.lock().unwrap().push(child.clone());
        Proc {
            what,
            child,
            pid,
            lines,
            stdout: vec![],
            cursor: 0,
            stderr,
            stderr_closed,
            started,
        }
    }

    /// The process id (`ip netns exec` execs, so this is the program's own pid).
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Time since the process was started.
    #[must_use]
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reads one more stdout line into `self.stdout`, waiting at most until
    /// `deadline`. `Ok(false)` on timeout, `Err` once stdout is closed.
    fn pump(&mut self, deadline: Instant) -> Result<bool, ()> {
        match localstream_testkit::next_line(&self.lines, deadline) {
            Next::Line(line) => {
                self.stdout.push(line);
                Ok(true)
            }
            Next::Timeout => Ok(false),
            Next::Closed => Err(()),
        }
    }

    /// The next unconsumed stdout line matching `pred` within `limit`
    /// (consuming it and every line before it), or `None`.
    pub fn try_wait_line(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            while self.cursor < self.stdout.len() {
                let line = &self.stdout[self.cursor];
                self.cursor += 1;
                if pred(line) {
                    return Some(line.clone());
                }
            }
            match self.pump(deadline) {
                Ok(true) => {}
                Ok(false) | Err(()) => return None,
            }
        }
    }

    /// Like [`Proc::try_wait_line`] with [`STEP`], failing the test (with
    /// everything the process printed) if no such line comes.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        match self.try_wait_line(STEP, pred) {
            Some(l) => l,
            None => self.fail("no matching stdout line in time (or stdout closed)"),
        }
    }

    /// Waits until some stdout line, consumed or not, matches `pred`; does
    /// not move the cursor of [`Proc::wait_line`].
    pub fn wait_seen(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        let mut checked = 0;
        loop {
            if let Some(l) = self.stdout[checked..].iter().find(|l| pred(l)) {
                return l.clone();
            }
            checked = self.stdout.len();
            match self.pump(deadline) {
                Ok(true) => {}
                Ok(false) => self.fail("no matching stdout line in time"),
                Err(()) => self.fail("stdout closed before a matching line"),
            }
        }
    }

    /// Everything the process wrote to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGINT, as Ctrl-C would.
    pub fn interrupt(&self) {
        signal(self.pid, "INT");
    }

    /// Sends a signal by name ("TERM", as `systemctl stop` and `kill` do).
    pub fn signal(&self, name: &str) {
        signal(self.pid, name);
    }

    /// Waits for the process to exit, at most `limit`, and returns its exit
    /// code (`None` if a signal killed it); fails the test on timeout.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let status = wait_deadline(&mut self.child.lock().unwrap(), limit, POLL);
        let code = match status {
            Some(s) => s.code(),
            None => self.fail(&format!("did not exit within {limit:?}")),
        };
        // Its last lines are read before anyone looks at them.
        let closed = || self.stderr_closed.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while !closed() {
            if Instant::now() > deadline {
                self.fail("exited but its stderr stayed open");
            }
            std::thread::sleep(POLL);
        }
        code
    }

    /// Whether the process is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.lock().unwrap().try_wait().unwrap().is_none()
    }

    /// Reads whatever stdout lines are already available, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
    }

    /// Fails the test with everything the process said.
    pub fn fail(&self, why: &str) -> ! {
        let mut stdout = self.stdout.join("\n");
        while let Ok(line) = self.lines.try_recv() {
            stdout.push('\n');
            stdout.push_str(&line);
        }
        panic!(
            "{}: {why}\n(running for {:?})\nstdout:\n{stdout}\nstderr:\n{}",
            self.what,
            self.started.elapsed(),
            self.stderr()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `localstream listen` whose banner has been read.
#[derive(Debug)]
pub struct Listener {
    proc: Proc,
    /// Display name from the banner (`LocalStream node NAME`).
    pub name: String,
    /// Node id from the banner.
    pub id: String,
    /// Short fingerprint from the banner.
    pub fingerprint: String,
    /// The `discovery` banner value: interface names, or `off`.
    pub discovery: String,
    /// The TCP port it listens on.
    pub port: u16,
    /// Every address of the `listening on` lines read before the port was known.
    pub addrs: Vec<SocketAddr>,
    /// Where it saves files (`--dir`).
    pub dir: PathBuf,
}

impl Listener {
    /// Reads the banner of a freshly spawned listener: waits for the first
    /// `listening on` line and for the `discovery` line (which comes once the
    /// announcement is registered).
    pub(crate) fn start(mut proc: Proc, dir: PathBuf) -> Listener {
        let line = proc.wait_line(|l| l.starts_with("listening on "));
        let first: SocketAddr = line
            .trim_start_matches("listening on ")
            .trim()
            .parse()
            .unwrap_or_else(|_| proc.fail(&format!("unexpected listening line {line:?}")));
        let discovery = proc.wait_seen(|l| field(l, "discovery").is_some());
        proc.drain();
        let banner = proc.stdout.clone();
        let get = |key: &str| {
            banner
                .iter()
                .find_map(|l| field(l, key))
                .unwrap_or_else(|| proc.fail(&format!("no `{key}` line in the banner")))
        };
        let name = banner
            .iter()
            .find_map(|l| l.strip_prefix("LocalStream node "))
            .map(str::to_owned)
            .unwrap_or_else(|| proc.fail("no `LocalStream node NAME` line"));
        let id = get("id");
        let fingerprint = get("fingerprint");
        let addrs = banner
            .iter()
            .filter_map(|l| l.strip_prefix("listening on "))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        Listener {
            name,
            id,
            fingerprint,
            discovery: field(&discovery, "discovery").unwrap_or_default(),
            port: first.port(),
            addrs,
            dir,
            proc,
        }
    }

    /// Waits for the `received N files ...` line of the next transfer and the
    /// N indented saved paths after it.
    pub fn wait_received(&mut self) -> (String, Vec<PathBuf>) {
        let head = self.wait_line(|l| l.starts_with("received "));
        let files = localstream_testkit::received_count(&head)
            .unwrap_or_else(|| self.fail(&format!("cannot parse the file count in {head:?}")));
        let paths = (0..files)
            .map(|_| PathBuf::from(self.wait_line(|_| true).trim_start()))
            .collect();
        (head, paths)
    }
}

/// The value of a banner line `  KEY   value`.
fn field(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix("  ")?.trim_start();
    let value = rest.strip_prefix(key)?;
    value
        .starts_with(char::is_whitespace)
        .then(|| value.trim().to_owned())
}

impl Deref for Listener {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Listener {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}
