#!/bin/bash
# bench-gpu.sh: pgolf on one GPU against PyTorch on the same GPU, in one run: pg-train --device cuda
# (the baseline preset and the record preset), pg-eval --device cuda, the PyTorch reference
# (tests/torch/pg_torch.py bench-gpu: the same model and optimizers, torch.compile + bf16 autocast
# + flash attention as parameter-golf's train_gpt.py) and, when given, train_gpt.py itself.
# Prints step times, tokens/s, MFU (counted FLOPs over the measured bf16 matrix peak) and peak
# device memory, then the ratios; every log goes under the output folder, the table is printed
# last and also written there (table.txt), with one JSON object per number in results.jsonl.
# Builds nothing: run it from the GPU bundle (bash .gpu/go.sh scripts/bench-gpu.sh ARGS), or
# where bin/ holds the programs. docs/BENCH.md (GPU training and evaluation) says what each number means.
set -eu

usage() {
    cat <<'EOF'
Usage: scripts/bench-gpu.sh [options]

pgolf's GPU training and evaluation speed against PyTorch (torch.compile, bf16 autocast) on the
same GPU and data. Prints a table last; logs and results.jsonl go to the output folder.

Data and output:
  -d, --data DIR          token shards in parameter-golf's format (default data/demo/shards)
  -p, --prefix NAME       their name prefix (default: fineweb, or the one prefix found in DIR)
  -m, --tokenizer MODEL   the SentencePiece model of the shards (default data/demo/tokenizer.model)
  -o, --out DIR           logs, results.jsonl and table.txt (default build/bench-gpu)
      --work DIR          scratch for checkpoints and the eval shard (default: a temporary
                          folder, removed at the end)
Sizes:
  -s, --steps N           timed training steps per run (default 12)
  -w, --warmup N          untimed steps before them (default 3; PyTorch compiles in the first)
      --accum K           micro-batches per step, both presets (default: the preset's, 8)
      --micro-seqs S      sequences per micro-batch, baseline (default 64: 8 x 64 x 1024 = 524,288)
      --record-accum K    micro-batches per step, record (default: --accum)
      --record-micro-seqs S  sequences per micro-batch, record (default 48: 8 x 48 x 2048 = 786,432)
      --eval-tokens N     tokens of the eval set: the val shards' first N, repeated when they hold
                          fewer (default 2097152)
      --eval-seqs S       sequences per eval forward (default: 65,536 tokens' worth)
      --attn-flops MODE   causal (default: half the 2*2*T*d per layer) or full, in the FLOPs count
What to run:
      --skip LIST         comma-separated parts to leave out: baseline, record, pgolf, eval,
                          torch, train-gpt, attn (the attention kernels' own timing)
      --unfused           also time pgolf's baseline training with PG_FUSED=0 (the plain
                          operations, each product converting its fp32 operands): what the fused
                          forms gain
      --eager             also time it with PG_GRAPHS=0 (every operation launched from the host,
                          no CUDA graphs): what the graphs gain
      --torch-record      also run the PyTorch reference of the record preset (compiles a second
                          model: about 2 minutes more)
      --train-gpt PATH    parameter-golf's train_gpt.py: run it on the same data and parse its
                          step times (single process, no torchrun)
      --tg-steps N        its logged steps (default: --steps + 2, the first 2 not counted)
      --tg-warmup N       its WARMUP_STEPS, compile priming it undoes (default 3)
      --tg-full           let it finish (final validation, int8 round-trip: a minute or more);
                          by default it is stopped after its last training step
      --baseline-args STR extra pg-train config flags for the baseline preset (e.g. a smaller shape)
      --record-args STR   the same for the record preset
      --pg-train-args STR extra pg-train flags for both training runs
      --device DEV        cuda (default), or cpu: the whole script on the CPU (a smoke test; give
                          small shapes with --baseline-args / --record-args)
      --python PY         the Python with torch (default: $PYTHON, else python3)
      --timeout S         limit per command in seconds (default 240)
  -n, --dry-run           print the commands it would run, and exit
  -h, --help              print this help and exit

Environment: PG_BIN, the folder of pg-train and pg-eval (bash .gpu/go.sh sets it; default bin/
when it holds them, else the PATH).
EOF
}

die() { echo "bench-gpu: $*" >&2; exit 1; }
usage_error() { echo "bench-gpu: $*" >&2; echo "Try 'scripts/bench-gpu.sh --help'." >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
data=data/demo/shards prefix="" tok=data/demo/tokenizer.model out=build/bench-gpu work=""
steps=12 warmup=3 accum="" micro="" raccum="" rmicro="" eval_tokens=2097152 eval_seqs="" attn=causal
skip="" torch_record=0 variants=() train_gpt="" tg_steps="" tg_warmup=3 tg_full=0
baseline_args="" record_args="" pg_train_args="" device=cuda py=${PYTHON:-python3} tmo=240 dry=0

need() { [ $# -ge 2 ] || usage_error "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -d | --data) need "$@"; data=$2; shift ;;
    -p | --prefix) need "$@"; prefix=$2; shift ;;
    -m | --tokenizer) need "$@"; tok=$2; shift ;;
    -o | --out) need "$@"; out=$2; shift ;;
    --work) need "$@"; work=$2; shift ;;
    -s | --steps) need "$@"; steps=$2; shift ;;
    -w | --warmup) need "$@"; warmup=$2; shift ;;
    --accum) need "$@"; accum=$2; shift ;;
    --micro-seqs) need "$@"; micro=$2; shift ;;
    --record-accum) need "$@"; raccum=$2; shift ;;
    --record-micro-seqs) need "$@"; rmicro=$2; shift ;;
    --eval-tokens) need "$@"; eval_tokens=$2; shift ;;
    --eval-seqs) need "$@"; eval_seqs=$2; shift ;;
    --attn-flops) need "$@"; attn=$2; shift ;;
    --skip) need "$@"; skip=$2; shift ;;
    --torch-record) torch_record=1 ;;
    # the baseline trained again with one switch off, KEY:SETTING:WHAT-IT-MEASURES
    --unfused) variants+=("unfused:PG_FUSED=0:the fused forms") ;;
    --eager) variants+=("eager:PG_GRAPHS=0:CUDA graphs") ;;
    --train-gpt) need "$@"; train_gpt=$2; shift ;;
    --tg-steps) need "$@"; tg_steps=$2; shift ;;
    --tg-warmup) need "$@"; tg_warmup=$2; shift ;;
    --tg-full) tg_full=1 ;;
    --baseline-args) need "$@"; baseline_args=$2; shift ;;
    --record-args) need "$@"; record_args=$2; shift ;;
    --pg-train-args) need "$@"; pg_train_args=$2; shift ;;
    --device) need "$@"; device=$2; shift ;;
    --python) need "$@"; py=$2; shift ;;
    --timeout) need "$@"; tmo=$2; shift ;;
    -n | --dry-run) dry=1 ;;
    *) usage_error "unknown option: $1" ;;
    esac
    shift
done
isnum() { case $2 in '' | *[!0-9]*) usage_error "$1: expected a whole number, got '$2'" ;; esac; }
for v in "steps:$steps" "warmup:$warmup" "eval-tokens:$eval_tokens" "timeout:$tmo" "tg-warmup:$tg_warmup" \
    ${accum:+"accum:$accum"} ${micro:+"micro-seqs:$micro"} ${raccum:+"record-accum:$raccum"} \
    ${rmicro:+"record-micro-seqs:$rmicro"} ${eval_seqs:+"eval-seqs:$eval_seqs"} ${tg_steps:+"tg-steps:$tg_steps"}; do
    isnum "--${v%%:*}" "${v#*:}"
done
[ "$steps" -ge 1 ] || usage_error "--steps: at least 1"
case $attn in causal | full) ;; *) usage_error "--attn-flops: causal or full" ;; esac
case $device in cuda | cpu) ;; *) usage_error "--device: cuda or cpu" ;; esac
for s in ${skip//,/ }; do
    case $s in baseline | record | pgolf | eval | torch | train-gpt | attn) ;; *) usage_error "--skip: unknown part '$s'" ;; esac
done
skipped() { case ",$skip," in *",$1,"*) return 0 ;; esac; return 1; }
[ -n "$tg_steps" ] || tg_steps=$((steps + 2))
[ -z "$train_gpt" ] || [ -f "$train_gpt" ] || die "--train-gpt $train_gpt: no such file"
case $train_gpt in '' | /*) ;; *) train_gpt=$PWD/$train_gpt ;; esac

cd "$root"
if [ -n "${PG_BIN:-}" ]; then bindir=$PG_BIN; elif [ -x bin/pg-train ]; then bindir=$root/bin; else bindir=""; fi
bin() { if [ -n "$bindir" ]; then echo "$bindir/$1"; else command -v "$1" || echo "$1"; fi; }
PGTRAIN=$(bin pg-train) PGEVAL=$(bin pg-eval)
[ -x "$PGTRAIN" ] || die "no pg-train (looked in ${bindir:-the PATH}; build first, or run from the GPU bundle)"
REF=$root/tests/torch/pg_torch.py
[ -d "$data" ] || die "--data $data: no such folder"
[ -f "$tok" ] || die "--tokenizer $tok: no such file"
data=$(cd "$data" && pwd) tok=$(cd "$(dirname "$tok")" && pwd)/$(basename "$tok")
if [ -z "$prefix" ]; then
    if ls "$data"/fineweb_train_*.bin >/dev/null 2>&1; then
        prefix=fineweb
    else
        prefix=$(for f in "$data"/*_train_[0-9]*.bin; do [ -e "$f" ] && basename "$f"; done | sed 's/_train_[0-9]*\.bin$//' | sort -u)
        if [ -z "$prefix" ] || [ "$(echo "$prefix" | wc -l)" != 1 ]; then
            die "$data: give the shard prefix (-p): found '${prefix//$'\n'/ }'"
        fi
    fi
fi
ls "$data/${prefix}"_train_*.bin >/dev/null 2>&1 || die "$data: no ${prefix}_train_*.bin"
ls "$data/${prefix}"_val_*.bin >/dev/null 2>&1 || die "$data: no ${prefix}_val_*.bin"

mkdir -p "$out"
out=$(cd "$out" && pwd)
[ $dry = 1 ] || : >"$out/results.jsonl" # the logs of each part are overwritten as it runs
own_work=0
if [ -z "$work" ]; then work=$(mktemp -d "${TMPDIR:-/tmp}/pgolf-bench-gpu.XXXXXX"); own_work=1; fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
tg_pid=""
cleanup() {
    [ -z "$tg_pid" ] || kill -TERM -- "-$tg_pid" 2>/dev/null || kill -TERM "$tg_pid" 2>/dev/null || true
    [ $own_work = 0 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
have_timeout=0
command -v timeout >/dev/null 2>&1 && have_timeout=1
t_begin=$(date +%s)
export LC_ALL=C

# run NAME CMD...: stdout to $out/NAME.out, stderr to $out/NAME.log, under the time limit; with
# --dry-run only print the command. The exit status is the command's.
run() {
    local name=$1 rc t0 secs
    shift
    printf '%q ' "$@" | sed 's/ $//' >>"$out/commands.txt.tmp"
    echo >>"$out/commands.txt.tmp"
    if [ $dry = 1 ]; then
        printf '%q ' "$@" | sed 's/ $//'
        echo
        return 0
    fi
    t0=$(date +%s.%N)
    rc=0
    if [ $have_timeout = 1 ]; then
        timeout -k 10 "$tmo" "$@" >"$out/$name.out" 2>"$out/$name.log" || rc=$?
    else
        "$@" >"$out/$name.out" 2>"$out/$name.log" || rc=$?
    fi
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    echo "bench-gpu: $name: exit $rc, $secs s" >&2
    result kind=time part="$name" seconds="$secs" exit="$rc"
    [ $rc = 0 ] || tail -n 5 "$out/$name.log" | sed 's/^/    /' >&2
    return $rc
}
rm -f "$out/commands.txt.tmp"

# --- numbers and results ------------------------------------------------------------------------
jqf() { jq -r "$2 // empty" "$1" 2>/dev/null | head -n 1 || true; } # FILE EXPR: a value or nothing
median() { sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]}'; }
calc() { awk "BEGIN {printf \"%.10g\\n\", $*}"; } # floating point: calc '1 / 3'
result() { # JSON fields as jq arguments: result kind=train impl=pgolf ... (numbers where numeric)
    local args=() k v
    for kv in "$@"; do
        k=${kv%%=*} v=${kv#*=}
        if [ -z "$v" ]; then
            args+=(--argjson "$k" null)
        elif [[ $v =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
            args+=(--argjson "$k" "$v")
        else
            args+=(--arg "$k" "$v")
        fi
    done
    [ $dry = 1 ] || jq -n -c '$ARGS.named' "${args[@]}" >>"$out/results.jsonl"
}
declare -A R # R[key] = value for the table

# FLOPs per token from a config (pg-train --dry-run --json): matrix-product parameters per token
# (the virtual layer list's block matrices, the record stack's small products) and the head; the
# attention's score and value products, 2*2*T*d per layer forward, halved for causal attention.
flops_of() { # CONFIG.json: N_mat head T d L_attn train eval
    jq -r --arg attn "$attn" '
        def n(k): (.config[k] // "0") | tonumber;
        n("model_dim") as $d | n("num_heads") as $h | n("num_kv_heads") as $kv | n("mlp_mult") as $m
        | n("vocab_size") as $V | n("train_seq_len") as $T | n("num_layers") as $L
        | ($d / $h * $kv) as $kvd
        | (if n("num_loops") > 0 then $L + n("num_loops") * (n("loop_end") - n("loop_start") + 1) else $L end) as $Lv
        | (if n("gated_attn") > 0 then $h * $d
           elif n("attn_out_gate") > 0 or n("sparse_attn_gate") > 0 then $h * n("gate_window") else 0 end) as $gate
        | ($Lv * (2 * $d * $d + 2 * $d * $kvd + 2 * $m * $d * $d + $gate)
           + (if n("bigram_vocab") > 0 then n("bigram_dim") * $d else 0 end)
           + (if n("ve_last_n") > 0 then n("ve_dim") * $kvd else 0 end)
           + (if n("smear_gate") > 0 then n("gate_window") else 0 end)) as $N
        | ((if $attn == "causal" then 2 else 4 end) * $T * $d * $Lv) as $A
        | "\($N) \($V * $d) \($T) \($d) \($Lv) \(6 * ($N + $V * $d) + 3 * $A) \(2 * ($N + $V * $d) + $A)"' "$1"
}
fmt_int() { printf '%.0f' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

# --- the machine ----------------------------------------------------------------------------------
echo "bench-gpu: $(date -u '+%F %T') UTC, pgolf $("$PGTRAIN" --version 2>/dev/null | head -n 1), data $data ($prefix), out $out" >&2
gpu_name=""
[ "$device" = cuda ] || gpu_name="the CPU"
if [ "$device" = cuda ] && command -v nvidia-smi >/dev/null 2>&1 && [ $dry = 0 ]; then
    nvidia-smi >"$out/nvidia-smi.log" 2>&1 || true
    gpu_name=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1 || echo cuda)
fi
have_torch=0
if ! skipped torch || [ -n "$train_gpt" ]; then
    if [ $dry = 1 ] || "$py" -c 'import torch' 2>/dev/null; then have_torch=1; else
        echo "bench-gpu: $py has no torch: no PyTorch reference, no measured peak" >&2
    fi
fi
peak_tf="" copy_gb="" torch_v=""
if [ $have_torch = 1 ]; then
    pk=(--device "$device")
    [ "$device" = cpu ] && pk+=(--n 512 --copy-mib 64 --reps 3)
    if run peak "$py" "$REF" peak "${pk[@]}" && [ $dry = 0 ]; then
        peak_tf=$(jqf "$out/peak.out" .bf16_tflops) copy_gb=$(jqf "$out/peak.out" .copy_gbps)
        torch_v=$(jqf "$out/peak.out" .torch)
        [ -n "$gpu_name" ] || gpu_name=$(jqf "$out/peak.out" .device)
        result kind=device name="$gpu_name" torch="$torch_v" bf16_tflops="$peak_tf" copy_gbps="$copy_gb" \
            matmul_n="$(jqf "$out/peak.out" .matmul_n)"
    fi
fi

# --- the eval set: the val shards' first N tokens (repeated when fewer), for pg-eval and PyTorch ----
evaldir=$work/evaldata
mkdir -p "$evaldir"
if ! skipped eval && [ $have_torch = 1 ] && run eval-set "$py" "$REF" take-shard "$data/${prefix}_val_*.bin" \
    "$evaldir/${prefix}_val_000000.bin" "$((eval_tokens + 1))"; then
    R[eval_src]=$(jqf "$out/eval-set.out" .source_tokens)
else
    evaldir=$data # pg-eval on the val shards as they are; PyTorch's eval needs the set
fi

# --- per preset -----------------------------------------------------------------------------------
tg_batch=""
bench_preset() { # baseline|record
    local P=$1 args acc mic seq cfg0 flags batch es ms
    if [ "$P" = baseline ]; then args=$baseline_args acc=$accum mic=$micro; else args=${record_args} acc=${raccum:-$accum} mic=$rmicro; fi
    # shellcheck disable=SC2206
    local pargs=(--preset "$P" $args)
    [ "$P" = record ] && pargs+=(--enable-looping-at 0) # every step runs the looped layers
    cfg0=$("$PGTRAIN" "${pargs[@]}" --dry-run --json) || die "pg-train ${pargs[*]} --dry-run failed"
    seq=$(echo "$cfg0" | jq -r '.config.train_seq_len | tonumber')
    [ -n "$acc" ] || acc=$(echo "$cfg0" | jq -r '.config.grad_accum_steps | tonumber')
    # the preset's micro-batch (its batch over its accumulation), whatever --accum says
    [ -n "$mic" ] || mic=$(echo "$cfg0" | jq -r '(.config.train_batch_tokens | tonumber) / (.config.grad_accum_steps | tonumber)
        / (.config.train_seq_len | tonumber) | floor | if . < 1 then 1 else . end')
    batch=$((acc * mic * seq))
    es=${eval_seqs:-$((65536 / seq > 0 ? 65536 / seq : 1))}
    flags=("${pargs[@]}" --batch-tokens "$batch" --grad-accum "$acc" --val-batch-tokens "$batch")
    "$PGTRAIN" "${flags[@]}" --dry-run --json >"$out/$P-config.json" || die "pg-train ${flags[*]} --dry-run failed"
    read -r fN fH fT fd fL ftrain feval < <(flops_of "$out/$P-config.json")
    R[$P.batch]=$batch R[$P.flops]="$fN $fH $fT $fd $fL $ftrain $feval" R[$P.params]=$(jqf "$out/$P-config.json" .num_params)
    [ $dry = 0 ] || echo "# $P: $(jqf "$out/$P-config.json" .num_params) parameters, batch $batch = $acc x $mic x $seq tokens; FLOPs/token: N_mat $fN, V*d $fH, T $fT, d $fd, L $fL, train $ftrain, eval $feval"
    result kind=flops preset="$P" n_mat="$fN" head="$fH" seq_len="$fT" dim="$fd" attn_layers="$fL" attention="$attn" \
        train_flops_per_token="$ftrain" eval_flops_per_token="$feval" num_params="${R[$P.params]}"
    mfu() { if [ -n "$peak_tf" ] && [ -n "$2" ]; then calc "$1 * $2 / ($peak_tf * 1e12)"; fi; } # flops/token, tokens/s

    # pgolf training
    if ! skipped pgolf; then
        local dev=() ev=()
        [ "$device" = cuda ] && dev=(--device cuda --precision bf16)
        # shellcheck disable=SC2206
        local extra=($pg_train_args)
        # the training command around its output folder; the median step time after the warm-up
        local data_args=("$PGTRAIN" -d "$data" --prefix "$prefix" -m "$tok")
        local run_args=("${flags[@]}" --iterations "$((warmup + steps))" --max-wallclock 0 --val-every 0 --no-progress
            --json "${dev[@]}" "${extra[@]}")
        # the median of a step field (default step_ms) over the timed steps
        step_ms() { jq -r "select(.step_ms) | .${2:-step_ms} // empty" "$1/metrics.jsonl" | tail -n "+$((warmup + 1))" | median; }
        rm -rf "${work:?}/$P"
        if run "pgolf-$P-train" "${data_args[@]}" -o "$work/$P" "${run_args[@]}" && [ $dry = 0 ]; then
            cp "$work/$P/metrics.jsonl" "$out/pgolf-$P-metrics.jsonl"
            ms=$(step_ms "$work/$P")
            if [ -n "$ms" ]; then
                R[$P.pg.ms]=$ms R[$P.pg.tps]=$(calc "$batch * 1000 / $ms")
                R[$P.pg.mfu]=$(mfu "$ftrain" "${R[$P.pg.tps]}") R[$P.pg.peak]=$(jqf "$out/pgolf-$P-train.out" .device_peak_bytes)
                R[$P.pg.loop]=$(jq -r 'select(.step_ms) | .looping // empty' "$work/$P/metrics.jsonl" | awk '$1 == 1' | wc -l)
                R[$P.pg.fb]=$(step_ms "$work/$P" fwd_bwd_ms) R[$P.pg.opt]=$(step_ms "$work/$P" optim_ms)
                result kind=train impl=pgolf preset="$P" batch_tokens="$batch" accum="$acc" micro_seqs="$mic" step_ms="$ms" \
                    tokens_per_s="${R[$P.pg.tps]}" mfu="${R[$P.pg.mfu]}" peak_bytes="${R[$P.pg.peak]}" \
                    steps_timed="$steps" steps_skipped="$warmup" fwd_bwd_ms="${R[$P.pg.fb]}" optim_ms="${R[$P.pg.opt]}"
            fi
        fi
        # the baseline with one switch off (--unfused, --eager): what that part gains
        local v key setting what
        for v in "${variants[@]}"; do
            IFS=: read -r key setting what <<<"$v"
            if [ "$P" = baseline ] &&
                run "pgolf-$P-train-$key" env "$setting" "${data_args[@]}" -o "$work/$P-$key" "${run_args[@]}" && [ $dry = 0 ]; then
                ms=$(step_ms "$work/$P-$key")
                if [ -n "$ms" ]; then
                    R[$P.$key.ms]=$ms R[$P.$key.tps]=$(calc "$batch * 1000 / $ms")
                    R[$P.$key.mfu]=$(mfu "$ftrain" "${R[$P.$key.tps]}")
                    R[$P.$key.peak]=$(jqf "$out/pgolf-$P-train-$key.out" .device_peak_bytes)
                    result kind=train impl="pgolf-$key" preset="$P" batch_tokens="$batch" step_ms="$ms" \
                        tokens_per_s="${R[$P.$key.tps]}" mfu="${R[$P.$key.mfu]}" peak_bytes="${R[$P.$key.peak]}"
                fi
                rm -rf "${work:?}/$P-$key"
            fi
        done
        # pgolf evaluation of the checkpoint it wrote
        if ! skipped eval && { [ $dry = 1 ] || [ -f "$work/$P/model.safetensors" ]; }; then
            [ "$device" = cuda ] && ev=(--device cuda)
            local prec=bf16
            if ! run "pgolf-$P-eval" "$PGEVAL" "$work/$P/model.safetensors" -d "$evaldir" --prefix "$prefix" -m "$tok" \
                --batch-seqs "$es" --no-progress --json "${ev[@]}" --precision bf16; then
                prec=fp32 # a pg-eval without --precision (exit 2): its default
                grep -q -- precision "$out/pgolf-$P-eval.log" &&
                    run "pgolf-$P-eval" "$PGEVAL" "$work/$P/model.safetensors" -d "$evaldir" --prefix "$prefix" -m "$tok" \
                        --batch-seqs "$es" --no-progress --json "${ev[@]}" || prec=""
            fi
            local et es_ ep
            et=$(jqf "$out/pgolf-$P-eval.out" .tokens) es_=$(jqf "$out/pgolf-$P-eval.out" .seconds)
            if [ -n "$prec" ] && [ -n "$et" ] && [ -n "$es_" ] && [ $dry = 0 ]; then
                R[$P.pgev.tps]=$(calc "$et / $es_") R[$P.pgev.prec]=$prec
                R[$P.pgev.mfu]=$(mfu "$feval" "${R[$P.pgev.tps]}")
                ep=$(jqf "$out/pgolf-$P-eval.out" .device_peak_bytes)
                result kind=eval impl=pgolf preset="$P" precision="$prec" tokens="$et" seconds="$es_" \
                    tokens_per_s="${R[$P.pgev.tps]}" mfu="${R[$P.pgev.mfu]}" batch_seqs="$es" peak_bytes="$ep" \
                    val_loss="$(jqf "$out/pgolf-$P-eval.out" .val_loss)"
            fi
        fi
    fi

    # the PyTorch reference
    if [ $have_torch = 1 ] && ! skipped torch; then
        if [ "$P" = record ] && [ $torch_record = 0 ]; then
            R[$P.pt.why]="not run: --torch-record runs it, ~2 min more"
        else
            local tflags=(--config "$out/$P-config.json" -d "$data" --prefix "$prefix" --steps "$steps" --warmup "$warmup"
                --accum "$acc" --micro-seqs "$mic" --eval-seqs "$es" --device "$device")
            local eb=$((eval_tokens / (es * seq)))
            eb=$((eb < 4 ? 4 : eb > 16 ? 16 : eb))
            if [ "$evaldir" != "$data" ]; then
                tflags+=(--eval-data "$evaldir" --eval-batches "$eb")
            else
                tflags+=(--no-eval)
            fi
            [ "$device" = cpu ] && tflags+=(--no-compile)
            if run "torch-$P" "$py" "$REF" bench-gpu "${tflags[@]}" && [ $dry = 0 ]; then
                local f=$out/torch-$P.out
                R[$P.pt.ms]=$(jqf "$f" .step_ms) R[$P.pt.tps]=$(jqf "$f" .tokens_per_s) R[$P.pt.peak]=$(jqf "$f" .peak_bytes)
                R[$P.pt.compile]=$(jqf "$f" .compile_s) R[$P.pt.mfu]=$(mfu "$ftrain" "${R[$P.pt.tps]}")
                R[$P.ptev.tps]=$(jqf "$f" .eval_tokens_per_s) R[$P.ptev.compile]=$(jqf "$f" .eval_compile_s)
                R[$P.ptev.mfu]=$(mfu "$feval" "${R[$P.ptev.tps]}") R[$P.ptev.peak]=$(jqf "$f" .eval_peak_bytes)
                R[$P.pt.check]=$(jqf "$f" .fast_path_check.rel)
                R[$P.ptev.prec]=$(jq -r 'if .autocast_bf16 then "bf16" else "fp32" end' "$f" 2>/dev/null || echo bf16)
                result kind=train impl=pytorch preset="$P" batch_tokens="$batch" step_ms="${R[$P.pt.ms]}" \
                    tokens_per_s="${R[$P.pt.tps]}" mfu="${R[$P.pt.mfu]}" peak_bytes="${R[$P.pt.peak]}" \
                    compile_s="${R[$P.pt.compile]}" torch="$(jqf "$f" .torch)" fast_path_rel_diff="${R[$P.pt.check]}"
                [ -z "${R[$P.ptev.tps]}" ] || result kind=eval impl=pytorch preset="$P" precision=bf16-autocast \
                    tokens_per_s="${R[$P.ptev.tps]}" mfu="${R[$P.ptev.mfu]}" compile_s="${R[$P.ptev.compile]}" \
                    batch_seqs="$es" peak_bytes="${R[$P.ptev.peak]}"
            else
                R[$P.pt.why]="failed (see torch-$P.log)"
            fi
        fi
    fi
    [ "$P" = baseline ] && tg_mic=$mic tg_seq=$seq
    return 0
}
for P in baseline record; do
    skipped "$P" || bench_preset "$P"
done

# --- attention alone: the fused kernels and the batched products against PyTorch's SDPA ------------
# tests/tools/bench_attn (bf16, causal, GQA 8:4, head dim 64) at the baseline's micro-batch, at
# 2048 tokens, and with documents of 256 tokens (varlen); pg_torch.py bench-attn (SDPA's flash
# backend, no documents) at the first two. Times per call, useful FLOPs (4*hd per causal pair).
attn_shapes="64:1024:0 32:2048:0 64:1024:256" # sequences:tokens:document length (0: none)
attn_results() { # FILE IMPL: bench_attn's (or bench-attn's) JSON lines into R and results.jsonl
    local line op
    [ -f "$1" ] || return 0
    while read -r line; do
        op=$(jq -r .op <<<"$line")
        R[attn.$sh.$op]="$(jq -r '"\(.ms) \(.tflops)"' <<<"$line")"
        result kind=attn impl="$2" op="$op" b="$a_b" t="$a_t" doc="$a_doc" ms="$(jq -r .ms <<<"$line")" \
            tflops="$(jq -r .tflops <<<"$line")"
    done <"$1"
}
if ! skipped attn && [ "$device" = cuda ]; then
    ab=${PG_TESTBIN:-build/tests}/tools/bench_attn
    for sh in $attn_shapes; do
        IFS=: read -r a_b a_t a_doc <<<"$sh"
        docarg=()
        [ "$a_doc" = 0 ] || docarg=(--doc "$a_doc")
        run "attn-pgolf-$a_t-$a_doc" "$ab" --b "$a_b" --t "$a_t" --h 8 --kv 4 --hd 64 "${docarg[@]}" &&
            attn_results "$out/attn-pgolf-$a_t-$a_doc.out" pgolf || true
        if [ "$a_doc" = 0 ] && [ $have_torch = 1 ] && ! skipped torch; then
            run "attn-torch-$a_t" "$py" "$REF" bench-attn --b "$a_b" --t "$a_t" --h 8 --kv 4 --hd 64 &&
                attn_results "$out/attn-torch-$a_t.out" torch || true
        fi
    done
fi

# --- parameter-golf's train_gpt.py on the same data (baseline shape) ------------------------------
if [ -n "$train_gpt" ] && ! skipped train-gpt && ! skipped baseline && [ $have_torch = 1 ]; then
    tgw=$work/train_gpt
    mkdir -p "$tgw/data" "$tgw/shim"
    i=0
    for f in "$data/${prefix}"_train_*.bin; do ln -sf "$f" "$tgw/data/$(printf 'fineweb_train_%06d.bin' $i)"; i=$((i + 1)); done
    i=0
    for f in "$data/${prefix}"_val_*.bin; do ln -sf "$f" "$tgw/data/$(printf 'fineweb_val_%06d.bin' $i)"; i=$((i + 1)); done
    # train_gpt.py reads the tokenizer's piece types with the sentencepiece module: where Python
    # lacks it, a stand-in that parses the .model file (pg_torch.py's SentencePieceLite)
    tg_path=${PYTHONPATH:-}
    if ! "$py" -c 'import sentencepiece' 2>/dev/null; then
        printf 'import sys\nsys.path.insert(0, %s)\nfrom pg_torch import SentencePieceLite as SentencePieceProcessor\n' \
            "'$root/tests/torch'" >"$tgw/shim/sentencepiece.py"
        tg_path=$tgw/shim${tg_path:+:$tg_path}
        R[tg.note]="sentencepiece: pg_torch.py's stand-in"
    fi
    tg_env_path=$PATH
    if ! command -v nvidia-smi >/dev/null 2>&1; then # it logs nvidia-smi's output and fails without one
        mkdir -p "$tgw/shim/bin"
        printf '#!/bin/sh\necho "nvidia-smi: not on this machine"\n' >"$tgw/shim/bin/nvidia-smi"
        chmod +x "$tgw/shim/bin/nvidia-smi"
        tg_env_path=$tgw/shim/bin:$PATH
    fi
    cfg=$out/baseline-config.json
    c() { jq -r ".config.$1" "$cfg"; }
    vocab=$("$py" "$REF" spm-info "$tok" 2>/dev/null | head -n 1 | jq -r '.vocab_size // empty' || true)
    vocab=${vocab:-$(c vocab_size)} # it wants the tokenizer's own size
    tg_batch=$((8 * tg_mic * tg_seq)) # its accumulation is 8 micro-batches on one process
    tgenv=(env -u RANK -u WORLD_SIZE -u LOCAL_RANK "PATH=$tg_env_path" PYTHONUNBUFFERED=1 "PYTHONPATH=$tg_path" "DATA_PATH=$tgw/data" "TOKENIZER_PATH=$tok" "VOCAB_SIZE=$vocab"
        "RUN_ID=bench-gpu" "SEED=1337" "ITERATIONS=$tg_steps" "WARMUP_STEPS=$tg_warmup" "TRAIN_LOG_EVERY=1"
        "VAL_LOSS_EVERY=0" "MAX_WALLCLOCK_SECONDS=0" "TRAIN_BATCH_TOKENS=$tg_batch" "TRAIN_SEQ_LEN=$tg_seq"
        "VAL_BATCH_SIZE=$tg_batch" "NUM_LAYERS=$(c num_layers)" "MODEL_DIM=$(c model_dim)" "NUM_HEADS=$(c num_heads)"
        "NUM_KV_HEADS=$(c num_kv_heads)" "MLP_MULT=$(c mlp_mult)" "TIE_EMBEDDINGS=$(c tie_embeddings)"
        "ROPE_BASE=$(c rope_base)" "LOGIT_SOFTCAP=$(c logit_softcap)" "QK_GAIN_INIT=$(c qk_gain_init)")
    tgcmd=("${tgenv[@]}" "$py" "$train_gpt")
    printf '(cd %q && %s)\n' "$tgw" "$(printf '%q ' "${tgcmd[@]}")" >>"$out/commands.txt.tmp"
    if [ $dry = 1 ]; then
        printf '(cd %q && %s)\n' "$tgw" "$(printf '%q ' "${tgcmd[@]}" | sed 's/ $//')"
    else
        # its own process group, so that stopping it stops its compile workers too
        stop_tg() {
            local sig
            for sig in TERM TERM TERM TERM TERM KILL; do
                kill -0 "$tg_pid" 2>/dev/null || return 0
                kill "-$sig" -- "-$tg_pid" 2>/dev/null || kill "-$sig" "$tg_pid" 2>/dev/null || true
                sleep 1
            done
        }
        sid=()
        command -v setsid >/dev/null 2>&1 && sid=(setsid)
        t0=$(date +%s)
        (cd "$tgw" && exec "${sid[@]}" "${tgcmd[@]}") >"$out/train_gpt.log" 2>&1 &
        tg_pid=$!
        done_re="^step:$tg_steps/$tg_steps train_loss"
        while kill -0 "$tg_pid" 2>/dev/null; do
            if [ $tg_full = 0 ] && grep -q "$done_re" "$out/train_gpt.log"; then
                stop_tg
                R[tg.note]="${R[tg.note]:+${R[tg.note]}; }stopped after its last step"
                break
            fi
            if [ $(($(date +%s) - t0)) -gt "$tmo" ]; then
                stop_tg
                R[tg.note]="${R[tg.note]:+${R[tg.note]}; }timed out after $tmo s"
                break
            fi
            sleep 1
        done
        wait "$tg_pid" 2>/dev/null || true
        tg_pid=""
        echo "bench-gpu: train_gpt.py: $(($(date +%s) - t0)) s" >&2
        result kind=time part=train_gpt.py seconds="$(($(date +%s) - t0))"
        # step:N/M train_loss:X train_time:Tms step_avg:Ams, one line per step (TRAIN_LOG_EVERY=1)
        tg_ms=$(sed -n 's/^step:\([0-9]*\)\/[0-9]* train_loss:[^ ]* train_time:\([0-9.]*\)ms.*/\1 \2/p' "$out/train_gpt.log" |
            awk -v skip=2 'NR > 1 && $1 > skip {print $2 - prev} {prev = $2}' | median)
        tg_peak=$(sed -n 's/^peak memory allocated: \([0-9]*\) MiB.*/\1/p' "$out/train_gpt.log" | head -n 1)
        if [ -n "$tg_ms" ]; then
            R[tg.ms]=$tg_ms R[tg.tps]=$(calc "$tg_batch * 1000 / $tg_ms")
            read -r _ _ _ _ _ ftrain _ <<<"${R[baseline.flops]}"
            [ -z "$peak_tf" ] || R[tg.mfu]=$(calc "$ftrain * ${R[tg.tps]} / ($peak_tf * 1e12)")
            [ -z "$tg_peak" ] || R[tg.peak]=$((tg_peak * 1048576))
            result kind=train impl=train_gpt.py preset=baseline batch_tokens="$tg_batch" step_ms="$tg_ms" \
                tokens_per_s="${R[tg.tps]}" mfu="${R[tg.mfu]:-}" peak_bytes="${R[tg.peak]:-}" note="${R[tg.note]:-}"
        else
            R[tg.why]="no step times in train_gpt.log"
        fi
    fi
elif [ -n "$train_gpt" ]; then
    R[tg.why]="skipped"
else
    R[tg.why]="not run (no --train-gpt)"
fi

[ $dry = 0 ] || { mv "$out/commands.txt.tmp" "$out/commands.txt"; exit 0; }
mv "$out/commands.txt.tmp" "$out/commands.txt"

# --- the table ------------------------------------------------------------------------------------
ratio() { [ -n "$1" ] && [ -n "$2" ] && calc "$1 / $2"; }
g() { echo "${R[$1]:-}"; }
for P in baseline record; do
    r=$(ratio "$(g $P.pg.ms)" "$(g $P.pt.ms)") && R[$P.r.step]=$r && result kind=ratio preset="$P" what="step time pgolf / PyTorch" value="$r"
    r=$(ratio "$(g $P.pgev.tps)" "$(g $P.ptev.tps)") && R[$P.r.eval]=$r && result kind=ratio preset="$P" what="eval tokens/s pgolf / PyTorch" value="$r"
    r=$(ratio "$(g $P.pg.peak)" "$(g $P.pt.peak)") && R[$P.r.mem]=$r && result kind=ratio preset="$P" what="peak memory pgolf / PyTorch" value="$r"
    for v in "${variants[@]}"; do
        IFS=: read -r key setting what <<<"$v"
        r=$(ratio "$(g $P.pg.ms)" "$(g $P.$key.ms)") && R[$P.r.$key]=$r &&
            result kind=ratio preset="$P" what="step time with $what / $setting" value="$r"
    done
done
# train_gpt.py's batch can differ from pgolf's (its accumulation is always 8): compare per token
r=$(ratio "$(g tg.tps)" "$(g baseline.pg.tps)") && R[tg.r]=$r && result kind=ratio preset=baseline what="step time pgolf / train_gpt.py (per token)" value="$r"

{
    na() { [ -n "$1" ] && echo "$1" || echo n/a; }
    f1() { [ -n "$1" ] && printf "%.${2:-1}f" "$1" || echo n/a; }
    pct() { [ -n "$1" ] && printf '%.1f%%' "$(calc "$1 * 100")" || echo n/a; }
    cs() { if [ "$device" = cpu ]; then echo -; else f1 "$1"; fi; } # compile seconds (none on the CPU)
    gib() { [ -n "$1" ] && printf '%.2f GiB' "$(calc "$1 / 1073741824")" || echo n/a; }
    x() { [ -n "$1" ] && printf '%.2fx' "$1" || echo "n/a${2:+ ($2)}"; }
    echo
    echo "== bench-gpu: pgolf vs PyTorch on ${gpu_name:-a GPU}, $(date -u +%F), torch $(na "$torch_v"), $(($(date +%s) - t_begin)) s =="
    n=$(jqf "$out/peak.out" .matmul_n) reps=$(jqf "$out/peak.out" .reps) mib=$(jqf "$out/peak.out" .copy_mib)
    echo "measured peak: bf16 matmul $(f1 "$peak_tf") TFLOP/s (${n:-?}^3, median of ${reps:-?}); device-to-device copy $(f1 "$copy_gb" 0) GB/s (${mib:-?} MiB, read + write)"
    if [ -n "$(g eval_src)" ]; then
        echo "eval set: $(fmt_int "$((eval_tokens + 1))") tokens: the val shards' first $(fmt_int "$(g eval_src)")$([ "$(g eval_src)" -le "$eval_tokens" ] && echo ", repeated")"
    fi
    echo "FLOPs/token: train = 6*(N_mat + V*d) + 3*A, eval = 2*(N_mat + V*d) + A, A = $([ "$attn" = causal ] && echo "2*T*d*L (causal: half of 2*2*T*d)" || echo "4*T*d*L (full)") per layer list"
    for P in baseline record; do
        [ -n "$(g $P.flops)" ] || continue
        read -r fN fH fT fd fL ftrain feval <<<"$(g $P.flops)"
        printf '  %-8s N_mat %s, V*d %s, T %s, d %s, L %s: train %.1f MFLOP, eval %.1f MFLOP per token\n' "$P" \
            "$(fmt_int "$fN")" "$(fmt_int "$fH")" "$fT" "$fd" "$fL" "$(calc "$ftrain / 1e6")" "$(calc "$feval / 1e6")"
    done
    printf '%-28s %9s %10s %12s %7s %11s %9s\n' run "batch" "ms/step" "tokens/s" MFU "peak mem" "compile s"
    row() { printf '%-28s %9s %10s %12s %7s %11s %9s\n' "$1" "$2" "$(if [ "$3" = - ]; then echo -; else f1 "$3"; fi)" "$(f1 "$4" 0)" \
        "$(pct "$5")" "$(gib "$6")" "${7:--}"; }
    for P in baseline record; do
        skipped "$P" && continue
        b=$(g $P.batch)
        if skipped pgolf; then :; elif [ -n "$(g $P.pg.ms)" ]; then row "pgolf $P train" "$b" "$(g $P.pg.ms)" "$(g $P.pg.tps)" "$(g $P.pg.mfu)" "$(g $P.pg.peak)"
        else echo "pgolf $P train: failed (see pgolf-$P-train.log)"; fi
        for v in "${variants[@]}"; do
            IFS=: read -r key setting what <<<"$v"
            if [ -n "$(g $P.$key.ms)" ]; then row "pgolf $P train, $setting" "$b" "$(g $P.$key.ms)" "$(g $P.$key.tps)" "$(g $P.$key.mfu)" "$(g $P.$key.peak)"
            elif [ "$P" = baseline ] && ! skipped pgolf; then echo "pgolf $P train, $setting: failed (see pgolf-$P-train-$key.log)"; fi
        done
        if [ -n "$(g $P.pt.ms)" ]; then row "PyTorch $P train" "$b" "$(g $P.pt.ms)" "$(g $P.pt.tps)" "$(g $P.pt.mfu)" "$(g $P.pt.peak)" "$(cs "$(g $P.pt.compile)")"
        elif ! skipped torch; then echo "PyTorch $P train: $(na "$(g $P.pt.why)")"; fi
        if [ "$P" = baseline ] && [ -n "$train_gpt" ]; then
            if [ -n "$(g tg.ms)" ]; then row "train_gpt.py baseline" "$tg_batch" "$(g tg.ms)" "$(g tg.tps)" "$(g tg.mfu)" "$(g tg.peak)"
            else echo "train_gpt.py: $(na "$(g tg.why)")"; fi
        fi
    done
    for P in baseline record; do
        if [ -n "$(g $P.pgev.tps)" ]; then row "pg-eval $P ($(g $P.pgev.prec))" - - "$(g $P.pgev.tps)" "$(g $P.pgev.mfu)" ""; fi
        if [ -n "$(g $P.ptev.tps)" ]; then
            row "PyTorch eval $P ($(g $P.ptev.prec))" - - "$(g $P.ptev.tps)" "$(g $P.ptev.mfu)" "$(g $P.ptev.peak)" "$(cs "$(g $P.ptev.compile)")"
        fi
    done
    echo "ratios (step time and memory: below 1 is pgolf ahead; eval tokens/s: above 1 is pgolf ahead):"
    for P in baseline record; do
        skipped "$P" && continue
        why=$(g $P.pt.why)
        printf '  %-8s step time pgolf / PyTorch %s; eval tokens/s pgolf / PyTorch %s; peak memory pgolf / PyTorch %s\n' "$P" \
            "$(x "$(g $P.r.step)" "$why")" "$(x "$(g $P.r.eval)")" "$(x "$(g $P.r.mem)")"
    done
    [ -z "$train_gpt" ] || printf '  baseline step time pgolf / train_gpt.py (at equal tokens per step) %s%s\n' "$(x "$(g tg.r)" "$(g tg.why)")" \
        "${R[tg.note]:+  [$(g tg.note)]}"
    for P in baseline record; do
        for v in "${variants[@]}"; do
            IFS=: read -r key setting what <<<"$v"
            [ -z "$(g $P.r.$key)" ] || printf '  %-8s step time with %s / %s %s\n' "$P" "$what" "$setting" "$(x "$(g $P.r.$key)")"
        done
        [ -z "$(g $P.pg.fb)" ] || printf '  %-8s pgolf step phases (median ms): micro-batches %s, optimizers and exchanges %s\n' \
            "$P" "$(f1 "$(g $P.pg.fb)")" "$(f1 "$(g $P.pg.opt)")"
    done
    if ! skipped attn && [ "$device" = cuda ]; then
        echo "attention (bf16, causal, 8 query heads over 4 kv heads, head dim 64): ms per call (useful TFLOP/s)"
        at() { local v; v=$(g "attn.$1.$2"); [ -n "$v" ] && printf '%.3f (%.0f)' ${v% *} ${v#* } || echo n/a; }
        for sh in $attn_shapes; do
            IFS=: read -r a_b a_t a_doc <<<"$sh"
            printf '  %3s x %4s tokens%-14s fused fwd %s, fwd+bwd %s; batched fwd %s, fwd+bwd %s; SDPA fwd %s, fwd+bwd %s\n' \
                "$a_b" "$a_t" "$([ "$a_doc" = 0 ] || echo ", docs of $a_doc")" "$(at "$sh" flash_fwd)" "$(at "$sh" flash_fwd_bwd)" \
                "$(at "$sh" batched_fwd)" "$(at "$sh" batched_fwd_bwd)" "$(at "$sh" torch_sdpa_fwd)" "$(at "$sh" torch_sdpa_fwd_bwd)"
            f=$(g "attn.$sh.flash_fwd_bwd") p=$(g "attn.$sh.torch_sdpa_fwd_bwd")
            if [ -n "$f" ] && [ -n "$p" ]; then
                r=$(calc "${f% *} / ${p% *}")
                result kind=ratio what="attention fwd+bwd time pgolf fused / PyTorch SDPA, T=$a_t" value="$r"
                printf '    fused / SDPA fwd+bwd time %s (below 1: pgolf ahead)\n' "$(x "$r")"
            fi
        done
    fi
    c=$(g baseline.pt.check)
    [ -z "$c" ] || echo "PyTorch reference check: flash/F.rms_norm path vs explicit float32 path, relative loss difference $(printf '%.1e' "$c")"
    [ -z "$(g record.pg.loop)" ] || echo "record: $(g record.pg.loop) of $((warmup + steps)) pgolf steps ran the looped layers (--enable-looping-at 0)"
    echo "logs: $out"
} | tee "$out/table.txt"
