//! The TXT record parser ([`PeerRecord::from_txt`]) on random and spoiled
//! records: it never panics, never allocates more than its input justifies,
//! accepts every record a node announces, refuses every bad field, and what it
//! accepts is what the first occurrence of each key said.
//!
//! ```text
//!  PeerRecord ─to_txt─► pairs ─┬─ as is ─────────────────► must parse back to it
//!                              ├─ one field made bad ────► must be refused, naming it
//!                              ├─ random spoiling ───┐
//!                              └─ every single byte  ┤  (sweep)
//!  random pairs ─────────────────────────────────────┴──► may go either way
//! ```
//!
//! Spoiling works on the pairs the way a hostile or broken announcer could:
//! values and keys mutated byte-wise, keys without `=`, pairs dropped,
//! repeated, swapped, upper-cased, and junk pairs inserted. The one-shot DNS
//! answer parser (`oneshot::parse_response`) is private to the crate; its
//! never-panics and allocation tests are unit tests in `src/oneshot.rs`.
//!
//! [`allocation_counter`] is this binary's global allocator and counts per
//! thread. A longer run: `PROPTEST_CASES=50000 cargo test -p
//! localstream-discovery --test decoders`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use localstream_discovery::txt::{MAX_NAME_BYTES, check_display_name};
use localstream_discovery::{PeerRecord, TxtError};
use localstream_proto::names::is_control_or_bidi;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use uuid::Uuid;

type Check = Result<(), TestCaseError>;

/// A TXT record as the key/value pairs mdns-sd and the one-shot query hand
/// over (`None`: a key without `=`).
type Pairs = Vec<(String, Option<Vec<u8>>)>;

/// Peak bytes the parser may hold whatever its input (the name it keeps,
/// small scratch vectors).
const FLOOR: u64 = 64 * 1024;
/// Peak bytes per input byte.
const PER_INPUT_BYTE: u64 = 16;

fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        // A failure prints its shrunk input: make it a unit test in txt.rs.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// For the sweep, which parses thousands of records per case: a twentieth
/// of `PROPTEST_CASES` when it is set.
fn heavy_config(cases: u32) -> ProptestConfig {
    let mut c = config(cases);
    if std::env::var_os("PROPTEST_CASES").is_some() {
        c.cases = (c.cases / 20).max(1);
    }
    c
}

fn input_len(pairs: &Pairs) -> usize {
    pairs
        .iter()
        .map(|(k, v)| k.len() + 1 + v.as_ref().map_or(0, Vec::len))
        .sum()
}

/// Parses `pairs` with this thread's allocations counted; fails the case on
/// a panic or a peak of live bytes over the budget.
fn parse(pairs: &Pairs) -> Result<Result<PeerRecord, TxtError>, TestCaseError> {
    let mut out = None;
    let info = allocation_counter::measure(|| {
        out = Some(catch_unwind(AssertUnwindSafe(|| {
            PeerRecord::from_txt(pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
        })));
    });
    let got = match out {
        Some(Ok(got)) => got,
        Some(Err(_)) => {
            return Err(TestCaseError::fail(format!(
                "from_txt panicked on {pairs:?}"
            )));
        }
        None => unreachable!("measure runs its closure"),
    };
    let n = input_len(pairs);
    let budget = FLOOR + PER_INPUT_BYTE * n as u64;
    prop_assert!(
        info.bytes_max <= budget,
        "from_txt: {} bytes live at peak for {} bytes of pairs (budget {}): {:?}",
        info.bytes_max,
        n,
        budget,
        pairs
    );
    Ok(got)
}

/// The first value given for `key` (keys match case-insensitively).
fn first<'a>(pairs: &'a Pairs, key: &str) -> Option<Option<&'a [u8]>> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_deref())
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An accepted record is what the first occurrence of each key said, is
/// itself valid, and round-trips through [`PeerRecord::to_txt`].
fn check_accepted(pairs: &Pairs, r: &PeerRecord) -> Check {
    let text = |key| {
        first(pairs, key)
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    prop_assert_eq!(
        text("v").and_then(|v| v.parse::<u16>().ok()),
        Some(r.version)
    );
    prop_assert_ne!(r.version, 0);
    prop_assert_eq!(
        text("id").and_then(|v| Uuid::parse_str(v).ok()),
        Some(r.node_id)
    );
    prop_assert_eq!(
        text("id").map(str::len),
        Some(36),
        "only the hyphenated form"
    );
    prop_assert!(!r.node_id.is_nil());
    let fp = text("fp").and_then(hex_bytes);
    prop_assert_eq!(fp.as_deref(), Some(&r.fingerprint_prefix[..]));
    prop_assert_eq!(text("name"), Some(r.name.as_str()));
    prop_assert!(check_display_name(&r.name).is_ok(), "{:?}", r.name);
    prop_assert!(r.name.len() <= MAX_NAME_BYTES);
    prop_assert!(!r.name.chars().any(is_control_or_bidi), "{:?}", r.name);
    let mac = match first(pairs, "mac") {
        None | Some(None) => None,
        Some(Some(raw)) => {
            let s = std::str::from_utf8(raw).ok();
            let bytes = s.and_then(|s| hex_bytes(&s.replace(':', "")));
            prop_assert_eq!(s.map(str::len), Some(17), "{:?}", s);
            bytes.and_then(|b| <[u8; 6]>::try_from(b).ok())
        }
    };
    prop_assert_eq!(mac, r.mac);
    let again: Pairs = r
        .to_txt()
        .into_iter()
        .map(|(k, v)| (k, Some(v.into_bytes())))
        .collect();
    prop_assert_eq!(parse(&again)?, Ok(r.clone()));
    Ok(())
}

// ---------------------------------------------------------------------------
// Records and how to spoil them.

fn display_name() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        6 => "[a-zA-Z0-9 '()_.-]",
        2 => any::<char>().prop_map(String::from),
        1 => select(vec!["é", "日本", "—", "🎉", "\u{a0}"]).prop_map(str::to_owned),
    ];
    vec(chars, 1..24).prop_map(|parts| {
        let name: String = parts
            .concat()
            .chars()
            .filter(|&c| !is_control_or_bidi(c))
            .collect();
        let mut name = name.trim().to_owned();
        while name.len() > MAX_NAME_BYTES {
            name.pop();
            name = name.trim_end().to_owned();
        }
        if name.is_empty() {
            "box".to_owned()
        } else {
            name
        }
    })
}

fn record() -> impl Strategy<Value = PeerRecord> {
    (
        prop_oneof![3 => Just(1u16), 1 => 1..=u16::MAX],
        any::<u128>().prop_filter("not nil", |&id| id != 0),
        any::<[u8; 8]>(),
        display_name(),
        any::<Option<[u8; 6]>>(),
    )
        .prop_map(|(version, id, fingerprint_prefix, name, mac)| PeerRecord {
            version,
            node_id: Uuid::from_u128(id),
            fingerprint_prefix,
            name,
            mac,
        })
}

fn pairs_of(r: &PeerRecord) -> Pairs {
    r.to_txt()
        .into_iter()
        .map(|(k, v)| (k, Some(v.into_bytes())))
        .collect()
}

#[derive(Debug, Clone)]
enum ByteOp {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index),
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    let notable = select(vec![
        b':', b'-', b'0', b'f', b'F', b'g', b' ', b'=', b'+', 0, 0x1b, 0x7f, 0xc2, 0xff,
    ]);
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, b)| ByteOp::Flip(i, b)),
        (any::<Index>(), notable.clone()).prop_map(|(i, b)| ByteOp::Set(i, b)),
        any::<Index>().prop_map(ByteOp::Truncate),
        (any::<Index>(), vec(notable, 1..4)).prop_map(|(i, b)| ByteOp::Insert(i, b)),
        any::<Index>().prop_map(ByteOp::Remove),
    ]
}

fn apply_bytes(b: &mut Vec<u8>, op: &ByteOp) {
    let len = b.len();
    match op {
        ByteOp::Insert(i, extra) => {
            let at = i.index(len + 1);
            b.splice(at..at, extra.iter().copied());
        }
        _ if len == 0 => {}
        ByteOp::Flip(i, bit) => b[i.index(len)] ^= 1 << bit,
        ByteOp::Set(i, v) => b[i.index(len)] = *v,
        ByteOp::Truncate(i) => b.truncate(i.index(len)),
        ByteOp::Remove(i) => {
            b.remove(i.index(len));
        }
    }
}

const KEYS: &[&str] = &[
    "v", "id", "fp", "name", "mac", "ID", "Name", "x", "vv", "", " v",
];

#[derive(Debug, Clone)]
enum Spoil {
    Value(Index, ByteOp),
    Key(Index, ByteOp),
    NoValue(Index),
    Drop(Index),
    Repeat(Index),
    Swap(Index, Index),
    Upper(Index),
    Junk(Index, String, Option<Vec<u8>>),
}

/// Junk of up to 255 bytes, the most one TXT string (key, `=` and value)
/// can carry on the wire.
fn junk_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..40),
        1 => vec(any::<u8>(), 0..=255),
        1 => (select(vec![":", "-", "0", "ff", "é", "0:"]), 1..=255usize)
            .prop_map(|(s, n)| s.repeat(n).into_bytes()[..n].to_vec()),
    ]
}

fn spoil() -> impl Strategy<Value = Spoil> {
    let key = prop_oneof![
        select(KEYS.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z=]{0,6}",
    ];
    prop_oneof![
        6 => (any::<Index>(), byte_op()).prop_map(|(i, op)| Spoil::Value(i, op)),
        1 => (any::<Index>(), byte_op()).prop_map(|(i, op)| Spoil::Key(i, op)),
        1 => any::<Index>().prop_map(Spoil::NoValue),
        1 => any::<Index>().prop_map(Spoil::Drop),
        1 => any::<Index>().prop_map(Spoil::Repeat),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Spoil::Swap(i, j)),
        1 => any::<Index>().prop_map(Spoil::Upper),
        2 => (any::<Index>(), key, proptest::option::of(junk_value()))
            .prop_map(|(i, k, v)| Spoil::Junk(i, k, v)),
    ]
}

fn apply(pairs: &mut Pairs, s: &Spoil) {
    let n = pairs.len();
    if let Spoil::Junk(i, k, v) = s {
        pairs.insert(i.index(n + 1), (k.clone(), v.clone()));
        return;
    }
    if n == 0 {
        return;
    }
    match s {
        Spoil::Value(i, op) => {
            if let Some(v) = &mut pairs[i.index(n)].1 {
                apply_bytes(v, op);
            }
        }
        Spoil::Key(i, op) => {
            let key = &mut pairs[i.index(n)].0;
            let mut b = std::mem::take(key).into_bytes();
            apply_bytes(&mut b, op);
            *key = String::from_utf8_lossy(&b).into_owned();
        }
        Spoil::NoValue(i) => pairs[i.index(n)].1 = None,
        Spoil::Drop(i) => {
            pairs.remove(i.index(n));
        }
        Spoil::Repeat(i) => {
            let p = pairs[i.index(n)].clone();
            pairs.insert(i.index(n), p);
        }
        Spoil::Swap(i, j) => pairs.swap(i.index(n), j.index(n)),
        Spoil::Upper(i) => pairs[i.index(n)].0.make_ascii_uppercase(),
        Spoil::Junk(..) => {}
    }
}

/// A bad value for each field (other fields stay valid).
fn bad_field() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let digits = |s: &str| s.to_owned().into_bytes();
    let v = prop_oneof![
        select(vec![
            "", "0", "00000", "65536", "99999", "+1", "-1", "1.0", " 1", "1 ", "abc", "١"
        ])
        .prop_map(digits),
        "[0-9]{6,9}".prop_map(String::into_bytes),
    ];
    let uuid = |id: u128| Uuid::from_u128(id).hyphenated().to_string();
    let id = prop_oneof![
        any::<u128>().prop_map(move |id| uuid(id).replace('-', "").into_bytes()),
        any::<u128>().prop_map(move |id| format!("{{{}}}", uuid(id)).into_bytes()),
        (any::<u128>(), 0..36usize).prop_map(move |(id, i)| {
            let mut s = uuid(id).into_bytes();
            s[i] = if s[i] == b'-' { b'0' } else { b'g' };
            s
        }),
        (any::<u128>(), 0..36usize)
            .prop_map(move |(id, cut)| uuid(id).into_bytes()[..cut].to_vec()),
        Just(uuid(0).into_bytes()),
    ];
    let fp = prop_oneof![
        (
            any::<[u8; 8]>(),
            0..16usize,
            select(vec![b'g', b' ', b'+', b'-', b':', 0xff])
        )
            .prop_map(|(b, i, c)| {
                let mut s: Vec<u8> = b
                    .iter()
                    .flat_map(|x| format!("{x:02x}").into_bytes())
                    .collect();
                s[i] = c;
                s
            }),
        (any::<[u8; 8]>(), prop_oneof![0..16usize, 17..40usize]).prop_map(|(b, n)| {
            let s: String = b
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
                .repeat(3);
            s.into_bytes()[..n].to_vec()
        }),
    ];
    let name = prop_oneof![
        Just(vec![]),
        (MAX_NAME_BYTES + 1..MAX_NAME_BYTES + 20).prop_map(|n| vec![b'n'; n]),
        (
            display_name(),
            select(vec![
                "\x1b[2J", "\n", "\t", "\x7f", "\u{9b}", "\u{202e}", "\u{2066}", "\u{200f}",
                "\u{2028}"
            ]),
            any::<Index>()
        )
            .prop_map(|(name, bad, i)| {
                let mut b = name.into_bytes();
                let mut at = i.index(b.len() + 1);
                while !(at == b.len() || (b[at] as i8) >= -0x40) {
                    at -= 1;
                }
                b.splice(at..at, bad.bytes());
                b
            }),
        display_name().prop_map(|n| format!(" {n}").into_bytes()),
        display_name().prop_map(|n| format!("{n} ").into_bytes()),
        Just(vec![0xff, 0xfe, b'a']),
    ];
    let mac = prop_oneof![
        Just(b"".to_vec()),
        Just(b"02:42:ac:11:00".to_vec()),
        Just(b"02:42:ac:11:00:02:03".to_vec()),
        Just(b"02-42-ac-11-00-02".to_vec()),
        Just(b"02:42:ac:11:00:2".to_vec()),
        Just(b"02:42:ac:11:00:+2".to_vec()),
        Just(b"0242ac110002".to_vec()),
        (
            any::<[u8; 6]>(),
            0..17usize,
            select(vec![b'g', b' ', b'-', 0xff])
        )
            .prop_map(|(m, i, c)| {
                let mut s = m
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
                    .into_bytes();
                s[i] = c;
                s
            }),
    ];
    prop_oneof![
        v.prop_map(|b| ("v", b)),
        id.prop_map(|b| ("id", b)),
        fp.prop_map(|b| ("fp", b)),
        name.prop_map(|b| ("name", b)),
        mac.prop_map(|b| ("mac", b)),
    ]
}

/// `pairs` with the value of `key` replaced (or added).
fn with_value(mut pairs: Pairs, key: &str, value: Vec<u8>) -> Pairs {
    pairs.retain(|(k, _)| k != key);
    pairs.push((key.to_owned(), Some(value)));
    pairs
}

fn random_pairs() -> impl Strategy<Value = Pairs> {
    let key = prop_oneof![
        select(KEYS.to_vec()).prop_map(str::to_owned),
        any::<String>(),
    ];
    vec((key, proptest::option::of(junk_value())), 0..8)
}

// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(10_000))]

    /// What a node announces parses back to what it announced.
    #[test]
    fn announced_records_parse(r in record()) {
        let pairs = pairs_of(&r);
        prop_assert_eq!(parse(&pairs)?, Ok(r.clone()));
        check_accepted(&pairs, &r)?;
    }

    /// One bad field: refused, and the error names that field.
    #[test]
    fn a_bad_field_is_refused((key, value) in bad_field(), r in record()) {
        let pairs = with_value(pairs_of(&r), key, value);
        match parse(&pairs)? {
            Err(TxtError::Invalid { key: k, .. }) => prop_assert_eq!(k, key),
            other => prop_assert!(false, "{:?} from {:?}", other, pairs),
        }
    }

    /// Spoiled records: either refused or exactly what the first occurrence
    /// of each key said.
    #[test]
    fn spoiled_records(r in record(), spoils in vec(spoil(), 1..5)) {
        let mut pairs = pairs_of(&r);
        for s in &spoils {
            apply(&mut pairs, s);
        }
        if let Ok(got) = parse(&pairs)? {
            check_accepted(&pairs, &got)?;
        }
    }

    /// Any keys and values at all.
    #[test]
    fn random_records(pairs in random_pairs()) {
        if let Ok(got) = parse(&pairs)? {
            check_accepted(&pairs, &got)?;
        }
    }
}

proptest! {
    #![proptest_config(heavy_config(64))]

    /// Every single-byte change to every value and key of a valid record: each
    /// truncation, each bit flip, each byte set to a notable one.
    #[test]
    fn sweep(r in record()) {
        let pairs = pairs_of(&r);
        let notable = [b':', b'-', b'0', b'F', b'g', b' ', b'=', 0, 0x1b, 0xc2, 0xff];
        for i in 0..pairs.len() {
            let value = pairs[i].1.clone().unwrap_or_default();
            let mut variants: Vec<Vec<u8>> =
                (0..value.len()).map(|cut| value[..cut].to_vec()).collect();
            for at in 0..value.len() {
                for bit in 0..8 {
                    let mut v = value.clone();
                    v[at] ^= 1 << bit;
                    variants.push(v);
                }
                for &b in &notable {
                    let mut v = value.clone();
                    v[at] = b;
                    variants.push(v);
                }
            }
            for v in variants {
                let mut spoiled = pairs.clone();
                spoiled[i].1 = Some(v);
                if let Ok(got) = parse(&spoiled)? {
                    check_accepted(&spoiled, &got)?;
                }
            }
            let mut keyed = pairs.clone();
            for key in ["", "x", "V", "iD", "fp ", "nam", "names", "MAC"] {
                keyed[i].0 = key.to_owned();
                if let Ok(got) = parse(&keyed)? {
                    check_accepted(&keyed, &got)?;
                }
            }
        }
    }
}
