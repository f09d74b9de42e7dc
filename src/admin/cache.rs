//! The render cache: fingerprints of systems whose templates rendered cleanly.

use super::*;

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
    pub(super) ok: HashSet<u64>,
}

pub(super) const CACHE_MAGIC: &str = "rackboot-render-cache 1";

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

    pub(super) fn store(&self, keys: &HashSet<u64>) {
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

pub(super) struct HashWriter<'a>(&'a mut std::collections::hash_map::DefaultHasher);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

pub(super) fn hasher() -> std::collections::hash_map::DefaultHasher {
    std::collections::hash_map::DefaultHasher::new()
}

/// Fingerprint of every file under `dir` (names and contents).
pub(super) fn dir_fingerprint(dir: &Path) -> u64 {
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
pub(super) struct KeyBase<'a> {
    base: u64,
    per_profile: HashMap<&'a str, u64>,
}

impl<'a> KeyBase<'a> {
    pub(super) fn new(inv: &'a Inventory, templates: u64) -> KeyBase<'a> {
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
    pub(super) fn key(&self, s: &crate::inventory::System) -> u64 {
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
pub(super) fn render_keys(inv: &Inventory, templates: u64) -> Vec<u64> {
    let kb = KeyBase::new(inv, templates);
    inv.systems().iter().map(|s| kb.key(s)).collect()
}
