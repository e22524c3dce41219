//! Test data on disk: scratch directories removed when dropped, random files
//! and trees of them, copies of real trees, manifests (every file's size and
//! BLAKE3 hash) to check that a tree arrived exactly, and which filesystem a
//! path is on. Errors are `Err(String)` naming the path, as in [`crate::procs`].
//!
//! ```text
//!  Scratch::create(base, prefix) ─► base/prefix-PID-NANOS/   (removed on drop)
//!  write_random / flat_files / nested_files / copy_tree ─► source data
//!  Manifest::of(src) == Manifest::of(received)?  ─► Ok, or Err naming the
//!      first missing, extra or different paths
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::procs::Context;

/// A scratch directory, removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `base/prefix-PID-NANOS`.
    pub fn create(base: &Path, prefix: &str) -> Result<Scratch, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir })
    }

    /// The directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside it.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// wyrand: fast, good enough for data that does not compress. Seeded, so a
/// failure can be reproduced.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock.
    #[must_use]
    pub fn from_clock() -> Rng {
        Rng(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes `len` random bytes to a new file at `path`.
pub fn write_random(path: &Path, mut len: u64, rng: &mut Rng) -> Result<(), String> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
    while len > 0 {
        let n = usize::try_from(len.min(buf.len() as u64)).unwrap_or(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        len -= n as u64;
    }
    Ok(())
}

/// Writes `len` bytes of text to `path` ([`crate::text_bytes`], a new seed
/// for each MiB).
pub fn write_text(path: &Path, len: u64, rng: &mut Rng) -> Result<(), String> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
        f.write_all(&crate::text_bytes(rng.next_u64(), n))
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// `count` random files of `size` bytes directly in `dir` (created), named
/// `f0000`, `f0001`, ... (zero-padded to sort in creation order).
pub fn flat_files(dir: &Path, count: usize, size: u64, rng: &mut Rng) -> Result<(), String> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let width = count.saturating_sub(1).to_string().len().max(4);
    for i in 0..count {
        write_random(&dir.join(format!("f{i:0width$}")), size, rng)?;
    }
    Ok(())
}

/// `count` random files of `size` bytes in a tree under `dir` (created):
/// `fanout` top folders, each with `fanout` sub-folders holding the files
/// (`dir/d00/d00/f0000`, ...), spread evenly. Returns the number of folders
/// made below `dir`.
pub fn nested_files(
    dir: &Path,
    count: usize,
    size: u64,
    fanout: usize,
    rng: &mut Rng,
) -> Result<usize, String> {
    let fanout = fanout.max(1);
    let leaves = fanout * fanout;
    let w = fanout.saturating_sub(1).to_string().len().max(2);
    let fw = count
        .div_ceil(leaves)
        .saturating_sub(1)
        .to_string()
        .len()
        .max(4);
    let mut folders = 0;
    for leaf in 0..leaves {
        // Leaf `leaf` holds files leaf, leaf + leaves, ...: an even spread.
        let n = count / leaves + usize::from(leaf < count % leaves);
        let d = dir
            .join(format!("d{:0w$}", leaf / fanout))
            .join(format!("d{:0w$}", leaf % fanout));
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        folders += if leaf % fanout == 0 { 2 } else { 1 };
        for i in 0..n {
            write_random(&d.join(format!("f{i:0fw$}")), size, rng)?;
        }
    }
    Ok(folders)
}

/// What [`copy_tree`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Regular files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Folders (below the destination).
    pub folders: usize,
    /// Symbolic links and special files, left out.
    pub skipped: usize,
}

/// Copies the regular files and folders of `src` into `dst` (created),
/// leaving out symbolic links and special files; file modes are kept.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<Copied, String> {
    let mut c = Copied::default();
    copy_into(src, dst, &mut c)?;
    Ok(c)
}

fn copy_into(src: &Path, dst: &Path, c: &mut Copied) -> Result<(), String> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", src.display()))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for e in entries {
        let from = e.path();
        let to = dst.join(e.file_name());
        let ty = e
            .file_type()
            .with_context(|| format!("reading {}", from.display()))?;
        if ty.is_dir() {
            c.folders += 1;
            copy_into(&from, &to, c)?;
        } else if ty.is_file() {
            c.bytes += fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            c.files += 1;
        } else {
            c.skipped += 1;
        }
    }
    Ok(())
}

/// Creates `path` empty: removes it first if it exists.
pub fn fresh_dir(path: &Path) -> Result<(), String> {
    remove_dir(path)?;
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

/// Removes `path` and everything in it, if it exists.
pub fn remove_dir(path: &Path) -> Result<(), String> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", path.display()))
        }
        _ => Ok(()),
    }
}

/// One entry of a [`Manifest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A folder.
    Folder,
    /// A regular file: its size and BLAKE3 hash.
    File {
        /// Bytes.
        len: u64,
        /// BLAKE3 of the content.
        hash: [u8; 32],
    },
    /// Anything else (a link, a device...).
    Other,
}

/// Every path below a folder (relative to it) with its [`Entry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest(pub BTreeMap<PathBuf, Entry>);

impl Manifest {
    /// Reads and hashes everything below `dir`.
    pub fn of(dir: &Path) -> Result<Manifest, String> {
        let mut m = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let abs = dir.join(&rel);
            for e in fs::read_dir(&abs).with_context(|| format!("reading {}", abs.display()))? {
                let e = e.with_context(|| format!("reading {}", abs.display()))?;
                let r = rel.join(e.file_name());
                let ty = e
                    .file_type()
                    .with_context(|| format!("reading {}", e.path().display()))?;
                let entry = if ty.is_dir() {
                    stack.push(r.clone());
                    Entry::Folder
                } else if ty.is_file() {
                    let (len, hash) = hash_file(&e.path())?;
                    Entry::File { len, hash }
                } else {
                    Entry::Other
                };
                m.insert(r, entry);
            }
        }
        Ok(Manifest(m))
    }

    /// The number of regular files.
    #[must_use]
    pub fn files(&self) -> usize {
        self.0
            .values()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    /// The bytes of the regular files.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.0
            .values()
            .map(|e| match e {
                Entry::File { len, .. } => *len,
                _ => 0,
            })
            .sum()
    }

    /// `Ok` when `got` holds exactly the same paths, kinds, sizes and
    /// contents; else an error naming (up to 5 of) the missing, extra and
    /// different paths, and how many of each.
    pub fn check(&self, got: &Manifest, what: &str) -> Result<(), String> {
        let mut missing = vec![];
        let mut differ = vec![];
        for (p, e) in &self.0 {
            match got.0.get(p) {
                None => missing.push(p),
                Some(g) if g != e => differ.push(p),
                Some(_) => {}
            }
        }
        let extra: Vec<_> = got.0.keys().filter(|p| !self.0.contains_key(*p)).collect();
        if missing.is_empty() && differ.is_empty() && extra.is_empty() {
            return Ok(());
        }
        let list = |v: &[&PathBuf]| {
            v.iter()
                .take(5)
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut msg = format!(
            "{what}: the received tree differs from the original ({} files, {} bytes sent):",
            self.files(),
            self.bytes()
        );
        for (label, v) in [
            ("missing", &missing),
            ("different", &differ),
            ("unexpected", &extra),
        ] {
            if !v.is_empty() {
                msg.push_str(&format!(" {} {label} ({});", v.len(), list(v)));
            }
        }
        Err(msg)
    }
}

/// The size and BLAKE3 hash of a file's content.
pub fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, *h.finalize().as_bytes()))
}

/// The filesystem a path is on, from `/proc/self/mountinfo` (the longest
/// mount point above it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The filesystem type (`ext4`, `tmpfs`...).
    pub fstype: String,
    /// The device or source (`/dev/vda`, `/dev/loop0`, `tmpfs`).
    pub source: String,
}

impl Mount {
    /// The mount holding `path` (which must exist: it is canonicalized).
    pub fn of(path: &Path) -> Result<Mount, String> {
        let path =
            fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
        let info = fs::read_to_string("/proc/self/mountinfo")
            .with_context(|| "reading /proc/self/mountinfo".to_string())?;
        let mut best: Option<Mount> = None;
        for line in info.lines() {
            // id parent major:minor root point options [optional...] - type source super
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape_mount(point));
            let mut r = right.split(' ');
            let (Some(fstype), Some(source)) = (r.next(), r.next()) else {
                continue;
            };
            let longer = best
                .as_ref()
                .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len());
            if path.starts_with(&point) && longer {
                best = Some(Mount {
                    point,
                    fstype: fstype.to_string(),
                    source: source.to_string(),
                });
            }
        }
        best.ok_or_else(|| format!("{}: no mount holds it", path.display()))
    }
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_made_and_checked_by_content() {
        let s = Scratch::create(&std::env::temp_dir(), "testkit-files").unwrap();
        let mut rng = Rng(7);
        let flat = s.path("flat");
        flat_files(&flat, 12, 100, &mut rng).unwrap();
        let nested = s.path("nested");
        assert_eq!(nested_files(&nested, 10, 3, 2, &mut rng).unwrap(), 6);
        let m = Manifest::of(&nested).unwrap();
        assert_eq!((m.files(), m.bytes()), (10, 30));
        assert!(m.0.contains_key(Path::new("d01/d01/f0001")));
        assert!(!m.0.contains_key(Path::new("d01/d01/f0002")));

        let copy = s.path("copy");
        let c = copy_tree(&nested, &copy).unwrap();
        assert_eq!((c.files, c.bytes, c.folders), (10, 30, 6));
        m.check(&Manifest::of(&copy).unwrap(), "copy").unwrap();

        fs::write(copy.join("d00/d00/f0000"), b"abc").unwrap();
        fs::write(copy.join("extra"), b"x").unwrap();
        fs::remove_file(copy.join("d00/d01/f0000")).unwrap();
        let e = m.check(&Manifest::of(&copy).unwrap(), "copy").unwrap_err();
        assert_eq!(
            e,
            "copy: the received tree differs from the original (10 files, 30 bytes sent): \
             1 missing (d00/d01/f0000); 1 different (d00/d00/f0000); 1 unexpected (extra);"
        );
        let fl = Manifest::of(&flat).unwrap();
        assert_eq!(fl.files(), 12);
        assert!(fl.0.contains_key(Path::new("f0011")));
    }

    #[test]
    fn the_mount_of_root_and_an_escaped_point() {
        let m = Mount::of(Path::new("/")).unwrap();
        assert_eq!(m.point, PathBuf::from("/"));
        assert!(!m.fstype.is_empty());
        assert_eq!(unescape_mount(r"/a\040b\134c"), r"/a b\c");
    }
}
