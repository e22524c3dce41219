//! The AEAD record layer used after the handshake.
//!
//! A record is a frame whose body is AES-256-GCM ciphertext followed by the
//! 16-byte tag. The frame header (type and length) is the associated data, so
//! neither can be changed in transit. Each direction has its own key and IV;
//! the nonce is the IV XORed with a 64-bit counter that starts at 0 and grows
//! by one per record, so a replayed, reordered, dropped or reflected record
//! fails to authenticate. A failure poisons the opener: nothing after it is
//! ever delivered.

use zeroize::Zeroize;

mod aead;

use aead::Aead;

use crate::codec::{FrameHeader, HEADER_LEN};
use crate::error::{Error, Result};

/// Bytes of authentication tag at the end of every record body.
pub const TAG_LEN: usize = 16;

/// Largest plaintext in one record (1 MiB).
pub const MAX_PLAINTEXT: usize = 1 << 20;

/// Largest record body (ciphertext and tag) a reader must accept.
pub const MAX_RECORD_BODY: usize = MAX_PLAINTEXT + TAG_LEN;

/// The content type of a record (the frame type byte after the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// Sender -> receiver: the manifest (may span several records).
    Offer = 0x10,
    /// Receiver -> sender: accept or reject, per-file decisions.
    Answer = 0x11,
    /// Sender -> receiver: file content.
    Data = 0x12,
    /// Sender -> receiver: end of one file, with its size and hash.
    FileEnd = 0x13,
    /// Sender -> receiver: end of the transfer.
    TransferEnd = 0x14,
    /// Receiver -> sender: the final outcome.
    Status = 0x15,
    /// Sender -> receiver: which held prefixes match (resume).
    Resume = 0x16,
    /// Sender -> receiver: file content compressed with zstd (one frame).
    DataZstd = 0x17,
    /// Sender -> receiver (protocol version 4): what the whole transfer
    /// holds, before its first batch.
    Manifest = 0x18,
    /// Sender -> receiver (protocol version 4): end of one batch; another
    /// follows once the receiver's Status for it is out.
    BatchEnd = 0x19,
    /// Either side: abort with a status code and message.
    Alert = 0x1f,
}

impl RecordType {
    /// The record type for a frame type byte.
    pub fn from_u8(b: u8) -> Result<Self> {
        Ok(match b {
            0x10 => RecordType::Offer,
            0x11 => RecordType::Answer,
            0x12 => RecordType::Data,
            0x13 => RecordType::FileEnd,
            0x14 => RecordType::TransferEnd,
            0x15 => RecordType::Status,
            0x16 => RecordType::Resume,
            0x17 => RecordType::DataZstd,
            0x18 => RecordType::Manifest,
            0x19 => RecordType::BatchEnd,
            0x1f => RecordType::Alert,
            other => return Err(Error::UnknownFrameType(other)),
        })
    }
}

/// Key material for one direction.
#[derive(Clone)]
pub struct DirectionKeys {
    pub(crate) key: [u8; 32],
    pub(crate) iv: [u8; 12],
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKeys(..)")
    }
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

#[cfg_attr(test, derive(Clone))]
struct Cipher {
    aead: Aead,
    iv: [u8; 12],
    seq: u64,
}

impl Cipher {
    fn new(keys: &DirectionKeys) -> Self {
        Cipher {
            aead: Aead::new(&keys.key),
            iv: keys.iv,
            seq: 0,
        }
    }

    /// The nonce for the current sequence number; advances the counter.
    fn next_nonce(&mut self) -> Result<[u8; 12]> {
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(Error::SequenceExhausted)?;
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Ok(n)
    }
}

/// Encrypts outgoing records (one direction).
pub struct Sealer {
    cipher: Cipher,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("seq", &self.cipher.seq)
            .finish()
    }
}

impl Sealer {
    /// A sealer for the given direction keys.
    pub fn new(keys: &DirectionKeys) -> Self {
        Sealer {
            cipher: Cipher::new(keys),
        }
    }

    /// Records sealed so far.
    pub fn sequence(&self) -> u64 {
        self.cipher.seq
    }

    /// Seals a record in place, without copying the plaintext.
    ///
    /// `buf` holds [`HEADER_LEN`] bytes of room followed by the plaintext. On return
    /// it holds the whole frame: header, ciphertext and tag.
    pub fn seal_in_place(&mut self, typ: RecordType, buf: &mut Vec<u8>) -> Result<()> {
        self.seal_in_place_at(typ, buf, 0)
    }

    /// Like [`Sealer::seal_in_place`] for the last record of a buffer that
    /// gathers several: `buf[start..]` holds the header room and the
    /// plaintext; earlier bytes (sealed records) are left alone.
    pub fn seal_in_place_at(
        &mut self,
        typ: RecordType,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<()> {
        let pt_len = buf
            .len()
            .checked_sub(start)
            .and_then(|n| n.checked_sub(HEADER_LEN))
            .ok_or(Error::Malformed("record buffer without header room"))?;
        if pt_len > MAX_PLAINTEXT {
            return Err(Error::RecordTooLarge {
                len: pt_len,
                max: MAX_PLAINTEXT,
            });
        }
        let header = FrameHeader {
            typ: typ as u8,
            len: pt_len + TAG_LEN,
        }
        .to_bytes();
        let record = &mut buf[start..];
        record[..HEADER_LEN].copy_from_slice(&header);
        let nonce = self.cipher.next_nonce()?;
        let tag = self
            .cipher
            .aead
            .seal(nonce, &header, &mut record[HEADER_LEN..])
            .ok_or(Error::RecordTooLarge {
                len: pt_len,
                max: MAX_PLAINTEXT,
            })?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Seals `plaintext` as one record appended to `out`.
    pub fn seal(&mut self, typ: RecordType, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.reserve(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.resize(start + HEADER_LEN, 0);
        out.extend_from_slice(plaintext);
        let sealed = self.seal_in_place_at(typ, out, start);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }
}

/// Decrypts and authenticates incoming records (one direction).
#[cfg_attr(test, derive(Clone))]
pub struct Opener {
    cipher: Cipher,
    poisoned: bool,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("seq", &self.cipher.seq)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Opener {
    /// An opener for the given direction keys.
    pub fn new(keys: &DirectionKeys) -> Self {
        Opener {
            cipher: Cipher::new(keys),
            poisoned: false,
        }
    }

    /// Records opened so far.
    pub fn sequence(&self) -> u64 {
        self.cipher.seq
    }

    /// Authenticates and decrypts one record in place.
    ///
    /// `header` is the frame header as read from the wire (already checked
    /// against [`MAX_RECORD_BODY`]); `body` is its body. On success the
    /// plaintext is `body[..body.len() - TAG_LEN]`. On any failure the opener
    /// is poisoned and every later call fails.
    pub fn open_in_place<'a>(
        &mut self,
        header: FrameHeader,
        body: &'a mut [u8],
    ) -> Result<(RecordType, &'a mut [u8])> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.poisoned = true;
        let typ = RecordType::from_u8(header.typ)?;
        if body.len() != header.len || body.len() > MAX_RECORD_BODY {
            return Err(Error::RecordTooLarge {
                len: body.len(),
                max: MAX_RECORD_BODY,
            });
        }
        let Some(pt_len) = body.len().checked_sub(TAG_LEN) else {
            return Err(Error::Malformed("record shorter than its tag"));
        };
        let (ct, tag) = body.split_at_mut(pt_len);
        let tag: [u8; TAG_LEN] = (&*tag)
            .try_into()
            .map_err(|_| Error::Malformed("record tag"))?;
        let nonce = self.cipher.next_nonce()?;
        if !self.cipher.aead.open(nonce, &header.to_bytes(), ct, &tag) {
            return Err(Error::BadRecordMac);
        }
        self.poisoned = false;
        Ok((typ, ct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoded, decode_frame};

    fn keys(b: u8) -> DirectionKeys {
        DirectionKeys {
            key: [b; 32],
            iv: [b.wrapping_add(1); 12],
        }
    }

    fn open_one(opener: &mut Opener, frame: &[u8]) -> Result<(RecordType, Vec<u8>)> {
        let mut buf = frame.to_vec();
        let Decoded::Ready((f, _)) = decode_frame(&buf, MAX_RECORD_BODY)? else {
            return Err(Error::Malformed("incomplete"));
        };
        let header = FrameHeader {
            typ: f.typ,
            len: f.body.len(),
        };
        let (t, pt) = opener.open_in_place(header, &mut buf[HEADER_LEN..])?;
        Ok((t, pt.to_vec()))
    }

    #[test]
    fn seal_open_round_trip_and_counter() {
        let mut s = Sealer::new(&keys(1));
        let mut o = Opener::new(&keys(1));
        for i in 0..3u8 {
            let mut out = Vec::new();
            s.seal(RecordType::Data, &[i; 10], &mut out).unwrap();
            assert_eq!(out.len(), HEADER_LEN + 10 + TAG_LEN);
            assert_eq!(
                open_one(&mut o, &out).unwrap(),
                (RecordType::Data, vec![i; 10])
            );
        }
        assert_eq!((s.sequence(), o.sequence()), (3, 3));
    }

    #[test]
    fn wrong_key_or_changed_type_fails_and_poisons() {
        let mut s = Sealer::new(&keys(1));
        let mut out = Vec::new();
        s.seal(RecordType::Data, b"secret", &mut out).unwrap();
        let mut other = Opener::new(&keys(2));
        assert_eq!(open_one(&mut other, &out), Err(Error::BadRecordMac));
        assert_eq!(open_one(&mut other, &out), Err(Error::Poisoned));

        let mut o = Opener::new(&keys(1));
        let mut changed = out.clone();
        changed[0] = RecordType::FileEnd as u8;
        assert_eq!(open_one(&mut o, &changed), Err(Error::BadRecordMac));
    }

    #[test]
    fn empty_and_max_records() {
        let mut s = Sealer::new(&keys(3));
        let mut o = Opener::new(&keys(3));
        let mut out = Vec::new();
        s.seal(RecordType::TransferEnd, b"", &mut out).unwrap();
        assert_eq!(
            open_one(&mut o, &out).unwrap(),
            (RecordType::TransferEnd, vec![])
        );
        let big = vec![7u8; MAX_PLAINTEXT];
        let mut out = Vec::new();
        s.seal(RecordType::Data, &big, &mut out).unwrap();
        assert_eq!(open_one(&mut o, &out).unwrap().1, big);
        let too_big = vec![7u8; MAX_PLAINTEXT + 1];
        assert!(matches!(
            s.seal(RecordType::Data, &too_big, &mut Vec::new()),
            Err(Error::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn records_gathered_in_one_buffer() {
        let mut s = Sealer::new(&keys(4));
        let mut o = Opener::new(&keys(4));
        // seal() appends after what is there; seal_in_place_at seals the tail.
        let mut batch = b"already sealed bytes stay".to_vec();
        let prefix = batch.clone();
        s.seal(RecordType::Data, b"one", &mut batch).unwrap();
        let start = batch.len();
        batch.resize(start + HEADER_LEN, 0);
        batch.extend_from_slice(b"two, in place");
        s.seal_in_place_at(RecordType::FileEnd, &mut batch, start)
            .unwrap();
        s.seal(RecordType::TransferEnd, b"", &mut batch).unwrap();
        assert_eq!(&batch[..prefix.len()], &prefix[..]);
        let mut rest = &batch[prefix.len()..];
        let mut got = vec![];
        while !rest.is_empty() {
            let Decoded::Ready((_, used)) = decode_frame(rest, MAX_RECORD_BODY).unwrap() else {
                panic!("incomplete frame in the batch");
            };
            got.push(open_one(&mut o, &rest[..used]).unwrap());
            rest = &rest[used..];
        }
        assert_eq!(
            got,
            [
                (RecordType::Data, b"one".to_vec()),
                (RecordType::FileEnd, b"two, in place".to_vec()),
                (RecordType::TransferEnd, vec![]),
            ]
        );
        // No header room: refused, and the buffer is left as it was.
        let mut short = vec![1, 2];
        assert!(s.seal_in_place_at(RecordType::Data, &mut short, 0).is_err());
        let mut out = b"keep".to_vec();
        assert!(
            s.seal(RecordType::Data, &vec![0; MAX_PLAINTEXT + 1], &mut out)
                .is_err()
        );
        assert_eq!(out, b"keep");
    }
}
