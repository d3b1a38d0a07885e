#!/bin/sh
# code-unpack.sh: unpacks the source archive that `pg-pack --code-self DIR --code-out FILE`
# writes (and counts as code) into a folder, where `make bin/pg-eval bin/pg-ttt` builds the
# scorers.
#
#   scripts/code-unpack.sh ARCHIVE.xz DIR
#
# The archive is xz of the files laid end to end, each as "PATH\nSIZE\n" and SIZE bytes
# (pg-pack(1), --code-self). Exit status 0, 1 on a damaged archive, 2 usage.
set -eu
[ $# -eq 2 ] || { echo "usage: code-unpack.sh ARCHIVE.xz DIR" >&2; exit 2; }
a=$1 dir=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
xz -dc "$a" >"$tmp" 2>/dev/null || { echo "code-unpack.sh: $a: not an xz archive" >&2; exit 1; }
total=$(wc -c <"$tmp")
off=0
while [ "$off" -lt "$total" ]; do
    path=$(tail -c +$((off + 1)) "$tmp" | head -n 1)
    size=$(tail -c +$((off + 1)) "$tmp" | head -n 2 | tail -n 1)
    case "$path" in
        "" | /* | *..*) echo "code-unpack.sh: $a: bad path '$path' at byte $off" >&2; exit 1 ;;
    esac
    case "$size" in
        "" | *[!0-9]*) echo "code-unpack.sh: $a: bad size '$size' for $path" >&2; exit 1 ;;
    esac
    start=$((off + ${#path} + ${#size} + 2))
    [ $((start + size)) -le "$total" ] || { echo "code-unpack.sh: $a: truncated in $path" >&2; exit 1; }
    mkdir -p "$dir/$(dirname "$path")"
    tail -c +$((start + 1)) "$tmp" | head -c "$size" >"$dir/$path"
    off=$((start + size))
done
