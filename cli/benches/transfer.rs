//! Loopback benchmark: LocalStream (encrypted and verified) against plain TCP
//! copies of the same data (`nc`, `socat`), with peak memory and handshake time.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p localstream --bench transfer
//! ```
//!
//! Knobs (environment): `LOCALSTREAM_BENCH_MIB` (size of the big file, default
//! 1024), `LOCALSTREAM_BENCH_RUNS` (rounds, default 3), `LOCALSTREAM_BENCH_SMALL`
//! (number of 4 KiB files, default 1000).
//!
//! It installs `nc` (netcat-openbsd), `socat` and GNU `time` with apt-get when they
//! are missing (as root), works in a scratch directory on tmpfs (/dev/shm), runs
//! the measurements interleaved (A B C A B C ...) and prints every run, then a
//! Markdown table of medians. It asserts nothing about speed; it fails (non-zero
//! exit) only when a transfer fails or a file arrives wrong.
//!
//! Network safety: everything binds and connects to 127.0.0.1 only, and every
//! `localstream` command runs with `--no-discovery` (no mDNS at all).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use localstream_testkit::procs::{
    Context, Logged, Waited, all_succeeded, free_port, log_file, wait_all, wait_listening,
};
use localstream_testkit::stdout_of;

/// The binary under test, built by cargo with the bench (release) profile.
const BIN: &str = env!("CARGO_BIN_EXE_localstream");
const COMMAND: &str = "cargo bench -p localstream --bench transfer";
const SMALL_SIZE: u64 = 4096;
const HANDSHAKES_PER_ROUND: usize = 3;
const SOCAT_BUF: &str = "131072";

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

#[derive(Debug)]
struct Config {
    mib: u64,
    runs: usize,
    small: usize,
}

impl Config {
    fn from_env() -> Res<Config> {
        let mib = env_number("LOCALSTREAM_BENCH_MIB", 1024)?;
        let runs = env_number("LOCALSTREAM_BENCH_RUNS", 3)?;
        let small = env_number("LOCALSTREAM_BENCH_SMALL", 1000)?;
        if mib == 0 || runs == 0 || small == 0 {
            return Err("LOCALSTREAM_BENCH_MIB, _RUNS and _SMALL must be at least 1".into());
        }
        Ok(Config {
            mib,
            runs: usize::try_from(runs).with_context(|| "LOCALSTREAM_BENCH_RUNS".into())?,
            small: usize::try_from(small).with_context(|| "LOCALSTREAM_BENCH_SMALL".into())?,
        })
    }

    fn bytes(&self) -> u64 {
        self.mib * 1024 * 1024
    }

    fn size_label(&self) -> String {
        if self.mib.is_multiple_of(1024) {
            format!("{} GiB", self.mib / 1024)
        } else {
            format!("{} MiB", self.mib)
        }
    }

    fn small_label(&self) -> String {
        format!("{} x 4 KiB", self.small)
    }
}

fn env_number(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

// ---------------------------------------------------------------------------
// Tools: nc (OpenBSD), socat, GNU time; installed with apt-get when missing.

/// A plain TCP copy of one file by a tool (nc or socat): its wall time.
type CopyFn = fn(&Bench, &str, &Path, &Path) -> Res<Duration>;
/// One copy per round: label, tool path, how, output file, speeds so far.
type CopyRun<'a> = (
    &'a str,
    &'a Option<String>,
    CopyFn,
    &'a Path,
    &'a mut Vec<f64>,
);

#[derive(Debug, Default)]
struct Tools {
    nc: Option<String>,
    socat: Option<String>,
    time: Option<String>,
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
        let time = Command::new("/usr/bin/time")
            .args(["-f", "%M", "true"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .filter(|o| last_number(&String::from_utf8_lossy(&o.stderr)).is_some())
            .map(|_| "/usr/bin/time".to_string());
        Tools { nc, socat, time }
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
        p
    }

    /// Detects the tools and installs the missing ones when possible.
    fn ensure() -> Tools {
        let tools = Tools::detect();
        let missing = tools.missing_packages();
        if missing.is_empty() {
            return tools;
        }
        let list = missing.join(" ");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !root {
            println!(
                "NOTE: missing Debian packages: {list}; not root, so not installing them \
                 (run `sudo apt-get install -y {list}` for the full comparison).\n      \
                 The comparisons that need them are skipped."
            );
            return tools;
        }
        println!("installing missing Debian packages: {list} (apt-get install -y)");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        let mut ok = install();
        if !ok {
            println!("apt-get install failed; running apt-get update and trying once more");
            let updated = Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            ok = updated && install();
        }
        let tools = Tools::detect();
        let still = tools.missing_packages();
        if !ok || !still.is_empty() {
            println!(
                "NOTE: could not install {}: the comparisons that need them are skipped.",
                still.join(" ")
            );
        }
        tools
    }
}

// ---------------------------------------------------------------------------
// Scratch directory and data.

/// The scratch directory, removed when dropped (also on failure).
#[derive(Debug)]
struct Scratch {
    dir: PathBuf,
    on_tmpfs: bool,
}

impl Scratch {
    fn create() -> Res<Scratch> {
        let shm = Path::new("/dev/shm");
        let on_tmpfs = shm.is_dir();
        let base = if on_tmpfs {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("localstream-bench-{}-{nanos}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for c in [',', ':', '!', ' '] {
            if dir.to_string_lossy().contains(c) {
                return Err(format!(
                    "scratch path {} contains {c:?}, which socat addresses cannot hold; set TMPDIR",
                    dir.display()
                ));
            }
        }
        Ok(Scratch { dir, on_tmpfs })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// wyrand: fast, good enough to make data that does not compress.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn write_random(path: &Path, mut len: u64, rng: &mut Rng) -> Res<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    while len > 0 {
        let n = usize::try_from(len.min(buf.len() as u64)).unwrap_or(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        len -= n as u64;
    }
    Ok(())
}

fn small_name(i: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len().max(4);
    format!("f{i:0width$}")
}

/// Byte-for-byte comparison of two files.
fn same_content(a: &Path, b: &Path) -> Res<bool> {
    let mut fa = File::open(a).with_context(|| format!("opening {}", a.display()))?;
    let mut fb = File::open(b).with_context(|| format!("opening {}", b.display()))?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let na = read_full(&mut fa, &mut ba).with_context(|| format!("reading {}", a.display()))?;
        let nb = read_full(&mut fb, &mut bb).with_context(|| format!("reading {}", b.display()))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn file_size(path: &Path) -> Res<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("missing received file {}", path.display()))?
        .len())
}

/// Checks a received big file: its size always, its content when `full`.
fn check_big(src: &Path, got: &Path, full: bool, what: &str) -> Res<&'static str> {
    let (want, have) = (file_size(src)?, file_size(got)?);
    if want != have {
        return Err(format!(
            "{what}: received {} has {have} bytes, the original {want}",
            got.display()
        ));
    }
    if full {
        if !same_content(src, got)? {
            return Err(format!(
                "{what}: received {} differs from the original",
                got.display()
            ));
        }
        return Ok("size ok, byte-for-byte identical");
    }
    Ok("size ok")
}

/// Checks that every small file arrived in `dir` (by name, with its size), and
/// nothing else.
fn check_small(dir: &Path, count: usize, what: &str) -> Res<()> {
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("{what}: reading {}", d.display()))? {
            let e = e.with_context(|| format!("{what}: reading {}", d.display()))?;
            let meta = e
                .metadata()
                .with_context(|| format!("{what}: {}", e.path().display()))?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    let want_bytes = count as u64 * SMALL_SIZE;
    if files != count || bytes != want_bytes {
        return Err(format!(
            "{what}: {files} files, {bytes} bytes arrived in {}; expected {count} files, {want_bytes} bytes",
            dir.display()
        ));
    }
    for i in 0..count {
        let p = dir.join(small_name(i, count));
        if file_size(&p)? != SMALL_SIZE {
            return Err(format!("{what}: {} has the wrong size", p.display()));
        }
    }
    Ok(())
}

fn fresh_dir(path: &Path) -> Res<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

fn remove_dir(path: &Path) -> Res<()> {
    if path.exists() {
        fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes (spawned, waited for and killed by `localstream_testkit::procs`).

/// How long a receiver may take to listen.
const LISTEN_LIMIT: Duration = Duration::from_secs(20);
/// How long `localstream listen` may take to print its port.
const PORT_LIMIT: Duration = Duration::from_secs(30);

fn transfer_timeout(bytes: u64) -> Duration {
    // Generous: 2 minutes plus 20 MB/s.
    Duration::from_secs(120 + bytes / 20_000_000)
}

// ---------------------------------------------------------------------------
// The measured transfers.

#[derive(Debug)]
struct Bench {
    cfg: Config,
    tools: Tools,
    scratch: Scratch,
    home_recv: PathBuf,
    home_send: PathBuf,
    logs: PathBuf,
}

#[derive(Debug)]
struct LsRun {
    wall: Duration,
    rss_send_kib: Option<u64>,
    rss_recv_kib: Option<u64>,
    send_stderr: String,
}

fn last_number(text: &str) -> Option<u64> {
    text.lines().rev().find_map(|l| l.trim().parse().ok())
}

impl Bench {
    /// A localstream command, under GNU time (peak RSS into `rss`) when present.
    fn localstream(&self, home: &Path, rss: &Path, verbose: bool) -> Command {
        let mut cmd = match &self.tools.time {
            Some(time) => {
                let mut c = Command::new(time);
                c.args(["-f", "%M", "-o"]).arg(rss).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("--home").arg(home).arg("--no-progress");
        if verbose {
            cmd.arg("-v");
        }
        cmd.env_remove("RUST_LOG")
            .env_remove("LOCALSTREAM_HOME")
            .stdin(Stdio::null());
        cmd
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.out"))
    }

    fn log_file(&self, name: &str) -> Res<(Stdio, PathBuf)> {
        let p = self.log(name);
        Ok((log_file(&p)?, p))
    }

    /// One LocalStream transfer: `listen --once` into `out`, then `send` of
    /// `files` (names relative to `cwd`). Wall time from spawning `send` until
    /// both processes have exited.
    fn ls_transfer(
        &self,
        files: &[String],
        cwd: &Path,
        out: &Path,
        bytes: u64,
        verbose: bool,
    ) -> Res<LsRun> {
        fresh_dir(out)?;
        let rss_recv = self.scratch.path("listen.rss");
        let rss_send = self.scratch.path("send.rss");
        let _ = fs::remove_file(&rss_recv);
        let _ = fs::remove_file(&rss_send);

        let mut listen = self.localstream(&self.home_recv, &rss_recv, false);
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
        let (stdout, listen_out) = self.log_file("listen")?;
        let mut listen = Logged::spawn("localstream listen", listen, stdout, &listen_out)?;

        // The port, from the line `listening on 127.0.0.1:PORT`.
        let read_port = || {
            let text = fs::read_to_string(&listen_out).unwrap_or_default();
            text.lines().find_map(|l| {
                l.strip_prefix("listening on 127.0.0.1:")
                    .and_then(|p| p.trim().parse::<u16>().ok())
            })
        };
        let port = match listen.wait_for(PORT_LIMIT, Duration::from_millis(2), read_port) {
            Waited::Ready(port) => port,
            Waited::Exited(st) => {
                return Err(format!(
                    "localstream listen exited ({st}) before listening{}",
                    listen.abandon()
                ));
            }
            Waited::TimedOut => {
                return Err(format!(
                    "localstream listen printed no `listening on 127.0.0.1:PORT` line in {} s{}",
                    PORT_LIMIT.as_secs(),
                    listen.abandon()
                ));
            }
        };

        let mut send = self.localstream(&self.home_send, &rss_send, verbose);
        send.args(["send", "--yes", "--no-discovery"])
            .arg(format!("127.0.0.1:{port}"))
            .args(files)
            .current_dir(cwd);
        let (stdout, send_out) = self.log_file("send")?;
        let start = Instant::now();
        let send = match Logged::spawn("localstream send", send, stdout, &send_out) {
            Ok(p) => p,
            Err(e) => return Err(format!("{e}{}", listen.abandon())),
        };
        let exited = wait_all(vec![listen, send], transfer_timeout(bytes))?;
        let end = all_succeeded(&exited, "LocalStream transfer")?;
        let read_rss = |p: &Path| fs::read_to_string(p).ok().and_then(|t| last_number(&t));
        Ok(LsRun {
            wall: end - start,
            rss_send_kib: read_rss(&rss_send),
            rss_recv_kib: read_rss(&rss_recv),
            send_stderr: fs::read_to_string(send_out.with_extension("err")).unwrap_or_default(),
        })
    }

    /// One plain TCP transfer: start `recv` (listening on `port`), wait until
    /// it listens, then time `send` until both have exited.
    fn tcp_transfer(
        &self,
        name: &str,
        port: u16,
        recv: (Command, Stdio),
        send: Command,
        bytes: u64,
    ) -> Res<Duration> {
        let (mut recv_cmd, recv_out) = recv;
        recv_cmd.stdin(Stdio::null());
        let recv_log = self.log(&format!("{name}-recv"));
        let mut recv = Logged::spawn(&format!("{name} receiver"), recv_cmd, recv_out, &recv_log)?;
        if let Err(e) = wait_listening(&mut recv, port, LISTEN_LIMIT, Duration::from_millis(1)) {
            return Err(format!("{e}{}", recv.abandon()));
        }
        let (stdout, send_log) = self.log_file(&format!("{name}-send"))?;
        let start = Instant::now();
        let send = match Logged::spawn(&format!("{name} sender"), send, stdout, &send_log) {
            Ok(p) => p,
            Err(e) => return Err(format!("{e}{}", recv.abandon())),
        };
        let exited = wait_all(vec![recv, send], transfer_timeout(bytes))?;
        let end = all_succeeded(&exited, &format!("{name} transfer"))?;
        Ok(end - start)
    }

    fn nc_big(&self, nc: &str, src: &Path, out: &Path) -> Res<Duration> {
        let port = free_port()?;
        let mut recv = Command::new(nc);
        recv.args(["-l", "127.0.0.1", &port.to_string()]);
        let recv_out = File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut send = Command::new(nc);
        send.args(["-N", "127.0.0.1", &port.to_string()])
            .stdin(File::open(src).with_context(|| format!("opening {}", src.display()))?);
        self.tcp_transfer(
            "nc",
            port,
            (recv, Stdio::from(recv_out)),
            send,
            self.cfg.bytes(),
        )
    }

    fn socat_big(&self, socat: &str, src: &Path, out: &Path) -> Res<Duration> {
        let port = free_port()?;
        let mut recv = Command::new(socat);
        recv.args(["-u", "-b", SOCAT_BUF])
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
            .arg(format!("OPEN:{},creat,trunc", out.display()));
        let mut send = Command::new(socat);
        send.args(["-u", "-b", SOCAT_BUF])
            .arg(format!("OPEN:{}", src.display()))
            .arg(format!("TCP:127.0.0.1:{port}"))
            .stdin(Stdio::null());
        self.tcp_transfer("socat", port, (recv, Stdio::null()), send, self.cfg.bytes())
    }

    fn tar_nc_small(&self, nc: &str, src_dir: &Path, out: &Path) -> Res<Duration> {
        fresh_dir(out)?;
        let port = free_port()?;
        let mut recv = Command::new("sh");
        recv.args([
            "-c",
            r#""$0" -l 127.0.0.1 "$1" </dev/null | tar x -C "$2""#,
            nc,
            &port.to_string(),
        ])
        .arg(out);
        let mut send = Command::new("sh");
        send.args(["-c", r#"tar c -C "$1" . | "$0" -N 127.0.0.1 "$2""#, nc])
            .arg(src_dir)
            .arg(port.to_string())
            .stdin(Stdio::null());
        let bytes = self.cfg.small as u64 * SMALL_SIZE;
        self.tcp_transfer("tar|nc", port, (recv, Stdio::null()), send, bytes)
    }
}

// ---------------------------------------------------------------------------
// Statistics and the table.

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

fn median(v: &[f64]) -> Option<f64> {
    let s = sorted(v);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

fn min(v: &[f64]) -> Option<f64> {
    sorted(v).first().copied()
}

fn max(v: &[f64]) -> Option<f64> {
    sorted(v).last().copied()
}

fn mbps(bytes: u64, wall: Duration) -> f64 {
    bytes as f64 / wall.as_secs_f64() / 1e6
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Debug, Default)]
struct Samples {
    ls_mbps: Vec<f64>,
    nc_mbps: Vec<f64>,
    socat_mbps: Vec<f64>,
    rss_send: Vec<f64>,
    rss_recv: Vec<f64>,
    ls_small_s: Vec<f64>,
    tar_small_s: Vec<f64>,
    handshake_ms: Vec<f64>,
    first_data_ms: Vec<f64>,
}

/// A Markdown table row: label, then median, min, max (or `why` when empty).
fn row(label: &str, v: &[f64], digits: usize, why: &str) -> String {
    match (median(v), min(v), max(v)) {
        (Some(m), Some(lo), Some(hi)) => {
            format!("| {label} | {m:.digits$} | {lo:.digits$} | {hi:.digits$} |")
        }
        _ => format!("| {label} | {why} | | |"),
    }
}

fn ratio_row(label: &str, a: &[f64], b: &[f64], why: &str) -> String {
    match (median(a), median(b)) {
        (Some(a), Some(b)) if b > 0.0 => format!("| {label} | {:.2} | | |", a / b),
        _ => format!("| {label} | {why} | | |"),
    }
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn parse_timing(stderr: &str, key: &str) -> Option<f64> {
    let line = stderr.lines().rev().find(|l| l.contains("timing"))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let num: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

fn fmt_opt_mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", mib(k)))
}

// ---------------------------------------------------------------------------

fn run() -> Res<()> {
    let cfg = Config::from_env()?;
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model();
    let version =
        stdout_of(Command::new(BIN).arg("--version")).unwrap_or_else(|| "localstream".into());
    let commit = stdout_of(Command::new("git").args([
        "-C",
        env!("CARGO_MANIFEST_DIR"),
        "describe",
        "--always",
        "--dirty",
    ]));

    println!("LocalStream loopback benchmark ({COMMAND})");
    println!(
        "{version}{}, {cores} cores, {cpu}",
        commit
            .as_deref()
            .map_or(String::new(), |c| format!(" ({c})"))
    );
    println!(
        "{} random file, {} files, {} interleaved rounds",
        cfg.size_label(),
        cfg.small_label(),
        cfg.runs
    );
    if cfg.runs < 3 {
        println!(
            "NOTE: fewer than 3 runs (LOCALSTREAM_BENCH_RUNS={}): medians are rough",
            cfg.runs
        );
    }

    let tools = Tools::ensure();
    let scratch = Scratch::create()?;
    if scratch.on_tmpfs {
        println!(
            "scratch: {} (tmpfs: files are read from and written to memory, so the disk \
             stays out of the measurement)",
            scratch.dir.display()
        );
    } else {
        println!(
            "scratch: {} (no /dev/shm here: the disk is part of the measurement, and the \
             receiver's fsync of each file can dominate)",
            scratch.dir.display()
        );
    }
    for (tool, what) in [
        (
            &tools.nc,
            "nc (netcat-openbsd): nc and tar|nc comparisons skipped",
        ),
        (&tools.socat, "socat: socat comparison skipped"),
        (&tools.time, "GNU time (/usr/bin/time): no peak RSS"),
    ] {
        if tool.is_none() {
            println!("missing {what}");
        }
    }

    let logs = scratch.path("logs");
    fs::create_dir(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let bench = Bench {
        home_recv: scratch.path("home-recv"),
        home_send: scratch.path("home-send"),
        logs,
        cfg,
        tools,
        scratch,
    };
    let cfg = &bench.cfg;
    let s = &bench.scratch;

    // Data.
    let t = Instant::now();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x5eed, |d| d.as_nanos() as u64);
    let mut rng = Rng(seed);
    let big = s.path("random.bin");
    write_random(&big, cfg.bytes(), &mut rng)?;
    let small_dir = s.path("small");
    fs::create_dir(&small_dir).with_context(|| format!("creating {}", small_dir.display()))?;
    let small_names: Vec<String> = (0..cfg.small).map(|i| small_name(i, cfg.small)).collect();
    for n in &small_names {
        write_random(&small_dir.join(n), SMALL_SIZE, &mut rng)?;
    }
    let tiny = s.path("tiny.txt");
    fs::write(&tiny, b"hello from the LocalStream benchmark\n")
        .with_context(|| format!("writing {}", tiny.display()))?;
    let tiny_names = vec!["tiny.txt".to_string()];
    println!(
        "prepared {} random file and {} files in {:.1} s",
        cfg.size_label(),
        cfg.small_label(),
        t.elapsed().as_secs_f64()
    );

    // Identities (RSA-3072 keys, generated once).
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

    // Warm-up: first contact (key pinning on both sides) happens here, not in a
    // timed run; also loads the binary into the page cache.
    let out_tiny = s.path("out-tiny");
    let warm = bench.ls_transfer(&tiny_names, s.dir.as_path(), &out_tiny, 64, false)?;
    if !same_content(&tiny, &out_tiny.join("tiny.txt"))? {
        return Err("warm-up: received tiny.txt differs".into());
    }
    println!(
        "warm-up: tiny file in {:.1} ms (first contact: keys pinned on both sides)",
        warm.wall.as_secs_f64() * 1e3
    );
    // And one untimed big transfer: the first one after preparing the data is
    // often much slower (fresh tmpfs pages, cold caches), which is not what the
    // rounds should measure.
    let out_ls = s.path("out-ls");
    let warm = bench.ls_transfer(
        &["random.bin".to_string()],
        s.dir.as_path(),
        &out_ls,
        cfg.bytes(),
        false,
    )?;
    let check = check_big(
        &big,
        &out_ls.join("random.bin"),
        true,
        "LocalStream warm-up",
    )?;
    remove_dir(&out_ls)?;
    println!(
        "warm-up: {} file in {:.3} s, {:.1} MB/s ({check}; not counted)",
        cfg.size_label(),
        warm.wall.as_secs_f64(),
        mbps(cfg.bytes(), warm.wall)
    );
    println!();

    let out_nc = s.path("out-nc.bin");
    let out_socat = s.path("out-socat.bin");
    let out_small_ls = s.path("out-small-ls");
    let out_small_tar = s.path("out-small-tar");
    let mut samples = Samples::default();
    let size = cfg.size_label();
    let small = cfg.small_label();

    for round in 1..=cfg.runs {
        let full = round == 1;
        println!("round {round}/{}", cfg.runs);

        // A: LocalStream, big file.
        let r = bench.ls_transfer(
            &["random.bin".to_string()],
            s.dir.as_path(),
            &out_ls,
            cfg.bytes(),
            false,
        )?;
        let check = check_big(&big, &out_ls.join("random.bin"), full, "LocalStream")?;
        remove_dir(&out_ls)?;
        let speed = mbps(cfg.bytes(), r.wall);
        samples.ls_mbps.push(speed);
        if let Some(k) = r.rss_send_kib {
            samples.rss_send.push(mib(k));
        }
        if let Some(k) = r.rss_recv_kib {
            samples.rss_recv.push(mib(k));
        }
        println!(
            "  {size}  LocalStream  {:7.3} s  {speed:7.1} MB/s  peak RSS send {}, recv {}  ({check})",
            r.wall.as_secs_f64(),
            fmt_opt_mib(r.rss_send_kib),
            fmt_opt_mib(r.rss_recv_kib),
        );

        // B and C: the plain TCP copies.
        let copies: [CopyRun<'_>; 2] = [
            (
                "nc   ",
                &bench.tools.nc,
                Bench::nc_big,
                &out_nc,
                &mut samples.nc_mbps,
            ),
            (
                "socat",
                &bench.tools.socat,
                Bench::socat_big,
                &out_socat,
                &mut samples.socat_mbps,
            ),
        ];
        for (label, tool, copy, out, speeds) in copies {
            let Some(tool) = tool else { continue };
            let wall = copy(&bench, tool, &big, out)?;
            let check = check_big(&big, out, full, label.trim_end())?;
            fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
            let speed = mbps(cfg.bytes(), wall);
            speeds.push(speed);
            println!(
                "  {size}  {label}        {:7.3} s  {speed:7.1} MB/s  ({check})",
                wall.as_secs_f64()
            );
        }

        // Small files: LocalStream in one send, then tar | nc.
        let small_bytes = cfg.small as u64 * SMALL_SIZE;
        let r = bench.ls_transfer(&small_names, &small_dir, &out_small_ls, small_bytes, false)?;
        check_small(&out_small_ls, cfg.small, "LocalStream small files")?;
        remove_dir(&out_small_ls)?;
        samples.ls_small_s.push(r.wall.as_secs_f64());
        println!(
            "  {small}  LocalStream  {:7.3} s  (all {} files arrived)",
            r.wall.as_secs_f64(),
            cfg.small
        );
        if let Some(nc) = &bench.tools.nc {
            let wall = bench.tar_nc_small(nc, &small_dir, &out_small_tar)?;
            check_small(&out_small_tar, cfg.small, "tar | nc small files")?;
            remove_dir(&out_small_tar)?;
            samples.tar_small_s.push(wall.as_secs_f64());
            println!(
                "  {small}  tar | nc     {:7.3} s  (all {} files arrived)",
                wall.as_secs_f64(),
                cfg.small
            );
        }

        // Handshake: a tiny file, `send -v` logs the timing line.
        for _ in 0..HANDSHAKES_PER_ROUND {
            let r = bench.ls_transfer(&tiny_names, s.dir.as_path(), &out_tiny, 64, true)?;
            if !same_content(&tiny, &out_tiny.join("tiny.txt"))? {
                return Err("handshake run: received tiny.txt differs".into());
            }
            let (Some(h), Some(f)) = (
                parse_timing(&r.send_stderr, "handshake_ms"),
                parse_timing(&r.send_stderr, "first_data_ms"),
            ) else {
                return Err(format!(
                    "`send -v` logged no `timing handshake_ms=.. first_data_ms=..` line; its stderr:\n{}",
                    r.send_stderr
                ));
            };
            samples.handshake_ms.push(h);
            samples.first_data_ms.push(f);
            println!(
                "  tiny file     handshake {h:6.2} ms  first data {f:6.2} ms  (whole command {:.1} ms)",
                r.wall.as_secs_f64() * 1e3
            );
        }
        remove_dir(&out_tiny)?;
    }

    // The table.
    let no_nc = "n/a (no nc)";
    let no_socat = "n/a (no socat)";
    let no_time = "n/a (no GNU time)";
    println!();
    println!("## Results");
    println!();
    println!(
        "{version}{}; {cores} cores, {cpu}; loopback (127.0.0.1), {}; \
         {} random file, {} files; median of {} interleaved runs.",
        commit
            .as_deref()
            .map_or(String::new(), |c| format!(" ({c})")),
        if s.on_tmpfs {
            "files on tmpfs"
        } else {
            "files on disk"
        },
        cfg.size_label(),
        cfg.small_label(),
        cfg.runs
    );
    println!();
    println!("| measurement | median | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "{}",
        row(
            &format!("{size}, LocalStream (MB/s)"),
            &samples.ls_mbps,
            1,
            ""
        )
    );
    println!(
        "{}",
        row(&format!("{size}, nc (MB/s)"), &samples.nc_mbps, 1, no_nc)
    );
    println!(
        "{}",
        row(
            &format!("{size}, socat -b {SOCAT_BUF} (MB/s)"),
            &samples.socat_mbps,
            1,
            no_socat
        )
    );
    println!(
        "{}",
        ratio_row(
            "LocalStream / nc (MB/s)",
            &samples.ls_mbps,
            &samples.nc_mbps,
            no_nc
        )
    );
    println!(
        "{}",
        ratio_row(
            "LocalStream / socat (MB/s)",
            &samples.ls_mbps,
            &samples.socat_mbps,
            no_socat
        )
    );
    println!(
        "{}",
        row(
            &format!("{size}, LocalStream sender peak RSS (MiB)"),
            &samples.rss_send,
            1,
            no_time
        )
    );
    println!(
        "{}",
        row(
            &format!("{size}, LocalStream receiver peak RSS (MiB)"),
            &samples.rss_recv,
            1,
            no_time
        )
    );
    println!(
        "{}",
        row(
            &format!("{small}, LocalStream, one send (s)"),
            &samples.ls_small_s,
            3,
            ""
        )
    );
    println!(
        "{}",
        row(
            &format!("{small}, tar c \\| nc → nc \\| tar x (s)"),
            &samples.tar_small_s,
            3,
            no_nc
        )
    );
    println!(
        "{}",
        ratio_row(
            "LocalStream / tar\\|nc (wall time, lower is better)",
            &samples.ls_small_s,
            &samples.tar_small_s,
            no_nc
        )
    );
    println!(
        "{}",
        row(
            "handshake_ms: connect → session keys (ms)",
            &samples.handshake_ms,
            2,
            ""
        )
    );
    println!(
        "{}",
        row(
            "first_data_ms: connect → first data byte (ms)",
            &samples.first_data_ms,
            2,
            ""
        )
    );
    println!();
    println!(
        "MB/s = 10^6 bytes per second of wall time, from starting the sender until both \
         sender and receiver have exited (process start, RSA-3072 handshake, the receiver's \
         BLAKE3 check and fsync included for LocalStream). nc and socat copy plain bytes: \
         no encryption, no verification. Ratios are of the medians. Handshake times: \
         {HANDSHAKES_PER_ROUND} tiny-file sends per round, from `send -v`."
    );
    println!("Reproduce: {COMMAND}");
    Ok(())
}
