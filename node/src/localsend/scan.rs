//! The subnet scan LocalSend falls back on when multicast is blocked: a
//! `register` request to every address of this node's IPv4 subnets (at
//! most the /24 around each address), a few dozen at a time, each given a
//! moment to answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::client::{Client, Request, json_body};
use super::wire::{self, DeviceInfo};
use super::{Device, Devices};

/// Requests in flight at once.
pub const CONCURRENCY: usize = 64;
/// How long one address may take to answer.
pub const TIMEOUT: Duration = Duration::from_millis(1500);

/// The addresses to try: every host of each `(address, netmask)`, at most
/// the /24 around the address, leaving the node's own addresses out.
#[must_use]
pub fn targets(nets: &[(Ipv4Addr, Ipv4Addr)], port: u16) -> Vec<SocketAddr> {
    let own: Vec<Ipv4Addr> = nets.iter().map(|(a, _)| *a).collect();
    let mut out = Vec::new();
    for (addr, mask) in nets {
        if addr.is_loopback() || addr.is_link_local() {
            continue;
        }
        let mask = u32::from(*mask).max(0xffff_ff00);
        let net = u32::from(*addr) & mask;
        let broadcast = net | !mask;
        for h in net + 1..broadcast {
            let ip = Ipv4Addr::from(h);
            let target = SocketAddr::new(IpAddr::V4(ip), port);
            if !own.contains(&ip) && !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out
}

/// Asks every target who it is; the devices that answer go into `devices`
/// and are returned.
pub async fn scan(
    client: &Client,
    me: &DeviceInfo,
    own: [u8; 32],
    targets: Vec<SocketAddr>,
    devices: &Arc<Devices>,
) -> Vec<Device> {
    let found = futures_util::stream::iter(targets)
        .map(|addr| async move {
            let (body, length) = json_body(me);
            let req = Request {
                path: &format!("{}/register", wire::API),
                body,
                length,
                expect: None,
                answer_limit: wire::MAX_INFO_BODY,
                timeout: Some(TIMEOUT),
            };
            let answer = tokio::time::timeout(TIMEOUT, client.post(addr, req))
                .await
                .ok()?
                .ok()?;
            if answer.status != 200 || answer.fingerprint == own {
                return None;
            }
            let info: DeviceInfo = serde_json::from_slice(&answer.body).ok()?;
            Some((info, answer.fingerprint, addr))
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|x| async move { x })
        .collect::<Vec<_>>()
        .await;
    found
        .into_iter()
        .map(|(info, fingerprint, addr)| {
            devices.saw(&info, fingerprint, addr);
            Device {
                info,
                fingerprint,
                addr,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_24_without_ourselves_and_wider_nets_cut_to_it() {
        let t = targets(
            &[(
                Ipv4Addr::new(192, 168, 1, 7),
                Ipv4Addr::new(255, 255, 255, 0),
            )],
            53317,
        );
        assert_eq!(t.len(), 253);
        assert!(!t.contains(&SocketAddr::from(([192, 168, 1, 7], 53317))));
        assert!(t.contains(&SocketAddr::from(([192, 168, 1, 1], 53317))));
        assert!(!t.contains(&SocketAddr::from(([192, 168, 1, 255], 53317))));
        let wide = targets(
            &[(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 0, 0, 0))],
            1,
        );
        assert_eq!(wide.len(), 253);
        let small = targets(
            &[(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(255, 255, 255, 252),
            )],
            1,
        );
        assert_eq!(small, vec![SocketAddr::from(([10, 0, 0, 2], 1))]);
        assert!(targets(&[(Ipv4Addr::LOCALHOST, Ipv4Addr::new(255, 0, 0, 0))], 1).is_empty());
    }
}
