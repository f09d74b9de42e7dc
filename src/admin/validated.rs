//! The fast path of `systems add`: check the new entry alone against what the
//! last successful edit validated, instead of re-reading the whole inventory.
//!
//! Parsing and validating a 5,000-system `systems.toml` takes ~40 ms, most of
//! it in the TOML parser; `systems add` called once per machine by a bulk-load
//! script would pay it every time. Adding a system changes nothing for the
//! others: the only checks that involve them are the unique keys (name, MAC,
//! IP, hostname). So every successful edit leaves `.rackboot.validated` in the
//! config dir: a fingerprint of the state it validated (the settings, the
//! exact bytes of `systems.toml`, every profile file, every template) and the
//! unique keys of all its systems.
//!
//! `systems add` then takes the fast path only when all of this holds, and
//! otherwise runs the full check (which gives the refusal its messages):
//! - the fingerprint of the files on disk now is the recorded one (a hand
//!   edit, a changed profile or template, another rackboot version: full check);
//! - `systems.toml` has nothing before its first `[table]` header, so that
//!   appending a `[systems.NAME]` table cannot collide with an inline
//!   `systems = {...}`;
//! - the new entry parses, passes the same per-system validation as the full
//!   check ([`config::validate_system`]) against the recorded keys, and its
//!   templates render.
//!
//! Those are exactly the checks the full path would run on the appended file
//! that could fail: it accepts only what the full check accepts. A test runs
//! both on the same edits (`tests/it/admin.rs`).

use super::{dir_fingerprint, hasher, io_err, write_atomic_with, KeyBase, Outcome, RenderCache};
use crate::config::{self, wire, Errs, Settings, SystemIndex};
use crate::inventory::Inventory;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::net::Ipv4Addr;
use std::path::Path;

/// The cache file in the config dir.
pub const VALIDATED_FILE: &str = ".rackboot.validated";

const MAGIC: &str = "rackboot-validated 1";

/// What an edit validated, as hashes of its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    settings: u64,
    systems: u64,
    profiles: u64,
    /// [`dir_fingerprint`] of the templates dir (also the render keys' input).
    pub(super) templates: u64,
}

impl Fingerprint {
    /// The state made of `systems_text` (None: the file on disk) and the
    /// profiles on disk overlaid with `overlay`, as `config::load_profiles` sees them.
    pub(super) fn of(
        settings: &Settings,
        systems_text: Option<&str>,
        overlay: &BTreeMap<String, Option<String>>,
    ) -> Fingerprint {
        let systems = match systems_text {
            Some(t) => hash_bytes(t.as_bytes()),
            None => match std::fs::read(&settings.systems_file) {
                Ok(b) => hash_bytes(&b),
                Err(_) => hash_bytes(b"\xffunreadable"),
            },
        };
        let mut h = hasher();
        h.write(format!("{settings:?}").as_bytes());
        Fingerprint {
            settings: h.finish(),
            systems,
            profiles: profiles_fingerprint(&settings.profiles_dir, overlay),
            templates: dir_fingerprint(&settings.templates_dir),
        }
    }

    fn combined(&self) -> u64 {
        let mut h = hasher();
        h.write(env!("CARGO_PKG_VERSION").as_bytes());
        h.write_u64(self.settings);
        h.write_u64(self.systems);
        h.write_u64(self.profiles);
        h.write_u64(self.templates);
        h.finish()
    }
}

fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = hasher();
    h.write(b);
    h.finish()
}

/// The `*.toml` files of the profiles dir, overlaid with in-memory edits.
fn profiles_fingerprint(dir: &Path, overlay: &BTreeMap<String, Option<String>>) -> u64 {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.extend(overlay.keys().cloned());
    names.sort();
    names.dedup();
    let mut h = hasher();
    for n in names {
        let text = match overlay.get(&n) {
            Some(None) => continue,
            Some(Some(t)) => Some(t.as_bytes().to_vec()),
            None => std::fs::read(dir.join(format!("{n}.toml"))).ok(),
        };
        h.write(n.as_bytes());
        h.write_u8(0);
        match text {
            Some(t) => h.write(&t),
            None => h.write(b"\xffunreadable"),
        }
        h.write_u8(0);
    }
    h.finish()
}

/// Record that the state `fp` is valid and holds these unique keys.
/// Not fsynced: losing it costs one full check; the trailer makes a torn
/// file read as missing.
pub(super) fn store(dir: &Path, fp: &Fingerprint, index: &SystemIndex) {
    use std::fmt::Write as _;
    let n = index.names.len() + index.by_host.len() + index.by_ip.len() + index.by_mac.len();
    let mut s = String::with_capacity(n * 32 + 64);
    let _ = writeln!(s, "{MAGIC} {:016x}", fp.combined());
    for name in &index.names {
        let _ = writeln!(s, "n {name}");
    }
    for (h, name) in &index.by_host {
        let _ = writeln!(s, "h {h} {name}");
    }
    for (ip, name) in &index.by_ip {
        let _ = writeln!(s, "i {ip} {name}");
    }
    for (mac, name) in &index.by_mac {
        let _ = writeln!(s, "m {mac} {name}");
    }
    let _ = writeln!(s, "end {n}");
    if let Err(e) = write_atomic_with(&dir.join(VALIDATED_FILE), &s, false) {
        tracing::debug!(error = %e, "cannot write the validation cache");
    }
}

/// The unique keys recorded for state `fp`; None unless the file is whole,
/// well-formed and for exactly this state.
pub(super) fn load(dir: &Path, fp: &Fingerprint) -> Option<SystemIndex> {
    let text = std::fs::read_to_string(dir.join(VALIDATED_FILE)).ok()?;
    let mut lines = text.lines();
    let head = format!("{MAGIC} {:016x}", fp.combined());
    if lines.next()? != head {
        return None;
    }
    let mut idx = SystemIndex::default();
    for (count, l) in lines.enumerate() {
        if let Some(n) = l.strip_prefix("end ") {
            return (n.parse::<usize>().ok()? == count).then_some(idx);
        }
        let (tag, rest) = l.split_once(' ')?;
        let two = || rest.split_once(' ');
        match tag {
            "n" => {
                idx.names.insert(rest.to_string());
            }
            "h" => {
                let (h, name) = two()?;
                idx.by_host.insert(h.to_string(), name.to_string());
            }
            "i" => {
                let (ip, name) = two()?;
                idx.by_ip
                    .insert(ip.parse::<Ipv4Addr>().ok()?, name.to_string());
            }
            "m" => {
                let (mac, name) = two()?;
                idx.by_mac.insert(mac.parse().ok()?, name.to_string());
            }
            _ => return None,
        }
    }
    None // no trailer: torn
}

/// Whether `systems.toml` text has only blank lines and comments before its
/// first table header (so an appended `[systems.NAME]` cannot meet an inline
/// or dotted `systems` key at the root).
fn root_is_empty(text: &str) -> bool {
    for l in text.lines() {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        return t.starts_with('[');
    }
    true
}

/// Append `entry` (one `[systems.NAME]` table, rendered by the caller) to
/// `old` giving `new`, if the fast path can vouch for it; `Ok(None)` when it
/// cannot (the caller runs the full check). Called with the edit lock held.
pub(super) fn try_add(
    settings: &Settings,
    name: &str,
    old: &str,
    entry: &str,
    new: &str,
) -> Result<Option<Outcome>, super::AdminError> {
    if !root_is_empty(old) {
        return Ok(None);
    }
    let dir = &settings.config_dir;
    let fp = Fingerprint::of(settings, Some(old), &BTreeMap::new());
    let Some(mut index) = load(dir, &fp) else {
        return Ok(None);
    };
    if index.names.contains(name) {
        return Ok(None);
    }
    let shown = config::show(dir, &settings.systems_file);
    let mut out = Vec::new();
    let Some(w) = config::parse_toml::<wire::SystemsFile>(entry, &shown, &mut out) else {
        return Ok(None);
    };
    let Some(wire) = w.systems.get(name).filter(|_| w.systems.len() == 1) else {
        return Ok(None);
    };
    let (profiles, templates) = config::load_profiles(settings, &BTreeMap::new(), &mut out);
    if !out.is_empty() {
        return Ok(None);
    }
    let mut e = Errs {
        out: &mut out,
        file: shown.clone(),
    };
    let Some(system) = config::validate_system(name, wire, &mut index, &profiles, settings, &mut e)
    else {
        return Ok(None);
    };
    let inv = Inventory::new(
        vec![system],
        profiles.resolved,
        templates,
        crate::render::Urls::from(settings),
    );
    let sys = &inv.systems()[0];
    inv.render_for_validation(sys, &shown, &mut out);
    if !out.is_empty() {
        return Ok(None);
    }
    let path = &settings.systems_file;
    super::write_atomic(path, new).map_err(|e| io_err("cannot write", path, e))?;
    store(
        dir,
        &Fingerprint {
            systems: hash_bytes(new.as_bytes()),
            ..fp
        },
        &index,
    );
    let mut rc = RenderCache::load(dir);
    rc.ok.insert(KeyBase::new(&inv, fp.templates).key(sys));
    rc.store(&rc.ok);
    Ok(Some(Outcome {
        inventory: inv,
        written: vec![path.clone()],
        rendered: 1,
        full_check: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::{load, root_is_empty, store, Fingerprint, VALIDATED_FILE};
    use crate::config::SystemIndex;

    #[test]
    fn record_round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let fp = Fingerprint {
            settings: 1,
            systems: 2,
            profiles: 3,
            templates: 4,
        };
        let mut idx = SystemIndex::default();
        idx.names.insert("a".into());
        idx.names.insert("b".into());
        idx.by_host.insert("host-a".into(), "a".into());
        idx.by_ip.insert("10.0.0.1".parse().unwrap(), "a".into());
        idx.by_mac
            .insert("52:54:00:00:00:01".parse().unwrap(), "b".into());
        store(d.path(), &fp, &idx);
        let back = load(d.path(), &fp).expect("same state");
        assert_eq!(back.names, idx.names);
        assert_eq!(back.by_host, idx.by_host);
        assert_eq!(back.by_ip, idx.by_ip);
        assert_eq!(back.by_mac, idx.by_mac);
        // Another state, a torn file, a bad line: not trusted.
        assert!(load(d.path(), &Fingerprint { systems: 9, ..fp }).is_none());
        let path = d.path().join(VALIDATED_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 7]).unwrap();
        assert!(load(d.path(), &fp).is_none());
        std::fs::write(&path, text.replace("i 10.0.0.1", "i 10.0.0.300")).unwrap();
        assert!(load(d.path(), &fp).is_none());
        std::fs::write(&path, text.replace("end 5", "end 4")).unwrap();
        assert!(load(d.path(), &fp).is_none());
    }

    #[test]
    fn root_section() {
        assert!(root_is_empty(""));
        assert!(root_is_empty("# c\n\n  # d\n[systems.a]\nip = \"1\"\n"));
        assert!(root_is_empty("[systems]\na = {}\n"));
        assert!(!root_is_empty("systems = { a = {} }\n"));
        assert!(!root_is_empty("# c\nsystems.a.ip = \"1\"\n[systems.b]\n"));
        assert!(!root_is_empty("\"systems\" = {}\n"));
    }
}
