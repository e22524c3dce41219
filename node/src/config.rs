//! Validated configuration: the parsed arguments turned into what the commands
//! need, checked before anything runs.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command, GlobalArgs, ListenArgs, SendArgs};
use crate::error::{Error, Result};

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

/// Who may send to a listener without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Accept every offer (`--yes`).
    AcceptAll,
    /// Ask on the terminal; refuse when there is none.
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
}

/// `send` settings.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Files to send, as given.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Validates parsed arguments.
    pub fn from_cli(cli: Cli) -> Result<Config> {
        let common = |g: &GlobalArgs, name: Option<String>| -> Result<Common> {
            Ok(Common {
                home: match &g.home {
                    Some(h) => h.clone(),
                    None => default_home()?,
                },
                progress: !g.no_progress,
                name,
            })
        };
        Ok(match cli.command {
            Command::Id => Config::Id(common(&cli.global, None)?),
            Command::Listen(a) => {
                let c = common(&cli.global, a.name.clone())?;
                Config::Listen(c, listen_config(a)?)
            }
            Command::Send(a) => Config::Send(common(&cli.global, None)?, send_config(a)?),
        })
    }
}

fn listen_config(a: ListenArgs) -> Result<ListenConfig> {
    let dir = match a.dir {
        Some(d) => d,
        None => default_download_dir(),
    };
    Ok(ListenConfig {
        dir,
        bind: SocketAddr::new(a.bind, a.port),
        consent: if a.yes {
            Consent::AcceptAll
        } else {
            Consent::Ask
        },
        once: a.once,
    })
}

fn send_config(a: SendArgs) -> Result<SendConfig> {
    Ok(SendConfig {
        addr: parse_peer_addr(&a.peer)?,
        files: a.files,
    })
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
        localstream_proto::names::escape_for_terminal(s)
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
