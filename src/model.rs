//! Value types shared by every layer: MAC addresses, firmware architectures,
//! names. Parsing happens here once; everything past the edges holds typed values.
//! No serde derive here (wire types live in `config::wire` and `api`).

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MAC address {0:?}: expected six hex pairs like 52:54:00:12:34:56")]
pub struct MacParseError(pub String);

impl Mac {
    /// `52-54-00-12-34-56`: the form used in URLs (iPXE `${net0/mac:hexhyp}`).
    pub fn hyphenated(&self) -> String {
        self.fmt_with('-')
    }

    /// `525400123456`: no separators.
    pub fn bare(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn fmt_with(&self, sep: char) -> String {
        let mut s = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(sep);
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Build from a hardware-address slice (chaddr); needs at least 6 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Mac> {
        let a: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(Mac(a))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fmt_with(':'))
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and `aabbccddeeff`, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let t = s.trim();
        // Byte offsets below: a non-ASCII character would put a slice boundary
        // inside it (a panic; found by fuzz target boot_routes).
        if !t.is_ascii() {
            return Err(err());
        }
        let hex: Vec<&str> = if t.len() == 12 && !t.contains([':', '-']) {
            (0..6).map(|i| &t[i * 2..i * 2 + 2]).collect()
        } else if t.len() == 17 {
            let sep = t.as_bytes()[2] as char;
            if sep != ':' && sep != '-' {
                return Err(err());
            }
            t.split(sep).collect()
        } else {
            return Err(err());
        };
        if hex.len() != 6 {
            return Err(err());
        }
        let mut out = [0u8; 6];
        for (i, h) in hex.iter().enumerate() {
            if h.len() != 2 || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            out[i] = u8::from_str_radix(h, 16).map_err(|_| err())?;
        }
        Ok(Mac(out))
    }
}

/// What kind of firmware / network boot client is asking (from DHCP option 93,
/// option 60 and option 77/175).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Legacy BIOS PXE (arch 0).
    BiosX86,
    /// UEFI x86-64 PXE (arch 7 or 9).
    EfiX64,
    /// UEFI x86-64 HTTP boot (arch 16).
    EfiX64Http,
    /// UEFI ARM64 PXE (arch 11).
    EfiArm64,
    /// UEFI ARM64 HTTP boot (arch 19).
    EfiArm64Http,
    /// Anything else, with the raw option-93 code.
    Other(u16),
}

impl Arch {
    /// Map an RFC 4578 / IANA processor architecture type.
    pub fn from_code(code: u16) -> Arch {
        match code {
            0 => Arch::BiosX86,
            7 | 9 => Arch::EfiX64,
            16 => Arch::EfiX64Http,
            11 => Arch::EfiArm64,
            19 => Arch::EfiArm64Http,
            c => Arch::Other(c),
        }
    }

    pub fn is_uefi(self) -> bool {
        !matches!(self, Arch::BiosX86 | Arch::Other(_))
    }

    pub fn is_http_boot(self) -> bool {
        matches!(self, Arch::EfiX64Http | Arch::EfiArm64Http)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::BiosX86 => "bios",
            Arch::EfiX64 => "efi-x64",
            Arch::EfiX64Http => "efi-x64-http",
            Arch::EfiArm64 => "efi-arm64",
            Arch::EfiArm64Http => "efi-arm64-http",
            Arch::Other(_) => "other",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Other(c) => write!(f, "arch-{c}"),
            a => f.write_str(a.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let m: Mac = "52:54:00:77:00:50".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:77:00:50");
        assert_eq!(m.hyphenated(), "52-54-00-77-00-50");
        assert_eq!(m.bare(), "525400770050");
        assert_eq!("52-54-00-77-00-50".parse::<Mac>().unwrap(), m);
        assert_eq!("525400770050".parse::<Mac>().unwrap(), m);
        assert_eq!("52:54:00:77:00:5A".parse::<Mac>().unwrap().0[5], 0x5a);
    }

    #[test]
    fn mac_rejects() {
        for bad in [
            "",
            "52:54:00:77:00",
            "52:54:00:77:00:5g",
            "52:54-00:77:00:50",
            "52.54.00.77.00.50",
            "5254007700500",
            "+2:54:00:77:00:50",
            // 12 and 17 bytes with multi-byte characters (fuzz: boot_routes).
            "5\u{344}raz,token",
            "52:54:00:77:0\u{e9}:5",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn arch_codes() {
        assert_eq!(Arch::from_code(0), Arch::BiosX86);
        assert_eq!(Arch::from_code(7), Arch::EfiX64);
        assert_eq!(Arch::from_code(9), Arch::EfiX64);
        assert_eq!(Arch::from_code(16), Arch::EfiX64Http);
        assert!(Arch::EfiX64Http.is_http_boot());
        assert!(!Arch::BiosX86.is_uefi());
    }
}
