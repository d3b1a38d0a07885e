#!/bin/sh
# bench-eval-modes.sh: every evaluation mode of pg-eval and pg-ttt on one model and the first
# N val tokens, as a Markdown table (val_bpb, the change against plain pg-eval, seconds).
# Usage: scripts/bench-eval-modes.sh MODEL SHARD_DIR PREFIX TOKENIZER [N (default 32768)]
# The val shard is cut to its first N+1 tokens in a temporary folder (the train shards are not
# read). Every mode runs on the CPU; the LoRA rows take a few minutes at the demo's size.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 MODEL SHARD_DIR PREFIX TOKENIZER [N]" >&2; exit 2; }
model=$1 dir=$2 prefix=$3 tok=$4 n=${5:-32768}
bin=${PG_BIN:-$(dirname "$0")/../bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
val=$(ls "$dir/${prefix}"_val_*.bin | head -n 1)
# the shard header: 256 int32 (magic, version, token count, ...), then uint16 tokens
perl -e 'open I,"<",$ARGV[0] or die "$ARGV[0]: $!"; binmode I; read I,$h,1024; my @hd=unpack("l<256",$h);
    die "$ARGV[0]: fewer than $ARGV[1] tokens\n" if $hd[2] < $ARGV[1]; read I,$t,2*$ARGV[1]; $hd[2]=$ARGV[1];
    open O,">",$ARGV[2] or die; binmode O; print O pack("l<256",@hd), $t; close O or die' \
    "$val" $((n + 1)) "$tmp/${prefix}_val_000000.bin"
D="-d $tmp --prefix $prefix -m $tok"
plain=
row() {
    name=$1
    shift
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    out=$("$@" $D --json -q 2>/dev/null | jq -r .val_bpb)
    secs=$(echo "$(date +%s.%N) - $start" | bc -l)
    [ -n "$plain" ] || plain=$out
    printf '| %s | %.5f | %+.5f | %.1f |\n' "$name" "$out" "$(echo "$out - $plain" | bc -l)" "$secs"
}
echo "| mode | val_bpb | vs plain | seconds |"
echo "|---|---|---|---|"
row "plain (pg-eval)" "$bin/pg-eval" "$model"
row "sliding windows (pg-eval --stride 64)" "$bin/pg-eval" "$model" --stride 64
row "per-document windows, no adapter (pg-ttt --lora --rank 0)" "$bin/pg-ttt" "$model" --lora --rank 0
row "global score-first TTT (pg-ttt --chunk-tokens 4096 --epochs 1)" "$bin/pg-ttt" "$model" --chunk-tokens 4096 --epochs 1
row "  + --control-only (#2086)" "$bin/pg-ttt" "$model" --chunk-tokens 4096 --epochs 1 --control-only
row "  + --polyak 0.998 --temperature 0.98 (#826)" "$bin/pg-ttt" "$model" --chunk-tokens 4096 --epochs 1 --polyak 0.998 \
    --temperature 0.98
row "  + --ngram-mix" "$bin/pg-ttt" "$model" --chunk-tokens 4096 --epochs 1 --ngram-mix
row "LoRA TTT (pg-ttt --lora: rank 96, lr 1e-4, chunk 64)" "$bin/pg-ttt" "$model" --lora
row "LoRA + phased (--phased 3 --prefix-docs 12)" "$bin/pg-ttt" "$model" --lora --phased 3 --prefix-docs 12
row "LoRA, documents batched by length (--doc-batch 16)" "$bin/pg-ttt" "$model" --lora --doc-batch 16
row "tilt (pg-eval --tilt)" "$bin/pg-eval" "$model" --tilt
row "n-gram mixture (pg-eval --ngram-mix)" "$bin/pg-eval" "$model" --ngram-mix
row "tilt + n-gram mixture" "$bin/pg-eval" "$model" --tilt --ngram-mix
row "n-gram mixture, sliding windows (--ngram-mix --stride 64)" "$bin/pg-eval" "$model" --ngram-mix --stride 64
row "#826 cache, NOT compliant (--ngram-cache --non-compliant)" "$bin/pg-eval" "$model" --ngram-cache --non-compliant
