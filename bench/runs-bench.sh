#!/usr/bin/env bash
# bench/runs-bench.sh - 200 reimages of 50 simulated machines through the whole daemon
# (tests/it/bench_runs.rs): runs/s, per-run time, transition latency inside the daemon, RSS,
# on SQLite and then on PostgreSQL (a throwaway server started by the test; claims, leases
# and the shared inventory included); then the scale-out: 3 daemons on one PostgreSQL, a boot
# domain of 100 machines each (1,200 reimages, created through the first daemon's API).
# CASES="sqlite postgres postgres:3" picks (BACKEND[:DAEMONS]).
set -euo pipefail
cd "$(dirname "$0")/.."
for c in ${CASES:-sqlite postgres postgres:3}; do
  b=${c%%:*}
  n=1
  [ "$c" != "$b" ] && n=${c#*:}
  RACKBOOT_BENCH_DB="$b" RACKBOOT_BENCH_DAEMONS="$n" \
    cargo test --release --test it bench_200_reimages -- --ignored --nocapture 2>&1 | grep -E '^(==|  )|panicked|stuck|FAILED'
done
