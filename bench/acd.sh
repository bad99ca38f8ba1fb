#!/usr/bin/env bash
# ACD dispatch cost (docs/benchmarks.md, "ACD"): 500 agents and 2000 waiting callers on a
# queue set, plus smaller and larger sizes to show the cost per event does not grow with
# queues x members.   bench/acd.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-50000}
cargo build --release --example acd_bench >/dev/null
echo "# $(date -u +%FT%TZ) $(nproc) cores"
/usr/bin/time -f "# whole run: %e s wall, %U s user, max RSS %M KiB" \
  target/release/examples/acd_bench "$EVENTS"
