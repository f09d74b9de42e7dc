//! The operator API (`/api/v1`, JSON) on its own listener. Reads snapshots;
//! changes go through the engine or the reloader. Anything that changes state
//! needs `Authorization: Bearer <token>`. Secrets never appear in responses.

use crate::boot::BootTable;
use crate::config::ConfigErrors;
use crate::engine::EngineHandle;
use crate::http::boot::HttpStats;
use crate::inventory::{Inventory, Profile, System};
use crate::reload::Reloader;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
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
    pub tokens: Arc<Vec<String>>,
    pub http_stats: Arc<HttpStats>,
    pub extra_stats: Arc<dyn Fn() -> Value + Send + Sync>,
}

pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/systems", get(list_systems))
        .route("/api/v1/systems/{name}", get(get_system))
        .route("/api/v1/systems/{name}/netboot", put(set_netboot))
        .route("/api/v1/profiles", get(list_profiles))
        .route("/api/v1/profiles/{name}", get(get_profile))
        .route("/api/v1/reload", post(reload))
        .route(
            "/api/v1/systems/{name}/power",
            get(power_status).post(power_op),
        )
        .route(
            "/api/v1/systems/{name}/bootdev",
            get(bootdev_get).put(bootdev_set),
        )
        .with_state(ctx.clone())
        .merge(super::api_runs::router(ctx.clone()))
        .merge(crate::http::api_admin::router(ctx))
}

/// A JSON error body with a stable code.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

impl ApiContext {
    /// Check the bearer token. No configured token = every change refused.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if self.tokens.is_empty() {
            return Err(error(
                StatusCode::FORBIDDEN,
                "no_token_configured",
                "no API token is configured: changes are refused",
            ));
        }
        let ok = !given.is_empty()
            && self
                .tokens
                .iter()
                .any(|t| super::boot::constant_time_eq(t.as_bytes(), given.as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            ))
        }
    }

    /// The bearer token, then a JSON body; a missing or malformed body is a
    /// 400 saying what was `expected`.
    pub fn authorized_body(
        &self,
        headers: &HeaderMap,
        body: Option<Json<Value>>,
        expected: &str,
    ) -> Result<Value, Response> {
        self.authorize(headers)?;
        body.map(|Json(v)| v)
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_request", expected))
    }
}

pub fn system_json(s: &System, table: &BootTable) -> Value {
    let run = table.get(&s.name);
    json!({
        "name": s.name,
        "hostname": s.hostname,
        "macs": s.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "ip": s.ip.to_string(),
        "netmask": s.netmask.to_string(),
        "gateway": s.gateway.map(|g| g.to_string()),
        "dns": s.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "domain": s.domain,
        "profile": s.profile,
        // Never the password, nor where it is kept.
        "bmc": s.bmc.as_ref().map(|b| json!({
            "kind": b.kind.as_str(),
            "address": b.address,
            "username": b.username,
        })),
        "vars": serde_json::to_value(&s.vars).unwrap_or_default(),
        "netboot": run.is_some(),
        "run_id": run.map(|r| r.id.clone()),
    })
}

pub fn profile_json(p: &Profile) -> Value {
    json!({
        "name": p.name,
        "description": p.description,
        "parent": p.parent,
        "abstract": p.is_abstract,
        "kernel": p.kernel,
        "initrd": p.initrd,
        "kernel_args": p.kernel_args,
        "installer": p.installer.as_str(),
        "template": p.template,
        "user_data": p.user_data,
        "meta_data": p.meta_data,
        "vendor_data": p.vendor_data,
        "wait_ports": p.wait_ports,
        "stages": p.stages.iter().map(|s| json!({
            "name": s.name, "kind": s.kind.as_str(), "command": s.command,
            "timeout_secs": s.timeout.as_secs(), "keep_going": s.keep_going,
        })).collect::<Vec<_>>(),
        "timeouts_secs": {
            "power": p.timeouts.power.as_secs(), "dhcp": p.timeouts.dhcp.as_secs(),
            "kernel": p.timeouts.kernel.as_secs(), "config": p.timeouts.config.as_secs(),
            "install": p.timeouts.install.as_secs(), "reboot": p.timeouts.reboot.as_secs(),
            "ssh": p.timeouts.ssh.as_secs(),
        },
        "vars": serde_json::to_value(&p.vars).unwrap_or_default(),
        "origin": p.origin,
    })
}

pub fn config_errors_json(e: &ConfigErrors) -> Value {
    json!({
        "error": {
            "code": "invalid_config",
            "message": format!("{} configuration error(s)", e.0.len()),
            "errors": e.0.iter().map(|c| json!({"file": c.file, "key": c.key, "reason": c.reason})).collect::<Vec<_>>(),
        }
    })
}

async fn status(State(ctx): State<ApiContext>) -> Json<Value> {
    let inv = ctx.inventory.borrow().clone();
    Json(json!({
        "systems": inv.systems().len(),
        "profiles": inv.profiles().len(),
        "generation": ctx.reloader.generation(),
        "netboot_pending": ctx.table.borrow().len(),
        "http": ctx.http_stats.snapshot(),
        "protocols": (ctx.extra_stats)(),
        "engine": ctx.engine.metrics.snapshot(),
    }))
}

async fn list_systems(State(ctx): State<ApiContext>) -> Json<Value> {
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    Json(Value::Array(
        inv.systems()
            .iter()
            .map(|s| system_json(s, &table))
            .collect(),
    ))
}

async fn get_system(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    match inv.system(&name) {
        Some(s) => Json(system_json(s, &table)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        ),
    }
}

async fn list_profiles(State(ctx): State<ApiContext>) -> Json<Value> {
    let inv = ctx.inventory.borrow().clone();
    Json(Value::Array(
        inv.profiles().values().map(profile_json).collect(),
    ))
}

async fn get_profile(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let inv = ctx.inventory.borrow().clone();
    match inv.profile(&name) {
        Some(p) => Json(profile_json(p)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no profile {name:?}"),
        ),
    }
}

async fn set_netboot(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let body = match ctx.authorized_body(
        &headers,
        body,
        "expected a JSON body {\"enabled\": true|false}",
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(on) = body.get("enabled").and_then(Value::as_bool) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {\"enabled\": true|false}",
        );
    };
    if ctx.inventory.borrow().system(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        );
    }
    match ctx.engine.set_netboot(&name, on).await {
        Ok(st) => Json(json!({"system": st.system, "netboot": st.enabled, "run_id": st.run_id}))
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e),
    }
}

async fn reload(State(ctx): State<ApiContext>, headers: HeaderMap) -> Response {
    if let Err(r) = ctx.authorize(&headers) {
        return r;
    }
    let reloader = ctx.reloader.clone();
    match tokio::task::spawn_blocking(move || reloader.reload()).await {
        Ok(Ok(r)) => Json(json!({
            "reloaded": true,
            "generation": r.generation,
            "systems": r.systems,
            "profiles": r.profiles,
        }))
        .into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(config_errors_json(&e)),
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
        Ok(st) => Json(json!({"system": name, "power": st.as_str()})).into_response(),
        Err(e) => power_error(e),
    }
}

async fn power_op(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    if let Err(r) = ctx.authorize(&headers) {
        return r;
    }
    let op = body
        .as_ref()
        .and_then(|b| b.get("op"))
        .and_then(Value::as_str)
        .and_then(crate::power::PowerOp::parse);
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
        Ok(()) => Json(json!({"system": name, "op": op.as_str(), "ok": true})).into_response(),
        Err(e) => power_error(e),
    }
}

fn bootspec_json(name: &str, b: &crate::power::BootSpec) -> Value {
    json!({"system": name, "device": match b.dev { crate::power::BootDev::Pxe => "pxe", crate::power::BootDev::Disk => "disk" },
           "persistent": b.persistent, "uefi": b.efi})
}

async fn bootdev_get(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.get_boot(&bmc).await {
        Ok(b) => Json(bootspec_json(&name, &b)).into_response(),
        Err(e) => power_error(e),
    }
}

async fn bootdev_set(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let b = match ctx.authorized_body(
        &headers,
        body,
        "expected {\"device\": \"pxe|disk\", \"persistent\": bool, \"uefi\": bool}",
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let dev = match b.get("device").and_then(Value::as_str) {
        Some("pxe") => crate::power::BootDev::Pxe,
        Some("disk") => crate::power::BootDev::Disk,
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
        persistent: b
            .get("persistent")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        efi: b.get("uefi").and_then(Value::as_bool).unwrap_or(false),
    };
    let bmc = match bmc_of(&ctx, &name) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx.power.set_boot(&bmc, spec).await {
        Ok(()) => Json(bootspec_json(&name, &spec)).into_response(),
        Err(e) => power_error(e),
    }
}
