//! `systems …` and `profiles …`: edits go through `admin` (document edit,
//! whole-inventory validation, lock, atomic write); afterwards the running
//! daemon is asked to reload through its API. Listing and showing read the
//! files.
//!
//! Exit codes: 0 done (or nothing to change), 1 refused (with the reasons),
//! 2 usage error.

use super::output::{
    pretty, print_profile, print_profiles, print_system_with, print_systems, print_systems_with,
    vars_origin, EXIT_FAILED, EXIT_USAGE,
};
use super::reload;
use crate::admin::{self, AdminError, Outcome};
use crate::api;
use crate::api::changes::{BmcChange, ProfileChange, SystemChange};
use crate::config::fields;
use crate::config::wire::ProfileWire;
use crate::config::{self, Settings};
use crate::inventory::{Inventory, System};
use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SystemsCmd {
    /// Add a system to systems.toml.
    Add(SystemAddArgs),
    /// Change a system: only the options given change.
    Edit(SystemEditArgs),
    /// Remove a system from systems.toml.
    Remove {
        name: String,
        #[command(flatten)]
        out: OutArgs,
    },
    /// List the systems.
    List {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
        /// Add a POWER column: asks the running daemon, which asks each BMC (in parallel).
        #[arg(long)]
        power: bool,
    },
    /// Show one system.
    Show {
        name: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: add COUNT generated systems one after another (bench/admin-add.sh).
    #[command(hide = true)]
    BenchAdd {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Index of the first generated system.
        #[arg(long, default_value_t = 100_000)]
        first: usize,
        #[arg(long, default_value = "lab")]
        profile: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProfilesCmd {
    /// Add a profile (profiles/NAME.toml).
    Add(ProfileAddArgs),
    /// Change a profile: only the options given change.
    Edit(ProfileEditArgs),
    /// Remove a profile (refused while a system or a child profile uses it).
    Remove {
        name: String,
        #[command(flatten)]
        out: OutArgs,
    },
    /// List the profiles.
    List {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show a profile with inherited values resolved and where each came from.
    Show {
        name: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Output and reload options of the commands that change files.
#[derive(Args, Debug, Clone, Default)]
pub struct OutArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Do not ask a running daemon to reload (batch edits; reload once at the end).
    #[arg(long)]
    pub no_reload: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Options shared by `systems add` and `systems edit`.
#[derive(Args, Debug, Clone, Default)]
pub struct SystemCommon {
    /// Hostname (default: the system name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Netmask (default: dhcp.subnet_mask).
    #[arg(long)]
    pub netmask: Option<String>,
    /// Gateway (default: dhcp.router).
    #[arg(long)]
    pub gateway: Option<String>,
    /// DNS server (repeat for more; default: dhcp.dns).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS domain (default: dhcp.domain).
    #[arg(long)]
    pub domain: Option<String>,
    /// First-stage loader of this machine as a UEFI x64 PXE client, over its
    /// profile's (grub: signed shim + GRUB for Secure Boot).
    #[arg(long, value_parser = ["ipxe", "grub"])]
    pub loader: Option<String>,
    /// BMC kind.
    #[arg(long, value_parser = ["ipmi", "redfish"])]
    pub bmc_kind: Option<String>,
    /// BMC address: host[:port] (IPMI) or https://host[:port] (Redfish).
    #[arg(long, value_name = "ADDR")]
    pub bmc_address: Option<String>,
    /// BMC user name.
    #[arg(long, value_name = "USER")]
    pub bmc_user: Option<String>,
    /// File holding the BMC password (relative to the config dir).
    #[arg(long, value_name = "FILE", conflicts_with = "bmc_password_env")]
    pub bmc_password_file: Option<String>,
    /// Environment variable holding the BMC password (read by the daemon).
    #[arg(long, value_name = "VAR")]
    pub bmc_password_env: Option<String>,
    /// IPMI cipher suite to try, in preference order (repeat; default 17 then 3).
    #[arg(long = "bmc-cipher-suite", value_name = "N", value_parser = ["3", "17"])]
    pub bmc_cipher_suites: Vec<String>,
    /// Redfish: accept the BMC's self-signed certificate (`--bmc-insecure-tls=false` to clear).
    #[arg(long = "bmc-insecure-tls", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub bmc_insecure_tls: Option<bool>,
    /// Redfish system id (default: discovered from /redfish/v1/Systems).
    #[arg(long = "bmc-system-id", value_name = "ID")]
    pub bmc_system_id: Option<String>,
    /// Template variable (repeat for more).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub vars: Vec<(String, String)>,
    /// Refused: a password on the command line ends up in shell history.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "", value_name = "PASSWORD")]
    pub bmc_password: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SystemAddArgs {
    pub name: String,
    /// MAC address (repeat for more NICs; the first is the boot NIC).
    #[arg(
        long = "mac",
        value_name = "MAC",
        required_unless_present = "from_discovered"
    )]
    pub macs: Vec<String>,
    /// Take the MAC (and the arch, as the var `arch`) from a discovered
    /// machine (`rackboot discovered`), and forget the record once added.
    #[arg(long, value_name = "MAC", conflicts_with = "macs")]
    pub from_discovered: Option<String>,
    /// Reserved IPv4 address.
    #[arg(long)]
    pub ip: String,
    /// Profile (see `rackboot profiles list`).
    #[arg(long)]
    pub profile: String,
    #[command(flatten)]
    pub common: SystemCommon,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SystemEditArgs {
    pub name: String,
    /// Add a MAC address (repeat for more).
    #[arg(long = "mac", value_name = "MAC")]
    pub macs: Vec<String>,
    /// Remove a MAC address (repeat for more).
    #[arg(long = "remove-mac", value_name = "MAC")]
    pub remove_macs: Vec<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[command(flatten)]
    pub common: SystemCommon,
    /// Remove a template variable (repeat for more).
    #[arg(long = "unset-var", value_name = "KEY")]
    pub unset_vars: Vec<String>,
    /// Remove an optional key, back to its default.
    #[arg(long, value_name = "KEY", value_parser = PossibleValuesParser::new(fields::SYSTEM_UNSETTABLE))]
    pub unset: Vec<String>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// Options shared by `profiles add` and `profiles edit`.
#[derive(Args, Debug, Clone, Default)]
pub struct ProfileFields {
    /// Inherit everything from this profile, overriding what is set here.
    #[arg(long)]
    pub parent: Option<String>,
    /// Only for inheriting: not assignable to systems (`--abstract=false` to clear).
    #[arg(long = "abstract", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub is_abstract: Option<bool>,
    #[arg(long)]
    pub description: Option<String>,
    /// Kernel, a path inside the boot dir.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<String>,
    /// Initrd, a path inside the boot dir (repeat for more; replaces the list).
    #[arg(long, value_name = "PATH")]
    pub initrd: Vec<String>,
    /// Kernel command line (a template).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub kernel_args: Option<String>,
    #[arg(long, value_parser = ["kickstart", "preseed", "autoinstall", "cloud-init", "script"])]
    pub installer: Option<String>,
    /// Installer template (kickstart / preseed / script), relative to the templates dir.
    #[arg(long, value_name = "FILE")]
    pub template: Option<String>,
    /// cloud-init / autoinstall user-data template.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub meta_data: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub vendor_data: Option<String>,
    /// Custom iPXE script template.
    #[arg(long, value_name = "FILE")]
    pub ipxe_template: Option<String>,
    /// What a UEFI x64 PXE client loads: iPXE, or Debian's signed shim and
    /// GRUB (Secure Boot; everything over TFTP).
    #[arg(long, value_parser = ["ipxe", "grub"])]
    pub loader: Option<String>,
    /// Port to wait for after the install (repeat for more; replaces the list).
    #[arg(long = "wait-port", value_name = "PORT")]
    pub wait_ports: Vec<u16>,
    /// Whether the installer reboots into the installed system after its
    /// callback (default true); false: its ports are probed at once.
    #[arg(long, value_name = "BOOL")]
    pub reboots: Option<bool>,
    /// Power-cycles again when the boot evidence does not come in time,
    /// before the run fails (default 2).
    #[arg(long, value_name = "N")]
    pub boot_retries: Option<u32>,
    /// After the run: boot the local disk, or keep netbooting the image
    /// (diskless and live machines).
    #[arg(long, value_parser = ["local", "netboot"])]
    pub after_install: Option<String>,
    #[arg(long, value_parser = ["rerun", "fail"])]
    pub on_interrupted_stage: Option<String>,
    /// Phase deadline, e.g. install=30m (repeat for more).
    #[arg(long = "timeout", value_name = "PHASE=DURATION", value_parser = parse_kv)]
    pub timeouts: Vec<(String, String)>,
    /// Template variable (repeat for more).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_kv)]
    pub vars: Vec<(String, String)>,
}

#[derive(Args, Debug, Clone)]
pub struct ProfileAddArgs {
    pub name: String,
    #[command(flatten)]
    pub fields: ProfileFields,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ProfileEditArgs {
    pub name: String,
    #[command(flatten)]
    pub fields: ProfileFields,
    /// Remove a key (back to the inherited or default value).
    #[arg(long, value_name = "KEY", value_parser = PossibleValuesParser::new(fields::profile_keys()))]
    pub unset: Vec<String>,
    /// Remove a template variable.
    #[arg(long = "unset-var", value_name = "KEY")]
    pub unset_vars: Vec<String>,
    #[command(flatten)]
    pub out: OutArgs,
}

// ---------------------------------------------------------------------------

fn settings_or_exit(dir: &Path) -> Result<Settings, ExitCode> {
    config::load_settings(dir).map_err(|e| {
        eprint!("error: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

fn vars_json(v: &[(String, String)]) -> BTreeMap<String, Value> {
    v.iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

const PASSWORD_REFUSAL: &str =
    "error: --bmc-password is not accepted: a password on the command line ends up in \
     shell history and in the process list. Put it in a file readable only by rackboot \
     (--bmc-password-file FILE) or in the daemon's environment (--bmc-password-env VAR).";

fn system_change(common: &SystemCommon) -> SystemChange {
    let bmc = if common.bmc_kind.is_some()
        || common.bmc_address.is_some()
        || common.bmc_user.is_some()
        || common.bmc_password_file.is_some()
        || common.bmc_password_env.is_some()
        || !common.bmc_cipher_suites.is_empty()
        || common.bmc_insecure_tls.is_some()
        || common.bmc_system_id.is_some()
    {
        Some(BmcChange {
            kind: common.bmc_kind.clone(),
            address: common.bmc_address.clone(),
            username: common.bmc_user.clone(),
            password_file: common.bmc_password_file.clone(),
            password_env: common.bmc_password_env.clone(),
            cipher_suites: (!common.bmc_cipher_suites.is_empty()).then(|| {
                common
                    .bmc_cipher_suites
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect()
            }),
            insecure_tls: common.bmc_insecure_tls,
            system_id: common.bmc_system_id.clone(),
            ..BmcChange::default()
        })
    } else {
        None
    };
    SystemChange {
        hostname: common.hostname.clone(),
        netmask: common.netmask.clone(),
        gateway: common.gateway.clone(),
        dns: (!common.dns.is_empty()).then(|| common.dns.clone()),
        domain: common.domain.clone(),
        loader: common.loader.clone(),
        bmc,
        vars: vars_json(&common.vars),
        ..SystemChange::default()
    }
}

fn profile_change(f: &ProfileFields) -> ProfileChange {
    ProfileChange {
        set: ProfileWire {
            parent: f.parent.clone(),
            r#abstract: f.is_abstract,
            description: f.description.clone(),
            kernel: f.kernel.clone(),
            initrd: (!f.initrd.is_empty()).then(|| f.initrd.clone()),
            kernel_args: f.kernel_args.clone(),
            installer: f.installer.clone(),
            template: f.template.clone(),
            user_data: f.user_data.clone(),
            meta_data: f.meta_data.clone(),
            vendor_data: f.vendor_data.clone(),
            ipxe_template: f.ipxe_template.clone(),
            loader: f.loader.clone(),
            wait_ports: (!f.wait_ports.is_empty()).then(|| f.wait_ports.clone()),
            reboots: f.reboots,
            boot_retries: f.boot_retries,
            after_install: f.after_install.clone(),
            on_interrupted_stage: f.on_interrupted_stage.clone(),
            ..ProfileWire::default()
        },
        timeouts: f.timeouts.iter().cloned().collect(),
        vars: vars_json(&f.vars),
        ..ProfileChange::default()
    }
}

pub fn run_systems(dir: &Path, api: Option<&str>, cmd: SystemsCmd) -> ExitCode {
    let settings = match settings_or_exit(dir) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        SystemsCmd::Add(a) => {
            if a.common.bmc_password.is_some() {
                eprintln!("{PASSWORD_REFUSAL}");
                return ExitCode::from(EXIT_USAGE);
            }
            let mut ch = system_change(&a.common);
            let adopted = match &a.from_discovered {
                Some(mac) => {
                    let d = match super::discovered::lookup(dir, api, mac) {
                        Ok(d) => d,
                        Err(code) => return code,
                    };
                    if let Err(m) = ch.adopt(&d) {
                        eprintln!("error: {m}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                    Some(d.mac)
                }
                None => {
                    ch.macs = Some(a.macs.clone());
                    None
                }
            };
            ch.ip = Some(a.ip.clone());
            ch.profile = Some(a.profile.clone());
            let r = super::inventory::edit(&settings, |s| admin::add_system(s, &a.name, &ch));
            let added = r.as_ref().is_ok_and(|o| !o.written.is_empty());
            let code = finish(&settings, api, &a.out, "added", Target::System(&a.name), r);
            if let (true, Some(mac)) = (added, adopted) {
                super::discovered::forget_adopted(dir, api, &mac, &a.name);
            }
            code
        }
        SystemsCmd::Edit(a) => {
            if a.common.bmc_password.is_some() {
                eprintln!("{PASSWORD_REFUSAL}");
                return ExitCode::from(EXIT_USAGE);
            }
            let mut ch = system_change(&a.common);
            ch.add_macs = a.macs.clone();
            ch.remove_macs = a.remove_macs.clone();
            ch.ip = a.ip.clone();
            ch.profile = a.profile.clone();
            ch.unset_vars = a.unset_vars.clone();
            ch.unset = a.unset.clone();
            let r = super::inventory::edit(&settings, |s| admin::edit_system(s, &a.name, &ch));
            finish(
                &settings,
                api,
                &a.out,
                "changed",
                Target::System(&a.name),
                r,
            )
        }
        SystemsCmd::Remove { name, out } => {
            let r = super::inventory::edit(&settings, |s| admin::remove_system(s, &name));
            finish(&settings, api, &out, "removed", Target::System(&name), r)
        }
        SystemsCmd::List { json, power } => with_inventory(&settings, |inv| {
            let states = power.then(|| super::power::states(&settings, api, inv));
            if json {
                let v: Vec<api::SystemRow> = inv
                    .systems()
                    .iter()
                    .map(|s| api::SystemRow {
                        system: system_out(s),
                        power: states.as_ref().map(|p| p.get(&s.name).cloned()),
                    })
                    .collect();
                println!("{}", pretty(&v));
            } else {
                print_systems_with(inv.systems().iter(), states.as_ref());
            }
            ExitCode::SUCCESS
        }),
        SystemsCmd::Show { name, json } => with_inventory(&settings, |inv| {
            let Some(s) = inv
                .system(&name)
                .or_else(|| name.parse().ok().and_then(|m| inv.by_mac(&m)))
            else {
                eprintln!("error: no system {name:?}");
                return ExitCode::from(EXIT_FAILED);
            };
            // The facts live in the daemon's store: asked of it, if it runs.
            let facts = crate::client::Client::from_config(dir, api)
                .ok()
                .and_then(|c| {
                    c.get_json::<api::facts::FactsReport>(&format!(
                        "/api/v1/systems/{}/facts",
                        crate::http::guard::pct(&s.name)
                    ))
                    .ok()
                });
            if json {
                let mut v = serde_json::to_value(system_out(s)).unwrap_or_default();
                if let (Some(f), Some(m)) = (&facts, v.as_object_mut()) {
                    m.insert("facts".into(), serde_json::to_value(f).unwrap_or_default());
                }
                println!("{}", pretty(&v));
            } else {
                print_system_with(s, facts.as_ref().map(facts_rows).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }),
        SystemsCmd::BenchAdd {
            count,
            first,
            profile,
        } => super::bench::bench_add(&settings, count, first, &profile),
    }
}

pub fn run_profiles(dir: &Path, api: Option<&str>, cmd: ProfilesCmd) -> ExitCode {
    let settings = match settings_or_exit(dir) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        ProfilesCmd::Add(a) => {
            let r = super::inventory::edit(&settings, |s| {
                admin::add_profile(s, &a.name, &profile_change(&a.fields))
            });
            finish(&settings, api, &a.out, "added", Target::Profile(&a.name), r)
        }
        ProfilesCmd::Edit(a) => {
            let mut ch = profile_change(&a.fields);
            ch.unset = a.unset.clone();
            ch.unset_vars = a.unset_vars.clone();
            let r = super::inventory::edit(&settings, |s| admin::edit_profile(s, &a.name, &ch));
            finish(
                &settings,
                api,
                &a.out,
                "changed",
                Target::Profile(&a.name),
                r,
            )
        }
        ProfilesCmd::Remove { name, out } => {
            let r = super::inventory::edit(&settings, |s| admin::remove_profile(s, &name));
            finish(&settings, api, &out, "removed", Target::Profile(&name), r)
        }
        ProfilesCmd::List { json } => with_inventory(&settings, |inv| {
            if json {
                let v: Vec<api::Profile> =
                    inv.profiles().values().map(api::Profile::from).collect();
                println!("{}", pretty(&v));
            } else {
                print_profiles(inv);
            }
            ExitCode::SUCCESS
        }),
        ProfilesCmd::Show { name, json } => with_inventory(&settings, |inv| {
            let Some(p) = inv.profile(&name) else {
                eprintln!("error: no profile {name:?}");
                return ExitCode::from(EXIT_FAILED);
            };
            if json {
                let v = api::ProfileShow {
                    profile: api::Profile::from(p),
                    vars_origin: vars_origin(inv, p),
                    systems: inv
                        .systems()
                        .iter()
                        .filter(|s| s.profile == p.name)
                        .map(|s| s.name.clone())
                        .collect(),
                };
                println!("{}", pretty(&v));
            } else {
                print_profile(inv, p);
            }
            ExitCode::SUCCESS
        }),
    }
}

fn with_inventory(settings: &Settings, f: impl FnOnce(&Inventory) -> ExitCode) -> ExitCode {
    match super::inventory::read(settings) {
        Ok(inv) => f(&inv),
        Err(e) => {
            eprint!("error: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

enum Target<'a> {
    System(&'a str),
    Profile(&'a str),
}

/// Print the outcome of a change (or its refusal) and ask the daemon to reload.
fn finish(
    settings: &Settings,
    api: Option<&str>,
    out: &OutArgs,
    verb: &str,
    target: Target<'_>,
    r: Result<Outcome, AdminError>,
) -> ExitCode {
    let o = match r {
        Ok(o) => o,
        Err(e) => {
            if out.json {
                // `admin` words its refusals; they parse as the API's error body.
                match serde_json::from_value::<api::ErrorBody>(e.to_json()) {
                    Ok(body) => println!("{}", pretty(&api::Refusal { ok: false, body })),
                    Err(_) => println!("{}", pretty(&e.to_json())),
                }
            }
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                AdminError::Usage(_) => EXIT_USAGE,
                _ => EXIT_FAILED,
            });
        }
    };
    let (kind, name) = match target {
        Target::System(n) => ("system", n),
        Target::Profile(n) => ("profile", n),
    };
    let changed = !o.written.is_empty();
    let daemon = if !changed || crate::shared::is_shared(settings) {
        // A shared inventory: the daemons poll the database (within 2 s).
        None
    } else if out.no_reload {
        Some(reload::skipped(settings, api))
    } else {
        Some(reload::ask_reload(settings, api))
    };
    let shown: Vec<String> = o
        .written
        .iter()
        .map(|p| config::show(&settings.config_dir, p))
        .collect();
    if out.json {
        let object = match target {
            Target::System(n) => api::Edited::System(o.inventory.system(n).map(system_out)),
            Target::Profile(n) => {
                api::Edited::Profile(o.inventory.profile(n).map(api::Profile::from))
            }
        };
        let v = api::EditReport {
            ok: true,
            changed,
            action: if changed { verb } else { "unchanged" }.to_string(),
            written: shown,
            rendered: o.rendered,
            full_check: o.full_check,
            object,
            daemon: daemon.as_ref().map(reload::DaemonReload::report),
        };
        println!("{}", pretty(&v));
        return ExitCode::SUCCESS;
    }
    if !changed {
        println!("{kind} {name}: nothing to change");
        return ExitCode::SUCCESS;
    }
    println!("{verb} {kind} {name} ({})", shown.join(", "));
    match target {
        Target::System(n) => {
            if let Some(s) = o.inventory.system(n) {
                print_systems(std::iter::once(s));
            }
        }
        Target::Profile(n) => {
            if let Some(p) = o.inventory.profile(n) {
                print_profile(&o.inventory, p);
            }
        }
    }
    if let Some(d) = daemon {
        println!("{}", d.message());
    }
    ExitCode::SUCCESS
}

/// A system as the files have it, with where its BMC password is kept.
fn system_out(s: &System) -> api::System {
    let mut v = api::System::from(s);
    if let (Some(b), Some(bj)) = (&s.bmc, v.bmc.as_mut()) {
        bj.password_source = Some(api::convert::password_source(&b.password));
    }
    v
}

/// `systems show`: the last facts report as `facts.*` rows.
fn facts_rows(r: &api::facts::FactsReport) -> Vec<Vec<String>> {
    let f = &r.facts;
    let size = |b: u64| {
        if b >= 1 << 30 {
            format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
        } else {
            format!("{} MiB", b >> 20)
        }
    };
    let mut rows = vec![vec![
        "facts".to_string(),
        match r.run_id.as_deref() {
            Some(id) => format!("reported {} (run {id})", crate::ui::fmt_time(r.at)),
            // Carried over from its discovered record when it was added.
            None => format!("reported {} (while discovered)", crate::ui::fmt_time(r.at)),
        },
    ]];
    let mut row = |k: &str, v: String| rows.push(vec![format!("facts.{k}"), v]);
    if let Some(c) = &f.cpu {
        row(
            "cpu",
            format!("{} x {}", c.count, c.model.as_deref().unwrap_or("?")),
        );
    }
    if let Some(m) = f.memory_mib {
        row("memory", format!("{m} MiB"));
    }
    for d in &f.disks {
        row(
            "disk",
            format!(
                "{} {}{}{}",
                d.name,
                size(d.size_bytes),
                d.model
                    .as_deref()
                    .map(|m| format!(" {m}"))
                    .unwrap_or_default(),
                match d.rotational {
                    Some(true) => " (rotational)",
                    Some(false) => " (solid state)",
                    None => "",
                }
            ),
        );
    }
    for n in &f.nics {
        row(
            "nic",
            format!(
                "{} {}{}",
                n.name,
                n.mac,
                match (n.link, n.speed_mbps) {
                    (Some(true), Some(s)) => format!(" link up {s} Mb/s"),
                    (Some(true), None) => " link up".into(),
                    (Some(false), _) => " no link".into(),
                    _ => String::new(),
                }
            ),
        );
    }
    if let Some(d) = &f.dmi {
        let v = [&d.vendor, &d.product, &d.serial, &d.bios_version]
            .into_iter()
            .zip(["", "", "serial ", "BIOS "])
            .filter_map(|(v, k)| v.as_ref().map(|v| format!("{k}{v}")))
            .collect::<Vec<_>>()
            .join(", ");
        row("dmi", v);
    }
    if let Some(fw) = &f.firmware {
        let sb = match f.secure_boot {
            Some(true) => ", Secure Boot on",
            Some(false) => ", Secure Boot off",
            None => "",
        };
        row("firmware", format!("{fw}{sb}"));
    }
    rows
}
