//! `localstream trust|forget|block <peer>` and `localstream sessions`: the
//! peer store's answers, as text (or JSON).

use std::path::Path;

use localstream_node::identity::{fingerprint_hex, short_fingerprint};
use localstream_node::store::{Direction, Outcome, PeerEntry, PeerStore, SessionRecord, Trust};
use localstream_node::{Result, trust};
use localstream_proto::names::escape_for_terminal;
use serde::Serialize;

use crate::config::StoreCommand;
use crate::outln;

/// Runs `trust`, `forget`, `block` or `sessions`.
///
/// # Errors
/// When the peer is unknown or ambiguous, or the store cannot be used.
pub fn run(home: &Path, cmd: &StoreCommand) -> Result<()> {
    let store = PeerStore::new(home);
    match cmd {
        StoreCommand::Trust(q) | StoreCommand::Block(q) => {
            let trust = if matches!(cmd, StoreCommand::Trust(_)) {
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

/// One line describing a stored peer.
fn describe(p: &PeerEntry) -> String {
    format!(
        "{} ({}) [{}]",
        escape_for_terminal(p.name().unwrap_or("")),
        p.node_id,
        short_fingerprint(&p.fingerprint)
    )
}

#[derive(Serialize)]
struct PeerSessionsJson<'a> {
    id: String,
    name: Option<&'a str>,
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
    if peers.iter().all(|p| p.sessions.is_empty()) {
        eprintln!("no sessions recorded");
        return;
    }
    for p in peers {
        outln!("{}  {}", describe(p), p.trust);
        for s in &p.sessions {
            let ended = s.ended.map_or_else(
                || "-".to_owned(),
                |e| format!("{:.1} s", (e.saturating_sub(s.started)) as f64 / 1000.0),
            );
            outln!(
                "  {}  {}  {:<7}  {:>5} files  {:>12} bytes  {:<11}  {}  {}",
                utc(s.started),
                s.id.chars().take(8).collect::<String>(),
                match s.direction {
                    Direction::Send => "sent",
                    Direction::Receive => "received",
                },
                s.files,
                s.bytes,
                outcome_str(s.outcome),
                ended,
                escape_for_terminal(&s.detail)
            );
        }
    }
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
        Outcome::Incomplete => "incomplete",
        Outcome::Interrupted => "interrupted",
    }
}

/// `2026-11-24 02:58:14Z` from Unix milliseconds.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_489_094_000), "2026-11-24 02:58:14Z");
    }
}
