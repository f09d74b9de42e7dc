//! The field tables (`config::fields`) against the structs they describe:
//! the file format (`config::wire`), the API bodies (`api::changes`) and the
//! CLI's flags (clap). A key added to one of them and not to the table, or a
//! key the table says is editable that the CLI or the API cannot set, fails
//! here instead of drifting.

use clap::CommandFactory;
use rackboot::api::changes::{BmcChange, ProfileChange};
use rackboot::config::fields::{self, Edit, Inherit};
use rackboot::config::wire::{BmcWire, ProfileWire};
use std::collections::BTreeSet;

/// The names between backticks after "expected" in serde's "unknown field" error.
fn expected_names(err: &str) -> BTreeSet<String> {
    let tail = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("not an unknown-field error: {err}"))
        .1;
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The field names of a `deny_unknown_fields` struct read from TOML.
fn toml_fields<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let e = toml::from_str::<T>("zz_not_a_field = 1").unwrap_err();
    expected_names(&e.to_string())
}

/// The field names of a `deny_unknown_fields` struct read from JSON.
fn json_fields<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let e = serde_json::from_str::<T>(r#"{"zz_not_a_field": 1}"#).unwrap_err();
    expected_names(&e.to_string())
}

/// The long flags of `rackboot <group> <verb>`.
fn cli_flags(group: &str, verb: &str) -> BTreeSet<String> {
    let cmd = rackboot::cli::Cli::command();
    let sub = cmd
        .find_subcommand(group)
        .and_then(|g| g.find_subcommand(verb))
        .unwrap_or_else(|| panic!("no `rackboot {group} {verb}`"));
    sub.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// The values `rackboot <group> <verb> --unset` accepts.
fn cli_unset_values(group: &str, verb: &str) -> BTreeSet<String> {
    let cmd = rackboot::cli::Cli::command();
    let sub = cmd
        .find_subcommand(group)
        .and_then(|g| g.find_subcommand(verb))
        .unwrap();
    let a = sub
        .get_arguments()
        .find(|a| a.get_long() == Some("unset"))
        .expect("an --unset flag");
    a.get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect()
}

#[test]
fn the_helpers_see_what_they_should() {
    // The parsers these tests rely on, on a struct whose fields we know.
    assert_eq!(
        expected_names("unknown field `x`, expected one of `a`, `b_c`, `d`"),
        ["a", "b_c", "d"].map(String::from).into()
    );
    assert_eq!(
        expected_names("unknown field `x`, expected `a` or `b`"),
        ["a", "b"].map(String::from).into()
    );
    assert!(toml_fields::<ProfileWire>().contains("kernel"));
    assert!(json_fields::<ProfileChange>().contains("kernel"));
    assert!(cli_flags("profiles", "edit").contains("kernel"));
}

#[test]
fn profile_table_is_the_file_format() {
    let wire = toml_fields::<ProfileWire>();
    let table: BTreeSet<String> = fields::profile_keys().map(String::from).collect();
    assert_eq!(
        wire, table,
        "profiles/NAME.toml keys (config::wire::ProfileWire) and config::fields::PROFILE differ"
    );
}

#[test]
fn every_profile_key_is_editable_by_cli_and_api_or_says_why_not() {
    let api = json_fields::<ProfileChange>();
    let verbs = ["name", "unset", "unset_vars"];
    for verb in ["add", "edit"] {
        let cli = cli_flags("profiles", verb);
        for f in fields::PROFILE {
            match f.edit {
                Edit::Value { cli: flag } | Edit::Map { cli: flag } => {
                    assert!(
                        api.contains(f.key),
                        "profile key {:?} is editable but ProfileChange has no field for it",
                        f.key
                    );
                    assert!(
                        cli.contains(flag),
                        "profile key {:?}: `rackboot profiles {verb}` has no --{flag}",
                        f.key
                    );
                }
                Edit::FileOnly(why) | Edit::Refused(why) => {
                    assert!(!why.is_empty());
                }
            }
        }
    }
    // Nothing in the API body that the table does not know (besides the verbs).
    for a in &api {
        assert!(
            verbs.contains(&a.as_str()) || fields::profile_keys().any(|k| k == a),
            "ProfileChange field {a:?} is not in config::fields::PROFILE"
        );
    }
    // `--unset` offers exactly the table's keys.
    assert_eq!(
        cli_unset_values("profiles", "edit"),
        fields::profile_keys().map(String::from).collect()
    );
}

#[test]
fn every_key_is_copied_by_its_own_entry() {
    // A profile that sets every key.
    let full: ProfileWire = toml::from_str(
        r#"
        parent = "p"
        abstract = true
        description = "d"
        kernel = "k"
        initrd = ["i"]
        kernel_args = "a"
        installer = "script"
        template = "t"
        user_data = "u"
        meta_data = "m"
        vendor_data = "v"
        ipxe_template = "x"
        loader = "grub"
        wait_ports = [22]
        reboots = false
        boot_retries = 1
        after_install = "netboot"
        on_interrupted_stage = "fail"
        timeouts = { install = "1m" }
        stages = [{ name = "s", kind = "test", command = "true", when = "before" }]
        vars = { a = 1 }
        "#,
    )
    .unwrap();
    let mut rebuilt = ProfileWire::default();
    for f in fields::PROFILE {
        let mut one = ProfileWire::default();
        assert!(
            (f.copy)(&mut one, &full),
            "{:?}: copy() took nothing",
            f.key
        );
        // It copied its own key: exactly one key of `one` is set, and it is f.key.
        let v = toml::Value::try_from(&one).unwrap();
        let keys: Vec<&String> = v.as_table().unwrap().keys().collect();
        assert_eq!(keys, [f.key], "{:?}: copy() set other keys", f.key);
        // Copying from an empty profile changes nothing.
        assert!(!(f.copy)(&mut one, &ProfileWire::default()), "{}", f.key);
        (f.copy)(&mut rebuilt, &full);
    }
    // Every key together rebuilds the whole profile.
    assert_eq!(rebuilt, full);
    // Which keys a child inherits.
    let inherited: Vec<&str> = fields::PROFILE
        .iter()
        .filter(|f| f.inherit != Inherit::No)
        .map(|f| f.key)
        .collect();
    assert!(!inherited.contains(&"parent") && !inherited.contains(&"abstract"));
    assert!(inherited.contains(&"reboots") && inherited.contains(&"vars"));
}

#[test]
fn bmc_table_is_the_file_format_and_editable() {
    let wire = toml_fields::<BmcWire>();
    let table: BTreeSet<String> = fields::BMC.iter().map(|f| f.key.to_string()).collect();
    assert_eq!(wire, table, "[bmc] keys and config::fields::BMC differ");
    let api = json_fields::<BmcChange>();
    for verb in ["add", "edit"] {
        let cli = cli_flags("systems", verb);
        for f in fields::BMC {
            match f.edit {
                Edit::Value { cli: flag } | Edit::Map { cli: flag } => {
                    assert!(api.contains(f.key), "BmcChange has no {:?}", f.key);
                    assert!(
                        cli.contains(flag),
                        "bmc key {:?}: `rackboot systems {verb}` has no --{flag}",
                        f.key
                    );
                }
                Edit::FileOnly(_) | Edit::Refused(_) => {}
            }
        }
    }
}

#[test]
fn profile_change_wire_is_flat_typed_and_names_bad_keys() {
    use serde_json::json;
    let body = json!({
        "name": "p", "kernel": "k", "reboots": false, "wait_ports": [22],
        "timeouts": {"install": "1m"}, "vars": {"a": 1, "b": null},
        "unset": ["template"], "unset_vars": ["c"],
    });
    let ch: ProfileChange = serde_json::from_value(body).unwrap();
    assert_eq!(ch.name.as_deref(), Some("p"));
    assert_eq!(ch.set.kernel.as_deref(), Some("k"));
    assert_eq!(ch.set.reboots, Some(false));
    assert_eq!(ch.set.wait_ports, Some(vec![22]));
    assert_eq!(ch.timeouts["install"], "1m");
    assert!(ch.vars["b"].is_null());
    assert_eq!(ch.unset, ["template"]);
    // What the CLI sends is what the server reads.
    let back: ProfileChange = serde_json::from_value(serde_json::to_value(&ch).unwrap()).unwrap();
    assert_eq!(back, ch);
    let err = |v: serde_json::Value| {
        serde_json::from_value::<ProfileChange>(v)
            .unwrap_err()
            .to_string()
    };
    let e = err(json!({"reboots": "yes"}));
    assert!(
        e.starts_with("reboots: invalid type: string \"yes\", expected a boolean"),
        "{e}"
    );
    let e = err(json!({"stages": []}));
    assert!(
        e.contains("unknown field `stages` (stages are a list of tables"),
        "{e}"
    );
    let e = err(json!({"kernal": "k"}));
    assert!(
        e.starts_with("unknown field `kernal`, expected one of"),
        "{e}"
    );
    assert!(e.contains("`kernel`") && e.contains("`unset_vars`"), "{e}");
}
