#!/usr/bin/env bash
# Store write throughput on SQLite and PostgreSQL (docs/benchmarks.md, "Store").
#   bench/store.sh [CALLS]      PostgreSQL from SWITCHBOARD_BENCH_PG_URL (skipped if unset)
# Each database twice: bare writer (journal=off) and as the server runs it, with the
# write-ahead journal (journal=on): submit_p50_ns/p99 are what a call pays per record op.
#   PROFILE=debug bench/store.sh   use the debug build (the test profile) instead of release
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-20000}
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then cargo build --release --example store_bench >/dev/null
else cargo build --example store_bench >/dev/null; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/examples/store_bench
echo "# $(date -u +%FT%TZ) $(nproc) cores, $CALLS calls x 12 rows"
for j in off on; do
  $BIN --database "sqlite:///tmp/switchboard-store-bench.db" --calls "$CALLS" --journal $j
done
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  for j in off on; do
    $BIN --database "$SWITCHBOARD_BENCH_PG_URL" --calls "$CALLS" --journal $j
  done
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
