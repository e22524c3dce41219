//! Stream: the blocking producer (read, hash, seal) and the outbox that
//! gathers small records into one write.

use super::*;

/// Records with less plaintext than this are gathered into one buffer with
/// their neighbours (small files, FileEnd, TransferEnd): one write, not one
/// per record.
const GATHER_BELOW: usize = 64 * 1024;
/// A gathering buffer is sent once it holds this much
const GATHER_UP_TO: usize = 256 * 1024;
/// or once its oldest record has waited this long.
const GATHER_WAIT: Duration = Duration::from_millis(20);

/// Sealed bytes on their way to the socket: large records each in their own
/// pooled buffer, small ones gathered.
struct Outbox<'a> {
    tx: mpsc::Sender<Vec<u8>>,
    pool: &'a BufPool,
    gathered: Vec<u8>,
    /// When the oldest gathered record was sealed.
    since: Option<Instant>,
    /// Compression of large data records.
    compressor: Compressor,
    /// Sealed data bytes queued so far (what crosses the wire for file content).
    wire: u64,
}

impl Outbox<'_> {
    fn send(&self, buf: Vec<u8>) -> Result<()> {
        self.tx
            .blocking_send(buf)
            .map_err(|_| Error::Io(std::io::ErrorKind::BrokenPipe.into()))
    }

    /// Sends a large sealed data record holding `bytes` file bytes.
    fn send_data(&mut self, buf: Vec<u8>, bytes: usize) -> Result<()> {
        self.wire += buf.len() as u64;
        self.send(buf)?;
        self.compressor.sent(bytes as u64);
        Ok(())
    }

    /// Sends what has been gathered, if anything.
    fn flush(&mut self) -> Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let mut next = self.pool.get();
        next.clear();
        let full = std::mem::replace(&mut self.gathered, next);
        self.since = None;
        self.send(full)
    }

    /// After a small record was gathered: send the gathered records once
    /// they fill a write, or once the oldest has waited [`GATHER_WAIT`] (so a
    /// slow source cannot hold sealed records back until the receiver times out).
    fn gathered_one(&mut self) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.gathered.len() >= GATHER_UP_TO || since.elapsed() >= GATHER_WAIT {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Seals a small message record (FileEnd, TransferEnd) into the gathering buffer.
    fn message(&mut self, sealer: &mut Sealer, typ: RecordType, body: &[u8]) -> Result<()> {
        sealer.seal(typ, body, &mut self.gathered)?;
        self.gathered_one()
    }

    /// Reads up to `want` bytes of `file` straight into a record buffer,
    /// hashes them, accounts for them in `sending` (as Data or DataZstd),
    /// seals them and queues the record. Returns the bytes read (0 at the
    /// end of the file).
    fn data(
        &mut self,
        sealer: &mut Sealer,
        file: &mut dyn Read,
        want: usize,
        hasher: &mut blake3::Hasher,
        sending: &mut SendingFile,
    ) -> std::io::Result<Result<usize>> {
        let small = want < GATHER_BELOW;
        let mut own = if small { Vec::new() } else { self.pool.get() };
        let buf = if small { &mut self.gathered } else { &mut own };
        let start = if small { buf.len() } else { 0 };
        conn::set_len(buf, start + HEADER_LEN + want);
        let got = match read_full(file, &mut buf[start + HEADER_LEN..]) {
            Ok(n) => n,
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + HEADER_LEN + got);
        if got == 0 {
            buf.truncate(start);
            return Ok(Ok(0));
        }
        hasher.update(&buf[start + HEADER_LEN..]);
        if !small && self.compressor.enabled() {
            // Large records may go compressed (small files are not worth it)
            // when the receiver takes them.
            let mut packed = self.pool.get();
            if self
                .compressor
                .compress(&own[HEADER_LEN..], &mut packed, HEADER_LEN)
                .is_some()
            {
                self.pool.put(std::mem::replace(&mut own, packed));
                if let Err(e) = sending
                    .data_zstd(got)
                    .and_then(|()| sealer.seal_in_place_at(RecordType::DataZstd, &mut own, 0))
                {
                    return Ok(Err(e.into()));
                }
                return Ok(self
                    .flush()
                    .and_then(|()| self.send_data(own, got))
                    .map(|()| got));
            }
            self.pool.put(packed);
        }
        let buf = if small { &mut self.gathered } else { &mut own };
        let sealed = sending
            .data(got)
            .and_then(|()| sealer.seal_in_place_at(RecordType::Data, buf, start));
        if let Err(e) = sealed {
            // Nothing of it may go out.
            buf.truncate(start);
            return Ok(Err(e.into()));
        }
        let queued = if small {
            self.wire += (self.gathered.len() - start) as u64;
            self.gathered_one()
        } else {
            self.flush().and_then(|()| self.send_data(own, got))
        };
        Ok(queued.map(|()| got))
    }
}

/// The blocking half: reads each accepted file, hashes it and seals records.
pub(super) fn produce(
    sealer: &mut Sealer,
    agreed: Agreed,
    tx: mpsc::Sender<Vec<u8>>,
    pool: &BufPool,
    progress: &Progress,
    compressor: Compressor,
) -> Result<Produced> {
    let compressed = compressor.enabled();
    let mut out = Outbox {
        tx,
        pool,
        gathered: Vec::new(),
        since: None,
        compressor,
        wire: 0,
    };
    let result = produce_into(&mut out, sealer, agreed, progress);
    if result.is_err() {
        // Records already sealed must still go out, in order: the receiver
        // then gets every file completed so far, and the sender's alert is
        // the next record it expects (not a gap that looks like tampering).
        let _ = out.flush();
    }
    result.map(|waiting| Produced {
        bytes: waiting.sent().bytes,
        wire: out.wire,
        compressed,
        waiting,
    })
}

/// What the producer sent.
pub(super) struct Produced {
    /// File bytes.
    pub(super) bytes: u64,
    /// Sealed data records, as they crossed the wire.
    pub(super) wire: u64,
    /// Whether compression was in use.
    pub(super) compressed: bool,
    /// The machine, after our TransferEnd.
    pub(super) waiting: AwaitStatus,
}

/// Every accepted file in the machine's order, then the TransferEnd.
fn produce_into(
    out: &mut Outbox<'_>,
    sealer: &mut Sealer,
    agreed: Agreed,
    progress: &Progress,
) -> Result<AwaitStatus> {
    let Agreed {
        mut streaming,
        sources,
        mut prefixes,
        tally,
    } = agreed;
    let mut body = vec![];
    loop {
        body.clear();
        let sending = match streaming.next(&mut body) {
            Next::File(sending) => sending,
            Next::Ended(waiting) => {
                out.message(sealer, waiting.end_record(), &body)?;
                out.flush()?;
                return Ok(waiting);
            }
        };
        let index = sending.index();
        let src = &sources[index as usize];
        // A confirmed held prefix was hashed already: the hash goes on from there.
        let hasher = prefixes.remove(&index).unwrap_or_default();
        tally.set_current(&src.name, 0);
        streaming = produce_file(out, sealer, sending, src, hasher, progress, &tally)?;
        tally.clear_current();
    }
}

/// One file: its data from where it starts, then its FileEnd.
fn produce_file(
    out: &mut Outbox<'_>,
    sealer: &mut Sealer,
    mut sending: SendingFile,
    src: &Source,
    mut hasher: blake3::Hasher,
    progress: &Progress,
    tally: &Tally,
) -> Result<Streaming> {
    use std::sync::atomic::Ordering::Relaxed;
    let offset = sending.offset();
    progress.start_file(&src.name, sending.remaining().unwrap_or(0));
    let mut file: Box<dyn Read> = if let Some(text) = &src.text {
        // A text is never resumed: it starts at 0.
        Box::new(std::io::Cursor::new(text.clone()))
    } else if src.is_stream() {
        Box::new(stdin_file().map_err(|e| Error::file("<standard input>", e))?)
    } else {
        match open_at(&src.path, offset) {
            Ok(file) => Box::new(file),
            Err(e) => {
                // Gone or closed since it was listed: nothing of it goes.
                unread(progress, src, &e);
                Box::new(std::io::empty())
            }
        }
    };
    // A stream goes on until its end, whatever its length.
    while let Some(want) = match sending.remaining() {
        Some(0) => None,
        Some(left) => Some(left.min(CHUNK as u64) as usize),
        None => Some(CHUNK),
    } {
        let got = match out.data(sealer, &mut *file, want, &mut hasher, &mut sending) {
            Ok(sealed) => sealed?,
            // A file ends short here and fails alone; a stream has no size
            // that would tell the receiver it was cut, so it ends the transfer.
            Err(e) if !src.is_stream() && src.text.is_none() => {
                unread(progress, src, &e);
                break;
            }
            Err(e) => return Err(Error::file(&src.path, e)),
        };
        if got == 0 {
            // The file shrank since it was offered: end it short; the receiver discards it.
            break;
        }
        progress.advance(got as u64);
        tally.bytes.fetch_add(got as u64, Relaxed);
    }
    let sent = sending.position();
    let mut body = vec![];
    let streaming = sending.end(*hasher.finalize().as_bytes(), &mut body);
    out.message(sealer, RecordType::FileEnd, &body)?;
    tally.files.fetch_add(1, Relaxed);
    progress.file_done(&src.name, sent, None);
    Ok(streaming)
}

/// `path` opened at `offset`.
fn open_at(path: &Path, offset: u64) -> std::io::Result<File> {
    let mut file = File::open(path)?;
    if offset > 0 {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(offset))?;
    }
    Ok(file)
}

/// A file offered that cannot be read (any more): the user is told; it ends
/// short where it is, so the receiver discards it.
fn unread(progress: &Progress, src: &Source, e: &std::io::Error) {
    tracing::warn!(path = %src.path.display(), error = %e, "a file offered cannot be read");
    progress.notice(Notice::Unread {
        path: src.path.clone(),
        error: e.to_string(),
    });
}

/// Standard input as a file, read straight from the descriptor.
#[cfg(unix)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(std::io::stdin().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn stdin_file() -> std::io::Result<File> {
    use std::os::windows::io::AsHandle;
    Ok(File::from(
        std::io::stdin().as_handle().try_clone_to_owned()?,
    ))
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
