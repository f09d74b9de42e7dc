//! Pool mode at run time: the [`Pool`] allocator behind a mutex, and the
//! [`LeaseCommitter`] that makes leases durable before their ACK leaves.
//!
//! The reply path stays as it is for DISCOVER (the offer is an in-memory
//! hold) and for inventory reservations (configuration, not state): neither
//! waits for the store. A pool ACK is handed to [`serve`](super::serve) with
//! a [`Durable`] receiver and sent only once the writer task has committed
//! its lease.
//!
//! **Group commit.** One writer task takes the first queued lease, drains
//! whatever else is queued (up to [`MAX_BATCH`]) and writes them all in one
//! `upsert_leases` transaction, then releases their ACKs. Under load a batch
//! holds the leases that arrived while the previous transaction was
//! committing, so the commit cost is shared.
//!
//! **Durability.** Lease commits go through their own connection with
//! `synchronous=FULL` ([`Store::durable`]): each commit fsyncs the WAL, so an
//! ACKed lease survives a process kill *and* an OS crash or power loss. (The
//! main pool's WAL + `synchronous=NORMAL` would survive `kill -9` of the
//! process already, since a committed transaction is in the WAL file in the
//! page cache, but an OS crash could lose the last commits.)

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::classify::{ClientMessage, DhcpRequest};
use super::pool::{Pool, State};
use super::reply::{Answer, LeaseEvent, Reply, ReplyKind};
use crate::model::Mac;
use crate::store::{now_ms, LeaseRow, Store};

/// Most leases in one commit.
pub const MAX_BATCH: usize = 4096;
/// Leases waiting for the writer; beyond this an ACK is dropped (the client
/// retries). Bounded so that overload sheds requests instead of sending ACKs
/// seconds late (measured: with 65,536 queued, ACK latency reached 7 s at
/// 10,000 DORA/s, past the client's own retransmission).
pub const QUEUE: usize = 8192;

/// Resolves `true` once the reply's lease is durable; `false` (or a dropped
/// sender) means it is not, and the reply must not be sent.
pub type Durable = oneshot::Receiver<bool>;

/// Pool and commit counters (`/api/v1/status` → `protocols.pool`).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub offers: AtomicU64,
    /// DISCOVERs that got nothing because no address was available.
    pub exhausted: AtomicU64,
    pub granted: AtomicU64,
    /// REQUESTs refused (answered with a NAK, or ignored when exhausted).
    pub refused: AtomicU64,
    pub releases: AtomicU64,
    pub declines: AtomicU64,
    pub commits: AtomicU64,
    pub committed_leases: AtomicU64,
    pub max_batch: AtomicU64,
    pub commit_errors: AtomicU64,
    /// ACKs dropped because the writer queue was full.
    pub queue_full: AtomicU64,
}

impl PoolStats {
    pub fn json(&self) -> serde_json::Value {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "offers": l(&self.offers),
            "exhausted": l(&self.exhausted),
            "granted": l(&self.granted),
            "refused": l(&self.refused),
            "releases": l(&self.releases),
            "declines": l(&self.declines),
            "commits": l(&self.commits),
            "committed_leases": l(&self.committed_leases),
            "max_batch": l(&self.max_batch),
            "commit_errors": l(&self.commit_errors),
            "queue_full": l(&self.queue_full),
        })
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

enum Op {
    Upsert(LeaseRow, oneshot::Sender<bool>),
    Delete(String),
}

/// The group-commit writer's front door (cheap to clone).
#[derive(Clone)]
pub struct LeaseCommitter {
    tx: mpsc::Sender<Op>,
    stats: Arc<PoolStats>,
}

impl LeaseCommitter {
    /// Start the writer on `store` (use [`Store::durable`]). It runs until
    /// every `LeaseCommitter` clone is dropped, drains the queue, closes the
    /// store and returns.
    pub fn start(
        store: Store,
        stats: Arc<PoolStats>,
    ) -> (LeaseCommitter, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = writer(store, rx, stats.clone());
        (LeaseCommitter { tx, stats }, task)
    }

    /// Queue a lease; the receiver resolves when it is durable. `None`: the
    /// queue is full (counted), do not ACK.
    pub fn commit(&self, row: LeaseRow) -> Option<Durable> {
        let (done, rx) = oneshot::channel();
        match self.tx.try_send(Op::Upsert(row, done)) {
            Ok(()) => Some(rx),
            Err(_) => {
                inc(&self.stats.queue_full);
                None
            }
        }
    }

    /// Queue a lease removal (RELEASE / DECLINE); nobody waits for it.
    pub fn delete(&self, mac: Mac) {
        if self.tx.try_send(Op::Delete(mac.to_string())).is_err() {
            inc(&self.stats.queue_full);
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Op>, stats: Arc<PoolStats>) {
    let mut batch: Vec<Op> = Vec::with_capacity(256);
    let mut rows: Vec<LeaseRow> = Vec::with_capacity(256);
    let mut waiters: Vec<oneshot::Sender<bool>> = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Runs of upserts go in one transaction each; a delete keeps its place.
        let mut ops = batch.drain(..).peekable();
        while ops.peek().is_some() {
            while let Some(Op::Upsert(..)) = ops.peek() {
                if let Some(Op::Upsert(row, done)) = ops.next() {
                    rows.push(row);
                    waiters.push(done);
                }
            }
            if !rows.is_empty() {
                let ok = match store.upsert_leases(&rows, now_ms()).await {
                    Ok(()) => {
                        inc(&stats.commits);
                        stats
                            .committed_leases
                            .fetch_add(rows.len() as u64, Ordering::Relaxed);
                        stats
                            .max_batch
                            .fetch_max(rows.len() as u64, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        inc(&stats.commit_errors);
                        tracing::error!(target: "rackboot::dhcp", error = %e, leases = rows.len(), "lease commit failed: ACKs withheld");
                        false
                    }
                };
                rows.clear();
                for w in waiters.drain(..) {
                    let _ = w.send(ok);
                }
            }
            if let Some(Op::Delete(mac)) = ops.next() {
                if let Err(e) = store.delete_lease(&mac).await {
                    inc(&stats.commit_errors);
                    tracing::warn!(target: "rackboot::dhcp", error = %e, %mac, "lease removal failed");
                }
            }
        }
    }
    store.close().await;
}

/// What pool clients get besides their address: network settings, no boot
/// file (they are not in the inventory: a plain lease, they boot from disk).
#[derive(Debug, Clone)]
pub struct PoolAnswer {
    pub server_id: Ipv4Addr,
    pub subnet_mask: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
}

struct Inner {
    pool: Pool,
    /// The inventory generation whose reservations were last applied.
    reserved_from: Option<u64>,
}

/// The pool, its committer and counters: shared by the DHCP sockets.
pub struct PoolLeases {
    inner: Mutex<Inner>,
    committer: LeaseCommitter,
    answer: PoolAnswer,
    pub stats: Arc<PoolStats>,
}

impl PoolLeases {
    pub fn new(
        pool: Pool,
        committer: LeaseCommitter,
        answer: PoolAnswer,
        stats: Arc<PoolStats>,
    ) -> PoolLeases {
        PoolLeases {
            inner: Mutex::new(Inner {
                pool,
                reserved_from: None,
            }),
            committer,
            answer,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply a reservation set once per inventory `generation` (not per
    /// snapshot address: an allocator reuses the address of a dropped one).
    pub fn sync_reserved<I: IntoIterator<Item = Ipv4Addr>>(
        &self,
        generation: u64,
        ips: impl FnOnce() -> I,
    ) {
        let mut g = self.lock();
        if g.reserved_from != Some(generation) {
            g.pool.set_reserved(ips());
            g.reserved_from = Some(generation);
        }
    }

    /// `(active leases, free addresses)` at `now` (metrics gauges).
    pub fn usage(&self, now: i64) -> (usize, usize) {
        let g = self.lock();
        (g.pool.active_leases(now), g.pool.free(now))
    }

    /// Run `f` on the allocator (tests, status).
    pub fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        f(&mut self.lock().pool)
    }

    fn reply(&self, ip: Ipv4Addr) -> Answer {
        let a = &self.answer;
        Answer {
            yiaddr: Some(ip),
            subnet_mask: Some(a.subnet_mask),
            router: a.router,
            dns: a.dns.clone(),
            domain: a.domain.clone(),
            hostname: None,
            lease_secs: a.lease_secs,
            boot: None,
        }
    }

    /// The answer for a client that is not in the inventory.
    pub fn answer(&self, req: &DhcpRequest, now: i64) -> Option<Answer> {
        match req.msg_type {
            ClientMessage::Discover => {
                let got = self.lock().pool.offer(req.mac, req.requested_ip, now);
                match got {
                    Some(ip) => {
                        inc(&self.stats.offers);
                        Some(self.reply(ip))
                    }
                    None => {
                        inc(&self.stats.exhausted);
                        tracing::warn!(target: "rackboot::dhcp", mac = %req.mac, "address pool exhausted: no offer");
                        None
                    }
                }
            }
            ClientMessage::Request => {
                if req.server_id.is_some_and(|s| s != self.answer.server_id) {
                    // The client chose another server: drop our offer hold.
                    let mut g = self.lock();
                    if let Some((ip, e)) = g.pool.binding(&req.mac) {
                        if e.state == State::Offered {
                            g.pool.release(req.mac, ip, now);
                        }
                    }
                    return None;
                }
                let asked = req
                    .requested_ip
                    .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr))?;
                let mut g = self.lock();
                match g.pool.ack(req.mac, asked, now) {
                    Ok(_) => {
                        drop(g);
                        inc(&self.stats.granted);
                        Some(self.reply(asked))
                    }
                    Err(_) => {
                        inc(&self.stats.refused);
                        // Not this client's address: answer with the one it can
                        // have, so the reply is a NAK and it starts over.
                        let other = g.pool.offer(req.mac, None, now)?;
                        drop(g);
                        (other != asked).then(|| self.reply(other))
                    }
                }
            }
            ClientMessage::Inform => {
                let ip = req.ciaddr;
                let ours = self.lock().pool.in_range(ip);
                ours.then(|| self.reply(ip))
            }
            ClientMessage::Release | ClientMessage::Decline => None,
        }
    }

    /// The durability step for a reply to a pool client: an ACK carrying a
    /// lease this pool granted waits for its commit.
    pub fn commit(&self, req: &DhcpRequest, reply: &Reply) -> Option<Durable> {
        if reply.kind != ReplyKind::Ack {
            return None;
        }
        let ip = reply.yiaddr?;
        let entry = *self.lock().pool.entry(ip)?;
        if entry.state != State::Leased || entry.mac != Some(req.mac) {
            return None;
        }
        let row = LeaseRow {
            mac: req.mac.to_string(),
            ip: ip.to_string(),
            hostname: req.hostname.clone(),
            expires_at: entry.until,
        };
        match self.committer.commit(row) {
            Some(d) => Some(d),
            None => {
                // Queue full: the ACK must not go out undurable.
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(false);
                Some(rx)
            }
        }
    }

    /// RELEASE / DECLINE from a pool client.
    pub fn event(&self, ev: &LeaseEvent, now: i64) {
        let gone = match *ev {
            LeaseEvent::Released { mac, ip } => {
                inc(&self.stats.releases);
                self.lock().pool.release(mac, ip, now).then_some(mac)
            }
            LeaseEvent::Declined { mac, ip: Some(ip) } => {
                inc(&self.stats.declines);
                self.lock().pool.decline(mac, ip, now).then_some(mac)
            }
            LeaseEvent::Declined { ip: None, .. } => None,
        };
        if let Some(mac) = gone {
            self.committer.delete(mac);
        }
    }

    /// Load persisted leases (at start). Returns how many were taken.
    pub fn load(&self, rows: &[LeaseRow], now: i64) -> usize {
        let mut g = self.lock();
        rows.iter()
            .filter(|r| match (r.mac.parse::<Mac>(), r.ip.parse::<Ipv4Addr>()) {
                (Ok(m), Ok(ip)) => g.pool.load(m, ip, r.expires_at, now),
                _ => false,
            })
            .count()
    }
}
