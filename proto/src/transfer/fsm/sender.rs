//! The sender's states: offer, read the Answer, settle the held prefixes,
//! stream the accepted files, read the Status.

use super::{Agreement, DataFile, unexpected};
use crate::error::{Error, Misuse, Result};
use crate::record::{MAX_PLAINTEXT, RecordType};
use crate::status::Status;
use crate::transfer::{
    Answer, FileDecision, FileEnd, FinalStatus, OfferEntry, OfferPart, Resume, ResumeFile,
    TransferEnd,
};

/// Sender: the offer, checked and encoded, waiting to be sent.
pub struct Offering {
    entries: Vec<OfferEntry>,
    bodies: Vec<Vec<u8>>,
    /// `Some(more)` for a batch of a version 4 transfer.
    batch: Option<bool>,
}

impl std::fmt::Debug for Offering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offering")
            .field("entries", &self.entries.len())
            .field("records", &self.bodies.len())
            .finish()
    }
}

impl Offering {
    /// Checks and encodes an offer of `entries` (files, directories and
    /// streams, in the order their data will go), one body per Offer record
    /// ([`OfferPart::split`]).
    ///
    /// # Errors
    /// [`Misuse::EmptyOffer`] for no entries, and what [`OfferPart::split`]
    /// and [`OfferPart::encode`] refuse: more than
    /// [`MAX_FILES`](crate::transfer::MAX_FILES) entries, a path longer than
    /// [`MAX_PATH`](crate::transfer::MAX_PATH), attributes that contradict
    /// each other or the size, sizes whose sum overflows.
    pub fn new(entries: Vec<OfferEntry>) -> Result<Self> {
        if entries.is_empty() {
            return Err(Misuse::EmptyOffer.into());
        }
        let bodies = OfferPart::split(&entries)?
            .iter()
            .map(|part| {
                let mut body = Vec::new();
                part.encode(&mut body)?;
                Ok(body)
            })
            .collect::<Result<_>>()?;
        Ok(Offering {
            entries,
            bodies,
            batch: None,
        })
    }

    /// Like [`Offering::new`], for one batch of a version 4 transfer (after
    /// the [`Manifest`](crate::transfer::Manifest), or after the Status of
    /// the batch before): `more` says whether another batch follows, so
    /// whether the data ends with a BatchEnd or the TransferEnd
    /// ([`AwaitStatus::end_record`]). Check the batch against the manifest
    /// with [`Batches::admit`](super::Batches::admit) first.
    ///
    /// # Errors
    /// Those of [`Offering::new`].
    pub fn batch(entries: Vec<OfferEntry>, more: bool) -> Result<Self> {
        let mut offering = Self::new(entries)?;
        offering.batch = Some(more);
        Ok(offering)
    }

    /// The entries offered, in offer order (an entry's index is its position).
    pub fn entries(&self) -> &[OfferEntry] {
        &self.entries
    }

    /// The bodies of the Offer records ([`RecordType::Offer`]), in the order
    /// they must be sent.
    pub fn bodies(&self) -> &[Vec<u8>] {
        &self.bodies
    }

    /// Every Offer record has been sent: the next record from the receiver
    /// is its Answer. (The sender sends nothing but an Alert until then.)
    pub fn sent(self) -> AwaitAnswer {
        AwaitAnswer {
            entries: self.entries,
            batch: self.batch,
        }
    }
}

/// Sender: the offer is out; waits for the receiver's Answer.
pub struct AwaitAnswer {
    entries: Vec<OfferEntry>,
    batch: Option<bool>,
}

impl std::fmt::Debug for AwaitAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitAnswer")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// How the receiver answered the offer.
#[derive(Debug)]
pub enum Answered {
    /// It refused the whole offer: nothing more is sent, both sides close.
    Refused(Refusal),
    /// It accepted, offering held prefixes: a Resume record comes first.
    Resuming(Resuming),
    /// It accepted: the data may flow.
    Streaming(Streaming),
}

/// A refusing Answer: why the receiver wants none of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its status code (not 200).
    pub status: Status,
    /// Its explanation (untrusted text: escape it before display).
    pub message: String,
}

impl AwaitAnswer {
    /// The entries offered.
    pub fn entries(&self) -> &[OfferEntry] {
        &self.entries
    }

    /// Handles the receiver's record, which must be the Answer. An accepting
    /// Answer must have one decision per offered entry; a refusing one is
    /// read for its status and message only.
    ///
    /// # Errors
    /// [`Error::PeerAlert`] for an Alert, [`Error::UnexpectedRecord`] for
    /// any other record, [`Error::DecisionCount`], and the Answer decoder's
    /// errors.
    pub fn handle(self, typ: RecordType, body: &[u8]) -> Result<Answered> {
        if typ != RecordType::Answer {
            return Err(unexpected(typ, body, &[RecordType::Answer]));
        }
        let answer = Answer::decode(body)?;
        if !answer.status.is_ok() {
            return Ok(Answered::Refused(Refusal {
                status: answer.status,
                message: answer.message,
            }));
        }
        if answer.files.len() != self.entries.len() {
            return Err(Error::DecisionCount {
                entries: self.entries.len(),
                decisions: answer.files.len(),
            });
        }
        let agreement = Agreement {
            entries: self.entries,
            decisions: answer.files,
            features: answer.features,
            batched: self.batch.is_some(),
            more: self.batch == Some(true),
        };
        if agreement.held().next().is_none() {
            return Ok(Answered::Streaming(Streaming::new(agreement, &[])));
        }
        let held = agreement
            .held()
            .filter(|(i, d)| {
                let e = &agreement.entries[*i as usize];
                !e.is_dir() && !e.is_stream() && !e.is_text() && d.offset <= e.size
            })
            .map(|(index, d)| HeldPrefix {
                index,
                offset: d.offset,
                hash: d.held,
            })
            .collect();
        Ok(Answered::Resuming(Resuming { agreement, held }))
    }
}

/// A prefix of one of our files that the receiver says it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPrefix {
    /// The file's index in the offer.
    pub index: u32,
    /// Bytes held (at most the file's offered size).
    pub offset: u64,
    /// The receiver's BLAKE3 of those bytes.
    pub hash: [u8; 32],
}

/// The sender's verdict on a held prefix, from hashing its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Our first `offset` bytes hash to the receiver's hash: continue after them.
    Matches,
    /// They do not (or cannot be read): the file is sent whole.
    Differs,
}

/// Sender: the Answer offered held prefixes; each must be checked before
/// any data goes, and the verdicts sent in one Resume record.
#[derive(Debug)]
pub struct Resuming {
    agreement: Agreement,
    held: Vec<HeldPrefix>,
}

impl Resuming {
    /// The entries offered.
    pub fn entries(&self) -> &[OfferEntry] {
        &self.agreement.entries
    }

    /// The Answer's decisions, one per entry.
    pub fn decisions(&self) -> &[FileDecision] {
        &self.agreement.decisions
    }

    /// The held prefixes to check, in offer order: those of plain files, no
    /// longer than the file's offered size. (Any other the Answer offered is
    /// answered 0 without asking.)
    pub fn held(&self) -> &[HeldPrefix] {
        &self.held
    }

    /// Settles the held prefixes: `verdict` is called for each one of
    /// [`Resuming::held`], in order (hash the first `offset` bytes of the
    /// file and compare; keep the hash state to continue the file's hash).
    /// `out` receives the Resume body ([`RecordType::Resume`]), which must be
    /// sent before any data.
    ///
    /// # Errors
    /// Only the Resume encoder's (never for an Answer that decoded).
    pub fn resume(
        self,
        mut verdict: impl FnMut(&HeldPrefix) -> Prefix,
        out: &mut Vec<u8>,
    ) -> Result<Streaming> {
        let mut checkable = self.held.iter().peekable();
        let files: Vec<ResumeFile> = self
            .agreement
            .held()
            .map(|(index, d)| {
                let matches = checkable
                    .next_if(|h| h.index == index)
                    .is_some_and(|h| verdict(h) == Prefix::Matches);
                ResumeFile {
                    index,
                    offset: if matches { d.offset } else { 0 },
                }
            })
            .collect();
        let start = out.len();
        let resume = Resume { files };
        if let Err(e) = resume.encode(out) {
            out.truncate(start);
            return Err(e);
        }
        Ok(Streaming::new(self.agreement, &resume.files))
    }
}

/// Sender: between files. Tells which accepted file goes next, or that
/// every one has been sent.
pub struct Streaming {
    agreement: Agreement,
    files: Vec<DataFile>,
    /// Position in `files` of the next file.
    next: usize,
    /// FileEnd records and data bytes sent so far.
    sent: TransferEnd,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("agreement", &self.agreement)
            .field("files", &self.files.len())
            .field("next", &self.next)
            .field("sent", &self.sent)
            .finish()
    }
}

/// What [`Streaming::next`] says comes next.
#[derive(Debug)]
#[must_use]
pub enum Next {
    /// Send this file's data, then its FileEnd.
    File(SendingFile),
    /// Every accepted file has been sent; the TransferEnd body is in `out`:
    /// send it as [`AwaitStatus::end_record`] ([`RecordType::TransferEnd`],
    /// or [`RecordType::BatchEnd`] for a batch that another follows), then
    /// wait for the Status.
    Ended(AwaitStatus),
}

impl Streaming {
    fn new(agreement: Agreement, confirmed: &[ResumeFile]) -> Self {
        Streaming {
            files: agreement.data_files(confirmed),
            agreement,
            next: 0,
            sent: TransferEnd { files: 0, bytes: 0 },
        }
    }

    /// The entries offered.
    pub fn entries(&self) -> &[OfferEntry] {
        &self.agreement.entries
    }

    /// The Answer's decisions, one per entry.
    pub fn decisions(&self) -> &[FileDecision] {
        &self.agreement.decisions
    }

    /// The features the receiver granted (`FEATURE_*` bits).
    pub fn features(&self) -> u32 {
        self.agreement.features
    }

    /// Whether DataZstd records may be sent ([`FEATURE_ZSTD`](crate::transfer::FEATURE_ZSTD)).
    pub fn compression(&self) -> bool {
        self.agreement.zstd()
    }

    /// Files (and streams) still to send, this one included.
    pub fn files_left(&self) -> usize {
        self.files.len() - self.next
    }

    /// FileEnd records and data bytes sent so far.
    pub fn sent(&self) -> TransferEnd {
        self.sent
    }

    /// Bytes of held prefixes we confirmed (they do not cross the wire).
    pub fn resumed_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.start).sum()
    }

    /// Data bytes the offer announces for the files still to send, each
    /// from where it starts (a stream counts 0: its size is unknown).
    pub fn bytes_left(&self) -> u64 {
        self.files[self.next..]
            .iter()
            .map(|f| f.size.map_or(0, |size| size.saturating_sub(f.start)))
            .sum()
    }

    /// The accepted files still to send, the next one first, in the order
    /// [`Streaming::next`] gives them: each as its offer index, where its
    /// data starts (a confirmed held prefix, or 0) and its offered size
    /// (`None` for a stream). For a sender that reads ahead.
    pub fn upcoming(&self) -> impl Iterator<Item = (u32, u64, Option<u64>)> + '_ {
        self.files[self.next..]
            .iter()
            .map(|f| (f.index, f.start, f.size))
    }

    /// The next accepted file, in offer order (directories and refused
    /// entries are skipped), or, when none is left, the end of the
    /// transfer: then `out` receives the TransferEnd body.
    pub fn next(self, out: &mut Vec<u8>) -> Next {
        match self.files.get(self.next).copied() {
            Some(file) => Next::File(SendingFile {
                position: file.start,
                file,
                streaming: self,
            }),
            None => {
                self.sent.encode(out);
                Next::Ended(AwaitStatus {
                    entries: self.agreement.entries.len(),
                    sent: self.sent,
                    more: self.agreement.more,
                })
            }
        }
    }

    /// What a record from the receiver means while we stream (it speaks
    /// again only after our TransferEnd): its Alert, or a violation. Either
    /// way the transfer is over. (An associated function, for an I/O loop
    /// that listens in another task than the one streaming.)
    pub fn unexpected(typ: RecordType, body: &[u8]) -> Error {
        unexpected(typ, body, &[])
    }
}

/// Sender: one file's data is going out.
#[derive(Debug)]
pub struct SendingFile {
    streaming: Streaming,
    file: DataFile,
    /// Bytes of the file sent or confirmed held so far.
    position: u64,
}

impl SendingFile {
    /// The file's index in the offer (its FileEnd carries it).
    pub fn index(&self) -> u32 {
        self.file.index
    }

    /// The file's offer entry.
    pub fn entry(&self) -> &OfferEntry {
        &self.streaming.agreement.entries[self.file.index as usize]
    }

    /// Where its data starts: the held prefix we confirmed, or 0. Its hash
    /// still covers the whole file from byte 0.
    pub fn offset(&self) -> u64 {
        self.file.start
    }

    /// Bytes of the file accounted for so far: the offset and the data sent.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes the offer still allows for this file, or `None` for a stream
    /// (no bound: it goes on until the caller ends it).
    pub fn remaining(&self) -> Option<u64> {
        self.file
            .size
            .map(|size| size.saturating_sub(self.position))
    }

    /// Whether DataZstd records may be sent.
    pub fn compression(&self) -> bool {
        self.streaming.compression()
    }

    /// Accounts for a Data record ([`RecordType::Data`]) of `len` bytes of
    /// this file, which the caller sends.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] past [`MAX_PLAINTEXT`];
    /// [`Misuse::DataBeyondSize`] past the file's offered size (nothing is
    /// accounted: the record must not be sent).
    pub fn data(&mut self, len: usize) -> Result<()> {
        if len > MAX_PLAINTEXT {
            return Err(Error::RecordTooLarge {
                len,
                max: MAX_PLAINTEXT,
            });
        }
        let end = self
            .file
            .grow(self.position, len)
            .map_err(|(size, attempted)| Misuse::DataBeyondSize {
                index: self.file.index,
                size,
                attempted,
            })?;
        self.position = end;
        let sent = &mut self.streaming.sent;
        sent.bytes = sent.bytes.saturating_add(len as u64);
        Ok(())
    }

    /// Accounts for a DataZstd record ([`RecordType::DataZstd`]) holding
    /// `len` bytes of this file once decompressed.
    ///
    /// # Errors
    /// [`Misuse::CompressionNotAgreed`] unless the receiver granted
    /// compression, and those of [`SendingFile::data`].
    pub fn data_zstd(&mut self, len: usize) -> Result<()> {
        if !self.compression() {
            return Err(Misuse::CompressionNotAgreed.into());
        }
        self.data(len)
    }

    /// Ends the file: `out` receives its FileEnd body
    /// ([`RecordType::FileEnd`]) with the size accounted for and `hash`, the
    /// BLAKE3 of its whole content from byte 0. A file that ended short of
    /// its offered size (it shrank since it was offered) may end here too:
    /// the receiver discards it ([`Status::SizeMismatch`]).
    pub fn end(mut self, hash: [u8; 32], out: &mut Vec<u8>) -> Streaming {
        FileEnd {
            index: self.file.index,
            size: self.position,
            hash,
        }
        .encode(out);
        self.streaming.sent.files += 1;
        self.streaming.next += 1;
        self.streaming
    }
}

/// Sender: the TransferEnd is out; waits for the receiver's Status.
#[derive(Debug)]
pub struct AwaitStatus {
    entries: usize,
    sent: TransferEnd,
    more: bool,
}

/// The receiver's final word, as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 200 only if every accepted entry arrived verified.
    pub status: Status,
    /// The receiver's explanation (untrusted text: escape it before display).
    pub message: String,
    /// One status per offered entry, in offer order.
    pub files: Vec<Status>,
    /// What we sent: FileEnd records and data bytes.
    pub sent: TransferEnd,
}

impl Outcome {
    /// Entries the receiver reports as delivered (200).
    pub fn delivered(&self) -> usize {
        self.files.iter().filter(|s| s.is_ok()).count()
    }

    /// Whether everything offered arrived: the status and every entry's are 200.
    pub fn is_complete(&self) -> bool {
        self.status.is_ok() && self.files.iter().all(|s| s.is_ok())
    }
}

impl AwaitStatus {
    /// What we sent: FileEnd records and data bytes (as in the TransferEnd).
    pub fn sent(&self) -> TransferEnd {
        self.sent
    }

    /// The type to send the end of the data as: [`RecordType::BatchEnd`]
    /// when another batch follows, else [`RecordType::TransferEnd`].
    pub fn end_record(&self) -> RecordType {
        if self.more {
            RecordType::BatchEnd
        } else {
            RecordType::TransferEnd
        }
    }

    /// Handles the receiver's record, which must be its Status, with one
    /// entry per offered entry.
    ///
    /// # Errors
    /// [`Error::PeerAlert`] for an Alert, [`Error::UnexpectedRecord`] for
    /// any other record, [`Error::StatusCount`], and the Status decoder's
    /// errors.
    pub fn handle(self, typ: RecordType, body: &[u8]) -> Result<Outcome> {
        if typ != RecordType::Status {
            return Err(unexpected(typ, body, &[RecordType::Status]));
        }
        let status = FinalStatus::decode(body)?;
        if status.files.len() != self.entries {
            return Err(Error::StatusCount {
                entries: self.entries,
                statuses: status.files.len(),
            });
        }
        Ok(Outcome {
            status: status.status,
            message: status.message,
            files: status.files,
            sent: self.sent,
        })
    }
}
