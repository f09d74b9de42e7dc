//! Observations: typed facts the protocol adapters report about a machine's boot
//! ("offered an address to MAC X", "served the kernel to 10.77.0.50"). Adapters
//! send them with `try_send` and never wait; the run engine consumes them.
//! A dropped observation is counted, never a blocked reply.

use crate::model::{Arch, Mac};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A DHCP reply (OFFER / ACK / proxy offer) went out to this MAC.
    Dhcp {
        mac: Mac,
        ip: Option<Ipv4Addr>,
        arch: Option<Arch>,
        ipxe: bool,
        kind: DhcpKind,
    },
    /// A TFTP transfer finished (or failed) for this peer. `served`: the
    /// machine and what the file was to its boot, when the file source knows
    /// (a GRUB config, or the kernel/initrd of the machine at `peer`); it then
    /// counts as the same evidence as over HTTP.
    Tftp {
        peer: IpAddr,
        path: String,
        bytes: u64,
        ok: bool,
        served: Option<(Mac, HttpServed)>,
    },
    /// An HTTP boot resource was served.
    Http {
        mac: Option<Mac>,
        peer: IpAddr,
        what: HttpServed,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpKind {
    Offer,
    Ack,
    ProxyOffer,
    Nak,
}

/// What was served to a machine (over HTTP, or over TFTP for GRUB machines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpServed {
    /// The per-MAC boot script: the iPXE script, or the GRUB config
    /// (installer or local boot).
    Script {
        local: bool,
    },
    Kernel,
    Initrd,
    /// An installer config (kickstart / preseed / user-data ...).
    Config {
        kind: String,
    },
    /// Some other static file under the boot-files dir.
    File {
        path: String,
    },
    /// The install-done callback.
    Done {
        run: Option<String>,
    },
}

/// Where adapters send observations. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct ObservationSink {
    tx: Option<tokio::sync::mpsc::Sender<Observation>>,
    dropped: Arc<AtomicU64>,
}

impl ObservationSink {
    pub fn new(tx: tokio::sync::mpsc::Sender<Observation>) -> Self {
        ObservationSink {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A sink that discards everything (tests, tools).
    pub fn discard() -> Self {
        ObservationSink {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn emit(&self, o: Observation) {
        if let Some(tx) = &self.tx {
            if tx.try_send(o).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
