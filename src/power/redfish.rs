//! `PowerDriver` over Redfish (DMTF DSP0266): the `ComputerSystem` resource
//! for `PowerState` and `Boot`, the `#ComputerSystem.Reset` action for power.
//!
//! HTTP client: `ureq` 3 (blocking, rustls with the `ring` provider,
//! `default-features = false, features = ["rustls"]`), each request run in
//! `spawn_blocking` with a per-request timeout cut to what is left of the
//! per-call deadline. Chosen over `reqwest` 0.13 because it is the leanest
//! client that does TLS with a per-client "accept invalid certificates"
//! switch (`TlsConfig::disable_verification`): we send a handful of small
//! JSON requests per call and need no async client, HTTP/2, proxies or
//! cookies. Measured on top of this crate's dependency graph (Cargo.lock
//! 262 packages, 208 built in the normal+build tree; its dependencies alone
//! take 246 s wall / 256 s user for a clean `cargo build -j 2`), on the
//! 2-core Debian 12 host while QEMU VMs ran, as the extra time of
//! `cargo build -j 2` over that built tree:
//! - ureq 3.5.2 (rustls, ring): +23 lock entries, +13 built crates (ring,
//!   rustls, rustls-webpki, webpki-roots, ureq, ureq-proto, ...):
//!   +58 s wall, +31 s CPU.
//! - reqwest 0.13.5 in its leanest rustls form (`rustls-no-provider` plus
//!   rustls with ring; its default `rustls` feature pulls aws-lc-rs, a
//!   C/cmake build): +44 lock entries, +18 built crates (the above plus
//!   hyper-rustls, tokio-rustls, rustls-platform-verifier,
//!   rustls-native-certs, a second tower-http 0.6, want, ...) and more
//!   hyper/hyper-util features rebuilt: +138 s wall, +67 s CPU.
//!
//! The blocking calls cost a blocking-pool thread per in-flight request,
//! which `Power`'s global semaphore bounds.
//!
//! Semantics: the system is discovered from `/redfish/v1/Systems` on every
//! call (`bmc.system_id` picks one member by path segment or `Id`; several
//! members without it is `Unsupported`). Power changes are `Reset` actions
//! followed by polling `PowerState` until it reaches the expected state
//! within the call deadline (BMCs, and sushy-tools' fake driver, apply them
//! seconds after the 204). `PowerCycle` is emulated (ForceOff, wait Off, On,
//! wait On) when the BMC does not offer it. `set_boot` PATCHes
//! `Boot.BootSourceOverride{Target,Enabled,Mode}` and reads it back; a BMC
//! that reports `Continuous` after a `Once` request is accepted with a
//! warning (the next boot is the one asked for; sushy-tools always reports
//! `Continuous`), anything else that differs is `NotApplied`.
//!
//! Basic authentication only (no session service). The password is read
//! from its file or variable at each call, lives only in the request's
//! `Authorization` header, and is scrubbed from any error text.

use super::{BootDev, BootSpec, BoxFut, PowerDriver, PowerError, PowerOp, PowerState};
use crate::inventory::Bmc;
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Timeouts and pacing.
#[derive(Debug, Clone)]
pub struct RedfishConfig {
    /// One HTTP request (connect, send, answer), cut to the time left.
    pub request_timeout: Duration,
    /// TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// A whole driver call, including waiting for a power change to show.
    pub deadline: Duration,
    /// Between two `PowerState` reads while waiting for a change.
    pub poll_interval: Duration,
    /// Read-backs of a boot override before it is `NotApplied`.
    pub boot_readbacks: u32,
}

impl Default for RedfishConfig {
    fn default() -> Self {
        RedfishConfig {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            boot_readbacks: 3,
        }
    }
}

/// The Redfish driver: two HTTP agents (verifying and, for BMCs with
/// `insecure_tls = true`, not verifying certificates), each with its own
/// connection pool keyed by scheme, host and port.
pub struct RedfishDriver {
    pub cfg: RedfishConfig,
    strict: ureq::Agent,
    insecure: ureq::Agent,
}

impl Default for RedfishDriver {
    fn default() -> Self {
        RedfishDriver::new(RedfishConfig::default())
    }
}

fn agent(insecure: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(insecure)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(concat!("rackboot/", env!("CARGO_PKG_VERSION")))
        .accept("application/json")
        // Redfish services may redirect within themselves (e.g. a system's
        // name to its id); credentials follow only to the same host.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .max_redirects(3)
        .max_idle_connections_per_host(2)
        .build()
        .into()
}

impl RedfishDriver {
    pub fn new(cfg: RedfishConfig) -> RedfishDriver {
        RedfishDriver {
            cfg,
            strict: agent(false),
            insecure: agent(true),
        }
    }

    fn ctx<'a>(&'a self, bmc: &'a Bmc) -> Result<Ctx<'a>, PowerError> {
        let started = Instant::now();
        let base = base_url(&bmc.address)?;
        let password = bmc.password.read().map_err(PowerError::Secret)?;
        let auth = format!(
            "Basic {}",
            base64(format!("{}:{password}", bmc.username).as_bytes())
        );
        Ok(Ctx {
            agent: if bmc.insecure_tls {
                self.insecure.clone()
            } else {
                self.strict.clone()
            },
            base,
            auth,
            password,
            bmc,
            cfg: &self.cfg,
            started,
            deadline: started + self.cfg.deadline,
        })
    }
}

/// `https://host[:port]`, `http://host[:port]` or a bare `host[:port]`
/// (https) → `scheme://host[:port]`. A trailing `/redfish/v1` is allowed.
pub fn base_url(address: &str) -> Result<String, PowerError> {
    let a = address.trim().trim_end_matches('/');
    let a = a.strip_suffix("/redfish/v1").unwrap_or(a);
    let (scheme, rest) = if let Some(r) = a.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = a.strip_prefix("http://") {
        ("http", r)
    } else if a.contains("://") {
        return Err(PowerError::Unsupported(format!(
            "Redfish address {address:?}: the scheme must be http or https"
        )));
    } else {
        ("https", a)
    };
    if rest.contains('@') {
        return Err(PowerError::Unsupported(
            "Redfish address: credentials in the address are not accepted (use username and password_file)".into(),
        ));
    }
    if rest.is_empty() || rest.contains('/') {
        return Err(PowerError::Unsupported(format!(
            "Redfish address {address:?}: expected https://host[:port], http://host[:port] or host"
        )));
    }
    let host = if rest.parse::<Ipv6Addr>().is_ok() {
        format!("[{rest}]")
    } else {
        rest.to_string()
    };
    Ok(format!("{scheme}://{host}"))
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// One driver call: where, who, and until when. Holds the credentials, so
/// it is deliberately not `Debug`.
struct Ctx<'a> {
    agent: ureq::Agent,
    base: String,
    auth: String,
    password: String,
    bmc: &'a Bmc,
    cfg: &'a RedfishConfig,
    started: Instant,
    deadline: Instant,
}

/// The text of a Redfish error body: `error.message` and the messages of
/// `@Message.ExtendedInfo`; a non-JSON body is cut to one short line.
fn redfish_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        let line: String = body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        return line;
    };
    let e = if v.get("error").is_some() {
        &v["error"]
    } else {
        &v
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = e["message"].as_str() {
        parts.push(m.to_string());
    }
    for info in [&e["@Message.ExtendedInfo"], &v["@Message.ExtendedInfo"]] {
        for i in info.as_array().into_iter().flatten() {
            let m = i["Message"]
                .as_str()
                .or_else(|| i["MessageId"].as_str())
                .unwrap_or_default();
            if !m.is_empty() && !parts.iter().any(|p| p == m) {
                parts.push(m.to_string());
            }
        }
    }
    if parts.is_empty() {
        body.chars().take(200).collect()
    } else {
        parts.join("; ")
    }
}

fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => true,
        ureq::Error::Io(io) => {
            // rustls errors surface as io::Error wrapping a rustls::Error.
            let s = io.to_string();
            io.kind() == std::io::ErrorKind::InvalidData
                && (s.contains("certificate") || s.contains("TLS") || s.contains("tls"))
        }
        _ => false,
    }
}

impl Ctx<'_> {
    fn scrub(&self, s: String) -> String {
        if self.password.len() >= 3 && s.contains(&self.password) {
            s.replace(&self.password, "***")
        } else {
            s
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn map_err(&self, m: Method, path: &str, t: Duration, e: ureq::Error) -> PowerError {
        let what = format!("{} {}{path}", m.as_str(), self.base);
        let err = if is_tls(&e) {
            let hint = if self.bmc.insecure_tls {
                ""
            } else {
                " (for a BMC with a self-signed certificate set insecure_tls = true)"
            };
            let e = match e {
                ureq::Error::Io(io) => io.to_string(),
                e => e.to_string(),
            };
            PowerError::Other(format!("TLS with {} failed: {e}{hint}", self.base))
        } else {
            match e {
                ureq::Error::Timeout(which) => PowerError::Unreachable(format!(
                    "{what}: no answer within {:.1} s ({which} timeout; call deadline {:?})",
                    t.as_secs_f64(),
                    self.cfg.deadline
                )),
                ureq::Error::HostNotFound => {
                    PowerError::Unreachable(format!("{what}: cannot resolve the host"))
                }
                ureq::Error::Io(io) => PowerError::Unreachable(format!("{what}: {io}")),
                ureq::Error::ConnectionFailed => {
                    PowerError::Unreachable(format!("{what}: connection failed"))
                }
                ureq::Error::BadUri(u) => PowerError::Unsupported(format!("bad Redfish URL {u:?}")),
                ureq::Error::Protocol(p) => {
                    PowerError::Other(format!("{what}: HTTP protocol error: {p}"))
                }
                other => PowerError::Other(format!("{what}: {other}")),
            }
        };
        scrub_err(err, |s| self.scrub(s))
    }

    /// One request; a 2xx answer's status and body, every other outcome typed.
    async fn request(
        &self,
        m: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), PowerError> {
        if !path.starts_with('/') {
            return Err(PowerError::Other(format!(
                "unexpected Redfish link {path:?} (expected a path on {})",
                self.base
            )));
        }
        let left = self.remaining();
        if left.is_zero() {
            return Err(PowerError::Unreachable(format!(
                "{} {}{path}: call deadline of {:?} exceeded",
                m.as_str(),
                self.base,
                self.cfg.deadline
            )));
        }
        let t = left.min(self.cfg.request_timeout);
        let ct = Some(t.min(self.cfg.connect_timeout));
        let url = format!("{}{path}", self.base);
        let agent = self.agent.clone();
        let auth = self.auth.clone();
        let body = body.map(Value::to_string).unwrap_or_default();
        let task = tokio::task::spawn_blocking(move || -> Result<(u16, String), ureq::Error> {
            let mut resp = match m {
                Method::Get => agent
                    .get(&url)
                    .header("Authorization", &auth)
                    .config()
                    .timeout_global(Some(t))
                    .timeout_connect(ct)
                    .build()
                    .call()?,
                Method::Post | Method::Patch => {
                    let rb = if matches!(m, Method::Post) {
                        agent.post(&url)
                    } else {
                        agent.patch(&url)
                    };
                    rb.header("Authorization", &auth)
                        .config()
                        .timeout_global(Some(t))
                        .timeout_connect(ct)
                        .build()
                        .content_type("application/json")
                        .send(body)?
                }
            };
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(4 << 20)
                .lossy_utf8(true)
                .read_to_string()?;
            Ok((status, text))
        });
        // ureq enforces `t`; this only guards against a stuck blocking thread.
        let r = match tokio::time::timeout(t + Duration::from_secs(1), task).await {
            Err(_) => {
                return Err(PowerError::Unreachable(format!(
                    "{} {}{path}: no answer within {:.1} s",
                    m.as_str(),
                    self.base,
                    t.as_secs_f64()
                )))
            }
            Ok(Err(join)) => {
                return Err(PowerError::Other(format!("Redfish request task: {join}")))
            }
            Ok(Ok(r)) => r,
        };
        let (status, text) = r.map_err(|e| self.map_err(m, path, t, e))?;
        tracing::debug!(bmc = %self.base, method = m.as_str(), path, status, "redfish");
        match status {
            200..=299 => Ok((status, text)),
            401 | 403 => Err(PowerError::Auth(self.scrub(format!(
                "{} {}{path}: HTTP {status} for user {:?}: {}",
                m.as_str(),
                self.base,
                self.bmc.username,
                redfish_message(&text)
            )))),
            _ => Err(PowerError::Rejected(self.scrub(format!(
                "{} {}{path}: HTTP {status}: {}",
                m.as_str(),
                self.base,
                redfish_message(&text)
            )))),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, PowerError> {
        let (status, text) = self.request(Method::Get, path, None).await?;
        serde_json::from_str::<Value>(&text).map_err(|e| {
            PowerError::Other(self.scrub(format!(
                "malformed JSON from BMC: {e} (GET {}{path}, HTTP {status}, {} bytes)",
                self.base,
                text.len()
            )))
        })
    }

    /// The `ComputerSystem` to drive: its path and its resource.
    async fn system(&self) -> Result<(String, Value), PowerError> {
        const COLLECTION: &str = "/redfish/v1/Systems";
        let coll = self.get(COLLECTION).await?;
        let members = members(&coll);
        let listed = || {
            members
                .iter()
                .filter_map(|p| segment(p))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if members.is_empty() {
            return Err(PowerError::Unsupported(format!(
                "{}{COLLECTION} lists no systems",
                self.base
            )));
        }
        match &self.bmc.system_id {
            None if members.len() == 1 => {
                let v = self.get(&members[0]).await?;
                Ok((members[0].clone(), v))
            }
            None => Err(PowerError::Unsupported(format!(
                "{} manages {} systems ({}): set system_id in the bmc entry to choose one",
                self.base,
                members.len(),
                listed()
            ))),
            Some(id) => {
                if let Some(p) = members.iter().find(|p| segment(p).as_deref() == Some(id)) {
                    let v = self.get(p).await?;
                    return Ok((p.clone(), v));
                }
                // Bounded: a BMC lists a handful of systems.
                for p in members.iter().take(64) {
                    let v = self.get(p).await?;
                    if v["Id"].as_str() == Some(id.as_str()) {
                        return Ok((p.clone(), v));
                    }
                }
                Err(PowerError::Unsupported(format!(
                    "{} has no system {id:?} (members: {})",
                    self.base,
                    listed()
                )))
            }
        }
    }

    fn power_state<'v>(&self, sys: &'v Value) -> Result<&'v str, PowerError> {
        sys["PowerState"].as_str().ok_or_else(|| {
            PowerError::Other(format!(
                "{}: the system resource has no PowerState",
                self.base
            ))
        })
    }

    /// POST a reset type to the action target.
    async fn reset(&self, target: &str, reset_type: &str) -> Result<(), PowerError> {
        tracing::info!(bmc = %self.base, reset_type, "redfish reset");
        self.request(
            Method::Post,
            target,
            Some(&json!({ "ResetType": reset_type })),
        )
        .await
        .map(|_| ())
    }

    /// Poll `PowerState` until it is `want` ("On" / "Off") or the deadline.
    async fn wait_state(&self, path: &str, want: &str, after: &str) -> Result<(), PowerError> {
        let mut last: String;
        loop {
            match self.get(path).await {
                Ok(v) => {
                    let st = self.power_state(&v)?;
                    if st == want {
                        return Ok(());
                    }
                    last = st.to_string();
                }
                // A BMC may drop a connection while it resets a host: keep polling.
                Err(PowerError::Unreachable(e)) if self.remaining() > self.cfg.poll_interval => {
                    last = format!("unreadable ({e})");
                }
                Err(e) => return Err(e),
            }
            if self.remaining() <= self.cfg.poll_interval {
                return Err(PowerError::NotApplied(format!(
                    "{}: PowerState is {last} {:.1} s after {after}; expected {want} within the call deadline of {:?}",
                    self.base,
                    self.started.elapsed().as_secs_f64(),
                    self.cfg.deadline
                )));
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }
}

fn scrub_err(e: PowerError, f: impl Fn(String) -> String) -> PowerError {
    use PowerError as E;
    match e {
        E::Unreachable(s) => E::Unreachable(f(s)),
        E::Auth(s) => E::Auth(f(s)),
        E::Rejected(s) => E::Rejected(f(s)),
        E::NotApplied(s) => E::NotApplied(f(s)),
        E::Unsupported(s) => E::Unsupported(f(s)),
        E::NoBmc(s) => E::NoBmc(f(s)),
        E::Secret(s) => E::Secret(f(s)),
        E::CircuitOpen(s) => E::CircuitOpen(f(s)),
        E::Other(s) => E::Other(f(s)),
    }
}

fn boot_target(dev: BootDev) -> &'static str {
    match dev {
        BootDev::Pxe => "Pxe",
        BootDev::Disk => "Hdd",
    }
}

/// Whether a read-back `Boot` object matches what was asked; the reason if not.
fn check_boot(boot: &Value, want: BootSpec) -> Result<(), String> {
    let target = boot["BootSourceOverrideTarget"]
        .as_str()
        .unwrap_or("absent");
    if target != boot_target(want.dev) {
        return Err(format!(
            "BootSourceOverrideTarget is {target}, asked {}",
            boot_target(want.dev)
        ));
    }
    let want_mode = if want.efi { "UEFI" } else { "Legacy" };
    match boot["BootSourceOverrideMode"].as_str() {
        Some(m) if m != want_mode => {
            return Err(format!("BootSourceOverrideMode is {m}, asked {want_mode}"))
        }
        // A BMC without the property has one boot mode; nothing to check.
        _ => {}
    }
    let enabled = boot["BootSourceOverrideEnabled"]
        .as_str()
        .unwrap_or("absent");
    match (enabled, want.persistent) {
        ("Continuous", true) | ("Once", false) => Ok(()),
        ("Continuous", false) => {
            tracing::warn!(
                "BMC reports BootSourceOverrideEnabled=Continuous after a Once request; accepted"
            );
            Ok(())
        }
        (e, p) => Err(format!(
            "BootSourceOverrideEnabled is {e}, asked {}",
            if p { "Continuous" } else { "Once" }
        )),
    }
}

impl PowerDriver for RedfishDriver {
    fn name(&self) -> &'static str {
        "redfish"
    }

    fn status<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            let c = self.ctx(bmc)?;
            let (_, sys) = c.system().await?;
            let st = c.power_state(&sys)?;
            power_state_of(st)
                .ok_or_else(|| PowerError::Other(format!("{}: unknown PowerState {st:?}", c.base)))
        })
    }

    fn power<'a>(&'a self, bmc: &'a Bmc, op: PowerOp) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let c = self.ctx(bmc)?;
            let (path, sys) = c.system().await?;
            let current = c.power_state(&sys)?.to_string();
            let Some((target, allowed)) = reset_action(&sys) else {
                return Err(PowerError::Unsupported(format!(
                    "{}{path} has no #ComputerSystem.Reset action",
                    c.base
                )));
            };
            let offers = |t: &str| allowed.as_ref().is_none_or(|a| a.contains(&t));
            let pick = |types: &[&'static str]| -> Result<&'static str, PowerError> {
                types.iter().copied().find(|t| offers(t)).ok_or_else(|| {
                    PowerError::Unsupported(format!(
                        "{} offers none of the ResetTypes {types:?} (offers {:?})",
                        c.base,
                        allowed.clone().unwrap_or_default()
                    ))
                })
            };
            match op {
                PowerOp::On | PowerOp::Off | PowerOp::Soft
                    if current == if op == PowerOp::On { "On" } else { "Off" } =>
                {
                    tracing::debug!(bmc = %c.base, op = op.as_str(), "already in that state");
                    Ok(())
                }
                PowerOp::On => {
                    let t = pick(&["On", "ForceOn"])?;
                    c.reset(target, t).await?;
                    c.wait_state(&path, "On", t).await
                }
                PowerOp::Off => {
                    c.reset(target, pick(&["ForceOff"])?).await?;
                    c.wait_state(&path, "Off", "ForceOff").await
                }
                PowerOp::Soft => {
                    c.reset(target, pick(&["GracefulShutdown"])?).await?;
                    c.wait_state(&path, "Off", "GracefulShutdown").await
                }
                PowerOp::Reset => {
                    c.reset(target, pick(&["ForceRestart"])?).await?;
                    c.wait_state(&path, "On", "ForceRestart").await
                }
                PowerOp::Cycle if offers("PowerCycle") => {
                    c.reset(target, "PowerCycle").await?;
                    c.wait_state(&path, "On", "PowerCycle").await
                }
                PowerOp::Cycle => {
                    // Emulated: off (unless already), wait for it, then on.
                    let on = pick(&["On", "ForceOn"])?;
                    if current != "Off" {
                        c.reset(target, pick(&["ForceOff"])?).await?;
                        c.wait_state(&path, "Off", "ForceOff (emulated PowerCycle)")
                            .await?;
                    }
                    c.reset(target, on).await?;
                    c.wait_state(&path, "On", "On (emulated PowerCycle)").await
                }
            }
        })
    }

    fn set_boot<'a>(&'a self, bmc: &'a Bmc, b: BootSpec) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let c = self.ctx(bmc)?;
            let (path, _) = c.system().await?;
            let body = json!({"Boot": {
                "BootSourceOverrideTarget": boot_target(b.dev),
                "BootSourceOverrideEnabled": if b.persistent { "Continuous" } else { "Once" },
                "BootSourceOverrideMode": if b.efi { "UEFI" } else { "Legacy" },
            }});
            c.request(Method::Patch, &path, Some(&body)).await?;
            // Read back; some BMCs apply a PATCH a moment after answering it.
            let tries = c.cfg.boot_readbacks.max(1);
            for i in 1..=tries {
                let v = c.get(&path).await?;
                match check_boot(&v["Boot"], b) {
                    Ok(()) => return Ok(()),
                    Err(why) if i == tries || c.remaining() <= c.cfg.poll_interval => {
                        return Err(PowerError::NotApplied(format!(
                            "{}{path}: {why} (after {i} read-backs)",
                            c.base
                        )))
                    }
                    Err(_) => tokio::time::sleep(c.cfg.poll_interval).await,
                }
            }
            unreachable!("the last read-back returns")
        })
    }

    fn get_boot<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<BootSpec, PowerError>> {
        Box::pin(async move {
            let c = self.ctx(bmc)?;
            let (_, sys) = c.system().await?;
            boot_spec(&sys["Boot"]).map_err(|(enabled, target)| {
                PowerError::Unsupported(format!(
                    "{}: boot override is {enabled} / {target}, neither PXE nor disk",
                    c.base
                ))
            })
        })
    }
}

/// The member paths of a collection (`Members[].@odata.id`).
fn members(coll: &Value) -> Vec<String> {
    coll["Members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["@odata.id"].as_str().map(str::to_string))
        .collect()
}

/// The last path segment of a member link (its ID by convention).
fn segment(p: &str) -> Option<String> {
    p.trim_end_matches('/')
        .rsplit('/')
        .next()
        .map(str::to_string)
}

/// The `#ComputerSystem.Reset` target of a system and the reset types it
/// allows (`None`: not listed, so any).
fn reset_action(sys: &Value) -> Option<(&str, Option<Vec<&str>>)> {
    let action = &sys["Actions"]["#ComputerSystem.Reset"];
    let target = action["target"].as_str()?;
    let allowed = action["ResetType@Redfish.AllowableValues"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    Some((target, allowed))
}

fn power_state_of(s: &str) -> Option<PowerState> {
    match s {
        "On" | "PoweringOn" | "Paused" => Some(PowerState::On),
        "Off" | "PoweringOff" => Some(PowerState::Off),
        _ => None,
    }
}

/// The boot override of a `Boot` object; (enabled, target) as read if it is
/// neither PXE nor disk.
fn boot_spec(boot: &Value) -> Result<BootSpec, (&str, &str)> {
    let enabled = boot["BootSourceOverrideEnabled"]
        .as_str()
        .unwrap_or("absent");
    let target = boot["BootSourceOverrideTarget"]
        .as_str()
        .unwrap_or("absent");
    let dev = match (enabled, target) {
        ("Once" | "Continuous", "Pxe") => BootDev::Pxe,
        ("Once" | "Continuous", "Hdd") => BootDev::Disk,
        _ => return Err((enabled, target)),
    };
    Ok(BootSpec {
        dev,
        persistent: enabled == "Continuous",
        efi: boot["BootSourceOverrideMode"].as_str() == Some("UEFI"),
    })
}

/// For the fuzz target `redfish` (fuzz/): every parse the driver applies to
/// a BMC's response body, on one body, without HTTP. Not API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parse `body` as each response the driver reads; never panics.
    pub fn response_body(body: &str) {
        let _ = redfish_message(body);
        let Ok(v) = serde_json::from_str::<Value>(body) else {
            return;
        };
        for m in members(&v) {
            let _ = segment(&m);
        }
        let _ = v["Id"].as_str();
        if let Some(st) = v["PowerState"].as_str() {
            let _ = power_state_of(st);
        }
        if let Some((target, allowed)) = reset_action(&v) {
            let _ = target.starts_with('/');
            let _ = allowed.is_none_or(|a| a.contains(&"PowerCycle"));
        }
        let _ = boot_spec(&v["Boot"]);
        for dev in [BootDev::Pxe, BootDev::Disk] {
            for (persistent, efi) in [(false, false), (false, true), (true, false), (true, true)] {
                let _ = check_boot(
                    &v["Boot"],
                    BootSpec {
                        dev,
                        persistent,
                        efi,
                    },
                );
            }
        }
        let _ = base_url(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_answers() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("admin:password", "YWRtaW46cGFzc3dvcmQ="),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(base_url("10.0.0.5").unwrap(), "https://10.0.0.5");
        assert_eq!(base_url("bmc1:8443").unwrap(), "https://bmc1:8443");
        assert_eq!(
            base_url("http://127.0.0.1:8000/").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(base_url("https://bmc/redfish/v1").unwrap(), "https://bmc");
        assert_eq!(base_url("fd00::5").unwrap(), "https://[fd00::5]");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("https://u:p@x").is_err());
        assert!(base_url("https://x/other").is_err());
        assert!(base_url("").is_err());
    }

    #[test]
    fn error_messages() {
        let body = r#"{"error":{"code":"Base.1.0.GeneralError","message":"Power state PowerCycle is not supported",
            "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.ActionNotSupported","Message":"The action is not supported."}]}}"#;
        assert_eq!(
            redfish_message(body),
            "Power state PowerCycle is not supported; The action is not supported."
        );
        assert_eq!(
            redfish_message("<html>\n oops\n</html>"),
            "<html> oops </html>"
        );
    }

    #[test]
    fn boot_check() {
        let want = BootSpec {
            dev: BootDev::Pxe,
            persistent: false,
            efi: true,
        };
        let b = json!({"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI"});
        assert!(check_boot(&b, want).is_ok());
        let b = json!({"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Continuous"});
        assert!(check_boot(&b, want).is_ok());
        let b = json!({"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Once"});
        assert!(check_boot(&b, want).unwrap_err().contains("Hdd"));
        let b = json!({"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Disabled"});
        assert!(check_boot(&b, want).unwrap_err().contains("Disabled"));
        let b = json!({"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"Legacy"});
        assert!(check_boot(&b, want).unwrap_err().contains("Legacy"));
        let persistent = BootSpec {
            persistent: true,
            ..want
        };
        let b = json!({"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"});
        assert!(check_boot(&b, persistent).is_err());
    }
}
