# lib.sh: TAP helpers for the shell tests (sourced). ok/fail print TAP lines; finish prints the
# plan and sets the exit status. PG_BIN points at the pg-* binaries.
cd "$(dirname "$0")/../.." || exit 2
PG_BIN=${PG_BIN:-$PWD/bin}
T_N=0
T_FAILED=0
ok() { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
not_ok() { T_N=$((T_N + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_N - $*"; }
# check "name" command...: passes when the command succeeds
check() { name=$1; shift; if "$@"; then ok "$name"; else not_ok "$name"; fi; }
# expect_fail NAME STATUS NEEDLE CMD...: the command exits with STATUS and its stderr's first line
# contains NEEDLE (and, for runtime errors, stderr is that one line).
expect_fail() {
    name=$1 want=$2 needle=$3
    shift 3
    "$@" >"$T_TMP/out" 2>"$T_TMP/err"
    got=$?
    first=$(head -n 1 "$T_TMP/err")
    lines=$(wc -l <"$T_TMP/err")
    if [ "$got" -ne "$want" ]; then
        not_ok "$name: exit $got, want $want"; sed 's/^/#   /' "$T_TMP/err"
    elif ! printf '%s' "$first" | grep -qF -- "$needle"; then
        not_ok "$name: stderr lacks '$needle'"; sed 's/^/#   /' "$T_TMP/err"
    elif [ "$want" -eq 1 ] && [ "$lines" -ne 1 ]; then
        not_ok "$name: $lines lines on stderr, want 1"; sed 's/^/#   /' "$T_TMP/err"
    else
        ok "$name (exit $want: $first)"
    fi
}
# quiet CMD...: CMD with its standard output dropped (a check that only its status decides)
quiet() { "$@" >/dev/null; }
# jqe ARGS: jq -e, its output dropped (a check on a JSON file, passing when the filter is true)
jqe() { jq -e "$@" >/dev/null; }
# licence_docs N: the first N (1..5) of Debian's licence texts (GPL-3, Apache-2.0, GPL-2, MPL-2.0,
# LGPL-2.1), one paragraph per JSONL document on stdout: the tiny corpus of the CLI tests.
licence_docs() {
    for f in GPL-3 Apache-2.0 GPL-2 MPL-2.0 LGPL-2.1; do echo "/usr/share/common-licenses/$f"; done | head -n "$1" |
        while read -r f; do jq -R -s -c 'split("\n\n")[] | select(test("\\S")) | {text: .}' "$f"; done
}
# tiny_model DIR [pg-train flags]: the quantization tests' model: the 5 licence texts, an sp512
# tokenizer (DIR/sp.model), shards with prefix t (DIR/data, 30 val documents) and a 3 x 32 model
# trained 40 steps (DIR/run/model.safetensors; more flags go to pg-train, a later one winning).
# Exits the test when a step fails.
tiny_model() {
    tm_dir=$1
    shift
    licence_docs 5 >"$tm_dir/docs.jsonl"
    "$PG_BIN/pg-tokenize" train -q -i "$tm_dir/docs.jsonl" -o "$tm_dir/sp.model" --vocab 512 || exit 1
    "$PG_BIN/pg-tokenize" encode -q -m "$tm_dir/sp.model" -i "$tm_dir/docs.jsonl" -o "$tm_dir/data" --prefix t \
        --val-docs 30 --shard-tokens 20000 || exit 1
    tiny_train "$tm_dir" -o "$tm_dir/run" "$@"
}
# tiny_train DIR [pg-train flags]: trains tiny_model's model again on DIR's data, with other flags
tiny_train() {
    tt_dir=$1
    shift
    "$PG_BIN/pg-train" -q -d "$tt_dir/data" --prefix t -m "$tt_dir/sp.model" --layers 3 --dim 32 --heads 4 \
        --kv-heads 2 --vocab 512 --seq-len 32 --batch-tokens 256 --grad-accum 2 --max-wallclock 0 --warmdown-iters 5 \
        --val-batch-tokens 256 --iterations 40 --val-every 0 "$@" || exit 1
}
# need_torch: skip the whole test (TAP "1..0 # SKIP") unless Debian's python3-torch and numpy are
# installed (make check does not install them: about 1 GB); sets PY and REF (pg_torch.py) if so.
need_torch() {
    PY=/usr/bin/python3
    if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
        echo "1..0 # SKIP python3-torch not installed (apt-get install python3-torch python3-numpy)"
        exit 0
    fi
    REF="$PY tests/torch/pg_torch.py"
}
finish() { echo "1..$T_N"; [ "$T_FAILED" -eq 0 ]; }
T_TMP=$(mktemp -d /tmp/pg-cli-XXXXXX)
trap 'rm -rf "$T_TMP"' EXIT
