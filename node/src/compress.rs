//! Compression on the wire: zstd, one frame per Data record.
//!
//! The receiver says in its Answer that it accepts compressed records
//! ([`FEATURES`]); the sender then chooses per record (`send --compress`):
//!
//! - `off`: never.
//! - `on`: every record, except those that do not shrink by at least 1/16
//!   (they go as they are: compression never makes the wire bigger).
//! - `auto` (the default): only while it makes the transfer faster. The
//!   sender measures what limits it, in windows of [`WINDOW_BYTES`] (16
//!   MiB) of file bytes, in the records that
//!   could be compressed (a large record, or the small ones gathered into
//!   one write, when they hold at least 64 KiB of file bytes). Each one's
//!   time, from the read of its bytes to its
//!   place in the socket's queue, is split in three ([`Costs`]): waiting
//!   for room in the queue, compressing, and the rest (reading, hashing,
//!   sealing). Out of them come the CPU's rate each way (file bytes per
//!   second of CPU time, raw and compressed), the compression ratio, and,
//!   from the records after the first that waited for the queue, when they
//!   spent most of their time waiting, the rate at which the network (or
//!   the receiver) takes wire bytes (the queue frees room in bursts: one
//!   record waits for several). A rate measured from whole windows would
//!   be wrong after each change of way: the first raw records fill the
//!   queues that compressed ones left empty, and look fast. Each way's
//!   expected rate is the lower of its CPU's and the link's (in file bytes:
//!   compressed, the link carries `1 / ratio` times more); compression must
//!   be [`ZSTD_MUST_WIN_BY`] faster, as it costs CPU on both sides and a
//!   tie is the noise of the measure. The first two windows are compressed
//!   (the first fills the queues). If they tell nothing of the link (the
//!   records did not wait for it), the next one is raw to find out; then
//!   it goes the faster way, and the other way one window
//!   in [`RELEARN_EVERY`] in case things changed. After a change of way,
//!   [`SETTLE`] records go unmeasured: they wait behind the other way's
//!   records still in the queue. On a fast link the CPU is the limit and
//!   raw wins; on a slow link compressible data wins. A record that does
//!   not shrink makes it skip the next few of its kind, small or large
//!   (doubling, up to 64), so random
//!   data costs almost no compression time.
//!
//! The AEAD covers compressed records like any other: the compressed bytes
//! are the record's plaintext.

use std::time::Duration;

use localstream_proto::record::MAX_PLAINTEXT;

use crate::error::{Error, Result};

/// `Answer` features this build accepts.
#[cfg(feature = "zstd")]
pub const FEATURES: u32 = localstream_proto::transfer::FEATURE_ZSTD;
/// `Answer` features this build accepts (none: built without zstd).
#[cfg(not(feature = "zstd"))]
pub const FEATURES: u32 = 0;

/// zstd level: the fastest of the standard ones.
#[cfg(feature = "zstd")]
const LEVEL: i32 = 1;
/// Records of fewer bytes are small (they skip apart from large ones).
const SMALL_BELOW: usize = 64 * 1024;
/// Full (1 MiB) records per measuring window in `auto`.
pub const WINDOW: u32 = 16;
/// File bytes per measuring window: [`WINDOW`] full records (small files'
/// writes are smaller: more of them make a window, enough for the first two
/// to fill the queues on a slow link).
pub const WINDOW_BYTES: u64 = WINDOW as u64 * MAX_PLAINTEXT as u64;
/// How much faster than raw compression must be for `auto` to choose it.
pub const ZSTD_MUST_WIN_BY: f64 = 1.1;
/// Records not measured after `auto` changed its way: they wait behind
/// the records of the other way still in the queue (it holds 4).
pub const SETTLE: u32 = 4;
/// Records that spent at least this share of their time waiting for room
/// in the socket's queue went at the link's pace.
const WAITED_FOR_THE_LINK: f64 = 0.5;
/// A window tells the link's rate when at least this many of its last
/// records went at the link's pace.
const LINK_RECORDS: u32 = WINDOW / 4;
/// While compressing in `auto`, one window in this many goes uncompressed.
pub const RELEARN_EVERY: u32 = 16;

/// `send --compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Compress while it makes the transfer faster.
    #[default]
    Auto,
    /// Compress every record that shrinks.
    On,
    /// Never compress.
    Off,
}

/// The sender's side: decides per record and compresses.
pub struct Compressor {
    mode: Mode,
    #[cfg(feature = "zstd")]
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// Records to send uncompressed before trying again (after one that did
    /// not shrink), small ones (under [`SMALL_BELOW`]: small files) and
    /// large ones apart: a folder of small icons says nothing of the large
    /// file after it.
    skip: [u32; 2],
    /// Consecutive records that did not shrink, small and large.
    misses: [u32; 2],
    auto: Auto,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("mode", &self.mode)
            .field("enabled", &self.enabled())
            .field("auto", &self.auto)
            .finish_non_exhaustive()
    }
}

/// What one data record cost, as `auto` measures it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Costs {
    /// From the first read of its bytes to its place in the socket's queue.
    pub took: Duration,
    /// The part of `took` spent waiting for room in the queue.
    pub waited: Duration,
    /// The part spent compressing it.
    pub zstd: Duration,
}

/// What `auto` measures.
#[derive(Debug)]
struct Auto {
    /// Compressing in the current window.
    compressing: bool,
    /// This window so far.
    window: Window,
    /// Records still to go unmeasured ([`SETTLE`]).
    settling: u32,
    /// File bytes per second of CPU time, raw and compressed.
    cpu_raw: Option<f64>,
    cpu_zstd: Option<f64>,
    /// Wire bytes per file byte, compressing.
    ratio: Option<f64>,
    /// Wire bytes per second the network (or the receiver) takes, when a
    /// window went at its pace; `None` when it did not limit the last raw
    /// window (or has not been seen yet).
    link: Option<f64>,
    /// Whether a raw window has been measured.
    raw_seen: bool,
    /// Windows so far.
    windows: u32,
}

/// The sums of one window.
#[derive(Debug, Default)]
struct Window {
    /// File bytes, and the bytes they took on the wire.
    bytes: u64,
    wire: u64,
    /// CPU time (took less waited), and the part of it compressing.
    cpu: Duration,
    zstd: Duration,
    /// The records from the first one that waited for the link on: how
    /// many, their wire bytes, their time and the part of it waiting (the
    /// queue frees room in bursts, so one record may wait for several).
    paced: u32,
    paced_wire: u64,
    paced_took: Duration,
    paced_waited: Duration,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            // The first window is compressed: see the module docs.
            compressing: true,
            window: Window::default(),
            settling: 0,
            cpu_raw: None,
            cpu_zstd: None,
            ratio: None,
            link: None,
            raw_seen: false,
            windows: 0,
        }
    }
}

/// `old` moved halfway to `new`.
fn ema(old: Option<f64>, new: f64) -> Option<f64> {
    Some(old.map_or(new, |old| 0.5 * old + 0.5 * new))
}

impl Auto {
    /// Takes in a full window.
    fn learn(&mut self) {
        let w = std::mem::take(&mut self.window);
        let secs = |d: Duration| d.as_secs_f64().max(1e-9);
        let bytes = w.bytes as f64;
        if self.compressing {
            self.cpu_zstd = ema(self.cpu_zstd, bytes / secs(w.cpu));
            self.ratio = ema(self.ratio, w.wire as f64 / bytes.max(1.0));
            // The same work but compressing (sealing fewer bytes aside).
            self.cpu_raw = ema(self.cpu_raw, bytes / secs(w.cpu.saturating_sub(w.zstd)));
        } else {
            self.cpu_raw = ema(self.cpu_raw, bytes / secs(w.cpu));
            self.raw_seen = true;
        }
        let paced = w.paced >= LINK_RECORDS
            && w.paced_waited.as_secs_f64() >= WAITED_FOR_THE_LINK * w.paced_took.as_secs_f64();
        if paced {
            self.link = ema(self.link, w.paced_wire as f64 / secs(w.paced_took));
        } else if !self.compressing {
            // Raw went as fast as the CPU could make it (or filled the
            // queues compressed records had left empty: raw goes on, and
            // the next window tells).
            self.link = None;
        }
    }

    /// The file bytes per second each way would get, raw and compressed,
    /// once the link is known.
    fn expected(&self) -> Option<(f64, f64)> {
        if self.link.is_none() && !self.raw_seen {
            return None;
        }
        let link = self.link.unwrap_or(f64::INFINITY);
        let raw = self.cpu_raw?.min(link);
        let zstd = self.cpu_zstd?.min(link / self.ratio?.max(1e-3));
        Some((raw, zstd))
    }

    /// Which way the next window goes: compressed twice, raw while the
    /// link is unknown, then
    /// the faster one, with the other one every [`RELEARN_EVERY`] windows.
    fn choose(&mut self) {
        self.windows += 1;
        let faster_is_zstd = match self.expected() {
            // The first window filled the queues, and may say nothing of
            // the link: a second one compressed (the link is known after it
            // on all but fast links), then a raw one.
            None => self.windows == 1,
            Some((raw, zstd)) => zstd > raw * ZSTD_MUST_WIN_BY,
        };
        let relearn = self.windows.is_multiple_of(RELEARN_EVERY);
        let compressing = faster_is_zstd != relearn;
        if compressing != self.compressing {
            self.settling = SETTLE;
        }
        self.compressing = compressing;
    }
}

impl Compressor {
    /// A compressor in `mode`, if the receiver accepts compressed records
    /// (`features` from its Answer).
    // Built without zstd, FEATURES is 0 and nothing is ever usable.
    #[allow(clippy::bad_bit_mask)]
    pub fn new(mode: Mode, features: u32) -> Result<Self> {
        let usable = mode != Mode::Off && features & FEATURES != 0;
        #[cfg(feature = "zstd")]
        let zstd = if usable {
            Some(zstd::bulk::Compressor::new(LEVEL).map_err(Error::Io)?)
        } else {
            None
        };
        #[cfg(not(feature = "zstd"))]
        let _ = usable;
        Ok(Compressor {
            mode,
            #[cfg(feature = "zstd")]
            zstd,
            skip: [0; 2],
            misses: [0; 2],
            auto: Auto::default(),
        })
    }

    /// The compressor for the next batch of the same transfer, whose
    /// receiver answered `features`: this one, with what `auto` learned,
    /// when those allow what they allowed before (a new one otherwise).
    // Built without zstd, FEATURES is 0 and nothing is ever usable.
    #[allow(clippy::bad_bit_mask)]
    pub fn again(self, features: u32) -> Result<Self> {
        if (self.mode != Mode::Off && features & FEATURES != 0) == self.enabled() {
            Ok(self)
        } else {
            Compressor::new(self.mode, features)
        }
    }

    /// Whether records will be compressed at all.
    #[must_use]
    pub fn enabled(&self) -> bool {
        #[cfg(feature = "zstd")]
        return self.zstd.is_some();
        #[cfg(not(feature = "zstd"))]
        false
    }

    /// Compresses `raw` into `out[at..]` (resized) when this record should
    /// be and it shrinks enough; returns the compressed length, or `None`
    /// to send `raw` as it is.
    pub fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>, at: usize) -> Option<usize> {
        if !self.enabled() || raw.len() < 64 {
            return None;
        }
        if self.mode == Mode::Auto && !self.auto.compressing {
            return None;
        }
        let class = usize::from(raw.len() >= SMALL_BELOW);
        if self.skip[class] > 0 {
            self.skip[class] -= 1;
            return None;
        }
        let room = raw.len() - raw.len() / 16;
        crate::conn::set_len(out, at + room);
        match self.compress_into(raw, &mut out[at..]) {
            Some(n) => {
                self.misses[class] = 0;
                out.truncate(at + n);
                Some(n)
            }
            None => {
                out.truncate(at);
                self.misses[class] = (self.misses[class] + 1).min(6);
                self.skip[class] = 1 << self.misses[class];
                None
            }
        }
    }

    #[cfg(feature = "zstd")]
    fn compress_into(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        self.zstd.as_mut()?.compress_to_buffer(raw, out).ok()
    }

    #[cfg(not(feature = "zstd"))]
    fn compress_into(&mut self, _raw: &[u8], _out: &mut [u8]) -> Option<usize> {
        None
    }

    /// Whether [`Compressor::sent`] wants to know how long records take
    /// (`auto`, with compression usable).
    #[must_use]
    pub fn measuring(&self) -> bool {
        self.mode == Mode::Auto && self.enabled()
    }

    /// After a data record of `bytes` file bytes that went through
    /// [`Compressor::compress`] has been queued for the socket as `wire`
    /// bytes, at `costs`: ends windows and decides.
    pub fn sent(&mut self, bytes: u64, wire: u64, costs: Costs) {
        if !self.measuring() {
            return;
        }
        let a = &mut self.auto;
        if a.settling > 0 {
            a.settling -= 1;
            return;
        }
        let waited = costs.waited.min(costs.took);
        let w = &mut a.window;
        w.bytes += bytes;
        w.wire += wire;
        w.cpu += costs.took - waited;
        w.zstd += costs.zstd.min(costs.took - waited);
        // The queue is full from the first record that waited for it.
        if w.paced > 0
            || (waited > Duration::ZERO
                && waited.as_secs_f64() >= WAITED_FOR_THE_LINK * costs.took.as_secs_f64())
        {
            w.paced += 1;
            w.paced_wire += wire;
            w.paced_took += costs.took;
            w.paced_waited += waited;
        }
        if w.bytes < WINDOW_BYTES {
            return;
        }
        a.learn();
        a.choose();
        tracing::debug!(
            cpu_raw = a.cpu_raw,
            cpu_zstd = a.cpu_zstd,
            ratio = a.ratio,
            link = a.link,
            compressing = a.compressing,
            "auto compression: a window measured"
        );
    }
}

/// The receiver's side.
#[derive(Default)]
pub struct Decompressor {
    #[cfg(feature = "zstd")]
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor").finish_non_exhaustive()
    }
}

/// Largest window (log2 of bytes) a received frame may declare: one record.
#[cfg(feature = "zstd")]
const MAX_WINDOW_LOG: u32 = 20;

/// The window a zstd frame declares in its header (RFC 8878 section
/// 3.1.1.1): its Window_Descriptor, or for a single-segment frame its
/// content size. `None` for a header too short or without a size.
#[cfg(feature = "zstd")]
fn declared_window(frame: &[u8]) -> Option<u64> {
    let fhd = *frame.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *frame.get(5)?;
        let base = 1u64 << (10 + u32::from(wd >> 3));
        return Some(base + base / 8 * u64::from(wd & 7));
    }
    // Single segment: the window is the content size, whose field follows
    // the optional dictionary id.
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let at = 5 + dict_len;
    let bytes = frame.get(at..at + fcs_len)?;
    let mut size = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        size |= u64::from(*b) << (8 * i);
    }
    Some(if fcs_len == 2 { size + 256 } else { size })
}

impl Decompressor {
    /// The bytes of one compressed record (at most one record's worth:
    /// anything that would expand further is refused, so no small record
    /// can make the receiver allocate or write more than a plain one).
    pub fn decompress(&mut self, frame: &[u8]) -> Result<&[u8]> {
        // Sized once, never shrunk: no zero-filling per record.
        if self.buf.len() < MAX_PLAINTEXT {
            self.buf.resize(MAX_PLAINTEXT, 0);
        }
        let n = self.decompress_into(frame)?;
        Ok(&self.buf[..n])
    }

    #[cfg(feature = "zstd")]
    fn decompress_into(&mut self, frame: &[u8]) -> Result<usize> {
        let bad = |_| {
            Error::Protocol(localstream_proto::Error::Malformed(
                "compressed record does not decompress to at most 1 MiB",
            ))
        };
        // Exactly one frame per record (PROTOCOL.md, DataZstd).
        if zstd::zstd_safe::find_frame_compressed_size(frame) != Ok(frame.len()) {
            return Err(Error::Protocol(localstream_proto::Error::Malformed(
                "a compressed record must hold exactly one zstd frame",
            )));
        }
        if declared_window(frame).is_none_or(|w| w > MAX_PLAINTEXT as u64) {
            return Err(Error::Protocol(localstream_proto::Error::Malformed(
                "a compressed record must declare a window of at most 1 MiB",
            )));
        }
        let z = match &mut self.zstd {
            Some(z) => z,
            None => {
                let mut z = zstd::bulk::Decompressor::new().map_err(Error::Io)?;
                // Belt and braces for any streaming use: no window past one record.
                z.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(MAX_WINDOW_LOG))
                    .map_err(Error::Io)?;
                self.zstd.insert(z)
            }
        };
        z.decompress_to_buffer(frame, &mut self.buf[..MAX_PLAINTEXT])
            .map_err(bad)
    }

    /// Without zstd the Answer grants no compression ([`FEATURES`] is 0), so
    /// the receiver's state machine refuses DataZstd before it gets here.
    #[cfg(not(feature = "zstd"))]
    fn decompress_into(&mut self, _frame: &[u8]) -> Result<usize> {
        Err(Error::Protocol(
            localstream_proto::Error::CompressionNotAgreed,
        ))
    }
}

#[cfg(all(test, feature = "zstd"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn round_trip_skip_and_bomb() {
        let mut c = Compressor::new(Mode::On, FEATURES).unwrap();
        let text = b"the same line again and again\n".repeat(30_000);
        let raw = &text[..MAX_PLAINTEXT.min(text.len())];
        let mut out = vec![0u8; 5];
        let n = c.compress(raw, &mut out, 5).unwrap();
        assert!(n < raw.len() / 20, "{n}");
        let mut d = Decompressor::default();
        assert_eq!(d.decompress(&out[5..]).unwrap(), raw);
        // Random bytes do not shrink: sent as they are, and the next skipped.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let mut out = Vec::new();
        assert_eq!(c.compress(&noise, &mut out, 0), None);
        assert!(out.is_empty());
        // A large record that did not shrink does not make small ones skip;
        // a small one makes the next small ones skip.
        let small_text = &raw[..8000];
        assert!(c.compress(small_text, &mut out, 0).is_some());
        assert_eq!(c.compress(&noise[..8000], &mut out, 0), None);
        assert_eq!(
            c.compress(small_text, &mut out, 0),
            None,
            "skipped after a miss"
        );
        assert_eq!(c.compress(raw, &mut out, 0), None, "skipped after a miss");
        // A small file that did not shrink does not make a large record skip.
        let mut fresh = Compressor::new(Mode::On, FEATURES).unwrap();
        assert_eq!(fresh.compress(&noise[..8000], &mut out, 0), None);
        assert!(
            fresh.compress(raw, &mut out, 0).is_some(),
            "a large record skipped after a small miss"
        );
        // A frame that expands past one record is refused.
        let zeros = vec![0u8; 4 * MAX_PLAINTEXT];
        let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
        assert!(d.decompress(&bomb).is_err());
        assert!(d.decompress(b"not zstd at all").is_err());
        // Two frames in one record, and a frame declaring a 128 MiB window.
        let one = zstd::bulk::compress(b"hello", 1).unwrap();
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(d.decompress(&one).unwrap(), b"hello");
        assert!(d.decompress(&two).is_err());
        // A frame of one raw block "hello" whose header declares a window of
        // 2^(10+17) = 128 MiB (no content size, not single-segment), and the
        // same with a 1 MiB window.
        let frame = |window_descriptor: u8| {
            let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, window_descriptor];
            f.extend_from_slice(&[0x29, 0x00, 0x00]);
            f.extend_from_slice(b"hello");
            f
        };
        assert_eq!(d.decompress(&frame(10 << 3)).unwrap(), b"hello");
        assert!(
            d.decompress(&frame(17 << 3)).is_err(),
            "a 128 MiB window is refused"
        );
        assert_eq!(declared_window(&frame(10 << 3)), Some(1 << 20));
        assert_eq!(
            declared_window(&frame((10 << 3) | 1)),
            Some((1 << 20) + (1 << 17))
        );
        // What our own compressor writes for a full record is accepted.
        let full = zstd::bulk::compress(&vec![3u8; MAX_PLAINTEXT], 1).unwrap();
        assert!(declared_window(&full).is_some_and(|w| w <= MAX_PLAINTEXT as u64));
        // Legacy (pre-1.0) frames are not decoded at all: magic 0xFD2FB527 is v0.7.
        assert!(d.decompress(&[0x27, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]).is_err());
        // The receiver said nothing about compression: never used.
        let mut none = Compressor::new(Mode::On, 0).unwrap();
        assert_eq!(none.compress(raw, &mut Vec::new(), 0), None);
    }

    /// Runs `auto` over `records` compressible records on a simulated
    /// clock (the verdict does not depend on this machine's speed): the
    /// sender's CPU makes `cpu` file bytes per second raw, zstd compresses
    /// `zstd` per second on top, and the link takes `link` wire bytes per
    /// second out of queues that hold `queue` wire bytes: a record waits
    /// when they are full. They free room in bursts: every `burst`th
    /// record waits for all since the last one. Returns how many went
    /// compressed.
    fn simulate(records: u32, cpu: f64, zstd: f64, link: f64, burst: u32, queue: f64) -> u32 {
        let text = words(MAX_PLAINTEXT);
        let raw = &text[..];
        let mut out = Vec::new();
        let mut c = Compressor::new(Mode::Auto, FEATURES).unwrap();
        let mut used = 0;
        let len = raw.len() as f64;
        let (mut queued, mut owed) = (0.0f64, 0.0);
        for i in 0..records {
            let (wire, compressing) = match c.compress(raw, &mut out, 0) {
                Some(n) => (n as f64, len / zstd),
                None => (len, 0.0),
            };
            used += u32::from(compressing > 0.0);
            let busy = len / cpu + compressing;
            queued = (queued - busy * link).max(0.0) + wire;
            let wait = (queued - queue).max(0.0) / link;
            queued = queued.min(queue);
            owed += wait;
            let mut took = busy;
            if (i + 1).is_multiple_of(burst) {
                took += std::mem::take(&mut owed);
            }
            let secs = Duration::from_secs_f64;
            let costs = Costs {
                took: secs(took),
                waited: secs(took - busy),
                zstd: secs(compressing),
            };
            c.sent(len as u64, wire as u64, costs);
        }
        used
    }

    /// `len` bytes of text (zstd -1 makes about 47 % of it).
    fn words(len: usize) -> Vec<u8> {
        localstream_testkit::text_bytes(7, len)
    }

    #[test]
    fn auto_compresses_when_it_is_faster() {
        let text = words(MAX_PLAINTEXT);
        let n = zstd::bulk::compress(&text, LEVEL).unwrap().len();
        assert!(n < MAX_PLAINTEXT / 2 && n > MAX_PLAINTEXT / 5, "{n}");
        // The CPU makes 2 GB/s raw and 333 MB/s compressing (zstd at 400 MB/s).
        for burst in [1, 3] {
            simulations(|records, link| simulate(records, 2e9, 400e6, link, burst, MIB));
        }
    }

    /// What `auto_compresses_when_it_is_faster` expects of `run(records,
    /// link)`.
    fn simulations(run: impl Fn(u32, f64) -> u32) {
        // A slow link (50 MB/s): the first window waits for it, so
        // compression goes on without a raw window but for the relearning
        // one (the 16th, which raw loses; it is longer by the records
        // settling).
        let used = run(20 * WINDOW, 50e6);
        assert_eq!(
            used,
            19 * WINDOW - SETTLE,
            "compressed {used} records on a slow link"
        );
        // A link far faster than zstd (100 GB/s): the raw window is faster,
        // only the first two went compressed.
        let used = run(6 * WINDOW, 100e9);
        assert_eq!(used, 2 * WINDOW, "compressed {used} records on a fast link");
        // 1 GB/s: compressed records do not wait for it, raw ones do, at a
        // rate three times zstd's.
        let used = run(6 * WINDOW, 1e9);
        assert_eq!(
            used,
            2 * WINDOW,
            "compressed {used} records on a 1 GB/s link"
        );
        // 400 MB/s: the same (raw is 20% faster than zstd's 333 MB/s).
        let used = run(6 * WINDOW, 400e6);
        assert_eq!(
            used,
            2 * WINDOW,
            "compressed {used} records on a 400 MB/s link"
        );
        // 150 MB/s: compressed records do not wait for it, raw ones do, at
        // less than half zstd's rate: compressed but for the raw window.
        let used = run(6 * WINDOW, 150e6);
        assert_eq!(
            used,
            5 * WINDOW - SETTLE,
            "compressed {used} records on a 150 MB/s link"
        );
    }

    #[test]
    fn auto_is_not_fooled_by_queues_filling() {
        // Queues of 24 MiB between the sender and a 150 MB/s link: the
        // first raw window only fills them (nothing waits, raw looks as fast
        // as the CPU and goes on), the second waits for the link, and
        // compression wins from then on.
        let used = simulate(6 * WINDOW, 2e9, 400e6, 150e6, 1, 24.0 * MIB);
        assert_eq!(
            used,
            4 * WINDOW - SETTLE,
            "compressed {used} records on a 150 MB/s link behind 24 MiB of queues"
        );
        // A slow link behind 4 MiB of queues: the first compressed window
        // fills them, the second waits, and no raw window is needed.
        let used = simulate(6 * WINDOW, 2e9, 400e6, 20e6, 1, 4.0 * MIB);
        assert_eq!(used, 6 * WINDOW, "compressed {used} records on a slow link");
    }

    #[test]
    fn auto_compresses_only_when_it_wins_clearly() {
        // The link takes raw records at 317 MB/s, 5% less than the 333 MB/s
        // the CPU compresses: not worth the CPU, only the first two windows
        // go compressed.
        let zstd_rate = 1.0 / (1.0 / 2e9 + 1.0 / 400e6);
        let used = simulate(8 * WINDOW, 2e9, 400e6, zstd_rate / 1.05, 1, MIB);
        assert_eq!(used, 2 * WINDOW, "compressed {used} records for a 5% gain");
        // 25% less: compressed but for the raw window.
        let used = simulate(8 * WINDOW, 2e9, 400e6, zstd_rate / 1.25, 2, MIB);
        assert_eq!(
            used,
            7 * WINDOW - SETTLE,
            "compressed {used} records for a 25% gain (the raw window and the records settling before it aside)"
        );
        // Measuring needs `auto` and a receiver that takes compressed records.
        assert!(Compressor::new(Mode::Auto, FEATURES).unwrap().measuring());
        assert!(!Compressor::new(Mode::On, FEATURES).unwrap().measuring());
        assert!(!Compressor::new(Mode::Auto, 0).unwrap().measuring());
    }
}
