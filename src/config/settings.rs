//! `rackboot.toml`: the daemon's settings (restart-only), validated.

use super::*;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMode {
    Off,
    Reservations,
    Pool,
    Proxy,
}

impl DhcpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpMode::Off => "off",
            DhcpMode::Reservations => "reservations",
            DhcpMode::Pool => "pool",
            DhcpMode::Proxy => "proxy",
        }
    }
}

/// The `index`-th (1-based) of `count` contiguous, disjoint parts of the
/// pool `lo..=hi`, as equal as can be (the first parts one address larger
/// when it does not divide): what one of `count` daemons on a segment hands
/// out (`[dhcp] pool_slice = "I/N"`). None when `index` is not in 1..=count
/// or the pool has fewer addresses than parts.
pub fn pool_slice(
    lo: Ipv4Addr,
    hi: Ipv4Addr,
    index: u32,
    count: u32,
) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let (lo, hi) = (u64::from(u32::from(lo)), u64::from(u32::from(hi)));
    let (i, n) = (u64::from(index), u64::from(count));
    if hi < lo || n == 0 || i == 0 || i > n {
        return None;
    }
    let size = hi - lo + 1;
    if size < n {
        return None;
    }
    let (base, extra) = (size / n, size % n);
    let k = i - 1;
    let start = lo + k * base + k.min(extra);
    let len = base + u64::from(k < extra);
    let ip = |v: u64| Ipv4Addr::from(v as u32);
    Some((ip(start), ip(start + len - 1)))
}

/// Validated daemon settings. Changes take effect on restart only.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub interface: Option<String>,
    pub address: Ipv4Addr,
    pub http_port: u16,
    pub http_base_url: String,
    pub boot_dir: PathBuf,
    pub firmware_dir: PathBuf,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub templates_dir: PathBuf,
    pub profiles_dir: PathBuf,
    pub systems_file: PathBuf,
    pub dhcp: DhcpSettings,
    pub tftp: TftpSettings,
    pub dns: DnsSettings,
    pub api_listen: SocketAddr,
    pub api_tokens: TokenSource,
    /// TLS on the API/UI listener: (certificate chain, key) PEM files.
    pub api_tls: Option<TlsFiles>,
    /// Seconds between power-state polls for the web UI (0: off).
    pub power_poll_secs: u64,
    /// `/metrics` adds per-system series (small labs only: one per system).
    pub metrics_per_system: bool,
    pub max_parallel_runs: usize,
    pub max_parallel_bmc: usize,
    pub max_parallel_stages: usize,
    pub ssh_key: Option<PathBuf>,
    /// `[runs] console_max_bytes`: serial console kept per run (0: off).
    pub console_max_bytes: u64,
    pub webhooks: Vec<WebhookSettings>,
    pub mqtt: Option<MqttSettings>,
    /// `[server] node`: this daemon's name among the site's daemons.
    pub node: String,
    /// `[server] boot_domains`: the domains whose runs this daemon claims.
    pub boot_domains: Vec<String>,
    /// `[server] lease_ttl`: heartbeats missed this long get a daemon fenced.
    pub lease_ttl: std::time::Duration,
    /// `[server] max_stale`: a shared inventory older than this serves no installer.
    pub max_stale: std::time::Duration,
}

/// `[runs] console_max_bytes` when unset: 4 MiB of serial console per run.
pub const DEFAULT_CONSOLE_MAX_BYTES: u64 = 4 << 20;

/// `[api] tls_cert` and `tls_key`: PEM files, read at start and on SIGHUP.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A validated `[mqtt]` table. The password is read at start, never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub topic_prefix: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// A validated `[[webhooks]]` entry. The secret is read at start, never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    /// Event kinds to deliver; empty: all.
    pub events: Vec<String>,
    pub secret_file: PathBuf,
}

/// The event kinds the feed publishes (what `[[webhooks]] events` may name).
pub const EVENT_KINDS: &[&str] = &["transition", "observation", "facts", "discovered"];

/// `dhcp.discovered_max` unless set.
pub const DISCOVERED_MAX_DEFAULT: u32 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct DhcpSettings {
    pub mode: DhcpMode,
    pub port: u16,
    pub lease_secs: u32,
    pub subnet_mask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub efi_x64_file: String,
    /// Test / lab only: where "broadcast" replies go (and the client port
    /// for unicast ones). `None`: 255.255.255.255:68.
    pub reply_to: Option<SocketAddr>,
    /// MACs outside the inventory kept in the discovered table (0: discovery off).
    pub discovered_max: u32,
    /// `dhcp.inspect_discovered`: MACs outside the inventory netboot into
    /// the `inspect` profile (pool and proxy modes only; load refuses it in
    /// the others, where such a MAC gets no address from us).
    pub inspect_discovered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TftpSettings {
    pub enabled: bool,
    pub port: u16,
    pub max_transfers: usize,
    pub max_blksize: u16,
}

/// A validated `[dns]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Lower case, no trailing dot. Always set when `enabled`.
    pub zone: Option<String>,
    pub upstream: Vec<SocketAddr>,
    pub ttl: u32,
    /// Names outside the zone go to `upstream` (else: REFUSED).
    pub forward: bool,
    /// What one upstream resolver gets before the next is tried.
    pub upstream_timeout: Duration,
}

/// Where API tokens come from. Tokens themselves are read at start, never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

/// Load `rackboot.toml` in `dir` (missing file = all defaults).
pub fn load_settings(dir: &Path) -> Result<Settings, ConfigErrors> {
    let mut out = Vec::new();
    let s = load_settings_into(dir, &mut out);
    match s {
        Some(s) if out.is_empty() => Ok(s),
        _ => Err(ConfigErrors(out)),
    }
}

pub(super) fn load_settings_into(dir: &Path, out: &mut Vec<ConfigError>) -> Option<Settings> {
    let file = "rackboot.toml";
    let w: wire::DaemonFile = read_toml(&dir.join(file), file, true, out)?;
    settings_from_wire(dir, w, out)
}

/// `rackboot.toml` given as text (paths in it resolve against `dir`), with
/// the same checks as [`load_settings`]. The fuzz target `config` uses it
/// (fuzz/): the loader on arbitrary text, without writing files.
pub fn parse_settings(dir: &Path, text: &str) -> Result<Settings, ConfigErrors> {
    let mut out = Vec::new();
    let s = parse_toml::<wire::DaemonFile>(text, "rackboot.toml", &mut out)
        .and_then(|w| settings_from_wire(dir, w, &mut out));
    match s {
        Some(s) if out.is_empty() => Ok(s),
        _ => Err(ConfigErrors(out)),
    }
}

fn settings_from_wire(
    dir: &Path,
    w: wire::DaemonFile,
    out: &mut Vec<ConfigError>,
) -> Option<Settings> {
    let file = "rackboot.toml";
    let mut e = Errs {
        out,
        file: file.into(),
    };
    let address = match &w.server.address {
        Some(a) => parse_ip(a, &mut e, "server.address").unwrap_or(Ipv4Addr::LOCALHOST),
        None => Ipv4Addr::LOCALHOST,
    };
    let http_port = w.server.http_port.unwrap_or(8080);
    let http_base_url = w
        .server
        .http_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}:{http_port}"))
        .trim_end_matches('/')
        .to_string();
    if !http_base_url.starts_with("http://") && !http_base_url.starts_with("https://") {
        e.push(
            "server.http_base_url",
            "must start with http:// or https://",
        );
    }
    let data_dir = rel(dir, w.server.data_dir.as_deref().unwrap_or("data"));
    let database_url = w
        .server
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("rackboot.db").display()));
    if !["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|s| database_url.starts_with(s))
    {
        e.push(
            "server.database_url",
            "must be sqlite://PATH or postgres://...",
        );
    }
    let mode = match w.dhcp.mode.as_deref().unwrap_or("reservations") {
        "reservations" => DhcpMode::Reservations,
        "pool" => DhcpMode::Pool,
        "proxy" => DhcpMode::Proxy,
        "off" => DhcpMode::Off,
        other => {
            e.push(
                "dhcp.mode",
                format!("unknown mode {other:?}: expected reservations, pool, proxy or off"),
            );
            DhcpMode::Reservations
        }
    };
    let subnet_mask = w
        .dhcp
        .subnet_mask
        .as_deref()
        .and_then(|m| parse_ip(m, &mut e, "dhcp.subnet_mask"))
        .unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
    let router = w
        .dhcp
        .router
        .as_deref()
        .and_then(|m| parse_ip(m, &mut e, "dhcp.router"));
    let dns = w
        .dhcp
        .dns
        .iter()
        .enumerate()
        .filter_map(|(i, d)| parse_ip(d, &mut e, &format!("dhcp.dns[{i}]")))
        .collect();
    let pool = match (&w.dhcp.pool_start, &w.dhcp.pool_end) {
        (Some(a), Some(b)) => {
            let a = parse_ip(a, &mut e, "dhcp.pool_start");
            let b = parse_ip(b, &mut e, "dhcp.pool_end");
            match (a, b) {
                (Some(a), Some(b)) if u32::from(a) <= u32::from(b) => Some((a, b)),
                (Some(_), Some(_)) => {
                    e.push("dhcp.pool_end", "must not be below dhcp.pool_start");
                    None
                }
                _ => None,
            }
        }
        (None, None) => None,
        _ => {
            e.push("dhcp.pool_start", "pool_start and pool_end go together");
            None
        }
    };
    let pool = match (pool, w.dhcp.pool_slice.as_deref()) {
        (Some((lo, hi)), Some(sl)) => {
            let parsed = sl.split_once('/').and_then(|(i, n)| {
                Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
            });
            match parsed.and_then(|(i, n)| pool_slice(lo, hi, i, n)) {
                Some(p) => Some(p),
                None => {
                    e.push(
                        "dhcp.pool_slice",
                        format!("{sl:?}: expected \"I/N\" with 1 <= I <= N and at most one part per address of the pool"),
                    );
                    None
                }
            }
        }
        (None, Some(_)) => {
            e.push("dhcp.pool_slice", "needs dhcp.pool_start and dhcp.pool_end");
            None
        }
        (p, None) => p,
    };
    if mode == DhcpMode::Pool && pool.is_none() {
        e.push(
            "dhcp.mode",
            "mode \"pool\" needs dhcp.pool_start and dhcp.pool_end",
        );
    }
    let inspect_discovered = w.dhcp.inspect_discovered.unwrap_or(false);
    if inspect_discovered {
        // An error, not a warning: in reservations mode a MAC outside the
        // inventory gets no address from us, so it could never boot the
        // inspection image (and "off" answers nobody); the setting would
        // silently do nothing.
        if !matches!(mode, DhcpMode::Pool | DhcpMode::Proxy) {
            e.push(
                "dhcp.inspect_discovered",
                "needs dhcp.mode \"pool\" (a pool address for unknown MACs) or \"proxy\" \
                 (the site's DHCP gives the address): in this mode an unknown MAC gets no \
                 address from rackboot",
            );
        }
        if w.dhcp.discovered_max == Some(0) {
            e.push(
                "dhcp.inspect_discovered",
                "needs discovery (dhcp.discovered_max above 0): the facts are shown with the \
                 discovered MACs",
            );
        }
    }
    let api_listen = match w.api.listen.as_deref().unwrap_or("127.0.0.1:9080").parse() {
        Ok(a) => a,
        Err(_) => {
            e.push("api.listen", "expected ADDRESS:PORT");
            "127.0.0.1:9080".parse().unwrap()
        }
    };
    let api_tls = match (w.api.tls_cert.as_deref(), w.api.tls_key.as_deref()) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert: rel(dir, c),
            key: rel(dir, k),
        }),
        (None, None) => None,
        (Some(_), None) => {
            e.push(
                "api.tls_key",
                "api.tls_cert needs its key file (api.tls_key)",
            );
            None
        }
        (None, Some(_)) => {
            e.push(
                "api.tls_cert",
                "api.tls_key needs its certificate file (api.tls_cert)",
            );
            None
        }
    };
    let efi_x64_file = w.dhcp.efi_x64_file.clone().unwrap_or("ipxe.efi".into());
    let reply_to = w
        .dhcp
        .reply_to
        .as_deref()
        .and_then(|a| match a.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                e.push("dhcp.reply_to", "expected ADDRESS:PORT");
                None
            }
        });
    let max_blksize = w.tftp.max_blksize.unwrap_or(65464);
    if !(512..=65464).contains(&max_blksize) {
        e.push("tftp.max_blksize", "must be between 512 and 65464");
    }
    // Each transfer holds a thread of the runtime's blocking pool (512 threads)
    // for its duration; the rest of the pool stays for the store and the editors.
    let max_transfers = w.tftp.max_transfers.unwrap_or(64);
    if !(1..=256).contains(&max_transfers) {
        e.push("tftp.max_transfers", "must be between 1 and 256");
    }
    let dns_server = dns_settings(&w.dns, address, w.dhcp.domain.as_deref(), &mut e);
    let mut webhooks: Vec<WebhookSettings> = Vec::new();
    for (i, h) in w.webhooks.iter().enumerate() {
        let key = |k: &str| format!("webhooks[{i}].{k}");
        if !valid_name(&h.name) {
            e.push(key("name"), "use letters, digits, '-', '_' and '.'");
        } else if webhooks.iter().any(|o| o.name == h.name) {
            e.push(key("name"), format!("duplicate webhook name {:?}", h.name));
        }
        if !(h.url.starts_with("http://") || h.url.starts_with("https://"))
            || h.url.len() < "http://x".len()
        {
            e.push(key("url"), "expected an http:// or https:// URL");
        }
        let events = h.events.clone().unwrap_or_default();
        for ev in &events {
            if !EVENT_KINDS.contains(&ev.as_str()) {
                e.push(
                    key("events"),
                    format!(
                        "unknown event kind {ev:?}: one of {}",
                        EVENT_KINDS.join(", ")
                    ),
                );
            }
        }
        let secret_file = rel(dir, &h.secret_file);
        if let Err(err) = std::fs::File::open(&secret_file) {
            e.push(
                key("secret_file"),
                format!("cannot read {}: {err}", secret_file.display()),
            );
        }
        webhooks.push(WebhookSettings {
            name: h.name.clone(),
            url: h.url.clone(),
            events,
            secret_file,
        });
    }
    let mqtt = w.mqtt.as_ref().and_then(|m| {
        let hostport = m.url.strip_prefix("mqtt://").unwrap_or("");
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok()),
            None => (hostport, Some(1883)),
        };
        if host.is_empty() || hostport.contains('/') {
            e.push("mqtt.url", "expected mqtt://host[:port]");
            return None;
        }
        let Some(port) = port else {
            e.push("mqtt.url", "the port is not a number");
            return None;
        };
        let topic_prefix = m.topic_prefix.clone().unwrap_or_else(|| "rackboot".into());
        if topic_prefix.is_empty()
            || topic_prefix.ends_with('/')
            || topic_prefix.contains(['+', '#'])
        {
            e.push(
                "mqtt.topic_prefix",
                "a topic level path without wildcards or a trailing '/'",
            );
        }
        let password_file = m.password_file.as_deref().map(|f| rel(dir, f));
        if let Some(f) = &password_file {
            if let Err(err) = std::fs::File::open(f) {
                e.push(
                    "mqtt.password_file",
                    format!("cannot read {}: {err}", f.display()),
                );
            }
        }
        Some(MqttSettings {
            host: host.to_string(),
            port,
            topic_prefix,
            client_id: m
                .client_id
                .clone()
                .unwrap_or_else(|| format!("rackboot-{address}")),
            username: m.username.clone(),
            password_file,
        })
    });
    let node = w.server.node.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), data_dir.display())
    });
    let boot_domains = w
        .server
        .boot_domains
        .clone()
        .unwrap_or_else(|| vec!["default".to_string()]);
    if boot_domains.is_empty() || boot_domains.iter().any(|d| !super::valid_name(d)) {
        out.push(ConfigError {
            file: "rackboot.toml".into(),
            key: "server.boot_domains".into(),
            reason: "one or more names of letters, digits, '-', '_' or '.'".into(),
        });
    }
    let lease_ttl = match w.server.lease_ttl.as_deref().map(super::parse_duration) {
        None => std::time::Duration::from_secs(30),
        Some(Ok(d)) if d >= std::time::Duration::from_secs(1) => d,
        Some(Ok(_)) => {
            out.push(ConfigError {
                file: "rackboot.toml".into(),
                key: "server.lease_ttl".into(),
                reason: "at least 1s".into(),
            });
            std::time::Duration::from_secs(30)
        }
        Some(Err(e)) => {
            out.push(ConfigError {
                file: "rackboot.toml".into(),
                key: "server.lease_ttl".into(),
                reason: e,
            });
            std::time::Duration::from_secs(30)
        }
    };
    let max_stale = match w.server.max_stale.as_deref().map(super::parse_duration) {
        None => std::time::Duration::from_secs(300),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            out.push(ConfigError {
                file: "rackboot.toml".into(),
                key: "server.max_stale".into(),
                reason: e,
            });
            std::time::Duration::from_secs(300)
        }
    };
    Some(Settings {
        config_dir: dir.to_path_buf(),
        interface: w.server.interface.clone(),
        address,
        http_port,
        http_base_url,
        boot_dir: rel(dir, w.server.boot_dir.as_deref().unwrap_or("boot")),
        firmware_dir: rel(dir, w.server.firmware_dir.as_deref().unwrap_or("firmware")),
        data_dir,
        database_url,
        templates_dir: rel(
            dir,
            w.server.templates_dir.as_deref().unwrap_or("kickstarts"),
        ),
        profiles_dir: rel(dir, w.server.profiles_dir.as_deref().unwrap_or("profiles")),
        systems_file: rel(
            dir,
            w.server.systems_file.as_deref().unwrap_or("systems.toml"),
        ),
        dhcp: DhcpSettings {
            mode,
            port: w.dhcp.port.unwrap_or(67),
            lease_secs: w.dhcp.lease_secs.unwrap_or(3600),
            subnet_mask,
            router,
            dns,
            domain: w.dhcp.domain.clone(),
            pool,
            efi_x64_file,
            reply_to,
            discovered_max: w.dhcp.discovered_max.unwrap_or(DISCOVERED_MAX_DEFAULT),
            inspect_discovered,
        },
        tftp: TftpSettings {
            enabled: w.tftp.enabled.unwrap_or(true),
            port: w.tftp.port.unwrap_or(69),
            max_transfers,
            max_blksize,
        },
        dns: dns_server,
        api_listen,
        api_tokens: TokenSource {
            file: w.api.tokens_file.as_deref().map(|f| rel(dir, f)),
            env: w.api.token_env.clone(),
        },
        api_tls,
        power_poll_secs: w.api.power_poll_secs.unwrap_or(60),
        metrics_per_system: w.api.metrics_per_system.unwrap_or(false),
        max_parallel_runs: w.limits.max_parallel_runs.unwrap_or(8).max(1),
        max_parallel_bmc: w.limits.max_parallel_bmc.unwrap_or(8).max(1),
        max_parallel_stages: w.limits.max_parallel_stages.unwrap_or(4).max(1),
        ssh_key: w.runs.ssh_key.as_deref().map(|k| rel(dir, k)),
        console_max_bytes: w
            .runs
            .console_max_bytes
            .unwrap_or(DEFAULT_CONSOLE_MAX_BYTES),
        webhooks,
        mqtt,
        node,
        boot_domains,
        lease_ttl,
        max_stale,
    })
}

/// `[dns]`: every key checked whether or not the server is enabled; the zone
/// is required only when it is.
fn dns_settings(
    w: &wire::DnsWire,
    address: Ipv4Addr,
    dhcp_domain: Option<&str>,
    e: &mut Errs<'_>,
) -> DnsSettings {
    let enabled = w.enabled.unwrap_or(false);
    let default_listen = SocketAddr::from((address, 53));
    let listen = match w.listen.as_deref() {
        None => default_listen,
        Some(l) => l.parse().unwrap_or_else(|_| {
            e.push("dns.listen", format!("{l:?}: expected ADDRESS:PORT"));
            default_listen
        }),
    };
    // dhcp.domain is checked here only when it is the zone of a running
    // server: a disabled `[dns]` changes nothing for existing files.
    let zone = match w.zone.as_deref().or(dhcp_domain.filter(|_| enabled)) {
        Some(z) => {
            let z = z.strip_suffix('.').unwrap_or(z).to_ascii_lowercase();
            if valid_hostname(&z) {
                Some(z)
            } else {
                let key = if w.zone.is_some() {
                    "dns.zone"
                } else {
                    "dhcp.domain"
                };
                e.push(key, format!("{z:?} is not a valid domain name"));
                None
            }
        }
        None => {
            if enabled {
                e.push(
                    "dns.zone",
                    "the DNS server needs its zone: set dns.zone (or dhcp.domain)",
                );
            }
            None
        }
    };
    let mut upstream = Vec::new();
    for (i, u) in w.upstream.iter().enumerate() {
        let parsed = u.parse::<SocketAddr>().or_else(|_| {
            u.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Ok(a) if a.port() != 0 => upstream.push(a),
            _ => e.push(
                format!("dns.upstream[{i}]"),
                format!("{u:?}: expected an IP address or ADDRESS:PORT"),
            ),
        }
    }
    let forward = match w.outside_zone.as_deref() {
        None => !w.upstream.is_empty(),
        Some("forward") => {
            if w.upstream.is_empty() {
                e.push(
                    "dns.outside_zone",
                    "\"forward\" needs at least one dns.upstream resolver",
                );
            }
            true
        }
        Some("refuse") => false,
        Some(other) => {
            e.push(
                "dns.outside_zone",
                format!("unknown value {other:?}: expected forward or refuse"),
            );
            false
        }
    };
    let ttl = w.ttl.unwrap_or(60);
    if ttl > 86_400 {
        e.push("dns.ttl", "must be between 0 and 86400 seconds");
    }
    let timeout_ms = w.upstream_timeout_ms.unwrap_or(1500);
    if !(50..=10_000).contains(&timeout_ms) {
        e.push(
            "dns.upstream_timeout_ms",
            "must be between 50 and 10000 milliseconds",
        );
    }
    DnsSettings {
        enabled,
        listen,
        zone,
        upstream,
        ttl,
        forward,
        upstream_timeout: Duration::from_millis(timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::pool_slice;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// Slices are contiguous, disjoint, cover the pool, and differ in size
    /// by at most one address.
    #[test]
    fn pool_slices_partition_the_pool() {
        let table = [
            (
                "10.0.0.100",
                "10.0.0.199",
                1,
                2,
                Some(("10.0.0.100", "10.0.0.149")),
            ),
            (
                "10.0.0.100",
                "10.0.0.199",
                2,
                2,
                Some(("10.0.0.150", "10.0.0.199")),
            ),
            (
                "10.0.0.1",
                "10.0.0.10",
                1,
                3,
                Some(("10.0.0.1", "10.0.0.4")),
            ),
            (
                "10.0.0.1",
                "10.0.0.10",
                2,
                3,
                Some(("10.0.0.5", "10.0.0.7")),
            ),
            (
                "10.0.0.1",
                "10.0.0.10",
                3,
                3,
                Some(("10.0.0.8", "10.0.0.10")),
            ),
            ("10.0.0.1", "10.0.0.1", 1, 1, Some(("10.0.0.1", "10.0.0.1"))),
            ("10.0.0.1", "10.0.0.2", 1, 3, None),
            ("10.0.0.1", "10.0.0.9", 0, 3, None),
            ("10.0.0.1", "10.0.0.9", 4, 3, None),
            ("10.0.0.1", "10.0.0.9", 1, 0, None),
        ];
        for (lo, hi, i, n, want) in table {
            assert_eq!(
                pool_slice(ip(lo), ip(hi), i, n),
                want.map(|(a, b)| (ip(a), ip(b))),
                "{lo}..{hi} {i}/{n}"
            );
        }
        // Whole-range property over a few shapes.
        for (size, n) in [(100u32, 7u32), (255, 4), (9, 9)] {
            let lo = u32::from(ip("10.1.0.0"));
            let hi = lo + size - 1;
            let mut next = lo;
            for i in 1..=n {
                let (a, b) = pool_slice(lo.into(), hi.into(), i, n).unwrap();
                assert_eq!(u32::from(a), next, "contiguous");
                next = u32::from(b) + 1;
            }
            assert_eq!(next, hi + 1, "covers the pool");
        }
    }

    /// `[dhcp] pool_slice` narrows the pool; a bad one names the key.
    #[test]
    fn pool_slice_setting() {
        let dir = std::path::Path::new("/nonexistent");
        let text = |sl: &str| {
            format!("[server]\naddress = \"10.0.0.1\"\n[dhcp]\nmode = \"pool\"\npool_start = \"10.0.0.100\"\npool_end = \"10.0.0.199\"\n{sl}")
        };
        let s = super::parse_settings(dir, &text("pool_slice = \"2/2\"\n")).unwrap();
        assert_eq!(s.dhcp.pool, Some((ip("10.0.0.150"), ip("10.0.0.199"))));
        let s = super::parse_settings(dir, &text("")).unwrap();
        assert_eq!(s.dhcp.pool, Some((ip("10.0.0.100"), ip("10.0.0.199"))));
        let e = super::parse_settings(dir, &text("pool_slice = \"3/2\"\n")).unwrap_err();
        assert!(e.to_string().contains("dhcp.pool_slice"), "{e}");
    }
}
