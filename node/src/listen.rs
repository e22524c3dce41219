//! `localstream listen`: the accept loop.
//!
//! One root cancellation token, a `JoinSet` of connections, accept errors
//! backed off, and an ordered shutdown: first Ctrl-C stops accepting and lets
//! running transfers finish for a moment (their partial files stay as
//! `.lspart`); a second Ctrl-C exits at once.
//!
//! Connections are capped in two pools ([`Admission`]): those still in the
//! handshake, where a newcomer evicts the oldest so that silent sockets can
//! never lock honest senders out, and authenticated sessions, where a
//! newcomer beyond the cap is told Busy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use localstream_proto::handshake::messages::Alert;
use localstream_proto::{LocalIdentity, Status};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Common, Discovery, ListenConfig};
use crate::consent::Gate;
use crate::discover;
use crate::error::{Error, Result};
use crate::identity::short_fingerprint;
use crate::notify;
use crate::receive::{self, ConnEnd, Shared};
use crate::signals::Interrupts;
use crate::store::PeerStore;
use crate::trust;

mod admission;
mod limits;
pub use admission::{
    ADMIT_WAIT, Admission, Handshaking, MAX_SESSIONS, MAX_SESSIONS_PER_PEER, MAX_STRANGER_SESSIONS,
    MAX_UNAUTHENTICATED, PER_SOURCE, Refusal, STALLED, SessionSlot,
};
pub use limits::{AbandonedNote, Limits};
/// How far back the consent prompt counts abandoned key exchanges, in minutes.
pub const RECENT_MINUTES: u64 = limits::RECENT.as_secs() / 60;

/// How long running transfers get to finish after Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How the listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenEnd {
    /// `--once`: the transfer succeeded.
    OnceSucceeded,
    /// `--once`: the transfer failed or was refused.
    OnceFailed,
    /// Ctrl-C.
    Interrupted,
}

/// Runs the listener until Ctrl-C (or, with `--once`, the first transfer).
pub async fn run(
    identity: Arc<LocalIdentity>,
    common: &Common,
    cfg: &ListenConfig,
) -> Result<ListenEnd> {
    raise_open_file_limit();
    let store = PeerStore::new(&common.home);
    // A corrupt store is reported now, not when the first peer connects.
    trust::check_store(&store).await?;
    std::fs::create_dir_all(&cfg.dir).map_err(|e| Error::file(&cfg.dir, e))?;
    let dir = std::fs::canonicalize(&cfg.dir).map_err(|e| Error::file(&cfg.dir, e))?;
    if !cfg.stdout {
        report_partials(&dir).await;
    }
    let listener = TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.bind,
            source,
        })?;
    let local = listener.local_addr()?;
    let mut interrupts = Interrupts::new()?;
    let (discovery, announced) = match &cfg.discovery {
        Discovery::On(interfaces) => discover::announce(&identity, interfaces, local).await?,
        Discovery::Off => (None, "off".to_owned()),
    };
    if cfg.events.on() {
        cfg.events.emit(
            "listening",
            serde_json::json!({
                "name": identity.name(),
                "id": uuid::Uuid::from_bytes(identity.node_id()).to_string(),
                "fingerprint": crate::identity::fingerprint_hex(&identity.fingerprint()),
                "dir": dir.display().to_string(),
                "discovery": announced,
                "addresses": listen_addresses(local).iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
    } else {
        let target = if cfg.stdout {
            "standard output".to_owned()
        } else {
            dir.display().to_string()
        };
        let banner = banner(&identity, local, &target, &announced);
        if cfg.stdout {
            // Standard output is for the file.
            eprintln!("{banner}");
        } else {
            crate::outln!("{banner}");
        }
    }

    let shared = Arc::new(Shared {
        identity,
        dir,
        gate: Gate::new(cfg.consent),
        progress: common.progress,
        offers: receive::OfferSlots::default(),
        store,
        active: trust::ActiveSessions::default(),
        events: cfg.events.clone(),
        to_stdout: cfg.stdout,
        blocked_noted: std::sync::Mutex::default(),
    });
    let root = CancellationToken::new();
    let admission = Admission::new(MAX_UNAUTHENTICATED, MAX_SESSIONS);
    // `None`: evicted in the handshake (logged when it happened).
    let mut tasks: JoinSet<Option<ConnEnd>> = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    // `--on-complete` commands still running (waited for before exiting).
    let mut hooks = Vec::new();

    let end = loop {
        tokio::select! {
            biased;
            _ = interrupts.next() => break ListenEnd::Interrupted,
            Some(joined) = tasks.join_next() => {
                let Ok(Some(end)) = joined else { continue };
                match end {
                    ConnEnd::NoTransfer(e) => info!(error = %e, "connection dropped before any offer"),
                    ConnEnd::Transfer(result, sender) => {
                        if let Err(e) = &result {
                            eprintln!("transfer failed: {e}");
                            cfg.events.emit("error", serde_json::json!({ "message": e.to_string() }));
                        }
                        let ok = result.as_ref().is_ok_and(|r| r.ok);
                        let report = notify::Report {
                            peer_name: sender.name,
                            peer_id: sender.id,
                            session: sender.session,
                            saved: result.as_ref().map(|r| r.saved.clone()).unwrap_or_default(),
                            bytes: result.as_ref().map_or(0, |r| r.bytes),
                            error: match &result {
                                Ok(r) if r.ok => None,
                                Ok(_) => Some("some files failed verification".into()),
                                Err(e) => Some(e.to_string()),
                            },
                        };
                        if let Some(child) = notify::finished(&cfg.notify, &report, &shared.dir) {
                            // Only the ones still running are kept (a listener runs for months).
                            hooks.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
                            hooks.push(tokio::task::spawn_blocking(move || notify::wait(child)));
                        }
                        if cfg.once {
                            break if ok { ListenEnd::OnceSucceeded } else { ListenEnd::OnceFailed };
                        }
                    }
                }
            }
            accepted = listener.accept() => {
                let (mut stream, remote) = match accepted {
                    Ok(a) => { backoff = Duration::from_millis(50); a }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                if admission.sessions_full() {
                    // Refused before the handshake, which it would not need.
                    debug!(%remote, "every session slot taken: refusing");
                    tasks.spawn(async move {
                        let mut busy = Vec::new();
                        Alert {
                            status: Status::Busy,
                            message: "the receiver is serving too many connections; try again".into(),
                        }
                        .encode(&mut busy);
                        let _ = stream.write_all(&busy).await;
                        Some(ConnEnd::NoTransfer(Error::Timeout("refused: too many connections")))
                    });
                    continue;
                }
                let admission = admission.clone();
                let shared = shared.clone();
                let token = root.child_token();
                let span = info_span!(
                    "conn",
                    %remote,
                    peer = tracing::field::Empty,
                    session = tracing::field::Empty
                );
                tasks.spawn(async move {
                    // Every place mid-handshake: wait a moment for one to free up.
                    let handshaking = match admission.admit_waiting(remote, ADMIT_WAIT).await {
                        Ok(h) => h,
                        Err(Refusal::Full) => {
                            debug!(%remote, "every place before authentication is mid-handshake: refusing");
                            crate::conn::handshake_alert(
                                &mut stream,
                                Status::Busy,
                                "the receiver is busy with other handshakes; try again",
                            )
                            .await;
                            return Some(ConnEnd::NoTransfer(Error::Timeout("refused: handshakes full")));
                        }
                    };
                    let evicted = handshaking.eviction();
                    // On shutdown a transfer gets a moment to tell its sender why it stops.
                    let cut = async {
                        token.cancelled().await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    };
                    tokio::select! {
                        end = receive::serve(stream, remote, shared, token.clone(), handshaking) => Some(end),
                        _ = cut => Some(ConnEnd::NoTransfer(Error::Interrupted)),
                        // Still in the handshake and evicted: dropped (socket closed) at once.
                        () = evicted.cancelled() => None,
                    }
                }.instrument(span));
            }
        }
    };

    root.cancel();
    // Withdraw the announcement first: no one should find a node that no
    // longer accepts.
    if let Some(d) = discovery {
        discover::stop(d).await;
    }
    if end == ListenEnd::Interrupted && !tasks.is_empty() {
        eprintln!("stopping (Ctrl-C again to quit at once)");
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = drain => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        _ = interrupts.next() => {}
    }
    // The user's own commands finish (Ctrl-C reaches them too).
    for hook in hooks {
        let _ = hook.await;
    }
    Ok(end)
}

/// Lists what interrupted transfers left in `dir`, removing what is too old
/// to be resumed ([`fsutil::stale`]).
async fn report_partials(dir: &std::path::Path) {
    use crate::fsutil::stale;
    let d = dir.to_owned();
    let Ok(sweep) = tokio::task::spawn_blocking(move || {
        stale::sweep(&d, stale::MAX_AGE, std::time::SystemTime::now())
    })
    .await
    else {
        return;
    };
    let days = stale::MAX_AGE.as_secs() / 86_400;
    let files = |(n, bytes): (u64, u64)| {
        format!(
            "{n} partial file{} ({})",
            if n == 1 { "" } else { "s" },
            crate::progress::human_bytes(bytes)
        )
    };
    if sweep.removed.0 > 0 {
        eprintln!(
            "removed {} of transfers interrupted more than {days} days ago",
            files(sweep.removed)
        );
    }
    if sweep.kept.0 > 0 {
        eprintln!(
            "kept {} of interrupted transfers for resuming (removed after {days} days)",
            files(sweep.kept)
        );
    }
}

/// Raises the soft limit on open files to the hard one (at most 65 536):
/// each connection keeps the files of its commit group open (they hold the
/// partials' locks), up to a few hundred per connection.
#[cfg(unix)]
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.unwrap_or(u64::MAX).min(65_536);
    if limit.current.is_some_and(|c| c < want) {
        limit.current = Some(want);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "cannot raise the open file limit");
        }
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() {}

fn banner(identity: &LocalIdentity, local: SocketAddr, target: &str, discovery: &str) -> String {
    let fp = identity.fingerprint();
    let mut text = format!(
        "LocalStream node {}\n  id          {}\n  fingerprint {}\n  saving to   {}\n  discovery   {discovery}",
        identity.name(),
        uuid::Uuid::from_bytes(identity.node_id()),
        short_fingerprint(&fp),
        target
    );
    for addr in listen_addresses(local) {
        text.push_str(&format!("\nlistening on {addr}"));
    }
    text
}

/// The addresses peers can use: the bound one, or every interface's when bound to any.
fn listen_addresses(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut addrs: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip: &IpAddr| ip.is_ipv4() == local.is_ipv4())
        .map(|ip| SocketAddr::new(ip, local.port()))
        .collect();
    addrs.sort_by_key(|a| (a.ip().is_loopback(), *a));
    if addrs.is_empty() {
        addrs.push(local);
    }
    addrs
}
