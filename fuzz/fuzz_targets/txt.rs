//! The TXT record parser on arbitrary key/value strings (split like a TXT
//! record: strings separated by 0x00, key and value by '='): never panics; an
//! accepted record re-encodes to pairs that parse to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_discovery::PeerRecord;

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, Option<&[u8]>)> = data
        .split(|&b| b == 0)
        .map(|s| match s.iter().position(|&b| b == b'=') {
            Some(i) => (String::from_utf8_lossy(&s[..i]).into_owned(), Some(&s[i + 1..])),
            None => (String::from_utf8_lossy(s).into_owned(), None),
        })
        .collect();
    if let Ok(record) = PeerRecord::from_txt(pairs.iter().map(|(k, v)| (k.as_str(), *v))) {
        let txt = record.to_txt();
        let again = PeerRecord::from_txt(txt.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))));
        assert_eq!(again.as_ref(), Ok(&record));
    }
});
