use std::net::Ipv4Addr;

use super::*;

const ID: &str = "3f2a9c1e-0000-4000-8000-0000000000ab";

fn instance(id: &str) -> String {
    format!("{}._localstream._tcp.local.", id.replace('-', ""))
}

use crate::wire::rec;

fn txt(id: &str, name: &str) -> Data {
    Data::Txt(
        [
            ("v", "1"),
            ("id", id),
            ("fp", "abcdef0123456789"),
            ("name", name),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some(v.as_bytes().to_vec())))
        .collect(),
    )
}

/// A whole announcement of node `id` at `ip`, with TTL `ttl`.
fn announce(id: &str, ip: Ipv4Addr, ttl: u32) -> Vec<Record> {
    let inst = instance(id);
    let host = format!("ls-{}.local.", id.replace('-', ""));
    vec![
        rec("_localstream._tcp.local.", ttl, Data::Ptr(inst.clone())),
        rec(
            &inst,
            ttl,
            Data::Srv {
                target: host.clone(),
                port: 47470,
            },
        ),
        rec(&inst, ttl, txt(id, "box")),
        rec(&host, ttl, Data::Addr(IpAddr::V4(ip))),
    ]
}

fn from(last: u8) -> Origin {
    Origin {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
        scope: 2,
    }
}

fn uuid(i: u32) -> String {
    format!("{i:08x}-0000-4000-8000-000000000001")
}

#[test]
fn an_announcement_resolves_and_a_goodbye_removes() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let ev = c.apply(&announce(ID, ip, 120), from(1), t0);
    let [Event::Resolved(s)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.instance, instance(ID));
    assert_eq!(s.record.name, "box");
    assert_eq!(s.addrs, ["10.0.0.1:47470".parse::<SocketAddr>().unwrap()]);
    // The same again: nothing new.
    assert!(c.apply(&announce(ID, ip, 120), from(1), t0).is_empty());
    assert_eq!(c.resolved(), [instance(ID)]);
    assert!(matches!(c.current(&instance(ID)), Event::Resolved(_)));
    // Goodbye (TTL 0).
    let ev = c.apply(&announce(ID, ip, 0), from(1), t0);
    assert_eq!(
        ev,
        [Event::Removed {
            instance: instance(ID)
        }]
    );
    assert_eq!(c.len(), 0);
    assert!(matches!(c.current(&instance(ID)), Event::Removed { .. }));
    assert!(c.strangers().is_empty());
    // A goodbye for an instance it never held is noted, not kept.
    assert!(c.apply(&announce(ID, ip, 0), from(1), t0).is_empty());
    assert_eq!(c.strangers(), [instance(ID)]);
    assert_eq!(c.len(), 0);
}

#[test]
fn parts_in_separate_packets_and_link_local_scope() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let all = announce(ID, Ipv4Addr::new(10, 0, 0, 1), 120);
    assert!(c.apply(&all[..3], from(1), t0).is_empty());
    // Missing addresses are asked for, once a second.
    let q = c.wanted(t0);
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q.iter().all(|q| q.name.starts_with("ls-")));
    assert!(c.wanted(t0 + Duration::from_millis(500)).is_empty());
    let host = format!("ls-{}.local.", ID.replace('-', ""));
    let ll = rec(&host, 120, Data::Addr("fe80::5".parse().unwrap()));
    let ev = c.apply(&[ll], from(1), t0);
    let [Event::Resolved(s)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        s.addrs,
        ["[fe80::5%2]:47470".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn records_not_of_our_service_are_not_kept() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let junk: Vec<Record> = (0..500)
        .flat_map(|i| {
            [
                rec(
                    &format!("a{i}.local."),
                    4500,
                    Data::Addr("10.0.0.9".parse().unwrap()),
                ),
                rec(
                    "_other._tcp.local.",
                    4500,
                    Data::Ptr(format!("x{i}._other._tcp.local.")),
                ),
                rec(
                    &format!("x{i}._other._tcp.local."),
                    4500,
                    Data::Srv {
                        target: "h.local.".into(),
                        port: 1,
                    },
                ),
                // Our type's name itself, or a name that merely ends like it.
                rec("_localstream._tcp.local.", 4500, txt(ID, "x")),
                rec("x_localstream._tcp.local.", 4500, txt(ID, "x")),
            ]
        })
        .collect();
    assert!(c.apply(&junk, from(9), t0).is_empty());
    assert_eq!(c.len(), 0);
}

#[test]
fn a_flood_from_one_source_keeps_to_its_quota() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let real = Ipv4Addr::new(10, 0, 0, 1);
    assert_eq!(c.apply(&announce(ID, real, 120), from(1), t0).len(), 1);
    let mut events = 0;
    let mut t = t0;
    for i in 0..20_000u32 {
        t += Duration::from_millis(1);
        events += c
            .apply(
                &announce(&uuid(i), Ipv4Addr::new(10, 0, 0, 3), 4500),
                from(3),
                t,
            )
            .len();
    }
    assert!(c.len() <= PER_SOURCE + 1, "{}", c.len());
    // 20 s at 16 admissions a second after a burst of 64: each admitted
    // instance is one event in, one (its eviction) out.
    let most = 2 * (ADMIT_BURST as usize + 20 * ADMIT_PER_SEC as usize + 1);
    assert!(events <= most, "{events} events > {most}");
    // The real node is untouched, and a new one is admitted once the flood stops.
    assert!(c.resolved().contains(&instance(ID)));
    let t = t + Duration::from_secs(1);
    let other = "77aa0000-0000-4000-8000-0000000000cd";
    let ev = c.apply(
        &announce(other, Ipv4Addr::new(10, 0, 0, 4), 120),
        from(4),
        t,
    );
    assert!(matches!(ev.as_slice(), [Event::Resolved(s)] if s.instance == instance(other)));
}

#[test]
fn many_sources_stay_within_the_global_bound() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let mut t = t0;
    for i in 0..5_000u32 {
        t += Duration::from_millis(100);
        let src = u8::try_from(i % 250).unwrap() + 1;
        c.apply(
            &announce(&uuid(i), Ipv4Addr::new(10, 0, 0, src), 4500),
            from(src),
            t,
        );
        assert!(c.len() <= MAX_INSTANCES);
    }
    assert_eq!(c.len(), MAX_INSTANCES);
}

#[test]
fn records_expire_and_ttls_are_capped() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    c.apply(&announce(ID, Ipv4Addr::new(10, 0, 0, 1), 2), from(1), t0);
    assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(2)));
    assert!(c.expire(t0 + Duration::from_secs(1)).is_empty());
    // Due for refresh in the last fifth of its life.
    let q = c.wanted(t0 + Duration::from_millis(1700));
    assert_eq!(q.len(), 4, "{q:?}");
    let ev = c.expire(t0 + Duration::from_secs(2));
    assert!(!ev.is_empty());
    // A 120 s record is refreshed at 96 s, then every 6 s, not every second.
    c.apply(&announce(ID, Ipv4Addr::new(10, 0, 0, 1), 120), from(1), t0);
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert!(c.wanted(at(95)).is_empty());
    assert_eq!(c.wanted(at(96)).len(), 4, "SRV, TXT, A and AAAA");
    assert!(c.wanted(at(101)).is_empty());
    assert_eq!(c.wanted(at(102)).len(), 4);
    let ev = c.expire(at(120));
    assert_eq!(
        ev,
        [Event::Removed {
            instance: instance(ID)
        }]
    );
    assert_eq!(c.len(), 0);

    c.apply(
        &announce(ID, Ipv4Addr::new(10, 0, 0, 1), u32::MAX),
        from(1),
        t0,
    );
    assert_eq!(
        c.next_expiry(),
        Some(t0 + Duration::from_secs(u64::from(MAX_TTL)))
    );
    let known = c.known(t0);
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].ttl, MAX_TTL);
    assert!(
        c.known(t0 + Duration::from_secs(u64::from(MAX_TTL) / 2 + 1))
            .is_empty()
    );
}

#[test]
fn bad_records_are_rejected_once_and_withdrawn() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let mut bad = announce(ID, ip, 120);
    bad[2] = rec(
        &instance(ID),
        120,
        txt("77aa0000-0000-4000-8000-0000000000cd", "x"),
    );
    let ev = c.apply(&bad, from(1), t0);
    assert!(matches!(ev.as_slice(), [Event::Rejected { .. }]), "{ev:?}");
    assert!(c.apply(&bad, from(1), t0).is_empty());
    // Valid: resolved; invalid again: removed.
    assert!(matches!(
        c.apply(&announce(ID, ip, 120), from(1), t0).as_slice(),
        [Event::Resolved(_)]
    ));
    let ev = c.apply(&bad, from(1), t0);
    assert_eq!(
        ev,
        [Event::Removed {
            instance: instance(ID)
        }]
    );
}

#[test]
fn addresses_are_bounded_and_flushed() {
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let mut all = announce(ID, Ipv4Addr::new(10, 0, 0, 1), 120);
    let host = format!("ls-{}.local.", ID.replace('-', ""));
    for i in 0..100u8 {
        all.push(rec(
            &host,
            120,
            Data::Addr(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i))),
        ));
    }
    let ev = c.apply(&all, from(1), t0);
    let [Event::Resolved(s)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.addrs.len(), MAX_ADDRS);
    // A cache-flush address record two seconds later replaces them all.
    let mut flush = rec(&host, 120, Data::Addr("10.0.0.7".parse().unwrap()));
    flush.flush = true;
    let ev = c.apply(&[flush], from(1), t0 + Duration::from_secs(2));
    let [Event::Resolved(s)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.addrs, ["10.0.0.7:47470".parse::<SocketAddr>().unwrap()]);
}

#[test]
fn our_own_announcement_resolves_with_every_address() {
    let record = PeerRecord {
        version: 1,
        node_id: ID.parse().unwrap(),
        fingerprint_prefix: [0xab; 8],
        name: "box".into(),
        mac: None,
    };
    let service = crate::responder::Service::new(&record, 47470);
    let addrs: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fe80::1".parse().unwrap()];
    let bytes = crate::wire::response(&service.announcement(&addrs, false), &[], None).unwrap();
    let msg = crate::wire::parse(&bytes).unwrap();
    let t0 = Instant::now();
    let mut c = Cache::new(t0);
    let ev = c.apply(&msg.records, from(1), t0);
    let [Event::Resolved(s)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(s.record, record);
    let want: Vec<SocketAddr> = vec![
        "10.0.0.1:47470".parse().unwrap(),
        "[fe80::1%2]:47470".parse().unwrap(),
    ];
    assert_eq!(s.addrs, want);
}
