//! `GET /metrics` on the API listener: the whole daemon in-process (the run
//! simulation of `runs.rs`), a few DHCP packets and boot URLs, a reimage,
//! then the scrape: expected series and values, no per-machine labels, and
//! Prometheus' own `promtool check metrics` (Debian's `prometheus` package).

use crate::harness::{http, tool};
use crate::runs::{play_machine, sim, sim_with, Sim};
use dhcproto::{Encodable, Encoder};
use rackboot::model::Mac;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const MAC1: &str = "52:54:00:aa:00:01";
const UNKNOWN: &str = "02:00:00:00:0f:99";

type Labels = BTreeMap<String, String>;

/// Samples of a scrape: name → (sorted labels, value).
struct Scrape {
    text: String,
    samples: HashMap<String, Vec<(Labels, f64)>>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels: Labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("label pair");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        Scrape { text, samples }
    }

    /// The value of the series with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }

    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{}", self.text))
    }
}

async fn get(sim: &Sim, path: &str) -> crate::harness::HttpResponse {
    let addr = sim.d().api_addr;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || http(addr, "GET", &path, &[], None))
        .await
        .unwrap()
}

async fn scrape(sim: &Sim) -> Scrape {
    let r = get(sim, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("text/plain; version=0.0.4; charset=utf-8"));
    Scrape::parse(r.text())
}

/// Scrape until `done` holds (the DHCP loop counts asynchronously), at most 5 s.
async fn scrape_until(sim: &Sim, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(sim).await;
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send_dhcp(sim: &Sim, bytes: &[u8]) {
    sim.client.send_to(bytes, sim.dhcp_server).await.unwrap();
}

/// `promtool check metrics` on the scrape: exit 0, no lint output.
fn promtool_check(text: &str) {
    let Some(promtool) = tool(&["promtool"]) else {
        return;
    };
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {:?}\n{said}\n--- scrape ---\n{text}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_dhcp_http_and_a_reimage_pass_promtool() {
    let sim = sim("true").await;
    let mac1: Mac = MAC1.parse().unwrap();
    let unknown: Mac = UNKNOWN.parse().unwrap();

    // DHCP: a DISCOVER from a MAC outside the inventory (no answer), and a
    // datagram too short to be DHCP.
    let mut buf = Vec::new();
    crate::dhcp::ipxe_discover(unknown, 0x0f99)
        .encode(&mut Encoder::new(&mut buf))
        .unwrap();
    send_dhcp(&sim, &buf).await;
    send_dhcp(&sim, b"not dhcp").await;
    // Boot HTTP: a 404 on a known route (a MAC outside the inventory) and an unknown path.
    let (s, _) = sim
        .boot_http("GET", &format!("/ipxe/{}", unknown.hyphenated()))
        .await;
    assert_eq!(s, 404);
    let (s, _) = sim.boot_http("GET", "/no/such/route").await;
    assert_eq!(s, 404);
    // A wrong-token callback is refused.
    let (s, _) = sim
        .boot_http("POST", &format!("/done/{}?token=nope", mac1.hyphenated()))
        .await;
    assert_eq!(s, 403);

    // A whole simulated reimage: DHCP, script, kernel, config, callback, reboot, stages.
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let mid = scrape(&sim).await;
    assert_eq!(mid.value("rackboot_runs_active", &[]), 1.0);
    play_machine(&sim, mac1).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");

    let m = scrape_until(&sim, |m| {
        m.get("rackboot_dhcp_replies_total", &[("kind", "offer")]) == Some(2.0)
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| m.value(name, labels);

    // DHCP.
    assert_eq!(v("rackboot_dhcp_received_total", &[]), 4.0);
    assert_eq!(
        v("rackboot_dhcp_requests_total", &[("type", "discover")]),
        3.0
    );
    assert_eq!(
        v("rackboot_dhcp_requests_total", &[("type", "request")]),
        0.0
    );
    assert_eq!(v("rackboot_dhcp_replies_total", &[("kind", "offer")]), 2.0);
    assert_eq!(
        v("rackboot_dhcp_replies_total", &[("kind", "proxy_ack")]),
        0.0
    );
    assert_eq!(
        v("rackboot_dhcp_ignored_total", &[("reason", "no_answer")]),
        1.0
    );
    for reason in [
        "other_server",
        "no_requested_address",
        "not_boot_client",
        "proxy_inform",
        "too_big",
        "encode",
        "policy_panic",
    ] {
        assert_eq!(v("rackboot_dhcp_ignored_total", &[("reason", reason)]), 0.0);
    }
    assert_eq!(
        v("rackboot_dhcp_malformed_total", &[("class", "truncated")]),
        1.0
    );
    assert_eq!(
        v("rackboot_dhcp_malformed_total", &[("class", "options")]),
        0.0
    );
    assert_eq!(
        v("rackboot_dhcp_lease_events_total", &[("event", "release")]),
        0.0
    );
    assert_eq!(v("rackboot_dhcp_send_errors_total", &[]), 0.0);
    assert_eq!(v("rackboot_dhcp_replies_withheld_total", &[]), 0.0);
    // Pool gauges exist in pool mode only (the sample is reservations).
    assert!(m
        .get("rackboot_dhcp_pool_addresses", &[("state", "free")])
        .is_none());

    // Boot HTTP, by route template (never the concrete path).
    let route = |r: &str, class: &str| {
        v(
            "rackboot_http_requests_total",
            &[("route", r), ("status", class)],
        )
    };
    assert_eq!(route("/ipxe/{mac}", "2xx"), 2.0);
    assert_eq!(route("/ipxe/{mac}", "4xx"), 1.0);
    assert_eq!(route("/boot/{*path}", "2xx"), 1.0);
    assert_eq!(route("/ks/{mac}", "2xx"), 1.0);
    assert_eq!(route("/done/{mac}", "2xx"), 1.0);
    assert_eq!(route("/done/{mac}", "4xx"), 1.0);
    assert_eq!(route("unmatched", "4xx"), 1.0);
    assert_eq!(route("/firmware/{*path}", "5xx"), 0.0);
    assert_eq!(
        v("rackboot_http_callbacks_total", &[("result", "accepted")]),
        1.0
    );
    assert_eq!(
        v("rackboot_http_callbacks_total", &[("result", "refused")]),
        1.0
    );
    assert_eq!(
        v("rackboot_http_callbacks_total", &[("result", "not_taken")]),
        0.0
    );

    // TFTP is off in the simulation: its series are there, at zero.
    assert_eq!(v("rackboot_tftp_transfers_total", &[("result", "ok")]), 0.0);
    assert_eq!(v("rackboot_tftp_sent_bytes_total", &[]), 0.0);
    assert_eq!(v("rackboot_tftp_active_transfers", &[]), 0.0);

    // The run: one observation per phase it left (two stages), one whole run.
    let phase = |p: &str| v("rackboot_run_phase_duration_seconds_count", &[("phase", p)]);
    for p in [
        "queued", "locked", "bootdev", "power", "dhcp", "kernel", "config", "install", "reboot",
        "ports",
    ] {
        assert_eq!(phase(p), 1.0, "phase {p}");
    }
    assert_eq!(phase("stage"), 2.0);
    assert!(
        v(
            "rackboot_run_phase_duration_seconds_bucket",
            &[("phase", "dhcp"), ("le", "+Inf")]
        ) == 1.0
    );
    assert_eq!(
        v(
            "rackboot_run_duration_seconds_count",
            &[("result", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rackboot_run_duration_seconds_count",
            &[("result", "failed")]
        ),
        0.0
    );
    assert!(
        v(
            "rackboot_run_duration_seconds_sum",
            &[("result", "succeeded")]
        ) > 0.0
    );
    assert_eq!(v("rackboot_runs_active", &[]), 0.0);
    assert_eq!(v("rackboot_runs_queued", &[]), 0.0);
    assert!(v("rackboot_run_transitions_total", &[]) >= 12.0);

    // BMC calls through the power front door (the fake driver): set PXE,
    // status, on, and after the install callback set disk.
    let bmc = |op: &str| {
        v(
            "rackboot_bmc_call_duration_seconds_count",
            &[("driver", "fake"), ("op", op)],
        )
    };
    assert_eq!(bmc("set_bootdev"), 2.0);
    assert_eq!(bmc("status"), 1.0);
    assert_eq!(bmc("on"), 1.0);
    assert!(!m.samples.contains_key("rackboot_bmc_failures_total"));

    assert_eq!(v("rackboot_config_generation", &[]), 1.0);
    assert_eq!(
        v(
            "rackboot_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // No per-machine label by default: no MAC in any form, no system name.
    assert!(!m.samples.contains_key("rackboot_system_runs_total"));
    let lower = m.text.to_lowercase();
    for mac in [mac1, unknown, "52:54:00:aa:00:02".parse().unwrap()] {
        for form in [mac.to_string(), mac.hyphenated()] {
            assert!(
                !lower.contains(&form.to_lowercase()),
                "{form} in\n{}",
                m.text
            );
        }
    }
    for (name, series) in &m.samples {
        for (labels, _) in series {
            for (k, val) in labels {
                assert!(
                    val.parse::<Mac>().is_err() && !val.contains("sim1") && k != "system",
                    "{name}: label {k}={val}"
                );
            }
        }
    }

    promtool_check(&m.text);

    // Odd requests neither panic nor change the answer's shape.
    assert_eq!(get(&sim, "/metrics?x=%ZZ").await.status, 200);
    let addr = sim.d().api_addr;
    let post = tokio::task::spawn_blocking(move || http(addr, "POST", "/metrics", &[], None))
        .await
        .unwrap();
    assert_eq!(post.status, 405);
    // Scraping twice adds nothing by itself (counters mirror, they do not accumulate).
    let again = scrape(&sim).await;
    assert_eq!(
        again.value("rackboot_dhcp_requests_total", &[("type", "discover")]),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_per_system_adds_system_runs() {
    let sim = sim_with("true", |c| {
        c.replace(
            "rackboot.toml",
            "[api]\n",
            "[api]\nmetrics_per_system = true\n",
        )
    })
    .await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let (s, _) = sim
        .api("POST", &format!("/api/v1/runs/{id}/cancel"), None)
        .await;
    assert_eq!(s, 200);
    sim.wait_terminal(&id, 5).await;

    let m = scrape(&sim).await;
    assert_eq!(
        m.value(
            "rackboot_system_runs_total",
            &[("system", "sim1"), ("result", "cancelled")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "rackboot_run_duration_seconds_count",
            &[("result", "cancelled")]
        ),
        1.0
    );
    // The phase the run was cancelled in counts too.
    assert_eq!(
        m.value(
            "rackboot_run_phase_duration_seconds_count",
            &[("phase", "dhcp")]
        ),
        1.0
    );
    // Still no MAC anywhere.
    assert!(!m.text.contains(MAC1) && !m.text.contains("52-54-00-aa-00-01"));
    promtool_check(&m.text);
}

#[test]
fn metrics_per_system_setting_defaults_off() {
    let c = crate::harness::ConfigDir::sample();
    let s = rackboot::config::load_settings(c.path()).unwrap();
    assert!(!s.metrics_per_system);
    c.replace(
        "rackboot.toml",
        "[api]\n",
        "[api]\nmetrics_per_system = true\n",
    );
    assert!(
        rackboot::config::load_settings(c.path())
            .unwrap()
            .metrics_per_system
    );
    c.replace(
        "rackboot.toml",
        "metrics_per_system = true",
        "metrics_per_system = \"yes\"",
    );
    let e = rackboot::config::load_settings(c.path()).unwrap_err();
    assert!(e.to_string().contains("expected a boolean"), "{e}");
}
