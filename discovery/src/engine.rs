//! The mDNS engine: one thread that owns the mDNS sockets (UDP 5353, IPv4 and
//! IPv6), answers queries for the announced service, browses, and keeps the
//! browse [`Cache`]. The handle talks to it over a command channel.
//!
//! ```text
//!   Engine (handle) ── Command ──► thread "mdns": poll(v4 socket, v6 socket, waker, next timer)
//!                                   │ query    ─► Service::answer ─► multicast (rate-limited, delayed)
//!                                   │                            └─► unicast to a one-shot querier
//!                                   │ response ─► Cache::apply (only while browsing) ─► Event
//!                                   │ timers   ─► announcements, goodbyes, browse queries,
//!                                   │             refresh questions, expiry, interface check
//!                                   └ events   ─► Browser (bounded; a backlog when it is full)
//! ```
//!
//! What it bounds: packets are read in batches of [`READ_BATCH`], so a flood
//! never starves commands or timers; a packet that is not from an address on
//! one of the chosen links is dropped unread; nothing from a response is kept
//! unless a browse is running, and then only what [`Cache`] keeps; multicast
//! answers go out at most once a second per link and family, unicast ones at
//! most [`UNICAST_PER_SEC`] a second.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, trace};

use crate::cache::{Cache, Origin};
use crate::responder::{Reply, Service};
use crate::wire::{
    self, Ask, GROUP_V4, GROUP_V6, MAX_PACKET, MDNS_PORT, Message, Question, Record,
};
use crate::{Error, Event, Result, SERVICE_TYPE, normalize_instance};

/// Packets read from one socket before commands and timers get a turn.
const READ_BATCH: usize = 64;
/// Unicast (one-shot) answers a second, after a burst of as many.
const UNICAST_PER_SEC: f64 = 16.0;
/// Announcements on start and after an address change (RFC 6762 section 8.3).
const ANNOUNCE_AT: [Duration; 2] = [Duration::ZERO, Duration::from_secs(1)];
/// The goodbye is sent twice, this far apart.
const GOODBYE_REPEAT: Duration = Duration::from_millis(120);
/// Browse queries: first right away, then at doubling intervals up to this.
const QUERY_MAX_INTERVAL: Duration = Duration::from_secs(60);
/// How often records are checked for expiry and refresh.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// How often the interfaces' addresses are checked.
const LINK_CHECK: Duration = Duration::from_secs(5);
/// Goodbyes a second passed on for instances the cache does not hold.
const STRANGERS_PER_SEC: f64 = 16.0;
/// Events a slow browser may owe before the oldest names are dropped.
const MAX_BACKLOG: usize = 1024;

mod net;

use net::{Family, addresses, families, multicast, open_v4, open_v6, send_to};
pub(crate) use net::{Link, links};

const V4: Token = Token(0);
const V6: Token = Token(1);
const WAKE: Token = Token(2);

enum Command {
    Announce {
        service: Service,
        only: Option<IpAddr>,
        ipv4_only: bool,
    },
    Browse(flume::Sender<Event>),
    /// Goodbye twice, then confirm.
    Withdraw(flume::Sender<()>),
    /// A goodbye if still announced, then the thread ends (and confirms).
    Stop(Option<flume::Sender<()>>),
}

/// The handle: commands in, the thread does the rest.
pub(crate) struct Engine {
    commands: flume::Sender<Command>,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the sockets on `links` and starts the thread.
    ///
    /// # Errors
    /// [`Error::Socket`] when port 5353 cannot be opened for a family the
    /// links need, [`Error::Thread`] when the thread cannot start.
    pub(crate) fn start(names: Vec<String>, links: Vec<Link>) -> Result<Engine> {
        let poll = Poll::new().map_err(Error::Socket)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(Error::Socket)?);
        let mut v4 = if links.iter().any(|l| !l.v4.is_empty()) {
            Some(open_v4().map_err(Error::Socket)?)
        } else {
            None
        };
        // IPv6 is best effort: a host may have it switched off.
        let mut v6 = if links.iter().any(|l| !l.v6.is_empty()) {
            open_v6()
                .map_err(|e| debug!(error = %e, "no IPv6 mDNS socket; IPv4 only"))
                .ok()
        } else {
            None
        };
        if let Some(s) = &mut v4 {
            poll.registry()
                .register(s, V4, Interest::READABLE)
                .map_err(Error::Socket)?;
        }
        if let Some(s) = &mut v6 {
            poll.registry()
                .register(s, V6, Interest::READABLE)
                .map_err(Error::Socket)?;
        }
        let (commands, rx) = flume::unbounded();
        let now = Instant::now();
        let mut daemon = Daemon {
            poll,
            v4,
            v6,
            names,
            links: vec![],
            commands: rx,
            announced: None,
            goodbyes: vec![],
            unicast: Bucket::new(UNICAST_PER_SEC, now),
            browse: None,
            next_link_check: now + LINK_CHECK,
            next_housekeeping: now,
            seed: seed(),
        };
        daemon.set_links(links);
        std::thread::Builder::new()
            .name("mdns".into())
            .spawn(move || daemon.run())
            .map_err(Error::Thread)?;
        Ok(Engine { commands, waker })
    }

    fn send(&self, c: Command) -> Result<()> {
        self.commands.send(c).map_err(|_| Error::Stopped)?;
        // A failed wake-up still leaves the command queued for the next poll.
        let _ = self.waker.wake();
        Ok(())
    }

    pub(crate) fn announce(
        &self,
        service: Service,
        only: Option<IpAddr>,
        ipv4_only: bool,
    ) -> Result<()> {
        self.send(Command::Announce {
            service,
            only,
            ipv4_only,
        })
    }

    pub(crate) fn browse(&self, tx: flume::Sender<Event>) -> Result<()> {
        self.send(Command::Browse(tx))
    }

    /// Sends the goodbyes; whether they went out within `wait`.
    pub(crate) fn withdraw(&self, wait: Duration) -> bool {
        let (tx, rx) = flume::bounded(1);
        self.send(Command::Withdraw(tx)).is_ok() && rx.recv_timeout(wait).is_ok()
    }

    /// Stops the thread; whether it confirmed within `wait`.
    pub(crate) fn stop(&self, wait: Duration) -> bool {
        let (tx, rx) = flume::bounded(1);
        self.send(Command::Stop(Some(tx))).is_ok() && rx.recv_timeout(wait).is_ok()
    }
}

impl Drop for Engine {
    /// Stops the thread (after a goodbye, if still announced) without waiting.
    fn drop(&mut self) {
        let _ = self.send(Command::Stop(None));
    }
}

/// A token bucket: `rate` a second, a burst of as many.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The announced service and its schedule.
struct Announced {
    service: Service,
    only: Option<IpAddr>,
    ipv4_only: bool,
    /// Announcements still to send.
    due: Vec<Instant>,
    /// When each link and family last got a multicast answer.
    last: HashMap<(u32, Family), Instant>,
    /// Multicast answers waiting for their time, per link and family.
    pending: HashMap<(u32, Family), (Instant, Reply)>,
}

impl Announced {
    /// Whether the service is announced and answered over `family`. An
    /// IPv4-only service (a listener bound to 0.0.0.0, whose records carry
    /// IPv4 addresses only) keeps to IPv4, as it did on mdns-sd.
    fn serves(&self, family: Family) -> bool {
        !self.ipv4_only || family == Family::V4
    }
}

/// Goodbye packets (link index, family, bytes) to repeat at a time, and
/// whom to tell once they went out.
type Goodbye = (
    Instant,
    Vec<(u32, Family, Vec<u8>)>,
    Option<flume::Sender<()>>,
);

/// A browse in progress.
struct Browse {
    tx: flume::Sender<Event>,
    cache: Cache,
    /// Instances whose news did not fit in the channel (each once).
    backlog: VecDeque<String>,
    queued: HashSet<String>,
    /// Goodbyes passed on for instances the cache does not hold.
    strangers: Bucket,
    next_query: Instant,
    interval: Duration,
    next_questions: Instant,
}

struct Daemon {
    poll: Poll,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    names: Vec<String>,
    links: Vec<Link>,
    commands: flume::Receiver<Command>,
    announced: Option<Announced>,
    /// Goodbye packets still to repeat, with whom to tell once sent.
    goodbyes: Vec<Goodbye>,
    unicast: Bucket,
    browse: Option<Browse>,
    next_link_check: Instant,
    next_housekeeping: Instant,
    seed: u64,
}

impl Daemon {
    fn run(mut self) {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; MAX_PACKET + 1];
        let (mut more_v4, mut more_v6) = (false, false);
        loop {
            let now = Instant::now();
            let timeout = if more_v4 || more_v6 {
                Duration::ZERO
            } else {
                self.next_deadline(now).saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                debug!(error = %e, "mDNS poll failed");
            }
            for ev in &events {
                match ev.token() {
                    V4 => more_v4 = true,
                    V6 => more_v6 = true,
                    _ => {}
                }
            }
            if more_v4 {
                more_v4 = self.read(Family::V4, &mut buf);
            }
            if more_v6 {
                more_v6 = self.read(Family::V6, &mut buf);
            }
            while let Ok(c) = self.commands.try_recv() {
                if let Command::Stop(reply) = c {
                    self.stop(reply);
                    return;
                }
                self.command(c);
            }
            if self.commands.is_disconnected() && self.commands.is_empty() {
                // The handle is gone without a word (it always sends Stop).
                self.stop(None);
                return;
            }
            self.timers(Instant::now());
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut at = now + Duration::from_secs(1);
        let mut consider = |t: Instant| at = at.min(t);
        consider(self.next_link_check);
        if let Some(a) = &self.announced {
            a.due.iter().copied().for_each(&mut consider);
            a.pending.values().for_each(|(t, _)| consider(*t));
        }
        self.goodbyes.iter().for_each(|(t, _, _)| consider(*t));
        if let Some(b) = &self.browse {
            consider(b.next_query);
            consider(b.next_questions);
            consider(self.next_housekeeping);
        }
        at
    }

    /// Reads up to a batch of packets; whether more may be waiting.
    fn read(&mut self, family: Family, buf: &mut [u8]) -> bool {
        for _ in 0..READ_BATCH {
            let got = match family {
                Family::V4 => self.v4.as_ref().map(|s| s.recv_from(buf)),
                Family::V6 => self.v6.as_ref().map(|s| s.recv_from(buf)),
            };
            match got {
                Some(Ok((n, from))) if n <= MAX_PACKET => self.packet(family, &buf[..n], from),
                // Over-sized (cut short by the buffer): never decoded.
                Some(Ok(_)) => {}
                Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Some(Err(e)) => {
                    trace!(error = %e, "mDNS read failed");
                    return false;
                }
                None => return false,
            }
        }
        true
    }

    fn packet(&mut self, family: Family, data: &[u8], from: SocketAddr) {
        // Only packets from an address on one of our links (RFC 6762 section 11).
        let Some(link) = self.links.iter().find(|l| l.holds(&from)) else {
            trace!(%from, "mDNS packet from off the links dropped");
            return;
        };
        let index = link.index;
        // The QR bit: what nobody here would use is not even parsed.
        let response = data.get(2).is_some_and(|b| b & 0x80 != 0);
        if (response && self.browse.is_none()) || (!response && self.announced.is_none()) {
            return;
        }
        let Some(msg) = wire::parse(data) else {
            trace!(%from, len = data.len(), "malformed mDNS packet dropped");
            return;
        };
        trace!(%from, response = msg.response, questions = msg.questions.len(), records = msg.records.len(), "mDNS packet");
        let now = Instant::now();
        if msg.response {
            if from.port() != MDNS_PORT {
                return;
            }
            if let Some(b) = &mut self.browse {
                let origin = Origin {
                    ip: from.ip(),
                    scope: index,
                };
                let events = b.cache.apply(&msg.records, origin, now);
                // Best effort: never queued, so forged goodbyes cannot crowd
                // out real news.
                for instance in b.cache.strangers() {
                    if b.strangers.take(now) {
                        let _ = b.tx.try_send(Event::Removed {
                            instance: instance.clone(),
                        });
                    }
                }
                self.deliver(events);
            }
        } else {
            self.query(family, index, &msg, from, now);
        }
    }

    /// Answers a query for our service, if any.
    fn query(&mut self, family: Family, index: u32, msg: &Message, from: SocketAddr, now: Instant) {
        let Some(link) = self.links.iter().find(|l| l.index == index) else {
            return;
        };
        let Some(a) = &mut self.announced else {
            return;
        };
        if !a.serves(family) {
            return;
        }
        let addrs = addresses(link, a.only, a.ipv4_only);
        if addrs.is_empty() {
            return;
        }
        let Some(reply) = a.service.answer(msg, &addrs) else {
            return;
        };
        if from.port() != MDNS_PORT {
            // A one-shot query: answered at once, by unicast (section 6.7).
            if !self.unicast.take(now) {
                return;
            }
            let questions: Vec<Question> = msg.questions.clone();
            if let Some(bytes) = wire::response(
                &reply.answers,
                &reply.additional,
                Some((msg.id, &questions)),
            ) {
                send_to(self.socket(family), &bytes, from);
            }
            return;
        }
        let key = (index, family);
        let delay = if reply.shared {
            // 20-120 ms, so that answers from several responders spread out.
            self.seed = xorshift(self.seed);
            Duration::from_millis(20 + self.seed % 101)
        } else {
            Duration::ZERO
        };
        let earliest = a
            .last
            .get(&key)
            .map_or(now, |t| *t + Duration::from_secs(1));
        let at = (now + delay).max(earliest);
        match a.pending.get_mut(&key) {
            Some((_, pending)) => {
                for r in reply.answers {
                    if !pending.answers.contains(&r) {
                        pending.answers.push(r);
                    }
                }
                for r in reply.additional {
                    if !pending.additional.contains(&r) && !pending.answers.contains(&r) {
                        pending.additional.push(r);
                    }
                }
            }
            None => {
                a.pending.insert(key, (at, reply));
            }
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Announce {
                service,
                only,
                ipv4_only,
            } => {
                debug!(instance = %service.instance, port = service.port, "announcing");
                self.announced = Some(Announced {
                    service,
                    only,
                    ipv4_only,
                    due: ANNOUNCE_AT.iter().map(|d| now + *d).collect(),
                    last: HashMap::new(),
                    pending: HashMap::new(),
                });
                self.timers(now);
            }
            Command::Browse(tx) => {
                let mut b = Browse {
                    tx,
                    cache: Cache::new(now),
                    backlog: VecDeque::new(),
                    queued: HashSet::new(),
                    strangers: Bucket::new(STRANGERS_PER_SEC, now),
                    next_query: now,
                    interval: Duration::from_secs(1),
                    next_questions: now + Duration::from_secs(1),
                };
                // What an earlier browse learnt is news for this one.
                if let Some(old) = self.browse.take() {
                    b.cache = old.cache;
                    for name in b.cache.resolved() {
                        b.queued.insert(name.clone());
                        b.backlog.push_back(name);
                    }
                }
                self.browse = Some(b);
                self.timers(now);
            }
            Command::Withdraw(reply) => {
                let packets = self.goodbye_packets();
                self.send_all(&packets);
                self.goodbyes
                    .push((now + GOODBYE_REPEAT, packets, Some(reply)));
            }
            Command::Stop(_) => {}
        }
    }

    fn stop(&mut self, reply: Option<flume::Sender<()>>) {
        let packets = self.goodbye_packets();
        self.send_all(&packets);
        for (_, packets, waiting) in std::mem::take(&mut self.goodbyes) {
            // Stopping before the repeat: send it now rather than never.
            self.send_all(&packets);
            if let Some(w) = waiting {
                let _ = w.send(());
            }
        }
        if let Some(r) = reply {
            let _ = r.send(());
        }
        debug!("mDNS engine stopped");
    }

    /// Goodbye packets for the announced service (which is then withdrawn).
    fn goodbye_packets(&mut self) -> Vec<(u32, Family, Vec<u8>)> {
        let Some(a) = self.announced.take() else {
            return vec![];
        };
        let mut out = vec![];
        for link in &self.links {
            let addrs = addresses(link, a.only, a.ipv4_only);
            if addrs.is_empty() {
                continue;
            }
            let records = a.service.announcement(&addrs, true);
            if let Some(bytes) = wire::response(&records, &[], None) {
                let all = families(self.v4.is_some(), self.v6.is_some(), link);
                for family in all.into_iter().filter(|f| a.serves(*f)) {
                    out.push((link.index, family, bytes.clone()));
                }
            }
        }
        out
    }

    fn send_all(&self, packets: &[(u32, Family, Vec<u8>)]) {
        for (index, family, bytes) in packets {
            multicast(self.socket(*family), &self.links, *index, *family, bytes);
        }
    }

    fn socket(&self, family: Family) -> Option<&UdpSocket> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn timers(&mut self, now: Instant) {
        self.announce_due(now);
        self.replies_due(now);
        self.goodbyes_due(now);
        self.browse_due(now);
        if now >= self.next_link_check {
            self.next_link_check = now + LINK_CHECK;
            self.check_links();
        }
    }

    fn announce_due(&mut self, now: Instant) {
        let Some(a) = &mut self.announced else { return };
        if !a.due.iter().any(|t| *t <= now) {
            return;
        }
        a.due.retain(|t| *t > now);
        let mut sent = vec![];
        for link in &self.links {
            let addrs = addresses(link, a.only, a.ipv4_only);
            if addrs.is_empty() {
                continue;
            }
            let Some(bytes) = wire::response(&a.service.announcement(&addrs, false), &[], None)
            else {
                continue;
            };
            let all = families(self.v4.is_some(), self.v6.is_some(), link);
            for family in all.into_iter().filter(|f| a.serves(*f)) {
                let socket = match family {
                    Family::V4 => self.v4.as_ref(),
                    Family::V6 => self.v6.as_ref(),
                };
                multicast(socket, &self.links, link.index, family, &bytes);
                sent.push((link.index, family));
            }
        }
        for key in sent {
            a.last.insert(key, now);
            // The announcement answered whatever was waiting.
            a.pending.remove(&key);
        }
    }

    fn replies_due(&mut self, now: Instant) {
        let Some(a) = &mut self.announced else { return };
        let due: Vec<(u32, Family)> = a
            .pending
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some((_, reply)) = a.pending.remove(&key) else {
                continue;
            };
            if let Some(bytes) = wire::response(&reply.answers, &reply.additional, None) {
                let socket = match key.1 {
                    Family::V4 => self.v4.as_ref(),
                    Family::V6 => self.v6.as_ref(),
                };
                multicast(socket, &self.links, key.0, key.1, &bytes);
                a.last.insert(key, now);
            }
        }
    }

    fn goodbyes_due(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.goodbyes)
            .into_iter()
            .partition(|(t, _, _)| *t <= now);
        self.goodbyes = later;
        for (_, packets, waiting) in due {
            self.send_all(&packets);
            if let Some(w) = waiting {
                let _ = w.send(());
            }
        }
    }

    fn browse_due(&mut self, now: Instant) {
        let Some(b) = &mut self.browse else { return };
        let mut questions = vec![];
        let mut known = vec![];
        if now >= b.next_query {
            questions.push(Question {
                name: normalize_instance(SERVICE_TYPE),
                ask: Ask::Ptr,
            });
            known = b.cache.known(now);
            b.next_query = now + b.interval;
            b.interval = (b.interval * 2).min(QUERY_MAX_INTERVAL);
        }
        if now >= b.next_questions {
            b.next_questions = now + Duration::from_secs(1);
            questions.extend(b.cache.wanted(now));
        }
        let mut events = vec![];
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            events = b.cache.expire(now);
        }
        if !questions.is_empty() {
            self.send_query(&questions, &known);
        }
        self.deliver(events);
        self.flush_backlog();
    }

    fn send_query(&self, questions: &[Question], known: &[Record]) {
        let Some(bytes) = wire::query(questions, known) else {
            return;
        };
        for link in &self.links {
            for family in families(self.v4.is_some(), self.v6.is_some(), link) {
                multicast(self.socket(family), &self.links, link.index, family, &bytes);
            }
        }
    }

    /// Hands events to the browser; what does not fit waits in the backlog,
    /// as instance names whose current state is sent later.
    fn deliver(&mut self, events: Vec<Event>) {
        let Some(b) = &mut self.browse else { return };
        for ev in events {
            if b.backlog.is_empty() {
                match b.tx.try_send(ev) {
                    Ok(()) => continue,
                    Err(flume::TrySendError::Disconnected(_)) => {
                        debug!("browser gone; browse stopped");
                        self.browse = None;
                        return;
                    }
                    Err(flume::TrySendError::Full(ev)) => queue(b, instance_of(&ev)),
                }
            } else {
                queue(b, instance_of(&ev));
            }
        }
    }

    fn flush_backlog(&mut self) {
        let Some(b) = &mut self.browse else { return };
        while let Some(name) = b.backlog.front() {
            match b.tx.try_send(b.cache.current(name)) {
                Ok(()) => {
                    b.queued.remove(name);
                    b.backlog.pop_front();
                }
                Err(flume::TrySendError::Full(_)) => return,
                Err(flume::TrySendError::Disconnected(_)) => {
                    self.browse = None;
                    return;
                }
            }
        }
    }

    /// Re-reads the interfaces: new addresses join the groups and are
    /// announced.
    fn check_links(&mut self) {
        let Ok(all) = crate::interfaces::list() else {
            return;
        };
        let now = links(&all, &self.names);
        if now == self.links {
            return;
        }
        debug!(links = ?now, "interface addresses changed");
        self.set_links(now);
        if let Some(a) = &mut self.announced {
            let t = Instant::now();
            a.due = ANNOUNCE_AT.iter().map(|d| t + *d).collect();
            a.last.clear();
        }
    }

    /// Uses `links`, joining the mDNS groups on them.
    fn set_links(&mut self, links: Vec<Link>) {
        for link in &links {
            if let Some(s) = &self.v4 {
                for (ip, _) in &link.v4 {
                    if let Err(e) = s.join_multicast_v4(&GROUP_V4, ip) {
                        trace!(%ip, error = %e, "joining 224.0.0.251");
                    }
                }
            }
            if let Some(s) = &self.v6
                && !link.v6.is_empty()
                && let Err(e) = s.join_multicast_v6(&GROUP_V6, link.index)
            {
                trace!(index = link.index, error = %e, "joining ff02::fb");
            }
        }
        self.links = links;
    }
}

fn queue(b: &mut Browse, name: String) {
    if b.queued.contains(&name) {
        return;
    }
    if b.backlog.len() >= MAX_BACKLOG {
        debug!(%name, "browser backlog full; dropping news");
        return;
    }
    b.queued.insert(name.clone());
    b.backlog.push_back(name);
}

fn instance_of(ev: &Event) -> String {
    match ev {
        Event::Resolved(s) => s.instance.clone(),
        Event::Removed { instance } | Event::Rejected { instance, .. } => instance.clone(),
    }
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()) | 1
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill() {
        let t = Instant::now();
        let mut b = Bucket::new(2.0, t);
        assert!(b.take(t) && b.take(t) && !b.take(t));
        assert!(b.take(t + Duration::from_millis(600)));
        assert!(!b.take(t + Duration::from_millis(600)));
    }
}
