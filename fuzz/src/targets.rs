//! One function per fuzz target. Each must return normally on every input:
//! a panic (or an `assert!` of an invariant below) is a crash for AFL++.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rackboot::dhcp::opts;
use rackboot::dhcp::{classify, respond, Answer, BootFile, ServerParams};
use rackboot::power::ipmi::crypto::{CipherSuite, SessionKeys};
use rackboot::power::ipmi::session::{
    self as ipmi, Handshake, HandshakeConfig, HsEvent, Incoming, Privilege,
};
use rackboot::power::ipmi::{BootDevice, ChassisStatus};
use rackboot::tftp::packet::{Packet, Request};
use rackboot::tftp::session::{Action, Session, SessionConfig};
use rackboot::tftp::RootsSource;

use crate::records;

// ---------------------------------------------------------------- dhcp

/// One datagram through `classify`, then `respond` in address and proxy mode
/// with an answer and without; the option sub-parsers on the raw bytes too.
pub fn dhcp(data: &[u8]) {
    let server = Ipv4Addr::new(10, 77, 0, 1);
    let boot = BootFile {
        next_server: server,
        filename: "undionly.kpxe".into(),
        http_client: false,
        ipxe: false,
    };
    let addr = Answer {
        yiaddr: Some(Ipv4Addr::new(10, 77, 0, 50)),
        subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
        router: Some(server),
        dns: vec![server],
        domain: Some("lab.example".into()),
        hostname: Some("node50".into()),
        lease_secs: 600,
        boot: Some(boot.clone()),
    };
    let proxy = Answer::boot_only(Some(BootFile {
        filename: "http://10.77.0.1:8080/boot.ipxe".into(),
        http_client: true,
        ..boot
    }));
    if let Ok(req) = classify(data) {
        for srv in [
            ServerParams::new(server, false),
            ServerParams::new(server, true),
        ] {
            let _ = respond(&req, None, &srv);
            let _ = respond(&req, Some(&addr), &srv);
            let _ = respond(&req, Some(&proxy), &srv);
        }
    }
    let body = data.get(240..).unwrap_or(data);
    let _ = opts::RawOptions::parse(body);
    let _ = opts::parse_arch_list(body);
    let _ = opts::parse_vendor_class(body);
    let _ = opts::parse_user_class(body);
    let _ = opts::user_class_has(body, b"iPXE");
    let _ = opts::parse_pxe_vendor(body);
    let _ = opts::parse_ipxe_opts(body);
}

// ---------------------------------------------------------------- tftp

/// Record 0: the request (`Packet::parse`); then a session over a file whose
/// length is the record's kind byte times 700 bytes; later records: kind
/// even = a datagram from the client, odd = the retransmission timer fired.
/// Invariant: DATA never reaches past the end of the file.
pub fn tftp(data: &[u8]) {
    let recs = records(data);
    let Some(&(len_sel, first)) = recs.first() else {
        let _ = Packet::parse(data);
        return;
    };
    let Ok(pkt) = Packet::parse(first) else {
        return;
    };
    let (Packet::Rrq(req) | Packet::Wrq(req)) = pkt else {
        return;
    };
    let _ = RootsSource::sanitize(&req.filename);
    let file_len = u64::from(len_sel) * 700;
    for cfg in [
        SessionConfig::default(),
        SessionConfig {
            max_blksize: 512,
            max_window: 4,
            retries: 2,
            ..SessionConfig::default()
        },
    ] {
        run_tftp_session(&req, file_len, &cfg, &recs[1..]);
    }
}

fn run_tftp_session(req: &Request, file_len: u64, cfg: &SessionConfig, recs: &[(u8, &[u8])]) {
    let (mut s, first) = Session::new(req, file_len, cfg);
    check_actions(&first, file_len);
    for &(kind, dgram) in recs {
        if s.is_finished() {
            break;
        }
        let acts = if kind & 1 == 0 {
            s.on_packet(dgram)
        } else {
            s.on_timeout()
        };
        check_actions(&acts, file_len);
        let _ = (s.negotiated(), s.bytes_acked(), s.negotiating());
    }
}

fn check_actions(acts: &[Action], file_len: u64) {
    for a in acts {
        if let Action::SendData { offset, len, .. } = a {
            assert!(
                offset + *len as u64 <= file_len,
                "DATA {offset}+{len} past the end of a {file_len}-byte file"
            );
        }
        if let Action::Send(p) = a {
            let _ = Packet::parse(p);
        }
    }
}

// ---------------------------------------------------------------- ipmi

const SIK: [u8; 20] = [7; 20];
const CONSOLE_SID: u32 = 0x1122_3344;
const BMC_SID: u32 = 0x5566_7788;

/// First byte picks the mode (bit 7: suite 17, else suite 3):
/// 0: every decoder on the rest (RMCP+/session headers, Open Session
///    Response, RAKP 2/4, LAN response, chassis status, boot flags, AES
///    trailer);
/// 1: a handshake fed records. Kind bit 0 clear: a raw datagram. Set: the
///    bytes are a payload, wrapped in an unauthenticated RMCP+ header of
///    payload type `kind >> 2`; with kind bit 1 also set, its message tag
///    (byte 0) and console session ID (bytes 4..8) are first set to those of
///    the last request, as a BMC's answer carries them.
/// 2: an established session fed records (kind & 3: 0 raw datagram,
///    1 a response message encrypted and signed as the BMC would, so the
///    fuzzer gets behind the integrity check; kind bit 2: fix its two IPMI
///    checksums first; bit 3: reuse the last sequence number. 2: a new
///    request (netFn, cmd, data); 3: retransmit or, with bit 2, abandon).
pub fn ipmi(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let suite = if mode & 0x80 != 0 {
        CipherSuite::SUITE_17
    } else {
        CipherSuite::SUITE_3
    };
    match mode & 0x7f {
        0 => ipmi_decoders(rest, suite),
        1 => ipmi_handshake(rest, suite),
        2 => ipmi_session(rest, suite),
        _ => {}
    }
}

fn ipmi_decoders(d: &[u8], suite: CipherSuite) {
    for n in [0, 12, 16] {
        let _ = ipmi::decode_packet(d, n);
    }
    let _ = ipmi::OpenSessionResponse::decode(d);
    let _ = ipmi::Rakp2::decode(d);
    let _ = ipmi::Rakp4::decode(d);
    let _ = ipmi::LanResponse::decode(d);
    let _ = ChassisStatus::parse(d);
    let _ = BootDevice::parse_param5(d);
    if let [a, b, c, ..] = d {
        let _ = rackboot::power::ipmi::completion_code_meaning(*a, *b, *c);
        let _ = ipmi::rmcp_status_meaning(*a);
    }
    let _ = SessionKeys::from_sik(suite, &SIK).decrypt(d);
}

fn ipmi_handshake(d: &[u8], suite: CipherSuite) {
    let cfg = HandshakeConfig {
        username: b"admin".to_vec(),
        password: b"password".to_vec(),
        kg: None,
        suite,
        privilege: Privilege::Administrator,
    };
    let Ok(mut hs) = Handshake::new(cfg, [1; 32]) else {
        return;
    };
    let first = hs.start();
    // Open Session Request payload (after 4 RMCP + 12 session header bytes):
    // tag, privilege, reserved x2, console session ID.
    let console_sid: [u8; 4] = first[20..24].try_into().expect("open session request");
    let mut tag = first[16];
    for (kind, bytes) in records(d) {
        let dgram = if kind & 1 == 1 {
            let mut p = bytes.to_vec();
            if kind & 2 == 2 && p.len() >= 8 {
                p[0] = tag;
                p[4..8].copy_from_slice(&console_sid);
            }
            ipmi::encode_packet(kind >> 2, 0, 0, &p, None)
        } else {
            bytes.to_vec()
        };
        let sent = match hs.handle(&dgram) {
            Ok(HsEvent::Send(out)) => out,
            Ok(HsEvent::Ignored(_)) if kind == 0xfe => hs.retransmit(),
            Ok(HsEvent::Ignored(_)) => continue,
            Ok(HsEvent::Established(_)) | Err(_) => return,
        };
        if let Some(&t) = sent.get(16) {
            tag = t;
        }
    }
}

fn ipmi_session(d: &[u8], suite: CipherSuite) {
    let keys = SessionKeys::from_sik(suite, &SIK);
    let mut s = ipmi::Session::new(keys.clone(), CONSOLE_SID, BMC_SID, [2; 32]);
    let mut seq = 0u32;
    for (kind, bytes) in records(d) {
        match kind & 3 {
            0 => {
                let _ = s.handle(bytes);
            }
            1 => {
                let mut m = bytes.to_vec();
                if kind & 4 != 0 && m.len() >= 4 {
                    m[2] = ipmi::checksum(&m[..2]);
                    let last = m.len() - 1;
                    m[last] = ipmi::checksum(&m[3..last]);
                }
                if kind & 8 == 0 {
                    seq = seq.wrapping_add(1);
                }
                let dgram =
                    ipmi::encode_packet(0x00, CONSOLE_SID, seq, &m, Some((&keys, [0x42; 16])));
                if let Incoming::Response(r) = s.handle(&dgram) {
                    let _ = ChassisStatus::parse(&r.data);
                    let _ = BootDevice::parse_param5(&r.data);
                }
            }
            2 => {
                let (netfn, cmd) = match bytes {
                    [n, c, ..] => (*n & 0x3e, *c),
                    _ => (0x00, 0x01),
                };
                let _ = s.request(netfn, cmd, bytes.get(2..).unwrap_or(&[]));
            }
            _ => {
                if kind & 4 != 0 {
                    s.abandon();
                } else {
                    let _ = s.retransmit();
                }
            }
        }
    }
}

// ---------------------------------------------------------------- redfish

/// One response body through every parse the Redfish driver applies.
pub fn redfish(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    rackboot::power::redfish::fuzzing::response_body(&body);
}

// ---------------------------------------------------------------- config

/// A throwaway copy of the repository's sample config (as tests/it's
/// harness makes), created once per fuzzer process: under
/// `$RACKBOOT_FUZZ_DIR` if set (bench/fuzz.sh removes it), else the temp dir.
pub fn sample_dir() -> PathBuf {
    let base = std::env::var_os("RACKBOOT_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("rackboot-fuzz-sample-{}", std::process::id()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("sample dir");
    for f in ["rackboot.toml", "systems.toml"] {
        std::fs::copy(repo.join(f), dir.join(f)).expect("copy sample config");
    }
    copy_tree(&repo.join("profiles"), &dir.join("profiles"));
    copy_tree(&repo.join("kickstarts"), &dir.join("kickstarts"));
    std::fs::create_dir_all(dir.join("tests/lab")).expect("mkdir");
    std::fs::write(dir.join("tests/lab/bmc-password"), "password\n").expect("write");
    let boot = dir.join(".lab/boot");
    std::fs::create_dir_all(&boot).expect("mkdir");
    std::fs::write(boot.join("vmlinuz"), vec![0x5a; 4096]).expect("write");
    std::fs::write(boot.join("initrd.img"), b"initrd-bytes").expect("write");
    std::fs::create_dir_all(dir.join("firmware")).expect("mkdir");
    std::fs::write(dir.join("firmware/ipxe.efi"), b"MZ-efi").expect("write");
    std::fs::create_dir_all(dir.join(".lab/data")).expect("mkdir");
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// The config loader on text: sections split at NUL bytes are
/// `rackboot.toml`, `systems.toml` and the text of profile `lab`.
pub struct ConfigTarget {
    dir: PathBuf,
    base: rackboot::config::Settings,
}

impl ConfigTarget {
    pub fn new() -> ConfigTarget {
        let dir = sample_dir();
        let base = rackboot::config::load_settings(&dir).expect("sample settings load");
        ConfigTarget { dir, base }
    }

    pub fn run(&self, data: &[u8]) {
        let mut parts = data.splitn(3, |b| *b == 0);
        let texts: Vec<&str> = parts
            .by_ref()
            .map(|p| std::str::from_utf8(p).unwrap_or(""))
            .collect();
        let daemon = texts.first().copied().unwrap_or("");
        let systems = texts.get(1).copied();
        let profile = texts.get(2).copied();
        let _ = rackboot::config::parse_duration(daemon);
        let mut settings = match rackboot::config::parse_settings(&self.dir, daemon) {
            Ok(s) => s,
            Err(e) => {
                let _ = e.to_string();
                self.base.clone()
            }
        };
        // The inventory's files stay those of the sample dir: a fuzzed path
        // would only make the loader walk the machine's file system.
        settings.config_dir = self.base.config_dir.clone();
        settings.profiles_dir = self.base.profiles_dir.clone();
        settings.templates_dir = self.base.templates_dir.clone();
        settings.boot_dir = self.base.boot_dir.clone();
        settings.systems_file = self.base.systems_file.clone();
        let mut profiles = BTreeMap::new();
        if let Some(p) = profile {
            profiles.insert("lab".to_string(), Some(p.to_string()));
        }
        match rackboot::config::load_inventory_with(&settings, systems, &profiles) {
            Ok(inv) => {
                let _ = rackboot::boot::generic_ipxe_script(&inv);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

impl Default for ConfigTarget {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- boot_routes

/// The machine-facing router in process (current-thread runtime, no
/// sockets) on the sample config with a run pending for node52 (token
/// `secret-token`). Input: byte 0 picks the method and the peer address,
/// then the request target (`/done/{mac}?token=...`), optionally followed
/// by `\n` and a Range header value.
pub struct BootRoutes {
    rt: tokio::runtime::Runtime,
    ctx: rackboot::http::boot::BootContext,
    _dir: PathBuf,
}

impl BootRoutes {
    pub fn new() -> BootRoutes {
        use rackboot::boot::BootTable;
        use rackboot::http::boot::{BootContext, HttpStats};
        use rackboot::observe::ObservationSink;
        use tokio::sync::watch;
        let dir = sample_dir();
        let cfg = rackboot::config::load(&dir).expect("sample config loads");
        let mut table = BootTable::new();
        table.insert(
            "node52",
            rackboot::render::RunCtx {
                id: "r1".into(),
                token: "secret-token".into(),
                profile: None,
                persistent: false,
                facts: None,
            },
        );
        let (inv_tx, inventory) = watch::channel(Arc::new(cfg.inventory));
        let (table_tx, table) = watch::channel(Arc::new(table));
        // The senders live as long as the process.
        std::mem::forget(inv_tx);
        std::mem::forget(table_tx);
        let ctx = BootContext {
            inventory,
            table,
            boot_dir: cfg.settings.boot_dir.clone(),
            firmware_dir: cfg.settings.firmware_dir.clone(),
            obs: ObservationSink::discard(),
            stats: Arc::new(HttpStats::default()),
            engine: None,
            own_ip_only: true,
            discovered: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        BootRoutes { rt, ctx, _dir: dir }
    }

    pub fn run(&self, data: &[u8]) {
        use axum::body::Body;
        use axum::extract::connect_info::MockConnectInfo;
        use axum::http::Request;
        use tower::ServiceExt;
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        let method = ["GET", "POST", "HEAD"][(sel & 3) as usize % 3];
        let peer = ["10.77.0.52", "10.77.0.50", "127.0.0.1", "10.77.0.9"][(sel >> 2) as usize & 3];
        let peer: SocketAddr = SocketAddr::new(peer.parse().expect("ip"), 40000);
        let mut lines = rest.splitn(2, |b| *b == b'\n');
        let target = lines.next().unwrap_or(&[]);
        let range = lines.next();
        let mut b = Request::builder().method(method).uri(target);
        if let Some(r) = range {
            b = b.header("range", r);
        }
        let Ok(req) = b.body(Body::empty()) else {
            return;
        };
        let app = rackboot::http::boot::router(self.ctx.clone()).layer(MockConnectInfo(peer));
        self.rt.block_on(async move {
            let res = match app.oneshot(req).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            let _ = axum::body::to_bytes(res.into_body(), 1 << 20).await;
        });
    }
}

impl Default for BootRoutes {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- sol

/// Serial over LAN (`power::ipmi::sol`): the first byte is the BMC's
/// inbound payload size; then records: kind & 3 = 0 a SOL payload from the
/// BMC (`SolState::on_payload`), 1 characters typed (`write`), 2 the
/// retransmission timer (`on_timeout`), 3 an Activate Payload response
/// (`Activated::parse`). Every packet the state sends must be a valid SOL
/// payload of at most 255 characters.
pub fn sol(data: &[u8]) {
    use rackboot::power::ipmi::sol::{Activated, SolPacket, SolState};
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let mut s = SolState::new(u16::from(size));
    let check = |p: Option<Vec<u8>>| {
        if let Some(p) = p {
            let d = SolPacket::decode(&p).expect("our own packet decodes");
            assert!(d.data.len() <= 255);
        }
    };
    for (kind, bytes) in records(rest) {
        match kind & 3 {
            0 => {
                if let Ok(o) = s.on_payload(bytes) {
                    check(o.send);
                }
            }
            1 => check(s.write(bytes)),
            2 => check(s.on_timeout()),
            _ => {
                let _ = Activated::parse(bytes);
            }
        }
    }
}
