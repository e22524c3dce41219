//! `localstream integrate install|uninstall`: the desktop's ways in to the
//! web UI, for this user (under `$XDG_DATA_HOME`, default `~/.local/share`):
//!
//! ```text
//!  applications/localstream.desktop              menu entry: `localstream ui`
//!  icons/hicolor/scalable/apps/localstream.svg   its icon
//!  nautilus/scripts/Send with LocalStream        Nautilus (Files): Scripts menu
//!  nemo/actions/localstream-send.nemo_action     Nemo: context menu
//!  kio/servicemenus/localstream-send.desktop     Dolphin: context menu
//! ```
//!
//! The file-manager actions call `localstream ui --send FILES...`: the UI of
//! the node running here (or a new one) opens with those files chosen, and
//! they go from disk, so a cut transfer resumes. Each file carries a marker
//! line; `uninstall` removes only files that carry it.

use std::path::{Path, PathBuf};

use localstream_node::{Error, Result};

use crate::outln;

/// What `integrate` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Action {
    /// Write the menu entry and the "Send with LocalStream" actions
    Install,
    /// Remove them
    Uninstall,
}

/// The line every file written here carries.
const MARKER: &str = "written by `localstream integrate`";

/// One file: where under the data folder, its text, whether executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path under `$XDG_DATA_HOME`.
    pub path: &'static str,
    /// Contents.
    pub text: String,
    /// Needs the executable bit (Nautilus scripts, Dolphin service menus).
    pub executable: bool,
}

/// The files for the `localstream` binary at `exe`.
#[must_use]
pub fn entries(exe: &Path) -> Vec<Entry> {
    let exec = desktop_quote(&exe.display().to_string());
    let sh = shell_quote(&exe.display().to_string());
    let icon = String::from_utf8_lossy(crate::ui::icon()).into_owned();
    vec![
        Entry {
            path: "applications/localstream.desktop",
            text: format!(
                "[Desktop Entry]\n# {MARKER}\nType=Application\nName=LocalStream\n\
                 GenericName=File transfer\n\
                 Comment=Send files to computers and phones on this network\n\
                 Exec={exec} ui\nIcon=localstream\nTerminal=false\n\
                 Categories=Network;FileTransfer;\nKeywords=send;share;transfer;LAN;\n"
            ),
            executable: false,
        },
        Entry {
            path: "icons/hicolor/scalable/apps/localstream.svg",
            text: format!("<!-- {MARKER} -->\n{icon}"),
            executable: false,
        },
        Entry {
            path: "nautilus/scripts/Send with LocalStream",
            text: format!("#!/bin/sh\n# {MARKER}\nexec {sh} ui --send \"$@\"\n"),
            executable: true,
        },
        Entry {
            path: "nemo/actions/localstream-send.nemo_action",
            text: format!(
                "[Nemo Action]\n# {MARKER}\nName=Send with LocalStream\n\
                 Comment=Send the selected files to a computer or phone on this network\n\
                 Exec={exec} ui --send %F\nIcon-Name=localstream\nSelection=notnone\n\
                 Extensions=any;\nQuote=double\n"
            ),
            executable: false,
        },
        Entry {
            path: "kio/servicemenus/localstream-send.desktop",
            text: format!(
                "[Desktop Entry]\n# {MARKER}\nType=Service\nMimeType=all/all;\n\
                 Actions=sendWithLocalStream;\nX-KDE-Priority=TopLevel\n\n\
                 [Desktop Action sendWithLocalStream]\nName=Send with LocalStream\n\
                 Icon=localstream\nExec={exec} ui --send %F\n"
            ),
            executable: true,
        },
    ]
}

/// Runs `integrate install|uninstall`.
///
/// # Errors
/// When a file cannot be written or removed.
pub fn run(action: Action) -> Result<()> {
    let data = data_home()?;
    match action {
        Action::Install => {
            let exe = std::env::current_exe()?;
            let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
            for e in entries(&exe) {
                let path = install(&data, &e)?;
                outln!("wrote {}", path.display());
            }
            outln!(
                "\"Send with LocalStream\" is in the file managers' menus (restart Nautilus: `nautilus -q`)"
            );
        }
        Action::Uninstall => {
            let mut removed = 0;
            for e in entries(Path::new("localstream")) {
                if let Some(path) = uninstall(&data, &e)? {
                    outln!("removed {}", path.display());
                    removed += 1;
                }
            }
            if removed == 0 {
                outln!("nothing to remove: the integration is not installed");
            }
        }
    }
    Ok(())
}

/// Writes one entry under `data`.
fn install(data: &Path, e: &Entry) -> Result<PathBuf> {
    let path = data.join(e.path);
    let parent = path.parent().unwrap_or(data);
    std::fs::create_dir_all(parent).map_err(|err| Error::file(parent, err))?;
    std::fs::write(&path, &e.text).map_err(|err| Error::file(&path, err))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if e.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| Error::file(&path, err))?;
    }
    Ok(path)
}

/// Removes one entry if it is ours.
fn uninstall(data: &Path, e: &Entry) -> Result<Option<PathBuf>> {
    let path = data.join(e.path);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.contains(MARKER) => {
            std::fs::remove_file(&path).map_err(|err| Error::file(&path, err))?;
            Ok(Some(path))
        }
        Ok(_) => {
            eprintln!(
                "left {} alone: localstream did not write it",
                path.display()
            );
            Ok(None)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::file(&path, err)),
    }
}

/// `$XDG_DATA_HOME`, else `~/.local/share`.
fn data_home() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    directories::BaseDirs::new()
        .map(|b| b.home_dir().join(".local/share"))
        .ok_or_else(|| Error::Usage("no home directory: set XDG_DATA_HOME".into()))
}

/// A desktop entry's Exec argument, quoted when it needs it.
fn desktop_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    // Inside an Exec value, `%` is a field code: a literal one is doubled.
    out.replace('%', "%%")
}

/// A word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn odd_paths_are_quoted_for_each_format() {
        assert_eq!(
            desktop_quote("/usr/bin/localstream"),
            "/usr/bin/localstream"
        );
        assert_eq!(
            desktop_quote("/opt/my apps/100%/local\"stream"),
            "\"/opt/my apps/100%%/local\\\"stream\""
        );
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }

    #[test]
    fn install_then_uninstall_leaves_nothing_but_what_was_there() {
        let data = tempfile::tempdir().unwrap();
        let exe = Path::new("/opt/ls/localstream");
        for e in entries(exe) {
            install(data.path(), &e).unwrap();
        }
        let script = data.path().join("nautilus/scripts/Send with LocalStream");
        assert_eq!(
            std::fs::read_to_string(&script).unwrap(),
            format!("#!/bin/sh\n# {MARKER}\nexec '/opt/ls/localstream' ui --send \"$@\"\n")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&script).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        let nemo = std::fs::read_to_string(
            data.path()
                .join("nemo/actions/localstream-send.nemo_action"),
        )
        .unwrap();
        assert!(
            nemo.contains("Exec=/opt/ls/localstream ui --send %F\n"),
            "{nemo}"
        );
        let menu =
            std::fs::read_to_string(data.path().join("applications/localstream.desktop")).unwrap();
        assert!(menu.contains("Exec=/opt/ls/localstream ui\n"), "{menu}");
        // Someone else's file of the same name stays.
        let dolphin = data
            .path()
            .join("kio/servicemenus/localstream-send.desktop");
        std::fs::write(&dolphin, "[Desktop Entry]\nmine\n").unwrap();
        for e in entries(exe) {
            uninstall(data.path(), &e).unwrap();
        }
        assert!(!script.exists());
        assert_eq!(
            std::fs::read_to_string(&dolphin).unwrap(),
            "[Desktop Entry]\nmine\n"
        );
    }
}
