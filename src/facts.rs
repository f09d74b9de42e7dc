//! Facts from a machine (`api::facts::Facts`): the check every report
//! passes before anything is stored. Pure: bytes in, facts or a refusal out.
//!
//! The report is untrusted input. It is refused as a whole (nothing stored)
//! when it is larger than [`MAX_BYTES`], is not the schema (unknown keys
//! included), lists more than [`MAX_ITEMS`] disks or NICs, or carries a
//! string that is longer than [`MAX_STR`] or holds a control character. What
//! passes still reaches stage commands only through the environment and a
//! JSON file, and templates only as data; `template::shell_quote` is the filter for a
//! template that must put a fact into a shell line.

use crate::api::facts::Facts;

/// A report's size limit.
pub const MAX_BYTES: usize = 64 * 1024;
/// Disks or NICs per report.
pub const MAX_ITEMS: usize = 128;
/// Characters per string.
pub const MAX_STR: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("the report is {0} bytes; at most {MAX_BYTES}")]
    TooLarge(usize),
    #[error("not a facts report: {0}")]
    Schema(String),
    #[error("{0}: more than {MAX_ITEMS} entries")]
    TooMany(&'static str),
    #[error("{0}: {1}")]
    BadString(String, &'static str),
}

/// Parse and bound a report.
pub fn check(body: &[u8]) -> Result<Facts, FactsError> {
    if body.len() > MAX_BYTES {
        return Err(FactsError::TooLarge(body.len()));
    }
    let f: Facts = serde_json::from_slice(body).map_err(|e| FactsError::Schema(e.to_string()))?;
    if f.disks.len() > MAX_ITEMS {
        return Err(FactsError::TooMany("disks"));
    }
    if f.nics.len() > MAX_ITEMS {
        return Err(FactsError::TooMany("nics"));
    }
    let mut strings: Vec<(String, &str)> = Vec::new();
    if let Some(c) = &f.cpu {
        strings.extend(c.model.as_deref().map(|s| ("cpu.model".into(), s)));
    }
    for (i, d) in f.disks.iter().enumerate() {
        strings.push((format!("disks[{i}].name"), &d.name));
        strings.extend(d.model.as_deref().map(|s| (format!("disks[{i}].model"), s)));
        strings.extend(
            d.serial
                .as_deref()
                .map(|s| (format!("disks[{i}].serial"), s)),
        );
    }
    for (i, n) in f.nics.iter().enumerate() {
        strings.push((format!("nics[{i}].name"), &n.name));
        strings.push((format!("nics[{i}].mac"), &n.mac));
    }
    if let Some(d) = &f.dmi {
        for (k, v) in [
            ("dmi.vendor", &d.vendor),
            ("dmi.product", &d.product),
            ("dmi.serial", &d.serial),
            ("dmi.bios_version", &d.bios_version),
        ] {
            strings.extend(v.as_deref().map(|s| (k.to_string(), s)));
        }
    }
    strings.extend(f.firmware.as_deref().map(|s| ("firmware".into(), s)));
    for (key, s) in strings {
        if s.chars().count() > MAX_STR {
            return Err(FactsError::BadString(key, "too long"));
        }
        if s.chars().any(char::is_control) {
            return Err(FactsError::BadString(key, "holds a control character"));
        }
    }
    if let Some(fw) = &f.firmware {
        if fw != "bios" && fw != "uefi" {
            return Err(FactsError::BadString(
                "firmware".into(),
                "is not bios or uefi",
            ));
        }
    }
    for (i, n) in f.nics.iter().enumerate() {
        if n.mac.parse::<crate::model::Mac>().is_err() {
            return Err(FactsError::BadString(
                format!("nics[{i}].mac"),
                "is not a MAC address",
            ));
        }
    }
    Ok(f)
}

/// A short line of the facts: CPUs, memory, the first disk (and how many
/// more), as `rackboot discovered`'s FACTS column shows them:
/// `2 CPUs, 1024 MiB, vda 2.0 GiB`. Parts the report lacks are left out.
pub fn summary(f: &Facts) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &f.cpu {
        parts.push(format!(
            "{} CPU{}",
            c.count,
            if c.count == 1 { "" } else { "s" }
        ));
    }
    if let Some(m) = f.memory_mib {
        parts.push(format!("{m} MiB"));
    }
    if let Some(d) = f.disks.first() {
        let size = if d.size_bytes >= 1 << 30 {
            format!("{:.1} GiB", d.size_bytes as f64 / (1u64 << 30) as f64)
        } else {
            format!("{} MiB", d.size_bytes >> 20)
        };
        let more = match f.disks.len() - 1 {
            0 => String::new(),
            1 => " +1 disk".into(),
            n => format!(" +{n} disks"),
        };
        parts.push(format!("{} {size}{more}", d.name));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The facts as environment variables for stage commands (values are never
/// spliced into a shell line; a stage reads `"$RACKBOOT_FACT_…"`).
pub fn env(f: &Facts) -> Vec<(String, String)> {
    let mut e = Vec::new();
    if let Some(m) = f.memory_mib {
        e.push(("RACKBOOT_FACT_MEMORY_MIB".into(), m.to_string()));
    }
    if let Some(c) = &f.cpu {
        e.push(("RACKBOOT_FACT_CPUS".into(), c.count.to_string()));
        if let Some(m) = &c.model {
            e.push(("RACKBOOT_FACT_CPU_MODEL".into(), m.clone()));
        }
    }
    if let Some(d) = f.disks.first() {
        e.push(("RACKBOOT_FACT_DISK0".into(), d.name.clone()));
        e.push(("RACKBOOT_FACT_DISK0_BYTES".into(), d.size_bytes.to_string()));
    }
    if let Some(fw) = &f.firmware {
        e.push(("RACKBOOT_FACT_FIRMWARE".into(), fw.clone()));
    }
    if let Some(sb) = f.secure_boot {
        e.push(("RACKBOOT_FACT_SECURE_BOOT".into(), sb.to_string()));
    }
    if let Some(p) = f.dmi.as_ref().and_then(|d| d.product.clone()) {
        e.push(("RACKBOOT_FACT_PRODUCT".into(), p));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cpu": {"model": "QEMU Virtual CPU", "count": 2},
        "memory_mib": 1024, "firmware": "bios", "secure_boot": false,
        "disks": [{"name": "vda", "size_bytes": 2147483648, "rotational": true}],
        "nics": [{"name": "eth0", "mac": "52:54:00:77:00:50", "link": true}],
        "dmi": {"vendor": "QEMU", "product": "Standard PC (i440FX + PIIX, 1996)"}}"#;

    #[test]
    fn a_good_report_passes() {
        let f = check(GOOD.as_bytes()).unwrap();
        assert_eq!(f.memory_mib, Some(1024));
        assert_eq!(f.disks[0].name, "vda");
        let env = env(&f);
        assert!(env.contains(&("RACKBOOT_FACT_DISK0".into(), "vda".into())));
        assert!(env.contains(&("RACKBOOT_FACT_CPUS".into(), "2".into())));
    }

    #[test]
    fn refusals_table() {
        let big = format!(
            r#"{{"firmware": "bios", "dmi": {{"vendor": "{}"}}}}"#,
            "x".repeat(MAX_BYTES)
        );
        let many = format!(
            r#"{{"disks": [{}]}}"#,
            vec![r#"{"name": "sda", "size_bytes": 1}"#; MAX_ITEMS + 1].join(",")
        );
        let long = format!(r#"{{"dmi": {{"serial": "{}"}}}}"#, "s".repeat(MAX_STR + 1));
        let cases: &[(&str, &str)] = &[
            (&big, "bytes; at most"),
            ("[1, 2]", "not a facts report"),
            (r#"{"memory_mib": -1}"#, "not a facts report"),
            (r#"{"memory_mib": 1, "rootkit": true}"#, "unknown field"),
            (&many, "disks: more than"),
            (&long, "dmi.serial: too long"),
            (
                r#"{"disks": [{"name": "sda\n; reboot", "size_bytes": 1}]}"#,
                "disks[0].name: holds a control character",
            ),
            (
                r#"{"firmware": "coreboot"}"#,
                "firmware: is not bios or uefi",
            ),
            (
                r#"{"nics": [{"name": "eth0", "mac": "$(reboot)"}]}"#,
                "nics[0].mac: is not a MAC address",
            ),
        ];
        for (body, want) in cases {
            let e = check(body.as_bytes()).expect_err(body).to_string();
            assert!(e.contains(want), "{body:.60}: {e}");
        }
    }

    #[test]
    fn summary_is_short() {
        assert_eq!(
            summary(&check(GOOD.as_bytes()).unwrap()),
            "2 CPUs, 1024 MiB, vda 2.0 GiB"
        );
        assert_eq!(summary(&check(b"{}").unwrap()), "-");
        let two = r#"{"memory_mib": 512, "disks": [{"name": "sda", "size_bytes": 1073741824},
            {"name": "sdb", "size_bytes": 1}]}"#;
        assert_eq!(
            summary(&check(two.as_bytes()).unwrap()),
            "512 MiB, sda 1.0 GiB +1 disk"
        );
        let small = r#"{"cpu": {"count": 1}, "disks": [{"name": "vda", "size_bytes": 268435456}]}"#;
        assert_eq!(
            summary(&check(small.as_bytes()).unwrap()),
            "1 CPU, vda 256 MiB"
        );
    }

    #[test]
    fn shell_quote_is_one_word() {
        use crate::template::shell_quote;
        assert_eq!(shell_quote("sda"), "'sda'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("$(reboot); `id`"), "'$(reboot); `id`'");
    }
}
