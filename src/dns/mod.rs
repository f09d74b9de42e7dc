//! DNS for the lab (`[dns]`): A and PTR for every system of the inventory
//! snapshot, NXDOMAIN (with the zone's SOA) for unknown names in the zone,
//! other names forwarded to the upstream resolvers or refused.
//!
//! - [`names`]: pure: an inventory → [`names::Names`], which answers a name
//!   and type with data, NODATA, NXDOMAIN or "outside". Table-tested.
//! - [`message`]: sans-IO, on hickory-proto's wire format: bytes → reply,
//!   forward, or drop (a typed [`Malformed`], counted).
//! - [`forward`]: the upstream resolvers, each within its timeout.
//! - here: the UDP loop and the TCP listener, [`DnsStats`], and the zone
//!   cache that follows the inventory `watch` (rebuilt when the snapshot's
//!   generation changes, so a reload or an admin edit answers at once).
//!
//! Why not hickory-server's `ServerFuture`: it answers a message whose
//! header parses but whose body does not with FORMERR, drops shorter ones
//! inside, and has no hook to count either (the invariant: bad input is
//! dropped and counted); it spawns a task per datagram without a bound; and
//! it adds hickory-net, async-trait and prefix-trie to the tree, where
//! hickory-proto is already in it (through dhcproto).

pub mod forward;
pub mod message;
pub mod names;

pub use forward::Upstreams;
pub use message::{Handled, Malformed, Outcome, Zone};

use crate::inventory::Inventory;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const TARGET: &str = "rackboot::dns";
/// Forwarded queries in flight at once; past it a query is dropped (counted).
const MAX_FORWARDS: usize = 256;
/// TCP connections at once; past it a new one is closed at once.
const MAX_TCP: usize = 64;
/// A TCP connection with no complete query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The runtime settings of the server.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Lower case, no trailing dot.
    pub zone: String,
    pub ttl: u32,
    /// `None`: names outside the zone are refused.
    pub upstreams: Option<Upstreams>,
}

impl DnsConfig {
    pub fn from_settings(s: &crate::config::DnsSettings) -> Option<DnsConfig> {
        Some(DnsConfig {
            zone: s.zone.clone()?,
            ttl: s.ttl,
            upstreams: s.forward.then(|| Upstreams {
                addrs: s.upstream.clone(),
                timeout: s.upstream_timeout,
            }),
        })
    }
}

/// The server's sockets: UDP and TCP on one address.
pub struct DnsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl DnsSockets {
    /// Bind both (port 0: the TCP listener takes an ephemeral port and UDP
    /// the same number; tried again if that UDP port is taken).
    pub async fn bind(addr: SocketAddr) -> io::Result<DnsSockets> {
        let mut tries = if addr.port() == 0 { 10 } else { 1 };
        loop {
            let tcp = TcpListener::bind(addr).await?;
            match UdpSocket::bind(tcp.local_addr()?).await {
                Ok(udp) => return Ok(DnsSockets { udp, tcp }),
                Err(e) if tries > 1 && e.kind() == io::ErrorKind::AddrInUse => tries -= 1,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Counters of the server (mirrored into `/metrics` as `rackboot_dns_*`).
#[derive(Debug, Default)]
pub struct DnsStats {
    /// Well-formed queries, [UDP, TCP].
    queries: [AtomicU64; 2],
    malformed: [AtomicU64; Malformed::COUNT],
    /// Replies we built, by [`Outcome`].
    outcomes: [AtomicU64; Outcome::COUNT],
    /// Forwarded queries an upstream answered.
    pub forwarded: AtomicU64,
    /// Forwarded queries no upstream answered in time (SERVFAIL sent).
    pub forward_failed: AtomicU64,
    /// Queries to forward dropped: too many in flight.
    pub forward_busy: AtomicU64,
    /// Replies the socket refused.
    pub send_errors: AtomicU64,
}

/// A plain copy of [`DnsStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStatsSnapshot {
    pub queries_udp: u64,
    pub queries_tcp: u64,
    /// Indexed by `Malformed as usize`.
    pub malformed: [u64; Malformed::COUNT],
    /// Indexed by `Outcome as usize`.
    pub outcomes: [u64; Outcome::COUNT],
    pub forwarded: u64,
    pub forward_failed: u64,
    pub forward_busy: u64,
    pub send_errors: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl DnsStats {
    pub fn malformed(&self, m: Malformed) -> u64 {
        self.malformed[m as usize].load(Ordering::Relaxed)
    }

    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> DnsStatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DnsStatsSnapshot {
            queries_udp: l(&self.queries[0]),
            queries_tcp: l(&self.queries[1]),
            malformed: std::array::from_fn(|i| l(&self.malformed[i])),
            outcomes: std::array::from_fn(|i| l(&self.outcomes[i])),
            forwarded: l(&self.forwarded),
            forward_failed: l(&self.forward_failed),
            forward_busy: l(&self.forward_busy),
            send_errors: l(&self.send_errors),
        }
    }

    /// The JSON of `/api/v1/status`'s `protocols.dns`.
    pub fn json(&self) -> serde_json::Value {
        let s = self.snapshot();
        let malformed: serde_json::Map<_, _> = Malformed::ALL
            .iter()
            .map(|m| (m.as_str().to_string(), s.malformed[*m as usize].into()))
            .collect();
        let outcomes: serde_json::Map<_, _> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str().to_string(), s.outcomes[*o as usize].into()))
            .collect();
        serde_json::json!({
            "queries_udp": s.queries_udp, "queries_tcp": s.queries_tcp,
            "malformed": malformed, "replies": outcomes,
            "forwarded": s.forwarded, "forward_failed": s.forward_failed,
            "forward_busy": s.forward_busy, "send_errors": s.send_errors,
        })
    }
}

/// The answering zone of the inventory being served: rebuilt when the
/// snapshot's generation changes (never keyed on its address).
struct Zones {
    inventory: watch::Receiver<Arc<Inventory>>,
    cfg: DnsConfig,
    current: Mutex<Arc<Zone>>,
}

impl Zones {
    fn new(inventory: watch::Receiver<Arc<Inventory>>, cfg: DnsConfig) -> Zones {
        let inv = inventory.borrow().clone();
        let zone = Self::build(&inv, &cfg);
        Zones {
            inventory,
            cfg,
            current: Mutex::new(Arc::new(zone)),
        }
    }

    fn build(inv: &Inventory, cfg: &DnsConfig) -> Zone {
        Zone::new(
            names::Names::build(inv, &cfg.zone),
            cfg.ttl,
            cfg.upstreams.is_some(),
        )
    }

    fn current(&self) -> Arc<Zone> {
        let inv = self.inventory.borrow().clone();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.names.generation() != inv.generation() {
            *cur = Arc::new(Self::build(&inv, &self.cfg));
        }
        cur.clone()
    }
}

struct Shared {
    zones: Zones,
    stats: Arc<DnsStats>,
    forwards: Arc<Semaphore>,
}

impl Shared {
    /// Decide for one message and count it; `Forward` is left to the caller.
    fn handle(&self, bytes: &[u8], udp: bool) -> Handled {
        let h = self.zones.current().handle(bytes, udp);
        match &h {
            Handled::Drop(m) => inc(&self.stats.malformed[*m as usize]),
            Handled::Reply { outcome, .. } => {
                inc(&self.stats.queries[usize::from(!udp)]);
                inc(&self.stats.outcomes[*outcome as usize]);
            }
            Handled::Forward => inc(&self.stats.queries[usize::from(!udp)]),
        }
        h
    }

    /// Forward `query`; the upstream's answer, or SERVFAIL (counted).
    async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let up = self.zones.cfg.upstreams.as_ref()?;
        let (id, _) = message::header_id(query)?;
        match forward::forward(query, id, up, tcp).await {
            Some(a) => {
                inc(&self.stats.forwarded);
                Some(a)
            }
            None => {
                inc(&self.stats.forward_failed);
                inc(&self.stats.outcomes[Outcome::ServFail as usize]);
                message::servfail(query, true)
            }
        }
    }
}

/// Serve DNS on `sockets` until `shutdown`: answers from the inventory
/// snapshot `inventory` follows.
pub async fn serve(
    sockets: DnsSockets,
    inventory: watch::Receiver<Arc<Inventory>>,
    cfg: DnsConfig,
    stats: Arc<DnsStats>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        zones: Zones::new(inventory, cfg),
        stats,
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
    });
    tokio::join!(
        serve_udp(sockets.udp, shared.clone(), &tracker, &shutdown),
        serve_tcp(sockets.tcp, shared, &tracker, &shutdown),
    );
}

async fn serve_udp(
    sock: UdpSocket,
    shared: Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(target: TARGET, error = %e, "DNS UDP receive error");
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let bytes = &buf[..n];
        match shared.handle(bytes, true) {
            Handled::Reply { bytes, .. } => {
                if sock.send_to(&bytes, peer).await.is_err() {
                    inc(&shared.stats.send_errors);
                }
            }
            Handled::Drop(m) => {
                tracing::debug!(target: TARGET, %peer, class = m.as_str(), len = n, "DNS query dropped as malformed");
            }
            Handled::Forward => {
                let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                    inc(&shared.stats.forward_busy);
                    continue;
                };
                let (q, sock, shared) = (bytes.to_vec(), sock.clone(), shared.clone());
                let sd = shutdown.clone();
                tracker.spawn(async move {
                    let _permit = permit;
                    let answer = tokio::select! {
                        a = shared.forward(&q, false) => a,
                        _ = sd.cancelled() => None,
                    };
                    if let Some(a) = answer {
                        if sock.send_to(&a, peer).await.is_err() {
                            inc(&shared.stats.send_errors);
                        }
                    }
                });
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let conns = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(target: TARGET, error = %e, "DNS TCP accept error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::debug!(target: TARGET, %peer, "DNS TCP connection refused: too many");
            continue;
        };
        let (shared, sd) = (shared.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = tcp_conn(stream, &shared) => {}
                _ = sd.cancelled() => {}
            }
        });
    }
}

/// Length-prefixed queries, one after the other, until the client closes
/// or idles.
async fn tcp_conn(mut s: TcpStream, shared: &Shared) {
    loop {
        let msg = tokio::time::timeout(TCP_IDLE, async {
            let n = s.read_u16().await?;
            let mut buf = vec![0u8; usize::from(n)];
            s.read_exact(&mut buf).await?;
            Ok::<_, io::Error>(buf)
        })
        .await;
        let Ok(Ok(msg)) = msg else { return };
        let reply = match shared.handle(&msg, false) {
            Handled::Reply { bytes, .. } => Some(bytes),
            Handled::Drop(_) => None,
            Handled::Forward => shared.forward(&msg, true).await,
        };
        if let Some(r) = reply {
            let Ok(len) = u16::try_from(r.len()) else {
                continue;
            };
            let mut out = len.to_be_bytes().to_vec();
            out.extend_from_slice(&r);
            if s.write_all(&out).await.is_err() {
                inc(&shared.stats.send_errors);
                return;
            }
        }
    }
}
