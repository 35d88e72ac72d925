/* SPDX-License-Identifier: MIT */
/*
 * rng.c - xoshiro256** (Blackman and Vigna, 2018) with splitmix64 seeding: small, fast, and good
 * enough for sampling and search; never for anything that needs to be unpredictable.
 */
#include <config.h>

#include "runtime/base/rng.h"

uint64_t
mt_rng_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
mt_rng_init(struct mt_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        rng->s[i] = mt_rng_splitmix64(&seed);
    }
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
mt_rng_next(struct mt_rng *rng)
{
    uint64_t *s = rng->s;
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

double
mt_rng_uniform(struct mt_rng *rng)
{
    return (double)(mt_rng_next(rng) >> 11) * 0x1.0p-53;
}

uint64_t
mt_rng_below(struct mt_rng *rng, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)mt_rng_next(rng) * n) >> 64);
}
