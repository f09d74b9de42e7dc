//! Per-BMC exclusivity across the daemons sharing one database: the
//! `bmc_leases` row of a BMC address is held by one daemon id around each
//! command ([`crate::power::BmcGate`]). A lease left by a crashed daemon is
//! free once its holder is fenced (the takeover does that) or its time is
//! up, whichever comes first.

use crate::power::{BmcGate, BoxFut, PowerError};
use crate::store::Store;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one command may hold a BMC before another daemon may take it.
const HOLD: Duration = Duration::from_secs(120);
/// How long a command waits for a BMC another daemon holds.
const WAIT: Duration = Duration::from_secs(60);
/// Between two tries while another daemon holds it.
const RETRY: Duration = Duration::from_millis(200);

pub struct StoreGate {
    store: Store,
    /// This daemon's current id (changes when it re-registers).
    me: Arc<Mutex<String>>,
}

impl StoreGate {
    pub fn new(store: Store, me: Arc<Mutex<String>>) -> StoreGate {
        StoreGate { store, me }
    }

    fn me(&self) -> String {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl BmcGate for StoreGate {
    fn acquire<'a>(&'a self, address: &'a str) -> BoxFut<'a, Result<(), PowerError>> {
        Box::pin(async move {
            let until = Instant::now() + WAIT;
            let me = self.me();
            let mut holder = String::new();
            // Bounded: WAIT / RETRY tries at most.
            while Instant::now() < until {
                match self
                    .store
                    .acquire_bmc(address, &me, HOLD.as_millis() as i64)
                    .await
                {
                    Ok(None) => return Ok(()),
                    Ok(Some(h)) => holder = h,
                    Err(e) => {
                        return Err(PowerError::Other(format!(
                            "{address}: cannot take the BMC (database: {e}); no command sent"
                        )))
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
            Err(PowerError::Other(format!(
                "{address}: the BMC stayed busy with daemon {holder} for {} s; no command sent",
                WAIT.as_secs()
            )))
        })
    }

    fn release<'a>(&'a self, address: &'a str) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.release_bmc(address, &self.me()).await {
                tracing::warn!(bmc = %address, error = %e, "BMC lease not given back (it expires)");
            }
        })
    }
}
