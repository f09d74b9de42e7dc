//! Scoped tokens on the API listener: every route of the running daemon
//! (API, UI, metrics), as the guard lists them, answered without a token,
//! with a wrong one, and with `read`, `operate` and `admin` tokens; the
//! refusals counted in `/metrics`; changes in the audit trail with the
//! token's name and the edit's before → after.

use crate::harness::ConfigDir;
use rackboot::api;
use rackboot::auth::Scope;
use rackboot::daemon;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const READ: &str = "viewer-secret-0123456789abcdef";
const OPERATE: &str = "ops-secret-0123456789abcdef012";
const ADMIN: &str = "boss-secret-0123456789abcdef01";

async fn start() -> (ConfigDir, daemon::Running) {
    let c = ConfigDir::sample();
    c.write(
        "tokens",
        &format!(
            "# name scope secret\nviewer read {READ}\nops operate {OPERATE}\nboss admin {ADMIN}\n"
        ),
    );
    c.replace(
        "rackboot.toml",
        "[api]\n",
        "[api]\ntokens_file = \"tokens\"\n",
    );
    // A machine without a BMC: power routes answer at once.
    c.append(
        "systems.toml",
        "\n[systems.nobmc]\nmacs = [\"52:54:00:77:00:99\"]\nip = \"10.77.0.99\"\nprofile = \"lab\"\n",
    );
    let cfg = c.load().unwrap();
    let listeners = crate::harness::loopback_listeners(vec![]).await;
    let d = daemon::start(cfg, listeners).await.unwrap();
    (c, d)
}

/// A route template with its parameters filled in.
fn fill(path: &str) -> String {
    path.replace("{name}", "nobmc")
        .replace("{id}", "run-nope")
        .replace("{*rest}", "nope")
}

/// One answer: status, headers, and the start of the body (an event stream
/// never ends, so the body is read only up to 64 KiB or a short pause).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn text(&self) -> &str {
        &self.body
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn typed<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// The guard's own refusal (JSON with its code), as opposed to a
    /// handler's 403 (the UI's CSRF check) or 404.
    fn guard_code(&self) -> Option<String> {
        if self.status != 401 && self.status != 403 {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
    }
}

/// HTTP/1.1 over a plain socket, bounded in bytes and time.
fn raw(addr: SocketAddr, method: &str, path: &str, bearer: &str, body: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let body = body.unwrap_or("");
    let auth = if bearer.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {bearer}\r\n")
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while buf.len() < 65536 && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A stream that pauses: enough has been seen once the head is in.
            Err(_) if buf.windows(4).any(|w| w == b"\r\n\r\n") => break,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {head:?}"));
    // Chunked bodies (streams) keep their chunk sizes: fine for `contains`.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines()
            .filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()) || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        body.to_string()
    };
    Answer {
        status,
        head: head.to_string(),
        body,
    }
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&str>,
) -> Answer {
    let (m, p, b, body) = (
        method.to_string(),
        path.to_string(),
        bearer.to_string(),
        body.map(str::to_string),
    );
    tokio::task::spawn_blocking(move || raw(addr, &m, &p, &b, body.as_deref()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_its_scope() {
    let (_c, d) = start().await;
    let addr = d.api_addr;
    let rules = d.api_rules.clone();
    assert!(rules.len() > 30, "{} routes", rules.len());
    let (mut guarded, mut public) = (0, 0);
    for r in &rules {
        let (m, path) = (r.method.as_str(), fill(r.path));
        // Bodies that no handler accepts: nothing is changed by this walk.
        let body = (m != "GET").then_some("not json");
        let Some(need) = r.scope else {
            public += 1;
            let resp = call(addr, m, &path, "", body).await;
            assert_eq!(resp.guard_code(), None, "{m} {path} is public");
            continue;
        };
        guarded += 1;
        let ui_page = m == "GET" && (r.path == "/" || r.path.starts_with("/ui/"));
        // No token: 401, or the login page for a UI page.
        let resp = call(addr, m, &path, "", body).await;
        if ui_page {
            assert_eq!(resp.status, 303, "{m} {path}");
            let to = resp.header("location").unwrap();
            assert!(to.starts_with("/ui/login?next=/"), "{m} {path}: {to}");
        } else {
            assert_eq!(resp.status, 401, "{m} {path} without a token");
            assert_eq!(resp.guard_code().as_deref(), Some("unauthorized"));
        }
        // A wrong token is not a weaker one.
        let resp = call(addr, m, &path, "wrong-token-0123456789abcdef", body).await;
        assert!(
            resp.status == 401 || (ui_page && resp.status == 303),
            "{m} {path} with a wrong token: {}",
            resp.status
        );
        for (secret, scope) in [
            (READ, Scope::Read),
            (OPERATE, Scope::Operate),
            (ADMIN, Scope::Admin),
        ] {
            let resp = call(addr, m, &path, secret, body).await;
            if scope >= need {
                assert_eq!(
                    resp.guard_code(),
                    None,
                    "{m} {path} with {scope}: {} {}",
                    resp.status,
                    resp.text()
                );
            } else {
                assert_eq!(resp.status, 403, "{m} {path} with {scope}");
                assert_eq!(resp.guard_code().as_deref(), Some("forbidden"));
            }
        }
    }
    assert!(
        public >= 5 && guarded > 25,
        "{public} public, {guarded} guarded"
    );
    // The scopes the issue names.
    let scope_of = |m: &str, p: &str| {
        rules
            .iter()
            .find(|r| r.method.as_str() == m && r.path == p)
            .unwrap_or_else(|| panic!("no route {m} {p}"))
            .scope
    };
    assert_eq!(scope_of("GET", "/healthz"), None);
    assert_eq!(scope_of("GET", "/metrics"), Some(Scope::Read));
    assert_eq!(scope_of("GET", "/api/v1/events"), Some(Scope::Read));
    assert_eq!(scope_of("POST", "/api/v1/runs"), Some(Scope::Operate));
    assert_eq!(
        scope_of("PUT", "/api/v1/systems/{name}/netboot"),
        Some(Scope::Operate)
    );
    assert_eq!(
        scope_of("POST", "/api/v1/systems/{name}/power"),
        Some(Scope::Operate)
    );
    assert_eq!(
        scope_of("PUT", "/api/v1/systems/{name}"),
        Some(Scope::Admin)
    );
    assert_eq!(scope_of("POST", "/api/v1/reload"), Some(Scope::Admin));

    // The refusals are counted, by reason, in /metrics.
    let m = call(addr, "GET", "/metrics", READ, None).await.body;
    let count = |reason: &str| -> f64 {
        let key = format!("rackboot_api_auth_failures_total{{reason=\"{reason}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(count("missing") >= guarded as f64, "{m}");
    assert!(count("invalid") >= guarded as f64);
    assert!(count("forbidden") >= 1.0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_names_the_token_and_the_change() {
    let (_c, d) = start().await;
    let addr = d.api_addr;
    // An operator queues a reimage; an admin edits a system.
    let r = call(
        addr,
        "POST",
        "/api/v1/runs",
        OPERATE,
        Some(r#"{"systems":["node50"]}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let run: api::RunsCreated = r.typed();
    let r = call(
        addr,
        "GET",
        &format!("/api/v1/runs/{}", run.runs[0].id),
        READ,
        None,
    )
    .await;
    assert_eq!(r.json()["requested_by"], "ops", "{}", r.text());
    let r = call(
        addr,
        "PUT",
        "/api/v1/systems/node51",
        OPERATE,
        Some(r#"{"ip":"10.77.0.151"}"#),
    )
    .await;
    assert_eq!(r.status, 403, "operate may not edit");
    let r = call(
        addr,
        "PUT",
        "/api/v1/systems/node51",
        ADMIN,
        Some(r#"{"ip":"10.77.0.151"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Reading is not a change: not in the trail.
    call(addr, "GET", "/api/v1/systems", READ, None).await;

    let r = call(addr, "GET", "/api/v1/audit", READ, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let page: api::AuditPage = r.typed();
    let e = &page.entries;
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        (e[0].actor.as_str(), e[0].scope.as_str(), e[0].via.as_str()),
        ("boss", "admin", "api")
    );
    assert_eq!(e[0].action, "PUT /api/v1/systems/{name}");
    assert_eq!((e[0].target.as_str(), e[0].status), ("node51", 200));
    assert_eq!(e[0].remote, "127.0.0.1");
    let (verb, fields) = api::change_fields(&e[0].detail["changes"][0]);
    assert_eq!(verb, "changed");
    assert_eq!(
        fields,
        vec![(
            "ip".into(),
            "\"10.77.0.51\"".into(),
            "\"10.77.0.151\"".into()
        )]
    );
    assert_eq!(
        (
            e[1].actor.as_str(),
            e[1].action.as_str(),
            e[1].target.as_str()
        ),
        ("ops", "POST /api/v1/runs", "node50")
    );
    assert!(e[0].at >= e[1].at && e[0].id > e[1].id);
    // Filtered by target, and never a secret in the trail.
    let r = call(addr, "GET", "/api/v1/audit?target=node50", READ, None).await;
    assert_eq!(r.typed::<api::AuditPage>().entries.len(), 1);
    for s in [READ, OPERATE, ADMIN] {
        assert!(!r.text().contains(s) && !page_text(&page).contains(s));
    }
    d.stop().await;
}

fn page_text(p: &api::AuditPage) -> String {
    serde_json::to_string(p).unwrap()
}
