//! The blocking half of receiving: open each record, write and hash the
//! data, verify each file against its authenticated FileEnd, and commit it
//! (small files in groups, large ones alone).

use super::*;

/// A frame whose buffer goes back to the pool once it has been handled.
struct Recycled<'a> {
    frame: RawFrame,
    pool: &'a BufPool,
}

impl Drop for Recycled<'_> {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.frame.buf));
    }
}

/// A stream (size unknown) must leave this much free space at each step of
/// this size.
const STREAM_SPACE_CHECK: u64 = 4 << 20;

/// The file currently being written.
struct Current {
    plan: usize,
    partial: PathBuf,
    file: File,
    written: u64,
    hasher: blake3::Hasher,
}

/// Per offered file, in offer order: its final path (`None`: it went to
/// standard output), or the status that explains its failure.
pub(super) type FileResults = Vec<std::result::Result<Option<PathBuf>, Status>>;

/// What the writer did.
pub(super) struct Written {
    pub results: FileResults,
    /// Bytes reused from held prefixes.
    pub resumed: u64,
    /// File bytes received in this connection.
    pub data_bytes: u64,
    /// Sealed data bytes received, when some records were compressed.
    pub wire: Option<u64>,
}

/// The blocking half: opens records, writes and verifies files. Returns, per
/// offered file, its final path or the status that explains its failure, and
/// the bytes reused from held prefixes.
///
/// When `held` is not empty the sender's Resume record must come first: it
/// confirms each held prefix (continue after it) or not (start over).
///
/// Small files are committed in groups ([`fsutil::CommitGroup`]: one
/// filesystem sync for up to hundreds of files); a group is committed when it
/// is full, when its first file has waited [`fsutil::GROUP_MAX_WAIT`], before
/// a large file starts, and at the end, whatever ended the transfer.
#[allow(clippy::too_many_arguments)] // the pipeline's parts, each used once
pub(super) fn write_files(
    opener: Opener,
    rx: mpsc::Receiver<Vec<RawFrame>>,
    pool: &BufPool,
    plan: Vec<Planned>,
    held: HashMap<usize, Held>,
    progress: Option<&Progress>,
    destination: Destination,
    written: &std::sync::atomic::AtomicU64,
) -> Result<Written> {
    let mut w = Writer {
        written,
        plan: &plan,
        progress,
        results: Vec::with_capacity(plan.len()),
        group: fsutil::CommitGroup::new(),
        current: None,
        data_bytes: 0,
        awaiting_resume: !held.is_empty(),
        held,
        resumed: 0,
        to_stdout: destination == Destination::Stdout,
        unpack: compress::Decompressor::default(),
        wire: 0,
        compressed: false,
    };
    let outcome = w.run(opener, rx, pool);
    // A stream is never resumed: what it left is of no use to anyone.
    if outcome.is_err()
        && let Some(cur) = w.current.take()
        && plan[cur.plan].stream
    {
        remove_partial(&cur.partial);
    }
    // Verified files still waiting for their group are saved even when the
    // transfer failed later, as they would have been one by one.
    w.commit_group();
    outcome.map(|()| Written {
        results: w.results,
        resumed: w.resumed,
        data_bytes: w.data_bytes,
        wire: w.compressed.then_some(w.wire),
    })
}

/// What [`write_files`] keeps between records.
struct Writer<'a> {
    /// File bytes written so far, for the reader's progress rule.
    written: &'a std::sync::atomic::AtomicU64,
    plan: &'a [Planned],
    /// `None` when no bar is drawn.
    progress: Option<&'a Progress>,
    /// One entry per finished file; a file waiting in `group` has a
    /// placeholder (`InternalError`) until the group is committed.
    results: FileResults,
    group: fsutil::CommitGroup<'a>,
    current: Option<Current>,
    data_bytes: u64,
    /// Held prefixes by plan index, until their file starts.
    held: HashMap<usize, Held>,
    /// The Answer offered held prefixes: the next record must be Resume.
    awaiting_resume: bool,
    /// Bytes of held prefixes the sender confirmed.
    resumed: u64,
    /// `listen --stdout`: the one file goes to standard output.
    to_stdout: bool,
    /// Compressed records are unpacked here.
    unpack: compress::Decompressor,
    /// Sealed data records received, and whether any was compressed.
    wire: u64,
    compressed: bool,
}

impl<'a> Writer<'a> {
    fn run(
        &mut self,
        mut opener: Opener,
        mut rx: mpsc::Receiver<Vec<RawFrame>>,
        pool: &BufPool,
    ) -> Result<()> {
        while let Some(batch) = self.next_batch(&mut rx) {
            for frame in batch {
                let mut frame = Recycled { frame, pool };
                // As it crossed the wire (header, ciphertext, tag).
                let sealed = frame.frame.buf.len() as u64;
                let (typ, pt) = frame.frame.open(&mut opener)?;
                if self.awaiting_resume && !matches!(typ, RecordType::Resume | RecordType::Alert) {
                    return Err(ProtoError::UnexpectedMessage {
                        expected: "Resume",
                        got: typ as u8,
                    }
                    .into());
                }
                match typ {
                    RecordType::Resume if self.awaiting_resume => {
                        self.resume(&Resume::decode(pt)?)?;
                    }
                    RecordType::Data => {
                        self.wire += sealed;
                        self.data(pt)?;
                    }
                    RecordType::DataZstd if compress::FEATURES != 0 => {
                        self.wire += sealed;
                        self.compressed = true;
                        let mut z = std::mem::take(&mut self.unpack);
                        let done = z.decompress(pt).and_then(|bytes| self.data(bytes));
                        self.unpack = z;
                        done?;
                    }
                    RecordType::FileEnd => self.file_end(&FileEnd::decode(pt)?)?,
                    RecordType::TransferEnd => {
                        let end = TransferEnd::decode(pt)?;
                        if let Some(cur) = self.current.take() {
                            remove_partial(&cur.partial);
                            return Err(ProtoError::Malformed("TransferEnd inside a file").into());
                        }
                        if self.results.len() != self.plan.len()
                            || end.files as usize != self.plan.len()
                            || end.bytes != self.data_bytes
                        {
                            return Err(ProtoError::Malformed(
                                "TransferEnd does not match what was sent",
                            )
                            .into());
                        }
                        return Ok(());
                    }
                    RecordType::Alert => {
                        let alert = localstream_proto::handshake::messages::Alert::decode(pt)?;
                        return Err(alert.into_error().into());
                    }
                    other => {
                        return Err(ProtoError::UnexpectedMessage {
                            expected: "Data, FileEnd or TransferEnd",
                            got: other as u8,
                        }
                        .into());
                    }
                }
            }
        }
        // The reader stopped early: the partial stays for a later resume.
        Err(ProtoError::Truncated.into())
    }

    /// Applies the sender's verdict on the held prefixes: each one the Answer
    /// offered, in order, either confirmed (its offset) or refused (0: the
    /// file is received whole, over what was held).
    fn resume(&mut self, resume: &Resume) -> Result<()> {
        self.awaiting_resume = false;
        let mut offered: Vec<usize> = self.held.keys().copied().collect();
        offered.sort_unstable();
        if resume.files.len() != offered.len() {
            return Err(ProtoError::Malformed("Resume does not answer every held file").into());
        }
        for (verdict, i) in resume.files.iter().zip(offered) {
            let p = &self.plan[i];
            let held = self
                .held
                .get_mut(&i)
                .ok_or(ProtoError::Malformed("Resume"))?;
            if verdict.index != p.index {
                return Err(ProtoError::Malformed("Resume files out of order").into());
            }
            if verdict.offset == held.partial.len {
                self.resumed += held.partial.len;
                info!(file = %p.shown, offset = held.partial.len, "resuming");
            } else if verdict.offset == 0 {
                info!(file = %p.shown, "the sender's file changed: receiving it whole");
                if let Some(bar) = self.progress {
                    bar.grow(held.partial.len);
                }
                held.partial
                    .file
                    .set_len(0)
                    .map_err(|e| Error::file(&held.partial.path, e))?;
                held.partial.len = 0;
                held.hasher = blake3::Hasher::new();
            } else {
                return Err(ProtoError::Malformed("Resume offset differs from the Answer").into());
            }
        }
        Ok(())
    }

    /// The next batch of frames from the reader, or `None` once it is
    /// gone. While a group waits, waiting is bounded by the group's deadline.
    fn next_batch(&mut self, rx: &mut mpsc::Receiver<Vec<RawFrame>>) -> Option<Vec<RawFrame>> {
        loop {
            let Some(deadline) = self.group.deadline() else {
                return rx.blocking_recv();
            };
            let waited = tokio::runtime::Handle::try_current().ok().map(|runtime| {
                runtime.block_on(tokio::time::timeout_at(deadline.into(), rx.recv()))
            });
            match waited {
                Some(Ok(batch)) => return batch,
                // Past the deadline (or no timer to wait with): commit, then
                // wait without one.
                Some(Err(_)) | None => self.commit_group(),
            }
        }
    }

    /// Opens the partial file for the next offered file.
    fn open_next(&mut self) -> Result<Current> {
        let idx = self.results.len();
        let p = self
            .plan
            .get(idx)
            .ok_or(ProtoError::Malformed("data after the last offered file"))?;
        // The small files before a large one must not wait for it.
        if !fsutil::CommitGroup::wants(p.size) {
            self.commit_group();
        }
        let cur = match self.held.remove(&idx) {
            Some(Held {
                mut partial,
                hasher,
            }) => {
                use std::io::{Seek, SeekFrom};
                partial
                    .file
                    .seek(SeekFrom::Start(partial.len))
                    .map_err(|e| Error::file(&partial.path, e))?;
                Current {
                    plan: idx,
                    partial: partial.path,
                    file: partial.file,
                    written: partial.len,
                    hasher,
                }
            }
            None if self.to_stdout => Current {
                plan: idx,
                partial: PathBuf::new(),
                file: stdout_file().map_err(|e| Error::file("<standard output>", e))?,
                written: 0,
                hasher: blake3::Hasher::new(),
            },
            None => {
                let (partial, file) =
                    open_partial(p).map_err(|e| Error::file(p.parent.join(&p.file_name), e))?;
                Current {
                    plan: idx,
                    partial,
                    file,
                    written: 0,
                    hasher: blake3::Hasher::new(),
                }
            }
        };
        if let Some(bar) = self.progress {
            bar.start_file(&p.shown, p.size - cur.written);
        }
        debug!(file = %p.shown, partial = %cur.partial.display(), "writing");
        Ok(cur)
    }

    fn data(&mut self, pt: &[u8]) -> Result<()> {
        let cur = match self.current.take() {
            Some(c) => c,
            None => self.open_next()?,
        };
        let cur = self.current.insert(cur);
        let p = &self.plan[cur.plan];
        if !p.stream && cur.written + pt.len() as u64 > p.size {
            remove_partial(&cur.partial);
            return Err(ProtoError::Malformed("more data than the file's announced size").into());
        }
        // A stream's size is unknown, so the free-space check of the offer
        // could not cover it: check as it grows.
        if p.stream
            && !self.to_stdout
            && (cur.written == 0
                || cur.written / STREAM_SPACE_CHECK
                    != (cur.written + pt.len() as u64) / STREAM_SPACE_CHECK)
            && fsutil::available_space(&p.parent).is_some_and(|free| free < STREAM_SPACE_CHECK)
        {
            return Err(Error::file(
                &cur.partial,
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ));
        }
        if let Err(e) = cur.file.write_all(pt) {
            return Err(Error::file(&cur.partial, e));
        }
        cur.hasher.update(pt);
        cur.written += pt.len() as u64;
        self.data_bytes += pt.len() as u64;
        self.written
            .fetch_add(pt.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = self.progress {
            bar.advance(pt.len() as u64);
        }
        Ok(())
    }

    fn file_end(&mut self, end: &FileEnd) -> Result<()> {
        let cur = match self.current.take() {
            Some(c) => c,
            None => self.open_next()?,
        };
        let plan = self.plan;
        let p = &plan[cur.plan];
        if end.index != p.index {
            remove_partial(&cur.partial);
            return Err(ProtoError::Malformed("FileEnd for a file out of order").into());
        }
        let (partial, file) = match verify(cur, p, end) {
            Ok(verified) => verified,
            Err(status) => {
                self.results.push(Err(status));
                return Ok(());
            }
        };
        if self.to_stdout {
            drop(file);
            self.results.push(Ok(None));
            return Ok(());
        }
        if p.exec
            && let Err(e) = make_executable(&file)
        {
            warn!(file = %p.shown, error = %e, "cannot make it executable");
        }
        if !fsutil::CommitGroup::wants(p.size) {
            let result = commit_one(partial, file, p);
            if let (Ok(path), Some(bar)) = (&result, self.progress) {
                bar.file_done(&p.shown, p.size, Some(path));
            }
            self.results.push(result.map(Some));
            return Ok(());
        }
        let slot = self.results.len();
        match self
            .group
            .push(slot, file, partial, &p.parent, &p.file_name, p.size)
        {
            Ok(()) => self.results.push(Err(Status::InternalError)),
            Err(e) => {
                warn!(file = %p.shown, error = %e, "fsync failed");
                self.results.push(Err(io_status(&e)));
            }
        }
        if self.group.is_full() || self.group.deadline().is_some_and(|d| Instant::now() >= d) {
            self.commit_group();
        }
        Ok(())
    }

    /// Commits the waiting group and fills in its files' results.
    fn commit_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        for (slot, placed) in self.group.commit() {
            let Some(p) = self.plan.get(slot) else {
                continue;
            };
            let result = match placed {
                Ok(path) => {
                    debug!(file = %p.shown, path = %path.display(), "saved");
                    if let Some(bar) = self.progress {
                        bar.file_done(&p.shown, p.size, Some(&path));
                    }
                    Ok(Some(path))
                }
                Err(e) => {
                    warn!(file = %p.shown, error = %e, "cannot save the finished file");
                    Err(io_status(&e))
                }
            };
            if let Some(r) = self.results.get_mut(slot) {
                *r = result;
            }
        }
    }
}

/// Makes the file executable (the sender's copy was) for whoever may read
/// it: x is added only where r is set, so the umask the file was created
/// under still holds (0644 becomes 0755, 0600 becomes 0700).
#[cfg(unix)]
fn make_executable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    file.set_permissions(std::fs::Permissions::from_mode(
        mode | ((mode & 0o444) >> 2),
    ))
}

/// No executable bit to set elsewhere.
#[cfg(not(unix))]
fn make_executable(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// Removes a partial file (none when the file goes to standard output).
fn remove_partial(partial: &Path) {
    if !partial.as_os_str().is_empty() {
        let _ = std::fs::remove_file(partial);
    }
}

/// Standard output as a file, for `listen --stdout` (unbuffered writes
/// straight to the descriptor).
#[cfg(unix)]
fn stdout_file() -> std::io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stdout_file() -> std::io::Result<File> {
    use std::os::windows::io::AsHandle;
    Ok(File::from(
        std::io::stdout().as_handle().try_clone_to_owned()?,
    ))
}

/// A new, empty partial for `p`: its resumable one (emptied, when a stale
/// one was there), or a fresh one when that cannot be used.
fn open_partial(p: &Planned) -> std::io::Result<(PathBuf, File)> {
    match resumable::open_resumable(&p.parent, &p.partial_name)? {
        Some(r) => {
            if r.len > 0 {
                r.file.set_len(0)?;
            }
            Ok((r.path, r.file))
        }
        None => fsutil::create_partial(&p.parent, &p.file_name),
    }
}

/// Checks a completed file against the offer and its authenticated FileEnd;
/// a file that fails is removed.
fn verify(
    cur: Current,
    p: &Planned,
    end: &FileEnd,
) -> std::result::Result<(PathBuf, File), Status> {
    let Current {
        partial,
        file,
        written,
        hasher,
        ..
    } = cur;
    let discard = |status: Status, why: &str| {
        warn!(file = %p.shown, "{why}: discarded");
        remove_partial(&partial);
        Err(status)
    };
    if written != end.size || (!p.stream && written != p.size) {
        return discard(Status::SizeMismatch, "size differs from the offer");
    }
    if hasher.finalize().as_bytes() != &end.hash {
        return discard(Status::HashMismatch, "hash mismatch");
    }
    Ok((partial, file))
}

/// Makes a verified (large) file durable on its own and moves it to its
/// final name.
fn commit_one(partial: PathBuf, file: File, p: &Planned) -> std::result::Result<PathBuf, Status> {
    if let Err(e) = file.sync_all() {
        warn!(file = %p.shown, error = %e, "fsync failed");
        // What is there may not be what was written: never resumed from.
        remove_partial(&partial);
        return Err(io_status(&e));
    }
    // `file` (and with it the partial's lock) is kept until the rename is done.
    let placed = fsutil::commit_partial(&partial, &p.parent, &p.file_name);
    drop(file);
    match placed {
        Ok(path) => {
            debug!(file = %p.shown, path = %path.display(), "saved");
            Ok(path)
        }
        Err(e) => {
            warn!(file = %p.shown, error = %e, "cannot move the finished file into place");
            Err(io_status(&e))
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn executable_bits_follow_the_read_bits_the_umask_left() {
        let dir = tempfile::tempdir().unwrap();
        for (created, expected) in [
            (0o644, 0o755),
            (0o600, 0o700),
            (0o640, 0o750),
            (0o400, 0o500),
        ] {
            let path = dir.path().join(format!("f{created:o}"));
            let file = File::create(&path).unwrap();
            file.set_permissions(std::fs::Permissions::from_mode(created))
                .unwrap();
            make_executable(&file).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, expected, "{created:o}");
        }
    }
}
