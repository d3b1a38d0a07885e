#!/bin/sh
# test-blas-cores.sh: make check's outcome must not depend on the kernels OpenBLAS picks for the
# CPU (issue: on an AVX-512 Xeon OpenBLAS 0.3.21 falls back to "Prescott", whose products round
# differently, and a CUDA parity check failed only there). The tests whose results pass through
# OpenBLAS (the emulated CUDA parity tests, whose cuBLAS is OpenBLAS; the fast float64 gradient checks;
# the optimizer, TTT and training tests) run again under two other cores the CPU can run:
# Prescott (OpenBLAS's fallback) and the best core of the CPU's level, or the level below when
# that one is already in use. Then the commands' own choice (lib/cpu_tune.h): a simulated
# fallback is raised to the CPU's best core, a user's OPENBLAS_CORETYPE and OMP_WAIT_POLICY win,
# input on stdin survives the re-execution, PG_NO_TUNE=1 turns it off.
. "$(dirname "$0")/lib.sh"
TB=${PG_TESTBIN:-build/tests}
INFO=$TB/tools/blas_info
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

info() { "$INFO" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
if ! [ -x "$INFO" ] || [ "$(info core)" = none ]; then
    echo "1..0 # SKIP built without OpenBLAS"
    exit 0
fi
now=$(info core) isa=$(info isa) best=$(info best)
echo "# OpenBLAS runs $now here; the CPU offers $isa (best core $best)"

# The two other cores: Prescott, and the best of the CPU's level (or the level below when that is
# the one in use). Nothing above the CPU's level is ever forced (it would crash).
case "$isa" in
    AVX-512) high=SkylakeX lower=Haswell ;;
    AVX2) high=Haswell lower=Sandybridge ;;
    AVX) high=Sandybridge lower=Prescott ;;
    *) high=Prescott lower=Prescott ;;
esac
[ "$(OPENBLAS_CORETYPE=$now "$INFO" | sed 's/ .*//')" = "core=$high" ] && high=$lower
cores=""
for c in Prescott $high; do
    [ "$(OPENBLAS_CORETYPE=$c "$INFO" | sed 's/ .*//; s/core=//')" = "$now" ] || cores="$cores $c"
done
cores=$(echo "$cores" | tr ' ' '\n' | sort -u | tr '\n' ' ')

# ---- the same tests under each other core ----
UNIT="test_cuda_ops_emu test_cuda_record_emu test_cuda_model_emu test_cuda_load_emu test_ops_f64
 test_record_ops_f64 test_optim test_ttt"
for c in $cores; do
    got=$(OPENBLAS_CORETYPE=$c "$INFO" | sed 's/ .*//; s/core=//')
    check "OPENBLAS_CORETYPE=$c selects $c (got $got)" [ "$got" = "$c" ]
    for t in $UNIT test-train.sh; do
        case $t in
            *.sh) OPENBLAS_CORETYPE=$c sh "tests/cli/$t" >"$T_TMP/log" 2>&1 ;;
            *) [ -x "$TB/$t" ] || continue; OPENBLAS_CORETYPE=$c "$TB/$t" >"$T_TMP/log" 2>&1 ;;
        esac
        rc=$?
        p=$(grep -c '^ok ' "$T_TMP/log") f=$(grep -c '^not ok ' "$T_TMP/log")
        if grep -q '^1\.\.0 # SKIP' "$T_TMP/log"; then
            ok "$t under $c: # SKIP $(sed -n 's/^1\.\.0 # SKIP //p' "$T_TMP/log")"
        elif [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then
            ok "$t under $c: $p passed"
        else
            not_ok "$t under $c: $p passed, $f failed, exit $rc"
            grep -E '^(not ok|#)' "$T_TMP/log" | head -10 | sed 's/^/#   /'
        fi
    done
done

# ---- the commands' own choice ----
note() { env "$@" "$PG_BIN/pg-train" --dry-run -v 2>&1 >/dev/null | head -n 1; }
if [ "$best" != Prescott ]; then
    n=$(note OPENBLAS_CORETYPE=Prescott PG_TUNE_SIMULATE_FALLBACK=1 OMP_WAIT_POLICY=active)
    case "$n" in
        *"chose its Prescott kernels on a CPU with $isa: running $best "*) ok "a simulated fallback to Prescott runs $best" ;;
        *) not_ok "a simulated fallback to Prescott: '$n'" ;;
    esac
fi
n=$(note OPENBLAS_CORETYPE=Prescott OMP_WAIT_POLICY=active)
check "a user's OPENBLAS_CORETYPE and OMP_WAIT_POLICY are kept: no note ('$n')" [ -z "$n" ]
n=$(note OPENBLAS_CORETYPE=Prescott GOMP_SPINCOUNT=5)
check "GOMP_SPINCOUNT counts as the user's choice too ('$n')" [ -z "$n" ]
n=$(note -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OPENBLAS_CORETYPE=Prescott)
check "without the user's choice, OpenMP threads wait passively ('$n')" \
    [ "$n" = "pg-train: OMP_WAIT_POLICY=passive (set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)" ]
n=$(note -u OMP_WAIT_POLICY -u OPENBLAS_CORETYPE PG_NO_TUNE=1)
check "PG_NO_TUNE=1: nothing is changed ('$n')" [ -z "$n" ]
n=$(note -u OMP_WAIT_POLICY PG_TUNE_SIMULATE_FALLBACK=1 OPENBLAS_CORETYPE=Prescott)
check "the re-executed command does not re-execute again (one note: '$n')" \
    [ "$(env -u OMP_WAIT_POLICY PG_TUNE_SIMULATE_FALLBACK=1 OPENBLAS_CORETYPE=Prescott "$PG_BIN/pg-train" --dry-run -v -v 2>&1 | grep -c 'to choose')" -eq 1 ]
# stdin reaches the re-executed program whole
printf '{"text": "hello tuned world"}\n' >"$T_TMP/doc.jsonl"
licence_docs 1 >"$T_TMP/train.jsonl"
"$PG_BIN/pg-tokenize" train -q -i "$T_TMP/train.jsonl" -o "$T_TMP/sp.model" --vocab 400 || exit 1
env -u OMP_WAIT_POLICY PG_TUNE_SIMULATE_FALLBACK=1 OPENBLAS_CORETYPE=Prescott "$PG_BIN/pg-tokenize" encode -q \
    -m "$T_TMP/sp.model" -i - -o "$T_TMP/enc" --prefix s --val-docs 1 <"$T_TMP/doc.jsonl"
a=$("$PG_BIN/pg-tokenize" decode -m "$T_TMP/sp.model" "$T_TMP/enc/s_val_000000.bin" 2>&1)
check "stdin survives the re-execution ('$a')" [ "$a" = "hello tuned world" ]
finish
