#!/bin/sh
# bench-pack.sh: artifact bytes and time of every pg-pack codec on a quantized baseline-shaped
# model, against the reference compressors run on the same .pgq file (lrzip -z -L 9 -T, brotli
# -q 11 -w 24, xz -9e) and against the order-0 empirical entropy of its bytes (the integer
# symbols are 99.9% of them).
#
#   scripts/bench-pack.sh [CKPT]
#
# CKPT defaults to a baseline-shaped model (9 x 512, sp1024) trained for $STEPS (default 30)
# steps on the demo shards (make demo builds them): far from a trained record's weights, whose
# integers are more concentrated, so read the ratios between codecs rather than the bytes. Two
# quantizations: int8-baseline (parameter-golf's), and int6 SDClip with an int8 embedding (the
# records' widths).
set -eu
cd "$(dirname "$0")/.."
[ -x bin/pg-pack ] || make -s
work=build/bench-pack
mkdir -p "$work"
D=${DEMO_DIR:-data/demo}
ck=${1:-}
if [ -z "$ck" ]; then
    [ -f "$D/tokenizer.model" ] || { echo "bench-pack: run 'make demo' first, or give a checkpoint" >&2; exit 1; }
    ck=$work/run/model.safetensors
    if [ ! -f "$ck" ]; then
        echo "training a baseline-shaped model for ${STEPS:-30} steps ..." >&2
        bin/pg-train -q -d "$D/shards" --prefix demo -m "$D/tokenizer.model" -o "$work/run" --preset baseline \
            --batch-tokens 4096 --grad-accum 1 --val-batch-tokens 4096 --iterations "${STEPS:-30}" --warmdown-iters 10 \
            --max-wallclock 0 --val-every 0 >/dev/null
    fi
fi

now() { date +%s.%N; }
row() { # name, bytes, raw bytes, seconds to pack[, seconds to unpack]
    printf '%-28s %10s %7.4f %8.1f s' "$1" "$2" "$(echo "$2 / $3" | bc -l)" "$4"
    if [ $# -gt 4 ]; then printf ' %8.1f s\n' "$5"; else echo; fi
}

for q in int8-baseline int6; do
    pgq=$work/$q.pgq
    t0=$(now)
    case $q in
        int8-baseline) bin/pg-quantize -q "$ck" -o "$pgq" ;;
        int6) bin/pg-quantize -q "$ck" -o "$pgq" --scheme int6 --bits embed=8 ;;
    esac
    tq=$(echo "$(now) - $t0" | bc -l)
    n=$(wc -c <"$pgq")
    echo
    echo "$q: $pgq, $n bytes, quantized in $(printf '%.1f' "$tq") s ($(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    printf '%-28s %10s %7s %10s %10s\n' "compressor" "bytes" "ratio" "pack" "unpack"
    ent=$(od -An -v -tu1 -w1 "$pgq" | awk '{c[$1]++; n++} END {for (k in c) {p = c[k] / n; h -= c[k] * log(p) / log(2)} printf "%.0f", h / 8}')
    printf '%-28s %10s %7.4f\n' "order-0 entropy of the bytes" "$ent" "$(echo "$ent / $n" | bc -l)"
    for mode in zlib lzma brotli lrzip "lrzip brotli"; do
        flags=$(printf -- '--%s ' $mode)
        t0=$(now)
        # shellcheck disable=SC2086
        bin/pg-pack -q "$pgq" -o "$work/x.pga" $flags --budget 1G >/dev/null
        t1=$(now)
        bin/pg-pack -q -d "$work/x.pga" -o "$work/back.pgq"
        t2=$(now)
        cmp -s "$pgq" "$work/back.pgq" || { echo "bench-pack: $flags did not give back the .pgq" >&2; exit 1; }
        row "pg-pack $flags" "$(wc -c <"$work/x.pga")" "$n" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)"
        if [ "$mode" = "lrzip brotli" ]; then best=$(wc -c <"$work/x.pga"); fi
    done
    t0=$(now); xz -9e -T1 -c "$pgq" >"$work/ref.xz"; t1=$(now)
    row "xz -9e" "$(wc -c <"$work/ref.xz")" "$n" "$(echo "$t1 - $t0" | bc -l)"
    t0=$(now); brotli -c -q 11 -w 24 "$pgq" >"$work/ref.br"; t1=$(now)
    row "brotli -q 11 -w 24" "$(wc -c <"$work/ref.br")" "$n" "$(echo "$t1 - $t0" | bc -l)"
    rm -f "$work/ref.lrz"
    t0=$(now); lrzip -q -f -z -L 9 -T -o "$work/ref.lrz" "$pgq" >/dev/null; t1=$(now)
    row "lrzip -z -L 9 -T" "$(wc -c <"$work/ref.lrz")" "$n" "$(echo "$t1 - $t0" | bc -l)"
    printf 'per-group pg-pack vs lrzip -z -L 9 -T of the whole file: %.4f; vs the order-0 entropy: %.4f\n' \
        "$(echo "$best / $(wc -c <"$work/ref.lrz")" | bc -l)" "$(echo "$best / $ent" | bc -l)"
done
