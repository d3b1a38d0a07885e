/* fuzz_spm.c: the SentencePiece model load path (pg_tok_load: the protobuf, the normalizer, the
 * piece table), then what pgolf does with a loaded model: its special ids and piece kinds, the
 * val_bpb byte tables, and an encode/decode of a short text. */
#include "fuzz.h"

#include "../../lib/bpb.h"
#include "../../lib/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pg_tok *t;
    int rc = pg_tok_load(&t, fuzz_file(data, size, ".model"));
    if (!rc) {
        int v = pg_tok_vocab_size(t), pad, bos, eos, unk;
        pg_tok_special_ids(t, &pad, &bos, &eos, &unk);
        for (int i = 0; i < v && i < 4096; i++) {
            const char *p = pg_tok_piece(t, i);
            if (!p) abort();
            (void)pg_tok_piece_kind(t, i);
        }
        struct pg_bpb_lut lut;
        if (pg_bpb_lut_from_tok(&lut, t, v > 0 ? v : 1) == 0) pg_bpb_lut_free(&lut);
        pg_error_clear();
        static const char text[] = "Hello, wor\xc3\xa9ld! 12 \xe2\x96\x81x";
        struct pg_ids ids = {0};
        if (pg_tok_encode(t, text, sizeof text - 1, &ids) == 0) {
            char *out;
            size_t len;
            for (size_t i = 0; i < ids.n; i++)
                if (ids.v[i] < 0 || ids.v[i] >= v) abort();
            if (pg_tok_decode(t, ids.v, ids.n, &out, &len) == 0) free(out);
        }
        pg_error_clear();
        pg_ids_free(&ids);
        pg_tok_free(t);
    }
    fuzz_check_error(rc);
    return 0;
}
