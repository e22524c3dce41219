//! Defaults, configuration and the checks `listen` makes before it starts:
//! the default folder, `--name` for one run, a folder that takes no files,
//! a taken port, the interfaces setting, `peers`' flags, IPv6 scopes,
//! `service status` and how `sessions` reads.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::common::{self, Node, Role, text};

/// `cmd` with `HOME` set to `home` and none of the XDG folders of the
/// machine: the platform's folders are computed from `home` alone.
fn with_home(mut cmd: Command, home: &Path) -> Command {
    cmd.env("HOME", home);
    for var in [
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_DOWNLOAD_DIR",
        "XDG_CACHE_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `config show`'s `dir` line.
fn shown_dir(node: &Node, home: &Path) -> String {
    let mut cmd = with_home(node.cmd(), home);
    let out = common::run(cmd.args(["config", "show"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .find(|l| l.starts_with("# dir = ") || l.starts_with("dir = "))
        .unwrap_or_else(|| panic!("no dir line in {}", text(&out.stdout)))
        .to_owned()
}

/// The banner, printed before the `listening on` line, has `line`.
fn assert_banner(l: &common::Listener, line: &str) {
    if !l.stdout.iter().any(|s| s == line) {
        l.fail(&format!("no banner line {line:?}"));
    }
}

#[test]
fn the_default_folder_is_downloads_else_the_data_dir_never_the_current_one() {
    let node = Node::new(Role::Receiver);
    let user = node.dir("user");
    // A server or container: no ~/Downloads, no user-dirs.dirs.
    let data = user.join(".local/share/localstream/received");
    assert_eq!(
        shown_dir(&node, &user),
        format!("# dir = \"{}\"  (default)", data.display())
    );
    // `listen` makes it and saves there, not in the current directory.
    let cwd = node.dir("cwd");
    let mut cmd = with_home(node.cmd(), &user);
    cmd.current_dir(&cwd).args([
        "listen",
        "--no-discovery",
        "--yes",
        "--once",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    let mut l = common::spawn_listener(cmd, &data);
    assert_banner(&l, &format!("  saving to   {}", data.display()));
    assert!(data.is_dir());
    let sender = Node::new(Role::Sender);
    let f = sender.file("out", "a.txt", b"hello");
    common::assert_sent_ok(&sender.send(l.port, &[&f]), 1);
    assert_eq!(l.wait_exit(), Some(0));
    assert_eq!(common::names_in(&data), ["a.txt"]);
    assert!(common::names_in(&cwd).is_empty());

    // With ~/Downloads (and still no user-dirs.dirs): Downloads/LocalStream.
    std::fs::create_dir(user.join("Downloads")).unwrap();
    assert_eq!(
        shown_dir(&node, &user),
        format!(
            "# dir = \"{}\"  (default)",
            user.join("Downloads/LocalStream").display()
        )
    );
}

#[test]
fn listen_name_is_for_one_run_and_config_set_name_for_good() {
    let node = Node::new(Role::Receiver);
    let inbox = node.dir("inbox");
    let l = node.listen(&inbox, &["--yes", "--name", "just-now"]);
    assert_banner(&l, "LocalStream node just-now");
    drop(l);
    assert_eq!(node.id().name, "receiver");
    let out = common::run(node.cmd().args(["config", "set", "name", "for-good"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(node.id().name, "for-good");
    let l = node.listen(&inbox, &["--yes"]);
    assert_banner(&l, "LocalStream node for-good");
}

/// Runs `args` on `node`: it must exit 1 with `message` as its whole stderr.
fn fails_with(node: &Node, args: &[&str], message: &str) {
    let out = common::run(node.cmd().args(args));
    assert_eq!(
        (out.status.code(), text(&out.stderr).trim_end()),
        (Some(1), message),
        "{args:?}"
    );
}

const FOLDER_HINT: &str =
    "(choose another folder with --dir DIR, or `localstream config set dir DIR`)";

#[test]
fn listen_and_ui_refuse_a_folder_that_takes_no_files() {
    let node = Node::new(Role::Receiver);
    // A regular file where a parent folder should be: fails for root too.
    let file = node.file("x", "a-file", b"x");
    let dir = file.join("inbox");
    let d = dir.to_str().unwrap();
    let expected =
        format!("localstream: cannot save received files in {d}: Not a directory {FOLDER_HINT}");
    let listen = ["listen", "--no-discovery", "--port", "0", "--dir", d];
    fails_with(&node, &listen, &expected);
    let ui = [
        "ui",
        "--no-open",
        "--no-discovery",
        "--port",
        "0",
        "--dir",
        d,
    ];
    fails_with(&node, &ui, &expected);
    // The folder named is a file.
    let f = file.to_str().unwrap();
    fails_with(
        &node,
        &["listen", "--no-discovery", "--port", "0", "--dir", f],
        &format!(
            "localstream: cannot save received files in {f}: it is a file, not a folder \
             {FOLDER_HINT}"
        ),
    );
    // A folder that exists and takes no files, for root too.
    #[cfg(target_os = "linux")]
    fails_with(
        &node,
        &[
            "listen",
            "--no-discovery",
            "--port",
            "0",
            "--dir",
            "/proc/self",
        ],
        &format!(
            "localstream: cannot save received files in /proc/self: No such file or directory \
             {FOLDER_HINT}"
        ),
    );
    // Permissions only stop someone who is not root.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = node.dir("locked");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(locked.join("root-writes-anyway"), b"").is_err() {
            let l = locked.to_str().unwrap();
            fails_with(
                &node,
                &["listen", "--no-discovery", "--port", "0", "--dir", l],
                &format!(
                    "localstream: cannot save received files in {l}: Permission denied \
                     {FOLDER_HINT}"
                ),
            );
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_taken_port_names_what_holds_it() {
    // `COMMAND --no-discovery --bind 127.0.0.1 --port PORT --dir DIR`.
    let on = |command: &'static str, port: &str, dir: &Path| -> Vec<String> {
        let dir = dir.to_str().unwrap();
        [
            command,
            "--no-discovery",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--dir",
            dir,
        ]
        .map(String::from)
        .to_vec()
    };
    let fails = |node: &Node, args: &[String], message: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(node, &args, message);
    };
    let by_localstream = |port: &str| {
        format!(
            "localstream: cannot listen on 127.0.0.1:{port}: the port is taken by another \
             LocalStream listener (stop that listener first: it may be the service, see \
             `localstream service status`; or listen on another port with --port PORT, \
             --port 0 picks a free one)"
        )
    };
    let first = Node::new(Role::Receiver);
    let l = first.listen(&first.dir("inbox"), &["--yes"]);
    let second = Node::new(Role::Other);
    let dir = second.dir("inbox");
    let port = l.port.to_string();
    fails(&second, &on("listen", &port, &dir), &by_localstream(&port));
    // `ui` (and `listen --ui`) say so before the UI starts: no link to a
    // UI that goes away at once. A listener without a UI (`--no-ui`) is
    // what `ui` meets there.
    drop(l);
    let l = first.listen(&first.dir("inbox"), &["--yes", "--no-ui"]);
    let port = l.port.to_string();
    let mut ui = on("ui", &port, &dir);
    ui.push("--no-open".into());
    // It says why it found no UI to open there.
    fails(
        &first,
        &ui,
        &format!(
            "localstream: no listener of this home serves a web UI to open (one started with \
             --no-ui, or with the setting ui = \"off\", serves none)\n{}",
            by_localstream(&port)
        ),
    );
    let mut listen_ui = on("listen", &port, &dir);
    listen_ui.push("--ui".into());
    fails(&second, &listen_ui, &by_localstream(&port));
    // The first listener took no notice of the questions.
    assert!(!l.stderr().contains("error"), "{}", l.stderr());

    // Something else: it reads what it is sent and answers in its own way.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = other.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for mut s in other.incoming().flatten() {
            let mut first = [0u8; 9];
            let _ = s.read_exact(&mut first);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    fails(
        &second,
        &on("listen", &port, &dir),
        &format!(
            "localstream: cannot listen on 127.0.0.1:{port}: the port is taken by another \
             program (it does not speak LocalStream) (stop it, or listen on another port with \
             --port PORT; --port 0 picks a free one)"
        ),
    );
}

#[test]
fn peers_offers_no_no_discovery() {
    let node = Node::new(Role::Sender);
    let out = common::run(node.cmd().args(["peers", "--help"]));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--interface <NAME>"), "{help}");
    assert!(!help.contains("--no-discovery"), "{help}");
    let out = common::run(node.cmd().args(["peers", "--no-discovery"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: unexpected argument '--no-discovery' found"),
        "{}",
        text(&out.stderr)
    );
    // `send` and `listen` still have it.
    for cmd in ["send", "listen"] {
        let out = common::run(node.cmd().args([cmd, "--help"]));
        assert!(text(&out.stdout).contains("--no-discovery"), "{cmd}");
    }
}

/// `doctor` for an interface name that is not on this machine says so and
/// names the ones that are (it tries no discovery: nothing is usable). The
/// port's check binds it, so a free one is given.
#[cfg(target_os = "linux")]
#[test]
fn doctor_says_a_named_interface_is_not_there_and_lists_those_that_are() {
    let node = Node::new(Role::Receiver);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = common::run(
        node.cmd()
            .args(["doctor", "-i", "nosuch0", "--port", &port]),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("\nFAIL  interface nosuch0: there is no such interface on this machine\n      fix: choose one of "),
        "{stdout}"
    );
    assert!(
        stdout.contains("lo, ") || stdout.contains(", lo") || stdout.contains("of lo "),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "FAIL  no interface can be used for discovery: peers cannot find this node by name\n      \
             fix: name an interface that is there (above)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("something blocks receiving: see the fixes above\n"),
        "{stdout}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn service_status_fails_when_the_unit_is_not_installed() {
    let node = Node::new(Role::Receiver);
    let config = node.dir("xdg-config");
    let out = common::run(
        node.cmd()
            .env("XDG_CONFIG_HOME", &config)
            .args(["service", "status"]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "not installed: {}/systemd/user/localstream.service does not exist \
             (`localstream service install` sets it up)\n",
            config.display()
        )
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn sessions_show_local_time_human_sizes_and_one_file() {
    use jiff::tz::{Offset, TimeZone};
    let p = common::Pair::new();
    let mut l = p.receiver.listen(&p.inbox, &["--yes", "--once"]);
    let f = p.sender.file("out", "five.txt", b"12345");
    common::assert_sent_ok(&p.sender.send(l.port, &[&f]), 1);
    assert_eq!(l.wait_exit(), Some(0));
    let out = common::run(p.receiver.cmd().args(["sessions", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let session = &json[0]["sessions"][0];
    let started = session["started"].as_i64().unwrap();
    let id: String = session["id"].as_str().unwrap().chars().take(8).collect();
    // Three hours east of UTC (POSIX TZ strings count the other way).
    let out = common::run(p.receiver.cmd().env("TZ", "XYZ-3").arg("sessions"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let when = jiff::Timestamp::from_millisecond(started)
        .unwrap()
        .to_zoned_datetime(TimeZone::fixed(Offset::from_hours(3).unwrap()))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let stdout = text(&out.stdout);
    let line = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "  {when}  {id}  received     1 file          5 B  ok          "
        )),
        "{stdout}"
    );
}
