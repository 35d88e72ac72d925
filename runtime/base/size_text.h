/* SPDX-License-Identifier: MIT */
/*
 * size_text.h - a byte count for a message: GiB with two decimals from 1 GiB up, MiB from 1 MiB,
 * else KiB, so that "24.0 GiB is too small ... need 24.0 GiB" cannot happen and a test model's
 * budget of a few MiB does not print as 0.0 GiB.
 */
#ifndef MT_SIZE_TEXT_H
#define MT_SIZE_TEXT_H

#include <stdint.h>

struct mt_size_text {
    char s[32];
};

/* "23.99 GiB", "4.0 MiB", "512.0 KiB"; by value, so several fit in one printf. */
struct mt_size_text mt_size_text(uint64_t bytes);

#endif /* MT_SIZE_TEXT_H */
