// tok_spm.cc: the extern "C" shim over SentencePiece's C++ API (see tok.h). The only C++ file of
// pgolf: SentencePiece has no C API. Exceptions never cross into C: every entry point catches.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "err.h"
#include "tok.h"
}

struct pg_tok {
    sentencepiece::SentencePieceProcessor sp;
    std::vector<int> kind;
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
        pg_tok *t = new pg_tok;
        auto st = t->sp.Load(path);
        if (!st.ok()) {
            delete t;
            FILE *f = fopen(path, "rb");
            if (!f) return pg_error_errno(PG_E_IO, "cannot open tokenizer '%s'", path);
            fclose(f);
            return pg_error(PG_E_FORMAT, "%s: not a SentencePiece model", path);
        }
        int n = t->sp.GetPieceSize();
        t->kind.resize((size_t)n);
        for (int i = 0; i < n; i++) t->kind[(size_t)i] = kind_of(t->sp, i);
        *out = t;
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
        // One vector per thread: Encode clears and refills it, so steady state allocates nothing.
        thread_local std::vector<int> ids;
        auto st = t->sp.Encode(absl::string_view(text, len), &ids);
        if (!st.ok()) return pg_error(PG_E_LIB, "SentencePiece encode failed: %s", st.ToString().c_str());
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
        return pg_error(PG_E_LIB, "SentencePiece encode: %s", e.what());
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
