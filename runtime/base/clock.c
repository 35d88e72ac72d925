/* SPDX-License-Identifier: MIT */
/* clock.c - CLOCK_MONOTONIC as seconds. */
#include <config.h>

#include "runtime/base/clock.h"

#include <time.h>

double
mt_clock_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
