#!/usr/bin/env bash
# bench/runs-bench.sh - 200 reimages of 50 simulated machines through the whole daemon
# (tests/it/bench_runs.rs): runs/s, per-run time, transition latency inside the daemon, RSS,
# on SQLite and then on PostgreSQL (a throwaway server started by the test; claims, leases
# and the shared inventory included). BACKENDS="sqlite" runs one.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in ${BACKENDS:-sqlite postgres}; do
  RACKBOOT_BENCH_DB="$b" cargo test --release --test it bench_200_reimages -- --ignored --nocapture 2>&1 | grep -E '^(==|  )'
done
