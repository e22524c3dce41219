//! `localstream peers`: the table (or JSON) of the nodes on the network,
//! and `--watch` lines as they come and go.

use localstream_node::discover::{self, Browsed, PeerInfo};
use localstream_node::event::Envelope;
use localstream_node::{Error, Event, Node, Result};
use localstream_proto::names::escape_for_terminal;
use tokio_util::sync::CancellationToken;

use crate::config::{Common, View};
use crate::outln;
use crate::signals::Interrupts;
use localstream_node::config::PeersConfig;

/// Runs `peers`.
///
/// # Errors
/// When discovery cannot start; [`Error::Interrupted`] on Ctrl-C (unless watching).
pub async fn run(common: &Common, cfg: &PeersConfig, view: View) -> Result<()> {
    let mut interrupts = Interrupts::new()?;
    let node = Node::start(common.node_config())?;
    let store = node.peer_store()?;
    let mut events = node.events();
    let stop = CancellationToken::new();
    let browse = node.browse(cfg, &store, &stop);
    let mut browse = std::pin::pin!(browse);
    let mut interrupted = false;
    let found: Result<Browsed> = loop {
        tokio::select! {
            r = &mut browse => break r,
            Some(ev) = events.next() => change(&ev, view.json),
            _ = interrupts.next(), if !interrupted => {
                interrupted = true;
                stop.cancel();
            }
        }
    };
    while let Some(ev) = events.try_next() {
        change(&ev, view.json);
    }
    let found = found?;
    if interrupted && !cfg.watch {
        return Err(Error::Interrupted);
    }
    if cfg.watch {
        return Ok(());
    }
    for p in &found.peers {
        warn(p);
    }
    if view.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&found.peers).unwrap_or_else(|_| "[]".into())
        );
    } else if found.peers.is_empty() {
        eprintln!(
            "no LocalStream peers answered within {:.1} s on {}",
            found.elapsed.as_secs_f64(),
            found.looked_on
        );
    } else {
        let rows: Vec<[String; 7]> = found.peers.iter().map(columns).collect();
        print_table(&rows);
        for line in same_names(&found.peers) {
            eprintln!("{line}");
        }
    }
    Ok(())
}

/// For each name several LocalStream nodes share: which one `send NAME`
/// picks (the only trusted, else the only pinned one), or that the start of
/// an id must say which.
fn same_names(peers: &[PeerInfo]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for p in peers.iter().filter(|p| p.protocol == "localstream") {
        let key = p.name.to_lowercase();
        if names.contains(&key) {
            continue;
        }
        names.push(key.clone());
        let same: Vec<&PeerInfo> = peers
            .iter()
            .filter(|q| q.protocol == "localstream" && q.name.to_lowercase() == key)
            .collect();
        if same.len() < 2 {
            continue;
        }
        let name = escape_for_terminal(&p.name);
        lines.push(match discover::picked_among(&same) {
            Some(i) => format!(
                "{} peers are named {name}: `send {name}` picks the {} one ({}); give the start \
                 of an id for another",
                same.len(),
                if same[i].trust == "trusted" {
                    "trusted"
                } else {
                    "pinned"
                },
                same[i].short_id
            ),
            None => format!(
                "{} peers are named {name}: give `send` the start of an id to say which",
                same.len()
            ),
        });
    }
    lines
}

/// One `--watch` line.
fn change(ev: &Envelope, json: bool) {
    let (sign, p) = match &ev.event {
        Event::PeerSeen { peer } => ('+', peer),
        Event::PeerChanged { peer } => ('~', peer),
        Event::PeerGone { peer } => ('-', peer),
        _ => return,
    };
    if sign != '-' {
        warn(p);
    }
    if json {
        crate::render::json_line(ev);
    } else {
        outln!("{sign} {}", columns(p).join("  "));
    }
}

/// Warns when records claim one id with different keys, or a pinned id
/// with another key.
fn warn(p: &PeerInfo) {
    for other in &p.conflicting {
        eprintln!(
            "warning: two different keys announce node id {}: [{}] and [{}]; \
             one of them may be impersonating it",
            p.id, p.fingerprint, other
        );
    }
    if let Some(pinned) = &p.pinned_key
        && p.protocol == "localsend"
    {
        eprintln!(
            "warning: the LocalSend device {} shows certificate [{}], but a LocalSend device of \
             that name is pinned here with [{pinned}]: someone may be impersonating it, or its \
             LocalSend was reinstalled (`localstream forget` the old one once you have checked \
             the fingerprint in its LocalSend settings)",
            escape_for_terminal(&p.name),
            p.fingerprint
        );
    } else if let Some(pinned) = &p.pinned_key {
        eprintln!(
            "warning: {} announces node id {} pinned here to key [{pinned}], but with key [{}]: \
             someone may be impersonating it, or it was reinstalled (`localstream forget {}` \
             once you have confirmed the change)",
            escape_for_terminal(&p.name),
            p.id,
            p.fingerprint,
            p.id
        );
    }
}

/// The text columns of one peer.
fn columns(p: &PeerInfo) -> [String; 7] {
    let mut ips: Vec<&str> = Vec::new();
    for ip in &p.addresses {
        if !ips.contains(&ip.as_str()) {
            ips.push(ip);
        }
    }
    let name = match &p.alias {
        Some(a) if *a != p.name => format!(
            "{} '{}'",
            escape_for_terminal(&p.name),
            escape_for_terminal(a)
        ),
        _ => escape_for_terminal(&p.name),
    };
    [
        name,
        p.short_id.clone(),
        ips.join(", "),
        p.port.to_string(),
        p.fingerprint.clone(),
        p.trust.to_owned(),
        match (p.protocol, &p.device) {
            ("localsend", Some(d)) => format!("LocalSend {}", escape_for_terminal(d)),
            ("localsend", None) => "LocalSend".to_owned(),
            _ => "LocalStream".to_owned(),
        },
    ]
}

/// Prints rows with aligned columns.
fn print_table(rows: &[[String; 7]]) {
    let header = [
        "NAME",
        "ID",
        "ADDRESSES",
        "PORT",
        "FINGERPRINT",
        "TRUST",
        "DEVICE",
    ]
    .map(str::to_owned);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_columns_escape_and_dedupe() {
        let p = PeerInfo {
            protocol: "localstream",
            device: None,
            name: "box\x1b[2J".into(),
            id: "3f2a9c1e-0000-4000-8000-0000000000ab".into(),
            short_id: "3f2a9c1e".into(),
            addresses: vec!["10.0.0.1".into(), "fe80::1%3".into(), "10.0.0.1".into()],
            port: 47470,
            fingerprint: "abab:abab:abab:abab".into(),
            mac: None,
            version: 2,
            trust: "unpinned",
            alias: None,
            conflicting: vec![],
            pinned_key: None,
        };
        let c = columns(&p);
        assert_eq!(c[0], "box\\x1b[2J");
        assert_eq!(c[1], "3f2a9c1e");
        assert_eq!(c[2], "10.0.0.1, fe80::1%3");
        assert_eq!(c[3], "47470");
        assert_eq!(c[4], "abab:abab:abab:abab");
        assert_eq!(c[5], "unpinned");
    }

    #[test]
    fn same_names_say_which_one_send_picks() {
        let peer = |name: &str, short: &str, trust: &'static str| PeerInfo {
            protocol: "localstream",
            device: None,
            name: name.into(),
            id: format!("{short}-0000-4000-8000-000000000000"),
            short_id: short.into(),
            addresses: vec![],
            port: 47470,
            fingerprint: String::new(),
            mac: None,
            version: 1,
            trust,
            alias: None,
            conflicting: vec![],
            pinned_key: None,
        };
        let mut peers = vec![
            peer("box", "3f2a9c1e", "unpinned"),
            peer("box", "77aa0000", "known"),
            peer("h1", "11111111", "unpinned"),
        ];
        assert_eq!(
            same_names(&peers),
            [
                "2 peers are named box: `send box` picks the pinned one (77aa0000); give the start \
              of an id for another"
            ]
        );
        peers[0].trust = "trusted";
        assert_eq!(
            same_names(&peers),
            [
                "2 peers are named box: `send box` picks the trusted one (3f2a9c1e); give the \
              start of an id for another"
            ]
        );
        peers[0].trust = "new";
        assert_eq!(
            same_names(&peers),
            ["2 peers are named box: give `send` the start of an id to say which"]
        );
        let mut aliased = peer("h2", "66ff0000", "known");
        aliased.alias = Some("studio".into());
        assert_eq!(columns(&aliased)[0], "h2 'studio'");
    }
}
