//! How nodes are named to people and programs: the [`NodeId`] newtype and
//! one [`PeerLabel`] (`name (3f2a9c1e) [ab12:cd34:ef56:7890]`), safe for a
//! terminal, plus the serde helpers events use.

use std::fmt;

use localstream_proto::names::escape_for_terminal;
use localstream_proto::{PeerIdentity, Status};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// A node id: a UUID bound to the node's key (`node_id_for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// As a UUID.
    #[must_use]
    pub fn uuid(self) -> Uuid {
        Uuid::from_bytes(self.0)
    }

    /// Its first 8 hex digits, as `peers` shows them.
    #[must_use]
    pub fn short(self) -> String {
        short_id(&self.uuid())
    }
}

impl From<Uuid> for NodeId {
    fn from(u: Uuid) -> Self {
        NodeId(u.into_bytes())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.uuid().hyphenated().fmt(f)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A proven peer, as people and events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerLabel {
    /// The name it claims (untrusted text; escaped when shown or serialized).
    #[serde(serialize_with = "escaped")]
    pub name: String,
    /// Its id.
    pub id: NodeId,
    /// Its key's SHA-256 (hex when serialized).
    #[serde(serialize_with = "hex")]
    pub fingerprint: [u8; 32],
}

impl PeerLabel {
    /// The label of a peer that proved its key.
    #[must_use]
    pub fn of(peer: &PeerIdentity) -> Self {
        PeerLabel {
            name: peer.name.clone(),
            id: NodeId(peer.node_id),
            fingerprint: peer.fingerprint,
        }
    }

    /// `name [ab12:cd34:ef56:7890]`: the name and the fingerprint.
    #[must_use]
    pub fn short(&self) -> String {
        format!(
            "{} [{}]",
            shown_name(&self.name),
            crate::identity::short_fingerprint(&self.fingerprint)
        )
    }
}

impl fmt::Display for PeerLabel {
    /// `name (3f2a9c1e) [ab12:cd34:ef56:7890]`, safe for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&label(
            &self.name,
            &self.id.uuid(),
            &crate::identity::short_fingerprint(&self.fingerprint),
        ))
    }
}

/// The first 8 hex digits of a node id, as `peers` shows them.
#[must_use]
pub fn short_id(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// A peer's claimed name for a terminal: escaped, and quoted when it holds
/// brackets or parentheses, so that it cannot pass for the proven id and
/// fingerprint shown after it (`"laptop (3f2a9c1e)" (9d0e4b7a) [...]`).
#[must_use]
pub fn shown_name(name: &str) -> String {
    let escaped = escape_for_terminal(name);
    if name.contains(['(', ')', '[', ']', '"']) {
        format!("\"{}\"", escaped.replace('"', "\\\""))
    } else {
        escaped
    }
}

/// `name (3f2a9c1e) [ab12:cd34:ef56:7890]`, safe for a terminal.
#[must_use]
pub fn label(name: &str, id: &Uuid, fingerprint: &str) -> String {
    format!("{} ({}) [{}]", shown_name(name), short_id(id), fingerprint)
}

/// Serializes untrusted text escaped for a terminal.
pub(crate) fn escaped<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape_for_terminal(text))
}

/// Serializes bytes as lowercase hex.
pub(crate) fn hex<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&localstream_proto::error::hex(bytes))
}

/// Serializes a status as its number.
pub(crate) fn status_code<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.code())
}

/// Serializes with `Display`.
pub(crate) fn display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Serializes an optional value with `Display`.
pub(crate) fn display_opt<T: fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_quote_names_that_could_pass_for_ids() {
        let p = PeerLabel {
            name: "laptop (3f2a9c1e)".into(),
            id: NodeId([0x9d; 16]),
            fingerprint: [0xab; 32],
        };
        assert_eq!(
            p.to_string(),
            "\"laptop (3f2a9c1e)\" (9d9d9d9d) [abab:abab:abab:abab]"
        );
        assert_eq!(
            serde_json::to_value(&p).unwrap()["id"],
            "9d9d9d9d-9d9d-9d9d-9d9d-9d9d9d9d9d9d"
        );
    }
}
