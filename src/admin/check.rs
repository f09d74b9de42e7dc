//! Whole-inventory validation of an edit, refusals, and the commit of edited texts.

use super::*;
pub(super) struct Checked {
    inventory: Inventory,
    keys: HashSet<u64>,
    rendered: usize,
}

/// Validate an inventory made of the files on disk overlaid with in-memory
/// texts; `templates` is the templates dir's [`dir_fingerprint`].
pub(super) fn validate(
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
pub(super) fn record(
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
pub(super) fn refusal(
    settings: &Settings,
    errors: Vec<ConfigError>,
    cache: &RenderCache,
) -> AdminError {
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

/// Validate the edited texts, then write them. Called with the lock held.
pub(super) fn commit(
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
