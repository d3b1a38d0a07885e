#!/bin/sh
# test-gptq.sh: pg-quantize --method gptq end to end on a tiny trained model: calibration reads
# the train shards only (a corrupt val shard beside them changes nothing); every integer tensor is
# quantized by GPTQ and reports an output error below rounding's; GPTQ's int4 model scores a
# better val loss than rounding's; the result does not depend on threads or the block width; a
# GPTQ .pgq packs and scores like any other; per-tensor --bits; bad options and inputs fail cleanly.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval" Q="$PG_BIN/pg-quantize" P="$PG_BIN/pg-pack"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# ---- a tiny trained model (as in test-quantize.sh) ----
licence_docs 5 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 --shard-tokens 20000 || exit 1
"$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" --layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 512 \
    --seq-len 32 --batch-tokens 256 --grad-accum 2 --max-wallclock 0 --warmdown-iters 5 --val-batch-tokens 256 \
    -o "$W/run" --iterations 40 --val-every 0 || exit 1
M="$W/run/model.safetensors"
check "trained a tiny model" test -s "$M"

# calibration: 4096 train tokens; --keep-float 100 makes the 19 matrices integer tensors
CAL="--calib-data $W/data --calib-prefix t --calib-tokens 4096 --keep-float 100"
loss() { "$EVAL" -q --json "$1" -d "$W/data" --prefix t -m "$W/sp.model" | jq .val_loss; }
below() { [ "$(echo "$1 < $2" | bc -l)" = 1 ]; }

# ---- int4 matrices, int8 embedding: GPTQ against rounding ----
# (the embedding stays at int8 here: the tied table is also the input embedding, and GPTQ for the
# head trades its lookup error for the head's output error, which a 32-wide model feels most)
B="--bits attn=4,mlp=4,embed=8"
check "rtn with calibration statistics" sh -c "'$Q' '$M' -o '$W/rtn.pgq' $B $CAL --json >'$W/rtn.json' 2>'$W/rtn.err'"
check "gptq" sh -c "'$Q' '$M' -o '$W/gptq.pgq' $B $CAL --method gptq --json >'$W/gptq.json' 2>'$W/gptq.err'"
check "the report: 19 integer tensors, every one gptq with an output error and its damping; 4096 calibration tokens" \
    test "$(jq -c '[.num_int, ([.tensors[] | select(.kind == "int") | .method == "gptq" and .out_err > 0 and .damp == 0.01] | all), .calib_tokens]' "$W/gptq.json")" = "[19,true,4096]"
check "rounding's report: method rtn, output errors measured, no damping" \
    test "$(jq -c '[.tensors[] | select(.kind == "int") | .method == "rtn" and .out_err > 0 and .damp == null] | all' "$W/rtn.json")" = true
check "float tensors: method \"-\", output error null" \
    test "$(jq -c '[.tensors[] | select(.kind != "int") | .method == "-" and .out_err == null] | all' "$W/gptq.json")" = true
or=$(jq '[.tensors[] | select(.kind == "int") | .out_err] | add' "$W/rtn.json")
og=$(jq '[.tensors[] | select(.kind == "int") | .out_err] | add' "$W/gptq.json")
check "GPTQ's output errors sum below rounding's ($og < $or)" below "$og" "$or"
nb=$(jq -s '[.[0].tensors, .[1].tensors] | transpose | map(select(.[0].kind == "int" and .[1].out_err <= .[0].out_err)) | length' "$W/rtn.json" "$W/gptq.json")
check "... on every one of the 19 tensors ($nb)" test "$nb" = 19
lr=$(loss "$W/rtn.pgq") lg=$(loss "$W/gptq.pgq") lf=$(loss "$M")
check "val loss: float $lf, int4 GPTQ $lg below int4 rounding $lr" below "$lg" "$lr"
check "the float model is better than both" below "$lf" "$lg"
check "the summary names the method and the calibration" \
    sh -c "grep -q 'calibration: 4096 tokens' '$W/gptq.err' && grep -q 'gptq, 32 tensors' '$W/gptq.err'"

# ---- only the train split is read; the result is deterministic ----
mkdir "$W/cd" && cp "$W"/data/t_train_* "$W/cd/" && echo "not a shard" >"$W/cd/t_val_000000.bin"
check "calibration beside a corrupt val shard" \
    "$Q" -q "$M" -o "$W/g2.pgq" $B --calib-data "$W/cd" --calib-prefix t --calib-tokens 4096 --keep-float 100 --method gptq
check "... gives the identical file" cmp -s "$W/gptq.pgq" "$W/g2.pgq"
OMP_NUM_THREADS=3 "$Q" -q "$M" -o "$W/g3.pgq" $B $CAL --method gptq
check "3 threads: the identical file" cmp -s "$W/gptq.pgq" "$W/g3.pgq"
"$Q" -q "$M" -o "$W/g4.pgq" $B $CAL --method gptq --gptq-block 5
check "--gptq-block 5: the identical file" cmp -s "$W/gptq.pgq" "$W/g4.pgq"
"$Q" -q "$M" -o "$W/g5.pgq" $B $CAL --method gptq --no-act-order
check "--no-act-order: a different file" sh -c "! cmp -s '$W/gptq.pgq' '$W/g5.pgq'"
"$Q" -q "$M" -o "$W/g6.pgq" $B $CAL --method gptq --calib-tokens 2048
check "--calib-tokens 2048: a different file" sh -c "! cmp -s '$W/gptq.pgq' '$W/g6.pgq'"

# ---- a GPTQ model packs and scores like any other ----
check "pg-pack the GPTQ model" "$P" -q "$W/gptq.pgq" -o "$W/gptq.pga"
check "pg-eval of the .pga = pg-eval of the .pgq" test "$(loss "$W/gptq.pga")" = "$lg"

# ---- per-tensor settings ----
"$Q" -q "$M" -o "$W/ov.pgq" --scheme int6 --bits blocks.2.mlp=3,tok_emb=8 --k blocks.0.attn.c_q=9 --keep-float 100 --json >"$W/ov.json"
check "--bits blocks.2.mlp=3,tok_emb=8 --k blocks.0.attn.c_q=9: those tensors, the rest int6 k from the class" \
    test "$(jq -c '[.tensors[] | select(.kind == "int") | [.name, .bits, .clip_param]] | map(select(.[1] != 6 or .[2] == 9)) | map(.[0])' "$W/ov.json")" = \
    '["tok_emb.weight","blocks.0.attn.c_q.weight","blocks.2.mlp.fc.weight","blocks.2.mlp.proj.weight"]'

# ---- errors ----
expect_fail "gptq without calibration data" 2 "needs --calib-data" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --method gptq
expect_fail "gptq on int8-baseline" 2 "needs an intN scheme" "$Q" "$M" -o "$W/x.pgq" --method gptq --calib-data "$W/data"
expect_fail "an unknown method" 2 "--method" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --method awq
expect_fail "--damp without gptq" 2 "apply to --method gptq" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --damp 0.1
expect_fail "--calib-tokens without --calib-data" 2 "need --calib-data" "$Q" "$M" -o "$W/x.pgq" --calib-tokens 10
expect_fail "--calib-tokens 0" 2 "--calib-tokens" "$Q" "$M" -o "$W/x.pgq" --calib-data "$W/data" --calib-tokens 0
expect_fail "--dequantize with --method" 2 "no quantization options" "$Q" --dequantize "$W/gptq.pgq" -o "$W/x.st" --method gptq
expect_fail "a missing calibration directory" 1 "$W/nope" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --method gptq --calib-data "$W/nope" --calib-prefix t
expect_fail "no train shards of that prefix" 1 "no training shards" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --method gptq --calib-data "$W/data" --calib-prefix u
expect_fail "a per-tensor setting that matches nothing" 1 "'blocks.9' names no quantized tensor" "$Q" "$M" -o "$W/x.pgq" --bits blocks.9=4 --keep-float 100
check "no output file is left by the failures" test ! -e "$W/x.pgq"
finish
