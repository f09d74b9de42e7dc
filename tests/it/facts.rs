//! Hardware facts (issue 17.2, the report and its uses): a machine with a
//! pending run POSTs its facts with the run's token; malformed, oversized or
//! unauthenticated reports are refused whole; stored facts are served by the
//! API, shown by `systems show`, and reach stage commands only through the
//! environment and a JSON file.

use crate::admin::rb;
use crate::harness::http;
use crate::runs::{sim, Sim};
use rackboot::model::Mac;

const MAC1: &str = "52:54:00:aa:00:01";

async fn post(sim: &Sim, path: &str, body: String) -> (u16, String) {
    let addr = sim.d().http_addr;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let r = http(
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        (r.status, r.text())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_report_checked_stored_shown_and_given_to_stages() {
    // The test stage writes what it was given; the evil strings must arrive
    // as data (quoted expansions), and nothing in them may run.
    let sim = sim(
        // (a TOML basic string: its quotes escaped)
        r#"printf '%s\n' \"$RACKBOOT_FACT_CPU_MODEL\" \"$RACKBOOT_FACT_DISK0\" \"$RACKBOOT_FACT_MEMORY_MIB\" > {{ artifacts }}/facts-env.txt && cp \"$RACKBOOT_FACTS\" {{ artifacts }}/facts.json"#,
    )
    .await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    let mac: Mac = MAC1.parse().unwrap();
    sim.wait_state(&id, "dhcp", 5).await;
    let done = sim.netboot_to_install(mac).await;
    let facts_path = done.replacen("/done/", "/facts/", 1);
    let no_token = facts_path.split('?').next().unwrap().to_string();

    let pwned = sim.c.path().join("PWNED");
    let evil = format!("$(touch {p}); `touch {p}`; \"'", p = pwned.display());
    let good = serde_json::json!({
        "cpu": {"model": evil, "count": 4},
        "memory_mib": 2048,
        "disks": [{"name": "vda", "size_bytes": 21474836480u64, "model": "QEMU HARDDISK", "rotational": true}],
        "nics": [{"name": "eth0", "mac": MAC1, "link": true, "speed_mbps": 1000}],
        "dmi": {"vendor": "QEMU", "product": "Standard PC", "serial": "S1", "bios_version": "1.16"},
        "firmware": "bios",
        "secure_boot": false,
    });

    // Refused, nothing stored: no token, a wrong token, a control character,
    // an unknown key, not JSON, too large.
    let cases: Vec<(String, String, u16)> = vec![
        (no_token.clone(), good.to_string(), 403),
        (format!("{no_token}?token=nope"), good.to_string(), 403),
        (
            facts_path.clone(),
            good.to_string().replace("\"vda\"", "\"vda\\n; reboot\""),
            422,
        ),
        (
            facts_path.clone(),
            r#"{"memory_mib": 1, "shell": "id"}"#.into(),
            422,
        ),
        (facts_path.clone(), "memory=1".into(), 422),
        (
            facts_path.clone(),
            format!(r#"{{"dmi": {{"vendor": "{}"}}}}"#, "v".repeat(70_000)),
            413,
        ),
    ];
    for (path, body, want) in cases {
        let (s, text) = post(&sim, &path, body).await;
        assert_eq!(s, want, "{path}: {text}");
    }
    let (s, _) = sim.api("GET", "/api/v1/systems/sim1/facts", None).await;
    assert_eq!(s, 404, "nothing stored by a refused report");

    let (s, text) = post(&sim, &facts_path, good.to_string()).await;
    assert_eq!(s, 200, "{text}");
    let (s, v) = sim.api("GET", "/api/v1/systems/sim1/facts", None).await;
    assert_eq!(s, 200, "{v}");
    let report: rackboot::api::facts::FactsReport = serde_json::from_value(v).unwrap();
    assert_eq!(report.run_id.as_deref(), Some(id.as_str()));
    assert_eq!(report.facts.memory_mib, Some(2048));
    assert_eq!(report.facts.disks[0].name, "vda");

    // The rest of the run: callback, reboot, ports, stages.
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body}");
    assert!(sim.dhcp(mac).await.is_some());
    let v = sim.wait_terminal(&id, 30).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let art = sim
        .c
        .path()
        .join(".lab/data/runs")
        .join(&id)
        .join("artifacts");
    let env = std::fs::read_to_string(art.join("facts-env.txt")).unwrap();
    assert_eq!(env, format!("{evil}\nvda\n2048\n"));
    let file: rackboot::api::facts::Facts =
        serde_json::from_str(&std::fs::read_to_string(art.join("facts.json")).unwrap()).unwrap();
    assert_eq!(file, report.facts);
    assert!(!pwned.exists(), "nothing in the facts ran");

    // `systems show` prints them (asked of the running daemon).
    let c = &sim.c;
    let api = sim.d().api_addr.to_string();
    let out = rb(c, &["--api", &api, "systems", "show", "sim1"]);
    assert_eq!(out.code, 0, "{}", out.err);
    assert!(out.out.contains("facts.memory    2048 MiB"), "{}", out.out);
    assert!(
        out.out
            .contains("facts.disk      vda 20.0 GiB QEMU HARDDISK (rotational)"),
        "{}",
        out.out
    );
    // The feed has the report.
    let (_, hist) = sim.api("GET", "/api/v1/systems/sim1/history", None).await;
    assert!(hist.to_string().contains("\"facts\""), "{hist}");
}

/// `rackboot inspect`: an inspection run netboots the `inspect` profile's
/// image, which reports its facts to `urls.facts` (from its kernel args);
/// the report ends the run and the machine is powered off. A retry is an
/// inspection run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_run_netboots_the_image_stores_facts_and_powers_off() {
    let sim = crate::runs::sim_with("true", |c| {
        c.write(
            "profiles/inspect.toml",
            "parent = \"lab\"\ndescription = \"hardware inspection\"\nkernel_args = \"console=ttyS0 rackboot.facts={{ urls.facts }}\"\n[timeouts]\npower = \"5s\"\ndhcp = \"5s\"\nkernel = \"5s\"\ninstall = \"10s\"\n",
        );
    })
    .await;
    let body = serde_json::json!({"systems": ["sim1"], "kind": "inspect"}).to_string();
    let (s, v) = sim.api("POST", "/api/v1/runs", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["runs"][0]["profile"], "inspect");
    let (s, v) = sim
        .api(
            "POST",
            "/api/v1/runs",
            Some(serde_json::json!({"systems": ["sim2"], "kind": "nope"}).to_string()),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    let mac: Mac = MAC1.parse().unwrap();
    // The machine boots once the engine has power-cycled it.
    sim.wait_state(&id, "dhcp", 5).await;
    assert!(sim.dhcp(mac).await.is_some());
    let (s, script) = sim
        .boot_http("GET", &format!("/ipxe/{}", mac.hyphenated()))
        .await;
    assert_eq!(s, 200);
    let url = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackboot.facts="))
        .unwrap_or_else(|| panic!("facts URL in the kernel args: {script}"));
    let path = url[url.find("/facts/").unwrap()..].to_string();
    let (s, _) = sim.boot_http("GET", "/boot/vmlinuz").await;
    assert_eq!(s, 200);
    sim.wait_state(&id, "inspect", 5).await;
    let report = serde_json::json!({
        "cpu": {"model": "QEMU Virtual CPU", "count": 1}, "memory_mib": 512,
        "disks": [{"name": "vda", "size_bytes": 4294967296u64}],
        "nics": [{"name": "eth0", "mac": MAC1, "link": true}],
        "firmware": "bios", "secure_boot": false,
    });
    let (s, text) = post(&sim, &path, report.to_string()).await;
    assert_eq!(s, 200, "{text}");
    let v = sim.wait_terminal(&id, 10).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    assert_eq!(v["kind"], "inspect");
    let phases: Vec<String> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(phases.contains(&"inspect".to_string()), "{phases:?}");
    assert!(
        !phases.iter().any(|p| p == "install" || p == "reboot"),
        "{phases:?}"
    );
    // Powered off at the end (the fake BMC records it).
    let t = std::time::Instant::now();
    loop {
        let calls = sim.fake.calls.lock().unwrap().clone();
        if calls.iter().any(|c| c == "127.0.0.1:1 power off") {
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{calls:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, v) = sim.api("GET", "/api/v1/systems/sim1/facts", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["facts"]["memory_mib"], 512);
    assert_eq!(v["run_id"], id.as_str());
    // The netboot switch is off again: the next boot is local.
    let (_, script) = sim
        .boot_http("GET", &format!("/ipxe/{}", mac.hyphenated()))
        .await;
    assert!(script.contains("\nexit\n"), "{script}");
    // A retry is an inspection run again.
    let (s, v) = sim
        .api("POST", &format!("/api/v1/runs/{id}/retry"), None)
        .await;
    assert_eq!(s, 201, "{v}");
    let retry = v["runs"][0]["id"].as_str().unwrap().to_string();
    let (_, v) = sim.api("GET", &format!("/api/v1/runs/{retry}"), None).await;
    assert_eq!(v["kind"], "inspect", "{v}");
}
