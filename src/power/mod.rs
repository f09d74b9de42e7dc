//! Power control: one seam (`PowerDriver`) used by the run engine, the CLI and
//! the API, and `Power`, which drives BMCs safely: one caller per BMC at a
//! time with a minimum interval between commands, a global limit across BMCs,
//! and a circuit breaker that keeps a BMC that keeps timing out from stalling
//! the others. Credentials are read at use and never logged.

pub mod ipmi;
pub mod ipmi_driver;
pub mod poll;
pub mod redfish;

use crate::inventory::{Bmc, BmcKind, SecretRef};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    On,
    Off,
    Cycle,
    Reset,
    Soft,
}

impl PowerOp {
    pub fn parse(s: &str) -> Option<PowerOp> {
        Some(match s {
            "on" => PowerOp::On,
            "off" => PowerOp::Off,
            "cycle" => PowerOp::Cycle,
            "reset" => PowerOp::Reset,
            "soft" => PowerOp::Soft,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PowerOp::On => "on",
            PowerOp::Off => "off",
            PowerOp::Cycle => "cycle",
            PowerOp::Reset => "reset",
            PowerOp::Soft => "soft",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDev {
    Pxe,
    Disk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootSpec {
    pub dev: BootDev,
    pub persistent: bool,
    pub efi: bool,
}

/// Typed, secret-free errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error("BMC unreachable: {0}")]
    Unreachable(String),
    #[error("BMC authentication failed: {0}")]
    Auth(String),
    #[error("BMC rejected the command: {0}")]
    Rejected(String),
    #[error("BMC accepted but did not apply the change: {0}")]
    NotApplied(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("no BMC configured for {0}")]
    NoBmc(String),
    #[error("BMC credentials: {0}")]
    Secret(String),
    #[error("BMC circuit open after repeated timeouts: {0}")]
    CircuitOpen(String),
    #[error("BMC error: {0}")]
    Other(String),
}

impl PowerError {
    /// The variant's name in snake_case (metric labels: never the message).
    pub fn kind(&self) -> &'static str {
        match self {
            PowerError::Unreachable(_) => "unreachable",
            PowerError::Auth(_) => "auth",
            PowerError::Rejected(_) => "rejected",
            PowerError::NotApplied(_) => "not_applied",
            PowerError::Unsupported(_) => "unsupported",
            PowerError::NoBmc(_) => "no_bmc",
            PowerError::Secret(_) => "secret",
            PowerError::CircuitOpen(_) => "circuit_open",
            PowerError::Other(_) => "other",
        }
    }
}

/// Told about every call through [`Power`] (the metrics): `driver` is
/// [`PowerDriver::name`] (the BMC kind when no driver was found), `op` the
/// call (`status`, `on`, `off`, `cycle`, `reset`, `soft`, `set_bootdev`,
/// `get_bootdev`). `elapsed` is the driver call's time, `None` when no call
/// was made (circuit open, no driver).
pub trait PowerObserver: Send + Sync {
    fn call(
        &self,
        driver: &'static str,
        op: &'static str,
        elapsed: Option<Duration>,
        error: Option<&PowerError>,
    );
}

/// One implementation per BMC protocol.
pub trait PowerDriver: Send + Sync {
    /// Short name for metrics: `ipmi`, `redfish`, `fake`.
    fn name(&self) -> &'static str;
    fn status<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<PowerState, PowerError>>;
    fn power<'a>(&'a self, bmc: &'a Bmc, op: PowerOp) -> BoxFut<'a, Result<(), PowerError>>;
    /// Set the next boot device and read it back (a BMC that ignores it is an error).
    fn set_boot<'a>(&'a self, bmc: &'a Bmc, b: BootSpec) -> BoxFut<'a, Result<(), PowerError>>;
    fn get_boot<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<BootSpec, PowerError>>;
    /// Open the BMC's serial console (IPMI: Serial over LAN on a session of
    /// its own). Drivers without one say so.
    fn console<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<ConsoleStream, PowerError>> {
        let _ = bmc;
        let name = self.name();
        Box::pin(async move {
            Err(PowerError::Unsupported(format!(
                "the {name} driver has no serial console"
            )))
        })
    }
}

/// A BMC's serial console while it is open ([`Power::console`]).
pub struct ConsoleStream {
    /// What the console prints; closed when the console ends.
    pub output: tokio::sync::mpsc::Receiver<Vec<u8>>,
    /// Characters to type into it.
    pub input: tokio::sync::mpsc::Sender<Vec<u8>>,
    close: Option<BoxFut<'static, Result<(), PowerError>>>,
    /// Removed from `Power`'s open consoles when this is dropped.
    active: Option<(Arc<Mutex<HashSet<String>>>, String)>,
}

impl std::fmt::Debug for ConsoleStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleStream").finish_non_exhaustive()
    }
}

impl ConsoleStream {
    /// `close` ends the console (and says why it ended, if on its own);
    /// dropping it must end the console too.
    pub fn new(
        output: tokio::sync::mpsc::Receiver<Vec<u8>>,
        input: tokio::sync::mpsc::Sender<Vec<u8>>,
        close: BoxFut<'static, Result<(), PowerError>>,
    ) -> ConsoleStream {
        ConsoleStream {
            output,
            input,
            close: Some(close),
            active: None,
        }
    }

    /// End the console (deactivate, close the session): why it ended.
    pub async fn close(mut self) -> Result<(), PowerError> {
        match self.close.take() {
            Some(c) => c.await,
            None => Ok(()),
        }
    }
}

impl Drop for ConsoleStream {
    fn drop(&mut self) {
        if let Some((set, addr)) = self.active.take() {
            set.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
        }
    }
}

/// Resolve `host[:port]` (default port given).
pub async fn resolve(address: &str, default_port: u16) -> Result<SocketAddr, PowerError> {
    let with_port = if address.parse::<SocketAddr>().is_ok()
        || (address.contains(':') && !address.contains("::"))
    {
        address.to_string()
    } else {
        format!("{address}:{default_port}")
    };
    let mut addrs = tokio::net::lookup_host(with_port.as_str())
        .await
        .map_err(|e| PowerError::Unreachable(format!("cannot resolve {address}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| PowerError::Unreachable(format!("cannot resolve {address}")))
}

/// Limits and pacing for `Power`.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    pub max_parallel: usize,
    /// Minimum time between two commands to the same BMC.
    pub min_interval: Duration,
    /// Consecutive unreachable errors that open the circuit.
    pub breaker_threshold: u32,
    /// How long the circuit stays open.
    pub breaker_cooldown: Duration,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            max_parallel: 8,
            min_interval: Duration::from_millis(200),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct BmcSlot {
    last: Option<Instant>,
    timeouts: u32,
    open_until: Option<Instant>,
}

/// Exclusive use of a BMC across the daemons sharing one database (blade
/// chassis: machines of two daemons behind one BMC). Taken around every
/// command (not the status polls); `Err` when it cannot be had in time or
/// the database does not answer: no command then (fail closed).
pub trait BmcGate: Send + Sync {
    fn acquire<'a>(&'a self, address: &'a str) -> BoxFut<'a, Result<(), PowerError>>;
    fn release<'a>(&'a self, address: &'a str) -> BoxFut<'a, ()>;
}

/// The power front door: dispatch by BMC kind, serialise per BMC (across
/// daemons too, with a [`BmcGate`]), limit globally, break circuits.
pub struct Power {
    ipmi: Arc<dyn PowerDriver>,
    redfish: Option<Arc<dyn PowerDriver>>,
    cfg: PowerConfig,
    global: Semaphore,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<BmcSlot>>>>,
    /// Last polled state per system (`poll`): what pages show.
    polled: poll::PowerCache,
    observer: Mutex<Option<Arc<dyn PowerObserver>>>,
    /// BMC addresses with a console open: never two per BMC.
    consoles: Arc<Mutex<HashSet<String>>>,
    gate: Mutex<Option<Arc<dyn BmcGate>>>,
}

impl Power {
    pub fn new(
        ipmi: Arc<dyn PowerDriver>,
        redfish: Option<Arc<dyn PowerDriver>>,
        cfg: PowerConfig,
    ) -> Power {
        Power {
            ipmi,
            redfish,
            global: Semaphore::new(cfg.max_parallel.max(1)),
            cfg,
            slots: Mutex::new(HashMap::new()),
            polled: poll::PowerCache::default(),
            observer: Mutex::new(None),
            consoles: Arc::new(Mutex::new(HashSet::new())),
            gate: Mutex::new(None),
        }
    }

    /// Hold each BMC through `gate` around every command (several daemons).
    pub fn set_gate(&self, gate: Arc<dyn BmcGate>) {
        *self.gate.lock().unwrap_or_else(|p| p.into_inner()) = Some(gate);
    }

    /// Open the serial console of `bmc`; refused while one is open to it.
    pub async fn console(&self, bmc: &Bmc) -> Result<ConsoleStream, PowerError> {
        let addr = bmc.address.clone();
        if !self
            .consoles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.clone())
        {
            return Err(PowerError::Rejected(format!(
                "a console session to {addr} is already open"
            )));
        }
        let r = match self.driver(bmc) {
            Ok(d) => d.console(bmc).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(mut s) => {
                s.active = Some((self.consoles.clone(), addr));
                Ok(s)
            }
            Err(e) => {
                self.consoles
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&addr);
                Err(e)
            }
        }
    }

    /// Report every call to `o` (the daemon's metrics); replaces an earlier one.
    pub fn set_observer(&self, o: Arc<dyn PowerObserver>) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
    }

    fn observe<T>(
        &self,
        driver: &'static str,
        op: &'static str,
        elapsed: Option<Duration>,
        r: &Result<T, PowerError>,
    ) {
        let o = self
            .observer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(o) = o {
            o.call(driver, op, elapsed, r.as_ref().err());
        }
    }

    /// The power states the poller last read, per system.
    pub fn polled(&self) -> &poll::PowerCache {
        &self.polled
    }

    /// The production drivers.
    pub fn native(cfg: PowerConfig) -> Power {
        Power::new(
            Arc::new(ipmi_driver::IpmiDriver::default()),
            Some(Arc::new(redfish::RedfishDriver::default())),
            cfg,
        )
    }

    fn driver(&self, bmc: &Bmc) -> Result<&Arc<dyn PowerDriver>, PowerError> {
        match bmc.kind {
            BmcKind::Ipmi => Ok(&self.ipmi),
            BmcKind::Redfish => self
                .redfish
                .as_ref()
                .ok_or_else(|| PowerError::Unsupported("Redfish driver not built yet".into())),
        }
    }

    async fn with_slot<T, F>(&self, bmc: &Bmc, op: &'static str, f: F) -> Result<T, PowerError>
    where
        F: for<'a> FnOnce(&'a dyn PowerDriver, &'a Bmc) -> BoxFut<'a, Result<T, PowerError>>,
    {
        let driver = match self.driver(bmc) {
            Ok(d) => d.clone(),
            Err(e) => {
                let r = Err(e);
                self.observe(bmc.kind.as_str(), op, None, &r);
                return r;
            }
        };
        let name = driver.name();
        let r = self.paced(bmc, op, driver, f).await;
        self.observe(name, op, r.1, &r.0);
        r.0
    }

    /// The call itself, paced and guarded; with the driver call's duration
    /// when one was made.
    async fn paced<T, F>(
        &self,
        bmc: &Bmc,
        op: &'static str,
        driver: Arc<dyn PowerDriver>,
        f: F,
    ) -> (Result<T, PowerError>, Option<Duration>)
    where
        F: for<'a> FnOnce(&'a dyn PowerDriver, &'a Bmc) -> BoxFut<'a, Result<T, PowerError>>,
    {
        let slot = {
            let mut m = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(bmc.address.clone()).or_default().clone()
        };
        let Ok(_permit) = self.global.acquire().await else {
            return (
                Err(PowerError::Other("power subsystem closed".into())),
                None,
            );
        };
        let mut slot = slot.lock().await;
        if let Some(until) = slot.open_until {
            if Instant::now() < until {
                let e = PowerError::CircuitOpen(format!(
                    "{} timed out {} times; retrying after {} s",
                    bmc.address,
                    slot.timeouts,
                    until.saturating_duration_since(Instant::now()).as_secs()
                ));
                return (Err(e), None);
            }
            slot.open_until = None;
        }
        if let Some(last) = slot.last {
            let since = last.elapsed();
            if since < self.cfg.min_interval {
                tokio::time::sleep(self.cfg.min_interval - since).await;
            }
        }
        // Status polls are reads; every other call is a command, and a
        // command holds the BMC against the other daemons too.
        let gate = if op == "status" {
            None
        } else {
            self.gate.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        if let Some(g) = &gate {
            if let Err(e) = g.acquire(&bmc.address).await {
                return (Err(e), None);
            }
        }
        let t0 = Instant::now();
        let r = f(driver.as_ref(), bmc).await;
        let elapsed = t0.elapsed();
        if let Some(g) = &gate {
            g.release(&bmc.address).await;
        }
        slot.last = Some(Instant::now());
        match &r {
            Err(PowerError::Unreachable(_)) => {
                slot.timeouts += 1;
                if slot.timeouts >= self.cfg.breaker_threshold {
                    slot.open_until = Some(Instant::now() + self.cfg.breaker_cooldown);
                    tracing::warn!(bmc = %bmc.address, timeouts = slot.timeouts, "BMC circuit opened");
                }
            }
            _ => slot.timeouts = 0,
        }
        (r, Some(elapsed))
    }

    pub async fn status(&self, bmc: &Bmc) -> Result<PowerState, PowerError> {
        self.with_slot(bmc, "status", |d, b| d.status(b)).await
    }

    pub async fn power(&self, bmc: &Bmc, op: PowerOp) -> Result<(), PowerError> {
        self.with_slot(bmc, op.as_str(), move |d, b| d.power(b, op))
            .await
    }

    pub async fn set_boot(&self, bmc: &Bmc, spec: BootSpec) -> Result<(), PowerError> {
        self.with_slot(bmc, "set_bootdev", move |d, b| d.set_boot(b, spec))
            .await
    }

    pub async fn get_boot(&self, bmc: &Bmc) -> Result<BootSpec, PowerError> {
        self.with_slot(bmc, "get_bootdev", |d, b| d.get_boot(b))
            .await
    }

    /// Power on if off, power cycle if on: "start the machine afresh".
    pub async fn on_or_cycle(&self, bmc: &Bmc) -> Result<PowerOp, PowerError> {
        let op = match self.status(bmc).await? {
            PowerState::Off => PowerOp::On,
            PowerState::On => PowerOp::Cycle,
        };
        self.power(bmc, op).await?;
        Ok(op)
    }
}

/// A scriptable driver for tests and simulated labs: records every call and
/// can be told to fail; `on_power` lets a test "boot" a simulated machine.
pub struct FakePower {
    pub calls: Mutex<Vec<String>>,
    pub state: Mutex<HashMap<String, (PowerState, BootSpec)>>,
    pub fail: Mutex<HashMap<String, PowerError>>,
    pub delay: Duration,
    #[allow(clippy::type_complexity)]
    pub on_power: Mutex<Option<Box<dyn Fn(&str, PowerOp) + Send + Sync>>>,
    /// What a BMC's serial console prints when opened (by BMC address);
    /// a BMC not listed has no console (refused).
    pub console: Mutex<HashMap<String, Vec<u8>>>,
}

impl Default for FakePower {
    fn default() -> Self {
        FakePower {
            calls: Mutex::new(Vec::new()),
            state: Mutex::new(HashMap::new()),
            fail: Mutex::new(HashMap::new()),
            delay: Duration::from_millis(0),
            on_power: Mutex::new(None),
            console: Mutex::new(HashMap::new()),
        }
    }
}

impl FakePower {
    fn record(&self, bmc: &Bmc, what: String) -> Result<(), PowerError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{} {what}", bmc.address));
        match self.fail.lock().unwrap().get(&bmc.address) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn entry(&self, addr: &str) -> (PowerState, BootSpec) {
        *self
            .state
            .lock()
            .unwrap()
            .entry(addr.to_string())
            .or_insert((
                PowerState::Off,
                BootSpec {
                    dev: BootDev::Disk,
                    persistent: false,
                    efi: false,
                },
            ))
    }
}

impl PowerDriver for FakePower {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn status<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<PowerState, PowerError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.record(bmc, "status".into())?;
            Ok(self.entry(&bmc.address).0)
        })
    }
    fn power<'a>(&'a self, bmc: &'a Bmc, op: PowerOp) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.record(bmc, format!("power {}", op.as_str()))?;
            let (_, b) = self.entry(&bmc.address);
            let st = match op {
                PowerOp::Off | PowerOp::Soft => PowerState::Off,
                _ => PowerState::On,
            };
            self.state
                .lock()
                .unwrap()
                .insert(bmc.address.clone(), (st, b));
            if let Some(cb) = self.on_power.lock().unwrap().as_ref() {
                cb(&bmc.address, op);
            }
            Ok(())
        })
    }
    fn set_boot<'a>(&'a self, bmc: &'a Bmc, spec: BootSpec) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.record(bmc, format!("bootdev {:?}", spec.dev).to_lowercase())?;
            let (p, _) = self.entry(&bmc.address);
            self.state
                .lock()
                .unwrap()
                .insert(bmc.address.clone(), (p, spec));
            Ok(())
        })
    }
    fn get_boot<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<BootSpec, PowerError>> {
        Box::pin(async move {
            self.record(bmc, "get-bootdev".into())?;
            Ok(self.entry(&bmc.address).1)
        })
    }
    fn console<'a>(&'a self, bmc: &'a Bmc) -> BoxFut<'a, Result<ConsoleStream, PowerError>> {
        Box::pin(async move {
            // Not in `calls`: the capture runs beside the power calls, in no set order.
            if let Some(e) = self.fail.lock().unwrap().get(&bmc.address) {
                return Err(e.clone());
            }
            let Some(text) = self.console.lock().unwrap().get(&bmc.address).cloned() else {
                return Err(PowerError::Rejected(
                    "Activate Payload (SOL) rejected by the BMC: completion code 0x81 (payload type is disabled)".into(),
                ));
            };
            // Prints its text, then stays open until closed.
            let (tx, output) = tokio::sync::mpsc::channel(4);
            let (input, mut typed) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let _ = tx.send(text).await;
                tokio::select! {
                    _ = stopped => {}
                    _ = async { while typed.recv().await.is_some() {} } => {}
                }
            });
            Ok(ConsoleStream::new(
                output,
                input,
                Box::pin(async move {
                    let _ = stop.send(());
                    Ok(())
                }),
            ))
        })
    }
}

impl SecretRef {
    /// Read the secret at use (trailing newline trimmed). The error never
    /// contains it. (Here, not in `inventory`, which does no I/O.)
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read password file {}: {e}", p.display())),
            SecretRef::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::SecretRef;

    fn bmc(addr: &str) -> Bmc {
        Bmc {
            kind: BmcKind::Ipmi,
            address: addr.into(),
            username: "admin".into(),
            password: SecretRef::Env("NOPE".into()),
            cipher_suites: vec![3],
            insecure_tls: false,
            system_id: None,
        }
    }

    #[tokio::test]
    async fn serialises_per_bmc_and_paces() {
        let fake = Arc::new(FakePower::default());
        let p = Arc::new(Power::new(
            fake.clone(),
            None,
            PowerConfig {
                min_interval: Duration::from_millis(50),
                ..Default::default()
            },
        ));
        let b = bmc("10.0.0.1");
        let t0 = Instant::now();
        let (a, c) = tokio::join!(p.status(&b), p.status(&b));
        a.unwrap();
        c.unwrap();
        // Two calls to one BMC: the second waited for the minimum interval.
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(fake.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn circuit_opens_after_repeated_timeouts() {
        let fake = Arc::new(FakePower::default());
        fake.fail.lock().unwrap().insert(
            "10.0.0.9".into(),
            PowerError::Unreachable("no answer".into()),
        );
        let p = Power::new(
            fake.clone(),
            None,
            PowerConfig {
                min_interval: Duration::ZERO,
                breaker_threshold: 2,
                ..Default::default()
            },
        );
        let b = bmc("10.0.0.9");
        assert!(matches!(
            p.status(&b).await,
            Err(PowerError::Unreachable(_))
        ));
        assert!(matches!(
            p.status(&b).await,
            Err(PowerError::Unreachable(_))
        ));
        assert!(matches!(
            p.status(&b).await,
            Err(PowerError::CircuitOpen(_))
        ));
        // The open circuit did not call the BMC again, and other BMCs are unaffected.
        assert_eq!(fake.calls.lock().unwrap().len(), 2);
        assert!(p.status(&bmc("10.0.0.2")).await.is_ok());
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl PowerObserver for Seen {
        fn call(
            &self,
            driver: &'static str,
            op: &'static str,
            elapsed: Option<Duration>,
            error: Option<&PowerError>,
        ) {
            self.0.lock().unwrap().push(format!(
                "{driver} {op} {} {}",
                elapsed.is_some(),
                error.map(|e| e.kind()).unwrap_or("ok")
            ));
        }
    }

    #[tokio::test]
    async fn observer_sees_each_call_with_driver_op_and_error_kind() {
        let fake = Arc::new(FakePower::default());
        fake.fail.lock().unwrap().insert(
            "10.0.0.9".into(),
            PowerError::Unreachable("no answer".into()),
        );
        let p = Power::new(
            fake.clone(),
            None,
            PowerConfig {
                min_interval: Duration::ZERO,
                breaker_threshold: 1,
                ..Default::default()
            },
        );
        let seen = Arc::new(Seen::default());
        p.set_observer(seen.clone());
        p.on_or_cycle(&bmc("10.0.0.1")).await.unwrap();
        let _ = p.status(&bmc("10.0.0.9")).await;
        let _ = p.status(&bmc("10.0.0.9")).await;
        let mut redfish = bmc("10.0.0.3");
        redfish.kind = BmcKind::Redfish;
        let _ = p.get_boot(&redfish).await;
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                "fake status true ok",
                "fake on true ok",
                "fake status true unreachable",
                "fake status false circuit_open",
                "redfish get_bootdev false unsupported",
            ]
        );
    }

    #[tokio::test]
    async fn on_or_cycle() {
        let fake = Arc::new(FakePower::default());
        let p = Power::new(
            fake.clone(),
            None,
            PowerConfig {
                min_interval: Duration::ZERO,
                ..Default::default()
            },
        );
        let b = bmc("10.0.0.3");
        assert_eq!(p.on_or_cycle(&b).await.unwrap(), PowerOp::On);
        assert_eq!(p.on_or_cycle(&b).await.unwrap(), PowerOp::Cycle);
    }

    #[test]
    fn redfish_without_driver_is_unsupported() {
        let p = Power::new(Arc::new(FakePower::default()), None, PowerConfig::default());
        let mut b = bmc("x");
        b.kind = BmcKind::Redfish;
        assert!(matches!(p.driver(&b), Err(PowerError::Unsupported(_))));
    }
}
