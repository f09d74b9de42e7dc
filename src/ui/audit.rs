//! The audit page (`/ui/audit`): who changed what, newest first, with the
//! before → after of each edited system or profile. Paged by entry id
//! (`?before=ID`), filtered by target (`?target=NAME`), like the API.

use super::{fmt_time, query_or_400, QueryArg, Req, S};
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// Entries per page.
pub const PAGE: u32 = 50;

pub async fn page(State(ui): S, headers: HeaderMap, ext: Extensions, q: QueryArg) -> Response {
    let req = Req::new(&headers, &ext);
    let q = match query_or_400(&ui, q) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let before = get("before").and_then(|v| v.parse().ok()).unwrap_or(0);
    let target = get("target").filter(|t| !t.is_empty());
    let entries = match ui.ctx.store.audit(before, PAGE, target.as_deref()).await {
        Ok(e) => e,
        Err(e) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let changes: Vec<Value> = e
                .detail
                .get("changes")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().map(change_row).collect())
                .unwrap_or_default();
            json!({
                "id": e.id, "at": fmt_time(e.at), "actor": e.actor, "scope": e.scope,
                "via": e.via, "remote": e.remote, "action": e.action, "path": e.path,
                "target": e.target, "status": e.status, "ok": e.status < 400,
                "changes": changes,
                "error": e.detail.get("reload_error").map(|r| r.to_string()),
                "notes": notes(&e.detail),
            })
        })
        .collect();
    let older = (entries.len() as u32 == PAGE).then(|| entries.last().map(|e| e.id));
    ui.render(
        StatusCode::OK,
        &req,
        "audit.html",
        json!({"nav": "audit", "title": "Audit", "rows": rows,
               "target": target, "older": older.flatten()}),
    )
}

/// The rest of an entry's detail (an action, the runs it queued, a
/// reason) as short `key: value` lines.
fn notes(detail: &Value) -> Vec<String> {
    let Some(o) = detail.as_object() else {
        return Vec::new();
    };
    o.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "changes" | "reload_error"))
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            Value::Array(a) => format!(
                "{k}: {}",
                a.iter()
                    .map(|x| x
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            v => format!("{k}: {v}"),
        })
        .collect()
}

/// One changed system or profile: the fields whose values differ.
fn change_row(c: &Value) -> Value {
    let (verb, fields) = crate::api::change_fields(c);
    let fields: Vec<Value> = fields
        .into_iter()
        .map(|(k, b, a)| json!({"key": k, "before": b, "after": a}))
        .collect();
    json!({
        "kind": c.get("kind"), "name": c.get("name"), "verb": verb, "fields": fields,
    })
}
