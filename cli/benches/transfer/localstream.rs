//! LocalStream's side: `listen --once` and `send` on 127.0.0.1 with
//! `--no-discovery`, under GNU time; the identities; the handshake series.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use localstream_testkit::files::{fresh_dir, remove_dir};
use localstream_testkit::procs::{Context, Logged, Waited, log_file, wait_all};

use crate::tools::{Ready, Run};
use crate::{BIN, Bench, Res};

/// Tiny-file sends per round in the handshake series.
pub const HANDSHAKES_PER_ROUND: usize = 3;

/// A LocalStream transfer and what each side printed on stderr.
#[derive(Debug)]
pub struct LsRun {
    /// The measurement.
    pub run: Run,
    /// `send`'s stderr (its `-v` timing line).
    pub send_stderr: String,
    /// `listen`'s stderr.
    pub recv_stderr: String,
}

/// Which sides of a transfer log at `-v` (info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbose {
    /// Neither.
    Quiet,
    /// The sender only.
    Send,
    /// Both.
    Both,
}

/// Makes both identities (RSA-3072 keys, once).
pub fn identities(bench: &Bench) -> Res<()> {
    for home in [&bench.home_recv, &bench.home_send] {
        let out = Command::new(BIN)
            .arg("--home")
            .arg(home)
            .arg("id")
            .env_remove("LOCALSTREAM_HOME")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {BIN} id"))?;
        if !out.status.success() {
            return Err(format!(
                "localstream --home {} id failed: {}",
                home.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

impl Bench {
    /// A localstream command under GNU time (usage in `<logs>/<name>.time`).
    fn localstream(&self, name: &str, home: &Path, verbose: bool) -> Command {
        let mut cmd = self.timed(name, BIN);
        cmd.arg("--home").arg(home).arg("--no-progress");
        if verbose {
            cmd.arg("-v");
        }
        cmd.env_remove("RUST_LOG").env_remove("LOCALSTREAM_HOME");
        cmd
    }

    /// `listen --once --yes` into `out`, on a port of its choice.
    fn ls_listen(&self, name: &str, out: &Path, verbose: bool) -> Command {
        let mut listen = self.localstream(name, &self.home_recv, verbose);
        listen
            .args([
                "listen",
                "--no-discovery",
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
            ])
            .args(["--yes", "--once", "--dir"])
            .arg(out);
        listen
    }

    /// A LocalStream send of `files` (relative to `cwd`) into `out`,
    /// interrupted as Ctrl-C does (SIGINT to `send`) once `cut()` says so
    /// (asked every 2 ms): the sender must exit with 130, the listener
    /// exits too. Fails when the send ended before it could be interrupted.
    pub fn ls_interrupted(
        &self,
        files: &[String],
        cwd: &Path,
        out: &Path,
        limit: Duration,
        mut cut: impl FnMut() -> bool,
    ) -> Res<()> {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let listen = self.ls_listen("ls-cut-recv", out, false);
        let (recv, port) = self.start_receiver("ls-cut", listen, Ready::Printed)?;
        // Not under GNU time, which ignores SIGINT: the signal goes to send.
        let mut send = Command::new(BIN);
        send.arg("--home")
            .arg(&self.home_send)
            .arg("--no-progress")
            .env_remove("RUST_LOG")
            .env_remove("LOCALSTREAM_HOME")
            .stdin(Stdio::null())
            .args(["send", "--yes", "--no-discovery"])
            .arg(format!("127.0.0.1:{port}"))
            .args(files)
            .current_dir(cwd);
        let log = self.log("ls-cut-send", "out");
        let mut send = match Logged::spawn("interrupted sender", send, log_file(&log)?, &log) {
            Ok(p) => p,
            Err(e) => return Err(format!("{e}{}", recv.abandon())),
        };
        match send.wait_for(limit, Duration::from_millis(2), || cut().then_some(())) {
            Waited::Ready(()) => {
                let st = Command::new("kill")
                    .args(["-INT", &send.pid().to_string()])
                    .status();
                if !st.is_ok_and(|s| s.success()) {
                    return Err(format!(
                        "kill -INT {} failed{}{}",
                        send.pid(),
                        send.abandon(),
                        recv.abandon()
                    ));
                }
            }
            Waited::Exited(st) => {
                return Err(format!(
                    "the send ended ({st}) before it could be interrupted{}{}",
                    send.abandon(),
                    recv.abandon()
                ));
            }
            Waited::TimedOut => {
                return Err(format!(
                    "the receiver did not hold enough to interrupt the send within {} s{}{}",
                    limit.as_secs(),
                    send.abandon(),
                    recv.abandon()
                ));
            }
        }
        let sent = match wait_all(vec![send], Duration::from_secs(60)) {
            Ok(sent) => sent,
            Err(e) => return Err(format!("{e}{}", recv.abandon())),
        };
        if sent[0].status.code() != Some(130) {
            return Err(format!(
                "the interrupted send exited with {}, not 130{}",
                sent[0].status,
                recv.abandon()
            ));
        }
        wait_all(vec![recv], Duration::from_secs(60))?;
        Ok(())
    }

    /// One LocalStream transfer: `listen --once --yes` into `out` (made
    /// empty), then `send` of `files` (paths relative to `cwd`).
    pub fn ls_transfer(
        &self,
        files: &[String],
        cwd: &Path,
        out: &Path,
        limit: Duration,
        verbose: Verbose,
    ) -> Res<LsRun> {
        fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let listen = self.ls_listen("ls-recv", out, verbose == Verbose::Both);
        let run = self.pair(
            "ls",
            listen,
            Ready::Printed,
            |port| {
                let mut send =
                    self.localstream("ls-send", &self.home_send, verbose != Verbose::Quiet);
                send.args(["send", "--yes", "--no-discovery"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(files)
                    .current_dir(cwd);
                send
            },
            limit,
        )?;
        Ok(LsRun {
            run,
            send_stderr: fs::read_to_string(self.log("ls-send", "err")).unwrap_or_default(),
            recv_stderr: fs::read_to_string(self.log("ls-recv", "err")).unwrap_or_default(),
        })
    }
}

/// Sends `tiny.txt` of the sources and checks it arrived.
pub fn tiny(bench: &Bench, verbose: Verbose) -> Res<LsRun> {
    let out = bench.src.path("out-tiny");
    fresh_dir(&out)?;
    let r = bench.ls_transfer(
        &["tiny.txt".to_string()],
        bench.src.dir(),
        &out,
        Duration::from_secs(60),
        verbose,
    )?;
    let want = fs::read(bench.src.path("tiny.txt")).with_context(|| "reading tiny.txt".into())?;
    let got =
        fs::read(out.join("tiny.txt")).with_context(|| "reading the received tiny.txt".into())?;
    if want != got {
        return Err("the received tiny.txt differs from the original".into());
    }
    remove_dir(&out)?;
    Ok(r)
}

/// The last log line of `-v` output holding `message`: its `key=NUMBER`.
pub fn logged_number(stderr: &str, message: &str, key: &str) -> Option<f64> {
    let line = stderr.lines().rev().find(|l| l.contains(message))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let num: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// The handshake series' samples (ms).
#[derive(Debug, Default)]
pub struct Handshakes {
    /// Connect → session keys.
    pub handshake_ms: Vec<f64>,
    /// Connect → first data byte.
    pub first_data_ms: Vec<f64>,
    /// The whole `send` command, start to both exited.
    pub command_ms: Vec<f64>,
}

/// A tiny file [`HANDSHAKES_PER_ROUND`] times per round, with `send -v`.
pub fn handshakes(bench: &Bench) -> Res<Handshakes> {
    println!(
        "\nhandshake: a tiny file, {HANDSHAKES_PER_ROUND} sends per round, {} rounds",
        bench.cfg.runs
    );
    let mut h = Handshakes::default();
    for _ in 0..bench.cfg.runs * HANDSHAKES_PER_ROUND {
        let r = tiny(bench, Verbose::Send)?;
        let (Some(hs), Some(fd)) = (
            logged_number(&r.send_stderr, "timing", "handshake_ms"),
            logged_number(&r.send_stderr, "timing", "first_data_ms"),
        ) else {
            return Err(format!(
                "`send -v` logged no `timing handshake_ms=.. first_data_ms=..` line; its stderr:\n{}",
                r.send_stderr
            ));
        };
        h.handshake_ms.push(hs);
        h.first_data_ms.push(fd);
        h.command_ms.push(r.run.wall * 1e3);
        println!(
            "  tiny file  handshake {hs:6.2} ms  first data {fd:6.2} ms  (whole command {:.1} ms)",
            r.run.wall * 1e3
        );
    }
    Ok(h)
}
