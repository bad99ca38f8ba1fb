#!/usr/bin/env bash
# Outbound campaign against a SIPp "customer farm" (docs/benchmarks.md, "Campaigns (issue 6)").
#
#   bench/campaign_farm.sh [CONTACTS] [CHANNELS] [CPS] [TIMEOUT_S]
#       defaults: 10000 contacts, 200 channels, 100 calls/s, give up after 1500 s
#
# The release server on loopback with one trunk "farm" (max_channels = CHANNELS, max_cps =
# CPS) pointing at ONE SIPp UAS running sip-test/uas_farm.xml (-aa, -l 4000). CONTACTS
# delayed tickets are imported with `switchboard tickets import` (the supported CSV path),
# every phone ending in 1: the farm rings 200 ms, answers, and its RTP stream (a pcap from
# sip-test/make_dtmf_pcap.py) presses 1 after DIGIT_MS (default 500 ms); the server plays
# delay-notify, takes the 1 ("keep waiting"), confirms, says goodbye and hangs up. A
# campaign {"status": "delayed"} with max_channels = CHANNELS and max_cps = CPS is created
# and started through the API; every second the script samples GET /api/campaigns/{id}
# (active_calls, contacts per state) and the server's /proc/PID/stat and VmRSS.
#
# Prints: channel occupancy while contacts remain (mean active_calls / CHANNELS over the
# samples with pending contacts, also without the first 10 s of ramp-up), contacts per
# minute, server CPU (utime+stime over the run, in cores and ms per contact), server RSS,
# the farm's CPU, call timings from call_records, outcomes, and SIPp's failed calls.
# Needs root (SIPp's play_pcap_audio uses a raw socket), sipp and python3. Everything on
# 127.0.0.1; everything started here is stopped on exit. Raw files: the printed folder.
# Environment: DIGIT_MS (500), SIP_PORT (35080), HTTP_PORT (35081), FARM_PORT (35090),
# FARM_MEDIA (36000), RTP_PORTS (30000-33999), RUST_LOG (info).
#
# SMOKE=1 bench/campaign_farm.sh: 10 contacts on 10 channels against the debug build
# (SWITCHBOARD_BIN, else target/debug/switchboard), free ports, give up after 60 s
# (tests/bench_smoke.rs): fails when the run breaks (SIPp or the server dies, the campaign
# does not complete, a figure is missing), never on the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=${SMOKE:-0}; export SMOKE
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ $SMOKE == 1 ]]; then
  CONTACTS=${1:-10}
  CHANNELS=${2:-10}
  CPS=${3:-10}
  TIMEOUT_S=${4:-60}
  SIP_PORT=${SIP_PORT:-$(free_port)}
  HTTP_PORT=${HTTP_PORT:-$(free_port)}
  FARM_PORT=${FARM_PORT:-$(free_port)}
  FARM_MEDIA=${FARM_MEDIA:-$(free_port)}
  RUST_LOG=${RUST_LOG:-warn}
else
  CONTACTS=${1:-10000}
  CHANNELS=${2:-200}
  CPS=${3:-100}
  TIMEOUT_S=${4:-1500}
  SIP_PORT=${SIP_PORT:-35080}
  HTTP_PORT=${HTTP_PORT:-35081}
  FARM_PORT=${FARM_PORT:-35090}
  FARM_MEDIA=${FARM_MEDIA:-36000}
fi
DIGIT_MS=${DIGIT_MS:-500}
RTP_PORTS=${RTP_PORTS:-30000-33999}
TOKEN=campaign-farm-bench-$RANDOM$RANDOM
[[ $(id -u) == 0 ]] || { echo "run as root: SIPp's play_pcap_audio needs a raw socket" >&2; exit 2; }
command -v sipp >/dev/null || { echo "sipp not found" >&2; exit 2; }

OUT=$(mktemp -d /tmp/switchboard-campaign-farm.XXXXXX)
SRV=; FARM=
# A smoke run that passed leaves nothing behind; any other run keeps its raw files.
cleanup() {
  local rc=$?
  [[ -n "$SRV" ]] && { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
  [[ -n "$FARM" ]] && { kill "$FARM" 2>/dev/null || true; wait "$FARM" 2>/dev/null || true; }
  if [[ $SMOKE == 1 && $rc == 0 ]]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

echo "# $(date -u +%FT%TZ) $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "# $CONTACTS contacts, $CHANNELS channels, max_cps $CPS, digit at $DIGIT_MS ms; folder $OUT"
if [[ $SMOKE == 1 ]]; then
  BIN=${SWITCHBOARD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/switchboard}
  if [[ -z "${SWITCHBOARD_BIN:-}" ]]; then
    cargo build --bin switchboard > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  fi
else
  cargo build --release > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard
fi

# ---- the farm: uas_farm.xml with a fast "press 1" stream (bench/lib/farm.bash) ------------
. bench/lib/farm.bash
farm_start "$OUT" "$FARM_PORT" "$FARM_MEDIA" "$DIGIT_MS" "$TIMEOUT_S"

# ---- the server: default config, a fresh SQLite database, the farm trunk --------------------
{
  sed -e "s|^spool_dir = .*|spool_dir = \"$OUT/spool\"|" -e "s|^demo_data = .*|demo_data = false|" \
      config/default.toml
  cat <<CFG

[[trunk]]
name = "farm"
address = "127.0.0.1:$FARM_PORT"
transport = "udp"
max_channels = $CHANNELS
max_cps = $CPS
CFG
} > "$OUT/bench.toml"
# Tickets: order ids 7xxxxxx, phones +1 555 NNNNNN 1 (unique, last digit 1 = answer and
# press 1), five zones (none at 23:59 local during an evening-UTC run; the window is
# 00:00-23:59), delay 1-14 days.
python3 - "$CONTACTS" > "$OUT/tickets.csv" <<'PY'
import sys
n = int(sys.argv[1])
zones = ["UTC", "America/New_York", "Europe/Paris", "Asia/Shanghai", "America/Los_Angeles"]
print("order_id,customer_name,phone,language,segment,timezone,status,delay_days,new_eta")
for i in range(n):
    print(f"{7000000 + i},Customer {i},+1555{i:06d}1,en,standard,{zones[i % 5]},delayed,{1 + i % 14},2026-12-{1 + i % 28:02d}")
PY
DBURL="sqlite://$OUT/switchboard.db"
T0=$EPOCHREALTIME
$BIN tickets import "$OUT/tickets.csv" --config "$OUT/bench.toml" --database "$DBURL" \
  > "$OUT/import.log" 2>&1
echo "tickets import: $CONTACTS rows in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s ($(tail -c 200 "$OUT/import.log" | tr '\r' '\n' | grep -v '^\[' | tail -1))"

RUST_LOG=${RUST_LOG:-info} $BIN run --config "$OUT/bench.toml" --database "$DBURL" \
  --sip-listen 127.0.0.1:$SIP_PORT --http-listen 127.0.0.1:$HTTP_PORT --rtp-ports "$RTP_PORTS" \
  --api-token "$TOKEN" --no-demo-data > "$OUT/server.stdout" 2> "$OUT/server.log" &
SRV=$!

# ---- create, start, sample ------------------------------------------------------------------
python3 - "$HTTP_PORT" "$TOKEN" "$SRV" "$FARM" "$CONTACTS" "$CHANNELS" "$CPS" "$TIMEOUT_S" "$OUT" <<'PY'
import json, os, sqlite3, sys, time, urllib.request, urllib.error
port, token, srv, farm, contacts, channels, cps, timeout, out = sys.argv[1:]
srv, farm, contacts, channels, timeout = int(srv), int(farm), int(contacts), int(channels), int(timeout)
base = f"http://127.0.0.1:{port}"
tck = os.sysconf("SC_CLK_TCK")
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy

def api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with http.open(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")

def cpu(pid):  # utime + stime, seconds
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tck

def machine():  # (busy, all, iowait, steal jiffies) of every CPU, sectors written on all disks
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    iowait, steal = v[4], (v[7] if len(v) > 7 else 0)
    sectors = 0
    with open("/proc/diskstats") as f:
        for l in f:
            p = l.split()
            if len(p) > 9 and not p[2].startswith(("loop", "ram", "dm-")) and not p[2][-1].isdigit():
                sectors += int(p[9])
    return sum(v) - idle, sum(v), sectors, iowait, steal

def threads(pid):  # "state:wchan" of the server's threads that are not running or sleeping
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            if st not in ("S", "R"):
                with open(f"/proc/{pid}/task/{t}/wchan") as f:
                    out.append(f"{st}:{f.read().strip() or '?'}")
        except OSError:
            pass
    return " ".join(sorted(out))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0

deadline = time.time() + 30
while True:
    try:
        with http.open(base + "/healthz", timeout=1) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("server not healthy within 30 s (see server.log)")
    time.sleep(0.1)

spec = {"name": f"farm-bench-{contacts}", "dialplan": "delay-notify", "trunk": "farm",
        "caller_id": "+15550100", "tickets": {"status": "delayed"},
        "max_channels": channels, "max_cps": float(cps), "ring_timeout_s": 15,
        "window": {"start": "00:00", "end": "23:59"}}
t = time.time()
code, body = api("POST", "/api/campaigns", spec)
create_s = time.time() - t
if code != 201:
    sys.exit(f"POST /api/campaigns: {code} {body}")
cid = body["id"]
print(f"campaign {cid} created with {body['contacts']} contacts in {create_s * 1000:.0f} ms (API round trip)")
rss_idle = rss_kib(srv)
cpu0, fcpu0, t0 = cpu(srv), cpu(farm), time.time()
code, body = api("POST", f"/api/campaigns/{cid}/start")
if code != 200:
    sys.exit(f"start: {code} {body}")

samples = []  # (t, active, pending, done, rss, machine_busy_pct, disk_write_mib_s, server_cpu_pct,
              #  iowait_pct, steal_pct, blocked server threads)
state = "running"
next_t = t0
m_prev, c_prev, t_prev = machine(), cpu(srv), time.time()
while True:
    next_t += 1.0
    time.sleep(max(0.0, next_t - time.time()))
    code, b = api("GET", f"/api/campaigns/{cid}")
    now = time.time() - t0
    if code != 200:
        print(f"GET campaign at {now:.0f} s: {code} {b}")
        continue
    st = b["progress"]["contacts"]
    pending = st.get("pending", 0) + st.get("retry", 0)
    done = b["progress"]["total"] - pending - st.get("dialing", 0)
    m, c, tn = machine(), cpu(srv), time.time()
    busy = (m[0] - m_prev[0]) / max(m[1] - m_prev[1], 1) * 100
    disk = (m[2] - m_prev[2]) * 512 / 1048576 / max(tn - t_prev, 1e-3)
    srv_pct = (c - c_prev) / max(tn - t_prev, 1e-3) * 100
    jiff = max(m[1] - m_prev[1], 1)
    iow, stl = (m[3] - m_prev[3]) / jiff * 100, (m[4] - m_prev[4]) / jiff * 100
    m_prev, c_prev, t_prev = m, c, tn
    samples.append((now, b["active_calls"], pending, done, rss_kib(srv), busy, disk, srv_pct,
                    iow, stl, threads(srv)))
    state = b["state"]
    if state in ("completed", "stopped"):
        break
    if now > timeout:
        print(f"timeout after {timeout} s: stopping the campaign")
        api("POST", f"/api/campaigns/{cid}/stop")
        state = "timed out"
        break
wall = time.time() - t0
cpu_s, fcpu_s = cpu(srv) - cpu0, cpu(farm) - fcpu0
final = api("GET", f"/api/campaigns/{cid}")[1]

with open(os.path.join(out, "samples.csv"), "w") as f:
    f.write("t_s,active_calls,pending,done,rss_kib,machine_busy_pct,disk_write_mib_s,server_cpu_pct,iowait_pct,steal_pct,blocked_threads\n")
    for s in samples:
        f.write(",".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in s) + "\n")

def runs_below(rows, limit):  # [(start, end)] of consecutive samples below `limit` active
    out, cur = [], None
    for r in rows:
        if r[1] < limit:
            cur = (cur[0] if cur else r[0], r[0])
        elif cur:
            out.append(cur)
            cur = None
    if cur:
        out.append(cur)
    return out

def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")

remain = [s for s in samples if s[2] > 0]
occ_all = mean([s[1] for s in remain]) / channels
occ_steady = mean([s[1] for s in remain if s[0] >= 10]) / channels
min_steady = min((s[1] for s in remain if s[0] >= 10), default=0)
full_at = next((s[0] for s in samples if s[1] >= channels), None)
last_pending_t = remain[-1][0] if remain else 0.0
total_done = samples[-1][3] if samples else 0
print(f"end state: {state} after {wall:.1f} s; contacts done {total_done}/{final['progress']['total']}")
print(f"states: {json.dumps(final['progress']['contacts'])}  outcomes: {json.dumps(final['progress']['outcomes'])}")
print(f"channel occupancy while contacts remain ({len(remain)} samples, {last_pending_t:.0f} s): "
      f"mean {occ_all * 100:.1f} % of {channels}; after the first 10 s {occ_steady * 100:.1f} % (min {min_steady} active)"
      f"; all {channels} busy first at {full_at if full_at is None else round(full_at, 1)} s")
steady = [s for s in remain if s[0] >= 10]
if len(steady) >= 2:
    slope = (steady[-1][3] - steady[0][3]) / (steady[-1][0] - steady[0][0]) * 60
    slope_txt = f"{slope:.0f} (from {steady[0][0]:.0f} s to {steady[-1][0]:.0f} s)"
else:
    slope_txt = "n/a (run too short)"
low = runs_below([s for s in remain if s[0] >= 10], 0.9 * channels)
print(f"dips below 90 % after 10 s: {len(low)} ("
      + ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in low[:12]) + (" ..." if len(low) > 12 else "") + ")")
busy_all = mean([s[5] for s in samples])
busy_low = mean([s[5] for s in remain if s[0] >= 10 and s[1] < 0.9 * channels])
dip = [s for s in remain if s[0] >= 10 and s[1] < 0.9 * channels]
print(f"whole machine CPU busy (of {os.cpu_count()} cores): mean {busy_all:.0f} %, during the dips {busy_low:.0f} %; "
      f"iowait mean {mean([s[8] for s in samples]):.1f} %, during the dips {mean([s[8] for s in dip]):.1f} %; "
      f"steal mean {mean([s[9] for s in samples]):.1f} %; disk writes mean {mean([s[6] for s in samples]):.1f} MiB/s")
blocked = [s for s in samples if s[10]]
print(f"samples with server threads in D state or similar: {len(blocked)}"
      + "".join(f"\n  {s[0]:.0f} s: {s[10]}" for s in blocked[:8]))
print(f"contacts per minute: whole run (start to completed) {total_done / wall * 60:.0f}; "
      f"steady, while contacts remained, after the first 10 s: {slope_txt}")
print(f"server CPU: {cpu_s:.1f} s over {wall:.1f} s = {cpu_s / wall:.2f} cores, "
      f"{cpu_s / max(total_done, 1) * 1000:.1f} ms per contact")
print(f"farm (SIPp) CPU: {fcpu_s:.1f} s = {fcpu_s / wall:.2f} cores")
rss = [s[4] for s in samples]
print(f"server RSS: idle {rss_idle / 1024:.1f} MiB, peak {max(rss) / 1024:.1f} MiB, at the end {rss[-1] / 1024:.1f} MiB")

# Call timings from the server's own records.
time.sleep(2)  # the record writer batches
db = sqlite3.connect(f"file:{out}/switchboard.db?mode=ro", uri=True, timeout=10)
def secs(a, b):
    return f"(julianday({b}) - julianday({a})) * 86400.0"
row = db.execute(f"""SELECT COUNT(*), AVG({secs('started_at', 'answered_at')}),
    AVG({secs('answered_at', 'ended_at')}), AVG({secs('started_at', 'ended_at')}),
    MAX({secs('started_at', 'ended_at')}), SUM(answered_at IS NULL)
    FROM call_records WHERE campaign_id = ?""", (cid,)).fetchone()
n, ring, talk, hold, hold_max, unanswered = row
print(f"call records: {n}, unanswered {unanswered}; INVITE->answer {ring:.2f} s, answer->end {talk:.2f} s, "
      f"whole call {hold:.2f} s (max {hold_max:.2f} s)")
print(f"ceiling at {channels} channels with {hold:.2f} s calls: {channels / hold * 60:.0f} contacts/min")
att = db.execute("""SELECT COUNT(*), SUM(a.disposition = 'answered') FROM campaign_attempts a
    JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = ?""", (cid,)).fetchone()
print(f"attempts: {att[0]}, answered {att[1]}")
if os.environ.get("SMOKE") == "1":
    # A broken run, not a judged figure: the campaign must have dialed every contact.
    if state != "completed" or not n or total_done < contacts:
        sys.exit(f"smoke: the campaign did not complete ({state}, {total_done}/{contacts} done, {n} call records)")
PY

# ---- stop and collect -----------------------------------------------------------------------
if [[ $SMOKE == 1 ]]; then
  kill -0 "$SRV" 2>/dev/null || { echo "smoke: the server died" >&2; tail -20 "$OUT/server.log" >&2; exit 1; }
  kill -0 "$FARM" 2>/dev/null || { echo "smoke: the SIPp farm died" >&2; tail -20 "$OUT/farm.stderr" "$OUT/farm.stdout" >&2; exit 1; }
fi
kill -TERM "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; SRV=
kill -TERM "$FARM" 2>/dev/null || true; wait "$FARM" 2>/dev/null || true; FARM=
grep -a "Failed call" "$OUT/farm.stdout" | tail -1 | sed 's/^/farm: /' || true
echo "server warnings: $(grep -c ' WARN ' "$OUT/server.log" || true), errors: $(grep -c ' ERROR ' "$OUT/server.log" || true)"
[[ $SMOKE == 1 ]] && echo "smoke: ok"
echo "raw files: $OUT"
