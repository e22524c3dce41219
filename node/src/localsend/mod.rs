//! The LocalSend protocol (v2.1, as LocalSend 1.x speaks it), a second
//! wire protocol of the same node, so that phones and the other machines
//! running the LocalSend app can be reached and can send here.
//!
//! ```text
//!  listen ─► start() ─┬─ server (HTTPS, mutual TLS) ─► receive: the listener's Gate, store, history, fsutil
//!                     └─ multicast (224.0.0.167) ─► Devices ◄─ register requests
//!  peers  ─► browse() ─► multicast announcement, answers ─► Devices (─► scan() with --scan)
//!  send   ─► send::run ─► prepare-upload (PIN) ─► upload per file ─► cancel on Ctrl-C
//! ```
//!
//! A LocalSend device is known by its certificate's SHA-256 fingerprint,
//! pinned in the peer store on first use like a LocalStream key (its node
//! id there is derived from the fingerprint, [`wire::node_id`]). LocalSend
//! has no verification code: the fingerprint is what a user can compare.
//! Only HTTPS devices are spoken to; the download API (a browser fetching
//! files from the sender) is not served.

pub mod cert;
pub mod client;
pub mod limits;
mod multicast;
mod receive;
pub mod scan;
pub mod send;
mod server;
pub mod tls;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, LocalSendError, Result};
use crate::receive::Shared;
pub use wire::DeviceInfo;

pub use crate::config::LocalSendConfig;

/// A LocalSend device seen on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// What it says it is.
    pub info: DeviceInfo,
    /// Its certificate's fingerprint (as announced: a hint until it is met).
    pub fingerprint: [u8; 32],
    /// Where its HTTPS API answers.
    pub addr: SocketAddr,
}

impl Device {
    /// Whether it is a LocalStream node speaking LocalSend too (it says so
    /// in its model): such a node is reached by LocalStream's own protocol
    /// when it answers that way.
    #[must_use]
    pub fn is_localstream(&self) -> bool {
        self.info.device_model.as_deref() == Some(LOCALSTREAM_MODEL)
    }

    /// The id this node keeps it under.
    #[must_use]
    pub fn node_id(&self) -> uuid::Uuid {
        uuid::Uuid::from_bytes(wire::node_id(&self.fingerprint))
    }
}

/// The LocalSend devices this process has seen, by fingerprint; with a
/// listener running, also those its listener heard (a device answers an
/// announcement with a `register` request to the LocalSend port, which the
/// listener holds): the listener writes them to `<home>/localsend-devices.json`
/// and `peers` or `send` in another process read them from there.
#[derive(Debug, Default)]
pub struct Devices {
    map: Mutex<HashMap<[u8; 32], (Device, u64)>>,
    home: std::sync::OnceLock<std::path::PathBuf>,
    writes: std::sync::atomic::AtomicBool,
    written: Mutex<Option<Instant>>,
}

/// The file a listener shares its devices in.
pub const DEVICES_FILE: &str = "localsend-devices.json";
/// Devices are forgotten when not heard from for this long.
pub const DEVICE_TTL: Duration = Duration::from_secs(15 * 60);
/// Devices kept at most (forged announcements cannot grow it without bound).
pub const MAX_DEVICES: usize = 512;
/// Largest devices file read.
const MAX_DEVICES_FILE: u64 = 1 << 20;

/// A device as the file keeps it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Stored {
    info: DeviceInfo,
    fingerprint: String,
    addr: SocketAddr,
    seen_ms: u64,
}

impl Devices {
    /// A table that reads what the listener of `home` heard.
    #[must_use]
    pub fn in_home(home: &Path) -> Devices {
        let d = Devices::default();
        let _ = d.home.set(home.to_owned());
        d
    }

    /// This process runs the listener: it writes what it hears for the others.
    pub(crate) fn share(&self) {
        self.writes.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `info` was heard from `addr`.
    pub fn saw(&self, info: &DeviceInfo, fingerprint: [u8; 32], addr: SocketAddr) {
        let now = crate::store::now_ms();
        let fresh = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, (_, t)| now.saturating_sub(*t) < DEVICE_TTL.as_millis() as u64);
            if map.len() >= MAX_DEVICES && !map.contains_key(&fingerprint) {
                return;
            }
            let mut info = info.clone();
            info.announce = None;
            let device = Device {
                info,
                fingerprint,
                addr,
            };
            let fresh = map.get(&fingerprint).is_none_or(|(d, _)| *d != device);
            map.insert(fingerprint, (device, now));
            fresh
        };
        self.write_soon(fresh);
    }

    /// Writes the file (a listener only) when a device is new or changed,
    /// else at most every 5 s.
    fn write_soon(&self, fresh: bool) {
        if !self.writes.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let Some(home) = self.home.get().cloned() else {
            return;
        };
        {
            let mut last = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            if !fresh && last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let stored: Vec<Stored> = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(d, t)| Stored {
                info: d.info.clone(),
                fingerprint: wire::fingerprint_text(&d.fingerprint),
                addr: d.addr,
                seen_ms: *t,
            })
            .collect();
        let Ok(json) = serde_json::to_vec(&stored) else {
            return;
        };
        let write = move || {
            if let Err(e) = crate::fsutil::write_atomic(&home, DEVICES_FILE, &json, 0o600) {
                tracing::debug!(error = %e, "cannot share the LocalSend devices");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    /// The devices heard from in the last `within`: by this process, or
    /// by this home's listener.
    #[must_use]
    pub fn since(&self, within: Duration) -> Vec<Device> {
        let from = crate::store::now_ms().saturating_sub(within.as_millis() as u64);
        let mut all: HashMap<[u8; 32], Device> = self.shared(from);
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        for (fp, (d, t)) in map.iter() {
            if *t >= from {
                all.insert(*fp, d.clone());
            }
        }
        let mut v: Vec<Device> = all.into_values().collect();
        v.sort_by(|a, b| a.info.alias.cmp(&b.info.alias));
        v
    }

    /// What this home's listener wrote, heard since `from` (Unix ms).
    fn shared(&self, from: u64) -> HashMap<[u8; 32], Device> {
        if self.writes.load(std::sync::atomic::Ordering::SeqCst) {
            return HashMap::new();
        }
        let Some(home) = self.home.get() else {
            return HashMap::new();
        };
        let path = home.join(DEVICES_FILE);
        let Ok(meta) = std::fs::metadata(&path) else {
            return HashMap::new();
        };
        if meta.len() > MAX_DEVICES_FILE {
            return HashMap::new();
        }
        let stored: Vec<Stored> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        stored
            .into_iter()
            .filter(|s| s.seen_ms >= from)
            .filter_map(|s| {
                let fp = wire::parse_fingerprint(&s.fingerprint)?;
                Some((
                    fp,
                    Device {
                        info: s.info,
                        fingerprint: fp,
                        addr: s.addr,
                    },
                ))
            })
            .take(MAX_DEVICES)
            .collect()
    }
}

/// The model a LocalStream node gives in LocalSend's discovery.
pub const LOCALSTREAM_MODEL: &str = "LocalStream";

/// This node as LocalSend devices see it.
#[must_use]
pub fn describe(name: &str, cert: &cert::Certificate, port: u16) -> DeviceInfo {
    DeviceInfo {
        alias: name.to_owned(),
        version: wire::VERSION.to_owned(),
        device_model: Some(LOCALSTREAM_MODEL.to_owned()),
        device_type: Some("headless".to_owned()),
        fingerprint: cert.fingerprint_text(),
        port: Some(port),
        protocol: Some("https".to_owned()),
        download: false,
        announce: None,
    }
}

/// Loads (or makes) this node's LocalSend certificate.
///
/// # Errors
/// See [`cert::load_or_create`].
pub fn certificate(home: &Path) -> Result<cert::Certificate> {
    Ok(cert::load_or_create(home)?)
}

/// A listener's LocalSend side, running.
#[derive(Debug)]
pub(crate) struct Service {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    served: Arc<server::Served>,
    /// Sessions that ended (`ok`), for `listen --once`.
    pub ended: tokio::sync::mpsc::UnboundedReceiver<bool>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What [`start`] needs.
#[derive(Debug)]
pub(crate) struct Start<'a> {
    pub home: &'a Path,
    pub shared: Arc<Shared>,
    pub bind: IpAddr,
    pub cfg: &'a LocalSendConfig,
    /// Multicast on these interfaces (`None`: discovery is off).
    pub multicast: Option<&'a localstream_discovery::Interfaces>,
    pub devices: Arc<Devices>,
}

/// Starts the LocalSend side of a listener: the HTTPS API on `cfg.port`,
/// and (with discovery) the multicast announcement and answers.
///
/// # Errors
/// [`LocalSendError::PortTaken`] when another program holds the port,
/// or the certificate cannot be loaded.
pub(crate) async fn start(st: Start<'_>) -> Result<Service> {
    let cert = certificate(st.home)?;
    let tls_err = |e: rustls::Error| Error::LocalSend(LocalSendError::Tls(e.to_string()));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server(&cert).map_err(tls_err)?);
    let bind = SocketAddr::new(st.bind, st.cfg.port);
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(LocalSendError::PortTaken { port: st.cfg.port }.into());
        }
        Err(source) => return Err(Error::Bind { addr: bind, source }),
    };
    let addr = listener.local_addr()?;
    let me = describe(st.shared.identity.name(), &cert, addr.port());
    let (ended_tx, ended) = tokio::sync::mpsc::unbounded_channel();
    let served = Arc::new(server::Served {
        shared: st.shared,
        me: me.clone(),
        own: cert.fingerprint,
        pin: st.cfg.pin.clone(),
        pins: limits::Attempts::default(),
        slot: receive::Slot::default(),
        ended: ended_tx,
        devices: st.devices.clone(),
    });
    let stop = CancellationToken::new();
    st.devices.share();
    let mut tasks = vec![server::spawn(
        listener,
        acceptor,
        served.clone(),
        stop.clone(),
    )];
    if let Some(interfaces) = st.multicast {
        let addrs = multicast::interface_addrs(interfaces)?;
        let mc = multicast::Multicast::open(st.cfg.port, addrs)
            .map_err(|e| LocalSendError::Multicast(e.to_string()))?;
        let client = client::Client::new(&cert).map_err(tls_err)?;
        let mut announcement = me.clone();
        announcement.announce = Some(true);
        let (run, stop2, own) = (mc.clone(), stop.clone(), cert.fingerprint);
        tasks.push(tokio::spawn(run.run(
            me,
            own,
            st.devices,
            Some(client),
            stop2,
        )));
        let stop3 = stop.clone();
        tasks.push(tokio::spawn(async move {
            // As LocalSend does: a few announcements at start.
            for pause in [0u64, 500, 2000] {
                tokio::select! {
                    () = stop3.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(pause)) => {}
                }
                mc.send(&announcement).await;
            }
        }));
    }
    Ok(Service {
        stop,
        tasks,
        served,
        ended,
        addr,
    })
}

impl Service {
    /// Stops: the running session ends, the tasks stop.
    pub(crate) async fn stop(self) {
        self.served.slot.stop();
        // Let the session's end be written (its watcher sees the stop).
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Looks for LocalSend devices for `wait`: an announcement as this node
/// (`me`), then whatever answers or announces itself; `devices` (this
/// process's table, fed by a running listener too) gets them.
///
/// # Errors
/// When the interfaces cannot be listed. A multicast socket that cannot be
/// opened is not an error: only the devices already known are returned.
pub async fn browse(
    me: &DeviceInfo,
    own: [u8; 32],
    interfaces: &localstream_discovery::Interfaces,
    port: u16,
    wait: Duration,
    devices: &Arc<Devices>,
    stop: &CancellationToken,
) -> Result<Vec<Device>> {
    let started = Instant::now();
    let addrs = multicast::interface_addrs(interfaces)?;
    match multicast::Multicast::open(port, addrs) {
        Ok(mc) => {
            let end = CancellationToken::new();
            let reader =
                tokio::spawn(
                    mc.clone()
                        .run(me.clone(), own, devices.clone(), None, end.clone()),
                );
            let mut announcement = me.clone();
            announcement.announce = Some(true);
            mc.send(&announcement).await;
            let resend = tokio::time::sleep(wait.min(Duration::from_millis(400)) / 2);
            tokio::pin!(resend);
            let deadline = tokio::time::sleep(wait);
            tokio::pin!(deadline);
            let mut resent = false;
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    () = stop.cancelled() => break,
                    () = &mut resend, if !resent => {
                        resent = true;
                        mc.send(&announcement).await;
                    }
                }
            }
            end.cancel();
            let _ = reader.await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "LocalSend discovery unavailable");
        }
    }
    // A device heard by this home's listener shortly before counts too.
    Ok(devices.since(started.elapsed() + Duration::from_secs(60)))
}

/// The devices among `devices` that `typed` names: by alias (as names are
/// compared, [`crate::discover::same_name`]), by id prefix, or by
/// certificate fingerprint prefix (at least 4 hex digits).
#[must_use]
pub fn matching(devices: &[Device], typed: &str) -> Vec<Device> {
    let hex: String = typed.chars().filter(|c| *c != ':' && *c != '-').collect();
    let is_hex =
        hex.len() >= crate::store::MIN_PREFIX_DIGITS && hex.chars().all(|c| c.is_ascii_hexdigit());
    let by_name: Vec<Device> = devices
        .iter()
        .filter(|d| crate::discover::same_name(typed, &d.info.shown_alias()))
        .cloned()
        .collect();
    if !by_name.is_empty() || !is_hex {
        return by_name;
    }
    let hex = hex.to_ascii_lowercase();
    devices
        .iter()
        .filter(|d| {
            d.node_id().simple().to_string().starts_with(&hex)
                || wire::fingerprint_text(&d.fingerprint)
                    .to_ascii_lowercase()
                    .starts_with(&hex)
        })
        .cloned()
        .collect()
}

/// How long discovery goes on after a first match, for a second one of the
/// same name to show up.
const SETTLE: Duration = Duration::from_millis(300);

/// Looks for the device `typed` names for at most `wait` (less once one
/// matches), then, with `scan` and none found, scans the subnets.
///
/// # Errors
/// When the interfaces cannot be listed or the certificate loaded.
pub(crate) async fn find(
    cx: &crate::context::Context,
    port: u16,
    typed: &str,
    interfaces: &localstream_discovery::Interfaces,
    wait: Duration,
    scan: bool,
) -> Result<Vec<Device>> {
    let cert = certificate(&cx.home)?;
    let me = describe(cx.identity.name(), &cert, port);
    let stop = CancellationToken::new();
    let looking = browse(
        &me,
        cert.fingerprint,
        interfaces,
        port,
        wait,
        &cx.devices,
        &stop,
    );
    tokio::pin!(looking);
    let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let started = Instant::now();
    let found = loop {
        tokio::select! {
            r = &mut looking => break r?,
            () = tokio::time::sleep(Duration::from_millis(50)), if settle.is_none() => {
                if !matching(&cx.devices.since(started.elapsed() + Duration::from_secs(60)), typed).is_empty() {
                    settle = Some(Box::pin(tokio::time::sleep(SETTLE)));
                }
            }
            () = async { match settle.as_mut() { Some(s) => s.await, None => std::future::pending().await } } => {
                stop.cancel();
            }
        }
    };
    let mut matches = matching(&found, typed);
    if matches.is_empty() && scan {
        let client = client::Client::new(&cert).map_err(|e| LocalSendError::Tls(e.to_string()))?;
        let nets = scan_nets(interfaces)?;
        let seen = scan::scan(
            &client,
            &me,
            cert.fingerprint,
            scan::targets(&nets, port),
            &cx.devices,
        )
        .await;
        matches = matching(&seen, typed);
    }
    Ok(matches)
}

/// The IPv4 networks of the interfaces discovery uses.
fn scan_nets(
    choice: &localstream_discovery::Interfaces,
) -> Result<Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>> {
    let all = localstream_discovery::interfaces::list()?;
    let names = localstream_discovery::interfaces::select(choice, &all)?;
    Ok(all
        .iter()
        .filter(|i| names.contains(&i.name))
        .flat_map(|i| i.v4_nets.iter().copied())
        .collect())
}

/// `peers`: the LocalSend devices on the network (multicast, then with
/// `scan` the subnet scan), as this node's store sees them; with `watch`,
/// each new one is reported as it is heard ([`crate::Event::PeerSeen`]).
///
/// # Errors
/// When the interfaces cannot be listed or the certificate loaded.
pub(crate) async fn peers(
    cx: &crate::context::Context,
    port: u16,
    cfg: &crate::config::PeersConfig,
    store: &crate::store::StoreData,
    stop: &CancellationToken,
) -> Result<Vec<crate::event::PeerInfo>> {
    let cert = certificate(&cx.home)?;
    let me = describe(cx.identity.name(), &cert, port);
    // Watching: until stopped (re-announcing now and then).
    let wait = cfg.timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
    let started = Instant::now();
    let looking = browse(
        &me,
        cert.fingerprint,
        &cfg.interfaces,
        port,
        wait,
        &cx.devices,
        stop,
    );
    tokio::pin!(looking);
    let mut reported = std::collections::HashSet::new();
    let mut found = loop {
        tokio::select! {
            r = &mut looking => break r?,
            () = tokio::time::sleep(Duration::from_millis(250)), if cfg.watch => {
                for d in cx.devices.since(started.elapsed()) {
                    if !d.is_localstream() && reported.insert(d.fingerprint) {
                        cx.events.emit(crate::Event::PeerSeen { peer: device_info(&d, store) });
                    }
                }
            }
        }
    };
    if cfg.scan && !stop.is_cancelled() {
        let client = client::Client::new(&cert).map_err(|e| LocalSendError::Tls(e.to_string()))?;
        let nets = scan_nets(&cfg.interfaces)?;
        for d in scan::scan(
            &client,
            &me,
            cert.fingerprint,
            scan::targets(&nets, port),
            &cx.devices,
        )
        .await
        {
            if !found.iter().any(|f| f.fingerprint == d.fingerprint) {
                found.push(d);
            }
        }
    }
    Ok(found.iter().map(|d| device_info(d, store)).collect())
}

/// A LocalSend device as `peers` lists it: its trust state here, or
/// `CHANGED` when a LocalSend device of that name is pinned with another
/// certificate.
#[must_use]
pub fn device_info(d: &Device, store: &crate::store::StoreData) -> crate::event::PeerInfo {
    let id = d.node_id();
    let alias = d.info.shown_alias();
    let pinned_other = store.peers().iter().find(|e| {
        e.node_id != id
            && e.localsend
            && e.name()
                .is_some_and(|n| crate::discover::looks_like(&alias, n))
    });
    let (trust, pinned_key) = match (store.get(&id), pinned_other) {
        (Some(e), _) => (e.trust.as_str(), None),
        (None, Some(other)) => (
            "CHANGED",
            Some(crate::identity::short_fingerprint(&other.fingerprint)),
        ),
        (None, None) => ("unpinned", None),
    };
    let kind = d.info.kind();
    crate::event::PeerInfo {
        name: alias,
        id: id.hyphenated().to_string(),
        short_id: crate::label::short_id(&id),
        addresses: vec![d.addr.ip().to_string()],
        port: d.addr.port(),
        fingerprint: crate::identity::short_fingerprint(&d.fingerprint),
        mac: None,
        version: 2,
        trust,
        alias: store.get(&id).and_then(|e| e.alias.clone()),
        conflicting: Vec::new(),
        pinned_key,
        protocol: "localsend",
        device: (!kind.is_empty()).then_some(kind),
    }
}
