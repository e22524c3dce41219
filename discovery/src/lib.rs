//! LocalStream peer discovery over mDNS / DNS-SD (`_localstream._tcp.local.`).
//!
//! A small handle over [`mdns_sd`]: start a daemon on the chosen interfaces,
//! announce this node, browse for others, and shut down with goodbye packets.
//! The TXT record <-> [`PeerRecord`] mapping is a pure function ([`txt`]), and
//! so is folding sightings into one entry per node ([`PeerTable`]).
//!
//! ```text
//!  Discovery::start(interfaces) ─► mdns-sd daemon thread (UDP 5353, multicast)
//!        │ announce(record, port)          ▲ queries / answers
//!        │ browse() ─► Browser::next() ─► Event::{Resolved, Removed, Rejected}
//!        │                                   └─► PeerTable::apply ─► Change
//!        └ shutdown() ─► goodbye packets, daemon thread joined
//! ```
//!
//! What it does not do: decide whom to trust. Everything here comes from
//! unauthenticated multicast; a record is a hint for where to connect, and the
//! handshake proves who answers. It does no I/O beyond what mdns-sd does on
//! its own thread, and never blocks an async runtime except in
//! [`Discovery::shutdown`] (at most about a second; call it from a blocking
//! context).
//!
//! ```no_run
//! use localstream_discovery::{Discovery, Interfaces, PeerTable};
//! # async fn demo() -> localstream_discovery::Result<()> {
//! let discovery = Discovery::start(&Interfaces::Default)?;
//! let mut browser = discovery.browse()?;
//! let mut table = PeerTable::new();
//! while let Some(event) = browser.next().await {
//!     if let Some(change) = table.apply(&event) {
//!         println!("{change:?}");
//!     }
//! }
//! discovery.shutdown();
//! # Ok(()) }
//! ```

pub mod interfaces;
mod oneshot;
pub mod table;
pub mod txt;

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use mdns_sd::{
    IfKind, IfPredicate, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo, UnregisterStatus,
};
use tracing::{debug, warn};

pub use interfaces::Interfaces;
pub use table::{Change, Peer, PeerTable};
pub use txt::{PeerRecord, TxtError};

/// The DNS-SD service type LocalStream nodes announce.
pub const SERVICE_TYPE: &str = "_localstream._tcp.local.";

/// How long [`Discovery::shutdown`] waits for each step.
const SHUTDOWN_STEP: Duration = Duration::from_millis(500);
/// mdns-sd repeats a goodbye once, 120 ms after the first.
const GOODBYE_REPEAT: Duration = Duration::from_millis(150);
/// Browser events buffered for a slow reader.
const EVENT_QUEUE: usize = 1024;

/// Result alias for discovery.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when starting or using discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OS would not list the network interfaces.
    #[error("cannot list network interfaces: {0}")]
    Interfaces(#[source] std::io::Error),
    /// `--interface` named something that does not exist.
    #[error(
        "no network interface named '{name}' with an address (interfaces: {})",
        list(available)
    )]
    UnknownInterface {
        /// The name asked for.
        name: String,
        /// What exists.
        available: Vec<String>,
    },
    /// `--interface` named an interface that is down.
    #[error("network interface '{0}' is down")]
    InterfaceDown(String),
    /// By default only loopback and virtual bridges are up.
    #[error(
        "no network interface to discover peers on (only loopback or virtual bridges are up: {}); \
         pick one with --interface NAME, or give the peer's address",
        list(available)
    )]
    NoInterface {
        /// What exists.
        available: Vec<String>,
    },
    /// The mDNS daemon failed.
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// A helper thread could not start.
    #[error("cannot start a discovery thread: {0}")]
    Thread(#[source] std::io::Error),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// A node seen on the network: its record and where it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The DNS-SD instance full name it was announced under.
    pub instance: String,
    /// What the TXT record says.
    pub record: PeerRecord,
    /// Where to connect (IPv6 link-local addresses carry their scope).
    pub addrs: Vec<SocketAddr>,
}

/// What the browser reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A LocalStream node answered (or changed its answer).
    Resolved(Sighting),
    /// An instance said goodbye or expired.
    Removed {
        /// Its full name.
        instance: String,
    },
    /// A record of our service type that is not a valid LocalStream record.
    Rejected {
        /// Its full name.
        instance: String,
        /// Why it was ignored.
        reason: TxtError,
    },
}

/// A running discovery daemon.
pub struct Discovery {
    daemon: ServiceDaemon,
    interfaces: Vec<String>,
    links: Vec<oneshot::Link>,
    announced: Option<String>,
    stopped: bool,
}

impl Discovery {
    /// Starts an mDNS daemon on the chosen interfaces.
    ///
    /// # Errors
    /// When the interfaces cannot be listed or chosen (see [`Error`]) or the
    /// daemon cannot start.
    pub fn start(choice: &Interfaces) -> Result<Discovery> {
        let all = interfaces::list()?;
        let names = interfaces::select(choice, &all)?;
        let daemon = ServiceDaemon::new()?;
        // Selections apply in order: nothing, then exactly the chosen names.
        daemon.disable_interface(IfKind::All)?;
        daemon.enable_interface(
            names
                .iter()
                .map(|n| IfKind::Name(n.clone()))
                .collect::<Vec<_>>(),
        )?;
        debug!(interfaces = ?names, "mDNS daemon started");
        let links = all
            .iter()
            .filter(|i| names.contains(&i.name))
            .flat_map(|i| &i.v4_nets)
            .map(|&(addr, mask)| oneshot::Link { addr, mask })
            .collect();
        Ok(Discovery {
            daemon,
            interfaces: names,
            links,
            announced: None,
            stopped: false,
        })
    }

    /// The interfaces in use.
    #[must_use]
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// Announces this node: `record` on `port`, at `only` if given, else at
    /// every address of the chosen interfaces (kept up to date as they
    /// change), IPv4 ones only when `ipv4_only` (a listener bound to 0.0.0.0).
    ///
    /// # Errors
    /// When mdns-sd refuses the service (it should not: names and TXT are
    /// built within its limits) or the daemon is gone.
    pub fn announce(
        &mut self,
        record: &PeerRecord,
        port: u16,
        only: Option<IpAddr>,
        ipv4_only: bool,
    ) -> Result<()> {
        let id = record.node_id.simple().to_string();
        // The instance and host names are derived from the node id, so they
        // are unique on the link without probing and free of user text.
        let host = format!("ls-{id}.local.");
        let addrs: Vec<IpAddr> = only.into_iter().collect();
        let txt = record.to_txt();
        let mut info = ServiceInfo::new(SERVICE_TYPE, &id, &host, &addrs[..], port, &txt[..])?;
        if only.is_none() {
            info = info.enable_addr_auto();
        }
        if ipv4_only && only.is_none() {
            let names = self.interfaces.clone();
            info.set_interfaces(vec![IfKind::Predicate(IfPredicate::new(move |i| {
                i.ip().is_ipv4() && names.contains(&i.name)
            }))]);
        } else {
            info.set_interfaces(
                self.interfaces
                    .iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect(),
            );
        }
        info.set_requires_probe(false);
        let fullname = info.get_fullname().to_owned();
        self.daemon.register(info)?;
        debug!(%fullname, port, "announced");
        self.announced = Some(fullname);
        Ok(())
    }

    /// Starts browsing for LocalStream nodes: mdns-sd's continuous multicast
    /// browse, plus a one-shot query that responders answer at once (see
    /// `oneshot.rs`), both reported through the same [`Browser`].
    ///
    /// # Errors
    /// When the daemon is gone or a thread cannot start.
    pub fn browse(&self) -> Result<Browser> {
        let mdns = self.daemon.browse(SERVICE_TYPE)?;
        let (tx, events) = flume::bounded(EVENT_QUEUE);
        let forward = tx.clone();
        std::thread::Builder::new()
            .name("mdns-events".into())
            .spawn(move || {
                while let Ok(ev) = mdns.recv() {
                    if let Some(ev) = translate(ev)
                        && forward.send(ev).is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(Error::Thread)?;
        if let Err(e) = oneshot::spawn(self.links.clone(), tx) {
            debug!(error = %e, "one-shot mDNS query unavailable; relying on the multicast browse");
        }
        Ok(Browser { events })
    }

    /// Withdraws the announcement (goodbye packets, sent twice) and stops the
    /// daemon, waiting at most about a second. Blocks: call it from a blocking
    /// context. Failures are logged, not returned: there is nothing a caller
    /// could do about them on the way out.
    pub fn shutdown(mut self) {
        let started = Instant::now();
        if let Some(fullname) = self.announced.take() {
            match self.daemon.unregister(&fullname) {
                Ok(rx) => match rx.recv_timeout(SHUTDOWN_STEP) {
                    Ok(UnregisterStatus::OK) => std::thread::sleep(GOODBYE_REPEAT),
                    Ok(other) => debug!(?other, "unregister"),
                    Err(e) => warn!(error = %e, "mDNS goodbye not confirmed"),
                },
                Err(e) => warn!(error = %e, "mDNS goodbye not sent"),
            }
        }
        stop(&self.daemon);
        self.stopped = true;
        debug!(took = ?started.elapsed(), "mDNS daemon stopped");
    }
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("interfaces", &self.interfaces)
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

impl Drop for Discovery {
    /// A handle dropped without [`Discovery::shutdown`] (an error path) still
    /// stops the daemon, which sends the goodbyes, but does not wait for it.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.daemon.shutdown();
        }
    }
}

fn stop(daemon: &ServiceDaemon) {
    match daemon.shutdown() {
        Ok(rx) => {
            if let Err(e) = rx.recv_timeout(SHUTDOWN_STEP) {
                debug!(error = %e, "mDNS daemon did not confirm shutdown");
            }
        }
        Err(mdns_sd::Error::DaemonShutdown) => {}
        Err(e) => debug!(error = %e, "mDNS daemon shutdown"),
    }
}

/// Events from a browse.
#[derive(Debug)]
pub struct Browser {
    events: flume::Receiver<Event>,
}

impl Browser {
    /// The next event; `None` once the daemon has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv_async().await.ok()
    }
}

/// A record is only valid under its own instance name (the node id as 32 hex
/// digits): otherwise one node could take over another's instance.
pub(crate) fn own_instance(instance: &str, record: PeerRecord) -> Result<PeerRecord, TxtError> {
    let label = instance.split('.').next().unwrap_or_default();
    if label.eq_ignore_ascii_case(&record.node_id.simple().to_string()) {
        Ok(record)
    } else {
        Err(TxtError::Invalid {
            key: "id",
            reason: "does not match the instance name",
        })
    }
}

/// An instance full name as a key: lowercase, with the trailing dot.
pub(crate) fn normalize_instance(name: &str) -> String {
    let mut n = name.to_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// Turns an mdns-sd event into ours (or nothing, for events we do not use).
fn translate(ev: ServiceEvent) -> Option<Event> {
    match ev {
        ServiceEvent::ServiceResolved(s) => {
            let instance = normalize_instance(s.get_fullname());
            let props = s.get_properties().iter().map(|p| (p.key(), p.val()));
            let record = match PeerRecord::from_txt(props).and_then(|r| own_instance(&instance, r))
            {
                Ok(r) => r,
                Err(reason) => {
                    debug!(%instance, %reason, "ignoring a malformed LocalStream record");
                    return Some(Event::Rejected { instance, reason });
                }
            };
            let port = s.get_port();
            let mut addrs: Vec<SocketAddr> = s
                .get_addresses()
                .iter()
                .filter_map(|ip| socket_addr(ip, port))
                .collect();
            addrs.sort();
            if port == 0 || addrs.is_empty() {
                debug!(%instance, port, "ignoring a record without a usable address");
                return None;
            }
            Some(Event::Resolved(Sighting {
                instance,
                record,
                addrs,
            }))
        }
        ServiceEvent::ServiceRemoved(_, instance) => Some(Event::Removed {
            instance: normalize_instance(&instance),
        }),
        _ => None,
    }
}

/// Where to connect for an announced address; `None` for addresses no peer
/// can be at (unspecified, multicast, broadcast).
fn socket_addr(ip: &ScopedIp, port: u16) -> Option<SocketAddr> {
    match ip {
        ScopedIp::V4(v4) => {
            let a = *v4.addr();
            (!a.is_unspecified() && !a.is_multicast() && !a.is_broadcast())
                .then(|| SocketAddr::from((a, port)))
        }
        ScopedIp::V6(v6) => {
            let a = *v6.addr();
            if a.is_unspecified() || a.is_multicast() {
                return None;
            }
            let scope = if a.is_unicast_link_local() {
                v6.scope_id().index
            } else {
                0
            };
            Some(SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope)))
        }
        _ => None,
    }
}
