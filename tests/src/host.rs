//! One host of the LAN: its namespace, address, node home and scratch files,
//! and the commands that run inside it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::process::{Listener, Output, Proc, Registry, run};
use crate::{Bins, IdInfo, STEP};

/// A host (`h1`, `h2`, ...) of a [`crate::Lan`].
#[derive(Debug)]
pub struct Host {
    /// `h1`, `h2`, ...: also the display name its identity starts with.
    pub name: String,
    /// 1-based index (the last byte of its address).
    pub index: usize,
    /// Its network namespace.
    pub ns: String,
    /// Its address on `eth0` (`/24`).
    pub addr: Ipv4Addr,
    /// The node's home (identity) directory.
    pub home: PathBuf,
    /// Scratch directory of this host (holds `home`, `inbox`, `files`).
    pub dir: PathBuf,
    bins: Arc<Bins>,
    registry: Registry,
}

/// A snapshot of a host's traffic counters (all per network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetCounters {
    /// `eth0` transmitted packets (`/sys/class/net/eth0/statistics/tx_packets`).
    pub tx_packets: u64,
    /// `Udp: OutDatagrams` of `/proc/net/snmp`.
    pub udp_out: u64,
    /// `Udp6OutDatagrams` of `/proc/net/snmp6` (0 without IPv6).
    pub udp6_out: u64,
    /// `Tcp: OutSegs` of `/proc/net/snmp`.
    pub tcp_out_segs: u64,
    /// `Tcp: RetransSegs` of `/proc/net/snmp`.
    pub tcp_retrans_segs: u64,
    /// `Udp: InDatagrams` of `/proc/net/snmp` (delivered to a socket).
    pub udp_in: u64,
    /// `Udp: RcvbufErrors` of `/proc/net/snmp` (dropped: a socket's buffer was full).
    pub udp_rcvbuf_errors: u64,
    /// `Icmp: OutMsgs` of `/proc/net/snmp` plus `Icmp6OutMsgs` of `/proc/net/snmp6`.
    pub icmp_out: u64,
}

impl NetCounters {
    /// `self - earlier`, field by field.
    #[must_use]
    pub fn since(&self, earlier: &NetCounters) -> NetCounters {
        NetCounters {
            tx_packets: self.tx_packets - earlier.tx_packets,
            udp_out: self.udp_out - earlier.udp_out,
            udp6_out: self.udp6_out - earlier.udp6_out,
            tcp_out_segs: self.tcp_out_segs - earlier.tcp_out_segs,
            tcp_retrans_segs: self.tcp_retrans_segs - earlier.tcp_retrans_segs,
            udp_in: self.udp_in - earlier.udp_in,
            udp_rcvbuf_errors: self.udp_rcvbuf_errors - earlier.udp_rcvbuf_errors,
            icmp_out: self.icmp_out - earlier.icmp_out,
        }
    }
}

impl Host {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        index: usize,
        ns: String,
        addr: Ipv4Addr,
        home: PathBuf,
        dir: PathBuf,
        bins: Arc<Bins>,
        registry: Registry,
    ) -> Host {
        Host {
            name,
            index,
            ns,
            addr,
            home,
            dir,
            bins,
            registry,
        }
    }

    /// `ip netns exec <ns> PROGRAM` with stdin closed and no inherited
    /// LocalStream settings. `ip netns exec` execs PROGRAM, so the child's
    /// pid is PROGRAM's.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(program)
            .env_remove("LOCALSTREAM_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// The `localstream` command on this host:
    /// `localstream-node --home <home> --no-progress`.
    #[must_use]
    pub fn node(&self) -> Command {
        self.node_at(&self.home)
    }

    /// The `localstream` command on this host with another home: a second
    /// node (identity) on the same machine and address.
    #[must_use]
    pub fn node_at(&self, home: &std::path::Path) -> Command {
        let mut cmd = self.exec(&self.bins.node);
        cmd.arg("--home").arg(home).arg("--no-progress");
        cmd
    }

    /// Runs `cmd` (built by [`Host::exec`] or [`Host::node`]) to completion,
    /// failing the test if it takes longer than twice [`STEP`].
    pub fn run(&self, cmd: &mut Command) -> Output {
        let what = self.describe(cmd);
        run(cmd, what, STEP * 2)
    }

    /// `localstream ARGS` on this host, run to completion.
    pub fn localstream(&self, args: &[&str]) -> Output {
        self.run(self.node().args(args))
    }

    /// Starts `cmd` in the background; it is killed when the [`Proc`] is
    /// dropped or the LAN is torn down.
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let what = self.describe(cmd);
        Proc::spawn(cmd, what, &self.registry)
    }

    /// `localstream id`, parsed.
    pub fn id(&self) -> IdInfo {
        let out = self.localstream(&["id"]);
        out.expect_code(0);
        IdInfo::parse(&out.stdout)
    }

    /// Starts `localstream listen --dir <inbox> --port 0 EXTRA...` and reads
    /// its banner (up to the `discovery` line, so with discovery on the node
    /// is announced by the time this returns).
    pub fn listen(&self, extra: &[&str]) -> Listener {
        let dir = self.inbox();
        let proc = self.spawn(
            self.node()
                .arg("listen")
                .arg("--dir")
                .arg(&dir)
                .args(["--port", "0"])
                .args(extra),
        );
        Listener::start(proc, dir)
    }

    /// Where this host's listener saves files (created if needed).
    #[must_use]
    pub fn inbox(&self) -> PathBuf {
        let d = self.dir.join("inbox");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes `content` to `<scratch>/files/<name>` and returns the path.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let d = self.dir.join("files");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `cat PATH` inside the namespace (for `/proc/net/...` and `/sys/class/net/...`).
    pub fn cat(&self, path: &str) -> String {
        let out = self.run(self.exec("cat").arg(path));
        out.expect_code(0);
        out.stdout
    }

    /// `eth0`'s MAC address, `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self) -> String {
        self.cat("/sys/class/net/eth0/address").trim().to_owned()
    }

    /// A snapshot of this host's traffic counters, read in one process.
    pub fn counters(&self) -> NetCounters {
        let script = "cat /sys/class/net/eth0/statistics/tx_packets; echo ---; \
                      cat /proc/net/snmp; echo ---; cat /proc/net/snmp6 2>/dev/null || true";
        let out = self.run(self.exec("sh").args(["-c", script]));
        out.expect_code(0);
        let mut parts = out.stdout.split("---\n");
        let tx = parts.next().unwrap_or("").trim();
        let snmp = snmp_table(parts.next().unwrap_or(""));
        let snmp6: HashMap<String, u64> = parts
            .next()
            .unwrap_or("")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect();
        let get = |t: &HashMap<String, u64>, k: &str| {
            *t.get(k)
                .unwrap_or_else(|| panic!("{}: no {k} counter in\n{}", self.name, out.stdout))
        };
        NetCounters {
            tx_packets: tx
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad tx_packets {tx:?}", self.name)),
            udp_out: get(&snmp, "Udp.OutDatagrams"),
            udp6_out: snmp6.get("Udp6OutDatagrams").copied().unwrap_or(0),
            tcp_out_segs: get(&snmp, "Tcp.OutSegs"),
            tcp_retrans_segs: get(&snmp, "Tcp.RetransSegs"),
            udp_in: get(&snmp, "Udp.InDatagrams"),
            udp_rcvbuf_errors: get(&snmp, "Udp.RcvbufErrors"),
            icmp_out: get(&snmp, "Icmp.OutMsgs") + snmp6.get("Icmp6OutMsgs").copied().unwrap_or(0),
        }
    }

    /// Whether this host reaches `addr` over IPv4: a TCP connection to a
    /// closed port there is refused (the host answered) rather than timing out.
    pub fn reaches(&self, addr: Ipv4Addr) -> bool {
        let out = self.run(self.exec("timeout").args([
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/9"),
        ]));
        out.stderr.contains("Connection refused")
    }

    /// Starts an `mdns-fake announce` of `_localstream._tcp.local.` instance
    /// `instance` at this host's address and `port` with TXT `txt`, and waits
    /// until its announcement went out.
    pub fn fake(&self, instance: &str, port: u16, txt: &[(&str, &str)]) -> Proc {
        let mut cmd = self.exec(&self.bins.fake);
        cmd.arg("announce")
            .arg(instance)
            .arg(self.addr.to_string())
            .arg(port.to_string())
            .args(txt.iter().map(|(k, v)| format!("{k}={v}")));
        let mut p = self.spawn(&mut cmd);
        p.wait_line(|l| l.starts_with("announced "));
        p
    }

    /// Runs `mdns-fake flood RECORDS` here (forged records with unique names
    /// multicast from eth0, see `localstream_scenarios::flood`) to completion,
    /// for at most four [`STEP`]s.
    pub fn flood(&self, records: u64) -> Output {
        let mut cmd = self.exec(&self.bins.fake);
        cmd.arg("flood").arg(records.to_string());
        let what = self.describe(&cmd);
        run(&mut cmd, what, STEP * 4)
    }

    /// Starts `mdns-fake hold ADDR N`: `n` silent TCP connections to `addr`,
    /// replaced as the listener closes them, until killed.
    pub fn hold(&self, addr: &str, n: usize) -> Proc {
        let mut cmd = self.exec(&self.bins.fake);
        cmd.arg("hold").arg(addr).arg(n.to_string());
        self.spawn(&mut cmd)
    }

    /// This host's IPv6 link-local address on `eth0` and the interface's
    /// index (its scope id), if it has one.
    pub fn link_local(&self) -> Option<(std::net::Ipv6Addr, u32)> {
        let out = self.run(
            self.exec("ip")
                .args(["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]),
        );
        let addr = out
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()?;
        let link = self.run(self.exec("ip").args(["-o", "link", "show", "eth0"]));
        let index = link.stdout.split(':').next()?.trim().parse().ok()?;
        Some((addr, index))
    }

    /// Starts `mdns-fake browse`: one line `resolved <fullname> ...` per
    /// `_localstream._tcp.local.` instance it resolves.
    pub fn browse(&self) -> Proc {
        let mut cmd = self.exec(&self.bins.fake);
        cmd.arg("browse");
        self.spawn(&mut cmd)
    }

    fn describe(&self, cmd: &Command) -> String {
        let args: Vec<String> = cmd
            .get_args()
            .skip(3) // netns exec <ns>
            .enumerate()
            .map(|(i, a)| {
                let a = if i == 0 {
                    // The program: its file name is enough.
                    std::path::Path::new(a)
                        .file_name()
                        .unwrap_or(a)
                        .to_string_lossy()
                } else {
                    a.to_string_lossy()
                };
                if a.contains(char::is_whitespace) || a.is_empty() {
                    format!("{a:?}")
                } else {
                    a.into_owned()
                }
            })
            .collect();
        format!("[{}] {}", self.name, args.join(" "))
    }
}

/// `/proc/net/snmp` as `Proto.Field` -> value (header line, then value line).
fn snmp_table(s: &str) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    let lines: Vec<&str> = s.lines().collect();
    for pair in lines.chunks(2) {
        let [head, vals] = pair else { continue };
        let (Some((proto, keys)), Some((_, values))) = (head.split_once(':'), vals.split_once(':'))
        else {
            continue;
        };
        for (k, v) in keys.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse() {
                map.insert(format!("{proto}.{k}"), v);
            }
        }
    }
    map
}
