#!/bin/bash
# bench/reimage-bench.sh [ROUNDS] - the whole reimage in the lab, blank disk to SSH from the disk
# (bios, virtio-net, iPXE ROM, node50 on lab-disk: DHCP -> iPXE -> kernel + initrd -> installer
# writes the disk -> callback -> reboot -> the installed system's SSH), paired and alternating:
#
#   network  the reboot after the install goes through the network: DHCP, iPXE, the local-boot
#            script, then the disk. The firmware ignores the BMC's boot device on the OS's own
#            reboot (VM_RESET=warm), which is what every rackboot reimage did before the engine
#            set the boot device to disk at the install-done callback.
#   disk     the firmware honours the BMC's boot device on every boot (VM_RESET=cold, as real
#            servers do): the reboot goes straight to the disk.
#   glue     (BENCH_GLUE=1, default) the shell-glue baseline: dnsmasq + the stand-in HTTP server
#            + ipmitool (tests/lab/e2e-standin.sh in disk mode), the stack rackboot replaces.
#
# Each round runs every variant once, in an order that alternates between rounds, each on a
# fresh lab (blank disk). Figures: power-on -> SSH from the disk, per round and per variant; the
# paired difference disk - network with a 95 % interval (t distribution); the ratio disk/network;
# and rackboot's per-phase breakdown (mean seconds per phase, from each run's stored timeline).
# Power-on for rackboot is its timeline's "power cycled" (the BMC said on), for the glue
# ipmitool's return: both are the moment the BMC reports the machine on.
set -uo pipefail
source "$(cd "$(dirname "$0")/../tests/lab" && pwd)/lab.env"
source "$LAB/lib.sh"
ROUNDS="${1:-5}"
GLUE="${BENCH_GLUE:-1}"
[ -n "${RACKBOOT_BIN:-}" ] || (cd "$REPO" && cargo build --release --quiet) || exit 1
BIN="$(readlink -f "${RACKBOOT_BIN:-$REPO/target/release/rackboot}")"
OUT=$(mktemp -d /tmp/reimage-bench.XXXXXX)
CONF="$OUT/config"
trap '"$LAB/down.sh" >/dev/null 2>&1' EXIT

# rackboot's config: the repository's, with absolute paths and a fresh data dir per lab.
make_config() { lab_config "$CONF" "$OUT/data"; }
rb() { ip netns exec "$NS_PROV" "$BIN" --config "$CONF" "$@"; }

# one_rackboot VM_RESET: prints "TOTAL <s>" and "PHASE <name> <s>" lines of one reimage.
one_rackboot() {
  "$LAB/down.sh" >/dev/null 2>&1
  make_config
  VM_FW=bios LAB_NODES=1 VM_DISK=256M VM_RESET="$1" LAB_CONFIG="$CONF" RACKBOOT_BIN="$BIN" \
    "$LAB/up.sh" bios > "$OUT/up.log" 2>&1 || { cat "$OUT/up.log" >&2; return 1; }
  rb reimage node50 --wait --timeout 10m > "$OUT/run.out" 2>&1 || { cat "$OUT/run.out" >&2; return 1; }
  local id; id=$(grep -o 'run-[0-9]*-[0-9a-f]*' "$OUT/run.out" | head -1)
  rb runs show "$id" --json | python3 -c '
import json, sys
tl = json.load(sys.stdin)["timeline"]
# a phase lasts from its first timeline entry to the next phase'"'"'s first entry
firsts = []
for e in tl:
    if not firsts or firsts[-1][0] != e["state"]:
        firsts.append((e["state"], e["t"]))
on = next(t for s, t in firsts if s == "dhcp")
ssh = next(e["t"] for e in tl if e["detail"].endswith("SSH and service ports up"))
print("TOTAL %.2f" % (ssh - on))
for (s, t), (_, t2) in zip(firsts, firsts[1:]):
    if s in ("queued", "locked") or s.startswith("stage"):
        continue
    print("PHASE %s %.2f" % (s, t2 - t))
path = "disk" if any("straight to the local disk" in e["detail"] for e in tl) else "network"
print("PATH", path)'
}

one_glue() {
  "$LAB/down.sh" >/dev/null 2>&1
  VM_DISK=256M VM_RESET=cold LAB_NODES=1 "$LAB/e2e-standin.sh" bios > "$OUT/glue.out" 2>&1 \
    || { tail -20 "$OUT/glue.out" >&2; return 1; }
  sed -n 's/^RESULT .*-> :22 (from disk) \([0-9.]*\) s.*/TOTAL \1/p' "$OUT/glue.out"
}

variants=(network disk); [ "$GLUE" = 1 ] && variants+=(glue)
declare -A TOT
: > "$OUT/phases"
for r in $(seq "$ROUNDS"); do
  order=("${variants[@]}")
  if [ $((r % 2)) = 0 ]; then order=(); for ((i=${#variants[@]}-1; i>=0; i--)); do order+=("${variants[$i]}"); done; fi
  for v in "${order[@]}"; do
    case $v in
      network) res=$(one_rackboot warm) ;;
      disk) res=$(one_rackboot cold) ;;
      glue) res=$(one_glue) ;;
    esac || { echo "round $r $v: failed (logs in $OUT)"; exit 1; }
    t=$(sed -n 's/^TOTAL //p' <<<"$res")
    [ -n "$t" ] || { echo "round $r $v: no figure (logs in $OUT)"; exit 1; }
    path=$(sed -n 's/^PATH //p' <<<"$res")
    if [ "$v" != glue ] && [ "$path" != "$v" ]; then echo "round $r $v: the reboot took the $path path"; exit 1; fi
    TOT[$v]="${TOT[$v]:-} $t"
    sed -n "s/^PHASE /$v /p" <<<"$res" >> "$OUT/phases"
    echo "round $r  $(printf '%-8s' "$v") power-on -> SSH from disk  ${t} s"
  done
done
echo
python3 - "$OUT/phases" "${TOT[network]}" "${TOT[disk]}" "${TOT[glue]:-}" <<'PY'
import statistics, sys
from collections import defaultdict
phases_file, net, disk, glue = sys.argv[1:5]
net = [float(x) for x in net.split()]
disk = [float(x) for x in disk.split()]
glue = [float(x) for x in glue.split()]
def t95(n): return {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}.get(n - 1, 2.0)
def interval(d):
    m = statistics.mean(d)
    if len(d) < 2: return m, float("nan"), float("nan")
    h = t95(len(d)) * statistics.stdev(d) / len(d) ** 0.5
    return m, m - h, m + h
for name, xs in (("network", net), ("disk", disk), ("glue", glue)):
    if xs:
        print("%-8s mean %6.2f s  median %6.2f s  (%s)" % (name, statistics.mean(xs), statistics.median(xs), " ".join("%.2f" % x for x in xs)))
print()
d = [b - a for a, b in zip(net, disk)]
m, lo, hi = interval(d)
print("disk - network, per round: mean %+.2f s, 95%% interval [%+.2f, %+.2f] s (%d rounds)" % (m, lo, hi, len(d)))
r = [b / a for a, b in zip(net, disk)]
m, lo, hi = interval(r)
print("disk / network, per round: mean %.3fx, 95%% interval [%.3f, %.3f]x (target <= 0.85x)" % (m, lo, hi))
if glue:
    r = [b / a for a, b in zip(glue, disk)]
    m, lo, hi = interval(r)
    print("disk / glue,    per round: mean %.3fx, 95%% interval [%.3f, %.3f]x" % (m, lo, hi))
print()
what = {
    "bootdev": "rackboot: netboot switch",
    "power": "BMC: boot device + power cycle (IPMI round trips, QEMU start)",
    "dhcp": "firmware: POST, NIC ROM, DHCP (SeaBIOS + iPXE: fixed)",
    "kernel": "iPXE: script, kernel + initrd over HTTP",
    "config": "installer kernel boot to its config fetch (OS boot: fixed)",
    "install": "installer writes the disk, calls back",
    "reboot": "callback -> back up (firmware + disk boot, or the network path)",
    "ports": "the installed system boots to SSH (network path only)",
}
ph = defaultdict(lambda: defaultdict(list))
for line in open(phases_file):
    v, p, s = line.split()
    ph[p][v].append(float(s))
print("per phase, mean seconds      network     disk   what it is")
for p in ["bootdev", "power", "dhcp", "kernel", "config", "install", "reboot", "ports"]:
    if p in ph:
        a = ph[p].get("network", []); b = ph[p].get("disk", [])
        f = lambda xs: "%8.2f" % statistics.mean(xs) if xs else "       -"
        print("  %-24s %s %s   %s" % (p, f(a), f(b), what.get(p, "")))
PY
echo "(logs: $OUT)"
