//! In-memory pair harness: two endpoints joined by byte pipes, with a tamper
//! hook that can flip, drop, duplicate, reorder or reflect what travels between them.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use rsa::pkcs8::DecodePrivateKey;

use crate::codec::{
    Decoded, FrameHeader, HEADER_LEN, MAX_HANDSHAKE_BODY, decode_frame, decode_header,
};
use crate::error::{Error, Result};
use crate::handshake::{Config, Handshake, Progress, Role, Session};
use crate::identity::LocalIdentity;
use crate::record::{MAX_RECORD_BODY, Opener, RecordType, Sealer};

pub(crate) fn test_identity(name: &str) -> Arc<LocalIdentity> {
    let pem = match name {
        "alice" => include_str!("../testdata/alice.pem"),
        "bob" => include_str!("../testdata/bob.pem"),
        _ => include_str!("../testdata/mallory.pem"),
    };
    let key = rsa::PrivateKey::from_pkcs8_pem(pem).unwrap();
    Arc::new(LocalIdentity::new(name, Some([2, 0, 0, 0, 0, 1]), key).unwrap())
}

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    ToResponder,
    ToInitiator,
}

/// Splits a byte stream into whole frames (test helper; the streams here are well formed
/// before tampering).
pub(crate) fn frames(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while let Ok(Decoded::Ready((f, n))) = decode_frame(buf, usize::MAX) {
        out.push(f.raw.to_vec());
        buf = &buf[n..];
    }
    out
}

/// Runs a whole handshake. `tamper(dir, index, frames)` may rewrite the frames of each
/// flight before delivery (index counts flights in that direction).
pub(crate) fn run_handshake(
    ci: Config,
    cr: Config,
    seed: u64,
    mut tamper: impl FnMut(Dir, usize, &mut Vec<Vec<u8>>),
) -> (Result<Session>, Result<Session>) {
    let mut rng_i = ChaCha20Rng::seed_from_u64(seed);
    let mut rng_r = ChaCha20Rng::seed_from_u64(seed ^ 0xffff);
    let mut out = vec![];
    let mut hi = Some(Handshake::initiator(ci, &mut rng_i, &mut out));
    let mut hr = Some(Handshake::responder(cr));
    let (mut si, mut sr) = (None, None);
    let mut dir = Dir::ToResponder;
    let mut flights = [0usize; 2];
    for _ in 0..8 {
        let mut fl = frames(&out);
        let k = &mut flights[dir as usize];
        tamper(dir, *k, &mut fl);
        *k += 1;
        let stream: Vec<u8> = fl.concat();
        out.clear();
        let (h, rng, done) = match dir {
            Dir::ToResponder => (&mut hr, &mut rng_r, &mut sr),
            Dir::ToInitiator => (&mut hi, &mut rng_i, &mut si),
        };
        let mut buf = &stream[..];
        while let Some(state) = h.take() {
            let (frame, n) = match decode_frame(buf, MAX_HANDSHAKE_BODY) {
                Ok(Decoded::Ready(x)) => x,
                Ok(Decoded::NeedMore(_)) => {
                    *h = Some(state);
                    break;
                }
                Err(e) => {
                    *done = Some(Err(e));
                    break;
                }
            };
            buf = &buf[n..];
            match state.handle(frame, rng, &mut out) {
                Ok(Progress::Continue(next)) => *h = Some(next),
                Ok(Progress::Proven(p)) => *done = Some(p.finish(rng, &mut out)),
                Err(e) => *done = Some(Err(e)),
            }
        }
        if done.is_some() && !buf.is_empty() && h.is_none() {
            // Bytes after the end of our handshake belong to the record layer; none expected here.
        }
        if out.is_empty() {
            break;
        }
        dir = match dir {
            Dir::ToResponder => Dir::ToInitiator,
            Dir::ToInitiator => Dir::ToResponder,
        };
    }
    let fin = |x: Option<Result<Session>>| x.unwrap_or(Err(Error::Truncated));
    (fin(si), fin(sr))
}

fn configs() -> (Config, Config) {
    (
        Config::new(test_identity("alice")),
        Config::new(test_identity("bob")),
    )
}

fn ok_pair() -> (Session, Session) {
    let (ci, cr) = configs();
    let (a, b) = run_handshake(ci, cr, 1, |_, _, _| {});
    (a.unwrap(), b.unwrap())
}

/// Reads whole records from a stream and opens them, stopping at the first failure.
fn open_stream(opener: &mut Opener, mut stream: &[u8]) -> Result<Vec<(RecordType, Vec<u8>)>> {
    let mut out = vec![];
    while !stream.is_empty() {
        let header = match decode_header(stream, MAX_RECORD_BODY)? {
            Decoded::Ready(h) => h,
            Decoded::NeedMore(_) => return Err(Error::Truncated),
        };
        if stream.len() < HEADER_LEN + header.len {
            return Err(Error::Truncated);
        }
        let mut body = stream[HEADER_LEN..HEADER_LEN + header.len].to_vec();
        let (t, pt) = opener.open_in_place(header, &mut body)?;
        out.push((t, pt.to_vec()));
        stream = &stream[HEADER_LEN + header.len..];
    }
    Ok(out)
}

fn seal_all(sealer: &mut Sealer, records: &[(RecordType, &[u8])]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|(t, pt)| {
            let mut out = vec![];
            sealer.seal(*t, pt, &mut out).unwrap();
            out
        })
        .collect()
}

#[test]
fn handshake_agrees_on_everything() {
    let (i, r) = ok_pair();
    assert_eq!((i.role, r.role), (Role::Initiator, Role::Responder));
    assert_eq!(i.sas, r.sas);
    assert_eq!(i.session_id, r.session_id);
    assert_eq!(i.peer.fingerprint, test_identity("bob").fingerprint());
    assert_eq!(r.peer.fingerprint, test_identity("alice").fingerprint());
    assert_eq!(r.peer.name, "alice");
    assert_eq!(i.peer.mac, Some([2, 0, 0, 0, 0, 1]));
    // Fresh randomness gives fresh keys and SAS input.
    let (ci, cr) = configs();
    let (i2, _) = run_handshake(ci, cr, 2, |_, _, _| {});
    assert_ne!(i2.unwrap().session_id, i.session_id);
}

#[test]
fn full_transfer_round_trips() {
    use crate::transfer::*;
    let (mut i, mut r) = ok_pair();
    let content: Vec<u8> = (0..300_000u32).map(|x| (x * 7 % 251) as u8).collect();
    let hash = *blake3::hash(&content).as_bytes();
    let mut wire = vec![];
    let mut body = vec![];
    let offer =
        OfferPart::split(&[OfferEntry::file("dir/file.bin", content.len() as u64)]).unwrap();
    offer[0].encode(&mut body).unwrap();
    i.sealer.seal(RecordType::Offer, &body, &mut wire).unwrap();

    let recs = open_stream(&mut r.opener, &wire).unwrap();
    let (entries, total) = OfferCollector::default()
        .add(OfferPart::decode(&recs[0].1).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((entries[0].path.as_str(), total), ("dir/file.bin", 300_000));
    let mut back = vec![];
    let mut body = vec![];
    Answer {
        status: crate::Status::Ok,
        message: String::new(),
        features: 0,
        files: vec![FileDecision::whole()],
    }
    .encode(&mut body)
    .unwrap();
    r.sealer.seal(RecordType::Answer, &body, &mut back).unwrap();
    let ans = open_stream(&mut i.opener, &back).unwrap();
    assert_eq!(
        Answer::decode(&ans[0].1).unwrap().files[0].status,
        crate::Status::Ok
    );

    let mut wire = vec![];
    for chunk in content.chunks(65536) {
        i.sealer.seal(RecordType::Data, chunk, &mut wire).unwrap();
    }
    let mut body = vec![];
    FileEnd {
        index: 0,
        size: content.len() as u64,
        hash,
    }
    .encode(&mut body);
    i.sealer
        .seal(RecordType::FileEnd, &body, &mut wire)
        .unwrap();
    let mut body = vec![];
    TransferEnd {
        files: 1,
        bytes: content.len() as u64,
    }
    .encode(&mut body);
    i.sealer
        .seal(RecordType::TransferEnd, &body, &mut wire)
        .unwrap();

    let mut got = vec![];
    let mut end = None;
    for (t, pt) in open_stream(&mut r.opener, &wire).unwrap() {
        match t {
            RecordType::Data => got.extend_from_slice(&pt),
            RecordType::FileEnd => end = Some(FileEnd::decode(&pt).unwrap()),
            RecordType::TransferEnd => assert_eq!(TransferEnd::decode(&pt).unwrap().files, 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, content);
    assert_eq!(end.unwrap().hash, *blake3::hash(&got).as_bytes());
}

#[test]
fn every_bit_flip_of_a_record_is_rejected() {
    let (mut i, r) = ok_pair();
    let recs = seal_all(
        &mut i.sealer,
        &[
            (RecordType::Data, b"attack at dawn"),
            (RecordType::FileEnd, &[9; 44]),
        ],
    );
    let stream = recs.concat();
    for bit in 0..stream.len() * 8 {
        let mut s = stream.clone();
        s[bit / 8] ^= 1 << (bit % 8);
        let mut opener = r.opener.clone();
        match open_stream(&mut opener, &s) {
            Ok(got) => panic!("bit {bit} flipped and still delivered {got:?}"),
            Err(
                Error::BadRecordMac
                | Error::UnknownFrameType(_)
                | Error::Truncated
                | Error::FrameTooLarge { .. },
            ) => {}
            Err(Error::Malformed(_)) if bit / 8 < HEADER_LEN => {}
            Err(e) => panic!("bit {bit}: unexpected error {e}"),
        }
    }
}

#[test]
fn dropped_duplicated_reordered_reflected_records_are_rejected() {
    let (mut i, mut r) = ok_pair();
    let recs = seal_all(
        &mut i.sealer,
        &[
            (RecordType::Data, b"one"),
            (RecordType::Data, b"two"),
            (RecordType::Data, b"three"),
        ],
    );
    let cases: [(&str, Vec<Vec<u8>>); 3] = [
        ("dropped", vec![recs[0].clone(), recs[2].clone()]),
        ("duplicated", vec![recs[0].clone(), recs[0].clone()]),
        ("reordered", vec![recs[1].clone(), recs[0].clone()]),
    ];
    for (what, stream) in cases {
        let mut opener = r.opener.clone();
        let res = open_stream(&mut opener, &stream.concat());
        assert_eq!(res, Err(Error::BadRecordMac), "{what}");
    }
    // The first record alone is fine; only the tampered ones fail.
    assert_eq!(
        open_stream(&mut r.opener.clone(), &recs[0]).unwrap()[0].1,
        b"one"
    );

    // Reflection: the responder's own record sent back to it.
    let mine = seal_all(&mut r.sealer, &[(RecordType::Status, b"x")]);
    assert_eq!(
        open_stream(&mut r.opener, &mine[0]),
        Err(Error::BadRecordMac)
    );
    // ...and the opener stays closed after that.
    assert_eq!(open_stream(&mut r.opener, &recs[0]), Err(Error::Poisoned));
}

#[test]
fn truncated_record_stream_is_detected() {
    let (mut i, r) = ok_pair();
    let rec = seal_all(&mut i.sealer, &[(RecordType::Data, &[1u8; 100])]).concat();
    for cut in 1..rec.len() {
        assert_eq!(
            open_stream(&mut r.opener.clone(), &rec[..cut]),
            Err(Error::Truncated),
            "cut at {cut}"
        );
    }
}

#[test]
fn oversized_record_length_is_rejected_before_reading_the_body() {
    let header = FrameHeader {
        typ: RecordType::Data as u8,
        len: MAX_RECORD_BODY + 1,
    }
    .to_bytes();
    assert!(matches!(
        decode_header(&header, MAX_RECORD_BODY),
        Err(Error::FrameTooLarge { .. })
    ));
    let hs = FrameHeader {
        typ: 1,
        len: MAX_HANDSHAKE_BODY + 1,
    }
    .to_bytes();
    assert!(matches!(
        decode_header(&hs, MAX_HANDSHAKE_BODY),
        Err(Error::FrameTooLarge { .. })
    ));
}

#[test]
fn bit_flips_in_the_handshake_never_yield_a_session() {
    // Every byte of the small messages and a spread of bytes in the large ones.
    let (ci, cr) = configs();
    let mut plan = vec![];
    let _ = run_handshake(ci, cr, 7, |d, k, fl| {
        for (f, frame) in fl.iter().enumerate() {
            let step = if frame.len() > 64 {
                frame.len() / 24
            } else {
                1
            };
            for byte in (0..frame.len()).step_by(step) {
                plan.push((d, k, f, byte));
            }
        }
    });
    assert!(plan.len() > 150, "plan {}", plan.len());
    for (n, &(d, k, f, byte)) in plan.iter().enumerate() {
        let (ci, cr) = configs();
        let (a, b) = run_handshake(ci, cr, 7, |dd, kk, fl| {
            if (dd, kk) == (d, k) {
                fl[f][byte] ^= 1 << (n % 8);
            }
        });
        // Whoever received the flipped byte must fail; the other may not complete either.
        let victim = if d == Dir::ToResponder { &b } else { &a };
        assert!(victim.is_err(), "flip {d:?}/{k}/{f}/{byte} accepted");
        assert!(
            !(a.is_ok() && b.is_ok()),
            "flip {d:?}/{k}/{f}/{byte} produced two sessions"
        );
    }
}

#[test]
fn wrong_signature_is_rejected() {
    let (ci, cr) = configs();
    let (a, b) = run_handshake(ci.clone(), cr.clone(), 3, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 1) {
            // Identity, Verify, Finished from the responder: corrupt the signature's last byte.
            let v = &mut fl[1];
            let last = v.len() - 1;
            v[last] ^= 0x01;
        }
    });
    assert_eq!(a.unwrap_err(), Error::BadSignature);
    // The responder completed before the initiator noticed (it has nothing more to
    // prove); its session is useless, since the initiator sends nothing on it.
    assert!(b.is_ok());
    // The initiator's signature, corrupted: the responder refuses before it signs.
    let (a, b) = run_handshake(ci, cr, 3, |d, k, fl| {
        if (d, k) == (Dir::ToResponder, 1) {
            // KeyReveal, Identity, Verify, Finished from the initiator.
            let v = &mut fl[2];
            let last = v.len() - 1;
            v[last] ^= 0x01;
        }
    });
    assert_eq!(b.unwrap_err(), Error::BadSignature);
    assert!(a.is_err());
}

/// A [`crate::Signer`] for tests: the rsa crate with its own randomness,
/// or (`forge`) a signature with one bit flipped; it counts its signatures.
struct TestSigner {
    key: rsa::pss::SigningKey<sha2::Sha256>,
    forge: bool,
    signed: std::sync::atomic::AtomicUsize,
}

impl crate::Signer for TestSigner {
    fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        self.signed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let mut sig = self.key.try_sign_with_rng(&mut rng, msg).ok()?.to_vec();
        if self.forge {
            sig[10] ^= 1;
        }
        Some(sig)
    }

    fn modulus(&self) -> Vec<u8> {
        use rsa::traits::PublicKeyParts;
        let n = self.key.as_ref().as_public_key().n_bytes();
        let first = n.iter().position(|&b| b != 0).unwrap_or(n.len());
        n[first..].to_vec()
    }
}

fn test_signer(name: &str, forge: bool) -> Arc<TestSigner> {
    let pem = match name {
        "alice" => include_str!("../testdata/alice.pem"),
        _ => include_str!("../testdata/mallory.pem"),
    };
    let key = rsa::PrivateKey::from_pkcs8_pem(pem).unwrap();
    Arc::new(TestSigner {
        key: rsa::pss::SigningKey::new_with_salt_len(key, 32),
        forge,
        signed: Default::default(),
    })
}

#[test]
fn an_identity_signs_with_its_signer_and_only_with_its_own_key() {
    let alice = || (*test_identity("alice")).clone();
    // Mallory's key under Alice's identity is refused.
    let err = alice()
        .with_signer(test_signer("mallory", false))
        .unwrap_err();
    assert_eq!(
        err,
        Error::InvalidPublicKey("the signer's key is not this identity's")
    );
    // Alice's signer signs her handshake: the peer takes it.
    let signer = test_signer("alice", false);
    let ci = Config::new(Arc::new(alice().with_signer(signer.clone()).unwrap()));
    let (a, b) = run_handshake(ci, configs().1, 8, |_, _, _| {});
    assert_eq!(b.unwrap().peer.name, "alice");
    assert!(a.is_ok());
    assert_eq!(signer.signed.load(std::sync::atomic::Ordering::Relaxed), 1);
    // What it signs is what goes: a bad signature from it is refused.
    let forger = test_signer("alice", true);
    let ci = Config::new(Arc::new(alice().with_signer(forger.clone()).unwrap()));
    let (_, b) = run_handshake(ci, configs().1, 9, |_, _, _| {});
    assert_eq!(b.unwrap_err(), Error::BadSignature);
    assert_eq!(forger.signed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn swapped_identity_key_is_rejected() {
    // A man in the middle replaces the responder's Identity with Mallory's key but cannot sign.
    let mallory = test_identity("mallory");
    let (ci, cr) = configs();
    let (a, _) = run_handshake(ci, cr, 4, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 1) {
            let mut out = vec![];
            crate::handshake::messages::IdentityMsg {
                node_id: mallory.node_id(),
                name: "bob".into(),
                mac: None,
                public_key_der: mallory.public_key_der().to_vec(),
            }
            .encode(&mut out)
            .unwrap();
            fl[0] = out;
        }
    });
    assert_eq!(a.unwrap_err(), Error::BadSignature);
}

#[test]
fn unexpected_peer_key_is_refused() {
    let (mut ci, _) = configs();
    ci.expected_peer = Some(test_identity("bob").fingerprint());
    let cr = Config::new(test_identity("mallory"));
    let (a, _) = run_handshake(ci, cr, 5, |_, _, _| {});
    match a {
        Err(Error::UnexpectedPeerKey { expected, got }) => {
            assert_eq!(expected, test_identity("bob").fingerprint());
            assert_eq!(got, test_identity("mallory").fingerprint());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn negotiation_failures_are_specific() {
    let (mut ci, cr) = configs();
    ci.versions = vec![7];
    let (_, b) = run_handshake(ci, cr, 6, |_, _, _| {});
    assert!(matches!(b, Err(Error::UnsupportedVersion { .. })), "{b:?}");
    let (mut ci, cr) = configs();
    ci.suites = vec![0x7777];
    let (_, b) = run_handshake(ci, cr, 6, |_, _, _| {});
    assert!(matches!(b, Err(Error::NoCommonSuite { .. })), "{b:?}");
    // A newer initiator offering several versions gets the best common one.
    let (mut ci, cr) = configs();
    ci.versions = vec![9, crate::handshake::PROTOCOL_VERSION];
    let (a, _) = run_handshake(ci, cr, 6, |_, _, _| {});
    assert_eq!(a.unwrap().version, crate::handshake::PROTOCOL_VERSION);
}

#[test]
fn an_older_peer_on_either_side_gets_its_version() {
    use crate::handshake::{
        PROTOCOL_VERSION, PROTOCOL_VERSION_2, PROTOCOL_VERSION_3, has_batches, has_v3_transfer,
    };
    // Two current nodes: version 4.
    let (ci, cr) = configs();
    assert_eq!(
        ci.versions,
        [PROTOCOL_VERSION, PROTOCOL_VERSION_3, PROTOCOL_VERSION_2]
    );
    let (a, b) = run_handshake(ci, cr, 6, |_, _, _| {});
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.version, b.version), (4, 4));
    assert!(has_v3_transfer(a.version) && has_batches(a.version));
    // Earlier releases offer and accept only [3, 2] or [2].
    for (old, want) in [
        (vec![PROTOCOL_VERSION_3, PROTOCOL_VERSION_2], 3),
        (vec![PROTOCOL_VERSION_2], 2),
    ] {
        for old_initiator in [true, false] {
            let (mut ci, mut cr) = configs();
            if old_initiator {
                ci.versions = old.clone();
            } else {
                cr.versions = old.clone();
            }
            let (a, b) = run_handshake(ci, cr, 6, |_, _, _| {});
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                (a.version, b.version),
                (want, want),
                "old initiator: {old_initiator}"
            );
            assert_eq!(has_v3_transfer(a.version), want == 3);
            assert!(!has_batches(a.version));
        }
    }
}

#[test]
fn commitment_and_low_order_keys_are_checked() {
    let (ci, cr) = configs();
    let (_, b) = run_handshake(ci, cr, 8, |d, k, fl| {
        if (d, k) == (Dir::ToResponder, 1) {
            let last = fl[0].len() - 1;
            fl[0][last] ^= 0x80;
        }
    });
    assert_eq!(b.unwrap_err(), Error::CommitmentMismatch);
    let (ci, cr) = configs();
    let (a, _) = run_handshake(ci, cr, 8, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 0) {
            let n = fl[0].len();
            fl[0][n - 32..].fill(0);
        }
    });
    assert_eq!(a.unwrap_err(), Error::WeakKeyExchange);
}

#[test]
fn out_of_order_and_foreign_first_messages_are_refused() {
    let (ci, cr) = configs();
    // Deliver the responder's second flight before anything else was asked: drop ServerHello.
    let (a, _) = run_handshake(ci, cr, 9, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 0) {
            fl[0][0] = crate::handshake::messages::IDENTITY;
        }
    });
    assert!(
        matches!(
            a,
            Err(Error::UnexpectedMessage {
                expected: "ServerHello",
                ..
            })
        ),
        "{a:?}"
    );
    // An HTTP request is not a ClientHello.
    let h = Handshake::responder(configs().1);
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let frame = crate::codec::Frame {
        typ: b'G',
        body: b"",
        raw: b"GET /",
    };
    assert_eq!(
        h.handle(frame, &mut rng, &mut vec![]).unwrap_err(),
        Error::BadMagic
    );
}

#[test]
fn alerts_surface_as_peer_errors() {
    let (ci, cr) = configs();
    let (a, _) = run_handshake(ci, cr, 10, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 0) {
            fl[0] = crate::handshake::alert_frame(&Error::NoCommonSuite {
                peer: vec![],
                ours: vec![],
            });
        }
    });
    match a {
        Err(Error::PeerAlert { status, .. }) => assert_eq!(status, crate::Status::NoCommonSuite),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decoders_never_panic_on_random_input() {
    use crate::handshake::messages::*;
    use crate::transfer::*;
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 96) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        let _ = decode_frame(&bytes, MAX_HANDSHAKE_BODY);
        let _ = ClientHello::decode(&bytes);
        let _ = ServerHello::decode(&bytes);
        let _ = IdentityMsg::decode(&bytes);
        let _ = Alert::decode(&bytes);
        let _ = OfferPart::decode(&bytes);
        let _ = Answer::decode(&bytes);
        let _ = FinalStatus::decode(&bytes);
        let _ = FileEnd::decode(&bytes);
        let _ = crate::names::validate_wire_path(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn a_node_id_not_bound_to_the_key_is_refused() {
    // Bob claims Alice's id (ids are public in mDNS) with his own key: refused,
    // before any signature is checked or made.
    let alice = test_identity("alice");
    let (ci, cr) = configs();
    let (a, _) = run_handshake(ci, cr, 9, |d, k, fl| {
        if (d, k) == (Dir::ToInitiator, 1) {
            let bob = test_identity("bob");
            let mut out = vec![];
            crate::handshake::messages::IdentityMsg {
                node_id: alice.node_id(),
                name: "bob".into(),
                mac: None,
                public_key_der: bob.public_key_der().to_vec(),
            }
            .encode(&mut out)
            .unwrap();
            fl[0] = out;
        }
    });
    assert_eq!(a.unwrap_err(), Error::NodeIdNotBound);
    assert_eq!(
        alice.node_id(),
        crate::identity::node_id_for(&alice.fingerprint())
    );
    assert_ne!(alice.node_id(), [0u8; 16]);
}
