//! The admin commands: `systems …`, `profiles …`, `completions`. Edits go
//! through `admin` (document edit, whole-inventory validation, lock, atomic
//! write); afterwards the running daemon is asked to reload through its API
//! (a tiny HTTP/1.1 client over `TcpStream`).
//!
//! Exit codes: 0 done (or nothing to change), 1 refused (with the reasons),
//! 2 usage error.

use crate::admin::{self, AdminError, BmcChange, Outcome, ProfileChange, SystemChange};
use crate::cli::print_table;
use crate::config::{self, Settings};
use crate::inventory::{Inventory, Profile, SecretRef, System};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const REFUSED: u8 = 1;
const USAGE: u8 = 2;

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

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum CompletionShell {
    Bash,
    Zsh,
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
    #[arg(long = "mac", value_name = "MAC", required = true)]
    pub macs: Vec<String>,
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
    #[arg(long, value_name = "KEY", value_parser = ["hostname", "netmask", "gateway", "dns", "domain", "bmc"])]
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
    /// Port to wait for after the install (repeat for more; replaces the list).
    #[arg(long = "wait-port", value_name = "PORT")]
    pub wait_ports: Vec<u16>,
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
    #[arg(long, value_name = "KEY")]
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
        ExitCode::from(REFUSED)
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
    {
        Some(BmcChange {
            kind: common.bmc_kind.clone(),
            address: common.bmc_address.clone(),
            username: common.bmc_user.clone(),
            password_file: common.bmc_password_file.clone(),
            password_env: common.bmc_password_env.clone(),
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
        bmc,
        vars: vars_json(&common.vars),
        ..SystemChange::default()
    }
}

fn profile_change(f: &ProfileFields) -> ProfileChange {
    ProfileChange {
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
        wait_ports: (!f.wait_ports.is_empty()).then(|| f.wait_ports.clone()),
        on_interrupted_stage: f.on_interrupted_stage.clone(),
        timeouts: f.timeouts.iter().cloned().collect(),
        vars: vars_json(&f.vars),
        ..ProfileChange::default()
    }
}

pub fn run_systems(dir: &Path, cmd: SystemsCmd) -> ExitCode {
    let settings = match settings_or_exit(dir) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        SystemsCmd::Add(a) => {
            if a.common.bmc_password.is_some() {
                eprintln!("{PASSWORD_REFUSAL}");
                return ExitCode::from(USAGE);
            }
            let mut ch = system_change(&a.common);
            ch.macs = Some(a.macs.clone());
            ch.ip = Some(a.ip.clone());
            ch.profile = Some(a.profile.clone());
            let r = admin::add_system(&settings, &a.name, &ch);
            finish(&settings, &a.out, "added", Target::System(&a.name), r)
        }
        SystemsCmd::Edit(a) => {
            if a.common.bmc_password.is_some() {
                eprintln!("{PASSWORD_REFUSAL}");
                return ExitCode::from(USAGE);
            }
            let mut ch = system_change(&a.common);
            ch.add_macs = a.macs.clone();
            ch.remove_macs = a.remove_macs.clone();
            ch.ip = a.ip.clone();
            ch.profile = a.profile.clone();
            ch.unset_vars = a.unset_vars.clone();
            ch.unset = a.unset.clone();
            let r = admin::edit_system(&settings, &a.name, &ch);
            finish(&settings, &a.out, "changed", Target::System(&a.name), r)
        }
        SystemsCmd::Remove { name, out } => {
            let r = admin::remove_system(&settings, &name);
            finish(&settings, &out, "removed", Target::System(&name), r)
        }
        SystemsCmd::List { json, power } => with_inventory(&settings, |inv| {
            let states = power.then(|| power_states(&settings, inv));
            if json {
                let v: Vec<Value> = inv
                    .systems()
                    .iter()
                    .map(|s| {
                        let mut v = system_out_json(s);
                        if let Some(p) = &states {
                            v["power"] = json!(p.get(&s.name));
                        }
                        v
                    })
                    .collect();
                println!("{}", pretty(&Value::Array(v)));
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
                return ExitCode::from(REFUSED);
            };
            if json {
                println!("{}", pretty(&system_out_json(s)));
            } else {
                print_system(s);
            }
            ExitCode::SUCCESS
        }),
        SystemsCmd::BenchAdd {
            count,
            first,
            profile,
        } => bench_add(&settings, count, first, &profile),
    }
}

pub fn run_profiles(dir: &Path, cmd: ProfilesCmd) -> ExitCode {
    let settings = match settings_or_exit(dir) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match cmd {
        ProfilesCmd::Add(a) => {
            let r = admin::add_profile(&settings, &a.name, &profile_change(&a.fields));
            finish(&settings, &a.out, "added", Target::Profile(&a.name), r)
        }
        ProfilesCmd::Edit(a) => {
            let mut ch = profile_change(&a.fields);
            ch.unset = a.unset.clone();
            ch.unset_vars = a.unset_vars.clone();
            let r = admin::edit_profile(&settings, &a.name, &ch);
            finish(&settings, &a.out, "changed", Target::Profile(&a.name), r)
        }
        ProfilesCmd::Remove { name, out } => {
            let r = admin::remove_profile(&settings, &name);
            finish(&settings, &out, "removed", Target::Profile(&name), r)
        }
        ProfilesCmd::List { json } => with_inventory(&settings, |inv| {
            if json {
                let v: Vec<Value> = inv
                    .profiles()
                    .values()
                    .map(|p| json!(crate::api::Profile::from(p)))
                    .collect();
                println!("{}", pretty(&Value::Array(v)));
            } else {
                print_profiles(inv);
            }
            ExitCode::SUCCESS
        }),
        ProfilesCmd::Show { name, json } => with_inventory(&settings, |inv| {
            let Some(p) = inv.profile(&name) else {
                eprintln!("error: no profile {name:?}");
                return ExitCode::from(REFUSED);
            };
            if json {
                let mut v = json!(crate::api::Profile::from(p));
                v["vars_origin"] = json!(vars_origin(inv, p));
                v["systems"] = json!(inv
                    .systems()
                    .iter()
                    .filter(|s| s.profile == p.name)
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>());
                println!("{}", pretty(&v));
            } else {
                print_profile(inv, p);
            }
            ExitCode::SUCCESS
        }),
    }
}

/// `rackboot completions bash|zsh`: generated from the CLI definition.
pub fn run_completions(shell: CompletionShell) -> ExitCode {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let sh = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
    };
    let mut buf = Vec::new();
    clap_complete::generate(sh, &mut cmd, "rackboot", &mut buf);
    print!("{}", strip_hidden(&String::from_utf8_lossy(&buf)));
    ExitCode::SUCCESS
}

/// clap_complete offers hidden flags and commands too; drop the refusal-only
/// `--bmc-password` (bash: its `opts` token and `case` arm; zsh: its spec
/// line) and the benchmark command (bash: its `opts` token; zsh: its line).
fn strip_hidden(script: &str) -> String {
    const FLAG: &str = "--bmc-password";
    let mut out = String::with_capacity(script.len());
    let mut skip = 0;
    for line in script.split_inclusive('\n') {
        let t = line.trim();
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if t == format!("{FLAG})") {
            skip = 3; // COMPREPLY=..., return 0, ;;
            continue;
        }
        if t.starts_with(&format!("'{FLAG}=[")) || t.starts_with("'bench-add:") {
            continue;
        }
        if t.starts_with("opts=\"") {
            let kept: Vec<&str> = line
                .split(' ')
                .filter(|w| *w != FLAG && *w != "bench-add")
                .collect();
            out.push_str(&kept.join(" "));
            continue;
        }
        out.push_str(line);
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn with_inventory(settings: &Settings, f: impl FnOnce(&Inventory) -> ExitCode) -> ExitCode {
    match admin::load_for_reading(settings) {
        Ok(inv) => f(&inv),
        Err(e) => {
            eprint!("error: {e}");
            ExitCode::from(REFUSED)
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
    out: &OutArgs,
    verb: &str,
    target: Target<'_>,
    r: Result<Outcome, AdminError>,
) -> ExitCode {
    let o = match r {
        Ok(o) => o,
        Err(e) => {
            if out.json {
                let mut v = e.to_json();
                v["ok"] = json!(false);
                println!("{}", pretty(&v));
            }
            eprintln!("error: {e}");
            return ExitCode::from(match e {
                AdminError::Usage(_) => USAGE,
                _ => REFUSED,
            });
        }
    };
    let (kind, name) = match target {
        Target::System(n) => ("system", n),
        Target::Profile(n) => ("profile", n),
    };
    let changed = !o.written.is_empty();
    let daemon = if !changed {
        None
    } else if out.no_reload {
        Some(DaemonReply::Skipped)
    } else {
        Some(ask_reload(settings))
    };
    let shown: Vec<String> = o
        .written
        .iter()
        .map(|p| config::show(&settings.config_dir, p))
        .collect();
    if out.json {
        let mut v = json!({
            "ok": true,
            "changed": changed,
            "action": if changed { verb } else { "unchanged" },
            "written": shown,
            "rendered": o.rendered,
            "full_check": o.full_check,
        });
        match target {
            Target::System(n) => {
                v["system"] = o
                    .inventory
                    .system(n)
                    .map(system_out_json)
                    .unwrap_or(Value::Null)
            }
            Target::Profile(n) => {
                v["profile"] = o
                    .inventory
                    .profile(n)
                    .map(|p| json!(crate::api::Profile::from(p)))
                    .unwrap_or(Value::Null)
            }
        }
        if let Some(d) = &daemon {
            v["daemon"] = d.to_json(settings);
        }
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
        println!("{}", d.message(settings));
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Output

fn system_out_json(s: &System) -> Value {
    // The CLI reads files, not the daemon's run state.
    let mut v = crate::api::System::from(s);
    if let (Some(b), Some(bj)) = (&s.bmc, v.bmc.as_mut()) {
        bj.password_source = Some(crate::api::convert::password_source(&b.password));
    }
    json!(v)
}

/// NAME PARENT INSTALLER KERNEL TEMPLATE: the first columns of a profiles table.
pub(crate) fn profile_row(p: &crate::inventory::Profile) -> Vec<String> {
    vec![
        if p.is_abstract {
            format!("{} (abstract)", p.name)
        } else {
            p.name.clone()
        },
        p.parent.clone().unwrap_or_else(|| "-".into()),
        p.installer.as_str().into(),
        if p.kernel.is_empty() {
            "-".into()
        } else {
            p.kernel.clone()
        },
        p.template
            .clone()
            .or_else(|| p.user_data.clone())
            .unwrap_or_else(|| "-".into()),
    ]
}

pub(crate) fn print_systems<'a>(systems: impl Iterator<Item = &'a System>) {
    print_systems_with(systems, None)
}

/// Power state per system through the daemon's API (`-` without a BMC,
/// the error text when the BMC or the daemon does not answer).
fn power_states(settings: &Settings, inv: &Inventory) -> HashMap<String, String> {
    let c = crate::client::Client::new(api_addr(settings), crate::client::api_token(settings));
    let names: Vec<&System> = inv.systems().iter().collect();
    std::thread::scope(|sc| {
        let hs: Vec<_> = names
            .iter()
            .map(|s| {
                let c = &c;
                sc.spawn(move || {
                    let st = if s.bmc.is_none() {
                        "-".to_string()
                    } else {
                        match c.get(&format!("/api/v1/systems/{}/power", s.name)) {
                            Ok(r) if r.ok() => {
                                r.value()["power"].as_str().unwrap_or("?").to_string()
                            }
                            Ok(r) => format!("error: {}", r.error_message()),
                            Err(e) => format!("error: {e}"),
                        }
                    };
                    (s.name.clone(), st)
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

fn print_systems_with<'a>(
    systems: impl Iterator<Item = &'a System>,
    power: Option<&HashMap<String, String>>,
) {
    let mut rows = vec![vec![
        "SYSTEM".to_string(),
        "HOSTNAME".into(),
        "MAC".into(),
        "IP".into(),
        "PROFILE".into(),
        "BMC".into(),
    ]];
    if power.is_some() {
        rows[0].push("POWER".into());
    }
    for s in systems {
        let cell = power.map(|p| p.get(&s.name).cloned().unwrap_or_default());
        rows.push(vec![
            s.name.clone(),
            s.hostname.clone(),
            s.macs
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(","),
            s.ip.to_string(),
            s.profile.clone(),
            s.bmc
                .as_ref()
                .map(|b| format!("{} {}", b.kind.as_str(), b.address))
                .unwrap_or_else(|| "-".into()),
        ]);
        if let Some(c) = cell {
            rows.last_mut().expect("pushed").push(c);
        }
    }
    print_table(&rows);
}

fn toml_show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_system(s: &System) {
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    let mut rows = vec![
        vec!["name".to_string(), s.name.clone()],
        vec!["hostname".into(), s.hostname.clone()],
        vec![
            "macs".into(),
            s.macs
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ],
        vec!["ip".into(), s.ip.to_string()],
        vec!["netmask".into(), s.netmask.to_string()],
        vec!["gateway".into(), opt(s.gateway.map(|g| g.to_string()))],
        vec![
            "dns".into(),
            if s.dns.is_empty() {
                "-".into()
            } else {
                s.dns
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ],
        vec!["domain".into(), opt(s.domain.clone())],
        vec!["profile".into(), s.profile.clone()],
    ];
    match &s.bmc {
        None => rows.push(vec!["bmc".into(), "-".into()]),
        Some(b) => {
            rows.push(vec!["bmc.kind".into(), b.kind.as_str().into()]);
            rows.push(vec!["bmc.address".into(), b.address.clone()]);
            rows.push(vec!["bmc.username".into(), b.username.clone()]);
            rows.push(vec![
                "bmc.password".into(),
                match &b.password {
                    SecretRef::File(p) => format!("from file {}", p.display()),
                    SecretRef::Env(e) => format!("from environment variable {e}"),
                },
            ]);
        }
    }
    for (k, v) in &s.vars {
        rows.push(vec![format!("vars.{k}"), toml_show(v)]);
    }
    print_table(&rows);
}

fn print_profiles(inv: &Inventory) {
    let mut rows = vec![vec![
        "PROFILE".to_string(),
        "PARENT".into(),
        "INSTALLER".into(),
        "KERNEL".into(),
        "TEMPLATE".into(),
        "SYSTEMS".into(),
    ]];
    for p in inv.profiles().values() {
        let n = inv.systems().iter().filter(|s| s.profile == p.name).count();
        let mut row = profile_row(p);
        row.push(n.to_string());
        rows.push(row);
    }
    print_table(&rows);
}

/// For each of a profile's variables, the profile in its chain that set the value.
fn vars_origin(inv: &Inventory, p: &Profile) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in &p.vars {
        let mut cur = p;
        loop {
            match cur.parent.as_deref().and_then(|n| inv.profile(n)) {
                Some(parent) if parent.vars.get(k) == Some(v) => cur = parent,
                _ => break,
            }
        }
        out.insert(k.clone(), cur.name.clone());
    }
    out
}

fn print_profile(inv: &Inventory, p: &Profile) {
    let from = |field: &str| {
        p.origin
            .get(field)
            .cloned()
            .unwrap_or_else(|| "(default)".into())
    };
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![vec!["FIELD".to_string(), "VALUE".into(), "FROM".into()]];
    let mut row = |f: &str, v: String, src: String| rows.push(vec![f.to_string(), v, src]);
    row("name", p.name.clone(), p.name.clone());
    row(
        "parent",
        p.parent.clone().unwrap_or_else(|| "-".into()),
        p.name.clone(),
    );
    row(
        "abstract",
        p.is_abstract.to_string(),
        if p.is_abstract {
            p.name.clone()
        } else {
            "(default)".into()
        },
    );
    row("description", p.description.clone(), from("description"));
    row("kernel", p.kernel.clone(), from("kernel"));
    row("initrd", p.initrd.join(", "), from("initrd"));
    row("kernel_args", p.kernel_args.clone(), from("kernel_args"));
    row("installer", p.installer.as_str().into(), from("installer"));
    row("template", opt(&p.template), from("template"));
    row("user_data", opt(&p.user_data), from("user_data"));
    row("meta_data", opt(&p.meta_data), from("meta_data"));
    row("vendor_data", opt(&p.vendor_data), from("vendor_data"));
    row(
        "ipxe_template",
        p.ipxe_template
            .clone()
            .unwrap_or_else(|| "(built in)".into()),
        from("ipxe_template"),
    );
    row(
        "wait_ports",
        p.wait_ports
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        from("wait_ports"),
    );
    let t = &p.timeouts;
    for (name, d) in [
        ("power", t.power),
        ("dhcp", t.dhcp),
        ("kernel", t.kernel),
        ("config", t.config),
        ("install", t.install),
        ("reboot", t.reboot),
        ("ssh", t.ssh),
    ] {
        row(
            &format!("timeouts.{name}"),
            format!("{}s", d.as_secs()),
            from("timeouts"),
        );
    }
    row(
        "stages",
        if p.stages.is_empty() {
            "-".into()
        } else {
            p.stages
                .iter()
                .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        from("stages"),
    );
    row(
        "on_interrupted_stage",
        if p.rerun_interrupted { "rerun" } else { "fail" }.into(),
        from("on_interrupted_stage"),
    );
    let vo = vars_origin(inv, p);
    for (k, v) in &p.vars {
        row(
            &format!("vars.{k}"),
            toml_show(v),
            vo.get(k).cloned().unwrap_or_default(),
        );
    }
    print_table(&rows);
    let users: Vec<&str> = inv
        .systems()
        .iter()
        .filter(|s| s.profile == p.name)
        .map(|s| s.name.as_str())
        .collect();
    let children: Vec<&str> = inv
        .profiles()
        .values()
        .filter(|c| c.parent.as_deref() == Some(p.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "\nused by {} system(s){}{}",
        users.len(),
        if users.is_empty() {
            String::new()
        } else {
            format!(": {}", preview_list(&users))
        },
        if children.is_empty() {
            String::new()
        } else {
            format!("; child profiles: {}", children.join(", "))
        }
    );
}

fn preview_list(v: &[&str]) -> String {
    if v.len() <= 10 {
        v.join(", ")
    } else {
        format!("{}, … ({} more)", v[..10].join(", "), v.len() - 10)
    }
}

// ---------------------------------------------------------------------------
// Asking the daemon to reload

/// What the daemon said to `POST /api/v1/reload`.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonReply {
    Reloaded {
        generation: u64,
        systems: u64,
    },
    /// Nothing listens at the API address.
    NotRunning,
    /// The daemon answered with an error (token, invalid config).
    Rejected {
        status: u16,
        message: String,
    },
    /// Asking failed some other way (timeout, garbage).
    Failed(String),
    /// `--no-reload`.
    Skipped,
}

fn api_addr(settings: &Settings) -> SocketAddr {
    // `--api` / RACKBOOT_API wins, as for the other daemon commands.
    let env = std::env::var("RACKBOOT_API").ok();
    crate::client::api_addr(env.as_deref(), Some(settings)).unwrap_or(settings.api_listen)
}

impl DaemonReply {
    pub fn message(&self, settings: &Settings) -> String {
        let addr = api_addr(settings);
        match self {
            DaemonReply::Reloaded {
                generation,
                systems,
            } => format!("daemon reloaded: generation {generation} ({systems} systems)"),
            DaemonReply::NotRunning => {
                format!("no daemon running at {addr}: change takes effect at next start")
            }
            DaemonReply::Rejected { status, message } => format!(
                "warning: the daemon at {addr} did not reload (HTTP {status}: {message}); the files \
                 are written: reload with SIGHUP or POST /api/v1/reload (token: RACKBOOT_TOKEN)"
            ),
            DaemonReply::Failed(e) => format!(
                "warning: could not ask the daemon at {addr} to reload ({e}); the files are \
                 written: reload with SIGHUP or POST /api/v1/reload"
            ),
            DaemonReply::Skipped => {
                "not asking the daemon to reload (--no-reload): SIGHUP or POST /api/v1/reload applies it"
                    .into()
            }
        }
    }

    pub fn to_json(&self, settings: &Settings) -> Value {
        let addr = api_addr(settings).to_string();
        let msg = self.message(settings);
        match self {
            DaemonReply::Reloaded {
                generation,
                systems,
            } => {
                json!({"reloaded": true, "address": addr, "generation": generation, "systems": systems, "message": msg})
            }
            DaemonReply::NotRunning => {
                json!({"reloaded": false, "running": false, "address": addr, "message": msg})
            }
            DaemonReply::Rejected { status, .. } => {
                json!({"reloaded": false, "running": true, "address": addr, "status": status, "message": msg})
            }
            DaemonReply::Failed(_) | DaemonReply::Skipped => {
                json!({"reloaded": false, "address": addr, "message": msg})
            }
        }
    }
}

/// The API token the CLI presents: `RACKBOOT_TOKEN`, the configured token
/// variable, the first line of the tokens file, or `data_dir/api-token`.
/// `POST /api/v1/reload` on the daemon at the settings' `api_listen`.
pub fn ask_reload(settings: &Settings) -> DaemonReply {
    let c = crate::client::Client::new(api_addr(settings), crate::client::api_token(settings));
    let r = match c.request("POST", "/api/v1/reload", &[], None) {
        Ok(r) => r,
        Err(crate::client::ClientError::Unreachable {
            listening: false, ..
        }) => return DaemonReply::NotRunning,
        Err(e) => return DaemonReply::Failed(e.to_string()),
    };
    let v = r.value();
    if r.status == 200 {
        return DaemonReply::Reloaded {
            generation: v["generation"].as_u64().unwrap_or(0),
            systems: v["systems"].as_u64().unwrap_or(0),
        };
    }
    DaemonReply::Rejected {
        status: r.status,
        message: r.error_message().replace("\n  ", "; "),
    }
}

// ---------------------------------------------------------------------------
// Benchmark

fn bench_add(settings: &Settings, count: usize, first: usize, profile: &str) -> ExitCode {
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
                return ExitCode::from(REFUSED);
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
