#!/bin/sh
# test-bench-gpu.sh: scripts/bench-gpu.sh and its PyTorch reference (tests/torch/pg_torch.py
# bench-gpu), without a GPU. The script's usage and option errors; its --dry-run commands (the
# baseline at 8 x 64 x 1024 = 524,288 tokens a step, the record at 8 x 48 x 2048, --accum, pg-eval
# in bf16, the PyTorch reference of the same shape, train_gpt.py's environment) and FLOPs counts
# (the baseline's 54 matrices: 17,059,912 parameters less the embedding and the control tensors);
# bench-gpu's training loop against bench's (the same weights, bit for bit, after the same steps;
# the same first loss with two micro-batches; Newton-Schulz in bf16 close to float32); the
# SentencePiece stand-in against spm_export_vocab; and the whole script on the CPU (--device cpu,
# tiny shapes) with a stand-in train_gpt.py that logs like the real one and then lingers, as its
# final validation would: the table, results.jsonl, and the stand-in stopped after its last step.
# Skips when python3-torch is not installed (`make check` does not install it).
. "$(dirname "$0")/lib.sh"
need_torch
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" PYTHON=$PY PG_BIN
B=scripts/bench-gpu.sh

licence_docs 3 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 || exit 1

# usage
bash $B -h >"$W/help" 2>&1
check "-h exits 0 with the usage" grep -q -- '--dry-run' "$W/help"
bash $B --bogus >/dev/null 2>&1
check "an unknown option exits 2" test $? = 2
bash $B --steps x >/dev/null 2>&1
check "--steps x exits 2" test $? = 2
bash $B -d "$W/nothing" >/dev/null 2>&1
check "a missing data folder exits 1" test $? = 1

# --dry-run: the commands
echo 'print("stand-in")' >"$W/train_gpt.py"
bash $B -n -d "$W/data" -m "$W/sp.model" -o "$W/dry" --train-gpt "$W/train_gpt.py" >"$W/dry.out" 2>"$W/dry.err"
check "--dry-run exits 0" test $? = 0
has() { grep -q -- "$2" "$W/$1"; }
check "dry-run: the shard prefix found in the folder" has dry.out "--prefix t "
check "dry-run: pg-train, baseline, 524,288 tokens in 8 micro-batches, on the GPU in bf16" \
    has dry.out "pg-train .*--preset baseline --batch-tokens 524288 --grad-accum 8 .*--iterations 15 .*--device cuda --precision bf16"
check "dry-run: pg-train, record, 786,432 tokens, every step looped" \
    has dry.out "pg-train .*--preset record --enable-looping-at 0 --batch-tokens 786432 --grad-accum 8"
check "dry-run: pg-eval on the GPU in bf16, 64 sequences a forward" \
    has dry.out "pg-eval .*baseline/model.safetensors .*--batch-seqs 64 .*--device cuda --precision bf16"
check "dry-run: the PyTorch reference of the same shape" \
    has dry.out "pg_torch.py bench-gpu --config .*baseline-config.json .*--steps 12 --warmup 3 --accum 8 --micro-seqs 64 .*--device cuda"
check "dry-run: no PyTorch record reference unless asked" sh -c "! grep -q 'bench-gpu --config .*record-config' '$W/dry.out'"
check "dry-run: train_gpt.py on the same data, 14 steps of 524,288, the tokenizer's vocabulary" \
    has dry.out "DATA_PATH=.* TOKENIZER_PATH=.*sp.model VOCAB_SIZE=512 .*ITERATIONS=14 .*TRAIN_BATCH_TOKENS=524288 TRAIN_SEQ_LEN=1024 .*train_gpt.py"
check "dry-run: the baseline's FLOPs: 54 matrices of 16,515,072 parameters, 130.5 MFLOP/token to train" \
    has dry.out "# baseline: 17059912 parameters, batch 524288 = 8 x 64 x 1024 tokens; FLOPs/token: N_mat 16515072, V\*d 524288, T 1024, d 512, L 9, train 130547712, eval 43515904"
check "dry-run: the record's 17 virtual layers" has dry.out "# record: 35945671 parameters, .* L 17,"
bash $B -n -d "$W/data" -m "$W/sp.model" -o "$W/dry" --accum 4 --skip record,torch --unfused --eager >"$W/dry4.out" 2>/dev/null
check "--accum 4: 262,144 tokens a step" has dry4.out "--preset baseline --batch-tokens 262144 --grad-accum 4"
check "--skip record,torch: neither runs" sh -c "! grep -q -e 'preset record' -e 'bench-gpu --config' '$W/dry4.out'"
check "--unfused: the baseline trained again with PG_FUSED=0" \
    has dry4.out "env PG_FUSED=0 .*pg-train .*baseline-unfused .*--preset baseline --batch-tokens 262144 --grad-accum 4 .*--device cuda"
check "--eager: and with PG_GRAPHS=0" \
    has dry4.out "env PG_GRAPHS=0 .*pg-train .*baseline-eager .*--preset baseline --batch-tokens 262144 --grad-accum 4 .*--device cuda"
check "without them no such runs" sh -c "! grep -q -e PG_FUSED -e PG_GRAPHS '$W/dry.out'"

# pg_torch.py bench-gpu's steps against bench's: a tiny checkpoint, 3 steps of 1,024 tokens
TINY="--layers 3 --dim 64 --heads 4 --kv-heads 2 --vocab 512 --seq-len 64 --batch-tokens 512 --grad-accum 1
 --max-wallclock 0 --val-batch-tokens 512"
# shellcheck disable=SC2086
"$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY -o "$W/run" --iterations 3 --val-every 0 || exit 1
ck=$W/run/model.safetensors
PG_TORCH_SAVE=$W/bench.st $REF bench "$ck" "$W/data" t 3 1024 1 >"$W/bench.json" || exit 1
cpu="--ckpt $ck -d $W/data --prefix t --device cpu --steps 2 --warmup 1 --threads 1"
# shellcheck disable=SC2086
PG_TORCH_SAVE=$W/bg1.st $REF bench-gpu $cpu --accum 1 --micro-seqs 16 --eval-batches 2 --eval-seqs 4 >"$W/bg1.json" || exit 1
check "bench-gpu --device cpu prints its timings" \
    jqe '.step_ms > 0 and .tokens_per_s > 0 and .eval_tokens_per_s > 0 and .batch_tokens == 1024 and (.step_ms_all | length) == 3' "$W/bg1.json"
d=$($REF maxdiff "$W/bench.st" "$W/bg1.st" | jq .max_abs_diff)
check "bench-gpu's training steps are bench's, bit for bit (Muon + Adam, loader, loss; max diff $d)" test "$d" = 0
# shellcheck disable=SC2086
PG_TORCH_SAVE=$W/bg2.st $REF bench-gpu $cpu --accum 2 --micro-seqs 8 --no-eval >"$W/bg2.json" || exit 1
l1=$(jq .loss_first "$W/bg1.json") l2=$(jq .loss_first "$W/bg2.json")
check "two micro-batches of 512: the same mean loss as one of 1,024 ($l2, $l1)" \
    awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; exit !(d < 1e-6 * a && -d < 1e-6 * a) }'
l1=$(jq .loss_last "$W/bg1.json") l2=$(jq .loss_last "$W/bg2.json")
check "and after two updates nearly the same ($l2, $l1)" awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; exit !(d < 1e-3 * a && -d < 1e-3 * a) }'
# shellcheck disable=SC2086
$REF bench-gpu $cpu --accum 1 --micro-seqs 16 --no-eval --ns-dtype bf16 --autocast --fast >"$W/bgbf.json" || exit 1
check "bench-gpu on the CPU with bf16 autocast and Newton-Schulz in bf16 trains (losses $(jq -c '[.loss_first, .loss_last]' "$W/bgbf.json"))" \
    jqe --argjson l "$(jq .loss_last "$W/bg1.json")" '.ns_dtype == "bf16" and .autocast_bf16 and ((.loss_last - $l) | fabs) < 0.05 * $l' "$W/bgbf.json"

# the SentencePiece stand-in train_gpt.py gets where Python has no sentencepiece module
$REF spm-info "$W/sp.model" >"$W/spm" || exit 1
check "SentencePieceLite: 512 pieces, 3 control, 1 unknown, 256 byte pieces" \
    sh -c "head -n 1 '$W/spm' | jq -e '.vocab_size == 512 and .control == 3 and .unknown == 1 and .byte == 256' >/dev/null"
if command -v spm_export_vocab >/dev/null 2>&1; then
    spm_export_vocab --model="$W/sp.model" | cut -f 1 >"$W/spm.vocab"
    tail -n +2 "$W/spm" >"$W/lite.vocab"
    check "SentencePieceLite: the pieces spm_export_vocab lists, in order" cmp -s "$W/spm.vocab" "$W/lite.vocab"
fi

# the whole script on the CPU, tiny shapes, with a stand-in train_gpt.py: its step lines, then a pause
cat >"$W/train_gpt.py" <<'EOF'
import os, time
import sentencepiece as spm
n = int(os.environ["ITERATIONS"])
assert spm.SentencePieceProcessor(model_file=os.environ["TOKENIZER_PATH"]).vocab_size() == int(os.environ["VOCAB_SIZE"])
assert os.path.exists(os.path.join(os.environ["DATA_PATH"], "fineweb_train_000000.bin"))
with open("pid", "w") as f:
    f.write(str(os.getpid()))
t = 0.0
for s in range(1, n + 1):
    t += 100.0 + s
    print(f"step:{s}/{n} train_loss:6.0000 train_time:{t:.0f}ms step_avg:{t / s:.2f}ms")
    time.sleep(0.05)
time.sleep(300)
print("peak memory allocated: 10184 MiB reserved: 10500 MiB")
EOF
bash $B --device cpu -d "$W/data" -m "$W/sp.model" -o "$W/out" --work "$W/work" -s 2 -w 1 --accum 2 --micro-seqs 2 \
    --record-micro-seqs 1 --eval-tokens 4096 --eval-seqs 4 --baseline-args "--layers 2 --dim 64 --heads 2 --kv-heads 1 --seq-len 64" \
    --record-args "-c scripts/record-small.cfg --dim 64 --seq-len 64 --vocab 512" --train-gpt "$W/train_gpt.py" --tg-steps 6 \
    --unfused --eager >"$W/smoke.out" 2>"$W/smoke.err"
rc=$?
check "the CPU run exits 0" test $rc = 0
[ $rc = 0 ] || sed 's/^/#   /' "$W/smoke.err"
check "the table comes last" sh -c "tail -n 1 '$W/smoke.out' | grep -q '^logs: '"
check "the table has pgolf's and PyTorch's training and eval rows" sh -c "grep -q '^pgolf baseline train  *256 ' '$W/smoke.out' &&
    grep -q '^PyTorch baseline train ' '$W/smoke.out' && grep -q '^pgolf record train ' '$W/smoke.out' &&
    grep -q '^pg-eval baseline ' '$W/smoke.out' && grep -q '^PyTorch eval baseline ' '$W/smoke.out'"
check "--unfused: a PG_FUSED=0 row and the ratio (on the CPU, where nothing is fused: the same steps)" sh -c \
    "grep -q '^pgolf baseline train, PG_FUSED=0  *256 ' '$W/smoke.out' &&
    grep -q 'baseline step time with the fused forms / PG_FUSED=0 [0-9.]*x' '$W/smoke.out'"
check "the pgolf step's phases, median ms" grep -q '^  baseline pgolf step phases (median ms): micro-batches [0-9.]*, optimizers and exchanges [0-9.]*$' "$W/smoke.out"
check "--eager: a PG_GRAPHS=0 row and the ratio" sh -c \
    "grep -q '^pgolf baseline train, PG_GRAPHS=0  *256 ' '$W/smoke.out' &&
    grep -q 'baseline step time with CUDA graphs / PG_GRAPHS=0 [0-9.]*x' '$W/smoke.out'"
check "the record's PyTorch ratio is n/a, with the reason" grep -q 'record   step time pgolf / PyTorch n/a (not run: --torch-record' "$W/smoke.out"
check "train_gpt.py's step time: the median step after the first 2 (104 ms, at 8 x 2 x 64 tokens)" \
    grep -q '^train_gpt.py baseline  *1024  *104.0 ' "$W/smoke.out"
check "results.jsonl: pgolf and PyTorch training, evaluation, ratios" jqe -s '
    (map(select(.kind == "train")) | map(.impl) | sort) ==
        ["pgolf", "pgolf", "pgolf-eager", "pgolf-unfused", "pytorch", "train_gpt.py"] and
    (map(select(.kind == "eval")) | length) == 3 and (map(select(.kind == "ratio")) | length) == 5 and
    (map(select(.kind == "train" and .impl == "pgolf"))[0] | .step_ms > 0 and .mfu > 0 and .fwd_bwd_ms > 0 and .optim_ms > 0)' "$W/out/results.jsonl"
check "the logs are in the output folder" test -s "$W/out/pgolf-baseline-metrics.jsonl" -a -s "$W/out/torch-baseline.out" \
    -a -s "$W/out/train_gpt.log" -a -s "$W/out/commands.txt"
# bench_attn (the attention part, GPU only) on the emulator: its four timings as JSON lines, with
# the useful FLOPs of causal documents (run at a tiny shape: the emulated kernels are slow)
AB=${PG_TESTBIN:-build/tests}/tools/bench_attn_emu
if [ -x "$AB" ]; then
    check "bench_attn: four timings of a documents shape" sh -c "'$AB' --b 1 --t 40 --h 2 --kv 1 --hd 16 --doc 16 \
        --iters 1 --warmup 1 >'$W/attn.out'"
    check "bench_attn: fused and batched, forward and forward+backward, positive times" jqe -s '
        map(.op) == ["flash_fwd", "flash_fwd_bwd", "batched_fwd", "batched_fwd_bwd"] and
        all(.[]; .ms > 0 and .b == 1 and .t == 40 and .doc == 16)' "$W/attn.out"
    check "bench_attn: a head dim the fused kernels do not take is a usage error (exit 2)" sh -c \
        "'$AB' --hd 12 2>'$W/attn.err'; [ \$? = 2 ] && grep -q 'the fused kernels take' '$W/attn.err'"
else
    echo "ok # SKIP no emulated bench_attn (a build without CUDA)"
fi
pid=$(cat "$W/work/train_gpt/pid" 2>/dev/null)
check "the stand-in train_gpt.py was stopped after its last step" sh -c "[ -n '$pid' ] && ! kill -0 '$pid' 2>/dev/null &&
    ! grep -q 'peak memory' '$W/out/train_gpt.log'"
finish
