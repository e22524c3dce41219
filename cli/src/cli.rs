//! Command-line arguments (clap derive). The doc comments are the help text.
//! Nothing here goes deeper than [`crate::config`], which turns these into a
//! validated configuration.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Send files between computers on the same network: fast, encrypted, verified.
#[derive(Debug, Parser)]
#[command(name = "localstream", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding this node's identity [default: the platform's config directory]
    #[arg(long, global = true, env = "LOCALSTREAM_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Never draw progress bars
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this node's name, id and key fingerprint
    Id,
    /// Receive files: listen for senders and save what they send
    Listen(ListenArgs),
    /// Open the web UI: start this node (as `listen` does) with its UI, or open the UI of the node already running here
    Ui(UiArgs),
    /// Send files to a listening node
    Send(SendArgs),
    /// List the LocalStream nodes on the local network
    Peers(PeersArgs),
    /// Mark a peer as verified, after comparing its verification code with yours
    Trust(TrustArgs),
    /// Drop a peer's pinned key (after a legitimate key change); it is new again
    Forget(PeerRef),
    /// Refuse everything from a peer from now on
    Block(PeerRef),
    /// Show the history of transfers, per peer
    Sessions(SessionsArgs),
    /// Check why peers might not find or reach this node, and say how to fix it
    Doctor {
        /// The port `listen` uses [default: from the settings, else 47470]
        #[arg(long, short)]
        port: Option<u16>,
        /// Network interface to check for discovery; repeat for several [default: from the settings, else every usable one]
        #[arg(long = "interface", short = 'i', value_name = "NAME")]
        interfaces: Vec<String>,
    },
    /// Remember a peer that discovery cannot see (another subnet, a VPN): connect, pin its key, and name it for `send`
    Add {
        /// The name to send to it by
        name: String,
        /// Its address: IP or IP:PORT
        address: String,
        /// Pin it without asking to compare the verification code
        #[arg(long, short)]
        yes: bool,
    },
    /// Print a shell completion script: `localstream completions bash > /etc/bash_completion.d/localstream`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual (roff), one complete page: `localstream manpage > localstream.1; man ./localstream.1`
    Manpage {
        /// Write a page per command into DIR instead (localstream.1, localstream-send.1, ...): `--dir ~/.local/share/man/man1`
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run `listen` as a systemd user service (Linux), with the policy from the settings file
    #[command(subcommand)]
    Service(crate::service::Action),
    /// Settings file: defaults for name, folder, port, interfaces, consent and compression
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Desktop integration: a menu entry for `localstream ui` and "Send with LocalStream" in Nautilus, Nemo and Dolphin
    #[command(subcommand)]
    Integrate(crate::integrate::Action),
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Print where the settings file is
    Path,
    /// Print the settings: each key with its value, from the file or the default
    Show,
    /// Set one key (name, dir, port, interfaces, consent, compress, group.NAME for `send --to @NAME`, ...) in the file
    Set {
        /// The setting
        key: String,
        /// Its value (interfaces, group.NAME: comma-separated)
        value: String,
    },
    /// Remove one key from the file: its default applies again
    Unset {
        /// The setting (or any key the file has, such as a misspelt one)
        key: String,
    },
}

/// A peer this node has met: a name, the start of its id, or of its fingerprint.
#[derive(Debug, Args)]
pub struct PeerRef {
    /// The peer: its display name, the name given with `add`, the start of its id, or the start of its fingerprint (4+ hex digits)
    pub peer: String,
}

/// `trust <peer>`: a peer this node has met.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The peer: its display name, the name given with `add`, the start of its id, or the start of its fingerprint (4+ hex digits)
    pub peer: String,
    /// Where to look when no peer met here matches (to say that it is on the network but not met yet)
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Only this peer (name, the name given with `add`, id prefix or fingerprint prefix)
    pub peer: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// How to find peers on the network (listen, peers, send).
#[derive(Debug, Clone, Args)]
pub struct DiscoveryArgs {
    /// Network interface for mDNS discovery; repeat for several [default: every interface that is up, except loopback and virtual bridges such as docker0]
    #[arg(long = "interface", short = 'i', value_name = "NAME")]
    pub interfaces: Vec<String>,
    /// Do not use mDNS at all: no announcement, no browsing; peers by address only
    #[arg(long, conflicts_with = "interfaces")]
    pub no_discovery: bool,
}

/// Where `peers` looks (it always uses mDNS, so it has no `--no-discovery`).
#[derive(Debug, Clone, Args)]
pub struct InterfaceArgs {
    /// Network interface for mDNS discovery; repeat for several [default: every interface that is up, except loopback and virtual bridges such as docker0]
    #[arg(long = "interface", short = 'i', value_name = "NAME")]
    pub interfaces: Vec<String>,
}

/// LocalSend, for a listener.
#[derive(Debug, Clone, Args)]
pub struct LocalSendListenArgs {
    /// Do not speak LocalSend: no announcement on its group, no HTTPS API on its port [setting: localsend = off]
    #[arg(long)]
    pub no_localsend: bool,
    /// LocalSend's HTTPS and multicast port [default: 53317; setting: localsend-port]; with --no-discovery, giving it starts the LocalSend API anyway
    #[arg(long, value_name = "PORT", conflicts_with = "no_localsend")]
    pub localsend_port: Option<u16>,
    /// The PIN LocalSend senders must give [setting: localsend-pin]
    #[arg(
        long,
        value_name = "PIN",
        env = "LOCALSTREAM_PIN",
        hide_env_values = true
    )]
    pub pin: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where received files go (made if missing) [default: ~/Downloads/LocalStream when ~/Downloads exists, else ~/.local/share/localstream/received; setting: dir]
    #[arg(long, short, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// TCP port to listen on (0 picks a free one) [default: 47470]
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Accept every offer without asking (except from blocked peers)
    #[arg(long, short, conflicts_with = "trusted_only")]
    pub yes: bool,
    /// Accept offers only from trusted peers, without asking (the default when there is no terminal)
    #[arg(long)]
    pub trusted_only: bool,
    /// Exit after the first transfer (exit status 0 if it succeeded)
    #[arg(long)]
    pub once: bool,
    /// Display name announced to peers, for this run only (`localstream config set name NAME` changes it for good) [default: the setting `name`, else the host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Run CMD (with the shell) after each transfer, with its details in LOCALSTREAM_* environment variables (STATUS, PEER_NAME, PEER_ID, SESSION, FILE_COUNT, FILES, BYTES, DIR, ERROR)
    #[arg(long, value_name = "CMD")]
    pub on_complete: Option<String>,
    /// No desktop notification when a transfer ends (there is none anyway without a desktop session)
    #[arg(long)]
    pub no_notify: bool,
    /// Print events as JSON, one object per line, on stdout (listening, offer, checking, accepted, refused, message, question_closed, progress, file_done, transfer_done, error; see the README's events table)
    #[arg(long, conflicts_with = "stdout")]
    pub json: bool,
    /// Print only errors, refusals and the result line (what was sent or received): no progress bars, verification codes or notes (questions are still asked)
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Write the one incoming file to standard output instead of the folder (needs --once; messages stay on stderr): `localstream listen --once --stdout | tar x`
    #[arg(long, requires = "once")]
    pub stdout: bool,
    /// When a received file's name is taken: rename (keep both, `report (1).pdf`), skip-identical (a file with the same size and BLAKE3 hash is not sent again; a different one replaces it) or overwrite (replace it) [default: rename; setting: on-collision]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_collision: Option<Collision>,
    /// Also copy each text message received to the clipboard (the first of wl-copy, xclip, xsel, pbcopy, clip.exe found on PATH)
    #[arg(long)]
    pub clipboard: bool,
    /// Let the web UI answer incoming offers (and print its link); without it the UI still runs on loopback, for `localstream ui`
    #[arg(long)]
    pub ui: bool,
    /// Run no web UI at all, not even on loopback: no HTTP server, and `localstream ui` cannot reach this listener [setting: ui = off]
    #[arg(long, conflicts_with_all = ["ui", "ui_bind", "ui_port"])]
    pub no_ui: bool,
    #[command(flatten)]
    pub localsend: LocalSendListenArgs,
    #[command(flatten)]
    pub ui_server: UiServerArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// Where the web UI listens.
#[derive(Debug, Clone, Args)]
pub struct UiServerArgs {
    /// Address for the web UI [default: 127.0.0.1]; any other address makes it reachable from the network and needs a password (`localstream config set ui-password -`)
    #[arg(long, value_name = "ADDR")]
    pub ui_bind: Option<IpAddr>,
    /// Port for the web UI [default: a free one]
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub ui_port: u16,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Do not open a browser, only print the link (over SSH: `ssh -L PORT:127.0.0.1:PORT HOST`, same PORT on both ends, then open the link)
    #[arg(long)]
    pub no_open: bool,
    /// Open the UI with these files and folders chosen: click a peer to send them from disk (what file managers call)
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub send: Vec<PathBuf>,
    /// Where received files go (made if missing) [default: ~/Downloads/LocalStream when ~/Downloads exists, else ~/.local/share/localstream/received; setting: dir]
    #[arg(long, short, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// TCP port to receive on (0 picks a free one) [default: 47470]
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Address to receive on
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Accept every offer without asking (except from blocked peers)
    #[arg(long, short, conflicts_with = "trusted_only")]
    pub yes: bool,
    /// Accept offers only from trusted peers, without asking
    #[arg(long)]
    pub trusted_only: bool,
    /// Display name announced to peers, for this run only (`localstream config set name NAME` changes it for good) [default: the setting `name`, else the host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// No desktop notifications
    #[arg(long)]
    pub no_notify: bool,
    #[command(flatten)]
    pub localsend: LocalSendListenArgs,
    #[command(flatten)]
    pub ui_server: UiServerArgs,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The receiver: its display name, the name given with `add`, the start of its id (4+ hex digits), or IP[:PORT] (IPv6 as [addr]:port; a link-local one with its interface, by name or number: fe80::1%eth0, [fe80::1%eth0]:47470); with --to, every argument is a path
    #[arg(required_unless_present = "to", value_name = "PEER")]
    pub peer: Option<String>,
    /// Files and folders to send (a folder goes whole, with its sub-folders)
    #[arg(
        required_unless_present_any = ["text", "to"],
        conflicts_with = "text",
        value_name = "PATH"
    )]
    pub files: Vec<PathBuf>,
    /// Send to this receiver (as PEER above) or to the group `@NAME` of the settings (`config set group.NAME h1,h2`); repeat for several: they all get the files at the same time, and the exit status is 0 only if every one did
    #[arg(long, value_name = "PEER")]
    pub to: Vec<String>,
    /// Leave out what matches GLOB inside the folders sent (gitignore syntax, against each path relative to the folder: `*.o`, `target/`, `.git`, `/build`); repeat for several
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Send this text message instead of files (`-`: read it from standard input, less one final newline); the receiver shows it, with the same consent as a file (at most 64 KiB)
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,
    /// The PIN a LocalSend device asks for (else asked for on the terminal)
    #[arg(
        long,
        value_name = "PIN",
        env = "LOCALSTREAM_PIN",
        hide_env_values = true
    )]
    pub pin: Option<String>,
    /// When discovery finds no LocalSend device by that name, ask every address of the local subnets (as LocalSend does when multicast is blocked)
    #[arg(long)]
    pub scan: bool,
    /// Do not look for LocalSend devices
    #[arg(long)]
    pub no_localsend: bool,
    /// LocalSend's port: discovery uses it, and IP:PORT with it is a LocalSend device [default: 53317]
    #[arg(long, value_name = "PORT")]
    pub localsend_port: Option<u16>,
    /// How long to look for the receiver on the network, in seconds
    #[arg(long, short = 't', value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
    /// When the connection fails or breaks, try again (with growing pauses) for up to SECS seconds [default: 60]; each new attempt resumes where the last one stopped
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "60"
    )]
    pub retry: Option<f64>,
    /// Compress on the wire (zstd): auto = while it makes the transfer faster [default: auto]
    #[arg(long, value_enum, value_name = "WHEN")]
    pub compress: Option<Compress>,
    /// Send to a node met for the first time without asking to compare the verification code (for scripts)
    #[arg(long, short)]
    pub yes: bool,
    /// The name the receiver gets for standard input (`-`, default `stdin`), or for the one file or folder sent
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print events as JSON, one object per line, on stdout (counting, skipped, connected, confirm, offer, checking, accepted, progress, file_done, transfer_done, error; see the README's events table)
    #[arg(long)]
    pub json: bool,
    /// Print only errors, refusals and the result line (what was sent or received): no progress bars, verification codes or notes (questions are still asked)
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// How long to look, in seconds [default: 1; with --watch, until Ctrl-C]
    #[arg(long, short = 't', value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Print JSON: one array of peers (with --watch, one event object per line)
    #[arg(long)]
    pub json: bool,
    /// Keep watching: print peers as they appear and disappear
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Also ask every address of the local subnets for LocalSend devices (as LocalSend does when multicast is blocked)
    #[arg(long)]
    pub scan: bool,
    /// Do not look for LocalSend devices
    #[arg(long)]
    pub no_localsend: bool,
    /// LocalSend's multicast port [default: 53317]
    #[arg(long, value_name = "PORT")]
    pub localsend_port: Option<u16>,
    #[command(flatten)]
    pub discovery: InterfaceArgs,
}

/// `listen --on-collision POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Collision {
    /// Keep both: the new file takes a free name.
    Rename,
    /// Same size and hash: not sent again; different: replaced.
    SkipIdentical,
    /// Replace the old file.
    Overwrite,
}

impl From<Collision> for localstream_node::config::OnCollision {
    fn from(c: Collision) -> Self {
        match c {
            Collision::Rename => Self::Rename,
            Collision::SkipIdentical => Self::SkipIdentical,
            Collision::Overwrite => Self::Overwrite,
        }
    }
}

/// `send --compress WHEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// Compress while it makes the transfer faster.
    Auto,
    /// Compress every record that shrinks.
    On,
    /// Never compress.
    Off,
}

impl From<Compress> for localstream_node::compress::Mode {
    fn from(c: Compress) -> Self {
        match c {
            Compress::Auto => Self::Auto,
            Compress::On => Self::On,
            Compress::Off => Self::Off,
        }
    }
}
