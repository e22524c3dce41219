//! What the engine's commands take: where to listen and save, whom to send
//! to and how, where to look for peers. Front ends build these (the CLI from
//! its arguments and the settings file) and validate them before anything runs.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::time::Duration;

use localstream_discovery::Interfaces;
use localstream_proto::names::escape_for_terminal;

use crate::consent::Policy;
use crate::error::{Error, Result};

/// The port `listen` uses and `send` assumes when none is given.
pub const DEFAULT_PORT: u16 = 47470;

/// Whether and where mDNS runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `--no-discovery`: no mDNS at all.
    Off,
    /// On these interfaces.
    On(Interfaces),
}

/// `listen` settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Where files go.
    pub dir: PathBuf,
    /// Address and port to bind.
    pub bind: SocketAddr,
    /// Consent policy.
    pub policy: Policy,
    /// Exit after the first transfer.
    pub once: bool,
    /// Announce on the network?
    pub discovery: Discovery,
    /// Where the files go.
    pub destination: Destination,
    /// LocalSend's protocol too (`None`: `--no-localsend`).
    pub localsend: Option<LocalSendConfig>,
    /// What happens to a file whose name is taken (`--on-collision`).
    pub on_collision: OnCollision,
}

pub use crate::fsutil::collision::OnCollision;

/// LocalSend's default port (HTTPS and multicast).
pub const LOCALSEND_PORT: u16 = 53317;

/// What a listener's LocalSend side does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendConfig {
    /// The HTTPS port (and the multicast port).
    pub port: u16,
    /// The PIN senders must give.
    pub pin: Option<String>,
}

impl Default for LocalSendConfig {
    fn default() -> Self {
        LocalSendConfig {
            port: LOCALSEND_PORT,
            pin: None,
        }
    }
}

/// How `send` treats LocalSend devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendSend {
    /// Look for LocalSend devices too when finding the receiver by name
    /// (`false`: `--no-localsend`).
    pub on: bool,
    /// LocalSend's port: an address with it is a LocalSend device, and
    /// discovery uses it.
    pub port: u16,
    /// The PIN, for a device that asks for one (`--pin`).
    pub pin: Option<String>,
    /// A text message instead of files (`--text`).
    pub text: Option<String>,
    /// Scan the subnets when multicast finds nothing (`--scan`).
    pub scan: bool,
}

impl Default for LocalSendSend {
    fn default() -> Self {
        LocalSendSend {
            on: true,
            port: LOCALSEND_PORT,
            pin: None,
            text: None,
            scan: false,
        }
    }
}

/// Where a listener puts what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Files in the folder ([`ListenConfig::dir`]).
    Folder,
    /// The one file of the one transfer goes to standard output (`listen --stdout`).
    Stdout,
}

/// Whom `send` sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address given by the user.
    Addr(SocketAddr),
    /// A display name or node-id prefix to look up by discovery.
    Lookup(String),
}

/// `send` settings.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// The receiver.
    pub target: Target,
    /// Files to send, as given.
    pub files: Vec<PathBuf>,
    /// `--exclude`: what inside the folders is left out.
    pub exclude: crate::exclude::Exclude,
    /// How long to look for a receiver given by name.
    pub find_timeout: Duration,
    /// Where to look.
    pub discovery: Discovery,
    /// `--retry`: how long to keep trying after a transient failure.
    pub retry: Option<Duration>,
    /// `--name`: what standard input (`-`) is called on the receiver
    /// (`stdin` without it), or, when no `-` is sent, the one file or
    /// folder sent.
    pub name: Option<String>,
    /// `--compress`.
    pub compress: crate::compress::Mode,
    /// What to do on first contact (`--yes`, setting `first-contact`).
    pub first_contact: crate::confirm::FirstContact,
    /// LocalSend devices.
    pub localsend: LocalSendSend,
}

/// `peers` settings.
#[derive(Debug, Clone)]
pub struct PeersConfig {
    /// How long to look (`None`: until Ctrl-C, only with `watch`).
    pub timeout: Option<Duration>,
    /// Stream changes.
    pub watch: bool,
    /// Where to look.
    pub interfaces: Interfaces,
    /// Look for LocalSend devices too, on this port (`None`: `--no-localsend`).
    pub localsend: Option<u16>,
    /// Scan the subnets for LocalSend devices (`--scan`).
    pub scan: bool,
}

/// How long `peers` looks by default.
pub const DEFAULT_PEERS_TIMEOUT: Duration = Duration::from_secs(1);

/// An address if it is one (or clearly tries to be one), else a name to look up.
pub fn parse_target(s: &str) -> Result<Target> {
    if let Some(scoped) = scoped_v6(s) {
        return scoped.map(Target::Addr);
    }
    let looks_like_address = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ':' | '[' | ']'))
        && s.contains(['.', ':']);
    if looks_like_address || s.parse::<SocketAddr>().is_ok() || s.parse::<IpAddr>().is_ok() {
        return parse_peer_addr(s).map(Target::Addr);
    }
    if s.trim().is_empty() {
        return Err(Error::Usage(
            "give the receiver as a name, an id prefix or an address".into(),
        ));
    }
    Ok(Target::Lookup(s.to_owned()))
}

/// Parses `ip` or `ip:port` (`[v6]:port`); an IPv6 link-local address may
/// carry its scope as an interface name or number (`fe80::1%eth0`,
/// `[fe80::1%2]:47470`).
pub fn parse_peer_addr(s: &str) -> Result<SocketAddr> {
    if let Some(scoped) = scoped_v6(s) {
        return scoped;
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    Err(Error::Usage(format!(
        "'{}' is not an address: give the receiver as IP or IP:PORT (for example 192.168.1.20 or 192.168.1.20:{DEFAULT_PORT})",
        escape_for_terminal(s)
    )))
}

/// `v6%scope` or `[v6%scope]:port`, the scope an interface name or its
/// number; `None` when `s` is not of that shape.
fn scoped_v6(s: &str) -> Option<Result<SocketAddr>> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return None,
            };
            (host, port)
        }
        None => (s, None),
    };
    let (ip, scope) = host.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let port = match port.map(str::parse::<u16>) {
        None => DEFAULT_PORT,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return Some(Err(Error::Usage(format!(
                "'{}' is not an address: the port must be a number up to 65535",
                escape_for_terminal(s)
            ))));
        }
    };
    Some(scope_id(scope).map(|id| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, id))))
}

/// A scope: an interface's number, or its name looked up on this machine.
fn scope_id(scope: &str) -> Result<u32> {
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    let all = localstream_discovery::interfaces::list().map_err(|e| Error::Usage(e.to_string()))?;
    match all.iter().find(|i| i.name == scope && i.index != 0) {
        Some(i) => Ok(i.index),
        None => {
            let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
            Err(Error::Usage(format!(
                "no network interface named '{}' for the address's scope (interfaces: {})",
                escape_for_terminal(scope),
                names.join(", ")
            )))
        }
    }
}

/// The platform's directory for a node's home (identity, peers, settings).
///
/// # Errors
/// [`Error::Usage`] when the platform has none.
pub fn default_home() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "localstream")
        .map(|d| d.config_dir().to_path_buf())
        .ok_or_else(|| {
            Error::Usage("cannot find a home directory for LocalStream: pass --home DIR or set LOCALSTREAM_HOME".into())
        })
}

/// Where files go by default: `LocalStream` in the Downloads folder (the
/// one `user-dirs.dirs` names, else `~/Downloads` when it exists), else
/// `received` in LocalStream's folder under the platform's data directory
/// (`~/.local/share/localstream/received`): never the current directory.
/// The folder itself is made by `listen` when it starts.
///
/// # Errors
/// [`Error::Usage`] when the platform gives no home directory at all.
pub fn default_download_dir() -> Result<PathBuf> {
    let user = directories::UserDirs::new();
    let project = directories::ProjectDirs::from("", "", "localstream");
    download_dir_from(
        user.as_ref().and_then(directories::UserDirs::download_dir),
        user.as_ref().map(directories::UserDirs::home_dir),
        project.as_ref().map(directories::ProjectDirs::data_dir),
    )
    .ok_or_else(|| {
        Error::Usage(
            "cannot find a folder for received files (no home directory): pass --dir DIR \
             or run `localstream config set dir DIR`"
                .into(),
        )
    })
}

/// [`default_download_dir`] from the platform's answers: the configured
/// Downloads folder if it exists, else `HOME/Downloads` if it exists, else
/// `DATA/received`.
fn download_dir_from(
    configured: Option<&Path>,
    home: Option<&Path>,
    data: Option<&Path>,
) -> Option<PathBuf> {
    configured
        .filter(|d| d.is_dir())
        .map(Path::to_path_buf)
        .or_else(|| home.map(|h| h.join("Downloads")).filter(|d| d.is_dir()))
        .map(|d| d.join("LocalStream"))
        .or_else(|| data.map(|d| d.join("received")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let addr = |s: &str| match parse_target(s) {
            Ok(Target::Addr(a)) => a.to_string(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(addr("10.0.0.2"), format!("10.0.0.2:{DEFAULT_PORT}"));
        assert_eq!(addr("10.0.0.2:9"), "10.0.0.2:9");
        assert_eq!(addr("fe80::1"), format!("[fe80::1]:{DEFAULT_PORT}"));
        assert_eq!(addr("[::1]:7"), "[::1]:7");
        for name in ["box", "3f2a9c1e", "3f2a-9c1e", "Anna's laptop", "cafe"] {
            assert_eq!(parse_target(name).ok(), Some(Target::Lookup(name.into())));
        }
        // Something that tries to be an address is not looked up as a name.
        for bad in ["192.168.1.300", "10.0.0.2:99999", "1.2.3"] {
            let e = parse_target(bad).unwrap_err().to_string();
            assert!(e.contains("not an address"), "{bad}: {e}");
        }
        assert!(parse_target("  ").is_err());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn link_local_addresses_take_a_scope_by_name_or_number() {
        let addr = |s: &str| match parse_target(s) {
            Ok(Target::Addr(SocketAddr::V6(a))) => (a.ip().to_string(), a.port(), a.scope_id()),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(addr("fe80::1%2"), ("fe80::1".into(), DEFAULT_PORT, 2));
        assert_eq!(addr("[fe80::1%7]:9"), ("fe80::1".into(), 9, 7));
        assert_eq!(addr("[fe80::1%3]"), ("fe80::1".into(), DEFAULT_PORT, 3));
        // By name: the interface's number on this machine.
        let all = localstream_discovery::interfaces::list().unwrap();
        let lo = all.iter().find(|i| i.loopback && i.index != 0).unwrap();
        let want = lo.index;
        assert_eq!(
            addr(&format!("fe80::1%{}", lo.name)),
            ("fe80::1".into(), DEFAULT_PORT, want)
        );
        assert_eq!(
            addr(&format!("[fe80::ab:1%{}]:47471", lo.name)),
            ("fe80::ab:1".into(), 47471, want)
        );
        assert_eq!(
            parse_peer_addr(&format!("[fe80::1%{}]:5", lo.name)).unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 5, 0, want))
        );
        let e = parse_target("fe80::1%nosuchif0").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "no network interface named 'nosuchif0' for the address's scope (interfaces: "
            ),
            "{e}"
        );
        let e = parse_target("[fe80::1%2]:http").unwrap_err().to_string();
        assert!(e.contains("the port must be a number"), "{e}");
        // A name with a % in it is still a name.
        assert_eq!(
            parse_target("50% off").ok(),
            Some(Target::Lookup("50% off".into()))
        );
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn download_folder_is_never_the_current_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (home, data) = (
            tmp.path().join("u"),
            tmp.path().join("u/.local/share/localstream"),
        );
        std::fs::create_dir_all(&home).unwrap();
        // No Downloads folder (a server, a container): the data directory.
        assert_eq!(
            download_dir_from(None, Some(&home), Some(&data)),
            Some(data.join("received"))
        );
        // A user-dirs.dirs entry that does not exist counts for nothing.
        let gone = tmp.path().join("Téléchargements");
        assert_eq!(
            download_dir_from(Some(&gone), Some(&home), Some(&data)),
            Some(data.join("received"))
        );
        // ~/Downloads exists, without user-dirs.dirs.
        std::fs::create_dir(home.join("Downloads")).unwrap();
        assert_eq!(
            download_dir_from(None, Some(&home), Some(&data)),
            Some(home.join("Downloads/LocalStream"))
        );
        // The configured one wins when it exists.
        std::fs::create_dir(&gone).unwrap();
        assert_eq!(
            download_dir_from(Some(&gone), Some(&home), Some(&data)),
            Some(gone.join("LocalStream"))
        );
        assert_eq!(download_dir_from(None, None, None), None);
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(
            parse_peer_addr("127.0.0.1").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))
        );
        assert_eq!(
            parse_peer_addr("10.0.0.2:9").ok(),
            Some(SocketAddr::from(([10, 0, 0, 2], 9)))
        );
        assert_eq!(
            parse_peer_addr("[::1]:5").ok(),
            Some("[::1]:5".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(
            parse_peer_addr("::1").ok().map(|a| a.port()),
            Some(DEFAULT_PORT)
        );
        let e = parse_peer_addr("laptop\x1b[2J").unwrap_err().to_string();
        assert!(e.contains("not an address") && !e.contains('\x1b'), "{e}");
    }
}
