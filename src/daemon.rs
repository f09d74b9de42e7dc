//! The composition root: builds each shared resource once, binds sockets,
//! spawns the servers and the engine, handles signals (TERM/INT: shut down;
//! HUP: reload), and drains with a deadline. Only this module sees everything.

use crate::config::{self, Settings};
use crate::engine::{Engine, EngineDeps, EngineHandle};
use crate::http::{api, boot};
use crate::inventory::Inventory;
use crate::metrics::{Exporter, Metrics, Sources};
use crate::observe::{Observation, ObservationSink};
use crate::reload::{Reloader, FIRST_GENERATION};
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Read the API tokens (`auth` has the file format) from the tokens file
/// and/or the variable (an `admin` token named after it). With neither
/// configured, an `admin` token named `default` is generated once into
/// `data_dir/api-token` (mode 0600, the daemon's user only), like Jenkins'
/// initial admin password, so the local CLI works with zero set-up.
pub fn api_tokens(s: &Settings) -> anyhow::Result<Vec<crate::auth::Token>> {
    use crate::auth::{parse_tokens, Scope, Token};
    let mut tokens = Vec::new();
    if let Some(f) = &s.api_tokens.file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading API tokens file {}", f.display()))?;
        tokens = parse_tokens(&text)
            .map_err(|e| anyhow::anyhow!("{}, line {}: {}", f.display(), e.line, e.reason))?;
    }
    if let Some(v) = &s.api_tokens.env {
        if let Ok(t) = std::env::var(v) {
            if !t.trim().is_empty() {
                tokens.push(Token::new(v.clone(), Scope::Admin, t.trim()));
            }
        }
    }
    if s.api_tokens.file.is_none() && s.api_tokens.env.is_none() {
        let path = s.data_dir.join("api-token");
        let secret = match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                std::fs::create_dir_all(&s.data_dir)?;
                let t = crate::engine::random_token();
                write_private(&path, &t)?;
                tracing::info!(path = %path.display(), "generated an admin API token");
                t
            }
        };
        tokens.push(Token::new("default", Scope::Admin, secret));
    }
    Ok(tokens)
}

/// The secret of discovered machines' facts tokens (`boot::DiscoveredInspect`):
/// `data_dir/discovered-inspect.key` (mode 0600), generated once, so a
/// restart does not strand a machine mid-inspection with a dead token.
pub fn discovered_inspect_key(s: &Settings) -> anyhow::Result<Vec<u8>> {
    let path = s.data_dir.join("discovered-inspect.key");
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => Ok(t.trim().as_bytes().to_vec()),
        _ => {
            std::fs::create_dir_all(&s.data_dir)?;
            // 256 bits: two random tokens.
            let k = crate::engine::random_token() + &crate::engine::random_token();
            write_private(&path, &k).with_context(|| format!("writing {}", path.display()))?;
            Ok(k.into_bytes())
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// Listeners the daemon serves on. Tests pass port-0 sockets.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub api: tokio::net::TcpListener,
    /// DHCP sockets with their reply parameters (67; and 4011 in proxy mode).
    pub dhcp: Vec<(tokio::net::UdpSocket, crate::dhcp::ServerParams)>,
    /// TFTP on the server address (one per interface address: replies leave from it).
    pub tftp: Option<tokio::net::UdpSocket>,
    /// DNS (UDP and TCP on `dns.listen`), when `[dns] enabled`.
    pub dns: Option<crate::dns::DnsSockets>,
}

impl Listeners {
    pub async fn bind(s: &Settings) -> anyhow::Result<Listeners> {
        let http_addr = SocketAddr::from((s.address, s.http_port));
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("binding the boot HTTP server on {http_addr}"))?;
        let api = tokio::net::TcpListener::bind(s.api_listen)
            .await
            .with_context(|| format!("binding the API on {}", s.api_listen))?;
        let mut dhcp = Vec::new();
        if s.dhcp.mode != config::DhcpMode::Off {
            let proxy = s.dhcp.mode == config::DhcpMode::Proxy;
            let mut ports = vec![s.dhcp.port];
            if proxy {
                ports.push(crate::dhcp::PXE_PORT);
            }
            for port in ports {
                let addr = SocketAddr::from(([0, 0, 0, 0], port));
                let sock = crate::dhcp::bind(addr, s.interface.as_deref()).with_context(|| {
                    format!(
                        "binding DHCP on {addr}{}",
                        s.interface
                            .as_deref()
                            .map(|i| format!(" (interface {i})"))
                            .unwrap_or_default()
                    )
                })?;
                let mut params = crate::dhcp::ServerParams::new(s.address, proxy);
                if let Some(to) = s.dhcp.reply_to {
                    params.broadcast = to;
                    params.client_port = to.port();
                }
                dhcp.push((sock, params));
            }
        }
        let tftp = if s.tftp.enabled {
            let addr = SocketAddr::from((s.address, s.tftp.port));
            Some(
                tokio::net::UdpSocket::bind(addr)
                    .await
                    .with_context(|| format!("binding TFTP on {addr}"))?,
            )
        } else {
            None
        };
        let dns = if s.dns.enabled {
            Some(
                crate::dns::DnsSockets::bind(s.dns.listen)
                    .await
                    .with_context(|| format!("binding DNS (UDP and TCP) on {}", s.dns.listen))?,
            )
        } else {
            None
        };
        Ok(Listeners {
            http,
            api,
            dhcp,
            tftp,
            dns,
        })
    }
}

/// A running daemon.
pub struct Running {
    pub http_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The TFTP listen socket's address, when there is one.
    pub tftp_addr: Option<SocketAddr>,
    /// The DNS server's address (UDP and TCP), when it runs.
    pub dns_addr: Option<SocketAddr>,
    pub reloader: Arc<Reloader>,
    pub engine: EngineHandle,
    pub inventory: watch::Receiver<Arc<Inventory>>,
    pub shutdown: CancellationToken,
    /// Every route of the API listener (API, UI, metrics) and the scope it
    /// needs: what the guard enforces (tests walk it).
    pub api_rules: Vec<crate::http::guard::Rule>,
    /// The API listener's certificate (when `[api] tls_cert` is set).
    pub tls: Option<Arc<crate::http::tls::Tls>>,
    tracker: TaskTracker,
    store: Store,
}

impl Running {
    /// SIGHUP: reload the configuration and write the audit trail's line
    /// (actor `SIGHUP`, via `signal`), a refused reload with its errors.
    pub async fn reload_by_signal(&self) {
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("API TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "API TLS certificate not reloaded (the old one keeps serving)")
                }
            }
        }
        let r = self.reloader.clone();
        let Ok(result) = tokio::task::spawn_blocking(move || r.reload()).await else {
            return;
        };
        let (status, target, detail) = match &result {
            Ok(r) => (200, r.audit_target(), r.audit_detail()),
            Err(e) => (
                422,
                String::new(),
                serde_json::json!({ "reload_error": crate::api::ApiError::from(e) }),
            ),
        };
        let entry = crate::api::AuditEntry {
            id: 0,
            at: crate::store::now_ms(),
            actor: "SIGHUP".into(),
            scope: String::new(),
            via: "signal".into(),
            remote: String::new(),
            action: "reload".into(),
            path: String::new(),
            target,
            status,
            detail,
        };
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, "cannot write the audit trail");
        }
    }

    /// Stop everything and wait (bounded) for tasks to finish.
    pub async fn stop(self) {
        // A clean stop hands the runs over at once (a peer, or this node's
        // next start, claims them); a crash leaves them to the lease.
        match self.store.retire_daemon(&self.engine.daemon_id()).await {
            Ok(n) if n > 0 => tracing::info!(runs = n, "runs released for another daemon"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot release runs (they wait for the lease to expire)")
            }
        }
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not finish within 5 s of shutdown");
        }
        self.store.close().await;
    }
}

/// Start the daemon from a loaded config on the given listeners, with the
/// native BMC drivers.
pub async fn start(cfg: config::Config, listeners: Listeners) -> anyhow::Result<Running> {
    let power = Arc::new(crate::power::Power::native(crate::power::PowerConfig {
        max_parallel: cfg.settings.max_parallel_bmc,
        ..Default::default()
    }));
    start_with(cfg, listeners, power).await
}

/// Start with a given power front door (tests pass one over `FakePower`).
pub async fn start_with(
    cfg: config::Config,
    listeners: Listeners,
    power: Arc<crate::power::Power>,
) -> anyhow::Result<Running> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let store = Store::open(&cfg.settings.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the store {}",
                crate::store::redact_url(&cfg.settings.database_url)
            )
        })?;
    // The shared inventory (Postgres): served from a materialised copy of
    // the database's documents, the settings pointing at it.
    let (settings, mut inventory, shared) = if crate::shared::is_shared(&cfg.settings) {
        let (shared, s) = crate::shared::Shared::start(&store, &cfg.settings).await?;
        let s2 = s.clone();
        let inv = tokio::task::spawn_blocking(move || crate::admin::load_for_serving(&s2))
            .await?
            .map_err(|e| anyhow::anyhow!("the shared inventory does not load: {e}"))?;
        (Arc::new(s), inv, Some(shared))
    } else {
        (Arc::new(cfg.settings), cfg.inventory, None)
    };
    inventory.set_generation(FIRST_GENERATION);
    let (inv_tx, inv_rx) = watch::channel(Arc::new(inventory));
    let reloader = Arc::new(Reloader::new(settings.clone(), inv_tx));
    if let Some(sh) = shared {
        reloader.set_shared(sh.clone());
        let r = reloader.clone();
        let reload = Arc::new(move || r.reload().map(|r| r.generation).map_err(|e| e.to_string()));
        tracker.spawn(sh.run(reload, shutdown.child_token()));
    }

    let metrics = Arc::new(Metrics::new(settings.metrics_per_system));
    power.set_observer(metrics.clone());

    // Observations: adapters try_send; the engine consumes them.
    let (obs_tx, obs_rx) = mpsc::channel::<Observation>(4096);
    let obs = ObservationSink::new(obs_tx);
    let (engine, table_rx) = Engine::start(
        EngineDeps {
            store: store.clone(),
            power: power.clone(),
            inventory: inv_rx.clone(),
            data_dir: settings.data_dir.clone(),
            ssh_key: settings.ssh_key.clone(),
            max_parallel_runs: settings.max_parallel_runs,
            max_parallel_stages: settings.max_parallel_stages,
            console_max_bytes: settings.console_max_bytes,
            metrics: metrics.clone(),
            ha: crate::engine::HaConfig {
                node: settings.node.clone(),
                domains: settings.boot_domains.clone(),
                ttl: settings.lease_ttl,
            },
        },
        obs_rx,
        shutdown.child_token(),
    )
    .await?;
    let mqtt = match &settings.mqtt {
        Some(m) => Some(
            crate::mqtt::MqttPublisher::start(
                m,
                engine.feed().clone(),
                store.clone(),
                shutdown.child_token(),
            )
            .await?,
        ),
        None => None,
    };
    let webhooks = crate::webhooks::Webhooks::start(
        &settings,
        engine.feed().clone(),
        store.clone(),
        shutdown.child_token(),
    )
    .await?;

    // What the boot services serve: the engine's table, without installers
    // while a shared inventory is stale (`shared::fresh_table`).
    let boot_table_rx = match reloader.shared() {
        Some(sh) => crate::shared::fresh_table(
            sh.clone(),
            table_rx.clone(),
            settings.max_stale,
            shutdown.child_token(),
        ),
        None => table_rx.clone(),
    };
    let dhcp_stats = Arc::new(crate::dhcp::DhcpStats::default());
    let pool_stats = Arc::new(crate::dhcp::leases::PoolStats::default());
    let pool = match (settings.dhcp.mode, settings.dhcp.pool) {
        (config::DhcpMode::Pool, Some(range)) => Some(Arc::new(
            start_pool(&settings, range, &store, &tracker, &pool_stats).await?,
        )),
        _ => None,
    };
    // Requests from MACs outside the inventory: recorded in memory, flushed
    // to the store in batches (`dhcp::discovery`).
    let discovery = (settings.dhcp.mode != config::DhcpMode::Off
        && settings.dhcp.discovered_max > 0)
        .then(|| {
            Arc::new(crate::dhcp::discovery::Discovery::new(
                settings.interface.clone(),
                settings.dhcp.discovered_max,
            ))
        });
    if let Some(d) = &discovery {
        let (d, st, sd) = (d.clone(), store.clone(), shutdown.child_token());
        let feed = engine.feed().clone();
        tracker.spawn(async move { d.run_flusher(st, Some(feed), sd).await });
    }
    let policy: Arc<dyn crate::dhcp::DhcpPolicy> = Arc::new(crate::dhcp::InventoryDhcpPolicy {
        inventory: inv_rx.clone(),
        cfg: crate::dhcp::DhcpPolicySettings {
            mode: settings.dhcp.mode,
            server: settings.address,
            lease_secs: settings.dhcp.lease_secs,
            efi_x64_file: settings.dhcp.efi_x64_file.clone(),
            inspect_discovered: settings.dhcp.inspect_discovered,
        },
        pool: pool.clone(),
        discovery: discovery.clone(),
        table: Some(boot_table_rx.clone()),
    });
    for (sock, params) in listeners.dhcp {
        let (policy, stats, obs, sd) = (
            policy.clone(),
            dhcp_stats.clone(),
            obs.clone(),
            shutdown.child_token(),
        );
        tracker.spawn(async move {
            if let Err(e) = crate::dhcp::serve(sock, policy, params, stats, obs, sd).await {
                tracing::error!(error = %e, "DHCP server failed");
            }
        });
    }

    let tftp_stats = Arc::new(crate::tftp::TftpStats::default());
    let tftp_addr = listeners.tftp.as_ref().and_then(|s| s.local_addr().ok());
    if let Some(sock) = listeners.tftp {
        // Serves the firmware dir first, then the boot-files dir, nothing
        // outside them; plus the GRUB configs (`tftp::boot`).
        let roots: Vec<_> = [&settings.firmware_dir, &settings.boot_dir]
            .into_iter()
            .filter(|d| d.is_dir())
            .cloned()
            .collect();
        let roots =
            crate::tftp::RootsSource::new(roots).context("TFTP roots (firmware_dir, boot_dir)")?;
        let source: Arc<dyn crate::tftp::FileSource> = Arc::new(
            crate::tftp::boot::BootSource::new(roots, inv_rx.clone(), boot_table_rx.clone()),
        );
        let cfg = crate::tftp::TftpConfig {
            max_transfers: settings.tftp.max_transfers,
            max_blksize: settings.tftp.max_blksize,
            ..Default::default()
        };
        let (stats, obs, sd) = (tftp_stats.clone(), obs.clone(), shutdown.child_token());
        tracker.spawn(async move {
            if let Err(e) = crate::tftp::serve(sock, source, cfg, stats, obs, sd).await {
                tracing::error!(error = %e, "TFTP server failed");
            }
        });
    }

    let dns_stats = Arc::new(crate::dns::DnsStats::default());
    let dns_addr = match listeners.dns {
        Some(sockets) => {
            let cfg = crate::dns::DnsConfig::from_settings(&settings.dns)
                .context("dns: no zone (set dns.zone or dhcp.domain)")?;
            let addr = sockets.local_addr()?;
            tracker.spawn(crate::dns::serve(
                sockets,
                inv_rx.clone(),
                cfg,
                dns_stats.clone(),
                tracker.clone(),
                shutdown.child_token(),
            ));
            Some(addr)
        }
        None => None,
    };

    let http_stats = Arc::new(boot::HttpStats::default());
    let boot_ctx = boot::BootContext {
        inventory: inv_rx.clone(),
        table: boot_table_rx.clone(),
        boot_dir: settings.boot_dir.clone(),
        firmware_dir: settings.firmware_dir.clone(),
        obs: obs.clone(),
        stats: http_stats.clone(),
        engine: Some(engine.clone()),
        own_ip_only: matches!(
            settings.dhcp.mode,
            config::DhcpMode::Reservations | config::DhcpMode::Pool
        ),
        discovered: if settings.dhcp.inspect_discovered {
            Some(crate::boot::DiscoveredInspect::new(discovered_inspect_key(
                &settings,
            )?))
        } else {
            None
        },
    };
    let auth = Arc::new(crate::auth::Auth::new(
        api_tokens(&settings)?,
        crate::engine::random_token().into_bytes(),
    ));
    let exporter = Arc::new(Exporter {
        metrics,
        sources: Sources {
            dhcp: dhcp_stats.clone(),
            tftp: tftp_stats.clone(),
            http: http_stats.clone(),
            dns: dns_stats.clone(),
            pool,
            discovery,
            engine: engine.metrics.clone(),
            obs: obs.clone(),
            inventory: inv_rx.clone(),
            auth: auth.clone(),
        },
    });
    let api_ctx = api::ApiContext {
        power: power.clone(),
        store: store.clone(),
        data_dir: settings.data_dir.clone(),
        inventory: inv_rx.clone(),
        table: table_rx.clone(),
        engine: engine.clone(),
        reloader: reloader.clone(),
        webhooks,
        mqtt,
        auth: auth.clone(),
        http_stats: http_stats.clone(),
        extra_stats: {
            let (d, t, p) = (dhcp_stats.clone(), tftp_stats.clone(), pool_stats.clone());
            let dns = dns_stats.clone();
            let o = obs.clone();
            Arc::new(move || {
                let d = d.snapshot();
                let t = t.snapshot();
                let malformed: serde_json::Map<String, serde_json::Value> =
                    crate::dhcp::MalformedClass::ALL
                        .iter()
                        .map(|c| {
                            (
                                format!("{c:?}").to_lowercase(),
                                d.malformed[*c as usize].into(),
                            )
                        })
                        .collect();
                serde_json::json!({
                    "dhcp": {
                        "received": d.received, "malformed": malformed, "ignored": d.ignored,
                        "offers": d.offers, "acks": d.acks, "naks": d.naks, "proxy": d.proxy,
                        "releases": d.releases, "declines": d.declines, "send_errors": d.send_errors,
                        "held": d.held, "unsent_uncommitted": d.unsent_uncommitted,
                    },
                    "tftp": {
                        "requests": t.requests, "transfers_ok": t.transfers_ok,
                        "transfers_failed": t.transfers_failed, "refused_path": t.refused_path,
                        "refused_write": t.refused_write, "refused_mode": t.refused_mode,
                        "not_found": t.not_found, "not_found_probe": t.not_found_probe,
                        "malformed": t.malformed, "busy": t.busy,
                        "probes": t.probes, "bytes_sent": t.bytes_sent, "active": t.active,
                    },
                    "pool": p.json(),
                    "dns": dns.json(),
                    // Boot observations the run engine did not take (its queue was full):
                    // the replies went out, a run may miss a phase event.
                    "observations_dropped": o.dropped(),
                })
            })
        },
    };

    let http_addr = listeners.http.local_addr()?;
    let api_addr = listeners.api.local_addr()?;
    // The boot listener: its own HTTP/1.1 loop in front of the router, so
    // static files go out with sendfile (`http::boot_conn`).
    let boot_files = boot::BootFiles::new(&boot_ctx);
    tracker.spawn(crate::http::boot_conn::serve(
        listeners.http,
        boot::router(boot_ctx),
        boot_files,
        shutdown.child_token(),
    ));
    // One guard over the API, the UI and `/metrics`: each route's scope is
    // declared where it is added (`http::guard::Routes`).
    let routes = api::router(api_ctx.clone())
        .merge(crate::ui::router(api_ctx))
        .merge(crate::metrics::router(exporter));
    let api_rules = routes.rules.clone();
    let mut router = routes.guard(auth, Some(store.clone()));
    if let Some(sh) = reloader.shared() {
        router = router.layer(axum::middleware::from_fn_with_state(
            sh.clone(),
            crate::http::api::database_unavailable,
        ));
    }
    let tls = match &settings.api_tls {
        None => {
            serve_http(&tracker, &shutdown, listeners.api, router, "api");
            None
        }
        Some(files) => {
            let tls =
                crate::http::tls::Tls::load(files).map_err(|e| anyhow::anyhow!("api TLS: {e}"))?;
            let l = crate::http::tls::listen(
                listeners.api,
                tls.clone(),
                &tracker,
                shutdown.child_token(),
            )?;
            // `tap_io`: axum's connect info (the peer address) for any listener.
            use axum::serve::ListenerExt;
            serve_http(&tracker, &shutdown, l.tap_io(|_| {}), router, "api (TLS)");
            Some(tls)
        }
    };
    let poll = std::time::Duration::from_secs(settings.power_poll_secs);
    let poller = crate::power::poll::run(power, inv_rx.clone(), poll, shutdown.child_token());
    tracker.spawn(poller);
    tracing::info!(%http_addr, %api_addr, dhcp = settings.dhcp.mode.as_str(), dns = ?dns_addr, "rackboot serving");

    Ok(Running {
        http_addr,
        api_addr,
        tftp_addr,
        dns_addr,
        api_rules,
        tls,
        reloader,
        engine,
        inventory: inv_rx,
        shutdown,
        tracker,
        store,
    })
}

/// Pool mode: the allocator loaded with the persisted leases, and the
/// group-commit writer on a durable (`synchronous=FULL`) store handle.
async fn start_pool(
    settings: &Settings,
    (start, end): (std::net::Ipv4Addr, std::net::Ipv4Addr),
    store: &Store,
    tracker: &TaskTracker,
    stats: &Arc<crate::dhcp::leases::PoolStats>,
) -> anyhow::Result<crate::dhcp::leases::PoolLeases> {
    use crate::dhcp::leases::{LeaseCommitter, PoolAnswer, PoolLeases};
    use crate::dhcp::pool::{Pool, PoolConfig};
    let rows = store.leases().await.context("loading DHCP leases")?;
    let durable = store
        .durable()
        .await
        .context("opening the lease store (synchronous=FULL)")?;
    let (committer, writer) = LeaseCommitter::start(durable, stats.clone());
    tracker.spawn(writer);
    let leases = PoolLeases::new(
        Pool::new(PoolConfig::new(start, end, settings.dhcp.lease_secs)),
        committer,
        PoolAnswer {
            server_id: settings.address,
            subnet_mask: settings.dhcp.subnet_mask,
            router: settings.dhcp.router,
            dns: settings.dhcp.dns.clone(),
            domain: settings.dhcp.domain.clone(),
            lease_secs: settings.dhcp.lease_secs,
        },
        stats.clone(),
    );
    let loaded = leases.load(&rows, crate::store::now_ms());
    tracing::info!(%start, %end, leases = loaded, "DHCP address pool ready");
    Ok(leases)
}

fn serve_http<L>(
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    listener: L,
    router: axum::Router,
    name: &'static str,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let sd = shutdown.clone();
    tracker.spawn(async move {
        let svc = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, svc)
            .with_graceful_shutdown(async move { sd.cancelled().await })
            .await
        {
            tracing::error!(server = name, error = %e, "HTTP server failed");
        }
    });
}

/// `rackboot serve`: run until SIGTERM/SIGINT; SIGHUP reloads.
pub async fn run(config_dir: &std::path::Path) -> anyhow::Result<()> {
    // Handlers first: a SIGHUP that arrives once the API answers must
    // reload, not kill the process (the default action).
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let notifier = crate::notify::Notifier::from_env();
    let started = async {
        let settings = config::load_settings(config_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = if crate::shared::is_shared(&settings) {
            // The inventory comes from the database (`start`).
            let inventory = crate::inventory::Inventory::empty((&settings).into());
            config::Config {
                settings,
                inventory,
            }
        } else {
            config::load(config_dir).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let listeners = Listeners::bind(&cfg.settings).await?;
        start(cfg, listeners).await
    };
    let running = match started.await {
        Ok(r) => r,
        Err(e) => {
            notifier.status(&format!("failed to start: {e:#}").replace('\n', " "));
            return Err(e);
        }
    };
    // Every listener (DHCP, TFTP, DNS, HTTP boot, API) was bound before `start`,
    // the store is open and the servers are spawned: ready.
    notifier.ready(&crate::notify::current_status(
        &running.engine,
        &running.reloader,
    ));
    tokio::spawn(crate::notify::heartbeat(
        notifier.clone(),
        running.engine.clone(),
        running.reloader.clone(),
        running.shutdown.child_token(),
    ));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading configuration");
                running.reload_by_signal().await;
                notifier.status(&crate::notify::current_status(&running.engine, &running.reloader));
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    notifier.stopping();
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}
