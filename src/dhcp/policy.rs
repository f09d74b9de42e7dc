//! The DHCP adapter's policy: [`DhcpPolicy`] over the live inventory
//! snapshot. The decision (which system, which loader) is `boot::netboot`,
//! pure; this module encodes it into an [`Answer`], runs the pool for
//! clients outside the inventory, and reads the clock for it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::watch;

use super::discovery::{Discovery, Sighting};
use super::leases::{Durable, PoolLeases};
use super::{Answer, BootFile, DhcpPolicy, DhcpRequest, LeaseEvent, Reply};
use crate::boot::{self, Loader};
use crate::config::DhcpMode;
use crate::inventory::Inventory;
use crate::model::Mac;

/// DHCP settings the policy needs (from `config::DhcpSettings`).
#[derive(Debug, Clone)]
pub struct DhcpPolicySettings {
    pub mode: DhcpMode,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
    pub efi_x64_file: String,
    /// `dhcp.inspect_discovered`: MACs outside the inventory get the
    /// inspection profile's loader (pool and proxy modes).
    pub inspect_discovered: bool,
}

/// Where the loader is, as DHCP says it (siaddr and file name, or an
/// HTTP boot URL).
fn boot_file(cfg: &DhcpPolicySettings, req: &DhcpRequest, loader: Loader) -> Option<BootFile> {
    let (filename, http_client) = match loader {
        Loader::Tftp(f) => (f, false),
        Loader::HttpBoot(u) => (u, true),
        Loader::IpxeScript(u) => (u, false),
    };
    Some(BootFile {
        next_server: cfg.server,
        filename,
        http_client,
        ipxe: req.ipxe,
    })
}

/// The DHCP answer for a request: pure. `None` = not ours (no reply).
/// Reservations: inventory MACs get their fixed address and a loader.
/// Proxy: inventory MACs get the loader only (no address).
pub fn dhcp_answer(inv: &Inventory, cfg: &DhcpPolicySettings, req: &DhcpRequest) -> Option<Answer> {
    let nb = boot::netboot(inv, &req.mac, req.arch, req.ipxe, &cfg.efi_x64_file)?;
    let boot = boot_file(cfg, req, nb.loader);
    let s = nb.system;
    match cfg.mode {
        DhcpMode::Off => None,
        DhcpMode::Proxy => Some(Answer::boot_only(boot)),
        DhcpMode::Reservations | DhcpMode::Pool => Some(Answer {
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

/// The answer for a MAC outside the inventory: pure. `pool` is what the
/// address pool answered (pool mode; `None` in the other modes or when the
/// pool has nothing). With `inspect_discovered`, the loader of the
/// inspection profile goes with it: on the pool's address (pool mode), or
/// alone (proxy mode: the site's DHCP gives the address). Otherwise the
/// pool's answer unchanged (an address, no boot file), or nothing.
pub fn discovered_answer(
    inv: &Inventory,
    cfg: &DhcpPolicySettings,
    req: &DhcpRequest,
    pool: Option<Answer>,
) -> Option<Answer> {
    let Some(loader) = boot::discovered_netboot(
        inv,
        &req.mac,
        req.arch,
        req.ipxe,
        &cfg.efi_x64_file,
        cfg.inspect_discovered,
    ) else {
        return pool;
    };
    let boot = boot_file(cfg, req, loader);
    match cfg.mode {
        DhcpMode::Pool => pool.map(|a| Answer { boot, ..a }),
        DhcpMode::Proxy => Some(Answer::boot_only(boot)),
        DhcpMode::Reservations | DhcpMode::Off => pool,
    }
}

/// [`DhcpPolicy`] over the live inventory snapshot. In pool mode (`pool`
/// set), MACs that are not in the inventory get an address from the pool and
/// no boot file; inventory addresses are never handed out from it.
pub struct InventoryDhcpPolicy {
    pub inventory: watch::Receiver<Arc<Inventory>>,
    pub cfg: DhcpPolicySettings,
    pub pool: Option<Arc<PoolLeases>>,
    /// Records requests from MACs outside the inventory (`None`: off).
    pub discovery: Option<Arc<Discovery>>,
    /// The engine's boot table: machines whose run a peer daemon owns are
    /// left to it (`boot::leave_to_peer`). `None`: no peers to consider.
    pub table: Option<watch::Receiver<Arc<boot::BootTable>>>,
}

impl InventoryDhcpPolicy {
    fn pool_for(&self, mac: &Mac) -> Option<(Arc<Inventory>, &PoolLeases)> {
        let pool = self.pool.as_deref()?;
        let inv = self.inventory.borrow().clone();
        if inv.by_mac(mac).is_some() {
            return None;
        }
        // Reservations follow reloads: re-applied once per inventory generation.
        pool.sync_reserved(inv.generation(), || {
            inv.systems().iter().map(|s| s.ip).collect::<Vec<_>>()
        });
        Some((inv, pool))
    }
}

impl DhcpPolicy for InventoryDhcpPolicy {
    fn answer(&self, req: &DhcpRequest) -> Option<Answer> {
        let inv = self.inventory.borrow().clone();
        if let Some(t) = &self.table {
            if boot::leave_to_peer(&inv, &t.borrow(), &req.mac) {
                return None;
            }
        }
        if let Some(a) = dhcp_answer(&inv, &self.cfg, req) {
            return Some(a);
        }
        if let Some(d) = &self.discovery {
            if inv.by_mac(&req.mac).is_none() {
                let proxy = self.cfg.mode == DhcpMode::Proxy;
                d.record(req.mac, Sighting::of(req, proxy), crate::store::now_ms());
            }
        }
        let pool = self
            .pool_for(&req.mac)
            .and_then(|(_inv, pool)| pool.answer(req, crate::store::now_ms()));
        discovered_answer(&inv, &self.cfg, req, pool)
    }

    fn lease_event(&self, req: &DhcpRequest, ev: &LeaseEvent) {
        if let Some((_inv, pool)) = self.pool_for(&req.mac) {
            pool.event(ev, crate::store::now_ms());
        }
    }

    fn commit(&self, req: &DhcpRequest, reply: &Reply) -> Option<Durable> {
        let (_inv, pool) = self.pool_for(&req.mac)?;
        pool.commit(req, reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::classify;
    use crate::dhcp::leases::{LeaseCommitter, PoolAnswer, PoolStats};
    use crate::dhcp::pool::{Pool, PoolConfig};
    use crate::inventory::System;
    use crate::render::{Templates, Urls};
    use dhcproto::v4::{DhcpOption, Message, MessageType};
    use dhcproto::Encodable;
    use std::collections::BTreeMap;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn inventory(systems: Vec<System>, generation: u64) -> Inventory {
        let urls = Urls {
            base: "http://10.0.0.1:8080".into(),
            address: SERVER,
        };
        let mut inv = Inventory::new(systems, BTreeMap::new(), Templates::empty(), urls);
        inv.set_generation(generation);
        inv
    }

    fn system(name: &str, mac: Mac, ip: Ipv4Addr) -> System {
        System {
            name: name.into(),
            hostname: name.into(),
            macs: vec![mac],
            ip,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            dns: vec![],
            domain: None,
            profile: "p".into(),
            loader: None,
            bmc: None,
            vars: BTreeMap::new(),
        }
    }

    fn discover(mac: Mac) -> DhcpRequest {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(7, z, z, z, z, &mac.0);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        classify(&m.to_vec().unwrap()).unwrap()
    }

    /// A machine whose pending run a peer daemon owns is left to it; one
    /// whose run this daemon owns (in the table), one without a run and one
    /// outside the inventory are answered (or not) as always.
    #[test]
    fn machines_of_a_peers_runs_are_left_to_it() {
        use crate::boot::{leave_to_peer, BootTable};
        let (m1, m2, m3) = (
            Mac([2, 0, 0, 0, 0, 1]),
            Mac([2, 0, 0, 0, 0, 2]),
            Mac([2, 0, 0, 0, 0, 3]),
        );
        let inv = inventory(
            vec![
                system("peer", m1, Ipv4Addr::new(10, 0, 0, 21)),
                system("mine", m2, Ipv4Addr::new(10, 0, 0, 22)),
                system("idle", m3, Ipv4Addr::new(10, 0, 0, 23)),
            ],
            1,
        );
        let mut t = BootTable::new();
        let ctx = crate::render::RunCtx {
            id: "run-1".into(),
            token: "t".into(),
            profile: None,
            persistent: false,
            facts: None,
        };
        t.insert("mine", ctx);
        // A run just claimed here is still listed as a peer's until the next refresh.
        assert!(t.set_elsewhere(["peer".to_string(), "mine".to_string()].into()));
        assert!(!t.set_elsewhere(["peer".to_string(), "mine".to_string()].into()));
        let table = [
            (m1, true),
            (m2, false),
            (m3, false),
            (Mac([2, 0, 0, 0, 0, 9]), false),
        ];
        for (mac, left) in table {
            assert_eq!(leave_to_peer(&inv, &t, &mac), left, "{mac}");
        }
        // The policy: no answer for the peer's machine, a reservation for the idle one.
        let (_tx, rx) = watch::channel(Arc::new(inv));
        let (_ttx, trx) = watch::channel(Arc::new(t));
        let policy = InventoryDhcpPolicy {
            inventory: rx,
            cfg: DhcpPolicySettings {
                mode: DhcpMode::Reservations,
                server: SERVER,
                lease_secs: 600,
                efi_x64_file: "ipxe.efi".into(),
                inspect_discovered: false,
            },
            pool: None,
            discovery: None,
            table: Some(trx),
        };
        assert!(policy.answer(&discover(m1)).is_none());
        assert_eq!(
            policy.answer(&discover(m3)).and_then(|a| a.yiaddr),
            Some(Ipv4Addr::new(10, 0, 0, 23))
        );
    }

    /// Reservations are re-applied per generation. A new snapshot at the
    /// *same address* as the last one the pool saw (what an allocator does
    /// after a quiet reload) still has its system's address held back.
    #[tokio::test]
    async fn reservations_follow_the_generation_not_the_snapshot_address() {
        let stats = Arc::new(PoolStats::default());
        let store = crate::store::Store::memory().await.unwrap();
        let (committer, _writer) = LeaseCommitter::start(store, stats.clone());
        let (lo, hi) = (Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 11));
        let pool = PoolLeases::new(
            Pool::new(PoolConfig::new(lo, hi, 600)),
            committer,
            PoolAnswer {
                server_id: SERVER,
                subnet_mask: Ipv4Addr::new(255, 255, 255, 0),
                router: None,
                dns: vec![],
                domain: None,
                lease_secs: 600,
            },
            stats,
        );
        let (tx, rx) = watch::channel(Arc::new(inventory(vec![], 1)));
        let policy = InventoryDhcpPolicy {
            inventory: rx,
            cfg: DhcpPolicySettings {
                mode: DhcpMode::Pool,
                server: SERVER,
                lease_secs: 600,
                efi_x64_file: "ipxe.efi".into(),
                inspect_discovered: false,
            },
            pool: Some(Arc::new(pool)),
            discovery: None,
            table: None,
        };
        let client = |n: u8| Mac([2, 0, 0, 0, 0, n]);

        // Generation 1, nothing reserved: the first pool client gets `lo`.
        let a = policy.answer(&discover(client(1))).expect("an offer");
        assert_eq!(a.yiaddr, Some(lo));

        // Generation 2 replaces the snapshot in place (same address) and adds
        // a system at `hi`.
        let before = Arc::as_ptr(&tx.borrow());
        let node = Mac([0x52, 0x54, 0, 0, 0, 1]);
        tx.send_modify(|inv| {
            *Arc::get_mut(inv).expect("sole owner") = inventory(vec![system("node", node, hi)], 2);
        });
        assert_eq!(Arc::as_ptr(&tx.borrow()), before);

        // `hi` is reserved: a second pool client gets nothing, the system
        // gets its own address.
        assert_eq!(policy.answer(&discover(client(2))), None);
        let n = policy.answer(&discover(node)).expect("the system's answer");
        assert_eq!(n.yiaddr, Some(hi));
    }

    fn inspect_profile() -> crate::inventory::Profile {
        crate::inventory::Profile {
            name: crate::boot::DISCOVERED_PROFILE.into(),
            description: String::new(),
            parent: None,
            is_abstract: false,
            kernel: "vmlinuz".into(),
            initrd: vec!["initrd.img".into()],
            kernel_args: "ks={{ urls.config }}".into(),
            installer: crate::inventory::Installer::Script,
            template: None,
            user_data: None,
            meta_data: None,
            vendor_data: None,
            ipxe_template: None,
            loader: crate::inventory::BootLoader::Grub,
            wait_ports: vec![],
            reboots: false,
            boot_retries: 0,
            netboot_after: false,
            timeouts: Default::default(),
            stages: vec![],
            rerun_interrupted: false,
            vars: BTreeMap::new(),
            origin: BTreeMap::new(),
        }
    }

    /// What a MAC outside the inventory gets, by mode, setting, what the
    /// pool answered and whether there is an inspection profile (a table).
    #[test]
    fn discovered_answer_table() {
        let node = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let stranger = Mac([2, 0, 0, 0, 0, 9]);
        let with_profile = {
            let urls = Urls {
                base: "http://10.0.0.1:8080".into(),
                address: SERVER,
            };
            let mut profiles = BTreeMap::new();
            profiles.insert(crate::boot::DISCOVERED_PROFILE.into(), inspect_profile());
            Inventory::new(
                vec![system("node", node, Ipv4Addr::new(10, 0, 0, 50))],
                profiles,
                Templates::empty(),
                urls,
            )
        };
        let without_profile = inventory(vec![system("node", node, Ipv4Addr::new(10, 0, 0, 50))], 1);
        let pool_ip = Ipv4Addr::new(10, 0, 0, 100);
        let pool = Some(Answer {
            yiaddr: Some(pool_ip),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: None,
            dns: vec![],
            domain: None,
            hostname: None,
            lease_secs: 600,
            boot: None,
        });
        let bios = discover(stranger);
        let mut ipxe = discover(stranger);
        ipxe.ipxe = true;
        let mut uefi = discover(stranger);
        uefi.arch = Some(crate::model::Arch::EfiX64);
        let cfg = |mode, inspect| DhcpPolicySettings {
            mode,
            server: SERVER,
            lease_secs: 600,
            efi_x64_file: "ipxe.efi".into(),
            inspect_discovered: inspect,
        };
        use DhcpMode::*;
        // (mode, setting, inventory has the profile, request, pool answer) ->
        // (address, boot file)
        type Case<'a> = (
            DhcpMode,
            bool,
            bool,
            &'a DhcpRequest,
            Option<Answer>,
            Option<Ipv4Addr>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            // Off by default: the pool's answer unchanged, no boot file.
            (Pool, false, true, &bios, pool.clone(), Some(pool_ip), None),
            (Proxy, false, true, &bios, None, None, None),
            // Pool mode: the pool's address with the loader for the firmware.
            (
                Pool,
                true,
                true,
                &bios,
                pool.clone(),
                Some(pool_ip),
                Some("undionly.kpxe"),
            ),
            (
                Pool,
                true,
                true,
                &ipxe,
                pool.clone(),
                Some(pool_ip),
                Some("http://10.0.0.1:8080/boot.ipxe"),
            ),
            // Always iPXE, even when the inspect profile says GRUB.
            (
                Pool,
                true,
                true,
                &uefi,
                pool.clone(),
                Some(pool_ip),
                Some("ipxe.efi"),
            ),
            // No pool address (exhausted): nothing, never a boot file alone.
            (Pool, true, true, &bios, None, None, None),
            // Proxy mode: the boot file alone.
            (
                Proxy,
                true,
                true,
                &ipxe,
                None,
                None,
                Some("http://10.0.0.1:8080/boot.ipxe"),
            ),
            // Reservations / off (refused at load): nothing.
            (Reservations, true, true, &bios, None, None, None),
            (Off, true, true, &bios, None, None, None),
            // No inspection profile: as if off.
            (Pool, true, false, &bios, pool.clone(), Some(pool_ip), None),
            (Proxy, true, false, &bios, None, None, None),
        ];
        for (i, (mode, inspect, has_profile, req, pool, addr, file)) in
            cases.into_iter().enumerate()
        {
            let inv = if has_profile {
                &with_profile
            } else {
                &without_profile
            };
            let got = discovered_answer(inv, &cfg(mode, inspect), req, pool);
            let got_addr = got.as_ref().and_then(|a| a.yiaddr);
            let got_file = got
                .as_ref()
                .and_then(|a| a.boot.as_ref())
                .map(|b| b.filename.as_str());
            assert_eq!(
                (got_addr, got_file),
                (addr, file),
                "case {i}: {mode:?} {inspect} {got:?}"
            );
            if mode == Proxy && file.is_some() {
                assert!(
                    got.is_some_and(|a| a.yiaddr.is_none()),
                    "case {i}: proxy gives no address"
                );
            }
        }
        assert_eq!(
            crate::boot::DISCOVERED_PROFILE,
            crate::api::runs::INSPECT_PROFILE
        );
        // An inventory MAC is never a discovered one.
        let known = discover(node);
        assert_eq!(
            discovered_answer(&with_profile, &cfg(Proxy, true), &known, None),
            None
        );
    }

    /// Proxy mode: an unknown MAC gets no answer and is recorded (as a
    /// proxyDHCP sighting); a known one is answered and not recorded.
    #[test]
    fn proxy_mode_records_unknown_macs_only() {
        let node = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let (_tx, rx) = watch::channel(Arc::new(inventory(
            vec![system("node", node, Ipv4Addr::new(10, 0, 0, 50))],
            1,
        )));
        let d = Arc::new(Discovery::new(Some("eth1".into()), 100));
        let policy = InventoryDhcpPolicy {
            inventory: rx,
            cfg: DhcpPolicySettings {
                mode: DhcpMode::Proxy,
                server: SERVER,
                lease_secs: 600,
                efi_x64_file: "ipxe.efi".into(),
                inspect_discovered: false,
            },
            pool: None,
            discovery: Some(d.clone()),
            table: None,
        };
        let stranger = Mac([2, 0, 0, 0, 0, 9]);
        assert_eq!(policy.answer(&discover(stranger)), None);
        let _ = policy.answer(&discover(node));
        let rows = d.take();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].mac, stranger.to_string());
        assert!(rows[0].proxy);
        assert_eq!(rows[0].interface.as_deref(), Some("eth1"));
    }
}
