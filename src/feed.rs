//! The operator feed: every event the daemon publishes (run transitions, boot
//! observations of inventory machines), stored with a durable, ordered id
//! before it goes live.
//!
//! One writer task owns the order: it takes what publishers queued (never
//! blocking them: a full queue drops and counts), stores a batch in one
//! transaction, then broadcasts each event with its id. So a live subscriber
//! sees ids in increasing order, and anything it missed (a reconnect with
//! `Last-Event-ID`, a daemon restart) is in the store: [`Feed::since`].
//! Retention: events older than [`RETENTION_MS`] go, and each system keeps
//! its newest [`KEEP_PER_SYSTEM`]; pruned once an hour.

use crate::api::feed::FeedEvent;
use crate::store::{self, NewFeed, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// How long events are kept (and so how far back a reconnecting client can
/// resume): 14 days.
pub const RETENTION_MS: i64 = 14 * 24 * 3600 * 1000;
/// Events kept per system (its history on the machine page).
pub const KEEP_PER_SYSTEM: u32 = 2000;
/// Events queued for the writer before publishers start dropping.
const QUEUE: usize = 8192;
/// Events stored per transaction at most.
const BATCH: usize = 256;

/// Cheap to share (`Arc`); `publish` never waits.
pub struct Feed {
    tx: mpsc::Sender<NewFeed>,
    live: broadcast::Sender<Arc<FeedEvent>>,
    /// PostgreSQL (several daemons may share the feed): every daemon's
    /// events, read back from the table in id order ([`tail`]).
    fleet: Option<broadcast::Sender<Arc<FeedEvent>>>,
    store: Store,
    dropped: AtomicU64,
    failed: Arc<AtomicU64>,
}

impl Feed {
    /// Start the writer (and the hourly prune) until `shutdown`.
    pub fn start(store: Store, shutdown: CancellationToken) -> Arc<Feed> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (live, _) = broadcast::channel(4096);
        let failed = Arc::new(AtomicU64::new(0));
        let fleet = (store.backend() == store::Backend::Postgres).then(|| {
            let (fleet, _) = broadcast::channel(4096);
            tokio::spawn(tail(store.clone(), fleet.clone(), shutdown.clone()));
            fleet
        });
        tokio::spawn(writer(
            store.clone(),
            rx,
            live.clone(),
            failed.clone(),
            shutdown,
        ));
        Arc::new(Feed {
            tx,
            live,
            fleet,
            store,
            dropped: AtomicU64::new(0),
            failed,
        })
    }

    /// Queue an event: `v` is its JSON (`type` is its kind; `system` and
    /// `run`, when present, index it). Never blocks.
    pub fn publish(&self, v: serde_json::Value) {
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
        let e = NewFeed {
            at: v
                .get("at")
                .and_then(|x| x.as_i64())
                .unwrap_or_else(store::now_ms),
            kind: text("type").unwrap_or_else(|| "event".into()),
            system: text("system"),
            run_id: text("run"),
            data: v.to_string(),
        };
        if self.tx.try_send(e).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Live events, each after it is stored.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.live.subscribe()
    }

    /// Live events of the whole site: with PostgreSQL every daemon's (read
    /// back from the table, a fraction of a second later), else this
    /// daemon's ([`Feed::subscribe`]). The API's event stream uses it.
    pub fn subscribe_fleet(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        match &self.fleet {
            Some(f) => f.subscribe(),
            None => self.live.subscribe(),
        }
    }

    /// Stored events after id `after`, oldest first.
    pub async fn since(&self, after: i64, limit: u32) -> Result<Vec<FeedEvent>, store::StoreError> {
        Ok(self
            .store
            .feed_since(after, limit)
            .await?
            .into_iter()
            .map(to_api)
            .collect())
    }

    /// A system's events before id `before` (`None`: the newest), newest first.
    pub async fn history(
        &self,
        system: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FeedEvent>, store::StoreError> {
        Ok(self
            .store
            .feed_of_system(system, before, limit)
            .await?
            .into_iter()
            .map(to_api)
            .collect())
    }

    /// Events dropped because the writer's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events lost because the store refused a batch.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

fn to_api(r: store::FeedRow) -> FeedEvent {
    FeedEvent {
        id: r.id,
        at: r.at,
        kind: r.kind,
        system: r.system,
        run: r.run_id,
        data: serde_json::from_str(&r.data).unwrap_or(serde_json::Value::Null),
    }
}

/// How often [`tail`] reads the table.
const TAIL_EVERY: Duration = Duration::from_millis(250);

/// Broadcast every event stored after start, whoever stored it, in id
/// order: appends take a table lock on Postgres, so ids become visible in
/// order and a reader that goes by "after the last id seen" skips none.
async fn tail(store: Store, fleet: broadcast::Sender<Arc<FeedEvent>>, shutdown: CancellationToken) {
    let mut last = loop {
        match store.feed_head().await {
            Ok(h) => break h,
            Err(e) => {
                tracing::warn!(error = %e, "feed tail: cannot read the head");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TAIL_EVERY) => {}
        }
        loop {
            match store.feed_since(last, BATCH as u32).await {
                Ok(rows) => {
                    let n = rows.len();
                    for r in rows {
                        last = last.max(r.id);
                        let _ = fleet.send(Arc::new(to_api(r)));
                    }
                    if n < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "feed tail: read failed");
                    break;
                }
            }
        }
    }
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<NewFeed>,
    live: broadcast::Sender<Arc<FeedEvent>>,
    failed: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Store what is already queued, then stop.
                rx.close();
                while let Ok(e) = rx.try_recv() {
                    batch.push(e);
                    if batch.len() == BATCH {
                        flush(&store, &mut batch, &live, &failed).await;
                    }
                }
                flush(&store, &mut batch, &live, &failed).await;
                break;
            }
            _ = prune.tick() => {
                let cutoff = store::now_ms() - RETENTION_MS;
                match store.prune_feed(cutoff, KEEP_PER_SYSTEM).await {
                    Ok(n) if n > 0 => tracing::debug!(pruned = n, "feed pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "feed prune failed"),
                }
            }
            e = rx.recv() => {
                let Some(e) = e else { break };
                batch.push(e);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                flush(&store, &mut batch, &live, &failed).await;
            }
        }
    }
}

async fn flush(
    store: &Store,
    batch: &mut Vec<NewFeed>,
    live: &broadcast::Sender<Arc<FeedEvent>>,
    failed: &AtomicU64,
) {
    if batch.is_empty() {
        return;
    }
    match store.append_feed(batch).await {
        Ok(ids) => {
            for (e, id) in batch.drain(..).zip(ids) {
                let _ = live.send(Arc::new(to_api(store::FeedRow {
                    id,
                    at: e.at,
                    kind: e.kind,
                    system: e.system,
                    run_id: e.run_id,
                    data: e.data,
                })));
            }
        }
        Err(e) => {
            failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, events = batch.len(), "feed events not stored");
            batch.clear();
        }
    }
}
