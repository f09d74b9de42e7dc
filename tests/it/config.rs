//! Validation at load: each error with file, key and reason; all at once.

use crate::harness::ConfigDir;

/// Load and return the errors as "file | key | reason" lines.
fn errors(c: &ConfigDir) -> Vec<String> {
    match c.load() {
        Ok(_) => vec![],
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{} | {} | {}", e.file, e.key, e.reason))
                .collect()
        }
    }
}

fn assert_error(c: &ConfigDir, file: &str, key: &str, reason_part: &str) {
    let errs = errors(c);
    assert!(
        errs.iter().any(|e| {
            let parts: Vec<&str> = e.splitn(3, " | ").collect();
            parts[0] == file && parts[1] == key && parts[2].contains(reason_part)
        }),
        "expected {file} | {key} | ..{reason_part}.. in {errs:#?}"
    );
}

#[test]
fn sample_config_is_valid() {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.inventory.systems().len(), 7);
    assert!(cfg.inventory.profile("lab-base").unwrap().is_abstract);
    assert_eq!(
        cfg.settings.database_url,
        format!(
            "sqlite://{}",
            c.path().join(".lab/data/rackboot.db").display()
        )
    );
}

#[test]
fn malformed_toml_names_file_and_line() {
    let c = ConfigDir::sample();
    let line = c.read("systems.toml").lines().count() + 2;
    c.append("systems.toml", "\n[systems.broken\n");
    assert_error(
        &c,
        "systems.toml",
        &format!("line {line}"),
        "unclosed table",
    );
    assert_eq!(errors(&c).len(), 1);
}

#[test]
fn unknown_field_is_rejected() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "hostname = \"node52\"",
        "hostname = \"node52\"\nhostnmae = \"x\"",
    );
    let errs = errors(&c);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("systems.toml | line") && e.contains("hostnmae")),
        "{errs:#?}"
    );
}

#[test]
fn bad_mac() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "\"52:54:00:77:00:53\"",
        "\"52:54:00:77:00:5g\"",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.node53.macs[0]",
        "malformed MAC address \"52:54:00:77:00:5g\"",
    );
}

#[test]
fn duplicate_mac_ip_and_hostname() {
    let c = ConfigDir::sample();
    c.append(
        "systems.toml",
        r#"
[systems.zz-dup]
hostname = "node50"
macs = ["52-54-00-77-00-51"]
ip = "10.77.0.52"
profile = "lab"
"#,
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.zz-dup.macs[0]",
        "duplicate MAC 52:54:00:77:00:51: also used by system \"node51\"",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.zz-dup.ip",
        "duplicate IP 10.77.0.52: also used by system \"node52\"",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.zz-dup.hostname",
        "duplicate hostname \"node50\"",
    );
    // All three at once, not just the first.
    assert_eq!(errors(&c).len(), 3, "{:#?}", errors(&c));
}

#[test]
fn unknown_profile() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "profile = \"debian12\"",
        "profile = \"debian13\"",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.deb72.profile",
        "unknown profile \"debian13\"",
    );
}

#[test]
fn abstract_profile_not_assignable() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "profile = \"debian12\"",
        "profile = \"lab-base\"",
    );
    assert_error(&c, "systems.toml", "systems.deb72.profile", "abstract");
}

#[test]
fn unknown_parent() {
    let c = ConfigDir::sample();
    c.replace(
        "profiles/rhel9.toml",
        "parent = \"lab-base\"",
        "parent = \"centos\"",
    );
    assert_error(
        &c,
        "profiles/rhel9.toml",
        "parent",
        "unknown parent profile \"centos\"",
    );
}

#[test]
fn inheritance_cycle() {
    let c = ConfigDir::sample();
    c.write("profiles/a.toml", "parent = \"b\"\n");
    c.write("profiles/b.toml", "parent = \"a\"\n");
    assert_error(
        &c,
        "profiles/a.toml",
        "parent",
        "inheritance cycle: a -> b -> a",
    );
    assert_error(
        &c,
        "profiles/b.toml",
        "parent",
        "inheritance cycle: b -> a -> b",
    );
}

#[test]
fn missing_template_and_boot_file() {
    let c = ConfigDir::sample();
    c.replace(
        "profiles/debian12.toml",
        "debian12.preseed.j2",
        "debian13.preseed.j2",
    );
    c.replace(
        "profiles/lab-base.toml",
        "initrd = [\"initrd.img\"]",
        "initrd = [\"initrd.gz\"]",
    );
    assert_error(
        &c,
        "profiles/debian12.toml",
        "template",
        "template \"debian13.preseed.j2\" not found",
    );
    assert_error(
        &c,
        "profiles/lab-base.toml",
        "initrd[0]",
        "boot file \"initrd.gz\" not found in .lab/boot",
    );
}

#[test]
fn template_syntax_error() {
    let c = ConfigDir::sample();
    c.append("kickstarts/rhel9.ks.j2", "{% if %}\n");
    let errs = errors(&c);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("kickstarts/rhel9.ks.j2 | line ")
                && e.contains("template syntax error")),
        "{errs:#?}"
    );
}

#[test]
fn undefined_variable_fails_at_load() {
    let c = ConfigDir::sample();
    c.append(
        "kickstarts/debian12.preseed.j2",
        "d-i mirror/suite string {{ vars.suite }}\n",
    );
    assert_error(&c, "systems.toml", "systems.deb72", "undefined");
    let errs = errors(&c);
    assert!(
        errs.iter().any(|e| e.contains("debian12.preseed.j2")),
        "{errs:#?}"
    );
}

#[test]
fn inline_password_refused() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "password_file = \"tests/lab/bmc-password\"\ncipher_suites = [3]\n[systems.node50.vars]",
        "password = \"hunter2\"\n[systems.node50.vars]",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.node50.bmc.password",
        "inline passwords are not accepted",
    );
    // The refused secret is not echoed back.
    assert!(errors(&c).iter().all(|e| !e.contains("hunter2")));
}

#[test]
fn bad_daemon_settings() {
    let c = ConfigDir::sample();
    c.replace(
        "rackboot.toml",
        "mode = \"reservations\"",
        "mode = \"dynamic\"",
    );
    c.replace(
        "rackboot.toml",
        "router = \"10.77.0.1\"",
        "router = \"10.77.0.300\"",
    );
    c.replace(
        "rackboot.toml",
        "max_transfers = 64",
        "max_transfers = 1000",
    );
    assert_error(&c, "rackboot.toml", "dhcp.mode", "unknown mode \"dynamic\"");
    assert_error(&c, "rackboot.toml", "dhcp.router", "not an IPv4 address");
    assert_error(
        &c,
        "rackboot.toml",
        "tftp.max_transfers",
        "between 1 and 256",
    );
}

/// `[dns]`: each key checked with file, key and reason; off by default,
/// its zone defaulting to dhcp.domain; `rackboot check` prints the errors.
#[test]
fn dns_settings_defaults_and_errors() {
    let c = ConfigDir::sample();
    let s = c.load().unwrap().settings.dns;
    assert!(!s.enabled);
    assert_eq!(s.listen, "10.77.0.1:53".parse().unwrap());
    assert_eq!((s.zone, s.ttl, s.forward), (None, 60, false));

    // Enabled without a zone (and no dhcp.domain): refused.
    c.append("rackboot.toml", "\n[dns]\nenabled = true\n");
    assert_error(
        &c,
        "rackboot.toml",
        "dns.zone",
        "set dns.zone (or dhcp.domain)",
    );
    // dhcp.domain is the default zone; upstream alone turns forwarding on.
    c.replace(
        "rackboot.toml",
        "router = \"10.77.0.1\"",
        "router = \"10.77.0.1\"\ndomain = \"Lab.Example.\"",
    );
    c.append(
        "rackboot.toml",
        "upstream = [\"10.0.0.53\", \"127.0.0.1:5353\"]\n",
    );
    let s = c.load().unwrap().settings.dns;
    assert_eq!(s.zone.as_deref(), Some("lab.example"));
    assert!(s.forward);
    assert_eq!(
        s.upstream,
        vec![
            "10.0.0.53:53".parse().unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        ]
    );

    let c = ConfigDir::sample();
    c.append(
        "rackboot.toml",
        "\n[dns]\nenabled = true\nzone = \"bad_zone..x\"\nlisten = \"10.77.0.1\"\n\
         upstream = [\"resolver\"]\nttl = 100000\noutside_zone = \"drop\"\n\
         upstream_timeout_ms = 5\n",
    );
    assert_error(&c, "rackboot.toml", "dns.zone", "not a valid domain name");
    assert_error(&c, "rackboot.toml", "dns.listen", "expected ADDRESS:PORT");
    assert_error(
        &c,
        "rackboot.toml",
        "dns.upstream[0]",
        "expected an IP address",
    );
    assert_error(&c, "rackboot.toml", "dns.ttl", "between 0 and 86400");
    assert_error(
        &c,
        "rackboot.toml",
        "dns.outside_zone",
        "expected forward or refuse",
    );
    assert_error(
        &c,
        "rackboot.toml",
        "dns.upstream_timeout_ms",
        "between 50 and 10000",
    );

    let c = ConfigDir::sample();
    c.append(
        "rackboot.toml",
        "\n[dns]\nenabled = true\nzone = \"lab.example\"\noutside_zone = \"forward\"\n",
    );
    assert_error(
        &c,
        "rackboot.toml",
        "dns.outside_zone",
        "needs at least one dns.upstream",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["check", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "rackboot.toml: dns.outside_zone: \"forward\" needs at least one dns.upstream resolver"
        ),
        "{err}"
    );
}

#[test]
fn stage_and_timeout_errors() {
    let c = ConfigDir::sample();
    c.append(
        "profiles/lab.toml",
        "\n[[stages]]\nname = \"configure\"\nkind = \"deploy\"\ncommand = \"true\"\ntimeout = \"5 minutes\"\n",
    );
    c.replace(
        "profiles/lab-base.toml",
        "ssh = \"5m\"",
        "ssh = \"5m\"\nbanner = \"1m\"",
    );
    assert_error(
        &c,
        "profiles/lab.toml",
        "stages[2].name",
        "duplicate stage name",
    );
    assert_error(
        &c,
        "profiles/lab.toml",
        "stages[2].kind",
        "expected config or test",
    );
    assert_error(&c, "profiles/lab.toml", "stages[2].timeout", "unknown unit");
    assert_error(
        &c,
        "profiles/lab-base.toml",
        "timeouts.banner",
        "unknown phase",
    );
}

#[test]
fn inheritance_resolves_with_origin() {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let inv = &cfg.inventory;
    let web = inv.profile("rhel9-web").unwrap();
    // From the grandparent (lab-base), the parent (rhel9) and itself.
    assert_eq!(web.kernel, "vmlinuz");
    assert_eq!(web.origin["kernel"], "lab-base");
    assert_eq!(web.template.as_deref(), Some("rhel9.ks.j2"));
    assert_eq!(web.origin["template"], "rhel9");
    assert_eq!(web.wait_ports, vec![22, 80]);
    assert_eq!(web.origin["wait_ports"], "rhel9-web");
    assert_eq!(web.timeouts.install, std::time::Duration::from_secs(600));
    // vars merge key by key: packages overridden, repo inherited.
    assert!(web.vars["packages"].to_string().contains("nginx"));
    assert!(web.vars["repo"].to_string().contains("rhel9/os"));
    assert_eq!(web.stages.len(), 2);
    assert!(web.stages[1].keep_going);
    // The child profile of lab: template overridden, stages inherited.
    let disk = inv.profile("lab-disk").unwrap();
    assert_eq!(disk.template.as_deref(), Some("lab/install-disk.sh.j2"));
    assert_eq!(disk.stages.len(), 2);
    assert_eq!(disk.origin["stages"], "lab");
}

#[test]
fn check_command_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_rackboot");
    let c = ConfigDir::sample();
    let ok = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("node50") && out.contains("rhel9-web") && out.contains("ok: 7 systems"),
        "{out}"
    );

    c.replace("systems.toml", "\"52:54:00:77:00:53\"", "\"zz\"");
    c.replace(
        "profiles/rhel9.toml",
        "parent = \"lab-base\"",
        "parent = \"nope\"",
    );
    let bad = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("systems.toml: systems.node53.macs[0]: malformed MAC"),
        "{err}"
    );
    assert!(
        err.contains("profiles/rhel9.toml: parent: unknown parent profile \"nope\""),
        "{err}"
    );
}

#[test]
fn render_command_prints_what_is_served() {
    let bin = env!("CARGO_BIN_EXE_rackboot");
    let c = ConfigDir::sample();
    let out = std::process::Command::new(bin)
        .args(["render", "deb72", "--kind", "preseed", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("d-i netcfg/get_ipaddress string 10.77.0.72"),
        "{text}"
    );
    // By MAC too; unknown kind is a usage error (2).
    let out = std::process::Command::new(bin)
        .args(["render", "52:54:00:77:00:72", "--kind", "bogus", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn broken_profile_reported_once_systems_point_there() {
    let c = ConfigDir::sample();
    c.replace(
        "profiles/lab-disk.toml",
        "[vars]",
        "kernel = \"vmlinuz-missing\"\n[vars]",
    );
    let errs = errors(&c);
    // The profile's own error, once.
    let at_profile: Vec<_> = errs
        .iter()
        .filter(|e| e.contains("vmlinuz-missing"))
        .collect();
    assert_eq!(at_profile.len(), 1, "{errs:#?}");
    assert!(at_profile[0].starts_with("profiles/lab-disk.toml | kernel | "));
    // Its systems point at it; none calls it unknown.
    for sys in ["node50", "node51"] {
        assert_error(
            &c,
            "systems.toml",
            &format!("systems.{sys}.profile"),
            "profile \"lab-disk\" is invalid (its errors are reported for profiles/lab-disk.toml)",
        );
    }
    assert!(
        errs.iter().all(|e| !e.contains("unknown profile")),
        "{errs:#?}"
    );
}

#[test]
fn unreadable_bmc_password_file_refused_at_check() {
    let c = ConfigDir::sample();
    c.replace(
        "systems.toml",
        "password_file = \"tests/lab/bmc-password\"\ncipher_suites = [3]\n[systems.node50.vars]",
        "password_file = \"/nonexistent/bmc-password\"\ncipher_suites = [3]\n[systems.node50.vars]",
    );
    assert_error(
        &c,
        "systems.toml",
        "systems.node50.bmc.password_file",
        "cannot read /nonexistent/bmc-password",
    );
}

/// `rackboot check` names the network boot programs the config needs that
/// are not in firmware_dir (warnings: the config still loads, exit 0).
#[test]
fn check_warns_of_missing_boot_files_and_firmware() {
    let c = ConfigDir::sample();
    let warn = |c: &ConfigDir| rackboot::config::missing_files(&c.load().unwrap());
    // The sample's lab kernel and initrd are there; its BIOS loader is not.
    let w = warn(&c);
    assert!(!w.iter().any(|w| w.contains(".lab/boot/vmlinuz")), "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("undionly.kpxe: missing") && w.contains("BIOS PXE")),
        "{w:?}"
    );
    assert!(!w.iter().any(|w| w.contains("ipxe.efi")), "{w:?}");
    assert!(!w.iter().any(|w| w.contains("grub/")), "{w:?}");
    // A GRUB profile needs shim and GRUB.
    c.replace(
        "profiles/lab.toml",
        "reboots = false\n",
        "reboots = false\nloader = \"grub\"\n",
    );
    let w = warn(&c);
    assert!(
        w.iter().any(|w| w.contains("grub/bootx64.efi: missing")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("grub/grubx64.efi: missing")),
        "{w:?}"
    );
    // The CLI: warnings on stderr, still exit 0, and in --json.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["check", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: ") && err.contains("grub/bootx64.efi"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["check", "--json", "--config"])
        .arg(c.path())
        .output()
        .unwrap();
    let v: rackboot::api::CheckSummary = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.warnings.iter().any(|w| w.contains("grub/grubx64.efi")),
        "{v:?}"
    );
    // Present: no warning.
    for f in ["undionly.kpxe", "grub/bootx64.efi", "grub/grubx64.efi"] {
        let p = c.path().join("firmware").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    assert_eq!(warn(&c), Vec::<String>::new());
}

/// systems.toml's `[boot_domains]`: a system's domain is its var
/// `boot_domain`, else the longest subnet holding its address, else
/// "default"; a bad subnet, a bad name, one subnet in two domains are
/// refused with the key.
#[test]
fn boot_domains_by_subnet() {
    let c = ConfigDir::sample();
    let sys = c.read("systems.toml");
    c.write(
        "systems.toml",
        &format!(
            "[boot_domains]\nlab = [\"10.77.0.0/24\"]\nlab-upper = [\"10.77.0.64/26\", \"192.0.2.0/24\"]\n\n{sys}\
             \n[systems.tagged]\nmacs = [\"52:54:00:77:00:99\"]\nip = \"10.77.0.99\"\nprofile = \"lab\"\n\
             vars = {{ boot_domain = \"rack-9\" }}\n\
             [systems.elsewhere]\nmacs = [\"52:54:00:77:00:98\"]\nip = \"10.78.0.1\"\nprofile = \"lab\"\n"
        ),
    );
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let inv = &cfg.inventory;
    let dom = |n: &str| inv.boot_domain(inv.system(n).unwrap());
    assert_eq!(dom("node50"), "lab", "10.77.0.50 in 10.77.0.0/24");
    assert_eq!(
        dom("web70"),
        "lab-upper",
        "10.77.0.70: the longer prefix wins"
    );
    assert_eq!(dom("tagged"), "rack-9", "the var wins");
    assert_eq!(dom("elsewhere"), "default");

    for (table, key, why) in [
        (
            "lab = [\"10.77.0.1/24\"]",
            "boot_domains.lab",
            "host bits zero",
        ),
        (
            "lab = [\"10.77.0.0\"]",
            "boot_domains.lab",
            "ADDRESS/LENGTH",
        ),
        (
            "lab = [\"10.77.0.0/33\"]",
            "boot_domains.lab",
            "ADDRESS/LENGTH",
        ),
        (
            "\"a b\" = [\"10.0.0.0/8\"]",
            "boot_domains.a b",
            "not a valid domain name",
        ),
        (
            "a = [\"10.0.0.0/8\"]\nb = [\"10.0.0.0/8\"]",
            "boot_domains.b",
            "also in boot domain \"a\"",
        ),
    ] {
        c.write("systems.toml", &format!("[boot_domains]\n{table}\n\n{sys}"));
        assert_error(&c, "systems.toml", key, why);
    }
}
