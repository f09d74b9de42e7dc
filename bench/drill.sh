#!/usr/bin/env bash
# bench/drill.sh [drill.py options] - the HA drill of issue 16 in full (tests/drill/run.sh):
# 3 daemons on one PostgreSQL (two on segment A, one on segment B), 100 simulated machines
# with Redfish BMCs (66 + 34) and 10 unknown MACs in A's pool, reimaged in waves for 10
# minutes while a daemon is killed with SIGKILL every 20-60 s (restarted 0-45 s later: some after the TTL, so a peer takes over) and
# once SIGSTOPped past the 30 s lease TTL. Prints runs lost, runs with two owners, BMC
# commands from a fenced daemon, duplicate IPs (all must be 0) and the takeover times
# (p99 <= 35 s). The test command runs a shortened form (scripts/test.sh).
#   BENCH=throughput: no faults, 300 machines (200 + 100) at once: runs/s of 3 daemons.
# Env: RACKBOOT_BIN (default: target/release/rackboot, built here), DRILL_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RACKBOOT_BIN:-}" ]; then
  cargo build --release -q
  export RACKBOOT_BIN="$PWD/target/release/rackboot"
fi
if [ "${BENCH:-drill}" = throughput ]; then
  exec ./tests/drill/run.sh --no-faults --machines-a 200 --machines-b 100 --unknown 0 \
    --duration 1 --wave-size 300 --install-secs 1 --drain 600 "$@"
fi
exec ./tests/drill/run.sh "$@"
