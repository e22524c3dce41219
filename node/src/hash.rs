//! BLAKE3 of many small files at once.
//!
//! A file of at most one BLAKE3 chunk (1 KiB) is compressed block after
//! block: `blake3::hash` has nothing to spread over the SIMD lanes, so it
//! runs at about 750 MB/s here (1.4 µs for 1 KiB), and a folder of such files
//! pays that on each end, as much CPU as everything else the sender does for
//! the file. BLAKE3's own parallel chunk hashing
//! (`blake3::platform::Platform::hash_many`, up to 16 chunks side by side
//! with AVX-512) hashes the same 1 KiB inputs in about 0.1 µs each when it
//! gets many of them at once. [`small_many`] gives it the files of a run of
//! small files together, then finishes each with its last (partial) block.
//!
//! `platform` is blake3's unstable API (the crate says: for benchmarks), so
//! the workspace pins blake3's version, and the tests check [`small_many`]
//! against `blake3::hash` for every length it takes.

use blake3::IncrementCounter;
use blake3::platform::Platform;

/// The largest input [`small_many`] hashes side by side: one BLAKE3 chunk.
/// Longer ones (and the empty one) are hashed one by one.
pub(crate) const SMALL: usize = blake3::CHUNK_LEN;

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
const ROOT: u8 = 1 << 3;

/// The BLAKE3 hash of each of `inputs`, in order, into `out` (cleared
/// first): the same as `blake3::hash` of each.
pub(crate) fn small_many(inputs: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    out.clear();
    out.resize(inputs.len(), [0; 32]);
    let platform = Platform::detect();
    // Inputs by their number of whole blocks before the last one (1..=15):
    // those side by side, each run of equal length through hash_many.
    let mut by_blocks: [Vec<usize>; SMALL / BLOCK] = Default::default();
    for (i, input) in inputs.iter().enumerate() {
        if input.len() <= BLOCK || input.len() > SMALL {
            // One block (nothing to gain) or more than one chunk (hashed
            // with SIMD across its own chunks).
            out[i] = *blake3::hash(input).as_bytes();
        } else {
            by_blocks[(input.len() - 1) / BLOCK].push(i);
        }
    }
    let mut cvs = Vec::new();
    for (blocks, run) in by_blocks.iter().enumerate() {
        if run.is_empty() {
            continue;
        }
        cvs.clear();
        cvs.resize(run.len() * 32, 0);
        leading_blocks(platform, blocks, inputs, run, &mut cvs);
        for (&i, cv) in run.iter().zip(cvs.chunks_exact(32)) {
            out[i] = last_block(platform, cv, &inputs[i][blocks * BLOCK..]);
        }
    }
}

/// The chaining values, after their first `blocks` whole blocks, of the
/// chunks `inputs[i]` for `i` in `run` (each longer than that), into `cvs`.
fn leading_blocks(
    platform: Platform,
    blocks: usize,
    inputs: &[&[u8]],
    run: &[usize],
    cvs: &mut [u8],
) {
    /// hash_many needs the length as a constant.
    fn many<const N: usize>(platform: Platform, inputs: &[&[u8]], run: &[usize], cvs: &mut [u8]) {
        let arrays: Vec<&[u8; N]> = run
            .iter()
            .map(|&i| {
                inputs[i][..N]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("longer than {N} bytes"))
            })
            .collect();
        // Each input is chunk 0 of its own tree, not ended yet.
        platform.hash_many(
            &arrays,
            &IV,
            0,
            IncrementCounter::No,
            0,
            CHUNK_START,
            0,
            cvs,
        );
    }
    match blocks {
        1 => many::<{ BLOCK }>(platform, inputs, run, cvs),
        2 => many::<{ 2 * BLOCK }>(platform, inputs, run, cvs),
        3 => many::<{ 3 * BLOCK }>(platform, inputs, run, cvs),
        4 => many::<{ 4 * BLOCK }>(platform, inputs, run, cvs),
        5 => many::<{ 5 * BLOCK }>(platform, inputs, run, cvs),
        6 => many::<{ 6 * BLOCK }>(platform, inputs, run, cvs),
        7 => many::<{ 7 * BLOCK }>(platform, inputs, run, cvs),
        8 => many::<{ 8 * BLOCK }>(platform, inputs, run, cvs),
        9 => many::<{ 9 * BLOCK }>(platform, inputs, run, cvs),
        10 => many::<{ 10 * BLOCK }>(platform, inputs, run, cvs),
        11 => many::<{ 11 * BLOCK }>(platform, inputs, run, cvs),
        12 => many::<{ 12 * BLOCK }>(platform, inputs, run, cvs),
        13 => many::<{ 13 * BLOCK }>(platform, inputs, run, cvs),
        14 => many::<{ 14 * BLOCK }>(platform, inputs, run, cvs),
        15 => many::<{ 15 * BLOCK }>(platform, inputs, run, cvs),
        _ => unreachable!("a chunk has 16 blocks; inputs of one block are hashed alone"),
    }
}

/// The root hash of a one-chunk input from its chaining value `cv` after
/// its leading blocks, and its last block `tail` (1..=64 bytes).
fn last_block(platform: Platform, cv: &[u8], tail: &[u8]) -> [u8; 32] {
    let mut words = [0u32; 8];
    for (w, b) in words.iter_mut().zip(cv.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let mut block = [0u8; BLOCK];
    block[..tail.len()].copy_from_slice(tail);
    // (tail.len() <= 64: the cast cannot truncate.)
    platform.compress_in_place(&mut words, &block, tail.len() as u8, 0, CHUNK_END | ROOT);
    let mut hash = [0u8; 32];
    for (b, w) in hash.chunks_exact_mut(4).zip(words) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    hash
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
        // Every length up to a little past one chunk, all in one call, so
        // that each run of equal length goes side by side.
        let inputs: Vec<Vec<u8>> = (0..=SMALL + 70).map(|len| bytes(len, 1)).collect();
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
        // interleaved with other lengths; and a second call reuses `out`.
        let mut inputs = Vec::new();
        for k in 0..37u8 {
            inputs.push(bytes(SMALL, k));
            inputs.push(bytes(65 + usize::from(k) * 7, k));
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
