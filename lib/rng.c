/* rng.c: splitmix64 seeding + xoshiro256** (public-domain algorithms by Vigna and Blackman). */
#include "rng.h"

#include <math.h>

uint64_t pg_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void pg_rng_seed(struct pg_rng *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++) r->s[i] = pg_splitmix64(&st);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pg_rng_u64(struct pg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t pg_rng_below(struct pg_rng *r, uint64_t n)
{
    /* Rejection sampling on the top of the range keeps every residue equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = pg_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double pg_rng_uniform(struct pg_rng *r) { return (double)(pg_rng_u64(r) >> 11) * 0x1.0p-53; }

double pg_rng_normal(struct pg_rng *r)
{
    double u1 = 1.0 - pg_rng_uniform(r); /* (0, 1]: log is finite */
    double u2 = pg_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
