//! Waiting for a machine to come up: SSH answering with its banner, then every
//! service port accepting a connection. Bounded by the phase deadline.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Read the SSH identification string (RFC 4253 4.2) within `t`.
pub async fn ssh_banner(addr: SocketAddr, t: Duration) -> Result<String, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while !got.contains(&b'\n') && got.len() < 255 {
            let n = s.read(&mut buf).await.map_err(|e| format!("{addr}: {e}"))?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&got)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        if line.starts_with("SSH-") {
            Ok(line)
        } else {
            Err(format!("{addr}: no SSH banner (got {line:?})"))
        }
    };
    tokio::time::timeout(t, fut)
        .await
        .map_err(|_| format!("{addr}: no banner within {t:?}"))?
}

async fn port_open(addr: SocketAddr, t: Duration) -> Result<(), String> {
    match tokio::time::timeout(t, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {t:?}")),
    }
}

/// Poll until SSH (if 22 is among `ports`) shows its banner and every port
/// accepts, or until `until` (ms since epoch). The error names what was missing.
/// `after_down`: first wait until the first port does not answer (the
/// machine went down: an installer's own SSH is not the installed system's).
pub async fn wait_ports(
    ip: Ipv4Addr,
    ports: &[u16],
    until: i64,
    after_down: bool,
) -> Result<(), String> {
    let mut last = String::from("not probed yet");
    if after_down {
        let first = SocketAddr::from((ip, ports.first().copied().unwrap_or(22)));
        while port_open(first, Duration::from_millis(500)).await.is_ok() {
            if crate::store::now_ms() >= until {
                return Err(format!("{first} never went down (no reboot seen)"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    loop {
        let mut ok = true;
        for &p in ports {
            let addr = SocketAddr::from((ip, p));
            let r = if p == 22 {
                ssh_banner(addr, Duration::from_secs(3)).await.map(|_| ())
            } else {
                port_open(addr, Duration::from_secs(2)).await
            };
            if let Err(e) = r {
                last = e;
                ok = false;
                break;
            }
        }
        if ok {
            return Ok(());
        }
        if crate::store::now_ms() >= until {
            return Err(format!("ports {ports:?} not all open: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
