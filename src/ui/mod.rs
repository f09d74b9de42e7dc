//! The embedded web UI on the API listener: server-rendered HTML
//! (minijinja, auto-escaped), every asset in the binary, no CDN. Pages read
//! the same store and engine queries as the JSON API; the live parts follow
//! `/api/v1/events` (SSE) and the stage-log endpoint's byte offsets with one
//! small script (`assets/ui.js`). Every page reads fine without it.
//!
//! Actions are HTML forms (POST) that carry a CSRF token: HMAC-SHA256 of the
//! session cookie under a per-daemon random secret. A POST without a valid
//! one is a 403. Who may act: a request from a loopback address, or one
//! with the `rb_auth` cookie, which `/ui/login` sets for a valid API token
//! (its value is an HMAC of the token under the secret, not the token; it
//! lasts until the daemon restarts). With no API token configured at all,
//! the UI changes nothing, like the API.
//!
//! Routes: `/` machines, `/ui/machines/{name}`, `/ui/runs/{id}`,
//! `/ui/queue`, `/ui/discovered`, `/ui/profiles`, `/ui/profiles/{name}`, `/ui/login`, the
//! actions under `/ui/…` (POST) and `/ui/assets/…`.

// Handlers return `Result<_, Response>` to short-circuit with a ready page.
#![allow(clippy::result_large_err)]

mod audit;
mod discovered;
mod machine;
mod machines;
mod profiles;
mod queue;
mod run;
mod webhooks;

use crate::auth::{Principal, Scope};
use crate::http::api::ApiContext;
use crate::http::guard::{Guarded, Routes, AUTH_COOKIE as AUTH};
use axum::extract::State;
use axum::http::Method;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{AutoEscape, Environment};
use serde_json::json;
use std::sync::Arc;

/// Rows per page of the machines page.
pub const PAGE_SIZE: usize = 100;
/// Finished runs shown per machine (the streak).
pub const STREAK: u32 = 10;

const SESSION: &str = "rb_session";
const FLASH: &str = "rb_flash";

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("assets/layout.html")),
    ("machines.html", include_str!("assets/machines.html")),
    ("machine.html", include_str!("assets/machine.html")),
    ("profiles.html", include_str!("assets/profiles.html")),
    ("profile.html", include_str!("assets/profile.html")),
    ("run.html", include_str!("assets/run.html")),
    ("queue.html", include_str!("assets/queue.html")),
    ("audit.html", include_str!("assets/audit.html")),
    ("webhooks.html", include_str!("assets/webhooks.html")),
    ("discovered.html", include_str!("assets/discovered.html")),
    ("error.html", include_str!("assets/error.html")),
    ("login.html", include_str!("assets/login.html")),
    ("confirm.html", include_str!("assets/confirm.html")),
];
const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// The UI's state: the API's context, the compiled templates, the secret.
pub struct Ui {
    pub ctx: ApiContext,
    env: Environment<'static>,
    secret: Vec<u8>,
}

type S = State<Arc<Ui>>;

/// The UI's routes (merged into the API's, behind the same guard): pages
/// need `read`, actions `operate`; the login form and the assets are public.
pub fn router(ctx: ApiContext) -> Guarded {
    Routes::new()
        .get("/", machines::page)
        .post("/ui/actions", Scope::Operate, machines::action)
        .get("/ui/machines/{name}", machine::page)
        .get("/ui/profiles", profiles::list)
        .get("/ui/profiles/{name}", profiles::page)
        .get("/ui/runs/{id}", run::page)
        .get("/ui/runs/{id}/live", run::live)
        .post("/ui/runs/{id}/cancel", Scope::Operate, run::cancel)
        .post("/ui/runs/{id}/retry", Scope::Operate, run::retry)
        .get("/ui/queue", queue::page)
        .get("/ui/audit", audit::page)
        .get("/ui/webhooks", webhooks::page)
        .get("/ui/discovered", discovered::page)
        .post("/ui/discovered/adopt", Scope::Admin, discovered::adopt)
        .post("/ui/discovered/forget", Scope::Admin, discovered::forget)
        .public(Method::GET, "/ui/login", login_page)
        .public(Method::POST, "/ui/login", login)
        .public(Method::POST, "/ui/logout", logout)
        .public(Method::GET, "/ui/assets/ui.css", || async {
            asset("text/css", CSS)
        })
        .public(Method::GET, "/ui/assets/ui.js", || async {
            asset("text/javascript", JS)
        })
        .get("/ui/{*rest}", not_found)
        .with_state(Arc::new(Ui::new(ctx)))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            (header::CACHE_CONTROL, "max-age=300".to_string()),
        ],
        body,
    )
        .into_response()
}

async fn not_found(State(ui): S) -> Response {
    ui.error(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
}

impl Ui {
    pub fn new(ctx: ApiContext) -> Ui {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .unwrap_or_else(|e| panic!("UI template {name}: {e}"));
        }
        let secret = format!(
            "{}{}",
            crate::engine::random_token(),
            crate::engine::random_token()
        )
        .into_bytes();
        Ui { ctx, env, secret }
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        crate::auth::hmac_hex(&self.secret, purpose, value)
    }

    /// Render `template` (which extends the layout) as a full page.
    fn render(
        &self,
        status: StatusCode,
        req: &Req,
        template: &str,
        mut ctx: serde_json::Value,
    ) -> Response {
        if let serde_json::Value::Object(m) = &mut ctx {
            m.insert("csrf".into(), self.mac("csrf", &req.session).into());
            m.insert("can_act".into(), req.can_act.into());
            m.insert("user".into(), req.user.clone().into());
            m.insert("flash".into(), req.flash.clone().into());
            m.insert("now".into(), crate::store::now_ms().into());
        }
        let html = self
            .env
            .get_template(template)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))));
        let mut resp = match html {
            Ok(h) => (status, h).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "UI template failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "template error\n").into_response();
            }
        };
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, hv("text/html; charset=utf-8"));
        secure_headers(h);
        if req.new_session {
            h.append(
                header::SET_COOKIE,
                cookie(SESSION, &req.session, Some(365 * 86400)),
            );
        }
        if req.flash.is_some() {
            h.append(header::SET_COOKIE, cookie(FLASH, "", Some(0)));
        }
        resp
    }

    /// An error page (no session needed, no forms).
    pub fn error(&self, status: StatusCode, title: &str, message: &str) -> Response {
        let req = Req::anonymous();
        self.render(
            status,
            &req,
            "error.html",
            json!({"nav": "error", "title": title, "message": message, "status": status.as_u16()}),
        )
    }

    /// Check a POST: its CSRF token first (403), then who may act (403).
    fn check_post(&self, req: &Req, form: &[(String, String)]) -> Result<(), Response> {
        let given = field(form, "csrf").unwrap_or("");
        let want = self.mac("csrf", &req.session);
        if req.new_session
            || !crate::http::boot::constant_time_eq(given.as_bytes(), want.as_bytes())
        {
            return Err(self.error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form's CSRF token is missing or stale: reload the page and try again.",
            ));
        }
        if !req.can_act {
            return Err(self.error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Changes from the web UI need a token with the operate or admin scope: \
                 log out and log in with one.",
            ));
        }
        Ok(())
    }
}

/// What a page needs to know about the request.
pub struct Req {
    session: String,
    new_session: bool,
    can_act: bool,
    flash: Option<String>,
    /// Who asked (the token's name, for `requested_by`).
    who: String,
    /// Shown in the header: the token's name and scope.
    user: Option<String>,
}

impl Req {
    fn anonymous() -> Req {
        Req {
            session: String::new(),
            new_session: false,
            can_act: false,
            flash: None,
            who: "ui".into(),
            user: None,
        }
    }

    fn new(headers: &HeaderMap, ext: &Extensions) -> Req {
        let cookies = cookies(headers);
        let get = |k: &str| cookies.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (session, new_session) = match get(SESSION) {
            Some(s) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => (s, false),
            _ => (crate::engine::random_token(), true),
        };
        let who = ext.get::<Principal>();
        let can_act = who.is_some_and(|p| p.scope >= Scope::Operate);
        let user = who.map(|p| format!("{} ({})", p.name, p.scope));
        let who = match who {
            Some(p) => p.name.clone(),
            None => "ui".into(),
        };
        Req {
            session,
            new_session,
            can_act,
            flash: get(FLASH).map(|f| pct_decode(&f)).filter(|f| !f.is_empty()),
            who,
            user,
        }
    }
}

fn cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cookie(name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict{age}"
    ))
    .unwrap_or_else(|_| hv(""))
}

fn hv(s: &'static str) -> HeaderValue {
    HeaderValue::from_static(s)
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        hv("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(header::X_FRAME_OPTIONS, hv("DENY"));
    h.insert(header::REFERRER_POLICY, hv("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, hv("nosniff"));
    h.insert(header::CACHE_CONTROL, hv("no-store"));
}

/// A form field's first value.
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// 303 to `back` (a path of this site, else `/`), with a one-time message.
fn redirect_with(back: Option<&str>, flash: &str) -> Response {
    let back = match back {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => b,
        _ => "/",
    };
    let mut r = Redirect::to(back).into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, cookie(FLASH, &pct_encode(flash), None));
    r
}

/// Percent-encode everything but unreserved characters (query values, cookies).
pub fn pct_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `1h 02m`, `3m 05s`, `12s`, `2d 3h` (negative: `-` first).
pub fn fmt_dur(ms: i64) -> String {
    let neg = ms < 0;
    let s = ms.unsigned_abs() / 1000;
    let t = match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    };
    if neg {
        format!("-{t}")
    } else {
        t
    }
}

/// `2026-08-21 12:34:56 UTC`.
pub fn fmt_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&f).unwrap_or_default()
}

/// A phase's colour class: `ok`, `bad`, `off`, `run`, `wait`.
pub fn phase_class(state: &str) -> &'static str {
    match state {
        "succeeded" => "ok",
        "failed" | "timed_out" => "bad",
        "cancelled" => "off",
        "queued" => "wait",
        "" => "",
        _ => "run",
    }
}

/// The deadline of a run's current phase, from its stored state data.
pub fn due_of(data: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()?
        .get("due")?
        .as_i64()
}

async fn login_page(State(ui): S, headers: HeaderMap, ext: Extensions, q: QueryArg) -> Response {
    let mut req = Req::new(&headers, &ext);
    // The login page is public: say who is logged in from the cookie itself.
    let cookie_user = cookies(&headers)
        .into_iter()
        .find(|(k, _)| k == AUTH)
        .and_then(|(_, v)| {
            ui.ctx
                .auth
                .from_cookie(&v)
                .map(|t| format!("{} ({})", t.name, t.scope))
        });
    req.user = req.user.take().or(cookie_user);
    let next = q
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "next").map(|(_, v)| v))
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or_else(|| "/".into());
    ui.render(
        StatusCode::OK,
        &req,
        "login.html",
        json!({"nav": "login", "title": "Log in", "next": next}),
    )
}

async fn login(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    form: axum::Form<Vec<(String, String)>>,
) -> Response {
    let req = Req::new(&headers, &ext);
    let given = field(&form, "csrf").unwrap_or("");
    if req.new_session
        || !crate::http::boot::constant_time_eq(
            given.as_bytes(),
            ui.mac("csrf", &req.session).as_bytes(),
        )
    {
        return ui.error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The form's CSRF token is missing or stale: reload the page and try again.",
        );
    }
    let given = field(&form, "token").unwrap_or("").trim();
    let Some(token) = ui.ctx.auth.find(given) else {
        ui.ctx
            .auth
            .stats
            .invalid
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return ui.error(
            StatusCode::UNAUTHORIZED,
            "Wrong token",
            "That is not one of this daemon's API tokens.",
        );
    };
    // Back to the page that sent here (a local path only).
    let next = field(&form, "next")
        .filter(|n| n.starts_with('/') && !n.starts_with("//"))
        .unwrap_or("/");
    let mut r = redirect_with(
        Some(next),
        &format!(
            "Logged in as {} ({}) until the daemon restarts.",
            token.name, token.scope
        ),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie(AUTH, &ui.ctx.auth.cookie_for(token), Some(7 * 86400)),
    );
    r
}

async fn logout(
    State(ui): S,
    headers: HeaderMap,
    ext: Extensions,
    form: axum::Form<Vec<(String, String)>>,
) -> Response {
    let req = Req::new(&headers, &ext);
    let given = field(&form, "csrf").unwrap_or("");
    if !crate::http::boot::constant_time_eq(
        given.as_bytes(),
        ui.mac("csrf", &req.session).as_bytes(),
    ) {
        return ui.error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Missing or stale CSRF token.",
        );
    }
    let mut r = redirect_with(Some("/"), "Logged out.");
    r.headers_mut()
        .append(header::SET_COOKIE, cookie(AUTH, "", Some(0)));
    r
}

/// A form body, or the 400/415 page when it is not one.
type FormBody = Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>;

fn form_or_400(ui: &Ui, f: FormBody) -> Result<Vec<(String, String)>, Response> {
    f.map(|f| f.0).map_err(|e| {
        ui.error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!("expected an HTML form: {e}"),
        )
    })
}

/// An action's POST: the form (400 if it is not one), the request, its CSRF
/// token and who may act (403), in that order.
fn posted(
    ui: &Ui,
    headers: &HeaderMap,
    ext: &Extensions,
    f: FormBody,
) -> Result<(Req, Vec<(String, String)>), Response> {
    let form = form_or_400(ui, f)?;
    let req = Req::new(headers, ext);
    ui.check_post(&req, &form)?;
    Ok((req, form))
}

/// A query string, or the 400 page.
type QueryArg =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn query_or_400(ui: &Ui, q: QueryArg) -> Result<Vec<(String, String)>, Response> {
    q.map(|q| q.0).map_err(|e| {
        ui.error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &format!("malformed query: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percent_coding() {
        assert_eq!(fmt_dur(0), "0s");
        assert_eq!(fmt_dur(61_000), "1m 01s");
        assert_eq!(fmt_dur(3_725_000), "1h 02m");
        assert_eq!(fmt_dur(-5_000), "-5s");
        assert_eq!(fmt_dur(90_000_000), "1d 1h");
        let s = "Queued 2 runs: a&b, c=d ü";
        assert_eq!(pct_decode(&pct_encode(s)), s);
        assert_eq!(pct_decode("%zz%4"), "%zz%4");
        assert_eq!(due_of(r#"{"due": 5}"#), Some(5));
        assert_eq!(due_of("{}"), None);
    }
}
