#!/usr/bin/env bash
# scripts/quickstart.sh - the README's "main job" command.
# Today: install what the lab needs, build rackboot, build the lab's boot payload
# (Debian kernel + small installer initrd + disk image), fetch the iPXE firmware,
# then validate the sample lab config and show what node50 would be served.
# (The full virtual reimage, `rackboot reimage node50 --wait` in the QEMU lab,
# lands with the runs issue; see README "Status".)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
step() { printf '\n==> %s\n' "$*"; }

step "dependencies (apt, pykickstart venv)"
$SUDO "$REPO/scripts/install-deps.sh"
step "build rackboot"
cargo build --release
step "lab boot payload (tests/lab/build-boot.sh) and iPXE firmware"
$SUDO "$REPO/tests/lab/build-boot.sh"
"$REPO/scripts/fetch-firmware.sh"
B="$REPO/target/release/rackboot"
step "rackboot check"
"$B" check --config "$REPO"
step "rackboot render node50 --kind ipxe"
"$B" render node50 --kind ipxe --config "$REPO"
step "rackboot render node50 --kind kickstart (the lab's installer script)"
"$B" render node50 --kind kickstart --config "$REPO"
step "rackboot render web70 --kind kickstart (RHEL 9), validated by ksvalidator"
"$B" render web70 --kind kickstart --config "$REPO" > "$REPO/.lab/web70.ks"
"$REPO/.lab/venv/bin/ksvalidator" -v RHEL9 "$REPO/.lab/web70.ks" && echo "ksvalidator: ok"
