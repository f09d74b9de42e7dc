//! After an edit of the files: ask the running daemon to reload
//! (`POST /api/v1/reload`), and say what it answered.

use crate::api;
use crate::client::{self, Client, ClientError};
use crate::config::Settings;

/// What the daemon said to `POST /api/v1/reload`.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonReply {
    Reloaded {
        generation: u64,
        systems: u64,
    },
    /// Nothing listens at the API address.
    NotRunning,
    /// The daemon answered with an error (token, invalid config).
    Rejected {
        status: u16,
        message: String,
    },
    /// Asking failed some other way (timeout, garbage, a bad `--api`).
    Failed(String),
    /// `--no-reload`.
    Skipped,
}

/// The daemon asked (or not), and where.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonReload {
    /// The API address, as asked (or as given, when it is not an address).
    pub address: String,
    pub reply: DaemonReply,
}

/// Where the daemon's API is, as text for the messages.
fn address(settings: &Settings, api: Option<&str>) -> Result<std::net::SocketAddr, String> {
    client::api_addr(api, Some(settings)).map_err(|e| e.to_string())
}

/// `--no-reload`: not asked.
pub fn skipped(settings: &Settings, api: Option<&str>) -> DaemonReload {
    DaemonReload {
        address: address(settings, api)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| api.unwrap_or("").to_string()),
        reply: DaemonReply::Skipped,
    }
}

/// `POST /api/v1/reload` on the daemon at `--api` / `api.listen`.
pub fn ask_reload(settings: &Settings, api: Option<&str>) -> DaemonReload {
    let addr = match address(settings, api) {
        Ok(a) => a,
        Err(e) => {
            return DaemonReload {
                address: api.unwrap_or("").to_string(),
                reply: DaemonReply::Failed(e),
            }
        }
    };
    let c = Client::new(addr, client::api_token(settings));
    let reply = match c.request("POST", "/api/v1/reload", &[], None) {
        Err(ClientError::Unreachable {
            listening: false, ..
        }) => DaemonReply::NotRunning,
        Err(e) => DaemonReply::Failed(e.to_string()),
        Ok(r) if r.status == 200 => match r.json::<api::Reloaded>() {
            Ok(v) => DaemonReply::Reloaded {
                generation: v.generation,
                systems: v.systems as u64,
            },
            Err(e) => DaemonReply::Failed(e.to_string()),
        },
        Ok(r) => DaemonReply::Rejected {
            status: r.status,
            message: r.error_message().replace("\n  ", "; "),
        },
    };
    DaemonReload {
        address: addr.to_string(),
        reply,
    }
}

impl DaemonReload {
    pub fn message(&self) -> String {
        let addr = &self.address;
        match &self.reply {
            DaemonReply::Reloaded {
                generation,
                systems,
            } => format!("daemon reloaded: generation {generation} ({systems} systems)"),
            DaemonReply::NotRunning => {
                format!("no daemon running at {addr}: change takes effect at next start")
            }
            DaemonReply::Rejected { status, message } => format!(
                "warning: the daemon at {addr} did not reload (HTTP {status}: {message}); the files \
                 are written: reload with SIGHUP or POST /api/v1/reload (token: RACKBOOT_TOKEN)"
            ),
            DaemonReply::Failed(e) => format!(
                "warning: could not ask the daemon at {addr} to reload ({e}); the files are \
                 written: reload with SIGHUP or POST /api/v1/reload"
            ),
            DaemonReply::Skipped => {
                "not asking the daemon to reload (--no-reload): SIGHUP or POST /api/v1/reload applies it"
                    .into()
            }
        }
    }

    pub fn report(&self) -> api::DaemonReport {
        let mut r = api::DaemonReport {
            reloaded: false,
            running: None,
            address: self.address.clone(),
            generation: None,
            systems: None,
            status: None,
            message: self.message(),
        };
        match &self.reply {
            DaemonReply::Reloaded {
                generation,
                systems,
            } => {
                r.reloaded = true;
                r.generation = Some(*generation);
                r.systems = Some(*systems);
            }
            DaemonReply::NotRunning => r.running = Some(false),
            DaemonReply::Rejected { status, .. } => {
                r.running = Some(true);
                r.status = Some(*status);
            }
            DaemonReply::Failed(_) | DaemonReply::Skipped => {}
        }
        r
    }
}
