//! A LAN of network namespaces whose one link can be shaped: two hosts
//! (`h1`, `h2`, at `10.79.<n>.1` and `.2`) and a switch namespace between
//! them, for the benchmark's shaped-link and latency rows.
//!
//! ```text
//!  h1 eth0 ══ p1 ─┐ switch ┌─ p2 ══ eth0 h2
//!                 br0 (plain bridge), or, while a Shaper lives:
//!                 p1 ◄─ delayline (rate, delay, loss each way) ─► p2
//! ```
//!
//! Interfaces are created inside their namespaces (no interface ever appears
//! in the caller's namespace; the host's real interfaces are never touched),
//! IPv6 is off, multicast is routed on `eth0` (mDNS works between the hosts),
//! and TSO/GSO/GRO and transmit checksumming are off on every veth, so
//! frames fit the MTU and carry whole checksums, as `delayline` needs. The namespaces are removed when the LAN is dropped
//! (end the processes started in them first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::procs::{Context, kill_tree};

/// Prefix of every namespace made here (`lsbench-<pid>-<seq>-sw`, `-h1`, `-h2`).
const PREFIX: &str = "lsbench";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Why the LAN cannot be made here, or `None` when it can (root, `ip`,
/// `ethtool`, `nsenter`).
#[must_use]
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("not root (network namespaces need root)".to_string());
    }
    let works = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works("ip", "-V") {
        return Some("no `ip` (apt-get install -y iproute2)".to_string());
    }
    if !works("ethtool", "--version") {
        return Some("no `ethtool` (apt-get install -y ethtool)".to_string());
    }
    if !works("nsenter", "--version") {
        return Some("no `nsenter` (apt-get install -y util-linux)".to_string());
    }
    None
}

/// Runs `ip ARGS` to completion, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    run(
        Command::new("ip").args(args),
        &format!("ip {}", args.join(" ")),
    )
}

/// Runs a command to completion (stdin closed), failing with its stderr.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the namespaces of a LAN whose process is gone (killed before it
/// could drop the LAN): `lsbench-<pid>-...` with no `/proc/<pid>`.
fn sweep_stale() {
    let Ok(out) = Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = ns
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// One link's shape, the same each way (as `tc netem` on each veth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Rate in Mbit/s.
    pub mbit: f64,
    /// One-way delay in ms.
    pub delay_ms: f64,
    /// Loss in percent.
    pub loss_pct: f64,
}

impl Profile {
    /// "300 Mbit/s, 3 ms, 0.1 % loss".
    #[must_use]
    pub fn label(&self) -> String {
        let rate = if self.mbit >= 1000.0 && (self.mbit % 1000.0) == 0.0 {
            format!("{} Gbit/s", self.mbit / 1000.0)
        } else {
            format!("{} Mbit/s", self.mbit)
        };
        let loss = if self.loss_pct > 0.0 {
            format!(", {} % loss", self.loss_pct)
        } else {
            String::new()
        };
        format!("{rate}, {} ms{loss}", self.delay_ms)
    }
}

/// Builds `delayline` (`cc -O2`) from `source` into `dir`; returns its path.
pub fn build_delayline(source: &Path, dir: &Path) -> Result<PathBuf, String> {
    let bin = dir.join("delayline");
    run(
        Command::new("cc")
            .arg("-O2")
            .arg("-o")
            .arg(&bin)
            .arg(source),
        &format!("cc -O2 {}", source.display()),
    )?;
    Ok(bin)
}

/// The two-host LAN; see the module docs.
#[derive(Debug)]
pub struct ShapedLan {
    sw: String,
    hosts: [String; 2],
    addrs: [String; 2],
}

impl ShapedLan {
    /// Makes the LAN. `Err` when a step fails (whatever was made is removed);
    /// call [`unavailable`] first to tell "cannot here" from a failure.
    pub fn new() -> Result<ShapedLan, String> {
        sweep_stale();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}-{}-{seq}", std::process::id());
        let net = format!("10.79.{}", seq % 256);
        let lan = ShapedLan {
            sw: format!("{tag}-sw"),
            hosts: [format!("{tag}-h1"), format!("{tag}-h2")],
            addrs: [format!("{net}.1"), format!("{net}.2")],
        };
        // Every namespace exists before anything can fail, so that the drop
        // removes whichever were made.
        ip(&["netns", "add", &lan.sw])?;
        let sw = lan.sw.clone();
        lan.sysctl(&sw, "net.ipv6.conf.all.disable_ipv6=1")?;
        lan.sysctl(&sw, "net.ipv6.conf.default.disable_ipv6=1")?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..2 {
            let ns = lan.hosts[i].clone();
            ip(&["netns", "add", &ns])?;
            lan.sysctl(&ns, "net.ipv6.conf.all.disable_ipv6=1")?;
            lan.sysctl(&ns, "net.ipv6.conf.default.disable_ipv6=1")?;
            let port = format!("p{}", i + 1);
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let addr = format!("{}/24", lan.addrs[i]);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "multicast", "on", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
            lan.no_offloads(&ns, "eth0")?;
            lan.no_offloads(&sw, &port)?;
        }
        Ok(lan)
    }

    fn sysctl(&self, ns: &str, setting: &str) -> Result<(), String> {
        run(
            Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", setting]),
            &format!("sysctl {setting} in {ns}"),
        )
    }

    /// TSO/GSO/GRO off (`ethtool -K`), so every frame fits the MTU; and
    /// transmit checksumming off: a veth's frames otherwise carry partial
    /// checksums, which a frame re-sent by `delayline` (AF_PACKET) keeps, and
    /// the receiving host drops it (no TCP connection gets through).
    fn no_offloads(&self, ns: &str, dev: &str) -> Result<(), String> {
        run(
            Command::new("ip").args([
                "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
                "gro", "off",
            ]),
            &format!(
                "ethtool -K {dev} tx off tso off gso off gro off in {ns} (apt-get install ethtool)"
            ),
        )
    }

    /// Host `i`'s (1 or 2) IPv4 address.
    #[must_use]
    pub fn addr(&self, i: usize) -> &str {
        &self.addrs[i - 1]
    }

    /// A command that runs `program` inside host `i` (1 or 2): through
    /// `nsenter --net=/run/netns/NS` (one exec, no mount namespace or sysfs
    /// remount as `ip netns exec` makes), so a timed start costs little.
    #[must_use]
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.hosts[i - 1]))
            .arg("--")
            .arg(program);
        c
    }

    /// Is something listening on TCP `port` (any address) in the namespace
    /// of process `pid`? From its `/proc/<pid>/net/tcp`.
    #[must_use]
    pub fn listening(pid: u32, port: u16) -> bool {
        let want = format!(":{port:04X}");
        std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let mut cols = l.split_whitespace();
                let local = cols.nth(1).unwrap_or("");
                let state = cols.nth(1);
                local.ends_with(&want) && state == Some("0A")
            })
        })
    }

    /// Shapes the link: takes both ports off the bridge and runs `delayline`
    /// between them in the switch namespace, until the [`Shaper`] is ended
    /// or dropped (then the ports go back on the bridge).
    pub fn shape(&self, delayline: &Path, p: Profile, log: &Path) -> Result<Shaper, String> {
        for port in ["p1", "p2"] {
            ip(&["-n", &self.sw, "link", "set", port, "nomaster"])?;
        }
        let err =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.sw])
            .arg(delayline)
            .args(["p1", "p2"])
            .args([
                p.mbit.to_string(),
                p.delay_ms.to_string(),
                p.loss_pct.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", delayline.display()))?;
        Ok(Shaper {
            sw: self.sw.clone(),
            child: Some(child),
        })
    }
}

impl Drop for ShapedLan {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.sw]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A running `delayline`; see [`ShapedLan::shape`].
#[derive(Debug)]
pub struct Shaper {
    sw: String,
    child: Option<Child>,
}

impl Shaper {
    /// Is it still running? (It exits at once on a bad interface.)
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
        for port in ["p1", "p2"] {
            let _ = ip(&["-n", &self.sw, "link", "set", port, "master", "br0", "up"]);
        }
    }
}
