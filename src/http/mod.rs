//! HTTP: the machine-facing boot server (`boot`) and the operator API (`api`),
//! on separate listeners so the API can stay on loopback or a management net.

// Handlers return `Result<_, Response>` to short-circuit with a ready reply.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod api_admin;
pub mod api_discovered;
pub mod api_runs;
pub mod boot;
pub mod boot_conn;
pub mod guard;
pub mod tls;
