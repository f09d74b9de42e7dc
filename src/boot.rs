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
    format!(
        "#!ipxe\n# rackboot: chain to this machine's own script\nchain {}/ipxe/${{net0/mac:hexhyp}}\n",
        inv.urls.base
    )
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

/// DHCP settings the policy needs (from `config::DhcpSettings`).
#[derive(Debug, Clone)]
pub struct DhcpPolicySettings {
    pub mode: crate::config::DhcpMode,
    pub server: std::net::Ipv4Addr,
    pub lease_secs: u32,
    pub efi_x64_file: String,
}

/// The DHCP answer for a request: pure. `None` = not ours (no reply).
/// Reservations: inventory MACs get their fixed address and a loader.
/// Proxy: inventory MACs get the loader only (no address).
pub fn dhcp_answer(
    inv: &Inventory,
    cfg: &DhcpPolicySettings,
    req: &crate::dhcp::DhcpRequest,
) -> Option<crate::dhcp::Answer> {
    use crate::config::DhcpMode;
    let s = inv.by_mac(&req.mac)?;
    let l = loader(inv, req.arch, req.ipxe, &cfg.efi_x64_file);
    let (filename, http_client) = match l {
        Loader::Tftp(f) => (f, false),
        Loader::HttpBoot(u) => (u, true),
        Loader::IpxeScript(u) => (u, false),
    };
    let boot = Some(crate::dhcp::BootFile {
        next_server: cfg.server,
        filename,
        http_client,
        ipxe: req.ipxe,
    });
    match cfg.mode {
        DhcpMode::Off => None,
        DhcpMode::Proxy => Some(crate::dhcp::Answer {
            yiaddr: None,
            subnet_mask: None,
            router: None,
            dns: vec![],
            domain: None,
            hostname: None,
            lease_secs: 0,
            boot,
        }),
        DhcpMode::Reservations | DhcpMode::Pool => Some(crate::dhcp::Answer {
            yiaddr: Some(s.ip),
            subnet_mask: Some(s.netmask),
            router: s.gateway,
            dns: s.dns.clone(),
            domain: s.domain.clone(),
            hostname: Some(s.hostname.clone()),
            lease_secs: cfg.lease_secs,
            boot,
        }),
    }
}

/// `dhcp::DhcpPolicy` over the live inventory snapshot. In pool mode
/// (`pool` set), MACs that are not in the inventory get an address from the
/// pool and no boot file; inventory addresses are never handed out from it.
pub struct InventoryDhcpPolicy {
    pub inventory: tokio::sync::watch::Receiver<std::sync::Arc<Inventory>>,
    pub cfg: DhcpPolicySettings,
    pub pool: Option<std::sync::Arc<crate::dhcp::leases::PoolLeases>>,
}

impl InventoryDhcpPolicy {
    fn pool_for(
        &self,
        mac: &Mac,
    ) -> Option<(std::sync::Arc<Inventory>, &crate::dhcp::leases::PoolLeases)> {
        let pool = self.pool.as_deref()?;
        let inv = self.inventory.borrow().clone();
        if inv.by_mac(mac).is_some() {
            return None;
        }
        // Reservations follow reloads: re-applied once per inventory snapshot.
        pool.sync_reserved(std::sync::Arc::as_ptr(&inv) as usize, || {
            inv.systems().iter().map(|s| s.ip).collect::<Vec<_>>()
        });
        Some((inv, pool))
    }
}

impl crate::dhcp::DhcpPolicy for InventoryDhcpPolicy {
    fn answer(&self, req: &crate::dhcp::DhcpRequest) -> Option<crate::dhcp::Answer> {
        let inv = self.inventory.borrow().clone();
        if let Some(a) = dhcp_answer(&inv, &self.cfg, req) {
            return Some(a);
        }
        drop(inv);
        let (_inv, pool) = self.pool_for(&req.mac)?;
        pool.answer(req, crate::store::now_ms())
    }

    fn lease_event(&self, req: &crate::dhcp::DhcpRequest, ev: &crate::dhcp::LeaseEvent) {
        if let Some((_inv, pool)) = self.pool_for(&req.mac) {
            pool.event(ev, crate::store::now_ms());
        }
    }

    fn commit(
        &self,
        req: &crate::dhcp::DhcpRequest,
        reply: &crate::dhcp::Reply,
    ) -> Option<crate::dhcp::Durable> {
        let (_inv, pool) = self.pool_for(&req.mac)?;
        pool.commit(req, reply)
    }
}
