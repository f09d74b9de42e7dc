//! The queue page (`/ui/queue`): queued runs with their position and time
//! waited, active runs with their phase and time left, the last failures.

use super::{due_of, fmt_dur, fmt_time, phase_class, Req, S};
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// Failures listed.
pub const FAILURES: u32 = 20;

pub async fn page(State(ui): S, headers: HeaderMap, ext: Extensions) -> Response {
    let req = Req::new(&headers, &ext);
    let store = &ui.ctx.store;
    let (active, failures, head) = match (
        store.active_runs().await,
        store.recent_failures(FAILURES).await,
        store.feed_head().await,
    ) {
        (Ok(a), Ok(f), Ok(h)) => (a, f, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    let now = crate::store::now_ms();
    // Oldest first: the engine takes queued runs in that order.
    let queued: Vec<Value> = active
        .iter()
        .filter(|r| r.state == "queued")
        .enumerate()
        .map(|(i, r)| {
            json!({
                "position": i + 1, "id": r.id, "system": r.system, "profile": r.profile,
                "requested_by": r.requested_by, "created": fmt_time(r.created_at),
                "waited": fmt_dur(now - r.created_at),
            })
        })
        .collect();
    let running: Vec<Value> = active
        .iter()
        .filter(|r| r.state != "queued")
        .map(|r| {
            let due = due_of(&r.data);
            json!({
                "id": r.id, "system": r.system, "profile": r.profile, "phase": r.state,
                "class": phase_class(&r.state), "requested_by": r.requested_by,
                "elapsed": fmt_dur(now - r.created_at),
                "due": due, "left": due.map(|d| fmt_dur(d - now)),
                "late": due.is_some_and(|d| d < now),
            })
        })
        .collect();
    let failed: Vec<Value> = failures
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "system": r.system, "profile": r.profile, "state": r.state,
                "class": phase_class(&r.state), "reason": r.reason,
                "finished": r.finished_at.map(fmt_time),
                "ago": r.finished_at.map(|f| fmt_dur(now - f)),
            })
        })
        .collect();
    ui.render(
        StatusCode::OK,
        &req,
        "queue.html",
        json!({
            "nav": "queue",
            "title": "Queue",
            "queued": queued,
            "running": running,
            "failed": failed,
            "feed_head": head,
        }),
    )
}
