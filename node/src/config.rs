//! Validated configuration: the parsed arguments turned into what the commands
//! need, checked before anything runs.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use localstream_discovery::Interfaces;
use localstream_proto::names::escape_for_terminal;

use crate::cli::{
    Cli, Command, ConfigCommand, DiscoveryArgs, GlobalArgs, ListenArgs, PeersArgs, SendArgs,
};
use crate::error::{Error, Result};
use crate::settings::{self, ConsentSetting, Settings};

/// The port `listen` uses and `send` assumes when none is given.
pub const DEFAULT_PORT: u16 = 47470;

/// What to run.
#[derive(Debug)]
pub enum Config {
    /// Print the identity.
    Id(Common),
    /// Receive.
    Listen(Common, ListenConfig),
    /// Send.
    Send(Common, SendConfig),
    /// List peers.
    Peers(Common, PeersConfig),
    /// Change or show what this node knows about its peers.
    Store(Common, StoreCommand),
    /// `config path|show|set` (on the settings file in this home).
    Settings(PathBuf, ConfigCommand),
    /// `add NAME ADDRESS`.
    Add(Common, String, SocketAddr, crate::confirm::FirstContact),
    /// `doctor`: the port and interfaces to check.
    Doctor(u16, Interfaces),
    /// `service ...` (for this home).
    Service(PathBuf, crate::service::Action),
    /// `completions SHELL`.
    Completions(clap_complete::Shell),
    /// `manpage`.
    Manpage,
}

/// The commands that work on the peer store only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCommand {
    /// Mark a peer as verified.
    Trust(String),
    /// Drop a peer's pin.
    Forget(String),
    /// Refuse a peer from now on.
    Block(String),
    /// Show session history.
    Sessions {
        /// Only this peer.
        peer: Option<String>,
        /// As JSON.
        json: bool,
    },
}

/// Whether and where mDNS runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `--no-discovery`: no mDNS at all.
    Off,
    /// On these interfaces.
    On(Interfaces),
}

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// The node's home directory.
    pub home: PathBuf,
    /// Draw progress bars (only if stderr is a terminal as well).
    pub progress: bool,
    /// Display name override.
    pub name: Option<String>,
}

/// Who may send to a listener without being asked. Blocked peers are
/// refused under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Accept every offer (`--yes`).
    AcceptAll,
    /// Accept trusted peers, refuse the rest (`--trusted-only`).
    TrustedOnly,
    /// Accept trusted peers, ask about the rest on the terminal; with no
    /// terminal, behave as [`Consent::TrustedOnly`].
    Ask,
}

/// `listen` settings.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Where files go.
    pub dir: PathBuf,
    /// Address and port to bind.
    pub bind: SocketAddr,
    /// Consent policy.
    pub consent: Consent,
    /// Exit after the first transfer.
    pub once: bool,
    /// Announce on the network?
    pub discovery: Discovery,
    /// Desktop notification and `--on-complete`.
    pub notify: crate::notify::Notify,
    /// `--json` events.
    pub events: crate::events::Events,
    /// `--stdout`: the one file goes to standard output.
    pub stdout: bool,
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
    /// How long to look for a receiver given by name.
    pub find_timeout: Duration,
    /// Where to look.
    pub discovery: Discovery,
    /// `--retry`: how long to keep trying after a transient failure.
    pub retry: Option<Duration>,
    /// `--json` events.
    pub events: crate::events::Events,
    /// `--name`: what standard input is called on the receiver.
    pub stdin_name: String,
    /// `--compress`.
    pub compress: crate::compress::Mode,
    /// What to do on first contact (`--yes`, setting `first-contact`).
    pub first_contact: crate::confirm::FirstContact,
}

/// `peers` settings.
#[derive(Debug, Clone)]
pub struct PeersConfig {
    /// How long to look (`None`: until Ctrl-C, only with `watch`).
    pub timeout: Option<Duration>,
    /// Print JSON.
    pub json: bool,
    /// Stream changes.
    pub watch: bool,
    /// Where to look.
    pub interfaces: Interfaces,
}

/// How long `peers` looks by default.
pub const DEFAULT_PEERS_TIMEOUT: Duration = Duration::from_secs(1);

impl Config {
    /// Validates parsed arguments.
    pub fn from_cli(cli: Cli) -> Result<Config> {
        // Generated text needs no home at all.
        match cli.command {
            Command::Completions { shell } => return Ok(Config::Completions(shell)),
            Command::Manpage => return Ok(Config::Manpage),
            _ => {}
        }
        let home = match &cli.global.home {
            Some(h) => h.clone(),
            None => default_home()?,
        };
        // The settings file (flags override it), except for the commands that
        // manage it or must work when it is broken.
        let s = if matches!(cli.command, Command::Config(_) | Command::Service(_)) {
            Settings::default()
        } else {
            settings::load(&home)?
        };
        let common = |g: &GlobalArgs, name: Option<String>| -> Result<Common> {
            Ok(Common {
                home: home.clone(),
                progress: !g.no_progress,
                name: name.or_else(|| s.name.clone()),
            })
        };
        Ok(match cli.command {
            Command::Id => Config::Id(common(&cli.global, None)?),
            Command::Listen(a) => {
                let c = common(&cli.global, a.name.clone())?;
                Config::Listen(c, listen_config(a, &s)?)
            }
            Command::Send(a) => Config::Send(common(&cli.global, None)?, send_config(a, &s)?),
            Command::Peers(a) => Config::Peers(common(&cli.global, None)?, peers_config(a, &s)?),
            Command::Trust(p) => {
                Config::Store(common(&cli.global, None)?, StoreCommand::Trust(p.peer))
            }
            Command::Forget(p) => {
                Config::Store(common(&cli.global, None)?, StoreCommand::Forget(p.peer))
            }
            Command::Block(p) => {
                Config::Store(common(&cli.global, None)?, StoreCommand::Block(p.peer))
            }
            Command::Doctor { port, interfaces } => {
                let interfaces = if interfaces.is_empty() {
                    s.interfaces.clone().unwrap_or_default()
                } else {
                    interfaces
                };
                Config::Doctor(
                    port.or(s.port).unwrap_or(DEFAULT_PORT),
                    if interfaces.is_empty() {
                        Interfaces::Default
                    } else {
                        Interfaces::Named(interfaces)
                    },
                )
            }
            Command::Add { name, address, yes } => {
                let addr = parse_peer_addr(&address)?;
                let first = crate::confirm::FirstContact::from_flag(yes, s.first_contact);
                Config::Add(common(&cli.global, None)?, name, addr, first)
            }
            Command::Config(c) => Config::Settings(home.clone(), c),
            Command::Service(a) => Config::Service(home.clone(), a),
            Command::Completions { shell } => Config::Completions(shell),
            Command::Manpage => Config::Manpage,
            Command::Sessions(a) => Config::Store(
                common(&cli.global, None)?,
                StoreCommand::Sessions {
                    peer: a.peer,
                    json: a.json,
                },
            ),
        })
    }
}

fn listen_config(a: ListenArgs, s: &Settings) -> Result<ListenConfig> {
    let dir = a
        .dir
        .or_else(|| s.dir.clone())
        .unwrap_or_else(default_download_dir);
    Ok(ListenConfig {
        dir,
        bind: SocketAddr::new(a.bind, a.port.or(s.port).unwrap_or(DEFAULT_PORT)),
        consent: match (a.yes, a.trusted_only, s.consent) {
            (true, _, _) | (false, false, Some(ConsentSetting::Yes)) => Consent::AcceptAll,
            (false, true, _) | (false, false, Some(ConsentSetting::TrustedOnly)) => {
                Consent::TrustedOnly
            }
            (false, false, Some(ConsentSetting::Ask) | None) => Consent::Ask,
        },
        once: a.once,
        discovery: discovery(a.discovery, s),
        notify: crate::notify::Notify {
            on_complete: a.on_complete,
            desktop: !a.no_notify,
        },
        events: crate::events::Events::new(a.json),
        stdout: a.stdout,
    })
}

fn send_config(a: SendArgs, s: &Settings) -> Result<SendConfig> {
    let discovery = discovery(a.discovery, s);
    let target = parse_target(&a.peer)?;
    if a.retry.is_some() && a.files.iter().any(|f| f.as_os_str() == crate::send::STDIN) {
        return Err(Error::Usage(
            "--retry cannot resend standard input (it is read once): send a file instead".into(),
        ));
    }
    Ok(SendConfig {
        target,
        files: a.files,
        find_timeout: seconds(a.timeout, "--timeout")?,
        discovery,
        retry: a.retry.map(|s| seconds(s, "--retry")).transpose()?,
        events: crate::events::Events::new(a.json),
        stdin_name: a.name,
        compress: a
            .compress
            .or(s.compress.map(Into::into))
            .unwrap_or_default(),
        first_contact: crate::confirm::FirstContact::from_flag(a.yes, s.first_contact),
    })
}

fn peers_config(a: PeersArgs, s: &Settings) -> Result<PeersConfig> {
    let Discovery::On(interfaces) = discovery(a.discovery, s) else {
        return Err(Error::Usage(
            "`peers` finds nodes with mDNS, so it cannot run with --no-discovery".into(),
        ));
    };
    let timeout = match (a.timeout, a.watch) {
        (Some(t), _) => Some(seconds(t, "--timeout")?),
        (None, false) => Some(DEFAULT_PEERS_TIMEOUT),
        (None, true) => None,
    };
    Ok(PeersConfig {
        timeout,
        json: a.json,
        watch: a.watch,
        interfaces,
    })
}

/// Flags first, then the settings file's `interfaces`.
fn discovery(a: DiscoveryArgs, s: &Settings) -> Discovery {
    let named = if a.interfaces.is_empty() {
        s.interfaces.clone().unwrap_or_default()
    } else {
        a.interfaces
    };
    match (a.no_discovery, named.is_empty()) {
        (true, _) => Discovery::Off,
        (false, true) => Discovery::On(Interfaces::Default),
        (false, false) => Discovery::On(Interfaces::Named(named)),
    }
}

/// A positive, finite number of seconds, at most a day.
fn seconds(secs: f64, flag: &str) -> Result<Duration> {
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(Error::Usage(format!(
            "{flag} takes a number of seconds above 0 and at most 86400, not {secs}"
        )))
    }
}

/// An address if it is one (or clearly tries to be one), else a name to look up.
pub fn parse_target(s: &str) -> Result<Target> {
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

/// Parses `ip` or `ip:port` (`[v6]:port`).
pub fn parse_peer_addr(s: &str) -> Result<SocketAddr> {
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

fn default_home() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "localstream")
        .map(|d| d.config_dir().to_path_buf())
        .ok_or_else(|| {
            Error::Usage("cannot find a home directory for LocalStream: pass --home DIR or set LOCALSTREAM_HOME".into())
        })
}

fn default_download_dir() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| u.download_dir().map(|d| d.join("LocalStream")))
        .filter(|d| d.parent().is_some_and(Path::is_dir))
        .unwrap_or_else(|| PathBuf::from("."))
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
    fn timeouts() {
        assert_eq!(seconds(0.5, "--t").ok(), Some(Duration::from_millis(500)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(seconds(bad, "--t").is_err(), "{bad}");
        }
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
