#!/bin/sh
# test-torch.sh: pgolf's model against an independent PyTorch implementation written from the
# spec (tests/torch/pg_torch.py; test-only, Debian's python3-torch): a pgolf checkpoint loads
# with load_state_dict(strict=True) and PyTorch's val_loss equals pg-eval's (1e-6 relative), with
# the float RoPE tables, with --rope-bf16, and with the record-stack switches (LeakyReLU(0.5)²,
# partial RoPE 8 of 16 dims with bf16 tables, LN scale); the state_dict written back by PyTorch (a foreign
# safetensors writer, no pgolf metadata) loads into pg-eval with the same val_loss, byte for byte
# in the printed value. The rest of the record stack (spec/techniques.md §2) the same way, each
# model also with its gates, lambdas, lane weights and embedding tables perturbed far from where a
# short training leaves them: a record-like model (skip gates, depth recurrence, two-lane parallel
# residuals, SmearGate v2 with the BOS fix, the sparse head-output gate, XSA, varlen attention), a
# GPT-J parallel one with AttnOutGate, BigramHash, value embeddings, the poly5 softcap and a z-loss
# (not scored), one with dense gated attention, one with SmearGate v1. Planted bugs in PyTorch
# (RoPE sign, skip-gate sign, no XSA, no SmearGate BOS mask, no document mask, lane mixing
# transposed, the switches ignored) each break the agreement. Skips when python3-torch is not
# installed (`make check` does not install it: it is about 1 GB).
. "$(dirname "$0")/lib.sh"
need_torch
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

# record-stack variants (5 layers: with loop 1..2 once the virtual list is 0 1 2 1 2 3 4, encoder
# 0 1 2, decoder 1 2 3 4, so the parallel blocks start at layer 3 with a skip still to take)
REC="--skip-gates 1 --num-loops 1 --loop-start 1 --loop-end 2 --parallel-start-layer 3 --smear-gate 1
 --sparse-attn-gate 1 --sparse-attn-gate-scale 0.5 --xsa-last-n 2 --varlen-attn 1 --mlp-leaky-slope 0.5 --rope-dims 8
 --ln-scale 1"
GPTJ="--num-loops 1 --loop-start 1 --loop-end 2 --parallel-start-layer 3 --parallel-gptj 1 --attn-out-gate 1
 --bigram-vocab 64 --bigram-dim 16 --ve-last-n 2 --ve-dim 16 --softcap-poly5 1 --z-loss 1e-4 --xsa-last-n 5
 --varlen-attn 1 --ortho-init 1"
DENSE="--gated-attn 1 --skip-gates 1 --parallel-start-layer 3 --bigram-vocab 64 --bigram-dim 16"
# SmearGate v1 as spec §2.10 and the records' code (x_{-1} = 0, no BOS mask; the BOS fix belongs
# to v2), in a run of its own.
SMEAR1="--smear-gate-v1 1"

# compare NAME CKPT: PyTorch's val_loss equals pg-eval's
compare() {
    ours=$("$EVAL" "$2" -d "$W/data" --prefix t -m "$W/sp.model" --json | jq .val_loss)
    theirs=$($REF eval "$2" "$W/data" t | jq .val_loss)
    if [ -n "$ours" ] && [ -n "$theirs" ] && rel_close "$ours" "$theirs" 1e-6; then
        ok "$1: PyTorch load_state_dict(strict) + eval: val_loss $theirs = pg-eval's $ours"
    else
        not_ok "$1: PyTorch val_loss $theirs, pg-eval $ours"
    fi
}

for variant in float bf16 records rec gptj dense smear1; do
    extra=""
    [ $variant = bf16 ] && extra="--rope-bf16 1"
    [ $variant = records ] && extra="--mlp-leaky-slope 0.5 --rope-dims 8 --ln-scale 1 --rope-bf16 1"
    [ $variant = rec ] && extra=$REC
    [ $variant = gptj ] && extra=$GPTJ
    [ $variant = dense ] && extra=$DENSE
    [ $variant = smear1 ] && extra=$SMEAR1
    # shellcheck disable=SC2086
    "$TRAIN" -q -d "$W/data" --prefix t -m "$W/sp.model" $TINY $extra -o "$W/run-$variant" --iterations 15 \
        --val-every 0 || exit 1
    compare "$variant" "$W/run-$variant/model.safetensors"
    case $variant in rec | gptj | dense | smear1)
        $REF perturb "$W/run-$variant/model.safetensors" "$W/perturbed-$variant.safetensors" 1 0.5 || exit 1
        compare "$variant, record-stack tensors perturbed" "$W/perturbed-$variant.safetensors" ;;
    esac
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
# and the record-like model's agreement rests on each technique: a planted bug in PyTorch's
# version of it disagrees (on the perturbed model, whose lane weights are not all near 1)
ck="$W/perturbed-rec.safetensors"
ours=$("$EVAL" "$ck" -d "$W/data" --prefix t -m "$W/sp.model" --json | jq .val_loss)
for b in skip_gate_sign xsa_off smear_bos varlen_off lanes_transposed; do
    bug=$(PG_TORCH_BUG=$b $REF eval "$ck" "$W/data" t | jq .val_loss)
    if [ -z "$bug" ] || rel_close "$bug" "$ours" 1e-6; then
        not_ok "a planted bug ($b) in the reference should be noticed ($bug vs $ours)"
    else
        ok "the rec comparison can fail: with a planted bug ($b) PyTorch gives $bug, not $ours"
    fi
done
finish
