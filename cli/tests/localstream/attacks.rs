//! Attacks that retry: each connection is free, so every limit must hold
//! across connections, per source address and overall, without locking a
//! trusted peer out. The attacker speaks the protocol from the library, from
//! its own loopback address (127.0.0.2, 127.0.0.3, ...: Linux routes all of
//! 127/8 to `lo`), so that its budget is not the honest sender's.

#![allow(clippy::unwrap_used)]

use super::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pair, Role, assert_content, assert_sent_ok, names_in, random_bytes, text};
use localstream_node::conn::{FrameReader, handshake};
use localstream_node::listen::{MAX_UNAUTHENTICATED, PER_SOURCE};
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

/// A runtime with `workers` threads, for attackers running many connections at once.
fn runtime_with(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
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
    /// Closed (or reset) without an answer: the listener had no place.
    Dropped,
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
    let Ok(Some(frame)) = reader
        .read_frame(MAX_HANDSHAKE_BODY, Duration::from_secs(10))
        .await
    else {
        return Try::Dropped;
    };
    match frame.header.typ {
        SERVER_HELLO => Try::Guess,
        ALERT => Try::Refused(Alert::decode(&frame.bytes()[HEADER_LEN..]).unwrap().status),
        other => panic!("unexpected answer 0x{other:02x}"),
    }
}

/// The code-grinding attack from `sources` addresses (up to `tries` attempts
/// from each, concurrently) while a trusted sender sends: the guesses stay
/// within each address's budget, the trusted transfer goes through, and the
/// listener tells its user (log, and the next offer).
///
/// Each address stops once it has been refused `REFUSALS` times. Whether
/// and when the budgets run out depends on how fast the listener answers
/// (64 addresses refill at 1,280 tokens/s together), so a fixed number of
/// tries would reach them on a fast machine only; trying until refused
/// reaches them on any machine that answers faster than the refill. What
/// is asserted holds at any speed: no address got more guesses than its
/// budget allowed by the time of its last try, and one that tried more
/// often than that was refused.
fn grind_while_a_trusted_peer_sends(sources: u8, tries: usize) {
    const REFUSALS: usize = 5;
    // node/src/listen/limits.rs: a source may abandon 40 at once, then 20/s.
    const BURST: f64 = 40.0;
    const RATE: f64 = 20.0;
    let p = Pair::new();
    // A first transfer, then the receiver's user trusts the sender.
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let f = p.sender.file("out", "first.txt", b"first");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    drop(l);
    let s_id = p.sender.id();
    let out = common::run(p.receiver.cmd().args(["trust", &s_id.id]));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--json"]);
    let port = l.port;
    let started = Instant::now();
    let (per_source, honest) = std::thread::scope(|scope| {
        let grinder = scope.spawn(|| {
            let rt = runtime_with(2);
            rt.block_on(async {
                let tasks: Vec<_> = (0..sources)
                    .map(|k| {
                        let attacker = Ipv4Addr::new(127, 0, 2, 1 + k);
                        tokio::spawn(async move {
                            let mut out = Vec::with_capacity(tries);
                            let mut refused = 0;
                            while out.len() < tries && refused < REFUSALS {
                                let t = grind_once(attacker, port).await;
                                refused += usize::from(t != Try::Guess);
                                out.push(t);
                            }
                            (out, started.elapsed().as_secs_f64())
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.push(t.await.unwrap());
                }
                all
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
    // Each address's guesses stayed within its budget as of its last try:
    // one that tried more often than that was refused.
    let mut reached = 0;
    for (k, (tries, done)) in per_source.iter().enumerate() {
        let guesses = tries.iter().filter(|t| **t == Try::Guess).count();
        let budget = BURST + RATE * done + 1.0;
        assert!(
            (guesses as f64) <= budget,
            "address {k}: {guesses} guesses in {done:.2} s exceed its budget {budget:.0}"
        );
        reached += usize::from(guesses < tries.len());
    }
    if reached < per_source.len() {
        eprintln!(
            "NOTE: {} of {sources} addresses never ran into their budget: the listener \
             answered more slowly than the budgets refill, so only the bound was checked for them",
            per_source.len() - reached
        );
    }
    let tries: Vec<Try> = per_source.into_iter().flat_map(|(t, _)| t).collect();
    let guesses = tries.iter().filter(|t| **t == Try::Guess).count();
    let refused = tries.len() - guesses;
    eprintln!(
        "grinding from {sources} address(es): {guesses} ServerHellos (guesses) and {refused} \
         refusals in {} tries over {elapsed:.2} s",
        tries.len()
    );
    assert!(
        tries
            .iter()
            .all(|t| matches!(t, Try::Guess | Try::Refused(Status::Busy) | Try::Dropped)),
        "{tries:?}"
    );
    let bound = f64::from(sources) * (BURST + RATE * elapsed) + 1.0;
    assert!(
        (guesses as f64) <= bound,
        "{guesses} guesses in {elapsed:.2} s exceed the budget {bound:.0}"
    );
    // The trusted peer got its file through during the attack.
    assert!(
        honest.status.success(),
        "the trusted send failed during the attack: {}\nthe listener said:\n{}",
        text(&honest.stderr),
        l.stderr()
    );
    assert_sent_ok(&honest, 1);
    assert_content(&p.inbox.join("during.txt"), b"sent during the attack");
    // The user is told: in the log, and with the next offer.
    l.wait_stderr("key exchanges were abandoned in the last minute");
    l.wait_stderr("someone may be trying to fake a verification code");
    let newcomer = common::Node::new(Role::Other);
    let f = newcomer.file("out", "new.txt", b"first contact after the attack");
    assert_sent_ok(&newcomer.send(port, &[&f]), 1);
    let line = l.wait_line(|line| line.contains("new.txt") && line.contains("\"offer\""));
    let last: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(
        last["abandoned_exchanges"].as_u64().unwrap() >= guesses as u64,
        "{last}"
    );
    assert_eq!(last["code"].as_str().unwrap().len(), 14, "{last}");
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn grinding_the_code_from_one_address_is_bounded_and_a_trusted_peer_still_sends() {
    grind_while_a_trusted_peer_sends(1, 400);
}

#[test]
fn grinding_the_code_from_64_addresses_is_bounded_and_a_trusted_peer_still_sends() {
    grind_while_a_trusted_peer_sends(64, 400);
}

#[test]
fn grinding_by_completing_the_handshake_is_bounded_too() {
    // The attacker knows its code at ServerHello; on a miss it completes its
    // flight (one signature of its own) instead of abandoning. Refused before
    // the listener signs, that exchange still counts against its budget.
    const TRIES: usize = 200;
    const BURST: f64 = 40.0;
    const RATE: f64 = 20.0;
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--trusted-only"]);
    let port = l.port;
    let attacker = Ipv4Addr::new(127, 0, 0, 5);
    let started = Instant::now();
    let statuses: Vec<Status> = runtime().block_on(async {
        let mut out = Vec::new();
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
                Ok(_) => panic!("an untrusted peer was served under --trusted-only"),
                Err(localstream_node::Error::Protocol(ProtoError::PeerAlert {
                    status, ..
                })) => {
                    out.push(status);
                }
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();
    // 409: refused after its proof (it had its ServerHello: a guess); 503:
    // refused before any ServerHello.
    let guesses = statuses
        .iter()
        .filter(|s| **s == Status::NotTrusted)
        .count();
    let refused = statuses.iter().filter(|s| **s == Status::Busy).count();
    eprintln!(
        "grinding by completing the flight: {guesses} guesses and {refused} refusals in \
         {TRIES} tries over {elapsed:.2} s"
    );
    assert_eq!(guesses + refused, TRIES, "{statuses:?}");
    let bound = BURST + RATE * elapsed + 1.0;
    assert!(
        (guesses as f64) <= bound,
        "{guesses} guesses exceed {bound:.0}"
    );
    assert!(refused > 0);
    l.wait_stderr("someone may be trying to fake a verification code");
    assert!(l.is_running());
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
                Err(localstream_node::Error::Protocol(ProtoError::PeerAlert {
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
    let rt = runtime_with(1);
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
            (opened, held)
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
    let (opened, held) = rt.block_on(flood).unwrap();
    // The sockets evicted to make room were told why before they were closed.
    let told = rt.block_on(async {
        let reads: Vec<_> = held
            .into_iter()
            .map(|s| {
                tokio::spawn(async move {
                    let mut reader = FrameReader::new(s.into_split().0);
                    let frame = reader.read_frame(MAX_HANDSHAKE_BODY, Duration::from_secs(1));
                    match tokio::time::timeout(Duration::from_secs(1), frame).await {
                        Ok(Ok(Some(f))) if f.header.typ == ALERT => {
                            Some(Alert::decode(&f.bytes()[HEADER_LEN..]).unwrap())
                        }
                        _ => None,
                    }
                })
            })
            .collect();
        let mut told = 0;
        for r in reads {
            if let Some(alert) = r.await.unwrap() {
                assert_eq!(alert.status, Status::Busy, "{alert:?}");
                // Refused newcomers read "busy with other handshakes".
                if alert.message.contains("dropped this connection") {
                    told += 1;
                }
            }
        }
        told
    });
    eprintln!(
        "{ok} of {SENDS} honest sends got in while {opened} silent sockets from 64 addresses \
         flooded the listener (at most {PER_SOURCE} places each, {MAX_UNAUTHENTICATED} in all); \
         {told} of the sockets still held were evicted and told so"
    );
    assert!(told > 0, "no evicted socket was told why");
    assert!(ok >= 9, "only {ok} of {SENDS} honest sends got in");
    assert!(
        opened > MAX_UNAUTHENTICATED,
        "the flood did not fill the pool"
    );
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn connections_that_send_one_byte_and_stall_do_not_keep_honest_senders_out() {
    // A connection that started its ClientHello is not silent, but it stalls:
    // one address can hold at most its share, and any becomes evictable
    // after a second. From one address, then from 64.
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let rt = runtime_with(1);
    for (addresses, each) in [(1u8, 64usize), (64, 2)] {
        let stallers = rt.block_on(async {
            let mut held = Vec::new();
            for k in 0..addresses {
                for _ in 0..each {
                    let source = Ipv4Addr::new(127, 0, 3, 1 + k);
                    if let Ok(mut s) = try_connect_from(source, port).await {
                        let _ = s.write_all(&[0x01]).await;
                        held.push(s);
                    }
                }
            }
            held
        });
        let started = Instant::now();
        for i in 0..5 {
            let name = format!("stall-{addresses}-{i}.txt");
            let f = p.sender.file("out", &name, name.as_bytes());
            assert_sent_ok(&p.sender.send(port, &[&f]), 1);
            l.wait_received();
        }
        eprintln!(
            "{} connections stalled after one byte from {addresses} address(es): 5 of 5 honest \
             sends got in, in {:.2} s",
            stallers.len(),
            started.elapsed().as_secs_f64()
        );
        drop(stallers);
    }
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

// ---- Authenticated strangers that stall, trickle, inflate or jump ahead ----

use localstream_node::conn::{IDLE_TIMEOUT, RecordWriter};
use localstream_node::receive::{OFFER_DEADLINE, PRE_CONSENT_BYTES};
use localstream_proto::record::RecordType;
use localstream_proto::transfer::{Answer, OfferEntry, OfferPart};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Distinct stranger identities (an untrusted node id may hold two offers).
fn stranger(i: usize) -> Arc<LocalIdentity> {
    static IDS: std::sync::OnceLock<Vec<Arc<LocalIdentity>>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        (0..4)
            .map(|i| {
                let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
                Arc::new(LocalIdentity::new(&format!("stranger-{i}"), None, key).unwrap())
            })
            .collect()
    })[i % 4]
        .clone()
}

struct Evil {
    reader: FrameReader<OwnedReadHalf>,
    writer: RecordWriter<OwnedWriteHalf>,
    opener: localstream_proto::Opener,
}

impl Evil {
    async fn connect(id: Arc<LocalIdentity>, port: u16) -> Evil {
        let stream = connect_from(Ipv4Addr::new(127, 0, 0, 4), port).await;
        let common::Authenticated {
            reader,
            writer,
            opener,
        } = common::authenticate(id, stream).await;
        Evil {
            reader,
            writer,
            opener,
        }
    }

    async fn offer_part(&mut self, part: &OfferPart) -> Result<(), localstream_node::Error> {
        let mut body = vec![];
        part.encode(&mut body).unwrap();
        self.writer.send(RecordType::Offer, &body).await
    }

    /// The listener's next word, as an error status (alerts are errors).
    async fn refusal(&mut self, wait: Duration) -> Option<Status> {
        match self.reader.read_record(&mut self.opener, wait).await {
            Err(localstream_node::Error::Protocol(ProtoError::PeerAlert { status, .. })) => {
                Some(status)
            }
            _ => None,
        }
    }
}

fn trusted_pair() -> Pair {
    let p = Pair::new();
    let l = p.receiver.listen(&p.inbox, &["--yes"]);
    let f = p.sender.file("out", "first.txt", b"first");
    assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    drop(l);
    let out = common::run(p.receiver.cmd().args(["trust", &p.sender.id().id]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    p
}

#[test]
fn trickled_offers_from_strangers_time_out_and_never_keep_a_trusted_sender_out() {
    let p = trusted_pair();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let rt = runtime();
    // Eight strangers start a 100,000-entry offer with one entry each, then trickle.
    let mut tricklers: Vec<Evil> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..8 {
            let mut e = Evil::connect(stranger(i), port).await;
            let part = OfferPart {
                total_entries: 100_000,
                total_bytes: 100_000,
                entries: vec![OfferEntry::file(format!("t{i}/0.txt"), 1)],
            };
            e.offer_part(&part).await.unwrap();
            v.push(e);
        }
        v
    });
    let started = Instant::now();
    // The trusted sender gets in at once, every stranger slot taken or not.
    let f = p.sender.file("out", "trusted.txt", b"from a trusted peer");
    assert_sent_ok(&p.sender.send(port, &[&f]), 1);
    assert_content(&p.inbox.join("trusted.txt"), b"from a trusted peer");
    let trusted_in = started.elapsed();
    // A ninth stranger offer waits for a slot, then is told the receiver is busy.
    // Each trickler is cut when its offer is not whole within the deadline.
    let statuses: Vec<Option<Status>> = rt.block_on(async {
        let mut out = Vec::new();
        for e in &mut tricklers {
            out.push(e.refusal(OFFER_DEADLINE + Duration::from_secs(10)).await);
        }
        out
    });
    let cut_after = started.elapsed();
    eprintln!(
        "8 trickled offers: the trusted send got in after {:.2} s; the tricklers were cut after \
         {:.1} s with {statuses:?}",
        trusted_in.as_secs_f64(),
        cut_after.as_secs_f64()
    );
    assert!(
        statuses.iter().all(|s| *s == Some(Status::Timeout)),
        "{statuses:?}"
    );
    assert!(l.is_running(), "{}", l.stderr());
}

#[test]
fn strangers_inflating_offers_before_consent_are_bounded_in_memory() {
    const OFFERS: usize = 8;
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let rt = runtime_with(2);
    // Each sends records of long paths (4,000 bytes, 250 per record) of a
    // 100,000-entry offer until the listener refuses or cuts it.
    let results: Vec<(u64, Option<Status>)> = rt.block_on(async {
        let tasks: Vec<_> = (0..OFFERS)
            .map(|i| {
                tokio::spawn(async move {
                    let mut e = Evil::connect(stranger(i), port).await;
                    let mut sent = 0u64;
                    let folders: String = (0..60)
                        .map(|d| format!("{d:02}{}/", "x".repeat(62)))
                        .collect();
                    for record in 0..400 {
                        let entries: Vec<OfferEntry> = (0..250)
                            .map(|k| OfferEntry::file(format!("{folders}{record}-{k}"), 0))
                            .collect();
                        let part = OfferPart {
                            total_entries: 100_000,
                            total_bytes: 0,
                            entries,
                        };
                        if e.offer_part(&part).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    (sent, e.refusal(Duration::from_secs(10)).await)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let peak = common::peak_memory(l.pid());
    eprintln!(
        "{OFFERS} inflating offers before consent (records sent, listener's answer): {results:?}; \
         listener peak RSS {:.1} MiB",
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < 128 << 20, "listener peak {peak} bytes");
    assert!(
        results
            .iter()
            .all(|(_, s)| matches!(s, Some(Status::TooLarge | Status::Busy))),
        "{results:?}"
    );
    // No offer got further than the budget: a record holds about 1 MB of names.
    let per_offer = PRE_CONSENT_BYTES as u64 / (250 * 4_000) + 2;
    assert!(
        results.iter().all(|(n, _)| *n <= per_offer + 64),
        "{results:?}"
    );
    // And an honest (untrusted) sender is served afterwards.
    let f = p.sender.file("out", "after.txt", b"after");
    assert_sent_ok(&p.sender.send(port, &[&f]), 1);
    assert!(l.is_running());
}

#[test]
fn an_accepted_transfer_that_makes_no_progress_is_ended() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let port = l.port;
    let (status, after) = runtime().block_on(async {
        let mut e = Evil::connect(stranger(0), port).await;
        let entries = vec![OfferEntry::file("slow.bin", 1 << 20)];
        e.offer_part(&OfferPart::split(&entries).unwrap()[0])
            .await
            .unwrap();
        let (typ, body) = e
            .reader
            .read_record(&mut e.opener, IDLE_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(typ, RecordType::Answer);
        assert!(Answer::decode(&body).unwrap().status.is_ok());
        let started = Instant::now();
        // An empty Data record every 2 s: alive, but no progress.
        loop {
            if e.writer.send(RecordType::Data, b"").await.is_err() {
                break (e.refusal(Duration::from_secs(5)).await, started.elapsed());
            }
            let word = tokio::time::timeout(Duration::from_secs(2), async {
                e.refusal(Duration::from_secs(2)).await
            })
            .await;
            if let Ok(Some(s)) = word {
                break (Some(s), started.elapsed());
            }
            assert!(started.elapsed() < IDLE_TIMEOUT * 3, "never ended");
        }
    });
    eprintln!(
        "a transfer of empty Data records was ended after {:.1} s: {status:?}",
        after.as_secs_f64()
    );
    assert_eq!(status, Some(Status::Timeout));
    // Nothing under the final name (an empty partial may stay for a resume).
    let names = names_in(&p.inbox);
    assert!(names.iter().all(|n| n.ends_with(".lspart")), "{names:?}");
    assert!(l.is_running());
}

#[test]
fn data_sent_before_the_answer_is_a_protocol_error() {
    let p = Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes"]);
    let status = runtime().block_on(async {
        let mut e = Evil::connect(stranger(1), l.port).await;
        let entries = vec![OfferEntry::file("early.bin", 5)];
        let mut body = vec![];
        OfferPart::split(&entries).unwrap()[0]
            .encode(&mut body)
            .unwrap();
        // The Offer and a Data record in one write: the data does not wait.
        let mut both = vec![];
        e.writer
            .sealer
            .seal(RecordType::Offer, &body, &mut both)
            .unwrap();
        e.writer
            .sealer
            .seal(RecordType::Data, b"early", &mut both)
            .unwrap();
        e.writer.inner.write_all(&both).await.unwrap();
        match e.reader.read_record(&mut e.opener, IDLE_TIMEOUT).await {
            Ok((typ, _)) => panic!("the listener answered with record 0x{:02x}", typ as u8),
            Err(localstream_node::Error::Protocol(ProtoError::PeerAlert { status, .. })) => status,
            Err(other) => panic!("{other}"),
        }
    });
    assert_eq!(status, Status::ProtocolViolation);
    assert!(names_in(&p.inbox).is_empty());
    assert!(l.is_running());
}

#[test]
fn a_receiver_that_answers_busy_after_its_handshake_pins_nothing() {
    // Someone at the address answers the handshake with its own key, then an
    // (authenticated) Busy alert instead of an Answer.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    let impostor = std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, mut wr) = stream.into_split();
            let mut reader = FrameReader::new(rd);
            let proven = localstream_node::conn::handshake_until_proven(
                &mut reader,
                &mut wr,
                Handshake::responder(Config::new(attacker_identity())),
                vec![],
                |_| true,
            )
            .await
            .unwrap();
            let session = localstream_node::conn::finish_handshake(&mut wr, proven)
                .await
                .unwrap();
            let mut writer = RecordWriter {
                inner: wr,
                sealer: session.sealer,
            };
            // Wait for the offer, then say busy.
            let _ = reader
                .read_record(&mut { session.opener }, IDLE_TIMEOUT)
                .await;
            writer.alert(Status::Busy, "busy, try again").await;
        });
    });
    let p = Pair::new();
    let f = p.sender.file("out", "x.txt", b"x");
    let out = p.sender.send(port, &[&f]);
    impostor.join().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("busy, try again"), "{err}");
    // Nothing pinned: a later send to the real receiver is a clean first contact.
    let pinned = p.sender.store_path().exists() && {
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p.sender.store_path()).unwrap()).unwrap();
        s["peers"].as_array().is_some_and(|a| !a.is_empty())
    };
    assert!(!pinned, "the impostor was pinned");
}
