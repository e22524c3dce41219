//! One-shot mDNS queries (RFC 6762 sections 5.1 and 6.7), answered at once.
//!
//! An mDNS responder may multicast a record at most once per second per
//! interface (RFC 6762 section 6). A querier that starts right after another
//! one (two `peers` in a row, `send` after `peers`) would get its first
//! answer only on its retransmission a second later. A query sent from an
//! ordinary port instead of 5353 is a "legacy" one-shot query: responders
//! answer it by unicast, straight to that port, without the rate limit. So
//! browsing sends one of those alongside mdns-sd's multicast browse, and both
//! feed the same event stream.
//!
//! ```text
//!  UDP 0.0.0.0:<ephemeral> ── PTR? _localstream._tcp.local ──► 224.0.0.251:5353 (per interface)
//!        ◄── unicast answer: PTR + SRV + TXT + A (from port 5353, on-link only) ──
//! ```
//!
//! [`parse_response`] is pure; [`spawn`] owns the socket on its own thread.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{CLASS, Name, Packet, PacketFlag, QCLASS, QTYPE, Question, TYPE};
use tracing::debug;

use crate::txt::PeerRecord;
use crate::wire::counts_fit;
use crate::{Event, SERVICE_TYPE, Sighting, normalize_instance, own_instance};

const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_PORT: u16 = 5353;
/// When to (re)send the query, from the start: answers may be lost.
const SEND_AT: [Duration; 2] = [Duration::ZERO, Duration::from_millis(300)];
/// How long to read answers.
const LISTEN_FOR: Duration = Duration::from_secs(3);
/// Largest mDNS packet we read (RFC 6762 section 17: up to 9000 bytes).
const MAX_PACKET: usize = 9000;

/// An IPv4 network of one chosen interface: where queries go out and where
/// answers may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    /// The interface's address.
    pub addr: Ipv4Addr,
    /// Its netmask.
    pub mask: Ipv4Addr,
}

impl Link {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(self.addr) & m == u32::from(ip) & m
    }
}

/// A TXT record's key/value strings, owned.
type TxtPairs = Vec<(String, Option<Vec<u8>>)>;

/// The query: one PTR question for our service type.
fn query_packet(id: u16) -> Option<Vec<u8>> {
    let mut packet = Packet::new_query(id);
    let ty = SERVICE_TYPE.trim_end_matches('.');
    packet.questions.push(Question::new(
        Name::new(ty).ok()?,
        QTYPE::TYPE(TYPE::PTR),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().ok()
}

/// A DNS name as a map key: lowercase, with the trailing dot.
fn name_key(n: &Name<'_>) -> String {
    normalize_instance(&n.to_string())
}

/// The LocalStream instances an answer describes. Answers that are not for
/// our query (wrong id, not a response) give nothing; instances with a bad TXT
/// record give [`Event::Rejected`]. Addresses come from the A/AAAA records of
/// the SRV target, else from the answer's source.
pub(crate) fn parse_response(data: &[u8], id: u16, from: SocketAddr, links: &[Link]) -> Vec<Event> {
    if !counts_fit(data) {
        return vec![];
    }
    let Ok(packet) = Packet::parse(data) else {
        return vec![];
    };
    if packet.id() != id || !packet.has_flags(PacketFlag::RESPONSE) {
        return vec![];
    }
    let service = normalize_instance(SERVICE_TYPE);
    let mut instances: Vec<String> = vec![];
    let mut srv: HashMap<String, (String, u16)> = HashMap::new();
    let mut txt: HashMap<String, TxtPairs> = HashMap::new();
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for rr in packet.answers.iter().chain(&packet.additional_records) {
        let owner = name_key(&rr.name);
        match &rr.rdata {
            RData::PTR(p) if owner == service => {
                let instance = name_key(&p.0);
                if !instances.contains(&instance) {
                    instances.push(instance);
                }
            }
            RData::SRV(s) => {
                srv.entry(owner).or_insert((name_key(&s.target), s.port));
            }
            RData::TXT(t) => {
                txt.entry(owner).or_insert_with(|| {
                    t.iter_raw()
                        .map(|(k, v)| {
                            (
                                String::from_utf8_lossy(k).into_owned(),
                                v.map(<[u8]>::to_vec),
                            )
                        })
                        .collect()
                });
            }
            RData::A(a) => hosts
                .entry(owner)
                .or_default()
                .push(IpAddr::V4(Ipv4Addr::from(a.address))),
            RData::AAAA(a) => hosts
                .entry(owner)
                .or_default()
                .push(IpAddr::V6(Ipv6Addr::from(a.address))),
            _ => {}
        }
    }
    let mut events = vec![];
    for instance in instances {
        let (Some((target, port)), Some(pairs)) = (srv.get(&instance), txt.get(&instance)) else {
            continue;
        };
        let record = PeerRecord::from_txt(pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())))
            .and_then(|r| own_instance(&instance, r));
        let record = match record {
            Ok(r) => r,
            Err(reason) => {
                events.push(Event::Rejected { instance, reason });
                continue;
            }
        };
        // Only IPv4 addresses on one of our links: an answer must not send us
        // off the LAN, and IPv6 link-local addresses need a scope this answer
        // does not give (the multicast browse reports IPv6 with its scope).
        let mut addrs: Vec<SocketAddr> = hosts
            .get(target)
            .into_iter()
            .flatten()
            .filter(|ip| on_link(ip, links))
            .map(|ip| SocketAddr::new(*ip, *port))
            .collect();
        if addrs.is_empty() {
            addrs.push(SocketAddr::new(from.ip(), *port));
        }
        if *port == 0 {
            continue;
        }
        addrs.sort();
        addrs.dedup();
        events.push(Event::Resolved(Sighting {
            instance,
            record,
            addrs,
        }));
    }
    events
}

fn on_link(ip: &IpAddr, links: &[Link]) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !a.is_unspecified()
                && !a.is_multicast()
                && !a.is_broadcast()
                && links.iter().any(|l| l.contains(*a))
        }
        IpAddr::V6(_) => false,
    }
}

/// Sends the one-shot query on every link and reports answers to `tx` for a
/// few seconds, on a thread of its own. Stops early once `tx` is closed.
///
/// # Errors
/// When the socket cannot be set up (the multicast browse still runs).
pub(crate) fn spawn(links: Vec<Link>, tx: flume::Sender<Event>) -> std::io::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    // RFC 6762 section 11: mDNS packets go out with TTL 255.
    socket.set_multicast_ttl_v4(255)?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let id = fastrand_id();
    let Some(query) = query_packet(id) else {
        return Ok(());
    };
    let run = move || {
        let started = Instant::now();
        let mut sends = SEND_AT.iter().peekable();
        let mut buf = vec![0u8; MAX_PACKET];
        while started.elapsed() < LISTEN_FOR && !tx.is_disconnected() {
            while sends.next_if(|at| started.elapsed() >= **at).is_some() {
                for link in &links {
                    let sent = socket2::SockRef::from(&socket)
                        .set_multicast_if_v4(&link.addr)
                        .and_then(|()| socket.send_to(&query, (MDNS_GROUP, MDNS_PORT)));
                    if let Err(e) = sent {
                        debug!(addr = %link.addr, error = %e, "one-shot mDNS query not sent");
                    }
                }
            }
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "one-shot mDNS socket failed");
                    return;
                }
            };
            // Only answers from a responder port on one of our links count.
            let on_link = match from {
                SocketAddr::V4(v4) => links.iter().any(|l| l.contains(*v4.ip())),
                SocketAddr::V6(_) => false,
            };
            if from.port() != MDNS_PORT || !on_link {
                continue;
            }
            for event in parse_response(&buf[..n], id, from, &links) {
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    };
    std::thread::Builder::new()
        .name("mdns-oneshot".into())
        .spawn(run)
        .map(|_| ())
}

/// A query id that differs between runs (not a secret: answers are hints).
fn fastrand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::ResourceRecord;
    use simple_dns::rdata::{A, PTR, SRV, TXT};

    const GOOD_TXT: [(&str, &str); 4] = [
        ("v", "1"),
        ("id", "3f2a9c1e-0000-4000-8000-0000000000ab"),
        ("fp", "abcdef0123456789"),
        ("name", "box"),
    ];

    fn answer(id: u16, txt: &[(&str, &str)], with_a: bool) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        let ty = Name::new_unchecked("_localstream._tcp.local");
        let inst = Name::new_unchecked("3f2a9c1e0000400080000000000000ab._localstream._tcp.local");
        let host = Name::new_unchecked("ls-3f2a.local");
        p.answers.push(ResourceRecord::new(
            ty,
            CLASS::IN,
            120,
            RData::PTR(PTR(inst.clone())),
        ));
        p.additional_records.push(ResourceRecord::new(
            inst.clone(),
            CLASS::IN,
            120,
            RData::SRV(SRV {
                priority: 0,
                weight: 0,
                port: 47470,
                target: host.clone(),
            }),
        ));
        let mut t = TXT::new();
        for (k, v) in txt {
            t.add_attribute(k, Some(v.as_bytes())).unwrap();
        }
        p.additional_records
            .push(ResourceRecord::new(inst, CLASS::IN, 120, RData::TXT(t)));
        if with_a {
            p.additional_records.push(ResourceRecord::new(
                host,
                CLASS::IN,
                120,
                RData::A(A {
                    address: u32::from(Ipv4Addr::new(10, 77, 0, 1)),
                }),
            ));
        }
        p.build_bytes_vec_compressed().unwrap()
    }

    const LINKS: &[Link] = &[Link {
        addr: Ipv4Addr::new(10, 77, 0, 2),
        mask: Ipv4Addr::new(255, 255, 255, 0),
    }];

    fn from() -> SocketAddr {
        "10.77.0.9:5353".parse().unwrap()
    }

    #[test]
    fn query_asks_for_our_service() {
        let q = query_packet(7).unwrap();
        let p = Packet::parse(&q).unwrap();
        assert_eq!(p.id(), 7);
        assert!(!p.has_flags(PacketFlag::RESPONSE));
        assert_eq!(p.questions.len(), 1);
        assert_eq!(p.questions[0].qname.to_string(), "_localstream._tcp.local");
        assert_eq!(p.questions[0].qtype, QTYPE::TYPE(TYPE::PTR));
        assert!(!p.questions[0].unicast_response);
    }

    #[test]
    fn answer_with_addresses() {
        let ev = parse_response(&answer(7, &GOOD_TXT, true), 7, from(), LINKS);
        let [Event::Resolved(s)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(s.record.name, "box");
        assert_eq!(s.addrs, ["10.77.0.1:47470".parse::<SocketAddr>().unwrap()]);
        assert_eq!(
            s.instance,
            "3f2a9c1e0000400080000000000000ab._localstream._tcp.local."
        );
    }

    #[test]
    fn answer_without_addresses_uses_the_source() {
        let ev = parse_response(&answer(7, &GOOD_TXT, false), 7, from(), LINKS);
        let [Event::Resolved(s)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(s.addrs, ["10.77.0.9:47470".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn bad_txt_is_rejected_and_foreign_answers_ignored() {
        let mut bad = GOOD_TXT;
        bad[1] = ("id", "not-a-uuid");
        let ev = parse_response(&answer(7, &bad, true), 7, from(), LINKS);
        assert!(matches!(ev.as_slice(), [Event::Rejected { .. }]), "{ev:?}");
        // Another query's id, a query, or junk: nothing.
        assert!(parse_response(&answer(8, &GOOD_TXT, true), 7, from(), LINKS).is_empty());
        assert!(parse_response(&query_packet(7).unwrap(), 7, from(), LINKS).is_empty());
        assert!(parse_response(b"\x00\x07\x84\x00junk", 7, from(), LINKS).is_empty());
        assert!(parse_response(&[], 7, from(), LINKS).is_empty());
    }

    #[test]
    fn off_link_addresses_and_foreign_instances_are_refused() {
        // The A record points off the LAN: dropped, the answer's source is used.
        let ev = parse_response(&answer(7, &GOOD_TXT, true), 7, from(), &[]);
        let [Event::Resolved(s)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(s.addrs, ["10.77.0.9:47470".parse::<SocketAddr>().unwrap()]);
        // A record whose id is not its instance's: rejected.
        let mut other = GOOD_TXT;
        other[1] = ("id", "77aa0000-0000-4000-8000-0000000000cd");
        let ev = parse_response(&answer(7, &other, true), 7, from(), LINKS);
        assert!(
            matches!(ev.as_slice(), [Event::Rejected { reason, .. }] if reason.to_string().contains("instance")),
            "{ev:?}"
        );
    }

    #[test]
    fn truncated_answers_never_panic() {
        let full = answer(7, &GOOD_TXT, true);
        for cut in 0..full.len() {
            let _ = parse_response(&full[..cut], 7, from(), LINKS);
        }
        let mut flipped = full.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x5a;
            let _ = parse_response(&flipped, 7, from(), LINKS);
            flipped[i] ^= 0x5a;
        }
    }

    #[test]
    fn header_counts_reserve_no_memory() {
        let full = answer(7, &GOOD_TXT, true);
        assert!(counts_fit(&full));
        // A response header alone, claiming 65 535 answers: simple-dns would
        // reserve 65 535 records (9 MiB) before finding none.
        let mut header = full[..12].to_vec();
        header[6..8].copy_from_slice(&[0xff, 0xff]);
        assert!(!counts_fit(&header));
        let info = allocation_counter::measure(|| {
            assert!(parse_response(&header, 7, from(), LINKS).is_empty());
        });
        assert!(info.bytes_max < 1024, "{info:?}");
        // More additional records than the answer's bytes could hold.
        let mut more = full.clone();
        let too_many = u16::try_from(full.len() / 11).unwrap();
        more[10..12].copy_from_slice(&too_many.to_be_bytes());
        assert!(!counts_fit(&more));
        assert!(!counts_fit(&[]));
    }

    /// Every truncation, bit flip and 16-bit field overwritten with a large
    /// value of a real answer: no panic, and the parse holds at most 16 times
    /// the packet's size (plus 64 KiB) at any moment.
    #[test]
    fn spoiled_answers_stay_in_budget() {
        let full = answer(7, &GOOD_TXT, true);
        let mut spoiled = crate::wire::spoiled(&full);
        for at in 0..full.len() {
            for value in [0xffffu16, 0x8000, 0x0100, 0x00ff] {
                let mut p = full.clone();
                let end = (at + 2).min(p.len());
                p[at..end].copy_from_slice(&value.to_be_bytes()[..end - at]);
                spoiled.push(p);
            }
        }
        for p in spoiled {
            let info = allocation_counter::measure(|| {
                let _ = parse_response(&p, 7, from(), LINKS);
            });
            let budget = 64 * 1024 + 16 * p.len() as u64;
            assert!(info.bytes_max <= budget, "{info:?} for {p:02x?}");
        }
    }

    #[test]
    fn links() {
        let l = Link {
            addr: Ipv4Addr::new(192, 168, 1, 20),
            mask: Ipv4Addr::new(255, 255, 255, 0),
        };
        assert!(l.contains(Ipv4Addr::new(192, 168, 1, 1)));
        assert!(!l.contains(Ipv4Addr::new(192, 168, 2, 1)));
    }
}
