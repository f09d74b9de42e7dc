//! The one integration-test binary (matklad): modules per feature, a shared harness.

mod harness;

mod admin;
mod auth;
mod bench_runs;
mod browser;
mod config;
mod daemon;
mod dhcp;
mod dhcp_pool;
mod discovery;
mod dns;
mod facts;
mod feed;
mod fields;
mod grub;
mod http_boot;
mod http_sendfile;
mod init;
mod metrics;
mod mqtt;
mod notify;
mod pg;
mod power_ipmi;
mod power_redfish;
mod render;
mod runs;
mod tftp;
mod tidy;
mod tls;
mod ui;
mod webhooks;
