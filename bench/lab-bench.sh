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
# Seconds from T0 until IP:22 accepts a connection: a connect attempt every 20 ms, each
# bounded by 100 ms (lab_wait_ssh's 0.5 s attempts quantise the figure to ~0.7 s).
wait_ssh_fine() {  # wait_ssh_fine IP T0
  ip netns exec "$NS_PROV" python3 - "$1" "$2" <<'PY'
import socket, sys, time
ip, t0 = sys.argv[1], float(sys.argv[2])
end = time.time() + 120
while time.time() < end:
    s = socket.socket()
    s.settimeout(0.1)
    try:
        s.connect((ip, 22))
        print("%.2f" % (time.time() - t0))
        sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.02)
sys.exit(1)
PY
}
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
    t=$(wait_ssh_fine "$(lab_node_ip 0)" "$T_ON") || { echo "$srv: no SSH within 120 s"; exit 1; }
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
# Rounds alternate the two servers, so compare them round by round: the mean of
# (rackboot - standin) with a 95% interval (t distribution); "not slower" holds
# when the interval's upper end is near zero or below.
python3 - "${T[standin]}" "${T[rackboot]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
d = [y - x for x, y in zip(a, b)]
if len(d) < 2:
    sys.exit(0)
t95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}.get(len(d) - 1, 2.0)
m, se = statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5
print("rackboot - standin, per round: mean %+.2f s, 95%% interval [%+.2f, %+.2f] s (%d rounds)"
      % (m, m - t95 * se, m + t95 * se, len(d)))
PY
