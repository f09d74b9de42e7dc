//! The validated, indexed inventory: systems, resolved profiles and compiled
//! templates. Immutable once built; the daemon swaps whole snapshots on reload.

use crate::model::Mac;
use crate::template::{RenderKind, Templates, Urls};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct System {
    pub name: String,
    pub hostname: String,
    pub macs: Vec<Mac>,
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub profile: String,
    /// The machine's own loader (`loader` in systems.toml), over its profile's.
    pub loader: Option<BootLoader>,
    pub bmc: Option<Bmc>,
    pub vars: BTreeMap<String, toml::Value>,
}

impl System {
    /// What a UEFI x64 PXE client of this machine loads first: its own
    /// `loader`, else its profile's (iPXE without one).
    pub fn loader(&self, profile: Option<&Profile>) -> BootLoader {
        self.loader
            .or(profile.map(|p| p.loader))
            .unwrap_or_default()
    }

    pub fn primary_mac(&self) -> Mac {
        self.macs[0]
    }

    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(d) if !self.hostname.contains('.') => format!("{}.{d}", self.hostname),
            _ => self.hostname.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmcKind {
    Ipmi,
    Redfish,
}

impl BmcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BmcKind::Ipmi => "ipmi",
            BmcKind::Redfish => "redfish",
        }
    }
}

/// Where a secret lives. The secret itself is read only when it is used
/// (`SecretRef::read`, in `power`: this module does no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    File(PathBuf),
    Env(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bmc {
    pub kind: BmcKind,
    pub address: String,
    pub username: String,
    pub password: SecretRef,
    pub cipher_suites: Vec<u8>,
    pub insecure_tls: bool,
    pub system_id: Option<String>,
}

/// The first-stage loader of a UEFI x64 PXE client (profile `loader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootLoader {
    /// iPXE (`ipxe.efi` / `snponly.efi`), then the per-MAC iPXE script over HTTP.
    #[default]
    Ipxe,
    /// Secure Boot: Debian's signed shim (`grub/bootx64.efi`), which loads the
    /// signed network GRUB (`grub/grubx64.efi`); GRUB reads its per-MAC
    /// `grub.cfg`, kernel and initrd over TFTP.
    Grub,
}

impl BootLoader {
    pub fn parse(s: &str) -> Option<BootLoader> {
        match s {
            "ipxe" => Some(BootLoader::Ipxe),
            "grub" => Some(BootLoader::Grub),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BootLoader::Ipxe => "ipxe",
            BootLoader::Grub => "grub",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    Kickstart,
    Preseed,
    Autoinstall,
    CloudInit,
    /// A shell script fetched and run by a small installer initrd (the lab's).
    Script,
}

impl Installer {
    pub fn parse(s: &str) -> Option<Installer> {
        Some(match s {
            "kickstart" => Installer::Kickstart,
            "preseed" => Installer::Preseed,
            "autoinstall" => Installer::Autoinstall,
            "cloud-init" => Installer::CloudInit,
            "script" => Installer::Script,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Installer::Kickstart => "kickstart",
            Installer::Preseed => "preseed",
            Installer::Autoinstall => "autoinstall",
            Installer::CloudInit => "cloud-init",
            Installer::Script => "script",
        }
    }

    /// Whether the installer reads NoCloud user-data/meta-data.
    pub fn is_nocloud(self) -> bool {
        matches!(self, Installer::CloudInit | Installer::Autoinstall)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    Config,
    Test,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Config => "config",
            StageKind::Test => "test",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// A minijinja template rendered with the machine's facts, run by `sh -c`.
    pub command: String,
    pub timeout: Duration,
    /// true: the run goes on after this stage fails (the run still fails).
    pub keep_going: bool,
    /// Runs before the boot device is set (`when = "before"`).
    pub before: bool,
}

/// Per-phase deadlines of a reimage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub power: Duration,
    pub dhcp: Duration,
    pub kernel: Duration,
    pub config: Duration,
    pub install: Duration,
    pub reboot: Duration,
    pub ssh: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            power: Duration::from_secs(60),
            dhcp: Duration::from_secs(180),
            kernel: Duration::from_secs(120),
            config: Duration::from_secs(300),
            install: Duration::from_secs(3600),
            reboot: Duration::from_secs(600),
            ssh: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    pub const NAMES: &'static [&'static str] = &[
        "power", "dhcp", "kernel", "config", "install", "reboot", "ssh",
    ];

    pub fn set(&mut self, name: &str, d: Duration) -> bool {
        let slot = match name {
            "power" => &mut self.power,
            "dhcp" => &mut self.dhcp,
            "kernel" => &mut self.kernel,
            "config" => &mut self.config,
            "install" => &mut self.install,
            "reboot" => &mut self.reboot,
            "ssh" => &mut self.ssh,
            _ => return false,
        };
        *slot = d;
        true
    }
}

/// A profile with its parent chain resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub parent: Option<String>,
    pub is_abstract: bool,
    pub kernel: String,
    pub initrd: Vec<String>,
    pub kernel_args: String,
    pub installer: Installer,
    pub template: Option<String>,
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub vendor_data: Option<String>,
    pub ipxe_template: Option<String>,
    /// What a UEFI x64 PXE client of this profile loads first.
    pub loader: BootLoader,
    pub wait_ports: Vec<u16>,
    /// The installer reboots into the installed system after its callback.
    pub reboots: bool,
    /// Power-cycles again on a missed boot deadline before the run fails.
    pub boot_retries: u32,
    /// `after_install = "netboot"`: the machine keeps netbooting the image.
    pub netboot_after: bool,
    pub timeouts: Timeouts,
    pub stages: Vec<Stage>,
    pub rerun_interrupted: bool,
    pub vars: BTreeMap<String, toml::Value>,
    /// For each field that is set: the profile it came from.
    pub origin: BTreeMap<&'static str, String>,
}

impl Profile {
    /// Which render kinds this profile serves.
    pub fn kinds(&self) -> Vec<RenderKind> {
        let mut k = vec![RenderKind::Ipxe];
        if self.loader == BootLoader::Grub {
            k.push(RenderKind::Grub);
        }
        if self.template.is_some() {
            k.push(RenderKind::Config);
        }
        if self.user_data.is_some() {
            k.push(RenderKind::UserData);
            k.push(RenderKind::MetaData);
        }
        if self.vendor_data.is_some() {
            k.push(RenderKind::VendorData);
        }
        k
    }
}

pub struct Inventory {
    systems: Vec<System>,
    by_name: HashMap<String, usize>,
    by_mac: HashMap<Mac, usize>,
    by_ip: HashMap<Ipv4Addr, usize>,
    profiles: BTreeMap<String, Profile>,
    pub(crate) templates: Templates,
    pub urls: Urls,
    /// Which published snapshot this is (0 until the daemon publishes it):
    /// set by whoever publishes a new inventory, increasing per reload.
    generation: u64,
    /// systems.toml's `[boot_domains]`: (domain, network, prefix length),
    /// longest prefix first.
    boot_domains: Vec<(String, Ipv4Addr, u8)>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("systems", &self.systems.len())
            .field("profiles", &self.profiles.len())
            .field("generation", &self.generation)
            .finish()
    }
}

impl Inventory {
    pub(crate) fn new(
        mut systems: Vec<System>,
        profiles: BTreeMap<String, Profile>,
        templates: Templates,
        urls: Urls,
    ) -> Inventory {
        systems.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = HashMap::with_capacity(systems.len());
        let mut by_mac = HashMap::with_capacity(systems.len());
        let mut by_ip = HashMap::with_capacity(systems.len());
        for (i, s) in systems.iter().enumerate() {
            by_name.insert(s.name.clone(), i);
            by_ip.insert(s.ip, i);
            for m in &s.macs {
                by_mac.insert(*m, i);
            }
        }
        Inventory {
            systems,
            by_name,
            by_mac,
            by_ip,
            profiles,
            templates,
            urls,
            generation: 0,
            boot_domains: Vec::new(),
        }
    }

    /// The subnets of the boot domains (`[boot_domains]`, checked).
    pub(crate) fn set_boot_domains(&mut self, mut d: Vec<(String, Ipv4Addr, u8)>) {
        d.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        self.boot_domains = d;
    }

    /// A system's boot domain (which daemons claim its runs): its var
    /// `boot_domain`, else the domain whose subnet holds its address (the
    /// longest prefix), else "default".
    pub fn boot_domain(&self, s: &System) -> String {
        if let Some(d) = s.vars.get("boot_domain").and_then(|v| v.as_str()) {
            return d.to_string();
        }
        let ip = u32::from(s.ip);
        self.boot_domains
            .iter()
            .find(|(_, net, len)| {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                ip & mask == u32::from(*net) & mask
            })
            .map(|(d, _, _)| d.clone())
            .unwrap_or_else(|| "default".to_string())
    }

    /// The reload generation this snapshot was published as (0: unpublished).
    /// Caches keyed on "which inventory" use it, never the snapshot's address.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Set by the publisher (`daemon::Reloader`) before the snapshot goes out.
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// An inventory with nothing in it (before the first good load in tests).
    pub fn empty(urls: Urls) -> Inventory {
        Inventory::new(Vec::new(), BTreeMap::new(), Templates::empty(), urls)
    }

    pub fn systems(&self) -> &[System] {
        &self.systems
    }

    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    pub fn system(&self, name: &str) -> Option<&System> {
        self.by_name.get(name).map(|&i| &self.systems[i])
    }

    pub fn by_mac(&self, mac: &Mac) -> Option<&System> {
        self.by_mac.get(mac).map(|&i| &self.systems[i])
    }

    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&System> {
        self.by_ip.get(ip).map(|&i| &self.systems[i])
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The profile a system uses (always present in a validated inventory).
    pub fn profile_of(&self, s: &System) -> &Profile {
        &self.profiles[&s.profile]
    }
}
