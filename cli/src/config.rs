//! Validated configuration: the parsed arguments (and the settings file)
//! turned into what the commands need, checked before anything runs. Clap
//! types go no deeper than this module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use localstream_discovery::Interfaces;
use localstream_node::config::{
    DEFAULT_PEERS_TIMEOUT, DEFAULT_PORT, Destination, Discovery, ListenConfig, PeersConfig,
    SendConfig, Target, default_download_dir, default_home, parse_peer_addr, parse_target,
};
use localstream_node::confirm::FirstContact;
use localstream_node::settings::{self, ConsentSetting, FirstContactSetting, Settings};
use localstream_node::{Error, Result};
use localstream_proto::names::escape_for_terminal;

use crate::cli::{
    Cli, Command, ConfigCommand, DiscoveryArgs, GlobalArgs, ListenArgs, PeersArgs, SendArgs,
    UiArgs, UiServerArgs,
};

/// What to run.
#[derive(Debug)]
pub enum Config {
    /// Print the identity.
    Id(Common),
    /// Receive.
    Listen(Common, ListenConfig, ListenView),
    /// `ui`: receive with the web UI, or open the UI of the node running here.
    Ui(Common, ListenConfig, ListenView),
    /// Send: to `cfg.target`, or to each of several receivers at once.
    Send(Common, SendConfig, View, Vec<Receiver>),
    /// List peers.
    Peers(Common, PeersConfig, View),
    /// Change or show what this node knows about its peers.
    Store(Common, StoreCommand),
    /// `config path|show|set` (on the settings file in this home).
    Settings(PathBuf, ConfigCommand),
    /// `add NAME ADDRESS`.
    Add(Common, String, SocketAddr, FirstContact),
    /// `doctor`: the port and interfaces to check.
    Doctor(u16, Interfaces),
    /// `service ...` (for this home).
    Service(PathBuf, crate::service::Action),
    /// `completions SHELL`.
    Completions(clap_complete::Shell),
    /// `manpage [--dir DIR]`.
    Manpage(Option<PathBuf>),
    /// `integrate install|uninstall`.
    Integrate(crate::integrate::Action),
}

/// The commands that work on the peer store only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCommand {
    /// Mark a peer as verified.
    Trust {
        /// The peer.
        peer: String,
        /// Where to look when the store knows no such peer (to say that
        /// it is on the network, not met yet).
        discovery: Discovery,
    },
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

impl Common {
    /// The engine's configuration for this home and name.
    #[must_use]
    pub fn node_config(&self) -> localstream_node::NodeConfig {
        localstream_node::NodeConfig {
            home: self.home.clone(),
            name: self.name.clone(),
        }
    }
}

/// How a command shows what happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// `--json`: events as JSON lines on stdout.
    pub json: bool,
    /// `--quiet`: errors, refusals and the result line only.
    pub quiet: bool,
}

/// How `listen` shows and tells what happens.
#[derive(Debug, Clone)]
pub struct ListenView {
    /// `--json`.
    pub json: bool,
    /// `--quiet`: errors, refusals and the result lines only.
    pub quiet: bool,
    /// `--yes`, `--trusted-only` or the setting, before the terminal is looked at.
    pub consent: ConsentSetting,
    /// Desktop notification and `--on-complete`.
    pub notify: crate::notify::Notify,
    /// The web UI (every listener serves it on loopback; `asks` with `--ui`).
    pub ui: crate::ui::UiConfig,
    /// `--clipboard`: text messages go to the clipboard too.
    pub clipboard: bool,
}

impl Config {
    /// Validates parsed arguments.
    pub fn from_cli(cli: Cli) -> Result<Config> {
        // Generated text needs no home at all.
        match cli.command {
            Command::Completions { shell } => return Ok(Config::Completions(shell)),
            Command::Manpage { dir } => return Ok(Config::Manpage(dir)),
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
                let (listen, view) = listen_config(a, &s)?;
                Config::Listen(c, listen, view)
            }
            Command::Ui(a) => {
                let c = common(&cli.global, a.name.clone())?;
                let (open, chosen) = (!a.no_open, a.send.clone());
                let (listen, mut view) = listen_config(ui_as_listen(a), &s)?;
                view.ui.open = open;
                view.ui.link = true;
                view.ui.chosen = chosen_paths(chosen)?;
                Config::Ui(c, listen, view)
            }
            Command::Integrate(a) => Config::Integrate(a),
            Command::Send(a) => {
                let view = View {
                    json: a.json,
                    quiet: a.quiet,
                };
                let (cfg, receivers) = send_config(a, &s)?;
                Config::Send(common(&cli.global, None)?, cfg, view, receivers)
            }
            Command::Peers(a) => {
                let view = View {
                    json: a.json,
                    quiet: false,
                };
                Config::Peers(common(&cli.global, None)?, peers_config(a, &s)?, view)
            }
            Command::Trust(p) => {
                let discovery = discovery(p.discovery, &s);
                Config::Store(
                    common(&cli.global, None)?,
                    StoreCommand::Trust {
                        peer: p.peer,
                        discovery,
                    },
                )
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
                let first = first_contact(yes, s.first_contact);
                Config::Add(common(&cli.global, None)?, name, addr, first)
            }
            Command::Config(c) => Config::Settings(home.clone(), c),
            Command::Service(a) => Config::Service(home.clone(), a),
            Command::Completions { shell } => Config::Completions(shell),
            Command::Manpage { dir } => Config::Manpage(dir),
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

/// `ui`'s flags are `listen --ui`'s.
fn ui_as_listen(a: UiArgs) -> ListenArgs {
    ListenArgs {
        dir: a.dir,
        port: a.port,
        bind: a.bind,
        yes: a.yes,
        trusted_only: a.trusted_only,
        once: false,
        name: a.name,
        on_complete: None,
        no_notify: a.no_notify,
        json: false,
        quiet: false,
        stdout: false,
        on_collision: None,
        clipboard: false,
        ui: true,
        no_ui: false,
        localsend: a.localsend,
        ui_server: a.ui_server,
        discovery: a.discovery,
    }
}

/// `ui --send PATH...`: each must exist; kept absolute.
fn chosen_paths(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).map_err(|e| Error::file(&p, e)))
        .collect()
}

/// Where the web UI listens, and its password when it is not on loopback.
fn ui_config(a: &UiServerArgs, asks: bool, s: &Settings) -> crate::ui::UiConfig {
    // Asked for on the command line, it runs whatever the setting says.
    let asked = asks || a.ui_bind.is_some() || a.ui_port != 0;
    crate::ui::UiConfig {
        bind: a
            .ui_bind
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        port: a.ui_port,
        serve: asked || s.ui != Some(localstream_node::settings::OnOff::Off),
        asks,
        open: false,
        link: false,
        chosen: Vec::new(),
        password: s.ui_password.clone(),
    }
}

fn listen_config(a: ListenArgs, s: &Settings) -> Result<(ListenConfig, ListenView)> {
    if a.ui && a.stdout {
        return Err(Error::Usage(
            "--ui and --stdout do not go together: the UI saves files to a folder".into(),
        ));
    }
    let dir = match a.dir.or_else(|| s.dir.clone()) {
        Some(d) => d,
        None => default_download_dir()?,
    };
    let consent = match (a.yes, a.trusted_only, s.consent) {
        (true, _, _) | (false, false, Some(ConsentSetting::Yes)) => ConsentSetting::Yes,
        (false, true, _) | (false, false, Some(ConsentSetting::TrustedOnly)) => {
            ConsentSetting::TrustedOnly
        }
        (false, false, Some(ConsentSetting::Ask) | None) => ConsentSetting::Ask,
    };
    let localsend = listen_localsend(&a.localsend, &a.discovery, s);
    let listen = ListenConfig {
        localsend,
        dir,
        bind: SocketAddr::new(a.bind, a.port.or(s.port).unwrap_or(DEFAULT_PORT)),
        // Settled by `app` once it knows whether a terminal can be asked.
        policy: localstream_node::consent::Policy::Ask,
        once: a.once,
        discovery: discovery(a.discovery, s),
        destination: if a.stdout {
            Destination::Stdout
        } else {
            Destination::Folder
        },
        on_collision: a
            .on_collision
            .map(Into::into)
            .or(s.on_collision)
            .unwrap_or_default(),
    };
    let view = ListenView {
        json: a.json,
        quiet: a.quiet,
        consent,
        notify: crate::notify::Notify {
            on_complete: a.on_complete,
            desktop: !a.no_notify,
        },
        ui: {
            let mut ui = ui_config(&a.ui_server, a.ui, s);
            ui.serve &= !a.no_ui;
            ui
        },
        clipboard: a.clipboard,
    };
    Ok((listen, view))
}

/// LocalSend for a listener: on by default with discovery (setting
/// `localsend`), off with `--no-localsend`; with `--no-discovery` only
/// when `--localsend-port` asks for it.
fn listen_localsend(
    a: &crate::cli::LocalSendListenArgs,
    d: &DiscoveryArgs,
    s: &Settings,
) -> Option<localstream_node::config::LocalSendConfig> {
    let off = a.no_localsend
        || (a.localsend_port.is_none()
            && (d.no_discovery || s.localsend == Some(localstream_node::settings::OnOff::Off)));
    if off {
        return None;
    }
    Some(localstream_node::config::LocalSendConfig {
        port: a
            .localsend_port
            .or(s.localsend_port)
            .unwrap_or(localstream_node::config::LOCALSEND_PORT),
        pin: a
            .pin
            .clone()
            .or_else(|| s.localsend_pin.clone())
            .filter(|p| !p.is_empty()),
    })
}

/// LocalSend for `send` and `peers`: on unless `--no-localsend` or the
/// setting says off.
fn localsend_on(no_flag: bool, s: &Settings) -> bool {
    !no_flag && s.localsend != Some(localstream_node::settings::OnOff::Off)
}

/// One receiver of a `send --to ... --to ...`: as the user named it, and
/// where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// What was typed (a member of a group: its name in the group).
    pub shown: String,
    /// Whom it means.
    pub target: Target,
}

/// The receivers `send` names: `PEER`, or every `--to` (a `@GROUP` of the
/// settings stands for its members), each once; and the paths (with
/// `--to`, the first positional argument is one of them).
fn receivers(a: &mut SendArgs, s: &Settings) -> Result<Vec<Receiver>> {
    let named: Vec<String> = if a.to.is_empty() {
        a.peer.take().into_iter().collect()
    } else {
        if let Some(first) = a.peer.take() {
            a.files.insert(0, PathBuf::from(first));
        }
        let mut all = Vec::new();
        for to in &a.to {
            match to.strip_prefix('@') {
                Some(group) => all.extend(settings::group(s, group)?.iter().cloned()),
                None => all.push(to.clone()),
            }
        }
        all
    };
    if a.files.is_empty() && a.text.is_none() {
        return Err(Error::Usage(
            "give the files and folders to send after the receivers (or --text)".into(),
        ));
    }
    let mut receivers: Vec<Receiver> = Vec::new();
    for shown in named {
        let target = parse_target(&shown)?;
        if receivers.iter().any(|r| r.target == target) {
            return Err(Error::Usage(format!(
                "{} is named twice: each receiver gets the files once",
                escape_for_terminal(&shown)
            )));
        }
        receivers.push(Receiver { shown, target });
    }
    if receivers.is_empty() {
        return Err(Error::Usage(
            "give the receiver (PEER, or --to PEER)".into(),
        ));
    }
    Ok(receivers)
}

/// `send --text TEXT`, or with `-` the text on standard input (less one
/// final newline, as `echo` adds), checked to be UTF-8 and short enough.
fn text_arg(text: String) -> Result<String> {
    if text != "-" {
        return Ok(text);
    }
    use std::io::Read;
    let max = localstream_proto::transfer::MAX_TEXT;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 2)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file("<standard input>", e))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.len() as u64 > max {
        return Err(Error::Usage(format!(
            "--text -: standard input holds more than a text message may ({} bytes); send it as a file",
            max
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Error::Usage("--text -: standard input is not UTF-8 text".into()))
}

fn send_config(mut a: SendArgs, s: &Settings) -> Result<(SendConfig, Vec<Receiver>)> {
    let discovery = discovery(a.discovery.clone(), s);
    let receivers = receivers(&mut a, s)?;
    let target = receivers[0].target.clone();
    if a.retry.is_some()
        && a.files
            .iter()
            .any(|f| f.as_os_str() == localstream_node::send::STDIN)
    {
        return Err(Error::Usage(
            "--retry cannot resend standard input (it is read once): send a file instead".into(),
        ));
    }
    let cfg = SendConfig {
        target,
        files: a.files,
        exclude: localstream_node::exclude::Exclude::new(&a.exclude)?,
        find_timeout: seconds(a.timeout, "--timeout")?,
        discovery,
        retry: a.retry.map(|s| seconds(s, "--retry")).transpose()?,
        name: a.name,
        compress: a
            .compress
            .map(Into::into)
            .or(s.compress.map(Into::into))
            .unwrap_or_default(),
        first_contact: first_contact(a.yes, s.first_contact),
        localsend: localstream_node::config::LocalSendSend {
            on: localsend_on(a.no_localsend, s),
            port: a
                .localsend_port
                .or(s.localsend_port)
                .unwrap_or(localstream_node::config::LOCALSEND_PORT),
            pin: a.pin,
            text: a.text.map(text_arg).transpose()?,
            scan: a.scan,
        },
    };
    Ok((cfg, receivers))
}

fn peers_config(a: PeersArgs, s: &Settings) -> Result<PeersConfig> {
    let interfaces = interfaces(a.discovery.interfaces, s);
    let timeout = match (a.timeout, a.watch) {
        (Some(t), _) => Some(seconds(t, "--timeout")?),
        (None, false) => Some(DEFAULT_PEERS_TIMEOUT),
        (None, true) => None,
    };
    Ok(PeersConfig {
        timeout,
        watch: a.watch,
        interfaces,
        localsend: localsend_on(a.no_localsend, s).then(|| {
            a.localsend_port
                .or(s.localsend_port)
                .unwrap_or(localstream_node::config::LOCALSEND_PORT)
        }),
        scan: a.scan,
    })
}

/// `--no-discovery`, else [`interfaces`].
fn discovery(a: DiscoveryArgs, s: &Settings) -> Discovery {
    if a.no_discovery {
        Discovery::Off
    } else {
        Discovery::On(interfaces(a.interfaces, s))
    }
}

/// `--interface` flags first, then the settings file's `interfaces`.
fn interfaces(flags: Vec<String>, s: &Settings) -> Interfaces {
    let named = if flags.is_empty() {
        s.interfaces.clone().unwrap_or_default()
    } else {
        flags
    };
    if named.is_empty() {
        Interfaces::Default
    } else {
        Interfaces::Named(named)
    }
}

/// What to do on first contact: `--yes` wins; else the setting; else ask.
fn first_contact(yes: bool, setting: Option<FirstContactSetting>) -> FirstContact {
    match (yes, setting) {
        (true, _) | (false, Some(FirstContactSetting::Yes)) => FirstContact::Yes,
        _ => FirstContact::Ask,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_setting_then_asking() {
        use FirstContactSetting as S;
        assert_eq!(first_contact(true, Some(S::Ask)), FirstContact::Yes);
        assert_eq!(first_contact(false, Some(S::Yes)), FirstContact::Yes);
        assert_eq!(first_contact(false, Some(S::Ask)), FirstContact::Ask);
        assert_eq!(first_contact(false, None), FirstContact::Ask);
    }

    #[test]
    fn timeouts() {
        assert_eq!(seconds(0.5, "--t").ok(), Some(Duration::from_millis(500)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(seconds(bad, "--t").is_err(), "{bad}");
        }
    }
}
