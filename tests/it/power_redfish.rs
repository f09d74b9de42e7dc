//! The Redfish driver against sushy-tools' fake driver (`.lab/venv`, from
//! `scripts/install-deps.sh`), plain HTTP, TLS with a self-signed
//! certificate, and basic auth; faults from tiny in-test servers; and
//! `rackboot power SYS status` through the daemon. Traffic stays on 127.0.0.1.

use crate::harness::{free_port, tool, ConfigDir};
use rackboot::inventory::{Bmc, BmcKind, SecretRef};
use rackboot::power::redfish::{RedfishConfig, RedfishDriver};
use rackboot::power::{BootDev, BootSpec, PowerDriver, PowerError, PowerOp, PowerState};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "rf-Secret-pw1";
const SUSHY_UUID: &str = "27946b59-9e44-4fa7-8e91-f3527a1ef094";

fn sushy_bin() -> Option<PathBuf> {
    tool(&[".lab/venv/bin/sushy-emulator"])
}

/// A sushy-emulator with the fake driver and its own state directory
/// (the default one is shared between instances), killed on drop.
struct Sushy {
    child: Child,
    port: u16,
    tls: bool,
    dir: tempfile::TempDir,
}

#[derive(Default)]
struct SushyOpts {
    auth: bool,
    tls: bool,
    /// Extra config lines (Python).
    extra: String,
}

impl Sushy {
    fn start(bin: &Path, o: SushyOpts) -> Sushy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cfg = format!(
            "SUSHY_EMULATOR_STATE_DIR = {:?}\n{}\n",
            dir.path().join("state").display().to_string(),
            o.extra
        );
        if o.auth {
            // sushy accepts bcrypt entries only; the venv has bcrypt (a sushy dependency).
            let py = bin.parent().unwrap().join("python");
            let out = Command::new(py)
                .args([
                    "-c",
                    &format!(
                        "import bcrypt; print(bcrypt.hashpw(b'{PASSWORD}', bcrypt.gensalt(rounds=4)).decode())"
                    ),
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "bcrypt: {out:?}");
            let hash = String::from_utf8(out.stdout).unwrap();
            std::fs::write(
                dir.path().join("htpasswd"),
                format!("admin:{}\n", hash.trim()),
            )
            .unwrap();
            cfg.push_str(&format!(
                "SUSHY_EMULATOR_AUTH_FILE = {:?}\n",
                dir.path().join("htpasswd").display().to_string()
            ));
        }
        std::fs::write(dir.path().join("sushy.conf"), cfg).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--fake")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .arg("--config")
            .arg(dir.path().join("sushy.conf"));
        if o.tls {
            let openssl = tool(&["openssl"]).expect("openssl (checked by the caller)");
            let st = Command::new(openssl)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                ])
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success(), "openssl req failed");
            cmd.arg("--ssl-certificate")
                .arg(dir.path().join("cert.pem"))
                .arg("--ssl-key")
                .arg(dir.path().join("key.pem"));
        }
        let log = std::fs::File::create(dir.path().join("sushy.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut s = Sushy {
            child,
            port,
            tls: o.tls,
            dir,
        };
        s.wait_listening();
        s
    }

    fn wait_listening(&mut self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        for _ in 0..200 {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("sushy-emulator exited ({st}): {}", self.log());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sushy-emulator not listening after 20 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
    }

    fn address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn bmc(&self) -> Bmc {
        bmc(&self.address(), &self.dir.path().join("password"))
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bmc(address: &str, password_file: &Path) -> Bmc {
    std::fs::write(password_file, format!("{PASSWORD}\n")).unwrap();
    Bmc {
        kind: BmcKind::Redfish,
        address: address.to_string(),
        username: "admin".into(),
        password: SecretRef::File(password_file.to_path_buf()),
        cipher_suites: vec![],
        insecure_tls: false,
        system_id: None,
    }
}

fn driver(deadline: Duration) -> RedfishDriver {
    RedfishDriver::new(RedfishConfig {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        deadline,
        poll_interval: Duration::from_millis(250),
        boot_readbacks: 3,
    })
}

/// sushy's fake driver applies a power change 1–11 s after the 204.
const POWER_DEADLINE: Duration = Duration::from_secs(30);

fn no_secret(e: &PowerError) {
    let s = e.to_string();
    assert!(!s.contains(PASSWORD), "password leaked: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_status_on_reset_soft_off() {
    let Some(bin) = sushy_bin() else { return };
    let s = Sushy::start(&bin, SushyOpts::default());
    let d = driver(POWER_DEADLINE);
    let b = s.bmc();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
    // The only system, also when named by its id.
    let mut named = b.clone();
    named.system_id = Some(SUSHY_UUID.into());
    assert_eq!(d.status(&named).await.unwrap(), PowerState::Off);
    // Already off: soft and off are no-ops, not errors.
    d.power(&b, PowerOp::Soft).await.unwrap();
    let t = Instant::now();
    d.power(&b, PowerOp::On).await.unwrap();
    eprintln!("on took {:?}", t.elapsed());
    assert_eq!(d.status(&b).await.unwrap(), PowerState::On);
    d.power(&b, PowerOp::Reset).await.unwrap();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::On);
    d.power(&b, PowerOp::Soft).await.unwrap();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_force_off_and_emulated_cycle() {
    let Some(bin) = sushy_bin() else { return };
    let s = Sushy::start(&bin, SushyOpts::default());
    let d = std::sync::Arc::new(driver(POWER_DEADLINE));
    let b = s.bmc();
    d.power(&b, PowerOp::On).await.unwrap();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::On);
    // sushy offers no PowerCycle: ForceOff, wait Off, On, wait On. A watcher
    // sees the machine go off and come back.
    let watcher = {
        let (d, b) = (d.clone(), b.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..200 {
                if let Ok(st) = d.status(&b).await {
                    if seen.last() != Some(&st) {
                        seen.push(st);
                    }
                }
                if seen == [PowerState::On, PowerState::Off, PowerState::On] {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            seen
        })
    };
    let t = Instant::now();
    d.power(&b, PowerOp::Cycle).await.unwrap();
    eprintln!("emulated cycle took {:?}", t.elapsed());
    assert_eq!(d.status(&b).await.unwrap(), PowerState::On);
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("watcher ends")
        .unwrap();
    assert_eq!(seen, [PowerState::On, PowerState::Off, PowerState::On]);
    d.power(&b, PowerOp::Off).await.unwrap();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_bootdev_matrix_with_read_back() {
    let Some(bin) = sushy_bin() else { return };
    let s = Sushy::start(&bin, SushyOpts::default());
    let d = driver(Duration::from_secs(15));
    let b = s.bmc();
    for dev in [BootDev::Pxe, BootDev::Disk] {
        for persistent in [false, true] {
            for efi in [true, false] {
                let spec = BootSpec {
                    dev,
                    persistent,
                    efi,
                };
                d.set_boot(&b, spec)
                    .await
                    .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
                let got = d.get_boot(&b).await.unwrap();
                assert_eq!((got.dev, got.efi), (dev, efi), "{spec:?}");
                // sushy ignores BootSourceOverrideEnabled and always reports
                // Continuous; the driver accepts that for a Once request.
                assert!(got.persistent, "{spec:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_several_systems_need_system_id() {
    let Some(bin) = sushy_bin() else { return };
    let extra = r#"SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {'uuid': '11111111-0000-0000-0000-000000000001', 'name': 'alpha', 'power_state': 'Off', 'nics': []},
    {'uuid': '11111111-0000-0000-0000-000000000002', 'name': 'beta', 'power_state': 'On', 'nics': []},
]"#;
    let s = Sushy::start(
        &bin,
        SushyOpts {
            extra: extra.into(),
            ..Default::default()
        },
    );
    let d = driver(Duration::from_secs(10));
    let mut b = s.bmc();
    match d.status(&b).await {
        Err(PowerError::Unsupported(m)) => {
            assert!(m.contains("2 systems"), "{m}");
            assert!(m.contains("11111111-0000-0000-0000-000000000001"), "{m}");
            assert!(m.contains("11111111-0000-0000-0000-000000000002"), "{m}");
            assert!(m.contains("system_id"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    b.system_id = Some("11111111-0000-0000-0000-000000000002".into());
    assert_eq!(d.status(&b).await.unwrap(), PowerState::On);
    b.system_id = Some("11111111-0000-0000-0000-000000000001".into());
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
    b.system_id = Some("nope".into());
    match d.status(&b).await {
        Err(PowerError::Unsupported(m)) => assert!(m.contains("no system \"nope\""), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_basic_auth_wrong_password() {
    let Some(bin) = sushy_bin() else { return };
    let s = Sushy::start(
        &bin,
        SushyOpts {
            auth: true,
            ..Default::default()
        },
    );
    let d = driver(Duration::from_secs(10));
    let b = s.bmc();
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
    let wrong = s.dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let mut bad = b.clone();
    bad.password = SecretRef::File(wrong);
    match d.status(&bad).await {
        Err(e @ PowerError::Auth(_)) => {
            let m = e.to_string();
            assert!(m.contains("401"), "{m}");
            assert!(!m.contains("not-the-password"), "password leaked: {m}");
        }
        other => panic!("{other:?}"),
    }
    // A missing password file is a credentials error, with no request sent.
    let mut missing = b.clone();
    missing.password = SecretRef::File(s.dir.path().join("absent"));
    assert!(matches!(
        d.status(&missing).await,
        Err(PowerError::Secret(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_tls_self_signed() {
    let Some(bin) = sushy_bin() else { return };
    if tool(&["openssl"]).is_none() {
        return;
    }
    let s = Sushy::start(
        &bin,
        SushyOpts {
            tls: true,
            ..Default::default()
        },
    );
    let d = driver(Duration::from_secs(10));
    let mut b = s.bmc();
    assert!(b.address.starts_with("https://"));
    match d.status(&b).await {
        Err(PowerError::Other(m)) => {
            assert!(m.contains("TLS"), "{m}");
            assert!(m.contains("insecure_tls = true"), "{m}");
            eprintln!("verifying client: {m}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
    b.insecure_tls = true;
    assert_eq!(d.status(&b).await.unwrap(), PowerState::Off);
    // A bare host:port means https.
    b.address = format!("127.0.0.1:{}", s.port);
    let boot = BootSpec {
        dev: BootDev::Pxe,
        persistent: true,
        efi: true,
    };
    d.set_boot(&b, boot).await.unwrap();
    assert_eq!(d.get_boot(&b).await.unwrap(), boot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_unreachable_within_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_secs(3);
    let d = driver(deadline);
    // Refused.
    let b = bmc(
        &format!("http://127.0.0.1:{}", free_port()),
        &dir.path().join("pw"),
    );
    let t = Instant::now();
    let e = d.status(&b).await.unwrap_err();
    assert!(matches!(e, PowerError::Unreachable(_)), "{e:?}");
    assert!(t.elapsed() < deadline, "{:?}", t.elapsed());
    no_secret(&e);
    // Accepts the connection and never answers: the request timeout (cut to
    // the deadline) ends it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = l.accept().await {
            conns.push(c);
        }
    });
    let b = bmc(&format!("http://{addr}"), &dir.path().join("pw"));
    for op in [None, Some(PowerOp::On)] {
        let t = Instant::now();
        let e = match op {
            None => d.status(&b).await.unwrap_err(),
            Some(op) => d.power(&b, op).await.unwrap_err(),
        };
        let took = t.elapsed();
        assert!(matches!(e, PowerError::Unreachable(_)), "{e:?}");
        assert!(took < deadline + Duration::from_secs(2), "{took:?}");
        eprintln!("silent BMC: {e} after {took:?}");
    }
    hold.abort();
}

/// A one-answer-for-everything HTTP server on loopback.
struct TinyServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TinyServer {
    async fn start(status: &'static str, body: &'static str) -> TinyServer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    // Read the request head (bounded), then answer and close.
                    while buf.len() < 16 * 1024 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = c.write_all(resp.as_bytes()).await;
                    let _ = c.shutdown().await;
                });
            }
        });
        TinyServer { addr, task }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500_with_redfish_error_is_rejected() {
    let srv = TinyServer::start(
        "500 Internal Server Error",
        r#"{"error":{"code":"Base.1.8.GeneralError","message":"A general error has occurred.","@Message.ExtendedInfo":[{"MessageId":"Base.1.8.InternalError","Message":"The request failed due to an internal service error."}]}}"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = driver(Duration::from_secs(3));
    let b = bmc(&format!("http://{}", srv.addr), &dir.path().join("pw"));
    let t = Instant::now();
    match d.status(&b).await {
        Err(e @ PowerError::Rejected(_)) => {
            let m = e.to_string();
            assert!(m.contains("HTTP 500"), "{m}");
            assert!(m.contains("A general error has occurred."), "{m}");
            assert!(m.contains("internal service error"), "{m}");
            no_secret(&e);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    let e = d
        .set_boot(
            &b,
            BootSpec {
                dev: BootDev::Pxe,
                persistent: false,
                efi: true,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PowerError::Rejected(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_a_clear_error() {
    let srv = TinyServer::start("200 OK", r#"{"Members": [{"@odata.id": "/redfish/v1/Sys"#).await;
    let dir = tempfile::tempdir().unwrap();
    let d = driver(Duration::from_secs(3));
    let b = bmc(&format!("http://{}", srv.addr), &dir.path().join("pw"));
    let t = Instant::now();
    match d.power(&b, PowerOp::On).await {
        Err(PowerError::Other(m)) => {
            assert!(m.starts_with("malformed JSON from BMC: "), "{m}");
            assert!(m.contains("/redfish/v1/Systems"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// A 401 from a server that is not sushy (no auth file needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401_is_auth() {
    let srv = TinyServer::start(
        "401 Unauthorized",
        r#"{"error":{"code":"Base.1.8.GeneralError","message":"Invalid credentials"}}"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = driver(Duration::from_secs(3));
    let b = bmc(&format!("http://{}", srv.addr), &dir.path().join("pw"));
    match d.status(&b).await {
        Err(e @ PowerError::Auth(_)) => {
            assert!(e.to_string().contains("Invalid credentials"), "{e}");
            no_secret(&e);
        }
        other => panic!("{other:?}"),
    }
}

/// `rackboot power SYS status` through the in-process daemon (native
/// drivers) for a `kind = "redfish"` system pointing at sushy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_power_status_for_a_redfish_system() {
    let Some(bin) = sushy_bin() else { return };
    let s = Sushy::start(&bin, SushyOpts::default());
    let c = ConfigDir::sample();
    c.append(
        "systems.toml",
        &format!(
            r#"
[systems.rf1]
hostname = "rf1"
macs = ["52:54:00:77:00:91"]
ip = "10.77.0.91"
profile = "lab"
[systems.rf1.bmc]
kind = "redfish"
address = "{}"
username = "admin"
password_file = "tests/lab/bmc-password"
"#,
            s.address()
        ),
    );
    let cfg = c.load().unwrap();
    let listeners = rackboot::daemon::Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        dhcp: vec![],
        tftp: None,
        dns: None,
    };
    let d = rackboot::daemon::start(cfg, listeners).await.unwrap();
    let api = d.api_addr.to_string();
    let dir = c.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--config")
            .arg(&dir)
            .args(["--api", &api, "power", "rf1", "status"])
            .env_remove("RACKBOOT_TOKEN")
            .env_remove("RACKBOOT_API")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("rf1") && stdout.contains("off"), "{stdout}");
    assert!(!stdout.contains("rigpass") && !stderr.contains("rigpass"));
    d.stop().await;
}
