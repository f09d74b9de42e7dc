//! The command line: clap definitions and dispatch. `check` and `render` work
//! on the local files (like `dora-cfg`); `serve` runs the daemon; `systems`
//! and `profiles` edit the files and ask the daemon to reload; `reimage`,
//! `runs`, `power`, `bootdev` drive the daemon through its API (`client`).
//!
//! The children import from `output` (tables, exit codes) and each other,
//! never from here.

mod admin;
mod audit;
mod bench;
mod check;
mod completions;
mod daemons;
mod discovered;
mod init;
mod inventory;
mod output;
mod power;
mod reload;
mod runs;
mod serve;
mod why;

use clap::{CommandFactory, Parser, Subcommand};
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
    /// CA certificate(s) (PEM) to trust for an API served over TLS
    /// (default: the daemon's own api.tls_cert when the config has one).
    #[arg(long, global = true, env = "RACKBOOT_CA")]
    pub ca_file: Option<PathBuf>,
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
        /// ipxe, grub, kickstart|config, user-data, meta-data, vendor-data, kernel-args.
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
    Reimage(runs::ReimageArgs),
    /// Inspect systems' hardware: netboot the `inspect` profile's image, store
    /// the facts it reports (`systems show`), power off. Same options as reimage.
    Inspect(runs::ReimageArgs),
    /// Reimage runs: list, show, logs, cancel, retry.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
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
    /// The netboot switch: on (the next boot gets the profile's image), off;
    /// `on --persistent` keeps it on for every boot (diskless, live machines).
    Netboot {
        /// Systems, then on|off (last).
        #[arg(required = true, num_args = 2..)]
        args: Vec<String>,
        /// Every boot, also after an install-done callback.
        #[arg(long)]
        persistent: bool,
    },
    /// Add, change, remove, list and show systems (systems.toml).
    Systems {
        #[command(subcommand)]
        cmd: admin::SystemsCmd,
    },
    /// Add, change, remove, list and show profiles (profiles/NAME.toml).
    Profiles {
        #[command(subcommand)]
        cmd: admin::ProfilesCmd,
    },
    /// Why didn't it boot? The last attempt's boot steps, the first missing one and its likely cause.
    Why {
        system: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Machines seen on DHCP whose MAC is not in the inventory (`forget MAC` to drop one).
    Discovered(discovered::DiscoveredArgs),
    /// Load a config dir (systems.toml, profiles/, kickstarts/) into the shared
    /// inventory (PostgreSQL): checked as a whole, all or nothing.
    Import { dir: std::path::PathBuf },
    /// Write the shared inventory (PostgreSQL) into a config dir.
    Export { dir: std::path::PathBuf },
    /// The audit trail: who changed what (token, via, address), newest first.
    Audit(audit::AuditArgs),
    /// The site's daemons on the shared database: heartbeats, fencing, runs owned.
    Daemons(daemons::DaemonsArgs),
    /// Print shell completions (bash or zsh).
    Completions { shell: completions::CompletionShell },
    /// Write a starter configuration for this host (address and subnet from the interface).
    Init(init::InitArgs),
    /// Print the man page (roff), generated from this CLI (packaging/build-deb.sh).
    #[command(hide = true)]
    Man,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Serve | Cmd::TftpServe { .. }) {
        // A command's output piped into `head` ends quietly, as other Unix
        // tools do, instead of panicking on EPIPE in println!. (The daemon
        // keeps Rust's default: a closed socket is an error to handle.)
        // SAFETY: set once at start, before any thread is spawned.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Some(ca) = &cli.ca_file {
        crate::client::set_ca_file(ca.clone());
    }
    let api = cli.api.as_deref();
    match cli.cmd {
        Cmd::Check { json } => check::check(&cli.config, json),
        Cmd::Render {
            ref system,
            ref kind,
            ref run_id,
        } => check::render(&cli.config, system, kind, run_id.as_deref()),
        Cmd::Serve => serve::serve(&cli.config, &cli.log_format),
        Cmd::TftpServe { addr, root } => serve::tftp_serve(addr, root, &cli.log_format),
        Cmd::Reimage(a) => runs::reimage(&cli.config, api, a),
        Cmd::Inspect(a) => runs::inspect(&cli.config, api, a),
        Cmd::Runs(r) => runs::runs(&cli.config, api, r),
        Cmd::Power { args } => {
            let (op, systems) = args.split_last().expect("clap: at least 2");
            power::power(&cli.config, api, systems, op)
        }
        Cmd::Bootdev {
            args,
            persistent,
            uefi,
        } => {
            let (dev, systems) = args.split_last().expect("clap: at least 2");
            power::bootdev(&cli.config, api, systems, dev, persistent, uefi)
        }
        Cmd::Netboot { args, persistent } => {
            let (state, systems) = args.split_last().expect("clap: two or more");
            power::netboot(&cli.config, api, systems, state, persistent)
        }
        Cmd::Systems { cmd } => admin::run_systems(&cli.config, api, cmd),
        Cmd::Profiles { cmd } => admin::run_profiles(&cli.config, api, cmd),
        Cmd::Why { ref system, json } => why::why(&cli.config, api, system, json),
        Cmd::Audit(a) => audit::audit(&cli.config, api, a),
        Cmd::Daemons(a) => daemons::daemons(&cli.config, api, a),
        Cmd::Import { ref dir } => inventory::import(&cli.config, dir),
        Cmd::Export { ref dir } => inventory::export(&cli.config, dir),
        Cmd::Discovered(a) => discovered::discovered(&cli.config, api, a),
        Cmd::Completions { shell } => completions::run(shell, Cli::command()),
        Cmd::Init(a) => init::run(&cli.config, a),
        Cmd::Man => completions::man(Cli::command()),
    }
}
