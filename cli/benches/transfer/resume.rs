//! The resume check: the receiver holds most of a big file from a send that
//! was interrupted (Ctrl-C: SIGINT to `send`), and the same send is run
//! again. Before any data flows both sides hash the held prefix (the
//! receiver before it answers, then the sender); each side logs the time of
//! its check (`checked held prefixes ... ms=`, `-v`), which this series
//! reads, with `send -v`'s connect → first data time.
//!
//! On ext4 it runs twice per round: with the partial as the interrupted
//! send left it (the receiver's streaming write-back drops what it wrote
//! from the page cache, so the check reads the disk) and with the partial
//! read once just before (page cache warm). On tmpfs the two are the same.

use std::fs;
use std::path::{Path, PathBuf};

use localstream_testkit::files::{fresh_dir, hash_file, remove_dir};
use localstream_testkit::procs::Context;

use crate::localstream::{Verbose, logged_number};
use crate::tools::timeout;
use crate::{Bench, Dest, Res};

/// The file's name in the sources.
pub const NAME: &str = "resume.bin";

/// The log line each side writes at the end of its check.
const CHECKED: &str = "checked held prefixes";

/// The partial file's suffix on the receiver.
const PARTIAL: &str = ".lspart";

/// One row: a destination, in one state of its page cache.
#[derive(Debug)]
pub struct ResumeRow {
    /// "ext4, as the interrupted send left it".
    pub label: String,
    /// Bytes held, per round.
    pub held: Vec<u64>,
    /// The receiver's check (s).
    pub recv_s: Vec<f64>,
    /// The sender's check (s).
    pub send_s: Vec<f64>,
    /// Connect → first data byte of the resumed send (s): the handshake and
    /// both checks.
    pub first_data_s: Vec<f64>,
}

/// The series' rows and the file's size.
#[derive(Debug)]
pub struct ResumeResults {
    /// The file's size in bytes.
    pub size: u64,
    /// Per destination and state.
    pub rows: Vec<ResumeRow>,
}

/// The partial file in `out` and its length, if there is one.
fn partial(out: &Path) -> Option<(PathBuf, u64)> {
    fs::read_dir(out).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        (name.starts_with(NAME) && name.ends_with(PARTIAL))
            .then(|| e.metadata().ok().map(|m| (e.path(), m.len())))
            .flatten()
    })
}

/// Reads all of `path` (into the page cache).
fn read_through(path: &Path) -> Res<()> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::copy(&mut f, &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(())
}

/// One measurement into `dest`: an interrupted send once `held` bytes are
/// in the partial, then (after reading the partial when `warm`) the same
/// send again, checked whole (size and BLAKE3).
fn measured(
    bench: &Bench,
    dest: &Dest,
    held: u64,
    warm: bool,
    want: (u64, [u8; 32]),
) -> Res<(u64, f64, f64, f64)> {
    let out = dest.dir().join("out-resume");
    fresh_dir(&out)?;
    dest.settle()?;
    let files = [NAME.to_string()];
    let limit = timeout(want.0, 1);
    bench.ls_interrupted(&files, bench.src.dir(), &out, limit, || {
        partial(&out).is_some_and(|(_, len)| len >= held)
    })?;
    let Some((path, kept)) = partial(&out) else {
        return Err(format!(
            "no {PARTIAL} file in {} after the interrupted send",
            out.display()
        ));
    };
    if warm {
        read_through(&path)?;
    }
    let r = bench.ls_transfer(&files, bench.src.dir(), &out, limit, Verbose::Both)?;
    let got =
        hash_file(&out.join(NAME)).map_err(|e| format!("resumed send to {}: {e}", dest.label))?;
    if got != want {
        return Err(format!(
            "resumed send to {}: the received file differs from the original ({} bytes, the original {})",
            dest.label, got.0, want.0
        ));
    }
    if let Some((left, _)) = partial(&out) {
        return Err(format!("{} is left after the resumed send", left.display()));
    }
    let number = |stderr: &str, side: &str, key: &str| {
        logged_number(stderr, CHECKED, key).ok_or_else(|| {
            format!("the {side} logged no `{CHECKED} ... {key}=` line; its stderr:\n{stderr}")
        })
    };
    let recv_ms = number(&r.recv_stderr, "receiver", "ms")?;
    let send_ms = number(&r.send_stderr, "sender", "ms")?;
    let checked = number(&r.send_stderr, "sender", "bytes")? as u64;
    if checked != kept {
        return Err(format!(
            "the sender checked {checked} bytes; the receiver held {kept}"
        ));
    }
    let first_ms = logged_number(&r.send_stderr, "timing", "first_data_ms").ok_or_else(|| {
        format!(
            "`send -v` logged no timing line; its stderr:\n{}",
            r.send_stderr
        )
    })?;
    remove_dir(&out)?;
    dest.settle()?;
    Ok((kept, recv_ms / 1e3, send_ms / 1e3, first_ms / 1e3))
}

/// The series: the file holds `held` and an eighth more; the send is
/// interrupted once the receiver has `held` bytes.
pub fn run(bench: &Bench, held: u64) -> Res<ResumeResults> {
    let want = hash_file(&bench.src.path(NAME))?;
    let mut rows = vec![];
    let mut plan = vec![];
    for d in &bench.dests {
        if d.label == "tmpfs" {
            plan.push((d, false, format!("{} (memory)", d.label)));
        } else {
            plan.push((
                d,
                false,
                format!("{}, as the interrupted send left it", d.label),
            ));
            plan.push((d, true, format!("{}, page cache warm", d.label)));
        }
    }
    for (_, _, label) in &plan {
        rows.push(ResumeRow {
            label: label.clone(),
            held: vec![],
            recv_s: vec![],
            send_s: vec![],
            first_data_s: vec![],
        });
    }
    println!(
        "rounds: {}; each: a send interrupted (SIGINT) once {:.2} GiB are held, then resumed and checked whole (BLAKE3)",
        bench.cfg.small_runs,
        held as f64 / GIB
    );
    for round in 1..=bench.cfg.small_runs {
        println!("round {round}/{}", bench.cfg.small_runs);
        for ((dest, warm, label), row) in plan.iter().zip(&mut rows) {
            let (kept, recv, send, first) = measured(bench, dest, held, *warm, want)?;
            println!(
                "  {label:<44} held {:.2} GiB  check: receiver {recv:.2} s, sender {send:.2} s  connect → first data {first:.2} s",
                kept as f64 / GIB
            );
            row.held.push(kept);
            row.recv_s.push(recv);
            row.send_s.push(send);
            row.first_data_s.push(first);
        }
    }
    Ok(ResumeResults { size: want.0, rows })
}

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
