/* SPDX-License-Identifier: MIT */
/*
 * rng.h - moetier's one pseudo-random generator: xoshiro256** seeded through splitmix64.
 *
 * The one idea: every random choice in moetier (sampling, the planner's search, tests, benchmark
 * orders) is reproducible from a 64-bit seed, so a run can be repeated exactly. Embedded by value
 * (mt_rng_init); not thread-safe: one generator per thread.
 */
#ifndef MT_RNG_H
#define MT_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mt_rng {
    uint64_t s[4];
};

/* Seed the state from one 64-bit seed (any value, 0 included). */
void mt_rng_init(struct mt_rng *rng, uint64_t seed);

/* The next 64 random bits. */
uint64_t mt_rng_next(struct mt_rng *rng);

/* Uniform double in [0, 1), 53 random bits. */
double mt_rng_uniform(struct mt_rng *rng);

/* Uniform integer in [0, n) for n >= 1 (multiply-shift; bias below 2^-32 for n < 2^32). */
uint64_t mt_rng_below(struct mt_rng *rng, uint64_t n);

/* splitmix64: one step of the seeding generator; also a good 64-bit mixer for keyed hashing. */
uint64_t mt_rng_splitmix64(uint64_t *state);

#ifdef __cplusplus
}
#endif

#endif /* MT_RNG_H */
