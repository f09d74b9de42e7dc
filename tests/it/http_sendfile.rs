//! The boot listener's own connection loop (`http::boot_conn`) over a real
//! socket: static files go out with sendfile, everything else as before.

use crate::harness::ConfigDir;
use rackboot::boot::BootTable;
use rackboot::http::boot::{router, BootContext, BootFiles, HttpStats};
use rackboot::http::boot_conn;
use rackboot::observe::ObservationSink;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const SIZE: usize = 5 * 1024 * 1024 + 123;

struct Server {
    _c: ConfigDir,
    addr: SocketAddr,
    stats: Arc<HttpStats>,
    image: Vec<u8>,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> Server {
    start_with(|_| {}, ObservationSink::discard()).await
}

/// The server over the sample config after `edit`, observing into `obs`.
async fn start_with(edit: impl FnOnce(&ConfigDir), obs: ObservationSink) -> Server {
    let c = ConfigDir::sample();
    edit(&c);
    let cfg = c.load().unwrap();
    let image: Vec<u8> = (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(cfg.settings.boot_dir.join("image.img"), &image).unwrap();
    let (inv_tx, inv_rx) = watch::channel(Arc::new(cfg.inventory));
    let (table_tx, table_rx) = watch::channel(Arc::new(BootTable::new()));
    std::mem::forget((inv_tx, table_tx));
    let stats = Arc::new(HttpStats::default());
    let ctx = BootContext {
        inventory: inv_rx,
        table: table_rx,
        boot_dir: cfg.settings.boot_dir.clone(),
        firmware_dir: cfg.settings.firmware_dir.clone(),
        obs,
        stats: stats.clone(),
        engine: None,
        own_ip_only: true,
        discovered: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(boot_conn::serve(
        listener,
        router(ctx.clone()),
        BootFiles::new(&ctx),
        shutdown.clone(),
    ));
    Server {
        _c: c,
        addr,
        stats,
        image,
        shutdown,
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection and the bytes read past the last response.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

async fn connect(addr: SocketAddr) -> Conn {
    Conn {
        s: TcpStream::connect(addr).await.unwrap(),
        buf: Vec::new(),
    }
}

/// Send `raw` and read one response (no body for HEAD and 304).
async fn exchange(c: &mut Conn, raw: &str, head_only: bool) -> Reply {
    let s = &mut c.s;
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = std::mem::take(&mut c.buf);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut r = Reply {
        status,
        headers,
        body: buf[end..].to_vec(),
    };
    let want: usize = if head_only || status == 304 {
        0
    } else {
        r.header("content-length").unwrap().parse().unwrap()
    };
    let tmo = std::time::Duration::from_secs(20);
    while r.body.len() < want {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = tokio::time::timeout(tmo, s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed mid-body");
        r.body.extend_from_slice(&chunk[..n]);
    }
    c.buf = r.body.split_off(want);
    r
}

/// The value of `f` once it equals `want`, or its last value after 5 s.
/// The server counts a sendfile answer after its last call, and that call's
/// bytes can reach the client first: counters are read once they settle.
async fn settled<T: PartialEq>(want: T, f: impl Fn() -> T) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let v = f();
        if v == want || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

#[tokio::test]
async fn files_go_out_zero_copy_with_range_head_and_keep_alive() {
    let srv = start().await;
    let mut s = connect(srv.addr).await;

    // Full GET, then a range and a suffix range on the same connection.
    let r = exchange(&mut s, &get("/boot/image.img", ""), false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*SIZE.to_string()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("last-modified").is_some() && r.header("date").is_some());
    assert!(r.body == srv.image, "full body differs");
    let etag = r.header("etag").map(str::to_owned);

    let r = exchange(
        &mut s,
        &get("/boot/image.img", "Range: bytes=100-199\r\n"),
        false,
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes 100-199/{SIZE}"))
    );
    assert_eq!(r.body, &srv.image[100..200]);

    let r = exchange(
        &mut s,
        &get("/boot/image.img", "Range: bytes=-500\r\n"),
        false,
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(&*format!("bytes {}-{}/{SIZE}", SIZE - 500, SIZE - 1))
    );
    assert_eq!(r.body, &srv.image[SIZE - 500..]);

    // HEAD: the length, no body (the next response parses cleanly after it).
    let r = exchange(
        &mut s,
        "HEAD /boot/image.img HTTP/1.1\r\nHost: t\r\n\r\n",
        true,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(&*SIZE.to_string()));
    assert!(r.body.is_empty());

    // Unsatisfiable range, missing file, `..`: ServeDir's and our answers.
    let r = exchange(
        &mut s,
        &get(
            "/boot/image.img",
            &format!("Range: bytes={}-\r\n", SIZE + 10),
        ),
        false,
    )
    .await;
    assert_eq!(r.status, 416);
    let r = exchange(&mut s, &get("/boot/nope.img", ""), false).await;
    assert_eq!(r.status, 404);
    let r = exchange(&mut s, &get("/boot/../rackboot.toml", ""), false).await;
    assert_eq!(r.status, 400);
    let r = exchange(&mut s, &get("/boot/%2e%2e/rackboot.toml", ""), false).await;
    assert_eq!(r.status, 400);

    // Conditional GET: 304, no body.
    if let Some(etag) = etag {
        let r = exchange(
            &mut s,
            &get("/boot/image.img", &format!("If-None-Match: {etag}\r\n")),
            false,
        )
        .await;
        assert_eq!(r.status, 304);
    }

    // Firmware and the other routes on the same connection.
    let r = exchange(&mut s, &get("/firmware/ipxe.efi", ""), false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"MZ-efi"[..]));
    let r = exchange(&mut s, &get("/healthz", ""), false).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok\n"[..]));

    // The bodies above went out with sendfile: full + 100 + 500 + firmware.
    let st = &srv.stats;
    assert_eq!(
        st.sendfile_bytes.load(Ordering::Relaxed),
        (SIZE + 100 + 500 + 6) as u64
    );
    assert_eq!(st.sendfile_responses.load(Ordering::Relaxed), 4);
    // Counted by route template as before.
    assert_eq!(st.responses("/boot/{*path}", "2xx"), 4);
    assert_eq!(st.responses("/boot/{*path}", "3xx"), 1);
    assert_eq!(st.responses("/boot/{*path}", "4xx"), 4);
    assert_eq!(st.responses("/firmware/{*path}", "2xx"), 1);
    assert_eq!(st.responses("/healthz", "2xx"), 1);
    assert_eq!(st.not_found.load(Ordering::Relaxed), 1);
    assert_eq!(st.bad_request.load(Ordering::Relaxed), 2);
}

/// Clients that read slowly through small receive buffers: the send buffer
/// fills again and again, `sendfile` comes back short each time and the loop
/// waits for writability without asking again (`Sent::Short`). Every byte
/// arrives, in order, on every connection, with the whole file's head first.
#[tokio::test]
async fn slow_readers_get_every_byte() {
    let srv = start().await;
    let before = srv.stats.sendfile_responses.load(Ordering::Relaxed);
    let mut all = Vec::new();
    for k in 0..4u64 {
        let addr = srv.addr;
        all.push(tokio::spawn(async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.set_recv_buffer_size(16 * 1024).unwrap();
            let mut s = sock.connect(addr).await.unwrap();
            s.write_all(get("/boot/image.img", "").as_bytes())
                .await
                .unwrap();
            let mut got = Vec::with_capacity(SIZE + 512);
            let mut chunk = vec![0u8; 8 * 1024];
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            let mut reads = 0u64;
            loop {
                let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
                    .await
                    .expect("download took over 60 s")
                    .unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
                reads += 1;
                // A pause now and then (differing per connection), so the
                // server meets a full buffer many times.
                if reads.is_multiple_of(16 + k) {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    if got.len() - (i + 4) >= SIZE {
                        break;
                    }
                }
            }
            got
        }));
    }
    for t in all {
        let got = t.await.unwrap();
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&got[..end]).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {SIZE}\r\n")),
            "{head}"
        );
        assert_eq!(got.len() - end, SIZE, "body length");
        assert!(got[end..] == srv.image[..], "body differs");
    }
    let counts = || {
        (
            srv.stats.sendfile_responses.load(Ordering::Relaxed) - before,
            srv.stats.sendfile_bytes.load(Ordering::Relaxed),
        )
    };
    let want = (4, 4 * SIZE as u64);
    assert_eq!(settled(want, counts).await, want);

    // A transfer that took more than one call was corked; the cork is gone
    // at its end. Small answers on the same connection come at once, not
    // after the 200 ms the kernel holds a corked partial segment.
    std::fs::write(srv._c.path().join(".lab/boot/small.cfg"), b"0123456789").unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let mut c = Conn {
        s: sock.connect(srv.addr).await.unwrap(),
        buf: Vec::new(),
    };
    let r = exchange(&mut c, &get("/boot/image.img", ""), false).await;
    assert!(r.status == 200 && r.body == srv.image);
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = exchange(&mut c, &get("/boot/small.cfg", ""), false).await;
        took.push(t.elapsed());
        assert_eq!((r.status, &r.body[..]), (200, &b"0123456789"[..]));
    }
    took.sort();
    assert!(
        took[2] < std::time::Duration::from_millis(100),
        "small answers after a corked transfer took {took:?}"
    );
}

#[tokio::test]
async fn connection_close_http10_and_pipelining() {
    let srv = start().await;
    // Two pipelined requests in one write, the second closing.
    let mut s = connect(srv.addr).await;
    let raw = get("/boot/image.img", "Range: bytes=0-9\r\n")
        + &get(
            "/boot/image.img",
            "Range: bytes=10-19\r\nConnection: close\r\n",
        );
    let r = exchange(&mut s, &raw, false).await;
    assert_eq!(r.body, &srv.image[..10]);
    let r = exchange(&mut s, "", false).await;
    assert_eq!(r.body, &srv.image[10..20]);
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = std::mem::take(&mut s.buf);
    s.s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    // HTTP/1.0 without keep-alive: the answer, then EOF.
    let mut s = connect(srv.addr).await;
    let r = exchange(&mut s, "GET /boot/vmlinuz HTTP/1.0\r\n\r\n", false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100_000);
    let mut rest = std::mem::take(&mut s.buf);
    s.s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn requests_with_a_body_go_to_hyper_on_the_same_connection() {
    let srv = start().await;
    let mut s = connect(srv.addr).await;
    let r = exchange(&mut s, &get("/boot/vmlinuz", "Range: bytes=0-0\r\n"), false).await;
    assert_eq!(r.status, 206);
    // The install-done POST with a body: hyper answers (no run pending: 403).
    let r = exchange(
        &mut s,
        "POST /done/52-54-00-77-00-50?token=x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok",
        false,
    )
    .await;
    assert_eq!(r.status, 403);
    // The connection stays with hyper: files still right, through its body path.
    let before = srv.stats.sendfile_bytes.load(Ordering::Relaxed);
    let r = exchange(
        &mut s,
        &get("/boot/image.img", "Range: bytes=7-9\r\n"),
        false,
    )
    .await;
    assert_eq!((r.status, &r.body[..]), (206, &srv.image[7..10]));
    assert_eq!(srv.stats.sendfile_bytes.load(Ordering::Relaxed), before);
    assert_eq!(srv.stats.responses("/done/{mac}", "4xx"), 1);
    // A malformed request line: hyper's 400.
    let mut s = connect(srv.addr).await;
    let r = exchange(&mut s, "GARBAGE\r\n\r\n", false).await;
    assert_eq!(r.status, 400);
}

/// A whole-file GET is answered without ServeDir (one open, one fstat):
/// its headers are exactly ServeDir's answer to the same request as a HEAD
/// (Content-Type by extension, Accept-Ranges, Last-Modified, ETag,
/// Content-Length), for several kinds of file; a conditional GET with that
/// ETag still gets ServeDir's 304, a directory still ServeDir's answer.
#[tokio::test]
async fn whole_file_answers_carry_servedirs_headers() {
    let srv = start().await;
    let boot = srv._c.path().join(".lab/boot");
    std::fs::create_dir_all(boot.join("sub")).unwrap();
    for (f, body) in [
        ("grub.cfg", &b"set timeout=1\n"[..]),
        ("shim.efi", b"MZ"),
        ("noext", b"x"),
        ("sub/boot.ipxe", b"#!ipxe\n"),
        ("empty.img", b""),
    ] {
        std::fs::write(boot.join(f), body).unwrap();
    }
    let mut s = connect(srv.addr).await;
    let before = srv.stats.sendfile_responses.load(Ordering::Relaxed);
    for path in [
        "/boot/image.img",
        "/boot/grub.cfg",
        "/boot/shim.efi",
        "/boot/noext",
        "/boot/sub/boot.ipxe",
        "/boot/empty.img",
    ] {
        let g = exchange(&mut s, &get(path, ""), false).await;
        let h = exchange(
            &mut s,
            &format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"),
            true,
        )
        .await;
        assert_eq!((g.status, h.status), (200, 200), "{path}");
        let norm = |r: &Reply| {
            let mut v: Vec<(String, String)> = r
                .headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("date"))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(norm(&g), norm(&h), "{path}: GET vs ServeDir's HEAD");
        assert!(g.header("etag").is_some() && g.header("content-type").is_some());
    }
    assert_eq!(
        srv.stats.sendfile_responses.load(Ordering::Relaxed) - before,
        6,
        "every whole file went out with sendfile"
    );
    let g = exchange(&mut s, &get("/boot/grub.cfg", ""), false).await;
    assert_eq!(g.body, b"set timeout=1\n");
    let etag = g.header("etag").unwrap().to_string();
    let r = exchange(
        &mut s,
        &get("/boot/grub.cfg", &format!("If-None-Match: {etag}\r\n")),
        false,
    )
    .await;
    assert_eq!(
        r.status, 304,
        "ServeDir honours the ETag given by the fast path"
    );
    let r = exchange(&mut s, &get("/boot/sub", ""), false).await;
    assert_ne!(r.status, 200, "a directory is not a file: {}", r.status);
}

/// The whole-file path that skips the router counts and observes exactly as
/// the route does: a known machine's kernel fetch is a kernel observation
/// naming it, requests and the route's 2xx go up; what it does not take (a
/// missing file, a percent-escaped path) is the router's, counted and
/// observed by it.
#[tokio::test]
async fn whole_file_gets_count_and_observe_like_the_route() {
    use rackboot::http::boot::BOOT_FILES;
    use rackboot::observe::{HttpServed, Observation};
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    // node50 at the loopback address: its fetches come from the test.
    let srv = start_with(
        |c| {
            c.write(
                "systems.toml",
                &c.read("systems.toml")
                    .replace("\"10.77.0.50\"", "\"127.0.0.1\""),
            )
        },
        ObservationSink::new(tx),
    )
    .await;
    let ok = || srv.stats.responses(BOOT_FILES, "2xx");
    let reqs = || srv.stats.requests.load(Ordering::Relaxed);
    let zero_copy = || srv.stats.sendfile_responses.load(Ordering::Relaxed);
    let (ok0, reqs0, zc0) = (ok(), reqs(), zero_copy());
    let mut s = connect(srv.addr).await;
    let r = exchange(&mut s, &get("/boot/vmlinuz", ""), false).await;
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    let counts = || (ok() - ok0, reqs() - reqs0, zero_copy() - zc0);
    assert_eq!(settled((1, 1, 1), counts).await, (1, 1, 1));
    let o = rx.try_recv().expect("the kernel fetch is observed");
    match o {
        Observation::Http { mac, what, .. } => {
            assert_eq!(
                mac.map(|m| m.to_string()).as_deref(),
                Some("52:54:00:77:00:50")
            );
            assert_eq!(what, HttpServed::Kernel);
        }
        o => panic!("not an HTTP observation: {o:?}"),
    }
    // The same file through the router (a percent-escape it decodes):
    // counted and observed the same way.
    let r = exchange(&mut s, &get("/boot/vm%6cinuz", ""), false).await;
    assert_eq!((r.status, r.body.len()), (200, 100_000));
    assert_eq!(settled((2, 2, 2), counts).await, (2, 2, 2));
    assert!(matches!(
        rx.try_recv(),
        Ok(Observation::Http {
            what: HttpServed::Kernel,
            ..
        })
    ));
    // A missing file: the router's 404, counted, not observed.
    let nf0 = srv.stats.not_found.load(Ordering::Relaxed);
    let r = exchange(&mut s, &get("/boot/nothing-here", ""), false).await;
    assert_eq!(r.status, 404);
    assert_eq!(srv.stats.not_found.load(Ordering::Relaxed) - nf0, 1);
    assert_eq!(srv.stats.responses(BOOT_FILES, "4xx"), 1);
    assert_eq!((ok() - ok0, reqs() - reqs0), (2, 3));
    assert!(rx.try_recv().is_err(), "a 404 is not observed");
}
