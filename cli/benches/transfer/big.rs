//! One big random file to each destination: LocalStream, nc, nc + `sync
//! FILE`, socat and scp, interleaved round by round.

use std::path::Path;

use localstream_testkit::files::{fresh_dir, hash_file, remove_dir};
use localstream_testkit::measure::mb_per_s;

use crate::report::{Samples, Tool};
use crate::tools::Run;
use crate::{Bench, Dest, Res};

/// The big file's name in the sources.
pub const NAME: &str = "random.bin";

/// Samples per destination and tool.
#[derive(Debug)]
pub struct BigResults {
    /// "1 GiB".
    pub size: String,
    /// (destination label, every tool's samples).
    pub dests: Vec<(&'static str, Vec<(Tool, Samples)>)>,
}

/// The tools that can run here, in round order.
fn tools(bench: &Bench) -> Vec<Tool> {
    let mut t = vec![Tool::LocalStream];
    if bench.tools.nc.is_some() {
        t.extend([Tool::Nc, Tool::NcSync]);
    }
    if bench.tools.socat.is_some() {
        t.push(Tool::Socat);
    }
    if bench.tools.ssh.is_some() {
        t.push(Tool::Scp);
    }
    t
}

/// One transfer of `src` by `tool` into the folder `out` (as `out/NAME`).
fn transfer(bench: &Bench, tool: Tool, src: &Path, out: &Path) -> Res<Run> {
    let file = out.join(NAME);
    let missing = |what: &str| format!("{what} is not installed");
    let bytes = bench.cfg.bytes();
    match tool {
        Tool::LocalStream => Ok(bench
            .ls_transfer(
                &[NAME.to_string()],
                bench.src.dir(),
                out,
                crate::tools::timeout(bytes, 1),
                crate::localstream::Verbose::Quiet,
            )?
            .run),
        Tool::Nc | Tool::NcSync => {
            let nc = bench.tools.nc.as_deref().ok_or_else(|| missing("nc"))?;
            bench.nc_file(nc, src, &file, tool == Tool::NcSync)
        }
        Tool::Socat => {
            let socat = bench
                .tools
                .socat
                .as_deref()
                .ok_or_else(|| missing("socat"))?;
            bench.socat_file(socat, src, &file)
        }
        Tool::Scp => {
            let ssh = bench.tools.ssh.as_ref().ok_or_else(|| missing("sshd"))?;
            ssh.scp(bench, src, &file)
        }
        Tool::TarNc | Tool::TarNcSync => Err(format!("{} copies folders", tool.label())),
    }
}

/// Runs one transfer into `dest` and checks the file (size and BLAKE3 of
/// all of it); removes it and syncs the filesystem after.
fn measured(bench: &Bench, tool: Tool, dest: &Dest, want: (u64, [u8; 32])) -> Res<Run> {
    let src = bench.src.path(NAME);
    let out = dest.dir().join(format!("out-{}", tool.slug()));
    fresh_dir(&out)?;
    dest.settle()?;
    let run = transfer(bench, tool, &src, &out)?;
    let got = hash_file(&out.join(NAME))
        .map_err(|e| format!("{} to {}: {e}", tool.label(), dest.label))?;
    if got.0 != want.0 {
        return Err(format!(
            "{} to {}: {} bytes arrived, the original has {}",
            tool.label(),
            dest.label,
            got.0,
            want.0
        ));
    }
    if got.1 != want.1 {
        return Err(format!(
            "{} to {}: the received file differs from the original (BLAKE3)",
            tool.label(),
            dest.label
        ));
    }
    remove_dir(&out)?;
    dest.settle()?;
    Ok(run)
}

/// The series.
pub fn run(bench: &Bench) -> Res<BigResults> {
    let size = bench.cfg.size_label();
    let bytes = bench.cfg.bytes();
    let want = hash_file(&bench.src.path(NAME))?;
    let tools = tools(bench);
    println!(
        "tools: {}; {} rounds; every received file checked (size, BLAKE3)",
        tools
            .iter()
            .map(|t| t.label())
            .collect::<Vec<_>>()
            .join(", "),
        bench.cfg.runs
    );
    // The first transfer after making the data is often much slower (fresh
    // tmpfs pages, cold caches): one untimed LocalStream transfer each.
    for d in &bench.dests {
        let r = measured(bench, Tool::LocalStream, d, want)?;
        println!(
            "  warm-up  {size} to {:5}  LocalStream  {:7.3} s  {:7.1} MB/s  (not counted)",
            d.label,
            r.wall,
            mb_per_s(bytes, r.wall)
        );
    }
    let mut results = BigResults {
        size: size.clone(),
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
    };
    for round in 1..=bench.cfg.runs {
        println!("round {round}/{}", bench.cfg.runs);
        for (d, (_, samples)) in bench.dests.iter().zip(&mut results.dests) {
            for (tool, s) in samples.iter_mut() {
                let r = measured(bench, *tool, d, want)?;
                s.add(&r, Some(bytes));
                println!(
                    "  {size} to {:5}  {:<13} {:7.3} s  {:7.1} MB/s  {}",
                    d.label,
                    tool.label(),
                    r.wall,
                    mb_per_s(bytes, r.wall),
                    r.usage_text()
                );
            }
        }
    }
    Ok(results)
}
