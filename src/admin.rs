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
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

mod validated;
pub use validated::VALIDATED_FILE;

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

/// A change to a system. For `add`, `macs`, `ip` and `profile` are needed.
/// For `edit`, only what is given changes: `macs` replaces the list,
/// `add_macs` / `remove_macs` edit it; `unset` removes optional keys
/// (`hostname`, `netmask`, `gateway`, `dns`, `domain`, `bmc`).
/// This is also the JSON body of `POST /api/v1/systems` and `PUT /api/v1/systems/{name}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemChange {
    /// Only in `POST` bodies (the name is in the path otherwise).
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub macs: Option<Vec<String>>,
    #[serde(default)]
    pub add_macs: Vec<String>,
    #[serde(default)]
    pub remove_macs: Vec<String>,
    pub ip: Option<String>,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    pub dns: Option<Vec<String>>,
    pub domain: Option<String>,
    pub profile: Option<String>,
    pub bmc: Option<BmcChange>,
    /// Template variables to set (a JSON `null` removes one).
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub unset_vars: Vec<String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// BMC settings. A password is never accepted inline: `password_file` or `password_env`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcChange {
    pub kind: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// Refused with a clear message (it is here so it is not an "unknown field").
    pub password: Option<serde_json::Value>,
    pub cipher_suites: Option<Vec<u8>>,
    pub insecure_tls: Option<bool>,
    pub system_id: Option<String>,
}

/// A change to a profile. `unset` removes top-level keys (`parent`, `template`,
/// `timeouts`, `stages`, ...). Stages are edited by hand in the file.
/// This is also the JSON body of `POST /api/v1/profiles` and `PUT /api/v1/profiles/{name}`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// Only in `POST` bodies.
    pub name: Option<String>,
    pub parent: Option<String>,
    pub r#abstract: Option<bool>,
    pub description: Option<String>,
    pub kernel: Option<String>,
    pub initrd: Option<Vec<String>>,
    pub kernel_args: Option<String>,
    pub installer: Option<String>,
    pub template: Option<String>,
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub vendor_data: Option<String>,
    pub ipxe_template: Option<String>,
    pub wait_ports: Option<Vec<u16>>,
    pub on_interrupted_stage: Option<String>,
    /// Phase deadlines to set, e.g. `install = "30m"`.
    #[serde(default)]
    pub timeouts: BTreeMap<String, String>,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub unset_vars: Vec<String>,
    #[serde(default)]
    pub unset: Vec<String>,
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

// ---------------------------------------------------------------------------
// Locking and writing

/// The exclusive edit lock; released on drop.
pub struct EditLock {
    _file: File,
}

/// Take the config dir's edit lock, waiting for another editor to finish.
pub fn lock(dir: &Path) -> Result<EditLock, AdminError> {
    let p = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| io_err("cannot open the lock file", &p, e))?;
    f.lock()
        .map_err(|e| io_err("cannot lock the lock file", &p, e))?;
    Ok(EditLock { _file: f })
}

/// Replace `path` with `text` atomically: a temp file in the same dir, written
/// and fsynced, renamed over the old file, then the dir fsynced. Readers see
/// the old file or the new one, never a mix; the old file's mode is kept.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    write_atomic_with(path, text, true)
}

fn write_atomic_with(path: &Path, text: &str, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove_durably(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(d) = path.parent() {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Validation, with rendering limited to systems whose inputs changed

/// Which systems are known to render cleanly.
///
/// Full validation renders every template for every system (~0.15 ms each),
/// too slow to repeat on every edit of a 5,000-system inventory. Rendering is
/// a pure function of (the validated `System`, its resolved `Profile`, the
/// URLs, the template sources, rackboot's version); after a successful edit
/// the cache records a 64-bit fingerprint of those inputs for every system.
/// The next edit still runs every structural check on the whole inventory,
/// and renders exactly the systems whose fingerprint is not recorded: the one
/// added or edited, every system of an edited profile (or its children), all
/// of them when a template file changed. Anything it cannot vouch for (no
/// cache, unreadable or truncated cache, other version) is rendered. The
/// daemon's own reload still renders everything.
pub struct RenderCache {
    path: PathBuf,
    ok: HashSet<u64>,
}

const CACHE_MAGIC: &str = "rackboot-render-cache 1";

impl RenderCache {
    pub fn load(dir: &Path) -> RenderCache {
        let path = dir.join(RENDER_CACHE_FILE);
        let mut ok = HashSet::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut lines = text.lines();
            let head = format!("{CACHE_MAGIC} {}", env!("CARGO_PKG_VERSION"));
            if lines.next() == Some(head.as_str()) {
                let mut set = HashSet::new();
                let mut complete = false;
                for l in lines {
                    if let Some(n) = l.strip_prefix("end ") {
                        complete = n.parse::<usize>().ok() == Some(set.len());
                        break;
                    }
                    match u64::from_str_radix(l, 16) {
                        Ok(h) => {
                            set.insert(h);
                        }
                        Err(_) => break,
                    }
                }
                if complete {
                    ok = set;
                }
            }
        }
        RenderCache { path, ok }
    }

    fn store(&self, keys: &HashSet<u64>) {
        let mut s = String::with_capacity(keys.len() * 17 + 64);
        s.push_str(&format!("{CACHE_MAGIC} {}\n", env!("CARGO_PKG_VERSION")));
        for k in keys {
            s.push_str(&format!("{k:016x}\n"));
        }
        s.push_str(&format!("end {}\n", keys.len()));
        // Not fsynced: losing it only costs a full render next time, and the
        // trailer makes a torn file read as empty.
        if let Err(e) = write_atomic_with(&self.path, &s, false) {
            tracing::debug!(error = %e, "cannot write the render cache");
        }
    }
}

struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

fn hasher() -> std::collections::hash_map::DefaultHasher {
    std::collections::hash_map::DefaultHasher::new()
}

/// Fingerprint of every file under `dir` (names and contents).
fn dir_fingerprint(dir: &Path) -> u64 {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut h = hasher();
    for f in files {
        h.write(f.as_os_str().as_encoded_bytes());
        h.write_u8(0);
        match std::fs::read(&f) {
            Ok(b) => h.write(&b),
            Err(_) => h.write(b"\xffunreadable"),
        }
        h.write_u8(0);
    }
    h.finish()
}

/// The parts of a system's rendering fingerprint it shares with the others.
struct KeyBase<'a> {
    base: u64,
    per_profile: HashMap<&'a str, u64>,
}

impl<'a> KeyBase<'a> {
    fn new(inv: &'a Inventory, templates: u64) -> KeyBase<'a> {
        use fmt::Write as _;
        let mut base = hasher();
        base.write(env!("CARGO_PKG_VERSION").as_bytes());
        base.write_u64(templates);
        let _ = write!(HashWriter(&mut base), "{:?}", inv.urls);
        let base = base.finish();
        let mut per_profile: HashMap<&str, u64> = HashMap::new();
        for (name, p) in inv.profiles() {
            let mut h = hasher();
            let _ = write!(HashWriter(&mut h), "{p:?}");
            per_profile.insert(name.as_str(), h.finish());
        }
        KeyBase { base, per_profile }
    }

    /// The rendering fingerprint of one system.
    fn key(&self, s: &crate::inventory::System) -> u64 {
        use fmt::Write as _;
        let mut h = hasher();
        h.write_u64(self.base);
        h.write_u64(
            self.per_profile
                .get(s.profile.as_str())
                .copied()
                .unwrap_or(0),
        );
        let _ = write!(HashWriter(&mut h), "{s:?}");
        h.finish()
    }
}

/// The rendering fingerprint of every system of `inv`.
fn render_keys(inv: &Inventory, templates: u64) -> Vec<u64> {
    let kb = KeyBase::new(inv, templates);
    inv.systems().iter().map(|s| kb.key(s)).collect()
}

struct Checked {
    inventory: Inventory,
    keys: HashSet<u64>,
    rendered: usize,
}

/// Validate an inventory made of the files on disk overlaid with in-memory
/// texts; `templates` is the templates dir's [`dir_fingerprint`].
fn validate(
    settings: &Settings,
    systems_text: Option<&str>,
    profile_texts: &BTreeMap<String, Option<String>>,
    cache: &RenderCache,
    templates: u64,
) -> Result<Checked, Vec<ConfigError>> {
    let inv = config::load_inventory_unrendered(settings, systems_text, profile_texts)
        .map_err(|e| e.0)?;
    let keys = render_keys(&inv, templates);
    let shown = config::show(&settings.config_dir, &settings.systems_file);
    let mut out = Vec::new();
    let mut rendered = 0;
    for (s, k) in inv.systems().iter().zip(&keys) {
        if !cache.ok.contains(k) {
            rendered += 1;
            inv.render_for_validation(s, &shown, &mut out);
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    Ok(Checked {
        inventory: inv,
        keys: keys.into_iter().collect(),
        rendered,
    })
}

/// After a successful whole check of the state `fp`: the render cache gets its
/// keys, the fast path its record.
fn record(
    settings: &Settings,
    cache: &RenderCache,
    fp: &validated::Fingerprint,
    checked: &Checked,
) {
    cache.store(&checked.keys);
    let mut index = config::SystemIndex::default();
    for s in checked.inventory.systems() {
        index.insert(s);
    }
    validated::store(&settings.config_dir, fp, &index);
}

/// Turn validation errors into a refusal, separating what was already wrong on disk.
fn refusal(settings: &Settings, errors: Vec<ConfigError>, cache: &RenderCache) -> AdminError {
    let templates = dir_fingerprint(&settings.templates_dir);
    let before = match validate(settings, None, &BTreeMap::new(), cache, templates) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    };
    let (preexisting, caused): (Vec<_>, Vec<_>) =
        errors.into_iter().partition(|e| before.contains(e));
    if !preexisting.is_empty() {
        AdminError::Broken {
            preexisting,
            caused,
        }
    } else if caused.iter().any(|e| e.reason.starts_with("duplicate ")) {
        AdminError::Conflict(caused)
    } else {
        AdminError::Refused(caused)
    }
}

/// Read `path` (missing = empty) and parse it as an editable document.
fn read_doc(settings: &Settings, path: &Path) -> Result<(String, DocumentMut), AdminError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err("cannot read", path, e)),
    };
    let doc = parse_doc(settings, path, &text)?;
    Ok((text, doc))
}

fn parse_doc(settings: &Settings, path: &Path, text: &str) -> Result<DocumentMut, AdminError> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e
            .span()
            .map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1);
        AdminError::Broken {
            preexisting: vec![ConfigError {
                file: config::show(&settings.config_dir, path),
                key: line.map(|l| format!("line {l}")).unwrap_or_default(),
                reason: format!(
                    "not valid TOML: {}",
                    e.message().lines().next().unwrap_or("")
                ),
            }],
            caused: Vec::new(),
        }
    })
}

/// Validate the edited texts, then write them. Called with the lock held.
fn commit(
    settings: &Settings,
    systems: Option<(&str, &str)>,
    profiles: BTreeMap<String, (Option<String>, Option<String>)>,
) -> Result<Outcome, AdminError> {
    let cache = RenderCache::load(&settings.config_dir);
    let overlay: BTreeMap<String, Option<String>> = profiles
        .iter()
        .map(|(k, (_, new))| (k.clone(), new.clone()))
        .collect();
    // Taken before validating: if a file changes under us, the recorded
    // state is not the one on disk and the next edit checks everything.
    let fp = validated::Fingerprint::of(settings, systems.map(|(_, new)| new), &overlay);
    let checked = match validate(
        settings,
        systems.map(|(_, new)| new),
        &overlay,
        &cache,
        fp.templates,
    ) {
        Ok(c) => c,
        Err(e) => return Err(refusal(settings, e, &cache)),
    };
    let mut written = Vec::new();
    if let Some((old, new)) = systems {
        if old != new {
            let p = &settings.systems_file;
            write_atomic(p, new).map_err(|e| io_err("cannot write", p, e))?;
            written.push(p.clone());
        }
    }
    for (name, (old, new)) in &profiles {
        if old == new {
            continue;
        }
        let p = profile_path(settings, name);
        match new {
            Some(t) => write_atomic(&p, t).map_err(|e| io_err("cannot write", &p, e))?,
            None => remove_durably(&p).map_err(|e| io_err("cannot remove", &p, e))?,
        }
        written.push(p);
    }
    record(settings, &cache, &fp, &checked);
    Ok(Outcome {
        inventory: checked.inventory,
        written,
        rendered: checked.rendered,
        full_check: true,
    })
}

// ---------------------------------------------------------------------------
// toml_edit helpers

/// Set `key` to `v`, keeping the key's comments and the old value's decoration
/// (spacing, trailing comment).
fn set_value(t: &mut dyn TableLike, key: &str, mut v: Value) {
    match t.get_mut(key) {
        Some(Item::Value(old)) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        Some(item) => *item = Item::Value(v),
        None => {
            t.insert(key, Item::Value(v));
        }
    }
}

/// [`set_value`] for each string that is given.
fn set_strings<const N: usize>(t: &mut dyn TableLike, kv: [(&str, &Option<String>); N]) {
    for (k, v) in kv {
        if let Some(v) = v {
            set_value(t, k, v.as_str().into());
        }
    }
}

fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_ref());
    }
    Value::Array(a)
}

fn json_to_toml(v: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::String(s) => s.as_str().into(),
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().ok_or("number out of range")?.into(),
        },
        J::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(json_to_toml(x)?);
            }
            Value::Array(arr)
        }
        J::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                t.insert(k, json_to_toml(x)?);
            }
            Value::InlineTable(t)
        }
        J::Null => return Err("null is not a TOML value".into()),
    })
}

/// The table-like at `key` in `parent`, created (as a `[header]` table, or an
/// inline table inside an inline parent) when missing.
fn sub_table<'a>(
    parent: &'a mut Item,
    key: &str,
    prefix: &str,
) -> Result<&'a mut dyn TableLike, String> {
    let inline = parent.is_inline_table();
    let t = parent
        .as_table_like_mut()
        .ok_or_else(|| "not a table".to_string())?;
    if t.get(key).is_none() {
        let item = if inline {
            Item::Value(Value::InlineTable(toml_edit::InlineTable::new()))
        } else {
            let mut nt = Table::new();
            nt.decor_mut().set_prefix(prefix);
            Item::Table(nt)
        };
        t.insert(key, item);
    }
    t.get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| format!("{key} is not a table"))
}

fn positions(t: &Table, out: &mut Vec<isize>) {
    if let Some(p) = t.position() {
        if !t.is_implicit() && !t.is_dotted() {
            out.push(p);
        }
    }
    for (_, it) in t.iter() {
        if let Item::Table(sub) = it {
            positions(sub, out);
        }
    }
}

fn table_at_mut(t: &mut Table, pos: isize) -> Option<&mut Table> {
    if t.position() == Some(pos) && !t.is_implicit() && !t.is_dotted() {
        return Some(t);
    }
    for (_, it) in t.iter_mut() {
        if let Item::Table(sub) = it {
            if let Some(found) = table_at_mut(sub, pos) {
                return Some(found);
            }
        }
    }
    None
}

fn is_blank(l: &str) -> bool {
    l.trim().is_empty()
}

/// Remove the header table `key` of `parent` (with its sub-tables) from `doc`.
/// Comments directly above its header go with it; a comment paragraph
/// separated from it by a blank line (a file header, a section note) stays,
/// moved onto the next table.
fn remove_table(doc: &mut DocumentMut, path: &[&str]) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut removed_positions = Vec::new();
    let mut prefix = String::new();
    {
        let mut t: &mut Table = doc.as_table_mut();
        for p in parents {
            t = match t.get_mut(p).and_then(Item::as_table_mut) {
                Some(x) => x,
                None => return,
            };
        }
        let Some(item) = t.remove(last) else { return };
        if let Item::Table(rt) = &item {
            positions(rt, &mut removed_positions);
            prefix = rt
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
        }
    }
    // The paragraph(s) above the removed entry that are separated from it by a blank line.
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    let keep_upto = lines.iter().rposition(|l| is_blank(l)).map(|i| i + 1);
    let kept: String = match keep_upto {
        Some(n) => lines[..n].concat(),
        None => String::new(),
    };
    if kept.lines().all(is_blank) {
        return;
    }
    let Some(&max_removed) = removed_positions.iter().max() else {
        return;
    };
    let mut all = Vec::new();
    positions(doc.as_table(), &mut all);
    let next = all.into_iter().filter(|p| *p > max_removed).min();
    match next.and_then(|p| table_at_mut(doc.as_table_mut(), p)) {
        Some(nt) => {
            let old = nt
                .decor()
                .prefix()
                .and_then(|r| r.as_str())
                .unwrap_or("")
                .to_string();
            let rest: String = old
                .split_inclusive('\n')
                .skip_while(|l| is_blank(l))
                .collect();
            nt.decor_mut().set_prefix(format!("{kept}{rest}"));
        }
        None => {
            let trailing = doc.trailing().as_str().unwrap_or("").to_string();
            doc.set_trailing(format!("{}{trailing}", kept.trim_end_matches('\n')) + "\n");
        }
    }
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

// ---------------------------------------------------------------------------
// Systems

const SYSTEM_UNSETTABLE: &[&str] = &["hostname", "netmask", "gateway", "dns", "domain", "bmc"];

fn apply_system(
    entry: &mut Item,
    name: &str,
    ch: &SystemChange,
    creating: bool,
    file: &str,
) -> Result<(), AdminError> {
    let key = |k: &str| format!("systems.{name}.{k}");
    for u in &ch.unset {
        if !SYSTEM_UNSETTABLE.contains(&u.as_str()) {
            return Err(AdminError::Usage(format!(
                "cannot unset {u:?}: one of {}",
                SYSTEM_UNSETTABLE.join(", ")
            )));
        }
    }
    if let Some(b) = &ch.bmc {
        if b.password.is_some() {
            return Err(AdminError::Usage(
                "inline BMC passwords are not accepted (they end up in shell history, logs and \
                 the file): use a password file or an environment variable"
                    .into(),
            ));
        }
        if b.password_file.is_some() && b.password_env.is_some() {
            return Err(AdminError::Usage(
                "give one of the BMC password file and the BMC password environment variable"
                    .into(),
            ));
        }
    }
    let t = entry
        .as_table_like_mut()
        .ok_or_else(|| AdminError::Refused(vec![cerr(file, key(""), "not a table")]))?;
    if let Some(h) = &ch.hostname {
        set_value(t, "hostname", h.as_str().into());
    }
    // MACs: replace, add, remove.
    if let Some(macs) = &ch.macs {
        let v: Vec<String> = macs.iter().map(|m| norm_mac(m)).collect();
        set_value(t, "macs", str_array(&v));
    }
    if !ch.add_macs.is_empty() || !ch.remove_macs.is_empty() {
        if t.get("macs").is_none() {
            t.insert("macs", Item::Value(str_array::<&str>(&[])));
        }
        let arr = t
            .get_mut("macs")
            .and_then(Item::as_array_mut)
            .ok_or_else(|| {
                AdminError::Refused(vec![cerr(file, key("macs"), "macs is not an array")])
            })?;
        let parsed = |v: &Value| v.as_str().and_then(|s| s.parse::<Mac>().ok());
        for m in &ch.add_macs {
            let mac = m.parse::<Mac>().ok();
            if mac.is_some() && arr.iter().any(|v| parsed(v) == mac) {
                continue;
            }
            // One per line in a multi-line array, like the others.
            let mut v = Value::from(norm_mac(m));
            let last_prefix = arr
                .iter()
                .last()
                .and_then(|l| l.decor().prefix().and_then(|p| p.as_str()))
                .filter(|p| p.contains('\n'))
                .map(String::from);
            if let Some(p) = last_prefix {
                v.decor_mut().set_prefix(p);
                v.decor_mut().set_suffix("");
            } else if !arr.is_empty() {
                v.decor_mut().set_prefix(" ");
                v.decor_mut().set_suffix("");
            } else {
                v.decor_mut().set_prefix("");
                v.decor_mut().set_suffix("");
            }
            arr.push_formatted(v);
        }
        for m in &ch.remove_macs {
            let mac = m.parse::<Mac>().map_err(|e| {
                AdminError::Refused(vec![cerr(file, key("macs"), format!("--remove-mac: {e}"))])
            })?;
            let Some(i) = arr.iter().position(|v| parsed(v) == Some(mac)) else {
                return Err(AdminError::Refused(vec![cerr(
                    file,
                    key("macs"),
                    format!("system {name:?} has no MAC {mac}"),
                )]));
            };
            let prefix = arr.get(i).and_then(|v| v.decor().prefix().cloned());
            arr.remove(i);
            if i == 0 {
                if let (Some(first), Some(p)) = (arr.get_mut(0), prefix) {
                    first.decor_mut().set_prefix(p);
                }
            }
        }
    }
    set_strings(
        t,
        [
            ("ip", &ch.ip),
            ("netmask", &ch.netmask),
            ("gateway", &ch.gateway),
        ],
    );
    if let Some(v) = &ch.dns {
        set_value(t, "dns", str_array(v));
    }
    set_strings(t, [("domain", &ch.domain), ("profile", &ch.profile)]);
    for u in &ch.unset {
        t.remove(u);
    }
    if let Some(b) = &ch.bmc {
        let exists = t.get("bmc").is_some();
        if !exists {
            let mut missing = Vec::new();
            for (v, flag) in [
                (&b.kind, "kind"),
                (&b.address, "address"),
                (&b.username, "username"),
            ] {
                if v.is_none() {
                    missing.push(flag);
                }
            }
            if b.password_file.is_none() && b.password_env.is_none() {
                missing.push("password_file or password_env");
            }
            if !missing.is_empty() {
                return Err(AdminError::Usage(format!(
                    "a new BMC needs kind, address, username and a password source; missing: {} \
                     (CLI: --bmc-kind, --bmc-address, --bmc-user, --bmc-password-file | --bmc-password-env)",
                    missing.join(", ")
                )));
            }
        }
        let bt = sub_table(entry, "bmc", "")
            .map_err(|e| AdminError::Refused(vec![cerr(file, key("bmc"), e)]))?;
        set_strings(
            bt,
            [
                ("kind", &b.kind),
                ("address", &b.address),
                ("username", &b.username),
            ],
        );
        if let Some(v) = &b.password_file {
            bt.remove("password_env");
            set_value(bt, "password_file", v.as_str().into());
        }
        if let Some(v) = &b.password_env {
            bt.remove("password_file");
            set_value(bt, "password_env", v.as_str().into());
        }
        if let Some(v) = &b.cipher_suites {
            let mut a = toml_edit::Array::new();
            for c in v {
                a.push(i64::from(*c));
            }
            set_value(bt, "cipher_suites", Value::Array(a));
        }
        if let Some(v) = b.insecure_tls {
            set_value(bt, "insecure_tls", v.into());
        }
        if let Some(v) = &b.system_id {
            set_value(bt, "system_id", v.as_str().into());
        }
    }
    let (set_vars, null_vars): (Vec<_>, Vec<_>) = ch.vars.iter().partition(|(_, v)| !v.is_null());
    if !set_vars.is_empty() {
        let vt = sub_table(entry, "vars", "")
            .map_err(|e| AdminError::Refused(vec![cerr(file, key("vars"), e)]))?;
        for (k, v) in set_vars {
            let v = json_to_toml(v)
                .map_err(|e| AdminError::Refused(vec![cerr(file, key(&format!("vars.{k}")), e)]))?;
            set_value(vt, k, v);
        }
    }
    let unset_vars: Vec<&String> = ch
        .unset_vars
        .iter()
        .chain(null_vars.iter().map(|(k, _)| *k))
        .collect();
    if !unset_vars.is_empty() {
        let t = entry.as_table_like_mut().expect("checked above");
        let mut now_empty = false;
        if let Some(vt) = t.get_mut("vars").and_then(Item::as_table_like_mut) {
            for k in &unset_vars {
                if vt.remove(k).is_none() && !creating {
                    return Err(AdminError::Refused(vec![cerr(
                        file,
                        key("vars"),
                        format!("system {name:?} has no variable {k:?}"),
                    )]));
                }
            }
            now_empty = vt.is_empty();
        } else if !creating {
            return Err(AdminError::Refused(vec![cerr(
                file,
                key("vars"),
                format!("system {name:?} has no variables"),
            )]));
        }
        if now_empty {
            t.remove("vars");
        }
    }
    Ok(())
}

fn systems_table(doc: &mut DocumentMut) -> Result<&mut Table, AdminError> {
    if doc.get("systems").is_none() {
        let mut t = Table::new();
        t.set_implicit(true);
        doc.insert("systems", Item::Table(t));
    }
    doc.get_mut("systems")
        .and_then(Item::as_table_mut)
        .ok_or_else(|| AdminError::Usage("systems.toml: `systems` is not a table".into()))
}

/// Lock, edit systems.toml with `f`, validate, write.
fn edit_systems(
    settings: &Settings,
    f: impl FnOnce(&mut DocumentMut, &str, &str) -> Result<(), AdminError>,
) -> Result<Outcome, AdminError> {
    let _lock = lock(&settings.config_dir)?;
    let path = &settings.systems_file;
    let (old, mut doc) = read_doc(settings, path)?;
    f(&mut doc, &shown_systems(settings), &old)?;
    let new = doc.to_string();
    commit(settings, Some((&old, &new)), BTreeMap::new())
}

/// Add a system (a new `[systems.NAME]` entry at the end of systems.toml).
pub fn add_system(
    settings: &Settings,
    name: &str,
    ch: &SystemChange,
) -> Result<Outcome, AdminError> {
    check_name("system", name)?;
    let mut missing = Vec::new();
    if ch.macs.as_ref().map(|m| m.is_empty()).unwrap_or(true) && ch.add_macs.is_empty() {
        missing.push("macs (--mac)");
    }
    if ch.ip.is_none() {
        missing.push("ip (--ip)");
    }
    if ch.profile.is_none() {
        missing.push("profile (--profile)");
    }
    if !missing.is_empty() {
        return Err(AdminError::Usage(format!(
            "a new system needs {}",
            missing.join(", ")
        )));
    }
    let _lock = lock(&settings.config_dir)?;
    let path = &settings.systems_file;
    let file = shown_systems(settings);
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err("cannot read", path, e)),
    };
    // The new entry, built as a TOML document of its own and appended at the
    // very end of the file (after any trailing comment), one blank line
    // before it: every existing byte stays where it is, and there is no need
    // to parse the whole file as a document (the validation below parses it
    // anyway, and refuses a name that is already taken).
    let mut doc = DocumentMut::new();
    let mut item = Item::Table(Table::new());
    {
        let t = item.as_table_like_mut().expect("table");
        // The documented key order.
        if let Some(h) = &ch.hostname {
            t.insert("hostname", Item::Value(h.as_str().into()));
        }
        t.insert("macs", Item::Value(str_array::<&str>(&[])));
        t.insert("ip", Item::Value("".into()));
        for (k, v) in [("netmask", &ch.netmask), ("gateway", &ch.gateway)] {
            if let Some(v) = v {
                t.insert(k, Item::Value(v.as_str().into()));
            }
        }
        if let Some(d) = &ch.dns {
            t.insert("dns", Item::Value(str_array(d)));
        }
        if let Some(d) = &ch.domain {
            t.insert("domain", Item::Value(d.as_str().into()));
        }
        t.insert("profile", Item::Value("".into()));
    }
    apply_system(&mut item, name, ch, true, &file)?;
    if let Some(t) = item.as_table_mut() {
        t.set_position(Some(1));
        let mut p = 2;
        for k in ["bmc", "vars"] {
            if let Some(Item::Table(st)) = t.get_mut(k) {
                st.set_position(Some(p));
                p += 1;
            }
        }
    }
    systems_table(&mut doc)?.insert(name, item);
    let entry = doc.to_string();
    let sep = if old.trim().is_empty() || old.ends_with("\n\n") {
        ""
    } else if old.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    let new = format!("{old}{sep}{entry}");
    if let Some(done) = validated::try_add(settings, name, &old, &entry, &new)? {
        return Ok(done);
    }
    match commit(settings, Some((&old, &new)), BTreeMap::new()) {
        Err(e) if system_exists(&old, name) => Err(AdminError::Conflict(vec![cerr(
            &file,
            format!("systems.{name}"),
            format!(
                "system {name:?} already exists (change it with `systems edit`): {}",
                e.summary()
            ),
        )])),
        r => r,
    }
}

/// Whether `systems.toml` text (valid or not) defines system `name`.
fn system_exists(text: &str, name: &str) -> bool {
    match text.parse::<toml_edit::DocumentMut>() {
        Ok(d) => d
            .get("systems")
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(name)),
        Err(_) => false,
    }
}

/// Change a system in place; everything not named in `ch` stays byte-identical.
pub fn edit_system(
    settings: &Settings,
    name: &str,
    ch: &SystemChange,
) -> Result<Outcome, AdminError> {
    if let Some(n) = &ch.name {
        if n != name {
            return Err(AdminError::Usage(format!(
                "renaming is not supported ({name:?} -> {n:?}): add the new name, then remove the old one"
            )));
        }
    }
    edit_systems(settings, |doc, file, _| {
        let systems = systems_table(doc)?;
        let Some(entry) = systems.get_mut(name) else {
            return Err(AdminError::NotFound(format!(
                "no system {name:?} in {file}"
            )));
        };
        apply_system(entry, name, ch, false, file)
    })
}

/// Remove a system's entry (and the comment directly above it).
pub fn remove_system(settings: &Settings, name: &str) -> Result<Outcome, AdminError> {
    edit_systems(settings, |doc, file, _| {
        let systems = systems_table(doc)?;
        match systems.get(name) {
            None => Err(AdminError::NotFound(format!(
                "no system {name:?} in {file}"
            ))),
            Some(Item::Table(_)) => {
                remove_table(doc, &["systems", name]);
                Ok(())
            }
            Some(_) => {
                systems.remove(name);
                Ok(())
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Profiles

fn profile_path(settings: &Settings, name: &str) -> PathBuf {
    settings.profiles_dir.join(format!("{name}.toml"))
}

const PROFILE_KEYS: &[&str] = &[
    "parent",
    "abstract",
    "description",
    "kernel",
    "initrd",
    "kernel_args",
    "installer",
    "template",
    "user_data",
    "meta_data",
    "vendor_data",
    "ipxe_template",
    "wait_ports",
    "on_interrupted_stage",
    "timeouts",
    "stages",
    "vars",
];

fn apply_profile(
    doc: &mut DocumentMut,
    ch: &ProfileChange,
    file: &str,
    creating: bool,
) -> Result<(), AdminError> {
    for u in &ch.unset {
        if !PROFILE_KEYS.contains(&u.as_str()) {
            return Err(AdminError::Usage(format!(
                "cannot unset {u:?}: one of {}",
                PROFILE_KEYS.join(", ")
            )));
        }
    }
    let strs: [(&str, &Option<String>); 11] = [
        ("parent", &ch.parent),
        ("description", &ch.description),
        ("kernel", &ch.kernel),
        ("kernel_args", &ch.kernel_args),
        ("installer", &ch.installer),
        ("template", &ch.template),
        ("user_data", &ch.user_data),
        ("meta_data", &ch.meta_data),
        ("vendor_data", &ch.vendor_data),
        ("ipxe_template", &ch.ipxe_template),
        ("on_interrupted_stage", &ch.on_interrupted_stage),
    ];
    let root: &mut dyn TableLike = doc.as_table_mut();
    // Keys in the documented order (matters for new files; edits keep their place).
    for key in PROFILE_KEYS {
        match *key {
            "abstract" => {
                if let Some(a) = ch.r#abstract {
                    set_value(root, "abstract", a.into());
                }
            }
            "initrd" => {
                if let Some(v) = &ch.initrd {
                    set_value(root, "initrd", str_array(v));
                }
            }
            "wait_ports" => {
                if let Some(v) = &ch.wait_ports {
                    let mut a = toml_edit::Array::new();
                    for p in v {
                        a.push(i64::from(*p));
                    }
                    set_value(root, "wait_ports", Value::Array(a));
                }
            }
            k => {
                if let Some((_, Some(v))) = strs.iter().find(|(n, _)| *n == k) {
                    set_value(root, k, v.as_str().into());
                }
            }
        }
    }
    for u in &ch.unset {
        root.remove(u);
    }
    let item = doc.as_item_mut();
    if !ch.timeouts.is_empty() {
        let t = sub_table(item, "timeouts", "\n")
            .map_err(|e| AdminError::Refused(vec![cerr(file, "timeouts", e)]))?;
        for (k, v) in &ch.timeouts {
            set_value(t, k, v.as_str().into());
        }
    }
    let (set_vars, null_vars): (Vec<_>, Vec<_>) = ch.vars.iter().partition(|(_, v)| !v.is_null());
    if !set_vars.is_empty() {
        let t = sub_table(item, "vars", "\n")
            .map_err(|e| AdminError::Refused(vec![cerr(file, "vars", e)]))?;
        for (k, v) in set_vars {
            let v = json_to_toml(v)
                .map_err(|e| AdminError::Refused(vec![cerr(file, format!("vars.{k}"), e)]))?;
            set_value(t, k, v);
        }
    }
    let unset_vars: Vec<&String> = ch
        .unset_vars
        .iter()
        .chain(null_vars.iter().map(|(k, _)| *k))
        .collect();
    if !unset_vars.is_empty() {
        let root = doc.as_table_mut();
        let mut now_empty = false;
        match root.get_mut("vars").and_then(Item::as_table_like_mut) {
            Some(vt) => {
                for k in &unset_vars {
                    if vt.remove(k).is_none() && !creating {
                        return Err(AdminError::Refused(vec![cerr(
                            file,
                            "vars",
                            format!("no variable {k:?}"),
                        )]));
                    }
                }
                now_empty = vt.is_empty();
            }
            None if !creating => {
                return Err(AdminError::Refused(vec![cerr(
                    file,
                    "vars",
                    "no variables",
                )]))
            }
            None => {}
        }
        if now_empty {
            root.remove("vars");
        }
    }
    Ok(())
}

/// Add `profiles/NAME.toml`.
pub fn add_profile(
    settings: &Settings,
    name: &str,
    ch: &ProfileChange,
) -> Result<Outcome, AdminError> {
    check_name("profile", name)?;
    let _lock = lock(&settings.config_dir)?;
    let path = profile_path(settings, name);
    let file = config::show(&settings.config_dir, &path);
    if path.exists() {
        return Err(AdminError::Conflict(vec![cerr(
            &file,
            "",
            format!("profile {name:?} already exists (change it with `profiles edit`)"),
        )]));
    }
    if !settings.profiles_dir.is_dir() {
        std::fs::create_dir_all(&settings.profiles_dir)
            .map_err(|e| io_err("cannot create", &settings.profiles_dir, e))?;
    }
    let mut doc = DocumentMut::new();
    apply_profile(&mut doc, ch, &file, true)?;
    let mut new = doc.to_string();
    if !new.ends_with('\n') {
        new.push('\n');
    }
    commit(
        settings,
        None,
        BTreeMap::from([(name.to_string(), (None, Some(new)))]),
    )
}

/// Change `profiles/NAME.toml` in place.
pub fn edit_profile(
    settings: &Settings,
    name: &str,
    ch: &ProfileChange,
) -> Result<Outcome, AdminError> {
    if let Some(n) = &ch.name {
        if n != name {
            return Err(AdminError::Usage(format!(
                "renaming is not supported ({name:?} -> {n:?})"
            )));
        }
    }
    check_name("profile", name)?;
    let _lock = lock(&settings.config_dir)?;
    let path = profile_path(settings, name);
    let file = config::show(&settings.config_dir, &path);
    if !path.is_file() {
        return Err(AdminError::NotFound(format!(
            "no profile {name:?} ({file})"
        )));
    }
    let (old, mut doc) = read_doc(settings, &path)?;
    apply_profile(&mut doc, ch, &file, false)?;
    let new = doc.to_string();
    commit(
        settings,
        None,
        BTreeMap::from([(name.to_string(), (Some(old), Some(new)))]),
    )
}

/// Remove `profiles/NAME.toml`: refused while a system or a child profile uses it.
pub fn remove_profile(settings: &Settings, name: &str) -> Result<Outcome, AdminError> {
    check_name("profile", name)?;
    let _lock = lock(&settings.config_dir)?;
    let path = profile_path(settings, name);
    let file = config::show(&settings.config_dir, &path);
    if !path.is_file() {
        return Err(AdminError::NotFound(format!(
            "no profile {name:?} ({file})"
        )));
    }
    let old = std::fs::read_to_string(&path).map_err(|e| io_err("cannot read", &path, e))?;
    let users = profile_users(settings, name);
    if !users.is_empty() {
        return Err(AdminError::Conflict(users));
    }
    commit(
        settings,
        None,
        BTreeMap::from([(name.to_string(), (Some(old), None))]),
    )
}

/// Who uses profile `name`: systems (`profile = name`) and child profiles (`parent = name`).
pub fn profile_users(settings: &Settings, name: &str) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let sys_file = shown_systems(settings);
    if let Ok(text) = std::fs::read_to_string(&settings.systems_file) {
        if let Ok(w) = toml::from_str::<wire::SystemsFile>(&text) {
            for (sname, s) in &w.systems {
                if s.profile == name {
                    out.push(cerr(
                        &sys_file,
                        format!("systems.{sname}.profile"),
                        format!("system {sname:?} uses profile {name:?}"),
                    ));
                }
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(&settings.profiles_dir) {
        let mut children = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if let Ok(text) = std::fs::read_to_string(&p) {
                if let Ok(w) = toml::from_str::<wire::ProfileWire>(&text) {
                    if w.parent.as_deref() == Some(name) {
                        children.push((stem.to_string(), config::show(&settings.config_dir, &p)));
                    }
                }
            }
        }
        children.sort();
        for (child, f) in children {
            out.push(cerr(
                &f,
                "parent",
                format!("profile {child:?} inherits from profile {name:?}"),
            ));
        }
    }
    out
}

/// Load the inventory for reading (`list`, `show`): every structural check,
/// templates not rendered (that is `rackboot check`'s job).
pub fn load_for_reading(settings: &Settings) -> Result<Inventory, config::ConfigErrors> {
    config::load_inventory_unrendered(settings, None, &BTreeMap::new())
}

/// The daemon's reload: every structural check, and every template rendered
/// for every system except those the render cache vouches for (their
/// rendering inputs are byte-for-byte those of a render that succeeded, see
/// [`RenderCache`]). After a `systems add` into 5,000 systems that is one
/// render instead of 5,000. Records the result for the editors' caches.
pub fn load_for_serving(settings: &Settings) -> Result<Inventory, config::ConfigErrors> {
    // Under the edit lock when it can be had (a read-only config dir has
    // no editors to wait for; the caches are then not written either).
    let _lock = lock(&settings.config_dir).ok();
    let cache = RenderCache::load(&settings.config_dir);
    let fp = validated::Fingerprint::of(settings, None, &BTreeMap::new());
    let checked = validate(settings, None, &BTreeMap::new(), &cache, fp.templates)
        .map_err(config::ConfigErrors)?;
    record(settings, &cache, &fp, &checked);
    Ok(checked.inventory)
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
