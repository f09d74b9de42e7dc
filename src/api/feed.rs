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
