//! CLI commands that drive the daemon through its API: `reimage`, `runs`,
//! `power`, `bootdev`. Exit codes: 0 success; 1 a run failed or a request
//! was refused; 2 usage; 3 `--timeout` reached (the runs are cancelled);
//! 4 no daemon answering.

use crate::client::{Client, ClientError};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TIMEOUT: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;

#[derive(Args, Debug)]
pub struct ReimageArgs {
    /// Systems to reimage (all or none are accepted).
    #[arg(required = true)]
    pub systems: Vec<String>,
    /// Profile to install (default: each system's own).
    #[arg(long)]
    pub profile: Option<String>,
    /// Wait for every run to finish; one line per phase change.
    #[arg(long)]
    pub wait: bool,
    /// Write a JUnit XML report of all runs to FILE (implies --wait).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,
    /// Give up waiting after this long (e.g. 45m): the runs are cancelled, exit 3.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// List runs (newest first).
    List {
        #[arg(long)]
        system: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        active: bool,
        #[arg(long, default_value = "50")]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// A run's timeline, stages and artifacts.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A stage's log (by number or name; default: the last stage).
    Logs {
        id: String,
        stage: Option<String>,
        /// Keep printing while the stage runs.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Wait for runs to finish (exit codes as `reimage --wait`).
    Wait {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
        #[arg(long)]
        timeout: Option<String>,
    },
    Cancel {
        id: String,
    },
    /// Start a new run for the same system and profile.
    Retry {
        id: String,
        #[arg(long)]
        wait: bool,
    },
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

fn client_error(e: ClientError) -> ExitCode {
    match e {
        ClientError::Unreachable { .. } => fail(EXIT_UNREACHABLE, e),
        ClientError::Config(_) => fail(EXIT_USAGE, e),
        ClientError::Protocol(_) => fail(EXIT_FAILED, e),
    }
}

macro_rules! tryc {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return client_error(e),
        }
    };
}

pub fn reimage(dir: &Path, api: Option<&str>, a: ReimageArgs) -> ExitCode {
    let timeout = match a.timeout.as_deref().map(crate::config::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => return fail(EXIT_USAGE, format!("--timeout: {e}")),
    };
    let c = tryc!(Client::from_config(dir, api));
    let body = json!({"systems": a.systems, "profile": a.profile, "requested_by": whoami()});
    let r = tryc!(c.post("/api/v1/runs", &body));
    if !r.ok() {
        return fail(EXIT_FAILED, format!("refused: {}", r.error_message()));
    }
    let runs: Vec<(String, String)> = r.value()["runs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or("").to_string(),
                        r["system"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !a.json {
        for (id, sys) in &runs {
            println!("{sys:<12} {id}  queued");
        }
    }
    if !a.wait && a.junit.is_none() {
        if a.json {
            println!("{}", r.value());
        }
        return ExitCode::SUCCESS;
    }
    wait_runs(&c, &runs, timeout, a.junit.as_deref(), a.json)
}

fn whoami() -> String {
    std::env::var("BUILD_TAG")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".into())
}

/// Poll the runs until all finish; print a line per phase change.
pub fn wait_runs(
    c: &Client,
    runs: &[(String, String)],
    timeout: Option<Duration>,
    junit: Option<&Path>,
    json_out: bool,
) -> ExitCode {
    let t0 = Instant::now();
    let mut last: HashMap<String, String> = HashMap::new();
    let mut done: HashMap<String, Value> = HashMap::new();
    let width = runs.iter().map(|(_, s)| s.len()).max().unwrap_or(8).max(8);
    while done.len() < runs.len() {
        if let Some(t) = timeout {
            if t0.elapsed() > t {
                for (id, sys) in runs {
                    if !done.contains_key(id) {
                        let _ = c.post(&format!("/api/v1/runs/{id}/cancel"), &json!({}));
                        eprintln!("{sys:<width$} {id}  cancelled: --timeout {t:?} reached");
                    }
                }
                return ExitCode::from(EXIT_TIMEOUT);
            }
        }
        for (id, sys) in runs {
            if done.contains_key(id) {
                continue;
            }
            let r = tryc!(c.get(&format!("/api/v1/runs/{id}")));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            let v = r.value();
            let state = v["state"].as_str().unwrap_or("?").to_string();
            if last.get(id) != Some(&state) {
                let detail = v["timeline"]
                    .as_array()
                    .and_then(|t| t.last())
                    .map(|e| e["detail"].as_str().unwrap_or("").to_string())
                    .unwrap_or_default();
                if !json_out {
                    println!(
                        "{sys:<width$} {id}  {state:<10} +{:>6.1}s  {detail}",
                        v["elapsed_s"].as_f64().unwrap_or(0.0)
                    );
                    let _ = std::io::stdout().flush();
                }
                last.insert(id.clone(), state);
            }
            if v["terminal"] == true {
                done.insert(id.clone(), v);
            }
        }
        if done.len() < runs.len() {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let mut all_ok = true;
    let mut suites = String::new();
    for (id, sys) in runs {
        let v = &done[id];
        let ok = v["state"] == "succeeded";
        all_ok &= ok;
        if json_out {
            continue;
        }
        println!(
            "\n{sys} {id}: {}{}",
            v["state"].as_str().unwrap_or("?").to_uppercase(),
            v["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        print_timeline(v);
        if !ok {
            // The failing stage's log, where a stage failed.
            if let Some(st) = v["stages"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["status"] != "passed"))
            {
                if let Ok(r) = c.get(st["log"].as_str().unwrap_or("")) {
                    let text = r.text();
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(40);
                    println!(
                        "  --- log of stage {} (last {} lines) ---",
                        st["name"].as_str().unwrap_or("?"),
                        lines.len() - from
                    );
                    for l in &lines[from..] {
                        println!("  | {l}");
                    }
                }
            }
        }
    }
    if json_out {
        let arr: Vec<&Value> = runs.iter().map(|(id, _)| &done[id]).collect();
        println!("{}", serde_json::to_string_pretty(&arr).unwrap_or_default());
    }
    if let Some(path) = junit {
        for (id, _) in runs {
            if let Ok(r) = c.get(&format!("/api/v1/runs/{id}/junit")) {
                let x = r.text();
                if let (Some(a), Some(b)) = (x.find("<testsuite "), x.rfind("</testsuite>")) {
                    suites.push_str("  ");
                    suites.push_str(&x[a..b + "</testsuite>".len()]);
                    suites.push('\n');
                }
            }
        }
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n{suites}</testsuites>\n"
        );
        if let Err(e) = std::fs::write(path, xml) {
            return fail(EXIT_FAILED, format!("cannot write {}: {e}", path.display()));
        }
        if !json_out {
            println!("\nJUnit report: {}", path.display());
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn print_timeline(v: &Value) {
    for e in v["timeline"].as_array().into_iter().flatten() {
        println!(
            "  +{:>7.1}s  {:<10} {}",
            e["t"].as_f64().unwrap_or(0.0),
            e["state"].as_str().unwrap_or(""),
            e["detail"].as_str().unwrap_or("")
        );
    }
}

pub fn runs(dir: &Path, api: Option<&str>, cmd: RunsCmd) -> ExitCode {
    let c = tryc!(Client::from_config(dir, api));
    match cmd {
        RunsCmd::List {
            system,
            state,
            active,
            limit,
            json,
        } => {
            let mut q = format!("/api/v1/runs?limit={limit}");
            if let Some(s) = system {
                q.push_str(&format!("&system={s}"));
            }
            if let Some(s) = state {
                q.push_str(&format!("&state={s}"));
            }
            if active {
                q.push_str("&active=true");
            }
            let r = tryc!(c.get(&q));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            let v = r.value();
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            let mut rows = vec![vec![
                "RUN".to_string(),
                "SYSTEM".into(),
                "PROFILE".into(),
                "STATE".into(),
                "ELAPSED".into(),
                "REASON".into(),
            ]];
            for r in v.as_array().into_iter().flatten() {
                rows.push(vec![
                    r["id"].as_str().unwrap_or("").into(),
                    r["system"].as_str().unwrap_or("").into(),
                    r["profile"].as_str().unwrap_or("").into(),
                    r["state"].as_str().unwrap_or("").into(),
                    format!("{:.1}s", r["elapsed_s"].as_f64().unwrap_or(0.0)),
                    r["reason"].as_str().unwrap_or("").into(),
                ]);
            }
            crate::cli::print_table(&rows);
            ExitCode::SUCCESS
        }
        RunsCmd::Show { id, json } => {
            let r = tryc!(c.get(&format!("/api/v1/runs/{id}")));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            let v = r.value();
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!(
                "run {} system {} profile {}: {}{}",
                v["id"].as_str().unwrap_or(""),
                v["system"].as_str().unwrap_or(""),
                v["profile"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or(""),
                v["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            print_timeline(&v);
            for s in v["stages"].as_array().into_iter().flatten() {
                println!(
                    "  stage {} {:<12} {:<6} {}",
                    s["seq"],
                    s["name"].as_str().unwrap_or(""),
                    s["kind"].as_str().unwrap_or(""),
                    s["status"].as_str().unwrap_or("")
                );
            }
            for a in v["artifacts"].as_array().into_iter().flatten() {
                println!(
                    "  artifact {} ({} bytes)",
                    a["path"].as_str().unwrap_or(""),
                    a["size"]
                );
            }
            ExitCode::SUCCESS
        }
        RunsCmd::Logs { id, stage, follow } => {
            let r = tryc!(c.get(&format!("/api/v1/runs/{id}")));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            let v = r.value();
            let stages = v["stages"].as_array().cloned().unwrap_or_default();
            let st = match &stage {
                None => stages.last(),
                Some(s) => stages.iter().find(|x| {
                    x["name"].as_str() == Some(s)
                        || x["seq"].as_i64().map(|n| n.to_string()).as_deref() == Some(s.as_str())
                }),
            };
            let Some(st) = st else {
                return fail(
                    EXIT_FAILED,
                    format!("run {id} has no such stage (it has {})", stages.len()),
                );
            };
            let path = format!(
                "{}{}",
                st["log"].as_str().unwrap_or(""),
                if follow { "?follow=1" } else { "" }
            );
            let r = tryc!(c.get(&path));
            print!("{}", r.text());
            ExitCode::SUCCESS
        }
        RunsCmd::Wait {
            ids,
            junit,
            timeout,
        } => {
            let timeout = match timeout.as_deref().map(crate::config::parse_duration) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => return fail(EXIT_USAGE, format!("--timeout: {e}")),
            };
            let mut runs = Vec::new();
            for id in ids {
                let r = tryc!(c.get(&format!("/api/v1/runs/{id}")));
                if !r.ok() {
                    return fail(EXIT_FAILED, r.error_message());
                }
                let sys = r.value()["system"].as_str().unwrap_or("").to_string();
                runs.push((id, sys));
            }
            wait_runs(&c, &runs, timeout, junit.as_deref(), false)
        }
        RunsCmd::Cancel { id } => {
            let r = tryc!(c.post(&format!("/api/v1/runs/{id}/cancel"), &json!({})));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            println!("cancelled {id}");
            ExitCode::SUCCESS
        }
        RunsCmd::Retry { id, wait } => {
            let r = tryc!(c.post(&format!("/api/v1/runs/{id}/retry"), &json!({})));
            if !r.ok() {
                return fail(EXIT_FAILED, r.error_message());
            }
            let v = r.value();
            let runs: Vec<(String, String)> = v["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or("").into(),
                        r["system"].as_str().unwrap_or("").into(),
                    )
                })
                .collect();
            for (nid, sys) in &runs {
                println!("{sys} {nid}  queued (retry of {id})");
            }
            if wait {
                return wait_runs(&c, &runs, None, None, false);
            }
            ExitCode::SUCCESS
        }
    }
}

/// `power SYSTEM... OP` and `bootdev SYSTEM... DEV`: in parallel, one line per system.
pub fn power(dir: &Path, api: Option<&str>, systems: &[String], op: &str) -> ExitCode {
    if op != "status" && crate::power::PowerOp::parse(op).is_none() {
        return fail(
            EXIT_USAGE,
            format!("unknown power operation {op:?}: status|on|off|cycle|reset|soft"),
        );
    }
    let c = tryc!(Client::from_config(dir, api));
    let results = parallel(systems, |s| {
        if op == "status" {
            c.get(&format!("/api/v1/systems/{s}/power"))
        } else {
            c.post(&format!("/api/v1/systems/{s}/power"), &json!({"op": op}))
        }
    });
    report(systems, results, |v| {
        v["power"]
            .as_str()
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("{op}: ok"))
    })
}

pub fn bootdev(
    dir: &Path,
    api: Option<&str>,
    systems: &[String],
    dev: &str,
    persistent: bool,
    uefi: bool,
) -> ExitCode {
    if dev != "pxe" && dev != "disk" && dev != "show" {
        return fail(
            EXIT_USAGE,
            format!("unknown boot device {dev:?}: pxe|disk|show"),
        );
    }
    let c = tryc!(Client::from_config(dir, api));
    let results = parallel(systems, |s| {
        if dev == "show" {
            c.get(&format!("/api/v1/systems/{s}/bootdev"))
        } else {
            c.put(
                &format!("/api/v1/systems/{s}/bootdev"),
                &json!({"device": dev, "persistent": persistent, "uefi": uefi}),
            )
        }
    });
    report(systems, results, |v| {
        format!(
            "boot device {}{}{}",
            v["device"].as_str().unwrap_or("?"),
            if v["persistent"] == true {
                ", persistent"
            } else {
                ", next boot only"
            },
            if v["uefi"] == true { ", UEFI" } else { "" }
        )
    })
}

fn parallel<F>(systems: &[String], f: F) -> Vec<Result<crate::client::Response, ClientError>>
where
    F: Fn(&str) -> Result<crate::client::Response, ClientError> + Sync,
{
    std::thread::scope(|sc| {
        let hs: Vec<_> = systems.iter().map(|s| sc.spawn(|| f(s))).collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ClientError::Protocol("thread panicked".into())))
            })
            .collect()
    })
}

fn report(
    systems: &[String],
    results: Vec<Result<crate::client::Response, ClientError>>,
    ok_line: impl Fn(&Value) -> String,
) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let w = systems.iter().map(|s| s.len()).max().unwrap_or(8);
    for (s, r) in systems.iter().zip(results) {
        match r {
            Ok(r) if r.ok() => println!("{s:<w$}  {}", ok_line(&r.value())),
            Ok(r) => {
                println!("{s:<w$}  FAILED: {}", r.error_message());
                code = ExitCode::from(EXIT_FAILED);
            }
            Err(e) => {
                println!("{s:<w$}  FAILED: {e}");
                code = ExitCode::from(if matches!(e, ClientError::Unreachable { .. }) {
                    EXIT_UNREACHABLE
                } else {
                    EXIT_FAILED
                });
            }
        }
    }
    code
}
