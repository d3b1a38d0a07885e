#!/bin/sh
# test-soak.sh: pg-eval over PG_SOAK_TOKENS synthetic val tokens (default 1,000,000; the benchmark
# in docs/BENCH.md uses 10^8) with its resident memory sampled every 50 ms: after the val tokens
# are loaded (2 bytes each) the RSS stays flat to the end (it grows by at most 4 MB over the rest
# of the run, whatever the token count). Then the 16,000,000-byte boundary: a valid artifact of
# exactly 16,000,000 bytes and one of 16,000,001 (tests/tools/pga_exact) list, unpack and score
# exactly as the .pgq they hold; pg-pack with --code filling the budget to exactly 16,000,000
# bytes succeeds with 0 spare, and one byte more fails with one line.
. "$(dirname "$0")/lib.sh"
TOOLS=${PG_TESTBIN:-build/tests}/tools
EVAL="$PG_BIN/pg-eval" PACK="$PG_BIN/pg-pack"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
N=${PG_SOAK_TOKENS:-1000000}

licence_docs 2 >"$W/docs.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$PG_BIN/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 10 || exit 1
"$PG_BIN/pg-train" -q -d "$W/data" --prefix t -m "$W/sp.model" -o "$W/run" --layers 1 --dim 16 --heads 2 --kv-heads 1 \
    --vocab 512 --seq-len 128 --batch-tokens 512 --grad-accum 1 --max-wallclock 0 --val-batch-tokens 512 --val-every 0 \
    --iterations 2 || exit 1
M=$W/run/model.safetensors

# ---- soak: flat resident memory ----
check "synthetic val shards: $N tokens" "$TOOLS/synth_shard" "$W/syn" t val "$N" 512
# (under make check SANITIZE=1, ASan keeps freed blocks in a quarantine that would read as growth)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0 \
    "$EVAL" "$M" -d "$W/syn" --prefix t -m "$W/sp.model" --json >"$W/soak.json" 2>"$W/soak.err" &
pid=$!
: >"$W/rss"
while kill -0 $pid 2>/dev/null; do
    awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null >>"$W/rss"
    sleep 0.05
done
wait $pid
st=$?
check "pg-eval over $N tokens: exit 0 (got $st)" test $st -eq 0
tokens=$(jq .tokens "$W/soak.json" 2>/dev/null || echo 0)
secs=$(jq .seconds "$W/soak.json" 2>/dev/null || echo 0)
n=$(wc -l <"$W/rss")
# the baseline: the sample a tenth of the way in (the val tokens are loaded within the first
# 100 ms); the growth: the peak after it, less it
first=$((n / 10 + 2))
start=$(sed -n "${first}p" "$W/rss")
read -r lo hi <<EOF
$(tail -n +"$first" "$W/rss" | sort -n | sed -n '1p;$p' | tr '\n' ' ')
EOF
grow=$((hi - start))
diag() { echo "# $*"; }
diag "soak: $tokens tokens scored in $secs s; $n RSS samples; after the load (sample $first): $start kB, min $lo kB, peak $hi kB"
check "scored ${tokens} tokens, about all of them" test "$tokens" -ge $((N - 200)) -a "$n" -ge 10
check "RSS flat after the load: +$((grow / 1024)) MB over $((n - first + 1)) samples (at most 4 MB)" \
    test "$grow" -le 4096
echo "soak_tokens=$tokens soak_seconds=$secs rss_after_load_kb=$start rss_peak_kb=$hi samples=$n" >"${PG_SOAK_REPORT:-/dev/null}"

# ---- the 16,000,000-byte boundary ----
"$PG_BIN/pg-quantize" -q "$M" -o "$W/m.pgq" -m "$W/sp.model" --keep-float 16 || exit 1
"$EVAL" "$W/m.pgq" -d "$W/data" --prefix t -m "$W/sp.model" --json 2>/dev/null | jq .val_bpb >"$W/bpb.pgq"
for size in 16000000 16000001; do
    check "an artifact of exactly $size bytes" "$TOOLS/pga_exact" "$W/m.pgq" $size "$W/a$size.pga"
    check "  is $size bytes" test "$(wc -c <"$W/a$size.pga")" -eq $size
    "$PACK" -l "$W/a$size.pga" >"$W/l$size" 2>&1
    check "  pg-pack -l lists it" grep -q "^file $size bytes" "$W/l$size"
    check "  pg-pack -d unpacks it" "$PACK" -q -d "$W/a$size.pga" -o "$W/u$size.pgq"
    "$EVAL" "$W/a$size.pga" -d "$W/data" --prefix t -m "$W/sp.model" --json 2>"$W/e$size" | jq .val_bpb >"$W/bpb$size"
    check "  pg-eval scores it as the .pgq: val_bpb $(cat "$W/bpb$size") = $(cat "$W/bpb.pgq")" \
        sh -c "test -s '$W/bpb$size' && cmp -s '$W/bpb$size' '$W/bpb.pgq'"
done
"$PACK" -q "$W/m.pgq" -o "$W/z.pga" --zlib || exit 1
s=$(wc -c <"$W/z.pga")
head -c $((16000000 - s)) /dev/zero >"$W/code"
"$PACK" "$W/m.pgq" -o "$W/z.pga" --zlib --code "$W/code" >"$W/fit.out" 2>&1
st=$?
check "pg-pack: artifact $s + code $((16000000 - s)) = 16,000,000 bytes fits (exit $st, spare 0)" \
    sh -c "[ $st -eq 0 ] && grep -q 'fits, spare 0\$' '$W/fit.out'"
printf 'x' >>"$W/code"
expect_fail "pg-pack: one byte more is over the budget" 1 "over the budget of 16000000 by 1 bytes" \
    "$PACK" -q "$W/m.pgq" -o "$W/z.pga" --zlib --code "$W/code"
finish
