//! The web UI in a real browser: headless Chromium, driven over WebDriver,
//! inside a host of a private LAN of network namespaces, against real
//! `localstream` nodes (see `localstream_scenarios::browser` for how the
//! browser gets into the host's namespace).
//!
//! Each scenario asserts on what the page shows (the landmarks of
//! `docs/ui-api.md`) and on what reached the disk (file bytes), and on the
//! other node's exit codes and messages. Every wait polls with a deadline;
//! a failure prints the page's text and saves a screenshot.
//!
//! With `LOCALSTREAM_SCREENSHOTS=DIR`, the scenarios also save the pictures
//! of the documentation into DIR (`ui-peers.png`, `ui-offer.png`,
//! `ui-transfers.png`, `ui-history.png`, `ui-trust.png`, `ui-settings.png`):
//!
//! ```sh
//! LOCALSTREAM_SCREENSHOTS=$PWD/docs cargo test -p localstream-scenarios --test ui
//! ```
//!
//! Needs root (namespaces) and `chromium` + `chromium-driver`; without them
//! the tests skip loudly (or fail, with `LOCALSTREAM_REQUIRE_NETNS=1` /
//! `LOCALSTREAM_REQUIRE_BROWSER=1`).

use std::path::Path;
use std::time::{Duration, Instant};

use localstream_scenarios::browser::{self, Browser, UiNode};
use localstream_scenarios::{
    Host, Lan, STEP, assert_content, bins, names_in, poll_until, random_bytes,
};
use serde_json::json;

/// The views of the page, as the navigation names them.
const VIEWS: [&str; 5] = ["peers", "transfers", "history", "trust", "settings"];

/// A LAN of `hosts` hosts, when both a browser and namespaces are here.
fn setup(hosts: usize) -> Option<Lan> {
    if !browser::available() {
        return None;
    }
    Lan::new(hosts, bins!())
}

/// `0421 9377 0615`: three groups of four digits.
fn is_code(s: &str) -> bool {
    let groups: Vec<&str> = s.split(' ').collect();
    groups.len() == 3
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// The verification code a command printed (`... verification code 0421 9377 0615 ...`).
fn code_in(text: &str) -> Option<String> {
    text.match_indices("erification code").find_map(|(at, m)| {
        let rest = text[at + m.len()..].trim_start_matches([':', ' ']);
        let code: String = rest.chars().take(14).collect();
        is_code(&code).then_some(code)
    })
}

/// The selector of the card of peer `id` in the peers view.
fn card(id: &str) -> String {
    format!(".peer[data-peer-id=\"{id}\"]")
}

/// The selector of the row of peer `id` in the trust view.
fn trust_row(id: &str) -> String {
    format!(".trust-row[data-peer-id=\"{id}\"]")
}

/// Scenario 1: a node found by discovery shows up in the peers view; a file
/// picked on its card goes out after the first-contact code is confirmed
/// in the page, arrives byte-identical, and the transfers, history and
/// trust views say so.
#[test]
fn a_file_picked_in_the_page_reaches_a_peer_found_on_the_lan() {
    let started = Instant::now();
    let Some(lan) = setup(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let mut l2 = h2.listen(&["--yes", "--name", "h2"]);
    let node = UiNode::start(h1, &[]);
    assert_eq!(
        node.listener.discovery, "eth0",
        "h1 looks for peers on eth0"
    );
    let b = Browser::start(h1);
    b.open_ui(&node.ui, "h1");

    // The header is this node.
    b.wait_text("#node-id", &node.listener.id[..8]);
    assert_eq!(
        b.text("#node-fingerprint").as_deref(),
        Some(node.listener.fingerprint.as_str())
    );
    assert_eq!(
        b.text("#node-dir").as_deref(),
        Some(node.listener.dir.display().to_string().as_str())
    );

    // h2 appears, by discovery, as a node never met.
    let c2 = card(&l2.id);
    b.wait_text(&format!("{c2} .peer-name"), "h2");
    b.wait_text(&format!("{c2} .peer-trust"), "new");
    assert_eq!(
        b.text(&format!("{c2} .peer-id")).as_deref(),
        Some(&l2.id[..8])
    );
    let at = format!("{}:{}", h2.addr, l2.port);
    let addresses = b.text(&format!("{c2} .peer-addresses")).unwrap_or_default();
    assert!(
        addresses.contains(&at),
        "h2's card lists {addresses:?}, not {at}"
    );
    assert_eq!(
        b.count(&format!("{c2} .peer-first-contact")),
        1,
        "first contact is marked"
    );
    assert_eq!(b.count(".peer"), 1, "h1 lists h2 only (never itself)");
    b.doc_screenshot("peers");

    // A file picked on h2's card: the page uploads it to the node, which
    // sends it; first contact, so the page asks to compare the code.
    let data = random_bytes(101, 512 * 1024 + 77);
    let file = h1.file("picked.bin", &data);
    b.pick_files(
        &format!("{c2} input[type=file].peer-pick"),
        &[file.as_path()],
    );
    b.wait_dialog("dialog#confirm-dialog", true);
    let code = b.wait_text_matching(
        "#confirm-dialog .confirm-code",
        "a verification code",
        is_code,
    );
    let who = b.text("#confirm-dialog .confirm-peer").unwrap_or_default();
    assert!(who.contains("h2"), "the confirm dialog names {who:?}");
    b.click("#confirm-dialog button.confirm-yes");
    b.wait_dialog("dialog#confirm-dialog", false);

    let (head, saved) = l2.wait_received();
    assert!(head.starts_with("received 1 file"), "{head}");
    assert_eq!(saved, [l2.dir.join("picked.bin")]);
    assert_content(&saved[0], &data);
    assert_eq!(names_in(&l2.dir), ["picked.bin"]);
    // The receiver computed the same code on its side.
    let printed = format!("{}\n{}", l2.stdout.join("\n"), l2.stderr());
    assert_eq!(
        code_in(&printed).as_deref(),
        Some(code.as_str()),
        "h2 printed another code than the page showed ({code}):\n{printed}"
    );

    // The transfers view: done, 100 %, the file listed.
    b.show("transfers");
    let t = ".transfer[data-transfer-id]";
    b.wait_text(&format!("{t} .transfer-percent"), "100 %");
    b.wait_text(&format!("{t} .transfer-state"), "done");
    assert_eq!(b.count(t), 1, "one transfer");
    assert_eq!(
        b.text(&format!("{t} .transfer-peer")).as_deref(),
        Some("h2")
    );
    assert_eq!(
        b.text(&format!("{t} .transfer-code")).as_deref(),
        Some(code.as_str())
    );
    let files = b.texts(&format!("{t} ul.transfer-files > li"));
    assert!(
        files.len() == 1 && files[0].contains("picked.bin"),
        "transfer files: {files:?}"
    );
    b.doc_screenshot("transfers");

    // h2 is pinned now: known, no longer a first contact.
    b.show("peers");
    b.wait_text(&format!("{c2} .peer-trust"), "known");
    b.wait_until("the first-contact marker to go", STEP, |b| {
        b.count(&format!("{c2} .peer-first-contact")) == 0
    });

    // History: one session with h2, sent, ok.
    b.show("history");
    let hist = format!(".history-peer[data-peer-id=\"{}\"]", l2.id);
    b.wait_text(&format!("{hist} .history-name"), "h2");
    b.wait_text(&format!("{hist} tr.session .session-outcome"), "ok");
    assert_eq!(
        b.texts(&format!("{hist} tr.session")).len(),
        1,
        "one session"
    );
    assert_eq!(
        b.text(&format!("{hist} tr.session .session-files"))
            .as_deref(),
        Some("1")
    );

    // Trust: h2 known, with its actions.
    b.show("trust");
    let row = trust_row(&l2.id);
    b.wait_text(&format!("{row} .trust-state"), "known");
    for action in ["do-trust", "do-untrust", "do-block", "do-forget"] {
        assert_eq!(
            b.count(&format!("{row} button.{action}")),
            1,
            "no {action} button"
        );
    }

    // Settings: one field per setting.
    b.show("settings");
    b.wait_element("form#settings-form input[name=\"name\"]");
    b.wait_element("form#settings-form [name=\"port\"]");
    b.doc_screenshot("settings");

    b.assert_no_console_errors();
    eprintln!("scenario 1 took {:?}", started.elapsed());
}

/// Scenario 2: offers from h2 (`send` by address) are answered in h1's
/// page. The dialog shows the code the sender printed and the file list;
/// accept delivers the bytes, reject makes the sender fail and writes
/// nothing, accept-and-trust marks the peer trusted, whose next offer then
/// needs no question.
#[test]
fn incoming_offers_are_accepted_rejected_and_trusted_in_the_page() {
    let started = Instant::now();
    let Some(lan) = setup(2) else { return };
    let (h1, h2) = (lan.host(1), lan.host(2));
    let node = UiNode::start(h1, &["--no-discovery"]);
    let target = node.target(h1);
    let inbox = node.listener.dir.clone();
    let id2 = h2.id();
    let b = Browser::start(h1);
    b.open_ui(&node.ui, "h1");
    let send = |file: &Path| {
        h2.spawn(
            h2.node()
                .args(["send", "--yes", "--no-discovery", &target])
                .arg(file),
        )
    };
    let files_shown = |b: &Browser| b.texts("#offer-dialog ul.offer-files > li .offer-file-path");

    // 1. Accept: the sender's code and the file are on the screen.
    let data = random_bytes(201, 200_000);
    let report = h2.file("report.txt", &data);
    let mut sender = send(&report);
    b.wait_dialog("dialog#offer-dialog", true);
    let mut code = None;
    if !poll_until(STEP, || {
        code = code_in(&sender.stderr());
        code.is_some()
    }) {
        sender.fail("no verification code on stderr");
    }
    let code = code.unwrap();
    b.wait_text("#offer-dialog .offer-code", &code);
    b.wait_until("the offered file", STEP, |b| {
        files_shown(b) == ["report.txt"]
    });
    let peer = b.text("#offer-dialog .offer-peer").unwrap_or_default();
    assert!(peer.contains("h2"), "the offer names {peer:?}");
    assert_eq!(
        b.text("#offer-dialog .offer-fingerprint").as_deref(),
        Some(id2.fingerprint.as_str())
    );
    b.doc_screenshot("offer");
    b.click("#offer-dialog button.offer-accept");
    b.wait_dialog("dialog#offer-dialog", false);
    assert_eq!(sender.wait_exit(STEP), Some(0), "{}", sender.stderr());
    assert_content(&inbox.join("report.txt"), &data);
    b.show("transfers");
    b.wait_text(".transfer[data-transfer-id] .transfer-percent", "100 %");
    // The receiver pinned h2, and the completed session made it known in
    // the store; the page must say so too. (Checked without stopping the
    // scenario, so that one stale view does not hide the rest.)
    let mut wrong = Vec::new();
    let store_says =
        || stored(h1, &id2.id).map(|p| p["trust"].as_str().unwrap_or_default().to_owned());
    assert!(
        poll_until(STEP, || store_says().as_deref() == Some("known")),
        "h1's store does not have h2 as known: {:?}",
        stored(h1, &id2.id)
    );
    b.show("trust");
    let state = format!("{} .trust-state", trust_row(&id2.id));
    b.wait_element(&state);
    if !b.try_wait_until(Duration::from_secs(10), |b| {
        b.text(&state).as_deref() == Some("known")
    }) {
        wrong.push(b.report(&format!(
            "after an accepted offer h1's store has h2 as \"known\", but the trust view shows {:?}",
            b.text(&state)
        )));
    }

    // 2. Reject: the sender is told, nothing is written. A folder with a
    // file and an empty folder is offered as one file and two folders.
    let unwanted = h2.file("unwanted.txt", &random_bytes(202, 50_000));
    let boxed = unwanted.with_file_name("box");
    std::fs::create_dir_all(boxed.join("empty")).unwrap();
    std::fs::rename(&unwanted, boxed.join("unwanted.txt")).unwrap();
    let mut sender = send(&boxed);
    b.wait_dialog("dialog#offer-dialog", true);
    b.wait_until("the second offer's entries", STEP, |b| {
        let mut shown = files_shown(b);
        shown.sort();
        shown == ["box", "box/empty", "box/unwanted.txt"]
    });
    let summary = b.text("#offer-dialog .offer-summary").unwrap_or_default();
    assert!(
        summary.starts_with("1 file and 2 folders, "),
        "the offer's summary: {summary:?}"
    );
    let sizes = b.texts("#offer-dialog ul.offer-files > li .offer-file-size");
    assert_eq!(
        sizes.iter().filter(|s| *s == "folder").count(),
        2,
        "each folder says so: {sizes:?}"
    );
    b.click("#offer-dialog button.offer-reject");
    b.wait_dialog("dialog#offer-dialog", false);
    let exit = sender.wait_exit(STEP);
    let err = sender.stderr();
    assert_eq!(exit, Some(1), "a rejected send fails:\n{err}");
    assert!(
        err.contains("declined") || err.contains("refused"),
        "the sender does not say it was refused:\n{err}"
    );
    assert_eq!(
        names_in(&inbox),
        ["report.txt"],
        "the rejected file was written"
    );

    // 3. Accept and trust: delivered, and h2 is trusted.
    let data3 = random_bytes(203, 70_000);
    let trusted = h2.file("trusted.txt", &data3);
    let mut sender = send(&trusted);
    b.wait_dialog("dialog#offer-dialog", true);
    b.wait_until("the third offer's file", STEP, |b| {
        files_shown(b) == ["trusted.txt"]
    });
    b.click("#offer-dialog button.offer-trust");
    b.wait_dialog("dialog#offer-dialog", false);
    assert_eq!(sender.wait_exit(STEP), Some(0), "{}", sender.stderr());
    assert_content(&inbox.join("trusted.txt"), &data3);
    b.show("trust");
    b.wait_text(&format!("{} .trust-state", trust_row(&id2.id)), "trusted");

    // 4. A trusted peer's offer needs no answer.
    let data4 = random_bytes(204, 10_000);
    let again = h2.file("again.txt", &data4);
    h2.run(
        h2.node()
            .args(["send", "--yes", "--no-discovery", &target])
            .arg(&again),
    )
    .expect_code(0);
    assert_content(&inbox.join("again.txt"), &data4);
    assert!(
        !b.dialog_open("dialog#offer-dialog"),
        "a trusted peer was asked about"
    );
    assert_eq!(
        names_in(&inbox),
        ["again.txt", "report.txt", "trusted.txt"],
        "what h1 received"
    );

    // History: the four sessions, newest first, as the store has them (once
    // the last one is recorded as ended).
    let ended = || {
        stored(h1, &id2.id).map_or(0, |p| {
            p["sessions"]
                .as_array()
                .map_or(0, |s| s.iter().filter(|s| !s["ended"].is_null()).count())
        })
    };
    assert!(
        poll_until(STEP, || ended() == 4),
        "{:?}",
        stored(h1, &id2.id)
    );
    b.show("history");
    let hist = format!(".history-peer[data-peer-id=\"{}\"]", id2.id);
    b.wait_text(&format!("{hist} .history-name"), "h2");
    b.wait_until("four sessions", STEP, |b| {
        b.count(&format!("{hist} tr.session")) == 4
    });
    assert_eq!(
        b.texts(&format!("{hist} tr.session .session-outcome")),
        ["ok", "ok", "refused", "ok"],
        "outcomes, newest first"
    );
    b.doc_screenshot("history");
    b.show("trust");
    b.wait_text(&format!("{} .trust-state", trust_row(&id2.id)), "trusted");
    b.doc_screenshot("trust");

    b.assert_no_console_errors();
    eprintln!("scenario 2 took {:?}", started.elapsed());
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// What `localstream sessions --json` on `host` says about peer `id` (its
/// trust, its sessions), if the store has it.
fn stored(host: &Host, id: &str) -> Option<serde_json::Value> {
    let out = host.localstream(&["sessions", "--json"]);
    out.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("sessions --json: {e}\n{}", out.describe()));
    v.as_array()?.iter().find(|p| p["id"] == id).cloned()
}

/// `hex` with every digit replaced by its complement (so every digit differs).
fn forged(fingerprint: &str) -> String {
    let hex: String = fingerprint.chars().filter(|&c| c != ':').collect();
    assert_eq!(hex.len(), 16, "a short fingerprint: {fingerprint:?}");
    hex.chars()
        .map(|c| {
            char::from_digit(15 - c.to_digit(16).expect("a hex digit"), 16).expect("a hex digit")
        })
        .collect()
}

/// Scenario 3: h1 pinned h2. An announcement of h2's id with another key
/// makes the page show CHANGED on h2 (peers and trust views, sending off);
/// a node with another key under h2's name, from h2's address, is refused
/// and the page raises a danger banner.
#[test]
fn a_changed_key_is_shown_loudly() {
    let started = Instant::now();
    let Some(lan) = setup(3) else { return };
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    let mut l2 = h2.listen(&["--yes", "--name", "h2"]);
    let (id2, fp2) = (l2.id.clone(), l2.fingerprint.clone());

    // h1 pins h2: a first transfer, before the UI starts.
    let first = h1.file("first.txt", b"pins h2 on h1");
    h1.run(
        h1.node()
            .args([
                "send",
                "--yes",
                "--no-discovery",
                &format!("{}:{}", h2.addr, l2.port),
            ])
            .arg(&first),
    )
    .expect_code(0);
    let (_, saved) = l2.wait_received();
    assert_content(&saved[0], b"pins h2 on h1");

    let node = UiNode::start(h1, &[]);
    let inbox = node.listener.dir.clone();
    let b = Browser::start(h1);
    b.open_ui(&node.ui, "h1");
    let c2 = card(&id2);
    b.wait_text(&format!("{c2} .peer-trust"), "known");
    b.wait_js(
        "h2 to be online",
        "!document.querySelector(arguments[0]).classList.contains('offline')",
        vec![json!(c2)],
    );

    // h2 leaves (its goodbye reaches h1), and a forged record on h3 claims
    // h2's id and name with another key.
    l2.interrupt();
    assert_eq!(l2.wait_exit(STEP), Some(130), "Ctrl-C exits 130");
    b.wait_js(
        "h2 to go offline",
        "document.querySelector(arguments[0]).classList.contains('offline')",
        vec![json!(c2)],
    );
    let fake_fp = forged(&fp2);
    let _fake = h3.fake(
        &id2.replace('-', ""),
        9,
        &[("v", "1"), ("id", &id2), ("fp", &fake_fp), ("name", "h2")],
    );
    b.wait_text(&format!("{c2} .peer-trust"), "CHANGED");
    assert_eq!(
        b.count(&format!("{c2} .peer-changed")),
        1,
        "no key-change note on the card"
    );
    assert!(
        b.holds(
            "document.querySelector(arguments[0]).disabled",
            vec![json!(format!("{c2} input[type=file].peer-pick"))]
        ),
        "files can still be picked for a peer whose key changed"
    );
    b.show("trust");
    let row = trust_row(&id2);
    b.wait_text(&format!("{row} .trust-state"), "CHANGED");
    assert_eq!(
        b.count(&format!("{row} .trust-changed")),
        1,
        "no warning in the trust row"
    );

    // A node with a new key (h3's identity, named h2) offers files to h1
    // from h2's address: h1 refuses it before any offer, loudly.
    let new_key = h2.dir.join("new-key-home");
    std::fs::create_dir_all(&new_key).unwrap();
    for f in ["identity.key", "node.json"] {
        std::fs::copy(h3.home.join(f), new_key.join(f)).unwrap();
    }
    h2.run(h2.node_at(&new_key).args(["config", "set", "name", "h2"]))
        .expect_code(0);
    let file = h2.file("from-new-key.txt", b"from a new key under an old name");
    let out = h2.run(
        h2.node_at(&new_key)
            .args(["send", "--yes", "--no-discovery", &node.target(h1)])
            .arg(&file),
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("another key"),
        "the sender is not told why:\n{}",
        out.describe()
    );
    let banner = "#banners > .banner.danger";
    b.wait_element(banner);
    let title = b
        .text(&format!("{banner} .banner-title"))
        .unwrap_or_default();
    let text = b
        .text(&format!("{banner} .banner-text"))
        .unwrap_or_default();
    eprintln!("scenario 3: danger banner {title:?}: {text:?}");
    assert!(!title.is_empty(), "an empty banner title");
    assert!(text.contains("h2"), "the banner does not name h2: {text:?}");
    assert!(
        !b.dialog_open("dialog#offer-dialog"),
        "the refused node's offer was shown"
    );
    assert!(
        names_in(&inbox).is_empty(),
        "h1 received {:?}",
        names_in(&inbox)
    );

    b.assert_no_console_errors();
    eprintln!("scenario 3 took {:?}", started.elapsed());
}

/// Scenario 4: the UI without the token is the denied page (403), also with
/// a wrong token, and the API refuses too; with it, every view opens and
/// the page logs no errors (no CSP violation, no script error).
#[test]
fn without_the_token_the_page_is_denied_and_with_it_no_errors_are_logged() {
    let started = Instant::now();
    let Some(lan) = setup(1) else { return };
    let h1 = lan.host(1);
    let node = UiNode::start(h1, &["--no-discovery"]);
    let b = Browser::start(h1);
    let status = "return performance.getEntriesByType('navigation')[0].responseStatus;";

    for url in [
        format!("{}/", node.ui.base),
        format!("{}/?token=0123456789abcdef0123456789abcdef", node.ui.base),
    ] {
        b.goto(&url);
        assert_eq!(b.js(status, vec![]), json!(403), "{url} is not refused");
        let title = b.js("return document.title;", vec![]);
        assert!(
            title.as_str().is_some_and(|t| t.contains("Not signed in")),
            "{url}: the title is {title}"
        );
        let shown = b.visible_text();
        assert!(
            shown.contains("localstream ui"),
            "{url} does not say how to get in:\n{shown}"
        );
        assert_eq!(b.count("#node-name"), 0, "{url} shows the app");
    }
    for path in ["/api/state", "/api/events", "/api/history", "/api/settings"] {
        let got = b.js(
            "return fetch(arguments[0]).then((r) => r.status);",
            vec![json!(path)],
        );
        assert_eq!(got, json!(403), "{path} without a session");
    }
    // Those 403s are on the console, as they should be.
    let _ = b.console();

    b.open_ui(&node.ui, "h1");
    assert_eq!(
        b.js("return document.cookie;", vec![]),
        json!(""),
        "the session cookie is readable by scripts"
    );
    b.wait_text("#node-id", &node.listener.id[..8]);
    assert_eq!(
        b.text("#node-fingerprint").as_deref(),
        Some(node.listener.fingerprint.as_str())
    );
    for view in VIEWS {
        b.show(view);
        let shown = b.js(
            "return Array.from(document.querySelectorAll('section.view'))\
             .filter((s) => !s.hidden).map((s) => s.id);",
            vec![],
        );
        assert_eq!(
            shown,
            json!([format!("view-{view}")]),
            "sections shown for {view}"
        );
    }
    b.show("peers");
    b.wait_js(
        "the empty peers hint",
        "!document.getElementById('peers-empty').hidden",
        vec![],
    );
    b.assert_no_console_errors();
    eprintln!("scenario 4 took {:?}", started.elapsed());
}
