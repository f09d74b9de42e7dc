//! A headless Chromium driven over WebDriver (W3C) for the web UI tests:
//! `chromedriver` as a child process, a blocking `ureq` client, no Node.
//!
//! ```ignore
//! let Some(b) = Browser::start() else { return }; // skip: no chromedriver (not under CI)
//! b.goto(&format!("http://{addr}/"));
//! b.wait_for(Until::Text("#phase", "succeeded"), Duration::from_secs(10)).unwrap();
//! b.screenshot(&screenshot_dir().join("runs.png"));
//! ```
//!
//! Errors from the driver panic with the WebDriver error and the step that
//! failed (these are tests); only [`Browser::wait_for`] returns a `Result`,
//! so a test can add its own context. Every wait is bounded in time and in
//! number of polls.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, repo, tool};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Poll interval of [`Browser::wait_for`] (and of the driver's start-up).
const POLL: Duration = Duration::from_millis(100);

/// Where tests write screenshots: `$RACKBOOT_SCREENSHOTS`, else
/// `target/screenshots` in the repository. Created if missing.
pub fn screenshot_dir() -> PathBuf {
    let d = std::env::var_os("RACKBOOT_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/screenshots"));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// What [`Browser::wait_for`] waits for.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// An element matching the CSS selector exists.
    Present(&'a str),
    /// No element matches the CSS selector.
    Absent(&'a str),
    /// The element's rendered text (trimmed) equals the string.
    Text(&'a str, &'a str),
    /// A JavaScript expression is truthy, e.g. `document.title === "Runs"`.
    Js(&'a str),
}

/// A WebDriver error: the HTTP status and the `error`/`message` of the reply
/// (or a transport error).
#[derive(Debug)]
pub struct WdError(pub String);

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One headless Chromium session behind its own `chromedriver` on a loopback
/// port. Dropping it ends the session and kills the driver and the browser
/// (they share a process group of their own).
pub struct Browser {
    agent: ureq::Agent,
    driver: Child,
    /// `http://127.0.0.1:<port>`
    root: String,
    /// `<root>/session/<id>`
    session: String,
    /// Chromium's `--user-data-dir` and the driver's log.
    dir: tempfile::TempDir,
}

impl Browser {
    /// Start `chromedriver` and a headless Chromium session (1400×1000).
    /// `None` (with a printed SKIP) when `chromedriver` is not installed;
    /// under CI (`CI` or `RACKBOOT_REQUIRE_TOOLS`) that panics instead.
    pub fn start() -> Option<Browser> {
        let exe = tool(&["chromedriver"])?;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new(&exe)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: Drop kills chromedriver and every Chromium process.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut b = Browser {
            agent,
            driver,
            root: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            dir,
        };
        b.wait_ready();
        let profile = b.dir.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 10_000},
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", format!("--user-data-dir={}", profile.display()),
            ]},
        }}});
        let root = b.root.clone();
        let v = b
            .request("POST", &format!("{root}/session"), Some(&caps))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}{}", b.log_tail()));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"));
        b.session = format!("{root}/session/{id}");
        Some(b)
    }

    /// Poll `/status` until the driver is ready: 100 × 100 ms at most.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::from("no reply");
        for _ in 0..100 {
            if let Ok(Some(st)) = self.driver.try_wait() {
                panic!("chromedriver exited at start: {st}{}", self.log_tail());
            }
            match self.request("GET", &format!("{}/status", self.root), None) {
                Ok(v) if v["ready"] == json!(true) => return,
                Ok(v) => last = v.to_string(),
                Err(e) => last = e.0,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        panic!("chromedriver not ready ({last}){}", self.log_tail());
    }

    /// The last lines of the chromedriver log, for panic messages.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("\n--- chromedriver.log (tail) ---\n{tail}")
    }

    /// One WebDriver command; returns the reply's `value`.
    fn request(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value, WdError> {
        let res = match method {
            "GET" => self.agent.get(url).call(),
            "DELETE" => self.agent.delete(url).call(),
            "POST" => self
                .agent
                .post(url)
                .header("Content-Type", "application/json; charset=utf-8")
                .send(body.unwrap_or(&json!({})).to_string()),
            m => unreachable!("WebDriver method {m}"),
        };
        let mut res = res.map_err(|e| WdError(format!("{method} {url}: {e}")))?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| WdError(format!("{method} {url}: reading reply: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| WdError(format!("{method} {url}: HTTP {status}, not JSON ({e})")))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(WdError(format!(
                "{method} {url}: HTTP {status} {}: {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            )))
        }
    }

    /// A command on this session (`path` is relative to `/session/<id>`).
    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, WdError> {
        self.request(method, &format!("{}{path}", self.session), body)
    }

    fn must(&self, what: &str, r: Result<Value, WdError>) -> Value {
        r.unwrap_or_else(|e| panic!("browser: {what}: {e}"))
    }

    /// The element id of the first match of a CSS selector.
    fn find(&self, css: &str) -> Result<String, WdError> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| WdError(format!("no element reference in {v}")))
    }

    fn try_text(&self, css: &str) -> Result<String, WdError> {
        let id = self.find(css)?;
        let v = self.cmd("GET", &format!("/element/{id}/text"), None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    fn try_exists(&self, css: &str) -> Result<bool, WdError> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Ok(v.as_array().is_some_and(|a| !a.is_empty()))
    }

    fn try_exec(&self, js: &str, args: &[Value]) -> Result<Value, WdError> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": js, "args": args})),
        )
    }

    /// Navigate and wait for the page to load (`document.readyState` complete).
    pub fn goto(&self, url: &str) {
        self.must(
            &format!("goto {url}"),
            self.cmd("POST", "/url", Some(&json!({"url": url}))),
        );
    }

    /// Open `base` (the UI root), which sends a new browser to the login
    /// page, and log in there with `token`; back on the machines page after.
    pub fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/"));
        assert!(
            self.url().contains("/ui/login?next="),
            "no login redirect: {}",
            self.url()
        );
        self.fill("input[name=token]", token);
        self.click("form[action=\"/ui/login\"] button[type=submit]");
        // The click returns before the navigation ends (on a busy host, well before).
        if let Err(e) = self.wait_for(
            Until::Js("!location.pathname.startsWith('/ui/login')"),
            Duration::from_secs(15),
        ) {
            panic!("login failed: {} ({e})", self.url());
        }
    }

    /// The current URL.
    pub fn url(&self) -> String {
        let v = self.must("get url", self.cmd("GET", "/url", None));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The rendered text of the first element matching `css` (panics if none).
    pub fn text(&self, css: &str) -> String {
        // The page's live script may replace the element between finding it
        // and reading it ("stale element reference"): find it again (bounded).
        let mut last = None;
        for _ in 0..5 {
            match self.try_text(css) {
                Ok(t) => return t,
                Err(e) if e.to_string().contains("stale element") => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("browser: text of {css:?}: {e}"),
            }
        }
        panic!("browser: text of {css:?}: {}", last.expect("a try"))
    }

    /// Whether any element matches `css` (no waiting).
    pub fn exists(&self, css: &str) -> bool {
        self.try_exists(css)
            .unwrap_or_else(|e| panic!("browser: exists {css:?}: {e}"))
    }

    /// Click the first element matching `css`: a link, a button, a form's
    /// submit button (the way to submit a form). A click that navigates
    /// returns once the new page has loaded.
    pub fn click(&self, css: &str) {
        let r = self
            .find(css)
            .and_then(|id| self.cmd("POST", &format!("/element/{id}/click"), None));
        self.must(&format!("click {css:?}"), r);
    }

    /// Clear an input/textarea and type `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let r = self.find(css).and_then(|id| {
            self.cmd("POST", &format!("/element/{id}/clear"), None)?;
            self.cmd(
                "POST",
                &format!("/element/{id}/value"),
                Some(&json!({"text": text})),
            )
        });
        self.must(&format!("fill {css:?}"), r);
    }

    /// Run `js` as the body of a function (`arguments[i]` are `args`; use
    /// `return` for a result) and return its JSON result.
    pub fn exec(&self, js: &str, args: &[Value]) -> Value {
        self.try_exec(js, args)
            .unwrap_or_else(|e| panic!("browser: exec {js:?}: {e}"))
    }

    /// Poll every 100 ms until `until` holds, at most `timeout` (and at most
    /// `timeout / 100 ms + 1` polls). The error says what was seen last.
    /// Transient driver errors (e.g. a stale element while the page
    /// re-renders) count as "not yet".
    pub fn wait_for(&self, until: Until, timeout: Duration) -> Result<(), String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let polls = timeout.as_millis() / POLL.as_millis() + 1;
        let mut last = String::from("nothing");
        for _ in 0..polls {
            let r = match until {
                Until::Present(css) => self.try_exists(css).map(|e| (e, format!("present={e}"))),
                Until::Absent(css) => self.try_exists(css).map(|e| (!e, format!("present={e}"))),
                Until::Text(css, want) => self
                    .try_text(css)
                    .map(|t| (t.trim() == want, format!("text {t:?}"))),
                Until::Js(expr) => self
                    .try_exec(&format!("return !!({expr});"), &[])
                    .map(|v| (v == json!(true), format!("{v}"))),
            };
            match r {
                Ok((true, _)) => return Ok(()),
                Ok((false, seen)) => last = seen,
                Err(e) => last = e.0,
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "browser: waited {:?} for {until:?}; last seen: {last} (at {})",
            started.elapsed(),
            self.url()
        ))
    }

    /// Write a PNG screenshot of the viewport to `path` (parent dirs created).
    pub fn screenshot(&self, path: &Path) {
        let v = self.must("screenshot", self.cmd("GET", "/screenshot", None));
        let png = base64_decode(v.as_str().unwrap_or_default())
            .unwrap_or_else(|| panic!("browser: screenshot is not base64"));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Closes Chromium cleanly; the group kill below is the backstop.
            let _ = self.request("DELETE", &self.session.clone(), None);
        }
        let pid = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group we created for chromedriver.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

/// Standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let digits = digits
        .strip_suffix(b"==")
        .or_else(|| digits.strip_suffix(b"="))
        .unwrap_or(&digits);
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

#[test]
fn base64_decode_known_values() {
    for (enc, dec) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
        ("Zm9v\nYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
    }
    assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
    assert!(base64_decode("Zm9v!").is_none());
    assert!(base64_decode("Z").is_none());
}

// ---- self-test: a live-updating cell (SSE) in a real headless Chromium ----

mod selftest {
    use super::*;
    use axum::response::sse::{Event, Sse};
    use axum::response::Html;
    use axum::routing::get;
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rackboot browser self-test</title>
<style>body{font:16px sans-serif;margin:2em} td,th{border:1px solid #888;padding:.4em 1em}</style>
</head><body>
<h1>Runs</h1>
<table><tr><th>system</th><th>phase</th></tr>
<tr><td>node-01</td><td id="phase">queued</td></tr></table>
<form action="/echo" method="get"><input id="q" name="q"> <button id="go" type="submit">Go</button></form>
<script>
window.__seen = [];
const es = window.__es = new EventSource("/events");
es.addEventListener("phase", (e) => {
  document.getElementById("phase").textContent = e.data;
  window.__seen.push(e.data);
  if (e.data === "succeeded" || e.data === "failed") es.close();
});
</script>
</body></html>"#;

    /// The page, its SSE feed (once `go` is true: `phase` dhcp, kernel,
    /// succeeded, 300 ms apart, then the stream stays open) and a GET form
    /// target. Counts page loads. Returns the runtime (keep it alive) and
    /// the address.
    fn serve(
        loads: Arc<AtomicUsize>,
        go: tokio::sync::watch::Receiver<bool>,
    ) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let events = move || async move {
            let phases = ["dhcp", "kernel", "succeeded"];
            let s = futures_util::stream::unfold((0usize, go), move |(i, mut go)| async move {
                if i == 0 {
                    // Hold the feed until the test says go (a dropped sender releases it).
                    let _ = go.wait_for(|go| *go).await;
                }
                if i >= phases.len() {
                    // Stay open (no EventSource reconnect replaying the run).
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let ev = Event::default().event("phase").data(phases[i]);
                Some((Ok::<_, Infallible>(ev), (i + 1, go)))
            });
            Sse::new(s)
        };
        let app = axum::Router::new()
            .route(
                "/",
                get(move || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    async { Html(PAGE) }
                }),
            )
            .route("/events", get(events))
            .route(
                "/echo",
                get(
                    |q: axum::extract::Query<HashMap<String, String>>| async move {
                        let q = q.get("q").cloned().unwrap_or_default();
                        let q = q.replace('&', "&amp;").replace('<', "&lt;");
                        Html(format!("<!doctype html><p id=\"echo\">{q}</p>"))
                    },
                ),
            );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        (rt, addr)
    }

    #[test]
    fn browser_self_test_sse_cell_screenshot_form() {
        let t0 = Instant::now();
        let loads = Arc::new(AtomicUsize::new(0));
        let (go, go_rx) = tokio::sync::watch::channel(false);
        let (_rt, addr) = serve(loads.clone(), go_rx);
        let Some(b) = Browser::start() else { return };
        let started = t0.elapsed();

        b.goto(&format!("http://{addr}/"));
        b.exec("window.__marker = 1;", &[]);
        assert_eq!(b.text("#phase"), "queued");
        // The page is subscribed before the feed starts.
        b.wait_for(
            Until::Js("window.__es && window.__es.readyState === EventSource.OPEN"),
            Duration::from_secs(5),
        )
        .unwrap();
        go.send(true).unwrap();
        b.wait_for(Until::Text("#phase", "succeeded"), Duration::from_secs(10))
            .unwrap();
        // Same document: the marker survived, the page was fetched once, and
        // the cell went through every phase.
        assert_eq!(b.exec("return window.__marker;", &[]), json!(1));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "the page was reloaded");
        assert_eq!(
            b.exec("return window.__seen;", &[]),
            json!(["dhcp", "kernel", "succeeded"])
        );
        assert!(b.exists("#phase"));
        assert!(!b.exists("#no-such-thing"));
        let err = b
            .wait_for(Until::Present("#no-such-thing"), Duration::from_millis(300))
            .unwrap_err();
        assert!(err.contains("present=false"), "{err}");

        let png = screenshot_dir().join("browser-self-test.png");
        b.screenshot(&png);
        println!("screenshot: {}", png.display());
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(bytes.len() > 1024, "PNG of {} bytes", bytes.len());

        // A form submitted by clicking its button.
        b.fill("#q", "a&b <c>");
        b.click("#go");
        b.wait_for(Until::Present("#echo"), Duration::from_secs(5))
            .unwrap();
        b.wait_for(Until::Absent("#phase"), Duration::from_secs(1))
            .unwrap();
        assert_eq!(b.text("#echo"), "a&b <c>");
        assert!(b.url().contains("/echo?q="), "{}", b.url());
        b.wait_for(Until::Js("document.title === ''"), Duration::from_secs(1))
            .unwrap();
        drop(b);
        println!(
            "browser self-test: {:?} (driver + session start {started:?})",
            t0.elapsed()
        );
    }
}
