#!/usr/bin/env bash
# bench/ui-rss.sh [N] - the real daemon (release build) with an N-system
# inventory (default 5000): the machines page's server render time (its
# Server-Timing header; median of 200 sequential views, target < 100 ms) and
# the daemon's RSS idle, after 200 views and after 1,000 (target < 40 MB).
# DHCP is off and TFTP disabled; the API and boot HTTP listen on loopback
# only; BMC polling is off (no BMC is ever contacted).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-5000}"
BIN="${RACKBOOT_BIN:-$REPO/target/release/rackboot}"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release --quiet)
W="$(mktemp -d)"; PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$W"' EXIT
cp -r "$REPO/profiles" "$REPO/kickstarts" "$W/"
mkdir -p "$W/.lab/boot" "$W/tests/lab"
cp "$REPO/tests/lab/bmc-password" "$W/tests/lab/"
for f in vmlinuz initrd.img; do head -c 4096 /dev/zero > "$W/.lab/boot/$f"; done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); HTTP=$(port)
sed -e "s/^address = .*/address = \"127.0.0.1\"/" -e "s/^interface = .*//" \
    -e "s/^http_port = .*/http_port = $HTTP/" -e "s/^listen = .*/listen = \"127.0.0.1:$API\"/" \
    -e "s/^mode = .*/mode = \"off\"/" "$REPO/rackboot.toml" > "$W/rackboot.toml"
grep -q '^\[tftp\]' "$W/rackboot.toml" && sed -i 's/^\[tftp\]/[tftp]\nenabled = false/' "$W/rackboot.toml" \
  || printf '\n[tftp]\nenabled = false\n' >> "$W/rackboot.toml"
sed -i 's/^\[api\]/[api]\npower_poll_secs = 0/' "$W/rackboot.toml"
python3 - "$N" > "$W/systems.toml" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    a, b = divmod(i, 250)
    print(f'[systems.n{i:05d}]\nmacs = ["52:54:{a>>8:02x}:{a&255:02x}:{b:02x}:01"]\n'
          f'ip = "10.{100 + a // 256}.{a % 256}.{b + 1}"\nprofile = "{["lab", "lab-disk"][i % 2]}"\n'
          f'[systems.n{i:05d}.bmc]\nkind = "ipmi"\naddress = "10.200.{a % 256}.{b + 1}"\n'
          f'username = "admin"\npassword_file = "tests/lab/bmc-password"\n')
PY
"$BIN" serve --config "$W" > "$W/daemon.log" 2>&1 & PID=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$API/healthz" >/dev/null && break; sleep 0.1; done
TOK=$(cat "$W/.lab/data/api-token")   # the generated admin token (the UI needs one)
rss() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
idle=$(rss)
views() {  # N views; prints the Server-Timing render ms of each
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -D - -H "Authorization: Bearer $TOK" "http://127.0.0.1:$API/" | tr -d '\r' \
      | awk -F'dur=' 'tolower($0) ~ /^server-timing/ {print $2+0}'
  done
}
views 200 > "$W/t1"
after200=$(rss)
views 800 > /dev/null
after1000=$(rss)
med=$(sort -n "$W/t1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
p90=$(sort -n "$W/t1" | awk '{a[NR]=$1} END {print a[int(NR*0.9)]}')
echo "machines page, $N systems, release build, real daemon:"
echo "  server render ms: median $med  p90 $p90  (200 views; target < 100)"
echo "  daemon RSS MiB: idle $idle  after 200 views $after200  after 1000 views $after1000  (target < 40)"
