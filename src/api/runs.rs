//! Reimage runs: create, list, detail, cancel, retry.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/runs`: all or none are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRuns {
    pub systems: Vec<String>,
    /// Default: each system's own.
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub requested_by: Option<String>,
    /// `reimage` (default) or `inspect` (netboot the inspection image, store
    /// its hardware facts, power off; the profile defaults to `inspect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The profile an inspection run uses unless told otherwise.
pub const INSPECT_PROFILE: &str = "inspect";

/// The answer to `POST /api/v1/runs` and `POST …/retry` (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsCreated {
    pub runs: Vec<QueuedRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedRun {
    pub id: String,
    pub system: String,
    pub profile: String,
    /// Always `queued`.
    pub state: String,
}

/// A run in `GET /api/v1/runs` (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub system: String,
    pub profile: String,
    /// The phase (`queued` … `succeeded|failed|cancelled|timed_out`).
    pub state: String,
    pub reason: Option<String>,
    pub requested_by: Option<String>,
    pub retry_of: Option<String>,
    /// `reimage` or `inspect`.
    #[serde(default = "reimage")]
    pub kind: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub terminal: bool,
    pub elapsed_s: f64,
}

/// `GET /api/v1/runs/{id}`: the run with its timeline, stages and artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Run,
    pub timeline: Vec<TimelineEntry>,
    pub stages: Vec<StageResult>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Seconds since the run was created, one decimal.
    pub t: f64,
    pub state: String,
    pub detail: String,
    /// The daemon that wrote this step under its lease (several daemons on
    /// one database: who drove the run when).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub seq: i64,
    pub name: String,
    pub kind: String,
    /// `running`, `passed`, `failed`, …
    pub status: String,
    pub exit_code: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The API path of its log.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub path: String,
    pub size: i64,
    pub sha256: String,
    /// The API path to download it.
    pub url: String,
}

/// The answer to `POST /api/v1/runs/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub cancelled: String,
}

fn reimage() -> String {
    "reimage".into()
}
