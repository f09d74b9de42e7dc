//! `check` and `render`: the local files only (like `dora-cfg`), no daemon.

use super::output::{pretty, print_systems, print_table, profile_row};
use crate::api;
use crate::config;
use crate::render::{RenderKind, RunCtx};
use std::process::ExitCode;

pub fn check(dir: &std::path::Path, json: bool) -> ExitCode {
    let t0 = std::time::Instant::now();
    let cfg = match config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    let elapsed = t0.elapsed();
    let warnings = config::missing_files(&cfg);
    let inv = &cfg.inventory;
    if json {
        let v = api::CheckSummary {
            ok: true,
            systems: inv
                .systems()
                .iter()
                .map(|s| api::CheckSystem {
                    name: s.name.clone(),
                    hostname: s.hostname.clone(),
                    macs: s.macs.iter().map(|m| m.to_string()).collect(),
                    ip: s.ip.to_string(),
                    profile: s.profile.clone(),
                    bmc: s
                        .bmc
                        .as_ref()
                        .map(|b| format!("{} {}", b.kind.as_str(), b.address)),
                })
                .collect(),
            profiles: inv
                .profiles()
                .values()
                .map(|p| api::CheckProfile {
                    name: p.name.clone(),
                    parent: p.parent.clone(),
                    is_abstract: p.is_abstract,
                    installer: p.installer.as_str().to_string(),
                    kernel: p.kernel.clone(),
                    stages: p.stages.len(),
                })
                .collect(),
            load_ms: elapsed.as_secs_f64() * 1000.0,
            warnings,
        };
        println!("{}", pretty(&v));
        return ExitCode::SUCCESS;
    }
    print_systems(inv.systems().iter());
    println!();
    let mut rows = vec![vec![
        "PROFILE".to_string(),
        "PARENT".into(),
        "INSTALLER".into(),
        "KERNEL".into(),
        "TEMPLATE".into(),
        "STAGES".into(),
    ]];
    for p in inv.profiles().values() {
        let mut row = profile_row(p);
        row.push(p.stages.len().to_string());
        rows.push(row);
    }
    print_table(&rows);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "\nok: {} systems, {} profiles, templates rendered for every system ({:.1} ms)",
        inv.systems().len(),
        inv.profiles().len(),
        elapsed.as_secs_f64() * 1000.0
    );
    ExitCode::SUCCESS
}

pub fn render(dir: &std::path::Path, system: &str, kind: &str, run_id: Option<&str>) -> ExitCode {
    let Some(kind) = RenderKind::parse(kind) else {
        eprintln!(
            "error: unknown kind {kind:?}: expected ipxe, grub, kickstart, config, user-data, meta-data, vendor-data or kernel-args"
        );
        return ExitCode::from(2);
    };
    let cfg = match config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    let inv = &cfg.inventory;
    let s = inv
        .system(system)
        .or_else(|| system.parse().ok().and_then(|m| inv.by_mac(&m)));
    let Some(s) = s else {
        eprintln!("error: no system {system:?} in the inventory");
        return ExitCode::from(1);
    };
    let mut run = RunCtx::preview();
    if let Some(id) = run_id {
        run.id = id.to_string();
    }
    match inv.render(s, kind, &run) {
        Ok(Some(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!(
                "error: profile {:?} has no {} template",
                s.profile,
                kind.as_str()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
