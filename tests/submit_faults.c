/* SPDX-License-Identifier: MIT */
/*
 * submit_faults.c - the io_uring_submit wrapper of submit_faults.h (one copy for every io/ test
 * that makes a submit fail).
 */
#include <config.h>

#include "tests/submit_faults.h"

#include <errno.h>
#include <liburing.h>

int submit_faults_left;
int submit_faults_errno = EIO;
int submit_real_count;

int __real_io_uring_submit(struct io_uring *ring);
int __wrap_io_uring_submit(struct io_uring *ring);

int
__wrap_io_uring_submit(struct io_uring *ring)
{
    if (submit_faults_left > 0) {
        submit_faults_left--;
        return -submit_faults_errno;
    }
    submit_real_count++;
    return __real_io_uring_submit(ring);
}
