//! What the browser has seen, one entry per node id.
//!
//! A node can be seen several times: on two interfaces, with IPv4 and IPv6
//! addresses, or (rarely) under two instance names. [`PeerTable`] folds every
//! sighting of a node id into one [`Peer`] and reports when a node appears,
//! changes or disappears. Pure: feed it [`Event`]s, read the changes.
//!
//! Bounded, since every sighting comes from the network: at most
//! [`MAX_PEERS`] nodes (a new one makes the table forget the node heard from
//! least recently, without a [`Change`]: it simply is no longer listed) and
//! at most [`MAX_INSTANCES_PER_PEER`] instance names a node (the oldest goes).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use uuid::Uuid;

use crate::txt::PeerRecord;
use crate::{Event, Sighting};

/// Most nodes a table holds.
pub const MAX_PEERS: usize = 512;
/// Most instance names one node is held under.
pub const MAX_INSTANCES_PER_PEER: usize = 8;

/// A node as discovery knows it: the latest record and every address it was
/// seen at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The most recent record.
    pub record: PeerRecord,
    /// Every address, best first (IPv4, then global IPv6, then link-local IPv6).
    pub addrs: Vec<SocketAddr>,
    /// Records under other instance names that claim the same node id with
    /// another key fingerprint prefix: a sign of a changed key or an impostor.
    pub conflicting: Vec<PeerRecord>,
}

impl Peer {
    /// The TCP port (of the best address).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addrs.first().map_or(0, SocketAddr::port)
    }
}

/// A change in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node id seen for the first time.
    Appeared(Peer),
    /// A known node's record or addresses changed.
    Updated(Peer),
    /// The last instance of a node went away.
    Disappeared(Peer),
}

/// Sightings folded by node id.
#[derive(Debug, Default, Clone)]
pub struct PeerTable {
    /// node id -> instance full name -> latest sighting (and its arrival order).
    nodes: BTreeMap<Uuid, BTreeMap<String, (u64, Sighting)>>,
    tick: u64,
}

impl PeerTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> PeerTable {
        PeerTable::default()
    }

    /// Applies one browser event; returns what changed, if anything.
    pub fn apply(&mut self, event: &Event) -> Option<Change> {
        match event {
            Event::Resolved(s) => {
                self.tick += 1;
                let id = s.record.node_id;
                let before = self.peer(&id);
                // The same instance name may have announced another id before.
                self.drop_instance(&s.instance, Some(id));
                if !self.nodes.contains_key(&id) && self.nodes.len() >= MAX_PEERS {
                    self.forget_oldest();
                }
                let sightings = self.nodes.entry(id).or_default();
                sightings.insert(s.instance.clone(), (self.tick, s.clone()));
                while sightings.len() > MAX_INSTANCES_PER_PEER {
                    let oldest = sightings
                        .iter()
                        .min_by_key(|(_, (tick, _))| *tick)
                        .map(|(name, _)| name.clone());
                    if let Some(name) = oldest {
                        sightings.remove(&name);
                    }
                }
                let after = self.peer(&id)?;
                match before {
                    None => Some(Change::Appeared(after)),
                    Some(b) if b != after => Some(Change::Updated(after)),
                    Some(_) => None,
                }
            }
            Event::Removed { instance } => {
                let id = self.id_of(instance)?;
                let before = self.peer(&id)?;
                self.drop_instance(instance, None);
                match self.peer(&id) {
                    None => Some(Change::Disappeared(before)),
                    Some(after) if after != before => Some(Change::Updated(after)),
                    Some(_) => None,
                }
            }
            Event::Rejected { .. } => None,
        }
    }

    /// Every node, ordered by display name, then id.
    #[must_use]
    pub fn peers(&self) -> Vec<Peer> {
        let mut all: Vec<Peer> = self.nodes.keys().filter_map(|id| self.peer(id)).collect();
        all.sort_by(|a, b| {
            (a.record.name.to_lowercase(), a.record.node_id)
                .cmp(&(b.record.name.to_lowercase(), b.record.node_id))
        });
        all
    }

    /// One node by id.
    #[must_use]
    pub fn peer(&self, id: &Uuid) -> Option<Peer> {
        let sightings = self.nodes.get(id)?;
        let (_, latest) = sightings.values().max_by_key(|(tick, _)| *tick)?;
        let mut addrs: Vec<SocketAddr> = sightings
            .values()
            .flat_map(|(_, s)| s.addrs.iter().copied())
            .collect();
        addrs.sort_by_key(|a| (address_rank(a), *a));
        addrs.dedup();
        let mut conflicting: Vec<PeerRecord> = sightings
            .values()
            .map(|(_, s)| &s.record)
            .filter(|r| r.fingerprint_prefix != latest.record.fingerprint_prefix)
            .cloned()
            .collect();
        conflicting.dedup();
        Some(Peer {
            record: latest.record.clone(),
            addrs,
            conflicting,
        })
    }

    /// Forgets the node heard from least recently.
    fn forget_oldest(&mut self) {
        let oldest = self
            .nodes
            .iter()
            .filter_map(|(id, m)| Some((m.values().map(|(tick, _)| *tick).max()?, *id)))
            .min()
            .map(|(_, id)| id);
        if let Some(id) = oldest {
            self.nodes.remove(&id);
        }
    }

    fn id_of(&self, instance: &str) -> Option<Uuid> {
        self.nodes
            .iter()
            .find(|(_, m)| m.contains_key(instance))
            .map(|(id, _)| *id)
    }

    /// Forgets `instance` under every id except `keep`.
    fn drop_instance(&mut self, instance: &str, keep: Option<Uuid>) {
        for (id, m) in &mut self.nodes {
            if Some(*id) != keep {
                m.remove(instance);
            }
        }
        self.nodes.retain(|_, m| !m.is_empty());
    }
}

/// Lower is tried first: IPv4, then routable IPv6, then link-local IPv6.
fn address_rank(a: &SocketAddr) -> u8 {
    match a {
        SocketAddr::V4(_) => 0,
        SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() => 2,
        SocketAddr::V6(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u128, name: &str, fp: u8) -> PeerRecord {
        PeerRecord {
            version: 1,
            node_id: Uuid::from_u128(id),
            fingerprint_prefix: [fp; 8],
            name: name.into(),
            mac: None,
        }
    }

    fn seen(instance: &str, r: PeerRecord, addrs: &[&str]) -> Event {
        Event::Resolved(Sighting {
            instance: instance.into(),
            record: r,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        })
    }

    fn gone(instance: &str) -> Event {
        Event::Removed {
            instance: instance.into(),
        }
    }

    #[test]
    fn appear_update_disappear() {
        let mut t = PeerTable::new();
        let a = record(1, "alpha", 1);
        let c = t.apply(&seen("i1", a.clone(), &["10.0.0.1:5"]));
        assert!(matches!(c, Some(Change::Appeared(p)) if p.addrs.len() == 1));
        // The same again changes nothing.
        assert_eq!(t.apply(&seen("i1", a.clone(), &["10.0.0.1:5"])), None);
        // A new address is an update, and addresses are ordered v4 first.
        let c = t.apply(&seen(
            "i1",
            a.clone(),
            &["[fe80::1%2]:5", "10.0.0.1:5", "[2001:db8::1]:5"],
        ));
        let Some(Change::Updated(p)) = c else {
            panic!("{c:?}")
        };
        let shown: Vec<String> = p.addrs.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.1:5", "[2001:db8::1]:5", "[fe80::1%2]:5"]);
        assert_eq!(p.port(), 5);
        assert!(matches!(t.apply(&gone("i1")), Some(Change::Disappeared(p)) if p.record == a));
        assert!(t.peers().is_empty());
        // Removing something unknown is nothing.
        assert_eq!(t.apply(&gone("i1")), None);
    }

    #[test]
    fn one_entry_per_node_id() {
        let mut t = PeerTable::new();
        let a = record(1, "alpha", 1);
        t.apply(&seen("i1", a.clone(), &["10.0.0.1:5"]));
        // The same node id under another instance name (e.g. a second interface).
        let c = t.apply(&seen("i2", a.clone(), &["192.168.0.1:5"]));
        assert!(
            matches!(&c, Some(Change::Updated(p)) if p.addrs.len() == 2),
            "{c:?}"
        );
        t.apply(&seen("i3", record(2, "Beta", 2), &["10.0.0.2:5"]));
        let peers = t.peers();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].record.name, "alpha");
        assert_eq!(peers[1].record.name, "Beta");
        // One of two instances leaves: still there, one address fewer.
        let c = t.apply(&gone("i1"));
        assert!(
            matches!(&c, Some(Change::Updated(p)) if p.addrs.len() == 1),
            "{c:?}"
        );
        assert!(matches!(t.apply(&gone("i2")), Some(Change::Disappeared(_))));
        assert_eq!(t.peers().len(), 1);
    }

    #[test]
    fn instance_changing_its_id_moves() {
        let mut t = PeerTable::new();
        t.apply(&seen("i1", record(1, "alpha", 1), &["10.0.0.1:5"]));
        let c = t.apply(&seen("i1", record(2, "alpha", 1), &["10.0.0.1:5"]));
        assert!(matches!(c, Some(Change::Appeared(p)) if p.record.node_id == Uuid::from_u128(2)));
        assert_eq!(t.peers().len(), 1);
        assert_eq!(t.peer(&Uuid::from_u128(1)), None);
    }

    #[test]
    fn conflicting_fingerprints_are_kept() {
        let mut t = PeerTable::new();
        t.apply(&seen("i1", record(1, "alpha", 1), &["10.0.0.1:5"]));
        t.apply(&seen("evil", record(1, "alpha", 9), &["10.0.0.66:5"]));
        let p = t.peer(&Uuid::from_u128(1)).unwrap();
        assert_eq!(p.record.fingerprint_prefix, [9; 8]);
        assert_eq!(p.conflicting.len(), 1);
        assert_eq!(p.conflicting[0].fingerprint_prefix, [1; 8]);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = PeerTable::new();
        t.apply(&seen("real", record(u128::MAX, "real", 1), &["10.0.0.1:5"]));
        for i in 0..(MAX_PEERS as u128 * 4) {
            let c = t.apply(&seen(
                &format!("f{i}"),
                record(i + 1, "fake", 2),
                &["10.0.0.3:9"],
            ));
            assert!(matches!(c, Some(Change::Appeared(_))), "{c:?}");
            assert!(t.peers().len() <= MAX_PEERS);
        }
        assert_eq!(t.peers().len(), MAX_PEERS);
        // The oldest went first: the real node, then the first fakes.
        assert_eq!(t.peer(&Uuid::from_u128(u128::MAX)), None);
        assert_eq!(t.peer(&Uuid::from_u128(1)), None);
        assert!(t.peer(&Uuid::from_u128(MAX_PEERS as u128 * 4)).is_some());
        // Heard again, it is back (and pushes out the oldest fake).
        let c = t.apply(&seen("real", record(u128::MAX, "real", 1), &["10.0.0.1:5"]));
        assert!(matches!(c, Some(Change::Appeared(_))), "{c:?}");
        assert_eq!(t.peers().len(), MAX_PEERS);

        // One node under ever new instance names keeps only the latest few.
        let a = record(7_000_000, "many", 1);
        for i in 0..100 {
            t.apply(&seen(
                &format!("m{i}"),
                a.clone(),
                &[&format!("10.0.1.{i}:5")],
            ));
        }
        let p = t.peer(&a.node_id).unwrap();
        assert_eq!(p.addrs.len(), MAX_INSTANCES_PER_PEER);
        assert!(p.addrs.contains(&"10.0.1.99:5".parse().unwrap()));
    }

    #[test]
    fn rejected_records_change_nothing() {
        let mut t = PeerTable::new();
        let e = Event::Rejected {
            instance: "junk".into(),
            reason: crate::txt::TxtError::Missing("id"),
        };
        assert_eq!(t.apply(&e), None);
        assert!(t.peers().is_empty());
    }
}
