//! The store's data model and its pure operations (no I/O, no clock):
//! trust on first use, session history, and finding a peer by what a user
//! types. [`super::PeerStore`] loads and saves it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::identity::{fingerprint_hex, sanitize_name};

/// Display names kept per peer.
pub const MAX_NAMES: usize = 5;
/// Addresses kept per peer.
pub const MAX_ADDRESSES: usize = 8;
/// Sessions kept per peer (the oldest are dropped).
pub const MAX_SESSIONS: usize = 200;
/// Longest session detail text, in bytes.
pub const MAX_DETAIL_BYTES: usize = 200;
/// Shortest hex prefix [`StoreData::lookup`] matches ids and fingerprints by.
pub const MIN_PREFIX_DIGITS: usize = 4;

/// How far a peer is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Pinned at first contact; no transfer has completed yet.
    New,
    /// At least one transfer with it completed ok.
    Known,
    /// The user compared the verification code and said so (explicit).
    Trusted,
    /// Always refused (explicit).
    Blocked,
}

impl Trust {
    /// The lowercase name used in the file and on screen.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::New => "new",
            Trust::Known => "known",
            Trust::Trusted => "trusted",
            Trust::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a session's files went, seen from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This node sent.
    Send,
    /// This node received.
    Receive,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every file was delivered and verified.
    Ok,
    /// The receiver (or its user) refused.
    Refused,
    /// An error ended it.
    Failed,
    /// It ended normally but not every file was delivered.
    Incomplete,
    /// Not finished: the state written when a session begins, kept if the
    /// process dies before [`StoreData::end_session`].
    Interrupted,
}

/// One session with a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id (hex), as in the tracing spans.
    pub id: String,
    /// Which way the files went.
    pub direction: Direction,
    /// Start, Unix milliseconds.
    pub started: u64,
    /// End, Unix milliseconds; `None` while running or if the process died.
    pub ended: Option<u64>,
    /// Regular files delivered (folders are not counted).
    pub files: u64,
    /// File bytes moved in this session (delivered, or so far when it
    /// stopped half way); what was resumed is in `resumed`.
    pub bytes: u64,
    /// File bytes the receiver held already from an earlier session (a
    /// resume), not moved again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Short human text (refusal reason, error); may be empty.
    #[serde(default)]
    pub detail: String,
}

impl SessionRecord {
    /// A session that has just begun: not ended, nothing delivered, outcome
    /// [`Outcome::Interrupted`] until [`StoreData::end_session`] says otherwise.
    #[must_use]
    pub fn begin(id: impl Into<String>, direction: Direction, started_ms: u64) -> Self {
        SessionRecord {
            id: id.into(),
            direction,
            started: started_ms,
            ended: None,
            files: 0,
            bytes: 0,
            resumed: 0,
            outcome: Outcome::Interrupted,
            detail: String::new(),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a session ended, for [`StoreData::end_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// End, Unix milliseconds.
    pub ended_ms: u64,
    /// Regular files delivered.
    pub files: u64,
    /// File bytes moved in this session.
    pub bytes: u64,
    /// File bytes resumed (held already).
    pub resumed: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Short human text; control characters are dropped and it is cut to
    /// [`MAX_DETAIL_BYTES`].
    pub detail: String,
}

/// Everything known about one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer's node id.
    pub node_id: Uuid,
    /// The pinned fingerprint: SHA-256 of the peer's SPKI DER.
    #[serde(with = "fingerprint_serde")]
    pub fingerprint: [u8; 32],
    /// MAC address the peer last announced, if any.
    #[serde(default, with = "mac_serde")]
    pub mac: Option<[u8; 6]>,
    /// Recent display names, newest first, sanitised, at most [`MAX_NAMES`].
    #[serde(default)]
    pub names: Vec<String>,
    /// Recent addresses, newest first, at most [`MAX_ADDRESSES`].
    #[serde(default)]
    pub addresses: Vec<SocketAddr>,
    /// Addresses it recently connected from (when it sent to us), newest
    /// first, at most [`MAX_ADDRESSES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub came_from: Vec<IpAddr>,
    /// The name the user gave it with `localstream add` (found by
    /// [`StoreData::lookup`] like its own name), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Trust state.
    pub trust: Trust,
    /// First contact, Unix seconds.
    pub first_seen: u64,
    /// Last contact, Unix seconds.
    pub last_seen: u64,
    /// Recent sessions, oldest first, at most [`MAX_SESSIONS`].
    #[serde(default)]
    pub sessions: Vec<SessionRecord>,
    /// A LocalSend device (pinned by its certificate's fingerprint), not a
    /// LocalStream node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub localsend: bool,
}

impl PeerEntry {
    /// The latest display name, if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.names.first().map(String::as_str)
    }

    /// Enforces the per-peer limits (for data read from a file).
    pub(super) fn trim(&mut self) {
        self.names.truncate(MAX_NAMES);
        self.addresses.truncate(MAX_ADDRESSES);
        self.came_from.truncate(MAX_ADDRESSES);
        let excess = self.sessions.len().saturating_sub(MAX_SESSIONS);
        self.sessions.drain(..excess);
    }
}

/// Folds `other` into `into`: two entries for one key (from stores written
/// before ids were bound to keys). The stronger decision wins (blocked, then
/// trusted, then known), names, addresses and sessions are kept from both.
pub(crate) fn merge(into: &mut PeerEntry, other: PeerEntry) {
    let rank = |t: Trust| match t {
        Trust::New => 0,
        Trust::Known => 1,
        Trust::Trusted => 2,
        Trust::Blocked => 3,
    };
    if rank(other.trust) > rank(into.trust) {
        into.trust = other.trust;
    }
    into.first_seen = into.first_seen.min(other.first_seen);
    into.last_seen = into.last_seen.max(other.last_seen);
    into.mac = into.mac.or(other.mac);
    into.alias = into.alias.take().or(other.alias);
    for n in other.names {
        if !into.names.contains(&n) {
            into.names.push(n);
        }
    }
    for a in other.addresses {
        if !into.addresses.contains(&a) {
            into.addresses.push(a);
        }
    }
    for a in other.came_from {
        if !into.came_from.contains(&a) {
            into.came_from.push(a);
        }
    }
    into.sessions.extend(other.sessions);
    into.sessions.sort_by_key(|s| s.started);
    into.trim();
}

/// What a node proved (fingerprint) and said (the rest) when it made contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its node id.
    pub node_id: Uuid,
    /// SHA-256 of the SPKI DER of the key it authenticated with.
    pub fingerprint: [u8; 32],
    /// Its display name (untrusted; sanitised before it is stored).
    pub name: String,
    /// Its MAC, if announced.
    pub mac: Option<[u8; 6]>,
    /// The address it was reached at (as a sender, we connected to it).
    pub addr: Option<SocketAddr>,
    /// The address it connected from (as a receiver; its port is of no use).
    pub from: Option<IpAddr>,
    /// A LocalSend device.
    pub localsend: bool,
}

/// Result of [`StoreData::contact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Never seen this id: its fingerprint is now pinned, trust [`Trust::New`].
    First,
    /// This id is pinned with this fingerprint; carries its trust state.
    Known(Trust),
    /// This id is pinned with another fingerprint. Nothing was changed: the
    /// connection must be refused, and only `forget` resets the pin.
    KeyChanged {
        /// The fingerprint on record.
        pinned: [u8; 32],
        /// The fingerprint presented now.
        presented: [u8; 32],
    },
}

/// Why [`StoreData::lookup`] found no single peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lookup {
    /// Nothing matches.
    #[error("no known peer matches")]
    NotFound,
    /// Several peers match: their ids and latest names (possibly empty).
    #[error("{} known peers match: {}", .0.len(), list_candidates(.0))]
    Ambiguous(Vec<(Uuid, String)>),
}

fn list_candidates(candidates: &[(Uuid, String)]) -> String {
    candidates
        .iter()
        .map(|(id, name)| {
            let name = localstream_proto::names::escape_for_terminal(name);
            format!("{id} \"{name}\"")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`StoreData::set_alias`] changed besides the new name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Realiased {
    /// The peer's earlier alias, now gone.
    pub previous: Option<String>,
    /// Other peers that had the name (their id and display name): they
    /// have no alias now.
    pub taken_from: Vec<(Uuid, String)>,
}

/// The store's contents. Mutated only through its methods (which keep the
/// per-peer limits and one entry per node id); all of them are pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreData {
    pub(super) peers: Vec<PeerEntry>,
}

impl StoreData {
    /// All peers, in order of first contact.
    #[must_use]
    pub fn peers(&self) -> &[PeerEntry] {
        &self.peers
    }

    /// The peer with this node id.
    #[must_use]
    pub fn get(&self, id: &Uuid) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.node_id == *id)
    }

    /// Gives a pinned peer the name the user chose for it (`add`).
    /// Gives the peer `id` the name `alias`, which no other peer keeps
    /// (one name, one peer). Returns what changed besides: the peer's
    /// earlier alias, and the peers the name was taken from.
    pub fn set_alias(&mut self, id: &Uuid, alias: String) -> Realiased {
        let mut taken_from = Vec::new();
        for p in self.peers.iter_mut().filter(|p| p.node_id != *id) {
            if p.alias.as_deref() == Some(alias.as_str()) {
                p.alias = None;
                taken_from.push((p.node_id, p.name().unwrap_or_default().to_owned()));
            }
        }
        let previous = self
            .get_mut(id)
            .and_then(|p| p.alias.replace(alias.clone()))
            .filter(|old| *old != alias);
        Realiased {
            previous,
            taken_from,
        }
    }

    fn get_mut(&mut self, id: &Uuid) -> Option<&mut PeerEntry> {
        self.peers.iter_mut().find(|p| p.node_id == *id)
    }

    /// Records an authenticated contact at `now_secs` (trust on first use).
    ///
    /// - Unknown id: pins `seen.fingerprint` with trust [`Trust::New`] and
    ///   returns [`Contact::First`].
    /// - Same id and fingerprint: puts the name and address first in their
    ///   lists, updates the MAC (when one was seen) and `last_seen`, returns
    ///   [`Contact::Known`] with the trust state (the caller refuses `Blocked`).
    /// - Same id, another fingerprint: changes nothing and returns
    ///   [`Contact::KeyChanged`]. The pin never changes by itself.
    ///
    /// Pins are per node id. Another id presenting a fingerprint already
    /// pinned to some id is accepted as its own peer (First, then Known): the
    /// same key under two ids is one owner (e.g. a reinstalled node.json), not
    /// an attack, since the key is what the handshake proves. A fingerprint
    /// prefix may then match both in [`StoreData::lookup`].
    pub fn contact(&mut self, seen: &Seen, now_secs: u64) -> Contact {
        let name = sanitize_name(&seen.name);
        let Some(peer) = self.get_mut(&seen.node_id) else {
            self.peers.push(PeerEntry {
                node_id: seen.node_id,
                fingerprint: seen.fingerprint,
                mac: seen.mac,
                names: name.into_iter().collect(),
                addresses: seen.addr.into_iter().collect(),
                came_from: seen.from.into_iter().collect(),
                alias: None,
                trust: Trust::New,
                first_seen: now_secs,
                last_seen: now_secs,
                sessions: Vec::new(),
                localsend: seen.localsend,
            });
            return Contact::First;
        };
        if peer.fingerprint != seen.fingerprint {
            return Contact::KeyChanged {
                pinned: peer.fingerprint,
                presented: seen.fingerprint,
            };
        }
        if let Some(name) = name {
            push_front(&mut peer.names, name, MAX_NAMES);
        }
        if let Some(addr) = seen.addr {
            push_front(&mut peer.addresses, addr, MAX_ADDRESSES);
        }
        if let Some(ip) = seen.from {
            push_front(&mut peer.came_from, ip, MAX_ADDRESSES);
        }
        if seen.mac.is_some() {
            peer.mac = seen.mac;
        }
        peer.last_seen = now_secs;
        Contact::Known(peer.trust)
    }

    /// Records a session that has begun (see [`SessionRecord::begin`]), so
    /// that it shows as interrupted if the process dies before
    /// [`StoreData::end_session`]. A record with the same id is replaced; the
    /// oldest sessions beyond [`MAX_SESSIONS`] are dropped. Returns false
    /// (and records nothing) for an unknown peer.
    pub fn begin_session(&mut self, id: &Uuid, session: SessionRecord) -> bool {
        let Some(peer) = self.get_mut(id) else {
            return false;
        };
        match peer.sessions.iter_mut().rev().find(|s| s.id == session.id) {
            Some(existing) => *existing = session,
            None => peer.sessions.push(session),
        }
        peer.trim();
        true
    }

    /// Completes a session begun with [`StoreData::begin_session`]. An
    /// [`Outcome::Ok`] promotes a [`Trust::New`] peer to [`Trust::Known`]
    /// (trusted and blocked peers stay as they are). Returns false, changing
    /// nothing, when the peer or the session is not on record.
    pub fn end_session(&mut self, id: &Uuid, session_id: &str, end: SessionEnd) -> bool {
        let Some(peer) = self.get_mut(id) else {
            return false;
        };
        let Some(session) = peer.sessions.iter_mut().rev().find(|s| s.id == session_id) else {
            return false;
        };
        session.ended = Some(end.ended_ms);
        session.files = end.files;
        session.bytes = end.bytes;
        session.resumed = end.resumed;
        session.outcome = end.outcome;
        session.detail = clip(&end.detail, MAX_DETAIL_BYTES);
        if end.outcome == Outcome::Ok && peer.trust == Trust::New {
            peer.trust = Trust::Known;
        }
        true
    }

    /// Sets a peer's trust state (the explicit `trust` / `block` commands).
    /// Returns false for an unknown peer.
    pub fn set_trust(&mut self, id: &Uuid, trust: Trust) -> bool {
        self.get_mut(id).map(|p| p.trust = trust).is_some()
    }

    /// Drops a peer, its pin and its history (the `forget` command): its next
    /// contact is a first contact again.
    pub fn forget(&mut self, id: &Uuid) -> Option<PeerEntry> {
        let index = self.peers.iter().position(|p| p.node_id == *id)?;
        Some(self.peers.remove(index))
    }

    /// Finds the peer a user means by `query`.
    ///
    /// Candidates are the union of: a full node id; a node id prefix of at
    /// least [`MIN_PREFIX_DIGITS`] hex digits (hyphens ignored); a fingerprint
    /// prefix of at least that many (`:` ignored), both case-insensitive; and
    /// peers whose latest name is exactly `query`. If none, peers whose latest
    /// name equals `query` ignoring case. One candidate is the answer; more
    /// is [`Lookup::Ambiguous`] (so a name that is also some peer's id prefix
    /// asks for a longer query rather than guessing).
    ///
    /// # Errors
    /// [`Lookup::NotFound`] or [`Lookup::Ambiguous`].
    pub fn lookup(&self, query: &str) -> Result<&PeerEntry, Lookup> {
        let query = query.trim();
        if query.is_empty() {
            return Err(Lookup::NotFound);
        }
        if let Ok(id) = Uuid::parse_str(query)
            && let Some(peer) = self.get(&id)
        {
            return Ok(peer);
        }
        let id_prefix = hex_prefix(query, '-');
        let fp_prefix = hex_prefix(query, ':');
        let matches: Vec<&PeerEntry> = self
            .peers
            .iter()
            .filter(|p| {
                id_prefix
                    .as_deref()
                    .is_some_and(|q| p.node_id.simple().to_string().starts_with(q))
                    || fp_prefix
                        .as_deref()
                        .is_some_and(|q| fingerprint_hex(&p.fingerprint).starts_with(q))
                    || p.name() == Some(query)
                    || p.alias.as_deref() == Some(query)
            })
            .collect();
        let matches = if matches.is_empty() {
            self.peers
                .iter()
                .filter(|p| {
                    p.name()
                        .into_iter()
                        .chain(p.alias.as_deref())
                        .any(|n| n.to_lowercase() == query.to_lowercase())
                })
                .collect()
        } else {
            matches
        };
        match matches.as_slice() {
            [] => Err(Lookup::NotFound),
            [one] => Ok(one),
            many => Err(Lookup::Ambiguous(
                many.iter()
                    .map(|p| (p.node_id, p.name().unwrap_or_default().to_owned()))
                    .collect(),
            )),
        }
    }
}

/// `query` without `separator`s, lowercased, if it is at least
/// [`MIN_PREFIX_DIGITS`] hex digits.
pub fn hex_prefix(query: &str, separator: char) -> Option<String> {
    let digits: String = query
        .chars()
        .filter(|&c| c != separator)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (digits.len() >= MIN_PREFIX_DIGITS && digits.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(digits)
}

/// Puts `item` first, removing an equal older one, keeping at most `cap`.
fn push_front<T: PartialEq>(list: &mut Vec<T>, item: T, cap: usize) {
    list.retain(|x| *x != item);
    list.insert(0, item);
    list.truncate(cap);
}

/// `text` without control or bidi characters, cut to `max` bytes on a
/// character boundary.
pub(super) fn clip(text: &str, max: usize) -> String {
    localstream_proto::names::strip_control_or_bidi(text, max)
}

/// Decodes exactly `2 * N` hex digits (either case).
pub(super) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

mod fingerprint_serde {
    use super::{Deserialize, Deserializer, Serializer, decode_hex, fingerprint_hex};
    use serde::de::Error;

    pub(super) fn serialize<S: Serializer>(fp: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fingerprint_hex(fp))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        decode_hex(&text).ok_or_else(|| D::Error::custom("fingerprint is not 64 hex digits"))
    }
}

mod mac_serde {
    use super::{Deserialize, Deserializer, Serializer, decode_hex};
    use serde::de::Error;

    pub(super) fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_str(&localstream_discovery::txt::format_mac(m)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 6]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let hex: String = text.split(':').collect();
        let well_formed = text.len() == 17 && text.split(':').all(|part| part.len() == 2);
        well_formed
            .then(|| decode_hex(&hex))
            .flatten()
            .map(Some)
            .ok_or_else(|| D::Error::custom("mac is not of the form aa:bb:cc:dd:ee:ff"))
    }
}
