//! The "Worked example" section of `PROTOCOL.md`, generated from the real code.
//!
//! The test runs a complete handshake between the fixed test identities with
//! fixed randomness (exactly as `pair::run_handshake` does), re-derives every
//! value the document describes *independently* of the handshake code (plain
//! SHA-256, X25519, HKDF, HMAC, RSA-PSS and AES-GCM calls following the text of
//! `PROTOCOL.md`), checks that the code agrees with that re-derivation, renders
//! the result as Markdown and compares it byte for byte with the text between
//! the `worked-example` markers in `PROTOCOL.md`.
//!
//! Regenerate the section after an intended wire change with
//! `LOCALSTREAM_BLESS=1 cargo test -p localstream-proto worked_example`.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use rand_core::Rng;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::codec::HEADER_LEN;
use crate::error::hex;
use crate::handshake::Config;
use crate::handshake::messages::*;
use crate::pair::{Dir, run_handshake, test_identity};
use crate::record::{DirectionKeys, Opener, RecordType, Sealer, TAG_LEN};
use crate::worked_doc::{check_section, nonce, seal_by_the_book, wrapped};

const BEGIN: &str = "<!-- worked-example:begin -->";
const END: &str = "<!-- worked-example:end -->";
/// The initiator's RNG seed; the responder uses `SEED ^ 0xffff` (as `run_handshake` does).
const SEED: u64 = 1;
const RECORD_PLAINTEXT: &[u8] = b"hello";

fn code_block(out: &mut String, bytes: &[u8]) {
    let _ = writeln!(out, "```text\n{}\n```\n", wrapped(bytes));
}

/// HKDF-Expand-SHA256 with info = label || context.
fn expand<const N: usize>(prk: &[u8; 32], label: &[u8], context: &[u8]) -> [u8; N] {
    let hk = Hkdf::<Sha256>::from_prk(prk).unwrap();
    let mut info = label.to_vec();
    info.extend_from_slice(context);
    let mut okm = [0u8; N];
    hk.expand(&info, &mut okm).unwrap();
    okm
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

struct Step {
    name: &'static str,
    dir: Dir,
    frame: Vec<u8>,
}

/// Runs the handshake, checks everything, and renders the Markdown fragment.
fn render() -> String {
    let alice = test_identity("alice");
    let bob = test_identity("bob");

    // --- The handshake as the code runs it, capturing every frame in wire order.
    let mut wire: Vec<(Dir, Vec<u8>)> = vec![];
    let (si, sr) = run_handshake(
        Config::new(alice.clone()),
        Config::new(bob.clone()),
        SEED,
        |d, _, flight| wire.extend(flight.iter().map(|f| (d, f.clone()))),
    );
    let (mut si, mut sr) = (si.unwrap(), sr.unwrap());
    use Dir::{ToInitiator as R2I, ToResponder as I2R};
    let plan: [(&str, Dir, u8); 9] = [
        ("ClientHello", I2R, CLIENT_HELLO),
        ("ServerHello", R2I, SERVER_HELLO),
        ("KeyReveal", I2R, KEY_REVEAL),
        ("Identity (initiator)", I2R, IDENTITY),
        ("Verify (initiator)", I2R, VERIFY),
        ("Finished (initiator)", I2R, FINISHED),
        ("Identity (responder)", R2I, IDENTITY),
        ("Verify (responder)", R2I, VERIFY),
        ("Finished (responder)", R2I, FINISHED),
    ];
    assert_eq!(wire.len(), plan.len(), "handshake frame count");
    let steps: Vec<Step> = plan
        .iter()
        .zip(wire)
        .map(|(&(name, dir, typ), (d, frame))| {
            assert_eq!((d, frame[0]), (dir, typ), "{name}: direction and type");
            let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
            assert_eq!(frame.len(), HEADER_LEN + len, "{name}: length field");
            Step { name, dir, frame }
        })
        .collect();
    let body = |k: usize| &steps[k].frame[HEADER_LEN..];

    // --- Transcript hashes: SHA-256 over whole frames (headers included), in wire order.
    let th: Vec<[u8; 32]> = (1..=steps.len())
        .map(|n| {
            let mut h = Sha256::new();
            for s in &steps[..n] {
                h.update(&s.frame);
            }
            h.finalize().into()
        })
        .collect();
    let (th_kx, th_sig_i, th_fin_i) = (th[2], th[3], th[4]);
    let (th_sig_r, th_fin_r, th_final) = (th[6], th[7], th[8]);

    // --- Ephemeral keys: the first 32 bytes each side's RNG produces.
    let mut ei = [0u8; 32];
    ChaCha20Rng::seed_from_u64(SEED).fill_bytes(&mut ei);
    let mut er = [0u8; 32];
    ChaCha20Rng::seed_from_u64(SEED ^ 0xffff).fill_bytes(&mut er);
    let base = x25519_dalek::X25519_BASEPOINT_BYTES;
    let (ei_pub, er_pub) = (
        x25519_dalek::x25519(ei, base),
        x25519_dalek::x25519(er, base),
    );
    let commitment: [u8; 32] = Sha256::digest(ei_pub).into();
    let shared = x25519_dalek::x25519(ei, er_pub);
    assert_eq!(shared, x25519_dalek::x25519(er, ei_pub));

    // Message fields as the document lays them out.
    let mut ch = b"LSTR".to_vec();
    ch.extend_from_slice(&[3, 0, 4, 0, 3, 0, 2, 1, 0, 1]);
    ch.extend_from_slice(&commitment);
    assert_eq!(body(0), ch, "ClientHello body");
    let mut sh = vec![0, 4, 0, 1];
    sh.extend_from_slice(&er_pub);
    assert_eq!(body(1), sh, "ServerHello body");
    assert_eq!(body(2), ei_pub, "KeyReveal body");
    for (k, id) in [(3, &alice), (6, &bob)] {
        // The node id is bound to the key: the fingerprint's first 16 bytes,
        // UUID version 8 and the RFC 4122 variant.
        let fp: [u8; 32] = Sha256::digest(id.public_key_der()).into();
        let mut node_id = [0u8; 16];
        node_id.copy_from_slice(&fp[..16]);
        node_id[6] = (node_id[6] & 0x0f) | 0x80;
        node_id[8] = (node_id[8] & 0x3f) | 0x80;
        assert_eq!(id.node_id(), node_id, "node id of {}", id.name());
        let mut m = node_id.to_vec();
        m.push(id.name().len() as u8);
        m.extend_from_slice(id.name().as_bytes());
        m.push(6);
        m.extend_from_slice(&id.mac().unwrap());
        m.extend_from_slice(&(id.public_key_der().len() as u16).to_be_bytes());
        m.extend_from_slice(id.public_key_der());
        assert_eq!(body(k), m, "{} body", steps[k].name);
    }

    // --- Key schedule.
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&th_kx), &shared);
    let prk: [u8; 32] = prk.into();
    let fk_r = expand::<32>(&prk, b"LocalStream v2 finished responder", b"");
    let fk_i = expand::<32>(&prk, b"LocalStream v2 finished initiator", b"");
    let sas_bytes = expand::<8>(&prk, b"LocalStream v2 sas", b"");
    let sas = u64::from_be_bytes(sas_bytes) % 1_000_000_000_000;
    let session_id = expand::<16>(&prk, b"LocalStream v2 session id", &th_final);
    let i2r_key = expand::<32>(&prk, b"LocalStream v2 key i2r", &th_final);
    let i2r_iv = expand::<12>(&prk, b"LocalStream v2 iv i2r", &th_final);
    let r2i_key = expand::<32>(&prk, b"LocalStream v2 key r2i", &th_final);
    let r2i_iv = expand::<12>(&prk, b"LocalStream v2 iv r2i", &th_final);

    // --- Signatures and Finished MACs verify as documented.
    for (k, signer, context, th_signed) in [
        (
            4,
            &alice,
            &b"LocalStream v2 initiator signature\0"[..],
            th_sig_i,
        ),
        (
            7,
            &bob,
            &b"LocalStream v2 responder signature\0"[..],
            th_sig_r,
        ),
    ] {
        let b = body(k);
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        assert_eq!(b.len(), 2 + n, "Verify length prefix");
        let key = rsa::PublicKey::from_public_key_der(signer.public_key_der()).unwrap();
        assert_eq!(n, key.size(), "signature length is the modulus length");
        let vk = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, 32);
        let mut signed = context.to_vec();
        signed.extend_from_slice(&th_signed);
        let sig = rsa::pss::Signature::try_from(&b[2..]).unwrap();
        vk.verify(&signed, &sig)
            .unwrap_or_else(|_| panic!("{}: signature", steps[k].name));
    }
    assert_eq!(
        body(5),
        hmac_sha256(&fk_i, &th_fin_i),
        "Finished (initiator)"
    );
    assert_eq!(
        body(8),
        hmac_sha256(&fk_r, &th_fin_r),
        "Finished (responder)"
    );

    // --- The sessions agree with the re-derivation.
    assert_eq!((si.sas.0, sr.sas.0), (sas, sas), "SAS");
    assert_eq!((si.session_id, sr.session_id), (session_id, session_id));
    assert_eq!(si.peer.fingerprint, bob.fingerprint());
    assert_eq!(sr.peer.fingerprint, alice.fingerprint());

    // The initiator's first record, sealed by its session and by the book.
    let mut record = vec![];
    si.sealer
        .seal(RecordType::Data, RECORD_PLAINTEXT, &mut record)
        .unwrap();
    let expected = seal_by_the_book(&i2r_key, &i2r_iv, 0, 0x12, RECORD_PLAINTEXT);
    assert_eq!(record, expected, "i2r record 0");
    let i2r = DirectionKeys {
        key: i2r_key,
        iv: i2r_iv,
    };
    let mut own = vec![];
    Sealer::new(&i2r)
        .seal(RecordType::Data, RECORD_PLAINTEXT, &mut own)
        .unwrap();
    assert_eq!(own, record);
    let header = crate::codec::FrameHeader {
        typ: record[0],
        len: record.len() - HEADER_LEN,
    };
    let mut rbody = record[HEADER_LEN..].to_vec();
    let (t, pt) = sr.opener.open_in_place(header, &mut rbody).unwrap();
    assert_eq!((t, &*pt), (RecordType::Data, RECORD_PLAINTEXT));
    // And the other direction uses the r2i key and IV (both records have sequence 0).
    let mut back = vec![];
    sr.sealer
        .seal(RecordType::Status, b"ok", &mut back)
        .unwrap();
    assert_eq!(back, seal_by_the_book(&r2i_key, &r2i_iv, 0, 0x15, b"ok"));
    let mut o = Opener::new(&DirectionKeys {
        key: r2i_key,
        iv: r2i_iv,
    });
    let mut bbody = back[HEADER_LEN..].to_vec();
    let bh = crate::codec::FrameHeader {
        typ: back[0],
        len: bbody.len(),
    };
    o.open_in_place(bh, &mut bbody).unwrap();
    let mut bbody = back[HEADER_LEN..].to_vec();
    si.opener.open_in_place(bh, &mut bbody).unwrap();

    // --- Render.
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- Generated by proto/src/worked_example.rs; do not edit by hand. Regenerate with\n     \
         LOCALSTREAM_BLESS=1 cargo test -p localstream-proto worked_example -->\n"
    );
    let _ = writeln!(md, "### Inputs\n");
    let bits = |id: &crate::LocalIdentity| {
        rsa::PublicKey::from_public_key_der(id.public_key_der())
            .unwrap()
            .n()
            .bit_width()
    };
    let mac = |id: &crate::LocalIdentity| {
        id.mac()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let _ = writeln!(md, "| | initiator | responder |\n|---|---|---|");
    let _ = writeln!(
        md,
        "| RSA key | `proto/testdata/alice.pem` ({} bits, e = 65537) | `proto/testdata/bob.pem` ({} bits, e = 65537) |",
        bits(&alice),
        bits(&bob)
    );
    let _ = writeln!(
        md,
        "| node id (the fingerprint's first 16 bytes, UUID version 8) | `{}` | `{}` |",
        hex(&alice.node_id()),
        hex(&bob.node_id())
    );
    let _ = writeln!(md, "| name | `{}` | `{}` |", alice.name(), bob.name());
    let _ = writeln!(md, "| MAC | `{}` | `{}` |", mac(&alice), mac(&bob));
    let _ = writeln!(
        md,
        "| fingerprint (SHA-256 of SPKI DER) | `{}` | `{}` |",
        hex(&alice.fingerprint()),
        hex(&bob.fingerprint())
    );
    let _ = writeln!(
        md,
        "| X25519 private key (32 random bytes, clamped by X25519) | `{}` | `{}` |",
        hex(&ei),
        hex(&er)
    );
    let _ = writeln!(
        md,
        "| X25519 public key | `{}` | `{}` |",
        hex(&ei_pub),
        hex(&er_pub)
    );
    let _ = writeln!(
        md,
        "\nBoth sides offer versions 4, 3 and 2 (in that order) and suite 0x0001 only, and the \
         responder picks version 4. The RSA-PSS salts come from \
         the same random generators, so the two signatures below can be verified but not \
         reproduced by another implementation; every value after them is computed from the \
         frames as sent, so it can be reproduced.\n"
    );

    let _ = writeln!(md, "### Frames in wire order\n");
    for (k, s) in steps.iter().enumerate() {
        let arrow = match s.dir {
            Dir::ToResponder => "initiator → responder",
            Dir::ToInitiator => "responder → initiator",
        };
        let _ = writeln!(
            md,
            "{}. **{}**, {arrow}: type `0x{:02x}`, body {} bytes, frame {} bytes.\n",
            k + 1,
            s.name,
            s.frame[0],
            s.frame.len() - HEADER_LEN,
            s.frame.len()
        );
        code_block(&mut md, &s.frame);
    }

    let _ = writeln!(md, "### Derived values\n");
    let rows: Vec<(&str, String)> = vec![
        (
            "commitment = SHA-256(initiator X25519 public)",
            hex(&commitment),
        ),
        ("shared secret = X25519(private, peer public)", hex(&shared)),
        ("TH_kx (after frame 3, KeyReveal)", hex(&th_kx)),
        ("PRK = HKDF-Extract(salt = TH_kx, IKM = shared)", hex(&prk)),
        (
            "TH_sig_I (after frame 4; signed by the initiator)",
            hex(&th_sig_i),
        ),
        (
            "TH_fin_I (after frame 5; MACed in Finished_I)",
            hex(&th_fin_i),
        ),
        ("finished key, initiator", hex(&fk_i)),
        ("TH after frame 6", hex(&th[5])),
        (
            "TH_sig_R (after frame 7; signed by the responder)",
            hex(&th_sig_r),
        ),
        (
            "TH_fin_R (after frame 8; MACed in Finished_R)",
            hex(&th_fin_r),
        ),
        ("finished key, responder", hex(&fk_r)),
        ("TH_final (after frame 9)", hex(&th_final)),
        ("SAS bytes", hex(&sas_bytes)),
        (
            "SAS",
            format!(
                "{} mod 10^12 = {sas}, shown as \"{}\"",
                u64::from_be_bytes(sas_bytes),
                si.sas
            ),
        ),
        ("session id", hex(&session_id)),
        ("key i2r", hex(&i2r_key)),
        ("iv i2r", hex(&i2r_iv)),
        ("key r2i", hex(&r2i_key)),
        ("iv r2i", hex(&r2i_iv)),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "- {name}:\n  `{value}`");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "### First record\n");
    let _ = writeln!(
        md,
        "The initiator's first record after the handshake: type Data (`0x12`), \
         plaintext `\"{}\"` ({} bytes), sequence number 0, so the nonce is \
         `{}` (iv i2r XOR 0) and the associated data is the header `{}`.\n",
        std::str::from_utf8(RECORD_PLAINTEXT).unwrap(),
        RECORD_PLAINTEXT.len(),
        hex(&nonce(&i2r_iv, 0)),
        hex(&record[..HEADER_LEN]),
    );
    code_block(&mut md, &record);
    let _ = writeln!(
        md,
        "That is header `{}`, ciphertext `{}`, tag `{}`. The initiator's second record \
         would use the nonce `{}`.",
        hex(&record[..HEADER_LEN]),
        hex(&record[HEADER_LEN..record.len() - TAG_LEN]),
        hex(&record[record.len() - TAG_LEN..]),
        hex(&nonce(&i2r_iv, 1)),
    );
    let _ = writeln!(
        md,
        "\n### The test keys\n\nThe two RSA-2048 private keys (PKCS#8 PEM), so that the \
         Identity frames and signatures above can be checked.\n"
    );
    for (file, pem) in [
        (
            "proto/testdata/alice.pem",
            include_str!("../testdata/alice.pem"),
        ),
        (
            "proto/testdata/bob.pem",
            include_str!("../testdata/bob.pem"),
        ),
    ] {
        let _ = writeln!(md, "`{file}`:\n\n```text\n{}\n```\n", pem.trim_end());
    }
    md
}

#[test]
fn protocol_md_worked_example_matches_the_code() {
    check_section("worked example", "worked_example", BEGIN, END, &render());
}
