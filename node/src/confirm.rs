//! First contact from the sending side: before any file name leaves this
//! node for a node it has never pinned, its user compares the verification
//! code with the one the receiver shows, as with SSH's unknown-host question.
//!
//! ```text
//!  handshake ─► pinned? ──yes──► go on
//!                 │ no
//!                 ├─ --yes / first-contact = "yes" ──► go on
//!                 ├─ Ask ──► Event::Confirm ─► front end ─► Node::confirm(yes) ─► go on
//!                 └─ Unattended (no terminal) ──► refuse, saying how to proceed
//! ```

use std::time::Duration;

use localstream_proto::names::escape_for_terminal;
use localstream_proto::{PeerIdentity, Sas};

use crate::error::{NotConfirmed, Result, TrustError};
use crate::event::{Closed, Event, Events, Then};
use crate::label::PeerLabel;
use crate::question::{Answer, Questions};

/// How long the question waits for an answer (the receiver waits as long
/// for the offer).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(120);

/// What to do when the receiver is a node never met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstContact {
    /// Ask the front end to have the user compare the verification code
    /// ([`Event::Confirm`], answered with [`crate::Node::confirm`]).
    #[default]
    Ask,
    /// Go ahead (`--yes`, or the setting).
    Yes,
    /// Nobody can be asked (no terminal): refuse, saying how to proceed.
    Unattended,
}

/// Whom to ask, and how.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker<'a> {
    pub(crate) policy: FirstContact,
    pub(crate) questions: &'a Questions,
    pub(crate) events: &'a Events,
}

/// Asks the front end whether the receiver shows the same code; `Ok(())`
/// means go on. `then` says what happens next.
///
/// # Errors
/// [`TrustError::NotConfirmed`] when the user says no, does not answer in time,
/// or cannot be asked.
pub(crate) async fn first_contact(
    asker: Asker<'_>,
    peer: &PeerIdentity,
    sas: &Sas,
    then: Then,
) -> Result<()> {
    match asker.policy {
        FirstContact::Yes => return Ok(()),
        FirstContact::Unattended => {
            let who = PeerLabel::of(peer);
            return Err(TrustError::NotConfirmed(NotConfirmed::Unattended {
                peer: who.to_string(),
                name: escape_for_terminal(&peer.name),
                code: sas.to_string(),
            })
            .into());
        }
        FirstContact::Ask => {}
    }
    let mut asked = asker.questions.open();
    asker.events.emit(Event::Confirm {
        question: asked.id,
        peer: PeerLabel::of(peer),
        code: *sas,
        then,
    });
    match tokio::time::timeout(CONFIRM_TIMEOUT, asked.answer()).await {
        Ok(Some(Answer::Confirm(true))) => Ok(()),
        Ok(_) => Err(TrustError::NotConfirmed(NotConfirmed::Declined).into()),
        Err(_) => {
            asker.events.emit(Event::QuestionClosed {
                id: asked.id,
                reason: Closed::TimedOut,
            });
            let secs = CONFIRM_TIMEOUT.as_secs();
            Err(TrustError::NotConfirmed(NotConfirmed::TimedOut(secs)).into())
        }
    }
}
