//! Machine-facing HTTP: iPXE scripts, kernels/initrds, installer configs and
//! the install-done callback. These URLs are baked into scripts and installers:
//! keep them stable. Reads snapshots only; the callback goes to the engine.

use crate::boot::{self, BootDecision, BootTable};
use crate::engine::EngineHandle;
use crate::http::boot_conn;
use crate::inventory::Inventory;
use crate::model::Mac;
use crate::observe::{HttpServed, Observation, ObservationSink};
use crate::render::RenderKind;
use crate::template::RunCtx;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tower::ServiceExt;

/// The boot router's route templates, as `MatchedPath` reports them (the
/// metrics' `route` label: never a concrete path, so no MAC). A request that
/// matches none (404 fallback) is counted under [`UNMATCHED`].
pub const ROUTES: [&str; 9] = [
    "/healthz",
    "/boot.ipxe",
    "/ipxe/{mac}",
    "/ks/{mac}",
    "/nocloud/{mac}/{doc}",
    BOOT_FILES,
    "/firmware/{*path}",
    "/done/{mac}",
    "/facts/{mac}",
];
pub const UNMATCHED: &str = "unmatched";
/// The boot files' route (also answered by [`BootFiles::whole_file`]).
pub const BOOT_FILES: &str = "/boot/{*path}";
/// Status classes counted per route; 1xx is counted as 2xx (never final here).
pub const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Counters of the boot HTTP server.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicU64,
    pub bad_request: AtomicU64,
    pub not_found: AtomicU64,
    pub forbidden: AtomicU64,
    pub render_errors: AtomicU64,
    /// Install-done callbacks with a valid token (before the engine takes them).
    pub callbacks: AtomicU64,
    /// Callbacks the engine took (200).
    pub callbacks_accepted: AtomicU64,
    /// Callbacks refused here: bad or unknown MAC, wrong token, no run pending.
    pub callbacks_refused: AtomicU64,
    /// Callbacks with a valid token the engine did not take (503; the installer retries).
    pub callbacks_not_taken: AtomicU64,
    /// Facts reports stored / refused (bad token, no run, malformed or oversized).
    pub facts_accepted: AtomicU64,
    pub facts_refused: AtomicU64,
    /// Bytes of static files sent with `sendfile(2)` (`http::boot_conn`).
    pub sendfile_bytes: AtomicU64,
    /// Static-file responses whose body went out with `sendfile(2)`, whole.
    pub sendfile_responses: AtomicU64,
    /// Responses by route (`ROUTES` index, then `UNMATCHED`) and status class.
    responses: [[AtomicU64; STATUS_CLASSES.len()]; ROUTES.len() + 1],
}

impl HttpStats {
    /// Responses for route template `route` (an entry of [`ROUTES`] or
    /// [`UNMATCHED`]) in status class `class` (an entry of [`STATUS_CLASSES`]).
    pub fn responses(&self, route: &str, class: &str) -> u64 {
        let r = ROUTES
            .iter()
            .position(|x| *x == route)
            .unwrap_or(ROUTES.len());
        STATUS_CLASSES
            .iter()
            .position(|c| *c == class)
            .map(|c| self.responses[r][c].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn count_response(&self, route: Option<&str>, status: StatusCode) {
        let r = route
            .and_then(|m| ROUTES.iter().position(|x| *x == m))
            .unwrap_or(ROUTES.len());
        let c = match status.as_u16() {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[r][c].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "bad_request": self.bad_request.load(Ordering::Relaxed),
            "not_found": self.not_found.load(Ordering::Relaxed),
            "forbidden": self.forbidden.load(Ordering::Relaxed),
            "render_errors": self.render_errors.load(Ordering::Relaxed),
            "callbacks": self.callbacks.load(Ordering::Relaxed),
        })
    }
}

/// What the boot HTTP handlers need: snapshots, dirs, the observation sink.
#[derive(Clone)]
pub struct BootContext {
    pub inventory: watch::Receiver<Arc<Inventory>>,
    pub table: watch::Receiver<Arc<BootTable>>,
    pub boot_dir: PathBuf,
    pub firmware_dir: PathBuf,
    pub obs: ObservationSink,
    pub stats: Arc<HttpStats>,
    pub engine: Option<EngineHandle>,
    /// rackboot gives machines their addresses (reservations / pool): an
    /// installer config is served only to the machine's own reserved IP.
    pub own_ip_only: bool,
    /// `dhcp.inspect_discovered`: MACs outside the inventory get the
    /// inspection image, and their facts reports are checked against this
    /// token secret (`None`: off, they get nothing).
    pub discovered: Option<boot::DiscoveredInspect>,
}

pub fn router(ctx: BootContext) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/boot.ipxe", get(generic_script))
        .route("/ipxe/{mac}", get(mac_script))
        .route("/ks/{mac}", get(installer_config))
        .route("/nocloud/{mac}/{doc}", get(nocloud))
        .route(BOOT_FILES, get(boot_file))
        .route("/firmware/{*path}", get(firmware_file))
        .route("/done/{mac}", get(done).post(done))
        // A body of at most facts::MAX_BYTES (+ slack for the 413 check itself).
        .route(
            "/facts/{mac}",
            axum::routing::post(facts).layer(axum::extract::DefaultBodyLimit::max(
                crate::facts::MAX_BYTES + 1,
            )),
        )
        .with_state(ctx.clone())
        // `layer` (not `route_layer`): the 404 fallback is counted too.
        .layer(axum::middleware::from_fn_with_state(
            ctx.stats,
            count_responses,
        ))
}

/// Counts every response by route template and status class.
async fn count_responses(
    State(stats): State<Arc<HttpStats>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let res = next.run(req).await;
    stats.count_response(route.as_deref(), res.status());
    res
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

impl BootContext {
    fn bad_request(&self, msg: String) -> Response {
        self.stats.bad_request.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_REQUEST, msg + "\n")
    }

    fn not_found(&self, msg: String) -> Response {
        self.stats.not_found.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::NOT_FOUND, msg + "\n")
    }

    fn forbidden(&self, msg: String) -> Response {
        self.stats.forbidden.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::FORBIDDEN, msg + "\n")
    }

    fn render_error(&self, mac: &Mac, e: impl std::fmt::Display) -> Response {
        self.stats.render_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%mac, error = %e, "template failed to render");
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "template error (see daemon log)\n",
        )
    }

    fn parse_mac(&self, s: &str) -> Result<Mac, Response> {
        s.parse::<Mac>()
            .map_err(|e| self.bad_request(e.to_string()))
    }
}

fn peer_ip(ci: &SocketAddr) -> IpAddr {
    ci.ip()
}

async fn generic_script(State(ctx): State<BootContext>) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let inv = ctx.inventory.borrow().clone();
    text(StatusCode::OK, boot::generic_ipxe_script(&inv))
}

async fn mac_script(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let mac = match ctx.parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    let d = boot::decide(&inv, &table, &mac);
    let local = matches!(d, BootDecision::LocalDisk(_));
    if let (BootDecision::Ignore, Some(di)) = (&d, &ctx.discovered) {
        return match boot::discovered_render(&inv, di, &mac, RenderKind::Ipxe) {
            None => ctx.not_found(format!("{mac} is not in the inventory")),
            Some(Err(e)) => ctx.render_error(&mac, e),
            Some(Ok(script)) => {
                tracing::info!(%mac, "served the inspection script to a discovered machine");
                text(StatusCode::OK, script.unwrap_or_default())
            }
        };
    }
    match boot::ipxe_script(&inv, &d) {
        None => ctx.not_found(format!("{mac} is not in the inventory")),
        Some(Err(e)) => ctx.render_error(&mac, e),
        Some(Ok(script)) => {
            tracing::info!(%mac, local, "served iPXE script");
            ctx.obs.emit(Observation::Http {
                mac: Some(mac),
                peer: peer_ip(&ci),
                what: HttpServed::Script { local },
            });
            text(StatusCode::OK, script)
        }
    }
}

/// Installer configs are served only during the machine's run, only to its own
/// address where rackboot assigns addresses, and never to another inventory
/// machine's address.
fn install_target<'a>(
    ctx: &BootContext,
    inv: &'a Inventory,
    table: &'a BootTable,
    mac: &Mac,
    peer: IpAddr,
) -> Result<(&'a crate::inventory::System, &'a crate::render::RunCtx), Response> {
    match boot::decide(inv, table, mac) {
        BootDecision::Ignore => Err(ctx.not_found(format!("{mac} is not in the inventory"))),
        BootDecision::LocalDisk(s) => Err(ctx.not_found(format!(
            "{} has no reimage pending: no installer config is served",
            s.name
        ))),
        BootDecision::Install { system, run } => {
            if ctx.own_ip_only && peer != IpAddr::V4(system.ip) {
                tracing::warn!(%mac, %peer, system = %system.name, "installer config requested from another address than the machine's: refused");
                return Err(ctx.forbidden(format!(
                    "{} is served to {} only, not to {peer}",
                    system.name, system.ip
                )));
            }
            if let IpAddr::V4(v4) = peer {
                if let Some(other) = inv.by_ip(&v4) {
                    if other.name != system.name {
                        tracing::warn!(%mac, %peer, other = %other.name, "installer config requested by another machine: refused");
                        return Err(ctx.forbidden(format!(
                            "{peer} belongs to {}, not to {}",
                            other.name, system.name
                        )));
                    }
                }
            }
            Ok((system, run))
        }
    }
}

async fn installer_config(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
) -> Response {
    serve_rendered(ctx, ci, mac, RenderKind::Config).await
}

async fn nocloud(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path((mac, doc)): Path<(String, String)>,
) -> Response {
    let kind = match doc.as_str() {
        "user-data" => RenderKind::UserData,
        "meta-data" => RenderKind::MetaData,
        "vendor-data" => RenderKind::VendorData,
        _ => {
            ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
            return ctx.not_found(format!("no NoCloud document {doc:?}"));
        }
    };
    serve_rendered(ctx, ci, mac, kind).await
}

async fn serve_rendered(
    ctx: BootContext,
    ci: SocketAddr,
    mac: String,
    kind: RenderKind,
) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let mac = match ctx.parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let peer = peer_ip(&ci);
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    if let (None, Some(di)) = (inv.by_mac(&mac), &ctx.discovered) {
        return discovered_config(&ctx, &inv, di, &mac, peer, kind);
    }
    let (system, run) = match install_target(&ctx, &inv, &table, &mac, peer) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match inv.render(system, kind, run) {
        Ok(Some(body)) => {
            tracing::info!(%mac, system = %system.name, run = %run.id, kind = kind.as_str(), "served installer config");
            ctx.obs.emit(Observation::Http {
                mac: Some(mac),
                peer,
                what: HttpServed::Config {
                    kind: kind.as_str().to_string(),
                },
            });
            text(StatusCode::OK, body)
        }
        Ok(None) => ctx.not_found(format!(
            "profile {} has no {} template",
            system.profile,
            kind.as_str()
        )),
        Err(e) => ctx.render_error(&mac, e),
    }
}

/// A discovered machine's inspection config: never to an inventory
/// machine's address (its own is the pool's or the site DHCP's, unknown here).
fn discovered_config(
    ctx: &BootContext,
    inv: &Inventory,
    di: &boot::DiscoveredInspect,
    mac: &Mac,
    peer: IpAddr,
    kind: RenderKind,
) -> Response {
    if let IpAddr::V4(v4) = peer {
        if let Some(other) = inv.by_ip(&v4) {
            tracing::warn!(%mac, %peer, other = %other.name, "a discovered machine's inspection config requested by an inventory machine: refused");
            return ctx.forbidden(format!("{peer} belongs to {}, not to {mac}", other.name));
        }
    }
    match boot::discovered_render(inv, di, mac, kind) {
        None => ctx.not_found(format!("{mac} is not in the inventory")),
        Some(Ok(Some(body))) => {
            tracing::info!(%mac, %peer, kind = kind.as_str(), "served a discovered machine's inspection config");
            text(StatusCode::OK, body)
        }
        Some(Ok(None)) => ctx.not_found(format!(
            "profile {} has no {} template",
            boot::DISCOVERED_PROFILE,
            kind.as_str()
        )),
        Some(Err(e)) => ctx.render_error(mac, e),
    }
}

async fn boot_file(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let peer = peer_ip(&ci);
    let what = {
        let inv = ctx.inventory.borrow();
        classify_file(&inv, peer, &path)
    };
    let root = ctx.boot_dir.clone();
    serve_static(&ctx, root, &path, req, what.map(|w| (peer, w))).await
}

async fn firmware_file(
    State(ctx): State<BootContext>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let root = ctx.firmware_dir.clone();
    serve_static(&ctx, root, &path, req, None).await
}

/// The machine at `peer` and what the file is to it (kernel or initrd of its
/// profile, or a plain file); None when `peer` is no machine (nothing to
/// observe: an observation naming no machine is not sent).
fn classify_file(inv: &Inventory, peer: IpAddr, path: &str) -> Option<(Mac, HttpServed)> {
    if let IpAddr::V4(v4) = peer {
        if let Some((s, kind)) = boot::boot_file_of(inv, v4, path) {
            let what = match kind {
                boot::BootFileKind::Kernel => HttpServed::Kernel,
                boot::BootFileKind::Initrd => HttpServed::Initrd,
                boot::BootFileKind::Other => HttpServed::File {
                    path: path.to_string(),
                },
            };
            return Some((s.primary_mac(), what));
        }
    }
    None
}

/// Static files with HEAD, Content-Length and Range (tower-http's ServeDir,
/// which also refuses paths that escape the root). On the boot listener
/// (`http::boot_conn`) a GET's answer carries the file for `sendfile`
/// instead of ServeDir's body.
async fn serve_static(
    ctx: &BootContext,
    root: PathBuf,
    path: &str,
    req: Request,
    observe: Option<(IpAddr, (Mac, HttpServed))>,
) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    if path.split('/').any(|c| c == "..") || path.contains('\\') {
        return ctx.bad_request(format!("path {path:?} is not allowed"));
    }
    let zero_copy =
        req.method() == Method::GET && req.extensions().get::<boot_conn::ZeroCopy>().is_some();
    let (mut parts, body) = req.into_parts();
    let uri: Uri = match format!("/{path}").parse() {
        Ok(u) => u,
        Err(_) => return ctx.bad_request(format!("path {path:?} is not a valid URI path")),
    };
    parts.uri = uri.clone();
    let serve_dir = |req: Request| async {
        match tower_http::services::ServeDir::new(&root)
            .oneshot(req)
            .await
        {
            Ok(r) => r.map(Body::new),
            Err(e) => match e {},
        }
    };
    // On the boot listener a GET asks ServeDir for the HEAD answer (the same
    // headers and status from the file's metadata, without opening it for
    // a body nobody reads) and opens the file once, here, for `sendfile`.
    // Anything but a 200/206 with the file opened is asked again as the GET.
    let mut sent_file = None;
    if zero_copy && unconditional(&parts.headers) {
        // The common case, a whole file: answered here from one open and
        // one fstat on this thread (page-cache hot), with ServeDir's headers
        // (`plain_file`), without ServeDir's trips to the blocking pool.
        sent_file = plain_file(&root, &uri);
    }
    if zero_copy && sent_file.is_none() {
        let mut probe = Request::new(Body::empty());
        *probe.method_mut() = Method::HEAD;
        *probe.uri_mut() = uri.clone();
        *probe.headers_mut() = parts.headers.clone();
        let mut res = serve_dir(probe).await;
        if res.status() == StatusCode::OK || res.status() == StatusCode::PARTIAL_CONTENT {
            if let Some(sf) = send_file_for(&root, &uri, &res) {
                res.extensions_mut().insert(sf);
                sent_file = Some(res);
            }
        }
    }
    let res = match sent_file {
        Some(res) => res,
        None => serve_dir(Request::from_parts(parts, body)).await,
    };
    ctx.file_answered(res.status(), observe);
    res
}

impl BootContext {
    /// What every static-file answer counts and observes, whichever path
    /// gave it (`serve_static` or [`BootFiles::whole_file`]).
    fn file_answered(&self, status: StatusCode, observe: Option<(IpAddr, (Mac, HttpServed))>) {
        if status == StatusCode::NOT_FOUND {
            self.stats.not_found.fetch_add(1, Ordering::Relaxed);
        } else if status.is_success() {
            if let Some((peer, (mac, what))) = observe {
                let mac = Some(mac);
                self.obs.emit(Observation::Http { mac, peer, what });
            }
        }
    }
}

/// The boot files' common case without the router: a GET of a whole file
/// under `/boot/` on the boot listener (`http::boot_conn`), the request a
/// rack of machines pulling kernels and images makes. The answer, the
/// counters (requests, the route's responses) and the observation are the
/// route's (`boot_file`); anything it does not take is left to the router.
#[derive(Clone)]
pub struct BootFiles(BootContext);

impl BootFiles {
    pub fn new(ctx: &BootContext) -> Self {
        BootFiles(ctx.clone())
    }

    pub fn stats(&self) -> &Arc<HttpStats> {
        &self.0.stats
    }

    /// `GET /boot/{rest}` (no query, Range or conditional header) from
    /// `peer`: the file, opened, counted and observed as the route does.
    /// None, with nothing counted, when the router must answer: a path
    /// with anything but plain characters (percent-escapes, `.`/`..`,
    /// empty components), a missing file, a directory.
    pub fn whole_file(&self, peer: SocketAddr, rest: &str) -> Option<WholeFile> {
        if !plain_path(rest) {
            return None;
        }
        let file = WholeFile::open(self.0.boot_dir.join(rest))?;
        let ctx = &self.0;
        ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
        ctx.stats.count_response(Some(BOOT_FILES), StatusCode::OK);
        let peer = peer_ip(&peer);
        let what = classify_file(&ctx.inventory.borrow(), peer, rest);
        ctx.file_answered(StatusCode::OK, what.map(|w| (peer, w)));
        Some(file)
    }
}

/// A path the router would decode, check and join to the same file: plain
/// characters only, so percent-decoding changes nothing, and only normal,
/// non-empty components.
fn plain_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-~+".contains(&b))
        })
}

/// Request headers that make a GET of a file anything but the whole file.
pub const NOT_WHOLE: [header::HeaderName; 6] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// A GET without Range or conditional headers: the answer is the whole
/// file, whatever its dates (ServeDir would say the same).
fn unconditional(h: &axum::http::HeaderMap) -> bool {
    NOT_WHOLE.iter().all(|k| !h.contains_key(k))
}

/// ServeDir's path rules: percent-decoded, normal components only, joined
/// to the root.
fn file_path(root: &std::path::Path, uri: &Uri) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(uri.path().trim_start_matches('/'))
        .decode_utf8()
        .ok()?;
    let mut path = root.to_path_buf();
    for c in std::path::Path::new(&*decoded).components() {
        match c {
            std::path::Component::Normal(c) => path.push(c),
            _ => return None,
        }
    }
    Some(path)
}

/// A regular file opened for a 200 answer of the whole file, with what
/// ServeDir's (tower-http 0.7) headers say of it: Content-Type by
/// extension, Accept-Ranges, Last-Modified, its ETag (`"SECS.NANOS-SIZE"`
/// in hex), Content-Length. `tests/it/http_sendfile.rs` checks them against
/// ServeDir's.
pub struct WholeFile {
    pub file: std::fs::File,
    pub len: u64,
    mime: &'static str,
    modified: std::time::SystemTime,
    since: std::time::Duration,
}

impl WholeFile {
    /// None (ServeDir answers) for anything but a regular file: a
    /// directory, a missing file, a modification time before 1970.
    fn open(path: PathBuf) -> Option<WholeFile> {
        let file = std::fs::File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let modified = meta.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        let mime = mime_guess::from_path(&path)
            .first_raw()
            .unwrap_or("application/octet-stream");
        Some(WholeFile {
            file,
            len: meta.len(),
            mime,
            modified,
            since,
        })
    }

    /// The answer's headers, Content-Length last.
    pub fn headers(&self) -> [(header::HeaderName, String); 5] {
        [
            (header::CONTENT_TYPE, self.mime.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (
                header::LAST_MODIFIED,
                httpdate::fmt_http_date(self.modified),
            ),
            (
                header::ETAG,
                format!(
                    "\"{:x}.{:08x}-{:x}\"",
                    self.since.as_secs(),
                    self.since.subsec_nanos(),
                    self.len
                ),
            ),
            (header::CONTENT_LENGTH, self.len.to_string()),
        ]
    }
}

/// The 200 answer for a whole regular file ([`WholeFile`]); the file rides
/// along for `sendfile`. None (ServeDir answers) for anything else.
fn plain_file(root: &std::path::Path, uri: &Uri) -> Option<Response> {
    let f = WholeFile::open(file_path(root, uri)?)?;
    let mut b = Response::builder().status(StatusCode::OK);
    for (k, v) in f.headers() {
        b = b.header(k, v);
    }
    let mut res = b.body(Body::empty()).ok()?;
    res.extensions_mut().insert(boot_conn::SendFile {
        len: f.len,
        file: Arc::new(f.file),
        offset: 0,
    });
    Some(res)
}

/// The file ServeDir answered for, opened for `sendfile`: ServeDir's path
/// rules (percent-decoded, normal components only, joined to the root), and
/// it must have the length the answer declares.
fn send_file_for(root: &std::path::Path, uri: &Uri, res: &Response) -> Option<boot_conn::SendFile> {
    let path = file_path(root, uri)?;
    let header = |h| res.headers().get(h).and_then(|v| v.to_str().ok());
    let length: u64 = header(header::CONTENT_LENGTH)?.parse().ok()?;
    let (offset, total) = if res.status() == StatusCode::PARTIAL_CONTENT {
        // `bytes first-last/total`
        let (range, total) = header(header::CONTENT_RANGE)?
            .strip_prefix("bytes ")?
            .split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
        if (last + 1).checked_sub(first) != Some(length) {
            return None;
        }
        (first, total.parse().ok()?)
    } else {
        (0, length)
    };
    // Opening a file ServeDir has just opened: its dentry and inode are cached.
    let file = std::fs::File::open(&path).ok()?;
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.len() == total).then(|| boot_conn::SendFile {
        file: Arc::new(file),
        offset,
        len: length,
    })
}

async fn done(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let refused = |r: Response| {
        ctx.stats.callbacks_refused.fetch_add(1, Ordering::Relaxed);
        r
    };
    let mac = match ctx.parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return refused(r),
    };
    let peer = peer_ip(&ci);
    let token = q.get("token").map(String::as_str).unwrap_or("");
    let (system, run) = match pending_run(&ctx, mac, peer, token, "install-done callback") {
        Ok(x) => x,
        Err(r) => return refused(r),
    };
    let system = &system;
    ctx.stats.callbacks.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%mac, system = %system.name, run = %run.id, "install-done callback");
    ctx.obs.emit(Observation::Http {
        mac: Some(mac),
        peer,
        what: HttpServed::Done {
            run: Some(run.id.clone()),
        },
    });
    if let Some(engine) = &ctx.engine {
        if let Err(e) = engine.install_done(&system.name, &run.id).await {
            tracing::error!(%mac, error = %e, "engine did not take the callback");
            ctx.stats
                .callbacks_not_taken
                .fetch_add(1, Ordering::Relaxed);
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
        }
    }
    ctx.stats.callbacks_accepted.fetch_add(1, Ordering::Relaxed);
    text(StatusCode::OK, "ok\n")
}

/// The machine at `mac` and its pending run, if `token` is that run's
/// (the install-done callback and the facts report share it).
fn pending_run(
    ctx: &BootContext,
    mac: Mac,
    peer: IpAddr,
    token: &str,
    what: &str,
) -> Result<(crate::inventory::System, RunCtx), Response> {
    let inv = ctx.inventory.borrow().clone();
    let table = ctx.table.borrow().clone();
    let Some(system) = inv.by_mac(&mac) else {
        return Err(ctx.not_found(format!("{mac} is not in the inventory")));
    };
    match table.get(&system.name) {
        Some(run)
            if !token.is_empty() && constant_time_eq(run.token.as_bytes(), token.as_bytes()) =>
        {
            Ok((system.clone(), run.clone()))
        }
        Some(_) => {
            tracing::warn!(%mac, %peer, system = %system.name, "{what} with a wrong token: refused");
            Err(ctx.forbidden("wrong or stale token".into()))
        }
        None => {
            tracing::warn!(%mac, %peer, system = %system.name, "{what} with no run pending: refused");
            Err(ctx.forbidden(format!("{} has no reimage pending", system.name)))
        }
    }
}

/// `POST /facts/{mac}?token=…`: the machine's hardware facts (JSON,
/// `api::facts::Facts`), checked by `facts::check` (size, schema, strings),
/// stored through the engine. Refused whole, nothing stored, otherwise.
async fn facts(
    State(ctx): State<BootContext>,
    ConnectInfo(ci): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
    let refused = |r: Response| {
        ctx.stats.facts_refused.fetch_add(1, Ordering::Relaxed);
        r
    };
    let mac = match ctx.parse_mac(&mac) {
        Ok(m) => m,
        Err(r) => return refused(r),
    };
    let peer = peer_ip(&ci);
    let token = q.get("token").map(String::as_str).unwrap_or("");
    let discovered = ctx
        .discovered
        .as_ref()
        .filter(|_| ctx.inventory.borrow().by_mac(&mac).is_none());
    if let Some(di) = discovered {
        if !di.check(&mac, token) {
            tracing::warn!(%mac, %peer, "a discovered machine's facts report with a wrong token: refused");
            return refused(ctx.forbidden("wrong token".into()));
        }
        let f = match checked_facts(&mac, peer, body) {
            Ok(f) => f,
            Err(r) => return refused(r),
        };
        if let Some(engine) = &ctx.engine {
            if let Err(e) = engine.discovered_facts(mac, f).await {
                tracing::error!(%mac, error = %e, "facts not stored");
                return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
            }
        }
        ctx.stats.facts_accepted.fetch_add(1, Ordering::Relaxed);
        return text(StatusCode::OK, "ok\n");
    }
    let (system, run) = match pending_run(&ctx, mac, peer, token, "facts report") {
        Ok(x) => x,
        Err(r) => return refused(r),
    };
    let f = match checked_facts(&mac, peer, body) {
        Ok(f) => f,
        Err(r) => return refused(r),
    };
    if let Some(engine) = &ctx.engine {
        if let Err(e) = engine.facts(&system.name, &run.id, f).await {
            tracing::error!(%mac, error = %e, "facts not stored");
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
        }
    }
    ctx.stats.facts_accepted.fetch_add(1, Ordering::Relaxed);
    text(StatusCode::OK, "ok\n")
}

/// A facts report's body through `facts::check` (the run path and the
/// discovered path alike): the facts, or the refusal to answer with.
fn checked_facts(
    mac: &Mac,
    peer: IpAddr,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<crate::api::facts::Facts, Response> {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("facts report refused: {e}\n"),
            ))
        }
    };
    crate::facts::check(&body).map_err(|e| {
        tracing::warn!(%mac, %peer, error = %e, "facts report refused");
        let status = match e {
            crate::facts::FactsError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        text(status, format!("facts report refused: {e}\n"))
    })
}

/// Token comparison that does not stop at the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::plain_path;

    #[test]
    fn plain_paths_are_the_ones_the_router_would_not_change() {
        for (p, plain) in [
            ("vmlinuz", true),
            ("debian/12/initrd.gz", true),
            ("grubx64.efi", true),
            ("a-b_c~d+e.img", true),
            ("...", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/../b", false),
            ("a/./b", false),
            ("a//b", false),
            ("a/", false),
            ("/a", false),
            ("vm%6cinuz", false),
            ("a b", false),
            ("a\\b", false),
            ("a?b", false),
            ("ü.img", false),
        ] {
            assert_eq!(plain_path(p), plain, "{p:?}");
        }
    }
}
