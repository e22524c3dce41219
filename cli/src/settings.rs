//! `localstream config path|show|set|unset`: the settings file, as text.

use std::path::Path;

use localstream_discovery::Interfaces;
use localstream_discovery::interfaces::Interface;
use localstream_node::settings;
use localstream_node::{Error, Result};

use crate::cli::ConfigCommand;
use crate::outln;

/// Runs `localstream config ...`.
pub fn run(home: &Path, cmd: &ConfigCommand) -> Result<()> {
    edit(home, cmd)?;
    if matches!(cmd, ConfigCommand::Set { .. } | ConfigCommand::Unset { .. })
        && let Err(e) = settings::load(home)
    {
        // The change was made; another line is still wrong.
        eprintln!("warning: the file still has an error: {e}");
    }
    Ok(())
}

fn edit(home: &Path, cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Path => outln!("{}", settings::path(home).display()),
        ConfigCommand::Show => outln!("{}", settings::show(home, &settings::load(home)?)),
        ConfigCommand::Set { key, value } if key == "ui-password" => {
            let password = if value == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                value.clone()
            };
            let hash = crate::ui::password::hash(&password).map_err(Error::Usage)?;
            let file = settings::set(home, key, &hash)?;
            eprintln!(
                "the web UI's password is set (as an argon2 hash) in {}",
                file.display()
            );
        }
        ConfigCommand::Set { key, value } if key == "dir" => {
            // Stored absolute: say where that is.
            let dir = settings::folder(value)?;
            let file = settings::set(home, key, &dir)?;
            eprintln!("dir set to {dir} in {}", file.display());
        }
        ConfigCommand::Unset { key } => {
            let before = std::fs::read_to_string(settings::path(home)).unwrap_or_default();
            let file = settings::unset(home, key)?;
            let after = std::fs::read_to_string(&file).unwrap_or_default();
            if before == after {
                eprintln!("{key} is not set in {}: nothing to do", file.display());
            } else {
                let what = if settings::KEYS.iter().any(|(k, _)| k == key) {
                    "its default applies"
                } else {
                    "it is no setting of LocalStream's"
                };
                eprintln!("{key} removed from {}: {what}", file.display());
            }
        }
        ConfigCommand::Set { key, value } => {
            let file = settings::set(home, key, value)?;
            eprintln!("{key} set in {}", file.display());
            if key == "interfaces" {
                let absent = settings::absent_interfaces(&settings::interface_names(value)?);
                if let Some(line) = absent_warning(&absent) {
                    eprintln!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// `config set interfaces` with names this machine does not have now.
fn absent_warning(absent: &[String]) -> Option<String> {
    (!absent.is_empty()).then(|| {
        let (what, it) = match absent {
            [one] => (format!("no network interface {one}"), "it"),
            _ => (
                format!("none of the network interfaces {}", absent.join(", ")),
                "each",
            ),
        };
        format!(
            "warning: this machine has {what} up now (switched off, or a typo?); kept: \
             discovery leaves {it} out until it is there"
        )
    })
}

/// Before discovery starts: the named interfaces it leaves out because they
/// are not there now, on stderr (nothing when all are there, or none is:
/// then discovery's own error says so).
pub fn warn_left_out(choice: &Interfaces) {
    let Ok(all) = localstream_discovery::interfaces::list() else {
        return;
    };
    if let Some(line) = left_out_warning(choice, &all) {
        eprintln!("{line}");
    }
}

fn left_out_warning(choice: &Interfaces, all: &[Interface]) -> Option<String> {
    let left_out = localstream_discovery::interfaces::unusable(choice, all);
    let used = localstream_discovery::interfaces::select(choice, all).ok()?;
    (!left_out.is_empty()).then(|| {
        let what = match left_out.as_slice() {
            [one] => format!("network interface {one} is"),
            _ => format!("network interfaces {} are", left_out.join(", ")),
        };
        format!(
            "warning: {what} not up here now: looking on {} only",
            used.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intf(name: &str, down: bool) -> Interface {
        Interface {
            name: name.into(),
            addrs: vec![std::net::IpAddr::from([10, 0, 0, 2])],
            loopback: false,
            down,
            v4_nets: vec![],
            v6_nets: vec![],
            index: 2,
        }
    }

    #[test]
    fn interfaces_not_here_are_named_once() {
        let all = [intf("eth0", false), intf("wlan0", true)];
        let named = |v: &[&str]| Interfaces::Named(v.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(
            left_out_warning(&named(&["eth0", "wlan0", "wlan1"]), &all).as_deref(),
            Some(
                "warning: network interfaces wlan0, wlan1 are not up here now: looking on eth0 only"
            )
        );
        assert_eq!(
            left_out_warning(&named(&["wlan0", "eth0"]), &all).as_deref(),
            Some("warning: network interface wlan0 is not up here now: looking on eth0 only")
        );
        assert_eq!(left_out_warning(&named(&["eth0"]), &all), None);
        // None is left: the command fails with discovery's error instead.
        assert_eq!(left_out_warning(&named(&["wlan0"]), &all), None);
        assert_eq!(left_out_warning(&Interfaces::Default, &all), None);
        assert_eq!(
            absent_warning(&["wlan0".into()]).as_deref(),
            Some(
                "warning: this machine has no network interface wlan0 up now (switched off, or \
                 a typo?); kept: discovery leaves it out until it is there"
            )
        );
        assert_eq!(
            absent_warning(&["wlan0".into(), "wlan1".into()]).as_deref(),
            Some(
                "warning: this machine has none of the network interfaces wlan0, wlan1 up now \
                 (switched off, or a typo?); kept: discovery leaves each out until it is there"
            )
        );
        assert_eq!(absent_warning(&[]), None);
    }
}
