//! Native IPMI (RMCP+) client against OpenIPMI's `ipmi_sim`, cross-checked
//! with `ipmitool -I lanplus -C 3` reading the same simulated BMC.
//!
//! Needs `ipmi_sim` and `ipmitool` (Debian: `apt-get install openipmi ipmitool`;
//! `.ci/run` installs them).  Without them every test prints why and returns.
//! Each test starts its own ipmi_sim on 127.0.0.1 with a free port in a temp
//! dir; the chassis is `tests/fixtures/ipmi/chassis.sh`, which keeps power
//! state and boot device in files instead of driving a machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rackboot::power::ipmi::*;

const USER: &str = "admin";
const PASS: &str = "pass";

fn fixtures() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("IPMI_TEST_FIXTURES") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ipmi"));
    // This file lives in tests/it/; the fixtures next to it in tests/fixtures/ipmi.
    if let Some(tests) = Path::new(file!()).parent().and_then(Path::parent) {
        candidates.push(tests.join("fixtures/ipmi"));
    }
    candidates
        .into_iter()
        .find(|p| p.join("lan.conf.in").is_file())
        .expect("tests/fixtures/ipmi/lan.conf.in not found (set IPMI_TEST_FIXTURES)")
}

fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Skip (with the reason printed) when the emulator or ipmitool is missing;
/// under CI (`CI` or `RACKBOOT_REQUIRE_TOOLS` set, as `.ci/run` does) a
/// missing tool fails the test instead.
fn tools_missing() -> bool {
    for prog in ["ipmi_sim", "ipmitool"] {
        if !have(prog) {
            let why = format!(
                "`{prog}` not installed (apt-get install openipmi ipmitool; .ci/run installs both)"
            );
            if std::env::var_os("CI").is_some()
                || std::env::var_os("RACKBOOT_REQUIRE_TOOLS").is_some()
            {
                panic!("power_ipmi: {why}");
            }
            eprintln!("SKIP power_ipmi: {why}");
            return true;
        }
    }
    false
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// One ipmi_sim instance; killed in Drop.
struct Sim {
    child: Child,
    port: u16,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn start() -> Sim {
        Sim::start_with("")
    }

    /// With `extra` lines in the MC section of lan.conf (e.g. `sol …`).
    fn start_with(extra: &str) -> Sim {
        let fx = fixtures();
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("chassis");
        let persist = dir.path().join("sim");
        std::fs::create_dir_all(&state).expect("mkdir");
        std::fs::create_dir_all(&persist).expect("mkdir");
        std::fs::write(state.join("power"), "0\n").expect("write");
        std::fs::write(state.join("boot"), "default\n").expect("write");
        let port = free_udp_port();
        let conf = std::fs::read_to_string(fx.join("lan.conf.in"))
            .expect("lan.conf.in")
            .replace("@PORT@", &port.to_string())
            .replace("@CHASSIS@", &fx.join("chassis.sh").display().to_string())
            .replace("@STATE@", &state.display().to_string())
            .replace("  chassis_control", &format!("{extra}  chassis_control"));
        let conf_path = dir.path().join("lan.conf");
        std::fs::write(&conf_path, conf).expect("write lan.conf");
        let log = std::fs::File::create(dir.path().join("ipmi_sim.log")).expect("log");
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(&conf_path)
            .arg("-f")
            .arg(fx.join("bmc.emu"))
            .arg("-s")
            .arg(&persist)
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ipmi_sim");
        Sim {
            child,
            port,
            state,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn target(&self) -> IpmiTarget {
        self.target_at(self.addr())
    }

    fn target_at(&self, addr: SocketAddr) -> IpmiTarget {
        let mut t = IpmiTarget::new(addr, USER, PASS);
        t.deadline = Duration::from_secs(8);
        t
    }

    /// Wait (bounded) until ipmi_sim answers an RMCP+ login.
    async fn ready(&mut self) {
        let mut t = self.target();
        t.cipher_suites = vec![3];
        t.deadline = Duration::from_millis(400);
        for _ in 0..25 {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                panic!("ipmi_sim exited early: {st}; log: {}", self.log());
            }
            if let Ok(c) = IpmiClient::connect(&t).await {
                c.close().await.expect("close");
                return;
            }
        }
        panic!(
            "ipmi_sim on port {} never answered; log: {}",
            self.port,
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("ipmi_sim.log")).unwrap_or_default()
    }

    /// `ipmitool -I lanplus -C 3 -H 127.0.0.1 -p PORT -U admin -E <args>` (password via env).
    fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-E",
            ])
            .args(args)
            .env("IPMI_PASSWORD", PASS)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// ipmitool's view of the power state.
    fn ipmitool_power_on(&self) -> bool {
        let s = self.ipmitool(&["chassis", "status"]);
        let line = s
            .lines()
            .find(|l| l.starts_with("System Power"))
            .unwrap_or_else(|| panic!("no System Power line in {s}"));
        match line.rsplit(':').next().map(str::trim) {
            Some("on") => true,
            Some("off") => false,
            other => panic!("unexpected power state {other:?}"),
        }
    }

    /// ipmitool's "Boot Device Selector" line of `chassis bootparam get 5`.
    fn ipmitool_boot_selector(&self) -> String {
        let s = self.ipmitool(&["chassis", "bootparam", "get", "5"]);
        s.lines()
            .find_map(|l| {
                l.split_once("Boot Device Selector :")
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Boot Device Selector in {s}"))
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(name))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn actions(&self) -> Vec<String> {
        self.file("actions.log")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn selector_text(t: BootTarget) -> &'static str {
    match t {
        BootTarget::Pxe => "Force PXE",
        BootTarget::Disk => "Force Boot from default Hard-Drive",
        BootTarget::None => "No override",
        BootTarget::Other(_) => "?",
    }
}

fn sim_file_name(t: BootTarget) -> &'static str {
    match t {
        BootTarget::Pxe => "pxe",
        BootTarget::Disk => "default",
        BootTarget::None => "none",
        BootTarget::Other(_) => "?",
    }
}

/// Poll (bounded) until ipmitool sees the wanted power state.
fn wait_ipmitool_power(sim: &Sim, want: bool, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if sim.ipmitool_power_on() == want {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every operation, each cross-checked with ipmitool against the same BMC.
async fn exercise_all(sim: &Sim, target: &IpmiTarget) {
    let mut c = IpmiClient::connect(target).await.expect("connect");
    // ipmi_sim 2.0.33 rejects suite 17 at Open Session: the default [17, 3] falls back.
    assert_eq!(c.cipher_suite(), 3);

    // status
    let st = c.chassis_status().await.expect("status");
    assert!(!st.power_on);
    assert!(!st.any_fault());
    assert!(!sim.ipmitool_power_on());

    // on
    c.chassis_control(ChassisControl::PowerOn)
        .await
        .expect("on");
    assert!(c.chassis_status().await.expect("status").power_on);
    assert!(sim.ipmitool_power_on());
    assert_eq!(sim.file("power"), "1");

    // off
    c.chassis_control(ChassisControl::PowerOff)
        .await
        .expect("off");
    assert!(!c.chassis_status().await.expect("status").power_on);
    assert!(!sim.ipmitool_power_on());

    // cycle (from on): ipmi_sim powers off now and on again 1 s later
    c.chassis_control(ChassisControl::PowerOn)
        .await
        .expect("on");
    let before = sim.actions().len();
    c.chassis_control(ChassisControl::PowerCycle)
        .await
        .expect("cycle");
    assert!(
        wait_ipmitool_power(sim, true, Duration::from_secs(5)),
        "back on after cycle"
    );
    let after: Vec<String> = sim.actions()[before..].to_vec();
    assert!(
        after.starts_with(&["power 0".to_owned()]),
        "cycle = off then on: {after:?}"
    );
    assert!(
        after.contains(&"power 1".to_owned()),
        "cycle = off then on: {after:?}"
    );
    assert!(c.chassis_status().await.expect("status").power_on);

    // hard reset: power stays on, the chassis saw one reset
    let resets = sim.actions().iter().filter(|a| *a == "reset").count();
    c.chassis_control(ChassisControl::HardReset)
        .await
        .expect("reset");
    assert!(sim.actions().iter().filter(|a| *a == "reset").count() > resets);
    assert!(sim.ipmitool_power_on());

    // soft off (the fixture "OS" obeys ACPI at once)
    c.chassis_control(ChassisControl::SoftOff)
        .await
        .expect("soft");
    assert!(sim.actions().contains(&"shutdown".to_owned()));
    assert!(!c.chassis_status().await.expect("status").power_on);
    assert!(!sim.ipmitool_power_on());

    // boot device, with and without persistent/EFI flags
    for (target, persistent, efi) in [
        (BootTarget::Pxe, false, false),
        (BootTarget::Disk, false, false),
        (BootTarget::Pxe, true, true),
        (BootTarget::Disk, true, false),
        (BootTarget::Pxe, false, true),
    ] {
        let dev = BootDevice {
            target,
            persistent,
            efi,
        };
        c.set_boot_device(dev)
            .await
            .unwrap_or_else(|e| panic!("set {dev:?}: {e}"));
        let got = c.get_boot_device().await.expect("get boot");
        assert_eq!(got.target, target);
        assert_eq!(
            sim.ipmitool_boot_selector(),
            selector_text(target),
            "ipmitool after {dev:?}"
        );
        assert_eq!(sim.file("boot"), sim_file_name(target));
    }
    // ...and the other way round: ipmitool sets, we read.
    sim.ipmitool(&["chassis", "bootdev", "disk"]);
    assert_eq!(
        c.get_boot_device().await.expect("get").target,
        BootTarget::Disk
    );
    sim.ipmitool(&["chassis", "bootdev", "pxe"]);
    assert_eq!(
        c.get_boot_device().await.expect("get").target,
        BootTarget::Pxe
    );

    // raw: Get Device ID (bmc.emu: device ID 0, firmware 9.08, IANA 0x1291, product 0x0f02)
    let id = c.raw(0x06, 0x01, &[]).await.expect("raw get device id");
    assert!(id.len() >= 11, "{id:?}");
    assert_eq!((id[0], id[2], id[3]), (0x00, 0x09, 0x08), "{id:02x?}");
    assert_eq!(&id[6..11], &[0x91, 0x12, 0x00, 0x02, 0x0f], "{id:02x?}");

    c.close().await.expect("close");
}

#[tokio::test]
async fn ipmi_sim_all_operations_cross_checked_with_ipmitool() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    let t = sim.target();
    exercise_all(&sim, &t).await;
}

#[tokio::test]
async fn ipmi_sim_rejections_and_not_applied() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    let mut c = IpmiClient::connect(&sim.target()).await.expect("connect");
    // Chassis Control "pulse diagnostic interrupt" is not supported by ipmi_sim.
    match c.raw(0x00, 0x02, &[0x04]).await {
        Err(IpmiError::Rejected {
            completion_code: 0xcc,
            meaning,
            ..
        }) => {
            assert_eq!(meaning, "invalid data field in request")
        }
        other => panic!("expected Rejected 0xcc, got {other:?}"),
    }
    // A BMC that accepts Set System Boot Options but ignores it (the fixture
    // drops boot writes while `ignore-boot` exists): read-back catches it.
    c.set_boot_device(BootDevice {
        target: BootTarget::Disk,
        persistent: false,
        efi: false,
    })
    .await
    .expect("set disk");
    std::fs::write(sim.state.join("ignore-boot"), "").expect("write");
    match c
        .set_boot_device(BootDevice {
            target: BootTarget::Pxe,
            persistent: false,
            efi: false,
        })
        .await
    {
        Err(IpmiError::NotApplied(m)) => assert!(m.contains("Pxe") && m.contains("Disk"), "{m}"),
        other => panic!("expected NotApplied, got {other:?}"),
    }
    c.close().await.expect("close");
}

#[tokio::test]
async fn ipmi_sim_cipher_suite_fallback_and_only_17() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;

    let mut t = sim.target();
    t.cipher_suites = vec![17, 3];
    let started = Instant::now();
    let c = IpmiClient::connect(&t).await.expect("fallback to 3");
    assert_eq!(c.cipher_suite(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "fallback must not wait for timeouts"
    );
    c.close().await.expect("close");

    t.cipher_suites = vec![17];
    let started = Instant::now();
    match IpmiClient::connect(&t).await {
        Err(IpmiError::Unsupported(m)) => {
            assert!(m.contains("suite 17"), "{m}");
            assert!(m.contains("invalid authentication algorithm"), "{m}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn ipmi_sim_wrong_password_is_auth_failed() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    let mut t = sim.target();
    t.password = Secret::new("not-the-password");
    match IpmiClient::connect(&t).await {
        Err(e @ IpmiError::AuthFailed(_)) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("not-the-password"), "{text}");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    let mut t = sim.target();
    t.username = "nobody".into();
    assert!(matches!(
        IpmiClient::connect(&t).await,
        Err(IpmiError::AuthFailed(_))
    ));
}

#[tokio::test]
async fn nothing_listening_is_unreachable_within_deadline() {
    let port = free_udp_port();
    let mut t = IpmiTarget::new(SocketAddr::from(([127, 0, 0, 1], port)), USER, PASS);
    t.deadline = Duration::from_millis(1500);
    t.retries = 100; // the deadline, not the retry count, must end it
    let started = Instant::now();
    match IpmiClient::connect(&t).await {
        Err(IpmiError::Unreachable { addr, after }) => {
            assert_eq!(addr, t.addr);
            assert!(after <= Duration::from_millis(1600), "{after:?}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2000),
        "{took:?}"
    );
}

/// A UDP proxy that drops `percent` of the datagrams in each direction,
/// decided by a seeded RNG, plus every client datagram `drop_up` matches.
struct LossyProxy {
    addr: SocketAddr,
    dropped: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    async fn start(
        upstream: SocketAddr,
        percent: u32,
        seed: u64,
        drop_up: fn(&[u8]) -> bool,
    ) -> LossyProxy {
        use rand::{RngExt, SeedableRng};
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        back.connect(upstream).await.expect("connect");
        let addr = front.local_addr().expect("addr");
        let dropped = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (d, f) = (dropped.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        if rng.random_range(0..100) < percent || drop_up(&a[..n]) {
                            d.fetch_add(1, Ordering::Relaxed);
                        } else {
                            f.fetch_add(1, Ordering::Relaxed);
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { continue };
                        if rng.random_range(0..100) < percent {
                            d.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(c) = client {
                            f.fetch_add(1, Ordering::Relaxed);
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        LossyProxy {
            addr,
            dropped,
            forwarded,
            task,
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_behind_30_percent_loss() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    let proxy = LossyProxy::start(sim.addr(), 30, 0x1bad_5eed, |_| false).await;
    let mut t = sim.target_at(proxy.addr);
    t.timeout = Duration::from_millis(250);
    t.retries = 10;
    t.deadline = Duration::from_secs(20);
    let started = Instant::now();
    exercise_all(&sim, &t).await;
    let (dropped, forwarded) = (
        proxy.dropped.load(Ordering::Relaxed),
        proxy.forwarded.load(Ordering::Relaxed),
    );
    eprintln!(
        "lossy proxy: dropped {dropped}, forwarded {forwarded}, all operations in {:?}",
        started.elapsed()
    );
    assert!(dropped > 0, "the proxy must actually drop datagrams");
}

/// A BMC that silently drops Open Session Requests for suite 17 (RAKP-HMAC-SHA256)
/// instead of answering with an error: [17, 3] still ends on suite 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_silently_ignoring_suite_17_falls_back() {
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    // RMCP(4) + auth type, payload type 0x10, ..., auth algorithm at payload byte 12.
    let proxy = LossyProxy::start(sim.addr(), 0, 1, |d| {
        d.len() > 32 && d[5] == 0x10 && d[16 + 12] == 0x03
    })
    .await;
    let mut t = sim.target_at(proxy.addr);
    t.cipher_suites = vec![17, 3];
    t.deadline = Duration::from_secs(4);
    let started = Instant::now();
    let mut c = IpmiClient::connect(&t).await.expect("fallback to suite 3");
    assert_eq!(c.cipher_suite(), 3);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(proxy.dropped.load(Ordering::Relaxed) > 0);
    c.chassis_status().await.expect("status");
    c.close().await.expect("close");
}

/// `bench/ipmi-bench.sh`: `IPMI_BENCH_CALLS` (100) `power status` calls per
/// scenario, `IPMI_BENCH_PARALLEL` (8) for the parallel ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run bench/ipmi-bench.sh"]
async fn bench_power_status() {
    if tools_missing() {
        return;
    }
    let env_usize = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut sim = Sim::start();
    sim.ready().await;
    let mut target = sim.target();
    target.cipher_suites = vec![3]; // what ipmitool -C 3 uses; [17, 3] would add one rejected Open Session
    let port = sim.port.to_string();
    let ipmitool_args = [
        "-I",
        "lanplus",
        "-C",
        "3",
        "-H",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        USER,
        "-E",
    ];
    let cfg = rackboot::power::ipmi::bench::BenchConfig {
        target,
        calls: env_usize("IPMI_BENCH_CALLS", 100),
        parallel: env_usize("IPMI_BENCH_PARALLEL", 8),
        ipmitool_args: Some(ipmitool_args.iter().map(|s| s.to_string()).collect()),
    };
    let stats = rackboot::power::ipmi::bench::run(&cfg)
        .await
        .expect("bench");
    println!("{}", rackboot::power::ipmi::bench::report(&stats));
    for s in &stats {
        assert_eq!(s.errors, 0, "{}", s.label);
    }
}

/// The serial port side of an ipmi_sim `sol "tcp:…"` device: ipmi_sim
/// connects to it on its own timer (every 10 s until it succeeds).
fn accept_serial(l: &std::net::TcpListener, within: Duration) -> std::net::TcpStream {
    l.set_nonblocking(true).expect("nonblocking");
    let t0 = Instant::now();
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(false).expect("blocking");
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                return c;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    t0.elapsed() < within,
                    "ipmi_sim never connected to the serial port"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Read the serial side until `want` shows up (bounded).
fn serial_until(c: &mut std::net::TcpStream, want: &str, within: Duration) -> String {
    use std::io::Read;
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while t0.elapsed() < within {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&got).contains(want) {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_sol_console_both_ways_cross_checked_with_ipmitool() {
    use rackboot::power::ipmi::console::{SolConsole, SolTiming};
    use std::io::{Read, Write};
    if tools_missing() {
        return;
    }
    let serial = std::net::TcpListener::bind("127.0.0.1:0").expect("bind serial");
    let sport = serial.local_addr().expect("addr").port();
    let mut sim = Sim::start_with(&format!("  sol \"tcp:127.0.0.1:{sport}\" 115200\n"));
    sim.ready().await;
    let mut con = SolConsole::open(&sim.target(), SolTiming::default())
        .await
        .unwrap_or_else(|e| panic!("activate SOL: {e}; log: {}", sim.log()));
    assert!(con.activated.inbound_max > 0);
    let mut port =
        tokio::task::spawn_blocking(move || accept_serial(&serial, Duration::from_secs(25)))
            .await
            .expect("join");

    // Serial → our capture (written until seen: ipmi_sim may still be wiring up).
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("hello from the serial port") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "never captured: {:?}",
            String::from_utf8_lossy(&seen)
        );
        port.write_all(b"hello from the serial port\r\n")
            .expect("write serial");
        let until = tokio::time::Instant::now() + Duration::from_millis(700);
        while let Ok(Some(b)) = tokio::time::timeout_at(until, con.output.recv()).await {
            seen.extend_from_slice(&b);
        }
    }
    // More than one packet's worth (ipmi_sim sends at most 255 bytes a packet): nothing lost, in order.
    let big: String = (0..40)
        .map(|i| format!("line {i:03} of the boot log\r\n"))
        .collect();
    port.write_all(big.as_bytes()).expect("write serial");
    let mut got = Vec::new();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&got).contains("line 039 of the boot log\r\n") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "partial: {:?}",
            String::from_utf8_lossy(&got)
        );
        if let Ok(Some(b)) = tokio::time::timeout(Duration::from_secs(1), con.output.recv()).await {
            got.extend_from_slice(&b);
        }
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains(&big), "reordered or lost: {got:?}");

    // Ours → the serial side.
    con.input
        .send(b"typed at rackboot\r".to_vec())
        .await
        .expect("input");
    let typed = tokio::task::spawn_blocking(move || {
        let s = serial_until(&mut port, "typed at rackboot", Duration::from_secs(10));
        (s, port)
    })
    .await
    .expect("join");
    assert!(
        typed.0.contains("typed at rackboot"),
        "serial side got {:?}",
        typed.0
    );
    let mut port = typed.1;
    con.close().await.expect("deactivate and close");

    // ipmitool's `sol activate` against the same config sees the serial port too.
    let mut child = Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            &sim.port.to_string(),
            "-U",
            USER,
            "-E",
            "sol",
            "activate",
        ])
        .env("IPMI_PASSWORD", PASS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ipmitool sol activate");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 512];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&all).contains("seen by ipmitool") {
                break;
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let t0 = Instant::now();
    while !reader.is_finished() && t0.elapsed() < Duration::from_secs(20) {
        let _ = port.write_all(b"seen by ipmitool\r\n");
        std::thread::sleep(Duration::from_millis(500));
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"\n~.");
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = reader.join().expect("reader");
    assert!(
        text.contains("seen by ipmitool"),
        "ipmitool sol printed {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_without_sol_refuses_activation() {
    use rackboot::power::ipmi::console::{SolConsole, SolTiming};
    if tools_missing() {
        return;
    }
    let mut sim = Sim::start();
    sim.ready().await;
    let e = SolConsole::open(&sim.target(), SolTiming::default())
        .await
        .expect_err("no sol device: refused");
    let m = e.to_string();
    assert!(m.contains("Activate Payload"), "{m}");
}
