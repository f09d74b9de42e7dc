//! The on-disk formats, as plain serde structs that mirror the files.
//! Unknown fields are rejected here; meaning (references, duplicates,
//! templates) is checked in `config::validate`. Nothing outside `config`
//! sees these types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `rackboot.toml`: daemon settings (restart-only, except where noted).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonFile {
    #[serde(default)]
    pub server: ServerWire,
    #[serde(default)]
    pub dhcp: DhcpWire,
    #[serde(default)]
    pub tftp: TftpWire,
    /// `[dns]`: answer DNS for the inventory (off unless `enabled`).
    #[serde(default)]
    pub dns: DnsWire,
    #[serde(default)]
    pub api: ApiWire,
    #[serde(default)]
    pub limits: LimitsWire,
    #[serde(default)]
    pub runs: RunsWire,
    /// `[[webhooks]]`: event deliveries to HTTP receivers.
    #[serde(default)]
    pub webhooks: Vec<WebhookWire>,
    /// `[mqtt]`: publish the event feed to an MQTT broker.
    pub mqtt: Option<MqttWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttWire {
    /// `mqtt://host[:port]` (default port 1883).
    pub url: String,
    /// Topics: `PREFIX/systems/NAME/events`, `PREFIX/runs/ID/events` (default "rackboot").
    pub topic_prefix: Option<String>,
    /// Default "rackboot-" + the server address.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// File holding the broker password (relative to the config dir).
    pub password_file: Option<String>,
}

/// One `[[webhooks]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookWire {
    /// Names the webhook in the API and the logs (letters, digits, `-_.`).
    pub name: String,
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Event kinds to deliver (`transition`, `observation`); default: all.
    pub events: Option<Vec<String>>,
    /// File holding the HMAC-SHA256 secret (relative to the config dir).
    pub secret_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsWire {
    /// Private key the stages use to reach machines (exported as RACKBOOT_SSH_KEY).
    pub ssh_key: Option<String>,
    /// Bytes of serial console kept per run (`console.log`); 0: no capture.
    pub console_max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerWire {
    /// Interface to bind DHCP/TFTP to (SO_BINDTODEVICE). Optional.
    pub interface: Option<String>,
    /// IPv4 address the daemon listens on and advertises (siaddr, server id, URLs).
    pub address: Option<String>,
    pub http_port: Option<u16>,
    /// Base URL machines use to reach the HTTP boot server. Default: http://address:http_port
    pub http_base_url: Option<String>,
    /// Directory with kernels, initrds and other boot payloads (relative to the config dir).
    pub boot_dir: Option<String>,
    /// Directory with the iPXE binaries (relative to the config dir).
    pub firmware_dir: Option<String>,
    /// Where runs, logs and the SQLite database live (relative to the config dir).
    pub data_dir: Option<String>,
    /// sqlite://... (default: SQLite file in data_dir) or postgres://...
    pub database_url: Option<String>,
    /// Directory with templates (default "kickstarts").
    pub templates_dir: Option<String>,
    /// Directory with profile files (default "profiles").
    pub profiles_dir: Option<String>,
    /// Systems file (default "systems.toml").
    pub systems_file: Option<String>,
    /// This daemon's name among the site's daemons (default: the host name
    /// and the data dir). A restart under the same name takes its runs back
    /// at once; another name waits for the lease to expire.
    pub node: Option<String>,
    /// The boot domains this daemon serves (default ["default"]): it claims
    /// the runs of these domains and takes them over from a silent peer.
    pub boot_domains: Option<Vec<String>>,
    /// How long a daemon's heartbeats may stop before a peer of its domains
    /// fences it and takes its runs over (default "30s").
    pub lease_ttl: Option<String>,
    /// Shared inventory: when the daemon's last good read of the database
    /// is older than this, it serves "boot from local disk", never an
    /// installer (default "5m").
    pub max_stale: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpWire {
    /// "reservations" (default), "pool", "proxy" or "off".
    pub mode: Option<String>,
    pub port: Option<u16>,
    pub lease_secs: Option<u32>,
    pub subnet_mask: Option<String>,
    pub router: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub pool_start: Option<String>,
    pub pool_end: Option<String>,
    /// "I/N": this daemon hands out only the I-th of N equal, disjoint parts
    /// of the pool (several daemons on one segment; default the whole pool).
    pub pool_slice: Option<String>,
    /// UEFI x64 PXE clients get this file: "ipxe.efi" (default) or "snponly.efi".
    pub efi_x64_file: Option<String>,
    /// How many MACs outside the inventory `rackboot discovered` keeps
    /// (least recently seen first out; default 10000; 0 turns discovery off).
    pub discovered_max: Option<u32>,
    /// Netboot MACs outside the inventory into the `inspect` profile (facts
    /// stored against the discovered MAC; the machine powers itself off).
    /// Default false; needs mode "pool" or "proxy".
    pub inspect_discovered: Option<bool>,
    /// Undocumented test / lab knob: send every reply that would be
    /// broadcast to this ADDRESS:PORT instead (clients on loopback).
    pub reply_to: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpWire {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub max_transfers: Option<usize>,
    pub max_blksize: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsWire {
    /// Serve DNS (default false).
    pub enabled: Option<bool>,
    /// ADDRESS:PORT, UDP and TCP (default: server.address, port 53).
    pub listen: Option<String>,
    /// The domain rackboot answers for with authority (default: dhcp.domain).
    pub zone: Option<String>,
    /// Resolvers for names outside the zone: ADDRESS or ADDRESS:PORT (port 53).
    #[serde(default)]
    pub upstream: Vec<String>,
    /// TTL of the answers, seconds (default 60).
    pub ttl: Option<u32>,
    /// Names outside the zone: "forward" (default when `upstream` is set) or
    /// "refuse" (default without).
    pub outside_zone: Option<String>,
    /// How long one upstream resolver gets before the next is tried, ms (default 1500).
    pub upstream_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiWire {
    /// Operator API listen address (default 127.0.0.1:9080).
    pub listen: Option<String>,
    /// File holding API tokens, one per line (relative to config dir).
    pub tokens_file: Option<String>,
    /// Environment variable holding a token.
    pub token_env: Option<String>,
    /// TLS for the API/UI listener: certificate chain (PEM), relative to the
    /// config dir; needs `tls_key`. Re-read on SIGHUP.
    pub tls_cert: Option<String>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<String>,
    /// Seconds between power-state polls of every BMC (web UI); 0 = off.
    pub power_poll_secs: Option<u64>,
    /// `/metrics`: add per-system series (`rackboot_system_runs_total`).
    pub metrics_per_system: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsWire {
    pub max_parallel_runs: Option<usize>,
    pub max_parallel_bmc: Option<usize>,
    pub max_parallel_stages: Option<usize>,
}

/// `systems.toml`: `[systems.NAME]` tables, and `[boot_domains]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemsFile {
    /// Boot domain name -> its subnets ("10.61.0.0/16"): a system without a
    /// `boot_domain` var belongs to the domain whose subnet holds its `ip`
    /// (several daemons on one database claim the runs of their domains).
    #[serde(default)]
    pub boot_domains: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub systems: BTreeMap<String, SystemWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemWire {
    pub hostname: Option<String>,
    pub macs: Vec<String>,
    pub ip: String,
    pub netmask: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub profile: String,
    /// `ipxe` or `grub`: this machine's first-stage loader, over its profile's
    /// (one Secure Boot machine in a profile of iPXE ones).
    pub loader: Option<String>,
    pub bmc: Option<BmcWire>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcWire {
    /// "ipmi" or "redfish".
    pub kind: String,
    /// host or host:port (IPMI default port 623; Redfish: https://host[:port] or host).
    pub address: String,
    pub username: String,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    /// Refused: passwords never live inline. Present only to give a clear error.
    pub password: Option<toml::Value>,
    /// IPMI cipher suites in preference order (default [17, 3]).
    pub cipher_suites: Option<Vec<u8>>,
    /// Redfish: accept a self-signed certificate.
    pub insecure_tls: Option<bool>,
    /// Redfish system id (default: discovered from /redfish/v1/Systems).
    pub system_id: Option<String>,
}

/// `profiles/NAME.toml`. Also the typed keys of an API profile change
/// (`api::changes::ProfileChange::set`), so it serializes too.
#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileWire {
    pub description: Option<String>,
    pub parent: Option<String>,
    /// A profile that only exists to be inherited (like a Cobbler distro): not assignable
    /// to systems, not required to be complete.
    pub r#abstract: Option<bool>,
    pub kernel: Option<String>,
    pub initrd: Option<Vec<String>>,
    pub kernel_args: Option<String>,
    /// "kickstart", "preseed", "autoinstall", "cloud-init" or "script".
    pub installer: Option<String>,
    /// Installer template (kickstart/preseed/script), under the templates dir.
    pub template: Option<String>,
    /// cloud-init / autoinstall NoCloud templates.
    pub user_data: Option<String>,
    pub meta_data: Option<String>,
    pub vendor_data: Option<String>,
    /// Custom iPXE script template (default: built in).
    pub ipxe_template: Option<String>,
    /// What a UEFI x64 PXE client loads: "ipxe" (default) or "grub" (Debian's
    /// signed shim and network GRUB, for Secure Boot).
    pub loader: Option<String>,
    pub wait_ports: Option<Vec<u16>>,
    /// The installer reboots into the installed system after its callback
    /// (default true); false: the machine stays up and its ports are probed at once.
    pub reboots: Option<bool>,
    /// "local" (default: after the run the machine boots its disk) or
    /// "netboot" (diskless and live machines netboot the image every time).
    pub after_install: Option<String>,
    /// Power-cycles again when a run's boot evidence (DHCP, kernel,
    /// installer config) or the install-done callback does not come in time,
    /// before the run fails (default 2).
    pub boot_retries: Option<u32>,
    pub timeouts: Option<BTreeMap<String, String>>,
    pub stages: Option<Vec<StageWire>>,
    /// "rerun" (default) or "fail": what to do with a stage interrupted by a restart.
    pub on_interrupted_stage: Option<String>,
    pub vars: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageWire {
    pub name: String,
    /// "config" or "test".
    pub kind: String,
    pub command: String,
    pub timeout: Option<String>,
    /// "stop" (default) or "continue".
    pub on_failure: Option<String>,
    /// "after" (default: once the machine is up) or "before" (before the
    /// boot device is set: clean-up elsewhere; the machine is not touched).
    pub when: Option<String>,
}
