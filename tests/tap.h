/* SPDX-License-Identifier: MIT */
/*
 * tap.h - a tiny TAP producer for `make check` (automake's tap-driver.sh reads it).
 *
 * A test program calls tap_plan(n) (or tap_plan(0) for "count at the end"), one tap_ok() per
 * check, and returns tap_done(), which is non-zero when any check failed. Without a GPU, GPU tests
 * call tap_skip_all("no CUDA device") and return 0.
 */
#ifndef MT_TESTS_TAP_H
#define MT_TESTS_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void tap_plan(int n);
bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tap_skip_all(const char *why);
/* Stop the whole test: data it must have is missing ("Bail out!" is an error, never a pass). */
void tap_bail_out(const char *why) __attribute__((noreturn));
int tap_done(void);

/*
 * One check that got[i] ~ want[i] for all i: |got - want| <= atol + rtol * |want|. On failure,
 * prints the worst index, both values and max |diff|. NaN never passes.
 */
bool mt_test_allclose(const char *name, const float *got, const float *want, size_t n, float atol,
                      float rtol);

/* len bytes of text with control bytes written as escapes (\n, \x09), so that a diagnostic
 * stays one line; a static buffer (4 KiB: longer text is cut). */
const char *tap_one_line(const char *text, size_t len);

/* Path of a file under $MT_TEST_DATA (tests/data); returns a static buffer. */
const char *tap_data_path(const char *rel);

/*
 * A fresh empty temporary directory (mkdtemp under $TMPDIR or /tmp); static buffer per call slot.
 * tap_done removes every one made (the first 256) when all checks passed; after a failure it
 * keeps them for a look and says where they are. MT_TEST_KEEP_TMP=1 keeps them in any case.
 */
const char *tap_tmpdir(void);

/* Remove a directory tree made by tap_tmpdir (best effort). */
void tap_rmtree(const char *dir);

/*
 * Send this process's stderr (fd 2) to a new file at path until tap_stderr_restore: what a call
 * logs, to be read back. Returns the saved stderr to hand back; bails out when it cannot.
 */
int tap_stderr_to(const char *path);
void tap_stderr_restore(int saved);

/*
 * The first size - 1 bytes of the file at path into buf, NUL-terminated: a captured log or a
 * written file, to search with strstr. Returns the bytes read; 0 (and "") when it cannot be read.
 */
size_t tap_read_text(const char *path, char *buf, size_t size);

/*
 * Copy the file at from to a new file at to, less its last cut bytes (0: all of it): a copy to
 * damage, or one cut short. False when from cannot be read, holds fewer than cut bytes, or to
 * cannot be written.
 */
bool tap_copy_file(const char *from, const char *to, uint64_t cut);

/* How many lines of the file at path contain text (0 when it cannot be read): a captured log. */
int tap_count_lines(const char *path, const char *text);

/* Hex SHA-256 of a file into hex[65] (tests/sha256.c); false when it cannot be read. */
bool tap_sha256_file(const char *path, char hex[65]);

#endif /* MT_TESTS_TAP_H */
