//! Transfer messages: the plaintext bodies of records after the handshake.
//!
//! ```text
//! sender                                   receiver
//! Offer {totals, entries...} (1+ records)  -->
//!                                          <--  Answer {status, message, features, per-entry decision}
//! Resume {[index, offset]...} (one record, only when the Answer offered held prefixes) -->
//! Data*, FileEnd   (per accepted file)     -->
//! TransferEnd                              -->
//!                                          <--  Status {status, message, per-entry status}
//! ```
//!
//! Data records carry raw file bytes with no header of their own: files go in
//! offer order, skipping the ones the answer refused, each starting at the
//! offset the answer gave. A file is only complete with its authenticated
//! FileEnd (size and BLAKE3 hash), and the transfer only with its TransferEnd,
//! so a cut connection never looks like a finished file.
//!
//! [`fsm`] holds the order in which these messages may come: one state
//! machine per side.

pub mod fsm;

use crate::codec::{Reader, WriteExt};
use crate::error::{Error, Result};
use crate::record::MAX_PLAINTEXT;
use crate::status::Status;

/// Most files one transfer may carry.
pub const MAX_FILES: u32 = 100_000;
/// Longest path in an offer entry, in bytes.
pub const MAX_PATH: usize = 4096;
/// Most path bytes a whole offer may carry (bounds what a peer can make us hold
/// before anyone has consented).
pub const MAX_OFFER_PATH_BYTES: usize = 16 << 20;
/// Longest human message in an answer or status, in bytes.
pub const MAX_MESSAGE: usize = 1024;
/// Most files one Answer may propose to resume (bounds the Answer and the
/// Resume record; further held prefixes are simply not offered).
pub const MAX_RESUMED: usize = 4096;

/// Entry attribute: a directory (size 0, no data; created, even when empty).
pub const ATTR_DIR: u8 = 0x01;
/// Entry attribute: an executable file.
pub const ATTR_EXEC: u8 = 0x02;
/// Entry attribute: a stream of unknown size (size 0 in the offer; the
/// FileEnd gives the real size).
pub const ATTR_STREAM: u8 = 0x04;
/// Entry attribute (protocol version 3): a text message to show, not a file
/// to save. Its data is the UTF-8 text, `size` bytes, at most [`MAX_TEXT`];
/// it is the only entry of its offer.
pub const ATTR_TEXT: u8 = 0x08;
/// Wire-only attribute bit (protocol version 3): the entry is followed by its
/// modification time ([`Mtime`]). [`OfferEntry::attrs`] never holds it: the
/// encoder sets it from [`OfferEntry::mtime`] and the decoder clears it.
pub const ATTR_MTIME: u8 = 0x10;
const ATTR_KNOWN: u8 = ATTR_DIR | ATTR_EXEC | ATTR_STREAM | ATTR_TEXT;

/// Longest text message ([`ATTR_TEXT`]), in bytes.
pub const MAX_TEXT: u64 = 64 * 1024;

/// A modification time: seconds since the Unix epoch (negative before it)
/// and nanoseconds within the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mtime {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds, `< 1_000_000_000`.
    pub nanos: u32,
}

/// Bytes an [`Mtime`] takes on the wire.
const MTIME_LEN: usize = 12;

/// One file (or directory) in an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferEntry {
    /// Relative path, '/'-separated (validate with [`crate::names`] before use).
    pub path: String,
    /// Size in bytes (0 for a directory or a stream).
    pub size: u64,
    /// `ATTR_*` bits (never [`ATTR_MTIME`]).
    pub attrs: u8,
    /// Its modification time, when the sender gives it (version 3; never
    /// for a stream or a text).
    pub mtime: Option<Mtime>,
}

impl OfferEntry {
    /// A plain file.
    #[must_use]
    pub fn file(path: impl Into<String>, size: u64) -> Self {
        OfferEntry {
            path: path.into(),
            size,
            attrs: 0,
            mtime: None,
        }
    }

    /// A text message of `size` bytes (version 3).
    #[must_use]
    pub fn text(path: impl Into<String>, size: u64) -> Self {
        OfferEntry {
            path: path.into(),
            size,
            attrs: ATTR_TEXT,
            mtime: None,
        }
    }

    /// A text message to show ([`ATTR_TEXT`]).
    #[must_use]
    pub fn is_text(&self) -> bool {
        self.attrs & ATTR_TEXT != 0
    }

    /// A directory.
    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.attrs & ATTR_DIR != 0
    }

    /// An executable file.
    #[must_use]
    pub fn is_exec(&self) -> bool {
        self.attrs & ATTR_EXEC != 0
    }

    /// A stream of unknown size.
    #[must_use]
    pub fn is_stream(&self) -> bool {
        self.attrs & ATTR_STREAM != 0
    }

    /// Checks the attributes against each other and the size.
    fn check(&self) -> Result<()> {
        let ok = self.attrs & !ATTR_KNOWN == 0
            && (!self.is_dir() || (self.attrs == ATTR_DIR && self.size == 0))
            && (!self.is_stream() || (self.size == 0 && self.mtime.is_none()))
            && (!self.is_text()
                || (self.attrs == ATTR_TEXT && self.size <= MAX_TEXT && self.mtime.is_none()))
            && self.mtime.is_none_or(|t| t.nanos < 1_000_000_000);
        if ok {
            Ok(())
        } else {
            Err(Error::Malformed("Offer entry attributes"))
        }
    }
}

/// One Offer record: the totals of the whole offer and some of its entries.
/// An offer spans as many records as it needs; the receiver collects entries
/// until it holds `total_entries` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPart {
    /// Number of entries in the whole offer, directories included.
    pub total_entries: u32,
    /// Sum of all sizes in the whole offer.
    pub total_bytes: u64,
    /// Entries carried by this record.
    pub entries: Vec<OfferEntry>,
}

impl OfferPart {
    /// Splits an offer into record-sized parts (always at least one).
    pub fn split(entries: &[OfferEntry]) -> Result<Vec<OfferPart>> {
        let total_entries = u32::try_from(entries.len())
            .ok()
            .filter(|n| *n <= MAX_FILES)
            .ok_or(Error::RecordTooLarge {
                len: entries.len(),
                max: MAX_FILES as usize,
            })?;
        let total_bytes = entries
            .iter()
            .try_fold(0u64, |acc, e| acc.checked_add(e.size))
            .ok_or(Error::Malformed("offer total overflows"))?;
        if entries.len() > 1 && entries.iter().any(OfferEntry::is_text) {
            return Err(Error::Malformed(
                "a text message must be the only entry of its offer",
            ));
        }
        let mut parts = vec![];
        let mut current = vec![];
        let mut size = 16;
        for e in entries {
            if e.path.len() > MAX_PATH {
                return Err(Error::RecordTooLarge {
                    len: e.path.len(),
                    max: MAX_PATH,
                });
            }
            e.check()?;
            let entry_size = 2 + e.path.len() + 8 + 1 + e.mtime.map_or(0, |_| MTIME_LEN);
            if size + entry_size > MAX_PLAINTEXT && !current.is_empty() {
                parts.push(std::mem::take(&mut current));
                size = 16;
            }
            size += entry_size;
            current.push(e.clone());
        }
        parts.push(current);
        Ok(parts
            .into_iter()
            .map(|entries| OfferPart {
                total_entries,
                total_bytes,
                entries,
            })
            .collect())
    }

    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.put_u32(self.total_entries);
        out.put_u64(self.total_bytes);
        out.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            e.check()?;
            out.put_bytes16(e.path.as_bytes(), MAX_PATH)?;
            out.put_u64(e.size);
            match e.mtime {
                None => out.push(e.attrs),
                Some(t) => {
                    out.push(e.attrs | ATTR_MTIME);
                    out.put_u64(t.secs as u64);
                    out.put_u32(t.nanos);
                }
            }
        }
        Ok(())
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Offer");
        let total_entries = r.u32()?;
        let total_bytes = r.u64()?;
        let count = r.u32()?;
        if total_entries > MAX_FILES || count > total_entries {
            return Err(Error::Malformed("Offer file count"));
        }
        // Each entry takes at least 11 bytes: bound the allocation by what is there.
        if count as usize > r.remaining() / 11 {
            return Err(Error::Malformed("Offer entry count"));
        }
        let mut entries = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let path = r.str16(MAX_PATH)?.to_owned();
            let size = r.u64()?;
            let attrs = r.u8()?;
            let mtime = if attrs & ATTR_MTIME != 0 {
                Some(Mtime {
                    secs: r.u64()? as i64,
                    nanos: r.u32()?,
                })
            } else {
                None
            };
            let entry = OfferEntry {
                path,
                size,
                attrs: attrs & !ATTR_MTIME,
                mtime,
            };
            entry.check()?;
            entries.push(entry);
        }
        r.finish()?;
        Ok(OfferPart {
            total_entries,
            total_bytes,
            entries,
        })
    }
}

/// Collects offer parts into the whole manifest, checking they agree.
#[derive(Debug, Default)]
pub struct OfferCollector {
    totals: Option<(u32, u64)>,
    entries: Vec<OfferEntry>,
    sum: u64,
    path_bytes: usize,
}

impl OfferCollector {
    /// Adds one part; returns the whole offer once every entry has arrived.
    pub fn add(&mut self, part: OfferPart) -> Result<Option<(Vec<OfferEntry>, u64)>> {
        if part.total_entries == 0 || part.entries.is_empty() {
            return Err(Error::Malformed("Offer record without entries"));
        }
        let totals = (part.total_entries, part.total_bytes);
        if *self.totals.get_or_insert(totals) != totals {
            return Err(Error::Malformed("Offer totals changed between records"));
        }
        if self.entries.len() + part.entries.len() > part.total_entries as usize {
            return Err(Error::Malformed("Offer has more entries than announced"));
        }
        for e in part.entries {
            if e.is_text() && part.total_entries != 1 {
                return Err(Error::Malformed(
                    "a text message must be the only entry of its offer",
                ));
            }
            self.path_bytes += e.path.len();
            if self.path_bytes > MAX_OFFER_PATH_BYTES {
                return Err(Error::RecordTooLarge {
                    len: self.path_bytes,
                    max: MAX_OFFER_PATH_BYTES,
                });
            }
            self.sum = self
                .sum
                .checked_add(e.size)
                .ok_or(Error::Malformed("Offer sizes overflow"))?;
            self.entries.push(e);
        }
        if self.entries.len() < part.total_entries as usize {
            return Ok(None);
        }
        if self.sum != part.total_bytes {
            return Err(Error::Malformed("Offer sizes do not add up to its total"));
        }
        Ok(Some((std::mem::take(&mut self.entries), self.sum)))
    }
}

/// The receiver's decision on one offered entry (a file or a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDecision {
    /// [`Status::Ok`] to send it, anything else to skip it.
    pub status: Status,
    /// Where to start sending (bytes the receiver already holds).
    pub offset: u64,
    /// BLAKE3 of the `offset` bytes the receiver holds; on the wire only
    /// when `status` is 200 and `offset > 0` (ignored otherwise).
    pub held: [u8; 32],
}

impl FileDecision {
    /// Send the whole file.
    #[must_use]
    pub fn whole() -> Self {
        FileDecision {
            status: Status::Ok,
            offset: 0,
            held: [0; 32],
        }
    }

    /// Skip the file, for `status`.
    #[must_use]
    pub fn skip(status: Status) -> Self {
        FileDecision {
            status,
            offset: 0,
            held: [0; 32],
        }
    }

    /// Whether this decision proposes to resume from a held prefix.
    #[must_use]
    pub fn resumes(&self) -> bool {
        self.status.is_ok() && self.offset > 0
    }
}

/// Answer record: the receiver accepts (status 200, with per-file decisions) or rejects the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// 200 if at least the files marked 200 should be sent; otherwise the whole offer is refused.
    pub status: Status,
    /// A human explanation (untrusted text when received).
    pub message: String,
    /// `FEATURE_*` bits the receiver accepts for this transfer.
    pub features: u32,
    /// One decision per offered entry (directories included), in offer
    /// order; empty when refused.
    pub files: Vec<FileDecision>,
}

/// Answer feature: the receiver accepts [`crate::record::RecordType::DataZstd`]
/// records (file bytes compressed with zstd, one frame per record).
pub const FEATURE_ZSTD: u32 = 0x1;

fn put_message(out: &mut Vec<u8>, m: &str) -> Result<()> {
    let mut end = m.len().min(MAX_MESSAGE);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    out.put_bytes16(&m.as_bytes()[..end], MAX_MESSAGE)
}

impl Answer {
    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.put_u16(self.status.code());
        put_message(out, &self.message)?;
        out.put_u32(self.features);
        out.put_u32(self.files.len() as u32);
        if self.files.iter().filter(|f| f.resumes()).count() > MAX_RESUMED {
            return Err(Error::RecordTooLarge {
                len: self.files.len(),
                max: MAX_RESUMED,
            });
        }
        for f in &self.files {
            out.put_u16(f.status.code());
            out.put_u64(f.offset);
            if f.resumes() {
                out.extend_from_slice(&f.held);
            }
        }
        Ok(())
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Answer");
        let status = Status::from_code(r.u16()?);
        let message = r.str16(MAX_MESSAGE)?.to_owned();
        let features = r.u32()?;
        let count = r.u32()?;
        if count > MAX_FILES || count as usize > r.remaining() / 10 {
            return Err(Error::Malformed("Answer file count"));
        }
        let mut resumed = 0;
        let files = (0..count)
            .map(|_| {
                let mut d = FileDecision::skip(Status::from_code(r.u16()?));
                d.offset = r.u64()?;
                if d.resumes() {
                    resumed += 1;
                    if resumed > MAX_RESUMED {
                        return Err(Error::Malformed("Answer resumes too many files"));
                    }
                    d.held = r.array()?;
                }
                Ok(d)
            })
            .collect::<Result<_>>()?;
        r.finish()?;
        Ok(Answer {
            status,
            message,
            features,
            files,
        })
    }
}

/// One file of a [`Resume`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeFile {
    /// Index of the file in the offer.
    pub index: u32,
    /// The Answer's offset (the held prefix matches the sender's file), or 0
    /// (it does not: the receiver drops what it holds and gets the whole file).
    pub offset: u64,
}

/// Resume record: the sender's verdict on every held prefix the Answer
/// offered, in offer order. Sent right after such an Answer, before any Data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// One entry per Answer decision that proposed an offset.
    pub files: Vec<ResumeFile>,
}

impl Resume {
    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.files.len() > MAX_RESUMED {
            return Err(Error::RecordTooLarge {
                len: self.files.len(),
                max: MAX_RESUMED,
            });
        }
        out.put_u32(self.files.len() as u32);
        for f in &self.files {
            out.put_u32(f.index);
            out.put_u64(f.offset);
        }
        Ok(())
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Resume");
        let count = r.u32()? as usize;
        if count > MAX_RESUMED || count > r.remaining() / 12 {
            return Err(Error::Malformed("Resume file count"));
        }
        let files = (0..count)
            .map(|_| {
                Ok(ResumeFile {
                    index: r.u32()?,
                    offset: r.u64()?,
                })
            })
            .collect::<Result<_>>()?;
        r.finish()?;
        Ok(Resume { files })
    }
}

/// FileEnd record: the file at `index` is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEnd {
    /// Index of the file in the offer.
    pub index: u32,
    /// Its whole size.
    pub size: u64,
    /// BLAKE3 of its whole content, computed while sending.
    pub hash: [u8; 32],
}

impl FileEnd {
    /// Bytes of an encoded FileEnd body.
    pub const LEN: usize = 4 + 8 + 32;

    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(Self::LEN);
        out.put_u32(self.index);
        out.put_u64(self.size);
        out.extend_from_slice(&self.hash);
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "FileEnd");
        let m = FileEnd {
            index: r.u32()?,
            size: r.u64()?,
            hash: r.array()?,
        };
        r.finish()?;
        Ok(m)
    }
}

/// Manifest record (protocol version 4): what the whole transfer holds,
/// sent once, before the first batch's Offer records. The receiver decides
/// on it and the first batch; every batch is then an offer of its own (at
/// most [`MAX_FILES`] entries, its indexes from 0), and together they hold
/// no more than the manifest announced ([`fsm::Batches`]). The totals are
/// bounds: a sender whose files changed since it counted them may end with
/// fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Entries in all batches together (files, directories, streams), at least 1.
    pub entries: u32,
    /// How many of them are directories (at most `entries`).
    pub folders: u32,
    /// The sum of all entry sizes (streams count 0).
    pub bytes: u64,
}

impl Manifest {
    /// Bytes of an encoded Manifest body.
    pub const LEN: usize = 16;

    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.entries);
        out.put_u32(self.folders);
        out.put_u64(self.bytes);
    }

    /// Decodes a record body.
    ///
    /// # Errors
    /// [`Error::Malformed`] for no entries or more folders than entries,
    /// and the codec's errors for a short or long body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Manifest");
        let m = Manifest {
            entries: r.u32()?,
            folders: r.u32()?,
            bytes: r.u64()?,
        };
        r.finish()?;
        if m.entries == 0 {
            return Err(Error::Malformed("Manifest without entries"));
        }
        if m.folders > m.entries {
            return Err(Error::Malformed("Manifest folders"));
        }
        Ok(m)
    }
}

/// TransferEnd record: the sender has sent everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferEnd {
    /// FileEnd records sent: one per accepted entry that is not a directory.
    pub files: u32,
    /// Data bytes sent in this connection.
    pub bytes: u64,
}

impl TransferEnd {
    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.files);
        out.put_u64(self.bytes);
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "TransferEnd");
        let m = TransferEnd {
            files: r.u32()?,
            bytes: r.u64()?,
        };
        r.finish()?;
        Ok(m)
    }
}

/// Status record: the receiver's final word on the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStatus {
    /// 200 only if every accepted file arrived verified.
    pub status: Status,
    /// A human explanation.
    pub message: String,
    /// Per offered entry (directories included), in offer order.
    pub files: Vec<Status>,
}

impl FinalStatus {
    /// Encodes the record body.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.put_u16(self.status.code());
        put_message(out, &self.message)?;
        out.put_u32(self.files.len() as u32);
        for s in &self.files {
            out.put_u16(s.code());
        }
        Ok(())
    }

    /// Decodes a record body.
    pub fn decode(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "Status");
        let status = Status::from_code(r.u16()?);
        let message = r.str16(MAX_MESSAGE)?.to_owned();
        let count = r.u32()?;
        if count > MAX_FILES || count as usize > r.remaining() / 2 {
            return Err(Error::Malformed("Status file count"));
        }
        let files = (0..count)
            .map(|_| Ok(Status::from_code(r.u16()?)))
            .collect::<Result<_>>()?;
        r.finish()?;
        Ok(FinalStatus {
            status,
            message,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_split_and_collect() {
        let entries: Vec<_> = (0..30_000)
            .map(|i| OfferEntry::file(format!("dir/some-longer-file-name-{i:06}.dat"), i))
            .collect();
        let parts = OfferPart::split(&entries).unwrap();
        assert!(parts.len() > 1, "30k entries must span records");
        let mut c = OfferCollector::default();
        let mut done = None;
        for (i, p) in parts.iter().enumerate() {
            let mut body = vec![];
            p.encode(&mut body).unwrap();
            assert!(body.len() <= MAX_PLAINTEXT);
            let got = c.add(OfferPart::decode(&body).unwrap()).unwrap();
            assert_eq!(got.is_some(), i == parts.len() - 1);
            done = got;
        }
        let (all, total) = done.unwrap();
        assert_eq!(all, entries);
        assert_eq!(total, (0..30_000u64).sum::<u64>());
    }

    #[test]
    fn offer_lies_are_rejected() {
        let part = OfferPart {
            total_entries: 1,
            total_bytes: 99,
            entries: vec![OfferEntry::file("a", 5)],
        };
        assert!(OfferCollector::default().add(part).is_err());
        // A huge count with no bytes behind it must not allocate.
        let mut body = vec![];
        body.put_u32(MAX_FILES);
        body.put_u64(0);
        body.put_u32(MAX_FILES);
        assert_eq!(
            OfferPart::decode(&body),
            Err(Error::Malformed("Offer entry count"))
        );
    }

    #[test]
    fn version_3_entries_round_trip() {
        let t = Mtime {
            secs: 1_764_000_000,
            nanos: 123_456_789,
        };
        let old = Mtime {
            secs: -86_400,
            nanos: 0,
        };
        let entries = vec![
            OfferEntry {
                mtime: Some(t),
                ..OfferEntry::file("a/run.sh", 21)
            },
            OfferEntry {
                path: "a".into(),
                size: 0,
                attrs: ATTR_DIR,
                mtime: Some(old),
            },
            OfferEntry::file("b.txt", 3),
        ];
        let parts = OfferPart::split(&entries).unwrap();
        let mut body = vec![];
        parts[0].encode(&mut body).unwrap();
        // 16 bytes of totals, 3 entries of 2 + path + 9, two mtimes of 12.
        assert_eq!(
            body.len(),
            16 + (2 + 8 + 9) + (2 + 1 + 9) + (2 + 5 + 9) + 2 * 12
        );
        // The first entry's attribute byte carries the wire-only bit.
        assert_eq!(body[16 + 2 + 8 + 8], ATTR_MTIME);
        let back = OfferPart::decode(&body).unwrap();
        assert_eq!(back.entries, entries);
        assert_eq!(back.entries[0].attrs, 0, "the wire-only bit is cleared");

        let text = vec![OfferEntry::text("message.txt", 5)];
        let mut body = vec![];
        OfferPart::split(&text).unwrap()[0]
            .encode(&mut body)
            .unwrap();
        assert_eq!(body[body.len() - 1], ATTR_TEXT);
        let back = OfferPart::decode(&body).unwrap();
        assert!(back.entries[0].is_text());
        assert_eq!(
            OfferCollector::default().add(back).unwrap(),
            Some((text, 5))
        );
    }

    #[test]
    fn version_3_entries_are_checked() {
        let bad = |e: OfferEntry| {
            let part = OfferPart {
                total_entries: 1,
                total_bytes: e.size,
                entries: vec![e],
            };
            let mut body = vec![];
            assert!(part.encode(&mut body).is_err(), "encoded {part:?}");
        };
        let t = Some(Mtime { secs: 0, nanos: 0 });
        // A text with anything else, too long, or with a time.
        bad(OfferEntry {
            attrs: ATTR_TEXT | ATTR_EXEC,
            ..OfferEntry::text("m", 1)
        });
        bad(OfferEntry::text("m", MAX_TEXT + 1));
        bad(OfferEntry {
            mtime: t,
            ..OfferEntry::text("m", 1)
        });
        // A stream has no time; nanoseconds stay below a second.
        bad(OfferEntry {
            path: "s".into(),
            size: 0,
            attrs: ATTR_STREAM,
            mtime: t,
        });
        bad(OfferEntry {
            mtime: Some(Mtime {
                secs: 0,
                nanos: 1_000_000_000,
            }),
            ..OfferEntry::file("f", 1)
        });
        // ATTR_MTIME is not an attribute of the struct.
        bad(OfferEntry {
            attrs: ATTR_MTIME,
            ..OfferEntry::file("f", 1)
        });
        // On the wire: the bit without the 12 bytes behind it.
        let mut body = vec![];
        body.put_u32(1);
        body.put_u64(1);
        body.put_u32(1);
        body.put_bytes16(b"f", MAX_PATH).unwrap();
        body.put_u64(1);
        body.push(ATTR_MTIME);
        assert_eq!(OfferPart::decode(&body), Err(Error::Malformed("Offer")));
        // A text among other entries, whether sent whole or in parts.
        let two = [OfferEntry::text("m", 1), OfferEntry::file("f", 1)];
        assert!(OfferPart::split(&two).is_err());
        let part = OfferPart {
            total_entries: 2,
            total_bytes: 2,
            entries: vec![OfferEntry::text("m", 1)],
        };
        assert_eq!(
            OfferCollector::default().add(part),
            Err(Error::Malformed(
                "a text message must be the only entry of its offer"
            ))
        );
    }

    #[test]
    fn offer_path_bytes_are_bounded_across_records() {
        // 4500 paths of ~4 KB each: 18 MB, just past the 16 MiB bound.
        let long = "x/".repeat(2000) + "f";
        let entries: Vec<_> = (0..4500)
            .map(|i| OfferEntry::file(format!("{long}{i}"), 0))
            .collect();
        let mut c = OfferCollector::default();
        let mut err = None;
        for p in OfferPart::split(&entries).unwrap() {
            if let Err(e) = c.add(p) {
                err = Some(e);
                break;
            }
        }
        assert!(
            matches!(err, Some(Error::RecordTooLarge { max, .. }) if max == MAX_OFFER_PATH_BYTES),
            "{err:?}"
        );
    }

    #[test]
    fn messages_round_trip() {
        let a = Answer {
            status: Status::Ok,
            message: "ok".into(),
            features: FEATURE_ZSTD,
            files: vec![
                FileDecision::whole(),
                FileDecision::skip(Status::InvalidName),
                FileDecision {
                    status: Status::Ok,
                    offset: 77,
                    held: [9; 32],
                },
            ],
        };
        let mut b = vec![];
        a.encode(&mut b).unwrap();
        // 3 decisions of 10 bytes, plus the one held hash.
        assert_eq!(b.len(), 2 + 2 + 2 + 4 + 4 + 3 * 10 + 32);
        assert_eq!(Answer::decode(&b).unwrap(), a);
        let r = Resume {
            files: vec![
                ResumeFile {
                    index: 2,
                    offset: 77,
                },
                ResumeFile {
                    index: 5,
                    offset: 0,
                },
            ],
        };
        let mut b = vec![];
        r.encode(&mut b).unwrap();
        assert_eq!(Resume::decode(&b).unwrap(), r);
        b.push(1);
        assert!(Resume::decode(&b).is_err());
        let mut huge = vec![];
        huge.put_u32(u32::MAX);
        assert_eq!(
            Resume::decode(&huge),
            Err(Error::Malformed("Resume file count"))
        );
        let s = FinalStatus {
            status: Status::HashMismatch,
            message: "x".into(),
            files: vec![Status::Ok, Status::HashMismatch],
        };
        let mut b = vec![];
        s.encode(&mut b).unwrap();
        assert_eq!(FinalStatus::decode(&b).unwrap(), s);
        let e = FileEnd {
            index: 3,
            size: 9,
            hash: [5; 32],
        };
        let mut b = vec![];
        e.encode(&mut b);
        assert_eq!(b.len(), FileEnd::LEN);
        assert_eq!(FileEnd::decode(&b).unwrap(), e);
        b.push(0);
        assert_eq!(FileEnd::decode(&b), Err(Error::TrailingBytes("FileEnd")));
    }
}
