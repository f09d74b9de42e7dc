//! `profiles/*.toml`: parsing, inheritance (root-first merge, `origin`), validation.

use super::*;
/// The profiles of a load: those that resolved, and those whose file is there
/// but invalid (their errors are reported once, at the profile; a system
/// using one points there instead of calling it unknown).
pub(crate) struct Profiles {
    pub resolved: BTreeMap<String, Profile>,
    /// Name -> the profile file (as shown in errors).
    pub broken: BTreeMap<String, String>,
}

/// The resolved profiles (every *.toml in the profiles dir, overlaid with
/// in-memory edits) and the templates, with their errors in `out`.
pub(crate) fn load_profiles(
    settings: &Settings,
    profile_texts: &BTreeMap<String, Option<String>>,
    out: &mut Vec<ConfigError>,
) -> (Profiles, crate::render::Templates) {
    let dir = &settings.config_dir;
    let mut raw_profiles: BTreeMap<String, (String, wire::ProfileWire)> = BTreeMap::new();
    let pdir = &settings.profiles_dir;
    let mut names: Vec<String> = Vec::new();
    let mut broken = BTreeMap::new();
    match std::fs::read_dir(pdir) {
        Ok(rd) => {
            for ent in rd.flatten() {
                let p = ent.path();
                if p.extension().and_then(|x| x.to_str()) == Some("toml") {
                    if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                        names.push(stem.to_string());
                    }
                }
            }
        }
        Err(e) => out.push(ConfigError {
            file: show(dir, pdir),
            key: String::new(),
            reason: format!("cannot read profiles dir: {e}"),
        }),
    }
    for k in profile_texts.keys() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names.sort();
    for name in names {
        let path = pdir.join(format!("{name}.toml"));
        let shown = show(dir, &path);
        let parsed = match profile_texts.get(&name) {
            Some(None) => continue,
            Some(Some(text)) => parse_toml::<wire::ProfileWire>(text, &shown, out),
            None => read_toml::<wire::ProfileWire>(&path, &shown, false, out),
        };
        match parsed {
            Some(p) => {
                raw_profiles.insert(name, (shown, p));
            }
            None => {
                broken.insert(name, shown);
            }
        }
    }

    let templates = super::templates::load(&settings.templates_dir, dir, out);
    let resolved = resolve_profiles(&raw_profiles, settings, &templates, out);
    for (name, (file, _)) in &raw_profiles {
        if !resolved.contains_key(name) {
            broken.insert(name.clone(), file.clone());
        }
    }
    (Profiles { resolved, broken }, templates)
}

pub(super) fn resolve_profiles(
    raw: &BTreeMap<String, (String, wire::ProfileWire)>,
    settings: &Settings,
    templates: &crate::render::Templates,
    out: &mut Vec<ConfigError>,
) -> BTreeMap<String, Profile> {
    let mut resolved = BTreeMap::new();
    for (name, (file, _)) in raw {
        // Walk the parent chain, detecting cycles and unknown parents.
        let mut chain: Vec<&str> = vec![name.as_str()];
        let mut cur = name.as_str();
        let mut broken = false;
        while let Some(parent) = raw.get(cur).and_then(|(_, p)| p.parent.as_deref()) {
            if !raw.contains_key(parent) {
                let (pf, _) = &raw[cur];
                if cur == name {
                    out.push(ConfigError {
                        file: pf.clone(),
                        key: "parent".into(),
                        reason: format!("unknown parent profile {parent:?}"),
                    });
                }
                broken = true;
                break;
            }
            if chain.contains(&parent) {
                let mut cyc: Vec<&str> = chain.clone();
                cyc.push(parent);
                out.push(ConfigError {
                    file: file.clone(),
                    key: "parent".into(),
                    reason: format!("inheritance cycle: {}", cyc.join(" -> ")),
                });
                broken = true;
                break;
            }
            chain.push(parent);
            cur = parent;
        }
        if broken {
            continue;
        }
        // Merge from the root down: child values override, vars merge key by key.
        let mut merged = wire::ProfileWire::default();
        let mut origin: BTreeMap<&'static str, String> = BTreeMap::new();
        let mut vars: BTreeMap<String, toml::Value> = BTreeMap::new();
        for pname in chain.iter().rev() {
            let p = &raw[*pname].1;
            for f in fields::PROFILE {
                if f.inherit == fields::Inherit::Override && (f.copy)(&mut merged, p) {
                    origin.insert(f.key, pname.to_string());
                }
            }
            if let Some(v) = &p.vars {
                for (k, val) in v {
                    vars.insert(k.clone(), val.clone());
                }
                origin.insert("vars", pname.to_string());
            }
        }
        let own = &raw[name].1;
        let mut e = Errs {
            out,
            file: file.clone(),
        };
        if let Some(p) = validate_profile(
            name,
            own,
            Merged {
                fields: merged,
                vars,
                origin,
            },
            settings,
            templates,
            &mut e,
        ) {
            resolved.insert(name.clone(), p);
        }
    }
    resolved
}

/// A profile merged with its parent chain (root first, the child winning).
pub(super) struct Merged {
    pub fields: wire::ProfileWire,
    /// `vars` merged key by key.
    pub vars: BTreeMap<String, toml::Value>,
    /// Which profile each field came from.
    pub origin: BTreeMap<&'static str, String>,
}

pub(super) fn validate_profile(
    name: &str,
    own: &wire::ProfileWire,
    merged: Merged,
    settings: &Settings,
    templates: &crate::render::Templates,
    e: &mut Errs<'_>,
) -> Option<Profile> {
    let Merged {
        fields: m,
        vars,
        origin,
    } = merged;
    let is_abstract = own.r#abstract.unwrap_or(false);
    let before = e.out.len();
    let installer = match m.installer.as_deref() {
        None => None,
        Some(s) => match Installer::parse(s) {
            Some(i) => Some(i),
            None => {
                e.push(
                    "installer",
                    format!(
                        "unknown installer {s:?}: expected kickstart, preseed, autoinstall, cloud-init or script"
                    ),
                );
                None
            }
        },
    };
    let boot_dir = &settings.boot_dir;
    let check_boot_file = |e: &mut Errs<'_>, key: &str, f: &str| {
        if f.contains("..") || f.starts_with('/') {
            e.push(key, format!("{f:?} must be a path inside the boot dir"));
        } else if !boot_dir.join(f).is_file() {
            e.push(
                key,
                format!(
                    "boot file {f:?} not found in {}",
                    show(&settings.config_dir, boot_dir)
                ),
            );
        }
    };
    if let Some(k) = &m.kernel {
        check_boot_file(e, "kernel", k);
    }
    for (i, f) in m.initrd.iter().flatten().enumerate() {
        check_boot_file(e, &format!("initrd[{i}]"), f);
    }
    for (key, t) in [
        ("template", &m.template),
        ("user_data", &m.user_data),
        ("meta_data", &m.meta_data),
        ("vendor_data", &m.vendor_data),
        ("ipxe_template", &m.ipxe_template),
    ] {
        if let Some(t) = t {
            if !templates.has(t) {
                e.push(
                    key,
                    format!("template {t:?} not found in the templates dir"),
                );
            }
        }
    }
    let mut timeouts = Timeouts::default();
    for (k, v) in m.timeouts.iter().flatten() {
        match parse_duration(v) {
            Ok(d) => {
                if !timeouts.set(k, d) {
                    e.push(
                        format!("timeouts.{k}"),
                        format!(
                            "unknown phase {k:?}: expected one of {}",
                            Timeouts::NAMES.join(", ")
                        ),
                    );
                }
            }
            Err(r) => e.push(format!("timeouts.{k}"), r),
        }
    }
    let mut stages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in m.stages.iter().flatten().enumerate() {
        let key = format!("stages[{i}]");
        if !seen.insert(s.name.clone()) {
            e.push(
                format!("{key}.name"),
                format!("duplicate stage name {:?}", s.name),
            );
        }
        let kind = match s.kind.as_str() {
            "config" => StageKind::Config,
            "test" => StageKind::Test,
            k => {
                e.push(
                    format!("{key}.kind"),
                    format!("{k:?}: expected config or test"),
                );
                StageKind::Config
            }
        };
        let timeout = match s.timeout.as_deref().map(parse_duration) {
            None => Duration::from_secs(1800),
            Some(Ok(d)) => d,
            Some(Err(r)) => {
                e.push(format!("{key}.timeout"), r);
                Duration::from_secs(1800)
            }
        };
        let keep_going = match s.on_failure.as_deref().unwrap_or("stop") {
            "stop" => false,
            "continue" => true,
            o => {
                e.push(
                    format!("{key}.on_failure"),
                    format!("{o:?}: expected stop or continue"),
                );
                false
            }
        };
        let before = match s.when.as_deref().unwrap_or("after") {
            "after" => false,
            "before" => true,
            o => {
                e.push(
                    format!("{key}.when"),
                    format!("{o:?}: expected before or after"),
                );
                false
            }
        };
        if s.command.trim().is_empty() {
            e.push(format!("{key}.command"), "empty command");
        } else if let Err(err) = templates.check_inline(&s.command) {
            e.push(format!("{key}.command"), err);
        }
        stages.push(Stage {
            name: s.name.clone(),
            kind,
            command: s.command.clone(),
            timeout,
            keep_going,
            before,
        });
    }
    // "before" stages run first (in file order), then the others: a run's
    // stage indices follow this order.
    stages.sort_by_key(|s| !s.before);
    let netboot_after = match m.after_install.as_deref().unwrap_or("local") {
        "local" => false,
        "netboot" => true,
        o => {
            e.push("after_install", format!("{o:?}: expected local or netboot"));
            false
        }
    };
    let loader = match m.loader.as_deref() {
        None => BootLoader::Ipxe,
        Some(l) => BootLoader::parse(l).unwrap_or_else(|| {
            e.push("loader", format!("{l:?}: expected ipxe or grub"));
            BootLoader::Ipxe
        }),
    };
    let boot_retries = m.boot_retries.unwrap_or(2);
    if boot_retries > 10 {
        e.push("boot_retries", format!("{boot_retries}: at most 10"));
    }
    let rerun_interrupted = match m.on_interrupted_stage.as_deref().unwrap_or("rerun") {
        "rerun" => true,
        "fail" => false,
        o => {
            e.push(
                "on_interrupted_stage",
                format!("{o:?}: expected rerun or fail"),
            );
            true
        }
    };
    if let Some(ka) = &m.kernel_args {
        if let Err(err) = templates.check_inline(ka) {
            e.push("kernel_args", err);
        }
    }
    if !is_abstract {
        if m.kernel.is_none() {
            e.push("kernel", "missing (set it here or in a parent profile)");
        }
        match installer {
            None if m.installer.is_none() => e.push("installer", "missing"),
            Some(Installer::CloudInit) | Some(Installer::Autoinstall) if m.user_data.is_none() => e
                .push(
                    "user_data",
                    "a cloud-init/autoinstall profile needs user_data",
                ),
            Some(Installer::Kickstart) | Some(Installer::Preseed) | Some(Installer::Script)
                if m.template.is_none() =>
            {
                e.push("template", "missing installer template")
            }
            _ => {}
        }
    }
    if e.out.len() > before {
        return None;
    }
    Some(Profile {
        name: name.to_string(),
        description: m.description.unwrap_or_default(),
        parent: own.parent.clone(),
        is_abstract,
        kernel: m.kernel.unwrap_or_default(),
        initrd: m.initrd.unwrap_or_default(),
        kernel_args: m.kernel_args.unwrap_or_default(),
        installer: installer.unwrap_or(Installer::Script),
        template: m.template,
        user_data: m.user_data,
        meta_data: m.meta_data,
        vendor_data: m.vendor_data,
        ipxe_template: m.ipxe_template,
        loader,
        wait_ports: m.wait_ports.unwrap_or_else(|| vec![22]),
        reboots: m.reboots.unwrap_or(true),
        boot_retries: boot_retries.min(10),
        netboot_after,
        timeouts,
        stages,
        rerun_interrupted,
        vars,
        origin,
    })
}
