//! What the receiver does when a file's name is taken, and the modification
//! times it keeps.
//!
//! ```text
//!  OnCollision::Rename         report.pdf taken -> report (1).pdf     (never overwrites; default),
//!                              unless it is the same file again (size, time, then hash: kept)
//!  OnCollision::SkipIdentical  same size: hash it, offer it as held -> the sender's Resume says
//!                              "same bytes" (nothing crosses) or not (the new file replaces it)
//!  OnCollision::Overwrite      the verified, fsynced partial is renamed over the old file
//! ```
//!
//! Replacing never follows a symlink: `rename(2)` replaces the name itself
//! (a link in the destination is replaced, its target is untouched), and an
//! existing file is hashed only when it is a plain file opened without
//! following links. A folder in the way is never replaced: the file takes a
//! free name instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use localstream_proto::transfer::Mtime;

/// What the receiver does with a file whose name is already taken
/// (`listen --on-collision`, setting `on-collision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCollision {
    /// Keep both: the new file takes a free name such as `report (1).pdf`.
    #[default]
    Rename,
    /// A file with the same size and BLAKE3 hash is left as it is and its
    /// bytes are not sent; a different one replaces it (an rsync-like update).
    SkipIdentical,
    /// The new file replaces the old one (atomically, once verified and on disk).
    Overwrite,
}

impl OnCollision {
    /// Whether a verified file replaces what has its name.
    #[must_use]
    pub fn replaces(self) -> bool {
        self != OnCollision::Rename
    }

    /// The name on the command line and in the settings file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            OnCollision::Rename => "rename",
            OnCollision::SkipIdentical => "skip-identical",
            OnCollision::Overwrite => "overwrite",
        }
    }
}

impl std::str::FromStr for OnCollision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rename" => Ok(OnCollision::Rename),
            "skip-identical" => Ok(OnCollision::SkipIdentical),
            "overwrite" => Ok(OnCollision::Overwrite),
            _ => Err(format!(
                "{s:?}: expected rename, skip-identical or overwrite"
            )),
        }
    }
}

/// Size of the plain file `parent/name`, without opening it or following a
/// link (`None`: nothing there, or not a plain file).
#[must_use]
pub fn existing_len(parent: &Path, name: &str) -> Option<u64> {
    match std::fs::symlink_metadata(parent.join(name)) {
        Ok(m) if m.file_type().is_file() => Some(m.len()),
        _ => None,
    }
}

/// Whether the plain file `parent/name` has `size` bytes and the
/// modification time `t` (a received file keeps the sender's): the same
/// file again, most likely, to be confirmed by its hash.
#[must_use]
pub fn same_size_and_time(parent: &Path, name: &str, size: u64, t: Mtime) -> bool {
    match std::fs::symlink_metadata(parent.join(name)) {
        Ok(m) if m.file_type().is_file() && m.len() == size => m
            .modified()
            .ok()
            .is_some_and(|here| Some(here) == system_time(t)),
        _ => false,
    }
}

/// Opens the plain file `parent/name` for reading, never through a symlink
/// and never blocking on a pipe put in its place; `None` when it is not a
/// plain file of `len` bytes (any more).
///
/// # Errors
/// Any error from opening or inspecting it.
pub fn open_existing(parent: &Path, name: &str, len: u64) -> io::Result<Option<File>> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        opts.custom_flags(flags.bits() as i32);
    }
    let file = match opts.open(parent.join(name)) {
        Ok(f) => f,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok((meta.file_type().is_file() && meta.len() == len).then_some(file))
}

/// Moves a finished (fsynced) partial over `parent/file_name`, replacing
/// what is there atomically: readers see the old file or the new one. A
/// symlink under that name is replaced, not followed; a folder (or anything
/// `rename` cannot replace) is left alone and the file takes a free name
/// instead, as with [`super::commit_partial`]. The caller fsyncs `parent`.
///
/// # Errors
/// Any error from renaming; the partial then stays where it is.
pub(super) fn replace(
    partial: &Path,
    parent: &Path,
    file_name: &str,
    how: &mut super::Placement,
) -> io::Result<PathBuf> {
    let target = parent.join(file_name);
    let in_the_way = std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_dir());
    if !in_the_way {
        match std::fs::rename(partial, &target) {
            Ok(()) => return Ok(target),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty
                ) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(path = %target.display(), "a folder has the file's name: it takes a free name");
    super::place(partial, parent, file_name, how)
}

/// A file's modification time as the offer carries it (`None` when it does
/// not fit).
#[must_use]
pub fn mtime_of(t: SystemTime) -> Option<Mtime> {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => Some(Mtime {
            secs: i64::try_from(d.as_secs()).ok()?,
            nanos: d.subsec_nanos(),
        }),
        Err(before) => {
            // Before 1970: whole seconds down, nanoseconds up.
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            Some(if d.subsec_nanos() == 0 {
                Mtime {
                    secs: -secs,
                    nanos: 0,
                }
            } else {
                Mtime {
                    secs: -secs - 1,
                    nanos: 1_000_000_000 - d.subsec_nanos(),
                }
            })
        }
    }
}

/// An offered modification time as the clock's type (`None` when this
/// system cannot represent it).
#[must_use]
pub fn system_time(t: Mtime) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(u64::from(t.nanos));
    if t.secs >= 0 {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(t.secs.unsigned_abs()))?
            .checked_add(nanos)
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(t.secs.unsigned_abs()))?
            .checked_add(nanos)
    }
}

/// Gives `file` the offered modification time (and the same access time);
/// a failure is only logged: the data is what matters.
pub fn set_mtime<S: std::fmt::Display>(file: &File, t: Mtime, shown: impl FnOnce() -> S) {
    let Some(t) = system_time(t) else {
        return;
    };
    let times = std::fs::FileTimes::new().set_modified(t).set_accessed(t);
    if let Err(e) = file.set_times(times) {
        tracing::warn!(file = %shown(), error = %e, "cannot set the modification time");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn times_convert_both_ways() {
        for t in [
            Mtime { secs: 0, nanos: 0 },
            Mtime {
                secs: 1_764_000_000,
                nanos: 999_999_999,
            },
            Mtime {
                secs: -1,
                nanos: 500,
            },
            Mtime {
                secs: -86_400,
                nanos: 0,
            },
        ] {
            assert_eq!(mtime_of(system_time(t).unwrap()), Some(t), "{t:?}");
        }
    }

    #[test]
    fn policies_parse_and_print() {
        for p in [
            OnCollision::Rename,
            OnCollision::SkipIdentical,
            OnCollision::Overwrite,
        ] {
            assert_eq!(p.as_str().parse::<OnCollision>(), Ok(p));
        }
        assert!("keep".parse::<OnCollision>().is_err());
        assert!(!OnCollision::Rename.replaces());
    }

    #[cfg(unix)]
    #[test]
    fn replacing_never_follows_a_link_nor_replaces_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        std::fs::write(&target, b"keep me").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("f")).unwrap();
        let partial = dir.path().join("f.lspart");
        std::fs::write(&partial, b"new").unwrap();
        let mut how = super::super::Placement::best();
        let placed = replace(&partial, dir.path(), "f", &mut how).unwrap();
        assert_eq!(placed, dir.path().join("f"));
        assert_eq!(std::fs::read(&placed).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&placed).unwrap().is_file());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        // The link is not opened as an existing file either.
        std::os::unix::fs::symlink(&target, dir.path().join("g")).unwrap();
        assert!(open_existing(dir.path(), "g", 7).unwrap().is_none());
        assert_eq!(existing_len(dir.path(), "g"), None);

        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(&partial, b"file").unwrap();
        let placed = replace(&partial, dir.path(), "d", &mut how).unwrap();
        assert_eq!(placed, dir.path().join("d (1)"));
        assert!(dir.path().join("d").is_dir());
    }
}
