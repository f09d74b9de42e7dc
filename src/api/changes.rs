//! Request bodies of the admin edits: the JSON of `POST`/`PUT /api/v1/systems|profiles`
//! and what the CLI builds from its flags. One definition for the server, the CLI and the tests.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A change to a system. For `add`, `macs`, `ip` and `profile` are needed.
/// For `edit`, only what is given changes: `macs` replaces the list,
/// `add_macs` / `remove_macs` edit it; `unset` removes optional keys
/// (`hostname`, `netmask`, `gateway`, `dns`, `domain`, `bmc`).
/// This is also the JSON body of `POST /api/v1/systems` and `PUT /api/v1/systems/{name}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemChange {
    /// Only in `POST` bodies (the name is in the path otherwise).
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub macs: Option<Vec<String>>,
    #[serde(default)]
    pub add_macs: Vec<String>,
    #[serde(default)]
    pub remove_macs: Vec<String>,
    pub ip: Option<String>,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub dns: Option<Vec<String>>,
    pub domain: Option<String>,
    pub profile: Option<String>,
    pub bmc: Option<BmcChange>,
    /// Template variables to set (a JSON `null` removes one).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub unset_vars: Vec<String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// BMC settings. A password is never accepted inline: `password_file` or `password_env`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcChange {
    pub kind: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// Refused with a clear message (it is here so it is not an "unknown field").
    pub password: Option<serde_json::Value>,
    pub cipher_suites: Option<Vec<u8>>,
    pub insecure_tls: Option<bool>,
    pub system_id: Option<String>,
}

/// A change to a profile. `unset` removes top-level keys (`parent`, `template`,
/// `timeouts`, `stages`, ...). Stages are edited by hand in the file.
/// This is also the JSON body of `POST /api/v1/profiles` and `PUT /api/v1/profiles/{name}`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// Only in `POST` bodies.
    pub name: Option<String>,
    pub parent: Option<String>,
    pub r#abstract: Option<bool>,
    pub description: Option<String>,
    pub kernel: Option<String>,
    pub initrd: Option<Vec<String>>,
    pub kernel_args: Option<String>,
    pub installer: Option<String>,
    pub template: Option<String>,
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub vendor_data: Option<String>,
    pub ipxe_template: Option<String>,
    pub wait_ports: Option<Vec<u16>>,
    /// Whether the installer reboots into the installed system after its callback.
    pub reboots: Option<bool>,
    pub on_interrupted_stage: Option<String>,
    /// Phase deadlines to set, e.g. `install = "30m"`.
    #[serde(default)]
    pub timeouts: BTreeMap<String, String>,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub unset_vars: Vec<String>,
    #[serde(default)]
    pub unset: Vec<String>,
}
