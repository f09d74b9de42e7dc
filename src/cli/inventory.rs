//! `rackboot import DIR` / `rackboot export DIR`, and the CLI's side of the
//! shared inventory (`crate::shared`): with `database_url = "postgres://…"`
//! the `systems` and `profiles` commands edit and read the database's
//! documents instead of the config dir's files.
//!
//! Exit codes: 0 done, 1 refused or failed (with the reasons), 2 usage.

use super::output::{EXIT_FAILED, EXIT_USAGE};
use crate::admin::{AdminError, Outcome};
use crate::config::{self, Settings};
use crate::inventory::Inventory;
use crate::shared;
use crate::store::{InventoryExpect, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn open(settings: &Settings) -> Result<Store, String> {
    runtime()
        .block_on(Store::open(&settings.database_url))
        .map_err(|e| {
            format!(
                "cannot open {}: {e}",
                crate::store::redact_url(&settings.database_url)
            )
        })
}

fn who() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The settings of a daemon on the shared inventory, or the exit code
/// after saying why not.
fn shared_settings(config_dir: &Path, what: &str) -> Result<Settings, ExitCode> {
    let settings = config::load_settings(config_dir).map_err(|e| {
        eprint!("error: {e}");
        ExitCode::from(EXIT_FAILED)
    })?;
    if !shared::is_shared(&settings) {
        eprintln!("error: {what} needs database_url = \"postgres://…\" in rackboot.toml (with SQLite the inventory is the config dir's files)");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    Ok(settings)
}

/// `rackboot import DIR`: DIR (systems.toml, profiles/, kickstarts/) checked
/// as a whole inventory, then every document replaced in one transaction.
pub fn import(config_dir: &Path, dir: &Path) -> ExitCode {
    let settings = match shared_settings(config_dir, "import") {
        Ok(s) => s,
        Err(c) => return c,
    };
    let (docs, inv) = match shared::check_dir(&settings, dir) {
        Ok(x) => x,
        Err(e) => {
            eprint!(
                "error: {} not imported, the database is unchanged: {e}",
                dir.display()
            );
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let store = match open(&settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let changes: Vec<_> = docs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let r = runtime().block_on(store.write_inventory(
        &changes,
        true,
        InventoryExpect::Any,
        &who(),
        crate::store::now_ms(),
    ));
    match r {
        Ok(v) => {
            println!(
                "imported {}: {} systems, {} profiles, {} documents; shared inventory version {v} (every daemon loads it within 2 s)",
                dir.display(),
                inv.systems().len(),
                inv.profiles().len(),
                docs.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `rackboot export DIR`: the shared inventory's documents written into DIR
/// (created if needed; its systems.toml, profiles/*.toml and kickstarts/
/// made to match exactly, nothing else touched).
pub fn export(config_dir: &Path, dir: &Path) -> ExitCode {
    let settings = match shared_settings(config_dir, "export") {
        Ok(s) => s,
        Err(c) => return c,
    };
    let store = match open(&settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let (head, docs) = match runtime().block_on(shared::current(&store)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if let Err(e) = shared::materialize(dir, &docs) {
        eprintln!("error: writing {}: {e}", dir.display());
        return ExitCode::from(EXIT_FAILED);
    }
    println!(
        "exported shared inventory version {} ({} documents, last written by {}) to {}",
        head.version,
        docs.len(),
        head.updated_by,
        dir.display()
    );
    ExitCode::SUCCESS
}

/// An admin edit: on the files (SQLite), or on the shared inventory's
/// documents with compare-and-set (Postgres). Written paths of a shared
/// edit are shown as `shared:NAME`.
pub fn edit(
    settings: &Settings,
    op: impl Fn(&Settings) -> Result<Outcome, AdminError>,
) -> Result<Outcome, AdminError> {
    if !shared::is_shared(settings) {
        return op(settings);
    }
    let store = open(settings).map_err(AdminError::Io)?;
    let rt = runtime();
    let mut out = rt.block_on(shared::edit_detached(&store, settings, &who(), |s| {
        let mut o = op(s)?;
        let base = s
            .systems_file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        o.written = o
            .written
            .iter()
            .map(|p| {
                PathBuf::from(format!(
                    "shared:{}",
                    p.strip_prefix(&base).unwrap_or(p).display()
                ))
            })
            .collect();
        Ok(o)
    }))?;
    out.written.sort();
    Ok(out)
}

/// The inventory to read (list, show): the files' (SQLite) or the shared
/// one's (Postgres).
pub fn read(settings: &Settings) -> Result<Inventory, String> {
    if !shared::is_shared(settings) {
        return crate::admin::load_for_reading(settings).map_err(|e| e.to_string());
    }
    let store = open(settings)?;
    let (_, docs) = runtime()
        .block_on(shared::current(&store))
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| e.to_string())?;
    let scratch = shared::Scratch::new(&settings.data_dir).map_err(|e| e.to_string())?;
    shared::materialize(&scratch.0, &docs).map_err(|e| e.to_string())?;
    config::load_inventory(&shared::settings_in(settings, &scratch.0)).map_err(|e| e.to_string())
}
