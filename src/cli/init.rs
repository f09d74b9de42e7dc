//! `rackboot init`: a starter configuration for this host. The server address
//! and subnet come from the interface (`getifaddrs`); DHCP answers only the
//! machines in `systems.toml` (none yet), so a fresh config serves nothing
//! until machines are added. The profiles are abstract starting points
//! (installer, template, kernel args) that need a kernel before a machine can
//! use them. What it writes passes `rackboot check`. Existing files are left
//! alone unless `--force`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Interface on the provisioning network (default: the first non-loopback interface that is up and has an IPv4 address).
    #[arg(long, short = 'i')]
    pub interface: Option<String>,
    /// Directory to write into (default: --config).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// data_dir: database, run logs, artifacts, the API token.
    #[arg(long, default_value = "/var/lib/rackboot")]
    pub data_dir: String,
    /// boot_dir: kernels, initrds and images (default: DATA_DIR/boot).
    #[arg(long)]
    pub boot_dir: Option<String>,
    /// firmware_dir: the iPXE binaries (the package installs them here).
    #[arg(long, default_value = "/usr/share/rackboot/firmware")]
    pub firmware_dir: String,
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub addr: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub up: bool,
    pub loopback: bool,
}

/// Every IPv4 address of every interface (`getifaddrs(3)`), in the kernel's order.
pub fn ipv4_addrs() -> std::io::Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let v4 = |sa: *const libc::sockaddr| -> Option<Ipv4Addr> {
        // SAFETY: a non-null sockaddr from getifaddrs; read as sockaddr_in only for AF_INET.
        unsafe {
            if sa.is_null() || (*sa).sa_family as i32 != libc::AF_INET {
                return None;
            }
            let sin = &*(sa as *const libc::sockaddr_in);
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        }
    };
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` walks the list getifaddrs returned; each entry is valid until freeifaddrs.
        let ifa = unsafe { &*p };
        if let Some(addr) = v4(ifa.ifa_addr) {
            // SAFETY: ifa_name is a NUL-terminated string in the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned();
            let flags = ifa.ifa_flags as i32;
            out.push(IfAddr {
                name,
                addr,
                netmask: v4(ifa.ifa_netmask).unwrap_or(Ipv4Addr::new(255, 255, 255, 0)),
                up: flags & libc::IFF_UP != 0,
                loopback: flags & libc::IFF_LOOPBACK != 0,
            });
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The address to serve on: the named interface's first IPv4 address, or
/// the first up, non-loopback interface's.
pub fn pick(addrs: &[IfAddr], interface: Option<&str>) -> Result<IfAddr, String> {
    let names = || {
        let mut n: Vec<String> = addrs
            .iter()
            .map(|a| format!("{} ({}/{})", a.name, a.addr, prefix_len(a.netmask)))
            .collect();
        n.dedup();
        if n.is_empty() {
            "none".to_string()
        } else {
            n.join(", ")
        }
    };
    match interface {
        Some(i) => addrs.iter().find(|a| a.name == i).cloned().ok_or_else(|| {
            format!(
                "interface {i:?} has no IPv4 address (interfaces with one: {})",
                names()
            )
        }),
        None => addrs
            .iter()
            .find(|a| a.up && !a.loopback)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no interface is up with an IPv4 address; name one with --interface (interfaces with one: {})",
                    names()
                )
            }),
    }
}

fn prefix_len(mask: Ipv4Addr) -> u32 {
    u32::from(mask).count_ones()
}

/// The files `init` writes (path relative to the config dir, contents).
pub fn starter_files(
    a: &IfAddr,
    data_dir: &str,
    boot_dir: &str,
    firmware_dir: &str,
) -> Vec<(&'static str, String)> {
    let loopback_note = if a.loopback {
        "# Loopback: this serves no machine. Point it at the provisioning network with\n\
         #   rackboot init --interface IF --force [--dir /etc/rackboot]\n"
    } else {
        ""
    };
    let net = Ipv4Addr::from(u32::from(a.addr) & u32::from(a.netmask));
    let rackboot_toml = format!(
        r#"# rackboot daemon settings, written by `rackboot init` for interface {name}
# ({addr}/{prefix}, network {net}). Relative paths are relative to this dir.
# Changes take effect on restart (`systemctl restart rackboot`); systems.toml,
# profiles/ and kickstarts/ reload on SIGHUP (`systemctl reload rackboot`).
{loopback_note}
[server]
interface = "{name}"                  # DHCP binds to this interface
address = "{addr}"                # listen + advertise (siaddr, server id, URLs)
http_port = 8080
boot_dir = "{boot_dir}"           # kernels, initrds, images (served at /boot/)
firmware_dir = "{firmware_dir}"   # iPXE binaries (TFTP and /firmware/)
data_dir = "{data_dir}"           # SQLite database, run logs, artifacts, api-token

[dhcp]
mode = "reservations"           # answer only the machines in systems.toml (pool | proxy | off)
lease_secs = 600
subnet_mask = "{mask}"
# router = "{addr}"             # the default gateway machines get
# dns = ["{addr}"]
# domain = "lab.example"

[tftp]
enabled = true

[api]
listen = "127.0.0.1:9080"       # operator API and web UI (keep it on loopback or a management net)
# tokens_file = "/etc/rackboot/api-tokens"   # default: a token generated into data_dir/api-token

[limits]
max_parallel_runs = 8
max_parallel_bmc = 8
max_parallel_stages = 4

[runs]
# ssh_key = "/etc/rackboot/ssh/id_ed25519"   # stages reach machines with it (readable by _rackboot)
"#,
        name = a.name,
        addr = a.addr,
        prefix = prefix_len(a.netmask),
        mask = a.netmask,
    );
    let systems_toml = format!(
        r#"# The machines rackboot answers (DHCP reservations, netboot, BMC power).
# Add them with `rackboot systems add` (it validates and reloads the daemon) or by hand:
#
# [systems.node1]
# macs = ["52:54:00:00:00:01"]
# ip = "{example_ip}"
# profile = "debian12"               # a non-abstract profile (profiles/)
# [systems.node1.bmc]
# kind = "ipmi"                      # ipmi | redfish
# address = "10.0.0.201"
# username = "admin"
# password_file = "secrets/node1"    # or password_env = "VAR"; readable by _rackboot
"#,
        example_ip = Ipv4Addr::from(u32::from(net) | 10)
    );
    let base = r#"# Abstract base of the starter profiles: timeouts and the serial console.
abstract = true
description = "starter base: timeouts, serial console"
kernel_args = "console=tty0 console=ttyS0,115200"
wait_ports = [22]

[timeouts]
power = "60s"
dhcp = "5m"
kernel = "5m"
config = "10m"
install = "1h"
reboot = "10m"
ssh = "10m"
"#
    .to_string();
    let distro = |what: &str, body: &str, files: &str| {
        format!(
            "# {what}. Abstract until it has a kernel: put {files} into\n\
             # {boot_dir}/, set kernel and initrd (paths inside boot_dir) and remove\n\
             # `abstract`, or make a child profile (parent = \"...\") that sets them.\n\
             parent = \"base\"\nabstract = true\n{body}"
        )
    };
    let debian = distro(
        "Debian 12 preseed install",
        r#"description = "Debian 12 preseed"
installer = "preseed"
template = "debian12.preseed.j2"
# kernel = "debian12/linux"
# initrd = ["debian12/initrd.gz"]
kernel_args = "console=ttyS0,115200 auto=true priority=critical url={{ urls.config }} hostname={{ system.hostname }} domain={{ system.domain }}"

[vars]
mirror = "deb.debian.org"
"#,
        "debian-installer's netboot linux and initrd.gz",
    );
    let rhel = distro(
        "RHEL 9 / Rocky 9 kickstart install",
        r#"description = "RHEL 9 kickstart"
installer = "kickstart"
template = "rhel9.ks.j2"
# kernel = "rhel9/vmlinuz"
# initrd = ["rhel9/initrd.img"]
kernel_args = "console=ttyS0,115200 inst.ks={{ urls.config }} inst.repo={{ vars.repo }} ip=dhcp"

[vars]
repo = "https://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os"
timezone = "UTC"
packages = ["@core", "openssh-server", "chrony"]
"#,
        "images/pxeboot/vmlinuz and initrd.img",
    );
    let ubuntu = distro(
        "Ubuntu 24.04 autoinstall over cloud-init NoCloud",
        r#"description = "Ubuntu 24.04 cloud-init NoCloud"
installer = "cloud-init"
user_data = "ubuntu/user-data.j2"
meta_data = "ubuntu/meta-data.j2"
# kernel = "ubuntu2404/vmlinuz"
# initrd = ["ubuntu2404/initrd"]
kernel_args = "console=ttyS0,115200 ip=dhcp ds=nocloud-net;s={{ urls.nocloud }}"

[vars]
ssh_authorized_key = "ssh-ed25519 AAAA... you@example"
"#,
        "the live-server ISO's casper/vmlinuz and initrd",
    );
    vec![
        ("rackboot.toml", rackboot_toml),
        ("systems.toml", systems_toml),
        ("profiles/base.toml", base),
        ("profiles/debian12.toml", debian),
        ("profiles/rhel9.toml", rhel),
        ("profiles/ubuntu2404.toml", ubuntu),
        (
            "kickstarts/debian12.preseed.j2",
            include_str!("../../kickstarts/debian12.preseed.j2").to_string(),
        ),
        (
            "kickstarts/rhel9.ks.j2",
            include_str!("../../kickstarts/rhel9.ks.j2").to_string(),
        ),
        (
            "kickstarts/ubuntu/user-data.j2",
            include_str!("../../kickstarts/ubuntu/user-data.j2").to_string(),
        ),
        (
            "kickstarts/ubuntu/meta-data.j2",
            include_str!("../../kickstarts/ubuntu/meta-data.j2").to_string(),
        ),
    ]
}

/// Write the starter files into `dir`: all of them, or (without `force`)
/// none if any exists.
pub fn write_starter(dir: &Path, files: &[(&str, String)], force: bool) -> Result<(), String> {
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|(rel, _)| dir.join(rel))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(format!(
                "refusing to overwrite {} (use --force to replace them)",
                existing.join(", ")
            ));
        }
    }
    for (rel, text) in files {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

pub fn run(config: &Path, a: InitArgs) -> ExitCode {
    let dir = a.dir.clone().unwrap_or_else(|| config.to_path_buf());
    let addrs = match ipv4_addrs() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: reading the interfaces: {e}");
            return ExitCode::from(1);
        }
    };
    let chosen = match pick(&addrs, a.interface.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let data_dir = a.data_dir.trim_end_matches('/').to_string();
    let boot_dir = a
        .boot_dir
        .clone()
        .unwrap_or_else(|| format!("{data_dir}/boot"));
    let files = starter_files(&chosen, &data_dir, &boot_dir, &a.firmware_dir);
    if let Err(e) = write_starter(&dir, &files, a.force) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let d = dir.display();
    println!(
        "wrote a starter config to {d} for {} ({}/{}):",
        chosen.name,
        chosen.addr,
        prefix_len(chosen.netmask)
    );
    for (rel, _) in &files {
        println!("  {rel}");
    }
    println!(
        "\nnext steps:\n\
         1. put a distribution's netboot kernel and initrd under {boot_dir}/ and give a\n   \
            profile its kernel/initrd (profiles/debian12.toml says how)\n\
         2. add machines:  rackboot -c {d} systems add NAME --mac MAC --ip IP --profile PROFILE\n   \
            [--bmc-kind ipmi --bmc-address A --bmc-user U --bmc-password-file F]\n\
         3. check:         rackboot -c {d} check\n\
         4. serve:         systemctl enable --now rackboot   (the package's unit; or: rackboot -c {d} serve)\n\
         5. reimage:       rackboot -c {d} reimage NAME --wait"
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifa(name: &str, addr: [u8; 4], up: bool, loopback: bool) -> IfAddr {
        IfAddr {
            name: name.into(),
            addr: addr.into(),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            up,
            loopback,
        }
    }

    #[test]
    fn picks_named_or_first_up_non_loopback() {
        let a = vec![
            ifa("lo", [127, 0, 0, 1], true, true),
            ifa("eth0", [10, 0, 0, 5], false, false),
            ifa("eth1", [10, 1, 0, 5], true, false),
        ];
        assert_eq!(pick(&a, None).unwrap().name, "eth1");
        assert_eq!(pick(&a, Some("lo")).unwrap().addr, Ipv4Addr::LOCALHOST);
        let e = pick(&a, Some("eth9")).unwrap_err();
        assert!(
            e.contains("eth9") && e.contains("eth1 (10.1.0.5/24)"),
            "{e}"
        );
        assert!(pick(&a[..1], None).unwrap_err().contains("--interface"));
    }

    #[test]
    fn prefix() {
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 252, 0)), 22);
    }
}
