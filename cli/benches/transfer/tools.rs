//! The baselines: plain TCP copies by nc (OpenBSD), socat and `tar | nc`,
//! with and without a `sync` after, and `scp` over a private sshd
//! ([`crate::ssh`]); and the runner that times a receiver and a sender pair
//! under GNU time.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use localstream_testkit::files::Scratch;
use localstream_testkit::measure::{Usage, gnu_time, read_usage, timed};
use localstream_testkit::procs::{
    Context, Logged, Waited, all_succeeded, free_port, log_file, wait_all, wait_listening,
};

use crate::ssh::Ssh;
use crate::{Bench, Res};

/// socat's buffer size, the same as LocalStream's and large enough for socat
/// to be fast.
pub const SOCAT_BUF: &str = "131072";
/// How long a receiver may take to listen.
const LISTEN_LIMIT: Duration = Duration::from_secs(20);

/// One measured transfer: wall seconds from starting the sender until both
/// sides exited, and what GNU time saw of each side.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Wall seconds.
    pub wall: f64,
    /// The sender's usage.
    pub send: Option<Usage>,
    /// The receiver's usage.
    pub recv: Option<Usage>,
}

impl Run {
    /// Two transfers one after the other as one: times and CPU add up, the
    /// peak memory is the larger.
    pub fn then(self, next: Run) -> Run {
        let add = |a: Option<Usage>, b: Option<Usage>| match (a, b) {
            (Some(a), Some(b)) => Some(Usage {
                wall: a.wall + b.wall,
                user: a.user + b.user,
                sys: a.sys + b.sys,
                max_rss_kib: a.max_rss_kib.max(b.max_rss_kib),
            }),
            _ => None,
        };
        Run {
            wall: self.wall + next.wall,
            send: add(self.send, next.send),
            recv: add(self.recv, next.recv),
        }
    }

    /// "send 1.02 CPU-s, 12.1 MiB; recv ..." for a run line.
    pub fn usage_text(&self) -> String {
        let side = |u: Option<Usage>| {
            u.map_or("n/a".to_string(), |u| {
                format!("{:.2} CPU-s {:5.1} MiB", u.cpu(), u.rss_mib())
            })
        };
        format!("send {}, recv {}", side(self.send), side(self.recv))
    }
}

/// How the runner knows the receiver is ready.
#[derive(Debug)]
pub enum Ready {
    /// It listens on this port of 127.0.0.1 (seen in /proc/net/tcp).
    Port(u16),
    /// It prints `listening on 127.0.0.1:PORT` on stdout.
    Printed,
}

/// The tools found (paths), or `None`.
#[derive(Debug, Default)]
pub struct Tools {
    /// nc (OpenBSD's: `-N`).
    pub nc: Option<String>,
    /// socat.
    pub socat: Option<String>,
    /// GNU time.
    pub time: Option<String>,
    /// ethtool (the namespace LAN turns segmentation offloads off with it).
    pub ethtool: bool,
    /// A private sshd on 127.0.0.1, for scp.
    pub ssh: Option<Ssh>,
    /// Why there is no sshd.
    pub ssh_missing: String,
}

impl Tools {
    fn detect() -> Tools {
        let nc = ["nc.openbsd", "nc"].into_iter().find_map(|cand| {
            let out = Command::new(cand)
                .arg("-h")
                .stdin(Stdio::null())
                .output()
                .ok()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.contains("OpenBSD").then(|| cand.to_string())
        });
        let socat = Command::new("socat")
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| "socat".to_string());
        let ethtool = Command::new("ethtool")
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        Tools {
            nc,
            socat,
            time: gnu_time(),
            ethtool,
            ssh: None,
            ssh_missing: "not started".to_string(),
        }
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        let mut p = vec![];
        if self.nc.is_none() {
            p.push("netcat-openbsd");
        }
        if self.socat.is_none() {
            p.push("socat");
        }
        if self.time.is_none() {
            p.push("time");
        }
        if !self.ethtool {
            p.push("ethtool");
        }
        p
    }

    /// Detects the tools and installs the missing ones when possible (root,
    /// apt-get); prints what stays missing.
    pub fn ensure() -> Tools {
        let mut tools = Tools::detect();
        let missing = tools.missing_packages();
        if !missing.is_empty() {
            let list = missing.join(" ");
            if crate::machine::is_root() {
                println!("installing missing Debian packages: {list} (apt-get install -y)");
                let apt = |args: &[&str]| {
                    Command::new("apt-get")
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
                install.extend(&missing);
                if !apt(&install) {
                    println!("apt-get install failed; running apt-get update and trying once more");
                    let _ = apt(&["update", "-qq"]) && apt(&install);
                }
                tools = Tools::detect();
            } else {
                println!(
                    "NOTE: missing Debian packages: {list}; not root, so not installing them \
                     (run `sudo apt-get install -y {list}` for the full comparison)."
                );
            }
        }
        for (tool, what) in [
            (
                tools.nc.is_none(),
                "nc (netcat-openbsd): the nc and tar|nc rows are skipped",
            ),
            (tools.socat.is_none(), "socat: the socat rows are skipped"),
            (
                tools.time.is_none(),
                "GNU time (/usr/bin/time): no CPU seconds or peak RSS",
            ),
        ] {
            if tool {
                println!("missing {what}");
            }
        }
        tools
    }

    /// Starts the private sshd for scp, or notes why not.
    pub fn start_ssh(&mut self, src: &Scratch, logs: &Path) {
        match Ssh::start(src, logs) {
            Ok(s) => {
                println!("sshd: {}", s.about());
                self.ssh = Some(s);
            }
            Err(why) => {
                println!("scp rows skipped: {why}");
                self.ssh_missing = why;
            }
        }
    }
}

/// Generous time limits: 2 minutes plus 20 MB/s, or plus 100 files/s.
pub fn timeout(bytes: u64, files: usize) -> Duration {
    Duration::from_secs(120 + bytes / 20_000_000 + files as u64 / 100)
}

impl Bench {
    /// A log path `<logs>/<name>.<ext>`.
    pub fn log(&self, name: &str, ext: &str) -> PathBuf {
        self.logs.join(format!("{name}.{ext}"))
    }

    /// `program` under GNU time, its usage going to `<logs>/<name>.time`.
    pub fn timed(&self, name: &str, program: &str) -> Command {
        let mut c = timed(self.tools.time.as_deref(), &self.log(name, "time"), program);
        c.stdin(Stdio::null());
        c
    }

    /// Starts the receiver `recv` (named `<name>-recv`, made with
    /// [`Bench::timed`]) and waits until it is [`Ready`]: the process and
    /// its port.
    pub fn start_receiver(&self, name: &str, recv: Command, ready: Ready) -> Res<(Logged, u16)> {
        let recv_log = self.log(&format!("{name}-recv"), "out");
        let mut recv = Logged::spawn(
            &format!("{name} receiver"),
            recv,
            log_file(&recv_log)?,
            &recv_log,
        )?;
        let port = match ready {
            Ready::Port(port) => {
                if let Err(e) =
                    wait_listening(&mut recv, port, LISTEN_LIMIT, Duration::from_millis(1))
                {
                    return Err(format!("{e}{}", recv.abandon()));
                }
                port
            }
            Ready::Printed => {
                let read_port = || {
                    let text = fs::read_to_string(&recv_log).unwrap_or_default();
                    text.lines().find_map(|l| {
                        l.strip_prefix("listening on 127.0.0.1:")
                            .and_then(|p| p.trim().parse::<u16>().ok())
                    })
                };
                match recv.wait_for(LISTEN_LIMIT, Duration::from_millis(2), read_port) {
                    Waited::Ready(port) => port,
                    Waited::Exited(st) => {
                        return Err(format!(
                            "{name} receiver exited ({st}) before listening{}",
                            recv.abandon()
                        ));
                    }
                    Waited::TimedOut => {
                        return Err(format!(
                            "{name} receiver printed no `listening on 127.0.0.1:PORT` line in {} s{}",
                            LISTEN_LIMIT.as_secs(),
                            recv.abandon()
                        ));
                    }
                }
            }
        };
        Ok((recv, port))
    }

    /// Runs one transfer: starts `recv` ([`Bench::start_receiver`]), then
    /// the command `send(port)` (named `<name>-send`) and waits for both.
    /// Wall time from starting the sender until both exited.
    pub fn pair(
        &self,
        name: &str,
        recv: Command,
        ready: Ready,
        send: impl FnOnce(u16) -> Command,
        limit: Duration,
    ) -> Res<Run> {
        let (recv, port) = self.start_receiver(name, recv, ready)?;
        let send_log = self.log(&format!("{name}-send"), "out");
        let out = log_file(&send_log)?;
        let start = Instant::now();
        let send = match Logged::spawn(&format!("{name} sender"), send(port), out, &send_log) {
            Ok(p) => p,
            Err(e) => return Err(format!("{e}{}", recv.abandon())),
        };
        let exited = wait_all(vec![recv, send], limit)?;
        let end = all_succeeded(&exited, &format!("{name} transfer"))?;
        Ok(Run {
            wall: (end - start).as_secs_f64(),
            send: read_usage(&self.log(&format!("{name}-send"), "time")),
            recv: read_usage(&self.log(&format!("{name}-recv"), "time")),
        })
    }

    /// nc → nc into the file `out`; with `sync`, the receiver then runs
    /// `sync out` (an fsync of the file): the time until it is on disk.
    pub fn nc_file(&self, nc: &str, src: &Path, out: &Path, sync: bool) -> Res<Run> {
        let name = if sync { "nc-sync" } else { "nc" };
        let port = free_port()?;
        let mut recv = self.timed(&format!("{name}-recv"), "sh");
        recv.args([
            "-c",
            r#""$0" -l 127.0.0.1 "$1" > "$2" && if [ "$3" = sync ]; then sync "$2"; fi"#,
            nc,
            &port.to_string(),
        ])
        .arg(out)
        .arg(if sync { "sync" } else { "no" });
        let input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
        let bytes = input.metadata().map_or(0, |m| m.len());
        self.pair(
            name,
            recv,
            Ready::Port(port),
            |port| {
                let mut send = self.timed(&format!("{name}-send"), nc);
                send.args(["-N", "127.0.0.1", &port.to_string()])
                    .stdin(input);
                send
            },
            timeout(bytes, 1),
        )
    }

    /// socat → socat (`-b 131072`) into the file `out`.
    pub fn socat_file(&self, socat: &str, src: &Path, out: &Path) -> Res<Run> {
        let port = free_port()?;
        let mut recv = self.timed("socat-recv", socat);
        recv.args(["-u", "-b", SOCAT_BUF])
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
            .arg(format!("OPEN:{},creat,trunc", out.display()));
        let bytes = fs::metadata(src).map_or(0, |m| m.len());
        self.pair(
            "socat",
            recv,
            Ready::Port(port),
            |port| {
                let mut send = self.timed("socat-send", socat);
                send.args(["-u", "-b", SOCAT_BUF])
                    .arg(format!("OPEN:{}", src.display()))
                    .arg(format!("TCP:127.0.0.1:{port}"));
                send
            },
            timeout(bytes, 1),
        )
    }

    /// `tar c -C parent name | nc` → `nc | tar x -C out`; with `sync`, the
    /// receiver then runs `sync -f out` (its filesystem).
    pub fn tar_nc(
        &self,
        nc: &str,
        parent: &Path,
        name: &str,
        out: &Path,
        sync: bool,
        limit: Duration,
    ) -> Res<Run> {
        let label = if sync { "tar-nc-sync" } else { "tar-nc" };
        let port = free_port()?;
        let mut recv = self.timed(&format!("{label}-recv"), "sh");
        recv.args([
            "-c",
            r#""$0" -l 127.0.0.1 "$1" </dev/null | tar x -C "$2" && if [ "$3" = sync ]; then sync -f "$2"; fi"#,
            nc,
            &port.to_string(),
        ])
        .arg(out)
        .arg(if sync { "sync" } else { "no" });
        self.pair(
            label,
            recv,
            Ready::Port(port),
            |port| {
                let mut send = self.timed(&format!("{label}-send"), "sh");
                send.args(["-c", r#"tar c -C "$1" "$3" | "$0" -N 127.0.0.1 "$2""#, nc])
                    .arg(parent)
                    .arg(port.to_string())
                    .arg(name);
                send
            },
            limit,
        )
    }
}
