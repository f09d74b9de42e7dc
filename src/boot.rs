//! "What does MAC X get now?": the one boot policy every protocol asks.
//! Pure: it reads an `Inventory` snapshot and a `BootTable` snapshot and
//! returns a value. No I/O, no clock. DHCP, TFTP and HTTP encode the answer.

use crate::inventory::{Inventory, System};
use crate::model::{Arch, Mac};
use crate::render::{RenderError, RenderKind, RunCtx};
use std::collections::HashMap;

/// Machines whose next netboot gets the installer (a reimage is pending),
/// with the run their callback belongs to. Built by the engine from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootTable {
    pending: HashMap<String, RunCtx>,
}

impl BootTable {
    pub fn new() -> BootTable {
        BootTable::default()
    }

    pub fn insert(&mut self, system: &str, run: RunCtx) {
        self.pending.insert(system.to_string(), run);
    }

    pub fn remove(&mut self, system: &str) {
        self.pending.remove(system);
    }

    pub fn get(&self, system: &str) -> Option<&RunCtx> {
        self.pending.get(system)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The answer for one MAC right now.
#[derive(Debug, Clone, PartialEq)]
pub enum BootDecision<'a> {
    /// Not in the inventory: not ours.
    Ignore,
    /// Known, no reimage pending: boot the local disk.
    LocalDisk(&'a System),
    /// A reimage is pending: boot the profile's installer, for this run.
    Install { system: &'a System, run: &'a RunCtx },
}

/// The decision. Called several times per boot (DHCP, script, config), so it
/// never changes state: only the engine flips a machine's intent.
pub fn decide<'a>(inv: &'a Inventory, table: &'a BootTable, mac: &Mac) -> BootDecision<'a> {
    match inv.by_mac(mac) {
        None => BootDecision::Ignore,
        Some(s) => match table.get(&s.name) {
            Some(run) => BootDecision::Install { system: s, run },
            None => BootDecision::LocalDisk(s),
        },
    }
}

/// What a network boot client loads first (the DHCP boot file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// A file from our TFTP server.
    Tftp(String),
    /// A URL for a UEFI HTTP Boot client (DHCP option 60 must say HTTPClient).
    HttpBoot(String),
    /// iPXE is already running: give it the script URL.
    IpxeScript(String),
}

/// Which loader a client gets, by firmware. Pure.
/// `efi_x64_file` is `ipxe.efi` or `snponly.efi` (settings).
pub fn loader(inv: &Inventory, arch: Option<Arch>, ipxe: bool, efi_x64_file: &str) -> Loader {
    if ipxe {
        return Loader::IpxeScript(inv.urls.boot_ipxe());
    }
    match arch.unwrap_or(Arch::BiosX86) {
        Arch::BiosX86 | Arch::Other(_) => Loader::Tftp("undionly.kpxe".into()),
        Arch::EfiX64 => Loader::Tftp(efi_x64_file.to_string()),
        Arch::EfiArm64 => Loader::Tftp("arm64/ipxe.efi".into()),
        Arch::EfiX64Http => Loader::HttpBoot(format!("{}/firmware/ipxe.efi", inv.urls.base)),
        Arch::EfiArm64Http => {
            Loader::HttpBoot(format!("{}/firmware/arm64/ipxe.efi", inv.urls.base))
        }
    }
}

/// The generic script served at `/boot.ipxe`: chain to the per-MAC script.
pub fn generic_ipxe_script(inv: &Inventory) -> String {
    let ctx = minijinja::context! { base => inv.urls.base.clone() };
    inv.templates
        .render(crate::template::BUILTIN_GENERIC_IPXE, &ctx)
        .expect("the built-in script renders with its one variable")
}

/// The local-boot script: hand control back to the firmware, which boots the
/// next device in its order (the disk). `exit` works for SeaBIOS and OVMF.
pub fn local_ipxe_script(s: &System) -> String {
    format!(
        "#!ipxe\necho rackboot: {} ({}) has no reimage pending: booting from local disk\nexit\n",
        s.name,
        s.primary_mac()
    )
}

/// The per-MAC iPXE script for a decision (`None` for `Ignore`).
pub fn ipxe_script(inv: &Inventory, d: &BootDecision<'_>) -> Option<Result<String, RenderError>> {
    match d {
        BootDecision::Ignore => None,
        BootDecision::LocalDisk(s) => Some(Ok(local_ipxe_script(s))),
        BootDecision::Install { system, run } => Some(
            inv.render(system, RenderKind::Ipxe, run)
                .map(|o| o.unwrap_or_default()),
        ),
    }
}

/// What an inventory machine's DHCP answer carries, before any wire
/// encoding: the machine (its reserved address and network settings) and
/// the loader for its firmware. `None` from [`netboot`]: not ours.
#[derive(Debug, Clone, PartialEq)]
pub struct Netboot<'a> {
    pub system: &'a System,
    pub loader: Loader,
}

/// What MAC X gets from DHCP: its system and loader, or `None` (not in the
/// inventory). Pure; `dhcp::policy` encodes it into a reply.
pub fn netboot<'a>(
    inv: &'a Inventory,
    mac: &Mac,
    arch: Option<Arch>,
    ipxe: bool,
    efi_x64_file: &str,
) -> Option<Netboot<'a>> {
    let system = inv.by_mac(mac)?;
    Some(Netboot {
        system,
        loader: loader(inv, arch, ipxe, efi_x64_file),
    })
}
