//! Compression on the wire: zstd, one frame per Data record.
//!
//! The receiver says in its Answer that it accepts compressed records
//! ([`FEATURES`]); the sender then chooses per record (`send --compress`):
//!
//! - `off`: never.
//! - `on`: every record, except those that do not shrink by at least 1/16
//!   (they go as they are: compression never makes the wire bigger).
//! - `auto` (the default): only while it pays. The sender watches two rates
//!   over windows of [`WINDOW`] records: how fast it compresses (`c`, bytes in
//!   per second of compression), and how fast the link takes bytes when it
//!   is the limit (`link`, measured over windows sent uncompressed in which
//!   the sender mostly waited for the socket). Compressing pays when the link
//!   is the bottleneck and compression is faster than the link; on a fast
//!   link (or loopback) the CPU would be the limit, and it backs off. A record
//!   that does not shrink makes it skip the next few (doubling, up to 64), so
//!   random data costs almost no compression time. While compressing, one
//!   window in [`RELEARN_EVERY`] goes uncompressed to measure the link again.
//!
//! The AEAD covers compressed records like any other: the compressed bytes
//! are the record's plaintext.

use std::time::{Duration, Instant};

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
/// Records per measuring window in `auto`.
pub const WINDOW: u32 = 16;
/// While compressing in `auto`, one window in this many goes uncompressed.
pub const RELEARN_EVERY: u32 = 16;
/// A window counts as link-limited when the sender waited for the socket
/// this share of the time or more.
const LINK_LIMITED: f64 = 0.25;

/// `send --compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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
    /// not shrink).
    skip: u32,
    /// Consecutive records that did not shrink.
    misses: u32,
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

/// What `auto` measures.
#[derive(Debug, Default)]
struct Auto {
    /// Compressing in the current window.
    compressing: bool,
    /// Records, time waiting for the socket, and wire bytes in this window.
    records: u32,
    started: Option<Instant>,
    waited: Duration,
    wire: u64,
    /// Compression speed (raw bytes per second), when measured.
    speed: Option<f64>,
    /// Link speed (wire bytes per second) when it was the limit.
    link: Option<f64>,
    /// Windows since the link was last measured.
    windows: u32,
}

impl Compressor {
    /// A compressor in `mode`, if the receiver accepts compressed records
    /// (`features` from its Answer).
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
            skip: 0,
            misses: 0,
            auto: Auto::default(),
        })
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
        let probe = self.mode == Mode::Auto
            && !self.auto.compressing
            && self.auto.records == 0
            && self.skip == 0;
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if self.mode == Mode::Auto && !self.auto.compressing && !probe {
            return None;
        }
        let room = raw.len() - raw.len() / 16;
        crate::conn::set_len(out, at + room);
        let started = Instant::now();
        let done = self.compress_into(raw, &mut out[at..]);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        match done {
            Some(n) => {
                self.misses = 0;
                let speed = raw.len() as f64 / secs;
                self.auto.speed = Some(match self.auto.speed {
                    Some(s) => 0.8 * s + 0.2 * speed,
                    None => speed,
                });
                out.truncate(at + n);
                Some(n)
            }
            None => {
                out.truncate(at);
                self.misses = (self.misses + 1).min(6);
                self.skip = 1 << self.misses;
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

    /// After each data record: `wire` bytes went out, and the sender waited
    /// `waited` for room in the socket's queue. Ends windows and decides.
    pub fn sent(&mut self, wire: u64, waited: Duration) {
        if self.mode != Mode::Auto || !self.enabled() {
            return;
        }
        let a = &mut self.auto;
        let started = *a.started.get_or_insert_with(Instant::now);
        a.records += 1;
        a.waited += waited;
        a.wire += wire;
        if a.records < WINDOW {
            return;
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        if !a.compressing && a.waited.as_secs_f64() / elapsed >= LINK_LIMITED {
            a.link = Some(a.wire as f64 / elapsed);
            a.windows = 0;
        }
        a.windows += 1;
        let pays = matches!((a.speed, a.link), (Some(c), Some(l)) if c > l);
        a.compressing = pays && !a.windows.is_multiple_of(RELEARN_EVERY);
        a.records = 0;
        a.started = None;
        a.waited = Duration::ZERO;
        a.wire = 0;
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

impl Decompressor {
    /// The bytes of one compressed record (at most one record's worth:
    /// anything that would expand further is refused, so no small record
    /// can make the receiver allocate or write more than a plain one).
    pub fn decompress(&mut self, frame: &[u8]) -> Result<&[u8]> {
        self.buf.clear();
        self.buf.reserve_exact(MAX_PLAINTEXT);
        self.decompress_into(frame)?;
        Ok(&self.buf)
    }

    #[cfg(feature = "zstd")]
    fn decompress_into(&mut self, frame: &[u8]) -> Result<()> {
        let bad = |_| {
            Error::Protocol(localstream_proto::Error::Malformed(
                "compressed record does not decompress to at most 1 MiB",
            ))
        };
        if self.zstd.is_none() {
            self.zstd = Some(zstd::bulk::Decompressor::new().map_err(Error::Io)?);
        }
        let z = self.zstd.as_mut().ok_or(Error::Worker("zstd".into()))?;
        let room = self.buf.capacity().min(MAX_PLAINTEXT);
        self.buf.resize(room, 0);
        let n = z
            .decompress_to_buffer(frame, &mut self.buf[..])
            .map_err(bad)?;
        self.buf.truncate(n);
        Ok(())
    }

    #[cfg(not(feature = "zstd"))]
    fn decompress_into(&mut self, _frame: &[u8]) -> Result<()> {
        Err(Error::Protocol(
            localstream_proto::Error::UnexpectedMessage {
                expected: "Data (compression was not offered)",
                got: localstream_proto::record::RecordType::DataZstd as u8,
            },
        ))
    }
}

#[cfg(all(test, feature = "zstd"))]
mod tests {
    use super::*;

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
        assert_eq!(c.compress(raw, &mut out, 0), None, "skipped after a miss");
        // A frame that expands past one record is refused.
        let zeros = vec![0u8; 4 * MAX_PLAINTEXT];
        let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
        assert!(d.decompress(&bomb).is_err());
        assert!(d.decompress(b"not zstd at all").is_err());
        // The receiver said nothing about compression: never used.
        let mut none = Compressor::new(Mode::On, 0).unwrap();
        assert_eq!(none.compress(raw, &mut Vec::new(), 0), None);
    }

    #[test]
    fn auto_compresses_only_when_the_link_is_the_limit() {
        let text = b"0123456789 log line, compressible\n".repeat(40_000);
        let raw = &text[..MAX_PLAINTEXT];
        let mut out = Vec::new();
        // A fast link (the sender never waits): no compression after the probe.
        let mut fast = Compressor::new(Mode::Auto, FEATURES).unwrap();
        let mut used = 0;
        for _ in 0..4 * WINDOW {
            if fast.compress(raw, &mut out, 0).is_some() {
                used += 1;
            }
            fast.sent(raw.len() as u64, Duration::ZERO);
        }
        assert!(used <= 4, "compressed {used} records on a fast link");
        // A slow link (the sender waits for the socket most of the time):
        // compression takes over.
        let mut slow = Compressor::new(Mode::Auto, FEATURES).unwrap();
        let mut used = 0;
        for _ in 0..4 * WINDOW {
            let wire = match slow.compress(raw, &mut out, 0) {
                Some(n) => {
                    used += 1;
                    n
                }
                None => raw.len(),
            };
            // ~100 MB/s: well below what zstd does on such text.
            std::thread::sleep(Duration::from_millis(10));
            slow.sent(wire as u64, Duration::from_millis(10));
        }
        assert!(
            used >= WINDOW,
            "compressed only {used} records on a slow link"
        );
    }
}
