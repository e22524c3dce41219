//! Rows measured on a LAN of network namespaces (needs root and iproute2):
//! two hosts (`h1` sends, `h2` receives) and a switch namespace, built by
//! [`localstream_testkit::shaped`]; nothing leaves the namespaces.
//!
//! Entry point, called by `main.rs` for the series `lan` and `latency`:
//!
//! ```text
//! pub fn rows(bin: &Path, lan: bool, latency: bool, rounds: usize) -> Result<Vec<Row>, String>
//! ```
//!
//! `bin` is the `localstream` binary, `lan`/`latency` the chosen series,
//! `rounds` the interleaved rounds of the shaped series (`cfg.runs`). It
//! returns no rows, after a loud `SKIPPED` line, when namespaces cannot be
//! made here (not root, no `ip`, `ethtool` or `nsenter`). Each [`Row`] is
//! one line of the table: `label`, `unit`, the `samples` (one per round;
//! [`Row::median`], [`Row::min`], [`Row::max`]) and a `note` (ratio to nc,
//! how it was measured).
//!
//! - `lan`: three shaped links (`delayline` in the switch namespace: 1 Gbit/s
//!   0.2 ms; 300 Mbit/s 3 ms 0.1 % loss; 100 Mbit/s 10 ms 1 % loss, each way),
//!   on each a random file (`LOCALSTREAM_BENCH_LAN_MIB`, default `256,128,48`)
//!   sent by LocalStream (`--no-discovery`, by address) and by plain `nc`,
//!   and a file of word text of the same size sent by LocalStream
//!   (`--compress auto`: what compression gains; nc's rate would be the
//!   same as for random data), interleaved, MB/s of file bytes, every
//!   received file checked by BLAKE3.
//! - `latency`: `send <name> small.txt` with mDNS discovery on (inside the
//!   namespaces only), from the `send` process's start to the file existing
//!   under its name on the receiver (a stat loop every 0.2 ms): the peer
//!   pinned (`LOCALSTREAM_BENCH_LATENCY_SENDS`, default 9), by address, and
//!   first contact by name (after `forget`).
//!
//! Wall times include the hosts' `nsenter` (one exec) and share the machine's
//! cores with `delayline` and whatever else runs: compare the rows of one run.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use localstream_testkit::files::{Rng, Scratch, hash_file, write_random, write_text};
use localstream_testkit::measure::{max, mb_per_s, median, min};
use localstream_testkit::procs::{Context, kill_tree};
use localstream_testkit::shaped::{self, Profile, ShapedLan};

/// The shaped links, with the default MiB sent over each.
const PROFILES: [(Profile, u64); 3] = [
    (
        Profile {
            mbit: 1000.0,
            delay_ms: 0.2,
            loss_pct: 0.0,
        },
        256,
    ),
    (
        Profile {
            mbit: 300.0,
            delay_ms: 3.0,
            loss_pct: 0.1,
        },
        128,
    ),
    (
        Profile {
            mbit: 100.0,
            delay_ms: 10.0,
            loss_pct: 1.0,
        },
        48,
    ),
];
/// LocalStream's port on h2 for the shaped series.
const LS_PORT: u16 = 47471;
/// nc's port on h2.
const NC_PORT: u16 = 47472;
/// LocalStream's default port (the latency series' listener).
const DEFAULT_PORT: u16 = 47470;
/// The latency series' receiver name.
const NAME: &str = "lsbench-box";
/// How often the latency series looks for the received file.
const STAT_EVERY: Duration = Duration::from_micros(200);

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured ("LocalStream, 1 Gbit/s, 0.2 ms (256 MiB)").
    pub label: String,
    /// Unit of the samples ("MB/s", "ms").
    pub unit: &'static str,
    /// One sample per round.
    pub samples: Vec<f64>,
    /// The ratio to nc, or how it was measured.
    pub note: String,
}

impl Row {
    /// Median of the samples.
    pub fn median(&self) -> f64 {
        median(&self.samples).unwrap_or(f64::NAN)
    }

    /// Smallest sample.
    pub fn min(&self) -> f64 {
        min(&self.samples).unwrap_or(f64::NAN)
    }

    /// Largest sample.
    pub fn max(&self) -> f64 {
        max(&self.samples).unwrap_or(f64::NAN)
    }
}

/// Children that are killed (with theirs) when dropped, unless waited for.
#[derive(Debug, Default)]
struct Kids(Vec<(String, Child)>);

impl Kids {
    /// Starts `cmd` (stdin closed unless set, stderr to `<logs>/<name>.err`).
    fn spawn(&mut self, name: &str, mut cmd: Command, logs: &Path) -> Result<u32, String> {
        let err = logs.join(format!("{name}.err"));
        let child = cmd
            .stderr(File::create(&err).with_context(|| format!("creating {}", err.display()))?)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        let pid = child.id();
        self.0.push((name.to_string(), child));
        Ok(pid)
    }

    /// Waits for every child (each exit instant noted as it happens), at
    /// most `limit`; `Err` naming the ones that failed or did not end.
    fn wait_all(&mut self, limit: Duration, logs: &Path) -> Result<Instant, String> {
        let deadline = Instant::now() + limit;
        let mut done: Vec<Option<(ExitStatus, Instant)>> = vec![None; self.0.len()];
        while done.iter().any(Option::is_none) {
            for (i, (_, c)) in self.0.iter_mut().enumerate() {
                if done[i].is_none()
                    && let Ok(Some(st)) = c.try_wait()
                {
                    done[i] = Some((st, Instant::now()));
                }
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let mut failed = String::new();
        let mut last = None;
        for (i, (name, _)) in self.0.iter().enumerate() {
            match done[i] {
                Some((st, at)) if st.success() => last = last.max(Some(at)),
                Some((st, _)) => {
                    failed.push_str(&format!("\n  {name} exited {st}{}", tail(logs, name)))
                }
                None => failed.push_str(&format!(
                    "\n  {name} did not end in {} s{}",
                    limit.as_secs(),
                    tail(logs, name)
                )),
            }
        }
        // The unfinished are killed by the drop; the finished are reaped.
        let finished: Vec<bool> = done.iter().map(Option::is_some).collect();
        let mut i = 0;
        self.0.retain(|_| {
            i += 1;
            !finished[i - 1]
        });
        if !failed.is_empty() {
            return Err(format!("failed:{failed}"));
        }
        last.ok_or_else(|| "no process".to_string())
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }
}

/// The last lines of `<logs>/<name>.err`, for an error message.
fn tail(logs: &Path, name: &str) -> String {
    let text = fs::read_to_string(logs.join(format!("{name}.err"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(8);
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its stderr:\n    {}", lines[from..].join("\n    "))
    }
}

/// Waits until process `pid` (in its namespace) listens on `port`.
fn wait_port(pid: u32, port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ShapedLan::listening(pid, port) {
        if Instant::now() > deadline || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("{what} is not listening on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Everything the series share.
#[derive(Debug)]
struct Ctx<'a> {
    bin: &'a Path,
    scratch: Scratch,
    logs: PathBuf,
    lan: ShapedLan,
}

impl Ctx<'_> {
    /// `localstream --home <scratch>/home-hI --no-progress ARGS` inside host `i`.
    fn ls(&self, i: usize, args: &[&str]) -> Command {
        let mut c = self.lan.command(i, self.bin);
        c.arg("--home")
            .arg(self.scratch.path(&format!("home-h{i}")))
            .arg("--no-progress")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("LOCALSTREAM_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    /// One transfer of `src` to h2 by LocalStream (`ls`) or nc; returns
    /// the wall seconds from the sender's start to both exited, after
    /// checking the received file's hash.
    fn transfer(
        &self,
        tool: &str,
        src: &Path,
        want: [u8; 32],
        limit: Duration,
    ) -> Result<f64, String> {
        let out = self.scratch.path("out");
        let _ = fs::remove_dir_all(&out);
        fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
        let name = src
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let got = out.join(&name);
        let mut kids = Kids::default();
        let (recv, send) = if tool == "ls" {
            let mut recv = self.ls(2, &["listen", "--no-discovery", "--bind", self.lan.addr(2)]);
            recv.args(["--port", &LS_PORT.to_string(), "--yes", "--once", "--dir"])
                .arg(&out);
            let mut send = self.ls(1, &["send", "--yes", "--no-discovery"]);
            send.arg(format!("{}:{LS_PORT}", self.lan.addr(2))).arg(src);
            (recv, send)
        } else {
            let mut recv = self.lan.command(2, "sh");
            recv.args([
                "-c",
                r#"exec nc -l "$0" "$1" > "$2""#,
                self.lan.addr(2),
                &NC_PORT.to_string(),
            ])
            .arg(&got)
            .stdin(Stdio::null());
            let mut send = self.lan.command(1, "nc");
            send.args(["-N", self.lan.addr(2), &NC_PORT.to_string()])
                .stdin(File::open(src).with_context(|| format!("opening {}", src.display()))?)
                .stdout(Stdio::null());
            (recv, send)
        };
        let pid = kids.spawn(&format!("{tool}-recv"), recv, &self.logs)?;
        wait_port(
            pid,
            if tool == "ls" { LS_PORT } else { NC_PORT },
            &format!("{tool} receiver"),
        )?;
        let start = Instant::now();
        kids.spawn(&format!("{tool}-send"), send, &self.logs)?;
        let end = kids
            .wait_all(limit, &self.logs)
            .map_err(|e| format!("{tool} transfer {e}"))?;
        let secs = (end - start).as_secs_f64();
        let (_, hash) = hash_file(&got)?;
        if hash != want {
            return Err(format!(
                "{tool}: the received {name} differs from the original (BLAKE3)"
            ));
        }
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
        Ok(secs)
    }
}

/// MiB per profile: `LOCALSTREAM_BENCH_LAN_MIB` (`256,128,48`).
fn sizes() -> Result<Vec<u64>, String> {
    let Ok(v) = std::env::var("LOCALSTREAM_BENCH_LAN_MIB") else {
        return Ok(PROFILES.iter().map(|p| p.1).collect());
    };
    let s: Vec<u64> = v
        .split(',')
        .map(|x| x.trim().parse::<u64>().ok().filter(|n| *n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            format!("LOCALSTREAM_BENCH_LAN_MIB={v:?}: give three sizes in MiB, like 256,128,48")
        })?;
    if s.len() != PROFILES.len() {
        return Err(format!(
            "LOCALSTREAM_BENCH_LAN_MIB={v:?}: give three sizes in MiB, like 256,128,48"
        ));
    }
    Ok(s)
}

/// See the module docs.
pub fn rows(bin: &Path, lan: bool, latency: bool, rounds: usize) -> Result<Vec<Row>, String> {
    if !lan && !latency {
        return Ok(vec![]);
    }
    if let Some(why) = shaped::unavailable() {
        println!(
            "\n*** SKIPPED: the shaped-link and latency rows need network namespaces: {why} ***"
        );
        return Ok(vec![]);
    }
    let sizes = if lan { sizes()? } else { vec![] };
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let scratch = Scratch::create(&base, "localstream-bench-lan")?;
    let logs = scratch.path("logs");
    fs::create_dir(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let ctx = Ctx {
        bin,
        lan: ShapedLan::new().map_err(|e| format!("making the namespace LAN: {e}"))?,
        scratch,
        logs,
    };
    for i in [1, 2] {
        let mut id = ctx.ls(i, &["id"]);
        let st = id
            .status()
            .with_context(|| format!("running {} id", bin.display()))?;
        if !st.success() {
            return Err(format!("localstream id in h{i} failed ({st})"));
        }
    }
    let mut rows = vec![];
    if lan {
        rows.extend(shaped_rows(&ctx, &sizes, rounds)?);
    }
    if latency {
        rows.extend(latency_rows(&ctx)?);
    }
    Ok(rows)
}

/// The shaped-link series; see the module docs.
fn shaped_rows(ctx: &Ctx, sizes: &[u64], rounds: usize) -> Result<Vec<Row>, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/delayline.c");
    if !source.is_file() {
        println!(
            "\n*** SKIPPED: the shaped-link rows: no {} ***",
            source.display()
        );
        return Ok(vec![]);
    }
    let delayline = shaped::build_delayline(&source, ctx.scratch.dir())?;
    // Warm-up on the plain bridge, not timed: first contact (keys pinned on
    // both sides) and the binary in the page cache.
    let tiny = ctx.scratch.path("tiny.txt");
    fs::write(&tiny, b"warm-up\n").with_context(|| format!("writing {}", tiny.display()))?;
    let (_, want) = hash_file(&tiny)?;
    ctx.transfer("ls", &tiny, want, Duration::from_secs(60))
        .map_err(|e| format!("warm-up: {e}"))?;
    let mut rows = vec![];
    let mut rng = Rng::from_clock();
    for (&(p, _), &mib) in PROFILES.iter().zip(sizes) {
        let src = ctx.scratch.path("shaped.bin");
        write_random(&src, mib << 20, &mut rng)?;
        let (_, want) = hash_file(&src)?;
        let text = ctx.scratch.path("shaped.txt");
        write_text(&text, mib << 20, &mut rng)?;
        let (_, want_text) = hash_file(&text)?;
        let mut shaper = ctx
            .lan
            .shape(&delayline, p, &ctx.logs.join("delayline.err"))?;
        // Generous: a tenth of the link's rate, and a minute.
        let limit = Duration::from_secs(60 + (mib * 8 * 10) / (p.mbit as u64).max(1));
        println!(
            "\nshaped link {} ({mib} MiB): LocalStream and nc, {rounds} rounds",
            p.label()
        );
        let mut ls = vec![];
        let mut nc = vec![];
        let mut ls_text = vec![];
        for _ in 0..rounds {
            let runs = [
                ("ls", &src, want, "LocalStream", &mut ls),
                ("nc", &src, want, "nc", &mut nc),
                ("ls", &text, want_text, "LocalStream, text", &mut ls_text),
            ];
            for (tool, file, hash, who, samples) in runs {
                if !shaper.running() {
                    return Err(format!("delayline exited{}", tail(&ctx.logs, "delayline")));
                }
                let secs = ctx.transfer(tool, file, hash, limit)?;
                let rate = mb_per_s(mib << 20, secs);
                println!("  {who:17} {rate:7.1} MB/s  ({secs:.2} s)");
                samples.push(rate);
            }
        }
        drop(shaper);
        let ratio = median(&ls).unwrap_or(0.0) / median(&nc).unwrap_or(f64::NAN);
        let what = format!("{} ({mib} MiB)", p.label());
        rows.push(Row {
            label: format!("LocalStream, {what}"),
            unit: "MB/s",
            samples: ls,
            note: format!("{ratio:.2}x nc"),
        });
        let text_ratio = median(&ls_text).unwrap_or(0.0) / median(&nc).unwrap_or(f64::NAN);
        rows.push(Row {
            label: format!("nc, {what}"),
            unit: "MB/s",
            samples: nc,
            note: "plain TCP: nc -N → nc -l".to_string(),
        });
        rows.push(Row {
            label: format!("LocalStream, word text, {what}"),
            unit: "MB/s",
            samples: ls_text,
            note: format!(
                "{text_ratio:.2}x nc's rate for random data (text zstd -1 makes 47 % of; --compress auto)"
            ),
        });
        for f in [&src, &text] {
            fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        }
    }
    Ok(rows)
}

/// Sends per latency row: `LOCALSTREAM_BENCH_LATENCY_SENDS` (9).
fn latency_sends() -> Result<usize, String> {
    match std::env::var("LOCALSTREAM_BENCH_LATENCY_SENDS") {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("LOCALSTREAM_BENCH_LATENCY_SENDS={v:?}: a count, at least 1")),
        Err(_) => Ok(9),
    }
}

/// The latency series; see the module docs.
fn latency_rows(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let sends = latency_sends()?;
    let small = ctx.scratch.path("small.txt");
    let text = b"a small file from the LocalStream benchmark\n";
    fs::write(&small, text).with_context(|| format!("writing {}", small.display()))?;
    let out = ctx.scratch.path("out-latency");
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let got = out.join("small.txt");
    let mut kids = Kids::default();
    let mut recv = ctx.ls(2, &["listen", "--yes", "--name", NAME, "--dir"]);
    recv.arg(&out);
    let pid = kids.spawn("latency-recv", recv, &ctx.logs)?;
    wait_port(pid, DEFAULT_PORT, "the latency series' receiver")?;
    let by_addr = format!("{}:{DEFAULT_PORT}", ctx.lan.addr(2));
    // One send: start to the file under its name on the receiver (a stat
    // loop), then the sender's exit and the bytes checked.
    let once = |peer: &str, what: &str| -> Result<f64, String> {
        let mut send = ctx.ls(1, &["send", "--yes", peer]);
        send.arg("small.txt").current_dir(ctx.scratch.dir());
        let mut one = Kids::default();
        let start = Instant::now();
        one.spawn("latency-send", send, &ctx.logs)?;
        let deadline = start + Duration::from_secs(30);
        while !got.exists() {
            if Instant::now() > deadline {
                return Err(format!(
                    "{what}: small.txt not received in 30 s{}",
                    tail(&ctx.logs, "latency-send")
                ));
            }
            std::thread::sleep(STAT_EVERY);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        one.wait_all(Duration::from_secs(30), &ctx.logs)
            .map_err(|e| format!("{what}: send {e}"))?;
        let bytes = fs::read(&got).with_context(|| format!("reading {}", got.display()))?;
        if bytes != text {
            return Err(format!(
                "{what}: the received small.txt differs from the original"
            ));
        }
        fs::remove_file(&got).with_context(|| format!("removing {}", got.display()))?;
        Ok(ms)
    };
    println!("\nlatency: send {NAME} small.txt on the namespace LAN (mDNS on), {sends} sends each");
    let mut first = vec![];
    let mut pinned = vec![];
    let mut addr = vec![];
    for round in 0..sends {
        if round > 0 {
            // First contact again: the sender drops the receiver's pinned key.
            let st = ctx
                .ls(1, &["forget", NAME])
                .status()
                .with_context(|| "running localstream forget".to_string())?;
            if !st.success() {
                return Err(format!("localstream forget {NAME} in h1 failed ({st})"));
            }
        }
        let f = once(NAME, "first contact by name")?;
        let p = once(NAME, "pinned peer by name")?;
        let a = once(&by_addr, "by address")?;
        println!("  first contact {f:7.1} ms   pinned by name {p:7.1} ms   by address {a:7.1} ms");
        first.push(f);
        pinned.push(p);
        addr.push(a);
    }
    drop(kids);
    let how = "from the send process's start (nsenter included) to the file under its name on \
               the receiver, a stat every 0.2 ms";
    Ok(vec![
        Row {
            label: "send <pinned name> small.txt (namespace LAN, mDNS)".to_string(),
            unit: "ms",
            samples: pinned,
            note: how.to_string(),
        },
        Row {
            label: "send <ip:port> small.txt (namespace LAN)".to_string(),
            unit: "ms",
            samples: addr,
            note: "the same, by address".to_string(),
        },
        Row {
            label: "send <name> small.txt, first contact (namespace LAN, mDNS)".to_string(),
            unit: "ms",
            samples: first,
            note: "the same, after `forget`: waits the settle window for duplicate names"
                .to_string(),
        },
    ])
}
