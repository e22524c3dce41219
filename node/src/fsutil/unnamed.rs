//! Small files received without a partial name: Linux's `O_TMPFILE`.
//!
//! A small file of a group ([`super::CommitGroup`]) is written into a file
//! that has no name in its folder until the group's sync made it durable;
//! then it is linked under its final name (`linkat`, which fails when the
//! name is taken, as `renameat2(RENAME_NOREPLACE)` does). Against a named
//! partial this saves, per file, the partial's directory entry and its
//! removal, the lock and the two looks that make the lock safe, and the
//! folder's lock held meanwhile by the other thread's renames; nothing is
//! left behind by a crash or a cut (a small file is sent again whole, as
//! it would be anyway: it has no prefix worth resuming).
//!
//! Where the filesystem has no `O_TMPFILE` (NFS, FAT, FUSE, older kernels,
//! not Linux) files get a named partial as before. Where the link cannot
//! be made (no `/proc` and a kernel before 6.10, which allows `linkat` of
//! a descriptor only to privileged callers) the file is copied to a named
//! partial and placed from there, and later files are named from the start.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Folder;

/// Where a file being received is until it has its final name.
#[derive(Debug)]
pub enum Partial {
    /// A partial file under this name (empty: nothing on disk, the file
    /// went to standard output).
    Named(PathBuf),
    /// A file without a name yet, meant for this path (shown in messages):
    /// it is linked under a free name at its commit and vanishes with its
    /// last handle if it never is.
    Unnamed(PathBuf),
    /// A file under its final name in a folder that has no name yet (a
    /// staged folder, [`super::MadeFolders`]): it needs no move at its
    /// commit, and it is removed if it is dropped before it was kept, so
    /// that the folder gets its name with only durable, verified files in it.
    InPlace(InPlace),
}

/// The file of a [`Partial::InPlace`].
#[derive(Debug)]
pub struct InPlace {
    path: PathBuf,
    kept: bool,
}

impl InPlace {
    /// The file at `path`, removed when dropped until it is kept.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        InPlace { path, kept: false }
    }

    /// It is complete and durable: it stays.
    pub fn keep(&mut self) -> PathBuf {
        self.kept = true;
        self.path.clone()
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Partial {
    /// The path to show for it: the partial's, or the one an unnamed file
    /// is for.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Partial::Named(p) | Partial::Unnamed(p) => p,
            Partial::InPlace(f) => &f.path,
        }
    }

    /// Removes what is on disk of it (an unnamed file goes with its handle).
    pub fn remove(&self) {
        match self {
            Partial::Named(p) | Partial::InPlace(InPlace { path: p, .. })
                if !p.as_os_str().is_empty() =>
            {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

/// Whether unnamed files can still be linked in this process (cleared the
/// first time a link could not be made).
static LINKABLE: AtomicBool = AtomicBool::new(true);

/// A new file without a name in the folder `parent`, open for reading and
/// writing (mode 0644 less the umask); `Ok(None)` where the filesystem or
/// the system cannot make one, or an earlier one could not be linked.
///
/// # Errors
/// Any other error from creating it (a full disk, a read-only or missing
/// folder, no permission).
#[cfg(target_os = "linux")]
pub fn create(folder: &mut Folder, parent: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags, openat};
    use rustix::io::Errno;
    if !LINKABLE.load(Ordering::Relaxed) {
        return Ok(None);
    }
    match openat(
        folder.at(parent)?,
        ".",
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // The filesystem lacks it, or the kernel (which then takes the
        // flag for O_DIRECTORY alone).
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn create(_folder: &mut Folder, _parent: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

/// A new file `file_name` in the staged folder `parent` (its final name
/// there), open for reading and writing (mode 0644 less the umask);
/// `Ok(None)` when the name is taken (two names of an offer that one
/// filesystem takes for the same, as a case-insensitive one does): the
/// caller then makes a partial that takes a free name.
///
/// # Errors
/// Any other error from creating it.
#[cfg(target_os = "linux")]
pub fn create_in_place(
    folder: &mut Folder,
    parent: &Path,
    file_name: &str,
) -> io::Result<Option<(Partial, File)>> {
    use rustix::fs::{Mode, OFlags, openat};
    use rustix::io::Errno;
    super::check_component(file_name)?;
    match openat(
        folder.at(parent)?,
        file_name,
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o644),
    ) {
        Ok(fd) => Ok(Some((
            Partial::InPlace(InPlace::new(super::joined(parent, file_name))),
            File::from(fd),
        ))),
        Err(Errno::EXIST) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn create_in_place(
    _folder: &mut Folder,
    _parent: &Path,
    _file_name: &str,
) -> io::Result<Option<(Partial, File)>> {
    Ok(None)
}

/// What one attempt to link an unnamed file under a name did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Linked {
    /// It has the name now.
    Placed,
    /// Something has that name.
    Taken,
    /// The system cannot link it: the caller copies it to a named partial.
    Unsupported,
}

/// Links the unnamed `file` under `name` in `parent` (never replacing
/// anything).
#[cfg(target_os = "linux")]
pub(super) fn link(
    file: &File,
    folder: &mut Folder,
    parent: &Path,
    name: &str,
) -> io::Result<Linked> {
    use rustix::fs::{AtFlags, CWD, linkat};
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;
    let at = folder.at(parent)?;
    // Linux 6.10+ (or a privileged caller): the descriptor itself.
    match linkat(file, "", at, name, AtFlags::EMPTY_PATH) {
        Ok(()) => return Ok(Linked::Placed),
        Err(Errno::EXIST) => return Ok(Linked::Taken),
        Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    // Else through its /proc link.
    let proc_link = format!("/proc/self/fd/{}", file.as_raw_fd());
    match linkat(CWD, proc_link.as_str(), at, name, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(Linked::Placed),
        Err(Errno::EXIST) => Ok(Linked::Taken),
        Err(e @ Errno::NOENT) if std::fs::metadata(parent).is_err() => {
            // The folder is gone: a real error, not the system's limit.
            Err(e.into())
        }
        Err(Errno::NOENT | Errno::PERM | Errno::XDEV | Errno::INVAL | Errno::ACCESS) => {
            if LINKABLE.swap(false, Ordering::Relaxed) {
                tracing::debug!(
                    "unnamed files cannot be linked here: small files get partial names"
                );
            }
            Ok(Linked::Unsupported)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn link(
    _file: &File,
    _folder: &mut Folder,
    _parent: &Path,
    _name: &str,
) -> io::Result<Linked> {
    Ok(Linked::Unsupported)
}

/// Copies the unnamed `file` (its bytes, modification time and mode) to a
/// new named partial for `file_name` in `parent`, durably: for a system
/// where it cannot be linked.
pub(super) fn copy_to_named(file: &File, parent: &Path, file_name: &str) -> io::Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let (path, mut named) = super::create_partial(parent, file_name)?;
    let copied = (|| {
        let mut from = file.try_clone()?;
        from.seek(SeekFrom::Start(0))?;
        io::copy(&mut from, &mut named)?;
        let meta = file.metadata()?;
        named.set_permissions(meta.permissions())?;
        if let Ok(t) = meta.modified() {
            named.set_modified(t)?;
        }
        named.sync_all()
    })();
    match copied {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_made_in_place_goes_unless_kept_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::default();
        let (partial, mut file) = create_in_place(&mut folder, dir.path(), "a.txt")
            .unwrap()
            .expect("made");
        std::io::Write::write_all(&mut file, b"half").unwrap();
        assert!(dir.path().join("a.txt").exists());
        // Taken (two names one filesystem takes for the same): not made.
        assert!(
            create_in_place(&mut folder, dir.path(), "a.txt")
                .unwrap()
                .is_none()
        );
        drop(partial);
        assert!(
            !dir.path().join("a.txt").exists(),
            "dropped unkept: removed"
        );
        let (partial, _file) = create_in_place(&mut folder, dir.path(), "b.txt")
            .unwrap()
            .expect("made");
        let Partial::InPlace(mut f) = partial else {
            panic!("{partial:?}")
        };
        assert_eq!(f.keep(), dir.path().join("b.txt"));
        drop(f);
        assert!(dir.path().join("b.txt").exists(), "kept: stays");
    }

    #[test]
    fn an_unnamed_file_gets_its_name_only_when_linked_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut folder = Folder::default();
        let mut file = create(&mut folder, dir.path())
            .unwrap()
            .expect("O_TMPFILE in the temporary folder");
        file.write_all(b"unnamed").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        std::fs::write(dir.path().join("taken"), b"old").unwrap();
        assert_eq!(
            link(&file, &mut folder, dir.path(), "taken").unwrap(),
            Linked::Taken
        );
        assert_eq!(std::fs::read(dir.path().join("taken")).unwrap(), b"old");
        assert_eq!(
            link(&file, &mut Folder::default(), dir.path(), "free").unwrap(),
            Linked::Placed
        );
        assert_eq!(std::fs::read(dir.path().join("free")).unwrap(), b"unnamed");
        // The folder held open is the one asked for, not the last one.
        let other = tempfile::tempdir().unwrap();
        let mut second = create(&mut folder, other.path()).unwrap().unwrap();
        second.write_all(b"second").unwrap();
        assert_eq!(
            link(&second, &mut folder, other.path(), "free").unwrap(),
            Linked::Placed
        );
        assert_eq!(std::fs::read(other.path().join("free")).unwrap(), b"second");
        assert_eq!(std::fs::read(dir.path().join("free")).unwrap(), b"unnamed");
        // A folder gone is an error, not a file made elsewhere.
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let third = create(&mut folder, &gone).unwrap().unwrap();
        std::fs::remove_dir(&gone).unwrap();
        assert!(link(&third, &mut folder, &gone, "f").is_err());
        assert!(!gone.exists());
    }

    #[test]
    fn a_copy_keeps_bytes_time_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut file = create(&mut Folder::default(), dir.path())
            .unwrap()
            .expect("O_TMPFILE in the temporary folder");
        file.write_all(b"copied").unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        file.set_modified(t).unwrap();
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let path = copy_to_named(&file, dir.path(), "f").unwrap();
        assert!(
            path.to_string_lossy()
                .ends_with(super::super::PARTIAL_SUFFIX)
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"copied");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.modified().unwrap(), t);
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    }
}
