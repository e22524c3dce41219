//! Sources: the command line expanded into the files to offer, each checked
//! before anything touches the network.

use super::*;

/// Expands the command line into the files to offer, checking each before
/// anything touches the network: a file goes under its own name, a folder as
/// every file below it, under `folder/sub/file`. Inside a folder, symbolic
/// links (and sockets, pipes, devices) are skipped with a notice: nothing
/// outside the tree is ever sent because a link pointed there. A path given
/// on the command line is followed, even when it is a link: that is an
/// explicit choice.
pub(crate) fn sources(paths: &[PathBuf], stdin_name: &str, events: &Events) -> Result<Vec<Source>> {
    let mut out = Vec::new();
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
            out.push(Source {
                path: path.clone(),
                name: stdin_name.to_owned(),
                size: 0,
                attrs: ATTR_STREAM,
            });
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
        let name = top_name(path)?;
        if meta.is_dir() {
            check_name(path, &name)?;
            // The folder itself, so that it exists even when empty.
            out.push(Source {
                path: path.clone(),
                name: name.clone(),
                size: 0,
                attrs: ATTR_DIR,
            });
            add_tree(path, &name, &mut out, events)?;
        } else if meta.is_file() {
            out.push(source(path, name, &meta)?);
        } else {
            return Err(Error::Usage(format!(
                "{}: not a regular file or folder",
                shown(path)
            )));
        }
        if out.len() > MAX_FILES as usize {
            return Err(Error::Usage(format!(
                "more than {MAX_FILES} files in one send: send the folders one by one"
            )));
        }
    }
    Ok(out)
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

/// One file, checked: readable, and a valid wire path.
fn source(path: &Path, name: String, meta: &std::fs::Metadata) -> Result<Source> {
    File::open(path).map_err(|e| Error::file(path, e))?;
    check_name(path, &name)?;
    if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
        return Err(Error::Usage(format!(
            "{}: a partial file of an unfinished transfer (receivers refuse names ending in {})",
            shown(path),
            crate::fsutil::PARTIAL_SUFFIX
        )));
    }
    Ok(Source {
        path: path.to_owned(),
        name,
        size: meta.len(),
        attrs: if executable(meta) { ATTR_EXEC } else { 0 },
    })
}

/// Every file under the folder `root`, sent as `top/...`, in name order.
fn add_tree(root: &Path, top: &str, out: &mut Vec<Source>, events: &Events) -> Result<()> {
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            Error::file(&path, e.into())
        })?;
        let path = entry.path();
        let kind = entry.file_type();
        if !kind.is_file() && !kind.is_dir() {
            events.notice(Notice::Skipped {
                path: path.to_owned(),
                why: if kind.is_symlink() {
                    Skip::Symlink
                } else {
                    Skip::NotRegular
                },
            });
            continue;
        }
        let mut name = top.to_owned();
        for c in entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
        {
            let c = c.as_os_str().to_str().ok_or_else(|| {
                Error::Usage(format!("{}: the name is not valid UTF-8", shown(path)))
            })?;
            name.push('/');
            name.push_str(c);
        }
        if kind.is_dir() {
            check_name(path, &name)?;
            out.push(Source {
                path: path.to_owned(),
                name,
                size: 0,
                attrs: ATTR_DIR,
            });
        } else if name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
            events.notice(Notice::Skipped {
                path: path.to_owned(),
                why: Skip::Partial,
            });
            continue;
        } else {
            let meta = entry.metadata().map_err(|e| Error::file(path, e.into()))?;
            out.push(source(path, name, &meta)?);
        }
        if out.len() > MAX_FILES as usize {
            return Ok(());
        }
    }
    Ok(())
}
