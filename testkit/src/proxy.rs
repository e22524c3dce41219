//! A fault-injecting TCP proxy for tests, on std threads.
//!
//! ```text
//!  client ──► proxy (127.0.0.1:port) ──► 127.0.0.1:target
//!               │  client->server: counted, cut / stalled / corrupted per Mode
//!               └─ server->client: counted, passed through (stopped by a stall or a cut)
//! ```
//!
//! Each accepted connection takes the proxy's [`Mode`] at the moment it is
//! accepted; [`Proxy::set_mode`] changes it for the connections that follow,
//! and [`Proxy::queue`] sets the modes of the next few connections, so one
//! proxy can break a transfer and then let its retry through. Offsets
//! and counts are in bytes of the client->server stream of one connection.
//!
//! - [`Mode::Pass`]: forward everything (half-closes are forwarded too).
//! - [`Mode::Cut`]: forward the first `after` bytes, then close both sides,
//!   with a FIN ([`Close::Fin`]) or abortively ([`Close::Rst`], see there).
//! - [`Mode::Stall`]: forward the first `after` bytes, then nothing more in
//!   either direction, with both sockets left open: only the peers' own
//!   timeouts (or [`Proxy::cut_all`]) end the connection.
//! - [`Mode::Corrupt`]: forward everything, with the byte at offset `at`
//!   XORed with `mask`.
//!
//! The per-connection byte counts ([`Proxy::conns`]) let a test prove how
//! much crossed the wire, e.g. that a resumed transfer sent only the rest.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a forwarding thread that waits (on a read, a write or a stall)
/// looks at its connection's state.
const TICK: Duration = Duration::from_millis(10);
/// Bytes read at once.
const BUF: usize = 64 * 1024;
/// The receive buffer of a connection that is to be cut or stalled.
const CUT_RCVBUF: usize = 256 * 1024;
/// How long an abortive close waits for the client to have unread bytes in
/// flight (which is what makes the kernel answer with a RST).
const RST_WAIT: Duration = Duration::from_secs(1);

/// How a cut closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// An orderly close: `shutdown(Both)` on both sockets, so each peer
    /// reads an end of stream (FIN).
    Fin,
    /// An abortive close: the proxy stops reading and closes its sockets
    /// with the client's bytes still unread, so the kernel sends the client
    /// a RST (its next read or write fails with "connection reset"). Without
    /// `SO_LINGER` 0 (unstable in std, `unsafe` is forbidden here) a socket
    /// with nothing unread still closes with a FIN: the server side usually
    /// sees a FIN, then a RST if it writes afterwards, and a client that sent
    /// nothing for a second after the cut gets a FIN too.
    Rst,
}

/// What the proxy does to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything, both ways.
    Pass,
    /// Forward `after` client->server bytes, then close both sides.
    Cut {
        /// Client bytes forwarded before the cut.
        after: u64,
        /// FIN or RST.
        close: Close,
    },
    /// Forward `after` client->server bytes, then stop forwarding in both
    /// directions while keeping both sockets open.
    Stall {
        /// Client bytes forwarded before the stall.
        after: u64,
    },
    /// Forward everything, flipping the bits of `mask` in the client->server
    /// byte at offset `at`.
    Corrupt {
        /// Offset in the client->server stream.
        at: u64,
        /// Bits to flip (non-zero).
        mask: u8,
    },
}

/// One connection as seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnStats {
    /// The mode it was accepted with.
    pub mode: Mode,
    /// Client->server bytes forwarded.
    pub up: u64,
    /// Server->client bytes forwarded.
    pub down: u64,
    /// The mode's fault happened (cut, stalled, or the byte was corrupted).
    pub tripped: bool,
    /// Both forwarding threads have finished and the sockets are closed.
    pub closed: bool,
}

/// Connection states.
const OPEN: u8 = 0;
const STALLED: u8 = 1;
const CUT_FIN: u8 = 2;
const CUT_RST: u8 = 3;
/// A peer's socket failed (it reset, or died): close the other side at once.
const ABORT: u8 = 4;

/// The state one connection's two threads share.
#[derive(Debug)]
struct Link {
    mode: Mode,
    up: AtomicU64,
    down: AtomicU64,
    state: AtomicU8,
    tripped: AtomicBool,
    /// Forwarding threads still running.
    running: AtomicU8,
}

impl Link {
    fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Moves to `to` unless the connection is already cut.
    fn set(&self, to: u8) {
        let _ = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s < CUT_FIN).then_some(to)
            });
    }

    fn stats(&self) -> ConnStats {
        ConnStats {
            mode: self.mode,
            up: self.up.load(Ordering::SeqCst),
            down: self.down.load(Ordering::SeqCst),
            tripped: self.tripped.load(Ordering::SeqCst),
            closed: self.running.load(Ordering::SeqCst) == 0,
        }
    }
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    mode: Mutex<Mode>,
    /// Modes for the next connections, before `mode`.
    queued: Mutex<std::collections::VecDeque<Mode>>,
    links: Mutex<Vec<Arc<Link>>>,
    accepted: AtomicUsize,
    stop: AtomicBool,
}

/// A fault-injecting proxy on `127.0.0.1`; stops (and closes every
/// connection with a FIN) when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:<target>` whose connections get `mode`.
    #[must_use]
    pub fn start(target: u16, mode: Mode) -> Proxy {
        Proxy::start_to(SocketAddr::from(([127, 0, 0, 1], target)), mode)
    }

    /// Starts a proxy to `target`.
    #[must_use]
    pub fn start_to(target: SocketAddr, mode: Mode) -> Proxy {
        if let Mode::Corrupt { mask, .. } = mode {
            assert_ne!(mask, 0, "a corruption mask must flip some bit");
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target,
            mode: Mutex::new(mode),
            queued: Mutex::new(std::collections::VecDeque::new()),
            links: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, &sh));
        Proxy { port, shared }
    }

    /// The mode of the connections accepted from now on.
    pub fn set_mode(&self, mode: Mode) {
        if let Mode::Corrupt { mask, .. } = mode {
            assert_ne!(mask, 0, "a corruption mask must flip some bit");
        }
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Modes for the next connections, one each, in order; after them the
    /// proxy's mode again. E.g. `queue(&[cut])` on a pass-through proxy
    /// breaks the next connection only, whenever it comes (a retry after it
    /// gets through), with no race against the test.
    pub fn queue(&self, modes: &[Mode]) {
        for &m in modes {
            if let Mode::Corrupt { mask, .. } = m {
                assert_ne!(mask, 0, "a corruption mask must flip some bit");
            }
        }
        self.shared.queued.lock().unwrap().extend(modes);
    }

    /// Connections accepted so far (including any whose upstream connect failed).
    #[must_use]
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every connection relayed so far, in the order they were accepted.
    #[must_use]
    pub fn conns(&self) -> Vec<ConnStats> {
        let links = self.shared.links.lock().unwrap();
        links.iter().map(|l| l.stats()).collect()
    }

    /// The most recent connection, if any.
    #[must_use]
    pub fn last(&self) -> Option<ConnStats> {
        self.conns().pop()
    }

    /// Client->server bytes forwarded, over all connections.
    #[must_use]
    pub fn up(&self) -> u64 {
        self.conns().iter().map(|c| c.up).sum()
    }

    /// Server->client bytes forwarded, over all connections.
    #[must_use]
    pub fn down(&self) -> u64 {
        self.conns().iter().map(|c| c.down).sum()
    }

    /// Cuts every open connection (a stalled one included), both sides.
    pub fn cut_all(&self, close: Close) {
        let to = match close {
            Close::Fin => CUT_FIN,
            Close::Rst => CUT_RST,
        };
        for l in self.shared.links.lock().unwrap().iter() {
            l.set(to);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut_all(Close::Fin);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(shared.target) else {
            // The client sees its connection closed, as with a dead server.
            continue;
        };
        let queued = shared.queued.lock().unwrap().pop_front();
        let mode = queued.unwrap_or_else(|| *shared.mode.lock().unwrap());
        if matches!(mode, Mode::Cut { .. } | Mode::Stall { .. }) {
            // What the client can still write after the cut must stay well
            // short of the rest of its stream, whatever the machine's
            // buffer limits (tcp_rmem's maximum is 32 MiB on some: a
            // 24 MiB send cut at 8 MiB was then all written before the
            // cut reached it). A fixed buffer does not grow.
            let _ = socket2::SockRef::from(&client).set_recv_buffer_size(CUT_RCVBUF);
        }
        let link = Arc::new(Link {
            mode,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            state: AtomicU8::new(OPEN),
            tripped: AtomicBool::new(false),
            running: AtomicU8::new(2),
        });
        shared.links.lock().unwrap().push(link.clone());
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
            // Timeouts only so that a waiting thread notices a cut or a stop.
            s.set_read_timeout(Some(TICK)).unwrap();
            s.set_write_timeout(Some(TICK)).unwrap();
        }
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (l2, sh2) = (link.clone(), shared.clone());
        std::thread::spawn(move || {
            upstream(&client, &server, &link, &sh2);
            finish(&client, &server, &link);
        });
        let sh3 = shared.clone();
        std::thread::spawn(move || {
            downstream(&s2, &c2, &l2, &sh3);
            finish(&c2, &s2, &l2);
        });
    }
}

/// What a read or write that may time out came to.
enum Io {
    Done(usize),
    /// End of stream.
    Eof,
    /// The connection is cut, or the proxy stops.
    Stop,
    /// The socket failed.
    Failed,
}

fn stopping(link: &Link, shared: &Shared) -> bool {
    if shared.stop.load(Ordering::SeqCst) {
        link.set(CUT_FIN);
    }
    link.state() >= CUT_FIN
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Reads into `buf`, waiting while the connection is stalled.
fn read(from: &TcpStream, buf: &mut [u8], link: &Link, shared: &Shared) -> Io {
    loop {
        if stopping(link, shared) {
            return Io::Stop;
        }
        if link.state() == STALLED {
            std::thread::sleep(TICK);
            continue;
        }
        match (&mut &*from).read(buf) {
            Ok(0) => return Io::Eof,
            Ok(n) => return Io::Done(n),
            Err(e) if transient(&e) => {}
            Err(_) => return Io::Failed,
        }
    }
}

/// Writes all of `buf`, unless the connection is cut meanwhile.
fn write_all(to: &TcpStream, mut buf: &[u8], link: &Link, shared: &Shared) -> Io {
    let len = buf.len();
    while !buf.is_empty() {
        if stopping(link, shared) {
            return Io::Stop;
        }
        match (&mut &*to).write(buf) {
            Ok(0) => return Io::Failed,
            Ok(n) => buf = &buf[n..],
            Err(e) if transient(&e) => {}
            Err(_) => return Io::Failed,
        }
    }
    Io::Done(len)
}

/// What the mode does to a chunk just read: bytes to forward and the fault
/// that happens once they are forwarded.
fn apply(mode: Mode, done: u64, chunk: &mut [u8]) -> (usize, Option<u8>, bool) {
    let n = chunk.len() as u64;
    let upto = |after: u64| after.saturating_sub(done).min(n) as usize;
    match mode {
        Mode::Pass => (chunk.len(), None, false),
        Mode::Cut { after, close } if done + n >= after => {
            let to = match close {
                Close::Fin => CUT_FIN,
                Close::Rst => CUT_RST,
            };
            (upto(after), Some(to), true)
        }
        Mode::Stall { after } if done + n >= after => (upto(after), Some(STALLED), true),
        Mode::Corrupt { at, mask } if (done..done + n).contains(&at) => {
            chunk[(at - done) as usize] ^= mask;
            (chunk.len(), None, true)
        }
        Mode::Cut { .. } | Mode::Stall { .. } | Mode::Corrupt { .. } => (chunk.len(), None, false),
    }
}

/// Client -> server, through the mode.
fn upstream(client: &TcpStream, server: &TcpStream, link: &Link, shared: &Shared) {
    // A cut or stall at offset 0 happens before anything is read.
    match link.mode {
        Mode::Cut { after: 0, close } => {
            link.tripped.store(true, Ordering::SeqCst);
            link.set(if close == Close::Fin {
                CUT_FIN
            } else {
                CUT_RST
            });
        }
        Mode::Stall { after: 0 } => {
            link.tripped.store(true, Ordering::SeqCst);
            link.set(STALLED);
        }
        _ => {}
    }
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match read(client, &mut buf, link, shared) {
            Io::Done(n) => n,
            Io::Eof => {
                // The client is done sending: pass the half-close on.
                let _ = server.shutdown(Shutdown::Write);
                return;
            }
            Io::Stop => return,
            Io::Failed => {
                link.set(ABORT);
                return;
            }
        };
        let done = link.up.load(Ordering::SeqCst);
        let (forward, fault, tripped) = apply(link.mode, done, &mut buf[..n]);
        match write_all(server, &buf[..forward], link, shared) {
            Io::Done(k) => {
                link.up.fetch_add(k as u64, Ordering::SeqCst);
            }
            // The server is gone, but what it sent before (an alert saying
            // why, say) still reaches the client: the downstream thread
            // forwards it and then ends the connection as the server did.
            Io::Stop | Io::Eof | Io::Failed => return,
        }
        if tripped {
            link.tripped.store(true, Ordering::SeqCst);
        }
        if let Some(to) = fault {
            link.set(to);
        }
    }
}

/// Server -> client, as is.
fn downstream(server: &TcpStream, client: &TcpStream, link: &Link, shared: &Shared) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match read(server, &mut buf, link, shared) {
            Io::Done(n) => n,
            Io::Eof => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Io::Stop => return,
            Io::Failed => {
                link.set(ABORT);
                return;
            }
        };
        match write_all(client, &buf[..n], link, shared) {
            Io::Done(k) => {
                link.down.fetch_add(k as u64, Ordering::SeqCst);
            }
            Io::Stop => return,
            Io::Eof | Io::Failed => {
                link.set(ABORT);
                return;
            }
        }
    }
}

/// Ends one forwarding thread: on a FIN cut, shuts both sockets down; on a
/// RST cut, waits (at most [`RST_WAIT`]) until the client has bytes in
/// flight, so that dropping this thread's handles closes with them unread.
fn finish(client: &TcpStream, server: &TcpStream, link: &Link) {
    match link.state() {
        CUT_FIN => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        CUT_RST => {
            // Peeking never consumes: the bytes stay unread.
            let deadline = Instant::now() + RST_WAIT;
            let mut one = [0u8; 1];
            while Instant::now() < deadline {
                match client.peek(&mut one) {
                    Err(e) if transient(&e) => {}
                    _ => break,
                }
            }
        }
        _ => {}
    }
    link.running.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, channel};

    /// What one connection sent the sink, and how its stream ended.
    type Sunk = (Vec<u8>, std::io::Result<()>);

    /// A server that keeps everything each connection sends (until EOF or
    /// an error) and reports it.
    fn sink() -> (u16, Receiver<Sunk>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut got = vec![];
                    let r = s.read_to_end(&mut got).map(|_| ());
                    let _ = s.write_all(b"bye");
                    let _ = tx.send((got, r));
                });
            }
        });
        (port, rx)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn pass_through_counts_and_forwards_half_closes() {
        let (port, rx) = sink();
        let p = Proxy::start(port, Mode::Pass);
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        let sent = data(300_000);
        c.write_all(&sent).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (got, r) = rx.recv_timeout(WAIT).unwrap();
        assert!(r.is_ok());
        assert_eq!(got, sent);
        let mut back = vec![];
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"bye");
        assert!(crate::poll_until(WAIT, TICK, || p
            .last()
            .is_some_and(|s| s.closed)));
        let s = p.last().unwrap();
        assert_eq!((s.up, s.down, s.tripped), (300_000, 3, false));
        assert_eq!(p.accepted(), 1);
    }

    #[test]
    fn cut_with_fin_forwards_exactly_n_bytes_and_ends_both_sides() {
        let (port, rx) = sink();
        let p = Proxy::start(
            port,
            Mode::Cut {
                after: 100_000,
                close: Close::Fin,
            },
        );
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        let sent = data(300_000);
        // The writes may fail once the proxy closes.
        let _ = c.write_all(&sent);
        let (got, _) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(got, sent[..100_000]);
        let s = p.last().unwrap();
        assert!(s.tripped);
        assert_eq!(s.up, 100_000);
        // The client reads an end of stream (or a reset, when the
        // unread rest of its bytes arrive after the close).
        let mut rest = vec![];
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "nothing from the server passes the cut");
    }

    #[test]
    fn cut_with_rst_resets_the_client() {
        let (port, rx) = sink();
        let p = Proxy::start(
            port,
            Mode::Cut {
                after: 1000,
                close: Close::Rst,
            },
        );
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        c.write_all(&data(1000)).unwrap();
        assert!(crate::poll_until(WAIT, TICK, || p
            .last()
            .is_some_and(|s| s.tripped)));
        // Bytes in flight after the cut: the proxy closes with them unread.
        let _ = c.write_all(&data(2000));
        let (got, _) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(got.len(), 1000);
        assert!(crate::poll_until(WAIT, TICK, || p
            .last()
            .is_some_and(|s| s.closed)));
        let mut buf = [0u8; 16];
        let err = loop {
            match c.read(&mut buf) {
                Ok(0) => panic!("a FIN, not a RST"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    }

    #[test]
    fn stall_keeps_the_connection_open_until_cut() {
        let (port, rx) = sink();
        let p = Proxy::start(port, Mode::Stall { after: 5000 });
        let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        c.write_all(&data(20_000)).unwrap();
        assert!(crate::poll_until(WAIT, TICK, || p
            .last()
            .is_some_and(|s| s.tripped)));
        // Stalled: the client neither gets anything nor an end of stream.
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 16];
        let e = c.read(&mut buf).unwrap_err();
        assert!(transient(&e), "{e}");
        assert!(rx.try_recv().is_err(), "the server saw an end");
        assert!(!p.last().unwrap().closed);
        p.cut_all(Close::Fin);
        let (got, _) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(got, data(20_000)[..5000]);
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = vec![];
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }

    #[test]
    fn corrupt_flips_one_byte_and_modes_change_between_connections() {
        let (port, rx) = sink();
        let p = Proxy::start(
            port,
            Mode::Corrupt {
                at: 70_000,
                mask: 0x80,
            },
        );
        let sent = data(200_000);
        for corrupt in [true, false] {
            let mut c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
            c.write_all(&sent).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let (got, _) = rx.recv_timeout(WAIT).unwrap();
            let mut want = sent.clone();
            if corrupt {
                want[70_000] ^= 0x80;
                p.set_mode(Mode::Pass);
            }
            assert_eq!(got, want);
        }
        let conns = p.conns();
        assert_eq!(conns.len(), 2);
        assert!(conns[0].tripped && !conns[1].tripped);
        assert_eq!(conns[1].mode, Mode::Pass);
    }

    #[test]
    fn queued_modes_come_first_then_the_proxys_mode() {
        let (port, _rx) = sink();
        let p = Proxy::start(port, Mode::Pass);
        let stall = Mode::Stall { after: 1 };
        let cut = Mode::Cut {
            after: 2,
            close: Close::Fin,
        };
        p.queue(&[stall, cut]);
        let _held: Vec<TcpStream> = (0..3)
            .map(|i| {
                let c = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
                assert!(crate::poll_until(WAIT, TICK, || p.conns().len() == i + 1));
                c
            })
            .collect();
        let modes: Vec<Mode> = p.conns().iter().map(|c| c.mode).collect();
        assert_eq!(modes, [stall, cut, Mode::Pass]);
    }
}
