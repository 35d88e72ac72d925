/* SPDX-License-Identifier: MIT */
/*
 * status.h - moetier's one status enum and its error reporting.
 *
 * Every fallible function returns mt_status_t. The first function that detects a failure calls
 * mt_fail() once: it logs the message to stderr, keeps it as this thread's mt_last_error(), and
 * returns the status, so the detector writes `return mt_fail(...)` and callers just propagate.
 * This is the one header that every layer (runtime, cpu, io, kernels) may include.
 */
#ifndef MT_STATUS_H
#define MT_STATUS_H

#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mt_status {
    MT_OK = 0,
    MT_ERR_NOMEM = -1,       /* host, pinned or device allocation failed */
    MT_ERR_INVAL = -2,       /* caller passed something we can name */
    MT_ERR_IO = -3,          /* syscall or io_uring failure; message carries strerror */
    MT_ERR_CUDA = -4,        /* CUDA failure; message carries cudaGetErrorString */
    MT_ERR_FORMAT = -5,      /* weights/manifest malformed or version mismatch */
    MT_ERR_UNSUPPORTED = -6, /* absent on this machine: no GPU, no NUMA, old kernel */
    MT_ERR_INTERNAL = -7,    /* broken invariant caught without aborting */
} mt_status_t;

/* Short name of a status ("invalid argument", ...). Never NULL. */
const char *mt_status_str(mt_status_t st);

/*
 * Record and log a failure: "mt: <message>[: strerror(errnum)]". errnum 0 adds no OS reason.
 * Returns st, so detectors write `return mt_fail(MT_ERR_IO, errno, "cannot open '%s'", p);`.
 */
mt_status_t mt_fail(mt_status_t st, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The last message recorded by mt_fail() on this thread ("" if none). Valid until the next fail. */
const char *mt_last_error(void);

/* Silence mt_fail()'s stderr logging on this thread (tests that feed bad input on purpose, or a
 * best-effort read whose failure is not this caller's to report). Returns the setting before,
 * for a caller that restores it. */
bool mt_log_set_quiet(bool quiet);

/* Informational and warning lines on stderr, prefixed "mt: " / "mt: warning: ". */
void mt_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mt_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr: prefix (as it is), then the message of fmt and ap, escaped as above: for
 * callers with a prefix of their own ("moetier run: " for a command's usage errors). */
void mt_log_vline(const char *prefix, const char *fmt, va_list ap);

/* One line on stderr of fmt as it is (no prefix, no newline in fmt), escaped as every message
 * is: for a command's own lines that hold what a user gave (a path, a name). */
void mt_log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A line of another library's text on stderr as it is (no prefix; one trailing newline is the
 * line's own), its control bytes escaped as every message's are. */
void mt_log_text(const char *text);

/* Always-on invariant check: aborts with file:line. Never for user input. */
#define MT_ASSERT(cond)                                                                            \
    ((cond) ? (void)0 : mt_assert_fail_(#cond, __FILE__, __LINE__))
void mt_assert_fail_(const char *expr, const char *file, int line) __attribute__((noreturn));

#define MT_CEIL_DIV(a, b) (((a) + (b)-1) / (b))
#define MT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MT_MAX(a, b) ((a) > (b) ? (a) : (b))

#ifdef __cplusplus
}
#endif

#endif /* MT_STATUS_H */
