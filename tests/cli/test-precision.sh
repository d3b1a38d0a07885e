#!/bin/sh
# test-precision.sh: pg-eval --precision on a tiny trained model: bf16 (matrix products with
# bfloat16 inputs, fp32 accumulation) scores a little differently from fp32 (0 < relative
# difference < 1e-2), fp32 is the default (the same output byte for byte), an unknown precision is
# a usage error (exit 2); with a GPU (make check-gpu) the device's bf16 score equals the CPU's bf16
# score (both round the same inputs the same way) and differs from the device's fp32 one.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# ---- a tiny model on Debian's licence texts, as test-train.sh ----
licence_docs 3 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 --shard-tokens 20000 ||
    exit 1
check "train a tiny model (20 steps)" "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" -o "$W/run" \
    --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 512 --seq-len 32 --batch-tokens 256 --max-wallclock 0 \
    --iterations 20 --val-every 0
M="$W/run/model.safetensors"
# score DEVICE PRECISION: pg-eval --json on stdout (PRECISION empty: the option left out)
score() {
    if [ -n "$2" ]; then
        "$EVAL" "$M" -d "$W/data" --prefix t -m "$W/sp.model" --device "$1" --precision "$2" --json
    else
        "$EVAL" "$M" -d "$W/data" --prefix t -m "$W/sp.model" --device "$1" --json
    fi
}
rel() { echo "define a(x) { if (x < 0) return -x; return x; }; a($1 - $2) / $2" | bc -l; }
# below VALUE LIMIT: VALUE < LIMIT (bc)
below() { [ "$(echo "$1 < $2" | bc -l)" = 1 ]; }

score cpu "" | jq -S 'del(.seconds, .tokens_per_second, .elapsed_seconds)' >"$W/default.json"
score cpu fp32 | jq -S 'del(.seconds, .tokens_per_second, .elapsed_seconds)' >"$W/fp32.json"
score cpu bf16 | jq -S 'del(.seconds, .tokens_per_second, .elapsed_seconds)' >"$W/bf16.json"
check "--precision fp32 is the default: the same result byte for byte" cmp -s "$W/default.json" "$W/fp32.json"
fp=$(jq .val_bpb "$W/fp32.json") bf=$(jq .val_bpb "$W/bf16.json")
r=$(rel "$bf" "$fp")
check "cpu: bf16 val_bpb $bf differs from fp32 $fp by a little (rel $r: > 0, < 1e-2)" \
    sh -c "[ \"$bf\" != \"$fp\" ] && [ \"$(echo "$r < 0.01" | bc -l)\" = 1 ]"
check "bf16 counts the same tokens and bytes" test "$(jq -c '[.tokens, .bytes]' "$W/bf16.json")" = \
    "$(jq -c '[.tokens, .bytes]' "$W/fp32.json")"
expect_fail "--precision foo is a usage error" 2 "--precision" "$EVAL" "$M" -d "$W/data" --prefix t -m "$W/sp.model" \
    --precision foo
expect_fail "--precision without a value is a usage error" 2 "precision" "$EVAL" "$M" -d "$W/data" --prefix t \
    -m "$W/sp.model" --precision

# ---- the device: its bf16 score is the CPU's bf16 score (1e-5, as fp32's in test-train.sh) ----
if score cuda bf16 >"$W/cuda-bf16.json" 2>"$W/cuda.err"; then
    score cuda fp32 >"$W/cuda-fp32.json" || exit 1
    cbf=$(jq .val_bpb "$W/cuda-bf16.json") cfp=$(jq .val_bpb "$W/cuda-fp32.json")
    check "cuda: bf16 val_bpb $cbf = the CPU's bf16 $bf (rel $(rel "$cbf" "$bf"))" below "$(rel "$cbf" "$bf")" 0.00001
    check "cuda: bf16 val_bpb $cbf differs from the device's fp32 $cfp (rel $(rel "$cbf" "$cfp"))" \
        sh -c "[ \"$cbf\" != \"$cfp\" ] && [ \"$(echo "$(rel "$cbf" "$cfp") < 0.01" | bc -l)\" = 1 ]"
else
    rc=$?
    check "cuda without a GPU: exit 3 (exit $rc)" sh -c "[ $rc -eq 3 ] && [ \"\${PG_EXPECT_GPU:-0}\" != 1 ]"
fi
finish
