//! Read-only TFTP server for PXE / UEFI / iPXE boot.
//!
//! Why our own and not async-tftp 0.4 (see `design/crates.md`): async-tftp
//! opens requests one at a time (its handler sits behind a `Mutex`), runs its
//! own smol executor and async-io reactor inside tokio, and logs through `log`.
//! A boot storm of 64 machines needs concurrent opens of generated content,
//! one runtime, `tracing` and our own counters. So the protocol is a small
//! sans-IO state machine ([`session`], ~300 lines, unit-tested packet by
//! packet without sockets or clocks) over a strict, fuzzed codec ([`packet`]),
//! and this module is only the driver: the listen socket is a tokio task
//! that parses and dispatches; each transfer runs on a blocking thread of
//! the runtime's pool with one ephemeral UDP socket (RFC 1350 TID) and
//! positional file reads. A lockstep transfer (no windowsize, what PXE ROMs
//! and tftp-hpa do) is one round trip per block, so its speed is the
//! server's turnaround: a thread blocked in `recv` answers with `recv` +
//! `send` and nothing else, where a task paid a reactor wake-up, a second
//! `recv` to learn the socket is empty, a timer reset and a hop to the
//! blocking pool for every read-ahead (measured in ARCHITECTURE.md).
//! Transfers are bounded by `max_transfers`, so are the threads.
//!
//! Scope: RRQ only (WRQ refused with ERROR 2), octet mode only (netascii is
//! refused, not converted), options blksize / tsize / timeout / windowsize.

pub mod bench;
pub mod boot;
pub mod packet;
pub mod session;

use crate::model::Mac;
use crate::observe::{HttpServed, Observation, ObservationSink};
use packet::{data_header, error_packet, ErrorCode, Mode, Packet, Request, OP_RRQ, OP_WRQ};
use session::{Action, FailReason, Session, SessionConfig};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Something that turns a requested path into file content.
pub trait FileSource: Send + Sync + 'static {
    /// Resolve and open a path requested by `peer`. Errors map to TFTP ERROR packets.
    /// Called on a blocking thread, so it may touch the disk or render content.
    fn open(&self, path: &str, peer: SocketAddr) -> Result<TftpFile, TftpError>;

    /// After a complete transfer of `path` to `peer`: the machine it was for
    /// and what it was to its boot (a boot script, its kernel or initrd), for
    /// the run engine. Default: nothing (a plain file server).
    fn served(&self, _path: &str, _peer: SocketAddr) -> Option<(Mac, HttpServed)> {
        None
    }
}

/// Content to serve.
pub enum TftpFile {
    /// A regular file of `len` bytes, read with positional reads.
    Disk { file: File, len: u64 },
    /// Generated or cached content.
    Memory(Arc<[u8]>),
}

impl TftpFile {
    pub fn len(&self) -> u64 {
        match self {
            TftpFile::Disk { len, .. } => *len,
            TftpFile::Memory(b) => b.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a [`FileSource`] did not produce a file.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// ERROR 1 "File not found".
    #[error("file not found")]
    NotFound,
    /// ERROR 1 "File not found" for a path boot loaders are known to try
    /// and do without (shim's revocation lists, GRUB's module lists):
    /// answered without touching the disk, counted apart, logged at debug.
    #[error("file not found (known probe)")]
    Probe,
    /// ERROR 2 "Access violation"; the reason is logged, not sent.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// ERROR 0; the reason is logged, not sent.
    #[error("{0}")]
    Other(String),
}

impl TftpError {
    pub fn code(&self) -> ErrorCode {
        match self {
            TftpError::NotFound | TftpError::Probe => ErrorCode::FILE_NOT_FOUND,
            TftpError::AccessDenied(_) => ErrorCode::ACCESS_VIOLATION,
            TftpError::Other(_) => ErrorCode::NOT_DEFINED,
        }
    }

    /// The message put on the wire (no server internals).
    pub fn wire_message(&self) -> &'static str {
        match self {
            TftpError::NotFound | TftpError::Probe => "File not found",
            TftpError::AccessDenied(_) => "Access violation",
            TftpError::Other(_) => "Cannot open file",
        }
    }
}

impl From<io::Error> for TftpError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => TftpError::NotFound,
            io::ErrorKind::PermissionDenied => TftpError::AccessDenied("permission denied".into()),
            _ => TftpError::Other(e.to_string()),
        }
    }
}

/// Serves files from several directory roots, tried in order.
///
/// Path rules: backslashes are read as `/` (Windows boot loaders ask for
/// `\Boot\BCD`), one leading `/` is stripped (so `/pxelinux.0` is relative to
/// the root), then NUL, empty paths, `..` components and paths that are still
/// absolute are refused. The candidate is canonicalized and must stay inside
/// the canonical root, which also refuses symlinks pointing out of it; only
/// regular files are served. A file missing from one root is looked up in the
/// next; a refusal in any root is final.
///
/// Not covered: someone with write access to a root swapping a component for
/// a symlink between the check and the open.
#[derive(Clone, Debug)]
pub struct RootsSource {
    roots: Vec<PathBuf>,
}

impl RootsSource {
    /// Canonicalizes each root; fails if one does not exist or none is given.
    pub fn new<I, P>(roots: I) -> io::Result<RootsSource>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let roots = roots
            .into_iter()
            .map(|r| std::fs::canonicalize(r.as_ref()))
            .collect::<io::Result<Vec<_>>>()?;
        if roots.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TFTP needs at least one root directory",
            ));
        }
        Ok(RootsSource { roots })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The root-independent checks: the requested path as a safe relative path.
    pub fn sanitize(path: &str) -> Result<PathBuf, TftpError> {
        if path.contains('\0') {
            return Err(TftpError::AccessDenied("NUL in path".into()));
        }
        let p = path.replace('\\', "/");
        let p = p.strip_prefix('/').unwrap_or(&p);
        if p.is_empty() {
            return Err(TftpError::AccessDenied("empty path".into()));
        }
        let rel = Path::new(p);
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(TftpError::AccessDenied("'..' in path".into()));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(TftpError::AccessDenied("absolute path".into()));
                }
            }
        }
        Ok(rel.to_path_buf())
    }

    /// The canonical path of a regular file inside one of the roots.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, TftpError> {
        let rel = Self::sanitize(path)?;
        for root in &self.roots {
            let canon = match std::fs::canonicalize(root.join(&rel)) {
                Ok(c) => c,
                Err(e) => match TftpError::from(e) {
                    TftpError::NotFound => continue,
                    other => return Err(other),
                },
            };
            if !canon.starts_with(root) {
                return Err(TftpError::AccessDenied(format!(
                    "resolves to {} outside root {}",
                    canon.display(),
                    root.display()
                )));
            }
            let md = std::fs::metadata(&canon)?;
            if md.is_dir() {
                return Err(TftpError::AccessDenied("is a directory".into()));
            }
            if !md.is_file() {
                return Err(TftpError::AccessDenied("not a regular file".into()));
            }
            return Ok(canon);
        }
        Err(TftpError::NotFound)
    }
}

impl FileSource for RootsSource {
    fn open(&self, path: &str, _peer: SocketAddr) -> Result<TftpFile, TftpError> {
        let canon = self.resolve(path)?;
        let file = File::open(canon)?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(TftpError::AccessDenied("not a regular file".into()));
        }
        Ok(TftpFile::Disk {
            file,
            len: md.len(),
        })
    }
}

/// Server limits.
#[derive(Clone, Debug)]
pub struct TftpConfig {
    /// Concurrent transfers; beyond it a request gets ERROR 0 "server busy".
    pub max_transfers: usize,
    /// Largest blksize agreed to (RFC 2348 allows up to 65464).
    pub max_blksize: u16,
    /// Largest windowsize agreed to (1..=64).
    pub max_window: u16,
    /// Retransmission timeout unless the client negotiates `timeout`.
    pub timeout: Duration,
    /// Retransmissions of one window before the transfer fails.
    pub retries: u32,
}

impl Default for TftpConfig {
    fn default() -> Self {
        let s = SessionConfig::default();
        TftpConfig {
            max_transfers: 64,
            max_blksize: s.max_blksize,
            max_window: s.max_window,
            timeout: s.timeout,
            retries: s.retries,
        }
    }
}

impl TftpConfig {
    fn session(&self) -> SessionConfig {
        SessionConfig {
            max_blksize: self.max_blksize,
            max_window: self.max_window,
            timeout: self.timeout,
            retries: self.retries,
        }
    }
}

/// Counters, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct TftpStats {
    /// Well-formed RRQs and WRQs on the listen socket.
    pub requests: AtomicU64,
    pub transfers_ok: AtomicU64,
    /// Transfers that started (file opened) and did not complete, except
    /// client aborts during negotiation (counted in `probes`).
    pub transfers_failed: AtomicU64,
    /// Access violations from the [`FileSource`] (traversal, symlink escape, directory...).
    pub refused_path: AtomicU64,
    pub refused_write: AtomicU64,
    /// netascii / mail requests.
    pub refused_mode: AtomicU64,
    pub not_found: AtomicU64,
    /// Known loader probes answered "not found" without a disk lookup
    /// ([`TftpError::Probe`]).
    pub not_found_probe: AtomicU64,
    /// Datagrams on the listen socket that are not a valid RRQ/WRQ.
    pub malformed: AtomicU64,
    pub busy: AtomicU64,
    /// Client ERROR right after the OACK, before any data (tsize probes).
    pub probes: AtomicU64,
    /// DATA payload bytes sent, retransmissions included.
    pub bytes_sent: AtomicU64,
    /// Transfers running now.
    pub active: AtomicU64,
}

/// A plain copy of [`TftpStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TftpStatsSnapshot {
    pub requests: u64,
    pub transfers_ok: u64,
    pub transfers_failed: u64,
    pub refused_path: u64,
    pub refused_write: u64,
    pub refused_mode: u64,
    pub not_found: u64,
    pub not_found_probe: u64,
    pub malformed: u64,
    pub busy: u64,
    pub probes: u64,
    pub bytes_sent: u64,
    pub active: u64,
}

impl TftpStats {
    pub fn snapshot(&self) -> TftpStatsSnapshot {
        TftpStatsSnapshot {
            requests: self.requests.load(Relaxed),
            transfers_ok: self.transfers_ok.load(Relaxed),
            transfers_failed: self.transfers_failed.load(Relaxed),
            refused_path: self.refused_path.load(Relaxed),
            refused_write: self.refused_write.load(Relaxed),
            refused_mode: self.refused_mode.load(Relaxed),
            not_found: self.not_found.load(Relaxed),
            not_found_probe: self.not_found_probe.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            busy: self.busy.load(Relaxed),
            probes: self.probes.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            active: self.active.load(Relaxed),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

struct Shared {
    source: Arc<dyn FileSource>,
    stats: Arc<TftpStats>,
    obs: ObservationSink,
    scfg: SessionConfig,
    local_ip: IpAddr,
    /// Peers with a transfer running: a retransmitted RRQ must not start a second one.
    active: Mutex<HashSet<SocketAddr>>,
    shutdown: CancellationToken,
}

/// Serve read requests arriving on `socket` until `shutdown` is cancelled,
/// then wait for running transfers to end (they stop at once with an ERROR).
///
/// The loop only parses and dispatches: each accepted request gets a task
/// that opens the file on a blocking thread and talks to the client from its
/// own socket bound to the listen socket's IP. Bind the listen socket to a
/// concrete address on multi-homed hosts so replies leave from the address
/// the client used.
pub async fn serve(
    socket: UdpSocket,
    source: Arc<dyn FileSource>,
    cfg: TftpConfig,
    stats: Arc<TftpStats>,
    obs: ObservationSink,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    let shared = Arc::new(Shared {
        source,
        stats,
        obs,
        scfg: cfg.session(),
        local_ip: local.ip(),
        active: Mutex::new(HashSet::new()),
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(cfg.max_transfers));
    let tracker = TaskTracker::new();
    info!(target: "rackboot::tftp", %local, max_transfers = cfg.max_transfers, "TFTP server listening");
    let mut buf = vec![0u8; 65536];
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, peer)) => on_datagram(&socket, &buf[..n], peer, &shared, &permits, &tracker),
            Err(e) => {
                // E.g. ENOBUFS or an ICMP error surfaced on the socket:
                // transient, but never spin on a persistent one.
                warn!(target: "rackboot::tftp", error = %e, "receive on listen socket failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    info!(target: "rackboot::tftp", %local, "TFTP server stopped");
    Ok(())
}

/// Reply from the listen socket without ever waiting.
fn reply(socket: &UdpSocket, peer: SocketAddr, code: ErrorCode, msg: &str) {
    if let Err(e) = socket.try_send_to(&error_packet(code, msg), peer) {
        debug!(target: "rackboot::tftp", %peer, error = %e, "could not send ERROR");
    }
}

fn on_datagram(
    socket: &UdpSocket,
    data: &[u8],
    peer: SocketAddr,
    sh: &Arc<Shared>,
    permits: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let stats = &sh.stats;
    let req = match Packet::parse(data) {
        Ok(Packet::Rrq(r)) => {
            inc(&stats.requests);
            r
        }
        Ok(Packet::Wrq(r)) => {
            inc(&stats.requests);
            inc(&stats.refused_write);
            warn!(target: "rackboot::tftp", %peer, path = %r.filename, "write request refused");
            reply(
                socket,
                peer,
                ErrorCode::ACCESS_VIOLATION,
                "Write requests are not accepted",
            );
            return;
        }
        Ok(_) => {
            // DATA/ACK/ERROR/OACK to the listen port: stale or stray; no reply.
            inc(&stats.malformed);
            debug!(target: "rackboot::tftp", %peer, "non-request packet on listen port ignored");
            return;
        }
        Err(e) => {
            inc(&stats.malformed);
            debug!(target: "rackboot::tftp", %peer, error = %e, "malformed request");
            // Answer only what claims to be a request, so random datagrams
            // cannot use us as a reflector.
            let op = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if matches!(op, Some(OP_RRQ | OP_WRQ)) {
                let code = if e.is_option_error() {
                    ErrorCode::OPTION_NEGOTIATION
                } else {
                    ErrorCode::ILLEGAL_OPERATION
                };
                reply(socket, peer, code, &e.to_string());
            }
            return;
        }
    };
    if req.mode != Mode::Octet {
        inc(&stats.refused_mode);
        info!(target: "rackboot::tftp", %peer, path = %req.filename, mode = req.mode.as_str(), "mode refused");
        let msg = format!("{} mode not supported, use octet", req.mode.as_str());
        reply(socket, peer, ErrorCode::ILLEGAL_OPERATION, &msg);
        return;
    }
    let mut active = sh.active.lock().unwrap_or_else(PoisonError::into_inner);
    if active.contains(&peer) {
        debug!(target: "rackboot::tftp", %peer, path = %req.filename, "retransmitted request ignored");
        return;
    }
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        inc(&stats.busy);
        warn!(target: "rackboot::tftp", %peer, path = %req.filename, "server busy, request refused");
        reply(socket, peer, ErrorCode::NOT_DEFINED, "server busy");
        return;
    };
    active.insert(peer);
    drop(active);
    let sh = sh.clone();
    tracker.spawn_blocking(move || transfer(sh, req, peer, permit));
}

/// Removes the peer from the active set when the transfer task ends.
struct ActiveGuard<'a> {
    sh: &'a Shared,
    peer: SocketAddr,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.sh
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.peer);
        self.sh.stats.active.fetch_sub(1, Relaxed);
    }
}

fn transfer_socket(local_ip: IpAddr, peer: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = std::net::UdpSocket::bind(SocketAddr::new(local_ip, 0))?;
    sock.connect(peer)?;
    Ok(sock)
}

/// One transfer, start to end, on a blocking thread of its own (see the
/// module docs for why not a task).
fn transfer(sh: Arc<Shared>, req: Request, peer: SocketAddr, _permit: OwnedSemaphorePermit) {
    let _batch = BatchPolicy::enter();
    sh.stats.active.fetch_add(1, Relaxed);
    let _guard = ActiveGuard { sh: &sh, peer };
    let stats = &sh.stats;
    let path = req.filename.clone();
    let started = Instant::now();
    let sock = match transfer_socket(sh.local_ip, peer) {
        Ok(s) => s,
        Err(e) => {
            inc(&stats.transfers_failed);
            warn!(target: "rackboot::tftp", %peer, %path, error = %e, "cannot open transfer socket");
            return;
        }
    };
    let opened =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sh.source.open(&path, peer)))
            .unwrap_or_else(|_| Err(TftpError::Other("file source panicked".into())));
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            match &e {
                TftpError::NotFound => {
                    inc(&stats.not_found);
                    info!(target: "rackboot::tftp", %peer, %path, "file not found");
                }
                TftpError::Probe => {
                    inc(&stats.not_found_probe);
                    debug!(target: "rackboot::tftp", %peer, %path, "file not found (known probe)");
                }
                TftpError::AccessDenied(why) => {
                    inc(&stats.refused_path);
                    warn!(target: "rackboot::tftp", %peer, %path, reason = %why, "path refused");
                }
                TftpError::Other(why) => {
                    inc(&stats.transfers_failed);
                    warn!(target: "rackboot::tftp", %peer, %path, error = %why, "cannot open file");
                }
            }
            let _ = sock.send(&error_packet(e.code(), e.wire_message()));
            return;
        }
    };
    let len = file.len();
    let (session, actions) = Session::new(&req, len, &sh.scfg);
    let neg = session.negotiated();
    debug!(target: "rackboot::tftp", %peer, %path, len, blksize = neg.blksize,
        windowsize = neg.windowsize, "transfer started");
    let mut reader = Reader::new(file, neg.blksize);
    let outcome = drive(&sock, session, actions, &mut reader, &sh);
    let ms = started.elapsed().as_millis() as u64;
    let (ok, bytes) = match outcome {
        Outcome::Done { bytes } => {
            inc(&stats.transfers_ok);
            info!(target: "rackboot::tftp", %peer, %path, bytes, ms, blksize = neg.blksize,
                windowsize = neg.windowsize, "transfer complete");
            (true, bytes)
        }
        Outcome::Failed {
            reason,
            bytes,
            probe,
        } => {
            if probe {
                inc(&stats.probes);
                debug!(target: "rackboot::tftp", %peer, %path, %reason, "client ended after option negotiation");
                return; // a probe, not a transfer: no observation
            }
            inc(&stats.transfers_failed);
            warn!(target: "rackboot::tftp", %peer, %path, bytes, ms, %reason, "transfer failed");
            (false, bytes)
        }
    };
    let served = if ok {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sh.source.served(&path, peer)
        }))
        .unwrap_or(None)
    } else {
        None
    };
    sh.obs.emit(Observation::Tftp {
        peer: peer.ip(),
        path,
        bytes,
        ok,
        served,
    });
}

/// Runs the transfer thread under `SCHED_BATCH` and puts the pool thread's
/// policy back afterwards.
struct BatchPolicy(Option<libc::c_int>);

impl BatchPolicy {
    fn enter() -> BatchPolicy {
        // SAFETY: plain syscalls on the calling thread with a valid param.
        unsafe {
            let old = libc::sched_getscheduler(0);
            let p = libc::sched_param { sched_priority: 0 };
            if old >= 0 && libc::sched_setscheduler(0, libc::SCHED_BATCH, &p) == 0 {
                return BatchPolicy(Some(old));
            }
        }
        BatchPolicy(None)
    }
}

impl Drop for BatchPolicy {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            // SAFETY: as above.
            unsafe {
                let p = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, old, &p);
            }
        }
    }
}

enum Outcome {
    Done {
        bytes: u64,
    },
    Failed {
        reason: String,
        bytes: u64,
        /// Client ERROR before any DATA (a tsize probe).
        probe: bool,
    },
}

fn failed(session: &Session, reason: impl std::fmt::Display) -> Outcome {
    Outcome::Failed {
        reason: reason.to_string(),
        bytes: session.bytes_acked(),
        probe: false,
    }
}

/// How often a transfer blocked in `recv` looks at the shutdown token.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Run the session's actions and feed it packets and timeouts until it ends.
///
/// Blocking I/O on the transfer's own connected socket: a lockstep transfer
/// is one `recv` and one `send` per block, with no reactor in between.
fn drive(
    sock: &std::net::UdpSocket,
    mut session: Session,
    mut actions: Vec<Action>,
    reader: &mut Reader,
    sh: &Shared,
) -> Outcome {
    let mut out = Vec::with_capacity(4 + usize::from(session.negotiated().blksize));
    let mut rbuf = vec![0u8; 1024];
    let mut deadline = Instant::now() + session.negotiated().timeout;
    // The read timeout set on the socket now (a syscall to change).
    let mut read_timeout = Duration::ZERO;
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Send(p) => {
                    if let Err(e) = sock.send(&p) {
                        return failed(&session, format!("send: {e}"));
                    }
                }
                Action::SendData { block, offset, len } => {
                    let data = match reader.get(offset, len) {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = sock.send(&error_packet(ErrorCode::NOT_DEFINED, "read error"));
                            return failed(&session, format!("read at {offset}: {e}"));
                        }
                    };
                    out.clear();
                    out.extend_from_slice(&data_header(block));
                    out.extend_from_slice(data);
                    if let Err(e) = sock.send(&out) {
                        return failed(&session, format!("send: {e}"));
                    }
                    sh.stats.bytes_sent.fetch_add(len as u64, Relaxed);
                }
                Action::SetTimer(d) => deadline = Instant::now() + d,
                Action::Done { bytes } => return Outcome::Done { bytes },
                Action::Fail(reason) => {
                    let probe = matches!(
                        reason,
                        FailReason::ClientError {
                            negotiating: true,
                            ..
                        }
                    );
                    return Outcome::Failed {
                        reason: reason.to_string(),
                        bytes: session.bytes_acked(),
                        probe,
                    };
                }
            }
        }
        actions = loop {
            if sh.shutdown.is_cancelled() {
                let _ = sock.send(&error_packet(
                    ErrorCode::NOT_DEFINED,
                    "server shutting down",
                ));
                return failed(&session, "server shutting down");
            }
            let now = Instant::now();
            if now >= deadline {
                break session.on_timeout();
            }
            // At least 1 ms: a zero read timeout is refused by the kernel API.
            let wait = (deadline - now)
                .min(SHUTDOWN_POLL)
                .max(Duration::from_millis(1));
            if wait < read_timeout || read_timeout < SHUTDOWN_POLL.min(wait) {
                if let Err(e) = sock.set_read_timeout(Some(wait)) {
                    return failed(&session, format!("set read timeout: {e}"));
                }
                read_timeout = wait;
            }
            match sock.recv(&mut rbuf) {
                Ok(n) => break session.on_packet(&rbuf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                // ICMP port unreachable: the client is gone.
                Err(e) => return failed(&session, format!("receive: {e}")),
            }
        };
    }
}

/// File bytes for DATA packets. Disk files are read in block-aligned chunks
/// of about 256 KiB with `pread`; a window is then served from memory.
enum Reader {
    Memory(Arc<[u8]>),
    Disk {
        file: File,
        buf: Vec<u8>,
        start: u64,
        chunk: usize,
    },
}

const READ_CHUNK: usize = 256 * 1024;

impl Reader {
    fn new(f: TftpFile, blksize: u16) -> Reader {
        match f {
            TftpFile::Memory(m) => Reader::Memory(m),
            TftpFile::Disk { file, .. } => {
                let b = usize::from(blksize);
                Reader::Disk {
                    file,
                    buf: Vec::new(),
                    start: 0,
                    chunk: READ_CHUNK.div_ceil(b).max(4) * b,
                }
            }
        }
    }

    fn get(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank during transfer");
        match self {
            Reader::Memory(m) => usize::try_from(offset)
                .ok()
                .and_then(|o| m.get(o..o.checked_add(len)?))
                .ok_or_else(eof),
            Reader::Disk {
                file,
                buf,
                start,
                chunk,
            } => {
                let end = offset + len as u64;
                if offset < *start || end > *start + buf.len() as u64 {
                    let want = (*chunk).max(len);
                    buf.resize(want, 0);
                    let mut filled = 0;
                    while filled < want {
                        match file.read_at(&mut buf[filled..], offset + filled as u64) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                buf.clear();
                                return Err(e);
                            }
                        }
                    }
                    buf.truncate(filled);
                    *start = offset;
                    if end > *start + buf.len() as u64 {
                        return Err(eof());
                    }
                }
                let o = (offset - *start) as usize;
                Ok(&buf[o..o + len])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_rules() {
        let ok = [
            ("pxelinux.0", "pxelinux.0"),
            ("/pxelinux.0", "pxelinux.0"),
            ("\\Boot\\BCD", "Boot/BCD"),
            ("a/./b", "a/b"),
            ("a//b", "a/b"),
            ("efi/grubx64.efi", "efi/grubx64.efi"),
        ];
        for (i, want) in ok {
            assert_eq!(
                RootsSource::sanitize(i).unwrap(),
                PathBuf::from(want),
                "{i}"
            );
        }
        for bad in [
            "",
            "/",
            "../etc/passwd",
            "a/../../etc/passwd",
            "a/..",
            "..\\..\\etc\\passwd",
            "\\..\\x",
            "//etc/passwd",
            "\\\\etc\\passwd",
            "a\0b",
        ] {
            assert!(
                matches!(RootsSource::sanitize(bad), Err(TftpError::AccessDenied(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn roots_resolution() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("one"), b"1").unwrap();
        std::fs::write(b.path().join("one"), b"B1").unwrap();
        std::fs::write(b.path().join("two"), b"2").unwrap();
        std::fs::create_dir(a.path().join("dir")).unwrap();
        std::os::unix::fs::symlink("/etc", a.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("one", a.path().join("inside")).unwrap();
        let src = RootsSource::new([a.path(), b.path()]).unwrap();
        let canon_a = std::fs::canonicalize(a.path()).unwrap();
        let canon_b = std::fs::canonicalize(b.path()).unwrap();
        assert_eq!(src.resolve("one").unwrap(), canon_a.join("one"));
        assert_eq!(src.resolve("/two").unwrap(), canon_b.join("two"));
        assert_eq!(src.resolve("inside").unwrap(), canon_a.join("one"));
        assert!(matches!(src.resolve("three"), Err(TftpError::NotFound)));
        assert!(matches!(src.resolve("one/x"), Err(TftpError::NotFound)));
        assert!(matches!(
            src.resolve("/etc/passwd"),
            Err(TftpError::AccessDenied(_))
        ));
        assert!(matches!(
            src.resolve("etc"),
            Err(TftpError::AccessDenied(_))
        ));
        assert!(matches!(
            src.resolve("dir"),
            Err(TftpError::AccessDenied(_))
        ));
        assert!(matches!(
            src.resolve("../x"),
            Err(TftpError::AccessDenied(_))
        ));
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let f = src.open("two", peer).unwrap();
        assert_eq!(f.len(), 1);
    }
}
