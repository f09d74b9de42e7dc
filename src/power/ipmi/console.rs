//! The SOL console driver: a session of its own (never the per-call one),
//! Activate Payload for SOL instance 1 (a stale activation left by a killed
//! daemon is deactivated once, then activated again), then one task that
//! ACKs the BMC's characters and hands them out, sends what is typed,
//! retransmits unACKed data (`sol::SolState`), keeps the session alive with
//! Get Device ID while the console is quiet, and at the end deactivates the
//! payload and closes the session.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::session::Incoming;
use super::sol::{self, Activated, SolState};
use super::{IpmiClient, IpmiError, IpmiTarget, Window, LOG};

/// Timers of the console loop.
#[derive(Debug, Clone, Copy)]
pub struct SolTiming {
    /// Resend our unACKed data packet after this.
    pub retransmit: Duration,
    /// A Get Device ID when nothing was received for this long.
    pub keepalive: Duration,
    /// The console is lost when nothing at all came back for this long.
    pub dead_after: Duration,
}

impl Default for SolTiming {
    fn default() -> Self {
        SolTiming {
            retransmit: Duration::from_secs(1),
            keepalive: Duration::from_secs(10),
            dead_after: Duration::from_secs(45),
        }
    }
}

/// An active SOL console. `output` yields what the console prints and is
/// closed when the console ends (the BMC deactivated it, the session was
/// lost, or [`SolConsole::close`]); [`SolConsole::close`] then tells why.
pub struct SolConsole {
    pub output: mpsc::Receiver<Vec<u8>>,
    pub input: mpsc::Sender<Vec<u8>>,
    pub activated: Activated,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), IpmiError>>>,
}

impl std::fmt::Debug for SolConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolConsole")
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

async fn activate(c: &mut IpmiClient) -> Result<Activated, IpmiError> {
    let mut retried = false;
    loop {
        let w = c.window();
        let r = c
            .transact_at(
                0x06,
                sol::CMD_ACTIVATE_PAYLOAD,
                &sol::activate_request(),
                Duration::ZERO,
                w,
            )
            .await?;
        match r.completion_code {
            0 => {
                return Activated::parse(&r.data)
                    .map_err(|e| IpmiError::Protocol(format!("Activate Payload: {e}")))
            }
            // Already active: a session we (or a killed daemon) left. Take it over once.
            0x80 if !retried => {
                retried = true;
                tracing::info!(target: LOG, addr = %c.addr, "SOL already active on another session: deactivating it");
                let w = c.window();
                let d = c
                    .transact_at(
                        0x06,
                        sol::CMD_DEACTIVATE_PAYLOAD,
                        &sol::deactivate_request(),
                        Duration::ZERO,
                        w,
                    )
                    .await?;
                if d.completion_code != 0 && d.completion_code != 0x80 {
                    return Err(IpmiError::Rejected {
                        command: "Deactivate Payload (stale SOL)",
                        completion_code: d.completion_code,
                        meaning: super::completion_code_meaning(0x06, 0x49, d.completion_code),
                    });
                }
            }
            cc => {
                return Err(IpmiError::Rejected {
                    command: "Activate Payload (SOL)",
                    completion_code: cc,
                    meaning: super::completion_code_meaning(0x06, 0x48, cc),
                })
            }
        }
    }
}

impl SolConsole {
    /// Open a session, activate SOL and start the console task.
    pub async fn open(t: &IpmiTarget, timing: SolTiming) -> Result<SolConsole, IpmiError> {
        let mut c = IpmiClient::connect(t).await?;
        let activated = match activate(&mut c).await {
            Ok(a) => a,
            Err(e) => {
                let _ = c.close().await;
                return Err(e);
            }
        };
        if activated.port != t.addr.port() && activated.port != 623 {
            tracing::warn!(target: LOG, addr = %c.addr, port = activated.port,
                "BMC announced SOL on another port; staying on the session's");
        }
        tracing::info!(target: LOG, addr = %c.addr, suite = c.cipher_suite(),
            inbound = activated.inbound_max, outbound = activated.outbound_max, "SOL active");
        let (out_tx, output) = mpsc::channel(256);
        let (input, in_rx) = mpsc::channel(64);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(c, activated, timing, out_tx, in_rx, stop_rx));
        Ok(SolConsole {
            output,
            input,
            activated,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stop (if still running), deactivate SOL, close the session. Returns
    /// why the console ended if it ended on its own with an error.
    pub async fn close(self) -> Result<(), IpmiError> {
        self.into_parts().2.close().await
    }

    /// The output, the input and what ends the console.
    pub fn into_parts(self) -> (mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>, SolStop) {
        (
            self.output,
            self.input,
            SolStop {
                stop: self.stop,
                task: self.task,
            },
        )
    }
}

/// Ends a console: dropping it ends the console too (the task sees its
/// stop sender gone), without waiting for the deactivation.
#[derive(Debug)]
pub struct SolStop {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), IpmiError>>>,
}

impl SolStop {
    /// Stop, deactivate SOL, close the session; why the console ended.
    pub async fn close(mut self) -> Result<(), IpmiError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(IpmiError::Protocol(format!("SOL task: {e}")))),
            None => Ok(()),
        }
    }
}

async fn run(
    mut c: IpmiClient,
    activated: Activated,
    timing: SolTiming,
    out: mpsc::Sender<Vec<u8>>,
    mut input: mpsc::Receiver<Vec<u8>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), IpmiError> {
    let mut sol = SolState::new(activated.inbound_max);
    let mut buf = vec![0u8; 2048];
    let mut last_rx = Instant::now();
    let mut last_tx_data = Instant::now();
    let mut keepalive_sent: Option<Instant> = None;
    let mut input_open = true;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended: Result<(), IpmiError> = loop {
        tokio::select! {
            // Told to stop, or the handle is gone.
            _ = &mut stop => break Ok(()),
            r = c.sock.recv(&mut buf) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if super::transient(&e) => continue,
                    Err(e) => break Err(IpmiError::Io(e)),
                };
                match c.session.handle(&buf[..n]) {
                    Incoming::Sol(p) => {
                        last_rx = Instant::now();
                        let o = match sol.on_payload(&p) {
                            Ok(o) => o,
                            Err(e) => {
                                tracing::debug!(target: LOG, error = %e, "bad SOL payload");
                                continue;
                            }
                        };
                        if let Some(p) = o.send {
                            if send_sol(&mut c, &p).await.is_err() {
                                break Err(IpmiError::Protocol("cannot send SOL".into()));
                            }
                            last_tx_data = Instant::now();
                        }
                        if !o.data.is_empty() && out.send(o.data).await.is_err() {
                            // Nobody listens any more.
                            break Ok(());
                        }
                        if o.deactivating {
                            break Err(IpmiError::NotApplied("the BMC deactivated SOL".into()));
                        }
                    }
                    Incoming::Response(_) => {
                        last_rx = Instant::now();
                        keepalive_sent = None;
                    }
                    Incoming::Ignored(why) => tracing::trace!(target: LOG, why, "SOL loop ignored datagram"),
                }
            }
            bytes = input.recv(), if input_open => match bytes {
                Some(b) => {
                    if let Some(p) = sol.write(&b) {
                        if send_sol(&mut c, &p).await.is_err() {
                            break Err(IpmiError::Protocol("cannot send SOL".into()));
                        }
                        last_tx_data = Instant::now();
                    }
                }
                None => input_open = false,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(last_rx) > timing.dead_after {
                    break Err(IpmiError::Unreachable { addr: c.addr, after: now.duration_since(last_rx) });
                }
                if sol.awaiting_ack() && now.duration_since(last_tx_data) >= timing.retransmit {
                    if let Some(p) = sol.on_timeout() {
                        let _ = send_sol(&mut c, &p).await;
                    }
                    last_tx_data = now;
                }
                let quiet = now.duration_since(last_rx) >= timing.keepalive;
                match keepalive_sent {
                    None if quiet => {
                        // Get Device ID: the session stays alive while the console is quiet.
                        if let Ok(p) = c.session.request(0x06, 0x01, &[]) {
                            let _ = c.sock.send(&p).await;
                            keepalive_sent = Some(now);
                        }
                    }
                    Some(at) if now.duration_since(at) >= timing.retransmit * 2 => {
                        if let Ok(Some(p)) = c.session.retransmit() {
                            let _ = c.sock.send(&p).await;
                        }
                        keepalive_sent = Some(now);
                    }
                    _ => {}
                }
            }
        }
    };
    c.session.abandon();
    // Deactivate (best effort, short), then close the session.
    let w = Window::from_now(Duration::from_secs(3));
    let d = c
        .transact_at(
            0x06,
            sol::CMD_DEACTIVATE_PAYLOAD,
            &sol::deactivate_request(),
            Duration::ZERO,
            w,
        )
        .await;
    tracing::debug!(target: LOG, addr = %c.addr, ok = d.is_ok(), dropped = sol.dropped, "SOL deactivated");
    let _ = c.close().await;
    ended
}

async fn send_sol(c: &mut IpmiClient, payload: &[u8]) -> Result<(), IpmiError> {
    let d = c.session.sol(payload)?;
    match c.sock.send(&d).await {
        Ok(_) => Ok(()),
        Err(e) if super::transient(&e) => Ok(()),
        Err(e) => Err(IpmiError::Io(e)),
    }
}
