//! The transfer state machines on arbitrary record sequences and on honest
//! transfers tampered with in transit: no panic, no step holding more than
//! its record justifies, and every event they report obeys the rules of
//! `PROTOCOL.md` (checked here by a model of its own, not by the machines'
//! code). An untouched transfer must end verified.

use localstream_proto::transfer::fsm::{
    Accepted, Answered, AwaitResume, Chunk, CollectingOffer, Deciding, Event, FileEnded, Next,
    OfferStep, Offering, Prefix, Receiving,
};
use localstream_proto::transfer::{ATTR_DIR, ATTR_STREAM, FEATURE_ZSTD};

use super::*;

const TYPES: [RecordType; 9] = [
    RecordType::Offer,
    RecordType::Answer,
    RecordType::Data,
    RecordType::FileEnd,
    RecordType::TransferEnd,
    RecordType::Status,
    RecordType::Resume,
    RecordType::DataZstd,
    RecordType::Alert,
];

type Record = (RecordType, Vec<u8>);

/// A small offer: files, directories and streams, with what a stream yields.
fn small_offer() -> impl Strategy<Value = Vec<(OfferEntry, usize)>> {
    let entry = prop_oneof![
        4 => (text(6), 0..300u64).prop_map(|(p, size)| (OfferEntry::file(p, size), 0)),
        1 => text(6).prop_map(|path| (OfferEntry { path, size: 0, attrs: ATTR_DIR, mtime: None }, 0)),
        1 => (text(6), 0..500usize)
            .prop_map(|(path, n)| (OfferEntry { path, size: 0, attrs: ATTR_STREAM, mtime: None }, n)),
    ];
    vec(entry, 1..6)
}

/// The bytes an entry's source yields.
fn content(index: usize, entry: &OfferEntry, stream_len: usize) -> Vec<u8> {
    let len = if entry.is_stream() {
        stream_len
    } else {
        entry.size as usize
    };
    (0..len).map(|i| (i * 7 + index * 13) as u8).collect()
}

fn hash(b: &[u8]) -> [u8; 32] {
    *blake3::hash(b).as_bytes()
}

/// How the receiver decides: per entry (cycling), skip / whole / offer a
/// held prefix (of `1 + x % size` bytes, really held or stale), and
/// whether it grants compression.
#[derive(Debug, Clone)]
struct Policy {
    per_entry: Vec<(u8, u64)>,
    zstd: bool,
}

fn policy() -> impl Strategy<Value = Policy> {
    (vec((any::<u8>(), any::<u64>()), 1..6), any::<bool>())
        .prop_map(|(per_entry, zstd)| Policy { per_entry, zstd })
}

impl Policy {
    /// Valid decisions for `entries`; `contents` (when known) makes some
    /// held prefixes real ones.
    fn decide(&self, entries: &[OfferEntry], contents: Option<&[Vec<u8>]>) -> Vec<FileDecision> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (k, x) = self.per_entry[i % self.per_entry.len()];
                match k % 4 {
                    0 => FileDecision::skip(Status::Declined),
                    1 if !e.is_dir() && !e.is_stream() && e.size > 0 => {
                        let offset = 1 + x % e.size;
                        // A tampered offer may name entries the contents do
                        // not have (or longer ones): then the prefix is fake.
                        let real = contents
                            .and_then(|c| c.get(i))
                            .and_then(|c| c.get(..offset as usize));
                        let held = match real {
                            Some(prefix) if x % 2 == 0 => hash(prefix),
                            _ => [x as u8; 32],
                        };
                        FileDecision {
                            status: Status::Ok,
                            offset,
                            held,
                        }
                    }
                    _ => FileDecision::whole(),
                }
            })
            .collect()
    }

    fn features(&self) -> u32 {
        if self.zstd { FEATURE_ZSTD } else { 0 }
    }
}

/// What the receiver ended with.
#[derive(Debug)]
enum Ended {
    /// It refused a record (the machine's error).
    Failed(Error),
    /// The TransferEnd was handled: one status per entry.
    Done(Vec<Status>),
    /// The records ran out first.
    Waiting,
}

/// The rules, kept by the test: which file data belongs to and where.
struct Model {
    /// (index, start, size: None for a stream), accepted files in offer order.
    files: Vec<(u32, u64, Option<u64>)>,
    next: usize,
    position: u64,
}

impl Model {
    fn new(entries: &[OfferEntry], decisions: &[FileDecision], resume: &[ResumeFile]) -> Self {
        let files: Vec<(u32, u64, Option<u64>)> = entries
            .iter()
            .zip(decisions)
            .enumerate()
            .filter(|(_, (e, d))| d.status.is_ok() && !e.is_dir())
            .map(|(i, (e, _))| {
                let start = resume
                    .iter()
                    .find(|r| r.index == i as u32)
                    .map_or(0, |r| r.offset);
                (i as u32, start, (!e.is_stream()).then_some(e.size))
            })
            .collect();
        let position = files.first().map_or(0, |f| f.1);
        Model {
            files,
            next: 0,
            position,
        }
    }

    fn data(&mut self, c: Chunk) -> Check {
        let Some(&(index, _, size)) = self.files.get(self.next) else {
            return Err(TestCaseError::fail(format!(
                "data with no file left: {c:?}"
            )));
        };
        prop_assert_eq!((c.index, c.offset), (index, self.position), "data in place");
        let end = c.offset + c.len as u64;
        prop_assert!(size.is_none_or(|s| end <= s), "data past the size: {:?}", c);
        self.position = end;
        Ok(())
    }

    fn file_end(&mut self, f: &FileEnded) -> Check {
        let Some(&(index, _, size)) = self.files.get(self.next) else {
            return Err(TestCaseError::fail(format!(
                "FileEnd with no file left: {f:?}"
            )));
        };
        prop_assert_eq!((f.index, f.received), (index, self.position));
        let whole = f.size == self.position && size.is_none_or(|s| s == f.size);
        prop_assert_eq!(f.status.is_ok(), whole, "size check of {:?}", f);
        self.next += 1;
        self.position = self.files.get(self.next).map_or(0, |f| f.1);
        Ok(())
    }
}

/// Feeds `records` to a receiver that decides as `policy` says, checking
/// each event against the model and each step's allocations.
fn receive(
    records: &[Record],
    policy: &Policy,
    contents: Option<&[Vec<u8>]>,
) -> std::result::Result<Ended, TestCaseError> {
    enum State {
        Collecting(CollectingOffer),
        Resume(AwaitResume),
        Receiving(Receiving, Model),
    }
    let mut state = State::Collecting(CollectingOffer::new());
    let mut decided: Option<(Vec<OfferEntry>, Vec<FileDecision>)> = None;
    let mut offer_bytes = 0;
    let mut records = records.iter();
    while let Some((typ, body)) = records.next() {
        let (typ, body) = (*typ, &body[..]);
        state = match state {
            State::Collecting(c) => {
                offer_bytes += body.len();
                match bounded("CollectingOffer::handle", body, || c.handle(typ, body))? {
                    Err(e) => return Ok(Ended::Failed(e)),
                    Ok(OfferStep::More(c)) => State::Collecting(c),
                    Ok(OfferStep::Complete(d)) => {
                        let entries = d.entries().to_vec();
                        let decisions = policy.decide(&entries, contents);
                        let budget_input = vec![0; offer_bytes];
                        let accepted = bounded("Deciding::accept", &budget_input, || {
                            d.accept(decisions.clone(), policy.features(), &mut vec![])
                        })?;
                        let accepted = accepted.map_err(|e| {
                            TestCaseError::fail(format!("valid decisions refused: {e}"))
                        })?;
                        let state = match accepted {
                            Accepted::AwaitResume(a) => State::Resume(a),
                            Accepted::Receiving(r) => {
                                State::Receiving(r, Model::new(&entries, &decisions, &[]))
                            }
                        };
                        decided = Some((entries, decisions));
                        state
                    }
                }
            }
            State::Resume(a) => match bounded("AwaitResume::handle", body, || a.handle(typ, body))?
            {
                Err(e) => return Ok(Ended::Failed(e)),
                Ok((r, resume)) => {
                    let (entries, decisions) = decided.as_ref().expect("decided before");
                    let held: Vec<(u32, u64)> = decisions
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.resumes())
                        .map(|(i, d)| (i as u32, d.offset))
                        .collect();
                    prop_assert_eq!(resume.files.len(), held.len());
                    for (f, (index, offset)) in resume.files.iter().zip(&held) {
                        prop_assert!(f.index == *index && (f.offset == *offset || f.offset == 0));
                    }
                    State::Receiving(r, Model::new(entries, decisions, &resume.files))
                }
            },
            State::Receiving(mut r, mut model) => {
                enum Seen {
                    Data(Chunk),
                    FileEnd(FileEnded),
                    End(Vec<Status>),
                }
                // The test's stand-in for zstd: the body is the bytes; in
                // arbitrary records a leading 0xff claims more than a record
                // may hold.
                let unpacked = match body.first() {
                    Some(0xff) if contents.is_none() => MAX_PLAINTEXT + 1,
                    _ => body.len(),
                };
                let seen = bounded("Receiving::handle", body, || {
                    Ok(match r.handle(typ, body)? {
                        Event::Data(c) => Seen::Data(c),
                        Event::Compressed(u) => Seen::Data(u.unpacked(unpacked)?),
                        Event::FileEnd(f) => Seen::FileEnd(f),
                        Event::TransferEnd(done) => {
                            let statuses = done.statuses().to_vec();
                            done.final_status("", &mut vec![])?;
                            Seen::End(statuses)
                        }
                    })
                })?;
                match seen {
                    Ok(Seen::Data(c)) => model.data(c)?,
                    Ok(Seen::FileEnd(f)) => model.file_end(&f)?,
                    Ok(Seen::End(statuses)) => {
                        prop_assert_eq!(model.next, model.files.len(), "every file ended");
                        return Ok(Ended::Done(statuses));
                    }
                    Err(e) => {
                        // Errors are final.
                        if let Some((typ, body)) = records.next() {
                            prop_assert!(r.handle(*typ, body).is_err(), "a record after {}", e);
                        }
                        return Ok(Ended::Failed(e));
                    }
                }
                State::Receiving(r, model)
            }
        };
    }
    Ok(Ended::Waiting)
}

/// The records an honest sender sends to a receiver deciding as `policy`
/// says, data cut at the `cuts` sizes (cycling), every other record
/// compressed when granted.
fn honest(offer: &[(OfferEntry, usize)], policy: &Policy, cuts: &[usize]) -> Vec<Record> {
    let entries: Vec<OfferEntry> = offer.iter().map(|(e, _)| e.clone()).collect();
    let contents: Vec<Vec<u8>> = offer
        .iter()
        .enumerate()
        .map(|(i, (e, n))| content(i, e, *n))
        .collect();
    let mut records = vec![];
    let offering = Offering::new(entries.clone()).expect("a valid offer");
    for b in offering.bodies() {
        records.push((RecordType::Offer, b.clone()));
    }
    let mut answer = vec![];
    let mut collecting = CollectingOffer::new();
    let deciding = offering
        .bodies()
        .iter()
        .find_map(|b| collecting_step(&mut collecting, b));
    let decisions = policy.decide(&entries, Some(&contents));
    let _ = deciding
        .expect("the offer completes")
        .accept(decisions, policy.features(), &mut answer)
        .expect("valid decisions");
    let mut streaming = match offering.sent().handle(RecordType::Answer, &answer) {
        Ok(Answered::Streaming(s)) => s,
        Ok(Answered::Resuming(r)) => {
            let mut body = vec![];
            let s = r
                .resume(
                    |h| {
                        let ours = &contents[h.index as usize][..h.offset as usize];
                        if hash(ours) == h.hash {
                            Prefix::Matches
                        } else {
                            Prefix::Differs
                        }
                    },
                    &mut body,
                )
                .expect("a Resume");
            records.push((RecordType::Resume, body));
            s
        }
        other => panic!("an accepting answer, not {other:?}"),
    };
    let mut k = 0;
    loop {
        let mut body = vec![];
        match streaming.next(&mut body) {
            Next::Ended(_) => {
                records.push((RecordType::TransferEnd, body));
                return records;
            }
            Next::File(mut f) => {
                let c = &contents[f.index() as usize];
                let mut at = f.offset() as usize;
                while at < c.len() {
                    let n = cuts[k % cuts.len()].min(c.len() - at);
                    k += 1;
                    let typ = if f.compression() && k % 2 == 0 {
                        f.data_zstd(n).expect("within the size");
                        RecordType::DataZstd
                    } else {
                        f.data(n).expect("within the size");
                        RecordType::Data
                    };
                    records.push((typ, c[at..at + n].to_vec()));
                    at += n;
                }
                let whole = hash(c);
                streaming = f.end(whole, &mut body);
                records.push((RecordType::FileEnd, body));
            }
        }
    }
}

fn collecting_step(collecting: &mut CollectingOffer, body: &[u8]) -> Option<Deciding> {
    match std::mem::take(collecting).handle(RecordType::Offer, body) {
        Ok(OfferStep::More(c)) => {
            *collecting = c;
            None
        }
        Ok(OfferStep::Complete(d)) => Some(d),
        Err(e) => panic!("an honest offer refused: {e}"),
    }
}

/// Records with plausible bodies under every type, and garbage.
fn any_record() -> BoxedStrategy<Record> {
    let small_resume = vec((0..6u32, 0..400u64), 0..4).prop_map(|files| Resume {
        files: files
            .into_iter()
            .map(|(index, offset)| ResumeFile { index, offset })
            .collect(),
    });
    let small_end = (0..6u32, 0..400u64, any::<[u8; 32]>())
        .prop_map(|(index, size, hash)| FileEnd { index, size, hash });
    let small_transfer_end =
        (0..6u32, 0..2000u64).prop_map(|(files, bytes)| TransferEnd { files, bytes });
    let typed = |typ: RecordType, s: BoxedStrategy<Vec<u8>>| s.prop_map(move |b| (typ, b));
    prop_oneof![
        3 => (select(TYPES.to_vec()), garbage()),
        1 => (select(TYPES.to_vec()), any_body()),
        1 => typed(RecordType::Offer, encoded(offer_part(), enc_offer)),
        1 => typed(RecordType::Answer, encoded(answer(), enc_answer)),
        1 => typed(RecordType::Resume, encoded(small_resume, enc_resume)),
        4 => (select(vec![RecordType::Data, RecordType::DataZstd]), vec(any::<u8>(), 0..64)),
        2 => typed(RecordType::FileEnd, encoded(small_end, enc_file_end)),
        1 => typed(RecordType::TransferEnd, encoded(small_transfer_end, enc_transfer_end)),
        1 => typed(RecordType::Status, encoded(final_status(), enc_final_status)),
        1 => typed(RecordType::Alert, encoded(alert(), enc_alert)),
    ]
    .boxed()
}

/// What happens to an honest transfer in transit.
#[derive(Debug, Clone)]
enum Tamper {
    Drop(Index),
    Repeat(Index),
    Swap(Index, Index),
    Retype(Index, RecordType),
    Spoil(Index, Vec<Mutation>),
    Insert(Index, Record),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        1 => any::<Index>().prop_map(Tamper::Drop),
        1 => any::<Index>().prop_map(Tamper::Repeat),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Tamper::Swap(i, j)),
        1 => (any::<Index>(), select(TYPES.to_vec())).prop_map(|(i, t)| Tamper::Retype(i, t)),
        2 => (any::<Index>(), vec(mutation(), 1..3)).prop_map(|(i, m)| Tamper::Spoil(i, m)),
        1 => (any::<Index>(), any_record()).prop_map(|(i, r)| Tamper::Insert(i, r)),
    ]
}

fn apply(records: &mut Vec<Record>, tampers: &[Tamper]) {
    for t in tampers {
        let n = records.len();
        if n == 0 {
            return;
        }
        match t {
            Tamper::Drop(i) => {
                records.remove(i.index(n));
            }
            Tamper::Repeat(i) => {
                let r = records[i.index(n)].clone();
                records.insert(i.index(n), r);
            }
            Tamper::Swap(i, j) => records.swap(i.index(n), j.index(n)),
            Tamper::Retype(i, t) => records[i.index(n)].0 = *t,
            Tamper::Spoil(i, m) => {
                let b = &mut records[i.index(n)].1;
                *b = mutate(std::mem::take(b), m);
            }
            Tamper::Insert(i, r) => records.insert(i.index(n + 1), r.clone()),
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// A receiver fed anything: after a valid offer or not, then arbitrary
    /// records of every type with plausible or random bodies.
    #[test]
    fn receiver_on_arbitrary_records(
        offer in small_offer(),
        lead_with_offer in any::<bool>(),
        policy in policy(),
        rest in vec(any_record(), 0..24),
    ) {
        let mut records = vec![];
        if lead_with_offer {
            let entries = offer.iter().map(|(e, _)| e.clone()).collect();
            for b in Offering::new(entries).expect("a valid offer").bodies() {
                records.push((RecordType::Offer, b.clone()));
            }
        }
        records.extend(rest);
        if let Ended::Failed(e) = receive(&records, &policy, None)? {
            // Every error of ours has a failing status for the alert (a
            // peer's alert carries whatever it said), and prints.
            let peers = matches!(e, Error::PeerAlert { .. });
            prop_assert!(peers || !e.status().is_ok(), "{} has status 200", e);
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// An honest transfer, dropped, repeated, swapped, retyped, spoiled or
    /// added to in transit. Untouched, it must end with every accepted
    /// entry verified in size.
    #[test]
    fn receiver_on_tampered_transfers(
        offer in small_offer(),
        policy in policy(),
        cuts in vec(1..120usize, 1..4),
        tampers in vec(tamper(), 0..3),
    ) {
        let mut records = honest(&offer, &policy, &cuts);
        let pristine = tampers.is_empty();
        apply(&mut records, &tampers);
        let entries: Vec<OfferEntry> = offer.iter().map(|(e, _)| e.clone()).collect();
        let contents: Vec<Vec<u8>> = offer
            .iter()
            .enumerate()
            .map(|(i, (e, n))| content(i, e, *n))
            .collect();
        let ended = receive(&records, &policy, Some(&contents))?;
        if pristine {
            let decisions = policy.decide(&entries, Some(&contents));
            let want: Vec<Status> = decisions.iter().map(|d| d.status).collect();
            match ended {
                Ended::Done(statuses) => prop_assert_eq!(statuses, want),
                other => prop_assert!(false, "an honest transfer ended {:?}", other),
            }
        }
    }

    /// A sender fed any Answer (one decision per entry or not, any offsets)
    /// and any Status, streaming with any record sizes.
    #[test]
    fn sender_on_arbitrary_answers_and_statuses(
        (offer, answer) in small_offer().prop_flat_map(|offer| {
            let n = offer.len();
            let decision = (
                prop_oneof![3 => Just(Status::Ok), 1 => status()],
                prop_oneof![Just(0u64), 0..400u64, any::<u64>()],
                any::<[u8; 32]>(),
            )
                .prop_map(|(status, offset, held)| FileDecision { status, offset, held });
            let fitting = (prop_oneof![4 => Just(Status::Ok), 1 => status()], any::<u32>(),
                vec(decision, n..=n))
                .prop_map(|(status, features, files)| Answer {
                    status, message: String::new(), features, files,
                });
            let answer = prop_oneof![
                4 => encoded(fitting, enc_answer).prop_map(|b| (RecordType::Answer, b)),
                1 => any_record(),
            ];
            (Just(offer), answer)
        }),
        verdicts in vec(any::<bool>(), 1..8),
        lens in vec(0..400usize, 1..16),
        status_record in prop_oneof![
            3 => (Just(RecordType::Status), vec(status(), 0..6)).prop_map(|(t, files)| {
                let mut b = vec![];
                FinalStatus { status: Status::Ok, message: String::new(), files }
                    .encode(&mut b)
                    .expect("a small status");
                (t, b)
            }),
            1 => any_record(),
        ],
    ) {
        send(&offer, &answer, &verdicts, &lens, &status_record)?;
    }
}

fn send(
    offer: &[(OfferEntry, usize)],
    (typ, body): &Record,
    verdicts: &[bool],
    lens: &[usize],
    (status_typ, status_body): &Record,
) -> Check {
    let entries: Vec<OfferEntry> = offer.iter().map(|(e, _)| e.clone()).collect();
    let waiting = Offering::new(entries.clone())
        .expect("a valid offer")
        .sent();
    let answered = bounded("AwaitAnswer::handle", body, || waiting.handle(*typ, body))?;
    let Ok(answered) = answered else {
        return Ok(());
    };
    let answer = Answer::decode(body).expect("it was accepted");
    let mut confirmed = vec![];
    let mut streaming = match answered {
        Answered::Refused(r) => {
            prop_assert!(!r.status.is_ok());
            return Ok(());
        }
        Answered::Streaming(s) => {
            prop_assert!(!answer.files.iter().any(FileDecision::resumes));
            s
        }
        Answered::Resuming(r) => {
            let mut k = 0;
            let mut out = vec![];
            let s = bounded("Resuming::resume", body, || {
                r.resume(
                    |_| {
                        k += 1;
                        if verdicts[k % verdicts.len()] {
                            Prefix::Matches
                        } else {
                            Prefix::Differs
                        }
                    },
                    &mut out,
                )
            })?
            .map_err(|e| TestCaseError::fail(format!("no Resume: {e}")))?;
            let resume = Resume::decode(&out).expect("a Resume body");
            let held: Vec<(u32, &FileDecision)> = answer
                .files
                .iter()
                .enumerate()
                .filter(|(_, d)| d.resumes())
                .map(|(i, d)| (i as u32, d))
                .collect();
            prop_assert_eq!(resume.files.len(), held.len());
            for (f, (index, d)) in resume.files.iter().zip(&held) {
                let e = &entries[*index as usize];
                let plausible = !e.is_dir() && !e.is_stream() && d.offset <= e.size;
                prop_assert_eq!(f.index, *index);
                prop_assert!(f.offset == 0 || (plausible && f.offset == d.offset));
            }
            confirmed = resume.files;
            s
        }
    };
    let mut model = Model::new(&entries, &answer.files, &confirmed);
    let mut k = 0;
    let mut bytes = 0u64;
    let waiting = loop {
        let mut out = vec![];
        match streaming.next(&mut out) {
            Next::Ended(w) => {
                prop_assert_eq!(model.next, model.files.len(), "every accepted file sent");
                let end = TransferEnd::decode(&out).expect("a TransferEnd body");
                prop_assert_eq!(
                    end,
                    TransferEnd {
                        files: model.files.len() as u32,
                        bytes
                    }
                );
                break w;
            }
            Next::File(mut f) => {
                prop_assert_eq!((f.index(), f.offset()), {
                    let (i, start, _) = model.files[model.next];
                    (i, start)
                });
                for _ in 0..3 {
                    let len = lens[k % lens.len()];
                    k += 1;
                    let before = f.position();
                    let fits = f.remaining().is_none_or(|r| len as u64 <= r);
                    let sent = if f.compression() && k % 2 == 0 {
                        f.data_zstd(len)
                    } else {
                        f.data(len)
                    };
                    prop_assert_eq!(sent.is_ok(), fits, "data of {} at {}", len, before);
                    if sent.is_ok() {
                        model.data(Chunk {
                            index: f.index(),
                            offset: before,
                            len,
                        })?;
                        bytes += len as u64;
                    } else {
                        prop_assert_eq!(f.position(), before);
                    }
                }
                let size = f.position();
                streaming = f.end([0; 32], &mut out);
                let end = FileEnd::decode(&out).expect("a FileEnd body");
                prop_assert_eq!(end.size, size);
                model.next += 1;
                model.position = model.files.get(model.next).map_or(0, |f| f.1);
            }
        }
    };
    let outcome = bounded("AwaitStatus::handle", status_body, || {
        waiting.handle(*status_typ, status_body)
    })?;
    let fits = *status_typ == RecordType::Status
        && FinalStatus::decode(status_body).is_ok_and(|s| s.files.len() == entries.len());
    prop_assert_eq!(outcome.is_ok(), fits, "{:?}", outcome);
    Ok(())
}
