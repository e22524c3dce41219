//! A name already taken on the receiver (`listen --on-collision`), and the
//! modification times that travel with the files.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::{self, Node, Pair, assert_sent_ok, names_in, random_bytes, text};

/// The sessions `node` recorded, oldest first.
fn sessions(node: &Node) -> Vec<Value> {
    let out = common::run(node.cmd().args(["sessions", "--json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let peers: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    peers
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["sessions"].as_array().unwrap().clone())
        .collect()
}

/// Every file below `root`, as (relative path, content), sorted.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walk(root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// 2001-09-09 01:46:40.123456789 UTC.
fn long_ago() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789)
}

#[test]
fn resending_a_folder_under_skip_identical_sends_only_what_changed() {
    let p = Pair::new();
    let src = p.sender.dir("proj");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("run.sh"), random_bytes(1, 10_000)).unwrap();
    std::fs::write(src.join("data.bin"), random_bytes(2, 300_000)).unwrap();
    std::fs::write(src.join("sub/README.md"), random_bytes(3, 4_321)).unwrap();
    let mut l = p
        .receiver
        .listen(&p.inbox, &["--yes", "--on-collision", "skip-identical"]);
    assert_sent_ok(&p.sender.send(l.port, &[&src]), 3);
    l.wait_received();

    // One file changes (same size, other bytes); the other two do not.
    std::fs::write(src.join("sub/README.md"), random_bytes(4, 4_321)).unwrap();
    let out = p.sender.send(l.port, &[&src]);
    assert_sent_ok(&out, 3);
    let err = text(&out.stderr);
    assert!(
        err.contains("skipped 2 identical files (302.73 KiB): the receiver already has them"),
        "{err}"
    );
    assert!(
        err.contains("proj/sub/README.md: differs from the receiver's copy; sending it whole"),
        "{err}"
    );
    l.wait_received();
    // Only the changed file's bytes crossed.
    let sent = sessions(&p.sender);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0]["bytes"], 314_321, "{:#}", sent[0]);
    assert_eq!(sent[1]["bytes"], 4_321, "{:#}", sent[1]);
    // The receiver's tree is the sender's, byte for byte, with nothing beside it.
    assert_eq!(tree(&p.inbox.join("proj")), tree(&src));
    assert_eq!(names_in(&p.inbox), ["proj"]);
}

#[test]
fn overwrite_replaces_rename_keeps_both() {
    let p = Pair::new();
    let f = p.sender.file("src", "notes.txt", b"first version\n");
    for (policy, expect) in [
        (
            "overwrite",
            vec![("notes.txt", &b"second, longer version\n"[..])],
        ),
        (
            "rename",
            vec![
                ("notes (1).txt", &b"second, longer version\n"[..]),
                ("notes.txt", &b"first version\n"[..]),
            ],
        ),
        // A different file replaces the old one (an rsync-like update).
        (
            "skip-identical",
            vec![("notes.txt", &b"second, longer version\n"[..])],
        ),
    ] {
        std::fs::write(&f, b"first version\n").unwrap();
        let inbox = p.receiver.dir(&format!("inbox-{policy}"));
        let mut l = p
            .receiver
            .listen(&inbox, &["--yes", "--on-collision", policy]);
        assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
        l.wait_received();
        std::fs::write(&f, b"second, longer version\n").unwrap();
        assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
        let (_, saved) = l.wait_received();
        let got: Vec<(String, Vec<u8>)> = tree(&inbox);
        let want: Vec<(String, Vec<u8>)> = expect
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.to_vec()))
            .collect();
        assert_eq!(got, want, "{policy}");
        let last = if policy == "rename" {
            "notes (1).txt"
        } else {
            "notes.txt"
        };
        assert_eq!(saved, [inbox.join(last)], "{policy}");
    }
}

#[test]
fn the_default_never_overwrites_and_the_setting_is_honoured() {
    let p = Pair::new();
    let f = p.sender.file("src", "a.txt", b"one");
    let inbox = p.receiver.dir("in");
    std::fs::write(inbox.join("a.txt"), b"one").unwrap();
    // The same bytes, but not the same file (another modification time),
    // and the default is rename: both stay.
    set_mtime(&inbox.join("a.txt"), long_ago());
    let mut l = p.receiver.listen(&inbox, &["--yes"]);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_eq!(names_in(&inbox), ["a (1).txt", "a.txt"]);
    drop(l);
    let set = common::run(
        p.receiver
            .cmd()
            .args(["config", "set", "on-collision", "overwrite"]),
    );
    assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    let bad = common::run(
        p.receiver
            .cmd()
            .args(["config", "set", "on-collision", "merge"]),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    std::fs::write(&f, b"two").unwrap();
    let mut l = p.receiver.listen(&inbox, &["--yes"]);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_eq!(names_in(&inbox), ["a (1).txt", "a.txt"]);
    assert_eq!(std::fs::read(inbox.join("a.txt")).unwrap(), b"two");
}

#[test]
fn modification_times_arrive_and_are_offered() {
    let p = Pair::new();
    let src = p.sender.dir("t");
    std::fs::write(src.join("old.txt"), b"written long ago").unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(9, 3 << 20)).unwrap();
    set_mtime(&src.join("old.txt"), long_ago());
    let big_time = long_ago() + Duration::from_secs(86_400);
    set_mtime(&src.join("big.bin"), big_time);
    let mut l = p.receiver.listen(
        &p.inbox,
        &["--yes", "--json", "--on-collision", "skip-identical"],
    );
    assert_sent_ok(&p.sender.send(l.port, &[&src]), 2);
    let offer = l.wait_line(|l| l.starts_with(r#"{"event":"offer""#));
    let offer: Value = serde_json::from_str(&offer).unwrap();
    let entries = offer["entries"].as_array().unwrap();
    assert_eq!(entries[0]["path"], "t");
    assert!(entries[0].get("modified").is_none(), "{offer:#}");
    assert_eq!(entries[1]["path"], "t/big.bin");
    assert_eq!(entries[1]["modified"], 1_000_086_400);
    assert_eq!(entries[2]["modified"], 1_000_000_000);
    l.wait_line(|l| l.starts_with(r#"{"event":"transfer_done""#));
    // Small files (committed in a group) and large ones (alone) alike, to the nanosecond.
    assert_eq!(mtime(&p.inbox.join("t/old.txt")), long_ago());
    assert_eq!(mtime(&p.inbox.join("t/big.bin")), big_time);

    // An identical copy whose time changed here gets the sender's time back.
    set_mtime(&p.inbox.join("t/old.txt"), SystemTime::now());
    let out = p.sender.send(l.port, &[&src]);
    assert_sent_ok(&out, 2);
    assert!(
        text(&out.stderr).contains("skipped 2 identical files"),
        "{}",
        text(&out.stderr)
    );
    l.wait_line(|l| l.starts_with(r#"{"event":"transfer_done""#));
    assert_eq!(mtime(&p.inbox.join("t/old.txt")), long_ago());
}

#[test]
fn an_offer_refused_for_a_folder_it_cannot_make_leaves_none_of_the_folders_it_made() {
    let p = Pair::new();
    let src = p.sender.dir("proj");
    std::fs::create_dir_all(src.join("a/deep")).unwrap();
    std::fs::create_dir_all(src.join("m")).unwrap();
    std::fs::create_dir_all(src.join("z")).unwrap();
    std::fs::write(src.join("a/deep/f.txt"), b"deep\n").unwrap();
    std::fs::write(src.join("m/g.txt"), b"in m\n").unwrap();
    std::fs::write(src.join("z/h.txt"), b"in z\n").unwrap();
    // The receiver has a folder proj already, with a file where the offer
    // has the folder proj/m.
    std::fs::create_dir(p.inbox.join("proj")).unwrap();
    std::fs::write(p.inbox.join("proj/m"), b"a file of mine\n").unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let out = p.sender.send(l.port, &[&src]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("cannot create the folder proj/m"), "{err}");
    // proj/a and proj/a/deep were made for the offer, then removed; proj
    // was there before and stays, with the file in the way untouched.
    assert_eq!(names_in(&p.inbox), ["proj"]);
    assert_eq!(names_in(&p.inbox.join("proj")), ["m"]);
    assert_eq!(
        std::fs::read(p.inbox.join("proj/m")).unwrap(),
        b"a file of mine\n"
    );
    // The listener serves the next offer.
    let ok = p.sender.file("src", "after.txt", b"after\n");
    assert_sent_ok(&p.sender.send(l.port, &[&ok]), 1);
    l.wait_received();
    assert_eq!(
        std::fs::read(p.inbox.join("after.txt")).unwrap(),
        b"after\n"
    );
}

/// Under the default policy (rename), the same folder sent again (a send
/// run again to resume it) sends none of the files that arrived: each is
/// found by its size and modification time, then confirmed by its hash.
/// A file whose bytes differ under the same size and time still arrives
/// beside the old one; so does one that only has another time.
#[test]
fn the_same_folder_sent_again_under_rename_sends_nothing_twice() {
    let p = Pair::new();
    let src = p.sender.dir("src").join("proj");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("sub/big.bin"), random_bytes(7, 300_000)).unwrap();
    std::fs::write(src.join("sub/c.txt"), b"gamma").unwrap();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    assert_sent_ok(&p.sender.send(l.port, &[&src]), 3);
    l.wait_received();

    let again = p.sender.send(l.port, &[&src]);
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(
        err.contains("skipped 3 identical files (292.98 KiB): the receiver already has them\n"),
        "{err}"
    );
    l.wait_received();
    assert_eq!(tree(&p.inbox.join("proj")), tree(&src), "nothing twice");

    // Other bytes, same size and time: the hash tells them apart.
    let t = mtime(&src.join("a.txt"));
    std::fs::write(src.join("a.txt"), b"ALPHA").unwrap();
    set_mtime(&src.join("a.txt"), t);
    // Same bytes, another time: not looked at, kept apart as before.
    set_mtime(&src.join("sub/c.txt"), long_ago());
    let third = p.sender.send(l.port, &[&src]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third.stderr));
    l.wait_received();
    let got: Vec<String> = tree(&p.inbox.join("proj"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        got,
        [
            "a (1).txt",
            "a.txt",
            "sub/big.bin",
            "sub/c (1).txt",
            "sub/c.txt"
        ]
    );
    assert_eq!(
        std::fs::read(p.inbox.join("proj/a (1).txt")).unwrap(),
        b"ALPHA"
    );
    assert_eq!(std::fs::read(p.inbox.join("proj/a.txt")).unwrap(), b"alpha");
}

/// More files found the same again than one Answer may hold (4096): those
/// past the limit cross the wire, are compared by hash with the ones there,
/// and are not saved twice either.
#[test]
fn the_same_files_again_past_the_answers_limit_are_not_saved_twice() {
    let p = Pair::new();
    let src = p.sender.dir("src").join("many");
    std::fs::create_dir_all(&src).unwrap();
    const N: usize = 4_100;
    for i in 0..N {
        std::fs::write(src.join(format!("f{i:04}")), format!("file {i}")).unwrap();
    }
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    assert_sent_ok(&p.sender.send(l.port, &[&src]), N);
    l.wait_received();
    let again = p.sender.send(l.port, &[&src]);
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(err.contains("skipped 4096 identical files ("), "{err}");
    l.wait_received();
    assert_eq!(tree(&p.inbox.join("many")), tree(&src), "nothing twice");
}
