#!/usr/bin/env bash
# Campaign contact-list build from a large ticket table (docs/benchmarks.md, "Campaigns
# (issue 6)"): fills a fresh database with TICKETS tickets (10 % delayed) through the
# project's migrations, then times store::campaigns::create -- what POST /api/campaigns does
# -- for {"status": "delayed"}, and the dialer's first reads of the list.
#   bench/campaign_list.sh [TICKETS]     default 1 000 000
# SQLite: /tmp/switchboard-campaign-list-bench.db (deleted first). PostgreSQL when
# SWITCHBOARD_BENCH_PG_URL=postgres://... is set (its campaign and ticket tables are emptied:
# use a throwaway database).
set -euo pipefail
cd "$(dirname "$0")/.."
TICKETS=${1:-1000000}
cargo build --release --example campaign_list_bench >/dev/null
BIN=target/release/examples/campaign_list_bench
DB=/tmp/switchboard-campaign-list-bench.db
echo "# $(date -u +%FT%TZ) $(nproc) cores, $TICKETS tickets, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
/usr/bin/time -f "# sqlite whole run: %e s wall, %U s user, %S s sys, max RSS %M KiB" \
  $BIN --database "sqlite://$DB" --tickets "$TICKETS"
ls -l "$DB" | awk '{printf "# sqlite file: %.0f MiB\n", $5 / 1048576}'
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  /usr/bin/time -f "# postgresql whole run (client): %e s wall, %U s user, %S s sys, max RSS %M KiB" \
    $BIN --database "$SWITCHBOARD_BENCH_PG_URL" --tickets "$TICKETS"
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
