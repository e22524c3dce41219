//! The one terminal that prompts, progress bars and event lines share.
//!
//! - While a question waits for its answer ([`ask`] .. [`answered`]),
//!   nothing is printed into it: other lines are held and follow the answer,
//!   and the progress bars are taken off the screen (they come back after).
//! - Otherwise a line is printed above the bars ([`MultiProgress::suspend`]),
//!   so a bar is never drawn over a line, nor a line into a bar.
//! - All bars of the process are in one [`MultiProgress`]: concurrent
//!   transfers stack their bars instead of drawing over each other.
//!
//! Also here: the terminal's width, word wrapping to it, and colour for
//! warnings and errors (only on a terminal, never with `NO_COLOR`).

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};

use indicatif::{MultiProgress, ProgressDrawTarget};

/// Where a line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

#[derive(Debug, Default)]
struct Screen {
    /// A question is on the screen.
    asking: bool,
    /// Lines printed while it was, in order.
    held: Vec<(Stream, String)>,
    /// The bars of every transfer (created with the first bar).
    bars: Option<MultiProgress>,
}

fn screen() -> MutexGuard<'static, Screen> {
    static SCREEN: OnceLock<Mutex<Screen>> = OnceLock::new();
    SCREEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bars_target() -> ProgressDrawTarget {
    ProgressDrawTarget::stderr_with_hz(10)
}

fn write(stream: Stream, text: &str) {
    let _ = match stream {
        Stream::Out => writeln!(std::io::stdout().lock(), "{text}"),
        Stream::Err => writeln!(std::io::stderr().lock(), "{text}"),
    };
}

fn print(stream: Stream, text: &str) {
    let mut s = screen();
    if s.asking {
        s.held.push((stream, text.to_owned()));
    } else if let Some(bars) = &s.bars {
        bars.suspend(|| write(stream, text));
    } else {
        write(stream, text);
    }
}

/// A line on stderr (held while a question waits).
pub fn err_line(text: &str) {
    print(Stream::Err, text);
}

/// A line on stdout (held while a question waits).
pub fn out_line(text: &str) {
    print(Stream::Out, text);
}

/// Puts a question on the screen (`text` ends where the answer is typed):
/// the bars go away and other lines wait until [`answered`].
pub fn ask(text: &str) {
    let mut s = screen();
    s.asking = true;
    if let Some(bars) = &s.bars {
        let _ = bars.clear();
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// The question is answered (or withdrawn, `note` saying so on its line):
/// the lines held meanwhile follow, then the bars again.
pub fn answered(note: Option<&str>) {
    let mut s = screen();
    if let Some(note) = note {
        write(Stream::Err, &format!("\n{note}"));
    }
    s.asking = false;
    for (stream, text) in std::mem::take(&mut s.held) {
        write(stream, &text);
    }
    if let Some(bars) = &s.bars {
        bars.set_draw_target(bars_target());
    }
}

/// The process's bars, to add a transfer's bars to.
pub fn bars() -> MultiProgress {
    let mut s = screen();
    let asking = s.asking;
    s.bars
        .get_or_insert_with(|| {
            MultiProgress::with_draw_target(if asking {
                ProgressDrawTarget::hidden()
            } else {
                bars_target()
            })
        })
        .clone()
}

/// The width to wrap text for people to: the terminal's (stderr), else 80.
#[must_use]
pub fn width() -> usize {
    console::Term::stderr()
        .size_checked()
        .map_or(80, |(_rows, cols)| usize::from(cols))
        .clamp(40, 120)
}

/// `text` with each line longer than `width` columns wrapped at spaces (a
/// word longer than the width gets a line of its own, unbroken); a wrapped
/// line's continuation keeps the line's indentation. Lines that fit are
/// kept as they are.
#[must_use]
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let mut col = 0;
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            let len = word.chars().count();
            if col == 0 {
                out.push_str(&indent);
                out.push_str(word);
                col = indent.len() + len;
            } else if col + 1 + len > width {
                out.push('\n');
                out.push_str(&indent);
                out.push_str(word);
                col = indent.len() + len;
            } else {
                out.push(' ');
                out.push_str(word);
                col += 1 + len;
            }
        }
    }
    out
}

/// How a line is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Something the user should notice (yellow).
    Warning,
    /// A failure (red).
    Error,
}

/// Whether stderr gets colours: it is a terminal and `NO_COLOR` is not set
/// (to anything but the empty string).
#[must_use]
pub fn colours() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        colours_for(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    })
}

fn colours_for(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// `text` in the colour of `tone`, when [`colours`] are on.
#[must_use]
pub fn paint(tone: Tone, text: &str) -> String {
    paint_if(colours(), tone, text)
}

fn paint_if(on: bool, tone: Tone, text: &str) -> String {
    if !on {
        return text.to_owned();
    }
    let code = match tone {
        Tone::Warning => "33",
        Tone::Error => "31",
    };
    // Each line on its own: the pager or the bars may redraw between lines.
    text.split('\n')
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("\x1b[{code}m{l}\x1b[0m")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_indentation() {
        assert_eq!(wrap("one two three four", 9), "one two\nthree\nfour");
        assert_eq!(
            wrap("  indented words here", 12),
            "  indented\n  words here"
        );
        assert_eq!(wrap("short\n\nlines", 80), "short\n\nlines");
        let long = "a".repeat(20);
        assert_eq!(wrap(&format!("x {long} y"), 10), format!("x\n{long}\ny"));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colours_for(true, None));
        assert!(colours_for(true, Some(OsStr::new(""))));
        assert!(!colours_for(true, Some(OsStr::new("1"))));
        assert!(!colours_for(false, None));
        assert_eq!(paint_if(false, Tone::Error, "x"), "x");
        assert_eq!(
            paint_if(true, Tone::Warning, "a\nb"),
            "\x1b[33ma\x1b[0m\n\x1b[33mb\x1b[0m"
        );
    }
}
