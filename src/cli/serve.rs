//! `serve` (the daemon) and the hidden `tftp-serve` (bench/tftp-bench.sh):
//! a runtime, tracing, and the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

pub fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RACKBOOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

pub fn serve(dir: &std::path::Path, log_format: &str) -> ExitCode {
    init_tracing(log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(crate::daemon::run(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A stand-alone TFTP server on one root.
pub fn tftp_serve(addr: std::net::SocketAddr, root: PathBuf, log_format: &str) -> ExitCode {
    init_tracing(log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(crate::tftp::bench::bench_server(addr, root)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
