//! Questions the node asks its front end, and their answers.
//!
//! ```text
//!  receive: Event::Offer { offer_id } ──► front end ──► Node::decide(offer_id, Decision)
//!  send:    Event::Confirm { question } ─► front end ──► Node::confirm(question, yes)
//! ```
//!
//! Each question has a number; the engine waits for its answer with a
//! deadline (and closes it when the peer goes away). An answer to a question
//! that is closed, or was never asked, is an error the front end can show.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

/// The front end's answer to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Accept this offer.
    Accept,
    /// Accept it, and trust the sender from now on.
    AcceptAndTrust,
    /// Refuse it.
    Reject,
}

/// An answer to one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// To an offer.
    Decision(Decision),
    /// To a first contact: go on or not.
    Confirm(bool),
}

/// No question is waiting under that number (answered, closed, or never asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no question {0} is waiting for an answer (it was answered, timed out or withdrawn)")]
pub struct NotWaiting(pub u64);

/// The questions waiting for an answer.
#[derive(Debug, Default)]
pub(crate) struct Questions {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

/// A question waiting for its answer; dropping it closes the question.
#[derive(Debug)]
pub(crate) struct Asked<'a> {
    /// Its number.
    pub(crate) id: u64,
    answer: oneshot::Receiver<Answer>,
    questions: &'a Questions,
}

impl Questions {
    /// Opens a question (number it in the event that asks it).
    pub(crate) fn open(&self) -> Asked<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        Asked {
            id,
            answer: rx,
            questions: self,
        }
    }

    /// Answers question `id`.
    pub(crate) fn answer(&self, id: u64, answer: Answer) -> Result<(), NotWaiting> {
        let tx = self.lock().remove(&id).ok_or(NotWaiting(id))?;
        tx.send(answer).map_err(|_| NotWaiting(id))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Answer>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Asked<'_> {
    /// Waits for the answer; `None` if the question was dropped unanswered.
    pub(crate) async fn answer(&mut self) -> Option<Answer> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        self.questions.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_reaches_its_question_once() {
        let q = Questions::default();
        let mut a = q.open();
        let b = q.open();
        assert_ne!(a.id, b.id);
        q.answer(a.id, Answer::Confirm(true)).unwrap();
        assert_eq!(a.answer().await, Some(Answer::Confirm(true)));
        assert_eq!(q.answer(a.id, Answer::Confirm(true)), Err(NotWaiting(a.id)));
        let id = b.id;
        drop(b);
        assert_eq!(q.answer(id, Answer::Confirm(false)), Err(NotWaiting(id)));
        assert_eq!(q.answer(99, Answer::Confirm(false)), Err(NotWaiting(99)));
    }
}
