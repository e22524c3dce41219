//! Offer, answer, resume and verdict: the sender's side of the transfer
//! messages, around the stream.

use super::*;
use crate::event::Checking;

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
    /// The receiver speaks protocol version 3 (modification times, texts).
    pub(crate) v3: bool,
    /// The receiver speaks protocol version 4: the transfer goes in
    /// batches under one Manifest, whatever the number of files.
    pub(crate) batches: bool,
}

/// The most entries one offer may hold for a receiver of protocol version
/// 3 or older (no batches).
const ONE_OFFER_MAX: usize = MAX_FILES as usize;

/// Offers the files, streams the accepted ones and reads the verdict, in
/// batches for a receiver of version 4 (one offer for an older one);
/// `accepted` is set once the receiver answered 200 (only then is it
/// pinned); `tally` counts what was sent, for the history.
/// `first_walk`: the first batch, walked and encoded while the receiver
/// was authenticated (for a version 4 receiver).
#[allow(clippy::too_many_arguments)] // the connection's facts, each used once
pub(crate) async fn exchange(
    mut link: Link,
    listing: &Listing,
    first_walk: Option<tokio::task::JoinHandle<Walked>>,
    peer: &PeerIdentity,
    accepted: &std::sync::atomic::AtomicBool,
    cx: &Context,
    compress: compress::Mode,
    timing: Timing,
    tally: &Arc<Tally>,
) -> Result<Sent> {
    use std::sync::atomic::Ordering::Relaxed;
    let events = &cx.events;
    tally.total.store(listing.bytes, Relaxed);
    let (mut batches, mut ahead, whole) = if link.batches {
        let manifest = listing.manifest();
        let mut body = Vec::with_capacity(Manifest::LEN);
        manifest.encode(&mut body);
        link.writer.send(RecordType::Manifest, &body).await?;
        let batches = Batches::new(manifest);
        let first_walk =
            first_walk.unwrap_or_else(|| walk_ahead(listing.batches(events), batches.clone()));
        (Some(batches), Some(first_walk), None)
    } else {
        let why = "the receiver runs an older LocalStream, which takes one offer at a time: \
                   send the folders one by one, or update it";
        (None, None, Some(listing.all(ONE_OFFER_MAX, why)?))
    };
    let progress = Progress::new(events, Side::Send, listing.bytes);
    let started = Instant::now();
    let mut sum = Sum::default();
    let mut first = true;
    // To this machine there is no link to spare: compression would only
    // cost CPU on both sides.
    let compress = match link.writer.inner.peer_addr() {
        Ok(a) if compress == compress::Mode::Auto && a.ip().to_canonical().is_loopback() => {
            compress::Mode::Off
        }
        _ => compress,
    };
    let mut learned: Option<Compressor> = None;
    loop {
        let (sources, more, batcher, offering) = match (&whole, ahead.take()) {
            (Some(all), _) => {
                let entries = all.iter().map(|s| s.entry(link.v3)).collect();
                (all.clone(), false, None, Offering::new(entries)?)
            }
            (None, Some(walk)) => {
                let (b, next) = walk.await?;
                match next? {
                    Some(batch) => (batch.sources, batch.more, Some(b), batch.offering),
                    // A batch always has a successor when it said so.
                    None if !first => break,
                    None => {
                        return Err(Error::Usage(
                            "nothing left to send: what was counted is gone".into(),
                        ));
                    }
                }
            }
            (None, None) => break,
        };
        if let Some(batches) = &mut batches {
            batches.admit(offering.entries())?;
            // The next batch is walked while this one is offered and
            // streamed, against the limits that this one has left.
            if more && let Some(b) = batcher {
                ahead = Some(walk_ahead(b, batches.clone()));
            }
        }
        let answered = offer(&mut link, offering, listing, peer, events, first).await?;
        let (streaming, prefixes) = match answered {
            Answered::Refused(refusal) => {
                return Err(Error::refused(refusal.status, refusal.message));
            }
            Answered::Streaming(streaming) => (streaming, Prefixes::new()),
            Answered::Resuming(resuming) => {
                resume(&mut link.writer, &sources, resuming, peer, events).await?
            }
        };
        if first {
            accepted.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        for (s, d) in sources.iter().zip(streaming.decisions()) {
            if !d.status.is_ok() {
                events.notice(Notice::SkippedByReceiver {
                    path: s.path.clone(),
                    status: d.status,
                });
            }
        }
        let resumed = streaming.resumed_bytes();
        tally.resumed.fetch_add(resumed, Relaxed);
        // Held already, or refused: not to be moved.
        let batch_bytes: u64 = sources.iter().map(|s| s.size).sum();
        progress.shrink(batch_bytes.saturating_sub(streaming.bytes_left()));
        if first {
            let (files, bytes) = if batches.is_some() {
                let files = (listing.entries - listing.folders) as usize;
                (
                    files,
                    listing.bytes.saturating_sub(batch_bytes) + streaming.bytes_left(),
                )
            } else {
                (streaming.files_left(), streaming.bytes_left())
            };
            events.emit(Event::Accepted {
                side: Side::Send,
                files,
                bytes,
                resumed,
            });
        }
        // What `auto` learned in one batch goes on in the next.
        let compressor = match learned.take() {
            Some(c) => c.again(streaming.features())?,
            None => Compressor::new(compress, streaming.features())?,
        };
        let agreed = Agreed {
            streaming,
            sources: sources.clone(),
            prefixes,
            tally: tally.clone(),
        };
        let (bytes, wire, heard, compressor) =
            stream(link, agreed, compressor, &progress, timing).await?;
        learned = Some(compressor);
        let (outcome, back) = verdict(heard).await?;
        link = back;
        sum.add(&sources, &outcome, (bytes, wire, resumed), events, tally);
        first = false;
        if !more {
            break;
        }
    }
    progress.finish();
    report(sum, started, peer, events, tally)
}

/// A batch walked on a blocking thread, and the walker given back.
pub(crate) type Walked = (sources::Batcher, Result<Option<Batch>>);

/// A batch of a version 4 transfer, ready to go.
pub(crate) struct Batch {
    sources: Arc<[Source]>,
    /// Another batch follows.
    more: bool,
    /// Its Offer records.
    offering: Offering,
}

/// Walks the next batch in the background, within what `limits` still
/// allows (one batch ahead is all that is held), and encodes its Offer
/// records.
pub(crate) fn walk_ahead(
    mut batcher: sources::Batcher,
    limits: Batches,
) -> tokio::task::JoinHandle<Walked> {
    tokio::task::spawn_blocking(move || {
        let next = batcher.next_batch(&limits).and_then(|next| {
            next.map(|(sources, more)| {
                // Version 4 carries modification times.
                let entries = sources.iter().map(|s| s.entry(true)).collect();
                let offering = Offering::batch(entries, more)?;
                Ok(Batch {
                    sources,
                    more,
                    offering,
                })
            })
            .transpose()
        });
        (batcher, next)
    })
}

/// Offer and answer: this offer (or batch) out, the receiver's Answer back
/// (it may first ask its user, and hash what it holds of these files). The
/// first one is announced with the whole send's totals.
async fn offer(
    link: &mut Link,
    offering: Offering,
    listing: &Listing,
    peer: &PeerIdentity,
    events: &Events,
    first: bool,
) -> Result<Answered> {
    for body in offering.bodies() {
        link.writer.send(RecordType::Offer, body).await?;
    }
    let offered: u64 = offering.entries().iter().map(|e| e.size).sum();
    if first {
        events.emit(Event::Offer {
            side: Side::Send,
            offer_id: None,
            peer: Some(PeerLabel::of(peer)),
            files: (listing.entries - listing.folders) as usize,
            folders: listing.folders as usize,
            bytes: listing.bytes,
            entries: vec![],
            executables: 0,
            executables_among: 0,
            code: None,
            abandoned_exchanges: None,
            localsend: None,
            text: None,
        });
    }
    // A later batch needs no question: only the receiver's own checks.
    let asked = if first {
        PROMPT_TIMEOUT
    } else {
        Duration::ZERO
    };
    let answer_wait = asked + IDLE_TIMEOUT + hashing_time(offered);
    let (typ, body) = link
        .reader
        .read_record(&mut link.opener, answer_wait)
        .await?;
    Ok(offering.sent().handle(typ, &body)?)
}

/// Resume: the prefixes the receiver holds, hashed on our side too; the
/// Resume record says which match. Returns the data phase, and the hash
/// state after each confirmed prefix.
async fn resume(
    writer: &mut RecordWriter<OwnedWriteHalf>,
    sources: &Arc<[Source]>,
    resuming: Resuming,
    peer: &PeerIdentity,
    events: &Events,
) -> Result<(Streaming, Prefixes)> {
    let (sources, events, peer) = (sources.clone(), events.here(), PeerLabel::of(peer));
    let (streaming, prefixes, body) =
        tokio::task::spawn_blocking(move || check_held(resuming, &sources, &peer, &events))
            .await??;
    writer.send(RecordType::Resume, &body).await?;
    Ok((streaming, prefixes))
}

/// The receiver's word while data flows: its Status at the end, or an alert.
type Word = oneshot::Receiver<Result<(RecordType, Vec<u8>)>>;

/// The task that reads the receiver's word; it gives the read half back.
type Listening = tokio::task::JoinHandle<(FrameReader<OwnedReadHalf>, Opener)>;

/// Stream: the producer thread reads, hashes and seals; this task writes
/// to the socket, while another listens for the receiver's alerts. Returns
/// the file bytes sent, the bytes they took on the wire (when compressed),
/// the receiver's word (still to come, or already there), and the
/// compressor for the next batch.
async fn stream(
    link: Link,
    agreed: Agreed,
    compressor: Compressor,
    progress: &Progress,
    timing: Timing,
) -> Result<(u64, Option<u64>, Heard, Compressor)> {
    let Link {
        mut reader,
        writer,
        mut opener,
        v3,
        batches,
    } = link;
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
        let r = produce(&mut sealer, agreed, tx, &returns, &bar, compressor);
        (sealer, r)
    });
    // The receiver speaks again only at the end (Status) or to abort (Alert).
    // Listen for that in its own task, with no deadline while data flows.
    let (word_tx, mut word_rx) = oneshot::channel();
    let listening: Listening = tokio::spawn(async move {
        let r = reader.read_record(&mut opener, WHILE_STREAMING).await;
        let _ = word_tx.send(r);
        (reader, opener)
    });
    let listening = Aborting(Some(listening));
    let mut word = None;
    let stream_result =
        write_records(&mut wr, &mut rx, &pool, &mut word_rx, &mut word, timing).await;
    drop(rx);
    let (sealer, produced) = producer.await?;
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
                waiting: p.waiting,
                listening,
                writer: RecordWriter { inner: wr, sealer },
                v3,
                batches,
            };
            Ok((p.bytes, p.compressed.then_some(p.wire), heard, p.compressor))
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

/// The listening task, aborted if it is dropped before it gave the read
/// half back.
struct Aborting(Option<Listening>);

impl Drop for Aborting {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Writes the sealed records to the socket until the producer is done, or
/// the receiver speaks first (its word is kept in `word`). Each write is
/// bounded: a receiver that stops reading cannot hang us.
///
/// The receiver may speak only to abort (an Alert) until our TransferEnd:
/// a record it sends while some of ours are still to be written is a
/// violation ([`Streaming::unexpected`]), whatever it is; one that arrives
/// once all are written is taken as its final word, for [`verdict`].
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
            r = &mut *word_rx, if word.is_none() => match r {
                Ok(Ok(record)) => *word = Some(Ok(record)),
                r => {
                    *word = Some(r.unwrap_or(Err(ProtoError::Truncated.into())));
                    break;
                }
            },
            rec = rx.recv() => match rec {
                Some(buf) => {
                    if let Some(Ok((typ, body))) = word {
                        // It spoke before our last record went out.
                        *word = Some(Err(Streaming::unexpected(*typ, body).into()));
                        pool.put(buf);
                        break;
                    }
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
    /// The machine, after our TransferEnd (or BatchEnd).
    waiting: AwaitStatus,
    listening: Aborting,
    /// Our half stays open until the verdict: closing it early would be a
    /// FIN that a relay in between takes for the end of the connection.
    writer: RecordWriter<OwnedWriteHalf>,
    v3: bool,
    batches: bool,
}

/// Verdict: everything is sent; now the receiver has [`STATUS_TIMEOUT`] to
/// verify, fsync and answer. From here on a lost connection is not a failed
/// transfer: the receiver may have saved everything, so it is never retried
/// on a guess. Returns the connection too, for the next batch.
async fn verdict(heard: Heard) -> Result<(Outcome, Link)> {
    let unconfirmed = |why: String| Error::from(TransferError::Unconfirmed(why));
    let Heard {
        word,
        rx,
        waiting,
        mut listening,
        writer,
        v3,
        batches,
    } = heard;
    let (typ, body) = match word {
        Some(r) => r?,
        None => match tokio::time::timeout(STATUS_TIMEOUT, rx).await {
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
    let outcome = waiting.handle(typ, &body)?;
    // The word is in: the listening task has ended, or is about to.
    let task = listening.0.take().ok_or(ProtoError::Truncated)?;
    let (reader, opener) = task.await?;
    let link = Link {
        reader,
        writer,
        opener,
        v3,
        batches,
    };
    Ok((outcome, link))
}

/// What the batches delivered, added up.
#[derive(Default)]
struct Sum {
    /// Entries offered (folders included).
    offered: usize,
    /// Entries delivered (folders included).
    delivered: usize,
    /// Files offered.
    offered_files: usize,
    /// Files delivered.
    files: usize,
    /// Folders not delivered.
    failed_folders: usize,
    /// File bytes sent.
    bytes: u64,
    /// What they took on the wire, when compressed.
    wire: Option<u64>,
    /// Bytes the receiver held already.
    resumed: u64,
    /// The first status that was not 200 (the receiver's overall word).
    status: Option<Status>,
    /// The entries not delivered (the first [`MAX_FAILED_LISTED`]).
    failed: Vec<FailedFile>,
    /// How many were not delivered.
    failures: usize,
}

/// Entries not delivered that the transfer's end lists by name.
const MAX_FAILED_LISTED: usize = 1000;

/// Entries not delivered that get a line each as their batch ends (a
/// receiver whose folder refuses every file must not print 100,000 lines).
const NOTICES_MAX: usize = 100;

impl Sum {
    /// One batch's outcome, with a notice for each entry not delivered.
    fn add(
        &mut self,
        sources: &[Source],
        outcome: &Outcome,
        (bytes, wire, resumed): (u64, Option<u64>, u64),
        events: &Events,
        tally: &Tally,
    ) {
        self.offered += sources.len();
        self.offered_files += sources.iter().filter(|s| !s.is_dir()).count();
        self.bytes += bytes;
        self.resumed += resumed;
        if let Some(w) = wire {
            *self.wire.get_or_insert(0) += w;
        }
        if !outcome.status.is_ok() && self.status.is_none() {
            self.status = Some(outcome.status);
        }
        for (s, st) in sources.iter().zip(&outcome.files) {
            if st.is_ok() {
                self.delivered += 1;
                self.files += usize::from(!s.is_dir());
                continue;
            }
            self.failures += 1;
            self.failed_folders += usize::from(s.is_dir());
            // (One that ended short was told of then, with why.) Past the
            // first ones, the end's count says how many more.
            let told = *st == Status::SizeMismatch && tally.was_told(&s.path);
            if !told && self.failures <= NOTICES_MAX {
                events.notice(Notice::NotDelivered {
                    path: s.path.clone(),
                    status: *st,
                });
            }
            if self.failed.len() < MAX_FAILED_LISTED {
                self.failed.push(FailedFile {
                    name: s.name.clone(),
                    status: *st,
                    why: None,
                });
            }
        }
    }
}

/// The transfer's end, as an event and a result.
fn report(
    sum: Sum,
    started: Instant,
    peer: &PeerIdentity,
    events: &Events,
    tally: &Tally,
) -> Result<Sent> {
    let elapsed = started.elapsed();
    // The history counts what the receiver verified.
    tally
        .files
        .store(sum.files as u64, std::sync::atomic::Ordering::Relaxed);
    tally
        .bytes
        .store(sum.bytes, std::sync::atomic::Ordering::Relaxed);
    let label = PeerLabel::of(peer);
    let status = sum.status.unwrap_or(Status::Ok);
    info!(peer = %label.short(), status = %status, "transfer finished");
    let ok = status.is_ok() && sum.delivered == sum.offered;
    events.emit(Event::TransferDone(Box::new(TransferDone {
        side: Side::Send,
        peer: label,
        session: String::new(),
        ok,
        files: sum.files,
        offered: sum.offered_files,
        bytes: sum.bytes,
        resumed: sum.resumed,
        seconds: elapsed.as_secs_f64(),
        failed: Some(sum.failed),
        saved: vec![],
        wire: sum.wire.map(|w| (sum.bytes, w)),
        discarded: 0,
        unsaved: 0,
    })));
    if ok {
        Ok(Sent {
            delivered: sum.files,
            offered: sum.offered_files,
            bytes: sum.bytes,
            grown: tally.grown.load(std::sync::atomic::Ordering::Relaxed),
        })
    } else {
        // In files, as the user counts them (a folder counts only when it
        // could not be made).
        Err(Error::Transfer(TransferError::Incomplete {
            failed: sum.failures.max(sum.offered - sum.delivered),
            total: sum.offered_files + sum.failed_folders,
        }))
    }
}

/// What the Answer (and our Resume) agreed to send: the machine that walks
/// the accepted files, the sources by offer index, and the hash state after
/// each confirmed held prefix.
pub(super) struct Agreed {
    pub(super) streaming: Streaming,
    pub(super) sources: Arc<[Source]>,
    pub(super) prefixes: Prefixes,
    /// What was sent so far, for the history.
    pub(super) tally: Arc<Tally>,
}

/// The BLAKE3 state after each confirmed held prefix, by offer index: the
/// file's hash continues from there.
pub(super) type Prefixes = HashMap<u32, blake3::Hasher>;

/// Hashes the prefix of each file the receiver holds and compares (blocking),
/// with a notice per held prefix the Answer offered, in offer order; returns
/// the data phase, the confirmed prefixes' hash states and the Resume body.
fn check_held(
    resuming: Resuming,
    sources: &[Source],
    peer: &PeerLabel,
    events: &Events,
) -> Result<(Streaming, Prefixes, Vec<u8>)> {
    let mut prefixes = Prefixes::new();
    let held_bytes = resuming.held().iter().map(|h| h.offset).sum();
    let mut checking = Checking::new(events, Side::Send, peer, held_bytes);
    // The machine asks only about prefixes that fit in the file (and
    // answers the others 0): the rest are longer than our file.
    let mut checkable = resuming.held().iter().peekable();
    let offered = resuming.decisions().iter().zip(sources).enumerate();
    let (mut identical, mut identical_bytes) = (0, 0);
    for (index, (d, src)) in offered.filter(|(_, (d, _))| d.resumes()) {
        let index = index as u32;
        // The receiver holds as many bytes as the file has: its copy (or a
        // partial that got all of it) is the same file, or another one.
        let whole = d.offset == src.size;
        let verdict = match checkable.next_if(|h| h.index == index) {
            None => ResumeVerdict::Shorter,
            Some(h) => {
                let hashed = File::open(&src.path).and_then(|mut f| {
                    hash_prefix_counting(&mut f, h.offset, |n| {
                        checking.advance(n);
                        Ok(())
                    })
                });
                checking.prefix_done(h.offset);
                match hashed {
                    Ok((hash, hasher)) if hash == h.hash => {
                        prefixes.insert(index, hasher);
                        ResumeVerdict::Resuming
                    }
                    Ok(_) if whole => ResumeVerdict::Differs,
                    Ok(_) => ResumeVerdict::Changed,
                    Err(e) => ResumeVerdict::Unreadable(e.to_string()),
                }
            }
        };
        if whole && verdict == ResumeVerdict::Resuming {
            identical += 1;
            identical_bytes += src.size;
            continue;
        }
        events.notice(Notice::Resume {
            name: src.name.clone(),
            offset: d.offset,
            verdict,
        });
    }
    checking.finish();
    if identical > 0 {
        events.notice(Notice::Identical {
            files: identical,
            bytes: identical_bytes,
        });
    }
    let mut body = Vec::new();
    let verdict = |h: &HeldPrefix| {
        if prefixes.contains_key(&h.index) {
            Prefix::Matches
        } else {
            Prefix::Differs
        }
    };
    let streaming = resuming.resume(verdict, &mut body)?;
    Ok((streaming, prefixes, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::AsyncReadExt;

    use super::*;

    /// The write half of a loopback connection, and its other end.
    async fn socket() -> (OwnedWriteHalf, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (ours.into_split().1, theirs)
    }

    fn peer() -> PeerLabel {
        PeerLabel {
            name: "receiver".into(),
            id: crate::label::NodeId([7; 16]),
            fingerprint: [9; 32],
        }
    }

    fn timing() -> Timing {
        Timing {
            connecting: Instant::now(),
            handshake_done: Duration::ZERO,
        }
    }

    /// A Resuming machine for `sources`, as an Answer offering these held
    /// prefixes (index, offset, hash) leaves it.
    fn resuming(sources: &[Source], held: &[(usize, u64, [u8; 32])]) -> Resuming {
        let entries = sources.iter().map(|s| s.entry(true)).collect();
        let mut files = vec![localstream_proto::transfer::FileDecision::whole(); sources.len()];
        for &(i, offset, hash) in held {
            files[i].offset = offset;
            files[i].held = hash;
        }
        let mut body = vec![];
        localstream_proto::transfer::Answer {
            status: Status::Ok,
            message: String::new(),
            features: 0,
            files,
        }
        .encode(&mut body)
        .unwrap();
        let waiting = Offering::new(entries).unwrap().sent();
        match waiting.handle(RecordType::Answer, &body).unwrap() {
            Answered::Resuming(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_held_prefix_gets_its_verdict_in_offer_order() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"0123456789".repeat(10);
        let source = |name: &str, size: u64, attrs: u8| {
            let path = dir.path().join(name);
            std::fs::write(&path, &content[..size as usize]).unwrap();
            Source {
                path,
                name: name.into(),
                size,
                attrs,
                mtime: None,
                text: None,
            }
        };
        let mut sources = vec![
            source("same", 100, 0),
            source("changed", 100, 0),
            source("shorter", 40, 0),
            source("gone", 100, 0),
            source("whole", 100, 0),
        ];
        std::fs::remove_file(&sources[3].path).unwrap();
        sources.push(Source {
            path: dir.path().join("d"),
            name: "d".into(),
            size: 0,
            attrs: ATTR_DIR,
            mtime: None,
            text: None,
        });
        let hash = |b: &[u8]| *blake3::hash(b).as_bytes();
        let held = [
            (0, 30, hash(&content[..30])),
            (1, 30, hash(b"something else")),
            (2, 50, hash(&content[..50])),
            (3, 30, hash(&content[..30])),
            (5, 7, [0; 32]),
        ];
        let events = Events::default();
        let mut heard = events.subscribe();
        let (streaming, prefixes, body) =
            check_held(resuming(&sources, &held), &sources, &peer(), &events).unwrap();
        let heard: Vec<Event> = std::iter::from_fn(|| heard.try_next())
            .map(|e| e.event)
            .collect();
        // The check is announced with what it covers (the prefixes that fit
        // in their files), and ends at its total.
        let checks: Vec<(u64, u64)> = heard
            .iter()
            .filter_map(|e| match e {
                Event::Checking {
                    peer: p,
                    bytes,
                    done,
                    ..
                } => {
                    assert_eq!(p, &peer());
                    Some((*bytes, *done))
                }
                _ => None,
            })
            .collect();
        assert_eq!(checks.first(), Some(&(90, 0)), "{checks:?}");
        assert_eq!(checks.last(), Some(&(90, 90)), "{checks:?}");
        assert!(checks.windows(2).all(|w| w[0].1 <= w[1].1), "{checks:?}");
        let verdicts: Vec<(String, u64, ResumeVerdict)> = heard
            .into_iter()
            .filter_map(|e| match e {
                Event::Notice(Notice::Resume {
                    name,
                    offset,
                    verdict,
                }) => Some((name, offset, verdict)),
                _ => None,
            })
            .collect();
        let names: Vec<(&str, u64)> = verdicts.iter().map(|(n, o, _)| (n.as_str(), *o)).collect();
        assert_eq!(
            names,
            [
                ("same", 30),
                ("changed", 30),
                ("shorter", 50),
                ("gone", 30),
                ("d", 7)
            ]
        );
        assert_eq!(verdicts[0].2, ResumeVerdict::Resuming);
        assert_eq!(verdicts[1].2, ResumeVerdict::Changed);
        // Longer than the file (or on a folder): the machine answers it 0
        // without asking, and the user is still told.
        assert_eq!(verdicts[2].2, ResumeVerdict::Shorter);
        assert!(matches!(verdicts[3].2, ResumeVerdict::Unreadable(_)));
        assert_eq!(verdicts[4].2, ResumeVerdict::Shorter);
        assert_eq!(prefixes.keys().copied().collect::<Vec<_>>(), [0]);
        assert_eq!(streaming.resumed_bytes(), 30);
        let resume = localstream_proto::transfer::Resume::decode(&body).unwrap();
        let offsets: Vec<(u32, u64)> = resume.files.iter().map(|f| (f.index, f.offset)).collect();
        assert_eq!(offsets, [(0, 30), (1, 0), (2, 0), (3, 0), (5, 0)]);
    }

    #[tokio::test]
    async fn a_record_from_the_receiver_before_our_last_one_is_a_violation() {
        let (mut wr, mut theirs) = socket().await;
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(vec![1u8; 10]).await.unwrap();
        // Its Status (or anything but an Alert) before our records are out.
        let (word_tx, mut word_rx) = oneshot::channel();
        word_tx.send(Ok((RecordType::Status, vec![]))).unwrap();
        let mut word = None;
        let pool = BufPool::default();
        write_records(&mut wr, &mut rx, &pool, &mut word_rx, &mut word, timing())
            .await
            .unwrap();
        assert!(
            matches!(
                &word,
                Some(Err(Error::Protocol(ProtoError::UnexpectedRecord {
                    got: RecordType::Status,
                    ..
                })))
            ),
            "{word:?}"
        );
        // And the record it overtook was not written.
        drop(wr);
        let mut got = vec![];
        theirs.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
    }

    #[tokio::test]
    async fn a_record_once_everything_is_written_is_the_receivers_word() {
        let (mut wr, mut theirs) = socket().await;
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(vec![7u8; 10]).await.unwrap();
        let (word_tx, mut word_rx) = oneshot::channel();
        // The receiver answers once it has our last record; the producer
        // has not quite finished then.
        let receiver = tokio::spawn(async move {
            let mut last = [0u8; 10];
            theirs.read_exact(&mut last).await.unwrap();
            word_tx.send(Ok((RecordType::Status, vec![1]))).unwrap();
            drop(tx);
        });
        let mut word = None;
        let pool = BufPool::default();
        write_records(&mut wr, &mut rx, &pool, &mut word_rx, &mut word, timing())
            .await
            .unwrap();
        receiver.await.unwrap();
        assert!(
            matches!(&word, Some(Ok((RecordType::Status, body))) if body == &[1]),
            "{word:?}"
        );
    }
}
