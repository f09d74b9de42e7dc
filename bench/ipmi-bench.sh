#!/usr/bin/env bash
# bench/ipmi-bench.sh [CALLS] [PARALLEL] - `power status` latency against a local ipmi_sim:
# rackboot's native RMCP+ client (one session reused / a fresh session per call) vs one
# `ipmitool -I lanplus -C 3 ... chassis power status` process per call, sequential and
# PARALLEL (default 8) at a time; CALLS (default 100) calls each.  Prints median / p99 / max
# per call.  Needs ipmi_sim + ipmitool (scripts/install-deps.sh).  The code is the ignored
# test power_ipmi::bench_power_status (src/power/ipmi/bench.rs), built in release mode.
# IPMI_BENCH_MANIFEST=path/Cargo.toml runs it from another crate that includes the module.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export IPMI_BENCH_CALLS="${1:-100}" IPMI_BENCH_PARALLEL="${2:-8}"
export IPMI_TEST_FIXTURES="${IPMI_TEST_FIXTURES:-$REPO/tests/fixtures/ipmi}"
for t in ipmi_sim ipmitool; do
  command -v "$t" >/dev/null || { echo "$t not installed (scripts/install-deps.sh)" >&2; exit 1; }
done
echo "ipmitool $(ipmitool -V | awk '{print $3}'), openipmi $(dpkg-query -W -f='${Version}' openipmi 2>/dev/null || echo '?'), $(nproc) CPUs"
cargo test --release --quiet --manifest-path "${IPMI_BENCH_MANIFEST:-$REPO/Cargo.toml}" --test it -- \
  --ignored --exact --nocapture power_ipmi::bench_power_status 2>&1 \
  | grep -v -E '^(running [0-9]+ tests?|test result: .*|\.+|test power_ipmi::bench_power_status \.\.\. ok)$' \
  | sed '/^$/d'
