//! Loopback benchmark: LocalStream (encrypted and verified) against plain TCP
//! copies of the same data (`nc`, `nc` + `sync`, `socat`, `tar | nc`, and
//! `scp` when an sshd can be started), to a real disk (ext4) and to tmpfs,
//! with CPU seconds and peak memory of each side.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p localstream --bench transfer
//! LOCALSTREAM_BENCH_ONLY=big LOCALSTREAM_BENCH_MIB=256 LOCALSTREAM_BENCH_RUNS=1 \
//!     cargo bench -p localstream --bench transfer      # a quick look
//! ```
//!
//! Series (`LOCALSTREAM_BENCH_ONLY`, comma-separated; default all but `million`):
//!
//! | series | what |
//! | --- | --- |
//! | `big` | one random file (`LOCALSTREAM_BENCH_MIB`, default 1024): LocalStream, nc, nc + `sync FILE`, socat -b 131072, scp -c aes128-gcm (when sshd is there); MB/s, CPU-s per GiB and peak RSS per side |
//! | `small` | 10,000 x 4 KiB in one folder (`LOCALSTREAM_BENCH_SMALL`), 100,000 x 1 KiB in 100 x 10 nested folders (`LOCALSTREAM_BENCH_NESTED`; 0 leaves it out): LocalStream, `tar c \| nc` → `nc \| tar x`, the same + `sync -f DIR` |
//! | `tree` | a real tree: about 6,000 files (`LOCALSTREAM_BENCH_TREE_FILES`) of whole crates from the cargo registry's sources, with the same tools |
//! | `resume` | a file of `LOCALSTREAM_BENCH_RESUME_MIB` (default 4096) and an eighth more (it and its copy on tmpfs take about 9 GiB of memory), its send interrupted (SIGINT) once the receiver holds that much, then sent again: each side's check of the held prefix (BLAKE3 of it on both sides) and connect → first data; on ext4 as the interrupted send left the partial and with it read once before (page cache warm) |
//! | `handshake` | a tiny file 3 times per round: `send -v`'s handshake and first-data times (loopback) |
//! | `lan`, `latency` | the shaped-link rows and `send <pinned name>` on a namespace LAN ([`lan`]) |
//! | `million` | only when named: 1,000,000 files of 64 bytes (`LOCALSTREAM_BENCH_MILLION`) in 32 x 32 nested folders, one round (after an untimed run of `tar | nc + sync` per destination: this VM's memory freed a while ago is slow to touch again), with the same tools as `small`: one send, and its peak RSS per side |
//!
//! Other knobs: `LOCALSTREAM_BENCH_RUNS` (rounds, default 5 for `big` and
//! `handshake`), `LOCALSTREAM_BENCH_SMALL_RUNS` (default 3, or `_RUNS` when
//! that is smaller), `LOCALSTREAM_BENCH_DEST` (`ext4,tmpfs`), `LOCALSTREAM_BENCH_EXT4_DIR`
//! (an ext4 folder to write into instead of the journaled loop device of
//! `../shared/tools/jext4`), `LOCALSTREAM_BENCH_OUT` (where the Markdown table
//! goes; default `target/bench-transfer.md`).
//!
//! Every source is on tmpfs (`/dev/shm`), so reading costs no disk time. Each
//! round runs every tool once (A B C A B C ...), every run line is printed as
//! it goes, then one Markdown table of medians (min–max). Between runs the
//! output is removed and its filesystem synced (not timed). It asserts
//! nothing about speed; it fails (non-zero exit) only when a transfer fails or
//! anything arrives wrong: every received file is compared by size and
//! BLAKE3 hash with its original, and a received tree must hold exactly the
//! original's paths.
//!
//! It installs `nc` (netcat-openbsd), `socat`, GNU `time` and `ethtool` with apt-get
//! when they are missing (as root). Network safety: every `localstream`
//! command runs with `--no-discovery` (no mDNS) on 127.0.0.1, and nc, socat,
//! tar | nc and sshd bind 127.0.0.1 only.

mod big;
mod lan;
mod localstream;
mod machine;
mod report;
mod resume;
mod small;
mod ssh;
mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use localstream_testkit::files::{Mount, Rng, Scratch, write_random};
use localstream_testkit::procs::Context;

use crate::report::Results;
use crate::tools::Tools;

/// The binary under test, built by cargo with the bench (release) profile.
const BIN: &str = env!("CARGO_BIN_EXE_localstream");
/// How to run this benchmark.
const COMMAND: &str = "cargo bench -p localstream --bench transfer";

/// Errors are messages.
type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The series run when `LOCALSTREAM_BENCH_ONLY` is not set.
const DEFAULT_SERIES: [&str; 7] = [
    "big",
    "small",
    "tree",
    "resume",
    "handshake",
    "lan",
    "latency",
];

/// The series run only when `LOCALSTREAM_BENCH_ONLY` names them (`million`
/// takes minutes of its own).
const NAMED_SERIES: [&str; 1] = ["million"];

/// The knobs, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of the big file in MiB.
    pub mib: u64,
    /// Rounds of the big-file and handshake series.
    pub runs: usize,
    /// Rounds of the small-file and tree series.
    pub small_runs: usize,
    /// Number of 4 KiB files in one folder.
    pub small: usize,
    /// Number of 1 KiB files in nested folders.
    pub nested: usize,
    /// About how many files of the cargo registry's sources.
    pub tree_files: usize,
    /// Number of files of the `million` series.
    pub million: usize,
    /// MiB the receiver holds in the `resume` series.
    pub resume_mib: u64,
    /// The chosen series.
    pub only: Vec<String>,
    /// The chosen destinations (`ext4`, `tmpfs`).
    pub dests: Vec<String>,
    /// Where the Markdown table goes.
    pub out: PathBuf,
}

impl Config {
    fn from_env() -> Res<Config> {
        let number = |name: &str, default: u64| -> Res<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a whole number")),
                Err(_) => Ok(default),
            }
        };
        let count = |name: &str, default: u64| -> Res<usize> {
            usize::try_from(number(name, default)?).with_context(|| name.to_string())
        };
        let list = |name: &str, allowed: &[&str], default: &[&str]| -> Res<Vec<String>> {
            let Ok(v) = std::env::var(name) else {
                return Ok(default.iter().map(|s| s.to_string()).collect());
            };
            let items: Vec<String> = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if let Some(bad) = items.iter().find(|i| !allowed.contains(&i.as_str())) {
                return Err(format!(
                    "{name}: unknown {bad:?}; choose from {}",
                    allowed.join(",")
                ));
            }
            Ok(items)
        };
        let mib = number("LOCALSTREAM_BENCH_MIB", 1024)?;
        let runs = count("LOCALSTREAM_BENCH_RUNS", 5)?;
        let small_runs = count("LOCALSTREAM_BENCH_SMALL_RUNS", runs.min(3) as u64)?;
        if mib == 0 || runs == 0 || small_runs == 0 {
            return Err(
                "LOCALSTREAM_BENCH_MIB, _RUNS and _SMALL_RUNS must be at least 1".to_string(),
            );
        }
        let out = match std::env::var_os("LOCALSTREAM_BENCH_OUT") {
            Some(p) => PathBuf::from(p),
            None => target_dir().join("bench-transfer.md"),
        };
        Ok(Config {
            mib,
            runs,
            small_runs,
            small: count("LOCALSTREAM_BENCH_SMALL", 10_000)?,
            nested: count("LOCALSTREAM_BENCH_NESTED", 100_000)?,
            tree_files: count("LOCALSTREAM_BENCH_TREE_FILES", 6_000)?,
            million: count("LOCALSTREAM_BENCH_MILLION", 1_000_000)?,
            resume_mib: number("LOCALSTREAM_BENCH_RESUME_MIB", 4096)?.max(1),
            only: list(
                "LOCALSTREAM_BENCH_ONLY",
                &[&DEFAULT_SERIES[..], &NAMED_SERIES[..]].concat(),
                &DEFAULT_SERIES,
            )?,
            dests: list(
                "LOCALSTREAM_BENCH_DEST",
                &["ext4", "tmpfs"],
                &["ext4", "tmpfs"],
            )?,
            out,
        })
    }

    /// Is this series chosen?
    pub fn wants(&self, series: &str) -> bool {
        self.only.iter().any(|s| s == series)
    }

    /// Bytes of the big file.
    pub fn bytes(&self) -> u64 {
        self.mib * 1024 * 1024
    }

    /// "1 GiB", "256 MiB".
    pub fn size_label(&self) -> String {
        if self.mib.is_multiple_of(1024) {
            format!("{} GiB", self.mib / 1024)
        } else {
            format!("{} MiB", self.mib)
        }
    }
}

/// Cargo's target folder: `CARGO_TARGET_DIR` when set, else the workspace's.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// Where received files go: a scratch folder on one filesystem.
#[derive(Debug)]
pub struct Dest {
    /// `ext4` or `tmpfs`: the table's label.
    pub label: &'static str,
    /// The folder (removed at the end).
    pub scratch: Scratch,
    /// What it is, for the report: filesystem, device, journal.
    pub about: String,
}

impl Dest {
    /// The folder.
    pub fn dir(&self) -> &Path {
        self.scratch.dir()
    }

    /// Syncs its filesystem (`sync -f`), between runs: what one run left in
    /// the page cache is not written back during the next.
    pub fn settle(&self) -> Res<()> {
        let st = Command::new("sync")
            .arg("-f")
            .arg(self.dir())
            .stdin(Stdio::null())
            .status()
            .with_context(|| "running sync -f".to_string())?;
        if !st.success() {
            return Err(format!("sync -f {} failed ({st})", self.dir().display()));
        }
        Ok(())
    }
}

/// Everything a series needs.
#[derive(Debug)]
pub struct Bench {
    /// The knobs.
    pub cfg: Config,
    /// nc, socat, GNU time, sshd.
    pub tools: Tools,
    /// The sources (tmpfs), logs and LocalStream homes.
    pub src: Scratch,
    /// Process logs and GNU time files.
    pub logs: PathBuf,
    /// The receiver's LocalStream home.
    pub home_recv: PathBuf,
    /// The sender's LocalStream home.
    pub home_send: PathBuf,
    /// Where files go.
    pub dests: Vec<Dest>,
}

/// A base folder on tmpfs (`/dev/shm`), else the temporary folder.
fn tmpfs_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Does the ext4 filesystem on `source` (`/dev/loop0`) have a journal? From
/// `/proc/fs/jbd2/<dev>-*`, which exists only for journaled filesystems.
fn has_journal(source: &str) -> bool {
    let dev = Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::read_dir("/proc/fs/jbd2").is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{dev}-"))
        })
    })
}

fn describe(dir: &Path) -> Res<String> {
    let m = Mount::of(dir)?;
    let journal = if m.fstype.starts_with("ext") {
        if has_journal(&m.source) {
            ", with a journal"
        } else {
            ", without a journal"
        }
    } else {
        ""
    };
    Ok(format!(
        "{} ({} on {}, mounted at {}{journal})",
        dir.display(),
        m.fstype,
        m.source,
        m.point.display()
    ))
}

/// The ext4 destination: `LOCALSTREAM_BENCH_EXT4_DIR`, else the journaled
/// ext4 loop device of `../shared/tools/jext4 up` (as root), else the
/// temporary folder when it is ext4. `None` (with the reason printed) when
/// there is no ext4 to write to.
fn ext4_dest() -> Res<Option<Dest>> {
    let base = if let Some(d) = std::env::var_os("LOCALSTREAM_BENCH_EXT4_DIR") {
        PathBuf::from(d)
    } else {
        let jext4 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/jext4");
        let root = machine::is_root();
        let mut base = None;
        if jext4.is_file() && root {
            let place = std::env::var_os("JEXT4_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("jext4"));
            // The tool puts its image there but does not make the folder.
            std::fs::create_dir_all(&place)
                .with_context(|| format!("making {}", place.display()))?;
            let out = Command::new("bash")
                .arg(&jext4)
                .arg("up")
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {} up", jext4.display()))?;
            let dir = place.join("j");
            if out.status.success() && Mount::of(&dir).is_ok_and(|m| m.fstype == "ext4") {
                base = Some(dir);
            } else {
                println!(
                    "NOTE: {} up failed ({}): {}; writing to the temporary folder instead",
                    jext4.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        } else {
            println!(
                "NOTE: no journaled ext4 loop device ({}): writing to the temporary folder",
                if root {
                    format!("{} is missing", jext4.display())
                } else {
                    "not root".to_string()
                }
            );
        }
        base.unwrap_or_else(std::env::temp_dir)
    };
    let m = Mount::of(&base)?;
    if m.fstype != "ext4" {
        println!(
            "NOTE: {} is {} (on {}), not ext4: the ext4 rows are skipped",
            base.display(),
            m.fstype,
            m.source
        );
        return Ok(None);
    }
    if !has_journal(&m.source) {
        println!(
            "NOTE: {} is ext4 without a journal: creating files soon after many deletions \
             is slow there and varies 3-7x from minute to minute, for every tool",
            base.display()
        );
    }
    let scratch = Scratch::create(&base, "localstream-bench-out")?;
    Ok(Some(Dest {
        label: "ext4",
        about: describe(scratch.dir())?,
        scratch,
    }))
}

fn run() -> Res<()> {
    let cfg = Config::from_env()?;
    let start = Instant::now();
    let machine = machine::Machine::now();
    println!("LocalStream loopback benchmark");
    machine.print();
    if cfg.runs < 3 || cfg.small_runs < 3 {
        println!(
            "NOTE: fewer than 3 rounds ({} big, {} small): medians are rough",
            cfg.runs, cfg.small_runs
        );
    }
    println!(
        "series: {}; destinations: {}; rounds: {} (big, handshake), {} (small, tree)",
        cfg.only.join(","),
        cfg.dests.join(","),
        cfg.runs,
        cfg.small_runs
    );

    let tools = Tools::ensure();
    let src = Scratch::create(&tmpfs_base(), "localstream-bench")?;
    for c in [',', ':', '!', ' ', '\'', '"'] {
        if src.dir().to_string_lossy().contains(c) {
            return Err(format!(
                "scratch path {} contains {c:?}, which socat addresses cannot hold; set TMPDIR",
                src.dir().display()
            ));
        }
    }
    println!("sources: {}", describe(src.dir())?);
    let mut dests = vec![];
    if cfg.dests.iter().any(|d| d == "ext4") {
        dests.extend(ext4_dest()?);
    }
    if cfg.dests.iter().any(|d| d == "tmpfs") {
        let scratch = Scratch::create(&tmpfs_base(), "localstream-bench-out")?;
        let m = Mount::of(scratch.dir())?;
        if m.fstype == "tmpfs" {
            dests.push(Dest {
                label: "tmpfs",
                about: describe(scratch.dir())?,
                scratch,
            });
        } else {
            println!("NOTE: no tmpfs (/dev/shm): the tmpfs rows are skipped");
        }
    }
    for d in &dests {
        println!("destination {}: {}", d.label, d.about);
    }

    let logs = src.path("logs");
    fs::create_dir(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut bench = Bench {
        home_recv: src.path("home-recv"),
        home_send: src.path("home-send"),
        logs,
        cfg,
        tools,
        src,
        dests,
    };
    bench.tools.start_ssh(&bench.src, &bench.logs);
    localstream::identities(&bench)?;

    // Warm-up: first contact (key pinning on both sides) happens here, not
    // in a timed run; also loads the binary into the page cache.
    let tiny = bench.src.path("tiny.txt");
    fs::write(&tiny, b"hello from the LocalStream benchmark\n")
        .with_context(|| format!("writing {}", tiny.display()))?;
    let warm = localstream::tiny(&bench, localstream::Verbose::Quiet)?;
    println!(
        "warm-up: tiny file in {:.1} ms (first contact: keys pinned on both sides)",
        warm.run.wall * 1e3
    );

    let mut results = Results::new(&bench.cfg, &machine);
    if bench.cfg.wants("big") {
        let t = Instant::now();
        let mut rng = Rng::from_clock();
        write_random(&bench.src.path(big::NAME), bench.cfg.bytes(), &mut rng)?;
        println!(
            "\nbig file: {} random ({:.1} s to make)",
            bench.cfg.size_label(),
            t.elapsed().as_secs_f64()
        );
        results.big = Some(big::run(&bench)?);
        fs::remove_file(bench.src.path(big::NAME))
            .with_context(|| "removing the big file".to_string())?;
    }
    if bench.cfg.wants("small") || bench.cfg.wants("tree") || bench.cfg.wants("million") {
        results.small = small::run(&bench, &mut results.notes)?;
    }
    if bench.cfg.wants("resume") {
        let t = Instant::now();
        let held = bench.cfg.resume_mib * 1024 * 1024;
        let mut rng = Rng::from_clock();
        write_random(&bench.src.path(resume::NAME), held + held / 8, &mut rng)?;
        println!(
            "\nresume: a {:.2} GiB random file ({:.1} s to make)",
            (held + held / 8) as f64 / (1u64 << 30) as f64,
            t.elapsed().as_secs_f64()
        );
        results.resume = Some(resume::run(&bench, held)?);
        fs::remove_file(bench.src.path(resume::NAME))
            .with_context(|| "removing the resume series' file".to_string())?;
    }
    if bench.cfg.wants("handshake") {
        results.handshake = Some(localstream::handshakes(&bench)?);
    }
    if bench.cfg.wants("lan") || bench.cfg.wants("latency") {
        println!("\nnamespace LAN: shaped links and latency");
        results.lan = lan::rows(
            Path::new(BIN),
            bench.cfg.wants("lan"),
            bench.cfg.wants("latency"),
            bench.cfg.runs,
        )?;
    }

    let after = machine::load_average();
    results.load_after = after;
    results.minutes = start.elapsed().as_secs_f64() / 60.0;
    let table = results.markdown(&bench);
    println!("\n{table}");
    if let Some(parent) = bench.cfg.out.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&bench.cfg.out, &table)
        .with_context(|| format!("writing {}", bench.cfg.out.display()))?;
    println!("(also written to {})", bench.cfg.out.display());
    Ok(())
}
