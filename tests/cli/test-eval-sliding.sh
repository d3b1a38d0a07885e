#!/bin/sh
# test-eval-sliding.sh: pg-eval --stride and --doc-mask from the command line on a tiny model
# (the per-position equality is tests/unit/test_eval_slide_f64.c): --stride seq_len prints
# exactly the plain score; a short stride scores the same targets and bytes with more context
# (a different loss: the 40-step model barely uses context); --doc-mask runs and changes the score; the
# JSON gains stride, windows and tokens_per_second; a stride past the window is a usage error;
# --time-budget reports the time from the start and exits 1 after the result when it is over.
. "$(dirname "$0")/lib.sh"
EVAL="$PG_BIN/pg-eval"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tiny_model "$W"
M="$W/run/model.safetensors"
D="-d $W/data --prefix t -m $W/sp.model"
# shellcheck disable=SC2086
ev() { "$EVAL" "$M" $D "$@"; }
ev -q >"$W/plain.txt"
ev -q --stride 32 >"$W/s32.txt"
check "--stride 32 (= seq_len) prints the plain score: $(cat "$W/plain.txt")" cmp -s "$W/plain.txt" "$W/s32.txt"
ev --json >"$W/plain.json"
ev --json --stride 8 >"$W/s8.json"
check "--stride 8: the same targets and bytes" test "$(jq -c '[.tokens, .bytes]' "$W/s8.json")" = "$(jq -c '[.tokens, .bytes]' "$W/plain.json")"
check "--stride 8: another loss, from more context ($(jq .val_loss "$W/s8.json") vs $(jq .val_loss "$W/plain.json"))" \
    test "$(jq -n --slurpfile a "$W/s8.json" --slurpfile b "$W/plain.json" '$a[0].val_loss != $b[0].val_loss')" = true
check "--stride 8: 4x the windows (less the tail)" test "$(jq '.windows' "$W/s8.json")" -ge "$(( $(jq .windows "$W/plain.json") * 4 - 3 ))"
check "--json has stride and tokens_per_second" test "$(jq '.stride > 0 and .tokens_per_second > 0' "$W/s8.json")" = true
ev --json --stride 8 --doc-mask >"$W/dm.json"
check "--doc-mask: reported, same targets, a different score" \
    test "$(jq -n --slurpfile a "$W/dm.json" --slurpfile b "$W/s8.json" '$a[0].doc_mask and $a[0].tokens == $b[0].tokens and $a[0].val_loss != $b[0].val_loss')" = true
ev --json --time-budget 600 >"$W/tb.json"
check "--time-budget 600: within, with the elapsed time" test "$(jq '.within_budget and .elapsed_seconds > 0 and .time_budget == 600' "$W/tb.json")" = true
expect_fail "--time-budget 0.001: exit 1 after the result" 1 "over the time budget" ev -q --time-budget 0.001
check "... the result is still printed" grep -q '^val_loss:' "$T_TMP/out"
# shellcheck disable=SC2086
expect_fail "pg-ttt --time-budget 0.001 counts training too" 1 "over the time budget" "$PG_BIN/pg-ttt" "$M" $D -q --epochs 1 --time-budget 0.001
expect_fail "--stride 33 > seq_len 32" 2 "--stride 33" ev --stride 33
expect_fail "--stride 0" 2 "--stride" ev --stride 0
finish
