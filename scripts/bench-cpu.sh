#!/bin/sh
# bench-cpu.sh: CPU training and evaluation speed of pg-train / pg-eval, and the share of a
# training step spent in matrix products (BLAS).
#
# Two shapes: small (4 layers x 256 wide, seq 256) and the baseline shape (9 x 512, seq 1024) at
# a small batch (one 1024-token sequence per micro-batch). Training tokens/s from pg-train's
# metrics (median step after the first), eval tokens/s from pg-eval, and the share of cycles in
# OpenBLAS from `perf record` when perf works here. Data: the demo shards (built by make demo).
# The PyTorch reference (same model and optimizer on the CPU) is not run here: see docs/BENCH.md.
set -eu
cd "$(dirname "$0")/.."
D=${DEMO_DIR:-data/demo}
[ -f "$D/tokenizer.model" ] || { echo "bench-cpu: run 'make demo' first (needs $D)" >&2; exit 1; }
[ -x bin/pg-train ] || make -s
work=build/bench-cpu
rm -rf "$work"
mkdir -p "$work"
steps=${STEPS:-6}

# A short val split (the first 30 val documents) so the validations inside the runs stay brief; the
# train shards are the demo's.
mkdir -p "$work/data"
head -n 30 data/corpus/docs_val.jsonl >"$work/val4.jsonl"
bin/pg-tokenize encode -q -m "$D/tokenizer.model" -i "$work/val4.jsonl" -o "$work/data" --prefix demo --val-docs 30
rm -f "$work/data"/demo_train_*.bin
for f in "$D"/shards/demo_train_*.bin; do ln -s "$PWD/$f" "$work/data/"; done

run_shape() { # name, then pg-train flags
    name=$1
    shift
    bin/pg-train -q -d "$work/data" --prefix demo -m "$D/tokenizer.model" -o "$work/$name" --iterations "$steps" \
        --val-every 0 --max-wallclock 0 --grad-accum 1 --warmdown-iters 1 "$@" >/dev/null
    # the final validation is not part of a step; the median step time after the first:
    med=$(jq -r 'select(.step_ms) | .step_ms' "$work/$name/metrics.jsonl" | tail -n +2 | sort -n |
        awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    tokps=$(jq -r 'select(.tokens_per_s) | .tokens_per_s' "$work/$name/metrics.jsonl" | tail -n +2 | sort -n |
        awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-10s train: %8.1f ms/step  %8.0f tokens/s\n' "$name" "$med" "$tokps"
    ev=$( (bin/pg-eval "$work/$name/model.safetensors" -d "$work/data" --prefix demo -m "$D/tokenizer.model" \
        --json 2>/dev/null) | jq -r '"\(.tokens / .seconds)"')
    printf '%-10s eval:  %8.0f tokens/s\n' "$name" "$ev"
    if perf stat -e cycles true >/dev/null 2>&1; then
        perf record -q -o "$work/$name.perf" bin/pg-train -q -d "$work/data" --prefix demo -m "$D/tokenizer.model" \
            -o "$work/$name-perf" --iterations 3 --val-every 0 --max-wallclock 0 --grad-accum 1 --warmdown-iters 1 \
            "$@" >/dev/null 2>&1
        share=$(perf report -q -i "$work/$name.perf" --sort dso --stdio 2>/dev/null |
            awk '/openblas/ {s += $1} END {printf "%.1f", s}')
        echo "$name      share of cycles in OpenBLAS (3 steps + final val): ${share}%"
    fi
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%F)"
run_shape small --layers 4 --dim 256 --heads 4 --kv-heads 2 --seq-len 256 --batch-tokens 8192 --val-batch-tokens 8192
run_shape baseline --preset baseline --batch-tokens 1024 --val-batch-tokens 1024
