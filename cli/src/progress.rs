//! Progress bars on stderr (only when it is a terminal), drawn from the
//! engine's progress events: a bar for the current file and one for the total.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use localstream_node::event::FileProgress;
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
    total: ProgressBar,
    file: ProgressBar,
    /// The file the file bar shows.
    current: Option<String>,
}

impl Bars {
    /// Bars for `total_bytes` over `files` files, or `None` unless `enabled`
    /// and stderr is a terminal.
    #[must_use]
    pub fn new(enabled: bool, total_bytes: u64, files: usize) -> Option<Bars> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let file = multi.add(ProgressBar::new(0).with_style(style()));
        let total = multi.add(
            ProgressBar::new(total_bytes)
                .with_style(style())
                .with_message(format!("total ({files} files)")),
        );
        Some(Bars {
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
                self.file.set_message(escape_for_terminal(&f.name));
                self.file.set_length(f.size);
            }
            self.file.set_position(f.bytes);
        }
    }

    /// Removes the bars.
    pub fn finish(&self) {
        self.file.finish_and_clear();
        self.total.finish_and_clear();
    }
}
