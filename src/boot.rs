//! "What does MAC X get now?": the one boot policy every protocol asks.
//! Pure: it reads an `Inventory` snapshot and a `BootTable` snapshot and
//! returns a value. No I/O, no clock. DHCP, TFTP and HTTP encode the answer.

use crate::inventory::{BootLoader, Inventory, System};
use crate::model::{Arch, Mac};
use crate::render::{RenderError, RenderKind, RunCtx};
use std::collections::HashMap;

/// Machines whose next netboot gets the installer (a reimage is pending),
/// with the run their callback belongs to. Built by the engine from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootTable {
    pending: HashMap<String, RunCtx>,
    /// Systems whose pending run another daemon of the site owns: this
    /// daemon leaves their DHCP to the owner (see [`leave_to_peer`]).
    elsewhere: std::collections::BTreeSet<String>,
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

    /// The same table without a pending installer: what a daemon whose
    /// shared inventory is stale serves (every machine boots its disk).
    pub fn without_installs(&self) -> BootTable {
        BootTable {
            pending: HashMap::new(),
            elsewhere: self.elsewhere.clone(),
        }
    }

    /// Make the manual netboot switches (entries that are not a run's) the
    /// ones in `want`, as the database has them (a peer of the site set or
    /// cleared one): an entry with the same id, token and persistence is
    /// kept as it is; a run's entry is never replaced. True when changed.
    pub fn sync_manual(&mut self, want: HashMap<String, RunCtx>) -> bool {
        let mut changed = false;
        self.pending.retain(|system, ctx| {
            if is_run_id(&ctx.id) {
                return true;
            }
            let keep = want.get(system).is_some_and(|w| {
                w.id == ctx.id && w.token == ctx.token && w.persistent == ctx.persistent
            });
            changed |= !keep;
            keep
        });
        for (system, ctx) in want {
            if let std::collections::hash_map::Entry::Vacant(e) = self.pending.entry(system) {
                e.insert(ctx);
                changed = true;
            }
        }
        changed
    }

    /// Leave `system`'s DHCP to the peer that now drives its run (until
    /// the next [`Self::set_elsewhere`]).
    pub fn leave(&mut self, system: &str) {
        self.pending.remove(system);
        self.elsewhere.insert(system.to_string());
    }

    /// What a daemon serves while a peer may be taking its runs over (no
    /// heartbeat for most of a lease TTL, a live peer in its domains): its
    /// runs' machines are left to the peers, as after [`Self::leave`];
    /// manual switches, which every daemon of the site serves, stay.
    pub fn stood_down(&self) -> BootTable {
        let mut t = self.clone();
        let runs: Vec<String> = t
            .pending
            .iter()
            .filter(|(_, c)| is_run_id(&c.id))
            .map(|(s, _)| s.clone())
            .collect();
        for s in runs {
            t.leave(&s);
        }
        t
    }

    /// Replace the set of systems whose pending run a peer owns; true when
    /// it changed.
    pub fn set_elsewhere(&mut self, systems: std::collections::BTreeSet<String>) -> bool {
        let changed = self.elsewhere != systems;
        self.elsewhere = systems;
        changed
    }
}

/// Whether a netboot entry's id is a reimage run's (`run-…`), not a
/// manual switch's (`manual-…`).
pub fn is_run_id(id: &str) -> bool {
    id.starts_with("run-")
}

/// Whether this daemon stays silent on DHCP for `mac`: its reimage is
/// pending and another daemon owns the run, so the owner alone answers and
/// the machine's whole boot (script, kernel, installer, callback) goes to
/// the daemon driving its run. A run this daemon owns or that nobody has
/// claimed yet is answered as usual; so is every machine without a run
/// (reservations are answered identically by every daemon).
pub fn leave_to_peer(inv: &Inventory, table: &BootTable, mac: &Mac) -> bool {
    inv.by_mac(mac)
        .is_some_and(|s| table.elsewhere.contains(&s.name) && table.get(&s.name).is_none())
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

/// The boot file of a UEFI x64 PXE client whose profile has `loader =
/// "grub"`: Debian's signed shim. shim loads "the directory of its own boot
/// file + `grubx64.efi`" from the DHCP siaddr over TFTP, so the signed GRUB
/// sits beside it as [`GRUB_NEXT`].
pub const GRUB_SHIM: &str = "grub/bootx64.efi";
/// The signed network GRUB, fetched by shim (never named in DHCP).
pub const GRUB_NEXT: &str = "grub/grubx64.efi";

/// Which loader a client gets, by firmware and the machine's profile
/// `loader`. Pure. `efi_x64_file` is `ipxe.efi` or `snponly.efi` (settings).
///
/// `BootLoader::Grub` changes one case only: a UEFI x64 PXE client (arch
/// 7/9, not yet iPXE) gets shim ([`GRUB_SHIM`]). A client that already runs
/// iPXE gets its script as always (iPXE is unsigned: whatever loaded it
/// runs without Secure Boot, and the script boots the same installer). BIOS,
/// ARM64 and UEFI HTTP Boot clients are unchanged (Debian 12's signed GRUB
/// cannot read HTTP, so HTTP Boot stays iPXE).
pub fn loader(
    inv: &Inventory,
    arch: Option<Arch>,
    ipxe: bool,
    efi_x64_file: &str,
    first: BootLoader,
) -> Loader {
    if ipxe {
        return Loader::IpxeScript(inv.urls.boot_ipxe());
    }
    match arch.unwrap_or(Arch::BiosX86) {
        Arch::BiosX86 | Arch::Other(_) => Loader::Tftp("undionly.kpxe".into()),
        Arch::EfiX64 if first == BootLoader::Grub => Loader::Tftp(GRUB_SHIM.into()),
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
    // A validated inventory always has the profile; iPXE if not.
    let first = system.loader(inv.profile(&system.profile));
    Some(Netboot {
        system,
        loader: loader(inv, arch, ipxe, efi_x64_file, first),
    })
}

/// GRUB's own config, `grub/grub.cfg` (Debian's signed network GRUB has the
/// prefix `/grub` and reads it from the TFTP server it came from): hand over
/// to the machine's file. No protocol in the path, so GRUB keeps TFTP (as
/// MAAS does); `$net_default_mac` is lowercase with colons. A MAC without a
/// file (not in the inventory) falls through to `exit 1`: the firmware's
/// next boot device.
pub const GRUB_DISPATCH_CFG: &str = "\
# rackboot: GRUB reads this first (prefix /grub); each machine has its own file.
set timeout=0
configfile /grub/grub.cfg-${net_default_mac}
echo \"rackboot: no config for ${net_default_mac}: booting the next device\"
sleep 5
exit 1
";

/// The TFTP path of a machine's GRUB config (`grub/grub.cfg-<mac>`, lowercase, colons).
pub fn grub_cfg_path(mac: &Mac) -> String {
    format!("grub/grub.cfg-{mac}")
}

/// The local-boot GRUB config: chainload the disk's own shim/boot loader
/// from its EFI system partition (Secure Boot: only signed loaders), like
/// MAAS's `config.local`; if none is found, `exit 1` hands control back to
/// the firmware, which boots its next device.
pub fn local_grub_cfg(s: &System) -> String {
    format!(
        "# rackboot: {name} ({mac}) has no reimage pending: local boot\n\
         set timeout=0\n\
         echo 'rackboot: {name} ({mac}) has no reimage pending: booting from local disk'\n\
         for rb_efi in debian/shimx64.efi boot/bootx64.efi; do\n\
         \x20 if search --set=root --file /efi/$rb_efi; then\n\
         \x20   chainloader /efi/$rb_efi\n\
         \x20   boot\n\
         \x20 fi\n\
         done\n\
         exit 1\n",
        name = s.name,
        mac = s.primary_mac()
    )
}

/// The per-MAC GRUB config for a decision (`None` for `Ignore`): the
/// installer (kernel and initrd over TFTP, with retries) or local boot.
pub fn grub_cfg(inv: &Inventory, d: &BootDecision<'_>) -> Option<Result<String, RenderError>> {
    match d {
        BootDecision::Ignore => None,
        BootDecision::LocalDisk(s) => Some(Ok(local_grub_cfg(s))),
        BootDecision::Install { system, run } => Some(
            inv.render(system, RenderKind::Grub, run)
                .map(|o| o.unwrap_or_default()),
        ),
    }
}

/// What a file fetched by a machine is to its boot: its profile's kernel or
/// one of its initrds (relative to the boot dir), or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFileKind {
    Kernel,
    Initrd,
    Other,
}

/// The machine at `peer` (its reserved address) and what `path` is to it.
/// `None`: the address is no inventory machine's.
pub fn boot_file_of<'a>(
    inv: &'a Inventory,
    peer: std::net::Ipv4Addr,
    path: &str,
) -> Option<(&'a System, BootFileKind)> {
    let s = inv.by_ip(&peer)?;
    let p = inv.profile(&s.profile)?;
    let kind = if p.kernel == path {
        BootFileKind::Kernel
    } else if p.initrd.iter().any(|i| i == path) {
        BootFileKind::Initrd
    } else {
        BootFileKind::Other
    };
    Some((s, kind))
}

// ---- inspection of discovered machines (`dhcp.inspect_discovered`) ----

/// The profile a MAC outside the inventory boots when discovered machines
/// are inspected: the one `rackboot inspect` uses (`api::runs::INSPECT_PROFILE`,
/// not imported: `api` imports `config`, which imports `boot`; a test in
/// `dhcp::policy` holds them equal).
pub const DISCOVERED_PROFILE: &str = "inspect";
/// The run id a discovered machine's inspection renders with (`run.id` in
/// templates: `kickstarts/lab/inspect.sh.j2` powers the machine off itself
/// on it, as there is no BMC to do it).
pub const DISCOVERED_RUN: &str = "discovered";

/// The facts token of MACs outside the inventory: the HMAC-SHA256 of the MAC
/// under a per-daemon secret (`dhcp::discovery::inspect_key` keeps it in the
/// data dir, so a restart does not strand a machine mid-inspection).
///
/// Why an HMAC and not a random token per discovered row: the token must be
/// in the iPXE script and the installer config, which the boot routes serve
/// from snapshots without the store (ARCHITECTURE, Invariants); an HMAC is
/// computed, never stored, and cannot be guessed without the secret. Like a
/// run's token it reaches the machine in the clear over HTTP: it keeps out
/// whoever has not fetched the MAC's script, as a run's does.
#[derive(Clone)]
pub struct DiscoveredInspect {
    key: Vec<u8>,
}

impl std::fmt::Debug for DiscoveredInspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveredInspect { key: <secret> }")
    }
}

impl DiscoveredInspect {
    pub fn new(key: Vec<u8>) -> DiscoveredInspect {
        DiscoveredInspect { key }
    }

    /// The MAC's token: 128 bits of the HMAC, lowercase hex.
    pub fn token(&self, mac: &Mac) -> String {
        use hmac::{KeyInit, Mac as _};
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("hmac takes any key");
        m.update(b"rackboot discovered inspect|");
        m.update(mac.to_string().as_bytes());
        m.finalize().into_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `token` is the MAC's (compared without stopping at the first difference).
    pub fn check(&self, mac: &Mac, token: &str) -> bool {
        let want = self.token(mac);
        !token.is_empty()
            && want.len() == token.len()
            && want
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }

    /// The rendering run of the MAC's inspection.
    pub fn run(&self, mac: &Mac) -> RunCtx {
        RunCtx {
            id: DISCOVERED_RUN.into(),
            token: self.token(mac),
            profile: Some(DISCOVERED_PROFILE.into()),
            persistent: false,
            facts: None,
        }
    }
}

/// The stand-in system a discovered MAC is rendered as: named after its MAC,
/// no address of its own (the pool's or the site's DHCP gives it one), the
/// inspection profile.
pub fn discovered_system(mac: &Mac) -> System {
    let name = format!("discovered-{}", mac.hyphenated());
    System {
        name: name.clone(),
        hostname: name,
        macs: vec![*mac],
        ip: std::net::Ipv4Addr::UNSPECIFIED,
        netmask: std::net::Ipv4Addr::UNSPECIFIED,
        gateway: None,
        dns: vec![],
        domain: None,
        profile: DISCOVERED_PROFILE.into(),
        loader: None,
        bmc: None,
        vars: Default::default(),
    }
}

/// What a MAC outside the inventory gets from DHCP when discovered machines
/// are inspected (`inspect` true): the loader of the inspection profile for
/// its firmware. `None`: inspection off, the MAC is in the inventory, or
/// there is no inspection profile (the loader refuses that configuration).
pub fn discovered_netboot(
    inv: &Inventory,
    mac: &Mac,
    arch: Option<Arch>,
    ipxe: bool,
    efi_x64_file: &str,
    inspect: bool,
) -> Option<Loader> {
    if !inspect || inv.by_mac(mac).is_some() {
        return None;
    }
    inv.profile(DISCOVERED_PROFILE)?;
    // Always iPXE: GRUB's per-MAC config is served over TFTP for inventory
    // machines only.
    Some(loader(inv, arch, ipxe, efi_x64_file, BootLoader::Ipxe))
}

/// A document of a discovered MAC's inspection (`kind`: the iPXE script,
/// the installer config, ...). `None`: the MAC is in the inventory or there
/// is no inspection profile; `Ok(None)`: the profile has no such template.
pub fn discovered_render(
    inv: &Inventory,
    di: &DiscoveredInspect,
    mac: &Mac,
    kind: RenderKind,
) -> Option<Result<Option<String>, RenderError>> {
    if inv.by_mac(mac).is_some() {
        return None;
    }
    inv.profile(DISCOVERED_PROFILE)?;
    Some(inv.render(&discovered_system(mac), kind, &di.run(mac)))
}

#[cfg(test)]
mod discovered_tests {
    use super::*;

    #[test]
    fn the_token_is_per_mac_per_secret_and_checked_whole() {
        let a = DiscoveredInspect::new(b"secret-a".to_vec());
        let b = DiscoveredInspect::new(b"secret-b".to_vec());
        let m1 = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let m2 = Mac([0x52, 0x54, 0, 0, 0, 2]);
        let t = a.token(&m1);
        assert_eq!(t.len(), 32, "128 bits, hex");
        assert_eq!(t, a.token(&m1), "computed, not random");
        assert_ne!(t, a.token(&m2), "per MAC");
        assert_ne!(t, b.token(&m1), "per secret");
        assert!(a.check(&m1, &t));
        for bad in [
            "",
            &t[..31],
            &format!("{t}0"),
            &t.to_uppercase(),
            &a.token(&m2),
        ] {
            assert!(!a.check(&m1, bad), "{bad:?}");
        }
        assert!(
            !format!("{a:?}").contains("secret-a"),
            "the secret is not printed"
        );
        let run = a.run(&m1);
        assert_eq!(
            (run.id.as_str(), run.token.as_str()),
            (DISCOVERED_RUN, t.as_str())
        );
        assert_eq!(run.profile.as_deref(), Some(DISCOVERED_PROFILE));
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    fn ctx(id: &str, token: &str, persistent: bool) -> RunCtx {
        RunCtx {
            id: id.into(),
            token: token.into(),
            profile: None,
            persistent,
            facts: None,
        }
    }

    /// The manual switches follow the database; runs' entries stay; an
    /// unchanged switch is not replaced (its local profile is kept).
    #[test]
    fn sync_manual_follows_the_database_and_leaves_runs_alone() {
        let mut t = BootTable::new();
        t.insert("run1", ctx("run-0001", "r", false));
        let mut kept = ctx("manual-1", "a", true);
        kept.profile = Some("live".into());
        t.insert("live1", kept);
        t.insert("gone", ctx("manual-2", "b", false));
        t.insert("moved", ctx("manual-3", "c", false));
        let want: HashMap<String, RunCtx> = [
            ("live1", ctx("manual-1", "a", true)),
            ("moved", ctx("manual-4", "d", false)),
            ("new", ctx("manual-5", "e", false)),
            ("run1", ctx("manual-6", "f", false)),
        ]
        .into_iter()
        .map(|(s, c)| (s.to_string(), c))
        .collect();
        assert!(t.sync_manual(want.clone()));
        assert_eq!(t.get("run1").unwrap().id, "run-0001", "a run's entry stays");
        assert_eq!(t.get("live1").unwrap().profile.as_deref(), Some("live"));
        assert!(t.get("gone").is_none());
        assert_eq!(t.get("moved").unwrap().id, "manual-4");
        assert_eq!(t.get("new").unwrap().token, "e");
        assert_eq!(t.len(), 4);
        assert!(!t.sync_manual(want), "nothing new: unchanged");
        assert!(t.sync_manual(HashMap::new()));
        assert_eq!(t.len(), 1, "only the run's entry is left");
    }

    /// Standing down leaves the runs' machines to the peers and keeps the
    /// manual switches; the engine's own table is untouched (it serves it
    /// again once a heartbeat gets through).
    #[test]
    fn stood_down_leaves_runs_and_keeps_manual_switches() {
        let mut t = BootTable::new();
        t.insert("run1", ctx("run-0001", "r", false));
        t.insert("run2", ctx("run-0002", "s", false));
        t.insert("live1", ctx("manual-1", "a", true));
        t.leave("peer1");
        let d = t.stood_down();
        assert!(d.get("run1").is_none() && d.get("run2").is_none());
        assert_eq!(d.get("live1").unwrap().id, "manual-1");
        let left: Vec<&str> = d.elsewhere.iter().map(String::as_str).collect();
        assert_eq!(left, ["peer1", "run1", "run2"]);
        assert_eq!(t.len(), 3, "the original keeps its entries");
        assert_eq!(t.elsewhere.len(), 1);
        assert_eq!(BootTable::new().stood_down(), BootTable::new());
    }
}
