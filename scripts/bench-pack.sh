#!/bin/sh
# bench-pack.sh: artifact bytes and pack / unpack times of every pg-pack mode (whole-file codecs,
# the records' byte-shuffle + brotli, the records' per-group lrzip+brotli with and without the
# nearest-neighbour row ordering of the hot groups, per-group pgac with and without reordering,
# --best) on a quantized model, against the
# reference compressors run on the same .pgq file (lrzip -z -L 9 -T, brotli -q 11 -w 24, xz -9e),
# the order-0 empirical entropy of its bytes, and for pgac: the order-0 entropy of the integer
# values it codes and its own model's estimate of their cost (its conditional entropy), from
# pg-pack --json; and the bounds of build/tests/tools/pgq_bound (models of each value's scale or
# signed rank-1 mean with their side information free) with the pgac artifact they would give.
#
#   scripts/bench-pack.sh [CKPT]
#
# CKPT defaults to the demo model (make demo: 4 x 256, sp1024, 180 steps) when it exists, else
# to a baseline-shaped model (9 x 512) trained for $STEPS (default 30) steps on the demo shards.
# Four quantizations: int8-baseline (parameter-golf's), int6 and int5 SDClip with an int8
# embedding (the records' widths), and ternary; every matrix over $KEEP_FLOAT (default 4096)
# elements is an integer tensor. QUANTS="int6 int5" picks some; QUANTS="" none.
# RECORD=1 adds pgac's pack and unpack times on a record-size artifact: a model of pg-train
# --preset record's shape with the sp8192 vocabulary (35.9 M parameters; at its initialization,
# which gives the coder as many values and no easier ones), int6 with an int8 embedding, packed
# with --pgac: the issue's "unpacks a 16 MB artifact in < 5 s on 2 cores".
set -eu
cd "$(dirname "$0")/.."
[ -x bin/pg-pack ] || make -s
work=build/bench-pack
mkdir -p "$work"
D=${DEMO_DIR:-data/demo}
ck=${1:-}
if [ -z "$ck" ] && [ -f "$D/run/model.safetensors" ]; then ck=$D/run/model.safetensors; fi
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
have_lrzip=0
command -v lrzip >/dev/null 2>&1 && have_lrzip=1

now() { date +%s.%N; }
row() { # name, bytes, raw bytes, seconds to pack[, seconds to unpack]
    printf '%-28s %10s %7.4f %8.1f s' "$1" "$2" "$(echo "$2 / $3" | bc -l)" "$4"
    if [ $# -gt 4 ]; then printf ' %8.1f s\n' "$5"; else echo; fi
}

for q in ${QUANTS-int8-baseline int6 int5 ternary}; do
    pgq=$work/$q.pgq
    t0=$(now)
    kf="--keep-float ${KEEP_FLOAT:-4096}"
    # shellcheck disable=SC2086
    case $q in
        int8-baseline) bin/pg-quantize -q "$ck" -o "$pgq" $kf ;;
        ternary) bin/pg-quantize -q "$ck" -o "$pgq" --scheme ternary $kf ;;
        *) bin/pg-quantize -q "$ck" -o "$pgq" --scheme "$q" --bits embed=8 $kf ;;
    esac
    tq=$(echo "$(now) - $t0" | bc -l)
    n=$(wc -c <"$pgq")
    echo
    echo "$q: $pgq, $n bytes, quantized in $(printf '%.1f' "$tq") s ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    printf '%-28s %10s %7s %10s %10s\n' "compressor" "bytes" "ratio" "pack" "unpack"
    ent=$(od -An -v -tu1 -w1 "$pgq" | awk '{c[$1]++; n++} END {for (k in c) {p = c[k] / n; h -= c[k] * log(p) / log(2)} printf "%.0f", h / 8}')
    printf '%-28s %10s %7.4f\n' "order-0 entropy of the bytes" "$ent" "$(echo "$ent / $n" | bc -l)"
    pergroup=0 pgac=0
    for flags in --zlib --lzma --brotli "--brotli --shuffle" --lrzip "--lrzip --brotli --reorder none" \
        "--lrzip --brotli" "--pgac --reorder none" --pgac --best; do
        case "$flags" in *lrzip*) [ $have_lrzip = 1 ] || { echo "pg-pack $flags: skipped, lrzip is not installed"; continue; } ;; esac
        t0=$(now)
        # shellcheck disable=SC2086
        bin/pg-pack -q "$pgq" -o "$work/x.pga" $flags --budget 1G --json >"$work/x.json"
        t1=$(now)
        bin/pg-pack -q -d "$work/x.pga" -o "$work/back.pgq"
        t2=$(now)
        cmp -s "$pgq" "$work/back.pgq" || { echo "bench-pack: $flags did not give back the .pgq" >&2; exit 1; }
        row "pg-pack $flags" "$(wc -c <"$work/x.pga")" "$n" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)"
        case "$flags" in
            "--lrzip --brotli") pergroup=$(wc -c <"$work/x.pga"); cp "$work/x.pga" "$work/lrzip.pga" ;;
            --pgac) pgac=$(wc -c <"$work/x.pga"); cp "$work/x.json" "$work/pgac.json"; cp "$work/x.pga" "$work/pgac.pga" ;;
        esac
    done
    t0=$(now); xz -9e -T1 -c "$pgq" >"$work/ref.xz"; t1=$(now)
    row "xz -9e" "$(wc -c <"$work/ref.xz")" "$n" "$(echo "$t1 - $t0" | bc -l)"
    t0=$(now); brotli -c -q 11 -w 24 "$pgq" >"$work/ref.br"; t1=$(now)
    row "brotli -q 11 -w 24" "$(wc -c <"$work/ref.br")" "$n" "$(echo "$t1 - $t0" | bc -l)"
    if [ $have_lrzip = 1 ]; then
        rm -f "$work/ref.lrz"
        t0=$(now); lrzip -q -f -z -L 9 -T -o "$work/ref.lrz" "$pgq" >/dev/null; t1=$(now)
        row "lrzip -z -L 9 -T" "$(wc -c <"$work/ref.lrz")" "$n" "$(echo "$t1 - $t0" | bc -l)"
        printf 'per-group lrzip+brotli vs lrzip -z -L 9 -T of the whole file: %.4f; vs the order-0 entropy: %.4f\n' \
            "$(echo "$pergroup / $(wc -c <"$work/ref.lrz")" | bc -l)" "$(echo "$pergroup / $ent" | bc -l)"
    fi
    j=$work/pgac.json
    vals=$(jq .pgac.values "$j")
    if [ "$vals" -gt 0 ]; then
        pay=$(jq .pgac.payload_bytes "$j") mb=$(jq '.pgac.model_bytes | round' "$j") o0=$(jq '.pgac.order0_bytes | round' "$j")
        printf 'pgac: %s integer values in %s bytes (%.3f bits each); its model'"'"'s estimate %s (payload/estimate %.5f); their order-0 entropy %s (payload/order-0 %.4f)\n' \
            "$vals" "$pay" "$(echo "8 * $pay / $vals" | bc -l)" "$mb" "$(echo "$pay / $mb" | bc -l)" "$o0" "$(echo "$pay / $o0" | bc -l)"
        if [ $have_lrzip = 1 ]; then
            # the integer groups alone (their streams and the permutations; cuts and rest are the same)
            groups='[.streams[] | select(.name != "cuts" and .name != "rest") | .packed_bytes] | add'
            pg=$(bin/pg-pack -l --json "$work/pgac.pga" | jq "$groups")
            lg=$(bin/pg-pack -l --json "$work/lrzip.pga" | jq "$groups")
            printf 'pgac artifact vs lrzip+brotli per-group: %.4f (whole artifacts); integer groups with their permutations: pgac %s bytes vs lrzip %s: %.4f\n' \
                "$(echo "$pgac / $pergroup" | bc -l)" "$pg" "$lg" "$(echo "$pg / $lg" | bc -l)"
        fi
        # what models of each value's scale (row x column) or signed rank-1 mean could reach with
        # their side information free (build/tests/tools/pgq_bound): the pgac artifact with each
        # group at the lower of its pgac stream and the better bound
        bound=build/tests/tools/pgq_bound
        [ -x "$bound" ] || make -s "$bound"
        "$bound" "$pgq" >"$work/bound.txt"
        sed 's/^/  /' "$work/bound.txt"
        bin/pg-pack -l --json "$work/pgac.pga" | jq -r '.streams[] | "\(.name) \(.packed_bytes)"' >"$work/streams.txt"
        atb=$(awk -v art="$pgac" 'NR == FNR { s[$1] = $2; next }
            $1 != "group" && $1 != "total" && ($1 in s) {
                b = $5 < $6 + $7 ? $5 : $6 + $7; if (b < s[$1]) art -= s[$1] - b }
            END { printf "%.0f", art }' "$work/streams.txt" "$work/bound.txt")
        printf 'pgac payload / level bound %.4f, / rank1 bound + side %.4f; the pgac artifact at the bounds: %s bytes' \
            "$(echo "$pay / $(awk '$1 == "total" { print $5 }' "$work/bound.txt")" | bc -l)" \
            "$(echo "$pay / $(awk '$1 == "total" { print $6 + $7 }' "$work/bound.txt")" | bc -l)" "$atb"
        [ "$pergroup" -gt 0 ] && printf ', %.4f of per-group lrzip+brotli' "$(echo "$atb / $pergroup" | bc -l)"
        echo
    fi
done

if [ "${RECORD:-0}" = 1 ]; then
    # pg-train validates at the end: a val split of 40 documents keeps that short; the model is
    # never trained, so make demo's sp1024 shards serve a vocabulary of 8192
    mkdir -p "$work/rdata"
    [ -f "$D/tokenizer.model" ] || { echo "bench-pack: RECORD=1 needs make demo's tokenizer and shards" >&2; exit 1; }
    head -n 40 data/corpus/docs_val.jsonl >"$work/rdata.jsonl"
    bin/pg-tokenize encode -q -m "$D/tokenizer.model" -i "$work/rdata.jsonl" -o "$work/rdata" --prefix demo --val-docs 40
    rm -f "$work"/rdata/demo_train_*.bin
    for f in "$D"/shards/demo_train_*.bin; do ln -sf "$PWD/$f" "$work/rdata/"; done
    bin/pg-train -q -d "$work/rdata" --prefix demo -m "$D/tokenizer.model" -o "$work/record" --preset record \
        --vocab 8192 --batch-tokens 2048 --grad-accum 1 --val-batch-tokens 2048 --iterations 0 --max-wallclock 0 \
        --val-every 0 >/dev/null
    bin/pg-quantize -q "$work/record/model.safetensors" -o "$work/record.pgq" --scheme int6 --bits embed=8
    t0=$(now); bin/pg-pack -q "$work/record.pgq" -o "$work/record.pga" --pgac >/dev/null; t1=$(now)
    t2=$(now); bin/pg-pack -q -d "$work/record.pga" -o "$work/record.back.pgq" >/dev/null; t3=$(now)
    cmp -s "$work/record.pgq" "$work/record.back.pgq" || { echo "bench-pack: the record artifact did not round-trip" >&2; exit 1; }
    printf '\nrecord shape, vocab 8192, int6 (embed int8), at init: .pgq %s bytes, --pgac artifact %s bytes; pack %.1f s, unpack %.1f s (%s cores)\n' \
        "$(wc -c <"$work/record.pgq")" "$(wc -c <"$work/record.pga")" "$(echo "$t1 - $t0" | bc -l)" \
        "$(echo "$t3 - $t2" | bc -l)" "$(nproc)"
fi
