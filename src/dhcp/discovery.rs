//! Discovery: DHCP clients whose MAC is not in the inventory.
//!
//! In reservations and proxy mode rackboot does not answer them; in pool
//! mode they get a pool address. Either way each request is a *sighting*:
//! the MAC, what the firmware said of itself (client arch, vendor class,
//! iPXE or not, option 12), the relay it came through, the interface, when.
//! `rackboot discovered`, `GET /api/v1/discovered` and the UI list them;
//! `rackboot systems add NAME --from-discovered MAC` adopts one.
//!
//! Cheap on the DHCP path: [`Discovery::record`] folds a sighting into an
//! in-memory map keyed by MAC (one short mutex hold, no I/O, bounded at
//! [`PENDING_MAX`] MACs; beyond that a new MAC is dropped and counted).
//! [`Discovery::run_flusher`] takes the map every [`FLUSH_EVERY`] and upserts
//! it in one transaction (`Store::upsert_discovered`), which also caps the
//! table at `dhcp.discovered_max` MACs, least recently seen first out. A
//! failed flush puts its rows back (as far as the bound allows) for the next.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::opts::code;
use super::DhcpRequest;
use crate::feed::Feed;
use crate::model::Mac;
use crate::store::{DiscoveredRow, Store};

/// MACs waiting for the next flush, at most.
pub const PENDING_MAX: usize = 4096;
/// How often sightings are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Untrusted strings (vendor class, host name) are cut to this many characters.
pub const TEXT_MAX: usize = 64;

/// What one request says about its sender (pure: from the parsed request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub arch: Option<String>,
    pub vendor_class: Option<String>,
    pub ipxe: bool,
    pub proxy: bool,
    pub relay: Option<Ipv4Addr>,
    pub hostname: Option<String>,
}

impl Sighting {
    /// `proxy`: the daemon runs proxyDHCP (the 4011 port counts as proxy too).
    pub fn of(req: &DhcpRequest, proxy: bool) -> Sighting {
        Sighting {
            arch: req.arch.map(|a| a.as_str().to_string()),
            vendor_class: req
                .options
                .get(code::VENDOR_CLASS)
                .map(printable)
                .filter(|s| !s.is_empty()),
            ipxe: req.ipxe,
            proxy: proxy || req.boot_server_port,
            relay: (!req.giaddr.is_unspecified()).then_some(req.giaddr),
            hostname: req.hostname.as_deref().map(|h| printable(h.as_bytes())),
        }
    }
}

/// Bytes from the wire as text fit for a terminal and a log line: printable
/// ASCII kept, anything else `?`, cut at [`TEXT_MAX`] characters.
pub fn printable(b: &[u8]) -> String {
    b.iter()
        .take(TEXT_MAX)
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Pending {
    last: Sighting,
    first_seen: i64,
    last_seen: i64,
    count: i64,
}

impl Pending {
    fn fold(&mut self, s: Sighting, at: i64) {
        // Details a request did not carry keep the earlier request's.
        let keep = std::mem::replace(&mut self.last, s);
        let l = &mut self.last;
        l.arch = l.arch.take().or(keep.arch);
        l.vendor_class = l.vendor_class.take().or(keep.vendor_class);
        l.relay = l.relay.or(keep.relay);
        l.hostname = l.hostname.take().or(keep.hostname);
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        self.count += 1;
    }
}

/// Counters (mirrored into `/metrics`).
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Requests from MACs outside the inventory.
    pub sightings: AtomicU64,
    /// Sightings of a new MAC while [`PENDING_MAX`] MACs waited for a flush.
    pub dropped: AtomicU64,
    /// Rows written by the flusher.
    pub flushed: AtomicU64,
    /// Rows pruned by the table cap.
    pub pruned: AtomicU64,
    pub flush_errors: AtomicU64,
}

/// The recorder: shared by the DHCP policy (writes) and the flusher.
#[derive(Debug)]
pub struct Discovery {
    pending: Mutex<HashMap<Mac, Pending>>,
    /// The interface the daemon's DHCP sockets are bound to, if named.
    interface: Option<String>,
    /// The table cap (`dhcp.discovered_max`).
    cap: u32,
    pub stats: DiscoveryStats,
}

impl Discovery {
    pub fn new(interface: Option<String>, cap: u32) -> Discovery {
        Discovery {
            pending: Mutex::new(HashMap::new()),
            interface,
            cap,
            stats: DiscoveryStats::default(),
        }
    }

    /// One request from a MAC outside the inventory, at `at` (Unix ms).
    pub fn record(&self, mac: Mac, s: Sighting, at: i64) {
        self.stats.sightings.fetch_add(1, Ordering::Relaxed);
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.get_mut(&mac) {
            e.fold(s, at);
        } else if p.len() < PENDING_MAX {
            p.insert(
                mac,
                Pending {
                    last: s,
                    first_seen: at,
                    last_seen: at,
                    count: 1,
                },
            );
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Everything recorded since the last take, as rows.
    pub fn take(&self) -> Vec<DiscoveredRow> {
        let p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        p.into_iter()
            .map(|(mac, e)| DiscoveredRow {
                mac: mac.to_string(),
                arch: e.last.arch,
                vendor_class: e.last.vendor_class,
                ipxe: e.last.ipxe,
                proxy: e.last.proxy,
                relay: e.last.relay.map(|r| r.to_string()),
                interface: self.interface.clone(),
                hostname: e.last.hostname,
                first_seen: e.first_seen,
                last_seen: e.last_seen,
                count: e.count,
            })
            .collect()
    }

    /// Rows a failed flush could not write: back into the map (merged with
    /// what came in meanwhile), as far as the bound allows.
    fn put_back(&self, rows: Vec<DiscoveredRow>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let Ok(mac) = r.mac.parse::<Mac>() else {
                continue;
            };
            let back = Pending {
                last: Sighting {
                    arch: r.arch,
                    vendor_class: r.vendor_class,
                    ipxe: r.ipxe,
                    proxy: r.proxy,
                    relay: r.relay.and_then(|s| s.parse().ok()),
                    hostname: r.hostname,
                },
                first_seen: r.first_seen,
                last_seen: r.last_seen,
                count: r.count,
            };
            let room = p.len() < PENDING_MAX;
            match p.get_mut(&mac) {
                Some(newer) => {
                    newer.first_seen = newer.first_seen.min(back.first_seen);
                    newer.count += back.count;
                }
                None if room => {
                    p.insert(mac, back);
                }
                None => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// One flush: take the map, write it; a MAC seen for the first time is
    /// announced on the feed (`{"type": "discovered", …}`: SSE, webhooks,
    /// MQTT), if one is given. Returns the rows written.
    pub async fn flush(&self, store: &Store, feed: Option<&Feed>) -> usize {
        let rows = self.take();
        if rows.is_empty() {
            return 0;
        }
        match store.upsert_discovered(&rows, self.cap).await {
            Ok(w) => {
                self.stats
                    .flushed
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.stats.pruned.fetch_add(w.pruned, Ordering::Relaxed);
                if let Some(feed) = feed {
                    for r in rows.iter().filter(|r| w.new.contains(&r.mac)) {
                        feed.publish(serde_json::json!({
                            "type": "discovered", "mac": r.mac, "at": r.first_seen,
                            "arch": r.arch, "vendor_class": r.vendor_class, "ipxe": r.ipxe,
                            "relay": r.relay, "interface": r.interface, "hostname": r.hostname,
                            "detail": format!("new machine {} ({})", r.mac,
                                r.arch.as_deref().unwrap_or("arch unknown")),
                        }));
                    }
                }
                rows.len()
            }
            Err(e) => {
                self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, macs = rows.len(), "discovered MACs not written; retrying");
                self.put_back(rows);
                0
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until `shutdown`, then once more.
    pub async fn run_flusher(
        &self,
        store: Store,
        feed: Option<std::sync::Arc<Feed>>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.flush(&store, feed.as_deref()).await;
                }
            }
        }
        self.flush(&store, feed.as_deref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(arch: Option<&str>, vendor: Option<&str>, ipxe: bool) -> Sighting {
        Sighting {
            arch: arch.map(Into::into),
            vendor_class: vendor.map(Into::into),
            ipxe,
            proxy: false,
            relay: None,
            hostname: None,
        }
    }

    #[test]
    fn printable_cuts_and_masks() {
        assert_eq!(printable(b"PXEClient:Arch:00007"), "PXEClient:Arch:00007");
        assert_eq!(printable(b"a\x1b[31mb\nc\x00"), "a?[31mb?c?");
        assert_eq!(printable(&[b'x'; 200]).len(), TEXT_MAX);
        assert_eq!(printable("é".as_bytes()), "??");
    }

    #[test]
    fn sightings_fold_per_mac() {
        let d = Discovery::new(Some("br0".into()), 10);
        let m = Mac([0x52, 0x54, 0, 0, 0, 1]);
        d.record(m, s(Some("bios"), Some("PXEClient:Arch:00000"), false), 100);
        d.record(m, s(None, None, true), 300);
        d.record(m, s(None, None, true), 200);
        let rows = d.take();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.first_seen, r.last_seen, r.count), (100, 300, 3));
        assert_eq!(
            r.arch.as_deref(),
            Some("bios"),
            "kept from the first request"
        );
        assert_eq!(r.vendor_class.as_deref(), Some("PXEClient:Arch:00000"));
        assert!(r.ipxe, "the latest request was iPXE's");
        assert_eq!(r.interface.as_deref(), Some("br0"));
        assert!(d.take().is_empty(), "taken once");
    }

    #[test]
    fn pending_is_bounded_and_counts_drops() {
        let d = Discovery::new(None, 10);
        for i in 0..(PENDING_MAX + 10) {
            let b = (i as u32).to_be_bytes();
            d.record(Mac([2, 0, b[0], b[1], b[2], b[3]]), s(None, None, false), 1);
        }
        // A MAC already waiting is still folded in.
        d.record(Mac([2, 0, 0, 0, 0, 0]), s(None, None, false), 2);
        assert_eq!(d.stats.dropped.load(Ordering::Relaxed), 10);
        let rows = d.take();
        assert_eq!(rows.len(), PENDING_MAX);
        let first = rows.iter().find(|r| r.mac == "02:00:00:00:00:00").unwrap();
        assert_eq!(first.count, 2);
    }

    #[tokio::test]
    async fn flush_writes_and_a_failed_flush_keeps_the_rows() {
        let store = Store::memory().await.unwrap();
        let d = Discovery::new(None, 10);
        let m = Mac([0x52, 0x54, 0, 0, 0, 2]);
        d.record(m, s(Some("efi-x64"), None, false), 10);
        assert_eq!(d.flush(&store, None).await, 1);
        d.record(m, s(None, None, false), 20);
        assert_eq!(d.flush(&store, None).await, 1);
        let r = store.discovered_one(&m.to_string()).await.unwrap().unwrap();
        assert_eq!((r.first_seen, r.last_seen, r.count), (10, 20, 2));

        // A closed store: the rows go back and are written by a later flush.
        d.record(m, s(None, None, false), 30);
        store.close().await;
        assert_eq!(d.flush(&store, None).await, 0);
        assert_eq!(d.stats.flush_errors.load(Ordering::Relaxed), 1);
        let back = d.take();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].count, 1);
    }
}
