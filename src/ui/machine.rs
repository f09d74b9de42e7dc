//! The machine page (`/ui/machines/{name}`): what the files say about it,
//! its power (the poller's cache), netboot flag and current run; "why didn't
//! it boot?" for its last attempt (`http::api_runs::diagnosis_of` over the
//! feed, as `/api/v1/systems/{name}/diagnosis`); the merged "what happened"
//! list (feed events and its runs' stage results, newest first, paged with
//! `?before=ID`); a sparkline of its last reimage durations and its streak.
//! Actions post to `/ui/actions` like the machines page's.

use super::{due_of, fmt_dur, fmt_time, phase_class, query_or_400, QueryArg, Req, Ui, S};
use crate::api::feed::FeedEvent;
use crate::http::api_runs::{diagnosis_of, DIAGNOSIS_EVENTS};
use crate::store::{RunFilter, RunRow};
use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::fmt::Write;

/// Feed events per page of "what happened".
pub const HISTORY_PAGE: u32 = 50;
/// Finished runs in the sparkline.
pub const SPARK_RUNS: usize = 20;
/// Runs read for the sparkline, the streak and the stage results.
const RUNS_READ: i64 = 40;
/// Observation details longer than this are cut (the whole text is the tooltip).
const DETAIL_MAX: usize = 160;

/// Whitespace runs collapsed; longer than `max` chars: cut with `…`.
pub fn compact(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        let mut t: String = one.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One finished run for the sparkline: id, final state, duration (ms).
pub struct Spark<'a> {
    pub id: &'a str,
    pub state: &'a str,
    pub ms: i64,
}

/// The last reimage durations as a small bar chart (oldest on the left),
/// each bar coloured by its result and linking its run.
pub fn sparkline(runs: &[Spark]) -> String {
    const BAR: f64 = 9.0;
    const GAP: f64 = 3.0;
    const H: f64 = 34.0;
    let w = (runs.len() as f64 * (BAR + GAP)).max(BAR);
    let max = runs.iter().map(|r| r.ms).max().unwrap_or(1).max(1) as f64;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="spark" viewBox="0 0 {w} {H}" width="{w}" height="{H}" role="img" aria-label="last {n} reimage durations" xmlns="http://www.w3.org/2000/svg">"#,
        n = runs.len()
    );
    for (i, r) in runs.iter().enumerate() {
        let h = ((r.ms.max(0) as f64 / max) * (H - 2.0)).max(2.0);
        let class = match phase_class(r.state) {
            "" => "off",
            c => c,
        };
        let _ = write!(
            o,
            r#"<a href="/ui/runs/{id}"><rect class="{class}" x="{x:.1}" y="{y:.1}" width="{BAR}" height="{h:.1}" rx="1.5"><title>{id}: {state}, {dur}</title></rect></a>"#,
            id = esc(r.id),
            state = esc(r.state),
            dur = fmt_dur(r.ms),
            x = i as f64 * (BAR + GAP),
            y = H - h,
        );
    }
    o.push_str("</svg>");
    o
}

/// How many of the newest finished runs share the newest one's result.
pub fn streak(states_newest_first: &[&str]) -> Option<(String, usize)> {
    let ok = |s: &str| s == "succeeded";
    let first = *states_newest_first.first()?;
    let n = states_newest_first
        .iter()
        .take_while(|s| ok(s) == ok(first))
        .count();
    Some((if ok(first) { "pass" } else { "fail" }.to_string(), n))
}

/// A feed event as a row of "what happened".
fn event_row(e: &FeedEvent) -> Value {
    let s = |k: &str| e.data.get(k).and_then(Value::as_str).unwrap_or("");
    let (what, class, detail, full) = match e.kind.as_str() {
        "transition" => {
            let to = s("to");
            let from = s("from");
            let what = if from.is_empty() {
                to.to_string()
            } else {
                format!("{from} → {to}")
            };
            let mut d = s("detail").to_string();
            if !s("reason").is_empty() && s("reason") != d {
                if !d.is_empty() {
                    d.push_str(": ");
                }
                d.push_str(s("reason"));
            }
            (what, phase_class(to), compact(&d, DETAIL_MAX), d)
        }
        "observation" => {
            let d = s("detail").to_string();
            (s("what").to_string(), "", compact(&d, DETAIL_MAX), d)
        }
        // facts, discovered, …: their own one-line detail.
        other => {
            let d = s("detail").to_string();
            (
                other.to_string(),
                "",
                compact(&d, DETAIL_MAX),
                e.data.to_string(),
            )
        }
    };
    json!({
        "id": e.id, "at": e.at, "time": fmt_time(e.at), "kind": e.kind,
        "what": what, "class": if class.is_empty() { "off" } else { class },
        "detail": detail, "full": full, "run": e.run,
    })
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
    let before = match pairs.iter().find(|(k, _)| k == "before") {
        None => None,
        Some((_, v)) => match v.parse::<i64>() {
            Ok(b) if b > 0 => Some(b),
            _ => {
                return ui.error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    "before must be an event id (a positive number)",
                )
            }
        },
    };
    let req = Req::new(&headers, &ext);
    render(&ui, &req, &name, before).await
}

fn store_error(ui: &Ui, e: impl std::fmt::Display) -> Response {
    ui.error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Store error",
        &e.to_string(),
    )
}

pub async fn render(ui: &Ui, req: &Req, name: &str, before: Option<i64>) -> Response {
    let ctx = &ui.ctx;
    let inv = ctx.inventory.borrow().clone();
    let Some(sys) = inv.system(name) else {
        return ui.error(
            StatusCode::NOT_FOUND,
            "Machine not found",
            &format!("There is no machine {name:?}."),
        );
    };
    let netboot = ctx.table.borrow().get(name).map(|r| r.id.clone());
    let feed = ctx.engine.feed();
    // The head first: what the stream replays after it may also be listed
    // (the script skips ids it already shows), nothing falls in between.
    let head = match ctx.store.feed_head().await {
        Ok(h) => h,
        Err(e) => return store_error(ui, e),
    };
    let (mut recent_ev, page, runs) = match (
        feed.history(name, None, DIAGNOSIS_EVENTS).await,
        feed.history(name, before, HISTORY_PAGE).await,
        ctx.store
            .list_runs(&RunFilter {
                system: Some(name.to_string()),
                state: None,
                active_only: false,
                limit: Some(RUNS_READ),
            })
            .await,
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return store_error(ui, e),
    };
    recent_ev.reverse();
    let mut d = diagnosis_of(name, &recent_ev);
    crate::http::api_runs::add_console_tail(&mut d, &ctx.data_dir).await;
    let now = crate::store::now_ms();

    // "Why didn't it boot?"
    let since = d.since.unwrap_or(0);
    let missing = d.first_missing.clone();
    let mut reached = true;
    let chain: Vec<Value> = d
        .chain
        .iter()
        .map(|c| {
            let first = missing.as_deref() == Some(c.step.as_str());
            if first {
                reached = false;
            }
            let mark = match (c.at, first) {
                (Some(_), _) => "seen",
                (None, true) => "missing",
                (None, false) if reached => "implied",
                _ => "unreached",
            };
            json!({
                "step": c.step, "label": c.label, "mark": mark,
                "offset": c.at.map(|t| format!("+{:.1}s", (t - since) as f64 / 1000.0)),
                "time": c.at.map(fmt_time),
            })
        })
        .collect();
    let current: Option<&RunRow> = runs.iter().find(|r| r.finished_at.is_none());
    let diagnosis = json!({
        "any": d.since.is_some(),
        "run": d.run,
        "since": d.since.map(fmt_time),
        "chain": chain,
        "first_missing": missing,
        "first_missing_label": d.chain.iter().find(|c| Some(c.step.as_str()) == missing.as_deref()).map(|c| c.label.clone()),
        "cause": d.cause,
        "ended": d.ended.as_ref().map(|e| json!({
            "state": e.state, "class": phase_class(&e.state), "reason": e.reason,
        })),
        "in_progress": d.ended.is_none() && current.is_some(),
        "run_id": d.run_id,
        "console": d.console,
    });

    // The sparkline and the streak: finished runs, newest first in `runs`.
    let finished: Vec<&RunRow> = runs.iter().filter(|r| r.finished_at.is_some()).collect();
    let spark: Vec<Spark> = finished
        .iter()
        .take(SPARK_RUNS)
        .rev()
        .map(|r| Spark {
            id: &r.id,
            state: &r.state,
            ms: r.finished_at.unwrap_or(now) - r.created_at,
        })
        .collect();
    let states: Vec<&str> = finished.iter().map(|r| r.state.as_str()).collect();
    let streak = streak(&states).map(|(kind, n)| json!({"kind": kind, "n": n}));
    let durations: Vec<i64> = spark
        .iter()
        .filter(|s| s.state == "succeeded")
        .map(|s| s.ms)
        .collect();
    let median = {
        let mut d = durations.clone();
        d.sort_unstable();
        d.get(d.len() / 2).copied()
    };

    // "What happened": this page's events, and the stage results that fall
    // in its span of time (the first page: up to now; the last: from ever).
    let next_before = (page.len() == HISTORY_PAGE as usize)
        .then(|| page.last().map(|e| e.id))
        .flatten();
    let hi = if before.is_none() {
        i64::MAX
    } else {
        page.first().map(|e| e.at).unwrap_or(i64::MIN)
    };
    let lo = if next_before.is_none() {
        i64::MIN
    } else {
        page.last().map(|e| e.at).unwrap_or(i64::MAX)
    };
    let mut items: Vec<(i64, i64, Value)> =
        page.iter().map(|e| (e.at, e.id, event_row(e))).collect();
    for r in &runs {
        if r.finished_at.is_some_and(|f| f < lo) || r.created_at > hi {
            continue;
        }
        let stages = match ctx.store.stages(&r.id).await {
            Ok(s) => s,
            Err(e) => return store_error(ui, e),
        };
        for s in stages {
            let at = s.finished_at.unwrap_or(s.started_at);
            if at < lo || at > hi {
                continue;
            }
            let mut detail = format!("{} ({})", s.name, s.kind);
            if let Some(c) = s.exit_code {
                let _ = write!(detail, ", exit {c}");
            }
            if let Some(f) = s.finished_at {
                let _ = write!(detail, ", took {}", fmt_dur(f - s.started_at));
            }
            items.push((
                at,
                0,
                json!({
                    "id": null, "at": at, "time": fmt_time(at), "kind": "stage",
                    "what": s.status, "class": super::run::stage_class(&s.status),
                    "detail": detail, "full": detail, "run": r.id,
                    "log": format!("/api/v1/runs/{}/stages/{}/log", r.id, s.seq),
                }),
            ));
        }
    }
    // Newest first; a stage result below the event of the same instant.
    items.sort_by_key(|(at, id, _)| std::cmp::Reverse((*at, *id)));
    let events: Vec<Value> = items.into_iter().map(|(_, _, v)| v).collect();

    let (power, power_at, power_err) = match ctx.power.polled().get(name) {
        Some(p) => match p.state {
            Ok(st) => (st.as_str().to_string(), Some(p.checked_at), None),
            Err(e) => ("unknown".to_string(), Some(p.checked_at), Some(e)),
        },
        None => ("unknown".to_string(), None, None),
    };
    let run = current.map(|r| {
        let due = due_of(&r.data);
        json!({
            "id": r.id, "phase": r.state, "class": phase_class(&r.state),
            "due": due, "left": due.map(|d| fmt_dur(d - now)),
            "late": due.is_some_and(|d| d < now),
            "elapsed": fmt_dur(now - r.created_at),
        })
    });
    let hw = crate::http::api::facts_of(&ui.ctx, &sys.name)
        .await
        .ok()
        .flatten()
        .map(|r| {
            let f = r.facts;
            json!({
                "at": fmt_time(r.at), "ago": fmt_dur(now - r.at), "run": r.run_id,
                "cpu": f.cpu.map(|c| format!("{} × {}", c.count, c.model.unwrap_or_else(|| "?".into()))),
                "memory": f.memory_mib.map(|m| format!("{m} MiB")),
                "disks": f.disks.iter().map(|d| format!("{} {:.1} GiB{}", d.name,
                    d.size_bytes as f64 / (1u64 << 30) as f64,
                    d.model.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())).collect::<Vec<_>>(),
                "nics": f.nics.iter().map(|n| format!("{} {}{}", n.name, n.mac,
                    if n.link == Some(true) { " link up" } else { "" })).collect::<Vec<_>>(),
                "dmi": f.dmi.map(|d| [d.vendor, d.product, d.serial.map(|s| format!("serial {s}"))]
                    .into_iter().flatten().collect::<Vec<_>>().join(" · ")),
                "firmware": f.firmware.map(|fw| match f.secure_boot {
                    Some(true) => format!("{fw}, Secure Boot on"),
                    Some(false) => format!("{fw}, Secure Boot off"),
                    None => fw,
                }),
            })
        });
    let enc = super::pct_encode(name);
    let machine = json!({
        "name": sys.name,
        "hostname": sys.fqdn(),
        "macs": sys.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "ip": sys.ip.to_string(),
        "profile": sys.profile,
        "bmc": sys.bmc.as_ref().map(|b| json!({"kind": b.kind.as_str(), "address": b.address})),
        "power": power,
        "power_age": power_at.map(|t| fmt_dur(now - t)),
        "power_err": power_err,
        "netboot": netboot.is_some(),
        "netboot_run": netboot,
        "run": run,
        "url": format!("/ui/machines/{enc}"),
        "hw": hw,
    });
    ui.render(
        StatusCode::OK,
        req,
        "machine.html",
        json!({
            "nav": "machines",
            "title": sys.name,
            "m": machine,
            "diagnosis": diagnosis,
            "events": events,
            "paged": before.is_some(),
            "older": next_before.map(|b| format!("/ui/machines/{enc}?before={b}")),
            "spark": (!spark.is_empty()).then(|| sparkline(&spark)),
            "spark_n": spark.len(),
            "median": median.map(fmt_dur),
            "last": spark.last().map(|s| json!({
                "state": s.state, "class": phase_class(s.state), "took": fmt_dur(s.ms),
            })),
            "streak": streak,
            "feed_head": head,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaks_sparkline_and_compact_details() {
        assert_eq!(streak(&[]), None);
        assert_eq!(
            streak(&["succeeded", "succeeded", "failed", "succeeded"]),
            Some(("pass".into(), 2))
        );
        assert_eq!(
            streak(&["failed", "timed_out", "cancelled", "succeeded"]),
            Some(("fail".into(), 3))
        );
        let svg = sparkline(&[
            Spark {
                id: "run-a",
                state: "succeeded",
                ms: 60_000,
            },
            Spark {
                id: "run-<b>",
                state: "timed_out",
                ms: 30_000,
            },
        ]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(r#"class="ok""#) && svg.contains(r#"class="bad""#));
        assert!(svg.contains("run-&lt;b&gt;") && !svg.contains("<b>"));
        assert!(
            svg.contains(r#"height="32.0""#),
            "the longest run is full height"
        );
        assert_eq!(
            compact("Dhcp {\n    mac: 52,\n  }", 100),
            "Dhcp { mac: 52, }"
        );
        assert_eq!(compact("abcdef", 3), "abc…");
    }
}
