//! The receiver's transfer state machine on arbitrary records: never panics,
//! reports data only inside an accepted file and within its size, and stays
//! closed after an error or the TransferEnd.
//!
//! Input: one byte of policy (bit 0: grant compression; the rest picks, per
//! entry, skip / whole / a held prefix), then records, each a type byte
//! (modulo the nine record types), a `u16` length and that many body bytes.
//! A DataZstd record "decompresses" to its own body (the machine never
//! looks inside one); a leading 0xff claims more than a record may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_proto::record::MAX_PLAINTEXT;
use localstream_proto::transfer::fsm::{Accepted, CollectingOffer, Event, OfferStep, Receiving};
use localstream_proto::transfer::{FEATURE_ZSTD, FileDecision, OfferEntry};
use localstream_proto::{RecordType, Status};

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

/// Splits the input into records.
fn records(mut data: &[u8]) -> impl Iterator<Item = (RecordType, &[u8])> {
    std::iter::from_fn(move || {
        let (&t, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some((TYPES[usize::from(t) % TYPES.len()], body))
    })
}

/// Valid decisions for `entries`, as the policy byte picks them.
fn decide(policy: u8, entries: &[OfferEntry]) -> Vec<FileDecision> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| match (policy >> (1 + i % 7)) & 3 {
            0 => FileDecision::skip(Status::Declined),
            1 if !e.is_dir() && !e.is_stream() && e.size > 0 => FileDecision {
                status: Status::Ok,
                offset: 1 + (i as u64) % e.size,
                held: [policy; 32],
            },
            _ => FileDecision::whole(),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&policy, data)) = data.split_first() else {
        return;
    };
    let features = if policy & 1 == 1 { FEATURE_ZSTD } else { 0 };
    let mut records = records(data);
    // The offer.
    let mut collecting = CollectingOffer::new();
    let deciding = loop {
        let Some((typ, body)) = records.next() else {
            return;
        };
        match collecting.handle(typ, body) {
            Ok(OfferStep::More(c)) => collecting = c,
            Ok(OfferStep::Complete(d)) => break d,
            Err(_) => return,
        }
    };
    let decisions = decide(policy, deciding.entries());
    let sizes: Vec<Option<u64>> = deciding
        .entries()
        .iter()
        .map(|e| (!e.is_stream()).then_some(e.size))
        .collect();
    let accepted = deciding
        .accept(decisions, features, &mut Vec::new())
        .expect("valid decisions are accepted");
    // The Resume, if one is due.
    let mut receiving: Receiving = match accepted {
        Accepted::Receiving(r) => r,
        Accepted::AwaitResume(a) => {
            let Some((typ, body)) = records.next() else {
                return;
            };
            match a.handle(typ, body) {
                Ok((r, _)) => r,
                Err(_) => return,
            }
        }
    };
    // The data phase.
    let mut closed = false;
    for (typ, body) in records {
        let unpacked = match body.first() {
            Some(0xff) => MAX_PLAINTEXT + 1,
            _ => body.len(),
        };
        let chunk = match receiving.handle(typ, body) {
            Err(_) => {
                closed = true;
                continue;
            }
            Ok(_) if closed => panic!("a record taken after an error or the TransferEnd"),
            Ok(Event::Data(c)) => c,
            Ok(Event::Compressed(u)) => match u.unpacked(unpacked) {
                Ok(c) => c,
                Err(_) => {
                    closed = true;
                    continue;
                }
            },
            Ok(Event::FileEnd(_)) => continue,
            Ok(Event::TransferEnd(done)) => {
                closed = true;
                let mut out = Vec::new();
                done.final_status("", &mut out).expect("a Status body");
                continue;
            }
        };
        let end = chunk.offset + chunk.len as u64;
        if let Some(size) = sizes[chunk.index as usize] {
            assert!(end <= size, "data past the size of file {}", chunk.index);
        }
    }
});
