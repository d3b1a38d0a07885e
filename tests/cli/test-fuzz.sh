#!/bin/sh
# test-fuzz.sh: the short fuzz runs of make check: every libFuzzer harness (tests/fuzz/fuzz_*.c,
# built by `make check` into build-fuzz/ when clang links -fsanitize=fuzzer) first replays its
# whole seed corpus, then fuzzes for PG_FUZZ_SECONDS (default 2) from a scratch copy of it, under
# ASan, UBSan and LeakSanitizer. A crash, an out-of-bounds access, undefined behaviour, a leak, a
# timeout or an error without a message fails the target. Without the harnesses (no clang with
# libFuzzer) the test skips, saying why. `make fuzz` runs the same harnesses for longer.
. "$(dirname "$0")/lib.sh"
FZ=${PG_FUZZBIN:-$PWD/build-fuzz}
SECS=${PG_FUZZ_SECONDS:-2}
names=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
have=0
for n in $names; do [ -x "$FZ/fuzz_$n" ] && have=$((have + 1)); done
if [ $have -eq 0 ]; then
    why=$(sh scripts/probe-fuzz.sh "${FUZZ_CC:-clang}" 2>&1) || true
    echo "1..0 # SKIP fuzz harnesses not built in $FZ (${why:-run make fuzz-build})"
    exit 0
fi
export ASAN_OPTIONS=detect_leaks=1
for n in $names; do
    bin=$FZ/fuzz_$n
    if ! [ -x "$bin" ]; then not_ok "fuzz_$n: not built"; continue; fi
    seeds=$(ls "tests/fuzz/corpus/$n" | wc -l)
    # the seeds alone (each must be handled without a finding)
    "$bin" -runs=0 "tests/fuzz/corpus/$n" >"$T_TMP/$n.seeds" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        not_ok "fuzz_$n: replaying its $seeds seeds failed (exit $rc)"
        grep -m3 -E 'ERROR|SUMMARY|fuzz:' "$T_TMP/$n.seeds" | sed 's/^/#   /'
        continue
    fi
    mkdir -p "$T_TMP/corpus-$n"
    "$bin" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
        -artifact_prefix="$T_TMP/crash-$n-" "$T_TMP/corpus-$n" "tests/fuzz/corpus/$n" >"$T_TMP/$n.log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T_TMP/$n.log" | tail -1)
    if [ $rc -eq 0 ] && [ "${execs:-0}" -gt 0 ]; then
        ok "fuzz_$n: $seeds seeds, then ${execs} executions in ${SECS} s: no crash, leak or UB"
    else
        not_ok "fuzz_$n: exit $rc after ${execs:-0} executions"
        grep -m5 -E 'ERROR|SUMMARY|fuzz:|#0 |#1 |#2 ' "$T_TMP/$n.log" | sed 's/^/#   /'
        ls "$T_TMP"/crash-"$n"-* 2>/dev/null | head -1 | while read -r c; do
            mkdir -p build/fuzz-crashes && cp "$c" build/fuzz-crashes/ && echo "#   input kept in build/fuzz-crashes/$(basename "$c")"
        done
    fi
done
finish
