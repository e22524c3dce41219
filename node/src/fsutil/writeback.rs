//! Streaming write-back of a large file as it is written, so that the fsync
//! before its rename ("verified and on disk before it has its name") finds
//! almost nothing left to write.
//!
//! Without it the kernel keeps the whole file dirty in the page cache (far
//! below its dirty limits) until that fsync, which then writes all of it
//! after the last byte arrived. Here, each time the file has grown by a
//! window, write-back of that window is started, and the window before it
//! (by then written back) is dropped from the page cache, so the receiver
//! neither floods the cache nor leaves the write-out to the end.
//!
//! On Linux both steps are `posix_fadvise(POSIX_FADV_DONTNEED)`: on a range
//! with dirty pages it starts their write-back (without waiting) and drops
//! the pages already clean. Elsewhere nothing is done: the final fsync
//! writes everything, as before.

use std::fs::File;
use std::ops::Range;

/// How much is written between two steps.
pub const WINDOW: u64 = 8 << 20;

/// One step of the write-back, over a range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start writing these bytes back (they were just written).
    Start(Range<u64>),
    /// Drop these bytes from the page cache (written back by now).
    Drop(Range<u64>),
}

/// Where the write-back of one file stands.
#[derive(Debug)]
pub struct WriteBack {
    window: u64,
    /// Write-back was started for everything before this offset.
    started: u64,
    /// Everything before this offset was dropped from the cache.
    dropped: u64,
}

impl WriteBack {
    /// A file that already holds `offset` bytes (a resumed partial) before
    /// the first byte written now; steps are taken every `window` bytes.
    pub fn new(offset: u64, window: u64) -> Self {
        let window = window.max(1);
        // Windows start at multiples of `window`, from the one `offset` is in.
        let base = offset - offset % window;
        Self {
            window,
            started: base,
            dropped: base,
        }
    }

    /// The steps due once the file holds `written` bytes: a Start for each
    /// whole window completed since the last call, and a Drop for the
    /// windows completed before the one just started (which is still being
    /// written back).
    pub fn steps(&mut self, written: u64) -> Vec<Step> {
        let done = written - written % self.window;
        if done <= self.started {
            return Vec::new();
        }
        let mut steps = vec![Step::Start(self.started..done)];
        self.started = done;
        let behind = done.saturating_sub(self.window);
        if behind > self.dropped {
            steps.push(Step::Drop(self.dropped..behind));
            self.dropped = behind;
        }
        steps
    }

    /// Takes the steps due once `file` holds `written` bytes. Failures are
    /// ignored: the fsync before the rename still makes the file durable.
    pub fn advance(&mut self, file: &File, written: u64) {
        for step in self.steps(written) {
            apply(file, &step);
        }
    }
}

/// Starts write-back of a range, or drops it from the page cache.
#[cfg(target_os = "linux")]
fn apply(file: &File, step: &Step) {
    use rustix::fs::{Advice, fadvise};
    let range = match step {
        Step::Start(r) | Step::Drop(r) => r,
    };
    let len = std::num::NonZeroU64::new(range.end - range.start);
    let _ = fadvise(file, range.start, len, Advice::DontNeed);
}

/// No write-back control elsewhere: the final fsync writes everything.
#[cfg(not(target_os = "linux"))]
fn apply(_file: &File, _step: &Step) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const W: u64 = 8;

    #[test]
    fn each_completed_window_is_started_and_the_one_before_it_dropped() {
        let mut wb = WriteBack::new(0, W);
        assert_eq!(wb.steps(5), vec![]);
        assert_eq!(wb.steps(8), vec![Step::Start(0..8)]);
        assert_eq!(wb.steps(12), vec![]);
        assert_eq!(wb.steps(16), vec![Step::Start(8..16), Step::Drop(0..8)]);
        // Several windows at once (a large record, or a slow caller).
        assert_eq!(wb.steps(41), vec![Step::Start(16..40), Step::Drop(8..32)]);
        assert_eq!(wb.steps(47), vec![]);
        assert_eq!(wb.steps(48), vec![Step::Start(40..48), Step::Drop(32..40)]);
    }

    #[test]
    fn a_resumed_file_starts_at_the_window_its_held_prefix_ends_in() {
        let mut wb = WriteBack::new(13, W);
        assert_eq!(wb.steps(15), vec![]);
        assert_eq!(wb.steps(16), vec![Step::Start(8..16)]);
        assert_eq!(wb.steps(24), vec![Step::Start(16..24), Step::Drop(8..16)]);
    }

    #[test]
    fn every_byte_is_started_once_and_dropped_at_most_once() {
        let mut wb = WriteBack::new(0, W);
        let (mut started, mut dropped) = (0, 0);
        for written in (0..=1000).step_by(7) {
            for step in wb.steps(written) {
                match step {
                    Step::Start(r) => {
                        assert_eq!(r.start, started, "contiguous");
                        started = r.end;
                    }
                    Step::Drop(r) => {
                        assert_eq!(r.start, dropped, "contiguous");
                        assert!(r.end + W <= started, "only behind the window in flight");
                        dropped = r.end;
                    }
                }
            }
        }
        assert_eq!(started, 994 - 994 % W);
        assert_eq!(dropped, started - W);
    }

    #[test]
    fn a_file_written_back_in_windows_smaller_than_it_keeps_every_byte() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let mut file = File::create(&path).unwrap();
        let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut wb = WriteBack::new(0, 4096);
        let mut written = 0;
        for piece in content.chunks(10_000) {
            file.write_all(piece).unwrap();
            written += piece.len() as u64;
            wb.advance(&file, written);
        }
        file.sync_all().unwrap();
        drop(file);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), content.len());
        assert!(back == content, "the bytes read back differ");
    }
}
