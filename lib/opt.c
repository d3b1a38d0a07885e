/* opt.c: checked number parsing (see opt.h). */
#define _POSIX_C_SOURCE 200809L
#include "opt.h"

#include "err.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int pg_parse_i64(const char *what, const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s) return pg_error(PG_E_INVAL, "%s: empty value", what);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno == ERANGE)
        return pg_error(PG_E_INVAL, "%s: '%s' is not an integer in range", what, s);
    int64_t mul = 1;
    if (*end) {
        static const char *sfx = "kMGT";
        const char *p = *end ? strchr(sfx, *end == 'K' ? 'k' : *end) : NULL;
        if (!p) return pg_error(PG_E_INVAL, "%s: '%s' is not an integer", what, s);
        int pow = (int)(p - sfx) + 1;
        int base = 1000;
        end++;
        if (*end == 'i') {
            base = 1024;
            end++;
        }
        if (*end) return pg_error(PG_E_INVAL, "%s: '%s' is not an integer", what, s);
        for (int i = 0; i < pow; i++) mul *= base;
    }
    if (v != 0 && (v > INT64_MAX / mul || v < INT64_MIN / mul))
        return pg_error(PG_E_INVAL, "%s: '%s' is too large", what, s);
    int64_t r = (int64_t)v * mul;
    if (r < min || r > max)
        return pg_error(PG_E_INVAL, "%s: %s is out of range [%lld, %lld]", what, s, (long long)min, (long long)max);
    *out = r;
    return 0;
}

int pg_parse_int(const char *what, const char *s, int min, int max, int *out)
{
    int64_t v = 0;
    PG_TRY(pg_parse_i64(what, s, min, max, &v));
    *out = (int)v;
    return 0;
}

int pg_parse_f64(const char *what, const char *s, double min, double max, double *out)
{
    if (!s || !*s) return pg_error(PG_E_INVAL, "%s: empty value", what);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return pg_error(PG_E_INVAL, "%s: '%s' is not a finite number", what, s);
    if (v < min || v > max) return pg_error(PG_E_INVAL, "%s: %s is out of range [%g, %g]", what, s, min, max);
    *out = v;
    return 0;
}
