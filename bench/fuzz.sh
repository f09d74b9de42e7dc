#!/usr/bin/env bash
# bench/fuzz.sh - coverage-guided fuzzing of rackboot's parsers of untrusted bytes with
# AFL++ (cargo-afl; fuzz/README.md says why), one target at a time, nice'd.
#
#   bench/fuzz.sh [MINUTES] [TARGET...]   each target MINUTES (default 1), from the committed
#                                         seeds plus the queue of the previous run (fuzz/out/)
#   bench/fuzz.sh --smoke                 each target FUZZ_SMOKE_SECS (default 10) s from the
#                                         committed seeds only; exit 1 on any crash (test.sh)
#   bench/fuzz.sh --planted [MINUTES]     the planted-bug demo target (feature planted-bug)
#                                         until it crashes or MINUTES (default 10) pass
#   FUZZ_SMOKE=1 bench/fuzz.sh            same as --smoke
#
# Targets: dhcp tftp ipmi sol redfish boot_routes config (fuzz/src/targets.rs). Per target it
# prints executions, exec/s, corpus size before -> after, crashes and hangs; a crash's input
# is kept in fuzz/out/<target>/default/crashes/ and replays with
#   ~/.cache/rackboot/fuzz-target/release/<target> < fuzz/out/<target>/default/crashes/<file>
# Needs cargo-afl and its AFL++ build (scripts/install-deps.sh installs both).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$REPO/fuzz"
ALL=(dhcp tftp ipmi sol redfish boot_routes config)

mode=run; minutes=1
case "${1:-}" in
  --smoke) mode=smoke; shift ;;
  --planted) mode=planted; shift; minutes="${1:-10}"; [ $# -gt 0 ] && shift ;;
  ''|-*) ;;
  *) minutes="$1"; shift ;;
esac
[ "${FUZZ_SMOKE:-0}" = 1 ] && mode=smoke
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

command -v cargo-afl >/dev/null || { echo "fuzz.sh: cargo-afl missing (scripts/install-deps.sh)" >&2; exit 1; }

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
# No AFL_SKIP_CRASHES: a seed that crashes (corpus/*/regression-*: fixed bugs) fails the run.
export AFL_QUIET=1
WORK="$(mktemp -d /tmp/rackboot-fuzz.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# The targets' throwaway copies of the sample config go here (fuzz/src/targets.rs).
export RACKBOOT_FUZZ_DIR="$WORK"

# The instrumented build (10-15 min cold) lives outside the checkout, so a fresh clone (CI)
# reuses it: cargo rebuilds only what changed. FUZZ_TARGET_DIR=fuzz/target keeps it in the tree.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rackboot/fuzz-target}"
mkdir -p "$CARGO_TARGET_DIR"
t0=$(date +%s)
cd "$FUZZ"
if [ "$mode" = planted ]; then
  echo "==> build: cargo afl build --release --features planted-bug --bin planted"
  nice -n 15 cargo afl build --release --quiet --features planted-bug --bin planted
else
  echo "==> build: cargo afl build --release (${targets[*]})"
  bins=(); for t in "${targets[@]}"; do bins+=(--bin "$t"); done
  nice -n 15 cargo afl build --release --quiet "${bins[@]}"
fi
echo "    build took $(( $(date +%s) - t0 )) s"

stat() { sed -n "s/^$2 *: *//p" "$1/fuzzer_stats" 2>/dev/null | head -1; }

# run TARGET SECONDS INPUT_DIR [extra afl-fuzz args]: one afl-fuzz instance, time bounded.
run() {
  local t="$1" secs="$2" in="$3"; shift 3
  local out="$FUZZ/out/$t"
  rm -rf "$out"; mkdir -p "$out"
  local before; before=$(find "$in" -type f | wc -l)
  # -V: stop after SECS; timeout(1) as a backstop for calibration on a loaded machine.
  timeout -k 10 $(( secs + 120 )) nice -n 15 cargo afl fuzz -V "$secs" -t 1000+ -m none \
    -i "$in" -o "$out" "$@" -- "$CARGO_TARGET_DIR/release/$t" >"$out/afl.log" 2>&1 || {
      echo "fuzz.sh: afl-fuzz for $t failed; tail of $out/afl.log:" >&2
      tail -20 "$out/afl.log" >&2; return 1; }
  local d="$out/default"
  printf '%-12s execs %10s  exec/s %8s  corpus %4s -> %-5s crashes %s  hangs %s  edges %s\n' \
    "$t" "$(stat "$d" execs_done)" "$(stat "$d" execs_per_sec)" "$before" \
    "$(stat "$d" corpus_count)" "$(stat "$d" saved_crashes)" "$(stat "$d" saved_hangs)" \
    "$(stat "$d" bitmap_cvg)"
}

crashes_of() { stat "$FUZZ/out/$1/default" saved_crashes; }

case "$mode" in
  smoke)
    secs="${FUZZ_SMOKE_SECS:-10}"; bad=0
    echo "==> smoke: ${secs} s per target from fuzz/corpus/"
    for t in "${targets[@]}"; do
      run "$t" "$secs" "$FUZZ/corpus/$t"
      [ "$(crashes_of "$t")" = 0 ] || { echo "fuzz.sh: $t crashed: fuzz/out/$t/default/crashes/" >&2; bad=1; }
    done
    echo "==> fuzz smoke took $(( $(date +%s) - t0 )) s"
    exit "$bad"
    ;;
  run)
    echo "==> ${minutes} min per target (seeds: fuzz/corpus/ + the last run's queue)"
    for t in "${targets[@]}"; do
      in="$WORK/in-$t"; mkdir -p "$in"
      cp "$FUZZ/corpus/$t"/* "$in/"
      q="$FUZZ/out/$t/default/queue"
      if [ -d "$q" ]; then find "$q" -maxdepth 1 -type f -exec cp {} "$in/" \; ; fi
      run "$t" $(( minutes * 60 )) "$in"
    done
    ;;
  planted)
    echo "==> planted: until the crash or ${minutes} min (seed: one DHCP discover)"
    export AFL_BENCH_UNTIL_CRASH=1
    start=$(date +%s)
    mkdir -p "$WORK/in-planted"; cp "$FUZZ/corpus/dhcp/ovmf-pxe-discover" "$WORK/in-planted/"
    run planted $(( minutes * 60 )) "$WORK/in-planted"
    d="$FUZZ/out/planted/default"
    if [ "$(stat "$d" saved_crashes)" != 0 ]; then
      crash="$(find "$d/crashes" -type f -name 'id:*' | head -1)"
      ms="$(sed -n 's/.*,time:\([0-9]*\).*/\1/p' <<<"$crash")"
      echo "planted bug found after $(( ms / 1000 )) s of fuzzing; input (from byte 240):"
      od -A d -c -j 240 "$crash" | head -8
    else
      echo "planted bug NOT found in ${minutes} min"; exit 1
    fi
    ;;
esac
