#!/usr/bin/env bash
# Several nodes behind Kamailio (docs/benchmarks.md, "Several nodes behind Kamailio (issue
# 18)"): the cluster of deploy/cluster.sh (one PostgreSQL, Kamailio at the edge, N nodes on
# 127.0.0.x), measured with the single-node benches pointed at the edge.
#
#   bench/cluster.sh [MODE]        MODE: all (default) | scale | campaign
#
# scale, for each N in NODE_COUNTS (default "1 2 3"), on a fresh cluster of N nodes:
#   (c) PostgreSQL queries per call: bench/sip_cps.sh through the edge at PGQ_RATE calls/s for
#       PGQ_SECS s; statements from pg_stat_statements (BEGIN/COMMIT included; the idle rate of
#       the nodes' own polling, taken over PGQ_IDLE_S s before, subtracted) and transactions,
#       rows inserted/updated from pg_stat_database, each divided by the successful calls; the
#       statements most executed, per call.
#   (a) SIP call set-ups/s through the edge: bench/sip_cps.sh (SIP_TARGET mode: SIPp with
#       bench/uac_edge.xml, INVITE -> 200 -> ACK -> BYE via Kamailio, hotline with ring_ms 0)
#       at each rate of CPS_STEPS for CPS_SECS s, stopping after the first rate past the knee.
#       The knee: the highest rate with 0 failed calls and INVITE->200 p99 <= KNEE_P99_MS (50). Per step: CPU of each node and of every Kamailio process
#       (/proc/PID/stat utime+stime, around the step), ms per successful call, calls per
#       CPU-second of the nodes and of nodes + edge, Kamailio's share.
#   (b) concurrent IVR calls through the edge: bench/ivr_load.sh (SIP_TARGET mode) with
#       IVR_CALLS calls held IVR_SECS s at IVR_RATE/s, on a cluster restarted after (a); the
#       nodes' and Kamailio's CPU over the steady window (after the ramp + 2 s, for IVR_SECS
#       - 5 s, as ivr_load.sh's own samples). IVR_CALLS=0 leaves this part out.
# campaign, on 2 nodes against the SIPp farm (bench/lib/farm.bash, as bench/campaign_farm.sh):
#   (d) CONTACTS delayed tickets imported into the cluster's database, one campaign with
#       max_channels CHANNELS and max_cps CPS (shared by the nodes, ADR 0010) started through
#       node 1's API: contacts per minute (whole run; steady slope after 10 s), calls per
#       node, the nodes' CPU.
#   (e) a second campaign over the same tickets (failed/interrupted retried after 0 s): once
#       node 2 holds KILL_AFTER_DIALING dialing contacts, `kill -9` it; from the database,
#       the time from the kill to each of its dialing contacts' attempt being closed by node
#       1 ("taken over") and to their next attempt (started_at), and to its reserved (pending)
#       contacts' first dial. Expected: dead_after_s + up to heartbeat_s (the orphan check).
#
# Environment (defaults; SMOKE=1 smaller): NODE_COUNTS, CPS_STEPS ("100 200 300 400 600
# 800"), CPS_SECS (10), KNEE_P99_MS (50), IVR_CALLS (2000), IVR_SECS (30), IVR_RATE (100),
# PGQ_RATE (200), PGQ_SECS (10), PGQ_IDLE_S (10), CONTACTS (3000), CHANNELS (200), CPS (100),
# DIGIT_MS (500), PG_FLUSH_S (11: the wait before reading pg_stat_database), KILL_AFTER_DIALING (20), DEAD_AFTER_S (15), HEARTBEAT_S (5), SIP_PORT (35260),
# HTTP_PORT (35261), PG_PORT (55590), FARM_PORT (35290), FARM_MEDIA (40100), RTP_SPAN (4500:
# RTP ports per node, 2 per call), SWITCHBOARD_BIN (else this tree's release build).
# Needs root (the throwaway PostgreSQL runs as `postgres`; the farm plays RTP through a raw
# socket), kamailio, sipp, psql and python3. Prints a table per figure; raw files (each
# step's bench output, the cluster's logs) in the printed folder. Stops everything it started.
#
# SMOKE=1 bench/cluster.sh: the debug build (SWITCHBOARD_BIN, else target/debug/switchboard),
# free ports, NODE_COUNTS "2", 20 calls/s for 2 s, 4 IVR calls held 3 s, 40 contacts on 20
# channels, the kill on 2 nodes with dead_after_s 3 (tests/bench_smoke.rs): fails when the run breaks (a
# bench fails, a node or the edge dies before the kill, a figure is missing, the dead node's
# contacts are not retried), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${SMOKE:-0}; export SMOKE
MODE=${1:-all}
[[ $MODE =~ ^(all|scale|campaign)$ ]] || { sed -n '6p' "$0" | sed 's/^# *//'; exit 2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ $SMOKE == 1 ]]; then
  NODE_COUNTS=${NODE_COUNTS:-2}
  CPS_STEPS=${CPS_STEPS:-20}; CPS_SECS=${CPS_SECS:-2}
  IVR_CALLS=${IVR_CALLS:-4}; IVR_SECS=${IVR_SECS:-3}; IVR_RATE=${IVR_RATE:-4}
  PGQ_RATE=${PGQ_RATE:-10}; PGQ_SECS=${PGQ_SECS:-2}; PGQ_IDLE_S=${PGQ_IDLE_S:-2}
  CONTACTS=${CONTACTS:-40}; CHANNELS=${CHANNELS:-20}; CPS=${CPS:-20}; PG_FLUSH_S=${PG_FLUSH_S:-1}
  KILL_AFTER_DIALING=${KILL_AFTER_DIALING:-1}
  DEAD_AFTER_S=${DEAD_AFTER_S:-3}; HEARTBEAT_S=${HEARTBEAT_S:-1}
  SIP_PORT=${SIP_PORT:-$(free_port)}; HTTP_PORT=${HTTP_PORT:-$(free_port)}; PG_PORT=${PG_PORT:-$(free_port)}
  FARM_PORT=${FARM_PORT:-$(free_port)}; FARM_MEDIA=${FARM_MEDIA:-$(free_port)}
  RTP_SPAN=${RTP_SPAN:-200}
else
  NODE_COUNTS=${NODE_COUNTS:-"1 2 3"}
  CPS_STEPS=${CPS_STEPS:-"100 200 300 400 600 800"}; CPS_SECS=${CPS_SECS:-10}
  IVR_CALLS=${IVR_CALLS:-2000}; IVR_SECS=${IVR_SECS:-30}; IVR_RATE=${IVR_RATE:-100}
  PGQ_RATE=${PGQ_RATE:-200}; PGQ_SECS=${PGQ_SECS:-10}; PGQ_IDLE_S=${PGQ_IDLE_S:-10}
  CONTACTS=${CONTACTS:-3000}; CHANNELS=${CHANNELS:-200}; CPS=${CPS:-100}; PG_FLUSH_S=${PG_FLUSH_S:-11}
  KILL_AFTER_DIALING=${KILL_AFTER_DIALING:-20}
  DEAD_AFTER_S=${DEAD_AFTER_S:-15}; HEARTBEAT_S=${HEARTBEAT_S:-5}
  SIP_PORT=${SIP_PORT:-35260}; HTTP_PORT=${HTTP_PORT:-35261}; PG_PORT=${PG_PORT:-55590}
  FARM_PORT=${FARM_PORT:-35290}; FARM_MEDIA=${FARM_MEDIA:-40100}
  RTP_SPAN=${RTP_SPAN:-4500}
fi
# 50 ms, not the single-node bench's 5: through the edge and with PostgreSQL the p99 is
# 8-24 ms well below saturation (docs/benchmarks.md), past the knee it is seconds.
KNEE_P99_MS=${KNEE_P99_MS:-50}
DIGIT_MS=${DIGIT_MS:-500}
EDGE_IP=${EDGE_IP:-127.0.0.10}
EDGE=$EDGE_IP:$SIP_PORT
[[ $(id -u) == 0 ]] || { echo "run as root (PostgreSQL as postgres, SIPp's raw socket)" >&2; exit 2; }
for t in sipp psql python3; do command -v $t >/dev/null || { echo "$t not found" >&2; exit 2; }; done
command -v kamailio >/dev/null || [[ -x /usr/sbin/kamailio ]] || { echo "kamailio not found" >&2; exit 2; }

OUT=$(mktemp -d /tmp/switchboard-cluster-bench.XXXXXX)
# The throwaway PostgreSQL (user postgres) keeps its data below: it must get through.
chmod 755 "$OUT"
CD=          # the running cluster's folder
FARM=
cleanup() {
  local rc=$?
  [[ -n "$FARM" ]] && { kill "$FARM" 2>/dev/null || true; wait "$FARM" 2>/dev/null || true; }
  [[ -n "$CD" ]] && { cluster stop >>"$OUT/cluster.log" 2>&1 || true; }
  # A smoke run that passed leaves nothing behind; any other run keeps its raw files.
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
fail() { echo "$*" >&2; exit 1; }

if [[ $SMOKE == 1 ]]; then
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard}
  [[ -n "${SWITCHBOARD_BIN:-}" ]] || cargo build --bin switchboard >/dev/null
else
  cargo build --release --bin switchboard --example ivr_load >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard}
fi
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $(nproc) cores, $BIN"
echo "# load before: $(uptime | sed 's/.*load average/load average/'); raw files: $OUT"

# ---- the nodes' configuration: the shipped one plus the benches' routes and the farm trunk ----
mkdir -p "$OUT/dialplans"
cp dialplans/*.toml bench/ivr_bench.toml "$OUT/dialplans/"
{
  sed -e "s|^demo_data = .*|demo_data = false|" -e "s|^max_calls = .*|max_calls = 20000|" \
      -e "s|^media_timeout_s = .*|media_timeout_s = 120|" -e "s|^dialplan_dir = .*|dialplan_dir = \"$OUT/dialplans\"|" \
      -e "s|^recordings_dir = .*|recordings_dir = \"$OUT/rec\"|" -e "s|^audio_dir = .*|audio_dir = \"$ROOT/audio\"|" \
      config/default.toml
  cat <<CFG

[[route]]
to = "bench"
dialplan = "hotline"
ring_ms = 0

[[route]]
to = "ivrbench"
dialplan = "ivr_bench"
ring_ms = 0

[[trunk]]
name = "farm"
address = "127.0.0.1:$FARM_PORT"
transport = "udp"
max_channels = $CHANNELS
max_cps = $CPS
CFG
} >"$OUT/node.toml"

# deploy/cluster.sh with this run's settings; N = the node count of the cluster.
N=0
cluster() {
  NODES=$N CLUSTER_DIR=$CD BASE_CONFIG=$OUT/node.toml RTP_SPAN=$RTP_SPAN SWITCHBOARD_BIN=$BIN \
    EDGE_IP=$EDGE_IP SIP_PORT=$SIP_PORT HTTP_PORT=$HTTP_PORT PG_PORT=$PG_PORT DRAIN_S=2 \
    DEAD_AFTER_S=$DEAD_AFTER_S HEARTBEAT_S=$HEARTBEAT_S RUST_LOG=${RUST_LOG:-warn} \
    PG_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
    deploy/cluster.sh "$@"
}
cluster_up() {  # cluster_up N LABEL
  N=$1; CD=$OUT/cluster-$2
  cluster start >>"$OUT/cluster.log" 2>&1 || { tail -20 "$OUT/cluster.log"; fail "deploy/cluster.sh start failed (N=$N)"; }
  psqlc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
}
cluster_down() {
  cluster stop >>"$OUT/cluster.log" 2>&1 || true
  CD=
}
psqlc() { psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d switchboard -v ON_ERROR_STOP=1 -tAc "$1"; }
node_pid() { cat "$CD/node$1/pid"; }
node_pids() { local i; for i in $(seq 1 "$N"); do node_pid "$i"; done | tr '\n' ' '; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Kamailio: every process of its session (the main one and its children).
kam_ticks() { local p; for p in $(pgrep -s "$(cat "$CD/edge/pid")"); do ticks "$p"; done | awk '{s += $1} END {print s + 0}'; }
# PostgreSQL: its postmaster and every backend (the nodes' pooled connections stay open;
# a backend that exits within a step takes its ticks with it).
pg_ticks() {
  local pm p; pm=$(head -1 "$CD/pg/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  for p in $pm $(pgrep -P "$pm"); do ticks "$p"; done | awk '{s += $1} END {print s + 0}'
}
# "t ticks_node1 .. ticks_nodeN ticks_kamailio ticks_postgres": one CPU sample of the cluster.
cpu_sample() { local i; echo "$EPOCHREALTIME $(for i in $(seq 1 "$N"); do ticks "$(node_pid "$i")"; done | tr '\n' ' ')$(kam_ticks) $(pg_ticks)"; }
alive_all() {
  local i; for i in $(seq 1 "$N"); do kill -0 "$(node_pid "$i")" 2>/dev/null || fail "node sb$i died (log: $CD/node$i/switchboard.log)"; done
  kill -0 "$(cat "$CD/edge/pid")" 2>/dev/null || fail "kamailio died ($CD/edge/kamailio.log)"
}
HZ=$(getconf CLK_TCK)
SUMMARY=$OUT/summary.tsv
: >"$SUMMARY"

# ---- (a) and (c): set-up rate and queries per call -----------------------------------------
# One sip_cps.sh run through the edge, with CPU samples around it; prints one figures line
# and appends it to the summary. sipcps LABEL RATE SECS
sipcps() {
  local label=$1 rate=$2 secs=$3 s0 s1
  s0=$(cpu_sample)
  SIP_TARGET=$EDGE SERVER_PIDS=$(node_pids) bench/sip_cps.sh "$rate" "$secs" >"$OUT/$label.out" 2>&1 \
    || { cat "$OUT/$label.out" >&2; fail "bench/sip_cps.sh failed ($label)"; }
  s1=$(cpu_sample)
  python3 - "$OUT/$label.out" "$label" "$N" "$rate" "$HZ" "$s0" "$s1" "$KNEE_P99_MS" <<'PY' | tee -a "$SUMMARY"
import re, sys
path, label, n, rate, hz, s0, s1, knee = sys.argv[1:]
text = open(path).read()
m = re.search(r"^calls: total (\d+)\s+successful (\d+)\s+failed (\d+) \(refused 503 (\d+), timed out (\d+)\)", text, re.M)
r = re.search(r"^INVITE->200 ms: p50 ([\d.]+)\s+p99 ([\d.]+)\s+max ([\d.]+)", text, re.M)
sp = re.search(r"^sipp-normal CPU: ([\d.]+) s", text, re.M)
u = re.search(r"^unexpected 503 answers.*: (\d+)", text, re.M)
if not m or not r:
    sys.exit(f"{label}: no calls/INVITE->200 figures in {path}")
total, ok, failed, refused, timeouts = map(int, m.groups())
p50, p99, mx = map(float, r.groups())
a, b = [float(x) for x in s0.split()], [float(x) for x in s1.split()]
wall = b[0] - a[0]
cpu = [(y - x) / int(hz) for x, y in zip(a[1:], b[1:])]
nodes, kam, pg = sum(cpu[:-2]), cpu[-2], cpu[-1]
per = lambda s: 1000 * s / ok if ok else float("nan")
knee_ok = failed == 0 and p99 <= float(knee)
print(f"{label}\tN={n}\trate={rate}\tcalls={total}\tok={ok}\tfailed={failed}\trefused={refused}\ttimeouts={timeouts}\tunexpected_503={u.group(1) if u else '?'}"
      f"\tp50={p50:.1f}\tp99={p99:.1f}\tmax={mx:.1f}\twall_s={wall:.1f}"
      f"\tnode_cpu_s={nodes:.2f}\tper_node_s={','.join(f'{c:.2f}' for c in cpu[:-2])}\tkam_cpu_s={kam:.2f}\tpg_cpu_s={pg:.2f}"
      f"\tnode_ms_per_call={per(nodes):.3f}\tkam_ms_per_call={per(kam):.3f}\tpg_ms_per_call={per(pg):.3f}"
      f"\tcalls_per_node_cpu_s={ok / nodes if nodes else 0:.0f}\tcalls_per_cpu_s_with_edge={ok / (nodes + kam) if nodes + kam else 0:.0f}"
      f"\tkam_share_pct={100 * kam / (nodes + kam) if nodes + kam else 0:.0f}"
      f"\tsipp_cpu_s={float(sp.group(1)) if sp else float('nan'):.1f}\tknee_ok={int(knee_ok)}")
PY
}

# pg_stat_statements (our own statements left out) and pg_stat_database, one line.
pg_snap() {
  psqlc "SELECT (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = 'switchboard' AND s.query NOT ILIKE '%pg_stat%'),
                xact_commit, tup_inserted, tup_updated, tup_deleted
         FROM pg_stat_database WHERE datname = 'switchboard'" | tr '|' ' '
}
pg_queries() {
  local a b c label=pgq-$N
  # pg_stat_database counts what a backend reports when it goes idle (at most every ~10 s
  # while busy): wait that long before each read. pg_stat_statements counts at once.
  sleep "$PG_FLUSH_S"
  a="$EPOCHREALTIME $(pg_snap)"; sleep "$PGQ_IDLE_S"; b="$EPOCHREALTIME $(pg_snap)"
  # From here on pg_stat_statements holds the run's statements only (for the top list).
  psqlc "SELECT pg_stat_statements_reset()" >/dev/null
  sipcps "$label" "$PGQ_RATE" "$PGQ_SECS" >/dev/null
  sleep "$PG_FLUSH_S"; c="$EPOCHREALTIME $(pg_snap)"
  psqlc "SELECT s.calls, round(s.mean_exec_time::numeric, 3), left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = 'switchboard' AND s.query NOT ILIKE '%pg_stat%' ORDER BY s.calls DESC LIMIT 12" >"$OUT/$label.top"
  python3 - "$N" "$a" "$b" "$c" "$(grep -P "^$label\t" "$SUMMARY" | tail -1)" "$OUT/$label.top" <<'PY' | tee -a "$SUMMARY"
import sys
n, a, b, c, line, top = sys.argv[1:]
a, b, c = ([float(x) for x in v.split()] for v in (a, b, c))
ok = int(dict(f.split("=", 1) for f in line.split("\t")[1:])["ok"])
if not ok:
    sys.exit("pg queries: no successful call")
# The nodes' own work while idle (heartbeats, polls), per second, over a -> b.
idle = [(b[k] - a[k]) / (b[0] - a[0]) for k in range(1, 6)]
# b -> c, less that idle rate; the statements were reset at b (their count starts at 0).
start = [0.0] + b[2:6]
per = [(c[k] - start[k - 1] - idle[k - 1] * (c[0] - b[0])) / ok for k in range(1, 6)]
print(f"pgq\tN={n}\tcalls={ok}\tstatements_per_call={per[0]:.2f}\txacts_per_call={per[1]:.2f}"
      f"\tinserted_per_call={per[2]:.2f}\tupdated_per_call={per[3]:.2f}\tdeleted_per_call={per[4]:.2f}"
      f"\tidle_statements_per_s={idle[0]:.1f}\tidle_xacts_per_s={idle[1]:.1f}"
      f"\tidle_window_s={b[0] - a[0]:.0f}\trun_window_s={c[0] - b[0]:.0f}")
for l in open(top):
    cnt, mean, q = l.rstrip("\n").split("|", 2)
    print(f"pgq-top\tN={n}\tper_call={int(cnt) / ok:.3f}\tmean_ms={mean}\t{q}")
PY
}

scale_n() {
  local n=$1 rate last_ok=0 s0 line
  echo "## $n node(s): set-up rate, queries per call"
  cluster_up "$n" "cps-$n"
  pg_queries
  for rate in $CPS_STEPS; do
    sleep 3
    line=$(sipcps "cps-$n-$rate" "$rate" "$CPS_SECS")
    echo "$line"
    alive_all
    [[ $line == *knee_ok=1* ]] && last_ok=$rate
    [[ $line == *knee_ok=1* || $SMOKE == 1 ]] || break
  done
  echo -e "knee\tN=$n\trate=$last_ok" | tee -a "$SUMMARY"
  cluster_down
  ((IVR_CALLS > 0)) || return 0   # IVR_CALLS=0: no IVR part
  echo "## $n node(s): $IVR_CALLS concurrent IVR calls"
  cluster_up "$n" "ivr-$n"
  # Over the steady window: after the ramp + 2 s, for the hold less 5 s (as ivr_load.sh).
  local ramp=$(( IVR_CALLS / IVR_RATE )) win=$(( IVR_SECS > 10 ? IVR_SECS - 5 : IVR_SECS - 1 ))
  ( sleep $(( ramp + 2 )); cpu_sample >"$OUT/ivr-$n.cpu"; sleep "$win"; cpu_sample >>"$OUT/ivr-$n.cpu" ) &
  local sampler=$!
  SIP_TARGET=$EDGE SERVER_PIDS=$(node_pids) RATE=$IVR_RATE bench/ivr_load.sh "$IVR_CALLS" "$IVR_SECS" >"$OUT/ivr-$n.out" 2>&1 \
    || { cat "$OUT/ivr-$n.out" >&2; fail "bench/ivr_load.sh failed (N=$n)"; }
  wait "$sampler" || true
  alive_all
  python3 - "$OUT/ivr-$n.out" "$OUT/ivr-$n.cpu" "$n" "$HZ" <<'PY' | tee -a "$SUMMARY"
import re, sys
out, cpuf, n, hz = sys.argv[1:]
text = open(out).read()
summ = re.search(r"^calls=(\d+) answered=(\d+)\S*.*$", text, re.M)
if not summ:
    sys.exit(f"ivr N={n}: no summary line in {out}")
fields = dict(kv.split("=", 1) for kv in summ.group(0).split() if "=" in kv)
get = lambda pat: (re.search(pat, text, re.M) or [None, "?"])[1]
interval = get(r"send interval p1/p99 within 20 \+- 2 ms: \w+ \((.*?)\)")
lost = get(r"none lost \(sequence gaps\): \w+ \((\d+) lost")
key = get(r"key -> next prompt p99 <= 60 ms: \w+ \(p99 ([\d.]+) ms")
held = get(r"all calls answered and held: (\w+)")
rows = [l.split() for l in open(cpuf) if l.strip()]
if len(rows) < 2:
    sys.exit(f"ivr N={n}: no CPU samples")
a, b = [float(x) for x in rows[0]], [float(x) for x in rows[1]]
wall = b[0] - a[0]
cores = [(y - x) / int(hz) / wall for x, y in zip(a[1:], b[1:])]
calls = int(fields["answered"])
print(f"ivr\tN={n}\tcalls={fields['calls']}\tanswered={calls}"
      f"\tinterval_p1_p99={interval.replace(' ', '')}\tlost={lost}\tkey_p99_ms={key}\tall_held={held}"
      f"\tnode_cores={sum(cores[:-2]):.2f}\tper_node_cores={','.join(f'{c:.2f}' for c in cores[:-2])}"
      f"\tkam_cores={cores[-2]:.3f}\tpg_cores={cores[-1]:.3f}\tnode_pct_core_per_call={100 * sum(cores[:-2]) / max(calls, 1):.4f}"
      f"\ttool_cores={fields.get('tool_cores_steady', '?')}")
PY
  cluster_down
}

# ---- (d) and (e): a campaign on 2 nodes, and a node's death ---------------------------------
campaign() {
  echo "## 2 nodes: campaign against the SIPp farm, then kill -9 of a node"
  . bench/lib/farm.bash
  mkdir -p "$OUT/farm"
  farm_start "$OUT/farm" "$FARM_PORT" "$FARM_MEDIA" "$DIGIT_MS" 3600
  cluster_up 2 campaign
  python3 - "$CONTACTS" >"$OUT/tickets.csv" <<'PY'
import sys
n = int(sys.argv[1])
zones = ["UTC", "America/New_York", "Europe/Paris", "Asia/Shanghai", "America/Los_Angeles"]
print("order_id,customer_name,phone,language,segment,timezone,status,delay_days,new_eta")
for i in range(n):
    print(f"{7000000 + i},Customer {i},+1555{i:06d}1,en,standard,{zones[i % 5]},delayed,{1 + i % 14},2026-12-{1 + i % 28:02d}")
PY
  "$BIN" tickets import "$OUT/tickets.csv" --config "$OUT/node.toml" \
    --database "postgres://postgres@127.0.0.1:$PG_PORT/switchboard" >"$OUT/import.log" 2>&1 \
    || { tail -5 "$OUT/import.log"; fail "tickets import failed"; }
  python3 - "$OUT" "$EDGE_IP" "$HTTP_PORT" "$(cat "$CD/api_token")" "$PG_PORT" "$CONTACTS" "$CHANNELS" "$CPS" \
    "$(node_pid 1)" "$(node_pid 2)" "$KILL_AFTER_DIALING" "$DEAD_AFTER_S" "$HEARTBEAT_S" "$HZ" <<'PY' | tee -a "$SUMMARY"
import json, os, subprocess, sys, time, urllib.error, urllib.request
(out, edge_ip, port, token, pg_port, contacts, channels, cps, pid1, pid2, kill_after, dead_after,
 heartbeat, hz) = sys.argv[1:]
contacts, channels, kill_after, hz = int(contacts), int(channels), int(kill_after), int(hz)
smoke = os.environ.get("SMOKE") == "1"
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
base = "http://127.0.0.11:" + port  # node 1 (deploy/cluster.sh: 127.0.0.(10+I))

def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with http.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")

def sql(q):
    r = subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", pg_port, "-U", "postgres", "-d", "switchboard",
                        "-v", "ON_ERROR_STOP=1", "-tAF", "|", "-c", q], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"psql: {r.stderr.strip()}")
    return [l.split("|") for l in r.stdout.splitlines() if l]

def cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / hz
    except OSError:
        return 0.0

def campaign(name, retry=None, again=False):
    # again: the same tickets a second time (the first campaign resolved them all).
    spec = {"name": name, "dialplan": "delay-notify", "trunk": "farm", "caller_id": "+15550100",
            "tickets": {"status": "delayed", "include_resolved": again}, "max_channels": channels, "max_cps": float(cps),
            "ring_timeout_s": 15, "window": {"start": "00:00", "end": "23:59"}}
    if retry:
        spec["retry"] = retry
    code, body = api("POST", "/api/campaigns", spec)
    if code != 201:
        sys.exit(f"POST /api/campaigns: {code} {body}")
    cid = body["id"]
    code, body = api("POST", f"/api/campaigns/{cid}/start")
    if code != 200:
        sys.exit(f"start: {code} {body}")
    return cid

def progress(cid):
    code, b = api("GET", f"/api/campaigns/{cid}")
    if code != 200:
        return None
    st = b["progress"]["contacts"]
    pending = st.get("pending", 0) + st.get("retry", 0)
    return b["state"], b["active_calls"], b["progress"]["total"] - pending - st.get("dialing", 0), b["progress"]["total"]

# (d) contacts per minute on 2 nodes.
cid = campaign("cluster-bench")
c0 = (cpu(pid1), cpu(pid2)); t0 = time.time(); samples = []
limit = 60 if smoke else max(300, contacts * 60 / 500)
while True:
    time.sleep(1)
    p = progress(cid)
    if p is None:
        continue
    samples.append((time.time() - t0, p[1], p[2]))
    if p[0] in ("completed", "stopped") or time.time() - t0 > limit:
        break
wall = time.time() - t0
c1 = (cpu(pid1), cpu(pid2))
state, _, done, total = p
per_node = dict((r[0], int(r[1])) for r in sql(f"SELECT coalesce(node, '?'), count(*) FROM call_records WHERE campaign_id = {cid} GROUP BY 1"))
steady = [s for s in samples if s[0] >= 10 and s[2] < total]
slope = (steady[-1][2] - steady[0][2]) / (steady[-1][0] - steady[0][0]) * 60 if len(steady) >= 2 and steady[-1][0] > steady[0][0] else float("nan")
occ = [s[1] for s in steady]
print(f"campaign\tN=2\tstate={state}\tdone={done}/{total}\twall_s={wall:.1f}\tcontacts_per_min={done / wall * 60:.0f}"
      f"\tsteady_per_min={slope:.0f}\tmean_active={sum(occ) / len(occ) if occ else float('nan'):.0f}/{channels}"
      f"\tcalls_sb1={per_node.get('sb1', 0)}\tcalls_sb2={per_node.get('sb2', 0)}"
      f"\tcpu_sb1_s={c1[0] - c0[0]:.1f}\tcpu_sb2_s={c1[1] - c0[1]:.1f}"
      f"\tms_per_contact={1000 * (c1[0] - c0[0] + c1[1] - c0[1]) / max(done, 1):.1f}")
if state != "completed" or done < total:
    sys.exit(f"campaign did not complete ({state}, {done}/{total})")

# (e) kill -9 node 2 while it dials; interrupted attempts retried at once (after_s 0).
cid = campaign("cluster-bench-kill", {"failed": {"after_s": 0, "max_attempts": 3}}, again=True)
deadline = time.time() + 60
while True:
    n = int(sql(f"SELECT count(*) FROM campaign_contacts WHERE campaign_id = {cid} AND state = 'dialing' AND lease_owner = 'sb2'")[0][0])
    if n >= kill_after:
        break
    if time.time() > deadline:
        sys.exit(f"node 2 never held {kill_after} dialing contacts (campaign {cid}: {progress(cid)})")
    time.sleep(0.05)
os.kill(int(pid2), 9)
t_kill = time.time()
# What sb2 held at its death (read after the kill: nothing of sb2's changes after it).
held = sql(f"SELECT id, state, attempts FROM campaign_contacts WHERE campaign_id = {cid} AND lease_owner = 'sb2' AND state IN ('dialing', 'pending')")
dialing = [int(r[0]) for r in held if r[1] == "dialing"]
reserved = [int(r[0]) for r in held if r[1] == "pending"]
ids = ",".join(str(i) for i in dialing + reserved) or "0"
q = f"""SELECT c.id, c.state,
          (SELECT extract(epoch FROM min(a.ended_at)) - {t_kill} FROM campaign_attempts a
            WHERE a.contact_id = c.id AND a.disposition = 'interrupted'),
          (SELECT extract(epoch FROM min(a.started_at)) - {t_kill} FROM campaign_attempts a
            WHERE a.contact_id = c.id AND a.started_at > to_timestamp({t_kill}))
        FROM campaign_contacts c WHERE c.id IN ({ids})"""
deadline = t_kill + float(dead_after) + float(heartbeat) + (60 if smoke else 90)
while True:
    time.sleep(0.5)
    rows = sql(q)
    if all(r[3] for r in rows) or time.time() > deadline:
        break
api("POST", f"/api/campaigns/{cid}/stop")
def dist(xs):
    xs = sorted(xs)
    if not xs:
        return "n/a"
    return f"min {xs[0]:.2f} p50 {xs[len(xs) // 2]:.2f} max {xs[-1]:.2f} s (n={len(xs)})"
take = [float(r[2]) for r in rows if int(r[0]) in dialing and r[2]]
retry = [float(r[3]) for r in rows if int(r[0]) in dialing and r[3]]
first = [float(r[3]) for r in rows if int(r[0]) in reserved and r[3]]
missing = [r[0] for r in rows if not r[3]]
print(f"kill\tN=2\tdead_after_s={dead_after}\theartbeat_s={heartbeat}\tdialing_at_kill={len(dialing)}\treserved_at_kill={len(reserved)}"
      f"\ttaken_over={dist(take)}\tretried={dist(retry)}\treserved_dialed={dist(first)}\tnot_retried={len(missing)}")
if not dialing or len(retry) < len(dialing):
    sys.exit(f"the dead node's dialing contacts were not all retried ({len(retry)} of {len(dialing)})")
PY
  kill -0 "$(node_pid 1)" 2>/dev/null || fail "node sb1 died"
  cluster_down
  kill "$FARM" 2>/dev/null || true; wait "$FARM" 2>/dev/null || true; FARM=
}

if [[ $MODE == all || $MODE == scale ]]; then
  for n in $NODE_COUNTS; do scale_n "$n"; done
fi
if [[ $MODE == all || $MODE == campaign ]]; then
  campaign
fi
echo "# load after: $(uptime | sed 's/.*load average/load average/')"
if [[ $SMOKE == 1 ]]; then
  # Every part printed its figures line (a broken run, not a judged figure).
  want=()
  [[ $MODE == campaign ]] || for n in $NODE_COUNTS; do want+=("pgq	N=$n" "knee	N=$n"); ((IVR_CALLS == 0)) || want+=("ivr	N=$n"); done
  [[ $MODE == scale ]] || want+=("campaign	N=2" "kill	N=2")
  for w in "${want[@]}"; do grep -q "^$w" "$SUMMARY" || fail "smoke: no '$w' line"; done
  echo "smoke: ok"
fi
echo "raw files: $OUT"
