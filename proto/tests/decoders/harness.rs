//! The harness: the allocation budget, spoiling valid encodings (random
//! mutations and sweeps), and checking a decoder's answer against what was
//! expected and against its encoder.

use super::*;

pub(crate) type Check = std::result::Result<(), TestCaseError>;

// ---------------------------------------------------------------------------
// The allocation budget.

/// Peak bytes any decoder may hold whatever its input: room for small bounded
/// buffers (a 2 KiB key, a 1 KiB message) and RSA arithmetic in the handshake.
pub(crate) const FLOOR: u64 = 64 * 1024;
/// Peak bytes per input byte. The widest decoded form is an Answer decision
/// (10 bytes on the wire, 48 in memory) and a growing `Vec` briefly holds its
/// old and new buffers, so up to about 15x is legitimate; a length field
/// claiming 4 GiB (or a count claiming 100 000 entries) is caught by orders of
/// magnitude.
pub(crate) const PER_INPUT_BYTE: u64 = 16;

pub(crate) fn budget(input_len: usize) -> u64 {
    FLOOR + PER_INPUT_BYTE * input_len as u64
}

/// Runs `decode` with this thread's allocations counted. Fails the case when
/// it panics or its peak of live bytes exceeds the budget for `input`.
pub(crate) fn bounded<T>(
    what: &str,
    input: &[u8],
    decode: impl FnOnce() -> T,
) -> std::result::Result<T, TestCaseError> {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(catch_unwind(AssertUnwindSafe(decode))));
    let out = match out {
        Some(Ok(v)) => v,
        Some(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return Err(TestCaseError::fail(format!(
                "{what} panicked ({msg}) on {}",
                show(input)
            )));
        }
        None => unreachable!("measure runs its closure"),
    };
    prop_assert!(
        info.bytes_max <= budget(input.len()),
        "{what}: {} bytes live at peak while decoding {} bytes (budget {}): {}",
        info.bytes_max,
        input.len(),
        budget(input.len()),
        show(input)
    );
    Ok(out)
}

/// An input for a failure message (long ones cut).
pub(crate) fn show(b: &[u8]) -> String {
    if b.len() <= 256 {
        format!("{b:02x?}")
    } else {
        format!("{:02x?}... ({} bytes)", &b[..256], b.len())
    }
}

pub(crate) fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        // A failure prints its shrunk input: make it a unit test next to the
        // decoder rather than a file in the working tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// For tests whose cases take milliseconds (sweeps decode thousands of
/// inputs, handshakes sign): a twentieth of `PROPTEST_CASES` when it is set.
pub(crate) fn heavy_config(cases: u32) -> ProptestConfig {
    let mut c = config(cases);
    if std::env::var_os("PROPTEST_CASES").is_some() {
        c.cases = (c.cases / 20).max(1);
    }
    c
}

// ---------------------------------------------------------------------------
// Spoiling valid encodings.

/// Values worth writing over a length or count field.
pub(crate) fn big_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::MAX),
        Just(0xFFFF),
        Just(0xFFFF_FFFF),
        Just(0x8000_0000),
        Just(u64::from(MAX_FILES)),
        Just(u64::from(MAX_FILES) + 1),
        Just(MAX_PLAINTEXT as u64),
        Just(0),
        any::<u64>(),
    ]
}

#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Repeat(Index, usize),
    /// Overwrite `width` bytes, big-endian like every length on the wire.
    BigField(Index, usize, u64),
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..40).prop_map(Mutation::Extend),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => (any::<Index>(), 1..40usize).prop_map(|(i, n)| Mutation::Repeat(i, n)),
        4 => (any::<Index>(), select(vec![1usize, 2, 4, 8]), big_value())
            .prop_map(|(i, w, v)| Mutation::BigField(i, w, v)),
    ]
}

pub(crate) fn put_be(b: &mut [u8], value: u64) {
    let bytes = value.to_be_bytes();
    let n = b.len().min(8);
    b[..n].copy_from_slice(&bytes[8 - n..]);
}

pub(crate) fn mutate(mut b: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = b.len();
        match m {
            Mutation::Extend(extra) => b.extend_from_slice(extra),
            Mutation::Insert(i, extra) => {
                let at = i.index(len + 1);
                b.splice(at..at, extra.iter().copied());
            }
            _ if len == 0 => {}
            Mutation::FlipBit(i, bit) => b[i.index(len)] ^= 1 << bit,
            Mutation::SetByte(i, v) => b[i.index(len)] = *v,
            Mutation::Truncate(i) => b.truncate(i.index(len)),
            Mutation::Remove(i, n) => {
                let at = i.index(len);
                b.drain(at..(at + n).min(len));
            }
            Mutation::Repeat(i, n) => {
                let at = i.index(len);
                let chunk = b[at..(at + n).min(len)].to_vec();
                b.splice(at..at, chunk);
            }
            Mutation::BigField(i, width, value) => {
                let at = i.index(len);
                let end = (at + width).min(len);
                put_be(&mut b[at..end], *value);
            }
        }
    }
    b
}

/// Calls `check` on every single-point mutation of `valid`: each truncation,
/// two extensions, each bit flip, and each offset overwritten with notable
/// 1-, 2-, 4- and 8-byte values.
pub(crate) fn sweep(valid: &[u8], mut check: impl FnMut(&[u8]) -> Check) -> Check {
    for cut in 0..valid.len() {
        check(&valid[..cut])?;
    }
    for extra in [&[0u8][..], &[0xff; 9][..]] {
        check(&[valid, extra].concat())?;
    }
    let mut b = valid.to_vec();
    for at in 0..b.len() {
        for bit in 0..8 {
            b[at] ^= 1 << bit;
            check(&b)?;
            b[at] ^= 1 << bit;
        }
        for width in [1usize, 2, 4, 8] {
            let Some(field) = b.get(at..at + width) else {
                continue;
            };
            let mut v = [0u8; 8];
            v[8 - width..].copy_from_slice(field);
            let orig = u64::from_be_bytes(v);
            let top = 1u64 << (8 * width - 1);
            let mask = top | (top - 1);
            let mut values = vec![
                mask,
                top,
                orig.wrapping_add(1) & mask,
                orig.wrapping_sub(1) & mask,
            ];
            if width >= 4 {
                values.extend([u64::from(MAX_FILES), u64::from(MAX_FILES) + 1]);
            }
            for value in values {
                put_be(&mut b[at..at + width], value);
                check(&b)?;
            }
            b[at..at + width].copy_from_slice(&valid[at..at + width]);
        }
    }
    Ok(())
}

/// What a decoder must make of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// An untouched valid encoding.
    Accept,
    /// Past a limit, or misframed.
    Refuse,
    /// Random or mutated.
    Either,
}

#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) bytes: Vec<u8>,
    pub(crate) expect: Expect,
}

pub(crate) fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..4096),
    ]
}

/// A valid encoding with bytes after it or its last bytes cut: every message
/// is self-delimiting, so both must be refused.
pub(crate) fn misframed(valid: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (valid, vec(any::<u8>(), 1..8), any::<bool>())
        .prop_map(|(mut b, extra, cut)| {
            if cut && !b.is_empty() {
                b.truncate(b.len().saturating_sub(extra.len()));
            } else {
                b.extend_from_slice(&extra);
            }
            b
        })
        .boxed()
}

/// Random bytes; valid, invalid and (mostly) randomly mutated encodings.
pub(crate) fn input(
    valid: BoxedStrategy<Vec<u8>>,
    invalid: BoxedStrategy<Vec<u8>>,
) -> BoxedStrategy<Input> {
    let with = |expect: Expect| move |bytes: Vec<u8>| Input { bytes, expect };
    prop_oneof![
        2 => garbage().prop_map(with(Expect::Either)),
        1 => valid.clone().prop_map(with(Expect::Accept)),
        1 => misframed(valid.clone()).prop_map(with(Expect::Refuse)),
        1 => invalid.prop_map(with(Expect::Refuse)),
        6 => (valid, vec(mutation(), 1..5))
            .prop_map(|(v, m)| mutate(v, &m))
            .prop_map(with(Expect::Either)),
    ]
    .boxed()
}

/// Decodes `bytes` within budget and checks the result against `expect` and
/// the encoder: what is accepted must encode back to the same bytes.
pub(crate) fn check<T: Debug>(
    what: &str,
    bytes: &[u8],
    expect: Expect,
    decode: impl FnOnce(&[u8]) -> Result<T>,
    encode: impl FnOnce(&T) -> Result<Vec<u8>>,
) -> Check {
    match bounded(what, bytes, || decode(bytes))? {
        Ok(msg) => {
            prop_assert!(
                expect != Expect::Refuse,
                "{what} accepted {msg:?} from {}",
                show(bytes)
            );
            match encode(&msg) {
                Ok(again) => prop_assert!(
                    again == bytes,
                    "{what} accepted {msg:?}, which encodes to {} and not to {}",
                    show(&again),
                    show(bytes)
                ),
                Err(e) => prop_assert!(
                    false,
                    "{what} accepted {msg:?}, which its encoder refuses ({e}), from {}",
                    show(bytes)
                ),
            }
        }
        Err(e) => prop_assert!(
            expect != Expect::Accept,
            "{what} refused a valid encoding ({e}): {}",
            show(bytes)
        ),
    }
    Ok(())
}
