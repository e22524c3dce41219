//! Partial files that outlive a connection, so that a transfer can resume.
//!
//! A resumable partial is named after what it will become and who sends it:
//! `<file name>.<key>.lspart`, where the key is derived from the sender's node
//! id, the wire path and the size ([`partial_key`]). The same send, run again
//! after an interruption (or after a restart of the receiver), finds it under
//! that name; another sender, another file or another size never does. The
//! name *is* the bookkeeping: nothing else has to survive a crash, and the
//! content is checked by hash against the sender's file before it is reused.
//!
//! A partial is used by one transfer at a time: it is locked (`flock`) from
//! when it is opened until it has its final name. It is never followed
//! through a symlink and never used when it is not a plain file with a single
//! link; the caller then falls back to a fresh, non-resumable partial name.
//!
//! Resume needs those guarantees, so it is Unix-only: elsewhere
//! [`open_resumable`] always steps aside and every transfer starts whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{NAME_MAX, PARTIAL_SUFFIX, check_component};

/// Hex digits of the key in a partial's name.
const KEY_HEX: usize = 16;
/// Read size when hashing a held prefix. Measured on a 4 GiB prefix in the
/// page cache (2 cores, AVX-512): from 128 KiB to 1 MiB with
/// [`HASH_BUFFERS`] of them in flight all hash at the same speed; 512 KiB
/// keeps the buffers in the caches.
const HASH_BUFFER: usize = 512 << 10;
/// Buffers in flight between the thread that reads a long prefix and the one
/// that hashes it (two starve the hasher; more than four gain nothing).
const HASH_BUFFERS: usize = 4;
/// From how many bytes a prefix is read on a thread of its own while the
/// caller hashes (below, one thread does both: a thread costs more than it
/// saves).
const PIPELINE_FROM: u64 = 4 << 20;
/// The slowest hashing of a held prefix a peer must wait for, in bytes per
/// second (a slow disk): waits for the other side's hashing grow by its size
/// at this rate.
pub const SLOWEST_HASHING: u64 = 50 << 20;

/// How long to allow the other side for hashing `bytes` of held prefixes.
#[must_use]
pub fn hashing_time(bytes: u64) -> std::time::Duration {
    std::time::Duration::from_secs(bytes / SLOWEST_HASHING)
}

/// The key of a resumable partial: who sends which file of which size, as
/// 16 hex digits (kept without an allocation: every file of an
/// offer has one, and most never need their partial's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialKey([u8; KEY_HEX]);

impl PartialKey {
    /// The hex digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for PartialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of the partial of `wire_path`, `size` bytes, from `sender`.
#[must_use]
pub fn partial_key(sender: &[u8; 16], wire_path: &str, size: u64) -> PartialKey {
    let mut h = blake3::Hasher::new();
    h.update(b"localstream partial v1\0");
    h.update(sender);
    h.update(&(wire_path.len() as u64).to_le_bytes());
    h.update(wire_path.as_bytes());
    h.update(&size.to_le_bytes());
    let mut key = [0; KEY_HEX];
    key.copy_from_slice(&h.finalize().to_hex().as_bytes()[..KEY_HEX]);
    PartialKey(key)
}

/// The partial's file name: `<file name>.<key>.lspart`, the file name cut (on
/// a character boundary) so that the whole stays within 255 bytes.
#[must_use]
pub fn partial_name(file_name: &str, key: &PartialKey) -> String {
    let key = key.as_str();
    let room = NAME_MAX - (key.len() + 1 + PARTIAL_SUFFIX.len());
    let mut end = file_name.len().min(room);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    let mut name = String::with_capacity(end + 1 + key.len() + PARTIAL_SUFFIX.len());
    name.push_str(&file_name[..end]);
    name.push('.');
    name.push_str(key);
    name.push_str(PARTIAL_SUFFIX);
    name
}

/// Bytes held in the partial `name` in `parent`, if it is a plain file
/// (without opening it; a symlink counts as nothing).
#[must_use]
pub fn held_len(parent: &Path, name: &str) -> u64 {
    match std::fs::symlink_metadata(parent.join(name)) {
        Ok(m) if m.file_type().is_file() => m.len(),
        _ => 0,
    }
}

/// An open, locked resumable partial.
#[derive(Debug)]
pub struct Resumable {
    /// Its path.
    pub path: PathBuf,
    /// Open for reading and writing, positioned at the start.
    pub file: File,
    /// Its length when opened.
    pub len: u64,
}

/// Opens (creating it if needed) the resumable partial `name` in `parent`.
///
/// Returns `Ok(None)` when it cannot be used safely or exclusively: another
/// transfer holds it, or it is a symlink, not a plain file, or has other
/// links. The caller then uses a fresh partial instead.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a bad `name`, or any error from
/// creating the file (a full disk, a read-only destination).
pub fn open_resumable(parent: &Path, name: &str) -> io::Result<Option<Resumable>> {
    check_component(name)?;
    if cfg!(not(unix)) {
        return Ok(None);
    }
    let path = parent.join(name);
    // Whatever is there and is not a plain file (a directory a hostile
    // offer created, a pipe, a device) is left alone: opening some of them
    // would fail, block or have side effects.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.file_type().is_file() => {
            tracing::warn!(path = %path.display(), "partial file name is taken by something else: not used");
            return Ok(None);
        }
        _ => {}
    }
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // NONBLOCK: a pipe swapped in after the check above must not hang
        // us (regular files ignore it).
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        opts.mode(0o644).custom_flags(flags.bits() as i32);
    }
    let file = match opts.open(&path) {
        Ok(f) => f,
        // ELOOP: the name is a symlink. Not ours to follow.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            tracing::warn!(path = %path.display(), "partial file is a symlink: not used");
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::IsADirectory => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || links(&meta) != 1 {
        tracing::warn!(path = %path.display(), "partial file is not a plain file: not used");
        return Ok(None);
    }
    if !lock(&file)? {
        tracing::info!(path = %path.display(), "partial file in use by another transfer");
        return Ok(None);
    }
    // Between our open and our lock, its previous holder may have given it
    // its final name (and a new partial may be there now): the lock is only
    // good if the name still leads to what we opened.
    if !same_file(&meta, &path) {
        tracing::info!(path = %path.display(), "partial file moved while opening it");
        return Ok(None);
    }
    Ok(Some(Resumable {
        path,
        file,
        len: meta.len(),
    }))
}

/// Creates the resumable partial `name` in `parent` when nothing has that
/// name yet, and locks it: one exclusive create (`O_CREAT|O_EXCL`, which
/// never follows a link and never opens what is there) instead of
/// [`open_resumable`]'s look before it, for the common case of a file
/// nothing is held for. The lock keeps its purpose: between the create and
/// the lock another transfer may have taken the new file (and given it its
/// final name), so the lock counts only if the name still leads to it.
///
/// Returns `Ok(None)` when the name is taken (the caller then tries
/// [`open_resumable`]) or the new file was taken over before it was locked.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a bad `name`, or any error from
/// creating the file (a full disk, a read-only destination).
pub fn create_resumable(parent: &Path, name: &str) -> io::Result<Option<Resumable>> {
    check_component(name)?;
    if cfg!(not(unix)) {
        return Ok(None);
    }
    let path = parent.join(name);
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    let file = match opts.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !lock(&file)? || !same_file(&meta, &path) {
        tracing::info!(path = %path.display(), "new partial file taken by another transfer");
        return Ok(None);
    }
    Ok(Some(Resumable { path, file, len: 0 }))
}

#[cfg(unix)]
fn same_file(opened: &std::fs::Metadata, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .is_ok_and(|now| (now.dev(), now.ino()) == (opened.dev(), opened.ino()))
}

#[cfg(not(unix))]
fn same_file(_opened: &std::fs::Metadata, _path: &Path) -> bool {
    false
}

#[cfg(unix)]
fn links(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn links(_meta: &std::fs::Metadata) -> u64 {
    1
}

/// Takes an exclusive lock without waiting; `false` when someone holds it.
#[cfg(unix)]
fn lock(file: &File) -> io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(unix))]
fn lock(_file: &File) -> io::Result<bool> {
    Ok(false)
}

/// BLAKE3 of the first `len` bytes of `file` (read from the start), and the
/// hasher, ready to take the bytes that follow.
///
/// # Errors
/// Any read error, or [`io::ErrorKind::UnexpectedEof`] when the file is shorter.
pub fn hash_prefix(file: &mut File, len: u64) -> io::Result<([u8; 32], blake3::Hasher)> {
    hash_prefix_counting(file, len, |_| Ok(()))
}

/// [`hash_prefix`], telling `hashed` the bytes of each read as it goes (for
/// a progress bar over a long check); an error it returns ends the hashing
/// with that error (a listener shutting down does not read 4 GiB first).
///
/// Exactly `len` bytes are hashed, however long the file is now; a file that
/// has fewer is an error. A long prefix is read on a second thread while this
/// one hashes: reading from the page cache (a copy) costs as much CPU as
/// BLAKE3 itself, so the two overlap on two cores (a 4 GiB prefix in the page
/// cache: 1.2 s on one thread, 0.8 s so). The file is left positioned at
/// `len` when it succeeds. Memory: four buffers of 512 KiB.
///
/// # Errors
/// Any read error, or [`io::ErrorKind::UnexpectedEof`] when the file is shorter.
pub fn hash_prefix_counting(
    file: &mut File,
    len: u64,
    mut hashed: impl FnMut(u64) -> io::Result<()>,
) -> io::Result<([u8; 32], blake3::Hasher)> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    advise_sequential(file, len);
    let mut hasher = blake3::Hasher::new();
    if len < PIPELINE_FROM || !hash_pipelined(file, len, &mut hasher, &mut hashed)? {
        hash_sequential(file, len, &mut hasher, &mut hashed)?;
    }
    Ok((*hasher.finalize().as_bytes(), hasher))
}

/// Tells the kernel that the first `len` bytes are read once, in order: on
/// Linux, twice the read-ahead. A held prefix is often not in the page cache
/// (the receiver drops what it wrote as it streams); reading one on this
/// machine's disk ran at 1.6-1.7 GB/s so, 0.8-1.6 GB/s without.
#[cfg(target_os = "linux")]
fn advise_sequential(file: &File, len: u64) {
    use rustix::fs::{Advice, fadvise};
    // Only advice: a failure changes nothing but the speed.
    let _ = fadvise(file, 0, std::num::NonZeroU64::new(len), Advice::Sequential);
}

/// No read-ahead advice elsewhere.
#[cfg(not(target_os = "linux"))]
fn advise_sequential(_file: &File, _len: u64) {}

/// Reads `len` bytes from `file`'s position and hashes them on this thread.
fn hash_sequential(
    file: &File,
    len: u64,
    hasher: &mut blake3::Hasher,
    hashed: &mut impl FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; HASH_BUFFER];
    let mut left = len;
    while left > 0 {
        let n = read_some(file, &mut buf, left)?;
        hasher.update(&buf[..n]);
        left -= n as u64;
        hashed(n as u64)?;
    }
    Ok(())
}

/// [`hash_sequential`] with the reads on a thread of its own, which fills
/// the buffers this thread hashes and hands back. `Ok(false)` (nothing read)
/// when no thread could be started.
fn hash_pipelined(
    file: &File,
    len: u64,
    hasher: &mut blake3::Hasher,
    hashed: &mut impl FnMut(u64) -> io::Result<()>,
) -> io::Result<bool> {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(HASH_BUFFERS);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(HASH_BUFFERS);
        for _ in 0..HASH_BUFFERS {
            // Cannot fail: the channel has room for them all.
            let _ = empty_tx.send(vec![0u8; HASH_BUFFER]);
        }
        let reader = std::thread::Builder::new()
            .name("prefix-read".into())
            .spawn_scoped(scope, move || {
                // Ends when all is read, at an error, or when the hashing
                // side has gone (its channel ends are dropped).
                let mut left = len;
                while left > 0 {
                    let Ok(mut buf) = empty_rx.recv() else { return };
                    buf.resize(HASH_BUFFER, 0);
                    let read = read_some(file, &mut buf, left).map(|n| {
                        buf.truncate(n);
                        left -= n as u64;
                        buf
                    });
                    let failed = read.is_err();
                    if full_tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
        if let Err(e) = reader {
            tracing::debug!(error = %e, "no thread to read a held prefix: hashing on one");
            return Ok(false);
        }
        let mut left = len;
        while left > 0 {
            let buf = full_rx
                .recv()
                .map_err(|_| io::Error::other("the thread reading the file stopped"))??;
            hasher.update(&buf);
            left -= buf.len() as u64;
            hashed(buf.len() as u64)?;
            // The reader may be done and gone: then the buffer just goes.
            let _ = empty_tx.send(buf);
        }
        Ok(true)
    })
}

/// One read of at most `left` bytes (and at most `buf`'s length) into `buf`;
/// the bytes read, never 0.
///
/// # Errors
/// Any read error, or [`io::ErrorKind::UnexpectedEof`] at the end of the file.
fn read_some(mut file: &File, buf: &mut [u8], left: u64) -> io::Result<usize> {
    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    loop {
        return match file.read(&mut buf[..want]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than the part to check",
            )),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_within_name_max_and_keys_differ() {
        let key = partial_key(&[1; 16], "a/b.txt", 10);
        assert_eq!(key.as_str().len(), KEY_HEX);
        assert_ne!(key, partial_key(&[2; 16], "a/b.txt", 10));
        assert_ne!(key, partial_key(&[1; 16], "a/c.txt", 10));
        assert_ne!(key, partial_key(&[1; 16], "a/b.txt", 11));
        assert_eq!(partial_name("b.txt", &key), format!("b.txt.{key}.lspart"));
        let long = "é".repeat(127) + "x"; // 255 bytes
        let name = partial_name(&long, &key);
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert!(name.ends_with(&format!(".{key}.lspart")));
    }

    #[test]
    fn open_resumable_locks_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_resumable(dir.path(), "f.k.lspart").unwrap().unwrap();
        assert_eq!(first.len, 0);
        #[cfg(unix)]
        {
            // Locked: a second open steps aside.
            assert!(open_resumable(dir.path(), "f.k.lspart").unwrap().is_none());
            drop(first);
            std::fs::write(dir.path().join("f.k.lspart"), b"held").unwrap();
            let again = open_resumable(dir.path(), "f.k.lspart").unwrap().unwrap();
            assert_eq!(again.len, 4);
            drop(again);
            // A directory in its place is stepped around.
            std::fs::create_dir(dir.path().join("d.k.lspart")).unwrap();
            assert!(open_resumable(dir.path(), "d.k.lspart").unwrap().is_none());
            // A symlink or a hard link is never written through.
            let outside = dir.path().join("outside");
            std::fs::write(&outside, b"keep").unwrap();
            std::os::unix::fs::symlink(&outside, dir.path().join("s.k.lspart")).unwrap();
            assert!(open_resumable(dir.path(), "s.k.lspart").unwrap().is_none());
            std::fs::hard_link(&outside, dir.path().join("h.k.lspart")).unwrap();
            assert!(open_resumable(dir.path(), "h.k.lspart").unwrap().is_none());
            assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        }
        assert!(open_resumable(dir.path(), "../x").is_err());
    }

    #[test]
    fn prefix_hash_continues_to_the_whole_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"hello world").unwrap();
        let mut f = File::open(&path).unwrap();
        let (prefix, mut hasher) = hash_prefix(&mut f, 5).unwrap();
        assert_eq!(&prefix, blake3::hash(b"hello").as_bytes());
        hasher.update(b" world");
        assert_eq!(hasher.finalize(), blake3::hash(b"hello world"));
        assert_eq!(
            hash_prefix(&mut f, 99).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    /// Bytes that differ at every position (BLAKE3 of a counter), so that
    /// a buffer hashed twice or out of order changes the hash.
    fn content(len: usize) -> Vec<u8> {
        let mut out = blake3::Hasher::new();
        out.update(b"prefix test");
        let mut bytes = vec![0u8; len];
        out.finalize_xof().fill(&mut bytes);
        bytes
    }

    #[test]
    fn prefix_hashes_equal_blake3_of_the_same_bytes_around_every_boundary() {
        let buf = HASH_BUFFER;
        let pipe = usize::try_from(PIPELINE_FROM).unwrap();
        let round = buf * HASH_BUFFERS;
        let lens = [
            0,
            1,
            buf - 1,
            buf,
            buf + 1,
            pipe - 1,
            pipe,
            pipe + 1,
            pipe + buf - 1,
            pipe + buf + 1,
            3 * round + 12_345,
        ];
        // Longer than any prefix: only `len` bytes may be hashed.
        let bytes = content(3 * round + 12_345 + 777);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, &bytes).unwrap();
        let mut f = File::open(&path).unwrap();
        for len in lens {
            let mut counted = 0;
            let (prefix, mut hasher) = hash_prefix_counting(&mut f, len as u64, |n| {
                counted += n;
                Ok(())
            })
            .unwrap();
            assert_eq!(&prefix, blake3::hash(&bytes[..len]).as_bytes(), "len {len}");
            assert_eq!(counted, len as u64, "progress of len {len}");
            // The hasher goes on from there to the whole file's hash, and
            // the file is positioned for the rest.
            hasher.update(&bytes[len..]);
            assert_eq!(hasher.finalize(), blake3::hash(&bytes), "len {len}");
            let mut rest = Vec::new();
            f.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, &bytes[len..], "position after len {len}");
        }
    }

    #[test]
    fn a_file_shorter_than_the_prefix_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let size = usize::try_from(PIPELINE_FROM).unwrap() * 2 + 3;
        std::fs::write(&path, content(size)).unwrap();
        let mut f = File::open(&path).unwrap();
        // Short from the start, on one thread and on two.
        for len in [10, PIPELINE_FROM * 2 + 4, PIPELINE_FROM * 3] {
            let short = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            short.set_len(len.min(size as u64) - 1).unwrap();
            let err = hash_prefix(&mut f, len).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "len {len}");
            assert_eq!(
                err.to_string(),
                "the file is shorter than the part to check"
            );
            short.set_len(size as u64).unwrap();
        }
        // Shrunk while it is hashed: after the first buffer is hashed, at
        // most HASH_BUFFERS have been read, far less than the prefix.
        let shrink = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut calls = 0;
        let err = hash_prefix_counting(&mut f, size as u64, |_| {
            calls += 1;
            if calls == 1 {
                shrink.set_len(0).unwrap();
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(calls <= HASH_BUFFERS, "{calls} buffers hashed");
    }

    #[test]
    fn hashing_stops_at_the_first_error_its_caller_returns() {
        for size in [3 * HASH_BUFFER, 2 * PIPELINE_FROM as usize] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("held");
            std::fs::write(&path, vec![7u8; size]).unwrap();
            let mut f = File::open(&path).unwrap();
            let mut seen = 0;
            let err = hash_prefix_counting(&mut f, size as u64, |n| {
                seen += n;
                Err(io::Error::new(io::ErrorKind::Interrupted, "shutting down"))
            })
            .unwrap_err();
            assert_eq!(err.to_string(), "shutting down");
            assert!(seen < size as u64, "{seen} of {size} bytes hashed");
        }
    }
}
