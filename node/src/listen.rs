//! `localstream listen`: the accept loop.
//!
//! One root cancellation token, a `JoinSet` of connections, accept errors
//! backed off, and an ordered shutdown ([`Shutdown`]): `graceful` (the
//! CLI's first Ctrl-C) stops accepting and lets running transfers finish for
//! a moment (their partial files stay as `.lspart`); `now` (a second
//! Ctrl-C) ends them at once.
//!
//! Connections are capped in two pools ([`Admission`]): those still in the
//! handshake, where a newcomer evicts the oldest so that silent sockets can
//! never lock honest senders out, and authenticated sessions, where a
//! newcomer beyond the cap is told Busy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use localstream_proto::Status;
use localstream_proto::handshake::messages::Alert;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Destination, Discovery, ListenConfig};
use crate::consent::Gate;
use crate::context::{Context, Shutdown};
use crate::discover;
use crate::error::{Error, Result, TransferError};
use crate::event::{Event, Notice, Side};
use crate::receive::{self, ConnEnd, Shared};
use crate::trust;

pub mod preflight;

/// The LocalSend side of a listener, or its absence in a build without it.
#[cfg(feature = "localsend")]
mod localsend {
    pub(super) use crate::localsend::{Service, Start, start};

    impl Service {
        /// Its port.
        pub(crate) fn port(&self) -> u16 {
            self.addr.port()
        }
    }

    /// The next LocalSend session's end (`ok`).
    pub(super) async fn ended(s: &mut Option<&mut Service>) -> Option<bool> {
        match s {
            Some(s) => s.ended.recv().await,
            None => std::future::pending().await,
        }
    }

    pub(super) async fn stop(s: Option<Service>) {
        if let Some(s) = s {
            s.stop().await;
        }
    }
}

#[cfg(not(feature = "localsend"))]
mod localsend {
    /// Never made: this build has no LocalSend.
    #[derive(Debug)]
    pub(super) enum Service {}

    impl Service {
        pub(crate) fn port(&self) -> u16 {
            match *self {}
        }
    }

    pub(super) async fn ended(_: &mut Option<&mut Service>) -> Option<bool> {
        std::future::pending().await
    }

    pub(super) async fn stop(_: Option<Service>) {}
}

// The admission pools and budgets, re-exported where they were first
// documented (tests and the README name them `listen::...`).
pub use crate::admission::{
    ADMIT_WAIT, AbandonedNote, Admission, Handshaking, Limits, MAX_SESSIONS, MAX_SESSIONS_PER_PEER,
    MAX_STRANGER_SESSIONS, MAX_UNAUTHENTICATED, MAX_WAITING, PER_SOURCE, RECENT, RECENT_MINUTES,
    Refusal, STALLED, SessionSlot,
};

/// How long running transfers get to finish after Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How the listener ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenEnd {
    /// `--once`: the transfer succeeded.
    OnceSucceeded,
    /// `--once`: the transfer failed or was refused.
    OnceFailed,
    /// Stopped ([`Shutdown`]).
    Interrupted,
}

/// Runs the listener until `shutdown` (or, with `once`, the first transfer):
/// open (store, folder, socket, announcement), then the accept loop, then an
/// ordered shutdown.
pub(crate) async fn run(cx: Context, cfg: &ListenConfig, shutdown: Shutdown) -> Result<ListenEnd> {
    raise_open_file_limit();
    let (listener, shared, discovery, mut localsend) = open(cx, cfg).await?;
    let root = CancellationToken::new();
    // `None`: evicted in the handshake (logged when it happened).
    let mut tasks: JoinSet<Option<ConnEnd>> = JoinSet::new();
    let end = accept_loop(
        &listener,
        &shared,
        cfg,
        &shutdown,
        &root,
        &mut tasks,
        localsend.as_mut(),
    )
    .await;
    root.cancel();
    localsend::stop(localsend).await;
    // Withdraw the announcement first: no one should find a node that no
    // longer accepts.
    if let Some(d) = discovery {
        discover::stop_discovery(d).await;
    }
    if end == ListenEnd::Interrupted && !tasks.is_empty() {
        shared.events.notice(Notice::Stopping);
    }
    // The transfers that stop now say so, as they did while running.
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            report_end(&shared, joined);
        }
    };
    tokio::select! {
        () = drain => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        () = shutdown.now.cancelled() => {}
    }
    Ok(end)
}

/// Open: a corrupt store is reported now, not when the first peer
/// connects; the folder exists; the socket is bound; the node is announced;
/// and the `listening` event says so.
async fn open(
    cx: Context,
    cfg: &ListenConfig,
) -> Result<(
    TcpListener,
    Arc<Shared>,
    Option<localstream_discovery::Discovery>,
    Option<localsend::Service>,
)> {
    let Context {
        identity,
        store,
        events,
        questions,
        cancels,
        home,
        #[cfg(feature = "localsend")]
        devices,
    } = cx;
    trust::check_store(&store).await?;
    // Groups of small files hold their handles until they are synced.
    crate::fsutil::raise_open_file_limit();
    crate::fsutil::survive_file_size_limit();
    let dir = if cfg.destination == Destination::Folder {
        let dir = preflight::writable_folder(&cfg.dir)?;
        report_partials(&dir, &events).await;
        dir
    } else {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| Error::file(&cfg.dir, e))?;
        std::fs::canonicalize(&cfg.dir).map_err(|e| Error::file(&cfg.dir, e))?
    };
    let listener = match TcpListener::bind(cfg.bind).await {
        Ok(l) => l,
        Err(source) => return Err(preflight::bind_error(cfg.bind, source).await),
    };
    let local = listener.local_addr()?;
    let (discovery, announced) = match &cfg.discovery {
        Discovery::On(interfaces) => {
            discover::announce(&identity, interfaces, local, &events).await?
        }
        Discovery::Off => (None, "off".to_owned()),
    };
    let shared = Arc::new(Shared {
        identity,
        dir,
        gate: Gate::new(cfg.policy, questions, events.clone()),
        offers: receive::OfferSlots::default(),
        store,
        active: trust::ActiveSessions::default(),
        events,
        cancels,
        destination: cfg.destination,
        on_collision: cfg.on_collision,
        blocked_noted: std::sync::Mutex::default(),
    });
    let localsend = match (&cfg.localsend, cfg.destination) {
        (Some(ls), Destination::Folder) => {
            let multicast = match &cfg.discovery {
                Discovery::On(i) => Some(i),
                Discovery::Off => None,
            };
            #[cfg(feature = "localsend")]
            let started = localsend::start(localsend::Start {
                home: &home,
                shared: shared.clone(),
                bind: cfg.bind.ip(),
                cfg: ls,
                multicast,
                devices,
            })
            .await;
            #[cfg(not(feature = "localsend"))]
            let started: Result<localsend::Service> = {
                let _ = (ls, multicast, &home);
                Err(crate::error::LocalSendError::NotBuilt.into())
            };
            match started {
                Ok(s) => Some(s),
                Err(e) => {
                    shared.events.notice(Notice::LocalSendOff(e.to_string()));
                    None
                }
            }
        }
        _ => None,
    };
    shared.events.emit(Event::Listening {
        name: shared.identity.name().to_owned(),
        id: crate::label::NodeId(shared.identity.node_id()),
        fingerprint: crate::identity::fingerprint_hex(&shared.identity.fingerprint()),
        dir: shared.dir.clone(),
        stdout: cfg.destination == Destination::Stdout,
        discovery: announced,
        addresses: listen_addresses(local),
        localsend: localsend.as_ref().map(localsend::Service::port),
    });
    Ok((listener, shared, discovery, localsend))
}

/// Accepts connections (backing off on accept errors) until shutdown, or
/// with `once` until the first transfer ends.
async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    cfg: &ListenConfig,
    shutdown: &Shutdown,
    root: &CancellationToken,
    tasks: &mut JoinSet<Option<ConnEnd>>,
    mut localsend: Option<&mut localsend::Service>,
) -> ListenEnd {
    let admission = Admission::new(MAX_UNAUTHENTICATED, MAX_SESSIONS);
    let mut backoff = Duration::from_millis(50);
    loop {
        tokio::select! {
            biased;
            () = shutdown.graceful.cancelled() => return ListenEnd::Interrupted,
            Some(ok) = localsend::ended(&mut localsend), if cfg.once => {
                return if ok { ListenEnd::OnceSucceeded } else { ListenEnd::OnceFailed };
            }
            Some(joined) = tasks.join_next() => {
                let Some((result, _)) = report_end(shared, joined) else { continue };
                if cfg.once {
                    let ok = result.as_ref().is_ok_and(|r| r.ok);
                    return if ok { ListenEnd::OnceSucceeded } else { ListenEnd::OnceFailed };
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    backoff = Duration::from_millis(50);
                    spawn_connection(stream, remote, &admission, shared, root, tasks);
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
}

/// A connection's end: a failed transfer is reported (`error`); returns the
/// transfer's result, if it was one.
fn report_end(
    shared: &Shared,
    joined: std::result::Result<Option<ConnEnd>, tokio::task::JoinError>,
) -> Option<(Result<receive::Received>, Box<receive::Sender>)> {
    let Ok(Some(ConnEnd::Transfer(result, sender))) = joined else {
        return None;
    };
    if let Err(e) = &result {
        shared
            .events
            .for_transfer(sender.transfer)
            .emit(Event::Error {
                side: Some(Side::Receive),
                peer: Some(sender.peer.clone()),
                session: Some(sender.session.clone()),
                message: e.to_string(),
                stopped: match e {
                    Error::Transfer(TransferError::Stopped(s)) => Some(s.clone()),
                    _ => None,
                },
            });
    }
    Some((result, sender))
}

/// One connection's task: a place in the handshake pool (waiting a moment
/// for one to free up), then [`receive::serve`] until it ends, is evicted,
/// or the listener shuts down.
fn spawn_connection(
    mut stream: tokio::net::TcpStream,
    remote: SocketAddr,
    admission: &Admission,
    shared: &Arc<Shared>,
    root: &CancellationToken,
    tasks: &mut JoinSet<Option<ConnEnd>>,
) {
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
            Some(ConnEnd::NoTransfer(Error::Timeout(
                "refused: too many connections",
            )))
        });
        return;
    }
    let admission = admission.clone();
    let shared = shared.clone();
    let token = root.child_token();
    let transfer = crate::event::next_transfer();
    let running = shared.cancels.register(transfer, token.clone());
    let span = info_span!(
        "conn",
        %remote,
        peer = tracing::field::Empty,
        session = tracing::field::Empty
    );
    tasks.spawn(
        async move {
            let _running = running;
            // Every place mid-handshake: wait a moment for one to free up.
            let handshaking = match admission.admit_waiting(remote, ADMIT_WAIT).await {
                Ok(h) => h,
                Err(Refusal::Full) => {
                    debug!(%remote, "every place before authentication is mid-handshake: refusing");
                    crate::conn::handshake_alert(&mut stream, Status::Busy, HANDSHAKES_BUSY).await;
                    let e = Error::Timeout("refused: handshakes full");
                    return Some(ConnEnd::NoTransfer(e));
                }
            };
            let evicted = handshaking.eviction();
            // The handshake owns the socket when it is evicted: a second
            // handle tells the peer why it goes (else it sees the
            // connection close mid-handshake, and cannot tell busy from broken).
            let notice = Evicted::handle(&stream);
            // On shutdown a transfer gets a moment to tell its sender why it
            // stops; one already writing its end (its history, the alert)
            // finishes it, within the listener's grace.
            let concluding = CancellationToken::new();
            let cut = async {
                token.cancelled().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                if concluding.is_cancelled() {
                    std::future::pending::<()>().await;
                }
            };
            let serving = receive::serve(
                stream,
                remote,
                shared,
                token.clone(),
                handshaking,
                concluding.clone(),
            );
            let end = tokio::select! {
                end = crate::event::in_transfer_as(transfer, serving) => Some(end),
                () = cut => Some(ConnEnd::NoTransfer(Error::Interrupted)),
                // Still in the handshake and evicted: told, and dropped at once.
                () = evicted.cancelled() => {
                    if let Some(n) = notice {
                        n.tell();
                    }
                    None
                }
            };
            if let Some(ConnEnd::NoTransfer(e)) = &end {
                info!(error = %e, "connection dropped before any offer");
            }
            end
        }
        .instrument(span),
    );
}

/// A second handle on a connection's socket, for telling its peer that the
/// listener evicted it before it authenticated (to make room for a newcomer).
struct Evicted(std::net::TcpStream);

/// What a newcomer refused for want of a place reads (Busy: its sender's
/// `--retry` tries again)
const HANDSHAKES_BUSY: &str = "the receiver is busy with other handshakes; try again";
/// and what one evicted to make room reads.
const EVICTED: &str = "the receiver is busy: it dropped this connection, which had not \
                       finished its hello, to make room for others; try again";

impl Evicted {
    #[cfg(unix)]
    fn handle(stream: &tokio::net::TcpStream) -> Option<Evicted> {
        use std::os::fd::AsFd;
        let fd = stream.as_fd().try_clone_to_owned().ok()?;
        Some(Evicted(std::net::TcpStream::from(fd)))
    }

    #[cfg(windows)]
    fn handle(stream: &tokio::net::TcpStream) -> Option<Evicted> {
        use std::os::windows::io::AsSocket;
        let socket = stream.as_socket().try_clone_to_owned().ok()?;
        Some(Evicted(std::net::TcpStream::from(socket)))
    }

    #[cfg(not(any(unix, windows)))]
    fn handle(_: &tokio::net::TcpStream) -> Option<Evicted> {
        None
    }

    /// Writes a plaintext Busy alert without waiting (the socket is
    /// non-blocking: a peer that reads nothing gets nothing) and ends the
    /// stream. What the peer sent and nobody read is read away first: a
    /// socket closed with unread bytes is reset, and a reset can overtake
    /// the alert.
    fn tell(self) {
        use std::io::{Read, Write};
        let mut sock = self.0;
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match sock.read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        let mut busy = Vec::new();
        Alert {
            status: Status::Busy,
            message: EVICTED.into(),
        }
        .encode(&mut busy);
        let _ = sock.write(&busy);
        let _ = sock.shutdown(std::net::Shutdown::Write);
    }
}

/// Lists what interrupted transfers left in `dir`, removing what is too old
/// to be resumed ([`fsutil::stale`]).
async fn report_partials(dir: &std::path::Path, events: &crate::event::Events) {
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
    if sweep.removed.0 > 0 {
        events.notice(Notice::PartialsRemoved {
            files: sweep.removed.0,
            bytes: sweep.removed.1,
            days,
        });
    }
    if sweep.kept.0 > 0 {
        events.notice(Notice::PartialsKept {
            files: sweep.kept.0,
            bytes: sweep.kept.1,
            days,
        });
    }
    let (hidden, gone) = sweep.hidden;
    if hidden > 0 {
        tracing::warn!(
            folders = hidden,
            "folders a receiver killed outright left under hidden names (.NAME.KEY.lspart): \
             not all of their files were verified; removed once {days} days old"
        );
    }
    if gone > 0 {
        tracing::info!(
            folders = gone,
            days,
            "removed old hidden folders of killed receives"
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
