#!/usr/bin/env bash
# ACD dispatch cost (docs/benchmarks.md, "ACD"): 500 agents and 2000 waiting callers on a
# queue set, plus smaller and larger sizes to show the cost per event does not grow with
# queues x members.   bench/acd.sh [EVENTS]
# SMOKE=1 bench/acd.sh: 200 events on the debug build, a few seconds (tests/bench_smoke.rs):
# fails when the run breaks (a figure missing), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  EVENTS=${1:-200}
  cargo build --example acd_bench >/dev/null
  BIN=${CARGO_TARGET_DIR:-target}/debug/examples/acd_bench
else
  EVENTS=${1:-50000}
  cargo build --release --example acd_bench >/dev/null
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/acd_bench
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores"
OUT=$(mktemp /tmp/switchboard-acd-bench.XXXXXX)
trap 'rm -f "$OUT"' EXIT
/usr/bin/time -f "# whole run: %e s wall, %U s user, max RSS %M KiB" "$BIN" "$EVENTS" | tee "$OUT"
if [[ $SMOKE == 1 ]]; then
  # 9 strategy x size runs + 2 single-queue runs, each with its p99.
  runs=$(grep -c ' p99 ' "$OUT" || true)
  [[ $runs -ge 11 ]] || { echo "smoke: expected 11 result lines with a p99, got $runs" >&2; exit 1; }
  echo "smoke: ok"
fi
