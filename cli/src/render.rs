//! The CLI's renderers: every engine event as text for people (stderr for
//! what happens, stdout for results) and, with `--json`, as one JSON object
//! per line on stdout (the event, serialized, plus `"t"`, seconds since the
//! command started). Notices stay human text on stderr either way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use std::collections::{HashMap, HashSet};

use localstream_node::event::{
    EntryInfo, Envelope, Notice, Resolved, ResumeVerdict, Side, Skip, Skipped, TransferDone,
    TransferId,
};
use localstream_node::label::{short_id, shown_name};
use localstream_node::units::{
    files_and_folders, human_bytes, plural, resumed_note, summary, wire_note,
};
use localstream_node::{Event, PeerLabel};
use localstream_proto::names::escape_for_terminal;
use localstream_proto::{Sas, Status};
use tokio::sync::mpsc;

use crate::notify::{self, Notify, Report};
use crate::outln;
use crate::progress::{Bars, CountLine};
use crate::prompt::{self, Ask};
use crate::screen;

/// When the command started, for the `t` of JSON events.
fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// "checking the 1.59 GiB h1 already holds...": the sender hashes its side
/// of what an interrupted transfer left there; "checking the 1.59 GiB held
/// here for h2...": the receiver hashes what it holds before it answers.
fn checking_line(side: Side, who: &str, bytes: u64) -> String {
    match side {
        Side::Send => format!("checking the {} {who} already holds...", human_bytes(bytes)),
        Side::Receive => format!("checking the {} held here for {who}...", human_bytes(bytes)),
    }
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

/// A text message for the terminal: line by line, each escaped (control
/// characters in it are anyone's).
fn message_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| escape_for_terminal(l.strip_suffix('\r').unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `error` event (with `--json`) of a command that failed in `e`: a
/// transfer stopped in the middle says how far it got (`stopped`), as the
/// listener's does, and names its `transfer`.
pub fn json_error_of(e: &localstream_node::Error, transfer: Option<TransferId>) {
    let stopped = match e {
        localstream_node::Error::Transfer(localstream_node::error::TransferError::Stopped(s)) => {
            Some(s.clone())
        }
        _ => None,
    };
    json_line(&Envelope {
        event: Event::Error {
            side: None,
            peer: None,
            session: None,
            message: crate::hint::without_os_codes(&e.to_string()),
            stopped,
        },
        transfer,
    });
}

/// An `error` event on stdout (with `--json`), for a command that failed.
pub fn json_error(message: &str) {
    json_line(&Envelope {
        event: Event::Error {
            side: None,
            peer: None,
            session: None,
            message: crate::hint::without_os_codes(message),
            stopped: None,
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
    /// Each running transfer's bars.
    bars: HashMap<TransferId, Bars>,
    /// The line of a long count, while it runs.
    count_line: Option<CountLine>,
    /// Who each transfer is with (from its first event that names the peer).
    peers: HashMap<TransferId, PeerLabel>,
    /// What each incoming offer was ("big.bin", "3 files"), for its refusal's line.
    offered: HashMap<TransferId, String>,
    /// Transfers whose refusal was shown (their `error` says nothing new).
    refused: HashSet<TransferId>,
    /// The sender's "waiting for ... to accept" line, due if no answer comes soon.
    waiting: Option<Waiting>,
    /// Transfers with a peer not trusted yet: its id, for the hint that
    /// follows a transfer that went through.
    trust_hint: HashMap<TransferId, String>,
    /// `--quiet`: errors, refusals and results only.
    quiet: bool,
    /// The peer the last event named (a sender's receiver), by name.
    last_peer: Option<String>,
    /// The transfer of the last event that had one.
    last_transfer: Option<TransferId>,
    /// This is a listener (from its `listening` event).
    receiving: bool,
    /// The listener's verification code block of each transfer, until the
    /// offer is accepted (a prompt shows the code itself; a refusal needs none).
    codes: HashMap<TransferId, String>,
    /// `listen --stdout`: standard output carries the file, so results go to stderr.
    stdout_is_data: bool,
    /// Questions go to the prompter (none when nobody can be asked).
    prompts: Option<mpsc::UnboundedSender<Ask>>,
    /// The listener's reports of finished transfers.
    notify: Option<Notify>,
    /// The listener's folder (from its `listening` event).
    dir: PathBuf,
    hooks: Vec<tokio::task::JoinHandle<()>>,
    /// `listen --clipboard`.
    clipboard: crate::clipboard::Wanted,
    /// `send --text`: the result is a text message, not files.
    sending_text: bool,
    /// Incoming transfers that were a text message, shown already (its
    /// `message` line is the result: no `received 1 file` after it).
    messages: HashSet<TransferId>,
}

impl Renderer {
    /// A renderer for one command.
    #[must_use]
    pub fn new(json: bool, bars_wanted: bool) -> Self {
        Renderer {
            json,
            bars_wanted,
            bars: HashMap::new(),
            count_line: None,
            peers: HashMap::new(),
            offered: HashMap::new(),
            refused: HashSet::new(),
            waiting: None,
            trust_hint: HashMap::new(),
            receiving: false,
            last_peer: None,
            last_transfer: None,
            quiet: false,
            codes: HashMap::new(),
            stdout_is_data: false,
            prompts: None,
            notify: None,
            dir: PathBuf::from("."),
            hooks: Vec::new(),
            clipboard: crate::clipboard::Wanted::Off,
            sending_text: false,
            messages: HashSet::new(),
        }
    }

    /// `--quiet`: only errors, refusals and the result lines; no bars.
    #[must_use]
    pub fn quiet(mut self, yes: bool) -> Self {
        self.quiet = yes;
        self.bars_wanted &= !yes;
        self
    }

    /// A line of what happens on the way, not shown with `--quiet`.
    fn chatter(&self, text: &str) {
        if !self.quiet {
            screen::err_line(text);
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

    /// `send --text`: say "sent a text message" rather than "sent 1 file".
    #[must_use]
    pub fn sending_text(mut self, text: bool) -> Self {
        self.sending_text = text;
        self
    }

    /// `listen --clipboard`: each text message is copied too.
    #[must_use]
    pub fn clipboard(mut self, clipboard: crate::clipboard::Wanted) -> Self {
        self.clipboard = clipboard;
        self
    }

    /// `--clipboard`: the message goes to the clipboard tool (on a blocking
    /// thread, waited for like the `--on-complete` commands), or the line
    /// that there is none.
    fn copy_message(&mut self, text: String) {
        match &self.clipboard {
            crate::clipboard::Wanted::Off => {}
            crate::clipboard::Wanted::Missing => {
                screen::err_line(&crate::clipboard::missing_line());
            }
            crate::clipboard::Wanted::Tool(c) => {
                let c = c.clone();
                self.hooks
                    .push(tokio::task::spawn_blocking(move || match c.copy(&text) {
                        Ok(()) => {
                            screen::err_line(&format!("copied to the clipboard ({})", c.name()))
                        }
                        Err(e) => screen::err_line(&format!(
                            "warning: could not copy the message to the clipboard with {}: {e}",
                            c.name()
                        )),
                    }));
            }
        }
    }

    /// Waits for the `--on-complete` commands still running.
    pub async fn finish(self) {
        for bars in self.bars.values() {
            bars.finish();
        }
        if let Some(w) = &self.waiting {
            w.answered();
        }
        for hook in self.hooks {
            let _ = hook.await;
        }
    }

    /// The sender's line for `e` when it is its receiver's refusal ("h2
    /// declined"), once the waiting line is done with.
    #[must_use]
    pub fn refusal(&self, e: &localstream_node::Error) -> Option<String> {
        let (status, message) = e.as_refusal()?;
        if let Some(w) = &self.waiting {
            w.answered();
        }
        let who = self.last_peer.as_deref().unwrap_or("the receiver");
        Some(screen::paint(
            screen::Tone::Error,
            &sender_refusal(who, status, message),
        ))
    }

    /// A result line: stdout, or stderr when stdout carries data.
    fn result(&self, text: &str) {
        if self.stdout_is_data {
            screen::err_line(text);
        } else if !self.json {
            screen::out_line(text);
        }
    }

    /// A check of what the receiver holds from an earlier transfer (the
    /// receiver's before it answers, then the sender's): a line, and a bar
    /// while it runs. On the sender the answer came: it is no longer waiting.
    fn checking(&mut self, t: TransferId, side: Side, who: &str, bytes: u64, done: u64) {
        if done == 0 {
            if side == Side::Send
                && let Some(w) = self.waiting.take()
                && w.answered()
            {
                self.chatter(&format!("{who} accepted"));
            }
            // The receiver checks once the offer is accepted: its code first.
            if side == Side::Receive
                && let Some(code) = self.codes.remove(&t)
            {
                self.chatter(&code);
            }
            screen::err_line(&checking_line(side, who, bytes));
            if let Some(bars) = Bars::new(self.bars_wanted, who, bytes, 1) {
                self.bars.insert(t, bars);
            }
        } else if let Some(bars) = self.bars.get_mut(&t) {
            bars.update(done, bytes, None);
        }
        if done >= bytes
            && let Some(bars) = self.bars.remove(&t)
        {
            bars.finish();
        }
    }

    /// A long count of what `send` offers: a line while it runs (on a
    /// terminal), gone at its end.
    fn counting(&mut self, entries: u64, bytes: u64, done: bool) {
        if done {
            // Dropped: the line goes.
            self.count_line = None;
            return;
        }
        if self.count_line.is_none() {
            self.count_line = CountLine::new(self.bars_wanted);
        }
        if let Some(line) = &self.count_line {
            line.update(entries, bytes);
        }
    }

    /// The peer of transfer `t`, by name ("h1"), when known.
    fn who(&self, t: TransferId) -> String {
        self.peers
            .get(&t)
            .map_or_else(|| "the peer".to_owned(), |p| shown_name(&p.name))
    }

    /// The events [`Renderer::show`] does something with: all of them
    /// with `--json`; in the terminal, not `file_done` (one per file).
    #[must_use]
    pub fn wants(json: bool) -> fn(&Event) -> bool {
        if json {
            |_| true
        } else {
            |e| !matches!(e, Event::FileDone { .. })
        }
    }

    /// The transfer the last event belonged to, if any.
    #[must_use]
    pub fn last_transfer(&self) -> Option<TransferId> {
        self.last_transfer
    }

    /// Shows one event.
    pub fn show(&mut self, envelope: Envelope) {
        if self.json && envelope.event.is_machine() {
            json_line(&envelope);
        }
        let event = envelope.event;
        if envelope.transfer.is_some() {
            self.last_transfer = envelope.transfer;
        }
        let t = envelope.transfer.unwrap_or(0);
        if let Some(peer) = peer_of(&event) {
            self.last_peer = Some(shown_name(&peer.name));
            self.peers.entry(t).or_insert_with(|| peer.clone());
        }
        match event {
            Event::Offer { .. } | Event::Confirm { .. } | Event::QuestionClosed { .. } => {
                self.question(t, event);
            }
            Event::Listening { .. } => {
                if !self.json {
                    let text = banner(&event);
                    if self.quiet {
                        // Where it is reachable: a result scripts need.
                        let reachable: Vec<&str> = text
                            .lines()
                            .filter(|l| l.starts_with("listening on "))
                            .collect();
                        self.result(&reachable.join("\n"));
                    } else {
                        self.result(&text);
                    }
                }
                if let Event::Listening { dir, .. } = event {
                    self.dir = dir;
                    self.receiving = true;
                }
            }
            Event::Connected { peer, address } => {
                self.chatter(&format!("connected to {} at {address}", peer.short()));
            }
            Event::Message { peer, text, saved } => {
                let mut line = format!("message from {}:\n{}", peer.short(), message_lines(&text));
                if let Some(p) = &saved {
                    line.push_str(&format!("\n(saved as {})", shown(p)));
                }
                self.result(&line);
                if saved.is_none() {
                    self.messages.insert(t);
                }
                self.copy_message(text);
            }
            Event::Accepted {
                side, files, bytes, ..
            } => {
                if side == Side::Send
                    && let Some(w) = self.waiting.take()
                    && w.answered()
                {
                    self.chatter(&format!("{} accepted", self.who(t)));
                }
                if let Some(code) = self.codes.remove(&t) {
                    self.chatter(&code);
                }
                let who = self.who(t);
                if let Some(bars) = Bars::new(self.bars_wanted, &who, bytes, files) {
                    self.bars.insert(t, bars);
                }
            }
            Event::Refused {
                side: Side::Receive,
                peer,
                status,
                message,
            } => {
                self.refused.insert(t);
                self.codes.remove(&t);
                self.trust_hint.remove(&t);
                let who = peer
                    .as_ref()
                    .map_or_else(|| self.who(t), |p| shown_name(&p.name));
                let id = peer.as_ref().map(|p| short_id(&p.id.uuid()));
                let what = self.offered.remove(&t);
                screen::err_line(&receiver_refusal(
                    &who,
                    id.as_deref(),
                    what.as_deref(),
                    status,
                    &message,
                ));
            }
            Event::Progress {
                bytes, total, file, ..
            } => match (self.bars.get_mut(&t), file) {
                (Some(bars), Some(file)) => bars.update(bytes, total, Some(&file)),
                (Some(bars), None) => {
                    bars.update(bytes, total, None);
                    bars.finish();
                    self.bars.remove(&t);
                }
                (None, _) => {}
            },
            Event::TransferDone(done) => self.done(t, &done),
            Event::Counting {
                entries,
                bytes,
                done,
            } => self.counting(entries, bytes, done),
            Event::Checking {
                side,
                peer,
                bytes,
                done,
            } => self.checking(t, side, &shown_name(&peer.name), bytes, done),
            Event::Error {
                side: Some(Side::Receive),
                peer,
                session,
                message,
                stopped,
            } => {
                if let Some(bars) = self.bars.remove(&t) {
                    bars.finish();
                }
                if stopped.is_some() {
                    // It resumes: what happened and what is kept, not a failure.
                    self.refused.remove(&t);
                    screen::err_line(&screen::paint(screen::Tone::Warning, &message));
                } else if !self.refused.remove(&t) {
                    // (A refusal was said in words already.)
                    screen::err_line(&screen::paint(
                        screen::Tone::Error,
                        &format!(
                            "transfer failed: {}",
                            crate::hint::without_os_codes(&message)
                        ),
                    ));
                }
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
            Event::Skipped(skipped) => screen::err_line(&skipped_text(&skipped)),
            // The listener's code waits: a prompt shows it, a refusal
            // needs none, an accepted offer shows it then.
            Event::Notice(n @ Notice::Code { .. }) if self.receiving => {
                if let Notice::Code { peer, .. } = &n {
                    self.trust_hint.insert(t, peer.id.short());
                }
                if let Some(text) = notice_text(&n) {
                    self.codes.insert(t, text);
                }
            }
            // The listener may receive from several peers at once: it names
            // the one.
            Event::Notice(Notice::NotReceived { path, why }) => {
                screen::err_line(&screen::paint(
                    screen::Tone::Error,
                    &format!(
                        "not received from {}: {}: {}",
                        self.who(t),
                        escape_for_terminal(&path),
                        crate::hint::without_os_codes(&why)
                    ),
                ));
            }
            Event::Notice(n) => {
                if let Notice::TrustedNow(_) = &n {
                    self.trust_hint.remove(&t);
                }
                notice(&n, self.quiet);
            }
            _ => {}
        }
    }

    /// An offer or a first contact: a line, or a question for the prompter.
    fn question(&mut self, t: TransferId, event: Event) {
        if let Event::Offer {
            side: Side::Receive,
            files,
            folders,
            entries,
            ..
        } = &event
        {
            self.offered.insert(t, offered(*files, *folders, entries));
        }
        if let Event::Offer {
            offer_id: Some(_), ..
        } = &event
        {
            // The question shows the code.
            self.codes.remove(&t);
        }
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
            } if !self.json && !self.quiet => {
                self.waiting = Some(Waiting::start(format!(
                    "waiting for {} to accept...",
                    peer.short()
                )));
            }
            Event::Offer {
                offer_id: Some(id),
                peer: Some(peer),
                files,
                folders,
                bytes,
                entries,
                executables,
                executables_among,
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
                        folders,
                        bytes,
                        entries: &entries,
                        executables,
                        executables_among,
                        code: code.as_ref(),
                        abandoned: abandoned_exchanges.unwrap_or(0),
                        localsend: localsend.as_deref(),
                        text: text.as_deref(),
                    },
                );
                self.ask(Ask::Offer {
                    id,
                    who: shown_name(&peer.name),
                    text,
                });
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
    fn done(&mut self, t: TransferId, d: &TransferDone) {
        if let Some(bars) = self.bars.remove(&t) {
            bars.finish();
        }
        self.refused.remove(&t);
        self.offered.remove(&t);
        self.codes.remove(&t);
        let hint = self.trust_hint.remove(&t).filter(|_| d.ok && d.files > 0);
        let who = d.peer.short();
        let elapsed = std::time::Duration::from_secs_f64(d.seconds.max(0.0));
        match d.side {
            Side::Send => {
                if d.ok && !self.json && self.sending_text {
                    screen::out_line(&format!(
                        "sent a text message ({}) to {who}",
                        human_bytes(d.bytes)
                    ));
                } else if d.ok && !self.json {
                    let line = summary(d.files, d.bytes, elapsed);
                    screen::out_line(&format!("sent {line} to {who}{}", resumed_note(d.resumed)));
                    if let Some(note) = d.wire.and_then(|(data, wire)| wire_note(data, wire)) {
                        self.chatter(&note);
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
                // The engine lists the first thousand; the rest are counted.
                if d.saved.len() < d.files && !d.saved.is_empty() {
                    let more = d.files - d.saved.len();
                    let noun = if more == 1 { "file" } else { "files" };
                    listing.push_str(&format!("\n  ... and {more} more {noun}"));
                }
                if d.saved.is_empty() && d.files > 0 && self.stdout_is_data {
                    listing.push_str("\n  (standard output)");
                }
                if let Some(note) = d.wire.and_then(|(data, wire)| wire_note(data, wire)) {
                    listing.push_str(&format!("\n  ({note})"));
                }
                // A text message's own line said it all; when nothing
                // arrived, the lines below say what did not.
                let nothing = d.files == 0 && !d.ok;
                let text_said = self.messages.remove(&t) && d.ok;
                if !text_said && !nothing {
                    self.result(&listing);
                }
                for line in failed_lines(d, &who) {
                    screen::err_line(&screen::paint(screen::Tone::Error, &line));
                }
                let report = Report {
                    peer_name: escape_for_terminal(&d.peer.name),
                    peer_id: d.peer.id.uuid(),
                    session: d.session.clone(),
                    saved: d.saved.clone(),
                    files: d.files,
                    bytes: d.bytes,
                    error: (!d.ok).then(|| failed_lines(d, &who).join("; ")),
                };
                self.report(&report);
            }
        }
        if let Some(id) = hint
            && !self.json
        {
            self.chatter(&trust_hint(&shown_name(&d.peer.name), &id));
        }
        self.peers.remove(&t);
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

/// The block that tells the user how to check a peer (first contact, or
/// a peer not trusted yet), wrapped to `width` columns: the code once, that
/// it is new for each connection, and what stays the same.
#[must_use]
pub fn code_block(
    peer: &PeerLabel,
    code: &Sas,
    first: bool,
    trust: impl std::fmt::Display,
    width: usize,
) -> String {
    let head = if first {
        format!("first contact with {peer}")
    } else {
        format!("{peer} ({trust})")
    };
    screen::wrap(
        &format!(
            "{head}\n  verification code {code}: the same code on both screens means no one is \
             in between.\n  {}",
            CODE_CHANGES
        ),
        width,
    )
}

/// What a verification code is not: stable.
pub const CODE_CHANGES: &str = "The code is new for each connection; the fingerprint in \
    brackets stays the same.";

/// After a transfer from a peer not trusted yet: how to stop being asked.
#[must_use]
pub fn trust_hint(name: &str, id: &str) -> String {
    format!("if the codes matched: `localstream trust {id}` accepts {name}'s offers without asking")
}

/// The receiver's line for a refused offer (or a peer refused before it
/// could offer): who, and why in words.
#[must_use]
pub fn receiver_refusal(
    who: &str,
    id: Option<&str>,
    what: Option<&str>,
    status: Status,
    message: &str,
) -> String {
    let what = what.unwrap_or("the offer");
    let trust = id.map_or_else(
        || "`localstream trust` it".to_owned(),
        |id| format!("`localstream trust {id}`"),
    );
    match status {
        Status::Declined if message == BLOCKED => format!("refused {who}: blocked"),
        Status::Declined if message == DECLINED => format!("declined {what} from {who}"),
        Status::Timeout => format!("no answer in time: declined {what} from {who}"),
        Status::NotTrusted if message.starts_with(localstream_node::receive::NEVER_MET) => {
            format!(
                "refused {who}'s offer: never met here, so not trusted (--trusted-only; to let \
                 it in, accept one transfer from it with `localstream listen` (or `--ui`), \
                 comparing the codes, then {trust})"
            )
        }
        Status::NotTrusted => {
            format!("refused {who}'s offer: not trusted (--trusted-only; {trust} to let it in)")
        }
        Status::ConsentUnavailable => format!(
            "refused {who}'s offer: not trusted, and there is no terminal to ask on \
             ({trust}, or run `listen --yes`)"
        ),
        Status::Busy => {
            format!("refused {who}'s offer: too many offers are waiting for an answer")
        }
        _ => format!("refused {who}'s offer: {}", escape_for_terminal(message)),
    }
}

/// The sender's line for its receiver's refusal.
#[must_use]
pub fn sender_refusal(who: &str, status: Status, message: &str) -> String {
    match status {
        Status::Declined if message == DECLINED || message.is_empty() => format!("{who} declined"),
        Status::Timeout if message == NO_ANSWER => {
            format!("{who} did not answer in time: nothing was sent")
        }
        _ if message.is_empty() => format!("{who} refused: {}", status.description()),
        _ => format!("{who} refused: {}", escape_for_terminal(message)),
    }
}

/// The engine's refusal messages the lines above put in other words
/// (`receive::refusal`).
const DECLINED: &str = "the receiver declined";
const BLOCKED: &str = "the receiver has blocked this node";
const NO_ANSWER: &str = "nobody answered the prompt";

/// What an offer holds, for a line: "big.bin", "3 files".
fn offered(files: usize, folders: usize, entries: &[EntryInfo]) -> String {
    match entries {
        [one] if files + folders == 1 => escape_for_terminal(&one.path),
        _ => files_and_folders(files as u64, folders as u64),
    }
}

/// The receiver's lines for the files of a transfer that did not arrive:
/// those that failed verification (discarded), those that could not be
/// saved.
fn failed_lines(d: &TransferDone, who: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let n = |count: usize| {
        (
            plural(count as u64, "file"),
            if count == 1 { "was" } else { "were" },
        )
    };
    if d.discarded > 0 {
        let (files, were) = n(d.discarded);
        lines.push(format!(
            "{files} from {who} failed verification and {were} discarded"
        ));
    }
    if d.unsaved > 0 {
        let (files, were) = n(d.unsaved);
        lines.push(format!(
            "{files} from {who} {were} received but could not be saved"
        ));
    }
    if lines.is_empty() && !d.ok {
        lines.push(if d.files == 0 {
            format!("nothing from {who} arrived")
        } else {
            format!("not every file from {who} arrived")
        });
    }
    lines
}

/// The peer an event names, if any.
fn peer_of(event: &Event) -> Option<&PeerLabel> {
    match event {
        Event::Connected { peer, .. } | Event::Confirm { peer, .. } => Some(peer),
        Event::Offer { peer, .. } | Event::Refused { peer, .. } => peer.as_ref(),
        _ => None,
    }
}

/// How long the sender waits for an answer before it says it is waiting
/// (a receiver that accepts by policy answers at once; one that asks a
/// person does not).
const WAITING_AFTER: std::time::Duration = std::time::Duration::from_millis(1500);

/// The sender's "waiting for ... to accept" line: printed only if no answer
/// came within [`WAITING_AFTER`]; [`Waiting::answered`] says whether it was.
#[derive(Debug)]
struct Waiting {
    state: std::sync::Arc<std::sync::Mutex<WaitState>>,
    timer: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitState {
    /// No answer yet, nothing printed.
    Pending,
    /// The line is on the screen.
    Shown,
    /// Answered.
    Over,
}

impl WaitState {
    /// The timer ran out: whether to print the line now.
    fn due(&mut self) -> bool {
        let show = *self == WaitState::Pending;
        if show {
            *self = WaitState::Shown;
        }
        show
    }

    /// The answer came: whether the line was printed (and wants its answer).
    fn answer(&mut self) -> bool {
        std::mem::replace(self, WaitState::Over) == WaitState::Shown
    }
}

impl Waiting {
    fn start(line: String) -> Waiting {
        let state = std::sync::Arc::new(std::sync::Mutex::new(WaitState::Pending));
        let timer_state = state.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(WAITING_AFTER).await;
            let mut s = timer_state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.due() {
                screen::err_line(&line);
            }
        });
        Waiting { state, timer }
    }

    /// The answer came (or the send ended): whether the line was shown.
    fn answered(&self) -> bool {
        self.timer.abort();
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .answer()
    }
}

/// A path `send` leaves out of a folder, as the line on stderr:
/// `skipped photos/secret.txt: permission denied`.
#[must_use]
pub fn skipped_text(s: &Skipped) -> String {
    let why = match s.reason {
        Skip::Symlink => "symbolic links are not sent".to_owned(),
        Skip::Partial => "a partial file of an unfinished transfer".to_owned(),
        Skip::Fifo => "a named pipe, not a file".to_owned(),
        Skip::Socket => "a socket, not a file".to_owned(),
        Skip::Device => "a device, not a file".to_owned(),
        Skip::PermissionDenied => "permission denied".to_owned(),
        Skip::Vanished => "gone before it could be read".to_owned(),
        Skip::Unreadable => format!(
            "cannot be read ({})",
            crate::hint::without_os_codes(s.error.as_deref().unwrap_or("unknown error"))
        ),
        Skip::Name => format!(
            "its name cannot be sent ({}); rename it to send it",
            s.error.as_deref().unwrap_or("not a valid name")
        ),
        Skip::Grew => {
            "the folders grew after the files were counted, and the receiver accepted the count; send it again"
                .to_owned()
        }
        _ => "not a regular file".to_owned(),
    };
    let folder = if s.folder {
        " (a folder: nothing in it is sent)"
    } else {
        ""
    };
    format!("skipped {}: {why}{folder}", shown(&s.path))
}

/// A notice, as text on stderr (warnings in colour on a terminal; with
/// `quiet` only warnings and errors).
fn notice(n: &Notice, quiet: bool) {
    if let Some(line) = notice_text(n) {
        let tone = match n {
            Notice::PeerRefused(_) | Notice::NotReceived { .. } => Some(screen::Tone::Error),
            Notice::StoreFailed(_) | Notice::NotAnnounced(_) | Notice::LocalSendOff(_) => {
                Some(screen::Tone::Warning)
            }
            _ => None,
        };
        match tone {
            Some(tone) => screen::err_line(&screen::paint(tone, &line)),
            None if quiet => {}
            None => screen::err_line(&line),
        }
    }
}

/// A notice as a line for people (`None` for the ones not shown).
#[must_use]
pub fn notice_text(n: &Notice) -> Option<String> {
    let line = match n {
        Notice::Resolved(r) => resolved(r),
        Notice::Code {
            peer,
            code,
            first,
            trust,
        } => code_block(peer, code, *first, trust, screen::width()),
        Notice::SkippedByReceiver { path, status } => {
            format!("{}: skipped by the receiver: {status}", shown(path))
        }
        Notice::Unread { path, error } => format!(
            "{}: cannot be read any more ({}): it is not sent, the rest goes on",
            shown(path),
            crate::hint::without_os_codes(error)
        ),
        Notice::NotReceived { path, why } => format!(
            "not received: {}: {}",
            escape_for_terminal(path),
            crate::hint::without_os_codes(why)
        ),
        Notice::Shrank { path, read, size } => format!(
            "{}: it shrank while it was sent (it had {} when counted, {} could be read): it is \
             not delivered, the rest goes on",
            shown(path),
            human_bytes(*size),
            human_bytes(*read)
        ),
        Notice::Grew { path, size } => format!(
            "{}: it grew while it was sent: what it had when counted ({}) went, the rest did \
             not; send it again for all of it",
            shown(path),
            human_bytes(*size)
        ),
        Notice::NotDelivered { path, status } => {
            format!("{}: not delivered: {}", shown(path), status.description())
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
                ResumeVerdict::Differs => {
                    format!("{name}: differs from the receiver's copy; sending it whole")
                }
            }
        }
        Notice::Retrying {
            error,
            pause,
            attempt,
            left,
        } => format!(
            "{}\nretrying in {pause} s (attempt {attempt}, giving up in {left} s)",
            crate::hint::without_os_codes(error)
        ),
        Notice::GivingUp {
            error,
            attempts,
            window,
        } => format!(
            "{}\ngiving up after {attempts} attempt{} ({window} s of --retry)",
            crate::hint::without_os_codes(error),
            if *attempts == 1 { "" } else { "s" }
        ),
        Notice::PeerRefused(e) => crate::hint::explain_trust(e),
        Notice::TrustedNow(peer) => format!("{} is trusted from now on", peer.short()),
        Notice::StoreFailed(message) => format!("warning: {message}"),
        Notice::Identical { files, bytes } => format!(
            "skipped {} identical {} ({}): the receiver already has {}",
            files,
            if *files == 1 { "file" } else { "files" },
            human_bytes(*bytes),
            if *files == 1 { "it" } else { "them" }
        ),
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
    fn retry_lines_leave_out_os_error_numbers() {
        let error =
            "cannot connect to 127.0.0.1:41002: Connection refused (os error 111)".to_owned();
        assert_eq!(
            notice_text(&Notice::Retrying {
                error: error.clone(),
                pause: 1.0,
                attempt: 2,
                left: 58,
            })
            .unwrap(),
            "cannot connect to 127.0.0.1:41002: Connection refused\nretrying in 1 s (attempt 2, \
             giving up in 58 s)"
        );
        assert_eq!(
            notice_text(&Notice::GivingUp {
                error,
                attempts: 6,
                window: 60.0,
            })
            .unwrap(),
            "cannot connect to 127.0.0.1:41002: Connection refused\ngiving up after 6 attempts \
             (60 s of --retry)"
        );
    }

    #[test]
    fn files_that_did_not_arrive_are_told_apart() {
        let done = |ok, discarded, unsaved| TransferDone {
            side: Side::Receive,
            peer: PeerLabel {
                name: "h1".into(),
                id: localstream_node::NodeId([0x3f; 16]),
                fingerprint: [0xab; 32],
            },
            session: String::new(),
            ok,
            files: 1,
            offered: 4,
            bytes: 1,
            resumed: 0,
            seconds: 1.0,
            failed: None,
            saved: vec![],
            wire: None,
            discarded,
            unsaved,
        };
        assert!(failed_lines(&done(true, 0, 0), "h1").is_empty());
        assert_eq!(
            failed_lines(&done(false, 1, 2), "h1"),
            [
                "1 file from h1 failed verification and was discarded",
                "2 files from h1 were received but could not be saved",
            ]
        );
        assert_eq!(
            failed_lines(&done(false, 0, 1), "h1"),
            ["1 file from h1 was received but could not be saved"]
        );
        assert_eq!(
            failed_lines(&done(false, 0, 0), "h1"),
            ["not every file from h1 arrived"]
        );
        let nothing = TransferDone {
            files: 0,
            ..done(false, 0, 0)
        };
        assert_eq!(failed_lines(&nothing, "h1"), ["nothing from h1 arrived"]);
    }

    #[test]
    fn refusals_read_as_words() {
        assert_eq!(
            receiver_refusal("h1", None, Some("big.bin"), Status::Declined, DECLINED),
            "declined big.bin from h1"
        );
        assert_eq!(
            receiver_refusal("h3", None, None, Status::Declined, BLOCKED),
            "refused h3: blocked"
        );
        assert_eq!(
            receiver_refusal(
                "h3",
                Some("3f2a9c1e"),
                Some("a"),
                Status::NotTrusted,
                "whatever"
            ),
            "refused h3's offer: not trusted (--trusted-only; `localstream trust 3f2a9c1e` to let \
             it in)"
        );
        assert_eq!(
            receiver_refusal("h1", None, Some("3 files"), Status::Timeout, NO_ANSWER),
            "no answer in time: declined 3 files from h1"
        );
        assert_eq!(
            receiver_refusal(
                "h1",
                None,
                Some("big.bin"),
                Status::InsufficientStorage,
                "not enough disk space: the offer needs 2.00 GiB but only 1.00 GiB is free"
            ),
            "refused h1's offer: not enough disk space: the offer needs 2.00 GiB but only \
             1.00 GiB is free"
        );
        assert_eq!(
            sender_refusal("h2", Status::Declined, DECLINED),
            "h2 declined"
        );
        assert_eq!(
            sender_refusal("h2", Status::Busy, ""),
            "h2 refused: receiver busy or shutting down"
        );
        assert_eq!(
            sender_refusal("h2", Status::Timeout, NO_ANSWER),
            "h2 did not answer in time: nothing was sent"
        );
    }

    #[test]
    fn the_waiting_line_is_answered_only_when_it_was_shown() {
        // The answer came first: no line, and none later.
        let mut s = WaitState::Pending;
        assert!(!s.answer());
        assert!(!s.due());
        // The timer ran out first: the line, then its answer.
        let mut s = WaitState::Pending;
        assert!(s.due());
        assert!(s.answer());
        assert!(!s.answer(), "answered once");
    }

    #[test]
    fn the_code_block_says_the_code_once_and_what_stays() {
        let peer = PeerLabel {
            name: "h1".into(),
            id: localstream_node::NodeId([0x3f; 16]),
            fingerprint: [0xab; 32],
        };
        let text = code_block(&peer, &Sas(42), true, "new", 80);
        assert_eq!(
            text,
            "first contact with h1 (3f3f3f3f) [abab:abab:abab:abab]\n  verification code \
             0000 0000 0042: the same code on both screens means no one\n  is in between.\n  \
             The code is new for each connection; the fingerprint in brackets stays the\n  same."
        );
        assert_eq!(text.matches("0042").count(), 1);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
        }
        assert_eq!(
            offered(
                1,
                0,
                &[EntryInfo {
                    path: "big.bin".into(),
                    size: 1,
                    folder: false,
                    executable: false,
                    text: false,
                    modified: None,
                }]
            ),
            "big.bin"
        );
        assert_eq!(offered(3, 0, &[]), "3 files");
        assert_eq!(offered(3, 2, &[]), "3 files and 2 folders");
    }

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
