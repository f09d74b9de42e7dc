//! Shared test harness: a copy of the sample lab config in a temp dir, HTTP
//! requests through the crate's one client, and helpers for external tools.

use std::net::SocketAddr;
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
        // The daemon's default admin token, known in advance: `http()` sends it.
        std::fs::create_dir_all(dir.path().join(".lab/data")).unwrap();
        std::fs::write(dir.path().join(".lab/data/api-token"), TOKEN).unwrap();
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

/// A response of the one client (`rackboot::client`); `json()` here panics
/// on a body that is not JSON, with the body in the message.
pub struct HttpResponse(pub rackboot::client::Response);

impl std::ops::Deref for HttpResponse {
    type Target = rackboot::client::Response;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as one of the `rackboot::api` types.
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> T {
        self.0
            .json()
            .unwrap_or_else(|e| panic!("HTTP {}: {e}", self.status))
    }
}

/// A client of `addr` with the tests' timeout (10 s per read), no token.
pub fn client(addr: SocketAddr) -> rackboot::client::Client {
    let agent = ureq::Agent::new_with_config(rackboot::client::agent_config(READ_TIMEOUT));
    rackboot::client::Client::with_agent(addr, None, agent)
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin token of every `ConfigDir::sample()` daemon (its
/// `data_dir/api-token`).
pub const TOKEN: &str = "harness-admin-token-0123456789ab";

/// One request through the one client, bounded by a timeout; panics when
/// nothing answers. Sends `Authorization: Bearer TOKEN` unless the caller
/// gives its own `Authorization` header (an empty one: none at all).
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
    let c = match local {
        None => client(addr),
        Some(ip) => {
            let agent = ureq::Agent::with_parts(
                rackboot::client::agent_config(READ_TIMEOUT),
                bound::BoundConnector(ip),
                ureq::unversioned::resolver::DefaultResolver::default(),
            );
            rackboot::client::Client::with_agent(addr, None, agent)
        }
    };
    let bearer = format!("Bearer {TOKEN}");
    let mut hs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, v)| !(k.eq_ignore_ascii_case("authorization") && v.is_empty()))
        .copied()
        .collect();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        hs.push(("Authorization", &bearer));
    }
    let r = c
        .request(method, path, &hs, body.map(str::as_bytes))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    HttpResponse(r)
}

/// A ureq transport from a chosen source address (ureq connects from the
/// default one): a plain TCP socket bound before it connects.
mod bound {
    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpStream};
    use std::time::Duration;
    use ureq::unversioned::transport::{
        Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
    };

    #[derive(Debug)]
    pub struct BoundConnector(pub IpAddr);

    #[derive(Debug)]
    pub struct BoundTransport {
        stream: TcpStream,
        buffers: LazyBuffers,
    }

    impl Connector<()> for BoundConnector {
        type Out = BoundTransport;

        fn connect(
            &self,
            details: &ConnectionDetails,
            _chained: Option<()>,
        ) -> Result<Option<BoundTransport>, ureq::Error> {
            let to = details.addrs[0];
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            sock.bind(&SocketAddr::new(self.0, 0).into())?;
            sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
            let stream: TcpStream = sock.into();
            stream.set_read_timeout(Some(super::READ_TIMEOUT))?;
            stream.set_write_timeout(Some(super::READ_TIMEOUT))?;
            let c = details.config;
            Ok(Some(BoundTransport {
                stream,
                buffers: LazyBuffers::new(c.input_buffer_size(), c.output_buffer_size()),
            }))
        }
    }

    impl Transport for BoundTransport {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }

        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            let out = &self.buffers.output()[..amount];
            self.stream.write_all(out)?;
            Ok(())
        }

        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            // A signal to the test process (a child's SIGCHLD, a daemon's
            // handler) interrupts a read with a timeout even under
            // SA_RESTART (signal(7)): read again.
            let n = loop {
                match self.stream.read(self.buffers.input_append_buf()) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.buffers.input_appended(n);
            Ok(n > 0)
        }

        fn is_open(&mut self) -> bool {
            false
        }
    }
}

/// A daemon's listeners on loopback: HTTP and API on free ports, `dhcp` as
/// given, no TFTP or DNS.
pub async fn loopback_listeners(
    dhcp: Vec<(tokio::net::UdpSocket, rackboot::dhcp::ServerParams)>,
) -> rackboot::daemon::Listeners {
    rackboot::daemon::Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        dhcp,
        tftp: None,
        dns: None,
    }
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

pub fn token(c: &ConfigDir) -> String {
    std::fs::read_to_string(c.path().join(".lab/data/api-token"))
        .unwrap()
        .trim()
        .to_string()
}

pub struct Lab {
    pub c: ConfigDir,
    pub d: rackboot::daemon::Running,
    pub client: tokio::net::UdpSocket,
    pub server: std::net::SocketAddr,
}

/// The in-process daemon, with its API on the port rackboot.toml names (so
/// the CLI finds it) and a DHCP socket on loopback.
pub async fn lab() -> Lab {
    lab_in(ConfigDir::sample()).await
}

/// A daemon's DHCP listener on loopback and the client socket its replies
/// go to (`ServerParams` for server 10.77.0.1 aimed at the client's port):
/// (client, server socket, params).
pub async fn dhcp_loopback() -> (
    tokio::net::UdpSocket,
    tokio::net::UdpSocket,
    rackboot::dhcp::ServerParams,
) {
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut params =
        rackboot::dhcp::ServerParams::new(std::net::Ipv4Addr::new(10, 77, 0, 1), false);
    params.client_port = client.local_addr().unwrap().port();
    params.broadcast = client.local_addr().unwrap();
    (client, server, params)
}

/// [`lab`] on a given config dir (a restart keeps its data dir).
pub async fn lab_in(c: ConfigDir) -> Lab {
    let api_port = free_port();
    c.use_loopback(free_port(), api_port);
    let cfg = c.load().unwrap();
    let (client, server, params) = dhcp_loopback().await;
    let server_addr = server.local_addr().unwrap();
    let listeners = rackboot::daemon::Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: tokio::net::TcpListener::bind(("127.0.0.1", api_port))
            .await
            .unwrap(),
        dhcp: vec![(server, params)],
        tftp: None,
        // `[dns] enabled` (tests/it/dns.rs): on its `listen` (port 0: a free one).
        dns: match cfg.settings.dns.enabled {
            true => Some(
                rackboot::dns::DnsSockets::bind(cfg.settings.dns.listen)
                    .await
                    .unwrap(),
            ),
            false => None,
        },
    };
    let d = rackboot::daemon::start(cfg, listeners).await.unwrap();
    Lab {
        c,
        d,
        client,
        server: server_addr,
    }
}

impl Lab {
    /// The yiaddr of the daemon's OFFER to an iPXE DISCOVER from `mac`, if any.
    pub async fn offer(&self, mac: &str) -> Option<std::net::Ipv4Addr> {
        use dhcproto::{Decodable, Decoder, Encodable, Encoder};
        let m = crate::dhcp::ipxe_discover(mac.parse().unwrap(), 9);
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        self.client.send_to(&buf, self.server).await.unwrap();
        let mut b = vec![0u8; 1500];
        match tokio::time::timeout(Duration::from_millis(500), self.client.recv_from(&mut b)).await
        {
            Ok(Ok((n, _))) => Some(
                dhcproto::v4::Message::decode(&mut Decoder::new(&b[..n]))
                    .unwrap()
                    .yiaddr(),
            ),
            _ => None,
        }
    }

    pub async fn get(&self, addr: std::net::SocketAddr, path: &str) -> HttpResponse {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || http(addr, "GET", &path, &[], None))
            .await
            .unwrap()
    }

    pub async fn api(
        &self,
        method: &'static str,
        path: &str,
        body: Option<serde_json::Value>,
        auth: bool,
    ) -> HttpResponse {
        let (addr, path) = (self.d.api_addr, path.to_string());
        let tok = format!("Bearer {}", token(&self.c));
        tokio::task::spawn_blocking(move || {
            let h: Vec<(&str, &str)> = if auth {
                vec![("Authorization", tok.as_str())]
            } else {
                vec![("Authorization", "")]
            };
            let b = body.map(|b| b.to_string());
            http(addr, method, &path, &h, b.as_deref())
        })
        .await
        .unwrap()
    }
}
