/* SPDX-License-Identifier: MIT */
/*
 * test_safetensors.c - the safetensors writer, reader and sets, and every kind of bad input.
 *
 * Files written by the writer must read back byte-exact (several dtypes, 0-d to 3-d, an empty
 * tensor, data written in pieces that straddle tensors), as one file, as a sharded directory with
 * an index.json, and as a directory without one. Then each malformed input is made from raw bytes
 * and must fail with the right status and a message that names the file (and the tensor).
 */
#include <config.h>

#include "runtime/model/safetensors.h"
#include "runtime/base/status.h"
#include "tests/tap.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

/* A path under the test directory; eight rotating static buffers. */
static const char *
tpath(const char *fmt, const char *name)
{
    static char bufs[8][1024];
    static int slot;
    char *b = bufs[slot++ % 8];
    char rel[512];

    snprintf(rel, sizeof(rel), fmt, name);
    snprintf(b, 1024, "%s/%s", tmp, rel);
    return b;
}

static bool
exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

static void
make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(1);
    }
}

static void
write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL || (n > 0 && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/*
 * A raw safetensors file: 8-byte length (hlen, or strlen(header) when hlen is UINT64_MAX), the
 * header text, then dlen bytes of data.
 */
static void
write_raw(const char *path, uint64_t hlen, const char *header, size_t dlen)
{
    size_t len = strlen(header);
    unsigned char *buf = calloc(1, 8 + len + dlen + 1);

    if (hlen == UINT64_MAX) {
        hlen = len;
    }
    for (int i = 0; i < 8; i++) {
        buf[i] = (unsigned char)(hlen >> (8 * i));
    }
    memcpy(buf + 8, header, len);
    for (size_t i = 0; i < dlen; i++) {
        buf[8 + len + i] = (unsigned char)(i * 13 + 1);
    }
    write_bytes(path, buf, 8 + len + dlen);
    free(buf);
}

static bool
msg_has(const char *a, const char *b)
{
    const char *m = mt_last_error();

    return strstr(m, a) != NULL && (b == NULL || strstr(m, b) != NULL);
}

/* Open a raw file that must be rejected; one check: status, file named, and a phrase. */
static void
check_bad_file(const char *what, const char *name, uint64_t hlen, const char *header, size_t dlen,
               const char *phrase)
{
    const char *path = tpath("%s", name);
    struct mt_st_set *set = NULL;
    mt_status_t st;

    write_raw(path, hlen, header, dlen);
    mt_fail(MT_OK, 0, "%s", "");
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && set == NULL && msg_has(path, phrase), "%s: %s", what,
           mt_last_error());
    mt_st_set_destroy(set);
}

/* ---- writing and reading back ---------------------------------------------------------------- */

struct spec {
    const char *name;
    enum mt_dtype dt;
    int ndim;
    int64_t shape[4];
};

/* Write the tensors of specs, their data drawn from one pattern, in pieces of `piece` bytes. */
static mt_status_t
write_file(const char *path, const struct spec *specs, int n, size_t piece, unsigned seed,
           unsigned char **data_out, size_t *size_out)
{
    struct mt_st_writer *w;
    unsigned char *data;
    size_t total = 0;
    mt_status_t st;

    st = mt_st_writer_create(path, &w);
    if (st != MT_OK) {
        return st;
    }
    st = mt_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < n && st == MT_OK; i++) {
        size_t nb = mt_dtype_size(specs[i].dt);

        for (int d = 0; d < specs[i].ndim; d++) {
            nb *= (size_t)specs[i].shape[d];
        }
        total += nb;
        st = mt_st_writer_add(w, specs[i].name, specs[i].dt, specs[i].ndim, specs[i].shape);
    }
    if (st != MT_OK) {
        mt_st_writer_destroy(w);
        return st;
    }
    data = malloc(total + 1);
    for (size_t i = 0; i < total; i++) {
        data[i] = (unsigned char)(i * 31 + seed);
    }
    for (size_t off = 0; off < total && st == MT_OK; off += piece) {
        st = mt_st_writer_write(w, data + off, MT_MIN(piece, total - off));
    }
    if (st != MT_OK) {
        mt_st_writer_destroy(w);
        free(data);
        return st;
    }
    st = mt_st_writer_finish(w);
    *data_out = data;
    *size_out = total;
    return st;
}

/* Every tensor of specs is in set with its dtype and shape, and reads back byte-exact. */
static void
check_readback(const char *label, const struct mt_st_set *set, const struct spec *specs, int n,
               const unsigned char *data, const char *shard)
{
    size_t off = 0;

    for (int i = 0; i < n; i++) {
        const struct mt_st_tensor *t = mt_st_set_find(set, specs[i].name);
        size_t nb = mt_dtype_size(specs[i].dt);
        unsigned char *buf;
        bool ok;

        for (int d = 0; d < specs[i].ndim; d++) {
            nb *= (size_t)specs[i].shape[d];
        }
        buf = malloc(nb + 1);
        ok = t != NULL && t->dtype == specs[i].dt && t->ndim == specs[i].ndim && t->nbytes == nb;
        for (int d = 0; ok && d < specs[i].ndim; d++) {
            ok = t->shape[d] == specs[i].shape[d];
        }
        ok = ok && mt_st_set_read(set, t, buf, nb) == MT_OK && memcmp(buf, data + off, nb) == 0;
        if (ok && shard != NULL) {
            const char *p = mt_st_set_file_path(set, t->file);

            ok = strlen(p) >= strlen(shard) && strcmp(p + strlen(p) - strlen(shard), shard) == 0;
        }
        tap_ok(ok, "%s: tensor '%s' (%s, %d-d, %zu bytes) reads back byte-exact", label,
               specs[i].name, mt_dtype_name(specs[i].dt), specs[i].ndim, nb);
        free(buf);
        off += nb;
    }
}

/* A progress hook that counts. */
struct progress {
    uint64_t calls;
    uint64_t bytes;
};

static void
count_progress(void *ctx, uint64_t nbytes)
{
    struct progress *p = ctx;

    p->calls++;
    p->bytes += nbytes;
}

static const struct spec one_file[] = {
    {"w2d", MT_DTYPE_F32, 2, {4, 8}},   {"v1d", MT_DTYPE_BF16, 1, {5}},
    {"s0d", MT_DTYPE_I64, 0, {0}},      {"fp8.weight", MT_DTYPE_F8_E4M3, 2, {3, 5}},
    {"empty", MT_DTYPE_F16, 2, {0, 4}}, {"mask", MT_DTYPE_BOOL, 1, {3}},
    {"u", MT_DTYPE_U64, 3, {1, 2, 1}},
};
#define N_ONE_FILE ((int)(sizeof(one_file) / sizeof(one_file[0])))

static void
test_single_file(void)
{
    const char *path = tpath("%s", "one.safetensors");
    struct mt_st_set *set = NULL;
    unsigned char *data = NULL;
    unsigned char *image;
    struct mt_st_tensor *ts = NULL;
    size_t nts = 0;
    size_t total = 0;
    struct stat sb;
    uint64_t hlen = 0;
    mt_status_t st;
    bool sorted = true;
    FILE *f;

    st = write_file(path, one_file, N_ONE_FILE, 7, 3, &data, &total);
    tap_ok(st == MT_OK && exists(path) && !exists(tpath("%s.partial", "one.safetensors")),
           "writer: file with %d tensors written in 7-byte pieces: %s", N_ONE_FILE,
           st == MT_OK ? "ok" : mt_last_error());

    stat(path, &sb);
    image = malloc((size_t)sb.st_size);
    f = fopen(path, "rb");
    if (f == NULL || fread(image, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size) {
        perror(path);
        exit(1);
    }
    fclose(f);
    for (int i = 0; i < 8; i++) {
        hlen |= (uint64_t)image[i] << (8 * i);
    }
    tap_ok(hlen % 8 == 0 && (uint64_t)sb.st_size == 8 + hlen + total &&
               memcmp(image + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31) == 0 &&
               (image[8 + hlen - 1] == ' ' || image[8 + hlen - 1] == '}'),
           "writer: header length %" PRIu64 " is a multiple of 8, metadata first, file is "
           "8 + header + %zu data bytes",
           hlen, total);

    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_OK && mt_st_set_count(set) == (size_t)N_ONE_FILE,
           "reader: opens the file and finds %d tensors: %s", N_ONE_FILE,
           st == MT_OK ? "ok" : mt_last_error());
    if (st != MT_OK) {
        free(image);
        free(data);
        return;
    }
    for (size_t i = 1; i < mt_st_set_count(set); i++) {
        sorted = sorted &&
                 strcmp(mt_st_set_tensor(set, i - 1)->name, mt_st_set_tensor(set, i)->name) < 0;
    }
    tap_ok(sorted && mt_st_set_tensor(set, mt_st_set_count(set)) == NULL,
           "reader: tensors are listed sorted by name");
    check_readback("one file", set, one_file, N_ONE_FILE, data, NULL);
    {
        const struct mt_st_tensor *s = mt_st_set_find(set, "s0d");

        tap_ok(s != NULL && s->ndim == 0 && s->nelem == 1 && s->nbytes == 8 &&
                   mt_st_set_find(set, "nope") == NULL && mt_st_set_find(set, "") == NULL,
               "reader: 0-d tensor has one element; absent names give NULL");
    }
    {
        unsigned char small[4];
        const struct mt_st_tensor *t = mt_st_set_find(set, "w2d");

        st = mt_st_set_read(set, t, small, sizeof(small));
        tap_ok(st == MT_ERR_INVAL && msg_has("w2d", NULL),
               "reader: a destination smaller than the tensor is refused: %s", mt_last_error());
    }
    {
        unsigned char buf[128];
        const struct mt_st_tensor *t = mt_st_set_find(set, "w2d");

        /* w2d is 4 x 8 F32 = 128 bytes: 127 must be refused, 128 read */
        st = mt_st_set_read(set, t, buf, 127);
        tap_ok(st == MT_ERR_INVAL && msg_has("w2d", "holds 127") &&
                   mt_st_set_read(set, t, buf, 128) == MT_OK,
               "reader: a destination one byte short is refused, an exact one read: %s",
               mt_last_error());
    }
    {
        struct progress p = {0, 0};
        unsigned char buf[256], again[256];
        bool ok = true;

        mt_st_set_set_progress(set, count_progress, &p);
        for (size_t i = 0; i < mt_st_set_count(set); i++) {
            ok = ok && mt_st_set_read(set, mt_st_set_tensor(set, i), buf, sizeof(buf)) == MT_OK;
        }
        /* a second read, to check values (mt_st_set_reread), is not counted */
        uint64_t calls = p.calls, bytes = p.bytes;
        const struct mt_st_tensor *w2d = mt_st_set_find(set, "w2d");
        ok = ok && mt_st_set_reread(set, w2d, again, sizeof(again)) == MT_OK &&
             p.calls == calls && p.bytes == bytes;
        mt_st_set_set_progress(set, NULL, NULL);
        /* ... and gives what a read gives (w2d: 128 bytes) */
        ok = ok && mt_st_set_read(set, w2d, buf, sizeof(buf)) == MT_OK &&
             memcmp(buf, again, 128) == 0;
        /* every read counts, the 0-byte 'empty' too; a reread does not; after removal none */
        tap_ok(ok && p.calls == (uint64_t)N_ONE_FILE && p.bytes == total,
               "reader: the progress hook sees each of the %d reads (%" PRIu64 ") and their %zu "
               "bytes (%" PRIu64 "), not a reread, none after it is removed",
               N_ONE_FILE, p.calls, total, p.bytes);
    }
    {
        struct mt_st_tensor fake = *mt_st_set_find(set, "w2d");
        unsigned char buf[4096];
        int nf = mt_st_set_file_count(set);

        fake.file = -1;
        st = mt_st_set_read(set, &fake, buf, sizeof(buf));
        tap_ok(st == MT_ERR_INVAL && msg_has("w2d", "does not belong"),
               "reader: a negative shard index is refused by read: %s", mt_last_error());
        fake.file = nf;
        st = mt_st_set_read(set, &fake, buf, sizeof(buf));
        tap_ok(nf == 1 && st == MT_ERR_INVAL && msg_has("w2d", "does not belong") &&
                   strcmp(mt_st_set_file_path(set, nf), "(no such shard)") == 0 &&
                   strcmp(mt_st_set_file_path(set, -1), "(no such shard)") == 0 &&
                   strcmp(mt_st_set_file_path(set, 0), path) == 0,
               "reader: a shard index past the last is refused by read and file_path");
    }
    st = mt_st_image_parse(image, (size_t)sb.st_size, "image", &ts, &nts);
    tap_ok(st == MT_OK && nts == (size_t)N_ONE_FILE,
           "mt_st_image_parse accepts the same bytes from memory (%zu tensors)", nts);
    {
        bool same = st == MT_OK;

        /* offsets relative to the image are the file's: 8 + header length + data offset */
        for (size_t i = 0; same && i < nts; i++) {
            const struct mt_st_tensor *t = mt_st_set_find(set, ts[i].name);

            same = t != NULL && ts[i].offset == t->offset && ts[i].offset >= 8 + hlen &&
                   ts[i].offset + ts[i].nbytes <= (uint64_t)sb.st_size;
        }
        tap_ok(same, "mt_st_image_parse: each tensor's offset counts from the image's first byte");
    }
    mt_st_tensors_destroy(ts, nts);

    /* The file shrinks after it was opened: the read must fail, naming tensor and file. */
    if (truncate(path, (off_t)(sb.st_size - 3)) == 0) {
        const struct mt_st_tensor *t = mt_st_set_find(set, "u");
        unsigned char buf[16];

        st = mt_st_set_read(set, t, buf, sizeof(buf));
        tap_ok(st == MT_ERR_IO && msg_has(path, "'u'"),
               "reader: short read of a file truncated after open: %s", mt_last_error());
    } else {
        tap_ok(false, "truncate %s", path);
    }
    mt_st_set_destroy(set);
    free(image);
    free(data);
}

static const struct spec shard1[] = {
    {"model.embed_tokens.weight", MT_DTYPE_BF16, 2, {4, 2}},
    {"model.layers.0.w", MT_DTYPE_F32, 2, {2, 3}},
};
static const struct spec shard2[] = {
    {"model.layers.1.w", MT_DTYPE_F32, 2, {2, 3}},
    {"model.norm.weight", MT_DTYPE_F32, 1, {3}},
};

static const char index_json[] =
    "{\"metadata\": {\"total_size\": 80}, \"weight_map\": {"
    "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", "
    "\"model.layers.0.w\": \"model-00001-of-00002.safetensors\", "
    "\"model.layers.1.w\": \"model-00002-of-00002.safetensors\", "
    "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}";

/* A sharded directory: two shards by the writer plus an index.json written here. */
static void
make_sharded(const char *dir, const char *index, unsigned char **d1, unsigned char **d2)
{
    char p[1024];
    size_t n;

    make_dir(dir);
    snprintf(p, sizeof(p), "%s/model-00001-of-00002.safetensors", dir);
    if (write_file(p, shard1, 2, 5, 11, d1, &n) != MT_OK) {
        exit(1);
    }
    snprintf(p, sizeof(p), "%s/model-00002-of-00002.safetensors", dir);
    if (write_file(p, shard2, 2, 1000, 29, d2, &n) != MT_OK) {
        exit(1);
    }
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    write_bytes(p, index, strlen(index));
}

static void
test_sets(void)
{
    const char *dir = tpath("%s", "sharded");
    struct mt_st_set *set = NULL;
    unsigned char *d1;
    unsigned char *d2;
    unsigned char *d3;
    size_t n;
    mt_status_t st;

    make_sharded(dir, index_json, &d1, &d2);
    /* A stray file the index does not name must be ignored (it even repeats a name). */
    if (write_file(tpath("%s", "sharded/stray.safetensors"), shard1, 1, 64, 1, &d3, &n) != MT_OK) {
        exit(1);
    }
    free(d3);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_OK && mt_st_set_count(set) == 4,
           "set with index.json: 2 shards, 4 tensors, stray file ignored: %s",
           st == MT_OK ? "ok" : mt_last_error());
    if (st == MT_OK) {
        check_readback("sharded", set, shard1, 2, d1, "/model-00001-of-00002.safetensors");
        check_readback("sharded", set, shard2, 2, d2, "/model-00002-of-00002.safetensors");
    }
    mt_st_set_destroy(set);
    set = NULL;
    free(d1);
    free(d2);

    /* No index: every *.safetensors of the directory, in name order. */
    dir = tpath("%s", "glob");
    make_dir(dir);
    if (write_file(tpath("%s", "glob/b.safetensors"), shard2, 2, 3, 5, &d2, &n) != MT_OK ||
        write_file(tpath("%s", "glob/a.safetensors"), shard1, 2, 3, 7, &d1, &n) != MT_OK) {
        exit(1);
    }
    write_bytes(tpath("%s", "glob/config.json"), "{}", 2);
    /* "*.safetensors" needs a name before the suffix: a file called just that is no shard (it
       is not one here: opening it would fail) */
    write_bytes(tpath("%s", "glob/.safetensors"), "not a shard", 11);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_OK && mt_st_set_count(set) == 4 &&
               strstr(mt_st_set_file_path(set, 0), "/a.safetensors") != NULL &&
               strstr(mt_st_set_file_path(set, 1), "/b.safetensors") != NULL,
           "set without index: both *.safetensors files, sorted, '.safetensors' itself not "
           "taken: %s",
           st == MT_OK ? "ok" : mt_last_error());
    if (st == MT_OK) {
        check_readback("glob", set, shard1, 2, d1, "/a.safetensors");
        check_readback("glob", set, shard2, 2, d2, "/b.safetensors");
    }
    mt_st_set_destroy(set);
    free(d1);
    free(d2);
}

/* ---- writer misuse --------------------------------------------------------------------------- */

/*
 * The header is padded with spaces to the next multiple of 8 and no further, whatever the length
 * of its JSON text: metadata values of 0 to 7 bytes move that length through every residue.
 */
static void
test_writer_padding(void)
{
    const char *path = tpath("%s", "pad.safetensors");
    int64_t one[1] = {1};
    bool ok = true;

    for (int k = 0; k < 8; k++) {
        char val[8] = "xxxxxxx";
        unsigned char buf[256];
        struct mt_st_writer *w = NULL;
        uint64_t hlen = 0;
        uint64_t json_len;
        size_t got = 0;
        FILE *f;

        val[k] = '\0';
        if (mt_st_writer_create(path, &w) != MT_OK || mt_st_writer_meta(w, "v", val) != MT_OK ||
            mt_st_writer_add(w, "t", MT_DTYPE_U8, 1, one) != MT_OK ||
            mt_st_writer_write(w, "z", 1) != MT_OK || mt_st_writer_finish(w) != MT_OK) {
            ok = false;
            break;
        }
        f = fopen(path, "rb");
        if (f != NULL) {
            got = fread(buf, 1, sizeof(buf), f);
            fclose(f);
        }
        for (int i = 0; i < 8 && got >= 8; i++) {
            hlen |= (uint64_t)buf[i] << (8 * i);
        }
        if (got < 8 || hlen + 9 != got) {
            ok = false;
            break;
        }
        json_len = hlen;
        while (json_len > 0 && buf[8 + json_len - 1] == ' ') {
            json_len--;
        }
        ok = ok && hlen % 8 == 0 && hlen - json_len < 8 && buf[8 + json_len - 1] == '}';
    }
    tap_ok(ok, "writer: the header is padded to the next multiple of 8, never a whole 8 more");
}

static void
test_writer_errors(void)
{
    const char *path = tpath("%s", "w.safetensors");
    const char *partial = tpath("%s", "w.safetensors.partial");
    int64_t shape[2] = {2, 2};
    int64_t neg[1] = {-3};
    unsigned char zeros[64] = {0};
    struct mt_st_writer *w = NULL;
    mt_status_t st;

    if (mt_st_writer_create(path, &w) != MT_OK) {
        tap_ok(false, "writer create: %s", mt_last_error());
        return;
    }
    tap_ok(mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape) == MT_OK &&
               mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape) == MT_ERR_INVAL &&
               msg_has(path, "'a' declared twice"),
           "writer: a repeated tensor name is refused: %s", mt_last_error());
    tap_ok(mt_st_writer_add(w, "n", MT_DTYPE_F32, 1, neg) == MT_ERR_INVAL && msg_has(path, "'n'"),
           "writer: a negative shape is refused: %s", mt_last_error());
    {
        int64_t dims9[MT_ST_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        int64_t minus1[1] = {-1};
        int64_t half[1] = {INT64_C(1) << 62};

        tap_ok(mt_st_writer_add(w, "m", MT_DTYPE_F32, 1, minus1) == MT_ERR_INVAL &&
                   msg_has("'m'", "negative shape [-1]"),
               "writer: a shape of -1 is refused as negative: %s", mt_last_error());
        tap_ok(mt_st_writer_add(w, "d", MT_DTYPE_COUNT, 1, shape) == MT_ERR_INVAL &&
                   msg_has("'d'", "invalid dtype"),
               "writer: dtype MT_DTYPE_COUNT is refused: %s", mt_last_error());
        tap_ok(mt_st_writer_add(w, "k", MT_DTYPE_U8, MT_ST_MAX_DIMS + 1, dims9) == MT_ERR_INVAL &&
                   msg_has("'k'", "9 dimensions"),
               "writer: %d dimensions are refused: %s", MT_ST_MAX_DIMS + 1, mt_last_error());
        int64_t dims8[MT_ST_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 2};

        tap_ok(mt_st_writer_add(w, "e8", MT_DTYPE_U8, MT_ST_MAX_DIMS, dims8) == MT_OK,
               "writer: %d dimensions are accepted: %s", MT_ST_MAX_DIMS, mt_last_error());
        tap_ok(mt_st_writer_add(w, "nul", MT_DTYPE_U8, 2, NULL) == MT_ERR_INVAL &&
                   msg_has("'nul'", "2 dimensions"),
               "writer: a NULL shape with 2 dimensions is refused: %s", mt_last_error());
        /* 2^62 F32 elements are 2^64 bytes, which would wrap to 0 */
        tap_ok(mt_st_writer_add(w, "f", MT_DTYPE_F32, 1, half) == MT_ERR_INVAL &&
                   msg_has("'f'", "overflows the file"),
               "writer: one tensor of 2^64 bytes is refused: %s", mt_last_error());
        /* Each 2^62 bytes fits a file; the sum of 18 + 2^62 + 2^62 bytes does not (2^63 - 1). */
        tap_ok(mt_st_writer_add(w, "h1", MT_DTYPE_U8, 1, half) == MT_OK &&
                   mt_st_writer_add(w, "h2", MT_DTYPE_U8, 1, half) == MT_ERR_INVAL &&
                   msg_has("'h2'", "overflows the file"),
               "writer: declared bytes past 2^63 - 1 in total are refused: %s", mt_last_error());
    }
    mt_st_writer_destroy(w);
    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    tap_ok(mt_st_writer_add(w, "__metadata__", MT_DTYPE_F32, 2, shape) == MT_ERR_INVAL &&
               msg_has("invalid tensor name '__metadata__'", NULL) &&
               mt_st_writer_add(w, "", MT_DTYPE_F32, 2, shape) == MT_ERR_INVAL &&
               msg_has("invalid tensor name ''", NULL),
           "writer: tensor names '__metadata__' and '' are refused: %s", mt_last_error());
    tap_ok(mt_st_writer_meta(w, "k", "1") == MT_OK &&
               mt_st_writer_meta(w, "k", "2") == MT_ERR_INVAL &&
               msg_has(path, "metadata key 'k' given twice"),
           "writer: a repeated metadata key is refused: %s", mt_last_error());
    tap_ok(mt_st_writer_write(w, zeros, 8) == MT_OK && exists(partial) && !exists(path) &&
               mt_st_writer_add(w, "b", MT_DTYPE_F32, 2, shape) == MT_ERR_INVAL,
           "writer: header written lazily into the .partial file; no declarations after data");
    tap_ok(mt_st_writer_meta(w, "late", "x") == MT_ERR_INVAL && msg_has("'late'", "after data"),
           "writer: no metadata after data: %s", mt_last_error());
    mt_st_writer_destroy(w);
    tap_ok(!exists(partial) && !exists(path), "writer: destroy removes the partial file");

    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    st = mt_st_writer_write(w, zeros, 17);
    tap_ok(st == MT_ERR_INVAL && msg_has(path, "more bytes"),
           "writer: more bytes than declared are refused: %s", mt_last_error());
    mt_st_writer_destroy(w);

    /* After a refused write every later call returns that failure, finish included (all 16
       bytes were written before the extra one), and no file is left. */
    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    st = mt_st_writer_write(w, zeros, 16);
    st = st == MT_OK ? mt_st_writer_write(w, zeros, 1) : MT_ERR_INTERNAL;
    tap_ok(st == MT_ERR_INVAL && mt_st_writer_finish(w) == MT_ERR_INVAL && !exists(path) &&
               !exists(partial),
           "writer: finish after a refused write fails and leaves no file: %s", mt_last_error());
    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    st = mt_st_writer_write(w, zeros, 17);
    tap_ok(st == MT_ERR_INVAL && mt_st_writer_add(w, "b", MT_DTYPE_F32, 2, shape) == MT_ERR_INVAL,
           "writer: a declaration after a refused write is refused too");
    mt_st_writer_destroy(w);
    /* The final name is a directory: the rename fails and finish says so. */
    {
        const char *dpath = tpath("%s", "isdir.safetensors");

        make_dir(dpath);
        make_dir(tpath("%s", "isdir.safetensors/x"));
        st = mt_st_writer_create(dpath, &w);
        st = st == MT_OK ? mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape) : st;
        st = st == MT_OK ? mt_st_writer_write(w, zeros, 16) : st;
        st = st == MT_OK ? mt_st_writer_finish(w) : st;
        tap_ok(st == MT_ERR_IO && msg_has("cannot rename", dpath) &&
                   !exists(tpath("%s", "isdir.safetensors.partial")),
               "writer: a failing rename is reported and the partial file removed: %s",
               mt_last_error());
    }
    /* the excess counts over all writes: 8 + 9 of 16 */
    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    st = mt_st_writer_write(w, zeros, 8);
    tap_ok(st == MT_OK && mt_st_writer_write(w, zeros, 9) == MT_ERR_INVAL &&
               msg_has(path, "1 more bytes written than the 16"),
           "writer: a second write past the declared bytes is refused: %s", mt_last_error());
    mt_st_writer_destroy(w);

    mt_st_writer_create(path, &w);
    mt_st_writer_add(w, "a", MT_DTYPE_F32, 2, shape);
    mt_st_writer_write(w, zeros, 15);
    st = mt_st_writer_finish(w);
    tap_ok(st == MT_ERR_INVAL && msg_has(path, "15 of the 16") && !exists(path) && !exists(partial),
           "writer: finish with missing bytes fails and leaves no file: %s", mt_last_error());

    /* A file size limit makes write(2) come up short, then fail: the error must be reported. */
    {
        struct rlimit old;
        struct rlimit lim;
        int64_t big[1] = {3 << 20};
        unsigned char *buf = calloc(1, 3 << 20);

        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 1 << 20;
        signal(SIGXFSZ, SIG_IGN);
        mt_st_writer_create(path, &w);
        mt_st_writer_add(w, "big", MT_DTYPE_U8, 1, big);
        setrlimit(RLIMIT_FSIZE, &lim);
        st = mt_st_writer_write(w, buf, 3 << 20);
        if (st == MT_OK) {
            st = mt_st_writer_finish(w);
        } else {
            mt_st_writer_destroy(w);
        }
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_DFL);
        tap_ok(st == MT_ERR_IO && msg_has(path, "File too large") && !exists(partial),
               "writer: a failing write(2) is reported and the partial file removed: %s",
               mt_last_error());
        free(buf);
    }
}

/*
 * Finishing writes the header even when no data byte came (only empty tensors), and a piece of a
 * megabyte or more, which skips the writer's buffer, still lands after the buffered header.
 */
static void
test_writer_edges(void)
{
    const char *path = tpath("%s", "edge.safetensors");
    int64_t zero[1] = {0};
    int64_t big[1] = {(1 << 20) + 3};
    struct mt_st_writer *w = NULL;
    struct mt_st_set *set = NULL;
    unsigned char *data = malloc((1 << 20) + 3);
    unsigned char *back = malloc((1 << 20) + 3);
    mt_status_t st;

    st = mt_st_writer_create(path, &w);
    st = st == MT_OK ? mt_st_writer_add(w, "e", MT_DTYPE_F32, 1, zero) : st;
    st = st == MT_OK ? mt_st_writer_finish(w) : st;
    st = st == MT_OK ? mt_st_set_open_file(path, &set) : st;
    tap_ok(st == MT_OK && mt_st_set_count(set) == 1 && mt_st_set_find(set, "e") != NULL &&
               mt_st_set_find(set, "e")->nbytes == 0,
           "writer: a file of one empty tensor (no data written) opens: %s",
           st == MT_OK ? "ok" : mt_last_error());
    mt_st_set_destroy(set);
    set = NULL;

    for (size_t i = 0; i < (1 << 20) + 3; i++) {
        data[i] = (unsigned char)(i * 7 + 1);
    }
    st = mt_st_writer_create(path, &w);
    st = st == MT_OK ? mt_st_writer_add(w, "big", MT_DTYPE_U8, 1, big) : st;
    st = st == MT_OK ? mt_st_writer_write(w, data, (1 << 20) + 3) : st;
    st = st == MT_OK ? mt_st_writer_finish(w) : st;
    st = st == MT_OK ? mt_st_set_open_file(path, &set) : st;
    st = st == MT_OK ? mt_st_set_read(set, mt_st_set_find(set, "big"), back, (1 << 20) + 3) : st;
    tap_ok(st == MT_OK && memcmp(back, data, (1 << 20) + 3) == 0,
           "writer: a tensor of 1 MiB + 3 written in one piece reads back byte-exact: %s",
           st == MT_OK ? "ok" : mt_last_error());
    mt_st_set_destroy(set);
    free(data);
    free(back);
}

/* ---- bad files ------------------------------------------------------------------------------- */

static void
test_bad_files(void)
{
    const char *path;
    struct mt_st_set *set = NULL;
    unsigned char *data;
    size_t n;
    mt_status_t st;
    int fd;

    path = tpath("%s", "five.safetensors");
    write_bytes(path, "\x10\0\0\0\0", 5);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "5 bytes, too short"),
           "truncated file of 5 bytes: %s", mt_last_error());

    /* Valid files cut short: inside the header, then inside the data. */
    path = tpath("%s", "cut-header.safetensors");
    if (write_file(path, one_file, N_ONE_FILE, 64, 1, &data, &n) != MT_OK) {
        exit(1);
    }
    free(data);
    if (truncate(path, 8 + 40) != 0) {
        exit(1);
    }
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "runs past the end of the file"),
           "truncated file, header cut short: %s", mt_last_error());

    path = tpath("%s", "cut-data.safetensors");
    if (write_file(path, one_file, N_ONE_FILE, 64, 1, &data, &n) != MT_OK) {
        exit(1);
    }
    free(data);
    {
        struct stat sb;

        stat(path, &sb);
        if (truncate(path, sb.st_size - 5) != 0) {
            exit(1);
        }
    }
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "run past the end of the data section") &&
               msg_has("'u'", NULL),
           "truncated file, data cut short: %s", mt_last_error());

    check_bad_file("header length past the end", "hlen.safetensors", 1ULL << 40,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "header length 1099511627776 runs past the end");

    /* A header length above 100 MB in a file large enough to hold it (sparse). */
    path = tpath("%s", "huge.safetensors");
    write_raw(path, 150000000, "{}", 0);
    fd = open(path, O_WRONLY);
    if (fd < 0 || ftruncate(fd, 160000000) != 0) {
        exit(1);
    }
    close(fd);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "100 MB"), "header length above 100 MB: %s",
           mt_last_error());
    unlink(path);

    check_bad_file("header not JSON", "notjson.safetensors", UINT64_MAX, "{\"a\": [1, 2", 0,
                   "not valid JSON");
    check_bad_file("header not an object", "array.safetensors", UINT64_MAX, "[1, 2]", 0,
                   "not a JSON object");
    check_bad_file("overlapping offsets", "overlap.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "'a' (data_offsets [0, 8]) and 'b' (data_offsets [4, 12]) overlap");
    /* The tensors must tile the data section exactly, as HF's safetensors requires. */
    check_bad_file("trailing bytes after the last tensor", "trailing.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
                   "4 bytes follow the last tensor 'a'");
    check_bad_file("a hole between tensors", "hole.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                   12,
                   "data bytes [4, 8) belong to no tensor (a hole between tensors 'a' and 'b')");
    check_bad_file("a hole before the first tensor", "hole0.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                   "data bytes [0, 4) belong to no tensor (a hole before the first tensor 'a')");
    check_bad_file("data but no tensors", "nodata.safetensors", UINT64_MAX, "{}", 8,
                   "lists no tensor, but 8 data bytes follow it");
    /* A header length shortened into the padding: 6 spaces become data, every tensor shifts. */
    check_bad_file("header length shortened into the padding", "shorthdr.safetensors",
                   strlen("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"),
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}      ", 8,
                   "6 bytes follow the last tensor 'a' (it ends at data offset 8, the data section "
                   "has 14 bytes): trailing garbage, or a header length that stops short");
    check_bad_file("out-of-range offsets", "range.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8,
                   "tensor 'a': data_offsets [8, 16] run past the end of the data section (8");
    check_bad_file("reversed offsets", "reversed.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
                   "tensor 'a': data_offsets [8, 0] end before they begin");
    check_bad_file("offsets not matching the shape", "mismatch.safetensors", UINT64_MAX,
                   "{\"x.weight\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,96]}}",
                   128,
                   "tensor 'x.weight': data_offsets [0, 96] do not match shape [4, 8] of F32 "
                   "(128 bytes)");
    check_bad_file("unknown dtype", "dtype.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
                   "tensor 'a': unknown dtype 'F4'");
    check_bad_file("negative shape", "negshape.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 1,
                   "tensor 'a': shape[1] is not a non-negative integer");
    check_bad_file("too many dimensions", "ndim.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                   "\"data_offsets\":[0,1]}}",
                   1, "9 dimensions");
    check_bad_file("element count overflow", "overflow.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],"
                   "\"data_offsets\":[0,8]}}",
                   8, "tensor 'a': shape");
    check_bad_file("duplicate tensor names", "dup.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                   2, "duplicate");
    check_bad_file("__metadata__ value not a string", "meta.safetensors", UINT64_MAX,
                   "{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ entry 'format'");
    check_bad_file("unknown field in a tensor entry", "field.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1,
                   "unknown field 'x'");
    check_bad_file("fractional shape", "real.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1,
                   "shape[0]");

    /* Each bound at its edge: one byte past it must be refused, and for the right reason. */
    path = tpath("%s", "seven.safetensors");
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "7 bytes, too short"),
           "truncated file of 7 bytes: %s", mt_last_error());
    check_bad_file("header length one byte past the end", "hlen1.safetensors", 3, "{}", 0,
                   "header length 3 runs past the end of the file (10 bytes");
    check_bad_file("an 8-byte file whose header length is not 0", "eight.safetensors", 2, "", 0,
                   "header length 2 runs past the end of the file (8 bytes");
    {
        const unsigned char img[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        struct mt_st_tensor *ts = NULL;
        size_t nts = 0;

        st = mt_st_image_parse(img, sizeof(img), "img8", &ts, &nts);
        tap_ok(st == MT_ERR_FORMAT && nts == 0 &&
                   msg_has("img8", "header length 2 runs past the end"),
               "an 8-byte image whose header length is not 0: %s", mt_last_error());
        mt_st_tensors_destroy(ts, nts);
    }
    path = tpath("%s", "huge1.safetensors");
    write_raw(path, 100000001, "{}", 0);
    fd = open(path, O_WRONLY);
    if (fd < 0 || ftruncate(fd, 8 + 100000001) != 0) {
        exit(1);
    }
    close(fd);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(path, "header length 100000001 exceeds the 100 MB"),
           "header length of 100 MB + 1: %s", mt_last_error());
    unlink(path);
    check_bad_file("offsets one byte past the data section", "range1.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7,
                   "data_offsets [0, 8] run past the end of the data section (7 bytes");
    check_bad_file("offsets wider than the shape", "wide.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12,
                   "data_offsets [0, 12] do not match shape [2] of F32 (8 bytes)");
    check_bad_file("three data_offsets", "offs3.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                   "data_offsets is not two non-negative integers");
    {
        static const char hdr[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
        struct mt_st_tensor *ts = NULL;
        size_t nts = 0;

        st = mt_st_header_parse(hdr, strlen(hdr), UINT64_MAX, 1, "wrap", 0, &ts, &nts);
        tap_ok(st == MT_ERR_FORMAT && nts == 0 && msg_has("wrap", "data section size overflows"),
               "a data section that ends past 2^64 - 1: %s", mt_last_error());
        mt_st_tensors_destroy(ts, nts);
    }
    check_bad_file("a one-byte hole between tensors", "hole1.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[5,9]}}",
                   9, "data bytes [4, 5) belong to no tensor");
    /* 2^62 F32 elements fit 64 bits, their 2^64 bytes do not (they would wrap to 0). */
    check_bad_file("byte count overflow", "bytes.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                   "\"data_offsets\":[0,0]}}",
                   0, "overflows the byte count");
    /* 3 x 6148914691236517205 is exactly 2^64 - 1 elements: that fits 64 bits (the offsets are
       what is wrong), it is no element-count overflow */
    check_bad_file("an element count of exactly 2^64 - 1", "count64.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[3,6148914691236517205],"
                   "\"data_offsets\":[0,1]}}",
                   1, "do not match shape [3, 6148914691236517205] of U8");
    check_bad_file("one data byte but no tensors", "nodata1.safetensors", UINT64_MAX, "{}", 1,
                   "lists no tensor, but 1 data bytes follow it");
    /* MT_ST_MAX_DIMS dimensions are the most a tensor may have, and they are allowed */
    path = tpath("%s", "ndim8.safetensors");
    write_raw(path, UINT64_MAX,
              "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,2,1,1,1,1,1,3],\"data_offsets\":[0,6]}}", 6);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_OK && mt_st_set_find(set, "a")->ndim == MT_ST_MAX_DIMS &&
               mt_st_set_find(set, "a")->shape[7] == 3 && mt_st_set_find(set, "a")->nbytes == 6,
           "a tensor of %d dimensions is accepted: %s", MT_ST_MAX_DIMS,
           st == MT_OK ? "ok" : mt_last_error());
    mt_st_set_destroy(set);
    set = NULL;
    /* Each field of the wrong JSON type is refused for that reason, never read as a default. */
    check_bad_file("__metadata__ a string", "metastr.safetensors", UINT64_MAX,
                   "{\"__metadata__\":\"pt\"}", 0, "__metadata__ is not an object");
    check_bad_file("a tensor entry that is a number", "entry.safetensors", UINT64_MAX, "{\"a\":1}",
                   0, "tensor 'a': entry is not an object");
    check_bad_file("a tensor entry without dtype", "nodtype.safetensors", UINT64_MAX,
                   "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "tensor 'a': missing field 'dtype'");
    check_bad_file("a dtype that is a number", "dtypenum.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "tensor 'a': dtype is not a string");
    /* read as no dimensions, "1" would pass for a 0-d tensor of one byte */
    check_bad_file("a shape that is a string", "shapestr.safetensors", UINT64_MAX,
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}}", 1,
                   "tensor 'a': shape is not an array");
    /*
     * An empty tensor where another begins is valid (HF orders by [begin, end]), whichever comes
     * first in the header.
     */
    path = tpath("%s", "empty-at.safetensors");
    write_raw(path, UINT64_MAX,
              "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
              4);
    st = mt_st_set_open_file(path, &set);
    tap_ok(st == MT_OK && mt_st_set_count(set) == 2 && mt_st_set_find(set, "a")->nbytes == 0,
           "an empty tensor at the offset where another begins: %s",
           st == MT_OK ? "accepted" : mt_last_error());
    mt_st_set_destroy(set);
    set = NULL;
}

static void
test_bad_sets(void)
{
    struct mt_st_set *set = NULL;
    unsigned char *d1;
    unsigned char *d2;
    size_t n;
    mt_status_t st;
    const char *dir;
    char shard[1100];
    char index[1100];

    /* The same tensor name in two files of an index-less directory. */
    dir = tpath("%s", "dupdir");
    make_dir(dir);
    if (write_file(tpath("%s", "dupdir/x.safetensors"), shard1, 2, 8, 1, &d1, &n) != MT_OK ||
        write_file(tpath("%s", "dupdir/y.safetensors"), shard1 + 1, 1, 8, 1, &d2, &n) != MT_OK) {
        exit(1);
    }
    free(d1);
    free(d2);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has("/dupdir/x.safetensors", "/dupdir/y.safetensors") &&
               msg_has("'model.layers.0.w'", NULL),
           "duplicate tensor names across files: %s", mt_last_error());

    /* The same again where the repeated name sorts first (x: embed + layers.0.w, y: embed). */
    dir = tpath("%s", "dupfirst");
    make_dir(dir);
    if (write_file(tpath("%s", "dupfirst/x.safetensors"), shard1, 2, 8, 1, &d1, &n) != MT_OK ||
        write_file(tpath("%s", "dupfirst/y.safetensors"), shard1, 1, 8, 1, &d2, &n) != MT_OK) {
        exit(1);
    }
    free(d1);
    free(d2);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && set == NULL &&
               msg_has("/dupfirst/x.safetensors", "/dupfirst/y.safetensors") &&
               msg_has("'model.embed_tokens.weight'", NULL),
           "duplicate tensor name that sorts first: %s", mt_last_error());
    /* A path to a regular file is opened as that one file. */
    st = mt_st_set_open(tpath("%s", "dupfirst/x.safetensors"), &set);
    tap_ok(st == MT_OK && mt_st_set_count(set) == 2 && mt_st_set_file_count(set) == 1,
           "a regular file given as the checkpoint opens as a set of one: %s",
           st == MT_OK ? "ok" : mt_last_error());
    mt_st_set_destroy(set);
    set = NULL;

    /* A shard the index names is absent. */
    dir = tpath("%s", "noshard");
    make_sharded(dir, index_json, &d1, &d2);
    free(d1);
    free(d2);
    snprintf(shard, sizeof(shard), "%s/model-00002-of-00002.safetensors", dir);
    snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    unlink(shard);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && msg_has(shard, index) && msg_has("No such file", NULL),
           "shard named in the index but absent: %s", mt_last_error());

    /* The index maps a tensor to a shard that does not hold it. */
    dir = tpath("%s", "missing");
    {
        char idx[sizeof(index_json) + 128];

        snprintf(idx, sizeof(idx), "%.*s, \"model.extra\": \"model-00001-of-00002.safetensors\"}}",
                 (int)strlen(index_json) - 2, index_json);
        make_sharded(dir, idx, &d1, &d2);
    }
    free(d1);
    free(d2);
    snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(index, "'model.extra'") &&
               msg_has("model-00001-of-00002.safetensors", NULL),
           "tensor in the index missing from its shard: %s", mt_last_error());

    /* A shard holds a tensor the index does not list. */
    dir = tpath("%s", "unlisted");
    {
        char idx[sizeof(index_json)];
        char *cut;

        snprintf(idx, sizeof(idx), "%s", index_json);
        cut = strstr(idx, ", \"model.norm.weight\"");
        snprintf(cut, sizeof(idx) - (size_t)(cut - idx), "}}");
        make_sharded(dir, idx, &d1, &d2);
    }
    free(d1);
    free(d2);
    snprintf(shard, sizeof(shard), "%s/model-00002-of-00002.safetensors", dir);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(shard, "'model.norm.weight' is not listed"),
           "tensor in a shard but not in the index: %s", mt_last_error());

    /* The index maps a tensor to the wrong shard. */
    dir = tpath("%s", "wrongshard");
    {
        char idx[sizeof(index_json)];
        char *p;

        snprintf(idx, sizeof(idx), "%s", index_json);
        p = strstr(idx, "\"model.layers.1.w\": \"model-00002");
        p[strlen("\"model.layers.1.w\": \"model-0000")] = '1';
        make_sharded(dir, idx, &d1, &d2);
    }
    free(d1);
    free(d2);
    snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(index, "'model.layers.1.w'"),
           "index maps a tensor to the wrong shard: %s", mt_last_error());

    /* The index itself is broken. */
    dir = tpath("%s", "badindex");
    make_sharded(dir, "{\"weight_map\": {\"a\": ", &d1, &d2);
    free(d1);
    free(d2);
    snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has(index, "not valid JSON"), "index not JSON: %s",
           mt_last_error());

    /* An index that maps nothing, or whose weight_map is no object, describes no checkpoint. */
    {
        static const struct {
            const char *json;
            const char *phrase;
        } bad[] = {
            {"{\"weight_map\": {}}", "\"weight_map\" is empty"},
            {"{\"weight_map\": [\"model-00001-of-00002.safetensors\"]}",
             "no \"weight_map\" object"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            write_bytes(index, bad[i].json, strlen(bad[i].json));
            st = mt_st_set_open(dir, &set);
            tap_ok(st == MT_ERR_FORMAT && set == NULL && msg_has(index, bad[i].phrase),
                   "index %s: %s", bad[i].json, mt_last_error());
        }
    }
    /* An index that exists but cannot be read (a symlink loop) fails; it is not taken as
       absent, which would load every *.safetensors of the directory. */
    unlink(index);
    if (symlink("model.safetensors.index.json", index) != 0) {
        perror(index);
        exit(1);
    }
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && set == NULL && msg_has(index, NULL),
           "an index that is a symlink loop: %s", mt_last_error());

    /* The index maps a tensor to ".", the directory itself. */
    dir = tpath("%s", "dotshard");
    make_sharded(dir, "{\"weight_map\": {\"model.embed\": \".\"}}", &d1, &d2);
    free(d1);
    free(d2);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_FORMAT && msg_has("maps to '.'", "not a file name"),
           "index maps a tensor to '.': %s", mt_last_error());
    /* Nor to anything else that is not a plain name in the checkpoint directory. */
    {
        static const char *const bad[] = {"", "..", "../dotshard/model-00001-of-00002.safetensors",
                                          "sub/model-00001-of-00002.safetensors"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            char ix[512];
            char want[256];

            snprintf(ix, sizeof(ix), "{\"weight_map\": {\"model.embed\": \"%s\"}}", bad[i]);
            snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
            write_bytes(index, ix, strlen(ix));
            snprintf(want, sizeof(want), "maps to '%s'", bad[i]);
            st = mt_st_set_open(dir, &set);
            tap_ok(st == MT_ERR_FORMAT && msg_has(want, "not a file name"),
                   "index maps a tensor to '%s': %s", bad[i], mt_last_error());
        }
    }

    /* A FIFO where a shard or the index belongs must fail, not block in open() forever. */
    alarm(10);
    dir = tpath("%s", "fifodir");
    make_dir(dir);
    snprintf(shard, sizeof(shard), "%s/model.safetensors", dir);
    if (mkfifo(shard, 0644) != 0) {
        perror(shard);
        exit(1);
    }
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && msg_has(shard, "is a FIFO"), "a FIFO shard: %s", mt_last_error());
    st = mt_st_set_open(shard, &set);
    tap_ok(st == MT_ERR_IO && msg_has(shard, "neither a directory nor a regular file"),
           "a FIFO given as the checkpoint: %s", mt_last_error());
    dir = tpath("%s", "fifoindex");
    make_sharded(dir, index_json, &d1, &d2);
    free(d1);
    free(d2);
    snprintf(index, sizeof(index), "%s/model.safetensors.index.json", dir);
    unlink(index);
    if (mkfifo(index, 0644) != 0) {
        perror(index);
        exit(1);
    }
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && msg_has(index, "not a regular file"), "a FIFO index: %s",
           mt_last_error());
    alarm(0);

    /* Nothing to open. */
    dir = tpath("%s", "emptydir");
    make_dir(dir);
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && msg_has(dir, "no model.safetensors.index.json and no"),
           "directory without weights: %s", mt_last_error());
    dir = tpath("%s", "does-not-exist");
    st = mt_st_set_open(dir, &set);
    tap_ok(st == MT_ERR_IO && msg_has(dir, "No such file"), "missing directory: %s",
           mt_last_error());
    tap_ok(set == NULL, "failed opens never set the output");
}

static void
test_dtypes(void)
{
    bool ok = true;
    enum mt_dtype dt;

    for (int i = 0; i < MT_DTYPE_COUNT; i++) {
        ok = ok && mt_dtype_parse(mt_dtype_name((enum mt_dtype)i), &dt) == MT_OK &&
             dt == (enum mt_dtype)i && mt_dtype_size(dt) >= 1 && mt_dtype_size(dt) <= 8;
    }
    tap_ok(ok && mt_dtype_size(MT_DTYPE_F8_E4M3) == 1 && mt_dtype_size(MT_DTYPE_BF16) == 2 &&
               mt_dtype_size(MT_DTYPE_F64) == 8 &&
               strcmp(mt_dtype_name(MT_DTYPE_BOOL), "BOOL") == 0,
           "dtype names and sizes round-trip");
    tap_ok(mt_dtype_parse("F4", &dt) == MT_ERR_FORMAT &&
               mt_dtype_parse("f32", &dt) == MT_ERR_FORMAT,
           "unknown dtype strings are refused");
}

int
main(void)
{
    tap_plan(0);
    mt_log_set_quiet(true);
    tmp = tap_tmpdir();
    test_dtypes();
    test_single_file();
    test_sets();
    test_writer_errors();
    test_writer_padding();
    test_writer_edges();
    test_bad_files();
    test_bad_sets();
    tap_rmtree(tmp);
    return tap_done();
}
