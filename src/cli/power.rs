//! `power SYSTEM... OP` and `bootdev SYSTEM... DEV` through the daemon's
//! API, in parallel, one line per system; and the POWER column of
//! `systems list --power`.

use super::output::{client_error, fail, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE};
use crate::api;
use crate::client::{self, Client, ClientError, Response};
use crate::config::Settings;
use crate::inventory::{Inventory, System};
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

pub fn power(dir: &Path, api: Option<&str>, systems: &[String], op: &str) -> ExitCode {
    if op != "status" && crate::power::PowerOp::parse(op).is_none() {
        return fail(
            EXIT_USAGE,
            format!("unknown power operation {op:?}: status|on|off|cycle|reset|soft"),
        );
    }
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let results = parallel(systems, |s| {
        let path = format!("/api/v1/systems/{s}/power");
        if op == "status" {
            c.get(&path)
        } else {
            c.post(&path, &api::PowerRequest { op: op.to_string() })
        }
    });
    report(systems, results, |r| {
        if op == "status" {
            r.json::<api::PowerState>().map(|p| p.power)
        } else {
            r.json::<api::PowerDone>().map(|_| format!("{op}: ok"))
        }
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
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let results = parallel(systems, |s| {
        let path = format!("/api/v1/systems/{s}/bootdev");
        if dev == "show" {
            c.get(&path)
        } else {
            let req = api::BootDevRequest {
                device: dev.to_string(),
                persistent,
                uefi,
            };
            c.put(&path, &req)
        }
    });
    report(systems, results, |r| {
        let b: api::BootDev = r.json()?;
        Ok(format!(
            "boot device {}{}{}",
            b.device,
            if b.persistent {
                ", persistent"
            } else {
                ", next boot only"
            },
            if b.uefi { ", UEFI" } else { "" }
        ))
    })
}

fn parallel<F>(systems: &[String], f: F) -> Vec<Result<Response, ClientError>>
where
    F: Fn(&str) -> Result<Response, ClientError> + Sync,
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

/// One line per system: `ok_line` of its answer, or `FAILED: why`.
fn report(
    systems: &[String],
    results: Vec<Result<Response, ClientError>>,
    ok_line: impl Fn(&Response) -> Result<String, ClientError>,
) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let w = systems.iter().map(|s| s.len()).max().unwrap_or(8);
    for (s, r) in systems.iter().zip(results) {
        let line = match r {
            Ok(r) if r.ok() => ok_line(&r),
            Ok(r) => {
                println!("{s:<w$}  FAILED: {}", r.error_message());
                code = ExitCode::from(EXIT_FAILED);
                continue;
            }
            Err(e) => Err(e),
        };
        match line {
            Ok(l) => println!("{s:<w$}  {l}"),
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

/// Power state per system through the daemon's API (`-` without a BMC,
/// the error text when the BMC or the daemon does not answer).
pub fn states(settings: &Settings, api: Option<&str>, inv: &Inventory) -> HashMap<String, String> {
    let c = match client::api_addr(api, Some(settings)) {
        Ok(addr) => Client::new(addr, client::api_token(settings)),
        Err(e) => {
            return inv
                .systems()
                .iter()
                .map(|s| (s.name.clone(), format!("error: {e}")))
                .collect()
        }
    };
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
                        let path = format!("/api/v1/systems/{}/power", s.name);
                        match c.get_json::<api::PowerState>(&path) {
                            Ok(p) => p.power,
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

/// `netboot SYSTEM... on|off [--persistent]`: the manual netboot switch (the
/// next boot gets the profile's image; `--persistent`: every boot, also after
/// an install-done callback, for diskless and live machines).
pub fn netboot(
    dir: &Path,
    api: Option<&str>,
    systems: &[String],
    state: &str,
    persistent: bool,
) -> ExitCode {
    let enabled = match state {
        "on" => true,
        "off" => false,
        s => return fail(EXIT_USAGE, format!("{s:?}: expected on or off")),
    };
    if persistent && !enabled {
        return fail(EXIT_USAGE, "--persistent goes with on");
    }
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    let results = parallel(systems, |s| {
        c.put(
            &format!("/api/v1/systems/{s}/netboot"),
            &api::NetbootRequest {
                enabled,
                persistent,
            },
        )
    });
    report(systems, results, |r| {
        r.json::<api::NetbootState>()
            .map(|n| match (n.netboot, n.persistent) {
                (false, _) => "netboot off: boots its local disk".to_string(),
                (true, false) => "netboot on: the next boot gets its profile's image".to_string(),
                (true, true) => {
                    "netboot on, persistent: every boot gets its profile's image".to_string()
                }
            })
    })
}
