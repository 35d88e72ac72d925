/* SPDX-License-Identifier: MIT */
/*
 * clock.h - the one clock for timing: CLOCK_MONOTONIC in seconds as a double (never goes back,
 * unaffected by NTP steps; microsecond resolution is plenty for what we time).
 */
#ifndef MT_CLOCK_H
#define MT_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds since an arbitrary fixed point; only differences mean anything. */
double mt_clock_now(void);

#ifdef __cplusplus
}
#endif

#endif /* MT_CLOCK_H */
