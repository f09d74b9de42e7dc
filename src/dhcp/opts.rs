//! Small TLV helpers for the DHCP options `dhcproto` leaves as raw bytes or
//! gets wrong for us (see `design/crates.md`):
//!
//! - a strict option walker ([`RawOptions`]) that rejects a length running past
//!   the buffer instead of silently stopping, and joins split options (RFC 3396);
//! - option 93 with several entries ([`parse_arch_list`]);
//! - option 60 `PXEClient:Arch:00007:UNDI:003016` / `HTTPClient:...` ([`VendorClass`]);
//! - option 77 in RFC 3004 form *and* the bare-string form iPXE sends ([`parse_user_class`]);
//! - option 43 PXE vendor sub-options ([`PxeVendorOpts`]);
//! - option 175 iPXE encapsulated options ([`IpxeOpts`]).
//!
//! Everything here is pure and total: any byte slice gives a value or a typed
//! error, never a panic (proptested in this file).

use std::collections::BTreeMap;

/// The DHCP magic cookie that follows the fixed BOOTP header.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Pad option: a single zero byte, no length.
pub const PAD: u8 = 0;
/// End option: a single 0xff byte, no length.
pub const END: u8 = 255;

/// DHCP option codes used by the server.
pub mod code {
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const VENDOR_OPTS: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAM_REQUEST_LIST: u8 = 55;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_MACHINE_ID: u8 = 97;
    pub const IPXE_ENCAP: u8 = 175;
}

/// A TLV region could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlvError {
    /// The code byte is the last byte of the region: no length follows.
    #[error("option {code} at offset {at}: no length byte")]
    MissingLength { code: u8, at: usize },
    /// The length byte claims more bytes than the region holds.
    #[error("option {code} at offset {at}: length {len} but only {avail} bytes left")]
    Overrun {
        code: u8,
        at: usize,
        len: u8,
        avail: usize,
    },
}

/// Iterator over `(code, value)` pairs of a TLV region. Pad bytes are skipped,
/// End stops the walk (whatever follows is padding), and reaching the end of the
/// region without an End is accepted (many encapsulated options omit it).
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

/// Walk a TLV region (DHCP options, option 43 or option 175 sub-options).
pub fn tlvs(buf: &[u8]) -> Tlvs<'_> {
    Tlvs {
        buf,
        pos: 0,
        done: false,
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<(u8, &'a [u8]), TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let at = self.pos;
            let Some(&code) = self.buf.get(at) else {
                self.done = true;
                return None;
            };
            match code {
                PAD => self.pos += 1,
                END => {
                    self.done = true;
                    return None;
                }
                _ => {
                    let Some(&len) = self.buf.get(at + 1) else {
                        self.done = true;
                        return Some(Err(TlvError::MissingLength { code, at }));
                    };
                    let start = at + 2;
                    let avail = self.buf.len() - start;
                    if usize::from(len) > avail {
                        self.done = true;
                        return Some(Err(TlvError::Overrun {
                            code,
                            at,
                            len,
                            avail,
                        }));
                    }
                    let end = start + usize::from(len);
                    self.pos = end;
                    return Some(Ok((code, &self.buf[start..end])));
                }
            }
        }
        None
    }
}

/// Encode `(code, value)` pairs as TLVs, splitting values longer than 255 bytes
/// into several instances of the same code (RFC 3396). Pad and End codes are
/// skipped; no End is appended (callers add one where the format wants it).
pub fn encode_tlvs<'a>(items: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, val) in items {
        if code == PAD || code == END {
            continue;
        }
        if val.is_empty() {
            out.extend_from_slice(&[code, 0]);
        }
        for chunk in val.chunks(255) {
            out.push(code);
            out.push(chunk.len() as u8);
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// All options of a DHCP message, keyed by code. Repeated instances of one
/// code are concatenated in order (RFC 3396 long options), which is how a
/// split option 93 or 175 must be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawOptions {
    map: BTreeMap<u8, Vec<u8>>,
}

impl RawOptions {
    /// Strictly walk one options region.
    pub fn parse(buf: &[u8]) -> Result<RawOptions, TlvError> {
        let mut o = RawOptions::default();
        o.extend_from(buf)?;
        Ok(o)
    }

    /// Add the options of another region (the overloaded `file` / `sname`
    /// fields are read after the options field, RFC 2131 4.1 / RFC 3396).
    pub fn extend_from(&mut self, buf: &[u8]) -> Result<(), TlvError> {
        for item in tlvs(buf) {
            let (code, val) = item?;
            self.map.entry(code).or_default().extend_from_slice(val);
        }
        Ok(())
    }

    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.map.get(&code).map(Vec::as_slice)
    }

    pub fn contains(&self, code: u8) -> bool {
        self.map.contains_key(&code)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.map.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

// ---------------------------------------------------------------- option 93

/// Option 93 (RFC 4578): a list of 16-bit architecture types, most preferred
/// first. `None` when empty or of odd length (malformed).
pub fn parse_arch_list(data: &[u8]) -> Option<Vec<u16>> {
    if data.is_empty() || !data.len().is_multiple_of(2) {
        return None;
    }
    Some(
        data.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Encode option 93's value.
pub fn encode_arch_list(codes: &[u16]) -> Vec<u8> {
    codes.iter().flat_map(|c| c.to_be_bytes()).collect()
}

// ---------------------------------------------------------------- option 60

/// What the vendor class identifier says the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorKind {
    /// Starts with `PXEClient` (PXE ROMs, iPXE, OVMF PXE).
    PxeClient,
    /// Starts with `HTTPClient` (UEFI HTTP boot).
    HttpClient,
    /// Anything else (`udhcp 1.35.0`, `MSFT 5.0`, ...).
    Other,
}

/// Option 60 parsed: `PXEClient:Arch:00007:UNDI:003016`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorClass {
    pub kind: VendorKind,
    /// The `Arch:NNNNN` field (decimal), if present and well-formed.
    pub arch: Option<u16>,
    /// The `UNDI:MMMmmm` field as (major, minor), if present and well-formed.
    pub undi: Option<(u16, u16)>,
}

fn dec_u16(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(v).ok()
}

/// Parse option 60. Never fails: unknown text is [`VendorKind::Other`].
pub fn parse_vendor_class(data: &[u8]) -> VendorClass {
    let kind = if data.starts_with(b"PXEClient") {
        VendorKind::PxeClient
    } else if data.starts_with(b"HTTPClient") {
        VendorKind::HttpClient
    } else {
        VendorKind::Other
    };
    let mut arch = None;
    let mut undi = None;
    if kind != VendorKind::Other {
        let fields: Vec<&[u8]> = data.split(|b| *b == b':').collect();
        for w in fields.windows(2) {
            match w[0] {
                b"Arch" if arch.is_none() => arch = dec_u16(w[1]),
                b"UNDI" if undi.is_none() && w[1].len() == 6 => {
                    undi = dec_u16(&w[1][..3]).zip(dec_u16(&w[1][3..]));
                }
                _ => {}
            }
        }
    }
    VendorClass { kind, arch, undi }
}

// ---------------------------------------------------------------- option 77

/// Option 77: RFC 3004 says `len class len class ...`; iPXE (and others) send
/// one bare string (`iPXE`). Returns the RFC 3004 entries when the value is a
/// well-formed instance of that format, else the whole value as one class.
pub fn parse_user_class(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            return if data.is_empty() { vec![] } else { vec![data] };
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    out
}

/// Does option 77 carry this class, in either form? The bare form matches if
/// it contains `needle` (e.g. `iPXE`), as dnsmasq's `dhcp-userclass` does.
pub fn user_class_has(data: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    parse_user_class(data).contains(&needle) || data.windows(needle.len()).any(|w| w == needle)
}

/// Encode option 77 in RFC 3004 form. Classes longer than 255 bytes are cut.
pub fn encode_user_class(classes: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in classes {
        let c = &c[..c.len().min(255)];
        if c.is_empty() {
            continue;
        }
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
    out
}

// ---------------------------------------------------------------- option 43

/// PXE vendor sub-option codes (PXE 2.1 spec, option 43 when 60 = `PXEClient`).
pub mod pxe {
    pub const MTFTP_IP: u8 = 1;
    pub const DISCOVERY_CONTROL: u8 = 6;
    pub const DISCOVERY_MCAST_ADDR: u8 = 7;
    pub const BOOT_SERVERS: u8 = 8;
    pub const BOOT_MENU: u8 = 9;
    pub const MENU_PROMPT: u8 = 10;
    pub const BOOT_ITEM: u8 = 71;
    /// Discovery control bit 3: "if a boot file name is in the offer, just
    /// download it" (no boot server discovery, no menu). What pixiecore sends.
    pub const DISCOVERY_USE_BOOTFILE: u8 = 0x08;
}

/// Option 43 as the PXE spec structures it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PxeVendorOpts {
    /// Sub-option 6.
    pub discovery_control: Option<u8>,
    /// Sub-option 71: (boot server type, layer). Clients send it in
    /// port-4011 boot server requests; a server echoes it.
    pub boot_item: Option<(u16, u16)>,
    /// Every other sub-option, in wire order.
    pub other: Vec<(u8, Vec<u8>)>,
}

/// Parse option 43 (PXE form). Errors only on a broken TLV walk; sub-options
/// 6 and 71 with the wrong length are kept in `other`.
pub fn parse_pxe_vendor(data: &[u8]) -> Result<PxeVendorOpts, TlvError> {
    let mut o = PxeVendorOpts::default();
    for item in tlvs(data) {
        let (c, v) = item?;
        match (c, v.len()) {
            (pxe::DISCOVERY_CONTROL, 1) => o.discovery_control = Some(v[0]),
            (pxe::BOOT_ITEM, 4) => {
                o.boot_item = Some((
                    u16::from_be_bytes([v[0], v[1]]),
                    u16::from_be_bytes([v[2], v[3]]),
                ))
            }
            _ => o.other.push((c, v.to_vec())),
        }
    }
    Ok(o)
}

/// Encode option 43 (PXE form), End-terminated as the PXE spec shows it.
pub fn encode_pxe_vendor(o: &PxeVendorOpts) -> Vec<u8> {
    let dc = o.discovery_control.map(|d| [d]);
    let bi = o.boot_item.map(|(t, l)| {
        let (t, l) = (t.to_be_bytes(), l.to_be_bytes());
        [t[0], t[1], l[0], l[1]]
    });
    let mut items: Vec<(u8, &[u8])> = Vec::new();
    if let Some(d) = &dc {
        items.push((pxe::DISCOVERY_CONTROL, d));
    }
    items.extend(o.other.iter().map(|(c, v)| (*c, v.as_slice())));
    if let Some(b) = &bi {
        items.push((pxe::BOOT_ITEM, b));
    }
    let mut out = encode_tlvs(items);
    out.push(END);
    out
}

// ---------------------------------------------------------------- option 175

/// iPXE encapsulated sub-option codes (iPXE `include/ipxe/dhcp.h`).
pub mod ipxe {
    pub const PRIORITY: u8 = 1;
    pub const KEEP_SAN: u8 = 8;
    pub const SKIP_SAN_BOOT: u8 = 9;
    /// Features are advertised as sub-options in 0x10..=0x2f with value 1.
    pub const FEATURE_FIRST: u8 = 0x10;
    pub const FEATURE_LAST: u8 = 0x2f;
    pub const FEATURE_HTTP: u8 = 0x13;
    pub const FEATURE_HTTPS: u8 = 0x14;
    pub const FEATURE_TFTP: u8 = 0x15;
    pub const FEATURE_DNS: u8 = 0x17;
    pub const FEATURE_BZIMAGE: u8 = 0x18;
    pub const FEATURE_PXE: u8 = 0x21;
    pub const FEATURE_EFI: u8 = 0x24;
    /// "no-pxedhcp": do not wait for ProxyDHCP offers (saves iPXE ~2 s).
    pub const NO_PXEDHCP: u8 = 176;
    /// Bus id: type (1 = PCI), vendor, device.
    pub const BUS_ID: u8 = 177;
    pub const USE_CACHED: u8 = 178;
    pub const VERSION: u8 = 235;
}

/// Network device bus identity from 175.177.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusId {
    /// 1 = PCI, 2 = ISAPnP, 3 = EISA, 4 = MCA, 5 = ISA, 6 = TAP, 7 = EFI.
    pub bus_type: u8,
    pub vendor: u16,
    pub device: u16,
}

/// Option 175 parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpxeOpts {
    /// Feature codes present with a non-zero value (e.g. [`ipxe::FEATURE_HTTP`]).
    pub features: Vec<u8>,
    pub bus_id: Option<BusId>,
    pub version: Option<(u8, u8, u8)>,
    pub no_pxedhcp: bool,
    /// Every other sub-option, in wire order.
    pub other: Vec<(u8, Vec<u8>)>,
}

impl IpxeOpts {
    pub fn has_feature(&self, f: u8) -> bool {
        self.features.contains(&f)
    }
}

/// Parse option 175.
pub fn parse_ipxe_opts(data: &[u8]) -> Result<IpxeOpts, TlvError> {
    let mut o = IpxeOpts::default();
    for item in tlvs(data) {
        let (c, v) = item?;
        match c {
            ipxe::FEATURE_FIRST..=ipxe::FEATURE_LAST if v.iter().any(|b| *b != 0) => {
                o.features.push(c)
            }
            ipxe::NO_PXEDHCP if v.first().is_some_and(|b| *b != 0) => o.no_pxedhcp = true,
            ipxe::BUS_ID if v.len() == 5 => {
                o.bus_id = Some(BusId {
                    bus_type: v[0],
                    vendor: u16::from_be_bytes([v[1], v[2]]),
                    device: u16::from_be_bytes([v[3], v[4]]),
                })
            }
            ipxe::VERSION if v.len() == 3 => o.version = Some((v[0], v[1], v[2])),
            _ => o.other.push((c, v.to_vec())),
        }
    }
    Ok(o)
}

/// The option 175 value a server sends to iPXE: sub-option 176 (no-pxedhcp) = 1,
/// i.e. `b0:01:01`, so iPXE skips its ProxyDHCP wait (rig README pitfall).
pub fn encode_ipxe_no_pxedhcp() -> Vec<u8> {
    vec![ipxe::NO_PXEDHCP, 1, 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tlv_walk_table() {
        type Case = (&'static [u8], Result<Vec<(u8, Vec<u8>)>, TlvError>);
        let cases: Vec<Case> = vec![
            (&[], Ok(vec![])),
            (&[0, 0, 255, 9, 9], Ok(vec![])),
            (&[6, 1, 8, 255], Ok(vec![(6, vec![8])])),
            (&[6, 1, 8], Ok(vec![(6, vec![8])])),
            (
                &[6, 0, 0, 7, 2, 1, 2],
                Ok(vec![(6, vec![]), (7, vec![1, 2])]),
            ),
            (&[6], Err(TlvError::MissingLength { code: 6, at: 0 })),
            (
                &[6, 1, 8, 9, 4, 1],
                Err(TlvError::Overrun {
                    code: 9,
                    at: 3,
                    len: 4,
                    avail: 1,
                }),
            ),
        ];
        for (input, want) in cases {
            let got: Result<Vec<(u8, Vec<u8>)>, TlvError> = tlvs(input)
                .map(|r| r.map(|(c, v)| (c, v.to_vec())))
                .collect();
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn raw_options_concatenate_split_options() {
        let o = RawOptions::parse(&[93, 2, 0, 7, 53, 1, 1, 93, 2, 0, 16, 255]).unwrap();
        assert_eq!(o.get(93), Some(&[0, 7, 0, 16][..]));
        assert_eq!(o.get(53), Some(&[1][..]));
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn encode_tlvs_splits_long_values() {
        let long = vec![b'a'; 300];
        let enc = encode_tlvs([(67u8, long.as_slice())]);
        assert_eq!(enc.len(), 2 + 255 + 2 + 45);
        let back = RawOptions::parse(&enc).unwrap();
        assert_eq!(back.get(67), Some(long.as_slice()));
    }

    #[test]
    fn arch_list_table() {
        let cases: &[(&[u8], Option<Vec<u16>>)] = &[
            (&[0, 0], Some(vec![0])),
            (&[0, 7], Some(vec![7])),
            (&[0, 16, 0, 7], Some(vec![16, 7])),
            (&[0, 11, 0, 19, 0, 0], Some(vec![11, 19, 0])),
            (&[], None),
            (&[0], None),
            (&[0, 7, 0], None),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_arch_list(input), want, "{input:?}");
        }
        assert_eq!(encode_arch_list(&[16, 7]), vec![0, 16, 0, 7]);
    }

    #[test]
    fn vendor_class_table() {
        type Case = (&'static [u8], VendorKind, Option<u16>, Option<(u16, u16)>);
        let cases: &[Case] = &[
            (
                b"PXEClient:Arch:00007:UNDI:003016",
                VendorKind::PxeClient,
                Some(7),
                Some((3, 16)),
            ),
            (
                b"PXEClient:Arch:00000:UNDI:002001",
                VendorKind::PxeClient,
                Some(0),
                Some((2, 1)),
            ),
            (
                b"HTTPClient:Arch:00016:UNDI:003001",
                VendorKind::HttpClient,
                Some(16),
                Some((3, 1)),
            ),
            (
                b"PXEClient:Arch:00011:UNDI:003000",
                VendorKind::PxeClient,
                Some(11),
                Some((3, 0)),
            ),
            (b"PXEClient", VendorKind::PxeClient, None, None),
            (
                b"PXEClient:Arch:7x:UNDI:0030",
                VendorKind::PxeClient,
                None,
                None,
            ),
            (b"PXEClient:Arch:99999", VendorKind::PxeClient, None, None),
            (b"udhcp 1.35.0", VendorKind::Other, None, None),
            (b"MSFT 5.0", VendorKind::Other, None, None),
            (b"pxeclient:Arch:00007", VendorKind::Other, None, None),
            (b"", VendorKind::Other, None, None),
        ];
        for (input, kind, arch, undi) in cases {
            let v = parse_vendor_class(input);
            assert_eq!(
                (v.kind, v.arch, v.undi),
                (*kind, *arch, *undi),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn user_class_table() {
        type Case = (&'static [u8], Vec<&'static [u8]>, bool);
        let cases: &[Case] = &[
            // iPXE: bare string
            (b"iPXE", vec![b"iPXE"], true),
            // RFC 3004
            (b"\x04iPXE", vec![b"iPXE"], true),
            (b"\x03abc\x04iPXE", vec![b"abc", b"iPXE"], true),
            (b"\x03abc", vec![b"abc"], false),
            // malformed RFC 3004 -> bare
            (b"\x05abc", vec![b"\x05abc"], false),
            (b"\x00iPXE", vec![b"\x00iPXE"], true),
            (b"gPXE", vec![b"gPXE"], false),
            (b"", vec![], false),
        ];
        for (input, classes, ipxe) in cases {
            assert_eq!(&parse_user_class(input), classes, "{input:?}");
            assert_eq!(user_class_has(input, b"iPXE"), *ipxe, "{input:?}");
        }
        let enc = encode_user_class(&[b"abc", b"iPXE"]);
        assert_eq!(enc, b"\x03abc\x04iPXE");
        assert_eq!(parse_user_class(&enc), vec![&b"abc"[..], b"iPXE"]);
    }

    #[test]
    fn pxe_vendor_roundtrip() {
        let o = parse_pxe_vendor(&[6, 1, 8, 255]).unwrap();
        assert_eq!(o.discovery_control, Some(8));
        assert_eq!(encode_pxe_vendor(&o), vec![6, 1, 8, 255]);

        let o = parse_pxe_vendor(&[71, 4, 0x80, 0x00, 0x00, 0x00, 255]).unwrap();
        assert_eq!(o.boot_item, Some((0x8000, 0)));
        assert_eq!(
            encode_pxe_vendor(&o),
            vec![71, 4, 0x80, 0x00, 0x00, 0x00, 255]
        );

        let o = parse_pxe_vendor(&[6, 2, 8, 8, 9, 1, 0]).unwrap();
        assert_eq!(o.discovery_control, None);
        assert_eq!(o.other, vec![(6, vec![8, 8]), (9, vec![0])]);

        assert!(parse_pxe_vendor(&[6, 3, 8]).is_err());
    }

    #[test]
    fn ipxe_opts_table() {
        // As iPXE 1.0.0+git-20190125 (BIOS, virtio-net) sends it.
        let raw: &[u8] = &[
            0xb1, 5, 1, 0x1a, 0xf4, 0x10, 0x00, // bus id PCI 1af4:1000
            0xeb, 3, 1, 0, 0, // version 1.0.0
            0x13, 1, 1, 0x14, 1, 1, 0x15, 1, 1, 0x17, 1, 1, 0x18, 1, 1, 0x21, 1,
            1, // features
            0x12, 1, 0, // feature with value 0: not a feature
            1, 1, 0x7f, // priority
        ];
        let o = parse_ipxe_opts(raw).unwrap();
        assert_eq!(
            o.bus_id,
            Some(BusId {
                bus_type: 1,
                vendor: 0x1af4,
                device: 0x1000
            })
        );
        assert_eq!(o.version, Some((1, 0, 0)));
        assert!(o.has_feature(ipxe::FEATURE_HTTP));
        assert!(o.has_feature(ipxe::FEATURE_PXE));
        assert!(!o.has_feature(0x12));
        assert!(!o.no_pxedhcp);
        assert_eq!(o.other, vec![(0x12, vec![0]), (1, vec![0x7f])]);

        let o = parse_ipxe_opts(&encode_ipxe_no_pxedhcp()).unwrap();
        assert!(o.no_pxedhcp);
        assert_eq!(encode_ipxe_no_pxedhcp(), vec![0xb0, 0x01, 0x01]);
        assert!(parse_ipxe_opts(&[0xb1, 9, 1]).is_err());
    }

    fn no_persist(cases: u32) -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(cases)
        }
    }

    proptest! {
        #![proptest_config(no_persist(100_000))]

        #[test]
        fn option_parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = RawOptions::parse(&data);
            let _ = parse_arch_list(&data);
            let _ = parse_vendor_class(&data);
            let _ = parse_user_class(&data);
            let _ = user_class_has(&data, b"iPXE");
            let _ = parse_pxe_vendor(&data);
            let _ = parse_ipxe_opts(&data);
        }
    }

    proptest! {
        #![proptest_config(no_persist(5_000))]

        #[test]
        fn tlv_encode_parse_roundtrip(
            items in proptest::collection::vec((1u8..255, proptest::collection::vec(any::<u8>(), 0..300)), 0..6)
        ) {
            let enc = encode_tlvs(items.iter().map(|(c, v)| (*c, v.as_slice())));
            let back = RawOptions::parse(&enc).unwrap();
            let mut want: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
            for (c, v) in &items {
                want.entry(*c).or_default().extend_from_slice(v);
            }
            let got: BTreeMap<u8, Vec<u8>> = back.iter().map(|(c, v)| (c, v.to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
