//! The "Worked example: a transfer" section of `PROTOCOL.md`, generated from
//! the real code.
//!
//! The test lays out every record plaintext of one small transfer field by
//! field, following the tables of `PROTOCOL.md` (plain byte pushes, not the
//! `transfer` encoders), seals each one with AES-256-GCM directly (not the
//! `record` module), and checks that the crate's encoders and decoders, its
//! `Sealer` and its `Opener` agree byte for byte. It also computes the
//! receiver's partial-file key with the formula `node/src/fsutil/resumable.rs`
//! (`partial_key`) uses, written out again here: `proto` does not depend on
//! `node`. The result is rendered as Markdown and compared byte for byte with
//! the text between the `worked-transfer` markers in `PROTOCOL.md`.
//!
//! The traffic keys are fixed values, not a handshake's output, so this
//! example does not change when the handshake does.
//!
//! Regenerate the section after an intended wire change with
//! `LOCALSTREAM_BLESS=1 cargo test -p localstream-proto worked_transfer`.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use crate::codec::{FrameHeader, HEADER_LEN};
use crate::error::hex;
use crate::record::{DirectionKeys, Opener, RecordType, Sealer, TAG_LEN};
use crate::status::Status;
use crate::transfer::{
    ATTR_DIR, ATTR_EXEC, Answer, FEATURE_ZSTD, FileDecision, FileEnd, FinalStatus, OfferCollector,
    OfferEntry, OfferPart, Resume, ResumeFile, TransferEnd,
};
use crate::worked_doc::{check_section, nonce, seal_by_the_book, wrapped};

const BEGIN: &str = "<!-- worked-transfer:begin -->";
const END: &str = "<!-- worked-transfer:end -->";

/// The sender's node id (as its Identity proves it): "alice" padded with zeros.
const SENDER_ID: [u8; 16] = *b"alice\0\0\0\0\0\0\0\0\0\0\0";
/// Bytes of the file the receiver holds from an interrupted transfer.
const HELD: usize = 10;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const SCRIPT: &[u8] = b"#!/bin/sh\necho hello\n";
const STATUS_MESSAGE: &str = "all saved";
const DECLINED_MESSAGE: &str = "the receiver declined";
/// The label of the partial-file key (`node/src/fsutil/resumable.rs`).
const PARTIAL_LABEL: &[u8] = b"localstream partial v1\0";
/// Hex digits of the key in a partial file's name.
const PARTIAL_KEY_HEX: usize = 16;

/// `N` consecutive byte values from `first`: the fixed keys and IVs.
fn counting<const N: usize>(first: u8) -> [u8; N] {
    std::array::from_fn(|i| first.wrapping_add(i as u8))
}

/// A quoted, escaped rendering of some ASCII bytes.
fn quoted(bytes: &[u8]) -> String {
    format!("{:?}", std::str::from_utf8(bytes).unwrap())
}

/// One field of a plaintext: its bytes and what they mean.
struct Field {
    bytes: Vec<u8>,
    note: String,
}

/// A plaintext built field by field, as the document's tables lay it out.
#[derive(Default)]
struct Layout(Vec<Field>);

impl Layout {
    fn put(&mut self, bytes: &[u8], note: impl Into<String>) -> &mut Self {
        self.0.push(Field {
            bytes: bytes.to_vec(),
            note: note.into(),
        });
        self
    }
    fn u8(&mut self, v: u8, note: impl Into<String>) -> &mut Self {
        self.put(&[v], note)
    }
    fn u16(&mut self, v: u16, note: impl Into<String>) -> &mut Self {
        self.put(&v.to_be_bytes(), note)
    }
    fn u32(&mut self, v: u32, note: impl Into<String>) -> &mut Self {
        self.put(&v.to_be_bytes(), note)
    }
    fn u64(&mut self, v: u64, note: impl Into<String>) -> &mut Self {
        self.put(&v.to_be_bytes(), note)
    }
    /// `str16`: u16 length, then the bytes.
    fn str16(&mut self, s: &str, what: &str) -> &mut Self {
        self.u16(s.len() as u16, format!("{what} length {}", s.len()));
        if !s.is_empty() {
            self.put(s.as_bytes(), format!("{what} {s:?}"));
        }
        self
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|f| f.bytes.clone()).collect()
    }
    /// One line per field: its hex, then its meaning.
    fn render(&self) -> String {
        let width = self.0.iter().map(|f| 2 * f.bytes.len()).max().unwrap_or(0);
        let mut out = String::from("```text\n");
        for f in &self.0 {
            let _ = writeln!(out, "{:<width$}  {}", hex(&f.bytes), f.note);
        }
        out.push_str("```\n");
        out
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Sender (initiator) to receiver (responder): the i2r keys.
    I2r,
    /// Receiver to sender: the r2i keys.
    R2i,
}

/// One record of the example, in wire order.
struct Step {
    name: &'static str,
    dir: Dir,
    typ: RecordType,
    /// The plaintext, field by field (by the book).
    layout: Layout,
    /// The plaintext as the crate's encoder makes it.
    encoded: Vec<u8>,
    /// A sentence under the heading (may be empty).
    remark: String,
}

/// Partial-file key input, as `node/src/fsutil/resumable.rs` hashes it.
fn partial_key_input(sender: &[u8; 16], path: &str, size: u64) -> Layout {
    let mut l = Layout::default();
    l.put(PARTIAL_LABEL, "\"localstream partial v1\\0\" (23 bytes)")
        .put(sender, "sender node id")
        .put(
            &(path.len() as u64).to_le_bytes(),
            format!("u64le(path length) = {}", path.len()),
        )
        .put(path.as_bytes(), format!("path {path:?}"))
        .put(&size.to_le_bytes(), format!("u64le(size) = {size}"));
    l
}

/// Builds the transfer, checks everything, and renders the Markdown fragment.
fn render() -> String {
    let (key_i2r, iv_i2r) = (counting::<32>(0x00), counting::<12>(0x20));
    let (key_r2i, iv_r2i) = (counting::<32>(0x40), counting::<12>(0x60));

    // --- The offer: a directory, a file (partly held by the receiver), an executable.
    let dir_path = "docs";
    let file_path = "docs/alphabet.txt";
    let exec_path = "run.sh";
    let entries = vec![
        OfferEntry {
            path: dir_path.into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
        },
        OfferEntry::file(file_path, ALPHABET.len() as u64),
        OfferEntry {
            path: exec_path.into(),
            size: SCRIPT.len() as u64,
            attrs: ATTR_EXEC,
            mtime: None,
        },
    ];
    let total_bytes = (ALPHABET.len() + SCRIPT.len()) as u64;

    // --- Hashes: the held prefix, and each whole file (BLAKE3, unkeyed, 32 bytes).
    let held_hash = *blake3::hash(&ALPHABET[..HELD]).as_bytes();
    let alphabet_hash = *blake3::hash(ALPHABET).as_bytes();
    let script_hash = *blake3::hash(SCRIPT).as_bytes();
    // Both sides continue the prefix's BLAKE3 state: the FileEnd hash covers byte 0 on.
    let mut continued = blake3::Hasher::new();
    continued.update(&ALPHABET[..HELD]);
    assert_eq!(continued.finalize().as_bytes(), &held_hash);
    continued.update(&ALPHABET[HELD..]);
    assert_eq!(continued.finalize().as_bytes(), &alphabet_hash);

    // --- The partial-file key of the held file.
    let key_input = partial_key_input(&SENDER_ID, file_path, ALPHABET.len() as u64);
    let key_hash = *blake3::hash(&key_input.bytes()).as_bytes();
    let partial_key = hex(&key_hash)[..PARTIAL_KEY_HEX].to_owned();
    let partial_name = format!("alphabet.txt.{partial_key}.lspart");

    let mut steps = vec![];

    // Offer.
    let parts = OfferPart::split(&entries).unwrap();
    assert_eq!(parts.len(), 1, "the example offer fits one record");
    let mut encoded = vec![];
    parts[0].encode(&mut encoded).unwrap();
    let mut l = Layout::default();
    l.u32(3, "total entries: 3 (the directory counts)")
        .u64(
            total_bytes,
            format!(
                "total bytes: {total_bytes} = 0 + {} + {}",
                ALPHABET.len(),
                SCRIPT.len()
            ),
        )
        .u32(3, "count: 3 entries in this record");
    for (i, (e, what)) in entries
        .iter()
        .zip(["directory", "plain file", "executable"])
        .enumerate()
    {
        l.str16(&e.path, &format!("entry {i}: path"))
            .u64(e.size, format!("entry {i}: size {}", e.size))
            .u8(
                e.attrs,
                format!("entry {i}: attrs 0x{:02x} ({what})", e.attrs),
            );
    }
    steps.push(Step {
        name: "Offer",
        dir: Dir::I2r,
        typ: RecordType::Offer,
        layout: l,
        encoded,
        remark: String::new(),
    });

    // Answer: accepted, compression offered, the held prefix of entry 1.
    let answer = Answer {
        status: Status::Ok,
        message: String::new(),
        features: FEATURE_ZSTD,
        files: vec![
            FileDecision::whole(),
            FileDecision {
                status: Status::Ok,
                offset: HELD as u64,
                held: held_hash,
            },
            FileDecision::whole(),
        ],
    };
    let mut encoded = vec![];
    answer.encode(&mut encoded).unwrap();
    let mut l = Layout::default();
    l.u16(200, "status: 200, accepted")
        .str16("", "message")
        .u32(1, "features: 0x1, DataZstd records accepted")
        .u32(3, "count: 3 decisions, one per entry")
        .u16(200, "entry 0 (directory): status 200, created")
        .u64(0, "entry 0: offset 0")
        .u16(200, "entry 1: status 200")
        .u64(HELD as u64, format!("entry 1: offset {HELD}, bytes held"))
        .put(
            &held_hash,
            format!("entry 1: held = BLAKE3(bytes 0..{HELD}), present since offset > 0"),
        )
        .u16(200, "entry 2: status 200")
        .u64(0, "entry 2: offset 0 (no held hash follows)");
    steps.push(Step {
        name: "Answer",
        dir: Dir::R2i,
        typ: RecordType::Answer,
        layout: l,
        encoded,
        remark: String::new(),
    });

    // Resume: the sender's own first 10 bytes hash to `held`, so it continues there.
    let resume = Resume {
        files: vec![ResumeFile {
            index: 1,
            offset: HELD as u64,
        }],
    };
    let mut encoded = vec![];
    resume.encode(&mut encoded).unwrap();
    let mut l = Layout::default();
    l.u32(1, "count: 1 (the one decision with an offset)")
        .u32(1, "index 1")
        .u64(
            HELD as u64,
            format!("offset {HELD}: the prefix matches, sending from byte {HELD}"),
        );
    steps.push(Step {
        name: "Resume",
        dir: Dir::I2r,
        typ: RecordType::Resume,
        layout: l,
        encoded,
        remark: format!(
            "The sender hashed bytes 0..{HELD} of its own `{file_path}` and got the Answer's \
             `held`; had they differed, the offset here would be 0 and the receiver would empty \
             its partial file."
        ),
    });

    // Data and FileEnd for each file; the directory has none.
    for (index, path, content, from, hash) in [
        (1u32, file_path, ALPHABET, HELD, alphabet_hash),
        (2, exec_path, SCRIPT, 0, script_hash),
    ] {
        let data = &content[from..];
        let mut l = Layout::default();
        l.put(
            data,
            format!(
                "bytes {from}..{} of {path}: {}",
                content.len(),
                quoted(data)
            ),
        );
        steps.push(Step {
            name: "Data",
            dir: Dir::I2r,
            typ: RecordType::Data,
            layout: l,
            encoded: data.to_vec(),
            remark: if index == 1 {
                "Plain Data although the Answer accepts DataZstd: the sender chooses per \
                 record, and bytes this few do not shrink."
                    .into()
            } else {
                String::new()
            },
        });
        let end = FileEnd {
            index,
            size: content.len() as u64,
            hash,
        };
        let mut encoded = vec![];
        end.encode(&mut encoded);
        let mut l = Layout::default();
        l.u32(index, format!("index {index}"))
            .u64(
                content.len() as u64,
                format!("size {}, the whole file", content.len()),
            )
            .put(
                &hash,
                format!("BLAKE3 of the whole file, bytes 0..{}", content.len()),
            );
        steps.push(Step {
            name: "FileEnd",
            dir: Dir::I2r,
            typ: RecordType::FileEnd,
            layout: l,
            encoded,
            remark: String::new(),
        });
    }

    // TransferEnd: two FileEnds (not the directory), 16 + 21 bytes in Data records.
    let sent = (ALPHABET.len() - HELD + SCRIPT.len()) as u64;
    let end = TransferEnd {
        files: 2,
        bytes: sent,
    };
    let mut encoded = vec![];
    end.encode(&mut encoded);
    let mut l = Layout::default();
    l.u32(2, "files: 2 FileEnd records (the directory has none)")
        .u64(
            sent,
            format!(
                "bytes: {sent} = {} + {} sent in Data (the {HELD} held bytes do not count)",
                ALPHABET.len() - HELD,
                SCRIPT.len()
            ),
        );
    steps.push(Step {
        name: "TransferEnd",
        dir: Dir::I2r,
        typ: RecordType::TransferEnd,
        layout: l,
        encoded,
        remark: String::new(),
    });

    // Status: one per entry, the directory included.
    let status = FinalStatus {
        status: Status::Ok,
        message: STATUS_MESSAGE.into(),
        files: vec![Status::Ok; 3],
    };
    let mut encoded = vec![];
    status.encode(&mut encoded).unwrap();
    let mut l = Layout::default();
    l.u16(200, "status: 200, every accepted entry verified")
        .str16(STATUS_MESSAGE, "message")
        .u32(3, "count: 3, one per entry")
        .u16(200, "entry 0 (directory): 200, it exists")
        .u16(200, "entry 1: 200, verified and saved")
        .u16(200, "entry 2: 200, verified and saved (mode 0755)");
    steps.push(Step {
        name: "Status",
        dir: Dir::R2i,
        typ: RecordType::Status,
        layout: l,
        encoded,
        remark: String::new(),
    });

    // --- Every plaintext: by the book = the crate's encoding, and it decodes back.
    for s in &steps {
        assert_eq!(s.layout.bytes(), s.encoded, "{} plaintext", s.name);
    }
    let pt = |k: usize| steps[k].encoded.as_slice();
    let part = OfferPart::decode(pt(0)).unwrap();
    assert_eq!(part, parts[0]);
    assert_eq!(
        OfferCollector::default().add(part).unwrap(),
        Some((entries.clone(), total_bytes))
    );
    assert_eq!(Answer::decode(pt(1)).unwrap(), answer);
    assert_eq!(Resume::decode(pt(2)).unwrap(), resume);
    assert_eq!(FileEnd::decode(pt(4)).unwrap().hash, alphabet_hash);
    assert_eq!(FileEnd::decode(pt(6)).unwrap().hash, script_hash);
    assert_eq!(TransferEnd::decode(pt(7)).unwrap(), end);
    assert_eq!(FinalStatus::decode(pt(8)).unwrap(), status);

    // --- Sealing: by the book = the crate's Sealer, and its Opener takes each one back.
    let keys = |d: Dir| match d {
        Dir::I2r => (key_i2r, iv_i2r),
        Dir::R2i => (key_r2i, iv_r2i),
    };
    let dk = |d: Dir| {
        let (key, iv) = keys(d);
        DirectionKeys { key, iv }
    };
    let (mut seal_i2r, mut seal_r2i) = (Sealer::new(&dk(Dir::I2r)), Sealer::new(&dk(Dir::R2i)));
    let (mut open_i2r, mut open_r2i) = (Opener::new(&dk(Dir::I2r)), Opener::new(&dk(Dir::R2i)));
    let mut sealed = vec![];
    for s in &steps {
        let (sealer, opener) = match s.dir {
            Dir::I2r => (&mut seal_i2r, &mut open_i2r),
            Dir::R2i => (&mut seal_r2i, &mut open_r2i),
        };
        let seq = sealer.sequence();
        let (key, iv) = keys(s.dir);
        let book = seal_by_the_book(&key, &iv, seq, s.typ as u8, &s.encoded);
        let mut record = vec![];
        sealer.seal(s.typ, &s.encoded, &mut record).unwrap();
        assert_eq!(record, book, "{} sealed", s.name);
        let header = FrameHeader {
            typ: record[0],
            len: record.len() - HEADER_LEN,
        };
        let mut body = record[HEADER_LEN..].to_vec();
        let (typ, opened) = opener.open_in_place(header, &mut body).unwrap();
        assert_eq!((typ, &*opened), (s.typ, s.encoded.as_slice()), "{}", s.name);
        sealed.push((seq, nonce(&iv, seq), record));
    }

    // A refusing Answer, for comparison.
    let refusal = Answer {
        status: Status::Declined,
        message: DECLINED_MESSAGE.into(),
        features: 0,
        files: vec![],
    };
    let mut refusal_encoded = vec![];
    refusal.encode(&mut refusal_encoded).unwrap();
    let mut refusal_layout = Layout::default();
    refusal_layout
        .u16(403, "status: 403, declined (the whole offer)")
        .str16(DECLINED_MESSAGE, "message")
        .u32(0, "features: 0")
        .u32(0, "count: 0, no decisions");
    assert_eq!(refusal_layout.bytes(), refusal_encoded, "refusing Answer");
    assert_eq!(Answer::decode(&refusal_encoded).unwrap(), refusal);

    // --- Render.
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- Generated by proto/src/worked_transfer.rs; do not edit by hand. Regenerate with\n     \
         LOCALSTREAM_BLESS=1 cargo test -p localstream-proto worked_transfer -->\n"
    );
    let _ = writeln!(md, "#### Inputs\n");
    let _ = writeln!(
        md,
        "| | i2r (sender → receiver) | r2i (receiver → sender) |\n|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| key (bytes `00`..`1f` / `40`..`5f`) | `{}` | `{}` |",
        hex(&key_i2r),
        hex(&key_r2i)
    );
    let _ = writeln!(
        md,
        "| IV (bytes `20`..`2b` / `60`..`6b`) | `{}` | `{}` |\n",
        hex(&iv_i2r),
        hex(&iv_r2i)
    );
    let _ = writeln!(
        md,
        "Both sequence numbers start at 0. The sender's node id (from its Identity) is \
         `{}` (`alice` padded with zeros to 16 bytes).\n",
        hex(&SENDER_ID)
    );
    let _ = writeln!(
        md,
        "| index | path | size | attrs | content |\n|---|---|---|---|---|"
    );
    let _ = writeln!(md, "| 0 | `{dir_path}` | 0 | `0x01` directory | |");
    let _ = writeln!(
        md,
        "| 1 | `{file_path}` | {} | `0x00` | `{}` |",
        ALPHABET.len(),
        quoted(ALPHABET)
    );
    let _ = writeln!(
        md,
        "| 2 | `{exec_path}` | {} | `0x02` executable | `{}` |\n",
        SCRIPT.len(),
        quoted(SCRIPT)
    );
    let _ = writeln!(
        md,
        "The receiver holds the first {HELD} bytes of entry 1 (`{}`) from an interrupted \
         transfer from the same sender, in its partial file (below).\n",
        quoted(&ALPHABET[..HELD])
    );

    let _ = writeln!(md, "#### Partial-file key\n");
    let _ = writeln!(
        md,
        "The receiver finds the held bytes under the name the reference node gives every \
         partial file (`node/src/fsutil/resumable.rs`, `partial_key`): the BLAKE3 input is\n"
    );
    md.push_str(&key_input.render());
    let _ = writeln!(
        md,
        "\nBLAKE3 of these {} bytes is `{}`; the key is its first {PARTIAL_KEY_HEX} hex \
         digits, `{partial_key}`, so the partial file is `docs/{partial_name}` under the \
         destination.\n",
        key_input.bytes().len(),
        hex(&key_hash)
    );

    let _ = writeln!(md, "#### Records in wire order\n");
    for (k, (s, (seq, n, record))) in steps.iter().zip(&sealed).enumerate() {
        let (arrow, keys) = match s.dir {
            Dir::I2r => ("sender → receiver", "i2r"),
            Dir::R2i => ("receiver → sender", "r2i"),
        };
        let _ = writeln!(
            md,
            "{}. **{}**, {arrow}: type `0x{:02x}`, plaintext {} bytes, sealed with {keys} \
             sequence number {seq}, nonce `{}`; record {} bytes.\n",
            k + 1,
            s.name,
            s.typ as u8,
            s.encoded.len(),
            hex(n),
            record.len()
        );
        if !s.remark.is_empty() {
            let _ = writeln!(md, "{}\n", s.remark);
        }
        md.push_str(&s.layout.render());
        md.push('\n');
        let _ = writeln!(
            md,
            "Record (header `{}`, the associated data; then ciphertext; tag `{}`):\n",
            hex(&record[..HEADER_LEN]),
            hex(&record[record.len() - TAG_LEN..])
        );
        let _ = writeln!(md, "```text\n{}\n```\n", wrapped(record));
    }
    let _ = writeln!(
        md,
        "Both sides then close. Entry 1's FileEnd hash covers all {} bytes although only {} \
         crossed the wire: the receiver continued the BLAKE3 state of its held prefix.\n",
        ALPHABET.len(),
        ALPHABET.len() - HELD
    );

    let _ = writeln!(md, "#### A refusing Answer\n");
    let _ = writeln!(
        md,
        "Had the receiver's user declined, the Answer plaintext would have been (and nothing \
         would follow it):\n"
    );
    md.push_str(&refusal_layout.render());
    md
}

#[test]
fn protocol_md_worked_transfer_matches_the_code() {
    check_section("worked transfer", "worked_transfer", BEGIN, END, &render());
}
