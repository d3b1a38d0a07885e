#!/bin/sh
# test-train-cuda.sh: pg-train --device cuda against pg-train on the CPU, through the command line.
# Without a GPU (make check) the device is the emulator: build/tests/tools/pg-train-emu and
# pg-eval-emu are the same commands linked against kernels/emu; under make check-gpu
# (PG_EXPECT_GPU=1) the real pg-train and pg-eval on the GPU.
#
# A tiny baseline and a tiny record-style model (XSA, gated skips, SmearGate, depth recurrence,
# Polar Express, MuonEq-R, weight decay, gradient clipping, EMA, SWA, late QAT) train 20 steps
# on both: every step's train_loss within 1e-5 relative, the final weights within 5e-5 of scale
# per element (tests/tools/st_diff: the operations differ by ~5e-6 in their sums' order, and
# Adam's division by sqrt(v) amplifies that where v is small; the optimizers' own element updates
# are the CPU's bits, test_cuda_optim). Late QAT flips a quantization level wherever an input sits
# within that difference of a rounding boundary: its steps are held to 1e-4, the record model's
# weights to 3e-4. That these comparisons can fail: a matrix LR 2.5% off is
# caught. bf16 products on both sides (--precision bf16): losses within 1e-3, the first step's
# weights within 1e-4. On the
# device: resume is bit-exact (10 + resume + 10 = 20, byte for byte), two runs give the same
# bytes, and the device's checkpoint scores the same in pg-eval on the CPU and on the device.
. "$(dirname "$0")/lib.sh"
TB=${PG_TESTBIN:-build/tests}
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
DIFF=$TB/tools/st_diff
if [ "${PG_EXPECT_GPU:-0}" = 1 ]; then
    DTRAIN=$PG_BIN/pg-train DEVAL=$PG_BIN/pg-eval where="the GPU"
else
    DTRAIN=$TB/tools/pg-train-emu DEVAL=$TB/tools/pg-eval-emu where="the emulated GPU"
fi
DTTT=${DEVAL%-eval-emu}-ttt-emu DQ=${DEVAL%-eval-emu}-quantize-emu
[ "${PG_EXPECT_GPU:-0}" = 1 ] && DTTT=$PG_BIN/pg-ttt DQ=$PG_BIN/pg-quantize
if ! [ -x "$DTRAIN" ] || ! [ -x "$DIFF" ]; then
    echo "1..0 # SKIP no CUDA build of the test tools (pg-train-emu, st_diff)"
    exit 0
fi
TRAIN=$PG_BIN/pg-train EVAL=$PG_BIN/pg-eval W=$T_TMP
echo "# device runs on $where: $DTRAIN"

licence_docs 3 >"$W/docs.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 384 || exit 1
"$PG_BIN/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 8 || exit 1

TINY="--layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 384 --seq-len 32 --batch-tokens 256 --grad-accum 2
 --max-wallclock 0 --warmdown-iters 8 --val-batch-tokens 512 --val-every 0 --log-every 0"
RECORD="--xsa-last-n 2 --skip-gates 1 --smear-gate 1 --num-loops 1 --loop-start 1 --loop-end 1
 --enable-looping-at 0.3 --muon-polar-express 1 --muon-row-norm 1 --muon-wd 0.04 --grad-clip 0.5
 --ema-decay 0.9 --swa-every 2 --swa-start-lr 0.5 --qat-start-lr 0.3 --warmdown-frac 0.5"
# shellcheck disable=SC2086
cpu() { "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY "$@"; }
# shellcheck disable=SC2086
gpu() { "$DTRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda "$@"; }
losses() { jq -r 'select(.train_loss) | "\(.train_loss) \(.qat)"' "$1/metrics.jsonl"; }
# same_losses A B TOL [QAT_TOL]: the runs' train_loss sequences have the same length and agree to
# TOL relative; steps under late QAT to QAT_TOL (fake quantization rounds to a grid of 2^bits
# levels, and an input 1e-8 away from a rounding boundary flips a level: ~1e-5 in the loss)
same_losses() {
    losses "$1" >"$W/la" && losses "$2" >"$W/lb" && [ "$(wc -l <"$W/la")" -eq "$(wc -l <"$W/lb")" ] &&
        [ "$(wc -l <"$W/la")" -gt 0 ] &&
        paste "$W/la" "$W/lb" | awk -v tol="$3" -v qtol="${4:-$3}" '{d = $1 - $3; if (d < 0) d = -d;
            s = $3 < 0 ? -$3 : $3; if (d > ($2 == 1 ? qtol : tol) * s) bad++} END {exit bad > 0}'
}
# weights NAME TOL A B: st_diff of the final models, the worst ratio in the test's name
weights() {
    out=$("$DIFF" "$3/model.safetensors" "$4/model.safetensors" "$2")
    rc=$?
    if [ "$rc" -eq 0 ]; then ok "$1: $(echo "$out" | tail -n 1)"; else not_ok "$1"; echo "$out" | tail -n 5 | sed 's/^/#   /'; fi
}

# ---- fp32: the device trains as the CPU does ----
check "baseline: 20 steps on the CPU" cpu -o "$W/c" --iterations 20 --precision fp32
check "baseline: 20 steps on $where" gpu -o "$W/g" --iterations 20 --precision fp32
check "baseline: every step's train_loss within 1e-5" same_losses "$W/c" "$W/g" 1e-5
weights "baseline: final weights within 5e-5 of scale" 5e-5 "$W/g" "$W/c"
check "a matrix LR 2.5% off (CPU run)" cpu -o "$W/c_lr" --iterations 20 --precision fp32 --matrix-lr 0.041
if "$DIFF" "$W/c_lr/model.safetensors" "$W/c/model.safetensors" 5e-5 >/dev/null; then
    not_ok "the weights comparison misses a matrix LR 2.5% off"
else
    ok "the weights comparison catches a matrix LR 2.5% off"
fi

# shellcheck disable=SC2086
check "record stack: 20 steps on the CPU" cpu -o "$W/cr" --iterations 20 --precision fp32 $RECORD
# shellcheck disable=SC2086
check "record stack: 20 steps on $where" gpu -o "$W/gr" --iterations 20 --precision fp32 $RECORD
check "record stack: every step's train_loss within 1e-5 (under QAT 1e-4)" same_losses "$W/cr" "$W/gr" 1e-5 1e-4
weights "record stack (EMA/SWA final weights, after QAT): within 3e-4 of scale" 3e-4 "$W/gr" "$W/cr"
check "record stack: the device ran QAT, SWA and the loop switch" quiet \
    jq -se '[.[] | select(.train_loss)] | (map(.qat) | max == 1) and (map(.looping) | min == 0 and max == 1)' \
    "$W/gr/metrics.jsonl"

# ternary late QAT: the device's group fake quantization is the host's (test_cuda_optim), so the
# runs agree as under intN QAT
check "ternary QAT: 20 steps on the CPU" cpu -o "$W/ct" --iterations 20 --precision fp32 --qat-start-lr 0.6 --qat-levels 3
check "ternary QAT: 20 steps on $where" gpu -o "$W/gt" --iterations 20 --precision fp32 --qat-start-lr 0.6 --qat-levels 3
check "ternary QAT: every step's train_loss within 1e-5 (under QAT 1e-4)" same_losses "$W/ct" "$W/gt" 1e-5 1e-4
weights "ternary QAT: final weights within 3e-4 of scale" 3e-4 "$W/gt" "$W/ct"

# ---- bf16 products: the device against the CPU's bf16 mode ----
# Muon's Newton–Schulz then runs in bf16 too, whose rounding flips (where the inputs differ by
# the operations' ~1e-6) its quintic iteration amplifies: the weights are compared after the
# first step, the losses over 20.
check "bf16: 20 steps on the CPU" cpu -o "$W/cb" --iterations 20 --precision bf16
check "bf16: 20 steps on $where" gpu -o "$W/gb" --iterations 20 --precision bf16
check "bf16: every step's train_loss within 1e-3" same_losses "$W/cb" "$W/gb" 1e-3
check "bf16: 1 step on the CPU" cpu -o "$W/cb1" --iterations 1 --precision bf16
check "bf16: 1 step on $where" gpu -o "$W/gb1" --iterations 1 --precision bf16
weights "bf16: the weights after one step within 1e-4 of scale" 1e-4 "$W/gb1" "$W/cb1"
# Head dim 16 (dim 64, 4 heads): the device's bf16 attention is then the fused kernel
# (kernels/cuda/flash.cu), which rounds the forward's running probabilities where the CPU rounds
# the normalized ones (tests/emu/test_cuda_flash.c): bf16-level differences in the attention's
# output (the losses still agree to ~1.5e-4, as the batched products' do), but no weights
# compared: one bf16 Newton–Schulz step turns such differences in a gradient into ~10% of the
# smallest singular directions' update.
FA="--dim 64 --precision bf16"
differ() { ! cmp -s "$1" "$2"; }
check "flash: 20 steps on the CPU" cpu -o "$W/cf" --iterations 20 $FA
check "flash: 20 steps on $where" gpu -o "$W/gf" --iterations 20 $FA
check "flash: every step's train_loss within 1e-3" same_losses "$W/cf" "$W/gf" 1e-3
check "flash: 20 steps on $where without the fused kernel" env PG_FLASH=0 "$DTRAIN" -q -d "$W/data" --prefix t \
    -m "$W/sp.model" $TINY --device cuda -o "$W/gn" --iterations 20 $FA
check "flash: the fused kernel ran (its model differs from the batched products')" \
    differ "$W/gf/model.safetensors" "$W/gn/model.safetensors"

# ---- the device's own guarantees ----
check "device: 10 steps, stopped with a checkpoint" gpu -o "$W/g2" --iterations 20 --precision fp32 --stop-at 10
check "device: resumed for the last 10" gpu -o "$W/g2" --iterations 20 --precision fp32 \
    --resume "$W/g2/ckpt_000010.safetensors"
check "device: resume is bit-exact (the model file)" cmp "$W/g/model.safetensors" "$W/g2/model.safetensors"
check "device: resume is bit-exact (the optimizer state; its metadata has the wall-clock time)" quiet \
    "$DIFF" "$W/g/ckpt_000020.state.safetensors" "$W/g2/ckpt_000020.state.safetensors" 0
check "device: a second run of the same seed" gpu -o "$W/g3" --iterations 20 --precision fp32
check "device: two runs give the same bytes" cmp "$W/g/model.safetensors" "$W/g3/model.safetensors"

# ---- CUDA graphs and the staged batches: the same bytes as without graphs ----
# Each micro-batch's forward and backward are captured once (after one eager micro-batch in each
# mode, looping or not) and replayed; host work a replay would skip (document starts, bigram
# buckets, the loss's read-back) or a pointer it would keep stale makes these differ.
GRAPHS="--iterations 8 $RECORD --varlen-attn 1 --bigram-vocab 64 --bigram-dim 16 --ve-last-n 1 --ve-dim 16"
for prec in fp32 bf16; do
    # shellcheck disable=SC2086
    "$DTRAIN" -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda -o "$W/gg$prec" --precision $prec \
        $GRAPHS >/dev/null 2>"$W/gg$prec.err"
    # shellcheck disable=SC2086
    check "graphs ($prec): 8 steps of the record stack with documents, bigrams, value embeddings, without graphs" \
        env PG_GRAPHS=0 "$DTRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda -o "$W/gq$prec" \
        --precision $prec $GRAPHS
    check "graphs ($prec): the micro-batch captured in both modes (looping or not)" \
        sh -c "grep -c 'backward.*captured as a CUDA graph' '$W/gg$prec.err' | grep -qx 2"
    check "graphs ($prec): the optimizers' updates captured once" \
        sh -c "grep -c 'optimizers. updates captured as a CUDA graph' '$W/gg$prec.err' | grep -qx 1"
    losses "$W/gg$prec" >"$W/gg$prec.losses"
    losses "$W/gq$prec" >"$W/gq$prec.losses"
    check "graphs ($prec): the same train_loss at every step" cmp "$W/gg$prec.losses" "$W/gq$prec.losses"
    check "graphs ($prec): the same model bytes" cmp "$W/gg$prec/model.safetensors" "$W/gq$prec/model.safetensors"
    check "graphs ($prec): every step's phases timed by the device's events, within the step's time" \
        jqe -s '[.[] | select(.step_ms)] | length == 8 and
            all(.fwd_bwd_ms > 0 and .optim_ms > 0 and .fwd_bwd_ms + .optim_ms <= .step_ms + 0.002)' "$W/gg$prec/metrics.jsonl"
done
# A capture that fails (the emulator's PG_EMU_CAPTURE_FAIL=k fails the k-th: 1 the micro-batch's,
# 2 the optimizers'): a warning, nothing of it run, training on without that graph, the same bytes.
if [ "${PG_EXPECT_GPU:-0}" != 1 ]; then
    for k in 1 2; do
        # shellcheck disable=SC2086
        PG_EMU_CAPTURE_FAIL=$k "$DTRAIN" -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda \
            -o "$W/gx$k" --precision fp32 $GRAPHS >/dev/null 2>"$W/gx$k.err"
        what=$([ $k = 1 ] && echo "the micro-batch's" || echo "the optimizers'")
        check "graphs: $what capture failing, a warning" grep -q "warning: no CUDA graph" "$W/gx$k.err"
        check "graphs: $what capture failing, the bytes of no graphs" cmp "$W/gx$k/model.safetensors" \
            "$W/gqfp32/model.safetensors"
    done
    check "graphs: the micro-batch's capture failing, no graph after it" \
        sh -c "! grep -q 'captured as a CUDA graph' '$W/gx1.err'"
    check "graphs: the optimizers' capture failing, the micro-batch's graphs kept" \
        sh -c "grep -c 'backward.*captured as a CUDA graph' '$W/gx2.err' | grep -qx 2"
    # The emulator's count (PG_EMU_COUNT=1) of what the host issues one by one: with the graphs,
    # the 8 steps' 16 micro-batches and 8 optimizer steps are replays but for the first of each
    # kind (3 graphs); without, every operation. The gx runs above fell back partly.
    for g in 1 0; do
        # shellcheck disable=SC2086
        PG_GRAPHS=$g PG_EMU_COUNT=1 "$DTRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda \
            -o "$W/gc$g" --precision fp32 $GRAPHS 2>"$W/gc$g.err"
    done
    # "pg-emu: R operations run as issued, C captured into N graphs, L graph launches": field F
    count() { awk -v f="$2" '/^pg-emu: .* graph launches$/ { print $f }' "$1"; }
    r1=$(count "$W/gc1.err" 2) r0=$(count "$W/gc0.err" 2) c1=$(count "$W/gc1.err" 7) n1=$(count "$W/gc1.err" 10)
    l1=$(count "$W/gc1.err" 12)
    check "graphs: counted, 3 graphs replayed $l1 times, $r1 operations issued one by one against $r0 without" \
        sh -c "test '$n1' = 3 && test '$l1' -ge 20 && test '$c1' -gt 0 && test $((r1 * 3)) -lt '$r0'"
fi

# ---- the device's checkpoint scores the same on the CPU and on the device ----
"$EVAL" "$W/g/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --json >"$W/ec.json" 2>/dev/null
"$DEVAL" "$W/g/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --device cuda --json >"$W/eg.json" 2>/dev/null
a=$(jq .val_bpb "$W/ec.json") b=$(jq .val_bpb "$W/eg.json") t=$(jq -r .val_bpb "$W/g/metrics.jsonl" | grep -v null | tail -n 1)
check "its checkpoint scores the same in pg-eval on the CPU ($a) and on $where ($b)" \
    awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-5 * a)}'
check "and as the training's own last validation ($t)" \
    awk -v a="$a" -v b="$t" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-5 * a)}'
# ---- test-time training on the device: score-first SGD as on the CPU ----
TTT="-d $W/data --prefix t -m $W/sp.model --epochs 2 --chunk-tokens 128 --step-seqs 2 --batch-seqs 2 --lr 0.01 --json"
# shellcheck disable=SC2086
"$PG_BIN/pg-ttt" "$W/g/model.safetensors" $TTT >"$W/tc.json" 2>"$W/tc.err"
# shellcheck disable=SC2086
"$DTTT" "$W/g/model.safetensors" $TTT --device cuda >"$W/tg.json" 2>"$W/tg.err"
a=$(jq .val_bpb "$W/tc.json") b=$(jq .val_bpb "$W/tg.json") s=$(jq .steps "$W/tg.json")
check "pg-ttt on $where: $s SGD steps, val_bpb $b against the CPU's $a (within 1e-5)" \
    awk -v a="$a" -v b="$b" -v s="$s" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(s > 0 && a > 0 && d <= 1e-5 * a)}'
check "and TTT changed the score (the steps ran: $b against pg-eval's $(jq .val_bpb "$W/eg.json"))" \
    awk -v a="$b" -v b="$(jq .val_bpb "$W/eg.json")" 'BEGIN {exit !(a != b)}'
# ---- GPTQ calibration on the device: the same statistics as on the CPU ----
CAL="--scheme int4 --keep-float 100 --calib-data $W/data --calib-prefix t --calib-tokens 2048 --json -q"
# shellcheck disable=SC2086
"$PG_BIN/pg-quantize" "$W/g/model.safetensors" -o "$W/qc.pgq" $CAL >"$W/qc.json"
# shellcheck disable=SC2086
"$DQ" "$W/g/model.safetensors" -o "$W/qg.pgq" $CAL --device cuda >"$W/qg.json"
check "rounding with statistics gathered on $where: the same integers as the CPU's" cmp -s "$W/qc.pgq" "$W/qg.pgq"
check "and every tensor's output error within 1e-4 of the CPU's (H summed on the device)" \
    quiet jq -se '[.[0].tensors, .[1].tensors] | transpose | map(select(.[0].out_err != null) |
        ((.[0].out_err - .[1].out_err) | fabs) <= 1e-4 * .[0].out_err) | (length > 0 and all)' "$W/qc.json" "$W/qg.json"
# shellcheck disable=SC2086
"$PG_BIN/pg-quantize" "$W/g/model.safetensors" -o "$W/gc.pgq" $CAL --method gptq >/dev/null
# shellcheck disable=SC2086
"$DQ" "$W/g/model.safetensors" -o "$W/gg.pgq" $CAL --method gptq --device cuda >/dev/null
a=$("$EVAL" "$W/gc.pgq" -d "$W/data" --prefix t -m "$W/sp.model" --json 2>/dev/null | jq .val_bpb)
b=$("$EVAL" "$W/gg.pgq" -d "$W/data" --prefix t -m "$W/sp.model" --json 2>/dev/null | jq .val_bpb)
check "GPTQ calibrated on $where scores $b, the CPU-calibrated one $a (within 0.1%)" \
    awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-3 * a)}'
finish
