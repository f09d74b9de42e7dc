//! The internal types → the API's types, in one place for the server and
//! the CLI. (The types themselves import nothing from the crate.)

use super::{
    ApiError, Bmc, ErrorBody, FieldError, PasswordSource, Profile, Stage, System, Timeouts,
};
use crate::config::ConfigErrors;
use crate::inventory::{self, SecretRef};
use std::collections::BTreeMap;

fn vars(v: &BTreeMap<String, toml::Value>) -> BTreeMap<String, serde_json::Value> {
    v.iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
}

impl From<&inventory::System> for System {
    /// Without run state (`netboot`) and without where the BMC password is kept.
    fn from(s: &inventory::System) -> System {
        System {
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            macs: s.macs.iter().map(|m| m.to_string()).collect(),
            ip: s.ip.to_string(),
            netmask: s.netmask.to_string(),
            gateway: s.gateway.map(|g| g.to_string()),
            dns: s.dns.iter().map(|d| d.to_string()).collect(),
            domain: s.domain.clone(),
            profile: s.profile.clone(),
            loader: s.loader.map(|l| l.as_str().to_string()),
            // Never the password.
            bmc: s.bmc.as_ref().map(|b| Bmc {
                kind: b.kind.as_str().to_string(),
                address: b.address.clone(),
                username: b.username.clone(),
                password_source: None,
            }),
            vars: vars(&s.vars),
            netboot: None,
        }
    }
}

/// Where a BMC password is kept (never the password).
pub fn password_source(s: &SecretRef) -> PasswordSource {
    match s {
        SecretRef::File(p) => PasswordSource::File(p.display().to_string()),
        SecretRef::Env(e) => PasswordSource::Env(e.clone()),
    }
}

impl From<&inventory::Profile> for Profile {
    fn from(p: &inventory::Profile) -> Profile {
        let t = &p.timeouts;
        Profile {
            name: p.name.clone(),
            description: p.description.clone(),
            parent: p.parent.clone(),
            is_abstract: p.is_abstract,
            kernel: p.kernel.clone(),
            initrd: p.initrd.clone(),
            kernel_args: p.kernel_args.clone(),
            installer: p.installer.as_str().to_string(),
            template: p.template.clone(),
            user_data: p.user_data.clone(),
            meta_data: p.meta_data.clone(),
            vendor_data: p.vendor_data.clone(),
            wait_ports: p.wait_ports.clone(),
            reboots: p.reboots,
            boot_retries: p.boot_retries,
            loader: p.loader.as_str().into(),
            after_install: if p.netboot_after { "netboot" } else { "local" }.into(),
            stages: p
                .stages
                .iter()
                .map(|s| Stage {
                    name: s.name.clone(),
                    kind: s.kind.as_str().to_string(),
                    command: s.command.clone(),
                    timeout_secs: s.timeout.as_secs(),
                    keep_going: s.keep_going,
                    when: if s.before { "before" } else { "after" }.into(),
                })
                .collect(),
            timeouts_secs: Timeouts {
                power: t.power.as_secs(),
                dhcp: t.dhcp.as_secs(),
                kernel: t.kernel.as_secs(),
                config: t.config.as_secs(),
                install: t.install.as_secs(),
                reboot: t.reboot.as_secs(),
                ssh: t.ssh.as_secs(),
            },
            vars: vars(&p.vars),
            origin: p
                .origin
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
}

impl From<&ConfigErrors> for ApiError {
    /// `invalid_config`, with every error.
    fn from(e: &ConfigErrors) -> ApiError {
        ApiError {
            code: "invalid_config".into(),
            message: format!("{} configuration error(s)", e.0.len()),
            errors: Some(
                e.0.iter()
                    .map(|c| FieldError {
                        file: c.file.clone(),
                        key: c.key.clone(),
                        reason: c.reason.clone(),
                        preexisting: None,
                    })
                    .collect(),
            ),
        }
    }
}

impl From<&ConfigErrors> for ErrorBody {
    fn from(e: &ConfigErrors) -> ErrorBody {
        ErrorBody { error: e.into() }
    }
}

/// A TOML value as people write it (strings without quotes).
pub fn toml_show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// For each of a profile's variables, the profile in its chain that set the value.
pub fn vars_origin(inv: &inventory::Inventory, p: &inventory::Profile) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in &p.vars {
        let mut cur = p;
        loop {
            match cur.parent.as_deref().and_then(|n| inv.profile(n)) {
                Some(parent) if parent.vars.get(k) == Some(v) => cur = parent,
                _ => break,
            }
        }
        out.insert(k.clone(), cur.name.clone());
    }
    out
}

/// Each field of a resolved profile: its name, value, and the profile it came
/// from (`(default)`: not set anywhere in the chain), as `profiles show` prints
/// them (and the web UI's profile page).
pub fn profile_fields(inv: &inventory::Inventory, p: &inventory::Profile) -> Vec<[String; 3]> {
    let from = |field: &str| {
        p.origin
            .get(field)
            .cloned()
            .unwrap_or_else(|| "(default)".into())
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut rows = Vec::new();
    let mut row = |f: &str, v: String, src: String| rows.push([f.to_string(), v, src]);
    row("name", p.name.clone(), p.name.clone());
    row(
        "parent",
        p.parent.clone().unwrap_or_else(|| "-".into()),
        p.name.clone(),
    );
    row(
        "abstract",
        p.is_abstract.to_string(),
        if p.is_abstract {
            p.name.clone()
        } else {
            "(default)".into()
        },
    );
    row("description", p.description.clone(), from("description"));
    row("kernel", p.kernel.clone(), from("kernel"));
    row("initrd", p.initrd.join(", "), from("initrd"));
    row("kernel_args", p.kernel_args.clone(), from("kernel_args"));
    row("installer", p.installer.as_str().into(), from("installer"));
    row("template", opt(&p.template), from("template"));
    row("user_data", opt(&p.user_data), from("user_data"));
    row("meta_data", opt(&p.meta_data), from("meta_data"));
    row("vendor_data", opt(&p.vendor_data), from("vendor_data"));
    row(
        "ipxe_template",
        p.ipxe_template
            .clone()
            .unwrap_or_else(|| "(built in)".into()),
        from("ipxe_template"),
    );
    row("loader", p.loader.as_str().into(), from("loader"));
    row(
        "wait_ports",
        p.wait_ports
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        from("wait_ports"),
    );
    row("reboots", p.reboots.to_string(), from("reboots"));
    row(
        "after_install",
        if p.netboot_after { "netboot" } else { "local" }.to_string(),
        from("after_install"),
    );
    row(
        "boot_retries",
        p.boot_retries.to_string(),
        from("boot_retries"),
    );
    let t = &p.timeouts;
    for (name, d) in [
        ("power", t.power),
        ("dhcp", t.dhcp),
        ("kernel", t.kernel),
        ("config", t.config),
        ("install", t.install),
        ("reboot", t.reboot),
        ("ssh", t.ssh),
    ] {
        row(
            &format!("timeouts.{name}"),
            format!("{}s", d.as_secs()),
            from("timeouts"),
        );
    }
    row(
        "stages",
        if p.stages.is_empty() {
            "-".into()
        } else {
            p.stages
                .iter()
                .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        from("stages"),
    );
    row(
        "on_interrupted_stage",
        if p.rerun_interrupted { "rerun" } else { "fail" }.into(),
        from("on_interrupted_stage"),
    );
    let vo = vars_origin(inv, p);
    for (k, v) in &p.vars {
        row(
            &format!("vars.{k}"),
            toml_show(v),
            vo.get(k).cloned().unwrap_or_default(),
        );
    }
    rows
}
