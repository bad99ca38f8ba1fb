#!/usr/bin/env bash
# Browser agents (docs/benchmarks.md, "Browser agents (WebRTC)"): CALLS browser agents
# (examples/webrtc_load.rs: str0m peers doing what the /agent page does — web login, event
# stream, phone on, WebRTC offer to /api/agent/answer, DTLS-SRTP audio) bridged to CALLS SIP
# callers over UDP (the same tool), through a queue the callers enter at once
# (bench/webrtc_bench.toml). Calls ramp up at RATE/s, are all held for SECONDS (the steady
# window the figures come from), then hang up at the same rate.
#
#   bench/webrtc_load.sh [CALLS] [SECONDS]        default 250 calls held 60 s, PCMU
#   CODEC=opus RATE=20 THREADS=2 NICE=-10 bench/webrtc_load.sh 250 60
#
# RT_PRIORITY: the server's [server] realtime_priority (default: as shipped in
# config/default.toml; the smoke run uses 0, normal priority). NICE: the server's and the
# tool's nice value.
# CODEC: pcmu (the browsers offer Opus and PCMU as Chromium does; the server picks PCMU and
# passes it through) or opus (Opus only: the server transcodes PCMU <-> Opus).
# Prints the tool's figures: calls bridged both ways, INVITE -> 200, the answer POST, answer
# -> ICE + DTLS connected -> first audio (target p99 <= 300 ms), relay delay each way
# (p50/p99/max, lost; target p99 <= 5 ms), the server's RSS (idle = agents logged in, no
# call; memory per call = (steady - idle) / calls; target <= 150 KiB) and CPU over the steady
# window (per call), the tool's own CPU, and the machine's load. Everything on 127.0.0.1;
# stops by itself.
# Then the server's own share of the relay delay, scraped from /metrics at the end
# (switchboard_webrtc_relay_delay_seconds: kernel arrival at the server to the relayed packet's
# send, whole run incl. ramp-up and hang-up, p50/p99 interpolated in its buckets as
# Prometheus' histogram_quantile does) beside the tool's end-to-end figures: what is left of the
# end-to-end delay is the tool's sending side and the kernel (docs/benchmarks.md, "Reading
# the split"). metrics.txt in the raw folder has the whole scrape.
#
# SMOKE=1 bench/webrtc_load.sh: 3 calls held 3 s on the debug build (SWITCHBOARD_BIN, else
# target/debug/switchboard; the tool built without --release), free ports
# (tests/bench_smoke.rs): fails when a call did not bridge audio both ways, the server dies,
# the summary is missing or the server counted no relayed browser packet, never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SMOKE=${SMOKE:-0}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ $SMOKE == 1 ]]; then
  CALLS=${1:-3}
  SECS=${2:-3}
  RATE=${RATE:-10}
  SIP_PORT=${SIP_PORT:-$(free_port)}
  HTTP_PORT=${HTTP_PORT:-$(free_port)}
  RT_PRIORITY=${RT_PRIORITY:-0}
else
  CALLS=${1:-250}
  SECS=${2:-60}
  RATE=${RATE:-20}
  SIP_PORT=${SIP_PORT:-35260}
  HTTP_PORT=${HTTP_PORT:-38260}
  RT_PRIORITY=${RT_PRIORITY:-$(awk -F'[= #]+' '/^realtime_priority/ {print $2}' config/default.toml)}
fi
CODEC=${CODEC:-pcmu}
THREADS=${THREADS:-2}
PASSWORD=webrtc-load
OUT=$(mktemp -d /tmp/switchboard-webrtc-bench.XXXXXX)
SRV=
# A smoke run that passed leaves nothing behind; any other run keeps its raw files.
cleanup() {
  local rc=$?
  if [[ -n "$SRV" ]]; then kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; fi
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT
if [[ $SMOKE == 1 ]]; then
  cargo build --example webrtc_load >/dev/null
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/switchboard}
  [[ -n "${SWITCHBOARD_BIN:-}" ]] || cargo build --bin switchboard >/dev/null
  TOOL=${CARGO_TARGET_DIR:-target}/debug/examples/webrtc_load
else
  # SWITCHBOARD_BIN=PATH: that release binary (before/after comparisons); the tool is this tree's.
  cargo build --release --bin switchboard --example webrtc_load >/dev/null 2>&1
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-target}/release/switchboard}
  TOOL=${CARGO_TARGET_DIR:-target}/release/examples/webrtc_load
fi
# Per call: the tool has a browser UDP socket, a SIP and an RTP socket and two TCP
# connections; the server a WebRTC socket, a loopback socket, an RTP socket and the event stream.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

mkdir -p "$OUT/dialplans"
cp dialplans/*.toml bench/webrtc_bench.toml "$OUT/dialplans/"
cat config/default.toml > "$OUT/bench.toml"
sed -i "s|database = .*|database = \"sqlite://$OUT/bench.db\"|; s|spool_dir = .*|spool_dir = \"$OUT\"|; \
  s|max_calls = .*|max_calls = 20000|; s|^realtime_priority = .*|realtime_priority = $RT_PRIORITY|; s|media_timeout_s = .*|media_timeout_s = 120|; \
  s|dialplan_dir = .*|dialplan_dir = \"$OUT/dialplans\"|; s|recordings_dir = .*|recordings_dir = \"$OUT/rec\"|; \
  s|audio_dir = .*|audio_dir = \"$PWD/audio\"|" "$OUT/bench.toml"
cat >> "$OUT/bench.toml" <<CFG

[[route]]
to = "webrtcbench"
dialplan = "webrtc_bench"
ring_ms = 0

[[queue]]
name = "browsers"
strategy = "longest-idle"
ring_timeout_s = 15
wrapup_s = 0
max_misses = 3
max_wait_s = 120
join_empty = false
leave_when_empty = false
music_on_hold = "moh"
announce_every_s = 0

# The relay-delay histogram is scraped at the end without a token (loopback only).
[metrics]
public = true
CFG
NICE=${NICE:-0}
RUST_LOG=warn nice -n "$NICE" "$BIN" --config "$OUT/bench.toml" --sip-listen 127.0.0.1:$SIP_PORT \
  --http-listen 127.0.0.1:$HTTP_PORT --rtp-ports 40000-59999 >"$OUT/server.log" 2>&1 &
SRV=$!
for _ in $(seq 100); do grep -qs "switchboard is running" "$OUT/server.log" && break; sleep 0.1; done
grep -qs "switchboard is running" "$OUT/server.log" || { echo "server did not start:"; cat "$OUT/server.log"; exit 1; }
# The agents b001..bNNN, all in the one queue, the same password.
for i in $(seq 1 "$CALLS"); do printf 'b%03d\n' "$i"; done \
  | xargs -P 2 -I{} "$BIN" agent add {} --password "$PASSWORD" --queue browsers \
      --database "sqlite://$OUT/bench.db" >"$OUT/agents.log" 2>&1 \
  || { echo "agent add failed:"; tail -5 "$OUT/agents.log"; exit 1; }

echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(nproc) cores; $CALLS browser calls ($CODEC) at $RATE/s, held ${SECS} s, nice $NICE"
echo "# load before: $(uptime | sed 's/.*load average/load average/')"
TOOL_RC=0
nice -n "$NICE" "$TOOL" --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT --calls "$CALLS" \
  --rate "$RATE" --hold "$SECS" --codec "$CODEC" --password "$PASSWORD" --threads "$THREADS" \
  --server-pid "$SRV" --per-call > "$OUT/tool.out" 2>"$OUT/tool.err" || TOOL_RC=$?
echo "# load after:  $(uptime | sed 's/.*load average/load average/')"
grep -v '^call ' "$OUT/tool.out" || true
# The server's side of the relay delay. Its legs flush their counts once a second and when
# they end: a moment for the last hang-ups first.
sleep 1
python3 - "$HTTP_PORT" "$OUT/metrics.txt" <<'PY' | tee "$OUT/server_relay.txt" || echo "# server relay delay: /metrics not read"
import sys, urllib.request
port, keep = sys.argv[1], sys.argv[2]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
open(keep, "w").write(text)
name = "switchboard_webrtc_relay_delay_seconds"
def buckets(direction):
    out = []
    for line in text.splitlines():
        head = f'{name}_bucket{{direction="{direction}",le="'
        if line.startswith(head):
            le, value = line[len(head):].split('"}')
            out.append((float(le), float(value)))
    return sorted(out)
def quantile(q, bs):
    # histogram_quantile: linear within the bucket that holds rank q*count; in +Inf, the
    # last finite bound. Returns (estimate, the bucket's upper bound), in seconds.
    count = bs[-1][1] if bs else 0
    if count == 0:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for le, cum in bs:
        if cum >= rank:
            if le == float("inf"):
                return lower, le
            inside = cum - below
            est = lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
            return est, le
        lower, below = le, cum
    return lower, float("inf")
summary = {}
for key, direction, what in (
    ("c2b", "caller_to_browser", "loopback arrival -> SRTP sent to the browser"),
    ("b2c", "browser_to_caller", "kernel arrival of the SRTP -> RTP sent to the caller"),
):
    bs = buckets(direction)
    count = int(bs[-1][1]) if bs else 0
    summary[f"{key}_count"] = count
    arrow = direction.replace("_to_", " -> ")
    if count == 0:
        print(f"server relay {arrow} ({what}): no packets counted")
        continue
    parts = []
    for q in (0.5, 0.99):
        est, le = quantile(q, bs)
        bound = "+Inf" if le == float("inf") else f"{le * 1000:g} ms"
        parts.append(f"p{int(q * 100)} {est * 1000:.2f} ms (bucket <= {bound})")
        summary[f"{key}_p{int(q * 100)}_ms"] = round(est * 1000, 3)
    print(f"server relay {arrow} ({what}): {count} packets; " + ", ".join(parts))
print("server_relay: " + " ".join(f"{k}={v}" for k, v in summary.items()))
PY
if grep -q . "$OUT/tool.err"; then echo "# tool stderr:"; tail -5 "$OUT/tool.err"; fi
echo "# server warnings: $(grep -c ' WARN ' "$OUT/server.log" || true), errors: $(grep -c ' ERROR ' "$OUT/server.log" || true)"
grep -E ' (WARN|ERROR) ' "$OUT/server.log" | head -3 | cut -c1-300 | sed 's/^/#   /' || true
if [[ $SMOKE == 1 ]]; then
  kill -0 "$SRV" 2>/dev/null || { echo "smoke: the server died" >&2; tail -20 "$OUT/server.log" >&2; exit 1; }
  # Exit status 1: a call did not bridge audio both ways (the one judged outcome here).
  [[ $TOOL_RC == 0 ]] || { echo "smoke: webrtc_load exited $TOOL_RC (a call not bridged both ways?)" >&2; \
    grep '^call ' "$OUT/tool.out" >&2 || true; tail -20 "$OUT/server.log" >&2; exit 1; }
  grep -Eq "^webrtc_load: calls=$CALLS codec=$CODEC bridged=$CALLS " "$OUT/tool.out" \
    || { echo "smoke: no summary with every call bridged in tool.out" >&2; exit 1; }
  grep -Eq '^server_relay: .*b2c_count=[1-9]' "$OUT/server_relay.txt" \
    || { echo "smoke: the server counted no relayed browser packet (switchboard_webrtc_relay_delay_seconds)" >&2; exit 1; }
  echo "smoke: ok"
fi
echo "raw files: $OUT (tool.out has one line per call)"
