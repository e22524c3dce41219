//! What the browser has heard about `_localstream._tcp.local.` instances, and
//! nothing else, within fixed bounds. Pure: feed it the records of a packet
//! and the time; it says which [`Event`]s follow.
//!
//! ```text
//!  records of one response ─► PTR/SRV/TXT of our type ─► Instance (admitted, quota'd)
//!                         └─► A/AAAA ─► only for the SRV target of a known instance
//!  every other record (any other name, type or service): dropped, never stored
//! ```
//!
//! The bounds, and what an attacker who floods the link gets:
//! - at most [`MAX_INSTANCES`] instances, at most [`PER_SOURCE`] from one
//!   source address (a newcomer evicts the least recently heard one of its
//!   own source first, so one flooding host pushes out only its own records);
//! - new instances are admitted at [`ADMIT_PER_SEC`] a second (after a burst
//!   of [`ADMIT_BURST`]), so a flood cannot turn into a flood of events;
//! - at most [`MAX_ADDRS`] addresses an instance, TXT data up to
//!   [`MAX_TXT_BYTES`], TTLs capped at [`MAX_TTL`] seconds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use crate::txt::PeerRecord;
use crate::wire::{Ask, Data, Question, Record, TxtPairs};
use crate::{Event, SERVICE_TYPE, Sighting, normalize_instance, own_instance};

/// Most instances held at once.
pub(crate) const MAX_INSTANCES: usize = 256;
/// Most instances held from one source address.
pub(crate) const PER_SOURCE: usize = 32;
/// New instances admitted in a burst ...
pub(crate) const ADMIT_BURST: f64 = 64.0;
/// ... and then per second.
pub(crate) const ADMIT_PER_SEC: f64 = 16.0;
/// Most addresses kept for one instance.
pub(crate) const MAX_ADDRS: usize = 16;
/// Largest TXT data kept (a LocalStream record is about 120 bytes).
pub(crate) const MAX_TXT_BYTES: usize = 1024;
/// Longest TTL honoured (75 minutes, the usual TTL of PTR records).
pub(crate) const MAX_TTL: u32 = 4500;
/// Most questions [`Cache::wanted`] returns at once.
const MAX_QUESTIONS: usize = 16;
/// A record is refreshed in the last fifth of its life (RFC 6762 section 5.2).
const REFRESH_AT: f64 = 0.8;

/// Where a packet came from: its source address, and the index of the
/// interface it arrived on (the scope of IPv6 link-local addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub ip: IpAddr,
    pub scope: u32,
}

#[derive(Debug, Clone)]
struct Timed<T> {
    value: T,
    since: Instant,
    until: Instant,
    ttl: u32,
}

impl<T> Timed<T> {
    fn new(value: T, ttl: u32, now: Instant) -> Timed<T> {
        let ttl = ttl.min(MAX_TTL);
        Timed {
            value,
            since: now,
            until: now + Duration::from_secs(u64::from(ttl)),
            ttl,
        }
    }

    /// Whether it is in the last fifth of its life.
    fn due(&self, now: Instant) -> bool {
        let life = self.until.saturating_duration_since(self.since);
        now >= self.since + life.mul_f64(REFRESH_AT)
    }
}

/// What the last event about an instance said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reported {
    Nothing,
    Resolved(Sighting),
    Rejected,
}

#[derive(Debug, Clone)]
struct Instance {
    source: IpAddr,
    ptr: Option<Timed<()>>,
    srv: Option<Timed<(String, u16)>>,
    txt: Option<Timed<TxtPairs>>,
    /// Address and its scope (interface index).
    addrs: Vec<Timed<(IpAddr, u32)>>,
    heard: Instant,
    asked: Option<Instant>,
    reported: Reported,
}

impl Instance {
    fn new(source: IpAddr, now: Instant) -> Instance {
        Instance {
            source,
            ptr: None,
            srv: None,
            txt: None,
            addrs: vec![],
            heard: now,
            asked: None,
            reported: Reported::Nothing,
        }
    }

    fn target(&self) -> Option<&str> {
        self.srv.as_ref().map(|s| s.value.0.as_str())
    }
}

/// The bounded cache; see the module docs.
#[derive(Debug)]
pub(crate) struct Cache {
    service: String,
    instances: HashMap<String, Instance>,
    /// Goodbyes of the last packet for instances not held here.
    strangers: Vec<String>,
    tokens: f64,
    refilled: Instant,
}

impl Cache {
    pub(crate) fn new(now: Instant) -> Cache {
        Cache {
            service: normalize_instance(SERVICE_TYPE),
            instances: HashMap::new(),
            strangers: vec![],
            tokens: ADMIT_BURST,
            refilled: now,
        }
    }

    /// How many instances it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether `name` is an instance of our service type.
    fn ours(&self, name: &str) -> bool {
        name.len() > self.service.len()
            && name.ends_with(&self.service)
            && name.as_bytes()[name.len() - self.service.len() - 1] == b'.'
    }

    /// Takes in the records of one response from `origin`.
    pub(crate) fn apply(&mut self, records: &[Record], origin: Origin, now: Instant) -> Vec<Event> {
        let mut events = vec![];
        let mut touched: Vec<String> = vec![];
        let mut gone: Vec<&str> = vec![];
        self.strangers.clear();
        for r in records {
            let instance = match &r.data {
                Data::Ptr(target) if r.name == self.service && self.ours(target) => target,
                Data::Srv { .. } | Data::Txt(_) if self.ours(&r.name) => &r.name,
                _ => continue,
            };
            if r.ttl == 0 && !matches!(r.data, Data::Txt(_)) {
                // A goodbye for the PTR or SRV: the instance is gone.
                match self.instances.remove(instance) {
                    Some(held) => {
                        events.extend(removed(instance, &held));
                        gone.push(instance);
                    }
                    None if !gone.contains(&instance.as_str())
                        && !self.strangers.contains(instance) =>
                    {
                        self.strangers.push(instance.clone());
                    }
                    None => {}
                }
                continue;
            }
            if !self.instances.contains_key(instance) {
                if r.ttl == 0 || !self.admit(origin.ip, now, &mut events) {
                    continue;
                }
                self.instances
                    .insert(instance.clone(), Instance::new(origin.ip, now));
            }
            let Some(inst) = self.instances.get_mut(instance) else {
                continue;
            };
            inst.source = origin.ip;
            inst.heard = now;
            match &r.data {
                Data::Ptr(_) => inst.ptr = Some(Timed::new((), r.ttl, now)),
                Data::Srv { target, port } => {
                    if inst.target() != Some(target) {
                        inst.addrs.clear();
                    }
                    inst.srv = Some(Timed::new((target.clone(), *port), r.ttl, now));
                }
                Data::Txt(_) if r.ttl == 0 => inst.txt = None,
                Data::Txt(pairs) => {
                    let size: usize = pairs
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 2)
                        .sum();
                    inst.txt =
                        (size <= MAX_TXT_BYTES).then(|| Timed::new(pairs.clone(), r.ttl, now));
                }
                Data::Addr(_) => {}
            }
            if !touched.contains(instance) {
                touched.push(instance.clone());
            }
        }
        self.apply_addrs(records, origin, now, &mut touched);
        for name in touched {
            events.extend(self.report(&name));
        }
        events
    }

    /// Goodbyes in the last packet [`Cache::apply`] took for instances it
    /// does not hold: a reader may have heard of them another way (the
    /// one-shot query), so they are worth passing on, when there is room.
    pub(crate) fn strangers(&self) -> &[String] {
        &self.strangers
    }

    /// A/AAAA records count only for the SRV target of a known instance.
    fn apply_addrs(
        &mut self,
        records: &[Record],
        origin: Origin,
        now: Instant,
        touched: &mut Vec<String>,
    ) {
        let mut by_host: HashMap<&str, Vec<&Record>> = HashMap::new();
        for r in records {
            if let Data::Addr(_) = r.data {
                by_host.entry(r.name.as_str()).or_default().push(r);
            }
        }
        if by_host.is_empty() {
            return;
        }
        for (name, inst) in &mut self.instances {
            let Some(found) = inst.target().and_then(|t| by_host.get(t)) else {
                continue;
            };
            for r in found {
                let Data::Addr(ip) = r.data else { continue };
                // Cache flush (RFC 6762 section 10.2): addresses of this host
                // heard more than a second ago are replaced by this answer's.
                if r.flush {
                    inst.addrs.retain(|a| {
                        now.saturating_duration_since(a.since) < Duration::from_secs(1)
                    });
                }
                inst.addrs.retain(|a| a.value.0 != ip);
                if r.ttl > 0 && inst.addrs.len() < MAX_ADDRS {
                    inst.addrs.push(Timed::new((ip, origin.scope), r.ttl, now));
                }
            }
            inst.heard = now;
            if !touched.contains(name) {
                touched.push(name.clone());
            }
        }
    }

    /// Room for one more instance from `source`: spends an admission token
    /// and evicts what the bounds require. `false` when no token is left.
    fn admit(&mut self, source: IpAddr, now: Instant, events: &mut Vec<Event>) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * ADMIT_PER_SEC).min(ADMIT_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        let own = self
            .instances
            .values()
            .filter(|i| i.source == source)
            .count();
        let victim = if own >= PER_SOURCE {
            self.oldest(|i| i.source == source)
        } else if self.instances.len() >= MAX_INSTANCES {
            self.oldest(|_| true)
        } else {
            None
        };
        if let Some(name) = victim
            && let Some(gone) = self.instances.remove(&name)
        {
            events.extend(removed(&name, &gone));
        }
        true
    }

    fn oldest(&self, pick: impl Fn(&Instance) -> bool) -> Option<String> {
        self.instances
            .iter()
            .filter(|(_, i)| pick(i))
            .min_by_key(|(_, i)| i.heard)
            .map(|(n, _)| n.clone())
    }

    /// The event that brings a reader up to date with instance `name`, if any.
    fn report(&mut self, name: &str) -> Option<Event> {
        let inst = self.instances.get_mut(name)?;
        let now = match resolve(name, inst) {
            Ok(Some(s)) => Reported::Resolved(s),
            Ok(None) => Reported::Nothing,
            Err(reason) => {
                let event = (inst.reported != Reported::Rejected).then(|| Event::Rejected {
                    instance: name.to_owned(),
                    reason,
                });
                let was = std::mem::replace(&mut inst.reported, Reported::Rejected);
                return match was {
                    Reported::Resolved(_) => Some(Event::Removed {
                        instance: name.to_owned(),
                    }),
                    _ => event,
                };
            }
        };
        if now == inst.reported {
            return None;
        }
        let was = std::mem::replace(&mut inst.reported, now.clone());
        match (now, was) {
            (Reported::Resolved(s), _) => Some(Event::Resolved(s)),
            (_, Reported::Resolved(_)) => Some(Event::Removed {
                instance: name.to_owned(),
            }),
            _ => None,
        }
    }

    /// Drops what expired by `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Event> {
        let mut events = vec![];
        let mut changed = vec![];
        self.instances.retain(|name, inst| {
            let gone = inst.ptr.as_ref().is_some_and(|p| p.until <= now)
                || inst.srv.as_ref().is_some_and(|s| s.until <= now)
                || (inst.ptr.is_none() && inst.srv.is_none() && inst.txt.is_none());
            if gone {
                events.extend(removed(name, inst));
                return false;
            }
            let before = (inst.txt.is_some(), inst.addrs.len());
            if inst.txt.as_ref().is_some_and(|t| t.until <= now) {
                inst.txt = None;
            }
            inst.addrs.retain(|a| a.until > now);
            if before != (inst.txt.is_some(), inst.addrs.len()) {
                changed.push(name.clone());
            }
            true
        });
        for name in changed {
            events.extend(self.report(&name));
        }
        events
    }

    /// When the next record expires.
    #[cfg(test)]
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.instances
            .values()
            .flat_map(|i| {
                i.ptr
                    .iter()
                    .map(|t| t.until)
                    .chain(i.srv.iter().map(|t| t.until))
                    .chain(i.txt.iter().map(|t| t.until))
                    .chain(i.addrs.iter().map(|t| t.until))
            })
            .min()
    }

    /// What a reader that missed events about `name` should be told now.
    pub(crate) fn current(&self, name: &str) -> Event {
        match self.instances.get(name).map(|i| &i.reported) {
            Some(Reported::Resolved(s)) => Event::Resolved(s.clone()),
            _ => Event::Removed {
                instance: name.to_owned(),
            },
        }
    }

    /// Every instance a reader has been told is there.
    pub(crate) fn resolved(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter(|(_, i)| matches!(i.reported, Reported::Resolved(_)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Questions worth asking now: the missing parts of instances, and the
    /// records in the last fifth of their life. Each instance is asked about
    /// at most once a second, and once every twentieth of its SRV TTL.
    pub(crate) fn wanted(&mut self, now: Instant) -> Vec<Question> {
        let mut out: Vec<Question> = vec![];
        for (name, inst) in &mut self.instances {
            if out.len() >= MAX_QUESTIONS {
                break;
            }
            // Missing parts once a second; a refresh at 80, 85, 90 and 95 %
            // of the TTL (RFC 6762 section 5.2).
            let gap = inst
                .srv
                .as_ref()
                .map_or(1, |s| u64::from(s.ttl / 20))
                .max(1);
            if inst
                .asked
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(gap))
            {
                continue;
            }
            let before = out.len();
            let ask = |out: &mut Vec<Question>, name: &str, ask: Ask| {
                out.push(Question {
                    name: name.to_owned(),
                    ask,
                });
            };
            if inst.srv.as_ref().is_none_or(|s| s.due(now)) {
                ask(&mut out, name, Ask::Srv);
            }
            if inst.txt.as_ref().is_none_or(|t| t.due(now)) {
                ask(&mut out, name, Ask::Txt);
            }
            if let Some(target) = inst.target()
                && (inst.addrs.is_empty() || inst.addrs.iter().any(|a| a.due(now)))
            {
                ask(&mut out, target, Ask::A);
                ask(&mut out, target, Ask::Aaaa);
            }
            if out.len() > before {
                inst.asked = Some(now);
            }
        }
        out
    }

    /// The PTR records a query can list as known answers (those with more
    /// than half their TTL left, RFC 6762 section 7.1).
    pub(crate) fn known(&self, now: Instant) -> Vec<Record> {
        self.instances
            .iter()
            .filter_map(|(name, i)| {
                let p = i.ptr.as_ref()?;
                let left = u32::try_from(p.until.saturating_duration_since(now).as_secs()).ok()?;
                (left > p.ttl / 2).then(|| Record {
                    name: self.service.clone(),
                    ttl: left,
                    flush: false,
                    data: Data::Ptr(name.clone()),
                })
            })
            .collect()
    }
}

fn removed(name: &str, inst: &Instance) -> Option<Event> {
    matches!(inst.reported, Reported::Resolved(_)).then(|| Event::Removed {
        instance: name.to_owned(),
    })
}

/// The sighting an instance amounts to: `Ok(None)` while parts are missing,
/// `Err` when its TXT record is not a valid LocalStream record.
fn resolve(name: &str, inst: &Instance) -> Result<Option<Sighting>, crate::TxtError> {
    let (Some(srv), Some(txt)) = (&inst.srv, &inst.txt) else {
        return Ok(None);
    };
    let pairs = txt.value.iter().map(|(k, v)| (k.as_str(), v.as_deref()));
    let record = PeerRecord::from_txt(pairs).and_then(|r| own_instance(name, r))?;
    let port = srv.value.1;
    let mut addrs: Vec<SocketAddr> = inst
        .addrs
        .iter()
        .filter_map(|a| socket_addr(a.value.0, a.value.1, port))
        .collect();
    addrs.sort();
    addrs.dedup();
    if port == 0 || addrs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Sighting {
        instance: name.to_owned(),
        record,
        addrs,
    }))
}

/// Where to connect for an announced address; `None` for addresses no peer
/// can be at (unspecified, multicast, broadcast). IPv6 link-local addresses
/// get the scope of the interface they were heard on.
pub(crate) fn socket_addr(ip: IpAddr, scope: u32, port: u16) -> Option<SocketAddr> {
    match ip {
        IpAddr::V4(a) => (!a.is_unspecified() && !a.is_multicast() && !a.is_broadcast())
            .then(|| SocketAddr::from((a, port))),
        IpAddr::V6(a) => {
            if a.is_unspecified() || a.is_multicast() {
                return None;
            }
            let scope = if a.is_unicast_link_local() { scope } else { 0 };
            Some(SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope)))
        }
    }
}

#[cfg(test)]
mod tests;
