#!/usr/bin/env bash
# scripts/test.sh - the whole test suite (the README's test command; .ci/run calls it).
# Installs what it needs (apt packages, pykickstart venv, iPXE firmware), then:
# rustfmt, clippy (warnings are errors), unit + integration tests (real ipmi_sim,
# TFTP clients, ksvalidator, cloud-init schema), a short fuzz smoke (AFL++, seconds per
# target), and the QEMU lab end to end.
# Then the Debian package: build, lintian, install, serve as _rackboot, remove/purge.
# Then the HA drill, shortened: 3 daemons, 30 simulated machines, kill -9 in a loop (tests/drill).
# Run as root: the lab creates network namespaces.  LAB=0 skips the QEMU lab, DRILL=0 the drill,
# PKG=0 the package.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
step() { printf '\n==> %s\n' "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

step "dependencies"
$SUDO "$REPO/scripts/install-deps.sh"
"$REPO/scripts/fetch-firmware.sh"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit + integration)"
# External tools are required here: a missing one fails instead of skipping.
export RACKBOOT_REQUIRE_TOOLS=1
cargo test --all-targets

step "fuzz smoke (bench/fuzz.sh --smoke)"
bench/fuzz.sh --smoke

if [ "${LAB:-1}" = 1 ] && [ -x "$REPO/tests/lab/run-all.sh" ]; then
  step "QEMU lab end to end (tests/lab/run-all.sh)"
  cargo build --quiet
  $SUDO "$REPO/tests/lab/run-all.sh"
fi
if [ "${DRILL:-1}" = 1 ]; then
  step "HA drill, shortened (tests/drill/run.sh; bench/drill.sh runs the full one)"
  cargo build --quiet
  # 30 machines on 3 daemons, lease TTL 6 s, 2 minutes of waves with a daemon killed every
  # 15-25 s and one SIGSTOPped past the TTL; the takeover bound is TTL + 5 s.
  $SUDO "$REPO/tests/drill/run.sh" --machines-a 20 --machines-b 10 --unknown 6 --ttl 6 \
    --phase-timeout 30 --duration 120 --wave-every 10 --wave-size 15 --kill-min 15 \
    --kill-max 25 --restart-max 12 --drain 150 --takeover-max 11
fi
if [ "${PKG:-1}" = 1 ]; then
  step "Debian package (tests/pkg/run.sh)"
  $SUDO "$REPO/tests/pkg/run.sh"
fi
step "all tests passed"
