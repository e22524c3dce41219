//! The LAN harness itself: namespaces come up and reach each other, multicast
//! crosses the bridge, counters count, and teardown leaves nothing behind,
//! even when the test panics.

use std::path::Path;
use std::sync::Mutex;

use localstream_scenarios::{Lan, bins};

/// Whether any of `namespaces` still exists.
fn leftovers(namespaces: &[String]) -> Vec<String> {
    Lan::existing_namespaces()
        .into_iter()
        .filter(|n| namespaces.contains(n))
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry, but a reaped process does not.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn hosts_come_up_and_reach_each_other() {
    let Some(lan) = Lan::new(3, bins!()) else {
        return;
    };
    let names = lan.namespaces();
    assert_eq!(names.len(), 4, "three hosts and a switch: {names:?}");
    assert!(
        leftovers(&names).len() == 4,
        "namespaces exist while the LAN does"
    );
    // ping is not required (CI may not have it); bash's /dev/tcp always works.
    let has_ping = std::process::Command::new("ping")
        .arg("-V")
        .output()
        .is_ok();
    for h in lan.hosts() {
        let link = h.run(h.exec("ip").args(["-o", "addr", "show", "dev", "eth0"]));
        link.expect_code(0);
        assert!(
            link.stdout.contains(&format!("inet {}/24", h.addr)),
            "{}: {}",
            h.name,
            link.stdout
        );
        let route = h.run(h.exec("ip").args(["route", "show", "224.0.0.0/4"]));
        assert!(
            route.stdout.contains("dev eth0"),
            "{}: {}",
            h.name,
            route.stdout
        );
        for other in lan.hosts() {
            if other.index != h.index {
                assert!(
                    h.reaches(other.addr),
                    "{} cannot reach {}",
                    h.name,
                    other.name
                );
                if has_ping {
                    let addr = other.addr.to_string();
                    h.run(h.exec("ping").args(["-c1", "-W1", &addr]))
                        .expect_code(0);
                }
            }
        }
        // Nothing beyond the LAN: no default route.
        let routes = h.run(h.exec("ip").args(["route", "show", "default"]));
        assert!(
            routes.stdout.trim().is_empty(),
            "{}: {}",
            h.name,
            routes.stdout
        );
    }
    // Distinct identities.
    let ids: Vec<_> = lan.hosts().iter().map(|h| h.id()).collect();
    for (i, a) in ids.iter().enumerate() {
        assert_eq!(a.name, format!("h{}", i + 1));
        for b in &ids[i + 1..] {
            assert_ne!(a.id, b.id);
            assert_ne!(a.sha256, b.sha256);
        }
    }
    drop(lan);
    assert!(
        leftovers(&names).is_empty(),
        "teardown left {:?}",
        leftovers(&names)
    );
}

#[test]
fn counters_count_traffic() {
    let Some(lan) = Lan::builder(2).ipv6(false).build(bins!()) else {
        return;
    };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let v6 = h1.run(h1.exec("ip").args(["-6", "addr", "show", "dev", "eth0"]));
    assert!(v6.stdout.trim().is_empty(), "IPv6 is off: {}", v6.stdout);
    let before = h1.counters();
    assert!(h1.reaches(h2.addr));
    let d = h1.counters().since(&before);
    // ARP request + SYN at least; the refusal means no retransmission.
    assert!(d.tx_packets >= 2, "{d:?}");
    assert!(d.tcp_out_segs >= 1, "{d:?}");
    assert_eq!(d.udp_out + d.udp6_out, 0, "{d:?}");
}

#[test]
fn multicast_crosses_the_lan() {
    let Some(lan) = Lan::new(3, bins!()) else {
        return;
    };
    let mut browse = lan.host(3).browse();
    let fake = lan
        .host(1)
        .fake("harness probe", 4242, &[("v", "1"), ("hello", "world")]);
    let line = browse.wait_line(|l| l.starts_with("resolved harness probe."));
    assert!(line.contains("port=4242"), "{line}");
    assert!(line.contains(&lan.host(1).addr.to_string()), "{line}");
    assert!(line.contains("hello=world"), "{line}");
    drop(fake);
}

#[test]
fn teardown_kills_everything_started_in_the_lan() {
    let Some(lan) = Lan::new(2, bins!()) else {
        return;
    };
    let names = lan.namespaces();
    // A direct child and a grandchild the harness does not know about.
    let p = lan.host(1).spawn(
        lan.host(1)
            .exec("sh")
            .args(["-c", "sleep 600 & echo $!; wait"]),
    );
    let mut p = p;
    let grandchild: u32 = p.wait_line(|_| true).trim().parse().unwrap();
    let pid = p.pid();
    assert!(alive(pid) && alive(grandchild));
    // Keep the handle alive past the LAN, as a test that stored it would.
    let handle = p;
    drop(lan);
    assert!(!alive(pid), "child {pid} survived teardown");
    assert!(
        localstream_scenarios::poll_until(std::time::Duration::from_secs(5), || !alive(grandchild)),
        "grandchild {grandchild} survived teardown"
    );
    assert!(
        leftovers(&names).is_empty(),
        "teardown left {:?}",
        leftovers(&names)
    );
    drop(handle);
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let seen: Mutex<Option<(Vec<String>, u32)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let Some(lan) = Lan::new(2, bins!()) else {
            return;
        };
        let p = lan.host(2).spawn(lan.host(2).exec("sleep").arg("600"));
        *seen.lock().unwrap() = Some((lan.namespaces(), p.pid()));
        panic!("deliberate panic with a LAN and a process running");
    });
    let Some((names, pid)) = seen.lock().unwrap().take() else {
        return; // skipped
    };
    assert!(result.is_err(), "the closure panicked");
    assert!(!alive(pid), "process {pid} survived the panic");
    assert!(
        leftovers(&names).is_empty(),
        "panic left {:?}",
        leftovers(&names)
    );
}
