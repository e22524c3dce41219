//! The TXT record of a LocalStream announcement, as a pure function both ways.
//!
//! ```text
//!  v=1  id=<uuid, hyphenated lowercase>  fp=<16 lowercase hex>  name=<display name>  [mac=aa:bb:cc:dd:ee:ff]
//! ```
//!
//! Everything in a TXT record comes from an unauthenticated multicast packet,
//! so [`PeerRecord::from_txt`] checks every field (length and character set)
//! and refuses the whole record if a required one is missing or bad. Unknown
//! keys are ignored, so later versions can add fields. What a record says is a
//! hint for finding a peer; the handshake proves who it is.

use localstream_proto::error::hex;
use uuid::Uuid;

/// Version of the TXT layout (and of the protocol it points to).
pub const TXT_VERSION: u16 = 1;
/// Longest display name, in bytes (one DNS label).
pub const MAX_NAME_BYTES: usize = 63;
/// Bytes of the key fingerprint carried in the record.
pub const FINGERPRINT_PREFIX_BYTES: usize = 8;

const KEY_VERSION: &str = "v";
const KEY_ID: &str = "id";
const KEY_FINGERPRINT: &str = "fp";
const KEY_NAME: &str = "name";
const KEY_MAC: &str = "mac";

/// What a node announces about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// TXT layout / protocol version the node speaks.
    pub version: u16,
    /// The node's id.
    pub node_id: Uuid,
    /// First bytes of the SHA-256 fingerprint of the node's public key.
    pub fingerprint_prefix: [u8; FINGERPRINT_PREFIX_BYTES],
    /// Display name (checked by [`check_display_name`]).
    pub name: String,
    /// A MAC address of the node, where known.
    pub mac: Option<[u8; 6]>,
}

/// Why a TXT record was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxtError {
    /// A required key is absent (or has no value).
    #[error("no `{0}` field")]
    Missing(&'static str),
    /// A field's value is not valid.
    #[error("bad `{key}` field: {reason}")]
    Invalid {
        /// Which key.
        key: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl PeerRecord {
    /// The TXT key/value pairs announcing this record.
    #[must_use]
    pub fn to_txt(&self) -> Vec<(String, String)> {
        let mut txt = vec![
            (KEY_VERSION.to_owned(), self.version.to_string()),
            (KEY_ID.to_owned(), self.node_id.hyphenated().to_string()),
            (KEY_FINGERPRINT.to_owned(), hex(&self.fingerprint_prefix)),
            (KEY_NAME.to_owned(), self.name.clone()),
        ];
        if let Some(mac) = self.mac {
            txt.push((KEY_MAC.to_owned(), format_mac(&mac)));
        }
        txt
    }

    /// Parses and checks a record from TXT key/value pairs (`None` for a key
    /// without `=`). Keys are matched case-insensitively and only the first
    /// occurrence of a key counts (RFC 6763, section 6.4); unknown keys are
    /// ignored.
    ///
    /// # Errors
    /// [`TxtError`] when a required field is missing or any field is invalid.
    pub fn from_txt<'a, I>(pairs: I) -> Result<PeerRecord, TxtError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut fields: [Option<Option<&[u8]>>; 5] = [None; 5];
        let keys = [KEY_VERSION, KEY_ID, KEY_FINGERPRINT, KEY_NAME, KEY_MAC];
        for (key, value) in pairs {
            if let Some(i) = keys.iter().position(|k| k.eq_ignore_ascii_case(key))
                && fields[i].is_none()
            {
                fields[i] = Some(value);
            }
        }
        let required = |i: usize| -> Result<&str, TxtError> {
            let key = keys[i];
            let value = fields[i].flatten().ok_or(TxtError::Missing(key))?;
            std::str::from_utf8(value).map_err(|_| TxtError::Invalid {
                key,
                reason: "not UTF-8",
            })
        };
        let version = parse_version(required(0)?)?;
        let node_id = parse_id(required(1)?)?;
        let fingerprint_prefix = parse_fingerprint(required(2)?)?;
        let name = required(3)?;
        check_display_name(name).map_err(|reason| TxtError::Invalid {
            key: KEY_NAME,
            reason,
        })?;
        // The MAC is optional, but a present and malformed one means the whole
        // record was not written by a LocalStream node (or was mangled).
        let mac = match fields[4] {
            None | Some(None) => None,
            Some(Some(raw)) => Some(parse_mac(raw)?),
        };
        Ok(PeerRecord {
            version,
            node_id,
            fingerprint_prefix,
            name: name.to_owned(),
            mac,
        })
    }
}

/// Checks a display name: 1 to [`MAX_NAME_BYTES`] bytes, no control or bidi
/// characters, no leading or trailing white space.
///
/// # Errors
/// A short reason.
pub fn check_display_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return Err("longer than 63 bytes");
    }
    if name
        .chars()
        .any(localstream_proto::names::is_control_or_bidi)
    {
        return Err("control or bidi characters");
    }
    if name.trim() != name {
        return Err("leading or trailing white space");
    }
    Ok(())
}

fn parse_version(s: &str) -> Result<u16, TxtError> {
    let bad = |reason| TxtError::Invalid {
        key: KEY_VERSION,
        reason,
    };
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    match s.parse::<u16>() {
        Ok(0) => Err(bad("zero")),
        Ok(v) => Ok(v),
        Err(_) => Err(bad("too large")),
    }
}

fn parse_id(s: &str) -> Result<Uuid, TxtError> {
    // Exactly the hyphenated form: 36 characters, hex and hyphens in place.
    let shaped = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let id = shaped
        .then(|| Uuid::parse_str(s).ok())
        .flatten()
        .ok_or(TxtError::Invalid {
            key: KEY_ID,
            reason: "not a hyphenated UUID",
        })?;
    if id.is_nil() {
        return Err(TxtError::Invalid {
            key: KEY_ID,
            reason: "nil UUID",
        });
    }
    Ok(id)
}

fn parse_fingerprint(s: &str) -> Result<[u8; FINGERPRINT_PREFIX_BYTES], TxtError> {
    let bad = TxtError::Invalid {
        key: KEY_FINGERPRINT,
        reason: "not 16 hex digits",
    };
    let mut out = [0u8; FINGERPRINT_PREFIX_BYTES];
    if s.len() != FINGERPRINT_PREFIX_BYTES * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad);
    }
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = s.get(i * 2..i * 2 + 2).ok_or_else(|| bad.clone())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad.clone())?;
    }
    Ok(out)
}

fn parse_mac(raw: &[u8]) -> Result<[u8; 6], TxtError> {
    let bad = TxtError::Invalid {
        key: KEY_MAC,
        reason: "not six colon-separated hex bytes",
    };
    // "aa:bb:cc:dd:ee:ff" is exactly 17 bytes: check before splitting.
    if raw.len() != 17 {
        return Err(bad);
    }
    let s = std::str::from_utf8(raw).map_err(|_| bad.clone())?;
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad);
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad);
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad.clone())?;
    }
    Ok(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
#[must_use]
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PeerRecord {
        PeerRecord {
            version: 1,
            node_id: Uuid::from_u128(0x3f2a_9c1e_0000_4000_8000_0000_0000_00ab),
            fingerprint_prefix: [0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89],
            name: "Anna's laptop — 日本".into(),
            mac: Some([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
        }
    }

    fn pairs(txt: &[(String, String)]) -> Vec<(&str, Option<&[u8]>)> {
        txt.iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_bytes())))
            .collect()
    }

    fn parse(txt: &[(&str, &str)]) -> Result<PeerRecord, TxtError> {
        PeerRecord::from_txt(txt.iter().map(|(k, v)| (*k, Some(v.as_bytes()))))
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("v", "1"),
            ("id", "3f2a9c1e-0000-4000-8000-0000000000ab"),
            ("fp", "abcdef0123456789"),
            ("name", "box"),
        ]
    }

    fn with(key: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut txt: Vec<_> = good().into_iter().filter(|(k, _)| *k != key).collect();
        txt.push((key, value));
        txt
    }

    #[test]
    fn round_trip() {
        let r = record();
        let txt = r.to_txt();
        assert_eq!(
            txt.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["v", "id", "fp", "name", "mac"]
        );
        assert_eq!(txt[1].1, "3f2a9c1e-0000-4000-8000-0000000000ab");
        assert_eq!(txt[2].1, "abcdef0123456789");
        assert_eq!(txt[4].1, "02:42:ac:11:00:02");
        assert_eq!(PeerRecord::from_txt(pairs(&txt)), Ok(r.clone()));
        let no_mac = PeerRecord { mac: None, ..r };
        let txt = no_mac.to_txt();
        assert_eq!(txt.len(), 4);
        assert_eq!(PeerRecord::from_txt(pairs(&txt)), Ok(no_mac));
        // Every pair fits a TXT string (key=value, at most 255 bytes).
        let long = PeerRecord {
            name: "é".repeat(31),
            ..record()
        };
        assert!(
            long.to_txt()
                .iter()
                .all(|(k, v)| k.len() + 1 + v.len() <= 255)
        );
    }

    #[test]
    fn unknown_keys_case_and_duplicates() {
        let mut txt = good();
        txt.insert(0, ("future", "whatever"));
        txt.push(("NAME", "second name is ignored"));
        txt.push(("id", "not even a uuid"));
        let r = parse(&txt).unwrap();
        assert_eq!(r.name, "box");
        assert_eq!(
            r.node_id.to_string(),
            "3f2a9c1e-0000-4000-8000-0000000000ab"
        );
        let upper = parse(&[
            ("V", "1"),
            ("ID", "3F2A9C1E-0000-4000-8000-0000000000AB"),
            ("Fp", "ABCDEF0123456789"),
            ("Name", "box"),
        ])
        .unwrap();
        assert_eq!(upper.node_id, r.node_id);
        assert_eq!(upper.fingerprint_prefix, r.fingerprint_prefix);
    }

    #[test]
    fn missing_fields() {
        for key in ["v", "id", "fp", "name"] {
            let txt: Vec<_> = good().into_iter().filter(|(k, _)| *k != key).collect();
            assert!(
                matches!(parse(&txt), Err(TxtError::Missing(k)) if k == key),
                "{key}"
            );
        }
        // A key without a value counts as missing.
        let txt: Vec<(&str, Option<&[u8]>)> = vec![
            ("v", Some(b"1")),
            ("id", None),
            ("fp", Some(b"abcdef0123456789")),
            ("name", Some(b"box")),
        ];
        assert_eq!(PeerRecord::from_txt(txt), Err(TxtError::Missing("id")));
        assert_eq!(
            PeerRecord::from_txt(std::iter::empty()),
            Err(TxtError::Missing("v"))
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let long_name = "x".repeat(64);
        let cases: Vec<(&'static str, String)> = vec![
            ("v", "abc".into()),
            ("v", "".into()),
            ("v", "0".into()),
            ("v", "99999".into()),
            ("v", "+1".into()),
            ("v", "1.0".into()),
            ("id", "3f2a9c1e00004000800000000000000b".into()),
            ("id", "3f2a9c1e-0000-4000-8000-0000000000a".into()),
            ("id", "3f2a9c1e-0000-4000-8000-0000000000ag".into()),
            ("id", "{3f2a9c1e-0000-4000-8000-0000000000ab}".into()),
            ("id", "00000000-0000-0000-0000-000000000000".into()),
            ("fp", "abcdef012345678".into()),
            ("fp", "abcdef01234567890".into()),
            ("fp", "abcdef012345678g".into()),
            ("fp", "+bcdef0123456789".into()),
            ("fp", "ab cdef0123456789".into()),
            ("name", "".into()),
            ("name", long_name),
            ("name", "evil\x1b[2J".into()),
            ("name", "new\nline".into()),
            ("name", "\u{202e}gnp.exe".into()),
            ("name", "tab\there".into()),
            ("name", "c1\u{9b}31m".into()),
            ("name", " padded".into()),
            ("name", "padded ".into()),
            ("mac", "02:42:ac:11:00".into()),
            ("mac", "02:42:ac:11:00:02:03".into()),
            ("mac", "02-42-ac-11-00-02".into()),
            ("mac", "02:42:ac:11:00:2".into()),
            ("mac", "02:42:ac:11:00:zz".into()),
            ("mac", "02:42:ac:11:00:+2".into()),
            ("mac", "".into()),
        ];
        for (key, value) in cases {
            let value: &'static str = Box::leak(value.into_boxed_str());
            let got = parse(&with(key, value));
            assert!(
                matches!(got, Err(TxtError::Invalid { key: k, .. }) if k == key),
                "{key}={value:?} gave {got:?}"
            );
        }
        // Not UTF-8.
        let mut txt: Vec<(&str, Option<&[u8]>)> = good()
            .into_iter()
            .filter(|(k, _)| *k != "name")
            .map(|(k, v)| (k, Some(v.as_bytes())))
            .collect();
        txt.push(("name", Some(&[0xff, 0xfe, 0x41])));
        assert!(matches!(
            PeerRecord::from_txt(txt),
            Err(TxtError::Invalid { key: "name", .. })
        ));
    }

    #[test]
    fn error_messages() {
        assert_eq!(TxtError::Missing("id").to_string(), "no `id` field");
        let e = parse(&with("fp", "zz")).unwrap_err();
        assert_eq!(e.to_string(), "bad `fp` field: not 16 hex digits");
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("box").is_ok());
        assert!(check_display_name("Anna's MacBook Pro (2)").is_ok());
        assert!(check_display_name(&"é".repeat(31)).is_ok());
        assert!(check_display_name(&"é".repeat(32)).is_err());
        assert!(check_display_name("a\u{2028}b").is_err());
        assert!(check_display_name("a\u{7f}").is_err());
    }

    #[test]
    fn never_panics_on_junk() {
        // A small deterministic generator: junk keys, values and byte soup.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let keys = ["v", "id", "fp", "name", "mac", "x", "", "ID"];
        for _ in 0..20_000 {
            let n = (next() % 7) as usize;
            let mut owned: Vec<(&str, Vec<u8>)> = vec![];
            for _ in 0..n {
                let key = keys[(next() % keys.len() as u64) as usize];
                let len = (next() % 80) as usize;
                let value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                owned.push((key, value));
            }
            let _ = PeerRecord::from_txt(owned.iter().map(|(k, v)| (*k, Some(v.as_slice()))));
        }
    }
}
