#!/bin/sh
# test-train.sh: pg-train and pg-eval end to end on a tiny model: the loss falls; pg-eval's
# val_bpb equals an independent float64 evaluation of the same safetensors file (1e-4 relative)
# and the training's own final validation; resume is bit-exact (20 steps straight = 10 + resume
# + 10, byte for byte, with the same data order, also with the record stack's optimizer switches
# on); the record stack's schedule (warmdown by fraction, min_lr, WD taper, EMA, SWA, late QAT,
# the looping switch): defaults byte-identical, each switch changes the model, EMA equals an
# independent recomputation, resume bit-exact with all of it on; SIGTERM stops with a resumable checkpoint;
# bad checkpoints and bad options fail cleanly; --dry-run prints the resolved configuration and the
# parameter count without reading data.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval"
REF=${PG_TESTBIN:-build/tests}/tools/ref_eval_f64
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# ---- a tiny dataset: Debian's licence texts, a paragraph per document ----
licence_docs 5 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 --shard-tokens 20000 || exit 1
check "dataset: several train shards" test "$(ls "$W/data"/t_train_*.bin | wc -l)" -ge 3

TINY="--layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 512 --seq-len 32 --batch-tokens 256 --grad-accum 2
 --max-wallclock 0 --warmdown-iters 5 --val-batch-tokens 256 --log-every 5"
# shellcheck disable=SC2086
train() { "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY "$@"; }

# ---- training: the loss falls ----
check "train 40 steps" train -o "$W/run" --iterations 40 --val-every 20 --json
jq -s '[.[] | select(.train_loss)] | .[0:5] | map(.train_loss) | add / length' "$W/run/metrics.jsonl" >"$W/first"
jq -s '[.[] | select(.train_loss)] | .[-5:] | map(.train_loss) | add / length' "$W/run/metrics.jsonl" >"$W/last"
check "loss falls: first 5 steps $(cat "$W/first") > last 5 $(cat "$W/last") + 0.3" \
    sh -c "[ \$(echo \"$(cat "$W/first") > $(cat "$W/last") + 0.3\" | bc -l) = 1 ]"
check "three validations (steps 0, 20, 40) in metrics.jsonl" test "$(grep -c val_bpb "$W/run/metrics.jsonl")" = 3
check "model.safetensors and a resumable checkpoint written" \
    test -f "$W/run/model.safetensors" -a -f "$W/run/ckpt_000040.safetensors" -a -f "$W/run/ckpt_000040.state.safetensors"

# ---- pg-eval: equals an independent float64 evaluation and the training's last validation ----
"$EVAL" "$W/run/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --json >"$W/eval.json" 2>"$W/eval.err"
check "pg-eval runs" test -s "$W/eval.json"
bpb=$(jq .val_bpb "$W/eval.json")
loss=$(jq .val_loss "$W/eval.json")
"$REF" "$W/run/model.safetensors" "$W/data" t "$W/sp.model" >"$W/ref.txt"
ref_loss=$(cut -d' ' -f1 "$W/ref.txt") ref_bpb=$(cut -d' ' -f2 "$W/ref.txt")
rel() { echo "define a(x) { if (x < 0) return -x; return x; }; a($1 - $2) / $2" | bc -l; }
check "val_bpb $bpb = float64 reference $ref_bpb (rel $(rel "$bpb" "$ref_bpb"))" \
    sh -c "[ \$(echo \"$(rel "$bpb" "$ref_bpb") < 0.0001\" | bc -l) = 1 ]"
check "val_loss $loss = float64 reference $ref_loss" sh -c "[ \$(echo \"$(rel "$loss" "$ref_loss") < 0.0001\" | bc -l) = 1 ]"
# --device cuda: on a GPU (make check-gpu) the same score as the CPU's; elsewhere exit 3, one line.
"$EVAL" "$W/run/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --device cuda --json \
    >"$W/eval-cuda.json" 2>"$W/eval-cuda.err"
rc=$?
if [ $rc -eq 0 ]; then
    cbpb=$(jq .val_bpb "$W/eval-cuda.json")
    check "pg-eval --device cuda: val_bpb $cbpb = the CPU's $bpb (rel $(rel "$cbpb" "$bpb"))" \
        sh -c "[ \$(echo \"$(rel "$cbpb" "$bpb") < 0.00001\" | bc -l) = 1 ]"
else
    check "pg-eval --device cuda without a GPU: exit 3 and one line naming CUDA (exit $rc)" \
        sh -c "[ $rc -eq 3 ] && [ \"\${PG_EXPECT_GPU:-0}\" != 1 ] && [ \$(wc -l <'$W/eval-cuda.err') -eq 1 ] && grep -q CUDA '$W/eval-cuda.err'"
fi
expect_fail "pg-eval: unknown device" 2 "unknown device" "$EVAL" "$W/run/model.safetensors" -d "$W/data" --prefix t \
    -m "$W/sp.model" --device tpu
train_bpb=$(jq -s '[.[] | select(.val_bpb)] | .[-1].val_bpb' "$W/run/metrics.jsonl")
check "pg-eval's val_bpb = the training's final validation ($train_bpb)" \
    sh -c "[ \$(echo \"$(rel "$bpb" "$train_bpb") < 0.000001\" | bc -l) = 1 ]"
check "bytes counted = pg-tokenize info's count over the val split (minus the unscored first token)" \
    test "$(jq .bytes "$W/eval.json")" -le "$("$TOK" info -m "$W/sp.model" --json "$W/data"/t_val_*.bin | jq .total.bytes)"

# ---- resume is bit-exact ----
check "straight: 20 steps" train -o "$W/a" --iterations 20 --val-every 0
check "split: 10 steps of the same 20-step schedule" train -o "$W/b" --iterations 20 --val-every 0 --stop-at 10
check "split: resume to 20" train -o "$W/b" --iterations 20 --val-every 0 --resume "$W/b/ckpt_000010.safetensors"
check "resumed model is byte-identical to the straight run" cmp -s "$W/a/model.safetensors" "$W/b/model.safetensors"
# the state files differ only in the train_ms timing in their headers: compare the data sections
data_of() { n=$(od -An -tu8 -N8 "$1" | tr -d " "); tail -c +$((9 + n)) "$1"; }
data_of "$W/a/ckpt_000020.state.safetensors" >"$W/a.state"
data_of "$W/b/ckpt_000020.state.safetensors" >"$W/b.state"
check "resumed optimizer state is byte-identical ($(wc -c <"$W/a.state") bytes)" cmp -s "$W/a.state" "$W/b.state"
train -o "$W/c" --iterations 20 --val-every 0 --seed 7
check "a different seed gives a different model" sh -c "! cmp -s \"$W/a/model.safetensors\" \"$W/c/model.safetensors\""
# the record stack's optimizer switches (hyper-parameters, not state) resume bit-exactly too
REC="--muon-polar-express 1 --muon-row-norm 1 --muon-wd 0.095 --embed-wd 0.085 --scalar-wd 0.02"
# shellcheck disable=SC2086
check "record optimizers: 20 steps straight" train -o "$W/ra" --iterations 20 --val-every 0 $REC
# shellcheck disable=SC2086
check "record optimizers: 10 steps of the same schedule" train -o "$W/rb" --iterations 20 --val-every 0 --stop-at 10 $REC
# shellcheck disable=SC2086
check "record optimizers: resume to 20" train -o "$W/rb" --iterations 20 --val-every 0 $REC \
    --resume "$W/rb/ckpt_000010.safetensors"
check "record optimizers: resumed model is byte-identical" cmp -s "$W/ra/model.safetensors" "$W/rb/model.safetensors"
check "record optimizers: the model differs from the baseline optimizers'" \
    sh -c "! cmp -s \"$W/a/model.safetensors\" \"$W/ra/model.safetensors\""

# ---- the record stack's schedule (spec/techniques.md §1.3, §3.3, §4.2) ----
# every new key at its default gives the bytes of a run without them
DEF="--warmdown-frac 0 --min-lr 0 --wd-taper-start 1 --wd-taper-final 0.5 --ema-decay 0 --swa-every 0
 --swa-start-lr 0.5 --qat-start-lr 0 --qat-bits 6 --enable-looping-at 0"
# shellcheck disable=SC2086
check "schedule defaults: 20 steps" train -o "$W/d0" --iterations 20 --val-every 0 $DEF
check "schedule defaults: byte-identical to the run without the flags" cmp -s "$W/a/model.safetensors" "$W/d0/model.safetensors"
check "schedule defaults: metrics say muon_wd_mul 1, qat 0, looping 0 at every step" \
    test "$(grep -c '"muon_wd_mul":1.000000,"qat":0,"looping":0,' "$W/d0/metrics.jsonl")" = 20
check "every step's phases: micro-batches and optimizers, each > 0, together within the step's time" \
    jqe -s '[.[] | select(.step_ms)] | length == 20 and
        all(.fwd_bwd_ms > 0 and .optim_ms > 0 and .fwd_bwd_ms + .optim_ms <= .step_ms + 0.002)' "$W/d0/metrics.jsonl"
# each switch changes the model; sw NAME DIR BASE FLAGS...
sw() {
    sw_name=$1 sw_dir=$2 sw_base=$3
    shift 3
    check "$sw_name: trains" train -o "$W/$sw_dir" --iterations 20 --val-every 0 "$@"
    check "$sw_name: the model differs from the default's" \
        sh -c "! cmp -s \"$W/$sw_base/model.safetensors\" \"$W/$sw_dir/model.safetensors\""
}
sw "warmdown-frac 0.5" wf a --warmdown-frac 0.5
lr_at() { jq -s -r ".[] | select(.step == $2 and .train_loss) | .lr_mul" "$W/$1/metrics.jsonl"; }
check "warmdown-frac 0.5: lr_mul 1 at step 10, 0.2 at step 18 ($(lr_at wf 11) $(lr_at wf 19))" \
    test "$(lr_at wf 11) $(lr_at wf 19)" = "1 0.2"
sw "min-lr 0.5" ml a --min-lr 0.5
check "min-lr 0.5: floors the warmdown_iters schedule (step 19: $(lr_at ml 20))" test "$(lr_at ml 20)" = "0.5"
# shellcheck disable=SC2086
sw "wd taper" wt ra $REC --wd-taper-start 0.5 --wd-taper-final 0.5
wd_at() { jq -s -r ".[] | select(.step == $2 and .train_loss) | .muon_wd_mul" "$W/$1/metrics.jsonl"; }
check "wd taper: multiplier 1 to step 10, 0.75 at step 15 ($(wd_at wt 10) $(wd_at wt 16))" \
    test "$(wd_at wt 10) $(wd_at wt 16)" = "1 0.75"
sw "ema-decay 0.9" ema a --ema-decay 0.9
check "ema: the final validation scores the EMA weights" \
    test "$(jq -s -r '[.[] | select(.val_bpb)] | .[-1].weights' "$W/ema/metrics.jsonl")" = ema
check "ema: model.safetensors differs from the raw weights of the last checkpoint" \
    sh -c "! cmp -s \"$W/ema/model.safetensors\" \"$W/ema/ckpt_000020.safetensors\""
# (the headers differ: the configuration is in the metadata)
data_of "$W/a/ckpt_000020.safetensors" >"$W/a.raw"
data_of "$W/ema/ckpt_000020.safetensors" >"$W/ema.raw"
check "ema: the raw checkpoint's weights equal the run without EMA" cmp -s "$W/a.raw" "$W/ema.raw"
"$EVAL" "$W/ema/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --json >"$W/ema.json" 2>/dev/null
ema_bpb=$(jq -s '[.[] | select(.val_bpb)] | .[-1].val_bpb' "$W/ema/metrics.jsonl")
check "ema: pg-eval of model.safetensors = the training's final validation ($ema_bpb)" \
    sh -c "[ \$(echo \"$(rel "$(jq .val_bpb "$W/ema.json")" "$ema_bpb") < 0.000001\" | bc -l) = 1 ]"
sw "swa-every 1" swa a --swa-every 1
check "swa: the final validation scores the SWA average" \
    test "$(jq -s -r '[.[] | select(.val_bpb)] | .[-1].weights' "$W/swa/metrics.jsonl")" = swa
sw "swa over ema" swe ema --ema-decay 0.9 --swa-every 1
sw "qat-start-lr 0.5" qat a --qat-start-lr 0.5
check "qat: on for the steps with lr_mul < 0.5 only (the last 2 of 20)" \
    test "$(jq -s '[.[] | select(.qat == 1 and .lr_mul < 0.5)] | length' "$W/qat/metrics.jsonl") $(grep -c '"qat":1' "$W/qat/metrics.jsonl")" = "2 2"
sw "qat-bits 3" qb3 qat --qat-start-lr 0.5 --qat-bits 3
sw "qat-levels 3 (ternary)" qt3 qat --qat-start-lr 0.5 --qat-levels 3
sw "qat-levels 5 (quinary)" qt5 qt3 --qat-start-lr 0.5 --qat-levels 5
sw "qat-start-lr 1.5 (every step)" qta qt3 --qat-start-lr 1.5 --qat-levels 3
check "qat-start-lr 1.5: QAT on all 20 steps" test "$(grep -c '"qat":1' "$W/qta/metrics.jsonl")" = 20
expect_fail "qat-levels 4" 2 "qat_levels = 4" train -o "$W/qt4" --iterations 2 --qat-levels 4
check "looping: off before enable_looping_at, on from it (steps 10-19)" \
    train -o "$W/loop" --iterations 20 --val-every 0 --num-loops 1 --loop-start 1 --loop-end 1 --enable-looping-at 0.5
check "looping: metrics have looping 0 for 10 steps, then 1 for 10" \
    test "$(grep -c '"looping":0' "$W/loop/metrics.jsonl") $(grep -c '"looping":1' "$W/loop/metrics.jsonl")" = "10 10"

# EMA recomputed independently: θ0 (a 0-step run) and the raw checkpoints of steps 1..3
if command -v python3 >/dev/null 2>&1; then
    train -o "$W/e0" --iterations 0 --val-every 0 --ema-decay 0.8
    train -o "$W/e3" --iterations 3 --val-every 0 --ema-decay 0.8 --save-every 1
    cat >"$W/ema.py" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; out[k] = struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
f32 = lambda x: struct.unpack('<f', struct.pack('<f', x))[0]
d = float(sys.argv[1]); final = load(sys.argv[2]); ema = load(sys.argv[3])
for p in sys.argv[4:]:
    th = load(p)
    ema = {k: [f32(d * e + (1 - d) * t) for e, t in zip(ema[k], th[k])] for k in ema}
bad = sum(1 for k in ema for a, b in zip(ema[k], final[k]) if abs(a - b) > 2.0 ** -22 * max(abs(b), 1e-30))
print(bad)
PY
    bad=$(python3 "$W/ema.py" 0.8 "$W/e3/model.safetensors" "$W/e0/ckpt_000000.safetensors" \
        "$W/e3/ckpt_000001.safetensors" "$W/e3/ckpt_000002.safetensors" "$W/e3/ckpt_000003.safetensors")
    check "ema: model.safetensors = 0.8^3 θ0 + 0.2 Σ 0.8^(3-k) θk over the raw checkpoints ($bad values differ)" test "$bad" = 0
else
    check "ema recomputed independently # SKIP no python3" true
fi

# resume is bit-exact with the whole schedule on: snapshots and QAT on both sides of the split
SCH="--warmdown-frac 0.8 --min-lr 0.05 --muon-wd 0.095 --wd-taper-start 0.3 --wd-taper-final 0.4 --ema-decay 0.9
 --swa-every 2 --swa-start-lr 0.9 --qat-start-lr 0.7 --qat-bits 5"
# shellcheck disable=SC2086
check "schedule on: 20 steps straight" train -o "$W/sa" --iterations 20 --val-every 0 $SCH
# shellcheck disable=SC2086
check "schedule on: 10 steps of the same schedule" train -o "$W/sb" --iterations 20 --val-every 0 --stop-at 10 $SCH
check "schedule on: SWA snapshots and QAT before the split" \
    test "$(grep -c '"qat":1' "$W/sb/metrics.jsonl")" -ge 1 -a "$(jq -s -r '[.[] | select(.val_bpb)] | .[-1].weights' "$W/sb/metrics.jsonl")" = swa
# shellcheck disable=SC2086
check "schedule on: resume to 20" train -o "$W/sb" --iterations 20 --val-every 0 $SCH --resume "$W/sb/ckpt_000010.safetensors"
check "schedule on: resumed model is byte-identical" cmp -s "$W/sa/model.safetensors" "$W/sb/model.safetensors"
check "schedule on: resumed raw checkpoint is byte-identical" cmp -s "$W/sa/ckpt_000020.safetensors" "$W/sb/ckpt_000020.safetensors"
data_of "$W/sa/ckpt_000020.state.safetensors" >"$W/sa.state"
data_of "$W/sb/ckpt_000020.state.safetensors" >"$W/sb.state"
check "schedule on: resumed state (optimizers, EMA, SWA sum) is byte-identical" cmp -s "$W/sa.state" "$W/sb.state"
check "schedule on: the state holds the EMA and the SWA sum" grep -q '"swa_sum"' "$W/sa/ckpt_000020.state.safetensors"

# ---- SIGTERM: checkpoint, clean exit, resumable ----
"$TRAIN" -d "$W/data" --prefix t -m "$W/sp.model" $TINY -o "$W/sig" --iterations 1000000 --val-every 0 2>"$W/sig.err" &
pid=$!
i=0
steps_done() { n=$(grep -c train_loss "$W/sig/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
while [ $i -lt 300 ] && [ "$(steps_done)" -lt 3 ] 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
st=$?
check "SIGTERM: exit status 0 (got $st)" test "$st" -eq 0
check "SIGTERM: says it was stopped" grep -q "stopped by a signal" "$W/sig.err"
ck=$(ls "$W/sig"/ckpt_*.safetensors | grep -v state | tail -1)
check "SIGTERM: a checkpoint and its state were written ($(basename "$ck"))" test -f "${ck%.safetensors}.state.safetensors"
check "SIGTERM: no temporary file left" test -z "$(ls -A "$W/sig" | grep '\.tmp\.')"
check "SIGTERM: training resumes from it" train -o "$W/sig" --iterations "$(($(basename "$ck" .safetensors | sed 's/ckpt_0*//') + 2))" \
    --val-every 0 --resume "$ck"

# ---- bad input ----
M="$W/run/model.safetensors"
head -c 100 "$M" >"$W/trunc.safetensors"
expect_fail "pg-eval: truncated checkpoint" 1 "trunc.safetensors" "$EVAL" "$W/trunc.safetensors" -d "$W/data" --prefix t -m "$W/sp.model"
cp "$M" "$W/flip.safetensors"
printf '\177' | dd of="$W/flip.safetensors" bs=1 seek=20 conv=notrunc 2>/dev/null
expect_fail "pg-eval: corrupt header" 1 "flip.safetensors" "$EVAL" "$W/flip.safetensors" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "pg-eval: not a checkpoint" 1 "docs.jsonl" "$EVAL" "$W/docs.jsonl" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "pg-eval: missing checkpoint" 1 "nope.safetensors" "$EVAL" "$W/nope.safetensors" -d "$W/data" --prefix t -m "$W/sp.model"
expect_fail "pg-eval: no val shards" 1 "no x_val" "$EVAL" "$M" -d "$W/data" --prefix x -m "$W/sp.model"
expect_fail "pg-eval: no -d" 2 "no data folder" "$EVAL" "$M" -m "$W/sp.model"
expect_fail "pg-train: heads must divide dim" 2 "num_heads" train -o "$W/bad" --dim 30 --heads 4
expect_fail "pg-train: bad number" 2 "--layers" train -o "$W/bad" --layers nine
expect_fail "pg-train: vocab smaller than the tokenizer's" 2 "vocab" train -o "$W/bad" --vocab 300
expect_fail "pg-train: unknown preset" 2 "preset" train -o "$W/bad" --preset huge
printf 'num_layers = 2\nbogus_key = 1\n' >"$W/bad.cfg"
expect_fail "pg-train: config file with an unknown key" 2 "bad.cfg:2" train -o "$W/bad" -c "$W/bad.cfg"

# ---- --dry-run: the resolved configuration and the parameter count, no data read ----
"$TRAIN" --dry-run --preset baseline >"$W/dry.txt" 2>"$W/dry.err"
check "--dry-run --preset baseline: exit 0" test $? -eq 0
check "--dry-run: the baseline has 17059912 parameters" test "$(tail -n 1 "$W/dry.txt")" = "num_params  17059912"
nflags=$("$TRAIN" --help | sed -n '/^Config flags/,$p' | grep -c '^      --')
check "--dry-run: one line per config field ($nflags), all at their defaults" \
    test "$(($(wc -l <"$W/dry.txt") - 1))" = "$nflags" -a "$(grep -c default "$W/dry.txt")" = 0 -a "$nflags" -gt 30
"$TRAIN" --dry-run -d "$W/none" -m "$W/none.model" -o "$W/dry-run" --mlp-leaky-slope 0.5 --rope-dims 16 \
    --ln-scale 1 >"$W/dry2.txt"
check "--dry-run: reads no data and writes no run folder" test $? -eq 0 -a ! -e "$W/dry-run"
check "--dry-run: the record-stack switches show with their defaults" \
    test "$(grep -c '(default 0)' "$W/dry2.txt")" = 3 -a "$(tail -n 1 "$W/dry2.txt")" = "num_params  17059912"
check "--dry-run --preset record: the record's 35945671 parameters" \
    test "$("$TRAIN" --dry-run --preset record | tail -n 1)" = "num_params  35945671"
check "--dry-run --preset record: 17 virtual layers' switches (11 layers, loop 3-5 twice from 0.35)" \
    sh -c "\"$TRAIN\" --dry-run --preset record | grep -Eqx 'num_loops +2 +\\(default 0\\)'"
check "--dry-run --json: num_params and the config as strings" \
    test "$("$TRAIN" --dry-run --json --rope-dims 16 | jq -r '"\(.num_params) \(.config.rope_dims)"')" = "17059912 16"
"$TRAIN" --dry-run --resume "$M" >"$W/dry3.txt"
check "--dry-run --resume: the checkpoint's configuration (3 layers)" grep -qx 'num_layers *3 *(default 9)' "$W/dry3.txt"
expect_fail "pg-train --dry-run: an invalid configuration is a usage error" 2 "rope_dims" "$TRAIN" --dry-run \
    --rope-dims 15
finish
