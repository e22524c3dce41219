//! The machine and the run: CPU, cores, kernel, load, the command line.

use std::fs;
use std::process::Command;

use localstream_testkit::stdout_of;

use crate::{BIN, COMMAND};

/// What the report says about where and how it ran.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `localstream 0.1.0`.
    pub version: String,
    /// `git describe --always --dirty` of the source tree.
    pub commit: Option<String>,
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// The load average (1, 5, 15 minutes) when the benchmark started.
    pub load_before: String,
    /// The command as typed: the knobs set, then [`COMMAND`].
    pub command: String,
    /// The process's own argv (what cargo ran).
    pub argv: String,
}

impl Machine {
    /// Reads it now.
    pub fn now() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let mut knobs: Vec<String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("LOCALSTREAM_BENCH_"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        knobs.sort();
        knobs.push(COMMAND.to_string());
        Machine {
            version: stdout_of(Command::new(BIN).arg("--version"))
                .unwrap_or_else(|| "localstream".into()),
            commit: stdout_of(Command::new("git").args([
                "-C",
                env!("CARGO_MANIFEST_DIR"),
                "describe",
                "--always",
                "--dirty",
            ])),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown kernel".into(), |s| s.trim().to_string()),
            load_before: load_average(),
            command: knobs.join(" "),
            argv: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    /// `localstream 0.1.0 (abc123-dirty)`.
    pub fn version_line(&self) -> String {
        match &self.commit {
            Some(c) => format!("{} ({c})", self.version),
            None => self.version.clone(),
        }
    }

    /// Prints it, at the start.
    pub fn print(&self) {
        println!("{}", self.version_line());
        println!(
            "machine: {}, {} cores, Linux {}; load average {}",
            self.cpu, self.cores, self.kernel, self.load_before
        );
        println!("command: {}", self.command);
        println!("argv: {}", self.argv);
    }
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Is this process root (it may then install tools and mount the loop device)?
pub fn is_root() -> bool {
    stdout_of(Command::new("id").arg("-u")).is_some_and(|u| u == "0")
}
