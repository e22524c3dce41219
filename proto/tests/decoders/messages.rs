//! Handshake and transfer message bodies: valid messages, encodings just past
//! their limits, and for each decoder a random test and a sweep.

use super::*;

// ---------------------------------------------------------------------------
// Valid messages, and encodings just past their limits.

pub(crate) fn text(max_chars: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..max_chars).prop_map(String::from_iter)
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(mut s: String, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Short text mostly, sometimes text right at `max` bytes.
pub(crate) fn message(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => text(12),
        1 => (max - 2..=max).prop_map(|n| "m".repeat(n)),
        1 => text(300),
    ]
    .prop_map(move |s| cut(s, max))
}

/// Text of `min` to `min + 40` bytes, for fields that allow less.
pub(crate) fn long_text(min: usize) -> impl Strategy<Value = Vec<u8>> {
    (min..min + 40).prop_map(|n| ("é".repeat(n / 2) + &"e".repeat(n % 2)).into_bytes())
}

/// Bytes that are not UTF-8 where text is expected.
pub(crate) fn not_utf8() -> impl Strategy<Value = Vec<u8>> {
    (
        text(8),
        select(vec![vec![0xff], vec![0xc3], vec![0xed, 0xa0, 0x80]]),
        text(8),
    )
        .prop_map(|(a, bad, b)| [a.as_bytes(), &bad, b.as_bytes()].concat())
}

pub(crate) fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        select(Status::ALL.to_vec()),
        any::<u16>().prop_map(Status::from_code),
    ]
}

/// The body of the one frame `encode` appends.
pub(crate) fn frame_body(encode: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<Vec<u8>> {
    let mut out = vec![];
    encode(&mut out)?;
    match decode_frame(&out, usize::MAX)? {
        Decoded::Ready((f, used)) if used == out.len() => Ok(f.body.to_vec()),
        _ => Err(Error::Malformed("an encoder wrote a bad frame")),
    }
}

pub(crate) fn body(encode: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<Vec<u8>> {
    let mut out = vec![];
    encode(&mut out)?;
    Ok(out)
}

pub(crate) fn ok(encode: impl FnOnce(&mut Vec<u8>)) -> impl FnOnce(&mut Vec<u8>) -> Result<()> {
    move |out| {
        encode(out);
        Ok(())
    }
}

/// A strategy of valid encodings.
pub(crate) fn encoded<T: Debug + 'static>(
    s: impl Strategy<Value = T> + 'static,
    enc: fn(&T) -> Result<Vec<u8>>,
) -> BoxedStrategy<Vec<u8>> {
    s.prop_map(move |m| enc(&m).expect("generated messages are within limits"))
        .boxed()
}

pub(crate) fn client_hello() -> impl Strategy<Value = ClientHello> {
    let list = prop_oneof![
        4 => vec(any::<u16>(), 1..4),
        1 => vec(any::<u16>(), 1..=MAX_LIST),
    ];
    (list.clone(), list, any::<[u8; 32]>()).prop_map(|(versions, suites, commitment)| ClientHello {
        versions,
        suites,
        commitment,
    })
}
pub(crate) fn enc_client_hello(m: &ClientHello) -> Result<Vec<u8>> {
    frame_body(ok(|o| m.encode(o)))
}
/// Bad magic, or a list that is empty or longer than `MAX_LIST`.
pub(crate) fn bad_client_hello() -> BoxedStrategy<Vec<u8>> {
    let magic = any::<[u8; 4]>().prop_filter("not the magic", |m| *m != MAGIC);
    let bad_len = prop_oneof![Just(0usize), MAX_LIST + 1..=255];
    (magic, bad_len, 0..3usize, any::<[u8; 32]>())
        .prop_map(|(magic, bad_len, which, commitment)| {
            // 0: bad magic; 1: bad versions; 2: bad suites.
            let mut b = if which == 0 { magic } else { MAGIC }.to_vec();
            for list in 1..=2 {
                let n = if which == list { bad_len } else { 1 };
                b.push(n as u8);
                for v in 0..n {
                    b.put_u16(v as u16);
                }
            }
            b.extend_from_slice(&commitment);
            b
        })
        .boxed()
}

pub(crate) fn server_hello() -> impl Strategy<Value = ServerHello> {
    (any::<u16>(), any::<u16>(), any::<[u8; 32]>()).prop_map(|(version, suite, ephemeral)| {
        ServerHello {
            version,
            suite,
            ephemeral,
        }
    })
}
pub(crate) fn enc_server_hello(m: &ServerHello) -> Result<Vec<u8>> {
    frame_body(ok(|o| m.encode(o)))
}

pub(crate) fn key_reveal() -> impl Strategy<Value = KeyReveal> {
    any::<[u8; 32]>().prop_map(|ephemeral| KeyReveal { ephemeral })
}
pub(crate) fn enc_key_reveal(m: &KeyReveal) -> Result<Vec<u8>> {
    frame_body(ok(|o| m.encode(o)))
}

pub(crate) fn identity_msg() -> impl Strategy<Value = IdentityMsg> {
    let der = prop_oneof![
        6 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..600),
        1 => vec(any::<u8>(), MAX_PUBLIC_KEY_DER - 2..=MAX_PUBLIC_KEY_DER),
    ];
    (
        any::<[u8; 16]>(),
        message(MAX_NAME_BYTES),
        any::<Option<[u8; 6]>>(),
        der,
    )
        .prop_map(|(node_id, name, mac, public_key_der)| IdentityMsg {
            node_id,
            name,
            mac,
            public_key_der,
        })
}
pub(crate) fn enc_identity(m: &IdentityMsg) -> Result<Vec<u8>> {
    frame_body(|o| m.encode(o))
}
/// A name that is not UTF-8, a MAC that is not 0 or 6 bytes, or a key longer
/// than `MAX_PUBLIC_KEY_DER`.
pub(crate) fn bad_identity() -> BoxedStrategy<Vec<u8>> {
    let name = prop_oneof![text(8).prop_map(String::into_bytes), not_utf8()];
    let mac = prop_oneof![
        Just(vec![]),
        Just(vec![7; 6]),
        vec(any::<u8>(), 1..=5),
        vec(any::<u8>(), 7..12)
    ];
    let der = prop_oneof![
        vec(any::<u8>(), 0..8),
        (MAX_PUBLIC_KEY_DER + 1..MAX_PUBLIC_KEY_DER + 40).prop_map(|n| vec![0x30; n]),
    ];
    (any::<[u8; 16]>(), name, mac, der)
        .prop_filter("at least one field is bad", |(_, name, mac, der)| {
            std::str::from_utf8(name).is_err()
                || ![0, 6].contains(&mac.len())
                || der.len() > MAX_PUBLIC_KEY_DER
        })
        .prop_map(|(node_id, name, mac, der)| {
            let mut b = node_id.to_vec();
            for field in [&name, &mac] {
                b.push(field.len() as u8);
                b.extend_from_slice(field);
            }
            b.put_u16(der.len() as u16);
            b.extend_from_slice(&der);
            b
        })
        .boxed()
}

pub(crate) fn signature() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=64),
        1 => vec(any::<u8>(), MAX_SIGNATURE - 2..=MAX_SIGNATURE),
    ]
}
#[allow(clippy::ptr_arg)] // the encoder of a `Vec<u8>` message
pub(crate) fn enc_verify(sig: &Vec<u8>) -> Result<Vec<u8>> {
    frame_body(|o| encode_verify(sig, o))
}
pub(crate) fn bad_verify() -> BoxedStrategy<Vec<u8>> {
    (MAX_SIGNATURE + 1..MAX_SIGNATURE + 40)
        .prop_map(|n| {
            let mut b = vec![];
            b.put_u16(n as u16);
            b.resize(2 + n, 0x5a);
            b
        })
        .boxed()
}

pub(crate) fn enc_finished(mac: &[u8; 32]) -> Result<Vec<u8>> {
    frame_body(ok(|o| encode_finished(mac, o)))
}

pub(crate) fn alert() -> impl Strategy<Value = Alert> {
    (status(), message(MAX_ALERT_MESSAGE)).prop_map(|(status, message)| Alert { status, message })
}
pub(crate) fn enc_alert(m: &Alert) -> Result<Vec<u8>> {
    frame_body(ok(|o| m.encode(o)))
}
/// A status and a message longer than its limit, or not UTF-8.
pub(crate) fn status_and_bad_message(max: usize) -> BoxedStrategy<Vec<u8>> {
    (any::<u16>(), prop_oneof![long_text(max + 1), not_utf8()])
        .prop_map(|(status, msg)| {
            let mut b = vec![];
            b.put_u16(status);
            b.put_u16(msg.len() as u16);
            b.extend_from_slice(&msg);
            b
        })
        .boxed()
}

pub(crate) fn offer_entry() -> impl Strategy<Value = OfferEntry> {
    // Rarely a path at the limit: it makes the message 4 KiB, slow to sweep.
    let path = prop_oneof![
        40 => text(12),
        1 => (MAX_PATH - 2..=MAX_PATH).prop_map(|n| "p".repeat(n)),
    ];
    (path, any::<u64>()).prop_map(|(path, size)| OfferEntry::file(path, size))
}
pub(crate) fn offer_part() -> impl Strategy<Value = OfferPart> {
    (vec(offer_entry(), 0..6), any::<u64>(), any::<u32>()).prop_map(|(entries, total_bytes, k)| {
        let n = entries.len() as u32;
        OfferPart {
            // Often the most files an offer may announce, so that a
            // count overwritten with a large value is not refused early.
            total_entries: if k % 4 == 0 { MAX_FILES } else { n + k % 3 },
            total_bytes,
            entries,
        }
    })
}
pub(crate) fn enc_offer(m: &OfferPart) -> Result<Vec<u8>> {
    body(|o| m.encode(o))
}
/// More files than allowed or announced, a path longer than `MAX_PATH`, a
/// path that is not UTF-8.
pub(crate) fn bad_offer() -> BoxedStrategy<Vec<u8>> {
    let path = prop_oneof![long_text(MAX_PATH + 1), not_utf8()];
    let shape = prop_oneof![
        Just((MAX_FILES + 1, 1u32)),
        Just((u32::MAX, 1)),
        Just((0, 1)),
        Just((1, 2)),
    ];
    prop_oneof![
        shape.prop_map(|(total, count)| (total, count, None)),
        path.prop_map(|p| (1, 1, Some(p))),
    ]
    .prop_map(|(total_entries, count, path)| {
        let mut b = vec![];
        b.put_u32(total_entries);
        b.put_u64(7);
        b.put_u32(count);
        for i in 0..count {
            let p = match (&path, i) {
                (Some(p), 0) => p.clone(),
                _ => b"file".to_vec(),
            };
            b.put_u16(p.len() as u16);
            b.extend_from_slice(&p);
            b.put_u64(7);
        }
        b
    })
    .boxed()
}

pub(crate) fn file_decision() -> impl Strategy<Value = FileDecision> {
    (
        prop_oneof![2 => Just(Status::Ok), 1 => status()],
        prop_oneof![Just(0u64), any::<u64>()],
        any::<[u8; 32]>(),
    )
        .prop_map(|(status, offset, held)| FileDecision {
            status,
            offset,
            held,
        })
}
pub(crate) fn answer() -> impl Strategy<Value = Answer> {
    (
        status(),
        message(MAX_MESSAGE),
        any::<u32>(),
        vec(file_decision(), 0..8),
    )
        .prop_map(|(status, message, features, files)| Answer {
            status,
            message,
            features,
            files,
        })
}
pub(crate) fn enc_answer(m: &Answer) -> Result<Vec<u8>> {
    body(|o| m.encode(o))
}
/// A bad message, or more resumed files than `MAX_RESUMED`.
pub(crate) fn bad_answer() -> BoxedStrategy<Vec<u8>> {
    let too_many_resumed = Just(()).prop_map(|()| {
        let mut b = vec![];
        b.put_u16(200);
        b.put_u16(0);
        b.put_u32(MAX_RESUMED as u32 + 1);
        for i in 0..=MAX_RESUMED {
            b.put_u16(200);
            b.put_u64(i as u64 + 1);
            b.extend_from_slice(&[0; 32]);
        }
        b
    });
    let bad_message = status_and_bad_message(MAX_MESSAGE).prop_map(|mut b| {
        b.put_u32(0);
        b
    });
    prop_oneof![8 => bad_message, 1 => too_many_resumed].boxed()
}

pub(crate) fn resume() -> impl Strategy<Value = Resume> {
    vec(
        (any::<u32>(), any::<u64>()).prop_map(|(index, offset)| ResumeFile { index, offset }),
        0..8,
    )
    .prop_map(|files| Resume { files })
}
pub(crate) fn enc_resume(m: &Resume) -> Result<Vec<u8>> {
    body(|o| m.encode(o))
}
pub(crate) fn bad_resume() -> BoxedStrategy<Vec<u8>> {
    Just(())
        .prop_map(|()| {
            let mut b = vec![];
            b.put_u32(MAX_RESUMED as u32 + 1);
            b.resize(4 + 12 * (MAX_RESUMED + 1), 1);
            b
        })
        .boxed()
}

pub(crate) fn file_end() -> impl Strategy<Value = FileEnd> {
    (any::<u32>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(index, size, hash)| FileEnd {
        index,
        size,
        hash,
    })
}
pub(crate) fn enc_file_end(m: &FileEnd) -> Result<Vec<u8>> {
    body(ok(|o| m.encode(o)))
}

pub(crate) fn transfer_end() -> impl Strategy<Value = TransferEnd> {
    (any::<u32>(), any::<u64>()).prop_map(|(files, bytes)| TransferEnd { files, bytes })
}
pub(crate) fn enc_transfer_end(m: &TransferEnd) -> Result<Vec<u8>> {
    body(ok(|o| m.encode(o)))
}

pub(crate) fn final_status() -> impl Strategy<Value = FinalStatus> {
    (status(), message(MAX_MESSAGE), vec(status(), 0..16)).prop_map(|(status, message, files)| {
        FinalStatus {
            status,
            message,
            files,
        }
    })
}
pub(crate) fn enc_final_status(m: &FinalStatus) -> Result<Vec<u8>> {
    body(|o| m.encode(o))
}
pub(crate) fn bad_final_status() -> BoxedStrategy<Vec<u8>> {
    status_and_bad_message(MAX_MESSAGE)
        .prop_map(|mut b| {
            b.put_u32(0);
            b
        })
        .boxed()
}

/// Valid bodies of every message type.
pub(crate) fn any_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        encoded(client_hello(), enc_client_hello),
        encoded(server_hello(), enc_server_hello),
        encoded(key_reveal(), enc_key_reveal),
        encoded(identity_msg(), enc_identity),
        encoded(signature(), enc_verify),
        encoded(any::<[u8; 32]>(), enc_finished),
        encoded(alert(), enc_alert),
        encoded(offer_part(), enc_offer),
        encoded(answer(), enc_answer),
        encoded(resume(), enc_resume),
        encoded(file_end(), enc_file_end),
        encoded(transfer_end(), enc_transfer_end),
        encoded(final_status(), enc_final_status),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Body decoders: for each, a random test and a sweep.

/// `$name::random` and `$name::sweep` for one decoder.
macro_rules! decoder_tests {
    ($name:ident, $what:literal, $valid:expr, $invalid:expr, $decode:expr, $encode:expr $(,)?) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(config(10_000))]
                #[test]
                fn random(input in input(encoded($valid, $encode), $invalid)) {
                    check($what, &input.bytes, input.expect, $decode, $encode)?;
                }
            }

            proptest! {
                #![proptest_config(heavy_config(64))]
                #[test]
                fn sweep(valid in encoded($valid, $encode)) {
                    super::sweep(&valid, |b| check($what, b, Expect::Either, $decode, $encode))?;
                }
            }
        }
    };
}

/// For messages with no limit to break: only the empty body (and the
/// misframed encodings every message gets) must be refused.
pub(crate) fn no_invalid() -> BoxedStrategy<Vec<u8>> {
    Just(vec![]).boxed()
}

decoder_tests!(
    client_hello,
    "ClientHello",
    client_hello(),
    bad_client_hello(),
    ClientHello::decode,
    enc_client_hello,
);
decoder_tests!(
    server_hello,
    "ServerHello",
    server_hello(),
    no_invalid(),
    ServerHello::decode,
    enc_server_hello,
);
decoder_tests!(
    key_reveal,
    "KeyReveal",
    key_reveal(),
    no_invalid(),
    KeyReveal::decode,
    enc_key_reveal,
);
decoder_tests!(
    identity,
    "Identity",
    identity_msg(),
    bad_identity(),
    IdentityMsg::decode,
    enc_identity,
);
decoder_tests!(
    verify,
    "Verify",
    signature(),
    bad_verify(),
    |b| decode_verify(b).map(<[u8]>::to_vec),
    enc_verify,
);
decoder_tests!(
    finished,
    "Finished",
    any::<[u8; 32]>(),
    no_invalid(),
    decode_finished,
    enc_finished,
);
decoder_tests!(
    alert,
    "Alert",
    alert(),
    status_and_bad_message(MAX_ALERT_MESSAGE),
    Alert::decode,
    enc_alert,
);
decoder_tests!(
    offer_part,
    "Offer",
    offer_part(),
    bad_offer(),
    OfferPart::decode,
    enc_offer,
);
decoder_tests!(
    answer,
    "Answer",
    answer(),
    bad_answer(),
    Answer::decode,
    enc_answer,
);
decoder_tests!(
    resume,
    "Resume",
    resume(),
    bad_resume(),
    Resume::decode,
    enc_resume,
);
decoder_tests!(
    file_end,
    "FileEnd",
    file_end(),
    no_invalid(),
    FileEnd::decode,
    enc_file_end,
);
decoder_tests!(
    transfer_end,
    "TransferEnd",
    transfer_end(),
    no_invalid(),
    TransferEnd::decode,
    enc_transfer_end,
);
decoder_tests!(
    final_status,
    "Status",
    final_status(),
    bad_final_status(),
    FinalStatus::decode,
    enc_final_status,
);

proptest! {
    #![proptest_config(config(10_000))]

    /// Each decoder also meets the other messages' encodings (and mutations
    /// of them), as when a peer sends the wrong message type.
    #[test]
    fn every_decoder_on_every_body(input in input(any_body(), no_invalid())) {
        let b = &input.bytes[..];
        bounded("ClientHello", b, || ClientHello::decode(b).is_ok())?;
        bounded("ServerHello", b, || ServerHello::decode(b).is_ok())?;
        bounded("KeyReveal", b, || KeyReveal::decode(b).is_ok())?;
        bounded("Identity", b, || IdentityMsg::decode(b).is_ok())?;
        bounded("Verify", b, || decode_verify(b).is_ok())?;
        bounded("Finished", b, || decode_finished(b).is_ok())?;
        bounded("Alert", b, || Alert::decode(b).is_ok())?;
        bounded("Offer", b, || OfferPart::decode(b).is_ok())?;
        bounded("Answer", b, || Answer::decode(b).is_ok())?;
        bounded("Resume", b, || Resume::decode(b).is_ok())?;
        bounded("FileEnd", b, || FileEnd::decode(b).is_ok())?;
        bounded("TransferEnd", b, || TransferEnd::decode(b).is_ok())?;
        bounded("Status", b, || FinalStatus::decode(b).is_ok())?;
    }

    /// What a received alert becomes is printed: never raw control characters.
    #[test]
    fn alert_errors_print_safely(input in input(encoded(alert(), enc_alert), no_invalid())) {
        if let Ok(a) = Alert::decode(&input.bytes) {
            let shown = a.into_error().to_string();
            prop_assert!(!shown.chars().any(is_control_or_bidi), "{:?}", shown);
        }
    }
}
