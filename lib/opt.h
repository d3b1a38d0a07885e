/* opt.h: checked parsing of numbers given on the command line or in config files.
 *
 * Never atoi: every parser rejects empty strings, trailing garbage, overflow and out-of-range
 * values with a message naming the option and the value.
 */
#ifndef PG_OPT_H
#define PG_OPT_H

#include <stdint.h>

/* Parses a decimal integer with an optional suffix k/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti
 * (powers of 1024), e.g. "100M" = 100000000, into [min, max]. `what` names the option for the
 * message ("--vocab"). @return 0, or PG_E_INVAL. */
int pg_parse_i64(const char *what, const char *s, int64_t min, int64_t max, int64_t *out);

/* Like pg_parse_i64 for an int. @return 0, or PG_E_INVAL. */
int pg_parse_int(const char *what, const char *s, int min, int max, int *out);

/* Parses a finite floating-point number (strtod syntax) into [min, max]. @return 0, or PG_E_INVAL. */
int pg_parse_f64(const char *what, const char *s, double min, double max, double *out);

#endif
