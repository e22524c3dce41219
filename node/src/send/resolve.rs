//! Resolve: whom `send` means and where to reach it.
//!
//! ```text
//!  Target::Addr ─────────────────────────────► that address (a LocalSend device on its port)
//!  Target::Lookup, discovery off ────────────► the peer store (an alias, a name, an id prefix)
//!  Target::Lookup ─► Wanted (what the store says the text means)
//!                 ─► discover::find ┬ found ─► trust::check_found ─► its announced addresses
//!                    (+ localsend::find) └ not found ─► the store's last addresses, else NotFound
//! ```
//!
//! The text is looked up in the store first: an alias given with `add`
//! names a pinned node id, and so does a name the store knows. Discovery
//! then stops as soon as that id answers with its pinned key (no settle
//! window: only first contact needs one), and its announced address is
//! used; when it does not answer, the address the store last reached it at
//! (never another node of the name, never a LocalSend device of the name).

use std::net::SocketAddr;
#[cfg(feature = "localsend")]
use std::time::Duration;
use std::time::Instant;

use localstream_discovery::txt::FINGERPRINT_PREFIX_BYTES;
use localstream_discovery::{Peer, PeerRecord};
use localstream_proto::names::escape_for_terminal;

use crate::config::{Discovery, SendConfig, Target};
use crate::context::Context;
use crate::discover::{self, Wanted};
use crate::error::{Error, ResolveError, Result};
use crate::event::{Notice, Resolved};
use crate::store::{Lookup, PeerStore, Trust};
use crate::trust;

/// With LocalSend on: once discovery has found no LocalStream node of the
/// name, how much longer LocalSend devices may take to answer (they have
/// been asked at the same time; without `--scan`).
#[cfg(feature = "localsend")]
const LOCALSEND_GRACE: Duration = Duration::from_millis(300);

/// Whom [`resolve`] found, and which protocol reaches it.
pub(super) enum Resolution {
    /// A LocalStream node: its addresses, and what it must prove to be.
    LocalStream(Vec<SocketAddr>, Option<PeerRecord>),
    /// A LocalSend device.
    #[cfg(feature = "localsend")]
    LocalSend(crate::localsend::send::Reach),
}

/// Resolve: the receiver's addresses, and what it must prove to be when it
/// was found by name (by discovery, else where the peer store last reached it).
pub(super) async fn resolve(cx: &Context, cfg: &SendConfig) -> Result<Resolution> {
    let name = match &cfg.target {
        #[cfg(feature = "localsend")]
        Target::Addr(a) if cfg.localsend.on && a.port() == cfg.localsend.port => {
            return Ok(Resolution::LocalSend(crate::localsend::send::Reach {
                addr: *a,
                expect: None,
            }));
        }
        Target::Addr(a) => return Ok(Resolution::LocalStream(vec![*a], None)),
        Target::Lookup(name) => name,
    };
    let Discovery::On(interfaces) = &cfg.discovery else {
        #[cfg(feature = "localsend")]
        if cfg.localsend.on
            && let Some(reach) = remembered_device(&cx.store, name)?
        {
            return Ok(Resolution::LocalSend(reach));
        }
        return from_store(cx, name);
    };
    let wanted = Wanted::new(name, cx.store.load()?);
    let started = Instant::now();
    let own = uuid::Uuid::from_bytes(cx.identity.node_id());
    #[cfg(feature = "localsend")]
    let found = if cfg.localsend.on && !wanted.names_a_pin() {
        match localsend_pick(cx, cfg, interfaces, &wanted, started).await? {
            Pick::Device(reach) => return Ok(Resolution::LocalSend(reach)),
            Pick::Node(found) => found,
        }
    } else {
        discover::find(interfaces, &wanted, cfg.find_timeout, own).await
    };
    #[cfg(not(feature = "localsend"))]
    let found = discover::find(interfaces, &wanted, cfg.find_timeout, own).await;
    found_node(cx, name, found, started).await
}

/// Discovery is off: where the peer store last reached the peer.
fn from_store(cx: &Context, name: &str) -> Result<Resolution> {
    let Some((addrs, record)) = remembered(&cx.store, name)? else {
        // `localhost:47470`, `nas.lan:47470`: a host name, which is not looked up.
        if let Some((host, port)) = name.rsplit_once(':')
            && !host.is_empty()
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::Usage(format!(
                "'{}' is not an address: host names are not looked up; give the IP address \
                 (IP:{port}, e.g. 127.0.0.1:{port} for this machine), or a peer's name without \
                 a port",
                escape_for_terminal(name)
            )));
        }
        return Err(Error::Usage(format!(
            "no peer named '{}' with a known address in the peer store: with \
             --no-discovery give its address (IP or IP:PORT), or `localstream add {} IP`",
            escape_for_terminal(name),
            escape_for_terminal(name)
        )));
    };
    cx.events.notice(Notice::Resolved(Resolved::FromStore {
        who: discover::describe(&record),
        addrs: addrs.clone(),
    }));
    Ok(Resolution::LocalStream(addrs, Some(record)))
}

/// What discovery's answer means for a LocalStream node: the node found
/// (checked against the store), else where the store last reached it.
async fn found_node(
    cx: &Context,
    name: &str,
    found: Result<Peer>,
    started: Instant,
) -> Result<Resolution> {
    match found {
        Ok(peer) => {
            cx.events.notice(Notice::Resolved(Resolved::Found {
                who: discover::describe(&peer.record),
                seconds: started.elapsed().as_secs_f64(),
            }));
            trust::check_found(&cx.store, name, &peer.record).await?;
            Ok(Resolution::LocalStream(peer.addrs, Some(peer.record)))
        }
        // Not on the network (another subnet, a VPN, multicast blocked):
        // where it was reached last time may still work.
        Err(e @ Error::Resolve(ResolveError::NotFound { waited, .. })) => {
            match remembered(&cx.store, name)? {
                Some((addrs, record)) => {
                    cx.events.notice(Notice::Resolved(Resolved::Remembered {
                        who: discover::describe(&record),
                        looked: waited.as_secs_f64(),
                        addrs: addrs.clone(),
                    }));
                    Ok(Resolution::LocalStream(addrs, Some(record)))
                }
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Where the peer store last reached the peer the user means by `name`, and
/// what it must prove to be (its id and pinned key): `None` when no such
/// peer, or none with an address.
fn remembered(store: &PeerStore, name: &str) -> Result<Option<(Vec<SocketAddr>, PeerRecord)>> {
    let data = store.load()?;
    let entry = match data.lookup(name) {
        Ok(e) => e,
        Err(Lookup::NotFound) => return Ok(None),
        Err(reason) => {
            return Err(Error::from(ResolveError::UnknownPeer {
                query: name.to_owned(),
                reason,
            }));
        }
    };
    if entry.trust == Trust::Blocked && !entry.localsend {
        // Said as a send by address would say it, not as "no such peer".
        return Err(crate::error::TrustError::Blocked(format!(
            "{} (id {}): `localstream trust {}` or `forget` it to send to it again",
            escape_for_terminal(entry.name().unwrap_or(name)),
            entry.node_id,
            crate::discover::short_id(&entry.node_id)
        ))
        .into());
    }
    if entry.addresses.is_empty() || entry.localsend {
        return Ok(None);
    }
    let mut fingerprint_prefix = [0u8; FINGERPRINT_PREFIX_BYTES];
    fingerprint_prefix.copy_from_slice(&entry.fingerprint[..FINGERPRINT_PREFIX_BYTES]);
    let record = PeerRecord {
        version: 1,
        node_id: entry.node_id,
        fingerprint_prefix,
        name: entry.name().unwrap_or_default().to_owned(),
        mac: entry.mac,
    };
    Ok(Some((entry.addresses.clone(), record)))
}

/// A LocalSend device the store knows by `name`, with an address.
#[cfg(feature = "localsend")]
fn remembered_device(
    store: &PeerStore,
    name: &str,
) -> Result<Option<crate::localsend::send::Reach>> {
    let data = store.load()?;
    Ok(data.lookup(name).ok().and_then(|e| {
        let addr = e.addresses.first().copied()?;
        (e.localsend && e.trust != Trust::Blocked).then_some(crate::localsend::send::Reach {
            addr,
            expect: Some(e.fingerprint),
        })
    }))
}

/// What [`localsend_pick`] chose.
#[cfg(feature = "localsend")]
enum Pick {
    /// A LocalSend device.
    Device(crate::localsend::send::Reach),
    /// What LocalStream discovery found (a LocalStream node of the name wins).
    Node(Result<Peer>),
}

/// Looks for LocalStream nodes and LocalSend devices of the name at once:
/// a LocalStream node of the name wins; a device when only devices answer
/// to it (or the store knows one by it).
#[cfg(feature = "localsend")]
async fn localsend_pick(
    cx: &Context,
    cfg: &SendConfig,
    interfaces: &localstream_discovery::Interfaces,
    wanted: &Wanted,
    started: Instant,
) -> Result<Pick> {
    let name = wanted.typed();
    let own = uuid::Uuid::from_bytes(cx.identity.node_id());
    let lstream = discover::find(interfaces, wanted, cfg.find_timeout, own);
    let lsend = crate::localsend::find(
        cx,
        cfg.localsend.port,
        name,
        interfaces,
        cfg.find_timeout,
        cfg.localsend.scan,
    );
    tokio::pin!(lstream, lsend);
    let (devices, node) = tokio::select! {
        r = &mut lstream => match r {
            // A LocalStream node of that name: the usual way.
            Ok(p) => return Ok(Pick::Node(Ok(p))),
            Err(e @ Error::Resolve(ResolveError::NotFound { .. })) => {
                // The LocalStream answers are in; the devices, asked at the
                // same time, have a moment more (a scan all its time).
                let devices = if cfg.localsend.scan {
                    lsend.await?
                } else {
                    match tokio::time::timeout(LOCALSEND_GRACE, &mut lsend).await {
                        Ok(d) => d?,
                        Err(_) => vec![],
                    }
                };
                (devices, Err(e))
            }
            Err(e) => return Err(e),
        },
        d = &mut lsend => {
            let d = d?;
            if d.is_empty() {
                return Ok(Pick::Node(lstream.await));
            }
            // A LocalStream node of the same name wins, if it answers now;
            // one that also speaks LocalSend is waited for in full.
            let wait = if d.iter().all(crate::localsend::Device::is_localstream) {
                cfg.find_timeout
            } else {
                Duration::from_millis(300)
            };
            match tokio::time::timeout(wait, &mut lstream).await {
                Ok(Ok(p)) => return Ok(Pick::Node(Ok(p))),
                Ok(Err(e)) => (d, Err(e)),
                Err(_) => (d, Err(Error::from(ResolveError::NoAddress))),
            }
        }
    };
    match devices.as_slice() {
        [] => Ok(match remembered_device(&cx.store, name)? {
            Some(reach) => Pick::Device(reach),
            None => Pick::Node(node),
        }),
        [d] => {
            cx.events.notice(Notice::Resolved(Resolved::Found {
                who: format!(
                    "{} (LocalSend, {}) [{}]",
                    escape_for_terminal(&d.info.shown_alias()),
                    discover::short_id(&d.node_id()),
                    crate::identity::short_fingerprint(&d.fingerprint)
                ),
                seconds: started.elapsed().as_secs_f64(),
            }));
            Ok(Pick::Device(crate::localsend::send::Reach {
                addr: d.addr,
                expect: Some(d.fingerprint),
            }))
        }
        many => Err(ResolveError::Ambiguous {
            query: name.to_owned(),
            matches: many.iter().map(device_match).collect(),
        }
        .into()),
    }
}

#[cfg(feature = "localsend")]
fn device_match(d: &crate::localsend::Device) -> crate::error::PeerMatch {
    crate::error::PeerMatch {
        name: format!("{} (LocalSend)", d.info.shown_alias()),
        id: d.node_id(),
        addresses: vec![d.addr.to_string()],
        trust: None,
    }
}
