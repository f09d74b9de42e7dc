#!/usr/bin/env bash
# bench/runs-bench.sh - 200 reimages of 50 simulated machines through the whole daemon
# (tests/it/bench_runs.rs): runs/s, per-run time, transition latency inside the daemon, RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test it bench_200_reimages -- --ignored --nocapture 2>&1 | grep -E '^(==|  )'
