/* SPDX-License-Identifier: MIT */
/*
 * status.c - status names, the per-thread last error, and stderr logging.
 */
#include <config.h>

#include "runtime/base/status.h"

#include <execinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];
static _Thread_local bool quiet;

const char *
mt_status_str(mt_status_t st)
{
    switch (st) {
    case MT_OK: return "success";
    case MT_ERR_NOMEM: return "out of memory";
    case MT_ERR_INVAL: return "invalid argument";
    case MT_ERR_IO: return "input/output error";
    case MT_ERR_CUDA: return "CUDA error";
    case MT_ERR_FORMAT: return "malformed file";
    case MT_ERR_UNSUPPORTED: return "not supported here";
    case MT_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

mt_status_t
mt_fail(mt_status_t st, int errnum, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    if (errnum != 0) {
        n = strlen(last_error);
        snprintf(last_error + n, sizeof(last_error) - n, ": %s", strerror(errnum));
    }
    if (!quiet) {
        fprintf(stderr, "mt: %s\n", last_error);
    }
    return st;
}

const char *
mt_last_error(void)
{
    return last_error;
}

void
mt_log_set_quiet(bool q)
{
    quiet = q;
}

void
mt_log_info(const char *fmt, ...)
{
    va_list ap;

    fputs("mt: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
mt_log_warn(const char *fmt, ...)
{
    va_list ap;

    fputs("mt: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void
mt_assert_fail_(const char *expr, const char *file, int line)
{
    void *frames[32];
    int n;

    fprintf(stderr, "mt: assertion failed at %s:%d: %s\n", file, line, expr);
    n = backtrace(frames, 32);
    backtrace_symbols_fd(frames, n, 2);
    abort();
}
