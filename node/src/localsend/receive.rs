//! Receiving from a LocalSend device: one session at a time (as LocalSend
//! does), through the listener's consent, peer store, history and file
//! rules.
//!
//! A session is asked about in `prepare-upload`, then each file arrives in
//! its own `upload` into a partial file (`<name>.lspart`), is checked for
//! its announced size and, when given, its SHA-256, synced, and only then
//! given a free final name (never overwriting). A cut upload, a cancel or a
//! sender gone silent leaves no file under a final name.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use localstream_proto::{PeerIdentity, Status};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::server::{Conn, Served, answer};
use super::wire::{self, DeviceInfo, FileInfo};
use crate::consent::{Ruling, Standing};
use crate::event::{
    EntryInfo, Event, Events, Notice, OFFER_EVENT_ENTRIES, Progress, Side, TransferDone,
};
use crate::label::PeerLabel;
use crate::store::{Direction, Outcome, Trust};
use crate::trust::{self, Reached, Refusal};

/// How long an upload may go without a byte, and a session without an upload.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
/// How long a session whose last upload failed waits for its sender's `cancel`.
const CANCEL_GRACE: Duration = Duration::from_secs(1);
/// How long one read of an upload's body may wait.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who offers, as the server saw it.
#[derive(Debug)]
pub(crate) struct Offered {
    /// Its address.
    pub from: IpAddr,
    /// Its address and port.
    pub remote: SocketAddr,
    /// Its client certificate's fingerprint.
    pub cert: [u8; 32],
    /// What it says it is.
    pub info: DeviceInfo,
    /// The PIN it gave.
    pub pin: Option<String>,
}

/// The one session: free, being asked about, or running.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<SlotState>);

#[derive(Debug, Default)]
enum SlotState {
    #[default]
    Free,
    Asking,
    Running(Arc<Session>),
}

/// The slot claimed while an offer is checked and asked about; dropped
/// unused, it frees the slot.
struct Claim<'a> {
    slot: &'a Slot,
    used: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.used {
            *lock(&self.slot.0) = SlotState::Free;
        }
    }
}

impl Slot {
    fn claim(&self) -> Option<Claim<'_>> {
        let mut s = lock(&self.0);
        if !matches!(*s, SlotState::Free) {
            return None;
        }
        *s = SlotState::Asking;
        Some(Claim {
            slot: self,
            used: false,
        })
    }

    fn run(&self, mut claim: Claim<'_>, session: Arc<Session>) {
        claim.used = true;
        *lock(&self.0) = SlotState::Running(session);
    }

    fn running(&self) -> Option<Arc<Session>> {
        match &*lock(&self.0) {
            SlotState::Running(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn free(&self, session: &Arc<Session>) {
        let mut s = lock(&self.0);
        if matches!(&*s, SlotState::Running(r) if Arc::ptr_eq(r, session)) {
            *s = SlotState::Free;
        }
    }

    /// The sender at `from` cancels session `id`: true if it was running.
    pub(crate) fn cancel_from(&self, id: &str, from: IpAddr) -> bool {
        match self.running() {
            Some(s) if s.id == id && s.from == from => {
                s.stop(Status::Cancelled, "cancelled by the sender");
                true
            }
            _ => false,
        }
    }

    /// Ends the running session (the listener stops).
    pub(crate) fn stop(&self) {
        if let Some(s) = self.running() {
            s.stop(Status::Busy, "the receiver is shutting down");
        }
    }
}

#[derive(Debug)]
enum FileState {
    Waiting,
    Uploading,
    Saved(PathBuf),
    Failed,
}

#[derive(Debug)]
struct Incoming {
    info: FileInfo,
    token: String,
    state: FileState,
}

/// A running session.
#[derive(Debug)]
pub(crate) struct Session {
    id: String,
    from: IpAddr,
    label: PeerLabel,
    files: Mutex<Vec<Incoming>>,
    by_id: HashMap<String, usize>,
    events: Events,
    progress: Progress,
    history: Mutex<Option<trust::Session>>,
    started: Instant,
    last: Mutex<Instant>,
    cancel: CancellationToken,
    why: Mutex<Option<(Status, String)>>,
    ended: AtomicBool,
    dir: PathBuf,
}

impl Session {
    fn touch(&self) {
        *lock(&self.last) = Instant::now();
    }

    /// Ends the session early (once): in-flight uploads stop, their
    /// partial files go.
    fn stop(&self, status: Status, why: &str) {
        lock(&self.why).get_or_insert((status, why.to_owned()));
        self.cancel.cancel();
    }

    fn all_done(&self) -> bool {
        lock(&self.files)
            .iter()
            .all(|f| matches!(f.state, FileState::Saved(_) | FileState::Failed))
    }
}

/// Answers a `prepare-upload`; see the module docs for the steps.
pub(crate) async fn prepare(
    s: &Arc<Served>,
    offered: Offered,
    req: &wire::PrepareUpload,
) -> Response {
    let shared = &s.shared;
    let peer = PeerIdentity {
        node_id: wire::node_id(&offered.cert),
        name: offered.info.shown_alias(),
        mac: None,
        public_key_der: Vec::new(),
        fingerprint: offered.cert,
    };
    let contacted = match trust::admit(&shared.store, &peer, Reached::From(offered.from)).await {
        Ok(c) => c,
        Err(Refusal::Blocked) => return answer(StatusCode::FORBIDDEN, "blocked by the receiver"),
        Err(Refusal::KeyChanged(e) | Refusal::Impostor(e)) => {
            if let crate::Error::Trust(t) = &e {
                shared.events.notice(Notice::PeerRefused(t.clone()));
            }
            return answer(
                StatusCode::FORBIDDEN,
                "refused: this certificate is not the one pinned for that device",
            );
        }
        Err(Refusal::Store(e)) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the receiver's peer store: {e}"),
            );
        }
    };
    let trusted = contacted.trust == Trust::Trusted;
    if let Some(pin) = &s.pin {
        let now = Instant::now();
        if !s.pins.allowed(offered.from, trusted, now) {
            return answer(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong PINs; wait a minute",
            );
        }
        match offered.pin.as_deref() {
            None => return answer(StatusCode::UNAUTHORIZED, "PIN required"),
            Some(given) if !same(given.as_bytes(), pin.as_bytes()) => {
                s.pins.failed(offered.from, now);
                return answer(StatusCode::UNAUTHORIZED, "invalid PIN");
            }
            Some(_) => {}
        }
    }
    let Some(claim) = s.slot.claim() else {
        return answer(StatusCode::CONFLICT, "blocked by another session");
    };
    let files = match wire::check_files(req) {
        Ok(f) => f,
        Err(e) => {
            debug!(peer = %PeerLabel::of(&peer).short(), error = %e, "LocalSend offer refused");
            return answer(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    let text = wire::text_message(&files).map(wire::clean_text);
    if text.is_none()
        && crate::fsutil::available_space(&shared.dir).is_some_and(|free| free < total)
    {
        return answer(
            StatusCode::INSUFFICIENT_STORAGE,
            "not enough disk space on the receiver",
        );
    }
    let transfer = crate::event::next_transfer();
    let events = shared.events.for_transfer(transfer);
    let standing = match contacted.trust {
        Trust::Trusted => Standing::Trusted,
        Trust::Blocked => Standing::Blocked,
        Trust::New | Trust::Known => Standing::Untrusted,
    };
    let offer = Event::Offer {
        side: Side::Receive,
        offer_id: None,
        peer: Some(PeerLabel::of(&peer)),
        files: files.len(),
        folders: 0,
        bytes: total,
        entries: files
            .iter()
            .take(OFFER_EVENT_ENTRIES)
            .map(|f| EntryInfo {
                path: f.file_name.clone(),
                size: f.size,
                folder: false,
                executable: false,
                text: false,
                modified: None,
            })
            .collect(),
        executables: 0,
        executables_among: 0,
        code: None,
        abandoned_exchanges: None,
        localsend: Some(
            format!("LocalSend {}", offered.info.kind())
                .trim_end()
                .to_owned(),
        ),
        text: text.clone(),
    };
    let ruling = ask(s, standing, offer, transfer).await;
    let session_id = rand::random::<[u8; 16]>();
    if let Some((status, message)) = crate::receive::refusal(ruling, &peer) {
        refused(s, &events, &peer, &session_id, status, &message).await;
        let code = match status {
            Status::Busy => StatusCode::CONFLICT,
            _ => StatusCode::FORBIDDEN,
        };
        return answer(code, message);
    }
    if ruling == Ruling::Withdrawn {
        return answer(StatusCode::FORBIDDEN, "withdrawn");
    }
    let pin = crate::receive::Pin {
        peer: &peer,
        shared,
        remote: offered.remote,
        session_id,
        contacted,
    };
    let history = match crate::receive::consent_given(&pin, ruling).await {
        Ok(h) => h,
        Err((_, message)) => return answer(StatusCode::FORBIDDEN, message),
    };
    let label = PeerLabel::of(&peer);
    if let Some(text) = text {
        return message(s, &events, label, &files[0], text, history).await;
    }
    start(
        s,
        claim,
        Start {
            id: crate::trust::session_hex(&session_id),
            from: offered.from,
            label,
            files,
            events,
            history,
            total,
            transfer,
        },
    )
}

/// Constant-time comparison (a PIN).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Asks the gate, in a task of its own: if the sender hangs up meanwhile
/// (this request is dropped), the question is withdrawn.
async fn ask(s: &Arc<Served>, standing: Standing, offer: Event, transfer: u64) -> Ruling {
    let gone = CancellationToken::new();
    let _withdraw = gone.clone().drop_guard();
    let shared = s.shared.clone();
    let asking = tokio::spawn(crate::event::in_transfer_as(transfer, async move {
        shared.gate.decide(standing, offer, gone.cancelled()).await
    }));
    asking.await.unwrap_or(Ruling::Withdrawn)
}

async fn refused(
    s: &Arc<Served>,
    events: &Events,
    peer: &PeerIdentity,
    session_id: &[u8; 16],
    status: Status,
    message: &str,
) {
    events.emit(Event::Refused {
        side: Side::Receive,
        peer: Some(crate::label::PeerLabel::of(peer)),
        status,
        message: message.to_owned(),
    });
    trust::record_if_pinned(
        &s.shared.store,
        events,
        peer,
        session_id,
        Direction::Receive,
        Outcome::Refused,
        &status.to_string(),
    )
    .await;
}

/// A text message: shown (the `message` event), saved in the folder as a
/// text file, and answered with 204 (no upload follows), as LocalSend does.
async fn message(
    s: &Arc<Served>,
    events: &Events,
    label: PeerLabel,
    file: &FileInfo,
    text: String,
    history: Option<trust::Session>,
) -> Response {
    let dir = s.shared.dir.clone();
    let name = save_name(&file.file_name);
    let body = text.clone();
    let saved = tokio::task::spawn_blocking(move || save_text(&dir, &name, body.as_bytes()))
        .await
        .ok()
        .and_then(Result::ok);
    events.emit(Event::Message {
        peer: label,
        text: text.clone(),
        saved: saved.clone(),
    });
    if let Some(h) = history {
        let n = u64::from(saved.is_some());
        let figures = trust::Figures {
            files: n,
            bytes: text.len() as u64,
            resumed: 0,
        };
        h.end(events, Outcome::Ok, figures, "text message").await;
    }
    let _ = s.ended.send(true);
    StatusCode::NO_CONTENT.into_response()
}

/// The text's file name: the one offered when it is a plain name ending in
/// `.txt`, else `message.txt`.
fn save_name(offered: &str) -> String {
    match localstream_proto::names::validate_wire_path(offered) {
        Ok(parts) if parts.len() == 1 && offered.ends_with(".txt") => offered.to_owned(),
        _ => "message.txt".to_owned(),
    }
}

fn save_text(dir: &std::path::Path, name: &str, text: &[u8]) -> std::io::Result<PathBuf> {
    let (partial, mut file) = crate::fsutil::create_partial(dir, name)?;
    let written = file.write_all(text).and_then(|()| file.sync_all());
    drop(file);
    let placed = written.and_then(|()| crate::fsutil::commit_partial(&partial, dir, name));
    if placed.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    placed
}

struct Start {
    id: String,
    from: IpAddr,
    label: PeerLabel,
    files: Vec<FileInfo>,
    events: Events,
    history: Option<trust::Session>,
    total: u64,
    transfer: u64,
}

/// Consent given: the session runs, each file gets a token.
fn start(s: &Arc<Served>, claim: Claim<'_>, st: Start) -> Response {
    let mut tokens = serde_json::Map::new();
    let mut incoming = Vec::with_capacity(st.files.len());
    let mut by_id = HashMap::new();
    for (i, f) in st.files.into_iter().enumerate() {
        let token = crate::trust::session_hex(&rand::random::<[u8; 16]>());
        tokens.insert(f.id.clone(), serde_json::Value::String(token.clone()));
        by_id.insert(f.id.clone(), i);
        incoming.push(Incoming {
            info: f,
            token,
            state: FileState::Waiting,
        });
    }
    let count = incoming.len();
    let progress = Progress::new(&st.events, Side::Receive, st.total);
    let session = Arc::new(Session {
        id: st.id.clone(),
        from: st.from,
        label: st.label,
        files: Mutex::new(incoming),
        by_id,
        progress,
        history: Mutex::new(st.history),
        started: Instant::now(),
        last: Mutex::new(Instant::now()),
        cancel: CancellationToken::new(),
        why: Mutex::new(None),
        ended: AtomicBool::new(false),
        dir: s.shared.dir.clone(),
        events: st.events,
    });
    session.events.emit(Event::Accepted {
        side: Side::Receive,
        files: count,
        bytes: st.total,
        resumed: 0,
    });
    s.slot.run(claim, session.clone());
    tokio::spawn(watch(s.clone(), session, st.transfer));
    axum::Json(wire::PrepareAnswer {
        session_id: st.id,
        files: tokens,
    })
    .into_response()
}

/// Ends the session when it is cancelled (by its sender, by a front end
/// through [`crate::Node::cancel`], by the listener stopping) or goes
/// silent for [`IDLE`] with no upload running.
async fn watch(s: Arc<Served>, session: Arc<Session>, transfer: u64) {
    let _running = s.shared.cancels.register(transfer, session.cancel.clone());
    loop {
        tokio::select! {
            () = session.cancel.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if session.ended.load(Ordering::SeqCst) {
            return;
        }
        let idle = lock(&session.last).elapsed() >= IDLE;
        let uploading = lock(&session.files)
            .iter()
            .any(|f| matches!(f.state, FileState::Uploading));
        if idle && !uploading {
            session.stop(Status::Timeout, "the sender went silent");
        }
    }
    // Uploads see the token too; give them a moment to remove their partials.
    for _ in 0..50 {
        let uploading = lock(&session.files)
            .iter()
            .any(|f| matches!(f.state, FileState::Uploading));
        if !uploading {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let why = lock(&session.why)
        .clone()
        .unwrap_or((Status::Cancelled, "cancelled on this node".into()));
    for f in lock(&session.files).iter_mut() {
        if matches!(f.state, FileState::Waiting | FileState::Uploading) {
            f.state = FileState::Failed;
        }
    }
    finish(&s, &session, Some(why)).await;
}

/// The session's end: the verdict event, the history, the slot freed.
async fn finish(s: &Arc<Served>, session: &Arc<Session>, early: Option<(Status, String)>) {
    if session.ended.swap(true, Ordering::SeqCst) {
        return;
    }
    session.cancel.cancel();
    session.progress.finish();
    let (saved, failed): (Vec<PathBuf>, usize) = {
        let files = lock(&session.files);
        let saved = files
            .iter()
            .filter_map(|f| match &f.state {
                FileState::Saved(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let failed = files
            .iter()
            .filter(|f| !matches!(f.state, FileState::Saved(_)))
            .count();
        (saved, failed)
    };
    let offered = saved.len() + failed;
    let bytes: u64 = {
        let files = lock(&session.files);
        files
            .iter()
            .filter(|f| matches!(f.state, FileState::Saved(_)))
            .map(|f| f.info.size)
            .sum()
    };
    let ok = failed == 0 && early.is_none();
    let early = early.or_else(|| {
        (failed > 0).then(|| {
            (
                Status::WriteFailed,
                format!("{failed} of {offered} files did not arrive"),
            )
        })
    });
    if let Some((_, why)) = &early {
        session.events.emit(Event::Error {
            side: Some(Side::Receive),
            peer: Some(session.label.clone()),
            session: Some(session.id.clone()),
            message: why.clone(),
            stopped: None,
        });
    }
    session
        .events
        .emit(Event::TransferDone(Box::new(TransferDone {
            side: Side::Receive,
            peer: session.label.clone(),
            session: session.id.clone(),
            ok,
            files: saved.len(),
            offered,
            bytes,
            resumed: 0,
            seconds: session.started.elapsed().as_secs_f64(),
            failed: None,
            saved: saved.clone(),
            wire: None,
            discarded: 0,
            unsaved: 0,
        })));
    let history = lock(&session.history).take();
    if let Some(h) = history {
        let (outcome, detail) = match &early {
            Some((Status::Cancelled, why)) => (Outcome::Refused, why.clone()),
            Some((Status::WriteFailed, why)) => (Outcome::Incomplete, why.clone()),
            Some((_, why)) => (Outcome::Failed, why.clone()),
            None => (Outcome::Ok, String::new()),
        };
        let figures = trust::Figures {
            files: saved.len() as u64,
            bytes,
            resumed: 0,
        };
        h.end(&session.events, outcome, figures, &detail).await;
    }
    info!(peer = %session.label.short(), ok, files = saved.len(), "LocalSend session ended");
    s.slot.free(session);
    let _ = s.ended.send(ok);
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UploadQuery {
    session_id: Option<String>,
    file_id: Option<String>,
    token: Option<String>,
}

/// `upload`: one file's bytes.
pub(crate) async fn upload(
    State(s): State<Arc<Served>>,
    Extension(conn): Extension<Conn>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Response {
    let (Some(sid), Some(fid), Some(token)) = (q.session_id, q.file_id, q.token) else {
        return answer(StatusCode::BAD_REQUEST, "missing parameters");
    };
    let Some(session) = s.slot.running() else {
        return answer(StatusCode::CONFLICT, "no session is running");
    };
    if session.id != sid || session.from != conn.addr.ip().to_canonical() {
        return answer(StatusCode::FORBIDDEN, "invalid session or address");
    }
    let Some(&index) = session.by_id.get(&fid) else {
        return answer(StatusCode::FORBIDDEN, "invalid file id");
    };
    let info = {
        let mut files = lock(&session.files);
        let f = &mut files[index];
        if !same(f.token.as_bytes(), token.as_bytes()) {
            return answer(StatusCode::FORBIDDEN, "invalid token");
        }
        if !matches!(f.state, FileState::Waiting) {
            return answer(StatusCode::CONFLICT, "this file was already sent");
        }
        f.state = FileState::Uploading;
        f.info.clone()
    };
    session.touch();
    let result = receive_file(&session, &info, body).await;
    session.touch();
    let (state, response) = match result {
        Ok(path) => {
            session
                .progress
                .file_done(|| info.file_name.as_str(), info.size, Some(&path));
            (FileState::Saved(path), StatusCode::OK.into_response())
        }
        Err((code, why)) => {
            debug!(file = %localstream_proto::names::escape_for_terminal(&info.file_name), %why, "LocalSend upload failed");
            session.events.notice(Notice::StoreFailed(format!(
                "{} from {} did not arrive: {why}",
                localstream_proto::names::escape_for_terminal(&info.file_name),
                session.label.short()
            )));
            (FileState::Failed, answer(code, why))
        }
    };
    let failed = matches!(state, FileState::Failed);
    lock(&session.files)[index].state = state;
    if session.all_done() && !session.cancel.is_cancelled() {
        if failed {
            // A sender that breaks an upload off to cancel sends `cancel`
            // right after: give it a moment, so the session ends as cancelled.
            let (s, session) = (s.clone(), session.clone());
            tokio::spawn(async move {
                tokio::time::sleep(CANCEL_GRACE).await;
                if !session.cancel.is_cancelled() {
                    finish(&s, &session, None).await;
                }
            });
        } else {
            finish(&s, &session, None).await;
        }
    }
    response
}

enum Chunk {
    Data(axum::body::Bytes),
    End,
}

type Failed = (StatusCode, String);

/// Streams one upload's body to a writer thread.
async fn receive_file(
    session: &Arc<Session>,
    info: &FileInfo,
    body: Body,
) -> Result<PathBuf, Failed> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    let dir = session.dir.clone();
    let (name, size) = (info.file_name.clone(), info.size);
    let want = info.sha256.as_deref().and_then(wire::parse_fingerprint);
    let writer = tokio::task::spawn_blocking(move || write_file(&dir, &name, size, want, rx));
    session.progress.start_file(&info.file_name, info.size);
    let mut stream = body.into_data_stream();
    let mut got: u64 = 0;
    let fed: Result<(), Failed> = loop {
        let next = tokio::select! {
            () = session.cancel.cancelled() => break Err((StatusCode::CONFLICT, "the session was cancelled".into())),
            n = tokio::time::timeout(READ_TIMEOUT, stream.next()) => n,
        };
        let chunk = match next {
            Err(_) => break Err((StatusCode::REQUEST_TIMEOUT, "the upload stalled".into())),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err((
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off: {e}"),
                ));
            }
            Ok(Some(Ok(c))) => c,
        };
        got += chunk.len() as u64;
        if got > size {
            break Err((
                StatusCode::BAD_REQUEST,
                format!("more than the {size} bytes announced"),
            ));
        }
        session.progress.advance(chunk.len() as u64);
        session.touch();
        if tx.send(Chunk::Data(chunk)).await.is_err() {
            break Ok(());
        }
    };
    match fed {
        Ok(()) => {
            let _ = tx.send(Chunk::End).await;
        }
        Err(e) => {
            drop(tx);
            let _ = writer.await;
            return Err(e);
        }
    }
    drop(tx);
    match writer.await {
        Ok(r) => r,
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writer failed: {e}"),
        )),
    }
}

/// Removes a partial file unless it was given its name.
struct PartialGuard(Option<PathBuf>);

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The writer thread: parents, partial, bytes, size and hash, sync, name.
fn write_file(
    dir: &std::path::Path,
    wire_name: &str,
    size: u64,
    want: Option<[u8; 32]>,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
) -> Result<PathBuf, Failed> {
    let fail = |code: StatusCode| move |e: std::io::Error| (code, e.to_string());
    let parts = localstream_proto::names::validate_wire_path(wire_name)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let Some((file_name, dirs)) = parts.split_last() else {
        return Err((StatusCode::BAD_REQUEST, "empty file name".into()));
    };
    let parent = crate::fsutil::prepare_parent(dir, dirs)
        .map_err(fail(StatusCode::INTERNAL_SERVER_ERROR))?;
    let (partial, file) = crate::fsutil::create_partial(&parent, file_name)
        .map_err(fail(StatusCode::INTERNAL_SERVER_ERROR))?;
    let mut guard = PartialGuard(Some(partial.clone()));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = want.map(|_| Sha256::new());
    let mut got = 0u64;
    let mut ended = false;
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Data(b) => {
                got += b.len() as u64;
                if let Some(h) = &mut hasher {
                    h.update(&b);
                }
                out.write_all(&b)
                    .map_err(fail(StatusCode::INTERNAL_SERVER_ERROR))?;
            }
            Chunk::End => {
                ended = true;
                break;
            }
        }
    }
    if !ended {
        return Err((StatusCode::BAD_REQUEST, "the upload was cut".into()));
    }
    if got != size {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("{got} bytes arrived, {size} were announced"),
        ));
    }
    if let (Some(h), Some(want)) = (hasher, want)
        && <[u8; 32]>::from(h.finalize()) != want
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "the SHA-256 does not match the one announced".into(),
        ));
    }
    let file = out
        .into_inner()
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.error().to_string()))?;
    file.sync_all()
        .map_err(fail(StatusCode::INTERNAL_SERVER_ERROR))?;
    drop(file);
    let placed = crate::fsutil::commit_partial(&partial, &parent, file_name)
        .map_err(fail(StatusCode::INTERNAL_SERVER_ERROR))?;
    guard.0 = None;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_text_is_saved_under_its_own_name_only_when_harmless() {
        assert_eq!(super::save_name("note.txt"), "note.txt");
        assert_eq!(super::save_name("../x.txt"), "message.txt");
        assert_eq!(super::save_name("a/b.txt"), "message.txt");
        assert_eq!(super::save_name("run.sh"), "message.txt");
    }

    #[test]
    fn pins_compare_whole() {
        assert!(super::same(b"1234", b"1234"));
        assert!(!super::same(b"1234", b"1235"));
        assert!(!super::same(b"123", b"1234"));
    }
}
