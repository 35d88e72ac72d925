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

/* Whether p starts a control character: C0 (and DEL) as a byte, or C1 (U+0080..U+009F, which
 * a terminal may take for CSI and the like) as its two UTF-8 bytes. Returns its length, or 0. */
static size_t
control_len(const unsigned char *p)
{
    if (*p < 0x20 || *p == 0x7f) {
        return 1;
    }
    return p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f ? 2 : 0;
}

/*
 * Copy src to dst (size bytes, NUL included) with every control character written as \xNN a
 * byte: messages quote names and strings from files and requests, and a byte of those must not
 * move the terminal's cursor, colour it, or split one message into lines that look like two.
 */
static void
copy_clean(char *dst, size_t size, const char *src)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)src; *p != 0;) {
        size_t ctl = control_len(p);
        if (o + (ctl > 0 ? 4 * ctl : 1) >= size) {
            break;
        }
        if (ctl == 0) {
            dst[o++] = (char)*p++;
        }
        for (size_t k = 0; k < ctl; k++) {
            o += (size_t)snprintf(dst + o, size - o, "\\x%02x", *p++);
        }
    }
    dst[o] = 0;
}

mt_status_t
mt_fail(mt_status_t st, int errnum, const char *fmt, ...)
{
    char raw[sizeof(last_error)];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (errnum != 0) {
        n = strlen(raw);
        snprintf(raw + n, sizeof(raw) - n, ": %s", strerror(errnum));
    }
    copy_clean(last_error, sizeof(last_error), raw);
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

bool
mt_log_set_quiet(bool q)
{
    bool was = quiet;

    quiet = q;
    return was;
}

/* One line on stderr: prefix, then text with its control characters escaped (copy_clean). */
static void
put_line(const char *prefix, const char *text)
{
    size_t size = 4 * strlen(text) + 1;
    char small[1024];
    char *clean = size <= sizeof(small) ? small : malloc(size);

    if (clean == NULL) {
        fprintf(stderr, "%s(a message that could not be printed: out of memory)\n", prefix);
        return;
    }
    copy_clean(clean, size, text);
    fprintf(stderr, "%s%s\n", prefix, clean);
    if (clean != small) {
        free(clean);
    }
}

/* put_line of a printf format, of any length. */
void
mt_log_vline(const char *prefix, const char *fmt, va_list ap)
{
    char small[1024];
    char *text = small;
    va_list again;
    int n;

    va_copy(again, ap);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n >= (int)sizeof(small) && (text = malloc((size_t)n + 1)) != NULL) {
        vsnprintf(text, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    put_line(prefix, text != NULL ? text : small);
    if (text != small) {
        free(text);
    }
}

void
mt_log_line(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    mt_log_vline("", fmt, ap);
    va_end(ap);
}

void
mt_log_text(const char *text)
{
    size_t n = strlen(text);
    char *line = strndup(text, n > 0 && text[n - 1] == '\n' ? n - 1 : n);

    put_line("", line != NULL ? line : "(a message that could not be printed: out of memory)");
    free(line);
}

void
mt_log_info(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    mt_log_vline("mt: ", fmt, ap);
    va_end(ap);
}

void
mt_log_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    mt_log_vline("mt: warning: ", fmt, ap);
    va_end(ap);
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
