#!/usr/bin/env bash
# Concurrent IVR calls (docs/benchmarks.md, "Concurrent IVR calls"): CALLS simultaneous
# answered calls, each hearing prompts (bench/ivr_bench.toml: two menus that hand over on
# key 1), sending 20 ms PCMU audio and an RFC 4733 key every 4 s. The load tool
# (examples/ivr_load.rs) ramps calls up at RATE/s, holds them all for SECONDS (the steady
# window the figures come from), then hangs up at the same rate.
#
#   bench/ivr_load.sh [CALLS] [SECONDS]        default 2000 calls held 60 s
#   RATE=100 RX_THREADS=2 NICE=-10 PERF=1 RT_PRIORITY=0 bench/ivr_load.sh 2000 60
#
# RT_PRIORITY: the server's [server] realtime_priority (default: as shipped in
# config/default.toml, 0 = normal priority, competing with the tool for the CPUs as equals;
# 10 = SCHED_RR, the opt-in for a dedicated media box). The tool always runs at normal
# priority. SERVER_NICE: the server's nice value (default NICE).
#
# Prints the tool's one-line summary, the targets (send interval p1/p99 within 20 +- 2 ms,
# nothing lost, key -> next prompt p99 <= 60 ms, <= 64 KiB per call), the distributions,
# the server's RSS (idle, loaded: memory per call = (loaded - idle) / calls) and CPU over
# the steady window, and the machine's load. PERF=1 also records `perf record -g` of the
# server for 10 s in the middle of the steady window. Everything on 127.0.0.1; stops by
# itself.
#
# PGBENCH_URL=postgres://...: a PostgreSQL on the same box (issue 14: real-time call threads
# must not starve a co-located database). The script initialises pgbench's tables there
# (scale 10), runs `pgbench -S -c 2 -j 2` for 10 s before the calls (the baseline) and again
# through the steady window, and prints both: transactions per second and latency
# (average, stddev).
#
# KAMAILIO_RATE=N: a Kamailio on the same box (issue 14: nor a co-located SIP edge). The
# script starts Kamailio with deploy/kamailio/kamailio.cfg in front of a SIPp node that
# answers at once (bench/uas_edge.xml: a SIPp and not the server, so the figure is the
# edge's own latency beside the real-time call threads, not the server's set-up work), and
# runs a SIPp UAC through it (bench/uac_edge.xml) at N calls/s for 10 s before the IVR
# calls (the baseline) and again through the steady window; it prints both: calls,
# failures, INVITE->200 through the edge (p50, p99, max) and Kamailio's CPU.
#
# SIP_TARGET=IP:PORT SERVER_PIDS="PID ..." (bench/cluster.sh): no server is started; the tool
# calls SIP_TARGET (an edge proxy in front of several nodes; the tool follows the 200's
# Record-Route set, so ACK and BYE pass the proxy too; RTP goes to each node directly). The
# route `ivrbench` -> the ivr_bench dialplan must exist there. The tool's server RSS/CPU
# figures are left out (they are for one process): the caller measures the nodes.
#
# SMOKE=1 bench/ivr_load.sh: 10 calls held 3 s on the debug build (SWITCHBOARD_BIN, else
# target/debug/switchboard; the tool built without --release), a free SIP port, the server at
# normal priority (tests/bench_smoke.rs): fails when the run breaks (the server dies, the
# tool fails, no summary or no answered call), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$PWD
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  CALLS=${1:-10}
  SECS=${2:-3}
  RATE=${RATE:-10}
  RT_PRIORITY=${RT_PRIORITY:-0}
  SIP_PORT=${SIP_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
else
  CALLS=${1:-2000}
  SECS=${2:-60}
  RATE=${RATE:-100}
  RT_PRIORITY=${RT_PRIORITY:-$(awk -F'[= #]+' '/^realtime_priority/ {print $2}' config/default.toml)}
  SIP_PORT=${SIP_PORT:-35160}
fi
RX_THREADS=${RX_THREADS:-2}
OUT=$(mktemp -d /tmp/switchboard-ivr-bench.XXXXXX)
SRV=
SIP_TARGET=${SIP_TARGET:-}
# A smoke run that passed leaves nothing behind; any other run keeps its raw files.
KAM=
KNODE=
cleanup() {
  local rc=$?
  if [[ -n "$KAM" ]]; then kill "$KAM" 2>/dev/null || true; wait "$KAM" 2>/dev/null || true; fi
  if [[ -n "$KNODE" ]]; then kill "$KNODE" 2>/dev/null || true; wait "$KNODE" 2>/dev/null || true; fi
  if [[ -n "$SRV" ]]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; fi
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
if [[ $SMOKE == 1 ]]; then
  cargo build --example ivr_load >/dev/null
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/switchboard}
  [[ -n "${SWITCHBOARD_BIN:-}" || -n "$SIP_TARGET" ]] || cargo build --bin switchboard >/dev/null
  TOOL=${CARGO_TARGET_DIR:-target}/debug/examples/ivr_load
else
  # SWITCHBOARD_BIN=PATH: that release binary (before/after comparisons); the tool is this tree's.
  cargo build --release --bin switchboard --example ivr_load >/dev/null 2>&1
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/release/switchboard}
  TOOL=${CARGO_TARGET_DIR:-target}/release/examples/ivr_load
fi
# Two sockets per call on the tool's side, one on the server's, plus the lingering ones.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -z "$SIP_TARGET" ]]; then
mkdir -p "$OUT/dialplans"
cp dialplans/*.toml bench/ivr_bench.toml "$OUT/dialplans/"
cat config/default.toml > "$OUT/bench.toml"
sed -i "s|database = .*|database = \"sqlite://$OUT/bench.db\"|; s|spool_dir = .*|spool_dir = \"$OUT\"|; \
  s|max_calls = .*|max_calls = 20000|; s|^realtime_priority = .*|realtime_priority = $RT_PRIORITY|; s|media_timeout_s = .*|media_timeout_s = 120|; \
  s|dialplan_dir = .*|dialplan_dir = \"$OUT/dialplans\"|; s|recordings_dir = .*|recordings_dir = \"$OUT/rec\"|; \
  s|audio_dir = .*|audio_dir = \"$PWD/audio\"|" "$OUT/bench.toml"
# CALL_THREADS=N: [server] call_threads (default: the shipped config's).
[[ -n "${CALL_THREADS:-}" ]] && sed -i "s|^call_threads = .*|call_threads = $CALL_THREADS|" "$OUT/bench.toml"
cat >> "$OUT/bench.toml" <<CFG

[[route]]
to = "ivrbench"
dialplan = "ivr_bench"
ring_ms = 0
CFG
# NICE=-10: server and tool ahead of other work on a shared machine (emulates a box of
# their own; the compile jobs of others still get the rest).
NICE=${NICE:-0}
# SERVER_NICE: the server's own nice value (default NICE), the tool keeps NICE.
SERVER_NICE=${SERVER_NICE:-$NICE}
RUST_LOG=warn nice -n "$SERVER_NICE" "$BIN" --config "$OUT/bench.toml" --sip-listen 127.0.0.1:$SIP_PORT \
  --http-listen 127.0.0.1:0 --rtp-ports 40000-59999 >"$OUT/server.log" 2>&1 &
SRV=$!
for _ in $(seq 100); do grep -qs "switchboard is running" "$OUT/server.log" && break; sleep 0.1; done
grep -qs "switchboard is running" "$OUT/server.log" || { echo "server did not start:"; cat "$OUT/server.log"; exit 1; }
sleep 1
SERVER_PIDS=$SRV
SIP_DEST=127.0.0.1:$SIP_PORT
PID_ARGS=(--server-pid "$SRV")
else
  [[ -n "${SERVER_PIDS:-}" ]] || { echo "SIP_TARGET needs SERVER_PIDS" >&2; exit 2; }
  NICE=${NICE:-0}
  SERVER_NICE=$NICE
  SIP_DEST=$SIP_TARGET
  PID_ARGS=()
fi

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(nproc) cores; $CALLS calls at $RATE/s, held ${SECS} s, nice $NICE (server $SERVER_NICE), server realtime_priority $RT_PRIORITY"
echo "# load before: $(uptime | sed 's/.*load average/load average/')"
PERFJOB=
if [[ "${PERF:-0}" == 1 ]]; then
  # In the middle of the steady window: ramp (CALLS/RATE s) + half the hold.
  ( sleep $(( CALLS / ${RATE%.*} + SECS / 2 - 5 )); \
    perf record -g -F 499 -p "$SRV" -o "$OUT/perf.data" -- sleep 10 >/dev/null 2>&1 ) &
  PERFJOB=$!
fi
PGJOB=
if [[ -n "${PGBENCH_URL:-}" ]]; then
  pgbench -i -q -s 10 "$PGBENCH_URL" >"$OUT/pgbench-init.log" 2>&1 || { echo "pgbench -i failed:"; cat "$OUT/pgbench-init.log"; exit 1; }
  pgbench -S -c 2 -j 2 ${PGBENCH_RATE:+-R $PGBENCH_RATE} -T 10 "$PGBENCH_URL" >"$OUT/pgbench-alone.log" 2>&1 || true
  # Through the steady window: after the ramp, for the hold less 5 s.
  ( sleep $(( CALLS / ${RATE%.*} + 2 )); \
    pgbench -S -c 2 -j 2 ${PGBENCH_RATE:+-R $PGBENCH_RATE} -T $(( SECS > 10 ? SECS - 5 : 5 )) "$PGBENCH_URL" >"$OUT/pgbench-loaded.log" 2>&1 ) &
  PGJOB=$!
fi
KJOB=
if [[ -n "${KAMAILIO_RATE:-}" ]]; then
  KPORT=$((SIP_PORT + 100))
  NPORT=$((SIP_PORT + 102))
  mkdir -p "$OUT/edge-node"
  (cd "$OUT/edge-node" && exec sipp -sf "$ROOT_DIR/bench/uas_edge.xml" -i 127.0.0.1 -p "$NPORT" -nostdin \
    -trace_err -error_file err.log >sipp.out 2>&1) &
  KNODE=$!
  echo "1 sip:127.0.0.1:$NPORT" > "$OUT/dispatcher.list"
  PATH=$PATH:/usr/sbin setsid kamailio -DD -E -m 64 -M 8 -f deploy/kamailio/kamailio.cfg \
    -A "LISTEN=udp:127.0.0.1:$KPORT" -A "DISPATCHER_LIST=\"$OUT/dispatcher.list\"" \
    -A "CTL_SOCKET=\"unix:$OUT/kamctl\"" -A "PING_INTERVAL=1" </dev/null >/dev/null 2>"$OUT/kamailio.log" &
  KAM=$!
  sleep 3
  kill -0 "$KAM" 2>/dev/null || { echo "kamailio did not start:"; tail -20 "$OUT/kamailio.log"; exit 1; }
  # Kamailio's CPU: every process of its session (the main one and its children).
  kam_ticks() { for p in $(pgrep -s "$KAM"); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
  ksipp() { # label seconds
    local d="$OUT/kamailio-$1" c0 c1; mkdir -p "$d"; c0=$(kam_ticks)
    (cd "$d" && timeout -s INT $(( $2 + 60 )) sipp -sf "$ROOT_DIR/bench/uac_edge.xml" -s kbench -i 127.0.0.1 -p $((SIP_PORT + 101)) \
      -r "$KAMAILIO_RATE" -m $(( KAMAILIO_RATE * $2 )) -d 0 -nostdin -recv_timeout 35000 \
      -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 -trace_err -error_file err.log 127.0.0.1:$KPORT >sipp.out 2>&1) || true
    c1=$(kam_ticks); echo "$((c1 - c0)) $2 $(getconf CLK_TCK)" > "$d/kamailio.cpu"
  }
  ksipp alone 10
  ( sleep $(( CALLS / ${RATE%.*} + 2 )); ksipp loaded $(( SECS > 10 ? SECS - 5 : 5 )) ) &
  KJOB=$!
fi
ctx() { local p; for p in $SERVER_PIDS; do cat /proc/$p/task/*/status 2>/dev/null; done | awk '/ctxt_switches/ {s += $2} END {print s}'; }
CTX0=$(ctx); T0=$(date +%s.%N)
TOOL_RC=0
nice -n "$NICE" "$TOOL" --server "$SIP_DEST" --calls "$CALLS" --rate "$RATE" \
  --hold "$SECS" --rx-threads "$RX_THREADS" --rx-tick-us "${RX_TICK_US:-500}" "${PID_ARGS[@]}" \
  --per-call > "$OUT/tool.out" 2>"$OUT/tool.err" || TOOL_RC=$?
CTX1=$(ctx); T1=$(date +%s.%N)
echo "# load after:  $(uptime | sed 's/.*load average/load average/')"
grep -v '^call ' "$OUT/tool.out" || true
if grep -q . "$OUT/tool.err"; then echo "# tool stderr:"; tail -5 "$OUT/tool.err"; fi
if [[ -n "$PERFJOB" ]]; then wait "$PERFJOB" || true; fi
if [[ -n "$PGJOB" ]]; then
  wait "$PGJOB" || true
  for run in alone loaded; do
    echo "# pgbench -S -c 2 ($run): $(grep -E '^(tps|latency average|latency stddev|rate limit schedule lag)' "$OUT/pgbench-$run.log" | sed 's/ (without initial connection time)//' | tr '\n' ';')"
  done
fi
if [[ -n "$KJOB" ]]; then
  wait "$KJOB" || true
  python3 - "$OUT" <<'PY'
import csv, glob, os, sys
out = sys.argv[1]
for run in ("alone", "loaded"):
    d = os.path.join(out, f"kamailio-{run}")
    try:
        rows = list(csv.reader(open(os.path.join(d, "stat.csv")), delimiter=";"))
        h, last = rows[0], rows[-1]
        f = lambda n: int(float(last[h.index(n)]))
        rtts = sorted(float(r[1]) for p in glob.glob(os.path.join(d, "*_rtt.csv"))
                      for r in csv.reader(open(p), delimiter=";")
                      if len(r) >= 3 and r[2].strip() == "1" and r[1].replace(".", "", 1).isdigit())
        q = lambda x: rtts[min(len(rtts) - 1, int(len(rtts) * x))] if rtts else float("nan")
        ticks, secs, hz = open(os.path.join(d, "kamailio.cpu")).read().split()
        cpu = int(ticks) / int(hz)
        print(f"# kamailio ({run}): calls {f('TotalCallCreated')} ok {f('SuccessfulCall(C)')} failed {f('FailedCall(C)')}"
              f" retransmissions {f('Retransmissions(C)')}; INVITE->200 through the edge p50 {q(0.5):.0f} p99 {q(0.99):.0f}"
              f" max {rtts[-1] if rtts else float('nan'):.0f} ms; kamailio CPU {cpu:.2f} s over {secs} s")
    except (OSError, ValueError, IndexError) as e:
        print(f"# kamailio ({run}): no figures ({e})")
PY
fi
echo "# server context switches: $(echo "($CTX1 - $CTX0) / ($T1 - $T0)" | bc) per second (whole run)"
[[ -f "$OUT/server.log" ]] && echo "# server warnings: $(grep -c ' WARN ' "$OUT/server.log" || true), errors: $(grep -c ' ERROR ' "$OUT/server.log" || true)"
if [[ -f "$OUT/perf.data" ]]; then
  perf report -i "$OUT/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | head -30 > "$OUT/perf.top" || true
  echo "# perf (server, self time, top):"; cat "$OUT/perf.top"
fi
if [[ $SMOKE == 1 ]]; then
  for p in $SERVER_PIDS; do
    kill -0 "$p" 2>/dev/null || { echo "smoke: the server (pid $p) died" >&2; tail -20 "$OUT/server.log" >&2 2>/dev/null; exit 1; }
  done
  [[ $TOOL_RC == 0 ]] || { echo "smoke: ivr_load exited $TOOL_RC" >&2; exit 1; }
  # The summary line must be there and calls must have been answered (a broken run, not a
  # judged figure).
  grep -Eq '^calls=[0-9]+ answered=[1-9]' "$OUT/tool.out" \
    || { echo "smoke: no summary with answered calls in tool.out" >&2; exit 1; }
  echo "smoke: ok"
fi
echo "raw files: $OUT (tool.out has one line per call)"
