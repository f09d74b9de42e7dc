#!/usr/bin/env bash
# scripts/quickstart.sh - the README's "main job" command: a real reimage in the project's lab.
#   1. install what the lab needs (apt, pykickstart venv), build rackboot, build the lab's boot
#      payload (Debian kernel + small installer initrd + bootable disk image), fetch iPXE firmware;
#   2. `rackboot check` the sample lab config;
#   3. start the lab (network namespaces, a QEMU machine with a blank disk behind an ipmi_sim BMC)
#      with `rackboot serve` as its only DHCP/TFTP/HTTP server;
#   4. `rackboot reimage node50 --wait --junit`: rackboot's own IPMI driver sets PXE and powers
#      the machine, it netboots the installer, writes its disk, calls back, reboots to its own
#      disk, answers SSH, and the profile's config and test stages run over SSH;
#   5. print the timeline and tear the lab down.
# VM_FW=uefi for OVMF. Run as root (network namespaces). Exit code = rackboot reimage's.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
SUDO=""; SUDO_E=""; [ "$(id -u)" = 0 ] || { SUDO="sudo"; SUDO_E="sudo -E"; }
step() { printf '\n==> %s\n' "$*"; }
FW="${VM_FW:-bios}"

step "dependencies (apt, pykickstart venv)"
$SUDO "$REPO/scripts/install-deps.sh"
step "build rackboot"
cargo build --release
B="$REPO/target/release/rackboot"
step "lab boot payload and iPXE firmware"
$SUDO "$REPO/tests/lab/build-boot.sh"
"$REPO/scripts/fetch-firmware.sh"
step "rackboot check"
"$B" check --config "$REPO"

step "start the lab ($FW, disk mode) with rackboot serve as the provisioner"
trap '$SUDO "$REPO/tests/lab/down.sh" >/dev/null 2>&1' EXIT
VM_DISK=256M RACKBOOT_BIN="$B" $SUDO_E "$REPO/tests/lab/up.sh" "$FW"

step "rackboot reimage node50 --wait --junit .lab/node50-junit.xml"
set +e
$SUDO ip netns exec rbprov "$B" --config "$REPO" reimage node50 --wait \
  --junit "$REPO/.lab/node50-junit.xml" --timeout 15m
rc=$?
set -e
step "what the machine says"
$SUDO ip netns exec rbprov ssh -i "$REPO/.lab/keys/lab_ed25519" -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR root@10.77.0.50 \
  'cat /etc/rig-provisioned /etc/rackboot-configured' || true
exit $rc
