//! `rackboot discovered`: machines seen on DHCP whose MAC is not in the
//! inventory (asked of the running daemon), `discovered forget MAC`, and the
//! lookup behind `systems add NAME --from-discovered MAC`.

use super::output::{api_failure, client_error, pretty, print_table};
use crate::api::Discovered;
use crate::client::Client;
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct DiscoveredArgs {
    #[command(subcommand)]
    pub cmd: Option<DiscoveredCmd>,
    /// At most this many, most recently seen first (1..=10000).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// JSON for scripts (the API's `[Discovered]`).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum DiscoveredCmd {
    /// Forget a discovered MAC (it is recorded again when it asks again).
    Forget { mac: String },
}

pub fn discovered(dir: &Path, api: Option<&str>, a: DiscoveredArgs) -> ExitCode {
    let c = match Client::from_config(dir, api) {
        Ok(c) => c,
        Err(e) => return client_error(e),
    };
    if let Some(DiscoveredCmd::Forget { mac }) = a.cmd {
        return match c.delete(&format!(
            "/api/v1/discovered/{}",
            crate::http::guard::pct(&mac)
        )) {
            Ok(r) if r.ok() => {
                println!("forgot {mac}");
                ExitCode::SUCCESS
            }
            Ok(r) => api_failure(crate::client::ApiFailure::Refused(r)),
            Err(e) => client_error(e),
        };
    }
    let list: Vec<Discovered> = match c.get_json(&format!(
        "/api/v1/discovered?limit={}",
        a.limit.clamp(1, 10_000)
    )) {
        Ok(v) => v,
        Err(e) => return api_failure(e),
    };
    if a.json {
        println!("{}", pretty(&list));
        return ExitCode::SUCCESS;
    }
    let mut rows = vec![[
        "MAC",
        "ARCH",
        "IPXE",
        "VENDOR CLASS",
        "HOSTNAME",
        "RELAY",
        "IFACE",
        "FIRST SEEN",
        "LAST SEEN",
        "REQUESTS",
        "FACTS",
    ]
    .map(String::from)
    .to_vec()];
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    for d in &list {
        rows.push(vec![
            d.mac.clone(),
            dash(&d.arch),
            if d.ipxe { "yes" } else { "no" }.into(),
            dash(&d.vendor_class),
            dash(&d.hostname),
            dash(&d.relay),
            dash(&d.interface),
            crate::ui::fmt_time(d.first_seen),
            crate::ui::fmt_time(d.last_seen),
            d.count.to_string(),
            d.facts
                .as_ref()
                .map(crate::facts::summary)
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(&rows);
    if list.is_empty() {
        println!("(nothing discovered: every DHCP client seen is in the inventory)");
    } else {
        println!(
            "add one: rackboot systems add NAME --from-discovered {} --ip ADDRESS --profile PROFILE",
            list[0].mac
        );
    }
    ExitCode::SUCCESS
}

/// The daemon's record of `mac` (for `systems add --from-discovered`).
pub fn lookup(dir: &Path, api: Option<&str>, mac: &str) -> Result<Discovered, ExitCode> {
    let c = Client::from_config(dir, api).map_err(client_error)?;
    c.get_json(&format!(
        "/api/v1/discovered/{}",
        crate::http::guard::pct(mac)
    ))
    .map_err(api_failure)
}

/// Forget a MAC adopted as `system` (its reported facts become the
/// system's); a failure is a warning (the system is added, and a MAC in the
/// inventory is no longer listed anyway).
pub fn forget_adopted(dir: &Path, api: Option<&str>, mac: &str, system: &str) {
    let r = Client::from_config(dir, api)
        .map_err(|e| e.to_string())
        .and_then(|c| {
            c.delete(&format!(
                "/api/v1/discovered/{}?adopted_by={}",
                crate::http::guard::pct(mac),
                crate::http::guard::pct(system)
            ))
            .map_err(|e| e.to_string())
        });
    match r {
        Ok(r) if r.ok() => {}
        Ok(r) => eprintln!(
            "warning: the discovered record of {mac} stays: {}",
            r.error_message()
        ),
        Err(e) => eprintln!("warning: the discovered record of {mac} stays: {e}"),
    }
}
