#!/bin/bash
# bench-dist.sh: pg-train's scaling over ranks of one data-parallel job (mpirun), on the CPU or
# on a machine's GPUs: for each rank count N, the same global batch trained for a few steps, the
# median step time, tokens/s and the exchanges' share (comm_ms of the metrics), against one
# process using the whole machine (all cores as OpenMP threads, or one GPU) in the same run.
# Prints a table and the ratios; logs go under the output folder. docs/BENCH.md has results.
set -eu

usage() {
    cat <<'EOF'
Usage: scripts/bench-dist.sh [options]

pg-train's step time with N ranks (mpirun) against one process, same data and global batch.

  -d, --data DIR       token shards (default data/demo/shards)
  -p, --prefix NAME    their prefix (default demo)
  -m, --tokenizer M    the SentencePiece model (default data/demo/tokenizer.model)
  -o, --out DIR        logs and table.txt (default build/bench-dist)
      --ranks LIST     rank counts to run (default "2"; one process is always run first)
      --steps N        steps per run (default 6; the first is not counted)
      --device D       cpu (default: each rank gets cores/N OpenMP threads) or cuda (a GPU each)
      --args STR       pg-train shape flags (default: the baseline's 9 x 512 model at seq 1024,
                       16,384 tokens a step in 2 micro-batches on the CPU)
  -n, --dry-run        print the commands, run nothing
  -h, --help           this help
EOF
}

data=data/demo/shards prefix=demo tok=data/demo/tokenizer.model out=build/bench-dist
ranks="2" steps=6 device=cpu dry=0
args="--layers 9 --dim 512 --heads 8 --kv-heads 4 --vocab 1024 --seq-len 1024 --batch-tokens 16384 --grad-accum 2"
while [ $# -gt 0 ]; do
    case $1 in
    -d | --data) data=$2; shift ;;
    -p | --prefix) prefix=$2; shift ;;
    -m | --tokenizer) tok=$2; shift ;;
    -o | --out) out=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --steps) steps=$2; shift ;;
    --device) device=$2; shift ;;
    --args) args=$2; shift ;;
    -n | --dry-run) dry=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-dist: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case $device in cpu | cuda) ;; *) echo "bench-dist: --device: cpu or cuda, not '$device'" >&2; exit 2 ;; esac
case $steps in '' | *[!0-9]* | 0 | 1) echo "bench-dist: --steps: a whole number >= 2" >&2; exit 2 ;; esac
bin=${PG_BIN:-bin}
cores=$(nproc)
mkdir -p "$out"
if [ $dry = 0 ] && ! command -v mpirun >/dev/null 2>&1; then echo "bench-dist: no mpirun (openmpi-bin)" >&2; exit 1; fi

common="-q -d $data --prefix $prefix -m $tok $args --iterations $steps --max-wallclock 0 --val-every 0
 --val-batch-tokens 65536 --log-every 0 --device $device"
# run NAME N: one process (N = 0) or N ranks; metrics in $out/NAME
run() {
    local name=$1 n=$2 threads cmd
    rm -rf "${out:?}/$name"
    if [ "$n" = 0 ]; then
        threads=$cores
        cmd=(env OMP_NUM_THREADS="$threads" "$bin/pg-train" $common -o "$out/$name")
    else
        threads=$((cores / n > 0 ? cores / n : 1))
        # each rank bound to its own cores: unbound, the scheduler let one rank share a core with
        # mpirun's and the other's threads now and then, 1.7 s of a 17 s step on 2 cores (BENCH.md)
        cmd=(mpirun --allow-run-as-root --oversubscribe --map-by "slot:PE=$threads" --bind-to core:overload-allowed
            -x OMP_NUM_THREADS="$threads" -np "$n"
            "$bin/pg-train" $common -o "$out/$name")
    fi
    if [ $dry = 1 ]; then echo "${cmd[*]}"; return 0; fi
    echo "bench-dist: $name: ${cmd[*]}" >&2
    "${cmd[@]}" 2>"$out/$name.log" || { echo "bench-dist: $name failed (see $out/$name.log)" >&2; return 1; }
}
median() { sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'; }
stat() { # NAME FIELD: the median over the steps after the first
    jq -r "select(.train_loss) | select(.step > 1) | .$2 // empty" "$out/$1/metrics.jsonl" | median
}

run one 0
for n in $ranks; do run "ranks$n" "$n"; done
[ $dry = 1 ] && exit 0

tokens=$(jq -r 'select(.train_loss) | .tokens_per_s * .step_ms / 1000' "$out/one/metrics.jsonl" | head -n 1)
{
    echo "== bench-dist: $(date -u +%F), $device, $cores cores, $(printf '%.0f' "$tokens") tokens a step =="
    printf '%-22s %10s %12s %10s %8s\n' run ms/step tokens/s comm_ms ratio
    base=$(stat one step_ms)
    printf '%-22s %10.1f %12.0f %10s %8s\n' "1 process, $cores threads" "$base" "$(stat one tokens_per_s)" - 1.00x
    for n in $ranks; do
        ms=$(stat "ranks$n" step_ms)
        printf '%-22s %10.1f %12.0f %10.1f %7.2fx\n' "$n ranks" "$ms" "$(stat "ranks$n" tokens_per_s)" \
            "$(stat "ranks$n" comm_ms)" "$(awk -v a="$ms" -v b="$base" 'BEGIN {print a / b}')"
    done
    echo "ratio: step time of N ranks / one process (below 1: the ranks are faster)"
} | tee "$out/table.txt"
