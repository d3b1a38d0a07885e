#!/bin/sh
# probe-fuzz.sh CC: exits 0 when CC links a libFuzzer harness with ASan and UBSan (Debian's clang
# has libFuzzer in libclang-rt-*-dev), 1 with the reason on stderr otherwise.
cc=${1:-clang}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$tmp/p.c"
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: $cc not found (apt-get install clang)" >&2
    exit 1
fi
if ! "$cc" -fsanitize=fuzzer,address,undefined -fopenmp "$tmp/p.c" -o "$tmp/p" 2>"$tmp/err"; then
    echo "fuzz: $cc cannot link -fsanitize=fuzzer,address,undefined -fopenmp: $(head -n 1 "$tmp/err")" >&2
    exit 1
fi
exit 0
