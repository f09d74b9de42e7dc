//! Forwarding a query outside the zone: the upstream resolvers in order, each
//! within its own timeout, under a fresh random ID; the first answer is
//! relayed as it came, with the client's ID put back.

use super::message::{header_id, with_id};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The upstream resolvers and what each gets.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub addrs: Vec<SocketAddr>,
    pub timeout: Duration,
}

/// The answer to `query` (a client's query, its ID `id`), or `None` when no
/// upstream answered in time. `tcp`: the client asked over TCP, so a
/// truncated UDP answer is asked again over TCP.
pub async fn forward(query: &[u8], id: u16, up: &Upstreams, tcp: bool) -> Option<Vec<u8>> {
    for addr in &up.addrs {
        let ours: u16 = rand::random();
        let q = with_id(query, ours);
        let got = tokio::time::timeout(up.timeout, async {
            let a = udp(&q, ours, *addr).await?;
            if tcp && truncated(&a) {
                return over_tcp(&q, ours, *addr).await;
            }
            Some(a)
        })
        .await;
        match got {
            Ok(Some(a)) => return Some(with_id(&a, id)),
            Ok(None) => {
                tracing::debug!(target: "rackboot::dns", upstream = %addr, "upstream failed")
            }
            Err(_) => {
                tracing::debug!(target: "rackboot::dns", upstream = %addr, "upstream timed out")
            }
        }
    }
    None
}

fn truncated(a: &[u8]) -> bool {
    a.len() > 2 && a[2] & 0x02 != 0
}

async fn udp(q: &[u8], id: u16, to: SocketAddr) -> Option<Vec<u8>> {
    let local: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await.ok()?;
    sock.connect(to).await.ok()?;
    sock.send(q).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await.ok()?;
        // The connected socket takes datagrams from `to` only; a stale or
        // forged one with another ID is skipped.
        if header_id(&buf[..n]) == Some((id, true)) {
            return Some(buf[..n].to_vec());
        }
    }
}

async fn over_tcp(q: &[u8], id: u16, to: SocketAddr) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(to).await.ok()?;
    let len = u16::try_from(q.len()).ok()?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(q);
    s.write_all(&out).await.ok()?;
    let n = s.read_u16().await.ok()?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.ok()?;
    (header_id(&buf) == Some((id, true))).then_some(buf)
}
