//! The receiver's states: collect the offer, answer it, check the Resume,
//! follow the data file by file, give the final Status.

use super::{Agreement, BATCH_DATA_PHASE, DATA_PHASE, DataFile, unexpected};
use crate::error::{Error, Misuse, Result};
use crate::record::{MAX_PLAINTEXT, RecordType};
use crate::status::Status;
use crate::transfer::{
    Answer, FileDecision, FileEnd, FinalStatus, OfferCollector, OfferEntry, OfferPart, Resume,
    ResumeFile, TransferEnd,
};

/// Receiver: collects the Offer records until the offer is complete.
#[derive(Default)]
pub struct CollectingOffer {
    collector: OfferCollector,
    entries: usize,
    path_bytes: usize,
    batched: bool,
}

impl std::fmt::Debug for CollectingOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectingOffer")
            .field("entries", &self.entries)
            .field("path_bytes", &self.path_bytes)
            .finish_non_exhaustive()
    }
}

/// What one Offer record made of the offer.
#[derive(Debug)]
pub enum OfferStep {
    /// More Offer records are due.
    More(CollectingOffer),
    /// The offer is complete: decide about it.
    Complete(Deciding),
}

impl CollectingOffer {
    /// Waits for the first Offer record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for the first Offer record of one batch of a version 4
    /// transfer (after its [`Manifest`](crate::transfer::Manifest), or after
    /// our Status for the batch before): its data may end with a BatchEnd
    /// ([`Done::more`]). Check each batch against the manifest with
    /// [`Batches::admit`](super::Batches::admit).
    pub fn batch() -> Self {
        CollectingOffer {
            batched: true,
            ..Self::default()
        }
    }

    /// Entries collected so far (for a memory budget of one's own).
    pub fn entries_received(&self) -> usize {
        self.entries
    }

    /// Path bytes collected so far (for a memory budget of one's own; the
    /// protocol's bound is [`MAX_OFFER_PATH_BYTES`](crate::transfer::MAX_OFFER_PATH_BYTES)).
    pub fn path_bytes(&self) -> usize {
        self.path_bytes
    }

    /// Handles the sender's record, which must be an Offer record.
    ///
    /// # Errors
    /// [`Error::PeerAlert`] for an Alert, [`Error::UnexpectedRecord`] for
    /// any other record, and what [`OfferPart::decode`] and
    /// [`OfferCollector::add`] refuse.
    pub fn handle(mut self, typ: RecordType, body: &[u8]) -> Result<OfferStep> {
        if typ != RecordType::Offer {
            return Err(unexpected(typ, body, &[RecordType::Offer]));
        }
        let part = OfferPart::decode(body)?;
        let entries = part.entries.len();
        let path_bytes: usize = part.entries.iter().map(|e| e.path.len()).sum();
        Ok(match self.collector.add(part)? {
            Some((entries, total)) => OfferStep::Complete(Deciding {
                entries,
                total,
                batched: self.batched,
            }),
            None => {
                self.entries += entries;
                self.path_bytes += path_bytes;
                OfferStep::More(self)
            }
        })
    }
}

/// Receiver: holds the whole offer; the sender waits while the receiver
/// (its policy, its user) decides.
pub struct Deciding {
    entries: Vec<OfferEntry>,
    total: u64,
    batched: bool,
}

impl std::fmt::Debug for Deciding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deciding")
            .field("entries", &self.entries.len())
            .field("total", &self.total)
            .finish()
    }
}

/// Where an accepting Answer leads.
#[derive(Debug)]
pub enum Accepted {
    /// Some decision offered a held prefix: the sender's Resume comes first.
    AwaitResume(AwaitResume),
    /// The data may flow.
    Receiving(Receiving),
}

impl Deciding {
    /// The offered entries, in offer order (validate their paths with
    /// [`crate::names`] before deciding).
    pub fn entries(&self) -> &[OfferEntry] {
        &self.entries
    }

    /// The sum of the offered sizes (streams count 0).
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Accepts the offer with one decision per entry (in offer order) and
    /// `features` (`FEATURE_*` bits this side takes); `out` receives the
    /// Answer body ([`RecordType::Answer`]). A decision may offer a held
    /// prefix (status 200, `offset > 0`) only for a plain file, no longer
    /// than its offered size; a refused entry has offset 0.
    ///
    /// # Errors
    /// [`Misuse::DecisionCount`], [`Misuse::DecisionOffset`], and
    /// [`Error::RecordTooLarge`] for more than
    /// [`MAX_RESUMED`](crate::transfer::MAX_RESUMED) held prefixes. Nothing
    /// is written to `out` then.
    pub fn accept(
        self,
        decisions: Vec<FileDecision>,
        features: u32,
        out: &mut Vec<u8>,
    ) -> Result<Accepted> {
        if decisions.len() != self.entries.len() {
            return Err(Misuse::DecisionCount {
                entries: self.entries.len(),
                decisions: decisions.len(),
            }
            .into());
        }
        for (i, (e, d)) in self.entries.iter().zip(&decisions).enumerate() {
            let allowed = if d.status.is_ok() {
                d.offset == 0
                    || (!e.is_dir() && !e.is_stream() && !e.is_text() && d.offset <= e.size)
            } else {
                d.offset == 0
            };
            if !allowed {
                return Err(Misuse::DecisionOffset {
                    index: i as u32,
                    offset: d.offset,
                }
                .into());
            }
        }
        let answer = Answer {
            status: Status::Ok,
            message: String::new(),
            features,
            files: decisions,
        };
        let start = out.len();
        if let Err(e) = answer.encode(out) {
            out.truncate(start);
            return Err(e);
        }
        let agreement = Agreement {
            entries: self.entries,
            decisions: answer.files,
            features,
            batched: self.batched,
            more: false,
        };
        Ok(if agreement.held().next().is_some() {
            Accepted::AwaitResume(AwaitResume { agreement })
        } else {
            Accepted::Receiving(Receiving::new(agreement, &[]))
        })
    }

    /// Refuses the whole offer with `status` (not 200) and `message`; `out`
    /// receives the Answer body ([`RecordType::Answer`]). Nothing follows:
    /// both sides close.
    ///
    /// # Errors
    /// [`Misuse::NotAFailure`] for [`Status::Ok`].
    pub fn refuse(self, status: Status, message: &str, out: &mut Vec<u8>) -> Result<()> {
        if status.is_ok() {
            return Err(Misuse::NotAFailure.into());
        }
        Answer {
            status,
            message: message.to_owned(),
            features: 0,
            files: vec![],
        }
        .encode(out)
    }

    /// What a record from the sender means before we answered (it must
    /// wait for the Answer): its Alert, or a violation. Either way the offer
    /// is withdrawn. (An associated function, for an I/O loop that watches
    /// the connection while the user decides.)
    pub fn unexpected(typ: RecordType, body: &[u8]) -> Error {
        unexpected(typ, body, &[])
    }
}

/// Receiver: the Answer offered held prefixes; the sender's Resume record
/// (its verdict on each) must come before any data.
#[derive(Debug)]
pub struct AwaitResume {
    agreement: Agreement,
}

impl AwaitResume {
    /// The offered entries.
    pub fn entries(&self) -> &[OfferEntry] {
        &self.agreement.entries
    }

    /// Our decisions, one per entry.
    pub fn decisions(&self) -> &[FileDecision] {
        &self.agreement.decisions
    }

    /// Handles the sender's record, which must be the Resume: one entry per
    /// held prefix offered, in offer order, each with the offered offset
    /// (the prefix matches: keep it) or 0 (it does not: drop what is held,
    /// the file comes whole). Returns the data phase and the checked Resume.
    ///
    /// # Errors
    /// [`Error::PeerAlert`] for an Alert, [`Error::UnexpectedRecord`] for
    /// any other record, [`Error::ResumeCount`], [`Error::ResumeIndex`],
    /// [`Error::ResumeOffset`], and the Resume decoder's errors.
    pub fn handle(self, typ: RecordType, body: &[u8]) -> Result<(Receiving, Resume)> {
        if typ != RecordType::Resume {
            return Err(unexpected(typ, body, &[RecordType::Resume]));
        }
        let resume = Resume::decode(body)?;
        let expected = self.agreement.held().count();
        if resume.files.len() != expected {
            return Err(Error::ResumeCount {
                expected,
                got: resume.files.len(),
            });
        }
        for (got, (index, d)) in resume.files.iter().zip(self.agreement.held()) {
            if got.index != index {
                return Err(Error::ResumeIndex {
                    expected: index,
                    got: got.index,
                });
            }
            if got.offset != d.offset && got.offset != 0 {
                return Err(Error::ResumeOffset {
                    index,
                    held: d.offset,
                    got: got.offset,
                });
            }
        }
        Ok((Receiving::new(self.agreement, &resume.files), resume))
    }
}

/// Receiver: the data phase. Follows the accepted files in offer order and
/// reports each record as an [`Event`].
pub struct Receiving {
    agreement: Agreement,
    files: Vec<DataFile>,
    /// Position in `files` of the current file.
    next: usize,
    /// Bytes the current file holds: its confirmed prefix and the data received.
    position: u64,
    /// FileEnd records and data bytes received.
    received: TransferEnd,
    /// Bytes of confirmed held prefixes.
    resumed: u64,
    /// One per offered entry.
    statuses: Vec<Status>,
    /// After an error or the TransferEnd: nothing more is taken.
    over: bool,
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("agreement", &self.agreement)
            .field("current_file", &self.current_file())
            .field("position", &self.position)
            .field("received", &self.received)
            .field("over", &self.over)
            .finish_non_exhaustive()
    }
}

/// What one record of the data phase was.
#[derive(Debug)]
#[must_use]
pub enum Event<'a> {
    /// A Data record: its bytes belong to this file at this offset.
    Data(Chunk),
    /// A DataZstd record: decompress it (one zstd frame, at most
    /// [`MAX_PLAINTEXT`] bytes) and report the length with
    /// [`Unpack::unpacked`], which says where the bytes go.
    Compressed(Unpack<'a>),
    /// The current file's FileEnd, its size checked; check the hash.
    FileEnd(FileEnded),
    /// The TransferEnd (or a batch's BatchEnd: [`Done::more`]), its
    /// counters checked: the data phase is over.
    TransferEnd(Done),
}

/// Where the bytes of one Data (or decompressed DataZstd) record go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// The file's index in the offer.
    pub index: u32,
    /// Where in the file the bytes start.
    pub offset: u64,
    /// How many bytes.
    pub len: usize,
}

/// A DataZstd record that the caller decompresses before it is accounted.
/// Dropped without [`Unpack::unpacked`], its bytes are not counted (and
/// the file's FileEnd then fails its size check).
#[derive(Debug)]
#[must_use]
pub struct Unpack<'a> {
    receiving: &'a mut Receiving,
}

impl Unpack<'_> {
    /// Accounts for the `len` bytes the record decompressed to.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] past [`MAX_PLAINTEXT`];
    /// [`Error::DataBeyondSize`] past the file's offered size.
    pub fn unpacked(self, len: usize) -> Result<Chunk> {
        let chunk = self.receiving.account(len);
        if chunk.is_err() {
            self.receiving.over = true;
        }
        chunk
    }
}

/// A file's FileEnd, checked against what arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEnded {
    /// The file's index in the offer.
    pub index: u32,
    /// Its size, as the FileEnd gives it.
    pub size: u64,
    /// The sender's BLAKE3 of its whole content: compare it with the hash
    /// of the prefix held and the bytes received.
    pub hash: [u8; 32],
    /// Bytes it holds: its confirmed prefix and the data received.
    pub received: u64,
    /// [`Status::Ok`], or [`Status::SizeMismatch`] when `size` is not what
    /// arrived or (but for a stream) not the offered size: discard the
    /// file. Not fatal: the transfer goes on with the next file.
    pub status: Status,
}

/// Step results that borrow nothing, turned into an [`Event`] at the end.
enum Step {
    Data(Chunk),
    Compressed,
    FileEnd(FileEnded),
    TransferEnd { more: bool },
}

impl Receiving {
    fn new(agreement: Agreement, confirmed: &[ResumeFile]) -> Self {
        let files = agreement.data_files(confirmed);
        let statuses = agreement.decisions.iter().map(|d| d.status).collect();
        Receiving {
            position: files.first().map_or(0, |f| f.start),
            resumed: files.iter().map(|f| f.start).sum(),
            files,
            agreement,
            next: 0,
            received: TransferEnd { files: 0, bytes: 0 },
            statuses,
            over: false,
        }
    }

    /// The offered entries (none once the TransferEnd has been handled).
    pub fn entries(&self) -> &[OfferEntry] {
        &self.agreement.entries
    }

    /// Our decisions, one per entry.
    pub fn decisions(&self) -> &[FileDecision] {
        &self.agreement.decisions
    }

    /// Whether our Answer granted compression (DataZstd records).
    pub fn compression(&self) -> bool {
        self.agreement.zstd()
    }

    /// The file the next data belongs to, or `None` when every accepted
    /// file has ended.
    pub fn current_file(&self) -> Option<u32> {
        self.files.get(self.next).map(|f| f.index)
    }

    /// Bytes the current file holds so far: its confirmed prefix and the
    /// data received.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes of held prefixes the sender confirmed (they do not cross the wire).
    pub fn resumed_bytes(&self) -> u64 {
        self.resumed
    }

    /// FileEnd records and data bytes received so far.
    pub fn received(&self) -> TransferEnd {
        self.received
    }

    /// Handles the sender's next record.
    ///
    /// # Errors
    /// [`Error::PeerAlert`] for an Alert; [`Error::UnexpectedRecord`] for a
    /// record of another phase (Offer, Resume, Answer, Status) or for any
    /// record after the TransferEnd or an error; [`Error::DataWithoutFile`],
    /// [`Error::DataBeyondSize`], [`Error::CompressionNotAgreed`],
    /// [`Error::UnexpectedFileEnd`], [`Error::FilesMissing`],
    /// [`Error::TransferEndMismatch`], and the decoders' errors. Every error
    /// is final: the machine takes nothing more.
    pub fn handle(&mut self, typ: RecordType, body: &[u8]) -> Result<Event<'_>> {
        if self.over {
            return Err(unexpected(typ, body, &[]));
        }
        let step = match self.step(typ, body) {
            Ok(step) => step,
            Err(e) => {
                self.over = true;
                return Err(e);
            }
        };
        Ok(match step {
            Step::Data(chunk) => Event::Data(chunk),
            Step::Compressed => Event::Compressed(Unpack { receiving: self }),
            Step::FileEnd(end) => Event::FileEnd(end),
            Step::TransferEnd { more } => {
                self.over = true;
                Event::TransferEnd(Done {
                    agreement: std::mem::take(&mut self.agreement),
                    statuses: std::mem::take(&mut self.statuses),
                    received: self.received,
                    resumed: self.resumed,
                    more,
                })
            }
        })
    }

    fn step(&mut self, typ: RecordType, body: &[u8]) -> Result<Step> {
        match typ {
            RecordType::Data => self.account(body.len()).map(Step::Data),
            RecordType::DataZstd if !self.agreement.zstd() => Err(Error::CompressionNotAgreed),
            RecordType::DataZstd if self.files.get(self.next).is_none() => {
                Err(Error::DataWithoutFile)
            }
            RecordType::DataZstd => Ok(Step::Compressed),
            RecordType::FileEnd => self.file_end(&FileEnd::decode(body)?).map(Step::FileEnd),
            RecordType::TransferEnd => {
                self.transfer_end(TransferEnd::decode(body)?)?;
                Ok(Step::TransferEnd { more: false })
            }
            RecordType::BatchEnd if self.agreement.batched => {
                self.transfer_end(TransferEnd::decode(body)?)?;
                Ok(Step::TransferEnd { more: true })
            }
            _ if self.agreement.batched => Err(unexpected(typ, body, BATCH_DATA_PHASE)),
            _ => Err(unexpected(typ, body, DATA_PHASE)),
        }
    }

    /// Accounts for `len` bytes of the current file.
    fn account(&mut self, len: usize) -> Result<Chunk> {
        let Some(file) = self.files.get(self.next) else {
            return Err(Error::DataWithoutFile);
        };
        if len > MAX_PLAINTEXT {
            return Err(Error::RecordTooLarge {
                len,
                max: MAX_PLAINTEXT,
            });
        }
        let end =
            file.grow(self.position, len)
                .map_err(|(size, attempted)| Error::DataBeyondSize {
                    index: file.index,
                    size,
                    attempted,
                })?;
        let chunk = Chunk {
            index: file.index,
            offset: self.position,
            len,
        };
        self.position = end;
        self.received.bytes = self.received.bytes.saturating_add(len as u64);
        Ok(chunk)
    }

    fn file_end(&mut self, end: &FileEnd) -> Result<FileEnded> {
        let file = self.files.get(self.next).copied();
        let Some(file) = file.filter(|f| f.index == end.index) else {
            return Err(Error::UnexpectedFileEnd {
                expected: file.map(|f| f.index),
                got: end.index,
            });
        };
        let received = self.position;
        let whole = end.size == received && file.size.is_none_or(|size| size == end.size);
        let status = if whole {
            Status::Ok
        } else {
            Status::SizeMismatch
        };
        self.statuses[file.index as usize] = status;
        self.received.files += 1;
        self.next += 1;
        self.position = self.files.get(self.next).map_or(0, |f| f.start);
        Ok(FileEnded {
            index: file.index,
            size: end.size,
            hash: end.hash,
            received,
            status,
        })
    }

    fn transfer_end(&self, end: TransferEnd) -> Result<()> {
        if let Some(file) = self.files.get(self.next) {
            return Err(Error::FilesMissing { next: file.index });
        }
        if end != self.received {
            return Err(Error::TransferEndMismatch {
                announced: end,
                received: self.received,
            });
        }
        Ok(())
    }
}

/// Receiver: the data phase is over; what is left is the final Status.
pub struct Done {
    agreement: Agreement,
    statuses: Vec<Status>,
    received: TransferEnd,
    resumed: u64,
    more: bool,
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Done")
            .field("agreement", &self.agreement)
            .field("received", &self.received)
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

impl Done {
    /// The offered entries.
    pub fn entries(&self) -> &[OfferEntry] {
        &self.agreement.entries
    }

    /// FileEnd records and data bytes received (as the TransferEnd says).
    pub fn received(&self) -> TransferEnd {
        self.received
    }

    /// Whether the data ended with a BatchEnd: another batch follows our
    /// Status (its Offer records come next, from
    /// [`CollectingOffer::batch`]).
    pub fn more(&self) -> bool {
        self.more
    }

    /// Bytes of held prefixes the sender confirmed.
    pub fn resumed_bytes(&self) -> u64 {
        self.resumed
    }

    /// One status per offered entry so far: a refused entry's decision,
    /// 200 for a directory accepted, 200 or 461 (its FileEnd's size check)
    /// for a file, until [`Done::fail`] says otherwise.
    pub fn statuses(&self) -> &[Status] {
        &self.statuses
    }

    /// Records that an accepted entry failed after all: its hash did not
    /// match (460), it could not be saved (507, 508). An entry's first
    /// failure is the one kept.
    ///
    /// # Errors
    /// [`Misuse::NotAFailure`] for [`Status::Ok`]; [`Misuse::NotAccepted`]
    /// for an entry the Answer refused, or no entry.
    pub fn fail(&mut self, index: u32, status: Status) -> Result<()> {
        if status.is_ok() {
            return Err(Misuse::NotAFailure.into());
        }
        let accepted = self
            .agreement
            .decisions
            .get(index as usize)
            .is_some_and(|d| d.status.is_ok());
        match self.statuses.get_mut(index as usize) {
            Some(s) if accepted => {
                if s.is_ok() {
                    *s = status;
                }
                Ok(())
            }
            _ => Err(Misuse::NotAccepted { index }.into()),
        }
    }

    /// Ends the transfer: `out` receives the Status body
    /// ([`RecordType::Status`]), with one status per entry and, as the
    /// overall status, 200 if every accepted entry is 200, else the first
    /// failing one's code; `message` is the explanation for the sender.
    /// Returns what was encoded.
    ///
    /// # Errors
    /// Only the Status encoder's (never for a transfer that got this far).
    pub fn final_status(self, message: &str, out: &mut Vec<u8>) -> Result<FinalStatus> {
        let status = self
            .statuses
            .iter()
            .zip(&self.agreement.decisions)
            .find(|(s, d)| d.status.is_ok() && !s.is_ok())
            .map_or(Status::Ok, |(s, _)| *s);
        let status = FinalStatus {
            status,
            message: message.to_owned(),
            files: self.statuses,
        };
        let start = out.len();
        if let Err(e) = status.encode(out) {
            out.truncate(start);
            return Err(e);
        }
        Ok(status)
    }
}
