//! The event feed published to an MQTT broker (`[mqtt]`), for labs whose
//! test agents already listen there.
//!
//! Like a webhook, the publisher walks the stored feed in id order from its
//! cursor (the `webhook_state` row named `@mqtt`, a name no webhook can
//! have) and moves it only once the broker acknowledged the event (QoS 1
//! PUBACK on every topic it went to). Each event goes to
//! `PREFIX/systems/NAME/events` and, for a run's events, to
//! `PREFIX/runs/ID/events`, with the webhook body as payload. A broker that is
//! down, or a daemon restart, loses nothing; delivery is at least once.

use crate::api::feed::{FeedEvent, WebhookStatus};
use crate::config::MqttSettings;
use crate::feed::Feed;
use crate::store::{self, Store};
use crate::webhooks::Cursor;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The cursor's name in `webhook_state`.
const CURSOR: &str = "@mqtt";
const PAGE: u32 = 100;
/// Time for a connection or an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MqttPublisher {
    cfg: MqttSettings,
    cursor: Cursor,
}

/// The topics an event goes to.
pub fn topics(prefix: &str, ev: &FeedEvent) -> Vec<String> {
    let mut t = Vec::with_capacity(2);
    match &ev.system {
        Some(s) => t.push(format!("{prefix}/systems/{s}/events")),
        None => t.push(format!("{prefix}/events")),
    }
    if let Some(r) = &ev.run {
        t.push(format!("{prefix}/runs/{r}/events"));
    }
    t
}

impl MqttPublisher {
    pub async fn start(
        cfg: &MqttSettings,
        feed: Arc<Feed>,
        store: Store,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<MqttPublisher>> {
        let password = match &cfg.password_file {
            Some(f) => Some(
                String::from_utf8_lossy(&std::fs::read(f).map_err(|e| {
                    anyhow::anyhow!("mqtt: cannot read password_file {}: {e}", f.display())
                })?)
                .trim_end()
                .to_string(),
            ),
            None => None,
        };
        let p = Arc::new(MqttPublisher {
            cfg: cfg.clone(),
            cursor: Cursor::load(&store, CURSOR).await?,
        });
        tokio::spawn(run(p.clone(), password, feed, store, shutdown));
        Ok(p)
    }

    pub fn status(&self) -> WebhookStatus {
        let url = format!("mqtt://{}:{}", self.cfg.host, self.cfg.port);
        self.cursor.status(url, Vec::new(), 0)
    }
}

/// Poll the event loop until the broker accepted the connection.
async fn connected(el: &mut EventLoop) -> Result<(), String> {
    let wait = async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
    };
    tokio::time::timeout(ACK_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err("connect: timed out".into()))
}

/// Publish `ev` to its topics at QoS 1 and wait for every PUBACK.
async fn publish(
    client: &AsyncClient,
    el: &mut EventLoop,
    prefix: &str,
    ev: &FeedEvent,
) -> Result<(), String> {
    let body = serde_json::to_vec(&serde_json::json!({
        "id": ev.id, "type": ev.kind, "at": ev.at,
        "system": ev.system, "run": ev.run, "data": ev.data,
    }))
    .map_err(|e| e.to_string())?;
    let topics = topics(prefix, ev);
    for t in &topics {
        client
            .publish(t.as_str(), QoS::AtLeastOnce, false, body.clone())
            .await
            .map_err(|e| format!("publish: {e}"))?;
    }
    let mut acks = 0;
    let wait = async {
        while acks < topics.len() {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("connection: {e}")),
            }
        }
        Ok(())
    };
    tokio::time::timeout(ACK_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err("no PUBACK in time".into()))
}

async fn run(
    p: Arc<MqttPublisher>,
    password: Option<String>,
    feed: Arc<Feed>,
    store: Store,
    shutdown: CancellationToken,
) {
    let mut live = feed.subscribe();
    'connect: loop {
        if shutdown.is_cancelled() {
            return;
        }
        let mut opts = MqttOptions::new(&p.cfg.client_id, &p.cfg.host, p.cfg.port);
        opts.set_keep_alive(Duration::from_secs(30));
        if let Some(u) = &p.cfg.username {
            opts.set_credentials(u.clone(), password.clone().unwrap_or_default());
        }
        let (client, mut el) = AsyncClient::new(opts, 16);
        if let Err(why) = connected(&mut el).await {
            let wait = p.cursor.failed(&store, why).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => continue 'connect,
            }
        }
        tracing::info!(host = %p.cfg.host, port = p.cfg.port, "mqtt connected");
        loop {
            let cursor = p.cursor.snapshot().delivered_through;
            let page = match feed.since(cursor, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "feed read failed");
                    Vec::new()
                }
            };
            if page.is_empty() {
                // Idle: keep the connection alive (pings) until an event comes.
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        let _ = client.disconnect().await;
                        return;
                    }
                    _ = live.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    r = el.poll() => {
                        if let Err(e) = r {
                            p.cursor.failed(&store, format!("connection: {e}")).await;
                            continue 'connect;
                        }
                    }
                }
                continue;
            }
            for ev in page {
                let now = store::now_ms();
                match publish(&client, &mut el, &p.cfg.topic_prefix, &ev).await {
                    Ok(()) => p.cursor.delivered(&store, ev.id, now).await,
                    Err(why) => {
                        let wait = p.cursor.failed(&store, why).await;
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => continue 'connect,
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_per_machine_and_per_run() {
        let ev = |system: Option<&str>, run: Option<&str>| FeedEvent {
            id: 1,
            at: 0,
            kind: "transition".into(),
            system: system.map(String::from),
            run: run.map(String::from),
            data: serde_json::Value::Null,
        };
        assert_eq!(
            topics("rb", &ev(Some("node50"), Some("run-1"))),
            ["rb/systems/node50/events", "rb/runs/run-1/events"]
        );
        assert_eq!(
            topics("rb", &ev(Some("node50"), None)),
            ["rb/systems/node50/events"]
        );
        assert_eq!(topics("rb", &ev(None, None)), ["rb/events"]);
    }
}
