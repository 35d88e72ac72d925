/* SPDX-License-Identifier: MIT */
/*
 * store.c - writing and checking expert stores (io/store.h).
 *
 * The format is little-endian and written with the host's struct layout (x86-64 and aarch64 are
 * both little-endian with the same layout for these fixed-width fields); the static assertions
 * below pin the sizes a reader relies on.
 */
#include <config.h>

#include "io/store.h"

#include "io/crc32c.h"
#include "runtime/base/file_kind.h"
#include "runtime/base/size_text.h"
#include "io/uring_reader.h" /* MT_IO_ALIGN */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct mt_io_store_header) == 88, "store header layout changed");
_Static_assert(sizeof(struct mt_io_store_entry) == 120, "store index entry layout changed");

#define HEADER_BYTES 4096u
#define ALIGN_UP(x) (((x) + MT_IO_ALIGN - 1) & ~(uint64_t)(MT_IO_ALIGN - 1))

/* ---- reading -------------------------------------------------------------------------------- */

struct mt_io_store {
    int n_layers;
    int n_experts;
    struct mt_io_store_entry *index; // (n_layers * n_experts), owned
};

static uint32_t
header_crc(const struct mt_io_store_header *h)
{
    return mt_crc32c(0, h, offsetof(struct mt_io_store_header, header_crc));
}

static mt_status_t
pread_full(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return mt_fail(MT_ERR_IO, errno, "cannot read store '%s' at %llu", path,
                           (unsigned long long)(off + got));
        }
        if (n == 0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "store '%s' is truncated: it ends at %llu, inside its header or index; "
                           "repack with moetier pack",
                           path, (unsigned long long)(off + got));
        }
        got += (size_t)n;
    }
    return MT_OK;
}

/* Read and check the header of paths[i]; fd stays open in *fd_out on success. */
static mt_status_t
check_header(const char *path, int i, int n_files, uint64_t model_hash,
             struct mt_io_store_header *h, int *fd_out)
{
    struct stat sb;
    mt_status_t st;
    int fd;

    if (stat(path, &sb) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot open store '%s'%s", path,
                       errno == ENOENT ? " (an interrupted pack leaves only .partial files: "
                                         "run moetier pack again)"
                                       : "");
    }
    /* a regular file only: a FIFO would block the open, a directory fail the first read */
    if (!S_ISREG(sb.st_mode)) {
        return mt_fail(MT_ERR_IO, 0, "store '%s' is %s, not a regular file (give the files "
                       "moetier pack wrote)", path, mt_file_kind_str(sb.st_mode));
    }
    /* O_NONBLOCK for the open only: a FIFO put in the file's place since the stat would block */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot open store '%s'", path);
    }
    if (fstat(fd, &sb) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot stat store '%s'", path);
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode) || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        st = mt_fail(MT_ERR_IO, 0, "store '%s' is no longer a regular file", path);
        goto out_close;
    }
    if ((uint64_t)sb.st_size < sizeof(*h)) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "'%s' is not a moetier expert store: %llu bytes, too short for a header; make "
                     "one with moetier pack",
                     path, (unsigned long long)sb.st_size);
        goto out_close;
    }
    st = pread_full(fd, h, sizeof(*h), 0, path);
    if (st != MT_OK) {
        goto out_close;
    }
    if (memcmp(h->magic, MT_IO_STORE_MAGIC, 8) != 0) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "'%s' is not a moetier expert store (no MTSTORE1 header; an interrupted pack "
                     "writes none); make one with moetier pack",
                     path);
        goto out_close;
    }
    if (h->version != MT_IO_STORE_VERSION) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "store '%s' has format version %u, this moetier reads version %u; repack with "
                     "moetier pack",
                     path, h->version, MT_IO_STORE_VERSION);
        goto out_close;
    }
    if (header_crc(h) != h->header_crc || h->header_bytes != HEADER_BYTES ||
        h->index_off != HEADER_BYTES ||
        h->index_bytes != (uint64_t)h->n_layers * h->n_experts * sizeof(struct mt_io_store_entry) ||
        h->data_off < h->index_off + h->index_bytes || h->data_off % MT_IO_ALIGN != 0 ||
        h->n_layers == 0 || h->n_experts == 0 ||
        h->n_layers * (uint64_t)h->n_experts > (1u << 24)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "store '%s' has a corrupt header; repack with moetier pack",
                     path);
        goto out_close;
    }
    if (h->model_hash != model_hash) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "store '%s' was packed for another model (model hash %016llx, this checkpoint "
                     "%016llx); repack with moetier pack -m DIR -o FILE",
                     path, (unsigned long long)h->model_hash, (unsigned long long)model_hash);
        goto out_close;
    }
    if (h->n_files != (uint32_t)n_files || h->file_index != (uint32_t)i) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "store '%s' is file %u of %u, given as file %d of %d; give every file of the "
                     "store, in the order given to moetier pack",
                     path, h->file_index + 1, h->n_files, i + 1, n_files);
        goto out_close;
    }
    if ((uint64_t)sb.st_size != h->file_bytes) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "store '%s' is %s: %llu bytes, its header says %llu (an interrupted copy?); "
                     "repack with moetier pack",
                     path, (uint64_t)sb.st_size < h->file_bytes ? "truncated" : "too long",
                     (unsigned long long)sb.st_size, (unsigned long long)h->file_bytes);
        goto out_close;
    }
    *fd_out = fd;
    return MT_OK;

out_close:
    close(fd);
    return st;
}

mt_status_t
mt_io_store_open(const char *const *paths, int n_files, uint64_t model_hash,
                 struct mt_io_store **store_out)
{
    struct mt_io_store_header h0;
    uint64_t file_bytes[MT_IO_MAX_FILES];
    struct mt_io_store *s = NULL;
    size_t n_keys = 0;
    mt_status_t st;
    int fd = -1;

    if (n_files < 1 || n_files > MT_IO_MAX_FILES) {
        return mt_fail(MT_ERR_INVAL, 0, "a store has 1..%d files, got %d", MT_IO_MAX_FILES,
                       n_files);
    }
    for (int i = 0; i < n_files; i++) {
        struct mt_io_store_header h;

        st = check_header(paths[i], i, n_files, model_hash, &h, &fd);
        if (st != MT_OK) {
            mt_io_store_close(s); /* the index read from file 0, if any */
            return st;
        }
        file_bytes[i] = h.file_bytes;
        if (i == 0) {
            h0 = h;
            n_keys = (size_t)h.n_layers * h.n_experts;
            s = calloc(1, sizeof(*s));
            if (s == NULL || (s->index = malloc(h.index_bytes)) == NULL) {
                free(s);
                close(fd);
                return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the index of store '%s'",
                               paths[0]);
            }
            s->n_layers = (int)h.n_layers;
            s->n_experts = (int)h.n_experts;
            st = pread_full(fd, s->index, h.index_bytes, h.index_off, paths[0]);
            if (st == MT_OK && mt_crc32c(0, s->index, h.index_bytes) != h.index_crc) {
                st = mt_fail(MT_ERR_FORMAT, 0,
                             "store '%s' has a corrupt index (CRC mismatch); repack with moetier "
                             "pack",
                             paths[0]);
            }
        } else if (h.store_id != h0.store_id || h.index_crc != h0.index_crc ||
                   h.n_layers != h0.n_layers || h.n_experts != h0.n_experts) {
            st = mt_fail(MT_ERR_FORMAT, 0,
                         "store files '%s' and '%s' come from different packs; give the files of "
                         "one pack",
                         paths[0], paths[i]);
        }
        close(fd);
        if (st != MT_OK) {
            mt_io_store_close(s);
            return st;
        }
    }
    for (size_t k = 0; k < n_keys; k++) {
        const struct mt_io_store_entry *e = &s->index[k];
        bool bad = false;

        if (e->len == 0) {
            continue;
        }
        bad = e->file >= (uint32_t)n_files || e->off % MT_IO_ALIGN != 0 ||
              e->len % MT_IO_ALIGN != 0 || e->off < h0.data_off || e->off + e->len < e->off ||
              e->off + e->len > file_bytes[e->file];
        for (int p = 0; p < MT_IO_N_PARTS && !bad; p++) {
            bad = e->part_len[p] > 0 &&
                  (e->part_off[p] % MT_IO_ALIGN != 0 || e->part_off[p] > e->len ||
                   e->part_len[p] > e->len - e->part_off[p]);
        }
        if (bad) {
            mt_io_store_close(s);
            return mt_fail(MT_ERR_FORMAT, 0,
                           "store '%s': index entry of layer %zu expert %zu is out of bounds; "
                           "repack with moetier pack",
                           paths[0], k / h0.n_experts, k % h0.n_experts);
        }
    }
    *store_out = s;
    return MT_OK;
}

void
mt_io_store_close(struct mt_io_store *s)
{
    if (s == NULL) {
        return;
    }
    free(s->index);
    free(s);
}

int
mt_io_store_layers(const struct mt_io_store *s)
{
    return s->n_layers;
}

int
mt_io_store_experts(const struct mt_io_store *s)
{
    return s->n_experts;
}

const struct mt_io_store_entry *
mt_io_store_entry(const struct mt_io_store *s, int layer, int expert)
{
    MT_ASSERT(layer >= 0 && layer < s->n_layers && expert >= 0 && expert < s->n_experts);
    return &s->index[(size_t)layer * s->n_experts + expert];
}

/* ---- writing -------------------------------------------------------------------------------- */

struct mt_io_store_writer {
    int n_files;
    char **paths;        /* final names, owned */
    char **partial;      /* "<path>.partial", owned */
    int *fds;            /* owned */
    struct mt_io_store_header hdr; /* common fields */
    uint64_t file_bytes[MT_IO_MAX_FILES];
    struct mt_io_store_entry *index; // (n_keys), owned
    size_t index_alloc;  /* index bytes rounded to 4 KiB */
    bool *written;       // (n_keys), owned
    size_t n_keys;
    char *buf;           /* one extent, 4 KiB aligned, owned */
    uint64_t buf_bytes;
    uint64_t total;
};

void
mt_io_store_writer_destroy(struct mt_io_store_writer *w)
{
    if (w == NULL) {
        return;
    }
    for (int i = 0; i < w->n_files; i++) {
        if (w->fds != NULL && w->fds[i] >= 0) {
            close(w->fds[i]);
        }
        if (w->partial != NULL && w->partial[i] != NULL) {
            unlink(w->partial[i]);
            free(w->partial[i]);
        }
        if (w->paths != NULL) {
            free(w->paths[i]);
        }
    }
    free(w->paths);
    free(w->partial);
    free(w->fds);
    free(w->index);
    free(w->written);
    free(w->buf);
    free(w);
}

/*
 * Where store file `path` is renamed to when it is complete (*target_out, malloc'd): path itself
 * when it is absent or a regular file; for a symbolic link to a regular file, that file (the link
 * stays, as out_file.h does for other outputs). Anything else is refused here, before a byte is
 * copied: rename(2) replaces whatever the name holds, so "-o /dev/null" run as root would swap the
 * system's /dev/null for a store, and a directory would fail only at the very end.
 */
static mt_status_t
store_resolve_target_(const char *path, char **target_out)
{
    struct stat sb;
    char *target;

    if (path[0] == '\0') {
        return mt_fail(MT_ERR_INVAL, 0, "a store file needs a name (got an empty one)");
    }
    if (lstat(path, &sb) != 0) {
        /* absent, or not inspectable: creating "<path>.partial" says why */
        target = strdup(path);
    } else if (S_ISLNK(sb.st_mode)) {
        if (stat(path, &sb) != 0) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "store file '%s' is a symbolic link to no file (remove the link, or "
                           "give the file's own name)",
                           path);
        }
        if (!S_ISREG(sb.st_mode)) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "store file '%s' is a symbolic link to %s, not to a regular file "
                           "(name a new file, or an existing store to replace)",
                           path, mt_file_kind_str(sb.st_mode));
        }
        target = realpath(path, NULL);
        if (target == NULL) {
            return mt_fail(MT_ERR_IO, errno, "cannot resolve store file '%s'", path);
        }
    } else if (!S_ISREG(sb.st_mode)) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "store file '%s' is %s, not a regular file (name a new file, or an "
                       "existing store to replace)",
                       path, mt_file_kind_str(sb.st_mode));
    } else {
        target = strdup(path);
    }
    if (target == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the name of store file '%s'", path);
    }
    *target_out = target;
    return MT_OK;
}

/*
 * "<path>.partial" is pack's own name while it writes: a regular file there is what a killed pack
 * left, removed (unlinking a name never changes a file that another name, a hard link, still
 * reaches). Anything else (a symbolic link, a directory, a FIFO) was put there by someone else:
 * refused and left alone.
 */
static mt_status_t
store_clear_partial_(const char *partial)
{
    struct stat sb;

    if (lstat(partial, &sb) != 0) {
        return MT_OK; /* absent, or not inspectable: creating it says why */
    }
    if (!S_ISREG(sb.st_mode)) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "'%s', the name a store file is written under until it is complete, is "
                       "%s: not replacing it (remove it, or name another store file)",
                       partial, S_ISLNK(sb.st_mode) ? "a symbolic link"
                                                    : mt_file_kind_str(sb.st_mode));
    }
    if (unlink(partial) != 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot remove the stale partial store file '%s'",
                       partial);
    }
    return MT_OK;
}

mt_status_t
mt_io_store_writer_create(const char *const *paths, int n_files, uint64_t model_hash,
                          int n_layers, int n_experts, const uint64_t *part_len,
                          struct mt_io_store_writer **w_out)
{
    struct mt_io_store_writer *w;
    uint64_t next[MT_IO_MAX_FILES];
    uint64_t data_off;
    size_t present = 0;
    mt_status_t st;

    if (n_files < 1 || n_files > MT_IO_MAX_FILES || n_layers < 1 || n_experts < 1) {
        return mt_fail(MT_ERR_INVAL, 0, "a store needs 1..%d files and at least one expert",
                       MT_IO_MAX_FILES);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the store writer");
    }
    w->n_files = n_files;
    w->n_keys = (size_t)n_layers * n_experts;
    w->paths = calloc((size_t)n_files, sizeof(*w->paths));
    w->partial = calloc((size_t)n_files, sizeof(*w->partial));
    w->fds = malloc((size_t)n_files * sizeof(*w->fds));
    for (int i = 0; w->fds != NULL && i < n_files; i++) {
        w->fds[i] = -1; /* before any failure: destroy closes what is not -1 */
    }
    w->index_alloc = ALIGN_UP(w->n_keys * sizeof(*w->index));
    w->index = aligned_alloc(MT_IO_ALIGN, w->index_alloc);
    w->written = calloc(w->n_keys, sizeof(*w->written));
    if (w->paths == NULL || w->partial == NULL || w->fds == NULL || w->index == NULL ||
        w->written == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the store writer");
        goto out_destroy;
    }
    /* the names renamed to at the end, checked now: before any space is reserved or copied */
    for (int i = 0; i < n_files; i++) {
        if ((st = store_resolve_target_(paths[i], &w->paths[i])) != MT_OK) {
            goto out_destroy;
        }
    }
    /* each file is written under "<path>.partial" first: that must not be another file's name,
     * or one file's rename would replace the other's */
    for (int i = 0; i < n_files; i++) {
        size_t n = strlen(w->paths[i]);

        for (int j = 0; j < n_files; j++) {
            if (strncmp(w->paths[j], w->paths[i], n) == 0 &&
                strcmp(w->paths[j] + n, ".partial") == 0) {
                st = mt_fail(MT_ERR_INVAL, 0,
                             "store file '%s' is the name '%s' is written under until it is "
                             "complete: give the files other names",
                             paths[j], paths[i]);
                goto out_destroy;
            }
        }
    }
    memset(w->index, 0, w->index_alloc);
    /* Lay out: expert k (layer-major, present ones only) goes to file k mod n_files. */
    data_off = HEADER_BYTES + w->index_alloc;
    for (int i = 0; i < n_files; i++) {
        next[i] = data_off;
    }
    for (size_t k = 0; k < w->n_keys; k++) {
        struct mt_io_store_entry *e = &w->index[k];
        uint64_t pos = 0;

        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            e->part_len[p] = part_len[k * MT_IO_N_PARTS + p];
            e->part_off[p] = e->part_len[p] > 0 ? pos : 0;
            pos += ALIGN_UP(e->part_len[p]);
        }
        if (pos == 0) {
            w->written[k] = true; /* nothing to write */
            continue;
        }
        e->file = (uint32_t)(present % (size_t)n_files);
        e->off = next[e->file];
        e->len = pos;
        next[e->file] += pos;
        w->buf_bytes = MT_MAX(w->buf_bytes, pos);
        present++;
    }
    if (present == 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "no routed expert to pack");
        goto out_destroy;
    }
    w->buf = aligned_alloc(MT_IO_ALIGN, w->buf_bytes);
    if (w->buf == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a %llu-byte extent buffer",
                     (unsigned long long)w->buf_bytes);
        goto out_destroy;
    }
    w->hdr = (struct mt_io_store_header){
        .version = MT_IO_STORE_VERSION,
        .header_bytes = HEADER_BYTES,
        .model_hash = model_hash,
        .n_files = (uint32_t)n_files,
        .n_layers = (uint32_t)n_layers,
        .n_experts = (uint32_t)n_experts,
        .index_off = HEADER_BYTES,
        .index_bytes = w->n_keys * sizeof(*w->index),
        .data_off = data_off,
    };
    memcpy(w->hdr.magic, MT_IO_STORE_MAGIC, 8);
    if (getrandom(&w->hdr.store_id, sizeof(w->hdr.store_id), 0) != sizeof(w->hdr.store_id)) {
        w->hdr.store_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    }
    for (int i = 0; i < n_files; i++) {
        int ret;

        w->file_bytes[i] = next[i];
        w->total += next[i];
        w->partial[i] = malloc(strlen(w->paths[i]) + sizeof(".partial"));
        if (w->partial[i] == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the store writer");
            goto out_destroy;
        }
        sprintf(w->partial[i], "%s.partial", w->paths[i]);
        if ((st = store_clear_partial_(w->partial[i])) != MT_OK) {
            free(w->partial[i]);
            w->partial[i] = NULL; /* not ours: never removed */
            goto out_destroy;
        }
        /* a new file, never one reached through a link that appeared since: O_TRUNC on an
         * existing name would write through a symbolic link, or into a hard link's other names */
        w->fds[i] = open(w->partial[i], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                         0644);
        if (w->fds[i] < 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot create store file '%s'", w->partial[i]);
            free(w->partial[i]);
            w->partial[i] = NULL; /* nothing to remove */
            goto out_destroy;
        }
        ret = posix_fallocate(w->fds[i], 0, (off_t)next[i]);
        if (ret != 0 && ret != EOPNOTSUPP && ret != EINVAL) {
            st = mt_fail(MT_ERR_IO, ret, "cannot reserve %s (%llu bytes) for store file '%s'%s",
                         mt_size_text(next[i]).s, (unsigned long long)next[i], w->partial[i],
                         ret == ENOSPC ? " (free space there, or stripe over more drives)" : "");
            goto out_destroy;
        }
    }
    *w_out = w;
    return MT_OK;

out_destroy:
    mt_io_store_writer_destroy(w);
    return st;
}

uint64_t
mt_io_store_writer_total_bytes(const struct mt_io_store_writer *w)
{
    return w->total;
}

static mt_status_t
pwrite_full(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return mt_fail(MT_ERR_IO, n < 0 ? errno : ENOSPC,
                           "cannot write store file '%s' at %llu", path,
                           (unsigned long long)(off + done));
        }
        done += (size_t)n;
    }
    return MT_OK;
}

mt_status_t
mt_io_store_writer_put(struct mt_io_store_writer *w, int layer, int expert,
                       const void *const *parts)
{
    size_t k = (size_t)layer * w->hdr.n_experts + (size_t)expert;
    struct mt_io_store_entry *e;

    if (layer < 0 || (uint32_t)layer >= w->hdr.n_layers || expert < 0 ||
        (uint32_t)expert >= w->hdr.n_experts || w->index[k].len == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "store has no slot for layer %d expert %d", layer, expert);
    }
    e = &w->index[k];
    memset(w->buf, 0, e->len);
    for (int p = 0; p < MT_IO_N_PARTS; p++) {
        if (e->part_len[p] > 0) {
            memcpy(w->buf + e->part_off[p], parts[p], e->part_len[p]);
        }
    }
    e->crc = mt_crc32c(0, w->buf, e->len);
    w->written[k] = true;
    return pwrite_full(w->fds[e->file], w->buf, e->len, e->off, w->partial[e->file]);
}

static mt_status_t
fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd;

    if (copy == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a path");
    }
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse fsync on directories */
        close(fd);
    }
    return MT_OK;
}

mt_status_t
mt_io_store_writer_finish(struct mt_io_store_writer *w)
{
    char *hbuf;
    mt_status_t st = MT_OK;

    for (size_t k = 0; k < w->n_keys; k++) {
        if (!w->written[k]) {
            st = mt_fail(MT_ERR_INVAL, 0, "store pack incomplete: layer %zu expert %zu missing",
                         k / w->hdr.n_experts, k % w->hdr.n_experts);
            mt_io_store_writer_destroy(w);
            return st;
        }
    }
    hbuf = aligned_alloc(MT_IO_ALIGN, HEADER_BYTES);
    if (hbuf == NULL) {
        mt_io_store_writer_destroy(w);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the store header");
    }
    w->hdr.index_crc = mt_crc32c(0, w->index, w->hdr.index_bytes);
    /* Index and data first, made durable; the header last: without it nothing opens. */
    for (int i = 0; i < w->n_files && st == MT_OK; i++) {
        st = pwrite_full(w->fds[i], w->index, w->index_alloc, HEADER_BYTES, w->partial[i]);
        if (st == MT_OK && ftruncate(w->fds[i], (off_t)w->file_bytes[i]) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot size store file '%s'", w->partial[i]);
        }
        if (st == MT_OK && fsync(w->fds[i]) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot flush store file '%s'", w->partial[i]);
        }
    }
    for (int i = 0; i < w->n_files && st == MT_OK; i++) {
        struct mt_io_store_header h = w->hdr;

        h.file_index = (uint32_t)i;
        h.file_bytes = w->file_bytes[i];
        h.header_crc = header_crc(&h);
        memset(hbuf, 0, HEADER_BYTES);
        memcpy(hbuf, &h, sizeof(h));
        st = pwrite_full(w->fds[i], hbuf, HEADER_BYTES, 0, w->partial[i]);
        if (st == MT_OK && fsync(w->fds[i]) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot flush store file '%s'", w->partial[i]);
        }
    }
    free(hbuf);
    /* checked again: a pack takes long, and rename(2) replaces whatever now holds the name */
    for (int i = 0; i < w->n_files && st == MT_OK; i++) {
        struct stat sb;

        if (lstat(w->paths[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            st = mt_fail(MT_ERR_IO, 0,
                         "store file '%s' became %s while the store was written: not replacing "
                         "it (nothing renamed)",
                         w->paths[i], S_ISLNK(sb.st_mode) ? "a symbolic link"
                                                          : mt_file_kind_str(sb.st_mode));
        }
    }
    /*
     * One rename per file, so not atomic over the store: a failure (or a crash) after the first
     * leaves the new pack's first files beside the old pack's others, and a store opens only
     * with all its files from one pack. The message says which files were replaced.
     */
    for (int i = 0; i < w->n_files && st == MT_OK; i++) {
        if (rename(w->partial[i], w->paths[i]) != 0) {
            int err = errno;

            if (i == 0) {
                st = mt_fail(MT_ERR_IO, err, "cannot rename '%s' to '%s' (no store file "
                             "replaced)", w->partial[i], w->paths[i]);
            } else {
                st = mt_fail(MT_ERR_IO, 0, "cannot rename '%s' to '%s': %s; %d of the %d "
                             "store files already replaced ('%s%s%s'), so the files no longer "
                             "make one store, old or new (pack again)",
                             w->partial[i], w->paths[i], strerror(err), i, w->n_files,
                             w->paths[0], i > 1 ? "' to '" : "", i > 1 ? w->paths[i - 1] : "");
            }
            break;
        }
        free(w->partial[i]);
        w->partial[i] = NULL; /* renamed: no longer ours to remove */
        fsync_dir_of(w->paths[i]);
    }
    mt_io_store_writer_destroy(w);
    return st;
}
