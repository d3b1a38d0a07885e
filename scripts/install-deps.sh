#!/bin/sh
# install-deps.sh: install, with apt-get, every build and test dependency of pgolf that is missing.
# Idempotent: when everything is present it installs nothing and touches no network.
# Run as root (or through sudo when available). Set PG_NO_INSTALL=1 to only report what is missing.
set -eu

# package  : why
PKGS="
gcc make g++ pkg-config
libsentencepiece-dev sentencepiece
libbrotli-dev liblzma-dev zlib1g-dev lrzip brotli xz-utils
libopenblas-dev liblapacke-dev
libjansson-dev
groff-base man-db
jq xxd bc time
libopenmpi-dev openmpi-bin
clang libomp-dev
"
# g++/libsentencepiece-dev: the one C++ shim over SentencePiece; sentencepiece: spm_* tools the tests
# compare against; lrzip/brotli/xz-utils: pg-pack and its benchmarks; libopenblas-dev: CBLAS;
# liblapacke-dev: LAPACKE (Cholesky and SVD for GPTQ and LQER, on OpenBLAS's LAPACK);
# libjansson-dev: JSONL docs and safetensors headers; groff-base/man-db: man page lint;
# jq/xxd: CLI tests; bc/time: the demo summary and the benchmarks; libopenmpi-dev/openmpi-bin: MPI
# for pg-train's data-parallel ranks (mpirun) and their tests; clang (with libFuzzer, ASan and
# UBSan) and libomp-dev: the fuzz harnesses of tests/fuzz (make fuzz; short runs in make check).

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "install-deps: all dependencies present"
    exit 0
fi

echo "install-deps: missing:$missing"
if [ "${PG_NO_INSTALL:-0}" = 1 ]; then
    exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "install-deps: error: not root and no sudo; install:$missing" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: installed:$missing"
# The Makefile caches its feature probes (OpenBLAS, MPI, ...) in <build dir>/features.mk; a build
# run before this install would keep linking without what was just installed. Drop the caches.
rm -f "$(dirname "$0")"/../build*/features.mk
