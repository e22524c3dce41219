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
//! ui-password = "$argon2id$..." # the web UI's password hash (for --ui-bind on a LAN)
//! ```
//!
//! An invalid file is an error that names the line; `config set` edits one
//! key, keeps comments and the rest as they are, and refuses a value that
//! would make the file invalid.

use std::path::{Path, PathBuf};

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
        "mDNS interfaces, comma-separated (e.g. eth0,wlan0)",
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
    ("localsend", "speak LocalSend too (phones): on or off"),
    (
        "localsend-port",
        "LocalSend's HTTPS and multicast port (default 53317)",
    ),
    (
        "localsend-pin",
        "the PIN LocalSend senders must give `listen` (text; empty: none)",
    ),
];

/// `localsend` in the file.
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
    /// Whether LocalSend is spoken too.
    pub localsend: Option<OnOff>,
    /// LocalSend's port.
    #[serde(rename = "localsend-port")]
    pub localsend_port: Option<u16>,
    /// The PIN LocalSend senders must give.
    #[serde(rename = "localsend-pin")]
    pub localsend_pin: Option<String>,
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
    let settings: Settings = toml_edit::de::from_str(text).map_err(|e| invalid(file, text, &e))?;
    if let Some(name) = &settings.name
        && (name.trim().is_empty() || name.len() > 63)
    {
        return Err(Error::Usage(format!(
            "{}: `name` must be 1 to 63 bytes",
            file.display()
        )));
    }
    Ok(settings)
}

/// "config.toml line 3: unknown field `prot`, expected one of ..."
fn invalid(file: &Path, text: &str, e: &toml_edit::de::Error) -> Error {
    let line = e
        .span()
        .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
    let message = e.message().trim_end();
    Error::Usage(match line {
        Some(n) => format!(
            "{} line {n}: {message} (fix it, or see `localstream config show`)",
            file.display()
        ),
        None => format!("{}: {message}", file.display()),
    })
}

/// `config set KEY VALUE`: changes one key in the file (created if
/// missing), keeping everything else, and only if the result is valid.
pub fn set(home: &Path, key: &str, value: &str) -> Result<PathBuf> {
    let file = path(home);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::file(&file, e)),
    };
    // A file that is already broken is reported as such (with its line).
    parse(&file, &text)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| Error::Usage(format!("{}: {e}", file.display())))?;
    let item = match key {
        "port" | "localsend-port" => {
            toml_edit::value(i64::from(value.parse::<u16>().map_err(|_| {
                Error::Usage(format!("{key}: {value:?} is not a port number (0..65535)"))
            })?))
        }
        "interfaces" => {
            let mut list = toml_edit::Array::new();
            for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                list.push(name);
            }
            toml_edit::value(list)
        }
        "name" | "dir" | "consent" | "compress" | "first-contact" | "ui-password" | "localsend"
        | "localsend-pin" => toml_edit::value(value),
        other => {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(Error::Usage(format!(
                "unknown setting {other:?}; the settings are {}",
                known.join(", ")
            )));
        }
    };
    doc[key] = item;
    let new = doc.to_string();
    // The whole file must still be valid (e.g. consent = "maybe" is not).
    if let Err(e) = toml_edit::de::from_str::<Settings>(&new) {
        return Err(Error::Usage(format!(
            "{key}: {value:?} is not a valid value: {} (nothing changed)",
            e.message().trim_end()
        )));
    }
    parse(&file, &new)?;
    std::fs::create_dir_all(home).map_err(|e| Error::file(home, e))?;
    crate::fsutil::write_atomic(home, FILE, new.as_bytes(), 0o644)
        .map_err(|e| Error::file(&e.path, e.source))?;
    Ok(file)
}

/// Removes `key` from the file (its default applies again), keeping
/// everything else. Nothing to do when the file or the key is missing.
pub fn unset(home: &Path, key: &str) -> Result<PathBuf> {
    let file = path(home);
    if !KEYS.iter().any(|(k, _)| *k == key) {
        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        return Err(Error::Usage(format!(
            "unknown setting {key:?}; the settings are {}",
            known.join(", ")
        )));
    }
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(file),
        Err(e) => return Err(Error::file(&file, e)),
    };
    parse(&file, &text)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| Error::Usage(format!("{}: {e}", file.display())))?;
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
    lines.join("\n")
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
            e.starts_with("/h/config.toml line 3: unknown field `prot`"),
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
}
