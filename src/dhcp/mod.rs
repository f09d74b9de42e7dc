//! DHCPv4 server: a sans-IO core ([`classify()`] → [`DhcpPolicy::answer`] →
//! [`respond`]) behind a thin socket loop ([`serve`]).
//!
//! - [`opts`]: TLV helpers for the options dhcproto leaves raw (43, 77, 93, 175, 60).
//! - [`classify`](mod@classify): bytes → [`DhcpRequest`] or a typed [`Malformed`].
//! - [`reply`]: request + [`Answer`] → reply bytes and destination (RFC 2131 4.1).
//!
//! The reply path awaits nothing but the socket: the policy is synchronous and
//! reads in-memory snapshots, observations go out with `try_send`.
//!
//! A full DHCP daemon binds port 67 per interface; a proxyDHCP daemon binds
//! 67 and 4011 and runs [`serve`] on both with `ServerParams::proxy = true`.
//! Address pools and persisted leases are not here: the policy returns the
//! address ([`Answer::yiaddr`]); [`LeaseEvent`]s (RELEASE / DECLINE) are
//! logged and counted for the lease store to pick up later.

pub mod classify;
pub mod opts;
pub mod reply;

pub use classify::{classify, ClientMessage, DhcpRequest, Malformed, MalformedClass};
pub use reply::{
    build_reply, destination, respond, Answer, BootFile, IgnoreReason, LeaseEvent, Outcome, Reply,
    ReplyKind, ServerParams, CLIENT_PORT, PXE_PORT, SERVER_PORT,
};

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::observe::{DhcpKind, Observation, ObservationSink};

const TARGET: &str = "rackboot::dhcp";
/// Receive buffer: larger than [`classify::MAX_PACKET`], so an oversized
/// datagram is seen (and counted) as oversized rather than silently cut.
const RECV_BUF: usize = 2048;

/// The policy seam: pure, synchronous, reads in-memory snapshots only.
/// Returning `None` = ignore (no reply).
pub trait DhcpPolicy: Send + Sync + 'static {
    fn answer(&self, req: &DhcpRequest) -> Option<Answer>;
}

/// Counters for one or more [`serve`] loops (share one `Arc` between the 67
/// and 4011 sockets if you want totals).
#[derive(Debug, Default)]
pub struct DhcpStats {
    /// Datagrams received (well-formed or not).
    pub received: AtomicU64,
    malformed: [AtomicU64; MalformedClass::COUNT],
    /// Well-formed requests that got no reply (see [`IgnoreReason`]).
    pub ignored: AtomicU64,
    /// OFFERs sent (address mode).
    pub offers: AtomicU64,
    /// ACKs sent (address mode, INFORM included).
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    /// Proxy OFFERs and proxy ACKs sent.
    pub proxy: AtomicU64,
    pub releases: AtomicU64,
    pub declines: AtomicU64,
    /// Replies the socket refused.
    pub send_errors: AtomicU64,
}

/// A plain copy of [`DhcpStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhcpStatsSnapshot {
    pub received: u64,
    /// Indexed by `MalformedClass as usize`.
    pub malformed: [u64; MalformedClass::COUNT],
    pub ignored: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub proxy: u64,
    pub releases: u64,
    pub declines: u64,
    pub send_errors: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl DhcpStats {
    pub fn new() -> DhcpStats {
        DhcpStats::default()
    }

    pub fn malformed(&self, class: MalformedClass) -> u64 {
        self.malformed[class as usize].load(Ordering::Relaxed)
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn snapshot(&self) -> DhcpStatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DhcpStatsSnapshot {
            received: l(&self.received),
            malformed: std::array::from_fn(|i| l(&self.malformed[i])),
            ignored: l(&self.ignored),
            offers: l(&self.offers),
            acks: l(&self.acks),
            naks: l(&self.naks),
            proxy: l(&self.proxy),
            releases: l(&self.releases),
            declines: l(&self.declines),
            send_errors: l(&self.send_errors),
        }
    }
}

/// Bind a DHCP server socket with SO_REUSEADDR and SO_BROADCAST, and
/// SO_BINDTODEVICE when `interface` is named (needs CAP_NET_RAW).
///
/// One socket per interface is how the server knows the ingress interface:
/// a DISCOVER broadcast on `eth1` only reaches the socket bound to `eth1`, and
/// a reply broadcast to 255.255.255.255 from it leaves through `eth1` (an
/// unbound socket would send it along the default route). So bind
/// `0.0.0.0:67` once per served interface, each with its own [`ServerParams`]
/// (server id = that interface's address). SO_REUSEADDR lets those sockets
/// share the port. Must be called inside a tokio runtime.
pub fn bind(addr: SocketAddr, interface: Option<&str>) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_broadcast(true)?;
    if let Some(ifname) = interface {
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        sock.bind_device(Some(ifname.as_bytes()))?;
        #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("binding to interface {ifname} needs SO_BINDTODEVICE (Linux)"),
        ));
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

fn transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionRefused
            | K::ConnectionReset
            | K::Interrupted
            | K::WouldBlock
            | K::NetworkDown
            | K::NetworkUnreachable
            | K::HostUnreachable
    )
}

/// Serve DHCP on `sock` until `shutdown` is cancelled: recv → classify →
/// policy → reply → send. Malformed datagrams are dropped and counted; the
/// loop only returns an error when the socket itself fails for good.
/// A socket bound to port 4011 ([`PXE_PORT`]) marks its requests
/// `boot_server_port` (proxyDHCP step 2).
pub async fn serve(
    sock: UdpSocket,
    policy: Arc<dyn DhcpPolicy>,
    srv: ServerParams,
    stats: Arc<DhcpStats>,
    obs: ObservationSink,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let local = sock.local_addr()?;
    let boot_server_port = local.port() == PXE_PORT;
    tracing::info!(
        target: TARGET,
        %local,
        server_id = %srv.server_id,
        proxy = srv.proxy,
        "DHCP server listening"
    );
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, src) = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                tracing::info!(target: TARGET, %local, "DHCP server stopped");
                return Ok(());
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) if transient(&e) => {
                    tracing::debug!(target: TARGET, %local, error = %e, "recv error, continuing");
                    continue;
                }
                Err(e) => {
                    tracing::error!(target: TARGET, %local, error = %e, "recv failed, DHCP server stops");
                    return Err(e);
                }
            },
        };
        handle(
            &sock,
            &buf[..n],
            src,
            boot_server_port,
            policy.as_ref(),
            &srv,
            &stats,
            &obs,
        )
        .await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    sock: &UdpSocket,
    bytes: &[u8],
    src: SocketAddr,
    boot_server_port: bool,
    policy: &dyn DhcpPolicy,
    srv: &ServerParams,
    stats: &DhcpStats,
    obs: &ObservationSink,
) {
    inc(&stats.received);
    let mut req = match classify(bytes) {
        Ok(r) => r,
        Err(e) => {
            inc(&stats.malformed[e.class() as usize]);
            tracing::debug!(
                target: TARGET,
                %src,
                len = bytes.len(),
                class = e.class().as_str(),
                reason = %e,
                "dropped malformed datagram"
            );
            return;
        }
    };
    req.src = Some(src);
    req.boot_server_port = boot_server_port;

    let ans = match req.msg_type {
        ClientMessage::Release | ClientMessage::Decline => None,
        _ => match std::panic::catch_unwind(AssertUnwindSafe(|| policy.answer(&req))) {
            Ok(a) => a,
            Err(_) => {
                // A policy bug must not take DHCP down for every machine.
                inc(&stats.ignored);
                tracing::error!(target: TARGET, mac = %req.mac, xid = req.xid, "DHCP policy panicked");
                return;
            }
        },
    };

    match respond(&req, ans.as_ref(), srv) {
        Outcome::Ignore(why) => {
            inc(&stats.ignored);
            tracing::debug!(
                target: TARGET,
                mac = %req.mac,
                xid = req.xid,
                msg = req.msg_type.as_str(),
                %src,
                reason = why.as_str(),
                "no reply"
            );
        }
        Outcome::Event(ev) => {
            match ev {
                LeaseEvent::Released { .. } => inc(&stats.releases),
                LeaseEvent::Declined { .. } => inc(&stats.declines),
            }
            tracing::info!(target: TARGET, mac = %req.mac, xid = req.xid, event = ?ev, "lease event");
        }
        Outcome::Reply(rep) => {
            if let Err(e) = sock.send_to(&rep.bytes, rep.dest).await {
                inc(&stats.send_errors);
                tracing::warn!(
                    target: TARGET,
                    mac = %req.mac,
                    xid = req.xid,
                    kind = rep.kind.as_str(),
                    dest = %rep.dest,
                    error = %e,
                    "send failed"
                );
                return;
            }
            let kind = match rep.kind {
                ReplyKind::Offer => {
                    inc(&stats.offers);
                    DhcpKind::Offer
                }
                ReplyKind::Ack => {
                    inc(&stats.acks);
                    DhcpKind::Ack
                }
                ReplyKind::Nak => {
                    inc(&stats.naks);
                    DhcpKind::Nak
                }
                ReplyKind::ProxyOffer => {
                    inc(&stats.proxy);
                    DhcpKind::ProxyOffer
                }
                ReplyKind::ProxyAck => {
                    inc(&stats.proxy);
                    DhcpKind::Ack
                }
            };
            tracing::info!(
                target: TARGET,
                mac = %req.mac,
                xid = req.xid,
                msg = req.msg_type.as_str(),
                reply = rep.kind.as_str(),
                ip = ?rep.yiaddr,
                arch = ?req.arch,
                ipxe = req.ipxe,
                dest = %rep.dest,
                "reply sent"
            );
            obs.emit(Observation::Dhcp {
                mac: req.mac,
                ip: rep.yiaddr,
                arch: req.arch,
                ipxe: req.ipxe,
                kind,
            });
        }
    }
}
