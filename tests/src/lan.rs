//! The LAN: namespaces, bridge, veth pairs, addresses; and its teardown.
//!
//! Names are unique per LAN (`lsscn-<pid>-<seq>-sw`, `...-h1`, ...) so tests
//! run in parallel, and interfaces are created directly inside their
//! namespaces (`eth0` in each host, `br0` and `p1..pN` in the switch), so no
//! interface ever exists in the caller's namespace and interface names cannot
//! collide. Namespaces left behind by a test process that was killed outright
//! (no chance to run `Drop`) are removed by the next run.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::host::Host;
use crate::process::Registry;
use crate::templates::{install, templates};
use crate::{Bins, POLL, text};

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "lsscn";
/// Env var that turns "cannot create namespaces" from a skip into a failure.
const REQUIRE_ENV: &str = "LOCALSTREAM_REQUIRE_NETNS";
/// Most hosts one LAN may have (one identity template each).
const MAX_HOSTS: usize = 16;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// How to build a [`Lan`].
#[derive(Debug, Clone)]
pub struct LanBuilder {
    hosts: usize,
    ipv6: bool,
}

impl LanBuilder {
    /// Whether the hosts have IPv6 (default: yes, with a link-local address on
    /// `eth0` that is usable at once: duplicate address detection is off).
    /// Without it a host sends no IPv6 at all (no router solicitations, MLD
    /// reports, ...), which makes its packet counters exact.
    #[must_use]
    pub fn ipv6(mut self, on: bool) -> LanBuilder {
        self.ipv6 = on;
        self
    }

    /// Creates the LAN, or returns `None` after a loud `SKIPPED` message when
    /// network namespaces cannot be created here (and `LOCALSTREAM_REQUIRE_NETNS`
    /// is not `1`; with it, panics instead).
    ///
    /// # Panics
    /// When the LAN cannot be completed once namespaces do work (whatever was
    /// created is removed again).
    #[must_use]
    pub fn build(self, bins: Bins) -> Option<Lan> {
        assert!(
            (1..=MAX_HOSTS).contains(&self.hosts),
            "a LAN has 1..={MAX_HOSTS} hosts"
        );
        if let Some(reason) = preflight() {
            return skip(&reason);
        }
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        let templates = templates(&bins.tmp, self.hosts);

        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}-{}-{seq}", std::process::id());
        let subnet = [10, 78, u8::try_from(seq % 256).unwrap()];
        let mut lan = Lan {
            switch: None,
            host_ns: vec![],
            hosts: vec![],
            subnet,
            registry: Arc::new(Mutex::new(vec![])),
            bins: Arc::new(bins),
            scratch: tempfile::Builder::new()
                .prefix(&format!("{tag}-"))
                .tempdir()
                .unwrap(),
            tag,
        };

        // The switch: a bridge that floods multicast like a plain switch, and
        // no IPv6 of its own (it must not talk on the LAN).
        let sw = format!("{}-sw", lan.tag);
        if let Err(e) = ip(&["netns", "add", &sw]) {
            return skip(&format!("`ip netns add` failed: {e}"));
        }
        lan.switch = Some(sw.clone());
        set_sysctls(
            &sw,
            &[
                ("ipv6/conf/all/disable_ipv6", "1"),
                ("ipv6/conf/default/disable_ipv6", "1"),
            ],
        );
        must(ip_in(&sw, "link add br0 type bridge mcast_snooping 0"));
        must(ip_in(&sw, "link set br0 up"));

        for (i, template) in (1..=self.hosts).zip(&templates) {
            let ns = format!("{}-h{i}", lan.tag);
            must(ip(&["netns", "add", &ns]));
            lan.host_ns.push(ns.clone());
            // Before eth0 exists, so that it is created with these settings.
            let mut sysctls = vec![
                ("ipv6/conf/all/accept_dad", "0"),
                ("ipv6/conf/default/accept_dad", "0"),
            ];
            if !self.ipv6 {
                sysctls.push(("ipv6/conf/all/disable_ipv6", "1"));
                sysctls.push(("ipv6/conf/default/disable_ipv6", "1"));
            }
            set_sysctls(&ns, &sysctls);
            let addr = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], u8::try_from(i).unwrap());
            // eth0 is born in the host, its peer p<i> in the switch: no
            // interface ever appears in the caller's namespace.
            must(ip_in(
                &ns,
                &format!("link add eth0 type veth peer name p{i} netns {sw}"),
            ));
            must(ip_in(&sw, &format!("link set p{i} master br0 up")));
            must(ip_in(&ns, "link set lo up"));
            must(ip_in(&ns, &format!("addr add {addr}/24 dev eth0")));
            must(ip_in(&ns, "link set eth0 multicast on up"));
            must(ip_in(&ns, "route add 224.0.0.0/4 dev eth0"));

            let name = format!("h{i}");
            let dir = lan.scratch.path().join(&name);
            let home = dir.join("home");
            install(template, &home, &name);
            lan.hosts.push(Host::new(
                name,
                i,
                ns,
                addr,
                home,
                dir,
                lan.bins.clone(),
                lan.registry.clone(),
            ));
        }
        Some(lan)
    }
}

/// A private LAN of network namespaces; see the crate docs. Everything in it
/// (processes, namespaces, interfaces, scratch files) goes away on drop.
#[derive(Debug)]
pub struct Lan {
    tag: String,
    switch: Option<String>,
    host_ns: Vec<String>,
    hosts: Vec<Host>,
    subnet: [u8; 3],
    registry: Registry,
    bins: Arc<Bins>,
    scratch: tempfile::TempDir,
}

impl Lan {
    /// A LAN of `hosts` hosts (h1..hN) with IPv4 and IPv6, or `None` when
    /// namespaces are unavailable (see [`LanBuilder::build`]).
    #[must_use]
    pub fn new(hosts: usize, bins: Bins) -> Option<Lan> {
        Lan::builder(hosts).build(bins)
    }

    /// A builder for a LAN of `hosts` hosts.
    #[must_use]
    pub fn builder(hosts: usize) -> LanBuilder {
        LanBuilder { hosts, ipv6: true }
    }

    /// Host `hI` (1-based, like its name and its address).
    #[must_use]
    pub fn host(&self, i: usize) -> &Host {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "no host h{i} (the LAN has h1..h{})",
            self.hosts.len()
        );
        &self.hosts[i - 1]
    }

    /// All hosts, h1 first.
    #[must_use]
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The LAN's /24, e.g. `10.78.3.0`.
    #[must_use]
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], 0)
    }

    /// This LAN's unique tag (prefix of its namespace names).
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Every namespace of this LAN (hosts, then the switch).
    #[must_use]
    pub fn namespaces(&self) -> Vec<String> {
        self.host_ns
            .iter()
            .chain(self.switch.iter())
            .cloned()
            .collect()
    }

    /// The scratch directory holding the hosts' homes and files.
    #[must_use]
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// How many processes were started in this LAN so far.
    #[must_use]
    pub fn processes_started(&self) -> usize {
        self.registry.lock().map_or(0, |r| r.len())
    }

    /// Names of all network namespaces on this machine (`ip netns list`).
    #[must_use]
    pub fn existing_namespaces() -> Vec<String> {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return vec![];
        };
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Every process we started: SIGKILL, then reap.
        let children: Vec<_> = match self.registry.lock() {
            Ok(mut r) => r.drain(..).collect(),
            Err(poisoned) => poisoned.into_inner().drain(..).collect(),
        };
        for child in children {
            let mut child = match child.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still inside (children of what we started), then the
        // namespaces themselves; the switch last (its deletion removes the
        // bridge and the veth peers).
        let all = self.namespaces();
        remove_namespaces(&all);
        let left: Vec<String> = Lan::existing_namespaces()
            .into_iter()
            .filter(|n| all.contains(n))
            .collect();
        if !left.is_empty() {
            loud(&format!(
                "WARNING: LAN teardown left namespaces behind: {left:?}"
            ));
        }
    }
}

/// Kills every process inside `namespaces` and deletes them, in order.
fn remove_namespaces(namespaces: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = vec![];
        for ns in namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                pids.extend(text(&out.stdout).split_whitespace().map(str::to_owned));
            }
        }
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            loud(&format!(
                "WARNING: processes {pids:?} survive SIGKILL in {namespaces:?}"
            ));
            break;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(POLL);
    }
    for ns in namespaces {
        if let Err(e) = ip(&["netns", "del", ns]) {
            loud(&format!("WARNING: cannot delete namespace {ns}: {e}"));
        }
    }
}

/// Removes namespaces of earlier test processes that died without teardown
/// (run once, before this process creates any: so namespaces carrying this
/// process's own, reused, pid are stale too).
fn sweep_stale() {
    let me = std::process::id().to_string();
    let mut stale: Vec<String> = Lan::existing_namespaces()
        .into_iter()
        .filter(|name| {
            let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
                return false;
            };
            let pid = rest.split('-').next().unwrap_or("");
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && (pid == me || !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    if stale.is_empty() {
        return;
    }
    // Hosts before switches.
    stale.sort_by_key(|n| n.ends_with("-sw"));
    loud(&format!(
        "note: removing namespaces left by dead test processes: {stale:?}"
    ));
    remove_namespaces(&stale);
}

/// Why namespaces cannot be created here, if that is already clear.
fn preflight() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        });
    match uid.as_deref() {
        Some("0") => {}
        Some(u) => return Some(format!("not running as root (effective uid {u})")),
        None => return Some("cannot read the effective uid from /proc/self/status".into()),
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("`ip -V` failed: {}", text(&o.stderr).trim())),
        Err(e) => Some(format!("no `ip` binary (install iproute2): {e}")),
    }
}

/// Skips (returns `None`) or, when required, panics.
fn skip(reason: &str) -> Option<Lan> {
    let msg = format!("SKIPPED: network-namespace LAN tests need root and iproute2: {reason}");
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg} ({REQUIRE_ENV}=1, so this is a failure)");
    }
    loud(&msg);
    None
}

/// Writes straight to the process's stderr (not captured by the test harness).
fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
}

/// Runs `ip ARGS`; the error is its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            text(&out.stderr).trim()
        ))
    }
}

/// Runs `ip -n NS ARGS...` (`args` split on whitespace).
fn ip_in(ns: &str, args: &str) -> Result<(), String> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    ip(&all)
}

fn must(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("cannot build the test LAN: {e}");
    }
}

/// Writes `/proc/sys/net/<key>` = value inside namespace `ns` (keys whose
/// file does not exist, e.g. IPv6 ones on a kernel without IPv6, are skipped).
fn set_sysctls(ns: &str, kv: &[(&str, &str)]) {
    let script = r#"for kv in "$@"; do f="/proc/sys/net/${kv%%=*}"; if [ -e "$f" ]; then echo "${kv#*=}" > "$f" || exit 1; fi; done"#;
    localstream_testkit::output_ok(
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", script, "sh"])
            .args(kv.iter().map(|(k, v)| format!("{k}={v}")))
            .stdin(Stdio::null()),
        &format!("setting sysctls {kv:?} in {ns}"),
    );
}
