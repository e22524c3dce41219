//! Partial files left by interrupted transfers: listed when `listen`
//! starts, and removed once older than [`MAX_AGE`] (a resume that has not
//! come back in a week is not coming back; the space matters more). A
//! partial locked by a running transfer is never touched (off Unix, where
//! transfers take no such lock, nothing is removed, only listed). The
//! staged folders a receiver killed outright left under their hidden names
//! are removed, with what is in them, at the same age.

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
    /// Staged folders (`.<name>.<key>.lspart`, see
    /// [`super::MadeFolders::staging`]) that a receiver killed outright
    /// left under their hidden names: kept, and removed for their age.
    pub hidden: (u64, u64),
}

/// Lists the partials below `dir` and removes those last written more than
/// `max_age` ago (unless a transfer holds them). Symbolic links are never
/// followed, and nothing but `*.lspart` plain files is considered.
#[must_use]
pub fn sweep(dir: &Path, max_age: Duration, now: SystemTime) -> Sweep {
    let mut sweep = Sweep::default();
    let mut walk = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .max_depth(localstream_proto::names::MAX_DEPTH + 1)
        .into_iter();
    let mut looked = 0;
    while let Some(entry) = walk.next() {
        looked += 1;
        if looked > MAX_ENTRIES {
            break;
        }
        let Ok(entry) = entry else { continue };
        if entry.depth() > 0
            && entry.file_type().is_dir()
            && entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .is_some_and(keyed)
        {
            // Its files were not all verified: never published; gone once
            // as old as a stale partial (its own time: a batch is minutes).
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > max_age);
            if old {
                walk.skip_current_dir();
                if std::fs::remove_dir_all(entry.path()).is_ok() {
                    sweep.hidden.1 += 1;
                    continue;
                }
            }
            sweep.hidden.0 += 1;
            continue;
        }
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
        // Only a name this node makes for a resumable partial is removed: a
        // user's own `report.lspart` is not ours to delete.
        let ours = keyed(&entry.file_name().to_string_lossy());
        if ours && age > max_age && remove_if_unused(entry.path()) {
            sweep.removed.0 += 1;
            sweep.removed.1 += meta.len();
        } else {
            sweep.kept.0 += 1;
            sweep.kept.1 += meta.len();
        }
    }
    sweep
}

/// Whether `name` is a resumable partial's: `<name>.<key>.lspart`, the key
/// 16 lowercase hex digits ([`super::resumable::partial_name`]).
fn keyed(name: &str) -> bool {
    name.strip_suffix(PARTIAL_SUFFIX)
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(stem, key)| {
            !stem.is_empty()
                && key.len() == 16
                && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Removes the partial unless a transfer holds its lock, unlinking it while
/// holding the lock ourselves (so no transfer can take it in between) and
/// only if the name still is the file that was locked.
#[cfg(unix)]
fn remove_if_unused(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;

    use rustix::fs::{FlockOperation, flock};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return false;
    }
    let same = match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && b.file_type().is_file(),
        _ => false,
    };
    same && std::fs::remove_file(path).is_ok()
}

/// Without the locks the transfers use here, nothing is removed.
#[cfg(not(unix))]
fn remove_if_unused(_path: &Path) -> bool {
    false
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
                removed: (0, 0),
                hidden: (0, 0),
            }
        );
        // Eight days later the resumable partial is stale and goes; a name
        // without a key (a user's file? an old stream's partial) is only
        // listed, and the plain file stays.
        let later = now + Duration::from_secs(8 * 24 * 3600);
        let s = sweep(dir.path(), MAX_AGE, later);
        assert_eq!(
            s,
            Sweep {
                kept: (1, 3),
                removed: (1, 5),
                hidden: (0, 0),
            }
        );
        assert!(dir.path().join("keep.txt").exists());
        assert!(!dir.path().join("x.0123456789abcdef.lspart").exists());
        assert!(sub.join("y.lspart").exists());
        for name in [
            "x.0123456789ABCDEF.lspart",
            "x.0123456789abcde.lspart",
            ".0123456789abcdef.lspart",
            "report.lspart",
        ] {
            assert!(!keyed(name), "{name}");
        }
        assert!(keyed("a b.c.0123456789abcdef.lspart"));
    }

    #[test]
    fn a_hidden_staged_folder_goes_with_its_files_once_old_and_a_users_stays() {
        let dir = tempfile::tempdir().unwrap();
        let hidden = dir.path().join("tree/.photos.0123456789abcdef.lspart");
        std::fs::create_dir_all(hidden.join("2024")).unwrap();
        std::fs::write(hidden.join("2024/a.jpg"), b"jpeg").unwrap();
        let users = dir.path().join(".photos.lspart");
        std::fs::create_dir_all(&users).unwrap();
        std::fs::write(users.join("b.jpg"), b"jpeg").unwrap();
        let now = SystemTime::now();
        assert_eq!(sweep(dir.path(), MAX_AGE, now).hidden, (1, 0));
        assert!(hidden.join("2024/a.jpg").exists());
        let later = now + Duration::from_secs(8 * 24 * 3600);
        assert_eq!(sweep(dir.path(), MAX_AGE, later).hidden, (0, 1));
        assert!(!hidden.exists());
        assert!(dir.path().join("tree").is_dir());
        assert!(users.join("b.jpg").exists());
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
