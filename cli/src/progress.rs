//! Progress bars on stderr (only when it is a terminal), progress events
//! (`--json`), and the end-of-transfer summary.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use localstream_proto::names::escape_for_terminal;

use crate::events::Events;

/// Progress of one transfer: a bar for the current file and one for the total.
/// When disabled every method is a cheap no-op.
#[derive(Debug, Clone)]
pub struct Progress {
    total: ProgressBar,
    file: ProgressBar,
    events: Events,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// Bars for `total_bytes` over `files` files; hidden unless `enabled` and
    /// stderr is a terminal. Progress events go to `events` either way.
    pub fn new(enabled: bool, total_bytes: u64, files: usize, events: &Events) -> Self {
        let events = events.clone();
        if !enabled || !std::io::stderr().is_terminal() {
            let total = ProgressBar::hidden();
            total.set_length(total_bytes);
            return Progress {
                total,
                file: ProgressBar::hidden(),
                events,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let file = multi.add(ProgressBar::new(0).with_style(style(
            "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
        )));
        let total = multi.add(
            ProgressBar::new(total_bytes)
                .with_style(style(
                    "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
                ))
                .with_message(format!("total ({files} files)")),
        );
        Progress {
            total,
            file,
            events,
        }
    }

    /// Whether anything watches progress (a bar or events): callers may
    /// skip their per-file calls otherwise.
    #[must_use]
    pub fn watched(&self) -> bool {
        !self.total.is_hidden() || self.events.on()
    }

    /// A new file begins.
    pub fn start_file(&self, name: &str, size: u64) {
        self.file.set_length(size);
        self.file.set_position(0);
        self.file.set_message(escape_for_terminal(name));
    }

    /// `n` more bytes to move than announced.
    pub fn grow(&self, n: u64) {
        self.total.inc_length(n);
    }

    /// `n` more bytes moved.
    pub fn advance(&self, n: u64) {
        self.file.inc(n);
        self.total.inc(n);
        if self.events.on() {
            self.events.progress(
                self.total.position(),
                self.total.length().unwrap_or(0),
                false,
            );
        }
    }

    /// A file is done: sent (sender) or saved under `path` (receiver).
    pub fn file_done(&self, name: &str, size: u64, path: Option<&std::path::Path>) {
        if self.events.on() {
            let mut fields = serde_json::json!({ "name": name, "size": size });
            if let Some(p) = path {
                fields["path"] = p.display().to_string().into();
            }
            self.events.emit("file_done", fields);
        }
    }

    /// Removes the bars (and sends the final progress event).
    pub fn finish(&self) {
        self.file.finish_and_clear();
        self.total.finish_and_clear();
        self.events.progress(
            self.total.position(),
            self.total.length().unwrap_or(0),
            true,
        );
    }
}

/// Bytes as a human size, binary units ("10.0 MiB").
pub fn human_bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

/// "3 files, 10.00 MiB in 0.50 s (20.0 MiB/s)" (binary units, like the progress bars).
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
pub fn resumed_note(resumed: u64) -> String {
    if resumed == 0 {
        String::new()
    } else {
        format!(", plus {} resumed", human_bytes(resumed))
    }
}

/// "3.10 MiB on the wire for 256.00 MiB (1.2 %)".
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
