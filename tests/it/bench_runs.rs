//! Benchmark (ignored; `bench/runs-bench.sh`): 200 reimages of 50 simulated
//! machines through the whole daemon. Fake BMCs; each power-on starts a
//! scripted machine that speaks real DHCP and HTTP on loopback, calls back,
//! "reboots" (DHCP again) and answers on its service port. Prints runs/s,
//! per-run time, the engine's transition latency and RSS.
//! `RACKBOOT_BENCH_DB=postgres`: the same on PostgreSQL (a throwaway server,
//! `src/store/testdb.rs`), shared inventory, claims and leases included.

use crate::harness::{http, http_from, ConfigDir};
use dhcproto::{Encodable, Encoder};
use rackboot::api;
use rackboot::daemon::{self, Listeners};
use rackboot::model::Mac;
use rackboot::power::{FakePower, Power, PowerConfig, PowerOp};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MACHINES: usize = 50;
const ROUNDS: usize = 4;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mac(i: usize) -> Mac {
    Mac([0x52, 0x54, 0x00, 0xbb, 0x00, i as u8])
}

/// The scripted machine: netboot, fetch, install, call back, reboot.
fn play(
    http_addr: SocketAddr,
    dhcp: &std::net::UdpSocket,
    dhcp_server: SocketAddr,
    m: Mac,
    ip: std::net::IpAddr,
) {
    let http = |a, meth, p: &str, h: &[(&str, &str)], b| http_from(Some(ip), a, meth, p, h, b);
    let discover = |xid: u32| {
        let msg = crate::dhcp::ipxe_discover(m, xid);
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        dhcp.send_to(&buf, dhcp_server).unwrap();
    };
    discover(1);
    let h = m.hyphenated();
    let script = http(http_addr, "GET", &format!("/ipxe/{h}"), &[], None).text();
    let done = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rig.done="))
        .map(|u| u[u.find("/done/").unwrap()..].to_string());
    let _ = http(http_addr, "GET", "/boot/vmlinuz", &[], None);
    let _ = http(http_addr, "GET", &format!("/ks/{h}"), &[], None);
    if let Some(done) = done {
        let _ = http(http_addr, "POST", &done, &[], None);
    }
    discover(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run bench/runs-bench.sh"]
async fn bench_200_reimages_of_50_machines() {
    let rss0 = rss_kib();
    let svc = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let svc_port = svc.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = svc.accept().await {
            let _ = s.write_all(b"SSH-2.0-bench\r\n").await;
        }
    });
    let c = ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "max_parallel_runs = 8",
        "max_parallel_runs = 50",
    );
    c.write(
        "profiles/bench.toml",
        &format!(
            "parent = \"lab\"\nreboots = true\nwait_ports = [{svc_port}]\n\
             [[stages]]\nname = \"configure\"\nkind = \"config\"\ncommand = \"true\"\n\
             [[stages]]\nname = \"test\"\nkind = \"test\"\ncommand = \"true\"\n"
        ),
    );
    let mut systems = String::new();
    for i in 0..MACHINES {
        systems.push_str(&format!(
            "\n[systems.b{i:02}]\nmacs = [\"{}\"]\nip = \"127.0.1.{}\"\nprofile = \"bench\"\n\
             [systems.b{i:02}.bmc]\nkind = \"ipmi\"\naddress = \"127.0.2.{}:623\"\nusername = \"admin\"\n\
             password_file = \"tests/lab/bmc-password\"\n",
            mac(i),
            i + 1,
            i + 1
        ));
    }
    c.append("systems.toml", &systems);
    let backend = std::env::var("RACKBOOT_BENCH_DB").unwrap_or_else(|_| "sqlite".into());
    let _db = match backend.as_str() {
        "postgres" => {
            let db = crate::pg::testdb::postgres("bench_runs")
                .await
                .expect("PostgreSQL for the bench");
            c.replace(
                "rackboot.toml",
                "[server]\n",
                &format!("[server]\ndatabase_url = \"{}\"\n", db.url),
            );
            Some(db)
        }
        "sqlite" => None,
        other => panic!("RACKBOOT_BENCH_DB={other}: sqlite or postgres"),
    };
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));

    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dhcp_server = server.local_addr().unwrap();
    let mut params =
        rackboot::dhcp::ServerParams::new(std::net::Ipv4Addr::new(10, 77, 0, 1), false);
    params.client_port = client.local_addr().unwrap().port();
    params.broadcast = client.local_addr().unwrap();
    // Drain the machines' DHCP replies.
    let drain = client.try_clone().unwrap();
    drain
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 1500];
        for _ in 0..100_000 {
            let _ = drain.recv_from(&mut b);
        }
    });
    let client = Arc::new(client);

    let fake = Arc::new(FakePower::default());
    let power = Arc::new(Power::new(
        fake.clone(),
        None,
        PowerConfig {
            min_interval: Duration::ZERO,
            max_parallel: 50,
            ..Default::default()
        },
    ));
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        dhcp: vec![(server, params)],
        tftp: None,
        dns: None,
    };
    let d = daemon::start_with(cfg, listeners, power).await.unwrap();
    let http_addr = d.http_addr;
    {
        let client = client.clone();
        let rt = tokio::runtime::Handle::current();
        *fake.on_power.lock().unwrap() = Some(Box::new(move |addr: &str, op: PowerOp| {
            if op == PowerOp::Off {
                return;
            }
            let i: usize = addr
                .trim_start_matches("127.0.2.")
                .trim_end_matches(":623")
                .parse()
                .unwrap();
            let client = client.clone();
            let ip = std::net::IpAddr::from([127, 0, 1, i as u8]);
            rt.spawn_blocking(move || play(http_addr, &client, dhcp_server, mac(i - 1), ip));
        }));
    }
    let token = std::fs::read_to_string(c.path().join(".lab/data/api-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let api = d.api_addr;
    let names: Vec<String> = (0..MACHINES).map(|i| format!("b{i:02}")).collect();

    // One run alone first: what the daemon adds to one reimage when nothing else runs.
    let mut solo = Vec::new();
    for _ in 0..5 {
        let (a, b) = (
            auth.clone(),
            serde_json::json!({"systems": ["b00"]}).to_string(),
        );
        let r = tokio::task::spawn_blocking(move || {
            http(
                api,
                "POST",
                "/api/v1/runs",
                &[("Authorization", &a)],
                Some(&b),
            )
        })
        .await
        .unwrap();
        let id = r.typed::<api::RunsCreated>().runs[0].id.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let id2 = id.clone();
            let v: api::RunDetail = tokio::task::spawn_blocking(move || {
                http(api, "GET", &format!("/api/v1/runs/{id2}"), &[], None).typed()
            })
            .await
            .unwrap();
            if v.run.terminal {
                assert_eq!(v.run.state, "succeeded", "{v:?}");
                solo.push(v.run.elapsed_s * 1000.0);
                break;
            }
            assert!(Instant::now() < deadline, "solo run stuck: {v:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    solo.sort_by(|a, b| a.partial_cmp(b).unwrap());

    let t0 = Instant::now();
    let mut peak_rss = 0;
    let mut ids = Vec::new();
    for _round in 0..ROUNDS {
        let body = serde_json::json!({ "systems": names }).to_string();
        let (a, b) = (auth.clone(), body.clone());
        let r = tokio::task::spawn_blocking(move || {
            http(
                api,
                "POST",
                "/api/v1/runs",
                &[("Authorization", &a)],
                Some(&b),
            )
        })
        .await
        .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        let round: Vec<String> = r
            .typed::<api::RunsCreated>()
            .runs
            .into_iter()
            .map(|r| r.id)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: Vec<api::Run> = tokio::task::spawn_blocking(move || {
                http(api, "GET", "/api/v1/runs?active=true&limit=500", &[], None).typed()
            })
            .await
            .unwrap();
            peak_rss = peak_rss.max(rss_kib());
            if v.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let st = tokio::task::spawn_blocking(move || {
                    http(api, "GET", "/api/v1/status", &[], None).json()
                })
                .await
                .unwrap();
                let id = v[0].id.clone();
                let one = tokio::task::spawn_blocking(move || {
                    http(api, "GET", &format!("/api/v1/runs/{id}"), &[], None).json()
                })
                .await
                .unwrap();
                panic!(
                    "round did not finish: status {st:#}\none stuck run: {one:#}\ncalls {}",
                    fake.calls.lock().unwrap().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ids.extend(round);
    }
    let wall = t0.elapsed();
    let runs: Vec<api::Run> = tokio::task::spawn_blocking(move || {
        http(api, "GET", "/api/v1/runs?limit=500", &[], None).typed()
    })
    .await
    .unwrap();
    let runs: Vec<&api::Run> = runs.iter().filter(|r| ids.contains(&r.id)).collect();
    let ok = runs.iter().filter(|r| r.state == "succeeded").count();
    let mut durs: Vec<f64> = runs.iter().map(|r| r.elapsed_s * 1000.0).collect();
    durs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |f: f64| durs[((durs.len() as f64 - 1.0) * f).round() as usize];
    let status =
        tokio::task::spawn_blocking(move || http(api, "GET", "/api/v1/status", &[], None).json())
            .await
            .unwrap();
    let eng = &status["engine"];
    println!("\n== rackboot run engine bench ({backend}): {} reimages of {MACHINES} simulated machines ({ROUNDS} rounds of {MACHINES} in parallel)", ids.len());
    println!(
        "  one run alone, created -> succeeded (machine and stages answering at once): median {:.0} ms (5 runs: {:?})",
        solo[2],
        solo.iter().map(|d| d.round() as i64).collect::<Vec<_>>()
    );
    println!("  succeeded: {ok}/{}", ids.len());
    println!(
        "  wall: {:.2} s  ->  {:.1} runs/s",
        wall.as_secs_f64(),
        ids.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "  per run, created -> succeeded (12 transitions, 2 stages, machine answering at once, 50 at a time): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        q(0.5),
        q(0.99),
        durs[durs.len() - 1]
    );
    println!(
        "  transition latency inside the daemon (event -> persisted + published): p50 {} us  p99 {} us  max {} us over {} transitions",
        eng["p50_us"], eng["p99_us"], eng["max_us"], eng["transitions"]
    );
    println!(
        "  RSS of the test process (daemon + 50 simulated machines): start {} MiB, peak {} MiB",
        rss0 / 1024,
        peak_rss / 1024
    );
    assert_eq!(ok, ids.len(), "every run succeeded");
    d.stop().await;
}
