/* utf8.h: UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
#ifndef PG_UTF8_H
#define PG_UTF8_H

#include <stddef.h>

/* @return the length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid. */
size_t pg_utf8_valid_prefix(const unsigned char *s, size_t n);

#endif
