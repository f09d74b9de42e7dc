//! The power-state poller: every `api.power_poll_secs` it asks each system's
//! BMC for its power status through the [`Power`] front door (so per-BMC
//! serialisation, the global semaphore and the circuit breaker apply), at
//! most [`CONCURRENCY`] at a time, and keeps `(state, checked_at)` per system
//! in a [`PowerCache`]. Pages read the cache: never one BMC call per view.
//!
//! The first poll is one interval after start (a daemon that starts and
//! stops at once asks no BMC anything).

use super::{Power, PowerState};
use crate::inventory::Inventory;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Status calls in flight at most (the front door's global limit applies too).
pub const CONCURRENCY: usize = 16;

/// One system's last polled power state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The state, or why it could not be read (a secret-free error).
    pub state: Result<PowerState, String>,
    /// Milliseconds since the Unix epoch.
    pub checked_at: i64,
}

/// Shared, cheap to clone: the poller writes, pages read.
#[derive(Debug, Clone, Default)]
pub struct PowerCache(Arc<RwLock<HashMap<String, Polled>>>);

impl PowerCache {
    pub fn get(&self, system: &str) -> Option<Polled> {
        self.read().get(system).cloned()
    }

    /// Every entry, for a page that shows many systems (one lock).
    pub fn snapshot(&self) -> HashMap<String, Polled> {
        self.read().clone()
    }

    /// Run `f` with the map read-locked (no copy).
    pub fn with<T>(&self, f: impl FnOnce(&HashMap<String, Polled>) -> T) -> T {
        f(&self.read())
    }

    pub fn set(&self, system: &str, p: Polled) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(system.to_string(), p);
    }

    /// Keep only the systems `keep` says yes to.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep(k));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Polled>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Poll every `every` until `shutdown`; `every` zero: never.
pub async fn run(
    power: Arc<Power>,
    inventory: watch::Receiver<Arc<Inventory>>,
    every: Duration,
    shutdown: CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let inv = inventory.borrow().clone();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll_once(&power, &inv) => {}
        }
    }
}

/// One round over every system with a BMC.
pub async fn poll_once(power: &Power, inv: &Inventory) {
    let cache = power.polled();
    cache.retain(|name| inv.system(name).is_some_and(|s| s.bmc.is_some()));
    futures_util::stream::iter(inv.systems().iter().filter(|s| s.bmc.is_some()))
        .for_each_concurrent(CONCURRENCY, |s| async move {
            let Some(bmc) = &s.bmc else { return };
            let state = power.status(bmc).await.map_err(|e| e.to_string());
            cache.set(
                &s.name,
                Polled {
                    state,
                    checked_at: crate::store::now_ms(),
                },
            );
        })
        .await;
}
