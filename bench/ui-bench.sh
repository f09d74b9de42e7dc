#!/usr/bin/env bash
# bench/ui-bench.sh - the web UI's machines page over a 5,000-system inventory
# (two finished runs per system, every power state polled; tests/it/ui.rs
# ui_bench_5000_systems): the server's render time per page variant (median
# of 30, from the page's Server-Timing header; target < 100 ms) and the RSS of
# the process (daemon in-process) after rendering it repeatedly (target < 40 MB).
# PROFILE=dev runs it on the dev build (no release build needed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${PROFILE:-release}" = dev ]; then
  cargo test --test it ui_bench_5000_systems -- --ignored --nocapture 2>&1 | grep -E '^=='
else
  cargo test --release --test it ui_bench_5000_systems -- --ignored --nocapture 2>&1 | grep -E '^=='
fi
