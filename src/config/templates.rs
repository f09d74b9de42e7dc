//! The config loader's side of templates: reading the templates dir (the
//! file I/O `render` does not do), `Urls` from the settings, and the
//! render-validation pass turned into `ConfigError`s.

use super::{show, ConfigError, Settings};
use crate::inventory::{Inventory, System};
use crate::render::{Templates, Urls};
use std::path::Path;

impl From<&Settings> for Urls {
    fn from(s: &Settings) -> Urls {
        Urls::new(s.http_base_url.clone(), s.address)
    }
}

/// Read and compile every file under `dir` (hidden files and `~` backups
/// skipped), named by their path relative to `dir`. Errors go to `out`.
pub(crate) fn load(dir: &Path, config_dir: &Path, out: &mut Vec<ConfigError>) -> Templates {
    let mut t = Templates::empty();
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files);
    files.sort();
    if !dir.is_dir() {
        out.push(ConfigError {
            file: show(config_dir, dir),
            key: String::new(),
            reason: "templates dir not found".into(),
        });
    }
    for name in files {
        let path = dir.join(&name);
        let shown = show(config_dir, &path);
        match std::fs::read_to_string(&path) {
            Ok(src) => {
                if let Err(e) = t.add(name, src) {
                    out.push(ConfigError {
                        file: shown,
                        key: e.line.map(|l| format!("line {l}")).unwrap_or_default(),
                        reason: e.to_string(),
                    });
                }
            }
            Err(e) => out.push(ConfigError {
                file: shown,
                key: String::new(),
                reason: format!("cannot read template: {e}"),
            }),
        }
    }
    t
}

pub(crate) fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for ent in rd.flatten() {
        let p = ent.path();
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if p.is_dir() {
            collect_files(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

impl Inventory {
    /// Render every kind of every system once; failures become load errors.
    pub(crate) fn render_all_for_validation(&self, systems_file: &str, out: &mut Vec<ConfigError>) {
        for s in self.systems() {
            self.render_for_validation(s, systems_file, out);
        }
    }

    /// Render every kind of one system once; failures become load errors.
    pub(crate) fn render_for_validation(
        &self,
        s: &System,
        systems_file: &str,
        out: &mut Vec<ConfigError>,
    ) {
        out.extend(
            self.render_failures(s)
                .into_iter()
                .map(|reason| ConfigError {
                    file: systems_file.to_string(),
                    key: format!("systems.{}", s.name),
                    reason,
                }),
        );
    }
}
