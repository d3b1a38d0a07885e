#!/bin/sh
# fuzz.sh SECONDS NAME...: runs each libFuzzer harness $FUZZ_O/fuzz_NAME (built by `make fuzz`)
# for SECONDS (or, with FUZZ_RUNS=N set, for N executions) on a working copy of its seed corpus
# ($FUZZ_O/corpus/NAME, seeded from tests/fuzz/corpus/NAME and kept between runs), with leak
# detection on. Prints one line per target (executions, rate, corpus, peak RSS, result) and a
# summary; exits 1 if any target crashed, leaked or timed out. Crashing inputs are saved as
# $FUZZ_O/crashes/NAME-*. FUZZ_JOBS=N runs N targets at once (default 1). FUZZ_MAX_LEN=N caps the
# input size (longer seeds are truncated): the SentencePiece harness runs 50 times faster on the
# small models than on the 245 KB NFKC one.
set -u
secs=${1:?usage: fuzz.sh SECONDS NAME...}
shift
O=${FUZZ_O:-build-fuzz}
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$O/crashes" "$O/logs"
limit="-max_total_time=$secs"
[ -n "${FUZZ_RUNS:-}" ] && limit="-runs=$FUZZ_RUNS"
[ -n "${FUZZ_MAX_LEN:-}" ] && limit="$limit -max_len=$FUZZ_MAX_LEN"

run_one() {
    n=$1
    bin=$O/fuzz_$n log=$O/logs/$n.log
    [ -x "$bin" ] || { echo "$n: not built (make fuzz-build)"; return 1; }
    mkdir -p "$O/corpus/$n"
    start=$(date +%s)
    # -rss_limit_mb: the readers' documented caps (a .pga stream: 1 GiB raw) fit below it
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$bin" $limit -rss_limit_mb=3072 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$O/crashes/$n-" "$O/corpus/$n" "tests/fuzz/corpus/$n" >"$log" 2>&1
    rc=$?
    secs_used=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    corpus=$(ls "$O/corpus/$n" | wc -l)
    if [ $rc -eq 0 ]; then res=ok; else res="FAILED (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|deadly' "$log")"; fi
    printf '%-12s %10s execs %7s/s %5ss  corpus %5s  rss %5s MB  %s\n' "$n" "${execs:-?}" "${rate:-?}" "$secs_used" \
        "$corpus" "${rss:-?}" "$res"
    [ $rc -eq 0 ]
}

jobs=${FUZZ_JOBS:-1}
fail=0 total=0 i=0
for n in "$@"; do
    total=$((total + 1))
    if [ "$jobs" -gt 1 ]; then
        run_one "$n" >"$O/logs/$n.line" &
        i=$((i + 1))
        [ $((i % jobs)) -eq 0 ] && wait
    else
        run_one "$n" || fail=$((fail + 1))
    fi
done
if [ "$jobs" -gt 1 ]; then
    wait
    for n in "$@"; do cat "$O/logs/$n.line"; grep -q ' ok$' "$O/logs/$n.line" || fail=$((fail + 1)); done
fi
echo "fuzz: $total targets, $fail failed"
[ $fail -eq 0 ]
