//! The run page (`/ui/runs/{id}`): header, the phase timeline as an SVG bar
//! chart drawn here, stages with their logs and the serial console (tailed
//! live by byte offset),
//! artifacts, JUnit, cancel and retry.

use super::{due_of, field, fmt_dur, fmt_time, phase_class, redirect_with, FormBody, Req, S};
use crate::engine::{junit, stage};
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::fmt::Write;

/// The tail of a stage log rendered into the page (the script fetches the rest).
const LOG_TAIL: usize = 64 * 1024;

/// The last `LOG_TAIL` bytes of a log: (text, the log's size, whether cut).
async fn log_tail(path: &std::path::Path) -> (String, usize, bool) {
    match tokio::fs::read(path).await {
        Ok(b) => {
            let from = b.len().saturating_sub(LOG_TAIL);
            (
                String::from_utf8_lossy(&b[from..]).into_owned(),
                b.len(),
                from > 0,
            )
        }
        Err(_) => (String::new(), 0, false),
    }
}

/// One bar of the timeline: a phase, its start and its duration (seconds).
pub struct Bar {
    pub state: String,
    pub start: f64,
    pub secs: f64,
    pub detail: String,
}

/// Consecutive events of one phase merged; the last bar ends at `end`.
pub fn bars(timeline: &[(f64, String, String)], end: f64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for (t, state, detail) in timeline {
        if out.last().is_some_and(|b| &b.state == state) {
            continue;
        }
        if let Some(prev) = out.last_mut() {
            prev.secs = (t - prev.start).max(0.0);
        }
        out.push(Bar {
            state: state.clone(),
            start: *t,
            secs: 0.0,
            detail: detail.clone(),
        });
    }
    if let Some(last) = out.last_mut() {
        last.secs = (end - last.start).max(0.0);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The timeline as an SVG bar chart: one row per phase, x = time.
pub fn svg(bars: &[Bar], terminal: bool) -> String {
    const W: f64 = 960.0;
    const LABEL: f64 = 90.0;
    const RIGHT: f64 = 70.0;
    const ROW: f64 = 22.0;
    let total = bars
        .iter()
        .map(|b| b.start + b.secs)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let scale = (W - LABEL - RIGHT) / total;
    let h = ROW * bars.len() as f64 + 24.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="timeline" viewBox="0 0 {W} {h}" width="100%" role="img" aria-label="phase timeline" xmlns="http://www.w3.org/2000/svg">"#
    );
    // Axis ticks: about 6 round steps.
    let step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|s| total / s <= 6.0)
    .unwrap_or(7200.0);
    let mut t = 0.0;
    while t <= total + 1e-9 {
        let x = LABEL + t * scale;
        let _ = write!(
            o,
            r#"<line class="tick" x1="{x:.1}" y1="0" x2="{x:.1}" y2="{:.1}"/><text class="axis" x="{x:.1}" y="{:.1}">{}</text>"#,
            h - 16.0,
            h - 4.0,
            fmt_dur((t * 1000.0) as i64)
        );
        t += step;
    }
    for (i, b) in bars.iter().enumerate() {
        let y = i as f64 * ROW;
        let x = LABEL + b.start * scale;
        let w = (b.secs * scale).max(2.0);
        let open = terminal || i + 1 < bars.len();
        let class = if !open {
            "run live"
        } else {
            phase_class(&b.state)
        };
        let class = if class.is_empty() { "run" } else { class };
        let _ = write!(
            o,
            r#"<g><title>{state}: {dur} (from +{start:.1}s) {detail}</title><text class="label" x="{lx:.1}" y="{ty:.1}">{state}</text><rect class="bar {class}" x="{x:.1}" y="{ry:.1}" width="{w:.1}" height="{bh:.1}" rx="2"/><text class="dur" x="{dx:.1}" y="{ty:.1}">{dur}</text></g>"#,
            state = esc(&b.state),
            detail = esc(&b.detail),
            dur = if b.secs < 10.0 {
                format!("{:.1}s", b.secs)
            } else {
                fmt_dur((b.secs * 1000.0) as i64)
            },
            start = b.start,
            lx = LABEL - 6.0,
            ty = y + ROW * 0.68,
            ry = y + 4.0,
            bh = ROW - 8.0,
            dx = x + w + 4.0,
        );
    }
    o.push_str("</svg>");
    o
}

pub async fn page(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    Path(id): Path<String>,
) -> Response {
    let req = Req::new(&headers, &ext);
    let ctx = &ui.ctx;
    let row = match ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ui.error(
                StatusCode::NOT_FOUND,
                "Run not found",
                &format!("There is no run {id:?}."),
            )
        }
        Err(e) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    let (events, stages, arts, head) = match (
        ctx.store.run_events(&id).await,
        ctx.store.stages(&id).await,
        ctx.store.artifacts(&id).await,
        ctx.store.feed_head().await,
    ) {
        (Ok(e), Ok(s), Ok(a), Ok(h)) => (e, s, a, h),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    let now = crate::store::now_ms();
    let terminal = row.finished_at.is_some();
    let end = (row.finished_at.unwrap_or(now) - row.created_at) as f64 / 1000.0;
    let bars = bars(&junit::timeline(&row, &events), end);
    let chart = svg(&bars, terminal);
    let dir = stage::run_dir(&ctx.data_dir, &id);
    let mut stage_rows = Vec::new();
    for s in &stages {
        let (text, size, cut) = log_tail(&dir.join(&s.log_path)).await;
        stage_rows.push(json!({
            "seq": s.seq, "name": s.name, "kind": s.kind, "status": s.status,
            "class": stage_class(&s.status),
            "exit_code": s.exit_code,
            "took": s.finished_at.map(|f| fmt_dur(f - s.started_at)),
            "log": format!("/api/v1/runs/{id}/stages/{}/log", s.seq),
            "text": text, "offset": size, "cut": cut,
            "live": !terminal && s.status == "running",
        }));
    }
    // The profile's stages that have not started yet.
    let inv = ctx.inventory.borrow().clone();
    if let Some(p) = inv.profile(&row.profile) {
        for (i, st) in p.stages.iter().enumerate().skip(stages.len()) {
            stage_rows.push(json!({
                "seq": i, "name": st.name, "kind": st.kind.as_str(),
                "status": if terminal { "skipped" } else { "pending" },
                "class": "wait", "exit_code": null, "took": null,
                "log": format!("/api/v1/runs/{id}/stages/{i}/log"),
                "text": "", "offset": 0, "cut": false, "live": !terminal,
            }));
        }
    }
    let artifacts: Vec<Value> = arts
        .iter()
        .map(|a| {
            json!({"path": a.path, "size": a.size, "sha256": a.sha256,
                         "url": format!("/api/v1/runs/{id}/artifacts/{}", a.path)})
        })
        .collect();
    let has_junit = tokio::fs::metadata(dir.join("junit.xml")).await.is_ok();
    let console_path = crate::engine::console::path(&dir);
    let console = match tokio::fs::metadata(&console_path).await {
        Ok(_) => {
            let (text, size, cut) = log_tail(&console_path).await;
            Some(json!({
                "log": format!("/api/v1/runs/{id}/console"),
                "text": text, "offset": size, "cut": cut, "live": !terminal,
            }))
        }
        Err(_) => None,
    };
    let due = if terminal { None } else { due_of(&row.data) };
    let run = json!({
        "id": row.id, "system": row.system, "profile": row.profile,
        "state": row.state, "class": phase_class(&row.state),
        "reason": row.reason, "requested_by": row.requested_by, "retry_of": row.retry_of,
        "created": fmt_time(row.created_at), "updated": fmt_time(row.updated_at),
        "finished": row.finished_at.map(fmt_time),
        "elapsed": fmt_dur(row.finished_at.unwrap_or(now) - row.created_at),
        "terminal": terminal,
        "due": due, "left": due.map(|d| fmt_dur(d - now)),
        "late": due.is_some_and(|d| d < now),
    });
    ui.render(
        StatusCode::OK,
        &req,
        "run.html",
        json!({
            "nav": "run",
            "title": format!("Run {id}"),
            "run": run,
            "chart": chart,
            "phases": bars.len(),
            "stages": stage_rows,
            "console": console,
            "artifacts": artifacts,
            "junit": has_junit.then(|| format!("/api/v1/runs/{id}/junit")),
            "feed_head": head,
        }),
    )
}

pub(super) fn stage_class(status: &str) -> &'static str {
    match status {
        "passed" => "ok",
        "running" => "run",
        "failed" | "timed_out" | "timeout" => "bad",
        _ => "off",
    }
}

/// `GET /ui/runs/{id}/live`: what the script refreshes after a transition.
pub async fn live(State(ui): S, Path(id): Path<String>) -> Response {
    let ctx = &ui.ctx;
    let row = match ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let stages = ctx.store.stages(&id).await.unwrap_or_default();
    let terminal = row.finished_at.is_some();
    Json(json!({
        "id": row.id,
        "state": row.state,
        "class": phase_class(&row.state),
        "terminal": terminal,
        "due": if terminal { None } else { due_of(&row.data) },
        "now": crate::store::now_ms(),
        "stages": stages.iter().map(|s| json!({
            "seq": s.seq, "status": s.status, "class": stage_class(&s.status),
            "exit_code": s.exit_code,
        })).collect::<Vec<_>>(),
    }))
    .into_response()
}

pub async fn cancel(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    Path(id): Path<String>,
    form: FormBody,
) -> Response {
    let (req, form) = match super::posted(&ui, &headers, &ext, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let _ = field(&form, "csrf");
    match ui.ctx.store.get_run(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return ui.error(
                StatusCode::NOT_FOUND,
                "Run not found",
                &format!("There is no run {id:?}."),
            )
        }
        Err(e) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    }
    let back = format!("/ui/runs/{id}");
    match ui
        .ctx
        .engine
        .cancel(&id, &format!("cancelled from the web UI by {}", req.who))
        .await
    {
        Ok(()) => redirect_with(Some(&back), "Run cancelled."),
        Err(e) => ui.error(StatusCode::CONFLICT, "Cancel refused", &e),
    }
}

pub async fn retry(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    Path(id): Path<String>,
    form: FormBody,
) -> Response {
    let (req, _form) = match super::posted(&ui, &headers, &ext, form) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let run = match ui.ctx.store.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ui.error(
                StatusCode::NOT_FOUND,
                "Run not found",
                &format!("There is no run {id:?}."),
            )
        }
        Err(e) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    if run.finished_at.is_none() {
        return ui.error(
            StatusCode::CONFLICT,
            "Retry refused",
            &format!("Run {id} is still in progress."),
        );
    }
    match ui
        .ctx
        .engine
        .create_runs_of(
            vec![run.system.clone()],
            Some(run.profile.clone()),
            Some(req.who.clone()),
            Some(id.clone()),
            crate::engine::is_inspect(&run.overrides),
        )
        .await
    {
        Ok(runs) => {
            let new = runs.first().map(|r| r.id.clone()).unwrap_or(id);
            redirect_with(
                Some(&format!("/ui/runs/{new}")),
                &format!("Retry queued as {new}."),
            )
        }
        Err(e) => ui.error(StatusCode::CONFLICT, "Retry refused", &e.to_string()),
    }
}
