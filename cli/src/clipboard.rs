//! `listen --clipboard`: a text message received goes to the clipboard too,
//! through the first clipboard tool found on `PATH` (the desktop's own:
//! nothing is linked in, and a machine without one says so).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The tools tried, in order, with their arguments: Wayland, X11 (two), macOS, Windows/WSL.
const TOOLS: &[(&str, &[&str])] = &[
    ("wl-copy", &[]),
    ("xclip", &["-selection", "clipboard"]),
    ("xsel", &["--clipboard", "--input"]),
    ("pbcopy", &[]),
    ("clip.exe", &[]),
];

/// The names of the tools looked for, for messages.
#[must_use]
pub fn tool_names() -> String {
    let names: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

/// What `listen --clipboard` found.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// No `--clipboard`.
    Off,
    /// This tool copies each message.
    Tool(Clipboard),
    /// `--clipboard`, but no tool is on `PATH`.
    Missing,
}

impl Wanted {
    /// `--clipboard` given (`on`): the tool to use, looked up now.
    #[must_use]
    pub fn new(on: bool) -> Wanted {
        match (on, Clipboard::find()) {
            (false, _) => Wanted::Off,
            (true, Some(c)) => Wanted::Tool(c),
            (true, None) => Wanted::Missing,
        }
    }
}

/// The line for `--clipboard` without a tool.
#[must_use]
pub fn missing_line() -> String {
    format!(
        "warning: --clipboard: no clipboard tool found on PATH (looked for {}): text messages \
         are shown, not copied",
        tool_names()
    )
}

/// A clipboard tool found on `PATH`.
#[derive(Debug, Clone)]
pub struct Clipboard {
    program: PathBuf,
    args: &'static [&'static str],
}

impl Clipboard {
    /// The first clipboard tool on `PATH` (wl-copy, xclip, xsel, pbcopy, clip.exe; `None`: there is none).
    #[must_use]
    pub fn find() -> Option<Clipboard> {
        let path = std::env::var_os("PATH")?;
        TOOLS.iter().find_map(|(name, args)| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
                .map(|program| Clipboard { program, args })
        })
    }

    /// The tool's name, for messages.
    #[must_use]
    pub fn name(&self) -> String {
        self.program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// Gives `text` to the tool on its standard input and waits for it
    /// (they return once they hold the text; `wl-copy` forks to keep serving it).
    ///
    /// # Errors
    /// The tool could not be started, or failed.
    pub fn copy(&self, text: &str) -> std::io::Result<()> {
        let mut child = Command::new(&self.program)
            .args(self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes())?;
        }
        let status = child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("it exited with {status}")))
        }
    }
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_tool_gets_the_text_on_its_standard_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let tool = dir.path().join("xsel");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\necho \"$@\" > '{0}.args'\ncat > '{0}'\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let c = Clipboard {
            program: tool,
            args: TOOLS[2].1,
        };
        c.copy("héllo\nworld").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "héllo\nworld");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("got.args")).unwrap(),
            "--clipboard --input\n"
        );
        assert_eq!(c.name(), "xsel");
    }
}
