//! `systems bench-add` (hidden; bench/admin-add.sh): COUNT generated systems
//! added one after another through `admin`, timed.

use super::output::EXIT_FAILED;
use crate::admin;
use crate::api::changes::SystemChange;
use crate::config::Settings;
use std::process::ExitCode;
use std::time::Instant;

pub fn bench_add(settings: &Settings, count: usize, first: usize, profile: &str) -> ExitCode {
    let mut times = Vec::with_capacity(count);
    let mut rendered_total = 0usize;
    let mut full_checks = 0usize;
    let t_all = Instant::now();
    for i in first..first + count {
        let (a, b) = (i / 250, i % 250);
        let ch = SystemChange {
            macs: Some(vec![format!(
                "52:56:{:02x}:{:02x}:{:02x}:01",
                (a >> 8) & 255,
                a & 255,
                b
            )]),
            ip: Some(format!("10.{}.{}.{}", 30 + (a / 256) % 64, a % 256, b + 1)),
            profile: Some(profile.to_string()),
            domain: Some("lab.example".into()),
            ..SystemChange::default()
        };
        let t = Instant::now();
        match admin::add_system(settings, &format!("bench{i:06}"), &ch) {
            Ok(o) => {
                rendered_total += o.rendered;
                full_checks += usize::from(o.full_check);
            }
            Err(e) => {
                eprintln!("error: bench{i:06}: {e}");
                return ExitCode::from(EXIT_FAILED);
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = t_all.elapsed().as_secs_f64();
    let first_ms = times.first().copied().unwrap_or(0.0);
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "systems add x{count}: median {:.1} ms  p99 {:.1} ms  max {:.1} ms  first {:.1} ms  \
         (total {:.1} s; systems rendered: {rendered_total}; whole-inventory checks: {full_checks})",
        pct(0.5),
        pct(0.99),
        sorted.last().copied().unwrap_or(0.0),
        first_ms,
        total
    );
    ExitCode::SUCCESS
}
