//! Reimage runs through the whole daemon in-process: a fake BMC whose power-on
//! starts a scripted machine that speaks real DHCP and HTTP on loopback.

use crate::harness::{http, ConfigDir};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use rackboot::daemon::{self, Listeners};
use rackboot::model::Mac;
use rackboot::power::{FakePower, Power, PowerConfig, PowerError};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Sim {
    pub c: ConfigDir,
    pub d: Option<daemon::Running>,
    pub fake: Arc<FakePower>,
    pub dhcp_server: SocketAddr,
    pub client: Arc<tokio::net::UdpSocket>,
    pub _ssh: tokio::task::JoinHandle<()>,
}

/// A profile for simulated machines: short deadlines, local stages.
fn sim_profile(port: u16, stage2: &str) -> String {
    format!(
        r#"parent = "lab"
description = "simulated machine"
template = "lab/install.sh.j2"
reboots = true
boot_retries = 0
wait_ports = [{port}]
[timeouts]
power = "5s"
dhcp = "5s"
kernel = "5s"
config = "5s"
install = "10s"
reboot = "5s"
ssh = "5s"
[[stages]]
name = "configure"
kind = "config"
command = "echo configured {{{{ hostname }}}} $RACKBOOT_IP > {{{{ artifacts }}}}/conf.txt"
timeout = "10s"
[[stages]]
name = "check"
kind = "test"
command = "{stage2}"
timeout = "10s"
"#
    )
}

pub async fn sim(stage2: &str) -> Sim {
    sim_with(stage2, |_| {}).await
}

/// [`sim`] with the config dir edited before the daemon starts.
pub async fn sim_with(stage2: &str, edit: impl FnOnce(&ConfigDir)) -> Sim {
    // A listener that answers like sshd: the machine's service port.
    let ssh = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ssh_port = ssh.local_addr().unwrap().port();
    let ssh_task = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s.write_all(b"SSH-2.0-rackboot-sim\r\n").await;
        }
    });
    let c = ConfigDir::sample();
    c.write("profiles/sim.toml", &sim_profile(ssh_port, stage2));
    c.append(
        "systems.toml",
        r#"
[systems.sim1]
macs = ["52:54:00:aa:00:01"]
ip = "127.0.0.1"
profile = "sim"
[systems.sim1.bmc]
kind = "ipmi"
address = "127.0.0.1:1"
username = "admin"
password_file = "tests/lab/bmc-password"

[systems.sim2]
macs = ["52:54:00:aa:00:02"]
ip = "127.0.0.2"
profile = "sim"
[systems.sim2.bmc]
kind = "ipmi"
address = "127.0.0.2:1"
username = "admin"
password_file = "tests/lab/bmc-password"
"#,
    );
    edit(&c);
    start_sim(c, ssh_task).await
}

async fn start_sim(c: ConfigDir, ssh_task: tokio::task::JoinHandle<()>) -> Sim {
    let fake = Arc::new(FakePower::default());
    let (client, server, params) = crate::harness::dhcp_loopback().await;
    let client = Arc::new(client);
    let dhcp_server = server.local_addr().unwrap();
    let d = start_daemon(&c, fake.clone(), vec![(server, params)]).await;
    Sim {
        c,
        d: Some(d),
        fake,
        dhcp_server,
        client,
        _ssh: ssh_task,
    }
}

pub async fn start_daemon(
    c: &ConfigDir,
    fake: Arc<FakePower>,
    dhcp: Vec<(tokio::net::UdpSocket, rackboot::dhcp::ServerParams)>,
) -> daemon::Running {
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let power = Arc::new(Power::new(
        fake,
        None,
        PowerConfig {
            min_interval: Duration::ZERO,
            ..Default::default()
        },
    ));
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        dhcp,
        // GRUB machines (`loader = "grub"`) read their config, kernel and initrd over TFTP.
        tftp: Some(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        dns: None,
    };
    daemon::start_with(cfg, listeners, power).await.unwrap()
}

impl Sim {
    pub fn d(&self) -> &daemon::Running {
        self.d.as_ref().unwrap()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.c.path().join(".lab/data/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub async fn api(
        &self,
        method: &'static str,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let addr = self.d().api_addr;
        let auth = format!("Bearer {}", self.token());
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let r = http(
                addr,
                method,
                &path,
                &[("Authorization", &auth)],
                body.as_deref(),
            );
            (
                r.status,
                serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            )
        })
        .await
        .unwrap()
    }

    pub async fn boot_http(&self, method: &'static str, path: &str) -> (u16, String) {
        let addr = self.d().http_addr;
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let r = http(addr, method, &path, &[], None);
            (r.status, r.text())
        })
        .await
        .unwrap()
    }

    /// The machine's DHCP DISCOVER (iPXE); returns the offered address.
    pub async fn dhcp(&self, mac: Mac) -> Option<std::net::Ipv4Addr> {
        self.dhcp_with(mac, crate::dhcp::ipxe_discover(mac, rand_xid(&mac)))
            .await
    }

    /// The DISCOVER of an operating system's DHCP client (busybox udhcpc: a
    /// vendor class, no client architecture, not iPXE).
    pub async fn dhcp_os(&self, mac: Mac) -> Option<std::net::Ipv4Addr> {
        let mut m = crate::dhcp::ipxe_discover(mac, rand_xid(&mac));
        let o = m.opts_mut();
        o.remove(dhcproto::v4::OptionCode::UserClass);
        o.remove(dhcproto::v4::OptionCode::ClientSystemArchitecture);
        o.insert(dhcproto::v4::DhcpOption::ClassIdentifier(
            b"udhcp 1.35.0".to_vec(),
        ));
        self.dhcp_with(mac, m).await
    }

    async fn dhcp_with(&self, mac: Mac, m: dhcproto::v4::Message) -> Option<std::net::Ipv4Addr> {
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        self.client.send_to(&buf, self.dhcp_server).await.unwrap();
        let mut b = vec![0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(500), self.client.recv_from(&mut b))
                    .await
            {
                let r = dhcproto::v4::Message::decode(&mut Decoder::new(&b[..n])).unwrap();
                if r.chaddr()[..6] == mac.0 {
                    return Some(r.yiaddr());
                }
            }
        }
        None
    }

    /// Play the machine's netboot up to the installer config; returns the done URL path.
    pub async fn netboot_to_install(&self, mac: Mac) -> String {
        assert!(self.dhcp(mac).await.is_some(), "no DHCP offer for {mac}");
        // A real machine takes seconds from DHCP to its kernel fetch; this one takes
        // microseconds, so let the DHCP observation land first (the timeline test
        // asserts every phase).
        let system = if mac.0[5] == 1 { "sim1" } else { "sim2" };
        for _ in 0..100 {
            let (_, v) = self
                .api(
                    "GET",
                    &format!("/api/v1/runs?system={system}&active=true"),
                    None,
                )
                .await;
            if !v
                .as_array()
                .map(|a| a.iter().any(|r| r["state"] == "dhcp"))
                .unwrap_or(false)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (s, script) = self
            .boot_http("GET", &format!("/ipxe/{}", mac.hyphenated()))
            .await;
        assert_eq!(s, 200);
        assert!(
            script.contains("kernel "),
            "not an install script: {script}"
        );
        let (s, _) = self.boot_http("GET", "/boot/vmlinuz").await;
        assert_eq!(s, 200);
        let (s, ks) = self
            .boot_http("GET", &format!("/ks/{}", mac.hyphenated()))
            .await;
        assert_eq!(s, 200, "{ks}");
        // The done URL is in the kernel args of the lab profile (rig.done=...).
        let kargs = script
            .split_whitespace()
            .find_map(|w| w.strip_prefix("rig.done="))
            .expect("done URL in kernel args")
            .to_string();
        kargs[kargs.find("/done/").unwrap()..].to_string()
    }

    pub async fn wait_terminal(&self, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (s, v) = self.api("GET", &format!("/api/v1/runs/{id}"), None).await;
            assert_eq!(s, 200, "{v}");
            if v["terminal"] == true {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "run did not finish in {secs}s: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_state(&self, id: &str, state: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, v) = self.api("GET", &format!("/api/v1/runs/{id}"), None).await;
            if v["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "run never reached {state}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    pub async fn create(&self, systems: &[&str]) -> (u16, Value) {
        let body = serde_json::json!({"systems": systems, "requested_by": "test"}).to_string();
        self.api("POST", "/api/v1/runs", Some(body)).await
    }
}

fn rand_xid(mac: &Mac) -> u32 {
    u32::from_be_bytes([mac.0[2], mac.0[3], mac.0[4], mac.0[5]]) ^ 0x5a5a
}

const MAC1: &str = "52:54:00:aa:00:01";

/// Play a whole machine: netboot, installer, callback, reboot (DHCP again).
pub async fn play_machine(sim: &Sim, mac: Mac) {
    let done = sim.netboot_to_install(mac).await;
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body}");
    // After the callback the machine's netboot answer is local boot.
    let (_, script) = sim
        .boot_http("GET", &format!("/ipxe/{}", mac.hyphenated()))
        .await;
    assert!(script.contains("\nexit\n"), "{script}");
    // The installed system comes up and asks DHCP.
    assert!(sim.dhcp(mac).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimage_succeeds_with_timeline_junit_and_artifacts() {
    let sim = sim("grep -q configured {{ artifacts }}/conf.txt && echo facts $RACKBOOT_SYSTEM $RACKBOOT_RUN_ID").await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    // A second request for the same machine while it runs is refused.
    let (s, _) = sim.create(&["sim1"]).await;
    assert_eq!(s, 409);

    sim.wait_state(&id, "dhcp", 5).await;
    let calls = sim.fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls[..2],
        ["127.0.0.1:1 bootdev pxe", "127.0.0.1:1 status"],
        "{calls:?}"
    );
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    // At the callback the engine asked the BMC to boot the disk next.
    let calls = sim.fake.calls.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c == "127.0.0.1:1 bootdev disk"),
        "{calls:?}"
    );
    let d = wait_diagnosis(&sim, "sim1", |d| d.ended.is_some()).await;
    assert_eq!(d.first_missing, None, "{d:#?}");
    assert!(d.chain.iter().all(|c| c.at.is_some()), "{d:#?}");
    let mut states: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    // The BMC's answer to "boot from disk next" is a line of its own (in
    // reboot, if it comes before the machine is seen again).
    states.dedup();
    assert_eq!(
        states,
        [
            "queued",
            "locked",
            "bootdev",
            "power",
            "dhcp",
            "kernel",
            "config",
            "install",
            "reboot",
            "ports",
            "stage:0",
            "stage:1",
            "succeeded"
        ]
    );
    // Timeline offsets are monotonic.
    let ts: Vec<f64> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["t"].as_f64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert_eq!(v["stages"].as_array().unwrap().len(), 2);
    assert_eq!(v["artifacts"][0]["path"], "conf.txt");

    let (s, log) = sim
        .api("GET", &format!("/api/v1/runs/{id}/stages/1/log"), None)
        .await;
    assert_eq!(s, 200);
    let _ = log;
    let addr = sim.d().api_addr;
    let id2 = id.clone();
    let (junit, log) = tokio::task::spawn_blocking(move || {
        (
            http(addr, "GET", &format!("/api/v1/runs/{id2}/junit"), &[], None).text(),
            http(
                addr,
                "GET",
                &format!("/api/v1/runs/{id2}/stages/1/log"),
                &[],
                None,
            )
            .text(),
        )
    })
    .await
    .unwrap();
    assert!(log.contains(&format!("facts sim1 {id}")), "{log}");
    assert!(junit.contains("tests=\"12\" failures=\"0\""), "{junit}");
    assert!(junit.contains("name=\"dhcp\""));
    assert!(junit.contains("classname=\"rackboot.sim1.test\" name=\"check\""));
    // The machine lock is released: a new run can start.
    let (s, _) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_stage_fails_the_run_with_junit_failure() {
    let sim = sim("echo checking; echo boom >&2; exit 3").await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(v["reason"], "stage check failed: exit code 3");
    let dir = sim.c.path().join(".lab/data/runs").join(&id);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"1\""), "{junit}");
    assert!(
        junit.contains("<failure message=\"stage check failed (exit 3)\""),
        "{junit}"
    );
    assert!(junit.contains("boom"), "stage log in JUnit: {junit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bmc_fails_power_phase_and_releases_lock() {
    let sim = sim("true").await;
    sim.fake.fail.lock().unwrap().insert(
        "127.0.0.1:1".into(),
        PowerError::Unreachable("BMC 127.0.0.1:1 did not answer within 10s".into()),
    );
    let (_, v) = sim.create(&["sim1", "sim2"]).await;
    let id1 = v["runs"][0]["id"].as_str().unwrap().to_string();
    let id2 = v["runs"][1]["id"].as_str().unwrap().to_string();
    let v = sim.wait_terminal(&id1, 10).await;
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["reason"],
        "power: BMC unreachable: BMC 127.0.0.1:1 did not answer within 10s"
    );
    // The other machine's run is unaffected.
    sim.wait_state(&id2, "dhcp", 5).await;
    let (s, _) = sim
        .api("POST", &format!("/api/v1/runs/{id2}/cancel"), None)
        .await;
    assert_eq!(s, 200);
    let v = sim.wait_terminal(&id2, 5).await;
    assert_eq!(v["state"], "cancelled");
    // Both locks are free again.
    sim.fake.fail.lock().unwrap().clear();
    let (s, v) = sim.create(&["sim1", "sim2"]).await;
    assert_eq!(s, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_times_out_the_phase() {
    let sim = sim("true").await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    // Nobody boots: the DHCP phase (5 s) times out.
    let v = sim.wait_terminal(&id, 15).await;
    assert_eq!(v["state"], "timed_out");
    assert_eq!(
        v["reason"],
        "timed out in phase dhcp waiting for the machine's DHCP request"
    );
    let (_, script) = sim.boot_http("GET", "/ipxe/52-54-00-aa-00-01").await;
    assert!(
        script.contains("\nexit\n"),
        "netboot is off after the run: {script}"
    );
    // Why didn't it boot? The BMC power-cycled it; no DHCP was ever seen.
    let d: rackboot::api::feed::Diagnosis =
        wait_diagnosis(&sim, "sim1", |d| d.ended.is_some()).await;
    assert!(d.run);
    assert_eq!(d.first_missing.as_deref(), Some("dhcp"), "{d:#?}");
    assert!(d.chain[0].at.is_some(), "power step seen: {d:#?}");
    assert!(d.cause.as_deref().unwrap().contains("boot order"), "{d:#?}");
    assert_eq!(d.ended.as_ref().unwrap().state, "timed_out");
    let (code, out, err) = finish(cli(&sim, &["why", "sim1"])).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("sim1: the last reimage stopped before: DHCP answered"),
        "{out}"
    );
    assert!(
        out.contains("likely cause: no DHCP answer went to this machine"),
        "{out}"
    );
    assert!(
        out.contains("run ended: timed_out (timed out in phase dhcp"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_boot_deadline_power_cycles_again_and_the_machine_boots() {
    let sim = sim_with("true", |c| {
        c.replace("profiles/sim.toml", "boot_retries = 0", "boot_retries = 1");
    })
    .await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    // The first boot hangs (no DHCP): after the dhcp deadline (5 s) the
    // engine sets the boot device and power-cycles again.
    sim.wait_state(&id, "dhcp", 5).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bootdevs = sim
            .fake
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.ends_with("bootdev pxe"))
            .count();
        if bootdevs == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no second boot attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.wait_state(&id, "dhcp", 10).await;
    // This time it boots.
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    // Without the console's note (this fake BMC has no serial console).
    let tl: Vec<&Value> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["detail"].as_str().unwrap().starts_with("console:"))
        .collect();
    let states: Vec<&str> = tl.iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(
        states[..8],
        ["queued", "locked", "bootdev", "power", "dhcp", "bootdev", "power", "dhcp"]
    );
    let retry = &tl[5];
    assert!(
        retry
            .to_string()
            .contains("power-cycling again (boot retry 1 of 1)"),
        "{retry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_stages_run_first_and_a_failing_one_leaves_power_alone() {
    // A clean-up stage before the reimage (revoke a certificate, drain).
    let before = |cmd: &str| {
        format!(
            "[[stages]]\nname = \"drain\"\nkind = \"config\"\nwhen = \"before\"\ncommand = \"{cmd}\"\ntimeout = \"10s\"\n"
        )
    };
    let fail = before("echo draining $RACKBOOT_SYSTEM; exit 4");
    let sim = sim_with("true", |c| c.append("profiles/sim.toml", &fail)).await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    let v = sim.wait_terminal(&id, 15).await;
    assert_eq!(v["state"], "failed", "{v:#}");
    assert_eq!(v["reason"], "stage drain failed: exit code 4");
    assert!(
        sim.fake.calls.lock().unwrap().is_empty(),
        "the BMC was called: {:?}",
        sim.fake.calls.lock().unwrap()
    );
    let (_, log) = sim
        .api("GET", &format!("/api/v1/runs/{id}/stages/0/log"), None)
        .await;
    let _ = log;
    let dir = sim.c.path().join(".lab/data/runs").join(&id);
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"drain\""), "{junit}");

    // Passing: it runs first, then the whole reimage and the other stages.
    let ok = before("echo drained $RACKBOOT_SYSTEM > {{ artifacts }}/drained.txt");
    let sim = sim_with("true", |c| c.append("profiles/sim.toml", &ok)).await;
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 10).await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let states: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[..4], ["queued", "stage:0", "locked", "bootdev"]);
    assert_eq!(
        states[states.len() - 3..],
        ["stage:1", "stage:2", "succeeded"]
    );
    assert_eq!(v["stages"][0]["name"], "drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_straight_to_disk_is_seen_by_the_ports_going_down_and_up() {
    let sim = sim("true").await;
    let port: u16 = {
        let p = sim.c.read("profiles/sim.toml");
        let l = p.lines().find(|l| l.starts_with("wait_ports")).unwrap();
        l.trim_start_matches("wait_ports = [")
            .trim_end_matches(']')
            .parse()
            .unwrap()
    };
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let done = sim.netboot_to_install(MAC1.parse().unwrap()).await;
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body}");
    sim.wait_state(&id, "reboot", 5).await;
    // The installer's SSH answers until the machine reboots: not the installed system.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, v) = sim.api("GET", &format!("/api/v1/runs/{id}"), None).await;
    assert_eq!(v["state"], "reboot", "{v:#}");
    // The reboot: SSH goes away, then the installed system's comes up; no
    // netboot (the BMC said disk), so no PXE DHCP and no local-boot script.
    // The installed system asks DHCP for its address as it boots: that is
    // not a network boot.
    sim._ssh.abort();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(sim.dhcp_os(MAC1.parse().unwrap()).await.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ssh = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let _up = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = ssh.accept().await {
            let _ = s.write_all(b"SSH-2.0-installed\r\n").await;
        }
    });
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let tl = v["timeline"].to_string();
    assert!(
        tl.contains("boot device set to disk for the next boot (read back)"),
        "{tl}"
    );
    assert!(
        tl.contains("rebooted straight to the local disk (no network boot)"),
        "{tl}"
    );
    assert!(!tl.contains("through the network"), "{tl}");
}

/// The daemon's diagnosis of `system`, once `done` holds (bounded wait: the
/// feed stores events asynchronously).
async fn wait_diagnosis(
    sim: &Sim,
    system: &str,
    done: impl Fn(&rackboot::api::feed::Diagnosis) -> bool,
) -> rackboot::api::feed::Diagnosis {
    let addr = sim.d().api_addr;
    let path = format!("/api/v1/systems/{system}/diagnosis");
    let t0 = Instant::now();
    loop {
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || http(addr, "GET", &p, &[], None))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let d: rackboot::api::feed::Diagnosis = r.typed();
        if done(&d) || t0.elapsed() > Duration::from_secs(5) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_resumes_after_daemon_restart() {
    resumes_after_daemon_restart(sim("true").await).await;
}

/// Mid-install the daemon stops; a new one on the same store resumes the
/// run, and the installer's callback finishes it (also `pg::`).
pub async fn resumes_after_daemon_restart(mut sim: Sim) {
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let mac: Mac = MAC1.parse().unwrap();
    let done = sim.netboot_to_install(mac).await;
    sim.wait_state(&id, "install", 5).await;

    // The daemon goes away mid-install (its state is only what it stored).
    sim.d.take().unwrap().stop().await;
    let (client, server, params) = crate::harness::dhcp_loopback().await;
    sim.dhcp_server = server.local_addr().unwrap();
    sim.client = Arc::new(client);
    sim.d = Some(start_daemon(&sim.c, sim.fake.clone(), vec![(server, params)]).await);

    // The installer finishes and calls back with the token it was given.
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "callback after restart: {body}");
    assert!(sim.dhcp(mac).await.is_some());
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let details: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"resumed in phase install after a daemon restart"),
        "{details:?}"
    );
    // The console capture is opened again by the new daemon (this fake BMC
    // refuses SOL: one note before the restart, one after).
    let console = details.iter().filter(|d| d.starts_with("console:")).count();
    assert_eq!(console, 2, "{details:?}");
}

fn cli(sim: &Sim, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(args)
        .arg("--config")
        .arg(sim.c.path())
        .arg("--api")
        .arg(sim.d().api_addr.to_string())
        .env("RACKBOOT_TOKEN", sim.token())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn finish(child: std::process::Child) -> (Option<i32>, String, String) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reimage_wait_junit_and_exit_codes() {
    let sim = sim("echo stage-output-line; exit 0").await;
    let junit = sim.c.path().join("report.xml");
    let child = cli(
        &sim,
        &[
            "reimage",
            "sim1",
            "--wait",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    // Wait until the daemon power-cycled the machine, then play it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim
        .fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.contains("power on"))
    {
        assert!(Instant::now() < deadline, "no power-on");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sim.wait_for_phase_of("sim1", "dhcp").await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let (code, out, err) = finish(child).await;
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    for phase in ["queued", "dhcp", "install", "reboot", "ports", "succeeded"] {
        assert!(out.contains(phase), "no {phase} line in:\n{out}");
    }
    assert!(out.contains("SUCCEEDED"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.starts_with("<?xml") && xml.contains("<testsuite name=\"rackboot.sim1\""),
        "{xml}"
    );

    // A failing stage: exit 1 and the stage's log in the output.
    sim.c.replace(
        "profiles/sim.toml",
        "echo stage-output-line; exit 0",
        "echo stage-output-line; exit 7",
    );
    let r = sim.d().reloader.clone();
    tokio::task::spawn_blocking(move || r.reload())
        .await
        .unwrap()
        .unwrap();
    let child = cli(&sim, &["reimage", "sim1", "--wait"]);
    sim.wait_for_phase_of("sim1", "dhcp").await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let (code, out, _) = finish(child).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("stage check failed: exit code 7"), "{out}");
    assert!(
        out.contains("| stage-output-line"),
        "failing stage log shown: {out}"
    );

    // --timeout: nobody boots, the CLI gives up, cancels, exits 3.
    let child = cli(&sim, &["reimage", "sim1", "--wait", "--timeout", "1s"]);
    let (code, _, err) = finish(child).await;
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    // Usage errors are 2; an unknown system is a refusal (1).
    let (code, _, _) = finish(cli(&sim, &["reimage", "sim1", "--timeout", "soon"])).await;
    assert_eq!(code, Some(2));
    let (code, _, err) = finish(cli(&sim, &["reimage", "nope"])).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no system \"nope\""), "{err}");
    let (code, out, _) = finish(cli(&sim, &["runs", "list"])).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("cancelled") && out.contains("failed") && out.contains("succeeded"),
        "{out}"
    );
}

impl Sim {
    async fn wait_for_phase_of(&self, system: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, v) = self
                .api(
                    "GET",
                    &format!("/api/v1/runs?system={system}&active=true"),
                    None,
                )
                .await;
            if v.as_array()
                .map(|a| a.iter().any(|r| r["state"] == state))
                .unwrap_or(false)
            {
                return;
            }
            assert!(Instant::now() < deadline, "{system} never reached {state}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// The done URL in a per-MAC script (the lab profile's `rig.done=` kernel arg).
fn done_url(script: &str) -> String {
    let u = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rig.done="))
        .unwrap_or_else(|| panic!("no done URL in {script}"));
    u[u.find("/done/").unwrap()..].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_install_netboot_keeps_the_image_and_the_cli_switch() {
    let sim = sim_with("true", |c| {
        c.replace(
            "profiles/sim.toml",
            "boot_retries = 0",
            "boot_retries = 0\nafter_install = \"netboot\"\nreboots = false",
        );
        c.replace("profiles/sim.toml", "reboots = true\n", "");
    })
    .await;
    let mac: Mac = MAC1.parse().unwrap();
    let script = || async {
        sim.boot_http("GET", &format!("/ipxe/{}", mac.hyphenated()))
            .await
            .1
    };
    let (_, v) = sim.create(&["sim1"]).await;
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    let done = sim.netboot_to_install(mac).await;
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body}");
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    assert!(
        v["timeline"]
            .to_string()
            .contains("netboot stays on (after_install = netboot)"),
        "{v:#}"
    );
    // No boot device disk for a diskless machine.
    assert!(!sim
        .fake
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.ends_with("bootdev disk")));
    // Every later boot gets the image, and its callback does not end that.
    for _ in 0..2 {
        let sc = script().await;
        assert!(sc.contains("kernel "), "{sc}");
        let (s, body) = sim.boot_http("POST", &done_url(&sc)).await;
        assert_eq!(s, 200, "{body}");
    }
    let (code, out, err) = finish(cli(&sim, &["netboot", "sim1", "off"])).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("sim1") && out.contains("netboot off"), "{out}");
    assert!(script().await.contains("\nexit\n"));
    // A one-time manual netboot: its callback turns it off.
    let (code, out, _) = finish(cli(&sim, &["netboot", "sim1", "on"])).await;
    assert_eq!(code, Some(0), "{out}");
    let sc = script().await;
    sim.boot_http("POST", &done_url(&sc)).await;
    assert!(script().await.contains("\nexit\n"));
    // --persistent: it stays on.
    let (code, out, _) = finish(cli(&sim, &["netboot", "sim1", "on", "--persistent"])).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("persistent"), "{out}");
    let sc = script().await;
    let (s, _) = sim.boot_http("POST", &done_url(&sc)).await;
    assert_eq!(s, 200);
    assert!(script().await.contains("kernel "));
    let (_, v) = sim
        .api(
            "PUT",
            "/api/v1/systems/sim1/netboot",
            Some(r#"{"enabled": true, "persistent": true}"#.into()),
        )
        .await;
    assert_eq!(v["persistent"], true, "{v}");
    let (code, _, err) = finish(cli(&sim, &["netboot", "sim1", "off", "--persistent"])).await;
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn cli_without_daemon_exits_4() {
    let c = ConfigDir::sample();
    let port = crate::harness::free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args([
            "runs",
            "list",
            "--api",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(c.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon answering"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_power_bootdev_and_systems_power_column() {
    let sim = sim("true").await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .args(args)
            .arg("--config")
            .arg(sim.c.path())
            .env("RACKBOOT_API", sim.d().api_addr.to_string())
            .env("RACKBOOT_TOKEN", sim.token())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = tokio::task::block_in_place(|| run(&["power", "sim1", "sim2", "on"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("sim1") && out.contains("on: ok"), "{out}");
    let (code, out) = tokio::task::block_in_place(|| run(&["power", "sim1", "status"]));
    assert_eq!((code, out.trim().ends_with("on")), (Some(0), true), "{out}");
    let (code, out) =
        tokio::task::block_in_place(|| run(&["bootdev", "sim1", "pxe", "--persistent", "--uefi"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("boot device pxe, persistent, UEFI"), "{out}");
    let (_, out) = tokio::task::block_in_place(|| run(&["systems", "list", "--power"]));
    let line = out.lines().find(|l| l.starts_with("sim1")).unwrap();
    assert!(line.ends_with(" on"), "{out}");
    let web = out.lines().find(|l| l.starts_with("web70")).unwrap();
    assert!(web.trim_end().ends_with('-'), "no BMC: {out}");
    // A BMC that does not answer: the line says so, the exit code is 1.
    sim.fake.fail.lock().unwrap().insert(
        "127.0.0.2:1".into(),
        PowerError::Unreachable("no answer".into()),
    );
    let (code, out) = tokio::task::block_in_place(|| run(&["power", "sim1", "sim2", "status"]));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("sim2") && out.contains("FAILED: BMC unreachable: no answer"),
        "{out}"
    );
}

/// A run queued behind this daemon's back (another daemon on the same
/// database, or another connection) holds its system: the database's one
/// active run per system turns the API's request into a 409, not a second
/// run and not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stored_by_another_daemon_makes_the_api_answer_busy() {
    let sim = sim("true").await;
    let url = sim.c.load().unwrap().settings.database_url;
    let other = rackboot::store::Store::open(&url).await.unwrap();
    other
        .create_run(
            &rackboot::store::NewRun {
                id: "elsewhere-1",
                system: "sim1",
                profile: "sim",
                state: "queued",
                data: "{}",
                requested_by: Some("another daemon"),
                overrides: "{}",
                retry_of: None,
                // Another daemon's domain: this one never claims it.
                domain: "elsewhere",
            },
            rackboot::store::now_ms(),
        )
        .await
        .unwrap();
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("elsewhere-1"), "{v}");
    let active = other.active_runs().await.unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    // The other system is free.
    let (s, v) = sim.create(&["sim2"]).await;
    assert_eq!(s, 201, "{v}");
}

/// The serial console: a BMC without one is a timeline note and the run
/// goes on; one with one fills the run's console.log, which the API serves
/// from a byte offset, and the diagnosis ends with its last lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_console_refused_is_a_note_and_captured_is_served() {
    let sim = sim("true").await;
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let notes: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .filter(|d| d.starts_with("console:"))
        .collect();
    assert_eq!(
        notes,
        ["console: BMC refused SOL: BMC rejected the command: Activate Payload (SOL) rejected by the BMC: completion code 0x81 (payload type is disabled)"],
        "{v:#}"
    );
    let (s, _) = sim
        .api("GET", &format!("/api/v1/runs/{id}/console"), None)
        .await;
    assert_eq!(s, 404, "nothing captured, nothing served");

    // Now the BMC has a console.
    sim.fake.console.lock().unwrap().insert(
        "127.0.0.1:1".into(),
        b"\x1b[2JSeaBIOS (version 1.16)\r\niPXE 1.21\r\nDebian GNU/Linux 12 sim1 ttyS0\r\n\r\nsim1 login: ".to_vec(),
    );
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    // `runs logs ID console --follow`, started while the run goes on,
    // prints the console and ends with the run.
    let follow = cli(&sim, &["runs", "logs", &id, "console", "--follow"]);
    play_machine(&sim, MAC1.parse().unwrap()).await;
    let v = sim.wait_terminal(&id, 20).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let (code, out, err) = tokio::time::timeout(Duration::from_secs(20), finish(follow))
        .await
        .expect("--follow ends with the run");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sim1 login: "), "{out}");
    assert!(
        v["timeline"].as_array().unwrap().iter().any(|e| e["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("console: capturing"))),
        "{v:#}"
    );
    // The web UI's run page carries it, with the log it tails.
    let addr = sim.d().api_addr;
    let p = format!("/ui/runs/{id}");
    let r = tokio::task::spawn_blocking(move || http(addr, "GET", &p, &[], None))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(
        page.contains("sim1 login: ")
            && page.contains("data-console-log")
            && page.contains(&format!("&#x2f;runs&#x2f;{id}&#x2f;console")),
        "{page}"
    );
    let addr = sim.d().api_addr;
    let path = format!("/api/v1/runs/{id}/console");
    // The capture's last lines are written as it stops: ask until they are there.
    let t0 = Instant::now();
    let (all, size) = loop {
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || http(addr, "GET", &p, &[], None))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        if text.contains("console capture ended") || t0.elapsed() > Duration::from_secs(5) {
            let size = r.0.header("x-text-size").unwrap_or_default().to_string();
            assert_eq!(r.0.header("x-more-data"), Some("false"));
            break (text, size);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<&str> = all.lines().collect();
    // `2024-05-01T12:00:00.123Z text`, escape sequences gone.
    let text: Vec<&str> = lines.iter().map(|l| l.split_once(' ').unwrap().1).collect();
    assert!(text.contains(&"SeaBIOS (version 1.16)"), "{all}");
    assert!(text.contains(&"Debian GNU/Linux 12 sim1 ttyS0"), "{all}");
    assert!(text.contains(&"sim1 login: "), "prompt flushed: {all}");
    assert!(
        lines
            .iter()
            .all(|l| l.len() > 24 && l.as_bytes()[23] == b'Z' && l.as_bytes()[10] == b'T'),
        "{all}"
    );
    assert_eq!(size, all.len().to_string());
    // Resumable at a byte offset.
    let off = all.find("iPXE").unwrap();
    let p = format!("{path}?offset={off}");
    let r = tokio::task::spawn_blocking(move || http(addr, "GET", &p, &[], None))
        .await
        .unwrap();
    assert_eq!(r.text(), all[off..]);
    // The diagnosis shows the last console lines of the run.
    let d = wait_diagnosis(&sim, "sim1", |d| !d.console.is_empty()).await;
    assert_eq!(d.run_id.as_deref(), Some(id.as_str()));
    assert!(
        d.console.iter().any(|l| l.ends_with("sim1 login: ")),
        "{d:#?}"
    );
    assert!(d.console.len() <= 20);
}
