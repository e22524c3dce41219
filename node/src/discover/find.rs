//! Finding the receiver `send` names: by what discovery hears and what this
//! node's peer store says the name means.
//!
//! ```text
//!  Wanted::new(typed, store) ─► the pinned ids the text names in the store (an alias
//!                               given with `add`, a name, an id or fingerprint prefix)
//!  find ─► browse: a pinned id seen with its pinned key ─► that node, at once
//!                  a node matching by name or id ─────► settle, then pick
//!                  no match, the answers are in ──────► stop (NotFound, with close names)
//!  pick ─► one match; else the one pinned (or trusted) match; else Ambiguous, marked
//! ```
//!
//! "The answers are in" means: the browse's second query (a second after
//! the first) has had time to be answered, and no new node has appeared for
//! a moment. Nodes answer a query within 120 ms (RFC 6762 section 6), so a
//! node that has not answered two queries is not listening there; waiting
//! the whole `--timeout` is only for a network where nobody answers at all.

use std::time::Duration;

use localstream_discovery::{Change, Interfaces, Peer, PeerRecord, PeerTable};
use tokio::time::{Instant, sleep_until};
use tracing::debug;
use uuid::Uuid;

use super::{describe, id_starts_with, peer_match, start};
use crate::error::{PeerMatch, ResolveError, Result};
use crate::store::{Lookup, StoreData, Trust};

/// After the first node matching a name answers, how long to keep listening
/// for another node of the same name (mDNS answers to one query are spread
/// over 20-120 ms, RFC 6762 section 6).
const SETTLE_AFTER_MATCH: Duration = Duration::from_millis(150);
/// ... and at least this long after the first query went out.
const SETTLE_MIN: Duration = Duration::from_millis(250);
/// Nothing matches: the answers to the first query and to its repeat a
/// second later (plus their 20-120 ms delay) are in after this...
const ANSWERS_IN: Duration = Duration::from_millis(1250);
/// ... once no new node has appeared for this long.
const QUIET: Duration = Duration::from_millis(400);

/// How well a record matches what the user typed.
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

    /// Whether the record matches at all (by id prefix or by name in any
    /// case), and how well (lower is better).
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

/// A pinned peer the typed text names in the store.
#[derive(Debug, Clone)]
struct Pin {
    id: Uuid,
    fingerprint: [u8; 32],
    trust: Trust,
    /// The store has an address for it (so a browse need not wait long).
    reachable: bool,
}

/// Whom `send` looks for: what the user typed, and what this node's peer
/// store says about it and about every node that answers.
#[derive(Debug, Clone)]
pub struct Wanted {
    query: Query,
    /// The LocalStream peers the text names in the store.
    pins: Vec<Pin>,
    store: StoreData,
}

impl Wanted {
    /// What `typed` means, given the peer store's contents.
    #[must_use]
    pub fn new(typed: &str, store: StoreData) -> Wanted {
        let ids: Vec<Uuid> = match store.lookup(typed) {
            Ok(e) => vec![e.node_id],
            Err(Lookup::Ambiguous(many)) => many.into_iter().map(|(id, _)| id).collect(),
            Err(Lookup::NotFound) => vec![],
        };
        let pins = ids
            .iter()
            .filter_map(|id| store.get(id))
            .filter(|e| !e.localsend)
            .map(|e| Pin {
                id: e.node_id,
                fingerprint: e.fingerprint,
                trust: e.trust,
                reachable: !e.addresses.is_empty() && e.trust != Trust::Blocked,
            })
            .collect();
        Wanted {
            query: Query::new(typed),
            pins,
            store,
        }
    }

    /// Whether the store says the text names LocalStream peers met here
    /// (then that is whom the user means, not a LocalSend device of the name).
    #[must_use]
    pub fn names_a_pin(&self) -> bool {
        !self.pins.is_empty()
    }

    /// What the user typed.
    #[must_use]
    pub fn typed(&self) -> &str {
        &self.query.text
    }

    /// Whether `p` is one the user means: by name or id, or as a pinned
    /// peer the text names in the store.
    fn matches(&self, p: &Peer) -> bool {
        self.query.rank(&p.record).is_some() || self.pins.iter().any(|x| x.id == p.record.node_id)
    }

    /// `p` is the pinned peer the text names, with its pinned key, and no
    /// other peer the text names could be preferred to it: no need to wait
    /// for more answers.
    fn is_the_pin(&self, p: &Peer) -> bool {
        let Some(pin) = self.pins.iter().find(|x| x.id == p.record.node_id) else {
            return false;
        };
        pin.fingerprint.starts_with(&p.record.fingerprint_prefix)
            && pin.trust != Trust::Blocked
            && self
                .pins
                .iter()
                .filter(|x| x.id != pin.id)
                .all(|x| preference(x.trust) < preference(pin.trust))
    }

    /// What the store says about a node that answered, if it is pinned
    /// here with the key it announces.
    fn standing(&self, p: &Peer) -> Option<Trust> {
        self.store
            .get(&p.record.node_id)
            .filter(|e| e.fingerprint.starts_with(&p.record.fingerprint_prefix))
            .map(|e| e.trust)
    }

    /// The nodes the user means among those that answered.
    fn candidates(&self, others: &[Peer]) -> Vec<Peer> {
        let mut all: Vec<Peer> = self.query.select(others).into_iter().cloned().collect();
        for p in others {
            let pinned = self.pins.iter().any(|x| x.id == p.record.node_id);
            if pinned && !all.iter().any(|q| q.record.node_id == p.record.node_id) {
                all.push(p.clone());
            }
        }
        all
    }

    /// One of several matches: the only trusted one, else the only pinned
    /// one (a name the user has sent to before means that node), else none.
    fn prefer(&self, matches: &[Peer]) -> Option<usize> {
        let ranks: Vec<u8> = matches
            .iter()
            .map(|p| self.standing(p).map_or(0, preference))
            .collect();
        let best = *ranks.iter().max()?;
        (best > 0 && ranks.iter().filter(|&&r| r == best).count() == 1)
            .then(|| ranks.iter().position(|&r| r == best))
            .flatten()
    }

    fn peer_match(&self, p: &Peer) -> PeerMatch {
        PeerMatch {
            trust: self.standing(p),
            ..peer_match(p)
        }
    }
}

/// How strongly a pinned peer is preferred when several match: trusted
/// over merely pinned; a blocked one never.
fn preference(t: Trust) -> u8 {
    match t {
        Trust::Trusted => 2,
        Trust::New | Trust::Known => 1,
        Trust::Blocked => 0,
    }
}

/// When the browse may stop: a match settles, unless a pinned peer the
/// text names has not answered yet; without a match (or with such a pin
/// missing), once the answers are in (when anyone answered, or a pinned peer
/// has a stored address to fall back on); else at the deadline.
struct Clock {
    started: Instant,
    deadline: Instant,
    settle: Option<Instant>,
    last_new: Option<Instant>,
    /// A pinned peer has a stored address: no need to wait for the deadline.
    fallback: bool,
    /// A pinned peer the text names has not answered yet.
    pin_missing: bool,
}

impl Clock {
    fn wake(&self) -> Instant {
        let settle = self.settle.filter(|_| !self.pin_missing);
        let wake = match (settle, self.last_new) {
            (Some(s), _) => s,
            (None, Some(last)) => (self.started + ANSWERS_IN).max(last + QUIET),
            (None, None) if self.fallback => self.started + ANSWERS_IN,
            (None, None) => self.deadline,
        };
        wake.min(self.deadline)
    }
}

/// What one answer means for the browse ([`Search::answered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    /// The pinned peer the text names, with its key: it is the one, at once.
    ThePin,
    /// The node with the whole id typed: nothing else can match.
    WholeId,
    /// A node the text names (by name or id, or one of several pins): the
    /// browse settles, to notice another node of the same name.
    Match,
    /// Someone else (or ourselves).
    Other,
}

/// The browse's state between answers: the clock, and which pinned peers
/// the text names have answered. Pure (the time is given), so that when
/// the search ends can be tested without a network.
struct Search<'w> {
    wanted: &'w Wanted,
    own: Uuid,
    clock: Clock,
    pins_seen: Vec<Uuid>,
}

impl<'w> Search<'w> {
    fn new(wanted: &'w Wanted, own: Uuid, started: Instant, timeout: Duration) -> Self {
        Search {
            wanted,
            own,
            clock: Clock {
                started,
                deadline: started + timeout,
                settle: None,
                last_new: None,
                fallback: wanted.pins.iter().any(|p| p.reachable),
                pin_missing: !wanted.pins.is_empty(),
            },
            pins_seen: Vec::new(),
        }
    }

    /// `p` answered at `now` (`new`: for the first time): whether it ends
    /// the search, or how it moves the clock.
    fn answered(&mut self, p: &Peer, new: bool, now: Instant) -> Heard {
        let wanted = self.wanted;
        if p.record.node_id == self.own {
            return Heard::Other;
        }
        if new {
            self.clock.last_new = Some(now);
        }
        if wanted.is_the_pin(p) {
            return Heard::ThePin;
        }
        if !wanted.matches(p) {
            return Heard::Other;
        }
        let id = p.record.node_id;
        if wanted.pins.iter().any(|x| x.id == id) && !self.pins_seen.contains(&id) {
            self.pins_seen.push(id);
            self.clock.pin_missing = self.pins_seen.len() < wanted.pins.len();
        }
        if wanted.query.is_whole_id() {
            return Heard::WholeId;
        }
        let started = self.clock.started;
        self.clock
            .settle
            .get_or_insert((now + SETTLE_AFTER_MATCH).max(started + SETTLE_MIN));
        Heard::Match
    }
}

/// Looks for the receiver the user named: browses until the pinned peer
/// the name means answers, or a node matches (plus a moment to notice a
/// second node of the same name), or every node has answered without a
/// match, or `timeout`.
///
/// # Errors
/// [`ResolveError::NotFound`] (listing what was seen, and the names close to
/// the one typed), [`ResolveError::Ambiguous`] (listing every match with its
/// id and what the store says about it), or discovery failing to start.
pub async fn find(
    interfaces: &Interfaces,
    wanted: &Wanted,
    timeout: Duration,
    own: Uuid,
) -> Result<Peer> {
    let started = Instant::now();
    let discovery = start(interfaces).await?;
    let looked_on = discovery.interfaces().to_vec();
    let mut browser = discovery.browse()?;
    let mut table = PeerTable::new();
    let mut search = Search::new(wanted, own, started, timeout);
    let mut chosen = None;
    loop {
        tokio::select! {
            ev = browser.next() => {
                let Some(ev) = ev else { break };
                let (p, new) = match table.apply(&ev) {
                    Some(Change::Appeared(p)) => (p, true),
                    Some(Change::Updated(p)) => (p, false),
                    _ => continue,
                };
                match search.answered(&p, new, Instant::now()) {
                    Heard::ThePin => {
                        debug!(peer = %describe(&p.record), after = ?started.elapsed(), "the pinned peer");
                        chosen = Some(p);
                        break;
                    }
                    Heard::WholeId => break,
                    Heard::Match => debug!(peer = %describe(&p.record), after = ?started.elapsed(), "match"),
                    Heard::Other => {}
                }
            }
            () = sleep_until(search.clock.wake()) => break,
        }
    }
    // The daemon stops in the background; the transfer need not wait for it.
    tokio::task::spawn_blocking(move || discovery.shutdown());
    if let Some(p) = chosen {
        return Ok(p);
    }
    let mut others: Vec<Peer> = table
        .peers()
        .into_iter()
        .filter(|p| p.record.node_id != own)
        .collect();
    others.sort_by(|a, b| {
        (&a.record.name, a.record.node_id).cmp(&(&b.record.name, b.record.node_id))
    });
    // The pinned peers the text names are all away, and one can be tried
    // where it was last reached: another node of the name is not what the
    // user means (and would be refused as taking a pinned peer's name).
    let away = !wanted.pins.is_empty() && search.pins_seen.is_empty() && search.clock.fallback;
    let mut matches = if away {
        vec![]
    } else {
        wanted.candidates(&others)
    };
    if matches.len() > 1
        && let Some(i) = wanted.prefer(&matches)
    {
        return Ok(matches.swap_remove(i));
    }
    match matches.len() {
        0 => {
            let names: Vec<&str> = others.iter().map(|p| p.record.name.as_str()).collect();
            Err(ResolveError::NotFound {
                query: wanted.typed().to_owned(),
                suggestions: close_names(wanted.typed(), &names),
                seen: others.iter().map(|p| wanted.peer_match(p)).collect(),
                waited: started.elapsed(),
                interfaces: looked_on,
            }
            .into())
        }
        1 => Ok(matches.remove(0)),
        _ => Err(ResolveError::Ambiguous {
            query: wanted.typed().to_owned(),
            matches: matches.iter().map(|p| wanted.peer_match(p)).collect(),
        }
        .into()),
    }
}

/// How long `trust` looks for a node it does not know (it stops sooner
/// once the answers are in).
const UNMET_LOOK: Duration = Duration::from_secs(3);

/// For `trust` (and the like) when no stored peer answers to `typed`: the
/// node on the network that does, so that the user learns it is there but
/// not met yet. `None` when none does, or discovery cannot start (the
/// store's answer stands then).
pub async fn unmet(interfaces: &Interfaces, typed: &str, own: Uuid) -> Option<PeerMatch> {
    let wanted = Wanted::new(typed, StoreData::default());
    match find(interfaces, &wanted, UNMET_LOOK, own).await {
        Ok(p) => Some(peer_match(&p)),
        Err(crate::Error::Resolve(ResolveError::Ambiguous { mut matches, .. })) => {
            (!matches.is_empty()).then(|| matches.remove(0))
        }
        Err(e) => {
            debug!(error = %e, "no node on the network answers to that either");
            None
        }
    }
}

/// The names among `names` that look like a typo of `typed` or start with
/// it (in any case), at most three, each once.
#[must_use]
pub fn close_names(typed: &str, names: &[&str]) -> Vec<String> {
    let t = typed.trim().to_lowercase();
    if t.is_empty() {
        return vec![];
    }
    let allowed = (t.chars().count() / 3).max(1);
    let mut close: Vec<String> = Vec::new();
    for name in names {
        let n = name.to_lowercase();
        let near = (t.chars().count() >= 2 && n.starts_with(&t))
            || strsim::damerau_levenshtein(&t, &n) <= allowed;
        if near && n != t && !close.iter().any(|c| c == name) {
            close.push((*name).to_owned());
        }
    }
    close.truncate(3);
    close
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Seen;

    fn record(id: &str, name: &str) -> PeerRecord {
        PeerRecord {
            version: 1,
            node_id: id.parse().unwrap(),
            fingerprint_prefix: [0xab; 8],
            name: name.into(),
            mac: None,
        }
    }

    fn peer(r: &PeerRecord) -> Peer {
        Peer {
            record: r.clone(),
            addrs: vec![],
            conflicting: vec![],
        }
    }

    /// `r` pinned in `store` with the key it announces, under `name`.
    fn pin(store: &mut StoreData, r: &PeerRecord, addr: Option<&str>) {
        let seen = Seen {
            node_id: r.node_id,
            fingerprint: [0xab; 32],
            name: r.name.clone(),
            mac: None,
            addr: addr.map(|a| a.parse().unwrap()),
            from: None,
            localsend: false,
        };
        store.contact(&seen, 1);
    }

    #[test]
    fn queries() {
        let a = record("3f2a9c1e-0000-4000-8000-0000000000ab", "Box");
        let b = record("77aa0000-0000-4000-8000-0000000000cd", "box");
        let q = Query::new("Box");
        assert_eq!((q.rank(&a), q.rank(&b)), (Some(0), Some(1)));
        let q = Query::new("BOX");
        assert_eq!((q.rank(&a), q.rank(&b)), (Some(1), Some(1)));
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
    fn an_alias_names_its_pinned_id() {
        let h2 = record("3f2a9c1e-0000-4000-8000-0000000000ab", "h2");
        let mut store = StoreData::default();
        pin(&mut store, &h2, Some("10.79.0.2:47470"));
        store.set_alias(&h2.node_id, "studio".into());
        let w = Wanted::new("studio", store.clone());
        assert!(w.matches(&peer(&h2)), "the alias names h2's id");
        assert!(w.is_the_pin(&peer(&h2)), "no need to wait once it is seen");
        assert!(w.pins[0].reachable);
        // The same id announced with another key is a match, not the pin:
        // `check_found` refuses it.
        let forged = PeerRecord {
            fingerprint_prefix: [0; 8],
            ..h2.clone()
        };
        assert!(w.matches(&peer(&forged)) && !w.is_the_pin(&peer(&forged)));
        // Nothing in the store: only names and ids match.
        let w = Wanted::new("studio", StoreData::default());
        assert!(!w.matches(&peer(&h2)));
        assert!(Wanted::new("h2", store).is_the_pin(&peer(&h2)));
    }

    #[test]
    fn the_pinned_one_of_two_same_names_is_preferred_and_marked() {
        let mine = record("3f2a9c1e-0000-4000-8000-0000000000ab", "box");
        let other = record("77aa0000-0000-4000-8000-0000000000cd", "box");
        let both = [peer(&other), peer(&mine)];
        // Neither pinned: ambiguous.
        let w = Wanted::new("box", StoreData::default());
        assert_eq!(w.prefer(&w.candidates(&both)), None);
        // One pinned: that one, at once when it is seen.
        let mut store = StoreData::default();
        pin(&mut store, &mine, None);
        let w = Wanted::new("box", store.clone());
        let c = w.candidates(&both);
        assert_eq!(c[w.prefer(&c).unwrap()].record.node_id, mine.node_id);
        assert!(w.is_the_pin(&peer(&mine)));
        assert_eq!(w.peer_match(&peer(&mine)).trust, Some(Trust::New));
        assert_eq!(w.peer_match(&peer(&other)).trust, None);
        // Both pinned, one trusted: the trusted one.
        pin(&mut store, &other, None);
        store.set_trust(&mine.node_id, Trust::Trusted);
        let w = Wanted::new("box", store.clone());
        let c = w.candidates(&both);
        assert_eq!(c[w.prefer(&c).unwrap()].record.node_id, mine.node_id);
        assert!(w.is_the_pin(&peer(&mine)) && !w.is_the_pin(&peer(&other)));
        // Both pinned, neither trusted: the user must choose.
        store.set_trust(&mine.node_id, Trust::Known);
        let w = Wanted::new("box", store);
        assert_eq!(w.prefer(&w.candidates(&both)), None);
        assert!(!w.is_the_pin(&peer(&mine)) && !w.is_the_pin(&peer(&other)));
    }

    #[test]
    fn the_browse_stops_when_the_answers_are_in() {
        let t = Instant::now();
        let mut c = Clock {
            started: t,
            deadline: t + Duration::from_secs(5),
            settle: None,
            last_new: None,
            fallback: false,
            pin_missing: false,
        };
        // Nobody answered, nothing to fall back on: the whole timeout.
        assert_eq!(c.wake(), t + Duration::from_secs(5));
        // A stored address to fall back on: the two queries' answers.
        c.fallback = true;
        assert_eq!(c.wake(), t + ANSWERS_IN);
        // Answers, the last at 0.2 s: after the second query's.
        c.last_new = Some(t + Duration::from_millis(200));
        assert_eq!(c.wake(), t + ANSWERS_IN);
        // A node appeared late: a moment after it.
        c.last_new = Some(t + Duration::from_millis(1200));
        assert_eq!(c.wake(), t + Duration::from_millis(1200) + QUIET);
        // A match settles sooner...
        c.settle = Some(t + SETTLE_MIN);
        assert_eq!(c.wake(), t + SETTLE_MIN);
        // ... unless a pinned peer the name means has not answered yet.
        c.pin_missing = true;
        assert_eq!(c.wake(), t + Duration::from_millis(1200) + QUIET);
        c.pin_missing = false;
        // Never past the deadline.
        c.settle = None;
        c.last_new = Some(t + Duration::from_millis(4900));
        assert_eq!(c.wake(), t + Duration::from_secs(5));
    }

    #[test]
    fn a_pinned_name_ends_the_search_when_its_id_answers() {
        let t = Instant::now();
        let own: Uuid = "0f000000-0000-4000-8000-000000000001".parse().unwrap();
        let laptop = record("3f2a9c1e-0000-4000-8000-0000000000ab", "laptop");
        let impostor = record("77aa0000-0000-4000-8000-0000000000cd", "laptop");
        let mut store = StoreData::default();
        pin(&mut store, &laptop, Some("10.79.0.2:47470"));
        let wanted = Wanted::new("laptop", store);
        let mut search = Search::new(&wanted, own, t, Duration::from_secs(5));
        // Another node of the name answers first: a match, which does not
        // settle while the pinned one has not answered...
        let ms = |n| t + Duration::from_millis(n);
        assert_eq!(search.answered(&peer(&impostor), true, ms(2)), Heard::Match);
        assert!(search.clock.wake() > t + SETTLE_MIN, "waits for the pin");
        // ... and the pinned id with its key ends the search as it answers,
        // with no settle window (2 ms in, not 250).
        assert_eq!(search.answered(&peer(&laptop), true, ms(3)), Heard::ThePin);
        // The same id with another key is not the pin (check_found refuses it).
        let mut search = Search::new(&wanted, own, t, Duration::from_secs(5));
        let forged = PeerRecord {
            fingerprint_prefix: [0; 8],
            ..laptop.clone()
        };
        assert_eq!(search.answered(&peer(&forged), true, ms(3)), Heard::Match);
        // Our own announcement is nobody.
        let me = PeerRecord {
            node_id: own,
            ..laptop.clone()
        };
        assert_eq!(search.answered(&peer(&me), true, ms(1)), Heard::Other);
    }

    #[test]
    fn a_first_contact_settles_for_duplicate_names() {
        let t = Instant::now();
        let own: Uuid = "0f000000-0000-4000-8000-000000000001".parse().unwrap();
        let laptop = record("3f2a9c1e-0000-4000-8000-0000000000ab", "laptop");
        let other = record("77aa0000-0000-4000-8000-0000000000cd", "laptop");
        let wanted = Wanted::new("laptop", StoreData::default());
        let mut search = Search::new(&wanted, own, t, Duration::from_secs(5));
        let ms = |n| t + Duration::from_millis(n);
        assert_eq!(search.answered(&peer(&laptop), true, ms(3)), Heard::Match);
        assert_eq!(
            search.clock.wake(),
            t + SETTLE_MIN,
            "a moment for a second 'laptop'"
        );
        assert_eq!(search.answered(&peer(&other), true, ms(40)), Heard::Match);
        // A match late in the search settles a moment after it.
        let mut search = Search::new(&wanted, own, t, Duration::from_secs(5));
        assert_eq!(search.answered(&peer(&laptop), true, ms(900)), Heard::Match);
        assert_eq!(search.clock.wake(), ms(900) + SETTLE_AFTER_MATCH);
        // A whole id typed: that node, at once.
        let wanted = Wanted::new("3f2a9c1e-0000-4000-8000-0000000000ab", StoreData::default());
        let mut search = Search::new(&wanted, own, t, Duration::from_secs(5));
        assert_eq!(search.answered(&peer(&other), true, ms(1)), Heard::Other);
        assert_eq!(search.answered(&peer(&laptop), true, ms(2)), Heard::WholeId);
    }

    #[test]
    fn close_names_are_suggested() {
        let names = ["h1", "h2", "studio", "Laptop"];
        assert_eq!(close_names("h4", &names), ["h1", "h2"]);
        assert_eq!(close_names("stduio", &names), ["studio"]);
        assert_eq!(close_names("lap", &names), ["Laptop"]);
        assert_eq!(close_names("LAPTOP", &names), Vec::<String>::new());
        assert!(close_names("nosuch", &names).is_empty());
        assert!(close_names("", &names).is_empty());
        assert_eq!(close_names("h", &["h1", "h1"]), ["h1"]);
    }
}
