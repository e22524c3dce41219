//! Transfers a front end may stop, by number ([`crate::Node::cancel`]).
//!
//! Each running send started with [`crate::Node::start_send`] and each
//! incoming connection registers its cancellation token here for as long as
//! it runs; cancelling an incoming one ends it as a shutdown does (the sender
//! is told why), cancelling a send drops its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::event::TransferId;

/// The transfer is not running (it ended, or never was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transfer {0} is not running")]
pub struct NotRunning(pub TransferId);

/// The running transfers' tokens.
#[derive(Debug, Default)]
pub(crate) struct Cancels(Mutex<HashMap<TransferId, CancellationToken>>);

impl Cancels {
    /// Registers `token` for `id` until the guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, id: TransferId, token: CancellationToken) -> Running {
        self.lock().insert(id, token);
        Running {
            cancels: self.clone(),
            id,
        }
    }

    /// Cancels `id`.
    pub(crate) fn cancel(&self, id: TransferId) -> Result<(), NotRunning> {
        match self.lock().get(&id) {
            Some(token) => {
                token.cancel();
                Ok(())
            }
            None => Err(NotRunning(id)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TransferId, CancellationToken>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A registered transfer; dropping it takes it off the list.
#[derive(Debug)]
pub(crate) struct Running {
    cancels: Arc<Cancels>,
    id: TransferId,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancels.lock().remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_transfer_can_be_cancelled_until_it_ends() {
        let cancels = Arc::new(Cancels::default());
        let token = CancellationToken::new();
        let running = cancels.register(7, token.clone());
        assert_eq!(cancels.cancel(8), Err(NotRunning(8)));
        assert!(!token.is_cancelled());
        assert_eq!(cancels.cancel(7), Ok(()));
        assert!(token.is_cancelled());
        drop(running);
        assert_eq!(cancels.cancel(7), Err(NotRunning(7)));
    }
}
