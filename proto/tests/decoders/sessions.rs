//! The handshake and the record opener, which need real sessions.

use super::*;

fn identities() -> &'static (Arc<LocalIdentity>, Arc<LocalIdentity>) {
    static IDS: OnceLock<(Arc<LocalIdentity>, Arc<LocalIdentity>)> = OnceLock::new();
    IDS.get_or_init(|| {
        use rsa::pkcs8::DecodePrivateKey;
        let load = |name: &str, pem: &str| {
            let key = rsa::PrivateKey::from_pkcs8_pem(pem).expect("test key");
            Arc::new(LocalIdentity::new(name, None, key).expect("test identity"))
        };
        (
            load("alice", include_str!("../../testdata/alice.pem")),
            load("bob", include_str!("../../testdata/bob.pem")),
        )
    })
}

/// What one handshake run gave each side (0: initiator, 1: responder).
struct Run {
    outcome: [Result<Session>; 2],
    /// The frames each side handled, in order.
    seen: [Vec<u8>; 2],
}

/// Alice initiates, Bob responds; `tamper(flight, bytes)` may rewrite each
/// flight before it is delivered. Every `handle` call is allocation-bounded.
fn handshake(
    seed: u64,
    mut tamper: impl FnMut(usize, &mut Vec<u8>),
) -> std::result::Result<Run, TestCaseError> {
    let (alice, bob) = identities();
    let mut rngs = [
        ChaCha20Rng::seed_from_u64(seed),
        ChaCha20Rng::seed_from_u64(!seed),
    ];
    let mut out = vec![];
    let mut states = [
        Some(Handshake::initiator(
            Config::new(alice.clone()),
            &mut rngs[0],
            &mut out,
        )),
        Some(Handshake::responder(Config::new(bob.clone()))),
    ];
    let mut done: [Option<Result<Session>>; 2] = [None, None];
    let mut seen = [vec![], vec![]];
    let mut to = 1;
    for flight in 0..8 {
        if out.is_empty() {
            break;
        }
        let mut bytes = std::mem::take(&mut out);
        tamper(flight, &mut bytes);
        let mut buf = &bytes[..];
        while let Some(state) = states[to].take() {
            match decode_frame(buf, MAX_HANDSHAKE_BODY) {
                Ok(Decoded::Ready((frame, used))) => {
                    seen[to].extend_from_slice(frame.raw);
                    buf = &buf[used..];
                    let rng = &mut rngs[to];
                    let step = bounded("Handshake::handle", frame.raw, || {
                        state.handle(frame, rng, &mut out)
                    })?;
                    match step {
                        Ok(Progress::Continue(next)) => states[to] = Some(next),
                        Ok(Progress::Proven(p)) => {
                            done[to] = Some(p.finish(&mut rngs[to], &mut out));
                        }
                        Err(e) => done[to] = Some(Err(e)),
                    }
                }
                Ok(Decoded::NeedMore(_)) => {
                    states[to] = Some(state);
                    break;
                }
                Err(e) => done[to] = Some(Err(e)),
            }
        }
        to ^= 1;
    }
    let [i, r] = done;
    Ok(Run {
        outcome: [
            i.unwrap_or(Err(Error::Truncated)),
            r.unwrap_or(Err(Error::Truncated)),
        ],
        seen,
    })
}

const SEED: u64 = 0x5eed;

/// The frames each side sees in an untampered handshake with [`SEED`].
fn honest_transcript() -> &'static [Vec<u8>; 2] {
    static SEEN: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    SEEN.get_or_init(|| {
        let run = handshake(SEED, |_, _| {}).expect("an honest handshake stays in budget");
        assert!(
            run.outcome.iter().all(|o| o.is_ok()),
            "honest handshake failed"
        );
        run.seen
    })
}

fn sessions() -> (Session, Session) {
    let run = handshake(SEED, |_, _| {}).expect("an honest handshake stays in budget");
    let [i, r] = run.outcome;
    (i.expect("initiator session"), r.expect("responder session"))
}

const RECORD_TYPES: [RecordType; 8] = [
    RecordType::Offer,
    RecordType::Answer,
    RecordType::Data,
    RecordType::FileEnd,
    RecordType::TransferEnd,
    RecordType::Status,
    RecordType::Resume,
    RecordType::Alert,
];

#[derive(Debug, Clone)]
enum RecordInput {
    /// A record sealed by the peer, then mutated.
    Sealed {
        typ: RecordType,
        plaintext: Vec<u8>,
        mutations: Vec<Mutation>,
    },
    /// A header and body as the opener's caller might pass them, unchecked.
    Raw { header: FrameHeader, body: Vec<u8> },
}

fn record_input() -> impl Strategy<Value = RecordInput> {
    let sealed = (
        select(RECORD_TYPES.to_vec()),
        prop_oneof![4 => vec(any::<u8>(), 0..200), 1 => vec(any::<u8>(), 0..5000)],
        vec(mutation(), 0..3),
    )
        .prop_map(|(typ, plaintext, mutations)| RecordInput::Sealed {
            typ,
            plaintext,
            mutations,
        });
    let raw = (
        any::<u8>(),
        prop_oneof![
            Just(None),
            Just(Some(usize::MAX)),
            Just(Some(MAX_RECORD_BODY + 1)),
            (0..64usize).prop_map(Some),
        ],
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(typ, len, body)| RecordInput::Raw {
            header: FrameHeader {
                typ,
                len: len.unwrap_or(body.len()),
            },
            body,
        });
    prop_oneof![3 => sealed, 1 => raw]
}

proptest! {
    // Each case runs a handshake (RSA signatures).
    #![proptest_config(heavy_config(256))]

    /// A handshake with one flight tampered never panics, stays in budget,
    /// and completes on both sides only if both saw the honest frames.
    #[test]
    fn handshake_with_a_tampered_flight(
        flight in 0..6usize,
        mutations in vec(mutation(), 1..4),
    ) {
        let honest = honest_transcript();
        let run = handshake(SEED, |k, bytes| {
            if k == flight {
                *bytes = mutate(std::mem::take(bytes), &mutations);
            }
        })?;
        if let [Ok(i), Ok(r)] = &run.outcome {
            prop_assert_eq!(&run.seen, honest);
            prop_assert_eq!((i.sas, i.session_id), (r.sas, r.session_id));
        }
        for e in run.outcome.iter().filter_map(|o| o.as_ref().err()) {
            let shown = e.to_string();
            prop_assert!(!shown.chars().any(is_control_or_bidi), "{:?}", shown);
        }
    }

    /// The record opener on tampered records and on headers and bodies that
    /// do not match: an error (never a panic) unless the record is intact,
    /// and nothing at all once it has failed.
    #[test]
    fn record_opener(input in record_input()) {
        let (mut alice, mut bob) = sessions();
        let mut probe = vec![];
        alice.sealer.seal(RecordType::Data, b"probe", &mut probe).expect("seal");
        match input {
            RecordInput::Sealed { typ, plaintext, mutations } => {
                // The probe goes first: the record under test is sequence 1.
                let mut wire = vec![];
                alice.sealer.seal(typ, &plaintext, &mut wire).expect("seal");
                let opened = open(&mut bob, &mut probe.clone())?;
                prop_assert_eq!(opened, Some((RecordType::Data, b"probe".to_vec())));
                let mut bytes = mutate(wire.clone(), &mutations);
                let intact = bytes.starts_with(&wire);
                match open(&mut bob, &mut bytes)? {
                    Some(got) => {
                        prop_assert!(intact, "a tampered record opened");
                        prop_assert_eq!(got, (typ, plaintext));
                    }
                    None => prop_assert!(!intact, "an intact record was refused"),
                }
            }
            RecordInput::Raw { header, mut body } => {
                let shown = body.clone();
                let got = bounded("Opener", &shown, || {
                    bob.opener.open_in_place(header, &mut body).is_ok()
                })?;
                prop_assert!(!got, "garbage opened");
                let mut ok = probe.clone();
                prop_assert!(matches!(open_raw(&mut bob, &mut ok), Err(Error::Poisoned)));
            }
        }
    }
}

/// Reads one record off the front of `bytes` as a connection does and opens
/// it: `None` when it is refused (by the frame decoder or the opener) or
/// incomplete. After a refusal by the opener, the opener stays closed.
#[allow(clippy::type_complexity)]
fn open(
    s: &mut Session,
    bytes: &mut [u8],
) -> std::result::Result<Option<(RecordType, Vec<u8>)>, TestCaseError> {
    let n = bytes.len();
    let shown = bytes.to_vec();
    let header = match decode_header(bytes, MAX_RECORD_BODY) {
        Ok(Decoded::Ready(h)) if n >= HEADER_LEN + h.len => h,
        _ => return Ok(None),
    };
    let body = &mut bytes[HEADER_LEN..HEADER_LEN + header.len];
    let opened = bounded("Opener", &shown, || {
        s.opener
            .open_in_place(header, body)
            .map(|(t, pt)| (t, pt.to_vec()))
    })?;
    match opened {
        Ok(x) => Ok(Some(x)),
        Err(e) => {
            prop_assert!(
                !matches!(e, Error::Poisoned),
                "first failure reported as {e}"
            );
            let mut again = vec![0u8; TAG_LEN];
            let h = FrameHeader {
                typ: RecordType::Data as u8,
                len: TAG_LEN,
            };
            prop_assert_eq!(
                s.opener.open_in_place(h, &mut again).err(),
                Some(Error::Poisoned)
            );
            Ok(None)
        }
    }
}

fn open_raw(s: &mut Session, bytes: &mut [u8]) -> Result<RecordType> {
    let Ok(Decoded::Ready(h)) = decode_header(bytes, MAX_RECORD_BODY) else {
        return Err(Error::Truncated);
    };
    let body = bytes
        .get_mut(HEADER_LEN..HEADER_LEN + h.len)
        .ok_or(Error::Truncated)?;
    s.opener.open_in_place(h, body).map(|(t, _)| t)
}
