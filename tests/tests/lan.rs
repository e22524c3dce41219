//! Discovery scenarios on a private LAN of network namespaces: several real
//! `localstream` nodes, each in its own host namespace, find each other over
//! mDNS across real interfaces and a bridge.
//!
//! Each test builds its own LAN (so they run in parallel) and asserts on
//! content: ids, addresses, ports, file bytes, exit codes, messages, packet
//! counters. Nothing waits by sleeping: every wait is for a line, an exit or a
//! condition, with a deadline.

use std::time::{Duration, Instant};

use localstream_scenarios::{
    Host, IdInfo, Lan, Listener, Output, STEP, assert_content, bins, names_in, peak_rss_kib,
    random_bytes, text_bytes,
};
use serde_json::Value;

/// How long a goodbye may take to reach a watcher (it is one multicast packet).
const GOODBYE: Duration = Duration::from_secs(10);

fn lan(hosts: usize) -> Option<Lan> {
    Lan::new(hosts, bins!())
}

/// The array `peers --json` printed (after checking it exited 0).
fn peers_of(out: &Output) -> Vec<Value> {
    out.expect_code(0);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "peers --json did not print one JSON value ({e}):\n{}",
            out.describe()
        )
    });
    match v {
        Value::Array(a) => a,
        other => panic!(
            "peers --json printed {other} instead of an array:\n{}",
            out.describe()
        ),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// The peer with node id `id` in a `peers --json` array.
fn find<'a>(peers: &'a [Value], id: &str, out: &Output) -> &'a Value {
    peers
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no peer with id {id}:\n{}", out.describe()))
}

/// Checks one `peers --json` object against the host, its listener and its
/// `localstream id`.
fn check_peer(p: &Value, host: &Host, listener: &Listener, id: &IdInfo) {
    assert_eq!(str_of(p, "name"), host.name, "{p}");
    assert_eq!(str_of(p, "id"), id.id, "{p}");
    assert_eq!(str_of(p, "short_id"), &id.id[..8], "{p}");
    assert_eq!(str_of(p, "fingerprint"), id.fingerprint, "{p}");
    assert_eq!(p["port"].as_u64(), Some(u64::from(listener.port)), "{p}");
    assert_eq!(p["version"].as_u64(), Some(1), "{p}");
    let addrs: Vec<&str> = p["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("`addresses` is not an array in {p}"))
        .iter()
        .map(|a| a.as_str().unwrap_or_else(|| panic!("address {a} in {p}")))
        .collect();
    let own = host.addr.to_string();
    assert!(addrs.contains(&own.as_str()), "{} not in {p}", host.addr);
    // Every IPv4 address is this host's: no loopback, no other host's.
    for a in &addrs {
        if let Ok(v4) = a.parse::<std::net::Ipv4Addr>() {
            assert_eq!(v4, host.addr, "foreign IPv4 address {a} in {p}");
        }
    }
    match &p["mac"] {
        Value::Null => {}
        Value::String(mac) => assert_eq!(*mac, host.mac(), "mac is not {}'s eth0: {p}", host.name),
        other => panic!("`mac` is {other} in {p}"),
    }
}

/// A random UUID-shaped string (version 4 layout), deterministic per seed.
fn uuid_like(seed: u64) -> String {
    let h: String = random_bytes(seed, 16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Scenario 1: `peers` on h2 lists exactly the listeners on h1 and h3, with
/// their true ids, fingerprints, addresses and ports.
#[test]
fn peers_lists_the_listeners_on_the_lan() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let l1 = h1.listen(&["--yes", "--name", "h1"]);
    let l3 = h3.listen(&["--yes", "--name", "h3"]);
    assert_eq!(l1.discovery, "eth0", "h1 announces on eth0 only");
    let (id1, id3) = (h1.id(), h3.id());
    assert_eq!(l1.id, id1.id, "banner and `id` agree");
    assert_eq!(l3.id, id3.id, "banner and `id` agree");

    let out = h2.localstream(&["peers", "--json", "--timeout", "2"]);
    eprintln!("scenario 1: `peers --json --timeout 2` took {:?}", out.took);
    let peers = peers_of(&out);
    assert_eq!(peers.len(), 2, "exactly h1 and h3:\n{}", out.describe());
    check_peer(find(&peers, &id1.id, &out), h1, &l1, &id1);
    check_peer(find(&peers, &id3.id, &out), h3, &l3, &id3);

    // The default look (1 s) is what people run; report what it finds.
    let quick = h2.localstream(&["peers", "--json"]);
    let found = peers_of(&quick).len();
    eprintln!(
        "scenario 1: `peers --json` (default timeout) took {:?} and found {found} of 2",
        quick.took
    );
    // Text output: one line per node, naming it.
    let text = h2.localstream(&["peers", "--timeout", "2"]);
    text.expect_code(0);
    for (name, id) in [("h1", &id1), ("h3", &id3)] {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.contains(name) && l.contains(&id.id[..8])),
            "no line for {name}:\n{}",
            text.describe()
        );
    }
    // A node never lists itself.
    let own = peers_of(&h1.localstream(&["peers", "--json"]));
    assert!(
        own.iter().all(|p| p["id"] != id1.id.as_str()),
        "h1 lists itself: {own:?}"
    );
}

/// Scenario 2: `send h1 FILE` from h3 delivers the exact bytes into h1's --dir.
#[test]
fn send_by_name_delivers_the_file() {
    let Some(lan) = lan(3) else { return };
    let (h1, h3) = (lan.host(1), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let data = random_bytes(2, 3 * 1024 * 1024 + 12_345);
    let file = h3.file("payload.bin", &data);

    let out = h3.run(h3.node().args(["send", "--yes"]).arg("h1").arg(&file));
    eprintln!("scenario 2: `send h1 <3 MiB>` took {:?}", out.took);
    out.expect_code(0);
    assert!(
        out.stdout.lines().any(|l| l.starts_with("sent ")),
        "no `sent` line:\n{}",
        out.describe()
    );
    let (head, saved) = l1.wait_received();
    assert!(head.starts_with("received 1 file"), "{head}");
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0], l1.dir.join("payload.bin"));
    assert_content(&saved[0], &data);
    assert_eq!(names_in(&l1.dir), ["payload.bin"]);
}

/// Compression `auto` (the default) between two hosts, where it measures
/// (to a loopback address it never compresses): a folder of text, one file
/// of 40 MiB and 150 small ones, arrives byte for byte, and part of it
/// crossed the wire compressed (the first two windows always are). Whether
/// it goes on compressing depends on this machine's speed: not asserted.
#[test]
fn auto_compression_between_two_hosts_keeps_every_byte() {
    let Some(lan) = lan(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let folder = h2.dir.join("files").join("notes");
    std::fs::create_dir_all(&folder).unwrap();
    let mut want = vec![("big.txt".to_string(), text_bytes(91, 40 << 20))];
    for i in 0..150 {
        want.push((
            format!("n{i:03}.txt"),
            text_bytes(100 + i, 600 + 97 * i as usize),
        ));
    }
    for (name, content) in &want {
        std::fs::write(folder.join(name), content).unwrap();
    }

    let out = h2.run(h2.node().args(["send", "--yes"]).arg("h1").arg(&folder));
    eprintln!("auto compression: {}", out.describe());
    out.expect_code(0);
    assert!(
        out.stderr.contains("on the wire for "),
        "nothing went compressed:\n{}",
        out.describe()
    );
    let (head, _) = l1.wait_received();
    assert!(head.starts_with("received 151 files"), "{head}");
    for (name, content) in &want {
        assert_content(&l1.dir.join("notes").join(name), content);
    }
}

/// Scenario 3: two nodes named `box`: sending to `box` is refused and names
/// both ids; an 8-hex-digit id prefix picks one, and only that one receives.
#[test]
fn ambiguous_name_is_refused_and_an_id_prefix_picks_one() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "box"]);
    let l3 = h3.listen(&["--yes", "--name", "box"]);
    let (id1, id3) = (l1.id.clone(), l3.id.clone());
    assert_ne!(id1, id3);
    let data = random_bytes(3, 1024 * 1024 + 7);
    let file = h2.file("for-h1.bin", &data);

    let out = h2.run(h2.node().args(["send", "--yes"]).arg("box").arg(&file));
    out.expect_code(1);
    for id in [&id1, &id3] {
        assert!(
            out.stderr.contains(id.as_str()),
            "stderr does not name {id}:\n{}",
            out.describe()
        );
    }
    assert!(names_in(&l1.dir).is_empty() && names_in(&l3.dir).is_empty());

    let out = h2.run(
        h2.node()
            .args(["send", "--yes"])
            .arg("nobody-here")
            .arg(&file),
    );
    out.expect_code(1);
    assert!(
        out.stderr.to_lowercase().contains("no peer"),
        "says no peer found:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("box"),
        "lists the peers seen:\n{}",
        out.describe()
    );

    let prefix = &id1[..8];
    let out = h2.run(h2.node().args(["send", "--yes"]).arg(prefix).arg(&file));
    eprintln!("scenario 3: `send {prefix} <1 MiB>` took {:?}", out.took);
    out.expect_code(0);
    let (_, saved) = l1.wait_received();
    assert_eq!(saved, [l1.dir.join("for-h1.bin")]);
    assert_content(&saved[0], &data);
    // The transfer is complete when send exits; h3 got nothing.
    assert!(
        names_in(&l3.dir).is_empty(),
        "h3 received {:?}",
        names_in(&l3.dir)
    );
}

/// Scenario 4: `peers --watch --json` sees a node appear, and disappear as
/// soon as it is stopped with Ctrl-C (its goodbye).
#[test]
fn watch_sees_a_node_come_and_go() {
    come_and_go("INT");
}

/// Scenario 4 with SIGTERM, what `systemctl --user stop` sends: the same
/// goodbye, the same exit code, and the watcher stops on SIGTERM too.
#[test]
fn sigterm_stops_a_listener_with_its_goodbye() {
    come_and_go("TERM");
}

/// A listener seen `up`, stopped with `signal`, exits 130 and is seen
/// `down` promptly (its mDNS goodbye); the watcher stops on `signal` too.
fn come_and_go(signal: &str) {
    let Some(lan) = lan(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let mut watch = h2.spawn(h2.node().args(["peers", "--watch", "--json"]));
    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let id1 = l1.id.clone();
    let event = |line: &str, kind: &str, id: &str| {
        serde_json::from_str::<Value>(line)
            .is_ok_and(|v| v["event"] == kind && v["peer"]["id"] == id)
    };
    let up = watch.wait_line(|l| event(l, "up", &id1));
    let up: Value =
        serde_json::from_str(&up).unwrap_or_else(|e| panic!("`up` is not JSON ({e}): {up}"));
    assert_eq!(up["peer"]["name"], "h1", "{up}");
    assert_eq!(
        up["peer"]["port"].as_u64(),
        Some(u64::from(l1.port)),
        "{up}"
    );

    l1.signal(signal);
    let stopped = Instant::now();
    assert_eq!(l1.wait_exit(STEP), Some(130), "SIG{signal} exits 130");
    let exited = stopped.elapsed();
    if watch
        .try_wait_line(GOODBYE, |l| event(l, "down", &id1))
        .is_none()
    {
        watch.fail(&format!(
            "no `down` event for {id1} within {GOODBYE:?} of SIG{signal}"
        ));
    }
    eprintln!(
        "scenario 4: listener exited {exited:?} and `down` was seen {:?} after SIG{signal}",
        stopped.elapsed()
    );
    // Every line was one JSON event.
    watch.drain();
    for l in &watch.stdout {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("watch line {l:?} is not JSON: {e}"));
        assert!(v["event"] == "up" || v["event"] == "down", "{l}");
    }
    watch.signal(signal);
    let code = watch.wait_exit(STEP);
    eprintln!("scenario 4: `peers --watch` exited {code:?} on SIG{signal}");
    assert!(
        matches!(code, Some(0 | 130)),
        "watch exit code {code:?} after SIG{signal}"
    );
}

/// Scenario 5: forged `_localstream._tcp` records with malformed TXT are
/// ignored (a well-formed forged one is listed: it is only a hint), `peers`
/// does not crash, and the real listener keeps serving.
#[test]
fn malformed_announcements_are_ignored() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "good"]);
    let id1 = l1.id.clone();

    let fp = "0123456789abcdef";
    let mac = "02:00:00:00:00:05";
    let long_name = "x".repeat(250);
    let control_id = uuid_like(100);
    let ids: Vec<String> = (0..8).map(|i| uuid_like(200 + i)).collect();
    // A node's instance name is its id without hyphens (PROTOCOL.md).
    let control_instance = control_id.replace('-', "");
    let variants: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // The control: everything well-formed.
        (
            control_instance.as_str(),
            vec![
                ("v", "1"),
                ("id", &control_id),
                ("fp", fp),
                ("name", "control"),
                ("mac", mac),
            ],
        ),
        ("bad-no-id", vec![("v", "1"), ("fp", fp), ("name", "noid")]),
        (
            "bad-id",
            vec![
                ("v", "1"),
                ("id", "not-a-uuid"),
                ("fp", fp),
                ("name", "badid"),
            ],
        ),
        (
            "bad-name-ctrl",
            vec![
                ("v", "1"),
                ("id", &ids[0]),
                ("fp", fp),
                ("name", "evil\u{1b}[31mred\u{7}"),
            ],
        ),
        (
            "bad-name-long",
            vec![
                ("v", "1"),
                ("id", &ids[1]),
                ("fp", fp),
                ("name", &long_name),
            ],
        ),
        (
            "bad-fp",
            vec![
                ("v", "1"),
                ("id", &ids[2]),
                ("fp", "zzzzzzzzzzzzzzzz"),
                ("name", "badfp"),
            ],
        ),
        (
            "bad-fp-short",
            vec![
                ("v", "1"),
                ("id", &ids[3]),
                ("fp", "0123"),
                ("name", "shortfp"),
            ],
        ),
        (
            "bad-mac",
            vec![
                ("v", "1"),
                ("id", &ids[4]),
                ("fp", fp),
                ("name", "badmac"),
                ("mac", "aa:bb:cc:dd:ee"),
            ],
        ),
        (
            "bad-version",
            vec![
                ("v", "abc"),
                ("id", &ids[5]),
                ("fp", fp),
                ("name", "badver"),
            ],
        ),
        (
            "bad-empty-name",
            vec![("v", "1"), ("id", &ids[6]), ("fp", fp), ("name", "")],
        ),
        // Well-formed, but under an instance name that is not its id: one node
        // must not be able to take over another's instance.
        (
            "bad-instance-mismatch",
            vec![
                ("v", "1"),
                ("id", &ids[7]),
                ("fp", fp),
                ("name", "mismatch"),
            ],
        ),
    ];
    let fakes: Vec<_> = variants
        .iter()
        .enumerate()
        .map(|(i, (instance, txt))| h3.fake(instance, 40_000 + u16::try_from(i).unwrap(), txt))
        .collect();

    // The forged records are really out there: a plain mdns-sd browser on h2
    // resolves every one of them.
    let mut browse = h2.browse();
    for (instance, _) in &variants {
        let want = format!(
            "resolved {instance}.{}",
            localstream_scenarios::SERVICE_TYPE
        );
        browse.wait_seen(|l| l.starts_with(&want));
    }
    drop(browse);

    let out = h2.localstream(&["peers", "--json", "--timeout", "2"]);
    let peers = peers_of(&out);
    let mut got: Vec<&str> = peers.iter().map(|p| str_of(p, "id")).collect();
    got.sort_unstable();
    let mut want = vec![id1.as_str(), control_id.as_str()];
    want.sort_unstable();
    assert_eq!(
        got,
        want,
        "only the listener and the well-formed fake:\n{}",
        out.describe()
    );
    let control = find(&peers, &control_id, &out);
    assert_eq!(str_of(control, "name"), "control");
    assert_eq!(control["mac"], mac);
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    // The text listing too (escaped names must not reach the terminal raw).
    let text = h2.localstream(&["peers", "--timeout", "2"]);
    text.expect_code(0);
    assert!(!text.stdout.contains('\u{1b}'), "{}", text.describe());

    // The listener is unharmed and still serves, found by name among the fakes.
    assert!(l1.is_running(), "listener died: {}", l1.stderr());
    let data = random_bytes(5, 1024 * 1024);
    let file = h2.file("after-fakes.bin", &data);
    let out = h2.run(h2.node().args(["send", "--yes"]).arg("good").arg(&file));
    out.expect_code(0);
    let (_, saved) = l1.wait_received();
    assert_content(&saved[0], &data);
    drop(fakes);
}

/// Scenario 6: `--no-discovery` puts nothing on the network: a listener stays
/// silent even when queried (a listener with discovery, the control, answers),
/// and a send by address uses only TCP.
#[test]
fn no_discovery_sends_nothing() {
    // Without IPv6 a host's kernel sends nothing of its own (no router
    // solicitations, no MLD), so its counters are exact.
    let Some(lan) = Lan::builder(3).ipv6(false).build(bins!()) else {
        return;
    };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let h1_start = h1.counters();
    let mut quiet = h1.listen(&["--yes", "--no-discovery", "--name", "quiet"]);
    assert_eq!(quiet.discovery, "off");
    let loud = h2.listen(&["--yes", "--name", "loud"]);

    // The window (about 1 s): h3 looks for peers, so both listeners are asked.
    let (q0, l0) = (h1.counters(), h2.counters());
    let out = h3.localstream(&["peers", "--json", "--timeout", "1"]);
    let (q1, l1) = (h1.counters(), h2.counters());
    let (dq, dl) = (q1.since(&q0), l1.since(&l0));
    eprintln!(
        "scenario 6: over {:?}: no-discovery listener {dq:?}, control {dl:?}",
        out.took
    );
    assert!(
        dl.tx_packets > 0,
        "the control node sent nothing, so the check proves nothing: {dl:?}"
    );
    assert_eq!(
        dq.tx_packets, 0,
        "the --no-discovery listener sent packets: {dq:?}"
    );
    let peers = peers_of(&out);
    let listed: Vec<&str> = peers.iter().map(|p| str_of(p, "id")).collect();
    assert_eq!(
        listed,
        [loud.id.as_str()],
        "only the control is visible:\n{}",
        out.describe()
    );

    // Usage errors, before anything is sent.
    let s0 = h3.counters();
    let file = h3.file("quiet.bin", &random_bytes(6, 1024 * 1024 + 3));
    h3.run(
        h3.node()
            .args(["send", "--yes", "--no-discovery", "quiet"])
            .arg(&file),
    )
    .expect_code(2);
    h3.localstream(&["peers", "--no-discovery"]).expect_code(2);

    let target = format!("{}:{}", h1.addr, quiet.port);
    let out = h3.run(
        h3.node()
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&file),
    );
    out.expect_code(0);
    let d = h3.counters().since(&s0);
    eprintln!("scenario 6: send --no-discovery to {target}: {d:?}");
    assert_eq!(
        d.udp_out + d.udp6_out,
        0,
        "the sender sent UDP: {d:?}\n{}",
        out.describe()
    );
    assert_eq!(d.icmp_out, 0, "the sender sent ICMP: {d:?}");
    // Every packet on eth0 is a TCP segment, apart from ARP.
    assert!(
        d.tx_packets <= d.tcp_out_segs + d.tcp_retrans_segs + 2,
        "the sender sent more than TCP and ARP: {d:?}"
    );
    let (_, saved) = quiet.wait_received();
    assert_content(&saved[0], &std::fs::read(&file).unwrap());
    let whole = h1.counters().since(&h1_start);
    assert_eq!(
        whole.udp_out + whole.udp6_out + whole.icmp_out,
        0,
        "the --no-discovery listener sent UDP or ICMP during its life: {whole:?}"
    );
}

/// The `trust` field of the peer with node id `id` in `peers --json` output.
fn trust_in<'a>(peers: &'a [Value], id: &str, out: &Output) -> &'a str {
    str_of(find(peers, id, out), "trust")
}

/// Scenario 7: `peers` shows h2's trust state for each node (unpinned when
/// never met, known after a transfer, trusted after `trust`), and flags an announcement that
/// claims h1's pinned id with another key as CHANGED, with a warning; a send
/// to the forged record fails and delivers nothing.
#[test]
fn peers_shows_trust_state_and_flags_a_changed_key() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let l3 = h3.listen(&["--yes", "--name", "h3"]);
    let (id1, id3) = (l1.id.clone(), l3.id.clone());
    let fp1 = l1.fingerprint.clone();
    let peers = |what: &str| {
        let out = h2.localstream(&["peers", "--json", "--timeout", "1.5"]);
        eprintln!("scenario 7: `peers --json` {what} took {:?}", out.took);
        let list = peers_of(&out);
        (list, out)
    };

    // First contact by name: h2 pins h1, and the transfer makes it known.
    let data = random_bytes(7, 64 * 1024 + 5);
    let file = h2.file("first.bin", &data);
    let out = h2.run(h2.node().args(["send", "--yes"]).arg("h1").arg(&file));
    out.expect_code(0);
    let (_, saved) = l1.wait_received();
    assert_eq!(saved, [l1.dir.join("first.bin")]);
    assert_content(&saved[0], &data);

    let (list, out) = peers("after the transfer");
    assert_eq!(trust_in(&list, &id1, &out), "known", "{}", out.describe());
    assert_eq!(
        trust_in(&list, &id3, &out),
        "unpinned",
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("warning:"), "{}", out.describe());

    // `trust h1` on h2 marks it verified.
    h2.localstream(&["trust", "h1"]).expect_code(0);
    let (list, out) = peers("after `trust h1`");
    assert_eq!(trust_in(&list, &id1, &out), "trusted", "{}", out.describe());
    assert_eq!(
        trust_in(&list, &id3, &out),
        "unpinned",
        "{}",
        out.describe()
    );

    // h1 goes away; a forged record on h3 claims h1's id and name with
    // another key, at a port where nothing listens.
    l1.interrupt();
    assert_eq!(l1.wait_exit(STEP), Some(130), "Ctrl-C exits 130");
    let hex1: String = fp1.chars().filter(|&c| c != ':').collect();
    assert_eq!(hex1.len(), 16, "banner fingerprint {fp1:?}");
    // Every digit differs from h1's.
    let forged: String = hex1
        .chars()
        .map(|c| char::from_digit(15 - c.to_digit(16).unwrap(), 16).unwrap())
        .collect();
    let fake_port = 9;
    let impostor_instance = id1.replace('-', "");
    let _fake = h3.fake(
        &impostor_instance,
        fake_port,
        &[("v", "1"), ("id", &id1), ("fp", &forged), ("name", "h1")],
    );

    let (list, out) = peers("with the forged record");
    eprintln!("scenario 7: its stderr: {}", out.stderr.trim_end());
    let p = find(&list, &id1, &out);
    assert_eq!(str_of(p, "trust"), "CHANGED", "{}", out.describe());
    assert_eq!(str_of(p, "name"), "h1", "{p}");
    assert_eq!(p["port"].as_u64(), Some(u64::from(fake_port)), "{p}");
    assert_eq!(
        str_of(p, "fingerprint").replace(':', ""),
        forged,
        "the announced (forged) fingerprint: {p}"
    );
    assert_eq!(
        trust_in(&list, &id3, &out),
        "unpinned",
        "{}",
        out.describe()
    );
    for want in ["warning:", "pinned here to key", id1.as_str(), fp1.as_str()] {
        assert!(
            out.stderr.contains(want),
            "stderr lacks {want:?}:\n{}",
            out.describe()
        );
    }

    // Sending to h1 now finds the forged record, whose key is not the pinned
    // one: send refuses before connecting, says why, and nothing arrives.
    let file = h2.file("second.bin", &random_bytes(8, 4096));
    let out = h2.run(h2.node().args(["send", "--yes"]).arg("h1").arg(&file));
    eprintln!("scenario 7: send to the forged h1:\n{}", out.describe());
    out.expect_code(1);
    for want in ["not sending", id1.as_str(), "localstream forget"] {
        assert!(
            out.stderr.contains(want),
            "the refusal lacks {want:?}:\n{}",
            out.describe()
        );
    }
    let at = format!("{}:{fake_port}", h3.addr);
    assert!(
        !out.stderr.contains(&at),
        "send connected to the forged address {at}:\n{}",
        out.describe()
    );
    assert_eq!(names_in(&l1.dir), ["first.bin"], "h1's inbox");
    assert!(
        names_in(&l3.dir).is_empty(),
        "h3 received {:?}",
        names_in(&l3.dir)
    );
}

/// Scenario 8: multicast dropped on one host by a firewall rule in its
/// namespace. `send <name>` still reaches a peer it sent to before (the
/// address it was reached at is remembered), and `doctor` on that host says
/// what is wrong (exit 1), while on a healthy host it finds nothing (exit 0).
#[test]
fn blocked_multicast_falls_back_to_the_last_address_and_doctor_says_why() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let healthy = h3.localstream(&["doctor"]);
    eprintln!("scenario 8: doctor on a healthy host:\n{}", healthy.stdout);
    healthy.expect_code(0);
    assert!(
        healthy.stdout.contains("ok    mDNS works here"),
        "{}",
        healthy.describe()
    );

    let mut l2 = h2.listen(&["--yes", "--name", "h2"]);
    let first = random_bytes(81, 100_000);
    let f1 = h1.file("first.bin", &first);
    h1.run(h1.node().args(["send", "--yes"]).arg("h2").arg(&f1))
        .expect_code(0);
    l2.wait_received();

    for chain in ["OUTPUT", "INPUT"] {
        let status = h1
            .exec("iptables")
            .args(["-A", chain, "-d", "224.0.0.251", "-j", "DROP"])
            .status()
            .expect("iptables is needed for this scenario (.ci/run installs it)");
        assert!(status.success(), "iptables -A {chain} failed");
    }
    let second = random_bytes(82, 200_000);
    let f2 = h1.file("second.bin", &second);
    let out = h1.run(
        h1.node()
            .args(["send", "--yes", "--timeout", "1", "h2"])
            .arg(&f2),
    );
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("did not answer on the network in 1.0 s; trying its last known address"),
        "{}",
        out.describe()
    );
    let (_, saved) = l2.wait_received();
    assert_content(&saved[0], &second);

    let broken = h1.localstream(&["doctor"]);
    eprintln!(
        "scenario 8: doctor with multicast dropped:\n{}",
        broken.stdout
    );
    broken.expect_code(1);
    for says in [
        "FAIL  firewall (iptables-save) drops mDNS or port 47470: -A OUTPUT -d 224.0.0.251/32 -j DROP",
        "FAIL  this node did not see its own announcement on eth0",
        "something blocks receiving",
    ] {
        assert!(
            broken.stdout.contains(says),
            "{says:?} missing:\n{}",
            broken.describe()
        );
    }
}

/// Forged records in scenario 9: 3 million, the figure of issue 13.
const FLOOD_RECORDS: u64 = 3_000_000;
/// What the listener and the watcher may hold at their peak under the flood.
const FLOOD_PEAK_KIB: u64 = 64 * 1024;
/// Most forged peers a watcher lists at once: the discovery cache keeps at
/// most 32 instances from one source address.
const FLOOD_LISTED_MAX: usize = 32;

/// Scenario 9 (issue 13): h3 multicasts 3 million forged records with unique
/// names (A records alone, and whole `_localstream._tcp` instances with valid
/// TXT). The listener on h1 and `peers --watch` on h2 read it all and stay
/// under 64 MiB at their peak, the watcher lists only a few forged peers at a
/// time and keeps watching, and afterwards a new real peer is found and the
/// listener is still found by name.
#[test]
fn a_flood_of_forged_records_is_bounded() {
    let Some(lan) = lan(4) else { return };
    let (h1, h2, h3, h4) = (lan.host(1), lan.host(2), lan.host(3), lan.host(4));
    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let mut watch = h2.spawn(h2.node().args(["peers", "--watch", "--json"]));
    let event = |line: &str, kind: &str| -> Option<Value> {
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|v| v["event"] == kind)
    };
    let id1 = l1.id.clone();
    watch.wait_line(|l| event(l, "up").is_some_and(|v| v["peer"]["id"] == id1.as_str()));
    let before = (peak_rss_kib(l1.pid()), peak_rss_kib(watch.pid()));

    let c0 = h1.counters();
    let out = h3.flood(FLOOD_RECORDS);
    out.expect_code(0);
    let c = h1.counters().since(&c0);
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let (records, packets): (u64, u64) = match words.as_slice() {
        ["flooded", r, "records", "in", p, "packets", ..] => {
            (r.parse().unwrap(), p.parse().unwrap())
        }
        _ => panic!("unexpected flood report:\n{}", out.describe()),
    };
    assert!(records >= FLOOD_RECORDS, "{}", out.describe());
    // (Nearly) every packet reached the listener's socket (read, or dropped
    // when its buffer was full): the flood really hit it.
    assert!(
        (c.udp_in + c.udp_rcvbuf_errors) * 10 >= packets * 9,
        "h1 got {c:?} of {packets} packets"
    );
    assert!(l1.is_running(), "listener died: {}", l1.stderr());
    assert!(watch.is_running(), "watch died: {}", watch.stderr());
    let after = (peak_rss_kib(l1.pid()), peak_rss_kib(watch.pid()));
    eprintln!(
        "scenario 9: {} in {:?}; h1 read {} datagrams, dropped {}; peak RSS before/after: \
         listen {} -> {} KiB, peers --watch {} -> {} KiB",
        out.stdout.trim(),
        out.took,
        c.udp_in,
        c.udp_rcvbuf_errors,
        before.0,
        after.0,
        before.1,
        after.1
    );
    assert!(
        after.0 < FLOOD_PEAK_KIB,
        "listener peaked at {} KiB",
        after.0
    );
    assert!(
        after.1 < FLOOD_PEAK_KIB,
        "peers --watch peaked at {} KiB",
        after.1
    );

    // The watcher heard forged peers (the flood reached its table), but never
    // listed more than a few at once.
    let h4_id = h4.id().id;
    watch.drain();
    let mut listed: Vec<String> = vec![];
    let mut most = 0;
    let mut forged_seen = 0;
    for l in &watch.stdout {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let (Some(id), Some(name)) = (v["peer"]["id"].as_str(), v["peer"]["name"].as_str()) else {
            continue;
        };
        if !name.starts_with("flood-") {
            continue;
        }
        match v["event"].as_str() {
            Some("up") => {
                forged_seen += 1;
                listed.push(id.to_owned());
            }
            Some("down") => listed.retain(|x| x != id),
            _ => {}
        }
        most = most.max(listed.len());
    }
    eprintln!("scenario 9: the watcher saw {forged_seen} forged peers, at most {most} at once");
    assert!(forged_seen > 0, "no forged peer reached the watcher");
    assert!(
        most <= FLOOD_LISTED_MAX,
        "the watcher listed {most} forged peers at once"
    );

    // A real peer that comes after the flood is found by the same watcher ...
    let _l4 = h4.listen(&["--yes", "--name", "h4"]);
    watch.wait_line(|l| event(l, "up").is_some_and(|v| v["peer"]["id"] == h4_id.as_str()));
    // ... and by a fresh look; and the flooded listener is still found by name.
    let out = h2.localstream(&["peers", "--json", "--timeout", "2"]);
    let peers = peers_of(&out);
    find(&peers, &id1, &out);
    find(&peers, &h4_id, &out);
    let data = random_bytes(9, 256 * 1024 + 9);
    let file = h4.file("after-the-flood.bin", &data);
    h4.run(h4.node().args(["send", "--yes"]).arg("h1").arg(&file))
        .expect_code(0);
    let (_, saved) = l1.wait_received();
    assert_content(&saved[0], &data);
}

/// A node met for the first time that connects from the address a pinned
/// peer sent from (here: a second identity on h2, under another name) is
/// refused loudly by the receiver, before it signs anything, until the old
/// pin is forgotten.
#[test]
fn a_new_key_from_a_pinned_peers_address_is_refused_by_the_receiver() {
    let Some(lan) = lan(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let mut l1 = h1.listen(&["--yes", "--name", "h1", "--no-discovery"]);
    let target = format!("{}:{}", h1.addr, l1.port);
    let first = h2.file("first.txt", b"from the pinned node");
    h2.run(
        h2.node()
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&first),
    )
    .expect_code(0);
    l1.wait_received();

    let other = h2.dir.join("other-home");
    h2.run(
        h2.node_at(&other)
            .args(["config", "set", "name", "h2-other"]),
    )
    .expect_code(0);
    let second = h2.file("second.txt", b"from a new key at the same address");
    let out = h2.run(
        h2.node_at(&other)
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&second),
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("at this address, with another key"),
        "{}",
        out.describe()
    );
    let from = format!("from its address {}", h2.addr);
    assert!(
        localstream_scenarios::poll_until(STEP, || {
            let err = l1.stderr();
            err.contains("A NEW KEY ANSWERS AS PEER") && err.contains(&from)
        }),
        "{}",
        l1.stderr()
    );
    assert_eq!(names_in(&l1.dir), ["first.txt"]);

    // The receiver's user forgets the old pin: the new node gets in.
    let h2_id = h2.id();
    h1.run(h1.node().args(["forget", &h2_id.id])).expect_code(0);
    h2.run(
        h2.node_at(&other)
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&second),
    )
    .expect_code(0);
    l1.wait_received();
    assert_content(
        &l1.dir.join("second.txt"),
        b"from a new key at the same address",
    );
}

/// The LAN's hosts share one IPv6 /64 (here all of fe80::/64): a host
/// flooding a listener with silent sockets over IPv6 must not push out
/// another host's handshake (addresses count whole, not per /64).
#[test]
fn silent_sockets_over_ipv6_from_one_host_do_not_keep_another_out() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "h1", "--no-discovery", "--bind", "::"]);
    let (Some((ll, _)), Some((_, idx2)), Some((_, idx3))) =
        (h1.link_local(), h2.link_local(), h3.link_local())
    else {
        panic!("the hosts have no IPv6 link-local address");
    };
    let port = l1.port;
    let target = |idx: u32| format!("[{ll}%{idx}]:{port}");
    let mut flood = h2.hold(&target(idx2), 300);
    let held = flood.wait_line(|l| l.starts_with("held "));
    let mut ok = 0;
    for i in 0..10 {
        let name = format!("v6-{i}.txt");
        let f = h3.file(&name, name.as_bytes());
        let out = h3.run(
            h3.node()
                .args(["send", "--yes", "--no-discovery", &target(idx3)])
                .arg(&f),
        );
        if out.code == Some(0) {
            ok += 1;
            l1.wait_received();
        } else {
            eprintln!("send {i}: {}", out.describe());
        }
    }
    eprintln!(
        "IPv6 (fe80::/64): {ok} of 10 sends from h3 got in while h2 {held} silent sockets \
         (and replaced every one closed)"
    );
    assert!(ok >= 9, "only {ok} of 10");
    drop(flood);
}
