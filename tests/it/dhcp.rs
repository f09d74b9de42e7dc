//! DHCP server on real loopback sockets: `serve` with a fake reservation
//! policy, a small client built with dhcproto, "broadcast" pointed at the
//! client's loopback port.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use rackboot::dhcp::*;
use rackboot::model::*;
use rackboot::observe::*;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SERVER_ID: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const KNOWN: Mac = Mac([0x52, 0x54, 0x00, 0x77, 0x00, 0x50]);
const KNOWN_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
const UNKNOWN: Mac = Mac([0x52, 0x54, 0x00, 0x77, 0x00, 0x99]);

/// Reservation table: known MAC → fixed IP, unknown → None. In proxy mode
/// the answer carries no address.
struct Reservations {
    table: HashMap<Mac, Ipv4Addr>,
    proxy: bool,
}

impl DhcpPolicy for Reservations {
    fn answer(&self, req: &DhcpRequest) -> Option<Answer> {
        let ip = *self.table.get(&req.mac)?;
        let (filename, http) = if req.ipxe {
            ("http://10.77.0.1:8080/boot.ipxe", false)
        } else if req.http_client {
            ("http://10.77.0.1:8080/boot/ipxe.efi", true)
        } else if req.arch.is_some_and(Arch::is_uefi) {
            ("ipxe.efi", false)
        } else {
            ("undionly.kpxe", false)
        };
        Some(Answer {
            yiaddr: (!self.proxy).then_some(ip),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(SERVER_ID),
            dns: vec![SERVER_ID],
            domain: Some("lab".into()),
            hostname: Some("node50".into()),
            lease_secs: 600,
            boot: Some(BootFile {
                next_server: SERVER_ID,
                filename: filename.into(),
                http_client: http,
                ipxe: req.ipxe,
            }),
        })
    }
}

struct Harness {
    server: SocketAddr,
    client: UdpSocket,
    stats: Arc<DhcpStats>,
    obs: mpsc::Receiver<Observation>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(proxy: bool) -> Harness {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cport = client.local_addr().unwrap().port();
    let sock = bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let server = sock.local_addr().unwrap();
    let srv = ServerParams {
        server_id: SERVER_ID,
        client_port: cport,
        broadcast: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), cport),
        proxy,
    };
    let policy = Arc::new(Reservations {
        table: HashMap::from([(KNOWN, KNOWN_IP)]),
        proxy,
    });
    let stats = Arc::new(DhcpStats::new());
    let (tx, obs) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        sock,
        policy,
        srv,
        stats.clone(),
        ObservationSink::new(tx),
        shutdown.clone(),
    ));
    Harness {
        server,
        client,
        stats,
        obs,
        shutdown,
        task,
    }
}

pub(crate) fn discover(mac: Mac, xid: u32, vendor_class: &[u8], arch: u16) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Discover));
    o.insert(DhcpOption::ClassIdentifier(vendor_class.to_vec()));
    o.insert(DhcpOption::ClientSystemArchitecture(arch.into()));
    o.insert(DhcpOption::MaxMessageSize(1472));
    m
}

pub(crate) fn ipxe_discover(mac: Mac, xid: u32) -> Message {
    let mut m = discover(mac, xid, b"PXEClient:Arch:00000:UNDI:002001", 0);
    m.opts_mut().insert(DhcpOption::UserClass(b"iPXE".to_vec()));
    m
}

fn request(mut m: Message, ip: Ipv4Addr) -> Message {
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(MessageType::Request));
    o.insert(DhcpOption::RequestedIpAddress(ip));
    o.insert(DhcpOption::ServerIdentifier(SERVER_ID));
    m
}

impl Harness {
    async fn send(&self, b: &[u8]) {
        self.client.send_to(b, self.server).await.unwrap();
    }

    async fn send_msg(&self, m: &Message) {
        self.send(&m.to_vec().unwrap()).await;
    }

    async fn recv(&self, within: Duration) -> Option<(Message, Vec<u8>)> {
        let mut buf = vec![0u8; 1500];
        let (n, from) = tokio::time::timeout(within, self.client.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        assert_eq!(from, self.server, "reply comes from the server socket");
        buf.truncate(n);
        Some((Message::from_bytes(&buf).unwrap(), buf))
    }

    async fn recv_reply(&self) -> (Message, Vec<u8>) {
        self.recv(Duration::from_secs(2))
            .await
            .expect("a reply within 2 s")
    }

    /// Wait until `cond` holds on the counters (the server runs on another task).
    async fn wait_for(&self, what: &str, cond: impl Fn(&DhcpStats) -> bool) {
        for _ in 0..200 {
            if cond(&self.stats) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", self.stats.snapshot());
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("serve stops on cancel")
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

pub(crate) fn msg_type(m: &Message) -> Option<MessageType> {
    m.opts().msg_type()
}

pub(crate) fn opt_bytes(m: &Message, code: OptionCode) -> Option<Vec<u8>> {
    match m.opts().get(code)? {
        DhcpOption::ClassIdentifier(v)
        | DhcpOption::BootfileName(v)
        | DhcpOption::VendorExtensions(v) => Some(v.clone()),
        DhcpOption::Unknown(u) => Some(u.data().to_vec()),
        other => panic!("unexpected option type {other:?}"),
    }
}

#[tokio::test]
async fn dhcp_discover_offer_request_ack() {
    let mut h = start(false).await;

    h.send_msg(&ipxe_discover(KNOWN, 0x1111)).await;
    let (offer, raw) = h.recv_reply().await;
    assert_eq!(msg_type(&offer), Some(MessageType::Offer));
    assert_eq!(offer.xid(), 0x1111);
    assert_eq!(offer.yiaddr(), KNOWN_IP);
    assert_eq!(offer.siaddr(), SERVER_ID);
    assert!(raw.len() >= 300, "padded to the BOOTP minimum");
    assert_eq!(
        opt_bytes(&offer, OptionCode::BootfileName).as_deref(),
        Some(&b"http://10.77.0.1:8080/boot.ipxe"[..])
    );
    assert_eq!(
        opt_bytes(&offer, OptionCode::from(175)).as_deref(),
        Some(&[0xb0, 1, 1][..])
    );
    assert!(matches!(
        offer.opts().get(OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(s)) if *s == SERVER_ID
    ));

    h.send_msg(&request(ipxe_discover(KNOWN, 0x1112), KNOWN_IP))
        .await;
    let (ack, _) = h.recv_reply().await;
    assert_eq!(msg_type(&ack), Some(MessageType::Ack));
    assert_eq!(ack.xid(), 0x1112);
    assert_eq!(ack.yiaddr(), KNOWN_IP);

    // A REQUEST for another address is NAKed.
    h.send_msg(&request(
        ipxe_discover(KNOWN, 0x1113),
        Ipv4Addr::new(10, 77, 0, 77),
    ))
    .await;
    let (nak, _) = h.recv_reply().await;
    assert_eq!(msg_type(&nak), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);

    // Observations follow the sends.
    let mut seen = vec![];
    for _ in 0..3 {
        let o = tokio::time::timeout(Duration::from_secs(2), h.obs.recv())
            .await
            .expect("an observation per reply")
            .unwrap();
        seen.push(o);
    }
    let kinds: Vec<(DhcpKind, Option<Ipv4Addr>)> = seen
        .into_iter()
        .map(|o| match o {
            Observation::Dhcp {
                mac,
                kind,
                ip,
                ipxe,
                arch,
            } => {
                assert_eq!(mac, KNOWN);
                assert!(ipxe);
                assert_eq!(arch, Some(Arch::BiosX86));
                (kind, ip)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DhcpKind::Offer, Some(KNOWN_IP)),
            (DhcpKind::Ack, Some(KNOWN_IP)),
            (DhcpKind::Nak, None)
        ]
    );
    // Counted before the observation went out.
    let s = h.stats.snapshot();
    assert_eq!((s.received, s.offers, s.acks, s.naks), (3, 1, 1, 1));
    h.stop().await;
}

#[tokio::test]
async fn dhcp_unknown_mac_gets_nothing() {
    let h = start(false).await;
    h.send_msg(&ipxe_discover(UNKNOWN, 0x2222)).await;
    assert!(
        h.recv(Duration::from_millis(300)).await.is_none(),
        "no reply to an unknown MAC"
    );
    assert_eq!(
        h.stats.ignored.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn dhcp_garbage_is_counted_and_server_keeps_answering() {
    let h = start(false).await;
    let good = ipxe_discover(KNOWN, 0x3333).to_vec().unwrap();
    let mut reply_op = good.clone();
    reply_op[0] = 2;
    let mut broken_len = good.clone();
    broken_len.truncate(240);
    broken_len.extend_from_slice(&[53, 1, 1, 60, 200, b'P']);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 10],
        vec![1; 1501],
        reply_op,
        broken_len,
        good[..239].to_vec(),
    ];
    for g in &garbage {
        h.send(g).await;
    }
    h.wait_for("malformed counted", |s| s.malformed_total() == 6)
        .await;
    assert_eq!(h.stats.malformed(MalformedClass::Oversized), 1);
    assert_eq!(h.stats.malformed(MalformedClass::NotRequest), 1);
    assert_eq!(h.stats.malformed(MalformedClass::Options), 1);
    assert_eq!(h.stats.malformed(MalformedClass::Truncated), 3);

    h.send(&good).await;
    let (offer, _) = h.recv_reply().await;
    assert_eq!(msg_type(&offer), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), KNOWN_IP);
    h.stop().await;
}

#[tokio::test]
async fn dhcp_proxy_mode_offers_boot_without_address() {
    let h = start(true).await;
    let uefi = discover(KNOWN, 0x4444, b"PXEClient:Arch:00007:UNDI:003016", 7);
    h.send_msg(&uefi).await;
    let (offer, _) = h.recv_reply().await;
    assert_eq!(msg_type(&offer), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.siaddr(), SERVER_ID);
    assert_eq!(
        opt_bytes(&offer, OptionCode::ClassIdentifier).as_deref(),
        Some(&b"PXEClient"[..])
    );
    assert!(offer.opts().get(OptionCode::SubnetMask).is_none());
    assert!(offer.opts().get(OptionCode::AddressLeaseTime).is_none());

    // BIOS PXE gets option 43 {6: 8}.
    h.send_msg(&discover(
        KNOWN,
        0x4445,
        b"PXEClient:Arch:00000:UNDI:002001",
        0,
    ))
    .await;
    let (offer, _) = h.recv_reply().await;
    assert_eq!(
        opt_bytes(&offer, OptionCode::VendorExtensions).as_deref(),
        Some(&[6, 1, 8, 255][..])
    );

    // The port-4011 style REQUEST naming us gets a proxy ACK with the boot file.
    let mut req = request(uefi.clone(), Ipv4Addr::UNSPECIFIED);
    req.opts_mut().remove(OptionCode::RequestedIpAddress);
    req.set_ciaddr(KNOWN_IP).set_xid(0x4446);
    h.send_msg(&req).await;
    let (ack, _) = h.recv_reply().await;
    assert_eq!(msg_type(&ack), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        opt_bytes(&ack, OptionCode::BootfileName).as_deref(),
        Some(&b"ipxe.efi"[..])
    );

    // Not a PXE client (no option 60): a proxy stays silent.
    let mut plain = discover(KNOWN, 0x4447, b"udhcp 1.35.0", 0);
    plain
        .opts_mut()
        .remove(OptionCode::ClientSystemArchitecture);
    h.send_msg(&plain).await;
    assert!(h.recv(Duration::from_millis(300)).await.is_none());
    h.wait_for("proxy replies counted", |s| s.snapshot().proxy == 3)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn dhcp_bind_to_device() {
    // SO_BINDTODEVICE needs CAP_NET_RAW; skip quietly without it.
    match bind("127.0.0.1:0".parse().unwrap(), Some("lo")) {
        Ok(s) => assert!(s.local_addr().unwrap().port() != 0),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => panic!("bind to lo: {e}"),
    }
    assert!(bind("127.0.0.1:0".parse().unwrap(), Some("no-such-if0")).is_err());
}
