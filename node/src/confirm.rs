//! First contact from the sending side: before any file name leaves this
//! node for a node it has never pinned, its user compares the verification
//! code with the one the receiver shows, as with SSH's unknown-host question.
//!
//! ```text
//!  handshake ─► pinned? ──yes──► go on
//!                 │ no
//!                 ├─ --yes / first-contact = "yes" ──► go on
//!                 ├─ a terminal ──► "does <peer> show 0421 9377 0615? [y/N]" ─► y: go on
//!                 └─ no terminal ──► refuse, saying how to proceed
//! ```

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use localstream_proto::names::escape_for_terminal;
use localstream_proto::{PeerIdentity, Sas};

use crate::error::{Error, Result};
use crate::settings::FirstContactSetting;

/// How long the question waits for an answer (the receiver waits as long
/// for the offer).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);

/// What to do when the receiver is a node never met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstContact {
    /// Ask the user to compare the verification code.
    #[default]
    Ask,
    /// Go ahead (`--yes`, or the setting).
    Yes,
}

impl FirstContact {
    /// `--yes` wins; else the setting; else ask.
    #[must_use]
    pub fn from_flag(yes: bool, setting: Option<FirstContactSetting>) -> FirstContact {
        match (yes, setting) {
            (true, _) | (false, Some(FirstContactSetting::Yes)) => FirstContact::Yes,
            _ => FirstContact::Ask,
        }
    }
}

/// Asks the user whether the receiver shows the same code; `Ok(())` means
/// go on. `what` says what happens next ("send 3 files", "pin it").
///
/// # Errors
/// [`Error::NotConfirmed`] when the user says no, does not answer in time,
/// or cannot be asked (no terminal).
pub async fn first_contact(
    policy: FirstContact,
    peer: &PeerIdentity,
    sas: &Sas,
    what: &str,
) -> Result<()> {
    if policy == FirstContact::Yes {
        return Ok(());
    }
    let who = crate::discover::label_proven(peer);
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(Error::NotConfirmed(format!(
            "{who} is a node this one has never met, and there is no terminal to ask whether its \
             verification code is {sas}: nothing was sent. Compare the code with the one \
             `localstream listen` shows on {name}, then run again with --yes (or set \
             `localstream config set first-contact yes`), or pin it first with \
             `localstream add NAME ADDRESS`",
            name = escape_for_terminal(&peer.name)
        )));
    }
    let question = format!(
        "first contact with {who}.\nverification code {sas}\nDoes {name} show the same code? \
         Only then can no one be in between. {what}? [y/N] ",
        name = escape_for_terminal(&peer.name)
    );
    let answer = tokio::time::timeout(
        CONFIRM_TIMEOUT,
        tokio::task::spawn_blocking(move || ask(&question)),
    )
    .await;
    match answer {
        Ok(Ok(Some(line))) if matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") => Ok(()),
        Ok(_) => Err(Error::NotConfirmed(
            "not confirmed: nothing was sent".into(),
        )),
        Err(_) => Err(Error::NotConfirmed(format!(
            "no answer in {} s: nothing was sent",
            CONFIRM_TIMEOUT.as_secs()
        ))),
    }
}

/// Prints the question on stderr and reads one line from stdin.
fn ask(question: &str) -> Option<String> {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(question.as_bytes());
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_setting_then_asking() {
        use FirstContactSetting as S;
        assert_eq!(
            FirstContact::from_flag(true, Some(S::Ask)),
            FirstContact::Yes
        );
        assert_eq!(
            FirstContact::from_flag(false, Some(S::Yes)),
            FirstContact::Yes
        );
        assert_eq!(
            FirstContact::from_flag(false, Some(S::Ask)),
            FirstContact::Ask
        );
        assert_eq!(FirstContact::from_flag(false, None), FirstContact::Ask);
    }
}
