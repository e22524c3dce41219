//! The one error type of the protocol crate.

use crate::status::Status;

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
            Error::SigningFailed | Error::Poisoned | Error::SequenceExhausted => {
                Status::InternalError
            }
            Error::FrameTooLarge { .. }
            | Error::UnknownFrameType(_)
            | Error::Malformed(_)
            | Error::TrailingBytes(_)
            | Error::UnexpectedMessage { .. }
            | Error::BadNegotiation
            | Error::RecordTooLarge { .. }
            | Error::Truncated => Status::ProtocolViolation,
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
