//! LocalSend's discovery: JSON datagrams on 224.0.0.167 (port 53317 by
//! default). An announcement (`announce: true`) is answered with a
//! `register` request to the announcer's HTTPS port, or, when that fails,
//! with a multicast answer (`announce: false`).
//!
//! Answers are rate-limited per source and overall: a forged announcement
//! must not turn this node into a request cannon aimed at other hosts.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Devices;
use super::client::{Client, Request, json_body};
use super::wire::{self, DeviceInfo};

/// One answer per source this often at most.
const ANSWER_EVERY: Duration = Duration::from_secs(2);
/// Answers overall per [`ANSWER_WINDOW`].
const ANSWERS_OVERALL: usize = 32;
const ANSWER_WINDOW: Duration = Duration::from_secs(10);
/// How long a `register` answer may take before the multicast one is sent.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The discovery socket, joined to the group on the chosen interfaces.
#[derive(Debug, Clone)]
pub(crate) struct Multicast {
    socket: Arc<UdpSocket>,
    interfaces: Arc<Vec<Ipv4Addr>>,
    port: u16,
}

/// The IPv4 addresses of the interfaces discovery uses.
///
/// # Errors
/// When the interfaces cannot be listed or a named one does not exist.
pub(crate) fn interface_addrs(
    choice: &localstream_discovery::Interfaces,
) -> crate::Result<Vec<Ipv4Addr>> {
    let all = localstream_discovery::interfaces::list()?;
    let names = localstream_discovery::interfaces::select(choice, &all)?;
    Ok(all
        .iter()
        .filter(|i| names.contains(&i.name))
        .flat_map(|i| i.v4_nets.iter().map(|(a, _)| *a))
        .collect())
}

impl Multicast {
    /// Binds the group's port (shared with other LocalSend programs on this
    /// machine) and joins the group on `interfaces`.
    ///
    /// # Errors
    /// When the socket cannot be made or bound, or no interface can join.
    pub(crate) fn open(port: u16, interfaces: Vec<Ipv4Addr>) -> io::Result<Multicast> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(1)?;
        let mut joined = Vec::new();
        for a in &interfaces {
            match socket.join_multicast_v4(&wire::MULTICAST_GROUP, a) {
                Ok(()) => joined.push(*a),
                Err(e) => debug!(interface = %a, error = %e, "cannot join the LocalSend group"),
            }
        }
        if joined.is_empty() {
            return Err(io::Error::other(
                "no interface could join the LocalSend multicast group",
            ));
        }
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(Multicast {
            socket: Arc::new(socket),
            interfaces: Arc::new(joined),
            port,
        })
    }

    /// Sends `info` to the group on every interface.
    pub(crate) async fn send(&self, info: &DeviceInfo) {
        let Ok(bytes) = serde_json::to_vec(info) else {
            return;
        };
        let group = SocketAddrV4::new(wire::MULTICAST_GROUP, self.port);
        for a in self.interfaces.iter() {
            if let Err(e) = SockRef::from(&*self.socket).set_multicast_if_v4(a) {
                debug!(interface = %a, error = %e, "cannot pick the interface");
                continue;
            }
            if let Err(e) = self.socket.send_to(&bytes, group).await {
                debug!(interface = %a, error = %e, "LocalSend announcement not sent");
            }
        }
    }

    /// Reads datagrams until `stop`: every device seen goes into
    /// `devices`; with `answer`, announcements are answered as `me`.
    pub(crate) async fn run(
        self,
        me: DeviceInfo,
        own: [u8; 32],
        devices: Arc<Devices>,
        answer: Option<Client>,
        stop: CancellationToken,
    ) {
        let mut buf = vec![0u8; wire::MAX_DATAGRAM];
        let limiter = Arc::new(Mutex::new(Answers::default()));
        loop {
            let (n, from) = tokio::select! {
                () = stop.cancelled() => return,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "LocalSend multicast read failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(info) = serde_json::from_slice::<DeviceInfo>(&buf[..n]) else {
                continue;
            };
            let Some(fp) = info.fingerprint() else {
                continue;
            };
            if fp == own || !info.https() {
                continue;
            }
            let addr = SocketAddr::new(from.ip().to_canonical(), info.port.unwrap_or(wire::PORT));
            devices.saw(&info, fp, addr);
            if info.announce == Some(true)
                && let Some(client) = &answer
                && lock(&limiter).allow(addr.ip(), Instant::now())
            {
                let (me, client, mc) = (me.clone(), client.clone(), self.clone());
                tokio::spawn(async move { mc.answer(&client, me, addr, fp).await });
            }
        }
    }

    /// Answers an announcement: `register` over HTTPS, else multicast.
    async fn answer(&self, client: &Client, me: DeviceInfo, to: SocketAddr, fp: [u8; 32]) {
        let mut info = me;
        info.announce = None;
        let (body, length) = json_body(&info);
        let r = client
            .post(
                to,
                Request {
                    path: &format!("{}/register", wire::API),
                    body,
                    length,
                    expect: Some(fp),
                    answer_limit: wire::MAX_INFO_BODY,
                    timeout: Some(REGISTER_TIMEOUT),
                },
            )
            .await;
        if let Err(e) = r {
            debug!(%to, error = %e, "register failed; answering by multicast");
            info.announce = Some(false);
            self.send(&info).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Answers {
    last: HashMap<IpAddr, Instant>,
    recent: Vec<Instant>,
}

impl Answers {
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.recent
            .retain(|t| now.duration_since(*t) < ANSWER_WINDOW);
        self.last
            .retain(|_, t| now.duration_since(*t) < ANSWER_EVERY);
        if self.recent.len() >= ANSWERS_OVERALL || self.last.contains_key(&ip) {
            return false;
        }
        self.recent.push(now);
        self.last.insert(ip, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_limited_per_source_and_overall() {
        let mut a = Answers::default();
        let t = Instant::now();
        assert!(a.allow(IpAddr::from([10, 0, 0, 1]), t));
        assert!(!a.allow(IpAddr::from([10, 0, 0, 1]), t));
        assert!(a.allow(IpAddr::from([10, 0, 0, 1]), t + ANSWER_EVERY));
        for n in 0..64u8 {
            a.allow(IpAddr::from([10, 0, 1, n]), t + ANSWER_EVERY);
        }
        assert!(!a.allow(IpAddr::from([10, 0, 2, 1]), t + ANSWER_EVERY));
        assert!(a.allow(
            IpAddr::from([10, 0, 2, 1]),
            t + ANSWER_EVERY + ANSWER_WINDOW
        ));
    }
}
