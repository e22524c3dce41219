//! Processes whose output goes to log files and whose exit times matter: the
//! senders and receivers of the loopback benchmark (`cli/benches/transfer.rs`).
//!
//! ```text
//!  Logged::spawn ──► stdout: a file (the caller's), stderr: <log>.err
//!      │ wait_for / wait_listening: poll until ready, or it exited, or time is up
//!      ▼
//!  wait_all ──► a thread per process: Exited { status, at: the instant it exited }
//!      │ past the timeout: kill_tree the rest, Err with the tail of every log
//!      ▼
//!  all_succeeded ──► Ok(last exit instant), or Err naming who failed, with logs
//! ```
//!
//! Unlike [`crate::spawn`] (stdout read line by line on a thread, panics on
//! failure), output here costs nothing to keep (megabytes of it go to files)
//! and errors are `Err(String)` carrying what the processes printed, for a
//! caller that reports failures instead of panicking.

use std::collections::HashMap;
use std::fmt::Display;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{poll_until, try_signal};

/// How many lines of each log an error message shows (the last ones).
const LOG_TAIL: usize = 15;

/// Adds what was being done to an error, as `"{what}: {error}"`.
pub trait Context<T> {
    /// The error as `"{what()}: {error}"`; `what` is called only on error.
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, String>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, String> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}

/// Creates (or truncates) the file at `path`, for a process's output.
pub fn log_file(path: &Path) -> Result<Stdio, String> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Stdio::from(f))
}

/// Kills a process and everything it started (SIGKILL, children first; the
/// tree is read from `/proc`). Errors are ignored: a process may be gone.
pub fn kill_tree(pid: u32) {
    let parents = children_by_parent();
    let mut order = vec![];
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        order.push(p);
        if let Some(kids) = parents.get(&p) {
            stack.extend(kids);
        }
    }
    for p in order.iter().rev() {
        try_signal(*p, "KILL");
    }
}

/// Every process's children, from the ppid field of `/proc/PID/stat`.
fn children_by_parent() -> HashMap<u32, Vec<u32>> {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return parents;
    };
    for e in entries.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            parents.entry(ppid).or_default().push(p);
        }
    }
    parents
}

/// A started process whose output goes to files: stdout wherever the caller
/// sent it (usually `<log>.out`), stderr to `<log>.err`. Not killed when
/// dropped: hand it to [`wait_all`], or [`Logged::abandon`] it.
#[derive(Debug)]
pub struct Logged {
    name: String,
    child: Child,
    /// `<log>.out` and `<log>.err` (either may not exist).
    logs: Vec<PathBuf>,
}

/// What [`Logged::wait_for`] saw first.
#[derive(Debug)]
pub enum Waited<T> {
    /// The probe's answer.
    Ready(T),
    /// The process exited (with this status) before the probe answered.
    Exited(ExitStatus),
    /// Neither happened in time.
    TimedOut,
}

impl Logged {
    /// Spawns `cmd` named `name` (for messages) with stdout to `out` and
    /// stderr to a new file: `log` with the extension `err`.
    pub fn spawn(name: &str, mut cmd: Command, out: Stdio, log: &Path) -> Result<Logged, String> {
        let err_path = log.with_extension("err");
        let err = log_file(&err_path)?;
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Logged {
            name: name.to_string(),
            child,
            logs: vec![log.with_extension("out"), err_path],
        })
    }

    /// The name given at spawn.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `probe` every `every` until it answers, the process exits or
    /// `limit` passes.
    pub fn wait_for<T>(
        &mut self,
        limit: Duration,
        every: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> Waited<T> {
        let mut seen = Waited::TimedOut;
        poll_until(limit, every, || {
            if let Some(v) = probe() {
                seen = Waited::Ready(v);
            } else if let Ok(Some(st)) = self.child.try_wait() {
                seen = Waited::Exited(st);
            }
            !matches!(seen, Waited::TimedOut)
        });
        seen
    }

    /// The last lines of each of its logs, for an error message.
    #[must_use]
    pub fn describe_logs(&self) -> String {
        describe_logs(&self.name, &self.logs)
    }

    /// Kills it and its children (after a failure elsewhere), reaps it and
    /// says what it had printed.
    #[must_use]
    pub fn abandon(mut self) -> String {
        kill_tree(self.child.id());
        let _ = self.child.wait();
        self.describe_logs()
    }
}

/// The last lines of the logs of `name` that exist and are not empty, each
/// log under a `--- name path ---` heading, every line indented.
fn describe_logs(name: &str, logs: &[PathBuf]) -> String {
    let mut s = String::new();
    for p in logs {
        if let Ok(text) = fs::read_to_string(p) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            if !tail.is_empty() {
                s.push_str(&format!("\n  --- {name} {} ---", p.display()));
                for l in tail {
                    s.push_str(&format!("\n  {l}"));
                }
            }
        }
    }
    s
}

/// A process that has exited, and when.
#[derive(Debug)]
pub struct Exited {
    /// The name given at spawn.
    pub name: String,
    /// How it exited.
    pub status: ExitStatus,
    /// When it exited (seen by a thread blocked in `wait`, so to within
    /// scheduling latency, not a polling interval).
    pub at: Instant,
    logs: Vec<PathBuf>,
}

/// Waits for all processes (each in a thread, so every exit time is exact);
/// after `timeout` kills the rest (with their children) and fails with
/// everyone's logs. When one exits unsuccessfully, the others are killed at
/// once (a receiver whose sender failed would wait for the timeout), so
/// [`all_succeeded`] names the failure without the wait.
pub fn wait_all(procs: Vec<Logged>, timeout: Duration) -> Result<Vec<Exited>, String> {
    let (tx, rx) = mpsc::channel();
    let mut pending: Vec<(u32, String, Vec<PathBuf>)> = vec![];
    for Logged {
        name,
        mut child,
        logs,
    } in procs
    {
        let pid = child.id();
        pending.push((pid, name, logs));
        let tx = tx.clone();
        thread::spawn(move || {
            let st = child.wait();
            let _ = tx.send((pid, st, Instant::now()));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut done = vec![];
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((pid, st, at)) = rx.recv_timeout(left) else {
            return Err(timed_out(&pending, &done, timeout, &rx));
        };
        let Some(i) = pending.iter().position(|(p, ..)| *p == pid) else {
            continue;
        };
        let (_, name, logs) = pending.swap_remove(i);
        let status = st.with_context(|| format!("waiting for {name}"))?;
        if !status.success() {
            for (p, ..) in &pending {
                kill_tree(*p);
            }
        }
        done.push(Exited {
            name,
            status,
            at,
            logs,
        });
    }
    Ok(done)
}

/// Kills the `pending` processes of [`wait_all`], waits (a little) for their
/// threads to reap them, and says who timed out, with every log.
fn timed_out<T>(
    pending: &[(u32, String, Vec<PathBuf>)],
    done: &[Exited],
    timeout: Duration,
    reaped: &mpsc::Receiver<T>,
) -> String {
    let mut msg = format!("timed out after {:.0} s waiting for", timeout.as_secs_f64());
    for (pid, name, _) in pending {
        msg.push_str(&format!(" {name} (pid {pid})"));
        kill_tree(*pid);
    }
    msg.push_str("; killed");
    for (_, name, logs) in pending {
        msg.push_str(&describe_logs(name, logs));
    }
    for e in done {
        msg.push_str(&describe_logs(&e.name, &e.logs));
    }
    while reaped.recv_timeout(Duration::from_secs(5)).is_ok() {}
    msg
}

/// Fails unless every process exited with status 0 (naming each that did
/// not, with its logs); returns the last exit time. `what` names the whole.
pub fn all_succeeded(exited: &[Exited], what: &str) -> Result<Instant, String> {
    let mut last = None::<Instant>;
    let mut failed = String::new();
    for e in exited {
        if !e.status.success() {
            failed.push_str(&format!("\n  {} exited with {}", e.name, e.status));
            failed.push_str(&describe_logs(&e.name, &e.logs));
        }
        last = Some(last.map_or(e.at, |l| l.max(e.at)));
    }
    if !failed.is_empty() {
        return Err(format!("{what} failed:{failed}"));
    }
    last.ok_or_else(|| format!("{what}: no process"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for tools that cannot
/// listen on port 0 and report the port).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").with_context(|| "binding 127.0.0.1:0".into())?;
    Ok(l.local_addr()
        .with_context(|| "local address".into())?
        .port())
}

/// Is something listening on 127.0.0.1:`port`? Read from /proc/net/tcp, not by
/// connecting: a probe connection would be the one `nc -l` accepts.
#[must_use]
pub fn is_listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|l| {
        let mut cols = l.split_whitespace();
        let local = cols.nth(1);
        let state = cols.nth(1);
        local == Some(want.as_str()) && state == Some("0A")
    })
}

/// Waits (at most `limit`, looking every `every`) until `recv` listens on
/// 127.0.0.1:`port`, failing if it exits first.
pub fn wait_listening(
    recv: &mut Logged,
    port: u16,
    limit: Duration,
    every: Duration,
) -> Result<(), String> {
    match recv.wait_for(limit, every, || is_listening(port).then_some(())) {
        Waited::Ready(()) => Ok(()),
        Waited::Exited(st) => Err(format!(
            "{} exited ({st}) before listening on 127.0.0.1:{port}{}",
            recv.name,
            recv.describe_logs()
        )),
        Waited::TimedOut => Err(format!(
            "{} is not listening on port {port} after {} s",
            recv.name,
            limit.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(1);

    /// A fresh log directory for one test, removed when dropped.
    struct Logs(PathBuf);

    impl Logs {
        fn new(test: &str) -> Logs {
            let dir = std::env::temp_dir().join(format!(
                "localstream-testkit-procs-{}-{test}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Logs(dir)
        }

        /// `sh -c script`, stdout to `<name>.out`, stderr to `<name>.err`.
        fn sh(&self, name: &str, script: &str) -> Logged {
            let log = self.0.join(format!("{name}.out"));
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]).stdin(Stdio::null());
            Logged::spawn(name, cmd, log_file(&log).unwrap(), &log).unwrap()
        }

        /// Runs `(name, script)` pairs with [`Logs::sh`] and waits for all.
        fn wait_all(&self, scripts: &[(&str, &str)]) -> Vec<Exited> {
            let procs = scripts.iter().map(|(n, s)| self.sh(n, s)).collect();
            wait_all(procs, Duration::from_secs(20)).unwrap()
        }
    }

    impl Drop for Logs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn wait_all_reports_each_exit_and_its_time() {
        let exited =
            Logs::new("exits").wait_all(&[("quick", "exit 0"), ("late", "sleep 0.3; echo done")]);
        let at = |name: &str| exited.iter().find(|e| e.name == name).unwrap().at;
        assert!(at("late") - at("quick") >= Duration::from_millis(250));
        assert_eq!(all_succeeded(&exited, "both").unwrap(), at("late"));
    }

    #[test]
    fn a_failure_is_named_with_the_tail_of_its_logs() {
        let logs = Logs::new("failure");
        let exited = logs.wait_all(&[
            ("fine", "exit 0"),
            ("broken", "seq 1 40; echo oops >&2; exit 3"),
        ]);
        let e = all_succeeded(&exited, "the pair").unwrap_err();
        assert!(e.starts_with("the pair failed:\n  broken exited with exit status: 3"));
        assert!(e.contains("broken.out ---\n  26\n"), "{e}");
        assert!(
            !e.contains("\n  25\n"),
            "only the last {LOG_TAIL} lines: {e}"
        );
        assert!(e.contains("broken.err ---\n  oops"), "{e}");
        assert!(!e.contains("fine"), "{e}");
    }

    #[test]
    fn wait_all_kills_what_outlives_the_timeout_with_its_children() {
        let logs = Logs::new("timeout");
        let done = logs.sh("done", "exit 0");
        // A shell that waits for a child of its own.
        let stuck = logs.sh("stuck", "echo started; sleep 30 & wait");
        let pid = stuck.child.id();
        let start = Instant::now();
        let e = wait_all(vec![done, stuck], Duration::from_millis(300)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10), "{e}");
        assert!(
            e.starts_with(&format!(
                "timed out after 0 s waiting for stuck (pid {pid}); killed"
            )),
            "{e}"
        );
        assert!(e.contains("stuck.out ---\n  started"), "{e}");
        assert!(!children_by_parent().contains_key(&pid), "children left");
    }

    #[test]
    fn a_failure_ends_the_others_at_once() {
        let logs = Logs::new("failfast");
        let start = Instant::now();
        let exited = logs.wait_all(&[("waits", "sleep 30"), ("fails", "sleep 0.1; exit 2")]);
        assert!(start.elapsed() < Duration::from_secs(10));
        let e = all_succeeded(&exited, "the pair").unwrap_err();
        assert!(e.contains("fails exited with exit status: 2"), "{e}");
        // Killed: sh reports its child's SIGKILL as 137, or is killed itself.
        assert!(
            e.contains("waits exited with exit status: 137")
                || e.contains("waits exited with signal: 9"),
            "{e}"
        );
    }

    #[test]
    fn wait_listening_sees_a_listener_and_an_early_exit() {
        let logs = Logs::new("listening");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut idle = logs.sh("idle", "exec sleep 30");
        wait_listening(&mut idle, port, Duration::from_secs(20), POLL).unwrap();
        drop(l);
        assert!(!is_listening(port));
        let e = wait_listening(&mut idle, port, Duration::from_millis(50), POLL).unwrap_err();
        assert_eq!(e, format!("idle is not listening on port {port} after 0 s"));
        assert_eq!(idle.abandon(), "");

        let mut gone = logs.sh("gone", "echo bye >&2; exit 1");
        let e = wait_listening(&mut gone, port, Duration::from_secs(20), POLL).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "gone exited (exit status: 1) before listening on 127.0.0.1:{port}"
            )),
            "{e}"
        );
        assert!(e.ends_with("gone.err ---\n  bye"), "{e}");
    }

    #[test]
    fn spawn_failure_is_an_error() {
        let logs = Logs::new("spawn");
        let log = logs.0.join("missing.out");
        let e = Logged::spawn(
            "missing",
            Command::new("/nonexistent/program"),
            Stdio::null(),
            &log,
        )
        .unwrap_err();
        assert!(e.starts_with("starting missing ("), "{e}");
    }
}
