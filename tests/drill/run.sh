#!/bin/bash
# tests/drill/run.sh [drill.py options] - the HA drill (issue 16) in network namespaces.
#
#   rbdr-hub: bridges brA (segment A, 10.61/16), brB (segment B, 10.62/16), brM (mgmt, 10.60.0/24)
#   rbdr-d1, rbdr-d2: rackboot on segment A (domain seg-a; DHCP pool halves 1/2 and 2/2)
#   rbdr-d3: rackboot on segment B (domain seg-b)
#   rbdr-ma, rbdr-mb: tests/drill/segment.py: the segment's simulated machines and their
#                     Redfish BMCs (10.6x.3.N), machines at 10.6x.2.N, unknown MACs in A's pool
#   rbdr-db: PostgreSQL (scripts/pg-tmp.sh as nobody) at 10.60.0.2
#   rbdr-ctl: tests/drill/drill.py at 10.60.0.1: runs, kills, counts
# Every daemon's eth0 is on its segment, mgmt0 on brM (API 10.60.0.1N:9080, PostgreSQL).
# Env: RACKBOOT_BIN (default target/debug/rackboot), DRILL_WORK (/tmp/rackboot-drill), KEEP=1.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
W="${DRILL_WORK:-/tmp/rackboot-drill}"
BIN="${RACKBOOT_BIN:-$REPO/target/debug/rackboot}"
[ -x "$BIN" ] || { echo "run.sh: no rackboot binary at $BIN (cargo build first)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 2; }
NSS="rbdr-hub rbdr-ctl rbdr-db rbdr-d1 rbdr-d2 rbdr-d3 rbdr-ma rbdr-mb"

down() {
  for ns in $NSS; do
    if ip netns pids "$ns" >/dev/null 2>&1; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    fi
  done
  sleep 0.3
  for ns in $NSS; do ip netns del "$ns" 2>/dev/null || true; done
}
cleanup() { [ "${KEEP:-0}" = 1 ] || down; }
down
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W"

for ns in $NSS; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
H="ip -n rbdr-hub"
for br in brA brB brM; do $H link add "$br" type bridge stp_state 0 forward_delay 0; $H link set "$br" up; done
# veth NAME_IN_NS NS HUB_END BRIDGE ADDR/PREFIX
link() {
  ip link add "$3" netns rbdr-hub type veth peer name "$1" netns "$2"
  $H link set "$3" master "$4"; $H link set "$3" up
  ip -n "$2" addr add "$5" dev "$1"; ip -n "$2" link set "$1" up
}
link mgmt0 rbdr-ctl m-ctl brM 10.60.0.1/24
link mgmt0 rbdr-db  m-db  brM 10.60.0.2/24
link eth0  rbdr-d1  a-d1  brA 10.61.0.11/16
link mgmt0 rbdr-d1  m-d1  brM 10.60.0.11/24
link eth0  rbdr-d2  a-d2  brA 10.61.0.12/16
link mgmt0 rbdr-d2  m-d2  brM 10.60.0.12/24
link eth0  rbdr-d3  b-d3  brB 10.62.0.13/16
link mgmt0 rbdr-d3  m-d3  brM 10.60.0.13/24
link eth0  rbdr-ma  a-ma  brA 10.61.0.100/16
link eth0  rbdr-mb  b-mb  brB 10.62.0.100/16

ip netns exec rbdr-ctl env RACKBOOT_BIN="$BIN" DRILL_WORK="$W" REPO="$REPO" \
  python3 "$REPO/tests/drill/drill.py" "$@"
