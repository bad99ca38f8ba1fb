# The SIPp "customer farm" of bench/campaign_farm.sh and bench/cluster.sh (sourced, not run):
# sip-test/uas_farm.xml answering every call, its RTP stream pressing 1 after DIGIT_MS.
#
#   farm_start DIR PORT MEDIA_PORT DIGIT_MS TIMEOUT_S    sets FARM (the SIPp pid)
#
# The pcaps go into DIR (sip-test/make_dtmf_pcap.py), SIPp runs there (farm.stdout,
# farm.stderr, errors.log). Needs root: SIPp's play_pcap_audio uses a raw socket. Called
# from the repository's root.

farm_start() {
  local dir=$1 port=$2 media=$3 digit_ms=$4 timeout_s=$5 py=sip-test/make_dtmf_pcap.py f
  python3 $py --script "$digit_ms:1" --tail-ms 20000 -o "$dir/farm_press1.pcap" >/dev/null 2>&1
  # The scenario loads every pcap it names; only farm_press1 is used here.
  python3 $py --script "100:2" --tail-ms 100 -o "$dir/farm_press2.pcap" >/dev/null 2>&1
  python3 $py --script "100:0" --tail-ms 100 -o "$dir/farm_press0.pcap" >/dev/null 2>&1
  python3 $py --script "100:1" --tail-ms 100 -o "$dir/farm_slow1.pcap" >/dev/null 2>&1
  python3 $py --script "100:8" --tail-ms 100 -o "$dir/farm_press8.pcap" >/dev/null 2>&1
  python3 $py --lead-ms 200 -o "$dir/farm_silence.pcap" >/dev/null 2>&1
  # A pcap the scenario names but this file does not make stops SIPp at start: check them all.
  for f in $(grep -o '@PCAP_DIR@/[a-z0-9_]*\.pcap' sip-test/uas_farm.xml | sort -u); do
    [[ -s "$dir/${f#@PCAP_DIR@/}" ]] || { echo "sip-test/uas_farm.xml needs ${f#@PCAP_DIR@/}, not made here" >&2; return 1; }
  done
  sed "s|@PCAP_DIR@|$dir|g" sip-test/uas_farm.xml > "$dir/uas_farm.xml"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # SIPp: a raw socket per playing call
  (cd "$dir" && exec sipp -sf uas_farm.xml -i 127.0.0.1 -p "$port" -mi 127.0.0.1 -mp "$media" \
     -nostdin -aa -l 4000 -trace_err -error_file errors.log -timeout "$((timeout_s + 300))s" \
     > farm.stdout 2> farm.stderr) &
  FARM=$!
}
