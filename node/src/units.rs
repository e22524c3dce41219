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

/// "3 files, 10.00 MiB in 0.50 s (20.0 MiB/s)".
#[must_use]
pub fn summary(files: usize, bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    format!(
        "{files} file{s}, {} in {secs:.2} s ({:.1} MiB/s)",
        human_bytes(bytes),
        bytes as f64 / secs / (1024.0 * 1024.0),
        s = if files == 1 { "" } else { "s" },
    )
}

/// ", plus 3.00 MiB resumed" when part of the bytes were held already (the
/// summary before it counts what crossed the wire).
#[must_use]
pub fn resumed_note(resumed: u64) -> String {
    if resumed == 0 {
        String::new()
    } else {
        format!(", plus {} resumed", human_bytes(resumed))
    }
}

/// "3.10 MiB on the wire for 256.00 MiB (1.2 %)".
#[must_use]
pub fn wire_note(delivered: u64, wire: u64) -> String {
    format!(
        "{} on the wire for {} ({:.1} %)",
        human_bytes(wire),
        human_bytes(delivered),
        wire as f64 * 100.0 / delivered.max(1) as f64
    )
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
            "1 file, 0 B in 1.00 s (0.0 MiB/s)"
        );
    }

    #[test]
    fn notes() {
        assert_eq!(resumed_note(0), "");
        assert_eq!(resumed_note(3 << 20), ", plus 3.00 MiB resumed");
        assert_eq!(
            wire_note(256 << 20, 6_376_280),
            "6.08 MiB on the wire for 256.00 MiB (2.4 %)"
        );
    }
}
