#!/bin/sh
# test-torch.sh: pgolf's model against an independent PyTorch implementation written from the
# spec (tests/torch/pg_torch.py; test-only, Debian's python3-torch): a pgolf checkpoint loads
# with load_state_dict(strict=True) and PyTorch's val_loss equals pg-eval's (1e-6 relative), with
# the float RoPE tables, with --rope-bf16, and with the record-stack switches (LeakyReLU(0.5)²,
# partial RoPE 8 of 16 dims with bf16 tables, LN scale); the state_dict written back by PyTorch (a foreign
# safetensors writer, no pgolf metadata) loads into pg-eval with the same val_loss, byte for byte
# in the printed value. Skips when python3-torch is not installed (`make check` does not install
# it: it is about 1 GB).
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
    echo "1..0 # SKIP python3-torch not installed (apt-get install python3-torch python3-numpy)"
    exit 0
fi
REF="$PY tests/torch/pg_torch.py"
TOK="$PG_BIN/pg-tokenize" TRAIN="$PG_BIN/pg-train" EVAL="$PG_BIN/pg-eval"
W=$T_TMP
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

licence_docs 3 >"$W/docs.jsonl"
"$TOK" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512 || exit 1
"$TOK" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 30 || exit 1
TINY="--layers 5 --dim 64 --heads 4 --kv-heads 2 --vocab 512 --seq-len 64 --batch-tokens 512 --max-wallclock 0
 --warmdown-iters 5 --val-batch-tokens 512"

rel_close() { # a b tol: |a-b| <= tol·|b|
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; exit !(d <= t * b) }'
}

for variant in float bf16 records; do
    extra=""
    [ $variant = bf16 ] && extra="--rope-bf16 1"
    [ $variant = records ] && extra="--mlp-leaky-slope 0.5 --rope-dims 8 --ln-scale 1 --rope-bf16 1"
    # shellcheck disable=SC2086
    "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY $extra -o "$W/run-$variant" --iterations 15 \
        --val-every 0 || exit 1
    ck="$W/run-$variant/model.safetensors"
    ours=$("$EVAL" "$ck" -d "$W/data" --prefix t -m "$W/sp.model" --json | jq .val_loss)
    theirs=$($REF eval "$ck" "$W/data" t | jq .val_loss)
    if rel_close "$ours" "$theirs" 1e-6; then
        ok "$variant: PyTorch load_state_dict(strict) + eval: val_loss $theirs = pg-eval's $ours"
    else
        not_ok "$variant: PyTorch val_loss $theirs, pg-eval $ours"
    fi
done

# and back: PyTorch's state_dict written by a foreign safetensors writer (sorted names, F32, no
# pgolf metadata, so pg-eval infers the shape) scores exactly the same in pg-eval
$REF resave "$W/run-float/model.safetensors" "$W/resaved-float.safetensors" || exit 1
check "PyTorch's resaved state_dict has no pgolf metadata" \
    sh -c "! head -c 4096 '$W/resaved-float.safetensors' | grep -q model_dim"
a=$("$EVAL" "$W/run-float/model.safetensors" -d "$W/data" --prefix t -m "$W/sp.model")
b=$("$EVAL" "$W/resaved-float.safetensors" -d "$W/data" --prefix t -m "$W/sp.model" --seq-len 64)
check "the state_dict written back by PyTorch scores the same in pg-eval ($b)" test "$a" = "$b"
# the comparison can fail: PyTorch with a planted bug (RoPE rotating the other way) disagrees
ck="$W/run-float/model.safetensors"
ours=$("$EVAL" "$ck" -d "$W/data" --prefix t -m "$W/sp.model" --json | jq .val_loss)
bug=$(PG_TORCH_BUG=rope_sign $REF eval "$ck" "$W/data" t | jq .val_loss)
if rel_close "$bug" "$ours" 1e-6; then
    not_ok "a planted RoPE sign bug in the reference should be noticed ($bug vs $ours)"
else
    ok "the comparison can fail: with a planted RoPE sign bug PyTorch gives $bug, not $ours"
fi
# and the records variant's agreement rests on the switches: PyTorch ignoring them disagrees
ck="$W/run-records/model.safetensors"
ours=$("$EVAL" "$ck" -d "$W/data" --prefix t -m "$W/sp.model" --json | jq .val_loss)
bug=$(PG_TORCH_BUG=baseline_only $REF eval "$ck" "$W/data" t | jq .val_loss)
if rel_close "$bug" "$ours" 1e-6; then
    not_ok "PyTorch without the record-stack switches should disagree ($bug vs $ours)"
else
    ok "the records comparison can fail: PyTorch without the switches gives $bug, not $ours"
fi
finish
