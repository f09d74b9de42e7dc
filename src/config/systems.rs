//! `systems.toml`: each system validated against the ones before it and its profile.

use super::*;
/// What must be unique across systems: the keys every system is checked
/// against. Built while validating a whole file, or from a validated
/// inventory (the admin editor's fast path for `systems add`).
#[derive(Debug, Default)]
pub(crate) struct SystemIndex {
    pub names: HashSet<String>,
    pub by_mac: HashMap<Mac, String>,
    pub by_ip: HashMap<Ipv4Addr, String>,
    /// Lower-cased hostnames.
    pub by_host: HashMap<String, String>,
}

impl SystemIndex {
    /// Record a valid system's keys (first holder wins, as in validation).
    pub fn insert(&mut self, s: &System) {
        self.names.insert(s.name.clone());
        self.by_host
            .entry(s.hostname.to_ascii_lowercase())
            .or_insert_with(|| s.name.clone());
        self.by_ip.entry(s.ip).or_insert_with(|| s.name.clone());
        for m in &s.macs {
            self.by_mac.entry(*m).or_insert_with(|| s.name.clone());
        }
    }
}

pub(super) fn validate_systems(
    w: &wire::SystemsFile,
    file: &str,
    profiles: &Profiles,
    settings: &Settings,
    out: &mut Vec<ConfigError>,
) -> Vec<System> {
    let mut e = Errs {
        out,
        file: file.to_string(),
    };
    let mut index = SystemIndex::default();
    w.systems
        .iter()
        .filter_map(|(name, s)| validate_system(name, s, &mut index, profiles, settings, &mut e))
        .collect()
}

/// Validate one system of systems.toml against the systems before it
/// (`index`, which it joins); `None` (and errors pushed) when it is invalid.
pub(crate) fn validate_system(
    name: &str,
    s: &wire::SystemWire,
    index: &mut SystemIndex,
    profiles: &Profiles,
    settings: &Settings,
    e: &mut Errs<'_>,
) -> Option<System> {
    let SystemIndex {
        names,
        by_mac,
        by_ip,
        by_host,
    } = index;
    names.insert(name.to_string());
    let key = |k: &str| format!("systems.{name}.{k}");
    let before = e.out.len();
    if !valid_name(name) {
        e.push(
            format!("systems.{name}"),
            "system names use letters, digits, '-', '_' and '.' only",
        );
    }
    let hostname = s.hostname.clone().unwrap_or_else(|| name.to_string());
    if !valid_hostname(&hostname) {
        e.push(
            key("hostname"),
            format!("{hostname:?} is not a valid hostname"),
        );
    } else if let Some(other) = by_host.insert(hostname.to_ascii_lowercase(), name.to_string()) {
        e.push(
            key("hostname"),
            format!("duplicate hostname {hostname:?}: also used by system {other:?}"),
        );
    }
    let mut macs = Vec::new();
    if s.macs.is_empty() {
        e.push(key("macs"), "at least one MAC address is needed");
    }
    for (i, m) in s.macs.iter().enumerate() {
        match m.parse::<Mac>() {
            Ok(mac) => {
                if let Some(other) = by_mac.insert(mac, name.to_string()) {
                    e.push(
                        format!("systems.{name}.macs[{i}]"),
                        format!("duplicate MAC {mac}: also used by system {other:?}"),
                    );
                }
                macs.push(mac);
            }
            Err(err) => e.push(format!("systems.{name}.macs[{i}]"), err.to_string()),
        }
    }
    let ip = parse_ip(&s.ip, e, &key("ip"));
    if let Some(ip) = ip {
        if let Some(other) = by_ip.insert(ip, name.to_string()) {
            e.push(
                key("ip"),
                format!("duplicate IP {ip}: also used by system {other:?}"),
            );
        }
    }
    let netmask = s
        .netmask
        .as_deref()
        .and_then(|m| parse_ip(m, e, &key("netmask")))
        .unwrap_or(settings.dhcp.subnet_mask);
    let gateway = s
        .gateway
        .as_deref()
        .and_then(|g| parse_ip(g, e, &key("gateway")))
        .or(settings.dhcp.router);
    let mut dns: Vec<Ipv4Addr> = s
        .dns
        .iter()
        .enumerate()
        .filter_map(|(i, d)| parse_ip(d, e, &format!("systems.{name}.dns[{i}]")))
        .collect();
    if s.dns.is_empty() {
        dns = settings.dhcp.dns.clone();
    }
    match profiles.resolved.get(&s.profile) {
        None => match profiles.broken.get(&s.profile) {
            Some(file) => e.push(
                key("profile"),
                format!(
                    "profile {:?} is invalid (its errors are reported for {file})",
                    s.profile
                ),
            ),
            None => e.push(key("profile"), format!("unknown profile {:?}", s.profile)),
        },
        Some(p) if p.is_abstract => e.push(
            key("profile"),
            format!("profile {:?} is abstract (only for inheriting)", s.profile),
        ),
        Some(_) => {}
    }
    let loader = s.loader.as_deref().and_then(|l| {
        let parsed = crate::inventory::BootLoader::parse(l);
        if parsed.is_none() {
            e.push(key("loader"), format!("{l:?}: expected ipxe or grub"));
        }
        parsed
    });
    let bmc = s
        .bmc
        .as_ref()
        .and_then(|b| validate_bmc(name, b, settings, e));
    if e.out.len() > before {
        return None;
    }
    Some(System {
        name: name.to_string(),
        hostname,
        macs,
        ip: ip.expect("checked"),
        netmask,
        gateway,
        dns,
        domain: s.domain.clone().or_else(|| settings.dhcp.domain.clone()),
        profile: s.profile.clone(),
        loader,
        bmc,
        vars: s.vars.clone(),
    })
}

pub(super) fn validate_bmc(
    name: &str,
    b: &wire::BmcWire,
    settings: &Settings,
    e: &mut Errs<'_>,
) -> Option<Bmc> {
    let key = |k: &str| format!("systems.{name}.bmc.{k}");
    let kind = match b.kind.as_str() {
        "ipmi" => BmcKind::Ipmi,
        "redfish" => BmcKind::Redfish,
        k => {
            e.push(key("kind"), format!("{k:?}: expected ipmi or redfish"));
            return None;
        }
    };
    if b.password.is_some() {
        e.push(
            key("password"),
            "inline passwords are not accepted: use password_file or password_env",
        );
        return None;
    }
    let password = match (&b.password_file, &b.password_env) {
        (Some(f), None) => {
            let path = rel(&settings.config_dir, f);
            // Read at use, but refused now when it cannot be: a run must not
            // find out at the BMC. (Its contents are never read here.)
            if let Err(err) = std::fs::File::open(&path) {
                e.push(
                    key("password_file"),
                    format!("cannot read {}: {err}", path.display()),
                );
                return None;
            }
            SecretRef::File(path)
        }
        (None, Some(v)) => SecretRef::Env(v.clone()),
        (None, None) => {
            e.push(key("password_file"), "set password_file or password_env");
            return None;
        }
        (Some(_), Some(_)) => {
            e.push(
                key("password_env"),
                "set only one of password_file and password_env",
            );
            return None;
        }
    };
    if b.address.trim().is_empty() {
        e.push(key("address"), "empty address");
        return None;
    }
    let cipher_suites = b.cipher_suites.clone().unwrap_or_else(|| vec![17, 3]);
    for c in &cipher_suites {
        if ![3u8, 17].contains(c) {
            e.push(
                key("cipher_suites"),
                format!("suite {c} unsupported: use 3 and/or 17"),
            );
        }
    }
    Some(Bmc {
        kind,
        address: b.address.clone(),
        username: b.username.clone(),
        password,
        cipher_suites,
        insecure_tls: b.insecure_tls.unwrap_or(false),
        system_id: b.system_id.clone(),
    })
}
