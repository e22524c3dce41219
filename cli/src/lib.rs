//! The `localstream` command: a thin front end over the LocalStream engine
//! (`localstream_node`). It owns everything a person or a script sees:
//! arguments and the settings file, text and `--json` rendering of the
//! engine's events, prompts and progress bars, notifications, and the
//! commands that are about this machine rather than the protocol (`doctor`,
//! `service`, completions, the manual page).
//!
//! ```text
//!  argv ─► cli (clap) ─► config (validated) ─► app::dispatch ─► localstream_node::Node
//!                                                   ▲                 │ events
//!            prompt (consent, first contact) ◄── render ◄─────────────┘
//!                 └─► Node::decide / Node::confirm
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod app;
// Doc comments in `cli` are clap's help text: the types and fields that
// need none (flattened groups, the subcommand enum) stay undocumented there.
// Its brackets (`IP[:PORT]`) are help text too, not links.
#[allow(missing_docs, rustdoc::broken_intra_doc_links)]
pub mod cli;
pub mod clipboard;
pub mod config;
pub mod doctor;
pub mod hint;
pub mod integrate;
pub mod manpage;
pub mod notify;
pub mod peers;
pub mod progress;
pub mod prompt;
pub mod receivers;
pub mod render;
pub mod screen;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod signals;
pub mod trust;
pub mod ui;
