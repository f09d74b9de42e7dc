//! The shared inventory (issue 16): with `database_url = "postgres://…"`,
//! systems, profiles and templates live in the database, so every daemon of
//! a site serves the same inventory.
//!
//! The database holds the operator's *documents* (`inventory_docs`: the
//! bytes of `systems.toml`, `profiles/NAME.toml` and every file under
//! `kickstarts/`, keyed by that relative path) and one version row
//! (`inventory_version`). Keeping documents, not parsed rows, keeps one
//! parser and one validator for files and database alike (`config`), keeps
//! the admin's comments and layout through edits (`admin` edits documents),
//! and makes `export` byte-for-byte what was imported or edited.
//!
//! - `rackboot import DIR` validates DIR as a whole inventory (the daemon's
//!   own loader, every error with file, key and reason) and replaces the
//!   documents in one transaction; a broken import changes nothing.
//!   `rackboot export DIR` writes them back.
//! - A daemon materialises the documents of the version it serves into
//!   `DATA_DIR/inventory/` and loads them from there with the ordinary
//!   loader ([`settings_in`]). It polls the version every second
//!   ([`POLL`]); a Postgres NOTIFY on [`crate::store::INVENTORY_CHANNEL`]
//!   only wakes the poll early. A new version is materialised and reloaded;
//!   when the database is unreachable, or the new documents do not load,
//!   the daemon keeps serving the last good inventory.
//! - An edit (CLI, API, web UI) is made on the documents of one version and
//!   written back only if the version is still that one (compare and set);
//!   otherwise it is refused whole and made again on the new version.
//! - The first daemon on an empty database seeds it from its own files
//!   (validated first), so a one-daemon lab moving to Postgres loses
//!   nothing.

use crate::admin::{AdminError, Outcome};
use crate::config::{self, ConfigError, ConfigErrors, Settings};
use crate::inventory::Inventory;
use crate::store::{InventoryExpect, InventoryHead, Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The documents of an inventory: relative path → text.
pub type Docs = BTreeMap<String, String>;

/// The document name of `systems.toml`.
pub const SYSTEMS_DOC: &str = "systems.toml";
/// The folder of profile documents.
pub const PROFILES: &str = "profiles";
/// The folder of template documents.
pub const TEMPLATES: &str = "kickstarts";
/// How often a daemon reads the shared version (a NOTIFY wakes it earlier).
pub const POLL: Duration = Duration::from_secs(1);
/// Edits made again on a newer version before giving up.
const EDIT_ATTEMPTS: usize = 3;

/// Whether a daemon with these settings keeps its inventory in the database.
pub fn is_shared(settings: &Settings) -> bool {
    settings.database_url.starts_with("postgres://")
        || settings.database_url.starts_with("postgresql://")
}

/// The same settings with the inventory's files inside `dir`
/// (`dir/systems.toml`, `dir/profiles/`, `dir/kickstarts/`); everything
/// else (secrets, boot files, the state) stays where it was.
pub fn settings_in(settings: &Settings, dir: &Path) -> Settings {
    let mut s = settings.clone();
    s.systems_file = dir.join(SYSTEMS_DOC);
    s.profiles_dir = dir.join(PROFILES);
    s.templates_dir = dir.join(TEMPLATES);
    s
}

/// The inventory documents the settings' files hold: the systems file, the
/// profiles dir's `*.toml`, every template (hidden files and `~` backups
/// skipped, as the loader does).
pub fn read_docs(settings: &Settings) -> Result<Docs, ConfigErrors> {
    read_docs_at(&Layout {
        base: &settings.config_dir,
        systems_file: &settings.systems_file,
        profiles_dir: &settings.profiles_dir,
        templates_dir: &settings.templates_dir,
    })
}

/// Where an inventory's files are (errors name them relative to `base`).
struct Layout<'a> {
    base: &'a Path,
    systems_file: &'a Path,
    profiles_dir: &'a Path,
    templates_dir: &'a Path,
}

fn read_docs_at(settings: &Layout<'_>) -> Result<Docs, ConfigErrors> {
    let mut docs = Docs::new();
    let mut errs = Vec::new();
    let shown = |p: &Path| config::show(settings.base, p);
    let mut read = |doc: String, path: &Path| match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => {
                docs.insert(doc, t);
            }
            Err(_) => errs.push(err(shown(path), "not UTF-8 text")),
        },
        Err(e) => errs.push(err(shown(path), &format!("cannot read: {e}"))),
    };
    let mut read_err = None;
    read(SYSTEMS_DOC.into(), settings.systems_file);
    match std::fs::read_dir(settings.profiles_dir) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml") && !n.starts_with('.'))
                .collect();
            names.sort();
            for n in names {
                read(format!("{PROFILES}/{n}"), &settings.profiles_dir.join(&n));
            }
        }
        Err(e) => {
            read_err = Some(err(
                shown(settings.profiles_dir),
                &format!("cannot read profiles dir: {e}"),
            ))
        }
    }
    let mut files = Vec::new();
    config::collect_template_files(settings.templates_dir, &mut files);
    files.sort();
    for f in files {
        read(format!("{TEMPLATES}/{f}"), &settings.templates_dir.join(&f));
    }
    errs.extend(read_err);
    if errs.is_empty() {
        Ok(docs)
    } else {
        Err(ConfigErrors(errs))
    }
}

fn err(file: String, reason: &str) -> ConfigError {
    ConfigError {
        file,
        key: String::new(),
        reason: reason.to_string(),
    }
}

/// A document name that stays inside the dir it is written to: relative,
/// no `..`, no empty or hidden parts, under one of the three places.
fn safe_doc(name: &str) -> bool {
    let ok_parts = name
        .split('/')
        .all(|p| !p.is_empty() && p != ".." && p != "." && !p.starts_with('.'));
    ok_parts
        && !name.contains('\\')
        && (name == SYSTEMS_DOC
            || (name.starts_with("profiles/")
                && name.ends_with(".toml")
                && name.matches('/').count() == 1)
            || name.starts_with("kickstarts/"))
}

/// Make `dir` hold exactly `docs` (files of the three places not in `docs`
/// are removed; unchanged files are not rewritten). Export and the daemon's
/// materialised copy both come through here.
pub fn materialize(dir: &Path, docs: &Docs) -> std::io::Result<()> {
    for name in docs.keys() {
        if !safe_doc(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("refusing document name {name:?}"),
            ));
        }
    }
    std::fs::create_dir_all(dir.join(PROFILES))?;
    std::fs::create_dir_all(dir.join(TEMPLATES))?;
    // What is there now (the layout read_docs reads).
    let here = read_dir_docs(dir);
    for name in here.keys() {
        if !docs.contains_key(name) {
            std::fs::remove_file(dir.join(name))?;
        }
    }
    for (name, body) in docs {
        if here.get(name) == Some(body) {
            continue;
        }
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::admin::write_atomic(&p, body)?;
    }
    Ok(())
}

/// The documents a dir in the export layout holds (what is missing or
/// unreadable is left out).
pub fn read_dir_docs(dir: &Path) -> Docs {
    let (s, p, t) = (
        dir.join(SYSTEMS_DOC),
        dir.join(PROFILES),
        dir.join(TEMPLATES),
    );
    let l = Layout {
        base: dir,
        systems_file: &s,
        profiles_dir: &p,
        templates_dir: &t,
    };
    match read_docs_at(&l) {
        Ok(d) => d,
        // Partly there (a fresh dir has no systems.toml): what can be read.
        Err(_) => {
            let mut d = Docs::new();
            if let Ok(t) = std::fs::read_to_string(&s) {
                d.insert(SYSTEMS_DOC.into(), t);
            }
            let mut files = Vec::new();
            config::collect_template_files(&p, &mut files);
            for f in files
                .into_iter()
                .filter(|f| f.ends_with(".toml") && !f.contains('/'))
            {
                if let Ok(t) = std::fs::read_to_string(p.join(&f)) {
                    d.insert(format!("{PROFILES}/{f}"), t);
                }
            }
            let mut files = Vec::new();
            config::collect_template_files(&t, &mut files);
            for f in files {
                if let Ok(x) = std::fs::read_to_string(t.join(&f)) {
                    d.insert(format!("{TEMPLATES}/{f}"), x);
                }
            }
            d
        }
    }
}

/// What turns `old` into `new`: changed or added documents with their
/// text, removed ones with None.
pub fn diff(old: &Docs, new: &Docs) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            out.push((k.clone(), Some(v.clone())));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push((k.clone(), None));
        }
    }
    out
}

/// Check a config dir as a whole inventory with the daemon's loader (with
/// the daemon's settings: secrets, boot files) and read its documents.
pub fn check_dir(settings: &Settings, dir: &Path) -> Result<(Docs, Inventory), ConfigErrors> {
    let s = settings_in(settings, dir);
    let docs = read_docs(&s)?;
    let inv = config::load_inventory(&s)?;
    Ok((docs, inv))
}

/// A scratch dir removed on drop (CLI edits and reads of the shared
/// inventory are made in one).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(under: &Path) -> std::io::Result<Scratch> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let p = under.join(format!(
            ".inventory-scratch-{}-{}-{}",
            std::process::id(),
            crate::store::now_ms(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn store_err(e: StoreError) -> AdminError {
    AdminError::Io(format!("shared inventory: {e}"))
}

/// Make an admin edit on the shared inventory from outside a daemon (the
/// CLI): the documents of the current version in a scratch dir, the edit
/// there (with all of `admin`'s checks), then the changed documents written
/// back only on that version; made again (at most [`EDIT_ATTEMPTS`] times)
/// when another writer was first.
pub async fn edit_detached<F>(
    store: &Store,
    settings: &Settings,
    by: &str,
    f: F,
) -> Result<Outcome, AdminError>
where
    F: Fn(&Settings) -> Result<Outcome, AdminError>,
{
    let base = settings.data_dir.clone();
    std::fs::create_dir_all(&base)
        .map_err(|e| AdminError::Io(format!("{}: {e}", base.display())))?;
    let mut last = None;
    for _ in 0..EDIT_ATTEMPTS {
        let (head, docs) = current(store).await.map_err(store_err)?;
        let scratch = Scratch::new(&base).map_err(|e| AdminError::Io(e.to_string()))?;
        materialize(&scratch.0, &docs).map_err(|e| AdminError::Io(e.to_string()))?;
        let s = settings_in(settings, &scratch.0);
        let out = f(&s)?;
        let now = read_docs(&s).map_err(|e| AdminError::Io(e.to_string()))?;
        let changes = diff(&docs, &now);
        if changes.is_empty() {
            return Ok(out);
        }
        match store
            .write_inventory(
                &changes,
                false,
                InventoryExpect::Version(head.version),
                by,
                crate::store::now_ms(),
            )
            .await
        {
            Ok(_) => return Ok(out),
            Err(e @ StoreError::InventoryChanged { .. }) => last = Some(e),
            Err(e) => return Err(store_err(e)),
        }
    }
    Err(AdminError::Conflict(vec![err(
        "shared inventory".into(),
        &last.map(|e| e.to_string()).unwrap_or_default(),
    )]))
}

/// The shared inventory's current version and documents; an error when
/// there is none yet (nothing imported, no daemon seeded it).
pub async fn current(store: &Store) -> Result<(InventoryHead, Docs), StoreError> {
    match store.inventory().await? {
        Some((h, d)) => Ok((h, d.into_iter().collect())),
        None => Err(StoreError::NoInventory),
    }
}

/// Where a daemon stands with the shared inventory (`/api/v1/status`).
pub use crate::api::SharedInventory as SyncStatus;

/// A daemon's side of the shared inventory: the materialised copy, the
/// version it serves, the poll loop.
pub struct Shared {
    store: Store,
    dir: PathBuf,
    /// Version and documents of the materialised copy; held while the copy
    /// is rewritten or edited, so a poll and an edit never interleave.
    synced: Mutex<(i64, Docs)>,
    status: Mutex<SyncStatus>,
}

impl Shared {
    /// Seed (an empty database, from the daemon's own files, validated),
    /// fetch and materialise the current version under `DATA_DIR/inventory`;
    /// returns the settings that load from the materialised copy.
    pub async fn start(
        store: &Store,
        settings: &Settings,
    ) -> anyhow::Result<(Arc<Shared>, Settings)> {
        if store.inventory_head().await?.is_none() {
            let (docs, inv) = check_dir(settings, &settings.config_dir.clone())
                .or_else(|_| {
                    // The settings' own paths (they may not be the default layout).
                    let docs = read_docs(settings)?;
                    let inv = config::load_inventory(settings)?;
                    Ok::<_, ConfigErrors>((docs, inv))
                })
                .map_err(|e| {
                    anyhow::anyhow!("seeding the shared inventory from the local files: {e}")
                })?;
            let changes: Vec<_> = docs.into_iter().map(|(k, v)| (k, Some(v))).collect();
            match store
                .write_inventory(
                    &changes,
                    true,
                    InventoryExpect::Absent,
                    &format!("seed:{}", host()),
                    crate::store::now_ms(),
                )
                .await
            {
                Ok(v) => tracing::info!(
                    version = v,
                    systems = inv.systems().len(),
                    "seeded the shared inventory from the local files"
                ),
                // Another daemon seeded it first: serve that one.
                Err(StoreError::InventoryChanged { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (head, docs) = current(store).await?;
        let dir = settings.data_dir.join("inventory");
        materialize(&dir, &docs)?;
        tracing::info!(version = head.version, dir = %dir.display(), "serving the shared inventory");
        let shared = Arc::new(Shared {
            store: store.clone(),
            dir: dir.clone(),
            synced: Mutex::new((head.version, docs)),
            status: Mutex::new(SyncStatus {
                version: head.version,
                checked_at: crate::store::now_ms(),
                error: None,
            }),
        });
        Ok((shared, settings_in(settings, &dir)))
    }

    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One poll: when the database has a newer version, materialise it.
    /// Ok(true) when the copy changed (the caller reloads).
    pub async fn sync_once(&self) -> Result<bool, StoreError> {
        let head = self.store.inventory_head().await?;
        let now = crate::store::now_ms();
        let have = self.synced.lock().unwrap_or_else(|p| p.into_inner()).0;
        if head.is_none_or(|h| h.version == have) {
            self.set_status(|s| s.checked_at = now);
            return Ok(false);
        }
        let (head, docs) = match self.store.inventory().await? {
            Some((h, d)) => (h, d.into_iter().collect::<Docs>()),
            None => return Ok(false),
        };
        let mut g = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == head.version {
            return Ok(false);
        }
        materialize(&self.dir, &docs)
            .map_err(|e| StoreError::Dir(self.dir.display().to_string(), e))?;
        *g = (head.version, docs);
        drop(g);
        self.set_status(|s| {
            s.version = head.version;
            s.checked_at = now;
        });
        Ok(true)
    }

    /// An admin edit of the daemon's inventory (API, web UI): made on the
    /// materialised copy of the version served, written back to the
    /// database only on that version; refused whole (the copy restored) when
    /// another daemon or the CLI changed it first. Blocking: call from
    /// `spawn_blocking` (the database write runs on the current runtime).
    pub fn edit(
        &self,
        settings: &Settings,
        by: &str,
        f: impl FnOnce(&Settings) -> Result<Outcome, AdminError>,
    ) -> Result<Outcome, AdminError> {
        let mut g = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(settings)?;
        let now = read_docs(settings).map_err(|e| AdminError::Io(e.to_string()))?;
        let changes = diff(&g.1, &now);
        if changes.is_empty() {
            return Ok(out);
        }
        let rt = tokio::runtime::Handle::current();
        let r = rt.block_on(self.store.write_inventory(
            &changes,
            false,
            InventoryExpect::Version(g.0),
            by,
            crate::store::now_ms(),
        ));
        match r {
            Ok(v) => {
                *g = (v, now);
                drop(g);
                self.set_status(|s| s.version = v);
                Ok(out)
            }
            Err(e) => {
                // Put the copy back to the version served; the poll brings
                // the newer one.
                if let Err(io) = materialize(&self.dir, &g.1) {
                    tracing::error!(error = %io, "cannot restore the materialised inventory");
                }
                match e {
                    StoreError::InventoryChanged { .. } => Err(AdminError::Conflict(vec![err(
                        "shared inventory".into(),
                        &format!("{e}; the edit was not made, make it again"),
                    )])),
                    e => Err(store_err(e)),
                }
            }
        }
    }

    /// Poll until `shutdown`; reload the daemon after each new version.
    /// `reload` loads the materialised copy (the daemon's `Reloader`):
    /// the new generation, or why the new version does not load.
    pub async fn run(
        self: Arc<Self>,
        reload: Arc<dyn Fn() -> Result<u64, String> + Send + Sync>,
        shutdown: CancellationToken,
    ) {
        let mut listener = None;
        loop {
            if listener.is_none() {
                listener = self
                    .store
                    .listen(crate::store::INVENTORY_CHANNEL)
                    .await
                    .ok();
            }
            let hint = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let mut lost = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
                ok = hint => lost = !ok,
            }
            if lost {
                listener = None;
            }
            match self.sync_once().await {
                Ok(false) => self.set_status(|s| s.error = None),
                Ok(true) => {
                    let r = reload.clone();
                    match tokio::task::spawn_blocking(move || r()).await {
                        Ok(Ok(generation)) => {
                            self.set_status(|s| s.error = None);
                            tracing::info!(
                                generation,
                                version = self.status().version,
                                "shared inventory: new version loaded"
                            );
                        }
                        Ok(Err(msg)) => {
                            self.set_status(|s| s.error = Some(msg));
                        }
                        Err(e) => tracing::error!(error = %e, "reload task failed"),
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    let first = self.status().error.is_none();
                    if first {
                        tracing::warn!(error = %msg, "shared inventory: database unreachable, serving the last good inventory");
                    }
                    self.set_status(|s| s.error = Some(msg));
                    listener = None;
                }
            }
        }
    }
}

/// The boot table the boot services serve: the engine's, or, while the
/// shared inventory is older than `max_stale` (the database away that
/// long), the same without any installer: a daemon that may be serving an
/// outdated inventory boots machines from their disks, never into an
/// installer (fail closed). Re-checked every second and on each new table.
pub fn fresh_table(
    sh: Arc<Shared>,
    mut table: tokio::sync::watch::Receiver<Arc<crate::boot::BootTable>>,
    max_stale: Duration,
    shutdown: CancellationToken,
) -> tokio::sync::watch::Receiver<Arc<crate::boot::BootTable>> {
    let (tx, rx) = tokio::sync::watch::channel(table.borrow().clone());
    tokio::spawn(async move {
        let mut was_fresh = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = table.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let age = crate::store::now_ms() - sh.status().checked_at;
            let fresh = age <= max_stale.as_millis() as i64;
            if fresh != was_fresh {
                if fresh {
                    tracing::info!("shared inventory fresh again: installers are served");
                } else {
                    tracing::warn!(
                        age_ms = age,
                        "shared inventory stale: serving local disk boots only, no installer"
                    );
                }
                was_fresh = fresh;
            }
            let t = table.borrow_and_update().clone();
            let out = if fresh {
                t
            } else {
                Arc::new(t.without_installs())
            };
            tx.send_if_modified(|cur| {
                if **cur == *out {
                    false
                } else {
                    *cur = out;
                    true
                }
            });
        }
    });
    rx
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_names_stay_inside() {
        for ok in [
            "systems.toml",
            "profiles/lab.toml",
            "kickstarts/lab/a.ks.j2",
        ] {
            assert!(safe_doc(ok), "{ok}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "profiles/../../x.toml",
            "profiles/a/b.toml",
            "profiles/x.txt",
            "kickstarts/../x",
            "kickstarts/.hidden",
            "other.toml",
            "kickstarts//a",
        ] {
            assert!(!safe_doc(bad), "{bad}");
        }
    }

    #[test]
    fn diff_lists_changes_and_removals() {
        let a: Docs = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let b: Docs = [("a".into(), "1".into()), ("c".into(), "3".into())].into();
        assert_eq!(
            diff(&a, &b),
            vec![
                ("c".to_string(), Some("3".to_string())),
                ("b".to_string(), None)
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn materialize_mirrors_exactly() {
        let d = tempfile::tempdir().unwrap();
        let docs: Docs = [
            ("systems.toml".into(), "# s\n".into()),
            ("profiles/a.toml".into(), "x\n".into()),
            ("kickstarts/lab/t.j2".into(), "t\n".into()),
        ]
        .into();
        materialize(d.path(), &docs).unwrap();
        assert_eq!(read_dir_docs(d.path()), docs);
        let fewer: Docs = [("systems.toml".into(), "# s2\n".into())].into();
        materialize(d.path(), &fewer).unwrap();
        assert_eq!(read_dir_docs(d.path()), fewer);
        let bad: Docs = [("../evil".into(), String::new())].into();
        assert!(materialize(d.path(), &bad).is_err());
    }
}
