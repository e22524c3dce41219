//! Tests of the file-system helpers: naming, placement, group commit, atomic writes.

#![allow(clippy::unwrap_used)]

use super::*;
use std::io::Write;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn joined_is_path_join() {
    for (parent, name) in [
        ("/a/b", "c.txt"),
        ("/a/b/", "c"),
        ("rel", "x y"),
        ("/", "f"),
    ] {
        let p = Path::new(parent);
        assert_eq!(joined(p, name), p.join(name));
    }
}

#[test]
fn numbered_names() {
    assert_eq!(numbered_name("report.pdf", 1), "report (1).pdf");
    assert_eq!(numbered_name(".bashrc", 1), ".bashrc (1)");
    assert_eq!(numbered_name("archive.tar.gz", 2), "archive.tar (2).gz");
    assert_eq!(numbered_name("noext", 3), "noext (3)");
    assert_eq!(numbered_name("日本.txt", 1), "日本 (1).txt");
    // A long name is cut to fit 255 bytes, on a character boundary, its
    // extension kept; an extension too long to keep goes with the name.
    let long = format!("{}.txt", "日".repeat(83));
    assert_eq!(long.len(), 253);
    let n = numbered_name(&long, 1);
    assert_eq!(n, format!("{} (1).txt", "日".repeat(82)));
    assert!(n.len() <= NAME_MAX, "{}", n.len());
    assert_eq!(
        numbered_name(&"L".repeat(255), 12),
        format!("{} (12)", "L".repeat(250))
    );
    let long_ext = format!("a.{}", "e".repeat(252));
    assert_eq!(
        numbered_name(&long_ext, 1),
        format!("{} (1)", &long_ext[..251])
    );
}

#[test]
fn a_second_file_of_a_name_near_the_limit_gets_a_shortened_free_name() {
    let t = tmp();
    let dir = t.path();
    let name = format!("{}.txt", "日".repeat(83));
    let mut got = Vec::new();
    for i in 0..3 {
        let p = finished_partial(dir, "src", format!("v{i}").as_bytes());
        let fin = commit_partial(&p, dir, &name).unwrap();
        assert_eq!(fs::read(&fin).unwrap(), format!("v{i}").as_bytes());
        got.push(fin.file_name().unwrap().to_string_lossy().into_owned());
    }
    let stem = "日".repeat(82);
    assert_eq!(
        got,
        [
            name.clone(),
            format!("{stem} (1).txt"),
            format!("{stem} (2).txt")
        ]
    );
    // The same for a small file that starts without a name (the receiver's
    // way), where the filesystem makes those.
    if let Some(file) = unnamed::create(&mut Folder::default(), dir).unwrap() {
        (&file).write_all(b"v3").unwrap();
        file.sync_all().unwrap();
        let fin = commit_unnamed(&file, dir, &name).unwrap();
        assert_eq!(fin, dir.join(format!("{stem} (3).txt")));
        assert_eq!(fs::read(&fin).unwrap(), b"v3");
    }
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

#[cfg(unix)]
#[test]
fn made_folders_make_a_tree_once_and_still_refuse_links() {
    let t = tmp();
    let dest = t.path().join("dest");
    let outside = t.path().join("outside");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::create_dir(dest.join("there")).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("there/link")).unwrap();
    let mut made = MadeFolders::default();
    for (components, want) in [
        (&["a", "b", "c"][..], "a/b/c"),
        (&["a", "b"][..], "a/b"),
        (&["a", "b", "d"][..], "a/b/d"),
        (&["there", "e"][..], "there/e"),
        (&[][..], ""),
    ] {
        let p = made.prepare(&dest, components).unwrap();
        assert_eq!(p, dest.join(want));
        assert!(p.is_dir(), "{want}");
    }
    let err = made.prepare(&dest, &["there", "link", "x"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("there/link"), "{err}");
    assert!(!outside.join("x").exists());
    fs::write(dest.join("a/file"), b"x").unwrap();
    let err = made.prepare(&dest, &["a", "file", "y"]).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    // Another destination is checked as such.
    let err = made.prepare(&dest.join("a/file"), &["z"]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(made.prepare(&outside, &["q"]).unwrap(), outside.join("q"));
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

/// Every placement method this OS has, best first.
fn placements() -> Vec<Placement> {
    let mut all = vec![Placement::best()];
    while let Some(next) = all.last().and_then(|p| p.fallback()) {
        all.push(next);
    }
    all
}

#[test]
fn every_placement_numbers_and_never_overwrites() {
    for method in placements() {
        let t = tmp();
        let dir = t.path();
        fs::write(dir.join("a.txt"), b"precious").unwrap();
        fs::create_dir(dir.join("a (1).txt")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.join("dangling"), dir.join("a (2).txt")).unwrap();
        let mut how = method;
        let mut got = Vec::new();
        for i in 0..3 {
            let p = finished_partial(dir, "a.txt", format!("new{i}").as_bytes());
            let fin = place(&p, dir, "a.txt", &mut how).unwrap();
            assert!(!p.exists(), "{method:?}");
            assert_eq!(fs::read(&fin).unwrap(), format!("new{i}").as_bytes());
            got.push(fin.file_name().unwrap().to_string_lossy().into_owned());
        }
        #[cfg(unix)]
        assert_eq!(got, ["a (3).txt", "a (4).txt", "a (5).txt"], "{method:?}");
        #[cfg(not(unix))]
        assert_eq!(got, ["a (2).txt", "a (3).txt", "a (4).txt"], "{method:?}");
        assert_eq!(how, method, "{method:?} is supported here");
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"precious");
        assert!(dir.join("a (1).txt").is_dir());
        assert!(!dir.join("dangling").exists());
        let err = place(&dir.join("gone.lspart"), dir, "gone", &mut how).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{method:?}");
        assert!(!dir.join("gone").exists());
    }
}

/// On Linux the first choice is one `renameat2(RENAME_NOREPLACE)`, and the
/// filesystems tests run on support it.
#[cfg(target_os = "linux")]
#[test]
fn linux_commits_with_rename_noreplace() {
    assert_eq!(Placement::best(), Placement::RenameNoReplace);
    let t = tmp();
    let dir = t.path();
    fs::write(dir.join("f"), b"old").unwrap();
    let p = finished_partial(dir, "f", b"new");
    let mut how = Placement::RenameNoReplace;
    assert!(matches!(
        how.attempt(&p, &dir.join("f")).unwrap(),
        Attempt::Taken
    ));
    assert_eq!(fs::read(dir.join("f")).unwrap(), b"old");
    assert_eq!(place(&p, dir, "f", &mut how).unwrap(), dir.join("f (1)"));
    assert_eq!(how, Placement::RenameNoReplace);
    assert_eq!(fs::read(dir.join("f (1)")).unwrap(), b"new");
}

#[test]
fn kernel_versions() {
    #[cfg(target_os = "linux")]
    {
        assert!(kernel_at_least("6.1.0-18-amd64", (5, 8)));
        assert!(kernel_at_least("5.8.0", (5, 8)));
        assert!(kernel_at_least("5.10", (5, 8)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!kernel_at_least("4.19.0", (5, 8)));
        assert!(!kernel_at_least("", (5, 8)));
        assert!(!kernel_at_least("garbage", (5, 8)));
    }
}

/// A partial written and verified but not synced, as the receiver pushes it.
fn unsynced_partial(dir: &Path, name: &str, content: &[u8]) -> (PathBuf, File) {
    let (p, mut f) = create_partial(dir, name).unwrap();
    f.write_all(content).unwrap();
    (p, f)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn group_commits_in_push_order_with_numbering() {
    let t = tmp();
    let root = t.path().to_path_buf();
    let sub = root.join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(root.join("x.txt"), b"precious").unwrap();
    // (parent, name): two files with one name in one group, one name
    // already taken, two directories.
    let files: [(&Path, &str); 5] = [
        (&root, "x.txt"),
        (&sub, "y"),
        (&root, "x.txt"),
        (&root, "z"),
        (&sub, "y"),
    ];
    let mut group = CommitGroup::new();
    assert!(group.is_empty() && group.deadline().is_none());
    for (slot, (parent, name)) in files.iter().enumerate() {
        let (p, f) = unsynced_partial(parent, name, format!("file {slot}").as_bytes());
        group
            .push(slot, f, Partial::Named(p), parent, name, 6)
            .unwrap();
    }
    assert_eq!(group.len(), 5);
    assert!(!group.is_full());
    assert!(group.deadline().is_some());
    let done = group.commit();
    assert!(group.is_empty() && group.deadline().is_none());
    let slots: Vec<usize> = done.iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4]);
    let paths: Vec<PathBuf> = done.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(
        paths,
        [
            root.join("x (1).txt"),
            sub.join("y"),
            root.join("x (2).txt"),
            root.join("z"),
            sub.join("y (1)"),
        ]
    );
    for (slot, p) in paths.iter().enumerate() {
        assert_eq!(fs::read(p).unwrap(), format!("file {slot}").as_bytes());
    }
    assert_eq!(fs::read(root.join("x.txt")).unwrap(), b"precious");
    assert_eq!(
        names_in(&root),
        ["sub", "x (1).txt", "x (2).txt", "x.txt", "z"]
    );
    assert_eq!(names_in(&sub), ["y", "y (1)"]);
    // The group is reusable.
    let (p, f) = unsynced_partial(&root, "z", b"again");
    group.push(7, f, Partial::Named(p), &root, "z", 5).unwrap();
    let done = group.commit();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, 7);
    assert_eq!(done[0].1.as_ref().unwrap(), &root.join("z (1)"));
}

#[test]
fn a_failing_member_does_not_block_the_others() {
    let t = tmp();
    let root = t.path().to_path_buf();
    let gone_dir = root.join("gone");
    fs::create_dir(&gone_dir).unwrap();
    let mut group = CommitGroup::new();
    let (p0, f0) = unsynced_partial(&root, "a", b"a");
    group
        .push(0, f0, Partial::Named(p0), &root, "a", 1)
        .unwrap();
    // Its partial disappears before the commit.
    let (p1, f1) = unsynced_partial(&root, "b", b"b");
    let vanished = p1.clone();
    group
        .push(1, f1, Partial::Named(p1), &root, "b", 1)
        .unwrap();
    // Its directory disappears before the commit.
    let (p2, f2) = unsynced_partial(&gone_dir, "c", b"c");
    group
        .push(2, f2, Partial::Named(p2), &gone_dir, "c", 1)
        .unwrap();
    let (p3, f3) = unsynced_partial(&root, "d", b"d");
    group
        .push(3, f3, Partial::Named(p3), &root, "d", 1)
        .unwrap();
    fs::remove_file(&vanished).unwrap();
    fs::remove_dir_all(&gone_dir).unwrap();
    let done = group.commit();
    let slots: Vec<usize> = done.iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, [0, 1, 2, 3]);
    assert_eq!(done[0].1.as_ref().unwrap(), &root.join("a"));
    assert_eq!(
        done[1].1.as_ref().unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        done[2].1.as_ref().unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(done[3].1.as_ref().unwrap(), &root.join("d"));
    assert_eq!(names_in(&root), ["a", "d"]);
}

#[test]
fn failed_group_sync_saves_nothing_on_a_guess() {
    fn broken(_: &File) -> io::Result<()> {
        Err(io::Error::other("injected syncfs failure"))
    }
    let t = tmp();
    let root = t.path().to_path_buf();
    let mut group = CommitGroup::new();
    group.sync_fs = broken;
    for (slot, name) in ["a", "b", "c"].iter().enumerate() {
        let (p, f) = unsynced_partial(&root, name, name.as_bytes());
        group
            .push(slot, f, Partial::Named(p), &root, name, 1)
            .unwrap();
    }
    let done = group.commit();
    // Every member of that file system fails, in order, and its partial is
    // removed (what is on disk is unknown: nothing may resume from it).
    assert_eq!(
        done.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for (_, r) in &done {
        let err = r.as_ref().unwrap_err();
        assert!(err.to_string().contains("syncfs failed"), "{err}");
    }
    assert!(names_in(&root).is_empty(), "{:?}", names_in(&root));
}

#[cfg(target_os = "linux")]
#[test]
fn names_in_several_folders_are_made_durable_by_one_more_syncfs_not_one_fsync_each() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    fn counted(f: &File) -> io::Result<()> {
        CALLS.fetch_add(1, Ordering::SeqCst);
        sync_filesystem(f)
    }
    fn then_broken(f: &File) -> io::Result<()> {
        match CALLS.fetch_add(1, Ordering::SeqCst) {
            0 => sync_filesystem(f),
            _ => Err(io::Error::other("injected syncfs failure")),
        }
    }
    let t = tmp();
    let root = t.path().to_path_buf();
    // (folders, syncfs expected): one folder keeps its fsync; three take one
    // syncfs more; that one failing still saves the names (fsynced one by one).
    for (folders, sync_fs, calls) in [
        (&["one"][..], counted as fn(&File) -> io::Result<()>, 1),
        (&["a", "b", "c"][..], counted, 2),
        (&["d", "e"][..], then_broken, 2),
    ] {
        CALLS.store(0, Ordering::SeqCst);
        let mut group = CommitGroup::new();
        group.sync_fs = sync_fs;
        let dirs: Vec<PathBuf> = folders.iter().map(|f| root.join(f)).collect();
        for (slot, dir) in dirs.iter().enumerate() {
            fs::create_dir(dir).unwrap();
            for name in ["x", "y"] {
                let (p, f) = unsynced_partial(dir, name, name.as_bytes());
                group
                    .push(slot, f, Partial::Named(p), dir, name, 1)
                    .unwrap();
            }
        }
        let done = group.commit();
        assert_eq!(CALLS.load(Ordering::SeqCst), calls, "{folders:?}");
        assert!(done.iter().all(|(_, r)| r.is_ok()), "{done:?}");
        for dir in &dirs {
            assert_eq!(names_in(dir), ["x", "y"]);
            assert_eq!(fs::read(dir.join("y")).unwrap(), b"y");
        }
    }
}

#[test]
fn a_file_alone_in_its_group_is_fsynced_not_the_filesystem() {
    fn broken(_: &File) -> io::Result<()> {
        Err(io::Error::other("injected syncfs failure"))
    }
    let t = tmp();
    let root = t.path().to_path_buf();
    let mut group = CommitGroup::new();
    group.sync_fs = broken;
    let (p, f) = unsynced_partial(&root, "one", b"one");
    group
        .push(0, f, Partial::Named(p), &root, "one", 3)
        .unwrap();
    let done = group.commit();
    assert_eq!(done[0].1.as_ref().unwrap(), &root.join("one"));
    assert_eq!(std::fs::read(root.join("one")).unwrap(), b"one");
}

#[test]
fn group_limits() {
    assert!(CommitGroup::wants(0));
    assert!(CommitGroup::wants(GROUP_FILE_LIMIT - 1));
    assert!(!CommitGroup::wants(GROUP_FILE_LIMIT));
    let t = tmp();
    let root = t.path().to_path_buf();
    let mut group = CommitGroup::new();
    let names: Vec<String> = (0..GROUP_MAX_FILES).map(|i| format!("f{i}")).collect();
    for (slot, name) in names.iter().enumerate() {
        assert!(!group.is_full());
        let (p, f) = unsynced_partial(&root, name, b"");
        group
            .push(slot, f, Partial::Named(p), &root, name, 0)
            .unwrap();
    }
    assert!(group.is_full());
    assert!(group.commit().iter().all(|(_, r)| r.is_ok()));
    assert!(!group.is_full());
    let (p, f) = unsynced_partial(&root, "big", b"");
    group
        .push(0, f, Partial::Named(p), &root, "big", GROUP_MAX_BYTES)
        .unwrap();
    assert!(group.is_full());
    group.commit();
    // A bad name is refused at once, and leaves the group as it was.
    let (p, f) = unsynced_partial(&root, "ok", b"");
    assert!(
        group
            .push(0, f, Partial::Named(p), &root, "../x", 0)
            .is_err()
    );
    assert!(group.is_empty());
}

/// Where the kernel and filesystem allow it, the group keeps one open
/// handle for its filesystem and syncs it once; elsewhere it fsyncs each
/// file as it comes and keeps none.
#[cfg(target_os = "linux")]
#[test]
fn group_keeps_one_handle_per_filesystem() {
    let t = tmp();
    let root = t.path().to_path_buf();
    let mut group = CommitGroup::new();
    let names = ["a", "b", "c"];
    let mut trusted = false;
    for (slot, name) in names.iter().enumerate() {
        let (p, f) = unsynced_partial(&root, name, b"x");
        if slot == 0 {
            trusted = syncfs_is_trusted(&f);
        }
        group
            .push(slot, f, Partial::Named(p), &root, name, 1)
            .unwrap();
    }
    assert_eq!(group.filesystems.len(), 1);
    assert_eq!(group.filesystems[0].witness.is_some(), trusted);
    assert!(group.members.iter().all(|m| m.fs.is_some() == trusted));
    assert!(group.commit().iter().all(|(_, r)| r.is_ok()));
    assert!(group.filesystems.is_empty());
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

/// Three groups through a [`Committer`] (on its thread, and inline), the
/// second with a failing `syncfs`: every file's result comes back, in
/// hand-over and push order, the second group's files fail and stay
/// unnamed, the others are saved with their bytes.
#[test]
fn committer_reports_every_group_in_order_when_one_sync_fails() {
    fn broken(_: &File) -> io::Result<()> {
        Err(io::Error::other("injected syncfs failure"))
    }
    for threaded in [true, false] {
        let t = tmp();
        let root = t.path().to_path_buf();
        let names = ["a", "b", "c", "d", "e", "f"];
        let reports = std::thread::scope(|scope| {
            let mut committer = if threaded {
                Committer::start(scope)
            } else {
                Committer::inline()
            };
            let mut filling = CommitGroup::new();
            let mut reports = Vec::new();
            for (g, pair) in names.chunks(2).enumerate() {
                filling.sync_fs = if g == 1 { broken } else { sync_filesystem };
                for (k, name) in pair.iter().enumerate() {
                    let (p, f) = unsynced_partial(&root, name, name.as_bytes());
                    filling
                        .push(2 * g + k, f, Partial::Named(p), &root, name, 1)
                        .unwrap();
                }
                let group = filling.take();
                assert!(filling.is_empty() && filling.deadline().is_none());
                committer.commit(group);
                reports.extend(committer.ready());
            }
            reports.extend(committer.finish());
            assert!(committer.finish().is_empty());
            reports
        });
        let slots: Vec<Vec<usize>> = reports
            .iter()
            .map(|r| r.iter().map(|(slot, _)| *slot).collect())
            .collect();
        assert_eq!(
            slots,
            [vec![0, 1], vec![2, 3], vec![4, 5]],
            "threaded {threaded}"
        );
        for (slot, result) in reports.iter().flatten() {
            let name = names[*slot];
            if (2..4).contains(slot) {
                let err = result.as_ref().unwrap_err();
                assert!(err.to_string().contains("syncfs failed"), "{err}");
            } else {
                assert_eq!(result.as_ref().unwrap(), &root.join(name));
                assert_eq!(fs::read(root.join(name)).unwrap(), name.as_bytes());
            }
        }
        assert_eq!(names_in(&root), ["a", "b", "e", "f"], "threaded {threaded}");
    }
}

/// Files of one folder share one stat for their filesystem; a take() starts
/// the next group afresh (its own witness), and both groups commit.
#[test]
fn taken_groups_commit_independently() {
    let t = tmp();
    let root = t.path().to_path_buf();
    let sub = root.join("sub");
    fs::create_dir(&sub).unwrap();
    let mut group = CommitGroup::new();
    for (slot, (dir, name)) in [(&root, "1"), (&root, "2"), (&sub, "3")].iter().enumerate() {
        let (p, f) = unsynced_partial(dir, name, name.as_bytes());
        group
            .push(slot, f, Partial::Named(p), dir, name, 1)
            .unwrap();
    }
    assert_eq!(group.filesystems.len(), 1);
    let mut first = group.take();
    let (p, f) = unsynced_partial(&sub, "4", b"4");
    group.push(3, f, Partial::Named(p), &sub, "4", 1).unwrap();
    assert_eq!((first.len(), group.len()), (3, 1));
    let a = first.commit();
    let b = group.commit();
    assert!(a.iter().chain(&b).all(|(_, r)| r.is_ok()));
    assert_eq!(fs::read(sub.join("4")).unwrap(), b"4");
    assert_eq!(names_in(&root), ["1", "2", "sub"]);
}

/// The exclusive create of a resumable partial: a new file, locked (another
/// transfer steps aside); a name already taken, by a partial or a link, is
/// never opened through it.
#[cfg(unix)]
#[test]
fn create_resumable_is_exclusive_and_locked() {
    let t = tmp();
    let dir = t.path();
    let mut r = resumable::create_resumable(dir, "f.k.lspart")
        .unwrap()
        .unwrap();
    assert_eq!((r.len, r.path.clone()), (0, dir.join("f.k.lspart")));
    r.file.write_all(b"data").unwrap();
    // Taken: no second create, and the lock keeps another transfer out.
    assert!(
        resumable::create_resumable(dir, "f.k.lspart")
            .unwrap()
            .is_none()
    );
    assert!(
        resumable::open_resumable(dir, "f.k.lspart")
            .unwrap()
            .is_none()
    );
    drop(r);
    let again = resumable::open_resumable(dir, "f.k.lspart")
        .unwrap()
        .unwrap();
    assert_eq!(again.len, 4);
    // A symlink under the name, dangling or not, is not followed.
    let outside = dir.join("outside");
    fs::write(&outside, b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("s.k.lspart")).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("d.k.lspart")).unwrap();
    assert!(
        resumable::create_resumable(dir, "s.k.lspart")
            .unwrap()
            .is_none()
    );
    assert!(
        resumable::create_resumable(dir, "d.k.lspart")
            .unwrap()
            .is_none()
    );
    assert_eq!(fs::read(&outside).unwrap(), b"keep");
    assert!(!dir.join("nowhere").exists());
    assert!(resumable::create_resumable(dir, "../x").is_err());
}

/// `try_commit` hands a group over only when the committer is free: while
/// it syncs the group before (held here until released), the next group
/// comes back to keep filling; once it is free, the group is taken, and
/// every file of both is saved in order. Without a thread it commits at once.
#[test]
fn try_commit_gives_the_group_back_while_the_committer_is_busy() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    static SYNCING: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    fn held(file: &File) -> io::Result<()> {
        SYNCING.fetch_add(1, Ordering::SeqCst);
        while !RELEASE.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        sync_filesystem(file)
    }
    let t = tmp();
    let root = t.path().to_path_buf();
    let names: Vec<String> = (0..5).map(|slot| format!("f{slot}")).collect();
    fn fill<'a>(
        group: &mut CommitGroup<'a>,
        root: &'a Path,
        names: &'a [String],
        slots: std::ops::Range<usize>,
    ) {
        for slot in slots {
            let name = &names[slot];
            let (p, f) = unsynced_partial(root, name, name.as_bytes());
            group
                .push(slot, f, Partial::Named(p), root, name, 1)
                .unwrap();
        }
    }
    let reports = std::thread::scope(|scope| {
        let mut committer = Committer::start(scope);
        let mut first = CommitGroup::new();
        first.sync_fs = held;
        fill(&mut first, &root, &names, 0..2);
        committer.commit(first);
        while SYNCING.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut second = CommitGroup::new();
        fill(&mut second, &root, &names, 2..4);
        let mut second = committer
            .try_commit(second)
            .expect("a busy committer gives the group back");
        assert_eq!(second.len(), 2);
        fill(&mut second, &root, &names, 4..5);
        RELEASE.store(true, Ordering::SeqCst);
        let mut waiting = Some(second);
        while let Some(group) = waiting.take() {
            waiting = committer.try_commit(group);
            if waiting.is_some() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        committer.finish()
    });
    let slots: Vec<Vec<usize>> = reports
        .iter()
        .map(|r| r.iter().map(|(slot, _)| *slot).collect())
        .collect();
    assert_eq!(slots, [vec![0, 1], vec![2, 3, 4]]);
    for (slot, result) in reports.iter().flatten() {
        let name = format!("f{slot}");
        assert_eq!(result.as_ref().unwrap(), &root.join(&name));
        assert_eq!(fs::read(root.join(&name)).unwrap(), name.as_bytes());
    }

    let mut inline = Committer::inline();
    let mut group = CommitGroup::new();
    let (p, f) = unsynced_partial(&root, "g", b"g");
    group.push(0, f, Partial::Named(p), &root, "g", 1).unwrap();
    assert!(inline.try_commit(group).is_none());
    let done = inline.ready();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0][0].1.as_ref().unwrap(), &root.join("g"));
}

#[test]
fn two_batches_staging_one_new_folder_name_each_get_a_name_of_their_own_and_say_which() {
    let d = tmp();
    let root = d.path();
    // Two senders' batches at once, each making `photos` (missing); the
    // first batch's two threads share its key.
    let mut a = MadeFolders::staging(1);
    let mut a2 = MadeFolders::staging(1);
    let mut b = MadeFolders::staging(2);
    let (a_dir, a_at) = a.prepare_staged(root, &["photos", "2024"]).unwrap();
    let (b_dir, b_at) = b.prepare_staged(root, &["photos"]).unwrap();
    let (a2_dir, _) = a2.prepare_staged(root, &["photos"]).unwrap();
    assert_eq!(
        a2_dir,
        a_dir.parent().unwrap(),
        "one batch, one hidden folder"
    );
    assert_ne!(a_dir.parent().unwrap(), b_dir);
    fs::write(a_dir.join("a.jpg"), b"a").unwrap();
    fs::write(b_dir.join("b.jpg"), b"b").unwrap();
    a.absorb(a2);
    let (a, b) = (a.into_staged(), b.into_staged());
    let a_named = a.named(a_at.unwrap(), &a_dir.join("a.jpg"));
    let b_named = b.named(b_at.unwrap(), &b_dir.join("b.jpg"));
    assert_eq!(a_named, root.join("photos/2024/a.jpg"));
    assert_eq!(b_named, root.join("photos (1)/b.jpg"));
    // Published in the other order: each where it said.
    b.publish();
    a.publish();
    assert_eq!(fs::read(&a_named).unwrap(), b"a");
    assert_eq!(fs::read(&b_named).unwrap(), b"b");
    drop((a, b));
    // Released once published: a later batch makes a missing name as it is.
    fs::remove_dir_all(root.join("photos (1)")).unwrap();
    let mut c = MadeFolders::staging(3);
    let (_, c_at) = c.prepare_staged(root, &["photos (1)"]).unwrap();
    let c = c.into_staged();
    assert_eq!(
        c.named(c_at.unwrap(), Path::new("nowhere")),
        PathBuf::from("nowhere")
    );
    assert_eq!(c.folders[0].named, root.join("photos (1)"));
}
