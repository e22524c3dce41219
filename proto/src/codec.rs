//! Framing and the primitive field codec.
//!
//! Every byte on a LocalStream connection belongs to a frame:
//!
//! ```text
//! +--------+----------------+------------------+
//! | type   | length (u32 BE)| body (length)    |
//! | 1 byte | 4 bytes        |                  |
//! +--------+----------------+------------------+
//! ```
//!
//! The length is checked against the limit of the current phase *before* any
//! buffer is sized from it. Decoding distinguishes "need more bytes"
//! ([`Decoded::NeedMore`]) from "invalid" (`Err`), so an I/O loop can simply
//! try to parse and otherwise read more.

use crate::error::{Error, Result};

/// Bytes in a frame header (type + length).
pub const HEADER_LEN: usize = 5;

/// Largest frame body accepted before the handshake completes.
pub const MAX_HANDSHAKE_BODY: usize = 8 * 1024;

/// A frame header: the type byte and the body length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub typ: u8,
    /// The body length in bytes.
    pub len: usize,
}

impl FrameHeader {
    /// The 5 header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let len = u32::try_from(self.len).unwrap_or(u32::MAX).to_be_bytes();
        [self.typ, len[0], len[1], len[2], len[3]]
    }
}

/// The outcome of trying to decode from a buffer that may hold a partial frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A complete item.
    Ready(T),
    /// The buffer ends early: at least this many more bytes are needed.
    NeedMore(usize),
}

/// Decodes a frame header from the start of `buf`, rejecting a body longer than `max_body`.
pub fn decode_header(buf: &[u8], max_body: usize) -> Result<Decoded<FrameHeader>> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(Decoded::NeedMore(HEADER_LEN - buf.len()));
    };
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > max_body {
        return Err(Error::FrameTooLarge { len, max: max_body });
    }
    Ok(Decoded::Ready(FrameHeader { typ: h[0], len }))
}

/// A complete frame borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame type.
    pub typ: u8,
    /// The body.
    pub body: &'a [u8],
    /// The whole frame, header included (what the transcript hashes).
    pub raw: &'a [u8],
}

/// Decodes one whole frame from the start of `buf`; on success also returns the bytes consumed.
pub fn decode_frame(buf: &[u8], max_body: usize) -> Result<Decoded<(Frame<'_>, usize)>> {
    let header = match decode_header(buf, max_body)? {
        Decoded::Ready(h) => h,
        Decoded::NeedMore(n) => return Ok(Decoded::NeedMore(n)),
    };
    let total = HEADER_LEN + header.len;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    let raw = &buf[..total];
    Ok(Decoded::Ready((
        Frame {
            typ: header.typ,
            body: &raw[HEADER_LEN..],
            raw,
        },
        total,
    )))
}

/// Appends a whole frame (header and body) to `out`.
pub fn encode_frame(typ: u8, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        &FrameHeader {
            typ,
            len: body.len(),
        }
        .to_bytes(),
    );
    out.extend_from_slice(body);
}

/// A cursor over a message body. Every read is bounds-checked; [`Reader::finish`]
/// rejects trailing bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads the body of the message called `what` (used in error messages).
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Malformed(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads bytes prefixed by a `u8` length.
    pub fn bytes8(&mut self) -> Result<&'a [u8]> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// Reads bytes prefixed by a `u16` length, rejecting more than `max`.
    pub fn bytes16(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(Error::Malformed(self.what));
        }
        self.take(n)
    }

    /// Reads UTF-8 text prefixed by a `u8` length.
    pub fn str8(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes8()?).map_err(|_| Error::Malformed(self.what))
    }

    /// Reads UTF-8 text prefixed by a `u16` length, rejecting more than `max` bytes.
    pub fn str16(&mut self, max: usize) -> Result<&'a str> {
        std::str::from_utf8(self.bytes16(max)?).map_err(|_| Error::Malformed(self.what))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Ends the message: any unread byte is an error.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(self.what))
        }
    }
}

/// Field writers for message bodies (the inverse of [`Reader`]).
pub trait WriteExt {
    /// Appends a big-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a big-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a big-endian `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends bytes with a `u8` length prefix; fails if longer than 255.
    fn put_bytes8(&mut self, b: &[u8]) -> Result<()>;
    /// Appends bytes with a `u16` length prefix; fails if longer than `max`.
    fn put_bytes16(&mut self, b: &[u8], max: usize) -> Result<()>;
}

impl WriteExt for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_bytes8(&mut self, b: &[u8]) -> Result<()> {
        let n = u8::try_from(b.len()).map_err(|_| Error::RecordTooLarge {
            len: b.len(),
            max: 255,
        })?;
        self.push(n);
        self.extend_from_slice(b);
        Ok(())
    }
    fn put_bytes16(&mut self, b: &[u8], max: usize) -> Result<()> {
        let max = max.min(u16::MAX as usize);
        if b.len() > max {
            return Err(Error::RecordTooLarge { len: b.len(), max });
        }
        self.put_u16(b.len() as u16);
        self.extend_from_slice(b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_need_more_then_ready() {
        let mut out = Vec::new();
        encode_frame(7, b"hello", &mut out);
        assert_eq!(out, [7, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        for cut in 0..out.len() {
            match decode_frame(&out[..cut], 100).unwrap() {
                Decoded::NeedMore(n) => assert!(n >= 1 && cut + n <= out.len()),
                Decoded::Ready(_) => panic!("frame decoded from {cut} bytes"),
            }
        }
        let Decoded::Ready((f, used)) = decode_frame(&out, 100).unwrap() else {
            panic!("not ready")
        };
        assert_eq!((f.typ, f.body, used), (7, &b"hello"[..], 10));
    }

    #[test]
    fn oversized_length_rejected_before_body_arrives() {
        // Only the header is present: the length alone must be refused.
        let buf = [1u8, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_header(&buf, MAX_HANDSHAKE_BODY),
            Err(Error::FrameTooLarge {
                len: u32::MAX as usize,
                max: MAX_HANDSHAKE_BODY
            })
        );
    }

    #[test]
    fn reader_bounds_and_trailing() {
        let mut r = Reader::new(&[0, 3, b'a', b'b'], "test");
        assert_eq!(r.str16(10), Err(Error::Malformed("test")));
        let r = Reader::new(&[1], "test");
        assert_eq!(r.finish(), Err(Error::TrailingBytes("test")));
        let mut r = Reader::new(&[0, 2, b'h', b'i', 9], "test");
        assert_eq!(r.str16(1), Err(Error::Malformed("test")));
        let mut r = Reader::new(&[0, 2, 0xff, 0xfe], "test");
        assert_eq!(r.str16(10), Err(Error::Malformed("test")));
    }
}
