//! The transfer phase as two sans-IO state machines, one per side.
//!
//! Like the [handshake](crate::handshake), each state is its own type and
//! its transitions consume it, so a record can only be handled by a state
//! that takes it; the ordering rules of `PROTOCOL.md` ("Transfer") live here
//! rather than in the code that moves bytes. The machines take what
//! [`crate::Opener::open_in_place`] gives (a [`RecordType`] and the plaintext
//! body) and append the bodies of the records to send to a `Vec<u8>` (seal
//! them with the type each method names). They never copy file content: a
//! Data record is reported as a [`Chunk`] (file index, offset, length) and
//! the caller keeps the bytes, hashes them and writes them; a DataZstd
//! record is decompressed by the caller, which reports the decompressed
//! length ([`Unpack::unpacked`]). Hashing files, reading and writing them and
//! deciding what to accept stay with the caller.
//!
//! ```text
//!  sender                                               receiver
//!  Offering ──── Offer × k ───────────────────────────► CollectingOffer ─(last part)─► Deciding
//!                                                                          accept ───┤  refuse ─► (end)
//!  AwaitAnswer ◄──────────────────────────────── Answer ─────────────────────────────┘
//!    ├─ Answered::Refused ─► (end)
//!    ├─ Answered::Resuming  (the Answer offered held prefixes)
//!    │    Resuming ──────── Resume ───────────────────► AwaitResume       (Accepted::AwaitResume)
//!    │       │                                             │
//!    └─ Answered::Streaming                                ▼              (Accepted::Receiving)
//!  Streaming ─next─► SendingFile                        Receiving
//!     ▲                │ data, data_zstd ── Data* ─────► Event::Data, Event::Compressed ─► Chunk
//!     └──── end ───────┴──────────────── FileEnd ──────► Event::FileEnd (size checked)
//!  Streaming ─next─► Next::Ended ────── TransferEnd ───► Event::TransferEnd(Done)
//!  AwaitStatus ◄─────────────────────────────── Status ── Done::final_status
//!     └─► Outcome (one status per entry)
//!
//!  Alert, either way, in any state: the state that reads it fails with Error::PeerAlert.
//! ```
//!
//! What each side checks:
//!
//! - the receiver: only Offer records until the offer is complete, nothing
//!   while it decides, exactly one Resume (answering every held prefix it
//!   offered, in order, with the offset or 0) when and only when it offered
//!   held prefixes, then Data/DataZstd/FileEnd for the accepted files in
//!   offer order (directories and refused entries skipped) starting at each
//!   file's confirmed offset, no more data than a file's offered size
//!   (streams excepted), DataZstd only if its Answer granted
//!   [`FEATURE_ZSTD`], a FileEnd for the current file only, and a
//!   TransferEnd only after the last FileEnd, with counters that match. A
//!   FileEnd whose size is not what arrived (or, but for a stream, not the
//!   offered size) is not fatal: the file gets [`Status::SizeMismatch`]
//!   and the transfer goes on, as `PROTOCOL.md` says.
//! - the sender: an Answer with one decision per entry; the caller's data
//!   within each file's size and compressed only when granted; then a Status
//!   with one entry per offered entry. A held prefix the receiver could not
//!   hold (past the file's size, on a directory or a stream) is answered 0
//!   without asking the caller, as a prefix that does not match.
//!
//! Every error is fatal for the transfer: drop the machine and close, with
//! an Alert carrying [`Error::status`] where one is due.
//!
//! ```
//! use localstream_proto::RecordType;
//! use localstream_proto::transfer::fsm::*;
//! use localstream_proto::transfer::{FileDecision, OfferEntry};
//! # fn main() -> localstream_proto::Result<()> {
//! let content = b"hello";
//! let offering = Offering::new(vec![OfferEntry::file("hello.txt", 5)])?;
//! // A small offer fits one Offer record.
//! let OfferStep::Complete(deciding) =
//!     CollectingOffer::new().handle(RecordType::Offer, &offering.bodies()[0])?
//! else { unreachable!() };
//! let mut answer = Vec::new();
//! let Accepted::Receiving(mut receiving) =
//!     deciding.accept(vec![FileDecision::whole()], 0, &mut answer)?
//! else { unreachable!() };
//! let Answered::Streaming(streaming) = offering.sent().handle(RecordType::Answer, &answer)?
//! else { unreachable!() };
//! let mut body = Vec::new();
//! let Next::File(mut file) = streaming.next(&mut body) else { unreachable!() };
//! file.data(content.len())?; // the caller seals a Data record of these bytes
//! let Event::Data(chunk) = receiving.handle(RecordType::Data, content)? else { unreachable!() };
//! assert_eq!((chunk.index, chunk.offset, chunk.len), (0, 0, 5));
//! let hash = *blake3::hash(content).as_bytes();
//! let streaming = file.end(hash, &mut body); // a FileEnd body
//! let Event::FileEnd(end) = receiving.handle(RecordType::FileEnd, &body)? else { unreachable!() };
//! assert!(end.status.is_ok() && end.hash == hash);
//! body.clear();
//! let Next::Ended(waiting) = streaming.next(&mut body) else { unreachable!() }; // TransferEnd
//! let Event::TransferEnd(done) = receiving.handle(RecordType::TransferEnd, &body)? else {
//!     unreachable!()
//! };
//! let mut status = Vec::new();
//! done.final_status("all saved", &mut status)?;
//! let outcome = waiting.handle(RecordType::Status, &status)?;
//! assert!(outcome.is_complete());
//! # Ok(()) }
//! ```
//!
//! [`FEATURE_ZSTD`]: crate::transfer::FEATURE_ZSTD
//! [`Status::SizeMismatch`]: crate::Status::SizeMismatch
//! [`Error::PeerAlert`]: crate::Error::PeerAlert
//! [`Error::status`]: crate::Error::status

mod receiver;
mod sender;
#[cfg(test)]
mod tests;

pub use receiver::{
    Accepted, AwaitResume, Chunk, CollectingOffer, Deciding, Done, Event, FileEnded, OfferStep,
    Receiving, Unpack,
};
pub use sender::{
    Answered, AwaitAnswer, AwaitStatus, HeldPrefix, Next, Offering, Outcome, Prefix, Refusal,
    Resuming, SendingFile, Streaming,
};

use crate::error::{Error, Result};
use crate::handshake::messages::Alert;
use crate::record::RecordType;
use crate::transfer::{FEATURE_ZSTD, FileDecision, Manifest, OfferEntry, ResumeFile};

/// What the receiver takes once the transfer's data may flow.
const DATA_PHASE: &[RecordType] = &[
    RecordType::Data,
    RecordType::DataZstd,
    RecordType::FileEnd,
    RecordType::TransferEnd,
];

/// What the receiver takes once a batch's data may flow (version 4).
const BATCH_DATA_PHASE: &[RecordType] = &[
    RecordType::Data,
    RecordType::DataZstd,
    RecordType::FileEnd,
    RecordType::BatchEnd,
    RecordType::TransferEnd,
];

/// The error for a record that the current state does not take: an Alert
/// is the peer's reason (or, if it does not decode, a malformed record);
/// anything else is unexpected.
fn unexpected(typ: RecordType, body: &[u8], expected: &'static [RecordType]) -> Error {
    if typ == RecordType::Alert {
        match Alert::decode(body) {
            Ok(alert) => alert.into_error(),
            Err(e) => e,
        }
    } else {
        Error::UnexpectedRecord { expected, got: typ }
    }
}

/// The batches of a version 4 transfer against its [`Manifest`]: each
/// batch's offer is admitted only while all of them together stay within
/// the announced totals. Both sides keep one: the sender to know what it may
/// still offer, the receiver to refuse a sender that offers more than was
/// consented to (fatal, 400).
#[derive(Debug, Clone)]
pub struct Batches {
    manifest: Manifest,
    entries: u64,
    folders: u64,
    bytes: u64,
    count: u32,
}

impl Batches {
    /// No batch yet.
    pub fn new(manifest: Manifest) -> Self {
        Batches {
            manifest,
            entries: 0,
            folders: 0,
            bytes: 0,
            count: 0,
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> Manifest {
        self.manifest
    }

    /// Batches admitted so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Entries of the batches admitted so far (the index of the next
    /// batch's first entry in the whole transfer).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes the batches admitted so far announced.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a batch of `entries` more entries, `folders` of them
    /// directories, and `bytes` more bytes would still be within the
    /// manifest.
    pub fn fits(&self, entries: u64, folders: u64, bytes: u64) -> bool {
        self.entries + entries <= u64::from(self.manifest.entries)
            && self.folders + folders <= u64::from(self.manifest.folders)
            && self.bytes.saturating_add(bytes) <= self.manifest.bytes
    }

    /// Counts one batch's offer in.
    ///
    /// # Errors
    /// [`Error::BeyondManifest`] when the batches would hold more entries,
    /// folders or bytes than the manifest announced (nothing is counted).
    pub fn admit(&mut self, entries: &[OfferEntry]) -> Result<()> {
        let n = entries.len() as u64;
        let folders = entries.iter().filter(|e| e.is_dir()).count() as u64;
        let bytes = entries
            .iter()
            .try_fold(0u64, |sum, e| sum.checked_add(e.size))
            .unwrap_or(u64::MAX);
        let checks = [
            (
                "entries",
                u64::from(self.manifest.entries),
                self.entries + n,
            ),
            (
                "folders",
                u64::from(self.manifest.folders),
                self.folders + folders,
            ),
            (
                "bytes",
                self.manifest.bytes,
                self.bytes.saturating_add(bytes),
            ),
        ];
        for (what, announced, got) in checks {
            if got > announced {
                return Err(Error::BeyondManifest {
                    what,
                    announced,
                    got,
                });
            }
        }
        self.entries += n;
        self.folders += folders;
        self.bytes += bytes;
        self.count += 1;
        Ok(())
    }
}

/// What an accepting Answer settled, as both sides hold it: the offer and
/// one decision per entry.
#[derive(Default)]
struct Agreement {
    entries: Vec<OfferEntry>,
    decisions: Vec<FileDecision>,
    features: u32,
    /// The offer is one batch of a version 4 transfer (a BatchEnd may end it).
    batched: bool,
    /// The sender's batch is followed by another: it ends with a BatchEnd.
    more: bool,
}

impl std::fmt::Debug for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An offer can hold 100 000 paths: count them, do not print them.
        f.debug_struct("Agreement")
            .field("entries", &self.entries.len())
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl Agreement {
    /// Whether DataZstd records may flow.
    fn zstd(&self) -> bool {
        self.features & FEATURE_ZSTD != 0
    }

    /// The decisions that offer a held prefix, in offer order.
    fn held(&self) -> impl Iterator<Item = (u32, &FileDecision)> {
        self.decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.resumes())
            .map(|(i, d)| (i as u32, d))
    }

    /// The entries with data in this transfer, in offer order: accepted
    /// files and streams (not directories, not refused entries), each with
    /// where its data starts (the offset `confirmed` gives it, else 0).
    fn data_files(&self, confirmed: &[ResumeFile]) -> Vec<DataFile> {
        let mut confirmed = confirmed.iter().peekable();
        self.entries
            .iter()
            .zip(&self.decisions)
            .enumerate()
            .filter(|(_, (e, d))| d.status.is_ok() && !e.is_dir())
            .map(|(i, (e, _))| {
                let index = i as u32;
                while confirmed.next_if(|r| r.index < index).is_some() {}
                let start = confirmed
                    .next_if(|r| r.index == index)
                    .map_or(0, |r| r.offset);
                DataFile {
                    index,
                    start,
                    size: (!e.is_stream()).then_some(e.size),
                }
            })
            .collect()
    }
}

/// One entry with data, as both sides walk them.
#[derive(Debug, Clone, Copy)]
struct DataFile {
    index: u32,
    /// Where its data starts: the confirmed held prefix, or 0.
    start: u64,
    /// Its offered size; `None` for a stream (no bound).
    size: Option<u64>,
}

impl DataFile {
    /// Where the file would end with `len` more bytes after `position`,
    /// if that is within its size.
    fn grow(&self, position: u64, len: usize) -> Result<u64, (u64, u64)> {
        let bound = self.size.unwrap_or(u64::MAX);
        match position.checked_add(len as u64) {
            Some(end) if end <= bound => Ok(end),
            end => Err((bound, end.unwrap_or(u64::MAX))),
        }
    }
}
