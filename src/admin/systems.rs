//! `systems.toml` edits: add, edit, remove a system.

use super::*;

// Systems

use crate::config::fields::SYSTEM_UNSETTABLE;

pub(super) fn apply_system(
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
    set_strings(
        t,
        [
            ("domain", &ch.domain),
            ("profile", &ch.profile),
            ("loader", &ch.loader),
        ],
    );
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

pub(super) fn systems_table(doc: &mut DocumentMut) -> Result<&mut Table, AdminError> {
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
pub(super) fn edit_systems(
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
pub(super) fn system_exists(text: &str, name: &str) -> bool {
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
