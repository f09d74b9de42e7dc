//! Discovery (issue 17.1): DHCP requests from MACs outside the inventory are
//! recorded without an answer (reservations mode), listed by the API, the
//! CLI and the UI, and adopted with `systems add --from-discovered`.

use crate::admin::rb;
use crate::browser::{screenshot_dir, Browser, Until};
use crate::harness::{lab, Lab};
use crate::ui::{blocking, req, session};
use dhcproto::{Encodable, Encoder};
use rackboot::api::Discovered;
use rackboot::model::Mac;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const IPXE_MAC: &str = "52:54:00:dd:00:01";
const UEFI_MAC: &str = "52:54:00:dd:00:02";
const OTHER_MAC: &str = "52:54:00:dd:00:03";

async fn send(l: &Lab, m: dhcproto::v4::Message) {
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).unwrap();
    l.client.send_to(&buf, l.server).await.unwrap();
}

/// The API's list once it holds every MAC of `want` (flushes are batched:
/// bounded wait, 10 s).
async fn listed(l: &Lab, want: &[&str]) -> Vec<Discovered> {
    let t = Instant::now();
    loop {
        let r = l.api("GET", "/api/v1/discovered", None, true).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Vec<Discovered> = r.typed();
        if want.iter().all(|m| v.iter().any(|d| d.mac == *m)) {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "not listed: {v:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_macs_are_recorded_listed_and_adopted() {
    let l = lab().await;
    // An iPXE client outside the inventory: no answer in reservations mode.
    assert_eq!(l.offer(IPXE_MAC).await, None);
    assert_eq!(l.offer(IPXE_MAC).await, None);
    // A UEFI PXE ROM behind a relay, with a vendor class carrying an escape
    // sequence (untrusted bytes shown as text).
    let mut m = crate::dhcp::discover(
        UEFI_MAC.parse::<Mac>().unwrap(),
        41,
        b"PXEClient:Arch:00007:UNDI:003016\x1b[2J",
        7,
    );
    m.set_giaddr(Ipv4Addr::new(10, 9, 0, 1));
    m.opts_mut()
        .insert(dhcproto::v4::DhcpOption::Hostname("lab-box-7".into()));
    send(&l, m).await;
    send(
        &l,
        crate::dhcp::discover(OTHER_MAC.parse().unwrap(), 42, b"PXEClient", 0),
    )
    .await;
    // A machine of the inventory is answered and not recorded.
    let node50 = l.c.load().unwrap().inventory.system("node50").unwrap().macs[0];
    assert!(l.offer(&node50.to_string()).await.is_some());

    let v = listed(&l, &[IPXE_MAC, UEFI_MAC, OTHER_MAC]).await;
    // Each first sighting is announced once on the event feed (SSE,
    // webhooks, MQTT), the second request of IPXE_MAC not again.
    let t = Instant::now();
    let announced = loop {
        // The stored feed, read from the daemon's database (WAL: a second
        // reader is fine); SSE, webhooks and MQTT all walk this feed.
        let feed: Vec<serde_json::Value> = {
            let store = rackboot::store::Store::open(&format!(
                "sqlite://{}",
                l.c.path().join(".lab/data/rackboot.db").display()
            ))
            .await
            .unwrap();
            let rows = store.feed_since(0, 1000).await.unwrap();
            rows.into_iter()
                .filter(|e| e.kind == "discovered")
                .map(|e| serde_json::from_str(&e.data).unwrap())
                .collect()
        };
        if feed.len() >= 3 || t.elapsed() > Duration::from_secs(5) {
            break feed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let macs: Vec<&str> = announced
        .iter()
        .map(|e| e["mac"].as_str().unwrap())
        .collect();
    assert_eq!(macs.len(), 3, "{announced:?}");
    for m in [IPXE_MAC, UEFI_MAC, OTHER_MAC] {
        assert!(macs.contains(&m), "{m} not announced: {announced:?}");
    }
    assert!(!v.iter().any(|d| d.mac == node50.to_string()), "{v:?}");
    let ipxe = v.iter().find(|d| d.mac == IPXE_MAC).unwrap();
    assert!(ipxe.ipxe);
    assert_eq!(ipxe.count, 2);
    assert_eq!(ipxe.arch.as_deref(), Some("bios"));
    let uefi = v.iter().find(|d| d.mac == UEFI_MAC).unwrap();
    assert!(!uefi.ipxe);
    assert_eq!(uefi.arch.as_deref(), Some("efi-x64"));
    assert_eq!(uefi.relay.as_deref(), Some("10.9.0.1"));
    assert_eq!(uefi.hostname.as_deref(), Some("lab-box-7"));
    assert_eq!(
        uefi.vendor_class.as_deref(),
        Some("PXEClient:Arch:00007:UNDI:003016?[2J"),
        "control bytes masked"
    );
    assert!(uefi.first_seen <= uefi.last_seen && uefi.last_seen > 0);

    // The CLI lists them (table and JSON).
    let lc = &l.c;
    let out = blocking({
        let lc = lc.path().to_path_buf();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
                .arg("--config")
                .arg(&lc)
                .arg("discovered")
                .env_remove("RACKBOOT_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains(UEFI_MAC) && table.contains("efi-x64") && table.contains("10.9.0.1"),
        "{table}"
    );

    // Adopt the iPXE one with the CLI: the MAC and arch come from the record,
    // the record goes, and the machine is answered from now on.
    let r = rb(
        lc,
        &[
            "systems",
            "add",
            "found1",
            "--from-discovered",
            IPXE_MAC,
            "--ip",
            "10.77.0.91",
            "--profile",
            "lab-disk",
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let toml = lc.read("systems.toml");
    assert!(
        toml.contains(IPXE_MAC) && toml.contains("arch = \"bios\""),
        "{toml}"
    );
    let r = l
        .api("GET", &format!("/api/v1/discovered/{IPXE_MAC}"), None, true)
        .await;
    assert_eq!(r.status, 404, "the record is forgotten: {}", r.text());
    assert_eq!(l.offer(IPXE_MAC).await, Some(Ipv4Addr::new(10, 77, 0, 91)));

    // The API: MACs and from_discovered together are refused; an unknown
    // record is 404; a good one is 201 and forgotten.
    let body = |extra: serde_json::Value| {
        let mut b = serde_json::json!({
            "name": "found2", "ip": "10.77.0.92", "profile": "lab-disk",
            "from_discovered": UEFI_MAC,
        });
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let r = l
        .api(
            "POST",
            "/api/v1/systems",
            Some(body(serde_json::json!({"macs": ["52:54:00:dd:00:99"]}))),
            true,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = l
        .api(
            "POST",
            "/api/v1/systems",
            Some(body(
                serde_json::json!({"from_discovered": "52:54:00:dd:00:98"}),
            )),
            true,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = l
        .api(
            "POST",
            "/api/v1/systems",
            Some(body(serde_json::json!({}))),
            true,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let sys: rackboot::api::Edit = r.typed();
    let rackboot::api::Edited::System(Some(s)) = sys.object else {
        panic!("{:?}", sys.object)
    };
    assert_eq!(s.macs, vec![UEFI_MAC.to_string()]);
    assert_eq!(s.vars.get("arch"), Some(&serde_json::json!("efi-x64")));
    let v = listed(&l, &[OTHER_MAC]).await;
    assert!(!v.iter().any(|d| d.mac == UEFI_MAC), "{v:?}");

    // The UI lists the last one; its forget form drops it.
    let addr = l.d.api_addr;
    let (cookie, csrf) = blocking(move || session(addr)).await;
    let page = {
        let cookie = cookie.clone();
        blocking(move || req(addr, "GET", "/ui/discovered", &cookie, None)).await
    };
    assert_eq!(page.status, 200);
    assert!(page.body.contains(OTHER_MAC), "{}", page.body);
    let form = format!("csrf={csrf}&mac={}", OTHER_MAC.replace(':', "%3A"));
    let r =
        blocking(move || req(addr, "POST", "/ui/discovered/forget", &cookie, Some(&form))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = l.api("GET", "/api/v1/discovered", None, true).await;
    let v: Vec<Discovered> = r.typed();
    assert!(v.is_empty(), "{v:?}");

    // In a browser: the page lists a new machine; its "Add" form adds it and
    // lands on the new machine's page.
    const BROWSER_MAC: &str = "52:54:00:dd:00:04";
    send(
        &l,
        crate::dhcp::discover(BROWSER_MAC.parse().unwrap(), 43, b"PXEClient:Arch:00007", 7),
    )
    .await;
    listed(&l, &[BROWSER_MAC]).await;
    if let Some(b) = Browser::start() {
        tokio::task::block_in_place(|| {
            b.login(&format!("http://{addr}"), crate::harness::TOKEN);
            b.goto(&format!("http://{addr}/ui/discovered"));
            let row = "#d-525400dd0004";
            assert!(b.text(row).contains("efi-x64"), "{}", b.text(row));
            b.fill(&format!("{row} input[name=name]"), "found4");
            b.fill(&format!("{row} input[name=ip]"), "10.77.0.94");
            b.screenshot(&screenshot_dir().join("ui-discovered.png"));
            b.click(&format!("{row} button[type=submit]"));
            b.wait_for(
                Until::Js("location.pathname === '/ui/machines/found4'"),
                Duration::from_secs(10),
            )
            .unwrap();
            b.screenshot(&screenshot_dir().join("ui-discovered-added.png"));
            assert!(b.url().ends_with("/ui/machines/found4"), "{}", b.url());
        });
        assert!(lc.read("systems.toml").contains(BROWSER_MAC));
    } else {
        // Without a browser the same form, posted by hand.
        let (cookie, csrf) = blocking(move || session(addr)).await;
        let form = format!(
            "csrf={csrf}&mac={}&name=found4&ip=10.77.0.94&profile=lab-disk",
            BROWSER_MAC.replace(':', "%3A")
        );
        let r =
            blocking(move || req(addr, "POST", "/ui/discovered/adopt", &cookie, Some(&form))).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/ui/machines/found4"));
    }

    // /metrics counts the sightings.
    let m = l.api("GET", "/metrics", None, true).await.text();
    let n: f64 = m
        .lines()
        .find_map(|x| x.strip_prefix("rackboot_dhcp_discovered_sightings_total "))
        .expect("the counter")
        .parse()
        .unwrap();
    assert!(n >= 4.0, "{n}");
}

// ---- dhcp.inspect_discovered (issue 17.2: "inspect discovered machines
// automatically, off by default") ----

const FOUND_MAC: &str = "52:54:00:dd:01:01";
const FOUND2_MAC: &str = "52:54:00:dd:01:02";

/// The sample config in pool mode, `inspect_discovered` as given.
fn pool_lab_config(inspect: bool) -> crate::harness::ConfigDir {
    let c = crate::harness::ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "mode = \"reservations\"",
        &format!(
            "mode = \"pool\"\npool_start = \"10.77.0.100\"\npool_end = \"10.77.0.110\"\n\
             inspect_discovered = {inspect}"
        ),
    );
    c.replace("rackboot.toml", "[tftp]\n", "[tftp]\nenabled = false\n");
    c
}

/// The OFFER to an iPXE DISCOVER from `mac`: (yiaddr, boot file name).
async fn offer_with_file(l: &Lab, mac: &str) -> Option<(Ipv4Addr, Option<String>)> {
    use dhcproto::{Decodable, Decoder};
    send(l, crate::dhcp::ipxe_discover(mac.parse().unwrap(), 77)).await;
    let mut b = vec![0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), l.client.recv_from(&mut b))
        .await
        .ok()?
        .unwrap();
    let m = dhcproto::v4::Message::decode(&mut Decoder::new(&b[..n])).unwrap();
    let file = match m.opts().get(dhcproto::v4::OptionCode::BootfileName) {
        Some(dhcproto::v4::DhcpOption::BootfileName(f)) => {
            Some(String::from_utf8_lossy(f).into_owned())
        }
        _ => m.fname_str().and_then(|r| r.ok()).map(str::to_string),
    };
    Some((m.yiaddr(), file.filter(|f| !f.is_empty())))
}

async fn post_facts(l: &Lab, path: &str, body: String) -> (u16, String) {
    let (addr, path) = (l.d.http_addr, path.to_string());
    blocking(move || {
        let r = crate::harness::http(
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        (r.status, r.text())
    })
    .await
}

/// The facts URL in a discovered MAC's inspection config (`/facts/…?token=…`).
async fn facts_path(l: &Lab, mac: &str) -> String {
    let hy = mac.replace(':', "-");
    let ks = l.get(l.d.http_addr, &format!("/ks/{hy}")).await;
    assert_eq!(ks.status, 200, "{}", ks.text());
    let ks = ks.text();
    assert!(
        ks.contains("poweroff"),
        "a discovered machine powers itself off: {ks}"
    );
    let at = ks
        .find(&format!("/facts/{hy}?token="))
        .expect("the facts URL");
    ks[at..].split('\'').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_machines_are_inspected_in_pool_mode_when_asked() {
    let l = crate::harness::lab_in(pool_lab_config(true)).await;
    // An unknown MAC gets a pool address and the iPXE script URL.
    let (ip, file) = offer_with_file(&l, FOUND_MAC).await.expect("an offer");
    assert!(
        (100..=110).contains(&ip.octets()[3]),
        "a pool address: {ip}"
    );
    let file = file.expect("a boot file");
    assert!(file.ends_with("/boot.ipxe"), "{file}");
    // Its script boots the inspect profile's kernel, with the config URL.
    let hy = FOUND_MAC.replace(':', "-");
    let s = l.get(l.d.http_addr, &format!("/ipxe/{hy}")).await;
    assert_eq!(s.status, 200, "{}", s.text());
    let script = s.text();
    assert!(
        script.contains("profile inspect") && script.contains("ks=http"),
        "{script}"
    );
    assert!(script.contains(&format!("/ks/{hy}")), "{script}");
    let good_path = facts_path(&l, FOUND_MAC).await;
    let token = good_path.split("token=").nth(1).unwrap().to_string();
    assert_eq!(token.len(), 32, "128 bits: {token}");
    // Another MAC has another token.
    let other_path = facts_path(&l, FOUND2_MAC).await;
    assert_ne!(other_path.split("token=").nth(1).unwrap(), token);
    // The sighting is recorded (the flusher writes it within a second).
    listed(&l, &[FOUND_MAC]).await;

    let good = serde_json::json!({
        "cpu": {"model": "QEMU Virtual CPU", "count": 2},
        "memory_mib": 2048,
        "disks": [{"name": "vda", "size_bytes": 21474836480u64, "rotational": true}],
        "nics": [{"name": "eth0", "mac": FOUND_MAC, "link": true}],
        "firmware": "bios",
        "secure_boot": false,
    });
    let no_token = good_path.split('?').next().unwrap().to_string();
    // Refused, nothing stored: no token, a wrong token, another MAC's token,
    // malformed (control character, unknown key, not JSON), too large.
    let cases: Vec<(String, String, u16)> = vec![
        (no_token.clone(), good.to_string(), 403),
        (
            format!("{no_token}?token={}", "0".repeat(32)),
            good.to_string(),
            403,
        ),
        (
            other_path.replace(&FOUND2_MAC.replace(':', "-"), &hy),
            good.to_string(),
            403,
        ),
        (
            good_path.clone(),
            good.to_string().replace("\"vda\"", "\"vda\\n$(reboot)\""),
            422,
        ),
        (
            good_path.clone(),
            r#"{"memory_mib": 1, "shell": "id"}"#.into(),
            422,
        ),
        (good_path.clone(), "memory=1".into(), 422),
        (
            good_path.clone(),
            format!(r#"{{"dmi": {{"vendor": "{}"}}}}"#, "v".repeat(70_000)),
            413,
        ),
    ];
    for (path, body, want) in cases {
        let (s, text) = post_facts(&l, &path, body).await;
        assert_eq!(s, want, "{path}: {text}");
    }
    let d: Discovered = l
        .api(
            "GET",
            &format!("/api/v1/discovered/{FOUND_MAC}"),
            None,
            true,
        )
        .await
        .typed();
    assert_eq!(d.facts, None, "nothing stored by a refused report");

    // The right token and a good report: stored against the MAC.
    let (s, text) = post_facts(&l, &good_path, good.to_string()).await;
    assert_eq!(s, 200, "{text}");
    let d: Discovered = l
        .api(
            "GET",
            &format!("/api/v1/discovered/{FOUND_MAC}"),
            None,
            true,
        )
        .await
        .typed();
    let f = d.facts.expect("facts stored");
    assert_eq!(f.memory_mib, Some(2048));
    let reported_at = d.facts_at.expect("when");
    let v = listed(&l, &[FOUND_MAC]).await;
    let row = v.iter().find(|d| d.mac == FOUND_MAC).unwrap();
    assert_eq!(row.facts.as_ref().and_then(|f| f.memory_mib), Some(2048));

    // `rackboot discovered` shows them in short.
    let lc = l.c.path().to_path_buf();
    let out = blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--config")
            .arg(&lc)
            .arg("discovered")
            .env_remove("RACKBOOT_TOKEN")
            .output()
            .unwrap()
    })
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("FACTS") && table.contains("2 CPUs, 2048 MiB, vda 20.0 GiB"),
        "{table}"
    );

    // Adopted with the CLI: the facts become the new system's.
    let r = rb(
        &l.c,
        &[
            "systems",
            "add",
            "found9",
            "--from-discovered",
            FOUND_MAC,
            "--ip",
            "10.77.0.95",
            "--profile",
            "lab-disk",
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let r = l
        .api("GET", "/api/v1/systems/found9/facts", None, true)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report: rackboot::api::facts::FactsReport = r.typed();
    assert_eq!(report.facts.memory_mib, Some(2048));
    assert_eq!(report.facts.disks[0].name, "vda");
    assert_eq!(
        (report.at, report.run_id),
        (reported_at, None),
        "when it reported, no run"
    );
    let r = l
        .api(
            "GET",
            &format!("/api/v1/discovered/{FOUND_MAC}"),
            None,
            true,
        )
        .await;
    assert_eq!(r.status, 404, "the record is forgotten: {}", r.text());
    // Now in the inventory: its facts URL no longer takes the MAC's token.
    let (s, text) = post_facts(&l, &good_path, good.to_string()).await;
    assert_eq!(s, 403, "{text}");

    // Adopted through the API (`from_discovered`): the same.
    assert!(offer_with_file(&l, FOUND2_MAC).await.is_some());
    listed(&l, &[FOUND2_MAC]).await;
    let (s, text) = post_facts(&l, &other_path, good.to_string().replace("2048", "4096")).await;
    assert_eq!(s, 200, "{text}");
    let r = l
        .api(
            "POST",
            "/api/v1/systems",
            Some(serde_json::json!({
                "name": "found10", "ip": "10.77.0.96", "profile": "lab-disk",
                "from_discovered": FOUND2_MAC,
            })),
            true,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let report: rackboot::api::facts::FactsReport = l
        .api("GET", "/api/v1/systems/found10/facts", None, true)
        .await
        .typed();
    assert_eq!(report.facts.memory_mib, Some(4096));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_machines_are_not_inspected_by_default() {
    let l = crate::harness::lab_in(pool_lab_config(false)).await;
    // A pool address and no boot file; no script, no config, no facts.
    let (ip, file) = offer_with_file(&l, FOUND_MAC).await.expect("an offer");
    assert!((100..=110).contains(&ip.octets()[3]), "{ip}");
    assert_eq!(file, None);
    let hy = FOUND_MAC.replace(':', "-");
    for p in [format!("/ipxe/{hy}"), format!("/ks/{hy}")] {
        let r = l.get(l.d.http_addr, &p).await;
        assert_eq!(r.status, 404, "{p}: {}", r.text());
    }
    listed(&l, &[FOUND_MAC]).await;
    let (s, _) = post_facts(&l, &format!("/facts/{hy}?token=x"), "{}".into()).await;
    assert_eq!(s, 404);
}

/// In reservations (and off) mode an unknown MAC gets no address from us:
/// the setting is refused at load, saying why.
#[test]
fn inspect_discovered_needs_pool_or_proxy_mode() {
    let c = crate::harness::ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "mode = \"reservations\"",
        "mode = \"reservations\"\ninspect_discovered = true",
    );
    let e = c.load().err().expect("refused").to_string();
    assert!(
        e.contains("dhcp.inspect_discovered") && e.contains("\"pool\"") && e.contains("\"proxy\""),
        "{e}"
    );
    // Proxy mode takes it.
    c.replace(
        "rackboot.toml",
        "mode = \"reservations\"",
        "mode = \"proxy\"",
    );
    c.load().expect("proxy mode takes inspect_discovered");
}
