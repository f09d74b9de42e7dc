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
        facts: None,
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

/// A template puts a machine-reported fact into a shell line through
/// `shell_quote`: the rendered script prints it literally; nothing in it runs.
#[test]
fn facts_reach_templates_as_data_and_shell_quote_keeps_them_inert() {
    let c = ConfigDir::sample();
    c.write(
        "kickstarts/facts.sh.j2",
        "#!/bin/sh\n{% if facts.cpu is defined %}model={{ facts.cpu.model | shell_quote }}\ndisk={{ facts.disks[0].name | shell_quote }}{% else %}model=none\ndisk=none{% endif %}\nprintf '%s|%s\\n' \"$model\" \"$disk\"\n",
    );
    c.write(
        "profiles/factsy.toml",
        "parent = \"lab\"\ntemplate = \"facts.sh.j2\"\n",
    );
    c.append(
        "systems.toml",
        "\n[systems.f1]\nmacs = [\"52:54:00:fa:00:01\"]\nip = \"10.77.0.97\"\nprofile = \"factsy\"\n",
    );
    let cfg = c.load().unwrap_or_else(|e| panic!("{e}"));
    let inv = &cfg.inventory;
    let s = inv.system("f1").unwrap();
    // No facts yet: the template's guard takes the other branch.
    let plain = inv.render(s, RenderKind::Config, &run()).unwrap().unwrap();
    assert!(plain.contains("model=none"), "{plain}");

    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("PWNED");
    let evil = format!(
        "x'; touch {}; echo '$(touch {})`id`",
        pwned.display(),
        pwned.display()
    );
    let body = serde_json::json!({
        "cpu": {"model": evil, "count": 2},
        "disks": [{"name": "vda\"; touch PWNED; \"", "size_bytes": 1}],
    })
    .to_string();
    let facts = rackboot::facts::check(body.as_bytes()).unwrap();
    let mut r = run();
    r.facts = Some(std::sync::Arc::new(serde_json::to_value(&facts).unwrap()));
    let script = inv.render(s, RenderKind::Config, &r).unwrap().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{evil}|vda\"; touch PWNED; \"\n"),
        "printed literally"
    );
    assert!(
        !pwned.exists() && !dir.path().join("PWNED").exists(),
        "nothing ran"
    );
}
