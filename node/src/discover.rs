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
use crate::error::{Error, PeerMatch, ResolveError, Result, TrustError};
pub use crate::event::PeerInfo;
use crate::event::{Event, Events, Notice};
use crate::identity::{group_hex, short_fingerprint};
pub use crate::label::{PeerLabel, label, short_id, shown_name};
use crate::store::StoreData;

/// After the first node matching a name answers, how long to keep listening
/// for another node of the same name (mDNS answers to one query are spread
/// over 20-120 ms, RFC 6762 section 6).
const SETTLE_AFTER_MATCH: Duration = Duration::from_millis(150);
/// ... and at least this long after the first query went out.
const SETTLE_MIN: Duration = Duration::from_millis(250);

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

/// How well a record matches what the user typed; lower is better.
#[derive(Debug, Clone)]
struct Query {
    text: String,
    lower: String,
    /// Hex digits, when the text is at least 4 of them (hyphens ignored).
    id_prefix: Option<String>,
}

impl Query {
    fn new(text: &str) -> Query {
        let id_prefix = crate::store::hex_prefix(text, '-').filter(|p| p.len() <= 32);
        Query {
            text: text.to_owned(),
            lower: text.to_lowercase(),
            id_prefix,
        }
    }

    /// Whether the record matches at all (by id prefix or by name in any case).
    fn rank(&self, r: &PeerRecord) -> Option<u8> {
        if self.matches_id(r) || r.name == self.text {
            Some(0)
        } else if r.name.to_lowercase() == self.lower {
            Some(1)
        } else {
            None
        }
    }

    fn matches_id(&self, r: &PeerRecord) -> bool {
        self.id_prefix
            .as_ref()
            .is_some_and(|p| id_starts_with(&r.node_id, p))
    }

    /// The records this query designates: every id-prefix match, plus the
    /// exact-name matches (or, when there are none, the names that match
    /// ignoring case). One name never silently beats another kind of match.
    fn select<'p>(&self, peers: &'p [Peer]) -> Vec<&'p Peer> {
        let exact: Vec<&Peer> = peers
            .iter()
            .filter(|p| p.record.name == self.text)
            .collect();
        let names = if exact.is_empty() {
            peers
                .iter()
                .filter(|p| p.record.name.to_lowercase() == self.lower)
                .collect()
        } else {
            exact
        };
        let mut all: Vec<&Peer> = peers
            .iter()
            .filter(|p| self.matches_id(&p.record))
            .collect();
        for p in names {
            if !all.iter().any(|q| q.record.node_id == p.record.node_id) {
                all.push(p);
            }
        }
        all
    }

    /// A whole node id: nothing else can match, no need to wait for more answers.
    fn is_whole_id(&self) -> bool {
        self.id_prefix.as_ref().is_some_and(|p| p.len() == 32)
    }
}

/// Looks for the receiver the user named: browses until one node matches
/// (plus a moment to notice a second node of the same name) or `timeout`.
///
/// # Errors
/// [`ResolveError::NotFound`] (listing what was seen), [`ResolveError::Ambiguous`]
/// (listing every match with its id), or discovery failing to start.
pub async fn find(
    interfaces: &Interfaces,
    query: &str,
    timeout: Duration,
    own: Uuid,
) -> Result<Peer> {
    let started = Instant::now();
    let discovery = start(interfaces).await?;
    let looked_on = discovery.interfaces().to_vec();
    let mut browser = discovery.browse()?;
    let q = Query::new(query);
    let mut table = PeerTable::new();
    let deadline = started + timeout;
    let mut settle: Option<Instant> = None;
    loop {
        let wake = settle.map_or(deadline, |s| s.min(deadline));
        tokio::select! {
            ev = browser.next() => {
                let Some(ev) = ev else { break };
                let Some(Change::Appeared(p) | Change::Updated(p)) = table.apply(&ev) else { continue };
                if p.record.node_id == own || q.rank(&p.record).is_none() {
                    continue;
                }
                debug!(peer = %describe(&p.record), after = ?started.elapsed(), "match");
                if q.is_whole_id() {
                    break;
                }
                if settle.is_none() {
                    settle = Some((Instant::now() + SETTLE_AFTER_MATCH).max(started + SETTLE_MIN));
                }
            }
            () = sleep_until(wake) => break,
        }
    }
    // The daemon stops in the background; the transfer need not wait for it.
    tokio::task::spawn_blocking(move || discovery.shutdown());

    let others: Vec<Peer> = table
        .peers()
        .into_iter()
        .filter(|p| p.record.node_id != own)
        .collect();
    let mut matches: Vec<Peer> = q.select(&others).into_iter().cloned().collect();
    match matches.len() {
        0 => Err(ResolveError::NotFound {
            query: query.to_owned(),
            seen: others.iter().map(peer_match).collect(),
            waited: started.elapsed(),
            interfaces: looked_on,
        }
        .into()),
        1 => Ok(matches.remove(0)),
        _ => Err(ResolveError::Ambiguous {
            query: query.to_owned(),
            matches: matches.iter().map(peer_match).collect(),
        }
        .into()),
    }
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
    fn queries() {
        let a = record("3f2a9c1e-0000-4000-8000-0000000000ab", "Box");
        let b = record("77aa0000-0000-4000-8000-0000000000cd", "box");
        let q = Query::new("Box");
        assert_eq!((q.rank(&a), q.rank(&b)), (Some(0), Some(1)));
        let q = Query::new("BOX");
        assert_eq!((q.rank(&a), q.rank(&b)), (Some(1), Some(1)));
        let peer = |r: &PeerRecord| Peer {
            record: r.clone(),
            addrs: vec![],
            conflicting: vec![],
        };
        let ids = |v: Vec<&Peer>| v.iter().map(|p| p.record.node_id).collect::<Vec<_>>();
        let both = [peer(&a), peer(&b)];
        // The exact name wins over the same name in another case...
        assert_eq!(ids(Query::new("box").select(&both)), [b.node_id]);
        // ... but a case-insensitive name is ambiguous between the two.
        assert_eq!(ids(Query::new("BOX").select(&both)).len(), 2);
        // A name never silently beats an id prefix: "77aa" is b's id and a's name.
        let named_77aa = PeerRecord {
            name: "77aa".into(),
            ..a.clone()
        };
        let mixed = [peer(&named_77aa), peer(&b)];
        assert_eq!(ids(Query::new("77aa").select(&mixed)).len(), 2);
        let cafe = PeerRecord {
            name: "Cafe".into(),
            ..a.clone()
        };
        let mallory = record("cafe0000-0000-4000-8000-0000000000ee", "mallory");
        let pair = [peer(&cafe), peer(&mallory)];
        assert_eq!(ids(Query::new("cafe").select(&pair)).len(), 2);
        // Id prefixes: 4+ hex digits, any case, hyphens ignored.
        assert_eq!(Query::new("3f2a").rank(&a), Some(0));
        assert_eq!(Query::new("3F2A9C1E-00").rank(&a), Some(0));
        assert_eq!(Query::new("3f2").rank(&a), None);
        assert_eq!(Query::new("3f2a").rank(&b), None);
        assert!(Query::new("3f2a9c1e-0000-4000-8000-0000000000ab").is_whole_id());
        assert!(!Query::new("3f2a9c1e").is_whole_id());
        assert_eq!(Query::new("nothing").rank(&a), None);
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
