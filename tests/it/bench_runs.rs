//! Benchmark (ignored; `bench/runs-bench.sh`): 200 reimages of 50 simulated
//! machines through the whole daemon. Fake BMCs; each power-on starts a
//! scripted machine that speaks real DHCP and HTTP on loopback, calls back,
//! "reboots" (DHCP again) and answers on its service port. Prints runs/s,
//! per-run time, the engine's transition latency and RSS.
//! `RACKBOOT_BENCH_DB=postgres`: the same on PostgreSQL (a throwaway server,
//! `src/store/testdb.rs`), shared inventory, claims and leases included.
//! `RACKBOOT_BENCH_DAEMONS=3` (PostgreSQL only): the scale-out, three daemons
//! in this process on one database, each for its own boot domain of
//! `RACKBOOT_BENCH_MACHINES` (default 100) machines; every round's runs are
//! created through the first daemon's API and claimed by each machine's
//! domain's daemon, which serves its DHCP, HTTP and callback.

use crate::harness::{http, http_from, ConfigDir};
use dhcproto::{Encodable, Encoder};
use rackboot::api;
use rackboot::daemon;
use rackboot::model::Mac;
use rackboot::power::{FakePower, Power, PowerConfig, PowerOp};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Machine `i` of daemon `k`: its MAC, its address (the source of its HTTP
/// requests), its BMC's address.
fn mac(k: usize, i: usize) -> Mac {
    Mac([0x52, 0x54, 0x00, 0xbb, k as u8, i as u8])
}

fn machine_ip(k: usize, i: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 1 + k as u8, 1, 1 + i as u8])
}

fn bmc_addr(k: usize, i: usize) -> String {
    format!("127.{}.2.{}:623", 1 + k, 1 + i)
}

/// `(k, i)` back from a BMC address.
fn of_bmc(addr: &str) -> (usize, usize) {
    let host = addr.trim_end_matches(":623");
    let o: Vec<usize> = host.split('.').map(|x| x.parse().unwrap()).collect();
    (o[1] - 1, o[3] - 1)
}

fn name(k: usize, i: usize) -> String {
    format!("b{k}{i:02}")
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

async fn get<T: serde::de::DeserializeOwned + Send + 'static>(api: SocketAddr, path: String) -> T {
    tokio::task::spawn_blocking(move || http(api, "GET", &path, &[], None).typed())
        .await
        .unwrap()
}

async fn post_runs(api: SocketAddr, auth: &str, names: &[String]) -> Vec<String> {
    let (a, b) = (
        auth.to_string(),
        serde_json::json!({ "systems": names }).to_string(),
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
    assert_eq!(r.status, 201, "{}", r.text());
    r.typed::<api::RunsCreated>()
        .runs
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn pct(v: &[f64], f: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * f).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run bench/runs-bench.sh"]
async fn bench_200_reimages_of_50_machines() {
    let env = |k: &str| std::env::var(k).ok();
    let daemons: usize = env("RACKBOOT_BENCH_DAEMONS").map_or(1, |v| v.parse().unwrap());
    let machines: usize = env("RACKBOOT_BENCH_MACHINES")
        .map_or(if daemons == 1 { 50 } else { 100 }, |v| v.parse().unwrap());
    assert!((1..=9).contains(&daemons) && (1..=250).contains(&machines));
    let backend = env("RACKBOOT_BENCH_DB").unwrap_or_else(|| "sqlite".into());
    assert!(
        daemons == 1 || backend == "postgres",
        "several daemons share PostgreSQL: RACKBOOT_BENCH_DB=postgres"
    );
    let rss0 = rss_kib();
    let svc = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let svc_port = svc.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = svc.accept().await {
            let _ = s.write_all(b"SSH-2.0-bench\r\n").await;
        }
    });
    let db = match backend.as_str() {
        "postgres" => Some(
            crate::pg::testdb::postgres("bench_runs")
                .await
                .expect("PostgreSQL for the bench"),
        ),
        "sqlite" => None,
        other => panic!("RACKBOOT_BENCH_DB={other}: sqlite or postgres"),
    };
    // Every daemon's files hold the whole site (the first one seeds the
    // shared inventory); each claims its own domain's runs.
    let mut systems = String::new();
    if daemons > 1 {
        systems.push_str("\n[boot_domains]\n");
        for k in 0..daemons {
            systems.push_str(&format!("d{k} = [\"127.{}.1.0/24\"]\n", 1 + k));
        }
    }
    for k in 0..daemons {
        for i in 0..machines {
            systems.push_str(&format!(
                "\n[systems.{}]\nmacs = [\"{}\"]\nip = \"{}\"\nprofile = \"bench\"\n\
                 [systems.{}.bmc]\nkind = \"ipmi\"\naddress = \"{}\"\nusername = \"admin\"\n\
                 password_file = \"tests/lab/bmc-password\"\n",
                name(k, i),
                mac(k, i),
                machine_ip(k, i),
                name(k, i),
                bmc_addr(k, i),
            ));
        }
    }
    let config = |k: usize| {
        let c = ConfigDir::sample();
        c.replace(
            "rackboot.toml",
            "max_parallel_runs = 8",
            &format!("max_parallel_runs = {machines}"),
        );
        c.write(
            "profiles/bench.toml",
            &format!(
                "parent = \"lab\"\nreboots = true\nwait_ports = [{svc_port}]\n\
                 [[stages]]\nname = \"configure\"\nkind = \"config\"\ncommand = \"true\"\n\
                 [[stages]]\nname = \"test\"\nkind = \"test\"\ncommand = \"true\"\n"
            ),
        );
        c.append("systems.toml", &systems);
        if let Some(db) = &db {
            let mut server = format!("[server]\ndatabase_url = \"{}\"\n", db.url);
            if daemons > 1 {
                server.push_str(&format!("node = \"n{k}\"\nboot_domains = [\"d{k}\"]\n"));
            }
            c.replace("rackboot.toml", "[server]\n", &server);
        }
        c
    };

    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // Drain the machines' DHCP replies (every daemon sends them here).
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
    let mut started = Vec::new();
    for k in 0..daemons {
        let c = config(k);
        let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
        // The daemon's own socket set-up (its 4 MiB receive buffer): 300
        // machines' bursts must not be dropped by a test-sized default.
        let server = rackboot::dhcp::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let dhcp_server = server.local_addr().unwrap();
        let mut params =
            rackboot::dhcp::ServerParams::new(std::net::Ipv4Addr::new(10, 77, 0, 1), false);
        params.client_port = client.local_addr().unwrap().port();
        params.broadcast = client.local_addr().unwrap();
        let power = Arc::new(Power::new(
            fake.clone(),
            None,
            PowerConfig {
                min_interval: Duration::ZERO,
                max_parallel: machines,
                ..Default::default()
            },
        ));
        let listeners = crate::harness::loopback_listeners(vec![(server, params)]).await;
        let d = daemon::start_with(cfg, listeners, power).await.unwrap();
        started.push((c, d, dhcp_server));
    }
    // Machine (k, i) netboots from daemon k: its DHCP and HTTP.
    let routes: Vec<(SocketAddr, SocketAddr)> =
        started.iter().map(|(_, d, s)| (d.http_addr, *s)).collect();
    {
        let client = client.clone();
        let rt = tokio::runtime::Handle::current();
        *fake.on_power.lock().unwrap() = Some(Box::new(move |addr: &str, op: PowerOp| {
            if op == PowerOp::Off {
                return;
            }
            let (k, i) = of_bmc(addr);
            let (http_addr, dhcp_server) = routes[k];
            let client = client.clone();
            rt.spawn_blocking(move || {
                play(http_addr, &client, dhcp_server, mac(k, i), machine_ip(k, i))
            });
        }));
    }
    let (c0, d0, _) = &started[0];
    let token = std::fs::read_to_string(c0.path().join(".lab/data/api-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let api = d0.api_addr;
    let names: Vec<String> = (0..daemons)
        .flat_map(|k| (0..machines).map(move |i| name(k, i)))
        .collect();
    let total = names.len();

    // One run alone first: what the daemon adds to one reimage when nothing else runs.
    let mut solo = Vec::new();
    for _ in 0..5 {
        let id = post_runs(api, &auth, &[name(0, 0)]).await.remove(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: api::RunDetail = get(api, format!("/api/v1/runs/{id}")).await;
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
    let mut done: Vec<api::Run> = Vec::new();
    let mut created = 0;
    for _round in 0..ROUNDS {
        let round = post_runs(api, &auth, &names).await;
        created += round.len();
        let deadline = Instant::now() + Duration::from_secs(20 * daemons as u64);
        loop {
            let v: Vec<api::Run> = get(api, "/api/v1/runs?active=true&limit=1000".into()).await;
            peak_rss = peak_rss.max(rss_kib());
            if v.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let mut st = Vec::new();
                for (_, d, _) in &started {
                    let v: serde_json::Value = get(d.api_addr, "/api/v1/status".into()).await;
                    st.push(
                        serde_json::json!({"engine": v["engine"], "dhcp": v["protocols"]["dhcp"],
                        "observations_dropped": v["protocols"]["observations_dropped"]}),
                    );
                }
                let st = serde_json::Value::Array(st);
                let one: serde_json::Value = get(api, format!("/api/v1/runs/{}", v[0].id)).await;
                panic!(
                    "round did not finish: status {st:#}\none stuck run: {one:#}\ncalls {}",
                    fake.calls.lock().unwrap().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Every daemon's list is the fleet's: this round's runs, from the first.
        let listed: Vec<api::Run> = get(api, "/api/v1/runs?limit=1000".into()).await;
        done.extend(listed.into_iter().filter(|r| round.contains(&r.id)));
    }
    let wall = t0.elapsed();
    let ok = done.iter().filter(|r| r.state == "succeeded").count();
    let mut durs: Vec<f64> = done.iter().map(|r| r.elapsed_s * 1000.0).collect();
    durs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let what = if daemons == 1 {
        backend.clone()
    } else {
        format!("{daemons} daemons on {backend}, a boot domain each")
    };
    println!(
        "\n== rackboot run engine bench ({what}): {created} reimages of {total} simulated machines ({ROUNDS} rounds of {total} in parallel)"
    );
    println!(
        "  one run alone, created -> succeeded (machine and stages answering at once): median {:.0} ms (5 runs: {:?})",
        solo[2],
        solo.iter().map(|d| d.round() as i64).collect::<Vec<_>>()
    );
    println!("  succeeded: {ok}/{created}");
    println!(
        "  wall: {:.2} s  ->  {:.1} runs/s",
        wall.as_secs_f64(),
        created as f64 / wall.as_secs_f64()
    );
    println!(
        "  per run, created -> succeeded (12 transitions, 2 stages, machine answering at once, {total} at a time): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        pct(&durs, 0.5),
        pct(&durs, 0.99),
        durs[durs.len() - 1]
    );
    for (k, (_, d, _)) in started.iter().enumerate() {
        let st: serde_json::Value = get(d.api_addr, "/api/v1/status".into()).await;
        let eng = &st["engine"];
        let who = if daemons == 1 {
            String::new()
        } else {
            format!(" (daemon {k})")
        };
        println!(
            "  transition latency inside the daemon{who} (event -> persisted + published): p50 {} us  p99 {} us  max {} us over {} transitions",
            eng["p50_us"], eng["p99_us"], eng["max_us"], eng["transitions"]
        );
    }
    println!(
        "  RSS of the test process ({daemons} daemon(s) + {total} simulated machines): start {} MiB, peak {} MiB",
        rss0 / 1024,
        peak_rss / 1024
    );
    assert_eq!(ok, created, "every run succeeded");
    for (_, d, _) in started {
        d.stop().await;
    }
}
