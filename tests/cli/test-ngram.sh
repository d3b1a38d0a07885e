#!/bin/sh
# test-ngram.sh: pg-eval's n-gram modes end to end on a tiny model trained by pg-train: --tilt,
# --ngram-mix and both score every target pg-eval scores (same tokens and bytes), are marked
# compliant, and the mixture beats the model alone on this repetitive licence text;
# --ngram-cache is refused without --non-compliant (exit 2, naming the rules), and with it
# prints the rules it breaks and writes "compliant": false; the modes refuse --device cuda and
# --doc-mask / --temperature. With --stride they score the sliding windows (every target once),
# and --audit passes there too. --audit passes each compliant mode and fails the cache (sum rule).
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

licence_docs 5 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 --shard-tokens 20000 || exit 1
"$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 512 \
    --seq-len 32 --batch-tokens 256 --grad-accum 1 --max-wallclock 0 --iterations 20 --val-every 0 -o "$W/run" || exit 1
M="$W/run/model.safetensors"
# shellcheck disable=SC2086
ev() { "$EVAL" "$M" -d "$W/data" --prefix t -m "$W/sp.model" "$@"; }
ev --json -q >"$W/plain.json" || exit 1

for mode in "--tilt" "--ngram-mix" "--tilt --ngram-mix"; do
    # shellcheck disable=SC2086
    ev $mode --json -q >"$W/m.json"
    check "$mode: tokens and bytes as plain pg-eval's" \
        test "$(jq -c '[.tokens, .bytes]' "$W/m.json")" = "$(jq -c '[.tokens, .bytes]' "$W/plain.json")"
    check "$mode: compliant, mode $(jq .mode "$W/m.json")" test "$(jq .compliant "$W/m.json")" = true
    echo "# $mode: val_bpb $(jq .val_bpb "$W/plain.json") -> $(jq .val_bpb "$W/m.json")"
done
ev --ngram-mix --json -q >"$W/mix.json"
check "--ngram-mix beats the model alone on repetitive text" \
    test "$(jq '.val_loss < .model_val_loss' "$W/mix.json")" = true
check "--ngram-order 2 gives another score" \
    test "$(ev --ngram-mix --ngram-order 2 --json -q | jq .val_bpb)" != "$(jq .val_bpb "$W/mix.json")"

expect_fail "--ngram-cache without --non-compliant" 2 "--non-compliant" ev --ngram-cache
ev --ngram-cache --non-compliant --json >"$W/c.json" 2>"$W/c.err"
check "--ngram-cache --non-compliant: \"compliant\": false" test "$(jq -c '[.mode, .compliant]' "$W/c.json")" = '["ngram-cache",false]'
check "--ngram-cache --non-compliant: names the rules it breaks" grep -q 'NOT compliant.*PR #779.*PR #886' "$W/c.err"
# --audit (lib/audit.h): each compliant mode passes and scores as without it; the cache fails
for mode in "--tilt" "--ngram-mix" "--tilt --ngram-mix"; do
    # shellcheck disable=SC2086
    ev $mode --audit --json -q >"$W/a.json"
    check "$mode --audit: passed; 64 samples, no look-ahead, normalized, every target once, score first" \
        test "$(jq -c '.audit | [.passed, .samples, .lookahead, .unnormalized, .scored_twice, .unscored, .update_before_score]' "$W/a.json")" = "[true,64,0,0,0,0,0]"
    # shellcheck disable=SC2086
    check "$mode --audit: the score as without it" test "$(jq .val_bpb "$W/a.json")" = "$(ev $mode --json -q | jq .val_bpb)"
done
ev --ngram-cache --non-compliant --audit --json >"$W/ca.json" 2>"$W/ca.err"
check "--ngram-cache --audit: exit 1" test $? = 1
check "--ngram-cache --audit: fails the sum rule ($(tail -n 1 "$W/ca.err"))" grep -q 'the audit failed: the distribution of target .* sums to' "$W/ca.err"
check "--ngram-cache --audit: sampled distributions unnormalized where the cache has entries, nothing else broken" \
    test "$(jq -c '.audit | [.passed, .unnormalized > 0, .lookahead, .scored_twice, .unscored, .update_before_score]' "$W/ca.json")" = "[false,true,0,0,0,0]"
# sliding windows: the same targets and bytes, other contexts; stride = seq_len is the plain score
ev --ngram-mix --stride 8 --audit --json -q >"$W/s.json"
check "--ngram-mix --stride 8: tokens and bytes as plain pg-eval's" \
    test "$(jq -c '[.tokens, .bytes]' "$W/s.json")" = "$(jq -c '[.tokens, .bytes]' "$W/plain.json")"
check "--ngram-mix --stride 8: another score than the plain windows'" test "$(jq .val_bpb "$W/s.json")" != "$(jq .val_bpb "$W/mix.json")"
check "--ngram-mix --stride 8 --audit: passed" \
    test "$(jq -c '.audit | [.passed, .samples, .lookahead, .unnormalized, .scored_twice, .unscored]' "$W/s.json")" = "[true,64,0,0,0,0]"
check "--ngram-mix --stride 32 (seq_len): the plain windows' score" \
    test "$(ev --ngram-mix --stride 32 --json -q | jq .val_bpb)" = "$(jq .val_bpb "$W/mix.json")"
check "--tilt --stride 8: model_val_loss as pg-eval --stride 8 (the same windows)" \
    test "$(ev --tilt --stride 8 --json -q | jq '.model_val_loss * 1e5 | round')" = "$(ev --stride 8 --json -q | jq '.val_loss * 1e5 | round')"
expect_fail "--tilt --doc-mask" 2 "do not combine" ev --tilt --doc-mask
expect_fail "--ngram-mix --temperature" 2 "do not combine" ev --ngram-mix --temperature 0.9
expect_fail "--ngram-cache with --tilt" 2 "does not combine" ev --ngram-cache --non-compliant --tilt
expect_fail "--tilt on cuda" 2 "--device cpu only" ev --tilt --device cuda
expect_fail "--ngram-order 17" 2 "--ngram-order" ev --ngram-mix --ngram-order 17
finish
