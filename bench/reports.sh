#!/usr/bin/env bash
# Reports over a million call records (docs/benchmarks.md, "Reports"; issue 17: a report
# answers in <= 1 s over 1 000 000 call records on SQLite and on PostgreSQL).
#   bench/reports.sh [N]      default 1 000 000
# Starts the server on a fresh database (the project's migrations), seeds it with one
# INSERT ... SELECT per table over a generated series (not row by row): N call records over
# 30 days (2026-11-01 .. 2026-12-01 UTC, half inbound through five queues, one in seven not
# answered), their queue_log rows (enter, connect or abandon, complete), a disposition per
# answered inbound call, and N delayed tickets (5 % vip, 15 % business); creates a campaign
# of N contacts through POST /api/campaigns (timed), settles its contacts (states, outcomes,
# attempts) and sends an SMS for each failed one; ANALYZE; then times, three times each:
#   GET /api/reports/queues  one day, 15-minute intervals, and the whole 30 days by day
#   GET /api/reports/calls   the same two ranges
#   both over 30 days again from 1 ms before midnight (unaligned: that first partial 15
#   minutes grouped from the raw rows, the rest from the per-15-minute totals of ADR 0009),
#   failing unless the rows are the same as the aligned request's
#   GET /api/reports/campaigns/{id}
# Each line: HTTP status, wall time of the request (curl) and the server's CPU for it
# (utime+stime from /proc, SQLite only: with PostgreSQL the work is in the database server).
# SQLite: a fresh file in the printed folder. PostgreSQL when SWITCHBOARD_BENCH_PG_URL=
# postgres://... is set: its tables are EMPTIED first (use a throwaway database).
#   PROFILE=debug bench/reports.sh   the debug build (cargo build) instead of release
# SMOKE=1 bench/reports.sh: N = 2 000, SQLite only, debug build (SWITCHBOARD_BIN, else
# target/debug/switchboard), its own temporary folder and free port (tests/bench_smoke.rs):
# fails when the run breaks (server, seeding, a report's status or totals), never on the
# figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  N=${1:-2000}
  PROFILE=debug
else
  N=${1:-1000000}
  PROFILE=${PROFILE:-release}
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=${HTTP_PORT:-$(free_port)}
SIP_PORT=${SIP_PORT:-$(free_port)}
TOKEN=reports-bench-$RANDOM$RANDOM
OUT=$(mktemp -d /tmp/switchboard-reports.XXXXXX)
SRV=
cleanup() {
  local rc=$?
  [[ -n "$SRV" ]] && { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

if [[ -n "${SWITCHBOARD_BIN:-}" ]]; then
  BIN=$SWITCHBOARD_BIN
elif [[ $PROFILE == release ]]; then
  cargo build --release --bin switchboard > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard
else
  cargo build --bin switchboard > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $N calls / contacts, $PROFILE build, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?); folder $OUT"

{
  sed -e "s|^spool_dir = .*|spool_dir = \"$OUT/spool\"|" -e "s|^demo_data = .*|demo_data = false|" \
      config/default.toml
  cat <<CFG

[[trunk]]
name = "bench"
address = "127.0.0.1:9"
transport = "udp"
CFG
} > "$OUT/bench.toml"

BASE=1793491200   # 2026-11-01T00:00:00Z
SPAN=2592000      # 30 days
# SQL for the engine: $1 sqlite|postgres.
seed_sql() {
  local e=$1 rows t
  if [[ $e == sqlite ]]; then
    rows="WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $N - 1)"
    t() { echo "strftime('%Y-%m-%dT%H:%M:%fZ', $BASE + ($1), 'unixepoch')"; }
  else
    rows="WITH n(i) AS (SELECT generate_series(CAST(0 AS BIGINT), $N - 1))"
    t() { echo "to_timestamp($BASE + ($1))"; }
  fi
  # A call every SPAN/N seconds; even i inbound through queue q0..q4, odd i outbound; one in
  # seven not answered; wait 0-60 s, talk 30-300 s.
  local at="$SPAN * i / $N" wait="(i * 37) % 60000" talk="(30 + (i * 13) % 270)"
  cat <<SQL
BEGIN;
$rows
INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, started_at,
  answered_at, ended_at, disposition, queue, agent, wait_ms)
SELECT 'c' || i, 's' || i, CASE WHEN i % 2 = 0 THEN 'inbound' ELSE 'outbound' END,
  'sip:+1555' || i || '@bench', 'sip:support@bench', '+1555' || i, $(t "$at"),
  CASE WHEN i % 7 <> 0 THEN $(t "$at + 5") END,
  CASE WHEN i % 7 <> 0 THEN $(t "$at + 5 + $talk") ELSE $(t "$at + 20") END,
  CASE WHEN i % 7 <> 0 THEN 'answered' WHEN i % 2 = 0 THEN 'cancelled' ELSE 'no_answer' END,
  CASE WHEN i % 2 = 0 THEN 'q' || (i % 5) END, CASE WHEN i % 2 = 0 THEN 'agent' || (i % 50) END,
  CASE WHEN i % 2 = 0 THEN $wait END
FROM n;
$rows
INSERT INTO queue_log (id, at, queue, call_id, event, position)
SELECT 'e' || i, $(t "$at"), 'q' || (i % 5), 'c' || i, 'enter', 1 FROM n WHERE i % 2 = 0;
$rows
INSERT INTO queue_log (id, at, queue, call_id, agent, event, wait_ms)
SELECT 'x' || i, $(t "$at + ($wait) / 1000"), 'q' || (i % 5), 'c' || i,
  CASE WHEN i % 7 <> 0 THEN 'agent' || (i % 50) END,
  CASE WHEN i % 7 <> 0 THEN 'connect' ELSE 'abandon' END, $wait FROM n WHERE i % 2 = 0;
$rows
INSERT INTO queue_log (id, at, queue, call_id, agent, event, talk_ms)
SELECT 'k' || i, $(t "$at + 5 + $talk"), 'q' || (i % 5), 'c' || i, 'agent' || (i % 50),
  'complete', $talk * 1000 FROM n WHERE i % 2 = 0 AND i % 7 <> 0;
$rows
INSERT INTO dispositions (call_id, ticket_id, agent, outcome, resolution, created_at)
SELECT 'c' || i, i + 1, 'agent' || (i % 50), CASE WHEN i % 3 = 0 THEN 'refund' ELSE 'wait' END,
  CASE WHEN i % 3 = 0 THEN 'refund' ELSE 'wait' END, $(t "$at + 5 + $talk")
FROM n WHERE i % 2 = 0 AND i % 7 <> 0;
$rows
INSERT INTO tickets (order_id, customer_name, phone, segment, timezone, status, delay_days)
SELECT 'o' || i, 'Customer ' || i, '+1555' || (1000000 + i),
  CASE WHEN i % 20 = 0 THEN 'vip' WHEN i % 20 < 4 THEN 'business' ELSE 'standard' END,
  'UTC', 'delayed', 1 + i % 14 FROM n;
COMMIT;
ANALYZE;
SQL
}
# The campaign's contacts settled as after a run: 10 % pending, 10 % failed (an SMS sent),
# 10 % opted out, 70 % completed (a quarter refund, the rest wait); 1-3 attempts.
settle_sql() {
  local e=$1 cid=$2 now
  if [[ $e == sqlite ]]; then now="strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"; else now="now()"; fi
  cat <<SQL
BEGIN;
UPDATE campaign_contacts SET attempts = 1 + id % 3,
  state = CASE id % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'failed' WHEN 2 THEN 'opted_out' ELSE 'completed' END,
  last_disposition = CASE id % 10 WHEN 0 THEN NULL WHEN 1 THEN 'no_answer' ELSE 'answered' END,
  outcome = CASE WHEN id % 10 = 2 THEN 'opt_out' WHEN id % 10 < 2 THEN NULL
                 WHEN id % 4 = 0 THEN 'refund' ELSE 'wait' END
WHERE campaign_id = $cid;
INSERT INTO campaign_sms (contact_id, campaign_id, ticket_id, phone, body, state, tries,
  next_try_at, created_at, sent_at, updated_at)
SELECT id, campaign_id, ticket_id, phone, 'Your order is delayed', 'sent', 1, $now, $now, $now, $now
FROM campaign_contacts WHERE campaign_id = $cid AND state = 'failed';
COMMIT;
ANALYZE;
SQL
}

cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# time_get LABEL PATH: three requests; prints status, wall ms and server CPU ms of each.
time_get() {
  local label=$1 path=$2 k c0 c1 res
  for k in 1 2 3; do
    c0=$(cpu_of "$SRV")
    res=$(curl -s -o "$OUT/last.json" -w '%{http_code} %{time_total}' \
      -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT$path")
    c1=$(cpu_of "$SRV")
    awk -v l="$label" -v r="$res" -v c="$((c1 - c0))" -v t="$TCK" -v b="$(wc -c < "$OUT/last.json")" \
      'BEGIN { split(r, a, " "); printf "%-34s status=%s wall_ms=%.0f server_cpu_ms=%.0f bytes=%d\n", l, a[1], a[2] * 1000, c * 1000 / t, b }'
    [[ ${res%% *} == 200 ]] || { echo "$label: HTTP ${res%% *}: $(head -c 300 "$OUT/last.json")" >&2; exit 1; }
  done
}

run_engine() {
  local e=$1 url=$2 sql
  if [[ $e == sqlite ]]; then sql=(sqlite3 -bail "$OUT/switchboard.db"); else sql=(psql -q -v ON_ERROR_STOP=1 "$url"); fi
  RUST_LOG=${RUST_LOG:-warn} $BIN run --config "$OUT/bench.toml" --database "$url" \
    --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" --api-token "$TOKEN" \
    --no-demo-data > "$OUT/server-$e.stdout" 2> "$OUT/server-$e.log" &
  SRV=$!
  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" > /dev/null; do
    kill -0 "$SRV" 2>/dev/null || { tail -20 "$OUT/server-$e.log"; exit 1; }
    ((SECONDS < deadline)) || { echo "server not healthy within 60 s" >&2; exit 1; }
    sleep 0.2
  done
  if [[ $e == postgres ]]; then
    "${sql[@]}" -c "TRUNCATE call_records, queue_log, dispositions, tickets, campaigns,
      campaign_contacts, campaign_attempts, campaign_sms RESTART IDENTITY" > /dev/null
  fi
  local t0=$EPOCHREALTIME
  { [[ $e == sqlite ]] && echo ".timeout 60000"; seed_sql "$e"; } | "${sql[@]}" > /dev/null
  echo "$e: seeded $N call records (+ queue_log, dispositions) and $N tickets in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"
  t0=$EPOCHREALTIME
  local body
  body=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\": \"reports-bench\", \"dialplan\": \"delay-notify\", \"trunk\": \"bench\", \"caller_id\": \"+15550100\", \"tickets\": {\"status\": \"delayed\"}, \"segments\": {\"vip\": {\"priority\": 1}}}" \
    "http://127.0.0.1:$HTTP_PORT/api/campaigns")
  [[ ${body##*$'\n'} == 201 ]] || { echo "POST /api/campaigns: $body" >&2; exit 1; }
  local cid
  cid=$(echo "${body%$'\n'*}" | jq -r .id)
  echo "$e: campaign $cid of $(echo "${body%$'\n'*}" | jq -r .contacts) contacts created in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s (POST /api/campaigns)"
  t0=$EPOCHREALTIME
  { [[ $e == sqlite ]] && echo ".timeout 60000"; settle_sql "$e" "$cid"; } | "${sql[@]}" > /dev/null
  [[ $e == postgres ]] && "${sql[@]}" -c "VACUUM ANALYZE" > /dev/null 2>&1
  echo "$e: contacts settled in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s"
  time_get "$e queues 1 day / 15m" "/api/reports/queues?from=2026-11-15&to=2026-11-16&interval=15m"
  local day_offered
  day_offered=$(jq '[.rows[].offered] | add' "$OUT/last.json")
  time_get "$e queues 30 days / 1d" "/api/reports/queues?from=2026-11-01&to=2026-12-01&interval=1d"
  local offered
  offered=$(jq '[.rows[].offered] | add' "$OUT/last.json")
  time_get "$e calls 1 day / 15m" "/api/reports/calls?from=2026-11-15&to=2026-11-16&interval=15m"
  time_get "$e calls 30 days / 1d" "/api/reports/calls?from=2026-11-01&to=2026-12-01&interval=1d"
  local calls
  calls=$(jq '[.rows[].calls] | add' "$OUT/last.json")
  # The same month from 1 ms before midnight: not 15-minute aligned, so its first partial
  # 15 minutes are grouped from the raw rows (ADR 0009); the rows must be the same.
  local r kind
  for kind in queues calls; do
    time_get "$e $kind 30 days / 1d" "/api/reports/$kind?from=2026-11-01&to=2026-12-01&interval=1d" > /dev/null
    jq -cS .rows "$OUT/last.json" > "$OUT/totals.json"
    time_get "$e $kind 30 days / 1d (-1 ms)" "/api/reports/$kind?from=2026-10-31T23:59:59.999Z&to=2026-12-01&interval=1d"
    r=$(jq -cS .rows "$OUT/last.json")
    [[ $r == "$(cat "$OUT/totals.json")" ]] || { echo "$e $kind: the totals' rows differ from the raw rows'" >&2; exit 1; }
  done
  time_get "$e campaign report" "/api/reports/campaigns/$cid"
  local contacts sms
  contacts=$(jq '.total.contacts' "$OUT/last.json")
  sms=$(jq '.total.sms_sent' "$OUT/last.json")
  echo "$e: totals: calls=$calls offered=$offered (one day: $day_offered) contacts=$contacts sms_sent=$sms"
  if [[ $calls != "$N" || $offered != $(((N + 1) / 2)) || $contacts != "$N" ]]; then
    echo "$e: a report's totals are wrong (expected calls=$N offered=$(((N + 1) / 2)) contacts=$N)" >&2
    exit 1
  fi
  kill "$SRV"; wait "$SRV" 2>/dev/null || true; SRV=
}

run_engine sqlite "sqlite://$OUT/switchboard.db"
ls -l "$OUT/switchboard.db" | awk '{printf "# sqlite file: %.0f MiB\n", $5 / 1048576}'
if [[ $SMOKE == 1 ]]; then echo "smoke: ok"; exit 0; fi
if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" ]]; then
  run_engine postgres "$SWITCHBOARD_BENCH_PG_URL"
else
  echo "postgresql: set SWITCHBOARD_BENCH_PG_URL=postgres://... to measure it"
fi
