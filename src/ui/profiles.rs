//! The profiles pages: `/ui/profiles` (every profile: parent, installer,
//! kernel, systems) and `/ui/profiles/{name}` (the resolved profile with
//! where each field came from, as `rackboot profiles show` prints it; its
//! stages; its systems; and what it renders for one of them, `?system=NAME
//! &kind=KIND`, with a preview run as `rackboot render` does). Templates get
//! no secrets, so nothing here can show one.

use super::{query_or_400, QueryArg, Req, S};
use crate::api::convert::profile_fields;
use crate::template::{RenderKind, RunCtx};
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

pub async fn list(State(ui): S, headers: HeaderMap, ext: Extensions) -> Response {
    let req = Req::new(&headers, &ext);
    let inv = ui.ctx.inventory.borrow().clone();
    let rows: Vec<Value> = inv
        .profiles()
        .values()
        .map(|p| {
            let n = inv.systems().iter().filter(|s| s.profile == p.name).count();
            json!({
                "name": p.name, "abstract": p.is_abstract, "parent": p.parent,
                "installer": p.installer.as_str(), "kernel": p.kernel,
                "description": p.description, "systems": n,
            })
        })
        .collect();
    ui.render(
        StatusCode::OK,
        &req,
        "profiles.html",
        json!({"nav": "profiles", "title": "Profiles", "profiles": rows}),
    )
}

/// What the render select offers for a profile: its kinds and the kernel line.
fn kinds_of(p: &crate::inventory::Profile) -> Vec<RenderKind> {
    let mut k = p.kinds();
    k.push(RenderKind::KernelArgs);
    k
}

pub async fn page(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    Path(name): Path<String>,
    q: QueryArg,
) -> Response {
    let pairs = match query_or_400(&ui, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let arg = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let req = Req::new(&headers, &ext);
    let inv = ui.ctx.inventory.borrow().clone();
    let Some(p) = inv.profile(&name) else {
        return ui.error(
            StatusCode::NOT_FOUND,
            "Profile not found",
            &format!("There is no profile {name:?}."),
        );
    };
    let kind = match arg("kind") {
        None => None,
        Some(k) => match RenderKind::parse(k) {
            Some(k) => Some(k),
            None => {
                return ui.error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    &format!(
                        "unknown kind {k:?}: expected one of {}",
                        RenderKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
        },
    };
    let systems: Vec<&crate::inventory::System> = inv
        .systems()
        .iter()
        .filter(|s| s.profile == p.name)
        .collect();
    let system = match arg("system") {
        None => systems.first().copied(),
        Some(s) => match systems.iter().find(|x| x.name == s) {
            Some(x) => Some(*x),
            None => {
                let why = if inv.system(s).is_some() {
                    format!("Machine {s:?} does not use profile {:?}.", p.name)
                } else {
                    format!("There is no machine {s:?}.")
                };
                return ui.error(StatusCode::NOT_FOUND, "Machine not found", &why);
            }
        },
    };
    let kinds = kinds_of(p);
    let kind = kind.unwrap_or(if p.template.is_some() {
        RenderKind::Config
    } else {
        RenderKind::Ipxe
    });
    // The same call as `rackboot render SYSTEM KIND`.
    let rendered = system.map(|s| match inv.render(s, kind, &RunCtx::preview()) {
        Ok(Some(text)) => json!({"ok": true, "text": text}),
        Ok(None) => json!({"ok": false, "text": format!(
            "profile {:?} has no {} template", p.name, kind.as_str())}),
        Err(e) => json!({"ok": false, "text": e.to_string()}),
    });
    let fields: Vec<Value> = profile_fields(&inv, p)
        .into_iter()
        .map(|[f, v, from]| {
            json!({"field": f, "value": v, "default": from == "(default)",
                   "inherited": from != p.name && from != "(default)", "from": from})
        })
        .collect();
    let stages: Vec<Value> = p
        .stages
        .iter()
        .map(|s| {
            json!({"name": s.name, "kind": s.kind.as_str(), "command": s.command,
                   "timeout": super::fmt_dur(s.timeout.as_millis() as i64),
                   "keep_going": s.keep_going})
        })
        .collect();
    let children: Vec<&str> = inv
        .profiles()
        .values()
        .filter(|c| c.parent.as_deref() == Some(p.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    // The chain: this profile, its parent, its parent's parent ...
    let mut chain = vec![p.name.clone()];
    let mut cur = p;
    while let Some(parent) = cur.parent.as_deref().and_then(|n| inv.profile(n)) {
        if chain.contains(&parent.name) {
            break;
        }
        chain.push(parent.name.clone());
        cur = parent;
    }
    ui.render(
        StatusCode::OK,
        &req,
        "profile.html",
        json!({
            "nav": "profiles",
            "title": format!("Profile {}", p.name),
            "p": {"name": p.name, "description": p.description, "abstract": p.is_abstract,
                  "parent": p.parent},
            "chain": chain,
            "fields": fields,
            "stages": stages,
            "systems": systems.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "children": children,
            "kinds": kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            "kind": kind.as_str(),
            "system": system.map(|s| s.name.as_str()),
            "rendered": rendered,
        }),
    )
}
