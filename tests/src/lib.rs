//! Multi-host LocalStream scenarios on a private LAN of network namespaces.
//!
//! What it does: builds a LAN on this machine out of Linux network namespaces
//! (one "switch" namespace holding a bridge, one namespace per host, joined by
//! veth pairs), runs real `localstream` nodes inside the hosts, and tears
//! everything down again, even when a test panics. mDNS announcements and
//! queries then cross real interfaces, exactly as on a LAN, but no packet can
//! leave the machine: the namespaces have no route anywhere else.
//!
//! What it does not do: it never runs anything in the caller's own network
//! namespace (every process goes through `ip netns exec`), and it does not
//! fake the network; what the nodes see is the kernel's real IP stack.
//!
//! ```text
//!   ns <tag>-sw:   br0 ── p1 ── p2 ── p3        (bridge, IPv6 off, snooping off)
//!                         │     │     │          veth pairs
//!   ns <tag>-h1:   eth0 10.78.N.1/24   lo       multicast on, 224.0.0.0/4 via eth0
//!   ns <tag>-h2:   eth0 10.78.N.2/24   lo
//!   ns <tag>-h3:   eth0 10.78.N.3/24   lo
//!
//!   Host::node() = ip netns exec <tag>-hI <localstream-node> --home <home> --no-progress
//! ```
//!
//! Needs root and iproute2. Without them [`Lan::new`] prints a loud
//! `SKIPPED: ...` line and returns `None` (the test returns early), unless
//! `LOCALSTREAM_REQUIRE_NETNS=1` is set (CI sets it), in which case it panics.
//!
//! In `tests/*.rs` of this package (only there does Cargo provide the binary
//! paths that [`bins!`] reads, hence `ignore`):
//!
//! ```ignore
//! use localstream_scenarios::{Lan, bins};
//!
//! let Some(lan) = Lan::new(2, bins!()) else { return };
//! let mut rx = lan.host(1).listen(&["--yes", "--name", "h1"]);
//! let file = lan.host(2).file("hello.txt", b"hello");
//! let out = lan.host(2).run(lan.host(2).node().arg("send").arg("h1").arg(&file));
//! out.expect_code(0);
//! let (_, saved) = rx.wait_received();
//! assert_eq!(std::fs::read(&saved[0]).unwrap(), b"hello");
//! ```
//!
//! Identities: RSA key generation is slow, so a few identity templates are
//! generated once per build directory (`CARGO_TARGET_TMPDIR/lan-identities`)
//! and host `hI` starts from a copy of template `I`: every host of one LAN has
//! its own key and node id.

// Test support: a failed step should fail the test loudly, with context.
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod flood;
mod host;
mod lan;
mod process;
mod templates;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use host::{Host, NetCounters};
pub use lan::{Lan, LanBuilder};
pub use localstream_testkit::{IdInfo, assert_content, random_bytes, text, text_bytes};
pub use process::{Listener, Output, Proc};

/// How long any single step may take before a test fails (generous for a
/// loaded 2-core CI machine; passing tests never wait this long).
pub const STEP: Duration = Duration::from_secs(30);
/// Poll interval for conditions that have no event to wait on.
pub const POLL: Duration = Duration::from_millis(10);

/// The service type LocalStream nodes announce.
pub const SERVICE_TYPE: &str = "_localstream._tcp.local.";

/// Paths only an integration test of this package knows (Cargo sets them at
/// compile time for `tests/*.rs`); build with [`bins!`].
#[derive(Debug, Clone)]
pub struct Bins {
    /// The `localstream` command (`localstream-node`).
    pub node: PathBuf,
    /// The mDNS announcer/browser (`mdns-fake`).
    pub fake: PathBuf,
    /// A scratch directory kept between runs (identity templates live here).
    pub tmp: PathBuf,
}

/// [`Bins`] of this package, for use in `tests/*.rs`.
#[macro_export]
macro_rules! bins {
    () => {
        $crate::Bins {
            node: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_localstream-node")),
            fake: ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_mdns-fake")),
            tmp: ::std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        }
    };
}

/// The name of the network namespace this process runs in, if it is one
/// named by `ip netns` (the machine's own namespace never is). The binaries
/// of this package refuse to run without one.
#[must_use]
pub fn current_netns() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns").ok()?.find_map(|e| {
        let e = e.ok()?;
        let m = std::fs::metadata(e.path()).ok()?;
        (m.dev() == me.dev() && m.ino() == me.ino())
            .then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// The peak resident set size of process `pid` in KiB (`VmHWM` of
/// `/proc/PID/status`: the most it ever held, not what it holds now).
///
/// # Panics
/// When the process is gone or the line is missing.
#[must_use]
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in /proc/{pid}/status:\n{status}"))
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    localstream_testkit::poll_until(limit, POLL, cond)
}

/// The names in `dir`, sorted (empty if it does not exist).
#[must_use]
pub fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
