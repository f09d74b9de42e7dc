//! TLS for the API/UI listener (rustls with ring, the provider the Redfish
//! client already uses). The certificate and key are PEM files from
//! `[api] tls_cert` / `tls_key`; `Tls::reload` (SIGHUP) swaps them for new
//! connections and keeps the old pair when the new files do not load.
//!
//! Handshakes run in their own tasks (bounded by `HANDSHAKE`), so a slow or
//! silent client holds up nobody; finished connections reach axum through
//! `TlsListener` (an `axum::serve::Listener`).

use crate::config::TlsFiles;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// The listener's certificate, swappable at run time.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// Handshakes that failed or timed out (dropped connections).
    pub failed_handshakes: AtomicU64,
}

/// Why a certificate pair did not load: the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct TlsError {
    pub file: String,
    pub reason: String,
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Arc<Tls>, TlsError> {
        Ok(Arc::new(Tls {
            current: RwLock::new(Arc::new(server_config(files)?)),
            files: files.clone(),
            failed_handshakes: AtomicU64::new(0),
        }))
    }

    /// Re-read the files; on error the old certificate keeps serving.
    pub fn reload(&self) -> Result<(), TlsError> {
        let c = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
        Ok(())
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn server_config(f: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let err = |p: &std::path::Path, reason: String| TlsError {
        file: p.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
        .map_err(|e| err(&f.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&f.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(&f.cert, "no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&f.key).map_err(|e| err(&f.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&f.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&f.key, format!("does not fit the certificate: {e}")))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

/// Connections that finished their handshake, for `axum::serve`.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Accept on `tcp`, handshake each connection in its own task, hand the
/// finished ones to the returned listener. Stops with `shutdown`.
pub fn listen(
    tcp: TcpListener,
    tls: Arc<Tls>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> std::io::Result<TlsListener> {
    let local = tcp.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let t = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tcp.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "API listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (tls, tx) = (tls.clone(), tx.clone());
            t.spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send((s, peer)).await;
                    }
                    Ok(Err(e)) => {
                        tls.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        tls.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    Ok(TlsListener { rx, local })
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
