//! Hardware facts a machine reports about itself (an inspection image, or
//! an installer's `%pre`), `POST /facts/{mac}?token=…` on the boot listener,
//! `GET /api/v1/systems/{name}/facts`. They come from the machine: untrusted.
//! `facts::check` parses and bounds them; unknown keys are refused.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// MiB of RAM the OS sees.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub dmi: Option<Dmi>,
    /// `bios` or `uefi`.
    #[serde(default)]
    pub firmware: Option<String>,
    #[serde(default)]
    pub secure_boot: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    #[serde(default)]
    pub model: Option<String>,
    /// Logical CPUs.
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    pub size_bytes: u64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub rotational: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    #[serde(default)]
    pub link: Option<bool>,
    /// Mbit/s, when the link is up and the driver says.
    #[serde(default)]
    pub speed_mbps: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dmi {
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub bios_version: Option<String>,
}

/// `GET /api/v1/systems/{name}/facts`: the last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactsReport {
    pub system: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The run whose token the report carried.
    pub run_id: Option<String>,
    pub facts: Facts,
}
