#!/bin/sh
# demo.sh: the main job on the embedded demo corpus, as a plain pipeline of pg-* commands so
# users see how they compose. Called by `make demo` after the build.
#
# Today: corpus → tokenizer → shards → training → evaluation. Quantization, packing and test-time
# training join as pg-quantize, pg-pack and pg-ttt land (they exit with status 3 until then).
set -eu
cd "$(dirname "$0")/.."
PATH=$PWD/bin:$PATH
DEMO_DIR=${DEMO_DIR:-data/demo}
VOCAB=${DEMO_VOCAB:-1024}
mkdir -p "$DEMO_DIR"

t() { date +%s.%N; }
stage() { printf '%-12s %8.1f s   %s\n' "$1" "$(echo "$3 - $2" | bc -l)" "$4" >>"$DEMO_DIR/summary.txt"; }
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
stage train "$t3" "$t4" "$(jq -s '[.[] | select(.train_loss)] | "\(length) steps, last train_loss \(.[-1].train_loss)"' "$DEMO_DIR/run/metrics.jsonl")"
pg-eval "$DEMO_DIR/run/model.safetensors" -d "$DEMO_DIR/shards" --prefix demo -m "$DEMO_DIR/tokenizer.model" \
    --json >"$DEMO_DIR/eval.json"
t5=$(t)
stage eval "$t4" "$t5" "val_bpb $(jq .val_bpb "$DEMO_DIR/eval.json") (float checkpoint)"

pg-tokenize info -m "$DEMO_DIR/tokenizer.model" "$DEMO_DIR"/shards/demo_val_*.bin --json >"$DEMO_DIR/val-info.json"
val_tokens=$(jq .total.tokens "$DEMO_DIR/val-info.json")
val_bytes=$(jq .total.bytes "$DEMO_DIR/val-info.json")

echo
echo "pgolf demo ($DEMO_DIR)"
cat "$DEMO_DIR/summary.txt"
printf '%-12s val: %s tokens, %s bytes (%.3f bytes/token)\n' "shards" "$val_tokens" "$val_bytes" \
    "$(echo "$val_bytes / $val_tokens" | bc -l)"
printf '%-12s %s\n' "val_bpb" "$(jq .val_bpb "$DEMO_DIR/eval.json") ($(jq .tokens "$DEMO_DIR/eval.json") tokens, float checkpoint)"
echo "pending      pg-quantize, pg-pack, pg-ttt: not implemented yet (exit 3), so no artifact bytes yet."
