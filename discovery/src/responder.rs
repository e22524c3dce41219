//! What this node says about itself: its records, and which of them answer a
//! query (RFC 6762 section 6, RFC 6763 sections 4, 9 and 12). Pure; the
//! engine decides when and where to send.
//!
//! ```text
//!  _localstream._tcp.local.  PTR  <id hex>._localstream._tcp.local.      4500 s (shared)
//!  <id hex>._localstream...  SRV  0 0 <port> ls-<id hex>.local.           120 s (unique)
//!  <id hex>._localstream...  TXT  v=1 id=... fp=... name=... [mac=...]   4500 s (unique)
//!  ls-<id hex>.local.        A / AAAA  <the interface's addresses>        120 s (unique)
//! ```

use std::net::IpAddr;

use crate::txt::PeerRecord;
use crate::wire::{Ask, Data, Message, Record, TxtPairs};
use crate::{SERVICE_TYPE, normalize_instance};

/// TTL of the records tied to a host (SRV, A, AAAA), as RFC 6762 section 10
/// recommends.
pub(crate) const TTL_HOST: u32 = 120;
/// TTL of the others (PTR, TXT).
pub(crate) const TTL_OTHER: u32 = 4500;
/// The DNS-SD meta-query name (RFC 6763 section 9).
const SERVICES: &str = "_services._dns-sd._udp.local.";

/// The service this node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Service {
    /// `<id hex>._localstream._tcp.local.`
    pub instance: String,
    /// `ls-<id hex>.local.`
    pub host: String,
    /// The TCP port.
    pub port: u16,
    txt: TxtPairs,
}

/// Records that answer a query, and whether a shared record (PTR) is among
/// them (then the answer waits 20-120 ms, RFC 6762 section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub answers: Vec<Record>,
    pub additional: Vec<Record>,
    pub shared: bool,
}

impl Service {
    /// The service announcing `record` on `port`. The instance and host names
    /// come from the node id, so they are unique on the link without probing
    /// and carry no user text.
    pub(crate) fn new(record: &PeerRecord, port: u16) -> Service {
        let id = record.node_id.simple().to_string();
        Service {
            instance: normalize_instance(&format!("{id}.{SERVICE_TYPE}")),
            host: format!("ls-{id}.local."),
            port,
            txt: record
                .to_txt()
                .into_iter()
                .map(|(k, v)| (k, Some(v.into_bytes())))
                .collect(),
        }
    }

    fn ptr(&self, ttl: u32) -> Record {
        record(SERVICE_TYPE, ttl, false, Data::Ptr(self.instance.clone()))
    }

    fn srv(&self, ttl: u32) -> Record {
        record(
            &self.instance,
            ttl,
            true,
            Data::Srv {
                target: self.host.clone(),
                port: self.port,
            },
        )
    }

    fn txt(&self, ttl: u32) -> Record {
        record(&self.instance, ttl, true, Data::Txt(self.txt.clone()))
    }

    fn addrs<'a>(&'a self, addrs: &'a [IpAddr], ttl: u32) -> impl Iterator<Item = Record> + 'a {
        addrs
            .iter()
            .map(move |ip| record(&self.host, ttl, true, Data::Addr(*ip)))
    }

    /// Every record, as an unsolicited announcement (or, with `goodbye`, the
    /// same with TTL 0: RFC 6762 section 10.1).
    pub(crate) fn announcement(&self, addrs: &[IpAddr], goodbye: bool) -> Vec<Record> {
        let ttl = |t: u32| if goodbye { 0 } else { t };
        let mut all = vec![
            self.ptr(ttl(TTL_OTHER)),
            self.srv(ttl(TTL_HOST)),
            self.txt(ttl(TTL_OTHER)),
        ];
        all.extend(self.addrs(addrs, ttl(TTL_HOST)));
        all
    }

    /// What answers `query` (received on an interface with `addrs`), less the
    /// answers the querier listed as known with at least half their TTL left
    /// (RFC 6762 section 7.1); `None` when nothing does.
    pub(crate) fn answer(&self, query: &Message, addrs: &[IpAddr]) -> Option<Reply> {
        let service = normalize_instance(SERVICE_TYPE);
        let mut answers: Vec<Record> = vec![];
        let mut additional: Vec<Record> = vec![];
        let mut shared = false;
        for q in &query.questions {
            if q.name == SERVICES && matches!(q.ask, Ask::Ptr | Ask::Any) {
                answers.push(record(
                    SERVICES,
                    TTL_OTHER,
                    false,
                    Data::Ptr(service.clone()),
                ));
                shared = true;
            } else if q.name == service && matches!(q.ask, Ask::Ptr | Ask::Any) {
                answers.push(self.ptr(TTL_OTHER));
                additional.push(self.srv(TTL_HOST));
                additional.push(self.txt(TTL_OTHER));
                additional.extend(self.addrs(addrs, TTL_HOST));
                shared = true;
            } else if q.name == self.instance {
                if matches!(q.ask, Ask::Srv | Ask::Any) {
                    answers.push(self.srv(TTL_HOST));
                    additional.extend(self.addrs(addrs, TTL_HOST));
                }
                if matches!(q.ask, Ask::Txt | Ask::Any) {
                    answers.push(self.txt(TTL_OTHER));
                }
            } else if q.name == self.host {
                answers.extend(self.addrs(addrs, TTL_HOST).filter(|r| q.ask.wants(&r.data)));
            }
        }
        answers.retain(|a| {
            !query
                .records
                .iter()
                .any(|k| k.name == a.name && k.data == a.data && k.ttl >= a.ttl / 2)
        });
        if answers.is_empty() {
            return None;
        }
        dedup(&mut answers);
        additional.retain(|r| !answers.contains(r));
        dedup(&mut additional);
        Some(Reply {
            answers,
            additional,
            shared,
        })
    }
}

fn record(name: &str, ttl: u32, flush: bool, data: Data) -> Record {
    Record {
        name: normalize_instance(name),
        ttl,
        flush,
        data,
    }
}

fn dedup(v: &mut Vec<Record>) {
    let mut seen: Vec<Record> = Vec::with_capacity(v.len());
    v.retain(|r| {
        if seen.contains(r) {
            false
        } else {
            seen.push(r.clone());
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Question;

    fn service() -> Service {
        let record = PeerRecord {
            version: 1,
            node_id: "3f2a9c1e-0000-4000-8000-0000000000ab".parse().unwrap(),
            fingerprint_prefix: [0xab; 8],
            name: "Box".into(),
            mac: None,
        };
        Service::new(&record, 47470)
    }

    fn query(questions: &[(&str, Ask)], known: Vec<Record>) -> Message {
        Message {
            id: 0,
            response: false,
            questions: questions
                .iter()
                .map(|(n, a)| Question {
                    name: (*n).into(),
                    ask: *a,
                })
                .collect(),
            records: known,
        }
    }

    fn addrs() -> Vec<IpAddr> {
        vec!["10.0.0.1".parse().unwrap(), "fe80::1".parse().unwrap()]
    }

    #[test]
    fn names_come_from_the_node_id() {
        let s = service();
        assert_eq!(
            s.instance,
            "3f2a9c1e0000400080000000000000ab._localstream._tcp.local."
        );
        assert_eq!(s.host, "ls-3f2a9c1e0000400080000000000000ab.local.");
        let all = s.announcement(&addrs(), false);
        assert_eq!(all.len(), 5);
        assert!(s.announcement(&addrs(), true).iter().all(|r| r.ttl == 0));
    }

    #[test]
    fn a_browse_gets_the_whole_instance() {
        let s = service();
        let r = s
            .answer(
                &query(&[("_localstream._tcp.local.", Ask::Ptr)], vec![]),
                &addrs(),
            )
            .unwrap();
        assert!(r.shared);
        assert_eq!(r.answers, [s.ptr(TTL_OTHER)]);
        assert_eq!(r.additional.len(), 4, "{r:?}");
        // Known with enough TTL left: suppressed.
        let known = vec![s.ptr(TTL_OTHER / 2)];
        assert_eq!(
            s.answer(
                &query(&[("_localstream._tcp.local.", Ask::Ptr)], known),
                &addrs()
            ),
            None
        );
        // Known but nearly expired: answered again.
        let stale = vec![s.ptr(TTL_OTHER / 2 - 1)];
        assert!(
            s.answer(
                &query(&[("_localstream._tcp.local.", Ask::Ptr)], stale),
                &addrs()
            )
            .is_some()
        );
    }

    #[test]
    fn direct_questions_and_foreign_names() {
        let s = service();
        let host = s.host.clone();
        let r = s
            .answer(&query(&[(&host, Ask::A)], vec![]), &addrs())
            .unwrap();
        assert!(!r.shared);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, Data::Addr("10.0.0.1".parse().unwrap()));
        let inst = s.instance.clone();
        let r = s
            .answer(&query(&[(&inst, Ask::Any)], vec![]), &addrs())
            .unwrap();
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.additional.len(), 2);
        let r = s
            .answer(&query(&[(SERVICES, Ask::Ptr)], vec![]), &addrs())
            .unwrap();
        assert_eq!(
            r.answers[0].data,
            Data::Ptr("_localstream._tcp.local.".into())
        );
        assert_eq!(
            s.answer(
                &query(&[("_other._tcp.local.", Ask::Ptr)], vec![]),
                &addrs()
            ),
            None
        );
        assert_eq!(s.answer(&query(&[], vec![]), &addrs()), None);
    }
}
