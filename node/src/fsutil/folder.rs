//! A folder held open for the files in it ([`Folder`]).

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::path::{Path, PathBuf};

/// The folder last worked in, held open: the small files of a folder are
/// made and linked relative to it, so the path to the folder is walked once
/// per folder instead of twice per file (a million files sit in a few
/// thousand folders, received one folder after the other).
#[derive(Debug, Default)]
pub struct Folder {
    #[cfg(target_os = "linux")]
    open: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

#[cfg(target_os = "linux")]
impl Folder {
    /// `parent`, open (as a path only: `O_PATH`, which needs no permission
    /// to read the folder).
    pub(crate) fn at(&mut self, parent: &Path) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        use rustix::fs::{CWD, Mode, OFlags, openat};
        use std::os::fd::AsFd;
        if self.open.as_ref().is_none_or(|(p, _)| p != parent) {
            self.open = None;
            let fd = openat(
                CWD,
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            self.open = Some((parent.to_owned(), fd));
        }
        match &self.open {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}
