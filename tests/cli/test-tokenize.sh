#!/bin/sh
# test-tokenize.sh: pg-tokenize end to end against SentencePiece's own tools (spm_encode,
# spm_normalize) as the independent reference: ids, shard headers and sizes, decode, info's byte
# count, threads, shard splitting, stdin; then every bad input: exit status, a one-line message
# naming the problem, and no output left behind.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize"
W=$T_TMP
export LC_ALL=C.UTF-8

# ---- a small corpus: the paragraphs of Debian's licence texts, plus hand-made hard cases ----
for f in /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/Artistic \
    /usr/share/common-licenses/MPL-2.0; do
    jq -R -s -c 'split("\n\n")[] | select(test("\\S")) | {text: .}' "$f"
done >"$W/paras.jsonl"
cat >"$W/hard.jsonl" <<'JSON'
{"text": "Unicode: caf\u00e9 na\u00efve \u00fcber \u65e5\u672c\u8a9e \ud83d\ude42 \u2014 dash"}
{"text": "Digits 1234567890 and 3.14159 split one by one"}
{"text": "NFKC folds \ufb01 and \u00bd and \uff21\uff22\uff23 full width"}
{"text": "  leading and trailing spaces  "}
{"text": "tabs\tand\nnewlines\n\nbecome spaces"}
{"text": ""}
{"text": "rare \u16a0\u16a2\u16a6 runes fall back to bytes"}
{"text": "combining: e\u0301 e \u0301x a \u0308b x\u00a0y (nbsp) a  b a \n b a\r\nb word.\nNext\tTab 1 2 3 don't \u201cquoted\u201d words \u00b4 \u2026 end "}
{"text": "repeat repeat repeat, the the the. The The the-the the_the (the) [the] {the} the; the: the! the? the."}
JSON
cat "$W/hard.jsonl" "$W/paras.jsonl" >"$W/docs.jsonl"
ndocs=$(wc -l <"$W/docs.jsonl")
check "corpus built ($ndocs documents)" test "$ndocs" -gt 100

# ---- train ----
check "train: vocab 512" "$TOK" train -q -i "$W/docs.jsonl" -o "$W/m.model" --vocab 512 --threads 2
"$TOK" info -m "$W/m.model" --json >"$W/info.json"
check "info: vocab 512" test "$(jq .vocab "$W/info.json")" = 512
check "info: ids pad 0 bos 1 eos 2 unk 3" test "$(jq -c '[.ids.pad,.ids.bos,.ids.eos,.ids.unk]' "$W/info.json")" = "[0,1,2,3]"
check "info: 256 byte pieces" test "$(jq .pieces.byte "$W/info.json")" = 256
# ids 4..259 are <0x00>..<0xFF>, as in parameter-golf's tokenizers
spm_export_vocab --model="$W/m.model" 2>/dev/null | cut -f1 >"$W/vocab.txt"
check "vocab: id 4 is <0x00>, id 259 is <0xFF>" test "$(sed -n 5p "$W/vocab.txt")$(sed -n 260p "$W/vocab.txt")" = "<0x00><0xFF>"

# ---- encode, and compare with spm_encode document by document ----
check "encode: 2 threads" "$TOK" encode -q -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/s2" --val-docs 10 --threads 2
check "encode: 1 thread" "$TOK" encode -q -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/s1" --val-docs 10 --threads 1
check "threads 1 and 2 give identical val shards" cmp -s "$W/s1/fineweb_val_000000.bin" "$W/s2/fineweb_val_000000.bin"
check "threads 1 and 2 give identical train shards" cmp -s "$W/s1/fineweb_train_000000.bin" "$W/s2/fineweb_train_000000.bin"
check "encode without the word cache (PG_TOK_NO_WORD_CACHE=1)" env PG_TOK_NO_WORD_CACHE=1 "$TOK" encode -q \
    -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/plain" --val-docs 10
check "the word cache changes no id" sh -c "cmp -s \"$W/s2/fineweb_val_000000.bin\" \"$W/plain/fineweb_val_000000.bin\" \
    && cmp -s \"$W/s2/fineweb_train_000000.bin\" \"$W/plain/fineweb_train_000000.bin\""
check "info: the word cache is on for this model" test "$(jq .word_cache "$W/info.json")" = true

# nmt_nfkc turns newlines into spaces, so a document's line for the spm tools is its text with
# newlines as spaces.
jq -r '.text | split("\n") | join(" ")' "$W/docs.jsonl" >"$W/lines.txt"
spm_encode --model="$W/m.model" --output_format=id <"$W/lines.txt" 2>/dev/null |
    awk '{print 1; for (i = 1; i <= NF; i++) print $i}' >"$W/want.ids"
tokens_of() { od -An -v -tu2 -w2 -j1024 "$1" | tr -d ' '; }
{ tokens_of "$W/s2/fineweb_val_000000.bin"; tokens_of "$W/s2/fineweb_train_000000.bin"; } >"$W/got.ids"
check "ids equal spm_encode's, BOS before each document ($(wc -l <"$W/want.ids") tokens)" cmp -s "$W/want.ids" "$W/got.ids"
check "val holds the first 10 documents" test "$(tokens_of "$W/s2/fineweb_val_000000.bin" | grep -cx 1)" = 10

# headers and sizes, by hand
for f in "$W/s2/fineweb_val_000000.bin" "$W/s2/fineweb_train_000000.bin"; do
    hdr=$(od -An -v -tu4 -N12 "$f" | tr -s ' ' | sed 's/^ //')
    n=$(tokens_of "$f" | wc -l)
    check "$(basename "$f"): header '20240520 1 $n'" test "$hdr" = "20240520 1 $n"
    check "$(basename "$f"): size 1024 + 2*$n" test "$(stat -c %s "$f")" = $((1024 + 2 * n))
    check "$(basename "$f"): reserved header words zero" test "$(od -An -v -tu4 -j12 -N1012 "$f" | tr -d ' 0\n')" = ""
done

# ---- decode gives the normalized text ----
spm_normalize --model="$W/m.model" <"$W/lines.txt" 2>/dev/null >"$W/normalized.txt"
"$TOK" decode -m "$W/m.model" "$W/s2/fineweb_val_000000.bin" "$W/s2/fineweb_train_000000.bin" >"$W/decoded.txt"
check "decode equals spm_normalize's text, document per line" cmp -s "$W/normalized.txt" "$W/decoded.txt"
"$TOK" decode -m "$W/m.model" -o "$W/decoded2.txt" "$W/s2/fineweb_val_000000.bin" "$W/s2/fineweb_train_000000.bin"
check "decode -o FILE writes the same" cmp -s "$W/decoded.txt" "$W/decoded2.txt"

# ---- info's byte count equals the normalized text's UTF-8 bytes ----
want_bytes=$(LC_ALL=C awk '{n += length($0)} END {print n}' "$W/normalized.txt")
"$TOK" info -m "$W/m.model" --json "$W/s2/fineweb_val_000000.bin" "$W/s2/fineweb_train_000000.bin" >"$W/sinfo.json"
check "info: bytes $(jq .total.bytes "$W/sinfo.json") = normalized UTF-8 bytes $want_bytes" \
    test "$(jq .total.bytes "$W/sinfo.json")" = "$want_bytes"
check "info: docs = $ndocs" test "$(jq .total.docs "$W/sinfo.json")" = "$ndocs"
check "info: tokens = $(wc -l <"$W/want.ids")" test "$(jq .total.tokens "$W/sinfo.json")" = "$(wc -l <"$W/want.ids")"

# ---- shard splitting, stdin, prefix ----
check "encode: 1000-token shards from stdin" sh -c "\"$TOK\" encode -q -m \"$W/m.model\" -i - -o \"$W/small\" \
    --prefix tiny --val-docs 10 --shard-tokens 1000 <\"$W/docs.jsonl\""
nsh=$(ls "$W/small"/tiny_train_*.bin | wc -l)
total=$(tokens_of "$W/s2/fineweb_train_000000.bin" | wc -l)
check "train split into ceil($total/1000) = $nsh shards" test "$nsh" = $(((total + 999) / 1000))
for f in "$W/small"/tiny_train_*.bin; do tokens_of "$f"; done >"$W/small.ids"
tokens_of "$W/s2/fineweb_train_000000.bin" >"$W/one.ids"
check "the small shards concatenate to the single shard" cmp -s "$W/small.ids" "$W/one.ids"
check "every shard but the last holds exactly 1000 tokens" test "$(ls "$W/small"/tiny_train_*.bin | head -n -1 |
    xargs -n1 stat -c %s | sort -u)" = 3024
check "no temporary file left" test -z "$(ls -A "$W/small" | grep tmp)"

# ---- --text: one document per file ----
printf 'Hello world.\nSecond line.' >"$W/a.txt"
printf 'Another document, 42.' >"$W/b.txt"
check "encode --text" "$TOK" encode -q --text -m "$W/m.model" -o "$W/txt" --val-docs 0 "$W/a.txt" "$W/b.txt"
check "--text: two documents" test "$(tokens_of "$W/txt/fineweb_train_000000.bin" | grep -cx 1)" = 2
check "--text: no val shard when --val-docs 0" test ! -e "$W/txt/fineweb_val_000000.bin"

# ---- bad input: clean failure, nothing left behind ----
expect_fail "train: missing input" 1 "nope.jsonl" "$TOK" train -i "$W/nope.jsonl" -o "$W/x.model" --vocab 300
check "train: no model left after failure" test ! -e "$W/x.model"
: >"$W/empty.jsonl"
expect_fail "train: empty input" 1 "no non-empty document" "$TOK" train -i "$W/empty.jsonl" -o "$W/x.model" --vocab 300
expect_fail "encode: empty input" 1 "no document" "$TOK" encode -m "$W/m.model" -i "$W/empty.jsonl" -o "$W/e1"
check "encode: no shard after empty input" test -z "$(ls -A "$W/e1" 2>/dev/null)"
expect_fail "train: vocab too small" 2 "--vocab 200 is out of range" "$TOK" train -i "$W/docs.jsonl" -o "$W/x.model" --vocab 200
expect_fail "train: vocab not a number" 2 "--vocab: '5x'" "$TOK" train -i "$W/docs.jsonl" -o "$W/x.model" --vocab 5x
printf '{"text": "fine"}\n{"text": "broken\n' >"$W/badjson.jsonl"
expect_fail "encode: invalid JSON line" 1 "badjson.jsonl:2: invalid JSON" \
    "$TOK" encode -m "$W/m.model" -i "$W/badjson.jsonl" -o "$W/e2"
check "encode: no shard after invalid JSON" test -z "$(ls -A "$W/e2" 2>/dev/null)"
printf '{"text": "caf\351"}\n' >"$W/latin1.jsonl"
expect_fail "encode: invalid UTF-8 (JSONL)" 1 "latin1.jsonl:1" "$TOK" encode -m "$W/m.model" -i "$W/latin1.jsonl" -o "$W/e3"
printf 'caf\351' >"$W/latin1.txt"
expect_fail "encode: invalid UTF-8 (--text)" 1 "latin1.txt: invalid UTF-8 at byte offset 3" \
    "$TOK" encode --text -m "$W/m.model" -i "$W/latin1.txt" -o "$W/e4"
expect_fail "train: invalid UTF-8 (--text)" 1 "invalid UTF-8" "$TOK" train --text -i "$W/latin1.txt" -o "$W/x.model" --vocab 300
expect_fail "train: every document longer than --max-sentence-length" 1 "longer than --max-sentence-length 5" \
    "$TOK" train -i "$W/docs.jsonl" -o "$W/x.model" --vocab 300 --max-sentence-length 5
check "no model left after the failures" test ! -e "$W/x.model"
expect_fail "encode: missing model" 1 "nope.model" "$TOK" encode -m "$W/nope.model" -i "$W/docs.jsonl" -o "$W/e5"
expect_fail "encode: a model that is not one" 1 "not a SentencePiece model" \
    "$TOK" encode -m "$W/docs.jsonl" -i "$W/docs.jsonl" -o "$W/e5"
expect_fail "encode: existing shards need --force" 1 "--force" \
    "$TOK" encode -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/small" --prefix tiny
# --force replaces, and removes the now-stale higher-numbered shards
check "encode --force" "$TOK" encode -q -f -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/small" --prefix tiny --val-docs 10
check "--force: stale shards removed" test "$(ls "$W/small" | tr '\n' ' ')" = "tiny_train_000000.bin tiny_val_000000.bin "

cp "$W/s2/fineweb_val_000000.bin" "$W/badmagic.bin"
printf '\000' | dd of="$W/badmagic.bin" bs=1 seek=0 conv=notrunc 2>/dev/null
expect_fail "decode: bad magic" 1 "badmagic.bin: not a token shard: magic" "$TOK" decode -m "$W/m.model" "$W/badmagic.bin"
expect_fail "info: bad magic" 1 "magic" "$TOK" info -m "$W/m.model" "$W/badmagic.bin"
head -c 2000 "$W/s2/fineweb_train_000000.bin" >"$W/trunc.bin"
expect_fail "decode: truncated shard" 1 "trunc.bin: size 2000 disagrees" "$TOK" decode -m "$W/m.model" "$W/trunc.bin"
expect_fail "info: truncated shard" 1 "truncated" "$TOK" info -m "$W/m.model" "$W/trunc.bin"
cp "$W/s2/fineweb_val_000000.bin" "$W/badver.bin"
printf '\002' | dd of="$W/badver.bin" bs=1 seek=4 conv=notrunc 2>/dev/null
expect_fail "decode: wrong version" 1 "unsupported shard version 2" "$TOK" decode -m "$W/m.model" "$W/badver.bin"
expect_fail "decode -o: no output left after failure" 1 "magic" \
    "$TOK" decode -m "$W/m.model" -o "$W/dec.txt" "$W/badmagic.bin"
check "decode: no text file left" test ! -e "$W/dec.txt"

expect_fail "no subcommand" 2 "no subcommand" "$TOK"
expect_fail "unknown subcommand" 2 "unknown subcommand 'frobnicate'" "$TOK" frobnicate
expect_fail "unknown option" 2 "unrecognized option" "$TOK" encode --frobnicate
expect_fail "encode without -o" 2 "no output folder" "$TOK" encode -m "$W/m.model" -i "$W/docs.jsonl"
check "--help exits 0 and prints usage" sh -c "\"$TOK\" --help | grep -q '^Usage: pg-tokenize'"
check "--version" sh -c "\"$TOK\" --version | grep -q 'pgolf'"

# ---- progress: on with --progress (stderr is not a terminal here), off by default and with -q ----
"$TOK" encode --progress -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/p1" 2>"$W/p1.err" >/dev/null
check "--progress draws done/total, rate and ETA on stderr" grep -q "encoding .*/.* B .*%.* B/s ETA" "$W/p1.err"
"$TOK" encode -q -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/p2" 2>"$W/p2.err" >/dev/null
check "-q prints nothing" test ! -s "$W/p2.err"
"$TOK" encode -m "$W/m.model" -i "$W/docs.jsonl" -o "$W/p3" 2>"$W/p3.err" >/dev/null
check "no progress line when stderr is not a terminal" sh -c "! grep -q ETA \"$W/p3.err\""

# ---- an interrupted encode leaves no shard and no temporary ----
mkfifo "$W/fifo"
( head -c 8000000 /dev/zero | tr '\0' 'a' | fold -w 100 | sed 's/.*/{"text": "& b"}/' ; sleep 30 ) >"$W/fifo" &
feeder=$!
"$TOK" encode -q -m "$W/m.model" -i "$W/fifo" -o "$W/intr" --threads 1 &
enc=$!
# wait until the first batch is written (a temporary shard exists), then interrupt
i=0
while [ $i -lt 100 ] && [ -z "$(ls -A "$W/intr" 2>/dev/null)" ]; do sleep 0.1; i=$((i + 1)); done
check "interrupt: a temporary shard existed while encoding" test -n "$(ls -A "$W/intr" 2>/dev/null)"
kill -TERM $enc
wait $enc
st=$?
kill $feeder 2>/dev/null
check "interrupt: died of SIGTERM (status $st)" test "$st" -eq 143
check "interrupt: nothing left in the output folder" test -z "$(ls -A "$W/intr")"

finish
