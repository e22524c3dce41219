//! Sources: the command line expanded into the files to offer, each checked
//! before anything touches the network.

use super::*;

use crate::event::Skipped;
use crate::exclude::Exclude;

/// The files to offer, and how many paths inside the folders could not be
/// read or have names that cannot be sent (each reported with
/// [`Event::Skipped`]).
#[derive(Debug, Default)]
pub(crate) struct Listed {
    pub(crate) sources: Vec<Source>,
    pub(crate) unreadable: usize,
    pub(crate) names: usize,
}

impl Listed {
    /// The send's result once everything offered (`offered`: the list,
    /// taken out of it) arrived verified: an error when paths were left out
    /// because they could not be read or their names cannot be sent.
    pub(crate) fn verdict(&self, offered: &[Source], sent: Sent) -> Result<Sent> {
        if self.unreadable == 0 && self.names == 0 {
            return Ok(sent);
        }
        Err(Error::Transfer(TransferError::Unreadable {
            sent: offered.iter().filter(|s| !s.is_dir()).count(),
            skipped: self.unreadable,
            names: self.names,
        }))
    }

    /// Leaves `path` out, and says so.
    fn skip(&mut self, events: &Events, path: &Path, folder: bool, why: Why) {
        if why.reason.is_unreadable() {
            self.unreadable += 1;
        } else if why.reason == Skip::Name {
            self.names += 1;
        }
        events.emit(Event::Skipped(Skipped {
            path: path.to_owned(),
            folder,
            reason: why.reason,
            error: why.error,
        }));
    }
}

/// Why a path inside a folder is left out: the reason, and for an
/// unexpected error its text.
#[derive(Debug, PartialEq, Eq)]
struct Why {
    reason: Skip,
    error: Option<String>,
}

impl From<Skip> for Why {
    fn from(reason: Skip) -> Self {
        Why {
            reason,
            error: None,
        }
    }
}

impl From<&std::io::Error> for Why {
    fn from(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Skip::PermissionDenied.into(),
            std::io::ErrorKind::NotFound => Skip::Vanished.into(),
            _ => Why {
                reason: Skip::Unreadable,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Expands the command line into the files to offer, checking each before
/// anything touches the network: a file goes under its own name, a folder as
/// every file below it, under `folder/sub/file`, less what `exclude`
/// matches. Inside a folder, symbolic links and partial files are left out
/// by rule, and what cannot be read (a file that cannot be opened, a pipe, a
/// socket, a device, a sub-folder that cannot be listed) is left out too, so
/// that the rest goes: each with an [`Event::Skipped`]. Nothing outside the
/// tree is ever sent because a link pointed there. A path given on the
/// command line is followed, even when it is a link (an explicit choice),
/// and one that cannot be read is an error before anything is sent.
pub(crate) fn sources(
    paths: &[PathBuf],
    stdin_name: &str,
    exclude: &Exclude,
    events: &Events,
) -> Result<Listed> {
    let mut listed = Listed::default();
    let stdin_count = paths.iter().filter(|p| p.as_os_str() == STDIN).count();
    if stdin_count > 1 {
        return Err(Error::Usage(
            "standard input (`-`) can be sent only once per send".into(),
        ));
    }
    for path in paths {
        if path.as_os_str() == STDIN {
            validate_wire_path(stdin_name)
                .ok()
                .filter(|components| components.len() == 1)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--name {}: not a usable file name",
                        escape_for_terminal(stdin_name)
                    ))
                })?;
            listed.sources.push(Source {
                path: path.clone(),
                name: stdin_name.to_owned(),
                size: 0,
                attrs: ATTR_STREAM,
                mtime: None,
                text: None,
            });
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
        let name = top_name(path)?;
        if meta.is_dir() {
            check_name(path, &name)?;
            // The folder itself, so that it exists even when empty.
            listed.sources.push(Source {
                path: path.clone(),
                name: name.clone(),
                size: 0,
                attrs: ATTR_DIR,
                mtime: None,
                text: None,
            });
            add_tree(path, &name, exclude, &mut listed, events)?;
        } else if meta.is_file() {
            listed.sources.push(source(path, name, &meta)?);
        } else {
            return Err(Error::Usage(format!(
                "{}: not a regular file or folder",
                shown(path)
            )));
        }
        if listed.sources.len() > MAX_FILES as usize {
            return Err(Error::Usage(format!(
                "more than {MAX_FILES} files in one send: send the folders one by one"
            )));
        }
    }
    Ok(listed)
}

/// The name a command-line path is sent under: its last component (of the
/// absolute path for `.` and the like).
fn top_name(path: &Path) -> Result<String> {
    let named = match path.file_name() {
        Some(n) => Some(n.to_owned()),
        None => std::fs::canonicalize(path)
            .map_err(|e| Error::file(path, e))?
            .file_name()
            .map(ToOwned::to_owned),
    };
    let named = named.ok_or_else(|| {
        Error::Usage(format!(
            "{}: has no name to send it under (send the files inside it instead)",
            shown(path)
        ))
    })?;
    named
        .into_string()
        .map_err(|_| Error::Usage(format!("{}: the name is not valid UTF-8", shown(path))))
}

/// A local path as shown on the terminal (escaped: file names are anyone's).
fn shown(path: &Path) -> String {
    escape_for_terminal(&path.display().to_string())
}

/// Whether `name` can go on the wire for `path`.
fn check_name(path: &Path, name: &str) -> Result<()> {
    validate_wire_path(name).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot be sent under this name: {e}",
            shown(path)
        ))
    })?;
    Ok(())
}

/// Whether the file is executable (by anyone): the receiver then makes its
/// copy executable too.
#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Opens `path` to see that it can be read. Without blocking: a pipe put
/// in a file's place after the listing must not hang the send.
fn open_to_check(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    options.open(path)
}

/// One file, checked: readable, and a valid wire path.
fn source(path: &Path, name: String, meta: &std::fs::Metadata) -> Result<Source> {
    open_to_check(path).map_err(|e| Error::file(path, e))?;
    check_name(path, &name)?;
    if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
        return Err(Error::Usage(format!(
            "{}: a partial file of an unfinished transfer (receivers refuse names ending in {})",
            shown(path),
            crate::fsutil::PARTIAL_SUFFIX
        )));
    }
    Ok(file_source(path, name, meta))
}

fn file_source(path: &Path, name: String, meta: &std::fs::Metadata) -> Source {
    Source {
        path: path.to_owned(),
        name,
        size: meta.len(),
        attrs: if executable(meta) { ATTR_EXEC } else { 0 },
        mtime: meta
            .modified()
            .ok()
            .and_then(crate::fsutil::collision::mtime_of),
        text: None,
    }
}

/// Why an entry of this kind has no content to send (`None`: a file or a
/// folder).
fn not_content(kind: std::fs::FileType) -> Option<Skip> {
    if kind.is_file() || kind.is_dir() {
        return None;
    }
    if kind.is_symlink() {
        return Some(Skip::Symlink);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some(Skip::Fifo);
        }
        if kind.is_socket() {
            return Some(Skip::Socket);
        }
        if kind.is_block_device() || kind.is_char_device() {
            return Some(Skip::Device);
        }
    }
    Some(Skip::NotRegular)
}

/// A file listed inside a folder (under a name checked for the wire),
/// opened to check it: its source, or why it is left out (gone since the
/// listing, not readable, no longer a file).
fn tree_file(path: &Path, name: String) -> std::result::Result<Source, Why> {
    let file = open_to_check(path).map_err(|e| Why::from(&e))?;
    let meta = file.metadata().map_err(|e| Why::from(&e))?;
    if let Some(reason) = not_content(meta.file_type()) {
        return Err(reason.into());
    }
    if !meta.is_file() {
        // A folder put in the file's place since the listing.
        return Err(Skip::Vanished.into());
    }
    Ok(file_source(path, name, &meta))
}

/// `top/sub/file` for the path `relative` to the folder sent as `top`, if
/// it can go on the wire.
fn tree_name(top: &str, relative: &Path) -> std::result::Result<String, Why> {
    let unsendable = |error: String| Why {
        reason: Skip::Name,
        error: Some(error),
    };
    let mut name = top.to_owned();
    for c in relative.components() {
        let c = c
            .as_os_str()
            .to_str()
            .ok_or_else(|| unsendable("it is not valid UTF-8".into()))?;
        name.push('/');
        name.push_str(c);
    }
    validate_wire_path(&name).map_err(|e| unsendable(e.to_string()))?;
    Ok(name)
}

/// Every file under the folder `root`, sent as `top/...`, in name order,
/// less what `exclude` matches (a folder that matches is not entered).
fn add_tree(
    root: &Path,
    top: &str,
    exclude: &Exclude,
    listed: &mut Listed,
    events: &Events,
) -> Result<()> {
    let mut walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                unlisted(root, e, listed, events)?;
                continue;
            }
        };
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(path);
        let kind = entry.file_type();
        if exclude.excludes(relative, kind.is_dir()) {
            if kind.is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        if let Some(reason) = not_content(kind) {
            listed.skip(events, path, false, reason.into());
            continue;
        }
        let name = match tree_name(top, relative) {
            Ok(name) => name,
            Err(why) => {
                if kind.is_dir() {
                    walk.skip_current_dir();
                }
                listed.skip(events, path, kind.is_dir(), why);
                continue;
            }
        };
        if kind.is_dir() {
            listed.sources.push(Source {
                path: path.to_owned(),
                name,
                size: 0,
                attrs: ATTR_DIR,
                mtime: None,
                text: None,
            });
        } else if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
            listed.skip(events, path, false, Skip::Partial.into());
        } else {
            match tree_file(path, name) {
                Ok(source) => listed.sources.push(source),
                Err(why) => listed.skip(events, path, false, why),
            }
        }
        if listed.sources.len() > MAX_FILES as usize {
            return Ok(());
        }
    }
    Ok(())
}

/// A folder inside the tree that cannot be listed: left out, with its entry
/// (listed just before it was opened). The folder named on the command line
/// itself is an error.
fn unlisted(root: &Path, e: walkdir::Error, listed: &mut Listed, events: &Events) -> Result<()> {
    let Some(path) = e.path().map(Path::to_path_buf) else {
        return Err(Error::file(root, e.into()));
    };
    let io = std::io::Error::from(e);
    if path == root {
        return Err(Error::file(root, io));
    }
    if listed
        .sources
        .last()
        .is_some_and(|s| s.is_dir() && s.path == path)
    {
        listed.sources.pop();
    }
    listed.skip(events, &path, true, Why::from(&io));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root/rel` with `content`, its folders made.
    fn put(root: &Path, rel: &str, content: &[u8]) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    fn names(listed: &Listed) -> Vec<&str> {
        listed.sources.iter().map(|s| s.name.as_str()).collect()
    }

    /// The skipped events emitted so far: (path relative to `root`, reason).
    fn skipped(rx: &mut crate::event::EventStream, root: &Path) -> Vec<(String, Skip)> {
        std::iter::from_fn(|| rx.try_next())
            .filter_map(|e| match e.event {
                Event::Skipped(s) => Some((
                    s.path.strip_prefix(root).unwrap().display().to_string(),
                    s.reason,
                )),
                _ => None,
            })
            .collect()
    }

    fn sent() -> Sent {
        Sent {
            delivered: 0,
            offered: 0,
            bytes: 0,
        }
    }

    #[test]
    fn a_file_gone_since_the_listing_is_left_out_as_vanished() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), "top/x.txt", b"x");
        let path = dir.path().join("top/x.txt");
        // Listed (the walk saw it), then removed before it is opened.
        std::fs::remove_file(&path).unwrap();
        let got = tree_file(&path, "top/x.txt".into());
        assert_eq!(got, Err(Skip::Vanished.into()));
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_sends_what_it_can_read_and_reports_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "sub/b.txt", b"bb");
        put(&root, "c.txt.0123abcd.lspart", b"partial");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("sub/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), root.join("link")).unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(
            names(&listed),
            ["top", "top/a.txt", "top/sub", "top/sub/b.txt"]
        );
        assert_eq!(
            listed.unreadable, 1,
            "the pipe; the link and the partial by rule"
        );
        assert_eq!(
            skipped(&mut rx, &root),
            [
                ("c.txt.0123abcd.lspart".to_owned(), Skip::Partial),
                ("link".to_owned(), Skip::Symlink),
                ("sub/pipe".to_owned(), Skip::Fifo),
            ]
        );
        let err = listed.verdict(&listed.sources, sent()).unwrap_err();
        assert_eq!(err.to_string(), "sent 2 files; skipped 1 unreadable");
    }

    #[cfg(unix)]
    #[test]
    fn names_that_cannot_be_sent_are_skipped_inside_a_folder() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "10:30.log", b"colon");
        put(&root, "aux.c", b"reserved on Windows");
        put(&root, "odd:dir/inner.txt", b"inside a folder skipped whole");
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(root.join(latin1), b"not UTF-8").unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert_eq!((listed.unreadable, listed.names), (0, 4));
        let got = skipped(&mut rx, &root);
        let reasons: Vec<Skip> = got.iter().map(|(_, r)| *r).collect();
        assert_eq!(reasons, [Skip::Name; 4], "{got:?}");
        let err = listed.verdict(&listed.sources, sent()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sent 1 file; skipped 4 whose names cannot be sent"
        );
    }

    #[test]
    fn the_final_line_counts_both_kinds() {
        let listed = Listed {
            sources: vec![],
            unreadable: 2,
            names: 1,
        };
        assert_eq!(
            listed
                .verdict(&listed.sources, sent())
                .unwrap_err()
                .to_string(),
            "sent 0 files; skipped 2 unreadable and 1 whose name cannot be sent"
        );
    }

    #[test]
    fn paths_left_out_by_rule_only_do_not_fail_the_send() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "a.txt.0123abcd.lspart", b"partial");
        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &Events::default(),
        )
        .unwrap();
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert!(listed.verdict(&listed.sources, sent()).is_ok());
    }

    #[test]
    fn excluded_paths_are_not_offered_and_excluded_folders_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        for rel in [
            "src/main.rs",
            "src/main.o",
            "target/debug/app",
            "crates/x/target/y",
            ".git/config",
            "build/out.bin",
            "src/build/keep.txt",
            "docs/a.md",
            "docs/deep/b.md",
            "notes.o",
        ] {
            put(&root, rel, rel.as_bytes());
        }
        // Inside an excluded folder: never looked at, so never reported.
        #[cfg(unix)]
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("target/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let single = dir.path().join("single.o");
        put(dir.path(), "single.o", b"named on the command line");
        let exclude = Exclude::new(&["*.o", "target/", ".git", "/build", "docs/*.md"]).unwrap();
        let events = Events::default();
        let mut rx = events.subscribe();

        let listed = sources(&[root.clone(), single], "stdin", &exclude, &events).unwrap();
        assert_eq!(
            names(&listed),
            [
                "proj",
                "proj/crates",
                "proj/crates/x",
                "proj/docs",
                "proj/docs/deep",
                "proj/docs/deep/b.md",
                "proj/src",
                "proj/src/build",
                "proj/src/build/keep.txt",
                "proj/src/main.rs",
                "single.o",
            ]
        );
        assert!(skipped(&mut rx, &root).is_empty());
        assert!(listed.verdict(&listed.sources, sent()).is_ok());
    }

    /// Permissions stop only a user who is not root (CI runs as root).
    #[cfg(unix)]
    #[test]
    fn unreadable_files_and_folders_inside_are_skipped_but_not_on_the_command_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("top");
        put(&root, "a.txt", b"a");
        put(&root, "secret.txt", b"s");
        put(&root, "private/inner.txt", b"i");
        let closed = std::fs::Permissions::from_mode(0o000);
        std::fs::set_permissions(root.join("secret.txt"), closed.clone()).unwrap();
        std::fs::set_permissions(root.join("private"), closed).unwrap();
        if std::fs::read(root.join("secret.txt")).is_ok() {
            eprintln!("SKIPPED: permissions do not stop this user (root)");
            return;
        }
        let events = Events::default();
        let mut rx = events.subscribe();
        let listed = sources(
            std::slice::from_ref(&root),
            "stdin",
            &Exclude::default(),
            &events,
        )
        .unwrap();
        assert_eq!(names(&listed), ["top", "top/a.txt"]);
        assert_eq!(listed.unreadable, 2);
        assert_eq!(
            skipped(&mut rx, &root),
            [
                ("private".to_owned(), Skip::PermissionDenied),
                ("secret.txt".to_owned(), Skip::PermissionDenied),
            ]
        );
        // Named on the command line: an error before anything is sent.
        for path in [root.join("secret.txt"), root.join("private")] {
            let err = sources(&[path], "stdin", &Exclude::default(), &events).unwrap_err();
            assert!(matches!(err, Error::File { .. }), "{err:?}");
        }
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(root.join("private"), open).unwrap();
    }
}
