//! LocalSend's messages (protocol v2.1, as documented in the
//! localsend/protocol repository), and the pure rules about them: what a
//! device is called, how its fingerprint and this node's id for it are
//! derived, and what an incoming `prepare-upload` may ask.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// LocalSend's default port (HTTPS and multicast).
pub const PORT: u16 = 53317;
/// LocalSend's multicast group.
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 167);
/// The protocol version this node speaks.
pub const VERSION: &str = "2.1";
/// Where the API lives.
pub const API: &str = "/api/localsend/v2";
/// Largest discovery datagram read (LocalSend's are a few hundred bytes).
pub const MAX_DATAGRAM: usize = 4096;
/// Largest `register` or `info` body read.
pub const MAX_INFO_BODY: usize = 16 * 1024;
/// Largest `prepare-upload` body read (file names, previews).
pub const MAX_PREPARE_BODY: usize = 4 * 1024 * 1024;
/// Most files one session may offer.
pub const MAX_FILES: usize = 10_000;
/// Longest alias kept, in bytes.
pub const MAX_ALIAS: usize = 63;
/// Longest text message shown and saved, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

/// A device, as it describes itself (announcement, `register`, `info`,
/// the `info` of a `prepare-upload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Its name.
    pub alias: String,
    /// Its protocol version (`major.minor`).
    #[serde(default = "default_version")]
    pub version: String,
    /// Its model (`Samsung`, `Linux`), if it says.
    #[serde(default)]
    pub device_model: Option<String>,
    /// `mobile`, `desktop`, `web`, `headless` or `server`, if it says.
    #[serde(default)]
    pub device_type: Option<String>,
    /// SHA-256 of its certificate (upper-case hex) in HTTPS mode.
    #[serde(default)]
    pub fingerprint: String,
    /// Its HTTP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `https` or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Whether its download API is on (this node's never is).
    #[serde(default)]
    pub download: bool,
    /// In a multicast message: an announcement (answer it) or an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
}

fn default_version() -> String {
    "1.0".into()
}

impl DeviceInfo {
    /// Its fingerprint, when it is a SHA-256 (HTTPS devices).
    #[must_use]
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        parse_fingerprint(&self.fingerprint)
    }

    /// Whether it speaks HTTPS (the only mode this node talks to).
    #[must_use]
    pub fn https(&self) -> bool {
        self.protocol.as_deref().is_none_or(|p| p == "https")
    }

    /// Its alias as this node keeps it: control characters dropped, at
    /// most [`MAX_ALIAS`] bytes, `LocalSend device` when nothing is left.
    #[must_use]
    pub fn shown_alias(&self) -> String {
        let a = localstream_proto::names::strip_control_or_bidi(self.alias.trim(), MAX_ALIAS);
        if a.trim().is_empty() {
            "LocalSend device".into()
        } else {
            a
        }
    }

    /// Type and model, for people: `mobile, Samsung`.
    #[must_use]
    pub fn kind(&self) -> String {
        let clean = |s: &Option<String>| {
            s.as_deref()
                .map(|s| localstream_proto::names::strip_control_or_bidi(s.trim(), 32))
                .filter(|s| !s.is_empty())
        };
        match (clean(&self.device_type), clean(&self.device_model)) {
            (Some(t), Some(m)) => format!("{t}, {m}"),
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => String::new(),
        }
    }
}

/// One file of a `prepare-upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Its id in the session.
    pub id: String,
    /// Its name; a relative path with `/` for a file in a folder.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its MIME type.
    #[serde(default)]
    pub file_type: String,
    /// SHA-256 of its bytes (hex), when the sender says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A preview; for a text message, the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// The body of `prepare-upload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareUpload {
    /// Who sends.
    pub info: DeviceInfo,
    /// What, by id (in the order sent).
    pub files: serde_json::Map<String, serde_json::Value>,
}

/// The answer to `prepare-upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareAnswer {
    /// The session.
    pub session_id: String,
    /// A token per file id.
    pub files: serde_json::Map<String, serde_json::Value>,
}

/// SHA-256.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A fingerprint as LocalSend writes it: 64 upper-case hex digits.
#[must_use]
pub fn fingerprint_text(fp: &[u8; 32]) -> String {
    crate::localsend_fingerprint(fp)
}

/// A SHA-256 written in hex (either case).
#[must_use]
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    // Hex digits only: `from_str_radix` alone would take "+f" for 0x0f.
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The node id this node keeps a LocalSend device under: bound to its
/// certificate's fingerprint as a LocalStream node's id is bound to its key
/// (`node_id_for`), so that the peer store treats both alike and nobody can
/// claim another's id. The entry says it is a LocalSend device.
#[must_use]
pub fn node_id(fp: &[u8; 32]) -> [u8; 16] {
    localstream_proto::node_id_for(fp)
}

/// A text message as it is shown and saved: control and bidi characters
/// dropped (new lines and tabs kept), at most [`MAX_TEXT`] bytes.
#[must_use]
pub fn clean_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if localstream_proto::names::is_control_or_bidi(c) && c != '\n' && c != '\t' {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// Whether an offer of one file is a text message (LocalSend sends one as
/// a `text/plain` file whose preview is the text, and expects a 204).
#[must_use]
pub fn text_message(files: &[FileInfo]) -> Option<&str> {
    match files {
        [f] if f.file_type.starts_with("text/") => f.preview.as_deref(),
        _ => None,
    }
}

/// Why a `prepare-upload` body is refused before anyone is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadOffer {
    /// Not the JSON LocalSend sends.
    #[error("not a LocalSend prepare-upload request: {0}")]
    Malformed(String),
    /// Nothing offered.
    #[error("no files offered")]
    Empty,
    /// More than [`MAX_FILES`].
    #[error("{0} files offered; at most {MAX_FILES} per session")]
    TooMany(usize),
    /// Two files with one id, or an id that is not the file's key.
    #[error("file ids do not match their entries")]
    Ids,
    /// A hostile or unusable name.
    #[error("refused file name {name:?}: {reason}")]
    Name {
        /// The name, escaped.
        name: String,
        /// Why.
        reason: String,
    },
    /// The same path twice.
    #[error("the path {0:?} is offered twice")]
    Duplicate(String),
    /// Sizes that add up past any disk.
    #[error("the sizes add up to more than 2^63 bytes")]
    Size,
    /// A `sha256` that is not one.
    #[error("the sha256 of {0:?} is not 64 hex digits")]
    Hash(String),
}

/// Reads the files of a `prepare-upload`: every id matches its key, every
/// name is a safe relative path ([`localstream_proto::names::validate_wire_path`]:
/// no `..`, no absolute paths or drive letters, no control characters), no
/// path twice, no name of a partial file, sizes that add up.
///
/// # Errors
/// The [`BadOffer`].
pub fn check_files(req: &PrepareUpload) -> Result<Vec<FileInfo>, BadOffer> {
    use localstream_proto::names::{escape_for_terminal, validate_wire_path};
    if req.files.is_empty() {
        return Err(BadOffer::Empty);
    }
    if req.files.len() > MAX_FILES {
        return Err(BadOffer::TooMany(req.files.len()));
    }
    let mut files = Vec::with_capacity(req.files.len());
    let mut paths = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for (key, value) in &req.files {
        let f: FileInfo = serde_json::from_value(value.clone())
            .map_err(|e| BadOffer::Malformed(format!("file {}: {e}", escape_for_terminal(key))))?;
        if f.id != *key || f.id.is_empty() || f.id.len() > 128 {
            return Err(BadOffer::Ids);
        }
        let bad = |reason: String| BadOffer::Name {
            name: escape_for_terminal(&f.file_name),
            reason,
        };
        let parts = validate_wire_path(&f.file_name).map_err(|e| bad(e.to_string()))?;
        if parts
            .last()
            .is_some_and(|n| n.ends_with(crate::fsutil::PARTIAL_SUFFIX))
        {
            return Err(bad(format!(
                "names ending in {} are reserved for partial files",
                crate::fsutil::PARTIAL_SUFFIX
            )));
        }
        if !paths.insert(parts.join("/").to_lowercase()) {
            return Err(BadOffer::Duplicate(escape_for_terminal(&f.file_name)));
        }
        total = total
            .checked_add(f.size)
            .filter(|t| *t <= i64::MAX as u64)
            .ok_or(BadOffer::Size)?;
        if let Some(h) = &f.sha256
            && !h.is_empty()
            && parse_fingerprint(h).is_none()
        {
            return Err(BadOffer::Hash(escape_for_terminal(&f.file_name)));
        }
        files.push(f);
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offer(files: serde_json::Value) -> PrepareUpload {
        serde_json::from_value(serde_json::json!({
            "info": {"alias": "Phone", "version": "2.1", "deviceModel": "Pixel", "deviceType": "mobile",
                     "fingerprint": "ab", "port": 53317, "protocol": "https", "download": false},
            "files": files,
        }))
        .unwrap()
    }

    fn file(id: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "fileName": name, "size": 3, "fileType": "text/plain"})
    }

    #[test]
    fn hostile_names_are_refused_before_anyone_is_asked() {
        for name in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "C:\\x",
            "a\u{0}b",
            "x\u{1b}[2J",
            "",
            "a/.",
            "f.lspart",
        ] {
            let r = check_files(&offer(serde_json::json!({ "1": file("1", name) })));
            assert!(matches!(r, Err(BadOffer::Name { .. })), "{name:?}: {r:?}");
        }
        let ok = check_files(&offer(
            serde_json::json!({ "1": file("1", "dir/a.txt"), "2": file("2", "b") }),
        ))
        .unwrap();
        assert_eq!(
            ok.iter().map(|f| f.file_name.as_str()).collect::<Vec<_>>(),
            ["dir/a.txt", "b"]
        );
    }

    #[test]
    fn ids_duplicates_sizes_and_hashes_are_checked() {
        let r = check_files(&offer(serde_json::json!({ "1": file("2", "a") })));
        assert_eq!(r.unwrap_err(), BadOffer::Ids);
        let r = check_files(&offer(
            serde_json::json!({ "1": file("1", "a"), "2": file("2", "A") }),
        ));
        assert!(matches!(r, Err(BadOffer::Duplicate(_))));
        let big =
            serde_json::json!({"id": "1", "fileName": "a", "size": u64::MAX, "fileType": "x"});
        assert_eq!(
            check_files(&offer(serde_json::json!({ "1": big }))).unwrap_err(),
            BadOffer::Size
        );
        let hash = serde_json::json!({"id": "1", "fileName": "a", "size": 1, "sha256": "zz"});
        assert!(matches!(
            check_files(&offer(serde_json::json!({ "1": hash }))),
            Err(BadOffer::Hash(_))
        ));
        assert_eq!(
            check_files(&offer(serde_json::json!({}))).unwrap_err(),
            BadOffer::Empty
        );
    }

    #[test]
    fn fingerprints_and_ids() {
        let fp = sha256(b"cert");
        let text = fingerprint_text(&fp);
        assert_eq!(text, text.to_uppercase());
        assert_eq!(parse_fingerprint(&text), Some(fp));
        assert_eq!(parse_fingerprint(&text.to_lowercase()), Some(fp));
        assert_eq!(parse_fingerprint("random string"), None);
        // Signs are not digits, though `from_str_radix` takes them.
        let signed: String = text
            .chars()
            .enumerate()
            .map(|(i, c)| if i % 2 == 0 { '+' } else { c })
            .collect();
        assert_eq!(parse_fingerprint(&signed), None);
        assert_ne!(node_id(&fp), node_id(&sha256(b"other")));
    }

    #[test]
    fn a_device_is_described_safely() {
        let d: DeviceInfo = serde_json::from_value(serde_json::json!({
            "alias": "Evil\u{1b}[31m Phone", "deviceType": "mobile", "deviceModel": "Pixel", "fingerprint": ""
        }))
        .unwrap();
        assert!(!d.shown_alias().contains('\u{1b}'));
        assert_eq!(d.kind(), "mobile, Pixel");
        assert!(d.https());
        assert_eq!(d.version, "1.0");
    }

    #[test]
    fn a_text_message_is_one_text_file_with_a_preview() {
        let t = FileInfo {
            id: "1".into(),
            file_name: "x.txt".into(),
            size: 2,
            file_type: "text/plain".into(),
            sha256: None,
            preview: Some("hi".into()),
        };
        assert_eq!(text_message(std::slice::from_ref(&t)), Some("hi"));
        assert_eq!(text_message(&[t.clone(), t]), None);
        assert_eq!(clean_text("a\u{1b}[2J\nb\u{202e}c\td"), "a[2J\nbc\td");
    }
}
