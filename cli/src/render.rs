//! The CLI's renderers: every engine event as text for people (stderr for
//! what happens, stdout for results) and, with `--json`, as one JSON object
//! per line on stdout (the event, serialized, plus `"t"`, seconds since the
//! command started). Notices stay human text on stderr either way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use localstream_node::event::{
    Envelope, Notice, Resolved, ResumeVerdict, Side, Skip, TransferDone,
};
use localstream_node::units::{human_bytes, resumed_note, summary, wire_note};
use localstream_node::{Event, PeerLabel};
use localstream_proto::Sas;
use localstream_proto::names::escape_for_terminal;
use tokio::sync::mpsc;

use crate::notify::{self, Notify, Report};
use crate::outln;
use crate::progress::Bars;
use crate::prompt::{self, Ask};

/// When the command started, for the `t` of JSON events.
fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Starts the clock of the `t` field (call first thing).
pub fn start_clock() {
    let _ = started();
}

/// Writes `event` as one JSON line on stdout, with `t`.
pub fn json_line(event: &Envelope) {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(event) else {
        return;
    };
    let mut obj = serde_json::Map::new();
    let t = (started().elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let mut fields = fields.into_iter();
    // `event` first, then `t`, then the rest.
    if let Some((k, v)) = fields.next() {
        obj.insert(k, v);
    }
    obj.insert("t".into(), t.into());
    obj.extend(fields);
    outln!("{}", serde_json::Value::Object(obj));
}

/// An `error` event on stdout (with `--json`), for a command that failed.
pub fn json_error(message: &str) {
    json_line(&Envelope {
        event: Event::Error {
            side: None,
            peer: None,
            session: None,
            message: message.to_owned(),
        },
        transfer: None,
    });
}

/// How a command shows events.
#[derive(Debug)]
pub struct Renderer {
    json: bool,
    /// Progress bars wanted (`--no-progress` not given).
    bars_wanted: bool,
    bars: Option<Bars>,
    /// `listen --stdout`: standard output carries the file, so results go to stderr.
    stdout_is_data: bool,
    /// Questions go to the prompter (none when nobody can be asked).
    prompts: Option<mpsc::UnboundedSender<Ask>>,
    /// The listener's reports of finished transfers.
    notify: Option<Notify>,
    /// The listener's folder (from its `listening` event).
    dir: PathBuf,
    hooks: Vec<tokio::task::JoinHandle<()>>,
}

impl Renderer {
    /// A renderer for one command.
    #[must_use]
    pub fn new(json: bool, bars_wanted: bool) -> Self {
        Renderer {
            json,
            bars_wanted,
            bars: None,
            stdout_is_data: false,
            prompts: None,
            notify: None,
            dir: PathBuf::from("."),
            hooks: Vec::new(),
        }
    }

    /// Results go to stderr: stdout carries a received file.
    #[must_use]
    pub fn stdout_is_data(mut self, yes: bool) -> Self {
        self.stdout_is_data = yes;
        self
    }

    /// Questions go to this prompter.
    #[must_use]
    pub fn prompts(mut self, prompts: Option<mpsc::UnboundedSender<Ask>>) -> Self {
        self.prompts = prompts;
        self
    }

    /// Finished transfers are reported (desktop, `--on-complete`).
    #[must_use]
    pub fn notify(mut self, notify: Notify) -> Self {
        self.notify = Some(notify);
        self
    }

    /// Waits for the `--on-complete` commands still running.
    pub async fn finish(self) {
        if let Some(bars) = &self.bars {
            bars.finish();
        }
        for hook in self.hooks {
            let _ = hook.await;
        }
    }

    /// A result line: stdout, or stderr when stdout carries data.
    fn result(&self, text: &str) {
        if self.stdout_is_data {
            eprintln!("{text}");
        } else if !self.json {
            outln!("{text}");
        }
    }

    /// Shows one event.
    pub fn show(&mut self, envelope: Envelope) {
        if self.json && envelope.event.is_machine() {
            json_line(&envelope);
        }
        let event = envelope.event;
        match event {
            Event::Offer { .. } | Event::Confirm { .. } | Event::QuestionClosed { .. } => {
                self.question(event);
            }
            Event::Listening { .. } => {
                if !self.json {
                    self.result(&banner(&event));
                }
                if let Event::Listening { dir, .. } = event {
                    self.dir = dir;
                }
            }
            Event::Connected { peer, address } => {
                eprintln!("connected to {} at {address}", peer.short());
            }
            Event::Message { peer, text, saved } => {
                let mut line = format!(
                    "message from {}:\n{}",
                    peer.short(),
                    escape_for_terminal(&text)
                );
                if let Some(p) = saved {
                    line.push_str(&format!("\n(saved as {})", shown(&p)));
                }
                self.result(&line);
            }
            Event::Accepted { files, bytes, .. } => {
                self.bars = Bars::new(self.bars_wanted, bytes, files);
            }
            Event::Progress {
                bytes, total, file, ..
            } => match (&mut self.bars, file) {
                (Some(bars), Some(file)) => bars.update(bytes, total, Some(&file)),
                (Some(bars), None) => {
                    bars.update(bytes, total, None);
                    bars.finish();
                    self.bars = None;
                }
                (None, _) => {}
            },
            Event::TransferDone(done) => self.done(&done),
            Event::Error {
                side: Some(Side::Receive),
                peer,
                session,
                message,
            } => {
                eprintln!("transfer failed: {message}");
                if let (Some(peer), Some(session)) = (peer, session) {
                    let report = Report {
                        peer_name: escape_for_terminal(&peer.name),
                        peer_id: peer.id.uuid(),
                        session,
                        saved: vec![],
                        files: 0,
                        bytes: 0,
                        error: Some(message),
                    };
                    self.report(&report);
                }
            }
            Event::Notice(n) => notice(&n),
            _ => {}
        }
    }

    /// An offer or a first contact: a line, or a question for the prompter.
    fn question(&self, event: Event) {
        match event {
            Event::Confirm {
                question,
                peer,
                code,
                then,
            } => self.ask(Ask::Confirm {
                id: question,
                text: prompt::confirm_question(&peer, &code, &then),
            }),
            Event::Offer {
                side: Side::Send,
                peer: Some(peer),
                ..
            } => eprintln!("waiting for {} to accept...", peer.short()),
            Event::Offer {
                offer_id: Some(id),
                peer: Some(peer),
                files,
                bytes,
                entries,
                executables,
                code,
                abandoned_exchanges,
                localsend,
                text,
                ..
            } => {
                let text = prompt::offer_question(
                    &peer,
                    prompt::Offered {
                        files,
                        bytes,
                        entries: &entries,
                        executables,
                        code: code.as_ref(),
                        abandoned: abandoned_exchanges.unwrap_or(0),
                        localsend: localsend.as_deref(),
                        text: text.as_deref(),
                    },
                );
                self.ask(Ask::Offer { id, text });
            }
            Event::QuestionClosed {
                id: offer_id,
                reason,
            } => self.ask(Ask::Closed {
                id: offer_id,
                reason,
            }),
            _ => {}
        }
    }

    fn ask(&self, ask: Ask) {
        if let Some(p) = &self.prompts {
            let _ = p.send(ask);
        }
    }

    /// The end of a transfer: the summary, and the listener's report.
    fn done(&mut self, d: &TransferDone) {
        if let Some(bars) = self.bars.take() {
            bars.finish();
        }
        let who = d.peer.short();
        let elapsed = std::time::Duration::from_secs_f64(d.seconds.max(0.0));
        match d.side {
            Side::Send => {
                if d.ok && !self.json {
                    let line = summary(d.files, d.bytes, elapsed);
                    outln!("sent {line} to {who}{}", resumed_note(d.resumed));
                    if let Some((data, wire)) = d.wire {
                        eprintln!("{}", wire_note(data, wire));
                    }
                }
            }
            Side::Receive => {
                let moved = summary(d.files, d.bytes - d.resumed, elapsed);
                let mut listing = format!("received {moved} from {who}{}", resumed_note(d.resumed));
                for p in &d.saved {
                    listing.push_str("\n  ");
                    listing.push_str(&escape_for_terminal(&p.display().to_string()));
                }
                if d.saved.is_empty() && d.files > 0 && self.stdout_is_data {
                    listing.push_str("\n  (standard output)");
                }
                if let Some((data, wire)) = d.wire {
                    listing.push_str(&format!("\n  ({})", wire_note(data, wire)));
                }
                self.result(&listing);
                if d.discarded > 0 {
                    eprintln!(
                        "{} file(s) from {who} failed verification and were discarded",
                        d.discarded
                    );
                }
                let report = Report {
                    peer_name: escape_for_terminal(&d.peer.name),
                    peer_id: d.peer.id.uuid(),
                    session: d.session.clone(),
                    saved: d.saved.clone(),
                    files: d.files,
                    bytes: d.bytes,
                    error: (!d.ok).then(|| "some files failed verification".to_owned()),
                };
                self.report(&report);
            }
        }
    }

    /// Desktop notification and `--on-complete`, for the listener.
    fn report(&mut self, report: &Report) {
        let Some(n) = &self.notify else { return };
        if let Some(child) = notify::finished(n, report, &self.dir) {
            // Only the ones still running are kept (a listener runs for months).
            self.hooks.retain(|h| !h.is_finished());
            self.hooks
                .push(tokio::task::spawn_blocking(move || notify::wait(child)));
        }
    }
}

/// The listener's banner.
fn banner(event: &Event) -> String {
    let Event::Listening {
        name,
        id,
        fingerprint,
        dir,
        stdout,
        discovery,
        addresses,
        localsend,
    } = event
    else {
        return String::new();
    };
    let target = if *stdout {
        "standard output".to_owned()
    } else {
        dir.display().to_string()
    };
    let mut text = format!(
        "LocalStream node {name}\n  id          {id}\n  fingerprint {}\n  saving to   {target}\n  discovery   {discovery}",
        short_hex(fingerprint)
    );
    for addr in addresses {
        text.push_str(&format!("\nlistening on {addr}"));
    }
    if let Some(port) = localsend {
        text.push_str(&format!(
            "\nLocalSend   on port {port} (phones and LocalSend apps can send here)"
        ));
    }
    text
}

/// `a1b2:c3d4:e5f6:0718` from a fingerprint in hex.
fn short_hex(hex: &str) -> String {
    let digits: Vec<char> = hex.chars().take(16).collect();
    digits
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// A local path as shown on the terminal (escaped: file names are anyone's).
fn shown(path: &Path) -> String {
    escape_for_terminal(&path.display().to_string())
}

/// "3 partial files (1.00 MiB)".
fn partials(n: u64, bytes: u64) -> String {
    format!(
        "{n} partial file{} ({})",
        if n == 1 { "" } else { "s" },
        human_bytes(bytes)
    )
}

/// The line that tells the user how to check a peer: shown on first contact
/// and whenever the peer is not trusted yet.
#[must_use]
pub fn code_line(
    peer: &PeerLabel,
    code: &Sas,
    first: bool,
    trust: impl std::fmt::Display,
) -> String {
    if first {
        format!(
            "first contact with {peer}: its key is pinned once a transfer is accepted. \
             Verification code: {code} (the same on both screens means no one is in between; \
             then `localstream trust {}`)",
            peer.id.short()
        )
    } else {
        format!("verification code with {peer}: {code} ({trust})")
    }
}

/// A notice, as text on stderr.
fn notice(n: &Notice) {
    if let Some(line) = notice_text(n) {
        eprintln!("{line}");
    }
}

/// A notice as a line for people (`None` for the ones not shown).
#[must_use]
pub fn notice_text(n: &Notice) -> Option<String> {
    let line = match n {
        Notice::Skipped { path, why } => format!(
            "skipping {}: {}",
            shown(path),
            match why {
                Skip::Symlink => "symbolic links are not sent",
                Skip::NotRegular => "not a regular file",
                Skip::Partial => "a partial file of an unfinished transfer",
            }
        ),
        Notice::Resolved(r) => resolved(r),
        Notice::Code {
            peer,
            code,
            first,
            trust,
        } => code_line(peer, code, *first, trust),
        Notice::SkippedByReceiver { path, status } => {
            format!("{}: skipped by the receiver: {status}", shown(path))
        }
        Notice::NotDelivered { path, status } => {
            format!("{}: not delivered: {status}", shown(path))
        }
        Notice::Resume {
            name,
            offset,
            verdict,
        } => {
            let name = escape_for_terminal(name);
            match verdict {
                ResumeVerdict::Resuming => format!(
                    "resuming {name} at byte {offset} ({} already held by the receiver)",
                    human_bytes(*offset)
                ),
                ResumeVerdict::Changed => format!(
                    "{name}: changed since the interrupted transfer; sending it from the start"
                ),
                ResumeVerdict::Unreadable(e) => {
                    format!("{name}: cannot read it to compare ({e}); sending it from the start")
                }
                ResumeVerdict::Shorter => format!(
                    "{name}: it is shorter than what the receiver holds; sending it from the start"
                ),
            }
        }
        Notice::Retrying {
            error,
            pause,
            attempt,
            left,
        } => format!("{error}\nretrying in {pause} s (attempt {attempt}, giving up in {left} s)"),
        Notice::GivingUp {
            error,
            attempts,
            window,
        } => format!(
            "{error}\ngiving up after {attempts} attempt{} ({window} s of --retry)",
            if *attempts == 1 { "" } else { "s" }
        ),
        Notice::PeerRefused(e) => crate::hint::explain_trust(e),
        Notice::TrustedNow(peer) => format!("{} is trusted from now on", peer.short()),
        Notice::StoreFailed(message) => format!("warning: {message}"),
        Notice::Held { name, bytes } => format!(
            "{name}: {} held from an interrupted transfer",
            human_bytes(*bytes)
        ),
        Notice::PartialsRemoved { files, bytes, days } => format!(
            "removed {} of transfers interrupted more than {days} days ago",
            partials(*files, *bytes)
        ),
        Notice::PartialsKept { files, bytes, days } => format!(
            "kept {} of interrupted transfers for resuming (removed after {days} days)",
            partials(*files, *bytes)
        ),
        Notice::Stopping => "stopping (Ctrl-C again to quit at once)".to_owned(),
        Notice::NotAnnounced(e) => format!("warning: not announcing this node: {e}"),
        Notice::LocalSendOff(e) => format!("warning: LocalSend is off: {e}"),
        Notice::LocalSendDevice {
            peer,
            fingerprint,
            first,
        } => format!(
            "{} LocalSend device {}: LocalSend has no verification code; its certificate \
             fingerprint is {fingerprint} (compare it with the one in the device's LocalSend \
             settings){}",
            if *first {
                "first contact with"
            } else {
                "sending to"
            },
            peer.short(),
            if *first {
                "; it is pinned once the transfer is accepted"
            } else {
                ""
            }
        ),
        _ => return None,
    };
    Some(line)
}

/// How the sender found its receiver.
fn resolved(r: &Resolved) -> String {
    let list = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match r {
        Resolved::Found { who, seconds } => format!("found {who} in {seconds:.2} s"),
        Resolved::Remembered { who, looked, addrs } => format!(
            "{who} did not answer on the network in {looked:.1} s; trying its last known \
             address{} {}",
            if addrs.len() == 1 { "" } else { "es" },
            list(addrs)
        ),
        Resolved::FromStore { who, addrs } => {
            format!("{who} is at {} (from the peer store)", list(addrs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_fingerprints() {
        assert_eq!(short_hex("a1b2c3d4e5f60718ffff"), "a1b2:c3d4:e5f6:0718");
    }

    #[test]
    fn notices_read_as_before() {
        let r = Resolved::Remembered {
            who: "nas (77aa3f01)".into(),
            looked: 1.0,
            addrs: vec!["10.0.0.2:47470".parse().unwrap()],
        };
        assert_eq!(
            resolved(&r),
            "nas (77aa3f01) did not answer on the network in 1.0 s; trying its last known address 10.0.0.2:47470"
        );
    }
}
