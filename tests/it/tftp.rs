//! TFTP server over real loopback sockets: an in-test client (optionally
//! lossy, with a seeded RNG), concurrency and busy limits, path escapes,
//! WRQ refusal, probes, observations, and interop with tftp-hpa, atftp and
//! curl when they are installed.

use rackboot::observe::{Observation, ObservationSink};
use rackboot::tftp::packet::{ErrorCode, Mode, Packet, Request, RequestOptions};
use rackboot::tftp::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `pct` percent.
    fn hit(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

struct Server {
    addr: SocketAddr,
    stats: Arc<TftpStats>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    obs: tokio::sync::mpsc::Receiver<Observation>,
    root: tempfile::TempDir,
}

impl Server {
    async fn start(cfg: TftpConfig) -> Server {
        let root = tempfile::tempdir().unwrap();
        let source = Arc::new(RootsSource::new([root.path()]).unwrap());
        Self::start_with(cfg, root, source).await
    }

    async fn start_with(
        cfg: TftpConfig,
        root: tempfile::TempDir,
        source: Arc<dyn FileSource>,
    ) -> Server {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats = Arc::new(TftpStats::default());
        let shutdown = CancellationToken::new();
        let (tx, obs) = tokio::sync::mpsc::channel(1024);
        let handle = tokio::spawn(serve(
            socket,
            source,
            cfg,
            stats.clone(),
            ObservationSink::new(tx),
            shutdown.clone(),
        ));
        Server {
            addr,
            stats,
            shutdown,
            handle,
            obs,
            root,
        }
    }

    fn put(&self, name: &str, data: &[u8]) {
        let p = self.root.path().join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, data).unwrap();
    }

    async fn stop(self) -> TftpStatsSnapshot {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("serve stops after cancel")
            .unwrap()
            .unwrap();
        self.stats.snapshot()
    }
}

/// Short timer so loss recovers fast; many retries so a loaded CI machine
/// (a second of starvation) does not fail a transfer.
fn fast_cfg() -> TftpConfig {
    TftpConfig {
        timeout: Duration::from_millis(30),
        retries: 40,
        ..TftpConfig::default()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Opts {
    blksize: Option<u16>,
    windowsize: Option<u16>,
    tsize: bool,
    /// (seed, percent) of datagrams dropped in each direction.
    loss: Option<(u64, u64)>,
    mode: Option<Mode>,
}

#[derive(Debug)]
pub(crate) enum Fetch {
    Ok { data: Vec<u8>, tsize: Option<u64> },
    Err(ErrorCode, String),
}

impl Fetch {
    pub(crate) fn data(self) -> Vec<u8> {
        match self {
            Fetch::Ok { data, .. } => data,
            Fetch::Err(c, m) => panic!("ERROR {c}: {m}"),
        }
    }

    pub(crate) fn code(&self) -> u16 {
        match self {
            Fetch::Err(c, _) => c.0,
            Fetch::Ok { .. } => panic!("expected an ERROR, got data"),
        }
    }
}

fn rrq(path: &str, o: &Opts) -> Vec<u8> {
    Packet::Rrq(Request {
        filename: path.into(),
        mode: o.mode.unwrap_or(Mode::Octet),
        options: RequestOptions {
            blksize: o.blksize,
            windowsize: o.windowsize,
            tsize: o.tsize.then_some(0),
            ..Default::default()
        },
    })
    .encode()
}

/// Remember and return an ACK for absolute block `block`.
fn ack(block: u64, last: &mut Vec<u8>) -> Vec<u8> {
    *last = Packet::Ack {
        block: block as u16,
    }
    .encode();
    last.clone()
}

/// A small RFC 1350 / 2347 / 7440 client. On a gap it ACKs the last in-order
/// block (again at most every 10 ms); after the last block it dallies to
/// re-ACK retransmissions.
pub(crate) async fn fetch(server: SocketAddr, path: &str, o: &Opts) -> Fetch {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = o.loss.map(|(seed, pct)| (Rng(seed | 1), pct));
    let mut drop_it = move || rng.as_mut().is_some_and(|(r, pct)| r.hit(*pct));
    let mut last: Vec<u8> = rrq(path, o);
    let mut dest = server;
    if !drop_it() {
        sock.send_to(&last, dest).await.unwrap();
    }
    let mut tid: Option<SocketAddr> = None;
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut tsize = None;
    let mut data = Vec::new();
    let mut expected: u64 = 1;
    let mut since_ack = 0;
    // When the last gap ACK went out; re-sent at most every 10 ms while
    // out-of-order or duplicate blocks keep arriving.
    let mut gap_acked: Option<Instant> = None;
    let mut buf = vec![0u8; 70_000];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = false;
    loop {
        assert!(Instant::now() < deadline, "fetch of {path} took too long");
        // After the final block: dally until 300 ms of silence.
        let wait = if finished {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(100)
        };
        let (n, from) = match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
            Err(_) if finished => return Fetch::Ok { data, tsize },
            Err(_) => {
                if !drop_it() {
                    sock.send_to(&last, dest).await.unwrap();
                }
                continue;
            }
            Ok(r) => r.unwrap(),
        };
        if drop_it() {
            continue;
        }
        match tid {
            None => {
                tid = Some(from);
                dest = from;
            }
            Some(t) if t != from => continue,
            Some(_) => {}
        }
        let reply = match Packet::parse(&buf[..n]) {
            Ok(Packet::Oack(pairs)) if expected == 1 => {
                for (k, v) in pairs {
                    match k.as_str() {
                        "blksize" => blksize = v.parse().unwrap(),
                        "windowsize" => window = v.parse().unwrap(),
                        "tsize" => tsize = Some(v.parse().unwrap()),
                        _ => {}
                    }
                }
                Some(ack(0, &mut last))
            }
            Ok(Packet::Data { block, data: d }) => {
                if finished {
                    Some(last.clone())
                } else if block == expected as u16 {
                    data.extend_from_slice(d);
                    expected += 1;
                    since_ack += 1;
                    gap_acked = None;
                    if d.len() < blksize {
                        finished = true;
                        Some(ack(expected - 1, &mut last))
                    } else if since_ack == window {
                        since_ack = 0;
                        Some(ack(expected - 1, &mut last))
                    } else {
                        None
                    }
                } else if gap_acked.is_none_or(|t| t.elapsed() > Duration::from_millis(10)) {
                    gap_acked = Some(Instant::now());
                    since_ack = 0;
                    Some(ack(expected - 1, &mut last))
                } else {
                    None
                }
            }
            Ok(Packet::Error { code, message }) => return Fetch::Err(code, message),
            _ => None,
        };
        if let Some(p) = reply {
            if !drop_it() {
                sock.send_to(&p, dest).await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_basic_fetches_and_observation() {
    let mut s = Server::start(fast_cfg()).await;
    let small = content(1000, 1);
    let exact = content(1468 * 10, 2);
    let big = content(3 * 1024 * 1024 + 17, 3);
    s.put("small.bin", &small);
    s.put("exact.bin", &exact);
    s.put("boot/big.bin", &big);
    s.put("empty", b"");

    let plain = Opts::default();
    assert_eq!(fetch(s.addr, "small.bin", &plain).await.data(), small);
    assert_eq!(fetch(s.addr, "/small.bin", &plain).await.data(), small);
    assert_eq!(fetch(s.addr, "empty", &plain).await.data(), b"");
    let o = Opts {
        blksize: Some(1468),
        windowsize: Some(16),
        tsize: true,
        ..Default::default()
    };
    match fetch(s.addr, "exact.bin", &o).await {
        Fetch::Ok { data, tsize } => {
            assert_eq!(data, exact);
            assert_eq!(tsize, Some(exact.len() as u64));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(fetch(s.addr, "boot\\big.bin", &o).await.data(), big);
    let o = Opts {
        blksize: Some(65464),
        windowsize: Some(4),
        ..Default::default()
    };
    assert_eq!(fetch(s.addr, "boot/big.bin", &o).await.data(), big);

    // None of them names a machine (no inventory behind this source): the
    // engine has nothing to step, so nothing is sent to it.
    assert!(
        s.obs.try_recv().is_err(),
        "an anonymous transfer was reported"
    );
    let st = s.stop().await;
    assert_eq!(st.transfers_ok, 6, "{st:?}");
    assert_eq!(st.transfers_failed, 0, "{st:?}");
    assert_eq!(st.active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_wraparound_over_32_mib_at_512() {
    let s = Server::start(fast_cfg()).await;
    // 65536 full blocks + 100 bytes: block numbers wrap through 0.
    let big = content(512 * 65_536 + 100, 4);
    s.put("wrap.bin", &big);
    let o = Opts {
        blksize: Some(512),
        windowsize: Some(32),
        ..Default::default()
    };
    let got = fetch(s.addr, "wrap.bin", &o).await.data();
    assert!(got == big, "wrapped transfer differs");
    let st = s.stop().await;
    assert_eq!(st.transfers_ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_lossy_transfers_are_exact() {
    let s = Server::start(fast_cfg()).await;
    let a = content(60 * 1024 + 3, 5);
    let b = content(1024 * 1024 + 123, 6);
    let c = content(1468 * 64, 7);
    s.put("a", &a);
    s.put("b", &b);
    s.put("c", &c);
    for seed in [11, 22] {
        let lockstep = Opts {
            loss: Some((seed, 10)),
            ..Default::default()
        };
        assert_eq!(fetch(s.addr, "a", &lockstep).await.data(), a, "seed {seed}");
        let windowed = Opts {
            blksize: Some(1468),
            windowsize: Some(16),
            tsize: true,
            loss: Some((seed, 10)),
            ..Default::default()
        };
        assert_eq!(fetch(s.addr, "b", &windowed).await.data(), b, "seed {seed}");
        assert_eq!(fetch(s.addr, "c", &windowed).await.data(), c, "seed {seed}");
    }
    // Let the server see the dallied final ACKs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = s.stop().await;
    assert_eq!(st.transfers_ok, 6, "{st:?}");
    assert!(
        st.bytes_sent > 2 * (a.len() + b.len() + c.len()) as u64,
        "retransmissions happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_sixteen_parallel_transfers() {
    let s = Server::start(fast_cfg()).await;
    let files: Vec<Vec<u8>> = (0..16)
        .map(|i| content(400_000 + i * 1000, 100 + i as u64))
        .collect();
    for (i, f) in files.iter().enumerate() {
        s.put(&format!("f{i}"), f);
    }
    let mut tasks = Vec::new();
    for i in 0..16 {
        let addr = s.addr;
        tasks.push(tokio::spawn(async move {
            let o = Opts {
                blksize: Some(1468),
                windowsize: Some(8),
                ..Default::default()
            };
            fetch(addr, &format!("f{i}"), &o).await.data()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert!(t.await.unwrap() == files[i], "file {i}");
    }
    let st = s.stop().await;
    assert_eq!(st.transfers_ok, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_max_transfers_overflow_is_busy() {
    let cfg = TftpConfig {
        max_transfers: 2,
        timeout: Duration::from_secs(5),
        retries: 1,
        ..TftpConfig::default()
    };
    let s = Server::start(cfg).await;
    s.put("f", &content(100_000, 8));
    // Two clients take a slot each and never ACK.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&rrq("f", &Opts::default()), s.addr)
            .await
            .unwrap();
        let mut buf = [0u8; 600];
        let (n, _) = c.recv_from(&mut buf).await.unwrap();
        assert!(matches!(
            Packet::parse(&buf[..n]),
            Ok(Packet::Data { block: 1, .. })
        ));
        stalled.push(c);
    }
    match fetch(s.addr, "f", &Opts::default()).await {
        Fetch::Err(c, m) => {
            assert_eq!(c, ErrorCode::NOT_DEFINED);
            assert_eq!(m, "server busy");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.stats.snapshot().busy, 1);
    assert_eq!(s.stats.snapshot().active, 2);
    // Shutdown ends the stalled transfers at once with an ERROR.
    let st = s.stop().await;
    for c in stalled {
        let mut buf = [0u8; 600];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(2), c.recv_from(&mut buf))
                .await
                .expect("ERROR on shutdown")
                .unwrap();
            if let Ok(Packet::Error { message, .. }) = Packet::parse(&buf[..n]) {
                assert_eq!(message, "server shutting down");
                break;
            }
        }
    }
    assert_eq!(st.transfers_failed, 2);
    assert_eq!(st.active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_path_escapes_and_writes_refused() {
    let s = Server::start(fast_cfg()).await;
    s.put("ok", b"fine");
    std::fs::create_dir(s.root.path().join("dir")).unwrap();
    std::os::unix::fs::symlink("/etc", s.root.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.root.path().join("pw")).unwrap();
    let o = Opts::default();
    let cases = [
        ("../etc/passwd", 2),
        ("/../etc/passwd", 2),
        ("..\\..\\etc\\passwd", 2),
        ("//etc/passwd", 2),
        ("etc/passwd", 2),
        ("/etc/passwd", 2), // via the etc symlink in the root
        ("pw", 2),
        ("dir", 2),
        ("missing", 1),
    ];
    for (path, code) in cases {
        assert_eq!(fetch(s.addr, path, &o).await.code(), code, "{path}");
    }
    // Without the symlink, /etc/passwd is simply not in the root.
    std::fs::remove_file(s.root.path().join("etc")).unwrap();
    assert_eq!(fetch(s.addr, "/etc/passwd", &o).await.code(), 1);

    // WRQ: ERROR 2 from the listen port.
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let wrq = Packet::Wrq(Request {
        filename: "upload".into(),
        mode: Mode::Octet,
        options: Default::default(),
    });
    c.send_to(&wrq.encode(), s.addr).await.unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = c.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::parse(&buf[..n]),
        Ok(Packet::Error {
            code: ErrorCode::ACCESS_VIOLATION,
            ..
        })
    ));
    assert!(!s.root.path().join("upload").exists());

    // netascii: refused with ERROR 4.
    let na = Opts {
        mode: Some(Mode::Netascii),
        ..Default::default()
    };
    assert_eq!(fetch(s.addr, "ok", &na).await.code(), 4);
    // Absurd blksize: ERROR 8.
    c.send_to(b"\x00\x01ok\x00octet\x00blksize\x000\x00", s.addr)
        .await
        .unwrap();
    let (n, _) = c.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::parse(&buf[..n]),
        Ok(Packet::Error {
            code: ErrorCode::OPTION_NEGOTIATION,
            ..
        })
    ));
    // Garbage gets no answer and does not hurt.
    c.send_to(b"\x00\x09garbage", s.addr).await.unwrap();
    c.send_to(b"", s.addr).await.unwrap();
    assert_eq!(fetch(s.addr, "ok", &o).await.data(), b"fine");

    let st = s.stop().await;
    assert_eq!(st.refused_path, 8, "{st:?}");
    assert_eq!(st.not_found, 2, "{st:?}");
    assert_eq!(st.refused_write, 1, "{st:?}");
    assert_eq!(st.refused_mode, 1, "{st:?}");
    assert_eq!(st.malformed, 3, "{st:?}");
    assert_eq!(st.transfers_ok, 1, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_tsize_probe_then_fetch() {
    let s = Server::start(fast_cfg()).await;
    let f = content(5000, 9);
    s.put("kernel", &f);
    // OVMF-style: ask tsize, read the OACK, send ERROR 8.
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let o = Opts {
        tsize: true,
        blksize: Some(1468),
        ..Default::default()
    };
    c.send_to(&rrq("kernel", &o), s.addr).await.unwrap();
    let mut buf = [0u8; 600];
    let (n, from) = c.recv_from(&mut buf).await.unwrap();
    assert_ne!(from, s.addr, "reply comes from a new TID");
    let Ok(Packet::Oack(pairs)) = Packet::parse(&buf[..n]) else {
        panic!("no OACK")
    };
    assert!(pairs.contains(&("tsize".to_string(), "5000".to_string())));
    let err = Packet::Error {
        code: ErrorCode::OPTION_NEGOTIATION,
        message: "tsize only".into(),
    };
    c.send_to(&err.encode(), from).await.unwrap();
    let t0 = Instant::now();
    while s.stats.snapshot().probes == 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "probe not seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fetch(s.addr, "kernel", &o).await.data(), f);
    let st = s.stop().await;
    assert_eq!(st.probes, 1, "{st:?}");
    assert_eq!(st.transfers_ok, 1, "{st:?}");
    assert_eq!(st.transfers_failed, 0, "{st:?}");
}

/// Generated content through a custom [`FileSource`].
struct Generated;

impl FileSource for Generated {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<TftpFile, TftpError> {
        match path {
            "menu.ipxe" => Ok(TftpFile::Memory(
                format!("#!ipxe\necho hello {}\n", peer.ip())
                    .into_bytes()
                    .into(),
            )),
            "secret" => Err(TftpError::AccessDenied("not for you".into())),
            _ => Err(TftpError::NotFound),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_memory_source() {
    let s = Server::start_with(
        fast_cfg(),
        tempfile::tempdir().unwrap(),
        Arc::new(Generated),
    )
    .await;
    let o = Opts {
        blksize: Some(8),
        windowsize: Some(3),
        ..Default::default()
    };
    assert_eq!(
        fetch(s.addr, "menu.ipxe", &o).await.data(),
        b"#!ipxe\necho hello 127.0.0.1\n"
    );
    assert_eq!(fetch(s.addr, "secret", &o).await.code(), 2);
    assert_eq!(fetch(s.addr, "nope", &o).await.code(), 1);
    let st = s.stop().await;
    assert_eq!((st.transfers_ok, st.refused_path, st.not_found), (1, 1, 1));
}

/// Run an external client with a 30 s limit. A missing tool skips with a
/// message, except under CI (`CI` or `RACKBOOT_REQUIRE_TOOLS` set, as
/// `.ci/run` does), where it fails.
async fn run_tool(tool: &str, args: Vec<String>, cwd: &Path) -> Option<std::process::Output> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        let why = format!("`{tool}` not installed (apt-get install tftp-hpa atftp curl)");
        if std::env::var_os("CI").is_some() || std::env::var_os("RACKBOOT_REQUIRE_TOOLS").is_some()
        {
            panic!("tftp interop: {why}");
        }
        println!("SKIP tftp interop: {why}");
        return None;
    }
    let cwd = cwd.to_path_buf();
    let tool = tool.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .arg("30")
            .arg(&tool)
            .args(&args)
            .current_dir(cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_interop_with_system_clients() {
    let s = Server::start(fast_cfg()).await;
    let f = content(2 * 1024 * 1024 + 999, 10);
    s.put("boot/file.bin", &f);
    let out = tempfile::tempdir().unwrap();
    let port = s.addr.port().to_string();
    let url = format!("tftp://127.0.0.1:{port}/boot/file.bin");
    let runs: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "curl",
            "curl-1468",
            vec!["-sS", "--tftp-blksize", "1468", "-o", "curl-1468", &url]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "curl",
            "curl-512",
            vec!["-sS", "--tftp-no-options", "-o", "curl-512", &url]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "atftp",
            "atftp-w16",
            vec![
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 16",
                "--option",
                "tsize 0",
                "-g",
                "-r",
                "boot/file.bin",
                "-l",
                "atftp-w16",
                "127.0.0.1",
                &port,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ),
        (
            "atftp",
            "atftp-plain",
            vec![
                "-g",
                "-r",
                "boot/file.bin",
                "-l",
                "atftp-plain",
                "127.0.0.1",
                &port,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ),
        (
            "tftp",
            "hpa",
            vec![
                "127.0.0.1",
                &port,
                "-m",
                "binary",
                "-c",
                "get",
                "boot/file.bin",
                "hpa",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ),
    ];
    let mut expected_ok = 0;
    for (tool, file, args) in runs {
        let Some(o) = run_tool(tool, args, out.path()).await else {
            continue;
        };
        expected_ok += 1;
        let got = std::fs::read(out.path().join(file)).unwrap_or_default();
        assert!(
            o.status.success() && got == f,
            "{tool} ({file}): status {:?}, {} of {} bytes, stderr {}",
            o.status,
            got.len(),
            f.len(),
            String::from_utf8_lossy(&o.stderr)
        );
        println!("interop: {file} ok");
    }
    // An escape through curl is refused.
    let esc = format!("tftp://127.0.0.1:{port}/..%2f..%2fetc%2fpasswd");
    if let Some(o) = run_tool(
        "curl",
        vec!["-sS".into(), "-o".into(), "esc".into(), esc],
        out.path(),
    )
    .await
    {
        assert!(!o.status.success());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = s.stop().await;
    assert_eq!(st.transfers_ok, expected_ok, "{st:?}");
}
