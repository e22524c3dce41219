//! What an offer asks of the receiver, in two steps: [`check`] before
//! consent, which validates every name and measures what is held, keeping
//! nothing per entry but a number (so a stranger's 100,000-path offer costs
//! no more than its own bytes until someone accepts it); and [`plan`] after
//! consent, which lays out folders and files.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::Path;

use localstream_proto::Status;
use localstream_proto::names::{check_wire_child, check_wire_path, escape_for_terminal};
use localstream_proto::transfer::OfferEntry;

use crate::fsutil;
use crate::fsutil::collision::{self, OnCollision};
use crate::fsutil::resumable;

/// Longest path the receiver creates, in bytes (Linux's `PATH_MAX` is 4096,
/// with the terminating NUL).
pub(super) const MAX_FULL_PATH: usize = 4095;
/// What a file's path may grow by on disk: its partial's `.<key>.lspart`
/// (24 bytes) or a free name such as ` (1000)`.
const PATH_GROWTH: usize = 24;

/// A refusal: status and the message for the sender.
pub(super) type Refusal = (Status, String);

/// What the check found.
#[derive(Debug)]
pub(super) struct Checked {
    /// Files (not folders) offered.
    pub files: usize,
    /// Folders offered.
    pub folders: usize,
    /// Bytes already held from an interrupted transfer, per file, in offer
    /// order (or, where `copies` says so, the whole copy already there).
    pub held_lens: Vec<u64>,
    /// Per file, in offer order: the held bytes are a file of the same name
    /// and size already in the folder (`--on-collision skip-identical`),
    /// to compare whole rather than to resume.
    pub copies: Vec<bool>,
}

/// The folders (wire paths below the destination) that the check of an
/// earlier batch of this transfer found missing. Whatever is in them was
/// put there by this transfer, which offers each path once: they hold no
/// partial and no copy of a file a later batch offers, so that batch's
/// files there need no look each (a batch boundary inside a folder of
/// 10,000 files cost 1,800 stats, 7 ms, while the writer waited).
#[derive(Debug, Default)]
pub(super) struct NewFolders(HashSet<String>);

impl NewFolders {
    /// Whether `dirs` or a folder above it was found missing earlier.
    fn holds(&self, dirs: &str) -> bool {
        !self.0.is_empty()
            && (self.0.contains(dirs)
                || dirs
                    .match_indices('/')
                    .any(|(at, _)| self.0.contains(&dirs[..at])))
    }
}

/// Validates every entry (one hostile name refuses the whole offer) and
/// measures the prefixes held for its files (one stat each), and the copies
/// already there (one more): under `skip-identical` of the same size, else
/// of the same size and modification time (the same file sent again).
/// A folder found missing is looked at once, and remembered in `new` for
/// the later batches of the transfer.
///
/// # Errors
/// The refusal to answer with.
pub(super) fn check(
    entries: &[OfferEntry],
    dir: &Path,
    sender: &[u8; 16],
    to_stdout: bool,
    on_collision: OnCollision,
    new: &mut NewFolders,
) -> Result<Checked, Refusal> {
    let base = dir.as_os_str().len() + 1;
    let mut checked = Checked {
        files: 0,
        folders: 0,
        held_lens: Vec::new(),
        copies: Vec::new(),
    };
    // The folders (below `dir`) of the last file whose folder was found
    // missing: the files of a new tree come folder by folder.
    let mut absent: Option<&str> = None;
    // A folder known to be a valid wire path (the last entry's, or the
    // last folder entry itself): an entry in it has only its name checked
    // (`check_wire_child`, the same verdict as the whole path's).
    let mut valid: Option<&str> = None;
    for e in entries {
        let (dirs, file_name) = split_wire_path(&e.path);
        let verdict = if !dirs.is_empty() && valid == Some(dirs) {
            check_wire_child(dirs, file_name)
        } else {
            check_wire_path(&e.path)
        };
        verdict.map_err(|err| (Status::InvalidName, format!("refused file name: {err}")))?;
        valid = Some(if e.is_dir() { e.path.as_str() } else { dirs });
        if base + e.path.len() + PATH_GROWTH > MAX_FULL_PATH {
            return Err((
                Status::InvalidName,
                format!(
                    "refused file name: {}...: the path would be longer than the receiver's \
                     limit of {MAX_FULL_PATH} bytes",
                    escape_for_terminal(&e.path.chars().take(64).collect::<String>())
                ),
            ));
        }
        if e.is_dir() {
            checked.folders += 1;
            continue;
        }
        // Such a file could later pass for a partial and be resumed into.
        if file_name.ends_with(fsutil::PARTIAL_SUFFIX) {
            return Err((
                Status::InvalidName,
                format!(
                    "refused file name: {}: names ending in {} are reserved for partial files",
                    escape_for_terminal(&e.path),
                    fsutil::PARTIAL_SUFFIX
                ),
            ));
        }
        checked.files += 1;
        let (held, copy) = if to_stdout || e.is_stream() || e.is_text() {
            (0, false)
        } else if absent == Some(dirs) || new.holds(dirs) {
            // A folder that is not there (or was not, before this
            // transfer) holds no partial and no copy.
            (0, false)
        } else {
            let parent = if dirs.is_empty() {
                dir.to_owned()
            } else {
                dir.join(dirs)
            };
            if !dirs.is_empty()
                && std::fs::metadata(&parent).is_err_and(|e| e.kind() == ErrorKind::NotFound)
            {
                // One look per new folder, not one per file in it.
                absent = Some(dirs);
                new.0.insert(dirs.to_owned());
                checked.held_lens.push(0);
                checked.copies.push(false);
                continue;
            }
            let copy = e.size > 0
                && match (on_collision, e.mtime) {
                    (OnCollision::SkipIdentical, _) => {
                        collision::existing_len(&parent, file_name) == Some(e.size)
                    }
                    // The same file again (its size and the modification
                    // time a received file keeps): most likely the same send
                    // run again to resume, whose files that arrived must not
                    // come twice. Its hash decides, as for skip-identical.
                    (OnCollision::Rename | OnCollision::Overwrite, Some(t)) => {
                        collision::same_size_and_time(&parent, file_name, e.size, t)
                    }
                    (_, None) => false,
                };
            if copy {
                (e.size, true)
            } else {
                let partial = resumable::partial_name(
                    file_name,
                    &resumable::partial_key(sender, &e.path, e.size),
                );
                (resumable::held_len(&parent, &partial).min(e.size), false)
            }
        };
        checked.held_lens.push(held);
        checked.copies.push(copy);
    }
    Ok(checked)
}

/// A checked wire path's folders (`/`-separated, empty for none) and its
/// file name.
fn split_wire_path(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// One file to receive.
#[derive(Debug)]
pub(super) struct FileLayout<'a> {
    /// Its index in the offer.
    pub index: u32,
    /// Its folders below the destination, `/`-separated (a slice of the
    /// entry's path; empty: the destination itself).
    pub dirs: &'a str,
    /// Where its name begins in the entry's path.
    pub name_at: usize,
    /// The offered entry.
    pub entry: &'a OfferEntry,
}

/// The layout of an offer that passed [`check`]: its files, and its folders
/// (each as its whole list of components).
#[must_use]
pub(super) fn plan(entries: &[OfferEntry]) -> (Vec<FileLayout<'_>>, Vec<Vec<String>>) {
    let mut files = Vec::new();
    let mut folders = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        // Checked before consent (`check`): every name is valid, and each
        // component is checked again where it is created.
        debug_assert!(check_wire_path(&e.path).is_ok(), "{:?}", e.path);
        if e.is_dir() {
            folders.push(e.path.split('/').map(str::to_owned).collect());
            continue;
        }
        let (dirs, file_name) = split_wire_path(&e.path);
        files.push(FileLayout {
            index: i as u32,
            dirs,
            name_at: e.path.len() - file_name.len(),
            entry: e,
        });
    }
    (files, folders)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Why [`check`] refuses `entries` for the folder `dir`.
    fn refusal(entries: &[OfferEntry], dir: &Path) -> Refusal {
        check(
            entries,
            dir,
            &[0; 16],
            false,
            OnCollision::Rename,
            &mut NewFolders::default(),
        )
        .unwrap_err()
    }

    #[test]
    fn a_bad_name_in_a_folder_already_checked_is_refused_as_its_whole_path_would_be() {
        let tmp = tempfile::tempdir().unwrap();
        // As deep as a folder may be: anything in it is one too deep.
        let deep = vec!["d"; 64].join("/");
        for (folder, bad) in [
            ("top", "con.txt"),
            ("top", "a\u{202e}b"),
            ("top", "trailing."),
            ("top", ".."),
            (deep.as_str(), "one-too-deep"),
        ] {
            let mut entries = vec![OfferEntry {
                attrs: localstream_proto::transfer::ATTR_DIR,
                ..OfferEntry::file(folder, 0)
            }];
            if folder != deep {
                entries.push(OfferEntry::file(format!("{folder}/fine.txt"), 1));
            }
            entries.push(OfferEntry::file(format!("{folder}/{bad}"), 1));
            let whole = check_wire_path(&entries.last().unwrap().path).unwrap_err();
            let (status, message) = refusal(&entries, tmp.path());
            assert_eq!(status, Status::InvalidName);
            assert_eq!(message, format!("refused file name: {whole}"));
        }
    }

    #[test]
    fn a_path_too_long_for_the_receiver_is_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d".repeat(100));
        std::fs::create_dir(&dir).unwrap();
        // 63 folders of 63 bytes: a legal wire path of 4,033 bytes.
        let long: Vec<String> = (0..63)
            .map(|i| format!("{i:02}{}", "d".repeat(61)))
            .collect();
        let path = format!("{}/f", long.join("/"));
        assert!(check_wire_path(&path).is_ok());
        let entries = [OfferEntry::file(path, 1)];
        let (status, message) = refusal(&entries, &dir);
        assert_eq!(status, Status::InvalidName);
        assert!(
            message.contains("longer than the receiver's limit"),
            "{message}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // The same name in a short destination fits.
        let short = tempfile::tempdir().unwrap();
        let fits = OfferEntry::file(format!("{}/f", long[..60].join("/")), 1);
        assert!(
            check(
                &[fits],
                short.path(),
                &[0; 16],
                false,
                OnCollision::Rename,
                &mut NewFolders::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn check_counts_files_and_folders_and_plan_lays_them_out() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [
            OfferEntry {
                path: "a".into(),
                size: 0,
                attrs: localstream_proto::transfer::ATTR_DIR,
                mtime: None,
            },
            OfferEntry::file("a/x.txt", 3),
            OfferEntry::file("y.txt", 4),
        ];
        let c = check(
            &entries,
            dir.path(),
            &[1; 16],
            false,
            OnCollision::Rename,
            &mut NewFolders::default(),
        )
        .unwrap();
        assert_eq!((c.files, c.folders, c.held_lens), (2, 1, vec![0, 0]));
        let (files, folders) = plan(&entries);
        assert_eq!(folders, vec![vec!["a".to_owned()]]);
        assert_eq!(files.len(), 2);
        assert_eq!(
            (files[0].index, files[0].dirs, files[0].name_at),
            (1, "a", 2)
        );
        assert_eq!((files[1].dirs, files[1].name_at), ("", 0));
    }

    #[test]
    fn check_measures_what_is_held_and_looks_once_at_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let sender = [7; 16];
        let held = |path: &str, size: u64, len: usize| {
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            let partial =
                resumable::partial_name(name, &resumable::partial_key(&sender, path, size));
            std::fs::create_dir_all(dir.path().join(parent)).unwrap();
            std::fs::write(dir.path().join(parent).join(partial), vec![1; len]).unwrap();
        };
        held("here/a", 10, 4);
        held("here/deeper/b", 10, 6);
        std::fs::write(dir.path().join("here/same"), [2; 5]).unwrap();
        let entries = [
            OfferEntry::file("new/x", 10),
            OfferEntry::file("new/y", 10),
            OfferEntry::file("new/sub/z", 10),
            OfferEntry::file("here/a", 10),
            OfferEntry::file("here/same", 5),
            OfferEntry::file("here/deeper/b", 10),
            OfferEntry::file("new/w", 10),
        ];
        let mut new = NewFolders::default();
        let c = check(
            &entries,
            dir.path(),
            &sender,
            false,
            OnCollision::SkipIdentical,
            &mut new,
        )
        .unwrap();
        assert_eq!(c.held_lens, vec![0, 0, 0, 4, 5, 6, 0]);
        assert_eq!(
            c.copies,
            vec![false, false, false, false, true, false, false]
        );
        // Nothing was made for the missing folders.
        assert!(!dir.path().join("new").exists());
        // A later batch of the same transfer: what is in the folders found
        // missing now came from this transfer (here: a partial made by
        // hand, to show that they are not looked into again); the others
        // are looked at as before.
        held("new/sub/v", 10, 3);
        held("here/deeper/c", 10, 2);
        let later = [
            OfferEntry::file("new/sub/v", 10),
            OfferEntry::file("here/deeper/c", 10),
        ];
        let c = check(
            &later,
            dir.path(),
            &sender,
            false,
            OnCollision::SkipIdentical,
            &mut new,
        )
        .unwrap();
        assert_eq!(c.held_lens, vec![0, 2]);
        // Without the earlier batch, the partial is found.
        let fresh = check(
            &later,
            dir.path(),
            &sender,
            false,
            OnCollision::SkipIdentical,
            &mut NewFolders::default(),
        )
        .unwrap();
        assert_eq!(fresh.held_lens, vec![3, 2]);
    }
}
