/* SPDX-License-Identifier: MIT */
/*
 * tap.c - the TAP helpers of tests/tap.h.
 */
#include <config.h>

#include "tests/tap.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int planned = -1;
static int count;
static int failed;

/* The directories tap_tmpdir made, for tap_done to remove: a run must not leave them behind. */
#define TAP_MAX_TMPDIRS 256
static char *tmpdirs[TAP_MAX_TMPDIRS];
static int n_tmpdirs;

static void
remove_tmpdirs(void)
{
    const char *keep = getenv("MT_TEST_KEEP_TMP");
    bool kept = failed != 0 || (keep != NULL && strcmp(keep, "1") == 0);

    for (int i = 0; i < n_tmpdirs; i++) {
        if (kept) {
            printf("# kept %s\n", tmpdirs[i]);
        } else {
            tap_rmtree(tmpdirs[i]);
        }
        free(tmpdirs[i]);
    }
    n_tmpdirs = 0;
}

void
tap_plan(int n)
{
    planned = n;
    if (n > 0) {
        printf("1..%d\n", n);
    }
}

bool
tap_ok(bool cond, const char *fmt, ...)
{
    va_list ap;

    count++;
    printf("%s %d - ", cond ? "ok" : "not ok", count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!cond) {
        failed++;
    }
    return cond;
}

void
tap_diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void
tap_skip_all(const char *why)
{
    printf("1..0 # SKIP %s\n", why);
    fflush(stdout);
    planned = 0;
}

void
tap_bail_out(const char *why)
{
    printf("Bail out! %s\n", why);
    fflush(stdout);
    exit(1);
}

int
tap_done(void)
{
    remove_tmpdirs();
    if (planned == 0 && count == 0) {
        return 0;
    }
    if (planned <= 0) {
        printf("1..%d\n", count);
    } else if (planned != count) {
        printf("# planned %d checks but ran %d\n", planned, count);
        return 1;
    }
    fflush(stdout);
    return failed != 0 ? 1 : 0;
}

bool
mt_test_allclose(const char *name, const float *got, const float *want, size_t n, float atol,
                 float rtol)
{
    size_t worst = 0;
    double worst_excess = -1.0;
    double max_diff = 0.0;
    bool ok = true;

    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double tol = atol + rtol * fabs((double)want[i]);
        if (isnan(got[i]) || isnan(want[i])) {
            d = INFINITY;
        }
        if (d > max_diff) {
            max_diff = d;
        }
        if (d - tol > worst_excess) {
            worst_excess = d - tol;
            worst = i;
        }
        if (!(d <= tol)) {
            ok = false;
        }
    }
    tap_ok(ok, "%s: %zu values within atol %g rtol %g", name, n, atol, rtol);
    if (!ok) {
        tap_diag("worst at [%zu]: got %.8g want %.8g; max |diff| %.4g", worst, got[worst],
                 want[worst], max_diff);
    }
    return ok;
}

const char *
tap_one_line(const char *text, size_t len)
{
    static char buf[4096];
    size_t o = 0;

    for (size_t i = 0; i < len && o + 8 < sizeof(buf); i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\n");
        } else if (ch < 0x20) {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o] = '\0';
    return buf;
}

const char *
tap_data_path(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("MT_TEST_DATA");

    snprintf(buf, sizeof(buf), "%s/%s", dir != NULL ? dir : "tests/data", rel);
    return buf;
}

const char *
tap_tmpdir(void)
{
    static char bufs[8][512];
    static int slot;
    const char *base = getenv("TMPDIR");
    char *b = bufs[slot++ % 8];

    snprintf(b, 512, "%s/mt-test-XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(b) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    if (n_tmpdirs < TAP_MAX_TMPDIRS && (tmpdirs[n_tmpdirs] = strdup(b)) != NULL) {
        n_tmpdirs++;
    }
    return b;
}

int
tap_stderr_to(const char *path)
{
    int saved;
    int fd;

    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (saved < 0 || fd < 0 || dup2(fd, 2) < 0) {
        tap_bail_out("cannot send stderr to a file");
    }
    close(fd);
    return saved;
}

void
tap_stderr_restore(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

size_t
tap_read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, size - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return n;
}

bool
tap_copy_file(const char *from, const char *to, uint64_t cut)
{
    FILE *in = fopen(from, "rb");
    FILE *out = NULL;
    char buf[1 << 16];
    uint64_t left = 0;
    bool ok = false;

    /* The length first, so that a cut needs no second pass and no whole-file buffer. */
    if (in != NULL && fseeko(in, 0, SEEK_END) == 0) {
        off_t size = ftello(in);
        ok = size >= 0 && (uint64_t)size >= cut && fseeko(in, 0, SEEK_SET) == 0;
        left = ok ? (uint64_t)size - cut : 0;
    }
    out = ok ? fopen(to, "wb") : NULL;
    ok = ok && out != NULL;
    while (ok && left > 0) {
        size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        ok = fread(buf, 1, want, in) == want && fwrite(buf, 1, want, out) == want;
        left -= want;
    }
    if (in != NULL) {
        fclose(in);
    }
    return out != NULL && fclose(out) == 0 && ok;
}

int
tap_count_lines(const char *path, const char *text)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;

    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, text) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

void
tap_rmtree(const char *dir)
{
    char cmd[1100];

    if (dir == NULL || strncmp(dir, "/", 1) != 0 || strstr(dir, "mt-test-") == NULL) {
        return;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "# cannot remove %s\n", dir);
    }
}
