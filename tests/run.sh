#!/bin/sh
# run.sh: runs every test (C unit tests in $PG_TESTBIN, shell tests in tests/cli) and counts
# their TAP lines. A program that exits non-zero or crashes without reporting a failure counts
# as one failure; "1..0 # SKIP" counts as one skip. Ends with "N passed, N failed, N skipped".
# Environment: PG_BIN (the pg-* binaries), PG_TESTBIN (compiled tests); set by `make check`.
# Arguments, if any, are test names to run (e.g. test_shard test-tokenize.sh).
set -u
cd "$(dirname "$0")/.." || exit 2
: "${PG_BIN:=$PWD/bin}" "${PG_TESTBIN:=$PWD/build/tests}"
export PG_BIN PG_TESTBIN
export PG_ROOT="$PWD"
logdir=${PG_TEST_LOGDIR:-$PWD/build/test-logs}
mkdir -p "$logdir"

tests=""
for t in "$PG_TESTBIN"/test_* tests/cli/test-*.sh; do
    [ -e "$t" ] || continue
    case "$t" in *.d|*.o) continue ;; esac
    if [ $# -gt 0 ]; then
        keep=0
        for want in "$@"; do [ "$(basename "$t")" = "$want" ] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    tests="$tests $t"
done

passed=0 failed=0 skipped=0
for t in $tests; do
    name=$(basename "$t")
    log="$logdir/$name.log"
    start=$(date +%s)
    case "$t" in
        *.sh) sh "$t" >"$log" 2>&1 ;;
        *) "$t" >"$log" 2>&1 ;;
    esac
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    s=$(grep -c '^1\.\.0 # SKIP' "$log")
    status=ok
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        status="exit $rc"
    fi
    # a TODO-free plan mismatch (fewer results than planned) is a failure too
    plan=$(grep -E '^1\.\.[0-9]+' "$log" | tail -1 | sed 's/^1\.\.\([0-9]*\).*/\1/')
    if [ -n "$plan" ] && [ "$plan" -gt 0 ] && [ $((p + f)) -lt "$plan" ]; then
        f=$((f + 1))
        status="planned $plan, ran $((p + f - 1))"
    fi
    [ "$f" -gt 0 ] && [ "$status" = ok ] && status=FAIL
    [ "$s" -gt 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && status=SKIP
    printf '%-28s %4d passed %3d failed  %3ss  %s\n' "$name" "$p" "$f" "$secs" "$status"
    if [ "$f" -gt 0 ]; then
        grep -E '^(not ok|#)' "$log" | head -20 | sed 's/^/    /'
        echo "    (full log: $log)"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
