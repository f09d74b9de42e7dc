//! The daemon on the PostgreSQL backend. The test database comes from the
//! store's own helper (src/store/testdb.rs: a throwaway server started once
//! per test process, skipped with a message when PostgreSQL is not
//! installed, unless CI or RACKBOOT_REQUIRE_TOOLS is set).

use crate::runs::{play_machine, resumes_after_daemon_restart, sim_with};

// What src/store/testdb.rs reaches as `super::…` inside the library.
pub use rackboot::store::{now_ms, redact_url, Store};
#[allow(dead_code)]
#[path = "../../src/store/testdb.rs"]
mod testdb;

/// The sim's config with `database_url` naming a fresh Postgres database.
async fn pg_sim(test: &str) -> Option<(crate::runs::Sim, testdb::TestDb)> {
    let db = testdb::postgres(test).await?;
    let url = db.url.clone();
    let sim = sim_with("true", |c| {
        c.replace(
            "rackboot.toml",
            "[server]\n",
            &format!("[server]\ndatabase_url = \"{url}\"\n"),
        )
    })
    .await;
    assert_eq!(sim.c.load().unwrap().settings.database_url, db.url);
    Some((sim, db))
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
