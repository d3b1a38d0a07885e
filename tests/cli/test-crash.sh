#!/bin/sh
# test-crash.sh: crash safety. pg-train is killed with SIGKILL at random moments (at least 12
# times, at least 3 of them while a checkpoint file is being written) and resumed from its latest
# checkpoint each time: after every kill each file under a final name is whole (a checkpoint's model
# file never without its state), and the run ends byte-identical to one that was never interrupted
# (model, last checkpoint, optimizer state). A write that fails (ulimit -f, and a full 1 MiB tmpfs
# when it can be mounted) gives one line and exit 1, and keeps the previous checkpoint intact with
# no temporary left. The same for pg-quantize's .pgq and pg-pack's .pga: killed during the write
# the output is absent or whole, never partial; a failed write keeps the old one.
. "$(dirname "$0")/lib.sh"
TRAIN="$PG_BIN/pg-train" QUANT="$PG_BIN/pg-quantize" PACK="$PG_BIN/pg-pack"
STDIFF=${PG_TESTBIN:-build/tests}/tools/st_diff
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=1
KILLS=${PG_CRASH_KILLS:-12}
ITERS=300

licence_docs 2 >"$W/docs.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$PG_BIN/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 10 \
    --shard-tokens 5000 || exit 1
ARGS="-q -d $W/data --prefix t -m $W/sp.model --layers 2 --dim 64 --heads 4 --kv-heads 2 --vocab 512 --seq-len 32
 --batch-tokens 256 --grad-accum 1 --max-wallclock 0 --val-batch-tokens 256 --val-every 0 --save-every 3"
ARGS=$(echo $ARGS) # one line, for the sh -c below
# shellcheck disable=SC2086
train() { "$TRAIN" $ARGS "$@"; }

check "reference: $ITERS steps uninterrupted" train -o "$W/ref" --iterations $ITERS

# rand N: a pseudo-random number in [0, N) (awk's rand, seeded per call from the clock and a counter)
SEQ=0
rand() { SEQ=$((SEQ + 1)); awk -v n="$1" -v s="$SEQ$$" 'BEGIN { srand(s + systime()); print int(rand() * n) }'; }
temps() { for f in "$1"/.*.tmp.*; do [ -e "$f" ] && echo "$f"; done; }
# whole DIR: every safetensors file under a final name reads back whole (st_diff opens and checks
# all of it), and every checkpoint model file has its state file
whole() {
    for f in "$1"/*.safetensors; do
        [ -e "$f" ] || continue
        "$STDIFF" "$f" "$f" 0 >/dev/null 2>&1 || { echo "# partial: $f"; return 1; }
        case "$f" in
        *.state.safetensors | */model.safetensors) ;;
        *) [ -f "${f%.safetensors}.state.safetensors" ] || { echo "# no state for $f"; return 1; } ;;
        esac
    done
}
latest() { ls "$1"/ckpt_*.safetensors 2>/dev/null | grep -v '\.state\.' | tail -1; }

# ---- kill -9 at random moments, resume each time ----
R=$W/run
kills=0 in_write=0 attempts=0 bad=0
while [ $attempts -lt 60 ] && { [ $kills -lt "$KILLS" ] || [ $in_write -lt 3 ]; }; do
    attempts=$((attempts + 1))
    ck=$(latest "$R")
    # shellcheck disable=SC2086
    if [ -n "$ck" ]; then "$TRAIN" $ARGS -o "$R" --iterations $ITERS --resume "$ck" 2>>"$W/crash.err" &
    else "$TRAIN" $ARGS -o "$R" --iterations $ITERS 2>>"$W/crash.err" & fi
    pid=$!
    if [ $((attempts % 2)) = 0 ]; then
        # wait for a checkpoint write to start, then kill in the middle of it
        n=0
        while [ $n -lt 20000 ] && [ -z "$(temps "$R")" ] && kill -0 $pid 2>/dev/null; do n=$((n + 1)); done
    else
        sleep "0.$(printf '%03d' $(( $(rand 350) + 50 )))"
    fi
    if kill -KILL $pid 2>/dev/null; then
        wait $pid 2>/dev/null
        kills=$((kills + 1))
        [ -n "$(temps "$R")" ] && in_write=$((in_write + 1))
        whole "$R" || bad=$((bad + 1))
    else
        wait $pid
        break # the run finished before this kill
    fi
done
check "killed $kills times with SIGKILL ($in_write during a checkpoint write, $attempts starts)" \
    test $kills -ge "$KILLS" -a $in_write -ge 3
check "after every kill, every file under a final name was whole ($bad times not)" test $bad -eq 0
ck=$(latest "$R")
if [ -n "$ck" ]; then check "resume to the end from $(basename "$ck")" train -o "$R" --iterations $ITERS --resume "$ck"
else check "run to the end" train -o "$R" --iterations $ITERS; fi
check "the resumed run cleaned the temporaries of the killed ones" test -z "$(temps "$R")"
last=ckpt_$(printf '%06d' $ITERS)
check "model.safetensors is byte-identical to the uninterrupted run's" cmp -s "$W/ref/model.safetensors" "$R/model.safetensors"
check "$last.safetensors is byte-identical" cmp -s "$W/ref/$last.safetensors" "$R/$last.safetensors"
check "its state holds the same optimizer bytes" sh -c "\"$STDIFF\" \"$W/ref/$last.state.safetensors\" \"$R/$last.state.safetensors\" 0 >/dev/null"

# ---- a write that fails: ulimit -f (a checkpoint is ~360 KB, its state ~500 KB) ----
cp -r "$W/ref" "$W/lim"
rm -f "$W/lim/.pg-train.lock"
prev=ckpt_$(printf '%06d' $((ITERS - 3)))
# shellcheck disable=SC2086
expect_fail "pg-train past ulimit -f: one line, exit 1" 1 "File too large" \
    sh -c "ulimit -f 300 && exec \"$TRAIN\" $ARGS -o \"$W/lim\" --iterations $((ITERS + 3)) --resume \"$W/lim/$prev.safetensors\""
check "the checkpoint it failed to replace is intact" cmp -s "$W/ref/$last.safetensors" "$W/lim/$last.safetensors"
check "and its state too" cmp -s "$W/ref/$last.state.safetensors" "$W/lim/$last.state.safetensors"
check "no temporary left" test -z "$(temps "$W/lim")"

# ---- a full disk: a 1 MiB tmpfs holds one checkpoint (model + state), not two ----
mkdir "$W/full"
if mount -t tmpfs -o size=1m pgcrash "$W/full" 2>/dev/null; then
    expect_fail "pg-train on a full disk: one line, exit 1" 1 "No space left on device" \
        train -o "$W/full/run" --iterations $ITERS --resume "$W/ref/ckpt_$(printf '%06d' $((ITERS - 6))).safetensors"
    check "the checkpoint written before the disk filled is intact" \
        cmp -s "$W/ref/$prev.safetensors" "$W/full/run/$prev.safetensors"
    check "no temporary left" test -z "$(temps "$W/full/run")"
    umount "$W/full"
else
    ok "# SKIP full tmpfs: cannot mount one here (not root?)"
fi

# ---- pg-quantize and pg-pack: kill -9 during the write, and a write that fails ----
check "reference .pgq" "$QUANT" -q "$W/ref/model.safetensors" -o "$W/ref.pgq" -m "$W/sp.model"
check "reference .pga" "$PACK" -q "$W/ref.pgq" -o "$W/ref.pga" --zlib
# killtest NAME OUT REF CMD...: 10 runs killed at random (half once the temporary exists), more (up
# to 80: under load the write's window is easily missed) until one was killed during its write;
# the output, removed before each, must be absent or identical to REF after each kill
killtest() {
    name=$1 out=$2 ref=$3
    shift 3
    k=0 hit=0 partial=0
    while [ $k -lt 10 ] || { [ $hit -lt 1 ] && [ $k -lt 80 ]; }; do
        k=$((k + 1))
        rm -f "$out"
        "$@" >/dev/null 2>&1 &
        pid=$!
        if [ $((k % 2)) = 0 ]; then
            n=0
            while [ $n -lt 20000 ] && [ -z "$(temps "$(dirname "$out")")" ] && kill -0 $pid 2>/dev/null; do n=$((n + 1)); done
        else
            sleep "0.0$(rand 10)"
        fi
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        [ -n "$(temps "$(dirname "$out")")" ] && hit=$((hit + 1))
        if [ -e "$out" ] && ! cmp -s "$out" "$ref"; then partial=$((partial + 1)); fi
        rm -f "$(dirname "$out")"/.*.tmp.*
    done
    check "$name: killed $k times ($hit during the write): the output was never partial ($partial)" \
        test $partial -eq 0 -a $hit -ge 1
}
mkdir "$W/q"
killtest "pg-quantize" "$W/q/m.pgq" "$W/ref.pgq" "$QUANT" -q "$W/ref/model.safetensors" -o "$W/q/m.pgq" -m "$W/sp.model"
killtest "pg-pack" "$W/q/m.pga" "$W/ref.pga" "$PACK" -q "$W/ref.pgq" -o "$W/q/m.pga" --zlib
cp "$W/ref.pgq" "$W/q/m.pgq"
cp "$W/ref.pga" "$W/q/m.pga"
expect_fail "pg-quantize past ulimit -f: one line, exit 1" 1 "File too large" \
    sh -c "ulimit -f 100 && exec \"$QUANT\" -q \"$W/ref/model.safetensors\" -o \"$W/q/m.pgq\" -m \"$W/sp.model\""
check "the .pgq it failed to replace is intact" cmp -s "$W/ref.pgq" "$W/q/m.pgq"
expect_fail "pg-pack past ulimit -f: one line, exit 1" 1 "File too large" \
    sh -c "ulimit -f 100 && exec \"$PACK\" -q \"$W/ref.pgq\" -o \"$W/q/m.pga\" --zlib"
check "the .pga it failed to replace is intact" cmp -s "$W/ref.pga" "$W/q/m.pga"
check "no temporary left by either" test -z "$(temps "$W/q")"
finish
