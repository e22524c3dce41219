//! The engine's network side: the chosen links, the two mDNS sockets (IPv4
//! and IPv6, both on port 5353, shared with other responders on the host),
//! and multicast on one link.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use mio::net::UdpSocket;
use tracing::trace;

use crate::interfaces::Interface;
use crate::wire::{GROUP_V4, GROUP_V6, MDNS_PORT};

/// One chosen interface, as the engine uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub name: String,
    pub index: u32,
    pub v4: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub v6: Vec<(Ipv6Addr, Ipv6Addr)>,
}

impl Link {
    pub(crate) fn of(i: &Interface) -> Link {
        Link {
            name: i.name.clone(),
            index: i.index,
            v4: i.v4_nets.clone(),
            v6: i.v6_nets.clone(),
        }
    }

    /// Whether a packet from `from` was sent on this link.
    pub(crate) fn holds(&self, from: &SocketAddr) -> bool {
        match from {
            SocketAddr::V4(a) => self.v4.iter().any(|(ip, mask)| {
                let m = u32::from(*mask);
                u32::from(*ip) & m == u32::from(*a.ip()) & m
            }),
            SocketAddr::V6(a) if a.scope_id() != 0 => a.scope_id() == self.index,
            SocketAddr::V6(a) => self.v6.iter().any(|(ip, mask)| {
                let m = u128::from(*mask);
                u128::from(*ip) & m == u128::from(*a.ip()) & m
            }),
        }
    }
}

/// The links with these names, as the OS lists them now.
pub(crate) fn links(all: &[Interface], names: &[String]) -> Vec<Link> {
    all.iter()
        .filter(|i| names.contains(&i.name))
        .map(Link::of)
        .collect()
}

/// IPv4 or IPv6: the socket a packet travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    V4,
    V6,
}

pub(crate) fn open_v4() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MDNS_PORT).into())?;
    s.set_nonblocking(true)?;
    // RFC 6762 section 11: mDNS packets go out with TTL 255.
    s.set_multicast_ttl_v4(255)?;
    s.set_multicast_loop_v4(true)?;
    Ok(UdpSocket::from_std(s.into()))
}

pub(crate) fn open_v6() -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    s.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, MDNS_PORT, 0, 0).into())?;
    s.set_nonblocking(true)?;
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_loop_v6(true)?;
    Ok(UdpSocket::from_std(s.into()))
}

/// The families a link can be reached on, given which sockets are open.
pub(crate) fn families(v4: bool, v6: bool, link: &Link) -> Vec<Family> {
    let mut f = vec![];
    if v4 && !link.v4.is_empty() {
        f.push(Family::V4);
    }
    if v6 && !link.v6.is_empty() {
        f.push(Family::V6);
    }
    f
}

/// The addresses announced on `link`.
pub(crate) fn addresses(link: &Link, only: Option<IpAddr>, ipv4_only: bool) -> Vec<IpAddr> {
    let own = link.v4.iter().map(|(ip, _)| IpAddr::V4(*ip)).chain(
        link.v6
            .iter()
            .map(|(ip, _)| IpAddr::V6(*ip))
            .filter(|_| !ipv4_only),
    );
    match only {
        Some(ip) => own.filter(|a| *a == ip).collect(),
        None => own.collect(),
    }
}

pub(crate) fn multicast(
    socket: Option<&UdpSocket>,
    links: &[Link],
    index: u32,
    family: Family,
    bytes: &[u8],
) {
    let Some(socket) = socket else { return };
    let Some(link) = links.iter().find(|l| l.index == index) else {
        return;
    };
    let to = match family {
        Family::V4 => {
            let Some((ip, _)) = link.v4.first() else {
                return;
            };
            if let Err(e) = socket2::SockRef::from(socket).set_multicast_if_v4(ip) {
                trace!(%ip, error = %e, "IP_MULTICAST_IF");
                return;
            }
            SocketAddr::V4(SocketAddrV4::new(GROUP_V4, MDNS_PORT))
        }
        Family::V6 => {
            if let Err(e) = socket2::SockRef::from(socket).set_multicast_if_v6(index) {
                trace!(index, error = %e, "IPV6_MULTICAST_IF");
                return;
            }
            SocketAddr::V6(SocketAddrV6::new(GROUP_V6, MDNS_PORT, 0, index))
        }
    };
    send_to(Some(socket), bytes, to);
}

pub(crate) fn send_to(socket: Option<&UdpSocket>, bytes: &[u8], to: SocketAddr) {
    if let Some(s) = socket
        && let Err(e) = s.send_to(bytes, to)
    {
        trace!(%to, error = %e, "mDNS send failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_hold_their_own_sources_only() {
        let l = Link {
            name: "eth0".into(),
            index: 3,
            v4: vec![(
                "10.78.0.2".parse().unwrap(),
                "255.255.255.0".parse().unwrap(),
            )],
            v6: vec![(
                "2001:db8::2".parse().unwrap(),
                "ffff:ffff:ffff:ffff::".parse().unwrap(),
            )],
        };
        let holds = |s: &str| l.holds(&s.parse().unwrap());
        assert!(holds("10.78.0.9:5353"));
        assert!(!holds("10.78.1.9:5353"));
        assert!(holds("[fe80::1%3]:5353"));
        assert!(!holds("[fe80::1%4]:5353"));
        assert!(holds("[2001:db8::9]:5353"));
        assert!(!holds("[2001:db9::9]:5353"));
        assert_eq!(
            addresses(&l, None, false),
            [
                "10.78.0.2".parse::<IpAddr>().unwrap(),
                "2001:db8::2".parse().unwrap()
            ]
        );
        assert_eq!(addresses(&l, None, true).len(), 1);
        assert_eq!(
            addresses(&l, Some("2001:db8::2".parse().unwrap()), false).len(),
            1
        );
        assert!(addresses(&l, Some("10.0.0.1".parse().unwrap()), false).is_empty());
    }
}
