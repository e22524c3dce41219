//! `localstream service install|uninstall|status`: run `listen` as a systemd
//! user service (Linux), so that a headless box receives without a terminal.
//!
//! The unit runs `localstream --home HOME listen --ui --no-progress`; everything
//! else (folder, port, interfaces, consent policy) comes from the settings
//! file, so `localstream config set` then `systemctl --user restart
//! localstream` changes it. With `consent = "ask"` (the default) an offer
//! from a peer that is not trusted waits for an answer in the web UI
//! (`localstream ui` opens it; a desktop notification says so) and is refused
//! when nobody answers in time. Its output
//! goes to the journal (`journalctl --user -u localstream`). On other systems
//! the commands explain what to do instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::outln;
use localstream_node::{Error, Result};

/// The unit's name.
pub const UNIT: &str = "localstream.service";

/// What `service` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Action {
    /// Write the systemd user unit, enable and start it
    Install {
        /// Only print the unit (write nothing, start nothing)
        #[arg(long)]
        print: bool,
    },
    /// Stop and disable the service and remove its unit
    Uninstall,
    /// Whether the unit is installed and running (exit status 0 only when it runs)
    Status,
}

/// The unit file's text for running `exe` with `home`.
#[must_use]
pub fn unit(exe: &Path, home: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=LocalStream receiver (localstream listen)\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} --home {} listen --ui --no-progress\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        quote(&exe.display().to_string()),
        quote(&home.display().to_string()),
    )
}

/// One word of an `ExecStart=` line: quoted, with systemd's specifiers and
/// variables escaped (`%` -> `%%`, `$` -> `$$`), so that any path works.
fn quote(word: &str) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where the user unit goes: `$XDG_CONFIG_HOME/systemd/user` (or `~/.config`).
fn unit_path() -> Result<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".config")))
        .ok_or_else(|| Error::Usage("cannot find the home directory for the unit file".into()))?;
    Ok(config.join("systemd").join("user").join(UNIT))
}

/// Runs `systemctl --user ARGS`; `None` when systemctl is not there.
fn systemctl(args: &[&str]) -> Option<std::process::Output> {
    Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .ok()
}

/// Runs `service`: `false` when `status` finds it not installed or not
/// running (the command then exits 1).
pub fn run(home: &Path, action: Action) -> Result<bool> {
    let exe = std::env::current_exe().map_err(Error::Io)?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_owned());
    let text = unit(&exe, &home);
    if let Action::Install { print: true } = action {
        outln!("{}", text.trim_end());
        return Ok(true);
    }
    if !cfg!(target_os = "linux") {
        return Err(Error::Usage(
            "`service` sets up a systemd user service, which is Linux-only: elsewhere run \
             `localstream service install --print` for the command line, and start it with \
             your system's service manager (launchd on macOS, Task Scheduler on Windows)"
                .into(),
        ));
    }
    let path = unit_path()?;
    match action {
        Action::Install { .. } => {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
            std::fs::write(&path, &text).map_err(|e| Error::file(&path, e))?;
            outln!("wrote {}", path.display());
            let enabled = systemctl(&["daemon-reload"]).is_some_and(|o| o.status.success())
                && systemctl(&["enable", "--now", UNIT]).is_some_and(|o| o.status.success());
            if enabled {
                outln!(
                    "enabled and started: logs with `journalctl --user -u localstream -f`; \
                     to run it while you are logged out too: `loginctl enable-linger $USER`"
                );
            } else {
                outln!(
                    "could not start it now (no systemd user session here?): run \
                     `systemctl --user daemon-reload && systemctl --user enable --now {UNIT}` \
                     in your session"
                );
            }
        }
        Action::Uninstall => {
            let _ = systemctl(&["disable", "--now", UNIT]);
            match std::fs::remove_file(&path) {
                Ok(()) => outln!("removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    outln!("not installed ({} does not exist)", path.display());
                }
                Err(e) => return Err(Error::file(&path, e)),
            }
            let _ = systemctl(&["daemon-reload"]);
        }
        Action::Status => {
            if !path.exists() {
                outln!(
                    "not installed: {} does not exist (`localstream service install` sets it up)",
                    path.display()
                );
                return Ok(false);
            }
            let state = systemctl(&["is-active", UNIT])
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown (no systemctl)".into());
            outln!("installed: {}", path.display());
            outln!("state: {state}");
            return Ok(state == "active");
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_quotes_odd_paths() {
        let u = unit(
            Path::new("/opt/my apps/localstream"),
            Path::new("/home/a/100%$x"),
        );
        assert!(
            u.contains(
                "ExecStart=\"/opt/my apps/localstream\" --home \"/home/a/100%%$$x\" listen --ui --no-progress\n"
            ),
            "{u}"
        );
        assert!(u.contains("WantedBy=default.target"));
    }
}
