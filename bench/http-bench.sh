#!/usr/bin/env bash
# bench/http-bench.sh - boot files over HTTP on loopback, rackboot's `/boot/`
# vs nginx (Debian's nginx-light: sendfile on, tcp_nopush on, access_log off,
# worker_processes auto) serving the same directory:
#   1. a 1 MiB file: requests/s and latency p50/p99 (wrk, 32 connections)
#   2. a 256 MiB image, 32 parallel downloads: aggregate MiB/s (wrk, 32
#      connections, each downloading it back to back for the duration)
# and rackboot's RSS (VmRSS sampled every 0.5 s: start, peak, end) under each.
# Release build; DHCP off, TFTP disabled, loopback ports picked free.
# Each load runs ROUNDS times per server, alternating which goes first (the
# host may have other load), and the figures are over all rounds.
# Needs nginx-light and wrk (apt; scripts/install-deps.sh installs them).
# Env: DUR (seconds per wrk run, default 5),
# ROUNDS (default 4), CONNS (default 32), LOADS (default "1m image"),
# RACKBOOT_BIN (skips the build).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
LOADS="${LOADS:-1m image}"; DUR="${DUR:-5}"; ROUNDS="${ROUNDS:-4}"; CONNS="${CONNS:-32}"
BIN="${RACKBOOT_BIN:-$REPO/target/release/rackboot}"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "needs nginx-light (apt-get install nginx-light)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -n "${RACKBOOT_BIN:-}" ] || (cd "$REPO" && nice -n 10 cargo build --release --quiet)
W="$(mktemp -d)"; PID=""; NPID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$NPID" ] && kill "$NPID" 2>/dev/null
  wait 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=$(port); HTTP=$(port); NG=$(port)

# The served directory: a 1 MiB file, a 256 MiB image (and the lab profile's
# kernel/initrd names so the config checks).
BOOT="$W/.lab/boot"; mkdir -p "$BOOT" "$W/tests/lab"
head -c 1048576 /dev/urandom > "$BOOT/1m.bin"
head -c $((256 << 20)) /dev/urandom > "$BOOT/image.img"
for f in vmlinuz initrd.img; do head -c 4096 /dev/zero > "$BOOT/$f"; done
cat "$BOOT/1m.bin" "$BOOT/image.img" > /dev/null   # in the page cache for both

# rackboot
cp -r "$REPO/profiles" "$REPO/kickstarts" "$W/"
cp "$REPO/tests/lab/bmc-password" "$W/tests/lab/"
sed -e "s/^address = .*/address = \"127.0.0.1\"/" -e "s/^interface = .*//" \
    -e "s/^http_port = .*/http_port = $HTTP/" -e "s/^listen = .*/listen = \"127.0.0.1:$API\"/" \
    -e "s/^mode = .*/mode = \"off\"/" "$REPO/rackboot.toml" > "$W/rackboot.toml"
grep -q '^\[tftp\]' "$W/rackboot.toml" && sed -i 's/^\[tftp\]/[tftp]\nenabled = false/' "$W/rackboot.toml" \
  || printf '\n[tftp]\nenabled = false\n' >> "$W/rackboot.toml"
sed -i 's/^\[api\]/[api]\npower_poll_secs = 0/' "$W/rackboot.toml"
: > "$W/systems.toml"
"$BIN" serve --config "$W" > "$W/daemon.log" 2>&1 & PID=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null || { cat "$W/daemon.log"; echo "rackboot did not start" >&2; exit 1; }

# nginx, as the current user, on the same directory
mkdir -p "$W/ng/logs"
# As root nginx's workers would switch to `nobody`: keep the current user.
USERLINE=""; [ "$(id -u)" = 0 ] && USERLINE="user $(id -un);"
cat > "$W/ng/nginx.conf" <<NGX
daemon off;
$USERLINE
worker_processes auto;
pid $W/ng/nginx.pid;
error_log $W/ng/logs/error.log;
events { worker_connections 1024; }
http {
  sendfile on; tcp_nopush on; access_log off;
  client_body_temp_path $W/ng/tmp; proxy_temp_path $W/ng/tmp; fastcgi_temp_path $W/ng/tmp;
  uwsgi_temp_path $W/ng/tmp; scgi_temp_path $W/ng/tmp;
  server { listen 127.0.0.1:$NG; location /boot/ { alias $BOOT/; } }
}
NGX
"$NGINX" -c "$W/ng/nginx.conf" -p "$W/ng" > "$W/ng/stdout" 2>&1 & NPID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NG/boot/vmlinuz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$NG/boot/vmlinuz" || { cat "$W/ng/logs/error.log"; echo "nginx did not start" >&2; exit 1; }
for u in "http://127.0.0.1:$HTTP/boot/1m.bin" "http://127.0.0.1:$NG/boot/1m.bin"; do
  cmp -s <(curl -sf "$u") "$BOOT/1m.bin" || { echo "wrong bytes from $u" >&2; exit 1; }
done

cat > "$W/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.bytes,
    summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.read + summary.errors.connect + summary.errors.timeout))
end
LUA
# The process's RSS in MiB. All threads share one memory map, so when the
# main thread's status has no VmRSS (seen twice in 24-round runs, with the
# daemon still serving), any live thread's has it; "?" if none, with the
# main thread's state on stderr.
rss() {
  local f v
  for f in "/proc/$PID/status" /proc/"$PID"/task/*/status; do
    v=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "$f" 2>/dev/null) && [ -n "$v" ] && { echo "$v"; return; }
  done
  echo "http-bench: no VmRSS for $PID ($(grep -s '^State' "/proc/$PID/status"))" >&2; echo "?"
}
# CPU ticks (user + system) of a process and its children (nginx's workers).
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# wrk_once URL SERVER_PID -> "requests bytes duration_us p50_us p99_us errors cpu_ticks"
wrk_once() {
  local t0 r
  t0=$(ticks "$2")
  r=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --timeout 30s --latency -s "$W/report.lua" "$1" | awk '/^RESULT/ {$1=""; print}')
  echo "$r $(($(ticks "$2") - t0))"
}
# load PATH: ROUNDS rounds, rackboot and nginx alternating first (the host's
# other load shifts over time), rackboot's RSS sampled throughout. Prints
# "server requests bytes duration_us p50_us p99_us errors" lines, then
# "rss start peak end".
load() {
  local path="$1" s e peak sampler i
  s=$(rss)
  ( for _ in $(seq $((ROUNDS * DUR * 4 + 8))); do rss; echo; sleep 0.5; done ) > "$W/rss" & sampler=$!
  for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then
      echo "rackboot $(wrk_once "http://127.0.0.1:$HTTP$path" "$PID")"; echo "nginx $(wrk_once "http://127.0.0.1:$NG$path" "$NPID")"
    else
      echo "nginx $(wrk_once "http://127.0.0.1:$NG$path" "$NPID")"; echo "rackboot $(wrk_once "http://127.0.0.1:$HTTP$path" "$PID")"
    fi
  done
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  e=$(rss)
  peak=$( (cat "$W/rss"; echo "$s"; echo "$e") | sort -n | tail -1)
  echo "rss $s $peak $e"
}
# Sums over the rounds; latency: the median round's p50 / p99.
summary='
  $1 == "rss" { rs = $2; rpk = $3; re = $4; next }
  { q[$1] += $2; b[$1] += $3; d[$1] += $4; n[$1]++; p50[$1, n[$1]] = $5; p99[$1, n[$1]] = $6; err[$1] += $7; cpu[$1] += $8
    rq[$1, n[$1]] = $2 / ($4 / 1e6); rb[$1, n[$1]] = $3 / ($4 / 1e6) }
  # Paired rounds (the two runs of a round are back to back): the geometric
  # mean of rackboot/nginx per round and its 95 % interval (t, on the logs).
  function paired(a,   k, i, l, m, v, t, h) { k = n["rackboot"] < n["nginx"] ? n["rackboot"] : n["nginx"]
    m = 0; for (i = 1; i <= k; i++) { l[i] = log(a["rackboot", i] / a["nginx", i]); m += l[i] }
    m /= k; v = 0; for (i = 1; i <= k; i++) v += (l[i] - m) ^ 2
    split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09", t, " ")
    if (k < 2) return sprintf("per round %.2fx (one round: no interval)", exp(m))
    h = (k - 1 <= 20 ? t[k - 1] : 2.05) * sqrt(v / (k - 1) / k)
    return sprintf("paired per round %.3fx, 95 %% interval [%.3f, %.3f] over %d rounds", exp(m), exp(m - h), exp(m + h), k) }
  function med(a, who, k,   i, j, t, v) { for (i = 1; i <= k; i++) v[i] = a[who, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return v[int((k + 1) / 2)] / 1000 }'
printf 'boot files over HTTP, loopback, %s connections, %s rounds x %s s per server (alternating), release build\n' "$CONNS" "$ROUNDS" "$DUR"
HZ=$(getconf CLK_TCK)
if [[ " $LOADS " == *" 1m "* ]]; then load /boot/1m.bin | awk -v hz="$HZ" "$summary"'
  END { r = q["rackboot"] / (d["rackboot"] / 1e6); x = q["nginx"] / (d["nginx"] / 1e6)
    printf "  1 MiB file, requests/s:   rackboot %6.0f  nginx %6.0f  ratio %.2fx\n", r, x, r / x
    printf "  1 MiB file, requests/s ratio: %s\n", paired(rq)
    printf "  1 MiB file, p50 / p99 ms: rackboot %.1f / %.1f  nginx %.1f / %.1f  (errors %d / %d)\n",
      med(p50, "rackboot", n["rackboot"]), med(p99, "rackboot", n["rackboot"]),
      med(p50, "nginx", n["nginx"]), med(p99, "nginx", n["nginx"]), err["rackboot"], err["nginx"]
    printf "  server CPU ms per request: rackboot %.2f  nginx %.2f\n",
      cpu["rackboot"] * 1000 / hz / q["rackboot"], cpu["nginx"] * 1000 / hz / q["nginx"]
    printf "  rackboot RSS MiB under the 1 MiB load: start %s  peak %s  end %s\n", rs, rpk, re }'
fi
if [[ " $LOADS " == *" image "* ]]; then load /boot/image.img | awk -v hz="$HZ" -v c="$CONNS" "$summary"'
  END { r = b["rackboot"] / 1048576 / (d["rackboot"] / 1e6); x = b["nginx"] / 1048576 / (d["nginx"] / 1e6)
    printf "  %d x 256 MiB downloads, MiB/s: rackboot %5.0f  nginx %5.0f  ratio %.2fx  (errors %d / %d)\n",
      c, r, x, r / x, err["rackboot"], err["nginx"]
    printf "  256 MiB downloads, MiB/s ratio: %s\n", paired(rb)
    printf "  server CPU s per GiB sent: rackboot %.2f  nginx %.2f\n",
      cpu["rackboot"] / hz / (b["rackboot"] / 1073741824), cpu["nginx"] / hz / (b["nginx"] / 1073741824)
    printf "  rackboot RSS MiB under the 256 MiB load: start %s  peak %s  end %s\n", rs, rpk, re }'
fi
