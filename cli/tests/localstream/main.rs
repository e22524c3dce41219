//! The `localstream` binary's tests, as one test binary with a module per
//! feature (the helpers in `common` are compiled once): real processes, real
//! sockets on 127.0.0.1 (port 0), temporary directories, and assertions on
//! what the user gets: the bytes on disk, exit codes, messages, events.
//!
//! - `cli`: sending, receiving, folders, streams, resume, JSON events, flags
//! - `folders`: folders with unreadable paths inside, `--exclude`
//! - `setup`: defaults, settings and the checks before `listen` starts
//! - `trust`: pins, first contact, trust/forget/block, sessions, the store
//! - `attacks`: code grinding, lock-outs, impostors
//! - `hostile`: malformed frames, hostile names, lying peers
//! - `faults`: cut connections, stalls, retries
//! - `history`: what `sessions` records on both sides, interruptions, signals
//! - `disk`: full disks, durability
//! - `load`: many connections at once
//! - `collisions`: `listen --on-collision`, modification times
//! - `messages`: `send --text`, `listen --clipboard`
//! - `prompts`: the receiver's questions on a real (pseudo-)terminal
//! - `receivers`: `send --to A --to B`, several receivers at once
//! - `ui`: the web UI over HTTP: its security, and transfers driven through it
//!
//! Run one feature with `cargo test -p localstream --test localstream trust::`.

mod common;

mod attacks;
mod cli;
mod collisions;
mod disk;
mod faults;
mod folders;
mod history;
mod hostile;
mod load;
mod localsend;
mod messages;
#[cfg(unix)]
mod prompts;
mod receivers;
mod setup;
mod terminal;
mod trust;
mod ui;
