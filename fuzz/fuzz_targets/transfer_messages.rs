//! Every transfer message decoder on arbitrary bodies, and the offer
//! collector on a sequence of parts: never panics; a decoded offer part
//! encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_proto::transfer::{
    Answer, FileEnd, FinalStatus, OfferCollector, OfferPart, Resume, TransferEnd,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = Answer::decode(data) {
        let mut again = Vec::new();
        if answer.encode(&mut again).is_ok() {
            assert_eq!(Answer::decode(&again).as_ref(), Ok(&answer), "an answer round-trips");
        }
    }
    let _ = Resume::decode(data);
    let _ = FileEnd::decode(data);
    let _ = TransferEnd::decode(data);
    let _ = FinalStatus::decode(data);
    if let Ok(part) = OfferPart::decode(data) {
        let mut again = Vec::new();
        if part.encode(&mut again).is_ok() {
            assert_eq!(again, data, "an accepted offer part re-encodes to itself");
        }
    }
    // The input cut into parts, fed to a collector.
    let mut collector = OfferCollector::default();
    for chunk in data.split(|&b| b == 0xff) {
        match OfferPart::decode(chunk) {
            Ok(part) => match collector.add(part) {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => {}
            },
            Err(_) => break,
        }
    }
});
