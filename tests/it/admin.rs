//! Admin edits: `rackboot systems|profiles …` (the real binary), the editing
//! library under concurrency, comment preservation, and the API, with the
//! daemon picking the change up without a restart.

use crate::harness::{free_port, lab, ConfigDir};
use rackboot::admin::{self, AdminError};
use rackboot::api;
use rackboot::api::changes::SystemChange;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub(crate) struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub(crate) fn rb(c: &ConfigDir, args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_rackboot"))
        .arg("--config")
        .arg(c.path())
        .args(args)
        .env_remove("RACKBOOT_TOKEN")
        .env_remove("RACKBOOT_CONFIG")
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A sample config whose API address has nothing listening.
fn sample() -> ConfigDir {
    let c = ConfigDir::sample();
    c.use_loopback(free_port(), free_port());
    c
}

/// Every config file's bytes (to assert a refusal left them alone).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(
        "systems.toml".into(),
        std::fs::read(dir.join("systems.toml")).unwrap(),
    );
    for e in std::fs::read_dir(dir.join("profiles")).unwrap() {
        let e = e.unwrap();
        m.insert(
            format!("profiles/{}", e.file_name().to_string_lossy()),
            std::fs::read(e.path()).unwrap(),
        );
    }
    m
}

fn no_temp_files(dir: &Path) {
    for d in [dir.to_path_buf(), dir.join("profiles")] {
        for e in std::fs::read_dir(d).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.contains(".tmp-"), "temp file left behind: {n}");
        }
    }
}

fn settings(c: &ConfigDir) -> rackboot::config::Settings {
    rackboot::config::load_settings(c.path()).unwrap()
}

#[test]
fn systems_add_edit_show_list_remove() {
    let c = sample();
    let r = rb(
        &c,
        &[
            "systems",
            "add",
            "node60",
            "--mac",
            "52-54-00-77-00-60",
            "--mac",
            "52:54:00:77:01:60",
            "--ip",
            "10.77.0.60",
            "--profile",
            "lab",
            "--hostname",
            "n60",
            "--bmc-kind",
            "ipmi",
            "--bmc-address",
            "10.77.0.160",
            "--bmc-user",
            "admin",
            "--bmc-password-file",
            "tests/lab/bmc-password",
            "--var",
            "rack=r6",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("added system node60"), "{}", r.out);
    assert!(
        r.out.contains("no daemon running at 127.0.0.1:")
            && r.out.contains("change takes effect at next start"),
        "{}",
        r.out
    );
    let text = c.read("systems.toml");
    assert!(
        text.ends_with(
            "\n[systems.node60]\nhostname = \"n60\"\nmacs = [\"52:54:00:77:00:60\", \"52:54:00:77:01:60\"]\n\
             ip = \"10.77.0.60\"\nprofile = \"lab\"\n[systems.node60.bmc]\nkind = \"ipmi\"\n\
             address = \"10.77.0.160\"\nusername = \"admin\"\npassword_file = \"tests/lab/bmc-password\"\n\
             [systems.node60.vars]\nrack = \"r6\"\n"
        ),
        "{text}"
    );
    let cfg = c.load().expect("the result loads (templates rendered)");
    assert_eq!(cfg.inventory.systems().len(), 8);

    // show (table and JSON), found by name or MAC.
    let r = rb(&c, &["systems", "show", "node60"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.out.contains("hostname") && r.out.contains("n60"),
        "{}",
        r.out
    );
    let r = rb(&c, &["systems", "show", "52:54:00:77:01:60", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["name"], "node60");
    assert_eq!(v["bmc"]["username"], "admin");
    assert_eq!(v["vars"]["rack"], "r6");
    let r = rb(&c, &["systems", "show", "nope"]);
    assert_eq!(r.code, 1);

    // edit: only what is given changes.
    let r = rb(
        &c,
        &[
            "systems",
            "edit",
            "node60",
            "--ip",
            "10.77.0.61",
            "--remove-mac",
            "52:54:00:77:00:60",
            "--mac",
            "52:54:00:77:02:60",
            "--unset-var",
            "rack",
            "--var",
            "role=db",
            "--bmc-password-env",
            "NODE60_PW",
            "--unset",
            "hostname",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let inv = c.load().unwrap().inventory;
    let s = inv.system("node60").unwrap();
    assert_eq!(s.ip.to_string(), "10.77.0.61");
    assert_eq!(s.hostname, "node60");
    assert_eq!(
        s.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        ["52:54:00:77:01:60", "52:54:00:77:02:60"]
    );
    assert!(!s.vars.contains_key("rack"));
    assert_eq!(s.vars["role"].as_str(), Some("db"));
    assert_eq!(
        s.bmc.as_ref().unwrap().password,
        rackboot::inventory::SecretRef::Env("NODE60_PW".into())
    );
    assert!(c
        .read("systems.toml")
        .contains("password_env = \"NODE60_PW\"\n"));

    // An edit that changes nothing writes nothing.
    let before = c.read("systems.toml");
    let r = rb(&c, &["systems", "edit", "node60", "--ip", "10.77.0.61"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("nothing to change"), "{}", r.out);
    assert_eq!(c.read("systems.toml"), before);

    // list: table and JSON.
    let r = rb(&c, &["systems", "list"]);
    assert_eq!(r.code, 0);
    assert!(r.out.starts_with("SYSTEM"), "{}", r.out);
    assert_eq!(r.out.lines().count(), 9);
    let r = rb(&c, &["systems", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 8);
    assert!(!r.out.contains("rigpass"));

    // remove; then a second remove is "not found".
    let r = rb(&c, &["systems", "remove", "node60", "--json"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["action"], "removed");
    assert_eq!(v["daemon"]["running"], false);
    assert_eq!(c.load().unwrap().inventory.systems().len(), 7);
    let r = rb(&c, &["systems", "remove", "node60"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no system \"node60\""), "{}", r.err);
    no_temp_files(c.path());
}

#[test]
fn systems_refusals_leave_files_alone() {
    let c = sample();
    let before = snapshot(c.path());
    let add = |extra: &[&str]| {
        let mut a = vec!["systems", "add"];
        a.extend_from_slice(extra);
        rb(&c, &a)
    };
    let cases: Vec<(Vec<&str>, i32, &[&str])> = vec![
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:51",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
            ],
            1,
            &[
                "systems.x1.macs[0]",
                "duplicate MAC 52:54:00:77:00:51",
                "\"node51\"",
            ],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.52",
                "--profile",
                "lab",
            ],
            1,
            &["systems.x1.ip", "duplicate IP 10.77.0.52", "\"node52\""],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "nope",
            ],
            1,
            &["systems.x1.profile", "unknown profile \"nope\""],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
            ],
            1,
            &["systems.x1.macs[0]", "malformed MAC"],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.300",
                "--profile",
                "lab",
            ],
            1,
            &["systems.x1.ip", "not an IPv4 address"],
        ),
        (
            vec![
                "node51",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
            ],
            1,
            &["already exists"],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
                "--bmc-kind",
                "ipmi",
                "--bmc-address",
                "10.0.0.9",
                "--bmc-user",
                "u",
                "--bmc-password",
                "hunter2",
            ],
            2,
            &["--bmc-password is not accepted", "shell history"],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
                "--bmc-kind",
                "ipmi",
                "--bmc-address",
                "10.0.0.9",
                "--bmc-user",
                "u",
                "--bmc-password-file",
                "/nonexistent/pw",
            ],
            1,
            &[
                "systems.x1.bmc.password_file",
                "cannot read /nonexistent/pw",
            ],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
                "--bmc-password",
            ],
            2,
            &["shell history"],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
                "--bmc-kind",
                "ipmi",
            ],
            2,
            &["a new BMC needs", "--bmc-address"],
        ),
        (
            vec!["x1", "--ip", "10.77.0.99", "--profile", "lab"],
            2,
            &["--mac"],
        ),
        (
            vec![
                "x1",
                "--mac",
                "52:54:00:77:00:99",
                "--ip",
                "10.77.0.99",
                "--profile",
                "lab",
                "--var",
                "novalue",
            ],
            2,
            &["KEY=VALUE"],
        ),
    ];
    for (args, code, needles) in cases {
        let r = add(&args);
        assert_eq!(r.code, code, "{args:?}: {}{}", r.out, r.err);
        for n in needles {
            assert!(r.err.contains(n), "{args:?}: missing {n:?} in {}", r.err);
        }
        assert!(!r.err.contains("hunter2"), "the password was echoed");
        assert_eq!(snapshot(c.path()), before, "{args:?} changed the files");
    }
    // Edits: unknown system, unknown MAC to remove, duplicate via edit.
    let r = rb(&c, &["systems", "edit", "nope", "--ip", "10.77.0.99"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no system \"nope\""), "{}", r.err);
    let r = rb(
        &c,
        &[
            "systems",
            "edit",
            "node52",
            "--remove-mac",
            "52:54:00:00:00:01",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("has no MAC 52:54:00:00:00:01"), "{}", r.err);
    let r = rb(
        &c,
        &[
            "systems",
            "edit",
            "node52",
            "--mac",
            "52:54:00:77:00:50",
            "--json",
        ],
    );
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["error"]["code"], "conflict");
    assert!(v["error"]["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("duplicate MAC 52:54:00:77:00:50"));
    assert_eq!(snapshot(c.path()), before);
    no_temp_files(c.path());
}

#[test]
fn hand_broken_files_are_reported_and_left_alone() {
    let c = sample();
    // A MAC broken by hand between two CLI calls.
    c.replace(
        "systems.toml",
        "\"52:54:00:77:00:53\"",
        "\"52:54:00:77:00\"",
    );
    let before = snapshot(c.path());
    let r = rb(
        &c,
        &[
            "systems",
            "add",
            "x1",
            "--mac",
            "52:54:00:77:00:99",
            "--ip",
            "10.77.0.99",
            "--profile",
            "lab",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(r.err.contains("already invalid"), "{}", r.err);
    assert!(
        r.err.contains("systems.node53.macs[0]") && r.err.contains("(already on disk)"),
        "{}",
        r.err
    );
    assert_eq!(snapshot(c.path()), before);

    // Not TOML at all.
    c.append("systems.toml", "\n[systems.half\n");
    let before = snapshot(c.path());
    let r = rb(&c, &["systems", "remove", "node52"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains("not valid TOML") && r.err.contains("line "),
        "{}",
        r.err
    );
    assert_eq!(snapshot(c.path()), before);

    // A template broken by hand after a successful edit: the render cache
    // must not vouch for systems whose template changed.
    let c = sample();
    let r = rb(
        &c,
        &[
            "systems",
            "add",
            "x1",
            "--mac",
            "52:54:00:77:00:99",
            "--ip",
            "10.77.0.99",
            "--profile",
            "lab",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    c.append("kickstarts/lab/install.sh.j2", "\n{{ vars.no_such_var }}\n");
    let before = snapshot(c.path());
    let r = rb(&c, &["systems", "edit", "deb72", "--var", "a=b"]);
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(
        r.err.contains("already invalid") && r.err.contains("systems.node52"),
        "{}",
        r.err
    );
    assert_eq!(snapshot(c.path()), before);
}

#[test]
fn comments_and_formatting_survive_edits() {
    let c = sample();
    let original = "# Inventory header comment.\n# Second line.\n\n\
[systems.a1]   # header comment\n\
hostname = \"a1\"   # the name\n\
macs = [\n  \"52:54:00:00:00:01\",  # boot NIC\n]\n\
ip = \"10.77.0.11\"\n\
profile = \"lab\"\n\
\n\
# About a2: keep me\n\
[systems.a2]\n\
macs = ['52:54:00:00:00:02']\n\
ip    =    \"10.77.0.12\"  # spaced out\n\
profile = \"lab\"\n\
[systems.a2.vars]\n\
rack = \"r2\"   # rack comment\n\
\n\
# trailing file comment\n";
    c.write("systems.toml", original);
    let s = settings(&c);
    let ch = |f: fn(&mut SystemChange)| {
        let mut x = SystemChange::default();
        f(&mut x);
        x
    };

    // add: the old file is an exact prefix of the new one.
    admin::add_system(
        &s,
        "a3",
        &ch(|x| {
            x.macs = Some(vec!["52:54:00:00:00:03".into()]);
            x.ip = Some("10.77.0.13".into());
            x.profile = Some("lab".into());
        }),
    )
    .unwrap();
    let after_add = c.read("systems.toml");
    assert_eq!(
        after_add,
        format!("{original}\n[systems.a3]\nmacs = [\"52:54:00:00:00:03\"]\nip = \"10.77.0.13\"\nprofile = \"lab\"\n")
    );

    // edit: only the edited value's bytes change (spacing and comment kept).
    admin::edit_system(&s, "a2", &ch(|x| x.ip = Some("10.77.0.22".into()))).unwrap();
    let after_edit = c.read("systems.toml");
    assert_eq!(
        after_edit,
        after_add.replace(
            "ip    =    \"10.77.0.12\"  # spaced out",
            "ip    =    \"10.77.0.22\"  # spaced out"
        )
    );
    // a var added to an existing vars table lands after the last one.
    admin::edit_system(
        &s,
        "a2",
        &ch(|x| {
            x.vars.insert("row".into(), serde_json::json!("7"));
        }),
    )
    .unwrap();
    let after_var = c.read("systems.toml");
    assert_eq!(
        after_var,
        after_edit.replace(
            "rack = \"r2\"   # rack comment\n",
            "rack = \"r2\"   # rack comment\nrow = \"7\"\n"
        )
    );
    // A MAC added to a multi-line array goes on its own line.
    admin::edit_system(
        &s,
        "a1",
        &ch(|x| x.add_macs = vec!["52:54:00:00:01:01".into()]),
    )
    .unwrap();
    let after_mac = c.read("systems.toml");
    assert!(
        after_mac.contains(
            "macs = [\n  \"52:54:00:00:00:01\",\n  \"52:54:00:00:01:01\",  # boot NIC\n]"
        ),
        "{after_mac}"
    );
    admin::edit_system(
        &s,
        "a1",
        &ch(|x| x.remove_macs = vec!["52:54:00:00:01:01".into()]),
    )
    .unwrap();

    // remove a1: its block goes; the file header paragraph stays; a2's comment stays.
    admin::remove_system(&s, "a1").unwrap();
    let after_remove = c.read("systems.toml");
    assert!(
        after_remove.starts_with(
            "# Inventory header comment.\n# Second line.\n\n# About a2: keep me\n[systems.a2]\n"
        ),
        "{after_remove}"
    );
    assert!(after_remove.contains("# trailing file comment\n"));
    // remove a2: its own comment goes with it.
    admin::remove_system(&s, "a2").unwrap();
    let after = c.read("systems.toml");
    assert!(
        !after.contains("About a2") && !after.contains("rack"),
        "{after}"
    );
    assert!(after.starts_with("# Inventory header comment."), "{after}");
    assert!(c.load().is_ok());

    // The unedited sample round-trips byte for byte through a no-op edit.
    let c = sample();
    let orig = c.read("systems.toml");
    let o = admin::edit_system(&settings(&c), "node52", &SystemChange::default()).unwrap();
    assert!(o.written.is_empty());
    assert_eq!(c.read("systems.toml"), orig);
    // And a profile edit keeps the file's comments.
    let p = c.read("profiles/lab.toml");
    admin::edit_profile(
        &settings(&c),
        "lab",
        &rackboot::api::changes::ProfileChange {
            set: rackboot::config::wire::ProfileWire {
                description: Some("diskless lab machine".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.read("profiles/lab.toml"),
        p.replace(
            "description = \"lab machine, diskless: installer script + callback\"",
            "description = \"diskless lab machine\""
        )
    );
}

#[test]
fn concurrent_edits_all_land() {
    let c = sample();
    let s = settings(&c);
    // Threads in this process (each edit takes the lock file itself)...
    std::thread::scope(|sc| {
        for t in 0..4u32 {
            let s = &s;
            sc.spawn(move || {
                for i in 0..5u32 {
                    let n = t * 10 + i;
                    let ch = SystemChange {
                        macs: Some(vec![format!("52:54:00:88:{t:02x}:{i:02x}")]),
                        ip: Some(format!("10.77.1.{}", n + 1)),
                        profile: Some("lab".into()),
                        ..Default::default()
                    };
                    admin::add_system(s, &format!("t{t}-{i}"), &ch).unwrap();
                }
            });
        }
        // ...and two CLI processes at the same time.
        for p in 0..2u32 {
            let c = &c;
            sc.spawn(move || {
                let name = format!("proc{p}");
                let mac = format!("52:54:00:99:00:{p:02x}");
                let ip = format!("10.77.2.{}", p + 1);
                let r = rb(
                    c,
                    &[
                        "systems",
                        "add",
                        &name,
                        "--mac",
                        &mac,
                        "--ip",
                        &ip,
                        "--profile",
                        "lab",
                        "--no-reload",
                    ],
                );
                assert_eq!(r.code, 0, "{}", r.err);
            });
        }
    });
    let inv = c.load().unwrap().inventory;
    assert_eq!(inv.systems().len(), 7 + 20 + 2);
    for t in 0..4 {
        for i in 0..5 {
            assert!(inv.system(&format!("t{t}-{i}")).is_some());
        }
    }
    assert!(inv.system("proc0").is_some() && inv.system("proc1").is_some());
    no_temp_files(c.path());
}

#[test]
fn profiles_add_edit_show_list_remove() {
    let c = sample();
    let r = rb(
        &c,
        &[
            "profiles",
            "add",
            "lab-big",
            "--parent",
            "lab",
            "--description",
            "lab machine, more time",
            "--timeout",
            "install=45m",
            "--var",
            "size=big",
            "--kernel-args",
            "console=ttyS0 ks={{ urls.config }}",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert_eq!(
        c.read("profiles/lab-big.toml"),
        "parent = \"lab\"\ndescription = \"lab machine, more time\"\n\
         kernel_args = \"console=ttyS0 ks={{ urls.config }}\"\n\n[timeouts]\ninstall = \"45m\"\n\n[vars]\nsize = \"big\"\n"
    );
    // show: inherited values resolved, each with where it came from.
    let r = rb(&c, &["profiles", "show", "lab-big"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let line = |f: &str| {
        r.out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(f))
            .unwrap_or_else(|| panic!("no {f} in {}", r.out))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("kernel"), ["kernel", "vmlinuz", "lab-base"]);
    assert_eq!(line("template"), ["template", "lab/install.sh.j2", "lab"]);
    assert_eq!(
        line("timeouts.install"),
        ["timeouts.install", "2700s", "lab-big"]
    );
    assert_eq!(line("vars.size"), ["vars.size", "big", "lab-big"]);
    let r = rb(&c, &["profiles", "show", "lab-disk", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["origin"]["installer"], "lab");
    assert_eq!(v["origin"]["kernel"], "lab-base");
    assert_eq!(v["vars_origin"]["disk_image"], "lab-disk");
    assert_eq!(v["systems"], serde_json::json!(["node50", "node51"]));

    // edit, unset.
    let r = rb(
        &c,
        &[
            "profiles",
            "edit",
            "lab-big",
            "--wait-port",
            "22",
            "--unset",
            "kernel_args",
            "--unset-var",
            "size",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let inv = c.load().unwrap().inventory;
    let p = inv.profile("lab-big").unwrap();
    assert_eq!(p.wait_ports, [22]);
    assert_eq!(p.origin["kernel_args"], "lab");
    assert!(!p.vars.contains_key("size"));

    // list.
    let r = rb(&c, &["profiles", "list"]);
    assert!(
        r.out.contains("lab-big") && r.out.starts_with("PROFILE"),
        "{}",
        r.out
    );
    let r = rb(&c, &["profiles", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    // Every profile file of the config dir (the sample's and lab-big).
    let files = std::fs::read_dir(c.path().join("profiles"))
        .unwrap()
        .count();
    assert_eq!(v.as_array().unwrap().len(), files);

    // Refusals leave the files alone.
    let before = snapshot(c.path());
    let r = rb(&c, &["profiles", "remove", "lab"]);
    assert_eq!(r.code, 1);
    for n in ["\"node52\"", "\"node53\"", "\"lab-disk\"", "\"lab-big\""] {
        assert!(r.err.contains(n), "{n} not named: {}", r.err);
    }
    let r = rb(&c, &["profiles", "add", "lab-big", "--parent", "lab"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("already exists"), "{}", r.err);
    let r = rb(
        &c,
        &[
            "profiles",
            "add",
            "broken",
            "--parent",
            "lab",
            "--template",
            "nope.j2",
        ],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains("profiles/broken.toml: template"),
        "{}",
        r.err
    );
    let r = rb(&c, &["profiles", "edit", "lab-big", "--parent", "lab-big"]);
    assert_eq!(r.code, 1, "{}", r.out);
    let r = rb(&c, &["profiles", "edit", "lab", "--template", "missing.j2"]);
    assert_eq!(r.code, 1);
    let r = rb(&c, &["profiles", "edit", "nope", "--description", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no profile \"nope\""), "{}", r.err);
    let r = rb(&c, &["profiles", "add", "../evil", "--parent", "lab"]);
    assert_eq!(r.code, 2);
    assert_eq!(snapshot(c.path()), before);

    // remove a profile nobody uses.
    let r = rb(&c, &["profiles", "remove", "lab-big"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!c.path().join("profiles/lab-big.toml").exists());
    assert!(c.load().is_ok());
}

#[test]
fn completions_and_usage() {
    let c = sample();
    for sh in ["bash", "zsh"] {
        let r = rb(&c, &["completions", sh]);
        assert_eq!(r.code, 0);
        assert!(
            r.out.contains("systems") && r.out.contains("--bmc-password-file"),
            "{sh}"
        );
        assert!(
            !r.out.contains("--bmc-password "),
            "the hidden flag is completed"
        );
    }
    assert_eq!(rb(&c, &["completions", "tcsh"]).code, 2);
    assert_eq!(rb(&c, &["systems", "frob"]).code, 2);
}

/// Render-cache: adding one system to an inventory renders just that one.
#[test]
fn edits_render_only_what_changed() {
    let c = sample();
    let s = settings(&c);
    let add = |n: &str, mac: &str, ip: &str| {
        admin::add_system(
            &s,
            n,
            &SystemChange {
                macs: Some(vec![mac.into()]),
                ip: Some(ip.into()),
                profile: Some("lab".into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let first = add("r1", "52:54:00:66:00:01", "10.77.3.1");
    assert_eq!(first.rendered, 8, "no cache yet: everything is rendered");
    let second = add("r2", "52:54:00:66:00:02", "10.77.3.2");
    assert_eq!(second.rendered, 1);
    // A profile edit re-renders that profile's systems (and its children's).
    let o = admin::edit_profile(
        &s,
        "lab",
        &rackboot::api::changes::ProfileChange {
            vars: BTreeMap::from([("k".to_string(), serde_json::json!("v"))]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(o.rendered, 6, "node50..53 (lab, lab-disk) + r1 + r2");
    // A corrupted cache is ignored, not trusted (nor is the fast path's
    // record, removed here so that the whole check runs).
    c.write(".rackboot.rendered", "garbage\n");
    std::fs::remove_file(c.path().join(admin::VALIDATED_FILE)).unwrap();
    let o = add("r3", "52:54:00:66:00:03", "10.77.3.3");
    assert_eq!(o.rendered, 10);
    assert!(matches!(
        admin::add_system(&s, "r3", &SystemChange::default()),
        Err(AdminError::Usage(_))
    ));
}

fn change(mac: &str, ip: &str, profile: &str, hostname: Option<&str>) -> SystemChange {
    SystemChange {
        macs: Some(vec![mac.into()]),
        ip: Some(ip.into()),
        profile: Some(profile.into()),
        hostname: hostname.map(Into::into),
        ..Default::default()
    }
}

fn refused(r: Result<admin::Outcome, AdminError>) -> AdminError {
    match r {
        Ok(o) => panic!("accepted (written: {:?})", o.written),
        Err(e) => e,
    }
}

/// The files on disk pass the daemon's own whole-inventory load.
fn loads_clean(c: &ConfigDir) {
    if let Err(e) = rackboot::config::load(c.path()) {
        panic!("files on disk are not a valid inventory: {e}");
    }
}

/// `systems add` checks the new entry alone when the files are the state the
/// last edit recorded: it must accept exactly what the whole-inventory check
/// accepts, refuse the same way, and never trust a state it did not check.
#[test]
fn add_fast_path_agrees_with_full_check() {
    let c = sample();
    let s = settings(&c);
    let record = c.path().join(admin::VALIDATED_FILE);
    let o = admin::add_system(
        &s,
        "f1",
        &change("52:54:00:66:01:01", "10.77.4.1", "lab", None),
    )
    .unwrap();
    assert!(o.full_check, "nothing recorded yet: whole check");
    assert!(record.exists());
    let o = admin::add_system(
        &s,
        "f2",
        &change("52:54:00:66:01:02", "10.77.4.2", "rhel9", Some("Host-F2")),
    )
    .unwrap();
    assert!(!o.full_check, "the files are the recorded state: fast path");
    assert_eq!(o.rendered, 1);
    assert_eq!(o.inventory.system("f2").unwrap().hostname, "Host-F2");
    loads_clean(&c);

    // Each refusal, with the record in place (fast path asked first) and
    // with it removed (whole check only): the same error, files untouched.
    let cases: Vec<(&str, SystemChange, &str)> = vec![
        (
            "x",
            change("52:54:00:66:01:02", "10.77.4.9", "lab", None),
            "duplicate MAC",
        ),
        (
            "x",
            change("52:54:00:66:01:09", "10.77.0.51", "lab", None),
            "duplicate IP",
        ),
        (
            "x",
            change("52:54:00:66:01:09", "10.77.4.9", "lab", Some("host-f2")),
            "duplicate hostname",
        ),
        (
            "x",
            change("52:54:00:66:01:09", "10.77.4.9", "lab", Some("node50")),
            "duplicate hostname",
        ),
        (
            "x",
            change("52:54:00:66:01:09", "10.77.4.9", "nope", None),
            "unknown profile",
        ),
        (
            "x",
            change("52:54:00:66:01:09", "10.77.4.9", "lab-base", None),
            "abstract",
        ),
        (
            "x",
            change("52:54:00:66:01", "10.77.4.9", "lab", None),
            "malformed MAC",
        ),
        (
            "f2",
            change("52:54:00:66:01:09", "10.77.4.9", "lab", None),
            "already exists",
        ),
        (
            "node51",
            change("52:54:00:66:01:09", "10.77.4.9", "lab", None),
            "already exists",
        ),
    ];
    for (name, ch, why) in &cases {
        let before = snapshot(c.path());
        let rec = std::fs::read(&record).unwrap();
        let fast = refused(admin::add_system(&s, name, ch)).to_string();
        assert!(fast.contains(why), "{name} {why}: {fast}");
        assert_eq!(snapshot(c.path()), before, "{why}");
        assert_eq!(
            std::fs::read(&record).unwrap(),
            rec,
            "a refusal keeps the record"
        );
        std::fs::remove_file(&record).unwrap();
        let full = refused(admin::add_system(&s, name, ch)).to_string();
        assert_eq!(fast, full, "{why}");
        std::fs::write(&record, &rec).unwrap();
    }
    let o = admin::add_system(
        &s,
        "f3",
        &change("52:54:00:66:01:03", "10.77.4.3", "lab", None),
    )
    .unwrap();
    assert!(!o.full_check);

    // A MAC added by hand between two edits: the record no longer matches
    // the file, so the whole check runs and sees the duplicate.
    c.append(
        "systems.toml",
        "\n[systems.byhand]\nmacs = [\"52:54:00:66:01:44\"]\nip = \"10.77.4.44\"\nprofile = \"lab\"\n",
    );
    let before = snapshot(c.path());
    let e = refused(admin::add_system(
        &s,
        "x",
        &change("52:54:00:66:01:44", "10.77.4.45", "lab", None),
    ))
    .to_string();
    assert!(e.contains("duplicate MAC") && e.contains("byhand"), "{e}");
    assert_eq!(snapshot(c.path()), before);
    let o = admin::add_system(
        &s,
        "f4",
        &change("52:54:00:66:01:04", "10.77.4.4", "lab", None),
    )
    .unwrap();
    assert!(o.full_check, "a hand edit since the record: whole check");
    let o = admin::add_system(
        &s,
        "f5",
        &change("52:54:00:66:01:05", "10.77.4.5", "lab", None),
    )
    .unwrap();
    assert!(!o.full_check, "and recorded again");

    // A profile made abstract by hand: the systems using it are now invalid.
    c.replace(
        "profiles/rhel9.toml",
        "description",
        "abstract = true\ndescription",
    );
    let before = snapshot(c.path());
    let e = refused(admin::add_system(
        &s,
        "x",
        &change("52:54:00:66:01:09", "10.77.4.9", "lab", None),
    ));
    assert!(matches!(e, AdminError::Broken { .. }), "{e}");
    assert!(e.to_string().contains("systems.f2.profile"), "{e}");
    assert_eq!(snapshot(c.path()), before);
    c.replace("profiles/rhel9.toml", "abstract = true\n", "");

    // A template broken by hand: every system using it fails to render.
    // Put back byte for byte, the files are the recorded state again.
    let o = admin::add_system(
        &s,
        "f6",
        &change("52:54:00:66:01:06", "10.77.4.6", "lab", None),
    )
    .unwrap();
    assert!(!o.full_check);
    c.append("kickstarts/lab/install.sh.j2", "\n{{ vars.no_such_var }}\n");
    let before = snapshot(c.path());
    let e = refused(admin::add_system(
        &s,
        "x",
        &change("52:54:00:66:01:09", "10.77.4.9", "rhel9", None),
    ));
    assert!(matches!(e, AdminError::Broken { .. }), "{e}");
    assert_eq!(snapshot(c.path()), before);
    c.replace(
        "kickstarts/lab/install.sh.j2",
        "\n{{ vars.no_such_var }}\n",
        "",
    );

    // A torn or foreign record is not trusted.
    let o = admin::add_system(
        &s,
        "f7",
        &change("52:54:00:66:01:07", "10.77.4.7", "lab", None),
    )
    .unwrap();
    assert!(!o.full_check);
    let rec = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, &rec[..rec.len() - 4]).unwrap();
    let o = admin::add_system(
        &s,
        "f8",
        &change("52:54:00:66:01:08", "10.77.4.8", "lab", None),
    )
    .unwrap();
    assert!(o.full_check, "torn record");
    let rec = std::fs::read_to_string(&record).unwrap();
    let forged = rec.replacen("\nn f8\n", "\n", 1).replace("end ", "end x");
    std::fs::write(&record, forged).unwrap();
    let o = admin::add_system(
        &s,
        "f9",
        &change("52:54:00:66:01:0a", "10.77.4.10", "lab", None),
    )
    .unwrap();
    assert!(o.full_check, "malformed record");
    loads_clean(&c);

    // systems.toml whose root holds the systems inline: appending a
    // [systems.NAME] table would not be TOML; the fast path stays out.
    c.write(
        "systems.toml",
        "systems = { z1 = { macs = [\"52:54:00:66:02:01\"], ip = \"10.77.5.1\", profile = \"lab\" } }\n",
    );
    // A profile edit checks the whole inventory and records this state.
    admin::edit_profile(
        &s,
        "lab",
        &rackboot::api::changes::ProfileChange {
            vars: BTreeMap::from([("k".to_string(), serde_json::json!("v"))]),
            ..Default::default()
        },
    )
    .unwrap();
    let before = snapshot(c.path());
    let r = admin::add_system(
        &s,
        "z2",
        &change("52:54:00:66:02:02", "10.77.5.2", "lab", None),
    );
    match r {
        Ok(o) => {
            assert!(o.full_check);
            loads_clean(&c);
        }
        Err(_) => assert_eq!(snapshot(c.path()), before),
    }
    no_temp_files(c.path());
}

/// The daemon's reload renders only what the render cache cannot vouch
/// for, yet still refuses a template that fails for one system.
#[test]
fn reload_renders_what_changed_and_still_refuses_failures() {
    let c = sample();
    let s = settings(&c);
    admin::load_for_serving(&s).unwrap();
    // A template that fails only for a system with `boom` in its vars: the
    // template changed, so every system is rendered; none has it yet.
    c.append(
        "kickstarts/lab/install-disk.sh.j2",
        "{% if vars.boom is defined %}{{ vars.no_such_var }}{% endif %}\n",
    );
    admin::load_for_serving(&s).unwrap();
    // node51 gets it by hand: only its rendering inputs changed, and it fails.
    c.replace(
        "systems.toml",
        "profile = \"lab-disk\"\n[systems.node51.bmc]",
        "profile = \"lab-disk\"\nvars = { boom = 1 }\n[systems.node51.bmc]",
    );
    let e = admin::load_for_serving(&s).unwrap_err().to_string();
    assert!(e.contains("systems.node51"), "{e}");
    // A corrupted render cache vouches for nothing.
    c.replace("systems.toml", "vars = { boom = 1 }\n", "");
    admin::load_for_serving(&s).unwrap();
    c.write(".rackboot.rendered", "garbage\n");
    c.replace(
        "kickstarts/lab/install-disk.sh.j2",
        "{% if vars.boom is defined %}",
        "{% if system.name == \"node51\" %}",
    );
    let e = admin::load_for_serving(&s).unwrap_err().to_string();
    assert!(e.contains("systems.node51"), "{e}");
}

// ---------------------------------------------------------------------------
// With a running daemon

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_add_is_served_by_running_daemon() {
    let l = lab().await;
    let mac = "52:54:00:77:00:65";
    assert!(l.offer(mac).await.is_none());
    assert_eq!(
        l.get(l.d.http_addr, "/ipxe/52-54-00-77-00-65").await.status,
        404
    );

    let c = l.c.path().to_path_buf();
    let r = tokio::task::spawn_blocking(move || {
        let o = Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--config")
            .arg(&c)
            .args([
                "systems",
                "add",
                "node65",
                "--mac",
                mac,
                "--ip",
                "10.77.0.65",
                "--profile",
                "lab",
            ])
            .env_remove("RACKBOOT_TOKEN")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert_eq!(r.0, Some(0), "{}{}", r.1, r.2);
    assert!(r.1.contains("daemon reloaded: generation 2"), "{}", r.1);

    // Served without a restart: a DHCP reservation and the boot script.
    assert_eq!(
        l.offer(mac).await,
        Some(std::net::Ipv4Addr::new(10, 77, 0, 65))
    );
    let s = l.get(l.d.http_addr, "/ipxe/52-54-00-77-00-65").await;
    assert_eq!(s.status, 200, "{}", s.text());
    assert!(s.text().contains("node65"), "{}", s.text());

    // A refused change leaves the daemon as it was.
    let c = l.c.path().to_path_buf();
    let code = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rackboot"))
            .arg("--config")
            .arg(&c)
            .args([
                "systems",
                "add",
                "node66",
                "--mac",
                mac,
                "--ip",
                "10.77.0.66",
                "--profile",
                "lab",
            ])
            .output()
            .unwrap()
            .status
            .code()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1));
    assert_eq!(l.d.reloader.generation(), 2);
    l.d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_edits_write_files_and_reload() {
    use serde_json::json;
    let l = lab().await;
    let new = json!({
        "name": "node67", "macs": ["52:54:00:77:00:67"], "ip": "10.77.0.67", "profile": "lab",
        "bmc": {"kind": "ipmi", "address": "10.77.0.167", "username": "admin",
                "password_file": "tests/lab/bmc-password"},
        "vars": {"rack": "r7", "u": 3},
    });
    // The token is required.
    let r = l
        .api("POST", "/api/v1/systems", Some(new.clone()), false)
        .await;
    assert_eq!(r.status, 401);
    let before = l.c.read("systems.toml");
    let r = l
        .api("POST", "/api/v1/systems", Some(new.clone()), true)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v: api::Edit = r.typed();
    let api::Edited::System(Some(sys)) = &v.object else {
        panic!("not a system: {}", r.text())
    };
    assert_eq!(sys.name, "node67");
    assert_eq!(sys.bmc.as_ref().unwrap().username, "admin");
    assert_eq!(v.generation, 2);
    assert!(!r.text().contains("bmc-password"), "{}", r.text());
    let after = l.c.read("systems.toml");
    assert!(after.starts_with(&before));
    assert!(
        after.contains("[systems.node67.vars]\nrack = \"r7\"\nu = 3\n"),
        "{after}"
    );
    assert_eq!(
        l.offer("52:54:00:77:00:67").await,
        Some(std::net::Ipv4Addr::new(10, 77, 0, 67))
    );
    assert_eq!(
        l.get(l.d.http_addr, "/ipxe/52-54-00-77-00-67").await.status,
        200
    );

    // Conflicts: 409 with the reason; invalid: 422; files unchanged.
    let snap = snapshot(l.c.path());
    let r = l
        .api("POST", "/api/v1/systems", Some(new.clone()), true)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let mut dup = new.clone();
    dup["name"] = json!("node68");
    dup["macs"] = json!(["52:54:00:77:00:68"]);
    let r = l
        .api("POST", "/api/v1/systems", Some(dup.clone()), true)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let e = &r.typed::<api::ErrorBody>().error.errors.unwrap()[0];
    assert_eq!(e.key, "systems.node68.ip");
    assert!(e.reason.contains("\"node67\""));
    dup["ip"] = json!("10.77.0.68");
    dup["profile"] = json!("nope");
    let r = l
        .api("POST", "/api/v1/systems", Some(dup.clone()), true)
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.typed::<api::ErrorBody>().error.errors.unwrap()[0].key,
        "systems.node68.profile"
    );
    dup["profile"] = json!("lab");
    dup["bmc"]["password"] = json!("hunter2");
    let r = l
        .api("POST", "/api/v1/systems", Some(dup.clone()), true)
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("inline BMC passwords"));
    let r = l
        .api(
            "POST",
            "/api/v1/systems",
            Some(json!({"name": "x", "bogus": 1})),
            true,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = l
        .api(
            "PUT",
            "/api/v1/systems/nope",
            Some(json!({"ip": "10.77.0.99"})),
            true,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(snapshot(l.c.path()), snap);
    assert_eq!(l.d.reloader.generation(), 2);

    // PUT changes in place; the daemon follows.
    let r = l
        .api(
            "PUT",
            "/api/v1/systems/node67",
            Some(json!({"ip": "10.77.0.167", "unset_vars": ["u"]})),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    match r.typed::<api::Edit>().object {
        api::Edited::System(Some(s)) => assert_eq!(s.ip, "10.77.0.167"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        l.offer("52:54:00:77:00:67").await,
        Some(std::net::Ipv4Addr::new(10, 77, 0, 167))
    );

    // Profiles: POST, PUT, DELETE refused while used, then allowed.
    let r = l
        .api(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "lab-api", "parent": "lab", "vars": {"x": "1"}})),
            true,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Wire names, then the typed answer.
    assert_eq!(r.json()["profile"]["origin"]["kernel"], "lab-base");
    let api::Edited::Profile(Some(p)) = r.typed::<api::Edit>().object else {
        panic!("not a profile: {}", r.text())
    };
    assert_eq!(p.parent.as_deref(), Some("lab"));
    let r = l
        .api(
            "PUT",
            "/api/v1/systems/node67",
            Some(json!({"profile": "lab-api"})),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = l
        .api(
            "PUT",
            "/api/v1/profiles/lab-api",
            Some(json!({"description": "via API"})),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    match r.typed::<api::Edit>().object {
        api::Edited::Profile(Some(p)) => assert_eq!(p.description, "via API"),
        other => panic!("{other:?}"),
    }
    // `reboots` is set and unset through the API like every other key.
    for (body, want, origin) in [
        (json!({"reboots": true}), true, Some("lab-api")),
        // Unset: inherited again from its parent `lab` (reboots = false).
        (json!({"unset": ["reboots"]}), false, Some("lab")),
    ] {
        let r = l
            .api("PUT", "/api/v1/profiles/lab-api", Some(body), true)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        match r.typed::<api::Edit>().object {
            api::Edited::Profile(Some(p)) => {
                assert_eq!(p.reboots, want);
                assert_eq!(p.origin.get("reboots").map(String::as_str), origin);
            }
            other => panic!("{other:?}"),
        }
        let file = l.c.read("profiles/lab-api.toml");
        assert_eq!(file.contains("reboots = true"), want, "{file}");
    }
    let r = l
        .api("DELETE", "/api/v1/profiles/lab-api", None, true)
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("node67"));
    let r = l.api("DELETE", "/api/v1/systems/node67", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.typed::<api::Edit>().object,
        api::Edited::Removed("node67".into())
    );
    assert!(l.offer("52:54:00:77:00:67").await.is_none());
    let r = l
        .api("DELETE", "/api/v1/profiles/lab-api", None, true)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!l.c.path().join("profiles/lab-api.toml").exists());
    let r = l.api("GET", "/api/v1/systems", None, true).await;
    assert_eq!(r.typed::<Vec<api::System>>().len(), 7);
    assert!(l.c.load().is_ok());
    l.d.stop().await;
}

#[test]
fn profiles_edit_sets_and_unsets_reboots_and_bmc_keys() {
    let c = sample();
    // The sample's `lab` has `reboots = false`.
    let r = rb(&c, &["profiles", "edit", "lab", "--reboots", "true"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(c.read("profiles/lab.toml").contains("reboots = true\n"));
    let r = rb(&c, &["profiles", "show", "lab", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v["reboots"], true);
    assert_eq!(v["origin"]["reboots"], "lab");
    let r = rb(&c, &["profiles", "edit", "lab", "--unset", "reboots"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(!c.read("profiles/lab.toml").contains("reboots"));
    // `--unset` offers exactly the field table's keys.
    let r = rb(&c, &["profiles", "edit", "lab", "--unset", "nope"]);
    assert_eq!(r.code, 2, "{}", r.err);
    assert!(r.err.contains("reboots"), "{}", r.err);

    // The BMC keys the CLI could not set before.
    let r = rb(
        &c,
        &[
            "systems",
            "edit",
            "node50",
            "--bmc-cipher-suite",
            "3",
            "--bmc-cipher-suite",
            "17",
            "--bmc-system-id",
            "sys-1",
            "--bmc-insecure-tls",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let t = c.read("systems.toml");
    assert!(t.contains("cipher_suites = [3, 17]"), "{t}");
    assert!(t.contains("system_id = \"sys-1\""), "{t}");
    assert!(t.contains("insecure_tls = true"), "{t}");
}
