#!/bin/sh
# make-seeds.sh: (re)builds the seed corpora tests/fuzz/corpus/NAME/ from the pg-* commands on a
# tiny model (Debian's GPL-3 text, an sp512 tokenizer, a 1-block width-8 model). The seeds are
# committed; run this only to refresh them after a format changes. PG_BIN: the pg-* binaries.
set -eu
cd "$(dirname "$0")/../.."
B=${PG_BIN:-$PWD/bin}
C=tests/fuzz/corpus
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export LC_ALL=C.UTF-8 OMP_NUM_THREADS=1
find "$C" -type f ! -name "regress-*" -delete 2>/dev/null || true # regress-*: inputs that once crashed a reader
for n in shard safetensors state config docs pgq pga codec cuts spm; do mkdir -p "$C/$n"; done

jq -R -s -c 'split("\n\n")[] | select(test("\\S")) | {text: .}' /usr/share/common-licenses/GPL-3 >"$W/docs.jsonl"
"$B/pg-tokenize" train -q -i "$W/docs.jsonl" -o "$W/sp.model" --vocab 512
"$B/pg-tokenize" encode -q -m "$W/sp.model" -i "$W/docs.jsonl" -o "$W/data" --prefix t --val-docs 5 --shard-tokens 64
cp "$W/sp.model" "$C/spm/sp512.model"
# and a small one without the NFKC character map (6 KB instead of 245 KB: fuzzed 20 times faster)
head -c 20000 /usr/share/common-licenses/GPL-3 >"$W/spm.txt"
spm_train --input="$W/spm.txt" --model_prefix="$W/spid" --vocab_size=400 --model_type=bpe \
    --normalization_rule_name=identity --byte_fallback=true >/dev/null 2>&1
cp "$W/spid.model" "$C/spm/identity400.model"
# and one with a small character map of its own (five rules)
printf '41\t61\n42\t62\nFF21\t61\n2160\t69\n00C5\t61 30A\n' >"$W/rules.tsv"
spm_train --input="$W/spm.txt" --model_prefix="$W/sprule" --vocab_size=400 --model_type=bpe \
    --normalization_rule_tsv="$W/rules.tsv" --byte_fallback=true >/dev/null 2>&1
cp "$W/sprule.model" "$C/spm/rules400.model"
cp "$W/data/t_val_000000.bin" "$C/shard/val.bin"
head -c 1024 "$W/data/t_val_000000.bin" >"$C/shard/empty-header.bin"

"$B/pg-train" -q -d "$W/data" --prefix t -m "$W/sp.model" -o "$W/run" --layers 1 --dim 8 --heads 2 --kv-heads 1 \
    --vocab 512 --seq-len 8 --batch-tokens 32 --grad-accum 1 --max-wallclock 0 --val-batch-tokens 32 \
    --val-every 0 --iterations 2
cp "$W/run/model.safetensors" "$C/safetensors/model.safetensors"
cp "$W/run/ckpt_000002.state.safetensors" "$C/state/ckpt.state.safetensors"
printf '\020\000\000\000\000\000\000\000{"__metadata__":{"pgolf":"1","num_layers":"1"},"w":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]}}    ' \
    >"$C/safetensors/bf16.safetensors"
# the header length above must be the JSON's: rewrite it
n=$(($(wc -c <"$C/safetensors/bf16.safetensors") - 8))
{ printf "\\$(printf '%03o' $((n % 256)))\\000\\000\\000\\000\\000\\000\\000"; tail -c +9 "$C/safetensors/bf16.safetensors"; printf 'abcd'; } \
    >"$W/st" && mv "$W/st" "$C/safetensors/bf16.safetensors"
printf '{"__metadata__":{"pgolf_state":"1","step":"3","loader_file":"0","loader_pos":"17","train_ms":"1.5"}}' >"$W/j"
{ n=$(wc -c <"$W/j"); printf "\\$(printf '%03o' $((n % 256)))\\000\\000\\000\\000\\000\\000\\000"; cat "$W/j"; } >"$C/state/meta.state.safetensors"

cp scripts/demo.cfg "$C/config/demo.cfg"
printf '# a config\nlayers = 2\ndim=64 # width\nheads = 4\nkv-heads = 2\nvocab = 512\nseq-len = 32\nbatch-tokens = 256\n' \
    >"$C/config/small.cfg"
printf 'iterations = 10\nema-decay = 0.99\nswa-every = 2\nqat-start-lr = 0.5\nnum-loops = 1\nloop-start = 0\nloop-end = 0\n' \
    >"$C/config/record.cfg"

{ printf '\000'; head -c 3000 "$W/docs.jsonl"; } >"$C/docs/docs.jsonl"
{ printf '\000'; printf '{"text":"a\\u0000b\\ud83d\\ude00","id":1}\r\n\n  \t\n{"text":""}'; } >"$C/docs/escapes.jsonl"
{ printf '\001'; head -c 2000 /usr/share/common-licenses/GPL-3; } >"$C/docs/text.txt"

M=$W/run/model.safetensors
"$B/pg-quantize" -q "$M" -o "$C/pgq/int8.pgq" -m "$W/sp.model" --keep-float 16
"$B/pg-quantize" -q "$M" -o "$C/pgq/int6-lqer.pgq" -m "$W/sp.model" --scheme int6 --lqer-rank 1 --lqer-top 1 --scales logdelta --keep-float 16
"$B/pg-quantize" -q "$M" -o "$C/pgq/ternary.pgq" -m "$W/sp.model" --scheme ternary --keep-float 16
"$B/pg-quantize" -q "$M" -o "$C/pgq/quinary.pgq" -m "$W/sp.model" --scheme quinary --keep-float 16
"$B/pg-quantize" -q "$M" -o "$C/pgq/int6-awq-hadamard.pgq" -m "$W/sp.model" --scheme int6 --awq --hadamard --calib-self 2 --calib-seq-len 16 --keep-float 16
for c in zlib lzma brotli; do "$B/pg-pack" -q "$C/pgq/int6-lqer.pgq" -o "$C/pga/$c.pga" --$c; done

# codec seeds: [codec][raw size, 24-bit LE][stream]
raw=$W/raw
head -c 700 /usr/share/common-licenses/GPL-3 >"$raw"
sz() { n=$1; printf "\\$(printf '%03o' $((n % 256)))\\$(printf '%03o' $((n / 256 % 256)))\\000"; }
{ printf '\000'; sz 700; cat "$raw"; } >"$C/codec/raw"
{ printf '\002'; sz 700; xz --format=xz --lzma2=preset=9e,dict=4KiB -c "$raw"; } >"$C/codec/lzma"
{ printf '\003'; sz 700; brotli -q 11 -w 10 -c "$raw"; } >"$C/codec/brotli"
# zlib: the packed stream of a one-stream --zlib artifact (entry at 64: packed size at +64, offset at +72)
"$B/pg-pack" -q "$C/pgq/int8.pgq" -o "$W/z.pga" --zlib
rawn=$(od -An -tu8 -j 120 -N 8 "$W/z.pga" | tr -d ' ')
pk=$(od -An -tu8 -j 128 -N 8 "$W/z.pga" | tr -d ' ')
off=$(od -An -tu8 -j 136 -N 8 "$W/z.pga" | tr -d ' ')
{ printf '\001'; sz "$rawn"; tail -c +$((off + 1)) "$W/z.pga" | head -c "$pk"; } >"$C/codec/zlib"

# cuts seed: [u16 36][PGCT, 1 cut: at 2, 3 bytes of stream 2 from 0][u16 4]["abcd"][1 group: "XYZ"]
{ printf '\044\000PGCT\001\000\000\000'
  printf '\002\000\000\000\000\000\000\000\003\000\000\000\000\000\000\000\002\000\000\000\000\000\000\000\000\000\000\000'
  printf '\004\000abcd\000XYZ'; } >"$C/cuts/one-cut"
echo "seeds in $C: $(find "$C" -type f | wc -l) files, $(du -sk "$C" | cut -f1) KB"
