//! The webhooks page (`/ui/webhooks`): each webhook's (and the MQTT
//! publisher's) delivery state, as `GET /api/v1/webhooks` gives it: how far
//! the receiver has acknowledged, the backlog behind it, failed attempts,
//! the last error and when the next attempt is due.

use super::{fmt_dur, fmt_time, Req, S};
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

pub async fn page(State(ui): S, headers: HeaderMap, ext: Extensions) -> Response {
    let req = Req::new(&headers, &ext);
    let now = crate::store::now_ms();
    let rows: Vec<Value> = crate::http::api_runs::delivery_status(&ui.ctx)
        .iter()
        .map(|w| {
            let backlog = (w.feed_head - w.delivered_through).max(0);
            let state = match (w.attempts, backlog) {
                (0, 0) => "ok",
                (0, _) => "run",
                _ => "bad",
            };
            json!({
                "name": w.name, "url": w.url,
                "events": if w.events.is_empty() { "all".to_string() } else { w.events.join(", ") },
                "through": w.delivered_through, "head": w.feed_head, "backlog": backlog,
                "delivered": w.delivered, "attempts": w.attempts, "error": w.last_error,
                "last": w.last_attempt_at.map(fmt_time),
                "next": w.next_attempt_at.map(|t| if t > now { format!("in {}", fmt_dur(t - now)) } else { "now".into() }),
                "state": state,
            })
        })
        .collect();
    ui.render(
        StatusCode::OK,
        &req,
        "webhooks.html",
        json!({"nav": "webhooks", "title": "Webhooks", "rows": rows}),
    )
}
