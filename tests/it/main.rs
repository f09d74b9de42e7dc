//! The one integration-test binary (matklad): modules per feature, a shared harness.

mod harness;

mod config;
mod daemon;
mod dhcp;
mod dhcp_pool;
mod http_boot;
mod power_ipmi;
mod render;
mod runs;
mod tftp;
