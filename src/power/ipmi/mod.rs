//! Native IPMI 2.0 over LAN (RMCP+) client: no `ipmitool` process.
//!
//! * [`crypto`]: RAKP key exchange and per-suite algorithms (suites 3 and 17).
//! * [`session`]: sans-IO packet codec and session state machines.
//! * [`sol`]: sans-IO Serial over LAN (payload type 1) codec and state;
//!   [`console`]: the SOL console driver on a session of its own.
//! * this module: a thin tokio UDP driver (retransmission with exponential
//!   backoff inside a per-call deadline) and the typed chassis API.
//!
//! Credentials never reach logs, `Debug` output or error strings: the
//! password is a [`Secret`], and the user name is not logged either.
//! Logs use target `rackboot::ipmi` with fields `addr` and `suite`.
//!
//! This module depends on nothing else in the crate.

pub mod bench;
pub mod console;
pub mod crypto;
pub mod session;
pub mod sol;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crypto::CipherSuite;
use session::{
    Handshake, HandshakeConfig, HsEvent, Incoming, Privilege, Response, Session, SessionError,
};

const LOG: &str = "rackboot::ipmi";

/// Commands with side effects run synchronously on some BMCs (ipmi_sim runs
/// its chassis_control program before answering): never retransmit them
/// faster than this, or the action is repeated.
pub const MIN_ACTION_RETRANSMIT: Duration = Duration::from_millis(500);
/// Upper bound of the per-attempt wait after backoff.
const MAX_ATTEMPT_WAIT: Duration = Duration::from_secs(4);
/// How long `close()` waits at most for the Close Session reply.
const CLOSE_BUDGET: Duration = Duration::from_secs(3);
/// How often a handshake for one suite is restarted after a mid-handshake
/// protocol error (e.g. a duplicate RAKP3 the BMC no longer accepts).
const HANDSHAKE_RESTARTS: u32 = 3;

/// A password (or other secret) whose `Debug`/`Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself; only for the key exchange.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// Where and how to reach one BMC.
#[derive(Clone, Debug)]
pub struct IpmiTarget {
    pub addr: SocketAddr,
    pub username: String,
    pub password: Secret,
    /// Cipher suites in preference order (default `[17, 3]`); the client
    /// falls back through them when the BMC rejects one at Open Session.
    pub cipher_suites: Vec<u8>,
    /// First per-attempt wait; doubles on every retransmission.
    pub timeout: Duration,
    /// Retransmissions per request (after the first send).
    pub retries: u32,
    /// Budget of one whole call (`connect` incl. suite fallback, or one operation).
    pub deadline: Duration,
}

impl IpmiTarget {
    /// Defaults: suites `[17, 3]`, 250 ms first attempt, 5 retries, 10 s per call.
    pub fn new(
        addr: SocketAddr,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> IpmiTarget {
        IpmiTarget {
            addr,
            username: username.into(),
            password: password.into(),
            cipher_suites: vec![17, 3],
            timeout: Duration::from_millis(250),
            retries: 5,
            deadline: Duration::from_secs(10),
        }
    }
}

/// Errors of the IPMI client.  Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error("BMC {addr} did not answer within {after:?}")]
    Unreachable { addr: SocketAddr, after: Duration },
    #[error("IPMI authentication failed: {0}")]
    AuthFailed(String),
    #[error("{command} rejected by the BMC: completion code {completion_code:#04x} ({meaning})")]
    Rejected {
        command: &'static str,
        completion_code: u8,
        meaning: &'static str,
    },
    #[error("BMC accepted the request but did not apply it: {0}")]
    NotApplied(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("IPMI protocol error: {0}")]
    Protocol(String),
    #[error("IPMI socket error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<SessionError> for IpmiError {
    fn from(e: SessionError) -> IpmiError {
        match e {
            SessionError::SuiteRejected { .. } => IpmiError::Unsupported(e.to_string()),
            SessionError::AuthFailed(s) | SessionError::RoleRefused(s) => IpmiError::AuthFailed(s),
            SessionError::Protocol(s) => IpmiError::Protocol(s),
            SessionError::Unsupported(s) => IpmiError::Unsupported(s),
        }
    }
}

/// Text for a completion code (generic codes, plus the command-specific
/// 0x80.. codes of the commands this client sends).
pub fn completion_code_meaning(netfn: u8, cmd: u8, cc: u8) -> &'static str {
    match (netfn, cmd, cc) {
        (0x06, 0x3b, 0x80) => "requested level not available for this user",
        (0x06, 0x3b, 0x81) => "requested level exceeds channel or user privilege limit",
        (0x06, 0x3b, 0x82) => "cannot disable user level authentication",
        (0x06, 0x3c, 0x87) => "invalid session ID in request",
        (0x06, 0x3c, 0x88) => "invalid session handle in request",
        (0x00, 0x08, 0x80) | (0x00, 0x09, 0x80) => "parameter not supported",
        (0x06, 0x48, 0x80) => "payload already active on another session",
        (0x06, 0x48, 0x81) | (0x06, 0x49, 0x81) => "payload type is disabled",
        (0x06, 0x48, 0x82) => "payload activation limit reached",
        (0x06, 0x48, 0x83) => "cannot activate payload with encryption",
        (0x06, 0x48, 0x84) => "cannot activate payload without encryption",
        (0x06, 0x49, 0x80) => "payload already deactivated",
        (0x00, 0x08, 0x81) => "attempt to set 'set in progress' when not in 'set complete' state",
        (0x00, 0x08, 0x82) => "attempt to write a read-only parameter",
        (_, _, 0x00) => "success",
        (_, _, 0xc0) => "node busy",
        (_, _, 0xc1) => "invalid or unsupported command",
        (_, _, 0xc2) => "command invalid for given LUN",
        (_, _, 0xc3) => "timeout while processing command",
        (_, _, 0xc4) => "out of space",
        (_, _, 0xc5) => "reservation canceled or invalid",
        (_, _, 0xc6) => "request data truncated",
        (_, _, 0xc7) => "request data length invalid",
        (_, _, 0xc8) => "request data field length limit exceeded",
        (_, _, 0xc9) => "parameter out of range",
        (_, _, 0xca) => "cannot return number of requested data bytes",
        (_, _, 0xcb) => "requested sensor, data, or record not present",
        (_, _, 0xcc) => "invalid data field in request",
        (_, _, 0xcd) => "command illegal for specified sensor or record type",
        (_, _, 0xce) => "command response could not be provided",
        (_, _, 0xcf) => "cannot execute duplicated request",
        (_, _, 0xd0) => "SDR repository in update mode",
        (_, _, 0xd1) => "device in firmware update mode",
        (_, _, 0xd2) => "BMC initialization in progress",
        (_, _, 0xd3) => "destination unavailable",
        (_, _, 0xd4) => "insufficient privilege level",
        (_, _, 0xd5) => "command not supported in present state",
        (_, _, 0xd6) => "command sub-function disabled or unavailable",
        (_, _, 0xff) => "unspecified error",
        (_, _, 0x01..=0x7e) => "device-specific (OEM) completion code",
        (_, _, 0x80..=0xbe) => "command-specific completion code",
        _ => "unknown completion code",
    }
}

/// Get Chassis Status (netFn 0x00, cmd 0x01) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    pub power_on: bool,
    pub power_overload: bool,
    pub interlock: bool,
    pub power_fault: bool,
    pub power_control_fault: bool,
    /// 0 = stays off, 1 = restores previous state, 2 = powers up, 3 = unknown.
    pub restore_policy: u8,
    /// Raw "last power event" byte.
    pub last_power_event: u8,
    pub intrusion: bool,
    pub front_panel_lockout: bool,
    pub drive_fault: bool,
    pub cooling_fault: bool,
}

impl ChassisStatus {
    /// Parse the response data (after the completion code).
    pub fn parse(d: &[u8]) -> Result<ChassisStatus, IpmiError> {
        if d.len() < 3 {
            return Err(IpmiError::Protocol(format!(
                "Get Chassis Status: {} data bytes, need 3",
                d.len()
            )));
        }
        let (p, misc) = (d[0], d[2]);
        Ok(ChassisStatus {
            power_on: p & 0x01 != 0,
            power_overload: p & 0x02 != 0,
            interlock: p & 0x04 != 0,
            power_fault: p & 0x08 != 0,
            power_control_fault: p & 0x10 != 0,
            restore_policy: (p >> 5) & 0x03,
            last_power_event: d[1],
            intrusion: misc & 0x01 != 0,
            front_panel_lockout: misc & 0x02 != 0,
            drive_fault: misc & 0x04 != 0,
            cooling_fault: misc & 0x08 != 0,
        })
    }

    /// Any of the fault bits set.
    pub fn any_fault(&self) -> bool {
        self.power_overload
            || self.power_fault
            || self.power_control_fault
            || self.drive_fault
            || self.cooling_fault
    }
}

/// Chassis Control (netFn 0x00, cmd 0x02) actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    PowerOff = 0,
    PowerOn = 1,
    PowerCycle = 2,
    HardReset = 3,
    /// ACPI soft shutdown (the OS decides).
    SoftOff = 5,
}

/// Boot device selector of boot flags parameter 5 (data 2, bits 5:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    /// Force PXE (selector 1, data byte 0x04).
    Pxe,
    /// Force boot from default hard drive (selector 2, data byte 0x08).
    Disk,
    /// No override (selector 0).
    None,
    /// Any other 4-bit selector value, e.g. 5 = CD/DVD, 6 = BIOS setup.
    Other(u8),
}

impl BootTarget {
    pub fn selector(self) -> u8 {
        match self {
            BootTarget::None => 0,
            BootTarget::Pxe => 1,
            BootTarget::Disk => 2,
            BootTarget::Other(x) => x,
        }
    }
    pub fn from_selector(s: u8) -> BootTarget {
        match s & 0x0f {
            0 => BootTarget::None,
            1 => BootTarget::Pxe,
            2 => BootTarget::Disk,
            x => BootTarget::Other(x),
        }
    }
}

/// Boot flags (System Boot Options parameter 5) as far as provisioning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootDevice {
    pub target: BootTarget,
    /// Applies to all future boots, not only the next one.
    pub persistent: bool,
    /// EFI boot instead of legacy (PC compatible).
    pub efi: bool,
}

impl BootDevice {
    /// Data bytes 1..=5 of parameter 5 for a Set, with the valid bit set.
    pub fn to_param5(self) -> [u8; 5] {
        let mut d1 = 0x80;
        if self.persistent {
            d1 |= 0x40;
        }
        if self.efi {
            d1 |= 0x20;
        }
        [d1, (self.target.selector() & 0x0f) << 2, 0, 0, 0]
    }

    /// Parse a Get System Boot Options response (after the completion code):
    /// version, parameter selector, data 1..=5.  Returns the device and the
    /// "boot flags valid" bit.  The target is the selector even when the
    /// valid bit is clear (as ipmitool prints it).
    pub fn parse_param5(d: &[u8]) -> Result<(BootDevice, bool), IpmiError> {
        if d.len() < 4 {
            return Err(IpmiError::Protocol(format!(
                "Get System Boot Options: {} data bytes, need at least 4",
                d.len()
            )));
        }
        if d[1] & 0x7f != 5 {
            return Err(IpmiError::Protocol(format!(
                "Get System Boot Options returned parameter {}",
                d[1] & 0x7f
            )));
        }
        let (d1, d2) = (d[2], d[3]);
        Ok((
            BootDevice {
                target: BootTarget::from_selector((d2 >> 2) & 0x0f),
                persistent: d1 & 0x40 != 0,
                efi: d1 & 0x20 != 0,
            },
            d1 & 0x80 != 0,
        ))
    }
}

/// The time budget of one call: when it started and when it must end.
#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    deadline: Instant,
}

impl Window {
    fn from_now(budget: Duration) -> Window {
        let started = Instant::now();
        Window {
            started,
            deadline: started + budget,
        }
    }
}

#[derive(Clone, Copy)]
struct Timing {
    first_wait: Duration,
    retries: u32,
}

/// What a receive did to the exchange in progress.
enum Step<T> {
    Done(T),
    /// Progress: send this and restart the attempt counter.
    Send(Vec<u8>),
    Continue,
}

/// One retransmitting request/response exchange over the socket.
trait Exchange {
    type Out;
    fn on_datagram(&mut self, d: &[u8]) -> Result<Step<Self::Out>, IpmiError>;
    fn on_timeout(&mut self) -> Result<Vec<u8>, IpmiError>;
}

struct HsExchange<'a> {
    hs: &'a mut Handshake,
    /// The handshake error that ended `drive` (it only carries `IpmiError`).
    failure: Option<SessionError>,
}

impl Exchange for HsExchange<'_> {
    type Out = Session;
    fn on_datagram(&mut self, d: &[u8]) -> Result<Step<Session>, IpmiError> {
        match self.hs.handle(d) {
            Ok(HsEvent::Send(p)) => Ok(Step::Send(p)),
            Ok(HsEvent::Established(s)) => Ok(Step::Done(*s)),
            Ok(HsEvent::Ignored(why)) => {
                tracing::trace!(target: LOG, why, "ignored datagram during handshake");
                Ok(Step::Continue)
            }
            Err(e) => {
                let as_ipmi = IpmiError::from(e.clone());
                self.failure = Some(e);
                Err(as_ipmi)
            }
        }
    }
    fn on_timeout(&mut self) -> Result<Vec<u8>, IpmiError> {
        Ok(self.hs.retransmit())
    }
}

struct ReqExchange<'a>(&'a mut Session);

impl Exchange for ReqExchange<'_> {
    type Out = Response;
    fn on_datagram(&mut self, d: &[u8]) -> Result<Step<Response>, IpmiError> {
        match self.0.handle(d) {
            Incoming::Response(r) => Ok(Step::Done(r)),
            Incoming::Sol(_) => {
                tracing::debug!(target: LOG, "SOL payload while awaiting a response: dropped");
                Ok(Step::Continue)
            }
            Incoming::Ignored(why) => {
                tracing::debug!(target: LOG, why, "ignored datagram");
                Ok(Step::Continue)
            }
        }
    }
    fn on_timeout(&mut self) -> Result<Vec<u8>, IpmiError> {
        match self.0.retransmit()? {
            Some(p) => Ok(p),
            None => Err(IpmiError::Protocol(
                "retransmit with no request pending".into(),
            )),
        }
    }
}

/// Send `first`, then wait/retransmit with exponential backoff until the
/// exchange completes, the retries run out or `deadline` passes.
async fn drive<E: Exchange>(
    sock: &UdpSocket,
    addr: SocketAddr,
    w: Window,
    timing: Timing,
    first: Vec<u8>,
    ex: &mut E,
) -> Result<E::Out, IpmiError> {
    let mut buf = vec![0u8; 1024];
    let mut out = first;
    let mut attempts = 0u32;
    let mut wait = timing.first_wait;
    loop {
        if Instant::now() >= w.deadline {
            return Err(IpmiError::Unreachable {
                addr,
                after: w.started.elapsed(),
            });
        }
        match sock.send(&out).await {
            Ok(_) => {}
            // An ICMP port unreachable from an earlier datagram surfaces here.
            Err(e) if transient(&e) => tracing::debug!(target: LOG, %addr, error = %e, "send"),
            Err(e) => return Err(IpmiError::Io(e)),
        }
        let attempt_end = std::cmp::min(Instant::now() + wait, w.deadline);
        let mut progressed = None;
        loop {
            match tokio::time::timeout_at(attempt_end, sock.recv(&mut buf)).await {
                Err(_elapsed) => break,
                Ok(Err(e)) if transient(&e) => {
                    tracing::debug!(target: LOG, %addr, error = %e, "recv");
                    // Nothing listening; do not spin: wait out this attempt.
                    tokio::time::sleep_until(attempt_end).await;
                    break;
                }
                Ok(Err(e)) => return Err(IpmiError::Io(e)),
                Ok(Ok(n)) => match ex.on_datagram(&buf[..n])? {
                    Step::Done(v) => return Ok(v),
                    Step::Send(p) => {
                        progressed = Some(p);
                        break;
                    }
                    Step::Continue => {}
                },
            }
        }
        if let Some(p) = progressed {
            out = p;
            attempts = 0;
            wait = timing.first_wait;
            continue;
        }
        attempts += 1;
        if attempts > timing.retries || Instant::now() >= w.deadline {
            return Err(IpmiError::Unreachable {
                addr,
                after: w.started.elapsed(),
            });
        }
        wait = std::cmp::min(wait * 2, std::cmp::max(MAX_ATTEMPT_WAIT, timing.first_wait));
        tracing::debug!(target: LOG, %addr, attempt = attempts, "no answer, retransmitting");
        out = ex.on_timeout()?;
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
    )
}

/// One open RMCP+ session over a connected UDP socket.
pub struct IpmiClient {
    sock: UdpSocket,
    addr: SocketAddr,
    session: Session,
    timing: Timing,
    deadline: Duration,
    privilege: Privilege,
    open: bool,
}

impl fmt::Debug for IpmiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpmiClient")
            .field("addr", &self.addr)
            .field("suite", &self.session.suite().id)
            .field("privilege", &self.privilege)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl IpmiClient {
    /// Open a session: Open Session + RAKP 1-4 with the first cipher suite
    /// the BMC accepts, then raise the session privilege to ADMINISTRATOR
    /// (OPERATOR if the user may not be administrator).
    pub async fn connect(t: &IpmiTarget) -> Result<IpmiClient, IpmiError> {
        let window = Window::from_now(t.deadline);
        let bind: SocketAddr = if t.addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(t.addr).await?;
        let timing = Timing {
            first_wait: t.timeout.max(Duration::from_millis(1)),
            retries: t.retries,
        };
        if t.cipher_suites.is_empty() {
            return Err(IpmiError::Unsupported("no cipher suites configured".into()));
        }
        let mut refused: Vec<String> = Vec::new();
        let mut established = None;
        let n_suites = t.cipher_suites.len();
        'suites: for (i, &id) in t.cipher_suites.iter().enumerate() {
            // A BMC may drop an Open Session for a suite it does not know
            // instead of answering with an error: give every suite but the
            // last at most half of the remaining budget.
            let suite_window = if i + 1 < n_suites {
                let now = Instant::now();
                let half = window.deadline.saturating_duration_since(now) / 2;
                Window {
                    started: window.started,
                    deadline: now + half,
                }
            } else {
                window
            };
            let Some(suite) = CipherSuite::from_id(id) else {
                refused.push(format!("suite {id}: not implemented by this client"));
                continue;
            };
            for privilege in [Privilege::Administrator, Privilege::Operator] {
                let mut restarts = 0;
                loop {
                    let cfg = HandshakeConfig {
                        username: t.username.as_bytes().to_vec(),
                        password: t.password.expose().as_bytes().to_vec(),
                        kg: None,
                        suite,
                        privilege,
                    };
                    let mut hs = Handshake::new(cfg, rand::random())?;
                    let first = hs.start();
                    tracing::debug!(target: LOG, addr = %t.addr, suite = id, ?privilege, "opening session");
                    let mut ex = HsExchange {
                        hs: &mut hs,
                        failure: None,
                    };
                    let r = drive(&sock, t.addr, suite_window, timing, first, &mut ex).await;
                    match (r, ex.failure.take()) {
                        (Ok(s), _) => {
                            established = Some((s, privilege));
                            break 'suites;
                        }
                        (
                            Err(_),
                            Some(SessionError::SuiteRejected {
                                status, meaning, ..
                            }),
                        ) => {
                            tracing::info!(target: LOG, addr = %t.addr, suite = id, status, meaning, "cipher suite rejected");
                            refused.push(format!("suite {id}: status {status:#04x} ({meaning})"));
                            continue 'suites;
                        }
                        (Err(_), Some(SessionError::RoleRefused(_)))
                            if privilege == Privilege::Administrator =>
                        {
                            // The user may not be an administrator: ask for less.
                            tracing::debug!(target: LOG, addr = %t.addr, suite = id, "administrator role refused, trying operator");
                            break;
                        }
                        (Err(IpmiError::Unreachable { .. }), None) if i + 1 < n_suites => {
                            tracing::info!(target: LOG, addr = %t.addr, suite = id, "no answer with this cipher suite, trying the next");
                            refused.push(format!("suite {id}: no answer"));
                            continue 'suites;
                        }
                        (Err(_), Some(SessionError::Protocol(m)))
                            if restarts < HANDSHAKE_RESTARTS =>
                        {
                            restarts += 1;
                            tracing::debug!(target: LOG, addr = %t.addr, suite = id, error = %m, "handshake failed, restarting");
                        }
                        (Err(e), _) => return Err(e),
                    }
                }
            }
        }
        let Some((session, max_priv)) = established else {
            return Err(IpmiError::Unsupported(format!(
                "BMC {} accepted none of the cipher suites {:?}: {}",
                t.addr,
                t.cipher_suites,
                refused.join("; ")
            )));
        };
        let suite = session.suite().id;
        let mut client = IpmiClient {
            sock,
            addr: t.addr,
            session,
            timing,
            deadline: t.deadline,
            privilege: max_priv,
            open: true,
        };
        // Sessions start at USER level; raise it (13.14 / 22.18).
        let mut level = max_priv;
        loop {
            let r = client
                .transact_at(0x06, 0x3b, &[level.as_u8()], Duration::ZERO, window)
                .await?;
            match r.completion_code {
                0 => break,
                0x80 | 0x81 if level == Privilege::Administrator => level = Privilege::Operator,
                cc => {
                    return Err(IpmiError::Rejected {
                        command: "Set Session Privilege Level",
                        completion_code: cc,
                        meaning: completion_code_meaning(0x06, 0x3b, cc),
                    })
                }
            }
        }
        client.privilege = level;
        tracing::info!(target: LOG, addr = %t.addr, suite, privilege = ?level, elapsed_ms = window.started.elapsed().as_millis() as u64, "IPMI session open");
        Ok(client)
    }

    /// The cipher suite this session negotiated.
    pub fn cipher_suite(&self) -> u8 {
        self.session.suite().id
    }

    /// The session privilege level in effect.
    pub fn privilege(&self) -> Privilege {
        self.privilege
    }

    async fn transact_at(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        min_interval: Duration,
        w: Window,
    ) -> Result<Response, IpmiError> {
        let first = self.session.request(netfn, cmd, data)?;
        let timing = Timing {
            first_wait: self.timing.first_wait.max(min_interval),
            retries: self.timing.retries,
        };
        let r = drive(
            &self.sock,
            self.addr,
            w,
            timing,
            first,
            &mut ReqExchange(&mut self.session),
        )
        .await;
        if r.is_err() {
            self.session.abandon();
        }
        r
    }

    /// Send a request and require completion code 0; returns the data.
    async fn command(
        &mut self,
        name: &'static str,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        min_interval: Duration,
        w: Window,
    ) -> Result<Vec<u8>, IpmiError> {
        let r = self.transact_at(netfn, cmd, data, min_interval, w).await?;
        tracing::debug!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), command = name, cc = r.completion_code, "response");
        if r.completion_code != 0 {
            return Err(IpmiError::Rejected {
                command: name,
                completion_code: r.completion_code,
                meaning: completion_code_meaning(netfn, cmd, r.completion_code),
            });
        }
        Ok(r.data)
    }

    fn window(&self) -> Window {
        Window::from_now(self.deadline)
    }

    /// Get Chassis Status (netFn 0x00, cmd 0x01).
    pub async fn chassis_status(&mut self) -> Result<ChassisStatus, IpmiError> {
        let w = self.window();
        let data = self
            .command("Get Chassis Status", 0x00, 0x01, &[], Duration::ZERO, w)
            .await?;
        ChassisStatus::parse(&data)
    }

    /// Chassis Control (netFn 0x00, cmd 0x02).  Retransmits no faster than
    /// [`MIN_ACTION_RETRANSMIT`]; a retransmission may still repeat the action
    /// if the BMC's reply was lost (power on/off are idempotent, cycle/reset not).
    pub async fn chassis_control(&mut self, c: ChassisControl) -> Result<(), IpmiError> {
        let w = self.window();
        tracing::info!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), action = ?c, "chassis control");
        self.command(
            "Chassis Control",
            0x00,
            0x02,
            &[c as u8],
            MIN_ACTION_RETRANSMIT,
            w,
        )
        .await?;
        Ok(())
    }

    /// Set System Boot Options parameter 5 (boot flags, valid bit set), then
    /// read it back.  `NotApplied` when the BMC reports another device, or
    /// reports boot flags (valid bit set) with other persistent/EFI bits.
    /// A BMC that does not report the flags byte at all (reads back 0, as
    /// OpenIPMI's ipmi_sim does) only gets a warning for the flags.
    pub async fn set_boot_device(&mut self, dev: BootDevice) -> Result<(), IpmiError> {
        if let BootTarget::Other(x) = dev.target {
            if x > 0x0f {
                return Err(IpmiError::Unsupported(format!(
                    "boot device selector {x} does not fit in 4 bits"
                )));
            }
        }
        let w = self.window();
        let p = dev.to_param5();
        let req = [0x05, p[0], p[1], p[2], p[3], p[4]];
        tracing::info!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), ?dev, "set boot device");
        self.command(
            "Set System Boot Options",
            0x00,
            0x08,
            &req,
            MIN_ACTION_RETRANSMIT,
            w,
        )
        .await?;
        let data = self
            .command(
                "Get System Boot Options",
                0x00,
                0x09,
                &[0x05, 0, 0],
                Duration::ZERO,
                w,
            )
            .await?;
        let (got, valid) = BootDevice::parse_param5(&data)?;
        if got.target != dev.target {
            return Err(IpmiError::NotApplied(format!(
                "asked for boot device {:?}, BMC reports {:?}",
                dev.target, got.target
            )));
        }
        if (got.persistent, got.efi) != (dev.persistent, dev.efi) {
            let flags_byte = data.get(2).copied().unwrap_or(0);
            if valid || flags_byte != 0 {
                return Err(IpmiError::NotApplied(format!(
                    "asked for persistent={} efi={}, BMC reports persistent={} efi={}",
                    dev.persistent, dev.efi, got.persistent, got.efi
                )));
            }
            tracing::warn!(target: LOG, addr = %self.addr, suite = self.cipher_suite(),
                "BMC kept the boot device but does not report boot flags (persistent/EFI unverifiable)");
        }
        Ok(())
    }

    /// Get System Boot Options parameter 5.
    pub async fn get_boot_device(&mut self) -> Result<BootDevice, IpmiError> {
        let w = self.window();
        let data = self
            .command(
                "Get System Boot Options",
                0x00,
                0x09,
                &[0x05, 0, 0],
                Duration::ZERO,
                w,
            )
            .await?;
        let (dev, valid) = BootDevice::parse_param5(&data)?;
        tracing::debug!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), ?dev, valid, "boot device");
        Ok(dev)
    }

    /// Any request; completion code 0 required, returns the response data.
    /// Retransmits no faster than [`MIN_ACTION_RETRANSMIT`] (the command may
    /// have side effects).
    pub async fn raw(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        if netfn > 0x3f {
            return Err(IpmiError::Unsupported(format!(
                "netFn {netfn:#04x} does not fit in 6 bits"
            )));
        }
        let w = self.window();
        self.command("raw command", netfn, cmd, data, MIN_ACTION_RETRANSMIT, w)
            .await
    }

    /// Close Session (0x06/0x3C).  If no reply arrives within a few seconds
    /// the BMC may already have closed it (a lost reply makes the
    /// retransmission unanswerable): that counts as closed.
    pub async fn close(mut self) -> Result<(), IpmiError> {
        let w = Window::from_now(std::cmp::min(self.deadline, CLOSE_BUDGET));
        let first = self.session.close_request()?;
        let r = drive(
            &self.sock,
            self.addr,
            w,
            self.timing,
            first,
            &mut ReqExchange(&mut self.session),
        )
        .await;
        self.open = false;
        match r {
            Ok(r) if r.completion_code == 0 => {
                tracing::debug!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), "session closed");
                Ok(())
            }
            Ok(r) => Err(IpmiError::Rejected {
                command: "Close Session",
                completion_code: r.completion_code,
                meaning: completion_code_meaning(0x06, 0x3c, r.completion_code),
            }),
            Err(IpmiError::Unreachable { .. }) => {
                tracing::debug!(target: LOG, addr = %self.addr, suite = self.cipher_suite(), "no reply to Close Session");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for IpmiClient {
    fn drop(&mut self) {
        if self.open {
            // Best effort, non-blocking: do not leave the session to time out.
            if let Ok(p) = self.session.close_request() {
                let _ = self.sock.try_send(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secret_is_never_printed() {
        let t = IpmiTarget::new("127.0.0.1:623".parse().expect("addr"), "admin", "hunter2");
        let dbg = format!("{t:?} {} {:?}", t.password, t.password);
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
        assert_eq!(t.cipher_suites, vec![17, 3]);
    }

    #[test]
    fn chassis_status_bits() {
        let s = ChassisStatus::parse(&[0x41, 0x10, 0x0d, 0x00]).expect("parse");
        assert!(s.power_on && !s.power_fault && s.intrusion && s.drive_fault && s.cooling_fault);
        assert_eq!(s.restore_policy, 2);
        assert!(s.any_fault());
        assert!(ChassisStatus::parse(&[0x01, 0]).is_err());
    }

    #[test]
    fn boot_param5_encoding() {
        let d = BootDevice {
            target: BootTarget::Pxe,
            persistent: true,
            efi: true,
        };
        assert_eq!(d.to_param5(), [0xe0, 0x04, 0, 0, 0]);
        let d = BootDevice {
            target: BootTarget::Disk,
            persistent: false,
            efi: false,
        };
        assert_eq!(d.to_param5(), [0x80, 0x08, 0, 0, 0]);
        // ipmi_sim read-back of "pxe": version 1, param 5, flags 0, device 0x04.
        let (got, valid) =
            BootDevice::parse_param5(&[0x01, 0x05, 0x00, 0x04, 0, 0, 0]).expect("parse");
        assert_eq!(
            got,
            BootDevice {
                target: BootTarget::Pxe,
                persistent: false,
                efi: false
            }
        );
        assert!(!valid);
        let (got, valid) =
            BootDevice::parse_param5(&[0x01, 0x05, 0xe0, 0x14, 0, 0, 0]).expect("parse");
        assert_eq!(
            got,
            BootDevice {
                target: BootTarget::Other(5),
                persistent: true,
                efi: true
            }
        );
        assert!(valid);
        assert!(BootDevice::parse_param5(&[0x01, 0x04, 0, 0]).is_err());
    }

    #[test]
    fn errors_do_not_leak() {
        let e = IpmiError::Rejected {
            command: "Chassis Control",
            completion_code: 0xd4,
            meaning: completion_code_meaning(0, 2, 0xd4),
        };
        assert_eq!(e.to_string(), "Chassis Control rejected by the BMC: completion code 0xd4 (insufficient privilege level)");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]
        #[test]
        fn command_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = ChassisStatus::parse(&bytes);
            let _ = BootDevice::parse_param5(&bytes);
        }
    }
}
