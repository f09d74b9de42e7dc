//! The whole daemon: in-process on port-0 listeners, and the real binary
//! under SIGHUP / SIGTERM.

use crate::harness::{free_port, http, ConfigDir};
use rackboot::api;
use rackboot::daemon;
use std::time::{Duration, Instant};

async fn start(c: &ConfigDir) -> daemon::Running {
    let cfg = c.load().unwrap();
    let listeners = crate::harness::loopback_listeners(vec![]).await;
    daemon::start(cfg, listeners).await.unwrap()
}

fn token(c: &ConfigDir) -> String {
    std::fs::read_to_string(c.path().join(".lab/data/api-token"))
        .unwrap()
        .trim()
        .to_string()
}

async fn call(
    addr: std::net::SocketAddr,
    method: &'static str,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
) -> crate::harness::HttpResponse {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(addr, method, &path, &h, body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_api_and_netboot_switch() {
    let c = ConfigDir::sample();
    // node50 lives on loopback here, so the test can ask from its own address.
    c.replace("systems.toml", "ip = \"10.77.0.50\"", "ip = \"127.0.0.50\"");
    let d = start(&c).await;
    let r = call(d.api_addr, "GET", "/healthz", vec![], None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));

    let r = call(d.api_addr, "GET", "/api/v1/systems", vec![], None).await;
    assert_eq!(r.status, 200);
    let v: Vec<api::System> = r.typed();
    assert_eq!(v.len(), 7);
    let text = r.text();
    assert!(
        !text.contains("rigpass") && !text.contains("bmc-password"),
        "secret leaked: {text}"
    );
    let node50 = v.iter().find(|s| s.name == "node50").unwrap();
    assert_eq!(node50.bmc.as_ref().unwrap().kind, "ipmi");
    assert_eq!(node50.netboot.as_ref().map(|n| n.netboot), Some(false));
    // The run state is on the wire under its own names.
    assert_eq!(r.json()[0]["netboot"], false);
    assert!(r.json()[0]["run_id"].is_null());

    // Changing state needs the token.
    let r = call(
        d.api_addr,
        "PUT",
        "/api/v1/systems/node50/netboot",
        vec![("Authorization", String::new())],
        Some("{\"enabled\":true}"),
    )
    .await;
    assert_eq!(r.status, 401);
    let auth = format!("Bearer {}", token(&c));
    let r = call(
        d.api_addr,
        "PUT",
        "/api/v1/systems/node50/netboot",
        vec![("Authorization", auth.clone())],
        Some("{\"enabled\":true}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let st: api::NetbootState = r.typed();
    assert!(st.netboot && st.run_id.is_some(), "{st:?}");

    // The boot server now hands node50 its installer, with a run token in the done URL.
    let r = call(d.http_addr, "GET", "/ipxe/52-54-00-77-00-50", vec![], None).await;
    assert!(r.text().contains("kernel "), "{}", r.text());
    // Only node50's own address gets its installer config.
    let r = call(d.http_addr, "GET", "/ks/52-54-00-77-00-50", vec![], None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let addr = d.http_addr;
    let ks = tokio::task::spawn_blocking(move || {
        crate::harness::http_from(
            Some([127, 0, 0, 50].into()),
            addr,
            "GET",
            "/ks/52-54-00-77-00-50",
            &[],
            None,
        )
        .text()
    })
    .await
    .unwrap();
    let kargs = call(d.http_addr, "GET", "/ipxe/52-54-00-77-00-50", vec![], None)
        .await
        .text();
    assert!(ks.contains("/done/52-54-00-77-00-50?token="), "{ks}");
    let done_url = ks
        .split('\'')
        .find(|s| s.contains("/done/"))
        .expect("done URL in the disk installer");
    let path = &done_url[done_url.find("/done/").unwrap()..];
    assert!(kargs.contains("ks="));

    // A forged callback is refused; the real one flips node50 to local boot.
    let r = call(
        d.http_addr,
        "POST",
        "/done/52-54-00-77-00-50?token=forged",
        vec![],
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(d.http_addr, "POST", path, vec![], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(d.http_addr, "GET", "/ipxe/52-54-00-77-00-50", vec![], None).await;
    assert!(r.text().contains("\nexit\n"), "{}", r.text());
    // The same token again is stale now.
    let r = call(d.http_addr, "POST", path, vec![], None).await;
    assert_eq!(r.status, 403);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netboot_survives_restart() {
    let c = ConfigDir::sample();
    let d = start(&c).await;
    let auth = format!("Bearer {}", token(&c));
    let r = call(
        d.api_addr,
        "PUT",
        "/api/v1/systems/node52/netboot",
        vec![("Authorization", auth)],
        Some("{\"enabled\":true}"),
    )
    .await;
    assert_eq!(r.status, 200);
    d.stop().await;
    let d = start(&c).await;
    let r = call(d.api_addr, "GET", "/api/v1/systems/node52", vec![], None).await;
    assert!(r.typed::<api::System>().netboot.unwrap().netboot);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reload_keeps_last_good_inventory() {
    let c = ConfigDir::sample();
    let d = start(&c).await;
    let auth = format!("Bearer {}", token(&c));
    let before = std::fs::read_to_string(c.path().join(".lab/data/rackboot.db")).ok();
    c.append(
        "systems.toml",
        "\n[systems.node99]\nmacs = [\"zz\"]\nip = \"10.77.0.99\"\nprofile = \"lab\"\n",
    );
    let r = call(
        d.api_addr,
        "POST",
        "/api/v1/reload",
        vec![("Authorization", auth.clone())],
        None,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let e = r.typed::<api::ErrorBody>().error;
    assert_eq!(e.code, "invalid_config");
    let e = &e.errors.unwrap()[0];
    assert_eq!(e.file, "systems.toml");
    assert_eq!(e.key, "systems.node99.macs[0]");
    // Still serving the old inventory, and nothing was written for the bad config.
    let r = call(d.api_addr, "GET", "/api/v1/systems", vec![], None).await;
    assert_eq!(r.typed::<Vec<api::System>>().len(), 7);
    assert_eq!(
        std::fs::read_to_string(c.path().join(".lab/data/rackboot.db")).ok(),
        before
    );

    c.replace(
        "systems.toml",
        "macs = [\"zz\"]",
        "macs = [\"52:54:00:77:00:99\"]",
    );
    let r = call(
        d.api_addr,
        "POST",
        "/api/v1/reload",
        vec![("Authorization", auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.typed::<api::Reloaded>().systems, 8);
    let r = call(d.http_addr, "GET", "/ipxe/52-54-00-77-00-99", vec![], None).await;
    assert_eq!(r.status, 200);
    d.stop().await;
}

/// The real binary: SIGHUP with a broken file keeps the old inventory and
/// says so in the log; a good edit is taken; SIGTERM exits cleanly.
#[test]
fn binary_sighup_reload_and_sigterm() {
    let c = ConfigDir::sample();
    let (hp, ap) = (free_port(), free_port());
    c.use_loopback(hp, ap);
    let log = c.path().join("daemon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["serve", "--config"])
        .arg(c.path())
        .env("RACKBOOT_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // A failed assertion must not leave the daemon holding its ports.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // Only while it is still our daemon (not a reused pid).
            let cmd = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
            if !String::from_utf8_lossy(&cmd).contains("serve") {
                return;
            }
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let _reap = Reap(child.id());
    let api: std::net::SocketAddr = format!("127.0.0.1:{ap}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(api).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let count = || {
        http(api, "GET", "/api/v1/systems", &[], None)
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(), 7);
    let hup = |pid: u32| {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
    };
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let l = std::fs::read_to_string(&log).unwrap();
            if l.contains(needle) {
                return l;
            }
            assert!(Instant::now() < deadline, "log never said {needle:?}:\n{l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Broken edit: rejected, old inventory kept, the log names file, key and reason.
    c.replace(
        "systems.toml",
        "\"52:54:00:77:00:53\"",
        "\"52:54:00:77:00\"",
    );
    hup(child.id());
    let l = wait_log("reload rejected");
    assert!(
        l.contains("systems.node53.macs[0]") && l.contains("malformed MAC"),
        "{l}"
    );
    assert_eq!(count(), 7);

    // Good edit: taken.
    c.replace(
        "systems.toml",
        "\"52:54:00:77:00\"",
        "\"52:54:00:77:00:53\"",
    );
    c.append("systems.toml", "\n[systems.node54]\nmacs = [\"52:54:00:77:00:54\"]\nip = \"10.77.0.54\"\nprofile = \"lab\"\n");
    hup(child.id());
    wait_log("configuration reloaded");
    assert_eq!(count(), 8);

    // An edit through the CLI (it writes the file, then asks for a reload).
    let rb = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .args(args)
            .arg("--config")
            .arg(c.path())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    rb(&["systems", "edit", "node54", "--ip", "10.77.0.154"]);
    // The audit trail: the CLI's edit (token, via, before → after), then the
    // good and the refused reload by signal; newest first.
    let page: api::AuditPage = serde_json::from_str(&rb(&["audit", "--json"])).unwrap();
    let e = &page.entries;
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        (
            e[0].actor.as_str(),
            e[0].via.as_str(),
            e[0].action.as_str(),
            e[0].target.as_str()
        ),
        ("default", "cli", "POST /api/v1/reload", "node54")
    );
    assert_eq!(e[0].remote, "127.0.0.1");
    let (verb, fields) = rackboot::api::change_fields(&e[0].detail["changes"][0]);
    assert_eq!(verb, "changed");
    assert_eq!(
        fields,
        vec![(
            "ip".into(),
            "\"10.77.0.54\"".into(),
            "\"10.77.0.154\"".into()
        )]
    );
    assert_eq!(
        (
            e[1].actor.as_str(),
            e[1].via.as_str(),
            e[1].status,
            e[1].target.as_str()
        ),
        ("SIGHUP", "signal", 200, "node54")
    );
    assert_eq!((e[2].via.as_str(), e[2].status), ("signal", 422));
    assert!(e[2].detail["reload_error"]
        .to_string()
        .contains("malformed MAC"));
    // The table names the change too.
    let table = rb(&["audit", "--target", "node54"]);
    assert!(
        table.contains("node54: ip \"10.77.0.54\" → \"10.77.0.154\""),
        "{table}"
    );

    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("stopped"));
}

/// The daemon's DHCP answers come from the inventory, and a reload changes
/// the next answer without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhcp_answers_from_inventory_and_follows_reload() {
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    use rackboot::model::Mac;
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let (client, server, params) = crate::harness::dhcp_loopback().await;
    let server_addr = server.local_addr().unwrap();
    let listeners = crate::harness::loopback_listeners(vec![(server, params)]).await;
    let d = daemon::start(cfg, listeners).await.unwrap();
    let ask = |mac: Mac, ipxe: bool| {
        let m = if ipxe {
            crate::dhcp::ipxe_discover(mac, 7)
        } else {
            crate::dhcp::discover(mac, 7, b"PXEClient:Arch:00007:UNDI:003016", 7)
        };
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    };
    async fn recv(client: &tokio::net::UdpSocket) -> Option<dhcproto::v4::Message> {
        let mut buf = vec![0u8; 1500];
        match tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                Some(dhcproto::v4::Message::decode(&mut Decoder::new(&buf[..n])).unwrap())
            }
            _ => None,
        }
    }

    // iPXE on node50: its reserved address and the HTTP script.
    client
        .send_to(
            &ask("52:54:00:77:00:50".parse().unwrap(), true),
            server_addr,
        )
        .await
        .unwrap();
    let offer = recv(&client).await.expect("an offer for node50");
    assert_eq!(offer.yiaddr(), std::net::Ipv4Addr::new(10, 77, 0, 50));
    let file = String::from_utf8_lossy(offer.fname().unwrap_or_default()).to_string();
    assert!(
        file.starts_with("http://10.77.0.1:8080/boot.ipxe"),
        "{file:?}"
    );
    // UEFI PXE (arch 7) on node51: TFTP ipxe.efi.
    client
        .send_to(
            &ask("52:54:00:77:00:51".parse().unwrap(), false),
            server_addr,
        )
        .await
        .unwrap();
    let offer = recv(&client).await.expect("an offer for node51");
    assert_eq!(
        String::from_utf8_lossy(offer.fname().unwrap_or_default()).trim_end_matches('\0'),
        "ipxe.efi"
    );
    // Not in the inventory: nothing.
    let new_mac: Mac = "52:54:00:77:00:64".parse().unwrap();
    client
        .send_to(&ask(new_mac, true), server_addr)
        .await
        .unwrap();
    assert!(recv(&client).await.is_none());

    // Add it to systems.toml and reload: the next DISCOVER is answered.
    c.append("systems.toml", "\n[systems.node64]\nmacs = [\"52:54:00:77:00:64\"]\nip = \"10.77.0.64\"\nprofile = \"lab\"\n");
    let r = d.reloader.clone();
    tokio::task::spawn_blocking(move || r.reload())
        .await
        .unwrap()
        .unwrap();
    client
        .send_to(&ask(new_mac, true), server_addr)
        .await
        .unwrap();
    let offer = recv(&client).await.expect("an offer after reload");
    assert_eq!(offer.yiaddr(), std::net::Ipv4Addr::new(10, 77, 0, 64));
    // Counted: 3 offers, 1 request ignored (the unknown MAC before the reload).
    let st = call(d.api_addr, "GET", "/api/v1/status", vec![], None)
        .await
        .json();
    assert_eq!(st["protocols"]["dhcp"]["offers"], 3, "{st}");
    assert_eq!(st["protocols"]["dhcp"]["ignored"], 1, "{st}");
    assert_eq!(st["protocols"]["dhcp"]["malformed"]["truncated"], 0, "{st}");
    assert_eq!(st["protocols"]["observations_dropped"], 0, "{st}");
    d.stop().await;
}
