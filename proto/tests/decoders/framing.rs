//! The frame header and frame decoders, driven as an I/O loop drives them.

use super::*;

fn frame_stream() -> BoxedStrategy<Vec<u8>> {
    let frame = (
        any::<u8>(),
        prop_oneof![4 => vec(any::<u8>(), 0..48), 1 => vec(any::<u8>(), 0..3000)],
    );
    vec(frame, 1..4)
        .prop_map(|frames| {
            let mut out = vec![];
            for (typ, body) in frames {
                encode_frame(typ, &body, &mut out);
            }
            out
        })
        .boxed()
}

fn frame_limit() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(MAX_HANDSHAKE_BODY),
        Just(MAX_RECORD_BODY),
        0..4000usize,
        Just(usize::MAX),
    ]
}

/// Takes frames off the front of `stream` as an I/O loop does, until the
/// decoder needs more bytes or refuses, checking the header and frame
/// decoders agree and honour `max`. Returns the frames taken and what is left.
fn take_frames(stream: &[u8], max: usize) -> std::result::Result<(usize, usize), TestCaseError> {
    let mut rest = stream;
    let mut frames = 0;
    loop {
        let n = rest.len();
        let header = bounded("decode_header", rest, || decode_header(rest, max))?;
        let frame = bounded("decode_frame", rest, || decode_frame(rest, max))?;
        match (header, frame) {
            (Ok(Decoded::Ready(h)), Ok(Decoded::Ready((f, used)))) => {
                prop_assert!(h.len <= max);
                prop_assert_eq!((h.typ, h.len), (f.typ, f.body.len()));
                prop_assert_eq!(used, HEADER_LEN + h.len);
                prop_assert_eq!(f.raw, &rest[..used]);
                prop_assert_eq!(&f.raw[HEADER_LEN..], f.body);
                prop_assert_eq!(&h.to_bytes()[..], &f.raw[..HEADER_LEN]);
                // One byte short of the frame is "one more byte, please".
                prop_assert_eq!(
                    decode_frame(&rest[..used - 1], max),
                    Ok(Decoded::NeedMore(1))
                );
                rest = &rest[used..];
                frames += 1;
            }
            (Ok(Decoded::Ready(h)), Ok(Decoded::NeedMore(more))) => {
                // An incomplete body: what is asked for completes it, no more.
                prop_assert!(h.len <= max);
                prop_assert_eq!(n + more, HEADER_LEN + h.len);
                break;
            }
            (Ok(Decoded::NeedMore(more)), Ok(Decoded::NeedMore(more_too))) => {
                prop_assert!(n < HEADER_LEN);
                prop_assert_eq!((more, more_too), (HEADER_LEN - n, HEADER_LEN - n));
                break;
            }
            (Err(e), Err(e_too)) => {
                let too_large =
                    matches!(e, Error::FrameTooLarge { len, max: m } if len > max && m == max);
                prop_assert!(too_large, "{:?}", e);
                prop_assert_eq!(e, e_too);
                break;
            }
            (h, f) => prop_assert!(false, "header and frame decoders disagree: {h:?} / {f:?}"),
        }
    }
    Ok((frames, rest.len()))
}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn frame_decoder(input in input(frame_stream(), no_invalid()), max in frame_limit()) {
        let (frames, left) = take_frames(&input.bytes, max)?;
        if input.expect == Expect::Accept && max >= MAX_HANDSHAKE_BODY {
            prop_assert!(frames >= 1 && left == 0, "{} frames, {} bytes left", frames, left);
        }
    }
}

proptest! {
    #![proptest_config(heavy_config(64))]

    #[test]
    fn frame_decoder_sweep(valid in frame_stream(), max in frame_limit()) {
        sweep(&valid, |b| take_frames(b, max).map(|_| ()))?;
    }
}
