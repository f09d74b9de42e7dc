//! The keys of a profile file and of a system's `[bmc]` table, one table each.
//!
//! Every list of these keys is read from here: the order new files are
//! written in and what `unset` accepts (`admin`), which keys a child profile
//! inherits (`config` profile resolution), the CLI flag that sets each key and
//! the API field (`api::changes`). `tests/it/fields.rs` checks the tables
//! against the structs themselves (the file format `config::wire`, the API
//! body, the CLI's clap definition), so a key added to one of them and not
//! here fails a test instead of drifting.

use super::wire::ProfileWire;

/// How the CLI and the API change a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Set by the CLI flag `cli` and the API field of the same name as the
    /// key; removed by `unset`.
    Value { cli: &'static str },
    /// A table edited key by key (`cli` flag `K=V`, API map), removed whole
    /// by `unset`.
    Map { cli: &'static str },
    /// Not set through the CLI or the API (the reason says where); `unset`
    /// still removes it.
    FileOnly(&'static str),
    /// Refused everywhere with a clear message (the reason); present in the
    /// wire struct only to give that message.
    Refused(&'static str),
}

/// How a child profile gets the key from its parent chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherit {
    /// Not inherited (it is about the profile file itself).
    No,
    /// The nearest profile that sets it wins.
    Override,
    /// Merged key by key, the child's keys winning.
    MergeKeys,
}

/// One key of a profile file.
pub struct ProfileField {
    pub key: &'static str,
    pub inherit: Inherit,
    pub edit: Edit,
    /// Copy the key from `from` into `to` when `from` sets it; returns
    /// whether it did (inheritance of `Override` keys, and an API change).
    pub copy: fn(to: &mut ProfileWire, from: &ProfileWire) -> bool,
}

macro_rules! profile_fields {
    ($($key:literal => $f:ident, $inherit:ident, $edit:expr;)*) => {
        /// Every key of `profiles/NAME.toml`, in the order new files are written.
        pub const PROFILE: &[ProfileField] = &[$(
            ProfileField {
                key: $key,
                inherit: Inherit::$inherit,
                edit: $edit,
                copy: |to: &mut ProfileWire, from: &ProfileWire| {
                    if from.$f.is_some() {
                        to.$f = from.$f.clone();
                        true
                    } else {
                        false
                    }
                },
            },
        )*];
    };
}

const STAGES_IN_FILE: &str =
    "stages are a list of tables ([[stages]]): edit them in the profile file";

profile_fields! {
    "parent" => parent, No, Edit::Value { cli: "parent" };
    "abstract" => r#abstract, No, Edit::Value { cli: "abstract" };
    "description" => description, Override, Edit::Value { cli: "description" };
    "kernel" => kernel, Override, Edit::Value { cli: "kernel" };
    "initrd" => initrd, Override, Edit::Value { cli: "initrd" };
    "kernel_args" => kernel_args, Override, Edit::Value { cli: "kernel-args" };
    "installer" => installer, Override, Edit::Value { cli: "installer" };
    "template" => template, Override, Edit::Value { cli: "template" };
    "user_data" => user_data, Override, Edit::Value { cli: "user-data" };
    "meta_data" => meta_data, Override, Edit::Value { cli: "meta-data" };
    "vendor_data" => vendor_data, Override, Edit::Value { cli: "vendor-data" };
    "ipxe_template" => ipxe_template, Override, Edit::Value { cli: "ipxe-template" };
    "loader" => loader, Override, Edit::Value { cli: "loader" };
    "wait_ports" => wait_ports, Override, Edit::Value { cli: "wait-port" };
    "reboots" => reboots, Override, Edit::Value { cli: "reboots" };
    "boot_retries" => boot_retries, Override, Edit::Value { cli: "boot-retries" };
    "after_install" => after_install, Override, Edit::Value { cli: "after-install" };
    "on_interrupted_stage" => on_interrupted_stage, Override, Edit::Value { cli: "on-interrupted-stage" };
    "timeouts" => timeouts, Override, Edit::Map { cli: "timeout" };
    "stages" => stages, Override, Edit::FileOnly(STAGES_IN_FILE);
    "vars" => vars, MergeKeys, Edit::Map { cli: "var" };
}

/// The profile keys `unset` accepts (all of them, in file order).
pub fn profile_keys() -> impl Iterator<Item = &'static str> {
    PROFILE.iter().map(|f| f.key)
}

/// The optional keys of a system that `unset` removes (back to the
/// `[dhcp]` defaults, or no BMC).
pub const SYSTEM_UNSETTABLE: &[&str] = &[
    "hostname", "netmask", "gateway", "dns", "domain", "loader", "bmc",
];

/// One key of a system's `[bmc]` table.
pub struct BmcField {
    pub key: &'static str,
    pub edit: Edit,
}

/// Every key of a system's `[bmc]` table (`systems add|edit --bmc-*`, the
/// API's `bmc` object).
pub const BMC: &[BmcField] = &[
    BmcField {
        key: "kind",
        edit: Edit::Value { cli: "bmc-kind" },
    },
    BmcField {
        key: "address",
        edit: Edit::Value { cli: "bmc-address" },
    },
    BmcField {
        key: "username",
        edit: Edit::Value { cli: "bmc-user" },
    },
    BmcField {
        key: "password_file",
        edit: Edit::Value {
            cli: "bmc-password-file",
        },
    },
    BmcField {
        key: "password_env",
        edit: Edit::Value {
            cli: "bmc-password-env",
        },
    },
    BmcField {
        key: "password",
        edit: Edit::Refused(
            "a BMC password is never stored inline: use password_file or password_env",
        ),
    },
    BmcField {
        key: "cipher_suites",
        edit: Edit::Value {
            cli: "bmc-cipher-suite",
        },
    },
    BmcField {
        key: "insecure_tls",
        edit: Edit::Value {
            cli: "bmc-insecure-tls",
        },
    },
    BmcField {
        key: "system_id",
        edit: Edit::Value {
            cli: "bmc-system-id",
        },
    },
];
