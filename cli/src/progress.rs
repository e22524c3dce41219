//! Progress bars on stderr (only when it is a terminal), drawn from the
//! engine's progress events: per transfer, a bar for the current file and
//! one for the total, each named with the peer ("h1: big.bin"), so that
//! concurrent transfers can be told apart. They all live in the screen's one
//! [`indicatif::MultiProgress`] ([`crate::screen::bars`]).

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use localstream_node::event::FileProgress;
use localstream_node::units::plural;
use localstream_proto::names::escape_for_terminal;

const TEMPLATE: &str =
    "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}";

fn style() -> ProgressStyle {
    ProgressStyle::with_template(TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The bars of one transfer.
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    /// Who the transfer is with (escaped), the start of each bar's name.
    peer: String,
    total: ProgressBar,
    file: ProgressBar,
    /// The file the file bar shows.
    current: Option<String>,
}

impl Bars {
    /// Bars for `total_bytes` over `files` files with `peer` (its short
    /// label, escaped), or `None` unless `enabled` and stderr is a terminal.
    #[must_use]
    pub fn new(enabled: bool, peer: &str, total_bytes: u64, files: usize) -> Option<Bars> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = crate::screen::bars();
        let file = multi.add(ProgressBar::new(0).with_style(style()));
        let total = multi.add(
            ProgressBar::new(total_bytes)
                .with_style(style())
                .with_message(total_name(peer, files)),
        );
        Some(Bars {
            multi,
            peer: peer.to_owned(),
            total,
            file,
            current: None,
        })
    }

    /// The figures of a progress event.
    pub fn update(&mut self, bytes: u64, total: u64, file: Option<&FileProgress>) {
        self.total.set_length(total);
        self.total.set_position(bytes);
        if let Some(f) = file {
            if self.current.as_deref() != Some(f.name.as_str()) {
                self.current = Some(f.name.clone());
                self.file.set_message(file_name(&self.peer, &f.name));
                self.file.set_length(f.size);
            }
            self.file.set_position(f.bytes);
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.file.finish_and_clear();
        self.total.finish_and_clear();
        self.multi.remove(&self.file);
        self.multi.remove(&self.total);
    }
}

/// The line a long count shows while it runs (`send` of a large tree): what
/// it has found so far, on stderr, gone when the count is over.
#[derive(Debug)]
pub struct CountLine {
    multi: MultiProgress,
    line: ProgressBar,
}

impl CountLine {
    /// The line, or `None` unless `enabled` and stderr is a terminal.
    #[must_use]
    pub fn new(enabled: bool) -> Option<CountLine> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = crate::screen::bars();
        let line = multi.add(
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        );
        line.enable_steady_tick(std::time::Duration::from_millis(120));
        Some(CountLine { multi, line })
    }

    /// What the count found so far.
    pub fn update(&self, entries: u64, bytes: u64) {
        self.line.set_message(counting_text(entries, bytes));
    }
}

impl Drop for CountLine {
    /// Removes the line (at the count's end, or with the command when the
    /// count failed).
    fn drop(&mut self) {
        self.line.finish_and_clear();
        self.multi.remove(&self.line);
    }
}

/// "counting what to send: 412003 files and folders, 3.21 GiB so far".
#[must_use]
pub fn counting_text(entries: u64, bytes: u64) -> String {
    format!(
        "counting what to send: {entries} files and folders, {} so far",
        localstream_node::units::human_bytes(bytes)
    )
}

/// The total bar's name: "h1: total (1 file)".
fn total_name(peer: &str, files: usize) -> String {
    format!("{peer}: total ({})", plural(files as u64, "file"))
}

/// The file bar's name: "h1: big.bin" (the name escaped).
fn file_name(peer: &str, name: &str) -> String {
    format!("{peer}: {}", escape_for_terminal(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_named_with_the_peer() {
        assert_eq!(total_name("h1", 1), "h1: total (1 file)");
        assert_eq!(total_name("h1", 3), "h1: total (3 files)");
        assert_eq!(file_name("h1", "big\x1b.bin"), "h1: big\\x1b.bin");
    }

    #[test]
    fn a_long_count_says_what_it_found() {
        assert_eq!(
            counting_text(412_003, 3 << 30),
            "counting what to send: 412003 files and folders, 3.00 GiB so far"
        );
    }
}
