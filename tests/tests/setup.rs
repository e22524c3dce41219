//! Settings and addresses on a LAN of network namespaces: a configured
//! interface that is not there (Wi-Fi off) is left out with a warning
//! instead of failing `peers`, `listen` and `send`; `send` takes an IPv6
//! link-local address scoped by interface name.

use localstream_scenarios::{Lan, assert_content, bins};

fn lan(hosts: usize) -> Option<Lan> {
    Lan::new(hosts, bins!())
}

#[test]
fn an_interface_that_is_not_there_is_left_out_with_a_warning() {
    let Some(lan) = lan(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    // What a user types: two names in one argument; wlan0 is off (absent).
    let set = h2.localstream(&["config", "set", "interfaces", "eth0 wlan0"]);
    set.expect_code(0);
    assert!(
        set.stderr.ends_with(
            "warning: this machine has no network interface wlan0 up now (switched off, or a \
             typo?); kept: discovery leaves it out until it is there\n"
        ),
        "{}",
        set.describe()
    );
    let shown = h2.localstream(&["config", "show"]);
    assert!(
        shown
            .stdout
            .contains("\ninterfaces = [\"eth0\", \"wlan0\"]\n"),
        "{}",
        shown.describe()
    );

    let mut l1 = h1.listen(&["--yes", "--name", "h1"]);
    let warning = "warning: network interface wlan0 is not up here now: looking on eth0 only\n";
    let peers = h2.localstream(&["peers", "--timeout", "2"]);
    peers.expect_code(0);
    assert!(peers.stderr.contains(warning), "{}", peers.describe());
    assert!(
        peers.stdout.lines().any(|l| l.contains("h1")),
        "{}",
        peers.describe()
    );

    // A listener with the setting announces on eth0.
    let l2 = h2.listen(&["--yes", "--name", "h2"]);
    assert_eq!(l2.discovery, "eth0");
    drop(l2);

    let f = h2.file("by-name.txt", b"found on eth0 alone");
    let sent = h2.run(h2.node().args(["send", "--yes", "h1"]).arg(&f));
    sent.expect_code(0);
    assert!(sent.stderr.contains(warning), "{}", sent.describe());
    l1.wait_received();
    assert_content(&l1.dir.join("by-name.txt"), b"found on eth0 alone");

    // Only absent interfaces: the command fails and says which.
    h2.localstream(&["config", "set", "interfaces", "wlan0,wlan1"])
        .expect_code(0);
    let none = h2.localstream(&["peers"]);
    none.expect_code(1);
    assert_eq!(
        none.stderr,
        "localstream: discovery: none of the network interfaces wlan0, wlan1 is up with an \
         address (interfaces: eth0, lo)\n",
        "{}",
        none.describe()
    );
}

#[test]
fn send_reaches_a_link_local_address_scoped_by_interface_name() {
    let Some(lan) = lan(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let mut l1 = h1.listen(&["--yes", "--name", "h1", "--no-discovery", "--bind", "::"]);
    let Some((ll, _)) = h1.link_local() else {
        panic!("h1 has no IPv6 link-local address");
    };
    let port = l1.port;
    let target = format!("[{ll}%eth0]:{port}");
    let f = h2.file("scoped.txt", target.as_bytes());
    let out = h2.run(
        h2.node()
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&f),
    );
    out.expect_code(0);
    l1.wait_received();
    assert_content(&l1.dir.join("scoped.txt"), target.as_bytes());
    // An interface this host does not have: a usage error before any packet.
    let f = h2.file("nowhere.txt", b"x");
    let out = h2.run(
        h2.node()
            .args(["send", "--yes", "--no-discovery", &format!("{ll}%wlan0")])
            .arg(&f),
    );
    out.expect_code(2);
    assert!(
        out.stderr.starts_with(
            "localstream: no network interface named 'wlan0' for the address's scope (interfaces: "
        ),
        "{}",
        out.describe()
    );
}
