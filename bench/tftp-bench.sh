#!/usr/bin/env bash
# TFTP throughput: rackboot vs dnsmasq, atftpd and tftpd-hpa.
#
# Runs everything inside two private network namespaces (rbtb-srv 10.99.0.1,
# rbtb-cli 10.99.0.2) joined by a veth pair; no traffic touches the host's
# interfaces. Server pinned to CPU 0, clients to CPU 1. Prints MiB/s per cell.
#
# Usage (root):
#   bench/tftp-bench.sh [--ours BIN] [--size-mib N] [--servers "ours dnsmasq atftpd hpa"] [--cells REGEX]
# BIN (default target/release/rackboot) is started as `BIN tftp-serve 10.99.0.1:69 ROOT`
# (the hidden subcommand over rackboot::tftp::bench::bench_server).
# Needs: iproute2, taskset, curl, atftp, tftp-hpa, dnsmasq. atftpd and
# tftpd-hpa conflict as Debian packages, so their .debs are fetched with
# `apt-get download` and unpacked into $BENCH_CACHE (never installed), unless
# `atftpd` / `in.tftpd` are already on PATH.
set -euo pipefail

SRV_NS=rbtb-srv
CLI_NS=rbtb-cli
SRV_IP=10.99.0.1
CLI_IP=10.99.0.2
SRV_CPU=0
CLI_CPU=1
SIZE_MIB=${SIZE_MIB:-64}
OURS=${TFTP_BENCH_OURS:-$(cd "$(dirname "$0")/.." && pwd)/target/release/rackboot}
SERVERS="ours dnsmasq atftpd hpa"
CACHE=${BENCH_CACHE:-/tmp/rbtb-cache}
CELL_TIMEOUT=180
CONCURRENT=8
CELL_FILTER=""   # --cells REGEX: only the cells whose name matches (e.g. '8x')

while [ $# -gt 0 ]; do
    case "$1" in
        --ours) OURS=$2; shift 2 ;;
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --cells) CELL_FILTER=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
for t in ip taskset timeout curl atftp tftp dnsmasq cmp; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/rbtb.XXXXXX)
OUT=$(mktemp -d /dev/shm/rbtb.XXXXXX 2>/dev/null || mktemp -d /tmp/rbtb-out.XXXXXX)
SERVER_PID=""

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    # Whatever else runs in the server namespace was started by us
    # (e.g. a server that forked despite being told not to).
    for p in $(ip netns pids $SRV_NS 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

cleanup() {
    set +e
    stop_server
    # Anything still running inside our namespaces was started by us.
    for ns in $SRV_NS $CLI_NS; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK" "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- network -----------------------------------------------------------------
for ns in $SRV_NS $CLI_NS; do ip netns del "$ns" 2>/dev/null || true; done
ip netns add $SRV_NS
ip netns add $CLI_NS
ip link add rbtb-srv netns $SRV_NS type veth peer name rbtb-cli netns $CLI_NS
ip -n $SRV_NS addr add $SRV_IP/24 dev rbtb-srv
ip -n $CLI_NS addr add $CLI_IP/24 dev rbtb-cli
for ns in $SRV_NS $CLI_NS; do ip -n "$ns" link set lo up; done
ip -n $SRV_NS link set rbtb-srv up
ip -n $CLI_NS link set rbtb-cli up

# --- files -------------------------------------------------------------------
ROOT=$WORK/root
mkdir -p "$ROOT"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$ROOT/big.bin"
head -c 100000 /dev/urandom > "$ROOT/small.bin"
chmod 755 "$WORK" "$ROOT"
chmod 644 "$ROOT"/*.bin

# --- third-party servers -------------------------------------------------------
find_bin() { # name package
    local b
    b=$(command -v "$1" 2>/dev/null || true)
    if [ -z "$b" ]; then
        b=$(find "$CACHE/x" -path "*/sbin/$1" -type f 2>/dev/null | head -1 || true)
    fi
    if [ -z "$b" ]; then
        mkdir -p "$CACHE"
        (cd "$CACHE" && apt-get download "$2" >/dev/null 2>&1 && for d in "$2"_*.deb; do dpkg -x "$d" x; done) || true
        b=$(find "$CACHE/x" -path "*/sbin/$1" -type f 2>/dev/null | head -1 || true)
    fi
    echo "$b"
}

# Start a server in the background from the current shell, so that $! is
# the server itself (ip netns exec and taskset both exec).
srv_bg() {
    ip netns exec $SRV_NS taskset -c $SRV_CPU "$@" &
    SERVER_PID=$!
}
in_cli() { ip netns exec $CLI_NS taskset -c $CLI_CPU timeout $CELL_TIMEOUT "$@"; }

start_server() { # name -> sets SERVER_PID, returns 1 if unavailable
    local b
    if in_cli curl -s --max-time 1 -o /dev/null "tftp://$SRV_IP/small.bin" 2>/dev/null; then
        echo "a TFTP server is still answering before $1 starts" >&2
        return 1
    fi
    case "$1" in
        ours)
            [ -n "$OURS" ] && [ -x "$OURS" ] || return 1
            srv_bg "$OURS" tftp-serve $SRV_IP:69 "$ROOT" >"$WORK/ours.log" 2>&1
            ;;
        dnsmasq)
            srv_bg dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
                --enable-tftp --tftp-root="$ROOT" --tftp-max=64 --user=root \
                --listen-address=$SRV_IP --bind-interfaces --pid-file="$WORK/dnsmasq.pid" \
                --quiet-tftp --log-facility="$WORK/dnsmasq.log"
            ;;
        atftpd)
            b=$(find_bin atftpd atftpd)
            [ -n "$b" ] || return 1
            srv_bg "$b" --daemon --no-fork --port 69 --bind-address $SRV_IP \
                --user root.root --maxthread 100 --logfile /dev/null "$ROOT"
            ;;
        hpa)
            b=$(find_bin in.tftpd tftpd-hpa)
            [ -n "$b" ] || return 1
            srv_bg "$b" --foreground --listen --secure --address $SRV_IP:69 --user root "$ROOT"
            ;;
    esac
    # Ready when a small fetch works (bounded).
    for _ in $(seq 1 50); do
        if in_cli curl -s -o "$OUT/probe" "tftp://$SRV_IP/small.bin" 2>/dev/null \
            && cmp -s "$OUT/probe" "$ROOT/small.bin"; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $1 did not come up" >&2
    stop_server
    return 1
}

now_ns() { date +%s%N; }

# cell: fetch with one client command; prints MiB/s or FAIL.
# The client command contains @OUT@ where the output file goes.
cell() {
    local out="$OUT/o" t0 t1 args=()
    rm -f "$out"
    for a in "$@"; do args+=("${a//@OUT@/$out}"); done
    t0=$(now_ns)
    if ! in_cli "${args[@]}" >/dev/null 2>&1; then
        echo FAIL
        return
    fi
    t1=$(now_ns)
    if ! cmp -s "$out" "$ROOT/big.bin"; then
        echo CORRUPT
        return
    fi
    echo "$SIZE_MIB $t0 $t1" | awk '{ printf "%.1f", $1 * 1e9 / ($3 - $2) }'
    rm -f "$out"
}

# "busy total" jiffies of one CPU, from /proc/stat.
cpu_jiffies() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
# Busy % of a CPU between two cpu_jiffies samples.
busy_pct() {
    echo "$1 $2" | awk '{ d = $4 - $2; printf "%d", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

# parallel cell: CONCURRENT clients at once; aggregate MiB/s. Also records
# how busy the server's and the clients' CPUs were (in $OUT/cpu): a client
# CPU near 100% means the cell measures the clients, not the server.
pcell() {
    local t0 t1 i pids=() ok=1 args s0 c0
    s0=$(cpu_jiffies $SRV_CPU); c0=$(cpu_jiffies $CLI_CPU)
    t0=$(now_ns)
    for i in $(seq 1 $CONCURRENT); do
        args=()
        for a in "$@"; do args+=("${a//@OUT@/$OUT/p$i}"); done
        in_cli "${args[@]}" >/dev/null 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    t1=$(now_ns)
    echo "$(busy_pct "$s0" "$(cpu_jiffies $SRV_CPU)")/$(busy_pct "$c0" "$(cpu_jiffies $CLI_CPU)")" > "$OUT/cpu"
    for i in $(seq 1 $CONCURRENT); do
        cmp -s "$OUT/p$i" "$ROOT/big.bin" || ok=0
        rm -f "$OUT/p$i"
    done
    if [ $ok = 1 ]; then
        echo "$SIZE_MIB $CONCURRENT $t0 $t1" | awk '{ printf "%.1f", $1 * $2 * 1e9 / ($4 - $3) }'
    else
        echo FAIL
    fi
}

URL="tftp://$SRV_IP/big.bin"
CELLS=(
    "tftp-hpa 512|cell tftp $SRV_IP -m binary -c get big.bin @OUT@"
    "curl 512|cell curl -s --tftp-blksize 512 -o @OUT@ $URL"
    "curl 1468|cell curl -s --tftp-blksize 1468 -o @OUT@ $URL"
    "atftp 512|cell atftp --option 'blksize 512' -g -r big.bin -l @OUT@ $SRV_IP 69"
    "atftp 1468|cell atftp --option 'blksize 1468' -g -r big.bin -l @OUT@ $SRV_IP 69"
    "atftp 512 w16|cell atftp --option 'blksize 512' --option 'windowsize 16' -g -r big.bin -l @OUT@ $SRV_IP 69"
    "atftp 1468 w16|cell atftp --option 'blksize 1468' --option 'windowsize 16' -g -r big.bin -l @OUT@ $SRV_IP 69"
    "atftp 1468 w64|cell atftp --option 'blksize 1468' --option 'windowsize 64' -g -r big.bin -l @OUT@ $SRV_IP 69"
    "${CONCURRENT}x curl 1468|pcell curl -s --tftp-blksize 1468 -o @OUT@ $URL"
    "${CONCURRENT}x atftp 1468 w16|pcell atftp --option 'blksize 1468' --option 'windowsize 16' -g -r big.bin -l @OUT@ $SRV_IP 69"
)

if [ -n "$CELL_FILTER" ]; then
    kept=()
    for c in "${CELLS[@]}"; do [[ "${c%%|*}" =~ $CELL_FILTER ]] && kept+=("$c"); done
    CELLS=("${kept[@]}")
fi

declare -A RESULT
declare -A OACK
declare -A CPU
for s in $SERVERS; do
    echo "== $s" >&2
    if ! start_server "$s"; then
        echo "   $s unavailable, column skipped" >&2
        for c in "${CELLS[@]}"; do RESULT["$s|${c%%|*}"]="n/a"; done
        OACK[$s]="n/a"
        continue
    fi
    OACK[$s]=$(in_cli atftp --trace --option "blksize 1468" --option "windowsize 16" \
        --option "tsize 0" -g -r small.bin -l "$OUT/oack" $SRV_IP 69 2>&1 \
        | grep -m1 -o 'received OACK <[^>]*>' | sed 's/received OACK <//; s/, >//; s/>//' || true)
    [ -n "${OACK[$s]}" ] || OACK[$s]="(no OACK)"
    for c in "${CELLS[@]}"; do
        name=${c%%|*}
        cmd=${c#*|}
        eval "set -- $cmd"
        rm -f "$OUT/cpu"
        r=$("$@")
        RESULT["$s|$name"]=$r
        if [ -f "$OUT/cpu" ]; then CPU["$s|$name"]=$(cat "$OUT/cpu"); fi
        echo "   $name: $r MiB/s" >&2
    done
    stop_server
done

echo
echo "TFTP read of a ${SIZE_MIB} MiB file over veth between namespaces, MiB/s (server CPU $SRV_CPU, clients CPU $CLI_CPU)"
printf '%-22s' "client / server"
for s in $SERVERS; do printf '%12s' "$s"; done
echo
for c in "${CELLS[@]}"; do
    name=${c%%|*}
    printf '%-22s' "$name"
    for s in $SERVERS; do printf '%12s' "${RESULT[$s|$name]}"; done
    echo
done
echo
echo "CPU busy % during the concurrent cells, server CPU / client CPU:"
for c in "${CELLS[@]}"; do
    name=${c%%|*}
    [ -n "${CPU[${SERVERS%% *}|$name]:-}" ] || continue
    printf '%-22s' "$name"
    for s in $SERVERS; do printf '%12s' "${CPU[$s|$name]:-n/a}"; done
    echo
done
echo
echo "OACK to atftp asking blksize 1468, windowsize 16, tsize 0:"
for s in $SERVERS; do printf '  %-8s %s\n' "$s" "${OACK[$s]}"; done
