#!/bin/sh
# bench-quant.sh: each quantization method's packed artifact bytes, bits per weight, quantization
# gap (val_bpb of the artifact minus val_bpb of the float model) and time, and GPTQ's time on a
# record-size model.
#
# Every method quantizes the matrices of more than KEEP elements (see below).
# Models: the demo model (`make demo` trains it: 4 x 256, sp1024); with BASELINE_STEPS=N also a
# baseline-shaped model (9 x 512, seq 1024) trained N steps on the demo shards here (about 3 s a
# step on 2 cores). Methods: int8-baseline (parameter-golf's export), then at int6 (the records'
# matrices), int5 and int4, each with an int7 embedding: round to nearest (rtn), GPTQ, GPTQ pruned
# to rtn's packed bytes (--target-bytes: the comparison at equal size), GPTQ with LQER rank 4 on
# the top 3, GPTQ and rounding with --awq --hadamard, GPTQ calibrated on 64 self-generated
# sequences of 128 tokens (--calib-self), and at int5 a --bits-search 4-7 to GPTQ int5's packed
# bytes; and the ternary and quinary schemes (no QAT: a model trained in full precision).
# ONLY='PATTERN ...' runs only the rows whose names match one of the shell patterns.
# Packing: pg-pack --brotli (PACK="--lrzip --brotli" for the records' per-group packing, slower).
# GPTQ calibrates on CALIB_TOKENS (default 32768, as pg-quantize) training tokens. Bits per weight: the
# packed bytes x 8 over the model's parameter count. The reference for the gap is the float model
# scored by the same pg-eval.
#
# The record-size timing: a model of pg-train --preset record's shape (11 layers looped to 17
# virtual, 512 wide) with the demo's vocabulary, written at its initialization (weights do not
# change the work), quantized by GPTQ int6 with calibration on all cores; target < 120 s on 2
# cores (issue 16). RECORD=0 skips it; DEMO=0 skips the demo table.
set -eu
cd "$(dirname "$0")/.."
D=${DEMO_DIR:-data/demo}
[ -f "$D/run/model.safetensors" ] || { echo "bench-quant: run 'make demo' first (needs $D/run)" >&2; exit 1; }
[ -x bin/pg-quantize ] || make -s
PATH=$PWD/bin:$PATH
work=build/bench-quant
rm -rf "$work"
mkdir -p "$work"
PACK=${PACK:---brotli}
CALIB=${CALIB_TOKENS:-32768}
# tensors of at most KEEP elements stay fp16: the records keep 65,536, which at the demo's width
# (256 x 256 attention matrices) would leave every attention matrix a float; 16,384 quantizes
# all the matrices, as the records' 512-wide ones are
KEEP=${KEEP:-16384}
export LC_ALL=C

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
bpb() { pg-eval -q --json "$1" -d "$D/shards" --prefix demo -m "$D/tokenizer.model" | jq .val_bpb; }

# pg-pack's flags as pg-quantize --target-pack names them
case "$PACK" in
--lrzip\ --brotli | --brotli\ --lrzip) TPACK=lrzip+brotli ;;
*) TPACK=${PACK#--} ;;
esac

wanted() { # name: whether ONLY (space-separated shell patterns, unset: all) selects it
    [ -z "${ONLY:-}" ] && return 0
    set -f
    for p in $ONLY; do
        # shellcheck disable=SC2254
        case "$1" in $p) set +f && return 0 ;; esac
    done
    set +f
    return 1
}

row() { # name, then pg-quantize flags; sets $bytes
    name=$1
    shift
    wanted "$name" || return 0
    out="$work/$label-$name.pgq"
    t0=$(now)
    pg-quantize -q "$m" -o "$out" --keep-float "$KEEP" "$@"
    qs=$(since "$t0")
    # shellcheck disable=SC2086
    pg-pack -q "$out" -o "$work/$label-$name.pga" $PACK >/dev/null
    bytes=$(stat -c %s "$work/$label-$name.pga")
    b=$(bpb "$work/$label-$name.pga")
    printf '%-30s %12d %8.3f %10.4f %+9.4f %9.1f\n' "$name" "$bytes" "$(echo "$bytes * 8 / $params" | bc -l)" "$b" \
        "$(echo "$b - $fb" | bc -l)" "$qs"
}

bench_model() { # label, checkpoint
    label=$1 m=$2
    params=$(pg-quantize -q --json "$m" -o "$work/probe.pgq" | jq '[.tensors[] | .shape | reduce .[] as $x (1; . * $x)] | add')
    fb=$(bpb "$m")
    printf '\n%s: %s parameters, float val_bpb %.4f (pack %s, calibration %s tokens, floats up to %s elements)\n' \
        "$label" "$params" "$fb" "$PACK" "$CALIB" "$KEEP"
    printf '%-30s %12s %8s %10s %9s %9s\n' method packed_bytes bits/w val_bpb gap quant_s
    cal="--calib-data $D/shards --calib-prefix demo --calib-tokens $CALIB"
    bytes=0
    row int8-baseline
    for w in 6 5 4; do
        row "rtn-int$w-embed7" --bits "attn=$w,mlp=$w,embed=7"
        rtn_bytes=$bytes
        # shellcheck disable=SC2086
        row "gptq-int$w-embed7" --bits "attn=$w,mlp=$w,embed=7" --method gptq $cal
        # shellcheck disable=SC2086
        row "gptq-int$w-embed7@rtn-bytes" --bits "attn=$w,mlp=$w,embed=7" --method gptq $cal \
            --target-bytes "$rtn_bytes" --target-pack "$TPACK"
        # shellcheck disable=SC2086
        row "gptq-int$w-embed7+lqer4" --bits "attn=$w,mlp=$w,embed=7" --method gptq $cal --lqer-rank 4
        # shellcheck disable=SC2086
        row "rtn-int$w-embed7+awq+had" --bits "attn=$w,mlp=$w,embed=7" $cal --awq --hadamard
        # shellcheck disable=SC2086
        row "gptq-int$w-embed7+awq+had" --bits "attn=$w,mlp=$w,embed=7" --method gptq $cal --awq --hadamard
        row "gptq-int$w-embed7-selfcal" --bits "attn=$w,mlp=$w,embed=7" --method gptq --calib-self 64 \
            --calib-seq-len 128
        if [ "$w" = 5 ]; then
            gptq_bytes=$(stat -c %s "$work/$label-gptq-int5-embed7.pga" 2>/dev/null || echo 0)
            # shellcheck disable=SC2086
            [ "$gptq_bytes" -gt 0 ] && row "search4-7@gptq-int5-bytes" --bits-search 4-7 --method gptq $cal \
                --target-bytes "$gptq_bytes" --target-pack "$TPACK"
        fi
    done
    row ternary --scheme ternary
    row quinary --scheme quinary
}

echo "bench-quant: $(date -u +%Y-%m-%d), $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
[ "${DEMO:-1}" = 1 ] && bench_model demo "$D/run/model.safetensors"

if [ "${BASELINE_STEPS:-0}" -gt 0 ]; then
    pg-train -q -d "$D/shards" --prefix demo -m "$D/tokenizer.model" -o "$work/baseline" --preset baseline \
        --vocab 1024 --iterations "$BASELINE_STEPS" --batch-tokens 8192 --grad-accum 1 --warmdown-iters \
        $((BASELINE_STEPS / 3)) --max-wallclock 0 --val-every 0
    bench_model baseline "$work/baseline/model.safetensors"
fi

if [ "${RECORD:-1}" = 1 ]; then
    # pg-train always validates at the end: give it a val split of 40 documents (a few windows)
    mkdir -p "$work/rdata"
    head -n 40 data/corpus/docs_val.jsonl >"$work/rdata.jsonl"
    pg-tokenize encode -q -m "$D/tokenizer.model" -i "$work/rdata.jsonl" -o "$work/rdata" --prefix demo --val-docs 40
    rm -f "$work"/rdata/demo_train_*.bin
    for f in "$D"/shards/demo_train_*.bin; do ln -s "$PWD/$f" "$work/rdata/"; done
    pg-train -q -d "$work/rdata" --prefix demo -m "$D/tokenizer.model" -o "$work/record" --preset record --vocab 1024 \
        --batch-tokens 2048 --grad-accum 1 --val-batch-tokens 2048 --iterations 0 --max-wallclock 0 --val-every 0 >/dev/null
    t0=$(now)
    pg-quantize "$work/record/model.safetensors" -o "$work/record.pgq" --bits attn=6,mlp=6,embed=7 --method gptq \
        --calib-data "$D/shards" --calib-prefix demo --calib-tokens "$CALIB" 2>"$work/record.log" >/dev/null
    printf '\nrecord shape (vocab 1024): GPTQ int6 with %s calibration tokens: %.1f s (%s)\n' "$CALIB" "$(since "$t0")" \
        "$(grep -h 'calibration:\|GPTQ:' "$work/record.log" | sed 's/^pg-quantize: //' | tr '\n' ';')"
fi
