//! What the page shows, kept by the server: the node, its peers, the offers
//! and questions waiting, the transfers, the banners. Fed by the engine's
//! events ([`Model::apply`]); each change becomes a message for the event
//! stream (`docs/ui-api.md`), and a page that connects late gets the whole
//! picture first ([`Model::state`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use localstream_node::event::{Closed, Envelope, Notice, Side, TransferId};
use localstream_node::identity::short_fingerprint;
use localstream_node::store::{PeerStore, StoreData, Trust};
use localstream_node::{Event, PeerLabel};
use localstream_proto::names::escape_for_terminal;
use serde::Serialize;
use serde_json::{Value, json};

/// Transfers kept for the page (the oldest finished ones go first).
const MAX_TRANSFERS: usize = 100;
/// Finished files listed per transfer.
pub(crate) const MAX_DONE_FILES: usize = 200;
/// Banners kept.
const MAX_BANNERS: usize = 20;

/// The node itself, as the header shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct NodeView {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) short_id: String,
    pub(crate) fingerprint: String,
    pub(crate) dir: PathBuf,
    pub(crate) addresses: Vec<String>,
    pub(crate) discovery: String,
    pub(crate) ui_url: String,
    /// Whether this UI answers incoming offers (else the terminal does).
    pub(crate) asks: bool,
}

/// A peer: seen on the network, known from the store, or both.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct PeerView {
    pub(crate) id: String,
    pub(crate) short_id: String,
    pub(crate) name: String,
    pub(crate) alias: Option<String>,
    pub(crate) addresses: Vec<String>,
    pub(crate) fingerprint: Option<String>,
    pub(crate) trust: &'static str,
    pub(crate) online: bool,
    pub(crate) first_contact: bool,
    pub(crate) last_seen: Option<u64>,
}

/// What discovery announced about a peer (kept while it is online).
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    addresses: Vec<String>,
    fingerprint: String,
}

/// `{ id, short_id, name, fingerprint }`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct PeerRef {
    pub(crate) id: String,
    pub(crate) short_id: String,
    pub(crate) name: String,
    pub(crate) fingerprint: String,
}

impl PeerRef {
    pub(crate) fn of(p: &PeerLabel) -> Self {
        PeerRef {
            id: p.id.to_string(),
            short_id: p.id.short(),
            name: escape_for_terminal(&p.name),
            fingerprint: short_fingerprint(&p.fingerprint),
        }
    }
}

/// A transfer, as the transfers view shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct TransferView {
    pub(crate) id: TransferId,
    pub(crate) side: Side,
    pub(crate) peer: Option<PeerRef>,
    pub(crate) target: Option<String>,
    pub(crate) state: &'static str,
    pub(crate) files: usize,
    pub(crate) folders: usize,
    pub(crate) bytes: u64,
    pub(crate) total: u64,
    pub(crate) moved: u64,
    pub(crate) resumed: u64,
    pub(crate) current: Option<Value>,
    pub(crate) done_files: Vec<Value>,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) started: u64,
    /// When the data began to flow (the offer was accepted).
    pub(crate) accepted: Option<u64>,
    pub(crate) ended: Option<u64>,
    pub(crate) cancellable: bool,
    /// A long count of what is sent, while it runs: `{entries, bytes}` so far.
    pub(crate) counting: Option<Value>,
}

impl TransferView {
    fn new(id: TransferId, side: Side) -> Self {
        TransferView {
            id,
            side,
            peer: None,
            target: None,
            state: "connecting",
            files: 0,
            folders: 0,
            bytes: 0,
            total: 0,
            moved: 0,
            resumed: 0,
            current: None,
            done_files: Vec::new(),
            code: None,
            message: None,
            started: localstream_node::store::now_ms(),
            accepted: None,
            ended: None,
            cancellable: true,
            counting: None,
        }
    }

    fn finished(&self) -> bool {
        self.ended.is_some()
    }

    fn end(&mut self, state: &'static str, message: Option<String>) {
        if self.finished() {
            return;
        }
        self.state = state;
        if message.is_some() {
            self.message = message;
        }
        self.current = None;
        self.cancellable = false;
        self.ended = Some(localstream_node::store::now_ms());
    }
}

/// A loud message at the top of the page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Banner {
    pub(crate) id: u64,
    pub(crate) level: &'static str,
    pub(crate) title: String,
    pub(crate) text: String,
    pub(crate) peer: Option<PeerRef>,
    pub(crate) time: u64,
}

/// The server's picture of everything the page shows.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) node: NodeView,
    /// Announcements of the peers online now, by id.
    seen: BTreeMap<String, Seen>,
    /// The peer store, and what it held when last read.
    handle: Option<PeerStore>,
    store: StoreData,
    /// Each peer as last sent to the page, by id.
    peers: BTreeMap<String, PeerView>,
    offers: BTreeMap<u64, (TransferId, Value)>,
    confirms: BTreeMap<u64, (TransferId, Value)>,
    transfers: BTreeMap<TransferId, TransferView>,
    banners: Vec<Banner>,
    next_banner: u64,
    pub(crate) chosen: Vec<PathBuf>,
    /// No page is connected ([`App`](super::App) says so before each
    /// change): a transfer's state is kept but not made into a message,
    /// which a listener would otherwise do for every file it receives.
    pub(crate) unwatched: bool,
}

/// A message for the event stream.
pub(crate) type Message = Value;

impl Model {
    /// A model over this peer store, with what it holds now.
    pub(crate) fn new(node: NodeView, store: PeerStore) -> Self {
        let mut m = Model {
            node,
            handle: Some(store),
            ..Model::default()
        };
        m.reload_store(&mut Vec::new());
        m
    }

    /// The whole picture: the event stream's first message.
    pub(crate) fn state(&self) -> Message {
        json!({
            "kind": "state",
            "node": self.node,
            "peers": self.peers.values().collect::<Vec<_>>(),
            "offers": self.offers.values().map(|(_, o)| o).collect::<Vec<_>>(),
            "confirms": self.confirms.values().map(|(_, c)| c).collect::<Vec<_>>(),
            "transfers": self.transfers.values().rev().collect::<Vec<_>>(),
            "banners": self.banners,
            "chosen": self.chosen,
        })
    }

    /// The peers as the page has them.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &PeerView> {
        self.peers.values()
    }

    /// Whether offer `id` waits for this UI.
    pub(crate) fn has_offer(&self, id: u64) -> bool {
        self.offers.contains_key(&id)
    }

    /// Applies one engine event; returns the messages it makes.
    pub(crate) fn apply(&mut self, envelope: Envelope) -> Vec<Message> {
        let mut out = Vec::new();
        let id = envelope.transfer;
        match envelope.event {
            Event::Listening {
                name,
                id: node,
                fingerprint,
                dir,
                discovery,
                addresses,
                ..
            } => {
                self.node.name = name;
                self.node.id = node.to_string();
                self.node.short_id = node.short();
                self.node.fingerprint = short_hex(&fingerprint);
                self.node.dir = dir;
                self.node.discovery = discovery;
                self.node.addresses = addresses.iter().map(ToString::to_string).collect();
                out.push(self.state());
            }
            Event::PeerSeen { peer } | Event::PeerChanged { peer } => {
                self.seen.insert(
                    peer.id.clone(),
                    Seen {
                        name: peer.name.clone(),
                        addresses: peer
                            .addresses
                            .iter()
                            .map(|a| join_port(a, peer.port))
                            .collect(),
                        fingerprint: peer.fingerprint.clone(),
                    },
                );
                self.refresh_peer(&peer.id, &mut out);
            }
            Event::PeerGone { peer } => {
                self.seen.remove(&peer.id);
                self.refresh_peer(&peer.id, &mut out);
            }
            Event::Notice(n) => self.notice(id, &n, &mut out),
            event => {
                if let Some(id) = id {
                    self.transfer_event(id, event, &mut out);
                }
            }
        }
        out
    }

    /// A send this UI started: known before its first event.
    pub(crate) fn started_send(&mut self, id: TransferId, target: &str) -> Vec<Message> {
        // Its first events may have been applied already.
        let t = self
            .transfers
            .entry(id)
            .or_insert_with(|| TransferView::new(id, Side::Send));
        t.target = Some(target.to_owned());
        self.trim();
        self.transfer_message(id).into_iter().collect()
    }

    /// The user cancelled transfer `id` here (an incoming one ends with no
    /// event of its own).
    pub(crate) fn cancelled(&mut self, id: TransferId) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(t) = self.transfers.get_mut(&id) {
            t.end("cancelled", Some("cancelled".into()));
        }
        self.close_questions_of(id, "withdrawn", &mut out);
        out.extend(self.transfer_message(id));
        out
    }

    /// The end of a send this UI started, as its result says.
    pub(crate) fn send_ended(
        &mut self,
        id: TransferId,
        result: Result<(), (bool, String)>,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(t) = self.transfers.get_mut(&id) {
            match result {
                Ok(()) => {
                    // Its last progress may still be on its way (the event
                    // stream is read in bursts): a send that succeeded has
                    // moved everything.
                    t.moved = t.total.max(t.moved);
                    t.end("done", None);
                }
                Err((true, _)) => t.end("cancelled", Some("cancelled".into())),
                Err((false, message)) => {
                    let state = if t.state == "refused" {
                        "refused"
                    } else {
                        "failed"
                    };
                    t.end(state, Some(message));
                }
            }
        }
        self.close_questions_of(id, "withdrawn", &mut out);
        out.extend(self.transfer_message(id));
        self.reload_store(&mut out);
        out
    }

    /// The user answered offer `id` here.
    pub(crate) fn answered_offer(&mut self, id: u64) -> Vec<Message> {
        match self.offers.remove(&id) {
            Some(_) => vec![json!({"kind": "offer_closed", "offer_id": id, "reason": "answered"})],
            None => vec![],
        }
    }

    /// The user answered question `id` here.
    pub(crate) fn answered_confirm(&mut self, id: u64) -> Vec<Message> {
        match self.confirms.remove(&id) {
            Some((t, _)) => {
                let mut out =
                    vec![json!({"kind": "confirm_closed", "question": id, "reason": "answered"})];
                if let Some(tv) = self.transfers.get_mut(&t)
                    && tv.state == "confirming"
                {
                    tv.state = "connecting";
                }
                out.extend(self.transfer_message(t));
                out
            }
            None => vec![],
        }
    }

    /// A loud message.
    pub(crate) fn banner(
        &mut self,
        level: &'static str,
        title: String,
        text: String,
        peer: Option<PeerRef>,
    ) -> Message {
        self.next_banner += 1;
        let b = Banner {
            id: self.next_banner,
            level,
            title,
            text,
            peer,
            time: localstream_node::store::now_ms(),
        };
        self.banners.push(b.clone());
        if self.banners.len() > MAX_BANNERS {
            self.banners.remove(0);
        }
        json!({"kind": "banner", "banner": b})
    }

    /// The store changed (trust, forget, a transfer pinned someone): every
    /// peer whose view changed is sent again.
    pub(crate) fn reload_store(&mut self, out: &mut Vec<Message>) {
        // A store that cannot be read keeps the last picture (the error
        // shows where the store is used).
        if let Some(Ok(data)) = self.handle.as_ref().map(PeerStore::load) {
            self.store = data;
        }
        let ids: Vec<String> = self
            .store
            .peers()
            .iter()
            .map(|p| p.node_id.to_string())
            .chain(self.seen.keys().cloned())
            .chain(self.peers.keys().cloned())
            .collect();
        for id in ids {
            self.refresh_peer(&id, out);
        }
    }

    /// Recomputes one peer's view from what discovery saw and the store.
    fn refresh_peer(&mut self, id: &str, out: &mut Vec<Message>) {
        let view = self.peer_view(id);
        match view {
            Some(v) => {
                if self.peers.get(id) != Some(&v) {
                    self.peers.insert(id.to_owned(), v.clone());
                    out.push(json!({"kind": "peer", "peer": v}));
                }
            }
            None => {
                if self.peers.remove(id).is_some() {
                    out.push(json!({"kind": "peer_gone", "id": id}));
                }
            }
        }
    }

    fn peer_view(&self, id: &str) -> Option<PeerView> {
        let seen = self.seen.get(id);
        let entry = self
            .store
            .peers()
            .iter()
            .find(|p| p.node_id.to_string() == id);
        if seen.is_none() && entry.is_none() {
            return None;
        }
        let short_id = id.chars().take(8).collect();
        let pinned = entry.map(|e| short_fingerprint(&e.fingerprint));
        let trust = match (entry, seen) {
            (Some(_), Some(s)) if pinned.as_deref() != Some(s.fingerprint.as_str()) => "changed",
            (Some(e), _) => trust_name(e.trust),
            (None, _) => "new",
        };
        let mut addresses: Vec<String> = seen.map(|s| s.addresses.clone()).unwrap_or_default();
        if let Some(e) = entry {
            for a in &e.addresses {
                let a = a.to_string();
                if !addresses.contains(&a) {
                    addresses.push(a);
                }
            }
        }
        Some(PeerView {
            id: id.to_owned(),
            short_id,
            name: escape_for_terminal(
                seen.map(|s| s.name.as_str())
                    .or_else(|| entry.and_then(|e| e.name()))
                    .unwrap_or("?"),
            ),
            alias: entry
                .and_then(|e| e.alias.as_deref())
                .map(escape_for_terminal),
            addresses,
            fingerprint: pinned.or_else(|| seen.map(|s| s.fingerprint.clone())),
            trust,
            online: seen.is_some(),
            first_contact: entry.is_none(),
            last_seen: entry.map(|e| e.last_seen),
        })
    }

    /// Events of one transfer.
    fn transfer_event(&mut self, id: TransferId, event: Event, out: &mut Vec<Message>) {
        // A text message (LocalSend) is shown as a banner.
        if let Event::Message { peer, text, saved } = event {
            let mut body = escape_for_terminal(&text);
            if let Some(p) = saved {
                body.push_str(&format!("\n(saved as {})", p.display()));
            }
            out.push(self.banner(
                "info",
                format!("Message from {}", peer.name),
                body,
                Some(PeerRef::of(&peer)),
            ));
            return;
        }
        let side = side_of(&event).unwrap_or(Side::Receive);
        let t = self
            .transfers
            .entry(id)
            .or_insert_with(|| TransferView::new(id, side));
        if t.finished() {
            // Cancelled here: what the engine still reports changes nothing.
            return;
        }
        let mut store_changed = false;
        match event {
            Event::Connected { peer, .. } => t.peer = Some(PeerRef::of(&peer)),
            Event::Counting {
                entries,
                bytes,
                done,
            } => {
                t.counting = (!done).then(|| json!({"entries": entries, "bytes": bytes}));
            }
            Event::Confirm {
                question,
                peer,
                code,
                then,
            } => {
                t.peer = Some(PeerRef::of(&peer));
                t.state = "confirming";
                t.code = Some(code.to_string());
                let then = match then {
                    localstream_node::event::Then::Send { files, folders } => format!(
                        "then send {}",
                        localstream_node::units::files_and_folders(files as u64, folders as u64)
                    ),
                    localstream_node::event::Then::Pin(name) => {
                        format!("then remember it as '{}'", escape_for_terminal(&name))
                    }
                };
                let c = json!({
                    "question": question,
                    "transfer": id,
                    "peer": PeerRef::of(&peer),
                    "code": code.to_string(),
                    "then": then,
                });
                self.confirms.insert(question, (id, c.clone()));
                out.push(json!({"kind": "confirm", "confirm": c}));
            }
            Event::Offer {
                side,
                offer_id,
                peer,
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
            } => {
                t.side = side;
                t.files = files;
                t.folders = folders;
                t.bytes = bytes;
                t.total = bytes;
                if let Some(p) = &peer {
                    t.peer = Some(PeerRef::of(p));
                }
                if let Some(c) = &code {
                    t.code = Some(c.to_string());
                }
                t.state = if offer_id.is_some() && self.node.asks {
                    "asking"
                } else {
                    "offered"
                };
                if let (Some(offer), Some(p), true) = (offer_id, &peer, self.node.asks) {
                    let listed = entries.len();
                    let o = json!({
                        "offer_id": offer,
                        "transfer": id,
                        "peer": PeerRef::of(p),
                        "fingerprint": short_fingerprint(&p.fingerprint),
                        "code": code.map(|c| c.to_string()),
                        "abandoned_exchanges": abandoned_exchanges,
                        "localsend": localsend,
                        "text": text,
                        "files": files,
                        "folders": folders,
                        "bytes": bytes,
                        "executables": executables,
                        "executables_among": executables_among,
                        "entries": entries,
                        "more": (files + folders).saturating_sub(listed),
                        "received": localstream_node::store::now_ms(),
                    });
                    self.offers.insert(offer, (id, o.clone()));
                    out.push(json!({"kind": "offer", "offer": o}));
                }
            }
            Event::QuestionClosed { id: q, reason } => {
                let reason = match reason {
                    Closed::TimedOut => "timed_out",
                    Closed::Withdrawn => "withdrawn",
                };
                if self.offers.remove(&q).is_some() {
                    out.push(json!({"kind": "offer_closed", "offer_id": q, "reason": reason}));
                }
                if self.confirms.remove(&q).is_some() {
                    out.push(json!({"kind": "confirm_closed", "question": q, "reason": reason}));
                }
            }
            Event::Accepted { bytes, resumed, .. } => {
                t.state = "running";
                t.accepted = Some(localstream_node::store::now_ms());
                t.total = bytes + resumed;
                t.moved = resumed;
                t.resumed = resumed;
                store_changed = true;
            }
            Event::Refused { message, .. } => {
                t.end("refused", Some(message));
            }
            Event::Progress {
                bytes, total, file, ..
            } => {
                t.state = "running";
                t.moved = bytes + t.resumed;
                t.total = total + t.resumed;
                t.current = file.map(|f| {
                    json!({"name": escape_for_terminal(&f.name), "bytes": f.bytes, "size": f.size})
                });
            }
            Event::FileDone {
                name, size, path, ..
            } if t.done_files.len() < MAX_DONE_FILES => {
                t.done_files.push(json!({
                    "name": escape_for_terminal(&name),
                    "size": size,
                    "path": path,
                }));
            }
            // Past the list's end nothing changes: no message (the whole
            // transfer, serialized per file of a 100,000-file send, was most
            // of the receiver's CPU).
            Event::FileDone { .. } => return,
            Event::TransferDone(done) => {
                t.peer = Some(PeerRef::of(&done.peer));
                t.moved = t.total.max(t.moved);
                // (`failed` lists only the first ones: count them so.)
                let listed = done.failed.as_ref().map_or(0, Vec::len);
                let missing = done.offered.saturating_sub(done.files).max(listed);
                let message = if done.ok {
                    None
                } else if listed > 0 {
                    Some(format!("{missing} of {} not delivered", done.offered))
                } else {
                    Some("not every file arrived verified".to_owned())
                };
                t.end(if done.ok { "done" } else { "failed" }, message);
                store_changed = true;
            }
            Event::Error { message, peer, .. } => {
                if let Some(p) = peer {
                    t.peer = Some(PeerRef::of(&p));
                }
                t.end("failed", Some(message));
            }
            _ => {}
        }
        let over = matches!(t.state, "running" | "done" | "failed" | "refused");
        if over {
            self.close_questions_of(id, "withdrawn", out);
        }
        out.extend(self.transfer_message(id));
        if store_changed {
            self.reload_store(out);
        }
        self.trim();
    }

    /// Questions of transfer `id` left open (answered elsewhere, or the
    /// transfer moved on): off the screen.
    fn close_questions_of(&mut self, id: TransferId, reason: &str, out: &mut Vec<Message>) {
        let offers: Vec<u64> = self
            .offers
            .iter()
            .filter(|(_, (t, _))| *t == id)
            .map(|(k, _)| *k)
            .collect();
        for o in offers {
            self.offers.remove(&o);
            out.push(json!({"kind": "offer_closed", "offer_id": o, "reason": reason}));
        }
        let confirms: Vec<u64> = self
            .confirms
            .iter()
            .filter(|(_, (t, _))| *t == id)
            .map(|(k, _)| *k)
            .collect();
        for q in confirms {
            self.confirms.remove(&q);
            out.push(json!({"kind": "confirm_closed", "question": q, "reason": reason}));
        }
    }

    fn transfer_message(&self, id: TransferId) -> Option<Message> {
        if self.unwatched {
            return None;
        }
        self.transfers
            .get(&id)
            .map(|t| json!({"kind": "transfer", "transfer": t}))
    }

    /// Notices: lines for people, and the loud ones as banners.
    fn notice(&mut self, id: Option<TransferId>, n: &Notice, out: &mut Vec<Message>) {
        match n {
            Notice::Code { code, peer, .. } => {
                if let Some(id) = id
                    && let Some(t) = self.transfers.get_mut(&id)
                {
                    t.code = Some(code.to_string());
                    t.peer = Some(PeerRef::of(peer));
                    out.extend(self.transfer_message(id));
                }
            }
            Notice::PeerRefused(e) => {
                let text = without_box(&crate::hint::explain_trust(e));
                let title = match e {
                    localstream_node::error::TrustError::KeyChanged { .. } => {
                        "A peer's key changed: refused"
                    }
                    localstream_node::error::TrustError::Blocked { .. } => "A blocked peer",
                    _ => "A peer was refused",
                };
                out.push(self.banner("danger", title.to_owned(), text, None));
            }
            Notice::StoreFailed(m) => {
                out.push(self.banner(
                    "warning",
                    "The peer store could not be written".to_owned(),
                    m.clone(),
                    None,
                ));
            }
            Notice::TrustedNow(_) => self.reload_store(out),
            _ => {}
        }
        if let Some(text) = crate::render::notice_text(n) {
            out.push(json!({"kind": "notice", "transfer": id, "text": text}));
        }
    }

    /// Forgets the oldest finished transfers beyond [`MAX_TRANSFERS`].
    fn trim(&mut self) {
        while self.transfers.len() > MAX_TRANSFERS {
            let Some(oldest) = self
                .transfers
                .iter()
                .find(|(_, t)| t.finished())
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.transfers.remove(&oldest);
        }
    }
}

fn side_of(event: &Event) -> Option<Side> {
    match event {
        Event::Connected { .. } | Event::Confirm { .. } | Event::Counting { .. } => {
            Some(Side::Send)
        }
        Event::Offer { side, .. }
        | Event::Accepted { side, .. }
        | Event::Refused { side, .. }
        | Event::Progress { side, .. }
        | Event::FileDone { side, .. } => Some(*side),
        Event::TransferDone(d) => Some(d.side),
        Event::Error { side, .. } => *side,
        _ => None,
    }
}

/// A terminal message without its `@@@` warning box (the banner is loud
/// enough): the box's border lines go, its text line keeps its words.
fn without_box(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().chars().all(|c| c == '@'))
        .map(|l| l.trim().trim_matches('@').trim())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The trust states' names on the page.
pub(crate) fn trust_name(t: Trust) -> &'static str {
    match t {
        Trust::New => "new",
        Trust::Known => "known",
        Trust::Trusted => "trusted",
        Trust::Blocked => "blocked",
    }
}

/// `ip:port` (`[v6]:port`) from an announced address and port.
fn join_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's figures for a send that succeeded are whole, even when its
    /// last progress events have not been read yet (they come in bursts).
    #[test]
    fn a_send_that_succeeded_shows_everything_moved_whatever_its_events_said() {
        let home = tempfile::tempdir().unwrap();
        let mut m = Model::new(
            NodeView::default(),
            localstream_node::store::PeerStore::new(home.path()),
        );
        let id = 7;
        m.started_send(id, "127.0.0.1:1");
        let events = [
            Event::Accepted {
                side: Side::Send,
                files: 2,
                bytes: 3_145_765,
                resumed: 0,
            },
            Event::Progress {
                side: Side::Send,
                bytes: 20,
                total: 3_145_765,
                file: None,
            },
        ];
        for event in events {
            m.apply(Envelope {
                event,
                transfer: Some(id),
            });
        }
        let running = m.transfer_message(id).unwrap();
        assert_eq!(running["transfer"]["moved"], 20, "{running}");
        assert_eq!(running["transfer"]["counting"], Value::Null, "{running}");
        m.send_ended(id, Ok(()));
        let done = m.transfer_message(id).unwrap();
        assert_eq!(done["transfer"]["state"], "done", "{done}");
        assert_eq!(done["transfer"]["moved"], 3_145_765, "{done}");
        assert_eq!(done["transfer"]["total"], 3_145_765, "{done}");
    }

    #[test]
    fn a_long_count_shows_on_its_send_until_it_is_over() {
        let home = tempfile::tempdir().unwrap();
        let mut m = Model::new(
            NodeView::default(),
            localstream_node::store::PeerStore::new(home.path()),
        );
        let id = 3;
        m.started_send(id, "studio");
        let count = |m: &mut Model, entries, done| {
            m.apply(Envelope {
                event: Event::Counting {
                    entries,
                    bytes: entries * 10,
                    done,
                },
                transfer: Some(id),
            });
            m.transfer_message(id).unwrap()["transfer"]["counting"].clone()
        };
        assert_eq!(
            count(&mut m, 250_000, false),
            json!({"entries": 250_000, "bytes": 2_500_000})
        );
        assert_eq!(
            count(&mut m, 400_000, false),
            json!({"entries": 400_000, "bytes": 4_000_000})
        );
        assert_eq!(count(&mut m, 500_000, true), Value::Null);
        assert_eq!(m.transfer_message(id).unwrap()["transfer"]["side"], "send");
    }

    #[test]
    fn a_transfer_that_lost_more_files_than_it_lists_counts_them_all() {
        let home = tempfile::tempdir().unwrap();
        let mut m = Model::new(
            NodeView::default(),
            localstream_node::store::PeerStore::new(home.path()),
        );
        let id = 4;
        m.started_send(id, "studio");
        let failed = (0..1000)
            .map(|i| localstream_node::event::FailedFile {
                name: format!("f{i}"),
                status: localstream_proto::Status::WriteFailed,
                why: None,
            })
            .collect();
        m.apply(Envelope {
            event: Event::TransferDone(Box::new(localstream_node::event::TransferDone {
                side: Side::Send,
                peer: localstream_node::label::PeerLabel {
                    name: "studio".into(),
                    id: localstream_node::NodeId([0x3f; 16]),
                    fingerprint: [0xab; 32],
                },
                session: String::new(),
                ok: false,
                files: 300,
                offered: 1500,
                bytes: 0,
                resumed: 0,
                seconds: 1.0,
                failed: Some(failed),
                saved: vec![],
                wire: None,
                discarded: 0,
                unsaved: 0,
            })),
            transfer: Some(id),
        });
        let done = m.transfer_message(id).unwrap();
        assert_eq!(done["transfer"]["state"], "failed", "{done}");
        assert_eq!(
            done["transfer"]["message"], "1200 of 1500 not delivered",
            "{done}"
        );
    }

    #[test]
    fn the_terminal_box_is_left_out_of_banners() {
        let text = "\n@@@@@@@@\n@  WARNING: THE KEY OF PEER x HAS CHANGED  @\n@@@@@@@@\nnode id 1 is pinned.";
        assert_eq!(
            without_box(text),
            "WARNING: THE KEY OF PEER x HAS CHANGED\nnode id 1 is pinned."
        );
    }
}
