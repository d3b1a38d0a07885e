#!/bin/sh
# test-man.sh: the manual pages in man/ format cleanly, and the pages of the commands that exist
# document exactly the options of their --help. TAP output; exits 1 if any check fails.
#
#   (a) every man/*.[157] passes `groff -t -man -ww -z` with nothing on stderr, and
#       `mandoc -Tlint -Wwarning` when mandoc is installed (it is not required);
#   (b) for every pg-* command: every option of `CMD --help` is an item of the
#       OPTIONS section of man/CMD.1, with its short form, and every option that section names
#       is in --help; for pg-train also that each configuration flag's item gives the default
#       that --help prints;
#   (c) each of those pages renders (man -l, or groff -Tutf8) and shows its NAME line.
#
# Environment: PG_BIN, the folder of the pg-* binaries (default bin).
set -u
cd "$(dirname "$0")/../.." || exit 2
BIN=${PG_BIN:-bin}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pg-test-man.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/#   /' "$1" | head -n 20; }
have() { command -v "$1" >/dev/null 2>&1; }

pages=$(ls man/*.1 man/*.5 man/*.7 2>/dev/null)
if [ -z "$pages" ]; then
    not_ok "man/ holds manual pages"
fi

# ---- (a) every page formats without a warning ----

for page in $pages; do
    if ! have groff; then
        skip "$page: groff -ww" "groff is not installed"
        continue
    fi
    groff -t -man -ww -z "$page" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ] && [ ! -s "$tmp/out" ]; then
        ok "$page: groff -ww is silent"
    else
        not_ok "$page: groff -ww is silent (exit $rc)"
        cat "$tmp/out" "$tmp/err" >"$tmp/both"
        diag "$tmp/both"
    fi
    if have mandoc; then
        mandoc -Tlint -Wwarning "$page" >"$tmp/out" 2>&1
        rc=$?
        if [ $rc -eq 0 ] && [ ! -s "$tmp/out" ]; then
            ok "$page: mandoc -Tlint -Wwarning is clean"
        else
            not_ok "$page: mandoc -Tlint -Wwarning is clean (exit $rc)"
            diag "$tmp/out"
        fi
    fi
done

# ---- (b) man/CMD.1 OPTIONS == CMD --help ----

# check_options CMD: compares the OPTIONS section of man/CMD.1 with `CMD --help`.
check_options() {
    cmd=$1
    page=man/$cmd.1
    if [ ! -x "$BIN/$cmd" ]; then
        not_ok "$BIN/$cmd exists (run make)"
        return
    fi
    if [ ! -f "$page" ]; then
        not_ok "$page exists"
        return
    fi
    "$BIN/$cmd" --help >"$tmp/help" 2>&1
    # The option column of --help: lines such as "  -i, --input FILE" or "      --text".
    # Writes "LONG SHORT" per option (SHORT is "-" when there is none).
    awk '/^ +(-[A-Za-z], )?--[a-z]/ {
            short = "-"; long = ""
            if (match($0, /^ +-[A-Za-z],/)) { s = substr($0, RSTART, RLENGTH); sub(/^ +/, "", s); sub(/,$/, "", s); short = s }
            if (match($0, /--[a-z][a-z0-9-]*/)) long = substr($0, RSTART, RLENGTH)
            if (long != "") print long, short
        }' "$tmp/help" | sort -u >"$tmp/help-opts"

    # The OPTIONS section of the page, with roff's \- turned back into - and font escapes
    # (\fB, \f(CW, \f[I]) and \& removed; its item tags are the lines after each .TP.
    sed -e 's/\\-/-/g' -e 's/\\f[A-Z1-9]//g' -e 's/\\f([A-Z][A-Z]//g' -e 's/\\f\[[^]]*\]//g' \
        -e 's/\\&//g' "$page" | awk '/^\.SH/ { in_opts = ($0 ~ /^\.SH +"?OPTIONS"?[ \t]*$/); next } in_opts' \
        >"$tmp/options"
    awk 'prev ~ /^\.TP/ { print } { prev = $0 }' "$tmp/options" >"$tmp/tags"
    grep -o -- '--[a-z][a-z0-9-]*' "$tmp/options" | sort -u >"$tmp/man-opts"

    if [ "$(wc -l <"$tmp/help-opts")" -lt 5 ]; then
        not_ok "$cmd --help lists its options"
        diag "$tmp/help"
    else
        ok "$cmd --help lists $(wc -l <"$tmp/help-opts" | tr -d ' ') options"
    fi

    # Each option of --help is an item of OPTIONS, tagged with its short form when it has one.
    missing=""
    while read -r long short; do
        if [ "$short" = "-" ]; then
            grep -Eq -- "${long}([^a-z0-9-]|\$)" "$tmp/tags" || missing="$missing $long"
        else
            grep -E -- "${long}([^a-z0-9-]|\$)" "$tmp/tags" | grep -Eq -- "(^|[^a-zA-Z0-9-])${short}([^a-zA-Z0-9-]|\$)" ||
                missing="$missing $short,$long"
        fi
    done <"$tmp/help-opts"
    if [ -z "$missing" ]; then
        ok "$page OPTIONS documents every option of --help"
    else
        not_ok "$page OPTIONS documents every option of --help"
        echo "#   missing:$missing"
    fi

    # Each option named in OPTIONS is in --help.
    extra=""
    while read -r long; do
        grep -q -- "^$long " "$tmp/help-opts" || extra="$extra $long"
    done <"$tmp/man-opts"
    if [ -z "$extra" ]; then
        ok "$page OPTIONS names no option that --help lacks"
    else
        not_ok "$page OPTIONS names no option that --help lacks"
        echo "#   not in --help:$extra"
    fi
}

# check_config_defaults: each configuration flag of `pg-train --help` ("--vocab N  ... (1024)")
# has an item in man/pg-train.1 whose first body line, "[key, ENV, default]", ends in the same
# default. Uses $tmp/help and $tmp/options as check_options left them for pg-train.
check_config_defaults() {
    page=man/pg-train.1
    awk '/^Config flags/ { on = 1; next }
         on && /^ +--[a-z]/ {
            if (match($0, /--[a-z][a-z0-9-]*/)) long = substr($0, RSTART, RLENGTH)
            d = $0; sub(/\)[ \t]*$/, "", d); sub(/.*\(/, "", d)
            print long, d
         }' "$tmp/help" | sort >"$tmp/help-defaults"
    # Tag line, then "[key, ENV, default]" on the next line.
    awk 'tag != "" && /^\[/ {
            d = $0; sub(/\][ \t]*$/, "", d); sub(/.*, */, "", d)
            print tag, d
         }
         { tag = "" }
         prev ~ /^\.TP/ && match($0, /^--[a-z][a-z0-9-]*/) { tag = substr($0, RSTART, RLENGTH) }
         { prev = $0 }' "$tmp/options" | sort >"$tmp/man-defaults"
    if [ "$(wc -l <"$tmp/help-defaults")" -lt 10 ]; then
        not_ok "pg-train --help lists its configuration flags with defaults"
        diag "$tmp/help"
    elif cmp -s "$tmp/help-defaults" "$tmp/man-defaults"; then
        ok "$page gives the default of each of the $(wc -l <"$tmp/help-defaults" | tr -d ' ') configuration flags as --help does"
    else
        not_ok "$page gives the default of each configuration flag as --help does"
        diff "$tmp/help-defaults" "$tmp/man-defaults" | grep '^[<>]' >"$tmp/diff"
        echo "#   < --help, > $page:"
        diag "$tmp/diff"
    fi
}

for cmd in pg-tokenize pg-train pg-quantize pg-pack pg-eval pg-ttt; do
    check_options "$cmd"
    if [ "$cmd" = pg-train ] && [ -f man/pg-train.1 ] && [ -x "$BIN/pg-train" ]; then
        check_config_defaults
    fi
done

# ---- (c) the pages render ----

# check_render PAGE NAME-REGEX: the rendered page has a NAME section whose line matches.
check_render() {
    page=$1
    if [ ! -f "$page" ]; then
        not_ok "$page renders"
        return
    fi
    if have man && have col; then
        MANWIDTH=80 man -l "$page" 2>/dev/null | col -b >"$tmp/rendered"
        how="man -l"
    elif have groff && have col; then
        groff -t -man -Tutf8 "$page" 2>/dev/null | col -b >"$tmp/rendered"
        how="groff -Tutf8"
    else
        skip "$page renders" "neither man nor groff (with col) is installed"
        return
    fi
    # a UTF-8 device may render \- as U+2212 (minus) or U+2010 (hyphen)
    minus=$(printf '\342\210\222') hyphen=$(printf '\342\200\220')
    sed -e "s/$minus/-/g" -e "s/$hyphen/-/g" "$tmp/rendered" >"$tmp/rendered.txt" &&
        mv "$tmp/rendered.txt" "$tmp/rendered"
    if grep -q '^NAME' "$tmp/rendered" && grep -Eq "$2" "$tmp/rendered"; then
        ok "$page renders with $how and shows its NAME line"
    else
        not_ok "$page renders with $how and shows its NAME line"
        diag "$tmp/rendered"
    fi
}

check_render man/pg-tokenize.1 '^ +pg-tokenize +- +train +a +SentencePiece +tokenizer'
check_render man/pg-train.1 '^[[:space:]]+pg-train[[:space:]]+-[[:space:]]+train[[:space:]]+the[[:space:]]+parameter-golf[[:space:]]+GPT'
check_render man/pg-eval.1 '^[[:space:]]+pg-eval[[:space:]]+-[[:space:]]+score[[:space:]]+a[[:space:]]+checkpoint'
check_render man/pg-quantize.1 '^[[:space:]]+pg-quantize[[:space:]]+-[[:space:]]+quantize'
check_render man/pg-pack.1 '^[[:space:]]+pg-pack[[:space:]]+-[[:space:]]+compress[[:space:]]+a[[:space:]]+quantized[[:space:]]+model'
check_render man/pg-ttt.1 '^[[:space:]]+pg-ttt[[:space:]]+-[[:space:]]'

echo "1..$n"
[ "$failed" -eq 0 ]
