//! Receiver-side filesystem safety.
//!
//! Paths from the network are first checked by
//! [`localstream_proto::names::validate_wire_path`]; this module then turns the
//! components into files under the destination without ever following a
//! symlink planted inside it and without ever overwriting anything:
//!
//! ```text
//!  ["a","b","f.txt"]
//!     prepare_parent(dest, ["a","b"])      dest/a, dest/a/b: real directories, created one by one
//!     create_partial(dest/a/b, "f.txt")    dest/a/b/f.txt.lspart (or f.txt.1.lspart, ...), create_new
//!     ... receive, verify hash, fsync ...
//!     commit_partial(part, dest/a/b, "f.txt")  -> dest/a/b/f.txt (or "f (1).txt", ...), no overwrite
//! ```
//!
//! The destination root itself may be a symlink chosen by the user.
//!
//! [`write_atomic`] (temporary file, fsync, rename, directory fsync) is here
//! too, shared by the identity and the peer store.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of files still being received.
pub const PARTIAL_SUFFIX: &str = ".lspart";
/// How many alternative names are tried before giving up.
pub const MAX_NAME_ATTEMPTS: u32 = 1000;

/// Creates the directories `components` under `dest_root`, one at a time, and
/// returns the last one (`dest_root` itself when `components` is empty).
///
/// `components` must come from `validate_wire_path` (without the file name).
/// An existing intermediate that is a symlink or not a directory is refused
/// with [`io::ErrorKind::PermissionDenied`]; a component that is empty, `.`,
/// `..` or contains a separator with [`io::ErrorKind::InvalidInput`] (defence
/// in depth). `dest_root` must exist and be a directory (following symlinks).
///
/// # Errors
/// As above, plus any error from creating a directory.
pub fn prepare_parent(dest_root: &Path, components: &[&str]) -> io::Result<PathBuf> {
    let meta = fs::metadata(dest_root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("destination {} is not usable: {e}", dest_root.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("destination {} is not a directory", dest_root.display()),
        ));
    }
    let mut dir = dest_root.to_path_buf();
    for component in components {
        check_component(component)?;
        dir.push(component);
        match fs::symlink_metadata(&dir) {
            Ok(m) => ensure_real_dir(&dir, &m)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_dir(&dir) {
                Ok(()) => {}
                // Someone else created it meanwhile: fine if it is a real directory.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    ensure_real_dir(&dir, &fs::symlink_metadata(&dir)?)?;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot create directory {}: {e}", dir.display()),
                    ));
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o755);
    }
    builder.create(dir)
}

fn ensure_real_dir(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to write through symbolic link {}", path.display()),
        ));
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} exists and is not a directory", path.display()),
        ));
    }
    Ok(())
}

/// Defence in depth: callers pass validated components, but a single
/// component must never be able to name anything outside its parent.
fn check_component(component: &str) -> io::Result<()> {
    let bad = component.is_empty()
        || component == "."
        || component == ".."
        || component.contains(['/', '\\', '\0'])
        || Path::new(component).components().count() != 1
        || Path::new(component).is_absolute();
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid path component {:?}",
                localstream_proto::names::escape_for_terminal(component)
            ),
        ));
    }
    Ok(())
}

/// Creates a new partial file `<file_name>.lspart` in `parent`, or
/// `<file_name>.1.lspart`, `<file_name>.2.lspart`, ... when taken. An existing
/// partial is never opened or truncated (a later resume feature may want it).
/// The file is opened for writing with mode 0644 on Unix.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a bad `file_name`,
/// [`io::ErrorKind::AlreadyExists`] when all candidate names are taken, or any
/// error from creating the file.
pub fn create_partial(parent: &Path, file_name: &str) -> io::Result<(PathBuf, File)> {
    check_component(file_name)?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    for n in 0..=MAX_NAME_ATTEMPTS {
        let name = if n == 0 {
            format!("{file_name}{PARTIAL_SUFFIX}")
        } else {
            format!("{file_name}.{n}{PARTIAL_SUFFIX}")
        };
        let path = parent.join(name);
        match opts.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", path.display()),
                ));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free partial file name for {:?} in {}",
            localstream_proto::names::escape_for_terminal(file_name),
            parent.display()
        ),
    ))
}

/// The `n`-th alternative final name: `report.pdf` -> `report (n).pdf`,
/// `.bashrc` -> `.bashrc (n)`, `noext` -> `noext (n)`,
/// `archive.tar.gz` -> `archive.tar (n).gz`.
fn numbered_name(file_name: &str, n: u32) -> String {
    match file_name.rfind('.') {
        Some(dot) if dot > 0 => {
            let (stem, ext) = file_name.split_at(dot);
            format!("{stem} ({n}){ext}")
        }
        _ => format!("{file_name} ({n})"),
    }
}

/// Moves a finished partial file to a free final name in `parent` and
/// returns that name's path. Tries `file_name`, then `stem (1).ext`,
/// `stem (2).ext`, ... up to [`MAX_NAME_ATTEMPTS`]. Never overwrites an
/// existing file: the partial is hard-linked to the candidate (atomic,
/// fails if taken) and then removed; where hard links are not supported it
/// falls back to a rename after checking that the candidate does not exist
/// (not atomic against a concurrent writer on such filesystems).
///
/// The caller must have fsynced the file; this function fsyncs `parent`
/// afterwards (Unix).
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] when every candidate is taken, or any
/// error from linking, renaming or syncing. On error the partial is left in
/// place and nothing appears under a final name.
/// The file is already under its final name (and its data was fsynced): a
/// failed directory fsync only weakens durability of the name, so it must not
/// turn a delivered file into a reported failure.
fn sync_dir_or_warn(dir: &Path) {
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "directory fsync failed");
    }
}

pub fn commit_partial(partial: &Path, parent: &Path, file_name: &str) -> io::Result<PathBuf> {
    check_component(file_name)?;
    let mut hard_links_work = true;
    for n in 0..=MAX_NAME_ATTEMPTS {
        let name = if n == 0 {
            file_name.to_owned()
        } else {
            numbered_name(file_name, n)
        };
        let candidate = parent.join(name);
        if hard_links_work {
            match fs::hard_link(partial, &candidate) {
                Ok(()) => {
                    // The data is safe under its final name; the partial is
                    // only a second link now.
                    if let Err(e) = fs::remove_file(partial) {
                        let _ = fs::remove_file(&candidate);
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot remove {}: {e}", partial.display()),
                        ));
                    }
                    sync_dir_or_warn(parent);
                    return Ok(candidate);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if partial_is_missing(partial) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot commit {}: {e}", partial.display()),
                    ));
                }
                // Unsupported (e.g. FAT, some network filesystems): fall back.
                Err(_) => hard_links_work = false,
            }
        }
        match fs::symlink_metadata(&candidate) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::rename(partial, &candidate).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot rename {} to {}: {e}",
                            partial.display(),
                            candidate.display()
                        ),
                    )
                })?;
                sync_dir_or_warn(parent);
                return Ok(candidate);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free file name for {:?} in {}",
            localstream_proto::names::escape_for_terminal(file_name),
            parent.display()
        ),
    ))
}

fn partial_is_missing(partial: &Path) -> bool {
    matches!(fs::symlink_metadata(partial), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Makes the entries of `dir` (new names, renames) durable. A no-op where
/// directories cannot be opened for syncing (not Unix).
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A failed step of [`write_atomic`]: what was being done, and to which path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct AtomicWriteError {
    /// What was being done ("cannot write", "cannot rename into place", ...).
    pub action: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

fn write_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> AtomicWriteError + use<> {
    let path = path.to_owned();
    move |source| AtomicWriteError {
        action,
        path,
        source,
    }
}

/// Replaces `dir/name` with `contents` atomically: a fresh temporary file in
/// `dir` (created with `mode` on Unix, never reusing an existing file), write,
/// fsync, rename over `name`, fsync of `dir`. Readers see either the old or
/// the new contents, never a mix; after a crash at most a stray
/// `.<name>.*.tmp` file is left. `name` must be a single path component.
///
/// # Errors
/// The step that failed, naming the file or directory concerned. On error
/// the temporary file is removed and `dir/name` is untouched, unless only
/// the final directory fsync failed (the new contents are then in place).
pub fn write_atomic(
    dir: &Path,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), AtomicWriteError> {
    let target = dir.join(name);
    check_component(name).map_err(write_err("cannot write", &target))?;
    let (tmp_path, mut file) = create_temp(dir, name, mode)?;
    let result = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_err("cannot write", &tmp_path))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp_path, &target).map_err(write_err("cannot rename into place", &target))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result?;
    sync_dir(dir).map_err(write_err("cannot sync directory", dir))
}

/// Creates a fresh temporary file next to the target, never reusing one.
fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, File), AtomicWriteError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut last_err = None;
    for _ in 0..16 {
        let tag: u64 = rand::random();
        let path = dir.join(format!(".{name}.{}.{tag:016x}.tmp", std::process::id()));
        match opts.open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(write_err("cannot create", &path)(e)),
        }
    }
    Err(AtomicWriteError {
        action: "cannot create a temporary file in",
        path: dir.to_owned(),
        source: last_err.unwrap_or_else(|| io::Error::other("name collisions")),
    })
}

/// Free bytes available to an unprivileged user on the filesystem holding
/// `dir`, or `None` where that cannot be determined (callers must then not
/// refuse a transfer because of it).
#[must_use]
#[cfg(unix)]
pub fn available_space(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Free bytes available on the filesystem holding `dir` (unknown here).
#[must_use]
#[cfg(not(unix))]
pub fn available_space(dir: &Path) -> Option<u64> {
    let _ = dir;
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered_name("report.pdf", 1), "report (1).pdf");
        assert_eq!(numbered_name(".bashrc", 1), ".bashrc (1)");
        assert_eq!(numbered_name("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered_name("noext", 3), "noext (3)");
        assert_eq!(numbered_name("日本.txt", 1), "日本 (1).txt");
    }

    #[test]
    fn prepare_parent_creates_directories() {
        let t = tmp();
        let p = prepare_parent(t.path(), &["a", "b", "c"]).unwrap();
        assert_eq!(p, t.path().join("a/b/c"));
        assert!(p.is_dir());
        // Idempotent.
        assert_eq!(prepare_parent(t.path(), &["a", "b", "c"]).unwrap(), p);
        assert_eq!(prepare_parent(t.path(), &[]).unwrap(), t.path());
    }

    #[test]
    fn prepare_parent_rejects_bad_components() {
        let t = tmp();
        for bad in ["..", ".", "", "x/y", "/etc", "a\0b", "a\\b"] {
            let err = prepare_parent(t.path(), &["ok", bad]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn prepare_parent_requires_directory_root() {
        let t = tmp();
        let missing = t.path().join("nope");
        assert!(prepare_parent(&missing, &["a"]).is_err());
        assert!(!missing.exists());
        let file = t.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = prepare_parent(&file, &["a"]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn intermediate_file_is_refused() {
        let t = tmp();
        fs::write(t.path().join("a"), b"x").unwrap();
        let err = prepare_parent(t.path(), &["a", "b"]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_intermediate_is_refused() {
        let t = tmp();
        let dest = t.path().join("dest");
        let outside = t.path().join("outside");
        fs::create_dir(&dest).unwrap();
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("a")).unwrap();
        let err = prepare_parent(&dest, &["a", "b"]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!outside.join("b").exists());
        // Deeper too.
        fs::create_dir(dest.join("x")).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("x/y")).unwrap();
        assert!(prepare_parent(&dest, &["x", "y"]).is_err());
        // Dangling symlink.
        std::os::unix::fs::symlink(t.path().join("gone"), dest.join("d")).unwrap();
        assert!(prepare_parent(&dest, &["d", "e"]).is_err());
        assert!(!t.path().join("gone").exists());
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_root_is_allowed() {
        let t = tmp();
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let p = prepare_parent(&link, &["a"]).unwrap();
        assert!(p.is_dir());
        assert!(real.join("a").is_dir());
    }

    #[test]
    fn partial_collision_picks_next_name() {
        let t = tmp();
        let (p0, mut f0) = create_partial(t.path(), "f.txt").unwrap();
        assert_eq!(p0, t.path().join("f.txt.lspart"));
        f0.write_all(b"first").unwrap();
        let (p1, _f1) = create_partial(t.path(), "f.txt").unwrap();
        assert_eq!(p1, t.path().join("f.txt.1.lspart"));
        let (p2, _f2) = create_partial(t.path(), "f.txt").unwrap();
        assert_eq!(p2, t.path().join("f.txt.2.lspart"));
        // The existing partial was not touched.
        drop(f0);
        assert_eq!(fs::read(&p0).unwrap(), b"first");
        assert!(create_partial(t.path(), "../x").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn partial_mode_is_0644() {
        use std::os::unix::fs::PermissionsExt;
        let t = tmp();
        let (p, _f) = create_partial(t.path(), "m").unwrap();
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // The umask may remove bits but never add them.
        assert_eq!(mode & !0o644, 0);
    }

    #[cfg(unix)]
    #[test]
    fn partial_does_not_follow_symlink() {
        let t = tmp();
        let target = t.path().join("target");
        fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, t.path().join("f.lspart")).unwrap();
        let (p, mut f) = create_partial(t.path(), "f").unwrap();
        assert_eq!(p, t.path().join("f.1.lspart"));
        f.write_all(b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    fn finished_partial(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let (p, mut f) = create_partial(dir, name).unwrap();
        f.write_all(content).unwrap();
        f.sync_all().unwrap();
        p
    }

    #[test]
    fn commit_naming_sequence() {
        let t = tmp();
        let dir = t.path();
        let mut got = Vec::new();
        for i in 0..4 {
            let p = finished_partial(dir, "report.pdf", format!("v{i}").as_bytes());
            let fin = commit_partial(&p, dir, "report.pdf").unwrap();
            assert!(!p.exists());
            assert_eq!(fs::read(&fin).unwrap(), format!("v{i}").as_bytes());
            got.push(fin.file_name().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            got,
            [
                "report.pdf",
                "report (1).pdf",
                "report (2).pdf",
                "report (3).pdf"
            ]
        );
        for name in [".bashrc", "noext"] {
            finished_partial(dir, name, b"a");
            let p = finished_partial(dir, name, b"b");
            commit_partial(&dir.join(format!("{name}.lspart")), dir, name).unwrap();
            let fin = commit_partial(&p, dir, name).unwrap();
            assert_eq!(fin, dir.join(format!("{name} (1)")));
        }
        // Only final names remain.
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(PARTIAL_SUFFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn commit_never_overwrites() {
        let t = tmp();
        let dir = t.path();
        fs::write(dir.join("a.txt"), b"precious").unwrap();
        fs::create_dir(dir.join("a (1).txt")).unwrap();
        let p = finished_partial(dir, "a.txt", b"incoming");
        let fin = commit_partial(&p, dir, "a.txt").unwrap();
        assert_eq!(fin, dir.join("a (2).txt"));
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"precious");
        assert!(dir.join("a (1).txt").is_dir());
        assert_eq!(fs::read(&fin).unwrap(), b"incoming");
    }

    #[cfg(unix)]
    #[test]
    fn commit_does_not_follow_symlink_names() {
        let t = tmp();
        let dir = t.path().join("d");
        fs::create_dir(&dir).unwrap();
        let target = t.path().join("target");
        fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("f")).unwrap();
        std::os::unix::fs::symlink(t.path().join("dangling"), dir.join("f (1)")).unwrap();
        let p = finished_partial(&dir, "f", b"new");
        let fin = commit_partial(&p, &dir, "f").unwrap();
        assert_eq!(fin, dir.join("f (2)"));
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(!t.path().join("dangling").exists());
    }

    #[test]
    fn commit_missing_partial_fails_cleanly() {
        let t = tmp();
        let err = commit_partial(&t.path().join("none.lspart"), t.path(), "none").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!t.path().join("none").exists());
    }

    #[test]
    fn write_atomic_replaces_and_cleans_up() {
        let t = tmp();
        write_atomic(t.path(), "f.json", b"one", 0o600).unwrap();
        write_atomic(t.path(), "f.json", b"two", 0o600).unwrap();
        assert_eq!(fs::read(t.path().join("f.json")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["f.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(t.path().join("f.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for bad in ["", "..", "a/b"] {
            let err = write_atomic(t.path(), bad, b"x", 0o600).unwrap_err();
            assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let missing = t.path().join("missing");
        let err = write_atomic(&missing, "f", b"x", 0o600).unwrap_err();
        assert_eq!(err.action, "cannot create");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn available_space_reports_a_plausible_figure() {
        let t = tmp();
        let free = available_space(t.path());
        #[cfg(unix)]
        assert!(free.is_some_and(|f| f > 0), "{free:?}");
        assert_eq!(available_space(&t.path().join("missing")), None);
    }
}
