//! The command line: clap definitions and dispatch. `check` and `render` work
//! on the local files (like `dora-cfg`); `serve` runs the daemon.

use crate::config;
use crate::render::{RenderKind, RunCtx};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "rackboot",
    version,
    about = "Bare-metal provisioning: netboot, templates, BMC power, reimage runs"
)]
pub struct Cli {
    /// Configuration directory (rackboot.toml, systems.toml, profiles/, kickstarts/).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "RACKBOOT_CONFIG",
        default_value = "."
    )]
    pub config: PathBuf,
    /// Operator API address (default: api.listen of the config; env RACKBOOT_API).
    #[arg(long, global = true, env = "RACKBOOT_API")]
    pub api: Option<String>,
    /// Log format for the daemon: text or json.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Validate the configuration: every error (exit 1) or a summary (exit 0).
    Check {
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print exactly what a machine would be served.
    Render {
        /// System name (or one of its MACs).
        system: String,
        /// ipxe, kickstart|config, user-data, meta-data, vendor-data, kernel-args.
        #[arg(long, short = 'k', default_value = "config")]
        kind: String,
        /// Run id to render with (default: a preview run).
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Run the daemon.
    Serve,
    /// A stand-alone TFTP server on one root (for bench/tftp-bench.sh).
    #[command(hide = true)]
    TftpServe {
        addr: std::net::SocketAddr,
        root: PathBuf,
    },
    /// Reimage systems: PXE, install, reboot, SSH, config and test stages.
    Reimage(crate::cli_runs::ReimageArgs),
    /// Reimage runs: list, show, logs, cancel, retry.
    #[command(subcommand)]
    Runs(crate::cli_runs::RunsCmd),
    /// Power control through the BMC: status|on|off|cycle|reset|soft.
    Power {
        /// Systems, then the operation (last).
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
    },
    /// Next boot device through the BMC: pxe|disk|show.
    Bootdev {
        /// Systems, then the device (last).
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Keep it for all future boots (default: next boot only).
        #[arg(long)]
        persistent: bool,
        /// UEFI boot (default: legacy).
        #[arg(long)]
        uefi: bool,
    },
    /// Add, change, remove, list and show systems (systems.toml).
    Systems {
        #[command(subcommand)]
        cmd: crate::cli_admin::SystemsCmd,
    },
    /// Add, change, remove, list and show profiles (profiles/NAME.toml).
    Profiles {
        #[command(subcommand)]
        cmd: crate::cli_admin::ProfilesCmd,
    },
    /// Print shell completions (bash or zsh).
    Completions {
        shell: crate::cli_admin::CompletionShell,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { json } => check(&cli.config, json),
        Cmd::Render {
            ref system,
            ref kind,
            ref run_id,
        } => render(&cli.config, system, kind, run_id.as_deref()),
        Cmd::Serve => serve(&cli.config, &cli.log_format),
        Cmd::TftpServe { addr, root } => {
            init_tracing(&cli.log_format);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            match rt.block_on(crate::tftp::bench::bench_server(addr, root)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Reimage(a) => crate::cli_runs::reimage(&cli.config, cli.api.as_deref(), a),
        Cmd::Runs(r) => crate::cli_runs::runs(&cli.config, cli.api.as_deref(), r),
        Cmd::Power { args } => {
            let (op, systems) = args.split_last().expect("clap: at least 2");
            crate::cli_runs::power(&cli.config, cli.api.as_deref(), systems, op)
        }
        Cmd::Bootdev {
            args,
            persistent,
            uefi,
        } => {
            let (dev, systems) = args.split_last().expect("clap: at least 2");
            crate::cli_runs::bootdev(
                &cli.config,
                cli.api.as_deref(),
                systems,
                dev,
                persistent,
                uefi,
            )
        }
        Cmd::Systems { cmd } => crate::cli_admin::run_systems(&cli.config, cmd),
        Cmd::Profiles { cmd } => crate::cli_admin::run_profiles(&cli.config, cmd),
        Cmd::Completions { shell } => crate::cli_admin::run_completions(shell),
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RACKBOOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn serve(dir: &std::path::Path, log_format: &str) -> ExitCode {
    init_tracing(log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(crate::daemon::run(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn check(dir: &std::path::Path, json: bool) -> ExitCode {
    let t0 = std::time::Instant::now();
    let cfg = match config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    let elapsed = t0.elapsed();
    let inv = &cfg.inventory;
    if json {
        let v = serde_json::json!({
            "ok": true,
            "systems": inv.systems().iter().map(|s| serde_json::json!({
                "name": s.name, "hostname": s.hostname,
                "macs": s.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
                "ip": s.ip.to_string(), "profile": s.profile,
                "bmc": s.bmc.as_ref().map(|b| format!("{} {}", b.kind.as_str(), b.address)),
            })).collect::<Vec<_>>(),
            "profiles": inv.profiles().values().map(|p| serde_json::json!({
                "name": p.name, "parent": p.parent, "abstract": p.is_abstract,
                "installer": p.installer.as_str(), "kernel": p.kernel, "stages": p.stages.len(),
            })).collect::<Vec<_>>(),
            "load_ms": elapsed.as_secs_f64() * 1000.0,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    crate::cli_admin::print_systems(inv.systems().iter());
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
        let mut row = crate::cli_admin::profile_row(p);
        row.push(p.stages.len().to_string());
        rows.push(row);
    }
    print_table(&rows);
    println!(
        "\nok: {} systems, {} profiles, templates rendered for every system ({:.1} ms)",
        inv.systems().len(),
        inv.profiles().len(),
        elapsed.as_secs_f64() * 1000.0
    );
    ExitCode::SUCCESS
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

fn render(dir: &std::path::Path, system: &str, kind: &str, run_id: Option<&str>) -> ExitCode {
    let Some(kind) = RenderKind::parse(kind) else {
        eprintln!(
            "error: unknown kind {kind:?}: expected ipxe, kickstart, config, user-data, meta-data, vendor-data or kernel-args"
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
