//! Runs through the operator API: create (all or nothing; acknowledged once
//! stored), list, detail with timeline, cancel, retry, JUnit, stage logs and
//! the serial console (followable, or from a byte offset), artifacts, and a server-sent event stream.

use super::api::{error, parse, ApiContext};
use crate::api;
use crate::auth::Principal;
use crate::auth::Scope;
use crate::engine::{junit, stage, CreateError};
use crate::http::guard::AuditNote;
use crate::http::guard::Routes;
use crate::store::{RunFilter, RunRow};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

pub fn routes(r: Routes<ApiContext>) -> Routes<ApiContext> {
    r.get("/api/v1/runs", list)
        .post("/api/v1/runs", Scope::Operate, create)
        .get("/api/v1/runs/{id}", show)
        .post("/api/v1/runs/{id}/cancel", Scope::Operate, cancel)
        .post("/api/v1/runs/{id}/retry", Scope::Operate, retry)
        .get("/api/v1/runs/{id}/junit", junit_xml)
        .get("/api/v1/runs/{id}/stages/{seq}/log", stage_log)
        .get("/api/v1/runs/{id}/console", console_log)
        .get("/api/v1/runs/{id}/artifacts/{*path}", artifact)
        .get("/api/v1/events", events)
        .get("/api/v1/systems/{name}/history", history)
        .get("/api/v1/systems/{name}/diagnosis", diagnosis)
        .get("/api/v1/webhooks", webhooks)
}

pub fn run(r: &RunRow) -> api::Run {
    api::Run {
        id: r.id.clone(),
        system: r.system.clone(),
        profile: r.profile.clone(),
        state: r.state.clone(),
        reason: r.reason.clone(),
        requested_by: r.requested_by.clone(),
        retry_of: r.retry_of.clone(),
        kind: if crate::engine::is_inspect(&r.overrides) {
            "inspect"
        } else {
            "reimage"
        }
        .into(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
        terminal: r.finished_at.is_some(),
        elapsed_s: (r.finished_at.unwrap_or(crate::store::now_ms()) - r.created_at) as f64 / 1000.0,
    }
}

/// 201 with the runs just queued.
fn created(runs: &[crate::engine::RunInfo]) -> Response {
    let runs: Vec<api::QueuedRun> = runs
        .iter()
        .map(|r| api::QueuedRun {
            id: r.id.clone(),
            system: r.system.clone(),
            profile: r.profile.clone(),
            state: "queued".into(),
        })
        .collect();
    let target = runs
        .iter()
        .map(|r| r.system.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let detail = serde_json::json!({ "runs": runs });
    AuditNote::attach(
        (StatusCode::CREATED, Json(api::RunsCreated { runs })).into_response(),
        target,
        detail,
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

fn create_error(e: CreateError) -> Response {
    match e {
        CreateError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
        CreateError::Busy(m) => error(StatusCode::CONFLICT, "busy", m),
        CreateError::Store(m) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", m),
    }
}

async fn create(
    State(ctx): State<ApiContext>,
    Extension(who): Extension<Principal>,
    body: Option<Json<Value>>,
) -> Response {
    let body = match ctx.body_or(
        body,
        "expected JSON {\"systems\": [...], \"profile\": optional}",
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = match parse::<api::CreateRuns>(body, "\"systems\" must be a list of names") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let inspect = match req.kind.as_deref() {
        None | Some("reimage") => false,
        Some("inspect") => true,
        Some(k) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("\"kind\" is \"reimage\" or \"inspect\", not {k:?}"),
            )
        }
    };
    let profile = match (inspect, req.profile) {
        (true, None) => Some(api::runs::INSPECT_PROFILE.to_string()),
        (_, p) => p,
    };
    match ctx
        .engine
        .create_runs_of(
            req.systems,
            profile,
            req.requested_by.or(Some(who.name)),
            None,
            inspect,
        )
        .await
    {
        Ok(runs) => created(&runs),
        Err(e) => create_error(e),
    }
}

async fn list(State(ctx): State<ApiContext>, Query(q): Query<HashMap<String, String>>) -> Response {
    let f = RunFilter {
        system: q.get("system").cloned(),
        state: q.get("state").cloned(),
        active_only: q
            .get("active")
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false),
        limit: q.get("limit").and_then(|l| l.parse().ok()),
    };
    match ctx.store.list_runs(&f).await {
        Ok(rows) => Json(rows.iter().map(run).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(e),
    }
}

async fn show(State(ctx): State<ApiContext>, Path(id): Path<String>) -> Response {
    let row = match ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?}")),
        Err(e) => return internal(e),
    };
    let (events, stages, arts) = match (
        ctx.store.run_events(&id).await,
        ctx.store.stages(&id).await,
        ctx.store.artifacts(&id).await,
    ) {
        (Ok(e), Ok(s), Ok(a)) => (e, s, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return internal(e),
    };
    let timeline = junit::timeline(&row, &events)
        .into_iter()
        .zip(&events)
        .map(|((t, state, detail), e)| api::TimelineEntry {
            t: (t * 10.0).round() / 10.0,
            state,
            detail,
            by: e.writer.clone(),
        })
        .collect();
    let stages = stages
        .into_iter()
        .map(|s| api::StageResult {
            log: format!("/api/v1/runs/{id}/stages/{}/log", s.seq),
            seq: s.seq,
            name: s.name,
            kind: s.kind,
            status: s.status,
            exit_code: s.exit_code,
            started_at: s.started_at,
            finished_at: s.finished_at,
        })
        .collect();
    let artifacts = arts
        .into_iter()
        .map(|a| api::Artifact {
            url: format!("/api/v1/runs/{id}/artifacts/{}", a.path),
            path: a.path,
            size: a.size,
            sha256: a.sha256,
        })
        .collect();
    Json(api::RunDetail {
        run: run(&row),
        timeline,
        stages,
        artifacts,
    })
    .into_response()
}

async fn cancel(
    State(ctx): State<ApiContext>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match ctx
        .engine
        .cancel(&id, &format!("by request of {}", who.name))
        .await
    {
        Ok(()) => Json(api::Cancelled { cancelled: id }).into_response(),
        Err(e) => error(StatusCode::CONFLICT, "not_active", e),
    }
}

async fn retry(
    State(ctx): State<ApiContext>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let run = match ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?}")),
        Err(e) => return internal(e),
    };
    if run.finished_at.is_none() {
        return error(
            StatusCode::CONFLICT,
            "active",
            format!("run {id} is still active"),
        );
    }
    match ctx
        .engine
        .create_runs_of(
            vec![run.system.clone()],
            Some(run.profile.clone()),
            Some(who.name),
            Some(id),
            crate::engine::is_inspect(&run.overrides),
        )
        .await
    {
        Ok(runs) => created(&runs),
        Err(e) => create_error(e),
    }
}

async fn junit_xml(State(ctx): State<ApiContext>, Path(id): Path<String>) -> Response {
    let dir = stage::run_dir(&ctx.data_dir, &id);
    let p = dir.join("junit.xml");
    if !tokio::fs::try_exists(&p).await.unwrap_or(false) {
        // The run's end is stored before the engine writes its results: a
        // client that saw it finish may ask first. Write them now (the same
        // function, from the same rows; the engine's write replaces it).
        if let Ok(Some(row)) = ctx.store.get_run(&id).await {
            if row.finished_at.is_some() {
                if let Err(e) = junit::write_results(&ctx.store, &id, &dir).await {
                    tracing::error!(run = %id, error = %e, "cannot write results");
                }
            }
        }
    }
    match tokio::fs::read(&p).await {
        Ok(b) => ([(header::CONTENT_TYPE, "application/xml")], b).into_response(),
        Err(_) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no JUnit for run {id:?} (not finished?)"),
        ),
    }
}

async fn stage_log(
    State(ctx): State<ApiContext>,
    Path((id, seq)): Path<(String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let stages = match ctx.store.stages(&id).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let Some(st) = stages.into_iter().find(|s| s.seq == seq) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {id:?} has no stage {seq}"),
        );
    };
    let path = stage::run_dir(&ctx.data_dir, &id).join(&st.log_path);
    let store = ctx.store.clone();
    let live = move || {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .stages(&id)
                .await
                .ok()
                .and_then(|s| s.into_iter().find(|s| s.seq == seq))
                .map(|s| s.status == "running")
                .unwrap_or(false)
        }
    };
    progressive_log(path, &q, st.status == "running", live).await
}

/// `GET /api/v1/runs/{id}/console`: the run's serial console
/// (`console.log`), as a stage log: from a byte offset, or followed while
/// the run goes on.
async fn console_log(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let row = match ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no run {id:?}")),
        Err(e) => return internal(e),
    };
    let path = crate::engine::console::path(&stage::run_dir(&ctx.data_dir, &id));
    let store = ctx.store.clone();
    let live = move || {
        let (store, id) = (store.clone(), id.clone());
        async move { matches!(store.get_run(&id).await, Ok(Some(r)) if r.finished_at.is_none()) }
    };
    progressive_log(path, &q, row.finished_at.is_none(), live).await
}

/// A log file that grows while its writer runs (`running`; `live` asks
/// again), served as Jenkins' progressive text: the bytes from `offset=`,
/// the log's size (`X-Text-Size`, the next offset) and whether more may
/// come (`X-More-Data`); or, with `follow=1` and no offset, streamed as it
/// grows until the writer is done (bounded: 30 minutes of 250 ms polls).
async fn progressive_log<F, Fut>(
    path: std::path::PathBuf,
    q: &HashMap<String, String>,
    running: bool,
    live: F,
) -> Response
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let follow = q
        .get("follow")
        .map(|v| v == "1" || v == "true")
        .unwrap_or(false);
    let offset = match q.get("offset").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "offset must be a byte offset (a non-negative integer)",
            )
        }
    };
    if !follow || !running || offset.is_some() {
        let b = match tokio::fs::read(&path).await {
            Ok(b) => b,
            // A running writer that has not written yet.
            Err(_) if running => Vec::new(),
            Err(e) => return error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        };
        let size = b.len();
        let from = (offset.unwrap_or(0).min(size as u64)) as usize;
        let more = if running { "true" } else { "false" };
        return (
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (
                    header::HeaderName::from_static("x-text-size"),
                    size.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-more-data"),
                    more.to_string(),
                ),
            ],
            b[from..].to_vec(),
        )
            .into_response();
    }
    // Follow: stream what is there, then what is appended, until the writer ends.
    let stream = futures_util::stream::unfold((0u64, false), move |(pos, done)| {
        let (path, live) = (path.clone(), live.clone());
        async move {
            if done {
                return None;
            }
            for _ in 0..7200 {
                let data = tokio::fs::read(&path).await.unwrap_or_default();
                if (data.len() as u64) > pos {
                    let chunk = data[pos as usize..].to_vec();
                    return Some((Ok::<_, Infallible>(chunk), (data.len() as u64, false)));
                }
                if !live().await {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn artifact(
    State(ctx): State<ApiContext>,
    Path((id, path)): Path<(String, String)>,
) -> Response {
    if path.split('/').any(|c| c == ".." || c.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid artifact path",
        );
    }
    let known = match ctx.store.artifacts(&id).await {
        Ok(a) => a.iter().any(|a| a.path == path),
        Err(e) => return internal(e),
    };
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {id:?} has no artifact {path:?}"),
        );
    }
    let p = stage::run_dir(&ctx.data_dir, &id)
        .join("artifacts")
        .join(&path);
    match tokio::fs::read(&p).await {
        Ok(b) => ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "not_found", e.to_string()),
    }
}

/// Events read from the store per query while replaying.
const REPLAY_PAGE: u32 = 1000;

/// The event stream. A client that gives `Last-Event-ID` (or `?since=ID`)
/// first gets every stored event after that id, then the live ones; a
/// subscriber that falls behind the live channel catches up from the store
/// instead of losing events.
async fn events(
    State(ctx): State<ApiContext>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let given = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .or_else(|| q.get("since").cloned());
    let since = match given.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) if id >= 0 => Some(id),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Last-Event-ID / since must be an event id (a non-negative integer)",
            )
        }
    };
    let feed = ctx.engine.feed().clone();
    // Subscribe before reading the store, so nothing falls between the two
    // (the whole site's events with PostgreSQL).
    let rx = feed.subscribe_fleet();
    struct St {
        feed: std::sync::Arc<crate::feed::Feed>,
        rx: tokio::sync::broadcast::Receiver<std::sync::Arc<api::feed::FeedEvent>>,
        pending: std::collections::VecDeque<api::feed::FeedEvent>,
        last: i64,
        catching_up: bool,
    }
    let st = St {
        feed,
        rx,
        pending: Default::default(),
        last: since.unwrap_or(0),
        catching_up: since.is_some(),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                st.last = ev.id;
                return Some((Ok::<_, Infallible>(sse_event(&ev)), st));
            }
            if st.catching_up {
                match st.feed.since(st.last, REPLAY_PAGE).await {
                    Ok(page) => {
                        st.catching_up = page.len() == REPLAY_PAGE as usize;
                        st.pending.extend(page);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event replay failed");
                        st.catching_up = false;
                    }
                }
                continue;
            }
            match st.rx.recv().await {
                Ok(ev) if ev.id > st.last => st.pending.push_back((*ev).clone()),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => st.catching_up = true,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `id: N`, and the event's JSON with `"id"` added as the data.
fn sse_event(ev: &api::feed::FeedEvent) -> SseEvent {
    let mut data = ev.data.clone();
    if let Value::Object(m) = &mut data {
        m.insert("id".into(), ev.id.into());
    }
    SseEvent::default()
        .id(ev.id.to_string())
        .data(data.to_string())
}

/// `GET /api/v1/systems/{name}/history?before=ID&limit=N` (default 100, at
/// most 1000): the system's stored events, newest first.
async fn history(
    State(ctx): State<ApiContext>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if ctx.inventory.borrow().system(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        );
    }
    let num = |k: &str| q.get(k).map(|v| v.parse::<i64>());
    let before = match num("before") {
        None => None,
        Some(Ok(b)) if b > 0 => Some(b),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "before must be an event id",
            )
        }
    };
    let limit = match num("limit") {
        None => 100,
        Some(Ok(l)) if (1..=1000).contains(&l) => l as u32,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "limit must be 1..=1000",
            )
        }
    };
    match ctx.engine.feed().history(&name, before, limit).await {
        Ok(events) => {
            let next_before = (events.len() == limit as usize)
                .then(|| events.last().map(|e| e.id))
                .flatten();
            Json(api::feed::History {
                system: name,
                events,
                next_before,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

/// Feed events read for a diagnosis: enough for a reimage's last attempt.
pub const DIAGNOSIS_EVENTS: u32 = 500;

/// `GET /api/v1/systems/{name}/diagnosis`: the last attempt's chain of
/// steps, the first missing one and its likely cause (`diagnose`).
async fn diagnosis(State(ctx): State<ApiContext>, Path(name): Path<String>) -> Response {
    if ctx.inventory.borrow().system(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no system {name:?}"),
        );
    }
    let mut events = match ctx
        .engine
        .feed()
        .history(&name, None, DIAGNOSIS_EVENTS)
        .await
    {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    events.reverse();
    let mut d = diagnosis_of(&name, &events);
    add_console_tail(&mut d, &ctx.data_dir).await;
    Json(d).into_response()
}

/// Lines of the serial console the diagnosis shows.
pub const DIAGNOSIS_CONSOLE_LINES: usize = 20;

/// The last console lines of the diagnosed run, as evidence (read from its
/// `console.log`; nothing when it was not captured).
pub async fn add_console_tail(d: &mut api::feed::Diagnosis, data_dir: &std::path::Path) {
    let Some(run) = d.run_id.as_deref() else {
        return;
    };
    let path = crate::engine::console::path(&stage::run_dir(data_dir, run));
    // Only the end of a big log is read.
    let tail = match tokio::fs::File::open(&path).await {
        Ok(mut f) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            let from = len.saturating_sub(64 * 1024);
            let _ = f.seek(std::io::SeekFrom::Start(from)).await;
            let mut b = Vec::new();
            let _ = f.read_to_end(&mut b).await;
            String::from_utf8_lossy(&b).into_owned()
        }
        Err(_) => return,
    };
    d.console = crate::engine::console::tail_lines(&tail, DIAGNOSIS_CONSOLE_LINES);
}

/// The feed events (oldest first) as evidence, diagnosed.
pub fn diagnosis_of(system: &str, events: &[api::feed::FeedEvent]) -> api::feed::Diagnosis {
    use crate::diagnose::{diagnose, Evidence};
    fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
        v.get(k).and_then(Value::as_str)
    }
    let evidence: Vec<(i64, Evidence)> = events
        .iter()
        .filter_map(|e| {
            let ev = match e.kind.as_str() {
                "transition" => Evidence::Transition {
                    to: s(&e.data, "to")?,
                    reason: s(&e.data, "reason"),
                },
                "observation" => Evidence::Observed {
                    what: s(&e.data, "what")?,
                },
                _ => return None,
            };
            Some((e.at, ev))
        })
        .collect();
    let d = diagnose(&evidence);
    // The last attempt's run: the latest run its transitions name.
    let run_id = if d.run {
        events
            .iter()
            .rev()
            .filter(|e| e.kind == "transition" && d.since.is_none_or(|s| e.at >= s))
            .find_map(|e| s(&e.data, "run").map(String::from))
    } else {
        None
    };
    api::feed::Diagnosis {
        system: system.to_string(),
        since: d.since,
        run: d.run,
        chain: d
            .chain
            .iter()
            .map(|c| api::feed::DiagnosisStep {
                step: c.step.as_str().into(),
                label: c.step.label().into(),
                at: c.at,
            })
            .collect(),
        first_missing: d.first_missing.map(|s| s.as_str().to_string()),
        cause: d.cause.map(String::from),
        ended: d
            .ended
            .map(|(state, reason)| api::feed::RunEnd { state, reason }),
        run_id,
        console: Vec::new(),
    }
}

/// `GET /api/v1/webhooks`: each webhook's delivery state (and the MQTT
/// publisher's, named `@mqtt`, when one is configured).
async fn webhooks(State(ctx): State<ApiContext>) -> Json<Vec<api::feed::WebhookStatus>> {
    Json(delivery_status(&ctx))
}

/// Every webhook's delivery state, then the MQTT publisher's (the API and
/// the UI's Webhooks page).
pub fn delivery_status(ctx: &ApiContext) -> Vec<api::feed::WebhookStatus> {
    let mut all = ctx.webhooks.status();
    all.extend(ctx.mqtt.as_ref().map(|m| m.status()));
    all
}
