#!/bin/sh
# test-quantize.sh: pg-quantize and pg-eval on .pgq files, end to end on a tiny trained model:
# int8 moves val_bpb by < 1%; pg-eval of a .pgq equals pg-eval of a checkpoint holding its
# dequantized weights, and an independent float64 evaluation of that checkpoint; the report
# adds up; output is deterministic (thread count included); the tokenizer identity recorded with
# -m is enforced by pg-eval; corrupt files, bad inputs and bad options fail cleanly.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" EVAL="$PG_BIN/pg-eval" Q="$PG_BIN/pg-quantize"
REF=${PG_TESTBIN:-build/tests}/tools/ref_eval_f64
W=$T_TMP
# one thread by default: the evaluations are tiny, and OpenMP's barriers cost more than they
# save on a loaded machine; the determinism check below runs the quantizer with 1 and 3 threads
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# ---- a tiny trained model (lib.sh) ----
tiny_model "$W"
M="$W/run/model.safetensors"
check "trained a tiny model" test -s "$M"

evalq() { "$EVAL" -q --json "$1" -d "$W/data" --prefix t -m "${2:-$W/sp.model}"; }
rel() { echo "define a(x) { if (x < 0) return -x; return x; }; a($1 - $2) / $2" | bc -l; }
below() { [ "$(echo "$1 < $2" | bc -l)" = 1 ]; }

# ---- int8-baseline ----
# --keep-float 100: the tiny matrices (>= 512 elements) become int8, the control tensors stay fp32
check "quantize int8-baseline" sh -c "'$Q' '$M' -o '$W/m8.pgq' --keep-float 100 -m '$W/sp.model' --json >'$W/r8.json' 2>'$W/r8.err'"
check "the report is JSON with 32 tensors, 19 of them int" \
    test "$(jq -c '[.num_tensors, .num_int, (.tensors | length)]' "$W/r8.json")" = "[32,19,32]"
check "every integer tensor is 8-bit quantile-clipped (q = 0.9999984), every float one f32" \
    test "$(jq -c '[.tensors[] | if .kind == "int" then (.bits == 8 and .clip == "quantile" and (.clip_param - 0.9999984 | fabs) < 1e-6) else (.kind == "f32" and .rel_err == 0) end] | all' "$W/r8.json")" = true
check "payload_bytes = the sum of the tensors' bytes" \
    test "$(jq '.payload_bytes == ([.tensors[].bytes] | add)' "$W/r8.json")" = true
check "file_bytes = the file's size" test "$(jq .file_bytes "$W/r8.json")" = "$(wc -c <"$W/m8.pgq")"
check "relative errors of the int8 tensors are small and positive" \
    test "$(jq '[.tensors[] | select(.kind == "int") | .rel_err > 0 and .rel_err < 0.1] | all' "$W/r8.json")" = true
OMP_NUM_THREADS=3 "$Q" "$M" -o "$W/m8b.pgq" --keep-float 100 -m "$W/sp.model" -q
OMP_NUM_THREADS=1 "$Q" "$M" -o "$W/m8c.pgq" --keep-float 100 -m "$W/sp.model" -q
check "deterministic: the same bytes again, with 3 threads and with 1" sh -c "cmp -s '$W/m8.pgq' '$W/m8b.pgq' && cmp -s '$W/m8.pgq' '$W/m8c.pgq'"
"$Q" "$M" -o "$W/m8t.pgq" --keep-float 100 2>"$W/table.err" >"$W/table.out"
check "the per-tensor table goes to stderr (32 rows and a summary), nothing to stdout" \
    sh -c "[ \$(grep -c 'quantile q=0.9999984\|  -  ' '$W/table.err') -eq 32 ] && grep -q 'payload' '$W/table.err' && [ ! -s '$W/table.out' ]"

evalq "$M" >"$W/e_float.json"
evalq "$W/m8.pgq" >"$W/e_8.json"
fb=$(jq .val_bpb "$W/e_float.json") qb=$(jq .val_bpb "$W/e_8.json")
check "pg-eval reads the .pgq" test -n "$qb"
check "int8 moves val_bpb by < 1% ($fb -> $qb, rel $(rel "$qb" "$fb"))" below "$(rel "$qb" "$fb")" 0.01
check "int8 does change the model (val_bpb differs)" test "$fb" != "$qb"

# ---- dequantized weights as a checkpoint: the same score, and the float64 reference agrees ----
check "--dequantize writes a checkpoint" "$Q" -q --dequantize "$W/m8.pgq" -o "$W/deq.safetensors"
evalq "$W/deq.safetensors" >"$W/e_deq.json"
check "pg-eval of the .pgq = pg-eval of its dequantized checkpoint, exactly" \
    test "$(jq -c '[.val_loss, .val_bpb, .tokens, .bytes]' "$W/e_8.json")" = "$(jq -c '[.val_loss, .val_bpb, .tokens, .bytes]' "$W/e_deq.json")"
"$REF" "$W/deq.safetensors" "$W/data" t "$W/sp.model" >"$W/ref.txt"
ref_bpb=$(cut -d' ' -f2 "$W/ref.txt")
check "pg-eval of the .pgq = float64 reference on the dequantized weights ($ref_bpb, rel $(rel "$qb" "$ref_bpb"))" \
    below "$(rel "$qb" "$ref_bpb")" 0.0001
"$Q" -q "$W/deq.safetensors" -o "$W/m8d.pgq" --keep-float 100 -m "$W/sp.model"
check "requantizing the dequantized weights gives the same .pgq (every row has the 1/127 step here)" cmp -s "$W/m8.pgq" "$W/m8d.pgq"

# ---- intN ----
check "quantize int6 (SDClip)" sh -c "'$Q' '$M' -o '$W/m6.pgq' --keep-float 100 --scheme int6 --json >'$W/r6.json' 2>/dev/null"
check "int6: every integer tensor 6-bit SDClip with k attn 13, mlp 11.5, embed 14" \
    test "$(jq -c '[.tensors[] | select(.kind == "int") | [.bits, .clip, .clip_param, .role]] | map(.[0] == 6 and .[1] == "sdclip" and .[2] == (if .[3] == "tok_emb" then 14 elif (.[3] | startswith("mlp")) then 11.5 else 13 end)) | all' "$W/r6.json")" = true
check "int6: small tensors pass through as f16 (§4.5)" \
    test "$(jq '[.tensors[] | select(.kind != "int") | .kind == "f16"] | all' "$W/r6.json")" = true
b6=$(evalq "$W/m6.pgq" | jq .val_bpb)
check "int6 val_bpb within 2% of float ($b6)" below "$(rel "$b6" "$fb")" 0.02
"$Q" "$M" -o "$W/m4.pgq" --keep-float 100 --bits attn=4,mlp=5,embed=6 --clip maxabs --json >"$W/r4.json" 2>/dev/null
check "--bits attn=4,mlp=5,embed=6 --clip maxabs: the bits by class" \
    test "$(jq -c '[.tensors[] | select(.kind == "int") | [.role, .bits, .clip]] | map(if .[0] == "tok_emb" then .[1] == 6 elif (.[0] | startswith("mlp")) then .[1] == 5 else .[1] == 4 end and .[2] == "maxabs") | all' "$W/r4.json")" = true
check "int4 c_q has a larger error than int8 c_q" \
    test "$(jq -s '.[0].tensors[1].rel_err > .[1].tensors[1].rel_err' "$W/r4.json" "$W/r8.json")" = true
check "--k changes the SDClip k" sh -c "'$Q' -q '$M' -o '$W/mk.pgq' --keep-float 100 --scheme int5 --k mlp=3 --json | jq -e '[.tensors[] | select(.role == \"mlp.fc\") | .clip_param == 3] | all' >/dev/null"
"$Q" "$M" -o "$W/mdef.pgq" --json >"$W/rdef.json" 2>/dev/null
check "default --keep-float 65536: a tiny model is all passthrough (control f32, others f16)" \
    test "$(jq -c '[.num_int, ([.tensors[] | select(.kind == "f16")] | length)]' "$W/rdef.json")" = "[0,19]"
check "pg-eval of the all-passthrough .pgq works" sh -c "'$EVAL' -q '$W/mdef.pgq' -d '$W/data' --prefix t -m '$W/sp.model' >/dev/null"

# ---- the tokenizer identity ----
head -n 40 "$W/docs.jsonl" >"$W/few.jsonl"
"$TOK" train -q -i "$W/few.jsonl" -o "$W/other.model" --vocab 400 || exit 1
expect_fail "pg-eval: a .pgq quantized for another tokenizer" 1 "quantized for another tokenizer" \
    "$EVAL" "$W/m8.pgq" -d "$W/data" --prefix t -m "$W/other.model"
check "a .pgq without a recorded tokenizer evaluates with any (-m other.model)" \
    sh -c "'$EVAL' -q '$W/m6.pgq' -d '$W/data' --prefix t -m '$W/other.model' >/dev/null"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/big.model" --vocab 600 || exit 1
expect_fail "pg-quantize: tokenizer larger than the model's vocabulary" 1 "smaller than the tokenizer" \
    "$Q" "$M" -o "$W/x.pgq" -m "$W/big.model"

# ---- bad files: exit 1, one line naming the file ----
head -c 1000 "$W/m8.pgq" >"$W/trunc.pgq"
expect_fail "pg-eval: truncated .pgq" 1 "trunc.pgq: truncated at offset 1000" "$EVAL" "$W/trunc.pgq" -d "$W/data" --prefix t -m "$W/sp.model"
cp "$W/m8.pgq" "$W/flip.pgq"
printf '\001' | dd of="$W/flip.pgq" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect_fail "pg-eval: a changed byte in the data" 1 "flip.pgq: checksum mismatch" "$EVAL" "$W/flip.pgq" -d "$W/data" --prefix t -m "$W/sp.model"
cp "$W/m8.pgq" "$W/ver.pgq"
printf '\004' | dd of="$W/ver.pgq" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_fail "pg-eval: version 4" 1 "unsupported .pgq version 4" "$EVAL" "$W/ver.pgq" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "pg-quantize --dequantize: truncated .pgq" 1 "trunc.pgq: truncated" "$Q" --dequantize "$W/trunc.pgq" -o "$W/x.safetensors"
expect_fail "pg-quantize: a truncated .pgq as input" 1 "trunc.pgq" "$Q" "$W/trunc.pgq" -o "$W/x.pgq"
head -c 100 "$M" >"$W/trunc.safetensors"
expect_fail "pg-quantize: truncated checkpoint" 1 "trunc.safetensors" "$Q" "$W/trunc.safetensors" -o "$W/x.pgq"
expect_fail "pg-quantize: not a model" 1 "docs.jsonl" "$Q" "$W/docs.jsonl" -o "$W/x.pgq"
expect_fail "pg-quantize: missing input" 1 "nope.safetensors" "$Q" "$W/nope.safetensors" -o "$W/x.pgq"
expect_fail "pg-quantize: missing tokenizer" 1 "nope.model" "$Q" "$M" -o "$W/x.pgq" -m "$W/nope.model"
expect_fail "pg-quantize: output folder missing" 1 "no/such/dir" "$Q" "$M" -o "$W/no/such/dir/x.pgq"
check "no output and no temporary left after the failures" sh -c "[ ! -e '$W/x.pgq' ] && [ -z \"\$(ls -A '$W' | grep '\\.tmp\\.')\" ]"

# ---- usage errors: exit 2 ----
expect_fail "no -o" 2 "no output file" "$Q" "$M"
expect_fail "no input" 2 "no input model" "$Q" -o "$W/x.pgq"
expect_fail "two inputs" 2 "more than one input" "$Q" "$M" "$M" -o "$W/x.pgq"
expect_fail "--scheme int9" 2 "--scheme" "$Q" "$M" -o "$W/x.pgq" --scheme int9
expect_fail "--bits attn=9" 2 "--bits" "$Q" "$M" -o "$W/x.pgq" --bits attn=9
expect_fail "--bits head=6 (a prefix of no tensor)" 1 "'head' names no quantized tensor" "$Q" "$M" -o "$W/x.pgq" --bits head=6
expect_fail "--clip bogus" 2 "--clip" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --clip bogus
expect_fail "--clip with int8-baseline" 2 "intN" "$Q" "$M" -o "$W/x.pgq" --clip maxabs
expect_fail "--k without SDClip" 2 "--k applies" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --clip maxabs --k 3
expect_fail "--k 0" 2 "--k" "$Q" "$M" -o "$W/x.pgq" --scheme int6 --k 0
expect_fail "--keep-float -1" 2 "--keep-float" "$Q" "$M" -o "$W/x.pgq" --keep-float -1
expect_fail "--dequantize with quantization options" 2 "--dequantize" "$Q" --dequantize "$W/m8.pgq" -o "$W/x.safetensors" --scheme int6
expect_fail "unknown option" 2 "unrecognized option" "$Q" "$M" -o "$W/x.pgq" --frobnicate
check "--help exits 0 and lists --scheme" sh -c "'$Q' --help | grep -q -- '--scheme'"
check "-V prints the version" sh -c "'$Q' -V | grep -q 'pg-quantize (pgolf)'"
finish
