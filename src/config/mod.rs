//! Loading the operator's files: wire structs (`wire`) → validated `Settings`
//! (restart-only) + `Inventory` (hot-reloadable snapshot).
//!
//! Every error found is returned at once, each with file, key path and reason.
//! Nothing is validated on use: a loaded `Inventory` is known-good.

pub mod fields;
mod profiles;
mod settings;
mod systems;
mod templates;
pub mod wire;

pub(crate) use profiles::load_profiles;
pub(crate) use profiles::Profiles;
pub use settings::*;
use systems::*;
pub(crate) use systems::{validate_system, SystemIndex};

use crate::inventory::{
    Bmc, BmcKind, BootLoader, Installer, Inventory, Profile, SecretRef, Stage, StageKind, System,
    Timeouts,
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

/// A whole load: settings plus inventory.
pub struct Config {
    pub settings: Settings,
    pub inventory: Inventory,
}

/// Network boot programs the config needs that are not in `firmware_dir`
/// (a warning, not an error: `scripts/fetch-firmware.sh` or the package
/// fills it; boot files in `boot_dir` are checked as errors by the loader):
/// the BIOS and UEFI loaders when TFTP serves them, shim and GRUB when a
/// profile or system uses `loader = "grub"`. As `rackboot check` prints them.
pub fn missing_files(cfg: &Config) -> Vec<String> {
    let s = &cfg.settings;
    let mut out = Vec::new();
    let inv = &cfg.inventory;
    let grub = inv
        .profiles()
        .values()
        .any(|p| !p.is_abstract && p.loader == crate::inventory::BootLoader::Grub)
        || inv
            .systems()
            .iter()
            .any(|s| s.loader(inv.profile(&s.profile)) == crate::inventory::BootLoader::Grub);
    let mut firmware = Vec::new();
    if s.tftp.enabled {
        firmware.push(("undionly.kpxe", "BIOS PXE clients"));
        firmware.push((s.dhcp.efi_x64_file.as_str(), "UEFI x64 PXE clients"));
    }
    if grub {
        firmware.push((crate::boot::GRUB_SHIM, "loader = \"grub\" (signed shim)"));
        firmware.push((crate::boot::GRUB_NEXT, "loader = \"grub\" (signed GRUB)"));
    }
    for (f, who) in firmware {
        if !s.firmware_dir.join(f).is_file() {
            out.push(format!(
                "{}: missing (firmware_dir, for {who}; scripts/fetch-firmware.sh or the package's /usr/share/rackboot/firmware)",
                s.firmware_dir.join(f).display()
            ));
        }
    }
    out
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

/// Every file under `dir` as the template loader sees it (hidden files and
/// `~` backups skipped), named relative to `dir`.
pub(crate) fn collect_template_files(dir: &Path, out: &mut Vec<String>) {
    templates::collect_files(dir, dir, out)
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
    let domains = boot_domains(&systems.boot_domains, &sys_shown, out);
    let systems = validate_systems(&systems, &sys_shown, &profiles, settings, out);
    let mut inv = Inventory::new(
        systems,
        profiles.resolved,
        templates,
        crate::render::Urls::from(settings),
    );
    inv.set_boot_domains(domains);
    // Render every template for every system that uses it: a template that fails
    // for any system is a load error, not a 500 on the night.
    if render {
        inv.render_all_for_validation(&sys_shown, out);
    }
    if settings.dhcp.inspect_discovered {
        let key = "dhcp.inspect_discovered";
        let file = show(dir, &dir.join("rackboot.toml"));
        if inv.profile(crate::boot::DISCOVERED_PROFILE).is_none() {
            out.push(ConfigError {
                file,
                key: key.into(),
                reason: format!(
                    "needs the profile {:?} (profiles/{}.toml): discovered machines boot it",
                    crate::boot::DISCOVERED_PROFILE,
                    crate::boot::DISCOVERED_PROFILE
                ),
            });
        } else if render {
            // What a discovered machine is rendered as (any MAC will do).
            let probe = crate::boot::discovered_system(&crate::model::Mac([2, 0, 0, 0, 0, 1]));
            for reason in inv.render_failures(&probe) {
                out.push(ConfigError {
                    file: file.clone(),
                    key: key.into(),
                    reason: format!("for a discovered machine, {reason}"),
                });
            }
        }
    }
    Some(inv)
}

/// systems.toml's `[boot_domains]`: each name valid, each subnet an IPv4
/// network `A.B.C.D/LEN` (host bits zero), no subnet in two domains.
fn boot_domains(
    w: &BTreeMap<String, Vec<String>>,
    file: &str,
    out: &mut Vec<ConfigError>,
) -> Vec<(String, std::net::Ipv4Addr, u8)> {
    let mut got: Vec<(String, std::net::Ipv4Addr, u8)> = Vec::new();
    for (name, nets) in w {
        let key = format!("boot_domains.{name}");
        let mut err = |reason: String| {
            out.push(ConfigError {
                file: file.to_string(),
                key: key.clone(),
                reason,
            })
        };
        if !valid_name(name) {
            err(format!(
                "{name:?} is not a valid domain name (letters, digits, - and _)"
            ));
            continue;
        }
        for n in nets {
            let parsed = n.split_once('/').and_then(|(a, l)| {
                let a: std::net::Ipv4Addr = a.parse().ok()?;
                let l: u8 = l.parse().ok().filter(|l| *l <= 32)?;
                let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
                (u32::from(a) & !mask == 0).then_some((a, l))
            });
            match parsed {
                None => err(format!(
                    "{n:?} is not an IPv4 network ADDRESS/LENGTH with the host bits zero"
                )),
                Some((a, l)) => match got.iter().find(|g| g.1 == a && g.2 == l) {
                    Some(other) => err(format!("{n} is also in boot domain {:?}", other.0)),
                    None => got.push((name.clone(), a, l)),
                },
            }
        }
    }
    got
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
