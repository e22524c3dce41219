//! Finding peers by name on a private LAN of network namespaces (3 hosts):
//! an alias given with `add` resolves through discovery by node id, `send`
//! to a name nobody has stops once every node has answered (and suggests
//! the close names), of two nodes with one name the pinned one is marked
//! and preferred, and `trust` tells a node seen on the network but never
//! met from a typo.
//!
//! Nothing waits by sleeping, and nothing asserts on how fast: a search
//! given `--timeout 600` that returns at all (each command has a minute)
//! stopped because the answers were in.

use localstream_scenarios::{Lan, assert_content, bins, names_in, random_bytes};

fn lan(hosts: usize) -> Option<Lan> {
    Lan::new(hosts, bins!())
}

/// The last line of `text`.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// `add studio h2:PORT` on h1, while h3 announces itself as `studio`: the
/// alias names h2's pinned id, so `send studio` uses h2 as soon as it
/// answers on mDNS, at the address it announces; `sessions`, `trust`
/// take the alias; with h2 gone, the address `add` stored is tried (never h3).
#[test]
fn an_alias_resolves_through_discovery_by_node_id() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l2 = h2.listen(&["--yes", "--name", "h2"]);
    let l3 = h3.listen(&["--yes", "--name", "studio"]);
    let at = format!("{}:{}", h2.addr, l2.port);
    let added = h1.localstream(&["add", "--yes", "studio", &at]);
    added.expect_code(0);
    assert_eq!(
        added.stdout,
        format!(
            "added h2 ({}) [{}] as 'studio': its key is pinned now, and `localstream send \
             studio FILE` reaches it (where discovery finds it, else at {at})\n",
            &l2.id[..8],
            l2.fingerprint
        ),
        "{}",
        added.describe()
    );
    let sessions = h1.localstream(&["sessions", "studio"]);
    sessions.expect_code(0);
    assert_eq!(
        sessions.stdout,
        format!(
            "h2 'studio' ({}) [{}]  new\n  no sessions recorded yet\n",
            l2.id, l2.fingerprint
        ),
        "{}",
        sessions.describe()
    );

    let data = random_bytes(121, 300_000);
    let file = h1.file("mix.wav", &data);
    let out = h1.run(
        h1.node()
            .args(["send", "--yes", "--timeout", "600", "studio"])
            .arg(&file),
    );
    out.expect_code(0);
    // Found by discovery (not from the store), and it is h2.
    assert!(
        out.stderr
            .contains(&format!("found h2 ({}) in ", &l2.id[..8])),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("did not answer"), "{}", out.describe());
    let (_, saved) = l2.wait_received();
    assert_eq!(saved, [l2.dir.join("mix.wav")]);
    assert_content(&saved[0], &data);
    assert!(
        names_in(&l3.dir).is_empty(),
        "h3 got {:?}",
        names_in(&l3.dir)
    );

    let sessions = h1.localstream(&["sessions", "studio"]);
    sessions.expect_code(0);
    let lines: Vec<&str> = sessions.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("h2 'studio' ({}) [{}]  known", l2.id, l2.fingerprint).as_str()),
        "{}",
        sessions.describe()
    );
    assert_eq!(lines.len(), 2, "one session: {}", sessions.describe());
    let trusted = h1.localstream(&["trust", "studio"]);
    trusted.expect_code(0);
    assert!(
        trusted
            .stdout
            .starts_with(&format!("trusted: h2 'studio' ({})", l2.id)),
        "{}",
        trusted.describe()
    );

    // h2 goes away: its stored address is tried, not the other `studio`.
    l2.interrupt();
    assert_eq!(l2.wait_exit(localstream_scenarios::STEP), Some(130));
    let out = h1.run(
        h1.node()
            .args(["send", "--yes", "--timeout", "600", "studio"])
            .arg(&file),
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "h2 ({}) did not answer on the network in ",
            &l2.id[..8]
        )) && out
            .stderr
            .contains(&format!("trying its last known address {at}")),
        "{}",
        out.describe()
    );
    assert!(
        last_line(&out.stderr).starts_with(&format!("localstream: cannot connect to {at}: ")),
        "{}",
        out.describe()
    );
    assert!(
        names_in(&l3.dir).is_empty(),
        "h3 got {:?}",
        names_in(&l3.dir)
    );
}

/// `send NAME` for a name no node has: it stops once every node has
/// answered (not after `--timeout 600`), lists the nodes on the network
/// and suggests the close names.
#[test]
fn a_name_nobody_has_stops_when_the_answers_are_in_and_suggests_close_ones() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let l1 = h1.listen(&["--yes", "--name", "h1"]);
    let l2 = h2.listen(&["--yes", "--name", "h2"]);
    let file = h3.file("x.bin", b"for nobody");
    for (typed, says) in [
        (
            "h4",
            "localstream: no peer named 'h4' (or with an id starting so) on eth0; on the \
             network: h1, h2 (did you mean h1 or h2?)",
        ),
        (
            "nosuch",
            "localstream: no peer named 'nosuch' (or with an id starting so) on eth0; on the \
             network: h1, h2",
        ),
    ] {
        let out = h3.run(
            h3.node()
                .args(["send", "--yes", "--timeout", "600", typed])
                .arg(&file),
        );
        eprintln!("`send {typed}` returned after {:?}", out.took);
        out.expect_code(1);
        assert_eq!(last_line(&out.stderr), says, "{}", out.describe());
    }
    assert!(names_in(&l1.dir).is_empty() && names_in(&l2.dir).is_empty());
}

/// h1 and h3 are both `box`; h2 has sent to h1 (by id), so h1 is pinned:
/// `peers` says which one `send box` picks, and it picks h1; once h2
/// blocks h1, `send box` is ambiguous again and its list marks h1 blocked.
#[test]
fn of_two_nodes_with_one_name_the_pinned_one_is_marked_and_preferred() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l1 = h1.listen(&["--yes", "--name", "box"]);
    let l3 = h3.listen(&["--yes", "--name", "box"]);
    let (id1, id3) = (l1.id.clone(), l3.id.clone());
    let first = h2.file("first.bin", &random_bytes(131, 5_000));
    h2.run(h2.node().args(["send", "--yes", &id1[..8]]).arg(&first))
        .expect_code(0);
    l1.wait_received();

    let peers = h2.localstream(&["peers", "--timeout", "2"]);
    peers.expect_code(0);
    let row = |id: &str| {
        peers
            .stdout
            .lines()
            .find(|l| l.contains(&id[..8]))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", peers.describe()))
            .to_owned()
    };
    assert!(row(&id1).contains(" known "), "{}", peers.describe());
    assert!(row(&id3).contains(" unpinned "), "{}", peers.describe());
    assert!(
        peers.stderr.contains(&format!(
            "2 peers are named box: `send box` picks the pinned one ({}); give the start of an \
             id for another\n",
            &id1[..8]
        )),
        "{}",
        peers.describe()
    );

    let data = random_bytes(132, 80_000);
    let file = h2.file("for-box.bin", &data);
    let out = h2.run(h2.node().args(["send", "--yes", "box"]).arg(&file));
    out.expect_code(0);
    let (_, saved) = l1.wait_received();
    assert_eq!(saved, [l1.dir.join("for-box.bin")]);
    assert_content(&saved[0], &data);
    assert!(
        names_in(&l3.dir).is_empty(),
        "h3 got {:?}",
        names_in(&l3.dir)
    );

    h2.localstream(&["block", &id1[..8]]).expect_code(0);
    let other = h2.file("other.bin", b"not for a blocked box");
    let out = h2.run(h2.node().args(["send", "--yes", "box"]).arg(&other));
    out.expect_code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.contains(
            &"localstream: 'box' matches 2 peers; say which one with the start of its id:"
        ),
        "{}",
        out.describe()
    );
    assert!(
        lines.contains(&format!("  box  {id1}  {}  (blocked here)", h1.addr).as_str()),
        "{}",
        out.describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("  box  {id3}  {}", h3.addr)) && !l.contains("here)")),
        "{}",
        out.describe()
    );
    assert_eq!(names_in(&l1.dir), ["first.bin", "for-box.bin"]);
    assert!(names_in(&l3.dir).is_empty());
}

/// `trust` for a node that `peers` shows but that was never met: it says
/// so, and how to meet it; a typo is just unknown.
#[test]
fn trust_of_a_node_seen_but_never_met_says_how_to_meet_it() {
    let Some(lan) = lan(3) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let l2 = h2.listen(&["--yes", "--name", "h2"]);
    let out = h1.localstream(&["trust", &l2.id[..4]]);
    out.expect_code(1);
    assert_eq!(
        out.stderr,
        format!(
            "localstream: h2 ({}) is on the network but you have not met it yet: send to it \
             once (`localstream send h2 FILE`), or `localstream add h2 {}`; then compare the \
             verification codes and trust it\n",
            &l2.id[..8],
            h2.addr
        ),
        "{}",
        out.describe()
    );
    let out = h1.localstream(&["trust", "nosuch"]);
    out.expect_code(1);
    assert!(
        out.stderr
            .starts_with("localstream: 'nosuch': no known peer matches"),
        "{}",
        out.describe()
    );
}
