#!/bin/sh
# test-dist.sh: pg-train as ranks of one job under mpirun (lib/dist.h), on the CPU: N ranks with
# the same global batch equal one process (to the rounding of the gradient sums' order) at
# N = 2 and 3, with the record switches, looping and the coprime loader too; a rerun at the same
# N gives the same bytes, and so does dividing Muon's work between the ranks or not (on the CPU
# and on the emulated GPU); a run stopped at N = 2 resumes at N = 1; rank 0 alone writes; a rank
# that fails ends the job with its rank named, without hanging; a batch that does not split
# evenly is refused. Skips without mpirun.
. "$(dirname "$0")/lib.sh"
TB=${PG_TESTBIN:-build/tests}
DIFF=$TB/tools/st_diff
if ! command -v mpirun >/dev/null 2>&1; then
    echo "1..0 # SKIP no mpirun (Debian's openmpi-bin)"
    exit 0
fi
# Open MPI refuses root without these; --oversubscribe lets 3 ranks share 2 cores. Each rank
# uses one OpenMP thread, as ranks of a real job share the machine's cores. OpenMPI's own
# allocations are not freed at exit: leak checking is off for its processes (make check SANITIZE=1).
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x ASAN_OPTIONS"
export OMP_NUM_THREADS=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
W=$T_TMP
TRAIN=$PG_BIN/pg-train

licence_docs 3 >"$W/docs.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 384 || exit 1
"$PG_BIN/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 8 || exit 1

# six micro-batches of 128 tokens a step: 1 rank takes all six, 2 ranks three each, 3 ranks two
TINY="--layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 384 --seq-len 32 --batch-tokens 768 --grad-accum 6
 --max-wallclock 0 --warmdown-iters 8 --val-batch-tokens 512 --val-every 10 --log-every 0 --iterations 20"
RECORD="--xsa-last-n 2 --skip-gates 1 --smear-gate 1 --num-loops 1 --loop-start 1 --loop-end 1
 --enable-looping-at 0.3 --muon-polar-express 1 --muon-row-norm 1 --muon-wd 0.04 --grad-clip 0.5
 --ema-decay 0.9 --swa-every 2 --swa-start-lr 0.5 --qat-start-lr 0.3 --warmdown-frac 0.5 --coprime-loader 1"
one() { "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY "$@"; }
ranks() { n=$1; shift; $MPI -np "$n" "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY "$@"; }
losses() { jq -r 'select(.train_loss) | "\(.train_loss) \(.qat)"' "$1/metrics.jsonl"; }
# every step's train_loss within a relative tolerance (under late QAT, whose rounding to the grid
# turns the sums' last-bit differences into whole steps now and then, the fourth argument), and
# as many steps, $STEPS
STEPS=20
same_losses() {
    losses "$1" >"$W/la" && losses "$2" >"$W/lb" && [ "$(wc -l <"$W/la")" -eq "$(wc -l <"$W/lb")" ] &&
        [ "$(wc -l <"$W/la")" -eq "$STEPS" ] &&
        paste "$W/la" "$W/lb" | awk -v tol="$3" -v qtol="${4:-$3}" '{d = $1 - $3; if (d < 0) d = -d;
            s = $1 < 0 ? -$1 : $1; if (d > ($2 == 1 ? qtol : tol) * s) bad++} END {exit bad > 0}'
}
weights() {
    out=$("$DIFF" "$3/model.safetensors" "$4/model.safetensors" "$2")
    if [ $? -eq 0 ]; then ok "$1: $(echo "$out" | tail -n 1)"; else not_ok "$1"; echo "$out" | tail -n 5 | sed 's/^/#   /'; fi
}
same_val() { # the last validation's loss within 1e-6
    a=$(jq -r 'select(.val_loss) | .val_loss' "$1/metrics.jsonl" | tail -n 1)
    b=$(jq -r 'select(.val_loss) | .val_loss' "$2/metrics.jsonl" | tail -n 1)
    awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-6 * a)}'
}

# A build without MPI refuses to be one of several ranks; then nothing else here can run.
if ! ranks 2 -o "$W/probe" --iterations 1 2>"$W/probe.err"; then
    if grep -q "this build has no MPI" "$W/probe.err"; then
        ok "a build without MPI refuses to run as one of 2 ranks: $(head -n 1 "$W/probe.err")"
        finish
        exit 0
    fi
    sed 's/^/#   /' "$W/probe.err"
fi

check "1 process: 20 steps, 6 micro-batches each" one -o "$W/r1"
check "2 ranks: 20 steps, 3 micro-batches each" ranks 2 -o "$W/r2"
check "3 ranks: 20 steps, 2 micro-batches each" ranks 3 -o "$W/r3"
check "2 ranks: every step's train_loss within 1e-6 of 1 process's" same_losses "$W/r1" "$W/r2" 1e-6
check "3 ranks: every step's train_loss within 1e-6 of 1 process's" same_losses "$W/r1" "$W/r3" 1e-6
check "2 ranks: the validations (each rank scores a share) within 1e-6" same_val "$W/r1" "$W/r2"
weights "2 ranks: the final weights within 5e-5 of scale of 1 process's" 5e-5 "$W/r2" "$W/r1"
weights "3 ranks: the final weights within 5e-5 of scale of 1 process's" 5e-5 "$W/r3" "$W/r1"
check "rank 0 alone writes: one metrics line per step and validation, as 1 process" \
    sh -c "[ \$(wc -l <'$W/r2/metrics.jsonl') -eq \$(wc -l <'$W/r1/metrics.jsonl') ]"

check "2 ranks: every step line has ranks 2 and a comm_ms; one process's have neither" sh -c "
    jq -e -s '[.[] | select(.train_loss)] | length == 20 and all(.ranks == 2 and .comm_ms >= 0)' '$W/r2/metrics.jsonl' >/dev/null &&
    jq -e -s '[.[] | select(.train_loss)] | all(has(\"comm_ms\") | not)' '$W/r1/metrics.jsonl' >/dev/null"
check "2 ranks again" ranks 2 -o "$W/r2b"
check "a rerun at 2 ranks gives the same model bytes" cmp -s "$W/r2/model.safetensors" "$W/r2b/model.safetensors"
check "and the same optimizer state (its metadata has the wall-clock time)" quiet \
    "$DIFF" "$W/r2/ckpt_000020.state.safetensors" "$W/r2b/ckpt_000020.state.safetensors" 0

# Muon's orthogonalizations are divided between the ranks; each matrix's bits are its owner's
check "2 ranks with every rank orthogonalizing every matrix (PG_MUON_SHARD=0)" env PG_MUON_SHARD=0 \
    $MPI -x PG_MUON_SHARD -np 2 "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY -o "$W/r2u"
check "dividing Muon between the ranks changes no bit of the model" cmp -s "$W/r2/model.safetensors" "$W/r2u/model.safetensors"

check "record switches, looping, coprime loader: 1 process" one -o "$W/q1" $RECORD
check "record switches, looping, coprime loader: 2 ranks" ranks 2 -o "$W/q2" $RECORD
check "record: every step's train_loss within 1e-6 (under QAT 1e-4)" same_losses "$W/q1" "$W/q2" 1e-6 1e-4
weights "record: the final (EMA/SWA) weights within 1e-3 of scale (QAT's grid)" 1e-3 "$W/q2" "$W/q1"

check "2 ranks, stopped at step 10 with a checkpoint" ranks 2 -o "$W/s2" --stop-at 10
check "resumed by 1 process for the last 10 steps" one -o "$W/s2" --resume "$W/s2/ckpt_000010.safetensors"
check "resumed across 2 -> 1 ranks: every step's train_loss within 1e-6" same_losses "$W/r1" "$W/s2" 1e-6
weights "resumed across 2 -> 1 ranks: the final weights within 5e-5 of scale" 5e-5 "$W/s2" "$W/r1"

# ranks on the (emulated) GPU: their gradients are staged through the host for the sums. Ten
# steps (the last --iterations wins): the record switches' phases (looping from step 4, SWA,
# QAT in the warmdown's last steps) all come in ten, at half the emulator's time.
EMU=$TB/tools/pg-train-emu
TINY="$TINY --iterations 10" STEPS=10
if [ -x "$EMU" ]; then
    dev() { n=$1; shift; $MPI -np "$n" "$EMU" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda \
        --precision fp32 "$@"; }
    check "emulated GPU: 1 process" dev 1 -o "$W/g1"
    check "emulated GPU: 2 ranks" dev 2 -o "$W/g2"
    check "emulated GPU: every step's train_loss within 1e-6 of 1 process's" same_losses "$W/g1" "$W/g2" 1e-6
    weights "emulated GPU: the final weights within 5e-5 of scale" 5e-5 "$W/g2" "$W/g1"
    # Muon divided between GPU ranks too (each orthogonalizes its matrices, staged through the host)
    check "emulated GPU: 2 ranks with every rank orthogonalizing every matrix (PG_MUON_SHARD=0)" env \
        PG_MUON_SHARD=0 $MPI -x PG_MUON_SHARD -np 2 "$EMU" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY \
        --device cuda --precision fp32 -o "$W/g2u"
    check "emulated GPU: dividing Muon between the ranks changes no bit of the model" \
        cmp -s "$W/g2/model.safetensors" "$W/g2u/model.safetensors"
    # with bf16 products and Newton-Schulz (where the sums' last-bit differences flip bf16 roundings,
    # so 2 ranks drift from 1 process: 6e-6 of the loss after 3 steps, 5e-4 after 20) dividing Muon
    # still changes no bit
    check "emulated GPU, record switches (bf16, Polar Express, MuonEq-R, EMA/SWA, QAT): 2 ranks" dev 2 \
        -o "$W/gq2" $RECORD --precision bf16
    check "emulated GPU, record: the ten steps ran late QAT and the loop switch" quiet jq -se \
        '[.[] | select(.train_loss)] | length == 10 and (map(.qat) | max == 1) and
         (map(.looping) | min == 0 and max == 1)' "$W/gq2/metrics.jsonl"
    check "emulated GPU, record: 2 ranks with every rank orthogonalizing every matrix" env PG_MUON_SHARD=0 \
        $MPI -x PG_MUON_SHARD -np 2 "$EMU" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda \
        -o "$W/gq2u" $RECORD --precision bf16
    check "emulated GPU, record: dividing Muon changes no bit of the model" \
        cmp -s "$W/gq2/model.safetensors" "$W/gq2u/model.safetensors"
    $MPI -np 2 "$EMU" -d "$W/data" --prefix t -m "$W/sp.model" $TINY --device cuda --precision fp32 \
        --iterations 2 -o "$W/g3" >/dev/null 2>"$W/g3.err"
    check "emulated GPU: without NCCL between processes the ranks say they sum through the host" \
        grep -q "sum their gradients through the host (nccl: the CUDA emulator has no communicator of 2 ranks)" \
        "$W/g3.err"
    check "emulated GPU: and that Muon's work is divided between them" \
        grep -q "Muon's orthogonalizations divided between the 2 ranks (rank 0: [0-9]* of 18)" "$W/g3.err"
else
    echo "ok # SKIP no emulated pg-train (a build without CUDA)"
fi

# rank 1 is given a data folder that does not exist: the job must end, non-zero, naming it
start=$(date +%s)
timeout 120 mpirun --allow-run-as-root --oversubscribe --bind-to none -x ASAN_OPTIONS \
    -np 1 "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY -o "$W/f" : \
    -np 1 "$TRAIN" -q -d "$W/nowhere" --prefix t -m "$W/sp.model" $TINY -o "$W/f" >"$W/f.out" 2>"$W/f.err"
rc=$?
secs=$(($(date +%s) - start))
check "a failing rank ends the job with a non-zero status (got $rc, after ${secs}s), not a hang" \
    sh -c "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "and its error names the rank" grep -q "pg-train: rank 1 of 2: error: .*nowhere" "$W/f.err"
[ -s "$W/f.err" ] && grep "rank 1 of 2" "$W/f.err" | head -n 1 | sed 's/^/#   /'

# scripts/bench-dist.sh at a tiny shape: a table with one process and 2 ranks
check "bench-dist.sh runs one process and 2 ranks" sh -c "cd '$PG_ROOT' && PG_BIN='$PG_BIN' scripts/bench-dist.sh \
    -d '$W/data' -p t -m '$W/sp.model' --steps 3 -o '$W/bd' --args '$(echo $TINY | sed 's/--iterations 20//')' >'$W/bd.out' 2>&1"
check "its table has both runs and the exchanges' time" sh -c "grep -q '^1 process' '$W/bd.out' &&
    grep -Eq '^2 ranks +[0-9.]+ +[0-9]+ +[0-9.]+ +[0-9.]+x' '$W/bd.out'"
ranks 4 -o "$W/u" 2>"$W/u.err"
rc=$?
check "6 micro-batches over 4 ranks is refused (exit $rc)" sh -c "[ $rc -ne 0 ]"
check "saying why" grep -q "grad_accum_steps 6 is not a multiple of the 4 ranks" "$W/u.err"
finish
