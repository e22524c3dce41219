//! The LocalStream wire protocol, with no I/O.
//!
//! This crate turns bytes into protocol events and back: framing, the
//! handshake, the AES-256-GCM record layer and the transfer messages. It owns
//! no socket, file, clock or source of randomness: callers pass an RNG in and
//! move the bytes themselves. That makes every part testable in memory and
//! fuzzable (see the `pair` tests).
//!
//! ```text
//!   socket bytes ──► codec::decode_frame ──► Handshake::handle ──► PeerProven ──finish──► Session
//!                                                                   │
//!   file bytes ──► Sealer::seal_in_place ──► socket                 │ sealer/opener
//!   socket ──► Opener::open_in_place ──► (RecordType, body) ──► transfer::fsm::{Receiving, ...}
//!                                                                   │ events out, bodies to seal
//! ```
//!
//! The transfer phase is two state machines, one per side
//! ([`transfer::fsm`]): they check the order of the records and keep the
//! counts, while the caller moves, hashes and stores the file bytes.
//!
//! What it does not do: decide whom to trust (callers pin fingerprints and
//! pass `expected_peer`), ask users anything, or touch the file system.
//! `PROTOCOL.md` at the repository root is the byte-exact contract.
//!
//! ```
//! use std::sync::Arc;
//! use localstream_proto::codec::{decode_frame, Decoded, MAX_HANDSHAKE_BODY};
//! use localstream_proto::handshake::{Config, Handshake, Progress};
//! # fn run(a: Arc<localstream_proto::LocalIdentity>, b: Arc<localstream_proto::LocalIdentity>,
//! #        rng: &mut impl rand_core::CryptoRng) -> localstream_proto::Result<()> {
//! let mut to_b = Vec::new();
//! let mut i = Some(Handshake::initiator(Config::new(a), rng, &mut to_b));
//! let mut r = Some(Handshake::responder(Config::new(b)));
//! // ... feed each side's output to the other with decode_frame + handle
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod codec;
pub mod error;
pub mod handshake;
pub mod identity;
pub mod names;
pub mod record;
pub mod status;
pub mod transfer;

#[cfg(test)]
mod pair;
#[cfg(test)]
mod worked_doc;
#[cfg(test)]
mod worked_example;
#[cfg(test)]
mod worked_transfer;

pub use error::{Error, Misuse, Result};
pub use handshake::{Config, Handshake, PeerProven, Progress, Role, SAS_CODES, Sas, Session};
pub use identity::{Fingerprint, LocalIdentity, PeerIdentity, Signer, fingerprint, node_id_for};
pub use record::{Opener, RecordType, Sealer};
pub use status::Status;
