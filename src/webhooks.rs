//! Webhooks: the feed's events POSTed to HTTP receivers, signed and retried
//! until acknowledged.
//!
//! The feed is the outbox: every event is already stored with its id before
//! anything is delivered. Each webhook walks the feed in id order from its
//! stored cursor (`webhook_state.delivered_through`), POSTs one event at a
//! time and moves the cursor only on a 2xx. A receiver that is down, or a
//! daemon killed with `kill -9`, loses nothing: the next attempt (after a
//! backoff, or after the restart) is the same event. Delivery is at least
//! once (a crash between the 2xx and the cursor write repeats one event), so
//! receivers dedupe by `X-Rackboot-Event-Id`. A webhook added to the config
//! starts at the feed's head (no replay of history).
//!
//! Each delivery: `POST url`, `Content-Type: application/json`, the body
//! `{"id","type","at","system","run","data"}`, and the headers
//! `X-Rackboot-Event-Id`, `X-Rackboot-Timestamp` (Unix seconds) and
//! `X-Rackboot-Signature: sha256=HEX`, the HMAC-SHA256 of
//! `"{timestamp}.{body}"` with the webhook's secret (read from its
//! `secret_file` at start, never logged). Receivers check the signature and
//! refuse old timestamps (replays).

use crate::api::feed::{FeedEvent, WebhookStatus};
use crate::config::{Settings, WebhookSettings};
use crate::feed::Feed;
use crate::store::{self, Store, WebhookRow};
use hmac::{KeyInit, Mac};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events read from the feed per query.
const PAGE: u32 = 100;
/// Backoff after the first failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Time one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A delivery cursor over the feed (a webhook's, the MQTT publisher's): the
/// stored `webhook_state` row, its in-memory copy for the API, and the
/// backoff after failures. Shared by `webhooks` and `mqtt`.
pub(crate) struct Cursor {
    state: Mutex<WebhookRow>,
}

impl Cursor {
    /// The stored cursor `name`, or a new one at the feed's head.
    pub(crate) async fn load(store: &Store, name: &str) -> Result<Cursor, store::StoreError> {
        let state = match store.webhook_state(name).await? {
            Some(s) => s,
            None => {
                let s = WebhookRow {
                    name: name.to_string(),
                    delivered_through: store.feed_head().await?,
                    ..WebhookRow::default()
                };
                store.save_webhook_state(&s, store::now_ms()).await?;
                s
            }
        };
        Ok(Cursor {
            state: Mutex::new(state),
        })
    }

    pub(crate) fn snapshot(&self) -> WebhookRow {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) async fn save(&self, store: &Store, f: impl FnOnce(&mut WebhookRow)) {
        let row = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
            s.clone()
        };
        if let Err(e) = store.save_webhook_state(&row, store::now_ms()).await {
            tracing::warn!(cursor = %row.name, error = %e, "delivery state not stored");
        }
    }

    /// Event `id` acknowledged at `now`.
    pub(crate) async fn delivered(&self, store: &Store, id: i64, now: i64) {
        self.save(store, |s| {
            s.delivered_through = id;
            s.attempts = 0;
            s.last_error = None;
            s.last_attempt_at = Some(now);
            s.next_attempt_at = None;
            s.delivered += 1;
        })
        .await;
    }

    /// An attempt failed: record why; returns how long to wait (0.5 s
    /// doubling to 30 s).
    pub(crate) async fn failed(&self, store: &Store, why: String) -> Duration {
        let attempts = self.snapshot().attempts + 1;
        let wait = FIRST_BACKOFF
            .saturating_mul(1 << (attempts - 1).clamp(0, 16) as u32)
            .min(MAX_BACKOFF);
        let name = self.snapshot().name;
        tracing::warn!(cursor = %name, attempts, retry_in_ms = wait.as_millis() as u64, error = %why, "delivery failed");
        let now = store::now_ms();
        self.save(store, |s| {
            s.attempts = attempts;
            s.last_error = Some(why);
            s.last_attempt_at = Some(now);
            s.next_attempt_at = Some(now + wait.as_millis() as i64);
        })
        .await;
        wait
    }

    /// The API's view of it.
    pub(crate) fn status(&self, url: String, events: Vec<String>, feed_head: i64) -> WebhookStatus {
        let s = self.snapshot();
        WebhookStatus {
            name: s.name,
            url,
            events,
            delivered_through: s.delivered_through,
            feed_head: feed_head.max(s.delivered_through),
            delivered: s.delivered,
            attempts: s.attempts,
            last_error: s.last_error,
            last_attempt_at: s.last_attempt_at,
            next_attempt_at: s.next_attempt_at,
        }
    }
}

/// The running webhooks (for the API's status).
pub struct Webhooks {
    hooks: Vec<Arc<Hook>>,
}

struct Hook {
    cfg: WebhookSettings,
    secret: Vec<u8>,
    cursor: Cursor,
    feed_head: std::sync::atomic::AtomicI64,
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    let tag = m.finalize().into_bytes();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256=");
    for b in tag {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The URL without user info (a password in it is never shown).
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match auth.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl Webhooks {
    /// Read every secret, load or start each cursor, spawn the deliveries.
    pub async fn start(
        settings: &Settings,
        feed: Arc<Feed>,
        store: Store,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Webhooks>> {
        let mut hooks = Vec::new();
        for cfg in &settings.webhooks {
            let secret = std::fs::read(&cfg.secret_file).map_err(|e| {
                anyhow::anyhow!(
                    "webhook {:?}: cannot read its secret_file {}: {e}",
                    cfg.name,
                    cfg.secret_file.display()
                )
            })?;
            let secret = secret.trim_ascii_end().to_vec();
            if secret.is_empty() {
                anyhow::bail!(
                    "webhook {:?}: secret_file {} is empty",
                    cfg.name,
                    cfg.secret_file.display()
                );
            }
            let cursor = Cursor::load(&store, &cfg.name).await?;
            let hook = Arc::new(Hook {
                cfg: cfg.clone(),
                secret,
                cursor,
                feed_head: std::sync::atomic::AtomicI64::new(0),
            });
            tokio::spawn(deliver(
                hook.clone(),
                feed.clone(),
                store.clone(),
                shutdown.clone(),
            ));
            hooks.push(hook);
        }
        Ok(Arc::new(Webhooks { hooks }))
    }

    /// Each webhook's delivery state.
    pub fn status(&self) -> Vec<WebhookStatus> {
        self.hooks
            .iter()
            .map(|h| {
                h.cursor.status(
                    shown_url(&h.cfg.url),
                    h.cfg.events.clone(),
                    h.feed_head.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }
}

impl Hook {
    fn wants(&self, kind: &str) -> bool {
        self.cfg.events.is_empty() || self.cfg.events.iter().any(|k| k == kind)
    }
}

async fn deliver(hook: Arc<Hook>, feed: Arc<Feed>, store: Store, shutdown: CancellationToken) {
    let mut live = feed.subscribe();
    let agent = ureq::Agent::new_with_config(crate::client::agent_config(DELIVERY_TIMEOUT));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let cursor = hook.cursor.snapshot().delivered_through;
        let page = match feed.since(cursor, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(webhook = %hook.cfg.name, error = %e, "feed read failed");
                Vec::new()
            }
        };
        if let Some(last) = page.last() {
            hook.feed_head
                .fetch_max(last.id, std::sync::atomic::Ordering::Relaxed);
        }
        if page.is_empty() {
            // Caught up: wait for the next stored event (or look again soon).
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = live.recv() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let mut skipped_to = None;
        for ev in page {
            if !hook.wants(&ev.kind) {
                skipped_to = Some(ev.id);
                continue;
            }
            if let Some(id) = skipped_to.take() {
                hook.cursor.save(&store, |s| s.delivered_through = id).await;
            }
            // This event until its receiver takes it.
            loop {
                let now = store::now_ms();
                let r = post(&agent, &hook, &ev).await;
                match r {
                    Ok(()) => {
                        hook.cursor.delivered(&store, ev.id, now).await;
                        tracing::debug!(webhook = %hook.cfg.name, event = ev.id, "delivered");
                        break;
                    }
                    Err(why) => {
                        let wait = hook.cursor.failed(&store, why).await;
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
        if let Some(id) = skipped_to {
            hook.cursor.save(&store, |s| s.delivered_through = id).await;
        }
    }
}

/// One POST; `Err` says why it was not acknowledged (never the secret).
async fn post(agent: &ureq::Agent, hook: &Hook, ev: &FeedEvent) -> Result<(), String> {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": ev.id,
        "type": ev.kind,
        "at": ev.at,
        "system": ev.system,
        "run": ev.run,
        "data": ev.data,
    }))
    .map_err(|e| e.to_string())?;
    let ts = store::now_ms() / 1000;
    let sig = signature(&hook.secret, ts, &body);
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(&hook.cfg.url)
        .header("Content-Type", "application/json")
        .header("X-Rackboot-Event-Id", ev.id.to_string())
        .header("X-Rackboot-Timestamp", ts.to_string())
        .header("X-Rackboot-Signature", sig)
        .body(body)
        .map_err(|e| format!("bad request: {e}"))?;
    let agent = agent.clone();
    let r = tokio::task::spawn_blocking(move || match agent.run(req) {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Err(e.to_string()),
    })
    .await;
    r.unwrap_or_else(|e| Err(format!("delivery task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Known answer, from Python: hmac.new(b"Jefe", b"1.what do ya want
        // for nothing?", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"Jefe", 1, b"what do ya want for nothing?"),
            "sha256=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        assert_ne!(
            signature(b"Jefe", 2, b"what do ya want for nothing?"),
            signature(b"Jefe", 1, b"what do ya want for nothing?")
        );
    }

    #[test]
    fn urls_hide_user_info() {
        assert_eq!(
            shown_url("https://u:pw@hooks.example/x?y"),
            "https://***@hooks.example/x?y"
        );
        assert_eq!(shown_url("http://127.0.0.1:9/h"), "http://127.0.0.1:9/h");
    }
}
