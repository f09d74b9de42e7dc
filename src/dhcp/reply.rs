//! [`DhcpRequest`] + the policy's [`Answer`] → reply bytes and where to send
//! them. Pure.
//!
//! What goes into a reply:
//!
//! | request | mode | reply |
//! |---|---|---|
//! | DISCOVER | address | OFFER: yiaddr, 51/58/59, 1, 3, 6, 15, 12 + boot bits |
//! | DISCOVER | proxy (`srv.proxy` or `Answer::yiaddr == None`) | proxy OFFER: no yiaddr, 60 `PXEClient`, 43, 97 echo + boot bits; PXE / HTTP clients with a boot file only |
//! | REQUEST for our reservation | address | ACK |
//! | REQUEST for another address | address | NAK |
//! | REQUEST naming another server (54) | any | nothing |
//! | REQUEST on port 4011 or naming us | proxy | proxy ACK with the boot file, to the sender |
//! | INFORM | address | ACK without yiaddr and without lease time |
//! | RELEASE / DECLINE | any | nothing, an [`LeaseEvent`] |
//!
//! Boot bits: siaddr = next server, `file` (when it fits in 127 bytes) and
//! option 67 = the boot file, 66 = next server (TFTP only); 60 `HTTPClient`
//! when the boot file is an HTTP boot URL; 175 = `b0:01:01` (no-pxedhcp) to
//! iPXE clients. In address mode a PXE client gets *no* 60 `PXEClient` / 43:
//! edk2 treats an offer with 60 `PXEClient` but no discovery sub-options as a
//! "BINL" offer and goes on to ask port 4011, and dnsmasq's plain `dhcp-boot`
//! (what the rig verified with OVMF and SeaBIOS) sends neither. In proxy mode
//! they are required: BIOS PXE and iPXE get 43 = {6: 8} (boot the file named
//! in the offer, as pixiecore does); UEFI PXE gets no 43, so it sends a
//! port-4011 REQUEST to siaddr (pixiecore's observation: some UEFI firmware
//! ignores proxy offers that bypass discovery), answered by a proxy ACK.
//!
//! Replies are padded to the 300-byte BOOTP minimum and kept within the
//! client's option 57 (minimum 576, less 28 bytes of IP + UDP header): when too
//! big, options the client did not ask for (55) are dropped first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable};

use super::classify::{ClientMessage, DhcpRequest};
use super::opts::{self, code, PxeVendorOpts};
use crate::model::Mac;

/// The DHCP server port (relay agents listen here too).
pub const SERVER_PORT: u16 = 67;
/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// The PXE boot server port (proxyDHCP step 2).
pub const PXE_PORT: u16 = 4011;
/// BOOTP's minimum message size; some PXE ROMs drop shorter replies.
pub const BOOTP_MIN_LEN: usize = 300;
/// The size every client must accept (RFC 2131 2), as an IP datagram.
pub const DEFAULT_MAX_MESSAGE: usize = 576;
const IP_UDP_HEADERS: usize = 28;

/// What the boot policy decided for this request: filled in by the caller's
/// policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None` = proxy mode (no address; boot information only).
    pub yiaddr: Option<Ipv4Addr>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub lease_secs: u32,
    pub boot: Option<BootFile>,
}

impl Answer {
    /// A proxyDHCP answer: the boot file alone, no address (the site's DHCP
    /// server gives that).
    pub fn boot_only(boot: Option<BootFile>) -> Answer {
        Answer {
            yiaddr: None,
            subnet_mask: None,
            router: None,
            dns: vec![],
            domain: None,
            hostname: None,
            lease_secs: 0,
            boot,
        }
    }
}

/// Where the client boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    /// siaddr; TFTP server, and where UEFI proxyDHCP clients send their
    /// port-4011 request (so in proxy mode it must be this host).
    pub next_server: Ipv4Addr,
    /// TFTP name or `http://` URL.
    pub filename: String,
    /// The file is an HTTP boot URL: send 60 `HTTPClient`.
    pub http_client: bool,
    /// The client is iPXE (send 175.176 = 1 even if the request did not show it).
    pub ipxe: bool,
}

/// Per-socket server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerParams {
    /// Option 54 and our identity in REQUESTs.
    pub server_id: Ipv4Addr,
    /// Where clients listen (68; tests use another).
    pub client_port: u16,
    /// Where "broadcast" replies go (255.255.255.255:68; tests use 127.0.0.1:port).
    pub broadcast: SocketAddr,
    /// proxyDHCP: never hand out addresses.
    pub proxy: bool,
}

impl ServerParams {
    /// Production settings: client port 68, limited broadcast.
    pub fn new(server_id: Ipv4Addr, proxy: bool) -> ServerParams {
        ServerParams {
            server_id,
            client_port: CLIENT_PORT,
            broadcast: SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), CLIENT_PORT),
            proxy,
        }
    }
}

/// The kind of reply built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    Offer,
    Ack,
    Nak,
    ProxyOffer,
    ProxyAck,
}

impl ReplyKind {
    pub const COUNT: usize = 5;
    /// In declaration order: `ALL[k as usize] == k`.
    pub const ALL: [ReplyKind; Self::COUNT] = [
        ReplyKind::Offer,
        ReplyKind::Ack,
        ReplyKind::Nak,
        ReplyKind::ProxyOffer,
        ReplyKind::ProxyAck,
    ];

    /// snake_case name (metric labels).
    pub fn label(self) -> &'static str {
        match self {
            ReplyKind::Offer => "offer",
            ReplyKind::Ack => "ack",
            ReplyKind::Nak => "nak",
            ReplyKind::ProxyOffer => "proxy_offer",
            ReplyKind::ProxyAck => "proxy_ack",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Offer => "OFFER",
            ReplyKind::Ack => "ACK",
            ReplyKind::Nak => "NAK",
            ReplyKind::ProxyOffer => "proxy OFFER",
            ReplyKind::ProxyAck => "proxy ACK",
        }
    }

    fn is_proxy(self) -> bool {
        matches!(self, ReplyKind::ProxyOffer | ReplyKind::ProxyAck)
    }
}

/// A reply ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub bytes: Vec<u8>,
    pub yiaddr: Option<Ipv4Addr>,
    pub dest: SocketAddr,
}

/// What a RELEASE / DECLINE tells the (future) lease store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Released { mac: Mac, ip: Ipv4Addr },
    Declined { mac: Mac, ip: Option<Ipv4Addr> },
}

/// Why no reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// The policy returned `None` (unknown MAC...).
    NoAnswer,
    /// REQUEST selecting another server, or a lease REQUEST seen by a proxy.
    OtherServer,
    /// REQUEST with neither option 50 nor ciaddr.
    NoRequestedAddress,
    /// Proxy mode: not a PXE / HTTP boot client, or no boot file to offer.
    NotBootClient,
    /// INFORM in proxy mode.
    ProxyInform,
    /// The reply cannot fit the client's maximum message size.
    TooBig,
    /// dhcproto refused to encode the reply.
    Encode,
}

impl IgnoreReason {
    pub const COUNT: usize = 7;
    /// In declaration order: `ALL[r as usize] == r`.
    pub const ALL: [IgnoreReason; Self::COUNT] = [
        IgnoreReason::NoAnswer,
        IgnoreReason::OtherServer,
        IgnoreReason::NoRequestedAddress,
        IgnoreReason::NotBootClient,
        IgnoreReason::ProxyInform,
        IgnoreReason::TooBig,
        IgnoreReason::Encode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::NoAnswer => "no_answer",
            IgnoreReason::OtherServer => "other_server",
            IgnoreReason::NoRequestedAddress => "no_requested_address",
            IgnoreReason::NotBootClient => "not_boot_client",
            IgnoreReason::ProxyInform => "proxy_inform",
            IgnoreReason::TooBig => "too_big",
            IgnoreReason::Encode => "encode",
        }
    }
}

/// The result of handling one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    Event(LeaseEvent),
    Ignore(IgnoreReason),
}

/// Build the reply bytes for `req` (see the module table). `None` when no
/// reply is due; [`respond`] says why and where a reply goes.
pub fn build_reply(req: &DhcpRequest, ans: &Answer, srv: &ServerParams) -> Option<Vec<u8>> {
    match respond(req, Some(ans), srv) {
        Outcome::Reply(r) => Some(r.bytes),
        _ => None,
    }
}

/// Where a reply to `req` goes, RFC 2131 4.1:
/// giaddr set → giaddr:67 (the relay, on the server port); else ciaddr set →
/// ciaddr:client_port; else `srv.broadcast`. The RFC's "unicast to yiaddr /
/// chaddr when the broadcast bit is clear" needs an ARP entry we cannot add
/// without raw sockets, so that case broadcasts too (as dnsmasq does without
/// ARP access); `reply_yiaddr` is kept for that future.
pub fn destination(
    req: &DhcpRequest,
    _reply_yiaddr: Option<Ipv4Addr>,
    srv: &ServerParams,
) -> SocketAddr {
    if !req.giaddr.is_unspecified() {
        SocketAddr::new(IpAddr::V4(req.giaddr), SERVER_PORT)
    } else if !req.ciaddr.is_unspecified() {
        SocketAddr::new(IpAddr::V4(req.ciaddr), srv.client_port)
    } else {
        srv.broadcast
    }
}

fn nak_destination(req: &DhcpRequest, srv: &ServerParams) -> SocketAddr {
    // RFC 2131 4.1: a NAK goes to the relay, or is broadcast; never to ciaddr.
    if !req.giaddr.is_unspecified() {
        SocketAddr::new(IpAddr::V4(req.giaddr), SERVER_PORT)
    } else {
        srv.broadcast
    }
}

fn proxy_ack_destination(req: &DhcpRequest, srv: &ServerParams) -> SocketAddr {
    // PXE boot server replies go back to the requester's address and port
    // (it may have used 68 or 4011 as its source port).
    match req.src {
        Some(s) if !s.ip().is_unspecified() && s.port() != 0 => s,
        _ => destination(req, None, srv),
    }
}

/// Decide and build. `ans` is the policy's answer (`None` = ignore); RELEASE
/// and DECLINE need none.
pub fn respond(req: &DhcpRequest, ans: Option<&Answer>, srv: &ServerParams) -> Outcome {
    if let Some(ev) = lease_event(req) {
        return Outcome::Event(ev);
    }
    let Some(ans) = ans else {
        return Outcome::Ignore(IgnoreReason::NoAnswer);
    };
    let address = if srv.proxy { None } else { ans.yiaddr };
    let boot_client = req.pxe_client || req.http_client;

    let (kind, yiaddr) = match (req.msg_type, address) {
        (ClientMessage::Discover, Some(ip)) => (ReplyKind::Offer, Some(ip)),
        (ClientMessage::Discover, None) => {
            if !boot_client || ans.boot.is_none() {
                return Outcome::Ignore(IgnoreReason::NotBootClient);
            }
            (ReplyKind::ProxyOffer, None)
        }
        (ClientMessage::Request, Some(ip)) => {
            if req.server_id.is_some_and(|s| s != srv.server_id) {
                return Outcome::Ignore(IgnoreReason::OtherServer);
            }
            let asked = req
                .requested_ip
                .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr));
            match asked {
                None => return Outcome::Ignore(IgnoreReason::NoRequestedAddress),
                Some(a) if a == ip => (ReplyKind::Ack, Some(ip)),
                Some(_) => (ReplyKind::Nak, None),
            }
        }
        (ClientMessage::Request, None) => {
            if !(req.boot_server_port || req.server_id == Some(srv.server_id)) {
                return Outcome::Ignore(IgnoreReason::OtherServer);
            }
            if ans.boot.is_none() {
                return Outcome::Ignore(IgnoreReason::NotBootClient);
            }
            (ReplyKind::ProxyAck, None)
        }
        (ClientMessage::Inform, Some(_)) => (ReplyKind::Ack, None),
        (ClientMessage::Inform, None) => return Outcome::Ignore(IgnoreReason::ProxyInform),
        // Handled by `lease_event` above.
        (ClientMessage::Release | ClientMessage::Decline, _) => {
            return Outcome::Ignore(IgnoreReason::NoAnswer)
        }
    };

    let dest = match kind {
        ReplyKind::Nak => nak_destination(req, srv),
        ReplyKind::ProxyAck => proxy_ack_destination(req, srv),
        _ => destination(req, yiaddr, srv),
    };
    match encode(req, ans, srv, kind, yiaddr) {
        Ok(bytes) => Outcome::Reply(Reply {
            kind,
            bytes,
            yiaddr,
            dest,
        }),
        Err(r) => Outcome::Ignore(r),
    }
}

fn lease_event(req: &DhcpRequest) -> Option<LeaseEvent> {
    match req.msg_type {
        ClientMessage::Release => Some(LeaseEvent::Released {
            mac: req.mac,
            ip: req.ciaddr,
        }),
        ClientMessage::Decline => Some(LeaseEvent::Declined {
            mac: req.mac,
            ip: req.requested_ip,
        }),
        _ => None,
    }
}

fn raw_opt(c: u8, data: &[u8]) -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(OptionCode::from(c), data.to_vec()))
}

/// Option 82 back to the relay, typed so dhcproto puts it last (RFC 3046 2.2).
fn relay_opt(raw: &[u8]) -> Option<DhcpOption> {
    let mut tlv = vec![code::RELAY_AGENT_INFO, u8::try_from(raw.len()).ok()?];
    tlv.extend_from_slice(raw);
    match DhcpOption::decode(&mut Decoder::new(&tlv)) {
        Ok(o @ DhcpOption::RelayAgentInformation(_)) => Some(o),
        _ => None,
    }
}

fn max_len(req: &DhcpRequest) -> usize {
    let m = req
        .max_message_size
        .map_or(DEFAULT_MAX_MESSAGE, usize::from)
        .clamp(DEFAULT_MAX_MESSAGE, 1500);
    m - IP_UDP_HEADERS
}

fn encode(
    req: &DhcpRequest,
    ans: &Answer,
    srv: &ServerParams,
    kind: ReplyKind,
    yiaddr: Option<Ipv4Addr>,
) -> Result<Vec<u8>, IgnoreReason> {
    let nak = kind == ReplyKind::Nak;
    let boot = if nak { None } else { ans.boot.as_ref() };
    let ciaddr = match kind {
        ReplyKind::Ack | ReplyKind::ProxyAck => req.ciaddr,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let siaddr = boot.map_or(Ipv4Addr::UNSPECIFIED, |b| b.next_server);
    let mut m = Message::new_with_id(
        req.xid,
        ciaddr,
        yiaddr.unwrap_or(Ipv4Addr::UNSPECIFIED),
        siaddr,
        req.giaddr,
        &req.mac.0,
    );
    m.set_opcode(Opcode::BootReply).set_htype(HType::Eth);
    let mut flags = Flags::new(if req.broadcast { 0x8000 } else { 0 });
    if nak && !req.giaddr.is_unspecified() {
        flags = flags.set_broadcast();
    }
    m.set_flags(flags);
    if let Some(b) = boot {
        if b.filename.len() < 128 {
            m.set_fname_str(&b.filename);
        }
    }

    let mt = match kind {
        ReplyKind::Offer | ReplyKind::ProxyOffer => MessageType::Offer,
        ReplyKind::Ack | ReplyKind::ProxyAck => MessageType::Ack,
        ReplyKind::Nak => MessageType::Nak,
    };
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(mt));
    o.insert(DhcpOption::ServerIdentifier(srv.server_id));
    if nak {
        o.insert(DhcpOption::Message(
            "requested address is not this client's".to_string(),
        ));
    }
    if yiaddr.is_some() {
        o.insert(DhcpOption::AddressLeaseTime(ans.lease_secs));
        if ans.lease_secs != u32::MAX {
            o.insert(DhcpOption::Renewal(ans.lease_secs / 2));
            o.insert(DhcpOption::Rebinding(
                (u64::from(ans.lease_secs) * 7 / 8) as u32,
            ));
        }
    }
    if !nak && !kind.is_proxy() {
        if let Some(mask) = ans.subnet_mask {
            o.insert(DhcpOption::SubnetMask(mask));
        }
        if let Some(r) = ans.router {
            o.insert(DhcpOption::Router(vec![r]));
        }
        if !ans.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(ans.dns.clone()));
        }
        if let Some(d) = ans.domain.as_ref().filter(|d| !d.is_empty()) {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(h) = ans.hostname.as_ref().filter(|h| !h.is_empty()) {
            o.insert(DhcpOption::Hostname(h.clone()));
        }
    }
    if let Some(b) = boot {
        o.insert(DhcpOption::BootfileName(b.filename.as_bytes().to_vec()));
        if b.http_client {
            o.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
        } else {
            o.insert(DhcpOption::TFTPServerName(
                b.next_server.to_string().into_bytes(),
            ));
        }
        if kind.is_proxy() {
            if !b.http_client {
                o.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            }
            if let Some(v) = pxe_vendor_for_proxy(req, b, kind) {
                o.insert(DhcpOption::VendorExtensions(v));
            }
            if let Some(id) = &req.machine_id {
                o.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
            }
        }
        if req.ipxe || b.ipxe {
            o.insert(raw_opt(code::IPXE_ENCAP, &opts::encode_ipxe_no_pxedhcp()));
        }
    }
    if !req.giaddr.is_unspecified() {
        if let Some(r) = req.relay_agent_info.as_deref().and_then(relay_opt) {
            o.insert(r);
        }
    }

    // Fit the client's maximum message size: drop what it did not ask for first.
    let limit = max_len(req);
    let mut droppable: Vec<u8> = vec![
        code::RENEWAL_TIME,
        code::REBINDING_TIME,
        code::CLIENT_MACHINE_ID,
        code::HOSTNAME,
        code::DOMAIN_NAME,
        code::TFTP_SERVER_NAME,
        code::DNS,
    ];
    if m.fname().is_some() {
        // The name is in `file` already.
        droppable.push(code::BOOTFILE_NAME);
    }
    droppable.sort_by_key(|c| req.requested(*c));
    let mut droppable = droppable.into_iter();
    loop {
        let mut bytes = m.to_vec().map_err(|_| IgnoreReason::Encode)?;
        if bytes.len() <= limit {
            if bytes.len() < BOOTP_MIN_LEN {
                bytes.resize(BOOTP_MIN_LEN, opts::PAD);
            }
            return Ok(bytes);
        }
        loop {
            let Some(c) = droppable.next() else {
                return Err(IgnoreReason::TooBig);
            };
            if m.opts_mut().remove(OptionCode::from(c)).is_some() {
                break;
            }
        }
    }
}

/// Option 43 in proxy replies. ProxyOffer: {6: 8} for BIOS PXE and iPXE,
/// none for UEFI PXE (it then asks port 4011). ProxyAck: {6: 8} plus the
/// client's boot item (71) echoed.
fn pxe_vendor_for_proxy(req: &DhcpRequest, b: &BootFile, kind: ReplyKind) -> Option<Vec<u8>> {
    if b.http_client {
        return None;
    }
    let uefi_pxe = req.arch.is_some_and(|a| a.is_uefi()) && !req.ipxe && !b.ipxe;
    if kind == ReplyKind::ProxyOffer && uefi_pxe {
        return None;
    }
    let v = PxeVendorOpts {
        discovery_control: Some(opts::pxe::DISCOVERY_USE_BOOTFILE),
        boot_item: if kind == ReplyKind::ProxyAck {
            req.pxe_vendor.as_ref().and_then(|p| p.boot_item)
        } else {
            None
        },
        other: vec![],
    };
    Some(opts::encode_pxe_vendor(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::classify::fixtures::*;
    use crate::dhcp::classify::{classify, DhcpRequest};
    use dhcproto::v4::MessageType;
    use std::collections::BTreeMap;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
    const CLIENT_PORT_T: u16 = 6868;

    fn srv(proxy: bool) -> ServerParams {
        ServerParams {
            server_id: SERVER,
            client_port: CLIENT_PORT_T,
            broadcast: "255.255.255.255:6868".parse().unwrap(),
            proxy,
        }
    }

    fn boot(filename: &str, http: bool, ipxe: bool) -> BootFile {
        BootFile {
            next_server: SERVER,
            filename: filename.to_string(),
            http_client: http,
            ipxe,
        }
    }

    fn answer(boot: Option<BootFile>) -> Answer {
        Answer {
            yiaddr: Some(IP),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(SERVER),
            dns: vec![SERVER, Ipv4Addr::new(9, 9, 9, 9)],
            domain: Some("lab.example".to_string()),
            hostname: Some("node50".to_string()),
            lease_secs: 600,
            boot,
        }
    }

    fn req(m: &Message) -> DhcpRequest {
        classify(&bytes(m)).unwrap()
    }

    /// Decode a reply and return its options by code, as raw TLV values.
    fn decode(b: &[u8]) -> (Message, BTreeMap<u8, Vec<u8>>) {
        assert!(b.len() >= BOOTP_MIN_LEN, "reply is {} bytes", b.len());
        assert_eq!(b[0], 2, "BOOTREPLY");
        let m = Message::from_bytes(b).expect("dhcproto decodes our reply");
        let raw = opts::RawOptions::parse(&b[240..]).expect("strict walk");
        (m, raw.iter().map(|(c, v)| (c, v.to_vec())).collect())
    }

    fn reply(r: &DhcpRequest, a: Option<&Answer>, s: &ServerParams) -> Reply {
        match respond(r, a, s) {
            Outcome::Reply(rep) => rep,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn file_of(m: &Message) -> String {
        let f = m.fname().unwrap_or_default();
        String::from_utf8(f.iter().copied().take_while(|b| *b != 0).collect()).unwrap()
    }

    #[test]
    fn offer_to_ipxe_bios() {
        let r = req(&seabios_ipxe_discover());
        let a = answer(Some(boot("http://10.77.0.1:8080/boot.ipxe", false, true)));
        let rep = reply(&r, Some(&a), &srv(false));
        assert_eq!(rep.kind, ReplyKind::Offer);
        assert_eq!(rep.yiaddr, Some(IP));
        assert_eq!(rep.dest, srv(false).broadcast);
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.xid(), r.xid);
        assert_eq!(m.yiaddr(), IP);
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), SERVER);
        assert_eq!(m.chaddr(), &MAC);
        assert!(m.flags().broadcast(), "request's broadcast bit copied");
        assert_eq!(file_of(&m), "http://10.77.0.1:8080/boot.ipxe");
        let want: BTreeMap<u8, Vec<u8>> = [
            (1, vec![255, 255, 255, 0]),
            (3, vec![10, 77, 0, 1]),
            (6, vec![10, 77, 0, 1, 9, 9, 9, 9]),
            (12, b"node50".to_vec()),
            (15, b"lab.example".to_vec()),
            (51, 600u32.to_be_bytes().to_vec()),
            (53, vec![2]),
            (54, vec![10, 77, 0, 1]),
            (58, 300u32.to_be_bytes().to_vec()),
            (59, 525u32.to_be_bytes().to_vec()),
            (66, b"10.77.0.1".to_vec()),
            (67, b"http://10.77.0.1:8080/boot.ipxe".to_vec()),
            (175, vec![0xb0, 1, 1]),
        ]
        .into_iter()
        .collect();
        assert_eq!(o, want);
        assert_eq!(build_reply(&r, &a, &srv(false)), Some(rep.bytes));
    }

    #[test]
    fn offer_to_ovmf_pxe_is_plain_dhcp_with_bootfile() {
        let r = req(&ovmf_pxe_discover());
        let a = answer(Some(boot("ipxe.efi", false, false)));
        let rep = reply(&r, Some(&a), &srv(false));
        let (m, o) = decode(&rep.bytes);
        assert_eq!(file_of(&m), "ipxe.efi");
        assert_eq!(m.siaddr(), SERVER);
        assert_eq!(o.get(&67).map(Vec::as_slice), Some(&b"ipxe.efi"[..]));
        assert_eq!(o.get(&66).map(Vec::as_slice), Some(&b"10.77.0.1"[..]));
        for absent in [43u8, 60, 97, 175] {
            assert!(!o.contains_key(&absent), "option {absent} in {o:?}");
        }
        assert!(!m.flags().broadcast());
        // Padding is zeros after End.
        let mut i = 240;
        while rep.bytes[i] != 255 {
            i += 2 + usize::from(rep.bytes[i + 1]);
        }
        assert!(rep.bytes[i + 1..].iter().all(|b| *b == 0));
    }

    #[test]
    fn offer_to_uefi_http_boot() {
        let r = req(&uefi_http_discover());
        let url = "http://10.77.0.1:8080/boot/ipxe.efi";
        let a = answer(Some(boot(url, true, false)));
        let (m, o) = decode(&reply(&r, Some(&a), &srv(false)).bytes);
        assert_eq!(o.get(&60).map(Vec::as_slice), Some(&b"HTTPClient"[..]));
        assert_eq!(o.get(&67).map(Vec::as_slice), Some(url.as_bytes()));
        assert_eq!(file_of(&m), url);
        assert!(!o.contains_key(&66) && !o.contains_key(&175) && !o.contains_key(&43));
    }

    #[test]
    fn httpclient_and_175_only_where_due() {
        // (fixture, boot http, boot ipxe) -> (60 HTTPClient, 175)
        let cases: Vec<(&str, Message, bool, bool, bool, bool)> = vec![
            ("ipxe", seabios_ipxe_discover(), false, false, false, true),
            ("ovmf", ovmf_pxe_discover(), false, false, false, false),
            ("http", uefi_http_discover(), true, false, true, false),
            ("arm64", arm64_pxe_discover(), false, false, false, false),
            (
                "policy says ipxe",
                arm64_pxe_discover(),
                false,
                true,
                false,
                true,
            ),
        ];
        for (name, m, http, ipxe, want60, want175) in cases {
            let r = req(&m);
            let a = answer(Some(boot("f", http, ipxe)));
            let (_, o) = decode(&reply(&r, Some(&a), &srv(false)).bytes);
            assert_eq!(
                o.get(&60).is_some_and(|v| v == b"HTTPClient"),
                want60,
                "{name}"
            );
            assert_eq!(o.contains_key(&175), want175, "{name}");
        }
    }

    #[test]
    fn long_url_goes_in_option_67_only() {
        let r = req(&uefi_http_discover());
        let url = format!("http://10.77.0.1:8080/{}", "x".repeat(200));
        let a = answer(Some(boot(&url, true, false)));
        let (m, o) = decode(&reply(&r, Some(&a), &srv(false)).bytes);
        assert_eq!(m.fname(), None);
        assert_eq!(o.get(&67).map(Vec::as_slice), Some(url.as_bytes()));
    }

    #[test]
    fn request_ack_nak_ignore() {
        let a = answer(Some(boot("undionly.kpxe", false, false)));
        let s = srv(false);

        let r = req(&ipxe_request(IP, SERVER));
        let rep = reply(&r, Some(&a), &s);
        assert_eq!(rep.kind, ReplyKind::Ack);
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.yiaddr(), IP);
        assert_eq!(o[&53], vec![5]);
        assert_eq!(o[&51], 600u32.to_be_bytes().to_vec());

        // Asks for an address that is not its reservation: NAK, broadcast.
        let r = req(&ipxe_request(Ipv4Addr::new(10, 77, 0, 99), SERVER));
        let rep = reply(&r, Some(&a), &s);
        assert_eq!(rep.kind, ReplyKind::Nak);
        assert_eq!(rep.dest, s.broadcast);
        assert_eq!(rep.bytes.len(), BOOTP_MIN_LEN, "short NAK padded to 300");
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.fname(), None);
        assert_eq!(o[&53], vec![6]);
        assert_eq!(o[&54], SERVER.octets().to_vec());
        for absent in [1u8, 3, 51, 66, 67] {
            assert!(!o.contains_key(&absent), "NAK carries {absent}");
        }

        // Selecting another server: silence.
        let r = req(&ipxe_request(IP, Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(
            respond(&r, Some(&a), &s),
            Outcome::Ignore(IgnoreReason::OtherServer)
        );

        // Renewing: no 50/54, ciaddr set: ACK unicast to ciaddr.
        let mut m = base(MessageType::Request, 77);
        m.set_ciaddr(IP);
        let r = req(&m);
        let rep = reply(&r, Some(&a), &s);
        assert_eq!(rep.kind, ReplyKind::Ack);
        assert_eq!(rep.dest, SocketAddr::new(IP.into(), CLIENT_PORT_T));
        assert_eq!(decode(&rep.bytes).0.ciaddr(), IP);

        // Neither 50 nor ciaddr.
        let r = req(&base(MessageType::Request, 78));
        assert_eq!(
            respond(&r, Some(&a), &s),
            Outcome::Ignore(IgnoreReason::NoRequestedAddress)
        );

        // Unknown MAC (policy None).
        assert_eq!(
            respond(&r, None, &s),
            Outcome::Ignore(IgnoreReason::NoAnswer)
        );
    }

    #[test]
    fn inform_release_decline() {
        let a = answer(None);
        let s = srv(false);
        let mut m = base(MessageType::Inform, 5);
        m.set_ciaddr(IP);
        let r = req(&m);
        let rep = reply(&r, Some(&a), &s);
        assert_eq!(rep.kind, ReplyKind::Ack);
        assert_eq!(rep.yiaddr, None);
        assert_eq!(rep.dest, SocketAddr::new(IP.into(), CLIENT_PORT_T));
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.ciaddr(), IP);
        assert!(!o.contains_key(&51), "no lease time in an INFORM ACK");
        assert_eq!(o[&1], vec![255, 255, 255, 0]);

        let mut m = base(MessageType::Release, 6);
        m.set_ciaddr(IP);
        assert_eq!(
            respond(&req(&m), Some(&a), &s),
            Outcome::Event(LeaseEvent::Released {
                mac: Mac(MAC),
                ip: IP
            })
        );
        let mut m = base(MessageType::Decline, 7);
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::RequestedIpAddress(IP));
        assert_eq!(
            respond(&req(&m), None, &s),
            Outcome::Event(LeaseEvent::Declined {
                mac: Mac(MAC),
                ip: Some(IP)
            })
        );
    }

    fn proxy_answer(b: BootFile) -> Answer {
        Answer::boot_only(Some(b))
    }

    #[test]
    fn proxy_offers() {
        let s = srv(true);
        // BIOS iPXE: 43 = {6: 8}, 60 PXEClient, 97 echoed, no address options.
        let r = req(&seabios_ipxe_discover());
        let rep = reply(
            &r,
            Some(&answer(Some(boot("undionly.kpxe", false, false)))),
            &s,
        );
        assert_eq!(rep.kind, ReplyKind::ProxyOffer);
        assert_eq!(
            rep.yiaddr, None,
            "proxy never gives an address, whatever the answer"
        );
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), SERVER);
        assert_eq!(file_of(&m), "undionly.kpxe");
        assert_eq!(o[&53], vec![2]);
        assert_eq!(o[&60], b"PXEClient".to_vec());
        assert_eq!(o[&43], vec![6, 1, 8, 255]);
        assert_eq!(o[&97].len(), 17);
        for absent in [1u8, 3, 6, 12, 15, 51] {
            assert!(!o.contains_key(&absent), "proxy offer carries {absent}");
        }

        // UEFI PXE: no 43, so it asks port 4011.
        let r = req(&ovmf_pxe_discover());
        let (_, o) =
            decode(&reply(&r, Some(&proxy_answer(boot("ipxe.efi", false, false))), &s).bytes);
        assert_eq!(o[&60], b"PXEClient".to_vec());
        assert!(!o.contains_key(&43));

        // HTTP boot in proxy mode: 60 HTTPClient.
        let r = req(&uefi_http_discover());
        let (_, o) =
            decode(&reply(&r, Some(&proxy_answer(boot("http://x/y", true, false))), &s).bytes);
        assert_eq!(o[&60], b"HTTPClient".to_vec());

        // Non-boot client, or no boot file: ignored.
        let mut m = base(MessageType::Discover, 3);
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::ClassIdentifier(
                b"udhcp 1.35.0".to_vec(),
            ));
        assert_eq!(
            respond(&req(&m), Some(&proxy_answer(boot("f", false, false))), &s),
            Outcome::Ignore(IgnoreReason::NotBootClient)
        );
        let mut a = proxy_answer(boot("f", false, false));
        a.boot = None;
        assert_eq!(
            respond(&req(&ovmf_pxe_discover()), Some(&a), &s),
            Outcome::Ignore(IgnoreReason::NotBootClient)
        );
        // A lease REQUEST to the real DHCP server: not ours.
        let r = req(&ipxe_request(IP, Ipv4Addr::new(10, 77, 0, 254)));
        assert_eq!(
            respond(&r, Some(&a), &s),
            Outcome::Ignore(IgnoreReason::OtherServer)
        );
    }

    #[test]
    fn proxy_ack_on_port_4011() {
        let s = srv(true);
        let mut m = ovmf_pxe_discover();
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::MessageType(MessageType::Request));
        m.set_ciaddr(IP);
        let b = with_raw(&m, &[43, 7, 71, 4, 0x80, 0x00, 0x00, 0x00, 255]);
        let mut r = classify(&b).unwrap();
        r.boot_server_port = true;
        r.src = Some(SocketAddr::new(IP.into(), 4011));
        let rep = reply(&r, Some(&proxy_answer(boot("ipxe.efi", false, false))), &s);
        assert_eq!(rep.kind, ReplyKind::ProxyAck);
        assert_eq!(
            rep.dest,
            SocketAddr::new(IP.into(), 4011),
            "back to the sender"
        );
        let (m, o) = decode(&rep.bytes);
        assert_eq!(o[&53], vec![5]);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.ciaddr(), IP);
        assert_eq!(file_of(&m), "ipxe.efi");
        assert_eq!(o[&43], vec![6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255]);
        assert_eq!(o[&60], b"PXEClient".to_vec());

        // Not on 4011 and not naming us: a lease REQUEST for the real server.
        r.boot_server_port = false;
        assert_eq!(
            respond(&r, Some(&proxy_answer(boot("f", false, false))), &s),
            Outcome::Ignore(IgnoreReason::OtherServer)
        );
    }

    #[test]
    fn destination_table() {
        let s = srv(false);
        let base_req = req(&ovmf_pxe_discover());
        let relay = Ipv4Addr::new(10, 78, 0, 1);
        let cases: Vec<(&str, Ipv4Addr, Ipv4Addr, bool, SocketAddr)> = vec![
            (
                "giaddr",
                relay,
                Ipv4Addr::UNSPECIFIED,
                false,
                SocketAddr::new(relay.into(), 67),
            ),
            (
                "giaddr wins over ciaddr",
                relay,
                IP,
                true,
                SocketAddr::new(relay.into(), 67),
            ),
            (
                "ciaddr",
                Ipv4Addr::UNSPECIFIED,
                IP,
                false,
                SocketAddr::new(IP.into(), CLIENT_PORT_T),
            ),
            (
                "ciaddr wins over broadcast bit",
                Ipv4Addr::UNSPECIFIED,
                IP,
                true,
                SocketAddr::new(IP.into(), CLIENT_PORT_T),
            ),
            (
                "broadcast bit",
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                true,
                s.broadcast,
            ),
            (
                "no unicast possible",
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::UNSPECIFIED,
                false,
                s.broadcast,
            ),
        ];
        for (name, giaddr, ciaddr, bcast, want) in cases {
            let mut r = base_req.clone();
            r.giaddr = giaddr;
            r.ciaddr = ciaddr;
            r.broadcast = bcast;
            assert_eq!(destination(&r, Some(IP), &s), want, "{name}");
        }
        // Loopback test setup: "broadcast" is any configured address.
        let lo = ServerParams {
            broadcast: "127.0.0.1:40068".parse().unwrap(),
            ..s.clone()
        };
        assert_eq!(destination(&base_req, Some(IP), &lo), lo.broadcast);
        assert_eq!(
            ServerParams::new(SERVER, false).broadcast,
            "255.255.255.255:68".parse().unwrap()
        );
    }

    #[test]
    fn relayed_offer_goes_to_relay_with_82() {
        let r = classify(&relayed_bytes()).unwrap();
        let rep = reply(
            &r,
            Some(&answer(Some(boot("ipxe.efi", false, false)))),
            &srv(false),
        );
        assert_eq!(rep.dest, "10.78.0.1:67".parse().unwrap());
        let (m, o) = decode(&rep.bytes);
        assert_eq!(m.giaddr(), Ipv4Addr::new(10, 78, 0, 1));
        assert_eq!(o[&82], RELAY_82.to_vec());
        // 82 is the last option before End.
        let mut last = None;
        for t in opts::tlvs(&rep.bytes[240..]) {
            last = Some(t.unwrap().0);
        }
        assert_eq!(last, Some(82));

        // NAK through a relay: to the relay, broadcast bit set.
        let mut m = relayed_discover();
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::MessageType(MessageType::Request));
        m.opts_mut()
            .insert(dhcproto::v4::DhcpOption::RequestedIpAddress(Ipv4Addr::new(
                10, 78, 0, 9,
            )));
        let rep = reply(&req(&m), Some(&answer(None)), &srv(false));
        assert_eq!(rep.kind, ReplyKind::Nak);
        assert_eq!(rep.dest, "10.78.0.1:67".parse().unwrap());
        assert!(decode(&rep.bytes).0.flags().broadcast());
    }

    #[test]
    fn respects_max_message_size() {
        // No option 57: 576 - 28 = 548 bytes. A 240-byte URL and long names
        // make the full reply bigger; unrequested options go first.
        let mut m = seabios_ipxe_discover();
        m.opts_mut().remove(OptionCode::MaxMessageSize);
        let r = req(&m);
        let mut a = answer(Some(boot(
            &format!("http://10.77.0.1/{}", "u".repeat(230)),
            false,
            true,
        )));
        a.hostname = Some("h".repeat(100));
        a.domain = Some("d".repeat(100));
        let rep = reply(&r, Some(&a), &srv(false));
        assert!(rep.bytes.len() <= 548, "{} bytes", rep.bytes.len());
        let (_, o) = decode(&rep.bytes);
        for must in [1u8, 3, 51, 53, 54, 67, 175] {
            assert!(o.contains_key(&must), "dropped {must}");
        }
        // The same with a roomy option 57 keeps everything.
        let r = req(&seabios_ipxe_discover());
        let rep = reply(&r, Some(&a), &srv(false));
        assert!(rep.bytes.len() > 548);
        let (_, o) = decode(&rep.bytes);
        assert!(o.contains_key(&12) && o.contains_key(&15));
        // Impossible to fit: no reply.
        let mut a2 = a.clone();
        a2.boot = Some(boot(&"z".repeat(600), false, false));
        let mut m = ovmf_pxe_discover();
        m.opts_mut().remove(OptionCode::MaxMessageSize);
        assert_eq!(
            respond(&req(&m), Some(&a2), &srv(false)),
            Outcome::Ignore(IgnoreReason::TooBig)
        );
    }
}
