//! Every record out of its place, each misuse, each lie: refused with its
//! own error, never a panic.

use super::*;
use crate::handshake::messages::Alert;

const DATA: RecordType = RecordType::Data;

fn deciding(entries: &[OfferEntry]) -> Deciding {
    let offering = Offering::new(entries.to_vec()).unwrap();
    let mut collecting = CollectingOffer::new();
    for body in offering.bodies() {
        match collecting.handle(RecordType::Offer, body).unwrap() {
            OfferStep::More(c) => collecting = c,
            OfferStep::Complete(d) => return d,
        }
    }
    panic!("the offer never completed");
}

fn accepted(entries: &[OfferEntry], decisions: Vec<FileDecision>, features: u32) -> Accepted {
    deciding(entries)
        .accept(decisions, features, &mut vec![])
        .unwrap()
}

/// A receiver that accepted every entry whole.
fn receiving(entries: &[OfferEntry], features: u32) -> Receiving {
    let all = vec![FileDecision::whole(); entries.len()];
    match accepted(entries, all, features) {
        Accepted::Receiving(r) => r,
        Accepted::AwaitResume(_) => panic!("no held prefix was offered"),
    }
}

fn resumed(offset: u64) -> FileDecision {
    FileDecision {
        status: Status::Ok,
        offset,
        held: [1; 32],
    }
}

fn file_end(index: u32, size: u64) -> Vec<u8> {
    let mut b = vec![];
    FileEnd {
        index,
        size,
        hash: [0; 32],
    }
    .encode(&mut b);
    b
}

fn transfer_end(files: u32, bytes: u64) -> Vec<u8> {
    let mut b = vec![];
    TransferEnd { files, bytes }.encode(&mut b);
    b
}

fn resume_body(files: &[(u32, u64)]) -> Vec<u8> {
    let mut b = vec![];
    Resume {
        files: files
            .iter()
            .map(|&(index, offset)| ResumeFile { index, offset })
            .collect(),
    }
    .encode(&mut b)
    .unwrap();
    b
}

fn answer_body(status: Status, files: Vec<FileDecision>, features: u32) -> Vec<u8> {
    let mut b = vec![];
    Answer {
        status,
        message: "m".into(),
        features,
        files,
    }
    .encode(&mut b)
    .unwrap();
    b
}

fn status_body(files: Vec<Status>) -> Vec<u8> {
    let mut b = vec![];
    FinalStatus {
        status: Status::Ok,
        message: String::new(),
        files,
    }
    .encode(&mut b)
    .unwrap();
    b
}

fn unexpected(expected: &'static [RecordType], got: RecordType) -> Error {
    Error::UnexpectedRecord { expected, got }
}

fn two_files() -> Vec<OfferEntry> {
    vec![OfferEntry::file("a", 5), OfferEntry::file("b", 3)]
}

#[test]
fn only_offer_records_until_the_offer_is_complete() {
    let e = CollectingOffer::new().handle(DATA, b"x").unwrap_err();
    assert_eq!(e, unexpected(&[RecordType::Offer], DATA));
    let e = CollectingOffer::new()
        .handle(RecordType::Offer, b"junk")
        .unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e:?}");
    // Nothing at all while the receiver decides.
    let e = Deciding::unexpected(RecordType::Offer, b"");
    assert_eq!(e, unexpected(&[], RecordType::Offer));
    assert_eq!(e.status(), Status::ProtocolViolation);
    // A second offer after the first one was complete.
    let body = &Offering::new(two_files()).unwrap().bodies()[0].clone();
    let mut r = receiving(&two_files(), 0);
    let e = r.handle(RecordType::Offer, body).unwrap_err();
    assert_eq!(e, unexpected(DATA_PHASE, RecordType::Offer));
}

#[test]
fn the_collector_counts_what_it_holds() {
    let entries: Vec<OfferEntry> = (0..30_000)
        .map(|i| OfferEntry::file(format!("dir/some-longer-file-name-{i:06}.dat"), 1))
        .collect();
    let offering = Offering::new(entries).unwrap();
    let first = &offering.bodies()[0];
    let OfferStep::More(c) = CollectingOffer::new()
        .handle(RecordType::Offer, first)
        .unwrap()
    else {
        panic!("the offer spans records");
    };
    let part = OfferPart::decode(first).unwrap();
    assert_eq!(c.entries_received(), part.entries.len());
    let paths: usize = part.entries.iter().map(|e| e.path.len()).sum();
    assert_eq!(c.path_bytes(), paths);
    // Debug output counts entries rather than printing them.
    assert!(format!("{c:?} {offering:?}").len() < 200);
    assert_eq!(offering.bodies().len(), 2);
    let OfferStep::Complete(deciding) = c.handle(RecordType::Offer, &offering.bodies()[1]).unwrap()
    else {
        panic!("two records");
    };
    let Accepted::Receiving(r) = deciding
        .accept(vec![FileDecision::whole(); 30_000], 0, &mut vec![])
        .unwrap()
    else {
        panic!("no held prefix");
    };
    assert!(format!("{r:?}").len() < 300, "{r:?}");
}

#[test]
fn records_of_other_phases_are_refused_while_receiving() {
    for typ in [
        RecordType::Offer,
        RecordType::Answer,
        RecordType::Status,
        RecordType::Resume,
    ] {
        let mut r = receiving(&two_files(), 0);
        let e = r.handle(typ, b"").unwrap_err();
        assert_eq!(e, unexpected(DATA_PHASE, typ));
    }
    // An undefined type never gets this far: the record layer refuses it.
    assert_eq!(
        RecordType::from_u8(0x42).unwrap_err(),
        Error::UnknownFrameType(0x42)
    );
    assert_eq!(
        RecordType::from_u8(0x0f).unwrap_err(),
        Error::UnknownFrameType(0x0f)
    );
}

#[test]
fn a_resume_comes_exactly_when_held_prefixes_were_offered() {
    let entries = two_files();
    let held = || accepted(&entries, vec![resumed(2), FileDecision::whole()], 0);
    // Anything else first.
    for typ in [DATA, RecordType::FileEnd, RecordType::TransferEnd] {
        let Accepted::AwaitResume(a) = held() else {
            panic!("a held prefix");
        };
        assert_eq!(
            a.handle(typ, b"").unwrap_err(),
            unexpected(&[RecordType::Resume], typ)
        );
    }
    let check = |body: Vec<u8>| {
        let Accepted::AwaitResume(a) = held() else {
            panic!("a held prefix");
        };
        a.handle(RecordType::Resume, &body)
    };
    assert_eq!(
        check(resume_body(&[])).unwrap_err(),
        Error::ResumeCount {
            expected: 1,
            got: 0
        }
    );
    assert_eq!(
        check(resume_body(&[(0, 2), (1, 0)])).unwrap_err(),
        Error::ResumeCount {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        check(resume_body(&[(1, 2)])).unwrap_err(),
        Error::ResumeIndex {
            expected: 0,
            got: 1
        }
    );
    assert_eq!(
        check(resume_body(&[(0, 1)])).unwrap_err(),
        Error::ResumeOffset {
            index: 0,
            held: 2,
            got: 1
        }
    );
    // Confirmed: the file continues at 2. Refused: it starts over.
    let (mut r, resume) = check(resume_body(&[(0, 2)])).unwrap();
    assert_eq!(resume.files[0].offset, 2);
    assert_eq!((r.current_file(), r.position()), (Some(0), 2));
    assert_eq!(r.resumed_bytes(), 2);
    let Event::Data(c) = r.handle(DATA, b"cde").unwrap() else {
        panic!("data");
    };
    assert_eq!((c.index, c.offset, c.len), (0, 2, 3));
    let (r, _) = check(resume_body(&[(0, 0)])).unwrap();
    assert_eq!((r.position(), r.resumed_bytes()), (0, 0));
    // No held prefix offered: a Resume is out of place.
    let mut r = receiving(&entries, 0);
    let e = r.handle(RecordType::Resume, &resume_body(&[])).unwrap_err();
    assert_eq!(e, unexpected(DATA_PHASE, RecordType::Resume));
}

#[test]
fn data_needs_a_file_and_stays_within_its_size() {
    let mut r = receiving(&two_files(), 0);
    assert!(matches!(r.handle(DATA, b"abc").unwrap(), Event::Data(_)));
    assert_eq!(
        r.handle(DATA, b"def").unwrap_err(),
        Error::DataBeyondSize {
            index: 0,
            size: 5,
            attempted: 6
        }
    );
    // Files end in order; after the last one there is no file for data.
    let mut r = receiving(&two_files(), 0);
    let _ = r.handle(DATA, b"abcde").unwrap();
    assert!(matches!(
        r.handle(DATA, b"").unwrap(),
        Event::Data(Chunk { len: 0, .. })
    ));
    let _ = r.handle(RecordType::FileEnd, &file_end(0, 5)).unwrap();
    let Event::Data(c) = r.handle(DATA, b"xyz").unwrap() else {
        panic!("data");
    };
    assert_eq!((c.index, c.offset), (1, 0));
    let _ = r.handle(RecordType::FileEnd, &file_end(1, 3)).unwrap();
    assert_eq!(r.current_file(), None);
    assert_eq!(r.handle(DATA, b"").unwrap_err(), Error::DataWithoutFile);
    // No file accepted at all: refused entries and directories have no data.
    let entries = [
        OfferEntry::file("a", 5),
        OfferEntry {
            path: "d".into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
        },
    ];
    let Accepted::Receiving(mut r) = accepted(
        &entries,
        vec![FileDecision::skip(Status::Declined), FileDecision::whole()],
        FEATURE_ZSTD,
    ) else {
        panic!("no held prefix");
    };
    assert_eq!(r.handle(DATA, b"a").unwrap_err(), Error::DataWithoutFile);
    // A stream has no bound.
    let s = OfferEntry {
        path: "s".into(),
        size: 0,
        attrs: ATTR_STREAM,
        mtime: None,
    };
    let mut r = receiving(&[s], 0);
    let big = vec![0; MAX_PLAINTEXT];
    for _ in 0..3 {
        assert!(matches!(r.handle(DATA, &big).unwrap(), Event::Data(_)));
    }
    let Event::FileEnd(end) = r
        .handle(RecordType::FileEnd, &file_end(0, 3 * MAX_PLAINTEXT as u64))
        .unwrap()
    else {
        panic!("file end");
    };
    assert_eq!(end.status, Status::Ok);
}

#[test]
fn compressed_data_needs_the_feature_and_its_length() {
    let mut r = receiving(&two_files(), 0);
    assert_eq!(
        r.handle(RecordType::DataZstd, b"z").unwrap_err(),
        Error::CompressionNotAgreed
    );
    let mut r = receiving(&two_files(), FEATURE_ZSTD);
    assert!(r.compression());
    let Event::Compressed(u) = r.handle(RecordType::DataZstd, b"z").unwrap() else {
        panic!("compressed");
    };
    assert_eq!(
        u.unpacked(4).unwrap(),
        Chunk {
            index: 0,
            offset: 0,
            len: 4
        }
    );
    let Event::Compressed(u) = r.handle(RecordType::DataZstd, b"z").unwrap() else {
        panic!("compressed");
    };
    assert_eq!(
        u.unpacked(2).unwrap_err(),
        Error::DataBeyondSize {
            index: 0,
            size: 5,
            attempted: 6
        }
    );
    // The error is final.
    assert_eq!(
        r.handle(DATA, b"a").unwrap_err(),
        unexpected(&[], RecordType::Data)
    );
    let mut r = receiving(&two_files(), FEATURE_ZSTD);
    let Event::Compressed(u) = r.handle(RecordType::DataZstd, b"z").unwrap() else {
        panic!("compressed");
    };
    assert!(matches!(
        u.unpacked(MAX_PLAINTEXT + 1).unwrap_err(),
        Error::RecordTooLarge { .. }
    ));
}

#[test]
fn file_ends_come_for_the_current_file() {
    let mut r = receiving(&two_files(), 0);
    assert_eq!(
        r.handle(RecordType::FileEnd, &file_end(1, 3)).unwrap_err(),
        Error::UnexpectedFileEnd {
            expected: Some(0),
            got: 1
        }
    );
    let mut r = receiving(&two_files(), 0);
    // An empty FileEnd body is malformed, not a panic.
    assert!(matches!(
        r.handle(RecordType::FileEnd, b"").unwrap_err(),
        Error::Malformed(_)
    ));
    let mut r = receiving(&two_files(), 0);
    let _ = r.handle(DATA, b"abcde").unwrap();
    let _ = r.handle(RecordType::FileEnd, &file_end(0, 5)).unwrap();
    let _ = r.handle(DATA, b"abc").unwrap();
    let _ = r.handle(RecordType::FileEnd, &file_end(1, 3)).unwrap();
    assert_eq!(
        r.handle(RecordType::FileEnd, &file_end(1, 3)).unwrap_err(),
        Error::UnexpectedFileEnd {
            expected: None,
            got: 1
        }
    );
}

#[test]
fn a_wrong_size_fails_the_file_not_the_transfer() {
    let mut r = receiving(&two_files(), 0);
    let _ = r.handle(DATA, b"abc").unwrap();
    // Three bytes arrived, the FileEnd says five: 461.
    let Event::FileEnd(end) = r.handle(RecordType::FileEnd, &file_end(0, 5)).unwrap() else {
        panic!("file end");
    };
    assert_eq!(
        (end.status, end.received, end.size),
        (Status::SizeMismatch, 3, 5)
    );
    // What arrived and what the FileEnd says agree, but not the offer: 461.
    let _ = r.handle(DATA, b"ab").unwrap();
    let Event::FileEnd(end) = r.handle(RecordType::FileEnd, &file_end(1, 2)).unwrap() else {
        panic!("file end");
    };
    assert_eq!(end.status, Status::SizeMismatch);
    let Event::TransferEnd(done) = r
        .handle(RecordType::TransferEnd, &transfer_end(2, 5))
        .unwrap()
    else {
        panic!("transfer end");
    };
    assert_eq!(done.statuses(), [Status::SizeMismatch; 2]);
    let status = done.final_status("", &mut vec![]).unwrap();
    assert_eq!(status.status, Status::SizeMismatch);
}

#[test]
fn the_transfer_end_comes_last_and_adds_up() {
    let mut r = receiving(&two_files(), 0);
    assert_eq!(
        r.handle(RecordType::TransferEnd, &transfer_end(0, 0))
            .unwrap_err(),
        Error::FilesMissing { next: 0 }
    );
    // Inside a file.
    let mut r = receiving(&two_files(), 0);
    let _ = r.handle(DATA, b"abcde").unwrap();
    let _ = r.handle(RecordType::FileEnd, &file_end(0, 5)).unwrap();
    let _ = r.handle(DATA, b"a").unwrap();
    assert_eq!(
        r.handle(RecordType::TransferEnd, &transfer_end(1, 6))
            .unwrap_err(),
        Error::FilesMissing { next: 1 }
    );
    let ended = || {
        let mut r = receiving(&two_files(), 0);
        let _ = r.handle(DATA, b"abcde").unwrap();
        let _ = r.handle(RecordType::FileEnd, &file_end(0, 5)).unwrap();
        let _ = r.handle(DATA, b"abc").unwrap();
        let _ = r.handle(RecordType::FileEnd, &file_end(1, 3)).unwrap();
        r
    };
    for (files, bytes) in [(1, 8), (2, 7), (3, 8)] {
        assert_eq!(
            ended()
                .handle(RecordType::TransferEnd, &transfer_end(files, bytes))
                .unwrap_err(),
            Error::TransferEndMismatch {
                announced: TransferEnd { files, bytes },
                received: TransferEnd { files: 2, bytes: 8 }
            }
        );
    }
    let mut r = ended();
    let Event::TransferEnd(done) = r
        .handle(RecordType::TransferEnd, &transfer_end(2, 8))
        .unwrap()
    else {
        panic!("transfer end");
    };
    assert_eq!(done.received(), TransferEnd { files: 2, bytes: 8 });
    // After it, nothing.
    for typ in [DATA, RecordType::TransferEnd, RecordType::Offer] {
        assert_eq!(r.handle(typ, b"").unwrap_err(), unexpected(&[], typ));
    }
}

#[test]
fn alerts_end_every_state() {
    let body = Alert {
        status: Status::InsufficientStorage,
        message: "disk full".into(),
    }
    .encode_body();
    let want = Error::PeerAlert {
        status: Status::InsufficientStorage,
        message: "disk full".into(),
        verified: true,
    };
    let alert = RecordType::Alert;
    assert_eq!(
        CollectingOffer::new().handle(alert, &body).unwrap_err(),
        want
    );
    assert_eq!(Deciding::unexpected(alert, &body), want);
    let Accepted::AwaitResume(a) =
        accepted(&two_files(), vec![resumed(1), FileDecision::whole()], 0)
    else {
        panic!("a held prefix");
    };
    assert_eq!(a.handle(alert, &body).unwrap_err(), want);
    let mut r = receiving(&two_files(), 0);
    assert_eq!(r.handle(alert, &body).unwrap_err(), want);
    // ... even after the end or an error.
    assert_eq!(r.handle(alert, &body).unwrap_err(), want);
    let waiting = Offering::new(two_files()).unwrap().sent();
    assert_eq!(waiting.handle(alert, &body).unwrap_err(), want);
    assert_eq!(Streaming::unexpected(alert, &body), want);
    assert_eq!(ended_sender(0).handle(alert, &body).unwrap_err(), want);
    // An alert that does not decode is malformed.
    let e = receiving(&two_files(), 0)
        .handle(alert, b"\x01")
        .unwrap_err();
    assert!(matches!(e, Error::Malformed(_)), "{e:?}");
}

#[test]
fn receiver_decisions_must_fit_the_offer() {
    let entries = [
        OfferEntry::file("f", 10),
        OfferEntry {
            path: "d".into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
        },
        OfferEntry {
            path: "s".into(),
            size: 0,
            attrs: ATTR_STREAM,
            mtime: None,
        },
    ];
    let whole = FileDecision::whole;
    let try_accept = |decisions| deciding(&entries).accept(decisions, 0, &mut vec![]);
    assert_eq!(
        try_accept(vec![whole()]).unwrap_err(),
        Misuse::DecisionCount {
            entries: 3,
            decisions: 1
        }
        .into()
    );
    let mut skipped_with_offset = FileDecision::skip(Status::Declined);
    skipped_with_offset.offset = 1;
    for (index, decisions) in [
        (0, vec![resumed(11), whole(), whole()]),
        (0, vec![skipped_with_offset, whole(), whole()]),
        (1, vec![whole(), resumed(1), whole()]),
        (2, vec![whole(), whole(), resumed(1)]),
    ] {
        let offset = decisions[index as usize].offset;
        assert_eq!(
            try_accept(decisions).unwrap_err(),
            Misuse::DecisionOffset { index, offset }.into()
        );
    }
    assert!(matches!(
        try_accept(vec![resumed(10), whole(), whole()]).unwrap(),
        Accepted::AwaitResume(_)
    ));
    let e = deciding(&entries)
        .refuse(Status::Ok, "", &mut vec![])
        .unwrap_err();
    assert_eq!(e, Misuse::NotAFailure.into());
    assert_eq!(e.status(), Status::InternalError);
    // Too many held prefixes for one Answer: refused, nothing written.
    let many: Vec<OfferEntry> = (0..=MAX_RESUMED)
        .map(|i| OfferEntry::file(format!("f{i}"), 5))
        .collect();
    let mut out = b"kept".to_vec();
    let e = deciding(&many)
        .accept(vec![resumed(1); many.len()], 0, &mut out)
        .unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { .. }), "{e:?}");
    assert_eq!(out, b"kept");
}

#[test]
fn the_final_status_keeps_the_first_failure_of_an_accepted_entry() {
    let entries = [
        OfferEntry::file("refused", 1),
        OfferEntry::file("a", 1),
        OfferEntry::file("b", 1),
    ];
    let Accepted::Receiving(mut r) = accepted(
        &entries,
        vec![
            FileDecision::skip(Status::InvalidName),
            FileDecision::whole(),
            FileDecision::whole(),
        ],
        0,
    ) else {
        panic!("no held prefix");
    };
    for i in 1..3 {
        let _ = r.handle(DATA, b"x").unwrap();
        let _ = r.handle(RecordType::FileEnd, &file_end(i, 1)).unwrap();
    }
    let Event::TransferEnd(mut done) = r
        .handle(RecordType::TransferEnd, &transfer_end(2, 2))
        .unwrap()
    else {
        panic!("transfer end");
    };
    assert_eq!(
        done.fail(0, Status::WriteFailed).unwrap_err(),
        Misuse::NotAccepted { index: 0 }.into()
    );
    assert_eq!(
        done.fail(9, Status::WriteFailed).unwrap_err(),
        Misuse::NotAccepted { index: 9 }.into()
    );
    assert_eq!(
        done.fail(1, Status::Ok).unwrap_err(),
        Misuse::NotAFailure.into()
    );
    done.fail(2, Status::HashMismatch).unwrap();
    done.fail(2, Status::WriteFailed).unwrap();
    done.fail(1, Status::InsufficientStorage).unwrap();
    let mut body = vec![];
    let status = done.final_status("2 failed", &mut body).unwrap();
    assert_eq!(
        status.files,
        [
            Status::InvalidName,
            Status::InsufficientStorage,
            Status::HashMismatch
        ]
    );
    assert_eq!(status.status, Status::InsufficientStorage);
    assert_eq!(FinalStatus::decode(&body).unwrap(), status);
}

// ---------------------------------------------------------------------------
// The sender.

fn answered(entries: &[OfferEntry], body: &[u8]) -> Result<Answered> {
    Offering::new(entries.to_vec())
        .unwrap()
        .sent()
        .handle(RecordType::Answer, body)
}

fn streaming(entries: &[OfferEntry], features: u32) -> Streaming {
    let all = vec![FileDecision::whole(); entries.len()];
    match answered(entries, &answer_body(Status::Ok, all, features)).unwrap() {
        Answered::Streaming(s) => s,
        other => panic!("{other:?}"),
    }
}

/// A sender whose files (`files` empty ones) are all sent.
fn ended_sender(files: usize) -> AwaitStatus {
    let entries: Vec<OfferEntry> = (0..files.max(1))
        .map(|i| OfferEntry::file(format!("f{i}"), 0))
        .collect();
    let mut s = streaming(&entries, 0);
    loop {
        match s.next(&mut vec![]) {
            Next::File(f) => s = f.end([0; 32], &mut vec![]),
            Next::Ended(w) => return w,
        }
    }
}

#[test]
fn the_sender_takes_only_an_answer_that_covers_the_offer() {
    let waiting = Offering::new(two_files()).unwrap().sent();
    assert_eq!(
        waiting.handle(RecordType::Status, b"").unwrap_err(),
        unexpected(&[RecordType::Answer], RecordType::Status)
    );
    let one = answer_body(Status::Ok, vec![FileDecision::whole()], 0);
    assert_eq!(
        answered(&two_files(), &one).unwrap_err(),
        Error::DecisionCount {
            entries: 2,
            decisions: 1
        }
    );
    // A refusal is read for its status and message only.
    match answered(&two_files(), &answer_body(Status::TooLarge, vec![], 1)).unwrap() {
        Answered::Refused(r) => assert_eq!((r.status, r.message.as_str()), (Status::TooLarge, "m")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        answered(&two_files(), b"junk").unwrap_err(),
        Error::Malformed(_) | Error::TrailingBytes(_)
    ));
    assert_eq!(
        Offering::new(vec![]).unwrap_err(),
        Misuse::EmptyOffer.into()
    );
}

#[test]
fn held_prefixes_the_receiver_cannot_hold_are_refused_without_asking() {
    let entries = [
        OfferEntry::file("fits", 10),
        OfferEntry {
            path: "d".into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
        },
        OfferEntry {
            path: "s".into(),
            size: 0,
            attrs: ATTR_STREAM,
            mtime: None,
        },
        OfferEntry::file("short", 4),
        OfferEntry::file("differs", 9),
    ];
    let decisions = vec![resumed(10), resumed(3), resumed(3), resumed(5), resumed(2)];
    let Answered::Resuming(r) = answered(&entries, &answer_body(Status::Ok, decisions, 0)).unwrap()
    else {
        panic!("held prefixes");
    };
    let checkable: Vec<u32> = r.held().iter().map(|h| h.index).collect();
    assert_eq!(checkable, [0, 4]);
    let mut asked = vec![];
    let mut body = vec![];
    let mut s = r
        .resume(
            |h| {
                asked.push(h.index);
                if h.index == 0 {
                    Prefix::Matches
                } else {
                    Prefix::Differs
                }
            },
            &mut body,
        )
        .unwrap();
    assert_eq!(asked, [0, 4]);
    let resume = Resume::decode(&body).unwrap();
    let offsets: Vec<(u32, u64)> = resume.files.iter().map(|f| (f.index, f.offset)).collect();
    assert_eq!(offsets, [(0, 10), (1, 0), (2, 0), (3, 0), (4, 0)]);
    // Files in offer order from their offsets; the directory is skipped.
    let mut starts = vec![];
    while let Next::File(f) = s.next(&mut vec![]) {
        starts.push((f.index(), f.offset(), f.remaining()));
        s = f.end([0; 32], &mut vec![]);
    }
    assert_eq!(
        starts,
        [
            (0, 10, Some(0)),
            (2, 0, None),
            (3, 0, Some(4)),
            (4, 0, Some(9))
        ]
    );
}

#[test]
fn the_sender_sends_no_more_than_offered_and_compresses_only_when_granted() {
    let entries = [OfferEntry::file("a", 5)];
    let Next::File(mut f) = streaming(&entries, 0).next(&mut vec![]) else {
        panic!("a file");
    };
    assert_eq!(f.entry().path, "a");
    f.data(3).unwrap();
    assert_eq!(
        f.data(3).unwrap_err(),
        Misuse::DataBeyondSize {
            index: 0,
            size: 5,
            attempted: 6
        }
        .into()
    );
    assert_eq!(
        f.data_zstd(1).unwrap_err(),
        Misuse::CompressionNotAgreed.into()
    );
    assert!(matches!(
        f.data(MAX_PLAINTEXT + 1).unwrap_err(),
        Error::RecordTooLarge { .. }
    ));
    assert_eq!((f.position(), f.remaining()), (3, Some(2)));
    let Next::File(mut f) = streaming(&entries, FEATURE_ZSTD).next(&mut vec![]) else {
        panic!("a file");
    };
    f.data_zstd(5).unwrap();
    let mut body = vec![];
    let s = f.end([1; 32], &mut body);
    assert_eq!(FileEnd::decode(&body).unwrap().size, 5);
    assert_eq!(s.sent(), TransferEnd { files: 1, bytes: 5 });
    assert_eq!(s.files_left(), 0);
    // While streaming, the receiver has nothing to say but an Alert.
    assert_eq!(
        Streaming::unexpected(RecordType::Status, b""),
        unexpected(&[], RecordType::Status)
    );
}

#[test]
fn the_sender_takes_only_a_status_with_one_entry_per_entry() {
    assert_eq!(
        ended_sender(2).handle(RecordType::Answer, b"").unwrap_err(),
        unexpected(&[RecordType::Status], RecordType::Answer)
    );
    assert_eq!(
        ended_sender(2)
            .handle(RecordType::Status, &status_body(vec![Status::Ok]))
            .unwrap_err(),
        Error::StatusCount {
            entries: 2,
            statuses: 1
        }
    );
    let outcome = ended_sender(2)
        .handle(RecordType::Status, &status_body(vec![Status::Ok; 2]))
        .unwrap();
    assert!(outcome.is_complete());
    assert_eq!(outcome.sent, TransferEnd { files: 2, bytes: 0 });
}
