//! Receiving is consent: accept everything ([`Policy::Yes`]), accept trusted
//! peers only ([`Policy::TrustedOnly`]), or ask the front end about anyone
//! not trusted ([`Policy::Ask`]): the offer event carries an `offer_id`, and
//! [`crate::Node::decide`] answers it. Blocked peers are always refused;
//! with nobody to ask ([`Policy::Unattended`]) only trusted peers get in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::event::{Closed, Event, Events};
use crate::question::{Answer, Decision, Questions};

/// How long an offer waits for an answer before it is refused.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Who may send to a listener without being asked. Blocked peers are
/// refused under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Accept every offer (`--yes`).
    Yes,
    /// Accept trusted peers, refuse the rest (`--trusted-only`).
    TrustedOnly,
    /// Accept trusted peers, ask the front end about the rest.
    Ask,
    /// Ask, but nobody can answer (no terminal): trusted peers only, and
    /// the refusal says why.
    Unattended,
}

/// What this node's peer store says about the peer making an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Verified by the user.
    Trusted,
    /// Refused, always.
    Blocked,
    /// Anything else (new, or known but not verified).
    Untrusted,
}

/// How an offer was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ruling {
    /// Go ahead.
    Accept,
    /// Go ahead, and trust this peer from now on.
    AcceptAndTrust,
    /// The user said no.
    Decline,
    /// The peer is blocked.
    Blocked,
    /// The policy accepts trusted peers only (`unattended`: because nobody
    /// can be asked).
    NotTrusted {
        /// Whether it is only for want of someone to ask.
        unattended: bool,
    },
    /// Nobody answered in time.
    TimedOut,
    /// Too many offers are already waiting for an answer.
    Busy,
    /// The sender spoke (or went away) before the answer: the question was
    /// withdrawn.
    Withdrawn,
}

/// Offers that may wait for an answer at once; more are refused as busy.
pub const MAX_WAITING: usize = 4;

/// Decides on offers. Shared by every connection of a listener.
#[derive(Debug)]
pub struct Gate {
    policy: Policy,
    waiting: AtomicUsize,
    questions: Arc<Questions>,
    events: Events,
}

/// Counts an offer as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Gate {
    /// A gate with the given policy, asking through `questions` and `events`.
    pub(crate) fn new(policy: Policy, questions: Arc<Questions>, events: Events) -> Self {
        Gate {
            policy,
            waiting: AtomicUsize::new(0),
            questions,
            events,
        }
    }

    /// Whether only trusted peers are accepted (`--trusted-only`): others
    /// are refused right after their handshake.
    #[must_use]
    pub fn trusted_only(&self) -> bool {
        self.policy == Policy::TrustedOnly
    }

    /// Decides on an offer from a peer of `standing`, reported as `offer`
    /// (an [`Event::Offer`]; it gets its `offer_id` when the front end is
    /// asked). If `withdrawn` completes first (the sender sent something or
    /// went away while the question waits), the question is withdrawn.
    pub(crate) async fn decide(
        &self,
        standing: Standing,
        mut offer: Event,
        withdrawn: impl Future<Output = ()>,
    ) -> Ruling {
        let ruling = match (standing, self.policy) {
            (Standing::Blocked, _) => Some(Ruling::Blocked),
            (_, Policy::Yes) | (Standing::Trusted, _) => Some(Ruling::Accept),
            (Standing::Untrusted, Policy::TrustedOnly) => {
                Some(Ruling::NotTrusted { unattended: false })
            }
            (Standing::Untrusted, Policy::Unattended) => {
                Some(Ruling::NotTrusted { unattended: true })
            }
            (Standing::Untrusted, Policy::Ask) => None,
        };
        if let Some(ruling) = ruling {
            self.events.emit(offer);
            return ruling;
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.events.emit(offer);
            return Ruling::Busy;
        }
        let _waiting = Waiting(&self.waiting);
        let mut asked = self.questions.open();
        let offer_id = asked.id;
        if let Event::Offer { offer_id: id, .. } = &mut offer {
            *id = Some(offer_id);
        }
        self.events.emit(offer);
        let answer = tokio::time::timeout(PROMPT_TIMEOUT, asked.answer());
        let (ruling, closed) = tokio::select! {
            a = answer => match a {
                Ok(Some(Answer::Decision(Decision::Accept))) => (Ruling::Accept, None),
                Ok(Some(Answer::Decision(Decision::AcceptAndTrust))) => (Ruling::AcceptAndTrust, None),
                Ok(_) => (Ruling::Decline, None),
                Err(_) => (Ruling::TimedOut, Some(Closed::TimedOut)),
            },
            () = withdrawn => (Ruling::Withdrawn, Some(Closed::Withdrawn)),
        };
        drop(asked);
        if let Some(reason) = closed {
            self.events.emit(Event::QuestionClosed {
                id: offer_id,
                reason,
            });
        }
        ruling
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Side;

    fn offer() -> Event {
        Event::Offer {
            side: Side::Receive,
            offer_id: None,
            peer: None,
            files: 1,
            folders: 0,
            bytes: 1,
            entries: vec![],
            executables: 0,
            executables_among: 0,
            code: None,
            abandoned_exchanges: None,
            localsend: None,
            text: None,
        }
    }

    fn gate(policy: Policy) -> (Gate, Arc<Questions>, Events) {
        let q = Arc::new(Questions::default());
        let e = Events::default();
        (Gate::new(policy, q.clone(), e.clone()), q, e)
    }

    #[tokio::test]
    async fn policies_that_need_no_one() {
        for policy in [
            Policy::Yes,
            Policy::TrustedOnly,
            Policy::Ask,
            Policy::Unattended,
        ] {
            let (g, _, _) = gate(policy);
            let d = |s| g.decide(s, offer(), std::future::pending());
            assert_eq!(d(Standing::Blocked).await, Ruling::Blocked);
            assert_eq!(d(Standing::Trusted).await, Ruling::Accept);
        }
        let (g, _, _) = gate(Policy::Yes);
        let d = g.decide(Standing::Untrusted, offer(), std::future::pending());
        assert_eq!(d.await, Ruling::Accept);
        let (g, _, _) = gate(Policy::TrustedOnly);
        let d = g.decide(Standing::Untrusted, offer(), std::future::pending());
        assert_eq!(d.await, Ruling::NotTrusted { unattended: false });
        let (g, _, _) = gate(Policy::Unattended);
        let d = g.decide(Standing::Untrusted, offer(), std::future::pending());
        assert_eq!(d.await, Ruling::NotTrusted { unattended: true });
    }

    #[tokio::test]
    async fn asking_waits_for_the_answer_to_its_offer_id() {
        let (g, q, e) = gate(Policy::Ask);
        let mut rx = e.subscribe();
        let answering = async {
            let Some(Event::Offer {
                offer_id: Some(id), ..
            }) = rx.next().await.map(|e| e.event)
            else {
                panic!("no offer to decide")
            };
            q.answer(id, Answer::Decision(Decision::AcceptAndTrust))
                .unwrap();
        };
        let (ruling, ()) = tokio::join!(
            g.decide(Standing::Untrusted, offer(), std::future::pending()),
            answering
        );
        assert_eq!(ruling, Ruling::AcceptAndTrust);
    }

    #[tokio::test]
    async fn a_withdrawn_question_is_closed_and_cannot_be_answered() {
        let (g, q, e) = gate(Policy::Ask);
        let mut rx = e.subscribe();
        let ruling = g.decide(Standing::Untrusted, offer(), async {}).await;
        assert_eq!(ruling, Ruling::Withdrawn);
        let Some(Event::Offer {
            offer_id: Some(id), ..
        }) = rx.next().await.map(|e| e.event)
        else {
            panic!("no offer")
        };
        assert_eq!(
            rx.next().await.map(|e| e.event),
            Some(Event::QuestionClosed {
                id,
                reason: Closed::Withdrawn
            })
        );
        assert!(q.answer(id, Answer::Decision(Decision::Accept)).is_err());
    }
}
