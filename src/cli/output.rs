//! What the CLI prints: aligned tables, systems and profiles from the files,
//! pretty JSON, and the exit codes with the one way to fail.

pub use crate::api::convert::vars_origin;
use crate::api::convert::{profile_fields, toml_show};
use crate::inventory::{Inventory, Profile, SecretRef, System};
use std::collections::HashMap;
use std::process::ExitCode;

/// A run failed, or a request or an edit was refused.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// `--timeout` reached (the runs are cancelled).
pub const EXIT_TIMEOUT: u8 = 3;
/// No daemon answering.
pub const EXIT_UNREACHABLE: u8 = 4;

/// `error: MSG` on stderr, exit `code`.
pub fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// A client failure: 4 when no daemon answers, 2 for a bad address or an
/// untrusted certificate, else 1.
pub fn client_error(e: crate::client::ClientError) -> ExitCode {
    use crate::client::ClientError;
    match e {
        ClientError::Unreachable { .. } => fail(EXIT_UNREACHABLE, e),
        ClientError::Config(_) | ClientError::Tls(_) => fail(EXIT_USAGE, e),
        ClientError::Protocol(_) => fail(EXIT_FAILED, e),
    }
}

/// A typed call's failure: a refusal is exit 1 with the daemon's message.
pub fn api_failure(e: crate::client::ApiFailure) -> ExitCode {
    match e {
        crate::client::ApiFailure::Client(e) => client_error(e),
        crate::client::ApiFailure::Refused(r) => fail(EXIT_FAILED, r.error_message()),
    }
}

/// Pretty JSON of one of the `api` types.
pub fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Print rows as aligned columns (first row = header).
pub fn print_table(rows: &[Vec<String>]) {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// NAME PARENT INSTALLER KERNEL TEMPLATE: the first columns of a profiles table.
pub fn profile_row(p: &Profile) -> Vec<String> {
    vec![
        if p.is_abstract {
            format!("{} (abstract)", p.name)
        } else {
            p.name.clone()
        },
        p.parent.clone().unwrap_or_else(|| "-".into()),
        p.installer.as_str().into(),
        if p.kernel.is_empty() {
            "-".into()
        } else {
            p.kernel.clone()
        },
        p.template
            .clone()
            .or_else(|| p.user_data.clone())
            .unwrap_or_else(|| "-".into()),
    ]
}

pub fn print_systems<'a>(systems: impl Iterator<Item = &'a System>) {
    print_systems_with(systems, None)
}

pub fn print_systems_with<'a>(
    systems: impl Iterator<Item = &'a System>,
    power: Option<&HashMap<String, String>>,
) {
    let mut rows = vec![vec![
        "SYSTEM".to_string(),
        "HOSTNAME".into(),
        "MAC".into(),
        "IP".into(),
        "PROFILE".into(),
        "BMC".into(),
    ]];
    if power.is_some() {
        rows[0].push("POWER".into());
    }
    for s in systems {
        let cell = power.map(|p| p.get(&s.name).cloned().unwrap_or_default());
        rows.push(vec![
            s.name.clone(),
            s.hostname.clone(),
            s.macs
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(","),
            s.ip.to_string(),
            s.profile.clone(),
            s.bmc
                .as_ref()
                .map(|b| format!("{} {}", b.kind.as_str(), b.address))
                .unwrap_or_else(|| "-".into()),
        ]);
        if let Some(c) = cell {
            rows.last_mut().expect("pushed").push(c);
        }
    }
    print_table(&rows);
}

/// A system as `key value` rows, with more rows after its own (the facts).
pub fn print_system_with(s: &System, extra: Vec<Vec<String>>) {
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let mut rows = vec![
        vec!["name".to_string(), s.name.clone()],
        vec!["hostname".into(), s.hostname.clone()],
        vec![
            "macs".into(),
            s.macs
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ],
        vec!["ip".into(), s.ip.to_string()],
        vec!["netmask".into(), s.netmask.to_string()],
        vec!["gateway".into(), opt(s.gateway.map(|g| g.to_string()))],
        vec![
            "dns".into(),
            if s.dns.is_empty() {
                "-".into()
            } else {
                s.dns
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ],
        vec!["domain".into(), opt(s.domain.clone())],
        vec!["profile".into(), s.profile.clone()],
        vec![
            "loader".into(),
            opt(s.loader.map(|l| l.as_str().to_string())),
        ],
    ];
    match &s.bmc {
        None => rows.push(vec!["bmc".into(), "-".into()]),
        Some(b) => {
            rows.push(vec!["bmc.kind".into(), b.kind.as_str().into()]);
            rows.push(vec!["bmc.address".into(), b.address.clone()]);
            rows.push(vec!["bmc.username".into(), b.username.clone()]);
            rows.push(vec![
                "bmc.password".into(),
                match &b.password {
                    SecretRef::File(p) => format!("from file {}", p.display()),
                    SecretRef::Env(e) => format!("from environment variable {e}"),
                },
            ]);
        }
    }
    for (k, v) in &s.vars {
        rows.push(vec![format!("vars.{k}"), toml_show(v)]);
    }
    rows.extend(extra);
    print_table(&rows);
}

pub fn print_profiles(inv: &Inventory) {
    let mut rows = vec![vec![
        "PROFILE".to_string(),
        "PARENT".into(),
        "INSTALLER".into(),
        "KERNEL".into(),
        "TEMPLATE".into(),
        "SYSTEMS".into(),
    ]];
    for p in inv.profiles().values() {
        let n = inv.systems().iter().filter(|s| s.profile == p.name).count();
        let mut row = profile_row(p);
        row.push(n.to_string());
        rows.push(row);
    }
    print_table(&rows);
}

pub fn print_profile(inv: &Inventory, p: &Profile) {
    let mut rows = vec![vec!["FIELD".to_string(), "VALUE".into(), "FROM".into()]];
    rows.extend(profile_fields(inv, p).into_iter().map(Vec::from));
    print_table(&rows);
    let users: Vec<&str> = inv
        .systems()
        .iter()
        .filter(|s| s.profile == p.name)
        .map(|s| s.name.as_str())
        .collect();
    let children: Vec<&str> = inv
        .profiles()
        .values()
        .filter(|c| c.parent.as_deref() == Some(p.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "\nused by {} system(s){}{}",
        users.len(),
        if users.is_empty() {
            String::new()
        } else {
            format!(": {}", preview_list(&users))
        },
        if children.is_empty() {
            String::new()
        } else {
            format!("; child profiles: {}", children.join(", "))
        }
    );
}

fn preview_list(v: &[&str]) -> String {
    if v.len() <= 10 {
        v.join(", ")
    } else {
        format!("{}, … ({} more)", v[..10].join(", "), v.len() - 10)
    }
}
