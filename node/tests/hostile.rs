//! A hostile (but authenticated) sender, built from the library: it speaks the
//! protocol correctly up to the point where it lies. The listener must refuse,
//! keep nothing under a final name, write nothing outside its directory, and
//! keep serving honest senders.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Node, Role, assert_content, names_in, poll_until, random_bytes, text};
use localstream::conn::{FrameReader, IDLE_TIMEOUT, RecordWriter, handshake};
use localstream_proto::handshake::Config;
use localstream_proto::record::RecordType;
use localstream_proto::transfer::{
    Answer, FileEnd, FinalStatus, OfferEntry, OfferPart, TransferEnd,
};
use localstream_proto::{Error as ProtoError, Handshake, LocalIdentity, Opener, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

struct Evil {
    reader: FrameReader<OwnedReadHalf>,
    writer: RecordWriter<OwnedWriteHalf>,
    opener: Opener,
}

/// One identity for the whole test process: the receiver pins it at first
/// contact, so a fresh key under the same id would be refused (by design).
fn evil_identity() -> Arc<LocalIdentity> {
    static EVIL: std::sync::OnceLock<Arc<LocalIdentity>> = std::sync::OnceLock::new();
    EVIL.get_or_init(|| {
        let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        Arc::new(LocalIdentity::new([0xee; 16], "mallory", None, key).unwrap())
    })
    .clone()
}

impl Evil {
    async fn connect(port: u16) -> Evil {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let mut reader = FrameReader::new(rd);
        let mut hello = vec![];
        let hs = Handshake::initiator(Config::new(evil_identity()), &mut rand::rng(), &mut hello);
        let session = handshake(&mut reader, &mut wr, hs, hello).await.unwrap();
        Evil {
            reader,
            writer: RecordWriter {
                inner: wr,
                sealer: session.sealer,
            },
            opener: session.opener,
        }
    }

    async fn offer(&mut self, entries: &[(&str, u64)]) -> Answer {
        let entries: Vec<_> = entries
            .iter()
            .map(|(p, s)| OfferEntry {
                path: (*p).into(),
                size: *s,
            })
            .collect();
        for part in OfferPart::split(&entries).unwrap() {
            let mut body = vec![];
            part.encode(&mut body).unwrap();
            self.writer.send(RecordType::Offer, &body).await.unwrap();
        }
        let (typ, body) = self
            .reader
            .read_record(&mut self.opener, IDLE_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(typ, RecordType::Answer);
        Answer::decode(&body).unwrap()
    }

    async fn send(&mut self, typ: RecordType, body: &[u8]) {
        self.writer.send(typ, body).await.unwrap();
    }

    async fn file_end(&mut self, index: u32, size: u64, hash: [u8; 32]) {
        let mut body = vec![];
        FileEnd { index, size, hash }.encode(&mut body);
        self.send(RecordType::FileEnd, &body).await;
    }

    async fn transfer_end(&mut self, files: u32, bytes: u64) {
        let mut body = vec![];
        TransferEnd { files, bytes }.encode(&mut body);
        self.send(RecordType::TransferEnd, &body).await;
    }

    /// The listener's next word: a Status record, or an alert (as the error).
    async fn next(&mut self) -> Result<FinalStatus, localstream::Error> {
        let (typ, body) = self
            .reader
            .read_record(&mut self.opener, IDLE_TIMEOUT)
            .await?;
        assert_eq!(typ, RecordType::Status);
        Ok(FinalStatus::decode(&body).unwrap())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An honest transfer through the same listener still works afterwards.
fn honest_transfer_works(listener_port: u16, inbox: &std::path::Path, name: &str) {
    let sender = Node::new(Role::Sender);
    let content = random_bytes(7, 4096);
    let f = sender.file("out", name, &content);
    let out = sender.send(listener_port, &[&f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_content(&inbox.join(name), &content);
}

#[test]
fn traversal_names_are_refused_and_do_not_end_listen_once() {
    let receiver = Node::new(Role::Receiver);
    let root = receiver.dir("root");
    let inbox = root.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut listener = receiver.listen(&inbox, &["--yes", "--once"]);
    let rt = runtime();
    for bad in [
        "../escape.txt",
        "/etc/passwd",
        "a/../../b",
        "C:evil",
        "x\u{1b}[2J",
        "con.txt",
    ] {
        let answer = rt.block_on(async {
            let mut evil = Evil::connect(listener.port).await;
            evil.offer(&[(bad, 3)]).await
        });
        assert_eq!(answer.status, Status::InvalidName, "{bad:?}: {answer:?}");
        assert!(
            answer.message.contains("refused file name"),
            "{}",
            answer.message
        );
    }
    assert_eq!(
        names_in(&root),
        vec!["inbox".to_string()],
        "nothing written beside the inbox"
    );
    assert!(names_in(&inbox).is_empty());
    assert!(
        listener.is_running(),
        "a refused hostile offer must not end --once"
    );
    honest_transfer_works(listener.port, &inbox, "fine.txt");
    assert_eq!(listener.wait_exit(), Some(0));
}

#[test]
fn more_data_than_announced_is_fatal_and_leaves_nothing() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let rt = runtime();
    let err = rt.block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        let answer = evil.offer(&[("a.txt", 10)]).await;
        assert_eq!(answer.status, Status::Ok);
        evil.send(RecordType::Data, &[b'x'; 20]).await;
        evil.next().await.unwrap_err()
    });
    match err {
        localstream::Error::Protocol(ProtoError::PeerAlert { status, .. }) => {
            assert_eq!(status, Status::ProtocolViolation)
        }
        other => panic!("expected a protocol-violation alert, got {other}"),
    }
    assert!(
        poll_until(Duration::from_secs(10), || names_in(&inbox).is_empty()),
        "{:?}",
        names_in(&inbox)
    );
    honest_transfer_works(listener.port, &inbox, "after.txt");
}

#[test]
fn forged_hash_or_size_is_reported_and_the_file_discarded() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let rt = runtime();
    let status = rt.block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        let answer = evil
            .offer(&[("hash.txt", 5), ("short.txt", 5), ("good.txt", 2)])
            .await;
        assert_eq!(answer.status, Status::Ok);
        // hash.txt: right size, wrong hash.
        evil.send(RecordType::Data, b"hello").await;
        evil.file_end(0, 5, [0u8; 32]).await;
        // short.txt: ends early (as when a file shrinks while it is sent).
        evil.send(RecordType::Data, b"hel").await;
        evil.file_end(1, 3, *blake3::hash(b"hel").as_bytes()).await;
        // good.txt: honest.
        evil.send(RecordType::Data, b"ok").await;
        evil.file_end(2, 2, *blake3::hash(b"ok").as_bytes()).await;
        evil.transfer_end(3, 10).await;
        evil.next().await.unwrap()
    });
    assert_eq!(
        status.files,
        vec![Status::HashMismatch, Status::SizeMismatch, Status::Ok]
    );
    assert_eq!(status.status, Status::HashMismatch);
    assert_eq!(names_in(&inbox), vec!["good.txt".to_string()]);
    assert_content(&inbox.join("good.txt"), b"ok");
    drop(listener);
}

#[test]
fn tampered_record_ends_the_connection_without_a_file() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let rt = runtime();
    rt.block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        assert_eq!(evil.offer(&[("t.txt", 4)]).await.status, Status::Ok);
        // Seal a valid record, flip one ciphertext bit, put it on the wire by hand.
        let mut frame = vec![];
        evil.writer
            .sealer
            .seal(RecordType::Data, b"data", &mut frame)
            .unwrap();
        frame[7] ^= 0x10;
        evil.writer.inner.write_all(&frame).await.unwrap();
        let err = evil.next().await.unwrap_err();
        assert!(
            matches!(
                err,
                localstream::Error::Protocol(ProtoError::PeerAlert {
                    status: Status::AuthenticationFailed,
                    ..
                })
            ),
            "{err}"
        );
    });
    // The partial may remain for a later resume, but never the final name.
    assert!(!inbox.join("t.txt").exists());
    honest_transfer_works(listener.port, &inbox, "after.txt");
}
