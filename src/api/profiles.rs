//! Profiles as the API shows them, inheritance resolved.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /api/v1/profiles[/{name}]`, the admin answers, `profiles list --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub parent: Option<String>,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub kernel: String,
    pub initrd: Vec<String>,
    pub kernel_args: String,
    pub installer: String,
    pub template: Option<String>,
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub vendor_data: Option<String>,
    pub wait_ports: Vec<u16>,
    /// The installer reboots into the installed system after its callback.
    pub reboots: bool,
    /// Power-cycles again on a missed boot deadline before the run fails.
    #[serde(default)]
    pub boot_retries: u32,
    /// `ipxe` or `grub` (UEFI x64 PXE clients get Debian's signed shim and GRUB).
    #[serde(default = "ipxe")]
    pub loader: String,
    /// `local` or `netboot` (keeps netbooting the image after the run).
    #[serde(default = "local")]
    pub after_install: String,
    pub stages: Vec<Stage>,
    pub timeouts_secs: Timeouts,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Field → the profile in the chain that set it.
    pub origin: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    /// `config` or `test`.
    pub kind: String,
    pub command: String,
    pub timeout_secs: u64,
    pub keep_going: bool,
    /// `before` (before the boot device is set) or `after`.
    #[serde(default = "after")]
    pub when: String,
}

fn after() -> String {
    "after".into()
}

fn ipxe() -> String {
    "ipxe".into()
}

fn local() -> String {
    "local".into()
}

/// Phase deadlines, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    pub power: u64,
    pub dhcp: u64,
    pub kernel: u64,
    pub config: u64,
    pub install: u64,
    pub reboot: u64,
    pub ssh: u64,
}
