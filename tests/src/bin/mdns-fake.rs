//! `mdns-fake`: announce or browse `_localstream._tcp.local.` records with
//! mdns-sd directly, bypassing LocalStream's own discovery code. The scenarios
//! use it to put forged or malformed records on the test LAN and to check
//! that multicast crosses it.
//!
//! ```text
//! mdns-fake announce INSTANCE IP PORT [KEY=VALUE]...
//!     registers the instance (no probing, so it answers at once), prints
//!     `announced <fullname>` once the announcement went out, runs until killed
//! mdns-fake browse
//!     prints `resolved <fullname> port=<port> addrs=<a,b> txt=<k=v;...>` per
//!     resolved instance and `removed <fullname>` per goodbye, until killed
//! mdns-fake flood N [PER_PACKET]
//!     multicasts N forged records (PER_PACKET to a response, default 8) from
//!     port 5353 on eth0, every name unique: half the packets carry A records
//!     only, half whole `_localstream._tcp.local.` instances (PTR, SRV, TXT
//!     that passes validation, A); prints `flooded <records> records in
//!     <packets> packets in <seconds> s` and exits
//! ```
//!
//! Only for test network namespaces: it refuses to run in the machine's initial
//! network namespace and uses no interface but `eth0`.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

const SERVICE_TYPE: &str = "_localstream._tcp.local.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = inside_test_namespace() {
        eprintln!("mdns-fake: refusing to run: {e}");
        return ExitCode::from(2);
    }
    let result = match args.first().map(String::as_str) {
        Some("announce") if args.len() >= 4 => announce(&args[1], &args[2], &args[3], &args[4..]),
        Some("browse") if args.len() == 1 => browse(),
        Some("flood") if (2..=3).contains(&args.len()) => flood(&args[1], args.get(2)),
        Some("hold") if args.len() == 3 => hold(&args[1], &args[2]),
        _ => {
            eprintln!(
                "usage: mdns-fake announce INSTANCE IP PORT [KEY=VALUE]...\n       \
                 mdns-fake browse\n       mdns-fake flood N [PER_PACKET]\n       \
                 mdns-fake hold ADDR:PORT N"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdns-fake: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The machine's own interfaces are off limits: only run inside a namespace
/// made by `ip netns` (the test LAN's hosts are).
fn inside_test_namespace() -> Result<(), String> {
    match localstream_scenarios::current_netns() {
        Some(_) => Ok(()),
        None => Err("not inside a named network namespace (run it with `ip netns exec`)".into()),
    }
}

fn daemon() -> Result<ServiceDaemon, String> {
    let d = ServiceDaemon::new().map_err(|e| format!("cannot start mdns-sd: {e}"))?;
    d.disable_interface(IfKind::All)
        .and_then(|()| d.enable_interface("eth0"))
        .map_err(|e| format!("cannot select eth0: {e}"))?;
    Ok(d)
}

fn announce(instance: &str, ip: &str, port: &str, txt: &[String]) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let props: Vec<(&str, &str)> = txt
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| format!("TXT entry {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    let d = daemon()?;
    let events = d.monitor().map_err(|e| format!("monitor: {e}"))?;
    let host = format!("fake-{}.local.", std::process::id());
    let mut info = ServiceInfo::new(SERVICE_TYPE, instance, &host, ip, port, &props[..])
        .map_err(|e| format!("bad service info: {e}"))?;
    info.set_requires_probe(false);
    let fullname = info.get_fullname().to_owned();
    d.register(info).map_err(|e| format!("register: {e}"))?;
    loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(DaemonEvent::Announce(name, _)) if name == fullname => break,
            Ok(DaemonEvent::Error(e)) => return Err(format!("mdns-sd: {e}")),
            Ok(_) => {}
            Err(e) => return Err(format!("no announcement of {fullname:?}: {e}")),
        }
    }
    say(&format!("announced {}", fullname.escape_debug()));
    // Answer queries until killed; report daemon errors meanwhile.
    while let Ok(ev) = events.recv() {
        if let DaemonEvent::Error(e) = ev {
            eprintln!("mdns-fake: mdns-sd: {e}");
        }
    }
    Ok(())
}

fn browse() -> Result<(), String> {
    let d = daemon()?;
    let events = d.browse(SERVICE_TYPE).map_err(|e| format!("browse: {e}"))?;
    while let Ok(ev) = events.recv() {
        match ev {
            ServiceEvent::ServiceResolved(s) => {
                let mut addrs: Vec<String> = s
                    .get_addresses()
                    .iter()
                    .map(|a| a.to_ip_addr().to_string())
                    .collect();
                addrs.sort();
                let txt: Vec<String> = s
                    .get_properties()
                    .iter()
                    .map(|p| format!("{}={}", p.key(), p.val_str()))
                    .collect();
                say(&format!(
                    "resolved {} port={} addrs={} txt={}",
                    s.get_fullname(),
                    s.get_port(),
                    addrs.join(","),
                    txt.join(";")
                )
                .escape_debug()
                .to_string());
            }
            ServiceEvent::ServiceRemoved(_, name) => {
                say(&format!("removed {}", name.escape_debug()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Multicasts `n` forged records (see `localstream_scenarios::flood`) from
/// port 5353 on eth0, as fast as the socket takes them.
/// Opens `n` TCP connections to `addr` that never send a byte, prints
/// `held K` (how many connected), then keeps opening a new one for each the
/// listener closes, until killed: the silent-socket flood.
fn hold(addr: &str, n: &str) -> Result<(), String> {
    use std::net::{SocketAddr, TcpStream};
    let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let n: usize = n.parse().map_err(|_| format!("bad count {n:?}"))?;
    let connect = || TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok();
    let mut held: Vec<TcpStream> = (0..n).filter_map(|_| connect()).collect();
    println!("held {}", held.len());
    let _ = std::io::stdout().flush();
    loop {
        // Replace the ones the listener closed (a read of 0 bytes, or an error).
        held.retain(|s| {
            let _ = s.set_nonblocking(true);
            let mut b = [0u8; 1];
            matches!(
                std::io::Read::read(&mut &*s, &mut b),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            )
        });
        while held.len() < n {
            match connect() {
                Some(s) => held.push(s),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn flood(n: &str, per_packet: Option<&String>) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let total: u64 = n.parse().map_err(|_| format!("bad record count {n:?}"))?;
    let per: usize = match per_packet {
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| (1..=64).contains(p))
            .ok_or_else(|| format!("bad records per packet {p:?} (1..=64)"))?,
        None => localstream_scenarios::flood::DEFAULT_PER_PACKET,
    };
    let src = if_addrs::get_if_addrs()
        .map_err(|e| format!("cannot list interfaces: {e}"))?
        .into_iter()
        .find_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) if i.name == "eth0" => Some(v4.ip),
            _ => None,
        })
        .ok_or("eth0 has no IPv4 address")?;
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    let setup = socket
        .set_reuse_address(true)
        .and_then(|()| socket.bind_device(Some(b"eth0")))
        .and_then(|()| socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5353).into()))
        .and_then(|()| socket.set_multicast_if_v4(&src))
        .and_then(|()| socket.set_multicast_ttl_v4(255))
        .and_then(|()| socket.set_multicast_loop_v4(false));
    setup.map_err(|e| format!("cannot set up the flood socket on eth0: {e}"))?;
    let to = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353).into();
    let tag = std::process::id();
    let started = Instant::now();
    let (mut records, mut packets) = (0u64, 0u64);
    while records < total {
        let (bytes, count) = localstream_scenarios::flood::packet(tag, packets, per, src);
        match socket.send_to(&bytes, &to) {
            Ok(_) => {
                records += count as u64;
                packets += 1;
            }
            // The device queue is full: let it drain.
            Err(e) if e.raw_os_error() == Some(105) => std::thread::yield_now(),
            Err(e) => return Err(format!("send: {e}")),
        }
    }
    say(&format!(
        "flooded {records} records in {packets} packets in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
