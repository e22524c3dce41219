//! Measuring processes: GNU time's CPU seconds and peak memory of a command,
//! and the statistics of repeated runs (median, min, max).
//!
//! ```text
//!  timed(time, usage_file, program) ──► `time -f "%e %U %S %M" -o usage_file program ...`
//!      │ the command runs (spawned by the caller, e.g. with procs::Logged)
//!      ▼
//!  read_usage(usage_file) ──► Usage { wall, user, sys, max_rss_kib }
//! ```
//!
//! GNU time (`/usr/bin/time`, Debian package `time`) reports the rusage of
//! the command and everything it waited for, so a `sh -c 'a | b'` wrapper
//! counts the CPU of both `a` and `b`, and the peak RSS of the largest one.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// The format given to GNU time: elapsed, user, system seconds, peak RSS (KiB).
pub const TIME_FORMAT: &str = "%e %U %S %M";

/// What GNU time measured of one command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Elapsed (wall) seconds, as GNU time saw them (10 ms resolution).
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set size in KiB (of the largest process waited for).
    pub max_rss_kib: u64,
}

impl Usage {
    /// User plus system CPU seconds.
    #[must_use]
    pub fn cpu(&self) -> f64 {
        self.user + self.sys
    }

    /// Peak RSS in MiB.
    #[must_use]
    pub fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    /// Parses the last line of GNU time's output in [`TIME_FORMAT`]
    /// (earlier lines are the command's own complaints, such as
    /// "Command exited with non-zero status 1").
    #[must_use]
    pub fn parse(text: &str) -> Option<Usage> {
        let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
        let mut f = line.split_whitespace();
        let usage = Usage {
            wall: f.next()?.parse().ok()?,
            user: f.next()?.parse().ok()?,
            sys: f.next()?.parse().ok()?,
            max_rss_kib: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(usage)
    }
}

/// GNU time's path when it is installed and works (`/usr/bin/time`; the
/// shell's `time` keyword cannot write a file or report memory).
#[must_use]
pub fn gnu_time() -> Option<String> {
    let path = "/usr/bin/time";
    let out = Command::new(path)
        .args(["-f", TIME_FORMAT, "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    (out.status.success() && Usage::parse(&String::from_utf8_lossy(&out.stderr)).is_some())
        .then(|| path.to_string())
}

/// `program` run under GNU time `time` (when given), which writes the
/// [`Usage`] to `usage_file`; without it, `program` itself (and
/// [`read_usage`] finds nothing). Add the arguments to the returned command.
pub fn timed(time: Option<&str>, usage_file: &Path, program: impl AsRef<OsStr>) -> Command {
    let _ = fs::remove_file(usage_file);
    match time {
        Some(time) => {
            let mut c = Command::new(time);
            c.args(["-f", TIME_FORMAT, "-o"])
                .arg(usage_file)
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The [`Usage`] GNU time wrote to `path`, if it did.
#[must_use]
pub fn read_usage(path: &Path) -> Option<Usage> {
    Usage::parse(&fs::read_to_string(path).ok()?)
}

/// The values sorted (NaN last).
#[must_use]
pub fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The median (the mean of the middle two for an even count).
#[must_use]
pub fn median(v: &[f64]) -> Option<f64> {
    let s = sorted(v);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// The smallest value.
#[must_use]
pub fn min(v: &[f64]) -> Option<f64> {
    sorted(v).first().copied()
}

/// The largest value.
#[must_use]
pub fn max(v: &[f64]) -> Option<f64> {
    sorted(v).last().copied()
}

/// Megabytes (10^6 bytes) per second.
#[must_use]
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_line_of_gnu_time() {
        let u =
            Usage::parse("Command exited with non-zero status 1\n1.52 0.80 0.31 12345\n").unwrap();
        assert_eq!(
            u,
            Usage {
                wall: 1.52,
                user: 0.80,
                sys: 0.31,
                max_rss_kib: 12345
            }
        );
        assert!((u.cpu() - 1.11).abs() < 1e-9);
        assert_eq!(Usage::parse("1.0 2.0 3.0\n"), None);
        assert_eq!(Usage::parse("1.0 2.0 3.0 4 5\n"), None);
        assert_eq!(Usage::parse(""), None);
    }

    #[test]
    fn median_min_max() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(min(&[4.0, 1.0, 2.0]), Some(1.0));
        assert_eq!(max(&[4.0, 1.0, 2.0]), Some(4.0));
    }

    #[test]
    fn timed_command_reports_usage() {
        let Some(time) = gnu_time() else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("testkit-measure-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("usage");
        let st = timed(Some(&time), &file, "true").status().unwrap();
        assert!(st.success());
        let u = read_usage(&file).unwrap();
        assert!(u.max_rss_kib > 0, "{u:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
