#!/bin/sh
# test-audit.sh: --audit from the command line on a tiny model (the planted look-ahead and the
# other violations are caught in tests/unit/test_audit.c): pg-eval passes it in plain, sliding,
# document-masked and tempered modes, with the same score as without it, and reports it in
# --json; pg-ttt's score-first SGD passes it; --temperature changes the score, and T near 1 is
# near the plain score.
. "$(dirname "$0")/lib.sh"
EVAL="$PG_BIN/pg-eval" TTT="$PG_BIN/pg-ttt"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tiny_model "$W"
M="$W/run/model.safetensors"
D="-d $W/data --prefix t -m $W/sp.model"
# shellcheck disable=SC2086
ev() { "$EVAL" "$M" $D "$@"; }
ev -q >"$W/plain.txt"
ev -q --audit >"$W/audit.txt"
check "pg-eval --audit passes and scores as without it ($(cat "$W/plain.txt"))" cmp -s "$W/plain.txt" "$W/audit.txt"
for mode in "--stride 8" "--stride 8 --doc-mask" "--temperature 0.9" "--stride 5 --temperature 1.2"; do
    # shellcheck disable=SC2086
    ev --json --audit $mode >"$W/a.json"
    check "pg-eval --audit $mode: passed, 64 samples, every target once" \
        test "$(jq -c '[.audit.passed, .audit.samples, .audit.scored_twice, .audit.unscored, .audit.lookahead]' "$W/a.json")" = "[true,64,0,0,0]"
done
ev --json --temperature 1.000001 >"$W/t1.json"
ev --json >"$W/p.json"
check "--temperature 1.000001 is within 1e-4 of the plain loss" \
    test "$(jq -n --slurpfile a "$W/t1.json" --slurpfile b "$W/p.json" '($a[0].val_loss - $b[0].val_loss) | fabs < 1e-4')" = true
ev --json --temperature 2 >"$W/t2.json"
check "--temperature 2 moves the loss" \
    test "$(jq -n --slurpfile a "$W/t2.json" --slurpfile b "$W/p.json" '($a[0].val_loss - $b[0].val_loss) | fabs > 1e-3')" = true
expect_fail "--temperature 0 is a usage error" 2 "--temperature" ev --temperature 0
# shellcheck disable=SC2086
"$TTT" "$M" $D --audit --epochs 1 --chunk-tokens 512 2>"$W/ttt.err" >/dev/null
check "pg-ttt --audit (score-first SGD, 7 chunks): exit 0" test $? = 0
check "pg-ttt --audit: every rule passes" test "$(grep -c ': pass' "$W/ttt.err")" = 4
finish
