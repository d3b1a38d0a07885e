/* fuzz_docs.c: documents: the first byte's low bit picks JSONL (0) or plain text (1), the rest is
 * the file; every document is read to the end (pg_docs_next). */
#include "fuzz.h"

#include "../../lib/docs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char *in[1] = {(char *)fuzz_file(data + 1, size - 1, ".jsonl")};
    struct pg_docs d;
    int rc = pg_docs_open(&d, in, 1, data[0] & 1);
    if (!rc) {
        const char *text;
        size_t len, total = 0;
        while ((rc = pg_docs_next(&d, &text, &len)) == 1)
            if (len) total += (unsigned char)text[0] + (unsigned char)text[len - 1];
        if (total == 0xdeadbeef) puts("");
        pg_docs_close(&d);
    }
    fuzz_check_error(rc < 0 ? rc : 0);
    return 0;
}
