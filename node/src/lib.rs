//! LocalStream node: everything that owns sockets, files, the terminal and the process.
//!
//! ```text
//!  cli ─► config ─► identity ─┬─► listen ─► receive (per connection) ─► fsutil
//!                             │     └─► discover (announce)
//!                             ├─► send ─► discover (find by name) ─► conn
//!                             └─► peers ─► discover (browse)
//!                 conn: frames + handshake driver + sealed records (over localstream_proto)
//! ```
//!
//! The wire protocol itself lives in `localstream_proto` (no I/O); this crate
//! drives it over TCP, decides consent, and writes files safely.

pub mod add;
pub mod app;
pub mod cli;
pub mod compress;
pub mod config;
pub mod confirm;
pub mod conn;
pub mod consent;
pub mod discover;
pub mod doctor;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod identity;
pub mod listen;
pub mod notify;
pub mod progress;
pub mod receive;
pub mod send;
pub mod service;
pub mod settings;
pub mod signals;
pub mod store;
pub mod trust;

pub use error::{Error, Result};
