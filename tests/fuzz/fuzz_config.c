/* fuzz_config.c: config files (pg_config_load_file: "key = value" lines, comments), then the
 * cross-field rules (pg_config_validate) and the parameter count of a valid shape. */
#include "fuzz.h"

#include "../../lib/config.h"
#include "../../lib/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pg_config cfg;
    pg_config_default(&cfg);
    int rc = pg_config_load_file(&cfg, fuzz_file(data, size, ".cfg"));
    fuzz_check_error(rc);
    if (!rc && pg_config_validate(&cfg, 0) == 0) {
        size_t np;
        fuzz_check_error(pg_model_count_params(&cfg, &np));
    }
    pg_error_clear();
    return 0;
}
