//! Many small files to each destination: a flat folder, nested folders, and
//! a real tree (whole crates of the cargo registry's sources); LocalStream
//! in one send against `tar c | nc` → `nc | tar x`, and the same followed by
//! `sync -f` of the destination. Each received tree is compared with its
//! original, path by path (sizes and BLAKE3 hashes).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use localstream_testkit::files::{
    Manifest, Rng, copy_tree, flat_files, fresh_dir, nested_files, remove_dir,
};
use localstream_testkit::procs::Context;

use crate::localstream::Verbose;
use crate::report::{Samples, Tool};
use crate::tools::{Run, timeout};
use crate::{Bench, Dest, Res};

/// One set of files, made in the sources as `<src>/<name>/`.
#[derive(Debug)]
pub struct SmallSet {
    /// The table's label ("10,000 x 4 KiB, one folder").
    pub label: String,
    /// (destination label, every tool's samples).
    pub dests: Vec<(&'static str, Vec<(Tool, Samples)>)>,
    /// How LocalStream had to send it, when not in one send.
    pub sends: usize,
}

/// 12345 → "12,345".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The cargo registry's source folder (`$CARGO_HOME/registry/src/<index>`,
/// the first index).
fn registry_sources() -> Res<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry/src");
    let mut indexes: Vec<PathBuf> = fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    indexes.sort();
    indexes
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} holds no index folder", src.display()))
}

/// Regular files below `dir`.
fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// Copies whole crates (by name order) of the registry's sources into
/// `into` until about `target` files; says which.
fn make_tree(into: &Path, target: usize) -> Res<String> {
    let reg = registry_sources()?;
    let mut crates: Vec<PathBuf> = fs::read_dir(&reg)
        .with_context(|| format!("reading {}", reg.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let (mut files, mut bytes, mut folders, mut skipped, mut taken) = (0, 0, 0, 0, vec![]);
    for c in crates {
        if files >= target {
            break;
        }
        let n = count_files(&c);
        // Whole crates only; stop short rather than far over the target.
        if files > 0 && files + n > target + target / 10 {
            continue;
        }
        let name = c
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let copied = copy_tree(&c, &into.join(&name))?;
        files += copied.files;
        bytes += copied.bytes;
        folders += copied.folders + 1;
        skipped += copied.skipped;
        taken.push(name);
    }
    if files == 0 {
        return Err(format!("{} holds no crate sources", reg.display()));
    }
    Ok(format!(
        "{} crates from {} ({} … {}, by name, whole crates up to about {} files): {} files, \
         {:.1} MB, {} folders{}",
        taken.len(),
        reg.display(),
        taken.first().map_or("", String::as_str),
        taken.last().map_or("", String::as_str),
        thousands(target),
        thousands(files),
        bytes as f64 / 1e6,
        thousands(folders),
        if skipped > 0 {
            format!(" ({skipped} symbolic links or special files left out)")
        } else {
            String::new()
        }
    ))
}

/// A set to run: its folder name in the sources, label and rounds.
struct Plan {
    name: &'static str,
    label: String,
    rounds: usize,
}

/// Makes the sets chosen, in the sources.
fn make_sets(bench: &Bench, notes: &mut Vec<String>) -> Res<Vec<Plan>> {
    let cfg = &bench.cfg;
    let mut rng = Rng::from_clock();
    let mut plans = vec![];
    if cfg.wants("small") && cfg.small > 0 {
        let t = Instant::now();
        flat_files(&bench.src.path("flat"), cfg.small, 4096, &mut rng)?;
        let label = format!("{} x 4 KiB, one folder", thousands(cfg.small));
        println!("made {label} in {:.1} s", t.elapsed().as_secs_f64());
        plans.push(Plan {
            name: "flat",
            label,
            rounds: cfg.small_runs,
        });
    }
    if cfg.wants("small") && cfg.nested > 0 {
        let t = Instant::now();
        let folders = nested_files(&bench.src.path("nested"), cfg.nested, 1024, 10, &mut rng)?;
        let label = format!(
            "{} x 1 KiB, {} nested folders",
            thousands(cfg.nested),
            thousands(folders)
        );
        println!("made {label} in {:.1} s", t.elapsed().as_secs_f64());
        plans.push(Plan {
            name: "nested",
            label,
            rounds: cfg.small_runs,
        });
    }
    if cfg.wants("tree") {
        let t = Instant::now();
        match make_tree(&bench.src.path("tree"), cfg.tree_files) {
            Ok(about) => {
                let m = Manifest::of(&bench.src.path("tree"))?;
                println!(
                    "real tree: {about} (copied in {:.1} s)",
                    t.elapsed().as_secs_f64()
                );
                notes.push(format!("Real tree: {about}."));
                plans.push(Plan {
                    name: "tree",
                    label: format!(
                        "cargo registry sources, {} files, {:.0} MB",
                        thousands(m.files()),
                        m.bytes() as f64 / 1e6
                    ),
                    rounds: cfg.small_runs,
                });
            }
            Err(e) => {
                let line = format!("real-tree rows skipped: {e}");
                println!("{line}");
                notes.push(line);
            }
        }
    }
    if cfg.wants("million") && cfg.million > 0 {
        let t = Instant::now();
        let folders = nested_files(&bench.src.path("million"), cfg.million, 64, 32, &mut rng)?;
        let label = format!(
            "{} x 64 B, {} nested folders, 1 round",
            thousands(cfg.million),
            thousands(folders)
        );
        println!("made {label} in {:.1} s", t.elapsed().as_secs_f64());
        // Each tool's copy must fit at once (the one before is removed).
        let need = cfg.million as u64 + folders as u64 + 1_000;
        for d in &bench.dests {
            if let Some(free) = free_inodes(d.dir())
                && free < need
            {
                return Err(format!(
                    "the {} destination {} has {free} free inodes and the million series \
                     needs {need} (its files and folders): remove what is left there, or \
                     set LOCALSTREAM_BENCH_MILLION lower",
                    d.label,
                    d.dir().display()
                ));
            }
        }
        plans.push(Plan {
            name: "million",
            label,
            rounds: 1,
        });
    }
    Ok(plans)
}

/// Free inodes of the filesystem holding `dir` (`stat -f`), when known.
fn free_inodes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%d"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The entries directly in `dir`, sorted by name.
fn children(dir: &Path) -> Res<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// LocalStream sends `src/<name>` into `out` (as `out/<name>`): in one send,
/// or, once a send of all was refused as too many files, in `sends` sends
/// of its top entries (the same tree arrives).
fn ls_send(
    bench: &Bench,
    name: &str,
    out: &Path,
    sends: &mut usize,
    limit: std::time::Duration,
) -> Res<Run> {
    if *sends == 1 {
        match bench.ls_transfer(
            &[name.to_string()],
            bench.src.dir(),
            out,
            limit,
            Verbose::Quiet,
        ) {
            Ok(r) => return Ok(r.run),
            Err(e) if e.contains("one by one") => {
                println!(
                    "  NOTE: one send of {name} was refused ({}); sending its top folders \
                     in 2 sends instead",
                    e.lines()
                        .find(|l| l.contains("one by one"))
                        .map_or("too many", str::trim)
                );
                *sends = 2;
                fresh_dir(out)?;
            }
            Err(e) => return Err(e),
        }
    }
    let top = children(&bench.src.path(name))?;
    let into = out.join(name);
    loop {
        let per = top.len().div_ceil(*sends).max(1);
        let mut total: Option<Run> = None;
        let mut refused = None;
        for group in top.chunks(per) {
            match bench.ls_transfer(group, &bench.src.path(name), &into, limit, Verbose::Quiet) {
                Ok(r) => total = Some(total.map_or(r.run, |t| t.then(r.run))),
                Err(e) if e.contains("one by one") && *sends < top.len() => {
                    refused = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        match (refused, total) {
            (None, Some(t)) => return Ok(t),
            (None, None) => return Err(format!("{name} is empty")),
            (Some(_), _) => {
                *sends = (*sends * 2).min(top.len());
                println!("  NOTE: still refused; sending {name} in {} sends", *sends);
                fresh_dir(out)?;
            }
        }
    }
}

/// One run of `tool` with set `name` into `dest`, checked against `want`;
/// the output removed and the filesystem synced after.
fn measured(
    bench: &Bench,
    tool: Tool,
    dest: &Dest,
    name: &str,
    want: &Manifest,
    sends: &mut usize,
) -> Res<Run> {
    let out = dest.dir().join(format!("out-{}", tool.slug()));
    fresh_dir(&out)?;
    dest.settle()?;
    let limit = timeout(want.bytes(), want.files());
    let nc = || {
        bench
            .tools
            .nc
            .as_deref()
            .ok_or_else(|| "nc is not installed".to_string())
    };
    let run = match tool {
        Tool::LocalStream => ls_send(bench, name, &out, sends, limit)?,
        Tool::TarNc | Tool::TarNcSync => bench.tar_nc(
            nc()?,
            bench.src.dir(),
            name,
            &out,
            tool == Tool::TarNcSync,
            limit,
        )?,
        other => return Err(format!("{} copies one file", other.label())),
    };
    let what = format!("{} to {}", tool.label(), dest.label);
    let top = children(&out)?;
    if top != [name] {
        return Err(format!(
            "{what}: {} holds {top:?}, expected only {name:?}",
            out.display()
        ));
    }
    want.check(&Manifest::of(&out.join(name))?, &what)?;
    remove_dir(&out)?;
    dest.settle()?;
    Ok(run)
}

/// The small-file and tree series; notes go to `notes`.
pub fn run(bench: &Bench, notes: &mut Vec<String>) -> Res<Vec<SmallSet>> {
    println!("\nsmall files: {} rounds", bench.cfg.small_runs);
    let plans = make_sets(bench, notes)?;
    let mut tools = vec![Tool::LocalStream];
    if bench.tools.nc.is_some() {
        tools.extend([Tool::TarNc, Tool::TarNcSync]);
    }
    let mut sets = vec![];
    for plan in plans {
        let src = bench.src.path(plan.name);
        let want = Manifest::of(&src)?;
        println!(
            "{}: {} files, {} bytes, every received tree checked (paths, sizes, BLAKE3)",
            plan.label,
            want.files(),
            want.bytes()
        );
        let mut set = SmallSet {
            label: plan.label,
            dests: bench
                .dests
                .iter()
                .map(|d| {
                    (
                        d.label,
                        tools.iter().map(|t| (*t, Samples::default())).collect(),
                    )
                })
                .collect(),
            sends: 1,
        };
        if plan.rounds == 1 {
            // This VM hands memory freed for a few seconds back to its host,
            // and the next touch of it costs about 3x (writing 4 GiB to
            // tmpfs: 3.4 s right after another such write, 11 s after 20 s
            // idle). With medians of several rounds that falls on a discarded
            // first run; a single round gets an untimed run of each
            // destination first, so that no tool is the one that pays it.
            let first = tools[tools.len() - 1];
            for d in &bench.dests {
                let r = measured(bench, first, d, plan.name, &want, &mut set.sends)?;
                println!(
                    "  warm-up: {} to {:5}  {:<13} {:7.3} s (not counted)",
                    plan.name,
                    d.label,
                    first.label(),
                    r.wall
                );
            }
        }
        for round in 1..=plan.rounds {
            println!("round {round}/{}", plan.rounds);
            for (d, (_, samples)) in bench.dests.iter().zip(&mut set.dests) {
                for (tool, s) in samples.iter_mut() {
                    let r = measured(bench, *tool, d, plan.name, &want, &mut set.sends)?;
                    s.add(&r, None);
                    println!(
                        "  {} to {:5}  {:<13} {:7.3} s  {}",
                        plan.name,
                        d.label,
                        tool.label(),
                        r.wall,
                        r.usage_text()
                    );
                }
            }
        }
        if set.sends > 1 {
            notes.push(format!(
                "{}: LocalStream in {} sends (one send of the whole folder was refused as too \
                 many files).",
                set.label, set.sends
            ));
        }
        remove_dir(&src)?;
        sets.push(set);
    }
    Ok(sets)
}
