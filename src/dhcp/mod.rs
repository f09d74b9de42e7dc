//! DHCPv4 server: a sans-IO core ([`classify()`] → [`DhcpPolicy::answer`] →
//! [`respond`]) behind a thin socket loop ([`serve`]).
//!
//! - [`opts`]: TLV helpers for the options dhcproto leaves raw (43, 77, 93, 175, 60).
//! - [`classify`](mod@classify): bytes → [`DhcpRequest`] or a typed [`Malformed`].
//! - [`reply`]: request + [`Answer`] → reply bytes and destination (RFC 2131 4.1).
//! - [`policy`]: [`InventoryDhcpPolicy`], the daemon's policy: `boot::netboot`
//!   encoded into an [`Answer`], then the pool for MACs outside the inventory.
//!
//! The reply path awaits nothing but the socket: the policy is synchronous and
//! reads in-memory state, observations go out with `try_send`. The one
//! exception is the policy's durability step ([`DhcpPolicy::commit`]): a
//! reply it returns a [`Durable`] for (a pool ACK) is held, off the receive
//! loop, until its lease is committed, and dropped if the commit fails.
//!
//! A full DHCP daemon binds port 67 per interface; a proxyDHCP daemon binds
//! 67 and 4011 and runs [`serve`] on both with `ServerParams::proxy = true`.
//! The address pool ([`pool`], pure) and its persisted leases ([`leases`]:
//! group commit) serve `dhcp.mode = "pool"`; [`LeaseEvent`]s (RELEASE /
//! DECLINE) go to [`DhcpPolicy::lease_event`].

pub mod classify;
pub mod discovery;
pub mod leases;
pub mod opts;
pub mod policy;
pub mod pool;
pub mod reply;

pub use leases::Durable;
pub use policy::{dhcp_answer, DhcpPolicySettings, InventoryDhcpPolicy};

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

/// The policy seam: synchronous, reads in-memory state only.
/// Returning `None` = ignore (no reply).
pub trait DhcpPolicy: Send + Sync + 'static {
    fn answer(&self, req: &DhcpRequest) -> Option<Answer>;

    /// A RELEASE or DECLINE (no reply goes out). Default: nothing to do.
    fn lease_event(&self, _req: &DhcpRequest, _ev: &LeaseEvent) {}

    /// The durability step, asked for every reply [`respond`] built, before
    /// it is sent. `Some(d)`: hold the reply until `d` yields `true` (its
    /// lease is durable); `false` or a dropped sender: do not send it.
    /// Must not block. Default: send at once (reservations are
    /// configuration, not state).
    fn commit(&self, _req: &DhcpRequest, _reply: &Reply) -> Option<Durable> {
        None
    }
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
    /// Replies held for a lease commit (pool ACKs).
    pub held: AtomicU64,
    /// Held replies not sent: the commit failed or the hold queue was full.
    pub unsent_uncommitted: AtomicU64,
    /// Well-formed requests by message type (indexed by `ClientMessage as usize`).
    requests: [AtomicU64; ClientMessage::COUNT],
    /// Replies sent by kind (indexed by `ReplyKind as usize`).
    replies: [AtomicU64; ReplyKind::COUNT],
    /// `ignored`, by reason (indexed by `IgnoreReason as usize`); the rest
    /// of `ignored` is `policy_panics`.
    ignored_by: [AtomicU64; IgnoreReason::COUNT],
    /// Requests ignored because the policy panicked (answer or commit).
    pub policy_panics: AtomicU64,
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
    pub held: u64,
    pub unsent_uncommitted: u64,
    /// Indexed by `ClientMessage as usize`.
    pub requests: [u64; ClientMessage::COUNT],
    /// Indexed by `ReplyKind as usize`.
    pub replies: [u64; ReplyKind::COUNT],
    /// Indexed by `IgnoreReason as usize`.
    pub ignored_by: [u64; IgnoreReason::COUNT],
    pub policy_panics: u64,
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

    pub fn requests(&self, msg: ClientMessage) -> u64 {
        self.requests[msg as usize].load(Ordering::Relaxed)
    }

    pub fn replies(&self, kind: ReplyKind) -> u64 {
        self.replies[kind as usize].load(Ordering::Relaxed)
    }

    pub fn ignored_by(&self, why: IgnoreReason) -> u64 {
        self.ignored_by[why as usize].load(Ordering::Relaxed)
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
            held: l(&self.held),
            unsent_uncommitted: l(&self.unsent_uncommitted),
            requests: std::array::from_fn(|i| l(&self.requests[i])),
            replies: std::array::from_fn(|i| l(&self.replies[i])),
            ignored_by: std::array::from_fn(|i| l(&self.ignored_by[i])),
            policy_panics: l(&self.policy_panics),
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
    grow_recv_buffer(&sock, RECV_SOCKET_BUF);
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

/// Socket receive buffer asked for: absorbs ~2,000 requests while the loop
/// is off the CPU (a lease commit, another tenant), instead of dropping them.
const RECV_SOCKET_BUF: usize = 4 << 20;

/// SO_RCVBUFFORCE when allowed (CAP_NET_ADMIN: a DHCP server usually runs as
/// root), else SO_RCVBUF, which the kernel caps at `net.core.rmem_max`.
fn grow_recv_buffer(sock: &socket2::Socket, size: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: a valid socket fd and a c_int option value of the stated size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
    let _ = sock.set_recv_buffer_size(size);
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

/// Replies waiting for their lease commit, per socket; beyond this a reply
/// is dropped (counted) and the client retries.
const HELD_MAX: usize = 8192;

/// What a sent reply is logged and observed with.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mac: crate::model::Mac,
    xid: u32,
    msg: ClientMessage,
    arch: Option<crate::model::Arch>,
    ipxe: bool,
}

struct Held {
    done: Durable,
    rep: Reply,
    meta: Meta,
}

/// Serve DHCP on `sock` until `shutdown` is cancelled: recv → classify →
/// policy → reply → (commit) → send. Malformed datagrams are dropped and
/// counted; the loop only returns an error when the socket itself fails for
/// good. A socket bound to port 4011 ([`PXE_PORT`]) marks its requests
/// `boot_server_port` (proxyDHCP step 2).
///
/// Replies the policy holds for a commit go to a second task on the same
/// socket, which sends them in order as their commits complete; the receive
/// loop never waits for the store.
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
    let sock = Arc::new(sock);
    let (held_tx, held_rx) = tokio::sync::mpsc::channel::<Held>(HELD_MAX);
    let sender = tokio::spawn(send_held(sock.clone(), held_rx, stats.clone(), obs.clone()));
    let mut buf = vec![0u8; RECV_BUF];
    let result = loop {
        let (n, src) = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                tracing::info!(target: TARGET, %local, "DHCP server stopped");
                break Ok(());
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) if transient(&e) => {
                    tracing::debug!(target: TARGET, %local, error = %e, "recv error, continuing");
                    continue;
                }
                Err(e) => {
                    tracing::error!(target: TARGET, %local, error = %e, "recv failed, DHCP server stops");
                    break Err(e);
                }
            },
        };
        handle(
            &sock,
            &held_tx,
            &buf[..n],
            src,
            boot_server_port,
            policy.as_ref(),
            &srv,
            &stats,
            &obs,
        )
        .await;
    };
    // Let replies whose commit is under way go out (bounded).
    drop(held_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), sender).await;
    result
}

async fn send_held(
    sock: Arc<UdpSocket>,
    mut rx: tokio::sync::mpsc::Receiver<Held>,
    stats: Arc<DhcpStats>,
    obs: ObservationSink,
) {
    while let Some(h) = rx.recv().await {
        match h.done.await {
            Ok(true) => send(&sock, h.rep, h.meta, &stats, &obs).await,
            _ => {
                inc(&stats.unsent_uncommitted);
                tracing::warn!(
                    target: TARGET,
                    mac = %h.meta.mac,
                    xid = h.meta.xid,
                    ip = ?h.rep.yiaddr,
                    "lease not committed: reply withheld"
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    sock: &UdpSocket,
    held: &tokio::sync::mpsc::Sender<Held>,
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
    inc(&stats.requests[req.msg_type as usize]);

    let ans = match req.msg_type {
        ClientMessage::Release | ClientMessage::Decline => None,
        _ => match std::panic::catch_unwind(AssertUnwindSafe(|| policy.answer(&req))) {
            Ok(a) => a,
            Err(_) => {
                // A policy bug must not take DHCP down for every machine.
                inc(&stats.ignored);
                inc(&stats.policy_panics);
                tracing::error!(target: TARGET, mac = %req.mac, xid = req.xid, "DHCP policy panicked");
                return;
            }
        },
    };

    match respond(&req, ans.as_ref(), srv) {
        Outcome::Ignore(why) => {
            inc(&stats.ignored);
            inc(&stats.ignored_by[why as usize]);
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
            if std::panic::catch_unwind(AssertUnwindSafe(|| policy.lease_event(&req, &ev))).is_err()
            {
                tracing::error!(target: TARGET, mac = %req.mac, xid = req.xid, "DHCP policy panicked on a lease event");
            }
        }
        Outcome::Reply(rep) => {
            let meta = Meta {
                mac: req.mac,
                xid: req.xid,
                msg: req.msg_type,
                arch: req.arch,
                ipxe: req.ipxe,
            };
            let durable = match std::panic::catch_unwind(AssertUnwindSafe(|| {
                policy.commit(&req, &rep)
            })) {
                Ok(d) => d,
                Err(_) => {
                    inc(&stats.ignored);
                    inc(&stats.policy_panics);
                    tracing::error!(target: TARGET, mac = %req.mac, xid = req.xid, "DHCP policy panicked in commit");
                    return;
                }
            };
            match durable {
                None => send(sock, rep, meta, stats, obs).await,
                Some(done) => {
                    inc(&stats.held);
                    if held.try_send(Held { done, rep, meta }).is_err() {
                        inc(&stats.unsent_uncommitted);
                        tracing::warn!(target: TARGET, mac = %req.mac, xid = req.xid, "too many replies waiting for a commit: dropped");
                    }
                }
            }
        }
    }
}

async fn send(sock: &UdpSocket, rep: Reply, m: Meta, stats: &DhcpStats, obs: &ObservationSink) {
    if let Err(e) = sock.send_to(&rep.bytes, rep.dest).await {
        inc(&stats.send_errors);
        tracing::warn!(
            target: TARGET,
            mac = %m.mac,
            xid = m.xid,
            kind = rep.kind.as_str(),
            dest = %rep.dest,
            error = %e,
            "send failed"
        );
        return;
    }
    inc(&stats.replies[rep.kind as usize]);
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
        mac = %m.mac,
        xid = m.xid,
        msg = m.msg.as_str(),
        reply = rep.kind.as_str(),
        ip = ?rep.yiaddr,
        arch = ?m.arch,
        ipxe = m.ipxe,
        dest = %rep.dest,
        "reply sent"
    );
    obs.emit(Observation::Dhcp {
        mac: m.mac,
        ip: rep.yiaddr,
        arch: m.arch,
        ipxe: m.ipxe,
        kind,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_tables_are_indexed_by_discriminant() {
        for (i, m) in ClientMessage::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
        for (i, k) in ReplyKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, r) in IgnoreReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, c) in MalformedClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
