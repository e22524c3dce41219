//! Load on one listener: sockets that connect and never speak (the
//! KDE Connect-style exhaustion) next to many honest senders at once.
//!
//! The listener keeps at most `PER_SOURCE` connections of one address before
//! authentication and evicts the oldest silent one for a newcomer, so idle sockets can delay
//! no one; these tests check that from the outside, on 127.0.0.1, with
//! `--no-discovery`.

#![allow(clippy::unwrap_used)]

use super::common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Barrier;

use common::{Pair, STEP, assert_content, assert_sent_ok, poll_until, random_bytes};
use localstream_node::listen::PER_SOURCE;

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
    // Peek: a refused client's alert stays there for the next look.
    match s.peek(&mut byte) {
        Ok(0) => true,
        // The only thing a silent client may get: a plaintext Busy alert
        // (it waited for a place and none came), then the close.
        Ok(_) if byte[0] == localstream_proto::handshake::messages::ALERT => true,
        Ok(_) => panic!("the listener sent bytes other than an alert to a silent client"),
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
fn idle_sockets_of_one_address_keep_only_their_share_and_an_honest_sender_gets_in() {
    // More than the old cap of 64 connections (now 128), which answered Busy to
    // everyone once silent sockets held every slot.
    const IDLE: usize = 100;
    let p = Pair::new();
    // -v: evictions are summed up at info level.
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "-v"]);
    let idle = open_idle(l.port, IDLE);
    let open = || idle.iter().filter(|s| !closed_by_listener(s)).count();

    // One address keeps at most PER_SOURCE places: newcomers replace its
    // oldest silent ones (or, while those are young, wait briefly and are
    // refused).
    if !poll_until(STEP, || open() <= PER_SOURCE) {
        l.fail(&format!("{} idle sockets are still open", open()));
    }
    l.wait_stderr("evicting silent or stalled ones");

    // An honest sender (the same address) gets in, replacing an idle one.
    let content = random_bytes(77, 300_000);
    let f = p.sender.file("out", "honest.bin", &content);
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    l.wait_received();
    assert_content(&p.inbox.join("honest.bin"), &content);
    assert!(
        open() < PER_SOURCE,
        "the honest sender made room: {}",
        open()
    );
    assert!(l.is_running(), "listener died: {}", l.stderr());
}
