//! Shared test harness: a copy of the sample lab config in a temp dir, a tiny
//! HTTP/1.1 client, and helpers for external tools.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A throwaway config dir holding a copy of the repository's sample config,
/// with a boot dir of small stand-in payloads and its own data dir.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

impl ConfigDir {
    pub fn sample() -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        let r = repo();
        for f in ["rackboot.toml", "systems.toml"] {
            std::fs::copy(r.join(f), dir.path().join(f)).unwrap();
        }
        copy_tree(&r.join("profiles"), &dir.path().join("profiles"));
        copy_tree(&r.join("kickstarts"), &dir.path().join("kickstarts"));
        std::fs::create_dir_all(dir.path().join("tests/lab")).unwrap();
        std::fs::copy(
            r.join("tests/lab/bmc-password"),
            dir.path().join("tests/lab/bmc-password"),
        )
        .unwrap();
        let boot = dir.path().join(".lab/boot");
        std::fs::create_dir_all(&boot).unwrap();
        // Stand-in payloads: the HTTP tests need bytes to serve, not a kernel.
        let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(boot.join("vmlinuz"), &kernel).unwrap();
        std::fs::write(boot.join("initrd.img"), b"initrd-bytes").unwrap();
        std::fs::create_dir_all(dir.path().join("firmware")).unwrap();
        std::fs::write(dir.path().join("firmware/ipxe.efi"), b"MZ-efi").unwrap();
        ConfigDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    pub fn append(&self, rel: &str, text: &str) {
        let mut s = self.read(rel);
        s.push_str(text);
        self.write(rel, &s);
    }

    pub fn replace(&self, rel: &str, from: &str, to: &str) {
        let s = self.read(rel);
        assert!(s.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &s.replacen(from, to, 1));
    }

    /// Point the daemon at loopback with the given ports.
    pub fn use_loopback(&self, http_port: u16, api_port: u16) {
        let s = self
            .read("rackboot.toml")
            .replace("address = \"10.77.0.1\"", "address = \"127.0.0.1\"")
            .replace("http_port = 8080", &format!("http_port = {http_port}"))
            .replace(
                "listen = \"127.0.0.1:9080\"",
                &format!("listen = \"127.0.0.1:{api_port}\""),
            )
            .replace("interface = \"eth0\"", "# interface = \"eth0\"");
        self.write("rackboot.toml", &s);
    }

    pub fn load(&self) -> Result<rackboot::config::Config, rackboot::config::ConfigErrors> {
        rackboot::config::load(self.path())
    }
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[allow(dead_code)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A minimal blocking HTTP/1.1 client (Connection: close), bounded by a timeout.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    http_from(None, addr, method, path, headers, body)
}

/// The same, from a given local address (a machine's own IP on loopback: 127.0.0.0/8).
pub fn http_from(
    local: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let mut s: TcpStream = match local {
        None => TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap(),
        Some(ip) => {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(ip, 0).into()).unwrap();
            sock.connect_timeout(&addr.into(), Duration::from_secs(5))
                .unwrap();
            sock.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..nl])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// Find an external tool. Missing under CI is a failure (CI installs it);
/// missing on a developer machine skips with a message.
pub fn tool(candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() || c.contains('/') {
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                repo().join(p)
            };
            if p.is_file() {
                return Some(p);
            }
        } else if let Ok(path) = std::env::var("PATH") {
            for d in path.split(':') {
                let f = Path::new(d).join(c);
                if f.is_file() {
                    return Some(f);
                }
            }
        }
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("RACKBOOT_REQUIRE_TOOLS").is_some() {
        panic!("required tool not found under CI: {candidates:?} (scripts/install-deps.sh installs it)");
    }
    eprintln!("SKIP: tool not found: {candidates:?} (run scripts/install-deps.sh)");
    None
}
