/* fuzz_pgq.c: the .pgq quantized model (pg_pgq_parse), with its trailing CRC32 fixed up so the
 * checks behind it are reached; a model that parses is dequantized into its configuration's
 * model (int8/intN rows, fp16 scales, log-delta steps, ternary and quinary codes, LQER). */
#include "fuzz.h"

#include "../../lib/backend.h"
#include "../../lib/pgq.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *b = malloc(size ? size : 1);
    if (!b) abort();
    if (size) memcpy(b, data, size);
    if (size >= 132) {
        uint32_t c = (uint32_t)crc32_z(0, b, size - 4);
        for (int i = 0; i < 4; i++) b[size - 4 + i] = (unsigned char)(c >> (8 * i));
    }
    struct pg_qmodel qm;
    int rc = pg_pgq_parse(b, size, "fuzz", &qm);
    if (!rc) {
        struct pg_model m;
        if (pg_model_init(&m, &qm.cfg, &pg_backend_cpu, 0) == 0) {
            fuzz_check_error(pg_qmodel_dequantize(&qm, &m, "fuzz"));
            pg_model_free(&m);
        }
        pg_qmodel_free(&qm);
    }
    fuzz_check_error(rc);
    free(b);
    return 0;
}
