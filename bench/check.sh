#!/usr/bin/env bash
# bench/check.sh [N] - time `rackboot check` on an N-system inventory (default 5000).
# Generates a copy of the sample config with N systems spread over the sample's
# profiles (every template rendered for every system, as check always does),
# runs the release binary 7 times and prints min / median / max wall time.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-5000}"
BIN="${RACKBOOT_BIN:-$REPO/target/release/rackboot}"
[ -x "$BIN" ] || (cd "$REPO" && cargo build --release --quiet)
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
cp -r "$REPO/profiles" "$REPO/kickstarts" "$REPO/rackboot.toml" "$W/"
mkdir -p "$W/.lab/boot" "$W/tests/lab"
cp "$REPO/tests/lab/bmc-password" "$W/tests/lab/"
for f in vmlinuz initrd.img; do head -c 4096 /dev/zero > "$W/.lab/boot/$f"; done
python3 - "$N" > "$W/systems.toml" <<'PY'
import sys
n = int(sys.argv[1])
profiles = ["lab", "lab-disk", "rhel9", "rhel9-web", "ubuntu2404", "debian12"]
for i in range(n):
    a, b = divmod(i, 250)
    print(f'[systems.n{i:05d}]\nmacs = ["52:54:{a>>8:02x}:{a&255:02x}:{b:02x}:01"]\n'
          f'ip = "10.{100 + a // 256}.{a % 256}.{b + 1}"\ndomain = "lab.example"\n'
          f'profile = "{profiles[i % len(profiles)]}"\n'
          f'[systems.n{i:05d}.bmc]\nkind = "ipmi"\naddress = "10.200.{a % 256}.{b + 1}"\n'
          f'username = "admin"\npassword_file = "tests/lab/bmc-password"\n')
PY
times=()
for _ in 1 2 3 4 5 6 7; do
  s=$(date +%s%N)
  "$BIN" check --config "$W" > "$W/out.txt"
  e=$(date +%s%N)
  times+=($(( (e - s) / 1000000 )))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
rss=$( { /usr/bin/time -f '%M' "$BIN" check --config "$W" > /dev/null; } 2>&1 | tail -1 )
echo "rackboot check, $N systems x 6 profiles (every template rendered per system):"
echo "  wall ms: min ${sorted[0]}  median ${sorted[3]}  max ${sorted[6]}  (7 runs; target < 1000)"
echo "  max RSS: ${rss} KiB"
tail -1 "$W/out.txt"
