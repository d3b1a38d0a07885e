#!/bin/sh
# bench-tokenize.sh [DOCS.jsonl]: encode speed of pg-tokenize against SentencePiece's own
# spm_encode on the same documents (default: the demo corpus, built if missing).
#
# Prints MB/s of document text (the bytes of spm_encode's one-document-per-line input, so both
# sides are measured on the same bytes; the JSONL framing is not counted) for
# pg-tokenize encode with 1 and 2 threads and for spm_encode, the ratios, and the peak RSS of
# each run on the whole input and on its first half (memory must not grow with the input).
# Best of REPS runs (default 2). Targets: 1 thread >= spm_encode, 2 threads >= 1.7x spm_encode.
set -eu
cd "$(dirname "$0")/.."
docs=${1:-data/corpus/docs.jsonl}
reps=${REPS:-2}
work=build/bench-tokenize
mkdir -p "$work"
[ -f "$docs" ] || sh scripts/fetch-corpus.sh
[ -x bin/pg-tokenize ] || make -s bin/pg-tokenize
export LC_ALL=C.UTF-8

model=$work/sp1024.model
if [ ! -f "$model" ] || [ "$docs" -nt "$model" ]; then
    echo "training a 1024-piece tokenizer on $docs ..." >&2
    bin/pg-tokenize train -q -i "$docs" -o "$model" --vocab 1024 --max-sentence-length 16384 \
        --input-sentence-size 100000
fi
# spm_encode reads lines: the same documents, newlines as spaces (nmt_nfkc maps them so anyway).
jq -r '.text | split("\n") | join(" ")' "$docs" >"$work/lines.txt"
half=$(( $(wc -l <"$docs") / 2 ))
head -n "$half" "$docs" >"$work/half.jsonl"
cat "$docs" "$docs" >"$work/double.jsonl"
jbytes=$(stat -c %s "$docs")
tbytes=$(stat -c %s "$work/lines.txt")

# run NAME BYTES CMD...: best wall time of $reps runs; sets mbs (MB/s) and rss (peak KiB, last run)
run() {
    name=$1 bytes=$2
    shift 2
    best=""
    i=0
    while [ $i -lt "$reps" ]; do
        /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        t=$(cut -d' ' -f1 "$work/time")
        rss=$(cut -d' ' -f2 "$work/time")
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
        i=$((i + 1))
    done
    mbs=$(echo "scale=2; $bytes / 1000000 / $best" | bc -l)
    printf '%-28s %8.2f s %8.2f MB/s  peak RSS %7d KiB\n' "$name" "$best" "$mbs" "$rss"
}

echo "input: $docs, $jbytes bytes JSONL ($tbytes bytes as text lines), $(wc -l <"$docs") documents"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
run "spm_encode (1 thread)" "$tbytes" spm_encode --model="$model" --output_format=id --input="$work/lines.txt"
mbs_spm=$mbs
run "pg-tokenize encode -t 1" "$tbytes" sh -c "rm -rf '$work/out'; bin/pg-tokenize encode -q -m '$model' -i '$docs' -o '$work/out' --val-docs 0 --threads 1"
mbs_1=$mbs
run "pg-tokenize encode -t 2" "$tbytes" sh -c "rm -rf '$work/out'; bin/pg-tokenize encode -q -m '$model' -i '$docs' -o '$work/out' --val-docs 0 --threads 2"
mbs_2=$mbs
rss_full=$rss
run "pg-tokenize encode -t 2, half" "$((tbytes / 2))" sh -c "rm -rf '$work/out'; bin/pg-tokenize encode -q -m '$model' -i '$work/half.jsonl' -o '$work/out' --val-docs 0 --threads 2"
rss_half=$rss
run "pg-tokenize encode -t 2, 2x" "$((tbytes * 2))" sh -c "rm -rf '$work/out'; bin/pg-tokenize encode -q -m '$model' -i '$work/double.jsonl' -o '$work/out' --val-docs 0 --threads 2"
rss_double=$rss
run "pg-tokenize -t 2, no cache" "$tbytes" sh -c "rm -rf '$work/out'; PG_TOK_NO_WORD_CACHE=1 bin/pg-tokenize encode -q -m '$model' -i '$docs' -o '$work/out' --val-docs 0 --threads 2"
echo "ratio 1 thread / spm_encode:  $(echo "scale=3; $mbs_1 / $mbs_spm" | bc -l)  (target >= 1)"
echo "ratio 2 threads / spm_encode: $(echo "scale=3; $mbs_2 / $mbs_spm" | bc -l)  (target >= 1.7)"
echo "peak RSS half / full / 2x input: $rss_half / $rss_full / $rss_double KiB: 2x / full = $(echo "scale=3; $rss_double / $rss_full" | bc -l)"
echo "  (memory is the per-thread word caches, capped at 2^18 words each, plus bounded batches: it
   follows the vocabulary of the text, not its size)"
rm -rf "$work/out" "$work/double.jsonl"
