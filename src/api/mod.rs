//! The operator API's JSON contract (`/api/v1`): the request and response
//! bodies, as serde types shared by the server (`http::api*`), the client
//! (`client`, the CLI) and the tests. Field names here are the wire names.
//!
//! The types import nothing from the rest of the crate: they are plain data
//! (strings, numbers, maps). Internal types (`inventory`, `store`, `engine`)
//! do not derive serde; they are converted into these at the edge.

use serde::{Deserialize, Serialize};

/// Header the CLI sets, so the audit trail says `via: cli`.
pub const CLIENT_HEADER: &str = "x-rackboot-client";

pub mod changes;
pub mod facts;
pub mod feed;

/// Every refusal: `{"error": {"code", "message", "errors"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable: `not_found`, `bad_request`, `unauthorized`, `invalid_config`, …
    pub code: String,
    pub message: String,
    /// One per problem, where the refusal is about files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// One configuration problem: the file, the key in it, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub file: String,
    pub key: String,
    pub reason: String,
    /// Admin edits: the problem was already in the files before the edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preexisting: Option<bool>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ApiError {
                code: code.into(),
                message: message.into(),
                errors: None,
            },
        }
    }
}

pub mod files;
pub mod profiles;
pub mod runs;
pub mod systems;

pub mod convert;

pub use files::{
    CheckProfile, CheckSummary, CheckSystem, DaemonReport, EditReport, ProfileShow, Refusal,
    SystemRow,
};
pub use profiles::{Profile, Stage, Timeouts};
pub use runs::{
    Artifact, Cancelled, CreateRuns, QueuedRun, Run, RunDetail, RunsCreated, StageResult,
    TimelineEntry,
};
pub use systems::{
    Bmc, BootDev, BootDevRequest, Discovered, Netboot, NetbootRequest, NetbootState,
    PasswordSource, PowerDone, PowerRequest, PowerState, System,
};

/// `GET /api/v1/status`. The counters are the subsystems' own snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub systems: usize,
    pub profiles: usize,
    /// The inventory's generation: 1 at start, +1 per successful reload.
    pub generation: u64,
    pub netboot_pending: usize,
    pub http: serde_json::Value,
    pub protocols: serde_json::Value,
    pub engine: serde_json::Value,
    /// The shared inventory (PostgreSQL only): the version served and how
    /// the last poll of the database went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedInventory>,
}

/// `GET /api/v1/daemons`: the site's daemon ids (one per start of a node),
/// oldest first, from the database every daemon shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Daemon {
    /// `NODE#N`: the node name and this start of it.
    pub id: String,
    pub node: String,
    pub domains: Vec<String>,
    /// Times in ms since the epoch (the database's clock).
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Fenced ids own nothing and act on nothing (stopped, restarted, or
    /// silent past the lease TTL and fenced by a peer).
    pub fenced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_by: Option<String>,
    /// Unfinished runs it owns.
    pub runs: i64,
    /// Whether this is the daemon that answered.
    pub this: bool,
}

/// Where a daemon stands with the shared inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedInventory {
    /// The version the daemon serves.
    pub version: i64,
    /// When the database last answered a poll (ms since the epoch).
    pub checked_at: i64,
    /// Why the last poll or load failed; None once one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to `POST /api/v1/reload` (422 with an [`ErrorBody`] otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reloaded {
    pub reloaded: bool,
    pub generation: u64,
    pub systems: usize,
    pub profiles: usize,
}

/// The answer to the admin API's changes (`POST|PUT|DELETE /api/v1/systems…`,
/// `…/profiles…`): 201 when created, else 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// Something was written.
    pub changed: bool,
    /// The daemon's inventory generation after the change.
    pub generation: u64,
    /// The files are written, yet the daemon kept its previous inventory: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<ApiError>,
    #[serde(flatten)]
    pub object: Edited,
}

/// What an edit was about: `"system": {…}|null`, `"profile": {…}|null` or
/// `"removed": NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edited {
    System(Option<System>),
    Profile(Option<Profile>),
    Removed(String),
}

/// One entry of the audit trail (`GET /api/v1/audit`, `rackboot audit`): a
/// change made through the API, the CLI or the UI, or a reload by signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// The token's name (`SIGHUP` for a reload by signal).
    pub actor: String,
    /// The token's scope.
    pub scope: String,
    /// `api`, `cli`, `ui` or `signal`.
    pub via: String,
    /// The client's address ("" when there is none).
    pub remote: String,
    /// Method and route template, e.g. `PUT /api/v1/systems/{name}`.
    pub action: String,
    /// The request's path, e.g. `/api/v1/systems/node7`.
    pub path: String,
    /// What it acted on (a system, a run, ...), "" when the handler did not say.
    pub target: String,
    /// The answer's HTTP status (refusals are recorded too).
    pub status: u16,
    /// What changed: `{"changes": [{"kind", "name", "before", "after"}]}` for
    /// edits and reloads, the request's outcome for runs and power.
    pub detail: serde_json::Value,
}

/// `GET /api/v1/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// One system or profile a reload changed (audit detail): `before` null for
/// an addition, `after` null for a removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// `system` or `profile`.
    pub kind: String,
    pub name: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit detail's change (a `ConfigChange` as JSON): `added`, `removed`
/// or `changed`, and for a change each differing field as
/// (key, before, after), values as JSON text.
pub fn change_fields(c: &serde_json::Value) -> (&'static str, Vec<(String, String, String)>) {
    let obj = |k: &str| c.get(k).and_then(serde_json::Value::as_object);
    let (before, after) = (obj("before"), obj("after"));
    let verb = match (before, after) {
        (None, Some(_)) => "added",
        (Some(_), None) => "removed",
        _ => "changed",
    };
    let mut fields = Vec::new();
    if let (Some(b), Some(a)) = (before, after) {
        let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        for k in keys {
            let (x, y) = (b.get(k), a.get(k));
            if x != y {
                let show = |v: Option<&serde_json::Value>| {
                    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
                };
                fields.push((k.clone(), show(x), show(y)));
            }
        }
    }
    (verb, fields)
}
