//! BLAKE3 of many small files at once.
//!
//! BLAKE3 spreads a long input's 1 KiB chunks over the SIMD lanes (16 with
//! AVX-512), but a file of one chunk is compressed block after block: 1.4 µs
//! for 1 KiB here (750 MB/s), paid on each end, as much CPU as everything
//! else the sender does for such a file. Files of a few chunks fill a few
//! lanes (4 KiB: 1.5 µs), and lengths that are not a power of two take
//! several passes (6,000 bytes: 4.2 µs).
//!
//! [`small_many`] hashes the files of a run of small files together:
//! BLAKE3's parallel chunk hashing (`blake3::platform::Platform::hash_many`)
//! takes the same chunk (by position and length) of every file side by
//! side, each file's last block is compressed alone, and the trees are
//! merged level by level, the parents of all files side by side. For 64
//! files at a time: 0.2 µs for 1 KiB, 0.6 µs for 4 KiB, 0.9 µs for 6,000
//! bytes.
//!
//! `platform` is blake3's unstable API (the crate says: for benchmarks), so
//! the workspace pins blake3's version, and the tests check [`small_many`]
//! against `blake3::hash` for every length it takes.

use blake3::IncrementCounter;
use blake3::platform::Platform;

/// The largest input worth giving [`small_many`]: 16 BLAKE3 chunks. It
/// hashes those below side by side; from there `blake3::hash` fills the
/// SIMD lanes with one input's own chunks. (Inputs of one block, or none,
/// gain nothing either: those too are hashed one by one.)
pub(crate) const SMALL: usize = 16 * CHUNK;

/// Whether `len` bytes are hashed alone (see [`SMALL`]).
fn alone(len: usize) -> bool {
    len <= BLOCK || len >= SMALL
}

const CHUNK: usize = blake3::CHUNK_LEN;
const BLOCK: usize = blake3::BLOCK_LEN;

/// BLAKE3's initial chaining value (the unkeyed hash's key words).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];

/// Block flags (BLAKE3 specification, section 2.1).
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 1 << 1;
const PARENT: u8 = 1 << 2;
const ROOT: u8 = 1 << 3;

/// A run of `len` bytes at the start of a chunk, compressed side by side
/// with the other runs of that length and chunk counter: a whole chunk
/// (`len` = 1 KiB, it ends there), or the whole blocks before a chunk's last
/// one (`len` < 1 KiB).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    counter: u64,
    len: usize,
    /// Where the chunk starts: input and byte.
    input: usize,
    at: usize,
}

/// The BLAKE3 hash of each of `inputs`, in order, into `out` (cleared
/// first): the same as `blake3::hash` of each.
pub(crate) fn small_many(inputs: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    out.clear();
    out.resize(inputs.len(), [0; 32]);
    let platform = Platform::detect();
    // Every chunk of the inputs taken, split into the runs hash_many takes.
    let mut runs = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if alone(input.len()) {
            out[i] = *blake3::hash(input).as_bytes();
            continue;
        }
        for (k, chunk) in input.chunks(CHUNK).enumerate() {
            let len = if chunk.len() == CHUNK && input.len() > CHUNK {
                CHUNK
            } else {
                // A chunk's last block is compressed alone (it may be short;
                // it is the root's when the input is one chunk).
                (chunk.len() - 1) / BLOCK * BLOCK
            };
            if len > 0 {
                runs.push(Run {
                    counter: k as u64,
                    len,
                    input: i,
                    at: k * CHUNK,
                });
            }
        }
    }
    runs.sort_unstable();
    // Their chaining values, in the order of `runs`.
    let mut cvs = vec![0u8; runs.len() * 32];
    let mut from = 0;
    while from < runs.len() {
        let (counter, len) = (runs[from].counter, runs[from].len);
        let to = from
            + runs[from..]
                .iter()
                .take_while(|r| (r.counter, r.len) == (counter, len))
                .count();
        compress_runs(
            platform,
            inputs,
            &runs[from..to],
            &mut cvs[from * 32..to * 32],
        );
        from = to;
    }
    // Each input's chunk chaining values (its hash when it is one chunk),
    // then its tree.
    let mut trees: Vec<(usize, Vec<[u8; 32]>)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if alone(input.len()) {
            continue;
        }
        let mut chunk_cvs = Vec::with_capacity(input.len().div_ceil(CHUNK));
        let one_chunk = input.len() <= CHUNK;
        for (k, chunk) in input.chunks(CHUNK).enumerate() {
            let run = Run {
                counter: k as u64,
                len: if chunk.len() == CHUNK && !one_chunk {
                    CHUNK
                } else {
                    (chunk.len() - 1) / BLOCK * BLOCK
                },
                input: i,
                at: k * CHUNK,
            };
            let cv = match runs.binary_search(&run) {
                Ok(r) => cvs[r * 32..r * 32 + 32]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("32 bytes")),
                // A chunk of one (short) block: it starts from the key.
                Err(_) => words_to_bytes(&IV),
            };
            if run.len == CHUNK {
                chunk_cvs.push(cv);
                continue;
            }
            let flags = CHUNK_END
                | if run.len == 0 { CHUNK_START } else { 0 }
                | if one_chunk { ROOT } else { 0 };
            chunk_cvs.push(last_block(
                platform,
                &cv,
                &chunk[run.len..],
                k as u64,
                flags,
            ));
        }
        match chunk_cvs.as_slice() {
            [root] => out[i] = *root,
            _ => trees.push((i, chunk_cvs)),
        }
    }
    merge_trees(platform, &mut trees, out);
}

/// Merges each input's chunk chaining values into its root hash, level by
/// level, the parents of one level side by side: at each level, neighbours
/// pair up and an odd last one goes up alone, which is BLAKE3's tree (whose
/// left subtrees are always the largest power of two that fits).
fn merge_trees(platform: Platform, trees: &mut [(usize, Vec<[u8; 32]>)], out: &mut [[u8; 32]]) {
    let mut blocks: Vec<[u8; 64]> = Vec::new();
    let mut parents = Vec::new();
    while trees.iter().any(|(_, cvs)| cvs.len() > 1) {
        // The roots (two left) apart from the other parents.
        for root in [false, true] {
            blocks.clear();
            for (_, cvs) in trees.iter() {
                if cvs.len() > 1 && (cvs.len() == 2) == root {
                    for pair in cvs.chunks_exact(2) {
                        let mut block = [0u8; 64];
                        block[..32].copy_from_slice(&pair[0]);
                        block[32..].copy_from_slice(&pair[1]);
                        blocks.push(block);
                    }
                }
            }
            if blocks.is_empty() {
                continue;
            }
            let arrays: Vec<&[u8; 64]> = blocks.iter().collect();
            parents.clear();
            parents.resize(blocks.len() * 32, 0);
            let flags = PARENT | if root { ROOT } else { 0 };
            platform.hash_many(
                &arrays,
                &IV,
                0,
                IncrementCounter::No,
                flags,
                0,
                0,
                &mut parents,
            );
            let mut made = parents.chunks_exact(32);
            for (i, cvs) in trees.iter_mut() {
                if cvs.len() < 2 || (cvs.len() == 2) != root {
                    continue;
                }
                let odd = (cvs.len() % 2 == 1).then(|| cvs[cvs.len() - 1]);
                let pairs = cvs.len() / 2;
                cvs.clear();
                for parent in made.by_ref().take(pairs) {
                    cvs.push(
                        parent
                            .try_into()
                            .unwrap_or_else(|_| unreachable!("32 bytes")),
                    );
                }
                cvs.extend(odd);
                if root {
                    out[*i] = cvs[0];
                }
            }
        }
    }
}

/// Compresses the runs (all of one chunk counter and length) side by side,
/// their chaining values into `cvs`.
fn compress_runs(platform: Platform, inputs: &[&[u8]], runs: &[Run], cvs: &mut [u8]) {
    /// hash_many needs the length as a constant.
    fn many<const N: usize>(platform: Platform, inputs: &[&[u8]], runs: &[Run], cvs: &mut [u8]) {
        let arrays: Vec<&[u8; N]> = runs
            .iter()
            .map(|r| {
                inputs[r.input][r.at..r.at + N]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("a run of {N} bytes"))
            })
            .collect();
        // A whole chunk ends there; the leading blocks of one do not.
        let end = if N == CHUNK { CHUNK_END } else { 0 };
        platform.hash_many(
            &arrays,
            &IV,
            runs[0].counter,
            IncrementCounter::No,
            0,
            CHUNK_START,
            end,
            cvs,
        );
    }
    match runs[0].len / BLOCK {
        1 => many::<{ BLOCK }>(platform, inputs, runs, cvs),
        2 => many::<{ 2 * BLOCK }>(platform, inputs, runs, cvs),
        3 => many::<{ 3 * BLOCK }>(platform, inputs, runs, cvs),
        4 => many::<{ 4 * BLOCK }>(platform, inputs, runs, cvs),
        5 => many::<{ 5 * BLOCK }>(platform, inputs, runs, cvs),
        6 => many::<{ 6 * BLOCK }>(platform, inputs, runs, cvs),
        7 => many::<{ 7 * BLOCK }>(platform, inputs, runs, cvs),
        8 => many::<{ 8 * BLOCK }>(platform, inputs, runs, cvs),
        9 => many::<{ 9 * BLOCK }>(platform, inputs, runs, cvs),
        10 => many::<{ 10 * BLOCK }>(platform, inputs, runs, cvs),
        11 => many::<{ 11 * BLOCK }>(platform, inputs, runs, cvs),
        12 => many::<{ 12 * BLOCK }>(platform, inputs, runs, cvs),
        13 => many::<{ 13 * BLOCK }>(platform, inputs, runs, cvs),
        14 => many::<{ 14 * BLOCK }>(platform, inputs, runs, cvs),
        15 => many::<{ 15 * BLOCK }>(platform, inputs, runs, cvs),
        16 => many::<{ CHUNK }>(platform, inputs, runs, cvs),
        _ => unreachable!("runs are 1 to 16 blocks"),
    }
}

/// A chunk's chaining value (or, with `ROOT`, the input's hash) from the
/// chaining value `cv` after its leading blocks and its last block `tail`
/// (1..=64 bytes).
fn last_block(platform: Platform, cv: &[u8; 32], tail: &[u8], counter: u64, flags: u8) -> [u8; 32] {
    let mut words = [0u32; 8];
    for (w, b) in words.iter_mut().zip(cv.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut block = [0u8; BLOCK];
    block[..tail.len()].copy_from_slice(tail);
    // (tail.len() <= 64: the cast cannot truncate.)
    platform.compress_in_place(&mut words, &block, tail.len() as u8, counter, flags);
    words_to_bytes(&words)
}

fn words_to_bytes(words: &[u32; 8]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (b, w) in bytes.chunks_exact_mut(4).zip(words) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes that differ from those of every other length and seed.
    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (len as u8))
            .collect()
    }

    #[test]
    fn every_length_hashes_as_blake3_alone_would() {
        // Every length up to a little past the largest, all in one call, so
        // that the chunks of equal length and position go side by side.
        let inputs: Vec<Vec<u8>> = (0..=SMALL + 70).map(|len| bytes(len, 1)).collect();
        assert_eq!(SMALL, 16 * 1024);
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        small_many(&refs, &mut out);
        assert_eq!(out.len(), inputs.len());
        for (input, hash) in inputs.iter().zip(&out) {
            assert_eq!(hash, blake3::hash(input).as_bytes(), "len {}", input.len());
        }
    }

    #[test]
    fn many_inputs_of_one_length_and_mixed_lengths_keep_their_order() {
        // 37 of 1 KiB (more than one SIMD pass: 16 + 16 + 5), each different,
        // interleaved with other lengths of one and of several chunks; and a
        // second call reuses `out`.
        let mut inputs = Vec::new();
        for k in 0..37u8 {
            inputs.push(bytes(CHUNK, k));
            inputs.push(bytes(65 + usize::from(k) * 7, k));
            inputs.push(bytes(3 * 1024 + usize::from(k) * 29, k));
            inputs.push(bytes(9 * 1024 + usize::from(k) * 151, k));
        }
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut out = vec![[7; 32]; 3];
        small_many(&refs, &mut out);
        let expected: Vec<[u8; 32]> = inputs.iter().map(|i| *blake3::hash(i).as_bytes()).collect();
        assert_eq!(out, expected);
        small_many(&refs[..5], &mut out);
        assert_eq!(out, expected[..5]);
        small_many(&[], &mut out);
        assert!(out.is_empty());
    }
}
