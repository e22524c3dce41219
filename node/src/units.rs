//! Sizes, rates and summaries as people read them ("10.00 MiB", binary
//! units), for messages the engine sends (a refusal's reason, the final
//! status) and for front ends.

use std::time::Duration;

/// Bytes as a human size, binary units ("10.00 MiB", "512 B").
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// "1 file", "3 files": a count and its noun (regular plurals only).
#[must_use]
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// What an offer holds: "4 files", "4 files and 3 folders", "1 folder".
#[must_use]
pub fn files_and_folders(files: impl Into<u64>, folders: impl Into<u64>) -> String {
    match (files.into(), folders.into()) {
        (files, 0) => plural(files, "file"),
        (0, folders) => plural(folders, "folder"),
        (files, folders) => format!(
            "{} and {}",
            plural(files, "file"),
            plural(folders, "folder")
        ),
    }
}

/// A rate in the unit that reads best: "512 B/s", "12.5 KiB/s",
/// "20.0 MiB/s", "1.1 GiB/s".
#[must_use]
pub fn human_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 4] = ["KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    if !bytes_per_sec.is_finite() {
        return "0 B/s".to_owned();
    }
    if bytes_per_sec < 1024.0 {
        return format!("{:.0} B/s", bytes_per_sec.clamp(0.0, 1023.0));
    }
    let mut value = bytes_per_sec / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// "3 files, 10.00 MiB in 0.50 s (20.0 MiB/s)".
#[must_use]
pub fn summary(files: usize, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!(
        "{}, {} in {secs:.2} s ({})",
        plural(files as u64, "file"),
        human_bytes(bytes),
        human_rate(bytes as f64 / secs),
    )
}

/// ", plus 3.00 MiB already there" when part of the bytes were held already
/// (a resumed prefix, or a file found identical; the summary before it
/// counts what crossed the wire).
#[must_use]
pub fn resumed_note(resumed: u64) -> String {
    if resumed == 0 {
        String::new()
    } else {
        format!(", plus {} already there", human_bytes(resumed))
    }
}

/// "3.10 MiB on the wire for 256.00 MiB (1.2 %)", or `None` when
/// compression saved nothing (the data went as it was, or grew).
#[must_use]
pub fn wire_note(delivered: u64, wire: u64) -> Option<String> {
    (wire < delivered).then(|| {
        format!(
            "{} on the wire for {} ({:.1} %)",
            human_bytes(wire),
            human_bytes(delivered),
            wire as f64 * 100.0 / delivered as f64
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(10 << 20), "10.00 MiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn summary_line() {
        assert_eq!(
            summary(3, 10 * 1024 * 1024, Duration::from_millis(500)),
            "3 files, 10.00 MiB in 0.50 s (20.0 MiB/s)"
        );
        assert_eq!(
            summary(1, 0, Duration::from_secs(1)),
            "1 file, 0 B in 1.00 s (0 B/s)"
        );
        assert_eq!(
            summary(1, 14, Duration::from_millis(40)),
            "1 file, 14 B in 0.04 s (350 B/s)"
        );
        assert_eq!(
            summary(2, 300 * 1024, Duration::from_secs(2)),
            "2 files, 300.00 KiB in 2.00 s (150.0 KiB/s)"
        );
        assert_eq!(
            summary(1, 3 << 30, Duration::from_secs(2)),
            "1 file, 3.00 GiB in 2.00 s (1.5 GiB/s)"
        );
    }

    #[test]
    fn plurals_and_rates() {
        assert_eq!(plural(1u64, "file"), "1 file");
        assert_eq!(plural(0u64, "file"), "0 files");
        assert_eq!(plural(2u32, "file"), "2 files");
        assert_eq!(files_and_folders(4u64, 0u64), "4 files");
        assert_eq!(files_and_folders(0u64, 1u64), "1 folder");
        assert_eq!(files_and_folders(0u64, 0u64), "0 files");
        assert_eq!(files_and_folders(1u64, 3u64), "1 file and 3 folders");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(1023.4), "1023 B/s");
        assert_eq!(human_rate(1024.0), "1.0 KiB/s");
        assert_eq!(human_rate(20.0 * 1024.0 * 1024.0), "20.0 MiB/s");
        assert_eq!(human_rate(f64::INFINITY), "0 B/s");
    }

    #[test]
    fn notes() {
        assert_eq!(resumed_note(0), "");
        assert_eq!(resumed_note(3 << 20), ", plus 3.00 MiB already there");
        assert_eq!(
            wire_note(256 << 20, 6_376_280).as_deref(),
            Some("6.08 MiB on the wire for 256.00 MiB (2.4 %)")
        );
        assert_eq!(wire_note(14, 35), None, "compression that grew the data");
        assert_eq!(wire_note(14, 14), None, "compression that saved nothing");
    }
}
