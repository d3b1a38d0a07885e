#!/bin/sh
# demo.sh: the main job on the embedded demo corpus, as a plain pipeline of pg-* commands so
# users see how they compose. Called by `make demo` after the build.
#
# corpus → tokenizer → shards → pg-train → pg-eval → pg-quantize → pg-pack → pg-eval (artifact)
# → pg-ttt, then one table: val_bpb of the float checkpoint, the artifact and after TTT; the
# artifact's bytes against the 16,000,000-byte budget; the time of each stage.
set -eu
cd "$(dirname "$0")/.."
PATH=$PWD/bin:$PATH
DEMO_DIR=${DEMO_DIR:-data/demo}
VOCAB=${DEMO_VOCAB:-1024}
mkdir -p "$DEMO_DIR"

t() { date +%s.%N; }
stage() { printf '%-12s %8.1f   %s\n' "$1" "$(echo "$3 - $2" | bc -l)" "$4" >>"$DEMO_DIR/summary.txt"; }
: >"$DEMO_DIR/summary.txt"

t0=$(t)
sh scripts/fetch-corpus.sh data/corpus
t1=$(t)
stage corpus "$t0" "$t1" "$(wc -l <data/corpus/docs.jsonl) documents, $(stat -c %s data/corpus/docs.jsonl) bytes"

# The tokenizer learns from the training documents only; the demo's documents are whole pages,
# so the sentence-length cap is raised above SentencePiece's 4192-byte default.
pg-tokenize train -i data/corpus/docs_train.jsonl -o "$DEMO_DIR/tokenizer.model" --vocab "$VOCAB" \
    --max-sentence-length 65536 --input-sentence-size 200000
t2=$(t)
stage tokenizer "$t1" "$t2" "sp$VOCAB BPE"

val_docs=$(sed -n 's/^docs_val=//p' data/corpus/manifest.txt)
pg-tokenize encode -f -m "$DEMO_DIR/tokenizer.model" -i data/corpus/docs.jsonl -o "$DEMO_DIR/shards" \
    --prefix demo --val-docs "$val_docs"
t3=$(t)
stage encode "$t2" "$t3" "$(ls "$DEMO_DIR/shards" | wc -l) shards"

# Train the configured model, then score its checkpoint on the val split.
pg-train -d "$DEMO_DIR/shards" --prefix demo -m "$DEMO_DIR/tokenizer.model" -o "$DEMO_DIR/run" \
    -c "${DEMO_CONFIG:-scripts/demo.cfg}"
t4=$(t)
stage train "$t3" "$t4" "$(jq -rs '[.[] | select(.train_loss)] | "\(length) steps, last train_loss \(.[-1].train_loss)"' "$DEMO_DIR/run/metrics.jsonl")"
evaluate() { # model file, json output
    pg-eval "$1" -d "$DEMO_DIR/shards" --prefix demo -m "$DEMO_DIR/tokenizer.model" --json >"$2"
}
evaluate "$DEMO_DIR/run/model.safetensors" "$DEMO_DIR/eval.json"
t5=$(t)
stage eval "$t4" "$t5" "val_bpb $(jq .val_bpb "$DEMO_DIR/eval.json") (float checkpoint)"

# Quantize (int8 per row, as the baseline; DEMO_QUANT="--scheme int6" for the records' width),
# pack as the records do (integer groups through lrzip, the rest through brotli), and score the
# artifact itself.
# shellcheck disable=SC2086
pg-quantize -q "$DEMO_DIR/run/model.safetensors" -o "$DEMO_DIR/model.pgq" -m "$DEMO_DIR/tokenizer.model" \
    ${DEMO_QUANT:-} --json >"$DEMO_DIR/quant.json"
t6=$(t)
stage quantize "$t5" "$t6" "$(jq -r '"\(.scheme), \(.num_int) integer tensors, payload \(.payload_bytes) bytes"' "$DEMO_DIR/quant.json")"
pack_rc=0
pg-pack -q "$DEMO_DIR/model.pgq" -o "$DEMO_DIR/model.pga" --lrzip --brotli --json >"$DEMO_DIR/pack.json" || pack_rc=$?
[ "$pack_rc" -le 1 ] || exit "$pack_rc"
t7=$(t)
stage pack "$t6" "$t7" "$(jq -r '"\(.artifact_bytes) bytes (\(.mode))"' "$DEMO_DIR/pack.json")"
evaluate "$DEMO_DIR/model.pga" "$DEMO_DIR/eval-artifact.json"
t8=$(t)
stage eval-pga "$t7" "$t8" "val_bpb $(jq .val_bpb "$DEMO_DIR/eval-artifact.json") (the artifact)"

# Legal score-first test-time training on the artifact (DEMO_TTT to change its options).
# shellcheck disable=SC2086
pg-ttt "$DEMO_DIR/model.pga" -d "$DEMO_DIR/shards" --prefix demo -m "$DEMO_DIR/tokenizer.model" \
    ${DEMO_TTT:---epochs 1} --json >"$DEMO_DIR/ttt.json"
t9=$(t)
stage ttt "$t8" "$t9" "val_bpb $(jq .val_bpb "$DEMO_DIR/ttt.json") (score-first TTT)"

pg-tokenize info -m "$DEMO_DIR/tokenizer.model" "$DEMO_DIR"/shards/demo_val_*.bin --json >"$DEMO_DIR/val-info.json"
val_tokens=$(jq .total.tokens "$DEMO_DIR/val-info.json")
val_bytes=$(jq .total.bytes "$DEMO_DIR/val-info.json")
art=$(jq .artifact_bytes "$DEMO_DIR/pack.json")
budget=$(jq .budget "$DEMO_DIR/pack.json")

echo
echo "pgolf demo ($DEMO_DIR): $(echo "$t9 - $t0" | bc -l | xargs printf '%.0f') s in all"
echo
echo "stage         seconds   result"
cat "$DEMO_DIR/summary.txt"
echo
printf '%-30s %s\n' "val split" "$val_tokens tokens, $val_bytes bytes ($(echo "$val_bytes / $val_tokens" | bc -l | xargs printf '%.3f') bytes/token)"
printf '%-30s %.8f\n' "val_bpb, float checkpoint" "$(jq .val_bpb "$DEMO_DIR/eval.json")"
printf '%-30s %.8f\n' "val_bpb, quantized artifact" "$(jq .val_bpb "$DEMO_DIR/eval-artifact.json")"
printf '%-30s %.8f\n' "val_bpb, after score-first TTT" "$(jq .val_bpb "$DEMO_DIR/ttt.json")"
printf '%-30s %s of %s bytes (%s)\n' "artifact" "$art" "$budget" \
    "$(if [ "$pack_rc" = 0 ]; then echo "fits, $((budget - art)) to spare"; else echo "OVER the budget"; fi)"
