//! Stream: the blocking producer (read, hash, seal) and the outbox that
//! gathers small records into one write.

use super::*;
use crate::compress::Costs;
use crate::hash;

/// Records with less plaintext than this are gathered into one buffer with
/// their neighbours (small files, FileEnd, TransferEnd): one write, not one
/// per record.
const GATHER_BELOW: usize = 64 * 1024;
/// A gathering buffer is sent once it holds this much
const GATHER_UP_TO: usize = 256 * 1024;
/// or once its oldest record has waited this long.
const GATHER_WAIT: Duration = Duration::from_millis(20);
/// Small data records with fewer bytes are never compressed (zstd's frame
/// would eat what it saves).
const COMPRESS_FROM: usize = 512;
/// A gathering buffer with at least this many file bytes is measured for
/// `auto` like a large record.
const MEASURE_GATHERED_FROM: u64 = 64 * 1024;

/// The small data records in the gathering buffer, as `auto` measures them.
struct Gathered {
    /// When the first one's bytes began to be read.
    began: Instant,
    /// Their file bytes, and the time spent compressing them.
    bytes: u64,
    zstd: Duration,
}

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
    /// Time spent waiting for room in the queue since the current large
    /// record began (when the compressor measures).
    waited: Duration,
    /// The small data records gathered (when the compressor measures).
    measured: Option<Gathered>,
    /// Where a small record is compressed before it goes back into `gathered`.
    packed: Vec<u8>,
}

impl Outbox<'_> {
    fn send(&mut self, buf: Vec<u8>) -> Result<()> {
        let began = self.compressor.measuring().then(Instant::now);
        let sent = self
            .tx
            .blocking_send(buf)
            .map_err(|_| Error::Io(std::io::ErrorKind::BrokenPipe.into()));
        if let Some(began) = began {
            self.waited += began.elapsed();
        }
        sent
    }

    /// Sends a large sealed data record holding `bytes` file bytes, whose
    /// reading `began` (when the compressor measures) and which spent
    /// `zstd` compressing.
    fn send_data(
        &mut self,
        buf: Vec<u8>,
        bytes: usize,
        began: Option<Instant>,
        zstd: Duration,
    ) -> Result<()> {
        let wire = buf.len() as u64;
        self.wire += wire;
        self.send(buf)?;
        if let Some(began) = began {
            let costs = Costs {
                took: began.elapsed(),
                waited: std::mem::take(&mut self.waited),
                zstd,
            };
            self.compressor.sent(bytes as u64, wire, costs);
        }
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
        let Some(g) = self.measured.take() else {
            return self.send(full);
        };
        let wire = full.len() as u64;
        let waited_before = self.waited;
        self.send(full)?;
        if g.bytes >= MEASURE_GATHERED_FROM {
            let costs = Costs {
                took: g.began.elapsed(),
                waited: self.waited - waited_before,
                zstd: g.zstd,
            };
            self.compressor.sent(g.bytes, wire, costs);
        }
        Ok(())
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
    /// hashes them (unless hashed already), accounts for them in `sending` (as Data or DataZstd),
    /// seals them and queues the record. Returns the bytes read (0 at the
    /// end of the file).
    fn data(
        &mut self,
        sealer: &mut Sealer,
        file: &mut dyn Read,
        want: usize,
        hasher: Option<&mut blake3::Hasher>,
        sending: &mut SendingFile,
    ) -> std::io::Result<Result<usize>> {
        let small = want < GATHER_BELOW;
        let measuring = self.compressor.measuring();
        if !small {
            // The small records gathered before this one go first (and are
            // measured on their own).
            if let Err(e) = self.flush() {
                return Ok(Err(e));
            }
        }
        let began = (!small && measuring).then(Instant::now);
        if small && measuring && self.measured.is_none() {
            self.measured = Some(Gathered {
                began: Instant::now(),
                bytes: 0,
                zstd: Duration::ZERO,
            });
        }
        if !small {
            // Only what this record waits counts for it.
            self.waited = Duration::ZERO;
        }
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
        if let Some(hasher) = hasher {
            hasher.update(&buf[start + HEADER_LEN..]);
        }
        // Time spent compressing a record that then did not shrink.
        let mut zstd_spent = Duration::ZERO;
        if !small && self.compressor.enabled() {
            // Large records may go compressed when the receiver takes them.
            let mut packed = self.pool.get();
            let compressing = began.map(|_| Instant::now());
            let shrunk = self
                .compressor
                .compress(&own[HEADER_LEN..], &mut packed, HEADER_LEN)
                .is_some();
            let zstd = compressing.map_or(Duration::ZERO, |t| t.elapsed());
            if shrunk {
                self.pool.put(std::mem::replace(&mut own, packed));
                if let Err(e) = sending
                    .data_zstd(got)
                    .and_then(|()| sealer.seal_in_place_at(RecordType::DataZstd, &mut own, 0))
                {
                    return Ok(Err(e.into()));
                }
                return Ok(self.send_data(own, got, began, zstd).map(|()| got));
            }
            self.pool.put(packed);
            zstd_spent = zstd;
        }
        if small {
            if let Some(g) = &mut self.measured {
                g.bytes += got as u64;
            }
            if got >= COMPRESS_FROM
                && self.compressor.enabled()
                && let Some(queued) = self.small_zstd(sealer, start, sending)
            {
                return Ok(queued.map(|()| got));
            }
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
            self.send_data(own, got, began, zstd_spent)
        };
        Ok(queued.map(|()| got))
    }

    /// Compresses the small data record whose plaintext is in `gathered`
    /// from `start + HEADER_LEN` on, if it should be and shrinks enough,
    /// and seals it as DataZstd. Returns `None` when it stays as it is
    /// (still to be sealed), or whether it was queued.
    fn small_zstd(
        &mut self,
        sealer: &mut Sealer,
        start: usize,
        sending: &mut SendingFile,
    ) -> Option<Result<()>> {
        let at = start + HEADER_LEN;
        let got = self.gathered.len() - at;
        let compressing = self.measured.as_ref().map(|_| Instant::now());
        let shrunk = self
            .compressor
            .compress(&self.gathered[at..], &mut self.packed, 0);
        if let (Some(g), Some(t)) = (&mut self.measured, compressing) {
            g.zstd += t.elapsed();
        }
        let n = shrunk?;
        self.gathered.truncate(at);
        self.gathered.extend_from_slice(&self.packed[..n]);
        let sealed = sending.data_zstd(got).and_then(|()| {
            sealer.seal_in_place_at(RecordType::DataZstd, &mut self.gathered, start)
        });
        if let Err(e) = sealed {
            // Nothing of it may go out.
            self.gathered.truncate(start);
            return Some(Err(e.into()));
        }
        self.wire += (self.gathered.len() - start) as u64;
        Some(self.gathered_one())
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
        waited: Duration::ZERO,
        measured: None,
        packed: Vec::new(),
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
        compressor: out.compressor,
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
    /// For the next batch ([`Compressor::again`]).
    pub(super) compressor: Compressor,
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
    let mut ahead = ReadAhead::default();
    loop {
        body.clear();
        if ahead.files.is_empty() {
            ahead.fill(streaming.upcoming(), &sources);
        }
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
        let content = match ahead.take(index) {
            Some(read) => Content::Read(read),
            // A confirmed held prefix was hashed already: the hash goes on from there.
            None => Content::Open(Box::new(prefixes.remove(&index).unwrap_or_default())),
        };
        tally.set_current(&src.name, 0, src.is_stream());
        streaming = produce_file(out, sealer, sending, src, content, progress, &tally)?;
        tally.clear_current();
    }
}

/// At most this many small files are read ahead of their turn (16 fill
/// AVX-512's lanes, and files of mixed lengths split into several runs),
const READ_AHEAD: usize = 64;
/// and at most this many bytes (but always the next file).
const READ_AHEAD_BYTES: usize = 256 * 1024;

/// Small files read ahead of their turn, so that they are hashed side by
/// side ([`hash::small_many`]), not one after the other.
#[derive(Default)]
struct ReadAhead {
    /// Their bytes, one after the other.
    bytes: Vec<u8>,
    /// In the order they go: offer index, where in `bytes` (or why it could
    /// not be read), and hash.
    files: std::collections::VecDeque<Ahead>,
    hashes: Vec<[u8; 32]>,
}

/// One file read ahead.
struct Ahead {
    index: u32,
    read: std::io::Result<std::ops::Range<usize>>,
    hash: [u8; 32],
    /// It had more than its offered size when it was read.
    grew: bool,
}

/// A file read ahead: its bytes (or why they could not be read), their
/// hash, and whether it had grown.
type Prefetched<'a> = (std::io::Result<&'a [u8]>, [u8; 32], bool);

impl ReadAhead {
    /// Reads the run of small files (whole, from a path) that goes next, if
    /// the next one is one, and hashes them.
    /// (`upcoming`: [`Streaming::upcoming`].)
    fn fill(
        &mut self,
        upcoming: impl Iterator<Item = (u32, u64, Option<u64>)>,
        sources: &[Source],
    ) {
        self.bytes.clear();
        self.files.clear();
        for (index, start, size) in upcoming.take(READ_AHEAD) {
            let src = &sources[index as usize];
            let Some(size) = size.filter(|&s| start == 0 && s <= hash::SMALL as u64) else {
                break;
            };
            if src.text.is_some()
                || src.is_stream()
                || (!self.files.is_empty() && self.bytes.len() + size as usize > READ_AHEAD_BYTES)
            {
                break;
            }
            let from = self.bytes.len();
            // One byte more than offered: a file that grew fills it.
            conn::set_len(&mut self.bytes, from + size as usize + 1);
            let read = File::open(&src.path)
                .and_then(|mut file| read_sized(&mut file, &mut self.bytes[from..]));
            let grew = matches!(read, Ok((_, true)));
            let read = read.map(|(got, _)| from..from + got);
            // What was not read is not kept.
            self.bytes
                .truncate(read.as_ref().map_or(from, |range| range.end));
            self.files.push_back(Ahead {
                index,
                read,
                hash: [0; 32],
                grew,
            });
        }
        let inputs: Vec<&[u8]> = self
            .files
            .iter()
            .map(|f| f.read.as_ref().map_or(&[][..], |r| &self.bytes[r.clone()]))
            .collect();
        hash::small_many(&inputs, &mut self.hashes);
        for (f, hash) in self.files.iter_mut().zip(&self.hashes) {
            f.hash = *hash;
        }
    }

    /// The file at `index`, when it was read ahead (it is the next one).
    fn take(&mut self, index: u32) -> Option<Prefetched<'_>> {
        if self.files.front()?.index != index {
            // (The machine gives the files in the order upcoming() listed them.)
            self.files.clear();
            return None;
        }
        let f = self.files.pop_front()?;
        let read = match f.read {
            Ok(range) => Ok(&self.bytes[range]),
            Err(e) => Err(e),
        };
        Some((read, f.hash, f.grew))
    }
}

/// Where a file's bytes come from.
enum Content<'a> {
    /// Its path, read now and hashed as it goes, by this hasher (which has
    /// the confirmed held prefix when it resumes).
    Open(Box<blake3::Hasher>),
    /// Read ahead, and hashed.
    Read(Prefetched<'a>),
}

/// One file: its data from where it starts, then its FileEnd.
fn produce_file(
    out: &mut Outbox<'_>,
    sealer: &mut Sealer,
    mut sending: SendingFile,
    src: &Source,
    content: Content<'_>,
    progress: &Progress,
    tally: &Tally,
) -> Result<Streaming> {
    use std::sync::atomic::Ordering::Relaxed;
    let offset = sending.offset();
    progress.start_file(&src.name, sending.remaining().unwrap_or(0));
    let (mut hasher, known) = match content {
        Content::Open(hasher) => (Some(hasher), None),
        Content::Read((read, hash, grew)) => (None, Some((read, hash, grew))),
    };
    let mut file: Box<dyn Read + '_> = if let Some((read, _, _)) = &known {
        match read {
            Ok(bytes) => Box::new(*bytes),
            Err(e) => {
                // Gone or closed since it was listed: nothing of it goes.
                unread(progress, tally, src, e);
                Box::new(std::io::empty())
            }
        }
    } else if let Some(text) = &src.text {
        // A text is never resumed: it starts at 0.
        Box::new(std::io::Cursor::new(text.clone()))
    } else if src.is_stream() {
        Box::new(stdin_file().map_err(|e| Error::file("<standard input>", e))?)
    } else {
        match open_at(&src.path, offset) {
            Ok(file) => Box::new(file),
            Err(e) => {
                // Gone or closed since it was listed: nothing of it goes.
                unread(progress, tally, src, &e);
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
        let got = match out.data(
            sealer,
            &mut *file,
            want,
            hasher.as_deref_mut(),
            &mut sending,
        ) {
            Ok(sealed) => sealed?,
            // A file ends short here and fails alone; a stream has no size
            // that would tell the receiver it was cut, so it ends the transfer.
            Err(e) if !src.is_stream() && src.text.is_none() => {
                unread(progress, tally, src, &e);
                break;
            }
            Err(e) => return Err(Error::file(&src.path, e)),
        };
        if got == 0 {
            // The file shrank since it was offered: end it short; the receiver discards it.
            tally.told(&src.path);
            progress.notice(Notice::Shrank {
                path: src.path.clone(),
                read: sending.position(),
                size: src.size,
            });
            break;
        }
        progress.advance(got as u64);
        tally.bytes.fetch_add(got as u64, Relaxed);
    }
    let sent = sending.position();
    // Its offered size went whole: had it grown? (Read ahead, it said so;
    // else one more byte is asked for.)
    if sending.remaining() == Some(0) && !src.is_stream() && src.text.is_none() {
        let grew = match &known {
            Some((read, _, grew)) => read.is_ok() && *grew,
            None => {
                let mut more = [0u8; 1];
                matches!(file.read(&mut more), Ok(n) if n > 0)
            }
        };
        if grew {
            tally.grown.fetch_add(1, Relaxed);
            progress.notice(Notice::Grew {
                path: src.path.clone(),
                size: src.size,
            });
        }
    }
    let mut body = vec![];
    let hash = match (hasher, known) {
        (Some(hasher), _) => *hasher.finalize().as_bytes(),
        // What was read ahead, and hashed then (when it could not be read,
        // the hash of nothing, as for a file that could not be opened).
        (None, Some((Ok(_), hash, _))) => hash,
        (None, _) => *blake3::hash(&[]).as_bytes(),
    };
    let streaming = sending.end(hash, &mut body);
    out.message(sealer, RecordType::FileEnd, &body)?;
    tally.files.fetch_add(1, Relaxed);
    progress.file_done(|| src.name.as_str(), sent, None);
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
fn unread(progress: &Progress, tally: &Tally, src: &Source, e: &std::io::Error) {
    tracing::debug!(path = %src.path.display(), error = %e, "a file offered cannot be read");
    tally.told(&src.path);
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

/// Reads a regular file of (offered) size `buf.len() - 1` into `buf`:
/// the bytes read (at most that size), and whether the file had more. A
/// read that returns fewer bytes than asked for is the file's end, so this
/// takes no more calls than reading the size alone.
fn read_sized(file: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let size = buf.len() - 1;
    let mut got = 0;
    loop {
        match file.read(&mut buf[got..]) {
            Ok(0) => return Ok((got, false)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if got > size {
            return Ok((size, true));
        }
        if got == size {
            return Ok((got, false));
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn source(path: PathBuf, size: u64) -> Source {
        Source {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            path,
            size,
            attrs: 0,
            mtime: None,
            text: None,
        }
    }

    #[test]
    fn read_ahead_takes_the_run_of_small_files_and_hashes_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Vec::new();
        let mut contents = Vec::new();
        for (i, len) in [1000usize, 0, 65, 1024, 300].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, &bytes).unwrap();
            sources.push(source(path, len as u64));
            contents.push(bytes);
        }
        // 5: gone since it was listed; 6: too large to read ahead; 7: small again.
        sources.push(source(dir.path().join("gone"), 10));
        let large = hash::SMALL + 1;
        std::fs::write(dir.path().join("large"), vec![1u8; large]).unwrap();
        sources.push(source(dir.path().join("large"), large as u64));
        std::fs::write(dir.path().join("after"), b"after").unwrap();
        sources.push(source(dir.path().join("after"), 5));
        // As Streaming::upcoming lists them; with `resumed`, that file
        // resumes after a held prefix (it, and what follows, is not read ahead).
        let sizes: Vec<u64> = sources.iter().map(|s| s.size).collect();
        let upcoming = |resumed: Option<u32>| {
            let sizes = sizes.clone();
            (0..8u32).map(move |i| {
                let start = if Some(i) == resumed { 10 } else { 0 };
                (i, start, Some(sizes[i as usize]))
            })
        };

        let mut ahead = ReadAhead::default();
        ahead.fill(upcoming(None), &sources);
        for (i, bytes) in contents.iter().enumerate() {
            let (read, hash, grew) = ahead.take(i as u32).unwrap();
            assert!(!grew, "file {i}");
            assert_eq!(read.unwrap(), bytes.as_slice(), "file {i}");
            assert_eq!(&hash, blake3::hash(bytes).as_bytes(), "file {i}");
        }
        let (read, _, _) = ahead.take(5).unwrap();
        assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::NotFound);
        // The run ended at the large file.
        assert!(ahead.take(6).is_none());
        assert!(ahead.files.is_empty());

        ahead.fill(upcoming(Some(3)), &sources);
        assert_eq!(ahead.files.len(), 3);
        // Asked for another file than the next one read ahead: none is used.
        assert!(ahead.take(1).is_none());
        assert!(ahead.files.is_empty());

        // A file that grew since it was listed: only its offered size is
        // read, and it says it grew.
        std::fs::write(dir.path().join("after"), b"after, longer").unwrap();
        ahead.fill(std::iter::once((7, 0, Some(5))), &sources);
        let (read, hash, grew) = ahead.take(7).unwrap();
        assert_eq!(read.unwrap(), b"after");
        assert_eq!(&hash, blake3::hash(b"after").as_bytes());
        assert!(grew);
        // One that shrank: what it has, not grown.
        std::fs::write(dir.path().join("after"), b"aft").unwrap();
        ahead.fill(std::iter::once((7, 0, Some(5))), &sources);
        let (read, _, grew) = ahead.take(7).unwrap();
        assert_eq!((read.unwrap(), grew), (&b"aft"[..], false));
    }

    /// A reader that hands out at most `step` bytes per call, counting calls.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_sized_tells_a_grown_file_without_an_extra_call() {
        let read = |data: &[u8], size: usize, step: usize| {
            let mut r = Trickle {
                data,
                step,
                calls: 0,
            };
            let mut buf = vec![0u8; size + 1];
            let (got, grew) = read_sized(&mut r, &mut buf).unwrap();
            (buf[..got].to_vec(), grew, r.calls)
        };
        // Exactly its size: one call, as reading the size alone would take.
        assert_eq!(read(b"hello", 5, 64), (b"hello".to_vec(), false, 1));
        assert_eq!(read(b"", 0, 64), (vec![], false, 1));
        // More: only the size is kept, and it says so.
        assert_eq!(read(b"hello!", 5, 64), (b"hello".to_vec(), true, 1));
        assert_eq!(read(b"x", 0, 64), (vec![], true, 1));
        // Less: what there is, up to the end.
        assert_eq!(read(b"hel", 5, 64), (b"hel".to_vec(), false, 2));
        // Short reads go on until the size.
        assert_eq!(read(b"hello!", 5, 2), (b"hello".to_vec(), true, 3));
    }
}
