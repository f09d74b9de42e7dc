//! HTTP: the machine-facing boot server (`boot`) and the operator API (`api`),
//! on separate listeners so the API can stay on loopback or a management net.

pub mod api;
pub mod boot;
