//! The LocalStream node as a library: identity, peer store and trust, the
//! listener, the sender and the receiver. It reports what happens as typed
//! [`Event`]s and asks its front end for decisions; it prints nothing, reads
//! no terminal and knows nothing of the front end that drives it (the
//! `localstream` command, a web UI).
//!
//! ```text
//!  front end ──► Node ─┬─► listen ─► receive (per connection) ─► fsutil (partial, verify, rename)
//!     ▲                │     └─► discover (announce)
//!     │                ├─► send ─► discover (find by name) ─► conn ─► trust (pin on consent)
//!     │                └─► browse / add / trust / settings
//!     └──── Events (listening, offer, accepted, progress, file_done, transfer_done, ...)
//!           decisions back: Node::decide(offer_id, Decision), Node::confirm(question, yes)
//!                 conn: frames + handshake driver + sealed records (over localstream_proto)
//! ```
//!
//! The wire protocol itself lives in `localstream_proto` (no I/O); this crate
//! drives it over TCP, decides consent by [`consent::Policy`] or by asking,
//! and writes files safely.
//!
//! ```no_run
//! # async fn run() -> localstream_node::Result<()> {
//! use localstream_node::{Event, Node, NodeConfig};
//! let node = Node::start(NodeConfig { home: "/tmp/ls-home".into(), name: None })?;
//! let mut events = node.events();
//! tokio::spawn(async move {
//!     while let Some(envelope) = events.next().await {
//!         if envelope.event.is_machine() {
//!             println!("{}", serde_json::to_string(&envelope).unwrap_or_default());
//!         }
//!     }
//! });
//! # Ok(()) }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod add;
pub mod admission;
pub mod cancel;
pub mod compress;
pub mod config;
pub mod confirm;
pub mod conn;
pub mod consent;
mod context;
pub mod discover;
pub mod error;
pub mod event;
pub mod exclude;
pub mod fsutil;
mod hash;
pub mod identity;
pub mod label;
pub mod listen;
#[cfg(feature = "localsend")]
pub mod localsend;
mod node;
pub mod question;
pub mod receive;
pub mod send;
pub mod settings;
pub mod store;
pub mod trust;
pub mod units;

pub use error::{Error, Result};
pub use event::{Event, EventStream, Notice};
pub use label::{NodeId, PeerLabel};
pub use node::{Node, NodeConfig, Shutdown, Transfer};
pub use question::Decision;

/// A certificate fingerprint as LocalSend shows it (64 upper-case hex
/// digits; the SHA-256 of the certificate).
#[must_use]
pub fn localsend_fingerprint(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02X}")).collect()
}
