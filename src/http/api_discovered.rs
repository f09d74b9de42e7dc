//! Discovered machines (`dhcp::discovery`): list, show, dismiss, and the
//! adoption step of `POST /api/v1/systems` with `from_discovered`.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/api/v1/discovered?limit=N` | `[Discovered]`, most recently seen first, MACs now in the inventory left out |
//! | GET | `/api/v1/discovered/{mac}` | `Discovered` (404 if not recorded) |
//! | DELETE | `/api/v1/discovered/{mac}[?adopted_by=NAME]` | 204 (dismiss, or forget once adopted as system NAME: its facts become NAME's; 404 if not recorded) |

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{self, changes::SystemChange};
use crate::auth::Scope;
use crate::http::api::{error, ApiContext};
use crate::http::guard::{AuditNote, Routes};
use crate::model::Mac;
use crate::store::{DiscoveredFactsRow, DiscoveredRow};

/// The most a listing returns.
pub const LIST_MAX: u32 = 10_000;

pub fn routes(r: Routes<ApiContext>) -> Routes<ApiContext> {
    r.get("/api/v1/discovered", list)
        .get("/api/v1/discovered/{mac}", show)
        .delete("/api/v1/discovered/{mac}", Scope::Admin, dismiss)
}

/// A discovered row, with its facts if it reported any (stored JSON that
/// passed `facts::check`; a row that no longer parses is left out, logged).
pub fn wire(r: DiscoveredRow, facts: Option<DiscoveredFactsRow>) -> api::Discovered {
    let (facts, facts_at) = match facts {
        Some(f) => match serde_json::from_str::<api::facts::Facts>(&f.data) {
            Ok(v) => (Some(v), Some(f.at)),
            Err(e) => {
                tracing::warn!(mac = %f.mac, error = %e, "stored facts unreadable: left out");
                (None, None)
            }
        },
        None => (None, None),
    };
    api::Discovered {
        facts,
        facts_at,
        mac: r.mac,
        arch: r.arch,
        vendor_class: r.vendor_class,
        ipxe: r.ipxe,
        proxy: r.proxy,
        relay: r.relay,
        interface: r.interface,
        hostname: r.hostname,
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        count: r.count,
    }
}

/// The recorded machines not (yet) in the inventory, newest first.
pub async fn discovered(ctx: &ApiContext, limit: u32) -> Result<Vec<api::Discovered>, Response> {
    let internal = |e: crate::store::StoreError| {
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let rows = ctx.store.discovered(limit).await.map_err(internal)?;
    let mut facts: HashMap<String, DiscoveredFactsRow> = ctx
        .store
        .all_discovered_facts()
        .await
        .map_err(internal)?
        .into_iter()
        .map(|f| (f.mac.clone(), f))
        .collect();
    let inv = ctx.inventory.borrow().clone();
    Ok(rows
        .into_iter()
        .filter(|r| r.mac.parse::<Mac>().is_ok_and(|m| inv.by_mac(&m).is_none()))
        .map(|r| {
            let f = facts.remove(&r.mac);
            wire(r, f)
        })
        .collect())
}

fn parse_mac(s: &str) -> Result<Mac, Response> {
    s.parse::<Mac>().map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{s:?} is not a MAC address: {e}"),
        )
    })
}

async fn list(State(ctx): State<ApiContext>, Query(q): Query<HashMap<String, String>>) -> Response {
    let limit = match q.get("limit").map(|v| v.parse::<u32>()) {
        None => 1000,
        Some(Ok(n)) if (1..=LIST_MAX).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("limit must be 1..={LIST_MAX}"),
            )
        }
    };
    match discovered(&ctx, limit).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn one(ctx: &ApiContext, mac: &str) -> Result<api::Discovered, Response> {
    let m = parse_mac(mac)?;
    let facts = ctx
        .store
        .discovered_facts(&m.to_string())
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match ctx.store.discovered_one(&m.to_string()).await {
        Ok(Some(r)) => Ok(wire(r, facts)),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{m} has not been discovered (see GET /api/v1/discovered)"),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

async fn show(State(ctx): State<ApiContext>, Path(mac): Path<String>) -> Response {
    match one(&ctx, &mac).await {
        Ok(d) => Json(d).into_response(),
        Err(r) => r,
    }
}

async fn dismiss(
    State(ctx): State<ApiContext>,
    Path(mac): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let d = match one(&ctx, &mac).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let adopted_by = q.get("adopted_by").map(String::as_str);
    if let Some(name) = adopted_by {
        if !crate::config::valid_name(name) {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("adopted_by: {name:?} is not a system name"),
            );
        }
        // Facts go to the system that carries the MAC, never to another.
        let inv = ctx.inventory.borrow().clone();
        if let Some(s) = inv.system(name) {
            if !s.macs.iter().any(|m| m.to_string() == d.mac) {
                return error(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("system {name} does not have the MAC {}", d.mac),
                );
            }
        }
    }
    if let Err(e) = forget(&ctx, &d.mac, adopted_by).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    }
    let note = match adopted_by {
        Some(n) => serde_json::json!({ "adopted": d.mac, "system": n }),
        None => serde_json::json!({ "dismissed": d.mac }),
    };
    AuditNote::attach(
        StatusCode::NO_CONTENT.into_response(),
        format!("discovered/{}", d.mac),
        note,
    )
}

/// Forgets a discovered MAC (and its facts). When it was adopted as system
/// `adopted_by`, the facts it reported become that system's, through the
/// engine (which keeps every system's facts for templates and stages).
pub async fn forget(ctx: &ApiContext, mac: &str, adopted_by: Option<&str>) -> Result<(), String> {
    let (_, facts) = ctx
        .store
        .take_discovered(mac)
        .await
        .map_err(|e| e.to_string())?;
    if let (Some(system), Some(f)) = (adopted_by, facts) {
        match serde_json::from_str::<api::facts::Facts>(&f.data) {
            Ok(v) => ctx.engine.adopted_facts(system, v, f.at).await?,
            Err(e) => tracing::warn!(%mac, error = %e, "stored facts unreadable: not carried over"),
        }
        tracing::info!(%mac, %system, "a discovered machine's facts carried over to its system");
    }
    Ok(())
}

/// `from_discovered` in a `POST /api/v1/systems` body: the record's MAC
/// becomes the system's and its arch the var `arch` (`SystemChange::adopt`).
/// Returns the change to apply and the MAC to forget once it is applied.
pub async fn adopt(
    ctx: &ApiContext,
    mut ch: SystemChange,
) -> Result<(SystemChange, Option<String>), Response> {
    let Some(mac) = ch.from_discovered.take() else {
        return Ok((ch, None));
    };
    let d = one(ctx, &mac).await?;
    ch.adopt(&d)
        .map_err(|m| error(StatusCode::BAD_REQUEST, "bad_request", m))?;
    Ok((ch, Some(d.mac)))
}
