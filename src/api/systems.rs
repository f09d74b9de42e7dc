//! Systems, and what the API does to one machine: netboot switch, power,
//! boot device.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A system as the API shows it (`GET /api/v1/systems[/{name}]`, the admin
/// answers) and as `systems list|show --json` prints it from the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    pub name: String,
    pub hostname: String,
    pub macs: Vec<String>,
    pub ip: String,
    pub netmask: String,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub profile: String,
    /// The machine's own loader, when it has one (over its profile's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loader: Option<String>,
    /// Never the password.
    pub bmc: Option<Bmc>,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The daemon's run state: in the API's answers, not in the CLI's
    /// (which reads files).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub netboot: Option<Netboot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Netboot {
    /// The machine's next netboot installs (a run is pending, or the manual switch).
    pub netboot: bool,
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bmc {
    /// `ipmi` or `redfish`.
    pub kind: String,
    pub address: String,
    pub username: String,
    /// Where the password is kept: the CLI's view of the files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_source: Option<PasswordSource>,
}

/// `{"file": PATH}` or `{"env": VAR}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordSource {
    File(String),
    Env(String),
}

/// `PUT /api/v1/systems/{name}/netboot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootRequest {
    pub enabled: bool,
    /// Stays on across install-done callbacks (diskless, live machines).
    #[serde(default)]
    pub persistent: bool,
}

/// The answer to `PUT …/netboot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootState {
    pub system: String,
    pub netboot: bool,
    pub run_id: Option<String>,
    #[serde(default)]
    pub persistent: bool,
}

/// `GET /api/v1/systems/{name}/power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerState {
    pub system: String,
    /// `on`, `off`, …
    pub power: String,
}

/// `POST /api/v1/systems/{name}/power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerRequest {
    /// `on|off|cycle|reset|soft`.
    pub op: String,
}

/// The answer to `POST …/power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerDone {
    pub system: String,
    pub op: String,
    pub ok: bool,
}

/// `PUT /api/v1/systems/{name}/bootdev`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootDevRequest {
    /// `pxe` or `disk`.
    pub device: String,
    #[serde(default)]
    pub persistent: bool,
    #[serde(default)]
    pub uefi: bool,
}

/// `GET …/bootdev` and the answer to `PUT …/bootdev` (as read back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootDev {
    pub system: String,
    pub device: String,
    pub persistent: bool,
    pub uefi: bool,
}

/// A machine seen on DHCP whose MAC is not in the inventory
/// (`GET /api/v1/discovered[/{mac}]`, `rackboot discovered --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    pub mac: String,
    /// Client architecture as the firmware gave it (`bios`, `efi-x64`, …).
    pub arch: Option<String>,
    /// Option 60, printable characters only.
    pub vendor_class: Option<String>,
    /// The last request came from iPXE.
    pub ipxe: bool,
    /// Seen by proxyDHCP (port 4011 or a proxy-mode daemon).
    pub proxy: bool,
    /// The relay agent (giaddr) it came through, if relayed.
    pub relay: Option<String>,
    /// The interface the daemon's DHCP is bound to, if named.
    pub interface: Option<String>,
    /// Option 12, printable characters only.
    pub hostname: Option<String>,
    /// Unix milliseconds.
    pub first_seen: i64,
    pub last_seen: i64,
    /// DHCP requests seen.
    pub count: i64,
    /// The hardware facts it reported when it netbooted the inspection
    /// image (`dhcp.inspect_discovered`); absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<super::facts::Facts>,
    /// When it reported them (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts_at: Option<i64>,
}
