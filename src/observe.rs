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

impl Observation {
    /// The machine it is about, when the adapter knows it.
    pub fn mac(&self) -> Option<Mac> {
        match self {
            Observation::Dhcp { mac, .. } => Some(*mac),
            Observation::Tftp { served, .. } => served.as_ref().map(|(m, _)| *m),
            Observation::Http { mac, .. } => *mac,
        }
    }
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

    /// Send `o` to the engine, unless it names no machine: the engine steps
    /// runs and stores the feed by machine, and drops such an observation
    /// unread (an anonymous download of a boot file, a TFTP transfer to an
    /// unknown peer). Not sending it spares a cross-thread wake-up per
    /// request (`futex` calls over 7,000 anonymous 1 MiB downloads in
    /// `bench/http-bench.sh`'s set-up: 9,217 before, 122 after).
    pub fn emit(&self, o: Observation) {
        if o.mac().is_none() {
            return;
        }
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

/// How long a machine without an active run may repeat the same observation
/// before it is stored again. A run's machine has every observation stored
/// (its timeline, the "why didn't it boot" chain); an idle machine renewing
/// its lease, or a lab full of them, must not turn the feed into a write per
/// DHCP packet (on PostgreSQL that cost DHCP a third of its rate).
pub const QUIET_MS: i64 = 10_000;

/// Which observations are stored in the feed: all of a machine with an
/// active run, and of any other machine the first of each kind per
/// [`QUIET_MS`]. Pure (the clock is an argument); the engine owns one.
#[derive(Default, Debug)]
pub struct Coalesce {
    /// Per machine: when each kind of observation was last stored.
    last: std::collections::HashMap<String, Vec<(&'static str, i64)>>,
    swept_ms: i64,
}

impl Coalesce {
    /// Whether this observation is stored (`true`) or only counted.
    pub fn admit(&mut self, system: &str, what: &'static str, in_run: bool, now_ms: i64) -> bool {
        // Forget what is past its window, now and then: the map holds at
        // most the machines seen in the last window.
        if now_ms - self.swept_ms >= QUIET_MS || now_ms < self.swept_ms {
            self.last.retain(|_, kinds| {
                kinds.retain(|(_, at)| (0..QUIET_MS).contains(&(now_ms - at)));
                !kinds.is_empty()
            });
            self.swept_ms = now_ms;
        }
        if in_run {
            // A run's evidence starts a fresh window: the machine's
            // observations right after its run ends are stored too.
            self.last.remove(system);
            return true;
        }
        let kinds = match self.last.get_mut(system) {
            Some(k) => k,
            None => self.last.entry(system.to_string()).or_default(),
        };
        match kinds.iter_mut().find(|(w, _)| *w == what) {
            Some((_, at)) if (0..QUIET_MS).contains(&(now_ms - *at)) => false,
            Some((_, at)) => {
                *at = now_ms;
                true
            }
            None => {
                kinds.push((what, now_ms));
                true
            }
        }
    }

    /// Machines with an observation in their quiet window.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_table() {
        // (system, what, in_run, at, stored)
        let steps: &[(&str, &str, bool, i64, bool)] = &[
            ("a", "dhcp", false, 0, true),
            ("a", "dhcp", false, 5, false),
            ("a", "dhcp-os", false, 6, true), // another kind
            ("b", "dhcp", false, 7, true),    // another machine
            ("a", "dhcp", false, QUIET_MS - 1, false),
            ("a", "dhcp", false, QUIET_MS, true), // the window is over
            ("a", "dhcp", true, QUIET_MS + 1, true), // a run's: always
            ("a", "dhcp", true, QUIET_MS + 2, true),
            ("a", "dhcp", false, QUIET_MS + 3, true), // the run reset the window
            ("a", "dhcp", false, QUIET_MS + 4, false),
            ("a", "dhcp", false, 1, true), // the clock went back: stored
        ];
        let mut c = Coalesce::default();
        for (i, (sys, what, run, at, want)) in steps.iter().enumerate() {
            assert_eq!(
                c.admit(sys, what, *run, *at),
                *want,
                "step {i}: {sys} {what} at {at}"
            );
        }
    }

    #[test]
    fn coalesce_forgets_old_machines() {
        let mut c = Coalesce::default();
        for i in 0..1000 {
            assert!(c.admit(&format!("m{i}"), "dhcp", false, 0));
        }
        assert_eq!(c.len(), 1000);
        assert!(c.admit("x", "dhcp", false, 2 * QUIET_MS));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn observations_naming_no_machine_are_not_sent() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let sink = ObservationSink::new(tx);
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        let peer: IpAddr = Ipv4Addr::new(10, 0, 0, 9).into();
        let sent = [
            Observation::Http {
                mac: None,
                peer,
                what: HttpServed::File { path: "a".into() },
            },
            Observation::Http {
                mac: Some(mac),
                peer,
                what: HttpServed::Kernel,
            },
            Observation::Tftp {
                peer,
                path: "x".into(),
                bytes: 1,
                ok: true,
                served: None,
            },
            Observation::Tftp {
                peer,
                path: "k".into(),
                bytes: 1,
                ok: true,
                served: Some((mac, HttpServed::Kernel)),
            },
            Observation::Dhcp {
                mac,
                ip: None,
                arch: None,
                ipxe: false,
                kind: DhcpKind::Ack,
            },
        ];
        for o in sent.iter().cloned() {
            sink.emit(o);
        }
        let mut got = Vec::new();
        while let Ok(o) = rx.try_recv() {
            got.push(o);
        }
        assert_eq!(got, vec![sent[1].clone(), sent[3].clone(), sent[4].clone()]);
        assert_eq!(sink.dropped(), 0);
    }
}
