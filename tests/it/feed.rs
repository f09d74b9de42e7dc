//! The operator feed: events stored with durable ids before they go live,
//! replayed after `Last-Event-ID` (also across a restart), a system's
//! history, and bad input refused.

use crate::harness::{client, lab, lab_in, Lab};
use rackboot::api::feed::History;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

const NODE50: &str = "52:54:00:77:00:50";
const NODE51: &str = "52:54:00:77:00:51";

/// Read `n` SSE events (`id:` + `data:`) from `GET path` with `headers`.
pub(crate) async fn sse(
    l: &Lab,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<(i64, serde_json::Value)> {
    let (addr, path) = (l.d.api_addr, path.to_string());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let bearer = format!("Bearer {}", crate::harness::TOKEN);
        let mut h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        h.push(("Authorization", &bearer));
        let s = client(addr).stream_with(&path, &h).unwrap();
        assert!(s.ok(), "status {}", s.status);
        let mut out = Vec::new();
        let (mut id, mut data) = (None, None);
        for line in BufReader::new(s).lines() {
            let line = line.expect("the stream ended or timed out");
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse::<i64>().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(serde_json::from_str(v.trim()).unwrap());
            } else if line.is_empty() {
                if let (Some(i), Some(d)) = (id.take(), data.take()) {
                    out.push((i, d));
                    if out.len() == n {
                        break;
                    }
                }
            }
        }
        out
    })
    .await
    .unwrap()
}

/// The system's history once it holds at least `n` events (bounded wait).
async fn history(l: &Lab, system: &str, n: usize) -> History {
    history_where(l, system, |h| h.events.len() >= n).await
}

/// A system's history once `enough` says so (or after 5 s).
async fn history_where(l: &Lab, system: &str, enough: impl Fn(&History) -> bool) -> History {
    let t0 = Instant::now();
    loop {
        let r = l
            .api(
                "GET",
                &format!("/api/v1/systems/{system}/history"),
                None,
                true,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let h: History = r.typed();
        if enough(&h) || t0.elapsed() > Duration::from_secs(5) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_replays_after_last_event_id_and_survives_restart() {
    let l = lab().await;
    assert!(l.offer(NODE50).await.is_some());
    let h50 = history(&l, "node50", 1).await;
    assert!(l.offer(NODE51).await.is_some());
    let h51 = history(&l, "node51", 1).await;
    let (e50, e51) = (&h50.events[0], &h51.events[0]);
    assert_eq!(e50.kind, "observation");
    assert_eq!(e50.data["what"], "dhcp");
    assert_eq!(e50.system.as_deref(), Some("node50"));
    assert!(e50.id < e51.id);

    // From the start: both stored events, in order, each with its id.
    let all = sse(&l, "/api/v1/events", &[("Last-Event-ID", "0")], 2).await;
    assert_eq!(
        all.iter().map(|e| e.0).collect::<Vec<_>>(),
        [e50.id, e51.id]
    );
    assert_eq!(all[0].1["id"], e50.id);
    assert_eq!(all[1].1["system"], "node51");
    // After the first: the second (the header, and `?since=` alike).
    let id50 = e50.id.to_string();
    let rest = sse(&l, "/api/v1/events", &[("Last-Event-ID", &id50)], 1).await;
    assert_eq!(rest[0].0, e51.id);
    let rest = sse(&l, &format!("/api/v1/events?since={id50}"), &[], 1).await;
    assert_eq!(rest[0].0, e51.id);

    // Live after the replay: a new event arrives with a higher id, once.
    let id51 = e51.id.to_string();
    let hdr = [("Last-Event-ID", id51.as_str())];
    let (l, live) = {
        let reader = sse(&l, "/api/v1/events", &hdr, 1);
        let poke = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Another kind of observation: a second DHCP offer to an idle
            // machine within `observe::QUIET_MS` is only counted.
            let s = l.get(l.d.http_addr, "/ipxe/52-54-00-77-00-50").await;
            assert_eq!(s.status, 200);
        };
        let (live, ()) = tokio::join!(reader, poke);
        (l, live)
    };
    assert!(live[0].0 > e51.id);
    assert_eq!(live[0].1["system"], "node50");

    // A restart on the same data dir: still there.
    let Lab { c, d, .. } = l;
    d.stop().await;
    let l = lab_in(c).await;
    let again = sse(&l, "/api/v1/events", &[("Last-Event-ID", "0")], 3).await;
    assert_eq!(
        again.iter().map(|e| e.0).collect::<Vec<_>>(),
        [e50.id, e51.id, live[0].0]
    );
    l.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_refuses_bad_input() {
    let l = lab().await;
    for (path, hdr, want) in [
        ("/api/v1/events", Some("abc"), 400),
        ("/api/v1/events", Some("-1"), 400),
        ("/api/v1/events?since=x", None, 400),
        ("/api/v1/systems/nope/history", None, 404),
        ("/api/v1/systems/node50/history?limit=0", None, 400),
        ("/api/v1/systems/node50/history?limit=5000", None, 400),
        ("/api/v1/systems/node50/history?before=x", None, 400),
        ("/api/v1/systems/node50/history?limit=10", None, 200),
    ] {
        let (addr, p) = (l.d.api_addr, path.to_string());
        let status = tokio::task::spawn_blocking(move || {
            let h: Vec<(&str, &str)> = hdr.map(|v| vec![("Last-Event-ID", v)]).unwrap_or_default();
            crate::harness::http(addr, "GET", &p, &h, None).status
        })
        .await
        .unwrap();
        assert_eq!(status, want, "{path} {hdr:?}");
    }
    l.d.stop().await;
}

/// An idle machine's repeated DHCP is stored once per quiet window and the
/// repeats counted (`rackboot_observations_coalesced_total`); a machine with
/// a run has every observation stored (its timeline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_machines_repeats_are_counted_not_stored() {
    let l = lab().await;
    for _ in 0..5 {
        assert!(l.offer(NODE50).await.is_some());
    }
    // The run's machine: every offer is evidence.
    let r = l
        .api(
            "POST",
            "/api/v1/runs",
            Some(serde_json::json!({"systems": ["node51"]})),
            true,
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{}", r.text());
    history_where(&l, "node51", |h| {
        h.events.iter().any(|e| e.kind == "transition")
    })
    .await;
    for _ in 0..3 {
        assert!(l.offer(NODE51).await.is_some());
    }
    let dhcp = |h: &History| {
        h.events
            .iter()
            .filter(|e| e.kind == "observation" && e.data["what"] == "dhcp")
            .count()
    };
    // The feed stores in the background: wait for all three (a fourth
    // would still fail the count below).
    let h51 = history_where(&l, "node51", |h| dhcp(h) >= 3).await;
    assert_eq!(dhcp(&h51), 3, "{:?}", h51.events);
    let h50 = history(&l, "node50", 1).await;
    assert_eq!(dhcp(&h50), 1, "{:?}", h50.events);
    let m = l.api("GET", "/metrics", None, true).await.text();
    assert!(
        m.lines()
            .any(|x| x == "rackboot_observations_coalesced_total 4"),
        "{m}"
    );
    l.d.stop().await;
}
