#!/usr/bin/env bash
# Self-test of the sip-test/ tooling WITHOUT the switchboard server: every UAC scenario is
# run by SIPp against a SIPp stand-in (sip-test/uas/*.xml) on 127.0.0.1, media is recorded
# by rtp_sink.py and checked with make_dtmf_pcap.py --info.
#   sip-test/selftest.sh            (root needed: SIPp plays pcaps through a raw socket)
# Runs inside a private network namespace (unshare -n, loopback only) when possible.
# Prints one line per check and "SIP-TEST SELFTEST: N passed, M failed"; exit 0 = all passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ -z "${SIP_TEST_IN_NETNS:-}" ]] && command -v unshare >/dev/null && command -v ip >/dev/null &&
   [[ $(id -u) == 0 ]] &&
   unshare -n true 2>/dev/null; then
  export SIP_TEST_IN_NETNS=1
  exec unshare -n bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

SIPP=${SWITCHBOARD_SIPP:-$(command -v sipp || true)}
[[ -x "$SIPP" ]] || { echo "selftest: sipp not found (apt-get install sip-tester)" >&2; exit 2; }
PY=${PYTHON:-python3}
W=$(mktemp -d /tmp/sip-test-selftest.XXXXXX)
KEEP=${SIP_TEST_KEEP:-}
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  if [[ -n "$KEEP" ]]; then echo "selftest: outputs kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

free_udp_port() {  # free UDP port on 127.0.0.1 starting at $1 (and $1+1 free too)
  "$PY" - "$1" <<'EOF'
import socket, sys
p = int(sys.argv[1])
while True:
    try:
        socks = []
        for q in (p, p + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", q)); socks.append(s)
        print(p); break
    except OSError:
        p += 2
EOF
}
UAS_P=$(free_udp_port 5098); UAC_P=$(free_udp_port 5196)
UAC_MP=$(free_udp_port 17100); RTP_P=$(free_udp_port 16100)

pass=0; fail=0
ok()  { echo "PASS  $1"; pass=$((pass + 1)); }
bad() { echo "FAIL  $1"; fail=$((fail + 1)); }

COMMON=(-i 127.0.0.1 -m 1 -nostdin -timeout_error -trace_err)
uas() {  # uas NAME XML [sipp args...]  -> background, pid in UAS_PID
  local name=$1 xml=$2; shift 2
  "$SIPP" -sf "$xml" "${COMMON[@]}" -p "$UAS_P" -timeout 20s -error_file "$W/$name.uas.err" \
    -trace_msg -message_file "$W/$name.uas.msg" -trace_logs -log_file "$W/$name.uas.log" "$@" \
    >"$W/$name.uas.out" 2>&1 &
  UAS_PID=$!; PIDS+=("$UAS_PID"); sleep 0.3
}
uac() {  # uac NAME XML -> rc in UAC_RC
  local name=$1 xml=$2; shift 2
  set +e
  "$SIPP" -sf "$xml" "${COMMON[@]}" -p "$UAC_P" -mp "$UAC_MP" -l 1 -timeout 30s \
    -error_file "$W/$name.uac.err" -trace_msg -message_file "$W/$name.uac.msg" \
    -s hotline -set caller +15551230001 "$@" 127.0.0.1:"$UAS_P" >"$W/$name.uac.out" 2>&1
  UAC_RC=$?
  wait "$UAS_PID"; UAS_RC=$?
  set -e
}

# 1. static checks
for f in "$HERE"/*.xml "$HERE"/uas/*.xml; do
  if "$PY" -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$f" 2>"$W/xml.err"; then
    ok "well-formed XML $(basename "$f")"
  else bad "well-formed XML $(basename "$f"): $(cat "$W/xml.err")"; fi
done
if "$PY" "$HERE/make_dtmf_pcap.py" --selftest 2>"$W/pcap_selftest.err"; then ok "make_dtmf_pcap.py --selftest"
else bad "make_dtmf_pcap.py --selftest: $(cat "$W/pcap_selftest.err")"; fi

# 2. render
"$PY" "$HERE/make_dtmf_pcap.py" --script "500:1,1500:2" --tail-ms 500 -o "$W/d12.pcap" 2>/dev/null
"$PY" "$HERE/render.py" uac_call.xml "$W/call_3000.xml" --pcap "$W/d12.pcap" --hold-ms 3000 >/dev/null
"$PY" "$HERE/render.py" uac_call.xml "$W/call_5000.xml" --pcap "$W/d12.pcap" --hold-ms 5000 >/dev/null
"$PY" "$HERE/render.py" uac_hangup_early.xml "$W/early.xml" --hold-ms 1500 >/dev/null
"$PY" "$HERE/render.py" uac_cancel.xml "$W/cancel.xml" --ring-ms 300 >/dev/null
"$PY" "$HERE/render.py" uac_options.xml "$W/options.xml" >/dev/null
if grep -q '@[A-Z_]*@' <(sed '/<!--/,/-->/d' "$W"/call_3000.xml "$W"/early.xml "$W"/cancel.xml); then
  bad "render: placeholders left"; else ok "render: all placeholders filled"; fi

# 3. SIPp loads every rendered scenario (closed port: only a timeout, no load error)
for s in call_3000 early cancel options; do
  set +e
  "$SIPP" -sf "$W/$s.xml" -i 127.0.0.1 -p "$UAC_P" -mp "$UAC_MP" -m 1 -l 1 -nostdin -timeout 2s \
    -timeout_error -s hotline -set caller +15551230001 127.0.0.1:1 >"$W/load_$s.out" 2>&1
  rc=$?; set -e
  if [[ $rc == 255 ]] && grep -q "timed out after" "$W/load_$s.out" &&
     ! grep -qiE "can't|cannot|unable|error in|unknown" "$W/load_$s.out"; then
    ok "sipp loads $s.xml (rc 255 = timeout only)"
  else bad "sipp loads $s.xml: rc $rc, see $W/load_$s.out"; fi
done

# 4. flows against SIPp stand-ins
"$PY" "$HERE/rtp_sink.py" "$RTP_P" -o "$W/rx.pcap" --seconds 20 --idle-exit 1.5 2>"$W/sink.err" &
SINK=$!; PIDS+=("$SINK"); sleep 0.3
uas call_uachangup "$HERE/uas/uas_answer.xml" -set rtpport "$RTP_P"
uac call_uachangup "$W/call_3000.xml"
wait "$SINK" || true
digits=$("$PY" "$HERE/make_dtmf_pcap.py" --info "$W/rx.pcap" |
         "$PY" -c 'import json,sys; d=json.load(sys.stdin); s=d["streams"]; print(d["digits"], len(s), s[0]["seq_gaps"] if s else -1)')
if [[ $UAC_RC == 0 && $UAS_RC == 0 && "$digits" == "12 1 0" ]]; then
  ok "uac_call, caller hangs up after HOLD_MS; RTP: digits 12, 1 SSRC, no seq gap"
else bad "uac_call (caller hangs up): uac rc $UAC_RC, uas rc $UAS_RC, rtp '$digits' (want '12 1 0')"; fi

uas call_serverbye "$HERE/uas/uas_answer_bye.xml" -set rtpport "$RTP_P" -set byeafter 1000
uac call_serverbye "$W/call_5000.xml"
if [[ $UAC_RC == 0 && $UAS_RC == 0 ]] && grep -q '^BYE ' "$W/call_serverbye.uac.msg"; then
  ok "uac_call, server hangs up during the pcap (BYE answered 200)"
else bad "uac_call (server hangs up): uac rc $UAC_RC, uas rc $UAS_RC"; fi

for order in normal 487first; do
  uas "cancel_$order" "$HERE/uas/uas_ring_cancel.xml" -set order "$order"
  uac "cancel_$order" "$W/cancel.xml"
  if [[ $UAC_RC == 0 && $UAS_RC == 0 ]] && grep -q "CANCEL FLOW OK" "$W/cancel_$order.uas.log"; then
    ok "uac_cancel ($order): CANCEL and ACK carry the INVITE's branch, 200 + 487 handled"
  else bad "uac_cancel ($order): uac rc $UAC_RC, uas rc $UAS_RC"; fi
done

uas early "$HERE/uas/uas_answer.xml" -set rtpport "$RTP_P"
uac early "$W/early.xml"
if [[ $UAC_RC == 0 && $UAS_RC == 0 ]]; then ok "uac_hangup_early: BYE after HOLD_MS, 200"
else bad "uac_hangup_early: uac rc $UAC_RC, uas rc $UAS_RC"; fi

uas early_neg "$HERE/uas/uas_answer_bye.xml" -set rtpport "$RTP_P" -set byeafter 300
uac early_neg "$W/early.xml"
if [[ $UAC_RC != 0 ]]; then ok "uac_hangup_early fails (rc $UAC_RC) when the far end hangs up first"
else bad "uac_hangup_early passed although the far end hung up first"; fi

uas options "$HERE/uas/uas_options.xml"
uac options "$W/options.xml"
if [[ $UAC_RC == 0 && $UAS_RC == 0 ]]; then ok "uac_options: 200"
else bad "uac_options: uac rc $UAC_RC, uas rc $UAS_RC"; fi

echo "SIP-TEST SELFTEST: $pass passed, $fail failed"
[[ $fail == 0 ]] || KEEP=1
[[ $fail == 0 ]]
