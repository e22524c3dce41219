//! The peer store: what this node knows about other nodes, in `<home>/peers.json`.
//!
//! ```text
//!  handshake ─► Seen ─► StoreData::contact ─► First / Known(trust) / KeyChanged
//!  transfer  ─► begin_session (outcome "interrupted") ... end_session (promotes new -> known)
//!  commands  ─► StoreData::lookup(<peer>) ─► set_trust / forget
//!
//!  PeerStore::update(f):  lock peers.lock ─► load peers.json ─► f(&mut data) ─► write temp,
//!                         fsync, rename over peers.json, fsync dir ─► unlock
//! ```
//!
//! Per peer it keeps the node id, the pinned fingerprint (SHA-256 of the
//! peer's SPKI DER), MAC, recent names and addresses, a trust state, first and
//! last contact, and the last [`MAX_SESSIONS`] sessions. No secret ever goes
//! in: no keys, no session keys, only fingerprints, names, addresses, session
//! ids and counters.
//!
//! ```json
//! { "schema": 1,
//!   "peers": [ { "node_id": "<uuid>", "fingerprint": "<64 hex>", "mac": "aa:bb:cc:dd:ee:ff" | null,
//!                "names": ["newest first"], "addresses": ["ip:port, newest first"],
//!                "trust": "new" | "known" | "trusted" | "blocked",
//!                "first_seen": <unix s>, "last_seen": <unix s>,
//!                "sessions": [ { "id": "<hex>", "direction": "send" | "receive",
//!                                "started": <unix ms>, "ended": <unix ms> | null,
//!                                "files": 0, "bytes": 0, "detail": "",
//!                                "outcome": "ok" | "refused" | "failed" | "incomplete" | "interrupted" } ] } ] }
//! ```
//!
//! Sessions are kept oldest first. Unknown fields (from a newer version with
//! the same schema number) are accepted and dropped on the next write: a
//! change whose fields must survive an older writer has to bump the schema.
//!
//! A missing file is an empty store. A file that is not a regular file, cannot
//! be read, is larger than [`MAX_STORE_BYTES`], is not JSON, has another schema
//! number or holds an invalid value is [`StoreError::Corrupt`], never an empty
//! store: that would silently re-trust every peer. [`PeerStore::update`] then
//! leaves the file alone.
//!
//! Writers serialise on an exclusive `flock` of `<home>/peers.lock` (Unix;
//! elsewhere no lock is taken, see [`PeerStore::update`]); readers need no lock
//! because the file is only ever replaced by an atomic rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsutil::{AtomicWriteError, write_atomic};

mod model;

pub use model::{
    Contact, Direction, Lookup, MAX_ADDRESSES, MAX_DETAIL_BYTES, MAX_NAMES, MAX_SESSIONS,
    MIN_PREFIX_DIGITS, Outcome, PeerEntry, Realiased, Seen, SessionEnd, SessionRecord, StoreData,
    Trust, hex_prefix,
};

/// Name of the store inside the home directory.
pub const STORE_FILE: &str = "peers.json";
/// Name of the lock file inside the home directory (never deleted).
pub const LOCK_FILE: &str = "peers.lock";
/// The schema number this version reads and writes.
pub const SCHEMA: u32 = 1;
/// Largest store file read (and written: older sessions are dropped to fit).
pub const MAX_STORE_BYTES: u64 = 16 * 1024 * 1024;
/// How long [`PeerStore::update`] waits for another writer.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors from reading or writing the store. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store exists but cannot be used as it is.
    #[error(
        "peer store {} is unusable ({reason}); fix it, or move it aside to start over \
         (every peer will then be new again and must be verified again)",
        path.display()
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening, locking, writing or syncing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot open", "cannot write", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process held the lock for longer than the timeout.
    #[error(
        "peer store lock {} is held by another localstream process (waited {}s); \
         try again when it is done",
        path.display(), waited.as_secs()
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// The peers alone (without any session history) exceed the size limit.
    #[error("peer store {} would exceed {limit} bytes even without session history", path.display())]
    TooLarge {
        /// The store file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
}

impl From<AtomicWriteError> for StoreError {
    fn from(e: AtomicWriteError) -> Self {
        StoreError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

/// The file layout (the schema number plus the peers).
#[derive(Serialize, Deserialize)]
struct StoreFile {
    schema: u32,
    peers: Vec<PeerEntry>,
}

/// Decodes a store file, or says what is wrong with it.
fn decode(bytes: &[u8]) -> Result<StoreData, String> {
    /// Read when the file does not decode, so that a future layout is
    /// reported as such, not as bad values.
    #[derive(Deserialize)]
    struct Header {
        schema: Option<u64>,
    }
    let unsupported = |n: u64| {
        format!(
            "schema {n} is not supported (this version reads schema {SCHEMA}; \
             was it written by a newer localstream?)"
        )
    };
    // One pass over the file when it is well formed (it may hold megabytes
    // of history), a second one to say what is wrong when it is not.
    let file: StoreFile = match serde_json::from_slice(bytes) {
        Ok(file @ StoreFile { schema: SCHEMA, .. }) => file,
        Ok(file) => return Err(unsupported(file.schema.into())),
        Err(e) => {
            return Err(match serde_json::from_slice::<Header>(bytes) {
                Ok(Header { schema: Some(n) }) if n != u64::from(SCHEMA) => unsupported(n),
                Ok(Header { schema: None }) => "no schema number".into(),
                Ok(_) => e.to_string(),
                Err(header) => header.to_string(),
            });
        }
    };
    let mut peers = file.peers;
    // Stores written before protocol 2 keyed peers by a random node id; the
    // id is now the one bound to the pinned key, so the entry moves there
    // (and the next write saves it so). Two old entries with one key are
    // one peer: merged, the stronger decision winning (a block is never lost).
    let mut migrated = std::collections::HashSet::new();
    for peer in &mut peers {
        let bound = uuid::Uuid::from_bytes(localstream_proto::node_id_for(&peer.fingerprint));
        if peer.node_id != bound {
            peer.node_id = bound;
            migrated.insert(bound);
        }
    }
    let mut merged: Vec<PeerEntry> = Vec::with_capacity(peers.len());
    let mut at = std::collections::HashMap::with_capacity(peers.len());
    for peer in peers {
        match at.get(&peer.node_id) {
            Some(&i) if migrated.contains(&peer.node_id) => {
                model::merge(&mut merged[i], peer);
            }
            Some(_) => return Err(format!("node id {} appears twice", peer.node_id)),
            None => {
                at.insert(peer.node_id, merged.len());
                merged.push(peer);
            }
        }
    }
    let mut peers = merged;
    peers.iter_mut().for_each(PeerEntry::trim);
    Ok(StoreData { peers })
}

/// Encodes `data`, dropping the oldest half of every peer's sessions until it
/// fits in `limit` bytes (pins and trust are never dropped to make room).
/// `Ok(None)` when even the peers alone do not fit.
fn encode(data: &mut StoreData, limit: u64) -> serde_json::Result<Option<Vec<u8>>> {
    loop {
        let file = StoreFile {
            schema: SCHEMA,
            peers: std::mem::take(&mut data.peers),
        };
        let encoded = serde_json::to_vec_pretty(&file);
        data.peers = file.peers;
        let mut bytes = encoded?;
        bytes.push(b'\n');
        if bytes.len() as u64 <= limit {
            return Ok(Some(bytes));
        }
        if data.peers.iter().all(|p| p.sessions.is_empty()) {
            return Ok(None);
        }
        for peer in &mut data.peers {
            let drop = peer.sessions.len().div_ceil(2);
            peer.sessions.drain(..drop);
        }
    }
}

/// The store of one home directory. Cheap to create; every operation reads
/// the file afresh, so several instances (and processes) can share a home.
#[derive(Debug, Clone)]
pub struct PeerStore {
    home: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
    max_bytes: u64,
    #[cfg_attr(not(unix), allow(dead_code))]
    lock_timeout: Duration,
    /// Files written through this store and its clones.
    writes: Arc<AtomicU64>,
    /// The file as last read through this store or a clone, and what it
    /// decoded to.
    last: Arc<Mutex<Option<Decoded>>>,
}

/// A store file's bytes and their decoding: a load that reads the same
/// bytes again skips the decoding (a send reads the store several times,
/// and full histories are megabytes of JSON). Comparing the bytes, not a
/// file's size or times, cannot mistake one content for another.
#[derive(Debug)]
struct Decoded {
    bytes: Vec<u8>,
    data: StoreData,
}

impl PeerStore {
    /// The store of `home` (`<home>/peers.json`, locked through
    /// `<home>/peers.lock`). Does no I/O; `home` must exist before
    /// [`PeerStore::update`] (the identity creates it).
    #[must_use]
    pub fn new(home: &Path) -> PeerStore {
        PeerStore {
            home: home.to_owned(),
            path: home.join(STORE_FILE),
            lock_path: home.join(LOCK_FILE),
            max_bytes: MAX_STORE_BYTES,
            lock_timeout: LOCK_TIMEOUT,
            writes: Arc::default(),
            last: Arc::default(),
        }
    }

    /// How many times this store (through any of its clones) has written
    /// the file, or begun to: each write is an fsync of the file and one of
    /// the folder, so the tests count them on the paths that must stay fast.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// The store file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the store (no lock needed: writes are atomic renames). A missing
    /// file is an empty store.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for anything but a valid store file (see the
    /// module docs), [`StoreError::Io`] when it cannot be opened.
    pub fn load(&self) -> Result<StoreData, StoreError> {
        Ok(self.load_raw()?.0)
    }

    fn load_raw(&self) -> Result<(StoreData, Option<Vec<u8>>), StoreError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((StoreData::default(), None));
            }
            // Opening a directory fails on some platforms (Windows).
            Err(_) if std::fs::metadata(&self.path).is_ok_and(|m| m.is_dir()) => {
                return Err(self.corrupt("a directory, not a file"));
            }
            Err(source) => {
                return Err(StoreError::Io {
                    action: "cannot open",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| self.corrupt(&reason);
        let meta = file
            .metadata()
            .map_err(|e| corrupt(format!("cannot stat it: {e}")))?;
        if !meta.is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        let mut bytes =
            Vec::with_capacity(usize::try_from(meta.len().min(self.max_bytes)).unwrap_or(0) + 1);
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(corrupt(format!("larger than {} bytes", self.max_bytes)));
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let data = match &*last {
            Some(d) if d.bytes == bytes => d.data.clone(),
            _ => {
                let data = decode(&bytes).map_err(corrupt)?;
                *last = Some(Decoded {
                    bytes: bytes.clone(),
                    data: data.clone(),
                });
                data
            }
        };
        Ok((data, Some(bytes)))
    }

    /// A [`StoreError::Corrupt`] for this store; `reason` may quote the
    /// file, so it is made safe for a terminal.
    fn corrupt(&self, reason: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason: localstream_proto::names::escape_for_terminal(reason),
        }
    }

    /// Applies `f` to the store under an exclusive lock and saves the result
    /// atomically (temporary file, fsync, rename, directory fsync; mode 0600)
    /// unless it is unchanged. Concurrent updates from other threads or
    /// processes are serialised, so none is lost. If the result would exceed
    /// [`MAX_STORE_BYTES`], the oldest halves of all session histories are
    /// dropped until it fits.
    ///
    /// The lock is a `flock` on `<home>/peers.lock`, waited for up to
    /// [`LOCK_TIMEOUT`]. On non-Unix platforms no lock is taken: the file is
    /// still never torn, but two simultaneous writers may lose one update.
    ///
    /// # Errors
    /// Any [`PeerStore::load`] error (a corrupt store is left untouched and
    /// `f` is not called), [`StoreError::Locked`], [`StoreError::TooLarge`],
    /// or [`StoreError::Io`] from locking or writing.
    pub fn update<T>(&self, f: impl FnOnce(&mut StoreData) -> T) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let (mut data, old) = self.load_raw()?;
        let result = f(&mut data);
        let bytes = encode(&mut data, self.max_bytes)
            .map_err(|e| StoreError::Io {
                action: "cannot encode",
                path: self.path.clone(),
                source: e.into(),
            })?
            .ok_or_else(|| StoreError::TooLarge {
                path: self.path.clone(),
                limit: self.max_bytes,
            })?;
        let unchanged = match &old {
            Some(old) => *old == bytes,
            None => data.peers.is_empty(),
        };
        if !unchanged {
            // Counted first: whoever sees the new file sees the count.
            self.writes.fetch_add(1, Ordering::SeqCst);
            write_atomic(&self.home, STORE_FILE, &bytes, 0o600)?;
        }
        Ok(result)
    }

    /// Opens the lock file and locks it; unlocked when the file is closed.
    fn lock(&self) -> Result<File, StoreError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&self.lock_path)
            .map_err(|source| StoreError::Io {
                action: "cannot open lock file",
                path: self.lock_path.clone(),
                source,
            })?;
        #[cfg(unix)]
        self.wait_for_flock(&file)?;
        Ok(file)
    }

    /// Polls a non-blocking `flock` with backoff, so a stuck process yields
    /// [`StoreError::Locked`] rather than a hang.
    #[cfg(unix)]
    fn wait_for_flock(&self, file: &File) -> Result<(), StoreError> {
        use rustix::fs::{FlockOperation, flock};
        use rustix::io::Errno;
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match flock(file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(()),
                Err(e) if e == Errno::WOULDBLOCK || e == Errno::INTR => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        action: "cannot lock",
                        path: self.lock_path.clone(),
                        source: e.into(),
                    });
                }
            }
            let waited = start.elapsed();
            if waited >= self.lock_timeout {
                return Err(StoreError::Locked {
                    path: self.lock_path.clone(),
                    waited,
                });
            }
            std::thread::sleep(pause.min(self.lock_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Now, in Unix seconds (0 if the clock is before 1970).
#[must_use]
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
