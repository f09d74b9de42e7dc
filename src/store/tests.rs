use super::testdb::{self, TestDb};
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
        domain: "default",
    }
}

fn sighting(mac: &str, arch: Option<&str>, first: i64, last: i64, count: i64) -> DiscoveredRow {
    DiscoveredRow {
        mac: mac.into(),
        arch: arch.map(Into::into),
        vendor_class: Some("PXEClient:Arch:00000:UNDI:002001".into()),
        ipxe: false,
        proxy: false,
        relay: None,
        interface: Some("br0".into()),
        hostname: None,
        first_seen: first,
        last_seen: last,
        count,
    }
}

/// Batches merge per MAC (counts add, the seen window widens, newer
/// details win, a missing detail keeps the old one), and the table keeps
/// only the `cap` most recently seen.
async fn discovered_merge_and_cap(db: TestDb) {
    let s = db.open().await;
    let a = "52:54:00:00:00:0a";
    let b = "52:54:00:00:00:0b";
    let c = "52:54:00:00:00:0c";
    let w = s
        .upsert_discovered(
            &[
                sighting(a, Some("bios"), 100, 200, 3),
                sighting(b, None, 150, 150, 1),
            ],
            10,
        )
        .await
        .unwrap();
    assert_eq!(w.pruned, 0);
    assert_eq!(w.new, vec![a.to_string(), b.to_string()], "first sightings");
    let mut later = sighting(a, None, 50, 900, 2);
    later.ipxe = true;
    later.relay = Some("10.9.0.1".into());
    later.vendor_class = None;
    let w = s.upsert_discovered(&[later], 10).await.unwrap();
    assert!(w.new.is_empty(), "a is known: {w:?}");
    let got = s.discovered_one(a).await.unwrap().unwrap();
    assert_eq!((got.first_seen, got.last_seen, got.count), (50, 900, 5));
    assert_eq!(
        got.arch.as_deref(),
        Some("bios"),
        "a missing arch keeps the old one"
    );
    assert_eq!(
        got.vendor_class.as_deref(),
        Some("PXEClient:Arch:00000:UNDI:002001")
    );
    assert!(got.ipxe);
    assert_eq!(got.relay.as_deref(), Some("10.9.0.1"));

    // Cap 2: the least recently seen (b, last seen 150) goes.
    let w = s
        .upsert_discovered(&[sighting(c, Some("efi-x64"), 300, 300, 1)], 2)
        .await
        .unwrap();
    assert_eq!((w.pruned, w.new), (1, vec![c.to_string()]));
    let all: Vec<String> = s
        .discovered(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.mac)
        .collect();
    assert_eq!(all, vec![a.to_string(), c.to_string()], "newest first");
    assert!(s.remove_discovered(c).await.unwrap());
    assert!(!s.remove_discovered(c).await.unwrap());
    assert_eq!(s.discovered(100).await.unwrap().len(), 1);
}

/// The last report wins.
async fn facts_last_report_wins(db: TestDb) {
    let s = db.open().await;
    assert_eq!(s.facts("n1").await.unwrap(), None);
    let mut f = FactsRow {
        system: "n1".into(),
        at: 10,
        run_id: Some("r1".into()),
        data: "{\"memory_mib\":1}".into(),
    };
    s.put_facts(&f).await.unwrap();
    f.at = 20;
    f.data = "{\"memory_mib\":2}".into();
    f.run_id = None;
    s.put_facts(&f).await.unwrap();
    assert_eq!(s.facts("n1").await.unwrap(), Some(f));
}

fn doc(p: &str, b: Option<&str>) -> (String, Option<String>) {
    (p.to_string(), b.map(str::to_string))
}

/// The shared inventory: seeding only when absent, edits only on the
/// version they were made on, an import replacing every document, and
/// version and documents always read together.
async fn inventory_versions_and_documents(db: TestDb) {
    let s = db.open().await;
    assert_eq!(s.inventory().await.unwrap(), None);
    assert_eq!(s.inventory_head().await.unwrap(), None);
    let seed = [
        doc("systems.toml", Some("[n1]\n")),
        doc("profiles/lab.toml", Some("x = 1\n")),
    ];
    let v = s
        .write_inventory(&seed, true, InventoryExpect::Absent, "seed", 10)
        .await
        .unwrap();
    assert_eq!(v, 1);
    // A second seeder finds it there and changes nothing.
    let err = s
        .write_inventory(
            &[doc("systems.toml", Some("other"))],
            true,
            InventoryExpect::Absent,
            "b",
            11,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InventoryChanged { .. }), "{err}");
    let (head, docs) = s.inventory().await.unwrap().unwrap();
    assert_eq!((head.version, head.updated_by.as_str()), (1, "seed"));
    assert_eq!(
        docs,
        vec![
            ("profiles/lab.toml".to_string(), "x = 1\n".to_string()),
            ("systems.toml".to_string(), "[n1]\n".to_string())
        ]
    );
    // An edit on version 1 wins; a second edit on version 1 is refused whole.
    let v = s
        .write_inventory(
            &[
                doc("profiles/lab.toml", None),
                doc("profiles/b.toml", Some("y")),
            ],
            false,
            InventoryExpect::Version(1),
            "alice",
            12,
        )
        .await
        .unwrap();
    assert_eq!(v, 2);
    let err = s
        .write_inventory(
            &[doc("systems.toml", Some("lost"))],
            false,
            InventoryExpect::Version(1),
            "bob",
            13,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected version 1, found version 2"),
        "{err}"
    );
    let (head, docs) = s.inventory().await.unwrap().unwrap();
    assert_eq!(head.version, 2);
    let paths: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["profiles/b.toml", "systems.toml"]);
    assert_eq!(docs[1].1, "[n1]\n", "bob's edit changed nothing");
    // An import replaces everything, whatever the version.
    let v = s
        .write_inventory(
            &[doc("systems.toml", Some(""))],
            true,
            InventoryExpect::Any,
            "import",
            14,
        )
        .await
        .unwrap();
    assert_eq!(v, 3);
    let (head, docs) = s.inventory().await.unwrap().unwrap();
    assert_eq!((head.version, head.updated_at), (3, 14));
    assert_eq!(docs, vec![("systems.toml".to_string(), String::new())]);
}

/// Two editors on the same version at the same moment: one wins.
async fn concurrent_inventory_edits_have_one_winner(db: TestDb) {
    let s = db.open().await;
    s.write_inventory(
        &[doc("systems.toml", Some("0"))],
        true,
        InventoryExpect::Absent,
        "seed",
        1,
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.write_inventory(
                &[doc("systems.toml", Some(&i.to_string()))],
                false,
                InventoryExpect::Version(1),
                "w",
                2,
            )
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, 2);
                won += 1;
            }
            Err(StoreError::InventoryChanged { .. }) => {}
            // SQLite: a writer that finds the database locked past the
            // busy timeout is a loser too, never a second winner.
            Err(e) => assert_eq!(s.backend(), Backend::Sqlite, "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.inventory_head().await.unwrap().unwrap().version, 2);
}

/// The migrations of migrations/{sqlite,postgres}/, in order.
const MIGRATIONS: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// Claims and leases: a run is driven by the one daemon that claimed it;
/// a write under a lost lease changes nothing; a silent daemon is fenced by
/// a healthy peer of its domain (and only of its domain) and its runs are
/// released; a restart of the same node takes its runs back at once.
async fn claims_leases_and_fencing(db: TestDb) {
    let s = db.open().await;
    let doms = |d: &[&str]| d.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let seg_a = doms(&["a"]);
    s.register_daemon("d1", "n1", &seg_a).await.unwrap();
    s.register_daemon("d2", "n2", &seg_a).await.unwrap();
    s.register_daemon("d3", "n3", &doms(&["b"])).await.unwrap();
    let mut r1 = new_run("r1", "m1");
    r1.domain = "a";
    s.create_run(&r1, 1).await.unwrap();
    let mut r2 = new_run("r2", "m2");
    r2.domain = "b";
    s.create_run(&r2, 2).await.unwrap();
    // One claimant per run; another domain's run is not d1's.
    let c1 = s.claim_runs("d1", &seg_a, 10).await.unwrap();
    assert_eq!(c1, vec![("r1".to_string(), 1)]);
    assert!(s.claim_runs("d2", &seg_a, 10).await.unwrap().is_empty());
    assert_eq!(s.claim_run("r1", "d2").await.unwrap(), None);
    let l1 = Lease {
        owner: "d1".into(),
        token: 1,
    };
    let l2 = Lease {
        owner: "d2".into(),
        token: 1,
    };
    assert!(!s
        .transition_fenced(
            "r1",
            "queued",
            "power",
            "{}",
            None,
            false,
            "x",
            3,
            Some(&l2)
        )
        .await
        .unwrap());
    assert!(s
        .transition_fenced(
            "r1",
            "queued",
            "power",
            "{}",
            None,
            false,
            "x",
            3,
            Some(&l1)
        )
        .await
        .unwrap());
    // Everyone heartbeats: nobody is silent.
    for d in ["d1", "d2", "d3"] {
        assert!(s.heartbeat(d).await.unwrap());
    }
    assert!(s
        .fence_silent("d2", &seg_a, 60_000)
        .await
        .unwrap()
        .is_empty());
    // d1 stops: after the TTL (0 ms here, by the database's clock) d2 fences
    // it; d3 (another domain) never would.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s.heartbeat("d2").await.unwrap());
    assert!(s
        .fence_silent("d3", &doms(&["b"]), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.fence_silent("d2", &seg_a, 10).await.unwrap(), vec!["d1"]);
    assert!(!s.heartbeat("d1").await.unwrap(), "d1 learns it is fenced");
    // d1's late write is refused; d2 claims the run under a new token, at
    // the step it reached.
    assert!(!s
        .transition_fenced(
            "r1",
            "power",
            "dhcp",
            "{}",
            None,
            false,
            "late",
            4,
            Some(&l1)
        )
        .await
        .unwrap());
    assert!(
        s.claim_runs("d1", &seg_a, 10).await.unwrap().is_empty(),
        "fenced: no claims"
    );
    assert_eq!(
        s.claim_runs("d2", &seg_a, 10).await.unwrap(),
        vec![("r1".to_string(), 2)]
    );
    assert_eq!(s.get_run("r1").await.unwrap().unwrap().state, "power");
    // Who wrote each step, and who fenced whom.
    let ev = s.run_events("r1").await.unwrap();
    let last = ev.last().unwrap();
    assert_eq!(
        (last.to_state.as_str(), last.writer.as_deref(), last.lease),
        ("power", Some("d1"), Some(1)),
        "{ev:?}"
    );
    let d1 = s
        .daemons()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == "d1")
        .unwrap();
    assert!(d1.fenced && d1.fenced_at.is_some(), "{d1:?}");
    assert_eq!(d1.fenced_by.as_deref(), Some("d2"));
    assert_eq!(
        s.run_owner("r1").await.unwrap(),
        Some((Some("d2".into()), 2))
    );
    // d2 restarts as d2b on the same node: its runs come back at once.
    assert_eq!(s.register_daemon("d2b", "n2", &seg_a).await.unwrap(), 1);
    let d2 = s
        .daemons()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == "d2")
        .unwrap();
    assert_eq!((d2.fenced, d2.fenced_by.as_deref()), (true, Some("d2b")));
    assert!(!s.heartbeat("d2").await.unwrap());
    assert_eq!(
        s.claim_runs("d2b", &seg_a, 10).await.unwrap(),
        vec![("r1".to_string(), 3)]
    );
    // A clean stop releases.
    assert_eq!(s.retire_daemon("d2b").await.unwrap(), 1);
    assert_eq!(s.run_owner("r1").await.unwrap(), Some((None, 3)));
    let fenced: Vec<bool> = s
        .daemons()
        .await
        .unwrap()
        .iter()
        .map(|d| d.fenced)
        .collect();
    assert_eq!(fenced.iter().filter(|f| !**f).count(), 1, "only d3 stands");
}

/// One daemon at a time per BMC: busy while held, free again when given
/// back, when its time is up, or when its holder is fenced.
async fn bmc_leases_one_daemon_at_a_time(db: TestDb) {
    let s = db.open().await;
    let dom = vec!["default".to_string()];
    s.register_daemon("d1", "n1", &dom).await.unwrap();
    s.register_daemon("d2", "n2", &dom).await.unwrap();
    let bmc = "10.0.0.5:623";
    assert_eq!(s.acquire_bmc(bmc, "d1", 60_000).await.unwrap(), None);
    assert_eq!(
        s.acquire_bmc(bmc, "d1", 60_000).await.unwrap(),
        None,
        "again: its own"
    );
    assert_eq!(
        s.acquire_bmc(bmc, "d2", 60_000).await.unwrap(),
        Some("d1".to_string())
    );
    assert_eq!(
        s.acquire_bmc("10.0.0.6:623", "d2", 60_000).await.unwrap(),
        None,
        "another BMC"
    );
    s.release_bmc(bmc, "d2").await.unwrap();
    assert!(
        s.acquire_bmc(bmc, "d2", 60_000).await.unwrap().is_some(),
        "not d2's to give back"
    );
    s.release_bmc(bmc, "d1").await.unwrap();
    assert_eq!(s.acquire_bmc(bmc, "d2", 1).await.unwrap(), None);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        s.acquire_bmc(bmc, "d1", 60_000).await.unwrap(),
        None,
        "d2's time is up"
    );
    // A holder fenced (its node restarted) holds nothing.
    s.register_daemon("d1b", "n1", &dom).await.unwrap();
    assert_eq!(s.acquire_bmc(bmc, "d2", 60_000).await.unwrap(), None);
}

/// The live peers of a daemon: other daemons of one of its domains, not
/// fenced, heartbeating within the TTL.
async fn live_peers_share_a_domain_and_beat(db: TestDb) {
    let s = db.open().await;
    let a = vec!["seg-a".to_string()];
    let b = vec!["seg-b".to_string()];
    s.register_daemon("d1", "n1", &a).await.unwrap();
    assert_eq!(s.live_peers("d1", &a, 60_000).await.unwrap(), 0, "alone");
    s.register_daemon("d2", "n2", &a).await.unwrap();
    s.register_daemon("d3", "n3", &b).await.unwrap();
    assert_eq!(
        s.live_peers("d1", &a, 60_000).await.unwrap(),
        1,
        "d2, not d3"
    );
    let both = vec!["seg-a".to_string(), "seg-b".to_string()];
    assert_eq!(s.live_peers("d1", &both, 60_000).await.unwrap(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_eq!(
        s.live_peers("d1", &both, 10).await.unwrap(),
        0,
        "silent past the TTL"
    );
    // d2's node restarts as d2b: d2 is fenced, d2b is the peer.
    s.register_daemon("d2b", "n2", &a).await.unwrap();
    assert_eq!(s.live_peers("d1", &a, 60_000).await.unwrap(), 1);
    s.retire_daemon("d2b").await.unwrap();
    assert_eq!(s.live_peers("d1", &a, 60_000).await.unwrap(), 0, "retired");
}

/// Many daemons claiming at once: every run exactly once.
async fn concurrent_claims_take_each_run_once(db: TestDb) {
    let s = db.open().await;
    let dom = vec!["default".to_string()];
    for i in 0..40 {
        let id = format!("r{i:02}");
        let sys = format!("m{i:02}");
        s.create_run(&new_run(&id, &sys), i).await.unwrap();
    }
    let mut tasks = Vec::new();
    for d in 0..4 {
        let s = s.clone();
        let dom = dom.clone();
        tasks.push(tokio::spawn(async move {
            let me = format!("d{d}");
            s.register_daemon(&me, &me, &dom).await.unwrap();
            let mut got = Vec::new();
            for _ in 0..20 {
                match s.claim_runs(&me, &dom, 3).await {
                    Ok(c) => got.extend(c.into_iter().map(|(id, _)| id)),
                    // SQLite: busy past the timeout is a miss, not a double.
                    Err(e) => assert_eq!(s.backend(), Backend::Sqlite, "{e}"),
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, all.len(), "a run claimed twice");
    assert_eq!(n, 40);
}

/// A discovered MAC's facts: stored only while the MAC is recorded, the
/// last report wins, handed back (and gone) when the MAC is taken, and
/// pruned with the MAC by the cap.
async fn discovered_facts_follow_the_mac(db: TestDb) {
    let s = db.open().await;
    let a = "52:54:00:00:00:0a";
    let b = "52:54:00:00:00:0b";
    assert!(
        !s.put_discovered_facts(a, 1, "{}").await.unwrap(),
        "not recorded: not stored"
    );
    assert_eq!(s.discovered_facts(a).await.unwrap(), None);
    s.upsert_discovered(
        &[sighting(a, None, 10, 10, 1), sighting(b, None, 20, 20, 1)],
        10,
    )
    .await
    .unwrap();
    assert!(s
        .put_discovered_facts(a, 5, "{\"memory_mib\":1}")
        .await
        .unwrap());
    assert!(s
        .put_discovered_facts(a, 6, "{\"memory_mib\":2}")
        .await
        .unwrap());
    assert!(s.put_discovered_facts(b, 7, "{}").await.unwrap());
    let want = DiscoveredFactsRow {
        mac: a.into(),
        at: 6,
        data: "{\"memory_mib\":2}".into(),
    };
    assert_eq!(s.discovered_facts(a).await.unwrap(), Some(want.clone()));
    assert_eq!(s.all_discovered_facts().await.unwrap().len(), 2);
    // Taken (adopted): the facts come back once, then are gone.
    assert_eq!(s.take_discovered(a).await.unwrap(), (true, Some(want)));
    assert_eq!(s.take_discovered(a).await.unwrap(), (false, None));
    assert_eq!(s.discovered_facts(a).await.unwrap(), None);
    // Pruned by the cap: b (least recently seen) goes, its facts with it.
    let c = "52:54:00:00:00:0c";
    let w = s
        .upsert_discovered(&[sighting(c, None, 30, 30, 1)], 1)
        .await
        .unwrap();
    assert_eq!(w.pruned, 1);
    assert_eq!(s.discovered_facts(b).await.unwrap(), None);
    assert!(s.all_discovered_facts().await.unwrap().is_empty());
}

async fn migrations_apply_and_are_idempotent(db: TestDb) {
    let s = db.open().await;
    assert_eq!(s.schema_versions().await.unwrap(), MIGRATIONS.to_vec());
    s.close().await;
    // Re-opening runs the migrator again: nothing new, nothing broken.
    let s = db.open().await;
    assert_eq!(s.schema_versions().await.unwrap(), MIGRATIONS.to_vec());
}

/// The SQLite file's directory is created on open.
#[tokio::test]
async fn sqlite_creates_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/r.db").display());
    let s = Store::open(&url).await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    assert!(dir.path().join("sub/r.db").is_file());
}

async fn run_round_trip_and_cas_transition(db: TestDb) {
    let s = db.open().await;
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

async fn active_runs_and_filters(db: TestDb) {
    let s = db.open().await;
    s.create_run(&new_run("a", "n1"), 1).await.unwrap();
    s.create_run(&new_run("b", "n2"), 2).await.unwrap();
    s.transition("a", "queued", "succeeded", "{}", None, true, "", 3)
        .await
        .unwrap();
    s.create_run(&new_run("c", "n1"), 4).await.unwrap();
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

async fn stages_and_artifacts(db: TestDb) {
    let s = db.open().await;
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

async fn leases_group_commit_and_ip_move(db: TestDb) {
    let s = db.open().await;
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
    let s = db.open().await;
    assert_eq!(s.leases().await.unwrap(), vec![l3, l2.clone()]);
    s.delete_lease(&l2.mac).await.unwrap();
    assert_eq!(s.leases().await.unwrap().len(), 1);
}

/// The bulk form behaves like row by row: moves, renewals, duplicates in
/// one batch, chunks, and an IP handed from one MAC to another in one batch.
async fn leases_bulk_matches_row_by_row(db: TestDb) {
    let l = |m: u32, ip: u32, exp: i64| LeaseRow {
        mac: format!("52:54:00:00:{:02x}:{:02x}", m / 256, m % 256),
        ip: format!("10.1.{}.{}", ip / 256, ip % 256),
        hostname: None,
        expires_at: exp,
    };
    let s = db.open().await;
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

async fn netboot_switch(db: TestDb) {
    let s = db.open().await;
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
    let on = s.netboot_on().await.unwrap();
    assert_eq!(on.len(), 1, "only the switch that is on");
    assert_eq!((on[0].system.as_str(), on[0].persistent), ("node51", true));
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

async fn feed_ids_order_replay_and_history(db: TestDb) {
    let s = db.open().await;
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

async fn feed_prune_by_age_and_per_system_cap(db: TestDb) {
    let s = db.open().await;
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

async fn audit_pages_newest_first_and_filters_by_target(db: TestDb) {
    let s = db.open().await;
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

async fn backend_is_chosen_by_the_url(db: TestDb) {
    let s = db.open().await;
    if db.url.starts_with("sqlite:") {
        assert_eq!(s.backend(), Backend::Sqlite);
    } else {
        assert_eq!(s.backend(), Backend::Postgres);
        // Both spellings of the scheme.
        let alt = db.url.replacen("postgres://", "postgresql://", 1);
        let s2 = Store::open(&alt).await.unwrap();
        assert_eq!(s2.backend(), Backend::Postgres);
        assert_eq!(
            s2.schema_versions().await.unwrap(),
            s.schema_versions().await.unwrap()
        );
    }
}

#[test]
fn redact_url_hides_the_password_only() {
    assert_eq!(
        redact_url("postgres://rb:s3cr:et@db.example:5432/rackboot?sslmode=require"),
        "postgres://rb:***@db.example:5432/rackboot?sslmode=require"
    );
    assert_eq!(
        redact_url("postgres://rb@127.0.0.1/rackboot"),
        "postgres://rb@127.0.0.1/rackboot"
    );
    assert_eq!(
        redact_url("sqlite:///var/lib/x.db"),
        "sqlite:///var/lib/x.db"
    );
    assert_eq!(redact_url("postgres://h/db@x"), "postgres://h/db@x");
}

/// A system has one unfinished run; its id is in the refusal. A duplicate
/// run id is a plain database error, not a busy system.
async fn one_active_run_per_system(db: TestDb) {
    let s = db.open().await;
    s.create_run(&new_run("r1", "n1"), 1).await.unwrap();
    match s.create_run(&new_run("r2", "n1"), 2).await {
        Err(StoreError::ActiveRun { system, run }) => {
            assert_eq!((system.as_str(), run.as_str()), ("n1", "r1"));
        }
        other => panic!("second active run on n1: {other:?}"),
    }
    match s.create_run(&new_run("r1", "n2"), 2).await {
        Err(StoreError::Db(_)) => {}
        other => panic!("duplicate run id: {other:?}"),
    }
    // Nothing of the refused runs was stored.
    assert!(s.get_run("r2").await.unwrap().is_none());
    assert_eq!(s.run_events("r1").await.unwrap().len(), 1);
    // A finished run frees the system.
    assert!(s
        .transition("r1", "queued", "cancelled", "{}", None, true, "x", 3)
        .await
        .unwrap());
    s.create_run(&new_run("r2", "n1"), 4).await.unwrap();
    // A transition that does not finish the run keeps it active.
    assert!(s
        .transition("r2", "queued", "locked", "{}", None, false, "x", 5)
        .await
        .unwrap());
    assert!(matches!(
        s.create_run(&new_run("r3", "n1"), 6).await,
        Err(StoreError::ActiveRun { .. })
    ));
}

/// Many callers on two handles (two daemons) create a run for the same
/// system at once: exactly one wins, the others are told which run won.
async fn concurrent_create_run_has_one_winner(db: TestDb) {
    const CALLERS: usize = 8;
    let handles = [db.open().await, db.open().await];
    for sys in 0..10 {
        let system = format!("n{sys}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
        let mut tasks = Vec::new();
        for k in 0..CALLERS {
            let s = handles[k % 2].clone();
            let (system, barrier) = (system.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let id = format!("{system}-{k}");
                barrier.wait().await;
                (id.clone(), s.create_run(&new_run(&id, &system), 1).await)
            }));
        }
        let mut winners = Vec::new();
        let mut refused = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (id, Ok(())) => winners.push(id),
                (_, Err(StoreError::ActiveRun { run, .. })) => refused.push(run),
                (id, Err(e)) => panic!("{id}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "{system}: winners {winners:?}");
        assert_eq!(refused.len(), CALLERS - 1);
        assert!(refused.iter().all(|r| *r == winners[0]), "{refused:?}");
    }
    let active = handles[0].active_runs().await.unwrap();
    assert_eq!(active.len(), 10);
}

/// Many callers move the same run out of `queued` at once: one wins, one
/// event is recorded for it, the others see a stale state.
async fn concurrent_transitions_have_one_winner(db: TestDb) {
    const CALLERS: usize = 8;
    let handles = [db.open().await, db.open().await];
    for r in 0..10 {
        let id = format!("r{r}");
        handles[0]
            .create_run(&new_run(&id, &format!("n{r}")), 1)
            .await
            .unwrap();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
        let mut tasks = Vec::new();
        for k in 0..CALLERS {
            let s = handles[k % 2].clone();
            let (id, barrier) = (id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let to = format!("to{k}");
                barrier.wait().await;
                let won = s
                    .transition(&id, "queued", &to, "{}", None, k % 2 == 0, "race", 2)
                    .await
                    .unwrap();
                (to, won)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (to, won) = t.await.unwrap();
            if won {
                winners.push(to);
            }
        }
        assert_eq!(winners.len(), 1, "{id}: winners {winners:?}");
        let run = handles[1].get_run(&id).await.unwrap().unwrap();
        assert_eq!(run.state, winners[0]);
        let ev = handles[1].run_events(&id).await.unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].to_state, winners[0]);
    }
}

/// An append that took a feed id but has not committed holds back a later
/// append: a reader never sees an id while a smaller one may still appear
/// (SSE and webhook cursors would skip it for good).
async fn feed_append_waits_for_an_earlier_uncommitted_one(db: TestDb) {
    let s = db.open().await;
    let other = db.open().await;
    let reader = db.open().await;
    with_pool!(other, |pool| {
        // Another daemon's append, caught between its insert and its commit.
        let mut tx = pool.begin().await.unwrap();
        let first: i64 = sqlx::query_scalar(
            "INSERT INTO feed (at, kind, data) VALUES (1, 'slow', '{}') RETURNING id",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let s2 = s.clone();
        let later =
            tokio::spawn(async move { s2.append_feed(&[feed_ev(2, "fast", None)]).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            reader.feed_since(0, 100).await.unwrap(),
            vec![],
            "a later feed id is visible before an earlier, uncommitted one"
        );
        assert!(!later.is_finished());
        tx.commit().await.unwrap();
        let ids = tokio::time::timeout(Duration::from_secs(10), later)
            .await
            .expect("the later append finishes once the first commits")
            .unwrap();
        assert!(ids[0] > first);
        let seen: Vec<i64> = reader
            .feed_since(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(seen, vec![first, ids[0]]);
    });
}

/// Writers on two handles append while a reader tails the feed by cursor,
/// as SSE clients and webhooks do: the reader sees every event, once.
async fn concurrent_feed_appends_are_seen_in_order(db: TestDb) {
    const WRITERS: usize = 4;
    const APPENDS: usize = 40;
    let handles = [db.open().await, db.open().await];
    let reader = db.open().await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let s = handles[w % 2].clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..APPENDS {
                let batch: Vec<NewFeed> = (0..1 + n % 3)
                    .map(|_| feed_ev(n as i64, "observation", Some("a")))
                    .collect();
                ids.extend(s.append_feed(&batch).await.unwrap());
            }
            ids
        }));
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let rows = reader.feed_since(cursor, 1000).await.unwrap();
        for r in &rows {
            assert!(r.id > cursor);
            cursor = r.id;
            seen.push(r.id);
        }
        if done && rows.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(seen.len(), all.len(), "the tailing reader skipped events");
    assert_eq!(seen, all);
}

/// Two daemons commit lease batches over the same leases at once, in
/// opposite orders: both succeed, one after the other, never a deadlock, a
/// lost batch or a mix of the two. Each round renews the same MACs (each
/// batch with its own expiry), then hands every address to other MACs.
async fn concurrent_lease_batches_apply_whole(db: TestDb) {
    const N: u32 = 60;
    let lease = |tag: u32, i: u32, exp: i64| LeaseRow {
        mac: format!("52:54:00:{tag:02x}:{:02x}:{:02x}", i / 256, i % 256),
        ip: format!("10.9.{}.{}", i / 256, i % 256),
        hostname: None,
        expires_at: exp,
    };
    let handles = [db.open().await, db.open().await];
    let race = |batches: [Vec<LeaseRow>; 2]| {
        let handles = handles.clone();
        async move {
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
            let mut tasks = Vec::new();
            for (s, b) in handles.into_iter().zip(batches) {
                let barrier = barrier.clone();
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    s.upsert_leases(&b, 1).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
    };
    for round in 0..20i64 {
        // Renewals of the same MACs, ascending and descending.
        let tag = (round % 2) as u32;
        let a: Vec<LeaseRow> = (0..N).map(|i| lease(tag, i, 2 * round)).collect();
        let b: Vec<LeaseRow> = (0..N).rev().map(|i| lease(tag, i, 2 * round + 1)).collect();
        race([a, b]).await;
        let got = handles[0].leases().await.unwrap();
        assert_eq!(got.len(), N as usize, "round {round}");
        let exp: std::collections::HashSet<i64> = got.iter().map(|l| l.expires_at).collect();
        assert_eq!(exp.len(), 1, "round {round}: a mix of two batches {exp:?}");
        // Every address moves to new MACs, two batches competing for them.
        let a: Vec<LeaseRow> = (0..N).map(|i| lease(2, i, 0)).collect();
        let b: Vec<LeaseRow> = (0..N).rev().map(|i| lease(3, i, 0)).collect();
        race([a, b]).await;
        let got = handles[1].leases().await.unwrap();
        assert_eq!(got.len(), N as usize, "round {round}");
        let tags: std::collections::HashSet<&str> = got.iter().map(|l| &l.mac[..11]).collect();
        assert_eq!(
            tags.len(),
            1,
            "round {round}: a mix of two batches {tags:?}"
        );
        // And back to the renewed MACs for the next round.
        let back: Vec<LeaseRow> = (0..N).map(|i| lease(1 - tag, i, 0)).collect();
        handles[0].upsert_leases(&back, 1).await.unwrap();
    }
}

/// Migration 6 on a database that (by a hand edit) holds two unfinished
/// runs of one system: the older is closed as failed, with an event, and
/// the index goes on. Replayed here by dropping the index, adding the
/// duplicate and running the migration's SQL again.
async fn migration_6_closes_duplicate_active_runs(db: TestDb) {
    let s = db.open().await;
    s.create_run(&new_run("old", "n1"), 1).await.unwrap();
    s.create_run(&new_run("other", "n2"), 1).await.unwrap();
    let sql = match s.backend() {
        Backend::Sqlite => include_str!("../../migrations/sqlite/0006_one_active_run.sql"),
        Backend::Postgres => include_str!("../../migrations/postgres/0006_one_active_run.sql"),
    };
    with_pool!(s, |pool| {
        sqlx::raw_sql("DROP INDEX runs_one_active")
            .execute(pool)
            .await
            .unwrap();
        s.create_run(&new_run("new", "n1"), 2).await.unwrap();
        sqlx::raw_sql(sql).execute(pool).await.unwrap();
    });
    let old = s.get_run("old").await.unwrap().unwrap();
    assert_eq!(old.state, "failed");
    assert_eq!(old.finished_at, Some(1));
    assert!(old.reason.unwrap().contains("superseded"));
    assert_eq!(s.run_events("old").await.unwrap().len(), 2);
    let active: Vec<_> = s
        .active_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(active, vec!["other", "new"]);
    assert!(matches!(
        s.create_run(&new_run("newer", "n1"), 3).await,
        Err(StoreError::ActiveRun { .. })
    ));
}

/// Each test above, once per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::testdb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::testdb::postgres(stringify!($name)).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_apply_and_are_idempotent,
    backend_is_chosen_by_the_url,
    run_round_trip_and_cas_transition,
    active_runs_and_filters,
    stages_and_artifacts,
    leases_group_commit_and_ip_move,
    leases_bulk_matches_row_by_row,
    netboot_switch,
    feed_ids_order_replay_and_history,
    feed_prune_by_age_and_per_system_cap,
    audit_pages_newest_first_and_filters_by_target,
    one_active_run_per_system,
    concurrent_create_run_has_one_winner,
    concurrent_transitions_have_one_winner,
    feed_append_waits_for_an_earlier_uncommitted_one,
    concurrent_feed_appends_are_seen_in_order,
    concurrent_lease_batches_apply_whole,
    migration_6_closes_duplicate_active_runs,
    discovered_merge_and_cap,
    facts_last_report_wins,
    discovered_facts_follow_the_mac,
    inventory_versions_and_documents,
    concurrent_inventory_edits_have_one_winner,
    claims_leases_and_fencing,
    concurrent_claims_take_each_run_once,
    bmc_leases_one_daemon_at_a_time,
    live_peers_share_a_domain_and_beat,
);
