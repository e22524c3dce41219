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
//! On Linux both are one `posix_fadvise(POSIX_FADV_DONTNEED)` per window
//! over the window just written and the one before: on the dirty pages it
//! starts their write-back (without waiting), and it drops the pages already
//! clean. (One call rather than two halves the failed page-cache
//! invalidations, each of which drains the LRU caches of every CPU.)
//! Elsewhere nothing is done: the final fsync writes everything, as before.

use std::fs::File;
use std::ops::Range;

/// How much is written between two steps.
pub const WINDOW: u64 = 8 << 20;

/// Where the write-back of one file stands.
#[derive(Debug)]
pub struct WriteBack {
    window: u64,
    /// Write-back was started for everything before this offset.
    started: u64,
    /// Where the range the last step started begins: from here to
    /// `started` is still in the page cache.
    cached: u64,
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
            cached: base,
        }
    }

    /// Write-back for `file`, unless it lives in memory (tmpfs, ramfs),
    /// where there is nothing to write back and the page-cache calls only
    /// cost time.
    pub fn for_file(file: &File, offset: u64, window: u64) -> Option<Self> {
        (!in_memory(file)).then(|| Self::new(offset, window))
    }

    /// The step due once the file holds `written` bytes, if any: once
    /// one or more whole windows were completed since the last step, the
    /// range from the start of what the last step started (written back by
    /// now: dropped from the cache) to the end of what was completed (its
    /// write-back starts).
    pub fn step(&mut self, written: u64) -> Option<Range<u64>> {
        let done = written - written % self.window;
        if done <= self.started {
            return None;
        }
        let range = self.cached..done;
        self.cached = self.started;
        self.started = done;
        Some(range)
    }

    /// Takes the step due once `file` holds `written` bytes. Failures are
    /// ignored: the fsync before the rename still makes the file durable.
    pub fn advance(&mut self, file: &File, written: u64) {
        if let Some(range) = self.step(written) {
            apply(file, range);
        }
    }
}

/// Whether `file` is on a filesystem kept in memory (tmpfs, ramfs).
#[cfg(target_os = "linux")]
fn in_memory(file: &File) -> bool {
    use rustix::fs::{FsWord, fstatfs};
    const TMPFS_MAGIC: FsWord = 0x0102_1994;
    const RAMFS_MAGIC: FsWord = 0x8584_58f6_u32 as FsWord;
    fstatfs(file).is_ok_and(|st| st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC)
}

/// Nothing is done elsewhere anyway.
#[cfg(not(target_os = "linux"))]
fn in_memory(_file: &File) -> bool {
    false
}

/// Starts write-back of the dirty pages of a range, and drops its clean
/// ones from the page cache.
#[cfg(target_os = "linux")]
fn apply(file: &File, range: Range<u64>) {
    use rustix::fs::{Advice, fadvise};
    let len = std::num::NonZeroU64::new(range.end - range.start);
    let _ = fadvise(file, range.start, len, Advice::DontNeed);
}

/// No write-back control elsewhere: the final fsync writes everything.
#[cfg(not(target_os = "linux"))]
fn apply(_file: &File, _range: Range<u64>) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    const W: u64 = 8;

    #[test]
    fn each_step_starts_the_windows_completed_and_drops_those_started_before() {
        let mut wb = WriteBack::new(0, W);
        assert_eq!(wb.step(5), None);
        assert_eq!(wb.step(8), Some(0..8));
        assert_eq!(wb.step(12), None);
        assert_eq!(wb.step(16), Some(0..16));
        // Several windows at once (a large record, or a slow caller).
        assert_eq!(wb.step(41), Some(8..40));
        assert_eq!(wb.step(47), None);
        assert_eq!(wb.step(48), Some(16..48));
        assert_eq!(wb.step(56), Some(40..56));
    }

    #[test]
    fn a_resumed_file_starts_at_the_window_its_held_prefix_ends_in() {
        let mut wb = WriteBack::new(13, W);
        assert_eq!(wb.step(15), None);
        assert_eq!(wb.step(16), Some(8..16));
        assert_eq!(wb.step(24), Some(8..24));
        assert_eq!(wb.step(32), Some(16..32));
    }

    #[test]
    fn every_window_is_started_once_then_dropped_by_the_next_step() {
        let mut wb = WriteBack::new(0, W);
        // Each step: (what it drops, what it starts) = (last start..., done).
        let (mut started, mut last_start) = (0, 0);
        for written in (0..=1000).step_by(7) {
            if let Some(r) = wb.step(written) {
                assert_eq!(
                    r.start, last_start,
                    "begins where the last step's new part began"
                );
                assert!(r.end > started && r.end % W == 0, "{r:?}");
                assert!(r.end <= written);
                last_start = started;
                started = r.end;
            }
        }
        assert_eq!(started, 994 - 994 % W);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_in_memory_is_not_written_back() {
        if !Path::new("/dev/shm").is_dir() {
            return;
        }
        let shm = tempfile::tempfile_in("/dev/shm").unwrap();
        assert!(WriteBack::for_file(&shm, 0, W).is_none());
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
