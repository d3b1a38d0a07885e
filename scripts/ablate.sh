#!/bin/sh
# ablate.sh: the record stack on the demo corpus at a fixed small compute budget, on the CPU.
#
# Every run trains for the same wall-clock time (ABLATE_SECONDS, default 60) on the demo shards
# (built as `make demo` builds them, if missing) and reports pg-train's end-of-training val_bpb
# (of the EMA weights when EMA is on): the scaled baseline (scripts/ablate-baseline.cfg), the scaled record
# preset (--preset record -c scripts/record-small.cfg), and the scaled record with each technique
# switched back to the baseline's choice, one at a time. Prints a Markdown table (also written to
# $ABLATE_DIR/ablate.md) with Δ = val_bpb − the record's: positive means the technique helps here.
#
#   sh scripts/ablate.sh                 all runs (about 30 minutes at 60 s each)
#   sh scripts/ablate.sh baseline record only the named runs (names: see the list below)
#
# Time-based budgets make the comparison fair between models of different cost per step, and
# make it depend on the machine's load: run it on a quiet machine.
set -eu
cd "$(dirname "$0")/.."
PATH=$PWD/bin:$PATH
DIR=${ABLATE_DIR:-data/ablate}
SECS=${ABLATE_SECONDS:-60}
DEMO_DIR=${DEMO_DIR:-data/demo}
VOCAB=${DEMO_VOCAB:-1024}
mkdir -p "$DIR"

if [ ! -e "$DEMO_DIR/tokenizer.model" ] || ! ls "$DEMO_DIR"/shards/demo_val_*.bin >/dev/null 2>&1; then
    sh scripts/fetch-corpus.sh data/corpus
    mkdir -p "$DEMO_DIR"
    pg-tokenize train -i data/corpus/docs_train.jsonl -o "$DEMO_DIR/tokenizer.model" --vocab "$VOCAB" \
        --max-sentence-length 65536 --input-sentence-size 200000
    pg-tokenize encode -f -m "$DEMO_DIR/tokenizer.model" -i data/corpus/docs.jsonl -o "$DEMO_DIR/shards" \
        --prefix demo --val-docs "$(sed -n 's/^docs_val=//p' data/corpus/manifest.txt)"
fi

# name | pg-train arguments (the record's runs start from --preset record -c scripts/record-small.cfg)
RECORD="--preset record -c scripts/record-small.cfg"
runs() {
    cat <<LIST
baseline|-c scripts/ablate-baseline.cfg
record|$RECORD
-leaky_relu2|$RECORD --mlp-leaky-slope 0
-partial_rope|$RECORD --rope-dims 0
-ln_scale|$RECORD --ln-scale 0
-qk_gain_5|$RECORD --qk-gain-init 1.5
-skip_gates|$RECORD --skip-gates 0
-depth_recurrence|$RECORD --num-loops 0
-parallel_residuals|$RECORD --parallel-start-layer 0
-smear_gate|$RECORD --smear-gate 0
-sparse_attn_gate|$RECORD --sparse-attn-gate 0
-xsa|$RECORD --xsa-last-n 0
-varlen_attn|$RECORD --varlen-attn 0
-ortho_init|$RECORD --ortho-init 0
-polar_express|$RECORD --muon-polar-express 0
-muon_row_norm|$RECORD --muon-row-norm 0
-weight_decay|$RECORD --muon-wd 0 --embed-wd 0 --scalar-wd 0
-warmdown_frac_min_lr|$RECORD --warmdown-frac 0 --min-lr 0
-ema|$RECORD --ema-decay 0
-momentum_0.92_0.97|$RECORD --muon-momentum 0.95 --muon-momentum-warmup-start 0.85 --muon-momentum-warmup-steps 7
-beta2_0.99|$RECORD --beta2 0.95
-grad_clip|$RECORD --grad-clip 0
LIST
}

wanted() { [ $# -eq 0 ] && return 0; for w in "$@"; do [ "$w" = "$NAME" ] && return 0; done; return 1; }

# results.txt: one line per run, "name val_bpb steps params"; a rerun of named runs replaces
# their lines and keeps the others.
touch "$DIR/results.txt"
[ $# -eq 0 ] && : >"$DIR/results.txt"
runs | while IFS='|' read -r NAME ARGS; do
    wanted "$@" || continue
    rm -rf "${DIR:?}/$NAME"
    # shellcheck disable=SC2086
    pg-train -q -d "$DEMO_DIR/shards" --prefix demo -m "$DEMO_DIR/tokenizer.model" -o "$DIR/$NAME" $ARGS \
        --max-wallclock "$SECS" --val-every 0
    m="$DIR/$NAME/metrics.jsonl"
    bpb=$(jq -rs '[.[] | select(.val_bpb)] | .[-1].val_bpb' "$m")
    steps=$(jq -rs '[.[] | select(.train_loss)] | length' "$m")
    params=$(pg-train --dry-run $ARGS | sed -n 's/^num_params  *//p')
    { grep -v "^$NAME " "$DIR/results.txt" || true; printf '%s %s %s %s\n' "$NAME" "$bpb" "$steps" "$params"; } \
        >"$DIR/results.new"
    mv "$DIR/results.new" "$DIR/results.txt"
    printf '%-24s val_bpb %.4f  %5s steps  %s params\n' "$NAME" "$bpb" "$steps" "$params" >&2
done

rec=$(awk '$1 == "record" { print $2 }' "$DIR/results.txt")
{
    echo "| run | val_bpb | Δ vs record | steps in ${SECS} s | parameters |"
    echo "|---|---|---|---|---|"
    runs | while IFS='|' read -r name _; do
        line=$(grep "^$name " "$DIR/results.txt") || continue
        set -- $line
        if [ -n "$rec" ]; then delta=$(echo "$2 - $rec" | bc -l | xargs printf '%+.4f'); else delta=n/a; fi
        printf '| %s | %.4f | %s | %s | %s |\n' "$1" "$2" "$delta" "$3" "$4"
    done
} | tee "$DIR/ablate.md"
