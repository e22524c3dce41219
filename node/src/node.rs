//! [`Node`]: one LocalStream node, as a front end drives it.
//!
//! ```text
//!  front end ──Node::start(NodeConfig)──► Node ──events()──► EventStream (typed Events)
//!      │                                   │
//!      ├─ listen(cfg, Shutdown) ───────────┤  offers ─► Event::Offer { offer_id } ─► decide()
//!      ├─ send(cfg) ───────────────────────┤  first contact ─► Event::Confirm ─► confirm()
//!      ├─ add(name, addr, policy)          │
//!      ├─ browse(peers cfg)                │
//!      └─ peer_store() / trust / settings  (library calls, no terminal)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use localstream_proto::LocalIdentity;
use tokio_util::sync::CancellationToken;

use crate::cancel::{Cancels, NotRunning};
use crate::config::{ListenConfig, PeersConfig, SendConfig};
use crate::confirm::FirstContact;
use crate::context::Context;
pub use crate::context::Shutdown;
use crate::discover::Browsed;
use crate::error::Result;
use crate::event::{Envelope, Event, EventStream, Events, OfferId, QuestionId, TransferId};
use crate::identity::DEFAULT_KEY_BITS;
use crate::label::NodeId;
use crate::listen::ListenEnd;
use crate::question::{Answer, Decision, NotWaiting, Questions};
use crate::send::Sent;
use crate::store::{PeerStore, StoreData};

/// Where a node lives and what it is called.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's home: identity, peer store, settings.
    pub home: PathBuf,
    /// The display name for this run, not saved (default: the one in
    /// node.json, the host name when the node was made).
    pub name: Option<String>,
}

/// One LocalStream node: its identity and peer store, the events it
/// reports and the questions it asks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    identity: Arc<LocalIdentity>,
    home: PathBuf,
    store: PeerStore,
    events: Events,
    questions: Arc<Questions>,
    cancels: Arc<Cancels>,
    #[cfg(feature = "localsend")]
    devices: Arc<crate::localsend::Devices>,
}

impl Node {
    /// Loads the node's identity from its home (creating it on first run).
    ///
    /// # Errors
    /// When the identity cannot be loaded or created.
    pub fn start(config: NodeConfig) -> Result<Node> {
        let id = crate::identity::load_or_create(
            &config.home,
            DEFAULT_KEY_BITS,
            config.name.as_deref(),
        )?;
        let signer = crate::identity::fast_signer(&id.key);
        let mut identity = LocalIdentity::new(&id.name, id.mac, id.key)?;
        if let Some(signer) = signer {
            identity = identity.with_signer(signer)?;
        }
        let identity = Arc::new(identity);
        Ok(Node::with_identity(identity, &config.home))
    }

    /// A node with an identity already loaded.
    #[must_use]
    pub fn with_identity(identity: Arc<LocalIdentity>, home: &Path) -> Node {
        Node {
            identity,
            home: home.to_owned(),
            store: PeerStore::new(home),
            events: Events::default(),
            questions: Arc::default(),
            cancels: Arc::default(),
            #[cfg(feature = "localsend")]
            devices: Arc::new(crate::localsend::Devices::in_home(home)),
        }
    }

    /// A stream of everything this node reports from now on.
    #[must_use]
    pub fn events(&self) -> EventStream {
        self.events.subscribe()
    }

    /// A stream of the events `wants` keeps, from now on (what a front end
    /// would drop anyway is then not copied for it).
    #[must_use]
    pub fn events_where(&self, wants: fn(&Event) -> bool) -> EventStream {
        self.events.subscribe_where(wants)
    }

    /// A stream of what `interest` keeps, from now on (for instance only the
    /// first `file_done` events of each transfer).
    #[must_use]
    pub fn events_to(&self, interest: crate::event::Interest) -> EventStream {
        self.events.subscribe_to(interest)
    }

    /// This node's identity.
    #[must_use]
    pub fn identity(&self) -> &Arc<LocalIdentity> {
        &self.identity
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        NodeId(self.identity.node_id())
    }

    /// The node's home directory.
    #[must_use]
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The peer store (for trust, forget, block and the session history,
    /// see [`crate::trust`]).
    #[must_use]
    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    /// What the peer store holds now.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn peer_store(&self) -> Result<StoreData> {
        Ok(self.store.load()?)
    }

    /// Receives until `shutdown` (or, with `once`, the first transfer).
    ///
    /// # Errors
    /// When the listener cannot start (the port, the folder, the store).
    pub async fn listen(&self, cfg: &ListenConfig, shutdown: Shutdown) -> Result<ListenEnd> {
        crate::listen::run(self.context(), cfg, shutdown).await
    }

    /// Sends `cfg.files` to `cfg.target` (again after transient failures,
    /// as `cfg.retry` allows).
    ///
    /// # Errors
    /// What went wrong, typed: not found, refused, not confirmed, incomplete...
    pub async fn send(&self, cfg: &SendConfig) -> Result<Sent> {
        self.send_until(cfg, &CancellationToken::new()).await
    }

    /// [`Node::send`] until `stop` is cancelled (Ctrl-C): a transfer under
    /// way then ends as interrupted, its history saying how far it got
    /// ([`crate::error::TransferError::Stopped`]), so the same send later
    /// resumes from there.
    ///
    /// # Errors
    /// As [`Node::send`]; [`crate::Error::Interrupted`] when stopped before the
    /// transfer began.
    pub async fn send_until(&self, cfg: &SendConfig, stop: &CancellationToken) -> Result<Sent> {
        let cx = self.context();
        crate::event::in_transfer(crate::send::run_retrying(&cx, cfg, stop)).await
    }

    /// Starts sending `cfg.files` to `cfg.target` in the background: the
    /// [`Transfer`] gives this send's events (and only its) and its result.
    #[must_use]
    pub fn start_send(&self, cfg: SendConfig) -> Transfer {
        let id = crate::event::next_transfer();
        let events = self.events();
        let cx = self.context();
        let stop = CancellationToken::new();
        let running = self.cancels.register(id, stop.clone());
        let done = tokio::spawn(crate::event::in_transfer_as(id, async move {
            let _running = running;
            crate::send::run_retrying(&cx, &cfg, &stop).await
        }));
        Transfer { id, events, done }
    }

    /// Pins the node at `addr` under `name` (`localstream add`).
    ///
    /// # Errors
    /// When it cannot be reached, is an impostor, or is not confirmed.
    pub async fn add(
        &self,
        name: &str,
        addr: SocketAddr,
        first_contact: FirstContact,
    ) -> Result<crate::add::Added> {
        let cx = self.context();
        crate::event::in_transfer(crate::add::run(&cx, name, addr, first_contact)).await
    }

    /// Looks for nodes on the network (`peers`).
    ///
    /// # Errors
    /// When discovery cannot start.
    pub async fn browse(
        &self,
        cfg: &PeersConfig,
        store: &StoreData,
        stop: &CancellationToken,
    ) -> Result<Browsed> {
        let own = self.id().uuid();
        #[cfg(feature = "localsend")]
        if let Some(port) = cfg.localsend {
            let cx = self.context();
            let (found, devices) = tokio::join!(
                crate::discover::browse(cfg, own, store, &self.events, stop),
                crate::localsend::peers(&cx, port, cfg, store, stop)
            );
            let mut found = found?;
            match devices {
                // A LocalStream node listed as such is not listed again as
                // a LocalSend device.
                Ok(d) => {
                    let both: Vec<_> =
                        d.into_iter()
                            .filter(|p| {
                                !p.device.as_deref().is_some_and(|d| {
                                    d.ends_with(crate::localsend::LOCALSTREAM_MODEL)
                                }) || !found.peers.iter().any(|l| {
                                    l.name == p.name
                                        && l.addresses.iter().any(|a| p.addresses.contains(a))
                                })
                            })
                            .collect();
                    found.peers.extend(both);
                }
                Err(e) => tracing::debug!(error = %e, "LocalSend discovery failed"),
            }
            return Ok(found);
        }
        crate::discover::browse(cfg, own, store, &self.events, stop).await
    }

    /// Answers an incoming offer ([`crate::Event::Offer`] with an `offer_id`).
    ///
    /// # Errors
    /// When that offer is not waiting (answered, timed out or withdrawn).
    pub fn decide(&self, offer: OfferId, decision: Decision) -> Result<(), NotWaiting> {
        self.questions.answer(offer, Answer::Decision(decision))
    }

    /// Answers a first-contact question ([`crate::Event::Confirm`]): `true`
    /// when the codes match and the transfer may go on.
    ///
    /// # Errors
    /// When that question is not waiting.
    pub fn confirm(&self, question: QuestionId, go_on: bool) -> Result<(), NotWaiting> {
        self.questions.answer(question, Answer::Confirm(go_on))
    }

    /// Stops a running transfer: a send started with [`Node::start_send`]
    /// (its connection is dropped), or an incoming one (the sender is told
    /// that the receiver stopped).
    ///
    /// # Errors
    /// When no transfer of that number is running.
    pub fn cancel(&self, transfer: TransferId) -> Result<(), NotRunning> {
        self.cancels.cancel(transfer)
    }

    pub(crate) fn context(&self) -> Context {
        Context {
            identity: self.identity.clone(),
            store: self.store.clone(),
            events: self.events.clone(),
            questions: self.questions.clone(),
            cancels: self.cancels.clone(),
            home: self.home.clone(),
            #[cfg(feature = "localsend")]
            devices: self.devices.clone(),
        }
    }
}

/// A send running in the background ([`Node::start_send`]).
#[derive(Debug)]
pub struct Transfer {
    id: TransferId,
    events: EventStream,
    done: tokio::task::JoinHandle<Result<Sent>>,
}

impl Transfer {
    /// Its number: the `transfer` of each of its events.
    #[must_use]
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// Its next event; `None` once it has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<Envelope> {
        loop {
            let next = tokio::select! {
                biased;
                e = self.events.next() => e,
                () = ended(&self.done) => self.events.try_next(),
            };
            match next {
                Some(e) if e.transfer == Some(self.id) => return Some(e),
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Waits for its end (events not read are dropped).
    ///
    /// # Errors
    /// What went wrong, as [`Node::send`] says it.
    pub async fn finish(self) -> Result<Sent> {
        self.done.await?
    }
}

/// Completes once `task` has finished (without taking its result).
async fn ended<T>(task: &tokio::task::JoinHandle<T>) {
    while !task.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
