//! `rackboot init`: the starter config for an interface passes `rackboot
//! check`, carries the interface's address, and is not overwritten without
//! `--force`.

use std::path::Path;
use std::process::{Command, Output};

fn rackboot(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--config")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn init_on_loopback_passes_check() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("etc");
    let o = rackboot(&["init", "--interface", "lo"], &d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("for lo (127.0.0.1/8)"), "{}", text(&o));
    let toml = std::fs::read_to_string(d.join("rackboot.toml")).unwrap();
    for want in [
        "interface = \"lo\"",
        "address = \"127.0.0.1\"",
        "subnet_mask = \"255.0.0.0\"",
        "data_dir = \"/var/lib/rackboot\"",
        "boot_dir = \"/var/lib/rackboot/boot\"",
        "firmware_dir = \"/usr/share/rackboot/firmware\"",
        "# Loopback: this serves no machine.",
    ] {
        assert!(toml.contains(want), "no {want:?} in:\n{toml}");
    }
    for f in [
        "systems.toml",
        "profiles/base.toml",
        "profiles/debian12.toml",
        "profiles/rhel9.toml",
        "profiles/ubuntu2404.toml",
        "kickstarts/debian12.preseed.j2",
        "kickstarts/rhel9.ks.j2",
        "kickstarts/ubuntu/user-data.j2",
        "kickstarts/ubuntu/meta-data.j2",
    ] {
        assert!(d.join(f).is_file(), "{f} missing");
    }
    let c = rackboot(&["check"], &d);
    assert!(c.status.success(), "check: {}", text(&c));
    let j = rackboot(&["check", "--json"], &d);
    assert!(j.status.success(), "check --json: {}", text(&j));

    // Paths given on the command line.
    let d2 = t.path().join("etc2");
    let o = rackboot(
        &[
            "init",
            "--interface",
            "lo",
            "--data-dir",
            "/srv/rb/",
            "--firmware-dir",
            "/opt/fw",
        ],
        &d2,
    );
    assert!(o.status.success(), "{}", text(&o));
    let toml = std::fs::read_to_string(d2.join("rackboot.toml")).unwrap();
    assert!(toml.contains("data_dir = \"/srv/rb\""), "{toml}");
    assert!(toml.contains("boot_dir = \"/srv/rb/boot\""), "{toml}");
    assert!(toml.contains("firmware_dir = \"/opt/fw\""), "{toml}");
    assert!(rackboot(&["check"], &d2).status.success());
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // --dir wins over --config
    let other = t.path().join("unused");
    let o = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--config")
        .arg(&other)
        .args(["init", "--interface", "lo", "--dir"])
        .arg(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!other.exists());

    let systems = d.join("systems.toml");
    std::fs::write(&systems, "# mine\n").unwrap();
    let o = rackboot(&["init", "--interface", "lo"], d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&systems).unwrap(), "# mine\n");

    let o = rackboot(&["init", "--interface", "lo", "--force"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(&systems)
        .unwrap()
        .contains("rackboot systems add"));
    assert!(rackboot(&["check"], d).status.success());
}

#[test]
fn init_unknown_interface_names_the_ones_there_are() {
    let t = tempfile::tempdir().unwrap();
    let o = rackboot(&["init", "--interface", "rbnope0"], t.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\"rbnope0\" has no IPv4 address"), "{err}");
    assert!(err.contains("lo (127.0.0.1/8)"), "{err}");
    assert!(!t.path().join("rackboot.toml").exists());
}

/// Output piped into a reader that stops early (`| head -1`): the command
/// ends quietly (SIGPIPE), no panic message.
#[test]
fn cli_output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
