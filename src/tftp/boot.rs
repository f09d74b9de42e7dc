//! The daemon's TFTP file source: the files of the roots (firmware dir, then
//! boot dir; [`RootsSource`] path safety) plus what GRUB machines (`loader =
//! "grub"`) need that is not a file:
//!
//! - `grub/grub.cfg`: GRUB's own config (its prefix is `/grub`), the static
//!   per-MAC dispatch [`boot::GRUB_DISPATCH_CFG`];
//! - `grub/grub.cfg-<mac>`: the machine's config, rendered now from the
//!   snapshots like the per-MAC iPXE script (installer while a run is
//!   pending, local boot otherwise, not found for a MAC outside the
//!   inventory);
//! - the paths shim and GRUB try and do without (`revocations*.efi`,
//!   `shim_certificate*.efi`, `grub/x86_64-efi/…` module lists): "not
//!   found" at once, no disk lookup ([`TftpError::Probe`]).
//!
//! After a complete transfer, [`FileSource::served`] names the machine and
//! what the file was (boot script, kernel, initrd), so a GRUB machine's
//! boot is the same evidence for its run as an iPXE machine's over HTTP.

use super::{FileSource, RootsSource, TftpError, TftpFile};
use crate::boot::{self, BootDecision, BootFileKind, BootTable};
use crate::inventory::Inventory;
use crate::model::Mac;
use crate::observe::HttpServed;
use std::net::{IpAddr, SocketAddr};
use std::path::Component;
use std::sync::Arc;
use tokio::sync::watch;

/// What a requested path is, before any disk lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Virtual {
    /// `grub/grub.cfg`.
    Dispatch,
    /// `grub/grub.cfg-<mac>` (colons or dashes, any case).
    MachineCfg(Mac),
    /// A known probe: "not found" at once.
    Probe,
    /// A file of the roots.
    File,
}

/// Classify a path (already through [`RootsSource::sanitize`]: relative,
/// `/`-separated, no `..`).
pub fn classify(rel: &str) -> Virtual {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if (name.starts_with("revocations") || name.starts_with("shim_certificate"))
        && name.ends_with(".efi")
    {
        return Virtual::Probe;
    }
    let Some(in_grub) = rel.strip_prefix("grub/") else {
        return Virtual::File;
    };
    if in_grub == "grub.cfg" {
        return Virtual::Dispatch;
    }
    if let Some(m) = in_grub.strip_prefix("grub.cfg-") {
        return match m.parse::<Mac>() {
            Ok(mac) => Virtual::MachineCfg(mac),
            // grub.cfg-default-x86_64 and the like: nothing to serve.
            Err(_) => Virtual::Probe,
        };
    }
    // GRUB's module directory and its lists (command.lst, fs.lst, http.mod,
    // x86_64-efi/grub.cfg ...), fonts and translations: none exists here,
    // and under Secure Boot GRUB may not load modules anyway.
    if ["x86_64-efi/", "fonts/", "locale/"]
        .iter()
        .any(|d| in_grub.starts_with(d))
    {
        return Virtual::Probe;
    }
    Virtual::File
}

/// The roots plus the GRUB files, over the daemon's snapshots.
pub struct BootSource {
    roots: RootsSource,
    inventory: watch::Receiver<Arc<Inventory>>,
    table: watch::Receiver<Arc<BootTable>>,
}

impl BootSource {
    pub fn new(
        roots: RootsSource,
        inventory: watch::Receiver<Arc<Inventory>>,
        table: watch::Receiver<Arc<BootTable>>,
    ) -> BootSource {
        BootSource {
            roots,
            inventory,
            table,
        }
    }

    /// The sanitized relative path as a `/`-separated string.
    fn normalize(path: &str) -> Result<String, TftpError> {
        let rel = RootsSource::sanitize(path)?;
        let parts: Vec<&str> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        Ok(parts.join("/"))
    }

    /// The machine's GRUB config now, and whether it is the local-boot one.
    fn machine_cfg(&self, mac: &Mac) -> Result<(String, bool), TftpError> {
        let inv = self.inventory.borrow().clone();
        let table = self.table.borrow().clone();
        let d = boot::decide(&inv, &table, mac);
        let local = matches!(d, BootDecision::LocalDisk(_));
        match boot::grub_cfg(&inv, &d) {
            None => Err(TftpError::NotFound),
            Some(Err(e)) => {
                tracing::error!(%mac, error = %e, "GRUB config failed to render");
                Err(TftpError::Other(format!("template error: {e}")))
            }
            Some(Ok(cfg)) => Ok((cfg, local)),
        }
    }
}

impl FileSource for BootSource {
    fn open(&self, path: &str, peer: SocketAddr) -> Result<TftpFile, TftpError> {
        let rel = Self::normalize(path)?;
        match classify(&rel) {
            Virtual::Probe => Err(TftpError::Probe),
            Virtual::Dispatch => Ok(TftpFile::Memory(
                boot::GRUB_DISPATCH_CFG.as_bytes().to_vec().into(),
            )),
            Virtual::MachineCfg(mac) => {
                let (cfg, local) = self.machine_cfg(&mac)?;
                tracing::info!(target: "rackboot::tftp", %mac, %peer, local, "serving GRUB config");
                Ok(TftpFile::Memory(cfg.into_bytes().into()))
            }
            Virtual::File => self.roots.open(&rel, peer),
        }
    }

    fn served(&self, path: &str, peer: SocketAddr) -> Option<(Mac, HttpServed)> {
        let rel = Self::normalize(path).ok()?;
        match classify(&rel) {
            Virtual::MachineCfg(mac) => {
                let inv = self.inventory.borrow().clone();
                let table = self.table.borrow().clone();
                let local = match boot::decide(&inv, &table, &mac) {
                    BootDecision::Ignore => return None,
                    BootDecision::LocalDisk(_) => true,
                    BootDecision::Install { .. } => false,
                };
                Some((mac, HttpServed::Script { local }))
            }
            Virtual::File => {
                let IpAddr::V4(v4) = peer.ip() else {
                    return None;
                };
                let inv = self.inventory.borrow().clone();
                let (s, kind) = boot::boot_file_of(&inv, v4, &rel)?;
                let what = match kind {
                    BootFileKind::Kernel => HttpServed::Kernel,
                    BootFileKind::Initrd => HttpServed::Initrd,
                    BootFileKind::Other => HttpServed::File { path: rel },
                };
                Some((s.primary_mac(), what))
            }
            Virtual::Dispatch | Virtual::Probe => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        let mac: Mac = "52:54:00:77:00:50".parse().unwrap();
        for (p, want) in [
            ("grub/grub.cfg", Virtual::Dispatch),
            ("grub/grub.cfg-52:54:00:77:00:50", Virtual::MachineCfg(mac)),
            ("grub/grub.cfg-52-54-00-77-00-50", Virtual::MachineCfg(mac)),
            ("grub/grub.cfg-default-x86_64", Virtual::Probe),
            ("grub/x86_64-efi/grub.cfg", Virtual::Probe),
            ("grub/x86_64-efi/command.lst", Virtual::Probe),
            ("grub/x86_64-efi/http.mod", Virtual::Probe),
            ("grub/revocations_sbat.efi", Virtual::Probe),
            ("grub/revocations_sku.efi", Virtual::Probe),
            ("grub/shim_certificate_0.efi", Virtual::Probe),
            ("revocations.efi", Virtual::Probe),
            ("grub/bootx64.efi", Virtual::File),
            ("grub/grubx64.efi", Virtual::File),
            ("vmlinuz", Virtual::File),
            ("ipxe.efi", Virtual::File),
            ("grubx/grub.cfg", Virtual::File),
        ] {
            assert_eq!(classify(p), want, "{p}");
        }
    }

    #[test]
    fn normalize_keeps_path_rules() {
        assert_eq!(
            BootSource::normalize("/grub//grub.cfg").unwrap(),
            "grub/grub.cfg"
        );
        assert_eq!(
            BootSource::normalize("\\grub\\grub.cfg").unwrap(),
            "grub/grub.cfg"
        );
        assert!(matches!(
            BootSource::normalize("grub/../../etc/passwd"),
            Err(TftpError::AccessDenied(_))
        ));
    }
}
