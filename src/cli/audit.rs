//! `rackboot audit`: the audit trail, newest first (who changed what, via
//! the API, the CLI, the UI or a signal), with the fields each edit changed.

use super::output::{api_failure, client_error, pretty, print_table};
use crate::api::{AuditEntry, AuditPage};
use crate::client::Client;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only entries about this system, profile or run.
    #[arg(long)]
    pub target: Option<String>,
    /// At most this many entries (1..=1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Entries older than this id (paging).
    #[arg(long)]
    pub before: Option<i64>,
    /// JSON for scripts (the API's `AuditPage`).
    #[arg(long)]
    pub json: bool,
}

pub fn audit(dir: &Path, api: Option<&str>, a: AuditArgs) -> ExitCode {
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let mut q = vec![format!("limit={}", a.limit.clamp(1, 1000))];
    if let Some(b) = a.before {
        q.push(format!("before={b}"));
    }
    if let Some(t) = &a.target {
        q.push(format!("target={}", crate::http::guard::pct(t)));
    }
    let page: AuditPage = match c.get_json(&format!("/api/v1/audit?{}", q.join("&"))) {
        Ok(p) => p,
        Err(e) => return api_failure(e),
    };
    if a.json {
        println!("{}", pretty(&page));
    } else {
        let mut rows = vec![[
            "ID", "WHEN", "WHO", "VIA", "FROM", "ACTION", "TARGET", "STATUS",
        ]
        .map(String::from)
        .to_vec()];
        for e in &page.entries {
            rows.push(row(e));
        }
        print_table(&rows);
        for e in &page.entries {
            for line in changed(e) {
                println!("{line}");
            }
        }
    }
    ExitCode::SUCCESS
}

fn row(e: &AuditEntry) -> Vec<String> {
    vec![
        e.id.to_string(),
        crate::ui::fmt_time(e.at),
        e.actor.clone(),
        e.via.clone(),
        e.remote.clone(),
        e.action.clone(),
        e.target.clone(),
        e.status.to_string(),
    ]
}

/// `#ID system node7: ip "10.0.0.7" → "10.0.0.8"` per changed field.
pub fn changed(e: &AuditEntry) -> Vec<String> {
    let mut out = Vec::new();
    let Some(cs) = e.detail.get("changes").and_then(|c| c.as_array()) else {
        return out;
    };
    for c in cs {
        let (kind, name) = (
            c["kind"].as_str().unwrap_or("?"),
            c["name"].as_str().unwrap_or("?"),
        );
        match crate::api::change_fields(c) {
            ("changed", fields) => {
                for (k, b, a) in fields {
                    out.push(format!("#{} {kind} {name}: {k} {b} → {a}", e.id));
                }
            }
            (verb, _) => out.push(format!("#{} {kind} {name}: {verb}", e.id)),
        }
    }
    out
}
