//! A hostile (but authenticated) sender, built from the library: it speaks the
//! protocol correctly up to the point where it lies. The listener must refuse,
//! keep nothing under a final name, write nothing outside its directory, and
//! keep serving honest senders.

#![allow(clippy::unwrap_used)]

use super::common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    Listener, Node, Pair, Role, STEP, assert_content, names_in, poll_until, random_bytes, text,
};
use localstream_node::conn::{FrameReader, IDLE_TIMEOUT, RecordWriter};
use localstream_proto::names::{escape_for_terminal, is_control_or_bidi};
use localstream_proto::record::RecordType;
use localstream_proto::transfer::{
    Answer, FileEnd, FinalStatus, OfferEntry, OfferPart, TransferEnd,
};
use localstream_proto::{Error as ProtoError, LocalIdentity, Opener, Status};
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
        Arc::new(LocalIdentity::new("mallory", None, key).unwrap())
    })
    .clone()
}

impl Evil {
    async fn connect(port: u16) -> Evil {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let common::Authenticated {
            reader,
            writer,
            opener,
        } = common::authenticate(evil_identity(), stream).await;
        Evil {
            reader,
            writer,
            opener,
        }
    }

    /// A session of protocol version 4 (a Manifest, then batches).
    async fn connect_v4(port: u16) -> Evil {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let versions = [localstream_proto::handshake::PROTOCOL_VERSION];
        let common::Authenticated {
            reader,
            writer,
            opener,
        } = common::authenticate_with(evil_identity(), stream, &versions).await;
        Evil {
            reader,
            writer,
            opener,
        }
    }

    async fn manifest(&mut self, entries: u32, folders: u32, bytes: u64) {
        let mut body = vec![];
        localstream_proto::transfer::Manifest {
            entries,
            folders,
            bytes,
        }
        .encode(&mut body);
        self.send(RecordType::Manifest, &body).await;
    }

    /// The listener's alert status, once it gives up on us.
    async fn alert(&mut self) -> Option<Status> {
        match self
            .reader
            .read_record(&mut self.opener, IDLE_TIMEOUT)
            .await
        {
            Err(localstream_node::Error::Protocol(ProtoError::PeerAlert { status, .. })) => {
                Some(status)
            }
            other => panic!("expected an alert, got {other:?}"),
        }
    }

    async fn offer(&mut self, entries: &[(&str, u64)]) -> Answer {
        let entries: Vec<_> = entries
            .iter()
            .map(|(p, s)| OfferEntry::file(*p, *s))
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
    async fn next(&mut self) -> Result<FinalStatus, localstream_node::Error> {
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
        localstream_node::Error::Protocol(ProtoError::PeerAlert { status, .. }) => {
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

/// Offers hash.txt (5 B, its hash forged), short.txt (5 B offered, 3 sent,
/// as when a file shrinks while it is sent) and good.txt (honest), and
/// returns the receiver's Status.
fn send_forged(port: u16) -> FinalStatus {
    runtime().block_on(async {
        let mut evil = Evil::connect(port).await;
        let answer = evil
            .offer(&[("hash.txt", 5), ("short.txt", 5), ("good.txt", 2)])
            .await;
        assert_eq!(answer.status, Status::Ok);
        evil.send(RecordType::Data, b"hello").await;
        evil.file_end(0, 5, [0u8; 32]).await;
        evil.send(RecordType::Data, b"hel").await;
        evil.file_end(1, 3, *blake3::hash(b"hel").as_bytes()).await;
        evil.send(RecordType::Data, b"ok").await;
        evil.file_end(2, 2, *blake3::hash(b"ok").as_bytes()).await;
        evil.transfer_end(3, 10).await;
        evil.next().await.unwrap()
    })
}

/// With `--json`, the listener's `transfer_done` lists each file that did
/// not arrive: its name, status number and, in words, why.
#[test]
fn the_listeners_json_lists_what_did_not_arrive_and_why() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let mut listener = receiver.listen(&inbox, &["--yes", "--json"]);
    let status = send_forged(listener.port);
    assert_eq!(status.status, Status::HashMismatch);
    let line = listener.wait_line(|l| l.starts_with(r#"{"event":"transfer_done""#));
    let done: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(done["ok"], false, "{line}");
    assert_eq!(
        (done["files"].as_u64(), done["offered"].as_u64()),
        (Some(1), Some(3)),
        "{line}"
    );
    assert_eq!(
        done["failed"],
        serde_json::json!([
            {"name": "hash.txt", "status": 460,
             "why": "it failed verification: its content is not what the sender hashed: discarded"},
            {"name": "short.txt", "status": 461,
             "why": "it failed verification: 3 B of the 5 B offered arrived (it changed on the \
                     sender while it was sent?): discarded"},
        ]),
        "{line}"
    );
    assert_eq!(names_in(&inbox), vec!["good.txt".to_string()]);
}

#[test]
fn forged_hash_or_size_is_reported_and_the_file_discarded() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let status = send_forged(listener.port);
    assert_eq!(
        status.files,
        vec![Status::HashMismatch, Status::SizeMismatch, Status::Ok]
    );
    assert_eq!(status.status, Status::HashMismatch);
    assert_eq!(
        status.message, "2 of 3 files failed verification",
        "the Status says what failed"
    );
    assert_eq!(names_in(&inbox), vec!["good.txt".to_string()]);
    assert_content(&inbox.join("good.txt"), b"ok");
    // The listener says, in words, what became of each file and of the
    // transfer; no log line.
    listener.wait_stderr("failed verification and were discarded\n");
    let err = listener.stderr();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("not received ") || l.contains(" failed verification and "))
        .collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(
        lines[..2],
        [
            "not received from mallory: hash.txt: it failed verification: its content is not \
             what the sender hashed: discarded",
            "not received from mallory: short.txt: it failed verification: 3 B of the 5 B \
             offered arrived (it changed on the sender while it was sent?): discarded",
        ],
        "{err}"
    );
    assert!(
        lines[2].starts_with("2 files from mallory [")
            && lines[2].ends_with("] failed verification and were discarded"),
        "{err}"
    );
    assert!(!err.contains("WARN"), "{err}");
    drop(listener);
}

/// The receiver hashes runs of small files side by side, after their
/// FileEnds: each is still checked against its own hash, a forged one among
/// them fails alone, and files that ended are saved while the sender pauses
/// (they do not wait for the next ones).
#[test]
fn small_files_hashed_together_are_each_verified_and_saved_while_the_sender_pauses() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    // 90 files of 65..=1024 bytes: runs of different lengths, and more than
    // one batch of hashing.
    let contents: Vec<Vec<u8>> = (0..90u64)
        .map(|i| random_bytes(i + 100, 65 + (i as usize * 43) % 960))
        .collect();
    let names: Vec<String> = (0..contents.len()).map(|i| format!("f{i:02}")).collect();
    const FORGED: [usize; 2] = [7, 61];
    const PAUSE_AFTER: usize = 30;
    let status = runtime().block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        let entries: Vec<(&str, u64)> = names
            .iter()
            .zip(&contents)
            .map(|(n, c)| (n.as_str(), c.len() as u64))
            .collect();
        let answer = evil.offer(&entries).await;
        assert_eq!(answer.status, Status::Ok);
        for (i, content) in contents.iter().enumerate() {
            if i == PAUSE_AFTER {
                // Every file that ended so far but the forged one gets its
                // name while nothing more comes.
                let saved = poll_until(STEP, || names_in(&inbox).len() == PAUSE_AFTER - 1);
                assert!(
                    saved,
                    "saved while the sender pauses: {:?}",
                    names_in(&inbox)
                );
            }
            evil.send(RecordType::Data, content).await;
            let mut hash = *blake3::hash(content).as_bytes();
            if FORGED.contains(&i) {
                hash[31] ^= 1;
            }
            evil.file_end(i as u32, content.len() as u64, hash).await;
        }
        let bytes = contents.iter().map(|c| c.len() as u64).sum();
        evil.transfer_end(contents.len() as u32, bytes).await;
        evil.next().await.unwrap()
    });
    let expected: Vec<Status> = (0..contents.len())
        .map(|i| {
            if FORGED.contains(&i) {
                Status::HashMismatch
            } else {
                Status::Ok
            }
        })
        .collect();
    assert_eq!(status.files, expected);
    let saved: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| !FORGED.contains(i))
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(names_in(&inbox), saved);
    for (name, content) in names.iter().zip(&contents) {
        if saved.contains(name) {
            assert_content(&inbox.join(name), content);
        }
    }
    honest_transfer_works(listener.port, &inbox, "after.txt");
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
                localstream_node::Error::Protocol(ProtoError::PeerAlert {
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

/// Whether `out` (a listener's stdout and stderr) holds a character that can
/// drive a terminal (ESC, BEL, NUL, C1, bidi controls, U+2028, ...), other
/// than the newlines that end its own lines.
fn raw_terminal_controls(out: &str) -> Vec<char> {
    out.chars()
        .filter(|&c| c != '\n' && is_control_or_bidi(c))
        .collect()
}

/// Everything the listener printed so far: stdout lines read and stderr.
fn listener_output(listener: &Listener) -> String {
    format!("{}\n{}", listener.stdout.join("\n"), listener.stderr())
}

/// The hostile names of issue 6 (and a few more of the same kinds), each with
/// a short label for reports and the reason the refusal must give.
fn hostile_names() -> Vec<(String, String, &'static str)> {
    let dots = r#"path component ".." is not allowed"#;
    let reserved = "is a reserved device name on Windows";
    let trailing = "ends with '.' or a space";
    let named = |name: &str, reason| (escape_for_terminal(name), name.to_owned(), reason);
    vec![
        named("../../x", dots),
        named("a/../../b", dots),
        named("/etc/x", "absolute path (starts with '/')"),
        named("C:\\x", "contains a backslash"),
        named("\\\\srv\\s", "contains a backslash"),
        named("a\0b", "contains control character 0x00"),
        named("CON", reserved),
        named("con.txt", reserved),
        named("NUL", reserved),
        named("COM1", reserved),
        named("LPT1", reserved),
        named("aux/x.txt", reserved),
        named("x.", trailing),
        named("x ", trailing),
        named("   ", trailing),
        (
            "300-byte component".into(),
            "y".repeat(300),
            "is 300 bytes long, the limit is 255",
        ),
        named("", "empty path"),
        named("\x1b[2J", "contains control character 0x1b"),
        named("\x1b]52;c;SGVsbG8=\x07", "contains control character 0x1b"),
        named("\u{9b}2J", "contains character U+009B"),
        named("invoice\u{202e}fdp.exe", "contains character U+202E"),
        named("report.pdf\u{2028}x.exe", "contains character U+2028"),
        named("a\nb", "contains control character 0x0a"),
        named(".", r#"path component "." is not allowed"#),
        named("..", dots),
        named("a//b", "empty path component at position 1"),
        named("a/", "empty path component at position 1"),
        named("notes.txt:hidden", "contains ':'"),
        // A file that could later pass for someone's partial file.
        named("f.0123456789abcdef.lspart", "reserved for partial files"),
        named("a/b.lspart", "reserved for partial files"),
    ]
}

/// The message of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Each hostile name on its own connection to one listener. Every name must be
/// refused with 422 and its reason; nothing may appear outside the inbox (its
/// parent, grandparent and a sibling directory are watched) or inside it; the
/// listener's output must stay free of raw terminal controls; and an honest
/// sender must still be served after each one. Every name is checked even when
/// an earlier one fails, and the failure names each failing name.
#[test]
fn every_hostile_name_is_refused_on_its_own() {
    let receiver = Node::new(Role::Receiver);
    // root/a/inbox, so that `../../x` from the inbox would land in root.
    let root = receiver.dir("jail");
    let inbox = root.join("a").join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("marker"), b"untouched").unwrap();
    let mut listener = receiver.listen(&inbox, &["--yes"]);
    let rt = runtime();
    let mut table = vec![];
    let mut failures = vec![];
    for (i, (label, name, reason)) in hostile_names().into_iter().enumerate() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // What earlier cases left, so that one failure does not taint the next.
            let refused_before = listener.stderr().matches("refused file name").count();
            let inbox_before = names_in(&inbox);
            let answer = rt.block_on(async {
                let mut evil = Evil::connect(listener.port).await;
                evil.offer(&[(name.as_str(), 3)]).await
            });
            table.push(format!(
                "\"{label}\" -> {} \"{}\"",
                answer.status.code(),
                escape_for_terminal(&answer.message)
            ));
            assert_eq!(answer.status, Status::InvalidName, "{answer:?}");
            assert!(
                answer.message.starts_with("refused file name: ")
                    && answer.message.contains(reason),
                "the refusal should say {reason:?}: {:?}",
                answer.message
            );
            assert!(
                raw_terminal_controls(&answer.message).is_empty() && !answer.message.contains('\n'),
                "unescaped refusal {:?}",
                answer.message
            );
            // The listener says why, in its own words.
            if !poll_until(STEP, || {
                listener.stderr().matches("refused file name").count() > refused_before
            }) {
                listener.fail("no \"refused file name\" line on stderr");
            }
            // Nothing anywhere but what the honest senders delivered.
            assert_eq!(
                names_in(&root),
                ["a", "elsewhere"],
                "beside the inbox's parent"
            );
            assert_eq!(names_in(&root.join("a")), ["inbox"], "beside the inbox");
            assert_eq!(names_in(&elsewhere), ["marker"], "in a sibling directory");
            assert_content(&elsewhere.join("marker"), b"untouched");
            assert_eq!(names_in(&inbox), inbox_before, "in the inbox");
            assert!(
                !std::path::Path::new("/etc/x").exists(),
                "/etc/x was created"
            );
            assert!(listener.is_running(), "the listener stopped");
            // Still serving.
            let honest = format!("after-{i:02}.txt");
            honest_transfer_works(listener.port, &inbox, &honest);
            let (head, paths) = listener.wait_received();
            assert!(head.starts_with("received 1 file"), "{head}");
            assert_eq!(paths, [inbox.join(&honest)]);
            let out = listener_output(&listener);
            let raw = raw_terminal_controls(&out);
            assert!(
                raw.is_empty(),
                "raw {raw:?} in the listener's output:\n{out}"
            );
            if name.contains('\n') {
                assert!(!out.contains(&name), "raw newline name in:\n{out}");
            }
        }));
        if let Err(payload) = outcome {
            failures.push(format!("name \"{label}\": {}", panic_text(&*payload)));
        }
    }
    eprintln!(
        "hostile names and the receiver's answers:\n{}",
        table.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {} hostile names were mishandled:\n{}",
        failures.len(),
        hostile_names().len(),
        failures.join("\n")
    );
}

/// One hostile name among good ones refuses the whole offer: not even the
/// good files are created.
#[test]
fn one_hostile_name_refuses_the_whole_offer() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let answer = runtime().block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        evil.offer(&[("good.txt", 3), ("../bad.txt", 3), ("also-good.txt", 3)])
            .await
    });
    assert_eq!(answer.status, Status::InvalidName, "{answer:?}");
    assert!(answer.files.is_empty(), "{answer:?}");
    assert!(names_in(&inbox).is_empty(), "{:?}", names_in(&inbox));
    honest_transfer_works(listener.port, &inbox, "fine.txt");
}

/// Names the policy deliberately accepts although they look odd (bidi marks
/// that mixed-direction names need, leading dots and spaces, non-ASCII) are
/// saved under exactly that name inside the inbox, and the listener shows
/// them escaped: the raw marks never reach its terminal.
#[test]
fn odd_but_valid_names_are_saved_inside_and_shown_escaped() {
    let receiver = Node::new(Role::Receiver);
    let root = receiver.dir("root");
    let inbox = root.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut listener = receiver.listen(&inbox, &["--yes"]);
    let names = [
        "mark\u{200f}.txt",
        "שלום\u{200e}.txt",
        "x\u{61c}y",
        "..hidden",
        " leading space",
        "résumé 日本.txt",
        "sub/dir\u{200f}/f.txt",
    ];
    let status = runtime().block_on(async {
        let mut evil = Evil::connect(listener.port).await;
        let entries: Vec<(&str, u64)> = names.iter().map(|n| (*n, n.len() as u64)).collect();
        let answer = evil.offer(&entries).await;
        assert_eq!(answer.status, Status::Ok, "{answer:?}");
        let mut bytes = 0;
        for (i, n) in names.iter().enumerate() {
            evil.send(RecordType::Data, n.as_bytes()).await;
            evil.file_end(
                i as u32,
                n.len() as u64,
                *blake3::hash(n.as_bytes()).as_bytes(),
            )
            .await;
            bytes += n.len() as u64;
        }
        evil.transfer_end(names.len() as u32, bytes).await;
        evil.next().await.unwrap()
    });
    assert_eq!(status.status, Status::Ok, "{status:?}");
    let (_, shown) = listener.wait_received();
    for n in names {
        assert_content(&inbox.join(n), n.as_bytes());
        let expected = escape_for_terminal(&inbox.join(n).display().to_string());
        assert!(
            shown.iter().any(|p| p.to_str() == Some(expected.as_str())),
            "{n:?} not listed as {expected:?} in {shown:?}"
        );
    }
    assert_eq!(names_in(&root), ["inbox"]);
    let out = listener_output(&listener);
    assert_eq!(raw_terminal_controls(&out), Vec::<char>::new(), "{out}");
}

/// A directory of the destination that is a symlink to somewhere else is never
/// written through, however the offer reaches it: the offer is refused and
/// nothing appears outside.
#[test]
fn symlinked_parents_are_refused_and_nothing_is_written_outside() {
    let receiver = Node::new(Role::Receiver);
    let root = receiver.dir("root");
    let inbox = root.join("inbox");
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(inbox.join("real")).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("marker"), b"untouched").unwrap();
    std::os::unix::fs::symlink(&elsewhere, inbox.join("sub")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, inbox.join("real").join("deeper")).unwrap();
    std::os::unix::fs::symlink("../elsewhere", inbox.join("relative")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("marker"), inbox.join("filelink")).unwrap();
    let listener = receiver.listen(&inbox, &["--yes"]);
    let rt = runtime();
    for (path, reason) in [
        ("sub/f.txt", "symbolic link"),
        ("sub/new/f.txt", "symbolic link"),
        ("real/deeper/f.txt", "symbolic link"),
        ("relative/f.txt", "symbolic link"),
        ("filelink/f.txt", "symbolic link"),
    ] {
        let answer = rt.block_on(async {
            let mut evil = Evil::connect(listener.port).await;
            evil.offer(&[(path, 3)]).await
        });
        assert_eq!(answer.status, Status::WriteFailed, "{path}: {answer:?}");
        assert!(answer.message.contains(reason), "{path}: {answer:?}");
        // The receiver's own paths are none of the sender's business.
        assert!(
            !answer.message.contains(root.to_str().unwrap()),
            "{path}: {answer:?}"
        );
        assert_eq!(names_in(&elsewhere), ["marker"], "{path}");
        assert_content(&elsewhere.join("marker"), b"untouched");
        assert_eq!(names_in(&root), ["elsewhere", "inbox"], "{path}");
        assert_eq!(
            names_in(&inbox),
            ["filelink", "real", "relative", "sub"],
            "{path}"
        );
        assert_eq!(names_in(&inbox.join("real")), ["deeper"], "{path}");
    }
    honest_transfer_works(listener.port, &inbox, "fine.txt");
}

/// Planted partial files (a symlink to a file outside, a dangling symlink to
/// where a new file would appear outside, a hard link to a file outside) and
/// a planted symlink under the final name are never written through: the
/// file arrives intact under a free name, and the outside stays as it was.
#[test]
fn planted_partial_and_final_links_are_not_written_through() {
    let pair = Pair::new();
    let root = pair.inbox.parent().unwrap().join("outside");
    std::fs::create_dir(&root).unwrap();
    let victim = root.join("victim");
    std::fs::write(&victim, b"original").unwrap();
    let hard_victim = pair.inbox.parent().unwrap().join("hard-victim");
    std::fs::write(&hard_victim, b"original too").unwrap();
    let content = random_bytes(11, 300_000);
    let f = pair.sender.file("out", "f.txt", &content);
    let sender_id = uuid::Uuid::parse_str(&pair.sender.id().id)
        .unwrap()
        .into_bytes();
    // The names a receiver may choose for f.txt's partial: the resumable one
    // (keyed by sender, path and size) and the plain ones.
    let keyed = localstream_node::fsutil::resumable::partial_name(
        "f.txt",
        &localstream_node::fsutil::resumable::partial_key(
            &sender_id,
            "f.txt",
            content.len() as u64,
        ),
    );
    let plant = |name: &str, how: &str| {
        let at = pair.inbox.join(name);
        match how {
            "symlink" => std::os::unix::fs::symlink(&victim, &at).unwrap(),
            "dangling" => std::os::unix::fs::symlink(root.join("created"), &at).unwrap(),
            "hardlink" => std::fs::hard_link(&hard_victim, &at).unwrap(),
            _ => unreachable!(),
        }
    };
    plant(&keyed, "symlink");
    plant("f.txt.lspart", "dangling");
    plant("f.txt.1.lspart", "hardlink");
    plant("f.txt", "symlink");
    let before = names_in(&pair.inbox);
    let mut listener = pair.receiver.listen(&pair.inbox, &["--yes"]);
    let out = pair.sender.send(listener.port, &[&f]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, paths) = listener.wait_received();
    assert_eq!(paths, [pair.inbox.join("f (1).txt")]);
    assert_content(&pair.inbox.join("f (1).txt"), &content);
    assert_content(&victim, b"original");
    assert_content(&hard_victim, b"original too");
    assert_eq!(names_in(&root), ["victim"], "nothing created outside");
    // The planted entries are left alone (still links, nothing else new).
    let mut expected = before.clone();
    expected.push("f (1).txt".into());
    expected.sort();
    assert_eq!(names_in(&pair.inbox), expected);
    for name in [keyed.as_str(), "f.txt.lspart", "f.txt"] {
        assert!(
            std::fs::symlink_metadata(pair.inbox.join(name))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{name}"
        );
    }
}

/// Version 4: the transfer must open with its Manifest, and no batch may
/// take the transfer past it (the consent was for the Manifest): each is
/// fatal (400), nothing is written, and the listener serves the next sender.
#[test]
fn a_version_4_sender_must_keep_to_its_manifest() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let listener = receiver.listen(&inbox, &["--yes"]);
    let statuses = runtime().block_on(async {
        let mut got = vec![];
        // An Offer where the Manifest must be.
        let mut evil = Evil::connect_v4(listener.port).await;
        let part = &OfferPart::split(&[OfferEntry::file("a.txt", 1)]).unwrap()[0];
        let mut body = vec![];
        part.encode(&mut body).unwrap();
        evil.send(RecordType::Offer, &body).await;
        got.push(evil.alert().await);
        // A first batch with more entries than announced.
        let mut evil = Evil::connect_v4(listener.port).await;
        evil.manifest(1, 0, 2).await;
        let entries = [OfferEntry::file("a.txt", 1), OfferEntry::file("b.txt", 1)];
        let mut body = vec![];
        OfferPart::split(&entries).unwrap()[0]
            .encode(&mut body)
            .unwrap();
        evil.send(RecordType::Offer, &body).await;
        got.push(evil.alert().await);
        // A second batch past the announced bytes, after an honest first one.
        let mut evil = Evil::connect_v4(listener.port).await;
        evil.manifest(2, 0, 2).await;
        let answer = evil.offer(&[("one.txt", 1)]).await;
        assert_eq!(answer.status, Status::Ok, "{answer:?}");
        evil.send(RecordType::Data, b"1").await;
        evil.file_end(0, 1, *blake3::hash(b"1").as_bytes()).await;
        let mut end = vec![];
        TransferEnd { files: 1, bytes: 1 }.encode(&mut end);
        evil.send(RecordType::BatchEnd, &end).await;
        let status = evil.next().await.unwrap();
        assert_eq!(status.files, [Status::Ok]);
        let part = &OfferPart::split(&[OfferEntry::file("two.txt", 5)]).unwrap()[0];
        let mut body = vec![];
        part.encode(&mut body).unwrap();
        evil.send(RecordType::Offer, &body).await;
        got.push(evil.alert().await);
        got
    });
    assert_eq!(
        statuses,
        [Some(Status::ProtocolViolation); 3],
        "offer first, entries past the manifest, bytes past it"
    );
    // Only the honest first batch's file was saved.
    assert_eq!(names_in(&inbox), ["one.txt"]);
    honest_transfer_works(listener.port, &inbox, "fine.txt");
}
