//! Partial files left by interrupted transfers: listed when `listen`
//! starts, and removed once older than [`MAX_AGE`] (a resume that has not
//! come back in a week is not coming back; the space matters more). A
//! partial locked by a running transfer is never touched.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::PARTIAL_SUFFIX;

/// How long an unfinished partial is kept for a resume.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Entries looked at, at most (a huge download folder must not stall the start).
const MAX_ENTRIES: usize = 200_000;

/// What a sweep found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Partials kept for a resume: count and bytes.
    pub kept: (u64, u64),
    /// Partials removed for their age: count and bytes.
    pub removed: (u64, u64),
}

/// Lists the partials below `dir` and removes those last written more than
/// `max_age` ago (unless a transfer holds them). Symbolic links are never
/// followed, and nothing but `*.lspart` plain files is considered.
#[must_use]
pub fn sweep(dir: &Path, max_age: Duration, now: SystemTime) -> Sweep {
    let mut sweep = Sweep::default();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(localstream_proto::names::MAX_DEPTH + 1);
    for entry in walk.into_iter().take(MAX_ENTRIES).filter_map(Result::ok) {
        if !entry.file_type().is_file()
            || !entry
                .file_name()
                .to_string_lossy()
                .ends_with(PARTIAL_SUFFIX)
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age > max_age && not_in_use(entry.path()) && std::fs::remove_file(entry.path()).is_ok() {
            sweep.removed.0 += 1;
            sweep.removed.1 += meta.len();
        } else {
            sweep.kept.0 += 1;
            sweep.kept.1 += meta.len();
        }
    }
    sweep
}

/// Whether no transfer holds the partial's lock now.
#[cfg(unix)]
fn not_in_use(path: &Path) -> bool {
    use rustix::fs::{FlockOperation, flock};
    std::fs::File::open(path)
        .is_ok_and(|f| flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok())
}

#[cfg(not(unix))]
fn not_in_use(_path: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn old_partials_go_recent_ones_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.path().join("x.0123456789abcdef.lspart"), b"12345").unwrap();
        std::fs::write(sub.join("y.lspart"), b"123").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"file").unwrap();
        // Nothing is old yet.
        let now = SystemTime::now();
        let s = sweep(dir.path(), MAX_AGE, now);
        assert_eq!(
            s,
            Sweep {
                kept: (2, 8),
                removed: (0, 0)
            }
        );
        // Eight days later both partials are stale; the plain file stays.
        let later = now + Duration::from_secs(8 * 24 * 3600);
        let s = sweep(dir.path(), MAX_AGE, later);
        assert_eq!(
            s,
            Sweep {
                kept: (0, 0),
                removed: (2, 8)
            }
        );
        assert!(dir.path().join("keep.txt").exists());
        assert!(!sub.join("y.lspart").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_partial_in_use_is_kept_whatever_its_age() {
        use rustix::fs::{FlockOperation, flock};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.lspart");
        std::fs::write(&p, b"1").unwrap();
        let held = std::fs::File::open(&p).unwrap();
        flock(&held, FlockOperation::NonBlockingLockExclusive).unwrap();
        let later = SystemTime::now() + Duration::from_secs(30 * 24 * 3600);
        let s = sweep(dir.path(), MAX_AGE, later);
        assert_eq!(s.kept, (1, 1));
        assert!(p.exists());
    }
}
