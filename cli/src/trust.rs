//! `localstream trust|forget|block <peer>` and `localstream sessions`: the
//! peer store's answers, as text (or JSON).

use std::path::Path;

use localstream_node::config::Discovery;
use localstream_node::discover;
use localstream_node::error::ResolveError;
use localstream_node::identity::{fingerprint_hex, short_fingerprint};
use localstream_node::store::Lookup;
use localstream_node::store::{PeerEntry, PeerStore, SessionRecord, Trust};
use localstream_node::{Error, Node, Result, trust};
use localstream_proto::names::escape_for_terminal;
use serde::Serialize;

use crate::config::{Common, StoreCommand};
use crate::outln;

/// Runs `trust`, `forget`, `block` or `sessions`.
///
/// # Errors
/// When the peer is unknown or ambiguous, or the store cannot be used.
pub fn run(home: &Path, cmd: &StoreCommand) -> Result<()> {
    let store = PeerStore::new(home);
    match cmd {
        StoreCommand::Trust { peer: q, .. } | StoreCommand::Block(q) => {
            let trust = if matches!(cmd, StoreCommand::Trust { .. }) {
                Trust::Trusted
            } else {
                Trust::Blocked
            };
            let entry = trust::set_trust_of(&store, q, trust)?;
            outln!("{}: {}", trust, describe(&entry));
            if trust == Trust::Trusted {
                outln!(
                    "its key {} is trusted from now on; a different key under its id will be refused",
                    short_fingerprint(&entry.fingerprint)
                );
            }
        }
        StoreCommand::Forget(q) => {
            let entry = trust::forget(&store, q)?;
            outln!("forgot {}", describe(&entry));
            outln!("its key is no longer pinned: the next contact pins whatever key it presents");
        }
        StoreCommand::Sessions { peer, json } => {
            let peers = trust::sessions(&store, peer.as_deref())?;
            let peers: Vec<&PeerEntry> = peers.iter().collect();
            print_sessions(&peers, *json);
        }
    }
    Ok(())
}

/// `trust` (with discovery on): when the store knows no such peer, a short
/// look at the network tells a node there that was never met from a typo.
///
/// # Errors
/// As [`run`]; [`ResolveError::NotMet`] when the store knows no such peer
/// but a node on the network answers to it.
pub async fn run_looking(common: &Common, cmd: StoreCommand) -> Result<()> {
    let home = common.home.clone();
    let looked = cmd.clone();
    let result = tokio::task::spawn_blocking(move || run(&home, &looked)).await?;
    let (
        Err(Error::Resolve(ResolveError::UnknownPeer {
            reason: Lookup::NotFound,
            ..
        })),
        StoreCommand::Trust {
            peer,
            discovery: Discovery::On(interfaces),
        },
    ) = (&result, &cmd)
    else {
        return result;
    };
    let node = Node::start(common.node_config())?;
    match discover::unmet(interfaces, peer, node.id().uuid()).await {
        Some(found) => Err(ResolveError::NotMet {
            query: peer.clone(),
            found,
        }
        .into()),
        None => result,
    }
}

/// One line describing a stored peer, with the name `add` gave it.
fn describe(p: &PeerEntry) -> String {
    let alias = match &p.alias {
        Some(a) if Some(a.as_str()) != p.name() => format!(" '{}'", escape_for_terminal(a)),
        _ => String::new(),
    };
    format!(
        "{}{alias} ({}) [{}]",
        escape_for_terminal(p.name().unwrap_or("")),
        p.node_id,
        short_fingerprint(&p.fingerprint)
    )
}

#[derive(Serialize)]
struct PeerSessionsJson<'a> {
    id: String,
    name: Option<&'a str>,
    /// The name `add` gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    alias: Option<&'a str>,
    fingerprint: String,
    trust: Trust,
    sessions: &'a [SessionRecord],
}

fn print_sessions(peers: &[&PeerEntry], json: bool) {
    if json {
        let all: Vec<PeerSessionsJson<'_>> = peers
            .iter()
            .map(|p| PeerSessionsJson {
                id: p.node_id.hyphenated().to_string(),
                name: p.name(),
                alias: p.alias.as_deref(),
                fingerprint: fingerprint_hex(&p.fingerprint),
                trust: p.trust,
                sessions: &p.sessions,
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
        );
        return;
    }
    if peers.is_empty() {
        eprintln!("no peers known yet: no sessions recorded");
        return;
    }
    let zone = crate::sessions::zone();
    for p in peers {
        outln!("{}  {}", describe(p), p.trust);
        if p.sessions.is_empty() {
            // Pinned by `add`, or met without a transfer.
            outln!("  no sessions recorded yet");
        }
        for s in &p.sessions {
            outln!("{}", crate::sessions::line(s, &zone));
        }
    }
}
