#!/bin/sh
# test-fetch-corpus.sh: TAP checks of the demo corpus built by scripts/fetch-corpus.sh.
# Skips (1..0) when data/corpus/docs.jsonl has not been built; building it needs the network.
set -u
cd "$(dirname "$0")/../.." || exit 1
export LC_ALL=C
d=${PG_CORPUS_DIR:-data/corpus}

if [ ! -f "$d/docs.jsonl" ]; then
    echo "1..0 # SKIP corpus not built (run scripts/fetch-corpus.sh)"
    exit 0
fi
command -v jq >/dev/null 2>&1 || { echo "1..0 # SKIP jq not installed"; exit 0; }

n=0 failed=0
check() {   # check NAME COMMAND...: one TAP line from the command's exit status
    name=$1; shift; n=$((n + 1))
    if "$@" >/dev/null 2>&1; then echo "ok $n - $name"; else echo "not ok $n - $name"; failed=$((failed + 1)); fi
}
mval() { sed -n "s/^$1=//p" "$d/manifest.txt"; }
lines() { wc -l < "$1" | tr -d ' '; }

echo "1..9"
check "manifest.txt, docs_val.jsonl and docs_train.jsonl exist" \
    test -f "$d/manifest.txt" -a -f "$d/docs_val.jsonl" -a -f "$d/docs_train.jsonl"
# jq -e fails on the first line that is not JSON or lacks a string "text"
check "every line is a JSON object with a string text field" \
    jq -e -n '[inputs | (type == "object" and (.text | type) == "string")] | all' "$d/docs.jsonl"
check "no document has empty text" \
    jq -e -n '[inputs | .text | length > 0] | all' "$d/docs.jsonl"
check "num_docs matches docs.jsonl" test "$(mval num_docs)" = "$(lines "$d/docs.jsonl")"
check "docs_val matches docs_val.jsonl" test "$(mval docs_val)" = "$(lines "$d/docs_val.jsonl")"
check "bytes matches docs.jsonl" test "$(mval bytes)" = "$(wc -c < "$d/docs.jsonl" | tr -d ' ')"
# shellcheck disable=SC2016  # $1 expands in the inner sh
check "docs_val.jsonl + docs_train.jsonl == docs.jsonl" \
    sh -c 'cat "$1/docs_val.jsonl" "$1/docs_train.jsonl" | cmp -s - "$1/docs.jsonl"' _ "$d"
check "val is 0.5%..3% of the bytes" \
    awk -v v="$(wc -c < "$d/docs_val.jsonl")" -v t="$(wc -c < "$d/docs.jsonl")" \
        'BEGIN { exit !(t > 0 && v * 1000 >= t * 5 && v * 100 <= t * 3) }'
check "sha256 matches the manifest" \
    test "$(mval sha256)" = "$(sha256sum < "$d/docs.jsonl" | cut -d' ' -f1)"

[ $failed = 0 ] || { echo "# $failed of $n failed"; exit 1; }
exit 0
