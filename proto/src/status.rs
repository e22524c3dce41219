//! The one table of status codes.
//!
//! Codes travel as `u16` in answers, final statuses and alerts. They follow the
//! shape of HTTP codes so a reader can guess the class: 2xx done, 4xx the request
//! (or the sender) is refused, 5xx the receiver could not do it. Unknown codes
//! from a newer peer are kept as [`Status::Other`] and shown by number.

use std::fmt;

macro_rules! statuses {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $text:literal; )*) => {
        /// A status code with a fixed meaning (see `PROTOCOL.md`, "Status codes").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Status {
            $( $(#[$doc])* $name, )*
            /// A code this version does not know.
            Other(u16),
        }

        impl Status {
            /// Every code this version defines, in table order.
            pub const ALL: &'static [Status] = &[$(Status::$name),*];

            /// The wire value.
            pub fn code(self) -> u16 {
                match self { $(Status::$name => $code,)* Status::Other(c) => c }
            }

            /// The status for a wire value.
            pub fn from_code(code: u16) -> Status {
                match code { $($code => Status::$name,)* c => Status::Other(c) }
            }

            /// A short human description.
            pub fn description(self) -> &'static str {
                match self { $(Status::$name => $text,)* Status::Other(_) => "unknown status" }
            }
        }
    };
}

statuses! {
    /// Accepted / completed and verified.
    Ok = 200, "ok";
    /// A message broke the protocol (bad layout, wrong order, bad length).
    ProtocolViolation = 400, "protocol violation";
    /// The handshake failed: bad signature, bad key confirmation, unexpected key.
    AuthenticationFailed = 401, "authentication failed";
    /// The receiving user declined the offer.
    Declined = 403, "declined by the receiver";
    /// The receiver has no way to ask its user (no terminal) and does not accept automatically.
    ConsentUnavailable = 406, "receiver cannot ask for consent (no terminal) and accepts trusted peers only";
    /// Something took too long (consent prompt, idle peer, handshake).
    Timeout = 408, "timed out";
    /// The peer is blocked or not trusted by the receiver.
    NotTrusted = 409, "peer not trusted, or its key differs from the pinned one";
    /// Too many files, or more bytes than the receiver accepts.
    TooLarge = 413, "offer too large";
    /// A file name is not acceptable (path traversal, control characters, reserved names).
    InvalidName = 422, "invalid file name";
    /// The received data does not match the hash in the end-of-file record.
    HashMismatch = 460, "verification failed: hash mismatch";
    /// The received data does not match the announced size.
    SizeMismatch = 461, "verification failed: size mismatch";
    /// The file was not sent (the sender skipped it).
    Skipped = 462, "file skipped";
    /// The sender stopped the transfer.
    Cancelled = 499, "cancelled by the sender";
    /// An unexpected failure inside the receiver.
    InternalError = 500, "internal error";
    /// The receiver is at its connection limit or shutting down.
    Busy = 503, "receiver busy or shutting down";
    /// No protocol version in common.
    UnsupportedVersion = 505, "unsupported protocol version";
    /// No cipher suite in common.
    NoCommonSuite = 506, "no common cipher suite";
    /// The receiver does not have the space for the offer, or its disk filled up.
    InsufficientStorage = 507, "not enough disk space on the receiver";
    /// The receiver could not write (permissions, I/O error).
    WriteFailed = 508, "receiver could not write the file";
}

impl Status {
    /// Whether this status means success.
    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert!(seen.insert(s.code()), "duplicate code {}", s.code());
            assert_eq!(Status::from_code(s.code()), *s);
        }
        assert_eq!(Status::from_code(299), Status::Other(299));
        assert_eq!(Status::Other(299).code(), 299);
        assert_eq!(Status::Declined.to_string(), "403 declined by the receiver");
    }
}
