// tok_spm.cc: the extern "C" shim over SentencePiece's C++ API (see tok.h). The only C++ file of
// pgolf: SentencePiece has no C API. Exceptions never cross into C: every entry point catches.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
#include "err.h"
#include "tok.h"
}

struct pg_tok {
    sentencepiece::SentencePieceProcessor sp;
    std::vector<int> kind;
    bool word_cache;    // splitting into words and memoizing them is exact for this model
    unsigned long serial; // identifies this load to the per-thread caches (addresses get reused)
    size_t anchor_n;      // ids of the word-cache anchor "x"
};

namespace {

int kind_of(const sentencepiece::SentencePieceProcessor &sp, int id)
{
    // The public API exposes only these predicates; user-defined pieces read as normal.
    if (sp.IsByte(id)) return PG_PIECE_BYTE;
    if (sp.IsControl(id)) return PG_PIECE_CONTROL;
    if (sp.IsUnknown(id)) return PG_PIECE_UNKNOWN;
    if (sp.IsUnused(id)) return PG_PIECE_UNUSED;
    return PG_PIECE_NORMAL;
}

// ---- the normalizer's character map ----
//
// libsentencepiece trusts a model's precompiled character map (NormalizerSpec field 2: a uint32
// trie size, a darts-clone double-array trie, then NUL-terminated replacement strings): a damaged
// one makes Normalize read outside it (a SEGV found by tests/fuzz/fuzz_spm), so pg_tok_load checks
// every map of the model before it encodes anything. The check walks the trie from the root as
// darts-clone's commonPrefixSearch does, and requires that every unit a lookup can read, for any
// input byte, is inside the array, and that every value it can return starts a string inside the
// replacement blob, which ends with a NUL.

bool pb_varint(const unsigned char *&p, const unsigned char *end, uint64_t &v)
{
    v = 0;
    for (int shift = 0; p < end && shift < 64; shift += 7) {
        unsigned char b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

// Calls f(field, bytes, len) for each length-delimited field of a protobuf message.
// @return false if the message is malformed.
template <class F> bool pb_fields(const unsigned char *p, const unsigned char *end, F f)
{
    while (p < end) {
        uint64_t key, v;
        if (!pb_varint(p, end, key)) return false;
        switch (key & 7) {
        case 0: if (!pb_varint(p, end, v)) return false; break;
        case 1: if (end - p < 8) return false; p += 8; break;
        case 5: if (end - p < 4) return false; p += 4; break;
        case 2:
            if (!pb_varint(p, end, v) || v > (uint64_t)(end - p)) return false;
            if (!f(key >> 3, p, (size_t)v)) return false;
            p += v;
            break;
        default: return false;
        }
    }
    return true;
}

bool charsmap_ok(const unsigned char *blob, size_t size)
{
    if (size == 0) return true; // no map: the identity
    if (size <= 4) return false;
    uint32_t trie_bytes = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
    if (trie_bytes >= size - 4) return false;
    size_t n = trie_bytes / 4, strings = size - 4 - trie_bytes;
    const unsigned char *units = blob + 4, *str = units + trie_bytes;
    if (n == 0 || str[strings - 1] != 0) return false;
    auto unit = [&](size_t i) {
        const unsigned char *u = units + 4 * i;
        return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    };
    auto offset = [](uint32_t u) { return (size_t)((u >> 10) << ((u & (1u << 9)) >> 6)); };
    std::vector<char> seen(n, 0);
    std::vector<size_t> todo{0};
    seen[0] = 1;
    while (!todo.empty()) {
        size_t p = todo.back();
        todo.pop_back();
        size_t base = p ^ offset(unit(p));
        if ((base | 0xff) >= n) return false; // a lookup reads base ^ c for every input byte c
        if (p && (unit(p) >> 8 & 1) && (unit(base) & 0x7fffffffu) >= strings) return false; // has_leaf: value
        for (size_t c = 0; c < 256; c++) { // a NUL in the text is looked up too
            size_t q = base ^ c;
            if ((unit(q) & (0x80000000u | 0xffu)) == c && !seen[q]) { // label(q) == c: a child
                seen[q] = 1;
                todo.push_back(q);
            }
        }
    }
    return true;
}

// Every precompiled map in the model (the normalizer's, field 3, and the denormalizer's, field 5).
bool model_charsmaps_ok(const std::string &proto)
{
    const unsigned char *p = (const unsigned char *)proto.data();
    return pb_fields(p, p + proto.size(), [](uint64_t field, const unsigned char *m, size_t len) {
        if (field != 3 && field != 5) return true;
        return pb_fields(m, m + len, [](uint64_t f, const unsigned char *b, size_t n) { return f != 2 || charsmap_ok(b, n); });
    });
}

// ---- the word cache ----
//
// SentencePiece's BPE spends its time merging symbol pairs, and English repeats its words. With a
// vocabulary in which "▁" (the escaped space) only ever starts a piece, no piece spans a space,
// so a text's ids are the concatenation of its words' ids, each word taken with its leading
// space. pg_tok_encode therefore cuts a text at single spaces, tabs or newlines that sit between
// two printable ASCII characters (where normalization maps the whitespace to one "▁" and leaves
// its neighbours alone), encodes each word through SentencePiece as "x word" (an input cannot
// begin with a space: normalization strips it) and drops the ids of the anchor "x", and
// memoizes the result per thread. The ids are SentencePiece's own; tests compare them with
// spm_encode on whole documents. pg_tok_load enables the cache only for a model that passes
// the checks in word_cache_exact; PG_TOK_NO_WORD_CACHE=1 disables it.

const char kSpaceSymbol[] = "\xe2\x96\x81";
const char kAnchor[] = "x ";

inline bool word_byte(unsigned char c) { return c > 0x20 && c < 0x7f; }
inline bool split_byte(unsigned char c) { return c == ' ' || c == '\n' || c == '\t'; }

// Calls f(begin, end, after_space) for each segment of s, in order.
template <class F> void for_each_word(const char *s, size_t n, F f)
{
    size_t start = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (split_byte((unsigned char)s[i]) && word_byte((unsigned char)s[i - 1]) && word_byte((unsigned char)s[i + 1])) {
            f(start, i, start != 0);
            start = i + 1;
            i++; // s[i + 1] is a word byte: no split there
        }
    }
    f(start, n, start != 0);
}

// Encodes through SentencePiece, appending to out. Throws on a SentencePiece error.
void spm_append(const sentencepiece::SentencePieceProcessor &sp, absl::string_view text, std::vector<int> &out)
{
    thread_local std::vector<int> ids;
    auto st = sp.Encode(text, &ids);
    if (!st.ok()) throw std::runtime_error(st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
}

// The lookup key of a word: "x word" after a space (the anchor's ids are dropped), else the word.
void word_key(std::string &key, const char *word, size_t n, bool after_space)
{
    key.assign(after_space ? kAnchor : "");
    key.append(word, n);
}

// Encodes a word key, appending its ids (without the anchor's) to out.
void encode_word(const pg_tok *t, const std::string &key, bool after_space, std::vector<int> &out)
{
    size_t at = out.size();
    spm_append(t->sp, key, out);
    if (after_space) {
        if (out.size() - at < t->anchor_n) throw std::runtime_error("word cache: anchor lost");
        out.erase(out.begin() + (long)at, out.begin() + (long)(at + t->anchor_n));
    }
}

// Word by word without the cache (for the load-time check).
std::vector<int> encode_by_words(const pg_tok *t, const std::string &text)
{
    std::vector<int> out;
    std::string key;
    for_each_word(text.data(), text.size(), [&](size_t b, size_t e, bool after_space) {
        word_key(key, text.data() + b, e - b, after_space);
        encode_word(t, key, after_space, out);
    });
    return out;
}

// The cache is exact when no piece holds whitespace or a "▁" past its start, when the anchor
// "x " encodes as the ids of "x" followed by the space's, and when word-by-word encoding
// reproduces whole-text encoding on probes that would expose a dummy prefix, a normalizer that
// keeps newlines or tabs, or a piece spanning a space.
bool word_cache_exact(pg_tok *t)
{
    for (size_t id = 0; id < t->kind.size(); id++) {
        if (t->kind[id] != PG_PIECE_NORMAL) continue;
        const std::string &p = t->sp.IdToPiece((int)id);
        if (p.find(kSpaceSymbol, 1) != std::string::npos) return false;
        for (unsigned char c : p)
            if (split_byte(c)) return false;
    }
    std::vector<int> anchor, anchored;
    spm_append(t->sp, "x", anchor);
    spm_append(t->sp, "x y", anchored);
    if (anchor.empty() || anchored.size() <= anchor.size() ||
        !std::equal(anchor.begin(), anchor.end(), anchored.begin()))
        return false;
    t->anchor_n = anchor.size();
    const char *probes[] = {"x y", "ab cd\nef\tgh", "The quick, brown fox: 42 jumps.\nIt's 3.14 (pi) today!",
                            "a,b c;d e-f g_h i=j k/l", "Hello world. Hello world.", "x x x"};
    for (const char *p : probes) {
        std::vector<int> whole;
        spm_append(t->sp, p, whole);
        if (whole != encode_by_words(t, p)) return false;
    }
    return true;
}

struct WordCache {
    unsigned long owner = 0;
    std::unordered_map<std::string, std::vector<int>> map;
    std::string key;
};

// Bounded: a cache this large is cleared and refilled, so memory stays flat on any input. Small
// enough to stay in cache memory; English's frequent words fit many times over.
const size_t kWordCacheMax = 1u << 18;
// Longer segments (URLs, code, runs without a splittable space) are rare and mostly unique:
// they go straight to SentencePiece instead of filling the cache.
const size_t kWordMaxBytes = 64;

void encode_cached(const pg_tok *t, const char *text, size_t len, std::vector<int> &out)
{
    thread_local WordCache cache;
    if (cache.owner != t->serial) {
        cache.map.clear();
        cache.owner = t->serial;
    }
    for_each_word(text, len, [&](size_t b, size_t e, bool after_space) {
        word_key(cache.key, text + b, e - b, after_space);
        if (e - b > kWordMaxBytes) {
            encode_word(t, cache.key, after_space, out);
            return;
        }
        auto it = cache.map.find(cache.key);
        if (it == cache.map.end()) {
            if (cache.map.size() >= kWordCacheMax) cache.map.clear();
            std::vector<int> ids;
            encode_word(t, cache.key, after_space, ids);
            it = cache.map.emplace(cache.key, std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    });
}

// Feeds documents from the C callback to the trainer.
class DocIterator : public sentencepiece::SentenceIterator {
  public:
    DocIterator(pg_tok_doc_fn next, void *ctx) : next_(next), ctx_(ctx) { Next(); }
    bool done() const override { return done_; }
    void Next() override
    {
        const char *text = nullptr;
        size_t len = 0;
        int rc = next_(ctx_, &text, &len);
        if (rc < 0) {
            error_ = rc;
            done_ = true;
            status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, pg_error_message());
        } else if (rc == 0) {
            done_ = true;
        } else {
            value_.assign(text, len);
        }
    }
    const std::string &value() const override { return value_; }
    sentencepiece::util::Status status() const override { return status_; }
    int error() const { return error_; }

  private:
    pg_tok_doc_fn next_;
    void *ctx_;
    bool done_ = false;
    int error_ = 0;
    std::string value_;
    sentencepiece::util::Status status_;
};

} // namespace

extern "C" int pg_tok_load(struct pg_tok **out, const char *path)
{
    *out = nullptr;
    try {
        // owned here until the end, so a SentencePiece exception (an encode of a damaged model in
        // word_cache_exact, found by fuzz_spm) does not leak it
        std::unique_ptr<pg_tok> t(new pg_tok);
        auto st = t->sp.Load(path);
        if (!st.ok()) {
            FILE *f = fopen(path, "rb");
            if (!f) return pg_error_errno(PG_E_IO, "cannot open tokenizer '%s'", path);
            fclose(f);
            return pg_error(PG_E_FORMAT, "%s: not a SentencePiece model", path);
        }
        if (!model_charsmaps_ok(t->sp.serialized_model_proto())) {
            return pg_error(PG_E_FORMAT, "%s: not a SentencePiece model (its normalizer's character map is damaged)",
                            path);
        }
        int n = t->sp.GetPieceSize();
        t->kind.resize((size_t)n);
        for (int i = 0; i < n; i++) t->kind[(size_t)i] = kind_of(t->sp, i);
        static std::atomic<unsigned long> loads{0};
        t->serial = ++loads;
        const char *off = std::getenv("PG_TOK_NO_WORD_CACHE");
        t->word_cache = !(off && *off && std::strcmp(off, "0") != 0) && word_cache_exact(t.get());
        *out = t.release();
        return 0;
    } catch (const std::bad_alloc &) {
        return pg_error(PG_E_NOMEM, "out of memory loading '%s'", path);
    } catch (const std::exception &e) {
        return pg_error(PG_E_LIB, "%s: %s", path, e.what());
    }
}

extern "C" void pg_tok_free(struct pg_tok *t) { delete t; }

extern "C" int pg_tok_vocab_size(const struct pg_tok *t) { return (int)t->kind.size(); }

extern "C" const char *pg_tok_piece(const struct pg_tok *t, int id) { return t->sp.IdToPiece(id).c_str(); }

extern "C" int pg_tok_piece_kind(const struct pg_tok *t, int id) { return t->kind[(size_t)id]; }

extern "C" int pg_tok_bos_id(const struct pg_tok *t) { return t->sp.bos_id(); }

extern "C" void pg_tok_special_ids(const struct pg_tok *t, int *pad, int *bos, int *eos, int *unk)
{
    *pad = t->sp.pad_id();
    *bos = t->sp.bos_id();
    *eos = t->sp.eos_id();
    *unk = t->sp.unk_id();
}

extern "C" int pg_tok_encode(const struct pg_tok *t, const char *text, size_t len, struct pg_ids *out)
{
    try {
        // One vector per thread, reused: steady state allocates nothing.
        thread_local std::vector<int> ids;
        ids.clear();
        if (t->word_cache) encode_cached(t, text, len, ids);
        else spm_append(t->sp, absl::string_view(text, len), ids);
        size_t need = out->n + ids.size();
        if (need > out->cap) {
            size_t cap = out->cap ? out->cap : 256;
            while (cap < need) cap *= 2;
            int *v = (int *)std::realloc(out->v, cap * sizeof(int));
            if (!v) return pg_error(PG_E_NOMEM, "out of memory for %zu token ids", need);
            out->v = v;
            out->cap = cap;
        }
        if (!ids.empty()) std::memcpy(out->v + out->n, ids.data(), ids.size() * sizeof(int));
        out->n = need;
        return 0;
    } catch (const std::bad_alloc &) {
        return pg_error(PG_E_NOMEM, "out of memory encoding %zu bytes", len);
    } catch (const std::exception &e) {
        return pg_error(PG_E_LIB, "SentencePiece encode failed: %s", e.what());
    }
}

extern "C" int pg_tok_decode(const struct pg_tok *t, const int *ids, size_t n, char **text, size_t *len)
{
    *text = nullptr;
    *len = 0;
    try {
        std::vector<int> v(ids, ids + n);
        std::string s;
        auto st = t->sp.Decode(v, &s);
        if (!st.ok()) return pg_error(PG_E_LIB, "SentencePiece decode failed: %s", st.ToString().c_str());
        char *p = (char *)std::malloc(s.size() + 1);
        if (!p) return pg_error(PG_E_NOMEM, "out of memory decoding %zu ids", n);
        std::memcpy(p, s.data(), s.size());
        p[s.size()] = 0;
        *text = p;
        *len = s.size();
        return 0;
    } catch (const std::bad_alloc &) {
        return pg_error(PG_E_NOMEM, "out of memory decoding %zu ids", n);
    } catch (const std::exception &e) {
        return pg_error(PG_E_LIB, "SentencePiece decode: %s", e.what());
    }
}

extern "C" int pg_tok_train(const char *args, pg_tok_doc_fn next, void *ctx, char **model, size_t *model_len)
{
    *model = nullptr;
    *model_len = 0;
    try {
        DocIterator it(next, ctx);
        std::string proto;
        auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
        if (it.error()) return it.error(); // the reader's own message is already recorded
        if (!st.ok()) return pg_error(PG_E_LIB, "SentencePiece training failed: %s", st.ToString().c_str());
        char *p = (char *)std::malloc(proto.size() ? proto.size() : 1);
        if (!p) return pg_error(PG_E_NOMEM, "out of memory for a %zu-byte model", proto.size());
        std::memcpy(p, proto.data(), proto.size());
        *model = p;
        *model_len = proto.size();
        return 0;
    } catch (const std::bad_alloc &) {
        return pg_error(PG_E_NOMEM, "out of memory while training the tokenizer");
    } catch (const std::exception &e) {
        return pg_error(PG_E_LIB, "SentencePiece training: %s", e.what());
    }
}

extern "C" void pg_ids_free(struct pg_ids *ids)
{
    std::free(ids->v);
    ids->v = nullptr;
    ids->n = ids->cap = 0;
}

extern "C" int pg_tok_word_cache(const struct pg_tok *t) { return t->word_cache; }
