//! Helpers for tests that run the real `localstream` binary on 127.0.0.1.
//!
//! Every node gets its own home (a copy of a pre-generated identity, so tests
//! do not each pay for RSA key generation), every listener binds port 0 and
//! reports its port on stdout, and nothing waits by sleeping: helpers poll
//! with a deadline and fail with everything the processes printed.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use localstream_testkit::Next;
pub use localstream_testkit::{IdInfo, assert_content, random_bytes, text};

/// How long any single step may take before a test fails (generous for
/// loaded CI machines; passing tests never wait this long).
pub const STEP: Duration = Duration::from_secs(30);
/// Poll interval for conditions that have no event to wait on.
const POLL: Duration = Duration::from_millis(5);

/// Whether `word` stands alone in `s` (between characters that are not
/// letters or digits): a status code like 406 in a sentence, not the digits
/// of a port number or a hex id that happen to contain it.
pub fn has_word(s: &str, word: &str) -> bool {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == word)
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_localstream")
}

/// A `localstream` command with no home yet, no progress bars, stdin closed.
pub fn localstream() -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--no-progress")
        .env_remove("LOCALSTREAM_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Which pre-generated identity a node starts from.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    Sender,
    Receiver,
    /// A third identity (another node id and key), for a never-seen peer or
    /// a regenerated key.
    Other,
}

impl Role {
    /// The display name nodes of this role have.
    pub fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
            Role::Other => "other",
        }
    }
}

/// Identity templates, generated once per build directory and copied per node.
fn template(role: Role) -> &'static Path {
    static SENDER: OnceLock<PathBuf> = OnceLock::new();
    static RECEIVER: OnceLock<PathBuf> = OnceLock::new();
    static OTHER: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name) = match role {
        Role::Sender => (&SENDER, "sender"),
        Role::Receiver => (&RECEIVER, "receiver"),
        Role::Other => (&OTHER, "other"),
    };
    cell.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-identities");
        let dir = root.join(name);
        let usable = |d: &Path| {
            localstream()
                .arg("--home")
                .arg(d)
                .arg("id")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if dir.join("identity.key").is_file() && dir.join("node.json").is_file() && usable(&dir) {
            return dir;
        }
        std::fs::create_dir_all(&root).unwrap();
        let fresh = tempfile::tempdir_in(&root).unwrap();
        let home = fresh.path().join("home");
        localstream_testkit::output_ok(
            localstream().arg("--home").arg(&home).arg("id"),
            "identity generation",
        );
        if dir.exists() {
            // Left half-made or corrupt by an earlier run.
            let _ = std::fs::remove_dir_all(&dir);
        }
        // Another test process may have won the race to create it.
        if std::fs::rename(&home, &dir).is_err() {
            assert!(
                usable(&dir),
                "cannot install identity template {}",
                dir.display()
            );
        }
        dir
    })
}

/// Sender and receiver nodes (from their templates) and the receiver's inbox.
#[derive(Debug)]
pub struct Pair {
    pub sender: Node,
    pub receiver: Node,
    pub inbox: PathBuf,
}

impl Pair {
    pub fn new() -> Pair {
        let sender = Node::new(Role::Sender);
        let receiver = Node::new(Role::Receiver);
        let inbox = receiver.dir("inbox");
        Pair {
            sender,
            receiver,
            inbox,
        }
    }
}

/// A node: a private home directory holding an identity, and a scratch area.
#[derive(Debug)]
pub struct Node {
    tmp: tempfile::TempDir,
    pub home: PathBuf,
}

impl Node {
    /// A node whose identity is a copy of the role's template.
    pub fn new(role: Role) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        for f in ["identity.key", "node.json"] {
            // fs::copy keeps the 0600 mode of the key.
            std::fs::copy(template(role).join(f), home.join(f)).unwrap();
        }
        // Distinct display names: a newcomer under a pinned peer's name is refused.
        let node_json = home.join("node.json");
        let mut node: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&node_json).unwrap()).unwrap();
        node["name"] = serde_json::Value::from(role.name());
        std::fs::write(&node_json, serde_json::to_vec_pretty(&node).unwrap()).unwrap();
        Node { tmp, home }
    }

    /// A copy of this node whose key was regenerated: the same `node.json`
    /// (so the same node id and name) and a copy of its `peers.json` (if
    /// any), but the private key of `role`'s template.
    pub fn with_key_of(&self, role: Role) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::copy(
            template(role).join("identity.key"),
            home.join("identity.key"),
        )
        .unwrap();
        std::fs::copy(self.home.join("node.json"), home.join("node.json")).unwrap();
        if self.store_path().exists() {
            std::fs::copy(self.store_path(), home.join("peers.json")).unwrap();
        }
        Node { tmp, home }
    }

    /// `<home>/peers.json`.
    pub fn store_path(&self) -> PathBuf {
        self.home.join("peers.json")
    }

    /// A node with an empty (not yet created) home.
    pub fn fresh() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        Node { tmp, home }
    }

    /// A scratch directory of this node (created if needed).
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Writes `content` to `<scratch>/<sub>/<name>` and returns the path.
    pub fn file(&self, sub: &str, name: &str, content: &[u8]) -> PathBuf {
        let p = self.dir(sub).join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// `localstream --home <home> --no-progress` with stdin closed.
    pub fn cmd(&self) -> Command {
        let mut cmd = localstream();
        cmd.arg("--home").arg(&self.home);
        cmd
    }

    /// `localstream id`, parsed.
    pub fn id(&self) -> IdInfo {
        let out = run(self.cmd().arg("id"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "id failed: {}",
            text(&out.stderr)
        );
        IdInfo::parse(&text(&out.stdout))
    }

    /// Starts `listen --no-discovery --dir DIR --port 0 --bind 127.0.0.1 <extra>`
    /// and waits for its port.
    pub fn listen(&self, dir: &Path, extra: &[&str]) -> Listener {
        let mut cmd = self.cmd();
        cmd.arg("listen")
            .arg("--no-discovery")
            .arg("--dir")
            .arg(dir)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(extra);
        Listener::spawn(cmd, dir)
    }

    /// `send --yes --no-discovery 127.0.0.1:<port> FILE...`, run to completion.
    pub fn send<P: AsRef<Path>>(&self, port: u16, files: &[P]) -> Output {
        run(&mut self.send_cmd(port, files))
    }

    /// The `send` command, for callers that want to spawn it themselves.
    pub fn send_cmd<P: AsRef<Path>>(&self, port: u16, files: &[P]) -> Command {
        let mut cmd = self.cmd();
        // Scripts vouch for the receiver with --yes (first contact asks otherwise).
        cmd.arg("send")
            .arg("--yes")
            .arg("--no-discovery")
            .arg(format!("127.0.0.1:{port}"))
            .args(files.iter().map(|f| f.as_ref()));
        cmd
    }
}

/// Runs a command to completion with a deadline; kills it and fails on timeout.
pub fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    localstream_testkit::run(cmd, &what, STEP * 2, POLL)
}

/// Waits for a child to exit, at most `limit`.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    localstream_testkit::wait_deadline(child, limit, POLL)
}

/// Sends SIGINT (what Ctrl-C sends) to a process.
pub fn interrupt(pid: u32) {
    localstream_testkit::signal(pid, "INT");
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    localstream_testkit::poll_until(limit, POLL, cond)
}

/// A running `localstream listen`, killed when dropped.
#[derive(Debug)]
pub struct Listener {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Listener {
    fn spawn(mut cmd: Command, dir: &Path) -> Listener {
        let what = format!("{cmd:?}");
        let localstream_testkit::Running {
            child,
            lines,
            stderr,
            stderr_closed,
        } = localstream_testkit::spawn(&mut cmd, &what);
        let mut l = Listener {
            child,
            port: 0,
            dir: dir.to_owned(),
            lines,
            stdout: vec![],
            stderr,
            stderr_closed,
        };
        let line = l.wait_line(|l| {
            l.starts_with("listening on ") || l.starts_with(r#"{"event":"listening""#)
        });
        // `--json`: the first address of the `listening` event.
        let json_addr = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["addresses"][0].as_str().map(str::to_owned));
        let addr = json_addr
            .as_deref()
            .unwrap_or_else(|| line.trim_start_matches("listening on "));
        l.port = addr
            .strip_prefix("127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected listening line {line:?}"));
        l
    }

    /// Every stdout line, the ones already seen and the rest until stdout
    /// closes (the listener exited).
    pub fn all_stdout(&mut self) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        while let Next::Line(line) = localstream_testkit::next_line(&self.lines, deadline) {
            self.stdout.push(line);
        }
        self.stdout.clone()
    }

    /// Waits for (and returns) the next stdout line matching `pred`.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            match localstream_testkit::next_line(&self.lines, deadline) {
                Next::Line(line) => {
                    self.stdout.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Next::Timeout => self.fail("no matching stdout line in time"),
                Next::Closed => self.fail("stdout closed before a matching line"),
            }
        }
    }

    /// Waits for the `received ...` line of the next transfer and the indented
    /// saved paths after it (the listener lists the first 1000, then says
    /// `... and N more files`, checked here).
    pub fn wait_received(&mut self) -> (String, Vec<PathBuf>) {
        const LISTED: usize = 1000;
        let head = self.wait_line(|l| l.starts_with("received "));
        let files = localstream_testkit::received_count(&head)
            .unwrap_or_else(|| panic!("cannot parse file count in {head:?}"));
        let paths = (0..files.min(LISTED))
            .map(|_| PathBuf::from(self.wait_line(|_| true).trim_start_matches("  ")))
            .collect();
        if files > LISTED {
            let more = self.wait_line(|_| true);
            let want = format!("  ... and {} more files", files - LISTED);
            assert_eq!(more, want, "the line after the listed paths");
        }
        (head, paths)
    }

    /// Everything the listener wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        if !poll_until(STEP, || self.stderr().contains(needle)) {
            self.fail(&format!("stderr never contained {needle:?}"));
        }
    }

    /// Waits for the listener to exit (`--once`) and returns its exit code;
    /// its stderr is then all in [`Listener::stderr`].
    pub fn wait_exit(&mut self) -> Option<i32> {
        let code = match wait_deadline(&mut self.child, STEP) {
            Some(s) => s.code(),
            None => self.fail("listener did not exit in time"),
        };
        let closed = || self.stderr_closed.load(std::sync::atomic::Ordering::SeqCst);
        if !poll_until(STEP, closed) {
            self.fail("the listener exited but its stderr stayed open");
        }
        code
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Fails the test with everything the listener said.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "listener: {why}\nstdout so far:\n{}\nstderr:\n{}",
            self.stdout.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A TCP relay between a client and `127.0.0.1:<target>` that counts
/// connections and can stop forwarding the client's bytes after `cap` of them
/// (the rest is read and discarded), to freeze a transfer mid-file. When the
/// client goes away the upstream connection is closed as well.
#[derive(Debug)]
pub struct Relay {
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Client bytes forwarded upstream so far.
    pub forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn start(target: u16, cap: Option<u64>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let (acc, fwd, st, lv) = (
            accepted.clone(),
            forwarded.clone(),
            stop.clone(),
            live.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                lv.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let fwd = fwd.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client -> server, up to the cap.
                std::thread::spawn(move || {
                    let (mut client, mut server) = (client, server);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let done = fwd.load(Ordering::SeqCst);
                        let allowed =
                            cap.map_or(n as u64, |c| c.saturating_sub(done).min(n as u64));
                        if allowed > 0 {
                            if server.write_all(&buf[..allowed as usize]).is_err() {
                                break;
                            }
                            fwd.fetch_add(allowed, Ordering::SeqCst);
                        }
                    }
                    let _ = server.shutdown(Shutdown::Both);
                    let _ = client.shutdown(Shutdown::Both);
                });
                // Server -> client.
                std::thread::spawn(move || {
                    let (mut server, mut client) = (s2, c2);
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(Shutdown::Write);
                });
            }
        });
        Relay {
            port,
            accepted,
            forwarded,
            stop,
            live,
        }
    }

    /// Cuts every relayed connection, both sides, at once.
    pub fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Starts a listener from a `listen` command the caller built itself (for
/// example wrapped in `unshare`) and waits for its port, as
/// [`Node::listen`] does. `dir` is the destination as the listener sees it.
pub fn spawn_listener(cmd: Command, dir: &Path) -> Listener {
    Listener::spawn(cmd, dir)
}

/// Asserts that a `send` exited 0 and printed exactly its one summary
/// line, for `files` files.
pub fn assert_sent_ok(out: &Output, files: usize) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "send failed\nstdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let plural = if files == 1 { "file" } else { "files" };
    assert!(
        stdout.starts_with(&format!("sent {files} {plural}, ")),
        "unexpected send output: {stdout:?}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "one summary line expected: {stdout:?}"
    );
}

/// A node's side of an authenticated connection, driven from the library
/// (the hostile and attacking peers of the tests).
pub struct Authenticated {
    pub reader: localstream_node::conn::FrameReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: localstream_node::conn::RecordWriter<tokio::net::tcp::OwnedWriteHalf>,
    pub opener: localstream_proto::Opener,
}

/// Runs the initiator's handshake as `id` over `stream`, offering protocol
/// version 3 (and 2): one offer per transfer, no Manifest, as the hostile
/// peers of these tests speak it (a version 4 peer: [`authenticate_with`]).
pub async fn authenticate(
    id: Arc<localstream_proto::LocalIdentity>,
    stream: tokio::net::TcpStream,
) -> Authenticated {
    use localstream_proto::handshake::{PROTOCOL_VERSION_2, PROTOCOL_VERSION_3};
    authenticate_with(id, stream, &[PROTOCOL_VERSION_3, PROTOCOL_VERSION_2]).await
}

/// Runs the initiator's handshake as `id` over `stream`, offering `versions`.
pub async fn authenticate_with(
    id: Arc<localstream_proto::LocalIdentity>,
    stream: tokio::net::TcpStream,
    versions: &[u16],
) -> Authenticated {
    use localstream_proto::Handshake;
    use localstream_proto::handshake::Config;
    let (rd, mut wr) = stream.into_split();
    let mut reader = localstream_node::conn::FrameReader::new(rd);
    let mut hello = vec![];
    let mut config = Config::new(id);
    config.versions = versions.to_vec();
    let hs = Handshake::initiator(config, &mut rand::rng(), &mut hello);
    let session = localstream_node::conn::handshake(&mut reader, &mut wr, hs, hello)
        .await
        .unwrap();
    Authenticated {
        reader,
        writer: localstream_node::conn::RecordWriter {
            inner: wr,
            sealer: session.sealer,
        },
        opener: session.opener,
    }
}

/// The peak resident memory of a process (VmHWM), in bytes.
#[cfg(target_os = "linux")]
pub fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// A relay to `127.0.0.1:<target>` for one connection that passes the
/// client's first `hold_after` bytes, then holds the rest (the client blocks
/// on a full socket) until [`Valve::open`].
pub struct Valve {
    pub port: u16,
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl Valve {
    pub fn start(target: u16, hold_after: usize) -> Valve {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = open.clone();
        std::thread::spawn(move || {
            let Ok((mut client, _)) = listener.accept() else {
                return;
            };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (mut s2, mut c2) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
            let mut passed = 0;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if passed >= hold_after {
                    let (lock, cv) = &*gate;
                    let _open = cv.wait_while(lock.lock().unwrap(), |o| !*o).unwrap();
                }
                let want = if passed < hold_after {
                    buf.len().min(hold_after - passed)
                } else {
                    buf.len()
                };
                let n = match client.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
                passed += n;
            }
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
        });
        Valve { port, open }
    }

    pub fn open(&self) {
        let (lock, cv) = &*self.open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        self.open();
    }
}
