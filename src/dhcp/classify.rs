//! Wire bytes → [`DhcpRequest`]: every field the boot policy and the reply
//! builder need, as typed values. Pure; a bad packet is a typed [`Malformed`]
//! reason, never a panic.
//!
//! The options are walked by our own strict walker ([`RawOptions`]) rather
//! than trusted to `dhcproto`, which silently stops at a malformed option,
//! keeps only the first entry of option 93 and ignores option overload. The
//! `dhcproto` decode is still kept in [`DhcpRequest::msg`] for reply building.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::{DhcpOption, Message};
use dhcproto::{Decodable, Decoder};

use super::opts::{
    self, code, IpxeOpts, PxeVendorOpts, RawOptions, TlvError, VendorClass, VendorKind,
};
use crate::model::{Arch, Mac};

/// Fixed BOOTP header length (op .. file).
pub const BOOTP_HEADER_LEN: usize = 236;
/// Header plus magic cookie: the smallest possible DHCP message.
pub const MIN_DHCP_LEN: usize = BOOTP_HEADER_LEN + 4;
/// Larger datagrams are refused (Ethernet MTU; DHCP clients send far less).
pub const MAX_PACKET: usize = 1500;

const OFF_SNAME: usize = 44;
const OFF_FILE: usize = 108;

/// The DHCP message types a client sends (RFC 2131 table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientMessage {
    Discover,
    Request,
    Decline,
    Release,
    Inform,
}

impl ClientMessage {
    pub const COUNT: usize = 5;
    /// In declaration order: `ALL[m as usize] == m`.
    pub const ALL: [ClientMessage; Self::COUNT] = [
        ClientMessage::Discover,
        ClientMessage::Request,
        ClientMessage::Decline,
        ClientMessage::Release,
        ClientMessage::Inform,
    ];

    /// Lower-case name (metric labels).
    pub fn label(self) -> &'static str {
        match self {
            ClientMessage::Discover => "discover",
            ClientMessage::Request => "request",
            ClientMessage::Decline => "decline",
            ClientMessage::Release => "release",
            ClientMessage::Inform => "inform",
        }
    }

    pub fn from_code(c: u8) -> Option<ClientMessage> {
        Some(match c {
            1 => ClientMessage::Discover,
            3 => ClientMessage::Request,
            4 => ClientMessage::Decline,
            7 => ClientMessage::Release,
            8 => ClientMessage::Inform,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientMessage::Discover => "DISCOVER",
            ClientMessage::Request => "REQUEST",
            ClientMessage::Decline => "DECLINE",
            ClientMessage::Release => "RELEASE",
            ClientMessage::Inform => "INFORM",
        }
    }
}

impl fmt::Display for ClientMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("truncated: {len} bytes, a DHCP message has at least {MIN_DHCP_LEN}")]
    Truncated { len: usize },
    #[error("oversized: {len} bytes, limit {MAX_PACKET}")]
    Oversized { len: usize },
    #[error("op {op} is not BOOTREQUEST")]
    NotRequest { op: u8 },
    #[error("htype {htype} / hlen {hlen}: only Ethernet (1 / 6) is served")]
    UnsupportedHardware { htype: u8, hlen: u8 },
    #[error("bad magic cookie {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("options: {0}")]
    Options(TlvError),
    #[error("option overload {value}: {err:?}")]
    Overload { value: u8, err: Option<TlvError> },
    #[error("option {code} has length {len}, expected {expected}")]
    BadOptionLength {
        code: u8,
        len: usize,
        expected: &'static str,
    },
    #[error("no message type (option 53)")]
    MissingMessageType,
    #[error("message type {0} is not one a client sends")]
    UnexpectedMessageType(u8),
    #[error("dhcproto decode failed: {0}")]
    Decode(String),
}

/// Coarse reason classes for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedClass {
    Truncated = 0,
    Oversized = 1,
    NotRequest = 2,
    Hardware = 3,
    Options = 4,
    MessageType = 5,
}

impl MalformedClass {
    pub const COUNT: usize = 6;
    pub const ALL: [MalformedClass; Self::COUNT] = [
        MalformedClass::Truncated,
        MalformedClass::Oversized,
        MalformedClass::NotRequest,
        MalformedClass::Hardware,
        MalformedClass::Options,
        MalformedClass::MessageType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MalformedClass::Truncated => "truncated",
            MalformedClass::Oversized => "oversized",
            MalformedClass::NotRequest => "not_request",
            MalformedClass::Hardware => "hardware",
            MalformedClass::Options => "options",
            MalformedClass::MessageType => "message_type",
        }
    }
}

impl Malformed {
    pub fn class(&self) -> MalformedClass {
        match self {
            Malformed::Truncated { .. } => MalformedClass::Truncated,
            Malformed::Oversized { .. } => MalformedClass::Oversized,
            Malformed::NotRequest { .. } => MalformedClass::NotRequest,
            Malformed::UnsupportedHardware { .. } => MalformedClass::Hardware,
            Malformed::BadMagic(_)
            | Malformed::Options(_)
            | Malformed::Overload { .. }
            | Malformed::BadOptionLength { .. }
            | Malformed::Decode(_) => MalformedClass::Options,
            Malformed::MissingMessageType | Malformed::UnexpectedMessageType(_) => {
                MalformedClass::MessageType
            }
        }
    }
}

/// A well-formed client message, decoded.
#[derive(Debug, Clone)]
pub struct DhcpRequest {
    pub msg_type: ClientMessage,
    pub xid: u32,
    /// The BROADCAST flag (RFC 2131 4.1).
    pub broadcast: bool,
    pub secs: u16,
    pub hops: u8,
    pub ciaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// chaddr (htype 1, hlen 6 only).
    pub mac: Mac,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61, raw (type byte first).
    pub client_id: Option<Vec<u8>>,
    /// From option 93 (first entry), else option 60's `Arch:` field.
    pub arch: Option<Arch>,
    /// Every option-93 entry, in the client's order.
    pub arch_codes: Vec<u16>,
    /// Option 60 parsed.
    pub vendor_class: Option<VendorClass>,
    /// Option 60 starts with `PXEClient`.
    pub pxe_client: bool,
    /// Option 60 starts with `HTTPClient`.
    pub http_client: bool,
    /// User class (77) contains `iPXE`, or option 175 is present.
    pub ipxe: bool,
    /// Option 175 parsed (lenient: `None` if absent or its sub-options are garbage).
    pub ipxe_opts: Option<IpxeOpts>,
    /// Option 77, split into classes (RFC 3004 or bare form).
    pub user_classes: Vec<Vec<u8>>,
    /// Option 43 as PXE sub-options (port-4011 requests carry 43.71), lenient.
    pub pxe_vendor: Option<PxeVendorOpts>,
    /// Option 97 (client machine identifier / UUID), raw; echoed to PXE clients.
    pub machine_id: Option<Vec<u8>>,
    /// Option 82 (relay agent information), raw; echoed when relayed (RFC 3046).
    pub relay_agent_info: Option<Vec<u8>>,
    /// Option 55, in the client's order.
    pub param_request_list: Vec<u8>,
    /// Option 57.
    pub max_message_size: Option<u16>,
    /// Option 12, trailing NULs removed, lossy UTF-8.
    pub hostname: Option<String>,
    /// Where the datagram came from; set by `serve` (`None` from `classify`).
    pub src: Option<SocketAddr>,
    /// Arrived on the PXE boot-server port 4011; set by `serve`.
    pub boot_server_port: bool,
    /// Every option, strictly parsed (overloaded fields included).
    pub options: RawOptions,
    /// dhcproto's decode of the same bytes (its options may be incomplete,
    /// see module doc; use the typed fields above).
    pub msg: Message,
}

impl DhcpRequest {
    /// Did the client ask for this option in its parameter request list?
    pub fn requested(&self, code: u8) -> bool {
        self.param_request_list.contains(&code)
    }
}

fn ipv4(b: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

fn exact<'a>(
    o: &'a RawOptions,
    c: u8,
    n: usize,
    expected: &'static str,
) -> Result<Option<&'a [u8]>, Malformed> {
    match o.get(c) {
        Some(v) if v.len() != n => Err(Malformed::BadOptionLength {
            code: c,
            len: v.len(),
            expected,
        }),
        v => Ok(v),
    }
}

fn opt_ipv4(o: &RawOptions, c: u8) -> Result<Option<Ipv4Addr>, Malformed> {
    Ok(exact(o, c, 4, "4")?.map(|v| ipv4(v, 0)))
}

/// dhcproto's typed option decoders `debug_assert!` these lengths: fed a
/// hostile packet, a debug build would panic. (Found by the length-mutation
/// proptest below; release builds return an error instead.)
fn dhcproto_safe(code: u8, len: usize) -> bool {
    match code {
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        152..=155 => len == 4,
        _ => true,
    }
}

/// dhcproto's view of the message, without handing it unchecked option
/// bytes: the header is decoded with an empty options area, then every option
/// we walked is decoded on its own (joined value, overloaded fields included).
/// Options dhcproto cannot decode are left out of `msg` (they are still in
/// [`DhcpRequest::options`]).
fn to_message(bytes: &[u8], o: &RawOptions) -> Result<Message, Malformed> {
    let mut msg = Message::from_bytes(&bytes[..MIN_DHCP_LEN])
        .map_err(|e| Malformed::Decode(e.to_string()))?;
    match o.get(code::OVERLOAD) {
        Some([1]) => msg.clear_fname(),
        Some([2]) => msg.clear_sname(),
        Some([3]) => {
            msg.clear_fname();
            msg.clear_sname();
        }
        _ => {}
    }
    for (c, v) in o.iter() {
        if !dhcproto_safe(c, v.len()) {
            continue;
        }
        let tlv = opts::encode_tlvs([(c, v)]);
        if let Ok(opt) = DhcpOption::decode(&mut Decoder::new(&tlv)) {
            msg.opts_mut().insert(opt);
        }
    }
    Ok(msg)
}

/// Decode one datagram.
pub fn classify(bytes: &[u8]) -> Result<DhcpRequest, Malformed> {
    let len = bytes.len();
    if len > MAX_PACKET {
        return Err(Malformed::Oversized { len });
    }
    if len < MIN_DHCP_LEN {
        return Err(Malformed::Truncated { len });
    }
    if bytes[0] != 1 {
        return Err(Malformed::NotRequest { op: bytes[0] });
    }
    let (htype, hlen) = (bytes[1], bytes[2]);
    if htype != 1 || hlen != 6 {
        return Err(Malformed::UnsupportedHardware { htype, hlen });
    }
    let magic: [u8; 4] = [bytes[236], bytes[237], bytes[238], bytes[239]];
    if magic != opts::MAGIC_COOKIE {
        return Err(Malformed::BadMagic(magic));
    }

    let mut o = RawOptions::parse(&bytes[MIN_DHCP_LEN..]).map_err(Malformed::Options)?;

    // Option overload (RFC 2131 4.1, RFC 2132 9.3): file, then sname, hold options.
    if let Some(v) = o.get(code::OVERLOAD) {
        let value = match v {
            [x @ 1..=3] => *x,
            [x] => {
                return Err(Malformed::Overload {
                    value: *x,
                    err: None,
                })
            }
            _ => {
                return Err(Malformed::BadOptionLength {
                    code: code::OVERLOAD,
                    len: v.len(),
                    expected: "1",
                })
            }
        };
        let file = &bytes[OFF_FILE..OFF_FILE + 128];
        let sname = &bytes[OFF_SNAME..OFF_SNAME + 64];
        for (bit, field) in [(1u8, file), (2u8, sname)] {
            if value & bit != 0 {
                o.extend_from(field).map_err(|e| Malformed::Overload {
                    value,
                    err: Some(e),
                })?;
            }
        }
    }

    let mt = match exact(&o, code::MESSAGE_TYPE, 1, "1")? {
        None => return Err(Malformed::MissingMessageType),
        Some(v) => v[0],
    };
    let msg_type = ClientMessage::from_code(mt).ok_or(Malformed::UnexpectedMessageType(mt))?;

    let requested_ip = opt_ipv4(&o, code::REQUESTED_IP)?;
    let server_id = opt_ipv4(&o, code::SERVER_ID)?;
    let max_message_size =
        exact(&o, code::MAX_MESSAGE_SIZE, 2, "2")?.map(|v| u16::from_be_bytes([v[0], v[1]]));

    let client_id = match o.get(code::CLIENT_ID) {
        Some(v) if v.len() < 2 => {
            return Err(Malformed::BadOptionLength {
                code: code::CLIENT_ID,
                len: v.len(),
                expected: ">= 2",
            })
        }
        v => v.map(<[u8]>::to_vec),
    };

    let arch_codes = match o.get(code::CLIENT_ARCH) {
        None => vec![],
        Some(v) => opts::parse_arch_list(v).ok_or(Malformed::BadOptionLength {
            code: code::CLIENT_ARCH,
            len: v.len(),
            expected: "a non-zero multiple of 2",
        })?,
    };

    let vendor_class = o.get(code::VENDOR_CLASS).map(opts::parse_vendor_class);
    let pxe_client = vendor_class
        .as_ref()
        .is_some_and(|v| v.kind == VendorKind::PxeClient);
    let http_client = vendor_class
        .as_ref()
        .is_some_and(|v| v.kind == VendorKind::HttpClient);
    let arch = arch_codes
        .first()
        .copied()
        .or_else(|| vendor_class.as_ref().and_then(|v| v.arch))
        .map(Arch::from_code);

    let user_class_raw = o.get(code::USER_CLASS);
    let user_classes = user_class_raw
        .map(|v| {
            opts::parse_user_class(v)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default();
    let ipxe_raw = o.get(code::IPXE_ENCAP);
    let ipxe =
        ipxe_raw.is_some() || user_class_raw.is_some_and(|v| opts::user_class_has(v, b"iPXE"));
    let ipxe_opts = ipxe_raw.and_then(|v| opts::parse_ipxe_opts(v).ok());
    let pxe_vendor = o
        .get(code::VENDOR_OPTS)
        .and_then(|v| opts::parse_pxe_vendor(v).ok());

    let hostname = o.get(code::HOSTNAME).and_then(|v| {
        let end = v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let s = String::from_utf8_lossy(&v[..end]).into_owned();
        (!s.is_empty()).then_some(s)
    });

    let msg = to_message(bytes, &o)?;

    let mac =
        Mac::from_slice(&bytes[28..34]).ok_or(Malformed::UnsupportedHardware { htype, hlen })?;

    Ok(DhcpRequest {
        msg_type,
        xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        broadcast: bytes[10] & 0x80 != 0,
        secs: u16::from_be_bytes([bytes[8], bytes[9]]),
        hops: bytes[3],
        ciaddr: ipv4(bytes, 12),
        giaddr: ipv4(bytes, 24),
        mac,
        requested_ip,
        server_id,
        client_id,
        arch,
        arch_codes,
        vendor_class,
        pxe_client,
        http_client,
        ipxe,
        ipxe_opts,
        user_classes,
        pxe_vendor,
        machine_id: o.get(code::CLIENT_MACHINE_ID).map(<[u8]>::to_vec),
        relay_agent_info: o.get(code::RELAY_AGENT_INFO).map(<[u8]>::to_vec),
        param_request_list: o
            .get(code::PARAM_REQUEST_LIST)
            .map(<[u8]>::to_vec)
            .unwrap_or_default(),
        max_message_size,
        hostname,
        src: None,
        boot_server_port: false,
        options: o,
        msg,
    })
}

/// Client packets for tests: built with dhcproto the way the real firmware
/// sends them (option sets taken from iPXE / edk2 sources and rig logs).
#[cfg(test)]
pub(crate) mod fixtures {
    use dhcproto::v4::{
        Architecture, DhcpOption, Flags, Message, MessageType, OptionCode, UnknownOption,
    };
    use dhcproto::Encodable;
    use std::net::Ipv4Addr;

    pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x77, 0x00, 0x50];
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    pub const UUID: [u8; 16] = [
        0x27, 0x94, 0x6b, 0x59, 0x9e, 0x4a, 0x4b, 0x1c, 0x8a, 0x39, 0x11, 0x22, 0x33, 0x44, 0x55,
        0x66,
    ];

    /// iPXE 1.0.0+git-20190125 option 175 on virtio-net: bus id, version, features.
    pub const IPXE_175: &[u8] = &[
        0xb1, 5, 1, 0x1a, 0xf4, 0x10, 0x00, 0xeb, 3, 1, 0, 0, 0x13, 1, 1, 0x15, 1, 1, 0x17, 1, 1,
        0x18, 1, 1, 0x19, 1, 1, 0x21, 1, 1, 0x22, 1, 1, 0x23, 1, 1, 0x27, 1, 1,
    ];

    fn prl(codes: &[u8]) -> DhcpOption {
        DhcpOption::ParameterRequestList(codes.iter().map(|c| OptionCode::from(*c)).collect())
    }

    fn unknown(code: u8, data: &[u8]) -> DhcpOption {
        DhcpOption::Unknown(UnknownOption::new(OptionCode::from(code), data.to_vec()))
    }

    fn guid() -> DhcpOption {
        let mut g = vec![0u8];
        g.extend_from_slice(&UUID);
        DhcpOption::ClientMachineIdentifier(g)
    }

    pub fn base(mt: MessageType, xid: u32) -> Message {
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.opts_mut().insert(DhcpOption::MessageType(mt));
        m
    }

    /// SeaBIOS + iPXE ROM (`undionly`-style), arch 0, user class iPXE, option 175.
    pub fn seabios_ipxe_discover() -> Message {
        let mut m = base(MessageType::Discover, 0x1a2b_3c4d);
        m.set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(0)));
        o.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
        o.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        o.insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        o.insert(prl(&[
            1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134,
            135, 175, 203,
        ]));
        o.insert(unknown(175, IPXE_175));
        let mut cid = vec![1u8];
        cid.extend_from_slice(&MAC);
        o.insert(DhcpOption::ClientIdentifier(cid));
        o.insert(guid());
        m
    }

    /// OVMF's own PXE (edk2 UefiPxeBcDxe), arch 7.
    pub fn ovmf_pxe_discover() -> Message {
        let mut m = base(MessageType::Discover, 0xee54_0c19);
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(prl(&[
            1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59,
            60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135,
        ]));
        o.insert(guid());
        o.insert(DhcpOption::ClientNetworkInterface(1, 3, 16));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(7)));
        o.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
        ));
        m
    }

    /// edk2 HttpBootDxe, arch 16.
    pub fn uefi_http_discover() -> Message {
        let mut m = base(MessageType::Discover, 0x0bad_cafe);
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(prl(&[1, 3, 6, 12, 15, 28, 43, 60, 66, 67]));
        o.insert(guid());
        o.insert(DhcpOption::ClientNetworkInterface(1, 3, 1));
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(16)));
        o.insert(DhcpOption::ClassIdentifier(
            b"HTTPClient:Arch:00016:UNDI:003001".to_vec(),
        ));
        m
    }

    /// ARM64 UEFI PXE, arch 11.
    pub fn arm64_pxe_discover() -> Message {
        let mut m = base(MessageType::Discover, 0x0a64_0011);
        let o = m.opts_mut();
        o.insert(DhcpOption::MaxMessageSize(1472));
        o.insert(prl(&[1, 3, 6, 12, 15, 43, 60, 66, 67, 97]));
        o.insert(guid());
        o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(11)));
        o.insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00011:UNDI:003000".to_vec(),
        ));
        m
    }

    /// OVMF PXE DISCOVER forwarded by a relay (giaddr, hops, option 82).
    pub fn relayed_discover() -> Message {
        let mut m = ovmf_pxe_discover();
        m.set_giaddr(Ipv4Addr::new(10, 78, 0, 1)).set_hops(1);
        m
    }

    /// Raw option 82 appended by [`relayed_bytes`]: circuit id "eth7".
    pub const RELAY_82: &[u8] = &[1, 4, b'e', b't', b'h', b'7'];

    pub fn relayed_bytes() -> Vec<u8> {
        with_raw(&relayed_discover(), &[&[82, 6], RELAY_82].concat())
    }

    /// iPXE REQUEST in SELECTING state: options 50 and 54.
    pub fn ipxe_request(requested: Ipv4Addr, server: Ipv4Addr) -> Message {
        let mut m = seabios_ipxe_discover();
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Request));
        o.insert(DhcpOption::RequestedIpAddress(requested));
        o.insert(DhcpOption::ServerIdentifier(server));
        m
    }

    pub fn bytes(m: &Message) -> Vec<u8> {
        m.to_vec().expect("fixture encodes")
    }

    /// Encode `m` and splice `raw` option bytes in before the End marker
    /// (for what dhcproto cannot encode: two-entry 93, broken lengths...).
    pub fn with_raw(m: &Message, raw: &[u8]) -> Vec<u8> {
        let mut b = bytes(m);
        assert_eq!(b.pop(), Some(255), "dhcproto ends options with End");
        b.extend_from_slice(raw);
        b.push(255);
        b
    }

    /// Offset of the first option (after the magic cookie).
    pub const OPTS: usize = 240;

    /// Position of option `code`'s code byte in an encoded message.
    pub fn find_opt(b: &[u8], code: u8) -> Option<usize> {
        let mut i = OPTS;
        while i < b.len() {
            match b[i] {
                0 => i += 1,
                255 => return None,
                c if c == code => return Some(i),
                _ => i += 2 + usize::from(*b.get(i + 1)?),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use dhcproto::v4::{DhcpOption, MessageType};
    use proptest::prelude::*;

    struct Want {
        name: &'static str,
        bytes: Vec<u8>,
        msg_type: ClientMessage,
        arch: Option<Arch>,
        arch_codes: Vec<u16>,
        pxe: bool,
        http: bool,
        ipxe: bool,
        broadcast: bool,
        giaddr: Ipv4Addr,
    }

    fn want(name: &'static str, bytes: Vec<u8>) -> Want {
        Want {
            name,
            bytes,
            msg_type: ClientMessage::Discover,
            arch: None,
            arch_codes: vec![],
            pxe: false,
            http: false,
            ipxe: false,
            broadcast: false,
            giaddr: Ipv4Addr::UNSPECIFIED,
        }
    }

    #[test]
    fn real_world_packets() {
        let cases = vec![
            Want {
                arch: Some(Arch::BiosX86),
                arch_codes: vec![0],
                pxe: true,
                ipxe: true,
                broadcast: true,
                ..want("seabios ipxe", bytes(&seabios_ipxe_discover()))
            },
            Want {
                arch: Some(Arch::EfiX64),
                arch_codes: vec![7],
                pxe: true,
                ..want("ovmf pxe", bytes(&ovmf_pxe_discover()))
            },
            Want {
                arch: Some(Arch::EfiX64Http),
                arch_codes: vec![16],
                http: true,
                ..want("uefi http", bytes(&uefi_http_discover()))
            },
            Want {
                arch: Some(Arch::EfiArm64),
                arch_codes: vec![11],
                pxe: true,
                ..want("arm64", bytes(&arm64_pxe_discover()))
            },
            Want {
                arch: Some(Arch::EfiX64),
                arch_codes: vec![7],
                pxe: true,
                giaddr: Ipv4Addr::new(10, 78, 0, 1),
                ..want("relayed", relayed_bytes())
            },
            Want {
                msg_type: ClientMessage::Request,
                arch: Some(Arch::BiosX86),
                arch_codes: vec![0],
                pxe: true,
                ipxe: true,
                broadcast: true,
                ..want(
                    "ipxe request",
                    bytes(&ipxe_request(Ipv4Addr::new(10, 77, 0, 50), SERVER)),
                )
            },
            {
                // Two-entry option 93 (HTTP preferred, PXE fallback): dhcproto keeps one.
                let mut m = uefi_http_discover();
                m.opts_mut()
                    .remove(dhcproto::v4::OptionCode::ClientSystemArchitecture);
                Want {
                    arch: Some(Arch::EfiX64Http),
                    arch_codes: vec![16, 7],
                    http: true,
                    ..want("two-entry 93", with_raw(&m, &[93, 4, 0, 16, 0, 7]))
                }
            },
            {
                // No option 93: arch from option 60.
                let mut m = ovmf_pxe_discover();
                m.opts_mut()
                    .remove(dhcproto::v4::OptionCode::ClientSystemArchitecture);
                Want {
                    arch: Some(Arch::EfiX64),
                    pxe: true,
                    ..want("arch from 60", bytes(&m))
                }
            },
            {
                // iPXE detected from option 175 alone.
                let m = base(MessageType::Discover, 7);
                Want {
                    ipxe: true,
                    ..want("175 only", with_raw(&m, &[175, 3, 0x13, 1, 1]))
                }
            },
            {
                // RFC 3004 user class with iPXE among others.
                let m = base(MessageType::Discover, 7);
                Want {
                    ipxe: true,
                    ..want("rfc3004 77", with_raw(&m, b"\x4d\x09\x03abc\x04iPXE"))
                }
            },
            {
                // Plain Linux client (udhcpc), INFORM.
                let mut m = base(MessageType::Inform, 9);
                m.set_ciaddr(Ipv4Addr::new(10, 77, 0, 50));
                m.opts_mut()
                    .insert(DhcpOption::ClassIdentifier(b"udhcp 1.35.0".to_vec()));
                Want {
                    msg_type: ClientMessage::Inform,
                    ..want("udhcpc inform", bytes(&m))
                }
            },
        ];
        for w in cases {
            let r = classify(&w.bytes).unwrap_or_else(|e| panic!("{}: {e}", w.name));
            assert_eq!(r.msg_type, w.msg_type, "{}", w.name);
            assert_eq!(r.mac, Mac(MAC), "{}", w.name);
            assert_eq!(r.arch, w.arch, "{}", w.name);
            assert_eq!(r.arch_codes, w.arch_codes, "{}", w.name);
            assert_eq!(r.pxe_client, w.pxe, "{}", w.name);
            assert_eq!(r.http_client, w.http, "{}", w.name);
            assert_eq!(r.ipxe, w.ipxe, "{}", w.name);
            assert_eq!(r.broadcast, w.broadcast, "{}", w.name);
            assert_eq!(r.giaddr, w.giaddr, "{}", w.name);
        }
    }

    #[test]
    fn ipxe_discover_fields() {
        let r = classify(&bytes(&seabios_ipxe_discover())).unwrap();
        assert_eq!(r.xid, 0x1a2b_3c4d);
        assert_eq!(r.max_message_size, Some(1472));
        assert_eq!(r.param_request_list.len(), 23);
        assert!(r.requested(175) && r.requested(67) && !r.requested(97));
        assert_eq!(r.user_classes, vec![b"iPXE".to_vec()]);
        let io = r.ipxe_opts.as_ref().unwrap();
        assert_eq!(
            io.bus_id.map(|b| (b.vendor, b.device)),
            Some((0x1af4, 0x1000))
        );
        assert!(io.has_feature(opts::ipxe::FEATURE_HTTP));
        let vc = r.vendor_class.as_ref().unwrap();
        assert_eq!(vc.undi, Some((2, 1)));
        assert_eq!(
            r.client_id.as_deref(),
            Some(&[1, 0x52, 0x54, 0, 0x77, 0, 0x50][..])
        );
        assert_eq!(r.machine_id.as_ref().map(Vec::len), Some(17));
        assert_eq!(r.requested_ip, None);
        assert_eq!(r.server_id, None);
        assert_eq!(r.msg.xid(), 0x1a2b_3c4d);
        assert_eq!(r.msg.opts().msg_type(), Some(MessageType::Discover));
        assert!(r
            .msg
            .opts()
            .get(dhcproto::v4::OptionCode::ClientNetworkInterface)
            .is_some());
    }

    /// Lengths dhcproto only `debug_assert!`s must not reach its decoder.
    #[test]
    fn dhcproto_debug_assert_lengths_are_filtered() {
        for raw in [
            &[94u8, 2, 1, 2][..],
            &[80, 1, 0],
            &[81, 1, 0],
            &[152, 2, 0, 0],
            &[155, 5, 0, 0, 0, 0, 0],
        ] {
            let r = classify(&with_raw(&base(MessageType::Discover, 1), raw)).unwrap();
            assert!(r.options.contains(raw[0]));
            assert!(r
                .msg
                .opts()
                .get(dhcproto::v4::OptionCode::from(raw[0]))
                .is_none());
        }
    }

    /// Options after a broken-for-dhcproto one are still in `msg`.
    #[test]
    fn msg_keeps_options_dhcproto_would_drop() {
        // Hostname with invalid UTF-8 ends dhcproto's own option walk.
        let mut m = base(MessageType::Discover, 1);
        m.opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
        let b = with_raw(&m, &[12, 2, 0xff, 0xfe]);
        let r = classify(&b).unwrap();
        assert_eq!(r.hostname.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert!(r.pxe_client);
        assert!(r
            .msg
            .opts()
            .get(dhcproto::v4::OptionCode::ClassIdentifier)
            .is_some());
    }

    #[test]
    fn request_and_relay_fields() {
        let r = classify(&bytes(&ipxe_request(Ipv4Addr::new(10, 77, 0, 50), SERVER))).unwrap();
        assert_eq!(r.requested_ip, Some(Ipv4Addr::new(10, 77, 0, 50)));
        assert_eq!(r.server_id, Some(SERVER));

        let r = classify(&relayed_bytes()).unwrap();
        assert_eq!(r.hops, 1);
        assert_eq!(r.relay_agent_info.as_deref(), Some(RELAY_82));

        let mut m = base(MessageType::Discover, 1);
        m.opts_mut()
            .insert(DhcpOption::Hostname("node50".to_string()));
        let r = classify(&with_raw(&m, &[])).unwrap();
        assert_eq!(r.hostname.as_deref(), Some("node50"));
        let r = classify(&with_raw(
            &base(MessageType::Discover, 1),
            &[12, 4, b'a', b'b', 0, 0],
        ))
        .unwrap();
        assert_eq!(r.hostname.as_deref(), Some("ab"));
    }

    /// A DISCOVER whose options live in the overloaded `file` field.
    fn overloaded(file_opts: &[u8], value: u8) -> Vec<u8> {
        let mut b = bytes(&base(MessageType::Request, 5));
        b.truncate(OPTS);
        b.extend_from_slice(&[52, 1, value, 255]);
        b[108..108 + file_opts.len()].copy_from_slice(file_opts);
        b
    }

    #[test]
    fn option_overload() {
        let r = classify(&overloaded(&[53, 1, 1, 93, 2, 0, 7, 255], 1)).unwrap();
        assert_eq!(r.msg_type, ClientMessage::Discover);
        assert_eq!(r.arch, Some(Arch::EfiX64));
        // sname (value 2) holds nothing here: no message type at all.
        assert_eq!(
            classify(&overloaded(&[53, 1, 1, 255], 2)).unwrap_err(),
            Malformed::MissingMessageType
        );
    }

    #[test]
    fn malformed_table() {
        let good = bytes(&seabios_ipxe_discover());
        let set = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            b
        };
        let no53 = {
            let mut m = seabios_ipxe_discover();
            m.opts_mut().remove(dhcproto::v4::OptionCode::MessageType);
            bytes(&m)
        };
        let with = |raw: &[u8]| with_raw(&base(MessageType::Discover, 3), raw);
        let mt = |t: u8| {
            let mut b = good.clone();
            let i = find_opt(&b, 53).unwrap();
            b[i + 2] = t;
            b
        };
        let cases: Vec<(&str, Vec<u8>, Malformed)> = vec![
            ("empty", vec![], Malformed::Truncated { len: 0 }),
            (
                "short",
                good[..239].to_vec(),
                Malformed::Truncated { len: 239 },
            ),
            ("huge", vec![1; 1501], Malformed::Oversized { len: 1501 }),
            ("reply", set(0, 2), Malformed::NotRequest { op: 2 }),
            ("op 0", set(0, 0), Malformed::NotRequest { op: 0 }),
            (
                "htype",
                set(1, 6),
                Malformed::UnsupportedHardware { htype: 6, hlen: 6 },
            ),
            (
                "hlen",
                set(2, 16),
                Malformed::UnsupportedHardware { htype: 1, hlen: 16 },
            ),
            ("magic", set(239, 0), Malformed::BadMagic([99, 130, 83, 0])),
            (
                "overrun",
                {
                    let mut b = good[..OPTS].to_vec();
                    b.extend_from_slice(&[53, 1, 1, 12, 200, b'x']);
                    b
                },
                Malformed::Options(TlvError::Overrun {
                    code: 12,
                    at: 3,
                    len: 200,
                    avail: 1,
                }),
            ),
            ("no 53", no53, Malformed::MissingMessageType),
            ("offer", mt(2), Malformed::UnexpectedMessageType(2)),
            ("ack", mt(5), Malformed::UnexpectedMessageType(5)),
            ("type 99", mt(99), Malformed::UnexpectedMessageType(99)),
            (
                "53 len 2",
                {
                    let mut b = good[..OPTS].to_vec();
                    b.extend_from_slice(&[53, 2, 1, 1, 255]);
                    b
                },
                Malformed::BadOptionLength {
                    code: 53,
                    len: 2,
                    expected: "1",
                },
            ),
            (
                "93 odd",
                with(&[93, 3, 0, 7, 0]),
                Malformed::BadOptionLength {
                    code: 93,
                    len: 3,
                    expected: "a non-zero multiple of 2",
                },
            ),
            (
                "50 len 3",
                with(&[50, 3, 10, 77, 0]),
                Malformed::BadOptionLength {
                    code: 50,
                    len: 3,
                    expected: "4",
                },
            ),
            (
                "57 len 1",
                with(&[57, 1, 5]),
                Malformed::BadOptionLength {
                    code: 57,
                    len: 1,
                    expected: "2",
                },
            ),
            (
                "61 len 1",
                with(&[61, 1, 1]),
                Malformed::BadOptionLength {
                    code: 61,
                    len: 1,
                    expected: ">= 2",
                },
            ),
            (
                "overload 7",
                with(&[52, 1, 7]),
                Malformed::Overload {
                    value: 7,
                    err: None,
                },
            ),
            (
                "overload garbage",
                overloaded(&[53, 1, 1, 12, 200, b'x'], 1),
                Malformed::Overload {
                    value: 1,
                    err: Some(TlvError::Overrun {
                        code: 12,
                        at: 3,
                        len: 200,
                        avail: 123,
                    }),
                },
            ),
        ];
        for (name, b, want) in cases {
            assert_eq!(classify(&b).unwrap_err(), want, "{name}");
        }
    }

    #[test]
    fn malformed_classes_cover_all() {
        assert_eq!(
            Malformed::Truncated { len: 1 }.class(),
            MalformedClass::Truncated
        );
        assert_eq!(Malformed::BadMagic([0; 4]).class(), MalformedClass::Options);
        assert_eq!(
            Malformed::UnexpectedMessageType(2).class(),
            MalformedClass::MessageType
        );
        for (i, c) in MalformedClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    fn no_persist(cases: u32) -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(cases)
        }
    }

    /// Option positions (code byte index) in a valid packet, for mutation.
    fn option_offsets(b: &[u8]) -> Vec<usize> {
        let mut out = vec![];
        let mut i = OPTS;
        while i + 1 < b.len() && b[i] != 255 {
            if b[i] == 0 {
                i += 1;
                continue;
            }
            out.push(i);
            i += 2 + usize::from(b[i + 1]);
        }
        out
    }

    proptest! {
        #![proptest_config(no_persist(100_000))]

        #[test]
        fn classify_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = classify(&data);
        }

        /// Valid header + cookie, arbitrary options area: reaches the option walker.
        #[test]
        fn classify_arbitrary_options_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
            file in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let mut b = bytes(&base(MessageType::Discover, 1));
            b.truncate(OPTS);
            b[108..108 + file.len()].copy_from_slice(&file);
            b.extend_from_slice(&tail);
            if let Ok(r) = classify(&b) {
                prop_assert_eq!(r.mac, Mac(MAC));
            }
        }

        /// A valid DISCOVER with one option's length byte set to any value.
        #[test]
        fn mutated_option_length_never_panics(which in any::<prop::sample::Index>(), len in any::<u8>(), fixture in 0usize..4) {
            let m = match fixture {
                0 => seabios_ipxe_discover(),
                1 => ovmf_pxe_discover(),
                2 => uefi_http_discover(),
                _ => arm64_pxe_discover(),
            };
            let mut b = bytes(&m);
            let offs = option_offsets(&b);
            let at = offs[which.index(offs.len())];
            let orig = b[at + 1];
            b[at + 1] = len;
            match classify(&b) {
                Ok(r) => prop_assert_eq!(r.mac, Mac(MAC)),
                Err(e) => prop_assert!(len != orig, "unchanged packet rejected: {e}"),
            }
        }
    }
}
