//! LocalStream peer discovery over mDNS / DNS-SD (`_localstream._tcp.local.`).
//!
//! A small handle of our own: start the mDNS engine on the chosen interfaces,
//! announce this node, browse for others, and shut down with goodbye packets.
//! The TXT record <-> [`PeerRecord`] mapping is a pure function ([`txt`]), and
//! so is folding sightings into one entry per node ([`PeerTable`]).
//!
//! ```text
//!  Discovery::start(interfaces) ─► engine thread "mdns" (UDP 5353, IPv4 + IPv6 multicast)
//!        │ announce(record, port)      ─► responder: answers queries for our records only
//!        │ browse() ─► Browser::next() ◄─ bounded cache of _localstream._tcp instances
//!        │                │               + a one-shot query (oneshot.rs)
//!        │                └─► Event::{Resolved, Removed, Rejected} ─► PeerTable::apply ─► Change
//!        └ shutdown() ─► goodbye packets (twice), engine thread stopped
//! ```
//!
//! What it does not do: decide whom to trust. Everything here comes from
//! unauthenticated multicast; a record is a hint for where to connect, and the
//! handshake proves who answers. It does no I/O beyond what its engine does on
//! its own thread, and never blocks an async runtime except in
//! [`Discovery::shutdown`] (at most about a second; call it from a blocking
//! context).
//!
//! # Why not mdns-sd
//!
//! Discovery used to run on `mdns-sd` (0.21). Its daemon caches every record
//! of every response it cannot rule out: a response without PTR records is
//! taken as "for us" (`service_daemon.rs`, `handle_response`), so unsolicited
//! A records with ever new names are all kept, each with two timers, and a
//! browse keeps every instance of our type anyone announces. Nothing bounds
//! that cache (there is no size or TTL option), its read loop drains the socket
//! before it looks at commands (so under a flood it can neither be asked for
//! its metrics nor told to stop), and a browse subscription whose channel
//! fills up is closed for good. Measured with 3 million forged records from
//! one host (issue 13, `mdns-fake flood`): the listener grew from 10 MB to
//! 189 MB, and `peers --watch` printed 4 000 fake peers, reached 61 MB and
//! then stopped watching. Neither an option nor restarting the daemon fixes
//! that, so the engine here is our own, built on `simple-dns` (which the
//! one-shot query already used), `socket2` and `mio`:
//!
//! - the responder keeps nothing from the network: it parses a query, answers
//!   for its own names, and forgets it; responses are not even parsed into
//!   memory unless a browse is running;
//! - the browser keeps only PTR/SRV/TXT records of `_localstream._tcp.local.`
//!   instances and the addresses of their SRV targets, in a cache with fixed
//!   bounds (`cache.rs`: 256 instances, 32 from one source address, 16 new
//!   ones a second, TTLs capped at 75 minutes), and [`PeerTable`] holds at
//!   most [`table::MAX_PEERS`] nodes;
//! - packets are read in batches, so commands, timers and goodbyes run during
//!   a flood; packets from addresses outside the chosen links are dropped
//!   (RFC 6762 section 11); answers are rate-limited (once a second per link
//!   for multicast, RFC 6762 section 6; 16 a second for one-shot unicast).
//!
//! What it implements of RFC 6762 / 6763: announcing (twice, a second apart,
//! and again when an interface's addresses change), answering PTR, SRV, TXT,
//! A, AAAA and ANY questions with known-answer suppression and the 20-120 ms
//! delay for shared records, one-shot (legacy unicast) answers, goodbyes,
//! browsing with doubling query intervals and known answers, refreshing
//! records in the last fifth of their TTL, cache-flush, and expiry. It does
//! not probe (names derive from the node id, so they are unique without it)
//! and does not defend names.
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

#![warn(missing_docs, unreachable_pub)]

mod cache;
mod engine;
pub mod interfaces;
mod oneshot;
mod responder;
pub mod table;
pub mod txt;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use engine::Engine;
use responder::Service;

pub use interfaces::Interfaces;
pub use table::{Change, Peer, PeerTable};
pub use txt::{PeerRecord, TxtError};

/// The DNS-SD service type LocalStream nodes announce.
pub const SERVICE_TYPE: &str = "_localstream._tcp.local.";

/// How long [`Discovery::shutdown`] waits for each step.
const SHUTDOWN_STEP: Duration = Duration::from_millis(500);
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
    /// None of several named interfaces is there and up.
    #[error(
        "none of the network interfaces {} is up with an address (interfaces: {})",
        wanted.join(", "),
        list(available)
    )]
    NoNamedInterface {
        /// The names asked for.
        wanted: Vec<String>,
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
    /// The mDNS sockets (UDP port 5353) could not be set up.
    #[error("cannot open the mDNS socket (UDP port 5353): {0}")]
    Socket(#[source] std::io::Error),
    /// The mDNS engine has stopped (after [`Discovery::shutdown`]).
    #[error("the mDNS engine has stopped")]
    Stopped,
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

/// A running discovery engine.
pub struct Discovery {
    engine: Engine,
    interfaces: Vec<String>,
    links: Vec<oneshot::Link>,
    announced: bool,
}

impl Discovery {
    /// Starts the mDNS engine on the chosen interfaces.
    ///
    /// # Errors
    /// When the interfaces cannot be listed or chosen (see [`Error`]) or the
    /// mDNS sockets cannot be opened.
    pub fn start(choice: &Interfaces) -> Result<Discovery> {
        let all = interfaces::list()?;
        let names = interfaces::select(choice, &all)?;
        let engine = Engine::start(names.clone(), engine::links(&all, &names))?;
        debug!(interfaces = ?names, "mDNS engine started");
        let links = all
            .iter()
            .filter(|i| names.contains(&i.name))
            .flat_map(|i| &i.v4_nets)
            .map(|&(addr, mask)| oneshot::Link { addr, mask })
            .collect();
        Ok(Discovery {
            engine,
            interfaces: names,
            links,
            announced: false,
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
    /// A second call replaces the first.
    ///
    /// # Errors
    /// [`Error::Stopped`] when the engine is gone.
    pub fn announce(
        &mut self,
        record: &PeerRecord,
        port: u16,
        only: Option<IpAddr>,
        ipv4_only: bool,
    ) -> Result<()> {
        let service = Service::new(record, port);
        debug!(instance = %service.instance, port, "announced");
        self.engine
            .announce(service, only, ipv4_only && only.is_none())?;
        self.announced = true;
        Ok(())
    }

    /// Starts browsing for LocalStream nodes: the engine's continuous
    /// multicast browse, plus a one-shot query that responders answer at once
    /// (see `oneshot.rs`), both reported through the same [`Browser`]. A
    /// second browse takes over from the first (and hears what it learnt).
    ///
    /// # Errors
    /// When the engine is gone or a thread cannot start.
    pub fn browse(&self) -> Result<Browser> {
        let (tx, events) = flume::bounded(EVENT_QUEUE);
        self.engine.browse(tx.clone())?;
        if let Err(e) = oneshot::spawn(self.links.clone(), tx) {
            debug!(error = %e, "one-shot mDNS query unavailable; relying on the multicast browse");
        }
        Ok(Browser { events })
    }

    /// Withdraws the announcement (goodbye packets, sent twice) and stops the
    /// engine, waiting at most about a second. Blocks: call it from a blocking
    /// context. Failures are logged, not returned: there is nothing a caller
    /// could do about them on the way out.
    pub fn shutdown(self) {
        let started = Instant::now();
        if self.announced && !self.engine.withdraw(SHUTDOWN_STEP) {
            warn!("mDNS goodbye not confirmed");
        }
        if !self.engine.stop(SHUTDOWN_STEP) {
            debug!("mDNS engine did not confirm shutdown");
        }
        debug!(took = ?started.elapsed(), "mDNS engine stopped");
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

// Dropped without [`Discovery::shutdown`] (an error path), the engine still
// sends the goodbyes and stops, but nobody waits for it (`Engine`'s `Drop`).

/// Events from a browse.
#[derive(Debug)]
pub struct Browser {
    events: flume::Receiver<Event>,
}

impl Browser {
    /// The next event; `None` once the engine has stopped.
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
