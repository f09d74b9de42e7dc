#!/usr/bin/env bash
# DHCP pool throughput: rackboot (pool mode, leases persisted, ACK after the
# group commit) vs Kea 2.x (memfile, persist) vs dnsmasq, driven by Kea's
# perfdhcp, in two network namespaces this script creates and removes:
#
#   rbdb-srv  10.98.0.1/16 on veth rbdb-s   (the server, pinned to SRV_CPU)
#   rbdb-cli  10.98.0.2/16 on veth rbdb-c   (perfdhcp, pinned to CLI_CPU)
#
# All traffic stays inside the namespaces. perfdhcp acts as a relay (giaddr
# 10.98.0.2): servers answer it unicast on port 67. For each server and
# client count (perfdhcp -R) the rate (-r) is stepped up; each step runs
# DUR seconds against a freshly started server with an empty lease store.
# "drop-free" = no DISCOVER-OFFER and no REQUEST-ACK drop, and at least 97%
# of the offered rate completed (perfdhcp itself kept up).
#
# MODE=reservations: every client is a reservation (CLIENTS systems in systems.toml, the
# MACs given to perfdhcp with -M); SERVERS then is "rackboot rackboot-pg": the same daemon
# on SQLite and on PostgreSQL (a throwaway server, scripts/pg-tmp.sh as nobody, in the
# server's namespace; the shared inventory in it). Reservations are answered from memory,
# so the two should match (issue 16).
#
# Usage: bench/dhcp-bench.sh            (as root; Debian 12)
# Env:   CLIENTS="1000 50000"  RATES="1000 2000 ..."  DUR=10  MODE=pool|reservations
#        WARMUP=0 (pool) / 1 (reservations): seconds of DORA before each step
#        SERVERS="rackboot kea dnsmasq" (pool) / "rackboot rackboot-pg" (reservations)
#        SRV_CPU=0  CLI_CPU=1
#        RACKBOOT_BIN=path (default: cargo build --release)
#        KEEP=1 keeps the work dir (logs, perfdhcp outputs)
# Needs: perfdhcp (kea-admin), kea-dhcp4 (kea-dhcp4-server), dnsmasq
#        (dnsmasq-base), iproute2, util-linux taskset, ss.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLIENTS=${CLIENTS:-"1000 50000"}
RATES=${RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 12000 14000"}
DUR=${DUR:-10}
# Seconds of DORA at `clients`/s before each measured step (every client once):
# the steady state is measured, not a server's first second after its start.
WARMUP=${WARMUP:-}
MODE=${MODE:-pool}
case $MODE in
    pool) SERVERS=${SERVERS:-"rackboot kea dnsmasq"} ;;
    reservations) SERVERS=${SERVERS:-"rackboot rackboot-pg"}; CLIENTS=${CLIENTS/50000/5000}; WARMUP=${WARMUP:-1} ;;
    *) echo "MODE must be pool or reservations" >&2; exit 2 ;;
esac
WARMUP=${WARMUP:-0}
SRV_CPU=${SRV_CPU:-0}
CLI_CPU=${CLI_CPU:-1}
SRV_NS=rbdb-srv
CLI_NS=rbdb-cli
SRV_IP=10.98.0.1
CLI_IP=10.98.0.2
POOL_START=10.98.1.0
POOL_END=10.98.255.250

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
for t in perfdhcp kea-dhcp4 dnsmasq ip taskset ss; do
    command -v "$t" >/dev/null || {
        echo "missing $t: apt-get install kea-admin kea-common kea-dhcp4-server dnsmasq-base" >&2
        exit 1
    }
done

if [ -z "${RACKBOOT_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -j "${JOBS:-1}" -q)
    RACKBOOT_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/rackboot
fi

WORK=$(mktemp -d /tmp/rbdb.XXXXXX)
SRV_PID=""
PG_PID=""

stop_server() {
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill "$SRV_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SRV_PID" 2>/dev/null || true
        wait "$SRV_PID" 2>/dev/null || true
    fi
    SRV_PID=""
}

cleanup() {
    stop_server
    if [ -n "$PG_PID" ]; then exec 8>&-; wait "$PG_PID" 2>/dev/null || true; fi
    ip netns del "$SRV_NS" 2>/dev/null || true
    ip netns del "$CLI_NS" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

# ---- namespaces ----
ip netns del "$SRV_NS" 2>/dev/null || true
ip netns del "$CLI_NS" 2>/dev/null || true
ip netns add "$SRV_NS"
ip netns add "$CLI_NS"
ip link add rbdb-s type veth peer name rbdb-c
ip link set rbdb-s netns "$SRV_NS"
ip link set rbdb-c netns "$CLI_NS"
ip -n "$SRV_NS" addr add "$SRV_IP/16" dev rbdb-s
ip -n "$CLI_NS" addr add "$CLI_IP/16" dev rbdb-c
for ns in "$SRV_NS" "$CLI_NS"; do ip -n "$ns" link set lo up; done
ip -n "$SRV_NS" link set rbdb-s up
ip -n "$CLI_NS" link set rbdb-c up

# ---- server configs ----
RB="$WORK/rackboot"
mkdir -p "$RB/boot" "$RB/firmware"
# Stand-in payloads: the profiles name them; nothing boots in this bench.
echo kernel >"$RB/boot/vmlinuz"
echo initrd >"$RB/boot/initrd.img"
cp -r "$ROOT/profiles" "$ROOT/kickstarts" "$RB/"
cat >"$RB/rackboot.toml" <<EOF
[server]
interface = "rbdb-s"
address = "$SRV_IP"
http_port = 8080
boot_dir = "boot"
firmware_dir = "firmware"
data_dir = "data"

[dhcp]
mode = "pool"
lease_secs = 3600
subnet_mask = "255.255.0.0"
router = "$SRV_IP"
pool_start = "$POOL_START"
pool_end = "$POOL_END"

[tftp]
enabled = false

[api]
listen = "127.0.0.1:9080"
EOF
if [ "$MODE" = pool ]; then
# One inventory machine whose address sits inside the pool: never handed out.
cat >"$RB/systems.toml" <<EOF
[systems.bench1]
macs = ["52:54:00:98:00:01"]
ip = "10.98.1.5"
profile = "lab"
EOF
else
    # Reservations: the most clients asked for, one system each; perfdhcp gets the MACs.
    sed -i 's/^mode = "pool"/mode = "reservations"/; /^pool_/d' "$RB/rackboot.toml"
    max=0; for c in $CLIENTS; do [ "$c" -gt "$max" ] && max=$c; done
    awk -v n="$max" 'BEGIN { for (i = 0; i < n; i++) {
        m = sprintf("52:54:00:98:%02x:%02x", int(i / 256), i % 256)
        printf "[systems.r%05d]\nmacs = [\"%s\"]\nip = \"10.98.%d.%d\"\nprofile = \"lab\"\n", i, m, 1 + int(i / 250), 1 + i % 250
        print m > "/dev/stderr" } }' >"$RB/systems.toml" 2>"$WORK/macs.txt"
fi
"$RACKBOOT_BIN" --config "$RB" check >/dev/null
RB_PG="$WORK/rackboot-pg"
if [[ " $SERVERS " == *" rackboot-pg "* ]]; then
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$WORK/pg" && chown nobody:nogroup "$WORK/pg" && chmod 755 "$WORK"
    mkfifo "$WORK/pg.fifo"
    # On the server's CPU: the database is the server side's (unpinned, it
    # preempts perfdhcp, whose socket then overflows: drops that are not
    # the server's).
    ip netns exec "$SRV_NS" taskset -c "$SRV_CPU" setpriv --reuid=nobody --regid=nogroup --clear-groups \
        sh "$ROOT/scripts/pg-tmp.sh" "$PG_BIN" "$WORK/pg" 55432 55433 <"$WORK/pg.fifo" >"$WORK/pg.out" 2>&1 &
    PG_PID=$!
    exec 8>"$WORK/pg.fifo"
    for _ in $(seq 600); do grep -q . "$WORK/pg.out" 2>/dev/null && break; sleep 0.1; done
    PG_URL=$(awk '/^ready/ { print $2 }' "$WORK/pg.out")
    [ -n "$PG_URL" ] || { echo "PostgreSQL: $(cat "$WORK/pg.out")" >&2; exit 1; }
    cp -r "$RB" "$RB_PG"
    sed -i "s|^\[server\]|[server]\ndatabase_url = \"$PG_URL\"|" "$RB_PG/rackboot.toml"
fi

cat >"$WORK/kea.json" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "rbdb-s" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": true, "lfc-interval": 0,
                        "name": "$WORK/kea/leases4.csv" },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "10.98.0.0/16",
                   "pools": [ { "pool": "$POOL_START - $POOL_END" } ],
                   "option-data": [ { "name": "routers", "data": "$SRV_IP" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$WORK/kea/kea.log" } ] } ]
} }
EOF

wait_port67() {
    for _ in $(seq 100); do
        if ip netns exec "$SRV_NS" ss -Hlun 'sport = :67' | grep -q .; then return 0; fi
        kill -0 "$SRV_PID" 2>/dev/null || { echo "server died" >&2; return 1; }
        sleep 0.1
    done
    echo "server never bound port 67" >&2
    return 1
}

start_server() {
    local s=$1
    case $s in
        rackboot|rackboot-pg)
            local dir=$RB
            [ "$s" = rackboot-pg ] && dir=$RB_PG
            rm -rf "$dir/data"
            ip netns exec "$SRV_NS" taskset -c "$SRV_CPU" env RACKBOOT_LOG=warn \
                "$RACKBOOT_BIN" --config "$dir" serve 2>>"$WORK/$s.log" &
            SRV_PID=$!
            ;;
        kea)
            rm -rf "$WORK/kea"
            mkdir -p "$WORK/kea"
            ip netns exec "$SRV_NS" taskset -c "$SRV_CPU" env KEA_PIDFILE_DIR="$WORK/kea" \
                KEA_LOCKFILE_DIR="$WORK/kea" kea-dhcp4 -c "$WORK/kea.json" \
                >>"$WORK/kea-stdout.log" 2>&1 &
            SRV_PID=$!
            ;;
        dnsmasq)
            rm -f "$WORK/dnsmasq.leases"
            # --no-ping: the default ICMP probe holds each new address ~3 s.
            ip netns exec "$SRV_NS" taskset -c "$SRV_CPU" dnsmasq -d -k --port=0 --no-ping \
                --quiet-dhcp --interface=rbdb-s \
                --dhcp-range="$POOL_START,$POOL_END,255.255.0.0,1h" \
                --dhcp-lease-max=100000 --dhcp-leasefile="$WORK/dnsmasq.leases" \
                --log-facility="$WORK/dnsmasq.log" >/dev/null 2>&1 &
            SRV_PID=$!
            ;;
    esac
    wait_port67
}

# UDP datagrams the kernel dropped for a full receive buffer, in namespace $1.
rcvbuf_errors() {
    ip netns exec "$1" awk '/^Udp:/ { n++; if (n == 2) { print $6; exit } }' /proc/net/snmp
}

rss_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# p50 / p99 in ms of one exchange's "sent / received" timestamps (perfdhcp -x t).
latency() {
    awk -v sec="Timestamps for packets: $2" '
        index($0, sec) { on = 1; next }
        /^\*\*\*/ { on = 0 }
        on && /sent \/ received/ { split($0, a, " "); print (a[6] - a[4]) * 1000 }
    ' "$1" | sort -n | awk '
        { v[NR] = $1 }
        END { if (NR == 0) { print "- -"; exit }
              i = int(NR * 0.99); if (i < 1) i = 1
              printf "%.2f %.2f\n", v[int((NR + 1) / 2)], v[i] }'
}

# Field of one exchange section ("drops", "sent packets"...).
field() {
    awk -v sec="Statistics for: $2" -v key="$3:" '
        index($0, sec) { on = 1; next }
        /^\*\*\*Statistics/ { on = 0 }
        on && index($0, key) == 1 { print $NF; exit }
    ' "$1"
}

RESULTS="$WORK/results.tsv"
printf "server\tclients\trate\texch_s\tdrops_DO\tdrops_RA\tDO_p50\tDO_p99\tRA_p50\tRA_p99\tsrv_rcvbuf_drop\tcli_rcvbuf_drop\n" >"$RESULTS"

for clients in $CLIENTS; do
    for s in $SERVERS; do
        bad=0
        for rate in $RATES; do
            start_server "$s"
            last=${CLIENTS##* }
            if [ "$s" = rackboot ] && [ "$clients" = "$last" ] && [ -z "${RSS_IDLE:-}" ]; then
                sleep 0.5
                RSS_IDLE=$(rss_kb "$SRV_PID" VmRSS)
            fi
            out="$WORK/perf-$s-$clients-$rate.txt"
            srv0=$(rcvbuf_errors "$SRV_NS")
            cli0=$(rcvbuf_errors "$CLI_NS")
            macs=()
            if [ "$MODE" = reservations ]; then
                head -n "$clients" "$WORK/macs.txt" >"$WORK/macs-$clients.txt"
                macs=(-M "$WORK/macs-$clients.txt")
            fi
            if [ "$WARMUP" -gt 0 ]; then
                ip netns exec "$CLI_NS" taskset -c "$CLI_CPU" perfdhcp -4 -l "$CLI_IP" \
                    -r "$clients" -R "$clients" "${macs[@]}" -p "$WARMUP" -W 1000000 "$SRV_IP" \
                    >"$out.warmup" 2>&1 || true
            fi
            ip netns exec "$CLI_NS" taskset -c "$CLI_CPU" perfdhcp -4 -x t -l "$CLI_IP" \
                -r "$rate" -R "$clients" "${macs[@]}" -p "$DUR" -W 1000000 "$SRV_IP" >"$out" 2>&1 || true
            if [ "$s" = rackboot ] && [ "$clients" = "$last" ]; then
                hwm=$(rss_kb "$SRV_PID" VmHWM)
                if [ "${hwm:-0}" -gt "${RSS_MAX:-0}" ]; then
                    RSS_MAX=$hwm
                    RSS_LOAD=$(rss_kb "$SRV_PID" VmRSS)
                    RSS_AT=$rate
                fi
            fi
            srv_ovf=$(( $(rcvbuf_errors "$SRV_NS") - srv0 ))
            cli_ovf=$(( $(rcvbuf_errors "$CLI_NS") - cli0 ))
            stop_server
            # Completed DORAs per second of the test period (perfdhcp's own
            # "Rate:" also counts the -W wait at the end).
            acks=$(field "$out" REQUEST-ACK "received packets")
            exch=$(( ${acks:-0} / DUR ))
            d1=$(field "$out" DISCOVER-OFFER drops)
            d2=$(field "$out" REQUEST-ACK drops)
            read -r l1 l2 < <(latency "$out" DISCOVER-OFFER)
            read -r l3 l4 < <(latency "$out" REQUEST-ACK)
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$s" "$clients" "$rate" \
                "${exch:-0}" "${d1:-?}" "${d2:-?}" "$l1" "$l2" "$l3" "$l4" "$srv_ovf" "$cli_ovf" |
                tee -a "$RESULTS"
            # Saturated (over 5% lost at two steps in a row; one can be a
            # stall of the shared host): higher rates only lose more.
            sent=$(field "$out" DISCOVER-OFFER "sent packets")
            lost=$(( ${d1:-0} + ${d2:-0} ))
            if [ "${sent:-0}" -gt 0 ] && [ $(( lost * 20 )) -gt "${sent:-1}" ]; then
                bad=$(( ${bad:-0} + 1 ))
                if [ "$bad" -ge 2 ]; then bad=0; break; fi
            else
                bad=0
            fi
        done
    done
done

echo
summary() {
    awk -F'\t' -v dur="$DUR" '
    NR > 1 {
        k = $1 "\t" $2
        if (!(k in seen)) { seen[k] = 1; order[++n] = k }
        if ($4 + 0 > mx[k] + 0) mx[k] = $4
        ok = ($4 >= 0.97 * $3); lost = $5 + $6
        if (ok && lost == 0 && $3 + 0 >= best[k] + 0) { best[k] = $3; row[k] = $0 }
        if (ok && lost == 0 && !(k in broken)) sus[k] = $3
        if (!(ok && lost == 0)) broken[k] = 1
        if (ok && lost <= 0.001 * $3 * dur && $3 + 0 >= tol[k] + 0) tol[k] = $3
    }
    END {
        fmt = "%-9s %8s %10s %9s %6s %7s %7s %7s %7s %10s %9s %11s\n"
        printf fmt, "server", "clients", "dropfree_r", "exch/s", "drops", "DO_p50", "DO_p99", "RA_p50", "RA_p99", "sustained", "r@<0.1%", "max_exch/s"
        for (i = 1; i <= n; i++) {
            k = order[i]; split(k, kk, "\t")
            if (k in row) split(row[k], f, "\t"); else split("- - - - - - - - - -", f, " ")
            printf fmt, kk[1], kk[2], (k in row) ? f[3] : "none", f[4], (k in row) ? f[5] + f[6] : "-", f[7], f[8], f[9], f[10], (k in sus) ? sus[k] : "none", (k in tol) ? tol[k] : "none", mx[k]
        }
    }' "$1"
}

echo
echo "== per server and client count (latency in ms, at the highest drop-free rate) =="
echo "dropfree_r: highest rate with no drop; sustained: highest rate below which every"
echo "step was drop-free too; r@<0.1%: highest rate losing at most 0.1% of exchanges"
summary "$RESULTS"
echo
if [ -n "${RSS_MAX:-}" ]; then
    echo "rackboot RSS (/proc/PID/status): idle ${RSS_IDLE} kB; after ${last} clients at ${RSS_AT}/s: VmRSS ${RSS_LOAD} kB, VmHWM ${RSS_MAX} kB"
fi
