//! rackboot: a bare-metal provisioning appliance.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - `model`: value types (Mac, Arch). `observe`: typed boot observations.
//! - `config`: the operator's files → validated `Settings` + `Inventory`.
//! - `inventory`: the immutable, indexed snapshot. `render`: templates.
//! - `boot`: the one pure boot decision ("what does MAC X get now?").
//! - `http`: the machine-facing boot server and the operator API.
//! - `dns`: the optional DNS server (`[dns]`) answering from the inventory.
//! - `engine`: the only writer of machine intent and run state.
//! - `metrics`: Prometheus `/metrics` (mirrors the adapters' counters).
//! - `store`: the SQL facade. `daemon`: the composition root. `reload`: the
//!   one `Reloader` (SIGHUP and the API). `notify`: systemd's notify protocol
//!   (ready, watchdog, status, stopping) for `daemon::run`.
//! - `auth`: named, scoped API tokens; `http::guard` enforces them per route.
//! - `api`: the operator API's JSON types. `client`: its one client.
//!   `cli`: commands.

pub mod admin;
pub mod api;
pub mod auth;
pub mod boot;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dhcp;
pub mod diagnose;
pub mod dns;
pub mod engine;
pub mod facts;
pub mod feed;
pub mod http;
pub mod inventory;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod observe;
pub mod power;
pub mod reload;
pub mod render;
pub mod shared;
pub mod store;
pub mod template;
pub mod tftp;
pub mod ui;
pub mod webhooks;
pub mod workflow;
