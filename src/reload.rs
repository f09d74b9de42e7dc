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
    /// The shared inventory (Postgres): edits go through it.
    shared: std::sync::OnceLock<Arc<crate::shared::Shared>>,
}

#[derive(Debug, Clone)]
pub struct ReloadResult {
    pub generation: u64,
    pub systems: usize,
    pub profiles: usize,
    /// What this reload changed, system by system and profile by profile
    /// (for the audit trail).
    pub changes: Vec<crate::api::ConfigChange>,
}

impl ReloadResult {
    /// The audit trail's target: the names of what changed.
    pub fn audit_target(&self) -> String {
        self.changes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The audit trail's detail: the generation and each change's before → after.
    pub fn audit_detail(&self) -> serde_json::Value {
        serde_json::json!({ "generation": self.generation, "changes": self.changes })
    }
}

impl Reloader {
    pub fn new(settings: Arc<Settings>, tx: watch::Sender<Arc<Inventory>>) -> Reloader {
        Reloader {
            settings,
            tx,
            generation: AtomicU64::new(FIRST_GENERATION),
            lock: Mutex::new(()),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// The settings the daemon started with (the admin API edits their files).
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The daemon serves the shared inventory (set once at start).
    pub fn set_shared(&self, s: Arc<crate::shared::Shared>) {
        let _ = self.shared.set(s);
    }

    pub fn shared(&self) -> Option<&Arc<crate::shared::Shared>> {
        self.shared.get()
    }

    /// An admin edit of the daemon's inventory: on the files, or through
    /// the shared inventory (compare and set). Blocking.
    pub fn edit(
        &self,
        by: &str,
        f: impl FnOnce(&Settings) -> Result<crate::admin::Outcome, crate::admin::AdminError>,
    ) -> Result<crate::admin::Outcome, crate::admin::AdminError> {
        match self.shared() {
            Some(s) => s.edit(&self.settings, by, f),
            None => f(&self.settings),
        }
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
                let changes = changes(&self.tx.borrow(), &inv);
                let r = ReloadResult {
                    generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
                    systems: inv.systems().len(),
                    profiles: inv.profiles().len(),
                    changes,
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

/// The systems and profiles that differ between two inventories, as the API
/// shows them (never a password): added (`before` null), removed (`after`
/// null) or changed. Compares the inventory's own values first, so an
/// unchanged system costs no serialisation.
pub fn changes(old: &Inventory, new: &Inventory) -> Vec<crate::api::ConfigChange> {
    use crate::api::{self, ConfigChange};
    use std::collections::BTreeMap;
    fn json<T: serde::Serialize>(v: T) -> Option<serde_json::Value> {
        serde_json::to_value(v).ok()
    }
    let mut out = Vec::new();
    let old_s: BTreeMap<&str, _> = old.systems().iter().map(|s| (s.name.as_str(), s)).collect();
    let new_s: BTreeMap<&str, _> = new.systems().iter().map(|s| (s.name.as_str(), s)).collect();
    for (name, o) in &old_s {
        match new_s.get(name) {
            Some(n) if n == o => {}
            n => out.push(ConfigChange {
                kind: "system".into(),
                name: name.to_string(),
                before: json(api::System::from(*o)),
                after: n.and_then(|n| json(api::System::from(*n))),
            }),
        }
    }
    for (name, n) in &new_s {
        if !old_s.contains_key(name) {
            out.push(ConfigChange {
                kind: "system".into(),
                name: name.to_string(),
                before: None,
                after: json(api::System::from(*n)),
            });
        }
    }
    let (op, np) = (old.profiles(), new.profiles());
    for (name, o) in op {
        match np.get(name) {
            Some(n) if n == o => {}
            n => out.push(ConfigChange {
                kind: "profile".into(),
                name: name.clone(),
                before: json(api::Profile::from(o)),
                after: n.and_then(|n| json(api::Profile::from(n))),
            }),
        }
    }
    for (name, n) in np {
        if !op.contains_key(name) {
            out.push(ConfigChange {
                kind: "profile".into(),
                name: name.clone(),
                before: None,
                after: json(api::Profile::from(n)),
            });
        }
    }
    out
}
