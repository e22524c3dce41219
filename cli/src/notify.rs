//! Telling the receiving user (or their scripts) that a transfer ended: a
//! desktop notification where there is a desktop session, and
//! `listen --on-complete CMD`.
//!
//! Nothing a peer chose ever reaches a shell: the command is the user's own
//! text, and the transfer's details go to it in environment variables. The
//! notification tools get their text as arguments, never through a shell,
//! with markup escaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use localstream_proto::names::escape_for_terminal;
use tracing::{debug, warn};

/// How the listener reports finished transfers.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    /// `--on-complete`: a shell command run after each transfer.
    pub on_complete: Option<String>,
    /// Desktop notifications (off with `--no-notify`).
    pub desktop: bool,
}

/// A transfer as reported: who, what, how it ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// The peer's display name (escaped).
    pub peer_name: String,
    /// The peer's node id.
    pub peer_id: uuid::Uuid,
    /// The session id (hex).
    pub session: String,
    /// Files saved, with their final paths.
    pub saved: Vec<PathBuf>,
    /// Files delivered (one that went to standard output has no path).
    pub files: usize,
    /// Bytes offered.
    pub bytes: u64,
    /// `None` when every file arrived; else what went wrong.
    pub error: Option<String>,
}

impl Report {
    /// The environment `--on-complete` runs with.
    #[must_use]
    pub fn env(&self, dir: &Path) -> Vec<(&'static str, String)> {
        let paths: Vec<String> = self.saved.iter().map(|p| p.display().to_string()).collect();
        let mut env = vec![
            (
                "LOCALSTREAM_STATUS",
                if self.error.is_none() { "ok" } else { "failed" }.to_owned(),
            ),
            ("LOCALSTREAM_PEER_NAME", self.peer_name.clone()),
            ("LOCALSTREAM_PEER_ID", self.peer_id.to_string()),
            ("LOCALSTREAM_SESSION", self.session.clone()),
            ("LOCALSTREAM_FILE_COUNT", self.files.to_string()),
            // File names never hold a newline (the receiver refuses them).
            ("LOCALSTREAM_FILES", paths.join("\n")),
            ("LOCALSTREAM_BYTES", self.bytes.to_string()),
            ("LOCALSTREAM_DIR", dir.display().to_string()),
        ];
        if let Some(e) = &self.error {
            env.push(("LOCALSTREAM_ERROR", e.clone()));
        }
        env
    }

    fn title(&self) -> String {
        match &self.error {
            None => format!(
                "Received {} file{} from {}",
                self.files,
                if self.files == 1 { "" } else { "s" },
                self.peer_name
            ),
            Some(_) => format!("Transfer from {} failed", self.peer_name),
        }
    }

    fn body(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        let mut names: Vec<String> = self
            .saved
            .iter()
            .take(5)
            .map(|p| {
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            })
            .collect();
        if self.saved.len() > 5 {
            names.push(format!("and {} more", self.saved.len() - 5));
        }
        escape_for_terminal(&names.join(", "))
    }
}

/// Reports a finished transfer: starts the `--on-complete` command (returned,
/// so the caller can wait for it) and a desktop notification (not waited for).
pub fn finished(n: &Notify, report: &Report, dir: &Path) -> Option<std::process::Child> {
    if n.desktop {
        desktop(&report.title(), &report.body());
    }
    let cmd = n.on_complete.as_ref()?;
    let mut c = shell(cmd);
    // Its output goes to stderr: stdout is for results (and `--json` lines).
    c.envs(report.env(dir))
        .stdin(Stdio::null())
        .stdout(std::io::stderr());
    match c.spawn() {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!("warning: cannot run --on-complete command: {e}");
            None
        }
    }
}

/// Waits for an `--on-complete` command and says when it failed.
pub fn wait(mut child: std::process::Child) {
    match child.wait() {
        Ok(s) if s.success() => debug!("--on-complete command done"),
        Ok(s) => eprintln!("warning: the --on-complete command failed ({s})"),
        Err(e) => warn!(error = %e, "cannot wait for the --on-complete command"),
    }
}

#[cfg(unix)]
fn shell(cmd: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    c
}

#[cfg(windows)]
fn shell(cmd: &str) -> Command {
    let mut c = Command::new("cmd");
    c.arg("/C").arg(cmd);
    c
}

/// Text for notification servers that read a subset of HTML in bodies.
fn markup_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A desktop notification, if there is a desktop to show it on; quietly
/// nothing otherwise. Linux and the BSDs: `notify-send` on the session bus;
/// macOS: `osascript`; elsewhere nothing.
pub(crate) fn desktop(title: &str, body: &str) {
    let cmd = if cfg!(target_os = "macos") {
        let mut c = Command::new("osascript");
        // Text as arguments, never inside the script.
        c.args([
            "-e",
            "on run argv",
            "-e",
            "display notification (item 2 of argv) with title (item 1 of argv)",
            "-e",
            "end run",
            title,
            body,
        ]);
        c
    } else if cfg!(unix) {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|v| v.is_empty()) {
            return;
        }
        let mut c = Command::new("notify-send");
        c.args(["--app-name=LocalStream", "--"])
            .arg(title)
            .arg(markup_escaped(body));
        c
    } else {
        return;
    };
    let mut cmd = cmd;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        // Reaped by a thread so that it never lingers as a zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => debug!(error = %e, "no desktop notification"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(error: Option<&str>) -> Report {
        Report {
            peer_name: "laptop".into(),
            peer_id: uuid::Uuid::nil(),
            session: "ab".into(),
            saved: vec![PathBuf::from("/in/a.txt"), PathBuf::from("/in/b <x>.txt")],
            files: 2,
            bytes: 9,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn environment_and_texts() {
        let ok = report(None);
        let env = ok.env(Path::new("/in"));
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("LOCALSTREAM_STATUS"), Some("ok"));
        assert_eq!(get("LOCALSTREAM_FILES"), Some("/in/a.txt\n/in/b <x>.txt"));
        assert_eq!(get("LOCALSTREAM_FILE_COUNT"), Some("2"));
        assert_eq!(get("LOCALSTREAM_ERROR"), None);
        assert_eq!(ok.title(), "Received 2 files from laptop");
        assert_eq!(markup_escaped(&ok.body()), "a.txt, b &lt;x&gt;.txt");
        let failed = report(Some("disk full"));
        let env = failed.env(Path::new("/in"));
        assert!(env.contains(&("LOCALSTREAM_STATUS", "failed".into())));
        assert!(env.contains(&("LOCALSTREAM_ERROR", "disk full".into())));
        assert_eq!(failed.title(), "Transfer from laptop failed");
    }
}
