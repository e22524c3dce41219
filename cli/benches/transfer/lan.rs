//! Rows measured on a LAN of network namespaces (needs root and iproute2):
//! two hosts (`h1` sends, `h2` receives) and a switch namespace, built by
//! [`localstream_testkit::shaped`]; nothing leaves the namespaces.
//!
//! Entry point, called by `main.rs` for the series `lan` and `latency`:
//!
//! ```text
//! pub fn rows(bin: &Path, lan: bool, latency: bool, rounds: usize) -> Result<Vec<Row>, String>
//! ```
//!
//! `bin` is the `localstream` binary, `lan`/`latency` the chosen series,
//! `rounds` the interleaved rounds of the shaped series (`cfg.runs`). It
//! returns no rows, after a loud `SKIPPED` line, when namespaces cannot be
//! made here (not root, no `ip`). Each [`Row`] is one line of the table:
//! `label`, `unit`, the `samples` (one per round; [`Row::median`],
//! [`Row::min`], [`Row::max`]) and a `note` (ratio to nc, how it was measured).
//!
//! - `lan`: three shaped links (`delayline` in the switch namespace: 1 Gbit/s
//!   0.2 ms; 300 Mbit/s 3 ms 0.1 % loss; 100 Mbit/s 10 ms 1 % loss, each way),
//!   on each a random file (`LOCALSTREAM_BENCH_LAN_MIB`, default `256,128,16`)
//!   sent by LocalStream (`--no-discovery`, by address) and by plain `nc`,
//!   interleaved, MB/s, every received file checked by BLAKE3.
//! - `latency`: `send <name> small.txt` with mDNS discovery on (inside the
//!   namespaces only), from the `send` process's start to the file existing
//!   under its name on the receiver (a stat loop every 0.2 ms): the peer
//!   pinned (`LOCALSTREAM_BENCH_LATENCY_SENDS`, default 9), by address, and
//!   first contact by name (after `forget`).
