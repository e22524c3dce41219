//! Load on one listener: sockets that connect and never speak (the
//! KDE Connect-style exhaustion) next to many honest senders at once.
//!
//! The listener keeps at most `MAX_UNAUTHENTICATED` connections in the
//! handshake and evicts the oldest for a newcomer, so idle sockets can delay
//! no one; these tests check that from the outside, on 127.0.0.1, with
//! `--no-discovery`.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::Instant;

use common::{Pair, STEP, assert_content, assert_sent_ok, poll_until, random_bytes};
use localstream::conn::HANDSHAKE_TIMEOUT;
use localstream::listen::MAX_UNAUTHENTICATED;

const MIB: usize = 1024 * 1024;

/// Opens `n` connections to the listener, one after the other, that will
/// never send a byte.
fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

/// Whether the listener has closed `s` (end of stream or reset), without
/// waiting. Idle sockets get no bytes: anything read is a failure.
fn closed_by_listener(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match (&*s).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the listener sent bytes to a silent client"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
        Err(e) => panic!("reading an idle socket: {e}"),
    }
}

/// The listener's peak resident memory (VmHWM), in bytes.
#[test]
fn two_hundred_idle_sockets_do_not_lock_out_sixteen_concurrent_senders() {
    const IDLE: usize = 200;
    const SENDERS: usize = 16;
    const SIZE: usize = 4 * MIB;
    // Each transfer holds at most its own 4 MiB file in flight (the receive
    // pipeline is 8 batches deep and a file here is four 1 MiB records), so
    // 16 of them hold well under 100 MiB together; the handshake pool adds
    // 32 x 64 KiB of read buffers, and the runtime and binary a few tens of
    // MiB. 200 MiB is twice that: a leak per connection or unbounded
    // buffering shows, allocator noise does not.
    const PEAK_BOUND: u64 = 200 * MIB as u64;

    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let idle = open_idle(l.port, IDLE);

    let contents: Vec<Vec<u8>> = (0..SENDERS)
        .map(|i| random_bytes(1000 + i as u64, SIZE))
        .collect();
    let names: Vec<String> = (0..SENDERS).map(|i| format!("load-{i:02}.bin")).collect();
    let files: Vec<PathBuf> = names
        .iter()
        .zip(&contents)
        .map(|(n, c)| p.sender.file("out", n, c))
        .collect();

    // All senders start together (one sender home, as a user running sends
    // in parallel would have).
    let start = Barrier::new(SENDERS);
    let outputs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                let (start, sender, port) = (&start, &p.sender, l.port);
                scope.spawn(move || {
                    let mut cmd = sender.send_cmd(port, &[f]);
                    start.wait();
                    common::run(&mut cmd)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outputs {
        assert_sent_ok(out, 1);
    }
    let mut saved: Vec<PathBuf> = (0..SENDERS).flat_map(|_| l.wait_received().1).collect();
    saved.sort();
    let mut expected: Vec<PathBuf> = names.iter().map(|n| p.inbox.join(n)).collect();
    expected.sort();
    assert_eq!(saved, expected, "the listener's report of what it saved");
    for (name, content) in names.iter().zip(&contents) {
        assert_content(&p.inbox.join(name), content);
    }

    // The listener is still there and still serves.
    assert!(l.is_running(), "listener died: {}", l.stderr());
    let last = random_bytes(2000, 300_000);
    let f = p.sender.file("out", "after-load.bin", &last);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_content(&p.inbox.join("after-load.bin"), &last);
    assert!(l.is_running(), "listener died: {}", l.stderr());

    #[cfg(target_os = "linux")]
    {
        let peak = common::peak_memory(l.pid());
        eprintln!(
            "listener peak memory (VmHWM) after {IDLE} idle sockets and {SENDERS} x {} MiB \
             concurrent transfers: {:.1} MiB",
            SIZE / MIB,
            peak as f64 / MIB as f64
        );
        assert!(
            peak < PEAK_BOUND,
            "listener peak memory {peak} bytes exceeds {PEAK_BOUND}"
        );
    }
    drop(idle);
}

#[test]
fn idle_sockets_are_evicted_oldest_first_and_an_honest_sender_gets_in() {
    // More than the old cap of 64 connections, which answered Busy to
    // everyone once silent sockets held every slot.
    const IDLE: usize = 100;
    let evicted = IDLE - MAX_UNAUTHENTICATED;
    let p = Pair::new();
    // -v: evictions are summed up at info level.
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "-v"]);
    let opened = Instant::now();
    let idle = open_idle(l.port, IDLE);

    // Each newcomer beyond the pool evicted the oldest: the first `evicted`
    // sockets are closed by the listener, the newest MAX_UNAUTHENTICATED are
    // still open (the handshake timeout would have closed those as well).
    if !poll_until(STEP, || idle[..evicted].iter().all(closed_by_listener)) {
        l.fail("the oldest idle sockets were not evicted");
    }
    let open = |from: usize| {
        idle[from..]
            .iter()
            .filter(|s| !closed_by_listener(s))
            .count()
    };
    let still_in_handshake_time = || opened.elapsed() < HANDSHAKE_TIMEOUT;
    let newest_open = open(evicted);
    if still_in_handshake_time() {
        assert_eq!(newest_open, MAX_UNAUTHENTICATED, "{}", l.stderr());
    }
    l.wait_stderr("evicting silent or stalled ones");

    // An honest sender gets in at once and evicts the oldest idle socket left.
    let content = random_bytes(77, 300_000);
    let f = p.sender.file("out", "honest.bin", &content);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_content(&p.inbox.join("honest.bin"), &content);
    if !poll_until(STEP, || closed_by_listener(&idle[evicted])) {
        l.fail("the honest sender did not evict the oldest idle socket");
    }
    let rest_open = open(evicted + 1);
    if still_in_handshake_time() {
        assert_eq!(rest_open, MAX_UNAUTHENTICATED - 1, "{}", l.stderr());
    } else {
        eprintln!(
            "this machine took longer than the handshake timeout: open-socket checks skipped"
        );
    }
    assert!(l.is_running(), "listener died: {}", l.stderr());
}
