//! What the engine's commands share: who we are, what we know, whom we tell
//! and ask. A [`crate::Node`] hands one to each command it runs.

use std::sync::Arc;

use localstream_proto::LocalIdentity;
use tokio_util::sync::CancellationToken;

use crate::cancel::Cancels;
use crate::event::Events;
use crate::question::Questions;
use crate::store::PeerStore;

/// What the engine's commands share: who we are, what we know, whom we tell.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) identity: Arc<LocalIdentity>,
    pub(crate) store: PeerStore,
    pub(crate) events: Events,
    pub(crate) questions: Arc<Questions>,
    pub(crate) cancels: Arc<Cancels>,
    /// The node's home (its LocalSend certificate lives there).
    pub(crate) home: std::path::PathBuf,
    /// The LocalSend devices this process has seen.
    #[cfg(feature = "localsend")]
    pub(crate) devices: Arc<crate::localsend::Devices>,
}

/// How a listener stops: `graceful` stops accepting and gives running
/// transfers a moment; `now` ends them at once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop accepting; let running transfers finish for a moment.
    pub graceful: CancellationToken,
    /// Stop at once.
    pub now: CancellationToken,
}
