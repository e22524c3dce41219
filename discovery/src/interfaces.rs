//! Which network interfaces discovery runs on.
//!
//! By default: every interface that is up and has an address, except loopback
//! and the virtual bridges of containers and VMs (docker0, virbr0, ...), where
//! announcing would only leak the node into places no user sits. `--interface`
//! names them explicitly (then loopback and bridges are allowed too).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Error, Result};

/// The user's choice of interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Interfaces {
    /// Every usable interface (see the module docs).
    #[default]
    Default,
    /// Exactly these, by name.
    Named(Vec<String>),
}

/// One interface of this machine, as seen when discovery starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`, `wlan0`, ...).
    pub name: String,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// Whether it is a loopback interface.
    pub loopback: bool,
    /// Whether the OS says it is down.
    pub down: bool,
    /// Its IPv4 addresses with their netmasks.
    pub v4_nets: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Its IPv6 addresses with their netmasks.
    pub v6_nets: Vec<(Ipv6Addr, Ipv6Addr)>,
    /// The OS's index for it (0 when unknown): the scope of its IPv6
    /// link-local addresses.
    pub index: u32,
}

impl Interface {
    /// Whether the default choice uses it.
    #[must_use]
    pub fn usable_by_default(&self) -> bool {
        !self.loopback && !self.down && !is_virtual_bridge(&self.name) && !self.addrs.is_empty()
    }
}

/// Name prefixes of the bridges and virtual links that container and VM
/// managers create (Docker, libvirt, LXC/LXD, Podman, CNI/Kubernetes,
/// VirtualBox, VMware, Hyper-V).
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker",
    "br-",
    "virbr",
    "veth",
    "vnet",
    "lxcbr",
    "lxdbr",
    "podman",
    "cni",
    "flannel",
    "cali",
    "weave",
    "kube-",
    "vboxnet",
    "vmnet",
    "vEthernet",
];

/// Whether `name` looks like a container/VM bridge or virtual link.
#[must_use]
pub fn is_virtual_bridge(name: &str) -> bool {
    VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// This machine's interfaces that have at least one address, by name.
///
/// # Errors
/// [`Error::Interfaces`] when the OS cannot list them.
pub fn list() -> Result<Vec<Interface>> {
    let raw = if_addrs::get_if_addrs().map_err(Error::Interfaces)?;
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    for i in raw {
        let entry = by_name.entry(i.name.clone()).or_insert_with(|| Interface {
            name: i.name.clone(),
            addrs: vec![],
            loopback: i.is_loopback(),
            down: i.oper_status == if_addrs::IfOperStatus::Down,
            v4_nets: vec![],
            v6_nets: vec![],
            index: i.index.unwrap_or(0),
        });
        entry.addrs.push(i.ip());
        match &i.addr {
            if_addrs::IfAddr::V4(v4) => entry.v4_nets.push((v4.ip, v4.netmask)),
            if_addrs::IfAddr::V6(v6) => entry.v6_nets.push((v6.ip, v6.netmask)),
        }
    }
    Ok(by_name.into_values().collect())
}

/// The named interfaces that [`select`] leaves out because they are not
/// there now: absent, without an address, or down (Wi-Fi switched off).
/// Always empty for the default choice.
#[must_use]
pub fn unusable(choice: &Interfaces, all: &[Interface]) -> Vec<String> {
    let Interfaces::Named(wanted) = choice else {
        return vec![];
    };
    let mut out: Vec<String> = vec![];
    for name in wanted {
        let usable = all.iter().any(|i| &i.name == name && !i.down);
        if !usable && !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Resolves the user's choice against the interfaces that exist: the names
/// discovery will use, in order. Of named interfaces, those that are there
/// and up are used; the others ([`unusable`]) are left out, since an
/// interface may come and go (Wi-Fi), as long as one is left.
///
/// # Errors
/// When none of the named interfaces is usable: [`Error::UnknownInterface`]
/// or [`Error::InterfaceDown`] for the one name given, else
/// [`Error::NoNamedInterface`]; and [`Error::NoInterface`] when the default
/// choice finds nothing usable.
pub fn select(choice: &Interfaces, all: &[Interface]) -> Result<Vec<String>> {
    let names = |f: &dyn Fn(&Interface) -> bool| -> Vec<String> {
        all.iter()
            .filter(|i| f(i))
            .map(|i| i.name.clone())
            .collect()
    };
    match choice {
        Interfaces::Default => {
            let usable = names(&Interface::usable_by_default);
            if usable.is_empty() {
                return Err(Error::NoInterface {
                    available: names(&|_| true),
                });
            }
            Ok(usable)
        }
        Interfaces::Named(wanted) => {
            let mut chosen: Vec<String> = vec![];
            for name in wanted {
                let up = all.iter().any(|i| &i.name == name && !i.down);
                if up && !chosen.contains(name) {
                    chosen.push(name.clone());
                }
            }
            if !chosen.is_empty() {
                return Ok(chosen);
            }
            let available = names(&|_| true);
            match wanted.as_slice() {
                [one] if all.iter().any(|i| &i.name == one) => {
                    Err(Error::InterfaceDown(one.clone()))
                }
                [one] => Err(Error::UnknownInterface {
                    name: one.clone(),
                    available,
                }),
                _ => Err(Error::NoNamedInterface {
                    wanted: wanted.clone(),
                    available,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intf(name: &str, addr: &str, loopback: bool, down: bool) -> Interface {
        Interface {
            name: name.into(),
            addrs: vec![addr.parse().unwrap()],
            loopback,
            down,
            v4_nets: vec![],
            v6_nets: vec![],
            index: 0,
        }
    }

    fn machine() -> Vec<Interface> {
        vec![
            intf("lo", "127.0.0.1", true, false),
            intf("eth0", "192.168.1.20", false, false),
            intf("wlan0", "fe80::1", false, false),
            intf("docker0", "172.17.0.1", false, false),
            intf("virbr0", "192.168.122.1", false, false),
            intf("br-5f2a", "172.18.0.1", false, false),
            intf("eth1", "10.0.0.2", false, true),
        ]
    }

    #[test]
    fn default_skips_loopback_bridges_and_down() {
        let got = select(&Interfaces::Default, &machine()).unwrap();
        assert_eq!(got, ["eth0", "wlan0"]);
    }

    #[test]
    fn named_interfaces_are_checked() {
        let all = machine();
        let pick = |v: &[&str]| {
            select(
                &Interfaces::Named(v.iter().map(|s| s.to_string()).collect()),
                &all,
            )
        };
        assert_eq!(
            pick(&["wlan0", "eth0", "wlan0"]).unwrap(),
            ["wlan0", "eth0"]
        );
        // Explicitly named loopback and bridges are the user's call.
        assert_eq!(pick(&["lo", "docker0"]).unwrap(), ["lo", "docker0"]);
        let e = pick(&["eth9"]).unwrap_err();
        assert!(matches!(&e, Error::UnknownInterface { name, available }
            if name == "eth9" && available.contains(&"eth0".to_string())));
        let msg = e.to_string();
        assert!(msg.contains("eth9") && msg.contains("eth0, wlan0"), "{msg}");
        assert!(matches!(pick(&["eth1"]), Err(Error::InterfaceDown(n)) if n == "eth1"));
    }

    #[test]
    fn named_interfaces_that_are_not_there_are_left_out_while_one_is() {
        let all = machine();
        let named = |v: &[&str]| Interfaces::Named(v.iter().map(|s| s.to_string()).collect());
        // Wi-Fi off: wlan9 is absent, eth1 is down; eth0 is used.
        let choice = named(&["wlan9", "eth0", "eth1", "wlan9"]);
        assert_eq!(select(&choice, &all).unwrap(), ["eth0"]);
        assert_eq!(unusable(&choice, &all), ["wlan9", "eth1"]);
        assert!(unusable(&named(&["eth0"]), &all).is_empty());
        assert!(unusable(&Interfaces::Default, &all).is_empty());
        // None left: an error that names them all.
        let e = select(&named(&["wlan9", "eth1"]), &all).unwrap_err();
        assert_eq!(
            e.to_string(),
            "none of the network interfaces wlan9, eth1 is up with an address \
             (interfaces: lo, eth0, wlan0, docker0, virbr0, br-5f2a, eth1)"
        );
    }

    #[test]
    fn nothing_usable() {
        let all = vec![
            intf("lo", "127.0.0.1", true, false),
            intf("docker0", "172.17.0.1", false, false),
        ];
        let e = select(&Interfaces::Default, &all).unwrap_err();
        assert!(matches!(&e, Error::NoInterface { available } if available.len() == 2));
        assert!(e.to_string().contains("--interface"), "{e}");
    }

    #[test]
    fn virtual_bridges() {
        for n in [
            "docker0", "virbr0", "veth12ab", "br-0a1b", "vboxnet0", "cni0",
        ] {
            assert!(is_virtual_bridge(n), "{n}");
        }
        for n in [
            "eth0", "enp3s0", "wlan0", "wlp2s0", "en0", "bridge0", "tun0",
        ] {
            assert!(!is_virtual_bridge(n), "{n}");
        }
    }
}
