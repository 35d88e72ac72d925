/* SPDX-License-Identifier: MIT */
/*
 * bench_tokenizer.c - encode throughput of runtime/tokenizer (MB/s, tokens/s) on a mixed corpus.
 *
 * Two steps, so that HF `tokenizers` (bench/tokenizer_hf.py) reads the very same documents:
 *   bench_tokenizer --make-corpus FILE --src SRCDIR [--mb N]
 *       writes the corpus: the golden texts (tests/data/tokenizer/golden.json), every source file
 *       of the tree (sorted by path), then documents of 20-80 lines drawn by a fixed-seed xorshift
 *       from all those lines, until N MB (default 4); documents are separated by one NUL byte
 *       and are all valid UTF-8;
 *   bench_tokenizer -m DIR --corpus FILE [--ids OUT] [--passes N]
 *       encodes each document (special tokens recognized, as HF encode(add_special_tokens=False)
 *       does), pass 1 with a cold piece cache, then N-1 warm passes; prints MB/s and tokens/s and
 *       writes the ids of pass 1 to OUT, one line per document (compare with the HF script's).
 */
#include <config.h>

#include "runtime/text/tokenizer.h"

#include <dirent.h>
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- corpus -----------------------------------------------------------------------------------
 */

struct strs {
    char **s;
    size_t *len;
    size_t n, cap;
};

static void
strs_add(struct strs *v, const char *s, size_t len)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->s = realloc(v->s, v->cap * sizeof(*v->s));
        v->len = realloc(v->len, v->cap * sizeof(*v->len));
    }
    v->s[v->n] = malloc(len + 1);
    memcpy(v->s[v->n], s, len);
    v->s[v->n][len] = 0;
    v->len[v->n++] = len;
}

/* Strict UTF-8 (what Python's decode accepts) and no NUL, which separates documents. */
static bool
valid_utf8_no_nul(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], k, lo, hi;
        if (c == 0) {
            return false;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        k = (c >= 0xc2 && c <= 0xdf)   ? 1
            : (c >= 0xe0 && c <= 0xef) ? 2
            : (c >= 0xf0 && c <= 0xf4) ? 3
                                       : 0;
        if (k == 0 || i + k >= n) {
            return false;
        }
        lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (size_t j = 2; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += k + 1;
    }
    return true;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
wanted(const char *name)
{
    static const char *const ext[] = {".c",  ".h",  ".cu", ".cuh", ".py", ".md",
                                      ".am", ".mk", ".ac", ".sh",  NULL};
    const char *dot = strrchr(name, '.');

    for (int i = 0; dot != NULL && ext[i] != NULL; i++) {
        if (strcmp(dot, ext[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Source files under dir (skipping dot folders, build output and tests/data), sorted. */
static void
list_sources(const char *dir, struct strs *paths)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct strs here = {0};

    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char p[4096];
        if (e->d_name[0] == '.' || strcmp(e->d_name, "autom4te.cache") == 0 ||
            strcmp(e->d_name, "data") == 0 || strcmp(e->d_name, "build-aux") == 0) {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        strs_add(&here, p, strlen(p));
    }
    closedir(d);
    qsort(here.s, here.n, sizeof(*here.s), cmp_str);
    for (size_t i = 0; i < here.n; i++) {
        DIR *sub = opendir(here.s[i]);
        if (sub != NULL) {
            closedir(sub);
            list_sources(here.s[i], paths);
        } else if (wanted(here.s[i])) {
            strs_add(paths, here.s[i], here.len[i]);
        }
        free(here.s[i]);
    }
    free(here.s);
    free(here.len);
}

static char *
slurp(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len_p = (size_t)n;
    return buf;
}

static int
make_corpus(const char *out, const char *src, double mb)
{
    struct strs docs = {0}, lines = {0}, paths = {0};
    char gpath[4096];
    json_error_t jerr;
    json_t *g, *e;
    size_t i, total = 0;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    FILE *f;

    snprintf(gpath, sizeof(gpath), "%s/tests/data/tokenizer/golden.json", src);
    g = json_load_file(gpath, 0, &jerr);
    if (g == NULL) {
        fprintf(stderr, "bench_tokenizer: cannot read %s: %s\n", gpath, jerr.text);
        return 1;
    }
    json_array_foreach (g, i, e) {
        json_t *t = json_object_get(e, "text");
        if (valid_utf8_no_nul((const unsigned char *)json_string_value(t), json_string_length(t))) {
            strs_add(&docs, json_string_value(t), json_string_length(t));
        }
    }
    json_decref(g);
    list_sources(src, &paths);
    for (i = 0; i < paths.n; i++) {
        size_t len;
        char *s = slurp(paths.s[i], &len);
        if (s != NULL && len > 0 && valid_utf8_no_nul((unsigned char *)s, len)) {
            strs_add(&docs, s, len);
        }
        free(s);
    }
    for (i = 0; i < docs.n; i++) {
        const char *p = docs.s[i], *end = p + docs.len[i];
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            strs_add(&lines, p, n);
            p += n + 1;
        }
        total += docs.len[i];
    }
    while ((double)total < mb * 1e6 && lines.n > 0) {
        size_t n_lines, len = 0;
        char *doc;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n_lines = 20 + x % 61;
        doc = malloc(n_lines * 512 + 1);
        for (size_t k = 0; k < n_lines; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t li = x % lines.n, ll = MT_MIN(lines.len[li], 500);
            /* cut long lines on a character boundary */
            while (ll > 0 && ll < lines.len[li] && (lines.s[li][ll] & 0xc0) == 0x80) {
                ll--;
            }
            memcpy(doc + len, lines.s[li], ll);
            len += ll;
            doc[len++] = '\n';
        }
        strs_add(&docs, doc, len);
        total += len;
        free(doc);
    }
    f = fopen(out, "wb");
    if (f == NULL) {
        perror(out);
        return 1;
    }
    for (i = 0; i < docs.n; i++) {
        if (i > 0) {
            fputc(0, f);
        }
        fwrite(docs.s[i], 1, docs.len[i], f);
    }
    fclose(f);
    printf("# corpus %s: %zu documents (%zu source files), %.2f MB\n", out, docs.n, paths.n,
           (double)total / 1e6);
    return 0;
}

/* ---- benchmark --------------------------------------------------------------------------------
 */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int
bench(const char *dir, const char *corpus, const char *ids_out, int passes)
{
    struct mt_tokenizer *tok = NULL;
    size_t len, n_docs = 0, n_tokens = 0;
    char *data;
    size_t *off, *dlen;
    double t0, t_load, times[64];
    FILE *f = NULL;

    data = slurp(corpus, &len);
    if (data == NULL) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", corpus);
        return 1;
    }
    size_t cap = 1;
    for (size_t p = 0; p < len; p++) {
        cap += data[p] == 0;
    }
    off = malloc(cap * sizeof(*off));
    dlen = malloc(cap * sizeof(*dlen));
    if (off == NULL || dlen == NULL) {
        fprintf(stderr, "bench_tokenizer: out of memory\n");
        return 1;
    }
    for (size_t p = 0; p <= len;) {
        const char *z = memchr(data + p, 0, len - p);
        size_t n = z ? (size_t)(z - (data + p)) : len - p;
        off[n_docs] = p;
        dlen[n_docs++] = n;
        p += n + 1;
    }
    t0 = now_s();
    if (mt_tokenizer_load(dir, &tok) != MT_OK) {
        return 1;
    }
    t_load = now_s() - t0;
    if (ids_out != NULL && (f = fopen(ids_out, "w")) == NULL) {
        perror(ids_out);
        return 1;
    }
    passes = MT_MAX(1, MT_MIN(passes, 64));
    for (int pass = 0; pass < passes; pass++) {
        size_t tokens = 0;
        t0 = now_s();
        for (size_t d = 0; d < n_docs; d++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (mt_tokenizer_encode(tok, data + off[d], dlen[d], true, &ids, &n) != MT_OK) {
                return 1;
            }
            tokens += n;
            if (pass == 0 && f != NULL) {
                double tp = now_s();
                for (size_t k = 0; k < n; k++) {
                    fprintf(f, k ? " %d" : "%d", ids[k]);
                }
                fputc('\n', f);
                t0 += now_s() - tp; /* writing ids is not encoding time */
            }
            free(ids);
        }
        times[pass] = now_s() - t0;
        n_tokens = tokens;
    }
    if (f != NULL) {
        fclose(f);
    }
    double mb = (double)len / 1e6;
    printf("# moetier tokenizer: %s, corpus %s (%zu documents, %.2f MB, %zu tokens), load %.3f s\n",
           dir, corpus, n_docs, mb, n_tokens, t_load);
    printf("%-10s %-12s %8s %10s %10s %12s\n", "tool", "pass", "MB", "seconds", "MB/s", "tok/s");
    printf("%-10s %-12s %8.2f %10.3f %10.2f %12.0f\n", "moetier", "cold", mb, times[0],
           mb / times[0], (double)n_tokens / times[0]);
    if (passes > 1) {
        qsort(times + 1, (size_t)passes - 1, sizeof(double), cmp_double);
        double med = times[1 + (passes - 1) / 2];
        printf("%-10s %-12s %8.2f %10.3f %10.2f %12.0f\n", "moetier", "warm-median", mb, med,
               mb / med, (double)n_tokens / med);
    }
    mt_tokenizer_destroy(tok);
    free(off);
    free(dlen);
    free(data);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *dir = NULL, *corpus = NULL, *ids = NULL, *make = NULL, *src = ".";
    double mb = 4;
    int passes = 4;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--corpus") == 0 && i + 1 < argc) {
            corpus = argv[++i];
        } else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) {
            ids = argv[++i];
        } else if (strcmp(argv[i], "--make-corpus") == 0 && i + 1 < argc) {
            make = argv[++i];
        } else if (strcmp(argv[i], "--src") == 0 && i + 1 < argc) {
            src = argv[++i];
        } else if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) {
            mb = atof(argv[++i]);
        } else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) {
            passes = atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: bench_tokenizer --make-corpus FILE [--src DIR] [--mb N]\n"
                    "       bench_tokenizer -m DIR --corpus FILE [--ids OUT] [--passes N]\n");
            return 2;
        }
    }
    if (make != NULL) {
        return make_corpus(make, src, mb);
    }
    if (dir == NULL || corpus == NULL) {
        fprintf(stderr, "bench_tokenizer: -m DIR and --corpus FILE are required\n");
        return 2;
    }
    return bench(dir, corpus, ids, passes);
}
