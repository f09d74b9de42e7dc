//! What the CLI prints with `--json` for the commands that work on the
//! files rather than through the daemon (`check`, `systems …`, `profiles …`):
//! the same vocabulary as the API's answers.

use super::{ErrorBody, Profile, System};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `systems list --json`: a system, with `power` under `--power`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemRow {
    #[serde(flatten)]
    pub system: System,
    /// Present under `--power`: the state, `-` without a BMC, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<Option<String>>,
}

/// `profiles show --json`: the profile, where each variable came from, and
/// the systems that use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileShow {
    #[serde(flatten)]
    pub profile: Profile,
    pub vars_origin: BTreeMap<String, String>,
    pub systems: Vec<String>,
}

/// `systems|profiles add|edit|remove --json`, done: what was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditReport {
    /// Always true here (see [`Refusal`]).
    pub ok: bool,
    pub changed: bool,
    /// `added`, `changed`, `removed` or `unchanged`.
    pub action: String,
    pub written: Vec<String>,
    pub rendered: usize,
    pub full_check: bool,
    #[serde(flatten)]
    pub object: super::Edited,
    /// Whether the running daemon reloaded (absent when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonReport>,
}

/// `systems|profiles add|edit|remove --json`, refused: `ok: false` and the reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub ok: bool,
    #[serde(flatten)]
    pub body: ErrorBody,
}

/// After a change: what the daemon said to `POST /api/v1/reload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonReport {
    pub reloaded: bool,
    /// Known only when it did not reload: false = nothing listens there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systems: Option<u64>,
    /// The HTTP status of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
}

/// `check --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub ok: bool,
    pub systems: Vec<CheckSystem>,
    pub profiles: Vec<CheckProfile>,
    pub load_ms: f64,
    /// Files the config names that are not there (`config::missing_files`).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSystem {
    pub name: String,
    pub hostname: String,
    pub macs: Vec<String>,
    pub ip: String,
    pub profile: String,
    /// `KIND ADDRESS`.
    pub bmc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckProfile {
    pub name: String,
    pub parent: Option<String>,
    #[serde(rename = "abstract")]
    pub is_abstract: bool,
    pub installer: String,
    pub kernel: String,
    /// How many.
    pub stages: usize,
}
