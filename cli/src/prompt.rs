//! Questions on the terminal, one at a time: the receiver's consent to an
//! offer ([`Event::Offer`](localstream_node::Event::Offer) with an `offer_id`) and the sender's first-contact
//! confirmation ([`Event::Confirm`](localstream_node::Event::Confirm)). The answers go back to the engine
//! ([`Node::decide`], [`Node::confirm`]); a question the engine closes (no
//! answer in time, the sender went away) is withdrawn from the screen.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, IsTerminal, Write};

use localstream_node::event::{Closed, EntryInfo, OfferId, Then};
use localstream_node::listen::RECENT_MINUTES;
use localstream_node::units::{files_and_folders, human_bytes};
use localstream_node::{Decision, Node, PeerLabel};
use localstream_proto::Sas;
use localstream_proto::names::escape_for_terminal;
use tokio::sync::mpsc;

/// Files listed in a consent prompt before "and N more".
const PROMPT_FILES: usize = 10;

/// Whether someone can answer on this terminal (stdin and stderr both are one).
#[must_use]
pub fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks for a LocalSend device's PIN on the terminal (`None`: nothing typed).
pub async fn read_pin() -> Option<String> {
    eprint!("PIN: ");
    let _ = std::io::stderr().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok().map(|_| line)
    })
    .await
    .ok()
    .flatten()?;
    let pin = line.trim().to_owned();
    (!pin.is_empty()).then_some(pin)
}

/// What the prompter is told.
#[derive(Debug)]
pub enum Ask {
    /// Ask about an offer.
    Offer {
        /// Its number.
        id: OfferId,
        /// Who offers (its name, escaped).
        who: String,
        /// The question, ready to print.
        text: String,
    },
    /// Ask about a first contact.
    Confirm {
        /// Its number.
        id: u64,
        /// The question, ready to print.
        text: String,
    },
    /// The engine closed question `id`.
    Closed {
        /// Which.
        id: OfferId,
        /// Why.
        reason: Closed,
    },
}

/// Starts the prompter task; send it [`Ask`]s.
#[must_use]
pub fn start(node: Node) -> mpsc::UnboundedSender<Ask> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(node, rx));
    tx
}

/// Asks one question after the other.
async fn run(node: Node, mut rx: mpsc::UnboundedReceiver<Ask>) {
    let mut queue = VecDeque::new();
    let mut closed = HashSet::new();
    let mut lines: Option<mpsc::Receiver<String>> = None;
    loop {
        let ask = match queue.pop_front() {
            Some(a) => a,
            None => match rx.recv().await {
                Some(a) => a,
                None => return,
            },
        };
        let (id, text, offer) = match ask {
            Ask::Offer { id, who, text } => (id, text, Some(who)),
            Ask::Confirm { id, text } => (id, text, None),
            Ask::Closed { id, .. } => {
                closed.insert(id);
                continue;
            }
        };
        if closed.remove(&id) {
            continue;
        }
        let lines = match &mut lines {
            Some(l) => l,
            None => lines.insert(stdin_lines()),
        };
        // Anything typed before the question is not an answer to it.
        while lines.try_recv().is_ok() {}
        // One question at a time, and nothing printed into it meanwhile.
        crate::screen::ask(&text);
        let line = loop {
            tokio::select! {
                line = lines.recv() => break line,
                more = rx.recv() => match more {
                    Some(Ask::Closed { id: gone, reason }) if gone == id => {
                        crate::screen::answered(Some(&closed_note(offer.as_deref(), reason)));
                        break None;
                    }
                    Some(Ask::Closed { id: gone, .. }) => { closed.insert(gone); }
                    Some(other) => queue.push_back(other),
                    None => {
                        crate::screen::answered(None);
                        return;
                    }
                },
            }
        };
        let Some(line) = line else { continue };
        crate::screen::answered(None);
        // A question already closed by the engine is answered in vain: fine.
        let _ = if offer.is_some() {
            node.decide(id, parse_decision(&line))
        } else {
            node.confirm(id, matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
        };
    }
}

/// Lines typed on the terminal, read by one thread.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read the terminal");
    }
    rx
}

/// The line that takes a closed question's place: `who` offered (`None`:
/// a first contact).
fn closed_note(who: Option<&str>, reason: Closed) -> String {
    match (reason, who) {
        (Closed::TimedOut, _) => "(no answer in time: declined)".to_owned(),
        (Closed::Withdrawn, Some(who)) => format!("{who} cancelled: question withdrawn"),
        (Closed::Withdrawn, None) => "question withdrawn".to_owned(),
    }
}

/// Reads the user's answer to an offer; anything unclear is a rejection.
fn parse_decision(line: &str) -> Decision {
    match line.trim().to_lowercase().as_str() {
        "a" | "accept" | "y" | "yes" => Decision::Accept,
        "t" | "trust" => Decision::AcceptAndTrust,
        _ => Decision::Reject,
    }
}

/// The consent question for an offer.
#[must_use]
pub fn offer_question(peer: &PeerLabel, o: Offered<'_>) -> String {
    let Offered {
        files,
        folders,
        bytes,
        entries,
        executables,
        executables_among,
        code,
        abandoned,
        localsend,
        text,
    } = o;
    if let Some(text) = text {
        let mut q = format!(
            "{} (id {}, {}) sends a text message:\n  {}",
            peer.short(),
            peer.id,
            localsend.unwrap_or("LocalSend"),
            escape_for_terminal(text).replace("\\n", "\n  ")
        );
        q.push_str(&localsend_note(peer));
        q.push_str("\n[a]ccept (show and save it), accept and [t]rust, or [r]eject? [a/t/R] ");
        return q;
    }
    let tz = crate::sessions::zone();
    let mut q = if let [e] = entries
        && e.text
    {
        // A LocalStream text: what it says is shown once accepted.
        format!(
            "{} (id {}) wants to send a text message ({}, shown once you accept):",
            peer.short(),
            peer.id,
            human_bytes(e.size)
        )
    } else {
        format!(
            "{} (id {}) wants to send {} ({}):",
            peer.short(),
            peer.id,
            files_and_folders(files as u64, folders as u64),
            human_bytes(bytes)
        )
    };
    for e in entries.iter().take(PROMPT_FILES).filter(|e| !e.text) {
        q.push_str(&format!(
            "\n  {}  ({}{}){}",
            escape_for_terminal(&e.path),
            if e.folder {
                "folder".to_owned()
            } else {
                human_bytes(e.size)
            },
            e.modified
                .filter(|_| !e.folder)
                .map_or_else(String::new, |t| format!(", modified {}", modified(t, &tz))),
            if e.executable { "  [executable]" } else { "" }
        ));
    }
    // Every entry, folders too, is a line of the list.
    let listed = files + folders;
    if listed > PROMPT_FILES {
        q.push_str(&format!("\n  ... and {} more", listed - PROMPT_FILES));
    }
    if executables > 0 {
        let of = if executables_among < listed {
            // The rest of a large send is listed only after the answer.
            format!("the first {executables_among}")
        } else {
            "them".to_owned()
        };
        q.push_str(&format!(
            "\n{executables} of {of} {} marked executable",
            if executables == 1 { "is" } else { "are" }
        ));
    }
    let width = crate::screen::width();
    if let Some(code) = code {
        q.push('\n');
        q.push_str(&crate::screen::wrap(
            &format!(
                "verification code {code} (it must match the code on the sender's screen). {}",
                crate::render::CODE_CHANGES
            ),
            width,
        ));
    }
    if abandoned > 0 {
        let warning = format!(
            "WARNING: {abandoned} key exchange{} {} abandoned in the last {RECENT_MINUTES} \
             minutes: someone may be trying to fake the verification code. Compare all 12 \
             digits with the sender's screen.",
            if abandoned == 1 { "" } else { "s" },
            if abandoned == 1 { "was" } else { "were" },
        );
        q.push('\n');
        q.push_str(&crate::screen::paint(
            crate::screen::Tone::Warning,
            &crate::screen::wrap(&warning, width),
        ));
    }
    if localsend.is_some() {
        q.push_str(&localsend_note(peer));
    }
    q.push_str("\n[a]ccept once, accept and [t]rust, or [r]eject? [a/t/R] ");
    q
}

/// A sender's modification time, in this machine's time zone.
#[must_use]
pub fn modified(secs: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(
        |_| "at an impossible time".to_owned(),
        |t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        },
    )
}

/// What an offer is, for [`offer_question`].
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    /// Files offered (streams and texts included).
    pub files: usize,
    /// Folders offered.
    pub folders: usize,
    /// Bytes offered.
    pub bytes: u64,
    /// The first entries.
    pub entries: &'a [EntryInfo],
    /// How many are executable among the first `executables_among` (the
    /// first batch of a large send; all of them otherwise).
    pub executables: usize,
    /// How many entries `executables` counts in.
    pub executables_among: usize,
    /// The verification code.
    pub code: Option<&'a Sas>,
    /// Key exchanges abandoned lately.
    pub abandoned: u64,
    /// A LocalSend device's description.
    pub localsend: Option<&'a str>,
    /// A text message.
    pub text: Option<&'a str>,
}

/// LocalSend has no code: the fingerprint is what to compare.
fn localsend_note(peer: &PeerLabel) -> String {
    format!(
        "\nLocalSend has no verification code: compare its certificate fingerprint {} \
         with the one in the device's LocalSend settings",
        localstream_node::localsend_fingerprint(&peer.fingerprint)
    )
}

/// The sender's first-contact question.
#[must_use]
pub fn confirm_question(peer: &PeerLabel, code: &Sas, then: &Then) -> String {
    let what = match then {
        Then::Send { files, folders } => {
            format!("Send {}", files_and_folders(*files as u64, *folders as u64))
        }
        Then::Pin(alias) => format!("Pin it as '{}'", escape_for_terminal(alias)),
    };
    let explained = crate::screen::wrap(
        &format!(
            "first contact with {peer}.\nverification code {code}\n{}\nDoes {} show the same \
             code? Only then can no one be in between.",
            crate::render::CODE_CHANGES,
            escape_for_terminal(&peer.name)
        ),
        crate::screen::width(),
    );
    format!("{explained} {what}? [y/N] ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_decision("a\n"), Decision::Accept);
        assert_eq!(parse_decision(" Yes "), Decision::Accept);
        assert_eq!(parse_decision("t"), Decision::AcceptAndTrust);
        assert_eq!(parse_decision("TRUST"), Decision::AcceptAndTrust);
        for no in ["", "r", "n", "no", "reject", "at", "yes please"] {
            assert_eq!(parse_decision(no), Decision::Reject, "{no:?}");
        }
    }

    #[test]
    fn the_offer_question_lists_escapes_and_warns() {
        let peer = PeerLabel {
            name: "lap\x1btop".into(),
            id: localstream_node::NodeId([0x3f; 16]),
            fingerprint: [0xab; 32],
        };
        let entries: Vec<EntryInfo> = (0..12)
            .map(|i| EntryInfo {
                path: format!("f{i}\x07"),
                size: 2048,
                folder: false,
                executable: i == 0,
                text: false,
                modified: None,
            })
            .collect();
        let o = Offered {
            files: 12,
            folders: 0,
            bytes: 24576,
            entries: &entries,
            executables: 1,
            executables_among: 12,
            code: Some(&Sas(42)),
            abandoned: 7,
            localsend: None,
            text: None,
        };
        let q = offer_question(&peer, o);
        assert!(!q.contains('\x1b') && !q.contains('\x07'), "{q}");
        assert!(q.contains("wants to send 12 files (24.00 KiB)"), "{q}");
        assert!(q.contains("(2.00 KiB)  [executable]"), "{q}");
        assert!(q.contains("... and 2 more"), "{q}");
        assert!(q.contains("1 of them is marked executable"), "{q}");
        // A large send: only its first batch is seen before the answer.
        let large = offer_question(
            &peer,
            Offered {
                files: 20_000,
                executables: 3,
                executables_among: 8_192,
                ..o
            },
        );
        assert!(
            large.contains("\n3 of the first 8192 are marked executable\n"),
            "{large}"
        );
        assert!(q.contains("verification code 0000 0000 0042"), "{q}");
        assert!(q.contains("WARNING: 7 key exchanges were abandoned"), "{q}");
        assert!(q.ends_with("[a/t/R] "), "{q}");
    }

    #[test]
    fn folders_are_counted_apart_from_files() {
        let peer = PeerLabel {
            name: "lap".into(),
            id: localstream_node::NodeId([0x3f; 16]),
            fingerprint: [0xab; 32],
        };
        // A folder, its file, and 10 more folders: 12 lines in all.
        let entries: Vec<EntryInfo> = (0..12)
            .map(|i| EntryInfo {
                path: if i == 1 {
                    "d0/f".into()
                } else {
                    format!("d{i}")
                },
                size: if i == 1 { 5 } else { 0 },
                folder: i != 1,
                executable: false,
                text: false,
                modified: None,
            })
            .collect();
        let q = offer_question(
            &peer,
            Offered {
                files: 1,
                folders: 11,
                bytes: 5,
                entries: &entries,
                executables: 0,
                executables_among: 12,
                code: None,
                abandoned: 0,
                localsend: None,
                text: None,
            },
        );
        assert!(
            q.contains("wants to send 1 file and 11 folders (5 B):"),
            "{q}"
        );
        assert!(q.contains("\n  d0  (folder)\n  d0/f  (5 B)\n"), "{q}");
        assert!(q.contains("\n  ... and 2 more\n"), "{q}");
        let code = Sas(42);
        let confirm =
            |files, folders| confirm_question(&peer, &code, &Then::Send { files, folders });
        assert!(confirm(4, 3).ends_with(" Send 4 files and 3 folders? [y/N] "));
        assert!(confirm(1, 0).ends_with(" Send 1 file? [y/N] "));
        assert!(confirm(0, 2).ends_with(" Send 2 folders? [y/N] "));
    }

    #[test]
    fn a_text_offer_and_modification_times_are_shown() {
        let peer = PeerLabel {
            name: "lap".into(),
            id: localstream_node::NodeId([0x3f; 16]),
            fingerprint: [0xab; 32],
        };
        let offered = |entries: &[EntryInfo]| {
            offer_question(
                &peer,
                Offered {
                    files: entries.len(),
                    folders: 0,
                    bytes: entries.iter().map(|e| e.size).sum(),
                    entries,
                    executables: 0,
                    executables_among: 0,
                    code: None,
                    abandoned: 0,
                    localsend: None,
                    text: None,
                },
            )
        };
        let text = [EntryInfo {
            path: "message.txt".into(),
            size: 11,
            folder: false,
            executable: false,
            text: true,
            modified: None,
        }];
        let q = offered(&text);
        assert!(
            q.ends_with(
                "(id 3f3f3f3f-3f3f-3f3f-3f3f-3f3f3f3f3f3f) wants to send a text message (11 B, \
                 shown once you accept):\n[a]ccept once, accept and [t]rust, or [r]eject? [a/t/R] "
            ),
            "{q}"
        );
        assert!(!q.contains("message.txt"), "{q}");
        let file = [EntryInfo {
            path: "run.sh".into(),
            size: 2048,
            folder: false,
            executable: false,
            text: false,
            modified: Some(1_764_000_000),
        }];
        let q = offered(&file);
        let tz = crate::sessions::zone();
        assert!(
            q.contains(&format!(
                "\n  run.sh  (2.00 KiB, modified {})",
                modified(1_764_000_000, &tz)
            )),
            "{q}"
        );
        assert_eq!(
            modified(1_764_000_000, &jiff::tz::TimeZone::UTC),
            "2025-11-24 16:00"
        );
    }
}
