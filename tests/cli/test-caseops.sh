#!/bin/sh
# test-caseops.sh: CaseOps end to end (spec/techniques.md §1.3): train and encode --caseops on the
# licence texts plus documents full of mixed case and literal operator characters; the tokenizer
# holds the four operators as ids 4-7; decode gives every document back byte for byte; the val
# byte sidecar lines up with the val shards (0 at each BOS) and sums to the val documents' UTF-8
# bytes, counted independently with jq and wc; pg-eval and pg-ttt on a tiny model trained on the
# CaseOps shards charge exactly the sidecar's bytes of the scored targets; a CaseOps tokenizer
# without its sidecar is refused with one line; a malformed token stream fails decode; on the demo
# corpus's val split (when built) the round trip and the sidecar's sum hold too.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" EVAL="$PG_BIN/pg-eval" TTT="$PG_BIN/pg-ttt"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tokens_of() { od -An -v -tu2 -w2 -j1024 "$1" | tr -d ' '; }

# Mixed-case documents first (so they land in val), then the licences.
{
    printf '%s\n' '{"text": "The NASA Launch of iPhone XS; McDonald'"'"'s ABCs. I said: OK, ok, Ok, oK."}'
    printf '%s\n' '{"text": "Literal operators: \ue001\ue002\ue003\ue004 and \ue001Word, CAPS LOCK, x\ue004y"}'
    printf '%s\n' '{"text": "Caf\u00e9 CAF\u00c9 \u65e5\u672c\u8a9e MiXeD CaSe  two  spaces\n\nand lines\tTabs"}'
    licence_docs 5
} >"$W/docs.jsonl"
check "train --caseops (sp512)" "$TOK" train -q --caseops -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512
"$TOK" info -m "$W/sp.model" --json >"$W/info.json"
check "the four operators are user-defined pieces 4-7" test "$(spm_export_vocab --model="$W/sp.model" 2>/dev/null |
    sed -n '5,8p' | cut -f1 | tr -d '\n' | od -An -tx1 | tr -d ' \n')" = "ee8081ee8082ee8083ee8084"
"$TOK" encode -q --json --caseops -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 \
    --shard-tokens 20000 >"$W/enc.json"
check "encode --caseops" test $? = 0
want=$(head -n 30 "$W/docs.jsonl" | jq -j .text | wc -c)
check "the sidecar sums to the val documents' $want UTF-8 bytes (encode's own count: $(jq .caseops.sidecar_bytes "$W/enc.json"))" \
    test "$(jq .caseops.sidecar_bytes "$W/enc.json")" = "$want"
check "no inexact document" test "$(jq .caseops.inexact_docs "$W/enc.json")" = 0
check "info counts the same $want original bytes in the val shards" \
    test "$("$TOK" info -m "$W/sp.model" --json "$W/data"/t_val_[0-9]*.bin | jq .total.bytes)" = "$want"
check "info counts every document's bytes over val and train" \
    test "$("$TOK" info -m "$W/sp.model" --json "$W/data"/t_val_[0-9]*.bin "$W/data"/t_train_*.bin | jq .total.bytes)" = \
    "$(jq -j .text "$W/docs.jsonl" | wc -c)"
for f in "$W/data"/t_val_bytes_*.bin; do tokens_of "$f"; done >"$W/side.txt"
for f in "$W/data"/t_val_[0-9]*.bin; do tokens_of "$f"; done >"$W/val.txt"
check "sidecar files sum to $want bytes" test "$(awk '{s += $1} END {print s}' "$W/side.txt")" = "$want"
check "sidecar and val shards have equal lengths ($(wc -l <"$W/val.txt") tokens)" \
    test "$(wc -l <"$W/side.txt")" = "$(wc -l <"$W/val.txt")"
check "the sidecar is 0 at every BOS" test "$(paste "$W/val.txt" "$W/side.txt" | awk '$1 == 1 && $2 != 0' | wc -l)" = 0
check "sidecar shards pair with val shards" test "$(ls "$W/data"/t_val_bytes_*.bin | wc -l)" = "$(ls "$W/data"/t_val_[0-9]*.bin | wc -l)"

jq -r .text "$W/docs.jsonl" >"$W/want.txt"
"$TOK" decode -m "$W/sp.model" "$W/data"/t_val_[0-9]*.bin "$W/data"/t_train_*.bin >"$W/got.txt"
check "decode gives every document back byte for byte" cmp -s "$W/want.txt" "$W/got.txt"
check "the shards hold CaseOps operators (ids 4-7)" test "$(awk '$1 >= 4 && $1 <= 7' "$W/val.txt" | wc -l)" -gt 10

# ---- a malformed stream: a val shard with TITLE (id 4) before a space-led piece ----
cp "$W/data/t_val_000000.bin" "$W/bad.bin"
n=$(wc -l <"$W/val.txt")
pos=$(awk '$1 == 4 {print NR; exit}' "$W/val.txt") # the first TITLE, 1-based
# The token after it becomes id 4 too: TITLE TITLE is two operators in a row.
printf '\004\000' | dd of="$W/bad.bin" bs=1 seek=$((1024 + 2 * pos)) conv=notrunc 2>/dev/null
expect_fail "decode rejects a malformed CaseOps stream" 1 "malformed CaseOps stream" \
    "$TOK" decode -m "$W/sp.model" -o "$W/bad.txt" "$W/bad.bin"
check "no text left behind by the failed decode" test ! -e "$W/bad.txt"

# ---- scoring counts the sidecar's bytes ----
tiny_train "$W" -o "$W/run"
M="$W/run/model.safetensors"
D="-d $W/data --prefix t -m $W/sp.model"
# shellcheck disable=SC2086
"$EVAL" "$M" $D --json >"$W/eval.json" || exit 1
usable=$(( (n - 1) / 32 * 32 ))
side_bytes=$(awk -v u="$usable" 'NR >= 2 && NR <= u + 1 {s += $1} END {print s}' "$W/side.txt")
check "pg-eval charges the sidecar's bytes of targets 1..$usable ($side_bytes)" test "$(jq .bytes "$W/eval.json")" = "$side_bytes"
check "val_bpb = val_loss * tokens / (ln 2 * sidecar bytes)" test "$(jq -r '(.val_loss * .tokens / (0.6931471805599453 * .bytes) - .val_bpb) | fabs < 1e-7' "$W/eval.json")" = true
# shellcheck disable=SC2086
"$TTT" "$M" $D --epochs 0 --json >"$W/ttt.json" || exit 1
check "pg-ttt charges the same bytes" test "$(jq .bytes "$W/ttt.json")" = "$side_bytes"
mkdir "$W/noside" && cp "$W/data"/t_val_[0-9]*.bin "$W/noside/"
expect_fail "pg-eval refuses a CaseOps tokenizer without the sidecar" 1 "needs the val byte sidecar" \
    "$EVAL" "$M" -d "$W/noside" --prefix t -m "$W/sp.model"
expect_fail "pg-ttt refuses it too" 1 "needs the val byte sidecar" \
    "$TTT" "$M" -d "$W/noside" --prefix t -m "$W/sp.model" --epochs 0
cp "$W/data"/t_val_bytes_000000.bin "$W/noside/"
printf '\007\000' | dd of="$W/noside/t_val_bytes_000000.bin" bs=1 seek=1024 conv=notrunc 2>/dev/null
expect_fail "a sidecar that gives bytes to a BOS is refused" 1 "BOS" \
    "$EVAL" "$M" -d "$W/noside" --prefix t -m "$W/sp.model"

# ---- the demo corpus's val split, when it is built (make check builds it) ----
C=${PG_CORPUS_DIR:-data/corpus}
if [ -f "$C/docs_val.jsonl" ]; then
    nval=$(wc -l <"$C/docs_val.jsonl")
    "$TOK" train -q --caseops -i "$C/docs_val.jsonl" -o "$W/csp.model" --vocab 1024 --max-sentence-length 65536 &&
        "$TOK" encode -q --json --caseops -m "$W/csp.model" -i "$C/docs_val.jsonl" -o "$W/corpus" --prefix c \
            --val-docs "$nval" >"$W/cenc.json" 2>/dev/null
    check "demo corpus: train and encode --caseops" test $? = 0
    want=$(jq -j .text "$C/docs_val.jsonl" | wc -c)
    check "demo corpus: the sidecar sums to the $nval val documents' $want bytes" \
        test "$(for f in "$W/corpus"/c_val_bytes_*.bin; do tokens_of "$f"; done | awk '{s += $1} END {print s}')" = "$want"
    "$TOK" decode -m "$W/csp.model" "$W/corpus"/c_val_[0-9]*.bin >"$W/cgot.txt"
    check "demo corpus: decode(encode(s)) = s for every val document" sh -c 'jq -r .text "$1" | cmp -s - "$2"' sh \
        "$C/docs_val.jsonl" "$W/cgot.txt"
else
    ok "# SKIP demo corpus not built (scripts/fetch-corpus.sh)"
fi
finish
