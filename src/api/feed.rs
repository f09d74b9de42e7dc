//! The operator feed: `GET /api/v1/events` (SSE, resumable with
//! `Last-Event-ID`) and `GET /api/v1/systems/{name}/history`.

use serde::{Deserialize, Serialize};

/// One stored event. On the SSE stream its `id` is the SSE id and the data
/// line is `data` with `"id"` added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEvent {
    /// Durable, increasing: resume after it.
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `transition`, `observation`, ...
    pub kind: String,
    pub system: Option<String>,
    pub run: Option<String>,
    /// The event as published (`type`, `system`, `run`, `at` and the rest).
    pub data: serde_json::Value,
}

/// `GET /api/v1/systems/{name}/history?before=ID&limit=N`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub system: String,
    pub events: Vec<FeedEvent>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// `GET /api/v1/systems/{name}/diagnosis`: why the last attempt did not boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub system: String,
    /// When the attempt began (ms since the epoch), if anything was seen.
    pub since: Option<i64>,
    /// Whether the attempt is a reimage run (false: a netboot without one).
    pub run: bool,
    pub chain: Vec<DiagnosisStep>,
    /// The first step that never happened (`None`: all did).
    pub first_missing: Option<String>,
    pub cause: Option<String>,
    /// The run's final phase and reason, if it ended.
    pub ended: Option<RunEnd>,
    /// The last attempt's run, when it was a reimage run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The last lines its serial console printed (`console.log`), if captured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub console: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisStep {
    pub step: String,
    pub label: String,
    /// When it was first seen in the attempt.
    pub at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub state: String,
    pub reason: Option<String>,
}

/// `GET /api/v1/webhooks`: each webhook's delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatus {
    pub name: String,
    /// The URL, user info hidden.
    pub url: String,
    /// Event kinds delivered (empty: all).
    pub events: Vec<String>,
    /// The last event id the receiver acknowledged.
    pub delivered_through: i64,
    /// The newest event id the webhook has seen in the feed.
    pub feed_head: i64,
    /// Events delivered since the webhook was added.
    pub delivered: i64,
    /// Failed attempts at the next event (0: nothing pending or it is going fine).
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}
