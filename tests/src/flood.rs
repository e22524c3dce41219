//! Forged mDNS responses for the flood scenario (`mdns-fake flood`): every
//! record name is new, so a cache that keeps whatever arrives grows with each
//! packet.
//!
//! Packets alternate between two kinds:
//!
//! ```text
//!  even n:  A  a<tag>-<n>-<j>.local. -> src                        (PER_PACKET records)
//!  odd n:   PTR _localstream._tcp.local. -> <hex id>._localstream._tcp.local.
//!           SRV <hex id>._localstream._tcp.local. -> f<hex id>.local.:9
//!           TXT v=1 id=<id> fp=0123456789abcdef name=flood-<k>     (a valid record)
//!           A   f<hex id>.local. -> src                            (PER_PACKET / 4 instances)
//! ```
//!
//! Pure: [`packet`] builds bytes; the binary sends them (and only inside a
//! test namespace).

use std::net::Ipv4Addr;

use simple_dns::rdata::{A, PTR, RData, SRV, TXT};
use simple_dns::{CLASS, Name, Packet, PacketFlag, ResourceRecord};

/// Records per packet unless told otherwise.
pub const DEFAULT_PER_PACKET: usize = 8;
/// The TTL of every forged record (the usual 75 minutes of PTR records): they
/// do not expire while a test runs.
const TTL: u32 = 4500;

/// The node id (hyphenated UUID) of forged instance `k` of flood `tag`.
#[must_use]
pub fn instance_id(tag: u32, k: u64) -> String {
    format!("{tag:08x}-0000-4000-8000-{:012x}", k & 0xffff_ffff_ffff)
}

/// Packet `n` of flood `tag`: its bytes and how many records it holds.
#[must_use]
pub fn packet(tag: u32, n: u64, per_packet: usize, src: Ipv4Addr) -> (Vec<u8>, usize) {
    let per = per_packet.max(1);
    let addr = RData::A(A {
        address: u32::from(src),
    });
    let mut p = Packet::new_reply(0);
    p.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if n.is_multiple_of(2) {
        let names: Vec<String> = (0..per)
            .map(|j| format!("a{tag:08x}-{n}-{j}.local"))
            .collect();
        for name in &names {
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked(name),
                CLASS::IN,
                TTL,
                addr.clone(),
            ));
        }
        return (bytes(&p), per);
    }
    let instances = (per / 4).max(1);
    let ids: Vec<(String, String, String, String)> = (0..instances)
        .map(|i| {
            let k = (n / 2) * instances as u64 + i as u64;
            let id = instance_id(tag, k);
            let hex = id.replace('-', "");
            let full = format!("{hex}._localstream._tcp.local");
            let host = format!("f{hex}.local");
            (id, full, host, format!("flood-{k}"))
        })
        .collect();
    let service = Name::new_unchecked("_localstream._tcp.local");
    for (id, full, host, name) in &ids {
        let instance = Name::new_unchecked(full);
        let target = Name::new_unchecked(host);
        let mut txt = TXT::new();
        for (k, v) in [
            ("v", "1"),
            ("id", id.as_str()),
            ("fp", "0123456789abcdef"),
            ("name", name.as_str()),
        ] {
            // Short ASCII: always fits.
            let _ = txt.add_attribute(k, Some(v.as_bytes()));
        }
        p.answers.push(ResourceRecord::new(
            service.clone(),
            CLASS::IN,
            TTL,
            RData::PTR(PTR(instance.clone())),
        ));
        p.answers.push(ResourceRecord::new(
            instance.clone(),
            CLASS::IN,
            TTL,
            RData::SRV(SRV {
                priority: 0,
                weight: 0,
                port: 9,
                target: target.clone(),
            }),
        ));
        p.answers.push(ResourceRecord::new(
            instance,
            CLASS::IN,
            TTL,
            RData::TXT(txt),
        ));
        p.answers
            .push(ResourceRecord::new(target, CLASS::IN, TTL, addr.clone()));
    }
    (bytes(&p), instances * 4)
}

fn bytes(p: &Packet<'_>) -> Vec<u8> {
    // Names and TXT strings built above are short and valid.
    p.build_bytes_vec_compressed().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_alternate_and_names_are_unique() {
        let src = Ipv4Addr::new(10, 78, 0, 3);
        let (a, n) = packet(7, 0, 8, src);
        assert_eq!(n, 8);
        let pa = Packet::parse(&a).unwrap();
        assert!(pa.has_flags(PacketFlag::RESPONSE));
        assert_eq!(pa.answers.len(), 8);
        assert!(
            pa.answers
                .iter()
                .all(|r| matches!(r.rdata, RData::A(_)) && r.ttl == TTL)
        );
        let (s, n) = packet(7, 3, 8, src);
        assert_eq!(n, 8);
        let ps = Packet::parse(&s).unwrap();
        assert_eq!(ps.answers.len(), 8);
        let ptrs: Vec<String> = ps
            .answers
            .iter()
            .filter_map(|r| match &r.rdata {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect();
        // Packet 3 is the second service packet: instances 2 and 3.
        let want: Vec<String> = [2, 3]
            .iter()
            .map(|k| {
                format!(
                    "{}._localstream._tcp.local",
                    instance_id(7, *k).replace('-', "")
                )
            })
            .collect();
        assert_eq!(ptrs, want);
        let txt = ps
            .answers
            .iter()
            .find_map(|r| match &r.rdata {
                RData::TXT(t) => Some(t.attributes()),
                _ => None,
            })
            .unwrap();
        assert_eq!(txt["id"].as_deref(), Some(instance_id(7, 2).as_str()));
        assert_eq!(txt["name"].as_deref(), Some("flood-2"));
        // Fewer than four records a packet still carries one whole instance.
        assert_eq!(packet(7, 1, 1, src).1, 4);
        assert_ne!(packet(7, 0, 8, src).0, packet(7, 2, 8, src).0);
    }
}
