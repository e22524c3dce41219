//! Every decoder on random bytes and on spoiled valid encodings: it never
//! panics, never allocates more than its input justifies, accepts every valid
//! encoding, refuses what breaks a limit, and whatever it accepts encodes back
//! to exactly the bytes it was given.
//!
//! ```text
//!  valid message ─encode─► bytes ─┬─ as is ──────────────────► must decode
//!                                 ├─ past a limit, misframed ─► must be refused
//!                                 ├─ random mutations ─────┐
//!                                 └─ every single mutation ┤  (sweep)
//!  random bytes ───────────────────────────────────────────┴─► may go either way
//!
//!  every decode: no panic, peak allocation within budget(input length),
//!                Ok(message) => encode(message) == input
//! ```
//!
//! Spoiled valid encodings are what find bugs in length-prefixed formats, so
//! besides random mutations (bit flips, truncation, extension, inserted,
//! removed and repeated bytes, fields overwritten with huge values) each
//! decoder gets a *sweep*: for a few valid messages, every truncation, every
//! bit flip, and every offset overwritten with 1-, 2-, 4- and 8-byte values
//! (all ones, top bit, one more, one less, `MAX_FILES`, ...), so a length or
//! count field is always hit.
//!
//! [`allocation_counter`] is this binary's global allocator; it counts per
//! thread, so tests running in parallel do not disturb each other. The fuzz
//! targets in `fuzz/` run the same decoders for as long as one likes; a longer
//! run of these: `PROPTEST_CASES=20000 cargo test -p localstream-proto --test
//! decoders` (sweeps and handshakes get a twentieth of that).
//!
//! | module | what |
//! | --- | --- |
//! | `harness` | the allocation budget, mutations, sweeps, checking a decode |
//! | `messages` | every handshake and transfer message decoder |
//! | `framing` | frame header and frame decoders, as an I/O loop uses them |
//! | `collector` | the offer collector on spoiled and lying offers |
//! | `names` | wire-path validator, terminal escaping and stripping |
//! | `sessions` | the handshake on tampered flights, the record opener |
//! | `transfer_fsm` | the transfer state machines on arbitrary and tampered record sequences |

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use localstream_proto::codec::{
    Decoded, FrameHeader, HEADER_LEN, MAX_HANDSHAKE_BODY, WriteExt, decode_frame, decode_header,
    encode_frame,
};
use localstream_proto::handshake::messages::{
    Alert, ClientHello, IdentityMsg, KeyReveal, MAGIC, MAX_ALERT_MESSAGE, MAX_LIST, MAX_SIGNATURE,
    ServerHello, decode_finished, decode_verify, encode_finished, encode_verify,
};
use localstream_proto::identity::{MAX_NAME_BYTES, MAX_PUBLIC_KEY_DER};
use localstream_proto::names::{
    MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_PATH_BYTES, escape_for_terminal, is_control_or_bidi,
    is_invisible_format, strip_control_or_bidi, validate_wire_path,
};
use localstream_proto::record::{MAX_PLAINTEXT, MAX_RECORD_BODY, TAG_LEN};
use localstream_proto::transfer::{
    Answer, FileDecision, FileEnd, FinalStatus, MAX_FILES, MAX_MESSAGE, MAX_PATH, MAX_RESUMED,
    OfferCollector, OfferEntry, OfferPart, Resume, ResumeFile, TransferEnd,
};
use localstream_proto::{
    Config, Error, Handshake, LocalIdentity, Progress, RecordType, Result, Session, Status,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

#[path = "decoders/collector.rs"]
mod collector;
#[path = "decoders/framing.rs"]
mod framing;
#[path = "decoders/harness.rs"]
mod harness;
#[path = "decoders/messages.rs"]
mod messages;
#[path = "decoders/names.rs"]
mod names;
#[path = "decoders/sessions.rs"]
mod sessions;
#[path = "decoders/transfer_fsm.rs"]
mod transfer_fsm;

use harness::*;
use messages::*;
