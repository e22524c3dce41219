//! What the two generated sections of `PROTOCOL.md` share (the handshake's
//! worked example and the transfer's): hex layout, records sealed by the
//! book, and the check that the document holds what the code produces
//! (regenerated with `LOCALSTREAM_BLESS=1`).

#![allow(clippy::unwrap_used)]

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};

use crate::error::hex;
use crate::record::TAG_LEN;

/// The document the sections live in.
pub(crate) const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");

/// Lowercase hex wrapped at 64 hex digits (32 bytes) per line.
pub(crate) fn wrapped(bytes: &[u8]) -> String {
    let h = hex(bytes);
    let mut out = String::new();
    for (i, chunk) in h.as_bytes().chunks(64).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(std::str::from_utf8(chunk).unwrap());
    }
    out
}

/// nonce = IV XOR (4 zero bytes || u64 BE sequence number).
pub(crate) fn nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

/// Seals one record exactly as the document describes, without the record module.
pub(crate) fn seal_by_the_book(
    key: &[u8; 32],
    iv: &[u8; 12],
    seq: u64,
    typ: u8,
    pt: &[u8],
) -> Vec<u8> {
    let mut frame = vec![typ];
    frame.extend_from_slice(&((pt.len() + TAG_LEN) as u32).to_be_bytes());
    let aad = frame.clone();
    let mut body = pt.to_vec();
    let tag = Aes256Gcm::new(&(*key).into())
        .encrypt_inout_detached(&nonce(iv, seq).into(), &aad, body.as_mut_slice().into())
        .unwrap();
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&tag);
    frame
}

/// The byte range between `begin` and `end` markers in `doc`.
fn section(doc: &str, begin: &str, end: &str) -> std::ops::Range<usize> {
    let from = doc
        .find(begin)
        .unwrap_or_else(|| panic!("{DOC} has no `{begin}` marker"))
        + begin.len();
    let to = doc[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{DOC} has no `{end}` marker after `{begin}`"))
        + from;
    from..to
}

/// Checks that the section between the markers is `generated`, or rewrites
/// it under `LOCALSTREAM_BLESS=1`; `what` names it and the test filter
/// that regenerates it.
pub(crate) fn check_section(what: &str, filter: &str, begin: &str, end: &str, generated: &str) {
    let generated = format!("\n{generated}");
    let doc = std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"));
    let range = section(&doc, begin, end);
    let current = &doc[range.clone()];
    if current == generated {
        return;
    }
    if std::env::var("LOCALSTREAM_BLESS").as_deref() == Ok("1") {
        let mut new = doc.clone();
        new.replace_range(range, &generated);
        std::fs::write(DOC, new).unwrap_or_else(|e| panic!("writing {DOC}: {e}"));
        eprintln!("{what} in {DOC} regenerated");
        return;
    }
    let first_line = doc[..range.start].lines().count();
    let (old, new): (Vec<_>, Vec<_>) = (current.lines().collect(), generated.lines().collect());
    let at = old
        .iter()
        .zip(&new)
        .position(|(a, b)| a != b)
        .unwrap_or(old.len().min(new.len()));
    panic!(
        "the {what} in PROTOCOL.md is not what the code produces.\n\
         first difference at PROTOCOL.md line {}:\n  document: {:?}\n  code:     {:?}\n\
         (document section {} lines, generated {} lines)\n\
         If the wire change is intended, regenerate the section with\n  \
         LOCALSTREAM_BLESS=1 cargo test -p localstream-proto {filter}\n\
         and review the diff of PROTOCOL.md.",
        first_line + at,
        old.get(at).copied().unwrap_or("<end of section>"),
        new.get(at).copied().unwrap_or("<end of section>"),
        old.len(),
        new.len(),
    );
}
