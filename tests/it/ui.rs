//! The web UI: pages through the router (status, text, 404/400, CSRF), and
//! in a real headless Chromium against the in-process simulated lab: a
//! reimage started from the machines page's form, its phase cell advancing
//! without a reload, the run page's stage log growing. Screenshots of every
//! page go to `browser::screenshot_dir()`.

use crate::browser::{screenshot_dir, Browser, Until};
use crate::harness::http;
use crate::runs::{play_machine, sim_with, Sim};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MAC1: &str = "52:54:00:aa:00:01";

/// A response of a form POST: status, headers, body.
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GET or POST (a form body) with a cookie, no redirects followed.
pub(crate) fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    form: Option<&str>,
) -> Resp {
    let agent =
        ureq::Agent::new_with_config(rackboot::client::agent_config(Duration::from_secs(10)));
    let url = format!("http://{addr}{path}");
    // The harness daemon's admin token (tests/it/auth.rs covers the refusals).
    let bearer = format!("Bearer {}", crate::harness::TOKEN);
    let r = match form {
        Some(b) => agent
            .post(&url)
            .header("Cookie", cookie)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(b),
        None => agent
            .get(&url)
            .header("Cookie", cookie)
            .header("Authorization", &bearer)
            .call(),
    };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    Resp {
        status: r.status().as_u16(),
        headers,
        body,
    }
}

/// The session cookie a page set, and the CSRF token in its forms.
pub(crate) fn session(addr: SocketAddr) -> (String, String) {
    let r = req(addr, "GET", "/", "", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let set = r.header("set-cookie").expect("a session cookie");
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("rb_session="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let csrf = r
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .expect("csrf field");
    let csrf = csrf[..csrf.find('"').unwrap()].to_string();
    (cookie, csrf)
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// The simulated lab with a power poll every second.
async fn lab(stage2: &str) -> Sim {
    lab_with(stage2, |_| {}).await
}

/// [`lab`] with the config dir edited further before the daemon starts.
async fn lab_with(stage2: &str, edit: impl FnOnce(&crate::harness::ConfigDir)) -> Sim {
    sim_with(stage2, |c| {
        c.replace("rackboot.toml", "[api]\n", "[api]\npower_poll_secs = 1\n");
        edit(c);
    })
    .await
}

async fn runs_of(sim: &Sim, system: &str) -> Vec<serde_json::Value> {
    let (_, v) = sim
        .api("GET", &format!("/api/v1/runs?system={system}"), None)
        .await;
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_pages_render_refuse_and_act() {
    let sim = lab("echo one; echo two").await;
    let addr = sim.d().api_addr;

    let r = blocking(move || req(addr, "GET", "/", "", None)).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("content-security-policy").is_some());
    for want in [
        "<h1>Machines",
        "sim1",
        "sim2",
        "node50",
        "Reimage",
        "Power-cycle",
    ] {
        assert!(r.body.contains(want), "machines page lacks {want:?}");
    }
    // Assets are embedded; nothing is loaded from another host.
    for bad in ["src=\"http", "href=\"http", "//cdn"] {
        assert!(!r.body.contains(bad), "external URL ({bad}) in the page");
    }
    for (path, kind) in [
        ("/ui/assets/ui.css", "text/css"),
        ("/ui/assets/ui.js", "text/javascript"),
    ] {
        let r = blocking(move || req(addr, "GET", path, "", None)).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(kind));
    }
    // Filter, sort, page in the query; malformed ones are 400s.
    let r = blocking(move || req(addr, "GET", "/?q=sim2&sort=-name", "", None)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"m-sim2\"") && !r.body.contains("id=\"m-sim1\""));
    let r = blocking(move || req(addr, "GET", "/?state=idle&profile=sim", "", None)).await;
    assert!(r.body.contains("id=\"m-sim1\"") && !r.body.contains("id=\"m-node50\""));
    for bad in ["/?page=x", "/?page=0", "/?sort=bogus", "/?state=weird"] {
        let r = blocking(move || req(addr, "GET", bad, "", None)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.contains("Bad request"), "{bad}");
    }
    // Unknown run, unknown page: 404 pages.
    for path in ["/ui/runs/run-nope", "/ui/no-such-page"] {
        let r = blocking(move || req(addr, "GET", path, "", None)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("<html"), "{path}: an HTML page");
    }
    let r = blocking(move || req(addr, "GET", "/ui/queue", "", None)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Nothing is waiting."), "{}", r.body);

    // The power cache: the poller read the fake BMCs (off) within ~1 s.
    let t0 = Instant::now();
    loop {
        let r = blocking(move || req(addr, "GET", "/?q=sim1", "", None)).await;
        if r.body.contains("power-off") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no polled power state"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A POST without a CSRF token (or with another session's) is refused.
    let (cookie, csrf) = blocking(move || session(addr)).await;
    let c = cookie.clone();
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some("action=reimage&system=sim1"),
        )
    })
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let t = csrf.clone();
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            "rb_session=0123456789abcdef0123456789abcdef",
            Some(&format!("csrf={t}&action=reimage&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 403);
    assert!(
        runs_of(&sim, "sim1").await.is_empty(),
        "a refused POST created a run"
    );
    // Unknown machines and actions.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=reimage&system=nope")),
        )
    })
    .await;
    assert_eq!(r.status, 404);
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=explode&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 400);

    // With the token: the run is queued, 303 back with a message.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!(
                "csrf={t}&action=reimage&system=sim1&back=%2F%3Fq%3Dsim"
            )),
        )
    })
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/?q=sim"));
    let flash = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(flash.starts_with("rb_flash=Queued"), "{flash}");
    let runs = runs_of(&sim, "sim1").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["requested_by"], "default", "the token's name");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    // The message shows once on the next page.
    let c = format!("{cookie}; {flash}");
    let r = blocking(move || req(addr, "GET", "/?q=sim", &c, None)).await;
    assert!(r.body.contains("Queued 1 reimage run: sim1."), "{}", r.body);
    assert!(
        r.body.contains(&format!("/ui/runs/{id}")),
        "the row links the run"
    );
    // A second reimage of a busy machine: refused, nothing queued.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=reimage&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Power-cycling a machine with a run in progress is refused too.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=cycle&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // An idle machine is power-cycled through the BMC.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=cycle&system=sim2")),
        )
    })
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(sim
        .fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c == "127.0.0.2:1 power cycle"));

    // The run page.
    let p = format!("/ui/runs/{id}");
    let r = blocking(move || req(addr, "GET", &p, "", None)).await;
    assert_eq!(r.status, 200);
    for want in [
        id.as_str(),
        "sim1",
        "<svg",
        "configure",
        "check",
        "Cancel run",
    ] {
        assert!(r.body.contains(want), "run page lacks {want:?}");
    }
    // Cancel it from the run page's form.
    let (c, t, p) = (
        cookie.clone(),
        csrf.clone(),
        format!("/ui/runs/{id}/cancel"),
    );
    let r = blocking(move || req(addr, "POST", &p, &c, Some(&format!("csrf={t}")))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let v = sim.wait_terminal(&id, 10).await;
    assert_eq!(v["state"], "cancelled");
    // Retry: a new run, and the page of the retry.
    let (c, t, p) = (cookie.clone(), csrf.clone(), format!("/ui/runs/{id}/retry"));
    let r = blocking(move || req(addr, "POST", &p, &c, Some(&format!("csrf={t}")))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.header("location").unwrap().to_string();
    assert!(
        loc.starts_with("/ui/runs/run-") && !loc.ends_with(&id),
        "{loc}"
    );
    // Cancel by selecting the machine on the machines page.
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=cancel&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (c, t) = (cookie.clone(), csrf.clone());
    let r = blocking(move || {
        req(
            addr,
            "POST",
            "/ui/actions",
            &c,
            Some(&format!("csrf={t}&action=cancel&system=sim1")),
        )
    })
    .await;
    assert_eq!(r.status, 409, "nothing left to cancel: {}", r.body);
    // The queue page lists the cancelled run nowhere, the machines page its streak.
    let r = blocking(move || req(addr, "GET", "/?q=sim1", "", None)).await;
    assert!(
        r.body.contains("class=\"sq off\""),
        "streak of cancelled runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_log_from_a_byte_offset() {
    let sim = lab("echo alpha; echo beta").await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    sim.wait_terminal(&id, 20).await;
    let addr = sim.d().api_addr;
    let base = format!("/api/v1/runs/{id}/stages/1/log");
    let r = {
        let p = format!("{base}?offset=0");
        blocking(move || http(addr, "GET", &p, &[], None)).await
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "alpha\nbeta\n");
    assert_eq!(r.header("x-text-size"), Some("11"));
    assert_eq!(r.header("x-more-data"), Some("false"));
    let p = format!("{base}?offset=6");
    let r = blocking(move || http(addr, "GET", &p, &[], None)).await;
    assert_eq!(r.text(), "beta\n");
    let p = format!("{base}?offset=99");
    let r = blocking(move || http(addr, "GET", &p, &[], None)).await;
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    let p = format!("{base}?offset=-1");
    let r = blocking(move || http(addr, "GET", &p, &[], None)).await;
    assert_eq!(r.status, 400);
    // The run page shows the finished run's timeline, stages and logs.
    let p = format!("/ui/runs/{id}");
    let r = blocking(move || req(addr, "GET", &p, "", None)).await;
    for want in ["succeeded", "alpha\nbeta", "JUnit XML", "conf.txt", "Retry"] {
        assert!(r.body.contains(want), "run page lacks {want:?}");
    }
}

/// Run `f` on the browser without blocking the runtime's workers.
fn on<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn browser_reimage_from_the_page_live_phase_and_log() {
    // The last stage writes a line every 0.5 s: long enough to watch it grow.
    // The DHCP deadline is long: under load the page may see the phase
    // late, and a run that timed out meanwhile shows no `dhcp` to wait for.
    let sim = lab_with(
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.5; done",
        |c| c.replace("profiles/sim.toml", "dhcp = \"5s\"", "dhcp = \"60s\""),
    )
    .await;
    let Some(b) = Browser::start() else { return };
    let addr = sim.d().api_addr;
    let shots = screenshot_dir();
    println!("screenshots: {}", shots.display());
    // Wait for the first power poll so the page shows power states.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    on(|| {
        b.login(&format!("http://{addr}"), crate::harness::TOKEN);
        assert!(b.exists("#m-sim1"));
        b.screenshot(&shots.join("ui-machines.png"));
        // Select sim1 and press Reimage: the form posts, the page comes back.
        b.click("#m-sim1 input[name=system]");
        b.click("#act-reimage");
        // The login left a flash of its own on this page: wait for the new one.
        b.wait_for(
            Until::Js("((document.querySelector('#flash') || {}).textContent || '').includes('Queued 1 reimage run: sim1.')"),
            Duration::from_secs(10),
        )
        .unwrap();
        b.exec("window.__marker = 42;", &[]);
        b.wait_for(
            Until::Js("window.__rackboot && window.__rackboot.es && window.__rackboot.es.readyState === 1"),
            Duration::from_secs(5),
        )
        .unwrap();
    });
    let runs = runs_of(&sim, "sim1").await;
    let id = runs[0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 10).await;
    let phase = "[data-phase-system=\"sim1\"]";
    on(|| {
        b.wait_for(Until::Text(phase, "dhcp"), Duration::from_secs(20))
            .unwrap()
    });
    play_machine(&sim, MAC1.parse().unwrap()).await;
    on(|| {
        b.wait_for(Until::Text(phase, "stage:1"), Duration::from_secs(20))
            .unwrap();
        // Same document: no reload happened.
        assert_eq!(
            b.exec("return window.__marker;", &[]),
            serde_json::json!(42)
        );
        assert!(
            b.exec("return window.__rackboot.events;", &[])
                .as_u64()
                .unwrap()
                >= 5
        );
        b.screenshot(&shots.join("ui-machines-live.png"));
    });
    // Something for the queue page: sim2 waits for a DHCP that never comes.
    let (s, _) = sim.create(&["sim2"]).await;
    assert_eq!(s, 201);
    on(|| {
        // The run page: the last stage's log grows while it runs.
        b.goto(&format!("http://{addr}/ui/runs/{id}"));
        b.exec("window.__marker = 7;", &[]);
        let log = "pre[data-stage-log=\"1\"]";
        b.wait_for(
            Until::Js(&format!(
                "document.querySelector('{log}').textContent.includes('line 2')"
            )),
            Duration::from_secs(10),
        )
        .unwrap();
        let first = b.text(log).len();
        b.wait_for(
            Until::Js(&format!(
                "document.querySelector('{log}').textContent.includes('line 6')"
            )),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(b.text(log).len() > first, "the log did not grow");
        b.exec(
            &format!("document.querySelector('{log}').scrollIntoView();"),
            &[],
        );
        b.screenshot(&shots.join("ui-run-live.png"));
        b.wait_for(
            Until::Text("#run-state", "succeeded"),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(b.exec("return window.__marker;", &[]), serde_json::json!(7));
        // The tail fetches what the stage wrote last, then stops.
        b.wait_for(
            Until::Js(&format!(
                "document.querySelector('{log}').textContent.includes('line 10')"
            )),
            Duration::from_secs(5),
        )
        .unwrap();
        b.wait_for(
            Until::Js(&format!("!document.querySelector('{log}').dataset.tailing")),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(b.text(log).matches("line 10").count(), 1, "{}", b.text(log));
        assert_eq!(b.text("[data-stage-status=\"1\"]"), "passed");
    });
    sim.wait_terminal(&id, 10).await;
    on(|| {
        b.goto(&format!("http://{addr}/ui/runs/{id}"));
        b.screenshot(&shots.join("ui-run.png"));
        b.goto(&format!("http://{addr}/"));
        assert!(b.exists("#m-sim1 .sq.ok"), "the streak shows the success");
        b.screenshot(&shots.join("ui-machines-after.png"));
        // The machine page of a reimage that went all the way.
        b.goto(&format!("http://{addr}/ui/machines/sim1"));
        assert!(b.text("#cause").contains("Every step happened."));
        assert!(b.exists("#events li.ev-stage"));
        b.screenshot(&shots.join("ui-machine-ok.png"));
        b.goto(&format!("http://{addr}/ui/queue"));
        b.screenshot(&shots.join("ui-queue.png"));
        // Hidden columns, and the dry run of a power cycle of the whole filter.
        b.goto(&format!("http://{addr}/?q=sim&hide=ip,netboot"));
        assert!(!b.exists("#machines th a[href*=\"sort=ip\"]"));
        b.exec("document.querySelector('#columns').open = true;", &[]);
        b.screenshot(&shots.join("ui-machines-columns.png"));
        b.click("#scope-filter");
        b.click("#act-cycle");
        b.wait_for(Until::Present("#dry-run"), Duration::from_secs(10))
            .unwrap();
        assert!(b
            .text("#dry-count")
            .contains("This would act on 2 machines"));
        b.screenshot(&shots.join("ui-dry-run.png"));
        b.goto(&format!("http://{addr}/ui/login"));
        b.screenshot(&shots.join("ui-login.png"));
        // The audit trail names the reimage from the page, the token and the way.
        b.goto(&format!("http://{addr}/ui/audit"));
        let row = b.text("#audit tbody tr:last-child");
        assert!(row.contains("default admin"), "{row}");
        assert!(
            row.contains("POST /ui/actions") && row.contains("sim1"),
            "{row}"
        );
        b.screenshot(&shots.join("ui-audit.png"));
        b.goto(&format!("http://{addr}/ui/webhooks"));
        assert!(b
            .text("main")
            .contains("No webhook or MQTT broker is configured"));
        b.screenshot(&shots.join("ui-webhooks.png"));
        b.goto(&format!("http://{addr}/ui/runs/run-nope"));
        assert!(b.text("#error").contains("no run"));
        b.screenshot(&shots.join("ui-404.png"));
    });
    println!("screenshots written to {}", shots.display());
}

/// `bench/ui-bench.sh`: the machines page of a 5,000-system inventory
/// (two finished runs each, every power state polled): the server's render
/// time (its `Server-Timing`) and the process's RSS after rendering it
/// repeatedly. Prints the figures; asserts only that the pages render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ui_bench_5000_systems() {
    use rackboot::power::{FakePower, Power, PowerConfig};
    use std::fmt::Write;
    use std::sync::Arc;
    const N: usize = 5000;
    let c = crate::harness::ConfigDir::sample();
    c.replace("rackboot.toml", "[api]\n", "[api]\npower_poll_secs = 0\n");
    let mut systems = String::new();
    for i in 0..N {
        let (a, b) = (i / 250, i % 250);
        let _ = write!(
            systems,
            "\n[systems.n{i:05}]\nmacs = [\"52:55:{:02x}:{:02x}:{b:02x}:01\"]\nip = \"10.{}.{}.{}\"\n\
             profile = \"{}\"\n[systems.n{i:05}.bmc]\nkind = \"ipmi\"\naddress = \"10.200.{}.{}\"\n\
             username = \"admin\"\npassword_file = \"tests/lab/bmc-password\"\n",
            a >> 8, a & 255, 100 + a / 256, a % 256, b + 1,
            ["lab", "lab-disk"][i % 2], a % 256, b + 1
        );
    }
    c.append("systems.toml", &systems);
    let t = Instant::now();
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let db = cfg.settings.database_url.clone();
    let fake = Arc::new(FakePower::default());
    let power = Arc::new(Power::new(
        fake.clone(),
        None,
        PowerConfig {
            min_interval: Duration::ZERO,
            max_parallel: 64,
            ..Default::default()
        },
    ));
    let listeners = rackboot::daemon::Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        dhcp: vec![],
        tftp: None,
        dns: None,
    };
    let d = rackboot::daemon::start_with(cfg, listeners, power.clone())
        .await
        .unwrap();
    println!(
        "== ui bench: {N} systems loaded and daemon started in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // History: two finished runs per system, straight into the store.
    let t = Instant::now();
    let store = rackboot::store::Store::open(&db).await.unwrap();
    for i in 0..N {
        for k in 0..2 {
            let id = format!("run-bench-{i:05}-{k}");
            let at = 1_700_000_000_000 + (i * 2 + k) as i64;
            let r = rackboot::store::NewRun {
                id: &id,
                system: &format!("n{i:05}"),
                profile: "lab",
                state: "queued",
                data: "{}",
                requested_by: Some("bench"),
                overrides: "{}",
                retry_of: None,
                // Not a domain the daemon serves: it never claims them.
                domain: "history",
            };
            store.create_run(&r, at).await.unwrap();
            let to = if (i + k) % 7 == 0 {
                "failed"
            } else {
                "succeeded"
            };
            assert!(store
                .transition(&id, "queued", to, "{}", None, true, "bench", at + 1)
                .await
                .unwrap());
        }
    }
    let inv = d.inventory.borrow().clone();
    rackboot::power::poll::poll_once(&power, &inv).await;
    fake.calls.lock().unwrap().clear();
    println!(
        "== ui bench: {} runs stored, {N} power states polled in {:.1} s",
        2 * N,
        t.elapsed().as_secs_f64()
    );
    let addr = d.api_addr;
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let rss0 = rss();
    for (what, path, n) in [
        ("machines page 1", "/", 30),
        ("sorted by last result, descending", "/?sort=-result", 30),
        (
            "filtered: state=failed, page 2",
            "/?state=failed&page=2",
            30,
        ),
        ("text filter q=n049", "/?q=n049", 30),
        ("page 50", "/?page=50", 30),
    ] {
        let mut server = Vec::new();
        let mut total = Vec::new();
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let r = blocking(move || req(addr, "GET", path, "", None)).await;
            total.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(r.status, 200, "{path}");
            let st = r.header("server-timing").unwrap();
            server.push(st.trim_start_matches("render;dur=").parse::<f64>().unwrap());
            bytes = r.body.len();
        }
        server.sort_by(f64::total_cmp);
        total.sort_by(f64::total_cmp);
        println!(
            "== {what} ({path}): server render median {:.1} ms (max {:.1}), request median {:.1} ms, {} KiB",
            server[n / 2], server[n - 1], total[n / 2], bytes / 1024
        );
    }
    let rss1 = rss();
    for _ in 0..200 {
        let r = blocking(move || req(addr, "GET", "/", "", None)).await;
        assert_eq!(r.status, 200);
    }
    println!(
        "== RSS of the process (daemon in-process + test): {rss0} before rendering, {rss1} after 150 renders, {} after 350",
        rss()
    );
    d.stop().await;
}

/// The text of an auto-escaped template value (minijinja's HTML escapes).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&amp;", "&")
}

/// The inner HTML of the first element with this id.
fn by_id<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let start = at + body[at..].find('>').unwrap() + 1;
    let tag = body[..at]
        .rsplit('<')
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let end = start + body[start..].find(&format!("</{tag}>")).unwrap();
    &body[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_machine_and_profile_pages() {
    let sim = lab("echo checked").await;
    let addr = sim.d().api_addr;
    let get = |path: String| blocking(move || req(addr, "GET", &path, "", None));

    // Before anything happened: the page says so.
    let r = get("/ui/machines/sim1".into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for want in [
        "<h1>sim1",
        "52:54:00:aa:00:01",
        "127.0.0.1",
        "href=\"/ui/profiles/sim\"",
        "ipmi",
        "Why didn't it boot?",
        "Nothing recorded for this machine yet",
        "No finished run yet.",
        "data-feed-system=\"sim1\"",
    ] {
        assert!(r.body.contains(want), "machine page lacks {want:?}");
    }
    // The BMC's address, never its user or password file.
    assert!(r.body.contains("127.0.0.1:1"));
    assert!(!r.body.contains("bmc-password") && !r.body.contains("\"admin\""));
    assert!(!r.body.contains(">admin<") && !r.body.contains("username"));

    // A whole successful reimage.
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 30).await;
    assert_eq!(v["state"], "succeeded", "{v}");

    let r = get("/ui/machines/sim1".into()).await;
    assert_eq!(r.status, 200);
    let chain = by_id(&r.body, "diagnosis");
    for label in [
        "DHCP answered",
        "boot script fetched",
        "kernel and initrd fetched",
        "SSH and service ports up",
    ] {
        assert!(chain.contains(label), "chain lacks {label:?}");
    }
    assert!(!chain.contains("class=\"step missing\""), "{chain}");
    assert!(chain.contains("Every step happened."), "{chain}");
    assert!(chain.contains("succeeded"), "how the run ended");
    // The sparkline: one bar for the run, green, linking it; the streak.
    let spark = by_id(&r.body, "durations");
    assert!(spark.contains("<svg class=\"spark\""), "{spark}");
    assert_eq!(spark.matches("<rect class=\"ok\"").count(), 1, "{spark}");
    assert!(spark.contains(&format!("/ui/runs/{id}")));
    assert!(r.body.contains("1 pass in a row"), "the streak");
    // What happened: transitions, observations and stage results, newest first.
    let events = by_id(&r.body, "events");
    for want in [
        "ev-transition",
        "ev-observation",
        "ev-stage",
        "queued",
        "configure (config), exit 0",
        "check (test), exit 0",
    ] {
        assert!(events.contains(want), "history lacks {want:?}");
    }
    let pos = |s: &str| events.find(s).unwrap_or_else(|| panic!("{s}"));
    assert!(
        pos("succeeded") < pos(">queued<"),
        "newest first: the end above the start"
    );
    // Paging: the events before an id, with a way back; malformed ids are 400s.
    let (_, h) = sim
        .api("GET", "/api/v1/systems/sim1/history?limit=3", None)
        .await;
    let before = h["next_before"].as_i64().expect("more than 3 events");
    let r = get(format!("/ui/machines/sim1?before={before}")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("back to the newest"));
    assert!(
        !r.body.contains("data-feed-system"),
        "an old page is not live"
    );
    let older = by_id(&r.body, "events");
    assert!(older.contains(">queued<") && !older.contains(">stage:1 → succeeded<"));
    for bad in ["/ui/machines/sim1?before=x", "/ui/machines/sim1?before=0"] {
        let r = get(bad.into()).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = get("/ui/machines/nope".into()).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("There is no machine"));
    // Every page links machine names to their page.
    for page in ["/", &format!("/ui/runs/{id}")] {
        let r = get(page.to_string()).await;
        assert!(
            r.body.contains("href=\"/ui/machines/sim1\""),
            "{page} does not link the machine page"
        );
    }

    // Machine-page actions: CSRF first, then they act and come back here.
    let (cookie, csrf) = blocking(move || session(addr)).await;
    let post = |body: String| {
        let c = cookie.clone();
        blocking(move || req(addr, "POST", "/ui/actions", &c, Some(&body)))
    };
    let back = "back=%2Fui%2Fmachines%2Fsim1";
    let r = post(format!("action=netboot-on&system=sim1&{back}")).await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.body);
    let r = post(format!("csrf=nope&action=netboot-on&system=sim1&{back}")).await;
    assert_eq!(r.status, 403);
    let (_, s) = sim.api("GET", "/api/v1/systems/sim1", None).await;
    assert_eq!(s["netboot"], false, "a refused POST changed it");
    let r = post(format!("csrf={csrf}&action=netboot-on&system=sim1&{back}")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/ui/machines/sim1"));
    let (_, s) = sim.api("GET", "/api/v1/systems/sim1", None).await;
    assert_eq!(s["netboot"], true);
    let r = get("/ui/machines/sim1".into()).await;
    assert!(
        r.body.contains("id=\"act-netboot-off\""),
        "the button flips"
    );
    assert!(by_id(&r.body, "netboot").contains("netboot"));
    let r = post(format!("csrf={csrf}&action=netboot-off&system=sim1&{back}")).await;
    assert_eq!(r.status, 303);
    let (_, s) = sim.api("GET", "/api/v1/systems/sim1", None).await;
    assert_eq!(s["netboot"], false);
    let r = post(format!("csrf={csrf}&action=cycle&system=sim1&{back}")).await;
    assert_eq!(r.status, 303, "{}", r.body);

    // Profiles: the list, then one with where each field came from.
    let r = get("/ui/profiles".into()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("aria-current=\"page\">Profiles"));
    for want in [
        "id=\"p-sim\"",
        "id=\"p-rhel9-web\"",
        "href=\"/ui/profiles/lab-base\"",
        "kickstart",
    ] {
        assert!(r.body.contains(want), "profiles page lacks {want:?}");
    }
    let r = get("/ui/profiles/rhel9-web".into()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cfg = sim.c.load().unwrap();
    let inv = &cfg.inventory;
    let p = inv.profile("rhel9-web").unwrap();
    let fields = rackboot::api::convert::profile_fields(inv, p);
    let table = by_id(&r.body, "fields");
    for [field, _, from] in &fields {
        let row = table
            .split(&format!("data-field=\"{field}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {field}"));
        let row = &row[..row.find("</tr>").unwrap()];
        assert!(
            row.contains(from.as_str()),
            "{field}: not from {from}: {row}"
        );
    }
    let origin = |f: &str| {
        fields
            .iter()
            .find(|r| r[0] == f)
            .map(|r| r[2].clone())
            .unwrap()
    };
    assert_eq!(origin("template"), "rhel9");
    assert_eq!(origin("wait_ports"), "rhel9-web");
    assert!(by_id(&r.body, "chain").contains("rhel9-web</a> ← <a href=\"/ui/profiles/rhel9\""));
    assert!(by_id(&r.body, "stages").contains("http-check"));
    // The rendered kickstart is what `rackboot render web70 config` prints.
    let r = get("/ui/profiles/rhel9-web?system=web70&kind=config".into()).await;
    assert_eq!(r.status, 200);
    let want = inv
        .render(
            inv.system("web70").unwrap(),
            rackboot::template::RenderKind::Config,
            &rackboot::template::RunCtx::preview(),
        )
        .unwrap()
        .unwrap();
    assert!(want.contains("%packages"), "a kickstart: {want}");
    assert_eq!(unescape(by_id(&r.body, "rendered")), want);
    // iPXE and the kernel line too; the default kind is the config.
    for kind in ["ipxe", "kernel-args"] {
        let r = get(format!("/ui/profiles/rhel9-web?system=web70&kind={kind}")).await;
        let want = inv
            .render(
                inv.system("web70").unwrap(),
                rackboot::template::RenderKind::parse(kind).unwrap(),
                &rackboot::template::RunCtx::preview(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(unescape(by_id(&r.body, "rendered")), want, "{kind}");
    }
    let r = get("/ui/profiles/rhel9-web".into()).await;
    assert_eq!(unescape(by_id(&r.body, "rendered")), want);
    // Unknown profile or system, a system of another profile: 404; a bad kind: 400.
    for (path, status) in [
        ("/ui/profiles/nope", 404),
        ("/ui/profiles/rhel9-web?system=nope", 404),
        ("/ui/profiles/rhel9-web?system=sim1", 404),
        ("/ui/profiles/rhel9-web?system=web70&kind=bogus", 400),
    ] {
        let r = get(path.into()).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body.contains("<html"), "{path}: an HTML page");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn browser_machine_page_why_no_boot_and_profile() {
    let sim = lab("echo ok").await;
    let Some(b) = Browser::start() else { return };
    let addr = sim.d().api_addr;
    let shots = screenshot_dir();
    // sim1 is power-cycled but never asks for DHCP: the dhcp phase (5 s) times out.
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    let v = sim.wait_terminal(&id, 30).await;
    assert_eq!(v["state"], "timed_out", "{v}");

    on(|| {
        b.login(&format!("http://{addr}"), crate::harness::TOKEN);
        b.click("#m-sim1 td.name a");
        b.wait_for(Until::Present("#diagnosis"), Duration::from_secs(5))
            .unwrap();
        assert!(b.url().ends_with("/ui/machines/sim1"), "{}", b.url());
        let missing = b.text("#first-missing");
        assert!(missing.contains("DHCP answered"), "{missing}");
        assert!(missing.contains("first missing step"), "{missing}");
        // Power went through; what comes after DHCP was never reached.
        assert!(b.exists("li.step.seen[data-step=\"power\"]"));
        assert!(b.exists("li.step.unreached[data-step=\"script\"]"));
        let cause = b.text("#cause");
        assert!(
            cause.contains("no DHCP answer went to this machine"),
            "{cause}"
        );
        assert!(
            b.text("#ended").contains("timed_out"),
            "{}",
            b.text("#ended")
        );
        // The failure is in the sparkline (red) and the streak.
        assert!(b.exists("#durations svg.spark rect.bad"));
        assert!(b.text("#streak").contains("1 failure in a row"));
        b.screenshot(&shots.join("ui-machine-no-dhcp.png"));
        b.exec("window.__marker = 5;", &[]);
        b.wait_for(
            Until::Js("window.__rackboot && window.__rackboot.es && window.__rackboot.es.readyState === 1"),
            Duration::from_secs(5),
        )
        .unwrap();
    });
    // Live: a new run's events go on top of "what happened" without a reload.
    let (_, v) = sim.create(&["sim1"]).await;
    let id2 = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id2, "dhcp", 5).await;
    on(|| {
        b.wait_for(
            Until::Js(&format!(
                "document.querySelector('#events li.new a.run-link') && \
                 document.querySelector('#events li').textContent.includes('{id2}')"
            )),
            Duration::from_secs(5),
        )
        .unwrap();
        b.wait_for(
            Until::Js("document.querySelector('#events li .pill').textContent.includes('dhcp')"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(b.exec("return window.__marker;", &[]), serde_json::json!(5));
        // The header's phase follows too.
        b.wait_for(
            Until::Text("h1 [data-phase-system=\"sim1\"]", "dhcp"),
            Duration::from_secs(5),
        )
        .unwrap();
        // Nothing twice: each event id once in the list.
        let dup = b.exec(
            "const ids = Array.from(document.querySelectorAll('#events li[data-id]')).map(l => l.dataset.id); \
             return ids.length - new Set(ids).size;",
            &[],
        );
        assert_eq!(dup, serde_json::json!(0));
        // The "why didn't it boot?" panel follows the new attempt, same document.
        b.wait_for(
            Until::Js(
                "(document.querySelector('#ended') || {}).textContent.includes('still in progress') && \
                 document.querySelector('li.step.seen[data-step=\"power\"]') !== null",
            ),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(
            b.exec("return window.__rackboot.panels;", &[])
                .as_u64()
                .unwrap()
                >= 1
        );
        assert_eq!(b.exec("return window.__marker;", &[]), serde_json::json!(5));
        b.exec("document.querySelector('#events').scrollIntoView();", &[]);
        b.screenshot(&shots.join("ui-machine-live.png"));
        // Cancel it from the machine page's form (a fresh page has the
        // button): back to the machine page.
        b.goto(&format!("http://{addr}/ui/machines/sim1"));
        assert!(b.text("#ended").contains("still in progress"));
        b.click("#act-cancel");
        b.wait_for(
            Until::Js("((document.querySelector('#flash') || {}).textContent || '').includes('Cancelled')"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(b.url().ends_with("/ui/machines/sim1"), "{}", b.url());
    });
    sim.wait_terminal(&id2, 10).await;
    on(|| {
        // The queue page links the failed machine to its page.
        b.goto(&format!("http://{addr}/ui/queue"));
        assert!(b.exists("#failures a[href=\"/ui/machines/sim1\"]"));
        // Profiles: the list, then a kickstart rendered for one of its machines.
        b.goto(&format!("http://{addr}/ui/profiles"));
        assert!(b.exists("#p-rhel9-web"));
        b.screenshot(&shots.join("ui-profiles.png"));
        b.click("#p-rhel9-web td.name a");
        b.wait_for(Until::Present("#rendered"), Duration::from_secs(5))
            .unwrap();
        assert!(b.text("#rendered").contains("%packages"));
        assert!(b
            .text("tr[data-field=\"template\"] td.origin")
            .contains("rhel9"));
        b.screenshot(&shots.join("ui-profile.png"));
        b.exec("document.querySelector('#rendered').scrollIntoView();", &[]);
        b.screenshot(&shots.join("ui-profile-kickstart.png"));
        // The select + GET form: the iPXE script of the same machine.
        b.exec(
            "document.querySelector('select[name=kind]').value = 'ipxe';",
            &[],
        );
        b.click("#render");
        b.wait_for(
            Until::Js("location.search.includes('kind=ipxe')"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(
            b.text("#rendered").starts_with("#!ipxe"),
            "{}",
            b.text("#rendered")
        );
    });
    println!("screenshots written to {}", shots.display());
}

/// Hidden columns (query, the columns form, kept in a cookie) and the dry
/// run before an action on several machines or a whole filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_hidden_columns_and_dry_run() {
    let sim = lab("echo ok").await;
    let addr = sim.d().api_addr;
    let (cookie, csrf) = blocking(move || session(addr)).await;
    let get = |path: &'static str, c: String| blocking(move || req(addr, "GET", path, &c, None));
    let post = |form: &'static str| {
        let (c, t) = (cookie.clone(), csrf.clone());
        blocking(move || {
            req(
                addr,
                "POST",
                "/ui/actions",
                &c,
                Some(&format!("csrf={t}&{form}")),
            )
        })
    };
    let r = get("/?hide=ip,streak", cookie.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(">IP "), "the IP column is hidden");
    assert!(!r.body.contains("Last 10 runs</th>"));
    assert!(r.body.contains(">Power "), "the others show");
    let set = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .find(|v| v.starts_with("rb_hide="))
        .expect("the choice is kept");
    let hide = set.split(';').next().unwrap().to_string();
    // Kept: the next plain visit hides the same columns.
    let c2 = format!("{cookie}; {hide}");
    let r = get("/", c2).await;
    assert!(!r.body.contains(">IP ") && r.body.contains(">Power "));
    // The columns form: only Profile and Power ticked.
    let r = get("/?cols=1&show=profile&show=power", cookie.clone()).await;
    assert!(r.body.contains(">Profile ") && r.body.contains(">Power "));
    assert!(!r.body.contains(">Run phase ") && !r.body.contains(">IP "));
    // A column that does not exist: 400.
    let r = get("/?hide=bogus", cookie.clone()).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown column"), "{}", r.body);

    // A power cycle of a whole filter: a dry run first, no BMC call.
    let r = post("back=%2F&action=cycle&scope=filter&q=sim").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("This would act on <strong>2</strong> machines"),
        "{}",
        r.body
    );
    // A whole filter: the dry run counts and lists, and nothing happens yet.
    let r = post("action=reimage&scope=filter&q=sim&back=%2F").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("This would act on <strong>2</strong> machines"),
        "{}",
        r.body
    );
    assert!(r.body.contains("sim1, sim2"), "{}", r.body);
    assert!(
        runs_of(&sim, "sim1").await.is_empty(),
        "a dry run created a run"
    );
    // Confirmed: both queued.
    let r = post("action=reimage&confirm=1&system=sim1&system=sim2&back=%2F").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(runs_of(&sim, "sim1").await.len(), 1);
    assert_eq!(runs_of(&sim, "sim2").await.len(), 1);
    // Two ticked machines, both busy now: the dry run names the blockers.
    let r = post("action=reimage&system=sim1&system=sim2").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("2 of them would refuse it"), "{}", r.body);
    assert!(r.body.contains("sim1: a run is in progress"), "{}", r.body);
    // A filter that matches nothing.
    let r = post("action=cancel&scope=filter&q=nomatch").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("No machine matches"), "{}", r.body);
}

/// Page after page in one browser: each page's event stream is closed when
/// the page is left. (They used to stay open in the back/forward cache: the
/// seventh page then waited forever for one of Chromium's six connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_many_pages_in_a_row() {
    let sim = lab("echo ok").await;
    let Some(b) = Browser::start() else { return };
    let addr = sim.d().api_addr;
    on(|| {
        b.login(&format!("http://{addr}"), crate::harness::TOKEN);
        for i in 0..12 {
            let t = std::time::Instant::now();
            b.goto(&format!("http://{addr}/?q=sim&x={i}"));
            assert!(b.exists("#m-sim1"), "visit {i}");
            println!("visit {i}: {:?}", t.elapsed());
        }
    });
}
