//! Loading the operator's files: wire structs (`wire`) → validated `Settings`
//! (restart-only) + `Inventory` (hot-reloadable snapshot).
//!
//! Every error found is returned at once, each with file, key path and reason.
//! Nothing is validated on use: a loaded `Inventory` is known-good.

mod templates;
pub mod wire;

use crate::inventory::{
    Bmc, BmcKind, Installer, Inventory, Profile, SecretRef, Stage, StageKind, System, Timeouts,
};
use crate::model::Mac;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in the operator's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.reason)
        }
    }
}

/// All problems found in one load.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file.
pub(crate) struct Errs<'a> {
    pub out: &'a mut Vec<ConfigError>,
    pub file: String,
}

impl Errs<'_> {
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.out.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

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
    pub api_listen: SocketAddr,
    pub api_tokens: TokenSource,
    pub max_parallel_runs: usize,
    pub max_parallel_bmc: usize,
    pub max_parallel_stages: usize,
    pub ssh_key: Option<PathBuf>,
}

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct TftpSettings {
    pub enabled: bool,
    pub port: u16,
    pub max_transfers: usize,
    pub max_blksize: u16,
}

/// Where API tokens come from. Tokens themselves are read at start, never logged.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSource {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
}

/// A whole load: settings plus inventory.
pub struct Config {
    pub settings: Settings,
    pub inventory: Inventory,
}

/// Parse a duration like `500ms`, `30s`, `5m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m, h)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number followed by ms, s, m or h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    }
}

fn rel(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Display a path relative to the config dir when possible.
pub(crate) fn show(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

fn read_toml<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    shown: &str,
    optional: bool,
    out: &mut Vec<ConfigError>,
) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Some(T::default()),
        Err(e) => {
            out.push(ConfigError {
                file: shown.to_string(),
                key: String::new(),
                reason: format!("cannot read: {e}"),
            });
            return None;
        }
    };
    parse_toml(&text, shown, out)
}

pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    shown: &str,
    out: &mut Vec<ConfigError>,
) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            // toml's message carries the line/column and the key; keep it whole.
            let msg = e.message().to_string();
            let loc = e
                .span()
                .map(|sp| {
                    let line = text[..sp.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_default();
            out.push(ConfigError {
                file: shown.to_string(),
                key: loc,
                reason: msg,
            });
            None
        }
    }
}

fn parse_ip(s: &str, e: &mut Errs<'_>, key: &str) -> Option<Ipv4Addr> {
    match s.parse::<Ipv4Addr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            e.push(key, format!("{s:?} is not an IPv4 address"));
            None
        }
    }
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

fn load_settings_into(dir: &Path, out: &mut Vec<ConfigError>) -> Option<Settings> {
    let file = "rackboot.toml";
    let w: wire::DaemonFile = read_toml(&dir.join(file), file, true, out)?;
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
    if !database_url.starts_with("sqlite:") && !database_url.starts_with("postgres") {
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
    if mode == DhcpMode::Pool && pool.is_none() {
        e.push(
            "dhcp.mode",
            "mode \"pool\" needs dhcp.pool_start and dhcp.pool_end",
        );
    }
    let api_listen = match w.api.listen.as_deref().unwrap_or("127.0.0.1:9080").parse() {
        Ok(a) => a,
        Err(_) => {
            e.push("api.listen", "expected ADDRESS:PORT");
            "127.0.0.1:9080".parse().unwrap()
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
        },
        tftp: TftpSettings {
            enabled: w.tftp.enabled.unwrap_or(true),
            port: w.tftp.port.unwrap_or(69),
            max_transfers,
            max_blksize,
        },
        api_listen,
        api_tokens: TokenSource {
            file: w.api.tokens_file.as_deref().map(|f| rel(dir, f)),
            env: w.api.token_env.clone(),
        },
        max_parallel_runs: w.limits.max_parallel_runs.unwrap_or(8).max(1),
        max_parallel_bmc: w.limits.max_parallel_bmc.unwrap_or(8).max(1),
        max_parallel_stages: w.limits.max_parallel_stages.unwrap_or(4).max(1),
        ssh_key: w.runs.ssh_key.as_deref().map(|k| rel(dir, k)),
    })
}

/// Load everything from a config dir. Returns every error found.
pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    let mut out = Vec::new();
    let settings = load_settings_into(dir, &mut out);
    let Some(settings) = settings else {
        return Err(ConfigErrors(out));
    };
    let inv = load_inventory_into(&settings, &mut out);
    match inv {
        Some(inventory) if out.is_empty() => Ok(Config {
            settings,
            inventory,
        }),
        _ => Err(ConfigErrors(out)),
    }
}

/// Load systems, profiles and templates with already-validated settings
/// (the reload path: settings are restart-only).
pub fn load_inventory(settings: &Settings) -> Result<Inventory, ConfigErrors> {
    let mut out = Vec::new();
    match load_inventory_into(settings, &mut out) {
        Some(inv) if out.is_empty() => Ok(inv),
        _ => Err(ConfigErrors(out)),
    }
}

/// Inventory from in-memory file contents (used by the admin editor to validate
/// a change before writing it). `systems_text` replaces systems.toml;
/// `profile_texts` replace/add profile files by name (None = removed).
pub fn load_inventory_with(
    settings: &Settings,
    systems_text: Option<&str>,
    profile_texts: &BTreeMap<String, Option<String>>,
) -> Result<Inventory, ConfigErrors> {
    let mut out = Vec::new();
    match load_inventory_overlay(settings, systems_text, profile_texts, true, &mut out) {
        Some(inv) if out.is_empty() => Ok(inv),
        _ => Err(ConfigErrors(out)),
    }
}

/// Like [`load_inventory_with`], with every structural check but without
/// rendering the templates; the caller renders what it must (the admin
/// editor: only systems whose rendering inputs changed).
pub fn load_inventory_unrendered(
    settings: &Settings,
    systems_text: Option<&str>,
    profile_texts: &BTreeMap<String, Option<String>>,
) -> Result<Inventory, ConfigErrors> {
    let mut out = Vec::new();
    match load_inventory_overlay(settings, systems_text, profile_texts, false, &mut out) {
        Some(inv) if out.is_empty() => Ok(inv),
        _ => Err(ConfigErrors(out)),
    }
}

fn load_inventory_into(settings: &Settings, out: &mut Vec<ConfigError>) -> Option<Inventory> {
    load_inventory_overlay(settings, None, &BTreeMap::new(), true, out)
}

fn load_inventory_overlay(
    settings: &Settings,
    systems_text: Option<&str>,
    profile_texts: &BTreeMap<String, Option<String>>,
    render: bool,
    out: &mut Vec<ConfigError>,
) -> Option<Inventory> {
    let dir = &settings.config_dir;
    let sys_shown = show(dir, &settings.systems_file);
    let systems: wire::SystemsFile = match systems_text {
        Some(t) => parse_toml(t, &sys_shown, out)?,
        None => read_toml(&settings.systems_file, &sys_shown, false, out)?,
    };
    let (profiles, templates) = load_profiles(settings, profile_texts, out);
    let systems = validate_systems(&systems, &sys_shown, &profiles, settings, out);
    let inv = Inventory::new(
        systems,
        profiles,
        templates,
        crate::render::Urls::from(settings),
    );
    // Render every template for every system that uses it: a template that fails
    // for any system is a load error, not a 500 on the night.
    if render {
        inv.render_all_for_validation(&sys_shown, out);
    }
    Some(inv)
}

/// The resolved profiles (every *.toml in the profiles dir, overlaid with
/// in-memory edits) and the templates, with their errors in `out`.
pub(crate) fn load_profiles(
    settings: &Settings,
    profile_texts: &BTreeMap<String, Option<String>>,
    out: &mut Vec<ConfigError>,
) -> (BTreeMap<String, Profile>, crate::render::Templates) {
    let dir = &settings.config_dir;
    let mut raw_profiles: BTreeMap<String, (String, wire::ProfileWire)> = BTreeMap::new();
    let pdir = &settings.profiles_dir;
    let mut names: Vec<String> = Vec::new();
    match std::fs::read_dir(pdir) {
        Ok(rd) => {
            for ent in rd.flatten() {
                let p = ent.path();
                if p.extension().and_then(|x| x.to_str()) == Some("toml") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        names.push(stem.to_string());
                    }
                }
            }
        }
        Err(e) => out.push(ConfigError {
            file: show(dir, pdir),
            key: String::new(),
            reason: format!("cannot read profiles dir: {e}"),
        }),
    }
    for k in profile_texts.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names.sort();
    for name in names {
        let path = pdir.join(format!("{name}.toml"));
        let shown = show(dir, &path);
        let parsed = match profile_texts.get(&name) {
            Some(None) => continue,
            Some(Some(text)) => parse_toml::<wire::ProfileWire>(text, &shown, out),
            None => read_toml::<wire::ProfileWire>(&path, &shown, false, out),
        };
        if let Some(p) = parsed {
            raw_profiles.insert(name, (shown, p));
        }
    }

    let templates = templates::load(&settings.templates_dir, dir, out);
    let profiles = resolve_profiles(&raw_profiles, settings, &templates, out);
    (profiles, templates)
}

const PROFILE_FIELDS: &[&str] = &[
    "description",
    "kernel",
    "initrd",
    "kernel_args",
    "installer",
    "template",
    "user_data",
    "meta_data",
    "vendor_data",
    "ipxe_template",
    "wait_ports",
    "reboots",
    "timeouts",
    "stages",
    "on_interrupted_stage",
    "vars",
];

fn resolve_profiles(
    raw: &BTreeMap<String, (String, wire::ProfileWire)>,
    settings: &Settings,
    templates: &crate::render::Templates,
    out: &mut Vec<ConfigError>,
) -> BTreeMap<String, Profile> {
    let mut resolved = BTreeMap::new();
    for (name, (file, _)) in raw {
        // Walk the parent chain, detecting cycles and unknown parents.
        let mut chain: Vec<&str> = vec![name.as_str()];
        let mut cur = name.as_str();
        let mut broken = false;
        while let Some(parent) = raw.get(cur).and_then(|(_, p)| p.parent.as_deref()) {
            if !raw.contains_key(parent) {
                let (pf, _) = &raw[cur];
                if cur == name {
                    out.push(ConfigError {
                        file: pf.clone(),
                        key: "parent".into(),
                        reason: format!("unknown parent profile {parent:?}"),
                    });
                }
                broken = true;
                break;
            }
            if chain.contains(&parent) {
                let mut cyc: Vec<&str> = chain.clone();
                cyc.push(parent);
                out.push(ConfigError {
                    file: file.clone(),
                    key: "parent".into(),
                    reason: format!("inheritance cycle: {}", cyc.join(" -> ")),
                });
                broken = true;
                break;
            }
            chain.push(parent);
            cur = parent;
        }
        if broken {
            continue;
        }
        // Merge from the root down: child values override, vars merge key by key.
        let mut merged = wire::ProfileWire::default();
        let mut origin: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut vars: BTreeMap<String, toml::Value> = BTreeMap::new();
        for pname in chain.iter().rev() {
            let p = &raw[*pname].1;
            macro_rules! take {
                ($($f:ident),*) => {$(
                    if p.$f.is_some() {
                        merged.$f = p.$f.clone();
                        origin.insert(stringify!($f), pname.to_string());
                    }
                )*};
            }
            take!(
                description,
                kernel,
                initrd,
                kernel_args,
                installer,
                template,
                user_data,
                meta_data,
                vendor_data,
                ipxe_template,
                wait_ports,
                reboots,
                timeouts,
                stages,
                on_interrupted_stage
            );
            if let Some(v) = &p.vars {
                for (k, val) in v {
                    vars.insert(k.clone(), val.clone());
                }
                origin.insert("vars", pname.to_string());
            }
        }
        debug_assert!(PROFILE_FIELDS.len() == 16);
        let own = &raw[name].1;
        let mut e = Errs {
            out,
            file: file.clone(),
        };
        if let Some(p) =
            validate_profile(name, own, merged, vars, origin, settings, templates, &mut e)
        {
            resolved.insert(name.clone(), p);
        }
    }
    resolved
}

#[allow(clippy::too_many_arguments)]
fn validate_profile(
    name: &str,
    own: &wire::ProfileWire,
    m: wire::ProfileWire,
    vars: BTreeMap<String, toml::Value>,
    origin: BTreeMap<&'static str, String>,
    settings: &Settings,
    templates: &crate::render::Templates,
    e: &mut Errs<'_>,
) -> Option<Profile> {
    let is_abstract = own.r#abstract.unwrap_or(false);
    let before = e.out.len();
    let installer = match m.installer.as_deref() {
        None => None,
        Some(s) => match Installer::parse(s) {
            Some(i) => Some(i),
            None => {
                e.push(
                    "installer",
                    format!(
                        "unknown installer {s:?}: expected kickstart, preseed, autoinstall, cloud-init or script"
                    ),
                );
                None
            }
        },
    };
    let boot_dir = &settings.boot_dir;
    let check_boot_file = |e: &mut Errs<'_>, key: &str, f: &str| {
        if f.contains("..") || f.starts_with('/') {
            e.push(key, format!("{f:?} must be a path inside the boot dir"));
        } else if !boot_dir.join(f).is_file() {
            e.push(
                key,
                format!(
                    "boot file {f:?} not found in {}",
                    show(&settings.config_dir, boot_dir)
                ),
            );
        }
    };
    if let Some(k) = &m.kernel {
        check_boot_file(e, "kernel", k);
    }
    for (i, f) in m.initrd.iter().flatten().enumerate() {
        check_boot_file(e, &format!("initrd[{i}]"), f);
    }
    for (key, t) in [
        ("template", &m.template),
        ("user_data", &m.user_data),
        ("meta_data", &m.meta_data),
        ("vendor_data", &m.vendor_data),
        ("ipxe_template", &m.ipxe_template),
    ] {
        if let Some(t) = t {
            if !templates.has(t) {
                e.push(
                    key,
                    format!("template {t:?} not found in the templates dir"),
                );
            }
        }
    }
    let mut timeouts = Timeouts::default();
    for (k, v) in m.timeouts.iter().flatten() {
        match parse_duration(v) {
            Ok(d) => {
                if !timeouts.set(k, d) {
                    e.push(
                        format!("timeouts.{k}"),
                        format!(
                            "unknown phase {k:?}: expected one of {}",
                            Timeouts::NAMES.join(", ")
                        ),
                    );
                }
            }
            Err(r) => e.push(format!("timeouts.{k}"), r),
        }
    }
    let mut stages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in m.stages.iter().flatten().enumerate() {
        let key = format!("stages[{i}]");
        if !seen.insert(s.name.clone()) {
            e.push(
                format!("{key}.name"),
                format!("duplicate stage name {:?}", s.name),
            );
        }
        let kind = match s.kind.as_str() {
            "config" => StageKind::Config,
            "test" => StageKind::Test,
            k => {
                e.push(
                    format!("{key}.kind"),
                    format!("{k:?}: expected config or test"),
                );
                StageKind::Config
            }
        };
        let timeout = match s.timeout.as_deref().map(parse_duration) {
            None => Duration::from_secs(1800),
            Some(Ok(d)) => d,
            Some(Err(r)) => {
                e.push(format!("{key}.timeout"), r);
                Duration::from_secs(1800)
            }
        };
        let keep_going = match s.on_failure.as_deref().unwrap_or("stop") {
            "stop" => false,
            "continue" => true,
            o => {
                e.push(
                    format!("{key}.on_failure"),
                    format!("{o:?}: expected stop or continue"),
                );
                false
            }
        };
        if s.command.trim().is_empty() {
            e.push(format!("{key}.command"), "empty command");
        } else if let Err(err) = templates.check_inline(&s.command) {
            e.push(format!("{key}.command"), err);
        }
        stages.push(Stage {
            name: s.name.clone(),
            kind,
            command: s.command.clone(),
            timeout,
            keep_going,
        });
    }
    let rerun_interrupted = match m.on_interrupted_stage.as_deref().unwrap_or("rerun") {
        "rerun" => true,
        "fail" => false,
        o => {
            e.push(
                "on_interrupted_stage",
                format!("{o:?}: expected rerun or fail"),
            );
            true
        }
    };
    if let Some(ka) = &m.kernel_args {
        if let Err(err) = templates.check_inline(ka) {
            e.push("kernel_args", err);
        }
    }
    if !is_abstract {
        if m.kernel.is_none() {
            e.push("kernel", "missing (set it here or in a parent profile)");
        }
        match installer {
            None if m.installer.is_none() => e.push("installer", "missing"),
            Some(Installer::CloudInit) | Some(Installer::Autoinstall) if m.user_data.is_none() => e
                .push(
                    "user_data",
                    "a cloud-init/autoinstall profile needs user_data",
                ),
            Some(Installer::Kickstart) | Some(Installer::Preseed) | Some(Installer::Script)
                if m.template.is_none() =>
            {
                e.push("template", "missing installer template")
            }
            _ => {}
        }
    }
    if e.out.len() > before {
        return None;
    }
    Some(Profile {
        name: name.to_string(),
        description: m.description.unwrap_or_default(),
        parent: own.parent.clone(),
        is_abstract,
        kernel: m.kernel.unwrap_or_default(),
        initrd: m.initrd.unwrap_or_default(),
        kernel_args: m.kernel_args.unwrap_or_default(),
        installer: installer.unwrap_or(Installer::Script),
        template: m.template,
        user_data: m.user_data,
        meta_data: m.meta_data,
        vendor_data: m.vendor_data,
        ipxe_template: m.ipxe_template,
        wait_ports: m.wait_ports.unwrap_or_else(|| vec![22]),
        reboots: m.reboots.unwrap_or(true),
        timeouts,
        stages,
        rerun_interrupted,
        vars,
        origin,
    })
}

/// What must be unique across systems: the keys every system is checked
/// against. Built while validating a whole file, or from a validated
/// inventory (the admin editor's fast path for `systems add`).
#[derive(Debug, Default)]
pub(crate) struct SystemIndex {
    pub names: HashSet<String>,
    pub by_mac: HashMap<Mac, String>,
    pub by_ip: HashMap<Ipv4Addr, String>,
    /// Lower-cased hostnames.
    pub by_host: HashMap<String, String>,
}

impl SystemIndex {
    /// Record a valid system's keys (first holder wins, as in validation).
    pub fn insert(&mut self, s: &System) {
        self.names.insert(s.name.clone());
        self.by_host
            .entry(s.hostname.to_ascii_lowercase())
            .or_insert_with(|| s.name.clone());
        self.by_ip.entry(s.ip).or_insert_with(|| s.name.clone());
        for m in &s.macs {
            self.by_mac.entry(*m).or_insert_with(|| s.name.clone());
        }
    }
}

fn validate_systems(
    w: &wire::SystemsFile,
    file: &str,
    profiles: &BTreeMap<String, Profile>,
    settings: &Settings,
    out: &mut Vec<ConfigError>,
) -> Vec<System> {
    let mut e = Errs {
        out,
        file: file.to_string(),
    };
    let mut index = SystemIndex::default();
    w.systems
        .iter()
        .filter_map(|(name, s)| validate_system(name, s, &mut index, profiles, settings, &mut e))
        .collect()
}

/// Validate one system of systems.toml against the systems before it
/// (`index`, which it joins); `None` (and errors pushed) when it is invalid.
pub(crate) fn validate_system(
    name: &str,
    s: &wire::SystemWire,
    index: &mut SystemIndex,
    profiles: &BTreeMap<String, Profile>,
    settings: &Settings,
    e: &mut Errs<'_>,
) -> Option<System> {
    let SystemIndex {
        names,
        by_mac,
        by_ip,
        by_host,
    } = index;
    names.insert(name.to_string());
    let key = |k: &str| format!("systems.{name}.{k}");
    let before = e.out.len();
    if !valid_name(name) {
        e.push(
            format!("systems.{name}"),
            "system names use letters, digits, '-', '_' and '.' only",
        );
    }
    let hostname = s.hostname.clone().unwrap_or_else(|| name.to_string());
    if !valid_hostname(&hostname) {
        e.push(
            key("hostname"),
            format!("{hostname:?} is not a valid hostname"),
        );
    } else if let Some(other) = by_host.insert(hostname.to_ascii_lowercase(), name.to_string()) {
        e.push(
            key("hostname"),
            format!("duplicate hostname {hostname:?}: also used by system {other:?}"),
        );
    }
    let mut macs = Vec::new();
    if s.macs.is_empty() {
        e.push(key("macs"), "at least one MAC address is needed");
    }
    for (i, m) in s.macs.iter().enumerate() {
        match m.parse::<Mac>() {
            Ok(mac) => {
                if let Some(other) = by_mac.insert(mac, name.to_string()) {
                    e.push(
                        format!("systems.{name}.macs[{i}]"),
                        format!("duplicate MAC {mac}: also used by system {other:?}"),
                    );
                }
                macs.push(mac);
            }
            Err(err) => e.push(format!("systems.{name}.macs[{i}]"), err.to_string()),
        }
    }
    let ip = parse_ip(&s.ip, e, &key("ip"));
    if let Some(ip) = ip {
        if let Some(other) = by_ip.insert(ip, name.to_string()) {
            e.push(
                key("ip"),
                format!("duplicate IP {ip}: also used by system {other:?}"),
            );
        }
    }
    let netmask = s
        .netmask
        .as_deref()
        .and_then(|m| parse_ip(m, e, &key("netmask")))
        .unwrap_or(settings.dhcp.subnet_mask);
    let gateway = s
        .gateway
        .as_deref()
        .and_then(|g| parse_ip(g, e, &key("gateway")))
        .or(settings.dhcp.router);
    let mut dns: Vec<Ipv4Addr> = s
        .dns
        .iter()
        .enumerate()
        .filter_map(|(i, d)| parse_ip(d, e, &format!("systems.{name}.dns[{i}]")))
        .collect();
    if s.dns.is_empty() {
        dns = settings.dhcp.dns.clone();
    }
    match profiles.get(&s.profile) {
        None => e.push(key("profile"), format!("unknown profile {:?}", s.profile)),
        Some(p) if p.is_abstract => e.push(
            key("profile"),
            format!("profile {:?} is abstract (only for inheriting)", s.profile),
        ),
        Some(_) => {}
    }
    let bmc = s
        .bmc
        .as_ref()
        .and_then(|b| validate_bmc(name, b, settings, e));
    if e.out.len() > before {
        return None;
    }
    Some(System {
        name: name.to_string(),
        hostname,
        macs,
        ip: ip.expect("checked"),
        netmask,
        gateway,
        dns,
        domain: s.domain.clone().or_else(|| settings.dhcp.domain.clone()),
        profile: s.profile.clone(),
        bmc,
        vars: s.vars.clone(),
    })
}

fn validate_bmc(
    name: &str,
    b: &wire::BmcWire,
    settings: &Settings,
    e: &mut Errs<'_>,
) -> Option<Bmc> {
    let key = |k: &str| format!("systems.{name}.bmc.{k}");
    let kind = match b.kind.as_str() {
        "ipmi" => BmcKind::Ipmi,
        "redfish" => BmcKind::Redfish,
        k => {
            e.push(key("kind"), format!("{k:?}: expected ipmi or redfish"));
            return None;
        }
    };
    if b.password.is_some() {
        e.push(
            key("password"),
            "inline passwords are not accepted: use password_file or password_env",
        );
        return None;
    }
    let password = match (&b.password_file, &b.password_env) {
        (Some(f), None) => SecretRef::File(rel(&settings.config_dir, f)),
        (None, Some(v)) => SecretRef::Env(v.clone()),
        (None, None) => {
            e.push(key("password_file"), "set password_file or password_env");
            return None;
        }
        (Some(_), Some(_)) => {
            e.push(
                key("password_env"),
                "set only one of password_file and password_env",
            );
            return None;
        }
    };
    if b.address.trim().is_empty() {
        e.push(key("address"), "empty address");
        return None;
    }
    let cipher_suites = b.cipher_suites.clone().unwrap_or_else(|| vec![17, 3]);
    for c in &cipher_suites {
        if ![3u8, 17].contains(c) {
            e.push(
                key("cipher_suites"),
                format!("suite {c} unsupported: use 3 and/or 17"),
            );
        }
    }
    Some(Bmc {
        kind,
        address: b.address.clone(),
        username: b.username.clone(),
        password,
        cipher_suites,
        insecure_tls: b.insecure_tls.unwrap_or(false),
        system_id: b.system_id.clone(),
    })
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_hostname("node50.lab.example"));
        assert!(!valid_hostname("-node"));
        assert!(!valid_hostname("no_underscore"));
        assert!(valid_name("node_50"));
        assert!(!valid_name("a b"));
    }
}
