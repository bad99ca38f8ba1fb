#!/usr/bin/env bash
# Open wallboards on the running server (docs/benchmarks.md, "Open wallboards"; issue 17:
# with 500 agents, 50 queues and 20 running campaigns, building a snapshot <= 5 ms and 200
# open wallboards <= 5 % of a core).
#   bench/wallboard.sh            60 s windows, 50 snapshot requests
# Writes a config with 50 queues (q0..q49, plus the shipped `support`) and a trunk at a
# closed port, starts the server on a fresh database and seeds it:
#   - 500 agents agent0..agent499 (agent k serves q(k%50) and q((k+7)%50)): agent0 through
#     `switchboard agent add` (which also runs the migrations), the other 499 copied from it
#     in SQL (nobody registers, so their HA1 does not matter), read by the ACD at start; a
#     stored registration (contact at a closed port, expiring tomorrow) for 3 in 4 of them,
#     restored at start, so those are logged in; then 1 in 4 paused ("lunch") through the
#     admin API: 250 available, 125 paused, 125 logged out;
#   - the day's history in SQL (one INSERT ... SELECT per table over a generated series):
#     10 500 queued calls today (between local midnight and now) and 10 500 yesterday over the
#     50 queues, one in seven abandoned: 60 000 queue_log rows (enter, connect or abandon,
#     complete), half today, and their call_records; 2 000 IVR-only hotline calls a day with
#     a call_outcomes row;
#   - 20 campaigns x 1 000 contacts through POST /api/campaigns (ticket_ids of 20 000 seeded
#     tickets) and POST .../start: `running`, but with `schedule.start` a day ahead, so their
#     runners only poll their state (never a dial: the dialer's `before_start`); then 40 % of
#     each campaign's contacts settled in SQL in the last 10 minutes (completed wait/refund,
#     failed no_answer, opted out) with an outbound call record each.
# Then measures (bench/wallboard_clients.py): the server's utime+stime (/proc/PID/stat) over
# a WINDOW with each count of open `GET /api/wallboard/events` streams in STREAMS (read
# token), every stream's snapshot count checked; then REQUESTS sequential `GET
# /api/wallboard` (p50/p99 wall time, server CPU per request). With PostgreSQL on this host the
# CPU of the pool's backends (pg_stat_activity, /proc) is measured too and counts toward the
# target: the queries run there. Targets (full mode; exit 1 when
# one is missed): GET /api/wallboard p50 <= 5 ms, and 200 streams <= 5 % of one core above
# the 0-stream window.
# SQLite: a fresh file in the printed folder. PostgreSQL when SWITCHBOARD_BENCH_PG_URL=
# postgres://... is set: its tables are EMPTIED first (use a throwaway database).
#   WINDOW=S STREAMS="0 1 200" REQUESTS=N COLD=N   override the defaults (60, "0 1 200", 50, 5;
#                                         COLD: GETs 2.1 s apart, each reading the day afresh)
#   SWITCHBOARD_BIN=PATH                  that server binary (else the release build)
#   PROFILE=debug bench/wallboard.sh      the debug build (cargo build) instead of release
# SMOKE=1 bench/wallboard.sh: the same data, 10 s windows with 0 and 200 streams, 20
# requests, SQLite only, debug build (SWITCHBOARD_BIN, else target/debug/switchboard), its
# own temporary folder and free ports (tests/bench_smoke.rs): fails when the run breaks
# (server, seeding, a stream short of snapshots, a figure missing), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  WINDOW=${WINDOW:-10}
  STREAMS=${STREAMS:-0 200}
  REQUESTS=${REQUESTS:-20}
  COLD=${COLD:-2}
  PROFILE=debug
else
  WINDOW=${WINDOW:-60}
  STREAMS=${STREAMS:-0 1 200}
  REQUESTS=${REQUESTS:-50}
  COLD=${COLD:-5}
  PROFILE=${PROFILE:-release}
fi
AGENTS=500 QUEUES=50 CAMPAIGNS=20 CONTACTS=1000
CALLS_PER_DAY=10500   # x (enter + connect|abandon + 6/7 complete) = 30 000 queue_log rows a day
IVR_PER_DAY=2000
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=${HTTP_PORT:-$(free_port)}
SIP_PORT=${SIP_PORT:-$(free_port)}
TOKEN=wallboard-bench-$RANDOM$RANDOM
READ_TOKEN=wallboard-read-$RANDOM$RANDOM
OUT=$(mktemp -d /tmp/switchboard-wallboard.XXXXXX)
SRV=
cleanup() {
  local rc=$?
  [[ -n "$SRV" ]] && { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

BUILD="$PROFILE build"
if [[ -n "${SWITCHBOARD_BIN:-}" ]]; then
  BIN=$SWITCHBOARD_BIN
  BUILD="SWITCHBOARD_BIN"
elif [[ $PROFILE == release ]]; then
  cargo build --release --bin switchboard > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard
else
  cargo build --bin switchboard > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $AGENTS agents, $QUEUES queues, $CAMPAIGNS campaigns x $CONTACTS contacts, $BUILD ($BIN), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?); folder $OUT"

{
  sed -e "s|^spool_dir = .*|spool_dir = \"$OUT/spool\"|" -e "s|^demo_data = .*|demo_data = false|" \
      config/default.toml
  for ((q = 0; q < QUEUES; q++)); do
    printf '\n[[queue]]\nname = "q%d"\nservice_level_s = 30\n' "$q"
  done
  # Never dialed (the campaigns' schedule starts tomorrow); a closed port all the same.
  printf '\n[[trunk]]\nname = "bench"\naddress = "127.0.0.1:9"\ntransport = "udp"\n'
} > "$OUT/bench.toml"

if [[ -n "${SWITCHBOARD_BENCH_PG_URL:-}" && $SMOKE != 1 ]]; then
  ENGINE=postgres URL=$SWITCHBOARD_BENCH_PG_URL
  SQL=(psql -X -q -v ON_ERROR_STOP=1 "$URL")
else
  ENGINE=sqlite URL=sqlite://$OUT/switchboard.db
  SQL=(sqlite3 -bail "$OUT/switchboard.db")
fi
run_sql() { { [[ $ENGINE == sqlite ]] && echo ".timeout 60000"; cat; } | "${SQL[@]}" > /dev/null; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }

NOW=$(date +%s)
MIDNIGHT=$(date -d 'today 00:00' +%s)   # the wallboard's day starts at local midnight
# Today's calls between midnight and 10 min ago (their completes land before now).
SPAN_TODAY=$((NOW - MIDNIGHT - 600 > 0 ? NOW - MIDNIGHT - 600 : 0))
if [[ $ENGINE == sqlite ]]; then
  rows() { echo "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1)"; }
  t() { echo "strftime('%Y-%m-%dT%H:%M:%fZ', $1, 'unixepoch')"; }
  now_sql="strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
else
  rows() { echo "WITH n(i) AS (SELECT generate_series(CAST(0 AS BIGINT), $1 - 1))"; }
  t() { echo "to_timestamp($1)"; }
  now_sql="now()"
fi

# One day of queued calls and IVR-only calls: $1 tag, $2 start (Unix s), $3 span (s).
day_sql() {
  local tag=$1 base=$2 span=$3 c=$CALLS_PER_DAY
  local at="($base + $span * i / $c)" wait="((i * 37) % 60)" talk="(30 + (i * 13) % 270)"
  local q="'q' || (i % $QUEUES)" agent="'agent' || (i % $QUEUES + $QUEUES * ((i / $QUEUES) % 10))"
  cat <<SQL
$(rows $c)
INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, started_at,
  answered_at, ended_at, disposition, queue, agent, wait_ms)
SELECT '$tag-c' || i, '$tag-s' || i, 'inbound', 'sip:+1555' || i || '@bench', 'sip:hotline@bench',
  '+1555' || i, $(t "$at"), $(t "$at"),
  CASE WHEN i % 7 = 0 THEN $(t "$at + $wait") ELSE $(t "$at + $wait + $talk") END,
  'answered', $q, CASE WHEN i % 7 <> 0 THEN $agent END, $wait * 1000
FROM n;
$(rows $c)
INSERT INTO queue_log (id, at, queue, call_id, event, position)
SELECT '$tag-e' || i, $(t "$at"), $q, '$tag-c' || i, 'enter', 1 FROM n;
$(rows $c)
INSERT INTO queue_log (id, at, queue, call_id, agent, event, wait_ms)
SELECT '$tag-x' || i, $(t "$at + $wait"), $q, '$tag-c' || i, CASE WHEN i % 7 <> 0 THEN $agent END,
  CASE WHEN i % 7 <> 0 THEN 'connect' ELSE 'abandon' END, $wait * 1000 FROM n;
$(rows $c)
INSERT INTO queue_log (id, at, queue, call_id, agent, event, talk_ms)
SELECT '$tag-k' || i, $(t "$at + $wait + $talk"), $q, '$tag-c' || i, $agent, 'complete', $talk * 1000
FROM n WHERE i % 7 <> 0;
$(rows $IVR_PER_DAY)
INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, ticket_id,
  started_at, answered_at, ended_at, disposition)
SELECT '$tag-h' || i, '$tag-hs' || i, 'inbound', 'sip:+1666' || i || '@bench', 'sip:hotline@bench',
  '+1666' || i, 1 + i, $(t "$base + $span * i / $IVR_PER_DAY"), $(t "$base + $span * i / $IVR_PER_DAY"),
  $(t "$base + $span * i / $IVR_PER_DAY + 40"), 'answered' FROM n;
$(rows $IVR_PER_DAY)
INSERT INTO call_outcomes (call_id, ticket_id, choice, at)
SELECT '$tag-h' || i, 1 + i, CASE WHEN i % 3 = 0 THEN 'refund' ELSE 'wait' END,
  $(t "$base + $span * i / $IVR_PER_DAY + 30") FROM n;
SQL
}

# The server must not run yet: the ACD reads the agents at start. `agent add` runs the
# migrations on the empty database.
t0=$EPOCHREALTIME
printf 'bench\n' | "$BIN" agent add agent0 --password-stdin --queue q0 --queue q7 \
  --config "$OUT/bench.toml" --database "$URL" > "$OUT/agent-add.log" 2>&1 \
  || { cat "$OUT/agent-add.log"; exit 1; }
if [[ $ENGINE == postgres ]]; then
  run_sql <<SQL
DELETE FROM agent_queues WHERE agent_id IN (SELECT id FROM agents WHERE name <> 'agent0');
DELETE FROM agent_skills WHERE agent_id IN (SELECT id FROM agents WHERE name <> 'agent0');
DELETE FROM agents WHERE name <> 'agent0';
TRUNCATE agent_state, registrations, call_records, call_events, call_outcomes, call_surveys,
  queue_log, dispositions, tickets, campaigns, campaign_contacts, campaign_attempts,
  campaign_sms, sms_replies, report_agent_totals, report_call_totals, report_queue_totals
  RESTART IDENTITY;
SQL
fi
run_sql <<SQL
BEGIN;
$(rows $AGENTS)
INSERT INTO agents (name, realm, ha1_md5, ha1_sha256, created_at, updated_at)
SELECT 'agent' || i, realm, ha1_md5, ha1_sha256, created_at, updated_at
FROM n, agents WHERE agents.name = 'agent0' AND i > 0;
DELETE FROM agent_queues;
INSERT INTO agent_queues (agent_id, queue)
SELECT id, 'q' || (CAST(SUBSTR(name, 6) AS INTEGER) % $QUEUES) FROM agents WHERE name LIKE 'agent%';
INSERT INTO agent_queues (agent_id, queue)
SELECT id, 'q' || ((CAST(SUBSTR(name, 6) AS INTEGER) + 7) % $QUEUES) FROM agents WHERE name LIKE 'agent%';
-- Phones registered (restored at start: the agent is reachable, so logged in) for 3 in 4
-- agents, at a closed port: no caller ever rings them.
$(rows $AGENTS)
INSERT INTO registrations (aor, contact, expires_at, source, user_agent, call_id, cseq)
SELECT 'agent' || i, 'sip:agent' || i || '@127.0.0.1:9', $(t "$NOW + 86400"), 'udp:127.0.0.1:9',
  'bench', 'reg-' || i, 1 FROM n WHERE i % 4 <> 3;
$(day_sql y "$((MIDNIGHT - 86400))" 86400)
$(day_sql t "$MIDNIGHT" "$SPAN_TODAY")
$(rows $((CAMPAIGNS * CONTACTS)))
INSERT INTO tickets (order_id, customer_name, phone, segment, timezone, status, delay_days)
SELECT 'o' || i, 'Customer ' || i, '+1555' || (1000000 + i),
  CASE WHEN i % 20 = 0 THEN 'vip' WHEN i % 20 < 4 THEN 'business' ELSE 'standard' END,
  'UTC', 'delayed', 1 + i % 14 FROM n;
COMMIT;
ANALYZE;
SQL
# enter + connect|abandon for every call, complete for the 6 in 7 answered.
QL_ROWS=$((2 * (3 * CALLS_PER_DAY - (CALLS_PER_DAY + 6) / 7)))
echo "$ENGINE: seeded $AGENTS agents, $((CALLS_PER_DAY * 2)) queued calls ($QL_ROWS queue_log rows, half today), $((IVR_PER_DAY * 2)) IVR calls, $((CAMPAIGNS * CONTACTS)) tickets in $(elapsed "$t0") s"

RUST_LOG=${RUST_LOG:-warn} "$BIN" run --config "$OUT/bench.toml" --database "$URL" \
  --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" --api-token "$TOKEN" \
  --api-read-token "$READ_TOKEN" --no-demo-data > "$OUT/server.stdout" 2> "$OUT/server.log" &
SRV=$!
deadline=$((SECONDS + 60))
until curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" > /dev/null; do
  kill -0 "$SRV" 2>/dev/null || { tail -20 "$OUT/server.log"; exit 1; }
  ((SECONDS < deadline)) || { echo "server not healthy within 60 s" >&2; exit 1; }
  sleep 0.2
done

api() {  # api METHOD PATH [BODY]: the body of a 2xx answer, else exit
  local res
  res=$(curl -s -w '\n%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' ${3:+--data-binary "$3"} "http://127.0.0.1:$HTTP_PORT$2")
  [[ ${res##*$'\n'} == 2?? ]] || { echo "$1 $2: ${res//$'\n'/ }" >&2; exit 1; }
  echo "${res%$'\n'*}"
}
t0=$EPOCHREALTIME
TOMORROW=$(date -u -d '+1 day' +%FT%TZ)
for ((c = 0; c < CAMPAIGNS; c++)); do
  body=$(jq -nc --arg name "wallboard-bench-$c" --arg start "$TOMORROW" \
    --argjson from $((c * CONTACTS + 1)) --argjson to $(((c + 1) * CONTACTS + 1)) \
    '{name: $name, dialplan: "delay-notify", trunk: "bench", caller_id: "+15550100",
      ticket_ids: [range($from; $to)], schedule: {start: $start}}')
  created=$(api POST /api/campaigns "$body")
  [[ $(jq -r .contacts <<< "$created") == "$CONTACTS" ]] || { echo "campaign $c: $created" >&2; exit 1; }
  api POST "/api/campaigns/$(jq -r .id <<< "$created")/start" > /dev/null
done
echo "$ENGINE: $CAMPAIGNS campaigns x $CONTACTS contacts created and started (POST /api/campaigns, .../start) in $(elapsed "$t0") s"
# 40 % of each campaign's contacts settled within the last 10 minutes, each with its call.
t0=$EPOCHREALTIME
run_sql <<SQL
BEGIN;
UPDATE campaign_contacts SET attempts = 1, updated_at = $(t "$NOW - 600 + id % 600"),
  state = CASE id % 10 WHEN 0 THEN 'completed' WHEN 1 THEN 'completed' WHEN 2 THEN 'failed' ELSE 'opted_out' END,
  last_disposition = CASE WHEN id % 10 = 2 THEN 'no_answer' ELSE 'answered' END,
  outcome = CASE id % 10 WHEN 0 THEN 'wait' WHEN 1 THEN 'refund' WHEN 3 THEN 'opt_out' END
WHERE id % 10 < 4;
INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, ticket_id,
  campaign_id, started_at, answered_at, ended_at, disposition)
SELECT 'cc-' || id, 'ccs-' || id, 'outbound', 'sip:+15550100@bench', 'sip:' || phone || '@bench',
  phone, ticket_id, campaign_id, $(t "$NOW - 660 + id % 600"),
  CASE WHEN id % 10 <> 2 THEN $(t "$NOW - 650 + id % 600") END, $(t "$NOW - 600 + id % 600"),
  CASE WHEN id % 10 = 2 THEN 'no_answer' ELSE 'answered' END
FROM campaign_contacts WHERE id % 10 < 4;
COMMIT;
ANALYZE;
SQL
echo "$ENGINE: 40 % of the contacts settled in $(elapsed "$t0") s"
python3 bench/wallboard_clients.py agents --port "$HTTP_PORT" --token "$TOKEN" --agents "$AGENTS" \
  | tee "$OUT/agents.out"
sleep 2   # the campaign runners' first polls, the agents' queue_log writes

# PostgreSQL runs the queries in its own processes: the backends of the server's pool count
# too when the database is on this host (their /proc entries are readable).
DB_PIDS=
if [[ $ENGINE == postgres ]]; then
  for pid in $("${SQL[@]}" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres ]] && DB_PIDS+="$pid "
  done
  echo "postgres: ${DB_PIDS:-no} local backends of the server's pool counted as the database's CPU"
fi
python3 bench/wallboard_clients.py measure --port "$HTTP_PORT" --token "$READ_TOKEN" --pid "$SRV" \
  --streams "$STREAMS" --window "$WINDOW" --requests "$REQUESTS" --cold "$COLD" --db-pids "$DB_PIDS" \
  | tee "$OUT/measure.out"
kill -0 "$SRV" 2>/dev/null || { echo "the server died" >&2; tail -20 "$OUT/server.log"; exit 1; }

# ---- summary ------------------------------------------------------------------------------
figure() { grep -E "^$1" "$OUT/measure.out" | grep -oE "$2=[0-9.]+" | head -1 | cut -d= -f2; }
idle=$(figure 'streams=0 ' cpu_pct_of_core)
busy=$(figure 'streams=200 ' cpu_pct_of_core)
db_note=
if [[ -n $DB_PIDS ]]; then
  # With PostgreSQL the target is on the server's CPU plus its database backends'.
  db_idle=$(figure 'streams=0 ' db_cpu_pct_of_core)
  db_busy=$(figure 'streams=200 ' db_cpu_pct_of_core)
  db_req=$(figure snapshot db_cpu_ms_per_request)
  db_note=" (server + PostgreSQL backends; PostgreSQL alone: $db_busy %, idle $db_idle %; $db_req ms per request)"
  idle=$(awk -v a="$idle" -v b="$db_idle" 'BEGIN{printf "%.2f", a + b}')
  busy=$(awk -v a="$busy" -v b="$db_busy" 'BEGIN{printf "%.2f", a + b}')
fi
p50=$(figure snapshot p50_ms)
p99=$(figure snapshot p99_ms)
cpu_req=$(figure snapshot server_cpu_ms_per_request)
running=$(figure snapshot running)
for v in idle busy p50 p99 cpu_req running; do
  [[ -n ${!v} ]] || { echo "a figure is missing: $v" >&2; exit 1; }
done
[[ $running == "$CAMPAIGNS" ]] || { echo "$running of $CAMPAIGNS campaigns running on the wallboard" >&2; exit 1; }
above=$(awk -v a="$busy" -v b="$idle" 'BEGIN{printf "%.2f", a - b}')
ok_snap=$(awk -v p="$p50" 'BEGIN{print (p <= 5) ? "ok" : "MISSED"}')
ok_streams=$(awk -v d="$above" 'BEGIN{print (d <= 5) ? "ok" : "MISSED"}')
echo "summary ($ENGINE, $BUILD, ${WINDOW} s windows):"
echo "  snapshot, GET /api/wallboard: p50 $p50 ms, p99 $p99 ms, server CPU $cpu_req ms per request   target p50 <= 5 ms: $ok_snap"
echo "  200 open wallboards: $busy % of a core, idle $idle %, above idle $above %$db_note   target <= 5 %: $ok_streams"
cold_p50=$(figure history p50_ms)
cold_cpu=$(figure history server_cpu_ms_per_read)
[[ -n $cold_p50 ]] && echo "  a GET that reads the day's figures (none kept from the last 2 s): p50 $cold_p50 ms, server CPU $cold_cpu ms per read"
if [[ $SMOKE == 1 ]]; then echo "smoke: ok"; exit 0; fi
[[ $ok_snap == ok && $ok_streams == ok ]] || exit 1
