//! The operator API (`/api/v1`, JSON) on its own listener. Reads snapshots;
//! changes go through the engine or the reloader. Anything that changes state
//! needs `Authorization: Bearer <token>`. Secrets never appear in responses.

use crate::api;
use crate::auth::Scope;
use crate::boot::BootTable;
use crate::engine::EngineHandle;
use crate::http::boot::HttpStats;
use crate::http::guard::{AuditNote, Guarded, Routes};
use crate::inventory::{Inventory, Profile, System};
use crate::reload::Reloader;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct ApiContext {
    pub power: Arc<crate::power::Power>,
    pub store: crate::store::Store,
    pub data_dir: std::path::PathBuf,
    pub inventory: watch::Receiver<Arc<Inventory>>,
    pub table: watch::Receiver<Arc<BootTable>>,
    pub engine: EngineHandle,
    pub reloader: Arc<Reloader>,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    pub mqtt: Option<Arc<crate::mqtt::MqttPublisher>>,
    pub auth: Arc<crate::auth::Auth>,
    pub http_stats: Arc<HttpStats>,
    pub extra_stats: Arc<dyn Fn() -> Value + Send + Sync>,
}

/// The operator API's routes, with the scope each needs (see `guard`).
/// Every GET needs `read`; runs, power, boot device and netboot `operate`;
/// edits and reload `admin`.
pub fn routes() -> Routes<ApiContext> {
    let r = Routes::new()
        .public(Method::GET, "/healthz", || async { "ok\n" })
        .get("/api/v1/status", status)
        .get("/api/v1/systems", list_systems)
        .get("/api/v1/systems/{name}", get_system)
        .get("/api/v1/systems/{name}/facts", get_facts)
        .put(
            "/api/v1/systems/{name}/netboot",
            Scope::Operate,
            set_netboot,
        )
        .get("/api/v1/profiles", list_profiles)
        .get("/api/v1/profiles/{name}", get_profile)
        .post("/api/v1/reload", Scope::Admin, reload)
        .get("/api/v1/systems/{name}/power", power_status)
        .post("/api/v1/systems/{name}/power", Scope::Operate, power_op)
        .get("/api/v1/systems/{name}/bootdev", bootdev_get)
        .put(
            "/api/v1/systems/{name}/bootdev",
            Scope::Operate,
            bootdev_set,
        )
        .get("/api/v1/audit", audit)
        .get("/api/v1/daemons", daemons);
    let r = super::api_runs::routes(r);
    let r = super::api_discovered::routes(r);
    crate::http::api_admin::routes(r)
}

pub fn router(ctx: ApiContext) -> Guarded {
    routes().with_state(ctx)
}

/// The API in front of a daemon on the shared inventory: while the
/// database is unreachable, a change (any method but GET and HEAD) is
/// answered at once with 503 and the reason, and a read that failed on the
/// database says the same instead of a bare 500. Reads the daemon answers
/// from its snapshot (systems, profiles, status) keep working.
pub async fn database_unavailable(
    axum::extract::State(sh): axum::extract::State<std::sync::Arc<crate::shared::Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{Method, StatusCode};
    let down = |st: &crate::shared::SyncStatus| {
        st.error.as_ref().map(|e| {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                format!(
                    "the database is unreachable ({e}); boot services keep serving inventory version {}; retry when it is back",
                    st.version
                ),
            );
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
            r
        })
    };
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if !read {
        if let Some(r) = down(&sh.status()) {
            return r;
        }
    }
    let r = next.run(req).await;
    if r.status() == StatusCode::INTERNAL_SERVER_ERROR {
        if let Some(r) = down(&sh.status()) {
            return r;
        }
    }
    r
}

/// A JSON error body with a stable code.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(api::ErrorBody::new(code, message))).into_response()
}

/// A JSON body of one of the `api` request types; anything else is a 400
/// saying what was `expected`.
pub fn parse<T: serde::de::DeserializeOwned>(v: Value, expected: &str) -> Result<T, Response> {
    serde_json::from_value(v).map_err(|_| error(StatusCode::BAD_REQUEST, "bad_request", expected))
}

impl ApiContext {
    /// A JSON body; a missing or malformed one is a 400 saying what was
    /// `expected`. (Who may call is the guard's business, before this.)
    pub fn body_or(&self, body: Option<Json<Value>>, expected: &str) -> Result<Value, Response> {
        body.map(|Json(v)| v)
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_request", expected))
    }
}

/// A system as the daemon has it: the files' view and its run state.
pub fn system(s: &System, table: &BootTable) -> api::System {
    let run = table.get(&s.name);
    api::System {
        netboot: Some(api::Netboot {
            netboot: run.is_some(),
            run_id: run.map(|r| r.id.clone()),
        }),
        ..api::System::from(s)
    }
}

pub fn profile(p: &Profile) -> api::Profile {
    api::Profile::from(p)
}

async fn status(State(ctx): State<ApiContext>) -> Json<api::Status> {
    let inv = ctx.inventory.borrow().clone();
    Json(api::Status {
        systems: inv.systems().len(),
        profiles: inv.profiles().len(),
        generation: ctx.reloader.generation(),
        netboot_pending: ctx.table.borrow().len(),
        http: ctx.http_stats.snapshot(),
        protocols: (ctx.extra_stats)(),
        engine: ctx.engine.metrics.snapshot(),
        shared: ctx.reloader.shared().map(|s| s.status()),
    })
}

async fn list_systems(State(ctx): State<ApiContext>) -> Json<Vec<api::System>> {
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    Json(inv.systems().iter().map(|s| system(s, &table)).collect())
}

async fn get_system(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    match inv.system(&name) {
        Some(s) => Json(system(s, &table)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        ),
    }
}

/// The system's last hardware facts report (404 if it has none).
pub async fn facts_of(
    ctx: &ApiContext,
    name: &str,
) -> Result<Option<api::facts::FactsReport>, String> {
    let Some(row) = ctx.store.facts(name).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let facts = serde_json::from_str(&row.data).map_err(|e| e.to_string())?;
    Ok(Some(api::facts::FactsReport {
        system: row.system,
        at: row.at,
        run_id: row.run_id,
        facts,
    }))
}

async fn get_facts(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    if ctx.inventory.borrow().system(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        );
    }
    match facts_of(&ctx, &name).await {
        Ok(Some(f)) => Json(f).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{name} has reported no facts yet (rackboot inspect, or POST {{urls.facts}} from its installer)"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn list_profiles(State(ctx): State<ApiContext>) -> Json<Vec<api::Profile>> {
    let inv = ctx.inventory.borrow().clone();
    Json(inv.profiles().values().map(profile).collect())
}

async fn get_profile(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let inv = ctx.inventory.borrow().clone();
    match inv.profile(&name) {
        Some(p) => Json(profile(p)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no profile {name:?}"),
        ),
    }
}

async fn set_netboot(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let body = match ctx.body_or(body, "expected a JSON body {\"enabled\": true|false}") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (on, persistent) = match parse::<api::NetbootRequest>(
        body,
        "expected {\"enabled\": true|false, \"persistent\": false}",
    ) {
        Ok(b) => (b.enabled, b.persistent),
        Err(r) => return r,
    };
    if ctx.inventory.borrow().system(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        );
    }
    match ctx.engine.set_netboot(&name, on, persistent).await {
        Ok(st) => Json(api::NetbootState {
            system: st.system,
            netboot: st.enabled,
            run_id: st.run_id,
            persistent: st.persistent,
        })
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e),
    }
}

async fn reload(State(ctx): State<ApiContext>) -> Response {
    let reloader = ctx.reloader.clone();
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(Ok(r)) => {
            let (target, detail) = (r.audit_target(), r.audit_detail());
            let answer = Json(api::Reloaded {
                reloaded: true,
                generation: r.generation,
                systems: r.systems,
                profiles: r.profiles,
            });
            AuditNote::attach(answer.into_response(), target, detail)
        }
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(api::ErrorBody::from(&e)),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

fn power_error(e: crate::power::PowerError) -> Response {
    use crate::power::PowerError as E;
    let (status, code) = match &e {
        E::Unreachable(_) | E::CircuitOpen(_) => (StatusCode::GATEWAY_TIMEOUT, "bmc_unreachable"),
        E::Auth(_) | E::Secret(_) => (StatusCode::BAD_GATEWAY, "bmc_auth"),
        E::Rejected(_) | E::NotApplied(_) | E::Other(_) => (StatusCode::BAD_GATEWAY, "bmc_error"),
        E::Unsupported(_) | E::NoBmc(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported"),
    };
    error(status, code, e.to_string())
}

fn bmc_of(ctx: &ApiContext, name: &str) -> Result<crate::inventory::Bmc, Response> {
    let inv = ctx.inventory.borrow().clone();
    let s = inv.system(name).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        )
    })?;
    s.bmc
        .clone()
        .ok_or_else(|| power_error(crate::power::PowerError::NoBmc(name.to_string())))
}

async fn power_status(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.status(&bmc).await {
        Ok(st) => Json(api::PowerState {
            system: name,
            power: st.as_str().to_string(),
        })
        .into_response(),
        Err(e) => power_error(e),
    }
}

async fn power_op(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let op = body
        .and_then(|Json(b)| serde_json::from_value::<api::PowerRequest>(b).ok())
        .and_then(|b| crate::power::PowerOp::parse(&b.op));
    let Some(op) = op else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {\"op\": \"on|off|cycle|reset|soft\"}",
        );
    };
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.power(&bmc, op).await {
        Ok(()) => Json(api::PowerDone {
            system: name,
            op: op.as_str().to_string(),
            ok: true,
        })
        .into_response(),
        Err(e) => power_error(e),
    }
}

fn bootdev(name: &str, b: &crate::power::BootSpec) -> api::BootDev {
    let device = match b.dev {
        crate::power::BootDev::Pxe => "pxe",
        crate::power::BootDev::Disk => "disk",
    };
    api::BootDev {
        system: name.to_string(),
        device: device.to_string(),
        persistent: b.persistent,
        uefi: b.efi,
    }
}

async fn bootdev_get(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.get_boot(&bmc).await {
        Ok(b) => Json(bootdev(&name, &b)).into_response(),
        Err(e) => power_error(e),
    }
}

async fn bootdev_set(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    const EXPECTED: &str =
        "expected {\"device\": \"pxe|disk\", \"persistent\": bool, \"uefi\": bool}";
    let b = match ctx
        .body_or(body, EXPECTED)
        .and_then(|b| parse::<api::BootDevRequest>(b, EXPECTED))
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let dev = match b.device.as_str() {
        "pxe" => crate::power::BootDev::Pxe,
        "disk" => crate::power::BootDev::Disk,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "device must be pxe or disk",
            )
        }
    };
    let spec = crate::power::BootSpec {
        dev,
        persistent: b.persistent,
        efi: b.uefi,
    };
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.set_boot(&bmc, spec).await {
        Ok(()) => Json(bootdev(&name, &spec)).into_response(),
        Err(e) => power_error(e),
    }
}

/// `GET /api/v1/audit?limit=N&before=ID&target=NAME`: the audit trail,
/// newest first (`before`: page on from an entry's id).
async fn audit(
    State(ctx): State<ApiContext>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let limit = num("limit").unwrap_or(100).clamp(1, 1000) as u32;
    let before = num("before").unwrap_or(0);
    match ctx
        .store
        .audit(before, limit, q.get("target").map(String::as_str))
        .await
    {
        Ok(entries) => Json(api::AuditPage { entries }).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// The site's daemons (`GET /api/v1/daemons`), from the shared database.
async fn daemons(State(ctx): State<ApiContext>) -> Response {
    let me = ctx.engine.daemon_id();
    match ctx.store.daemons().await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|d| api::Daemon {
                    this: d.id == me,
                    domains: d.domains.split(',').map(String::from).collect(),
                    id: d.id,
                    node: d.node,
                    started_at: d.started_at,
                    heartbeat_at: d.heartbeat_at,
                    fenced: d.fenced,
                    fenced_at: d.fenced_at,
                    fenced_by: d.fenced_by,
                    runs: d.runs,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
