#!/bin/bash
# bench/console-bench.sh [PAIRS] - what capturing the serial console costs a reimage (issue 17:
# "target: none measurable"). The whole lab reimage, blank disk to SSH from the disk (bios,
# virtio-net, iPXE ROM, node50 on lab-disk, VM_RESET=cold: the reboot goes straight to the disk,
# as in bench/reimage-bench.sh's "disk" variant), in two variants:
#
#   on    the default: the engine opens an IPMI SOL session at power-on and writes everything
#         the console prints into the run's console.log until the run ends
#   off   `[runs] console_max_bytes = 0` in the lab's rackboot.toml: no SOL session at all
#
# PAIRS rounds (default 3), each runs both variants on a fresh lab (blank disk), in an order that
# alternates between rounds (on,off / off,on ...), so drift of the host (the lead's builds on a
# shared machine) falls on both alike. Figures: power-on -> SSH from the disk per run (the run's
# timeline, from its first dhcp entry to "SSH and service ports up", as reimage-bench.sh), both
# means, and the paired difference on - off with its 95 % interval (t distribution). Each run's
# console log is checked: "on" must have captured lines, "off" none. Every wait is bounded
# (reimage --timeout 10m, up.sh's own bounds). Runs one lab: nothing else may run qemu-system.
set -uo pipefail
source "$(cd "$(dirname "$0")/../tests/lab" && pwd)/lab.env"
source "$LAB/lib.sh"
PAIRS="${1:-3}"
case "$PAIRS" in ''|*[!0-9]*) echo "usage: $0 [PAIRS]" >&2; exit 2;; esac
[ "$PAIRS" -ge 1 ] && [ "$PAIRS" -le 20 ] || { echo "PAIRS: 1..20" >&2; exit 2; }
if pgrep -f qemu-system >/dev/null; then
  echo "console-bench: a qemu-system is running (another lab?); refusing to start" >&2; exit 1
fi
[ -n "${RACKBOOT_BIN:-}" ] || (cd "$REPO" && nice -n 15 cargo build --release --quiet) || exit 1
BIN="$(readlink -f "${RACKBOOT_BIN:-$REPO/target/release/rackboot}")"
OUT=$(mktemp -d /tmp/console-bench.XXXXXX)
CONF="$OUT/config"
trap '"$LAB/down.sh" >/dev/null 2>&1' EXIT
rb() { ip netns exec "$NS_PROV" "$BIN" --config "$CONF" "$@"; }

# one VARIANT: prints "TOTAL <s>" and "CONSOLE <lines>" of one reimage on a fresh lab.
one() {
  local v="$1"
  "$LAB/down.sh" >/dev/null 2>&1
  if [ "$v" = off ]; then
    lab_config "$CONF" "$OUT/data" '/^\[runs\]/a console_max_bytes = 0'
    grep -q '^console_max_bytes = 0' "$CONF/rackboot.toml" || { echo "no [runs] section to switch off" >&2; return 1; }
  else
    lab_config "$CONF" "$OUT/data"
  fi
  VM_FW=bios LAB_NODES=1 VM_DISK=256M VM_RESET=cold LAB_CONFIG="$CONF" RACKBOOT_BIN="$BIN" \
    "$LAB/up.sh" bios > "$OUT/up-$v.log" 2>&1 || { cat "$OUT/up-$v.log" >&2; return 1; }
  rb reimage node50 --wait --timeout 10m > "$OUT/run-$v.out" 2>&1 || { cat "$OUT/run-$v.out" >&2; return 1; }
  local id; id=$(grep -o 'run-[0-9]*-[0-9a-f]*' "$OUT/run-$v.out" | head -1)
  rb runs show "$id" --json | python3 -c '
import json, sys
tl = json.load(sys.stdin)["timeline"]
on = next(e["t"] for e in tl if e["state"] == "dhcp")
ssh = next(e["t"] for e in tl if e["detail"].endswith("SSH and service ports up"))
print("TOTAL %.2f" % (ssh - on))'
  # "runs logs ID console" prints the captured lines (none when capture is off)
  echo "CONSOLE $(rb runs logs "$id" console 2>/dev/null | grep -c .)"
}

declare -A TOT
for r in $(seq "$PAIRS"); do
  order=(on off); [ $((r % 2)) = 0 ] && order=(off on)
  for v in "${order[@]}"; do
    res=$(one "$v") || { echo "round $r $v: failed (logs in $OUT)"; exit 1; }
    t=$(sed -n 's/^TOTAL //p' <<<"$res"); n=$(sed -n 's/^CONSOLE //p' <<<"$res")
    [ -n "$t" ] || { echo "round $r $v: no figure (logs in $OUT)"; exit 1; }
    if [ "$v" = on ] && [ "${n:-0}" -lt 10 ]; then echo "round $r on: only ${n:-0} console lines captured"; exit 1; fi
    if [ "$v" = off ] && [ "${n:-0}" -gt 0 ]; then echo "round $r off: $n console lines captured with capture off"; exit 1; fi
    TOT[$v]="${TOT[$v]:-} $t"
    echo "round $r  $(printf '%-3s' "$v")  power-on -> SSH from disk  ${t} s  (console lines: $n)"
  done
done
echo
python3 - "${TOT[on]}" "${TOT[off]}" <<'PY'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
for name, xs in (("capture on ", on), ("capture off", off)):
    print("%s  mean %6.2f s  (%s)" % (name, statistics.mean(xs), " ".join("%.2f" % x for x in xs)))
d = [a - b for a, b in zip(on, off)]
m = statistics.mean(d)
if len(d) < 2:
    print("on - off: %+.2f s (one pair: no interval)" % m)
    sys.exit(0)
t95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}.get(len(d) - 1, 2.0)
h = t95 * statistics.stdev(d) / len(d) ** 0.5
print("on - off, per round: mean %+.2f s, 95%% interval [%+.2f, %+.2f] s (%d pairs)%s"
      % (m, m - h, m + h, len(d), "; no measurable overhead" if m - h <= 0 <= m + h else ""))
PY
echo "(logs: $OUT)"
