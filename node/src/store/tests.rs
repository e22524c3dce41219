#![allow(clippy::unwrap_used)]

use super::model::{clip, decode_hex};
use super::*;
use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;

use uuid::Uuid;

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The node id bound to the key whose fingerprint is `[n; 32]` (a stored
/// entry is keyed by it: see the migration in `decode`).
fn id(n: u8) -> Uuid {
    Uuid::from_bytes(localstream_proto::node_id_for(&[n; 32]))
}

fn seen(n: u8, fp: u8, name: &str) -> Seen {
    Seen {
        node_id: id(n),
        fingerprint: [fp; 32],
        name: name.into(),
        mac: Some([n; 6]),
        addr: Some(SocketAddr::from(([192, 168, 1, n], 40_000))),
        from: None,
        localsend: false,
    }
}

fn end(outcome: Outcome) -> SessionEnd {
    SessionEnd {
        ended_ms: 2_000,
        files: 3,
        bytes: 12_345,
        resumed: 0,
        outcome,
        detail: String::new(),
    }
}

/// A store with one peer of each trust state and some history.
fn sample() -> StoreData {
    let mut data = StoreData::default();
    for (n, trust) in [
        (1, Trust::New),
        (2, Trust::Known),
        (3, Trust::Trusted),
        (4, Trust::Blocked),
    ] {
        assert_eq!(
            data.contact(&seen(n, n, &format!("peer {n}")), 100),
            Contact::First
        );
        assert!(data.set_trust(&id(n), trust));
    }
    let mut no_mac = seen(5, 5, "");
    no_mac.mac = None;
    no_mac.addr = Some("[fe80::1%3]:4000".parse().unwrap());
    data.contact(&no_mac, 100);
    assert!(data.begin_session(&id(2), SessionRecord::begin("aa01", Direction::Send, 1_000)));
    assert!(data.end_session(&id(2), "aa01", end(Outcome::Ok)));
    assert!(data.begin_session(
        &id(2),
        SessionRecord::begin("aa02", Direction::Receive, 3_000)
    ));
    data
}

fn write(store: &PeerStore, bytes: &[u8]) {
    fs::write(store.path(), bytes).unwrap();
}

fn json_of(data: &StoreData) -> String {
    String::from_utf8(encode(&mut data.clone(), MAX_STORE_BYTES).unwrap().unwrap()).unwrap()
}

#[test]
fn missing_file_is_empty_and_round_trip() {
    let h = home();
    let store = PeerStore::new(h.path());
    assert_eq!(store.path(), h.path().join(STORE_FILE));
    assert_eq!(store.load().unwrap(), StoreData::default());
    // An update that changes nothing writes nothing.
    store.update(|_| ()).unwrap();
    assert!(!store.path().exists());

    let data = sample();
    store.update(|d| *d = data.clone()).unwrap();
    let loaded = PeerStore::new(h.path()).load().unwrap();
    assert_eq!(loaded, data);
    assert_eq!(
        loaded.get(&id(5)).unwrap().addresses[0].to_string(),
        "[fe80::1%3]:4000"
    );
    let session = &loaded.get(&id(2)).unwrap().sessions[1];
    assert_eq!(
        (session.ended, session.outcome),
        (None, Outcome::Interrupted)
    );
    // No temporary files left behind.
    let mut names: Vec<_> = fs::read_dir(h.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [STORE_FILE, LOCK_FILE]);
}

#[test]
fn file_has_only_the_documented_keys() {
    let text = json_of(&sample());
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
    };
    let set = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(keys(&json), set(&["schema", "peers"]));
    assert_eq!(json["schema"], 1);
    let peer_keys = set(&[
        "node_id",
        "fingerprint",
        "mac",
        "names",
        "addresses",
        "trust",
        "first_seen",
        "last_seen",
        "sessions",
    ]);
    let session_keys = set(&[
        "id",
        "direction",
        "started",
        "ended",
        "files",
        "bytes",
        "outcome",
        "detail",
    ]);
    let mut sessions = 0;
    for peer in json["peers"].as_array().unwrap() {
        assert_eq!(keys(peer), peer_keys);
        for s in peer["sessions"].as_array().unwrap() {
            assert_eq!(keys(s), session_keys);
            sessions += 1;
        }
    }
    assert_eq!(sessions, 2);
    let peer = &json["peers"][1];
    assert_eq!(peer["node_id"], id(2).hyphenated().to_string());
    assert_eq!(peer["fingerprint"], "02".repeat(32));
    assert_eq!(peer["mac"], "02:02:02:02:02:02");
    assert_eq!(peer["addresses"][0], "192.168.1.2:40000");
    assert_eq!(peer["trust"], "known");
    assert_eq!(peer["sessions"][0]["outcome"], "ok");
    assert_eq!(peer["sessions"][0]["direction"], "send");
    assert!(peer["sessions"][1]["ended"].is_null());
    assert!(json["peers"][4]["mac"].is_null());
    assert!(json["peers"][4]["names"].as_array().unwrap().is_empty());
}

#[test]
fn unknown_fields_are_tolerated() {
    let h = home();
    let store = PeerStore::new(h.path());
    let mut json: serde_json::Value = serde_json::from_str(&json_of(&sample())).unwrap();
    json["future"] = serde_json::json!({"x": 1});
    json["peers"][0]["future"] = serde_json::json!([1, 2]);
    json["peers"][1]["sessions"][0]["future"] = serde_json::json!(null);
    write(&store, json.to_string().as_bytes());
    assert_eq!(store.load().unwrap(), sample());
}

#[test]
fn corruption_is_an_error_naming_the_file() {
    let good = json_of(&sample());
    let fp = "01".repeat(32);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"\x00\xffnot json".to_vec(), "expected"),
        ("empty", Vec::new(), "EOF"),
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "EOF",
        ),
        ("not an object", b"[]".to_vec(), "expected struct"),
        ("a number", b"1".to_vec(), "invalid type"),
        (
            "wrong schema",
            br#"{"schema":2,"peers":[]}"#.to_vec(),
            "schema 2 is not supported",
        ),
        ("no schema", br#"{"peers":[]}"#.to_vec(), "no schema number"),
        ("no peers", br#"{"schema":1}"#.to_vec(), "missing field"),
        (
            "bad fingerprint",
            good.replacen(&fp, "abcd", 1).into_bytes(),
            "64 hex",
        ),
        (
            "non-hex fingerprint",
            good.replacen(&fp, &"zz".repeat(32), 1).into_bytes(),
            "64 hex",
        ),
        (
            "bad uuid",
            good.replacen(&id(1).to_string(), "not-a-uuid", 1)
                .into_bytes(),
            "UUID",
        ),
        (
            "bad trust",
            good.replacen("\"trust\": \"new\"", "\"trust\": \"admin\"", 1)
                .into_bytes(),
            "unknown variant",
        ),
        (
            "bad mac",
            good.replacen("01:01:01:01:01:01", "01:01", 1).into_bytes(),
            "mac",
        ),
        (
            "bad address",
            good.replacen("192.168.1.1:40000", "nowhere", 1)
                .into_bytes(),
            "address",
        ),
        (
            "bad outcome",
            good.replacen("\"outcome\": \"ok\"", "\"outcome\": \"great\"", 1)
                .into_bytes(),
            "unknown variant",
        ),
        (
            "negative count",
            good.replacen("\"files\": 3", "\"files\": -3", 1)
                .into_bytes(),
            "invalid value",
        ),
        (
            "duplicate id",
            good.replace(&id(2).to_string(), &id(1).to_string())
                .replace(&"02".repeat(32), &"01".repeat(32))
                .into_bytes(),
            "appears twice",
        ),
    ];
    for (what, bytes, reason) in cases {
        let h = home();
        let store = PeerStore::new(h.path());
        write(&store, &bytes);
        let err = store.load().unwrap_err();
        let StoreError::Corrupt { path, reason: got } = &err else {
            panic!("{what}: {err:?}");
        };
        assert_eq!(path, store.path(), "{what}");
        assert!(got.contains(reason), "{what}: {got}");
        let msg = err.to_string();
        assert!(
            msg.contains(&store.path().display().to_string()),
            "{what}: {msg}"
        );
        assert!(msg.contains("move it aside"), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: {msg}");
        // update() neither calls f nor overwrites the file.
        let err = store
            .update(|_| panic!("f called on a corrupt store"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err:?}");
        assert_eq!(fs::read(store.path()).unwrap(), bytes, "{what}");
    }
}

#[test]
fn corrupt_reason_is_safe_for_a_terminal() {
    let h = home();
    let store = PeerStore::new(h.path());
    let good = json_of(&sample());
    write(
        &store,
        good.replacen("\"new\"", "\"\\u001b[2J\"", 1).as_bytes(),
    );
    let msg = store.load().unwrap_err().to_string();
    assert!(msg.contains("\\x1b[2J") && !msg.contains('\x1b'), "{msg}");
}

#[test]
fn directory_in_place_of_the_file_is_corrupt() {
    let h = home();
    let store = PeerStore::new(h.path());
    fs::create_dir(store.path()).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&store.path().display().to_string())
    );
    assert!(store.update(|d| d.contact(&seen(1, 1, "a"), 1)).is_err());
    assert!(store.path().is_dir());
}

#[test]
fn oversized_file_is_corrupt() {
    let h = home();
    let mut store = PeerStore::new(h.path());
    store.max_bytes = 4096;
    let mut big = br#"{"schema":1,"peers":[]}"#.to_vec();
    big.resize(4097, b' ');
    write(&store, &big);
    let err = store.load().unwrap_err();
    assert!(err.to_string().contains("larger than 4096 bytes"), "{err}");
    big.truncate(4096);
    write(&store, &big);
    assert_eq!(store.load().unwrap(), StoreData::default());
}

#[test]
fn sessions_are_shed_to_fit_the_size_limit() {
    let h = home();
    let mut store = PeerStore::new(h.path());
    store.max_bytes = 16 * 1024;
    store
        .update(|d| {
            d.contact(&seen(1, 1, "a"), 1);
            d.contact(&seen(2, 2, "b"), 1);
            for i in 0..MAX_SESSIONS {
                d.begin_session(
                    &id(1),
                    SessionRecord::begin(format!("{i:04x}"), Direction::Send, 0),
                );
            }
            d.set_trust(&id(2), Trust::Trusted);
        })
        .unwrap();
    assert!(fs::metadata(store.path()).unwrap().len() <= 16 * 1024);
    let data = store.load().unwrap();
    let sessions = &data.get(&id(1)).unwrap().sessions;
    assert!(
        !sessions.is_empty() && sessions.len() < MAX_SESSIONS,
        "{}",
        sessions.len()
    );
    assert_eq!(
        sessions.last().unwrap().id,
        format!("{:04x}", MAX_SESSIONS - 1)
    );
    assert_eq!(data.get(&id(2)).unwrap().trust, Trust::Trusted);

    // Pins are never dropped to make room: too many peers is an error.
    let h = home();
    let mut store = PeerStore::new(h.path());
    store.update(|d| d.contact(&seen(1, 1, "a"), 1)).unwrap();
    let len = fs::metadata(store.path()).unwrap().len();
    store.max_bytes = len;
    let before = fs::read(store.path()).unwrap();
    let err = store
        .update(|d| d.contact(&seen(3, 3, "c"), 1))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit, .. } if limit == len),
        "{err:?}"
    );
    assert_eq!(fs::read(store.path()).unwrap(), before);
}

#[test]
fn first_contact_pins_and_later_contacts_update() {
    let mut data = StoreData::default();
    assert_eq!(data.contact(&seen(1, 0xaa, "laptop"), 100), Contact::First);
    let p = data.get(&id(1)).unwrap();
    assert_eq!(
        (p.fingerprint, p.trust, p.first_seen, p.last_seen),
        ([0xaa; 32], Trust::New, 100, 100)
    );
    assert_eq!(p.names, ["laptop"]);

    let mut again = seen(1, 0xaa, " desk\x1b[2J top\n");
    again.mac = None;
    again.addr = Some("10.0.0.9:1".parse().unwrap());
    assert_eq!(data.contact(&again, 200), Contact::Known(Trust::New));
    let p = data.get(&id(1)).unwrap();
    assert_eq!(p.names, ["desk[2J top", "laptop"]);
    assert_eq!(p.addresses[0].to_string(), "10.0.0.9:1");
    assert_eq!(p.mac, Some([1; 6]), "an unannounced MAC keeps the old one");
    assert_eq!((p.first_seen, p.last_seen), (100, 200));

    // Names and addresses: newest first, deduplicated, capped.
    for i in 0..12u8 {
        let mut s = seen(1, 0xaa, &format!("n{}", i % 7));
        s.addr = Some(SocketAddr::from(([10, 0, 0, i % 10], 9)));
        data.contact(&s, 300);
    }
    data.contact(&seen(1, 0xaa, "n3"), 301);
    let p = data.get(&id(1)).unwrap();
    assert_eq!(p.names, ["n3", "n4", "n2", "n1", "n0"]);
    assert_eq!(p.addresses.len(), MAX_ADDRESSES);
    assert_eq!(p.addresses[0].to_string(), "192.168.1.1:40000");
    assert_eq!(p.addresses[1].to_string(), "10.0.0.1:9");
    assert_eq!(
        p.addresses.iter().collect::<BTreeSet<_>>().len(),
        MAX_ADDRESSES
    );
}

#[test]
fn a_changed_key_changes_nothing() {
    let mut data = sample();
    for n in 1..=4 {
        let before = data.clone();
        let mut imposter = seen(n, 0xee, "imposter");
        imposter.addr = Some("10.6.6.6:1".parse().unwrap());
        assert_eq!(
            data.contact(&imposter, 999),
            Contact::KeyChanged {
                pinned: [n; 32],
                presented: [0xee; 32]
            }
        );
        assert_eq!(data, before, "peer {n}");
    }
    // Only forget resets the pin.
    let old = data.forget(&id(3)).unwrap();
    assert_eq!(old.trust, Trust::Trusted);
    assert!(data.get(&id(3)).is_none());
    assert_eq!(data.forget(&id(3)), None);
    assert_eq!(
        data.contact(&seen(3, 0xee, "reinstalled"), 1000),
        Contact::First
    );
    let p = data.get(&id(3)).unwrap();
    assert_eq!(
        (p.fingerprint, p.trust, p.first_seen),
        ([0xee; 32], Trust::New, 1000)
    );
    assert!(p.sessions.is_empty());
}

#[test]
fn same_key_under_another_id_is_its_own_peer() {
    let mut data = StoreData::default();
    data.contact(&seen(1, 0xaa, "a"), 1);
    assert_eq!(data.contact(&seen(2, 0xaa, "b"), 2), Contact::First);
    assert_eq!(
        data.contact(&seen(2, 0xaa, "b"), 3),
        Contact::Known(Trust::New)
    );
    assert_eq!(data.peers().len(), 2);
    assert!(matches!(data.lookup("aaaa"), Err(Lookup::Ambiguous(c)) if c.len() == 2));
}

#[test]
fn sessions_and_promotion() {
    let mut data = sample();
    // Unknown peer or session: nothing recorded.
    assert!(!data.begin_session(&id(9), SessionRecord::begin("x", Direction::Send, 1)));
    assert!(!data.end_session(&id(1), "nope", end(Outcome::Ok)));
    assert_eq!(data.get(&id(1)).unwrap().trust, Trust::New);

    // Non-ok outcomes do not promote.
    for (i, outcome) in [
        Outcome::Refused,
        Outcome::Failed,
        Outcome::Incomplete,
        Outcome::Interrupted,
    ]
    .into_iter()
    .enumerate()
    {
        let sid = format!("f{i}");
        data.begin_session(
            &id(1),
            SessionRecord::begin(sid.clone(), Direction::Receive, 5),
        );
        assert!(data.end_session(&id(1), &sid, end(outcome)));
        assert_eq!(data.get(&id(1)).unwrap().trust, Trust::New);
    }
    data.begin_session(&id(1), SessionRecord::begin("ok1", Direction::Receive, 10));
    let s = data.get(&id(1)).unwrap().sessions.last().unwrap().clone();
    assert_eq!(
        (s.ended, s.files, s.bytes, s.outcome),
        (None, 0, 0, Outcome::Interrupted)
    );
    let mut finished = end(Outcome::Ok);
    finished.detail = format!("done\x07\u{202e} {}", "é".repeat(200));
    assert!(data.end_session(&id(1), "ok1", finished));
    let p = data.get(&id(1)).unwrap();
    assert_eq!(p.trust, Trust::Known);
    let s = p.sessions.last().unwrap();
    assert_eq!(
        (s.ended, s.files, s.bytes, s.outcome),
        (Some(2_000), 3, 12_345, Outcome::Ok)
    );
    assert!(
        s.detail.starts_with("done é") && s.detail.len() <= MAX_DETAIL_BYTES,
        "{}",
        s.detail
    );

    // Trusted and blocked are never changed by a session.
    for (n, trust) in [(3, Trust::Trusted), (4, Trust::Blocked)] {
        data.begin_session(&id(n), SessionRecord::begin("s", Direction::Send, 1));
        assert!(data.end_session(&id(n), "s", end(Outcome::Ok)));
        assert_eq!(data.get(&id(n)).unwrap().trust, trust);
    }

    // Beginning the same session twice replaces the record.
    let n = data.get(&id(2)).unwrap().sessions.len();
    data.begin_session(&id(2), SessionRecord::begin("aa02", Direction::Receive, 7));
    let p = data.get(&id(2)).unwrap();
    assert_eq!((p.sessions.len(), p.sessions[n - 1].started), (n, 7));
}

#[test]
fn session_history_is_capped() {
    let mut data = StoreData::default();
    data.contact(&seen(1, 1, "a"), 1);
    for i in 0..MAX_SESSIONS + 37 {
        data.begin_session(
            &id(1),
            SessionRecord::begin(format!("{i:x}"), Direction::Send, i as u64),
        );
    }
    let sessions = &data.get(&id(1)).unwrap().sessions;
    assert_eq!(sessions.len(), MAX_SESSIONS);
    assert_eq!(sessions[0].id, format!("{:x}", 37));
    assert_eq!(
        sessions.last().unwrap().id,
        format!("{:x}", MAX_SESSIONS + 36)
    );
}

#[test]
fn trust_commands() {
    let mut data = sample();
    assert!(data.set_trust(&id(1), Trust::Trusted));
    assert_eq!(data.get(&id(1)).unwrap().trust, Trust::Trusted);
    assert!(data.set_trust(&id(1), Trust::Blocked));
    assert_eq!(
        data.contact(&seen(1, 1, "x"), 5),
        Contact::Known(Trust::Blocked)
    );
    assert!(!data.set_trust(&id(42), Trust::Trusted));
    assert_eq!(Trust::Blocked.to_string(), "blocked");
}

fn lookup_store() -> StoreData {
    let mut data = StoreData::default();
    let peers = [
        ("12345678-9abc-4def-8123-456789abcdef", 0xab, "Box"),
        ("12349999-0000-4000-8000-000000000000", 0xcd, "box"),
        ("beef0000-0000-4000-8000-000000000000", 0x11, "laptop"),
        ("77770000-0000-4000-8000-000000000000", 0x22, "beef"),
    ];
    for (uuid, fp, name) in peers {
        let mut s = seen(0, fp, name);
        s.node_id = Uuid::parse_str(uuid).unwrap();
        data.contact(&s, 1);
    }
    data
}

fn found(data: &StoreData, query: &str) -> String {
    data.lookup(query).unwrap().name().unwrap().to_owned()
}

#[test]
fn lookup_by_id_fingerprint_and_name() {
    let data = lookup_store();
    // Id: full, prefix, hyphens and case ignored.
    assert_eq!(found(&data, "12345678-9abc-4def-8123-456789abcdef"), "Box");
    assert_eq!(found(&data, "123456789ABC4D"), "Box");
    assert_eq!(found(&data, "12345"), "Box");
    assert_eq!(found(&data, "1234-5"), "Box");
    // Fingerprint prefix, `:` ignored.
    assert_eq!(found(&data, "abab"), "Box");
    assert_eq!(found(&data, "CD:CD"), "box");
    // Latest name: exact beats case-insensitive.
    assert_eq!(found(&data, "Box"), "Box");
    assert_eq!(found(&data, "box"), "box");
    assert_eq!(found(&data, "LAPTOP"), "laptop");
    assert_eq!(found(&data, " laptop "), "laptop");
    // Ambiguous: shared id prefix; a name that is another peer's id prefix.
    let Err(Lookup::Ambiguous(c)) = data.lookup("1234") else {
        panic!()
    };
    assert_eq!(
        c.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
        ["Box", "box"]
    );
    let err = data.lookup("beef").unwrap_err();
    assert!(matches!(&err, Lookup::Ambiguous(c) if c.len() == 2));
    assert!(
        err.to_string()
            .starts_with("2 known peers match: beef0000-"),
        "{err}"
    );
    assert!(matches!(data.lookup("BOX"), Err(Lookup::Ambiguous(c)) if c.len() == 2));
    // Not found; short prefixes do not match ids or fingerprints.
    for q in [
        "",
        "  ",
        "123",
        "ab",
        "ffff",
        "nobody",
        "12345678-9abc-4def-8123-000000000000",
    ] {
        assert_eq!(data.lookup(q).unwrap_err(), Lookup::NotFound, "{q:?}");
    }
    // Only the latest name counts.
    let mut data = data;
    let mut s = seen(0, 0x11, "renamed");
    s.node_id = Uuid::parse_str("beef0000-0000-4000-8000-000000000000").unwrap();
    data.contact(&s, 2);
    assert_eq!(data.lookup("laptop").unwrap_err(), Lookup::NotFound);
    assert_eq!(found(&data, "renamed"), "renamed");
}

#[test]
fn entries_keyed_by_an_old_random_id_move_to_the_id_bound_to_their_key() {
    let h = home();
    let store = PeerStore::new(h.path());
    store.update(|d| d.contact(&seen(1, 1, "a"), 1)).unwrap();
    let bytes = fs::read(store.path()).unwrap();
    let old = Uuid::from_bytes([0x42; 16]).to_string();
    let text = String::from_utf8(bytes)
        .unwrap()
        .replace(&id(1).to_string(), &old);
    fs::write(store.path(), text).unwrap();
    let data = store.load().unwrap();
    assert_eq!(data.peers().len(), 1);
    assert_eq!(data.peers()[0].node_id, id(1));
    assert_eq!(data.get(&id(1)).map(|e| e.fingerprint), Some([1; 32]));
}

#[test]
fn two_old_entries_of_one_key_merge_and_a_block_is_kept() {
    let h = home();
    let store = PeerStore::new(h.path());
    store
        .update(|d| {
            d.contact(&seen(1, 1, "a"), 1);
            d.contact(&seen(2, 2, "b"), 5);
            d.set_trust(&id(2), Trust::Blocked);
        })
        .unwrap();
    // As an old store could have it: two random ids, one key, the blocked
    // entry second.
    let text = String::from_utf8(fs::read(store.path()).unwrap())
        .unwrap()
        .replace(
            &id(1).to_string(),
            &Uuid::from_bytes([0x41; 16]).to_string(),
        )
        .replace(
            &id(2).to_string(),
            &Uuid::from_bytes([0x42; 16]).to_string(),
        )
        .replace(&"02".repeat(32), &"01".repeat(32));
    fs::write(store.path(), text).unwrap();
    let data = store.load().unwrap();
    assert_eq!(data.peers().len(), 1);
    let e = &data.peers()[0];
    assert_eq!(e.node_id, id(1));
    assert_eq!(e.trust, Trust::Blocked, "the block survives the merge");
    assert_eq!((e.first_seen, e.last_seen), (1, 5));
    assert!(e.names.contains(&"a".to_owned()) && e.names.contains(&"b".to_owned()));
}

#[test]
fn concurrent_updates_lose_nothing() {
    const THREADS: usize = 8;
    const EACH: usize = 25;
    let h = home();
    PeerStore::new(h.path())
        .update(|d| d.contact(&seen(1, 1, "a"), 1))
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let home = h.path();
            scope.spawn(move || {
                for i in 0..EACH {
                    let store = PeerStore::new(home);
                    let ok = store
                        .update(|d| {
                            let record =
                                SessionRecord::begin(format!("{t:02x}{i:02x}"), Direction::Send, 1);
                            d.begin_session(&id(1), record)
                        })
                        .unwrap();
                    assert!(ok);
                }
            });
        }
    });
    let bytes = fs::read(h.path().join(STORE_FILE)).unwrap();
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
    let data = PeerStore::new(h.path()).load().unwrap();
    let ids: BTreeSet<_> = data
        .get(&id(1))
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(ids.len(), THREADS * EACH);
}

#[cfg(unix)]
#[test]
fn held_lock_times_out_without_writing() {
    use rustix::fs::{FlockOperation, flock};
    let h = home();
    let mut store = PeerStore::new(h.path());
    store.update(|d| d.contact(&seen(1, 1, "a"), 1)).unwrap();
    let before = fs::read(store.path()).unwrap();
    let holder = File::open(h.path().join(LOCK_FILE)).unwrap();
    flock(&holder, FlockOperation::LockExclusive).unwrap();
    store.lock_timeout = Duration::from_millis(50);
    let err = store
        .update(|d| d.set_trust(&id(1), Trust::Trusted))
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains(LOCK_FILE), "{err}");
    assert_eq!(fs::read(store.path()).unwrap(), before);
    // Readers are not blocked; the lock is usable again once released.
    assert_eq!(store.load().unwrap().get(&id(1)).unwrap().trust, Trust::New);
    drop(holder);
    assert!(
        store
            .update(|d| d.set_trust(&id(1), Trust::Trusted))
            .unwrap()
    );
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let h = home();
    let store = PeerStore::new(h.path());
    store.update(|d| d.contact(&seen(1, 1, "a"), 1)).unwrap();
    // Rewriting a file someone made world-readable makes it private again.
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
    store.update(|d| d.contact(&seen(2, 2, "b"), 1)).unwrap();
    for name in [STORE_FILE, LOCK_FILE] {
        let mode = fs::metadata(h.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn missing_home_is_an_io_error_naming_it() {
    let h = home();
    let store = PeerStore::new(&h.path().join("absent"));
    assert_eq!(store.load().unwrap(), StoreData::default());
    let err = store
        .update(|d| d.contact(&seen(1, 1, "a"), 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn helpers() {
    assert_eq!(decode_hex::<2>("aBcD"), Some([0xab, 0xcd]));
    assert_eq!(decode_hex::<2>("+bcd"), None);
    assert_eq!(decode_hex::<2>("abc"), None);
    assert_eq!(decode_hex::<1>("é"), None);
    assert_eq!(clip("a\nb\u{200f}c", 10), "abc");
    assert_eq!(clip("ééé", 5), "éé");
    assert!(now_secs() > 1_600_000_000);
    assert!(now_ms() / 1000 >= now_secs() - 1);
}

#[test]
fn a_file_read_again_is_decoded_again_only_when_it_changed() {
    let h = home();
    let store = PeerStore::new(h.path());
    let json = json_of(&sample());
    write(&store, json.as_bytes());
    assert_eq!(store.load().unwrap(), sample());
    // A clone shares what was read; the same bytes give the same data.
    assert_eq!(store.clone().load().unwrap(), sample());
    // Changed in place, same size and times a moment apart: "trusted" and
    // "blocked" have the same length. The new content is what counts.
    let blocked = json.replacen("\"trusted\"", "\"blocked\"", 1);
    assert_eq!(blocked.len(), json.len());
    write(&store, blocked.as_bytes());
    let data = store.load().unwrap();
    assert_eq!(data.get(&id(3)).unwrap().trust, Trust::Blocked);
    // And a file turned corrupt is corrupt, whatever was read before.
    write(&store, &json.as_bytes()[..json.len() / 2]);
    assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
}
