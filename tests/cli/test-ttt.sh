#!/bin/sh
# test-ttt.sh: pg-ttt end to end on a tiny model trained by pg-train: with --epochs 0 it prints
# pg-eval's numbers exactly (one chunk or many); with training the score moves and the SGD step
# count follows the schedule; causality, black box: changing the val tokens of the second half of
# a later chunk k leaves every per-token loss (--token-losses) before them bit-identical, chunk
# k's first half included, and changes chunk k+1's losses only when the model trains; the loss
# file sums to val_loss; usage errors exit 2; bad files exit 1 with one line naming the file.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval" TTT="$PG_BIN/pg-ttt"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# ---- a tiny dataset and model, as tests/cli/test-train.sh makes them ----
licence_docs 5 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 --shard-tokens 20000 || exit 1
"$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" --layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 512 \
    --seq-len 32 --batch-tokens 256 --grad-accum 2 --max-wallclock 0 --warmdown-iters 5 --iterations 40 \
    --val-every 0 -o "$W/run" || exit 1
M="$W/run/model.safetensors"
check "a tiny model trained (40 steps)" test -f "$M"
# chunks of 512 tokens = 16 windows of 32, two forwards of 8: the val split holds 7 chunks
D="-d $W/data --prefix t -m $W/sp.model"

# shellcheck disable=SC2086
"$EVAL" "$M" $D --json >"$W/eval.json" || exit 1
# shellcheck disable=SC2086
ttt() { "$TTT" "$M" $D "$@"; }

# ---- --epochs 0 is pg-eval, exactly ----
ttt --epochs 0 --chunk-tokens 512 --json >"$W/e0.json"
for k in val_loss val_bpb tokens bytes seq_len; do
    check "--epochs 0, 7 chunks: $k $(jq .$k "$W/e0.json") = pg-eval's" test "$(jq .$k "$W/e0.json")" = "$(jq .$k "$W/eval.json")"
done
check "--epochs 0: 7 chunks of 512 tokens, no SGD step" test "$(jq -c '[.chunks, .chunk_tokens, .steps]' "$W/e0.json")" = "[7,512,0]"
"$EVAL" "$M" $D -q >"$W/eval.txt"
ttt --epochs 0 -q >"$W/e0.txt"
check "--epochs 0, one chunk: the same output line as pg-eval ($(cat "$W/eval.txt"))" cmp -s "$W/eval.txt" "$W/e0.txt"
check "the output line has pg-eval's format" grep -Eq '^val_loss:[0-9]+\.[0-9]{8} val_bpb:[0-9]+\.[0-9]{8} tokens:[0-9]+ bytes:[0-9]+$' "$W/e0.txt"

# ---- a quantized model (.pgq) reads as pg-eval reads it ----
if "$PG_BIN/pg-quantize" "$M" -o "$W/m.pgq" -q >/dev/null 2>&1; then
    "$EVAL" "$W/m.pgq" $D -q >"$W/evalq.txt"
    "$TTT" "$W/m.pgq" $D --epochs 0 -q >"$W/e0q.txt"
    check ".pgq, --epochs 0: pg-eval's line ($(cat "$W/evalq.txt"))" cmp -s "$W/evalq.txt" "$W/e0q.txt"
else
    ok ".pgq, --epochs 0: pg-eval's line # SKIP pg-quantize cannot write a .pgq in this build"
fi

# ---- with training: the score moves, the schedule holds ----
start=$(date +%s.%N)
ttt --epochs 3 --chunk-tokens 512 --json --token-losses "$W/a.f32" >"$W/e3.json"
secs=$(echo "$(date +%s.%N) - $start" | bc -l)
b0=$(jq .val_bpb "$W/eval.json") b3=$(jq .val_bpb "$W/e3.json")
check "--epochs 3: val_bpb $b0 (pg-eval) -> $b3 (TTT, $(printf '%.2f' "$secs")s): it differs" test "$b0" != "$b3"
echo "# TTT on the tiny model: val_bpb $b0 -> $b3 ($(echo "$b3 - $b0" | bc -l))"
check "--epochs 3: 6 trained chunks x 3 epochs x 1 step of 32 windows = 18 SGD steps" test "$(jq .steps "$W/e3.json")" = 18
check "--epochs 1 --step-seqs 4: 4 steps per chunk, 24 steps" \
    test "$(ttt --epochs 1 --chunk-tokens 512 --step-seqs 4 --json | jq .steps)" = 24
check "--lr 0: no change from pg-eval" test "$(ttt --epochs 1 --chunk-tokens 512 --lr 0 --json | jq .val_bpb)" = "$b0"
tokens=$(jq .tokens "$W/e3.json")
check "--token-losses: 4 bytes per target ($tokens)" test "$(wc -c <"$W/a.f32")" -eq $((tokens * 4))
mean=$(od -An -v -tf4 -w4 "$W/a.f32" | awk '{ s += $1 } END { printf "%.10f", s / NR }')
check "--token-losses: the losses average to val_loss ($mean vs $(jq .val_loss "$W/e3.json"))" \
    sh -c "[ \$(echo \"define a(x) { if (x < 0) return -x; return x; }; a($mean - $(jq .val_loss "$W/e3.json")) < 0.000001\" | bc -l) = 1 ]"
ttt --epochs 3 --chunk-tokens 512 --json >"$W/e3b.json" 2>"$W/info.err"
check "deterministic: the same run gives the same val_bpb" test "$(jq .val_bpb "$W/e3b.json")" = "$b3"

# ---- causality, black box: change the second half of chunk 3 ----
# chunk 3 scores targets 1537..2048; its windows 56..63 (the second forward) have targets
# 1793..2048. Overwrite the val tokens 1793..2047 (not 2048, chunk 4's first input) with id 100.
cp -r "$W/data" "$W/data2"
i=1793
while [ $i -le 2047 ]; do printf 'd\000'; i=$((i + 1)); done >"$W/patch"
dd if="$W/patch" of="$W/data2/t_val_000000.bin" bs=1 seek=$((1024 + 2 * 1793)) conv=notrunc 2>/dev/null
check "the patched val shard differs" sh -c "! cmp -s \"$W/data/t_val_000000.bin\" \"$W/data2/t_val_000000.bin\""
"$TTT" "$M" -d "$W/data2" --prefix t -m "$W/sp.model" --epochs 3 --chunk-tokens 512 -q --token-losses "$W/b.f32" >/dev/null
slice() { dd if="$1" bs=4 skip="$2" count="$3" 2>/dev/null; } # FILE FIRST_TARGET_INDEX COUNT
slice "$W/a.f32" 0 1792 >"$W/a.pre" && slice "$W/b.f32" 0 1792 >"$W/b.pre"
check "causal: the 1792 losses before the change are bit-identical (chunk 3's first half included)" \
    test -s "$W/a.pre" -a "$(wc -c <"$W/a.pre")" -eq 7168 -a "$(cmp -s "$W/a.pre" "$W/b.pre" && echo same)" = same
slice "$W/a.f32" 1792 256 >"$W/a.k" && slice "$W/b.f32" 1792 256 >"$W/b.k"
check "the changed targets' losses differ" sh -c "! cmp -s \"$W/a.k\" \"$W/b.k\""
slice "$W/a.f32" 2048 512 >"$W/a.k1" && slice "$W/b.f32" 2048 512 >"$W/b.k1"
check "with training, chunk 4's losses differ too: the model adapted on chunk 3" sh -c "! cmp -s \"$W/a.k1\" \"$W/b.k1\""
ttt --epochs 0 --chunk-tokens 512 -q --token-losses "$W/a0.f32" >/dev/null
"$TTT" "$M" -d "$W/data2" --prefix t -m "$W/sp.model" --epochs 0 --chunk-tokens 512 -q --token-losses "$W/b0.f32" >/dev/null
slice "$W/a0.f32" 2048 512 >"$W/a0.k1" && slice "$W/b0.f32" 2048 512 >"$W/b0.k1"
check "control, --epochs 0: chunk 4's losses are bit-identical" cmp -s "$W/a0.k1" "$W/b0.k1"

# ---- progress line ----
ttt --epochs 0 --progress >/dev/null 2>"$W/prog.err"
check "--progress draws a line with an ETA" grep -q 'ttt .*ETA' "$W/prog.err"
check "stderr summary names chunks and SGD steps" grep -q '7 chunks of 512 tokens, 18 SGD steps' "$W/info.err"
check "-q: nothing on stderr" sh -c "\"$TTT\" \"$M\" $D --epochs 0 -q 2>&1 >/dev/null | wc -c | grep -qx 0"

# ---- --lora: per-document adapters, score first ----
ttt --lora --rank 0 --json >"$W/l0.json"
for k in tokens bytes; do
    check "--lora --rank 0: $k as pg-eval's (every target scored once)" test "$(jq .$k "$W/l0.json")" = "$(jq .$k "$W/eval.json")"
done
check "--lora --rank 0: no step, no adapter" test "$(jq -c '[.mode, .steps, .adapters]' "$W/l0.json")" = '["lora",0,0]'
check "--lora --lr 0: the rank-0 score" test "$(ttt --lora --rank 8 --lr 0 --json | jq .val_bpb)" = "$(jq .val_bpb "$W/l0.json")"
ttt --lora --rank 8 --lr 3e-3 --chunk-tokens 16 --json --token-losses "$W/la.f32" >"$W/l1.json"
b0=$(jq .val_bpb "$W/l0.json") b1=$(jq .val_bpb "$W/l1.json")
echo "# LoRA TTT on the tiny model: val_bpb $b0 (per-document, no adapter) -> $b1"
check "--lora --rank 8: the score moves ($b0 -> $b1), adapters stepped" \
    sh -c "test '$b0' != '$b1' && test $(jq .steps "$W/l1.json") -gt 0 && test $(jq .adapters "$W/l1.json") -eq 15"
check "--lora --token-losses: one float per target" test "$(wc -c <"$W/la.f32")" -eq $((4 * $(jq .tokens "$W/l1.json")))
check "--lora --phased 2 --prefix-docs 20: two phases of SGD steps" \
    test "$(ttt --lora --rank 8 --chunk-tokens 16 --phased 2 --prefix-docs 20 --phase-lr 0.01 --json | jq -c '[.phases, .phase_steps > 0]')" = "[2,true]"
# --doc-batch: documents sorted by length, 6 at a time, each with its own adapters
# (at the default lr 1e-4: AdamW with beta1 0 steps by about the sign of each gradient entry, so
# at a large lr the rounding differences of the two paths flip near-zero entries and grow)
ttt --lora --rank 8 --chunk-tokens 16 --no-warm-start --json --token-losses "$W/n1.f32" >"$W/n1.json"
ttt --lora --rank 8 --chunk-tokens 16 --no-warm-start --doc-batch 6 --json --token-losses "$W/n6.f32" >"$W/n6.json"
od -An -v -f -w4 "$W/n1.f32" >"$W/n1.txt"
# Relative to the loss (a few nats): the two paths' products run at other batch shapes, whose
# float sums BLAS orders differently by CPU (2.3e-5 nats apart on an AMD EPYC with OpenBLAS's
# Cooperlake kernels, under 1e-5 elsewhere); a document scored with another's adapters is off
# by 1e-2 or more.
worst=$(od -An -v -f -w4 "$W/n6.f32" | paste "$W/n1.txt" - |
    awk '{ d = $1 - $2; if (d < 0) d = -d; a = $1 < 0 ? -$1 : $1; d /= a > 1 ? a : 1; if (d > m) m = d }
        END { printf "%g", m }')
check "--doc-batch 6 --no-warm-start: every target's loss as one document at a time (worst relative $worst < 1e-5)" \
    awk -v w="$worst" 'BEGIN { exit !(w < 1e-5) }'
check "--doc-batch 6 --no-warm-start: and not the rank-0 score" test "$(jq ".val_bpb != $b0" "$W/n6.json")" = true
check "--doc-batch 6: the same documents, steps, tokens and bytes" \
    test "$(jq -c '[.docs, .steps, .tokens, .bytes, .doc_batch, .warm_start]' "$W/n6.json")" = "$(jq -c '[.docs, .steps, .tokens, .bytes, 6, false]' "$W/n1.json")"
check "--doc-batch 6 (warm start): the score moves from the rank-0 one" \
    test "$(ttt --lora --rank 8 --lr 3e-3 --chunk-tokens 16 --doc-batch 6 --json | jq ".val_bpb != $b0")" = true
check "--doc-batch 4000: cut to the 30 documents, the score of --doc-batch 30" \
    test "$(ttt --lora --rank 8 --chunk-tokens 16 --doc-batch 4000 --json | jq -c '[.doc_batch, .docs, .val_bpb]')" = \
    "$(ttt --lora --rank 8 --chunk-tokens 16 --doc-batch 30 --json | jq -c '[.doc_batch, .docs, .val_bpb]')"
ttt --lora --rank 8 --chunk-tokens 16 --doc-batch 6 --audit --json >"$W/lb.json" 2>"$W/lb.err"
check "--doc-batch 6 --audit: exit 0, every rule passes" test $? = 0 -a "$(grep -c ': pass' "$W/lb.err")" = 4
check "--doc-batch 6 --audit --json: the audit object, as pg-eval's" \
    test "$(jq -c '.audit | [.passed, .samples, .lookahead, .unnormalized, .scored_twice, .unscored, .update_before_score]' "$W/lb.json")" = "[true,64,0,0,0,0,0]"
expect_fail "--doc-batch with --phased" 2 "stream order" ttt --lora --doc-batch 4 --phased 2
expect_fail "--doc-batch with --ngram-mix" 2 "stream order" ttt --lora --doc-batch 4 --ngram-mix
expect_fail "--doc-batch with a head adapter" 2 "no head adapter" ttt --lora --doc-batch 4 --targets q,head
expect_fail "--doc-batch without --lora" 2 "need --lora" ttt --doc-batch 4
expect_fail "--doc-batch 0" 2 "--doc-batch" ttt --lora --doc-batch 0
check "--control-only: the score moves, and says so" \
    test "$(ttt --chunk-tokens 512 --control-only --json | jq -c "[.val_bpb != $(jq .val_bpb "$W/eval.json"), .control_only]")" = "[true,true]"
check "--polyak 0.998: a third score" test "$(ttt --chunk-tokens 512 --polyak 0.998 --json | jq .polyak)" = 0.998
expect_fail "--polyak 1" 2 "--polyak" ttt --polyak 1
check "--lora --ngram-mix: the mixture on the LoRA scores, compliant" \
    test "$(ttt --lora --rank 8 --chunk-tokens 16 --ngram-mix --json | jq -c '[.ngram, .compliant, .val_bpb < '"$b1"']')" = '["ngram-mix",true,true]'
# --temperature (PR #826's 0.98): with --epochs 0 pg-eval --temperature's score
check "--epochs 0 --temperature 0.9: pg-eval --temperature 0.9's score (to 1e-6)" \
    test "$(ttt --chunk-tokens 512 --epochs 0 --temperature 0.9 --json | jq '.val_bpb * 1e6 | round')" = "$("$EVAL" "$M" $D --temperature 0.9 --json -q | jq '.val_bpb * 1e6 | round')"
check "--epochs 1 --polyak 0.998 --temperature 0.98 --audit: every rule passes, the temperature reported" \
    sh -c "$(printf '%s' "'$TTT' '$M' $D") --chunk-tokens 512 --epochs 1 --polyak 0.998 --temperature 0.98 --audit --json 2>'$W/tt.err' | jq -e '.temperature == 0.98' >/dev/null && test \$(grep -c ': pass' '$W/tt.err') = 4"
expect_fail "--temperature with --lora" 2 "--temperature" ttt --lora --temperature 0.9
expect_fail "--temperature 0" 2 "--temperature" ttt --temperature 0
# the n-gram modes on global TTT's scores
check "--epochs 0 --ngram-mix: pg-eval --ngram-mix's score exactly" \
    test "$(ttt --chunk-tokens 512 --epochs 0 --ngram-mix --json | jq .val_bpb)" = "$("$EVAL" "$M" $D --ngram-mix --json -q | jq .val_bpb)"
ttt --chunk-tokens 512 --epochs 1 --tilt --ngram-mix --audit --json >"$W/gn.json" 2>"$W/gn.err"
check "--epochs 1 --tilt --ngram-mix --audit: exit 0, every rule passes, marked" \
    test $? = 0 -a "$(grep -c ': pass' "$W/gn.err")" = 4 -a "$(jq -c '[.ngram, .compliant]' "$W/gn.json")" = '["tilt+ngram-mix",true]'
ttt --chunk-tokens 512 --epochs 1 --ngram-cache --non-compliant --audit --json >"$W/gc.json" 2>"$W/gc.err"
check "--epochs 1 --ngram-cache --audit: exit 1, the sum rule" test $? = 1
check "--epochs 1 --ngram-cache --audit --json: written, not passed, unnormalized samples" \
    test "$(jq -c '.audit | [.passed, .unnormalized > 0, .lookahead]' "$W/gc.json")" = "[false,true,0]"
expect_fail "--ngram-mix on cuda" 2 "--device cpu only" ttt --ngram-mix --device cuda
check "--lora --ngram-cache --non-compliant: marked" \
    test "$(ttt --lora --rank 0 --ngram-cache --non-compliant --json 2>/dev/null | jq .compliant)" = false
# --audit with --lora: the adapters' steps, the phases and the n-gram inserts all come after
# the scores they read; the cache fails the sum rule
for mode in "--rank 8 --chunk-tokens 16" "--rank 8 --chunk-tokens 16 --phased 2 --prefix-docs 20" \
    "--rank 8 --chunk-tokens 16 --tilt --ngram-mix"; do
    # shellcheck disable=SC2086
    ttt --lora $mode --audit >/dev/null 2>"$W/la.err"
    check "--lora $mode --audit: exit 0, every rule passes" test $? = 0 -a "$(grep -c ': pass' "$W/la.err")" = 4
done
ttt --lora --rank 0 --ngram-cache --non-compliant --audit >/dev/null 2>"$W/lc.err"
check "--lora --ngram-cache --audit: exit 1, the sum rule" test $? = 1
check "--lora --ngram-cache --audit: names it" grep -q 'the audit failed: the distribution of target .* sums to' "$W/lc.err"
expect_fail "--lora --ngram-cache without --non-compliant" 2 "--non-compliant" ttt --lora --ngram-cache
expect_fail "--phased without --lora" 2 "--phased needs --lora" ttt --phased 2
expect_fail "--lora on cuda" 2 "--device cpu only" ttt --lora --device cuda
expect_fail "--lora --targets bad" 2 "LoRA target 'x'" ttt --lora --targets q,x
expect_fail "--lora --targets head on a tied model" 2 "ties its head" ttt --lora --targets head

# ---- usage errors: exit 2 ----
expect_fail "no model" 2 "no model given" "$TTT" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "two models" 2 "more than one model" "$TTT" "$M" "$M" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "no -d" 2 "no data folder" "$TTT" "$M" -m "$W/sp.model"
expect_fail "no -m" 2 "no tokenizer" "$TTT" "$M" -d "$W/data"
expect_fail "--epochs -1" 2 "--epochs" ttt --epochs -1
expect_fail "--lr abc" 2 "--lr" ttt --lr abc
expect_fail "--momentum 1" 2 "--momentum" ttt --momentum 1
expect_fail "--chunk-tokens 0" 2 "--chunk-tokens" ttt --chunk-tokens 0
expect_fail "--grad-clip -1" 2 "--grad-clip" ttt --grad-clip -1
expect_fail "unknown option" 2 "unrecognized option" ttt --bogus
expect_fail "--seq-len past the val split" 2 "too few" ttt --seq-len 100000

# ---- bad files: exit 1, one line naming the file ----
head -c 100 "$M" >"$W/trunc.safetensors"
expect_fail "truncated model" 1 "trunc.safetensors" "$TTT" "$W/trunc.safetensors" $D
expect_fail "not a model" 1 "docs.jsonl" "$TTT" "$W/docs.jsonl" $D
expect_fail "missing model" 1 "nope.safetensors" "$TTT" "$W/nope.safetensors" $D
expect_fail "missing tokenizer" 1 "nope.model" "$TTT" "$M" -d "$W/data" --prefix t -m "$W/nope.model"
expect_fail "no val shards" 1 "no x_val" "$TTT" "$M" -d "$W/data" --prefix x -m "$W/sp.model"
cp -r "$W/data" "$W/data3"
printf 'XXXX' | dd of="$W/data3/t_val_000000.bin" bs=1 seek=0 conv=notrunc 2>/dev/null
expect_fail "val shard with a bad magic" 1 "t_val_000000.bin" "$TTT" "$M" -d "$W/data3" --prefix t -m "$W/sp.model"
expect_fail "--token-losses into a missing folder" 1 "nodir" ttt --epochs 0 --token-losses "$W/nodir/x.f32"
finish
