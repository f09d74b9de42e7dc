#!/usr/bin/env bash
# bench/dns-bench.sh - rackboot's DNS server (`[dns]`) vs dnsmasq answering the
# same hosts on loopback, queried by dnsperf (Debian's `dnsperf`):
#   1. throughput: dnsperf with 100 queries outstanding for DUR seconds:
#      queries/s, average latency, lost queries;
#   2. latency at a fixed rate (RATE queries/s, per-query times from
#      `dnsperf -v`): p50 / p99 / max;
# and rackboot's RSS (VmRSS: after start, peak under load, at the end).
# The hosts: an N-system inventory (default 1000, domain lab.example) for
# rackboot, and the same names as an --addn-hosts file for dnsmasq
# (`--local=/lab.example/`: authoritative for the zone, nothing forwarded).
# The query mix: forward names (A), reverse names (PTR) and 1 in 10 unknown
# names in the zone (NXDOMAIN), in a fixed shuffled order.
# Both servers pinned to CPU 0 and dnsperf to CPU 1 (taskset); each load runs
# ROUNDS times per server, alternating which goes first (the host may have
# other load). Release build. Needs dnsperf, dnsmasq-base and dig
# (scripts/install-deps.sh).
# Env: N (systems, default 1000), DUR (seconds per run, default 10), RATE
# (default 5000), ROUNDS (default 3), RACKBOOT_BIN (skips the build).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
N="${N:-1000}"; DUR="${DUR:-10}"; RATE="${RATE:-5000}"; ROUNDS="${ROUNDS:-3}"
BIN="${RACKBOOT_BIN:-$REPO/target/release/rackboot}"
for t in dnsperf dig; do command -v $t >/dev/null || { echo "needs $t (scripts/install-deps.sh)" >&2; exit 1; }; done
DNSMASQ="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
[ -x "$DNSMASQ" ] || { echo "needs dnsmasq (apt-get install dnsmasq-base)" >&2; exit 1; }
[ -n "${RACKBOOT_BIN:-}" ] || (cd "$REPO" && nice -n 10 cargo build --release --quiet)
PIN0=""; PIN1=""
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then PIN0="taskset -c 0"; PIN1="taskset -c 1"; fi
W="$(mktemp -d)"; PID=""; DPID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
  wait 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); HTTP=$(port); RB=$(port); DM=$(port)

# The inventory, dnsmasq's hosts file and the query file, from one generator.
mkdir -p "$W/.lab/boot" "$W/tests/lab"
cp -r "$REPO/profiles" "$REPO/kickstarts" "$W/"
cp "$REPO/tests/lab/bmc-password" "$W/tests/lab/"
for f in vmlinuz initrd.img; do head -c 4096 /dev/zero > "$W/.lab/boot/$f"; done
python3 - "$N" "$W" <<'PY'
import random, sys
n, w = int(sys.argv[1]), sys.argv[2]
sysf, hosts, queries = [], [], []
for i in range(n):
    a, b = divmod(i, 250)
    ip = f"10.{100 + a // 256}.{a % 256}.{b + 1}"
    name = f"n{i:05d}"
    sysf.append(f'[systems.{name}]\nmacs = ["52:54:{a>>8:02x}:{a&255:02x}:{b:02x}:01"]\n'
                f'ip = "{ip}"\ndomain = "lab.example"\nprofile = "lab"\n')
    hosts.append(f"{ip} {name}.lab.example {name}\n")
    queries.append(f"{name}.lab.example A\n")
    queries.append(".".join(reversed(ip.split("."))) + ".in-addr.arpa PTR\n")
for i in range(max(1, len(queries) // 9)):
    queries.append(f"unknown{i}.lab.example A\n")
random.Random(1).shuffle(queries)
open(f"{w}/systems.toml", "w").write("".join(sysf))
open(f"{w}/hosts", "w").write("".join(hosts))
open(f"{w}/queries", "w").write("".join(queries))
PY

# rackboot: DNS only (DHCP off, TFTP off, no power polling).
sed -e "s/^address = .*/address = \"127.0.0.1\"/" -e "s/^interface = .*//" \
    -e "s/^http_port = .*/http_port = $HTTP/" -e "s/^listen = .*/listen = \"127.0.0.1:$API\"/" \
    -e "s/^mode = .*/mode = \"off\"/" "$REPO/rackboot.toml" > "$W/rackboot.toml"
sed -i 's/^\[tftp\]/[tftp]\nenabled = false/; s/^\[api\]/[api]\npower_poll_secs = 0/' "$W/rackboot.toml"
printf '\n[dns]\nenabled = true\nlisten = "127.0.0.1:%s"\nzone = "lab.example"\nttl = 60\noutside_zone = "refuse"\n' "$RB" >> "$W/rackboot.toml"
RACKBOOT_LOG=warn $PIN0 "$BIN" serve --config "$W" > "$W/daemon.log" 2>&1 & PID=$!

# dnsmasq on the same names, as the current user, no other source of names.
$PIN0 "$DNSMASQ" --no-daemon --conf-file=/dev/null --port="$DM" --listen-address=127.0.0.1 \
  --bind-interfaces --no-resolv --no-hosts --addn-hosts="$W/hosts" --domain=lab.example \
  --local=/lab.example/ --user="$(id -un)" --pid-file= --local-ttl=60 \
  > "$W/dnsmasq.log" 2>&1 & DPID=$!

ask() { dig @127.0.0.1 -p "$1" +short +time=1 +tries=1 "${@:2}" 2>/dev/null | grep -v '^;' || true; }
for _ in $(seq 600); do
  kill -0 "$PID" 2>/dev/null || { cat "$W/daemon.log" >&2; echo "rackboot exited" >&2; exit 1; }
  [ "$(ask "$RB" n00000.lab.example)" = 10.100.0.1 ] && [ "$(ask "$DM" n00000.lab.example)" = 10.100.0.1 ] && break
  sleep 0.1
done
# Both give the same answers before anything is measured.
last=$(printf 'n%05d' $((N - 1)))
for q in "n00000.lab.example" "$last.lab.example" "-x 10.100.0.1" "unknown0.lab.example"; do
  # shellcheck disable=SC2086
  a=$(ask "$RB" $q); b=$(ask "$DM" $q)
  [ "$a" = "$b" ] || { echo "answers differ for $q: rackboot '$a', dnsmasq '$b'" >&2; cat "$W/daemon.log" "$W/dnsmasq.log" >&2; exit 1; }
done
for s in "$RB" "$DM"; do
  st=$(dig @127.0.0.1 -p "$s" +time=1 +tries=1 unknown0.lab.example | grep -o 'status: [A-Z]*')
  [ "$st" = "status: NXDOMAIN" ] || { echo "port $s: unknown name gave '$st'" >&2; exit 1; }
done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
RSS_START=$(rss); PEAK=$RSS_START
sample_rss() { while kill -0 "$1" 2>/dev/null; do r=$(rss); [ "$r" -gt "$(cat "$W/peak")" ] && echo "$r" > "$W/peak"; sleep 0.5; done; }
echo "$PEAK" > "$W/peak"

# One dnsperf run; appends "qps avg_ms lost" or "p50 p99 max" (ms) to $W/<server>.<kind>.
run() { # server port kind
  local out="$W/$1.$3.out"
  if [ "$3" = tput ]; then
    $PIN1 dnsperf -s 127.0.0.1 -p "$2" -d "$W/queries" -l "$DUR" -q 100 > "$out" 2>&1 & local p=$! sp=""
    if [ "$1" = rackboot ]; then sample_rss "$p" & sp=$!; fi
    wait "$p"; [ -z "$sp" ] || wait "$sp"
    awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4*1000} /Queries lost/ {lost=$3}
         END {printf "%.0f %.3f %s\n", q, l, lost}' "$out" >> "$W/$1.tput"
  else
    $PIN1 dnsperf -s 127.0.0.1 -p "$2" -d "$W/queries" -l "$DUR" -Q "$RATE" -v > "$out" 2>&1 & local p=$! sp=""
    if [ "$1" = rackboot ]; then sample_rss "$p" & sp=$!; fi
    wait "$p"; [ -z "$sp" ] || wait "$sp"
    awk '$1 == ">" {print $NF * 1000}' "$out" | sort -n > "$W/lat"
    awk '{a[NR]=$1} END {if (NR == 0) {print "- - -"; exit}
         m = int(NR * 0.5); if (m < 1) m = 1; p = int(NR * 0.99); if (p < 1) p = 1
         printf "%.3f %.3f %.3f\n", a[m], a[p], a[NR]}' "$W/lat" >> "$W/$1.lat"
  fi
}
for kind in tput lat; do
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run rackboot "$RB" $kind; run dnsmasq "$DM" $kind
    else run dnsmasq "$DM" $kind; run rackboot "$RB" $kind; fi
  done
done
RSS_END=$(rss); PEAK=$(cat "$W/peak")

echo "DNS on loopback: $N systems (lab.example), $(wc -l < "$W/queries") queries in the mix (A, PTR, 10% NXDOMAIN)"
echo "dnsperf ${DUR}s per run, $ROUNDS rounds per server alternating; servers ${PIN0:-unpinned}, dnsperf ${PIN1:-unpinned}"
echo
printf '%-10s %-34s %-24s %s\n' server "queries/s (100 outstanding)" "avg latency ms" "lost"
for s in rackboot dnsmasq; do
  printf '%-10s %-34s %-24s %s\n' "$s" \
    "$(awk '{printf "%s%s", sep, $1; sep=" / "}' "$W/$s.tput")" \
    "$(awk '{printf "%s%s", sep, $2; sep=" / "}' "$W/$s.tput")" \
    "$(awk '{printf "%s%s", sep, $3; sep=" / "}' "$W/$s.tput")"
done
echo
printf '%-10s %s\n' server "latency at $RATE queries/s, ms: p50 p99 max (per round)"
for s in rackboot dnsmasq; do
  printf '%-10s %s\n' "$s" "$(awk '{printf "%s%s %s %s", sep, $1, $2, $3; sep=" | "}' "$W/$s.lat")"
done
echo
echo "rackboot RSS: ${RSS_START} KiB after start, peak ${PEAK} KiB under load, ${RSS_END} KiB at the end"
