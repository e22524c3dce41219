//! Offer, answer, resume and verdict: the sender's side of the transfer
//! messages, around the stream.

use super::*;

/// When the connection started and how long the handshake took, for the
/// `timing` log line (`-v`) that benchmarks read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) connecting: Instant,
    pub(crate) handshake_done: Duration,
}

impl Timing {
    /// Logs the handshake time and the time from connect to the first data
    /// byte written (the offer and the receiver's answer included).
    fn report(self) {
        info!(
            handshake_ms = format_args!("{:.2}", self.handshake_done.as_secs_f64() * 1e3),
            first_data_ms = format_args!("{:.2}", self.connecting.elapsed().as_secs_f64() * 1e3),
            "timing"
        );
    }
}

/// The connection after the handshake.
pub(crate) struct Link {
    pub(crate) reader: FrameReader<OwnedReadHalf>,
    pub(crate) writer: RecordWriter<OwnedWriteHalf>,
    pub(crate) opener: Opener,
}

/// Offers the files, streams the accepted ones and reads the verdict;
/// `accepted` is set once the receiver answered 200 (only then is it pinned).
pub(crate) async fn exchange(
    mut link: Link,
    sources: &[Source],
    peer: &PeerIdentity,
    accepted: &std::sync::atomic::AtomicBool,
    cx: &Context,
    compress: compress::Mode,
    timing: Timing,
) -> Result<Sent> {
    let answer = offer(&mut link, sources, peer, &cx.events).await?;
    accepted.store(true, std::sync::atomic::Ordering::SeqCst);
    let plan = resume(&mut link.writer, sources, &answer, &cx.events).await?;
    for (s, d) in sources.iter().zip(&answer.files) {
        if !d.status.is_ok() {
            cx.events.notice(Notice::SkippedByReceiver {
                path: s.path.clone(),
                status: d.status,
            });
        }
    }
    let resumed: u64 = plan.iter().map(|p| p.offset).sum();
    let started = Instant::now();
    let compressor = Compressor::new(compress, answer.features)?;
    let (bytes, wire, word) = stream(link, plan, compressor, &cx.events, timing).await?;
    let status = verdict(word).await?;
    let figures = Figures {
        bytes,
        wire,
        resumed,
        started,
    };
    report(sources, &status, figures, peer, &cx.events)
}

/// Offer and answer: the manifest out, the receiver's Answer back (it may
/// first ask its user, and hash what it holds of these files).
async fn offer(
    link: &mut Link,
    sources: &[Source],
    peer: &PeerIdentity,
    events: &Events,
) -> Result<Answer> {
    let entries: Vec<OfferEntry> = sources
        .iter()
        .map(|s| OfferEntry {
            path: s.name.clone(),
            size: s.size,
            attrs: s.attrs,
        })
        .collect();
    for part in OfferPart::split(&entries)? {
        let mut body = vec![];
        part.encode(&mut body)?;
        link.writer.send(RecordType::Offer, &body).await?;
    }
    let offered: u64 = sources.iter().map(|s| s.size).sum();
    events.emit(Event::Offer {
        side: Side::Send,
        offer_id: None,
        peer: Some(PeerLabel::of(peer)),
        files: sources.len(),
        bytes: offered,
        entries: vec![],
        executables: 0,
        code: None,
        abandoned_exchanges: None,
    });
    let answer_wait = PROMPT_TIMEOUT + IDLE_TIMEOUT + hashing_time(offered);
    let (typ, body) = link
        .reader
        .read_record(&mut link.opener, answer_wait)
        .await?;
    expect_record(typ, RecordType::Answer, "Answer")?;
    let answer = Answer::decode(&body)?;
    if !answer.status.is_ok() {
        return Err(Error::refused(answer.status, answer.message));
    }
    if answer.files.len() != sources.len() {
        return Err(ProtoError::Malformed("Answer does not cover every file").into());
    }
    Ok(answer)
}

/// Resume: the prefixes the receiver holds, hashed on our side too; the
/// Resume record says which match. Returns the files to stream, each from
/// where it continues.
async fn resume(
    writer: &mut RecordWriter<OwnedWriteHalf>,
    sources: &[Source],
    answer: &Answer,
    events: &Events,
) -> Result<Vec<Planned>> {
    let held: Vec<(u32, Source, u64, [u8; 32])> = sources
        .iter()
        .zip(&answer.files)
        .enumerate()
        .filter(|(_, (_, d))| d.resumes())
        .map(|(i, (s, d))| (i as u32, s.clone(), d.offset, d.held))
        .collect();
    let mut continued = if held.is_empty() {
        Vec::new()
    } else {
        let events = events.clone();
        let verdicts = tokio::task::spawn_blocking(move || check_held(held, &events)).await?;
        let mut body = vec![];
        Resume {
            files: verdicts
                .iter()
                .map(|v| ResumeFile {
                    index: v.index,
                    offset: v.hasher.as_ref().map_or(0, |_| v.offset),
                })
                .collect(),
        }
        .encode(&mut body)?;
        writer.send(RecordType::Resume, &body).await?;
        verdicts
    };
    Ok(sources
        .iter()
        .zip(&answer.files)
        .enumerate()
        // Directories have no data: the receiver created them.
        .filter(|(_, (s, d))| d.status.is_ok() && !s.is_dir())
        .map(|(i, (s, _))| {
            let index = i as u32;
            let (offset, hasher) = match continued
                .iter_mut()
                .find(|v| v.index == index)
                .and_then(|v| Some((v.offset, v.hasher.take()?)))
            {
                Some(held) => held,
                None => (0, blake3::Hasher::new()),
            };
            Planned {
                index,
                source: s.clone(),
                offset,
                hasher,
            }
        })
        .collect())
}

/// The receiver's word while data flows: its Status at the end, or an alert.
type Word = oneshot::Receiver<Result<(RecordType, Vec<u8>)>>;

/// Stream: the producer thread reads, hashes and seals; this task writes
/// to the socket, while another listens for the receiver's alerts. Returns
/// the file bytes sent, the bytes they took on the wire (when compressed),
/// and the receiver's word (still to come, or already there).
async fn stream(
    link: Link,
    plan: Vec<Planned>,
    compressor: Compressor,
    events: &Events,
    timing: Timing,
) -> Result<(u64, Option<u64>, Heard)> {
    let Link {
        mut reader,
        writer,
        mut opener,
    } = link;
    let bytes: u64 = plan
        .iter()
        .map(|p| p.source.size.saturating_sub(p.offset))
        .sum();
    let resumed: u64 = plan.iter().map(|p| p.offset).sum();
    events.emit(Event::Accepted {
        side: Side::Send,
        files: plan.len(),
        bytes,
        resumed,
    });
    let progress = Progress::new(events, Side::Send, bytes);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PIPELINE_DEPTH);
    let RecordWriter {
        inner: mut wr,
        sealer,
    } = writer;
    let bar = progress.clone();
    let pool = BufPool::default();
    let returns = pool.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut sealer = sealer;
        let r = produce(&mut sealer, plan, tx, &returns, &bar, compressor);
        (sealer, r)
    });
    // The receiver speaks again only at the end (Status) or to abort (Alert).
    // Listen for that in its own task, with no deadline while data flows.
    let (word_tx, mut word_rx) = oneshot::channel();
    let listening = tokio::spawn(async move {
        let r = reader.read_record(&mut opener, WHILE_STREAMING).await;
        let _ = word_tx.send(r);
    });
    let abort_listening = AbortOnDrop(listening);
    let mut word = None;
    let stream_result =
        write_records(&mut wr, &mut rx, &pool, &mut word_rx, &mut word, timing).await;
    drop(rx);
    let (sealer, produced) = producer.await?;
    progress.finish();
    if stream_result.is_err() && word.is_none() {
        // A write failed because the receiver closed: it may have said why
        // first (an alert), and that beats "broken pipe".
        if let Ok(Ok(r @ Err(Error::Protocol(ProtoError::PeerAlert { .. })))) =
            tokio::time::timeout(Duration::from_millis(500), &mut word_rx).await
        {
            word = Some(r);
        }
    }
    if let Some(Err(e)) = word {
        return Err(e);
    }
    stream_result?;
    // What crossed the wire (streams announce no size up front).
    match produced {
        Ok(p) => {
            let heard = Heard {
                word,
                rx: word_rx,
                _listening: abort_listening,
                _writing: wr,
            };
            Ok((p.bytes, p.compressed.then_some(p.wire), heard))
        }
        Err(e) => {
            // Tell the receiver why we stop (it keeps what it has as partial files).
            let mut writer = RecordWriter { inner: wr, sealer };
            writer
                .alert(Status::Cancelled, &format!("the sender failed: {e}"))
                .await;
            Err(e)
        }
    }
}

/// Writes the sealed records to the socket until the producer is done, or
/// the receiver speaks first (an alert; its word is kept in `word`). Each
/// write is bounded: a receiver that stops reading cannot hang us.
async fn write_records(
    wr: &mut OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    pool: &BufPool,
    word_rx: &mut Word,
    word: &mut Option<Result<(RecordType, Vec<u8>)>>,
    timing: Timing,
) -> Result<()> {
    let mut first_write = true;
    loop {
        tokio::select! {
            biased;
            r = &mut *word_rx, if word.is_none() => {
                *word = Some(r.unwrap_or(Err(ProtoError::Truncated.into())));
                break;
            }
            rec = rx.recv() => match rec {
                Some(buf) => {
                    conn::timed(IDLE_TIMEOUT, conn::STOPPED_READING, wr.write_all(&buf)).await?;
                    pool.put(buf);
                    if first_write {
                        first_write = false;
                        timing.report();
                    }
                }
                None => break,
            },
        }
    }
    conn::timed(IDLE_TIMEOUT, conn::STOPPED_READING, wr.flush()).await
}

/// The receiver's word after the stream: already heard, or still to come.
struct Heard {
    word: Option<Result<(RecordType, Vec<u8>)>>,
    rx: Word,
    _listening: AbortOnDrop,
    /// Our half stays open until the verdict: closing it early would be a
    /// FIN that a relay in between takes for the end of the connection.
    _writing: OwnedWriteHalf,
}

/// Verdict: everything is sent; now the receiver has [`STATUS_TIMEOUT`] to
/// verify, fsync and answer. From here on a lost connection is not a failed
/// transfer: the receiver may have saved everything, so it is never retried
/// on a guess.
async fn verdict(heard: Heard) -> Result<FinalStatus> {
    let unconfirmed = |why: String| Error::from(TransferError::Unconfirmed(why));
    let (typ, body) = match heard.word {
        Some(r) => r?,
        None => match tokio::time::timeout(STATUS_TIMEOUT, heard.rx).await {
            Ok(Ok(Ok(r))) => r,
            Ok(Ok(Err(e @ Error::Protocol(ProtoError::PeerAlert { .. })))) => return Err(e),
            Ok(Ok(Err(e))) => return Err(unconfirmed(e.to_string())),
            Ok(Err(_)) => return Err(unconfirmed("the connection closed".into())),
            Err(_) => {
                return Err(unconfirmed(format!(
                    "no answer in {} s",
                    STATUS_TIMEOUT.as_secs()
                )));
            }
        },
    };
    expect_record(typ, RecordType::Status, "Status")?;
    Ok(FinalStatus::decode(&body)?)
}

/// What the stream moved.
struct Figures {
    bytes: u64,
    wire: Option<u64>,
    resumed: u64,
    started: Instant,
}

/// The transfer's end, as an event and a result.
fn report(
    sources: &[Source],
    status: &FinalStatus,
    figures: Figures,
    peer: &PeerIdentity,
    events: &Events,
) -> Result<Sent> {
    let Figures {
        bytes,
        wire,
        resumed,
        started,
    } = figures;
    let elapsed = started.elapsed();
    let delivered = status.files.iter().filter(|s| s.is_ok()).count();
    // Files, not the folders that came with them.
    let delivered_files = sources
        .iter()
        .zip(&status.files)
        .filter(|(s, st)| st.is_ok() && !s.is_dir())
        .count();
    for (s, st) in sources.iter().zip(&status.files) {
        if !st.is_ok() {
            events.notice(Notice::NotDelivered {
                path: s.path.clone(),
                status: *st,
            });
        }
    }
    let label = PeerLabel::of(peer);
    info!(peer = %label.short(), status = %status.status, "transfer finished");
    let ok = status.status.is_ok() && delivered == sources.len();
    let failed = sources
        .iter()
        .zip(&status.files)
        .filter(|(_, st)| !st.is_ok())
        .map(|(s, st)| FailedFile {
            name: s.name.clone(),
            status: *st,
        })
        .collect();
    events.emit(Event::TransferDone(Box::new(TransferDone {
        side: Side::Send,
        peer: label,
        session: String::new(),
        ok,
        files: delivered_files,
        offered: sources.len(),
        bytes,
        resumed,
        seconds: elapsed.as_secs_f64(),
        failed: Some(failed),
        saved: vec![],
        wire: wire.map(|w| (bytes, w)),
        discarded: 0,
    })));
    if ok {
        Ok(Sent {
            delivered,
            offered: sources.len(),
            bytes,
        })
    } else if delivered == 0 && status.files.is_empty() {
        Err(Error::refused(status.status, status.message.clone()))
    } else {
        Err(Error::Transfer(TransferError::Incomplete {
            failed: sources.len() - delivered,
            total: sources.len(),
        }))
    }
}

/// One accepted file, as the sender streams it.
pub(super) struct Planned {
    /// Its index in the offer.
    pub(super) index: u32,
    pub(super) source: Source,
    /// Where to start: bytes the receiver holds and we confirmed.
    pub(super) offset: u64,
    /// BLAKE3 state after the first `offset` bytes.
    pub(super) hasher: blake3::Hasher,
}

/// The sender's verdict on one held prefix.
struct Verdict {
    index: u32,
    offset: u64,
    /// The hash state after the prefix when it matches ours; `None` when it
    /// does not (the file is sent whole).
    hasher: Option<blake3::Hasher>,
}

/// Hashes the prefix of each file the receiver holds and compares (blocking).
fn check_held(held: Vec<(u32, Source, u64, [u8; 32])>, events: &Events) -> Vec<Verdict> {
    held.into_iter()
        .map(|(index, src, offset, theirs)| {
            let ours = if offset > src.size {
                Err(ResumeVerdict::Shorter)
            } else {
                File::open(&src.path)
                    .and_then(|mut f| hash_prefix(&mut f, offset))
                    .map_err(|e| ResumeVerdict::Unreadable(e.to_string()))
            };
            let (hasher, verdict) = match ours {
                Ok((hash, hasher)) if hash == theirs => (Some(hasher), ResumeVerdict::Resuming),
                Ok(_) => (None, ResumeVerdict::Changed),
                Err(why) => (None, why),
            };
            events.notice(Notice::Resume {
                name: src.name.clone(),
                offset,
                verdict,
            });
            Verdict {
                index,
                offset,
                hasher,
            }
        })
        .collect()
}
