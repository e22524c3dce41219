//! The receiver's questions on a real terminal: `listen` runs with its
//! stdin, stdout and stderr on a pseudo-terminal, what it writes is read
//! through a terminal emulator (vt100) as a person would see it, and the
//! answers are typed on the terminal's keyboard side.
//!
//! - A sender that goes away while its question is up: the question is
//!   withdrawn in words, and the answer typed to the next sender's question
//!   is that sender's answer (its file arrives, the dead one's does not).
//! - Two offers at once: one question at a time, nothing printed into a
//!   question while it waits (not the other sender's question, not the bars
//!   nor the result of a transfer running meanwhile: those follow the
//!   answer), both accepted in turn, the bars named with the peer.
//!
//! Nothing here waits for time to pass: each step waits for text to appear
//! (or a process to end), bounded by [`STEP`] only to fail instead of hang.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustix::pty::OpenptFlags;

use super::common::{self, Node, Role, STEP, text};

/// The terminal's size. Tall enough that nothing scrolls off it, so the
/// screen holds everything the listener showed.
const ROWS: u16 = 200;
const COLS: u16 = 120;

/// The prompt's last line (the cursor waits after it).
const ASK: &str = "[a]ccept once, accept and [t]rust, or [r]eject? [a/t/R]";

/// A command running on a pseudo-terminal of its own.
struct Terminal {
    child: Child,
    /// The keyboard.
    keys: File,
    /// Everything the command wrote to the terminal.
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Runs `cmd` with stdin, stdout and stderr on a new terminal.
    fn run(mut cmd: Command) -> Terminal {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let master = rustix::pty::openpt(flags).unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags).unwrap();
        let size = rustix::termios::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, size).unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        // Our copies of the terminal's side go with the command.
        drop(cmd);
        let keys = File::from(master.try_clone().unwrap());
        let mut screen = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let out = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            // Ends when the command (and all it started) closed the terminal.
            while let Ok(n @ 1..) = screen.read(&mut buf) {
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            keys,
            output,
        }
    }

    /// The bytes written to the terminal so far.
    fn raw(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    /// The screen's rows as a person sees them now (trailing blanks and
    /// the empty rows below the last one left out).
    fn rows(&self) -> Vec<String> {
        rows_of(&self.raw())
    }

    /// Waits until `cond` holds for the screen's rows and the raw bytes;
    /// returns the rows.
    fn wait(&self, what: &str, mut cond: impl FnMut(&[String], &[u8]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + STEP;
        loop {
            let raw = self.raw();
            let rows = rows_of(&raw);
            if cond(&rows, &raw) {
                return rows;
            }
            if Instant::now() > deadline {
                self.fail(&format!("never: {what}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until a question is on the screen and nothing was written after
    /// it, and it starts with `first`; returns the rows.
    fn wait_question(&self, first: &str) -> Vec<String> {
        self.wait(&format!("a question starting {first:?}"), |rows, raw| {
            raw.ends_with(format!("{ASK} ").as_bytes()) && rows.iter().any(|r| r == first)
        })
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        self.keys.write_all(format!("{line}\r").as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Fails with the screen.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- the screen:\n{}\n--- raw:\n{:?}",
            self.rows().join("\n"),
            String::from_utf8_lossy(&self.raw())
        )
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a terminal shows after `raw`.
fn rows_of(raw: &[u8]) -> Vec<String> {
    let rows = NonZeroU16::new(ROWS).unwrap();
    let cols = NonZeroU16::new(COLS).unwrap();
    let mut parser = vt100::Parser::new(rows, cols, 0);
    parser.process(raw);
    let mut rows: Vec<String> = parser
        .screen()
        .rows(0, COLS)
        .map(|r| r.trim_end().to_owned())
        .collect();
    while rows.last().is_some_and(String::is_empty) {
        rows.pop();
    }
    rows
}

/// The rows from the one equal to `first` on (fails when it is not there
/// exactly once).
fn from_row<'a>(rows: &'a [String], first: &str) -> &'a [String] {
    let at: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| *r == first)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{first:?} once on:\n{}", rows.join("\n"));
    &rows[at[0]..]
}

/// A node named `name` (distinct homes: distinct peers).
fn peer(role: Role, name: &str) -> (Node, common::IdInfo) {
    let n = Node::new(role);
    let out = common::run(n.cmd().args(["config", "set", "name", name]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = n.id();
    assert_eq!(id.name, name);
    (n, id)
}

/// `listen` on a terminal (bars on, as a person runs it), in UTC so that
/// modification times read the same everywhere; and its port.
fn listen_on_terminal(receiver: &Node, inbox: &Path) -> (Terminal, u16) {
    let mut cmd = Command::new(common::bin());
    cmd.arg("--home")
        .arg(&receiver.home)
        .arg("listen")
        .arg("--no-discovery")
        .arg("--dir")
        .arg(inbox)
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .env_remove("LOCALSTREAM_HOME")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .env("TZ", "UTC");
    let term = Terminal::run(cmd);
    let rows = term.wait("listening", |rows, _| {
        rows.iter()
            .any(|r| r.starts_with("listening on 127.0.0.1:"))
    });
    let port = rows
        .iter()
        .find_map(|r| r.strip_prefix("listening on 127.0.0.1:"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| term.fail("no port"));
    (term, port)
}

/// A running `send --yes` whose stdout and stderr go to files.
struct Sending {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Sending {
    /// Starts `send --yes --no-discovery 127.0.0.1:<port> <args>` from
    /// `node`, with stdin `stdin`.
    fn start(node: &Node, port: u16, args: &[&Path], stdin: Stdio) -> Sending {
        let logs = node.dir("logs");
        let (stdout, stderr) = (logs.join("stdout"), logs.join("stderr"));
        let child = node
            .send_cmd(port, args)
            .stdin(stdin)
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Sending {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The verification code it shows its user (printed before it offers).
    fn code(&self) -> String {
        let err = self.stderr();
        err.split("verification code ")
            .nth(1)
            .and_then(|rest| rest.get(..14))
            .unwrap_or_else(|| panic!("no verification code in the sender's stderr:\n{err}"))
            .to_owned()
    }

    /// Waits for it to end; its exit code and stdout.
    fn finish(&mut self) -> (Option<i32>, String) {
        let Some(status) = common::wait_deadline(&mut self.child, STEP * 2) else {
            panic!("the sender did not end; stderr:\n{}", self.stderr())
        };
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        (status.code(), stdout)
    }

    /// Asserts it sent its one file.
    fn sent_one(&mut self) {
        let (code, stdout) = self.finish();
        assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {}", self.stderr());
        assert!(stdout.starts_with("sent 1 file, "), "{stdout}");
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `send - --name NAME` from `node`: a stream its standard input feeds.
fn stream(node: &Node, port: u16, name: &str) -> Sending {
    let args = [Path::new("-"), Path::new("--name"), Path::new(name)];
    Sending::start(node, port, &args, Stdio::piped())
}

/// A file whose modification time is fixed (it shows in the question).
fn file(node: &Node, name: &str, content: &[u8]) -> PathBuf {
    let p = node.file("out", name, content);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    p
}

/// The question for one file from `who`, as the screen shows it (at 120
/// columns), `entry` being the file's line.
fn question(who: &common::IdInfo, size: &str, entry: &str, code: &str) -> Vec<String> {
    vec![
        format!(
            "{} [{}] (id {}) wants to send 1 file ({size}):",
            who.name, who.fingerprint, who.id
        ),
        format!("  {entry}"),
        format!(
            "verification code {code} (it must match the code on the sender's screen). The code \
             is new for each connection;"
        ),
        "the fingerprint in brackets stays the same.".to_owned(),
        ASK.to_owned(),
    ]
}

/// The listener's lines for a received file (the first one's figures vary).
fn assert_received(rows: &[String], who: &common::IdInfo, size: &str, saved: &Path) {
    assert!(rows.len() >= 3, "{rows:?}");
    assert!(
        rows[0].starts_with(&format!("received 1 file, {size} in "))
            && rows[0].ends_with(&format!(" from {} [{}]", who.name, who.fingerprint)),
        "{rows:?}"
    );
    assert_eq!(rows[1], format!("  {}", saved.display()));
    assert_eq!(
        rows[2],
        format!(
            "if the codes matched: `localstream trust {}` accepts {}'s offers without asking",
            &who.id[..8],
            who.name
        )
    );
}

/// What the listener's web UI knows (`GET /api/state` with the token of
/// `<home>/ui.json`): the offers waiting and the transfers.
fn ui_state(home: &Path) -> serde_json::Value {
    let control = home.join("ui.json");
    assert!(
        common::poll_until(STEP, || control.is_file()),
        "no {}",
        control.display()
    );
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&control).unwrap()).unwrap();
    let addr = c["base"].as_str().unwrap().trim_start_matches("http://");
    let token = c["token"].as_str().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    write!(
        s,
        "GET /api/state HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(body).unwrap()
}

/// The names of the peers whose offers wait for an answer (the UI does not
/// ask while the terminal does: they are its transfers `offered`).
fn waiting(state: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = state["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["side"] == "receive" && t["state"] == "offered")
        .map(|t| t["peer"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The state of the transfer received from `name`.
fn transfer_from(state: &serde_json::Value, name: &str) -> Option<String> {
    state["transfers"].as_array()?.iter().find_map(|t| {
        (t["side"] == "receive" && t["peer"]["name"] == name)
            .then(|| t["state"].as_str().unwrap_or_default().to_owned())
    })
}

#[test]
fn a_sender_that_leaves_while_asked_is_withdrawn_and_the_answer_goes_to_the_next() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let (h1, h1_id) = peer(Role::Sender, "h1");
    let (h3, h3_id) = peer(Role::Other, "h3");
    let (mut term, port) = listen_on_terminal(&receiver, &inbox);

    let a = file(&h1, "from-h1.txt", b"h1 went away\n");
    let mut first = Sending::start(&h1, port, &[&a], Stdio::null());
    let first_line = format!(
        "h1 [{}] (id {}) wants to send 1 file (13 B):",
        h1_id.fingerprint, h1_id.id
    );
    let rows = term.wait_question(&first_line);
    let asked = question(
        &h1_id,
        "13 B",
        "from-h1.txt  (13 B, modified 2025-11-24 16:00)",
        &first.code(),
    );
    assert_eq!(from_row(&rows, &first_line), asked);

    // The sender goes away while its question is up.
    first.child.kill().unwrap();
    let _ = first.child.wait();
    let rows = term.wait("the question withdrawn", |rows, raw| {
        raw.ends_with(b"h1 cancelled: question withdrawn\r\n")
            && rows
                .last()
                .is_some_and(|r| r == "h1 cancelled: question withdrawn")
    });
    let mut shown = asked.clone();
    shown.push("h1 cancelled: question withdrawn".to_owned());
    assert_eq!(from_row(&rows, &first_line), shown);

    let content = common::random_bytes(17, 200 * 1024);
    let b = file(&h3, "from-h3.bin", &content);
    let mut second = Sending::start(&h3, port, &[&b], Stdio::null());
    let second_line = format!(
        "h3 [{}] (id {}) wants to send 1 file (200.00 KiB):",
        h3_id.fingerprint, h3_id.id
    );
    let rows = term.wait_question(&second_line);
    // The new question, below the withdrawn one, with the new sender's code.
    shown.extend(question(
        &h3_id,
        "200.00 KiB",
        "from-h3.bin  (200.00 KiB, modified 2025-11-24 16:00)",
        &second.code(),
    ));
    assert_eq!(from_row(&rows, &first_line), shown);

    term.type_line("a");
    second.sent_one();
    let rows = term.wait("h3's file received", |rows, _| {
        rows.iter()
            .any(|r| r.starts_with("if the codes matched: `localstream trust "))
    });
    let after = from_row(&rows, &format!("{ASK} a"));
    assert_received(
        &after[1..],
        &h3_id,
        "200.00 KiB",
        &inbox.join("from-h3.bin"),
    );
    assert_eq!(after.len(), 4, "nothing else: {after:?}");

    // h3's file arrived, whole; h1's never did (nor any part of it).
    assert_eq!(common::names_in(&inbox), ["from-h3.bin"]);
    common::assert_content(&inbox.join("from-h3.bin"), &content);
    assert!(!rows.iter().any(|r| r.contains("from h1")), "{rows:?}");
}

#[test]
fn two_offers_at_once_are_asked_one_after_the_other_with_nothing_printed_into_a_question() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let (h1, h1_id) = peer(Role::Sender, "h1");
    let (h3, h3_id) = peer(Role::Other, "h3");
    let (mut term, port) = listen_on_terminal(&receiver, &inbox);

    // Both send a stream from their standard input, so that each transfer
    // runs for exactly as long as the test feeds it.
    let mut first = stream(&h1, port, "from-h1.bin");
    let mut h1_feed = first.child.stdin.take().unwrap();
    let first_line = format!(
        "h1 [{}] (id {}) wants to send 1 file (0 B):",
        h1_id.fingerprint, h1_id.id
    );
    let rows = term.wait_question(&first_line);
    let mut shown = question(&h1_id, "0 B", "from-h1.bin  (0 B)", &first.code());
    assert_eq!(from_row(&rows, &first_line), shown);

    let mut second = stream(&h3, port, "big.bin");
    let mut h3_feed = second.child.stdin.take().unwrap();
    // Both offers wait now, and only h1's question is on the screen, with
    // nothing written after it.
    assert!(
        common::poll_until(STEP, || waiting(&ui_state(&receiver.home)) == ["h1", "h3"]),
        "{}",
        ui_state(&receiver.home)
    );
    let raw = term.raw();
    assert!(raw.ends_with(format!("{ASK} ").as_bytes()), "{raw:?}");
    assert!(!text(&raw).contains("h3 ["), "{:?}", text(&raw));

    // Accepting h1 brings up h3's question; h1's transfer then runs and
    // ends under it without a bar or a line drawn into it.
    term.type_line("a");
    let second_line = format!(
        "h3 [{}] (id {}) wants to send 1 file (0 B):",
        h3_id.fingerprint, h3_id.id
    );
    term.wait_question(&second_line);
    let h1_content = common::random_bytes(1, 1024 * 1024);
    h1_feed.write_all(&h1_content).unwrap();
    drop(h1_feed);
    first.sent_one();
    assert!(
        common::poll_until(STEP, || transfer_from(&ui_state(&receiver.home), "h1")
            .is_some_and(|s| s == "done")),
        "{}",
        ui_state(&receiver.home)
    );
    assert_eq!(common::names_in(&inbox), ["from-h1.bin"]);
    let rows = term.wait_question(&second_line);
    shown.last_mut().unwrap().push_str(" a");
    shown.extend(question(&h3_id, "0 B", "big.bin  (0 B)", &second.code()));
    assert_eq!(from_row(&rows, &first_line), shown);

    // The answer to h3; then what waited: h1's result.
    term.type_line("a");
    let rows = term.wait("h1's result after the answer", |rows, _| {
        rows.iter()
            .any(|r| r.starts_with("if the codes matched: `localstream trust "))
    });
    let after = &from_row(&rows, &second_line)[4..];
    assert_eq!(after[0], format!("{ASK} a"));
    assert_received(&after[1..], &h1_id, "1.00 MiB", &inbox.join("from-h1.bin"));

    // h3's stream goes on with no question up: its bars are drawn, named
    // with the peer.
    let mut h3_content = Vec::new();
    let mut chunk = 0;
    term.wait("h3's bars", |rows, _| {
        if rows.iter().any(|r| r.starts_with("h3: big.bin ")) {
            return true;
        }
        // (Bounded: a listener that never draws them fails at the deadline.)
        if h3_content.len() >= 256 * 1024 * 1024 {
            return false;
        }
        let more = common::random_bytes(100 + chunk, 64 * 1024);
        chunk += 1;
        h3_feed.write_all(&more).unwrap();
        h3_content.extend_from_slice(&more);
        false
    });
    drop(h3_feed);
    second.sent_one();
    let rows = term.wait("h3's result", |rows, _| {
        rows.iter()
            .filter(|r| r.starts_with("if the codes matched: `localstream trust "))
            .count()
            == 2
    });
    let after = &from_row(&rows, &second_line)[5..];
    assert_received(after, &h1_id, "1.00 MiB", &inbox.join("from-h1.bin"));
    let size = localstream_node::units::human_bytes(h3_content.len() as u64);
    assert_received(&after[3..], &h3_id, &size, &inbox.join("big.bin"));
    assert_eq!(after.len(), 6, "the bars are gone: {after:?}");

    assert_eq!(common::names_in(&inbox), ["big.bin", "from-h1.bin"]);
    common::assert_content(&inbox.join("from-h1.bin"), &h1_content);
    common::assert_content(&inbox.join("big.bin"), &h3_content);
}

#[test]
fn a_folder_is_asked_for_as_files_and_folders_and_declined_so() {
    let receiver = Node::new(Role::Receiver);
    let inbox = receiver.dir("inbox");
    let (h1, h1_id) = peer(Role::Sender, "h1");
    let (mut term, port) = listen_on_terminal(&receiver, &inbox);

    // trip/ holds a file and an empty folder: 1 file and 2 folders.
    let trip = h1.dir("out").join("trip");
    std::fs::create_dir_all(trip.join("empty")).unwrap();
    file(&h1, "trip/notes.txt", b"a note\n");
    let mut sending = Sending::start(&h1, port, &[&trip], Stdio::null());
    let first_line = format!(
        "h1 [{}] (id {}) wants to send 1 file and 2 folders (7 B):",
        h1_id.fingerprint, h1_id.id
    );
    let rows = term.wait_question(&first_line);
    let asked = from_row(&rows, &first_line);
    let mut listed = asked[1..4].to_vec();
    listed.sort();
    assert_eq!(
        listed,
        [
            "  trip  (folder)",
            "  trip/empty  (folder)",
            "  trip/notes.txt  (7 B, modified 2025-11-24 16:00)",
        ],
        "{asked:?}"
    );
    assert!(
        asked[4].starts_with(&format!("verification code {} ", sending.code())),
        "{asked:?}"
    );

    term.type_line("r");
    let line = "declined 1 file and 2 folders from h1";
    term.wait(line, |rows, _| rows.iter().any(|r| r == line));
    let (code, stdout) = sending.finish();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        sending
            .stderr()
            .ends_with("localstream: receiver declined\n"),
        "{}",
        sending.stderr()
    );
    assert!(common::names_in(&inbox).is_empty());
}
