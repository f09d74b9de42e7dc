//! A stand-alone TFTP server for `bench/tftp-bench.sh` (and a CLI subcommand
//! later): one root, default limits, no observations, runs until the process
//! ends.

use super::{serve, RootsSource, TftpConfig, TftpStats};
use crate::observe::ObservationSink;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Serve `root` on `addr` with [`TftpConfig::default`] until the process exits.
pub async fn bench_server(addr: SocketAddr, root: PathBuf) -> std::io::Result<()> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let source = Arc::new(RootsSource::new([root])?);
    serve(
        socket,
        source,
        TftpConfig::default(),
        Arc::new(TftpStats::default()),
        ObservationSink::discard(),
        CancellationToken::new(),
    )
    .await
}
