#!/bin/bash
# scripts/install-deps.sh - everything rackboot's tests and virtual lab (tests/lab/) need on a
# fresh Debian 12 host. Idempotent and non-interactive; run as root. When every package and the
# venv are already present it changes nothing and does not touch the network.
#
#   apt (Debian 12):  QEMU + firmware, IPMI simulator, DHCP/TFTP stand-in, guest initrd tools,
#                     disk-image tools, TFTP clients (tests), cloud-init (`cloud-init schema` only),
#                     PostgreSQL 15 (the store's tests on Postgres)
#                     dig and dnsperf (DNS tests and bench)
#   cargo:            cargo-deb (packaging/build-deb.sh), cargo-afl + its AFL++ (bench/fuzz.sh)
#   pip (PyPI):       pykickstart and sushy-tools into $REPO/.lab/venv (ksvalidator,
#                     sushy-emulator = the Redfish BMC emulator for tests/it/power_redfish.rs)
#
# Notes
# * dnsmasq-base, not dnsmasq: the latter ships a unit that starts a host-wide dnsmasq.
# * No kernel is installed: tests/lab/build-boot.sh `apt-get download`s the kernel package and
#   extracts it into $REPO/.lab/cache (no /boot changes).
# * cloud-init is only needed for `cloud-init schema --config-file X`. With
#   --no-install-recommends it pulls ~20 small packages (python3-jinja2/-jsonschema/-requests/...,
#   isc-dhcp-client, fdisk, gdisk, eject). It starts no service at install time, but on a systemd
#   host its units would run at the next boot: when this script installs it, it also creates
#   /etc/cloud/cloud-init.disabled (the documented off switch; `cloud-init schema` still works).
#   Set LAB_KEEP_CLOUD_INIT_ENABLED=1 to skip that.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }

PKGS=(
  # virtual lab: machines, firmware, BMC, provisioner stand-in
  qemu-system-x86 ipxe-qemu ipxe ovmf openipmi ipmitool dnsmasq-base iproute2 tcpdump curl python3
  # the ARM64 machine (lab case arm64): QEMU virt + AAVMF
  qemu-system-arm qemu-efi-aarch64
  # guest kernel/initrd build (tests/lab/build-boot.sh)
  busybox-static dropbear-bin cpio kmod openssh-client
  # disk-mode image (no loop devices / mounts)
  syslinux syslinux-common mtools dosfstools fdisk
  # TFTP clients for tests, python venv for pykickstart, cloud-init for `cloud-init schema`
  tftp-hpa atftp python3-venv cloud-init
  # headless browser for the web UI tests (tests/it/browser.rs, WebDriver)
  chromium chromium-driver
  # MQTT broker and its client for tests/it/mqtt.rs (on a systemd host the
  # mosquitto package also enables a broker service on port 1883)
  mosquitto mosquitto-clients
  # PostgreSQL server binaries for the store's tests on Postgres (src/store/testdb.rs starts a
  # throwaway server itself through scripts/pg-tmp.sh; on a systemd host the package also creates
  # and starts a cluster "main" on port 5432, which the tests do not use)
  postgresql-15
  # promtool for `promtool check metrics` on /metrics (tests/it/metrics.rs); the server is not used
  prometheus
  # the Debian package (packaging/build-deb.sh, tests/pkg/run.sh): dpkg-shlibdeps, lintian
  dpkg-dev lintian
  # bench/http-bench.sh: the static-file peer and the load generator (on a systemd host the
  # nginx packages also enable a default site on port 80; the bench runs its own nginx)
  nginx-light wrk
  # DNS: dig for tests/it/dns.rs, dnsperf for bench/dns-bench.sh (its peer is dnsmasq-base above)
  bind9-dnsutils dnsperf
)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  had_cloud_init=0; installed cloud-init && had_cloud_init=1
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "${missing[@]}"
  if [ "$had_cloud_init" = 0 ] && installed cloud-init && [ "${LAB_KEEP_CLOUD_INIT_ENABLED:-0}" != 1 ]; then
    mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled
    echo "install-deps: created /etc/cloud/cloud-init.disabled (cloud-init is installed for 'cloud-init schema' only)"
  fi
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi

# pykickstart (ksvalidator) and sushy-tools (sushy-emulator) in a venv under the git-ignored .lab/
VENV="$REPO/.lab/venv"
if [ -x "$VENV/bin/ksvalidator" ] && [ -x "$VENV/bin/sushy-emulator" ] \
   && "$VENV/bin/python" -c 'import pykickstart, sushy_tools' 2>/dev/null; then
  echo "install-deps: $VENV has pykickstart and sushy-tools"
else
  echo "install-deps: creating $VENV with pykickstart and sushy-tools"
  mkdir -p "$REPO/.lab"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check pykickstart sushy-tools
fi

# cargo-deb (packaging/build-deb.sh) from crates.io, into ~/.cargo/bin with the other cargo tools
if command -v cargo-deb >/dev/null; then
  echo "install-deps: $(cargo-deb --version)"
elif command -v cargo >/dev/null; then
  echo "install-deps: cargo install cargo-deb --locked"
  cargo install cargo-deb --locked
else
  echo "install-deps: no cargo: cargo-deb not installed (packaging/build-deb.sh needs it)" >&2
fi

# cargo-afl (bench/fuzz.sh, the fuzz smoke in scripts/test.sh) from crates.io; installing it
# also builds its AFL++ (afl-fuzz and the runtime, from source in the crate) for this rustc.
# A rustc upgrade needs the runtime rebuilt: `cargo afl config --build` does it (it refuses,
# harmlessly, when the runtime for this rustc is there).
if command -v cargo >/dev/null; then
  if ! command -v cargo-afl >/dev/null; then
    echo "install-deps: cargo install cargo-afl --locked"
    cargo install cargo-afl --locked
  fi
  if ! afl_out=$(cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$afl_out"; then
    echo "$afl_out" >&2; echo "install-deps: building AFL++ for cargo-afl failed" >&2; exit 1
  fi
  echo "install-deps: $(cargo afl --version 2>/dev/null | head -1) (AFL++ runtime for $(rustc --version))"
else
  echo "install-deps: no cargo: cargo-afl not installed (bench/fuzz.sh needs it)" >&2
fi

dpkg-query -W -f='${Package} ${Version}\n' "${PKGS[@]}"
echo "pykickstart $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pykickstart"))')" \
     "($VENV/bin/ksvalidator)"
echo "sushy-tools $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("sushy-tools"))')" \
     "($VENV/bin/sushy-emulator)"
