//! The frame decoder: any bytes, any size limit; never panics, and a frame
//! it accepts lies within the input and the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_proto::codec::{Decoded, HEADER_LEN, decode_frame, decode_header};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(limit) * 64;
    if let Ok(Decoded::Ready((frame, used))) = decode_frame(rest, max) {
        assert!(used <= rest.len());
        assert_eq!(used, HEADER_LEN + frame.body.len());
        assert!(frame.body.len() <= max);
    }
    if let Ok(Decoded::Ready(h)) = decode_header(rest, max) {
        assert!(h.len <= max);
    }
});
