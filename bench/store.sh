#!/usr/bin/env bash
# Store write throughput on SQLite and PostgreSQL (docs/benchmarks.md, "Store").
#   bench/store.sh [CALLS]      PostgreSQL from SWITCHBOARD_BENCH_PG_URL (skipped if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-20000}
cargo build --release --example store_bench >/dev/null
BIN=target/release/examples/store_bench
echo "# $(date -u +%FT%TZ) $(nproc) cores, $CALLS calls x 12 rows"
$BIN --database "sqlite:///tmp/switchboard-store-bench.db" --calls "$CALLS"
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  $BIN --database "$SWITCHBOARD_BENCH_PG_URL" --calls "$CALLS"
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
