#!/usr/bin/env bash
# Campaign contact-list build from a large ticket table (docs/benchmarks.md, "Campaigns
# (issue 6)"): fills a fresh database with TICKETS tickets (10 % delayed) through the
# project's migrations, then times store::campaigns::create -- what POST /api/campaigns does
# -- for {"status": "delayed"}, and the dialer's first reads of the list.
#   bench/campaign_list.sh [TICKETS]     default 1 000 000
# SQLite: /tmp/switchboard-campaign-list-bench.db (deleted first). PostgreSQL when
# SWITCHBOARD_BENCH_PG_URL=postgres://... is set (its campaign and ticket tables are emptied:
# use a throwaway database).
# SMOKE=1 bench/campaign_list.sh: 2 000 tickets, SQLite only, debug build, its own temporary
# database (tests/bench_smoke.rs): fails when the run breaks, never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  TICKETS=${1:-2000}
  cargo build --example campaign_list_bench >/dev/null
  BIN=${CARGO_TARGET_DIR:-target}/debug/examples/campaign_list_bench
  TMP=$(mktemp -d /tmp/switchboard-campaign-list-smoke.XXXXXX)
  trap 'rm -rf "$TMP"' EXIT
  DB=$TMP/bench.db
else
  TICKETS=${1:-1000000}
  cargo build --release --example campaign_list_bench >/dev/null
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/campaign_list_bench
  DB=/tmp/switchboard-campaign-list-bench.db
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, $TICKETS tickets, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
/usr/bin/time -f "# sqlite whole run: %e s wall, %U s user, %S s sys, max RSS %M KiB" \
  "$BIN" --database "sqlite://$DB" --tickets "$TICKETS" | tee "$DB.out"
ls -l "$DB" | awk '{printf "# sqlite file: %.0f MiB\n", $5 / 1048576}'
if [[ $SMOKE == 1 ]]; then
  grep -q 'list_size=' "$DB.out" && grep -q ' reads campaign=' "$DB.out" \
    || { echo "smoke: a figure is missing (list_size=, reads)" >&2; exit 1; }
  echo "smoke: ok"
  exit 0
fi
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  /usr/bin/time -f "# postgresql whole run (client): %e s wall, %U s user, %S s sys, max RSS %M KiB" \
    $BIN --database "$SWITCHBOARD_BENCH_PG_URL" --tickets "$TICKETS"
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
