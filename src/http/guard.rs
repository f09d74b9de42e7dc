//! The operator listener's gate: every route is added through [`Routes`],
//! which records the scope it needs next to the handler, so the table the
//! guard enforces *is* the router (a route cannot be added without one, and
//! the 401/403 test walks the same table).
//!
//! - no token → 401 (`/ui/...` pages: 303 to the login page); a token whose
//!   scope is too weak → 403; the token is a `Authorization: Bearer` header
//!   or the UI's login cookie; compared in constant time, never logged;
//! - the token's [`Principal`] goes into the request's extensions;
//! - every authorized request that is not a GET is written to the audit
//!   trail after the handler ran, with what the handler attached
//!   ([`AuditNote`]: target, before → after).

use crate::auth::{Auth, Principal, Scope};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The UI's login cookie (value: `Auth::cookie_for`).
pub const AUTH_COOKIE: &str = "rb_auth";
pub use crate::api::CLIENT_HEADER;

/// One route and what it needs (`None`: public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub method: Method,
    pub path: &'static str,
    pub scope: Option<Scope>,
}

/// A router under construction and its rules.
pub struct Routes<S> {
    router: Router<S>,
    rules: Vec<Rule>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes {
            router: Router::new(),
            rules: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, scope: Option<Scope>, h: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let mr = match method {
            Method::GET => axum::routing::get(h),
            Method::POST => axum::routing::post(h),
            Method::PUT => axum::routing::put(h),
            Method::DELETE => axum::routing::delete(h),
            _ => unreachable!("rackboot routes are GET, POST, PUT or DELETE"),
        };
        assert!(
            !self
                .rules
                .iter()
                .any(|r| r.method == method && r.path == path),
            "{method} {path} added twice"
        );
        self.rules.push(Rule {
            method,
            path,
            scope,
        });
        self.router = self.router.route(path, mr);
        self
    }

    /// A GET that needs `read`.
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, Some(Scope::Read), h)
    }
    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, s: Scope, h: H) -> Self {
        self.add(Method::POST, path, Some(s), h)
    }
    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, s: Scope, h: H) -> Self {
        self.add(Method::PUT, path, Some(s), h)
    }
    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, s: Scope, h: H) -> Self {
        self.add(Method::DELETE, path, Some(s), h)
    }
    /// A route anyone may call (health, the login form, static assets).
    pub fn public<H: Handler<T, S>, T: 'static>(
        self,
        method: Method,
        path: &'static str,
        h: H,
    ) -> Self {
        self.add(method, path, None, h)
    }

    pub fn with_state(self, state: S) -> Guarded {
        Guarded {
            router: self.router.with_state(state),
            rules: self.rules,
        }
    }
}

/// Routes with their state, ready to merge with others and be guarded.
pub struct Guarded {
    pub router: Router,
    pub rules: Vec<Rule>,
}

impl Guarded {
    pub fn merge(mut self, other: Guarded) -> Guarded {
        self.router = self.router.merge(other.router);
        self.rules.extend(other.rules);
        self
    }

    /// The router with the guard in front of every route.
    pub fn guard(self, auth: Arc<Auth>, audit: Option<crate::store::Store>) -> Router {
        let g = Arc::new(Gate {
            rules: self
                .rules
                .iter()
                .map(|r| ((r.method.clone(), r.path), r.scope))
                .collect(),
            auth,
            audit,
        });
        self.router
            .route_layer(axum::middleware::from_fn_with_state(g, gate))
    }
}

struct Gate {
    rules: HashMap<(Method, &'static str), Option<Scope>>,
    auth: Arc<Auth>,
    audit: Option<crate::store::Store>,
}

/// What a handler tells the audit trail about a change it made (a response
/// extension): the object and, for edits, its state before and after.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub target: Option<String>,
    pub detail: Value,
}

impl AuditNote {
    pub fn attach(mut r: Response, target: impl Into<String>, detail: Value) -> Response {
        r.extensions_mut().insert(AuditNote {
            target: Some(target.into()),
            detail,
        });
        r
    }
}

/// The credential a request carries: a bearer token, else the UI cookie.
enum Given<'a> {
    None,
    Bearer(&'a str),
    Cookie(String),
}

fn given(headers: &HeaderMap) -> Given<'_> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        return Given::Bearer(
            v.to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .unwrap_or(""),
        );
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == AUTH_COOKIE)
        .map(|(_, v)| v.to_string());
    match cookie {
        Some(c) => Given::Cookie(c),
        None => Given::None,
    }
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    crate::http::api::error(status, code, message)
}

async fn gate(State(g): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let Some(&need) = g.rules.get(&(method.clone(), path.as_str())) else {
        // A known path with another method: what the router would answer.
        let allow: Vec<&str> = g
            .rules
            .keys()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        if !allow.is_empty() {
            let mut allow = allow;
            allow.sort_unstable();
            let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&allow.join(", ")) {
                r.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return r;
        }
        // Only reachable if a route bypassed `Routes`: refuse rather than open it.
        tracing::error!(%method, path, "route without a scope rule: refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "no_scope_rule",
            format!("{method} {path} has no scope rule"),
        );
    };
    let Some(need) = need else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let is_ui = path == "/" || path.starts_with("/ui/");
    let token = match given(req.headers()) {
        Given::Bearer(s) => g.auth.find(s),
        Given::Cookie(c) => g.auth.from_cookie(&c),
        Given::None => {
            g.auth.stats.missing.fetch_add(1, Ordering::Relaxed);
            if is_ui && method == Method::GET {
                let next_url = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let to = format!("/ui/login?next={}", pct(next_url));
                return (
                    StatusCode::SEE_OTHER,
                    [
                        (header::LOCATION, to),
                        (header::CACHE_CONTROL, "no-store".into()),
                    ],
                )
                    .into_response();
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                if g.auth.is_empty() {
                    "no API token is configured: the operator API is closed".into()
                } else {
                    "this needs `Authorization: Bearer <token>` (see api.tokens_file)".into()
                },
            );
        }
    };
    let Some(token) = token else {
        g.auth.stats.invalid.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%method, path, peer = peer.as_deref().unwrap_or("?"), "API request with a wrong token");
        if is_ui && method == Method::GET {
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/ui/login".to_string())],
            )
                .into_response();
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token (or a login from before the daemon restarted)".into(),
        );
    };
    if token.scope < need {
        g.auth.stats.forbidden.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%method, path, token = %token.name, scope = %token.scope, need = %need, "API request beyond its token's scope");
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {:?} has scope {}; {method} {path} needs {need}",
                token.name, token.scope
            ),
        );
    }
    let who = Principal {
        name: token.name.clone(),
        scope: token.scope,
    };
    req.extensions_mut().insert(who.clone());
    if method == Method::GET {
        return next.run(req).await;
    }
    let via = if is_ui {
        "ui"
    } else if req
        .headers()
        .get(CLIENT_HEADER)
        .is_some_and(|v| v.as_bytes() == b"cli")
    {
        "cli"
    } else {
        "api"
    };
    let uri_path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if let Some(store) = &g.audit {
        let note = resp
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        let row = crate::api::AuditEntry {
            id: 0,
            at: crate::store::now_ms(),
            actor: who.name,
            scope: who.scope.as_str().into(),
            via: via.into(),
            remote: peer.unwrap_or_default(),
            action: format!("{method} {path}"),
            target: note.target.unwrap_or_else(|| target_of(&path, &uri_path)),
            path: uri_path,
            status: resp.status().as_u16(),
            detail: note.detail,
        };
        if let Err(e) = store.append_audit(&row).await {
            tracing::error!(error = %e, action = %row.action, "cannot write the audit trail");
        }
    }
    resp
}

/// Percent-encode a path or query value (unreserved characters and `/` kept).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `{name}` or `{id}` of a route template, read off the request's path
/// ("" when the route has neither).
pub fn target_of(template: &str, path: &str) -> String {
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == "{name}" || *t == "{id}")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_name_or_id_segment() {
        assert_eq!(
            target_of("/api/v1/systems/{name}/power", "/api/v1/systems/n7/power"),
            "n7"
        );
        assert_eq!(
            target_of("/api/v1/runs/{id}/cancel", "/api/v1/runs/run-1/cancel"),
            "run-1"
        );
        assert_eq!(target_of("/api/v1/reload", "/api/v1/reload"), "");
    }

    #[test]
    fn pct_keeps_paths_readable() {
        assert_eq!(pct("/ui/runs/r-1?x=a b"), "/ui/runs/r-1%3Fx%3Da%20b");
    }
}
