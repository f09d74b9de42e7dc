use super::*;

fn new_run<'a>(id: &'a str, system: &'a str) -> NewRun<'a> {
    NewRun {
        id,
        system,
        profile: "lab",
        state: "queued",
        data: "{}",
        requested_by: Some("test"),
        overrides: "{}",
        retry_of: None,
    }
}

#[tokio::test]
async fn migrations_apply_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/r.db").display());
    let s = Store::open(&url).await.unwrap();
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5]);
    s.close().await;
    // Re-opening runs the migrator again: nothing new, nothing broken.
    let s = Store::open(&url).await.unwrap();
    assert_eq!(s.schema_versions().await.unwrap(), vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn run_round_trip_and_cas_transition() {
    let s = Store::memory().await.unwrap();
    s.create_run(&new_run("r1", "node50"), 1000).await.unwrap();
    let r = s.get_run("r1").await.unwrap().unwrap();
    assert_eq!(r.state, "queued");
    assert_eq!(r.created_at, 1000);
    assert_eq!(r.finished_at, None);

    assert!(s
        .transition(
            "r1",
            "queued",
            "locked",
            "{\"a\":1}",
            None,
            false,
            "locked",
            1100
        )
        .await
        .unwrap());
    // A stale writer that still thinks the run is queued loses.
    assert!(!s
        .transition("r1", "queued", "cancelled", "{}", None, true, "x", 1200)
        .await
        .unwrap());
    assert!(s
        .transition(
            "r1",
            "locked",
            "failed",
            "{}",
            Some("BMC unreachable"),
            true,
            "power",
            1300
        )
        .await
        .unwrap());
    let r = s.get_run("r1").await.unwrap().unwrap();
    assert_eq!(r.state, "failed");
    assert_eq!(r.data, "{}");
    assert_eq!(r.reason.as_deref(), Some("BMC unreachable"));
    assert_eq!(r.finished_at, Some(1300));

    let ev = s.run_events("r1").await.unwrap();
    let states: Vec<_> = ev.iter().map(|e| (e.at, e.to_state.as_str())).collect();
    assert_eq!(
        states,
        vec![(1000, "queued"), (1100, "locked"), (1300, "failed")]
    );
    assert_eq!(ev[2].from_state.as_deref(), Some("locked"));
}

#[tokio::test]
async fn active_runs_and_filters() {
    let s = Store::memory().await.unwrap();
    s.create_run(&new_run("a", "n1"), 1).await.unwrap();
    s.create_run(&new_run("b", "n2"), 2).await.unwrap();
    s.create_run(&new_run("c", "n1"), 3).await.unwrap();
    s.transition("a", "queued", "succeeded", "{}", None, true, "", 4)
        .await
        .unwrap();
    let active: Vec<_> = s
        .active_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, vec!["b", "c"]);
    let n1: Vec<_> = s
        .list_runs(&RunFilter {
            system: Some("n1".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(n1, vec!["c", "a"]);
    let done = s
        .list_runs(&RunFilter {
            state: Some("succeeded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
}

#[tokio::test]
async fn stages_and_artifacts() {
    let s = Store::memory().await.unwrap();
    s.create_run(&new_run("r", "n"), 1).await.unwrap();
    let mut st = StageRow {
        run_id: "r".into(),
        seq: 0,
        name: "configure".into(),
        kind: "config".into(),
        status: "running".into(),
        exit_code: None,
        started_at: 10,
        finished_at: None,
        log_path: "stages/00-configure.log".into(),
    };
    s.upsert_stage(&st).await.unwrap();
    st.status = "passed".into();
    st.exit_code = Some(0);
    st.finished_at = Some(20);
    s.upsert_stage(&st).await.unwrap();
    assert_eq!(s.stages("r").await.unwrap(), vec![st]);

    let a = ArtifactRow {
        path: "report.xml".into(),
        size: 42,
        sha256: "ab".repeat(32),
    };
    s.add_artifact("r", &a).await.unwrap();
    s.add_artifact("r", &a).await.unwrap();
    assert_eq!(s.artifacts("r").await.unwrap(), vec![a]);
}

#[tokio::test]
async fn leases_group_commit_and_ip_move() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let s = Store::open(&url).await.unwrap();
    let l1 = LeaseRow {
        mac: "52:54:00:00:00:01".into(),
        ip: "10.0.0.10".into(),
        hostname: None,
        expires_at: 100,
    };
    let l2 = LeaseRow {
        mac: "52:54:00:00:00:02".into(),
        ip: "10.0.0.11".into(),
        hostname: Some("b".into()),
        expires_at: 100,
    };
    s.upsert_leases(&[l1.clone(), l2.clone()], 5).await.unwrap();
    // 10.0.0.10 moves to a third MAC: the old holder loses it.
    let l3 = LeaseRow {
        mac: "52:54:00:00:00:03".into(),
        ip: "10.0.0.10".into(),
        hostname: None,
        expires_at: 200,
    };
    s.upsert_leases(std::slice::from_ref(&l3), 6).await.unwrap();
    s.close().await;
    // Survives a reopen.
    let s = Store::open(&url).await.unwrap();
    assert_eq!(s.leases().await.unwrap(), vec![l3, l2.clone()]);
    s.delete_lease(&l2.mac).await.unwrap();
    assert_eq!(s.leases().await.unwrap().len(), 1);
}

/// The bulk form behaves like row by row: moves, renewals, duplicates in
/// one batch, chunks, and an IP handed from one MAC to another in one batch.
#[tokio::test]
async fn leases_bulk_matches_row_by_row() {
    let l = |m: u32, ip: u32, exp: i64| LeaseRow {
        mac: format!("52:54:00:00:{:02x}:{:02x}", m / 256, m % 256),
        ip: format!("10.1.{}.{}", ip / 256, ip % 256),
        hostname: None,
        expires_at: exp,
    };
    let s = Store::memory().await.unwrap();
    let first: Vec<LeaseRow> = (0..1200).map(|i| l(i, i, 1)).collect();
    s.upsert_leases(&first, 1).await.unwrap();
    assert_eq!(s.leases().await.unwrap().len(), 1200);
    // MAC 0 renews twice, MAC 1 moves to a new IP, MAC 5000 takes MAC 2's IP,
    // MAC 3 gives its IP to MAC 5001 after moving off it.
    let batch = vec![
        l(0, 0, 2),
        l(1, 9000, 2),
        l(0, 0, 3),
        l(5000, 2, 2),
        l(3, 9001, 2),
        l(5001, 3, 2),
    ];
    s.upsert_leases(&batch, 2).await.unwrap();
    let got: std::collections::HashMap<String, (String, i64)> = s
        .leases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.mac, (r.ip, r.expires_at)))
        .collect();
    assert_eq!(got.len(), 1200 - 1 + 2);
    assert_eq!(got[&l(0, 0, 0).mac], (l(0, 0, 0).ip, 3));
    assert_eq!(got[&l(1, 0, 0).mac].0, l(0, 9000, 0).ip);
    assert!(!got.contains_key(&l(2, 0, 0).mac));
    assert_eq!(got[&l(5000, 0, 0).mac].0, l(0, 2, 0).ip);
    assert_eq!(got[&l(3, 0, 0).mac].0, l(0, 9001, 0).ip);
    assert_eq!(got[&l(5001, 0, 0).mac].0, l(0, 3, 0).ip);
    // One IP to two MACs in the order only row-by-row can express.
    s.upsert_leases(&[l(7000, 7000, 5), l(7001, 7000, 5)], 3)
        .await
        .unwrap();
    let got = s.leases().await.unwrap();
    assert!(got.iter().any(|r| r.mac == l(7001, 0, 0).mac));
    assert!(!got.iter().any(|r| r.mac == l(7000, 0, 0).mac));
}

#[tokio::test]
async fn netboot_switch() {
    let s = Store::memory().await.unwrap();
    assert!(s.netboot().await.unwrap().is_empty());
    s.set_netboot("node50", true, Some("r1"), Some("tok"), false)
        .await
        .unwrap();
    s.set_netboot("node51", false, None, None, false)
        .await
        .unwrap();
    s.set_netboot("node50", false, None, None, false)
        .await
        .unwrap();
    let nb = s.netboot().await.unwrap();
    assert_eq!(nb.len(), 2);
    assert!(!nb[0].enabled);
    assert_eq!(nb[0].token, None);
    s.set_netboot("node51", true, Some("persistent-1"), Some("t"), true)
        .await
        .unwrap();
    let nb = s.netboot().await.unwrap();
    assert!(nb[1].persistent && !nb[0].persistent);
}

#[tokio::test]
async fn refuses_unknown_backend() {
    match Store::open("mysql://x").await {
        Err(StoreError::Unsupported(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("mysql accepted"),
    }
}

fn feed_ev(at: i64, kind: &str, system: Option<&str>) -> NewFeed {
    NewFeed {
        at,
        kind: kind.into(),
        system: system.map(String::from),
        run_id: None,
        data: format!("{{\"at\":{at}}}"),
    }
}

#[tokio::test]
async fn feed_ids_order_replay_and_history() {
    let s = Store::memory().await.unwrap();
    assert_eq!(s.feed_head().await.unwrap(), 0);
    let ids = s
        .append_feed(&[
            feed_ev(1, "observation", Some("a")),
            feed_ev(2, "transition", Some("b")),
            feed_ev(3, "observation", Some("a")),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2]);
    assert_eq!(s.feed_head().await.unwrap(), ids[2]);
    // Replay after the first id: the other two, oldest first.
    let since = s.feed_since(ids[0], 100).await.unwrap();
    assert_eq!(since.iter().map(|r| r.id).collect::<Vec<_>>(), ids[1..]);
    assert_eq!(since[0].kind, "transition");
    assert_eq!(since[1].data, "{\"at\":3}");
    // One system's history, newest first, paged by id.
    let a = s.feed_of_system("a", None, 10).await.unwrap();
    assert_eq!(a.iter().map(|r| r.at).collect::<Vec<_>>(), [3, 1]);
    let older = s.feed_of_system("a", Some(a[0].id), 10).await.unwrap();
    assert_eq!(older.iter().map(|r| r.at).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn feed_prune_by_age_and_per_system_cap() {
    let s = Store::memory().await.unwrap();
    let mut evs = Vec::new();
    for at in 1..=10 {
        evs.push(feed_ev(at, "observation", Some("a")));
    }
    evs.push(feed_ev(5, "observation", Some("b")));
    evs.push(feed_ev(1, "reload", None));
    s.append_feed(&evs).await.unwrap();
    // Older than 2 goes (a@1, reload@1); then a keeps its newest 3.
    let gone = s.prune_feed(2, 3).await.unwrap();
    assert_eq!(gone, 2 + 6);
    let a = s.feed_of_system("a", None, 100).await.unwrap();
    assert_eq!(a.iter().map(|r| r.at).collect::<Vec<_>>(), [10, 9, 8]);
    assert_eq!(s.feed_of_system("b", None, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn audit_pages_newest_first_and_filters_by_target() {
    let s = Store::memory().await.unwrap();
    for i in 0..5 {
        let e = crate::api::AuditEntry {
            id: 0,
            at: 1000 + i,
            actor: "jenkins".into(),
            scope: "operate".into(),
            via: "api".into(),
            remote: "127.0.0.1".into(),
            action: "POST /api/v1/runs".into(),
            path: "/api/v1/runs".into(),
            target: if i % 2 == 0 { "a" } else { "b" }.into(),
            status: 201,
            detail: serde_json::json!({ "i": i }),
        };
        s.append_audit(&e).await.unwrap();
    }
    let all = s.audit(0, 10, None).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.at).collect::<Vec<_>>(),
        [1004, 1003, 1002, 1001, 1000]
    );
    assert_eq!(all[0].detail["i"], 4);
    let page2 = s.audit(all[1].id, 2, None).await.unwrap();
    assert_eq!(page2.iter().map(|e| e.at).collect::<Vec<_>>(), [1002, 1001]);
    let a = s.audit(0, 10, Some("a")).await.unwrap();
    assert_eq!(
        a.iter().map(|e| e.at).collect::<Vec<_>>(),
        [1004, 1002, 1000]
    );
}
