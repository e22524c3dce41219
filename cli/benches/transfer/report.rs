//! The samples of every series and the Markdown report: one table per
//! series, medians with (min–max), ratios of medians, then the machine, the
//! destinations and the command.

use localstream_testkit::measure::{max, median, min};

use crate::big::BigResults;
use crate::lan::Row;
use crate::localstream::{HANDSHAKES_PER_ROUND, Handshakes};
use crate::machine::Machine;
use crate::resume::ResumeResults;
use crate::small::SmallSet;
use crate::ssh::CIPHER;
use crate::tools::{Run, SOCAT_BUF};
use crate::{Bench, Config};

/// Bytes in a GiB, for CPU seconds per GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// A tool the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `localstream listen` ← `localstream send`.
    LocalStream,
    /// `nc -l > file` ← `nc -N < file`.
    Nc,
    /// The same, then `sync file` on the receiver.
    NcSync,
    /// `socat -b 131072` both sides.
    Socat,
    /// `scp -c aes128-gcm` to a private sshd.
    Scp,
    /// `tar c | nc` → `nc | tar x`.
    TarNc,
    /// The same, then `sync -f` of the destination.
    TarNcSync,
}

impl Tool {
    /// For run lines and tables.
    pub fn label(self) -> &'static str {
        match self {
            Tool::LocalStream => "LocalStream",
            Tool::Nc => "nc",
            Tool::NcSync => "nc + sync",
            Tool::Socat => "socat",
            Tool::Scp => "scp",
            Tool::TarNc => "tar | nc",
            Tool::TarNcSync => "tar | nc + sync",
        }
    }

    /// For file names.
    pub fn slug(self) -> &'static str {
        match self {
            Tool::LocalStream => "ls",
            Tool::Nc => "nc",
            Tool::NcSync => "nc-sync",
            Tool::Socat => "socat",
            Tool::Scp => "scp",
            Tool::TarNc => "tar-nc",
            Tool::TarNcSync => "tar-nc-sync",
        }
    }

    /// The table's column heading (Markdown).
    fn heading(self) -> String {
        match self {
            Tool::Socat => format!("socat -b {SOCAT_BUF}"),
            Tool::Scp => format!("scp -c {}", CIPHER.trim_end_matches("@openssh.com")),
            Tool::TarNc => "tar c \\| nc → nc \\| tar x".to_string(),
            Tool::TarNcSync => "tar \\| nc + sync -f".to_string(),
            Tool::NcSync => "nc + sync FILE".to_string(),
            t => t.label().to_string(),
        }
    }
}

/// What one tool measured in one series on one destination.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Wall seconds.
    pub wall: Vec<f64>,
    /// MB/s (when a size was given).
    pub mbps: Vec<f64>,
    /// CPU seconds (user + sys) of the sender, per GiB when a size was given.
    pub cpu_send: Vec<f64>,
    /// The same for the receiver.
    pub cpu_recv: Vec<f64>,
    /// Peak RSS of the sender (MiB).
    pub rss_send: Vec<f64>,
    /// Peak RSS of the receiver (MiB).
    pub rss_recv: Vec<f64>,
}

impl Samples {
    /// Adds a run; `bytes` makes MB/s and CPU per GiB.
    pub fn add(&mut self, r: &Run, bytes: Option<u64>) {
        self.wall.push(r.wall);
        let per = bytes.map_or(1.0, |b| GIB / b as f64);
        if let Some(b) = bytes {
            self.mbps.push(b as f64 / r.wall / 1e6);
        }
        if let Some(u) = r.send {
            self.cpu_send.push(u.cpu() * per);
            if u.max_rss_kib > 0 {
                self.rss_send.push(u.rss_mib());
            }
        }
        if let Some(u) = r.recv {
            self.cpu_recv.push(u.cpu() * per);
            if u.max_rss_kib > 0 {
                self.rss_recv.push(u.rss_mib());
            }
        }
    }
}

/// "693 (650–700)", digits after the point as given; "n/a" when empty.
fn spread(v: &[f64], digits: usize) -> String {
    match (median(v), min(v), max(v)) {
        (Some(m), Some(lo), Some(hi)) if v.len() > 1 => {
            format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
        }
        (Some(m), ..) => format!("{m:.digits$}"),
        _ => "n/a".to_string(),
    }
}

/// "1.02 / 1.10": two medians.
fn pair(a: &[f64], b: &[f64], digits: usize) -> String {
    let m = |v: &[f64]| median(v).map_or("n/a".to_string(), |m| format!("{m:.digits$}"));
    format!("{} / {}", m(a), m(b))
}

/// The ratio of two medians, "0.93".
fn ratio(a: &[f64], b: &[f64]) -> String {
    match (median(a), median(b)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    }
}

/// Everything measured, and notes for the report.
#[derive(Debug)]
pub struct Results {
    /// The big-file series.
    pub big: Option<BigResults>,
    /// The small-file and tree series.
    pub small: Vec<SmallSet>,
    /// The resume series.
    pub resume: Option<ResumeResults>,
    /// The handshake series.
    pub handshake: Option<Handshakes>,
    /// The namespace-LAN rows (shaped links, latency).
    pub lan: Vec<Row>,
    /// Lines for after the tables.
    pub notes: Vec<String>,
    /// The machine at the start.
    pub machine: Machine,
    /// The knobs.
    pub cfg: Config,
    /// The load average at the end.
    pub load_after: String,
    /// How long the whole run took.
    pub minutes: f64,
}

impl Results {
    /// Empty, for this run.
    pub fn new(cfg: &Config, machine: &Machine) -> Results {
        Results {
            big: None,
            small: vec![],
            resume: None,
            handshake: None,
            lan: vec![],
            notes: vec![],
            machine: machine.clone(),
            cfg: cfg.clone(),
            load_after: String::new(),
            minutes: 0.0,
        }
    }

    /// The report.
    pub fn markdown(&self, bench: &Bench) -> String {
        let mut md = vec![];
        let m = &self.machine;
        md.push("## Results".to_string());
        md.push(String::new());
        md.push(format!(
            "{}; {}, {} cores, Linux {}; loopback (127.0.0.1), release build; \
             medians (min–max) of interleaved rounds.",
            m.version_line(),
            m.cpu,
            m.cores,
            m.kernel
        ));
        if let Some(big) = &self.big {
            md.push(String::new());
            self.big_table(big, &mut md);
        }
        if !self.small.is_empty() {
            md.push(String::new());
            self.small_table(&mut md);
        }
        if let Some(r) = &self.resume {
            md.push(String::new());
            resume_table(r, &mut md);
        }
        if let Some(h) = &self.handshake {
            md.push(String::new());
            md.push(format!(
                "Handshake on loopback, a tiny file, {} sends ({} per round):",
                h.handshake_ms.len(),
                HANDSHAKES_PER_ROUND
            ));
            md.push(String::new());
            md.push("| tiny file | median (min–max) |".to_string());
            md.push("| --- | ---: |".to_string());
            md.push(format!(
                "| connect → session keys (ms) | {} |",
                spread(&h.handshake_ms, 2)
            ));
            md.push(format!(
                "| connect → first data byte (ms) | {} |",
                spread(&h.first_data_ms, 2)
            ));
            md.push(format!(
                "| whole `send`, start to both exited (ms) | {} |",
                spread(&h.command_ms, 1)
            ));
        }
        if !self.lan.is_empty() {
            md.push(String::new());
            md.push("On a LAN of network namespaces (`lan.rs`):".to_string());
            md.push(String::new());
            md.push("| namespace LAN | median (min–max) | |".to_string());
            md.push("| --- | ---: | --- |".to_string());
            for r in &self.lan {
                let cell = match r.samples.len() {
                    0 => "n/a".to_string(),
                    1 => format!("{:.1}", r.median()),
                    _ => format!("{:.1} ({:.1}–{:.1})", r.median(), r.min(), r.max()),
                };
                md.push(format!(
                    "| {} ({}) | {cell} | {} |",
                    r.label, r.unit, r.note
                ));
            }
        }
        md.push(String::new());
        md.push(
            "MB/s = 10^6 bytes per second of wall time, from starting the sender until both \
             sides have exited (LocalStream: process start, RSA-3072 handshake, AES-GCM, \
             BLAKE3 verification and the fsync before a file gets its name; nc, socat and \
             tar copy plain bytes, unencrypted and unverified; `+ sync` adds the receiver's \
             `sync FILE` or `sync -f DIR` until the data is on disk). CPU-s = user + system \
             seconds of each side (GNU time; `sh -c` pipelines count every process in them), \
             per GiB for the big file; peak RSS = the largest process of each side. Ratios \
             are of the medians."
                .to_string(),
        );
        md.push(String::new());
        for d in &bench.dests {
            md.push(format!("- destination {}: {}", d.label, d.about));
        }
        for n in &self.notes {
            md.push(format!("- {n}"));
        }
        if bench.tools.ssh.is_none() && self.big.is_some() {
            md.push(format!("- scp: skipped: {}", bench.tools.ssh_missing));
        }
        md.push(format!(
            "- load average {} before, {} after; the run took {:.0} s",
            m.load_before,
            self.load_after,
            self.minutes * 60.0
        ));
        md.push(format!("- command: `{}`", m.command));
        md.join("\n") + "\n"
    }

    fn big_table(&self, big: &BigResults, md: &mut Vec<String>) {
        let Some((_, first)) = big.dests.first() else {
            return;
        };
        let tools: Vec<Tool> = first.iter().map(|(t, _)| *t).collect();
        md.push(format!(
            "One {} random file, {} rounds:",
            big.size, self.cfg.runs
        ));
        md.push(String::new());
        md.push(format!(
            "| {} file | {} |",
            big.size,
            tools
                .iter()
                .map(|t| t.heading())
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        md.push(format!("| --- |{}", " ---: |".repeat(tools.len())));
        let line =
            |label: String, cell: &dyn Fn(&Samples) -> String, samples: &[(Tool, Samples)]| {
                format!(
                    "| {label} | {} |",
                    samples
                        .iter()
                        .map(|(_, s)| cell(s))
                        .collect::<Vec<_>>()
                        .join(" | ")
                )
            };
        for (dest, samples) in &big.dests {
            md.push(line(
                format!("to {dest} (MB/s)"),
                &|s| spread(&s.mbps, 0),
                samples,
            ));
            md.push(line(
                format!("to {dest}: CPU-s per GiB, send / recv"),
                &|s| pair(&s.cpu_send, &s.cpu_recv, 2),
                samples,
            ));
            md.push(line(
                format!("to {dest}: peak RSS MiB, send / recv"),
                &|s| pair(&s.rss_send, &s.rss_recv, 1),
                samples,
            ));
        }
        md.push(String::new());
        md.push(format!(
            "| LocalStream's MB/s over | {} |",
            big.dests
                .iter()
                .map(|(d, _)| format!("to {d}"))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        md.push(format!("| --- |{}", " ---: |".repeat(big.dests.len())));
        for other in [Tool::Nc, Tool::NcSync, Tool::Socat, Tool::Scp] {
            if !tools.contains(&other) {
                continue;
            }
            let cells: Vec<String> = big
                .dests
                .iter()
                .map(|(_, samples)| {
                    let get = |t: Tool| {
                        samples
                            .iter()
                            .find(|(x, _)| *x == t)
                            .map(|(_, s)| s.mbps.clone())
                            .unwrap_or_default()
                    };
                    ratio(&get(Tool::LocalStream), &get(other))
                })
                .collect();
            md.push(format!("| {} | {} |", other.heading(), cells.join(" | ")));
        }
    }

    fn small_table(&self, md: &mut Vec<String>) {
        md.push(format!(
            "Many small files, {} rounds unless a row says otherwise (wall seconds; lower is better):",
            self.cfg.small_runs
        ));
        md.push(String::new());
        md.push(
            "| files | LocalStream (s) | tar c \\| nc → nc \\| tar x (s) | tar \\| nc + sync -f (s) \
             | LocalStream / (tar \\| nc + sync) | peak RSS MiB send / recv: LocalStream | tar \\| nc |"
                .to_string(),
        );
        md.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: |".to_string());
        for set in &self.small {
            for (dest, samples) in &set.dests {
                let get = |t: Tool| samples.iter().find(|(x, _)| *x == t).map(|(_, s)| s);
                let empty = Samples::default();
                let ls = get(Tool::LocalStream).unwrap_or(&empty);
                let tar = get(Tool::TarNc).unwrap_or(&empty);
                let tar_sync = get(Tool::TarNcSync).unwrap_or(&empty);
                let sends = if set.sends > 1 {
                    format!(", in {} sends", set.sends)
                } else {
                    String::new()
                };
                md.push(format!(
                    "| {} to {dest} | {}{sends} | {} | {} | {} | {} | {} |",
                    set.label,
                    spread(&ls.wall, 2),
                    spread(&tar.wall, 2),
                    spread(&tar_sync.wall, 2),
                    ratio(&ls.wall, &tar_sync.wall),
                    pair(&ls.rss_send, &ls.rss_recv, 1),
                    pair(&tar.rss_send, &tar.rss_recv, 1),
                ));
            }
        }
    }
}

/// The resume series' table: each side's check of the held prefix, and
/// the resumed send's connect → first data.
fn resume_table(r: &ResumeResults, md: &mut Vec<String>) {
    let held: Vec<f64> = r
        .rows
        .iter()
        .flat_map(|row| row.held.iter().map(|&h| h as f64 / GIB))
        .collect();
    md.push(format!(
        "Resume: a {:.2} GiB file, its send interrupted (SIGINT) once the receiver held {} GiB, \
         then sent again; before any data both sides hash the held prefix \
         (the receiver, then the sender), {} rounds:",
        r.size as f64 / GIB,
        spread(&held, 2),
        r.rows.first().map_or(0, |row| row.held.len())
    ));
    md.push(String::new());
    md.push(
        "| held prefix | receiver checks (s) | sender checks (s) | GB/s (held bytes by the slower check) | connect → first data (s) |"
            .to_string(),
    );
    md.push("| --- | ---: | ---: | ---: | ---: |".to_string());
    for row in &r.rows {
        let rate: Vec<f64> = row
            .held
            .iter()
            .zip(row.recv_s.iter().zip(&row.send_s))
            .map(|(&h, (&a, &b))| h as f64 / a.max(b) / 1e9)
            .collect();
        md.push(format!(
            "| {} | {} | {} | {} | {} |",
            row.label,
            spread(&row.recv_s, 2),
            spread(&row.send_s, 2),
            spread(&rate, 2),
            spread(&row.first_data_s, 2)
        ));
    }
}
