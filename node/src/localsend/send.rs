//! Sending to a LocalSend device: who it is (`register`, its certificate
//! checked against the one announced and the one pinned), then
//! `prepare-upload` (with the PIN when it asks), then one `upload` per
//! file, and `cancel` when the send is stopped.
//!
//! ```text
//!  register ─► trust::admit (changed, blocked, impostor) ─► prepare-upload ─┬─ 204: done (a text)
//!                                                                            └─ 200: upload each file ─► verdict
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use localstream_proto::{PeerIdentity, Status};
use tracing::debug;

use super::client::{Answer, Client, Failure, Request, empty_body, file_body, json_body};
use super::wire::{self, DeviceInfo, FileInfo, PrepareAnswer};
use crate::context::Context;
use crate::error::{Error, LocalSendError, Result, TransferError, TrustError};
use crate::event::{Event, Notice, Progress, Side, TransferDone};
use crate::label::PeerLabel;
use crate::send::{Sent, Source};
use crate::store::{Direction, SessionEnd, Trust, now_ms};
use crate::trust::{self, Reached, Refusal};

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Files and folders, as listed (folders as relative paths below their name).
    Files(Vec<Source>),
    /// A text message.
    Text(String),
}

/// Where the device is, and what it must prove to be.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Its HTTPS API.
    pub addr: SocketAddr,
    /// The certificate it announced, when it was discovered.
    pub expect: Option<[u8; 32]>,
}

/// A send to a LocalSend device.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where.
    pub reach: Reach,
    /// What.
    pub payload: Payload,
    /// The PIN, if the device asks for one.
    pub pin: Option<String>,
    /// This node's LocalSend port (announced in `register`).
    pub port: u16,
}

/// Runs a send to a LocalSend device.
///
/// # Errors
/// The device cannot be reached or is not who it must be, the PIN is
/// missing or wrong, it refused, or a file did not arrive.
pub(crate) async fn run(cx: &Context, job: &Job) -> Result<Sent> {
    let sources = match &job.payload {
        Payload::Files(listed) => {
            let s = listed.clone();
            if s.iter().any(Source::is_stream) {
                return Err(Error::Usage(
                    "a LocalSend device needs each file's size before it starts: standard \
                     input (`-`) cannot be sent to one"
                        .into(),
                ));
            }
            s.into_iter().filter(|s| !s.is_dir()).collect()
        }
        Payload::Text(_) => Vec::new(),
    };
    let cert = super::certificate(&cx.home)?;
    let client = Client::new(&cert).map_err(|e| LocalSendError::Tls(e.to_string()))?;
    let me = super::describe(cx.identity.name(), &cert, job.port);
    let addr = job.reach.addr;
    let (peer, info) = meet(cx, &client, &me, &job.reach).await?;
    let label = PeerLabel::of(&peer);
    let files = offer_files(&sources, &job.payload);
    let total: u64 = files.iter().map(|f| f.size).sum();
    cx.events.emit(Event::Offer {
        side: Side::Send,
        offer_id: None,
        peer: Some(label.clone()),
        files: files.len(),
        folders: 0,
        bytes: total,
        entries: Vec::new(),
        executables: 0,
        executables_among: 0,
        code: None,
        abandoned_exchanges: None,
        localsend: Some(format!("LocalSend {}", info.kind()).trim_end().to_owned()),
        text: match &job.payload {
            Payload::Text(t) => Some(t.clone()),
            Payload::Files(_) => None,
        },
    });
    let started_ms = now_ms();
    let session_id = rand::random::<[u8; 16]>();
    let prepared = prepare(&client, &me, &peer, addr, &files, job.pin.as_deref()).await;
    let answer = match prepared {
        Ok(a) => a,
        Err(e) => {
            let (outcome, detail) = trust::outcome(Some(&e), false);
            if let Error::Transfer(TransferError::Refused { status, message }) = &e {
                cx.events.emit(Event::Refused {
                    side: Side::Send,
                    peer: Some(label.clone()),
                    status: *status,
                    message: message.clone(),
                });
            }
            trust::record_if_pinned(
                &cx.store,
                &cx.events,
                &peer,
                &session_id,
                Direction::Send,
                outcome,
                &detail,
            )
            .await;
            return Err(e);
        }
    };
    cx.events.emit(Event::Accepted {
        side: Side::Send,
        files: files.len(),
        bytes: total,
        resumed: 0,
    });
    let started = Instant::now();
    let result = match (answer, &job.payload) {
        (None, _) => Ok(Sent {
            delivered: files.len(),
            offered: files.len(),
            bytes: total,
            grown: 0,
        }),
        // A receiver that keeps texts as files (LocalSend answers 204 and shows it).
        (Some(answer), Payload::Text(text)) => {
            upload_text(&client, addr, &peer, &answer, text).await
        }
        (Some(answer), Payload::Files(_)) => {
            upload_all(cx, &client, addr, &peer, &sources, &files, &answer, total).await
        }
    };
    report(cx, &label, &session_id, &files, total, started, &result);
    let (outcome, detail) = trust::outcome(result.as_ref().err(), result.is_ok());
    let (delivered, bytes) = result
        .as_ref()
        .map_or((0, 0), |s| (s.delivered as u64, s.bytes));
    let end = SessionEnd {
        ended_ms: now_ms(),
        files: delivered,
        bytes,
        resumed: 0,
        outcome,
        detail,
    };
    trust::record_session(
        &cx.store,
        &cx.events,
        &peer,
        Some(addr),
        &session_id,
        Direction::Send,
        started_ms,
        end,
    )
    .await;
    result
}

/// Who answers at the address: its certificate (checked against the one
/// announced), its description, and what the peer store says of it.
async fn meet(
    cx: &Context,
    client: &Client,
    me: &DeviceInfo,
    reach: &Reach,
) -> Result<(PeerIdentity, DeviceInfo)> {
    let addr = reach.addr;
    let (body, length) = json_body(me);
    let answer = client
        .post(
            addr,
            Request {
                path: &format!("{}/register", wire::API),
                body,
                length,
                expect: reach.expect,
                answer_limit: wire::MAX_INFO_BODY,
                timeout: Some(Duration::from_secs(10)),
            },
        )
        .await
        .map_err(|f| failure(addr, f, reach.expect))?;
    let info = match answer.status {
        200 => serde_json::from_slice::<DeviceInfo>(&answer.body).map_err(|e| {
            LocalSendError::BadAnswer {
                addr,
                reason: format!("register: {e}"),
            }
        })?,
        code => {
            return Err(LocalSendError::Http {
                addr,
                what: "register",
                code,
                message: message_of(&answer),
            }
            .into());
        }
    };
    let fp = answer.fingerprint;
    let peer = PeerIdentity {
        node_id: wire::node_id(&fp),
        name: info.shown_alias(),
        mac: None,
        public_key_der: Vec::new(),
        fingerprint: fp,
    };
    let contacted = match trust::admit(&cx.store, &peer, Reached::Dialed(addr)).await {
        Ok(c) => c,
        Err(Refusal::KeyChanged(e) | Refusal::Impostor(e) | Refusal::Store(e)) => return Err(e),
        Err(Refusal::Blocked) => {
            return Err(TrustError::Blocked(format!(
                "{} (id {})",
                PeerLabel::of(&peer).short(),
                uuid::Uuid::from_bytes(peer.node_id)
            ))
            .into());
        }
    };
    cx.events.emit(Event::Connected {
        peer: PeerLabel::of(&peer),
        address: addr,
    });
    if contacted.trust != Trust::Trusted {
        cx.events.notice(Notice::LocalSendDevice {
            peer: PeerLabel::of(&peer),
            fingerprint: wire::fingerprint_text(&fp),
            first: contacted.first,
        });
    }
    Ok((peer, info))
}

/// What a failed request means for the user.
fn failure(addr: SocketAddr, f: Failure, expected: Option<[u8; 32]>) -> Error {
    match f {
        Failure::WrongCertificate(presented) => Error::Trust(TrustError::WrongPeer {
            addr,
            expected: format!(
                "the LocalSend device announced with certificate {}",
                expected
                    .map(|e| wire::fingerprint_text(&e))
                    .unwrap_or_default()
            ),
            actual: format!(
                "a device with certificate {}",
                wire::fingerprint_text(&presented)
            ),
        }),
        Failure::Connect(source) => Error::Connect { addr, source },
        Failure::Timeout(_) => Error::Timeout("the LocalSend device did not answer"),
        Failure::Http(reason) => LocalSendError::BadAnswer { addr, reason }.into(),
    }
}

fn message_of(a: &Answer) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).into_owned());
    localstream_proto::names::strip_control_or_bidi(&text, 200)
}

/// The files as LocalSend lists them: id, relative path, size, type.
fn offer_files(sources: &[Source], payload: &Payload) -> Vec<FileInfo> {
    if let Payload::Text(text) = payload {
        return vec![FileInfo {
            id: "0".into(),
            file_name: "message.txt".into(),
            size: text.len() as u64,
            file_type: "text/plain".into(),
            sha256: None,
            preview: Some(text.clone()),
        }];
    }
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| FileInfo {
            id: i.to_string(),
            file_name: s.name.clone(),
            size: s.size,
            file_type: mime(&s.name).into(),
            sha256: None,
            preview: None,
        })
        .collect()
}

/// A MIME type by extension (LocalSend picks an icon and an app by it).
fn mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "apk" => "application/vnd.android.package-archive",
        "txt" | "md" | "log" | "csv" => "text/plain",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// `prepare-upload`: `None` when nothing needs uploading (204).
async fn prepare(
    client: &Client,
    me: &DeviceInfo,
    peer: &PeerIdentity,
    addr: SocketAddr,
    files: &[FileInfo],
    pin: Option<&str>,
) -> Result<Option<PrepareAnswer>> {
    let mut map = serde_json::Map::new();
    for f in files {
        map.insert(f.id.clone(), serde_json::to_value(f).unwrap_or_default());
    }
    let req = wire::PrepareUpload {
        info: me.clone(),
        files: map,
    };
    let (body, length) = json_body(&req);
    let path = match pin {
        Some(p) => format!("{}/prepare-upload?pin={}", wire::API, encode(p)),
        None => format!("{}/prepare-upload", wire::API),
    };
    let answer = client
        .post(
            addr,
            Request {
                path: &path,
                body,
                length,
                expect: Some(peer.fingerprint),
                answer_limit: wire::MAX_PREPARE_BODY,
                // A person answers on the device.
                timeout: None,
            },
        )
        .await
        .map_err(|f| failure(addr, f, Some(peer.fingerprint)))?;
    let device = PeerLabel::of(peer).short();
    let message = message_of(&answer);
    match answer.status {
        200 => serde_json::from_slice(&answer.body).map(Some).map_err(|e| {
            LocalSendError::BadAnswer {
                addr,
                reason: format!("prepare-upload: {e}"),
            }
            .into()
        }),
        204 => Ok(None),
        401 if pin.is_none() => Err(LocalSendError::PinRequired { device }.into()),
        401 => Err(LocalSendError::WrongPin { device }.into()),
        429 => Err(LocalSendError::TooManyAttempts { device }.into()),
        403 => Err(TransferError::Refused {
            status: Status::Declined,
            message: if message.is_empty() {
                "declined".into()
            } else {
                message
            },
        }
        .into()),
        409 => Err(TransferError::Refused {
            status: Status::Busy,
            message: "the device is busy with another transfer".into(),
        }
        .into()),
        507 => Err(TransferError::Refused {
            status: Status::InsufficientStorage,
            message,
        }
        .into()),
        code => Err(LocalSendError::Http {
            addr,
            what: "prepare-upload",
            code,
            message,
        }
        .into()),
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A text message as the one file of the session, for receivers that ask
/// for its bytes instead of showing the preview.
async fn upload_text(
    client: &Client,
    addr: SocketAddr,
    peer: &PeerIdentity,
    answer: &PrepareAnswer,
    text: &str,
) -> Result<Sent> {
    let Some(token) = answer.files.get("0").and_then(|t| t.as_str()) else {
        return Ok(Sent {
            delivered: 1,
            offered: 1,
            bytes: text.len() as u64,
            grown: 0,
        });
    };
    let path = format!(
        "{}/upload?sessionId={}&fileId=0&token={}",
        wire::API,
        encode(&answer.session_id),
        encode(token)
    );
    let bytes = bytes::Bytes::from(text.as_bytes().to_vec());
    let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        http_body_util::Full::new(bytes),
        |e| match e {},
    ));
    let a = client
        .post(
            addr,
            Request {
                path: &path,
                body,
                length: text.len() as u64,
                expect: Some(peer.fingerprint),
                answer_limit: wire::MAX_INFO_BODY,
                timeout: Some(Duration::from_secs(60)),
            },
        )
        .await
        .map_err(|e| failure(addr, e, Some(peer.fingerprint)))?;
    if a.status != 200 {
        return Err(LocalSendError::Http {
            addr,
            what: "upload",
            code: a.status,
            message: message_of(&a),
        }
        .into());
    }
    Ok(Sent {
        delivered: 1,
        offered: 1,
        bytes: text.len() as u64,
        grown: 0,
    })
}

/// The uploads, one after the other; a failure ends the session (the
/// device is told with `cancel`).
#[allow(clippy::too_many_arguments)]
async fn upload_all(
    cx: &Context,
    client: &Client,
    addr: SocketAddr,
    peer: &PeerIdentity,
    sources: &[Source],
    files: &[FileInfo],
    answer: &PrepareAnswer,
    total: u64,
) -> Result<Sent> {
    let mut guard = CancelOnDrop {
        client: client.clone(),
        addr,
        session: answer.session_id.clone(),
        fingerprint: peer.fingerprint,
        armed: true,
    };
    let progress = Progress::new(&cx.events, Side::Send, total);
    let mut sent = Sent {
        delivered: 0,
        offered: files.len(),
        bytes: 0,
        grown: 0,
    };
    for (f, s) in files.iter().zip(sources) {
        let Some(token) = answer.files.get(&f.id).and_then(|t| t.as_str()) else {
            // The device left this file out (LocalSend lets its user pick).
            debug!(file = %f.file_name, "not wanted by the device");
            continue;
        };
        let file = tokio::fs::File::open(&s.path)
            .await
            .map_err(|e| Error::file(&s.path, e))?;
        progress.start_file(&f.file_name, f.size);
        let p = progress.clone();
        let body = file_body(file, Arc::new(move |n| p.advance(n)));
        let path = format!(
            "{}/upload?sessionId={}&fileId={}&token={}",
            wire::API,
            encode(&answer.session_id),
            encode(&f.id),
            encode(token)
        );
        // Generous: 2 minutes plus 256 KiB/s, so only a stalled device times out.
        let timeout = Duration::from_secs(120) + Duration::from_secs(f.size / (256 * 1024));
        let a = client
            .post(
                addr,
                Request {
                    path: &path,
                    body,
                    length: f.size,
                    expect: Some(peer.fingerprint),
                    answer_limit: wire::MAX_INFO_BODY,
                    timeout: Some(timeout),
                },
            )
            .await
            .map_err(|e| failure(addr, e, Some(peer.fingerprint)))?;
        if a.status != 200 {
            return Err(LocalSendError::Http {
                addr,
                what: "upload",
                code: a.status,
                message: message_of(&a),
            }
            .into());
        }
        progress.file_done(|| f.file_name.as_str(), f.size, None);
        sent.delivered += 1;
        sent.bytes += f.size;
    }
    guard.armed = false;
    progress.finish();
    if sent.delivered < sent.offered {
        return Err(TransferError::Incomplete {
            failed: sent.offered - sent.delivered,
            total: sent.offered,
        }
        .into());
    }
    Ok(sent)
}

fn report(
    cx: &Context,
    label: &PeerLabel,
    session_id: &[u8; 16],
    files: &[FileInfo],
    total: u64,
    started: Instant,
    result: &Result<Sent>,
) {
    let (ok, delivered, bytes) = match result {
        Ok(s) => (true, s.delivered, s.bytes),
        Err(_) => (false, 0, 0),
    };
    if result.is_err() && total > 0 && files.is_empty() {
        return;
    }
    cx.events.emit(Event::TransferDone(Box::new(TransferDone {
        side: Side::Send,
        peer: label.clone(),
        session: trust::session_hex(session_id),
        ok,
        files: delivered,
        offered: files.len(),
        bytes,
        resumed: 0,
        seconds: started.elapsed().as_secs_f64(),
        failed: None,
        saved: Vec::new(),
        wire: None,
        discarded: 0,
        unsaved: 0,
    })));
}

/// Tells the device the session is cancelled when the send stops before
/// its end (Ctrl-C, an error): on a thread of its own, waited for at most
/// a moment, so that it goes out even while the program exits.
struct CancelOnDrop {
    client: Client,
    addr: SocketAddr,
    session: String,
    fingerprint: [u8; 32],
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, addr, fp) = (self.client.clone(), self.addr, self.fingerprint);
        let path = format!("{}/cancel?sessionId={}", wire::API, encode(&self.session));
        let sending = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let req = Request {
                    path: &path,
                    body: empty_body(),
                    length: 0,
                    expect: Some(fp),
                    answer_limit: 1024,
                    timeout: Some(Duration::from_secs(2)),
                };
                let _ = tokio::time::timeout(Duration::from_secs(3), client.post(addr, req)).await;
            });
        });
        let _ = sending.join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode("12 34&x=ü"), "12%2034%26x%3D%C3%BC");
        assert_eq!(super::encode("abc-_.~9"), "abc-_.~9");
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(super::mime("a/B.JPG"), "image/jpeg");
        assert_eq!(super::mime("noext"), "application/octet-stream");
    }
}
