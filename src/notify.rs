//! The service manager's side channel (systemd's notify protocol,
//! `sd_notify(3)`, through the `sd-notify` crate): `READY=1` once every
//! listener is bound and the store is open, `STATUS=` a one-line summary,
//! `WATCHDOG=1` only while the engine's loop answers a round trip, and
//! `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` (not under systemd)
//! every call is a no-op. An adapter of the daemon: only `daemon::run` uses
//! it (in-process test daemons never notify).

use crate::engine::EngineHandle;
use crate::reload::Reloader;
use sd_notify::NotifyState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often `STATUS=` is refreshed when the unit has no watchdog.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The notify socket and the watchdog interval the service manager asked
/// for, read once at start-up.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment: `NOTIFY_SOCKET`, `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`, which must be ours when set). The variables are left
    /// in place (removing them is unsound once threads run); the stages'
    /// subprocesses do not inherit them (`engine::stage`).
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        Notifier { enabled, watchdog }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            enabled: false,
            watchdog: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The service manager's watchdog timeout (`WatchdogSec=`), if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled)
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// `READY=1` with a first status line: call once the listeners are
    /// bound, the store is open and the servers are spawned.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

/// The one-line `STATUS=`: runs active/queued and the config generation.
pub fn status_line(active: u64, queued: u64, generation: u64) -> String {
    format!("serving: {active} runs active, {queued} queued; config generation {generation}")
}

/// The current status line of a running daemon.
pub fn current_status(engine: &EngineHandle, reloader: &Reloader) -> String {
    status_line(
        engine.metrics.active.load(Ordering::Relaxed),
        engine.metrics.queued.load(Ordering::Relaxed),
        reloader.generation(),
    )
}

/// Until `shutdown`: every half watchdog interval (or `STATUS_EVERY` without
/// a watchdog) a round trip through the engine's loop; `WATCHDOG=1` only when
/// it answers within a quarter interval, so a wedged engine stops the pings
/// and the service manager restarts the daemon. `STATUS=` when it changed.
pub async fn heartbeat(
    notifier: Notifier,
    engine: EngineHandle,
    reloader: Arc<Reloader>,
    shutdown: CancellationToken,
) {
    if !notifier.enabled() {
        return;
    }
    let watchdog = notifier.watchdog();
    let every = watchdog.map(|w| w / 2).unwrap_or(STATUS_EVERY);
    let answer_within = watchdog.map(|w| w / 4).unwrap_or(STATUS_EVERY / 2);
    if let Some(w) = watchdog {
        tracing::info!(
            watchdog_ms = w.as_millis() as u64,
            "service watchdog on: pinging while the engine answers"
        );
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = current_status(&engine, &reloader);
    let mut wedged = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let alive = matches!(
            tokio::time::timeout(answer_within, engine.ping()).await,
            Ok(Ok(()))
        );
        if shutdown.is_cancelled() {
            return;
        }
        let status = if alive {
            if wedged {
                tracing::info!("the engine answers again");
                wedged = false;
            }
            if watchdog.is_some() {
                notifier.watchdog_ping();
            }
            current_status(&engine, &reloader)
        } else {
            if !wedged {
                tracing::error!(
                    within_ms = answer_within.as_millis() as u64,
                    "the engine did not answer a heartbeat: no watchdog ping"
                );
                wedged = true;
            }
            "engine not answering".to_string()
        };
        if status != last_status {
            notifier.status(&status);
            last_status = status;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_one_line() {
        let s = status_line(2, 5, 3);
        assert_eq!(s, "serving: 2 runs active, 5 queued; config generation 3");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn disabled_sends_nothing_and_has_no_watchdog() {
        let n = Notifier::disabled();
        assert!(!n.enabled());
        assert_eq!(n.watchdog(), None);
        n.ready("x");
        n.stopping();
    }
}
