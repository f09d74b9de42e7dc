//! The event feed published to a real MQTT broker (Debian's mosquitto),
//! read back by its own client (`mosquitto_sub`): a broker that is down at
//! first gets every event once it is up, QoS 1, on the machine's topic.

use crate::harness::{free_port, lab_in, tool, ConfigDir};
use rackboot::api::feed::{History, WebhookStatus};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get<T: serde::de::DeserializeOwned + Send + 'static>(
    api: std::net::SocketAddr,
    path: &str,
) -> T {
    let p = path.to_string();
    tokio::task::spawn_blocking(move || crate::harness::http(api, "GET", &p, &[], None).typed())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_gets_every_event_at_qos1() {
    let (Some(broker), Some(sub)) = (
        tool(&["mosquitto", "/usr/sbin/mosquitto"]),
        tool(&["mosquitto_sub"]),
    ) else {
        return;
    };
    let port = free_port();
    let c = ConfigDir::sample();
    c.append(
        "rackboot.toml",
        &format!("\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\ntopic_prefix = \"rb\"\n"),
    );
    let l = lab_in(c).await;
    let api = l.d.api_addr;
    for mac in ["52:54:00:77:00:50", "52:54:00:77:00:51"] {
        assert!(l.offer(mac).await.is_some());
    }
    // No broker yet: failed attempts, nothing acknowledged.
    let t0 = Instant::now();
    let status = loop {
        let all: Vec<WebhookStatus> = get(api, "/api/v1/webhooks").await;
        let m = all
            .into_iter()
            .find(|w| w.name == "@mqtt")
            .expect("@mqtt listed");
        // Start the broker well before the next attempt, so the subscriber's
        // session is registered before anything is published.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        if m.attempts >= 3 && m.next_attempt_at.is_some_and(|n| n - now > 800) {
            break m;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.last_error.is_some(), "{status:?}");
    assert_eq!(status.delivered, 0);

    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let _broker = Killed(
        Command::new(&broker)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A persistent QoS 1 session: the broker keeps what is published for it.
    let p: &'static str = Box::leak(port.to_string().into_boxed_str());
    let base = [
        "-h",
        "127.0.0.1",
        "-p",
        p,
        "-i",
        "rb-test",
        "-c",
        "-q",
        "1",
        "-t",
        "rb/#",
    ];
    let t0 = Instant::now();
    while !Command::new(&sub)
        .args(base)
        .arg("-E")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "broker did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every event: the two stored observations.
    let mut want = Vec::new();
    for s in ["node50", "node51"] {
        let h: History = get(api, &format!("/api/v1/systems/{s}/history")).await;
        want.extend(h.events.iter().map(|e| (s, e.id)));
    }
    want.sort_by_key(|w| w.1);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&sub)
            .args(base)
            .args(["-v", "-C", "2", "-W", "30"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<(String, i64)> = text
        .lines()
        .map(|l| {
            let (topic, payload) = l.split_once(' ').unwrap();
            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
            (topic.to_string(), v["id"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        got,
        want.iter()
            .map(|(s, id)| (format!("rb/systems/{s}/events"), *id))
            .collect::<Vec<_>>(),
        "{text}"
    );
    let t0 = Instant::now();
    loop {
        let all: Vec<WebhookStatus> = get(api, "/api/v1/webhooks").await;
        let m = all.into_iter().find(|w| w.name == "@mqtt").unwrap();
        if m.delivered == 2 && m.attempts == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l.d.stop().await;
}
