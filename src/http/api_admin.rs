//! The admin part of the operator API: create, change and delete systems and
//! profiles. Each request goes through `admin` exactly like the CLI (document
//! edit, whole-inventory validation, the config dir's lock, atomic write),
//! then reloads the daemon's inventory. Behind the API token.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | POST | `/api/v1/systems` | `SystemChange` with `name` | 201 + the system |
//! | PUT | `/api/v1/systems/{name}` | `SystemChange` (only what changes) | 200 + the system |
//! | DELETE | `/api/v1/systems/{name}` | | 200 |
//! | POST | `/api/v1/profiles` | `ProfileChange` with `name` | 201 + the profile |
//! | PUT | `/api/v1/profiles/{name}` | `ProfileChange` | 200 + the profile |
//! | DELETE | `/api/v1/profiles/{name}` | | 200 |
//!
//! Refusals: 409 (name taken, MAC / IP / hostname of another system, profile
//! in use), 422 (invalid result, or the files on disk already invalid), 404,
//! 400 (malformed body); every one with `{file, key, reason}` per problem.

use crate::admin::{self, AdminError, Outcome};
use crate::api;
use crate::api::changes::{ProfileChange, SystemChange};
use crate::auth::Scope;
use crate::http::api::{error, profile, system, ApiContext};
use crate::http::guard::AuditNote;
use crate::http::guard::Routes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub fn routes(r: Routes<ApiContext>) -> Routes<ApiContext> {
    r.post("/api/v1/systems", Scope::Admin, create_system)
        .put("/api/v1/systems/{name}", Scope::Admin, update_system)
        .delete("/api/v1/systems/{name}", Scope::Admin, delete_system)
        .post("/api/v1/profiles", Scope::Admin, create_profile)
        .put("/api/v1/profiles/{name}", Scope::Admin, update_profile)
        .delete("/api/v1/profiles/{name}", Scope::Admin, delete_profile)
}

fn refusal(e: &AdminError) -> Response {
    let status = match e {
        AdminError::Conflict(_) => StatusCode::CONFLICT,
        AdminError::Refused(_) | AdminError::Broken { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Usage(_) => StatusCode::BAD_REQUEST,
        AdminError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(e.to_json())).into_response()
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Response> {
    b.map(|Json(v)| v)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
}

enum Made {
    System(String),
    Profile(String),
    Removed(String),
}

/// Run an edit on a blocking thread, then reload the daemon's inventory from
/// the files just written, and answer with the object as the daemon now has it.
async fn edit(
    ctx: ApiContext,
    created: bool,
    what: Made,
    f: impl FnOnce(&crate::config::Settings) -> Result<Outcome, AdminError> + Send + 'static,
) -> Response {
    let reloader = ctx.reloader.clone();
    let res = tokio::task::spawn_blocking(move || {
        let o = reloader.edit("api", f)?;
        // Reload even when nothing changed on disk is unnecessary; the answer is the same.
        let reload = if o.written.is_empty() {
            None
        } else {
            Some(reloader.reload())
        };
        Ok::<_, AdminError>((o, reload))
    })
    .await;
    let (outcome, reload) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return refusal(&e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    // The object as the daemon now has it (as written, where the reload failed).
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    let target = match &what {
        Made::System(n) | Made::Profile(n) | Made::Removed(n) => n.clone(),
    };
    let object = match what {
        Made::System(n) => api::Edited::System(
            inv.system(&n)
                .or_else(|| outcome.inventory.system(&n))
                .map(|s| system(s, &table)),
        ),
        Made::Profile(n) => api::Edited::Profile(
            inv.profile(&n)
                .or_else(|| outcome.inventory.profile(&n))
                .map(profile),
        ),
        Made::Removed(n) => api::Edited::Removed(n),
    };
    let answer = api::Edit {
        changed: !outcome.written.is_empty(),
        generation: ctx.reloader.generation(),
        // The files are written and valid by the editor's checks, yet the
        // daemon kept its previous inventory: say so, with the reasons.
        reload_error: match &reload {
            Some(Err(e)) => Some(api::ApiError::from(e)),
            _ => None,
        },
        object,
    };
    let status = if created && !outcome.written.is_empty() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let detail = match &reload {
        Some(Ok(r)) => serde_json::json!({ "generation": r.generation, "changes": r.changes }),
        Some(Err(e)) => serde_json::json!({ "reload_error": api::ApiError::from(e) }),
        None => serde_json::json!({ "changes": [] }),
    };
    AuditNote::attach((status, Json(answer)).into_response(), target, detail)
}

type Op<T> = fn(&crate::config::Settings, &str, &T) -> Result<Outcome, AdminError>;

/// POST (the name in the body) or PUT (the name in the path) of a system or
/// a profile: the token, the body, then the edit.
async fn upsert<T: Send + 'static>(
    ctx: ApiContext,
    path_name: Option<String>,
    b: Result<Json<T>, JsonRejection>,
    body_name: fn(&T) -> Option<String>,
    made: fn(String) -> Made,
    op: Op<T>,
) -> Response {
    let ch = match body(b) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let created = path_name.is_none();
    let Some(name) = path_name.or_else(|| body_name(&ch)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body needs \"name\"",
        );
    };
    let n = name.clone();
    edit(ctx, created, made(name), move |s| op(s, &n, &ch)).await
}

/// DELETE of a system or a profile.
async fn delete(
    ctx: ApiContext,
    name: String,
    op: fn(&crate::config::Settings, &str) -> Result<Outcome, AdminError>,
) -> Response {
    let n = name.clone();
    edit(ctx, false, Made::Removed(name), move |s| op(s, &n)).await
}

async fn create_system(
    State(ctx): State<ApiContext>,
    b: Result<Json<SystemChange>, JsonRejection>,
) -> Response {
    match body(b) {
        Ok(ch) => add_system(ctx, ch).await,
        Err(r) => r,
    }
}

/// `POST /api/v1/systems` after its body is parsed (the web UI's "add from
/// discovery" comes here too): `from_discovered` resolved, the edit, the
/// record forgotten once the system is added.
pub async fn add_system(ctx: ApiContext, ch: SystemChange) -> Response {
    let (ch, adopted) = match crate::http::api_discovered::adopt(&ctx, ch).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = |c: &SystemChange| c.name.clone();
    let (ctx2, added) = (ctx.clone(), ch.name.clone().unwrap_or_default());
    let r = upsert(
        ctx,
        None,
        Ok(Json(ch)),
        name,
        Made::System,
        admin::add_system,
    )
    .await;
    if let Some(mac) = adopted {
        if r.status() == StatusCode::CREATED {
            if let Err(e) = crate::http::api_discovered::forget(&ctx2, &mac, Some(&added)).await {
                tracing::warn!(%mac, error = %e, "added from discovery, but the record stays");
            }
        }
    }
    r
}

async fn update_system(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    b: Result<Json<SystemChange>, JsonRejection>,
) -> Response {
    if matches!(&b, Ok(Json(c)) if c.from_discovered.is_some()) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "\"from_discovered\" is for POST /api/v1/systems (a new system)",
        );
    }
    let none = |_: &SystemChange| None;
    upsert(ctx, Some(name), b, none, Made::System, admin::edit_system).await
}

async fn delete_system(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    delete(ctx, name, admin::remove_system).await
}

async fn create_profile(
    State(ctx): State<ApiContext>,
    b: Result<Json<ProfileChange>, JsonRejection>,
) -> Response {
    let name = |c: &ProfileChange| c.name.clone();
    upsert(ctx, None, b, name, Made::Profile, admin::add_profile).await
}

async fn update_profile(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    b: Result<Json<ProfileChange>, JsonRejection>,
) -> Response {
    let none = |_: &ProfileChange| None;
    upsert(ctx, Some(name), b, none, Made::Profile, admin::edit_profile).await
}

async fn delete_profile(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    delete(ctx, name, admin::remove_profile).await
}
