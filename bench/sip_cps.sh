#!/usr/bin/env bash
# SIP call-setup rate (docs/benchmarks.md, "SIP call setup"): SIPp's built-in UAC against the
# release server on loopback, INVITE -> 100/180 -> 200 -> ACK -> BYE, no hold time.
#
#   bench/sip_cps.sh [RATE] [SECONDS]        default 2000 calls/s for 60 s
#
# Prints SIPp's totals, the INVITE->200 response-time distribution (SIPp response time 1),
# the server's CPU per successful call, its peak RSS and its RSS after the run.
# Everything on 127.0.0.1; stops by itself.
#
# Overload (issue 14 #2): OVERLOAD_RATE=N OVERLOAD_SECS=S adds a second SIPp offering N more
# calls/s for the first S seconds of the run, on top of RATE. Printed per SIPp: successful,
# refused (503), timed out; the server's CPU per successful call over the whole run; and
# after the overload ends, the seconds until the normal load's per-second failures are 0.
# RT_PRIORITY=N runs the server with --realtime-priority N (default: the shipped config's).
#
# SWITCHBOARD_BIN=PATH (without SMOKE) runs that release binary instead of building this tree's,
# for before/after comparisons in one sitting.
#
# SIP_TARGET=IP:PORT SERVER_PIDS="PID ..." (bench/cluster.sh): no server is started; the calls go
# to SIP_TARGET (an edge proxy, e.g. Kamailio in front of several nodes) with bench/uac_edge.xml
# (SIPp's UAC following the Record-Route set, so ACK and BYE pass the proxy too), and the
# server CPU and RSS printed are the sums over SERVER_PIDS. The route `bench` must exist there.
#
# SMOKE=1 bench/sip_cps.sh: 20 calls/s for 2 s against the debug build (SWITCHBOARD_BIN, else
# target/debug/switchboard), free ports (tests/bench_smoke.rs): fails when the run breaks
# (SIPp fails, the server dies, a figure is missing), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}; export SMOKE
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ $SMOKE == 1 ]]; then
  RATE=${1:-20}
  SECS=${2:-2}
else
  RATE=${1:-2000}
  SECS=${2:-60}
fi
CALLS=$((RATE * SECS))
OUT=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
SRV=
SIP_TARGET=${SIP_TARGET:-}
# A smoke run that passed leaves nothing behind; any other run keeps its raw files.
trap 'rc=$?; if [[ -n "$SRV" ]]; then kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true; fi
      if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi' EXIT
if [[ -n "$SIP_TARGET" ]]; then
  # Someone else's servers (bench/cluster.sh): nothing to build or start here.
  UAC_PORT=${UAC_PORT:-$(free_port)}
elif [[ $SMOKE == 1 ]]; then
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/switchboard}
  [[ -n "${SWITCHBOARD_BIN:-}" ]] || cargo build --bin switchboard >/dev/null
  SIP_PORT=${SIP_PORT:-$(free_port)}
  UAC_PORT=$(free_port)
elif [[ -n "${SWITCHBOARD_BIN:-}" ]]; then
  # A/B runs (issue 15: "same box, same run as main before the change"): a given binary.
  BIN=$SWITCHBOARD_BIN
  SIP_PORT=${SIP_PORT:-35060}
  UAC_PORT=35070
else
  cargo build --release >/dev/null 2>&1
  BIN=${CARGO_TARGET_DIR:-target}/release/switchboard
  SIP_PORT=${SIP_PORT:-35060}
  UAC_PORT=35070
fi
if [[ -z "$SIP_TARGET" ]]; then
cat config/default.toml > "$OUT/bench.toml"
sed -i "s|database = .*|database = \"sqlite://$OUT/bench.db\"|; s|spool_dir = .*|spool_dir = \"$OUT\"|; s|max_calls = .*|max_calls = 20000|" "$OUT/bench.toml"
# CALL_THREADS=N: [server] call_threads (default: the shipped config's).
[[ -n "${CALL_THREADS:-}" ]] && sed -i "s|^call_threads = .*|call_threads = $CALL_THREADS|" "$OUT/bench.toml"
cat >> "$OUT/bench.toml" <<CFG

[[route]]
to = "bench"
dialplan = "hotline"
ring_ms = 0
CFG
PRIO_ARGS=()
[[ -n "${RT_PRIORITY:-}" ]] && PRIO_ARGS=(--realtime-priority "$RT_PRIORITY")
RUST_LOG=warn "$BIN" --config "$OUT/bench.toml" --sip-listen 127.0.0.1:$SIP_PORT \
  --http-listen 127.0.0.1:0 --rtp-ports 40000-59999 "${PRIO_ARGS[@]}" >"$OUT/server.log" 2>&1 &
SRV=$!
for _ in $(seq 100); do grep -qs "switchboard is running" "$OUT/server.log" && break; sleep 0.1; done
grep -qs "switchboard is running" "$OUT/server.log" || { echo "server did not start:"; cat "$OUT/server.log"; exit 1; }
SERVER_PIDS=$SRV
SIP_DEST=127.0.0.1:$SIP_PORT
SCENARIO=(-sn uac)
else
  [[ -n "${SERVER_PIDS:-}" ]] || { echo "SIP_TARGET needs SERVER_PIDS" >&2; exit 2; }
  SIP_DEST=$SIP_TARGET
  # Kamailio's UDP workers may relay a call's 180 after its 200 (one worker each): SIPp must
  # not abort such a call (its abort BYE would not follow the route set, and the node would
  # keep the call). It continues on any unexpected message instead, so a refused INVITE
  # (503) runs into the timeout: the 503s are counted from err.log.
  SCENARIO=(-sf "$PWD/bench/uac_edge.xml" -default_behaviors all,-abortunexp)
fi
# RSS and CPU: summed over every server process (one, or the nodes behind SIP_TARGET).
pids_alive() { local p; for p in $SERVER_PIDS; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
rss_sum() { local p; for p in $SERVER_PIDS; do awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
( while pids_alive; do rss_sum; sleep 0.5; done ) > "$OUT/rss.txt" &
RSSMON=$!
cpu_ticks() { local p; for p in $SERVER_PIDS; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
CPU0=$(cpu_ticks)
cd "$OUT"
OVERLOAD_RATE=${OVERLOAD_RATE:-0}
OVERLOAD_SECS=${OVERLOAD_SECS:-0}
OVL=
# The load generators' own CPU (they share the cores with the server), when GNU time is there.
timed() { local out=$1; shift; if [[ -x /usr/bin/time ]]; then /usr/bin/time -f "%U %S" -o "$out" "$@"; else "$@"; fi; }
# A call that waits for an answer that never comes is aborted after 35 s (-recv_timeout),
# and a SIPp that still does not end is stopped (timeout): every run ends by itself.
if ((OVERLOAD_RATE > 0 && OVERLOAD_SECS > 0)); then
  mkdir -p overload
  (cd overload && timed ../sipp-overload.cpu timeout -s INT $((OVERLOAD_SECS + 120)) sipp -sn uac -s bench -i 127.0.0.1 -p "$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
    -r "$OVERLOAD_RATE" -rp 1000 -m $((OVERLOAD_RATE * OVERLOAD_SECS)) -l 40000 -d 0 \
    -nostdin -recv_timeout 35000 -timeout $((OVERLOAD_SECS + 60))s -trace_stat -stf stat.csv -fd 1 \
    "$SIP_DEST" > sipp.out 2>&1) &
  OVL=$!
fi
SIPP_RC=0
timed sipp-normal.cpu timeout -s INT $((SECS + 120)) sipp "${SCENARIO[@]}" -s bench -i 127.0.0.1 -p "$UAC_PORT" -r "$RATE" -rp 1000 -m "$CALLS" -l 20000 -d 0 \
  -nostdin -recv_timeout 35000 -timeout $((SECS + 60))s -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
  -trace_err -error_file err.log "$SIP_DEST" > sipp.out 2>&1 || SIPP_RC=$?
[[ -n "$OVL" ]] && { wait "$OVL" || true; }
CPU1=$(cpu_ticks)
# What a finished call leaves behind (the router keeps a BYE answer for Timer J, 32 s).
sleep 5
RSS_AFTER=$(rss_sum)
kill $RSSMON 2>/dev/null || true
cd - >/dev/null
python3 - "$OUT" "$RATE" "$SECS" "$((CPU1 - CPU0))" "$(getconf CLK_TCK)" "$RSS_AFTER" "$OVERLOAD_SECS" <<'PY'
import csv, glob, os, sys
out, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu_s = int(sys.argv[4]) / int(sys.argv[5])
rss_after, ovl_secs = int(sys.argv[6]), int(sys.argv[7])

def totals(path):
    rows = list(csv.reader(open(path), delimiter=";"))
    return rows[0], rows[1:]

def fig(head, row, name):
    return int(float(row[head.index(name)])) if name in head else 0

def line(label, head, row):
    refused = fig(head, row, "FailedUnexpectedMessage(C)")
    timeouts = fig(head, row, "FailedMaxUDPRetrans(C)") + fig(head, row, "FailedTimeoutOnRecv(C)")
    print(f"{label}: total {fig(head, row, 'TotalCallCreated')}  successful {fig(head, row, 'SuccessfulCall(C)')}"
          f"  failed {fig(head, row, 'FailedCall(C)')} (refused 503 {refused}, timed out {timeouts})"
          f"  INVITE retransmissions {fig(head, row, 'Retransmissions(C)')}")
    return fig(head, row, "SuccessfulCall(C)")

def unexpected_503():
    # SIP_TARGET: SIPp continued on unexpected messages; a 503 to the INVITE is one.
    try:
        with open(os.path.join(out, "err.log"), errors="replace") as f:
            return sum(l.count("received 'SIP/2.0 503") for l in f)
    except OSError:
        return 0

head, rows = totals(os.path.join(out, "stat.csv"))
last = rows[-1]
col = lambda name: last[head.index(name)]
print(f"target {rate} calls/s for {secs} s")
ok = line("calls", head, last)
if os.environ.get("SIP_TARGET"):
    print(f"unexpected 503 answers (SIP_TARGET: counted among the failed as timed out): {unexpected_503()}")
ovl_stat = os.path.join(out, "overload", "stat.csv")
if os.path.exists(ovl_stat):
    oh, orows = totals(ovl_stat)
    ok += line(f"overload calls (extra, first {ovl_secs} s)", oh, orows[-1])
    # Recovery: after the overload ends, the first second from which the normal load has no
    # failures (periodic counts, one row per second).
    per_fail = [fig(head, r, "FailedCall(P)") for r in rows]
    after = per_fail[ovl_secs:]
    bad = [i for i, f in enumerate(after) if f > 0]
    print(f"recovered {bad[-1] + 1 if bad else 0} s after the overload ended "
          f"(normal-load failures per second after it: {after[:15]})")
if ok:
    print(f"server CPU: {cpu_s:.1f} s, {1000 * cpu_s / ok:.3f} ms per successful call")
for name in ("sipp-normal.cpu", "sipp-overload.cpu"):
    path = os.path.join(out, name)
    if os.path.exists(path):
        try:
            u, s_ = open(path).read().split()[-2:]
            print(f"{name[:-4]} CPU: {float(u) + float(s_):.1f} s")
        except ValueError:
            pass
rtts = []
for f in glob.glob(os.path.join(out, "*_rtt.csv")):
    for r in csv.reader(open(f), delimiter=";"):
        if len(r) >= 3 and r[2].strip() == "1":
            try: rtts.append(float(r[1]))
            except ValueError: pass
rtts.sort()
if rtts:
    p = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))]
    print(f"INVITE->200 ms: p50 {p(0.5):.2f}  p99 {p(0.99):.2f}  max {rtts[-1]:.2f}  (n={len(rtts)})")
rss = [int(x) for x in open(os.path.join(out, "rss.txt")).read().split() if x.isdigit()]
if rss:
    print(f"server RSS: start {rss[0]/1024:.1f} MiB  peak {max(rss)/1024:.1f} MiB"
          f"  5 s after the last call {rss_after/1024:.1f} MiB")
if os.environ.get("SMOKE") == "1":
    # The run broke (not judged: the figures): no call made, or no INVITE->200 time.
    if int(col("TotalCallCreated")) == 0 or not rtts or not rss:
        sys.exit("smoke: a figure is missing (calls created, INVITE->200 times, RSS)")
PY
if [[ $SMOKE == 1 ]]; then
  for p in $SERVER_PIDS; do
    kill -0 "$p" 2>/dev/null || { echo "smoke: the server (pid $p) died" >&2; tail -20 "$OUT/server.log" >&2 2>/dev/null; exit 1; }
  done
  [[ $SIPP_RC == 0 ]] || { echo "smoke: SIPp exited $SIPP_RC" >&2; tail -20 "$OUT/sipp.out" >&2; exit 1; }
  echo "smoke: ok"
fi
echo "raw files: $OUT"
