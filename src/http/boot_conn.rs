//! The boot listener's connections: a small HTTP/1.1 loop in front of the
//! boot router so that files go out with `sendfile(2)` (zero-copy, as nginx
//! does) instead of through hyper's body path (a 64 KiB `read` on the
//! blocking pool, a copy into hyper's buffer and a `write` per chunk).
//!
//! The common case, a GET of a whole file under `/boot/` (no query, Range
//! or conditional header, a plain path), is offered first to
//! `http::boot::BootFiles::whole_file`, which opens, counts and observes it
//! as the `/boot/` route does, without building a request for the router;
//! what it does not take (a missing file, an escaped path) goes on to the
//! router. Every other request goes through the boot router
//! (`http::boot::router`): routes, metrics by route template, path rules,
//! 404/416/304, Range, HEAD, ETag and Last-Modified are its and ServeDir's.
//! This loop only frames requests and responses. A GET of a static file
//! under `/boot/` or `/firmware/` answers with a [`SendFile`] extension
//! (ServeDir answered the request as a HEAD; the file is opened and checked
//! against the answer's length); the loop writes the response head and
//! sends the range with `sendfile`, the head sent with `MSG_MORE` so that it
//! leaves with the file's first bytes (`send_head_and_file`); a transfer
//! that outlasts one call is corked to its end (`send_file`).
//!
//! Connections are served by worker threads, one per CPU, each with its own
//! single-threaded runtime (`serve`).
//!
//! The loop takes bodyless GET/HEAD requests only; a request with a body (the
//! install-done POST), `Expect`, `Upgrade`, a malformed or oversized head
//! hands the connection, with the bytes read so far, to hyper for the rest of
//! its life: hyper's answers stay hyper's.

use crate::http::boot::{BootFiles, HttpStats, NOT_WHOLE};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use axum::Router;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Request heads larger than this go to hyper (which answers 431).
const MAX_HEAD: usize = 16 * 1024;
/// Headers parsed here; a request with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// How long a connection may take to send a request head (also the
/// keep-alive idle time).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses without a `SendFile` and with a body up to this size are
/// written in one piece; larger ones are streamed.
const COLLECT_LIMIT: usize = 256 * 1024;

/// Request extension: this connection can send files zero-copy (the router
/// attaches a [`SendFile`] to a static file's GET answer only then).
#[derive(Clone, Copy, Debug)]
pub struct ZeroCopy;

/// Response extension: send `len` bytes of `file` from `offset` as the
/// response body (the response itself is ServeDir's HEAD answer).
#[derive(Clone, Debug)]
pub struct SendFile {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

/// Serve the boot router on `listener` until `shutdown`; whole-file GETs
/// under `/boot/` go to `files` first ([`BootFiles::whole_file`]).
///
/// Connections are served by [`workers`] threads, each with its own
/// single-threaded runtime accepting from the same listening socket, as
/// nginx's worker processes do: a connection stays on the thread that
/// accepted it, its I/O events are polled by that thread, and it never
/// migrates between CPUs mid-transfer. The boot routes reach the engine
/// through channels, so they run on any runtime. Returns when every worker
/// has closed its connections (the daemon's `tracker` waits for this).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    files: BootFiles,
    shutdown: CancellationToken,
) {
    let listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "boot http: cannot hand the listener to its workers");
            return;
        }
    };
    let mut done = Vec::new();
    let n = workers();
    let loads: Arc<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    for i in 0..n {
        let l = match listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "boot http: cannot share the listener");
                break;
            }
        };
        let (router, files, sd) = (router.clone(), files.clone(), shutdown.clone());
        let load = Load {
            all: loads.clone(),
            me: i,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("boot-http-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "boot http: cannot start a worker");
                        load.all[load.me].store(GONE, Ordering::Relaxed);
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "boot http: worker cannot listen");
                            load.all[load.me].store(GONE, Ordering::Relaxed);
                            return;
                        }
                    };
                    let conns = TaskTracker::new();
                    accept(listener, router, files, load, &conns, sd).await;
                    conns.close();
                    conns.wait().await;
                });
                drop(tx);
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => {
                tracing::error!(error = %e, "boot http: cannot start a worker thread");
                loads[i].store(GONE, Ordering::Relaxed);
            }
        }
    }
    drop(listener);
    for rx in done {
        let _ = rx.await;
    }
}

/// Boot HTTP worker threads: one per CPU (at most 8).
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

/// The open connections of every worker, and which worker this is.
struct Load {
    all: Arc<[AtomicUsize]>,
    me: usize,
}

impl Load {
    /// Whether this worker may take a connection: it holds no more than the
    /// least loaded worker (workers that did not start hold [`GONE`]).
    /// Every worker is woken for a new connection and one accepts it, so a
    /// burst of connections (a rack powering on, a load generator) spreads
    /// evenly instead of landing on whichever thread woke first, as nginx's
    /// `accept_disabled` keeps a loaded worker from accepting.
    fn may_accept(&self) -> bool {
        let mine = self.all[self.me].load(Ordering::Relaxed);
        let least = self
            .all
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        mine <= least
    }
}

/// The load of a worker that did not start: never the least.
const GONE: usize = usize::MAX / 2;

/// Counts one open connection of a worker while it lives.
struct Open(Arc<[AtomicUsize]>, usize);

impl Drop for Open {
    fn drop(&mut self) {
        self.0[self.1].fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a worker holding more than its share waits before it looks
/// again (the others take the connections meanwhile).
const BUSY_RECHECK: Duration = Duration::from_millis(2);

/// One worker's accept loop, until `shutdown`.
async fn accept(
    listener: TcpListener,
    router: Router,
    files: BootFiles,
    load: Load,
    conns: &TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        if !load.may_accept() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(BUSY_RECHECK) => continue,
            }
        }
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                // Another worker took the connection.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // EMFILE and the like: do not spin.
                    tracing::warn!(error = %e, "boot http: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Small answers and a file's last segment go out at once; a file's
        // head leaves with the file's first bytes (`send_head_and_file`).
        let _ = stream.set_nodelay(true);
        load.all[load.me].fetch_add(1, Ordering::Relaxed);
        let open = Open(load.all.clone(), load.me);
        let (router, files, sd) = (router.clone(), files.clone(), shutdown.clone());
        conns.spawn(async move {
            let _open = open;
            if let Err(e) = connection(stream, peer, router, files, sd).await {
                tracing::debug!(%peer, error = %e, "boot http connection ended");
            }
        });
    }
}

/// One request head this loop serves itself.
struct Head {
    req: Request<Body>,
    len: usize,
    keep_alive: bool,
}

/// A `GET /boot/...` of a whole file (no query, Range or conditional
/// header): offered to [`BootFiles::whole_file`] before the router.
struct FileGet {
    rest: String,
    len: usize,
    version: Version,
    keep_alive: bool,
}

enum Parsed {
    File(Box<FileGet>),
    Ours(Box<Head>),
    /// Not complete yet.
    Partial,
    /// For hyper (body, upgrade, malformed, too large).
    Hyper,
}

/// Parse a request head; `files`: a whole-file GET under `/boot/` may come
/// back as [`Parsed::File`] (false: always as a request for the router).
fn parse(buf: &[u8], peer: SocketAddr, files: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Hyper,
    };
    let method = match r.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::Hyper,
    };
    let version = match r.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::Hyper,
    };
    let mut names = Vec::with_capacity(r.headers.len());
    let (mut close, mut keep, mut whole) = (false, false, true);
    for h in r.headers.iter() {
        let name = match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => n,
            Err(_) => return Parsed::Hyper,
        };
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Parsed::Hyper;
        }
        if name == header::CONTENT_LENGTH && h.value != b"0" {
            return Parsed::Hyper;
        }
        if name == header::CONNECTION {
            for t in h.value.split(|c| *c == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        whole &= !NOT_WHOLE.contains(&name);
        names.push(name);
    }
    let keep_alive = !close && (version == Version::HTTP_11 || keep);
    let target = r.path.unwrap_or("/");
    if files && whole && method == Method::GET && !target.contains('?') {
        if let Some(rest) = target.strip_prefix("/boot/") {
            return Parsed::File(Box::new(FileGet {
                rest: rest.to_string(),
                len,
                version,
                keep_alive,
            }));
        }
    }
    let mut b = Request::builder()
        .method(method)
        .uri(target)
        .version(version);
    for (name, h) in names.into_iter().zip(r.headers.iter()) {
        let value = match HeaderValue::from_bytes(h.value) {
            Ok(v) => v,
            Err(_) => return Parsed::Hyper,
        };
        b = b.header(name, value);
    }
    let req = match b
        .extension(ConnectInfo(peer))
        .extension(ZeroCopy)
        .body(Body::empty())
    {
        Ok(r) => r,
        // An unparsable request target: hyper answers it.
        Err(_) => return Parsed::Hyper,
    };
    Parsed::Ours(Box::new(Head {
        req,
        len,
        keep_alive,
    }))
}

/// Who answers a complete request head.
enum Next {
    /// `BootFiles::whole_file` took it: the file goes out as it is.
    File(Box<FileGet>, crate::http::boot::WholeFile),
    /// The boot router.
    Router(Box<Head>),
    /// hyper, for the rest of the connection.
    Hyper,
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    files: BootFiles,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let next = loop {
            match parse(&buf, peer, true) {
                Parsed::File(f) => {
                    if let Some(file) = files.whole_file(peer, &f.rest) {
                        break Next::File(f, file);
                    }
                    // The router's answer (404, a directory, an odd path).
                    match parse(&buf, peer, false) {
                        Parsed::Ours(h) => break Next::Router(h),
                        _ => break Next::Hyper,
                    }
                }
                Parsed::Ours(h) => break Next::Router(h),
                Parsed::Hyper => break Next::Hyper,
                Parsed::Partial => {}
            }
            let mut chunk = [0u8; 4096];
            let read = async {
                tokio::time::timeout(HEAD_TIMEOUT, stream.read(&mut chunk))
                    .await
                    .unwrap_or(Err(io::ErrorKind::TimedOut.into()))
            };
            let n = if buf.is_empty() {
                // Idle between requests: shutdown closes the connection.
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    n = read => n?,
                }
            } else {
                read.await?
            };
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let keep_alive = match next {
            Next::File(f, file) => {
                buf.drain(..f.len);
                let mut h = status_line(f.version, StatusCode::OK);
                for (k, v) in file.headers() {
                    push_header(&mut h, k.as_str(), v.as_bytes());
                }
                end_head(&mut h, f.version, f.keep_alive);
                let sf = SendFile {
                    len: file.len,
                    file: Arc::new(file.file),
                    offset: 0,
                };
                send_head_and_file(&mut stream, &h, &sf, files.stats()).await?;
                f.keep_alive
            }
            Next::Hyper => return hand_to_hyper(stream, buf, peer, router, shutdown).await,
            Next::Router(head) => {
                buf.drain(..head.len);
                let method = head.req.method().clone();
                let version = head.req.version();
                let res = match router.clone().oneshot(head.req).await {
                    Ok(r) => r,
                    Err(e) => match e {},
                };
                let keep_alive = head.keep_alive
                    && !res
                        .headers()
                        .get(header::CONNECTION)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                write_response(
                    &mut stream,
                    res,
                    &method,
                    version,
                    keep_alive,
                    files.stats(),
                )
                .await?;
                keep_alive
            }
        };
        if !keep_alive {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

fn status_line(version: Version, s: StatusCode) -> Vec<u8> {
    let mut h = Vec::with_capacity(320);
    h.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    h.extend_from_slice(s.as_str().as_bytes());
    h.push(b' ');
    h.extend_from_slice(s.canonical_reason().unwrap_or("").as_bytes());
    h.extend_from_slice(b"\r\n");
    h
}

fn push_header(h: &mut Vec<u8>, name: &str, value: &[u8]) {
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(b": ");
    h.extend_from_slice(value);
    h.extend_from_slice(b"\r\n");
}

/// The Date (unless `date` is false: the response has its own), the
/// Connection header the version and `keep_alive` call for, the blank line.
fn end_head_with(h: &mut Vec<u8>, version: Version, keep_alive: bool, date: bool) {
    if date {
        DATE.with(|d| {
            let mut d = d.borrow_mut();
            let now = std::time::SystemTime::now();
            let secs = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if d.0 != secs || d.1.is_empty() {
                *d = (secs, httpdate::fmt_http_date(now));
            }
            push_header(h, "date", d.1.as_bytes());
        });
    }
    match (keep_alive, version) {
        (false, _) => h.extend_from_slice(b"connection: close\r\n"),
        (true, Version::HTTP_10) => h.extend_from_slice(b"connection: keep-alive\r\n"),
        _ => {}
    }
    h.extend_from_slice(b"\r\n");
}

fn end_head(h: &mut Vec<u8>, version: Version, keep_alive: bool) {
    end_head_with(h, version, keep_alive, true)
}

thread_local! {
    /// The Date header's text for the current second (as nginx caches it).
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn response_head(
    res: &Response<Body>,
    version: Version,
    keep_alive: bool,
    content_length: Option<u64>,
) -> Vec<u8> {
    let mut h = status_line(version, res.status());
    for (k, val) in res.headers() {
        if k == header::CONNECTION {
            continue;
        }
        push_header(&mut h, k.as_str(), val.as_bytes());
    }
    if let Some(n) = content_length {
        push_header(&mut h, "content-length", n.to_string().as_bytes());
    }
    end_head_with(
        &mut h,
        version,
        keep_alive,
        !res.headers().contains_key(header::DATE),
    );
    h
}

async fn write_response(
    stream: &mut TcpStream,
    res: Response<Body>,
    method: &Method,
    version: Version,
    keep_alive: bool,
    stats: &HttpStats,
) -> io::Result<()> {
    let status = res.status();
    let bodyless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let declared: Option<u64> = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if bodyless {
        stream
            .write_all(&response_head(&res, version, keep_alive, None))
            .await?;
        return Ok(());
    }
    if let Some(sf) = res.extensions().get::<SendFile>().cloned() {
        if declared == Some(sf.len) {
            // The body is ServeDir's HEAD answer's (empty): the file replaces it.
            let head = response_head(&res, version, keep_alive, None);
            drop(res);
            return send_head_and_file(stream, &head, &sf, stats).await;
        }
    }
    match declared {
        Some(n) if n as usize > COLLECT_LIMIT => {
            let head = response_head(&res, version, keep_alive, None);
            stream.write_all(&head).await?;
            let mut body = res.into_body().into_data_stream();
            let mut sent = 0u64;
            use futures_util::StreamExt;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(io::Error::other)?;
                stream.write_all(&chunk).await?;
                sent += chunk.len() as u64;
            }
            if sent != n {
                return Err(io::Error::other("body shorter than its content-length"));
            }
            Ok(())
        }
        _ => {
            let (mut parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(io::Error::other)?;
            parts.headers.remove(header::CONTENT_LENGTH);
            let res = Response::from_parts(parts, Body::empty());
            let mut out = response_head(&res, version, keep_alive, Some(bytes.len() as u64));
            out.extend_from_slice(&bytes);
            stream.write_all(&out).await
        }
    }
}

/// The response head, then the file with `sendfile`. The head is sent with
/// `MSG_MORE`, so it leaves in one segment with the file's first bytes;
/// `sendfile` itself marks every chunk but the range's last one "more", so
/// only full segments leave until the end, and the last one at once. This is
/// what nginx's `tcp_nopush` gets from setting and clearing `TCP_CORK`
/// around each response, without those two system calls per response.
async fn send_head_and_file(
    stream: &mut TcpStream,
    head: &[u8],
    sf: &SendFile,
    stats: &HttpStats,
) -> io::Result<()> {
    if sf.len == 0 {
        // Nothing follows the head to carry it out (still a file answer).
        stream.write_all(head).await?;
        return send_file(stream, sf, stats).await;
    }
    let mut at = 0;
    while at < head.len() {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || {
            // SAFETY: the descriptor is open and the slice valid for the call.
            counted(unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    head[at..].as_ptr().cast(),
                    head.len() - at,
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            })
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    send_file(stream, sf, stats).await
}

/// A byte-count system call's result: the count, or the error in `errno`.
fn counted(r: isize) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// What one `sendfile(2)` call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    /// All it was asked for: the socket may take more.
    All(usize),
    /// Less: the socket's send buffer is full, so the next call would only
    /// say EAGAIN. Wait for writability instead of making it.
    Short(usize),
    /// Nothing: the file ended before the range did.
    Eof,
}

impl Sent {
    fn of(r: usize, asked: usize) -> Sent {
        match r {
            0 => Sent::Eof,
            n if n < asked => Sent::Short(n),
            n => Sent::All(n),
        }
    }
}

/// `sendfile(2)` the range on the non-blocking socket, waiting for
/// writability when the send buffer is full.
///
/// A range that one call does not take (the send buffer filled) is corked
/// (`TCP_CORK`) from then until its end: the segments that go out as the
/// client's ACKs free buffer space are then full ones, as under nginx's
/// `tcp_nopush`, where without the cork the ACK-driven sends emit the
/// queue's partial tail. A file that fits in one call (the common boot file
/// on a warm connection) pays no `setsockopt` at all.
async fn send_file(stream: &TcpStream, sf: &SendFile, stats: &HttpStats) -> io::Result<()> {
    let mut corked = false;
    let r = send_range(stream, sf, stats, &mut corked).await;
    if corked {
        let _ = socket2::SockRef::from(stream).set_tcp_cork(false);
    }
    r
}

async fn send_range(
    stream: &TcpStream,
    sf: &SendFile,
    stats: &HttpStats,
    corked: &mut bool,
) -> io::Result<()> {
    let mut offset = sf.offset as libc::off_t;
    let mut left = sf.len;
    while left > 0 {
        stream.writable().await?;
        let count = left.min(1 << 30) as usize;
        let mut short = 0;
        let r = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the call; `offset` is ours.
            let r = counted(unsafe {
                libc::sendfile(stream.as_raw_fd(), sf.file.as_raw_fd(), &mut offset, count)
            })?;
            match Sent::of(r, count) {
                Sent::Short(n) => {
                    // Clears the socket's write readiness as EAGAIN would
                    // (unless an event came in since: tokio keeps that one).
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                s => Ok(s),
            }
        });
        let n = match r {
            Ok(Sent::All(n) | Sent::Short(n)) => n,
            // The file shrank under us: the response cannot be completed.
            Ok(Sent::Eof) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => short,
            Err(e) => return Err(e),
        };
        if n < count && !*corked {
            *corked = socket2::SockRef::from(stream).set_tcp_cork(true).is_ok();
        }
        left -= n as u64;
        stats.sendfile_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    stats.sendfile_responses.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The rest of the connection goes to hyper, starting with the bytes read.
async fn hand_to_hyper(
    stream: TcpStream,
    read: Vec<u8>,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let io = hyper_util::rt::TokioIo::new(Rewind {
        read,
        pos: 0,
        inner: stream,
    });
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req.map(Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r.map_err(io::Error::other),
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await.map_err(io::Error::other)
        }
    }
}

/// A stream that first replays bytes already read from it.
struct Rewind {
    read: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.read.len() {
            let n = (self.read.len() - self.pos).min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.read[pos..pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::{Load, Sent};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn loads(v: &[usize]) -> Arc<[AtomicUsize]> {
        v.iter().map(|n| AtomicUsize::new(*n)).collect()
    }

    #[test]
    fn a_worker_accepts_while_it_holds_no_more_than_the_least() {
        for (v, me, may) in [
            (&[0][..], 0, true),
            (&[7][..], 0, true),
            (&[0, 0], 0, true),
            (&[1, 0], 0, false),
            (&[1, 0], 1, true),
            (&[2, 2], 1, true),
            (&[16, 15], 0, false),
            (&[3, 3, 1], 1, false),
            (&[3, 2, 1], 2, true),
            // A worker that did not start is never the least.
            (&[5, super::GONE], 0, true),
        ] {
            let l = Load { all: loads(v), me };
            assert_eq!(l.may_accept(), may, "{v:?} worker {me}");
        }
    }

    /// A burst of connections accepted in turn by whichever worker may:
    /// they end up spread within one of each other.
    #[test]
    fn a_burst_spreads_evenly() {
        let all = loads(&[0, 0]);
        // Worker 0 wakes first every time (the worst case for the old
        // first-come accept), worker 1 only when 0 may not take it.
        for _ in 0..32 {
            let w0 = Load {
                all: all.clone(),
                me: 0,
            };
            let me = if w0.may_accept() { 0 } else { 1 };
            all[me].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (a, b) = (
            all[0].load(std::sync::atomic::Ordering::Relaxed),
            all[1].load(std::sync::atomic::Ordering::Relaxed),
        );
        assert!(a.abs_diff(b) <= 1, "{a} / {b}");
    }

    #[test]
    fn a_short_sendfile_means_a_full_buffer() {
        for (r, asked, sent) in [
            (0, 1, Sent::Eof),
            (0, 1 << 30, Sent::Eof),
            (1, 1, Sent::All(1)),
            (4096, 4096, Sent::All(4096)),
            (4095, 4096, Sent::Short(4095)),
            (1, 1 << 30, Sent::Short(1)),
            (1 << 30, 1 << 30, Sent::All(1 << 30)),
        ] {
            assert_eq!(Sent::of(r, asked), sent, "{r} of {asked}");
        }
    }
}
