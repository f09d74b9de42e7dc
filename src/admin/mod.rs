//! Editing the operator's files: `systems.toml` entries and `profiles/NAME.toml`.
//!
//! Every change follows the same path, under one lock file in the config dir
//! (`.rackboot.lock`, `flock` through `File::lock`), so two editors (CLI
//! processes, API requests, threads) are serialised and neither is lost:
//!
//! 1. read the file and parse it as a *document* (`toml_edit`), so the
//!    admin's comments, blank lines, key order and quoting survive: only the
//!    edited entry's bytes change;
//! 2. apply the change to the document;
//! 3. validate the result as a whole inventory (`config::load_inventory_unrendered`
//!    with the new text in memory: parsing, references, duplicate MAC / IP /
//!    hostname, profiles, templates' syntax), then render the templates of
//!    every system whose rendering inputs are not known-good (see [`RenderCache`]);
//! 4. only then write: temp file in the same dir, fsync, rename, fsync the dir.
//!
//! A refused change leaves every file exactly as it was. When the files on
//! disk are already invalid (edited by hand), the refusal says which errors
//! were there before the change ([`AdminError::Broken`]).

use crate::config::{self, wire, ConfigError, Settings};
use crate::inventory::Inventory;
use crate::model::Mac;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

mod cache;
mod check;
mod doc;
mod profiles;
mod systems;
mod validated;
mod write;

use crate::api::changes::{ProfileChange, SystemChange};
use cache::*;
use check::*;
pub use check::{load_for_reading, load_for_serving};
use doc::*;
use profiles::*;
pub use profiles::{add_profile, edit_profile, profile_users, remove_profile};
pub use systems::{add_system, edit_system, remove_system};
pub use validated::VALIDATED_FILE;
use write::*;
pub use write::{lock, write_atomic, EditLock};

/// The lock file (in the config dir) every edit holds while it reads, checks and writes.
pub const LOCK_FILE: &str = ".rackboot.lock";
/// Fingerprints of systems whose templates rendered cleanly (see [`RenderCache`]).
pub const RENDER_CACHE_FILE: &str = ".rackboot.rendered";

/// Why an edit was not made. In every case the files on disk are unchanged.
#[derive(Debug)]
pub enum AdminError {
    /// The change would make the inventory invalid.
    Refused(Vec<ConfigError>),
    /// The change collides with what exists: the name is taken, a MAC / IP /
    /// hostname belongs to another system, a profile is still in use.
    Conflict(Vec<ConfigError>),
    /// The files on disk are already invalid (edited by hand?): `preexisting`
    /// errors were there before the change, `caused` are the change's own.
    Broken {
        preexisting: Vec<ConfigError>,
        caused: Vec<ConfigError>,
    },
    /// No such system / profile.
    NotFound(String),
    /// The request itself is malformed (missing or contradictory options).
    Usage(String),
    /// Reading or writing failed.
    Io(String),
}

impl AdminError {
    /// Every configuration error the refusal carries, with whether it predates the change.
    pub fn errors(&self) -> Vec<(&ConfigError, bool)> {
        match self {
            AdminError::Refused(e) | AdminError::Conflict(e) => {
                e.iter().map(|e| (e, false)).collect()
            }
            AdminError::Broken {
                preexisting,
                caused,
            } => preexisting
                .iter()
                .map(|e| (e, true))
                .chain(caused.iter().map(|e| (e, false)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        match self {
            AdminError::Refused(_) => {
                "refused: the change would leave the inventory invalid".into()
            }
            AdminError::Conflict(_) => "refused: the change conflicts with the inventory".into(),
            AdminError::Broken { preexisting, .. } => format!(
                "refused: the files on disk are already invalid ({} error(s), edited by hand?): \
                 fix them first (`rackboot check` lists them)",
                preexisting.len()
            ),
            AdminError::NotFound(m) | AdminError::Usage(m) | AdminError::Io(m) => m.clone(),
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())?;
        for (e, pre) in self.errors() {
            write!(f, "\n  {e}")?;
            if pre {
                write!(f, "  (already on disk)")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for AdminError {}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> AdminError {
    AdminError::Io(format!("{what} {}: {e}", p.display()))
}

/// A change that was made (or found to be a no-op).
pub struct Outcome {
    /// The validated inventory the files now hold.
    pub inventory: Inventory,
    /// Files written or removed (empty when the change changed nothing).
    pub written: Vec<PathBuf>,
    /// Systems whose templates were rendered for this change (the rest were known-good).
    pub rendered: usize,
    /// Whether the whole inventory was parsed and checked (false: `systems
    /// add` checked the new entry alone against the recorded state, see
    /// `validated.rs`).
    pub full_check: bool,
}

fn shown_systems(settings: &Settings) -> String {
    config::show(&settings.config_dir, &settings.systems_file)
}

fn cerr(file: &str, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        file: file.to_string(),
        key: key.into(),
        reason: reason.into(),
    }
}

fn check_name(kind: &str, name: &str) -> Result<(), AdminError> {
    if !config::valid_name(name) || name.starts_with('.') {
        return Err(AdminError::Usage(format!(
            "invalid {kind} name {name:?}: use letters, digits, '-', '_' and '.' (not first), at most 63"
        )));
    }
    Ok(())
}

fn norm_mac(m: &str) -> String {
    m.parse::<Mac>()
        .map(|m| m.to_string())
        .unwrap_or_else(|_| m.to_string())
}

impl AdminError {
    /// A stable code for scripts and the API.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Refused(_) => "invalid_config",
            AdminError::Conflict(_) => "conflict",
            AdminError::Broken { .. } => "config_already_invalid",
            AdminError::NotFound(_) => "not_found",
            AdminError::Usage(_) => "bad_request",
            AdminError::Io(_) => "io",
        }
    }

    /// `{"error": {"code", "message", "errors": [{file, key, reason, preexisting}]}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.summary(),
                "errors": self.errors().iter().map(|(e, pre)| serde_json::json!({
                    "file": e.file, "key": e.key, "reason": e.reason, "preexisting": pre,
                })).collect::<Vec<_>>(),
            }
        })
    }
}
