#!/bin/bash
# bench/lab-bench.sh [ROUNDS] - power-on -> SSH of the lab machine (bios, virtio-net, iPXE ROM,
# diskless installer: DHCP -> iPXE -> kernel + initrd -> ks -> callback -> sshd), under
#   (a) the rig's dnsmasq + stand-in HTTP server (LAB_SERVER=standin) and
#   (b) rackboot serve (LAB_SERVER=rackboot; node50's netboot switched on through the API),
# alternating, ROUNDS times each (default 3), in the same run; plus rackboot's RSS idle and after
# the boots. Power on with ipmitool for both (the same BMC path); :22 polled from the provisioner.
set -uo pipefail
source "$(cd "$(dirname "$0")/../tests/lab" && pwd)/lab.env"
source "$LAB/lib.sh"
ROUNDS="${1:-3}"
# The release build (what a lab runs); built if missing.
[ -n "${RACKBOOT_BIN:-}" ] || [ -x "$REPO/target/release/rackboot" ] || (cd "$REPO" && cargo build --release --quiet)
BIN="$(readlink -f "${RACKBOOT_BIN:-$REPO/target/release/rackboot}")"
trap '"$LAB/down.sh" >/dev/null 2>&1' EXIT
declare -A T
# rackboot's config: the repository's, with absolute paths and node50 on the diskless profile.
CONF=$(mktemp -d); trap '"$LAB/down.sh" >/dev/null 2>&1; rm -rf "$CONF"' EXIT
mkdir -p "$CONF/tests/lab"; cp -r "$REPO/profiles" "$REPO/kickstarts" "$CONF/"; cp "$LAB/bmc-password" "$CONF/tests/lab/"
sed '0,/profile = "lab-disk"/s//profile = "lab"/' "$REPO/systems.toml" > "$CONF/systems.toml"
sed -e "s#^boot_dir = .*#boot_dir = \"$LAB_BOOT\"#" -e "s#^firmware_dir = .*#firmware_dir = \"$LAB_FIRMWARE\"#" \
    -e "s#^data_dir = .*#data_dir = \"$CONF/data\"#" "$REPO/rackboot.toml" > "$CONF/rackboot.toml"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null; }
for r in $(seq "$ROUNDS"); do
  for srv in standin rackboot; do
    "$LAB/down.sh" >/dev/null 2>&1
    LAB_SERVER=$srv RACKBOOT_BIN="$BIN" LAB_CONFIG="$CONF" VM_FW=bios "$LAB/up.sh" bios > /tmp/lab-bench-up.log 2>&1 \
      || { cat /tmp/lab-bench-up.log; exit 1; }
    if [ $srv = rackboot ]; then
      pid=$(cat "$LAB_WORK/run/server.pid")
      idle=$(rss "$pid")
      tok=$(cat "$CONF/data/api-token")
      ip netns exec "$NS_PROV" curl -sf -X PUT -H "Authorization: Bearer $tok" \
        -d '{"enabled":true}' -H 'Content-Type: application/json' \
        http://127.0.0.1:9080/api/v1/systems/node50/netboot >/dev/null || { echo "netboot switch failed"; exit 1; }
    fi
    lab_ipmi 0 chassis bootdev pxe >/dev/null
    lab_mark T_ON; export LAB_T0=$T_ON
    lab_ipmi 0 chassis power on >/dev/null
    t=$(lab_wait_ssh 0 120) || { echo "$srv: no SSH within 120 s"; exit 1; }
    T[$srv]="${T[$srv]:-} $t"
    line="round $r  $srv  power-on -> :22  ${t} s"
    if [ $srv = rackboot ]; then line+="  (rackboot RSS idle ${idle} KiB, after boot $(rss "$pid") KiB)"; fi
    echo "$line"
  done
done
echo
for srv in standin rackboot; do
  echo "$srv: ${T[$srv]}  -> median $(printf '%s\n' ${T[$srv]} | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}') s"
done
