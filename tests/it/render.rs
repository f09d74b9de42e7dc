//! Rendering: a snapshot per template kind, plus the distributions' own
//! validators on the rendered output (ksvalidator, cloud-init schema).

use crate::harness::{tool, ConfigDir};
use rackboot::render::{RenderKind, RunCtx};

fn run() -> RunCtx {
    RunCtx {
        id: "r-000042".into(),
        token: "tok-abc".into(),
        profile: None,
        persistent: false,
    }
}

fn render(system: &str, kind: RenderKind) -> String {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let inv = &cfg.inventory;
    let s = inv.system(system).unwrap();
    inv.render(s, kind, &run()).unwrap().unwrap()
}

#[test]
fn snapshot_ipxe() {
    insta::assert_snapshot!("ipxe_web70", render("web70", RenderKind::Ipxe));
    insta::assert_snapshot!("ipxe_node50", render("node50", RenderKind::Ipxe));
}

#[test]
fn snapshot_kickstart() {
    insta::assert_snapshot!("kickstart_web70", render("web70", RenderKind::Config));
}

#[test]
fn snapshot_cloud_init() {
    insta::assert_snapshot!("user_data_cloud71", render("cloud71", RenderKind::UserData));
    insta::assert_snapshot!("meta_data_cloud71", render("cloud71", RenderKind::MetaData));
}

#[test]
fn snapshot_preseed() {
    insta::assert_snapshot!("preseed_deb72", render("deb72", RenderKind::Config));
}

#[test]
fn snapshot_lab_scripts() {
    insta::assert_snapshot!("script_node52", render("node52", RenderKind::Config));
    insta::assert_snapshot!("script_disk_node50", render("node50", RenderKind::Config));
    insta::assert_snapshot!(
        "kernel_args_node52",
        render("node52", RenderKind::KernelArgs)
    );
}

#[test]
fn stage_command_gets_facts() {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let inv = &cfg.inventory;
    let s = inv.system("web70").unwrap();
    let cmd = inv
        .render_command(
            s,
            &inv.profile_of(s).stages[0].command,
            &run(),
            &[("artifacts", "/a".into()), ("ssh_key", "/k".into())],
        )
        .unwrap();
    assert_eq!(
        cmd,
        "ansible-playbook -i 10.77.0.70, -e host=web70 site.yml"
    );
}

#[test]
fn strict_undefined_at_render() {
    let c = ConfigDir::sample();
    let cfg = c.load().unwrap();
    let inv = &cfg.inventory;
    let s = inv.system("web70").unwrap();
    let e = inv
        .render_command(s, "echo {{ vars.nope }}", &run(), &[])
        .unwrap_err();
    assert!(e.message.contains("undefined"), "{e}");
}

#[test]
fn ksvalidator_accepts_rendered_kickstart() {
    let Some(ksv) = tool(&[".lab/venv/bin/ksvalidator", "ksvalidator"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("web70.ks");
    std::fs::write(&f, render("web70", RenderKind::Config)).unwrap();
    let out = std::process::Command::new(&ksv)
        .args(["-v", "RHEL9"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ksvalidator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it is a real check: a broken kickstart fails.
    std::fs::write(&f, "network --bootproto=bogus\nnotacommand\n").unwrap();
    let out = std::process::Command::new(&ksv)
        .args(["-v", "RHEL9"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn cloud_init_schema_accepts_rendered_user_data() {
    let Some(ci) = tool(&["cloud-init"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("user-data");
    std::fs::write(&f, render("cloud71", RenderKind::UserData)).unwrap();
    let out = std::process::Command::new(&ci)
        .args(["schema", "--config-file"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloud-init schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&f, "#cloud-config\nusers: 42\npackages: {a: 1}\n").unwrap();
    let out = std::process::Command::new(&ci)
        .args(["schema", "--config-file"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success(), "cloud-init schema accepted garbage");
}
