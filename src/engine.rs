//! The engine: the only writer of machine intent (the netboot switch) and,
//! as runs land, of run state. Commands come in over a channel; the engine
//! persists first, then publishes a new `BootTable` snapshot for the adapters.

use crate::boot::BootTable;
use crate::render::RunCtx;
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub enum Command {
    /// Turn a system's netboot on (with a fresh callback token) or off.
    SetNetboot {
        system: String,
        on: bool,
        reply: oneshot::Sender<Result<NetbootState, String>>,
    },
    /// A valid install-done callback arrived for this system and run.
    InstallDone {
        system: String,
        run_id: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootState {
    pub system: String,
    pub enabled: bool,
    pub run_id: Option<String>,
}

/// Cheap-to-clone handle to the engine.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
}

impl EngineHandle {
    pub async fn set_netboot(&self, system: &str, on: bool) -> Result<NetbootState, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SetNetboot {
                system: system.to_string(),
                on,
                reply,
            })
            .await
            .map_err(|_| "engine stopped".to_string())?;
        rx.await.map_err(|_| "engine stopped".to_string())?
    }

    pub async fn install_done(&self, system: &str, run_id: &str) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::InstallDone {
                system: system.to_string(),
                run_id: run_id.to_string(),
                reply,
            })
            .await
            .map_err(|_| "engine stopped".to_string())?;
        rx.await.map_err(|_| "engine stopped".to_string())?
    }
}

/// 128-bit random token, hex. Reads the kernel's CSPRNG.
pub fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Build the boot table from the store (at start and after restarts).
pub async fn load_table(store: &Store) -> Result<BootTable, crate::store::StoreError> {
    let mut t = BootTable::new();
    for row in store.netboot().await? {
        if row.enabled {
            t.insert(
                &row.system,
                RunCtx {
                    id: row.run_id.unwrap_or_else(|| "manual".into()),
                    token: row.token.unwrap_or_default(),
                },
            );
        }
    }
    Ok(t)
}

pub struct Engine {
    store: Store,
    table: BootTable,
    table_tx: watch::Sender<Arc<BootTable>>,
}

impl Engine {
    /// Spawn the engine; returns its handle and the boot table receiver.
    pub async fn start(
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<(EngineHandle, watch::Receiver<Arc<BootTable>>), crate::store::StoreError> {
        let table = load_table(&store).await?;
        let (table_tx, table_rx) = watch::channel(Arc::new(table.clone()));
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        let mut engine = Engine {
            store,
            table,
            table_tx,
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    cmd = rx.recv() => match cmd {
                        Some(c) => engine.handle(c).await,
                        None => break,
                    }
                }
            }
            tracing::debug!("engine stopped");
        });
        Ok((EngineHandle { tx }, table_rx))
    }

    fn publish(&self) {
        self.table_tx.send_replace(Arc::new(self.table.clone()));
    }

    async fn handle(&mut self, c: Command) {
        match c {
            Command::SetNetboot { system, on, reply } => {
                let r = if on {
                    let run = RunCtx {
                        id: format!("manual-{}", crate::store::now_ms()),
                        token: random_token(),
                    };
                    match self
                        .store
                        .set_netboot(&system, true, Some(&run.id), Some(&run.token))
                        .await
                    {
                        Ok(()) => {
                            let id = run.id.clone();
                            self.table.insert(&system, run);
                            self.publish();
                            tracing::info!(system = %system, run = %id, "netboot on");
                            Ok(NetbootState {
                                system,
                                enabled: true,
                                run_id: Some(id),
                            })
                        }
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    match self.store.set_netboot(&system, false, None, None).await {
                        Ok(()) => {
                            self.table.remove(&system);
                            self.publish();
                            tracing::info!(system = %system, "netboot off");
                            Ok(NetbootState {
                                system,
                                enabled: false,
                                run_id: None,
                            })
                        }
                        Err(e) => Err(e.to_string()),
                    }
                };
                let _ = reply.send(r);
            }
            Command::InstallDone {
                system,
                run_id,
                reply,
            } => {
                // Only the run that is pending may end its own netboot.
                let r = match self.table.get(&system) {
                    Some(run) if run.id == run_id => {
                        match self.store.set_netboot(&system, false, None, None).await {
                            Ok(()) => {
                                self.table.remove(&system);
                                self.publish();
                                tracing::info!(system = %system, run = %run_id, "install done: next netboot boots the local disk");
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    _ => Err(format!("run {run_id} is not pending for {system}")),
                };
                let _ = reply.send(r);
            }
        }
    }
}
