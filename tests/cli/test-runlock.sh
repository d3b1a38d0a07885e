#!/bin/sh
# test-runlock.sh: two pg-train processes on one run folder: while the first trains, the second
# refuses (exit 1, one line naming the folder, the lock file and the first's pid) and writes
# nothing there; the first is unharmed; after the first is killed with SIGKILL its stale lock file
# blocks nothing; another run folder is never blocked.
. "$(dirname "$0")/lib.sh"
TRAIN="$PG_BIN/pg-train"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=1

licence_docs 2 >"$W/docs.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$PG_BIN/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 10 || exit 1
ARGS="-q -d $W/data --prefix t -m $W/sp.model --layers 1 --dim 16 --heads 2 --kv-heads 1 --vocab 512 --seq-len 16
 --batch-tokens 64 --grad-accum 1 --max-wallclock 0 --val-batch-tokens 64 --val-every 0"
# shellcheck disable=SC2086
train() { "$TRAIN" $ARGS "$@"; }
steps_done() { n=$(grep -c train_loss "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
wait_steps() { i=0; while [ $i -lt 600 ] && [ "$(steps_done "$1")" -lt "$2" ]; do sleep 0.05; i=$((i + 1)); done; }

# shellcheck disable=SC2086
"$TRAIN" $ARGS -o "$W/run" --iterations 100000000 2>"$W/first.err" &
pid=$!
wait_steps "$W/run" 2
check "the first pg-train is training (pid $pid)" kill -0 $pid
check "it holds the lock file, which names its pid" grep -qx "$pid" "$W/run/.pg-train.lock"
ls -A "$W/run" | sort >"$W/before"
expect_fail "a second pg-train on the same folder refuses" 1 "in use by another pg-train (pid $pid" \
    train -o "$W/run" --iterations 5
check "the message names the lock file" grep -qF "$W/run/.pg-train.lock" "$T_TMP/err"
ls -A "$W/run" | sort >"$W/after"
check "the second wrote no file in the folder" cmp -s "$W/before" "$W/after"
a=$(steps_done "$W/run")
wait_steps "$W/run" $((a + 2))
check "the first is still training ($a steps, then $(steps_done "$W/run"))" test "$(steps_done "$W/run")" -gt "$a"
check "another run folder is not blocked" train -o "$W/other" --iterations 2
kill -KILL $pid
wait $pid 2>/dev/null
check "after kill -9 the lock file stays" test -f "$W/run/.pg-train.lock"
check "but a stale lock blocks nothing: a new pg-train on the folder runs" train -o "$W/run" --iterations 2
check "and leaves its own pid, unlocked, behind" sh -c "! grep -qx '$pid' '$W/run/.pg-train.lock'"
finish
