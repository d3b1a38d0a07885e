#!/bin/sh
# test-demo-corpus.sh: the issue's "done when" on the demo corpus: pg-tokenize train + encode
# give shards whose ids equal SentencePiece's own encoding of each document (spm_encode), whose
# headers and sizes match the format, that decode turns back into the normalized text
# (spm_normalize), and whose byte count from info matches an independent count; also that the
# word cache and plain SentencePiece give the same bytes. Skips when data/corpus is not built
# (make check builds it unless PG_SKIP_CORPUS=1).
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize"
C=${PG_CORPUS_DIR:-data/corpus}
W=$T_TMP
export LC_ALL=C.UTF-8
if [ ! -f "$C/docs.jsonl" ]; then
    echo "1..0 # SKIP demo corpus not built (scripts/fetch-corpus.sh)"
    exit 0
fi
val_docs=$(sed -n 's/^docs_val=//p' "$C/manifest.txt")
ndocs=$(wc -l <"$C/docs.jsonl")

check "train sp1024 on docs_train.jsonl" "$TOK" train -q -i "$C/docs_train.jsonl" -o "$W/sp.model" --vocab 1024 \
    --max-sentence-length 65536 --input-sentence-size 100000
check "encode docs.jsonl (2 threads)" "$TOK" encode -q -m "$W/sp.model" -i "$C/docs.jsonl" -o "$W/s" --prefix demo \
    --val-docs "$val_docs" --threads 2
check "encode again without the word cache" env PG_TOK_NO_WORD_CACHE=1 "$TOK" encode -q -m "$W/sp.model" \
    -i "$C/docs.jsonl" -o "$W/plain" --prefix demo --val-docs "$val_docs" --threads 2
for f in "$W/s"/demo_*.bin; do
    check "$(basename "$f"): identical with and without the word cache" cmp -s "$f" "$W/plain/$(basename "$f")"
done

# SentencePiece's own tools read one document per line: newlines become spaces (nmt_nfkc maps
# them to spaces anyway). Two halves in parallel to use both cores.
jq -r '.text | split("\n") | join(" ")' "$C/docs.jsonl" >"$W/lines.txt"
half=$(( (ndocs + 1) / 2 ))
head -n "$half" "$W/lines.txt" >"$W/l1"
tail -n +"$((half + 1))" "$W/lines.txt" >"$W/l2"
for p in l1 l2; do
    spm_encode --model="$W/sp.model" --output_format=id <"$W/$p" 2>/dev/null |
        awk '{print 1; for (i = 1; i <= NF; i++) print $i}' >"$W/$p.ids" &
done
wait
cat "$W/l1.ids" "$W/l2.ids" >"$W/want.ids"
tokens_of() { od -An -v -tu2 -w2 -j1024 "$1" | tr -d ' '; }
for f in "$W/s"/demo_val_*.bin "$W/s"/demo_train_*.bin; do tokens_of "$f" | tee "$W/$(basename "$f").ids"; done >"$W/got.ids"
check "ids equal spm_encode's for all $ndocs documents ($(wc -l <"$W/want.ids") tokens)" cmp -s "$W/want.ids" "$W/got.ids"
check "val holds the first $val_docs documents" test "$(for f in "$W/s"/demo_val_*.bin; do tokens_of "$f"; done |
    grep -cx 1)" = "$val_docs"

for f in "$W/s"/demo_*.bin; do
    n=$(wc -l <"$W/$(basename "$f").ids")
    hdr=$(od -An -v -tu4 -N12 "$f" | tr -s ' ' | sed 's/^ //')
    check "$(basename "$f"): header '20240520 1 $n', size 1024 + 2*$n, reserved zero" \
        test "$hdr|$(stat -c %s "$f")|$(od -An -v -tu4 -j12 -N1012 "$f" | tr -d ' 0\n')" = "20240520 1 $n|$((1024 + 2 * n))|"
done

spm_normalize --model="$W/sp.model" <"$W/lines.txt" 2>/dev/null >"$W/normalized.txt"
"$TOK" decode -m "$W/sp.model" "$W/s"/demo_val_*.bin "$W/s"/demo_train_*.bin >"$W/decoded.txt"
check "decode equals spm_normalize's text for every document" cmp -s "$W/normalized.txt" "$W/decoded.txt"

"$TOK" info -m "$W/sp.model" --json "$W/s"/demo_val_*.bin "$W/s"/demo_train_*.bin >"$W/info.json"
want_bytes=$(LC_ALL=C awk '{n += length($0)} END {print n}' "$W/normalized.txt")
check "info bytes $(jq .total.bytes "$W/info.json") = normalized UTF-8 bytes $want_bytes" \
    test "$(jq .total.bytes "$W/info.json")" = "$want_bytes"
check "info docs = $ndocs" test "$(jq .total.docs "$W/info.json")" = "$ndocs"
finish
