//! The one error type of the protocol crate (and [`Misuse`], what a caller
//! of the transfer state machines did wrong).

use crate::record::RecordType;
use crate::status::Status;
use crate::transfer::TransferEnd;

/// Result alias for protocol operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while decoding, handshaking or opening records.
///
/// Every variant is fatal for the connection it happened on: the protocol never
/// tries to recover from a malformed or unauthenticated byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A length prefix announced more bytes than this phase allows (checked before allocating).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame (or before the exchange finished).
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// A frame type byte that is not defined in this phase.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// A frame body that does not parse as its message.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message body with bytes left after its last field.
    #[error("malformed message: {0} has trailing bytes")]
    TrailingBytes(&'static str),
    /// A message arrived that the current state does not accept.
    #[error("unexpected message: expected {expected}, got frame type 0x{got:02x}")]
    UnexpectedMessage {
        /// What the state machine was waiting for.
        expected: &'static str,
        /// The frame type that arrived.
        got: u8,
    },
    /// The first bytes of the connection are not a LocalStream hello.
    #[error("peer does not speak the LocalStream protocol")]
    BadMagic,
    /// No protocol version in common with the peer.
    #[error("no common protocol version (peer offers {peer:?}, we support {ours:?})")]
    UnsupportedVersion {
        /// Versions the peer offered.
        peer: Vec<u16>,
        /// Versions we support.
        ours: Vec<u16>,
    },
    /// No cipher suite in common with the peer.
    #[error("no common cipher suite (peer offers {peer:04x?}, we support {ours:04x?})")]
    NoCommonSuite {
        /// Suites the peer offered.
        peer: Vec<u16>,
        /// Suites we support.
        ours: Vec<u16>,
    },
    /// The peer chose a version or suite we never offered.
    #[error("peer selected a version or cipher suite that was not offered")]
    BadNegotiation,
    /// The revealed ephemeral key does not match the commitment sent earlier.
    #[error("ephemeral key does not match its commitment")]
    CommitmentMismatch,
    /// The key exchange produced an all-zero secret (a low-order point).
    #[error("key exchange with a low-order public key")]
    WeakKeyExchange,
    /// The peer's long-term public key is unusable.
    #[error("invalid peer public key: {0}")]
    InvalidPublicKey(&'static str),
    /// The peer's transcript signature does not verify.
    #[error("peer's handshake signature is invalid")]
    BadSignature,
    /// The peer's key-confirmation MAC does not verify.
    #[error("peer's key confirmation is invalid")]
    BadFinished,
    /// The Identity's node id is not the one derived from its key.
    #[error("peer's node id is not the one bound to its key")]
    NodeIdNotBound,
    /// The peer proved a different long-term key than the one we expected.
    #[error("peer presented key {got}, expected {expected}", got = hex(got), expected = hex(expected))]
    UnexpectedPeerKey {
        /// Fingerprint we expected.
        expected: [u8; 32],
        /// Fingerprint the peer proved.
        got: [u8; 32],
    },
    /// A record failed authentication (tampered, replayed, reordered, reflected or dropped).
    #[error("record authentication failed (tampered, replayed, reordered or dropped data)")]
    BadRecordMac,
    /// A record-layer object was used after a previous failure.
    #[error("record layer is closed after an earlier failure")]
    Poisoned,
    /// The 64-bit record counter would wrap.
    #[error("record sequence number exhausted")]
    SequenceExhausted,
    /// A record or message too large for its type.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// The size asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer aborted with an alert.
    #[error(
        "{}{} ({status})",
        if *verified { "peer aborted: " } else { "the peer (or someone on the path: a plaintext alert is not authenticated) said: " },
        crate::names::escape_for_terminal(message)
    )]
    PeerAlert {
        /// The peer's status code.
        status: Status,
        /// The peer's explanation (untrusted text; escape before display).
        message: String,
        /// Whether it came in an authenticated record (else it was a
        /// plaintext alert frame, which anyone on the path can forge).
        verified: bool,
    },
    /// Our own signing failed (should not happen with a valid key).
    #[error("signing failed")]
    SigningFailed,
    /// A transfer record arrived that the transfer's current state does not
    /// take (see [`crate::transfer::fsm`]).
    #[error("unexpected {got:?} record (expected {})", Expected(expected))]
    UnexpectedRecord {
        /// The record types the state takes (besides an Alert); empty when
        /// it takes none.
        expected: &'static [RecordType],
        /// The type that arrived.
        got: RecordType,
    },
    /// A batch of a version 4 transfer takes the batches past what the
    /// Manifest announced (entries, folders or bytes), or a record other
    /// than the Manifest opened such a transfer.
    #[error("the batches hold more {what} ({got}) than the Manifest announced ({announced})")]
    BeyondManifest {
        /// What overflowed: "entries", "folders" or "bytes".
        what: &'static str,
        /// The Manifest's total.
        announced: u64,
        /// The batches' total with this one.
        got: u64,
    },
    /// An accepting Answer without exactly one decision per offered entry.
    #[error("the Answer has {decisions} decisions for an offer of {entries} entries")]
    DecisionCount {
        /// Entries offered.
        entries: usize,
        /// Decisions in the Answer.
        decisions: usize,
    },
    /// A Resume record that does not list every held prefix the Answer offered.
    #[error("the Resume record has {got} entries for {expected} held prefixes")]
    ResumeCount {
        /// Held prefixes the Answer offered.
        expected: usize,
        /// Entries in the Resume record.
        got: usize,
    },
    /// A Resume entry that names another file than the next held prefix
    /// (entries go in offer order).
    #[error("the Resume record names file {got} where file {expected} was due")]
    ResumeIndex {
        /// Index of the next file whose prefix the Answer offered.
        expected: u32,
        /// Index in the Resume entry.
        got: u32,
    },
    /// A Resume entry whose offset is neither the Answer's nor 0.
    #[error("the Resume record resumes file {index} at {got}, but {held} bytes were offered")]
    ResumeOffset {
        /// The file's index.
        index: u32,
        /// The offset the Answer offered.
        held: u64,
        /// The offset in the Resume entry.
        got: u64,
    },
    /// A Data or DataZstd record when every accepted file has had its FileEnd.
    #[error("data after the last accepted file")]
    DataWithoutFile,
    /// Data past the current file's offered size (a stream has no such bound).
    #[error("{attempted} bytes of data for file {index}, offered with {size}")]
    DataBeyondSize {
        /// The file's index.
        index: u32,
        /// Its offered size.
        size: u64,
        /// Bytes it would hold with this record (its offset included).
        attempted: u64,
    },
    /// A DataZstd record in a transfer whose Answer did not grant
    /// [`crate::transfer::FEATURE_ZSTD`].
    #[error("compressed data that the Answer did not allow")]
    CompressionNotAgreed,
    /// A FileEnd that is not for the current file.
    #[error("FileEnd for file {got}, expected {}", match expected {
        Some(i) => format!("file {i}"),
        None => "none (every accepted file has ended)".to_owned(),
    })]
    UnexpectedFileEnd {
        /// The current file, or `None` when every accepted file has ended.
        expected: Option<u32>,
        /// The index in the FileEnd.
        got: u32,
    },
    /// A TransferEnd while an accepted file still lacks its FileEnd.
    #[error("TransferEnd before the FileEnd of file {next}")]
    FilesMissing {
        /// The first accepted file without its FileEnd.
        next: u32,
    },
    /// A TransferEnd whose counters are not what arrived.
    #[error(
        "TransferEnd says {} files and {} bytes, but {} files and {} bytes arrived",
        announced.files, announced.bytes, received.files, received.bytes
    )]
    TransferEndMismatch {
        /// What the TransferEnd says.
        announced: TransferEnd,
        /// FileEnd records and Data bytes received.
        received: TransferEnd,
    },
    /// A Status record without one entry per offered entry.
    #[error("the Status has {statuses} entries for an offer of {entries} entries")]
    StatusCount {
        /// Entries offered.
        entries: usize,
        /// Entries in the Status.
        statuses: usize,
    },
    /// The caller asked a transfer state machine for something the protocol
    /// does not allow: a bug on this side, not the peer's doing. Nothing was
    /// produced for the peer.
    #[error("transfer state machine misused: {0}")]
    Misuse(#[from] Misuse),
}

/// What a caller asked of a transfer state machine that the protocol does
/// not allow (see [`Error::Misuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// An offer with no entries (the receiver would refuse it).
    #[error("an offer needs at least one entry")]
    EmptyOffer,
    /// More data for a file than the offer announced (not a stream).
    #[error("{attempted} bytes of data for file {index}, offered with {size}")]
    DataBeyondSize {
        /// The file's index.
        index: u32,
        /// Its offered size.
        size: u64,
        /// Bytes it would hold with this record (its offset included).
        attempted: u64,
    },
    /// A DataZstd record without the receiver's
    /// [`crate::transfer::FEATURE_ZSTD`].
    #[error("compressed data that the receiver did not accept")]
    CompressionNotAgreed,
    /// Decisions that are not one per offered entry.
    #[error("{decisions} decisions for an offer of {entries} entries")]
    DecisionCount {
        /// Entries offered.
        entries: usize,
        /// Decisions given.
        decisions: usize,
    },
    /// A decision offset the protocol does not allow: on a refused entry, a
    /// directory or a stream, or past the file's size.
    #[error("entry {index} cannot have offset {offset}")]
    DecisionOffset {
        /// The entry's index.
        index: u32,
        /// The offset given.
        offset: u64,
    },
    /// [`Status::Ok`] where a refusal or a failure is needed.
    #[error("200 is not a refusal or a failure")]
    NotAFailure,
    /// An entry that this transfer did not accept (or no entry at all).
    #[error("entry {index} was not accepted in this transfer")]
    NotAccepted {
        /// The index given.
        index: u32,
    },
}

/// Renders the record types a state expected.
struct Expected<'a>(&'a [RecordType]);

impl std::fmt::Display for Expected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            [] => f.write_str("no record"),
            [one] => write!(f, "{one:?}"),
            many => {
                for (i, t) in many.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        i if i + 1 == many.len() => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{t:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl Error {
    /// The status code to put in an alert telling the peer why we give up.
    pub fn status(&self) -> Status {
        match self {
            Error::UnsupportedVersion { .. } | Error::BadMagic => Status::UnsupportedVersion,
            Error::NoCommonSuite { .. } => Status::NoCommonSuite,
            Error::CommitmentMismatch
            | Error::WeakKeyExchange
            | Error::InvalidPublicKey(_)
            | Error::BadSignature
            | Error::BadFinished
            | Error::UnexpectedPeerKey { .. }
            | Error::NodeIdNotBound
            | Error::BadRecordMac => Status::AuthenticationFailed,
            Error::PeerAlert { status, .. } => *status,
            Error::SigningFailed
            | Error::Poisoned
            | Error::SequenceExhausted
            | Error::Misuse(_) => Status::InternalError,
            Error::FrameTooLarge { .. }
            | Error::UnknownFrameType(_)
            | Error::Malformed(_)
            | Error::TrailingBytes(_)
            | Error::UnexpectedMessage { .. }
            | Error::BadNegotiation
            | Error::RecordTooLarge { .. }
            | Error::Truncated
            | Error::UnexpectedRecord { .. }
            | Error::DecisionCount { .. }
            | Error::ResumeCount { .. }
            | Error::ResumeIndex { .. }
            | Error::ResumeOffset { .. }
            | Error::DataWithoutFile
            | Error::DataBeyondSize { .. }
            | Error::CompressionNotAgreed
            | Error::UnexpectedFileEnd { .. }
            | Error::FilesMissing { .. }
            | Error::TransferEndMismatch { .. }
            | Error::StatusCount { .. }
            | Error::BeyondManifest { .. } => Status::ProtocolViolation,
        }
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
