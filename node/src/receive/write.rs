//! The blocking half of receiving: open each record and hand it to the
//! receiver's state machine ([`fsm::Receiving`]), which says what it is and
//! where it goes; write and hash the data, verify each file against its
//! authenticated FileEnd, and commit it (small files in groups, large ones
//! alone).

use localstream_proto::transfer::Resume;
use localstream_proto::transfer::fsm::{Chunk, FileEnded, Receiving};

use super::*;
use crate::fsutil::Partial;
use crate::hash;

/// A frame whose buffer goes back to the pool once it has been handled.
struct Recycled<'a> {
    frame: RawFrame,
    pool: &'a BufPool,
}

impl Drop for Recycled<'_> {
    fn drop(&mut self) {
        self.pool.put(self.frame.take_buf());
    }
}

/// A stream (size unknown) must leave this much free space at each step of
/// this size.
const STREAM_SPACE_CHECK: u64 = 4 << 20;

/// The file currently being written.
struct Current {
    plan: usize,
    partial: Partial,
    file: File,
    written: u64,
    hashing: Hashing,
    /// `partial` is the copy already in the folder (`skip-identical`): it is
    /// compared with the FileEnd and kept, never written, moved or removed.
    copy: bool,
}

/// How the current file's bytes are hashed.
enum Hashing {
    /// As they arrive (from the held prefix's hash, when it resumes).
    Streaming(Box<blake3::Hasher>),
    /// Kept: a small file, whole from byte 0, hashed at its FileEnd with the
    /// small files around it ([`hash::small_many`]).
    Kept(Vec<u8>),
    /// Hashed so (once its bytes were kept).
    Hashed([u8; 32]),
}

/// Up to this many small files wait, ended, to be hashed side by side (or
/// fewer, holding this many bytes); the writer hashes them before it waits
/// for more records, and before any other file ends or a group is committed.
const PENDING_MAX: usize = 64;
const PENDING_BYTES: u64 = 256 * 1024;

/// Buffers kept for the next small files' bytes (at most 16 KiB each).
const SPARE_MAX: usize = 16;

/// A file that could not be created, or written to the end: the rest of
/// its records are read and dropped; its status and why, in words.
struct Dropping {
    index: u32,
    status: Status,
    why: String,
}

/// A small file that ended, whose bytes are kept to be hashed.
struct Pending {
    cur: Current,
    end: FileEnded,
}

/// A file at least this large is written back as it streams
/// ([`fsutil::writeback`]); smaller ones are left to their commit.
const WRITE_BACK_FROM: u64 = 2 * fsutil::writeback::WINDOW;

/// The text message being received (it goes to memory, not to a file).
struct Text {
    bytes: Vec<u8>,
    hasher: blake3::Hasher,
}

/// Per offered file, in offer order: its final path (`None`: it went to
/// standard output), or the status that explains its failure.
pub(super) type FileResults = Vec<std::result::Result<Option<PathBuf>, Status>>;

/// What the writer did.
pub(super) struct Written {
    /// Per accepted file, in offer order.
    pub results: FileResults,
    /// Sealed data bytes received, when some records were compressed.
    pub wire: Option<u64>,
    /// The machine after the TransferEnd: one status per offered entry
    /// (the failures of `results` recorded), the bytes received and resumed.
    pub done: Done,
    /// The text message received, when the offer was one.
    pub message: Option<String>,
    /// The record opener, for the next batch (taken by the pipeline).
    pub opener: Option<Opener>,
    /// The accepted files that did not arrive verified and saved, in offer
    /// order: the first [`FAILED_LISTED`] of them, each with why.
    pub failed: Vec<NotReceived>,
}

/// A file that did not arrive verified and saved, and why (in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NotReceived {
    /// Its path in the offer.
    pub path: String,
    /// Its status.
    pub status: Status,
    /// What happened, and what became of its bytes.
    pub why: String,
}

/// Files that did not arrive that the batch's end lists (the rest are
/// counted).
pub(super) const FAILED_LISTED: usize = 100;

/// The blocking half: opens records, writes and verifies files. Returns, per
/// accepted file, its final path or the status that explains its failure,
/// and the machine's final state.
///
/// When the Answer offered held prefixes (`accepted` awaits the Resume) the
/// sender's Resume record comes first: it confirms each held prefix
/// (continue after it) or not (start over).
///
/// Small files are committed in groups ([`fsutil::CommitGroup`]: one
/// filesystem sync for up to hundreds of files); a group is handed to the
/// committing thread ([`fsutil::Committer`]) when it is full, when its first
/// file has waited [`fsutil::GROUP_MAX_WAIT`], and before a large file starts,
/// and the writer goes on with the next one meanwhile. A large file gets its
/// name only after the groups before it (names are taken in offer order), and
/// the end, whatever ended the transfer, waits for every group.
#[allow(clippy::too_many_arguments)] // the pipeline's parts, each used once
pub(super) fn write_files(
    opener: Opener,
    rx: mpsc::Receiver<Vec<RawFrame>>,
    pool: &BufPool,
    accepted: Accepted,
    prepared: Prepared,
    progress: Option<&Progress>,
    destination: Destination,
    tally: &trust::Tally,
) -> Result<Written> {
    // (`staged` outlives the writer and the committer: a folder gets its
    // name only once neither can add a file to it.)
    let Prepared {
        planned: plan,
        held,
        staged,
    } = prepared;
    std::thread::scope(|scope| {
        let committer = fsutil::Committer::start(scope);
        write_with(
            Parts {
                opener,
                rx,
                pool,
                accepted,
                plan: &plan,
                held,
                staged: &staged,
                progress,
                destination,
                tally,
            },
            committer,
        )
    })
}

/// What [`write_with`] works with.
struct Parts<'a> {
    opener: Opener,
    rx: mpsc::Receiver<Vec<RawFrame>>,
    pool: &'a BufPool,
    accepted: Accepted,
    plan: &'a [Planned],
    held: HashMap<u32, Held>,
    staged: &'a fsutil::Staged,
    progress: Option<&'a Progress>,
    destination: Destination,
    tally: &'a trust::Tally,
}

/// [`write_files`], with groups committed by `committer`.
fn write_with<'a>(parts: Parts<'a>, committer: fsutil::Committer<'a>) -> Result<Written> {
    let Parts {
        mut opener,
        rx,
        pool,
        accepted,
        plan,
        held,
        staged,
        progress,
        destination,
        tally,
    } = parts;
    let mut w = Writer {
        tally,
        plan,
        staged,
        progress,
        results: Vec::with_capacity(plan.len()),
        group: fsutil::CommitGroup::new(),
        committer,
        current: None,
        dropping: None,
        held,
        to_stdout: destination == Destination::Stdout,
        unpack: compress::Decompressor::default(),
        text: plan.first().filter(|p| p.text).map(|_| Text {
            bytes: Vec::new(),
            hasher: blake3::Hasher::new(),
        }),
        message: None,
        wire: 0,
        compressed: false,
        writeback: None,
        unnamed: true,
        folder: fsutil::Folder::default(),
        pending: Vec::new(),
        pending_bytes: 0,
        spare: Vec::new(),
        hashes: Vec::new(),
        why: HashMap::new(),
    };
    let outcome = w.run(accepted, &mut opener, rx, pool);
    if outcome.is_err()
        && let Some(cur) = w.current.take()
    {
        if plan[cur.plan].stream {
            // A stream is never resumed: what it left is of no use to anyone.
            cur.partial.remove();
            tally.set_current(&plan[cur.plan].shown(), 0, true);
        } else if matches!(cur.partial, Partial::Named(_)) {
            // Kept for a resume.
            tally.set_current(&plan[cur.plan].shown(), cur.written, false);
        }
    }
    // Verified files still waiting for their group are saved even when the
    // transfer failed later, as they would have been one by one.
    w.settle();
    let saved = w.results.iter().filter(|r| r.is_ok()).count();
    tally
        .files
        .fetch_add(saved as u64, std::sync::atomic::Ordering::Relaxed);
    let mut done = outcome?;
    // What the machine cannot see: hashes, and files that could not be saved.
    let mut failed = Vec::new();
    for (slot, (p, result)) in plan.iter().zip(&w.results).enumerate() {
        if let Err(status) = result {
            done.fail(p.index, *status)?;
            if failed.len() < FAILED_LISTED {
                failed.push(NotReceived {
                    path: p.path.clone(),
                    status: *status,
                    why: w
                        .why
                        .remove(&slot)
                        .unwrap_or_else(|| status.description().to_owned()),
                });
            }
        }
    }
    Ok(Written {
        results: w.results,
        wire: w.compressed.then_some(w.wire),
        done,
        message: w.message,
        opener: Some(opener),
        failed,
    })
}

/// What [`write_files`] keeps between records.
struct Writer<'a> {
    /// File bytes written so far (for the reader's progress rule and the
    /// history), the bytes resumed, and where a failure left us.
    tally: &'a trust::Tally,
    plan: &'a [Planned],
    /// The batch's staged folders (what their files are called once published).
    staged: &'a fsutil::Staged,
    /// `None` when no bar is drawn.
    progress: Option<&'a Progress>,
    /// One entry per finished file; a file waiting in `group` has a
    /// placeholder (`InternalError`) until the group is committed.
    results: FileResults,
    group: fsutil::CommitGroup<'a>,
    /// Commits the full groups while the next one fills.
    committer: fsutil::Committer<'a>,
    current: Option<Current>,
    /// The file whose records are read and dropped: it could not be created
    /// or written (it fails alone at its FileEnd, the others go on).
    dropping: Option<Dropping>,
    /// Held prefixes by offer index, until their file starts.
    held: HashMap<u32, Held>,
    /// `listen --stdout`: the one file goes to standard output.
    to_stdout: bool,
    /// Compressed records are unpacked here.
    unpack: compress::Decompressor,
    /// Sealed data records received, and whether any was compressed.
    wire: u64,
    compressed: bool,
    /// The text message, when the offer is one.
    text: Option<Text>,
    /// It, verified.
    message: Option<String>,
    /// The current file's streaming write-back, when it is large and goes
    /// to a file.
    writeback: Option<fsutil::writeback::WriteBack>,
    /// Small files start without a name ([`fsutil::unnamed`]); cleared
    /// once the filesystem could not make one.
    unnamed: bool,
    /// The folder they were last made in, held open.
    folder: fsutil::Folder,
    /// Small files that ended and wait to be hashed, in offer order (their
    /// results follow those in `results`).
    pending: Vec<Pending>,
    /// Buffers of small files hashed, for the next ones to keep their bytes in.
    spare: Vec<Vec<u8>>,
    /// The pending files' bytes, together.
    pending_bytes: u64,
    /// The pending files' hashes.
    hashes: Vec<[u8; 32]>,
    /// Why each file that failed did, by its slot in `results`.
    why: HashMap<usize, String>,
}

impl<'a> Writer<'a> {
    /// Takes the sender's records until its TransferEnd: the Resume first
    /// when one is due, then the data phase, record by record.
    fn run(
        &mut self,
        accepted: Accepted,
        opener: &mut Opener,
        mut rx: mpsc::Receiver<Vec<RawFrame>>,
        pool: &BufPool,
    ) -> Result<Done> {
        let mut batch = Vec::new().into_iter();
        let mut receiving = match accepted {
            Accepted::Receiving(receiving) => receiving,
            Accepted::AwaitResume(waiting) => {
                let Some(frame) = self.next_frame(&mut rx, &mut batch) else {
                    return Err(ProtoError::Truncated.into());
                };
                let mut frame = Recycled { frame, pool };
                let (typ, pt) = frame.frame.open(opener)?;
                let (receiving, resume) = waiting.handle(typ, pt)?;
                self.resume(&resume)?;
                receiving
            }
        };
        while let Some(frame) = self.next_frame(&mut rx, &mut batch) {
            let mut frame = Recycled { frame, pool };
            // As it crossed the wire (header, ciphertext, tag).
            let sealed = frame.frame.wire_len() as u64;
            let (typ, pt) = frame.frame.open(opener)?;
            match self.record(&mut receiving, typ, pt, sealed) {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(e) => {
                    self.condemn(&e);
                    return Err(e);
                }
            }
        }
        // The reader stopped early: the partial stays for a later resume.
        Err(ProtoError::Truncated.into())
    }

    /// Handles one record of the data phase, as the machine reads it;
    /// `Some` once it was the TransferEnd.
    fn record(
        &mut self,
        receiving: &mut Receiving,
        typ: RecordType,
        pt: &[u8],
        sealed: u64,
    ) -> Result<Option<Done>> {
        match receiving.handle(typ, pt)? {
            fsm::Event::Data(chunk) => {
                self.wire += sealed;
                self.data(chunk, pt)?;
            }
            fsm::Event::Compressed(unpack) => {
                self.wire += sealed;
                self.compressed = true;
                let mut z = std::mem::take(&mut self.unpack);
                let done = z.decompress(pt).and_then(|bytes| {
                    let chunk = unpack.unpacked(bytes.len())?;
                    self.data(chunk, bytes)
                });
                self.unpack = z;
                done?;
            }
            fsm::Event::FileEnd(end) => self.file_end(&end)?,
            fsm::Event::TransferEnd(done) => return Ok(Some(done)),
        }
        Ok(None)
    }

    /// A record that contradicts the file being written (more data than
    /// offered, a FileEnd for another file, a TransferEnd before its
    /// FileEnd) condemns it: its partial goes. After any other failure it
    /// stays for a later resume.
    fn condemn(&mut self, e: &Error) {
        if let Error::Protocol(
            ProtoError::DataBeyondSize { .. }
            | ProtoError::UnexpectedFileEnd { .. }
            | ProtoError::FilesMissing { .. },
        ) = e
            && let Some(cur) = self.current.take()
            && !cur.copy
        {
            cur.partial.remove();
        }
    }

    /// Applies the sender's verdict on the held prefixes (the machine
    /// checked that it answers each one, in order, with its offset or 0):
    /// a confirmed prefix is continued after, a refused one (0) is dropped
    /// and its file received whole, over what was held.
    fn resume(&mut self, resume: &Resume) -> Result<()> {
        for verdict in &resume.files {
            let Some(held) = self.held.get_mut(&verdict.index) else {
                continue;
            };
            if held.copy {
                let shown = &self.plan[planned(self.plan, verdict.index)?].shown();
                if verdict.offset > 0 {
                    debug!(file = %shown, "the same bytes are already here");
                    continue;
                }
                info!(file = %shown, "differs from the file here: receiving it");
                if let Some(bar) = self.progress {
                    bar.grow(held.partial.len);
                }
                self.tally
                    .resumed
                    .fetch_sub(held.partial.len, std::sync::atomic::Ordering::Relaxed);
                // Only read: it stays as it is until the new file replaces it.
                self.held.remove(&verdict.index);
                continue;
            }
            let shown = &self.plan[planned(self.plan, verdict.index)?].shown();
            if verdict.offset > 0 {
                info!(file = %shown, offset = held.partial.len, "resuming");
                continue;
            }
            info!(file = %shown, "the sender's file changed: receiving it whole");
            if let Some(bar) = self.progress {
                bar.grow(held.partial.len);
            }
            held.partial
                .file
                .set_len(0)
                .map_err(|e| Error::file(&held.partial.path, e))?;
            self.tally
                .resumed
                .fetch_sub(held.partial.len, std::sync::atomic::Ordering::Relaxed);
            held.partial.len = 0;
            held.hasher = blake3::Hasher::new();
        }
        Ok(())
    }

    /// The next frame from the reader, from the current batch or the next
    /// one, or `None` once the reader is gone.
    fn next_frame(
        &mut self,
        rx: &mut mpsc::Receiver<Vec<RawFrame>>,
        batch: &mut std::vec::IntoIter<RawFrame>,
    ) -> Option<RawFrame> {
        loop {
            if let Some(frame) = batch.next() {
                return Some(frame);
            }
            *batch = self.next_batch(rx)?.into_iter();
        }
    }

    /// The next batch of frames from the reader, or `None` once it is
    /// gone. While a group waits, waiting is bounded by the group's deadline.
    fn next_batch(&mut self, rx: &mut mpsc::Receiver<Vec<RawFrame>>) -> Option<Vec<RawFrame>> {
        if !self.pending.is_empty() {
            if let Ok(batch) = rx.try_recv() {
                return Some(batch);
            }
            // Nothing more yet: the files that ended do not wait for more.
            self.verify_pending();
        }
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

    /// Opens the partial file for the file at `index` in the offer, the
    /// next one the machine follows; `None` when it could not be created
    /// there but the others may be ([`fails_alone`]): it is then
    /// [`Writer::dropping`].
    fn open_next(&mut self, index: u32) -> Result<Option<Current>> {
        // Files end in offer order: the next one is the plan's next entry.
        let next = self.results.len() + self.pending.len();
        let idx = match self.plan.get(next) {
            Some(p) if p.index == index => next,
            _ => planned(self.plan, index)?,
        };
        debug_assert_eq!(idx, next, "files end in offer order");
        let p = &self.plan[idx];
        // The small files before a large one must not wait for it.
        if !fsutil::CommitGroup::wants(p.size) {
            self.commit_group();
        }
        let held = if self.held.is_empty() {
            None
        } else {
            self.held.remove(&index)
        };
        let cur = match held {
            Some(Held {
                partial,
                hasher,
                copy: true,
            }) => Current {
                plan: idx,
                partial: Partial::Named(partial.path),
                file: partial.file,
                written: partial.len,
                hashing: Hashing::Streaming(Box::new(hasher)),
                copy: true,
            },
            Some(Held {
                mut partial,
                hasher,
                copy: false,
            }) => {
                use std::io::{Seek, SeekFrom};
                partial
                    .file
                    .seek(SeekFrom::Start(partial.len))
                    .map_err(|e| Error::file(&partial.path, e))?;
                Current {
                    plan: idx,
                    partial: Partial::Named(partial.path),
                    file: partial.file,
                    written: partial.len,
                    hashing: Hashing::Streaming(Box::new(hasher)),
                    copy: false,
                }
            }
            None if self.to_stdout => Current {
                plan: idx,
                partial: Partial::Named(PathBuf::new()),
                file: stdout_file().map_err(|e| Error::file("<standard output>", e))?,
                written: 0,
                hashing: Hashing::Streaming(Box::default()),
                copy: false,
            },
            None => {
                let (partial, file) = match open_partial(p, &mut self.unnamed, &mut self.folder) {
                    Ok(opened) => opened,
                    Err(e) if fails_alone(&e) => {
                        debug!(file = %p.shown(), error = %e, "cannot create it");
                        if let Some(bar) = self.progress {
                            bar.start_file(&p.shown(), p.size);
                        }
                        self.dropping = Some(Dropping {
                            index,
                            status: io_status(&e),
                            why: format!("it could not be created: {e}"),
                        });
                        return Ok(None);
                    }
                    Err(e) => return Err(Error::file(p.parent.join(p.file_name()), e)),
                };
                let hashing = if !p.stream && p.size <= hash::SMALL as u64 {
                    let mut kept = self.spare.pop().unwrap_or_default();
                    kept.clear();
                    // (Exactly: the spare buffers stay at most SMALL each.)
                    kept.reserve_exact(p.size as usize);
                    Hashing::Kept(kept)
                } else {
                    Hashing::Streaming(Box::default())
                };
                Current {
                    plan: idx,
                    partial,
                    file,
                    written: 0,
                    hashing,
                    copy: false,
                }
            }
        };
        let large = p.stream || p.size >= WRITE_BACK_FROM;
        self.writeback = if large && !self.to_stdout && !cur.copy {
            use fsutil::writeback::{WINDOW, WriteBack};
            WriteBack::for_file(&cur.file, cur.written, WINDOW)
        } else {
            None
        };
        if let Some(bar) = self.progress {
            bar.start_file(&p.shown(), p.size - cur.written);
        }
        debug!(file = %p.shown(), partial = %cur.partial.path().display(), "writing");
        Ok(Some(cur))
    }

    /// Writes and hashes the bytes of one Data (or decompressed DataZstd)
    /// record, where the machine says they go.
    fn data(&mut self, chunk: Chunk, pt: &[u8]) -> Result<()> {
        if let Some(text) = &mut self.text {
            // The machine bounds it by the offered size (at most MAX_TEXT).
            text.bytes.extend_from_slice(pt);
            text.hasher.update(pt);
            self.tally
                .bytes
                .fetch_add(pt.len() as u64, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        if self
            .dropping
            .as_ref()
            .is_some_and(|u| u.index == chunk.index)
        {
            self.dropped(pt.len());
            return Ok(());
        }
        let cur = match self.current.take() {
            Some(c) => c,
            None => match self.open_next(chunk.index)? {
                Some(c) => c,
                None => {
                    self.dropped(pt.len());
                    return Ok(());
                }
            },
        };
        if cur.copy {
            // Its whole length was confirmed: the machine lets no data through.
            return Err(Error::Worker(format!(
                "data for {}, which is already here",
                self.plan[cur.plan].shown()
            )));
        }
        let cur = self.current.insert(cur);
        let p = &self.plan[cur.plan];
        debug_assert_eq!((p.index, cur.written), (chunk.index, chunk.offset));
        // A stream's size is unknown, so the free-space check of the offer
        // could not cover it: check as it grows.
        if p.stream
            && !self.to_stdout
            && (cur.written == 0
                || cur.written / STREAM_SPACE_CHECK
                    != (cur.written + pt.len() as u64) / STREAM_SPACE_CHECK)
            && fsutil::available_space(&p.parent).is_some_and(|free| free < STREAM_SPACE_CHECK)
        {
            // (Its partial is removed: the final name is what the user knows.)
            return Err(Error::file(
                p.parent.join(p.file_name()),
                std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!(
                        "less than {} is free on its disk, where a stream (its size unknown) \
                         stops",
                        crate::units::human_bytes(STREAM_SPACE_CHECK)
                    ),
                ),
            ));
        }
        if let Err(e) = cur.file.write_all(pt) {
            if self.to_stdout && e.kind() == std::io::ErrorKind::BrokenPipe {
                return Err(crate::error::TransferError::OutputClosed {
                    name: p.shown().into_owned(),
                }
                .into());
            }
            if e.kind() == std::io::ErrorKind::FileTooLarge && !self.to_stdout {
                // Its filesystem (or `ulimit -f`) takes no file this large:
                // the next files may well fit.
                let why = format!(
                    "it could not be written past {}: {e}: discarded",
                    crate::units::human_bytes(cur.written)
                );
                debug!(file = %p.shown(), error = %e, "cannot write it");
                if let Some(cur) = self.current.take() {
                    cur.partial.remove();
                }
                self.writeback = None;
                self.dropping = Some(Dropping {
                    index: chunk.index,
                    status: Status::WriteFailed,
                    why,
                });
                self.dropped(pt.len());
                return Ok(());
            }
            return Err(Error::file(cur.partial.path(), e));
        }
        match &mut cur.hashing {
            Hashing::Streaming(hasher) => {
                hasher.update(pt);
            }
            // (The machine keeps it within its offered size.)
            Hashing::Kept(kept) => kept.extend_from_slice(pt),
            Hashing::Hashed(_) => unreachable!("hashed only after its FileEnd"),
        }
        cur.written += pt.len() as u64;
        if let Some(wb) = &mut self.writeback {
            wb.advance(&cur.file, cur.written);
        }
        self.tally
            .bytes
            .fetch_add(pt.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = self.progress {
            bar.advance(pt.len() as u64);
        }
        Ok(())
    }

    /// Bytes of a file that could not be created: read, not kept (counted
    /// as moved, as the sender counts them, and in the progress).
    fn dropped(&mut self, n: usize) {
        self.tally
            .bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = self.progress {
            bar.advance(n as u64);
        }
    }

    /// The current file's FileEnd (its size already checked by the
    /// machine): verify its hash, then commit it, alone or in the group.
    fn file_end(&mut self, end: &FileEnded) -> Result<()> {
        if let Some(text) = self.text.take() {
            let result = self.text_end(text, end);
            self.results.push(result);
            return Ok(());
        }
        let cur = match self.current.take() {
            Some(c) => Some(c),
            None if self.dropping.as_ref().is_some_and(|u| u.index == end.index) => None,
            None => self.open_next(end.index)?,
        };
        let Some(cur) = cur else {
            // The files that ended before it first (results are in order).
            self.verify_pending();
            if let Some(u) = self.dropping.take() {
                // (Ended short too: the machine's status is the one it keeps.)
                let status = if end.status.is_ok() {
                    u.status
                } else {
                    end.status
                };
                self.fail(status, u.why);
            }
            return Ok(());
        };
        if matches!(cur.hashing, Hashing::Kept(_)) && end.status.is_ok() {
            self.pending_bytes += cur.written;
            self.pending.push(Pending { cur, end: *end });
            if self.pending.len() >= PENDING_MAX || self.pending_bytes >= PENDING_BYTES {
                self.verify_pending();
            }
            return Ok(());
        }
        // The files that ended before it first (names are taken in order).
        self.verify_pending();
        self.finish(cur, end);
        Ok(())
    }

    /// Hashes the small files that wait for it, side by side, and finishes
    /// each in order.
    fn verify_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let inputs: Vec<&[u8]> = pending
            .iter()
            .map(|f| match &f.cur.hashing {
                Hashing::Kept(kept) => kept.as_slice(),
                Hashing::Streaming(_) | Hashing::Hashed(_) => unreachable!("only kept bytes wait"),
            })
            .collect();
        let mut hashes = std::mem::take(&mut self.hashes);
        hash::small_many(&inputs, &mut hashes);
        drop(inputs);
        for (f, hash) in pending.drain(..).zip(&hashes) {
            let Pending { mut cur, end } = f;
            if let Hashing::Kept(kept) = std::mem::replace(&mut cur.hashing, Hashing::Hashed(*hash))
                && self.spare.len() < SPARE_MAX
            {
                self.spare.push(kept);
            }
            self.finish(cur, &end);
        }
        self.hashes = hashes;
        // (Its allocation, for the next ones.)
        self.pending = pending;
    }

    /// A file whose FileEnd came: verify its hash, then commit it, alone or
    /// in the group (its result is the next one).
    fn finish(&mut self, cur: Current, end: &FileEnded) {
        let plan = self.plan;
        let p = &plan[cur.plan];
        let copy = cur.copy;
        let (partial, file) = match verify(cur, p, end) {
            Ok(verified) => verified,
            Err((status, why)) => {
                self.fail(status, why);
                return;
            }
        };
        if self.to_stdout {
            drop(file);
            self.results.push(Ok(None));
            return;
        }
        if p.same_maybe
            && !copy
            && let Some(path) = identical_here(p, &end.hash)
        {
            // The same file again, past the Answer's limit on held files:
            // the one here stays, the copy just received goes.
            partial.remove();
            drop(file);
            debug!(file = %p.shown(), "identical to the file here: kept");
            if let Some(bar) = self.progress {
                bar.file_done(|| p.shown(), p.size, Some(&path));
            }
            self.results.push(Ok(Some(path)));
            return;
        }
        if let Some(t) = p.mtime {
            fsutil::collision::set_mtime(&file, t, || p.shown());
        }
        if copy {
            // The same bytes were here already: nothing to write or move.
            debug!(file = %p.shown(), "identical to the file here: kept");
            let path = partial.path().to_owned();
            if let Some(bar) = self.progress {
                bar.file_done(|| p.shown(), p.size, Some(&path));
            }
            self.results.push(Ok(Some(path)));
            return;
        }
        if p.exec
            && let Err(e) = make_executable(&file)
        {
            warn!(file = %p.shown(), error = %e, "cannot make it executable");
        }
        if !fsutil::CommitGroup::wants(p.size) {
            // Names are taken in offer order: the small files before it first.
            self.settle();
            match commit_one(partial, file, p) {
                Ok(path) => {
                    let path = self.named(p, path);
                    if let Some(bar) = self.progress {
                        bar.file_done(|| p.shown(), p.size, Some(&path));
                    }
                    self.results.push(Ok(Some(path)));
                }
                Err((status, why)) => self.fail(status, why),
            }
            return;
        }
        let slot = self.results.len();
        let pushed = if p.replace {
            self.group
                .push_replacing(slot, file, partial, &p.parent, p.file_name(), p.size)
        } else {
            self.group
                .push(slot, file, partial, &p.parent, p.file_name(), p.size)
        };
        match pushed {
            Ok(()) => self.results.push(Err(Status::InternalError)),
            Err(e) => {
                debug!(file = %p.shown(), error = %e, "fsync failed");
                self.fail(
                    io_status(&e),
                    format!("it could not be written to disk: {e}"),
                );
            }
        }
        if self.group.is_at_limit() || self.group.deadline().is_some_and(|d| Instant::now() >= d) {
            self.commit_group();
        } else if self.group.is_full() {
            self.offer_group();
        }
    }

    /// What a saved file's `path` is called once its folder is published.
    fn named(&self, p: &Planned, path: PathBuf) -> PathBuf {
        match p.staged {
            Some(i) => self.staged.named(i, &path),
            None => path,
        }
    }

    /// The next file's result: a failure, and why.
    fn fail(&mut self, status: Status, why: String) {
        self.why.insert(self.results.len(), why);
        self.results.push(Err(status));
    }

    /// The text message's FileEnd: its size (as the machine found it) and
    /// hash; then it is the message to show (invalid UTF-8 shown as U+FFFD).
    fn text_end(
        &mut self,
        text: Text,
        end: &FileEnded,
    ) -> std::result::Result<Option<PathBuf>, Status> {
        if !end.status.is_ok() {
            warn!("text message: size differs from the offer: discarded");
            return Err(end.status);
        }
        if text.hasher.finalize().as_bytes() != &end.hash {
            warn!("text message: hash mismatch: discarded");
            return Err(Status::HashMismatch);
        }
        self.message = Some(String::from_utf8_lossy(&text.bytes).into_owned());
        Ok(None)
    }

    /// Hands the waiting group to the committer, and fills in the results
    /// of the groups it has committed since.
    fn commit_group(&mut self) {
        self.verify_pending();
        if !self.group.is_empty() {
            let group = self.group.take();
            self.committer.commit(group);
        }
        for report in self.committer.ready() {
            self.report(report);
        }
    }

    /// Hands a full group to the committer if it is free; while it is still
    /// busy with the group before, this one keeps filling (fewer, larger
    /// groups when syncing is what takes the time).
    fn offer_group(&mut self) {
        let group = self.group.take();
        if let Some(group) = self.committer.try_commit(group) {
            self.group = group;
        }
        for report in self.committer.ready() {
            self.report(report);
        }
    }

    /// Hands the waiting group over and waits until every group is
    /// committed, filling in their files' results.
    fn settle(&mut self) {
        self.verify_pending();
        if !self.group.is_empty() {
            let group = self.group.take();
            self.committer.commit(group);
        }
        for report in self.committer.finish() {
            self.report(report);
        }
    }

    /// Fills in the results of one committed group.
    fn report(&mut self, committed: fsutil::Committed) {
        for (slot, placed) in committed {
            let Some(p) = self.plan.get(slot) else {
                continue;
            };
            let result = match placed {
                Ok(path) => {
                    let path = self.named(p, path);
                    debug!(file = %p.shown(), path = %path.display(), "saved");
                    if let Some(bar) = self.progress {
                        bar.file_done(|| p.shown(), p.size, Some(&path));
                    }
                    Ok(Some(path))
                }
                Err(e) => {
                    debug!(file = %p.shown(), error = %e, "cannot save the finished file");
                    self.why.insert(slot, format!("it could not be saved: {e}"));
                    Err(io_status(&e))
                }
            };
            if let Some(r) = self.results.get_mut(slot) {
                *r = result;
            }
        }
    }
}

/// The file of `p`'s name already there, when its bytes hash to `hash`
/// (a plain file of the same size, read without following a link).
fn identical_here(p: &Planned, hash: &[u8; 32]) -> Option<PathBuf> {
    let mut file = fsutil::collision::open_existing(&p.parent, p.file_name(), p.size).ok()??;
    let (here, _) = resumable::hash_prefix_counting(&mut file, p.size, |_| Ok(())).ok()?;
    (here == *hash).then(|| p.parent.join(p.file_name()))
}

/// Whether a file that could not be created fails alone, the others going
/// on: its folder refuses it (permissions, an immutable folder, a name its
/// filesystem cannot store). A full or read-only disk, an I/O error, or a
/// folder gone meanwhile (the destination removed?) ends the transfer: the
/// next files would fail the same way.
fn fails_alone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    #[cfg(unix)]
    if e.raw_os_error() == Some(rustix::io::Errno::ILSEQ.raw_os_error()) {
        // A name the filesystem takes as not valid (ZFS utf8only, ...).
        return true;
    }
    matches!(
        e.kind(),
        K::PermissionDenied | K::InvalidInput | K::InvalidFilename
    )
}

/// Where the file at `index` in the offer is in the plan (which lists every
/// accepted file, as the machine follows them, in offer order).
fn planned(plan: &[Planned], index: u32) -> Result<usize> {
    plan.binary_search_by_key(&index, |p| p.index)
        .map_err(|_| Error::Worker(format!("file {index} is not in the receiver's plan")))
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

/// A new, empty partial for `p`: for a small file of a group that takes a
/// free name, a file without a name ([`fsutil::unnamed`]) while `unnamed`
/// (cleared where the filesystem cannot make one); else its resumable one
/// (created, or emptied when a stale one was there), or a fresh one when that
/// cannot be used.
fn open_partial(
    p: &Planned,
    unnamed: &mut bool,
    folder: &mut fsutil::Folder,
) -> std::io::Result<(Partial, File)> {
    // In a folder that gets its name only once its files are durable, a
    // file takes its own name at once: no move per file (an unnamed file's
    // link cost tmpfs 40 % more kernel time per small file than a create,
    // journaled ext4 30 %).
    if p.staged.is_some()
        && !p.stream
        && fsutil::CommitGroup::wants(p.size)
        && let Some(made) = fsutil::unnamed::create_in_place(folder, &p.parent, p.file_name())?
    {
        return Ok(made);
    }
    if *unnamed && !p.stream && !p.replace && fsutil::CommitGroup::wants(p.size) {
        match fsutil::unnamed::create(folder, &p.parent) {
            Ok(Some(file)) => {
                return Ok((
                    Partial::Unnamed(fsutil::joined(&p.parent, p.file_name())),
                    file,
                ));
            }
            Ok(None) => *unnamed = false,
            // A named partial may still be allowed there; its error is the
            // one that counts.
            Err(e) if fails_alone(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let partial_name = p.partial_name();
    if let Some(r) = resumable::create_resumable(&p.parent, &partial_name)? {
        return Ok((Partial::Named(r.path), r.file));
    }
    match resumable::open_resumable(&p.parent, &partial_name)? {
        Some(r) => {
            if r.len > 0 {
                r.file.set_len(0)?;
            }
            Ok((Partial::Named(r.path), r.file))
        }
        None => fsutil::create_partial(&p.parent, p.file_name())
            .map(|(path, file)| (Partial::Named(path), file)),
    }
}

/// Checks a completed file against its authenticated FileEnd: the size (as
/// the machine found it) and the hash; a file that fails is removed (its
/// status, and why in words).
fn verify(
    cur: Current,
    p: &Planned,
    end: &FileEnded,
) -> std::result::Result<(Partial, File), (Status, String)> {
    let Current {
        partial,
        file,
        written,
        hashing,
        copy,
        ..
    } = cur;
    let discard = |status: Status, why: &str| {
        let why = if copy {
            // The file here changed while it was compared: it stays as it is.
            format!("{why}; the file here is kept as it is")
        } else {
            partial.remove();
            format!("{why}: discarded")
        };
        debug!(file = %p.shown(), "{why}");
        Err((status, why))
    };
    debug_assert_eq!(written, end.received);
    if !end.status.is_ok() {
        return discard(
            end.status,
            &format!(
                "it failed verification: {} of the {} offered arrived (it changed on the sender \
                 while it was sent?)",
                crate::units::human_bytes(written),
                crate::units::human_bytes(p.size)
            ),
        );
    }
    let hash = match hashing {
        Hashing::Streaming(hasher) => *hasher.finalize().as_bytes(),
        Hashing::Kept(kept) => *blake3::hash(&kept).as_bytes(),
        Hashing::Hashed(hash) => hash,
    };
    if hash != end.hash {
        return discard(
            Status::HashMismatch,
            "it failed verification: its content is not what the sender hashed",
        );
    }
    Ok((partial, file))
}

/// Makes a verified (large) file durable on its own and moves it to its
/// final name.
fn commit_one(
    mut partial: Partial,
    file: File,
    p: &Planned,
) -> std::result::Result<PathBuf, (Status, String)> {
    if let Err(e) = file.sync_all() {
        debug!(file = %p.shown(), error = %e, "fsync failed");
        // What is there may not be what was written: never resumed from.
        partial.remove();
        return Err((
            io_status(&e),
            format!("it could not be written to disk: {e}"),
        ));
    }
    // `file` (and with it the partial's lock) is kept until the rename is done.
    let placed = match &mut partial {
        // Its folder gets its name at the batch's end.
        Partial::InPlace(f) => Ok(f.keep()),
        Partial::Named(path) if p.replace => {
            fsutil::commit_replacing(path, &p.parent, p.file_name())
        }
        Partial::Named(path) => fsutil::commit_partial(path, &p.parent, p.file_name()),
        // (Only small files of a group are unnamed, and never to replace.)
        Partial::Unnamed(_) => fsutil::commit_unnamed(&file, &p.parent, p.file_name()),
    };
    drop(file);
    match placed {
        Ok(path) => {
            debug!(file = %p.shown(), path = %path.display(), "saved");
            Ok(path)
        }
        Err(e) => {
            debug!(file = %p.shown(), error = %e, "cannot move the finished file into place");
            let kept = match &partial {
                Partial::Named(path) if path.exists() => {
                    format!("; its data is kept in {} for a resume", path.display())
                }
                _ => String::new(),
            };
            Err((
                io_status(&e),
                format!("it could not be given its name: {e}{kept}"),
            ))
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
