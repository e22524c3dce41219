//! Attacks that retry: each connection is free, so every limit must hold
//! across connections, per source address and overall, without locking a
//! trusted peer out. The attacker speaks the protocol from the library, from
//! its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of
//! 127/8 to `lo`), so that its budget is not the honest sender's.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pair, Role, assert_content, assert_sent_ok, names_in, random_bytes, text};
use localstream::conn::{FrameReader, handshake};
use localstream::listen::{MAX_UNAUTHENTICATED, PER_SOURCE};
use localstream_proto::codec::{HEADER_LEN, MAX_HANDSHAKE_BODY};
use localstream_proto::handshake::Config;
use localstream_proto::handshake::messages::{ALERT, Alert, SERVER_HELLO};
use localstream_proto::{Error as ProtoError, Handshake, LocalIdentity, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn attacker_identity() -> Arc<LocalIdentity> {
    static ID: std::sync::OnceLock<Arc<LocalIdentity>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        Arc::new(LocalIdentity::new("laptop", None, key).unwrap())
    })
    .clone()
}

async fn try_connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

async fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    try_connect_from(source, port).await.unwrap()
}

/// What one grinding attempt got.
#[derive(Debug, PartialEq, Eq)]
enum Try {
    /// A ServerHello: one guess at the code (abandoned at once).
    Guess,
    /// Refused with this status instead.
    Refused(Status),
}

/// One attempt of the code-grinding man in the middle: ClientHello, read
/// the answer, reset.
async fn grind_once(source: Ipv4Addr, port: u16) -> Try {
    let stream = connect_from(source, port).await;
    let (rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::new(rd);
    let mut hello = vec![];
    let _state = Handshake::initiator(
        Config::new(attacker_identity()),
        &mut rand::rng(),
        &mut hello,
    );
    wr.write_all(&hello).await.unwrap();
    let frame = reader
        .read_frame(MAX_HANDSHAKE_BODY, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("an answer to ClientHello");
    match frame.header.typ {
        SERVER_HELLO => Try::Guess,
        ALERT => Try::Refused(Alert::decode(&frame.buf[HEADER_LEN..]).unwrap().status),
        other => panic!("unexpected answer 0x{other:02x}"),
    }
}

#[test]
fn grinding_the_code_is_bounded_per_address_and_logged_and_a_trusted_peer_still_sends() {
    const TRIES: usize = 400;
    // node/src/listen/limits.rs: a source may abandon 40 at once, then 20/s.
    const BURST: f64 = 40.0;
    const RATE: f64 = 20.0;
    let p = Pair::new();
    let r_id = p.receiver.id();
    // A first transfer, then the receiver's user trusts the sender.
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let f = p.sender.file("out", "first.txt", b"first");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    drop(l);
    let s_id = p.sender.id();
    let out = common::run(p.receiver.cmd().args(["trust", &s_id.id]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut l = p.receiver.listen(&p.inbox, &["--trusted-only"]);
    let port = l.port;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let started = Instant::now();
    let (tries, honest) = std::thread::scope(|scope| {
        let grinder = scope.spawn(|| {
            runtime().block_on(async {
                let mut tries = Vec::with_capacity(TRIES);
                for _ in 0..TRIES {
                    tries.push(grind_once(attacker, port).await);
                }
                tries
            })
        });
        // The trusted sender, in the middle of the attack.
        while !grinder.is_finished() && started.elapsed() < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let f = p
            .sender
            .file("out", "during.txt", b"sent during the attack");
        let honest = p.sender.send(port, &[&f]);
        (grinder.join().unwrap(), honest)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let guesses = tries.iter().filter(|t| **t == Try::Guess).count();
    let refused = tries.len() - guesses;
    eprintln!(
        "grinding from one address: {guesses} ServerHellos (guesses) and {refused} refusals in \
         {TRIES} tries over {elapsed:.2} s"
    );
    assert!(
        tries
            .iter()
            .all(|t| matches!(t, Try::Guess | Try::Refused(Status::Busy))),
        "{tries:?}"
    );
    let bound = BURST + RATE * elapsed + 1.0;
    assert!(
        (guesses as f64) <= bound,
        "{guesses} guesses in {elapsed:.2} s exceed the budget {bound:.0}"
    );
    assert!(guesses >= BURST as usize, "the burst is granted: {guesses}");
    // The trusted peer got its file through during the attack.
    assert_sent_ok(&honest, 1);
    assert_content(&p.inbox.join("during.txt"), b"sent during the attack");
    // The user is told.
    l.wait_stderr("key exchanges were abandoned in the last minute");
    l.wait_stderr("someone may be trying to fake a verification code");
    assert!(l.is_running(), "{}", l.stderr());
    let _ = r_id;
}

#[test]
fn forced_signatures_cost_the_stranger_one_each_and_are_rate_limited() {
    const TRIES: usize = 160;
    // node/src/listen/limits.rs: 64 at once, then 16/s per source.
    const BURST: f64 = 64.0;
    const RATE: f64 = 16.0;
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let attacker = Ipv4Addr::new(127, 0, 0, 3);
    let started = Instant::now();
    let (signed, refused) = runtime().block_on(async {
        let (mut signed, mut refused) = (0usize, 0usize);
        for _ in 0..TRIES {
            let stream = connect_from(attacker, port).await;
            let (rd, mut wr) = stream.into_split();
            let mut reader = FrameReader::new(rd);
            let mut hello = vec![];
            let hs = Handshake::initiator(
                Config::new(attacker_identity()),
                &mut rand::rng(),
                &mut hello,
            );
            match handshake(&mut reader, &mut wr, hs, hello).await {
                Ok(_) => signed += 1,
                Err(localstream::Error::Protocol(ProtoError::PeerAlert {
                    status: Status::Busy,
                    verified: false,
                    ..
                })) => refused += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        (signed, refused)
    });
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "forced signatures from one address: {signed} signed, {refused} refused in {TRIES} \
         handshakes (each signed by the attacker too) over {elapsed:.2} s"
    );
    let bound = BURST + RATE * elapsed + 1.0;
    assert!(
        (signed as f64) <= bound,
        "{signed} signatures in {elapsed:.2} s exceed {bound:.0}"
    );
    assert_eq!(signed + refused, TRIES);
    // An honest stranger from another address is not affected.
    let content = random_bytes(5, 100_000);
    let f = p.sender.file("out", "honest.bin", &content);
    assert_sent_ok(&p.sender.send(port, &[&f]), 1);
    l.wait_received();
    assert_content(&p.inbox.join("honest.bin"), &content);
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn silent_sockets_from_sixty_four_addresses_do_not_keep_honest_senders_out() {
    const SENDS: usize = 10;
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // 64 addresses, each holding more than its share of silent sockets, and
    // more coming all the time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        rt.spawn(async move {
            let mut held = std::collections::VecDeque::new();
            let mut opened = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let source = Ipv4Addr::new(127, 0, 1, 1 + (opened % 64) as u8);
                if let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_millis(500), try_connect_from(source, port))
                        .await
                {
                    held.push_back(s);
                }
                opened += 1;
                if held.len() > 4 * MAX_UNAUTHENTICATED {
                    held.pop_front();
                }
                tokio::task::yield_now().await;
            }
            opened
        })
    };
    let mut ok = 0;
    for i in 0..SENDS {
        let name = format!("honest-{i}.txt");
        let f = p.sender.file("out", &name, name.as_bytes());
        let out = p.sender.send(port, &[&f]);
        if out.status.success() {
            ok += 1;
            l.wait_received();
        } else {
            eprintln!("send {i}: {}", text(&out.stderr));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = rt.block_on(flood).unwrap();
    eprintln!(
        "{ok} of {SENDS} honest sends got in while {opened} silent sockets from 64 addresses \
         flooded the listener (at most {PER_SOURCE} places each, {MAX_UNAUTHENTICATED} in all)"
    );
    assert!(ok >= 9, "only {ok} of {SENDS} honest sends got in");
    assert!(
        opened > MAX_UNAUTHENTICATED,
        "the flood did not fill the pool"
    );
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn a_first_contact_without_a_terminal_or_yes_is_refused_before_the_offer() {
    let p = Pair::new();
    let l = p.receiver.listen(&p.inbox, &["--yes", "-v"]);
    let f = p.sender.file("out", "secret-name.txt", b"private");
    let mut cmd = p.sender.cmd();
    cmd.args(["send", "--no-discovery", &format!("127.0.0.1:{}", l.port)])
        .arg(&f);
    let out = common::run(&mut cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("never met"), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(err.contains("localstream add"), "{err}");
    // The receiver never saw a file name, and the sender pinned nothing.
    l.wait_stderr("did not confirm the verification code");
    assert!(!l.stderr().contains("secret-name"), "{}", l.stderr());
    assert!(names_in(&p.inbox).is_empty());
    assert!(
        !p.sender.store_path().exists() || {
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p.sender.store_path()).unwrap()).unwrap();
            s["peers"].as_array().is_none_or(Vec::is_empty)
        }
    );
    let _ = Role::Other;
}
