//! Webhooks against a local receiver that checks the signature: a receiver
//! that is down then up gets every event, in order; a wrong secret is refused
//! and stays pending, visibly; a daemon killed with `kill -9` while deliveries
//! are pending delivers them after its restart.

use crate::harness::{free_port, http, lab_in, ConfigDir, Lab};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use rackboot::api::feed::{History, WebhookStatus};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A receiver on `port` that takes a delivery only when its signature is
/// right for `secret` and its timestamp is recent; it records the event ids.
struct Receiver {
    got: Arc<Mutex<Vec<i64>>>,
    refused: Arc<Mutex<u32>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(port: u16, secret: &'static str) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (g, r) = (got.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: Bytes| {
                let (g, r) = (g.clone(), r.clone());
                async move {
                    let hv = |k: &str| {
                        h.get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let ts: i64 = hv("x-rackboot-timestamp").parse().unwrap_or(0);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    let want = rackboot::webhooks::signature(secret.as_bytes(), ts, &body);
                    if hv("x-rackboot-signature") != want || (now - ts).abs() > 300 {
                        *r.lock().unwrap() += 1;
                        return StatusCode::UNAUTHORIZED;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["id"].to_string(), hv("x-rackboot-event-id"));
                    g.lock().unwrap().push(v["id"].as_i64().unwrap());
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            axum::serve(l, app).await.unwrap();
        });
        Receiver { got, refused, task }
    }

    fn ids(&self) -> Vec<i64> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sample config with webhooks `ci` (secret "s3cret") and `wrong`
/// (another secret) posting to `port`, observations only.
fn config(port: u16) -> ConfigDir {
    let c = ConfigDir::sample();
    c.write("hook-secret", "s3cret\n");
    c.write("other-secret", "not-the-receivers\n");
    c.append(
        "rackboot.toml",
        &format!(
            "\n[[webhooks]]\nname = \"ci\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             events = [\"observation\"]\nsecret_file = \"hook-secret\"\n\
             \n[[webhooks]]\nname = \"wrong\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret_file = \"other-secret\"\n"
        ),
    );
    c
}

async fn get<T: serde::de::DeserializeOwned + Send + 'static>(api: SocketAddr, path: &str) -> T {
    let p = path.to_string();
    tokio::task::spawn_blocking(move || http(api, "GET", &p, &[], None).typed())
        .await
        .unwrap()
}

/// Poll `f` every 100 ms until it holds, at most `secs`.
async fn until<F: AsyncFn() -> bool>(secs: u64, what: &str, f: F) {
    let t0 = Instant::now();
    while !f().await {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hook(api: SocketAddr, name: &str) -> WebhookStatus {
    let all: Vec<WebhookStatus> = get(api, "/api/v1/webhooks").await;
    all.into_iter().find(|w| w.name == name).unwrap()
}

/// The ids of the observation events stored for `systems`.
async fn observation_ids(api: SocketAddr, systems: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for s in systems {
        let h: History = get(api, &format!("/api/v1/systems/{s}/history")).await;
        ids.extend(
            h.events
                .iter()
                .filter(|e| e.kind == "observation")
                .map(|e| e.id),
        );
    }
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_up_gets_every_event_and_a_wrong_secret_stays_pending() {
    let port = free_port();
    let l: Lab = lab_in(config(port)).await;
    let api = l.d.api_addr;
    for mac in [
        "52:54:00:77:00:50",
        "52:54:00:77:00:51",
        "52:54:00:77:00:52",
    ] {
        assert!(l.offer(mac).await.is_some());
    }
    let systems = ["node50", "node51", "node52"];
    until(5, "three observations stored", async || {
        observation_ids(api, &systems).await.len() == 3
    })
    .await;
    let want = observation_ids(api, &systems).await;
    // Nobody listens yet: attempts pile up, the error says why, nothing is lost.
    until(5, "a failed attempt", async || {
        hook(api, "ci").await.attempts >= 1
    })
    .await;
    let ci = hook(api, "ci").await;
    assert!(ci.last_error.is_some(), "{ci:?}");
    assert!(ci.delivered_through < want[0], "{ci:?}");
    assert_eq!(ci.events, ["observation"]);

    let r = Receiver::start(port, "s3cret").await;
    until(40, "every event delivered", async || r.ids().len() >= 3).await;
    assert_eq!(r.ids(), want, "each event once, in order");
    until(5, "ci caught up", async || {
        let ci = hook(api, "ci").await;
        ci.attempts == 0 && ci.delivered == 3 && ci.delivered_through == want[2]
    })
    .await;
    // The other secret: refused by the receiver, still pending, visibly.
    until(10, "wrong refused", async || {
        hook(api, "wrong").await.last_error.as_deref() == Some("HTTP 401")
    })
    .await;
    let wrong = hook(api, "wrong").await;
    assert_eq!(wrong.delivered, 0, "{wrong:?}");
    assert!(*r.refused.lock().unwrap() >= 1);
    // The UI's Webhooks page shows the same state: ci caught up, wrong failing.
    let page = tokio::task::spawn_blocking(move || http(api, "GET", "/ui/webhooks", &[], None))
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    let row = |name: &str| {
        let at = html
            .find(&format!("id=\"wh-{name}\""))
            .unwrap_or_else(|| panic!("no row {name}: {html}"));
        html[at..at + html[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row("ci").contains("data-state=\"ok\""), "{}", row("ci"));
    let w = row("wrong");
    assert!(
        w.contains("data-state=\"bad\"") && w.contains("HTTP 401"),
        "{w}"
    );
    assert!(!html.contains("s3cret"), "a secret on the page");
    l.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_deliveries_pending_loses_none() {
    let port = free_port();
    let c = config(port);
    let (hp, ap) = (free_port(), free_port());
    c.use_loopback(hp, ap);
    let api: SocketAddr = format!("127.0.0.1:{ap}").parse().unwrap();
    let boot: SocketAddr = format!("127.0.0.1:{hp}").parse().unwrap();
    let serve = |c: &ConfigDir| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .args(["serve", "--config"])
            .arg(c.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(c.path().join("daemon.log")).unwrap())
            .spawn()
            .unwrap()
    };
    let up = async |c: &ConfigDir| {
        let log = c.path().join("daemon.log");
        until(20, "daemon up", async || {
            std::net::TcpStream::connect(api).is_ok()
        })
        .await;
        let _ = log;
    };
    let mut child = serve(&c);
    up(&c).await;
    for mac in [
        "52-54-00-77-00-50",
        "52-54-00-77-00-51",
        "52-54-00-77-00-52",
    ] {
        let p = format!("/ipxe/{mac}");
        let s = tokio::task::spawn_blocking(move || http(boot, "GET", &p, &[], None).status)
            .await
            .unwrap();
        assert_eq!(s, 200);
    }
    let systems = ["node50", "node51", "node52"];
    until(5, "three observations stored", async || {
        observation_ids(api, &systems).await.len() == 3
    })
    .await;
    let want = observation_ids(api, &systems).await;
    until(5, "deliveries pending", async || {
        hook(api, "ci").await.attempts >= 1
    })
    .await;
    // kill -9 with all three pending.
    child.kill().unwrap();
    child.wait().unwrap();

    let r = Receiver::start(port, "s3cret").await;
    let mut child = serve(&c);
    up(&c).await;
    until(40, "every event delivered after the restart", async || {
        r.ids().len() >= 3
    })
    .await;
    assert_eq!(r.ids(), want);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}
