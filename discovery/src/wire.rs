//! mDNS packets, as far as LocalStream reads and writes them: pure functions
//! over bytes, built on `simple-dns`.
//!
//! [`parse`] keeps only what the responder and the browser can use (questions,
//! and PTR/SRV/TXT/A/AAAA records), each name lowercased with its trailing
//! dot; [`response`] and [`query`] build packets from the same [`Record`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{A, AAAA, PTR, RData, SRV, TXT};
use simple_dns::{
    CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question as DnsQuestion, ResourceRecord, TYPE,
};

use crate::normalize_instance;

/// The mDNS port (RFC 6762 section 3).
pub(crate) const MDNS_PORT: u16 = 5353;
/// The IPv4 mDNS group.
pub(crate) const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// The IPv6 (link-local scope) mDNS group.
pub(crate) const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
/// Largest mDNS packet read or written (RFC 6762 section 17).
pub(crate) const MAX_PACKET: usize = 9000;
/// What one packet we build may hold: one Ethernet frame over IPv4 or IPv6.
pub(crate) const MTU_PAYLOAD: usize = 1440;

/// A TXT record's key/value strings, owned.
pub(crate) type TxtPairs = Vec<(String, Option<Vec<u8>>)>;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    /// PTR: the name pointed at.
    Ptr(String),
    /// SRV: where the instance is.
    Srv {
        /// Host name.
        target: String,
        /// TCP port.
        port: u16,
    },
    /// TXT strings.
    Txt(TxtPairs),
    /// A or AAAA.
    Addr(IpAddr),
}

/// One resource record: owner name (lowercase, trailing dot), TTL in seconds,
/// the cache-flush bit, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub name: String,
    pub ttl: u32,
    pub flush: bool,
    pub data: Data,
}

/// The record types a question can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    Ptr,
    Srv,
    Txt,
    A,
    Aaaa,
    Any,
}

impl Ask {
    fn of(q: QTYPE) -> Option<Ask> {
        Some(match q {
            QTYPE::TYPE(TYPE::PTR) => Ask::Ptr,
            QTYPE::TYPE(TYPE::SRV) => Ask::Srv,
            QTYPE::TYPE(TYPE::TXT) => Ask::Txt,
            QTYPE::TYPE(TYPE::A) => Ask::A,
            QTYPE::TYPE(TYPE::AAAA) => Ask::Aaaa,
            QTYPE::ANY => Ask::Any,
            _ => return None,
        })
    }

    fn qtype(self) -> QTYPE {
        match self {
            Ask::Ptr => QTYPE::TYPE(TYPE::PTR),
            Ask::Srv => QTYPE::TYPE(TYPE::SRV),
            Ask::Txt => QTYPE::TYPE(TYPE::TXT),
            Ask::A => QTYPE::TYPE(TYPE::A),
            Ask::Aaaa => QTYPE::TYPE(TYPE::AAAA),
            Ask::Any => QTYPE::ANY,
        }
    }

    /// Whether a record with `data` answers this question type.
    pub(crate) fn wants(self, data: &Data) -> bool {
        match (self, data) {
            (Ask::Any, _)
            | (Ask::Ptr, Data::Ptr(_))
            | (Ask::Srv, Data::Srv { .. })
            | (Ask::Txt, Data::Txt(_)) => true,
            (Ask::A, Data::Addr(ip)) => ip.is_ipv4(),
            (Ask::Aaaa, Data::Addr(ip)) => ip.is_ipv6(),
            _ => false,
        }
    }
}

/// A question: name (lowercase, trailing dot) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub name: String,
    pub ask: Ask,
}

/// A parsed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub id: u16,
    pub response: bool,
    pub questions: Vec<Question>,
    /// Answers, authorities and additional records, in order (in a query:
    /// the known answers).
    pub records: Vec<Record>,
}

/// Whether the record counts in a DNS header fit in the packet. simple-dns
/// reserves room for every record a header announces before reading any (144
/// bytes a record), so a 12-byte packet claiming 65 535 answers would cost
/// 9 MiB; with the records actually there, it reserves at most about 13 bytes
/// per packet byte.
pub(crate) fn counts_fit(data: &[u8]) -> bool {
    let count = |at: usize| {
        data.get(at..at + 2)
            .map_or(0, |c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    };
    // The smallest question is 5 bytes (root name, type, class), the smallest
    // record 11 (root name, type, class, TTL, data length).
    let least = 12 + 5 * count(4) + 11 * (count(6) + count(8) + count(10));
    least <= data.len()
}

/// A DNS name as a map key: lowercase, with the trailing dot.
fn key(n: &Name<'_>) -> String {
    normalize_instance(&n.to_string())
}

/// The packet's questions and usable records; `None` for anything that is
/// not a well-formed DNS message of sensible size.
pub(crate) fn parse(data: &[u8]) -> Option<Message> {
    if data.len() > MAX_PACKET || !counts_fit(data) {
        return None;
    }
    let packet = Packet::parse(data).ok()?;
    let questions = packet
        .questions
        .iter()
        .filter(|q| matches!(q.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY))
        .filter_map(|q| {
            Some(Question {
                ask: Ask::of(q.qtype)?,
                name: key(&q.qname),
            })
        })
        .collect();
    let records = packet
        .answers
        .iter()
        .chain(&packet.name_servers)
        .chain(&packet.additional_records)
        .filter(|rr| rr.class == CLASS::IN)
        .filter_map(record)
        .collect();
    Some(Message {
        id: packet.id(),
        response: packet.has_flags(PacketFlag::RESPONSE),
        questions,
        records,
    })
}

fn record(rr: &ResourceRecord<'_>) -> Option<Record> {
    let data = match &rr.rdata {
        RData::PTR(p) => Data::Ptr(key(&p.0)),
        RData::SRV(s) => Data::Srv {
            target: key(&s.target),
            port: s.port,
        },
        RData::TXT(t) => Data::Txt(
            t.iter_raw()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.map(<[u8]>::to_vec),
                    )
                })
                .collect(),
        ),
        RData::A(a) => Data::Addr(IpAddr::V4(Ipv4Addr::from(a.address))),
        RData::AAAA(a) => Data::Addr(IpAddr::V6(Ipv6Addr::from(a.address))),
        _ => return None,
    };
    Some(Record {
        name: key(&rr.name),
        ttl: rr.ttl,
        flush: rr.cache_flush,
        data,
    })
}

/// A name for simple-dns: without the trailing dot.
fn name(s: &str) -> Option<Name<'_>> {
    Name::new(s.trim_end_matches('.')).ok()
}

fn resource<'a>(r: &'a Record, legacy: bool) -> Option<ResourceRecord<'a>> {
    let data = match &r.data {
        Data::Ptr(p) => RData::PTR(PTR(name(p)?)),
        Data::Srv { target, port } => RData::SRV(SRV {
            priority: 0,
            weight: 0,
            port: *port,
            target: name(target)?,
        }),
        Data::Txt(pairs) => {
            let mut t = TXT::new();
            for (k, v) in pairs {
                t.add_attribute(k, v.as_deref()).ok()?;
            }
            RData::TXT(t)
        }
        Data::Addr(IpAddr::V4(a)) => RData::A(A {
            address: u32::from(*a),
        }),
        Data::Addr(IpAddr::V6(a)) => RData::AAAA(AAAA {
            address: u128::from(*a),
        }),
    };
    // A legacy (one-shot) answer carries no cache-flush bit and a short TTL
    // (RFC 6762 sections 6.7 and 10.2).
    let ttl = if legacy { r.ttl.min(10) } else { r.ttl };
    Some(
        ResourceRecord::new(name(&r.name)?, CLASS::IN, ttl, data)
            .with_cache_flush(r.flush && !legacy),
    )
}

/// A response packet: `answers`, then `additional`. For a legacy unicast
/// answer, `legacy` carries the query's id and questions (echoed back).
pub(crate) fn response(
    answers: &[Record],
    additional: &[Record],
    legacy: Option<(u16, &[Question])>,
) -> Option<Vec<u8>> {
    let mut p = Packet::new_reply(legacy.map_or(0, |(id, _)| id));
    p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if let Some((_, questions)) = legacy {
        for q in questions {
            p.questions.push(DnsQuestion::new(
                name(&q.name)?,
                q.ask.qtype(),
                QCLASS::CLASS(CLASS::IN),
                false,
            ));
        }
    }
    for r in answers {
        p.answers.push(resource(r, legacy.is_some())?);
    }
    for r in additional {
        p.additional_records.push(resource(r, legacy.is_some())?);
    }
    p.build_bytes_vec_compressed().ok()
}

/// A multicast query (id 0) for `questions`, listing `known` answers for
/// known-answer suppression (as many as fit in one frame).
pub(crate) fn query(questions: &[Question], known: &[Record]) -> Option<Vec<u8>> {
    let mut p = Packet::new_query(0);
    for q in questions {
        p.questions.push(DnsQuestion::new(
            name(&q.name)?,
            q.ask.qtype(),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
    }
    let mut bytes = p.build_bytes_vec_compressed().ok()?;
    for r in known {
        p.answers.push(resource(r, false)?);
        match p.build_bytes_vec_compressed() {
            Ok(b) if b.len() <= MTU_PAYLOAD => bytes = b,
            _ => break,
        }
    }
    Some(bytes)
}

/// A record for tests: `name`, `ttl`, no cache-flush bit.
#[cfg(test)]
pub(crate) fn rec(name: &str, ttl: u32, data: Data) -> Record {
    Record {
        name: name.into(),
        ttl,
        flush: false,
        data,
    }
}

/// Every truncation of `full`, and every single-bit flip of it (for tests
/// that feed spoiled packets to a decoder).
#[cfg(test)]
pub(crate) fn spoiled(full: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..full.len()).map(|cut| full[..cut].to_vec()).collect();
    for at in 0..full.len() {
        for bit in 0..8 {
            let mut p = full.to_vec();
            p[at] ^= 1 << bit;
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_round_trip() {
        let answers = [rec(
            "_localstream._tcp.local.",
            4500,
            Data::Ptr("ab._localstream._tcp.local.".into()),
        )];
        let mut srv = rec(
            "ab._localstream._tcp.local.",
            120,
            Data::Srv {
                target: "ls-ab.local.".into(),
                port: 47470,
            },
        );
        srv.flush = true;
        let additional = [
            srv,
            rec(
                "ab._localstream._tcp.local.",
                4500,
                Data::Txt(vec![
                    ("v".into(), Some(b"1".to_vec())),
                    ("flag".into(), None),
                ]),
            ),
            rec("ls-ab.local.", 120, Data::Addr("10.0.0.1".parse().unwrap())),
            rec("ls-ab.local.", 120, Data::Addr("fe80::1".parse().unwrap())),
        ];
        let bytes = response(&answers, &additional, None).unwrap();
        let m = parse(&bytes).unwrap();
        assert!(m.response);
        assert_eq!(m.id, 0);
        assert!(m.questions.is_empty());
        let mut want = answers.to_vec();
        want.extend(additional.iter().cloned());
        assert_eq!(m.records, want);

        // A legacy answer echoes id and questions, caps the TTL, drops the flush bit.
        let q = [Question {
            name: "_localstream._tcp.local.".into(),
            ask: Ask::Ptr,
        }];
        let bytes = response(&answers, &additional, Some((77, &q))).unwrap();
        let m = parse(&bytes).unwrap();
        assert_eq!((m.id, m.questions.as_slice()), (77, &q[..]));
        assert!(m.records.iter().all(|r| r.ttl == 10 && !r.flush));
    }

    #[test]
    fn queries_carry_known_answers_within_a_frame() {
        let q = [Question {
            name: "_localstream._tcp.local.".into(),
            ask: Ask::Ptr,
        }];
        let known: Vec<Record> = (0..200)
            .map(|i| {
                rec(
                    "_localstream._tcp.local.",
                    4500,
                    Data::Ptr(format!("{i:032x}._localstream._tcp.local.")),
                )
            })
            .collect();
        let bytes = query(&q, &known).unwrap();
        assert!(bytes.len() <= MTU_PAYLOAD, "{}", bytes.len());
        let m = parse(&bytes).unwrap();
        assert!(!m.response);
        assert_eq!(m.questions, q);
        assert!(!m.records.is_empty() && m.records.len() < 200);
        assert_eq!(m.records[0], known[0]);
    }

    #[test]
    fn junk_is_nothing() {
        assert_eq!(parse(&[]), None);
        assert_eq!(
            parse(b"\x00\x00\x84\x00\xff\xff\x00\x00\x00\x00\x00\x00"),
            None
        );
        assert_eq!(parse(&[0; MAX_PACKET + 1]), None);
        let empty = response(&[], &[], None).unwrap();
        assert!(parse(&empty).is_some());
    }

    /// Every truncation and bit flip of a real announcement: no panic, and
    /// the parse holds at most 16 times the packet's size (plus 64 KiB).
    #[test]
    fn spoiled_packets_never_panic_and_stay_in_budget() {
        let records = [
            rec(
                "_localstream._tcp.local.",
                4500,
                Data::Ptr("ab._localstream._tcp.local.".into()),
            ),
            rec(
                "ab._localstream._tcp.local.",
                120,
                Data::Srv {
                    target: "ls-ab.local.".into(),
                    port: 47470,
                },
            ),
            rec(
                "ab._localstream._tcp.local.",
                4500,
                Data::Txt(vec![("v".into(), Some(b"1".to_vec()))]),
            ),
            rec("ls-ab.local.", 120, Data::Addr("10.0.0.1".parse().unwrap())),
        ];
        let full = response(&records, &[], None).unwrap();
        for p in spoiled(&full) {
            let info = allocation_counter::measure(|| {
                let _ = parse(&p);
            });
            let budget = 64 * 1024 + 16 * p.len() as u64;
            assert!(info.bytes_max <= budget, "{info:?} for {p:02x?}");
        }
    }

    #[test]
    fn questions_match_types() {
        let addr = Data::Addr("10.0.0.1".parse().unwrap());
        assert!(Ask::A.wants(&addr) && Ask::Any.wants(&addr) && !Ask::Aaaa.wants(&addr));
        assert!(Ask::Ptr.wants(&Data::Ptr("x.".into())));
        assert!(!Ask::Srv.wants(&Data::Ptr("x.".into())));
    }
}
