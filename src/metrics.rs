//! Prometheus metrics for `GET /metrics` on the API listener (text format
//! 0.0.4, tikv's `prometheus` crate without protobuf: Debian 12's promtool
//! 2.42 rejects the OpenMetrics that `prometheus-client` writes).
//!
//! Two kinds of series:
//! - **Mirrored** from the adapters' own atomic counters (DHCP, TFTP, DNS, boot
//!   HTTP, pool, engine, observation sink) at scrape time: the adapters keep
//!   counting with `AtomicU64` and know nothing of this crate. A scrape adds
//!   each counter's increase since the last scrape (`inc_by(now - seen)`)
//!   and sets the gauges, under one lock, then encodes.
//! - **Observed** where they happen: histograms of run phase and run
//!   durations (the engine holds an `Arc<Metrics>`), BMC call durations and
//!   failures (the power front door reports through [`PowerObserver`]).
//!
//! No label carries a MAC, an address or a system name, except
//! `rackboot_system_runs_total{system}` when `[api] metrics_per_system` is set.

use crate::dhcp::leases::PoolLeases;
use crate::dhcp::{ClientMessage, DhcpStats, IgnoreReason, MalformedClass, ReplyKind};
use crate::dns::{DnsStats, Malformed as DnsMalformed, Outcome as DnsOutcome};
use crate::engine::EngineMetrics;
use crate::http::boot::{HttpStats, ROUTES, STATUS_CLASSES, UNMATCHED};
use crate::inventory::Inventory;
use crate::observe::ObservationSink;
use crate::power::{PowerError, PowerObserver};
use crate::tftp::TftpStats;
use crate::workflow::Phase;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Phases a run spends time in (the `phase` label; stages share `stage`).
const PHASES: [&str; 11] = [
    "queued", "locked", "bootdev", "power", "dhcp", "kernel", "config", "install", "reboot",
    "ports", "stage",
];
const RESULTS: [&str; 4] = ["succeeded", "failed", "cancelled", "timed_out"];

/// Seconds to an hour: BMC-bound phases take seconds, installs many minutes.
const PHASE_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 2700.0, 3600.0,
];
/// A whole reimage: a minute to a few hours.
const RUN_BUCKETS: [f64; 11] = [
    60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0,
];
/// BMC calls: milliseconds (native IPMI) to tens of seconds (Redfish polling, timeouts).
const BMC_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The registry and the metric handles.
pub struct Metrics {
    registry: Registry,
    // Mirrored counters.
    dhcp_received: IntCounter,
    dhcp_requests: IntCounterVec,
    dhcp_replies: IntCounterVec,
    dhcp_ignored: IntCounterVec,
    dhcp_malformed: IntCounterVec,
    api_auth_failures: IntCounterVec,
    dhcp_lease_events: IntCounterVec,
    dhcp_send_errors: IntCounter,
    dhcp_held: IntCounter,
    dhcp_withheld: IntCounter,
    pool_exhausted: IntCounter,
    pool_commit_errors: IntCounter,
    discovered_sightings: IntCounter,
    discovered_dropped: IntCounter,
    discovered_flush_errors: IntCounter,
    tftp_requests: IntCounter,
    tftp_transfers: IntCounterVec,
    tftp_malformed: IntCounter,
    tftp_sent_bytes: IntCounter,
    dns_queries: IntCounterVec,
    dns_malformed: IntCounterVec,
    dns_replies: IntCounterVec,
    dns_forwarded: IntCounterVec,
    dns_send_errors: IntCounter,
    http_responses: IntCounterVec,
    http_callbacks: IntCounterVec,
    http_sendfile_bytes: IntCounter,
    run_transitions: IntCounter,
    run_events_ignored: IntCounter,
    observations_dropped: IntCounter,
    observations_coalesced: IntCounter,
    // Gauges set at scrape.
    tftp_active: IntGauge,
    pool_addresses: IntGaugeVec,
    runs_queued: IntGauge,
    runs_active: IntGauge,
    ha_standing_down: IntGauge,
    config_generation: IntGauge,
    // Observed where they happen.
    phase_duration: HistogramVec,
    run_duration: HistogramVec,
    bmc_duration: HistogramVec,
    bmc_failures: IntCounterVec,
    system_runs: Option<IntCounterVec>,
    /// Serialises scrapes: a mirror step reads, then adds, a counter.
    scrape: Mutex<()>,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Add what `counter` is short of `now` (counters only go up; a source that
/// went down, which ours never do, is ignored).
fn mirror(counter: &IntCounter, now: u64) {
    let seen = counter.get();
    if now > seen {
        counter.inc_by(now - seen);
    }
}

impl Metrics {
    /// `per_system`: `[api] metrics_per_system` (adds `rackboot_system_runs_total`).
    pub fn new(per_system: bool) -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            dhcp_received: counter(
                &r,
                "rackboot_dhcp_received_total",
                "DHCP datagrams received, well-formed or not.",
            ),
            dhcp_requests: counter_vec(
                &r,
                "rackboot_dhcp_requests_total",
                "Well-formed DHCP requests by message type.",
                &["type"],
            ),
            dhcp_replies: counter_vec(
                &r,
                "rackboot_dhcp_replies_total",
                "DHCP replies sent by kind.",
                &["kind"],
            ),
            dhcp_ignored: counter_vec(
                &r,
                "rackboot_dhcp_ignored_total",
                "Well-formed DHCP requests that got no reply, by reason.",
                &["reason"],
            ),
            api_auth_failures: counter_vec(
                &r,
                "rackboot_api_auth_failures_total",
                "Operator API and UI requests refused: no token (missing), a wrong one (invalid), or a scope too weak (forbidden).",
                &["reason"],
            ),
            dhcp_malformed: counter_vec(
                &r,
                "rackboot_dhcp_malformed_total",
                "DHCP datagrams dropped as malformed, by class.",
                &["class"],
            ),
            dhcp_lease_events: counter_vec(
                &r,
                "rackboot_dhcp_lease_events_total",
                "DHCPRELEASE and DHCPDECLINE messages taken.",
                &["event"],
            ),
            dhcp_send_errors: counter(
                &r,
                "rackboot_dhcp_send_errors_total",
                "DHCP replies the socket refused to send.",
            ),
            dhcp_held: counter(
                &r,
                "rackboot_dhcp_replies_held_total",
                "DHCP replies held until their lease was committed (pool ACKs).",
            ),
            dhcp_withheld: counter(
                &r,
                "rackboot_dhcp_replies_withheld_total",
                "Held DHCP replies not sent: the lease commit failed or the hold queue was full.",
            ),
            pool_exhausted: counter(
                &r,
                "rackboot_dhcp_pool_exhausted_total",
                "DHCPDISCOVERs the address pool had no address for.",
            ),
            pool_commit_errors: counter(
                &r,
                "rackboot_dhcp_pool_commit_errors_total",
                "Failed lease commit transactions.",
            ),
            discovered_sightings: counter(
                &r,
                "rackboot_dhcp_discovered_sightings_total",
                "DHCP requests from MACs outside the inventory (recorded for `rackboot discovered`).",
            ),
            discovered_dropped: counter(
                &r,
                "rackboot_dhcp_discovered_dropped_total",
                "Sightings of new MACs not recorded: too many waited for the next flush.",
            ),
            discovered_flush_errors: counter(
                &r,
                "rackboot_dhcp_discovered_flush_errors_total",
                "Failed writes of discovered MACs to the store (retried).",
            ),
            tftp_requests: counter(
                &r,
                "rackboot_tftp_requests_total",
                "Well-formed TFTP read and write requests.",
            ),
            tftp_transfers: counter_vec(
                &r,
                "rackboot_tftp_transfers_total",
                "TFTP requests by result: ok, failed, probe (client ended after option \
                 negotiation), or the reason it was refused.",
                &["result"],
            ),
            tftp_malformed: counter(
                &r,
                "rackboot_tftp_malformed_total",
                "Datagrams on the TFTP listen port that are not a valid request.",
            ),
            tftp_sent_bytes: counter(
                &r,
                "rackboot_tftp_sent_bytes_total",
                "TFTP DATA payload bytes sent, retransmissions included.",
            ),
            dns_queries: counter_vec(
                &r,
                "rackboot_dns_queries_total",
                "Well-formed DNS queries by transport.",
                &["transport"],
            ),
            dns_malformed: counter_vec(
                &r,
                "rackboot_dns_malformed_total",
                "DNS messages dropped unanswered: shorter than a header (short), not \
                 decodable (undecodable), a response (response), not one question (questions).",
                &["reason"],
            ),
            dns_replies: counter_vec(
                &r,
                "rackboot_dns_replies_total",
                "DNS replies rackboot built, by outcome (forwarded answers are counted in \
                 rackboot_dns_forwarded_total).",
                &["outcome"],
            ),
            dns_forwarded: counter_vec(
                &r,
                "rackboot_dns_forwarded_total",
                "DNS queries outside the zone sent upstream: answered, failed (no upstream \
                 answered in time: SERVFAIL), busy (dropped: too many in flight).",
                &["result"],
            ),
            dns_send_errors: counter(
                &r,
                "rackboot_dns_send_errors_total",
                "DNS replies the socket refused to send.",
            ),
            http_responses: counter_vec(
                &r,
                "rackboot_http_requests_total",
                "Boot HTTP responses by route template and status class.",
                &["route", "status"],
            ),
            http_callbacks: counter_vec(
                &r,
                "rackboot_http_callbacks_total",
                "Install-done callbacks: accepted, refused (bad MAC, wrong token, no run \
                 pending) or not_taken (valid, the run could not take it now).",
                &["result"],
            ),
            http_sendfile_bytes: counter(
                &r,
                "rackboot_http_sendfile_bytes_total",
                "Boot HTTP static-file bytes sent zero-copy with sendfile(2).",
            ),
            run_transitions: counter(
                &r,
                "rackboot_run_transitions_total",
                "Run state transitions persisted.",
            ),
            run_events_ignored: counter(
                &r,
                "rackboot_run_events_ignored_total",
                "Events that did not apply to their run's phase.",
            ),
            observations_dropped: counter(
                &r,
                "rackboot_observations_dropped_total",
                "Boot observations the engine's queue had no room for.",
            ),
            observations_coalesced: counter(
                &r,
                "rackboot_observations_coalesced_total",
                "Observations of machines without an active run not stored in the feed: \
                 the same kind from the same machine within 10 s.",
            ),
            tftp_active: gauge(
                &r,
                "rackboot_tftp_active_transfers",
                "TFTP transfers running now.",
            ),
            pool_addresses: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "rackboot_dhcp_pool_addresses",
                        "Pool mode: addresses under an active lease (used) and addresses \
                         that can be offered (free).",
                    ),
                    &["state"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            runs_queued: gauge(&r, "rackboot_runs_queued", "Runs waiting for a slot."),
            runs_active: gauge(&r, "rackboot_runs_active", "Runs started and not finished."),
            ha_standing_down: gauge(
                &r,
                "rackboot_ha_standing_down",
                "1 while this daemon, cut off from the database with a live peer, leaves its runs' machines to the peer.",
            ),
            config_generation: gauge(
                &r,
                "rackboot_config_generation",
                "Generation of the inventory being served (1 at start, +1 per reload).",
            ),
            phase_duration: histogram(
                &r,
                "rackboot_run_phase_duration_seconds",
                "Time a run spent in a phase, observed when it left it.",
                &["phase"],
                &PHASE_BUCKETS,
            ),
            run_duration: histogram(
                &r,
                "rackboot_run_duration_seconds",
                "Whole-run duration from creation to its end, by result.",
                &["result"],
                &RUN_BUCKETS,
            ),
            bmc_duration: histogram(
                &r,
                "rackboot_bmc_call_duration_seconds",
                "BMC call duration (the driver call, not the wait for a slot).",
                &["driver", "op"],
                &BMC_BUCKETS,
            ),
            bmc_failures: counter_vec(
                &r,
                "rackboot_bmc_failures_total",
                "Failed BMC calls by driver and error kind.",
                &["driver", "reason"],
            ),
            system_runs: per_system.then(|| {
                counter_vec(
                    &r,
                    "rackboot_system_runs_total",
                    "Finished runs per system and result (api.metrics_per_system).",
                    &["system", "result"],
                )
            }),
            registry: r,
            scrape: Mutex::new(()),
        };
        let info = IntGaugeVec::new(
            Opts::new("rackboot_build_info", "Build information; always 1."),
            &["version"],
        )
        .expect("valid metric");
        m.registry
            .register(Box::new(info.clone()))
            .expect("unique metric");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // Known label values start at zero, so rates work from the first scrape.
        for p in PHASES {
            m.phase_duration.with_label_values(&[p]);
        }
        for r in RESULTS {
            m.run_duration.with_label_values(&[r]);
        }
        m
    }
}

impl crate::engine::RunObserver for Metrics {
    fn phase_left(&self, phase: Phase, secs: f64) {
        self.phase_duration
            .with_label_values(&[phase.simple_name()])
            .observe(secs.max(0.0));
    }

    fn run_finished(&self, system: &str, result: Phase, secs: f64) {
        let result = result.simple_name();
        self.run_duration
            .with_label_values(&[result])
            .observe(secs.max(0.0));
        if let Some(c) = &self.system_runs {
            c.with_label_values(&[system, result]).inc();
        }
    }
}

impl Metrics {
    /// Mirror the adapters' counters into the registry, then encode it.
    pub fn render(&self, src: &Sources) -> Result<String, prometheus::Error> {
        let _g = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.mirror(src);
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn mirror(&self, src: &Sources) {
        for (reason, n) in src.auth.stats.snapshot() {
            mirror(&self.api_auth_failures.with_label_values(&[reason]), n);
        }
        let d = src.dhcp.snapshot();
        mirror(&self.dhcp_received, d.received);
        for m in ClientMessage::ALL {
            mirror(
                &self.dhcp_requests.with_label_values(&[m.label()]),
                d.requests[m as usize],
            );
        }
        for k in ReplyKind::ALL {
            mirror(
                &self.dhcp_replies.with_label_values(&[k.label()]),
                d.replies[k as usize],
            );
        }
        for r in IgnoreReason::ALL {
            mirror(
                &self.dhcp_ignored.with_label_values(&[r.as_str()]),
                d.ignored_by[r as usize],
            );
        }
        mirror(
            &self.dhcp_ignored.with_label_values(&["policy_panic"]),
            d.policy_panics,
        );
        for c in MalformedClass::ALL {
            mirror(
                &self.dhcp_malformed.with_label_values(&[c.as_str()]),
                d.malformed[c as usize],
            );
        }
        mirror(
            &self.dhcp_lease_events.with_label_values(&["release"]),
            d.releases,
        );
        mirror(
            &self.dhcp_lease_events.with_label_values(&["decline"]),
            d.declines,
        );
        mirror(&self.dhcp_send_errors, d.send_errors);
        mirror(&self.dhcp_held, d.held);
        mirror(&self.dhcp_withheld, d.unsent_uncommitted);

        if let Some(d) = &src.discovery {
            let l = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            mirror(&self.discovered_sightings, l(&d.stats.sightings));
            mirror(&self.discovered_dropped, l(&d.stats.dropped));
            mirror(&self.discovered_flush_errors, l(&d.stats.flush_errors));
        }
        if let Some(pool) = &src.pool {
            let l = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            mirror(&self.pool_exhausted, l(&pool.stats.exhausted));
            mirror(&self.pool_commit_errors, l(&pool.stats.commit_errors));
            let (used, free) = pool.usage(crate::store::now_ms());
            self.pool_addresses
                .with_label_values(&["used"])
                .set(used as i64);
            self.pool_addresses
                .with_label_values(&["free"])
                .set(free as i64);
        }

        let t = src.tftp.snapshot();
        mirror(&self.tftp_requests, t.requests);
        for (result, n) in [
            ("ok", t.transfers_ok),
            ("failed", t.transfers_failed),
            ("probe", t.probes),
            ("not_found", t.not_found),
            ("not_found_probe", t.not_found_probe),
            ("refused_path", t.refused_path),
            ("refused_write", t.refused_write),
            ("refused_mode", t.refused_mode),
            ("busy", t.busy),
        ] {
            mirror(&self.tftp_transfers.with_label_values(&[result]), n);
        }
        mirror(&self.tftp_malformed, t.malformed);
        mirror(&self.tftp_sent_bytes, t.bytes_sent);
        self.tftp_active.set(t.active as i64);

        let d = src.dns.snapshot();
        for (t, n) in [("udp", d.queries_udp), ("tcp", d.queries_tcp)] {
            mirror(&self.dns_queries.with_label_values(&[t]), n);
        }
        for m in DnsMalformed::ALL {
            mirror(
                &self.dns_malformed.with_label_values(&[m.as_str()]),
                d.malformed[m as usize],
            );
        }
        for o in DnsOutcome::ALL {
            mirror(
                &self.dns_replies.with_label_values(&[o.as_str()]),
                d.outcomes[o as usize],
            );
        }
        for (result, n) in [
            ("answered", d.forwarded),
            ("failed", d.forward_failed),
            ("busy", d.forward_busy),
        ] {
            mirror(&self.dns_forwarded.with_label_values(&[result]), n);
        }
        mirror(&self.dns_send_errors, d.send_errors);

        let h = &src.http;
        for route in ROUTES.iter().copied().chain([UNMATCHED]) {
            for class in STATUS_CLASSES {
                mirror(
                    &self.http_responses.with_label_values(&[route, class]),
                    h.responses(route, class),
                );
            }
        }
        let l = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        for (result, n) in [
            ("accepted", l(&h.callbacks_accepted)),
            ("refused", l(&h.callbacks_refused)),
            ("not_taken", l(&h.callbacks_not_taken)),
        ] {
            mirror(&self.http_callbacks.with_label_values(&[result]), n);
        }
        mirror(&self.http_sendfile_bytes, l(&h.sendfile_bytes));

        let e = &src.engine;
        mirror(&self.run_transitions, l(&e.transitions));
        mirror(&self.run_events_ignored, l(&e.ignored));
        self.runs_queued.set(l(&e.queued) as i64);
        self.runs_active.set(l(&e.active) as i64);
        self.ha_standing_down.set(l(&e.standing_down) as i64);
        mirror(&self.observations_dropped, src.obs.dropped());
        mirror(&self.observations_coalesced, l(&e.coalesced));
        self.config_generation
            .set(src.inventory.borrow().generation() as i64);
    }
}

impl PowerObserver for Metrics {
    fn call(
        &self,
        driver: &'static str,
        op: &'static str,
        elapsed: Option<Duration>,
        error: Option<&PowerError>,
    ) {
        if let Some(d) = elapsed {
            self.bmc_duration
                .with_label_values(&[driver, op])
                .observe(d.as_secs_f64());
        }
        if let Some(e) = error {
            self.bmc_failures
                .with_label_values(&[driver, e.kind()])
                .inc();
        }
    }
}

/// What a scrape reads: the adapters' counters and the live snapshots.
pub struct Sources {
    pub dhcp: Arc<DhcpStats>,
    pub tftp: Arc<TftpStats>,
    pub http: Arc<HttpStats>,
    pub dns: Arc<DnsStats>,
    /// Pool mode only.
    pub pool: Option<Arc<PoolLeases>>,
    /// `None` when discovery is off.
    pub discovery: Option<Arc<crate::dhcp::discovery::Discovery>>,
    pub engine: Arc<EngineMetrics>,
    pub obs: ObservationSink,
    pub inventory: watch::Receiver<Arc<Inventory>>,
    /// Failed-token counts.
    pub auth: Arc<crate::auth::Auth>,
}

/// The metrics and their sources: what `GET /metrics` renders.
pub struct Exporter {
    pub metrics: Arc<Metrics>,
    pub sources: Sources,
}

impl Exporter {
    pub fn render(&self) -> Result<String, prometheus::Error> {
        self.metrics.render(&self.sources)
    }
}

/// `GET /metrics` on the API listener (merged into the API's routes in
/// `daemon`, behind the guard: a `read` token; Prometheus sends it with
/// `authorization: {credentials_file: ...}`). It carries counts, never
/// secrets nor (by default) per-machine labels.
pub fn router(exporter: Arc<Exporter>) -> crate::http::guard::Guarded {
    crate::http::guard::Routes::new()
        .get("/metrics", scrape)
        .with_state(exporter)
}

async fn scrape(
    axum::extract::State(e): axum::extract::State<Arc<Exporter>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match e.render() {
        Ok(body) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot encode metrics");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode metrics (see daemon log)\n",
            )
                .into_response()
        }
    }
}
