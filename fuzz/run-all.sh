#!/usr/bin/env bash
# Run every fuzz target for a bounded time, one libFuzzer process at a time.
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET]     (default 120)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on a stable toolchain: RUSTC_BOOTSTRAP=1
# lets stable rustc accept the -Z flags cargo-fuzz passes (sanitizer, coverage instrumentation).
# Each target reads the committed seeds in fuzz/seeds/<target>/ and grows its working corpus in
# fuzz/corpus/<target>/ (gitignored). Crashes land in fuzz/artifacts/<target>/ (gitignored):
# minimise with `cargo fuzz tmin <target> <file>` and commit the reproducer under
# fuzz/artifacts-found/<target>/. Logs: fuzz/logs/<target>.log. Exit status: 1 if any target
# found a crash.
set -u
cd "$(dirname "$0")"
SECS="${1:-120}"
TARGETS="${TARGETS:-sip_message sdp digest_auth rtp rtcp dialplan codec_decode}"
export RUSTC_BOOTSTRAP=1
mkdir -p logs
RUSTC_BOOTSTRAP=1 cargo fuzz build -a || exit 2
status=0
for t in $TARGETS; do
    mkdir -p "corpus/$t"
    echo "== $t: ${SECS}s"
    # -a: debug assertions (integer overflow panics) as in the test build.
    # -jobs=1 -workers=1: one fuzzing process; its output goes to fuzz-0.log, copied below.
    if cargo fuzz run -a "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -jobs=1 -workers=1 -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        > "logs/$t.cargo.log" 2>&1; then
        result=ok
    else
        result=CRASH
        status=1
    fi
    cat fuzz-0.log > "logs/$t.log" 2>/dev/null; rm -f fuzz-0.log
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*$')
    echo "   $result  execs=${execs:-?}  corpus=$(ls "corpus/$t" | wc -l) files  log=fuzz/logs/$t.log"
    ls "artifacts/$t" 2>/dev/null | sed 's/^/   artifact: /'
done
exit $status
