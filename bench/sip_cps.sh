#!/usr/bin/env bash
# SIP call-setup rate (docs/benchmarks.md, "SIP call setup"): SIPp's built-in UAC against the
# release server on loopback, INVITE -> 100/180 -> 200 -> ACK -> BYE, no hold time.
#
#   bench/sip_cps.sh [RATE] [SECONDS]        default 2000 calls/s for 60 s
#
# Prints SIPp's totals, the INVITE->200 response-time distribution (SIPp response time 1),
# and the server's peak RSS. Everything on 127.0.0.1; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-2000}
SECS=${2:-60}
CALLS=$((RATE * SECS))
OUT=$(mktemp -d /tmp/switchboard-bench.XXXXXX)
trap 'kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true' EXIT
cargo build --release >/dev/null 2>&1
SIP_PORT=${SIP_PORT:-35060}
cat config/default.toml > "$OUT/bench.toml"
sed -i "s|database = .*|database = \"sqlite://$OUT/bench.db\"|; s|spool_dir = .*|spool_dir = \"$OUT\"|; s|max_calls = .*|max_calls = 20000|" "$OUT/bench.toml"
cat >> "$OUT/bench.toml" <<CFG

[[route]]
to = "bench"
dialplan = "hotline"
ring_ms = 0
CFG
RUST_LOG=warn target/release/switchboard --config "$OUT/bench.toml" --sip-listen 127.0.0.1:$SIP_PORT \
  --http-listen 127.0.0.1:0 --rtp-ports 40000-59999 >"$OUT/server.log" 2>&1 &
SRV=$!
for _ in $(seq 50); do grep -qs "switchboard is running" "$OUT/server.log" && break; sleep 0.1; done
peak=0
( while kill -0 $SRV 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' /proc/$SRV/status 2>/dev/null || echo 0)
    echo "$rss"; sleep 0.5; done ) > "$OUT/rss.txt" &
RSSMON=$!
cd "$OUT"
sipp -sn uac -s bench -i 127.0.0.1 -p 35070 -r "$RATE" -rp 1000 -m "$CALLS" -l 20000 -d 0 \
  -nostdin -timeout $((SECS + 60))s -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 \
  -trace_err -error_file err.log 127.0.0.1:$SIP_PORT > sipp.out 2>&1 || true
kill $RSSMON 2>/dev/null || true
cd - >/dev/null
python3 - "$OUT" "$RATE" "$SECS" <<'PY'
import csv, glob, os, sys
out, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.reader(open(os.path.join(out, "stat.csv")), delimiter=";"))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
print(f"target {rate} calls/s for {secs} s")
print(f"calls: total {col('TotalCallCreated')}  successful {col('SuccessfulCall(C)')}  failed {col('FailedCall(C)')}")
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
    print(f"server RSS: start {rss[0]/1024:.1f} MiB  peak {max(rss)/1024:.1f} MiB")
PY
echo "raw files: $OUT"
