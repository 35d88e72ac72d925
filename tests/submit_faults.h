/* SPDX-License-Identifier: MIT */
/*
 * submit_faults.h - io_uring_submit made to fail on demand, for the io/ tests. A test program
 * linked with tests/submit_faults.c and -Wl,--wrap=io_uring_submit (tests/Makefile.mk) gets
 * every submit of io/ through __wrap_io_uring_submit: while submit_faults_left > 0 a submit
 * returns -submit_faults_errno without entering the kernel (the SQE stays queued, as after a
 * failed io_uring_enter); the others go to the real io_uring_submit and are counted.
 */
#ifndef MT_TESTS_SUBMIT_FAULTS_H
#define MT_TESTS_SUBMIT_FAULTS_H

extern int submit_faults_left;  /* this many of the next submits fail */
extern int submit_faults_errno; /* with -this (EIO unless a test sets another) */
extern int submit_real_count;   /* submits that reached the kernel */

#endif
