//! `profiles/NAME.toml` edits: add, edit, remove a profile.

use super::*;
use crate::config::fields;

// Profiles

pub(super) fn profile_path(settings: &Settings, name: &str) -> PathBuf {
    settings.profiles_dir.join(format!("{name}.toml"))
}

pub(super) fn apply_profile(
    doc: &mut DocumentMut,
    ch: &ProfileChange,
    file: &str,
    creating: bool,
) -> Result<(), AdminError> {
    for u in &ch.unset {
        if !fields::profile_keys().any(|k| k == u) {
            return Err(AdminError::Usage(format!(
                "cannot unset {u:?}: one of {}",
                fields::profile_keys().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    // The keys to set, as JSON by their file names.
    let given = serde_json::to_value(&ch.set).map_err(|e| AdminError::Usage(e.to_string()))?;
    let root: &mut dyn TableLike = doc.as_table_mut();
    // Keys in the file order of the field table (matters for new files; edits keep their place).
    for f in fields::PROFILE {
        if !matches!(f.edit, fields::Edit::Value { .. }) {
            continue;
        }
        match given.get(f.key) {
            None | Some(serde_json::Value::Null) => {}
            Some(v) => {
                let v =
                    json_to_toml(v).map_err(|e| AdminError::Refused(vec![cerr(file, f.key, e)]))?;
                set_value(root, f.key, v);
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
