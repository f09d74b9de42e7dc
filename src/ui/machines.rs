//! The machines page (`/`): every system with its power state (the poller's
//! cache), netboot flag, current run and phase with the time left, last
//! result and streak; filter, sort and page in the query string; bulk
//! reimage / power-cycle / cancel / netboot on-off (`POST /ui/actions`, also
//! what the machine page's buttons post).

use super::{
    due_of, field, fmt_dur, form_or_400, phase_class, query_or_400, redirect_with, FormBody,
    QueryArg, Req, Ui, PAGE_SIZE, S, STREAK,
};
use crate::inventory::System;
use crate::power::PowerOp;
use crate::store::RunRow;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The states the `state` filter takes.
const STATES: &[&str] = &[
    "active",
    "idle",
    "netboot",
    "failed",
    "succeeded",
    "on",
    "off",
    "unknown",
];
const SORTS: &[&str] = &["name", "profile", "ip", "power", "phase", "result"];
/// The columns one may hide (name and the selection box always show), with
/// their headings.
const COLUMNS: &[(&str, &str)] = &[
    ("profile", "Profile"),
    ("ip", "IP"),
    ("power", "Power"),
    ("netboot", "Netboot"),
    ("phase", "Run phase"),
    ("left", "Time left"),
    ("result", "Last result"),
    ("streak", "Last 10 runs"),
];
/// The cookie that keeps the hidden columns (the `hide` query wins).
const HIDE_COOKIE: &str = "rb_hide";

/// The page's query: `q`, `profile`, `state`, `sort` (`-` first: descending),
/// `page` (from 1), `hide` (columns, comma-separated; or the columns form:
/// `cols=1` with a `show` per column kept).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub q: String,
    pub profile: String,
    pub state: String,
    pub sort: String,
    pub desc: bool,
    pub page: usize,
    pub hide: Vec<String>,
    /// The query said which columns to hide (else the cookie says).
    pub hide_given: bool,
}

/// `hide`'s value: known columns only, in the table's order.
fn parse_hide(v: &str) -> Result<Vec<String>, String> {
    let asked: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if let Some(bad) = asked.iter().find(|c| !COLUMNS.iter().any(|(k, _)| k == *c)) {
        let keys: Vec<&str> = COLUMNS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "hide: unknown column {bad:?} (one of {})",
            keys.join(", ")
        ));
    }
    Ok(COLUMNS
        .iter()
        .filter(|(k, _)| asked.contains(k))
        .map(|(k, _)| k.to_string())
        .collect())
}

impl Filter {
    pub fn parse(pairs: &[(String, String)]) -> Result<Filter, String> {
        let mut f = Filter {
            sort: "name".into(),
            page: 1,
            ..Default::default()
        };
        for (k, v) in pairs {
            let v = v.trim();
            match k.as_str() {
                "q" => f.q = v.to_string(),
                "profile" => f.profile = v.to_string(),
                "state" if v.is_empty() || STATES.contains(&v) => f.state = v.to_string(),
                "state" => return Err(format!("state must be one of {}", STATES.join(", "))),
                "sort" => {
                    let (desc, key) = match v.strip_prefix('-') {
                        Some(k) => (true, k),
                        None => (false, v),
                    };
                    if !SORTS.contains(&key) {
                        return Err(format!(
                            "sort must be one of {} (- first: descending)",
                            SORTS.join(", ")
                        ));
                    }
                    f.sort = key.to_string();
                    f.desc = desc;
                }
                "page" => {
                    f.page = v
                        .parse()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or("page must be a number from 1")?
                }
                "hide" => {
                    f.hide = parse_hide(v)?;
                    f.hide_given = true;
                }
                _ => {}
            }
        }
        // The columns form: every column not ticked is hidden.
        if !f.hide_given && pairs.iter().any(|(k, v)| k == "cols" && v == "1") {
            let shown: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == "show")
                .map(|(_, v)| v.as_str())
                .collect();
            f.hide = COLUMNS
                .iter()
                .filter(|(k, _)| !shown.contains(k))
                .map(|(k, _)| k.to_string())
                .collect();
            f.hide_given = true;
        }
        Ok(f)
    }

    /// This filter as a query string, with `page` and `sort` replaced.
    fn link(&self, page: usize, sort: Option<&str>) -> String {
        let mut q = Vec::new();
        let enc = super::pct_encode;
        for (k, v) in [
            ("q", &self.q),
            ("profile", &self.profile),
            ("state", &self.state),
        ] {
            if !v.is_empty() {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        let sort = match sort {
            Some(s) => s.to_string(),
            None if self.desc => format!("-{}", self.sort),
            None => self.sort.clone(),
        };
        if sort != "name" {
            q.push(format!("sort={}", enc(&sort)));
        }
        if page > 1 {
            q.push(format!("page={page}"));
        }
        if self.hide_given && !self.hide.is_empty() {
            q.push(format!("hide={}", enc(&self.hide.join(","))));
        }
        if q.is_empty() {
            "/".into()
        } else {
            format!("/?{}", q.join("&"))
        }
    }
}

/// What the page knows about one system.
struct Row<'a> {
    s: &'a System,
    run: Option<&'a RunRow>,
    power: &'static str,
    power_at: Option<i64>,
    power_err: Option<String>,
    netboot: bool,
    results: &'a [(String, String)],
}

impl Row<'_> {
    fn last(&self) -> &str {
        self.results.first().map(|r| r.1.as_str()).unwrap_or("")
    }

    fn matches(&self, f: &Filter) -> bool {
        if !f.profile.is_empty() && self.s.profile != f.profile {
            return false;
        }
        if !f.q.is_empty() {
            let q = f.q.to_lowercase();
            let hit = self.s.name.to_lowercase().contains(&q)
                || self.s.hostname.to_lowercase().contains(&q)
                || self.s.ip.to_string().contains(&q)
                || self.s.profile.to_lowercase().contains(&q)
                || self.s.macs.iter().any(|m| m.to_string().contains(&q));
            if !hit {
                return false;
            }
        }
        match f.state.as_str() {
            "" => true,
            "active" => self.run.is_some(),
            "idle" => self.run.is_none(),
            "netboot" => self.netboot,
            "failed" => matches!(self.last(), "failed" | "timed_out"),
            "succeeded" => self.last() == "succeeded",
            p => self.power == p,
        }
    }
}

/// What the page and the filter-wide actions read: one snapshot.
struct Data {
    inv: std::sync::Arc<crate::inventory::Inventory>,
    table: std::sync::Arc<crate::boot::BootTable>,
    active: Vec<RunRow>,
    results: HashMap<String, Vec<(String, String)>>,
    head: i64,
}

async fn load(ui: &Ui) -> Result<Data, Response> {
    let ctx = &ui.ctx;
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    match (
        ctx.store.active_runs().await,
        ctx.store.recent_results(STREAK).await,
        ctx.store.feed_head().await,
    ) {
        (Ok(active), Ok(recent), Ok(head)) => {
            let mut results: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for (system, id, state) in recent {
                results.entry(system).or_default().push((id, state));
            }
            Ok(Data {
                inv,
                table,
                active,
                results,
                head,
            })
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(ui.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Store error",
            &e.to_string(),
        )),
    }
}

/// The rows the filter keeps, sorted as it says.
fn rows<'a>(ui: &Ui, d: &'a Data, f: &Filter) -> Vec<Row<'a>> {
    let (inv, table, results) = (&d.inv, &d.table, &d.results);
    // The newest unfinished run of each system.
    let mut runs: HashMap<&str, &RunRow> = HashMap::new();
    for r in &d.active {
        runs.insert(r.system.as_str(), r);
    }
    static EMPTY: Vec<(String, String)> = Vec::new();
    let empty = &EMPTY;
    let mut rows: Vec<Row> = ui.ctx.power.polled().with(|polled| {
        inv.systems()
            .iter()
            .map(|s| {
                let p = polled.get(&s.name);
                let (power, power_err) = match p.map(|p| &p.state) {
                    Some(Ok(st)) => (st.as_str(), None),
                    Some(Err(e)) => ("unknown", Some(e.clone())),
                    None => ("unknown", None),
                };
                Row {
                    s,
                    run: runs.get(s.name.as_str()).copied(),
                    power,
                    power_at: p.map(|p| p.checked_at),
                    power_err,
                    netboot: table.get(&s.name).is_some(),
                    results: results.get(s.name.as_str()).unwrap_or(empty),
                }
            })
            .filter(|r| r.matches(f))
            .collect()
    });
    match f.sort.as_str() {
        "profile" => rows.sort_by(|a, b| (&a.s.profile, &a.s.name).cmp(&(&b.s.profile, &b.s.name))),
        "ip" => rows.sort_by_key(|r| r.s.ip),
        "power" => rows.sort_by(|a, b| (a.power, &a.s.name).cmp(&(b.power, &b.s.name))),
        "phase" => rows.sort_by(|a, b| {
            let p = |r: &Row| r.run.map(|r| r.state.clone()).unwrap_or_default();
            (p(a), &a.s.name).cmp(&(p(b), &b.s.name))
        }),
        "result" => rows.sort_by(|a, b| (a.last(), &a.s.name).cmp(&(b.last(), &b.s.name))),
        _ => rows.sort_by(|a, b| a.s.name.cmp(&b.s.name)),
    }
    if f.desc {
        rows.reverse();
    }
    rows
}

/// The machines page as HTML (also what the bench renders).
pub async fn render(ui: &Ui, req: &Req, f: &Filter) -> Response {
    let d = match load(ui).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let rows = rows(ui, &d, f);
    let (inv, head) = (&d.inv, d.head);
    let total = rows.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let now = crate::store::now_ms();
    let shown: Vec<Value> = rows
        .iter()
        .skip((f.page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|r| row_json(r, now))
        .collect();
    let sort_links: serde_json::Map<String, Value> = SORTS
        .iter()
        .map(|k| {
            let (link, mark) = match (f.sort == *k, f.desc) {
                (true, false) => (f.link(1, Some(&format!("-{k}"))), "▲"),
                (true, true) => (f.link(1, Some(k)), "▼"),
                _ => (f.link(1, Some(k)), ""),
            };
            (k.to_string(), json!({"link": link, "mark": mark}))
        })
        .collect();
    let profiles: Vec<&String> = inv.profiles().keys().collect();
    let back = f.link(f.page, None);
    ui.render(
        StatusCode::OK,
        req,
        "machines.html",
        json!({
            "nav": "machines",
            "title": "Machines",
            "rows": shown,
            "total": total,
            "systems": inv.systems().len(),
            "page": f.page,
            "pages": pages,
            "prev": (f.page > 1).then(|| f.link(f.page - 1, None)),
            "next": (f.page < pages).then(|| f.link(f.page + 1, None)),
            "q": f.q,
            "profile": f.profile,
            "state": f.state,
            "states": STATES,
            "profiles": profiles,
            "sort": sort_links,
            "back": back,
            "hide": f.hide,
            "columns": COLUMNS.iter().map(|(k, label)| json!({"key": k, "label": label, "shown": !f.hide.contains(&k.to_string())})).collect::<Vec<_>>(),
            "shown_cols": 2 + COLUMNS.len() - f.hide.len(),
            "feed_head": head,
        }),
    )
}

fn row_json(r: &Row, now: i64) -> Value {
    let run = r.run.map(|run| {
        let due = due_of(&run.data);
        json!({
            "id": run.id,
            "phase": run.state,
            "class": phase_class(&run.state),
            "due": due,
            "left": due.map(|d| fmt_dur(d - now)),
            "late": due.is_some_and(|d| d < now),
        })
    });
    // Oldest first, so the newest is on the right.
    let streak: Vec<Value> = r
        .results
        .iter()
        .rev()
        .map(|(id, st)| json!({"id": id, "state": st, "class": phase_class(st)}))
        .collect();
    let last = r
        .results
        .first()
        .map(|(id, st)| json!({"id": id, "state": st, "class": phase_class(st)}));
    json!({
        "name": r.s.name,
        "profile": r.s.profile,
        "ip": r.s.ip.to_string(),
        "power": r.power,
        "power_age": r.power_at.map(|t| fmt_dur(now - t)),
        "power_err": r.power_err,
        "has_bmc": r.s.bmc.is_some(),
        "netboot": r.netboot,
        "run": run,
        "last": last,
        "streak": streak,
    })
}

pub async fn page(State(ui): S, headers: HeaderMap, ext: Extensions, q: QueryArg) -> Response {
    let pairs = match query_or_400(&ui, q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut f = match Filter::parse(&pairs) {
        Ok(f) => f,
        Err(m) => return ui.error(StatusCode::BAD_REQUEST, "Bad request", &m),
    };
    if !f.hide_given {
        // The last choice, kept in a cookie (a bad value is ignored).
        if let Some((_, v)) = super::cookies(&headers)
            .into_iter()
            .find(|(k, _)| k == HIDE_COOKIE)
        {
            f.hide = parse_hide(&super::pct_decode(&v)).unwrap_or_default();
        }
    }
    let req = Req::new(&headers, &ext);
    let t0 = std::time::Instant::now();
    let mut r = render(&ui, &req, &f).await;
    if f.hide_given {
        r.headers_mut().append(
            axum::http::header::SET_COOKIE,
            super::cookie(
                HIDE_COOKIE,
                &super::pct_encode(&f.hide.join(",")),
                Some(365 * 86400),
            ),
        );
    }
    // The server's time for this page (bench/ui-bench.sh reads it).
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("render;dur={ms:.1}")) {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// `POST /ui/actions`: `action` (reimage, cycle, cancel, netboot-on,
/// netboot-off), `system` (one or
/// more), `back` (where to return), `csrf`.
pub async fn action(State(ui): S, headers: HeaderMap, ext: Extensions, form: FormBody) -> Response {
    let form = match form_or_400(&ui, form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    // The audit trail's line: which machines, which action.
    let systems: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "system")
        .map(|(_, v)| v.as_str())
        .collect();
    let note = crate::http::guard::AuditNote {
        target: (!systems.is_empty()).then(|| systems.join(",")),
        detail: json!({"action": field(&form, "action").unwrap_or("")}),
    };
    let mut r = act(&ui, &headers, &ext, &form).await;
    r.extensions_mut().insert(note);
    r
}

async fn act(
    ui: &Ui,
    headers: &HeaderMap,
    ext: &Extensions,
    form: &[(String, String)],
) -> Response {
    let req = Req::new(headers, ext);
    if let Err(r) = ui.check_post(&req, form) {
        return r;
    }
    let back = field(form, "back");
    let mut systems: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "system")
        .map(|(_, v)| v.clone())
        .collect();
    let by_filter = field(form, "scope") == Some("filter");
    if by_filter {
        // Every machine the filter matches (every page), not only the ticked ones.
        let f = match Filter::parse(form) {
            Ok(f) => f,
            Err(m) => return ui.error(StatusCode::BAD_REQUEST, "Bad request", &m),
        };
        let d = match load(ui).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        systems = rows(ui, &d, &f).iter().map(|r| r.s.name.clone()).collect();
        if systems.is_empty() {
            return ui.error(
                StatusCode::BAD_REQUEST,
                "Nothing matches",
                "No machine matches the filter: nothing was done.",
            );
        }
    }
    if systems.is_empty() {
        return ui.error(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            "Select one or more machines (the boxes on the left), then choose an action.",
        );
    }
    let inv = ui.ctx.inventory.borrow().clone();
    if let Some(unknown) = systems.iter().find(|s| inv.system(s).is_none()) {
        return ui.error(
            StatusCode::NOT_FOUND,
            "Unknown machine",
            &format!("There is no machine {unknown:?}."),
        );
    }
    let active = match ui.ctx.store.active_runs().await {
        Ok(a) => a,
        Err(e) => {
            return ui.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Store error",
                &e.to_string(),
            )
        }
    };
    let run_of = |s: &str| active.iter().rev().find(|r| r.system == s);
    // More than one machine (or a whole filter): first a dry run that says
    // how many and which would block the action; the confirmation posts the
    // list it showed.
    let action = field(form, "action").unwrap_or("");
    if (by_filter || systems.len() > 1) && field(form, "confirm") != Some("1") {
        let (label, blockers): (&str, Vec<String>) = match action {
            "reimage" => (
                "Reimage",
                systems
                    .iter()
                    .filter(|s| run_of(s).is_some())
                    .map(|s| format!("{s}: a run is in progress"))
                    .collect(),
            ),
            "cycle" => (
                "Power-cycle",
                systems
                    .iter()
                    .filter_map(|s| {
                        if run_of(s).is_some() {
                            Some(format!("{s}: a run is in progress"))
                        } else if inv.system(s).is_some_and(|x| x.bmc.is_none()) {
                            Some(format!("{s}: no BMC"))
                        } else {
                            None
                        }
                    })
                    .collect(),
            ),
            "cancel" => (
                "Cancel the runs of",
                systems
                    .iter()
                    .filter(|s| run_of(s).is_none())
                    .map(|s| format!("{s}: no run in progress"))
                    .collect(),
            ),
            "netboot-on" => ("Netboot on", vec![]),
            "netboot-off" => ("Netboot off", vec![]),
            other => {
                return ui.error(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    &format!(
                    "unknown action {other:?} (reimage, cycle, cancel, netboot-on, netboot-off)"
                ),
                )
            }
        };
        return ui.render(
            StatusCode::OK,
            &req,
            "confirm.html",
            json!({
                "nav": "machines",
                "title": format!("{label} {} machines?", systems.len()),
                "label": label,
                "action": action,
                "systems": systems,
                "count": systems.len(),
                "blockers": blockers,
                "back": back.unwrap_or("/"),
            }),
        );
    }
    let list = systems.join(", ");
    match action {
        "reimage" => match ui
            .ctx
            .engine
            .create_runs(systems.clone(), None, Some(req.who.clone()), None)
            .await
        {
            Ok(runs) => redirect_with(
                back,
                &format!(
                    "Queued {} reimage run{}: {list}.",
                    runs.len(),
                    if runs.len() == 1 { "" } else { "s" }
                ),
            ),
            Err(e) => {
                let status = match e {
                    crate::engine::CreateError::Busy(_) => StatusCode::CONFLICT,
                    crate::engine::CreateError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    crate::engine::CreateError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ui.error(
                    status,
                    "Reimage refused",
                    &format!("No run was queued: {e}"),
                )
            }
        },
        "cycle" => {
            let busy: Vec<&str> = systems
                .iter()
                .filter(|s| run_of(s).is_some())
                .map(String::as_str)
                .collect();
            if !busy.is_empty() {
                return ui.error(
                    StatusCode::CONFLICT,
                    "Power cycle refused",
                    &format!("These machines have a run in progress (cancel it first): {}. Nothing was done.", busy.join(", ")),
                );
            }
            if let Some(s) = systems
                .iter()
                .find(|s| inv.system(s).is_some_and(|s| s.bmc.is_none()))
            {
                return ui.error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Power cycle refused",
                    &format!("{s} has no BMC. Nothing was done."),
                );
            }
            let calls = systems.iter().filter_map(|name| {
                let bmc = inv.system(name)?.bmc.clone()?;
                let power = ui.ctx.power.clone();
                Some(async move { (name.clone(), power.power(&bmc, PowerOp::Cycle).await) })
            });
            let results = futures_util::future::join_all(calls).await;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
                .collect();
            let ok: Vec<&str> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(n, _)| n.as_str())
                .collect();
            let mut msg = String::new();
            if !ok.is_empty() {
                msg.push_str(&format!("Power-cycled {}. ", ok.join(", ")));
            }
            if !failed.is_empty() {
                msg.push_str(&format!("Failed: {}.", failed.join("; ")));
            }
            redirect_with(back, msg.trim())
        }
        "cancel" => {
            let idle: Vec<&str> = systems
                .iter()
                .filter(|s| run_of(s).is_none())
                .map(String::as_str)
                .collect();
            if !idle.is_empty() {
                return ui.error(
                    StatusCode::CONFLICT,
                    "Cancel refused",
                    &format!(
                        "No run in progress on: {}. Nothing was cancelled.",
                        idle.join(", ")
                    ),
                );
            }
            let mut failed = Vec::new();
            for s in &systems {
                if let Some(r) = run_of(s) {
                    if let Err(e) = ui
                        .ctx
                        .engine
                        .cancel(&r.id, &format!("cancelled from the web UI by {}", req.who))
                        .await
                    {
                        failed.push(format!("{s}: {e}"));
                    }
                }
            }
            if failed.is_empty() {
                redirect_with(back, &format!("Cancelled the runs of {list}."))
            } else {
                redirect_with(back, &format!("Cancel failed: {}.", failed.join("; ")))
            }
        }
        act @ ("netboot-on" | "netboot-off") => {
            // The engine's manual netboot (as `PUT /api/v1/systems/{name}/netboot`).
            let on = act == "netboot-on";
            let mut failed = Vec::new();
            for s in &systems {
                if let Err(e) = ui.ctx.engine.set_netboot(s, on, false).await {
                    failed.push(format!("{s}: {e}"));
                }
            }
            if failed.is_empty() {
                let what = if on {
                    "netboots on its next boot"
                } else {
                    "boots from its disk"
                };
                redirect_with(
                    back,
                    &format!("Netboot {}: {list} {what}.", if on { "on" } else { "off" }),
                )
            } else {
                ui.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Netboot change failed",
                    &failed.join("; "),
                )
            }
        }
        other => ui.error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!("unknown action {other:?} (reimage, cycle, cancel, netboot-on, netboot-off)"),
        ),
    }
}
