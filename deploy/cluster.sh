#!/usr/bin/env bash
# A local switchboard cluster on one machine (issue 18, docs/deployment.md): PostgreSQL,
# Kamailio at the edge (deploy/kamailio/kamailio.cfg) and N switchboard nodes on 127.0.0.x.
#
#   deploy/cluster.sh start     start PostgreSQL (unless DATABASE_URL), the nodes, the edge
#   deploy/cluster.sh status    processes, the edge's view of the nodes, GET /api/nodes
#   deploy/cluster.sh drain I   POST /api/drain on node I (1..N): the edge stops sending it calls
#   deploy/cluster.sh stop      stop the edge, the nodes (SIGTERM: drain, then stop), PostgreSQL
#
# Addresses (loopback; Linux answers on all of 127.0.0.0/8 without configuration):
#   edge        $EDGE_IP:$SIP_PORT            (default 127.0.0.10:5060): point SIPp/phones here
#   node I      127.0.0.(10+I):$SIP_PORT      SIP (UDP+TCP), HTTP API on :$HTTP_PORT,
#               RTP ports 20000+I*RTP_SPAN .. +RTP_SPAN-1 (own range: nodes may share an address)
#   PostgreSQL  127.0.0.1:$PG_PORT            (default 55490), database `switchboard`
#
# Environment:
#   NODES=3                 number of nodes (1..9)
#   CLUSTER_DIR=/tmp/switchboard-cluster   state: configs, logs, pids, the throwaway database
#   DATABASE_URL=postgres://…  use this database instead of starting a throwaway PostgreSQL
#   SWITCHBOARD_BIN         the binary (default: target/debug/switchboard, else `switchboard`)
#   API_TOKEN               admin token of every node (default: generated, in $CLUSTER_DIR/api_token)
#   EDGE_IP, SIP_PORT=5060, HTTP_PORT=8080, PG_PORT=55490
#   DRAIN_S=30              [cluster] drain_s: how long `stop` lets a node finish its calls
#   DEAD_AFTER_S=15, HEARTBEAT_S=5   [cluster] timing
#   BASE_CONFIG=config/default.toml  the file each node's config is made from (its spool_dir is
#                           replaced, a [cluster] table appended; bench/cluster.sh passes one
#                           with its bench routes and trunk)
#   RTP_SPAN=1000           RTP ports per node (node I: 20000+I*RTP_SPAN ..); at most 4553
#   PG_OPTS                 extra `postgres` options for the throwaway PostgreSQL, e.g.
#                           "-c shared_preload_libraries=pg_stat_statements"
#
# Run as root (as the tests are): the throwaway PostgreSQL runs as the `postgres` OS user.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODES=${NODES:-3}
CLUSTER_DIR=${CLUSTER_DIR:-/tmp/switchboard-cluster}
EDGE_IP=${EDGE_IP:-127.0.0.10}
SIP_PORT=${SIP_PORT:-5060}
HTTP_PORT=${HTTP_PORT:-8080}
PG_PORT=${PG_PORT:-55490}
DRAIN_S=${DRAIN_S:-30}
DEAD_AFTER_S=${DEAD_AFTER_S:-15}
HEARTBEAT_S=${HEARTBEAT_S:-5}
BASE_CONFIG=${BASE_CONFIG:-$ROOT/config/default.toml}
RTP_SPAN=${RTP_SPAN:-1000}
PG_OPTS=${PG_OPTS:-}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$NODES" =~ ^[1-9]$ ]] || die "NODES must be 1..9 (got $NODES)"
# Node 9's range must end below 65536.
[[ "$RTP_SPAN" =~ ^[0-9]+$ ]] && ((RTP_SPAN >= 2 && 20000 + 10 * RTP_SPAN <= 65536)) ||
  die "RTP_SPAN must be 2..4553 (got $RTP_SPAN)"
node_ip() { echo "127.0.0.$((10 + $1))"; }
alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

switchboard_bin() {
  if [[ -n "${SWITCHBOARD_BIN:-}" ]]; then echo "$SWITCHBOARD_BIN"
  elif [[ -x "$ROOT/target/debug/switchboard" ]]; then echo "$ROOT/target/debug/switchboard"
  elif command -v switchboard >/dev/null; then command -v switchboard
  else die "no switchboard binary: cargo build, or set SWITCHBOARD_BIN"; fi
}

# ---- PostgreSQL (throwaway unless DATABASE_URL) --------------------------------------------
PG_BIN=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' 2>/dev/null | sort -V | tail -n 1 | xargs -r dirname || true)
as_pg() { if [[ $(id -u) == 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

pg_start() {
  [[ -n "$PG_BIN" ]] || die "PostgreSQL server binaries not found (apt-get install postgresql), or set DATABASE_URL"
  local data=$CLUSTER_DIR/pg/data
  if [[ ! -d "$data" ]]; then
    mkdir -p "$CLUSTER_DIR/pg"
    [[ $(id -u) == 0 ]] && chown postgres: "$CLUSTER_DIR/pg"
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
      >"$CLUSTER_DIR/pg/initdb.log" 2>&1 || { cat "$CLUSTER_DIR/pg/initdb.log" >&2; die "initdb failed"; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$CLUSTER_DIR/pg/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $CLUSTER_DIR/pg -c fsync=off -c synchronous_commit=off $PG_OPTS" \
    start >/dev/null || { tail -n 20 "$CLUSTER_DIR/pg/server.log" >&2; die "PostgreSQL did not start on port $PG_PORT"; }
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'switchboard'" | grep -q 1 ||
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'CREATE DATABASE switchboard'
  log "PostgreSQL on 127.0.0.1:$PG_PORT ($CLUSTER_DIR/pg)"
}

pg_stop() {
  [[ -d "$CLUSTER_DIR/pg/data" && -n "$PG_BIN" ]] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  rm -rf -- "$CLUSTER_DIR/pg"
  log "PostgreSQL stopped, its data removed"
}

# ---- nodes ---------------------------------------------------------------------------------
node_start() {
  local i=$1 bin=$2 url=$3 token=$4 ip dir
  ip=$(node_ip "$i"); dir=$CLUSTER_DIR/node$i
  mkdir -p "$dir"
  sed "s|^spool_dir.*|spool_dir = \"$dir/spool\"|" "$BASE_CONFIG" >"$dir/config.toml"
  printf '\n[cluster]\nheartbeat_s = %s\ndead_after_s = %s\ndrain_s = %s\nqueues = "cluster"\n' \
    "$HEARTBEAT_S" "$DEAD_AFTER_S" "$DRAIN_S" >>"$dir/config.toml"
  # Every request reaches the node from the edge's address: trusted, or the flood guard bans
  # the edge itself after [security] request_limit (200) INVITEs in 10 s, i.e. at 20 calls/s.
  if grep -q '^\[security\]' "$dir/config.toml"; then
    log "WARNING: $BASE_CONFIG has a [security] table: make sure it trusts the edge ($EDGE_IP)"
  else
    printf '\n[security]\ntrusted_cidrs = ["127.0.0.1/32", "::1/128", "%s/32"]\n' "$EDGE_IP" >>"$dir/config.toml"
  fi
  (cd "$ROOT" && exec setsid "$bin" --config "$dir/config.toml" --database "$url" \
      --node-id "sb$i" --sip-listen "$ip:$SIP_PORT" --http-listen "$ip:$HTTP_PORT" \
      --rtp-ports "$((20000 + i * RTP_SPAN))-$((20000 + (i + 1) * RTP_SPAN - 1))" --api-token "$token" \
      </dev/null >"$dir/stdout.log" 2>"$dir/switchboard.log") &
  echo $! >"$dir/pid"
}

wait_healthy() {
  local i=$1 ip; ip=$(node_ip "$i")
  for _ in $(seq 1 100); do
    alive "$CLUSTER_DIR/node$i/pid" || { tail -n 20 "$CLUSTER_DIR/node$i/switchboard.log" >&2; die "node sb$i exited"; }
    curl -fsS -o /dev/null "http://$ip:$HTTP_PORT/healthz" 2>/dev/null && return 0
    sleep 0.2
  done
  die "node sb$i not healthy within 20 s (log: $CLUSTER_DIR/node$i/switchboard.log)"
}

# ---- the edge ------------------------------------------------------------------------------
edge_start() {
  command -v kamailio >/dev/null || [[ -x /usr/sbin/kamailio ]] ||
    die "kamailio not installed (apt-get install --no-install-recommends kamailio)"
  local i list=$CLUSTER_DIR/edge/dispatcher.list
  mkdir -p "$CLUSTER_DIR/edge"
  : >"$list"
  for i in $(seq 1 "$NODES"); do echo "1 sip:$(node_ip "$i"):$SIP_PORT" >>"$list"; done
  PATH=$PATH:/usr/sbin setsid kamailio -DD -E -m 64 -M 8 -f "$ROOT/deploy/kamailio/kamailio.cfg" \
    -A "LISTEN=udp:$EDGE_IP:$SIP_PORT" -A "DISPATCHER_LIST=\"$list\"" \
    -A "CTL_SOCKET=\"unix:$CLUSTER_DIR/edge/ctl\"" -A "PING_INTERVAL=1" \
    </dev/null >/dev/null 2>"$CLUSTER_DIR/edge/kamailio.log" &
  echo $! >"$CLUSTER_DIR/edge/pid"
  for _ in $(seq 1 50); do
    [[ $(edge_flags | grep -c ' A') == "$NODES" ]] && { log "edge on $EDGE_IP:$SIP_PORT, $NODES nodes active"; return 0; }
    alive "$CLUSTER_DIR/edge/pid" || { tail -n 20 "$CLUSTER_DIR/edge/kamailio.log" >&2; die "kamailio exited"; }
    sleep 0.2
  done
  log "WARNING: not every node active at the edge yet:"; edge_flags >&2
}

# "URI FLAGS" per node, from the dispatcher (A = active, I = inactive, P = probing).
edge_flags() {
  PATH=$PATH:/usr/sbin kamcmd -s "unix:$CLUSTER_DIR/edge/ctl" dispatcher.list 2>/dev/null |
    awk '/URI:/ { uri = $2 } /FLAGS:/ { print uri, $2 }' | sort || true
}

stop_pid() {  # stop_pid PIDFILE NAME TIMEOUT_S: SIGTERM, wait, SIGKILL
  local f=$1 name=$2 t=$3 pid
  if ! alive "$f"; then rm -f "$f"; log "$name stopped"; return 0; fi
  pid=$(cat "$f")
  kill -TERM "$pid"
  for _ in $(seq 1 $((t * 5))); do kill -0 "$pid" 2>/dev/null || { rm -f "$f"; log "$name stopped"; return 0; }; sleep 0.2; done
  log "$name did not stop within ${t}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

cmd_start() {
  local bin url token i
  bin=$(switchboard_bin)
  alive "$CLUSTER_DIR/edge/pid" && die "a cluster is already running in $CLUSTER_DIR (deploy/cluster.sh stop)"
  mkdir -p "$CLUSTER_DIR"
  if [[ -n "${DATABASE_URL:-}" ]]; then url=$DATABASE_URL; log "database: $url"
  else pg_start; url="postgres://postgres@127.0.0.1:$PG_PORT/switchboard"; fi
  token=${API_TOKEN:-$(head -c 18 /dev/urandom | base64 | tr '+/' 'AB')}
  (umask 077; echo "$token" >"$CLUSTER_DIR/api_token")
  # The first node runs the migrations alone; the others start once it is healthy.
  node_start 1 "$bin" "$url" "$token"; wait_healthy 1
  for i in $(seq 2 "$NODES"); do node_start "$i" "$bin" "$url" "$token"; done
  for i in $(seq 2 "$NODES"); do wait_healthy "$i"; done
  log "$NODES nodes: $(for i in $(seq 1 "$NODES"); do printf 'sb%s=%s ' "$i" "$(node_ip "$i")"; done)"
  edge_start
  log "calls to sip:hotline@$EDGE_IP:$SIP_PORT; API http://$(node_ip 1):$HTTP_PORT (token in $CLUSTER_DIR/api_token)"
}

cmd_stop() {
  [[ -d "$CLUSTER_DIR" ]] || { log "nothing in $CLUSTER_DIR"; return 0; }
  stop_pid "$CLUSTER_DIR/edge/pid" kamailio 10
  # All nodes drain at once (SIGTERM), then each is waited for.
  local i f
  for f in "$CLUSTER_DIR"/node*/pid; do
    if alive "$f"; then kill -TERM "$(cat "$f")"; fi
  done
  for i in $(seq 1 9); do
    f=$CLUSTER_DIR/node$i/pid
    if [[ -f "$f" ]]; then stop_pid "$f" "sb$i" $((DRAIN_S + 15)); fi
  done
  pg_stop
}

cmd_status() {
  local i f ip token
  token=$(cat "$CLUSTER_DIR/api_token" 2>/dev/null || true)
  if alive "$CLUSTER_DIR/edge/pid"; then echo "edge: running (pid $(cat "$CLUSTER_DIR/edge/pid")) on $EDGE_IP:$SIP_PORT"
    edge_flags | sed 's/^/  dispatcher: /'
  else echo "edge: stopped"; fi
  for f in "$CLUSTER_DIR"/node*/pid; do
    [[ -f "$f" ]] || continue
    i=${f%/pid}; i=${i##*node}; ip=$(node_ip "$i")
    if alive "$f"; then
      echo "sb$i: running (pid $(cat "$f")) $ip: $(curl -fsS -H "Authorization: Bearer $token" "http://$ip:$HTTP_PORT/api/status" 2>/dev/null | head -c 300)"
    else echo "sb$i: stopped"; fi
  done
  for f in "$CLUSTER_DIR"/node*/pid; do
    alive "$f" || continue
    i=${f%/pid}; i=${i##*node}
    echo "nodes table (via sb$i): $(curl -fsS -H "Authorization: Bearer $token" "http://$(node_ip "$i"):$HTTP_PORT/api/nodes" 2>/dev/null)"
    break
  done
}

cmd_drain() {
  local i=${1:-} token
  [[ "$i" =~ ^[1-9]$ ]] || die "usage: deploy/cluster.sh drain NODE_INDEX"
  token=$(cat "$CLUSTER_DIR/api_token")
  curl -fsS -X POST -H "Authorization: Bearer $token" "http://$(node_ip "$i"):$HTTP_PORT/api/drain"; echo
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  drain) cmd_drain "${2:-}" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
