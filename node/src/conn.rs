//! Bytes on a TCP stream: frame reading with limits and timeouts, the
//! handshake driver, and sealed-record writing.

use std::time::Duration;

use localstream_proto::codec::{
    Decoded, FrameHeader, HEADER_LEN, MAX_HANDSHAKE_BODY, decode_frame, decode_header,
};
use localstream_proto::handshake::messages::{ALERT, Alert};
use localstream_proto::handshake::{Handshake, Progress, alert_frame};
use localstream_proto::record::{MAX_RECORD_BODY, RecordType};
use localstream_proto::{Error as ProtoError, Opener, PeerProven, Sealer, Session, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::{Error, Result};

/// Longest a whole handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a peer may stay silent while it owes us bytes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout message for reads.
pub const STOPPED_SENDING: &str = "the peer stopped sending";
/// Timeout message for writes.
pub const STOPPED_READING: &str = "the peer stopped reading what we send";
/// Read buffer per connection: small records (handshake, offers, small files)
/// come in a few reads; a large record's body bypasses it (no extra copy).
const READ_BUFFER: usize = 64 * 1024;
/// Large buffers a pool keeps for reuse (a record's megabyte each at most).
const POOL_KEEP: usize = 16;
/// Small buffers a pool keeps besides: the frames of small files and
/// FileEnds, a pipeline's worth of them in flight, each at most
/// [`SMALL_BUFFER`] (so at most 4 MiB kept, a few hundred KiB in practice).
const POOL_KEEP_SMALL: usize = 256;
/// A buffer no larger than this is small.
const SMALL_BUFFER: usize = 16 * 1024;

/// Record buffers for reuse, so that the data path neither allocates nor
/// zero-fills a megabyte per record, nor allocates per small file. Shared
/// between a pipeline's stages.
#[derive(Debug, Clone, Default)]
pub struct BufPool(std::sync::Arc<std::sync::Mutex<Pooled>>);

/// The buffers a [`BufPool`] holds.
#[derive(Debug, Default)]
struct Pooled {
    large: Vec<Vec<u8>>,
    small: Vec<Vec<u8>>,
}

impl BufPool {
    /// A buffer from the pool, a large one first (its length is whatever it
    /// was; callers resize).
    #[must_use]
    pub fn get(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut p| p.large.pop().or_else(|| p.small.pop()))
            .unwrap_or_default()
    }

    /// A buffer for `len` bytes that does not waste much: for a small length
    /// a small one; else the smallest large one that holds it. Or a new one
    /// (that the pool keeps once it comes back). A batch of frames is bounded
    /// by its buffers' capacity, so a megabyte carrying a small frame would
    /// end its batch at once, and hold memory the queue is meant to bound.
    #[must_use]
    pub fn get_for(&self, len: usize) -> Vec<u8> {
        let Ok(mut p) = self.0.lock() else {
            return Vec::new();
        };
        if len <= SMALL_BUFFER {
            return p.small.pop().unwrap_or_default();
        }
        let fits = p
            .large
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        // A new one from the allocator's zeroed pages (not zeroed again).
        fits.map_or_else(|| vec![0; len], |i| p.large.swap_remove(i))
    }

    /// Gives a buffer back (dropped if the pool has enough of its kind).
    pub fn put(&self, buf: Vec<u8>) {
        if let Ok(mut p) = self.0.lock() {
            let (kept, keep) = if buf.capacity() <= SMALL_BUFFER {
                (&mut p.small, POOL_KEEP_SMALL)
            } else {
                (&mut p.large, POOL_KEEP)
            };
            if kept.len() < keep {
                kept.push(buf);
            }
        }
    }
}

/// Sets `buf` to exactly `len` bytes, zero-filling only bytes it never had.
pub fn set_len(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    } else {
        buf.truncate(len);
    }
}

/// A frame as read from the wire: header and the whole frame's bytes.
#[derive(Debug)]
pub struct RawFrame {
    /// The decoded header.
    pub header: FrameHeader,
    /// Header and body bytes: the first `len` bytes. A pooled buffer keeps
    /// what follows, so that it is not zeroed again each time a longer
    /// frame comes into it.
    buf: Vec<u8>,
    len: usize,
}

impl RawFrame {
    /// Header and body bytes.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Its length on the wire, header included.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        self.len
    }

    /// The memory it holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Takes its buffer (for the pool), leaving it empty.
    pub fn take_buf(&mut self) -> Vec<u8> {
        self.len = 0;
        std::mem::take(&mut self.buf)
    }

    /// Opens (authenticates and decrypts) this frame as a record.
    pub fn open(&mut self, opener: &mut Opener) -> Result<(RecordType, &[u8])> {
        let (typ, pt) = opener.open_in_place(self.header, &mut self.buf[HEADER_LEN..self.len])?;
        Ok((typ, pt))
    }
}

/// `buf` at least `len` bytes long, zero-filling only bytes it never had.
fn grow_to(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
}

/// Reads whole frames, checking each length before allocating for it.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: BufReader<R>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a reader.
    pub fn new(r: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(READ_BUFFER, r),
        }
    }

    /// Reads one frame whose body may be at most `max` bytes. `Ok(None)` is a
    /// clean end of stream between frames; an end inside a frame is an error.
    pub async fn read_frame(&mut self, max: usize, idle: Duration) -> Result<Option<RawFrame>> {
        self.read_frame_into(Vec::new(), max, idle).await
    }

    /// [`FrameReader::read_frame`] into a buffer the caller supplies; its
    /// old contents are overwritten.
    pub async fn read_frame_into(
        &mut self,
        buf: Vec<u8>,
        max: usize,
        idle: Duration,
    ) -> Result<Option<RawFrame>> {
        self.read_frame_with(|_| buf, max, idle).await
    }

    /// [`FrameReader::read_frame`] into a buffer from `pool` that suits the
    /// frame's length ([`BufPool::get_for`]).
    pub async fn read_frame_pooled(
        &mut self,
        pool: &BufPool,
        max: usize,
        idle: Duration,
    ) -> Result<Option<RawFrame>> {
        self.read_frame_with(|len| pool.get_for(len), max, idle)
            .await
    }

    /// [`FrameReader::read_frame`] into the buffer `buffer` gives for the
    /// frame's length (header included), once that is known.
    async fn read_frame_with(
        &mut self,
        buffer: impl FnOnce(usize) -> Vec<u8>,
        max: usize,
        idle: Duration,
    ) -> Result<Option<RawFrame>> {
        use tokio::io::AsyncBufReadExt;
        // A whole frame already read ahead (small records come many to a
        // read): taken at once, without arming a timer for it.
        let have = self.inner.buffer();
        if let Decoded::Ready(h) = decode_header(have, max)?
            && have.len() >= HEADER_LEN + h.len
        {
            let whole = HEADER_LEN + h.len;
            // The length was checked against `max` before this allocation.
            let mut buf = buffer(whole);
            grow_to(&mut buf, whole);
            buf[..whole].copy_from_slice(&have[..whole]);
            self.inner.consume(whole);
            return Ok(Some(RawFrame {
                header: h,
                buf,
                len: whole,
            }));
        }
        let mut header = [0u8; HEADER_LEN];
        let first = timed(idle, STOPPED_SENDING, self.inner.read(&mut header)).await?;
        if first == 0 {
            return Ok(None);
        }
        if first < HEADER_LEN {
            timed(
                idle,
                STOPPED_SENDING,
                self.read_exact_or_truncated(&mut header[first..]),
            )
            .await?;
        }
        let h = match decode_header(&header, max)? {
            Decoded::Ready(h) => h,
            Decoded::NeedMore(_) => return Err(ProtoError::Truncated.into()),
        };
        // The length was checked against `max` before this allocation.
        let whole = HEADER_LEN + h.len;
        let mut buf = buffer(whole);
        grow_to(&mut buf, whole);
        buf[..HEADER_LEN].copy_from_slice(&header);
        timed(
            idle,
            STOPPED_SENDING,
            self.read_exact_or_truncated(&mut buf[HEADER_LEN..whole]),
        )
        .await?;
        Ok(Some(RawFrame {
            header: h,
            buf,
            len: whole,
        }))
    }

    async fn read_exact_or_truncated(&mut self, buf: &mut [u8]) -> Result<()> {
        match self.inner.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(ProtoError::Truncated.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the peer sends something (`true`) or closes (`false`),
    /// consuming nothing (cancel-safe).
    pub async fn readable(&mut self) -> bool {
        use tokio::io::AsyncBufReadExt;
        self.inner.fill_buf().await.is_ok_and(|b| !b.is_empty())
    }

    /// Reads and drops everything until the peer closes (or fails).
    pub async fn drain(&mut self) {
        use tokio::io::AsyncBufReadExt;
        loop {
            let n = match self.inner.fill_buf().await {
                Ok(b) if !b.is_empty() => b.len(),
                _ => return,
            };
            self.inner.consume(n);
        }
    }

    /// Whether bytes from the peer are already waiting (looks once, never
    /// waits, consumes nothing).
    pub async fn has_pending(&mut self) -> bool {
        use tokio::io::AsyncBufReadExt;
        let mut fill = std::pin::pin!(self.inner.fill_buf());
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(matches!(
                fill.as_mut().poll(cx),
                std::task::Poll::Ready(Ok(b)) if !b.is_empty()
            ))
        })
        .await
    }

    /// Reads one record and opens it; the end of the stream is an error here.
    pub async fn read_record(
        &mut self,
        opener: &mut Opener,
        idle: Duration,
    ) -> Result<(RecordType, Vec<u8>)> {
        let Some(mut frame) = self.read_frame(MAX_RECORD_BODY, idle).await? else {
            return Err(ProtoError::Truncated.into());
        };
        if frame.header.typ == ALERT && opener.sequence() == 0 {
            // The responder refused our last handshake flight (bad signature, pinned key, ...)
            // and could only say so in plaintext: unauthenticated, but the best reason we have.
            let alert = Alert::decode(&frame.bytes()[HEADER_LEN..])?;
            return Err(alert.into_unverified_error().into());
        }
        let (typ, pt) = frame.open(opener)?;
        let len = pt.len();
        if typ == RecordType::Alert {
            let alert = Alert::decode(pt)?;
            return Err(alert.into_error().into());
        }
        let mut buf = frame.take_buf();
        buf.truncate(HEADER_LEN + len);
        buf.drain(..HEADER_LEN);
        Ok((typ, buf))
    }
}

/// Runs an I/O future with a deadline; the timeout becomes [`Error::Timeout`].
pub async fn timed<T, E: Into<Error>>(
    d: Duration,
    what: &'static str,
    f: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(Error::Timeout(what)),
    }
}

/// Runs a handshake over `reader`/`writer` until the peer has proved who it
/// is, starting by sending `first` (the initiator's hello; empty for a
/// responder). On failure the peer gets a plaintext alert saying why, when the
/// connection still allows it. The whole exchange with the peer is bounded by
/// [`HANDSHAKE_TIMEOUT`]. A responder is told of each [`Step`]; `false` from
/// [`Step::Hello`] refuses the peer before it gets a ServerHello.
pub async fn handshake_until_proven<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    mut state: Handshake,
    first: Vec<u8>,
    mut on_step: impl FnMut(Step) -> bool,
) -> Result<PeerProven>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let run = async {
        let mut out = first;
        loop {
            if !out.is_empty() {
                if matches!(state, Handshake::AwaitKeyReveal(_)) && !on_step(Step::Hello) {
                    let message = "too many unfinished key exchanges from this address; \
                                   try again in a few seconds";
                    handshake_alert(writer, Status::Busy, message).await;
                    return Err(Error::refused(Status::Busy, message));
                }
                writer.write_all(&out).await?;
                out.clear();
            }
            let Some(frame) = reader
                .read_frame(MAX_HANDSHAKE_BODY, HANDSHAKE_TIMEOUT)
                .await?
            else {
                return Err(ProtoError::Truncated.into());
            };
            let Decoded::Ready((frame, _)) = decode_frame(frame.bytes(), MAX_HANDSHAKE_BODY)?
            else {
                return Err(ProtoError::Truncated.into());
            };
            let revealing = matches!(state, Handshake::AwaitKeyReveal(_));
            let step = state.handle(frame, &mut rand::rng(), &mut out);
            match step {
                Ok(Progress::Continue(next)) => {
                    if revealing {
                        on_step(Step::Proving);
                    }
                    state = next;
                }
                Ok(Progress::Proven(proven)) => {
                    if !out.is_empty() {
                        writer.write_all(&out).await?;
                    }
                    return Ok(*proven);
                }
                Err(e) => {
                    if !matches!(e, ProtoError::PeerAlert { .. }) {
                        let _ = writer.write_all(&alert_frame(&e)).await;
                    }
                    return Err(Error::Protocol(e));
                }
            }
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout("the handshake did not finish")),
    }
}

/// Runs an initiator's handshake to completion (it has nothing to decide
/// between the peer's proof and the end).
pub async fn handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    state: Handshake,
    first: Vec<u8>,
) -> Result<Session>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let proven = handshake_until_proven(reader, writer, state, first, |_| true).await?;
    finish_handshake(writer, proven).await
}

/// What a responder's handshake has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A ClientHello arrived; a ServerHello is about to be sent.
    Hello,
    /// The initiator opened its commitment and is proving itself.
    Proving,
}

/// Completes a handshake whose peer is proven: the responder signs (on a
/// blocking thread: an RSA private-key operation must not stall the async
/// workers) and sends its last flight; the initiator has nothing left to send.
pub async fn finish_handshake<W: AsyncWrite + Unpin>(
    writer: &mut W,
    proven: PeerProven,
) -> Result<Session> {
    let started = std::time::Instant::now();
    let (session, out) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        proven.finish(&mut rand::rng(), &mut out).map(|s| (s, out))
    })
    .await??;
    if !out.is_empty() {
        timed(HANDSHAKE_TIMEOUT, STOPPED_READING, writer.write_all(&out)).await?;
    }
    timed(HANDSHAKE_TIMEOUT, STOPPED_READING, writer.flush()).await?;
    tracing::debug!(
        finish_us = started.elapsed().as_micros() as u64,
        sas = %session.sas,
        "handshake complete"
    );
    Ok(session)
}

/// Sends a plaintext alert during the handshake (best effort: the
/// connection is ending).
pub async fn handshake_alert<W: AsyncWrite + Unpin>(writer: &mut W, status: Status, message: &str) {
    let mut out = Vec::new();
    Alert {
        status,
        message: message.to_owned(),
    }
    .encode(&mut out);
    let _ = timed(
        Duration::from_secs(1),
        STOPPED_READING,
        writer.write_all(&out),
    )
    .await;
    let _ = writer.flush().await;
}

/// Seals records onto a stream.
#[derive(Debug)]
pub struct RecordWriter<W> {
    /// The stream.
    pub inner: W,
    /// Our sealing state.
    pub sealer: Sealer,
}

impl<W: AsyncWrite + Unpin> RecordWriter<W> {
    /// Seals and writes one record.
    pub async fn send(&mut self, typ: RecordType, plaintext: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        self.sealer.seal(typ, plaintext, &mut buf)?;
        timed(IDLE_TIMEOUT, STOPPED_READING, self.inner.write_all(&buf)).await?;
        Ok(())
    }

    /// Sends an alert record (best effort: errors are ignored, the connection is ending).
    pub async fn alert(&mut self, status: Status, message: &str) {
        // encode_body cuts an over-long message on a character boundary.
        let body = Alert {
            status,
            message: message.to_owned(),
        }
        .encode_body();
        let _ = self.send(RecordType::Alert, &body).await;
        let _ = self.inner.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use localstream_proto::codec::encode_frame;
    use tokio::io::AsyncWriteExt;

    const IDLE: Duration = Duration::from_secs(5);

    #[test]
    fn a_pool_keeps_small_buffers_apart_and_gives_large_ones_first() {
        let pool = BufPool::default();
        for _ in 0..POOL_KEEP_SMALL + 10 {
            pool.put(Vec::with_capacity(1024));
        }
        for _ in 0..POOL_KEEP + 3 {
            pool.put(Vec::with_capacity(1 << 20));
        }
        let large: Vec<_> = (0..POOL_KEEP).map(|_| pool.get()).collect();
        assert!(large.iter().all(|b| b.capacity() >= 1 << 20));
        let small: Vec<_> = (0..POOL_KEEP_SMALL).map(|_| pool.get()).collect();
        assert!(
            small
                .iter()
                .all(|b| (1024..=SMALL_BUFFER).contains(&b.capacity()))
        );
        // Beyond what it kept: a new, empty buffer.
        assert_eq!(pool.get().capacity(), 0);
    }

    #[test]
    fn a_small_frame_gets_a_small_buffer_and_a_large_one_a_large_buffer() {
        let pool = BufPool::default();
        pool.put(Vec::with_capacity(1 << 20));
        pool.put(Vec::with_capacity(4096));
        // Small: the small one, then a new one, never the megabyte.
        assert_eq!(pool.get_for(100).capacity(), 4096);
        assert_eq!(pool.get_for(100).capacity(), 0);
        assert_eq!(pool.get_for(SMALL_BUFFER + 1).capacity(), 1 << 20);
        // Large: the smallest that holds it, or a new one.
        for cap in [1 << 20, 64 << 10, 256 << 10] {
            pool.put(Vec::with_capacity(cap));
        }
        assert_eq!(pool.get_for(100 << 10).capacity(), 256 << 10);
        // A new one, as long as asked (zeroed by the allocator).
        let new = pool.get_for(2 << 20);
        assert_eq!(new.len(), 2 << 20);
        assert!(new.iter().all(|&b| b == 0));
        assert_eq!(pool.get_for(1 << 20).capacity(), 1 << 20);
        assert_eq!(pool.get_for(20 << 10).capacity(), 64 << 10);
    }

    /// A buffer longer than the frame (as a pooled one is) keeps its
    /// length; the frame is its first bytes, whether it was read ahead or
    /// arrived in pieces.
    #[tokio::test]
    async fn a_frame_in_a_longer_buffer_is_exactly_its_bytes() {
        let bodies: [&[u8]; 3] = [&[5u8; 3000], b"ab", &[6u8; 5000]];
        let bytes = frames(&bodies);
        let (rx, writer) = in_pieces(&bytes);
        let mut buf = vec![9u8; 4096];
        let mut r = FrameReader::new(&bytes[..]);
        for (i, b) in bodies.iter().enumerate() {
            let mut f = r.read_frame_into(buf, 8192, IDLE).await.unwrap().unwrap();
            assert_eq!(usize::from(f.header.typ), 20 + i);
            assert_eq!(&f.bytes()[HEADER_LEN..], *b);
            assert_eq!(f.wire_len(), HEADER_LEN + b.len());
            buf = f.take_buf();
            assert!(buf.len() >= (HEADER_LEN + b.len()).max(4096));
        }
        let mut r = FrameReader::new(rx);
        for b in bodies {
            let mut f = r.read_frame_into(buf, 8192, IDLE).await.unwrap().unwrap();
            assert_eq!(&f.bytes()[HEADER_LEN..], b);
            buf = f.take_buf();
            assert_eq!(buf.len(), HEADER_LEN + 5000, "the longest so far");
        }
        writer.await.unwrap();
    }

    /// `bytes` arriving seven at a time (headers and bodies split across
    /// reads), and the task that writes them.
    fn in_pieces(bytes: &[u8]) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
        let (mut tx, rx) = tokio::io::duplex(7);
        let bytes = bytes.to_vec();
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(7) {
                tx.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        (rx, writer)
    }

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            encode_frame(u8::try_from(20 + i).unwrap(), b, &mut out);
        }
        out
    }

    /// Frames read ahead in one read and frames that arrive in pieces give
    /// the same records; a length over the limit is refused either way, and
    /// an end inside a frame is an error, not a frame.
    #[tokio::test]
    async fn frames_read_ahead_or_in_pieces_come_out_whole_and_checked() {
        let bodies: [&[u8]; 4] = [b"one", b"", &[7u8; 3000], b"four"];
        let bytes = frames(&bodies);
        // All at once: the first read takes every frame into the buffer.
        let mut r = FrameReader::new(&bytes[..]);
        for (i, b) in bodies.iter().enumerate() {
            let f = r.read_frame(4096, IDLE).await.unwrap().unwrap();
            assert_eq!(usize::from(f.header.typ), 20 + i);
            assert_eq!(&f.bytes()[HEADER_LEN..], *b);
            assert_eq!(f.wire_len(), HEADER_LEN + b.len());
        }
        assert!(r.read_frame(4096, IDLE).await.unwrap().is_none());

        // Seven bytes at a time: headers and bodies split across reads.
        let (rx, writer) = in_pieces(&bytes);
        let mut r = FrameReader::new(rx);
        for b in bodies {
            let f = r.read_frame(4096, IDLE).await.unwrap().unwrap();
            assert_eq!(&f.bytes()[HEADER_LEN..], b);
        }
        writer.await.unwrap();
        assert!(r.read_frame(4096, IDLE).await.unwrap().is_none());

        // The second frame, already buffered, is over the limit.
        let mut r = FrameReader::new(&bytes[..]);
        r.read_frame(100, IDLE).await.unwrap().unwrap();
        r.read_frame(100, IDLE).await.unwrap().unwrap();
        let err = r.read_frame(100, IDLE).await.unwrap_err();
        assert!(err.to_string().contains("3000"), "{err}");

        // Cut inside the last frame's body.
        let cut = &bytes[..bytes.len() - 2];
        let mut r = FrameReader::new(cut);
        for _ in 0..3 {
            r.read_frame(4096, IDLE).await.unwrap().unwrap();
        }
        assert!(r.read_frame(4096, IDLE).await.is_err());
    }
}
