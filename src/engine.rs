//! The engine: the only writer of run state and machine intent (the netboot
//! switch). Commands (API), observations (adapters) and effect results
//! (BMC calls, port probes, stages, timers) come in over channels; each is
//! turned into a `workflow::Event`, `workflow::step` decides, the engine
//! persists the transition (compare-and-set), publishes it, then performs the
//! effects. Effects run in their own tasks and report back as events, so the
//! loop never waits on a BMC, a socket or a stage.

use crate::boot::BootTable;
use crate::feed::Feed;
use crate::inventory::{Inventory, Profile};
use crate::model::Mac;
use crate::observe::{DhcpKind, HttpServed, Observation};
use crate::power::{BootDev, BootSpec, Power, PowerOp};
use crate::render::RunCtx;
use crate::store::{self, NewRun, Store};
use crate::workflow::{
    self, Deadlines, Effect, Event, Facts, Observed, Phase, PowerStep, RunState, StageFacts,
    StageOutcome,
};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_util::sync::CancellationToken;

pub mod bmc_gate;
pub mod console;
pub mod junit;
pub mod probe;
pub mod stage;

#[derive(Debug)]
pub enum Command {
    /// Turn a system's netboot on (with a fresh callback token) or off.
    SetNetboot {
        system: String,
        on: bool,
        persistent: bool,
        reply: oneshot::Sender<Result<NetbootState, String>>,
    },
    /// A valid install-done callback arrived for this system and run.
    InstallDone {
        system: String,
        run_id: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Create runs (all or nothing); acknowledged once stored.
    CreateRuns {
        systems: Vec<String>,
        profile: Option<String>,
        requested_by: Option<String>,
        retry_of: Option<String>,
        /// Inspection runs (`rackboot inspect`) instead of reimages.
        inspect: bool,
        reply: oneshot::Sender<Result<Vec<RunInfo>, CreateError>>,
    },
    Cancel {
        run_id: String,
        reason: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A machine reported its hardware facts (checked) with its run's token
    /// (`run_id`), or a discovered machine's facts moved to the system it
    /// was adopted as (`None`).
    Facts {
        system: String,
        run_id: Option<String>,
        /// When they were reported (`None`: now).
        at: Option<i64>,
        facts: crate::api::facts::Facts,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A MAC outside the inventory reported its facts (checked) with its
    /// token (`dhcp.inspect_discovered`).
    DiscoveredFacts {
        mac: crate::model::Mac,
        facts: crate::api::facts::Facts,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A heartbeat: answered by the loop itself, so an answer means the loop
    /// is taking commands (the service watchdog, `notify`, pings on it).
    Ping { reply: oneshot::Sender<()> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootState {
    pub system: String,
    pub enabled: bool,
    pub run_id: Option<String>,
    pub persistent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub id: String,
    pub system: String,
    pub profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Busy(String),
    #[error("store: {0}")]
    Store(String),
}

/// What the engine reports as runs move (implemented by `metrics::Metrics`;
/// the engine knows nothing of Prometheus).
pub trait RunObserver: Send + Sync {
    /// A run left `phase` after `secs` (on a persisted transition).
    fn phase_left(&self, phase: Phase, secs: f64);
    /// A run ended in `result` (a terminal phase) `secs` after it was created.
    fn run_finished(&self, system: &str, result: Phase, secs: f64);
}

/// Transition latency inside the daemon: from taking an event to the
/// transition being persisted and published (the last 10,000, in µs).
#[derive(Debug, Default)]
pub struct EngineMetrics {
    pub transitions: std::sync::atomic::AtomicU64,
    pub ignored: std::sync::atomic::AtomicU64,
    /// Runs waiting for a slot / started and not finished (set after each scheduling pass).
    pub queued: std::sync::atomic::AtomicU64,
    pub active: std::sync::atomic::AtomicU64,
    /// Observations of machines without a run not stored: a repeat within
    /// `observe::QUIET_MS`.
    pub coalesced: std::sync::atomic::AtomicU64,
    /// 1 while the daemon stands down (`Engine::standing_down`), else 0.
    pub standing_down: std::sync::atomic::AtomicU64,
    latencies_us: std::sync::Mutex<VecDeque<u32>>,
}

impl EngineMetrics {
    fn record(&self, us: u32) {
        self.transitions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut l = self.latencies_us.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() >= 10_000 {
            l.pop_front();
        }
        l.push_back(us);
    }

    /// `{transitions, ignored, p50_us, p99_us, max_us}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut v: Vec<u32> = self
            .latencies_us
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        let q = |f: f64| {
            v.get(((v.len() as f64 - 1.0) * f).round() as usize)
                .copied()
        };
        json!({
            "transitions": self.transitions.load(std::sync::atomic::Ordering::Relaxed),
            "ignored_events": self.ignored.load(std::sync::atomic::Ordering::Relaxed),
            "coalesced_observations": self.coalesced.load(std::sync::atomic::Ordering::Relaxed),
            // Cut off from the database with a live peer: its runs' machines
            // are left to the peer (`Engine::standing_down`).
            "standing_down": self.standing_down.load(std::sync::atomic::Ordering::Relaxed) == 1,
            "p50_us": q(0.5), "p99_us": q(0.99), "max_us": v.last(),
        })
    }
}

/// Cheap-to-clone handle to the engine.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    feed: Arc<Feed>,
    pub metrics: Arc<EngineMetrics>,
    daemon_id: Arc<std::sync::Mutex<String>>,
}

impl EngineHandle {
    /// This daemon's current id in the registry.
    pub fn daemon_id(&self) -> String {
        self.daemon_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn call<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(f(reply))
            .await
            .map_err(|_| "engine stopped".to_string())?;
        rx.await.map_err(|_| "engine stopped".to_string())
    }

    pub async fn set_netboot(
        &self,
        system: &str,
        on: bool,
        persistent: bool,
    ) -> Result<NetbootState, String> {
        let system = system.to_string();
        self.call(|reply| Command::SetNetboot {
            system,
            on,
            persistent,
            reply,
        })
        .await?
    }

    /// Store a machine's facts report (the boot route checked it and the
    /// token); pending renders see them at once.
    pub async fn facts(
        &self,
        system: &str,
        run_id: &str,
        facts: crate::api::facts::Facts,
    ) -> Result<(), String> {
        let (system, run_id) = (system.to_string(), Some(run_id.to_string()));
        self.call(|reply| Command::Facts {
            system,
            run_id,
            at: None,
            facts,
            reply,
        })
        .await?
    }

    /// A discovered machine was adopted as `system`: its facts (reported at
    /// `at`) become the system's (templates, stages and `systems show` see
    /// them at once).
    pub async fn adopted_facts(
        &self,
        system: &str,
        facts: crate::api::facts::Facts,
        at: i64,
    ) -> Result<(), String> {
        let system = system.to_string();
        self.call(|reply| Command::Facts {
            system,
            run_id: None,
            at: Some(at),
            facts,
            reply,
        })
        .await?
    }

    /// Store a discovered machine's facts report (the boot route checked it
    /// and the MAC's token).
    pub async fn discovered_facts(
        &self,
        mac: crate::model::Mac,
        facts: crate::api::facts::Facts,
    ) -> Result<(), String> {
        self.call(|reply| Command::DiscoveredFacts { mac, facts, reply })
            .await?
    }

    pub async fn install_done(&self, system: &str, run_id: &str) -> Result<(), String> {
        let (system, run_id) = (system.to_string(), run_id.to_string());
        self.call(|reply| Command::InstallDone {
            system,
            run_id,
            reply,
        })
        .await?
    }

    pub async fn create_runs(
        &self,
        systems: Vec<String>,
        profile: Option<String>,
        requested_by: Option<String>,
        retry_of: Option<String>,
    ) -> Result<Vec<RunInfo>, CreateError> {
        self.create_runs_of(systems, profile, requested_by, retry_of, false)
            .await
    }

    /// [`Self::create_runs`], or inspection runs (`inspect`).
    pub async fn create_runs_of(
        &self,
        systems: Vec<String>,
        profile: Option<String>,
        requested_by: Option<String>,
        retry_of: Option<String>,
        inspect: bool,
    ) -> Result<Vec<RunInfo>, CreateError> {
        self.call(|reply| Command::CreateRuns {
            systems,
            profile,
            requested_by,
            retry_of,
            inspect,
            reply,
        })
        .await
        .map_err(CreateError::Store)?
    }

    pub async fn cancel(&self, run_id: &str, reason: &str) -> Result<(), String> {
        let (run_id, reason) = (run_id.to_string(), reason.to_string());
        self.call(|reply| Command::Cancel {
            run_id,
            reason,
            reply,
        })
        .await?
    }

    /// A round trip through the engine's loop: `Ok` once the loop took the
    /// command (behind whatever it was doing), `Err` if it stopped.
    pub async fn ping(&self) -> Result<(), String> {
        self.call(|reply| Command::Ping { reply }).await
    }

    /// Live events (JSON lines): run transitions and boot observations.
    /// The operator feed the engine publishes to (live and stored events).
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }
}

/// 128-bit random token, hex. Reads the kernel's CSPRNG.
pub fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A run id: sortable by creation time, unique.
pub fn new_run_id(now: i64) -> String {
    format!("run-{now}-{}", &random_token()[..6])
}

/// What `step` needs from a profile.
pub fn facts(p: &Profile) -> Facts {
    let ms = |d: Duration| d.as_millis() as i64;
    let t = &p.timeouts;
    Facts {
        deadlines: Deadlines {
            power_ms: ms(t.power),
            dhcp_ms: ms(t.dhcp),
            kernel_ms: ms(t.kernel),
            config_ms: ms(t.config),
            install_ms: ms(t.install),
            reboot_ms: ms(t.reboot),
            ports_ms: ms(t.ssh),
        },
        stages: p
            .stages
            .iter()
            .map(|s| StageFacts {
                name: s.name.clone(),
                timeout_ms: ms(s.timeout),
                keep_going: s.keep_going,
            })
            .collect(),
        reboots: p.reboots,
        netboot_after: p.netboot_after,
        boot_retries: p.boot_retries,
        before_stages: p.stages.iter().filter(|s| s.before).count(),
        rerun_interrupted: p.rerun_interrupted,
        inspect: false,
    }
}

/// The stored `overrides` of an inspection run.
pub const INSPECT_OVERRIDES: &str = r#"{"kind":"inspect"}"#;

/// Is a run with these stored `overrides` an inspection run?
pub fn is_inspect(overrides: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(overrides)
        .map(|v| v["kind"] == "inspect")
        .unwrap_or(false)
}

/// The run facts of a run: a reimage's from its profile; an inspection
/// run's without install, reboot or stages.
pub fn run_facts(p: &Profile, inspect: bool) -> Facts {
    let mut f = facts(p);
    if inspect {
        f.inspect = true;
        f.stages.clear();
        f.before_stages = 0;
        f.reboots = false;
        f.netboot_after = false;
    }
    f
}

/// The state machine's extra data as stored in `runs.data` (the store boundary).
fn encode_state(s: &RunState) -> String {
    json!({"seq": s.seq, "since": s.since, "due": s.due, "stage_failed": s.stage_failed,
           "boot_attempt": s.boot_attempt})
    .to_string()
}

fn decode_state(phase: &str, data: &str, reason: Option<String>) -> Option<RunState> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    Some(RunState {
        phase: Phase::parse(phase)?,
        seq: v["seq"].as_u64().unwrap_or(0) as u32,
        since: v["since"].as_i64().unwrap_or(0),
        due: v["due"].as_i64(),
        stage_failed: v["stage_failed"].as_bool().unwrap_or(false),
        boot_attempt: v["boot_attempt"].as_u64().unwrap_or(0) as u32,
        reason,
    })
}

/// Everything the engine owns or uses.
pub struct EngineDeps {
    pub store: Store,
    pub power: Arc<Power>,
    pub inventory: watch::Receiver<Arc<Inventory>>,
    pub data_dir: PathBuf,
    pub ssh_key: Option<PathBuf>,
    pub max_parallel_runs: usize,
    pub max_parallel_stages: usize,
    /// Serial console kept per run (`console.log`, IPMI SOL); 0: no capture.
    pub console_max_bytes: u64,
    /// Phase and run duration histograms (`/metrics`).
    /// Told how long each phase and each run took (the daemon's `/metrics`).
    pub metrics: Arc<dyn RunObserver>,
    /// Who this daemon is among the site's daemons (claims, leases).
    pub ha: HaConfig,
}

/// This daemon among the site's daemons (`[server] node`, `boot_domains`,
/// `lease_ttl`): runs are claimed by domain and held under a lease; see
/// `store::Store::claim_runs`.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub node: String,
    pub domains: Vec<String>,
    pub ttl: Duration,
}

impl HaConfig {
    /// Heartbeats (and the sweep for silent peers) this often.
    fn beat(&self) -> Duration {
        (self.ttl / 6).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Past this since the last heartbeat that got through, the daemon
    /// sends no BMC command (a peer may be about to fence it) and, when a
    /// peer of its domains was alive, serves none of its runs' boots
    /// (`Engine::standing_down`).
    fn trust(&self) -> Duration {
        self.ttl * 5 / 6
    }
}

struct Active {
    id: String,
    system: String,
    profile: String,
    state: RunState,
    facts: Facts,
    token: String,
    started_ms: i64,
    /// The lease token of this daemon's claim (fences every write).
    lease: i64,
}

pub struct Engine {
    d: EngineDeps,
    table: BootTable,
    table_tx: watch::Sender<Arc<BootTable>>,
    runs: HashMap<String, Active>,
    by_system: HashMap<String, String>,
    /// Which idle machines' observations are stored (`observe::Coalesce`).
    quiet: crate::observe::Coalesce,
    queue: VecDeque<String>,
    internal_tx: mpsc::UnboundedSender<(String, Event)>,
    feed: Arc<Feed>,
    shutdown: CancellationToken,
    stage_sem: Arc<Semaphore>,
    metrics: Arc<EngineMetrics>,
    /// Install-done callbacks answered only once the BMC has the boot
    /// device disk (or `PARK_MAX` passed): the installer reboots when the
    /// callback returns, and the reboot must find the new boot device.
    parked: HashMap<String, Parked>,
    /// Each system's last reported hardware facts (templates' `facts`,
    /// stages' `RACKBOOT_FACT_*`), loaded at start, replaced by reports.
    hw: HashMap<String, Arc<serde_json::Value>>,
    /// Serial console captures by run id (started before the power-on).
    consoles: HashMap<String, console::Capture>,
    /// This daemon's id in the registry (a new one per start and per
    /// re-registration after being fenced).
    me: String,
    /// When a heartbeat last got through (the trust window's start).
    last_beat: std::time::Instant,
    /// When this id registered: a peer is fenced only by a daemon healthy
    /// for one TTL itself.
    registered: std::time::Instant,
    /// Whether another daemon of its domains was alive at the last
    /// heartbeat that got through (one that would take its runs over).
    peer_alive: bool,
    /// No heartbeat through for `HaConfig::trust` with a peer alive: the
    /// peer may be taking this daemon's runs over, so their machines are
    /// left to it (`BootTable::stood_down` is published) until a heartbeat
    /// gets through (its runs are still its own) or says it was fenced
    /// (they are dropped). A daemon alone keeps serving its runs through a
    /// database outage: nobody else would.
    standing_down: bool,
    /// Ids of the daemon: shared with the handle (`Running::stop` retires it).
    id_cell: Arc<std::sync::Mutex<String>>,
}

type Parked = Arc<std::sync::Mutex<Option<oneshot::Sender<Result<(), String>>>>>;

/// The longest an install-done callback waits for the BMC's boot device.
const PARK_MAX: Duration = Duration::from_secs(10);

fn unpark(p: &Parked) {
    if let Some(tx) = p.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = tx.send(Ok(()));
    }
}

impl Engine {
    /// Load state, resume unfinished runs, spawn the loop.
    pub async fn start(
        d: EngineDeps,
        mut obs_rx: mpsc::Receiver<Observation>,
        shutdown: CancellationToken,
    ) -> Result<(EngineHandle, watch::Receiver<Arc<BootTable>>), store::StoreError> {
        let (table_tx, table_rx) = watch::channel(Arc::new(BootTable::new()));
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
        let feed = Feed::start(d.store.clone(), shutdown.clone());
        let stage_sem = Arc::new(Semaphore::new(d.max_parallel_stages.max(1)));
        let mut e = Engine {
            d,
            table: BootTable::new(),
            table_tx,
            runs: HashMap::new(),
            by_system: HashMap::new(),
            quiet: Default::default(),
            queue: VecDeque::new(),
            internal_tx,
            feed: feed.clone(),
            shutdown: shutdown.clone(),
            stage_sem,
            metrics: Arc::new(EngineMetrics::default()),
            parked: HashMap::new(),
            consoles: HashMap::new(),
            hw: HashMap::new(),
            me: String::new(),
            last_beat: std::time::Instant::now(),
            registered: std::time::Instant::now(),
            peer_alive: false,
            standing_down: false,
            id_cell: Arc::new(std::sync::Mutex::new(String::new())),
        };
        let metrics = e.metrics.clone();
        let id_cell = e.id_cell.clone();
        // Several daemons on one database: one of them at a time per BMC.
        if e.d.store.backend() == store::Backend::Postgres {
            e.d.power.set_gate(Arc::new(bmc_gate::StoreGate::new(
                e.d.store.clone(),
                id_cell.clone(),
            )));
        }
        e.register().await?;
        e.load().await?;
        let beat = e.d.ha.beat();
        tokio::spawn(async move {
            let mut claims = tokio::time::interval(Duration::from_secs(1));
            claims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut beats = tokio::time::interval(beat);
            beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Biased, in causal order: an effect's result (the BMC call
                // returned) comes before what the machine did next, and an
                // observation queued by an adapter (config served) before a
                // command that followed it (the install-done callback the
                // installer sent after it got its config).
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    // The heartbeat first: a daemon that was stopped (SIGSTOP,
                    // a VM paused) learns whether it was fenced before it
                    // acts on the backlog of timers and observations.
                    _ = beats.tick() => e.beat().await,
                    Some((id, ev)) = internal_rx.recv() => { e.apply(&id, ev).await; }
                    Some(o) = obs_rx.recv() => e.observe(o).await,
                    c = rx.recv() => match c {
                        Some(c) => e.command(c).await,
                        None => break,
                    },
                    _ = claims.tick() => e.claim_tick().await,
                }
            }
            tracing::debug!("engine stopped");
        });
        Ok((
            EngineHandle {
                tx,
                feed,
                metrics,
                daemon_id: id_cell,
            },
            table_rx,
        ))
    }

    /// Rebuild the boot table and resume every non-terminal run.
    async fn load(&mut self) -> Result<(), store::StoreError> {
        // The runs this daemon may drive: its domains' unowned ones (its
        // own earlier id's were released by `register`).
        let claimed = self
            .d
            .store
            .claim_runs(&self.me, &self.d.ha.domains, 100_000)
            .await?;
        let mut rows = Vec::new();
        let mut leases = HashMap::new();
        for (id, lease) in claimed {
            if let Some(r) = self.d.store.get_run(&id).await? {
                leases.insert(id, lease);
                rows.push(r);
            }
        }
        let netboot = self.d.store.netboot().await?;
        for f in self.d.store.all_facts().await? {
            match serde_json::from_str(&f.data) {
                Ok(v) => {
                    self.hw.insert(f.system, Arc::new(v));
                }
                Err(e) => {
                    tracing::warn!(system = %f.system, error = %e, "stored facts unreadable: ignored")
                }
            }
        }
        let inv = self.d.inventory.borrow().clone();
        let mut resumed = Vec::new();
        for r in rows {
            let profile = inv.profile(&r.profile).cloned();
            let (Some(state), Some(profile)) =
                (decode_state(&r.state, &r.data, r.reason.clone()), profile)
            else {
                let why = format!(
                    "cannot resume: profile {:?} or state {:?} unknown",
                    r.profile, r.state
                );
                tracing::error!(run = %r.id, "{why}");
                let _ = self
                    .d
                    .store
                    .transition(
                        &r.id,
                        &r.state,
                        "failed",
                        &r.data,
                        Some(&why),
                        true,
                        &why,
                        store::now_ms(),
                    )
                    .await;
                continue;
            };
            let lease = leases.get(&r.id).copied().unwrap_or(0);
            if self.adopt(&r, &profile, state, &netboot, lease) {
                resumed.push(r.id.clone());
            }
        }
        for n in netboot.into_iter().filter(|n| n.enabled) {
            match n.run_id.as_deref() {
                Some(id) if crate::boot::is_run_id(id) => {
                    if let Some(a) = self.runs.get(id) {
                        self.table.insert(&n.system, self.ctx(a));
                    } else if self
                        .d
                        .store
                        .get_run(id)
                        .await?
                        .is_some_and(|r| r.finished_at.is_none())
                    {
                        // A peer's run: the peer answers this machine
                        // (`boot::leave_to_peer`); its switch stays on.
                    } else {
                        // A run that ended while its switch stayed on: turn it off.
                        self.d
                            .store
                            .set_netboot(&n.system, false, None, None, false)
                            .await?;
                    }
                }
                _ => {
                    let system = n.system.clone();
                    let ctx = self.manual_ctx(n);
                    self.table.insert(&system, ctx);
                }
            }
        }
        self.publish();
        for id in resumed {
            tracing::info!(run = %id, "resuming run after restart");
            self.apply(&id, Event::Resume).await;
        }
        self.schedule().await;
        Ok(())
    }

    /// A new daemon id in the registry; the node's earlier ids are fenced
    /// and their runs released (a restart takes them back at once).
    async fn register(&mut self) -> Result<(), store::StoreError> {
        self.me = format!("{}#{}", self.d.ha.node, &random_token()[..12]);
        let released = self
            .d
            .store
            .register_daemon(&self.me, &self.d.ha.node, &self.d.ha.domains)
            .await?;
        *self.id_cell.lock().unwrap_or_else(|p| p.into_inner()) = self.me.clone();
        self.last_beat = std::time::Instant::now();
        self.registered = self.last_beat;
        tracing::info!(daemon = %self.me, domains = ?self.d.ha.domains, released, "registered");
        Ok(())
    }

    /// Forget a run this daemon no longer owns (its tasks' events are then
    /// ignored; the netboot switch is the new owner's).
    fn drop_run(&mut self, id: &str) {
        if let Some(a) = self.runs.remove(id) {
            if self.by_system.get(&a.system).map(String::as_str) == Some(id) {
                self.by_system.remove(&a.system);
            }
            // Its netboot entry goes with it: a run this daemon no longer
            // drives gets no installer, script or callback from it (the
            // caller publishes the table).
            if self.table.get(&a.system).is_some_and(|c| c.id == id) {
                self.table.remove(&a.system);
            }
        }
        self.queue.retain(|q| q != id);
        if let Some(c) = self.consoles.remove(id) {
            drop(c);
        }
        self.parked.remove(id);
    }

    /// A run another daemon drives now (lease lost, fenced): dropped, its
    /// machine's DHCP left to the owner. The caller publishes the table.
    fn lose_run(&mut self, id: &str) {
        if let Some(system) = self.runs.get(id).map(|a| a.system.clone()) {
            self.table.leave(&system);
        }
        self.drop_run(id);
    }

    /// A manual netboot switch's entry in the boot table, from its row.
    fn manual_ctx(&self, n: store::NetbootRow) -> RunCtx {
        RunCtx {
            id: n.run_id.unwrap_or_else(|| "manual".into()),
            token: n.token.unwrap_or_default(),
            profile: None,
            persistent: n.persistent,
            facts: self.hw.get(&n.system).cloned(),
        }
    }

    /// Past the trust window with a peer alive: stand down (checked at
    /// every heartbeat and claim tick, so within a second of the window).
    fn stand_down_if_silent(&mut self) {
        if !self.standing_down && self.peer_alive && self.last_beat.elapsed() > self.d.ha.trust() {
            self.standing_down = true;
            tracing::warn!(daemon = %self.me, runs = self.runs.len(), silent_ms = self.last_beat.elapsed().as_millis() as u64,
                "no heartbeat through and a peer is alive: leaving this daemon's runs' machines to it until the database answers");
            self.publish();
        }
    }

    /// The heartbeat, then the sweep for silent peers of its domains. A
    /// fenced daemon drops every run and registers again.
    async fn beat(&mut self) {
        self.stand_down_if_silent();
        match self.d.store.heartbeat(&self.me).await {
            Ok(true) => {
                self.last_beat = std::time::Instant::now();
                if self.standing_down {
                    self.standing_down = false;
                    tracing::info!(daemon = %self.me, runs = self.runs.len(), "heartbeat through, not fenced: serving this daemon's runs again");
                    self.publish();
                }
            }
            Ok(false) => {
                tracing::error!(daemon = %self.me, runs = self.runs.len(), "fenced by a peer: dropping every run and registering again");
                self.standing_down = false;
                let ids: Vec<String> = self.runs.keys().cloned().collect();
                for id in ids {
                    self.lose_run(&id);
                }
                self.publish();
                if let Err(e) = self.register().await {
                    tracing::error!(error = %e, "cannot register again");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                return;
            }
        }
        let ttl = self.d.ha.ttl.as_millis() as i64;
        if self.d.store.backend() == store::Backend::Postgres {
            match self
                .d
                .store
                .live_peers(&self.me, &self.d.ha.domains, ttl)
                .await
            {
                Ok(n) => self.peer_alive = n > 0,
                Err(e) => tracing::warn!(error = %e, "cannot read the live peers"),
            }
        }
        if self.registered.elapsed() < self.d.ha.ttl {
            return;
        }
        match self
            .d
            .store
            .fence_silent(&self.me, &self.d.ha.domains, ttl)
            .await
        {
            Ok(f) if !f.is_empty() => {
                tracing::warn!(fenced = ?f, "silent peers fenced: their runs are released for takeover")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot sweep for silent peers"),
        }
    }

    /// Claim what is unowned in this daemon's domains (runs created by
    /// another daemon's API, runs of a fenced peer) and drive it from its
    /// stored step.
    async fn claim_tick(&mut self) {
        if self.last_beat.elapsed() > self.d.ha.trust() {
            self.stand_down_if_silent();
            return;
        }
        // Machines whose run a peer drives: their DHCP is the peer's.
        match self.d.store.peer_runs(&self.me, &self.d.ha.domains).await {
            Ok(systems) => {
                if self.table.set_elsewhere(systems.into_iter().collect()) {
                    self.publish();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the peers' runs"),
        }
        if self.d.store.backend() == store::Backend::Postgres {
            self.sync_manual_netboot().await;
        }
        let claimed = match self
            .d
            .store
            .claim_runs(&self.me, &self.d.ha.domains, 64)
            .await
        {
            Ok(c) if c.is_empty() => return,
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claim failed");
                return;
            }
        };
        let mut resume = Vec::new();
        for (id, lease) in claimed {
            if self.take_stored(&id, lease, "claimed").await {
                resume.push(id);
            }
        }
        self.publish();
        for id in resume {
            self.apply(&id, Event::Resume).await;
        }
        self.schedule().await;
    }

    /// The manual netboot switches as the database has them: one set or
    /// cleared through a peer's API (or its install-done callback) is
    /// served here within a claim tick, not only after a restart.
    async fn sync_manual_netboot(&mut self) {
        let rows = match self.d.store.netboot_on().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the netboot switches");
                return;
            }
        };
        let want = rows
            .into_iter()
            .filter(|n| n.enabled && !n.run_id.as_deref().is_some_and(crate::boot::is_run_id))
            .map(|n| (n.system.clone(), self.manual_ctx(n)))
            .collect();
        if self.table.sync_manual(want) {
            self.publish();
        }
    }

    /// Take the run into the engine as the store has it (claimed, or its
    /// stored step differs from the one in memory: a crashed database that
    /// lost its last commits), under `lease`. Returns whether to resume it;
    /// the caller publishes the boot table (once for a batch of claims).
    async fn take_stored(&mut self, id: &str, lease: i64, why: &str) -> bool {
        let Ok(Some(r)) = self.d.store.get_run(id).await else {
            return false;
        };
        let netboot = self.d.store.netboot().await.unwrap_or_default();
        let profile = self.d.inventory.borrow().profile(&r.profile).cloned();
        let (Some(state), Some(profile)) =
            (decode_state(&r.state, &r.data, r.reason.clone()), profile)
        else {
            tracing::error!(run = %id, "a run this daemon cannot drive (profile or state unknown)");
            return false;
        };
        tracing::info!(run = %id, system = %r.system, phase = %state.phase, lease, "{why}");
        self.drop_run(id);
        let resume = self.adopt(&r, &profile, state, &netboot, lease);
        if resume {
            if let Some(a) = self.runs.get(id) {
                if netboot
                    .iter()
                    .any(|n| n.enabled && n.run_id.as_deref() == Some(id))
                {
                    self.table.insert(&r.system, self.ctx(a));
                }
            }
        }
        resume
    }

    /// Take a stored run into the engine (at start, or claimed later) with
    /// its callback token from the netboot switch; queued runs wait for a
    /// slot. Returns whether it is to be resumed (it was past `queued`).
    fn adopt(
        &mut self,
        r: &store::RunRow,
        profile: &Profile,
        state: RunState,
        netboot: &[store::NetbootRow],
        lease: i64,
    ) -> bool {
        let token = netboot
            .iter()
            .find(|n| n.run_id.as_deref() == Some(&r.id))
            .and_then(|n| n.token.clone())
            .unwrap_or_else(random_token);
        self.by_system.insert(r.system.clone(), r.id.clone());
        let queued = state.phase == Phase::Queued;
        if queued {
            self.queue.push_back(r.id.clone());
        }
        // Past the power-on (a restart, a takeover): the machine is booting
        // or running, so its console capture goes on (appended; a step
        // before the power-on starts it with the power cycle).
        let powered = !matches!(state.phase, Phase::Queued | Phase::Locked | Phase::BootDev)
            && !state.phase.is_terminal();
        let bmc = self
            .d
            .inventory
            .borrow()
            .system(&r.system)
            .and_then(|s| s.bmc.clone());
        if let (true, Some(bmc)) = (powered, bmc) {
            self.start_console(&r.id, &r.system, &bmc);
        }
        self.runs.insert(
            r.id.clone(),
            Active {
                id: r.id.clone(),
                system: r.system.clone(),
                profile: r.profile.clone(),
                facts: run_facts(profile, is_inspect(&r.overrides)),
                state,
                token,
                started_ms: r.created_at,
                lease,
            },
        );
        !queued
    }

    fn ctx(&self, a: &Active) -> RunCtx {
        RunCtx {
            id: a.id.clone(),
            token: a.token.clone(),
            profile: Some(a.profile.clone()),
            persistent: false,
            facts: self.hw.get(&a.system).cloned(),
        }
    }

    async fn take_facts(
        &mut self,
        system: &str,
        run_id: Option<&str>,
        at: Option<i64>,
        facts: &crate::api::facts::Facts,
    ) -> Result<(), String> {
        let v = serde_json::to_value(facts).map_err(|e| e.to_string())?;
        let at = at.unwrap_or_else(store::now_ms);
        self.d
            .store
            .put_facts(&store::FactsRow {
                system: system.to_string(),
                at,
                run_id: run_id.map(str::to_string),
                data: v.to_string(),
            })
            .await
            .map_err(|e| e.to_string())?;
        let v = Arc::new(v);
        self.hw.insert(system.to_string(), v.clone());
        if let Some(mut ctx) = self.table.get(system).cloned() {
            ctx.facts = Some(v);
            self.table.insert(system, ctx);
            self.publish();
        }
        tracing::info!(system = %system, run = ?run_id, "hardware facts reported");
        if let Some(run_id) = run_id {
            if self.runs.get(run_id).is_some_and(|a| a.facts.inspect) {
                self.apply(run_id, Event::FactsReported).await;
            }
        }
        self.emit(
            json!({"type": "facts", "run": run_id, "system": system, "at": at,
            "detail": format!("{} CPUs, {} MiB, {} disks, {} NICs",
                facts.cpu.as_ref().map(|c| c.count).unwrap_or(0),
                facts.memory_mib.unwrap_or(0), facts.disks.len(), facts.nics.len())}),
        );
        Ok(())
    }

    /// A discovered machine's facts: stored against its MAC (what `systems
    /// add --from-discovered` carries over), announced on the feed. No run,
    /// no BMC: the machine powers itself off.
    async fn take_discovered_facts(
        &mut self,
        mac: &crate::model::Mac,
        facts: &crate::api::facts::Facts,
    ) -> Result<(), String> {
        let v = serde_json::to_value(facts).map_err(|e| e.to_string())?;
        let at = store::now_ms();
        let stored = self
            .d
            .store
            .put_discovered_facts(&mac.to_string(), at, &v.to_string())
            .await
            .map_err(|e| e.to_string())?;
        if !stored {
            // Its sighting is flushed once a second: the script retries.
            return Err(format!("{mac} is not recorded as discovered (yet)"));
        }
        tracing::info!(%mac, "hardware facts reported by a discovered machine");
        self.emit(json!({"type": "facts", "mac": mac.to_string(), "at": at,
            "detail": format!("discovered {mac}: {}", crate::facts::summary(facts))}));
        Ok(())
    }

    fn publish(&self) {
        self.metrics.standing_down.store(
            self.standing_down as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let t = if self.standing_down {
            self.table.stood_down()
        } else {
            self.table.clone()
        };
        self.table_tx.send_replace(Arc::new(t));
    }

    fn emit(&self, v: serde_json::Value) {
        self.feed.publish(v);
    }

    async fn command(&mut self, c: Command) {
        match c {
            Command::SetNetboot {
                system,
                on,
                persistent,
                reply,
            } => {
                let r = self.manual_netboot(&system, on, persistent).await;
                let _ = reply.send(r);
            }
            Command::Facts {
                system,
                run_id,
                at,
                facts,
                reply,
            } => {
                let r = self
                    .take_facts(&system, run_id.as_deref(), at, &facts)
                    .await;
                let _ = reply.send(r);
            }
            Command::DiscoveredFacts { mac, facts, reply } => {
                let r = self.take_discovered_facts(&mac, &facts).await;
                let _ = reply.send(r);
            }
            Command::InstallDone {
                system,
                run_id,
                reply,
            } => {
                let r = if self.runs.contains_key(&run_id) {
                    // The callback must not be lost: if it does not apply now,
                    // say so, and the installer retries.
                    if self.apply(&run_id, Event::InstallDone).await {
                        // Boot device disk asked of the BMC: answer when it is set.
                        let asked = self.runs.get(&run_id).is_some_and(|a| {
                            a.state.phase == Phase::Reboot
                                && !a.facts.netboot_after
                                && self
                                    .d
                                    .inventory
                                    .borrow()
                                    .system(&a.system)
                                    .is_some_and(|s| s.bmc.is_some())
                        });
                        if asked {
                            let p: Parked = Arc::new(std::sync::Mutex::new(Some(reply)));
                            self.parked.insert(run_id.clone(), p.clone());
                            tokio::spawn(async move {
                                tokio::time::sleep(PARK_MAX).await;
                                unpark(&p);
                            });
                            return;
                        }
                        Ok(())
                    } else {
                        let phase = self.runs.get(&run_id).map(|a| a.state.phase.name());
                        Err(format!(
                            "run {run_id} cannot take the callback in phase {}",
                            phase.unwrap_or_default()
                        ))
                    }
                } else if self
                    .table
                    .get(&system)
                    .is_some_and(|r| r.id == run_id && !crate::boot::is_run_id(&r.id))
                {
                    // A manual netboot: the callback ends it, unless it is
                    // persistent (a diskless or live machine: every boot
                    // gets the image; the callback is taken and it stays).
                    if self.table.get(&system).is_some_and(|r| r.persistent) {
                        tracing::info!(system = %system, "install-done callback: the netboot is persistent, it stays on");
                        Ok(())
                    } else {
                        self.manual_netboot(&system, false, false).await.map(|_| ())
                    }
                } else {
                    Err(format!("run {run_id} is not pending for {system}"))
                };
                let _ = reply.send(r);
            }
            Command::CreateRuns {
                systems,
                profile,
                requested_by,
                retry_of,
                inspect,
                reply,
            } => {
                let r = self
                    .create(systems, profile, requested_by, retry_of, inspect)
                    .await;
                let _ = reply.send(r);
                self.schedule().await;
            }
            Command::Cancel {
                run_id,
                reason,
                reply,
            } => {
                let r = if self.runs.contains_key(&run_id) {
                    self.queue.retain(|q| q != &run_id);
                    self.apply(&run_id, Event::Cancel(reason)).await;
                    Ok(())
                } else {
                    Err(format!("run {run_id} is not active"))
                };
                let _ = reply.send(r);
                self.schedule().await;
            }
            Command::Ping { reply } => {
                let _ = reply.send(());
            }
        }
    }

    async fn manual_netboot(
        &mut self,
        system: &str,
        on: bool,
        persistent: bool,
    ) -> Result<NetbootState, String> {
        if let Some(id) = self.by_system.get(system) {
            return Err(format!(
                "{system} has an active run {id}: cancel it instead"
            ));
        }
        if on {
            let run = RunCtx {
                id: format!("manual-{}", store::now_ms()),
                token: random_token(),
                profile: None,
                persistent,
                facts: self.hw.get(system).cloned(),
            };
            self.d
                .store
                .set_netboot(system, true, Some(&run.id), Some(&run.token), persistent)
                .await
                .map_err(|e| e.to_string())?;
            let id = run.id.clone();
            self.table.insert(system, run);
            self.publish();
            tracing::info!(system = %system, persistent, "netboot on (manual)");
            Ok(NetbootState {
                system: system.into(),
                enabled: true,
                run_id: Some(id),
                persistent,
            })
        } else {
            self.d
                .store
                .set_netboot(system, false, None, None, false)
                .await
                .map_err(|e| e.to_string())?;
            self.table.remove(system);
            self.publish();
            tracing::info!(system = %system, "netboot off");
            Ok(NetbootState {
                system: system.into(),
                enabled: false,
                run_id: None,
                persistent: false,
            })
        }
    }

    async fn create(
        &mut self,
        systems: Vec<String>,
        profile: Option<String>,
        requested_by: Option<String>,
        retry_of: Option<String>,
        inspect: bool,
    ) -> Result<Vec<RunInfo>, CreateError> {
        let inv = self.d.inventory.borrow().clone();
        if systems.is_empty() {
            return Err(CreateError::Invalid("no systems given".into()));
        }
        let mut plan = Vec::new();
        for name in &systems {
            let s = inv.system(name).ok_or_else(|| {
                CreateError::Invalid(format!("no system {name:?} in the inventory"))
            })?;
            let pname = profile.clone().unwrap_or_else(|| s.profile.clone());
            let p = inv
                .profile(&pname)
                .ok_or_else(|| CreateError::Invalid(format!("no profile {pname:?}")))?;
            if p.is_abstract {
                return Err(CreateError::Invalid(format!(
                    "profile {pname:?} is abstract"
                )));
            }
            if s.bmc.is_none() {
                return Err(CreateError::Invalid(format!(
                    "system {name:?} has no BMC: it cannot be power-cycled into PXE"
                )));
            }
            if let Some(id) = self.by_system.get(name) {
                return Err(CreateError::Busy(format!(
                    "{name} already has an active run {id}"
                )));
            }
            if plan.iter().any(|(n, _): &(String, Profile)| n == name) {
                return Err(CreateError::Invalid(format!("{name} given twice")));
            }
            plan.push((name.clone(), p.clone()));
        }
        let mut out = Vec::new();
        for (name, p) in plan {
            let now = store::now_ms();
            let id = new_run_id(now);
            let state = RunState::new(now);
            self.d
                .store
                .create_run(
                    &NewRun {
                        id: &id,
                        system: &name,
                        profile: &p.name,
                        state: "queued",
                        data: &encode_state(&state),
                        requested_by: requested_by.as_deref(),
                        overrides: if inspect { INSPECT_OVERRIDES } else { "{}" },
                        retry_of: retry_of.as_deref(),
                        domain: &inv
                            .system(&name)
                            .map(|s| inv.boot_domain(s))
                            .unwrap_or_default(),
                    },
                    now,
                )
                .await
                .map_err(|e| match e {
                    // Another daemon (or connection) queued one first.
                    e @ store::StoreError::ActiveRun { .. } => CreateError::Busy(e.to_string()),
                    e => CreateError::Store(e.to_string()),
                })?;
            tracing::info!(run = %id, system = %name, profile = %p.name, inspect, "run queued");
            self.emit(json!({"type": "transition", "run": id, "system": name, "from": null, "to": "queued", "at": now, "detail": "created"}));
            out.push(RunInfo {
                id: id.clone(),
                system: name.clone(),
                profile: p.name.clone(),
            });
            // Driven here when this daemon serves the machine's domain and
            // is not fenced; else a daemon of that domain claims it.
            let domain = inv
                .system(&name)
                .map(|s| inv.boot_domain(s))
                .unwrap_or_default();
            if !self.d.ha.domains.contains(&domain) {
                continue;
            }
            let lease = match self.d.store.claim_run(&id, &self.me).await {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(run = %id, error = %e, "cannot claim the new run: a claim tick will");
                    continue;
                }
            };
            self.by_system.insert(name.clone(), id.clone());
            self.queue.push_back(id.clone());
            self.runs.insert(
                id.clone(),
                Active {
                    id: id.clone(),
                    system: name.clone(),
                    profile: p.name.clone(),
                    facts: run_facts(&p, inspect),
                    state,
                    token: random_token(),
                    started_ms: now,
                    lease,
                },
            );
        }
        Ok(out)
    }

    fn running(&self) -> usize {
        self.runs
            .values()
            .filter(|a| !a.state.phase.is_terminal() && a.state.phase != Phase::Queued)
            .count()
    }

    /// Start queued runs while there are free slots.
    async fn schedule(&mut self) {
        while self.running() < self.d.max_parallel_runs {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            Box::pin(self.apply(&id, Event::Start)).await;
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.queued.store(self.queue.len() as u64, Relaxed);
        self.metrics.active.store(self.running() as u64, Relaxed);
    }

    /// Map a boot observation to the event of the run it belongs to
    /// (`workflow::event_for`).
    async fn observe(&mut self, o: Observation) {
        let inv = self.d.inventory.borrow().clone();
        let (mac, seen) = observed(&o);
        let Some(system) = mac.and_then(|m| inv.by_mac(&m)).map(|s| s.name.clone()) else {
            return;
        };
        let run = self.by_system.get(&system).cloned();
        let phase = run
            .as_ref()
            .and_then(|id| self.runs.get(id))
            .map(|a| a.state.phase);
        let now = store::now_ms();
        let in_run = phase.is_some_and(|p| !p.is_terminal());
        if self.quiet.admit(&system, seen.as_str(), in_run, now) {
            self.emit(json!({"type": "observation", "system": system, "what": seen.as_str(), "at": now, "detail": format!("{o:?}")}));
        } else {
            self.metrics
                .coalesced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (Some(id), Some(phase)) = (run, phase) else {
            return;
        };
        if let Some(ev) = workflow::event_for(seen, phase) {
            self.apply(&id, ev).await;
        }
    }

    /// Step a run with an event: persist, publish, perform effects.
    /// Returns whether that first event was taken (persisted).
    async fn apply(&mut self, id: &str, ev: Event) -> bool {
        let mut pending = VecDeque::from([(id.to_string(), ev)]);
        let mut first = None;
        while let Some((id, ev)) = pending.pop_front() {
            if matches!(ev, Event::Bmc(PowerStep::SetBootDisk, _)) {
                if let Some(p) = self.parked.remove(&id) {
                    unpark(&p);
                }
            }
            let is_first = first.is_none();
            if is_first {
                first = Some(false);
            }
            let Some(a) = self.runs.get(&id) else {
                continue;
            };
            let t0 = std::time::Instant::now();
            let now = store::now_ms();
            let Some(t) = workflow::step(&a.state, &ev, &a.facts, now) else {
                self.metrics
                    .ignored
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(run = %id, phase = %a.state.phase, event = ?ev, "event ignored");
                continue;
            };
            let from = a.state.phase.name();
            let to = t.state.phase.name();
            let terminal = t.state.phase.is_terminal();
            let lease = store::Lease {
                owner: self.me.clone(),
                token: a.lease,
            };
            let ok = self
                .d
                .store
                .transition_fenced(
                    &id,
                    &from,
                    &to,
                    &encode_state(&t.state),
                    t.state.reason.as_deref(),
                    terminal,
                    &t.detail,
                    now,
                    Some(&lease),
                )
                .await;
            match ok {
                Ok(true) => {}
                Ok(false) => {
                    match self.d.store.run_owner(&id).await {
                        Ok(Some((owner, token)))
                            if owner.as_deref() != Some(self.me.as_str())
                                || token != lease.token =>
                        {
                            tracing::warn!(run = %id, owner = ?owner, "lease lost (fenced or taken over): this daemon stops driving the run");
                            self.lose_run(&id);
                            self.publish();
                        }
                        Ok(Some(_)) => {
                            // Still ours, but the store is at another step
                            // (a database crash lost its last commits):
                            // drive it from the stored step, as a restart would.
                            tracing::warn!(run = %id, %from, %to, "the store has the run at another step: resuming from it");
                            if self
                                .take_stored(&id, lease.token, "resumed from the stored step")
                                .await
                            {
                                pending.push_back((id.clone(), Event::Resume));
                            }
                            self.publish();
                        }
                        _ => {
                            tracing::error!(run = %id, %from, %to, "stale transition refused by the store")
                        }
                    }
                    continue;
                }
                Err(e) => {
                    // Not persisted: do not act on it (the run resumes from the stored state).
                    tracing::error!(run = %id, error = %e, "cannot persist transition");
                    continue;
                }
            }
            if is_first {
                first = Some(true);
            }
            let a = self.runs.get_mut(&id).expect("present");
            let elapsed = (now - a.started_ms) as f64 / 1000.0;
            if a.state.phase != t.state.phase {
                let secs = (now - a.state.since) as f64 / 1000.0;
                self.d.metrics.phase_left(a.state.phase, secs);
            }
            if terminal {
                self.d
                    .metrics
                    .run_finished(&a.system, t.state.phase, elapsed);
            }
            tracing::info!(run = %id, system = %a.system, %from, %to, elapsed = format!("+{elapsed:.1}s"), "{}", t.detail);
            a.state = t.state.clone();
            let system = a.system.clone();
            self.emit(json!({"type": "transition", "run": id, "system": system, "from": from, "to": to, "at": now, "elapsed_s": elapsed, "detail": t.detail, "reason": t.state.reason}));
            self.metrics
                .record(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            for eff in t.effects {
                if let Some(next) = self.effect(&id, eff).await {
                    pending.push_back((id.clone(), next));
                }
            }
        }
        first.unwrap_or(false)
    }

    fn spawn_event<F>(&self, id: &str, fut: F)
    where
        F: std::future::Future<Output = Option<Event>> + Send + 'static,
    {
        let tx = self.internal_tx.clone();
        let id = id.to_string();
        let sd = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sd.cancelled() => {}
                ev = fut => if let Some(ev) = ev { let _ = tx.send((id, ev)); }
            }
        });
    }

    /// Capture the run's serial console from before its power-on until it
    /// ends (IPMI BMCs; once per run, a boot retry keeps the capture). What
    /// happens to it comes back as `Event::Console` timeline notes.
    fn start_console(&mut self, id: &str, system: &str, bmc: &crate::inventory::Bmc) {
        if self.d.console_max_bytes == 0
            || bmc.kind != crate::inventory::BmcKind::Ipmi
            || self.consoles.contains_key(id)
        {
            return;
        }
        let tx = self.internal_tx.clone();
        let run = id.to_string();
        let file = console::path(&stage::run_dir(&self.d.data_dir, id));
        tracing::debug!(run = %id, system, bmc = %bmc.address, "console capture starting");
        let c = console::start(
            self.d.power.clone(),
            bmc.clone(),
            file,
            self.d.console_max_bytes,
            id.to_string(),
            self.shutdown.clone(),
            move |what| {
                let _ = tx.send((run.clone(), Event::Console(what)));
            },
        );
        self.consoles.insert(id.to_string(), c);
    }

    /// Whether this daemon may act on the machine now (a BMC command, a
    /// stage): a heartbeat got through within the trust window (one is
    /// tried first when the last is stale: the database may just be back)
    /// and the run is still its own. Otherwise a peer may own it by now.
    async fn trusted(&mut self, id: &str, what: &str) -> bool {
        if self.last_beat.elapsed() > self.d.ha.trust() {
            self.beat().await;
        }
        if self.last_beat.elapsed() > self.d.ha.trust() || !self.runs.contains_key(id) {
            tracing::warn!(run = %id, what, "no heartbeat got through within the trust window: not acting");
            return false;
        }
        true
    }

    /// Perform one effect. Immediate results are returned as the next event.
    async fn effect(&mut self, id: &str, eff: Effect) -> Option<Event> {
        let a = self.runs.get(id)?;
        let system = a.system.clone();
        let inv = self.d.inventory.borrow().clone();
        match eff {
            Effect::NetbootOn => {
                let ctx = self.ctx(a);
                if let Err(e) = self
                    .d
                    .store
                    .set_netboot(&system, true, Some(id), Some(&ctx.token), false)
                    .await
                {
                    return Some(Event::Cancel(format!("store error: {e}")));
                }
                self.table.insert(&system, ctx);
                self.publish();
                Some(Event::NetbootOn)
            }
            Effect::NetbootOff => {
                if self.table.get(&system).map(|r| r.id == id).unwrap_or(false) {
                    if let Err(e) = self
                        .d
                        .store
                        .set_netboot(&system, false, None, None, false)
                        .await
                    {
                        tracing::error!(run = %id, error = %e, "cannot clear netboot");
                    }
                    self.table.remove(&system);
                    self.publish();
                }
                None
            }
            Effect::NetbootPersist => {
                // The run's switch becomes a persistent one, with the run's
                // profile (a new token: the run's own expires with it).
                if self.table.get(&system).map(|r| r.id == id).unwrap_or(false) {
                    let ctx = RunCtx {
                        id: format!("manual-{}", store::now_ms()),
                        token: random_token(),
                        profile: Some(a.profile.clone()),
                        persistent: true,
                        facts: self.hw.get(&system).cloned(),
                    };
                    if let Err(e) = self
                        .d
                        .store
                        .set_netboot(&system, true, Some(&ctx.id), Some(&ctx.token), true)
                        .await
                    {
                        tracing::error!(run = %id, error = %e, "cannot keep netboot on");
                    }
                    self.table.insert(&system, ctx);
                    self.publish();
                }
                None
            }
            Effect::Bmc(step) => {
                if !self.trusted(id, "BMC command").await {
                    return None;
                }
                let Some(bmc) = inv.system(&system).and_then(|s| s.bmc.clone()) else {
                    return Some(Event::Bmc(
                        step,
                        Err(format!("no BMC configured for {system}")),
                    ));
                };
                if step == PowerStep::PowerCycle {
                    self.start_console(id, &system, &bmc);
                }
                let power = self.d.power.clone();
                let efi = inv
                    .system(&system)
                    .and_then(|s| s.vars.get("boot_mode"))
                    .and_then(|v| v.as_str())
                    == Some("uefi");
                self.spawn_event(id, async move {
                    let r = match step {
                        PowerStep::SetBootPxe => power
                            .set_boot(
                                &bmc,
                                BootSpec {
                                    dev: BootDev::Pxe,
                                    persistent: false,
                                    efi,
                                },
                            )
                            .await
                            .map(|_| ()),
                        PowerStep::PowerCycle => power.on_or_cycle(&bmc).await.map(|_| ()),
                        PowerStep::PowerOff => power.power(&bmc, PowerOp::Off).await,
                        PowerStep::SetBootDisk => power
                            .set_boot(
                                &bmc,
                                BootSpec {
                                    dev: BootDev::Disk,
                                    persistent: false,
                                    efi,
                                },
                            )
                            .await
                            .map(|_| ()),
                    };
                    Some(Event::Bmc(step, r.map_err(|e| e.to_string())))
                });
                None
            }
            Effect::Deadline { seq, at } => {
                let wait = (at - store::now_ms()).max(0) as u64;
                self.spawn_event(id, async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    Some(Event::Deadline(seq))
                });
                None
            }
            Effect::ProbePorts { until, after_down } => {
                let s = inv.system(&system)?;
                let ip = s.ip;
                let ports = inv
                    .profile(&a.profile)
                    .map(|p| p.wait_ports.clone())
                    .unwrap_or_else(|| vec![22]);
                self.spawn_event(id, async move {
                    Some(
                        match probe::wait_ports(ip, &ports, until, after_down).await {
                            Ok(()) => Event::PortsUp,
                            Err(e) => Event::PortsFailed(e),
                        },
                    )
                });
                None
            }
            Effect::RunStage(i) => {
                if !self.trusted(id, "stage").await {
                    return None;
                }
                let a = self.runs.get(id)?;
                let Some(s) = inv.system(&system) else {
                    return Some(Event::StageDone(
                        i,
                        StageOutcome::Failed(format!("{system} left the inventory")),
                    ));
                };
                let Some(p) = inv.profile(&a.profile) else {
                    return Some(Event::StageDone(
                        i,
                        StageOutcome::Failed("profile left the inventory".into()),
                    ));
                };
                let Some(st) = p.stages.get(i).cloned() else {
                    return Some(Event::StageDone(
                        i,
                        StageOutcome::Failed("stage list changed".into()),
                    ));
                };
                let dir = stage::run_dir(&self.d.data_dir, id);
                let art = dir.join("artifacts");
                let key = self
                    .d
                    .ssh_key
                    .clone()
                    .map(|k| k.display().to_string())
                    .unwrap_or_default();
                let ctx = self.ctx(a);
                let cmd = match inv.render_command(
                    s,
                    &st.command,
                    &ctx,
                    &[
                        ("artifacts", art.display().to_string()),
                        ("ssh_key", key.clone()),
                    ],
                ) {
                    Ok(c) => c,
                    Err(e) => {
                        return Some(Event::StageDone(i, StageOutcome::Failed(e.to_string())))
                    }
                };
                let job = stage::StageJob {
                    run_id: id.to_string(),
                    seq: i,
                    name: st.name.clone(),
                    kind: st.kind.as_str().to_string(),
                    command: cmd,
                    timeout: st.timeout,
                    dir,
                    env: vec![
                        ("RACKBOOT_SYSTEM".into(), s.name.clone()),
                        ("RACKBOOT_HOSTNAME".into(), s.hostname.clone()),
                        ("RACKBOOT_IP".into(), s.ip.to_string()),
                        ("RACKBOOT_MAC".into(), s.primary_mac().to_string()),
                        ("RACKBOOT_PROFILE".into(), a.profile.clone()),
                        ("RACKBOOT_RUN_ID".into(), id.to_string()),
                        ("RACKBOOT_SSH_KEY".into(), key),
                        ("RACKBOOT_ARTIFACTS".into(), art.display().to_string()),
                    ],
                };
                let mut job = job;
                let hw = self.hw.get(&s.name).cloned();
                if let Some(v) = &hw {
                    // Values only through the environment and a file: a
                    // stage reads "$RACKBOOT_FACT_…" or parses the JSON.
                    if let Ok(f) = serde_json::from_value::<crate::api::facts::Facts>((**v).clone())
                    {
                        job.env.extend(crate::facts::env(&f));
                    }
                    let file = job.dir.join("facts.json");
                    job.env
                        .push(("RACKBOOT_FACTS".into(), file.display().to_string()));
                }
                let store = self.d.store.clone();
                let sem = self.stage_sem.clone();
                self.spawn_event(id, async move {
                    let _permit = sem.acquire_owned().await.ok()?;
                    if let Some(v) = hw {
                        let _ = tokio::fs::create_dir_all(&job.dir).await;
                        if let Err(e) =
                            tokio::fs::write(job.dir.join("facts.json"), v.to_string()).await
                        {
                            tracing::warn!(error = %e, "cannot write facts.json for the stage");
                        }
                    }
                    Some(Event::StageDone(i, stage::run(&store, job).await))
                });
                None
            }
            Effect::Finish => {
                if let Some(p) = self.parked.remove(id) {
                    unpark(&p);
                }
                if let Some(c) = self.consoles.remove(id) {
                    c.stop();
                }
                let a = self.runs.remove(id)?;
                self.by_system.remove(&a.system);
                let store = self.d.store.clone();
                let dir = stage::run_dir(&self.d.data_dir, id);
                // Results are on disk before anyone sees the run as finished via its files.
                if let Err(e) = junit::write_results(&store, id, &dir).await {
                    tracing::error!(run = %id, error = %e, "cannot write results");
                }
                // A slot is free: start the next queued run.
                Box::pin(self.schedule()).await;
                None
            }
        }
    }
}

/// Which machine an observation is about (by MAC, when the adapter knows
/// it) and what was observed.
fn observed(o: &Observation) -> (Option<Mac>, Observed) {
    match o {
        Observation::Dhcp {
            mac,
            kind,
            arch,
            ipxe,
            ..
        } => (
            Some(*mac),
            match kind {
                DhcpKind::Nak => Observed::Nak,
                // Network-boot firmware sends its architecture (PXE, UEFI HTTP
                // boot); iPXE says who it is. An OS's DHCP client does neither.
                _ if arch.is_some() || *ipxe => Observed::Dhcp,
                _ => Observed::DhcpOs,
            },
        ),
        Observation::Http { mac, what, .. } => (*mac, served(what)),
        // A GRUB machine's config, kernel and initrd come over TFTP: the
        // same evidence as over HTTP.
        Observation::Tftp {
            served: Some((mac, what)),
            ok: true,
            ..
        } => (Some(*mac), served(what)),
        Observation::Tftp { .. } => (None, Observed::Tftp),
    }
}

fn served(what: &HttpServed) -> Observed {
    match what {
        HttpServed::Script { local: true } => Observed::LocalScript,
        HttpServed::Script { local: false } => Observed::Script,
        HttpServed::Kernel | HttpServed::Initrd => Observed::Kernel,
        HttpServed::Config { .. } => Observed::Config,
        HttpServed::Done { .. } => Observed::Done,
        HttpServed::File { .. } => Observed::File,
    }
}
