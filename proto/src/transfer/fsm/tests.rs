//! The two machines joined in memory: records sealed by a real [`Sealer`]
//! and opened in place by a real [`Opener`] (fixed keys, no handshake),
//! files as byte strings, and every out-of-order record each side can meet.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};

use super::*;
use crate::codec::{Decoded, HEADER_LEN, decode_header};
use crate::error::{Misuse, Result};
use crate::record::{DirectionKeys, MAX_PLAINTEXT, MAX_RECORD_BODY, Opener, Sealer};
use crate::status::Status;
use crate::transfer::{
    ATTR_DIR, ATTR_EXEC, ATTR_STREAM, Answer, FEATURE_ZSTD, FileEnd, FinalStatus, MAX_RESUMED,
    OfferPart, Resume, TransferEnd,
};

mod order;

/// One direction of a connection: sealed frames in flight.
struct Pipe {
    sealer: Sealer,
    opener: Opener,
    frames: VecDeque<Vec<u8>>,
}

impl Pipe {
    fn new(b: u8) -> Self {
        let keys = DirectionKeys {
            key: [b; 32],
            iv: [b ^ 0x5a; 12],
        };
        Pipe {
            sealer: Sealer::new(&keys),
            opener: Opener::new(&keys),
            frames: VecDeque::new(),
        }
    }

    fn send(&mut self, typ: RecordType, body: &[u8]) {
        let mut frame = vec![];
        self.sealer.seal(typ, body, &mut frame).unwrap();
        self.frames.push_back(frame);
    }

    /// The next record, opened in place as a node does.
    fn recv(&mut self) -> (RecordType, Vec<u8>) {
        let mut frame = self.frames.pop_front().expect("a record in flight");
        let Decoded::Ready(header) = decode_header(&frame, MAX_RECORD_BODY).unwrap() else {
            panic!("a whole frame");
        };
        let (typ, pt) = self
            .opener
            .open_in_place(header, &mut frame[HEADER_LEN..])
            .unwrap();
        (typ, pt.to_vec())
    }
}

/// A file (or directory, or stream) on the sender's side.
struct Source {
    entry: OfferEntry,
    /// What the sender reads: for a file, `entry.size` bytes unless it
    /// shrank since it was offered; for a stream, whatever it yields.
    content: Vec<u8>,
}

fn file(path: &str, content: Vec<u8>) -> Source {
    Source {
        entry: OfferEntry::file(path, content.len() as u64),
        content,
    }
}

fn dir(path: &str) -> Source {
    Source {
        entry: OfferEntry {
            path: path.into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
        },
        content: vec![],
    }
}

fn stream(path: &str, content: Vec<u8>) -> Source {
    Source {
        entry: OfferEntry {
            path: path.into(),
            size: 0,
            attrs: ATTR_STREAM,
            mtime: None,
        },
        content,
    }
}

fn bytes(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect()
}

fn hash(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

/// What the receiver's side brings: per entry, the status to refuse it
/// with (`None`: accept) and the prefix it holds from an earlier transfer;
/// the features it grants.
#[derive(Default)]
struct ReceiverSide {
    refuse: HashMap<u32, Status>,
    held: HashMap<u32, Vec<u8>>,
    features: u32,
    /// A held prefix whose bytes change after they were hashed for the
    /// Answer (a torn write): the FileEnd hash must catch it.
    torn: Option<u32>,
}

/// What a whole run produced.
struct Run {
    outcome: Outcome,
    final_status: FinalStatus,
    /// What the receiver saved, per entry index (verified files only).
    saved: HashMap<u32, Vec<u8>>,
    /// The sender's Resume, if one was sent.
    resume: Option<Resume>,
    resumed: u64,
    /// What the sender's Streaming announced before the data: confirmed
    /// prefixes and bytes to send.
    sender_resumed: u64,
    bytes_left: u64,
    /// Records sent each way, by type.
    sent: Vec<RecordType>,
    compressed_records: usize,
}

/// Plaintext bytes per Data record in these tests.
const CHUNK: usize = 1000;

/// Runs a transfer of `sources` to a receiver deciding as `side` says.
/// Every other data record goes as DataZstd when granted; the test's
/// stand-in for zstd is the identity (the machines never look inside).
fn run(sources: &[Source], side: &ReceiverSide) -> Run {
    let mut to_receiver = Pipe::new(1);
    let mut to_sender = Pipe::new(2);
    let mut sent = vec![];
    let mut send = |pipe: &mut Pipe, typ: RecordType, body: &[u8]| {
        sent.push(typ);
        pipe.send(typ, body);
    };

    // Sender: the offer.
    let entries: Vec<OfferEntry> = sources.iter().map(|s| s.entry.clone()).collect();
    let offering = Offering::new(entries).unwrap();
    for body in offering.bodies() {
        send(&mut to_receiver, RecordType::Offer, body);
    }
    let waiting = offering.sent();

    // Receiver: collect, decide, answer.
    let mut collecting = CollectingOffer::new();
    let deciding = loop {
        let (typ, body) = to_receiver.recv();
        match collecting.handle(typ, &body).unwrap() {
            OfferStep::More(c) => collecting = c,
            OfferStep::Complete(d) => break d,
        }
    };
    let decisions = deciding
        .entries()
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let i = i as u32;
            match (side.refuse.get(&i), side.held.get(&i)) {
                (Some(status), _) => FileDecision::skip(*status),
                (None, Some(prefix)) => FileDecision {
                    status: Status::Ok,
                    offset: prefix.len() as u64,
                    held: hash(prefix),
                },
                (None, None) => FileDecision::whole(),
            }
        })
        .collect();
    let mut body = vec![];
    let accepted = deciding
        .accept(decisions, side.features, &mut body)
        .unwrap();
    send(&mut to_sender, RecordType::Answer, &body);
    let mut files: HashMap<u32, Vec<u8>> = side.held.clone();
    if let Some(prefix) = side.torn.and_then(|i| files.get_mut(&i)) {
        prefix[0] ^= 1;
    }

    // Sender: the Answer, the held prefixes.
    let (typ, body) = to_sender.recv();
    let mut streaming = match waiting.handle(typ, &body).unwrap() {
        Answered::Refused(r) => panic!("refused: {r:?}"),
        Answered::Streaming(s) => s,
        Answered::Resuming(r) => {
            let mut body = vec![];
            let s = r
                .resume(
                    |h| {
                        let ours = &sources[h.index as usize].content;
                        match ours.get(..h.offset as usize) {
                            Some(prefix) if hash(prefix) == h.hash => Prefix::Matches,
                            _ => Prefix::Differs,
                        }
                    },
                    &mut body,
                )
                .unwrap();
            send(&mut to_receiver, RecordType::Resume, &body);
            s
        }
    };

    let (sender_resumed, bytes_left) = (streaming.resumed_bytes(), streaming.bytes_left());

    // Receiver: the Resume, if due.
    let (mut receiving, resume) = match accepted {
        Accepted::Receiving(r) => (r, None),
        Accepted::AwaitResume(a) => {
            let (typ, body) = to_receiver.recv();
            let (r, resume) = a.handle(typ, &body).unwrap();
            for f in resume.files.iter().filter(|f| f.offset == 0) {
                files.remove(&f.index);
            }
            (r, Some(resume))
        }
    };

    // Sender: every accepted file, then the TransferEnd.
    let mut compressed_records = 0;
    let waiting = loop {
        let mut body = vec![];
        match streaming.next(&mut body) {
            Next::Ended(w) => {
                send(&mut to_receiver, RecordType::TransferEnd, &body);
                break w;
            }
            Next::File(mut f) => {
                let content = &sources[f.index() as usize].content;
                let from = (f.offset() as usize).min(content.len());
                for (k, chunk) in content[from..].chunks(CHUNK).enumerate() {
                    if f.compression() && k % 2 == 1 {
                        f.data_zstd(chunk.len()).unwrap();
                        send(&mut to_receiver, RecordType::DataZstd, chunk);
                        compressed_records += 1;
                    } else {
                        f.data(chunk.len()).unwrap();
                        send(&mut to_receiver, RecordType::Data, chunk);
                    }
                }
                let whole = hash(&content[..f.position() as usize]);
                let mut body = vec![];
                streaming = f.end(whole, &mut body);
                send(&mut to_receiver, RecordType::FileEnd, &body);
            }
        }
    };

    // Receiver: the data, then the Status.
    let mut saved = HashMap::new();
    let write = |files: &mut HashMap<u32, Vec<u8>>, c: Chunk, b: &[u8]| {
        let f = files.entry(c.index).or_default();
        assert_eq!(f.len() as u64, c.offset, "bytes arrive in order");
        assert_eq!(c.len, b.len());
        f.extend_from_slice(b);
    };
    let mut failed = vec![];
    let mut done = loop {
        let (typ, body) = to_receiver.recv();
        match receiving.handle(typ, &body).unwrap() {
            Event::Data(c) => write(&mut files, c, &body),
            Event::Compressed(u) => {
                let unpacked = body.clone();
                let c = u.unpacked(unpacked.len()).unwrap();
                write(&mut files, c, &unpacked);
            }
            Event::FileEnd(end) => {
                let got = files.remove(&end.index).unwrap_or_default();
                assert_eq!(got.len() as u64, end.received);
                if !end.status.is_ok() {
                    continue;
                }
                if hash(&got) == end.hash {
                    saved.insert(end.index, got);
                } else {
                    failed.push(end.index);
                }
            }
            Event::TransferEnd(done) => break done,
        }
    };
    for index in failed {
        done.fail(index, Status::HashMismatch).unwrap();
    }
    let resumed = done.resumed_bytes();
    let mut body = vec![];
    let final_status = done.final_status("done", &mut body).unwrap();
    send(&mut to_sender, RecordType::Status, &body);

    // Sender: the verdict.
    let (typ, body) = to_sender.recv();
    let outcome = waiting.handle(typ, &body).unwrap();
    assert!(to_receiver.frames.is_empty() && to_sender.frames.is_empty());
    Run {
        outcome,
        final_status,
        saved,
        resume,
        resumed,
        sender_resumed,
        bytes_left,
        sent,
        compressed_records,
    }
}

#[test]
fn a_whole_transfer_with_every_kind_of_entry() {
    let resumed = bytes(1, 4500);
    let changed = bytes(2, 2500);
    let mut stale = changed[..700].to_vec();
    stale[3] ^= 1;
    let sources = [
        dir("d"),
        file("d/resumed.bin", resumed.clone()),
        file("d/refused.txt", bytes(3, 100)),
        file("d/empty", vec![]),
        file("d/changed.bin", changed.clone()),
        Source {
            entry: OfferEntry {
                path: "d/run.sh".into(),
                size: 21,
                attrs: ATTR_EXEC,
                mtime: None,
            },
            content: b"#!/bin/sh\necho hello\n".to_vec(),
        },
        stream("stdin", bytes(4, 3300)),
        dir("d/empty-dir"),
    ];
    let side = ReceiverSide {
        refuse: HashMap::from([(2, Status::InvalidName)]),
        held: HashMap::from([(1, resumed[..1234].to_vec()), (4, stale)]),
        features: FEATURE_ZSTD,
        torn: None,
    };
    let run = run(&sources, &side);

    let ok = Status::Ok;
    let statuses = [ok, ok, Status::InvalidName, ok, ok, ok, ok, ok];
    assert_eq!(run.outcome.files, statuses);
    assert_eq!(run.final_status.files, statuses);
    // A refused entry does not make the transfer fail...
    assert_eq!(run.outcome.status, Status::Ok);
    // ...but it was not delivered.
    assert!(!run.outcome.is_complete());
    assert_eq!(run.outcome.delivered(), 7);
    for (i, s) in sources.iter().enumerate() {
        let i = i as u32;
        let want = !s.entry.is_dir() && i != 2;
        assert_eq!(run.saved.get(&i), want.then_some(&s.content), "entry {i}");
    }
    // The matching prefix was kept, the stale one dropped.
    let resume = run.resume.unwrap();
    assert_eq!(
        resume.files,
        [
            ResumeFile {
                index: 1,
                offset: 1234
            },
            ResumeFile {
                index: 4,
                offset: 0
            }
        ]
    );
    assert_eq!(run.resumed, 1234);
    assert_eq!(run.sender_resumed, 1234);
    // The stream's size is unknown.
    assert_eq!(run.bytes_left, (4500 - 1234) + 2500 + 21);
    let data: u64 = (4500 - 1234) + 2500 + 21 + 3300;
    assert_eq!(
        run.outcome.sent,
        TransferEnd {
            files: 5,
            bytes: data
        }
    );
    assert!(run.compressed_records > 0);
    // The records in order: the offer, the Answer, the Resume before any data.
    let first_data = run.sent.iter().position(|t| *t == RecordType::Data);
    let resume_at = run.sent.iter().position(|t| *t == RecordType::Resume);
    assert!(resume_at < first_data);
    let ends = run.sent.iter().filter(|t| **t == RecordType::FileEnd);
    assert_eq!(ends.count(), 5);
}

#[test]
fn without_held_prefixes_or_compression_no_resume_and_plain_data() {
    let sources = [file("a", bytes(5, 2048)), file("b", bytes(6, 10))];
    let run = run(&sources, &ReceiverSide::default());
    assert!(run.outcome.is_complete());
    assert!(run.resume.is_none());
    assert_eq!(run.compressed_records, 0);
    assert!(!run.sent.contains(&RecordType::Resume));
    assert_eq!(run.saved[&1], sources[1].content);
}

#[test]
fn a_whole_held_file_gets_only_its_file_end() {
    let content = bytes(7, 300);
    let sources = [file("all-there", content.clone())];
    let side = ReceiverSide {
        held: HashMap::from([(0, content.clone())]),
        ..ReceiverSide::default()
    };
    let run = run(&sources, &side);
    assert!(run.outcome.is_complete());
    assert_eq!(run.saved[&0], content);
    assert_eq!(run.outcome.sent, TransferEnd { files: 1, bytes: 0 });
    assert_eq!((run.sender_resumed, run.bytes_left), (300, 0));
    assert!(!run.sent.contains(&RecordType::Data));
}

#[test]
fn a_file_that_shrank_or_changed_fails_alone() {
    // Offered with 5000 bytes, only 3000 left to read: it ends short (461).
    let mut shrank = file("shrank", bytes(8, 3000));
    shrank.entry.size = 5000;
    let torn = bytes(9, 2000);
    let sources = [
        shrank,
        file("torn", torn.clone()),
        file("fine", bytes(10, 100)),
    ];
    // The held prefix of "torn" changed after the receiver hashed it: the
    // sender confirms it, the FileEnd hash catches it (460).
    let side = ReceiverSide {
        held: HashMap::from([(1, torn[..999].to_vec())]),
        torn: Some(1),
        ..ReceiverSide::default()
    };
    let run = run(&sources, &side);
    assert_eq!(
        run.outcome.files,
        [Status::SizeMismatch, Status::HashMismatch, Status::Ok]
    );
    // The first failing entry's code.
    assert_eq!(run.outcome.status, Status::SizeMismatch);
    assert_eq!(run.resumed, 999);
    assert_eq!(run.saved.keys().collect::<Vec<_>>(), [&2]);
}

#[test]
fn a_directory_only_offer_has_no_data() {
    let run = run(&[dir("a"), dir("a/b")], &ReceiverSide::default());
    assert!(run.outcome.is_complete());
    assert_eq!(run.outcome.sent, TransferEnd { files: 0, bytes: 0 });
    assert_eq!(
        run.sent,
        [
            RecordType::Offer,
            RecordType::Answer,
            RecordType::TransferEnd,
            RecordType::Status
        ]
    );
}

#[test]
fn a_large_offer_spans_records() {
    let sources: Vec<Source> = (0..30_000)
        .map(|i| file(&format!("dir/some-longer-file-name-{i:06}.dat"), vec![]))
        .collect();
    let run = run(&sources, &ReceiverSide::default());
    let offers = run.sent.iter().filter(|t| **t == RecordType::Offer).count();
    assert!(offers > 1);
    assert!(run.outcome.is_complete());
    assert_eq!(run.outcome.sent.files, 30_000);
}

#[test]
fn a_refusal_ends_both_sides() {
    let offering = Offering::new(vec![OfferEntry::file("x", 1)]).unwrap();
    let OfferStep::Complete(deciding) = CollectingOffer::new()
        .handle(RecordType::Offer, &offering.bodies()[0])
        .unwrap()
    else {
        panic!("one record");
    };
    let mut body = vec![];
    deciding
        .refuse(Status::Declined, "no thanks", &mut body)
        .unwrap();
    match offering.sent().handle(RecordType::Answer, &body).unwrap() {
        Answered::Refused(r) => assert_eq!(
            r,
            Refusal {
                status: Status::Declined,
                message: "no thanks".into()
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_machines_speak_the_encoders_bytes() {
    // The wire does not change: each body is what the message encoder gives.
    let entries = vec![OfferEntry::file("a", 3), OfferEntry::file("b", 2)];
    let offering = Offering::new(entries.clone()).unwrap();
    let mut want = vec![];
    OfferPart::split(&entries).unwrap()[0]
        .encode(&mut want)
        .unwrap();
    assert_eq!(offering.bodies(), [want]);
    let OfferStep::Complete(deciding) = CollectingOffer::new()
        .handle(RecordType::Offer, &offering.bodies()[0])
        .unwrap()
    else {
        panic!("one record");
    };
    let decisions = vec![
        FileDecision {
            status: Status::Ok,
            offset: 1,
            held: [7; 32],
        },
        FileDecision::whole(),
    ];
    let mut body = vec![];
    let _ = deciding
        .accept(decisions.clone(), FEATURE_ZSTD, &mut body)
        .unwrap();
    let mut want = vec![];
    Answer {
        status: Status::Ok,
        message: String::new(),
        features: FEATURE_ZSTD,
        files: decisions,
    }
    .encode(&mut want)
    .unwrap();
    assert_eq!(body, want);
    let Answered::Resuming(resuming) = offering.sent().handle(RecordType::Answer, &body).unwrap()
    else {
        panic!("a held prefix");
    };
    let mut body = vec![];
    let streaming = resuming.resume(|_| Prefix::Matches, &mut body).unwrap();
    let mut want = vec![];
    Resume {
        files: vec![ResumeFile {
            index: 0,
            offset: 1,
        }],
    }
    .encode(&mut want)
    .unwrap();
    assert_eq!(body, want);
    let Next::File(mut f) = streaming.next(&mut vec![]) else {
        panic!("a file");
    };
    f.data(2).unwrap();
    let mut body = vec![];
    let _ = f.end([3; 32], &mut body);
    let mut want = vec![];
    FileEnd {
        index: 0,
        size: 3,
        hash: [3; 32],
    }
    .encode(&mut want);
    assert_eq!(body, want);
}

/// One batch of a version 4 transfer through both machines, in memory:
/// `files` (path, content). Returns whether the receiver's Done said more,
/// the bytes it got per file, and the sender's outcome of the batch.
fn one_batch(
    files: &[(&str, &[u8])],
    more: bool,
    sender_batches: &mut Batches,
    receiver_batches: &mut Batches,
) -> (bool, Vec<Vec<u8>>, Outcome) {
    let (mut to_r, mut to_s) = (Pipe::new(1), Pipe::new(2));
    let entries: Vec<OfferEntry> = files
        .iter()
        .map(|(p, c)| OfferEntry::file(*p, c.len() as u64))
        .collect();
    sender_batches.admit(&entries).unwrap();
    let offering = Offering::batch(entries, more).unwrap();
    for body in offering.bodies() {
        to_r.send(RecordType::Offer, body);
    }
    let (typ, body) = to_r.recv();
    let OfferStep::Complete(deciding) = CollectingOffer::batch().handle(typ, &body).unwrap() else {
        panic!("one record");
    };
    receiver_batches.admit(deciding.entries()).unwrap();
    let mut answer = vec![];
    let Accepted::Receiving(mut receiving) = deciding
        .accept(vec![FileDecision::whole(); files.len()], 0, &mut answer)
        .unwrap()
    else {
        panic!("no held prefix");
    };
    to_s.send(RecordType::Answer, &answer);
    let (typ, body) = to_s.recv();
    let Answered::Streaming(mut streaming) = offering.sent().handle(typ, &body).unwrap() else {
        panic!("streaming");
    };
    let waiting = loop {
        let mut body = vec![];
        match streaming.next(&mut body) {
            Next::File(mut file) => {
                let content = files[file.index() as usize].1;
                file.data(content.len()).unwrap();
                to_r.send(RecordType::Data, content);
                let mut end = vec![];
                streaming = file.end(*blake3::hash(content).as_bytes(), &mut end);
                to_r.send(RecordType::FileEnd, &end);
            }
            Next::Ended(waiting) => {
                assert_eq!(
                    waiting.end_record(),
                    if more {
                        RecordType::BatchEnd
                    } else {
                        RecordType::TransferEnd
                    }
                );
                to_r.send(waiting.end_record(), &body);
                break waiting;
            }
        }
    };
    let mut got = vec![Vec::new(); files.len()];
    let done = loop {
        let (typ, body) = to_r.recv();
        match receiving.handle(typ, &body).unwrap() {
            Event::Data(chunk) => got[chunk.index as usize].extend_from_slice(&body),
            Event::FileEnd(end) => assert_eq!(end.status, Status::Ok),
            Event::TransferEnd(done) => break done,
            Event::Compressed(_) => panic!("not granted"),
        }
    };
    let said_more = done.more();
    let mut status = vec![];
    done.final_status("", &mut status).unwrap();
    to_s.send(RecordType::Status, &status);
    let (typ, body) = to_s.recv();
    (said_more, got, waiting.handle(typ, &body).unwrap())
}

#[test]
fn a_transfer_in_two_batches_under_one_manifest() {
    let manifest = Manifest {
        entries: 3,
        folders: 0,
        bytes: 9,
    };
    let mut body = vec![];
    manifest.encode(&mut body);
    assert_eq!(body.len(), Manifest::LEN);
    assert_eq!(Manifest::decode(&body).unwrap(), manifest);
    let (mut ours, mut theirs) = (Batches::new(manifest), Batches::new(manifest));
    let first: &[(&str, &[u8])] = &[("a.txt", b"abcd"), ("b.txt", b"ef")];
    let (more, got, outcome) = one_batch(first, true, &mut ours, &mut theirs);
    assert!(more);
    assert_eq!(got, [b"abcd".to_vec(), b"ef".to_vec()]);
    assert_eq!(outcome.files, [Status::Ok, Status::Ok]);
    assert_eq!(outcome.sent, TransferEnd { files: 2, bytes: 6 });
    // The second batch's indexes start at 0 again; it is the last one.
    let (more, got, outcome) = one_batch(&[("c.txt", b"ghi")], false, &mut ours, &mut theirs);
    assert!(!more);
    assert_eq!(got, [b"ghi".to_vec()]);
    assert!(outcome.is_complete());
    assert_eq!(
        (theirs.count(), theirs.entries(), theirs.bytes()),
        (2, 3, 9)
    );
    // Nothing more fits.
    assert!(!ours.fits(1, 0, 0));
}

#[test]
fn a_batch_end_outside_batches_is_unexpected() {
    let offering = Offering::new(vec![OfferEntry::file("a", 1)]).unwrap();
    let OfferStep::Complete(deciding) = CollectingOffer::new()
        .handle(RecordType::Offer, &offering.bodies()[0])
        .unwrap()
    else {
        panic!("one record");
    };
    let mut answer = vec![];
    let Accepted::Receiving(mut receiving) = deciding
        .accept(vec![FileDecision::whole()], 0, &mut answer)
        .unwrap()
    else {
        panic!("no held prefix");
    };
    let _ = receiving.handle(RecordType::Data, b"x").unwrap();
    let mut end = vec![];
    FileEnd {
        index: 0,
        size: 1,
        hash: *blake3::hash(b"x").as_bytes(),
    }
    .encode(&mut end);
    let _ = receiving.handle(RecordType::FileEnd, &end).unwrap();
    let mut body = vec![];
    TransferEnd { files: 1, bytes: 1 }.encode(&mut body);
    let err = receiving.handle(RecordType::BatchEnd, &body).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnexpectedRecord {
                got: RecordType::BatchEnd,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn batches_past_the_manifest_are_refused_and_count_nothing() {
    let manifest = Manifest {
        entries: 3,
        folders: 1,
        bytes: 10,
    };
    let mut batches = Batches::new(manifest);
    batches
        .admit(&[OfferEntry::file("a", 4), OfferEntry::file("b", 4)])
        .unwrap();
    let too = |what: &'static str| move |e: Error| matches!(e, Error::BeyondManifest { what: w, .. } if w == what);
    let more_entries = vec![OfferEntry::file("c", 0), OfferEntry::file("d", 0)];
    assert!(too("entries")(batches.admit(&more_entries).unwrap_err()));
    assert!(too("bytes")(
        batches.admit(&[OfferEntry::file("c", 3)]).unwrap_err()
    ));
    let dir = OfferEntry {
        path: "d".into(),
        size: 0,
        attrs: ATTR_DIR,
        mtime: None,
    };
    let two_dirs = [
        dir.clone(),
        OfferEntry {
            path: "e".into(),
            ..dir.clone()
        },
    ];
    let mut fresh = Batches::new(Manifest {
        entries: 9,
        folders: 1,
        bytes: 0,
    });
    assert!(too("folders")(fresh.admit(&two_dirs).unwrap_err()));
    // Nothing was counted by the refusals.
    assert_eq!(
        (batches.count(), batches.entries(), batches.bytes()),
        (1, 2, 8)
    );
    batches.admit(&[OfferEntry::file("c", 2)]).unwrap();
    assert_eq!((batches.entries(), batches.bytes()), (3, 10));
}

#[test]
fn a_manifest_must_announce_something_consistent() {
    let encode = |entries: u32, folders: u32, bytes: u64| {
        let mut b = vec![];
        Manifest {
            entries,
            folders,
            bytes,
        }
        .encode(&mut b);
        b
    };
    assert!(Manifest::decode(&encode(0, 0, 0)).is_err());
    assert!(Manifest::decode(&encode(2, 3, 0)).is_err());
    let good = encode(2, 2, 0);
    assert!(Manifest::decode(&good).is_ok());
    assert!(Manifest::decode(&good[..15]).is_err());
    let mut long = good.clone();
    long.push(0);
    assert!(Manifest::decode(&long).is_err());
}
