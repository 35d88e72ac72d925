/* SPDX-License-Identifier: MIT */
/*
 * safetensors.c - validated reading of safetensors files and sets of shards, and a streaming
 * writer.
 *
 * The one idea: a header is untrusted input. mt_st_header_parse() is the single gate every header
 * passes through (files, sets, and the fuzz target via mt_st_image_parse()): JSON syntax with
 * duplicate keys rejected, known fields only, a known dtype, a shape whose byte count is computed
 * with overflow checks, offsets inside the data section that match that byte count exactly, and
 * tensors that tile the data section exactly (no overlap, no hole, no trailing bytes). After that
 * gate a struct mt_st_tensor can be read with pread without further checks. The first detector
 * names the file (and the tensor) in its mt_fail() message.
 *
 * Reading keeps one fd per shard and uses pread in a loop, so any number of threads may read
 * concurrently. Writing streams: tensors are declared first, the header is written when the first
 * data byte arrives, and the file is built under "<path>.partial" and renamed into place by
 * mt_st_writer_finish(), so a crashed or abandoned writer never leaves a plausible-looking file.
 */
#include <config.h>

#include "runtime/model/safetensors.h"

#include "runtime/base/file_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* HF's safetensors refuses headers above 100 MB; so do we (the V3.2 index is far below). */
#define MT_ST_MAX_HEADER 100000000ULL
#define MT_ST_INDEX_NAME "model.safetensors.index.json"
#define MT_ST_SUFFIX ".safetensors"
/* Writer buffer: small pieces are gathered, large ones go straight to the file. */
#define MT_ST_WBUF (1u << 20)


/* ---- header validation ----------------------------------------------------------------------- */

const char *
mt_st_shape_str(const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t used = 0;

    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++) {
        used +=
            (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i > 0 ? ", " : "", shape[i]);
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
    return buf;
}

/* Non-negative JSON integer, or false. */
static bool
json_get_u64(const json_t *v, uint64_t *out)
{
    json_int_t x;

    if (!json_is_integer(v)) {
        return false;
    }
    x = json_integer_value(v);
    if (x < 0) {
        return false;
    }
    *out = (uint64_t)x;
    return true;
}

static mt_status_t
parse_metadata(const json_t *meta, const char *what)
{
    const char *key;
    json_t *val;

    if (!json_is_object(meta)) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': __metadata__ is not an object", what);
    }
    json_object_foreach((json_t *)meta, key, val) {
        if (!json_is_string(val)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "weights '%s': __metadata__ entry '%s' is not a string", what, key);
        }
    }
    return MT_OK;
}

/*
 * Validate one tensor entry and fill *t (name not set). data_start/data_size as for
 * mt_st_header_parse.
 */
static mt_status_t
parse_tensor(const char *name, const json_t *entry, uint64_t data_start, uint64_t data_size,
             const char *what, struct mt_st_tensor *t)
{
    const json_t *dtype_j, *shape_j, *offs_j;
    const char *key;
    json_t *val;
    uint64_t nelem = 1;
    uint64_t begin, end;
    size_t esize;
    char sbuf[256];

    if (!json_is_object(entry)) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': entry is not an object", what,
                       name);
    }
    json_object_foreach((json_t *)entry, key, val) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0) {
            return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': unknown field '%s'", what,
                           name, key);
        }
    }
    dtype_j = json_object_get(entry, "dtype");
    shape_j = json_object_get(entry, "shape");
    offs_j = json_object_get(entry, "data_offsets");
    if (dtype_j == NULL || shape_j == NULL || offs_j == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': missing field '%s'", what,
                       name,
                       dtype_j == NULL   ? "dtype"
                       : shape_j == NULL ? "shape"
                                         : "data_offsets");
    }

    if (!json_is_string(dtype_j)) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': dtype is not a string", what,
                       name);
    }
    if (mt_dtype_parse(json_string_value(dtype_j), &t->dtype) != MT_OK) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': unknown dtype '%s'", what,
                       name, json_string_value(dtype_j));
    }
    esize = mt_dtype_size(t->dtype);

    if (!json_is_array(shape_j)) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': tensor '%s': shape is not an array", what,
                       name);
    }
    if (json_array_size(shape_j) > MT_ST_MAX_DIMS) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': shape has %zu dimensions (at most %d supported)",
                       what, name, json_array_size(shape_j), MT_ST_MAX_DIMS);
    }
    t->ndim = (int)json_array_size(shape_j);
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;

        if (!json_get_u64(json_array_get(shape_j, (size_t)i), &d)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "weights '%s': tensor '%s': shape[%d] is not a non-negative integer",
                           what, name, i);
        }
        t->shape[i] = (int64_t)d;
        if (d != 0 && nelem > UINT64_MAX / d) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "weights '%s': tensor '%s': shape %s has too many elements for 64 bits",
                           what, name, mt_st_shape_str(t->shape, i + 1, sbuf, sizeof(sbuf)));
        }
        nelem *= d;
    }
    for (int i = t->ndim; i < MT_ST_MAX_DIMS; i++) {
        t->shape[i] = 0;
    }
    mt_st_shape_str(t->shape, t->ndim, sbuf, sizeof(sbuf));
    if (nelem > UINT64_MAX / esize || nelem * esize > (uint64_t)SIZE_MAX) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': shape %s of %s overflows the byte count", what,
                       name, sbuf, mt_dtype_name(t->dtype));
    }
    t->nelem = nelem;
    t->nbytes = nelem * esize;

    if (!json_is_array(offs_j) || json_array_size(offs_j) != 2 ||
        !json_get_u64(json_array_get(offs_j, 0), &begin) ||
        !json_get_u64(json_array_get(offs_j, 1), &end)) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': data_offsets is not two non-negative integers",
                       what, name);
    }
    if (begin > end) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] end before they begin",
                       what, name, begin, end);
    }
    if (end > data_size) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the end of the data section (%" PRIu64
                       " bytes; is the file truncated?)",
                       what, name, begin, end, data_size);
    }
    if (end - begin != t->nbytes) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] do not match shape %s of %s (%" PRIu64 " bytes)",
                       what, name, begin, end, sbuf, mt_dtype_name(t->dtype), t->nbytes);
    }
    t->offset = data_start + begin;
    return MT_OK;
}

static int
cmp_tensor_ptr_offset(const void *a, const void *b)
{
    const struct mt_st_tensor *x = *(const struct mt_st_tensor *const *)a;
    const struct mt_st_tensor *y = *(const struct mt_st_tensor *const *)b;

    if (x->offset != y->offset) {
        return x->offset < y->offset ? -1 : 1;
    }
    if (x->nbytes != y->nbytes) {
        return x->nbytes < y->nbytes ? -1 : 1;
    }
    return 0;
}

/*
 * The tensors of one file, sorted by offset, must cover its data section exactly, as HF's
 * safetensors requires: each begins where the one before ends (no overlap, no hole), the first at
 * 0, the last at the end of the file. Trailing bytes are refused too: they are how a header length
 * shortened into the header's padding shows, and such a file would shift every tensor.
 */
static mt_status_t
check_layout(const struct mt_st_tensor *ts, size_t n, uint64_t data_start, uint64_t data_size,
             const char *what)
{
    const struct mt_st_tensor **order;
    const struct mt_st_tensor *prev = NULL;
    uint64_t pos = 0; /* end of the covered prefix, relative to the data section */
    mt_status_t st = MT_OK;

    if (n == 0) {
        if (data_size != 0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "weights '%s': the header lists no tensor, but %" PRIu64
                           " data bytes follow it (a header length that stops short?)",
                           what, data_size);
        }
        return MT_OK;
    }
    order = malloc(n * sizeof(*order));
    if (order == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot allocate %zu tensor entries", what,
                       n);
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = &ts[i];
    }
    qsort(order, n, sizeof(*order), cmp_tensor_ptr_offset);
    for (size_t i = 0; i < n; i++) {
        const struct mt_st_tensor *t = order[i];
        uint64_t begin = t->offset - data_start;

        if (begin < pos) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "weights '%s': tensors '%s' (data_offsets [%" PRIu64 ", %" PRIu64
                         "]) and '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) overlap",
                         what, prev->name, prev->offset - data_start,
                         prev->offset - data_start + prev->nbytes, t->name, begin,
                         begin + t->nbytes);
            goto out_free;
        }
        if (begin > pos && prev == NULL) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "weights '%s': data bytes [0, %" PRIu64 ") belong to no tensor (a hole "
                         "before the first tensor '%s'); the tensors must cover the data section "
                         "exactly",
                         what, begin, t->name);
            goto out_free;
        }
        if (begin > pos) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "weights '%s': data bytes [%" PRIu64 ", %" PRIu64
                         ") belong to no tensor (a hole between tensors '%s' and '%s'); the "
                         "tensors must cover the data section exactly",
                         what, pos, begin, prev->name, t->name);
            goto out_free;
        }
        pos = begin + t->nbytes;
        prev = t;
    }
    if (pos != data_size) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "weights '%s': %" PRIu64 " bytes follow the last tensor '%s' (it ends at data "
                     "offset %" PRIu64 ", the data section has %" PRIu64
                     " bytes): trailing garbage, or a header length that stops short",
                     what, data_size - pos, prev->name, pos, data_size);
    }

out_free:
    free(order);
    return st;
}

mt_status_t
mt_st_header_parse(const char *json, size_t len, uint64_t data_start, uint64_t data_size,
                   const char *what, int file, struct mt_st_tensor **tensors, size_t *n)
{
    json_error_t jerr;
    json_t *root;
    struct mt_st_tensor *arr;
    const char *key;
    json_t *val;
    size_t n0 = *n;
    size_t m = *n;
    mt_status_t st = MT_OK;

    if (data_start > UINT64_MAX - data_size) {
        return mt_fail(MT_ERR_FORMAT, 0, "weights '%s': data section size overflows", what);
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': header is not valid JSON: %s (at byte %d of %zu)", what,
                       jerr.text, jerr.position, len);
    }
    if (!json_is_object(root)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "weights '%s': header is not a JSON object", what);
        goto out_decref;
    }
    arr = realloc(*tensors, (n0 + json_object_size(root) + 1) * sizeof(*arr));
    if (arr == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot allocate %zu tensor entries", what,
                     json_object_size(root));
        goto out_decref;
    }
    *tensors = arr;
    json_object_foreach(root, key, val) {
        struct mt_st_tensor *t = &arr[m];

        if (strcmp(key, "__metadata__") == 0) {
            st = parse_metadata(val, what);
            if (st != MT_OK) {
                goto out_free_new;
            }
            continue;
        }
        memset(t, 0, sizeof(*t));
        st = parse_tensor(key, val, data_start, data_size, what, t);
        if (st != MT_OK) {
            goto out_free_new;
        }
        t->name = strdup(key);
        if (t->name == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot allocate tensor name", what);
            goto out_free_new;
        }
        t->file = file;
        m++;
    }
    st = check_layout(arr + n0, m - n0, data_start, data_size, what);
    if (st != MT_OK) {
        goto out_free_new;
    }
    *n = m;
    json_decref(root);
    return MT_OK;

out_free_new:
    for (size_t i = n0; i < m; i++) {
        free(arr[i].name);
    }
out_decref:
    json_decref(root);
    return st;
}

void
mt_st_tensors_destroy(struct mt_st_tensor *tensors, size_t n)
{
    if (tensors == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(tensors[i].name);
    }
    free(tensors);
}

static uint64_t
load_le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The checks on the 8-byte length prefix shared by files and in-memory images. */
static mt_status_t
check_header_len(uint64_t hlen, uint64_t total, const char *what)
{
    if (total < 8) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': file is %" PRIu64
                       " bytes, too short for the 8-byte header length (truncated?)",
                       what, total);
    }
    if (hlen > total - 8) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': header length %" PRIu64
                       " runs past the end of the file (%" PRIu64
                       " bytes; truncated or not a safetensors file?)",
                       what, hlen, total);
    }
    if (hlen > MT_ST_MAX_HEADER) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "weights '%s': header length %" PRIu64 " exceeds the 100 MB limit", what,
                       hlen);
    }
    return MT_OK;
}

mt_status_t
mt_st_image_parse(const void *buf, size_t len, const char *what, struct mt_st_tensor **tensors,
                  size_t *n)
{
    const unsigned char *p = buf;
    uint64_t hlen = 0;
    mt_status_t st;

    if (len >= 8) {
        hlen = load_le64(p);
    }
    st = check_header_len(hlen, len, what);
    if (st != MT_OK) {
        return st;
    }
    return mt_st_header_parse((const char *)p + 8, (size_t)hlen, 8 + hlen, len - 8 - hlen, what, 0,
                              tensors, n);
}

/* ---- reading sets ---------------------------------------------------------------------------- */

struct mt_st_set {
    int nfiles;
    char **paths;                 /* owned, [nfiles] */
    int *fds;                     /* owned, [nfiles], -1 when not open */
    struct mt_st_tensor *tensors; /* owned, [n], sorted by name */
    size_t n;
    mt_st_progress_fn progress;   /* NULL, or called after every tensor read */
    void *progress_ctx;
};

/*
 * pread exactly n bytes at off, continuing after short reads and retrying EINTR. Returns the
 * number of bytes read (n on success); on failure *err is errno, or 0 at end of file.
 */
static size_t
pread_full(int fd, void *buf, size_t n, uint64_t off, int *err)
{
    size_t done = 0;

    *err = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            *err = errno;
            break;
        }
        if (r == 0) {
            break;
        }
        done += (size_t)r;
    }
    return done;
}

static char *
path_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    size_t nl = strlen(name);
    char *p;

    while (dl > 1 && dir[dl - 1] == '/') {
        dl--;
    }
    p = malloc(dl + 1 + nl + 1);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl + 1);
    return p;
}

static mt_status_t
set_alloc(int nfiles, struct mt_st_set **set_out)
{
    struct mt_st_set *set;

    set = calloc(1, sizeof(*set));
    if (set == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a safetensors set");
    }
    set->paths = calloc((size_t)nfiles, sizeof(*set->paths));
    set->fds = malloc((size_t)nfiles * sizeof(*set->fds));
    if (set->paths == NULL || set->fds == NULL) {
        free(set->paths);
        free(set->fds);
        free(set);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a set of %d safetensors files", nfiles);
    }
    for (int i = 0; i < nfiles; i++) {
        set->fds[i] = -1;
    }
    set->nfiles = nfiles;
    *set_out = set;
    return MT_OK;
}

/* Open file i of the set (set->paths[i] already set), validate its header, append its tensors. */
static mt_status_t
set_open_shard(struct mt_st_set *set, int i)
{
    const char *path = set->paths[i];
    unsigned char lenbuf[8];
    uint64_t size;
    uint64_t hlen = 0;
    size_t got;
    char *hdr;
    int err;
    int fd;
    mt_status_t st;

    /* Never blocks on a FIFO; anything but a regular file fails here. */
    st = mt_file_open_input(path, "weights", &fd, &size);
    if (st != MT_OK) {
        return st;
    }
    set->fds[i] = fd;
    if (size >= 8) {
        got = pread_full(fd, lenbuf, 8, 0, &err);
        if (got != 8) {
            return mt_fail(MT_ERR_IO, err, "cannot read header length of weights '%s'%s", path,
                           err == 0 ? ": file shrank while reading" : "");
        }
        hlen = load_le64(lenbuf);
    }
    st = check_header_len(hlen, size, path);
    if (st != MT_OK) {
        return st;
    }
    hdr = malloc(hlen > 0 ? (size_t)hlen : 1);
    if (hdr == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot allocate %" PRIu64 " header bytes",
                       path, hlen);
    }
    got = pread_full(fd, hdr, (size_t)hlen, 8, &err);
    if (got != hlen) {
        st = mt_fail(MT_ERR_IO, err,
                     "weights '%s': header truncated (read %zu of %" PRIu64 " bytes)", path, got,
                     hlen);
        goto out_free_hdr;
    }
    st = mt_st_header_parse(hdr, (size_t)hlen, 8 + hlen, size - 8 - hlen, path, i,
                            &set->tensors, &set->n);
out_free_hdr:
    free(hdr);
    return st;
}

static int
cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const struct mt_st_tensor *)a)->name, ((const struct mt_st_tensor *)b)->name);
}

/* Sort by name; names must be unique across the set. */
static mt_status_t
set_sort(struct mt_st_set *set)
{
    if (set->n == 0) {
        return MT_OK;
    }
    qsort(set->tensors, set->n, sizeof(*set->tensors), cmp_tensor_name);
    for (size_t i = 1; i < set->n; i++) {
        const struct mt_st_tensor *a = &set->tensors[i - 1];
        const struct mt_st_tensor *b = &set->tensors[i];

        if (strcmp(a->name, b->name) == 0) {
            return mt_fail(MT_ERR_FORMAT, 0, "tensor '%s' appears in both '%s' and '%s'", a->name,
                           set->paths[a->file], set->paths[b->file]);
        }
    }
    return MT_OK;
}

mt_status_t
mt_st_set_open_file(const char *path, struct mt_st_set **set_out)
{
    struct mt_st_set *set;
    mt_status_t st;

    st = set_alloc(1, &set);
    if (st != MT_OK) {
        return st;
    }
    set->paths[0] = strdup(path);
    if (set->paths[0] == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate path '%s'", path);
        goto out_destroy;
    }
    st = set_open_shard(set, 0);
    if (st != MT_OK) {
        goto out_destroy;
    }
    st = set_sort(set);
    if (st != MT_OK) {
        goto out_destroy;
    }
    *set_out = set;
    return MT_OK;

out_destroy:
    mt_st_set_destroy(set);
    return st;
}

static int
cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index of shard name s in the sorted unique list, or -1. */
static int
shard_lookup(const char **names, int n, const char *s)
{
    int lo = 0;
    int hi = n - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(s, names[mid]);

        if (c == 0) {
            return mid;
        }
        if (c < 0) {
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    return -1;
}

/* The index path: every shard named must exist; the index and the headers must agree exactly. */
static mt_status_t
set_open_index(const char *dir, const char *index_path, struct mt_st_set **set_out)
{
    json_t *root;
    json_t *wmap;
    const char *key;
    json_t *val;
    const char **names;
    size_t nmap;
    int nshards = 0;
    struct mt_st_set *set = NULL;
    mt_status_t st = MT_OK;

    st = mt_json_load_file(index_path, "index", MT_FILE_MAX_INDEX, &root);
    if (st != MT_OK) {
        return st;
    }
    wmap = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wmap)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "index '%s': no \"weight_map\" object", index_path);
        goto out_decref;
    }
    nmap = json_object_size(wmap);
    if (nmap == 0) {
        st = mt_fail(MT_ERR_FORMAT, 0, "index '%s': \"weight_map\" is empty", index_path);
        goto out_decref;
    }
    names = malloc(nmap * sizeof(*names));
    if (names == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "index '%s': cannot allocate %zu entries", index_path, nmap);
        goto out_decref;
    }
    json_object_foreach(wmap, key, val) {
        const char *s = json_string_value(val);

        if (s == NULL) {
            st = mt_fail(MT_ERR_FORMAT, 0, "index '%s': weight_map entry '%s' is not a string",
                         index_path, key);
            goto out_free_names;
        }
        if (s[0] == '\0' || strchr(s, '/') != NULL || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "index '%s': tensor '%s' maps to '%s', which is not a file name in the "
                         "checkpoint directory",
                         index_path, key, s);
            goto out_free_names;
        }
        names[nshards++] = s;
    }
    qsort(names, (size_t)nshards, sizeof(*names), cmp_str_ptr);
    {
        int u = 0;

        for (int i = 0; i < nshards; i++) {
            if (u == 0 || strcmp(names[u - 1], names[i]) != 0) {
                names[u++] = names[i];
            }
        }
        nshards = u;
    }

    st = set_alloc(nshards, &set);
    if (st != MT_OK) {
        goto out_free_names;
    }
    for (int i = 0; i < nshards; i++) {
        set->paths[i] = path_join(dir, names[i]);
        if (set->paths[i] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate shard path");
            goto out_destroy;
        }
        if (access(set->paths[i], F_OK) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "shard '%s' named in index '%s' cannot be opened",
                         set->paths[i], index_path);
            goto out_destroy;
        }
    }
    for (int i = 0; i < nshards; i++) {
        st = set_open_shard(set, i);
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    st = set_sort(set);
    if (st != MT_OK) {
        goto out_destroy;
    }
    json_object_foreach(wmap, key, val) {
        int want = shard_lookup(names, nshards, json_string_value(val));
        const struct mt_st_tensor *t = mt_st_set_find(set, key);

        if (t == NULL) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "index '%s' maps tensor '%s' to shard '%s', which has no such tensor",
                         index_path, key, set->paths[want]);
            goto out_destroy;
        }
        if (t->file != want) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "index '%s' maps tensor '%s' to shard '%s', but it is in '%s'", index_path,
                         key, set->paths[want], set->paths[t->file]);
            goto out_destroy;
        }
    }
    if (set->n != nmap) {
        for (size_t i = 0; i < set->n; i++) {
            if (json_object_get(wmap, set->tensors[i].name) == NULL) {
                st = mt_fail(MT_ERR_FORMAT, 0,
                             "weights '%s': tensor '%s' is not listed in index '%s'",
                             set->paths[set->tensors[i].file], set->tensors[i].name, index_path);
                goto out_destroy;
            }
        }
        st = mt_fail(MT_ERR_INTERNAL, 0, "index '%s': %zu entries but %zu tensors", index_path,
                     nmap, set->n);
        goto out_destroy;
    }
    free(names);
    json_decref(root);
    *set_out = set;
    return MT_OK;

out_destroy:
    mt_st_set_destroy(set);
out_free_names:
    free(names);
out_decref:
    json_decref(root);
    return st;
}

static bool
has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);

    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* No index: every *.safetensors file of dir, sorted by name. */
static mt_status_t
set_open_glob(const char *dir, struct mt_st_set **set_out)
{
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t nnames = 0;
    size_t cap = 0;
    struct mt_st_set *set = NULL;
    mt_status_t st = MT_OK;

    d = opendir(dir);
    if (d == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot open checkpoint directory '%s'", dir);
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!has_suffix(de->d_name, MT_ST_SUFFIX)) {
            continue;
        }
        if (nnames == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            char **nn = realloc(names, ncap * sizeof(*nn));

            if (nn == NULL) {
                st = mt_fail(MT_ERR_NOMEM, 0, "cannot list '%s'", dir);
                goto out_free_names;
            }
            names = nn;
            cap = ncap;
        }
        names[nnames] = strdup(de->d_name);
        if (names[nnames] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot list '%s'", dir);
            goto out_free_names;
        }
        nnames++;
        errno = 0;
    }
    if (errno != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot list checkpoint directory '%s'", dir);
        goto out_free_names;
    }
    if (nnames == 0) {
        st = mt_fail(MT_ERR_IO, 0,
                     "no %s and no *%s files in '%s' (is this a HuggingFace checkpoint "
                     "directory? pass the directory holding the downloaded weights)",
                     MT_ST_INDEX_NAME, MT_ST_SUFFIX, dir);
        goto out_free_names;
    }
    if (nnames > (size_t)INT32_MAX) {
        st = mt_fail(MT_ERR_UNSUPPORTED, 0, "'%s' holds too many safetensors files", dir);
        goto out_free_names;
    }
    qsort(names, nnames, sizeof(*names), cmp_str_ptr);
    st = set_alloc((int)nnames, &set);
    if (st != MT_OK) {
        goto out_free_names;
    }
    for (size_t i = 0; i < nnames; i++) {
        set->paths[i] = path_join(dir, names[i]);
        if (set->paths[i] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate shard path");
            goto out_destroy;
        }
        st = set_open_shard(set, (int)i);
        if (st != MT_OK) {
            goto out_destroy;
        }
    }
    st = set_sort(set);
    if (st != MT_OK) {
        goto out_destroy;
    }
    *set_out = set;
    set = NULL;

out_destroy:
    mt_st_set_destroy(set);
out_free_names:
    for (size_t i = 0; i < nnames; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return st;
}

mt_status_t
mt_st_set_open(const char *dir, struct mt_st_set **set_out)
{
    struct stat sb;
    char *index_path;
    mt_status_t st;

    if (stat(dir, &sb) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot open checkpoint directory '%s'", dir);
    }
    if (S_ISREG(sb.st_mode)) {
        return mt_st_set_open_file(dir, set_out);
    }
    if (!S_ISDIR(sb.st_mode)) {
        return mt_fail(MT_ERR_IO, 0, "checkpoint '%s' is neither a directory nor a regular file",
                       dir);
    }
    index_path = path_join(dir, MT_ST_INDEX_NAME);
    if (index_path == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate index path");
    }
    if (stat(index_path, &sb) != 0 && errno == ENOENT) {
        st = set_open_glob(dir, set_out);
    } else {
        /* It exists as something: mt_file_open_input refuses a FIFO or a directory. */
        st = set_open_index(dir, index_path, set_out);
    }
    free(index_path);
    return st;
}

void
mt_st_set_destroy(struct mt_st_set *set)
{
    if (set == NULL) {
        return;
    }
    mt_st_tensors_destroy(set->tensors, set->n);
    for (int i = set->nfiles - 1; i >= 0; i--) {
        if (set->fds[i] >= 0) {
            close(set->fds[i]);
        }
        free(set->paths[i]);
    }
    free(set->fds);
    free(set->paths);
    free(set);
}

size_t
mt_st_set_count(const struct mt_st_set *set)
{
    return set->n;
}

const struct mt_st_tensor *
mt_st_set_tensor(const struct mt_st_set *set, size_t i)
{
    if (i >= set->n) {
        return NULL;
    }
    return &set->tensors[i];
}

const struct mt_st_tensor *
mt_st_set_find(const struct mt_st_set *set, const char *name)
{
    size_t lo = 0;
    size_t hi = set->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, set->tensors[mid].name);

        if (c == 0) {
            return &set->tensors[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

int
mt_st_set_file_count(const struct mt_st_set *set)
{
    return set->nfiles;
}

const char *
mt_st_set_file_path(const struct mt_st_set *set, int file)
{
    if (file < 0 || file >= set->nfiles) {
        return "(no such shard)";
    }
    return set->paths[file];
}

static mt_status_t
read_tensor(const struct mt_st_set *set, const struct mt_st_tensor *t, void *dst, size_t dst_size,
            bool count)
{
    size_t got;
    int err;

    if (t == NULL || t->file < 0 || t->file >= set->nfiles) {
        return mt_fail(MT_ERR_INVAL, 0, "tensor '%s' does not belong to this safetensors set",
                       t != NULL && t->name != NULL ? t->name : "(null)");
    }
    if (dst_size < t->nbytes) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "tensor '%s' has %" PRIu64 " bytes but the destination holds %zu", t->name,
                       t->nbytes, dst_size);
    }
    got = pread_full(set->fds[t->file], dst, (size_t)t->nbytes, t->offset, &err);
    if (got != t->nbytes) {
        if (err != 0) {
            return mt_fail(MT_ERR_IO, err, "cannot read tensor '%s' from '%s'", t->name,
                           set->paths[t->file]);
        }
        return mt_fail(MT_ERR_IO, 0,
                       "cannot read tensor '%s' from '%s': short read (%zu of %" PRIu64
                       " bytes; file truncated since it was opened?)",
                       t->name, set->paths[t->file], got, t->nbytes);
    }
    if (count && set->progress != NULL) {
        set->progress(set->progress_ctx, t->nbytes);
    }
    return MT_OK;
}

mt_status_t
mt_st_set_read(const struct mt_st_set *set, const struct mt_st_tensor *t, void *dst,
               size_t dst_size)
{
    return read_tensor(set, t, dst, dst_size, true);
}

mt_status_t
mt_st_set_reread(const struct mt_st_set *set, const struct mt_st_tensor *t, void *dst,
                 size_t dst_size)
{
    return read_tensor(set, t, dst, dst_size, false);
}

void
mt_st_set_set_progress(struct mt_st_set *set, mt_st_progress_fn fn, void *ctx)
{
    set->progress = fn;
    set->progress_ctx = ctx;
}

/* ---- writing --------------------------------------------------------------------------------- */

struct mt_st_writer {
    char *path;          /* owned: the final name */
    char *tmp_path;      /* owned: "<path>.partial", renamed to path by finish */
    int fd;              /* owned */
    json_t *tensors;     /* owned: name -> {dtype, shape, data_offsets}, in declaration order */
    json_t *meta;        /* owned, NULL until the first mt_st_writer_meta */
    uint64_t total;      /* data bytes declared */
    uint64_t written;    /* data bytes accepted so far */
    uint64_t file_bytes; /* bytes handed to write(2), header included */
    bool header_done;
    mt_status_t failed; /* first failure; later calls return it quietly */
    unsigned char *buf; /* owned, MT_ST_WBUF bytes */
    size_t buf_len;
};

mt_status_t
mt_st_writer_create(const char *path, struct mt_st_writer **w_out)
{
    struct mt_st_writer *w;
    size_t pl = strlen(path);
    mt_status_t st;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate writer for '%s'", path);
    }
    w->fd = -1;
    w->path = strdup(path);
    w->tmp_path = malloc(pl + sizeof(".partial"));
    w->tensors = json_object();
    w->buf = malloc(MT_ST_WBUF);
    if (w->path == NULL || w->tmp_path == NULL || w->tensors == NULL || w->buf == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate writer for '%s'", path);
        goto out_free;
    }
    memcpy(w->tmp_path, path, pl);
    memcpy(w->tmp_path + pl, ".partial", sizeof(".partial"));
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot create weights '%s'", w->tmp_path);
        goto out_free;
    }
    *w_out = w;
    return MT_OK;

out_free:
    free(w->buf);
    json_decref(w->tensors);
    free(w->tmp_path);
    free(w->path);
    free(w);
    return st;
}

/* write(2) all n bytes, continuing after short writes and retrying EINTR. */
static mt_status_t
write_full(struct mt_st_writer *w, const void *data, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = write(w->fd, (const char *)data + done, n - done);
        int e = errno;

        if (r < 0 && e == EINTR) {
            continue;
        }
        if (r <= 0) {
            if (r == 0) {
                e = ENOSPC;
            }
            if (e == ENOSPC || e == EDQUOT) {
                w->failed = mt_fail(MT_ERR_IO, 0,
                                    "cannot write weights '%s' after %" PRIu64 " bytes: %s (free "
                                    "space on that file system or write elsewhere)",
                                    w->path, w->file_bytes + done, strerror(e));
            } else {
                w->failed =
                    mt_fail(MT_ERR_IO, e, "cannot write weights '%s' after %" PRIu64 " bytes",
                            w->path, w->file_bytes + done);
            }
            return w->failed;
        }
        done += (size_t)r;
    }
    w->file_bytes += n;
    return MT_OK;
}

static mt_status_t
writer_flush(struct mt_st_writer *w)
{
    mt_status_t st;

    if (w->buf_len == 0) {
        return MT_OK;
    }
    st = write_full(w, w->buf, w->buf_len);
    w->buf_len = 0;
    return st;
}

/* Gather small pieces in the buffer; large ones bypass it. */
static mt_status_t
writer_put(struct mt_st_writer *w, const void *data, size_t n)
{
    const unsigned char *p = data;
    mt_status_t st;

    while (n > 0) {
        size_t k;

        if (w->buf_len == 0 && n >= MT_ST_WBUF) {
            return write_full(w, p, n);
        }
        k = MT_MIN(n, MT_ST_WBUF - w->buf_len);
        memcpy(w->buf + w->buf_len, p, k);
        w->buf_len += k;
        p += k;
        n -= k;
        if (w->buf_len == MT_ST_WBUF) {
            st = writer_flush(w);
            if (st != MT_OK) {
                return st;
            }
        }
    }
    return MT_OK;
}

mt_status_t
mt_st_writer_add(struct mt_st_writer *w, const char *name, enum mt_dtype dt, int ndim,
                 const int64_t *shape)
{
    uint64_t nelem = 1;
    uint64_t nbytes;
    json_t *entry;
    json_t *shape_j;
    char sbuf[256];

    if (w->failed != MT_OK) {
        return w->failed;
    }
    if (w->header_done) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor '%s' declared after data was written",
                       w->path, name);
    }
    if (name == NULL || name[0] == '\0' || strcmp(name, "__metadata__") == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': invalid tensor name '%s'", w->path,
                       name != NULL ? name : "(null)");
    }
    if (json_object_get(w->tensors, name) != NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor '%s' declared twice", w->path, name);
    }
    if ((unsigned)dt >= MT_DTYPE_COUNT) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor '%s': invalid dtype %d", w->path,
                       name, (int)dt);
    }
    if (ndim < 0 || ndim > MT_ST_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "weights '%s': tensor '%s': %d dimensions (0 to %d allowed)", w->path, name,
                       ndim, MT_ST_MAX_DIMS);
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor '%s': negative shape %s", w->path,
                           name, mt_st_shape_str(shape, ndim, sbuf, sizeof(sbuf)));
        }
        if (shape[i] != 0 && nelem > UINT64_MAX / (uint64_t)shape[i]) {
            nelem = UINT64_MAX;
            break;
        }
        nelem *= (uint64_t)shape[i];
    }
    if (nelem > (uint64_t)INT64_MAX / mt_dtype_size(dt) ||
        w->total > (uint64_t)INT64_MAX - nelem * mt_dtype_size(dt)) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor '%s': shape %s overflows the file",
                       w->path, name, mt_st_shape_str(shape, ndim, sbuf, sizeof(sbuf)));
    }
    nbytes = nelem * mt_dtype_size(dt);

    shape_j = json_array();
    entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", mt_dtype_name(dt), "shape", shape_j,
                      "data_offsets", (json_int_t)w->total, (json_int_t)(w->total + nbytes));
    if (entry == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot build header entry for '%s'", w->path,
                       name);
    }
    for (int i = 0; i < ndim; i++) {
        if (json_array_append_new(shape_j, json_integer((json_int_t)shape[i])) != 0) {
            json_decref(entry);
            return mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot build header entry for '%s'",
                           w->path, name);
        }
    }
    if (json_object_set_new(w->tensors, name, entry) != 0) {
        /* jansson refuses keys that are not valid UTF-8 (and consumed entry). */
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': tensor name '%s' is not valid UTF-8",
                       w->path, name);
    }
    w->total += nbytes;
    return MT_OK;
}

mt_status_t
mt_st_writer_meta(struct mt_st_writer *w, const char *key, const char *value)
{
    json_t *v;

    if (w->failed != MT_OK) {
        return w->failed;
    }
    if (w->header_done) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': metadata '%s' added after data was written",
                       w->path, key);
    }
    if (w->meta == NULL) {
        w->meta = json_object();
        if (w->meta == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot allocate metadata", w->path);
        }
    }
    if (json_object_get(w->meta, key) != NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "weights '%s': metadata key '%s' given twice", w->path,
                       key);
    }
    v = json_string(value);
    if (v == NULL || json_object_set_new(w->meta, key, v) != 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "weights '%s': metadata '%s' is not valid UTF-8 (or out of memory)", w->path,
                       key);
    }
    return MT_OK;
}

/* Serialize the header ("__metadata__" first, as HF does), pad it with spaces to a multiple of 8.
 */
static mt_status_t
writer_header(struct mt_st_writer *w)
{
    json_t *root;
    char *text;
    size_t len;
    size_t padded;
    unsigned char lenbuf[8];
    const char *key;
    json_t *val;
    mt_status_t st;

    w->header_done = true;
    root = json_object();
    if (root == NULL) {
        return w->failed = mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot build header", w->path);
    }
    if (w->meta != NULL && json_object_set(root, "__metadata__", w->meta) != 0) {
        json_decref(root);
        return w->failed = mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot build header", w->path);
    }
    json_object_foreach(w->tensors, key, val) {
        if (json_object_set(root, key, val) != 0) {
            json_decref(root);
            return w->failed =
                       mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot build header", w->path);
        }
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text == NULL) {
        return w->failed =
                   mt_fail(MT_ERR_NOMEM, 0, "weights '%s': cannot serialize header", w->path);
    }
    len = strlen(text);
    padded = (len + 7) & ~(size_t)7;
    if (padded > MT_ST_MAX_HEADER) {
        free(text);
        return w->failed = mt_fail(MT_ERR_INVAL, 0,
                                   "weights '%s': header of %zu bytes exceeds the 100 MB limit "
                                   "(split the tensors over more shards)",
                                   w->path, padded);
    }
    for (int i = 0; i < 8; i++) {
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    }
    st = writer_put(w, lenbuf, 8);
    if (st == MT_OK) {
        st = writer_put(w, text, len);
    }
    for (size_t i = len; i < padded && st == MT_OK; i++) {
        st = writer_put(w, " ", 1);
    }
    free(text);
    return st;
}

mt_status_t
mt_st_writer_write(struct mt_st_writer *w, const void *data, size_t n)
{
    mt_status_t st;

    if (w->failed != MT_OK) {
        return w->failed;
    }
    if (n > w->total - w->written) {
        return w->failed = mt_fail(MT_ERR_INVAL, 0,
                                   "weights '%s': %zu more bytes written than the %" PRIu64
                                   " bytes the tensors declare",
                                   w->path, (size_t)(n - (w->total - w->written)), w->total);
    }
    if (!w->header_done) {
        st = writer_header(w);
        if (st != MT_OK) {
            return st;
        }
    }
    st = writer_put(w, data, n);
    if (st != MT_OK) {
        return st;
    }
    w->written += n;
    return MT_OK;
}

static void
writer_free(struct mt_st_writer *w)
{
    free(w->buf);
    json_decref(w->meta);
    json_decref(w->tensors);
    free(w->tmp_path);
    free(w->path);
    free(w);
}

mt_status_t
mt_st_writer_finish(struct mt_st_writer *w)
{
    mt_status_t st = MT_OK;

    if (w->failed != MT_OK) {
        st = w->failed;
        goto out_destroy;
    }
    if (w->written != w->total) {
        st = mt_fail(MT_ERR_INVAL, 0,
                     "weights '%s': only %" PRIu64 " of the %" PRIu64
                     " declared data bytes were written",
                     w->path, w->written, w->total);
        goto out_destroy;
    }
    if (!w->header_done) {
        st = writer_header(w);
    }
    if (st == MT_OK) {
        st = writer_flush(w);
    }
    if (st != MT_OK) {
        goto out_destroy;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        st = mt_fail(MT_ERR_IO, errno, "cannot write weights '%s'", w->path);
        goto out_destroy;
    }
    w->fd = -1;
    if (rename(w->tmp_path, w->path) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot rename '%s' to '%s'", w->tmp_path, w->path);
        goto out_destroy;
    }
    writer_free(w);
    return MT_OK;

out_destroy:
    mt_st_writer_destroy(w);
    return st;
}

void
mt_st_writer_destroy(struct mt_st_writer *w)
{
    if (w == NULL) {
        return;
    }
    if (w->fd >= 0) {
        close(w->fd);
    }
    unlink(w->tmp_path);
    writer_free(w);
}
