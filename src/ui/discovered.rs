//! The discovered page (`/ui/discovered`): machines seen on DHCP whose MAC
//! is not in the inventory (`GET /api/v1/discovered`), each with a form to
//! add it as a system (`POST /api/v1/systems` with `from_discovered`, the
//! same path as `rackboot systems add --from-discovered`) or to forget it.

use super::{field, fmt_dur, fmt_time, redirect_with, FormBody, Req, S};
use crate::api::changes::SystemChange;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// Rows shown.
pub const SHOWN: u32 = 500;

pub async fn page(State(ui): S, headers: HeaderMap, ext: Extensions) -> Response {
    let req = Req::new(&headers, &ext);
    let list = match crate::http::api_discovered::discovered(&ui.ctx, SHOWN).await {
        Ok(l) => l,
        Err(_) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                "The discovered machines could not be read.",
            )
        }
    };
    let now = crate::store::now_ms();
    let rows: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "mac": d.mac, "arch": d.arch, "ipxe": d.ipxe, "proxy": d.proxy,
                "vendor_class": d.vendor_class, "hostname": d.hostname, "relay": d.relay,
                "interface": d.interface, "count": d.count,
                "first": fmt_time(d.first_seen), "last": fmt_time(d.last_seen),
                "ago": fmt_dur(now - d.last_seen),
                "first_ago": fmt_dur(now - d.first_seen),
            })
        })
        .collect();
    let inv = ui.ctx.inventory.borrow().clone();
    let profiles: Vec<&String> = inv
        .profiles()
        .iter()
        .filter(|(_, p)| !p.is_abstract)
        .map(|(n, _)| n)
        .collect();
    ui.render(
        StatusCode::OK,
        &req,
        "discovered.html",
        json!({
            "nav": "discovered", "title": "Discovered",
            "rows": rows, "shown": SHOWN, "profiles": profiles,
        }),
    )
}

/// "Add as system": name, IP and profile from the form, the MAC (and arch)
/// from the record.
pub async fn adopt(State(ui): S, headers: HeaderMap, ext: Extensions, form: FormBody) -> Response {
    let (_req, form) = match super::posted(&ui, &headers, &ext, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |k: &str| field(&form, k).map(str::trim).filter(|v| !v.is_empty());
    let (Some(mac), Some(name)) = (get("mac"), get("name")) else {
        return redirect_with(Some("/ui/discovered"), "Give the new system a name.");
    };
    let ch = SystemChange {
        name: Some(name.to_string()),
        ip: get("ip").map(String::from),
        profile: get("profile").map(String::from),
        hostname: get("hostname").map(String::from),
        from_discovered: Some(mac.to_string()),
        ..SystemChange::default()
    };
    let r = crate::http::api_admin::add_system(ui.ctx.clone(), ch).await;
    if r.status() == StatusCode::CREATED {
        let mut back = redirect_with(
            Some(&format!("/ui/machines/{}", super::pct_encode(name))),
            &format!("Added {name} ({mac}) from discovery."),
        );
        // The guard's audit row reads the note on the answer it gets.
        if let Some(n) = r.extensions().get::<crate::http::guard::AuditNote>() {
            back.extensions_mut().insert(n.clone());
        }
        return back;
    }
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let why = serde_json::from_slice::<crate::api::ErrorBody>(&body)
        .map(|e| {
            let mut m = e.error.message;
            for f in e.error.errors.unwrap_or_default() {
                m.push_str(&format!("; {}: {}", f.key, f.reason));
            }
            m
        })
        .unwrap_or_else(|_| format!("HTTP {status}"));
    redirect_with(
        Some("/ui/discovered"),
        &format!("{name} was not added: {why}"),
    )
}

/// "Forget": the record goes (it comes back if the machine asks again).
pub async fn forget(State(ui): S, headers: HeaderMap, ext: Extensions, form: FormBody) -> Response {
    let (_req, form) = match super::posted(&ui, &headers, &ext, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(mac) = field(&form, "mac") else {
        return redirect_with(Some("/ui/discovered"), "No MAC given.");
    };
    let flash = match ui.ctx.store.remove_discovered(mac).await {
        Ok(true) => format!("Forgot {mac}."),
        Ok(false) => format!("{mac} was not recorded."),
        Err(e) => format!("{mac} could not be forgotten: {e}"),
    };
    redirect_with(Some("/ui/discovered"), &flash)
}
