#!/usr/bin/env bash
# Store write throughput on SQLite and PostgreSQL (docs/benchmarks.md, "Store").
#   bench/store.sh [CALLS]      PostgreSQL from SWITCHBOARD_BENCH_PG_URL (skipped if unset)
# Each database twice: bare writer (journal=off) and as the server runs it, with the
# write-ahead journal (journal=on): submit_p50_ns/p99 are what a call pays per record op.
#   PROFILE=debug bench/store.sh   use the debug build (the test profile) instead of release
# SMOKE=1 bench/store.sh: 200 calls, SQLite only, debug build, its own temporary database
# (tests/bench_smoke.rs): fails when the run breaks, never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
DB=/tmp/switchboard-store-bench.db
if [[ $SMOKE == 1 ]]; then
  CALLS=${1:-200}
  PROFILE=debug
  TMP=$(mktemp -d /tmp/switchboard-store-smoke.XXXXXX)
  trap 'rm -rf "$TMP"' EXIT
  DB=$TMP/bench.db
else
  CALLS=${1:-20000}
  PROFILE=${PROFILE:-release}
fi
if [[ $PROFILE == release ]]; then cargo build --release --example store_bench >/dev/null
else cargo build --example store_bench >/dev/null; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/examples/store_bench
echo "# $(date -u +%FT%TZ) $(nproc) cores, $CALLS calls x 12 rows"
for j in off on; do
  line=$($BIN --database "sqlite://$DB" --calls "$CALLS" --journal $j)
  echo "$line"
  if [[ $SMOKE == 1 && $line != *rows_per_s=* ]]; then
    echo "smoke: no rows_per_s figure (journal=$j)" >&2; exit 1
  fi
done
if [[ $SMOKE == 1 ]]; then echo "smoke: ok"; exit 0; fi
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  for j in off on; do
    $BIN --database "$SWITCHBOARD_BENCH_PG_URL" --calls "$CALLS" --journal $j
  done
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
