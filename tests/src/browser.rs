//! A real browser on the test LAN: headless Chromium driven over WebDriver
//! (chromedriver), for the web UI's scenarios in `tests/ui.rs`.
//!
//! The difficulty: the UI listens on `127.0.0.1` *inside* a host's network
//! namespace, so the browser must run in that namespace, and so must the
//! WebDriver client that talks to chromedriver (also on that namespace's
//! loopback). How it is done:
//!
//! ```text
//!   test thread ──jobs (closures)──► browser thread ── setns(/run/netns/<h1>) first,
//!        ▲                               │             then its own current-thread tokio
//!        └────────── results ────────────┘             runtime and the fantoccini client
//!                                        │ HTTP on h1's 127.0.0.1:9515
//!   ip netns exec <h1> chromedriver ◄────┘ ──► chromium (child: in h1 too) ──► UI on h1's 127.0.0.1
//! ```
//!
//! A network namespace belongs to a thread, and a socket to the namespace of
//! the thread that created it. The browser thread enters the host's
//! namespace with `setns` (nix's safe wrapper) before it creates anything,
//! and every future runs on that thread alone (`block_on` of a
//! current-thread runtime, which never hands work to another thread; the
//! runtime's blocking pool, if ever used, is spawned from this thread and
//! inherits its namespace). So every socket the client opens is in the
//! host's namespace, never in this machine's own, and the test thread itself
//! never changes namespace. chromedriver and chromium start through
//! `ip netns exec`, like every other process of the LAN (and die with it).
//!
//! Without `/usr/bin/chromium` or `/usr/bin/chromedriver`, [`available`]
//! prints a loud `SKIPPED` line and returns false (the test returns early),
//! unless `LOCALSTREAM_REQUIRE_BROWSER=1`, in which case it panics.
//!
//! Waiting is always polling with a deadline ([`STEP`]); on timeout the test
//! fails with what the page showed: its visible text, the browser's console,
//! and a screenshot saved under `$TMPDIR/localstream-ui-failures/`.

// Test support: a failed step should fail the test loudly, with context.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::host::Host;
use crate::process::{Listener, Proc};
use crate::{POLL, STEP};

/// The browser and its driver (Debian's `chromium` and `chromium-driver`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Env var that turns "no browser here" from a skip into a failure.
pub const REQUIRE_ENV: &str = "LOCALSTREAM_REQUIRE_BROWSER";
/// Env var naming a folder for the documentation's screenshots.
pub const SCREENSHOTS_ENV: &str = "LOCALSTREAM_SCREENSHOTS";
/// chromedriver's port on the host's loopback (outside the ephemeral range,
/// so no node's `--port 0` can take it; each host is its own namespace).
const DRIVER_PORT: u16 = 9515;
/// How often a wait looks at the page again.
const PAGE_POLL: Duration = Duration::from_millis(50);

/// Chromium's flags: headless, as root (no sandbox), and silent: no
/// background requests to anywhere (there is no route out of the LAN
/// anyway, but nothing should even try).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--window-size=1280,900",
];

/// Whether a browser can run here. Without one: a loud `SKIPPED` message and
/// `false`, or a panic when `LOCALSTREAM_REQUIRE_BROWSER=1`.
///
/// # Panics
/// When required and missing.
#[must_use]
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "SKIPPED: browser tests need a browser: no chromium/chromedriver ({} missing; \
         apt-get install chromium chromium-driver)",
        missing.join(", ")
    );
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg} ({REQUIRE_ENV}=1, so this is a failure)");
    }
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
    false
}

/// What `<home>/ui.json` says about a running UI.
#[derive(Debug, Clone)]
pub struct UiInfo {
    /// `http://127.0.0.1:PORT` (in the host's namespace).
    pub base: String,
    /// The per-start token.
    pub token: String,
    /// The node's process id.
    pub pid: u32,
    /// The node's id.
    pub id: String,
}

impl UiInfo {
    /// The link that signs a browser in: `base/?token=...`.
    #[must_use]
    pub fn signed_url(&self) -> String {
        format!("{}/?token={}", self.base, self.token)
    }

    /// Reads `<home>/ui.json` once it exists and belongs to process `pid`
    /// (an earlier node's file may still be there), within [`STEP`].
    ///
    /// # Panics
    /// When it does not appear in time, or is not private (mode 0600).
    #[must_use]
    pub fn wait(home: &Path, pid: u32) -> UiInfo {
        let path = home.join("ui.json");
        let mut last = String::new();
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(raw) = std::fs::read(&path) {
                last = String::from_utf8_lossy(&raw).into_owned();
                if let Ok(v) = serde_json::from_slice::<Value>(&raw)
                    && v["pid"].as_u64() == Some(u64::from(pid))
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                    assert_eq!(mode & 0o777, 0o600, "{} must be private", path.display());
                    let s = |k: &str| {
                        v[k].as_str()
                            .unwrap_or_else(|| panic!("no `{k}` string in {}: {v}", path.display()))
                            .to_owned()
                    };
                    return UiInfo {
                        base: s("base"),
                        token: s("token"),
                        pid,
                        id: s("id"),
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "no ui.json of process {pid} in {} within {STEP:?}; last seen: {last:?}",
                home.display()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// A node running `localstream ui --no-open` in a host, with its banner read
/// and its `ui.json`.
#[derive(Debug)]
pub struct UiNode {
    /// The node (a listener whose offers the UI answers).
    pub listener: Listener,
    /// Its UI.
    pub ui: UiInfo,
}

impl UiNode {
    /// Starts `localstream ui --no-open --dir <inbox> --port 0 EXTRA...` in
    /// `host` and waits for its banner and its `ui.json`.
    #[must_use]
    pub fn start(host: &Host, extra: &[&str]) -> UiNode {
        let dir = host.inbox();
        let proc = host.spawn(
            host.node()
                .args(["ui", "--no-open", "--no-notify", "--port", "0"])
                .arg("--dir")
                .arg(&dir)
                .args(extra),
        );
        let listener = Listener::start(proc, dir);
        let ui = UiInfo::wait(&host.home, listener.pid());
        assert_eq!(ui.id, listener.id, "ui.json names another node");
        UiNode { listener, ui }
    }

    /// `ip:port` where the node receives files (its first address).
    #[must_use]
    pub fn target(&self, host: &Host) -> String {
        format!("{}:{}", host.addr, self.listener.port)
    }
}

/// A job for the browser thread.
type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &Client) + Send>;

/// Counts failure screenshots (unique names across tests).
static SHOTS: AtomicUsize = AtomicUsize::new(0);

/// A headless Chromium in a host of the LAN, driven over WebDriver. Every
/// method blocks until the browser answered, and fails the test (with what
/// the page shows) when something does not work.
#[derive(Debug)]
pub struct Browser {
    /// The host it runs in (for messages).
    host: String,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// chromedriver (killed when dropped; chromium dies with the LAN).
    driver: Proc,
    /// Where failure screenshots go.
    failures: PathBuf,
}

/// `POST /session/<id>/se/log {"type": "browser"}`: chromedriver's console
/// log (entries since the last call), which fantoccini does not wrap.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// One line of the browser's console.
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    /// What it said (with the source location chromedriver adds).
    pub message: String,
}

impl Browser {
    /// Starts chromedriver in `host`, and through it a headless Chromium with
    /// a fresh profile (under the host's scratch directory). Call
    /// [`available`] first.
    ///
    /// # Panics
    /// When chromedriver or the browser does not come up.
    #[must_use]
    pub fn start(host: &Host) -> Browser {
        let mut driver = host.spawn(
            host.exec(CHROMEDRIVER)
                .arg(format!("--port={DRIVER_PORT}"))
                .arg("--allowed-ips=127.0.0.1"),
        );
        driver.wait_line(|l| l.contains("started successfully"));

        let profile = host.dir.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };

        let netns = PathBuf::from("/run/netns").join(&host.ns);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("browser-{}", host.name))
            .spawn(move || {
                let setup = || -> Result<(tokio::runtime::Runtime, Client), String> {
                    let ns = std::fs::File::open(&netns)
                        .map_err(|e| format!("cannot open {}: {e}", netns.display()))?;
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("setns({}): {e}", netns.display()))?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("tokio runtime: {e}"))?;
                    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
                    http.set_nodelay(true);
                    let client = rt
                        .block_on(
                            ClientBuilder::new(http)
                                .capabilities(caps)
                                .connect(&format!("http://127.0.0.1:{DRIVER_PORT}")),
                        )
                        .map_err(|e| format!("cannot start a browser session: {e}"))?;
                    Ok((rt, client))
                };
                let (rt, client) = match setup() {
                    Ok(ok) => {
                        let _ = ready.send(Ok(()));
                        ok
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                for job in queue {
                    job(&rt, &client);
                }
                // The session ends (chromedriver closes the browser); a
                // driver that died meanwhile must not hang the teardown.
                let _ = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), client.close()).await
                });
            })
            .unwrap();
        match started.recv_timeout(STEP * 2) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => driver.fail(&e),
            Err(_) => driver.fail("the browser did not start in time"),
        }
        Browser {
            host: host.name.clone(),
            jobs: Some(jobs),
            thread: Some(thread),
            driver,
            failures: std::env::temp_dir().join("localstream-ui-failures"),
        }
    }

    /// Runs `f` with the client on the browser thread and returns its
    /// result, or why it failed (a WebDriver error, or no answer in time).
    fn call<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |rt, client| {
            let out = rt.block_on(f(client.clone()));
            let _ = tx.send(out.map_err(|e| e.to_string()));
        });
        self.jobs
            .as_ref()
            .ok_or("the browser is closed")?
            .send(job)
            .map_err(|_| "the browser thread is gone".to_owned())?;
        match rx.recv_timeout(STEP * 2) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("the browser did not answer within {:?}", STEP * 2))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the browser thread died".into()),
        }
    }

    /// Like [`Browser::call`], failing the test (with the page) on error.
    fn must<T, F, Fut>(&self, what: &str, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        match self.call(f) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{what}: {e}")),
        }
    }

    /// Opens `url` (waits for the page to load).
    pub fn goto(&self, url: &str) {
        let u = url.to_owned();
        self.must(&format!("opening {url}"), move |c| async move {
            c.goto(&u).await
        });
    }

    /// The page's URL now.
    #[must_use]
    pub fn url(&self) -> String {
        self.must("reading the URL", |c| async move {
            c.current_url().await.map(|u| u.to_string())
        })
    }

    /// Opens the signed-in UI: the token link, which sets the session cookie
    /// and redirects to `/`; waits until the page shows this node's name
    /// (the event stream's first message arrived).
    pub fn open_ui(&self, ui: &UiInfo, node_name: &str) {
        self.goto(&ui.signed_url());
        let url = self.url();
        assert!(
            url.trim_end_matches('/') == ui.base && !url.contains("token"),
            "the token link should redirect to {}/, is at {url}",
            ui.base
        );
        self.wait_text("#node-name", node_name);
    }

    /// Runs `script` (a function body: `arguments[i]`, `return ...`; a
    /// returned promise is awaited) in the page.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        let s = script.to_owned();
        self.must(&format!("running {script:?}"), move |c| async move {
            c.execute(&s, args).await
        })
    }

    /// The trimmed text of every element matching `css`, in document order.
    #[must_use]
    pub fn texts(&self, css: &str) -> Vec<String> {
        let v = self.js(
            "return Array.from(document.querySelectorAll(arguments[0]), \
             (e) => (e.innerText || e.textContent || e.value || '').trim());",
            vec![json!(css)],
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The trimmed text of the first element matching `css`, if any.
    #[must_use]
    pub fn text(&self, css: &str) -> Option<String> {
        self.texts(css).into_iter().next()
    }

    /// How many elements match `css`.
    #[must_use]
    pub fn count(&self, css: &str) -> usize {
        self.js(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .as_u64()
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Whether JavaScript expression `expr` is truthy now (with `css` as
    /// `arguments[0]` when given).
    #[must_use]
    pub fn holds(&self, expr: &str, args: Vec<Value>) -> bool {
        match self.js(&format!("return Boolean({expr});"), args) {
            Value::Bool(b) => b,
            _ => false,
        }
    }

    /// Polls `cond` until it holds (true) or `limit` passes (false).
    pub fn try_wait_until(&self, limit: Duration, mut cond: impl FnMut(&Browser) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(PAGE_POLL);
        }
    }

    /// Polls `cond` until it holds or `limit` passes; on timeout fails the
    /// test with `what` and the page.
    pub fn wait_until(&self, what: &str, limit: Duration, cond: impl FnMut(&Browser) -> bool) {
        if !self.try_wait_until(limit, cond) {
            self.fail(&format!("waited {limit:?} for {what}"));
        }
    }

    /// Waits (at most [`STEP`]) until JavaScript expression `expr` is truthy.
    pub fn wait_js(&self, what: &str, expr: &str, args: Vec<Value>) {
        self.wait_until(what, STEP, |b| b.holds(expr, args.clone()));
    }

    /// Waits until some element matches `css`.
    pub fn wait_element(&self, css: &str) {
        self.wait_js(
            &format!("an element {css}"),
            "document.querySelector(arguments[0])",
            vec![json!(css)],
        );
    }

    /// Waits until some element matching `css` has a text that satisfies
    /// `pred`, and returns that text.
    pub fn wait_text_matching(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        self.wait_until(&format!("{css} to show {what}"), STEP, |b| {
            found = b.texts(css).into_iter().find(|t| pred(t));
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until some element matching `css` shows exactly `expected`.
    pub fn wait_text(&self, css: &str, expected: &str) -> String {
        self.wait_text_matching(css, &format!("{expected:?}"), |t| t == expected)
    }

    /// Whether `<dialog>` `css` is open.
    #[must_use]
    pub fn dialog_open(&self, css: &str) -> bool {
        self.holds(
            "document.querySelector(arguments[0]) && document.querySelector(arguments[0]).open",
            vec![json!(css)],
        )
    }

    /// Waits until `<dialog>` `css` is open (or, with `open` false, closed).
    pub fn wait_dialog(&self, css: &str, open: bool) {
        let what = format!("{css} to be {}", if open { "open" } else { "closed" });
        self.wait_until(&what, STEP, |b| b.dialog_open(css) == open);
    }

    /// Waits for the first element matching `css` that is enabled and
    /// clicks it (a real click: scrolled into view, hit-tested).
    pub fn click(&self, css: &str) {
        self.wait_js(
            &format!("{css} to be there and enabled"),
            "document.querySelector(arguments[0]) && !document.querySelector(arguments[0]).disabled",
            vec![json!(css)],
        );
        let sel = css.to_owned();
        self.must(&format!("clicking {css}"), move |c| async move {
            c.find(Locator::Css(&sel)).await?.click().await
        });
    }

    /// Types `text` into the first element matching `css`.
    pub fn type_text(&self, css: &str, text: &str) {
        self.wait_element(css);
        let (sel, t) = (css.to_owned(), text.to_owned());
        self.must(&format!("typing into {css}"), move |c| async move {
            c.find(Locator::Css(&sel)).await?.send_keys(&t).await
        });
    }

    /// Picks `files` in the `<input type=file>` matching `css` (WebDriver
    /// "send keys" with the paths, one per line; the input need not be
    /// visible), which fires its `change` event as a person's choice would.
    pub fn pick_files(&self, css: &str, files: &[&Path]) {
        self.wait_element(css);
        let paths: Vec<String> = files
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap().display().to_string())
            .collect();
        let (sel, keys) = (css.to_owned(), paths.join("\n"));
        self.must(
            &format!("picking {paths:?} in {css}"),
            move |c| async move { c.find(Locator::Css(&sel)).await?.send_keys(&keys).await },
        );
    }

    /// Switches to a view by its navigation link and waits until its
    /// section is the one shown.
    pub fn show(&self, view: &str) {
        self.click(&format!("nav a[data-view=\"{view}\"]"));
        self.wait_js(
            &format!("section#view-{view} to be shown"),
            "!document.getElementById(arguments[0]).hidden",
            vec![json!(format!("view-{view}"))],
        );
    }

    /// Everything the page shows as text (`document.body.innerText`).
    #[must_use]
    pub fn visible_text(&self) -> String {
        self.call(|c| async move {
            c.execute(
                "return document.body ? document.body.innerText : document.documentElement.outerHTML;",
                vec![],
            )
            .await
        })
        .map_or_else(|e| format!("(cannot read the page: {e})"), |v| {
            v.as_str().unwrap_or_default().to_owned()
        })
    }

    /// A PNG of the window.
    ///
    /// # Errors
    /// When the browser cannot take one or the file cannot be written.
    pub fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let png = self.call(|c| async move { c.screenshot().await })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Saves a screenshot as `<$LOCALSTREAM_SCREENSHOTS>/ui-<view>.png`, when
    /// that variable is set (the documentation's pictures); else nothing.
    pub fn doc_screenshot(&self, view: &str) {
        let Some(dir) = std::env::var_os(SCREENSHOTS_ENV).filter(|d| !d.is_empty()) else {
            return;
        };
        // No passing toast over the picture: wait (a while at most) until
        // it has faded out.
        let _ = self.try_wait_until(Duration::from_secs(10), |b| {
            b.holds(
                "!document.getElementById('toast') || \
                 getComputedStyle(document.getElementById('toast')).opacity === '0'",
                vec![],
            )
        });
        // Let the layout settle on what was just drawn.
        self.js(
            "return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))));",
            vec![],
        );
        let path = PathBuf::from(dir).join(format!("ui-{view}.png"));
        if let Err(e) = self.try_screenshot(&path) {
            self.fail(&format!(
                "cannot save the screenshot {}: {e}",
                path.display()
            ));
        }
        eprintln!("screenshot: {}", path.display());
    }

    /// The browser console's entries since the last call.
    #[must_use]
    pub fn console(&self) -> Vec<ConsoleEntry> {
        let v = self.must("reading the browser's console", |c| async move {
            c.issue_cmd(BrowserLog).await
        });
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| ConsoleEntry {
                        level: e["level"].as_str().unwrap_or_default().to_owned(),
                        message: e["message"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails the test when the console has errors (level `SEVERE`: script
    /// errors, CSP violations, failed loads) since the last look.
    pub fn assert_no_console_errors(&self) {
        let errors: Vec<String> = self
            .console()
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect();
        if !errors.is_empty() {
            self.fail(&format!(
                "the page logged errors on the console:\n  {}",
                errors.join("\n  ")
            ));
        }
    }

    /// Fails the test: why, the page's URL and visible text, the console,
    /// and a screenshot (its path is printed).
    pub fn fail(&self, why: &str) -> ! {
        panic!("{}", self.report(why))
    }

    /// What [`Browser::fail`] says, without failing: why, the page's URL and
    /// visible text, the console (which it empties), and the path of a
    /// screenshot taken now.
    #[must_use]
    pub fn report(&self, why: &str) -> String {
        let mut report = format!("[{}] browser: {why}\n", self.host);
        let n = SHOTS.fetch_add(1, Ordering::Relaxed);
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        let shot = self
            .failures
            .join(format!("{test}-{}-{n}.png", std::process::id()));
        match self.try_screenshot(&shot) {
            Ok(()) => {
                let _ = writeln!(report, "screenshot: {}", shot.display());
            }
            Err(e) => {
                let _ = writeln!(report, "no screenshot: {e}");
            }
        }
        match self.call(|c| async move { c.current_url().await.map(|u| u.to_string()) }) {
            Ok(u) => {
                let _ = writeln!(report, "url: {u}");
            }
            Err(e) => {
                let _ = writeln!(report, "url: ? ({e})");
            }
        }
        let _ = writeln!(report, "page text:\n-----\n{}\n-----", self.visible_text());
        match self.call(|c| async move { c.issue_cmd(BrowserLog).await }) {
            Ok(Value::Array(entries)) if !entries.is_empty() => {
                let _ = writeln!(report, "console:");
                for e in entries {
                    let _ = writeln!(report, "  {} {}", e["level"], e["message"]);
                }
            }
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(report, "console: ? ({e})");
            }
        }
        let _ = writeln!(report, "chromedriver stderr:\n{}", self.driver.stderr());
        report
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the job loop: the thread closes the session and returns.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
