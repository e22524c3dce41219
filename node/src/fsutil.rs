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
//! Small files go through a [`CommitGroup`] instead: verified partials wait,
//! one `syncfs` makes them all durable, then each gets its final name the same
//! way and each directory is fsynced once. Either way a file appears under its
//! final name only once its content is verified and on disk.
//!
//! The destination root itself may be a symlink chosen by the user.
//!
//! [`write_atomic`] (temporary file, fsync, rename, directory fsync) is here
//! too, shared by the identity and the peer store.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod collision;
mod folder;
pub mod resumable;
pub mod stale;
pub mod unnamed;
pub use folder::Folder;
pub mod writeback;

pub use unnamed::Partial;

/// Suffix of files still being received.
pub const PARTIAL_SUFFIX: &str = ".lspart";
/// How many alternative names are tried before giving up.
pub const MAX_NAME_ATTEMPTS: u32 = 1000;
/// Longest file name the filesystems we care about accept, in bytes.
const NAME_MAX: usize = localstream_proto::names::MAX_COMPONENT_BYTES;

/// `parent/name` in one allocation (`Path::join` takes two: a copy of
/// `parent`, then a larger one for the name), for paths made per file.
#[must_use]
pub fn joined(parent: &Path, name: &str) -> PathBuf {
    let mut path = PathBuf::with_capacity(parent.as_os_str().len() + 1 + name.len());
    path.push(parent);
    path.push(name);
    path
}

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
    MadeFolders::default().prepare(dest_root, components)
}

/// The folders [`MadeFolders::prepare`] made or found to be real folders,
/// for the folders of one offer: each is looked at once, not once for every
/// folder and file below it (a tree of 6,000 files in 1,200 folders took
/// 13,000 looks, 38 ms on tmpfs, while the sender waited for the Answer).
/// What it holds was checked when it was added: a folder replaced by a
/// link since is not seen again, as with any check made before the files
/// are written.
#[derive(Debug, Default)]
pub struct MadeFolders {
    /// The destination whose folders these are, once it was checked.
    root: Option<PathBuf>,
    /// Their paths, as bytes (hashed as they are, not component by
    /// component as a `PathBuf` is), and where each is now: the same path,
    /// or one inside a staged folder (with that folder's index in `staged`).
    made: std::collections::HashMap<std::ffi::OsString, (PathBuf, Option<usize>)>,
    /// The folders it created (not found), in the order made: what
    /// [`MadeFolders::undo`] removes when the offer they were made for is
    /// refused after all.
    created: Vec<PathBuf>,
    /// The key of hidden names, when new folders are staged ([`MadeFolders::staging`]).
    stage: Option<u64>,
    /// The folders made under a hidden name, to be published.
    staged: Vec<StagedFolder>,
    /// The names they are for, kept from other batches until published.
    reserved: Vec<Reserved>,
}

/// A folder made under a hidden name (`.<name>.<16 hex>.lspart`), with the
/// files of a batch written in it under their own names; it gets its name
/// once they are durable ([`Staged::publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFolder {
    /// Where it is until then.
    pub hidden: PathBuf,
    /// The path it is for.
    pub named: PathBuf,
}

impl MadeFolders {
    /// Folders that stages the new folders it makes: each outermost one is
    /// made under a hidden name keyed by `key` (the same for every
    /// `MadeFolders` of one batch, so that two threads making folders side
    /// by side agree), and what is below it inside it.
    #[must_use]
    pub fn staging(key: u64) -> Self {
        MadeFolders {
            stage: Some(key),
            ..MadeFolders::default()
        }
    }

    /// [`prepare_parent`], skipping what this already made or checked.
    ///
    /// # Errors
    /// As [`prepare_parent`].
    pub fn prepare(&mut self, dest_root: &Path, components: &[&str]) -> io::Result<PathBuf> {
        self.prepare_staged(dest_root, components)
            .map(|(dir, _)| dir)
    }

    /// [`MadeFolders::prepare`]: where the folder is now, and the index of
    /// the staged folder it is in ([`MadeFolders::into_staged`]), if any.
    ///
    /// # Errors
    /// As [`prepare_parent`].
    pub fn prepare_staged(
        &mut self,
        dest_root: &Path,
        components: &[&str],
    ) -> io::Result<(PathBuf, Option<usize>)> {
        if self.root.as_deref() != Some(dest_root) {
            check_root(dest_root)?;
            self.made.clear();
            self.root = Some(dest_root.to_owned());
        }
        for component in components {
            check_component(component)?;
        }
        let mut named = dest_root.to_path_buf();
        named.extend(components);
        if let Some(at) = self.made.get(named.as_os_str()) {
            return Ok(at.clone());
        }
        let mut named = dest_root.to_path_buf();
        let mut dir = dest_root.to_path_buf();
        let mut inside = None;
        for component in components {
            named.push(component);
            if let Some((at, staged)) = self.made.get(named.as_os_str()) {
                dir.clone_from(at);
                inside = *staged;
                continue;
            }
            let shown = named.strip_prefix(dest_root).unwrap_or(&named).to_owned();
            let staged_as = match self.stage {
                Some(key)
                    if inside.is_none()
                        && component.len() <= STAGED_NAME_MAX
                        && is_missing(&named) =>
                {
                    reserve(&named, key).map(|r| (key, r))
                }
                _ => None,
            };
            if let Some((key, reserved)) = staged_as {
                dir.push(format!(".{component}.{key:016x}{PARTIAL_SUFFIX}"));
                if prepare_one_as(&dir, &shown)? {
                    self.created.push(dir.clone());
                }
                inside = Some(self.staged.len());
                self.staged.push(StagedFolder {
                    hidden: dir.clone(),
                    named: reserved.0.clone(),
                });
                self.reserved.push(reserved);
            } else {
                dir.push(component);
                if prepare_one_as(&dir, &shown)? {
                    self.created.push(dir.clone());
                }
            }
            self.made
                .insert(named.clone().into_os_string(), (dir.clone(), inside));
        }
        Ok((dir, inside))
    }

    /// Takes in what `other` made or checked (below the same destination):
    /// its staged folders come after this one's (indexes into them move by
    /// the length of this one's, returned; one that both made, side by
    /// side, is kept once, at this one's index).
    pub fn absorb(&mut self, other: MadeFolders) -> Vec<usize> {
        if self.root.is_none() {
            let moved = (0..other.staged.len()).collect();
            *self = other;
            return moved;
        }
        if other.root != self.root {
            return Vec::new();
        }
        let moved: Vec<usize> = other
            .staged
            .into_iter()
            .map(|f| match self.staged.iter().position(|s| *s == f) {
                Some(i) => i,
                None => {
                    self.staged.push(f);
                    self.staged.len() - 1
                }
            })
            .collect();
        for (k, (at, staged)) in other.made {
            self.made.entry(k).or_insert((at, staged.map(|i| moved[i])));
        }
        self.created.extend(other.created);
        self.reserved.extend(other.reserved);
        moved
    }

    /// Removes the folders it created, deepest first, where they are still
    /// empty (a folder that holds anything now, or is no longer a folder,
    /// stays): for an offer refused after its folders were made.
    pub fn undo(self) {
        let mut created = self.created;
        // Deeper paths are longer: each after its parent when made.
        created.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for dir in created {
            let _ = fs::remove_dir(&dir);
        }
    }

    /// The folders it staged, to publish once their files are durable.
    #[must_use]
    pub fn into_staged(self) -> Staged {
        Staged {
            folders: self.staged,
            published: std::sync::atomic::AtomicBool::new(false),
            _reserved: self.reserved,
        }
    }
}

/// The folder paths that batches in progress in this process stage folders
/// for, with the key of the batch that staged each and how many of its
/// [`MadeFolders`] hold it ([`Reserved`]).
fn staging() -> std::sync::MutexGuard<'static, std::collections::HashMap<PathBuf, (u64, usize)>> {
    static STAGING: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<PathBuf, (u64, usize)>>,
    > = std::sync::LazyLock::new(Default::default);
    // A map of names: nothing a panic could leave half-done.
    STAGING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A folder path kept for one batch's staged folder until it is published
/// (or given up): released when the last holder drops it.
#[derive(Debug)]
struct Reserved(PathBuf);

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut m = staging();
        if let Some((_, holders)) = m.get_mut(&self.0) {
            *holders -= 1;
            if *holders == 0 {
                m.remove(&self.0);
            }
        }
    }
}

/// The path a new folder `named` (missing) is staged for by the batch of
/// `key`: `named` itself, unless another batch in progress (another
/// sender's, at the same time) stages a folder for it; then the first of
/// `name (1)`, `name (2)`, ... that is missing and nobody stages, as
/// publishing would have named it, so that both report where their files
/// are. The batch's two threads agree: the same key shares the path.
fn reserve(named: &Path, key: u64) -> Option<Reserved> {
    let (parent, name) = (named.parent()?, named.file_name()?.to_str()?);
    let mut m = staging();
    for n in 0..=MAX_NAME_ATTEMPTS {
        let candidate = if n == 0 {
            named.to_owned()
        } else {
            parent.join(numbered_name(name, n))
        };
        match m.get_mut(&candidate) {
            Some((k, holders)) if *k == key => {
                *holders += 1;
                return Some(Reserved(candidate));
            }
            Some(_) => {}
            None if n == 0 || is_missing(&candidate) => {
                m.insert(candidate.clone(), (key, 1));
                return Some(Reserved(candidate));
            }
            None => {}
        }
    }
    None
}

/// The longest folder name that is staged (a hidden name adds 25 bytes to
/// it, and a name has at most 255); a longer one is made under its own name.
const STAGED_NAME_MAX: usize = 255 - 25;

fn is_missing(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// The staged folders of one batch ([`MadeFolders::into_staged`]): each is
/// given its name once, by [`Staged::publish`] or, at the latest, when the
/// last holder drops it (the writer holds it until it has removed what it
/// did not finish, so a folder never gets its name with a file in it that
/// is not durable and verified).
#[derive(Debug, Default)]
pub struct Staged {
    folders: Vec<StagedFolder>,
    published: std::sync::atomic::AtomicBool,
    /// Their names, kept from other batches until then.
    _reserved: Vec<Reserved>,
}

impl Staged {
    /// Whether nothing was staged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.folders.is_empty()
    }

    /// What `path`, inside the staged folder `i`, is called once published.
    #[must_use]
    pub fn named(&self, i: usize, path: &Path) -> PathBuf {
        match self.folders.get(i) {
            Some(f) => match path.strip_prefix(&f.hidden) {
                Ok(rest) if rest.as_os_str().is_empty() => f.named.clone(),
                Ok(rest) => f.named.join(rest),
                Err(_) => path.to_owned(),
            },
            None => path.to_owned(),
        }
    }

    /// Gives each staged folder its name (or, when something took the name
    /// meanwhile, the first free one of `name (1)`, ...), then makes the
    /// names durable (a sync of each parent). Once: later calls do nothing.
    pub fn publish(&self) {
        use std::sync::atomic::Ordering;
        if self.folders.is_empty() || self.published.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut parents: Vec<&Path> = Vec::new();
        let mut how = Placement::best();
        for f in &self.folders {
            let (Some(parent), Some(name)) = (f.named.parent(), f.named.file_name()) else {
                continue;
            };
            let name = name.to_string_lossy();
            match place(&f.hidden, parent, &name, &mut how) {
                Ok(placed) if placed != f.named => tracing::warn!(
                    folder = %f.named.display(),
                    placed = %placed.display(),
                    "a folder of that name appeared during the transfer: the received one has another name"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    folder = %f.named.display(),
                    hidden = %f.hidden.display(),
                    error = %e,
                    "cannot give the received folder its name: it stays under its hidden name"
                ),
            }
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        for dir in parents {
            sync_dir_or_warn(dir);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.publish();
    }
}

/// `dest_root` must exist and be a directory (following symlinks).
fn check_root(dest_root: &Path) -> io::Result<()> {
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
    Ok(())
}

/// `dir` (its parent a real directory) a real directory: made (`mkdir`
/// does not follow a link in its last component: `true`), or found to be
/// one (`false`). Errors name it `shown` (its path inside the destination
/// only: they may go to the peer).
fn prepare_one_as(dir: &Path, shown: &Path) -> io::Result<bool> {
    match create_dir(dir) {
        Ok(()) => Ok(true),
        // There already, or someone else created it meanwhile: fine if it
        // is a real directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            ensure_real_dir(shown, &fs::symlink_metadata(dir)?).map(|()| false)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot create directory {}: {e}", shown.display()),
        )),
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let builder = fs::DirBuilder::new();
    #[cfg(unix)]
    let builder = {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = builder;
        b.mode(0o755);
        b
    };
    builder.create(dir)
}

/// `shown` is how errors name the directory.
fn ensure_real_dir(shown: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to write through symbolic link {}",
                shown.display()
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} exists and is not a directory", shown.display()),
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
/// `archive.tar.gz` -> `archive.tar (n).gz`. A name that would pass 255
/// bytes (a long name, often in CJK scripts at 3 bytes a character) has its
/// stem cut on a character boundary to fit; an extension too long to keep
/// is cut with it, as part of the name.
fn numbered_name(file_name: &str, n: u32) -> String {
    let mark = format!(" ({n})");
    let (stem, ext) = match file_name.rfind('.') {
        Some(dot) if dot > 0 && file_name.len() - dot + mark.len() < NAME_MAX => {
            file_name.split_at(dot)
        }
        _ => (file_name, ""),
    };
    let room = NAME_MAX - mark.len() - ext.len();
    let mut end = stem.len().min(room);
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}{ext}", &stem[..end])
}

/// Moves a finished partial file to a free final name in `parent` and
/// returns that name's path. Tries `file_name`, then `stem (1).ext`,
/// `stem (2).ext`, ... up to [`MAX_NAME_ATTEMPTS`]. Never overwrites an
/// existing file, directory or symlink: see [`Placement`] for how.
///
/// The caller must have fsynced the file; this function fsyncs `parent`
/// afterwards (Unix). For many small files [`CommitGroup`] does the same
/// with one filesystem sync for all of them.
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] when every candidate is taken, or any
/// error from renaming, linking or removing. On error the partial is left in
/// place and nothing appears under a final name.
pub fn commit_partial(partial: &Path, parent: &Path, file_name: &str) -> io::Result<PathBuf> {
    check_component(file_name)?;
    let path = place(partial, parent, file_name, &mut Placement::best())?;
    sync_dir_or_warn(parent);
    Ok(path)
}

/// Like [`commit_partial`], but what has the name is replaced (atomically;
/// see `collision::replace`): `listen --on-collision overwrite` and
/// `skip-identical`.
///
/// # Errors
/// As [`commit_partial`].
pub fn commit_replacing(partial: &Path, parent: &Path, file_name: &str) -> io::Result<PathBuf> {
    check_component(file_name)?;
    let path = collision::replace(partial, parent, file_name, &mut Placement::best())?;
    sync_dir_or_warn(parent);
    Ok(path)
}

/// Gives the unnamed file `file` ([`unnamed`]), already durable, the first
/// free name based on `file_name` in `parent`, then makes the name durable.
///
/// # Errors
/// An invalid `file_name`, no free name, or any error from linking it.
pub fn commit_unnamed(file: &File, parent: &Path, file_name: &str) -> io::Result<PathBuf> {
    check_component(file_name)?;
    let path = place_unnamed(
        file,
        &mut Folder::default(),
        parent,
        file_name,
        &mut Placement::best(),
    )?;
    sync_dir_or_warn(parent);
    Ok(path)
}

/// The file is already under its final name (and its data was synced): a
/// failed directory fsync only weakens durability of the name, so it must not
/// turn a delivered file into a reported failure.
fn sync_dir_or_warn(dir: &Path) {
    if let Err(e) = sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "directory fsync failed");
    }
}

/// Gives `partial` the first free name among `file_name`, `stem (1).ext`, ...
/// in `parent`, starting with method `how`. When a lesser method had to
/// be used and worked, `how` becomes that method for the caller's next files
/// (the filesystem lacks the better one); a failure leaves it as it was.
fn place(
    partial: &Path,
    parent: &Path,
    file_name: &str,
    how: &mut Placement,
) -> io::Result<PathBuf> {
    let mut method = *how;
    for n in 0..=MAX_NAME_ATTEMPTS {
        let candidate = if n == 0 {
            parent.join(file_name)
        } else {
            parent.join(numbered_name(file_name, n))
        };
        loop {
            match method.attempt(partial, &candidate)? {
                Attempt::Placed => {
                    *how = method;
                    return Ok(candidate);
                }
                Attempt::Taken => break,
                Attempt::Unsupported => {
                    let Some(next) = method.fallback() else {
                        return Err(io::Error::other(format!(
                            "cannot move {} into place",
                            partial.display()
                        )));
                    };
                    tracing::debug!(from = ?method, to = ?next, dir = %parent.display(), "placement unsupported here, falling back");
                    method = next;
                }
            }
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

/// Gives the unnamed file `file` ([`unnamed`]) the first free name among
/// `file_name`, `stem (1).ext`, ... in `parent` (a link that fails when the
/// name is taken); where it cannot be linked, a durable named copy is placed
/// instead, with `how`.
fn place_unnamed(
    file: &File,
    folder: &mut Folder,
    parent: &Path,
    file_name: &str,
    how: &mut Placement,
) -> io::Result<PathBuf> {
    for n in 0..=MAX_NAME_ATTEMPTS {
        let numbered;
        let candidate = if n == 0 {
            file_name
        } else {
            numbered = numbered_name(file_name, n);
            &numbered
        };
        match unnamed::link(file, folder, parent, candidate)? {
            unnamed::Linked::Placed => return Ok(joined(parent, candidate)),
            unnamed::Linked::Taken => {}
            unnamed::Linked::Unsupported => {
                let partial = unnamed::copy_to_named(file, parent, file_name)?;
                return place(&partial, parent, file_name, how).inspect_err(|_| {
                    let _ = fs::remove_file(&partial);
                });
            }
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

/// How a finished file gets its final name without overwriting anything,
/// best first. A method the filesystem refuses is replaced by the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `renameat2(RENAME_NOREPLACE)`: one atomic syscall that fails if the
    /// name is taken (Linux 3.15+ on ext4, xfs, btrfs, tmpfs, f2fs, ...).
    #[cfg(target_os = "linux")]
    RenameNoReplace,
    /// A hard link under the new name (atomic, fails if taken), then removal
    /// of the partial: two syscalls.
    Link,
    /// Where neither works (e.g. FAT, some network filesystems): check that
    /// the name is free, then rename. Not atomic against a concurrent writer.
    CheckThenRename,
}

/// The outcome of one attempt at one candidate name.
#[derive(Debug)]
enum Attempt {
    Placed,
    Taken,
    Unsupported,
}

impl Placement {
    fn best() -> Self {
        #[cfg(target_os = "linux")]
        return Placement::RenameNoReplace;
        #[cfg(not(target_os = "linux"))]
        Placement::Link
    }

    fn fallback(self) -> Option<Self> {
        match self {
            #[cfg(target_os = "linux")]
            Placement::RenameNoReplace => Some(Placement::Link),
            Placement::Link => Some(Placement::CheckThenRename),
            Placement::CheckThenRename => None,
        }
    }

    fn attempt(self, partial: &Path, candidate: &Path) -> io::Result<Attempt> {
        match self {
            #[cfg(target_os = "linux")]
            Placement::RenameNoReplace => {
                use rustix::fs::{CWD, RenameFlags, renameat_with};
                use rustix::io::Errno;
                match renameat_with(CWD, partial, CWD, candidate, RenameFlags::NOREPLACE) {
                    Ok(()) => Ok(Attempt::Placed),
                    Err(Errno::EXIST) => Ok(Attempt::Taken),
                    // The filesystem or kernel lacks the flag (or a seccomp
                    // filter refuses the syscall).
                    Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM)
                        if !partial_is_missing(partial) =>
                    {
                        Ok(Attempt::Unsupported)
                    }
                    Err(e) => {
                        let e = io::Error::from(e);
                        Err(io::Error::new(
                            e.kind(),
                            format!(
                                "cannot rename {} to {}: {e}",
                                partial.display(),
                                candidate.display()
                            ),
                        ))
                    }
                }
            }
            Placement::Link => match fs::hard_link(partial, candidate) {
                Ok(()) => {
                    // The data is safe under its final name; the partial is
                    // only a second link now.
                    if let Err(e) = fs::remove_file(partial) {
                        let _ = fs::remove_file(candidate);
                        return Err(io::Error::new(
                            e.kind(),
                            format!("cannot remove {}: {e}", partial.display()),
                        ));
                    }
                    Ok(Attempt::Placed)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Attempt::Taken),
                Err(e) if partial_is_missing(partial) => Err(io::Error::new(
                    e.kind(),
                    format!("cannot commit {}: {e}", partial.display()),
                )),
                // Unsupported (e.g. FAT, some network filesystems).
                Err(_) => Ok(Attempt::Unsupported),
            },
            Placement::CheckThenRename => match fs::symlink_metadata(candidate) {
                Ok(_) => Ok(Attempt::Taken),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::rename(partial, candidate).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!(
                                "cannot rename {} to {}: {e}",
                                partial.display(),
                                candidate.display()
                            ),
                        )
                    })?;
                    Ok(Attempt::Placed)
                }
                Err(e) => Err(e),
            },
        }
    }
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

/// Verified files smaller than this are committed in a [`CommitGroup`]; larger
/// ones one by one with their own fsync, whose cost is then small next to
/// writing the file (1 MiB: a group of such files never holds much unsynced
/// data, and a file this small takes about as long to fsync as to write).
pub const GROUP_FILE_LIMIT: u64 = 1024 * 1024;
/// A group is committed once it holds this many files,
pub const GROUP_MAX_FILES: usize = 256;
/// or this many bytes,
pub const GROUP_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// or its first file has waited this long.
pub const GROUP_MAX_WAIT: Duration = Duration::from_secs(1);
/// A full group whose committer is still busy with the group before keeps
/// taking files, up to this many (fewer where the process may open few
/// files: each member holds its handle; see [`CommitGroup::is_at_limit`]),
/// so that a slow filesystem sync costs fewer, larger groups instead of a
/// writer waiting for each one,
pub const GROUP_BUSY_MAX_FILES: usize = 4096;
/// or this many bytes.
pub const GROUP_BUSY_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// The most files a group holds while the committer is busy:
/// [`GROUP_BUSY_MAX_FILES`], or an eighth of the open-file limit where that
/// is less (never below [`GROUP_MAX_FILES`]: two groups of those always fit
/// next to a listener's other handles).
fn busy_max_files() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| (open_file_limit() / 8).clamp(GROUP_MAX_FILES, GROUP_BUSY_MAX_FILES))
}

/// The soft limit on open files (`RLIMIT_NOFILE`).
#[cfg(target_os = "linux")]
fn open_file_limit() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Not looked up elsewhere: groups stay at [`GROUP_MAX_FILES`].
#[cfg(not(target_os = "linux"))]
fn open_file_limit() -> usize {
    0
}

/// Raises the soft limit on open files to the hard limit (at most 65,536),
/// as a receiver holding groups of files wants; a failure changes nothing.
/// Called once before the first group (the limit is read once).
#[cfg(target_os = "linux")]
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    const WANTED: u64 = 65_536;
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(WANTED, |max| max.min(WANTED));
    if limit.current.is_some_and(|cur| cur < target) {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "open-file limit not raised");
        }
    }
}

/// Nothing to raise elsewhere.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_file_limit() {}

/// A write past the file-size limit (`ulimit -f`) fails with "File too
/// large", as on a filesystem whose files cannot be that large (FAT32: 4
/// GiB), instead of SIGXFSZ ending the process: that file fails alone (the
/// writer drops it) and the listener goes on. Call within the runtime.
#[cfg(unix)]
pub fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    // tokio's handler stays installed for the life of the process.
    let xfsz = SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    if let Err(e) = signal(xfsz) {
        tracing::debug!(error = %e, "SIGXFSZ is not caught");
    }
}

/// No such signal elsewhere.
#[cfg(not(unix))]
pub fn survive_file_size_limit() {}

/// Verified partial files that are made durable together, then moved to
/// their final names: one filesystem sync instead of one fsync per file.
///
/// ```text
///  push(a) push(b) ... push(z)        verified, written, closed: still *.lspart
///  commit()  syncfs, once per filesystem       the data of a..z is on disk
///            renameat2(NOREPLACE) a, b, ... z  in push order, never overwriting
///            fsync of each parent, once        the new names are on disk
///            (or, for several parents on a filesystem synced whole, one
///            more syncfs there)
/// ```
///
/// A file alone on its filesystem in the group is fsynced instead of the
/// `syncfs` (one small file sent must not wait for everything other
/// programs have written there).
///
/// A crash at any point leaves partial files or complete final files, and a
/// file is reported saved only once its data is durable. Of the pushed files
/// only one handle per filesystem stays open: the group's first file there,
/// opened before any of the group's data on that filesystem was written, so
/// that `syncfs` on it reports every writeback error since (Linux 5.8+).
///
/// Where a group sync cannot be trusted to report errors (not Linux, Linux
/// before 5.8, a filesystem not known to implement `syncfs` fully, such as
/// FUSE or NFS) each file is fsynced when pushed, and only the moves and the
/// directory syncs wait for the group. If `syncfs` fails, every file of that
/// filesystem in the group stays a partial file and is reported failed (an
/// fsync through a new handle could miss the lost writeback error); files
/// on other filesystems are not held up.
///
/// Dropping a group without [`CommitGroup::commit`] leaves its files as
/// partial files.
#[derive(Debug)]
pub struct CommitGroup<'a> {
    members: Vec<Member<'a>>,
    bytes: u64,
    since: Option<Instant>,
    filesystems: Vec<Filesystem>,
    placement: Placement,
    sync_fs: fn(&File) -> io::Result<()>,
    /// The last parent a member was pushed from and its filesystem's index:
    /// a file created in a folder is on that folder's filesystem, so the
    /// next member from the same folder needs no stat to find it.
    last_parent: Option<(&'a Path, usize)>,
}

/// One file waiting in a [`CommitGroup`].
#[derive(Debug)]
struct Member<'a> {
    slot: usize,
    partial: Partial,
    parent: &'a Path,
    file_name: &'a str,
    /// The filesystem whose group sync makes it durable (index into
    /// `filesystems`); `None` when it was fsynced when pushed.
    fs: Option<usize>,
    /// The handle it was written through, kept open until it has its final
    /// name: it holds a named partial's lock (see [`resumable`]), so no other
    /// transfer can take the partial over in between; an unnamed file is
    /// linked through it.
    _lock: File,
    /// It replaces what has its name ([`collision::replace`]).
    replace: bool,
}

/// A filesystem the current group wrote to.
#[derive(Debug)]
struct Filesystem {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    dev: u64,
    /// The handle to `syncfs` on; `None` when members there are fsynced one by one.
    witness: Option<File>,
}

impl Default for CommitGroup<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> CommitGroup<'a> {
    /// An empty group.
    #[must_use]
    pub fn new() -> Self {
        CommitGroup {
            members: Vec::new(),
            bytes: 0,
            since: None,
            filesystems: Vec::new(),
            placement: Placement::best(),
            sync_fs: sync_filesystem,
            last_parent: None,
        }
    }

    /// Takes the files waiting as a group of their own (to commit
    /// elsewhere, e.g. on a [`Committer`]), leaving this one empty with its
    /// settings. The next file pushed here opens a new witness of its
    /// filesystem, so each group's `syncfs` still reports every writeback
    /// error since its own first file was opened.
    #[must_use]
    pub fn take(&mut self) -> Self {
        CommitGroup {
            members: std::mem::take(&mut self.members),
            bytes: std::mem::take(&mut self.bytes),
            since: self.since.take(),
            filesystems: std::mem::take(&mut self.filesystems),
            placement: self.placement,
            sync_fs: self.sync_fs,
            last_parent: self.last_parent.take(),
        }
    }

    /// Whether a verified file of `size` bytes should go through a group
    /// (rather than [`commit_partial`] after its own fsync).
    #[must_use]
    pub fn wants(size: u64) -> bool {
        size < GROUP_FILE_LIMIT
    }

    /// Adds a verified partial file, written through `file` (which is closed
    /// or kept here), to be moved to a free name based on `file_name` in
    /// `parent` at the next [`CommitGroup::commit`], which reports it under
    /// `slot`.
    ///
    /// # Errors
    /// An invalid `file_name` (the partial is left in place), or a failed
    /// fsync or stat of `file` (the partial is removed): the file is then not
    /// in the group.
    pub fn push(
        &mut self,
        slot: usize,
        file: File,
        partial: Partial,
        parent: &'a Path,
        file_name: &'a str,
        size: u64,
    ) -> io::Result<()> {
        self.push_member(slot, file, partial, (parent, file_name), size, false)
    }

    /// Like [`CommitGroup::push`], but the file replaces what has its name
    /// at the commit ([`commit_replacing`]).
    ///
    /// # Errors
    /// As [`CommitGroup::push`].
    pub fn push_replacing(
        &mut self,
        slot: usize,
        file: File,
        partial: Partial,
        parent: &'a Path,
        file_name: &'a str,
        size: u64,
    ) -> io::Result<()> {
        self.push_member(slot, file, partial, (parent, file_name), size, true)
    }

    fn push_member(
        &mut self,
        slot: usize,
        file: File,
        partial: Partial,
        (parent, file_name): (&'a Path, &'a str),
        size: u64,
        replace: bool,
    ) -> io::Result<()> {
        check_component(file_name)?;
        let fs = self.adopt(&file, parent).inspect_err(|_| {
            // A failed fsync: what is on disk is unknown, never resume from it.
            partial.remove();
        })?;
        self.since.get_or_insert_with(Instant::now);
        self.bytes = self.bytes.saturating_add(size);
        self.members.push(Member {
            slot,
            partial,
            parent,
            file_name,
            fs,
            _lock: file,
            replace,
        });
        Ok(())
    }

    /// Makes (a duplicate of) `file` its filesystem's witness, or fsyncs it
    /// now when its filesystem cannot be synced as a whole.
    #[cfg(target_os = "linux")]
    fn adopt(&mut self, file: &File, parent: &'a Path) -> io::Result<Option<usize>> {
        use std::os::unix::fs::MetadataExt;
        let i = match self.last_parent {
            Some((last, i)) if last == parent => i,
            _ => {
                let dev = file.metadata()?.dev();
                let i = match self.filesystems.iter().position(|f| f.dev == dev) {
                    Some(i) => i,
                    None => {
                        let witness = if syncfs_is_trusted(file) {
                            Some(file.try_clone()?)
                        } else {
                            None
                        };
                        self.filesystems.push(Filesystem { dev, witness });
                        self.filesystems.len() - 1
                    }
                };
                self.last_parent = Some((parent, i));
                i
            }
        };
        if self.filesystems[i].witness.is_some() {
            return Ok(Some(i));
        }
        file.sync_all()?;
        Ok(None)
    }

    #[cfg(not(target_os = "linux"))]
    fn adopt(&mut self, file: &File, _parent: &'a Path) -> io::Result<Option<usize>> {
        file.sync_all()?;
        Ok(None)
    }

    /// Files waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// No file waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The group has reached [`GROUP_MAX_FILES`] or [`GROUP_MAX_BYTES`].
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.members.len() >= GROUP_MAX_FILES || self.bytes >= GROUP_MAX_BYTES
    }

    /// The group holds the most it may while the previous group is still
    /// being committed ([`GROUP_BUSY_MAX_FILES`], [`GROUP_BUSY_MAX_BYTES`]):
    /// it must be handed over now, waiting for the committer.
    #[must_use]
    pub fn is_at_limit(&self) -> bool {
        self.members.len() >= busy_max_files() || self.bytes >= GROUP_BUSY_MAX_BYTES
    }

    /// When the group should be committed at the latest ([`GROUP_MAX_WAIT`]
    /// after its first file); `None` when it is empty.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + GROUP_MAX_WAIT)
    }

    /// Makes every waiting file durable and moves it to its final name, as
    /// described on [`CommitGroup`]. Returns, in push order, each file's slot
    /// and its final path or why it failed (its partial then stays). The
    /// group is empty afterwards.
    pub fn commit(&mut self) -> Vec<(usize, io::Result<PathBuf>)> {
        let members = std::mem::take(&mut self.members);
        let filesystems = std::mem::take(&mut self.filesystems);
        self.bytes = 0;
        self.since = None;
        self.last_parent = None;
        // 1. The data, once per filesystem; a file alone there is fsynced
        // instead (a syncfs waits for every dirty page of the filesystem,
        // other programs' too: 0.2-0.3 s behind 400 MB someone else wrote,
        // for one 6-byte file).
        let alone: Vec<bool> = (0..filesystems.len())
            .map(|i| members.iter().filter(|m| m.fs == Some(i)).count() == 1)
            .collect();
        let synced: Vec<bool> = filesystems
            .iter()
            .zip(&alone)
            .map(|(f, &alone)| match &f.witness {
                Some(_) if alone => true,
                Some(w) => (self.sync_fs)(w)
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "syncfs failed; syncing the files one by one");
                    })
                    .is_ok(),
                None => true,
            })
            .collect();
        // 2. The names, in order.
        let mut out = Vec::with_capacity(members.len());
        let mut parents: Vec<(&Path, Option<usize>)> = Vec::new();
        let mut folder = Folder::default();
        for m in members {
            // After a failed syncfs a new handle's fsync could miss a
            // writeback error lost with the evicted inode: such a file is
            // reported failed, never saved on a guess, and its partial is
            // removed so that no later transfer resumes from it either.
            let durable = match m.fs {
                // The handle the data went through reports its writeback errors.
                Some(i) if alone[i] => m._lock.sync_all().inspect_err(|_| {
                    m.partial.remove();
                }),
                Some(i) if !synced.get(i).copied().unwrap_or(false) => {
                    m.partial.remove();
                    Err(io::Error::other(
                        "the file system could not confirm the data is on disk (syncfs failed)",
                    ))
                }
                _ => Ok(()),
            };
            let mut m = m;
            let placed = durable.and_then(|()| match &mut m.partial {
                // Its folder gets its name later ([`MadeFolders::publish`]).
                Partial::InPlace(f) => Ok(f.keep()),
                Partial::Named(partial) if m.replace => {
                    collision::replace(partial, m.parent, m.file_name, &mut self.placement)
                }
                Partial::Named(partial) => {
                    place(partial, m.parent, m.file_name, &mut self.placement)
                }
                Partial::Unnamed(_) if m.replace => {
                    let partial = unnamed::copy_to_named(&m._lock, m.parent, m.file_name)?;
                    collision::replace(&partial, m.parent, m.file_name, &mut self.placement)
                }
                Partial::Unnamed(_) => place_unnamed(
                    &m._lock,
                    &mut folder,
                    m.parent,
                    m.file_name,
                    &mut self.placement,
                ),
            });
            if placed.is_ok()
                && parents.last().map(|p| p.0) != Some(m.parent)
                && !parents.iter().any(|p| p.0 == m.parent)
            {
                parents.push((m.parent, m.fs));
            }
            out.push((m.slot, placed));
        }
        // 3. The directories, once each; or, for names in several folders
        // of a filesystem the group synced whole, one more syncfs there (a
        // folder's fsync is a journal commit and a device flush of its own:
        // a source tree's 1,184 folders took 0.4-0.6 s that way).
        let whole: Vec<bool> = filesystems
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let folders = parents.iter().filter(|p| p.1 == Some(i)).count();
                synced[i]
                    && !alone[i]
                    && folders > 1
                    && f.witness.as_ref().is_some_and(|w| {
                        (self.sync_fs)(w)
                            .inspect_err(|e| {
                                tracing::warn!(error = %e, "syncfs failed; syncing the folders one by one");
                            })
                            .is_ok()
                    })
            })
            .collect();
        for (dir, fs) in parents {
            if !fs.is_some_and(|i| whole[i]) {
                sync_dir_or_warn(dir);
            }
        }
        out
    }
}

/// What [`CommitGroup::commit`] returns: per file, in push order, its slot
/// and its final path or why it failed.
pub type Committed = Vec<(usize, io::Result<PathBuf>)>;

/// Commits [`CommitGroup`]s on a thread of its own, in the order they are
/// handed over, while the caller receives and fills the next group:
///
/// ```text
///  writer   fill N ─► commit(N) ─► fill N+1 ─► commit(N+1) (waits until N is done) ...
///  thread             syncfs, renames, dir fsyncs of N   ─► report N ─► N+1 ...
/// ```
///
/// At most two groups are alive (one committing, one filling): the hand-over
/// waits for the thread, so memory and open files stay bounded. Reports come
/// back in hand-over order ([`Committer::ready`], [`Committer::finish`]).
/// Without a thread (none could be started, or it is gone) groups are
/// committed where they are handed over, with the same reports.
#[derive(Debug)]
pub struct Committer<'a> {
    groups: Option<std::sync::mpsc::SyncSender<CommitGroup<'a>>>,
    reports: Option<std::sync::mpsc::Receiver<Committed>>,
    /// Groups handed to the thread whose report has not been taken.
    outstanding: usize,
    /// Reports of groups committed here, waiting to be taken.
    local: Vec<Committed>,
}

impl<'a> Committer<'a> {
    /// Starts the committing thread in `scope` (or commits inline when no
    /// thread can be started).
    pub fn start<'scope>(scope: &'scope std::thread::Scope<'scope, '_>) -> Self
    where
        'a: 'scope,
    {
        let (groups, incoming) = std::sync::mpsc::sync_channel::<CommitGroup<'a>>(0);
        let (report, reports) = std::sync::mpsc::channel::<Committed>();
        let spawned = std::thread::Builder::new()
            .name("commit".into())
            .spawn_scoped(scope, move || {
                for mut group in incoming {
                    // Once the caller is gone its files are still saved;
                    // nobody is left to tell.
                    let _ = report.send(group.commit());
                }
            });
        match spawned {
            Ok(_) => Committer {
                groups: Some(groups),
                reports: Some(reports),
                outstanding: 0,
                local: Vec::new(),
            },
            Err(e) => {
                tracing::debug!(error = %e, "no thread to commit on: committing inline");
                Committer::inline()
            }
        }
    }

    /// A committer without a thread: each group is committed when handed over.
    #[must_use]
    pub fn inline() -> Self {
        Committer {
            groups: None,
            reports: None,
            outstanding: 0,
            local: Vec::new(),
        }
    }

    /// Hands `group` over to be committed (nothing when it is empty). Waits
    /// while the thread is still committing the previous group.
    pub fn commit(&mut self, group: CommitGroup<'a>) {
        if group.is_empty() {
            return;
        }
        let group = match &self.groups {
            Some(tx) => match tx.send(group) {
                Ok(()) => {
                    self.outstanding += 1;
                    return;
                }
                // The thread is gone (it panicked): commit here.
                Err(std::sync::mpsc::SendError(group)) => {
                    self.groups = None;
                    group
                }
            },
            None => group,
        };
        let mut group = group;
        self.local.push(group.commit());
    }

    /// Hands `group` over only if the thread is free to take it at once;
    /// otherwise gives it back, for the caller to keep filling (up to
    /// [`CommitGroup::is_at_limit`]). Without a thread it is committed here,
    /// as [`Committer::commit`] does.
    pub fn try_commit(&mut self, group: CommitGroup<'a>) -> Option<CommitGroup<'a>> {
        if group.is_empty() {
            return None;
        }
        let group = match &self.groups {
            Some(tx) => match tx.try_send(group) {
                Ok(()) => {
                    self.outstanding += 1;
                    return None;
                }
                Err(std::sync::mpsc::TrySendError::Full(group)) => return Some(group),
                Err(std::sync::mpsc::TrySendError::Disconnected(group)) => group,
            },
            None => group,
        };
        self.commit(group);
        None
    }

    /// The reports of the groups committed so far, in hand-over order,
    /// without waiting.
    pub fn ready(&mut self) -> Vec<Committed> {
        let mut out = Vec::new();
        if let Some(rx) = &self.reports {
            while self.outstanding > 0 {
                match rx.try_recv() {
                    Ok(r) => {
                        self.outstanding -= 1;
                        out.push(r);
                    }
                    Err(_) => break,
                }
            }
        }
        out.append(&mut self.local);
        out
    }

    /// Waits until every group handed over is committed; their reports, in
    /// hand-over order.
    pub fn finish(&mut self) -> Vec<Committed> {
        let mut out = Vec::new();
        if let Some(rx) = &self.reports {
            while self.outstanding > 0 {
                match rx.recv() {
                    Ok(r) => {
                        self.outstanding -= 1;
                        out.push(r);
                    }
                    // The thread died with a group: its files stay partial
                    // (their results keep their placeholders).
                    Err(_) => {
                        self.outstanding = 0;
                        self.groups = None;
                    }
                }
            }
        }
        out.append(&mut self.local);
        out
    }
}

#[cfg(target_os = "linux")]
fn sync_filesystem(file: &File) -> io::Result<()> {
    rustix::fs::syncfs(file).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(file: &File) -> io::Result<()> {
    file.sync_all()
}

/// Filesystems whose `syncfs` writes and waits for everything and reports
/// writeback errors (`f_type` magic numbers): ext2/3/4, xfs, btrfs, tmpfs,
/// f2fs. Others (FUSE, NFS, CIFS, overlayfs, ZFS, ...) fsync file by file.
#[cfg(target_os = "linux")]
const SYNCFS_FILESYSTEMS: [u64; 5] = [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0xF2F5_2010];

/// Whether one `syncfs` on `file`'s filesystem may stand for an fsync of
/// each file written there: Linux reports writeback errors through it only
/// since 5.8, and only some filesystems are known to sync fully.
#[cfg(target_os = "linux")]
fn syncfs_is_trusted(file: &File) -> bool {
    static KERNEL_REPORTS_ERRORS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let kernel_ok = *KERNEL_REPORTS_ERRORS.get_or_init(|| {
        kernel_at_least(&rustix::system::uname().release().to_string_lossy(), (5, 8))
    });
    kernel_ok
        && rustix::fs::fstatfs(file).is_ok_and(|st| {
            // `f_type` is signed on some architectures; magic numbers are 32-bit.
            #[allow(clippy::cast_sign_loss, clippy::unnecessary_cast)]
            let magic = (st.f_type as u64) & 0xFFFF_FFFF;
            SYNCFS_FILESYSTEMS.contains(&magic)
        })
}

/// Whether a kernel release string ("6.1.0-18-amd64") is at least `version`.
#[cfg(target_os = "linux")]
fn kernel_at_least(release: &str, version: (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= version,
        _ => false,
    }
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
mod tests;
