//! `rackboot daemons`: the site's daemons sharing this daemon's database
//! (several on PostgreSQL; one on SQLite): heartbeats, who fenced whom, the
//! unfinished runs each owns.

use super::output::{api_failure, client_error, pretty, print_table};
use crate::api::Daemon;
use crate::client::Client;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DaemonsArgs {
    /// Also the fenced ids (earlier starts, stopped and taken-over daemons).
    #[arg(long)]
    pub all: bool,
    /// JSON for scripts (the API's `[Daemon]`).
    #[arg(long)]
    pub json: bool,
}

pub fn daemons(dir: &Path, api: Option<&str>, a: DaemonsArgs) -> ExitCode {
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let list: Vec<Daemon> = match c.get_json("/api/v1/daemons") {
        Ok(v) => v,
        Err(e) => return api_failure(e),
    };
    let list: Vec<Daemon> = list.into_iter().filter(|d| a.all || !d.fenced).collect();
    if a.json {
        println!("{}", pretty(&list));
        return ExitCode::SUCCESS;
    }
    let now = crate::store::now_ms();
    let mut rows = vec![[
        "ID",
        "NODE",
        "DOMAINS",
        "STARTED",
        "HEARTBEAT",
        "RUNS",
        "FENCED",
    ]
    .map(String::from)
    .to_vec()];
    for d in &list {
        let fenced = match (&d.fenced_at, &d.fenced_by) {
            _ if !d.fenced => "-".to_string(),
            (Some(at), Some(by)) if by == &d.id => format!("stopped {}", crate::ui::fmt_time(*at)),
            (Some(at), Some(by)) => format!("by {by} {}", crate::ui::fmt_time(*at)),
            _ => "yes".to_string(),
        };
        rows.push(vec![
            if d.this {
                format!("{} (this)", d.id)
            } else {
                d.id.clone()
            },
            d.node.clone(),
            d.domains.join(","),
            crate::ui::fmt_time(d.started_at),
            format!("{:.1}s ago", (now - d.heartbeat_at).max(0) as f64 / 1000.0),
            d.runs.to_string(),
            fenced,
        ]);
    }
    print_table(&rows);
    ExitCode::SUCCESS
}
