//! `rackboot why SYSTEM`: the last attempt's chain of boot steps, the first
//! one that never happened and its likely cause (the daemon's diagnosis).

use super::output::{api_failure, client_error, pretty, EXIT_FAILED};
use crate::api::feed::Diagnosis;
use crate::client::Client;
use std::path::Path;
use std::process::ExitCode;

/// Exit 0 when every step happened, 1 when one is missing.
pub fn why(dir: &Path, api: Option<&str>, system: &str, json: bool) -> ExitCode {
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let d: Diagnosis = match c.get_json(&format!("/api/v1/systems/{system}/diagnosis")) {
        Ok(d) => d,
        Err(e) => return api_failure(e),
    };
    if json {
        println!("{}", pretty(&d));
    } else {
        print!("{}", render(&d));
    }
    if d.first_missing.is_some() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The diagnosis for a terminal: one line per step, times from the start.
pub fn render(d: &Diagnosis) -> String {
    let mut out = String::new();
    let what = if d.run {
        "last reimage"
    } else {
        "last netboot"
    };
    match (&d.first_missing, d.since) {
        (_, None) => out.push_str(&format!(
            "{}: nothing seen yet (no run, no DHCP answer)\n",
            d.system
        )),
        (None, _) => out.push_str(&format!(
            "{}: every step of the {what} happened\n",
            d.system
        )),
        (Some(m), _) => {
            let label = d
                .chain
                .iter()
                .find(|c| &c.step == m)
                .map(|c| c.label.as_str())
                .unwrap_or(m);
            out.push_str(&format!(
                "{}: the {what} stopped before: {label}\n",
                d.system
            ));
        }
    }
    for c in &d.chain {
        let (mark, t) = match (c.at, d.since) {
            (Some(at), Some(s)) => ("ok", format!("+{:>6.1}s", (at - s) as f64 / 1000.0)),
            _ if d.first_missing.as_ref() == Some(&c.step) => ("--", "missing".to_string()),
            _ => ("  ", String::new()),
        };
        out.push_str(&format!("  {mark} {t:>9}  {}\n", c.label));
    }
    if let Some(cause) = &d.cause {
        out.push_str(&format!("likely cause: {cause}\n"));
    }
    if let Some(e) = &d.ended {
        match &e.reason {
            Some(r) => out.push_str(&format!("run ended: {} ({r})\n", e.state)),
            None => out.push_str(&format!("run ended: {}\n", e.state)),
        }
    }
    if !d.console.is_empty() {
        let run = d.run_id.as_deref().unwrap_or("?");
        out.push_str(&format!(
            "last serial console lines (rackboot runs logs {run} console):\n"
        ));
        for l in &d.console {
            out.push_str(&format!("  | {l}\n"));
        }
    }
    out
}
