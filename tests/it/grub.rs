//! `loader = "grub"` (Secure Boot: Debian's signed shim and network GRUB):
//! the DHCP boot file by firmware, the TFTP files rackboot generates
//! (`grub/grub.cfg`, `grub/grub.cfg-<mac>`), fast "not found" for the
//! probes, unchanged path safety, and a whole run whose config, kernel and
//! local-boot evidence come over TFTP.

use crate::harness::ConfigDir;
use crate::runs::{sim_with, Sim};
use crate::tftp::{fetch, Opts};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use rackboot::boot::{self, Loader};
use rackboot::model::{Arch, Mac};
use std::time::{Duration, Instant};

const MAC1: &str = "52:54:00:aa:00:01";

/// Put `line` at the top of a profile file (before any table).
fn prepend(c: &ConfigDir, rel: &str, line: &str) {
    let old = c.read(rel);
    c.write(rel, &format!("{line}\n{old}"));
}

#[test]
fn loader_by_firmware_and_profile() {
    let c = ConfigDir::sample();
    prepend(&c, "profiles/lab-disk.toml", "loader = \"grub\"");
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let inv = &cfg.inventory;
    let grub: Mac = "52:54:00:77:00:50".parse().unwrap(); // node50: lab-disk
    let ipxe_sys = inv
        .systems()
        .iter()
        .find(|s| inv.profile_of(s).loader == rackboot::inventory::BootLoader::Ipxe)
        .expect("a system on an iPXE profile")
        .primary_mac();
    let base = &inv.urls.base;
    let tftp = |f: &str| Loader::Tftp(f.into());
    for (mac, arch, ipxe, want) in [
        // The one case the grub loader changes: UEFI x64 PXE firmware (7 and 9).
        (grub, Some(7), false, tftp("grub/bootx64.efi")),
        (grub, Some(9), false, tftp("grub/bootx64.efi")),
        // Unchanged for the grub system: BIOS, iPXE already running, HTTP Boot, ARM64.
        (grub, Some(0), false, tftp("undionly.kpxe")),
        (grub, None, false, tftp("undionly.kpxe")),
        (
            grub,
            Some(7),
            true,
            Loader::IpxeScript(format!("{base}/boot.ipxe")),
        ),
        (
            grub,
            Some(16),
            false,
            Loader::HttpBoot(format!("{base}/firmware/ipxe.efi")),
        ),
        (grub, Some(11), false, tftp("arm64/ipxe.efi")),
        // An iPXE profile's UEFI machine: as before.
        (ipxe_sys, Some(7), false, tftp("snponly.efi")),
        (ipxe_sys, Some(0), false, tftp("undionly.kpxe")),
    ] {
        let nb = boot::netboot(inv, &mac, arch.map(Arch::from_code), ipxe, "snponly.efi")
            .expect("an inventory machine");
        assert_eq!(nb.loader, want, "{mac} arch {arch:?} ipxe {ipxe}");
    }
    assert!(boot::netboot(
        inv,
        &"52:54:00:00:00:01".parse().unwrap(),
        Some(Arch::EfiX64),
        false,
        "ipxe.efi"
    )
    .is_none());
    // The resolved profile and the API view say so.
    let p = inv.profile("lab-disk").unwrap();
    assert_eq!(rackboot::api::Profile::from(p).loader, "grub");
    assert_eq!(
        rackboot::api::Profile::from(inv.profile("lab").unwrap()).loader,
        "ipxe"
    );
}

#[test]
fn loader_must_be_ipxe_or_grub() {
    let c = ConfigDir::sample();
    prepend(&c, "profiles/lab-disk.toml", "loader = \"shim\"");
    let e = c.load().err().expect("refused");
    let s = e.to_string();
    assert!(
        s.contains("loader") && s.contains("expected ipxe or grub"),
        "{s}"
    );
}

#[test]
fn grub_words_quote_each_argument() {
    assert_eq!(
        rackboot::template::grub_words("console=ttyS0 ks=http://x/ks?token=a$b it's"),
        r"'console=ttyS0' 'ks=http://x/ks?token=a$b' 'it'\''s'"
    );
    assert_eq!(rackboot::template::grub_words("  "), "");
}

async fn grub_sim() -> Sim {
    sim_with("true", |c| {
        prepend(c, "profiles/sim.toml", "loader = \"grub\"")
    })
    .await
}

impl Sim {
    fn tftp(&self) -> std::net::SocketAddr {
        self.d()
            .tftp_addr
            .expect("the sim daemon has a TFTP socket")
    }

    async fn tftp_text(&self, path: &str) -> String {
        String::from_utf8(fetch(self.tftp(), path, &Opts::default()).await.data()).unwrap()
    }

    async fn tftp_code(&self, path: &str) -> u16 {
        fetch(self.tftp(), path, &Opts::default()).await.code()
    }

    /// UEFI x64 firmware's PXE DISCOVER (arch 7, not iPXE): the boot file offered.
    async fn uefi_dhcp(&self, mac: Mac) -> String {
        let m = crate::dhcp::discover(mac, 0x7007, b"PXEClient:Arch:00007:UNDI:003016", 7);
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        self.client.send_to(&buf, self.dhcp_server).await.unwrap();
        let mut b = vec![0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(500), self.client.recv_from(&mut b))
                    .await
            {
                let r = dhcproto::v4::Message::decode(&mut Decoder::new(&b[..n])).unwrap();
                if r.chaddr()[..6] == mac.0 {
                    let f = r.fname().unwrap_or_default();
                    let f = f.split(|&c| c == 0).next().unwrap_or_default();
                    return String::from_utf8_lossy(f).into_owned();
                }
            }
        }
        panic!("no DHCP offer for {mac}");
    }

    async fn status_tftp(&self) -> serde_json::Value {
        let (s, v) = self.api("GET", "/api/v1/status", None).await;
        assert_eq!(s, 200, "{v}");
        v["protocols"]["tftp"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grub_tftp_files_probes_and_path_safety() {
    let sim = grub_sim().await;
    // GRUB's own config: the per-MAC dispatch, as MAAS writes it.
    let d = sim.tftp_text("/grub/grub.cfg").await;
    assert_eq!(d, boot::GRUB_DISPATCH_CFG);
    assert!(
        d.contains("\nconfigfile /grub/grub.cfg-${net_default_mac}\n"),
        "{d}"
    );
    assert!(d.ends_with("exit 1\n"), "{d}");
    // No run pending: the local-boot config, whichever MAC spelling.
    for p in [
        format!("/grub/grub.cfg-{MAC1}"),
        "grub/grub.cfg-52-54-00-AA-00-01".to_string(),
    ] {
        let local = sim.tftp_text(&p).await;
        assert!(local.contains("has no reimage pending"), "{local}");
        assert!(local.contains("chainloader /efi/$rb_efi"), "{local}");
        assert!(local.trim_end().ends_with("exit 1"), "{local}");
        assert!(!local.contains("linux "), "{local}");
    }
    // A MAC outside the inventory, a default file: not found.
    assert_eq!(sim.tftp_code("/grub/grub.cfg-52:54:00:aa:00:99").await, 1);
    // The probes of shim and GRUB: not found at once, counted apart.
    let before = sim.status_tftp().await;
    let t0 = Instant::now();
    for p in [
        "/grub/x86_64-efi/grub.cfg",
        "/grub/x86_64-efi/command.lst",
        "/grub/x86_64-efi/http.mod",
        "grub/revocations_sku.efi",
        "grub/revocations_sbat.efi",
        "grub/shim_certificate_0.efi",
        "/grub/grub.cfg-default-x86_64",
    ] {
        assert_eq!(sim.tftp_code(p).await, 1, "{p}");
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let after = sim.status_tftp().await;
    assert_eq!(
        after["not_found_probe"].as_u64().unwrap() - before["not_found_probe"].as_u64().unwrap(),
        7,
        "{after}"
    );
    assert_eq!(after["not_found"], before["not_found"], "{after}");
    // Real files of the roots, and the same path safety as before.
    let k = fetch(sim.tftp(), "vmlinuz", &Opts::default()).await.data();
    assert_eq!(
        k,
        std::fs::read(sim.c.path().join(".lab/boot/vmlinuz")).unwrap()
    );
    for p in [
        "../rackboot.toml",
        "grub/../../rackboot.toml",
        "/grub/../../../etc/passwd",
        "\\..\\rackboot.toml",
    ] {
        assert_eq!(sim.tftp_code(p).await, 2, "{p}");
    }
    assert_eq!(sim.tftp_code("grub/nothing.efi").await, 1);
    let end = sim.status_tftp().await;
    assert_eq!(
        end["refused_path"].as_u64().unwrap() - after["refused_path"].as_u64().unwrap(),
        4,
        "{end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grub_run_moves_on_tftp_evidence() {
    let sim = grub_sim().await;
    let mac: Mac = MAC1.parse().unwrap();
    let (s, v) = sim.create(&["sim1"]).await;
    assert_eq!(s, 201, "{v}");
    let id = v["runs"][0]["id"].as_str().unwrap().to_string();
    sim.wait_state(&id, "dhcp", 5).await;
    // The firmware's DHCP: shim from our TFTP server.
    assert_eq!(sim.uefi_dhcp(mac).await, "grub/bootx64.efi");
    sim.wait_state(&id, "kernel", 5).await;
    // GRUB's per-MAC config, rendered for the run: kernel and initrd over TFTP.
    let cfg = sim.tftp_text(&format!("/grub/grub.cfg-{MAC1}")).await;
    assert!(cfg.contains(&format!("run {id}")), "{cfg}");
    assert!(
        cfg.contains("  if linux /vmlinuz 'console=ttyS0,115200'"),
        "{cfg}"
    );
    assert!(
        cfg.contains("    if initrd /initrd.img; then\n      boot\n"),
        "{cfg}"
    );
    assert!(cfg.contains("for rb_try in 1 2 3 4 5 6; do"), "{cfg}");
    assert!(!cfg.contains("initrd="), "{cfg}");
    let done = cfg
        .split_whitespace()
        .find_map(|w| w.trim_matches(['\'', ';']).strip_prefix("rig.done="))
        .expect("done URL in kernel args")
        .to_string();
    let done = done[done.find("/done/").unwrap()..].to_string();
    // The kernel over TFTP from the machine's own address (127.0.0.1) is
    // its run's kernel evidence.
    fetch(sim.tftp(), "/vmlinuz", &Opts::default()).await.data();
    fetch(sim.tftp(), "/initrd.img", &Opts::default())
        .await
        .data();
    sim.wait_state(&id, "config", 5).await;
    let (s, ks) = sim
        .boot_http("GET", &format!("/ks/{}", mac.hyphenated()))
        .await;
    assert_eq!(s, 200, "{ks}");
    sim.wait_state(&id, "install", 5).await;
    let (s, body) = sim.boot_http("POST", &done).await;
    assert_eq!(s, 200, "{body} {done} {cfg}");
    // After the callback GRUB gets the local-boot config, which counts as
    // the machine coming back through the network.
    let local = sim.tftp_text(&format!("/grub/grub.cfg-{MAC1}")).await;
    assert!(local.contains("has no reimage pending"), "{local}");
    let v = sim.wait_terminal(&id, 30).await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    // The feed has the GRUB machine's evidence as for iPXE machines.
    let (s, h) = sim.api("GET", "/api/v1/systems/sim1/history", None).await;
    assert_eq!(s, 200, "{h}");
    let seen: Vec<String> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "observation")
        .map(|e| e["data"]["what"].as_str().unwrap_or("").to_string())
        .collect();
    for w in ["dhcp", "script", "kernel", "config", "done", "local-script"] {
        assert!(seen.iter().any(|s| s == w), "no {w} in {seen:?}");
    }
    let (s, dg) = sim.api("GET", "/api/v1/systems/sim1/diagnosis", None).await;
    assert_eq!(s, 200, "{dg}");
    assert!(dg["first_missing"].is_null(), "{dg:#}");
}

/// A system's own `loader` wins over its profile's, both ways; it is edited
/// (and unset) through the CLI like the other optional system keys; a bad
/// value names the file's key.
#[test]
fn system_loader_overrides_the_profile() {
    use rackboot::inventory::BootLoader;
    let c = ConfigDir::sample();
    // node50 is on lab-disk (iPXE); put lab-disk on GRUB and take node50 back to iPXE,
    // and give a machine of another iPXE profile GRUB of its own.
    prepend(&c, "profiles/lab-disk.toml", "loader = \"grub\"");
    let r = crate::admin::rb(&c, &["systems", "edit", "node50", "--loader", "ipxe"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(c.read("systems.toml").contains("loader = \"ipxe\""));
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let inv = &cfg.inventory;
    let other = inv
        .systems()
        .iter()
        .find(|s| inv.profile_of(s).loader == BootLoader::Ipxe && s.name != "node50")
        .expect("a system on an iPXE profile")
        .name
        .clone();
    let r = crate::admin::rb(&c, &["systems", "edit", &other, "--loader", "grub"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let inv = &cfg.inventory;
    let mac_of = |n: &str| inv.system(n).unwrap().primary_mac();
    let first = |mac: Mac| {
        boot::netboot(inv, &mac, Some(Arch::EfiX64), false, "snponly.efi")
            .unwrap()
            .loader
    };
    assert_eq!(first(mac_of("node50")), Loader::Tftp("snponly.efi".into()));
    assert_eq!(
        first(mac_of(&other)),
        Loader::Tftp("grub/bootx64.efi".into())
    );
    // The API view carries the machine's own loader only.
    let api = rackboot::api::System::from(inv.system(&other).unwrap());
    assert_eq!(api.loader.as_deref(), Some("grub"));
    let n51 = inv
        .systems()
        .iter()
        .find(|s| s.loader.is_none())
        .expect("a system without its own loader");
    assert_eq!(rackboot::api::System::from(n51).loader, None);
    // Unset: back to the profile's.
    let r = crate::admin::rb(&c, &["systems", "edit", &other, "--unset", "loader"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let s = cfg.inventory.system(&other).unwrap();
    assert_eq!(s.loader, None);
    // A bad value: refused by the CLI, and by the loader with the key.
    let r = crate::admin::rb(&c, &["systems", "edit", &other, "--loader", "shim"]);
    assert_ne!(r.code, 0, "{}{}", r.out, r.err);
    let text = c
        .read("systems.toml")
        .replacen("loader = \"ipxe\"", "loader = \"shim\"", 1);
    c.write("systems.toml", &text);
    let e = c.load().err().expect("refused").to_string();
    assert!(
        e.contains("systems.node50.loader") && e.contains("expected ipxe or grub"),
        "{e}"
    );
}
