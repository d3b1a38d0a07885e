#!/bin/bash
# gpu-session.sh: everything one lent GPU session should run, in one call of the device tool:
# the tests on the GPU (make check-gpu's programs from the bundle), then scripts/bench-gpu.sh on
# small data; logs in $OUT as at most five files (the tool brings back eight).
#
# Prepare here (this machine), once:
#   bash ../shared/tools/gpu-bundle.sh                      # .gpu/: the built programs and libraries
#   mkdir -p .gpu-run && echo /.gpu-run/ >> .git/info/exclude
#   cp data/demo/tokenizer.model data/demo/shards/demo_val_000000.bin .gpu-run/
#   python3 tests/torch/pg_torch.py take-shard 'data/demo/shards/demo_train_*.bin' \
#       .gpu-run/demo_train_000000.bin 4000000              # 8 MB: the loaders wrap around
#   git --git-dir=$(fetch openai/parameter-golf) show HEAD:train_gpt.py > .gpu-run/train_gpt.py  (optional)
# Then: run with carry [".gpu", ".gpu-run"], command "bash scripts/gpu-session.sh", timeout_s 600.
# Time: the tests about 2-3 minutes (capped at 200 s), the benchmark at most 360 s (with the
# baseline trained again with PG_FUSED=0: the fused forms' measured gain).
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-/tmp/pg-gpu-session}
DATA=${GPU_DATA:-.gpu-run}
mkdir -p "$OUT"
t0=$(date +%s)
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    echo "cores: $(nproc)"
    python3 -c 'import torch; print("torch", torch.__version__)'
} >"$OUT/gpu.txt" 2>&1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

timeout 200 bash .gpu/go.sh check-gpu >"$OUT/check-gpu.log" 2>&1
echo "check-gpu rc=$? after $(($(date +%s) - t0)) s" >>"$OUT/check-gpu.log"
(cd build/test-logs 2>/dev/null && tar czf "$OUT/testlogs.tar.gz" .)

t1=$(date +%s)
tg=""
[ -f "$DATA/train_gpt.py" ] && tg="--train-gpt $DATA/train_gpt.py"
# shellcheck disable=SC2086
timeout 360 bash .gpu/go.sh scripts/bench-gpu.sh -d "$DATA" -p demo -m "$DATA/tokenizer.model" -o /tmp/pg-bench \
    $tg --steps 6 --warmup 2 --record-micro-seqs 24 --record-accum 16 --unfused --eager >"$OUT/bench.log" 2>&1
echo "bench rc=$? after $(($(date +%s) - t1)) s" >>"$OUT/bench.log"
(cd /tmp && tar czf "$OUT/bench.tar.gz" pg-bench)

grep -E "passed,|FAIL|exit |rc=" "$OUT/check-gpu.log" | tail -30
tail -n 45 "$OUT/bench.log"
