//! The daemon on the PostgreSQL backend. The test database comes from the
//! store's own helper (src/store/testdb.rs: a throwaway server started once
//! per test process, skipped with a message when PostgreSQL is not
//! installed, unless CI or RACKBOOT_REQUIRE_TOOLS is set).

use crate::runs::{play_machine, resumes_after_daemon_restart, sim_with};

// What src/store/testdb.rs reaches as `super::…` inside the library.
pub use rackboot::store::{now_ms, redact_url, Store};
#[allow(dead_code)]
#[path = "../../src/store/testdb.rs"]
pub(crate) mod testdb;

/// The sim's config with `database_url` naming a fresh Postgres database.
async fn pg_sim(test: &str) -> Option<(crate::runs::Sim, testdb::TestDb)> {
    let db = testdb::postgres(test).await?;
    let sim = sim_on(&db.url, "").await;
    assert_eq!(sim.c.load().unwrap().settings.database_url, db.url);
    Some((sim, db))
}

/// The sim with `database_url = url` and `server` (more `[server]` lines).
async fn sim_on(url: &str, server: &str) -> crate::runs::Sim {
    sim_with("true", |c| {
        c.replace(
            "rackboot.toml",
            "[server]\n",
            &format!("[server]\ndatabase_url = \"{url}\"\n{server}"),
        )
    })
    .await
}

/// A whole reimage with `database_url = "postgres://…"`: the run, its
/// refusal of a second one, the netboot switch and the feed are all in
/// Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimage_on_postgres() {
    let Some((sim, db)) = pg_sim("reimage_on_postgres").await else {
        return;
    };
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = sim.create(&["sim1"]).await;
    assert_eq!(s, 409);
    sim.wait_state(&id, "dhcp", 5).await;
    play_machine(&sim, "52:54:00:aa:00:01".parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");

    // What the daemon stored is in Postgres.
    let s = db.open().await;
    assert_eq!(s.backend(), rackboot::store::Backend::Postgres);
    let run = s.get_run(&id).await.unwrap().expect("the run in Postgres");
    assert_eq!(run.state, "succeeded");
    assert!(run.finished_at.is_some());
    let states: Vec<String> = s
        .run_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.to_state)
        .collect();
    assert_eq!(states.first().map(String::as_str), Some("queued"));
    assert_eq!(states.last().map(String::as_str), Some("succeeded"));
    let feed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let f = s.feed_since(0, 1000).await.unwrap();
            if f.iter().any(|e| e.run_id.as_deref() == Some(id.as_str())) {
                return f;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the run's events reach the feed table");
    assert!(feed.windows(2).all(|w| w[0].id < w[1].id));
    assert!(s
        .netboot()
        .await
        .unwrap()
        .iter()
        .any(|n| n.system == "sim1"));
}

/// The engine reloads its runs and install tokens from Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_resumes_after_daemon_restart_on_postgres() {
    let Some((sim, _db)) = pg_sim("run_resumes_after_daemon_restart_on_postgres").await else {
        return;
    };
    resumes_after_daemon_restart(sim).await;
}

/// A sample config dir whose `database_url` names `db`.
fn shared_config(db: &testdb::TestDb) -> crate::harness::ConfigDir {
    let c = crate::harness::ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "[server]\n",
        &format!("[server]\ndatabase_url = \"{}\"\n", db.url),
    );
    c
}

/// Wait (bounded) until `daemon` lists system `name` (or no longer does).
async fn wait_listed(l: &crate::harness::Lab, name: &str, present: bool) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    for _ in 0..100 {
        let r = l
            .api("GET", &format!("/api/v1/systems/{name}"), None, true)
            .await;
        if (r.status == 200) == present {
            return t0.elapsed();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{name} present={present} not seen within 5 s");
}

/// Two daemons on one Postgres share the inventory: the first seeds it
/// from its files, the second serves the database's (not its own files');
/// an edit through either daemon's API or the CLI reaches the other within
/// 2 s; `export` → `import` → `export` is byte-stable; a broken import is
/// refused with file, key and reason and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_inventory_two_daemons_import_export() {
    use crate::admin::rb;
    use serde_json::json;
    let Some(db) = testdb::postgres("shared_inventory_two_daemons").await else {
        return;
    };
    let a = crate::harness::lab_in(shared_config(&db)).await;
    // B's own files lack node51: it serves the shared inventory anyway.
    let cb = shared_config(&db);
    let sys = cb.read("systems.toml");
    let cut = sys.find("[systems.node51]").expect("the sample has node51");
    let end = sys.find("[systems.node52]").expect("and node52");
    cb.write("systems.toml", &format!("{}{}", &sys[..cut], &sys[end..]));
    let b = crate::harness::lab_in(cb).await;
    wait_listed(&b, "node51", true).await;
    let s = db.open().await;
    assert_eq!(s.inventory_head().await.unwrap().unwrap().version, 1);

    // B's live event stream carries what A saw (the site's whole feed).
    let reader = {
        let addr = b.d.api_addr;
        tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let bearer = format!("Bearer {}", crate::harness::TOKEN);
            let s = crate::harness::client(addr)
                .stream_with("/api/v1/events", &[("Authorization", &bearer)])
                .unwrap();
            assert!(s.ok(), "status {}", s.status);
            for line in std::io::BufReader::new(s).lines() {
                let line = line.expect("the stream ended or timed out");
                if let Some(v) = line.strip_prefix("data:") {
                    let v: serde_json::Value = serde_json::from_str(v.trim()).unwrap();
                    if v["system"] == "node50" && v["type"] == "observation" {
                        return v;
                    }
                }
            }
            panic!("stream ended");
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(a.offer("52:54:00:77:00:50").await.is_some());
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .expect("B streams A's observation within 5 s")
        .unwrap();
    assert!(
        seen["detail"].as_str().unwrap_or("").contains("Dhcp"),
        "{seen}"
    );

    // An API edit on A reaches B.
    let new = json!({
        "name": "node67", "macs": ["52:54:00:77:00:67"], "ip": "10.77.0.67", "profile": "lab",
    });
    let r = a.api("POST", "/api/v1/systems", Some(new), true).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let took = wait_listed(&b, "node67", true).await;
    assert!(
        took < std::time::Duration::from_secs(2),
        "B saw it after {took:?}"
    );
    assert_eq!(s.inventory_head().await.unwrap().unwrap().version, 2);
    // A's own config dir is untouched: the database is the inventory.
    assert!(!a.c.read("systems.toml").contains("node67"));

    // A CLI edit (from B's config dir) reaches A, and the CLI lists it.
    let o = rb(
        &b.c,
        &[
            "systems",
            "add",
            "node68",
            "--mac",
            "52:54:00:77:00:68",
            "--ip",
            "10.77.0.68",
            "--profile",
            "lab",
        ],
    );
    assert_eq!(o.code, 0, "{}{}", o.out, o.err);
    assert!(o.out.contains("shared:systems.toml"), "{}", o.out);
    wait_listed(&a, "node68", true).await;
    let o = rb(&a.c, &["systems", "list"]);
    assert!(
        o.out.contains("node67") && o.out.contains("node68"),
        "{}",
        o.out
    );
    // A refused CLI edit changes nothing.
    let o = rb(
        &a.c,
        &[
            "systems",
            "add",
            "node69",
            "--mac",
            "52:54:00:77:00:68",
            "--ip",
            "10.77.0.69",
            "--profile",
            "lab",
        ],
    );
    assert_eq!(o.code, 1, "{}{}", o.out, o.err);
    assert_eq!(s.inventory_head().await.unwrap().unwrap().version, 3);

    // export → import → export: byte-stable.
    let x1 = tempfile::tempdir().unwrap();
    let x2 = tempfile::tempdir().unwrap();
    let o = rb(&a.c, &["export", x1.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}{}", o.out, o.err);
    let o = rb(&a.c, &["import", x1.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}{}", o.out, o.err);
    assert!(o.out.contains("version 4"), "{}", o.out);
    let o = rb(&b.c, &["export", x2.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}{}", o.out, o.err);
    let d1 = rackboot::shared::read_dir_docs(x1.path());
    assert!(d1.len() > 3, "{:?}", d1.keys());
    assert_eq!(d1, rackboot::shared::read_dir_docs(x2.path()));
    assert!(d1["systems.toml"].contains("node68"));

    // A broken import: refused with the file and key, nothing changes.
    std::fs::write(x1.path().join("profiles/lab.toml"), "kernel = 42\n").unwrap();
    let o = rb(&a.c, &["import", x1.path().to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}{}", o.out, o.err);
    assert!(
        o.err.contains("profiles/lab.toml") && o.err.contains("database is unchanged"),
        "{}",
        o.err
    );
    assert_eq!(s.inventory_head().await.unwrap().unwrap().version, 4);

    // An import that drops a system: both daemons stop serving it.
    let sys = std::fs::read_to_string(x2.path().join("systems.toml")).unwrap();
    let cut = sys.find("[systems.node68]").unwrap();
    std::fs::write(x2.path().join("systems.toml"), &sys[..cut]).unwrap();
    let o = rb(&b.c, &["import", x2.path().to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}{}", o.out, o.err);
    wait_listed(&a, "node68", false).await;
    wait_listed(&b, "node68", false).await;

    // The manual netboot switch set through A is served by B (its peer on
    // the segment) within 2 s, and cleared through B, by A.
    assert!(!node50_script_until(&b, "kernel", 1)
        .await
        .contains("kernel"));
    netboot_node50(&a, true).await;
    let t0 = std::time::Instant::now();
    let on = node50_script_until(&b, "kernel", 40).await;
    assert!(on.contains("kernel"), "B serves A's switch: {on}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    netboot_node50(&b, false).await;
    let off = node50_script_until(&a, "\nexit\n", 40).await;
    assert!(!off.contains("kernel"), "A follows B's switch: {off}");
    a.d.stop().await;
    b.d.stop().await;
}

/// The test database's URL through a [`relay`] in front of it, and the
/// relay's switch.
async fn relayed(db: &testdb::TestDb) -> (String, tokio::sync::watch::Sender<bool>) {
    let url: url_parts::Url = db.url.parse().unwrap();
    let (port, cut) = relay(url.addr).await;
    (url.with_port(port), cut)
}

/// A TCP relay on loopback to `upstream`: `true` on the returned sender
/// cuts every connection and refuses new ones (the database unreachable),
/// `false` restores it.
async fn relay(upstream: std::net::SocketAddr) -> (u16, tokio::sync::watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let mut rx = rx.clone();
            if *rx.borrow() {
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut u) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                    _ = rx.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    (port, tx)
}

async fn shared_status(l: &crate::harness::Lab) -> rackboot::api::SharedInventory {
    let r = l.api("GET", "/api/v1/status", None, true).await;
    let st: rackboot::api::Status = r.typed();
    st.shared
        .expect("a daemon on Postgres reports its shared inventory")
}

/// The database unreachable (a relay in front of it cut): the daemon keeps
/// answering DHCP reservations and serving its inventory, refuses changes
/// with 503 and the reason, and once the database is back it loads the
/// version written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_inventory_survives_the_database_going_away() {
    use serde_json::json;
    let Some(db) = testdb::postgres("shared_inventory_db_away").await else {
        return;
    };
    let (db_url, cut) = relayed(&db).await;
    let c = crate::harness::ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "[server]\n",
        &format!(
            "[server]\ndatabase_url = \"{}\"\nmax_stale = \"2s\"\n",
            db_url
        ),
    );
    let a = crate::harness::lab_in(c).await;
    let ip = a.offer("52:54:00:77:00:50").await;
    assert_eq!(ip, Some("10.77.0.50".parse().unwrap()));
    assert_eq!(shared_status(&a).await.error, None);
    // node50 is switched to netboot: its script is the installer's.
    netboot_node50(&a, true).await;
    let installer = node50_script_until(&a, "kernel", 1).await;
    assert!(installer.contains("kernel"), "{installer}");

    cut.send_replace(true);
    let mut down = None;
    for _ in 0..100 {
        let st = shared_status(&a).await;
        if st.error.is_some() {
            down = Some(st);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let down = down.expect("the daemon notices the database is gone within 5 s");
    assert_eq!(down.version, 1);
    // Boot services and snapshot reads go on.
    for _ in 0..5 {
        assert_eq!(a.offer("52:54:00:77:00:50").await, ip);
    }
    let r = a.api("GET", "/api/v1/systems/node50", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A change is refused at once, with the reason.
    let new = json!({"name": "node67", "macs": ["52:54:00:77:00:67"], "ip": "10.77.0.67", "profile": "lab"});
    let r = a.api("POST", "/api/v1/systems", Some(new), true).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("database_unavailable") && r.text().contains("unreachable"),
        "{}",
        r.text()
    );

    // Past max_stale (2 s) without the database: local disk, no installer.
    let local = node50_script_until(&a, "\nexit\n", 100).await;
    assert!(local.contains("booting from local disk"), "{local}");
    assert!(down.checked_at > 0);

    // Written meanwhile by another daemon (directly on the database).
    let s = db.open().await;
    let (head, docs) = s.inventory().await.unwrap().unwrap();
    let sys = docs
        .iter()
        .find(|(p, _)| p == "systems.toml")
        .unwrap()
        .1
        .clone();
    let add = "\n[systems.node67]\nmacs = [\"52:54:00:77:00:67\"]\nip = \"10.77.0.67\"\nprofile = \"lab\"\n";
    s.write_inventory(
        &[("systems.toml".into(), Some(format!("{sys}{add}")))],
        false,
        rackboot::store::InventoryExpect::Version(head.version),
        "peer",
        rackboot::store::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(
        a.offer("52:54:00:77:00:67").await,
        None,
        "not loaded while away"
    );

    cut.send_replace(false);
    let took = wait_listed(&a, "node67", true).await;
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    assert_eq!(
        a.offer("52:54:00:77:00:67").await,
        Some("10.77.0.67".parse().unwrap())
    );
    let st = shared_status(&a).await;
    assert_eq!((st.version, st.error), (2, None));
    // Fresh again: the installer is back.
    let back = node50_script_until(&a, "kernel", 60).await;
    assert!(back.contains("kernel"), "{back}");
    a.d.stop().await;
}

/// node50's iPXE script, asked every 50 ms (at most `tries` times) until
/// it contains `want`; the last one asked.
/// The netboot switch of node50, through `l`'s API.
async fn netboot_node50(l: &crate::harness::Lab, on: bool) {
    let r = l
        .api(
            "PUT",
            "/api/v1/systems/node50/netboot",
            Some(serde_json::json!({ "enabled": on })),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn node50_script_until(l: &crate::harness::Lab, want: &str, tries: u32) -> String {
    let addr = l.d.http_addr;
    let mut text = String::new();
    for _ in 0..tries {
        text = tokio::task::spawn_blocking(move || {
            crate::harness::http(addr, "GET", "/ipxe/52-54-00-77-00-50", &[], None)
        })
        .await
        .unwrap()
        .text();
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    text
}

/// Just enough of a `postgres://user@host:port/db` URL to move its port.
mod url_parts {
    pub struct Url {
        pub addr: std::net::SocketAddr,
        before: String,
        after: String,
    }

    impl std::str::FromStr for Url {
        type Err = String;
        fn from_str(s: &str) -> Result<Url, String> {
            let at = s.find('@').ok_or("no @")? + 1;
            let slash = at + s[at..].find('/').ok_or("no /")?;
            let addr = s[at..slash].parse().map_err(|e| format!("{e}"))?;
            Ok(Url {
                addr,
                before: s[..at].to_string(),
                after: s[slash..].to_string(),
            })
        }
    }

    impl Url {
        pub fn with_port(&self, port: u16) -> String {
            format!("{}{}:{port}{}", self.before, self.addr.ip(), self.after)
        }
    }
}

/// Takeover: daemon A drives a run into the install phase and crashes
/// (no clean stop, no release); daemon B, another node of the same domain,
/// fences A once its heartbeats are a lease TTL old, claims the run under a
/// new lease and drives it to the end from the step it reached. A late
/// write under A's lease is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_takes_over_the_runs_of_a_crashed_daemon() {
    let Some(db) = testdb::postgres("takeover").await else {
        return;
    };
    let mut sim = sim_on(&db.url, "lease_ttl = \"2s\"\nnode = \"a\"\n").await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let mac: rackboot::model::Mac = "52:54:00:aa:00:01".parse().unwrap();
    let done = sim.netboot_to_install(mac).await;
    sim.wait_state(&id, "install", 5).await;
    let store = db.open().await;
    let (owner_a, lease_a) = store.run_owner(&id).await.unwrap().unwrap();
    let owner_a = owner_a.expect("A owns the run");
    assert!(owner_a.starts_with("a#"), "{owner_a}");

    // B, another node of the same domain, starts beside A on the same
    // segment: it leaves sim1's DHCP to A, the owner of its run.
    sim.c
        .replace("rackboot.toml", "node = \"a\"", "node = \"b\"");
    let (client, server, params) = crate::harness::dhcp_loopback().await;
    let b_server = server.local_addr().unwrap();
    let b_client = std::sync::Arc::new(client);
    let b = crate::runs::start_daemon(&sim.c, sim.fake.clone(), vec![(server, params)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(sim.dhcp(mac).await.is_some(), "A, the owner, answers");
    let a_sockets = (sim.client.clone(), sim.dhcp_server);
    sim.client = b_client;
    sim.dhcp_server = b_server;
    assert_eq!(sim.dhcp(mac).await, None, "B leaves the machine to A");
    let mac2: rackboot::model::Mac = "52:54:00:aa:00:02".parse().unwrap();
    assert!(
        sim.dhcp(mac2).await.is_some(),
        "B answers a machine without a run"
    );
    drop(a_sockets);

    // A crashes: its tasks stop, nothing is released.
    let a = sim.d.take().unwrap();
    a.shutdown.cancel();
    let killed = std::time::Instant::now();
    drop(a);
    sim.d = Some(b);

    // B takes it over after the TTL (not at once: A's node is not B's).
    let mut owner_b = None;
    for _ in 0..200 {
        let (o, l) = store.run_owner(&id).await.unwrap().unwrap();
        if let Some(o) = o.filter(|o| o.starts_with("b#")) {
            owner_b = Some((o, l));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    let (owner_b, lease_b) = owner_b.expect("B claims the run within 10 s");
    assert!(
        lease_b > lease_a,
        "a new lease token: {lease_a} -> {lease_b}"
    );
    assert!(
        took >= std::time::Duration::from_secs(2),
        "not before the TTL: {took:?}"
    );
    println!("takeover: kill -> claimed by {owner_b} in {took:?}");
    // Now B answers the machine.
    assert!(sim.dhcp(mac).await.is_some(), "B, the new owner, answers");
    let daemons = store.daemons().await.unwrap();
    assert!(
        daemons.iter().any(|d| d.id == owner_a
            && d.fenced
            && d.fenced_by.as_deref() == Some(owner_b.as_str())),
        "A is fenced: {daemons:?}"
    );
    // A's late write is refused.
    let late = rackboot::store::Lease {
        owner: owner_a.clone(),
        token: lease_a,
    };
    assert!(!store
        .transition_fenced(
            &id,
            "install",
            "failed",
            "{}",
            Some("late"),
            true,
            "late",
            1,
            Some(&late)
        )
        .await
        .unwrap());

    // The installer finishes and calls back: B drives the run to the end.
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "callback after the takeover: {body}");
    assert!(sim.dhcp(mac).await.is_some());
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    assert_eq!(
        store.run_owner(&id).await.unwrap().unwrap().0,
        Some(owner_b)
    );
}

/// PostgreSQL itself goes away: `pg_ctl stop -m immediate` (a crash), down
/// for `RACKBOOT_PG_OUTAGE_SECS` (default 60, as in the issue), then
/// started again (crash recovery). Meanwhile DHCP answers every
/// reservation request, from the snapshot, also for the machine whose run
/// is under way, and the API refuses changes with 503 and the reason;
/// after it the run goes on from its step to success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_dhcp_answers_and_the_run_resumes() {
    let Some(pg) = testdb::own_postgres("pg_ctl_stop").await else {
        return;
    };
    let outage: u64 = std::env::var("RACKBOOT_PG_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let sim = sim_on(&pg.db.url, "").await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let m1: rackboot::model::Mac = "52:54:00:aa:00:01".parse().unwrap();
    let m2: rackboot::model::Mac = "52:54:00:aa:00:02".parse().unwrap();
    let ip2 = sim.dhcp(m2).await.expect("an answer before");

    let t0 = std::time::Instant::now();
    tokio::task::block_in_place(|| pg.stop_immediate());
    // For the whole outage: every reservation request answered, and the
    // API saying why it refuses changes (from a few seconds in).
    let (mut asked, mut answered, mut refused) = (0u32, 0u32, None);
    while t0.elapsed() < std::time::Duration::from_secs(outage) || refused.is_none() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(outage + 15),
            "no 503 within 15 s of the database going away"
        );
        for (mac, want) in [(m2, Some(ip2)), (m1, None)] {
            asked += 1;
            let got = sim.dhcp(mac).await;
            if got.is_some() && (want.is_none() || got == want) {
                answered += 1;
            }
        }
        // (A change is tried once the daemon has noticed: until then it
        // waits on the database, up to its 5 s acquire timeout per query.)
        let noticed = || async {
            let (_, st) = sim.api("GET", "/api/v1/status", None).await;
            st["shared"]["error"].is_string()
        };
        if refused.is_none() && noticed().await {
            let (s, v) = sim.create(&["sim2"]).await;
            if s == 503 {
                refused = Some(v);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let refused = refused.expect("503");
    assert_eq!(
        refused["error"]["code"], "database_unavailable",
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unreachable")),
        "{refused}"
    );
    println!(
        "database down {:?}: DHCP answered {answered}/{asked}",
        t0.elapsed()
    );
    assert_eq!(answered, asked, "DHCP answers every reservation request");
    assert!(asked >= 4);

    tokio::task::block_in_place(|| pg.start());
    let back = std::time::Instant::now();
    let mut created = None;
    for _ in 0..300 {
        let (s, v) = sim.create(&["sim2"]).await;
        if s == 201 {
            created = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    created.expect("the API takes changes again within 30 s");
    println!("API writable {:?} after the start", back.elapsed());
    // The run under way goes on from its step: the machine netboots again
    // (what it did meanwhile was answered but not recorded), installs and
    // calls back.
    let done = sim.netboot_to_install(m1).await;
    sim.wait_state(&id, "install", 30).await;
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body}");
    assert!(sim.dhcp(m1).await.is_some());
    let v = sim.wait_terminal(&id, 30).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
}

/// A BMC driver that counts the commands in flight per address, each
/// taking 30 ms: two daemons' commands to one BMC must never overlap.
#[derive(Default)]
struct Overlap {
    busy: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    worst: std::sync::atomic::AtomicU32,
    calls: std::sync::atomic::AtomicU32,
}

impl Overlap {
    fn call<'a, T: Send + 'a>(
        &'a self,
        bmc: &'a rackboot::inventory::Bmc,
        v: T,
    ) -> rackboot::power::BoxFut<'a, Result<T, rackboot::power::PowerError>> {
        Box::pin(async move {
            let n = {
                let mut b = self.busy.lock().unwrap();
                let n = b.entry(bmc.address.clone()).or_default();
                *n += 1;
                *n
            };
            self.worst.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            *self.busy.lock().unwrap().get_mut(&bmc.address).unwrap() -= 1;
            Ok(v)
        })
    }
}

impl rackboot::power::PowerDriver for Overlap {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn status<'a>(
        &'a self,
        _bmc: &'a rackboot::inventory::Bmc,
    ) -> rackboot::power::BoxFut<'a, Result<rackboot::power::PowerState, rackboot::power::PowerError>>
    {
        Box::pin(async { Ok(rackboot::power::PowerState::On) })
    }
    fn power<'a>(
        &'a self,
        bmc: &'a rackboot::inventory::Bmc,
        _op: rackboot::power::PowerOp,
    ) -> rackboot::power::BoxFut<'a, Result<(), rackboot::power::PowerError>> {
        self.call(bmc, ())
    }
    fn set_boot<'a>(
        &'a self,
        bmc: &'a rackboot::inventory::Bmc,
        _b: rackboot::power::BootSpec,
    ) -> rackboot::power::BoxFut<'a, Result<(), rackboot::power::PowerError>> {
        self.call(bmc, ())
    }
    fn get_boot<'a>(
        &'a self,
        bmc: &'a rackboot::inventory::Bmc,
    ) -> rackboot::power::BoxFut<'a, Result<rackboot::power::BootSpec, rackboot::power::PowerError>>
    {
        self.call(
            bmc,
            rackboot::power::BootSpec {
                dev: rackboot::power::BootDev::Disk,
                persistent: false,
                efi: false,
            },
        )
    }
}

/// Per-BMC exclusivity across daemons: two daemons (two `Power`s, each
/// with its store gate under its own daemon id) send commands to the same
/// two BMCs at once; a BMC never has two commands in flight, while the two
/// BMCs do run in parallel. A daemon that is fenced holds nothing: the
/// other takes the BMC at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_at_a_time_per_bmc() {
    use rackboot::engine::bmc_gate::StoreGate;
    use rackboot::power::{Power, PowerConfig, PowerOp};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    let Some(db) = testdb::postgres("bmc_gate").await else {
        return;
    };
    let store = db.open().await;
    let dom = vec!["default".to_string()];
    let driver = Arc::new(Overlap::default());
    let mut powers = Vec::new();
    for id in ["g1#1", "g2#1"] {
        store
            .register_daemon(id, id.split('#').next().unwrap(), &dom)
            .await
            .unwrap();
        let p = Power::new(
            driver.clone(),
            None,
            PowerConfig {
                min_interval: std::time::Duration::ZERO,
                ..Default::default()
            },
        );
        p.set_gate(Arc::new(StoreGate::new(
            store.clone(),
            Arc::new(Mutex::new(id.to_string())),
        )));
        powers.push(Arc::new(p));
    }
    let bmc = |a: &str| rackboot::inventory::Bmc {
        kind: rackboot::inventory::BmcKind::Ipmi,
        address: a.into(),
        username: "admin".into(),
        password: rackboot::inventory::SecretRef::Env("UNUSED".into()),
        cipher_suites: vec![],
        insecure_tls: false,
        system_id: None,
    };
    let t0 = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let p = powers[i % 2].clone();
        let b = bmc(if i % 4 < 2 {
            "10.0.9.1:623"
        } else {
            "10.0.9.2:623"
        });
        tasks.push(tokio::spawn(
            async move { p.power(&b, PowerOp::Cycle).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().expect("every command goes through");
    }
    let took = t0.elapsed();
    assert_eq!(driver.calls.load(Ordering::SeqCst), 24);
    assert_eq!(
        driver.worst.load(Ordering::SeqCst),
        1,
        "two commands in flight on one BMC"
    );
    // 12 commands of 30 ms per BMC, one at a time; the two BMCs overlap.
    assert!(
        took >= std::time::Duration::from_millis(360),
        "{took:?}: serialised per BMC"
    );
    println!("24 commands, 2 daemons, 2 BMCs: {took:?}");
    // g1 holds a BMC and is fenced (its node restarts): g2 takes it at once.
    assert_eq!(
        store
            .acquire_bmc("10.0.9.1:623", "g1#1", 60_000)
            .await
            .unwrap(),
        None
    );
    store.register_daemon("g1#2", "g1", &dom).await.unwrap();
    let t1 = std::time::Instant::now();
    powers[1]
        .power(&bmc("10.0.9.1:623"), PowerOp::On)
        .await
        .unwrap();
    assert!(t1.elapsed() < std::time::Duration::from_secs(2));
}

/// A daemon that learns it was fenced (its runs now a peer's) serves none
/// of them any more: the install-done callback it gets for such a run is
/// refused (the installer retries elsewhere or the owner's deadline
/// power-cycles), it leaves the machine's DHCP to the owner, and the
/// shared netboot switch stays on for the owner. Found by the drill: a
/// daemon resumed after SIGSTOP kept the run's netboot entry, took the
/// callback as a manual netboot's and turned the owner's switch off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_daemon_takes_no_callback_for_a_run_it_lost() {
    let Some(db) = testdb::postgres("fenced_callback").await else {
        return;
    };
    let sim = sim_on(&db.url, "lease_ttl = \"2s\"\nnode = \"a\"\n").await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let mac: rackboot::model::Mac = "52:54:00:aa:00:01".parse().unwrap();
    let done = sim.netboot_to_install(mac).await;
    sim.wait_state(&id, "install", 5).await;
    let store = db.open().await;
    let (owner_a, _) = store.run_owner(&id).await.unwrap().unwrap();
    let owner_a = owner_a.unwrap();
    // A is fenced (its clean stop, as seen by the database) and B, a peer
    // of the domain, claims the run before A can.
    store.retire_daemon(&owner_a).await.unwrap();
    let dom = vec!["default".to_string()];
    store.register_daemon("b#1", "b", &dom).await.unwrap();
    // B beats, so A (healthy again after one TTL) does not fence it.
    let b = beating(&store, "b#1");
    assert_eq!(store.claim_runs("b#1", &dom, 10).await.unwrap().len(), 1);
    // A's heartbeat tells it (every TTL / 6): it registers again.
    let mut again = false;
    for _ in 0..100 {
        let ds = store.daemons().await.unwrap();
        if ds.iter().any(|d| d.node == "a" && !d.fenced) {
            again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again, "A registers again after learning it was fenced");
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_ne!(s, 200, "the callback of a run A lost: {body}");
    let nb = store.netboot().await.unwrap();
    let row = nb
        .iter()
        .find(|n| n.system == "sim1")
        .expect("sim1's switch");
    assert!(
        row.enabled && row.run_id.as_deref() == Some(id.as_str()),
        "the owner's switch stays on: {row:?}"
    );
    assert_eq!(sim.dhcp(mac).await, None, "A leaves sim1's DHCP to B");
    assert_eq!(
        store.run_owner(&id).await.unwrap().unwrap().0.as_deref(),
        Some("b#1")
    );
    b.abort();
}

/// A stand-in peer's heartbeat (registered by the test, no daemon behind
/// it) every 200 ms for at most 2 minutes, so no daemon fences it.
fn beating(store: &Store, id: &'static str) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    tokio::spawn(async move {
        for _ in 0..600 {
            let _ = store.heartbeat(id).await;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
}

/// A daemon cut off from the database (alive, partitioned) while a peer of
/// its domain is alive: past 5/6 of the lease TTL without a heartbeat it
/// leaves its runs' machines to the peer, which may be taking them over (no
/// DHCP answer, no installer for them), and still answers machines without
/// a run. Once a heartbeat gets through and it was not fenced, it serves
/// its run again. A daemon alone keeps serving its runs through an outage
/// (`postgres_stopped_and_started_dhcp_answers_and_the_run_resumes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_daemon_leaves_its_runs_to_a_live_peer() {
    use std::time::{Duration, Instant};
    let Some(db) = testdb::postgres("partitioned").await else {
        return;
    };
    let (db_url, cut) = relayed(&db).await;
    let sim = sim_with("true", |c| {
        c.replace(
            "rackboot.toml",
            "[server]\n",
            &format!("[server]\ndatabase_url = \"{db_url}\"\nlease_ttl = \"3s\"\nnode = \"a\"\n"),
        );
        // The run waits in its boot phases through the partition.
        for phase in ["dhcp", "kernel"] {
            c.replace(
                "profiles/sim.toml",
                &format!("{phase} = \"5s\""),
                &format!("{phase} = \"120s\""),
            );
        }
    })
    .await;
    // A live peer of the domain: registered and heartbeating (the database
    // is all A knows of it).
    let store = db.open().await;
    let dom = vec!["default".to_string()];
    store.register_daemon("b#1", "b", &dom).await.unwrap();
    let peer = beating(&store, "b#1");
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    // A beat (every TTL / 6) sees the peer.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mac: rackboot::model::Mac = "52:54:00:aa:00:01".parse().unwrap();
    let mac2: rackboot::model::Mac = "52:54:00:aa:00:02".parse().unwrap();
    assert!(sim.dhcp(mac).await.is_some(), "A answers its run's machine");
    let script = "/ipxe/52-54-00-aa-00-01";
    assert!(sim.boot_http("GET", script).await.1.contains("kernel"));

    cut.send_replace(true);
    let t0 = Instant::now();
    let mut left = None;
    for _ in 0..60 {
        // When this DISCOVER went out (an unanswered one waits 2 s).
        let sent = t0.elapsed();
        if sim.dhcp(mac).await.is_none() {
            left = Some(sent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = left.expect("A leaves its run's machine to the live peer within 6 s");
    // 5/6 of 3 s after the last beat that got through (at most a beat,
    // 0.5 s, before the cut).
    assert!(
        left >= Duration::from_millis(1900),
        "not before the trust window: {left:?}"
    );
    println!("partitioned: run's machine left to the peer {left:?} after the cut");
    // /metrics says so (it reads no database).
    let standing_down = || {
        let (addr, auth) = (sim.d().api_addr, format!("Bearer {}", sim.token()));
        tokio::task::spawn_blocking(move || {
            let m =
                crate::harness::http(addr, "GET", "/metrics", &[("Authorization", &auth)], None)
                    .text();
            m.lines()
                .find_map(|l| l.strip_prefix("rackboot_ha_standing_down "))
                .map(str::to_string)
        })
    };
    assert_eq!(standing_down().await.unwrap().as_deref(), Some("1"));
    // So does the status (a read: answered while the database is away).
    let (code, st) = sim.api("GET", "/api/v1/status", None).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["engine"]["standing_down"], true, "{st}");
    let (_, body) = sim.boot_http("GET", script).await;
    assert!(
        !body.contains("kernel"),
        "no installer while standing down: {body}"
    );
    assert!(
        sim.dhcp(mac2).await.is_some(),
        "a machine without a run is answered"
    );

    // The database answers again; nobody fenced A: its run is its own.
    cut.send_replace(false);
    let t1 = Instant::now();
    let mut back = None;
    for _ in 0..100 {
        if sim.dhcp(mac).await.is_some() {
            back = Some(t1.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = back.expect("A serves its run again once a heartbeat gets through");
    assert_eq!(standing_down().await.unwrap().as_deref(), Some("0"));
    println!("partitioned: served again {back:?} after the database came back");
    assert!(sim.boot_http("GET", script).await.1.contains("kernel"));
    let (owner, _) = store.run_owner(&id).await.unwrap().unwrap();
    assert!(
        owner.is_some_and(|o| o.starts_with("a#")),
        "A still owns the run"
    );
    peer.abort();
}
