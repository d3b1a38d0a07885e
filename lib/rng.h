/* rng.h: the deterministic random number generator of pgolf.
 *
 * xoshiro256** seeded through splitmix64: fast, 256 bits of state, the same stream on every
 * platform for the same seed. State is a plain struct so it can be checkpointed and restored
 * bit-exactly. Not cryptographic.
 */
#ifndef PG_RNG_H
#define PG_RNG_H

#include <stdint.h>

struct pg_rng {
    uint64_t s[4];
};

/* splitmix64 step: advances *state and returns the next output (used for seeding). */
uint64_t pg_splitmix64(uint64_t *state);

/* Seeds the generator from a 64-bit seed. */
void pg_rng_seed(struct pg_rng *r, uint64_t seed);

/* @return 64 random bits. */
uint64_t pg_rng_u64(struct pg_rng *r);

/* @return a uniform integer in [0, n) without modulo bias (n > 0). */
uint64_t pg_rng_below(struct pg_rng *r, uint64_t n);

/* @return a uniform double in [0, 1) with 53 random bits. */
double pg_rng_uniform(struct pg_rng *r);

/* @return a standard normal deviate (Box–Muller; one of each pair is used, so the stream
 * position is simple to reason about: two u64 draws per call). */
double pg_rng_normal(struct pg_rng *r);

#endif
