#!/bin/sh
# test-pack.sh: pg-pack end to end on a tiny trained, quantized model: every codec and the
# per-group modes (sorted rows or not, and --shuffle) give back the identical .pgq (pg-pack -d) and the same val_bpb in pg-eval as
# the .pgq itself (and pg-ttt reads artifacts too); the brotli stream has the size the brotli
# program gives for the same bytes and settings; -l lists the streams; the budget and --code
# arithmetic; a damaged or truncated artifact is refused with one line naming it; missing
# lrzip is exit 3; usage errors exit 2.
. "$(dirname "$0")/lib.sh"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval" Q="$PG_BIN/pg-quantize"
P="$PG_BIN/pg-pack" TTT="$PG_BIN/pg-ttt"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

licence_docs 2 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 384 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 20 || exit 1
"$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" --layers 3 --dim 32 --heads 4 --kv-heads 2 --vocab 384 \
    --seq-len 32 --batch-tokens 256 --max-wallclock 0 --warmdown-iters 5 --val-batch-tokens 256 \
    -o "$W/run" --iterations 20 --val-every 0 || exit 1
"$Q" -q "$W/run/model.safetensors" -o "$W/m.pgq" --scheme int6 --keep-float 100 -m "$W/sp.model" >/dev/null || exit 1
check "a tiny int6 .pgq" test -s "$W/m.pgq"
pgq_bytes=$(wc -c <"$W/m.pgq")
evalm() { "$EVAL" -q "$1" -d "$W/data" --prefix t -m "$W/sp.model"; }
want=$(evalm "$W/m.pgq")

have_lrzip=0
command -v lrzip >/dev/null 2>&1 && have_lrzip=1
for mode in zlib lzma brotli "brotli shuffle" lrzip "lrzip brotli" pgac "pgac lzma" "pgac reorder=none" \
    "lrzip brotli reorder=all"; do
    case "$mode" in *lrzip*) [ $have_lrzip = 1 ] || { ok "$mode # SKIP lrzip not installed"; continue; } ;; esac
    flags=$(printf -- '--%s ' $mode | sed 's/=/ /')
    tag=$(echo "$mode" | tr ' =' '+-')
    # shellcheck disable=SC2086
    "$P" "$W/m.pgq" -o "$W/$tag.pga" $flags --json >"$W/$tag.json" || { not_ok "pg-pack $flags"; continue; }
    check "$tag: artifact_bytes in the JSON is the file's size" \
        test "$(jq .artifact_bytes "$W/$tag.json")" = "$(wc -c <"$W/$tag.pga")"
    check "$tag: smaller than the .pgq ($(wc -c <"$W/$tag.pga") < $pgq_bytes)" test "$(wc -c <"$W/$tag.pga")" -lt "$pgq_bytes"
    "$P" -q -d "$W/$tag.pga" -o "$W/$tag.back.pgq"
    check "$tag: pg-pack -d gives back the identical .pgq" cmp -s "$W/m.pgq" "$W/$tag.back.pgq"
    got=$(evalm "$W/$tag.pga")
    check "$tag: pg-eval of the artifact equals pg-eval of the .pgq ($got)" test "$got" = "$want"
done

# the brotli stream: the same size as the brotli program's output for the same settings
if command -v brotli >/dev/null 2>&1; then
    ours=$("$P" -l --json "$W/brotli.pga" | jq '.streams[0].packed_bytes')
    theirs=$(brotli -c -q 11 -w 24 "$W/m.pgq" | wc -c)
    # the brotli program adds nothing around the stream: the sizes agree exactly
    check "brotli stream $ours bytes = brotli -q 11 -w 24 of the same file ($theirs)" test "$ours" = "$theirs"
fi

# listing
"$P" -l "$W/zlib.pga" >"$W/list"
check "-l lists the single stream pgq with codec zlib" grep -Eq '^pgq +zlib +none' "$W/list"
if [ $have_lrzip = 1 ]; then
    "$P" -l "$W/lrzip+brotli.pga" >"$W/list2"
    for s in cuts rest tok_emb attn.c_q attn.c_k attn.c_v attn.proj mlp.fc mlp.proj; do
        grep -Eq "^$s " "$W/list2" || not_ok "per-group -l lacks stream $s"
    done
    check "per-group -l: cuts and rest brotli, the seven role groups lrzip transposed" \
        test "$(grep -Ec '^(cuts|rest) +brotli' "$W/list2"),$(grep -Ec ' lrzip +transpose' "$W/list2")" = "2,7"
fi

# pgac: -l shows the groups as pgac streams; --codec pgac is --pgac; -v and --json report the
# coder's statistics; the artifact is version 2; the same bytes on every run and thread count
"$P" -l "$W/pgac.pga" >"$W/list3"
check "pgac -l: cuts and rest brotli, the seven role groups pgac untransposed" \
    test "$(grep -Ec '^(cuts|rest) +brotli' "$W/list3"),$(grep -Ec ' pgac +none' "$W/list3")" = "2,7"
check "pgac --reorder none: the artifact is .pga version 2" \
    test "$(od -An -tu4 -j4 -N4 "$W/pgac+reorder-none.pga" | tr -d ' ')" = 2
# --pgac sorts a group's rows only where that pays: each group stream no larger than unsorted
"$P" -l --json "$W/pgac.pga" >"$W/l-sorted.json"
"$P" -l --json "$W/pgac+reorder-none.pga" >"$W/l-plain.json"
check "pgac: every group stream no larger than with --reorder none" test "$(jq -s '[.[0].streams, .[1].streams]
    | [(.[0][] | select(.codec == "pgac")) as $s | (.[1][] | select(.name == $s.name) | .packed_bytes) >= $s.packed_bytes]
    | all' "$W/l-sorted.json" "$W/l-plain.json")" = true
# a perms stream makes the artifact version 3; --shuffle is the shuffle transform
sorted=$(jq '[.streams[] | select(.name == "perms")] | length' "$W/l-sorted.json")
check "pgac: version 3 exactly when a perms stream is there ($sorted)" \
    test "$(od -An -tu4 -j4 -N4 "$W/pgac.pga" | tr -d ' ')" = $((2 + sorted))
check "--brotli --shuffle: one stream, brotli over the shuffle transform" \
    test "$("$P" -l --json "$W/brotli+shuffle.pga" | jq -c '[.streams[] | [.name, .codec, .transform]]')" = '[["pgq","brotli","shuffle"]]'
if [ $have_lrzip = 1 ]; then
    check "--lrzip --brotli: the hot groups sorted, the permutations in stream perms; version 3" \
        test "$("$P" -l --json "$W/lrzip+brotli.pga" | jq '[.streams[].name] | index("perms") != null')",$(od -An -tu4 -j4 -N4 "$W/lrzip+brotli.pga" | tr -d ' ') = true,3
fi
expect_fail "--shuffle in a per-group mode" 2 "--shuffle goes with one codec" "$P" "$W/m.pgq" -o "$W/x.pga" --pgac --shuffle
expect_fail "--reorder with a whole-file codec" 2 "--reorder is for the per-group modes" "$P" "$W/m.pgq" -o "$W/x.pga" \
    --zlib --reorder hot
expect_fail "--reorder with an unknown value" 2 "--reorder: none, hot or all, not 'some'" "$P" "$W/m.pgq" -o "$W/x.pga" \
    --pgac --reorder some
check "pgac: --json reports values and bytes" test "$(jq '.pgac.values > 0 and .pgac.payload_bytes > 0 and .pgac.model_bytes > 0' "$W/pgac.json")" = true
# pgq_bound (scripts/bench-pack.sh's instrument): the order-0 entropy of the same groups, counted
# by other code, and bounds that only add contexts (so cannot exceed it)
"${PG_TESTBIN:-build/tests}/tools/pgq_bound" "$W/m.pgq" >"$W/bound.txt"
check "pgq_bound: its groups' order-0 total is pgac's to a byte, and rank1 <= level <= order0" \
    awk -v o0="$(jq .pgac.order0_bytes "$W/pgac.json")" -v nv="$(jq .pgac.values "$W/pgac.json")" \
    '$1 == "total" { ok = $3 == nv && ($4 - o0) ^ 2 < 1 && $6 <= $5 && $5 <= $4 && $5 > 0 } END { exit !ok }' "$W/bound.txt"
OMP_NUM_THREADS=2 "$P" "$W/m.pgq" -o "$W/pgac2.pga" --codec pgac -v >/dev/null 2>"$W/pgac2.err"
check "--codec pgac with 2 threads: the identical artifact" cmp -s "$W/pgac.pga" "$W/pgac2.pga"
check "-v prints the coder's statistics" grep -q '^pgac: [0-9]* values in [0-9]* bytes of payload; the model' "$W/pgac2.err"
expect_fail "--pgac with --lrzip" 2 "--pgac goes with" "$P" "$W/m.pgq" -o "$W/x.pga" --pgac --lrzip
"$P" -q "$W/m.pgq" -o "$W/best.pga" --best && "$P" -q -d "$W/best.pga" -o "$W/best.pgq"
check "--best: pg-pack -d gives back the identical .pgq" cmp -s "$W/m.pgq" "$W/best.pgq"
check "--best: no larger than --pgac" test "$(wc -c <"$W/best.pga")" -le "$(wc -c <"$W/pgac.pga")"
expect_fail "--best with a codec" 2 "--best chooses the codecs itself" "$P" "$W/m.pgq" -o "$W/x.pga" --best --lzma
expect_fail "--codec with an unknown name" 2 "unknown codec 'zstd'" "$P" "$W/m.pgq" -o "$W/x.pga" --codec zstd

# pg-ttt reads artifacts (through the same loader as pg-eval)
a=$("$TTT" -q "$W/zlib.pga" -d "$W/data" --prefix t -m "$W/sp.model" --epochs 0 --json | jq .val_bpb)
b=$("$TTT" -q "$W/m.pgq" -d "$W/data" --prefix t -m "$W/sp.model" --epochs 0 --json | jq .val_bpb)
check "pg-ttt --epochs 0 scores the artifact as the .pgq ($a)" test "$a" = "$b"

# budget and code bytes
printf 'x%.0s' $(seq 1 1000) >"$W/code.sh"
size=$(wc -c <"$W/zlib.pga")
"$P" -q "$W/m.pgq" -o "$W/z2.pga" --zlib --code "$W/code.sh" --code "$W/code.sh" --json >"$W/b.json"
check "--code twice: total = artifact + 2000 bytes" test "$(jq .total_bytes "$W/b.json")" = "$((size + 2000))"
check "the default budget is 16000000, and it fits" test "$(jq -c '[.budget, .fits]' "$W/b.json")" = "[16000000,true]"
expect_fail "over the budget: exit 1, the overage on one line" 1 "over the budget of $((size - 1)) by 1001 bytes" \
    "$P" -q "$W/m.pgq" -o "$W/z3.pga" --code "$W/code.sh" --budget $((size - 1))
check "the artifact over the budget is written all the same" cmp -s "$W/zlib.pga" "$W/z3.pga"
"$P" "$W/m.pgq" -o "$W/z4.pga" --budget $size >"$W/out4"
check "exactly at the budget fits, spare 0" grep -q 'fits, spare 0$' "$W/out4"

# --code-self: the source that builds pg-eval and pg-ttt, compressed, counted as code
SRC=$(cd "$(dirname "$0")/../.." && pwd)
"$P" "$W/m.pgq" -o "$W/cs.pga" --zlib --code-self "$SRC" --code "$W/code.sh" --json >"$W/cs.json" 2>"$W/cs.err"
# the lib/ sources the scorers do not link are left out (lib/pack_code.c's list)
unlinked=$(echo calib calib_self dist docs gptq pack_code qfit qsearch quant runlock tokenize_encode tokenize_shards \
    tokenize_train train)
counted="Makefile scripts/probe-features.sh cmd/pg-eval.c cmd/pg-ttt.c cmd/scoring.c cmd/scoring.h cmd/cli.c cmd/cli.h
    $(cd "$SRC" && for f in lib/*.c; do case " $unlinked " in *" $(basename "$f" .c) "*) ;; *) echo "$f" ;; esac; done
    echo lib/*.h kernels/cpu/*.c kernels/cpu/*.h $(ls lib/*.cc 2>/dev/null))"
files=$(echo $counted | wc -w)
raw=$(cd "$SRC" && cat $counted | wc -c)
cs=$(sed -n 's/.* stripped, \([0-9]*\) bytes in xz: counted as code$/\1/p' "$W/cs.err")
check "--code-self: $files files of $raw bytes, as the shell lists them" grep -q ": $files source files, $raw bytes," "$W/cs.err"
check "--code-self: the xz bytes ($cs) are fewer than the raw ones and close to xz -9e's" \
    test -n "$cs" -a "$cs" -lt "$raw" -a "$cs" -gt $(( $(cd "$SRC" && cat Makefile lib/*.c | xz -9e | wc -c) / 2 ))
check "--code-self plus --code: code_bytes = $cs + 1000" test "$(jq .code_bytes "$W/cs.json")" = "$((cs + 1000))"
expect_fail "--code-self of a folder that is not a pgolf tree" 1 "is $W a pgolf source tree" "$P" "$W/m.pgq" -o "$W/x.pga" --code-self "$W"
expect_fail "--code-out without --code-self" 2 "give --code-self DIR" "$P" "$W/m.pgq" -o "$W/x.pga" --code-out "$W/c.xz"
expect_fail "--code-out to standard output" 2 "--code-out needs a file" "$P" "$W/m.pgq" -o "$W/x.pga" \
    --code-self "$SRC" --code-out -
expect_fail "--code-out into a folder that does not exist" 1 "$W/none/c.xz" "$P" "$W/m.pgq" -o "$W/x.pga" \
    --code-self "$SRC" --code-out "$W/none/c.xz"
# --code-out: the archive counted; unpacked, it builds pg-eval and pg-ttt (CPU backend), which
# score as the real ones
"$P" -q "$W/m.pgq" -o "$W/cs2.pga" --zlib --code-self "$SRC" --code-out "$W/code.xz"
check "--code-out writes the $cs bytes counted" test "$(wc -c <"$W/code.xz")" = "$cs"
sh "$SRC/scripts/code-unpack.sh" "$W/code.xz" "$W/src"
check "code-unpack.sh gives back the $files files" test "$(cd "$W/src" && find . -type f | wc -l)" = "$files"
check "the Makefile counted is the real one without its comment and empty lines" \
    sh -c 'grep -v "^[[:space:]]*#" "$1/Makefile" | grep -v "^[[:space:]]*$" | cmp -s - "$2/Makefile"' \
    sh "$SRC" "$W/src"
check "the C files counted have no comment left where the real ones have" \
    sh -c '! grep -l "^ *\(//\|/\*\)" "$1"/lib/*.c' sh "$W/src"
check "the stripped source builds pg-eval and pg-ttt with no warning (-Wall -Wextra)" sh -c \
    'env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$1" -j2 SANITIZE=0 HAVE_CUDA=0 CUDA_HOME=/nonexistent \
        bin/pg-eval bin/pg-ttt >"$1.log" 2>&1 && ! grep -q warning "$1.log" || { sed "s/^/# /" "$1.log"; false; }' \
    sh "$W/src"
score=$(evalm "$W/m.pgq") # (expect_fail sets want)
check "the stripped pg-eval scores the .pgq as pg-eval does ($score)" \
    test "$("$W/src/bin/pg-eval" -q "$W/m.pgq" -d "$W/data" --prefix t -m "$W/sp.model")" = "$score"
ttt() {
    "$1" -q "$W/m.pgq" -d "$W/data" --prefix t -m "$W/sp.model" --epochs 1 --chunk-tokens 512 --json |
        jq -c "[.val_loss, .val_bpb]"
}
score=$(ttt "$TTT")
check "the stripped pg-ttt adapts and scores as pg-ttt does ($score)" test "$(ttt "$W/src/bin/pg-ttt")" = "$score"

# damaged artifacts
cp "$W/zlib.pga" "$W/flip.pga"
off=$((size - 40))
printf '\377' | dd of="$W/flip.pga" bs=1 seek=$off conv=notrunc 2>/dev/null
cmp -s "$W/zlib.pga" "$W/flip.pga" && printf '\000' | dd of="$W/flip.pga" bs=1 seek=$off conv=notrunc 2>/dev/null
expect_fail "a flipped byte in a stream: checksum mismatch" 1 "checksum mismatch" "$EVAL" "$W/flip.pga" -d "$W/data" \
    --prefix t -m "$W/sp.model"
expect_fail "pg-pack -l notices it too" 1 "checksum mismatch" "$P" -l "$W/flip.pga"
head -c $((size - 7)) "$W/zlib.pga" >"$W/short.pga"
expect_fail "a truncated artifact" 1 "short.pga" "$P" -d "$W/short.pga" -o "$W/x.pgq"
check "nothing written on failure" test ! -e "$W/x.pgq"
expect_fail "-d of a .pgq, not an artifact" 1 "m.pgq" "$P" -d "$W/m.pgq" -o "$W/x.pgq"
expect_fail "packing a checkpoint, not a .pgq" 1 "model.safetensors" "$P" "$W/run/model.safetensors" -o "$W/x.pga"
expect_fail "a missing input" 1 "nope.pgq" "$P" "$W/nope.pgq" -o "$W/x.pga"
expect_fail "lrzip missing: exit 3" 3 "lrzip not found" env PG_LRZIP=/nonexistent/lrzip "$P" "$W/m.pgq" -o "$W/x.pga" --lrzip

# usage
expect_fail "no -o" 2 "no output file" "$P" "$W/m.pgq"
expect_fail "two codecs" 2 "choose one codec" "$P" "$W/m.pgq" -o "$W/x.pga" --zlib --lzma
expect_fail "-d with a codec" 2 "for packing" "$P" -d "$W/zlib.pga" -o "$W/x.pgq" --zlib
expect_fail "-l with -o" 2 "-l writes no file" "$P" -l "$W/zlib.pga" -o "$W/x"
expect_fail "a bad budget" 2 "--budget" "$P" "$W/m.pgq" -o "$W/x.pga" --budget lots
expect_fail "no input" 2 "no input file" "$P" -o "$W/x.pga"
finish
