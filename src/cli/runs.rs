//! `reimage`, `runs …`: runs through the daemon's API. Exit codes: 0
//! success; 1 a run failed or a request was refused; 2 usage; 3 `--timeout`
//! reached (the runs are cancelled); 4 no daemon answering.

use super::output::{
    api_failure, client_error, fail, print_table, EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE,
};
use crate::api;
use crate::client::{ApiFailure, Client};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ReimageArgs {
    /// Systems (all or none are accepted).
    #[arg(required = true)]
    pub systems: Vec<String>,
    /// Profile (default: each system's own; `inspect` for `rackboot inspect`).
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
    /// A stage's log (by number or name; default: the last stage), or
    /// `console`: the machine's serial console captured during the run.
    Logs {
        id: String,
        /// Stage number or name, or `console`.
        stage: Option<String>,
        /// Keep printing while the stage (the run, for `console`) runs.
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

macro_rules! tryc {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return client_error(e),
        }
    };
}

/// A typed call, or return its failure's exit code.
macro_rules! trya {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return api_failure(e),
        }
    };
}

fn parse_timeout(t: Option<&str>) -> Result<Option<Duration>, ExitCode> {
    match t.map(crate::config::parse_duration) {
        None => Ok(None),
        Some(Ok(d)) => Ok(Some(d)),
        Some(Err(e)) => Err(fail(EXIT_USAGE, format!("--timeout: {e}"))),
    }
}

pub fn reimage(dir: &Path, api: Option<&str>, a: ReimageArgs) -> ExitCode {
    start(dir, api, a, None)
}

/// `rackboot inspect`: inspection runs (the `inspect` profile unless
/// `--profile`), waited for like reimages with `--wait`.
pub fn inspect(dir: &Path, api: Option<&str>, a: ReimageArgs) -> ExitCode {
    start(dir, api, a, Some("inspect"))
}

fn start(dir: &Path, api: Option<&str>, a: ReimageArgs, kind: Option<&str>) -> ExitCode {
    let timeout = match parse_timeout(a.timeout.as_deref()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let c = tryc!(Client::from_config(dir, api));
    let req = api::CreateRuns {
        systems: a.systems.clone(),
        profile: a.profile.clone(),
        requested_by: Some(whoami()),
        kind: kind.map(String::from),
    };
    let created: api::RunsCreated = match c.call_json("POST", "/api/v1/runs", &req) {
        Ok(v) => v,
        Err(ApiFailure::Refused(r)) => {
            return fail(EXIT_FAILED, format!("refused: {}", r.error_message()))
        }
        Err(e) => return api_failure(e),
    };
    let runs: Vec<(String, String)> = created
        .runs
        .iter()
        .map(|r| (r.id.clone(), r.system.clone()))
        .collect();
    if !a.json {
        for (id, sys) in &runs {
            println!("{sys:<12} {id}  queued");
        }
    }
    if !a.wait && a.junit.is_none() {
        if a.json {
            println!("{}", serde_json::to_string(&created).unwrap_or_default());
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
    let mut done: HashMap<String, api::RunDetail> = HashMap::new();
    let width = runs.iter().map(|(_, s)| s.len()).max().unwrap_or(8).max(8);
    while done.len() < runs.len() {
        if let Some(t) = timeout {
            if t0.elapsed() > t {
                for (id, sys) in runs {
                    if !done.contains_key(id) {
                        let _ =
                            c.post(&format!("/api/v1/runs/{id}/cancel"), &serde_json::json!({}));
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
            let v: api::RunDetail = trya!(c.get_json(&format!("/api/v1/runs/{id}")));
            let state = v.run.state.clone();
            if last.get(id) != Some(&state) {
                let detail = v
                    .timeline
                    .last()
                    .map(|e| e.detail.clone())
                    .unwrap_or_default();
                if !json_out {
                    println!(
                        "{sys:<width$} {id}  {state:<10} +{:>6.1}s  {detail}",
                        v.run.elapsed_s
                    );
                    let _ = std::io::stdout().flush();
                }
                last.insert(id.clone(), state);
            }
            if v.run.terminal {
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
        let ok = v.run.state == "succeeded";
        all_ok &= ok;
        if json_out {
            continue;
        }
        println!(
            "\n{sys} {id}: {}{}",
            v.run.state.to_uppercase(),
            v.run
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        print_timeline(&v.timeline);
        if !ok {
            // The failing stage's log, where a stage failed.
            if let Some(st) = v.stages.iter().find(|s| s.status != "passed") {
                if let Ok(r) = c.get(&st.log) {
                    let text = r.text();
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(40);
                    println!(
                        "  --- log of stage {} (last {} lines) ---",
                        st.name,
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
        let arr: Vec<&api::RunDetail> = runs.iter().map(|(id, _)| &done[id]).collect();
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

fn print_timeline(timeline: &[api::TimelineEntry]) {
    for e in timeline {
        println!("  +{:>7.1}s  {:<10} {}", e.t, e.state, e.detail);
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
            let list: Vec<api::Run> = trya!(c.get_json(&q));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
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
            for r in list {
                rows.push(vec![
                    r.id,
                    r.system,
                    r.profile,
                    r.state,
                    format!("{:.1}s", r.elapsed_s),
                    r.reason.unwrap_or_default(),
                ]);
            }
            print_table(&rows);
            ExitCode::SUCCESS
        }
        RunsCmd::Show { id, json } => {
            let v: api::RunDetail = trya!(c.get_json(&format!("/api/v1/runs/{id}")));
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return ExitCode::SUCCESS;
            }
            println!(
                "run {} system {} profile {}: {}{}",
                v.run.id,
                v.run.system,
                v.run.profile,
                v.run.state,
                v.run
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            print_timeline(&v.timeline);
            for s in &v.stages {
                println!(
                    "  stage {} {:<12} {:<6} {}",
                    s.seq, s.name, s.kind, s.status
                );
            }
            for a in &v.artifacts {
                println!("  artifact {} ({} bytes)", a.path, a.size);
            }
            ExitCode::SUCCESS
        }
        RunsCmd::Logs { id, stage, follow } => {
            let v: api::RunDetail = trya!(c.get_json(&format!("/api/v1/runs/{id}")));
            let log = if stage.as_deref() == Some("console") {
                format!("/api/v1/runs/{}/console", v.run.id)
            } else {
                let st = match &stage {
                    None => v.stages.last(),
                    Some(s) => v
                        .stages
                        .iter()
                        .find(|x| &x.name == s || x.seq.to_string() == *s),
                };
                let Some(st) = st else {
                    return fail(
                        EXIT_FAILED,
                        format!("run {id} has no such stage (it has {})", v.stages.len()),
                    );
                };
                st.log.clone()
            };
            if !follow {
                let r = tryc!(c.get(&log));
                if !r.ok() {
                    return fail(EXIT_FAILED, r.error_message());
                }
                print!("{}", r.text());
                return ExitCode::SUCCESS;
            }
            // Follow: print the log as it arrives, until the stage ends.
            let mut s = tryc!(c.stream(&format!("{log}?follow=1")));
            if !s.ok() {
                let mut body = Vec::new();
                let _ = s.read_to_end(&mut body);
                let r = crate::client::Response {
                    status: s.status,
                    headers: Vec::new(),
                    body,
                };
                return fail(EXIT_FAILED, r.error_message());
            }
            let mut out = std::io::stdout();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = out.write_all(&buf[..n]);
                        let _ = out.flush();
                    }
                    Err(e) => return fail(EXIT_FAILED, format!("reading the log: {e}")),
                }
            }
            ExitCode::SUCCESS
        }
        RunsCmd::Wait {
            ids,
            junit,
            timeout,
        } => {
            let timeout = match parse_timeout(timeout.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let mut runs = Vec::new();
            for id in ids {
                let v: api::RunDetail = trya!(c.get_json(&format!("/api/v1/runs/{id}")));
                runs.push((id, v.run.system));
            }
            wait_runs(&c, &runs, timeout, junit.as_deref(), false)
        }
        RunsCmd::Cancel { id } => {
            let _: api::Cancelled = trya!(c.call_json(
                "POST",
                &format!("/api/v1/runs/{id}/cancel"),
                &serde_json::json!({})
            ));
            println!("cancelled {id}");
            ExitCode::SUCCESS
        }
        RunsCmd::Retry { id, wait } => {
            let v: api::RunsCreated = trya!(c.call_json(
                "POST",
                &format!("/api/v1/runs/{id}/retry"),
                &serde_json::json!({})
            ));
            let runs: Vec<(String, String)> =
                v.runs.into_iter().map(|r| (r.id, r.system)).collect();
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
