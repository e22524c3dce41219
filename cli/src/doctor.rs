//! `localstream doctor`: why can't peers find or reach this node? Each check
//! says what it found and, when something is wrong, the concrete fix.
//!
//! 1. Interfaces: which ones discovery can use (up, multicast, not loopback,
//!    not a container/VM bridge).
//! 2. The listen port: free (or held by a running listener) and reachable on
//!    each address from this machine.
//! 3. Multicast: whether 224.0.0.251 (mDNS) is routed, and where.
//! 4. Firewall: nftables/iptables rules that drop mDNS or the port, when the
//!    rules are readable (as root).
//! 5. Discovery end to end: a throwaway announcement, which this node must
//!    see come back within a few seconds.
//!
//! Exit status 1 when something blocks receiving (being reached, or being
//! found by name); warnings alone leave it 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use localstream_discovery::interfaces::{self, Interface, is_virtual_bridge};
use localstream_discovery::{Discovery, Event, Interfaces, PeerRecord};

use crate::outln;
use localstream_node::{Error, Result};
use localstream_proto::names::escape_for_terminal;

/// The mDNS group and port.
const MDNS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 251)), 5353);
/// How long to wait for our own announcement.
const ECHO_WAIT: Duration = Duration::from_secs(3);
/// Linux interface flag: multicast capable.
const IFF_MULTICAST: u32 = 0x1000;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Note,
    Warn,
    Fail,
}

/// What `doctor` found.
#[derive(Debug, Default)]
struct Findings {
    failed: bool,
}

impl Findings {
    fn say(&mut self, level: Level, what: &str, fix: Option<&str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Note => "note",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed = true;
                "FAIL"
            }
        };
        outln!("{tag}  {what}");
        if let Some(fix) = fix {
            outln!("      fix: {fix}");
        }
    }
}

/// Runs `doctor`; `Ok(false)` when something blocks receiving.
pub async fn run(port: u16, choice: &Interfaces) -> Result<bool> {
    let mut f = Findings::default();
    outln!("LocalStream doctor (port {port})");
    let all = interfaces::list().map_err(Error::from)?;
    let usable = check_interfaces(&mut f, &all, choice);
    check_port(&mut f, port, &usable);
    check_multicast_route(&mut f, &all);
    check_firewall(&mut f, port);
    if usable.is_empty() {
        f.say(
            Level::Fail,
            "discovery not tried: no usable interface",
            Some("see the interfaces above"),
        );
    } else {
        check_echo(&mut f, choice).await;
    }
    if f.failed {
        outln!("something blocks receiving: see the fixes above");
    } else {
        outln!("nothing found that blocks receiving");
    }
    Ok(!f.failed)
}

/// Whether the OS marks the interface multicast-capable (`None`: unknown).
fn multicast_flag(name: &str) -> Option<bool> {
    let raw = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let flags = u32::from_str_radix(raw.trim().trim_start_matches("0x"), 16).ok()?;
    Some(flags & IFF_MULTICAST != 0)
}

fn check_interfaces(f: &mut Findings, all: &[Interface], choice: &Interfaces) -> Vec<Interface> {
    let chosen: Option<Vec<String>> = match choice {
        Interfaces::Named(n) => Some(n.clone()),
        Interfaces::Default => None,
    };
    let mut usable = Vec::new();
    for i in all {
        let addrs: Vec<String> = i
            .v4_nets
            .iter()
            .map(|(ip, mask)| format!("{ip}/{}", u32::from(*mask).count_ones()))
            .collect();
        let shown = format!("interface {} ({})", i.name, addrs.join(", "));
        if let Some(names) = &chosen
            && !names.contains(&i.name)
        {
            f.say(
                Level::Note,
                &format!("{shown}: not chosen (--interface / settings)"),
                None,
            );
            continue;
        }
        if i.loopback {
            f.say(
                Level::Note,
                &format!("{shown}: loopback, not used for discovery"),
                None,
            );
        } else if chosen.is_none() && is_virtual_bridge(&i.name) {
            f.say(
                Level::Note,
                &format!("{shown}: a container/VM bridge, not used by default"),
                Some(&format!(
                    "to use it anyway: `localstream config set interfaces {}`",
                    i.name
                )),
            );
        } else if i.down {
            f.say(
                Level::Warn,
                &format!("{shown}: down"),
                Some(&format!(
                    "bring it up: `ip link set {} up` (or connect the cable / Wi-Fi)",
                    i.name
                )),
            );
        } else if multicast_flag(&i.name) == Some(false) {
            f.say(
                Level::Fail,
                &format!("{shown}: multicast is off, so mDNS cannot work on it"),
                Some(&format!("`ip link set {} multicast on`", i.name)),
            );
        } else if i.v4_nets.is_empty() {
            f.say(Level::Warn, &format!("{shown}: no IPv4 address"), None);
        } else {
            f.say(
                Level::Ok,
                &format!("{shown}: up, multicast, used for discovery"),
                None,
            );
            usable.push(i.clone());
        }
    }
    // A name that matches nothing here (a typo, or another machine's name).
    let missing: Vec<&String> = chosen
        .iter()
        .flatten()
        .filter(|n| !all.iter().any(|i| &i.name == *n))
        .collect();
    let here: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
    for name in &missing {
        f.say(
            Level::Fail,
            &format!(
                "interface {}: there is no such interface on this machine",
                escape_for_terminal(name)
            ),
            Some(&format!(
                "choose one of {} with --interface NAME, or `localstream config set interfaces \
                 NAME` (`localstream config unset interfaces` for all)",
                here.join(", ")
            )),
        );
    }
    if usable.is_empty() {
        let fix = if missing.is_empty() {
            "connect to a network; peers can still send to this node by address (`localstream add`)"
        } else {
            "name an interface that is there (above)"
        };
        f.say(
            Level::Fail,
            "no interface can be used for discovery: peers cannot find this node by name",
            Some(fix),
        );
    }
    usable
}

fn check_port(f: &mut Findings, port: u16, usable: &[Interface]) {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(listener) => {
            let reached: Vec<String> = usable
                .iter()
                .flat_map(|i| {
                    i.v4_nets
                        .iter()
                        .map(|(ip, _)| SocketAddr::from((*ip, port)))
                })
                .filter(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
                .map(|a| a.to_string())
                .collect();
            drop(listener);
            let on = if reached.is_empty() {
                String::new()
            } else {
                format!("; reachable from here on {}", reached.join(", "))
            };
            f.say(
                Level::Ok,
                &format!("port {port}/tcp is free for `listen`{on}"),
                None,
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => f.say(
            Level::Warn,
            &format!(
                "port {port}/tcp is in use (by a running `localstream listen`? then all is well)"
            ),
            Some("if another program holds it: `localstream config set port 47471`"),
        ),
        Err(e) => f.say(
            Level::Fail,
            &format!("cannot listen on port {port}/tcp: {e}"),
            Some("choose another port: `localstream config set port 47470`"),
        ),
    }
}

fn check_multicast_route(f: &mut Findings, all: &[Interface]) {
    let via = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect(MDNS).and_then(|()| s.local_addr()));
    match via {
        Ok(local) => {
            let name = all
                .iter()
                .find(|i| i.addrs.contains(&local.ip()))
                .map_or_else(|| "an unnamed interface".to_owned(), |i| i.name.clone());
            f.say(
                Level::Ok,
                &format!(
                    "multicast to {} is routed (out through {name}, {})",
                    MDNS.ip(),
                    local.ip()
                ),
                None,
            );
        }
        Err(e) => f.say(
            Level::Fail,
            &format!("multicast to {} is not routed: {e}", MDNS.ip()),
            Some("add a route: `ip route add 224.0.0.0/4 dev eth0` (your LAN interface)"),
        ),
    }
}

/// A firewall rule that drops mDNS or the listen port, from `iptables-save`
/// or `nft list ruleset` output.
fn blocking_rules(ruleset: &str, port: u16) -> Vec<String> {
    let port = port.to_string();
    ruleset
        .lines()
        .map(str::trim)
        .filter(|l| {
            let lower = l.to_lowercase();
            (lower.contains("drop") || lower.contains("reject"))
                && (l.contains("224.0.0.251")
                    || l.contains("224.0.0.0/4")
                    || l.contains("5353")
                    || l.split(|c: char| !c.is_ascii_digit()).any(|w| w == port))
        })
        .map(str::to_owned)
        .collect()
}

fn check_firewall(f: &mut Findings, port: u16) {
    let mut read_any = false;
    for (tool, args) in [
        ("iptables-save", &[][..]),
        ("nft", &["list", "ruleset"][..]),
    ] {
        let Ok(out) = Command::new(tool).args(args).output() else {
            continue;
        };
        if !out.status.success() {
            continue;
        }
        read_any = true;
        let rules = String::from_utf8_lossy(&out.stdout);
        let blocking = blocking_rules(&rules, port);
        if blocking.is_empty() {
            f.say(
                Level::Ok,
                &format!("firewall ({tool}): no rule drops mDNS or port {port}"),
                None,
            );
        } else {
            for (i, rule) in blocking.iter().enumerate() {
                let fix = format!(
                    "remove the rule{s}, or allow mDNS and the port before {them}: \
                     `iptables -I INPUT -p udp --dport 5353 -j ACCEPT; \
                     iptables -I OUTPUT -d 224.0.0.251 -j ACCEPT; \
                     iptables -I INPUT -p tcp --dport {port} -j ACCEPT`",
                    s = if blocking.len() == 1 { "" } else { "s" },
                    them = if blocking.len() == 1 { "it" } else { "them" },
                );
                let last = i + 1 == blocking.len();
                f.say(
                    Level::Fail,
                    &format!("firewall ({tool}) drops mDNS or port {port}: {rule}"),
                    last.then_some(fix.as_str()),
                );
            }
        }
        if rules.contains(":INPUT DROP")
            || rules.contains("hook input priority filter; policy drop")
        {
            f.say(
                Level::Warn,
                "firewall: incoming traffic is dropped unless allowed",
                Some(&format!("make sure udp 5353 and tcp {port} are allowed")),
            );
        }
        // iptables-nft and nft show the same rules: one reading is enough.
        break;
    }
    if !read_any {
        f.say(
            Level::Note,
            "firewall rules not readable (no iptables/nft, or not root): not checked",
            Some("run `sudo localstream doctor` to check them"),
        );
    }
}

/// Announces a throwaway record and waits to see it come back.
async fn check_echo(f: &mut Findings, choice: &Interfaces) {
    let choice = choice.clone();
    let probe = uuid::Uuid::new_v4();
    let started = tokio::task::spawn_blocking(move || -> Result<Discovery> {
        let mut d = Discovery::start(&choice)?;
        let record = PeerRecord {
            version: 1,
            node_id: probe,
            fingerprint_prefix: [0; 8],
            name: "localstream-doctor".into(),
            mac: None,
        };
        d.announce(&record, 9, None, true)?;
        Ok(d)
    })
    .await;
    let discovery = match started.map_err(Error::from).and_then(|r| r) {
        Ok(d) => d,
        Err(e) => {
            f.say(Level::Fail, &format!("discovery cannot start: {e}"), None);
            return;
        }
    };
    let waited = Instant::now();
    let seen = match discovery.browse() {
        Ok(mut browser) => {
            let deadline = tokio::time::Instant::now() + ECHO_WAIT;
            loop {
                match tokio::time::timeout_at(deadline, browser.next()).await {
                    Ok(Some(Event::Resolved(s))) if s.record.node_id == probe => break true,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break false,
                }
            }
        }
        Err(_) => false,
    };
    let on = discovery.interfaces().join(", ");
    let _ = tokio::task::spawn_blocking(move || discovery.shutdown()).await;
    if seen {
        f.say(
            Level::Ok,
            &format!(
                "mDNS works here: this node saw its own announcement on {on} in {:.2} s",
                waited.elapsed().as_secs_f64()
            ),
            None,
        );
    } else {
        f.say(
            Level::Fail,
            &format!(
                "this node did not see its own announcement on {on} within {} s: multicast is \
                 filtered on this host, so peers cannot find it by name",
                ECHO_WAIT.as_secs()
            ),
            Some(
                "allow mDNS (udp 5353 to and from 224.0.0.251) in the firewall; meanwhile \
                 peers can reach this node by address (`localstream add NAME IP` on their side)",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_drop_mdns_or_the_port_are_found() {
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n\
                     -A OUTPUT -d 224.0.0.251/32 -j DROP\n\
                     -A INPUT -p tcp -m tcp --dport 47470 -j REJECT\n\
                     -A INPUT -p tcp -m tcp --dport 22 -j DROP\n\
                     -A INPUT -p udp --dport 5353 -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            blocking_rules(saved, 47470),
            [
                "-A OUTPUT -d 224.0.0.251/32 -j DROP",
                "-A INPUT -p tcp -m tcp --dport 47470 -j REJECT"
            ]
        );
        assert!(blocking_rules(saved, 47471).len() == 1);
    }
}
