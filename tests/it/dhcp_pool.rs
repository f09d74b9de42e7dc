//! `dhcp.mode = "pool"` on real loopback sockets: the in-process daemon
//! (DORA, reserved addresses, RELEASE, exhaustion, restart) and the real
//! binary killed with SIGKILL right after its last ACK.

use crate::harness::{free_port, http, ConfigDir};
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use rackboot::daemon;
use rackboot::model::Mac;
use rackboot::store::Store;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const SAMPLE_SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn unknown_mac(n: u16) -> Mac {
    let [a, b] = n.to_be_bytes();
    Mac([0x02, 0x99, 0x00, 0x00, a, b])
}

/// Switch the sample config to pool mode over `start..=end` (plus `extra` lines).
fn pool_config(c: &ConfigDir, start: &str, end: &str, extra: &str) {
    c.replace(
        "rackboot.toml",
        "mode = \"reservations\"",
        &format!("mode = \"pool\"\npool_start = \"{start}\"\npool_end = \"{end}\"\n{extra}"),
    );
    c.replace("rackboot.toml", "[tftp]\n", "[tftp]\nenabled = false\n");
}

fn discover(mac: Mac, xid: u32) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    m
}

fn request(mac: Mac, xid: u32, ip: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = discover(mac, xid);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Request));
    o.insert(DhcpOption::RequestedIpAddress(ip));
    o.insert(DhcpOption::ServerIdentifier(server));
    m
}

fn release(mac: Mac, xid: u32, ip: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(
        xid,
        ip,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Release));
    o.insert(DhcpOption::ServerIdentifier(server));
    m
}

fn msg_type(m: &Message) -> Option<MessageType> {
    m.opts().msg_type()
}

/// A DHCP client on loopback.
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    server_id: Ipv4Addr,
}

impl Client {
    async fn send(&self, m: &Message) {
        self.sock
            .send_to(&m.to_vec().unwrap(), self.server)
            .await
            .unwrap();
    }

    /// The next reply with `xid` (others are skipped), or `None` after `within`.
    async fn recv(&self, xid: u32, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 1500];
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .ok()?
                .unwrap();
            let m = Message::from_bytes(&buf[..n]).unwrap();
            if m.xid() == xid {
                return Some(m);
            }
        }
    }

    /// Send every `(xid, message)`, at most 32 unanswered at a time, resending
    /// unanswered ones every 500 ms; every reply must be `want`.
    async fn exchange_all(
        &self,
        msgs: Vec<(u32, Message)>,
        want: MessageType,
    ) -> HashMap<u32, Message> {
        const WINDOW: usize = 32;
        let total = msgs.len();
        let mut pending: std::collections::VecDeque<(u32, Message)> = msgs.into();
        let mut in_flight: HashMap<u32, Message> = HashMap::new();
        let mut got: HashMap<u32, Message> = HashMap::new();
        let mut buf = vec![0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.len() < total {
            assert!(
                Instant::now() < deadline,
                "{} of {total} replies",
                got.len()
            );
            while in_flight.len() < WINDOW {
                let Some((xid, m)) = pending.pop_front() else {
                    break;
                };
                self.send(&m).await;
                in_flight.insert(xid, m);
            }
            match tokio::time::timeout(Duration::from_millis(500), self.sock.recv_from(&mut buf))
                .await
            {
                Ok(r) => {
                    let (n, _) = r.unwrap();
                    let m = Message::from_bytes(&buf[..n]).unwrap();
                    if in_flight.remove(&m.xid()).is_some() {
                        assert_eq!(msg_type(&m), Some(want), "{m:?}");
                        got.insert(m.xid(), m);
                    }
                }
                Err(_) => {
                    for m in in_flight.values() {
                        self.send(m).await;
                    }
                }
            }
        }
        got
    }

    /// DISCOVER → OFFER → REQUEST → ACK. `None` when no offer comes.
    async fn dora(&self, mac: Mac, xid: u32) -> Option<(Ipv4Addr, Message)> {
        self.send(&discover(mac, xid)).await;
        let offer = self.recv(xid, Duration::from_millis(700)).await?;
        assert_eq!(msg_type(&offer), Some(MessageType::Offer));
        let ip = offer.yiaddr();
        self.send(&request(mac, xid + 1, ip, self.server_id)).await;
        let ack = self
            .recv(xid + 1, Duration::from_secs(5))
            .await
            .expect("an ACK for the offered address");
        assert_eq!(msg_type(&ack), Some(MessageType::Ack), "{ack:?}");
        assert_eq!(ack.yiaddr(), ip);
        Some((ip, offer))
    }
}

async fn start(c: &ConfigDir) -> (daemon::Running, Client) {
    let cfg = c.load().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sock = rackboot::dhcp::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let server = sock.local_addr().unwrap();
    let mut params = rackboot::dhcp::ServerParams::new(SAMPLE_SERVER, false);
    params.client_port = client.local_addr().unwrap().port();
    params.broadcast = client.local_addr().unwrap();
    let listeners = crate::harness::loopback_listeners(vec![(sock, params)]).await;
    let d = daemon::start(cfg, listeners).await.unwrap();
    (
        d,
        Client {
            sock: client,
            server,
            server_id: SAMPLE_SERVER,
        },
    )
}

async fn pool_status(api: SocketAddr) -> serde_json::Value {
    tokio::task::spawn_blocking(move || http(api, "GET", "/api/v1/status", &[], None).json())
        .await
        .unwrap()["protocols"]["pool"]
        .clone()
}

fn db_url(c: &ConfigDir) -> String {
    format!(
        "sqlite://{}",
        c.path().join(".lab/data/rackboot.db").display()
    )
}

async fn stored_leases(c: &ConfigDir) -> HashMap<String, String> {
    let s = Store::open(&db_url(c)).await.unwrap();
    let rows = s.leases().await.unwrap();
    s.close().await;
    rows.into_iter().map(|r| (r.mac, r.ip)).collect()
}

/// Pool 10.77.0.48..=57 holds node50..53's reserved addresses: 6 usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_dora_reserved_release_exhaustion_restart() {
    let c = ConfigDir::sample();
    pool_config(&c, "10.77.0.48", "10.77.0.57", "");
    let reserved: HashSet<Ipv4Addr> = (50..=53).map(|n| Ipv4Addr::new(10, 77, 0, n)).collect();
    let (d, client) = start(&c).await;

    // Six unknown MACs: six distinct pool addresses, none reserved, no boot file.
    let mut got: HashMap<Mac, Ipv4Addr> = HashMap::new();
    for n in 0..6u16 {
        let mac = unknown_mac(n);
        let (ip, offer) = client
            .dora(mac, 100 + u32::from(n) * 10)
            .await
            .expect("an offer");
        assert!(offer.opts().get(OptionCode::BootfileName).is_none());
        assert!(offer.fname().unwrap_or_default().iter().all(|b| *b == 0));
        assert_eq!(offer.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(!reserved.contains(&ip), "{ip} is reserved");
        assert!((48..=57).contains(&ip.octets()[3]), "{ip}");
        got.insert(mac, ip);
    }
    let distinct: HashSet<_> = got.values().collect();
    assert_eq!(distinct.len(), 6, "{got:?}");

    // An inventory machine still gets its reservation and its boot file.
    let node50: Mac = "52:54:00:77:00:50".parse().unwrap();
    let (ip, offer) = client.dora(node50, 900).await.expect("node50 offer");
    assert_eq!(ip, Ipv4Addr::new(10, 77, 0, 50));
    assert!(offer.opts().get(OptionCode::BootfileName).is_some());

    // Exhausted: a seventh client gets no offer, and it is counted.
    let late = unknown_mac(7);
    assert!(client.dora(late, 700).await.is_none());
    assert_eq!(pool_status(d.api_addr).await["exhausted"], 1);
    // The same on /metrics, with the pool's gauges: six leases, nothing free.
    let api = d.api_addr;
    let m = tokio::task::spawn_blocking(move || http(api, "GET", "/metrics", &[], None).text())
        .await
        .unwrap();
    for line in [
        "rackboot_dhcp_pool_exhausted_total 1",
        "rackboot_dhcp_pool_addresses{state=\"used\"} 6",
        "rackboot_dhcp_pool_addresses{state=\"free\"} 0",
        "rackboot_dhcp_replies_held_total 6",
        "rackboot_dhcp_replies_total{kind=\"ack\"} 7",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }

    // RELEASE frees: the seventh client now gets the released address.
    let gone = unknown_mac(2);
    client
        .send(&release(gone, 800, got[&gone], SAMPLE_SERVER))
        .await;
    let mut freed = None;
    for i in 0..50 {
        if let Some((ip, _)) = client.dora(late, 710 + i * 2).await {
            freed = Some(ip);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(freed, Some(got[&gone]));
    got.remove(&gone);
    got.insert(late, freed.unwrap());
    d.stop().await;

    // Every ACKed lease is in the store, the released one is not.
    let stored = stored_leases(&c).await;
    for (mac, ip) in &got {
        assert_eq!(stored.get(&mac.to_string()), Some(&ip.to_string()), "{mac}");
    }
    assert!(!stored.contains_key(&gone.to_string()));

    // Restart on the same data dir: each client gets its address back.
    let (d, client) = start(&c).await;
    for (i, (mac, ip)) in got.iter().enumerate() {
        let (again, _) = client
            .dora(*mac, 2000 + i as u32 * 10)
            .await
            .expect("an offer after restart");
        assert_eq!(again, *ip, "{mac}");
    }
    // And the pool is still full for newcomers.
    assert!(client.dora(unknown_mac(40), 3000).await.is_none());
    d.stop().await;
}

/// A REQUEST for someone else's address is NAKed; INIT-REBOOT for one's own
/// address is ACKed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_request_for_taken_address_is_naked() {
    let c = ConfigDir::sample();
    pool_config(&c, "10.77.0.100", "10.77.0.110", "");
    let (d, client) = start(&c).await;
    let (a, b) = (unknown_mac(1), unknown_mac(2));
    let (ip_a, _) = client.dora(a, 10).await.unwrap();
    client.send(&request(b, 20, ip_a, SAMPLE_SERVER)).await;
    let r = client.recv(20, Duration::from_secs(2)).await.unwrap();
    assert_eq!(msg_type(&r), Some(MessageType::Nak));
    // a asks again (init-reboot, no server id): ACK.
    let mut m = request(a, 30, ip_a, SAMPLE_SERVER);
    m.opts_mut().remove(OptionCode::ServerIdentifier);
    client.send(&m).await;
    let r = client.recv(30, Duration::from_secs(2)).await.unwrap();
    assert_eq!(msg_type(&r), Some(MessageType::Ack));
    assert_eq!(r.yiaddr(), ip_a);
    d.stop().await;
}

fn spawn_daemon(c: &ConfigDir, log: &std::path::Path, api: SocketAddr) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["serve", "--config"])
        .arg(c.path())
        .env("RACKBOOT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(api).is_err() {
        assert!(
            Instant::now() < deadline,
            "daemon did not start: {}",
            std::fs::read_to_string(log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// The real binary: 200 pipelined DORAs, SIGKILL right after the last ACK;
/// every ACKed (mac, ip) is in the store, and the daemon gives them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_binary_kill9_keeps_every_acked_lease() {
    const N: u16 = 200;
    let c = ConfigDir::sample();
    let (hp, ap) = (free_port(), free_port());
    c.use_loopback(hp, ap);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dhcp_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    pool_config(
        &c,
        "10.200.0.10",
        "10.200.3.250",
        &format!(
            "port = {dhcp_port}\nreply_to = \"{}\"",
            client.local_addr().unwrap()
        ),
    );
    let server_id = Ipv4Addr::LOCALHOST;
    let client = Client {
        sock: client,
        server: SocketAddr::from(([127, 0, 0, 1], dhcp_port)),
        server_id,
    };
    let api: SocketAddr = format!("127.0.0.1:{ap}").parse().unwrap();
    let log = c.path().join("daemon.log");
    let mut child = spawn_daemon(&c, &log, api);

    // All DISCOVERs, then all REQUESTs, many in flight at once (group
    // commit), resent like a client would when a datagram is lost.
    let macs: Vec<Mac> = (0..N).map(|n| unknown_mac(1000 + n)).collect();
    let discovers = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| (10_000 + i as u32, discover(*mac, 10_000 + i as u32)))
        .collect();
    let offers = client.exchange_all(discovers, MessageType::Offer).await;
    let requests = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let xid = 60_000 + i as u32;
            (
                xid,
                request(*mac, xid, offers[&(xid - 50_000)].yiaddr(), server_id),
            )
        })
        .collect();
    let acks = client.exchange_all(requests, MessageType::Ack).await;
    let acked: HashMap<String, String> = acks
        .values()
        .map(|m| {
            let mac = Mac::from_slice(&m.chaddr()[..6]).unwrap();
            (mac.to_string(), m.yiaddr().to_string())
        })
        .collect();
    child.kill().unwrap(); // SIGKILL, right after the last ACK
    child.wait().unwrap();
    let ips: HashSet<_> = acked.values().collect();
    assert_eq!(ips.len(), N as usize, "distinct addresses");

    let stored = stored_leases(&c).await;
    for (mac, ip) in &acked {
        assert_eq!(stored.get(mac), Some(ip), "ACKed lease of {mac} lost");
    }

    // Restarted, the daemon gives the same MACs the same addresses.
    let mut child = spawn_daemon(&c, &log, api);
    for (i, mac) in macs.iter().take(10).enumerate() {
        let (ip, _) = client
            .dora(*mac, 90_000 + i as u32 * 10)
            .await
            .expect("an offer after restart");
        assert_eq!(ip.to_string(), acked[&mac.to_string()]);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("ERROR"), "{text}");
}

/// A system added to the inventory after reloads with no pool traffic
/// between them: its address is held back from the pool. (Reservations were
/// once re-applied per snapshot *address*; the allocator reuses the address
/// of a dropped snapshot, so a new system's address could go to a pool
/// client. They follow the reload generation now.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_holds_back_system_added_after_quiet_reloads() {
    let c = ConfigDir::sample();
    // Ten addresses, none reserved by the sample inventory.
    pool_config(&c, "10.77.0.60", "10.77.0.69", "");
    let (d, client) = start(&c).await;
    let added = Ipv4Addr::new(10, 77, 0, 64);

    // Pool traffic: the first snapshot's reservations are applied.
    let (first, _) = client.dora(unknown_mac(1), 10).await.expect("an offer");
    assert_ne!(first, added);

    // Two reloads with no pool traffic between them; the second adds a
    // system whose address lies inside the pool (the operator's path:
    // edit systems.toml, reload).
    d.reloader.reload().expect("reload");
    c.append(
        "systems.toml",
        "\n[systems.node64]\nhostname = \"node64\"\nmacs = [\"52:54:00:77:00:64\"]\nip = \"10.77.0.64\"\nprofile = \"lab-disk\"\n",
    );
    d.reloader.reload().expect("reload");
    assert!(d.inventory.borrow().system("node64").is_some());

    // Pool clients DISCOVER until the pool is exhausted (bounded): each
    // offer holds its address, and none is node64's.
    let mut offered = vec![first];
    for n in 2..40u16 {
        let xid = 100 + u32::from(n) * 10;
        client.send(&discover(unknown_mac(n), xid)).await;
        let Some(offer) = client.recv(xid, Duration::from_millis(700)).await else {
            break;
        };
        assert_eq!(msg_type(&offer), Some(MessageType::Offer));
        assert_ne!(
            offer.yiaddr(),
            added,
            "node64's address offered to a pool client"
        );
        offered.push(offer.yiaddr());
    }
    // Ten addresses, one reserved: nine offered, then exhausted.
    assert_eq!(offered.len(), 9, "{offered:?}");
    d.stop().await;
}
