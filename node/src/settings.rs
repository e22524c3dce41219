//! The settings file: `<home>/config.toml` (home: `--home`, `LOCALSTREAM_HOME`
//! or the platform's config directory), for what would otherwise be retyped.
//! Flags on the command line override it.
//!
//! ```toml
//! name = "studio-pc"          # display name announced to peers
//! dir = "/srv/incoming"        # where `listen` saves files
//! port = 47470                 # `listen` port
//! interfaces = ["eth0"]        # mDNS interfaces (listen, peers, send)
//! consent = "trusted-only"     # listen: "ask", "yes" or "trusted-only"
//! compress = "auto"            # send: "auto", "on" or "off"
//! first-contact = "ask"        # send/add to a node never met: "ask" or "yes"
//! on-collision = "rename"      # listen, a name taken: "rename", "skip-identical" or "overwrite"
//! ui-password = "$argon2id$..." # the web UI's password hash (for --ui-bind on a LAN)
//! ui = "off"                   # listen: no web UI at all ("on": on loopback, the default)
//!
//! [groups]                     # `send --to @office`: `config set group.office h1,h2`
//! office = ["h1", "h2"]
//! ```
//!
//! An invalid file is an error that names the line; `config set` edits one
//! key, keeps comments and the rest as they are, and refuses a value that
//! would make the file invalid.

use std::path::{Path, PathBuf};

use localstream_proto::names::escape_for_terminal;
use serde::Deserialize;

use crate::compress;
use crate::error::{Error, Result};

/// The file's name in the home directory.
pub const FILE: &str = "config.toml";

/// Keys `config set` accepts, with what they take.
pub const KEYS: &[(&str, &str)] = &[
    ("name", "display name announced to peers (text)"),
    ("dir", "folder where `listen` saves files (path)"),
    ("port", "TCP port `listen` uses (0..65535)"),
    (
        "interfaces",
        "mDNS interfaces, separated by commas or spaces (e.g. eth0,wlan0); one not here now is left out until it is",
    ),
    ("consent", "`listen` policy: ask, yes or trusted-only"),
    ("compress", "`send` compression: auto, on or off"),
    (
        "first-contact",
        "`send`/`add` to a node never met: ask (compare the code) or yes",
    ),
    (
        "ui-password",
        "the web UI's password, for `--ui-bind` on a LAN (`-`: read it from standard input; stored as an argon2 hash)",
    ),
    (
        "ui",
        "`listen` serves the web UI on loopback: on or off (off: no HTTP server at all; `--ui` still turns it on for one run)",
    ),
    (
        "on-collision",
        "`listen`, when a file's name is taken: rename (keep both), skip-identical (same bytes are not sent again, others replace) or overwrite",
    ),
    ("localsend", "speak LocalSend too (phones): on or off"),
    (
        "localsend-port",
        "LocalSend's HTTPS and multicast port (default 53317)",
    ),
    (
        "localsend-pin",
        "the PIN LocalSend senders must give `listen` (text; empty: none)",
    ),
    (
        "group.NAME",
        "receivers for `send --to @NAME`, comma-separated (e.g. h1,h2; empty: no group)",
    ),
];

/// `localsend` and `ui` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// What `send` and `add` do on first contact, in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstContactSetting {
    /// Ask the user to compare the verification code (refuse without a terminal).
    Ask,
    /// Go ahead without asking (like `--yes`).
    Yes,
}

/// `listen`'s default consent policy in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentSetting {
    /// Ask on the terminal (trusted peers are never asked).
    Ask,
    /// Accept every offer (like `--yes`).
    Yes,
    /// Trusted peers only (like `--trusted-only`).
    TrustedOnly,
}

/// What the file may say; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Display name.
    pub name: Option<String>,
    /// Download folder.
    pub dir: Option<PathBuf>,
    /// Listen port.
    pub port: Option<u16>,
    /// mDNS interfaces.
    pub interfaces: Option<Vec<String>>,
    /// Default consent policy.
    pub consent: Option<ConsentSetting>,
    /// Compression.
    pub compress: Option<CompressSetting>,
    /// First contact from the sending side.
    #[serde(rename = "first-contact")]
    pub first_contact: Option<FirstContactSetting>,
    /// The web UI's password (an argon2 hash, PHC string).
    #[serde(rename = "ui-password")]
    pub ui_password: Option<String>,
    /// Whether `listen` serves the web UI.
    pub ui: Option<OnOff>,
    /// What `listen` does when a file's name is taken.
    #[serde(rename = "on-collision")]
    pub on_collision: Option<crate::config::OnCollision>,
    /// Whether LocalSend is spoken too.
    pub localsend: Option<OnOff>,
    /// LocalSend's port.
    #[serde(rename = "localsend-port")]
    pub localsend_port: Option<u16>,
    /// The PIN LocalSend senders must give.
    #[serde(rename = "localsend-pin")]
    pub localsend_pin: Option<String>,
    /// Groups of receivers for `send --to @NAME` (`[groups]`, `NAME = ["h1", "h2"]`).
    pub groups: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// The members of the group `name` (`send --to @NAME`).
///
/// # Errors
/// [`Error::Usage`] when the settings have no such group, or it is empty.
pub fn group<'s>(s: &'s Settings, name: &str) -> Result<&'s [String]> {
    match s.groups.as_ref().and_then(|g| g.get(name)) {
        Some(members) if !members.is_empty() => Ok(members),
        _ => Err(Error::Usage(format!(
            "no group '{}' in the settings: make it with `localstream config set group.{} \
             PEER,PEER`",
            escape_for_terminal(name),
            escape_for_terminal(name)
        ))),
    }
}

/// A group's name (`group.NAME`): letters, digits, `-` and `_`.
fn group_name(key: &str) -> Result<Option<&str>> {
    let Some(name) = key.strip_prefix("group.") else {
        return Ok(None);
    };
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Usage(format!(
            "{}: a group's name is 1 to 63 letters, digits, '-' or '_'",
            escape_for_terminal(key)
        )));
    }
    Ok(Some(name))
}

/// `send --compress` in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompressSetting {
    /// See [`compress::Mode::Auto`].
    Auto,
    /// See [`compress::Mode::On`].
    On,
    /// See [`compress::Mode::Off`].
    Off,
}

impl From<CompressSetting> for compress::Mode {
    fn from(c: CompressSetting) -> Self {
        match c {
            CompressSetting::Auto => compress::Mode::Auto,
            CompressSetting::On => compress::Mode::On,
            CompressSetting::Off => compress::Mode::Off,
        }
    }
}

/// Where the file is for `home`.
#[must_use]
pub fn path(home: &Path) -> PathBuf {
    home.join(FILE)
}

/// The settings in `home` (none when there is no file).
pub fn load(home: &Path) -> Result<Settings> {
    let file = path(home);
    match std::fs::read_to_string(&file) {
        Ok(text) => parse(&file, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(Error::file(&file, e)),
    }
}

/// Parses `text` (from `file`): errors name the file and the line.
pub fn parse(file: &Path, text: &str) -> Result<Settings> {
    check(text).map_err(|(line, message)| {
        // Valid TOML with a wrong setting can be fixed with the commands; a
        // file that is not TOML only in an editor.
        let fix = if text.parse::<toml_edit::DocumentMut>().is_ok() {
            "fix it with `localstream config set KEY VALUE` or `localstream config unset KEY`, \
             or in an editor"
        } else {
            "it is not valid TOML: fix it in an editor, or remove the file for the defaults"
        };
        Error::Usage(match line {
            Some(n) => format!("{} line {n}: {message} ({fix})", file.display()),
            None => format!("{}: {message} ({fix})", file.display()),
        })
    })
}

/// The settings in `text`, or the line at fault (when known) and what is
/// wrong, in words: "unknown setting "prot" (the settings are ...)".
fn check(text: &str) -> std::result::Result<Settings, (Option<usize>, String)> {
    let settings: Settings = toml_edit::de::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
        (line, plain(e.message()))
    })?;
    if let Some(name) = &settings.name
        && (name.trim().is_empty() || name.len() > 63)
    {
        return Err((None, "a name must be 1 to 63 bytes".into()));
    }
    Ok(settings)
}

/// A TOML or serde message in words: "unknown variant `maybe`, expected
/// one of `ask`, `yes`" becomes "\"maybe\" is not one of ask, yes".
fn plain(message: &str) -> String {
    let message = message.trim_end();
    let unticked = |s: &str| s.replace('`', "");
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, expected ")
    {
        let expected = unticked(expected.strip_prefix("one of ").unwrap_or(expected));
        let items: Vec<&str> = expected.split(", ").flat_map(|i| i.split(" or ")).collect();
        let choices = match items.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => expected.clone(),
        };
        return format!("\"{value}\" is not {choices}");
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        return format!(
            "unknown setting \"{field}\" (the settings are {})",
            known.join(", ")
        );
    }
    unticked(message)
}

/// `config set KEY VALUE`: changes one key in the file (created if
/// missing), keeping everything else, and only if the value is valid. A
/// file wrong on another line is written too (it can only get better):
/// [`load`] names what is still wrong.
pub fn set(home: &Path, key: &str, value: &str) -> Result<PathBuf> {
    let file = path(home);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::file(&file, e)),
    };
    // A file with a wrong setting can be mended here (this key, or the
    // next); one that is not TOML at all is reported with its line.
    let mut doc = document(&file, &text)?;
    let dir;
    let value = if key == "dir" {
        dir = folder(value)?;
        dir.as_str()
    } else {
        value
    };
    if let Some(name) = group_name(key)? {
        set_group(&mut doc, name, value);
    } else {
        // The value alone must be valid (e.g. consent = "maybe" is not).
        let item = setting_item(key, value)?;
        let mut alone = toml_edit::DocumentMut::new();
        alone[key] = item.clone();
        if let Err((_, why)) = check(&alone.to_string()) {
            let quoted = format!("{value:?} ");
            return Err(Error::Usage(if why.starts_with(&quoted) {
                format!("{key}: {why} (nothing changed)")
            } else {
                format!("{key}: {value:?} is not a valid value: {why} (nothing changed)")
            }));
        }
        doc[key] = item;
    }
    // A valid value can only mend the file: it is written even when
    // another line is still wrong (the caller tells the user, [`load`]).
    let new = doc.to_string();
    std::fs::create_dir_all(home).map_err(|e| Error::file(home, e))?;
    crate::fsutil::write_atomic(home, FILE, new.as_bytes(), 0o644)
        .map_err(|e| Error::file(&e.path, e.source))?;
    Ok(file)
}

/// The file as TOML, to edit (an error names the line when it is not TOML).
fn document(file: &Path, text: &str) -> Result<toml_edit::DocumentMut> {
    text.parse().map_err(|e: toml_edit::TomlError| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
        Error::Usage(format!(
            "{}{}: {}: it is not valid TOML: fix it in an editor, or remove the file for the \
             defaults",
            file.display(),
            line.map_or_else(String::new, |n| format!(" line {n}")),
            plain(e.message())
        ))
    })
}

/// `dir`'s value as [`set`] stores it: a folder, absolute (a relative one
/// would depend on where `listen` is started), `~` for the home directory.
///
/// # Errors
/// [`Error::Usage`] for an empty value, or one that cannot be stored.
pub fn folder(value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::Usage(
            "dir: give a folder (`localstream config unset dir` brings the default back) \
             (nothing changed)"
                .into(),
        ));
    }
    let expanded = match value.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    Error::Usage("dir: `~` needs $HOME, which is not set (nothing changed)".into())
                })?;
            match rest.trim_start_matches('/') {
                "" => PathBuf::from(home),
                rest => PathBuf::from(home).join(rest),
            }
        }
        _ => PathBuf::from(value),
    };
    let absolute = std::path::absolute(&expanded).map_err(|e| {
        Error::Usage(format!(
            "dir: {value:?} cannot be made an absolute path: {e} (nothing changed)"
        ))
    })?;
    absolute.into_os_string().into_string().map_err(|_| {
        Error::Usage(format!(
            "dir: {value:?} is not valid UTF-8, which the settings file cannot hold \
             (nothing changed)"
        ))
    })
}

/// The value of one plain key, as the file holds it.
fn setting_item(key: &str, value: &str) -> Result<toml_edit::Item> {
    Ok(match key {
        "port" | "localsend-port" => {
            toml_edit::value(i64::from(value.parse::<u16>().map_err(|_| {
                Error::Usage(format!("{key}: {value:?} is not a port number (0..65535)"))
            })?))
        }
        "interfaces" => {
            let mut list = toml_edit::Array::new();
            for name in interface_names(value)? {
                list.push(name);
            }
            toml_edit::value(list)
        }
        "name" | "dir" | "consent" | "compress" | "first-contact" | "ui-password" | "ui"
        | "localsend" | "localsend-pin" | "on-collision" => toml_edit::value(value),
        other => {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(Error::Usage(format!(
                "unknown setting {other:?}; the settings are {}",
                known.join(", ")
            )));
        }
    })
}

/// `group.NAME = "h1,h2"`: the members as a list under `[groups]`; an
/// empty list removes the group.
fn set_group(doc: &mut toml_edit::DocumentMut, name: &str, value: &str) {
    let members: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !doc.contains_key("groups") {
        doc["groups"] = toml_edit::table();
    }
    if members.is_empty() {
        if let Some(t) = doc["groups"].as_table_like_mut() {
            t.remove(name);
        }
        return;
    }
    let mut list = toml_edit::Array::new();
    for m in members {
        list.push(m);
    }
    doc["groups"][name] = toml_edit::value(list);
}

/// `interfaces`' value: names split on commas and/or white space, each a
/// plausible interface name (whether it exists now is another matter: see
/// [`absent_interfaces`]).
///
/// # Errors
/// [`Error::Usage`] for no name at all, or a name no interface can have.
pub fn interface_names(value: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = vec![];
    for name in value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(Error::Usage(
            "interfaces: give one or more interface names, such as eth0,wlan0 (without the \
             setting every usable interface is used)"
                .into(),
        ));
    }
    if let Some(bad) = names.iter().find(|n| !plausible_interface(n)) {
        return Err(Error::Usage(format!(
            "interfaces: {:?} is not a network interface name (1 to {MAX_INTERFACE_NAME} \
             letters, digits or .-_:@, such as eth0, wlan0 or enp3s0) (nothing changed)",
            escape_for_terminal(bad)
        )));
    }
    Ok(names)
}

/// The longest interface name: Linux's `IFNAMSIZ` less the NUL.
const MAX_INTERFACE_NAME: usize = 15;

fn plausible_interface(name: &str) -> bool {
    name.len() <= MAX_INTERFACE_NAME
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@'))
}

/// Of `names`, those this machine has no interface of, or only one that is
/// down, now (`listen`, `peers` and `send` leave them out until they are
/// there).
#[must_use]
pub fn absent_interfaces(names: &[String]) -> Vec<String> {
    let all = localstream_discovery::interfaces::list().unwrap_or_default();
    localstream_discovery::interfaces::unusable(
        &localstream_discovery::Interfaces::Named(names.to_vec()),
        &all,
    )
}

/// Removes `key` from the file (its default applies again), keeping
/// everything else. Nothing to do when the file or the key is missing.
pub fn unset(home: &Path, key: &str) -> Result<PathBuf> {
    let file = path(home);
    if group_name(key)?.is_some() {
        return set(home, key, "");
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::file(&file, e)),
    };
    let mut doc = document(&file, &text)?;
    // A key the file has is removed even when it is no setting (a typo).
    if !KEYS.iter().any(|(k, _)| *k == key) && !doc.contains_key(key) {
        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        return Err(Error::Usage(format!(
            "unknown setting {key:?}; the settings are {}",
            known.join(", ")
        )));
    }
    if doc.remove(key).is_none() {
        return Ok(file);
    }
    crate::fsutil::write_atomic(home, FILE, doc.to_string().as_bytes(), 0o644)
        .map_err(|e| Error::file(&e.path, e.source))?;
    Ok(file)
}

/// Every key, with its value from the file or (commented out) its default:
/// what `config show` prints.
#[must_use]
pub fn show(home: &Path, s: &Settings) -> String {
    let quoted = |v: &str| toml_edit::Value::from(v).to_string();
    let line = |key: &str, value: Option<String>, default: &str| match value {
        Some(v) => format!("{key} = {}", v.trim()),
        None => format!("# {key} = {default}  (default)"),
    };
    let lines = [
        format!("# {}", path(home).display()),
        line("name", s.name.as_deref().map(quoted), "the host name"),
        line(
            "dir",
            s.dir.as_ref().map(|d| quoted(&d.display().to_string())),
            &crate::config::default_download_dir().map_or_else(
                |_| "none (no home directory: set one)".to_owned(),
                |d| quoted(&d.display().to_string()),
            ),
        ),
        line(
            "port",
            s.port.map(|p| p.to_string()),
            &crate::config::DEFAULT_PORT.to_string(),
        ),
        line(
            "interfaces",
            s.interfaces.as_ref().map(|l| {
                let items: Vec<String> = l.iter().map(|i| quoted(i)).collect();
                format!("[{}]", items.join(", "))
            }),
            "every interface that is up, except loopback and virtual bridges",
        ),
        line(
            "consent",
            s.consent.map(|c| {
                quoted(match c {
                    ConsentSetting::Ask => "ask",
                    ConsentSetting::Yes => "yes",
                    ConsentSetting::TrustedOnly => "trusted-only",
                })
            }),
            "\"ask\" (trusted-only without a terminal)",
        ),
        line(
            "compress",
            s.compress.map(|c| {
                quoted(match c {
                    CompressSetting::Auto => "auto",
                    CompressSetting::On => "on",
                    CompressSetting::Off => "off",
                })
            }),
            "\"auto\"",
        ),
        line(
            "first-contact",
            s.first_contact.map(|c| {
                quoted(match c {
                    FirstContactSetting::Ask => "ask",
                    FirstContactSetting::Yes => "yes",
                })
            }),
            "\"ask\" (refuse without a terminal)",
        ),
        line(
            "ui-password",
            s.ui_password.as_ref().map(|_| "(set)".to_owned()),
            "none: the web UI stays on loopback",
        ),
        line(
            "ui",
            s.ui.map(|o| quoted(if o == OnOff::On { "on" } else { "off" })),
            "\"on\" (on loopback)",
        ),
        line(
            "on-collision",
            s.on_collision.map(|c| quoted(c.as_str())),
            "\"rename\" (keep both: `report (1).pdf`)",
        ),
        line(
            "localsend",
            s.localsend
                .map(|o| quoted(if o == OnOff::On { "on" } else { "off" })),
            "\"on\" (with discovery)",
        ),
        line(
            "localsend-port",
            s.localsend_port.map(|p| p.to_string()),
            &crate::config::LOCALSEND_PORT.to_string(),
        ),
        line(
            "localsend-pin",
            s.localsend_pin.as_ref().map(|_| "(set)".to_owned()),
            "none",
        ),
    ];
    let mut text = lines.join("\n");
    match s.groups.as_ref().filter(|g| !g.is_empty()) {
        Some(groups) => {
            text.push_str("\n[groups]");
            for (name, members) in groups {
                let items: Vec<String> = members.iter().map(|m| quoted(m)).collect();
                text.push_str(&format!("\n{name} = [{}]", items.join(", ")));
            }
        }
        None => text
            .push_str("\n# [groups]  (none: `config set group.NAME h1,h2` for `send --to @NAME`)"),
    }
    text
}

/// Each key's value in the file, as plain text (`None`: not set). The
/// password's hash is never given out.
#[must_use]
pub fn values(s: &Settings) -> Vec<(&'static str, Option<String>)> {
    let kebab = |v: &dyn std::fmt::Debug| {
        let name = format!("{v:?}");
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    };
    vec![
        ("name", s.name.clone()),
        ("dir", s.dir.as_ref().map(|d| d.display().to_string())),
        ("port", s.port.map(|p| p.to_string())),
        ("interfaces", s.interfaces.as_ref().map(|l| l.join(","))),
        ("consent", s.consent.map(|c| kebab(&c))),
        ("compress", s.compress.map(|c| kebab(&c))),
        ("first-contact", s.first_contact.map(|c| kebab(&c))),
        (
            "ui-password",
            s.ui_password.as_ref().map(|_| "(set)".to_owned()),
        ),
        ("ui", s.ui.map(|c| kebab(&c))),
        (
            "on-collision",
            s.on_collision.map(|c| c.as_str().to_owned()),
        ),
        ("localsend", s.localsend.map(|c| kebab(&c))),
        ("localsend-port", s.localsend_port.map(|p| p.to_string())),
        ("localsend-pin", s.localsend_pin.clone()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_receivers() {
        let home = tempfile::tempdir().unwrap();
        set(home.path(), "port", "4000").unwrap();
        set(home.path(), "group.office", "h1, h2,,").unwrap();
        set(home.path(), "group.lab-2", "10.0.0.9:4000").unwrap();
        // A plain key set after the table stays a plain key.
        set(home.path(), "compress", "off").unwrap();
        let s = load(home.path()).unwrap();
        assert_eq!(group(&s, "office").unwrap(), ["h1", "h2"]);
        assert_eq!(group(&s, "lab-2").unwrap(), ["10.0.0.9:4000"]);
        assert_eq!(
            (s.port, s.compress),
            (Some(4000), Some(CompressSetting::Off))
        );
        let shown = show(home.path(), &s);
        assert!(
            shown.ends_with("[groups]\nlab-2 = [\"10.0.0.9:4000\"]\noffice = [\"h1\", \"h2\"]"),
            "{shown}"
        );
        unset(home.path(), "group.lab-2").unwrap();
        set(home.path(), "group.office", "").unwrap();
        let s = load(home.path()).unwrap();
        assert_eq!(
            group(&s, "office").unwrap_err().to_string(),
            "no group 'office' in the settings: make it with `localstream config set \
             group.office PEER,PEER`"
        );
        assert!(group(&s, "lab-2").is_err());
        assert!(set(home.path(), "group.", "h1").is_err());
        assert!(set(home.path(), "group.a b", "h1").is_err());
    }

    #[test]
    fn unset_brings_the_default_back_and_keeps_the_rest() {
        let home = tempfile::tempdir().unwrap();
        set(home.path(), "port", "4000").unwrap();
        set(home.path(), "compress", "off").unwrap();
        unset(home.path(), "port").unwrap();
        let s = load(home.path()).unwrap();
        assert_eq!((s.port, s.compress), (None, Some(CompressSetting::Off)));
        unset(home.path(), "port").unwrap();
        assert!(unset(home.path(), "colour").is_err());
    }

    #[test]
    fn parse_and_errors_name_the_line() {
        let f = Path::new("/h/config.toml");
        let s = parse(
            f,
            "# mine\nname = \"box\"\nport = 4000\ninterfaces = [\"eth0\"]\nconsent = \"trusted-only\"\ncompress = \"off\"\n",
        )
        .unwrap();
        assert_eq!(s.port, Some(4000));
        assert_eq!(s.consent, Some(ConsentSetting::TrustedOnly));
        assert_eq!(s.compress, Some(CompressSetting::Off));
        let e = parse(f, "name = \"a\"\n\nprot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "/h/config.toml line 3: unknown setting \"prot\" (the settings are name, dir, "
            ) && e.ends_with(
                " (fix it with `localstream config set KEY VALUE` or `localstream config unset \
                 KEY`, or in an editor)"
            ),
            "{e}"
        );
        assert_eq!(
            parse(f, "consent = \"maybe\"\n").unwrap_err().to_string(),
            "/h/config.toml line 1: \"maybe\" is not ask, yes or trusted-only (fix it with \
             `localstream config set KEY VALUE` or `localstream config unset KEY`, or in an \
             editor)"
        );
        assert_eq!(
            parse(f, "ui = \"maybe\"\n").unwrap_err().to_string(),
            "/h/config.toml line 1: \"maybe\" is not on or off (fix it with `localstream config \
             set KEY VALUE` or `localstream config unset KEY`, or in an editor)"
        );
        let e = parse(f, "consent = \"ask\n").unwrap_err().to_string();
        assert!(
            e.starts_with("/h/config.toml line 1: ")
                && e.ends_with(
                    " (it is not valid TOML: fix it in an editor, or remove the file for the \
                     defaults)"
                ),
            "{e}"
        );
        let e = parse(f, "port = 99999\n").unwrap_err().to_string();
        assert!(e.starts_with("/h/config.toml line 1:"), "{e}");
        let e = parse(f, "consent = \"maybe\"\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("maybe"), "{e}");
        let e = parse(f, "port = [\n").unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn set_keeps_comments_and_refuses_bad_values() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(path(home.path()), "# my settings\nport = 1\n").unwrap();
        set(home.path(), "port", "4000").unwrap();
        set(home.path(), "interfaces", "eth0, wlan0").unwrap();
        set(home.path(), "consent", "yes").unwrap();
        let text = std::fs::read_to_string(path(home.path())).unwrap();
        assert!(text.starts_with("# my settings\n"), "{text}");
        let s = load(home.path()).unwrap();
        assert_eq!(s.port, Some(4000));
        assert_eq!(s.interfaces, Some(vec!["eth0".into(), "wlan0".into()]));
        assert_eq!(s.consent, Some(ConsentSetting::Yes));
        assert!(set(home.path(), "consent", "maybe").is_err());
        assert!(set(home.path(), "port", "http").is_err());
        assert!(set(home.path(), "colour", "red").is_err());
        assert_eq!(
            load(home.path()).unwrap(),
            s,
            "a refused value changes nothing"
        );
    }

    #[test]
    fn a_file_wrong_on_two_lines_is_mended_one_command_at_a_time() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(path(home.path()), "# mine\nconsent = \"maybe\"\nprot = 3\n").unwrap();
        assert!(load(home.path()).is_err());
        // Each command fixes its line though the other one is still wrong.
        set(home.path(), "consent", "yes").unwrap();
        let e = load(home.path()).unwrap_err().to_string();
        assert!(e.contains("line 3: unknown setting \"prot\""), "{e}");
        // A key that is no setting, but is in the file, can be removed.
        unset(home.path(), "prot").unwrap();
        let s = load(home.path()).unwrap();
        assert_eq!(s.consent, Some(ConsentSetting::Yes));
        let text = std::fs::read_to_string(path(home.path())).unwrap();
        assert_eq!(text, "# mine\nconsent = \"yes\"\n");
        assert!(unset(home.path(), "prot").is_err(), "gone: now unknown");
        // A bad value is still refused, saying what it can be.
        assert_eq!(
            set(home.path(), "consent", "maybe")
                .unwrap_err()
                .to_string(),
            "consent: \"maybe\" is not ask, yes or trusted-only (nothing changed)"
        );
        // A file that is not TOML cannot be edited: it says so.
        std::fs::write(path(home.path()), "consent = \"ask\n").unwrap();
        let e = set(home.path(), "consent", "ask").unwrap_err().to_string();
        assert!(
            e.contains(" line 1: ") && e.contains("it is not valid TOML"),
            "{e}"
        );
    }

    #[test]
    fn dir_is_stored_absolute_and_never_empty() {
        let home = tempfile::tempdir().unwrap();
        for empty in ["", "  "] {
            let e = set(home.path(), "dir", empty).unwrap_err().to_string();
            assert!(e.starts_with("dir: give a folder"), "{e}");
        }
        set(home.path(), "dir", "inbox").unwrap();
        let here = std::env::current_dir().unwrap();
        assert_eq!(load(home.path()).unwrap().dir, Some(here.join("inbox")));
        assert_eq!(folder("/srv/in").unwrap(), "/srv/in");
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(
                folder("~/in").unwrap(),
                PathBuf::from(&h).join("in").display().to_string()
            );
            assert_eq!(
                folder("~").unwrap(),
                PathBuf::from(&h).display().to_string()
            );
        }
        // `~user` is a name like any other (relative).
        assert_eq!(
            folder("~bob").unwrap(),
            here.join("~bob").display().to_string()
        );
    }

    #[test]
    fn interfaces_split_on_commas_and_spaces_and_must_be_names() {
        let home = tempfile::tempdir().unwrap();
        for value in [
            "eth0 wlan0",
            "eth0,wlan0",
            " eth0 ,\twlan0, ",
            "eth0,,wlan0 eth0",
        ] {
            set(home.path(), "interfaces", value).unwrap();
            let want = vec!["eth0".to_owned(), "wlan0".to_owned()];
            assert_eq!(
                load(home.path()).unwrap().interfaces,
                Some(want),
                "{value:?}"
            );
        }
        set(home.path(), "interfaces", "enp3s0 br-lan eth0.100 wg0").unwrap();
        for bad in [
            "eth0 a/b",
            "averyveryverylongname0",
            "\"eth0\"",
            "..",
            "",
            " , ",
        ] {
            let e = set(home.path(), "interfaces", bad).unwrap_err().to_string();
            assert!(e.starts_with("interfaces: "), "{bad:?}: {e}");
        }
        let e = set(home.path(), "interfaces", "eth0 a/b")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "interfaces: \"a/b\" is not a network interface name (1 to 15 letters, digits or \
             .-_:@, such as eth0, wlan0 or enp3s0) (nothing changed)"
        );
        assert_eq!(
            load(home.path()).unwrap().interfaces.unwrap().len(),
            4,
            "a refused value changes nothing"
        );
        assert_eq!(
            absent_interfaces(&["nosuchif7".into(), "nosuchif7".into()]),
            ["nosuchif7"]
        );
    }
}
