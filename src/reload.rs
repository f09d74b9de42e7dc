//! Reloading the inventory, for SIGHUP and `POST /api/v1/reload` alike: one
//! `Reloader` per daemon, a mutex serialising reloads, a generation counter.
//! A failed reload keeps the last good inventory and writes nothing.

use crate::config::{self, ConfigErrors, Settings};
use crate::inventory::Inventory;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The generation of the inventory the daemon starts with; each reload
/// publishes the next one.
pub const FIRST_GENERATION: u64 = 1;

/// Reloads the inventory; keeps the old one when the new one is invalid.
pub struct Reloader {
    settings: Arc<Settings>,
    tx: watch::Sender<Arc<Inventory>>,
    generation: AtomicU64,
    lock: Mutex<()>,
}

#[derive(Debug, Clone)]
pub struct ReloadResult {
    pub generation: u64,
    pub systems: usize,
    pub profiles: usize,
}

impl Reloader {
    pub fn new(settings: Arc<Settings>, tx: watch::Sender<Arc<Inventory>>) -> Reloader {
        Reloader {
            settings,
            tx,
            generation: AtomicU64::new(FIRST_GENERATION),
            lock: Mutex::new(()),
        }
    }

    /// The settings the daemon started with (the admin API edits their files).
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Blocking (reads files, compiles and renders templates): call from
    /// `spawn_blocking` in async code.
    pub fn reload(&self) -> Result<ReloadResult, ConfigErrors> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // Settings are restart-only: say so if the file changed.
        match config::load_settings(&self.settings.config_dir) {
            Ok(s) if s != *self.settings => {
                tracing::warn!("rackboot.toml changed: daemon settings take effect on restart only")
            }
            Err(e) => tracing::warn!(
                "rackboot.toml is invalid (settings keep their start-up values): {e}"
            ),
            _ => {}
        }
        match crate::admin::load_for_serving(&self.settings) {
            Ok(mut inv) => {
                let r = ReloadResult {
                    generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
                    systems: inv.systems().len(),
                    profiles: inv.profiles().len(),
                };
                inv.set_generation(r.generation);
                self.tx.send_replace(Arc::new(inv));
                tracing::info!(
                    generation = r.generation,
                    systems = r.systems,
                    profiles = r.profiles,
                    "configuration reloaded"
                );
                Ok(r)
            }
            Err(e) => {
                for err in &e.0 {
                    tracing::error!(file = %err.file, key = %err.key, reason = %err.reason, "config error");
                }
                tracing::error!(
                    errors = e.0.len(),
                    "reload rejected: still serving the last good configuration (generation {})",
                    self.generation()
                );
                Err(e)
            }
        }
    }
}
