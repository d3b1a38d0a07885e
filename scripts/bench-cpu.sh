#!/bin/sh
# bench-cpu.sh: CPU training and evaluation speed of pg-train / pg-eval against a PyTorch CPU run
# of the same model and optimizer, and the share of a training step spent in matrix products.
#
# Two shapes: small (4 layers x 256 wide, seq 256) and the baseline shape (9 x 512, seq 1024) at
# a small batch (one 1024-token sequence per step). Training ms/step: the median step after the
# first, from pg-train's metrics. Eval tokens/s from pg-eval. The share of cycles in OpenBLAS from
# `perf record` over training steps only (a 10-document val split keeps the final validation
# short), on 1 thread (where cycles are time) and on all threads (where OpenMP's barrier waits
# count as outside BLAS). The PyTorch reference (tests/torch/pg_torch.py, test-only, Debian's
# python3-torch on OpenBLAS) runs the same steps from the same checkpoint when it is installed;
# it is timed with OpenBLAS threaded and torch on 1 thread, and the other way round, and the
# faster is the reference, with glibc told to keep freed memory (the fastest setting measured).
# Data: the demo shards (built by make demo).
#
# OpenBLAS kernels: both sides run the best core of this CPU (lib/cpu_tune.h; BENCH_CORE=NAME
# to choose another), named in the output with one product's GFLOP/s, so the ratio compares like
# with like even where OpenBLAS misjudges the CPU or the environment pins OPENBLAS_CORETYPE.
# Then the start-up selection itself: pg-train at the small shape with OpenBLAS forced to its
# Prescott fallback (as on a CPU it does not know), and the same with the fallback presented to
# pg-train as OpenBLAS's own choice (PG_TUNE_SIMULATE_FALLBACK=1), which it must raise to the
# best core and its speed.
set -eu
cd "$(dirname "$0")/.."
D=${DEMO_DIR:-data/demo}
[ -f "$D/tokenizer.model" ] || { echo "bench-cpu: run 'make demo' first (needs $D)" >&2; exit 1; }
[ -x bin/pg-train ] && [ -x build/tests/tools/blas_info ] || make -s
work=build/bench-cpu
rm -rf "$work"
mkdir -p "$work"
steps=${STEPS:-6}
threads=$(nproc)
PY=/usr/bin/python3
have_torch=0
[ -x $PY ] && $PY -c 'import torch' 2>/dev/null && have_torch=1

# val splits: the first 30 val documents for the eval runs, the first 10 for the perf runs
valsplit() { # n dir
    mkdir -p "$2"
    head -n "$1" data/corpus/docs_val.jsonl >"$2.jsonl"
    bin/pg-tokenize encode -q -m "$D/tokenizer.model" -i "$2.jsonl" -o "$2" --prefix demo --val-docs "$1"
    rm -f "$2"/demo_train_*.bin
    for f in "$D"/shards/demo_train_*.bin; do ln -s "$PWD/$f" "$2/"; done
}
valsplit 30 "$work/data"
valsplit 10 "$work/dperf"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_shape() { # name, batch tokens, then pg-train flags
    name=$1 bt=$2
    shift 2
    train() { bin/pg-train -q -d "$work/dperf" --prefix demo -m "$D/tokenizer.model" --val-every 0 --max-wallclock 0 \
        --grad-accum 1 --warmdown-iters 1 --batch-tokens "$bt" --val-batch-tokens "$bt" "$@" >/dev/null 2>&1; }
    train -o "$work/$name" --iterations "$steps" "$@"
    ms=$(jq -r 'select(.step_ms) | .step_ms' "$work/$name/metrics.jsonl" | tail -n +2 | median)
    printf '%-9s pg-train      %9.1f ms/step %8.0f tokens/s\n' "$name" "$ms" "$(echo "$bt * 1000 / $ms" | bc -l)"
    if [ $have_torch = 1 ]; then
        best=""
        for cfg in "$threads 1" "1 $threads"; do
            ob=${cfg% *} ot=${cfg#* }
            # glibc keeps the memory torch frees (no trimming, no mmap per large tensor): freeing and
            # refaulting every step's activations made the reference 1.5-2.5x slower and erratic
            r=$(OPENBLAS_NUM_THREADS=$ob OMP_NUM_THREADS=$ot MALLOC_TRIM_THRESHOLD_=-1 \
                MALLOC_MMAP_THRESHOLD_=1099511627776 $PY tests/torch/pg_torch.py bench \
                "$work/$name/model.safetensors" "$work/dperf" demo "$steps" "$bt" "$ot" | jq -r .step_ms)
            printf '%-9s PyTorch %s    %9.1f ms/step  (OpenBLAS %s threads, torch %s)\n' "$name" "$(
                $PY -c 'import torch; print(torch.__version__)')" "$r" "$ob" "$ot"
            if [ -z "$best" ] || [ "$(echo "$r < $best" | bc -l)" = 1 ]; then best=$r; fi
        done
        printf '%-9s pg-train is %.2fx the best PyTorch run\n' "$name" "$(echo "$best / $ms" | bc -l)"
    fi
    ev=$( (bin/pg-eval "$work/$name/model.safetensors" -d "$work/data" --prefix demo -m "$D/tokenizer.model" \
        --json 2>/dev/null) | jq -r '"\(.tokens / .seconds)"')
    printf '%-9s pg-eval       %9.0f tokens/s\n' "$name" "$ev"
    if perf stat -e cycles true >/dev/null 2>&1; then
        for t in 1 "$threads"; do
            OMP_NUM_THREADS=$t perf record -q -o "$work/$name-$t.perf" bin/pg-train -q -d "$work/dperf" --prefix demo \
                -m "$D/tokenizer.model" -o "$work/$name-perf" --iterations 3 --val-every 0 --max-wallclock 0 \
                --grad-accum 1 --warmdown-iters 1 --batch-tokens "$bt" --val-batch-tokens "$bt" "$@" >/dev/null 2>&1
            rm -rf "$work/$name-perf"
            perf report -q -i "$work/$name-$t.perf" --sort dso --stdio 2>/dev/null | awk -v n="$name" -v t="$t" '
                /openblas/ {b += $1} /libgomp/ {g += $1} /kernel/ {k += $1}
                END {printf "%-9s %s thread(s): %.1f%% of cycles in OpenBLAS, %.1f%% OpenMP waits, %.1f%% kernel (start-up, writes); outside BLAS excluding the kernel: %.1f%%\n",
                     n, t, b, g, k, 100 * (100 - b - k) / (100 - k)}'
        done
    fi
}

echo "machine: $threads cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
info() { env "$@" build/tests/tools/blas_info --gflops; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
own=$(info -u OPENBLAS_CORETYPE)
best=${BENCH_CORE:-$(echo "$own" | field best)}
echo "OpenBLAS: its own choice here $(echo "$own" | field core) ($(echo "$own" | field gflops) GFLOP/s); the CPU offers $(echo "$own" | field isa)"
for c in Prescott "$best"; do
    echo "OpenBLAS core $c: $(info OPENBLAS_CORETYPE="$c" | field gflops) GFLOP/s (one 8192x512 by 512x1536 float product, 1 thread)"
done
export OPENBLAS_CORETYPE="$best"
echo "both sides below run OpenBLAS core $best"

small="--layers 4 --dim 256 --heads 4 --kv-heads 2 --seq-len 256"
# shellcheck disable=SC2086
select_run() { # label, env assignments: tokens/s of pg-train at the small shape
    label=$1
    shift
    rm -rf "$work/select"
    tps=$(env "$@" bin/pg-train -q -d "$work/dperf" --prefix demo -m "$D/tokenizer.model" --val-every 0 \
        --max-wallclock 0 --grad-accum 1 --warmdown-iters 1 --batch-tokens 8192 --val-batch-tokens 8192 $small \
        -o "$work/select" --iterations "$steps" --json 2>/dev/null | jq -r .tokens_per_second)
    note=$(env "$@" bin/pg-train --dry-run -v 2>&1 >/dev/null | head -n 1)
    printf '%-44s %8.0f tokens/s  %s\n' "$label" "$tps" "${note:-(no selection)}"
}
select_run "start-up selection: forced Prescott" OPENBLAS_CORETYPE=Prescott
select_run "start-up selection: Prescott as OpenBLAS's" OPENBLAS_CORETYPE=Prescott PG_TUNE_SIMULATE_FALLBACK=1
select_run "start-up selection: $best" OPENBLAS_CORETYPE="$best"

# shellcheck disable=SC2086
run_shape small 8192 $small
run_shape baseline 1024 --preset baseline
