//! Discovery in the node: what this node announces, finding a receiver by
//! name or id prefix for `send`, and the `peers` command.
//!
//! Everything discovery says is a hint: `send` connects to the addresses a
//! record gives, and the handshake then has to prove the same node id and key
//! fingerprint prefix, or the transfer stops ([`check_identity`]).

use std::net::SocketAddr;
use std::time::Duration;

use localstream_discovery::{Change, Discovery, Interfaces, Peer, PeerRecord, PeerTable};
use localstream_proto::names::escape_for_terminal;
use localstream_proto::{LocalIdentity, PeerIdentity};

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use uuid::Uuid;

use crate::config::PeersConfig;
use crate::error::{Error, PeerMatch, Result, TrustError};
pub use crate::event::PeerInfo;
use crate::event::{Event, Events, Notice};
use crate::identity::{group_hex, short_fingerprint};
pub use crate::label::{PeerLabel, label, short_id, shown_name};
use crate::store::StoreData;

mod find;
pub use find::{Wanted, close_names, find, unmet};

/// What this node announces.
#[must_use]
pub fn record_for(identity: &LocalIdentity) -> PeerRecord {
    const N: usize = localstream_discovery::txt::FINGERPRINT_PREFIX_BYTES;
    let mut fingerprint_prefix = [0u8; N];
    fingerprint_prefix.copy_from_slice(&identity.fingerprint()[..N]);
    PeerRecord {
        version: localstream_discovery::txt::TXT_VERSION,
        node_id: Uuid::from_bytes(identity.node_id()),
        fingerprint_prefix,
        name: identity.name().to_owned(),
        mac: identity.mac(),
    }
}

/// `name (3f2a9c1e)`, safe for a terminal.
#[must_use]
pub fn describe(record: &PeerRecord) -> String {
    format!(
        "{} ({})",
        shown_name(&record.name),
        short_id(&record.node_id)
    )
}

/// An IP for people: IPv6 link-local addresses keep their `%scope`.
fn show_ip(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => format!("{}%{}", v6.ip(), v6.scope_id()),
        a => a.ip().to_string(),
    }
}

/// Starts discovery on a blocking thread (its engine runs on its own).
async fn start(interfaces: &Interfaces) -> Result<Discovery> {
    let interfaces = interfaces.clone();
    tokio::task::spawn_blocking(move || Discovery::start(&interfaces))
        .await?
        .map_err(Error::from)
}

/// Withdraws the announcement and stops the daemon (at most about a second).
pub async fn stop_discovery(discovery: Discovery) {
    let _ = tokio::task::spawn_blocking(move || discovery.shutdown()).await;
}

/// Starts discovery and announces this node, unless it is off or the node
/// listens on loopback only. Returns the handle and the banner text.
///
/// # Errors
/// When interfaces named with `--interface` are unusable or mDNS cannot
/// start. With the default choice and no usable interface, discovery is
/// skipped with a warning instead: the node still receives by address.
pub async fn announce(
    identity: &LocalIdentity,
    interfaces: &Interfaces,
    local: SocketAddr,
    events: &Events,
) -> Result<(Option<Discovery>, String)> {
    if local.ip().is_loopback() {
        return Ok((None, "off (listening on loopback only)".into()));
    }
    let mut discovery = match start(interfaces).await {
        Ok(d) => d,
        Err(Error::Discovery(e @ localstream_discovery::Error::NoInterface { .. }))
            if *interfaces == Interfaces::Default =>
        {
            events.notice(Notice::NotAnnounced(e.to_string()));
            return Ok((None, "off (no usable network interface)".into()));
        }
        Err(e) => return Err(e),
    };
    let only = (!local.ip().is_unspecified()).then(|| local.ip());
    discovery.announce(&record_for(identity), local.port(), only, local.is_ipv4())?;
    let shown = discovery.interfaces().join(", ");
    Ok((Some(discovery), shown))
}

/// A discovered node, as resolve errors list it.
fn peer_match(p: &Peer) -> PeerMatch {
    PeerMatch {
        name: p.record.name.clone(),
        id: p.record.node_id,
        addresses: p.addrs.iter().map(show_ip).collect(),
        trust: None,
    }
}

/// Whether a node id starts with `prefix` (lowercase hex, from
/// [`crate::store::hex_prefix`]).
#[must_use]
pub fn id_starts_with(id: &Uuid, prefix: &str) -> bool {
    id.simple().to_string().starts_with(prefix)
}

/// Whether `name` is what the user typed, in any case.
#[must_use]
pub fn same_name(typed: &str, name: &str) -> bool {
    name == typed || name.to_lowercase() == typed.to_lowercase()
}

/// Whether two names would look alike on a screen: equal once invisible
/// formatting, control and bidi characters and white space are dropped and
/// case is folded (`lap\u{200b}top ` looks like `Laptop`). For refusing
/// impostors, not for finding peers.
#[must_use]
pub fn looks_like(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .filter(|&c| {
                !c.is_whitespace()
                    && !localstream_proto::names::is_invisible_format(c)
                    && !localstream_proto::names::is_control_or_bidi(c)
            })
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (a, b) = (fold(a), fold(b));
    !a.is_empty() && a == b
}

/// After the handshake: the node that answered must be the one the record
/// described (same id and key fingerprint prefix).
///
/// # Errors
/// [`TrustError::WrongPeer`] when it is not.
pub fn check_identity(
    expected: &PeerRecord,
    actual: &PeerIdentity,
    addr: SocketAddr,
) -> Result<()> {
    let same_id = actual.node_id == *expected.node_id.as_bytes();
    let same_key = actual.fingerprint.starts_with(&expected.fingerprint_prefix);
    if same_id && same_key {
        return Ok(());
    }
    Err(Error::Trust(TrustError::WrongPeer {
        addr,
        expected: label(
            &expected.name,
            &expected.node_id,
            &group_hex(&expected.fingerprint_prefix),
        ),
        actual: PeerLabel::of(actual).to_string(),
    }))
}

/// What this node's peer store says about a discovered peer: its trust
/// state, `unpinned` when never met, or `CHANGED` when the announcement
/// claims a pinned id with another key.
fn trust_of(p: &Peer, store: &StoreData) -> &'static str {
    match store.get(&p.record.node_id) {
        None => "unpinned",
        Some(e) if !e.fingerprint.starts_with(&p.record.fingerprint_prefix) => "CHANGED",
        Some(e) => e.trust.as_str(),
    }
}

impl PeerInfo {
    /// What `p` announces, and what this node's store says about it.
    #[must_use]
    pub fn new(p: &Peer, store: &StoreData) -> PeerInfo {
        let pinned_key = store
            .get(&p.record.node_id)
            .filter(|e| !e.fingerprint.starts_with(&p.record.fingerprint_prefix))
            .map(|e| short_fingerprint(&e.fingerprint));
        PeerInfo {
            name: p.record.name.clone(),
            id: p.record.node_id.hyphenated().to_string(),
            short_id: short_id(&p.record.node_id),
            addresses: p.addrs.iter().map(show_ip).collect(),
            port: p.port(),
            fingerprint: group_hex(&p.record.fingerprint_prefix),
            mac: p
                .record
                .mac
                .as_ref()
                .map(localstream_discovery::txt::format_mac),
            version: p.record.version,
            trust: trust_of(p, store),
            alias: store
                .get(&p.record.node_id)
                .filter(|e| e.fingerprint.starts_with(&p.record.fingerprint_prefix))
                .and_then(|e| e.alias.clone()),
            conflicting: p
                .conflicting
                .iter()
                .map(|o| group_hex(&o.fingerprint_prefix))
                .collect(),
            pinned_key,
            protocol: "localstream",
            device: None,
        }
    }
}

impl PeerInfo {
    /// How strongly `send NAME` prefers it among nodes of one name: trusted
    /// over pinned, pinned over unknown (see [`find`]).
    #[must_use]
    pub fn preference(&self) -> u8 {
        match self.trust {
            "trusted" => 2,
            "new" | "known" => 1,
            _ => 0,
        }
    }
}

/// Of several nodes with one name, the one `send NAME` picks: the only
/// trusted one, else the only pinned one; `None` when the user must choose.
#[must_use]
pub fn picked_among(same_name: &[&PeerInfo]) -> Option<usize> {
    let best = same_name.iter().map(|p| p.preference()).max()?;
    let top: Vec<usize> = (0..same_name.len())
        .filter(|&i| same_name[i].preference() == best)
        .collect();
    match top.as_slice() {
        [one] if best > 0 => Some(*one),
        _ => None,
    }
}

/// What `peers` found.
#[derive(Debug, Clone)]
pub struct Browsed {
    /// The nodes seen (this one left out), one per node id.
    pub peers: Vec<PeerInfo>,
    /// The interfaces looked on.
    pub looked_on: String,
    /// How long it looked.
    pub elapsed: Duration,
}

/// Looks for nodes until `cfg.timeout` or `stop`; with `cfg.watch`, each
/// change is an event ([`Event::PeerSeen`], [`Event::PeerChanged`],
/// [`Event::PeerGone`]) as it happens.
///
/// # Errors
/// When discovery cannot start.
pub async fn browse(
    cfg: &PeersConfig,
    own: Uuid,
    store: &StoreData,
    events: &Events,
    stop: &CancellationToken,
) -> Result<Browsed> {
    let started = Instant::now();
    let discovery = start(&cfg.interfaces).await?;
    let looked_on = discovery.interfaces().join(", ");
    let mut browser = discovery.browse()?;
    let mut table = PeerTable::new();
    let deadline = cfg.timeout.map(|t| started + t);
    loop {
        tokio::select! {
            ev = browser.next() => {
                let Some(ev) = ev else { break };
                let change = table.apply(&ev);
                if let localstream_discovery::Event::Rejected { instance, reason } = &ev {
                    debug!(instance = %escape_for_terminal(instance), %reason, "ignored a malformed record");
                }
                if cfg.watch && let Some(change) = change {
                    report_change(&change, own, store, events);
                }
            }
            () = async { match deadline { Some(d) => sleep_until(d).await, None => std::future::pending().await } } => break,
            () = stop.cancelled() => break,
        }
    }
    stop_discovery(discovery).await;
    let peers = table
        .peers()
        .into_iter()
        .filter(|p| p.record.node_id != own)
        .map(|p| PeerInfo::new(&p, store))
        .collect();
    Ok(Browsed {
        peers,
        looked_on,
        elapsed: started.elapsed(),
    })
}

/// One change seen while watching, as an event.
fn report_change(change: &Change, own: Uuid, store: &StoreData, events: &Events) {
    let (p, event): (_, fn(PeerInfo) -> Event) = match change {
        Change::Appeared(p) => (p, |peer| Event::PeerSeen { peer }),
        Change::Updated(p) => (p, |peer| Event::PeerChanged { peer }),
        Change::Disappeared(p) => (p, |peer| Event::PeerGone { peer }),
    };
    if p.record.node_id != own {
        events.emit(event(PeerInfo::new(p, store)));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn names_that_look_alike_are_caught() {
        assert!(looks_like("laptop", "Lap\u{200b}top "));
        assert!(looks_like("laptop", "LAPTOP"));
        assert!(!looks_like("laptop", "laptop2"));
        assert!(!looks_like("", "\u{200b}"));
    }

    #[test]
    fn a_name_cannot_fake_the_proven_id_and_fingerprint() {
        let id = Uuid::from_bytes([0x11; 16]);
        let fake = "laptop (3f2a9c1e) [ab12:cd34:ef56:7890]";
        let shown = label(fake, &id, "0000:0000:0000:0000");
        assert_eq!(
            shown,
            "\"laptop (3f2a9c1e) [ab12:cd34:ef56:7890]\" (11111111) [0000:0000:0000:0000]"
        );
        assert_eq!(label("laptop", &id, "f"), "laptop (11111111) [f]");
    }

    use super::*;

    fn record(id: &str, name: &str) -> PeerRecord {
        PeerRecord {
            version: 1,
            node_id: id.parse().unwrap(),
            fingerprint_prefix: [0xab; 8],
            name: name.into(),
            mac: None,
        }
    }

    #[test]
    fn wrong_peer_is_refused() {
        let expected = record("3f2a9c1e-0000-4000-8000-0000000000ab", "box");
        let mut actual = PeerIdentity {
            node_id: *expected.node_id.as_bytes(),
            name: "box".into(),
            mac: None,
            public_key_der: vec![],
            fingerprint: [0xab; 32],
        };
        let addr: SocketAddr = "10.0.0.1:47470".parse().unwrap();
        assert!(check_identity(&expected, &actual, addr).is_ok());
        actual.fingerprint[3] = 0;
        let e = check_identity(&expected, &actual, addr)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("10.0.0.1:47470") && e.contains("stopping"),
            "{e}"
        );
        actual.fingerprint = [0xab; 32];
        actual.node_id[0] ^= 1;
        actual.name = "evil\x1b[2J".into();
        let e = check_identity(&expected, &actual, addr)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("3e2a9c1e") && e.contains("3f2a9c1e") && !e.contains('\x1b'),
            "{e}"
        );
    }

    #[test]
    fn peer_info_says_what_the_store_knows() {
        let p = Peer {
            record: record("3f2a9c1e-0000-4000-8000-0000000000ab", "box\x1b[2J"),
            addrs: vec![
                "10.0.0.1:47470".parse().unwrap(),
                "[fe80::1%3]:47470".parse().unwrap(),
            ],
            conflicting: vec![],
        };
        let mut store = StoreData::default();
        let info = PeerInfo::new(&p, &store);
        assert_eq!(info.trust, "unpinned");
        assert_eq!(info.short_id, "3f2a9c1e");
        assert_eq!(info.addresses, ["10.0.0.1", "fe80::1%3"]);
        assert_eq!(info.port, 47470);
        assert_eq!(info.fingerprint, "abab:abab:abab:abab");
        let seen = crate::store::Seen {
            node_id: p.record.node_id,
            fingerprint: [0xab; 32],
            name: "box".into(),
            mac: None,
            addr: None,
            from: None,
            localsend: false,
        };
        store.contact(&seen, 1);
        assert_eq!(PeerInfo::new(&p, &store).trust, "new");
        let mut changed = p.clone();
        changed.record.fingerprint_prefix[0] = 0;
        let c = PeerInfo::new(&changed, &store);
        assert_eq!(c.trust, "CHANGED");
        assert_eq!(c.pinned_key.as_deref(), Some("abab:abab:abab:abab"));
        let j = serde_json::to_value(PeerInfo::new(&p, &store)).unwrap();
        assert_eq!(j["trust"], "new");
        assert_eq!(j["id"], "3f2a9c1e-0000-4000-8000-0000000000ab");
        assert_eq!(j["addresses"][1], "fe80::1%3");
        assert_eq!(j["name"], "box\x1b[2J");
        assert_eq!(j["mac"], serde_json::Value::Null);
        assert!(j.get("pinned_key").is_none(), "{j}");
    }
}
