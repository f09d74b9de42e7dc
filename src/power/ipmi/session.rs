//! Sans-IO RMCP+ (IPMI v2.0 LAN) session: packet encoding/decoding, the
//! Open Session / RAKP 1-4 handshake and an established session that frames
//! IPMI requests and matches their responses.
//!
//! Nothing here touches a socket or a clock.  The driver (`mod.rs`) calls
//! methods that return datagrams to send, feeds received datagrams back in,
//! and decides itself when to retransmit.  Every decoder returns an error (or
//! `Ignored`) on malformed input and never panics; a proptest feeds arbitrary
//! bytes to all of them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::crypto::{integrity_pad_len, CipherSuite, RakpContext, SessionKeys, MAX_KEY_LEN};

/// RMCP header: version 6, reserved, sequence 0xFF (no RMCP ACK), class IPMI.
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];
/// Session header "auth type / format" value for RMCP+.
pub const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;
/// Next Header byte of the integrity trailer.
const NEXT_HEADER: u8 = 0x07;
/// Bytes from AuthType through Payload Length.
const SESSION_HEADER_LEN: usize = 12;
/// Slave address of the BMC (responder).
pub const BMC_ADDR: u8 = 0x20;
/// Software ID used as requester address by remote consoles (ipmitool uses it too).
pub const CONSOLE_SWID: u8 = 0x81;
/// RAKP1 "name-only lookup" bit in the requested-role byte.
const NAME_ONLY_LOOKUP: u8 = 0x10;
/// Size of the replay window for inbound session sequence numbers.
const SEQ_WINDOW: u32 = 32;

/// RMCP+ payload types (low 6 bits of the payload type byte).
pub mod payload_type {
    pub const IPMI: u8 = 0x00;
    /// Serial over LAN (`sol.rs`).
    pub const SOL: u8 = 0x01;
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    pub const RAKP1: u8 = 0x12;
    pub const RAKP2: u8 = 0x13;
    pub const RAKP3: u8 = 0x14;
    pub const RAKP4: u8 = 0x15;
}

/// Session privilege levels (requested maximum in Open Session/RAKP1, and
/// the level set with Set Session Privilege Level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    Administrator = 4,
}

impl Privilege {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Why a datagram could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    NotRmcp,
    NotIpmiClass(u8),
    /// IPMI 1.5 (or other) session format: the auth type byte.
    NotRmcpPlus(u8),
    UnsupportedPayload(u8),
    BadTrailer(&'static str),
    BadChecksum(&'static str),
    BadField(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { what, need, got } => {
                write!(f, "{what} truncated: need {need} bytes, got {got}")
            }
            DecodeError::NotRmcp => write!(f, "not an RMCP packet"),
            DecodeError::NotIpmiClass(c) => write!(f, "RMCP class {c:#04x} is not IPMI"),
            DecodeError::NotRmcpPlus(a) => write!(f, "session auth type {a:#04x} is not RMCP+"),
            DecodeError::UnsupportedPayload(p) => write!(f, "unsupported payload type {p:#04x}"),
            DecodeError::BadTrailer(w) => write!(f, "bad integrity trailer: {w}"),
            DecodeError::BadChecksum(w) => write!(f, "bad {w} checksum"),
            DecodeError::BadField(w) => write!(f, "bad field: {w}"),
        }
    }
}

fn need(what: &'static str, buf: &[u8], n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        Err(DecodeError::Truncated {
            what,
            need: n,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    a
}

/// A decoded RMCP+ datagram (still encrypted, integrity not yet checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Low 6 bits of the payload type byte.
    pub payload_type: u8,
    pub encrypted: bool,
    pub authenticated: bool,
    pub session_id: u32,
    pub seq: u32,
    pub payload: &'a [u8],
    /// For authenticated packets: (bytes covered by the AuthCode, AuthCode).
    pub integrity: Option<(&'a [u8], &'a [u8])>,
}

/// Decode the RMCP and RMCP+ session headers and the integrity trailer.
/// `auth_code_len` is the AuthCode length of the negotiated integrity
/// algorithm (0 before a session exists: authenticated packets are then refused).
pub fn decode_packet(buf: &[u8], auth_code_len: usize) -> Result<Packet<'_>, DecodeError> {
    need("RMCP header", buf, 4)?;
    if buf[0] != 0x06 {
        return Err(DecodeError::NotRmcp);
    }
    if buf[3] & 0x1f != 0x07 {
        return Err(DecodeError::NotIpmiClass(buf[3]));
    }
    let s = &buf[4..];
    need("session header", s, 1)?;
    if s[0] != AUTH_TYPE_RMCP_PLUS {
        return Err(DecodeError::NotRmcpPlus(s[0]));
    }
    need("session header", s, SESSION_HEADER_LEN)?;
    let pt = s[1];
    let payload_type = pt & 0x3f;
    if payload_type == 0x02 {
        // OEM explicit: extra IANA + OEM payload ID fields we never negotiate.
        return Err(DecodeError::UnsupportedPayload(payload_type));
    }
    let encrypted = pt & 0x80 != 0;
    let authenticated = pt & 0x40 != 0;
    let session_id = le32(s, 2);
    let seq = le32(s, 6);
    let len = u16::from_le_bytes([s[10], s[11]]) as usize;
    need("payload", s, SESSION_HEADER_LEN + len)?;
    let payload = &s[SESSION_HEADER_LEN..SESSION_HEADER_LEN + len];
    let rest = &s[SESSION_HEADER_LEN + len..];
    let integrity = if authenticated {
        if auth_code_len == 0 {
            return Err(DecodeError::BadTrailer(
                "authenticated packet outside a session",
            ));
        }
        // rest = pad(0..=3 x 0xFF) | pad length | next header | auth code
        if rest.len() < 2 + auth_code_len {
            return Err(DecodeError::BadTrailer("too short"));
        }
        let code_at = rest.len() - auth_code_len;
        let pad_len = rest[code_at - 2] as usize;
        if rest[code_at - 1] != NEXT_HEADER {
            return Err(DecodeError::BadTrailer("next header is not 0x07"));
        }
        if pad_len + 2 != code_at {
            return Err(DecodeError::BadTrailer("pad length mismatch"));
        }
        if rest[..pad_len].iter().any(|b| *b != 0xff) {
            return Err(DecodeError::BadTrailer("pad bytes are not 0xFF"));
        }
        let covered_end = 4 + SESSION_HEADER_LEN + len + code_at;
        Some((&buf[4..covered_end], &rest[code_at..]))
    } else {
        None
    };
    Ok(Packet {
        payload_type,
        encrypted,
        authenticated,
        session_id,
        seq,
        payload,
        integrity,
    })
}

/// Build an RMCP+ datagram.  With `keys`, the payload is encrypted (a fresh IV
/// from `iv`) and the integrity trailer appended; without, it goes in clear.
pub fn encode_packet(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<(&SessionKeys, [u8; 16])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + SESSION_HEADER_LEN + payload.len() + 64);
    out.extend_from_slice(&RMCP_HEADER);
    let body;
    let payload = match keys {
        Some((k, iv)) => {
            body = k.encrypt(payload, iv);
            &body[..]
        }
        None => payload,
    };
    let flags = if keys.is_some() { 0xc0 } else { 0x00 };
    out.push(AUTH_TYPE_RMCP_PLUS);
    out.push(flags | (payload_type & 0x3f));
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    if let Some((k, _)) = keys {
        let pad = integrity_pad_len(out.len() - 4);
        out.extend(std::iter::repeat_n(0xffu8, pad));
        out.push(pad as u8);
        out.push(NEXT_HEADER);
        let code = k.integrity_code(&out[4..]);
        out.extend_from_slice(&code);
    }
    out
}

/// Open Session Request payload (13.17).
pub fn open_session_request(
    tag: u8,
    max_priv: u8,
    console_sid: u32,
    suite: CipherSuite,
) -> Vec<u8> {
    let mut p = vec![tag, max_priv, 0, 0];
    p.extend_from_slice(&console_sid.to_le_bytes());
    for (ptype, alg) in [
        (0u8, suite.auth.id()),
        (1, suite.integrity.id()),
        (2, suite.conf.id()),
    ] {
        p.extend_from_slice(&[ptype, 0, 0, 0x08, alg, 0, 0, 0]);
    }
    p
}

/// Open Session Response (13.18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub status: u8,
    pub max_priv: u8,
    pub console_sid: u32,
    /// Present when `status == 0`.
    pub accepted: Option<OpenSessionAccepted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionAccepted {
    pub bmc_sid: u32,
    pub auth_alg: u8,
    pub integrity_alg: u8,
    pub conf_alg: u8,
}

impl OpenSessionResponse {
    pub fn decode(p: &[u8]) -> Result<Self, DecodeError> {
        // Error responses may be cut short after the status byte (ipmi_sim
        // sends only tag + status); the console SID is then unknown (0).
        need("Open Session Response", p, 2)?;
        let (tag, status) = (p[0], p[1]);
        if status == 0 {
            need("Open Session Response", p, 8)?;
        }
        let max_priv = p.get(2).map_or(0, |b| b & 0x0f);
        let console_sid = if p.len() >= 8 { le32(p, 4) } else { 0 };
        let accepted = if status == 0 {
            need("Open Session Response", p, 36)?;
            for (at, ptype) in [(12usize, 0u8), (20, 1), (28, 2)] {
                if p[at] != ptype {
                    return Err(DecodeError::BadField("algorithm payload type"));
                }
            }
            Some(OpenSessionAccepted {
                bmc_sid: le32(p, 8),
                auth_alg: p[16] & 0x3f,
                integrity_alg: p[24] & 0x3f,
                conf_alg: p[32] & 0x3f,
            })
        } else {
            None
        };
        Ok(OpenSessionResponse {
            tag,
            status,
            max_priv,
            console_sid,
            accepted,
        })
    }
}

/// RAKP Message 1 payload (13.20).
pub fn rakp1(tag: u8, bmc_sid: u32, console_rand: &[u8; 16], role: u8, username: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    p.extend_from_slice(console_rand);
    p.extend_from_slice(&[role, 0, 0, username.len() as u8]);
    p.extend_from_slice(username);
    p
}

/// RAKP Message 2 (13.21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub status: u8,
    pub console_sid: u32,
    /// Present when `status == 0`: (Rc, GUIDc, key exchange auth code).
    pub ok: Option<([u8; 16], [u8; 16], Vec<u8>)>,
}

impl Rakp2 {
    pub fn decode(p: &[u8]) -> Result<Self, DecodeError> {
        need("RAKP2", p, 2)?;
        let (tag, status) = (p[0], p[1]);
        if status == 0 {
            need("RAKP2", p, 8)?;
        }
        let console_sid = if p.len() >= 8 { le32(p, 4) } else { 0 };
        let ok = if status == 0 {
            need("RAKP2", p, 40)?;
            Some((arr16(p, 8), arr16(p, 24), p[40..].to_vec()))
        } else {
            None
        };
        Ok(Rakp2 {
            tag,
            status,
            console_sid,
            ok,
        })
    }
}

/// RAKP Message 3 payload (13.22).
pub fn rakp3(tag: u8, status: u8, bmc_sid: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, status, 0, 0];
    p.extend_from_slice(&bmc_sid.to_le_bytes());
    p.extend_from_slice(auth_code);
    p
}

/// RAKP Message 4 (13.23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub status: u8,
    pub console_sid: u32,
    pub icv: Vec<u8>,
}

impl Rakp4 {
    pub fn decode(p: &[u8]) -> Result<Self, DecodeError> {
        need("RAKP4", p, 2)?;
        if p[1] == 0 {
            need("RAKP4", p, 8)?;
        }
        let console_sid = if p.len() >= 8 { le32(p, 4) } else { 0 };
        Ok(Rakp4 {
            tag: p[0],
            status: p[1],
            console_sid,
            icv: p.get(8..).unwrap_or_default().to_vec(),
        })
    }
}

/// Two's complement checksum: bytes + checksum sum to 0.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// IPMI LAN request message (13.8): rsAddr, netFn/rsLUN, chk1, rqAddr,
/// rqSeq/rqLUN, cmd, data, chk2.
pub fn lan_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![BMC_ADDR, netfn << 2];
    m.push(checksum(&m));
    m.extend_from_slice(&[CONSOLE_SWID, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    let c = checksum(&m[3..]);
    m.push(c);
    m
}

/// IPMI LAN response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanResponse {
    pub rq_addr: u8,
    pub netfn: u8,
    pub rs_addr: u8,
    pub rq_seq: u8,
    pub cmd: u8,
    pub completion_code: u8,
    pub data: Vec<u8>,
}

impl LanResponse {
    pub fn decode(m: &[u8]) -> Result<Self, DecodeError> {
        // rqAddr netFn chk1 rsAddr rqSeq cmd cc chk2
        need("IPMI response", m, 8)?;
        if checksum(&m[..2]) != m[2] {
            return Err(DecodeError::BadChecksum("header"));
        }
        let last = m.len() - 1;
        if checksum(&m[3..last]) != m[last] {
            return Err(DecodeError::BadChecksum("data"));
        }
        Ok(LanResponse {
            rq_addr: m[0],
            netfn: m[1] >> 2,
            rs_addr: m[3],
            rq_seq: m[4] >> 2,
            cmd: m[5],
            completion_code: m[6],
            data: m[7..last].to_vec(),
        })
    }
}

/// RMCP+ status codes (table 13-15) as text.
pub fn rmcp_status_meaning(status: u8) -> &'static str {
    match status {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// Handshake failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The BMC refused the proposed cipher suite at Open Session.
    SuiteRejected {
        suite: u8,
        status: u8,
        meaning: &'static str,
    },
    /// Credentials refused (RAKP2 status / HMAC mismatch, RAKP4 ICV).
    AuthFailed(String),
    /// The requested role / privilege level was refused (status 0x09-0x0b).
    RoleRefused(String),
    /// The BMC answered something we cannot work with.
    Protocol(String),
    /// Local limitation (e.g. user name or password too long, sequence exhausted).
    Unsupported(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::SuiteRejected {
                suite,
                status,
                meaning,
            } => {
                write!(
                    f,
                    "BMC rejected cipher suite {suite}: status {status:#04x} ({meaning})"
                )
            }
            SessionError::AuthFailed(s) => write!(f, "authentication failed: {s}"),
            SessionError::RoleRefused(s) => write!(f, "privilege level refused: {s}"),
            SessionError::Protocol(s) => write!(f, "protocol error: {s}"),
            SessionError::Unsupported(s) => write!(f, "unsupported: {s}"),
        }
    }
}

/// Credentials and choices for one handshake.  No Debug: it holds secrets.
#[derive(Clone)]
pub struct HandshakeConfig {
    pub username: Vec<u8>,
    pub password: Vec<u8>,
    /// BMC key K_G for two-key logins; `None` = one-key (K_G = K_uid).
    pub kg: Option<Vec<u8>>,
    pub suite: CipherSuite,
    /// Maximum privilege requested for the session.
    pub privilege: Privilege,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HsState {
    AwaitOpenSession,
    AwaitRakp2,
    AwaitRakp4,
}

/// Result of feeding a datagram to a [`Handshake`].
pub enum HsEvent {
    /// Send this datagram next (the handshake moved on).
    Send(Vec<u8>),
    /// RAKP4 verified: the session is ready.
    Established(Box<Session>),
    /// Not for us / stale / duplicate: keep waiting.
    Ignored(&'static str),
}

/// The Open Session + RAKP 1-4 exchange as a state machine.
pub struct Handshake {
    cfg: HandshakeConfig,
    rng: StdRng,
    state: HsState,
    tag: u8,
    /// Tags of the Open Session Requests sent (any reply to one of them is usable).
    open_tags: Vec<u8>,
    console_sid: u32,
    console_rand: [u8; 16],
    bmc_sid: u32,
    ctx: Option<RakpContext>,
    sik: Vec<u8>,
    last: Vec<u8>,
}

impl Handshake {
    /// `seed` feeds the CSPRNG used for the session ID, Rm and IVs; the
    /// driver passes OS randomness, tests a fixed value.
    pub fn new(cfg: HandshakeConfig, seed: [u8; 32]) -> Result<Handshake, SessionError> {
        if cfg.username.len() > 16 {
            return Err(SessionError::Unsupported(
                "user name longer than 16 bytes".into(),
            ));
        }
        if cfg.password.len() > MAX_KEY_LEN {
            return Err(SessionError::Unsupported(
                "password longer than 20 bytes".into(),
            ));
        }
        if cfg.kg.as_ref().is_some_and(|k| k.len() > MAX_KEY_LEN) {
            return Err(SessionError::Unsupported("K_G longer than 20 bytes".into()));
        }
        let mut rng = StdRng::from_seed(seed);
        let mut console_sid = 0;
        while console_sid == 0 {
            console_sid = rng.next_u32();
        }
        let mut console_rand = [0u8; 16];
        rng.fill_bytes(&mut console_rand);
        let tag = (rng.next_u32() & 0x3f) as u8;
        Ok(Handshake {
            cfg,
            rng,
            state: HsState::AwaitOpenSession,
            tag,
            open_tags: Vec::new(),
            console_sid,
            console_rand,
            bmc_sid: 0,
            ctx: None,
            sik: Vec::new(),
            last: Vec::new(),
        })
    }

    pub fn suite(&self) -> CipherSuite {
        self.cfg.suite
    }

    fn role(&self) -> u8 {
        self.cfg.privilege.as_u8() | NAME_ONLY_LOOKUP
    }

    fn build_current(&mut self) -> Vec<u8> {
        let (ptype, payload) = match self.state {
            HsState::AwaitOpenSession => {
                self.open_tags.push(self.tag);
                (
                    payload_type::OPEN_SESSION_REQUEST,
                    open_session_request(
                        self.tag,
                        self.cfg.privilege.as_u8(),
                        self.console_sid,
                        self.cfg.suite,
                    ),
                )
            }
            HsState::AwaitRakp2 => (
                payload_type::RAKP1,
                rakp1(
                    self.tag,
                    self.bmc_sid,
                    &self.console_rand,
                    self.role(),
                    &self.cfg.username,
                ),
            ),
            HsState::AwaitRakp4 => {
                // RAKP3 is resent verbatim (same tag): the BMC state is per session.
                return self.last.clone();
            }
        };
        self.last = encode_packet(ptype, 0, 0, &payload, None);
        self.last.clone()
    }

    /// The first datagram (Open Session Request).
    pub fn start(&mut self) -> Vec<u8> {
        self.build_current()
    }

    /// The datagram to send when the current step timed out.  Open Session
    /// and RAKP1 get a new message tag, so a late reply to an earlier copy is
    /// told apart (each RAKP1 makes the BMC draw a new Rc; only the reply to
    /// the latest one matches its state).
    pub fn retransmit(&mut self) -> Vec<u8> {
        if self.state != HsState::AwaitRakp4 {
            self.tag = (self.tag + 1) & 0x3f;
        }
        self.build_current()
    }

    /// Feed one received datagram.
    pub fn handle(&mut self, datagram: &[u8]) -> Result<HsEvent, SessionError> {
        let Ok(pkt) = decode_packet(datagram, 0) else {
            return Ok(HsEvent::Ignored("undecodable datagram"));
        };
        if pkt.session_id != 0 || pkt.encrypted || pkt.authenticated {
            return Ok(HsEvent::Ignored("session packet during handshake"));
        }
        match (self.state, pkt.payload_type) {
            (HsState::AwaitOpenSession, payload_type::OPEN_SESSION_RESPONSE) => {
                self.on_open_session(pkt.payload)
            }
            (HsState::AwaitRakp2, payload_type::RAKP2) => self.on_rakp2(pkt.payload),
            (HsState::AwaitRakp4, payload_type::RAKP4) => self.on_rakp4(pkt.payload),
            _ => Ok(HsEvent::Ignored("unexpected payload type")),
        }
    }

    fn on_open_session(&mut self, p: &[u8]) -> Result<HsEvent, SessionError> {
        let Ok(r) = OpenSessionResponse::decode(p) else {
            return Ok(HsEvent::Ignored("malformed Open Session Response"));
        };
        if !self.open_tags.contains(&r.tag) {
            return Ok(HsEvent::Ignored("Open Session Response with a foreign tag"));
        }
        if r.status != 0 {
            // Errors may carry a zero console SID; the tag matched.
            let meaning = rmcp_status_meaning(r.status);
            return Err(match r.status {
                0x04..=0x07 | 0x10 | 0x11 => SessionError::SuiteRejected {
                    suite: self.cfg.suite.id,
                    status: r.status,
                    meaning,
                },
                0x09..=0x0b => SessionError::RoleRefused(format!(
                    "Open Session status {:#04x} ({meaning})",
                    r.status
                )),
                _ => SessionError::Protocol(format!(
                    "Open Session refused: status {:#04x} ({meaning})",
                    r.status
                )),
            });
        }
        if r.console_sid != self.console_sid {
            return Ok(HsEvent::Ignored(
                "Open Session Response for another console session",
            ));
        }
        let Some(acc) = r.accepted else {
            return Ok(HsEvent::Ignored("malformed Open Session Response"));
        };
        let s = self.cfg.suite;
        if acc.auth_alg != s.auth.id()
            || acc.integrity_alg != s.integrity.id()
            || acc.conf_alg != s.conf.id()
        {
            return Err(SessionError::SuiteRejected {
                suite: s.id,
                status: 0x11,
                meaning: "BMC answered with different algorithms",
            });
        }
        if acc.bmc_sid == 0 {
            return Err(SessionError::Protocol("BMC session ID is 0".into()));
        }
        self.bmc_sid = acc.bmc_sid;
        self.state = HsState::AwaitRakp2;
        self.tag = (self.tag + 1) & 0x3f;
        Ok(HsEvent::Send(self.build_current()))
    }

    fn on_rakp2(&mut self, p: &[u8]) -> Result<HsEvent, SessionError> {
        let Ok(r) = Rakp2::decode(p) else {
            return Ok(HsEvent::Ignored("malformed RAKP2"));
        };
        if r.tag != self.tag {
            return Ok(HsEvent::Ignored("RAKP2 for an earlier RAKP1"));
        }
        if r.status != 0 {
            let meaning = rmcp_status_meaning(r.status);
            return Err(match r.status {
                0x09..=0x0b => {
                    SessionError::RoleRefused(format!("RAKP2 status {:#04x} ({meaning})", r.status))
                }
                0x0c..=0x0e => {
                    SessionError::AuthFailed(format!("RAKP2 status {:#04x} ({meaning})", r.status))
                }
                _ => SessionError::Protocol(format!("RAKP2 status {:#04x} ({meaning})", r.status)),
            });
        }
        if r.console_sid != self.console_sid {
            return Ok(HsEvent::Ignored("RAKP2 for another console session"));
        }
        let Some((bmc_rand, bmc_guid, code)) = r.ok else {
            return Ok(HsEvent::Ignored("malformed RAKP2"));
        };
        let alg = self.cfg.suite.auth;
        let ctx = RakpContext {
            console_sid: self.console_sid,
            bmc_sid: self.bmc_sid,
            console_rand: self.console_rand,
            bmc_rand,
            bmc_guid,
            role: self.role(),
            username: self.cfg.username.clone(),
        };
        if code.len() != alg.mac_len() {
            return Err(SessionError::Protocol(format!(
                "RAKP2 auth code is {} bytes, expected {}",
                code.len(),
                alg.mac_len()
            )));
        }
        if !ctx.rakp2_matches(alg, &self.cfg.password, &code) {
            return Err(SessionError::AuthFailed(
                "RAKP2 key exchange auth code mismatch (wrong password?)".into(),
            ));
        }
        let kg = self.cfg.kg.as_deref().unwrap_or(&self.cfg.password);
        self.sik = ctx.sik(alg, kg);
        let auth = ctx.rakp3_auth_code(alg, &self.cfg.password);
        self.ctx = Some(ctx);
        self.state = HsState::AwaitRakp4;
        self.last = encode_packet(
            payload_type::RAKP3,
            0,
            0,
            &rakp3(self.tag, 0, self.bmc_sid, &auth),
            None,
        );
        Ok(HsEvent::Send(self.last.clone()))
    }

    fn on_rakp4(&mut self, p: &[u8]) -> Result<HsEvent, SessionError> {
        let Ok(r) = Rakp4::decode(p) else {
            return Ok(HsEvent::Ignored("malformed RAKP4"));
        };
        if r.tag != self.tag {
            return Ok(HsEvent::Ignored("RAKP4 with a foreign tag"));
        }
        if r.status != 0 {
            let meaning = rmcp_status_meaning(r.status);
            // Not an auth failure: the password was proven at RAKP2.  A BMC that
            // saw a duplicate RAKP1 may hold another Rc; the driver restarts.
            return Err(SessionError::Protocol(format!(
                "RAKP4 status {:#04x} ({meaning})",
                r.status
            )));
        }
        if r.console_sid != self.console_sid {
            return Ok(HsEvent::Ignored("RAKP4 for another console session"));
        }
        let Some(ctx) = self.ctx.as_ref() else {
            return Ok(HsEvent::Ignored("RAKP4 before RAKP2"));
        };
        let alg = self.cfg.suite.auth;
        let want = ctx.rakp4_icv(alg, &self.sik);
        if r.icv.len() < want.len() || !super::crypto::ct_eq(&r.icv[..want.len()], &want) {
            return Err(SessionError::AuthFailed(
                "RAKP4 integrity check value mismatch (wrong K_G?)".into(),
            ));
        }
        let keys = SessionKeys::from_sik(self.cfg.suite, &self.sik);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Ok(HsEvent::Established(Box::new(Session::new(
            keys,
            self.console_sid,
            self.bmc_sid,
            seed,
        ))))
    }
}

/// An IPMI request waiting for its response.
#[derive(Debug, Clone)]
struct Pending {
    netfn: u8,
    cmd: u8,
    rq_seq: u8,
    msg: Vec<u8>,
}

/// A response matched to the pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub netfn: u8,
    pub cmd: u8,
    pub completion_code: u8,
    pub data: Vec<u8>,
}

/// Result of feeding a datagram to a [`Session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Response(Response),
    /// An authentic, fresh SOL payload (decrypted): for `sol::SolState`.
    Sol(Vec<u8>),
    Ignored(&'static str),
}

/// An established RMCP+ session.
pub struct Session {
    keys: SessionKeys,
    console_sid: u32,
    bmc_sid: u32,
    /// Next outbound session sequence number (never 0).
    out_seq: u32,
    /// Next rqSeq (6 bits).
    next_rq_seq: u8,
    in_highest: u32,
    /// Bit i set = sequence number `in_highest - i` seen.
    in_seen: u32,
    pending: Option<Pending>,
    rng: StdRng,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("suite", &self.keys.suite.id)
            .field("console_sid", &format_args!("{:#010x}", self.console_sid))
            .field("bmc_sid", &format_args!("{:#010x}", self.bmc_sid))
            .field("out_seq", &self.out_seq)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(keys: SessionKeys, console_sid: u32, bmc_sid: u32, seed: [u8; 32]) -> Session {
        Session {
            keys,
            console_sid,
            bmc_sid,
            out_seq: 1,
            next_rq_seq: 1,
            in_highest: 0,
            in_seen: 0,
            pending: None,
            rng: StdRng::from_seed(seed),
        }
    }

    pub fn suite(&self) -> CipherSuite {
        self.keys.suite
    }
    pub fn console_sid(&self) -> u32 {
        self.console_sid
    }
    pub fn bmc_sid(&self) -> u32 {
        self.bmc_sid
    }
    /// rqSeq of the request in flight, if any.
    pub fn pending_rq_seq(&self) -> Option<u8> {
        self.pending.as_ref().map(|p| p.rq_seq)
    }

    fn wrap(&mut self, msg: &[u8]) -> Result<Vec<u8>, SessionError> {
        self.wrap_as(payload_type::IPMI, msg)
    }

    /// A SOL payload (`sol::SolPacket`) framed in this session.
    pub fn sol(&mut self, payload: &[u8]) -> Result<Vec<u8>, SessionError> {
        self.wrap_as(payload_type::SOL, payload)
    }

    fn wrap_as(&mut self, ptype: u8, msg: &[u8]) -> Result<Vec<u8>, SessionError> {
        let seq = self.out_seq;
        if seq == u32::MAX {
            return Err(SessionError::Unsupported(
                "session sequence numbers exhausted; reconnect".into(),
            ));
        }
        self.out_seq += 1;
        let mut iv = [0u8; 16];
        self.rng.fill_bytes(&mut iv);
        Ok(encode_packet(
            ptype,
            self.bmc_sid,
            seq,
            msg,
            Some((&self.keys, iv)),
        ))
    }

    /// Start a new request (any previous one is abandoned): the datagram to send.
    pub fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, SessionError> {
        let rq_seq = self.next_rq_seq;
        self.next_rq_seq = (self.next_rq_seq + 1) & 0x3f;
        let msg = lan_request(netfn, cmd, rq_seq, data);
        self.pending = Some(Pending {
            netfn,
            cmd,
            rq_seq,
            msg: msg.clone(),
        });
        self.wrap(&msg)
    }

    /// The pending request again: same rqSeq (so the BMC's reply to either
    /// copy matches), new session sequence number and IV.
    pub fn retransmit(&mut self) -> Result<Option<Vec<u8>>, SessionError> {
        let Some(msg) = self.pending.as_ref().map(|p| p.msg.clone()) else {
            return Ok(None);
        };
        self.wrap(&msg).map(Some)
    }

    /// Drop the pending request (e.g. the caller gave up on it).
    pub fn abandon(&mut self) {
        self.pending = None;
    }

    /// Close Session (0x06/0x3C) request for this session.
    pub fn close_request(&mut self) -> Result<Vec<u8>, SessionError> {
        let sid = self.bmc_sid.to_le_bytes();
        self.request(0x06, 0x3c, &sid)
    }

    fn seq_acceptable(&self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.in_highest {
            return true;
        }
        let back = self.in_highest - seq;
        back < SEQ_WINDOW && self.in_seen & (1 << back) == 0
    }

    fn seq_record(&mut self, seq: u32) {
        if seq > self.in_highest {
            let shift = seq - self.in_highest;
            self.in_seen = if shift >= SEQ_WINDOW {
                0
            } else {
                self.in_seen << shift
            };
            self.in_seen |= 1;
            self.in_highest = seq;
        } else {
            self.in_seen |= 1 << (self.in_highest - seq);
        }
    }

    /// Feed one received datagram.  Returns the response to the pending
    /// request at most once; everything else is `Ignored` with a reason.
    pub fn handle(&mut self, datagram: &[u8]) -> Incoming {
        let Ok(pkt) = decode_packet(datagram, self.keys.suite.integrity.auth_code_len()) else {
            return Incoming::Ignored("undecodable datagram");
        };
        if pkt.payload_type != payload_type::IPMI && pkt.payload_type != payload_type::SOL {
            return Incoming::Ignored("not an IPMI or SOL payload");
        }
        if pkt.session_id != self.console_sid {
            return Incoming::Ignored("wrong session ID");
        }
        let Some((covered, code)) = pkt.integrity else {
            return Incoming::Ignored("unauthenticated packet in an authenticated session");
        };
        if !self.keys.integrity_matches(covered, code) {
            return Incoming::Ignored("bad integrity code");
        }
        if !pkt.encrypted {
            return Incoming::Ignored("unencrypted payload in an encrypted session");
        }
        if !self.seq_acceptable(pkt.seq) {
            return Incoming::Ignored("replayed or out-of-window session sequence number");
        }
        let Ok(plain) = self.keys.decrypt(pkt.payload) else {
            return Incoming::Ignored("undecryptable payload");
        };
        if pkt.payload_type == payload_type::SOL {
            self.seq_record(pkt.seq);
            return Incoming::Sol(plain);
        }
        let Ok(rsp) = LanResponse::decode(&plain) else {
            return Incoming::Ignored("malformed IPMI response");
        };
        // Authentic and fresh: remember the sequence number even if stale.
        self.seq_record(pkt.seq);
        let Some(p) = self.pending.as_ref() else {
            return Incoming::Ignored("response with no request pending (late duplicate)");
        };
        if rsp.rq_seq != p.rq_seq {
            return Incoming::Ignored("stale rqSeq (reply to an earlier request)");
        }
        if rsp.netfn != (p.netfn | 1) || rsp.cmd != p.cmd {
            return Incoming::Ignored("response netFn/cmd does not match the request");
        }
        if rsp.rq_addr != CONSOLE_SWID {
            return Incoming::Ignored("response addressed to another requester");
        }
        self.pending = None;
        Incoming::Response(Response {
            netfn: rsp.netfn,
            cmd: rsp.cmd,
            completion_code: rsp.completion_code,
            data: rsp.data,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::power::ipmi::crypto::SessionKeys;
    use proptest::prelude::*;

    /// A minimal in-memory BMC for suite 3/17 handshakes, written from the
    /// spec's point of view of the managed system.
    pub(crate) struct FakeBmc {
        pub suite: CipherSuite,
        pub password: Vec<u8>,
        pub guid: [u8; 16],
        pub bmc_sid: u32,
        pub bmc_rand: [u8; 16],
        pub console_sid: u32,
        pub keys: Option<SessionKeys>,
        pub ctx: Option<RakpContext>,
        pub seq: u32,
    }

    impl FakeBmc {
        pub fn new(suite: CipherSuite, password: &[u8]) -> FakeBmc {
            FakeBmc {
                suite,
                password: password.to_vec(),
                guid: [0x5a; 16],
                bmc_sid: 0x0000_0102,
                bmc_rand: [0x33; 16],
                console_sid: 0,
                keys: None,
                ctx: None,
                seq: 0,
            }
        }

        /// Answer one handshake datagram.
        pub fn answer(&mut self, d: &[u8]) -> Vec<u8> {
            let pkt = decode_packet(d, 0).expect("handshake packet");
            let p = pkt.payload;
            match pkt.payload_type {
                payload_type::OPEN_SESSION_REQUEST => {
                    self.console_sid = le32(p, 4);
                    let ok = p[12] == self.suite.auth.id();
                    let mut r = vec![p[0], if ok { 0 } else { 0x11 }, 4, 0];
                    r.extend_from_slice(&self.console_sid.to_le_bytes());
                    r.extend_from_slice(&self.bmc_sid.to_le_bytes());
                    r.extend_from_slice(&p[8..32]);
                    encode_packet(payload_type::OPEN_SESSION_RESPONSE, 0, 0, &r, None)
                }
                payload_type::RAKP1 => {
                    let ulen = p[27] as usize;
                    let ctx = RakpContext {
                        console_sid: self.console_sid,
                        bmc_sid: self.bmc_sid,
                        console_rand: arr16(p, 8),
                        bmc_rand: self.bmc_rand,
                        bmc_guid: self.guid,
                        role: p[24],
                        username: p[28..28 + ulen].to_vec(),
                    };
                    let code = ctx.rakp2_auth_code(self.suite.auth, &self.password);
                    let mut r = vec![p[0], 0, 0, 0];
                    r.extend_from_slice(&self.console_sid.to_le_bytes());
                    r.extend_from_slice(&self.bmc_rand);
                    r.extend_from_slice(&self.guid);
                    r.extend_from_slice(&code);
                    self.ctx = Some(ctx);
                    encode_packet(payload_type::RAKP2, 0, 0, &r, None)
                }
                payload_type::RAKP3 => {
                    let ctx = self.ctx.clone().expect("rakp1 first");
                    let want = ctx.rakp3_auth_code(self.suite.auth, &self.password);
                    let status = if p[8..] == want[..] { 0 } else { 0x0f };
                    let sik = ctx.sik(self.suite.auth, &self.password);
                    let mut r = vec![p[0], status, 0, 0];
                    r.extend_from_slice(&self.console_sid.to_le_bytes());
                    r.extend_from_slice(&ctx.rakp4_icv(self.suite.auth, &sik));
                    self.keys = Some(SessionKeys::from_sik(self.suite, &sik));
                    encode_packet(payload_type::RAKP4, 0, 0, &r, None)
                }
                other => panic!("unexpected payload type {other}"),
            }
        }

        /// Answer an IPMI request inside the session with `cc` + `data`.
        pub fn respond(&mut self, d: &[u8], cc: u8, data: &[u8]) -> Vec<u8> {
            let keys = self.keys.clone().expect("session");
            let pkt = decode_packet(d, keys.suite.integrity.auth_code_len()).expect("decode");
            let (covered, code) = pkt.integrity.expect("authenticated");
            assert!(keys.integrity_matches(covered, code), "request integrity");
            assert_eq!(pkt.session_id, self.bmc_sid);
            let m = keys.decrypt(pkt.payload).expect("decrypt");
            assert_eq!(checksum(&m[..2]), m[2]);
            let last = m.len() - 1;
            assert_eq!(checksum(&m[3..last]), m[last]);
            let (netfn, rq_seq, cmd) = (m[1] >> 2, m[4] >> 2, m[5]);
            let mut r = vec![CONSOLE_SWID, ((netfn | 1) << 2)];
            r.push(checksum(&r));
            r.extend_from_slice(&[BMC_ADDR, rq_seq << 2, cmd, cc]);
            r.extend_from_slice(data);
            let c = checksum(&r[3..]);
            r.push(c);
            self.seq += 1;
            encode_packet(
                payload_type::IPMI,
                self.console_sid,
                self.seq,
                &r,
                Some((&keys, [0x42; 16])),
            )
        }
    }

    pub(crate) fn cfg(suite: CipherSuite, password: &[u8]) -> HandshakeConfig {
        HandshakeConfig {
            username: b"admin".to_vec(),
            password: password.to_vec(),
            kg: None,
            suite,
            privilege: Privilege::Administrator,
        }
    }

    pub(crate) fn establish(suite: CipherSuite) -> (Session, FakeBmc) {
        let mut bmc = FakeBmc::new(suite, b"pass");
        let mut hs = Handshake::new(cfg(suite, b"pass"), [1; 32]).expect("hs");
        let mut out = hs.start();
        loop {
            let reply = bmc.answer(&out);
            match hs.handle(&reply).expect("handshake step") {
                HsEvent::Send(d) => out = d,
                HsEvent::Established(s) => return (*s, bmc),
                HsEvent::Ignored(r) => panic!("ignored: {r}"),
            }
        }
    }

    #[test]
    fn sol_payloads_pass_the_session_checks() {
        for suite in [CipherSuite::SUITE_3, CipherSuite::SUITE_17] {
            let (mut s, mut bmc) = establish(suite);
            let keys = bmc.keys.clone().expect("keys");
            bmc.seq += 1;
            let d = encode_packet(
                payload_type::SOL,
                bmc.console_sid,
                bmc.seq,
                &[1, 0, 0, 0, b'x'],
                Some((&keys, [7; 16])),
            );
            assert_eq!(s.handle(&d), Incoming::Sol(vec![1, 0, 0, 0, b'x']));
            // A replay is not delivered twice.
            assert!(matches!(s.handle(&d), Incoming::Ignored(_)));
            // Ours: payload type 1, encrypted, authenticated.
            let out = s.sol(&[0, 1, 1, 0]).expect("sol");
            let pkt = decode_packet(&out, keys.suite.integrity.auth_code_len()).expect("decode");
            assert_eq!(pkt.payload_type, payload_type::SOL);
            assert!(pkt.encrypted && pkt.integrity.is_some());
            assert_eq!(
                keys.decrypt(pkt.payload).expect("decrypt"),
                vec![0, 1, 1, 0]
            );
        }
    }

    #[test]
    fn handshake_and_request_suite3_and_17() {
        for suite in [CipherSuite::SUITE_3, CipherSuite::SUITE_17] {
            let (mut s, mut bmc) = establish(suite);
            assert_eq!(s.suite().id, suite.id);
            let req = s.request(0x00, 0x01, &[]).expect("req");
            let rsp = bmc.respond(&req, 0, &[0x01, 0, 0, 0]);
            match s.handle(&rsp) {
                Incoming::Response(r) => {
                    assert_eq!((r.netfn, r.cmd, r.completion_code), (0x01, 0x01, 0));
                    assert_eq!(r.data, vec![0x01, 0, 0, 0]);
                }
                other => panic!("{other:?}"),
            }
            // The same datagram again: replayed sequence number.
            assert_eq!(
                s.handle(&rsp),
                Incoming::Ignored("replayed or out-of-window session sequence number")
            );
        }
    }

    #[test]
    fn wrong_password_fails_at_rakp2() {
        let mut bmc = FakeBmc::new(CipherSuite::SUITE_3, b"pass");
        let mut hs = Handshake::new(cfg(CipherSuite::SUITE_3, b"nope"), [2; 32]).expect("hs");
        let o = hs.start();
        let HsEvent::Send(r1) = hs.handle(&bmc.answer(&o)).expect("open") else {
            panic!()
        };
        match hs.handle(&bmc.answer(&r1)) {
            Err(SessionError::AuthFailed(m)) => assert!(!m.contains("nope")),
            _ => panic!("expected AuthFailed"),
        }
    }

    #[test]
    fn suite_rejected_at_open_session() {
        let mut bmc = FakeBmc::new(CipherSuite::SUITE_3, b"pass");
        let mut hs = Handshake::new(cfg(CipherSuite::SUITE_17, b"pass"), [3; 32]).expect("hs");
        let o = hs.start();
        assert!(matches!(
            hs.handle(&bmc.answer(&o)),
            Err(SessionError::SuiteRejected {
                suite: 17,
                status: 0x11,
                ..
            })
        ));
    }

    #[test]
    fn retransmitted_rakp1_ignores_reply_to_old_tag() {
        let mut bmc = FakeBmc::new(CipherSuite::SUITE_3, b"pass");
        let mut hs = Handshake::new(cfg(CipherSuite::SUITE_3, b"pass"), [4; 32]).expect("hs");
        let o = hs.start();
        let HsEvent::Send(r1) = hs.handle(&bmc.answer(&o)).expect("open") else {
            panic!()
        };
        let old_reply = bmc.answer(&r1);
        let r1b = hs.retransmit();
        assert!(matches!(hs.handle(&old_reply), Ok(HsEvent::Ignored(_))));
        bmc.bmc_rand = [0x44; 16]; // the BMC draws a new Rc for the second RAKP1
        let HsEvent::Send(r3) = hs.handle(&bmc.answer(&r1b)).expect("rakp2") else {
            panic!()
        };
        assert!(matches!(
            hs.handle(&bmc.answer(&r3)),
            Ok(HsEvent::Established(_))
        ));
    }

    #[test]
    fn retransmit_keeps_rqseq_and_late_duplicate_is_ignored() {
        let (mut s, mut bmc) = establish(CipherSuite::SUITE_3);
        let first = s.request(0x00, 0x02, &[0x01]).expect("req");
        let again = s.retransmit().expect("ok").expect("pending");
        assert_ne!(first, again, "new session seq + IV");
        let rsp_a = bmc.respond(&first, 0, &[]);
        let rsp_b = bmc.respond(&again, 0, &[]);
        assert!(matches!(s.handle(&rsp_b), Incoming::Response(_)));
        assert_eq!(
            s.handle(&rsp_a),
            Incoming::Ignored("response with no request pending (late duplicate)")
        );
        // A reply to the old rqSeq while a new request is pending.
        let _next = s.request(0x00, 0x01, &[]).expect("req");
        let stale = bmc.respond(&first, 0, &[]);
        assert_eq!(
            s.handle(&stale),
            Incoming::Ignored("stale rqSeq (reply to an earlier request)")
        );
    }

    #[test]
    fn rejects_wrong_session_id_and_bad_integrity() {
        let (mut s, mut bmc) = establish(CipherSuite::SUITE_17);
        let req = s.request(0x00, 0x01, &[]).expect("req");
        let good = bmc.respond(&req, 0, &[0, 0, 0, 0]);
        let mut wrong_sid = good.clone();
        wrong_sid[6] ^= 0xff;
        assert_eq!(s.handle(&wrong_sid), Incoming::Ignored("wrong session ID"));
        let mut bad_mac = good.clone();
        let n = bad_mac.len();
        bad_mac[n - 1] ^= 1;
        assert_eq!(s.handle(&bad_mac), Incoming::Ignored("bad integrity code"));
        let mut bad_body = good.clone();
        bad_body[30] ^= 1;
        assert_eq!(s.handle(&bad_body), Incoming::Ignored("bad integrity code"));
        assert!(matches!(s.handle(&good), Incoming::Response(_)));
    }

    #[test]
    fn sequence_window() {
        let (mut s, _) = establish(CipherSuite::SUITE_3);
        assert!(!s.seq_acceptable(0));
        s.seq_record(10);
        assert!(!s.seq_acceptable(10));
        assert!(s.seq_acceptable(9));
        s.seq_record(9);
        assert!(!s.seq_acceptable(9));
        s.seq_record(100);
        assert!(!s.seq_acceptable(10), "out of window");
        assert!(s.seq_acceptable(99) && s.seq_acceptable(69) && !s.seq_acceptable(68));
    }

    #[test]
    fn lan_request_layout() {
        // Set Session Privilege Level (ADMIN), rqSeq 1: as ipmitool sends it.
        assert_eq!(
            lan_request(0x06, 0x3b, 1, &[0x04]),
            vec![0x20, 0x18, 0xc8, 0x81, 0x04, 0x3b, 0x04, 0x3c]
        );
        let r = LanResponse::decode(&[0x81, 0x1c, 0x63, 0x20, 0x04, 0x3b, 0x00, 0x04, 0x9d])
            .expect("rsp");
        assert_eq!(
            (r.netfn, r.rq_seq, r.cmd, r.completion_code, r.data),
            (7, 1, 0x3b, 0, vec![4])
        );
        assert!(
            LanResponse::decode(&[0x81, 0x1c, 0x64, 0x20, 0x04, 0x3b, 0x00, 0x04, 0x9d]).is_err()
        );
    }

    fn arbitrary_session_datagram() -> impl Strategy<Value = Vec<u8>> {
        // Valid RMCP + RMCP+ header prefix with arbitrary flags/len, then junk,
        // so the fuzzing reaches trailer, MAC and payload parsing.
        (
            any::<u8>(),
            any::<[u8; 8]>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..160),
        )
            .prop_map(|(pt, ids, len, rest)| {
                let mut v = RMCP_HEADER.to_vec();
                v.push(AUTH_TYPE_RMCP_PLUS);
                v.push(pt);
                v.extend_from_slice(&ids);
                v.extend_from_slice(&(len % 200).to_le_bytes());
                v.extend_from_slice(&rest);
                v
            })
    }

    /// An authenticated (valid AuthCode) packet around an arbitrary payload,
    /// so fuzzing gets past the integrity check into decryption and parsing.
    fn authenticated(keys: &SessionKeys, console_sid: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = RMCP_HEADER.to_vec();
        v.extend_from_slice(&[AUTH_TYPE_RMCP_PLUS, 0xc0]);
        v.extend_from_slice(&console_sid.to_le_bytes());
        v.extend_from_slice(&seq.to_le_bytes());
        v.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        v.extend_from_slice(payload);
        let pad = integrity_pad_len(v.len() - 4);
        v.extend(std::iter::repeat_n(0xffu8, pad));
        v.push(pad as u8);
        v.push(NEXT_HEADER);
        let code = keys.integrity_code(&v[4..]);
        v.extend_from_slice(&code);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]

        #[test]
        fn authenticated_junk_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..80),
            seq in any::<u32>(),
            encrypt_it in any::<bool>(),
        ) {
            let keys = SessionKeys::from_sik(CipherSuite::SUITE_17, &[3; 32]);
            let mut s = Session::new(keys.clone(), 7, 9, [8; 32]);
            let _ = s.request(0, 1, &[]);
            // Either junk where the IV + ciphertext should be, or a properly
            // encrypted junk IPMI message (reaches LanResponse and matching).
            let payload = if encrypt_it { keys.encrypt(&body, [0x11; 16]) } else { body.clone() };
            let _ = s.handle(&authenticated(&keys, 7, seq, &payload));
            let _ = keys.decrypt(&body);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode_packet(&bytes, 0);
            let _ = decode_packet(&bytes, 12);
            let _ = decode_packet(&bytes, 16);
            let _ = OpenSessionResponse::decode(&bytes);
            let _ = Rakp2::decode(&bytes);
            let _ = Rakp4::decode(&bytes);
            let _ = LanResponse::decode(&bytes);
        }

        #[test]
        fn state_machines_never_panic(d in arbitrary_session_datagram(), step in 0u8..3) {
            let _ = decode_packet(&d, 12);
            let _ = decode_packet(&d, 16);
            let mut hs = Handshake::new(cfg(CipherSuite::SUITE_3, b"pass"), [5; 32]).expect("hs");
            let _ = hs.start();
            // Put the handshake into the requested state before feeding junk.
            if step > 0 {
                hs.state = if step == 1 { HsState::AwaitRakp2 } else { HsState::AwaitRakp4 };
                hs.ctx = Some(RakpContext {
                    console_sid: hs.console_sid, bmc_sid: 1, console_rand: [0; 16],
                    bmc_rand: [0; 16], bmc_guid: [0; 16], role: 0x14, username: b"admin".to_vec(),
                });
            }
            let _ = hs.handle(&d);
            let mut s = Session::new(SessionKeys::from_sik(CipherSuite::SUITE_3, &[1; 20]), 7, 9, [6; 32]);
            let _ = s.request(0, 1, &[]);
            let _ = s.handle(&d);
        }
    }
}
