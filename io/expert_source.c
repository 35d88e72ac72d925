/* SPDX-License-Identifier: MIT */
/*
 * expert_source.c - experts from NVMe into pinned slots (io/expert_source.h).
 *
 * Structure: each expert has a read plan (the aligned ranges to read and where they land in a
 * slot, where each of the six parts then lies); the slots live in one mmap'd region registered
 * with every I/O thread's ring; a FIFO of slots to load feeds the I/O threads. A thread keeps up
 * to queue_depth chunk reads in flight over several experts, and when an expert's last chunk
 * lands it verifies it (when asked) and marks the slot ready or failed under the lock, waking the
 * acquirers. The lock is held only to move slots between states, never across a read.
 */
#include <config.h>

#include "io/expert_source.h"

#include "io/cache_policy.h"
#include "io/crc32c.h"
#include "io/store.h"
#include "io/uring_reader.h" /* MT_IO_ALIGN, mt_io_range_align */
#include "runtime/base/clock.h"
#include "runtime/base/size_text.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGION_MAX (1ull << 30) /* io_uring registers buffers of at most 1 GiB each */

enum slot_state { SLOT_FREE, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

struct slot {
    int key; /* layer * n_experts + expert, -1 when free */
    enum slot_state state;
    int refs;               /* acquirers holding (or waiting on) it */
    bool fresh;             /* loaded by a prefetch and not acquired yet: evicted last */
    mt_status_t err_st;     /* SLOT_FAILED: the status and message to report at acquire */
    char err[384];
    int tries;              /* reads of this key started again after a failure */
};

struct src_read {
    int file;
    uint64_t off;      /* aligned file offset */
    uint64_t len;      /* aligned length */
    uint64_t slot_off; /* where it lands in the slot */
    uint64_t need_end; /* file offset up to which bytes must exist (the last part's end) */
};

struct src_expert {
    uint32_t first_read;
    uint32_t n_reads; /* 0: no expert at this key */
    uint64_t part_off[MT_IO_N_PARTS]; /* offset in the slot */
    uint64_t part_len[MT_IO_N_PARTS];
    uint32_t crc; /* store: CRC32C of the extent */
};

struct job {
    bool active;
    int slot;
    int key;
    uint32_t read_i;   /* next chunk: read index (relative) and offset within it */
    uint64_t read_pos;
    unsigned pending;  /* chunks issued, not finished */
    bool all_issued;
    int err;           /* first failure (errno), 0 if none */
    char msg[384];
    bool fault_checked; /* MT_IO_FAULT looked at for this read */
};

struct chunk {
    bool busy;
    int job;
    uint32_t read_i;
    uint64_t off; /* file offset */
    uint64_t len;
    bool einval_again; /* read again once after EINVAL (O_DIRECT refused at read time) */
};

struct io_thread {
    pthread_t tid;
    struct mt_io_source *src;
    struct mt_io_queue *q; /* owned */
    struct job *jobs;      // (depth), owned
    struct chunk *chunks;  // (depth), owned
    unsigned depth;
    char *scratch;         /* verify: a second slot for the comparison read, owned */
    bool broken;           /* its queue's wait failed: never waited on again (src->broken) */
};

struct mt_io_source {
    struct mt_io_source_options opt;
    bool is_store;
    int n_files;
    char **paths; /* owned (n_files) */
    int *fds;     /* owned (n_files) */
    int n_layers;
    int n_experts;
    unsigned n_keys;
    struct src_expert *experts; // (n_keys), owned
    struct src_read *reads;     // owned
    uint32_t n_reads;

    uint64_t slot_bytes;
    unsigned n_slots;
    char *staging;              /* mmap'd, owned (n_slots * slot_bytes) */
    size_t staging_bytes;
    struct slot *slots;         // (n_slots), owned
    int *slot_key;              // (n_slots), owned: mirror of slots[i].key for the policy
    bool *evictable;            // (n_slots), owned: scratch for the policy
    int *key_slot;              // (n_keys), owned: slot holding key, or -1
    struct mt_cache_policy policy;
    unsigned used_slots;
    unsigned n_pinned;

    pthread_mutex_t lock;
    pthread_cond_t cv_ready; /* a slot changed state or was released */
    pthread_cond_t cv_work;  /* a slot was queued for loading, or stop */
    int *queue;              // (n_slots), owned: FIFO of slots to load
    unsigned q_head;
    unsigned q_len;
    bool stop;
    struct io_thread *threads; // (n_threads), owned
    unsigned n_threads;
    unsigned started;

    /* An I/O thread's queue failed to wait for a completion (a broken ring, not a failed read:
     * completions lost to an overflow, a ring in a bad state). Its reads in flight may still land
     * in their slots at any time, so from then on no expert is read at all: every load fails at
     * once with this reason, and no slot is filled again (a late write cannot meet a new
     * expert). Under lock; set once. */
    bool broken;
    char broken_why[256];

    struct mt_io_source_stats st; /* under lock */
    unsigned jobs_active;
    double busy_t0;
    atomic_uint file_in_flight[MT_IO_MAX_FILES];
    atomic_uint file_peak[MT_IO_MAX_FILES];
    atomic_int fault_key;   /* MT_IO_FAULT: the key whose reads fail; -1 none, -2 not bound yet */
    int fault_layer;        /* ... the layer of "L:*" */
    atomic_int fault_left;  /* reads still to fail; < 0: all of them */
};

/* ---- construction --------------------------------------------------------------------------- */

static void
fill_options(struct mt_io_source_options *o, const struct mt_io_source_options *in)
{
    const char *env = getenv("MT_IO_MODE");

    *o = in != NULL ? *in : (struct mt_io_source_options){0};
    if (o->io_threads == 0) {
        o->io_threads = 2;
    }
    if (o->queue_depth == 0) {
        o->queue_depth = 16;
    }
    if (o->chunk_bytes == 0) {
        o->chunk_bytes = 1u << 20;
    }
    o->chunk_bytes = MT_MAX(MT_IO_ALIGN, o->chunk_bytes & ~(size_t)(MT_IO_ALIGN - 1));
    if (env != NULL && strcmp(env, "pread") == 0) {
        o->mode = MT_IO_QUEUE_PREAD;
    } else if (env != NULL && strcmp(env, "uring") == 0) {
        o->mode = MT_IO_QUEUE_URING;
    } else if (env != NULL && strcmp(env, "uring-fixed") == 0) {
        o->mode = MT_IO_QUEUE_URING_FIXED;
    } else if (env != NULL && env[0] != '\0') {
        mt_log_warn("ignoring MT_IO_MODE '%s' (expected uring-fixed, uring or pread)", env);
    }
}

/*
 * MT_IO_FAULT="L:E[:N]" or "L:*[:N]" (expert_source.h): a test's way to make one expert's reads
 * fail. With "*" the fault binds to the first expert of layer L that is read, whichever it is.
 */
static void
fault_parse(struct mt_io_source *src, int n_layers, int n_experts)
{
    const char *env = getenv("MT_IO_FAULT");
    int l = -1;
    int e = -1;
    int count = -1;
    int got;
    char star = 0;

    atomic_store(&src->fault_key, -1);
    if (env == NULL || env[0] == '\0') {
        return;
    }
    got = sscanf(env, "%d:%d:%d", &l, &e, &count);
    if (got < 2 && sscanf(env, "%d:%c", &l, &star) == 2 && star == '*') {
        e = 0;
        got = sscanf(env, "%d:*:%d", &l, &count) == 2 ? 3 : 2;
    }
    if (got < 2 || l < 0 || l >= n_layers || e < 0 || e >= n_experts || (got == 3 && count < 0)) {
        mt_log_warn("ignoring MT_IO_FAULT '%s' (expected LAYER:EXPERT[:COUNT] or LAYER:*[:COUNT] "
                    "within %d layers x %d experts)", env, n_layers, n_experts);
        return;
    }
    src->fault_layer = l;
    atomic_store(&src->fault_key, star == '*' ? -2 : l * n_experts + e);
    atomic_store(&src->fault_left, got == 3 ? count : -1);
    mt_log_warn("MT_IO_FAULT '%s': reads of layer %d expert %s will fail", env, l,
                star == '*' ? "(the first one read)" : "as given");
}

static mt_status_t
source_alloc(const char *const *paths, int n_files, int n_layers, int n_experts,
             const struct mt_io_source_options *opt, struct mt_io_source **src_out)
{
    struct mt_io_source *src;

    if (n_files < 1 || n_files > MT_IO_MAX_FILES) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "expert reader: %d files ('%s' the first), at most %d can be read "
                       "from at once",
                       n_files, n_files > 0 ? paths[0] : "?", MT_IO_MAX_FILES);
    }
    if (n_layers < 1 || n_experts < 1 || (uint64_t)n_layers * (uint64_t)n_experts > (1u << 24)) {
        return mt_fail(MT_ERR_INVAL, 0, "expert source for %d layers x %d experts is out of range",
                       n_layers, n_experts);
    }
    src = calloc(1, sizeof(*src));
    if (src == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert source");
    }
    fill_options(&src->opt, opt);
    fault_parse(src, n_layers, n_experts);
    src->n_files = n_files;
    src->n_layers = n_layers;
    src->n_experts = n_experts;
    src->n_keys = (unsigned)(n_layers * n_experts);
    src->paths = calloc((size_t)n_files, sizeof(*src->paths));
    src->fds = malloc((size_t)n_files * sizeof(*src->fds));
    src->experts = calloc(src->n_keys, sizeof(*src->experts));
    src->key_slot = malloc(src->n_keys * sizeof(*src->key_slot));
    if (src->paths == NULL || src->fds == NULL || src->experts == NULL || src->key_slot == NULL) {
        free(src->paths);
        free(src->fds);
        free(src->experts);
        free(src->key_slot);
        free(src);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert source");
    }
    for (int i = 0; i < n_files; i++) {
        src->fds[i] = -1;
    }
    for (unsigned k = 0; k < src->n_keys; k++) {
        src->key_slot[k] = -1;
    }
    /* before anything that can fail: mt_io_source_destroy destroys them */
    pthread_mutex_init(&src->lock, NULL);
    pthread_cond_init(&src->cv_ready, NULL);
    pthread_cond_init(&src->cv_work, NULL);
    for (int i = 0; i < n_files; i++) {
        src->paths[i] = strdup(paths[i]);
        if (src->paths[i] == NULL) {
            mt_io_source_destroy(src);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert source");
        }
    }
    *src_out = src;
    return MT_OK;
}

static mt_status_t
open_files(struct mt_io_source *src)
{
    static atomic_bool warned;

    for (int i = 0; i < src->n_files; i++) {
        int fd = -1;

        if (!src->opt.buffered) {
            fd = open(src->paths[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
            int err = errno; /* before the warning, whose write may set errno */
            if (fd < 0 && err == EINVAL && !atomic_exchange(&warned, true)) {
                mt_log_warn("'%s': the filesystem refuses O_DIRECT; reading through the page cache",
                            src->paths[i]);
            }
            if (fd < 0 && err != EINVAL) {
                return mt_fail(MT_ERR_IO, err, "cannot open '%s'", src->paths[i]);
            }
        }
        if (fd < 0) {
            fd = open(src->paths[i], O_RDONLY | O_CLOEXEC);
        }
        if (fd < 0) {
            return mt_fail(MT_ERR_IO, errno, "cannot open '%s'", src->paths[i]);
        }
        src->fds[i] = fd;
    }
    return MT_OK;
}

static int
cmp_read(const void *a, const void *b)
{
    const struct src_read *x = a;
    const struct src_read *y = b;

    if (x->file != y->file) {
        return x->file < y->file ? -1 : 1;
    }
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Build the read plan of every expert of a checkpoint: merge each expert's aligned ranges. */
static mt_status_t
plan_checkpoint(struct mt_io_source *src, const struct mt_io_expert_desc *descs)
{
    uint64_t *fsize;
    mt_status_t st = MT_OK;

    src->reads = malloc((size_t)src->n_keys * MT_IO_N_PARTS * sizeof(*src->reads));
    fsize = malloc((size_t)src->n_files * sizeof(*fsize));
    if (src->reads == NULL || fsize == NULL) {
        free(fsize);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate read plans for %u experts", src->n_keys);
    }
    for (int i = 0; i < src->n_files; i++) {
        struct stat sb;

        if (fstat(src->fds[i], &sb) != 0) {
            free(fsize);
            return mt_fail(MT_ERR_IO, errno, "cannot stat '%s'", src->paths[i]);
        }
        fsize[i] = (uint64_t)sb.st_size;
    }
    for (unsigned k = 0; k < src->n_keys && st == MT_OK; k++) {
        const struct mt_io_expert_desc *d = &descs[k];
        struct src_expert *e = &src->experts[k];
        struct src_read r[MT_IO_N_PARTS];
        unsigned n = 0;
        unsigned m = 0;
        uint64_t pos = 0;

        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            const struct mt_io_extent *x = &d->part[p];
            size_t alen;

            if (x->len == 0) {
                continue;
            }
            if (x->file < 0 || x->file >= src->n_files) {
                st = mt_fail(MT_ERR_INVAL, 0,
                             "layer %u expert %u: part %d names file %d, but the source has "
                             "files 0 to %d", k / (unsigned)src->n_experts,
                             k % (unsigned)src->n_experts, p, x->file, src->n_files - 1);
                break;
            }
            if (x->off + x->len < x->off || x->off + x->len > fsize[x->file]) {
                st = mt_fail(MT_ERR_FORMAT, 0,
                             "layer %u expert %u: part %d (%llu bytes at %llu) lies past the end "
                             "of '%s' (%llu bytes): the file is truncated or was changed after "
                             "the model was read",
                             k / (unsigned)src->n_experts, k % (unsigned)src->n_experts, p,
                             (unsigned long long)x->len, (unsigned long long)x->off,
                             src->paths[x->file], (unsigned long long)fsize[x->file]);
                break;
            }
            r[n].file = x->file;
            mt_io_range_align(x->off, (size_t)x->len, &r[n].off, &alen);
            r[n].len = alen;
            r[n].need_end = x->off + x->len;
            n++;
        }
        if (st != MT_OK || n == 0) {
            continue;
        }
        qsort(r, n, sizeof(r[0]), cmp_read);
        for (unsigned i = 1; i < n; i++) {
            struct src_read *cur = &r[m];

            if (r[i].file == cur->file && r[i].off <= cur->off + cur->len) {
                uint64_t end = MT_MAX(cur->off + cur->len, r[i].off + r[i].len);

                cur->len = end - cur->off;
                cur->need_end = MT_MAX(cur->need_end, r[i].need_end);
            } else {
                r[++m] = r[i];
            }
        }
        m++;
        e->first_read = src->n_reads;
        e->n_reads = m;
        for (unsigned i = 0; i < m; i++) {
            r[i].slot_off = pos;
            pos += r[i].len;
            src->reads[src->n_reads++] = r[i];
        }
        src->slot_bytes = MT_MAX(src->slot_bytes, pos);
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            const struct mt_io_extent *x = &d->part[p];

            if (x->len == 0) {
                continue;
            }
            for (unsigned i = 0; i < m; i++) {
                const struct src_read *rr = &src->reads[e->first_read + i];

                if (rr->file == x->file && x->off >= rr->off &&
                    x->off + x->len <= rr->off + rr->len) {
                    e->part_off[p] = rr->slot_off + (x->off - rr->off);
                    e->part_len[p] = x->len;
                }
            }
        }
    }
    free(fsize);
    return st;
}

static mt_status_t
plan_store(struct mt_io_source *src, const struct mt_io_store *store)
{
    src->reads = malloc((size_t)src->n_keys * sizeof(*src->reads));
    if (src->reads == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate read plans for %u experts", src->n_keys);
    }
    for (unsigned k = 0; k < src->n_keys; k++) {
        const struct mt_io_store_entry *x =
            mt_io_store_entry(store, (int)(k / (unsigned)src->n_experts),
                              (int)(k % (unsigned)src->n_experts));
        struct src_expert *e = &src->experts[k];

        if (x->len == 0) {
            continue;
        }
        e->first_read = src->n_reads;
        e->n_reads = 1;
        e->crc = x->crc;
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            e->part_off[p] = x->part_off[p];
            e->part_len[p] = x->part_len[p];
        }
        src->reads[src->n_reads++] = (struct src_read){
            .file = (int)x->file, .off = x->off, .len = x->len, .slot_off = 0,
            .need_end = x->off + x->len,
        };
        src->slot_bytes = MT_MAX(src->slot_bytes, x->len);
    }
    return MT_OK;
}

static void *io_thread_main(void *arg);

/* Map the staging region, size the cache, start the threads. */
static mt_status_t
source_start(struct mt_io_source *src)
{
    uint64_t budget = src->opt.cache_bytes;
    void **regions;
    size_t *region_lens;
    unsigned per_region;
    unsigned n_regions;
    mt_status_t st;

    if (src->slot_bytes == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "'%s': no routed expert to read", src->paths[0]);
    }
    if (src->slot_bytes > REGION_MAX) {
        return mt_fail(MT_ERR_INVAL, 0, "an expert of %llu bytes is larger than 1 GiB",
                       (unsigned long long)src->slot_bytes);
    }
    if (budget == 0) {
        budget = 4 * src->slot_bytes;
    }
    if (budget < src->slot_bytes) {
        /* the budget is --cache (else the placement's, which is always several slots) */
        return mt_fail(MT_ERR_INVAL, 0,
                       "--cache %llu (bytes, %s) cannot hold one streamed expert (%llu bytes, "
                       "%s): give --cache at least %llu, or leave it out",
                       (unsigned long long)budget, mt_size_text(budget).s,
                       (unsigned long long)src->slot_bytes, mt_size_text(src->slot_bytes).s,
                       (unsigned long long)src->slot_bytes);
    }
    /* a key lives in at most one slot: slots beyond one per expert that is ever read would only
     * hold memory (a --cache larger than the streamed experts, or a tiny model's 1 MiB slots;
     * the keys also count dense layers and experts a plan keeps in DRAM) */
    uint64_t keys = src->opt.max_slots > 0 ? MT_MIN(src->opt.max_slots, src->n_keys) : src->n_keys;
    src->n_slots = (unsigned)MT_MIN(MT_MIN(budget / src->slot_bytes, 1u << 20), keys);
    src->staging_bytes = (size_t)src->n_slots * src->slot_bytes;
    src->st.budget_bytes = budget;
    src->st.slot_bytes = src->slot_bytes;
    src->st.n_slots = src->n_slots;
    src->st.n_files = src->n_files;
    src->staging = mmap(NULL, src->staging_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (src->staging == MAP_FAILED) {
        src->staging = NULL;
        return mt_fail(MT_ERR_NOMEM, errno, "cannot map %zu MiB of expert staging (%u slots "
                       "of the expert cache; give a smaller --cache)", src->staging_bytes >> 20,
                       src->n_slots);
    }
    src->slots = calloc(src->n_slots, sizeof(*src->slots));
    src->slot_key = malloc(src->n_slots * sizeof(*src->slot_key));
    src->evictable = calloc(src->n_slots, sizeof(*src->evictable));
    src->queue = calloc(src->n_slots, sizeof(*src->queue));
    src->threads = calloc(src->opt.io_threads, sizeof(*src->threads));
    if (src->slots == NULL || src->slot_key == NULL || src->evictable == NULL ||
        src->queue == NULL || src->threads == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %u expert slots", src->n_slots);
    }
    for (unsigned i = 0; i < src->n_slots; i++) {
        src->slots[i].key = -1;
        src->slot_key[i] = -1;
    }
    st = mt_cache_policy_init(&src->policy, src->n_keys, 4.0 * src->n_slots);
    if (st != MT_OK) {
        return st;
    }
    /* Whole slots per registered region, each region at most 1 GiB. */
    per_region = (unsigned)MT_MAX(1, REGION_MAX / src->slot_bytes);
    n_regions = MT_CEIL_DIV(src->n_slots, per_region);
    regions = calloc(n_regions, sizeof(*regions));
    region_lens = calloc(n_regions, sizeof(*region_lens));
    if (regions == NULL || region_lens == NULL) {
        free(regions);
        free(region_lens);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %u staging regions", n_regions);
    }
    for (unsigned i = 0; i < n_regions; i++) {
        unsigned first = i * per_region;
        unsigned n = MT_MIN(per_region, src->n_slots - first);

        regions[i] = src->staging + (size_t)first * src->slot_bytes;
        region_lens[i] = (size_t)n * src->slot_bytes;
    }
    src->n_threads = src->opt.io_threads;
    st = MT_OK;
    for (unsigned t = 0; t < src->n_threads && st == MT_OK; t++) {
        struct io_thread *th = &src->threads[t];

        th->src = src;
        th->depth = src->opt.queue_depth;
        th->jobs = calloc(th->depth, sizeof(*th->jobs));
        th->chunks = calloc(th->depth, sizeof(*th->chunks));
        if (th->jobs == NULL || th->chunks == NULL) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate I/O thread %u", t);
            break;
        }
        if (src->opt.verify && !src->is_store) {
            th->scratch = aligned_alloc(MT_IO_ALIGN, src->slot_bytes);
            if (th->scratch == NULL) {
                st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the verify buffer of thread %u", t);
                break;
            }
        }
        st = mt_io_queue_create(th->depth, src->fds, src->n_files, src->opt.mode, regions,
                                region_lens, n_regions, &th->q);
        if (st != MT_OK) {
            break;
        }
        src->st.mode = MT_MAX(src->st.mode, mt_io_queue_mode(th->q));
        if (pthread_create(&th->tid, NULL, io_thread_main, th) != 0) {
            st = mt_fail(MT_ERR_NOMEM, errno, "cannot start I/O thread %u", t);
            break;
        }
        src->started++;
    }
    free(regions);
    free(region_lens);
    return st;
}

mt_status_t
mt_io_source_create(const char *const *paths, int n_files, int n_layers, int n_experts,
                    const struct mt_io_expert_desc *descs, const struct mt_io_source_options *opt,
                    struct mt_io_source **src_out)
{
    struct mt_io_source *src;
    mt_status_t st;

    st = source_alloc(paths, n_files, n_layers, n_experts, opt, &src);
    if (st != MT_OK) {
        return st;
    }
    st = open_files(src);
    if (st == MT_OK) {
        st = plan_checkpoint(src, descs);
    }
    if (st == MT_OK) {
        st = source_start(src);
    }
    if (st != MT_OK) {
        mt_io_source_destroy(src);
        return st;
    }
    *src_out = src;
    return MT_OK;
}

mt_status_t
mt_io_source_create_store(const char *const *paths, int n_files, uint64_t model_hash,
                          const struct mt_io_source_options *opt, struct mt_io_source **src_out)
{
    struct mt_io_store *store;
    struct mt_io_source *src;
    mt_status_t st;

    st = mt_io_store_open(paths, n_files, model_hash, &store);
    if (st != MT_OK) {
        return st;
    }
    st = source_alloc(paths, n_files, mt_io_store_layers(store), mt_io_store_experts(store), opt,
                      &src);
    if (st != MT_OK) {
        mt_io_store_close(store);
        return st;
    }
    src->is_store = true;
    st = open_files(src);
    if (st == MT_OK) {
        st = plan_store(src, store);
    }
    mt_io_store_close(store);
    if (st == MT_OK) {
        st = source_start(src);
    }
    if (st != MT_OK) {
        mt_io_source_destroy(src);
        return st;
    }
    *src_out = src;
    return MT_OK;
}

void
mt_io_source_destroy(struct mt_io_source *src)
{
    if (src == NULL) {
        return;
    }
    pthread_mutex_lock(&src->lock);
    src->stop = true;
    pthread_cond_broadcast(&src->cv_work);
    pthread_mutex_unlock(&src->lock);
    for (unsigned t = 0; t < src->started; t++) {
        pthread_join(src->threads[t].tid, NULL);
    }
    for (unsigned t = 0; src->threads != NULL && t < src->n_threads; t++) {
        mt_io_queue_destroy(src->threads[t].q);
        free(src->threads[t].jobs);
        free(src->threads[t].chunks);
        free(src->threads[t].scratch);
    }
    free(src->threads);
    if (src->staging != NULL) {
        munmap(src->staging, src->staging_bytes);
    }
    mt_cache_policy_fini(&src->policy);
    for (int i = 0; i < src->n_files; i++) {
        if (src->fds[i] >= 0) {
            close(src->fds[i]);
        }
        free(src->paths[i]);
    }
    pthread_cond_destroy(&src->cv_ready);
    pthread_cond_destroy(&src->cv_work);
    pthread_mutex_destroy(&src->lock);
    free(src->queue);
    free(src->evictable);
    free(src->slot_key);
    free(src->slots);
    free(src->reads);
    free(src->key_slot);
    free(src->experts);
    free(src->fds);
    free(src->paths);
    free(src);
}

/* ---- the I/O threads ------------------------------------------------------------------------ */

static void
peak_update(atomic_uint *peak, unsigned v)
{
    unsigned cur = atomic_load(peak);

    while (v > cur && !atomic_compare_exchange_weak(peak, &cur, v)) {
    }
}

/* Issue the next chunk of job j. Returns false when it has none left. */
static bool
issue_chunk(struct io_thread *th, int j)
{
    struct mt_io_source *src = th->src;
    struct job *jb = &th->jobs[j];
    const struct src_expert *e = &src->experts[jb->key];
    const struct src_read *r;
    unsigned c;
    uint64_t len;
    mt_status_t st;

    if (jb->err != 0) {
        jb->all_issued = true; /* stop issuing the rest of a failed expert */
    }
    if (jb->all_issued) {
        return false;
    }
    r = &src->reads[e->first_read + jb->read_i];
    len = MT_MIN(src->opt.chunk_bytes, r->len - jb->read_pos);
    for (c = 0; c < th->depth && th->chunks[c].busy; c++) {
    }
    MT_ASSERT(c < th->depth);
    th->chunks[c] = (struct chunk){
        .busy = true, .job = j, .read_i = jb->read_i, .off = r->off + jb->read_pos, .len = len,
    };
    st = mt_io_queue_submit(th->q, r->file,
                            src->staging + (size_t)jb->slot * src->slot_bytes + r->slot_off +
                                jb->read_pos,
                            r->off + jb->read_pos, (size_t)len, c);
    if (st != MT_OK) {
        th->chunks[c].busy = false;
        if (jb->err == 0) {
            jb->err = EIO;
            snprintf(jb->msg, sizeof(jb->msg), "layer %d expert %d: cannot queue a read of '%s'",
                     jb->key / src->n_experts, jb->key % src->n_experts, src->paths[r->file]);
        }
        jb->all_issued = true;
        return false;
    }
    peak_update(&src->file_peak[r->file], atomic_fetch_add(&src->file_in_flight[r->file], 1) + 1);
    jb->pending++;
    jb->read_pos += len;
    if (jb->read_pos == r->len) {
        jb->read_pos = 0;
        jb->read_i++;
        jb->all_issued = jb->read_i == e->n_reads;
    }
    return true;
}

/* Verify a complete expert in its slot; fills the job's error on a mismatch. */
static void
verify_job(struct io_thread *th, struct job *jb)
{
    struct mt_io_source *src = th->src;
    const struct src_expert *e = &src->experts[jb->key];
    char *slot = src->staging + (size_t)jb->slot * src->slot_bytes;

    if (src->is_store) {
        const struct src_read *r = &src->reads[e->first_read];
        uint32_t crc = mt_crc32c(0, slot, (size_t)r->len);

        if (crc != e->crc) {
            jb->err = -1;
            snprintf(jb->msg, sizeof(jb->msg),
                     "layer %d expert %d: CRC32C mismatch in store '%s' (extent at %llu: stored "
                     "%08x, read %08x); the file is corrupt, repack with moetier pack",
                     jb->key / src->n_experts, jb->key % src->n_experts, src->paths[r->file],
                     (unsigned long long)r->off, e->crc, crc);
        }
        return;
    }
    for (uint32_t i = 0; i < e->n_reads; i++) {
        const struct src_read *r = &src->reads[e->first_read + i];
        uint64_t got = 0;

        while (got < r->len) {
            ssize_t n = pread(src->fds[r->file], th->scratch + got, (size_t)(r->len - got),
                              (off_t)(r->off + got));

            if (n <= 0) {
                break;
            }
            got += (uint64_t)n;
        }
        got = MT_MIN(got, r->need_end - r->off);
        if (got < r->need_end - r->off || memcmp(th->scratch, slot + r->slot_off, got) != 0) {
            jb->err = -1;
            snprintf(jb->msg, sizeof(jb->msg),
                     "layer %d expert %d: a second read of '%s' at %llu (%llu bytes) differs "
                     "from the first; the drive or the file changed under the reader",
                     jb->key / src->n_experts, jb->key % src->n_experts, src->paths[r->file],
                     (unsigned long long)r->off, (unsigned long long)r->len);
            return;
        }
    }
}

/* Job j has no chunk left in flight and all issued: verify it and publish the slot. */
static void
finish_job(struct io_thread *th, int j)
{
    struct mt_io_source *src = th->src;
    struct job *jb = &th->jobs[j];
    const struct src_expert *e = &src->experts[jb->key];
    struct slot *s = &src->slots[jb->slot];
    uint64_t bytes = 0;

    /* a store's CRC is always checked (crc32c runs far faster than any drive reads); the
       second read that checks a checkpoint is opt-in (--verify): it halves the read rate */
    if (jb->err == 0 && (src->opt.verify || src->is_store)) {
        verify_job(th, jb);
    }
    pthread_mutex_lock(&src->lock);
    for (uint32_t i = 0; i < e->n_reads && (jb->read_i > 0 || jb->read_pos > 0); i++) {
        const struct src_read *r = &src->reads[e->first_read + i]; /* not: failed unread */

        bytes += r->len;
        src->st.file_bytes[r->file] += r->len;
    }
    src->st.bytes_read += bytes;
    if (jb->err == 0) {
        s->state = SLOT_READY;
        src->st.experts_read++;
    } else {
        s->state = SLOT_FAILED;
        s->err_st = jb->err < 0 ? MT_ERR_FORMAT : MT_ERR_IO;
        memcpy(s->err, jb->msg, sizeof(s->err));
        if (jb->err < 0) {
            src->st.verify_failures++;
        } else {
            src->st.read_errors++;
        }
    }
    if (--src->jobs_active == 0) {
        src->st.io_busy_s += mt_clock_now() - src->busy_t0;
    }
    pthread_cond_broadcast(&src->cv_ready);
    pthread_mutex_unlock(&src->lock);
    jb->active = false;
}

/* Whether MT_IO_FAULT fails this read of an expert (asked once per read, at its first chunk). */
static bool
fault_hit(struct mt_io_source *src, struct job *jb)
{
    int left;

    int unbound = -2;

    if (jb->fault_checked) {
        return false;
    }
    jb->fault_checked = true;
    if (jb->key / src->n_experts == src->fault_layer) {
        atomic_compare_exchange_strong(&src->fault_key, &unbound, jb->key); /* "L:*" binds */
    }
    if (atomic_load(&src->fault_key) != jb->key) {
        return false;
    }
    left = atomic_load(&src->fault_left);
    while (left != 0) {
        if (left < 0 || atomic_compare_exchange_weak(&src->fault_left, &left, left - 1)) {
            return true;
        }
    }
    return false;
}

/*
 * Some FUSE and network filesystems accept O_DIRECT at open and refuse it only when reading
 * (EINVAL). Turn it off for the file (the flag lives in the open file, so every I/O thread's
 * reads of it change) and read the rest of chunk c again through the page cache, once: an EINVAL
 * that comes back buffered is a real error. Returns whether the read was queued again.
 */
static bool
read_again_buffered(struct io_thread *th, struct chunk *c, const struct src_read *r,
                    const struct job *jb, const struct mt_io_queue_done *d)
{
    static atomic_bool warned;
    struct mt_io_source *src = th->src;
    int fd = src->fds[d->file];
    int fl = fcntl(fd, F_GETFL);

    if (c->einval_again || fl < 0) {
        return false;
    }
    if ((fl & O_DIRECT) != 0) {
        if (fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0) {
            return false;
        }
        if (!atomic_exchange(&warned, true)) {
            mt_log_warn("'%s': the filesystem refuses O_DIRECT reads; reading through the page "
                        "cache", src->paths[d->file]);
        }
    }
    c->einval_again = true;
    c->len = c->off + c->len - d->off; /* what is left of the chunk */
    c->off = d->off;
    if (mt_io_queue_submit(th->q, d->file,
                           src->staging + (size_t)jb->slot * src->slot_bytes + r->slot_off +
                               (d->off - r->off),
                           c->off, (size_t)c->len, d->tag) != MT_OK) {
        return false;
    }
    atomic_fetch_add(&src->file_in_flight[d->file], 1);
    return true;
}

/* One completion: account it to its job, finish the job when it was the last. */
static void
complete_chunk(struct io_thread *th, const struct mt_io_queue_done *d)
{
    struct mt_io_source *src = th->src;
    struct chunk *c = &th->chunks[d->tag];
    struct job *jb = &th->jobs[c->job];
    const struct src_read *r = &src->reads[src->experts[jb->key].first_read + c->read_i];
    int j = c->job;

    atomic_fetch_sub(&src->file_in_flight[d->file], 1);
    if (jb->err == 0 && d->err == EINVAL && read_again_buffered(th, c, r, jb, d)) {
        return;
    }
    if (jb->err == 0 && fault_hit(src, jb)) {
        jb->err = EIO;
        snprintf(jb->msg, sizeof(jb->msg),
                 "layer %d expert %d: read of '%s' at offset %llu (%llu bytes) failed: %s "
                 "(injected by MT_IO_FAULT)",
                 jb->key / src->n_experts, jb->key % src->n_experts, src->paths[d->file],
                 (unsigned long long)c->off, (unsigned long long)c->len, strerror(EIO));
    } else if (jb->err == 0 && d->err != 0) {
        jb->err = d->err;
        snprintf(jb->msg, sizeof(jb->msg),
                 "layer %d expert %d: read of '%s' at offset %llu (%llu bytes) failed: %s",
                 jb->key / src->n_experts, jb->key % src->n_experts, src->paths[d->file],
                 (unsigned long long)d->off, (unsigned long long)(c->off + c->len - d->off),
                 strerror(d->err));
    } else if (jb->err == 0 && c->off + d->bytes < MT_MIN(c->off + c->len, r->need_end)) {
        jb->err = EIO;
        snprintf(jb->msg, sizeof(jb->msg),
                 "layer %d expert %d: '%s' ends at %llu, inside the expert's bytes (up to %llu); "
                 "the file is truncated",
                 jb->key / src->n_experts, jb->key % src->n_experts, src->paths[d->file],
                 (unsigned long long)(c->off + d->bytes), (unsigned long long)r->need_end);
    }
    c->busy = false;
    jb->pending--;
    if (jb->pending == 0 && (jb->all_issued || jb->err != 0)) {
        if (jb->err != 0 && !jb->all_issued) {
            jb->all_issued = true; /* stop issuing the rest of a failed expert */
        }
        finish_job(th, j);
    }
}

/* Reads this thread waits for: none once it is broken. */
static unsigned
thread_in_flight(const struct io_thread *th)
{
    return th->broken ? 0 : mt_io_queue_in_flight(th->q);
}

/* Take slots to load from the FIFO while this thread has room. Called with the lock held. */
static bool
take_jobs_locked(struct io_thread *th)
{
    struct mt_io_source *src = th->src;
    bool unissued = false;

    for (unsigned j = 0; j < th->depth; j++) {
        unissued |= th->jobs[j].active && !th->jobs[j].all_issued;
    }
    if (unissued || src->q_len == 0 || thread_in_flight(th) >= th->depth) {
        return unissued;
    }
    for (unsigned j = 0; j < th->depth; j++) {
        if (!th->jobs[j].active) {
            int s = src->queue[src->q_head];

            src->q_head = (src->q_head + 1) % src->n_slots;
            src->q_len--;
            th->jobs[j] = (struct job){.active = true, .slot = s, .key = src->slots[s].key};
            if (src->jobs_active++ == 0) {
                src->busy_t0 = mt_clock_now();
            }
            return true;
        }
    }
    return false;
}

/* Job jb fails with the source's broken reason (unless it failed before). */
static void
fail_on_broken(struct io_thread *th, struct job *jb)
{
    if (jb->err == 0) {
        jb->err = EIO;
        snprintf(jb->msg, sizeof(jb->msg), "layer %d expert %d: no expert is read any more: %s",
                 jb->key / th->src->n_experts, jb->key % th->src->n_experts,
                 th->src->broken_why);
    }
    jb->all_issued = true;
}

/*
 * The queue's wait failed (mt_last_error says why, printed already): mark the thread and the
 * source broken (src->broken says why) and fail the thread's jobs, those with reads in flight too.
 */
static void
break_thread(struct io_thread *th)
{
    struct mt_io_source *src = th->src;

    th->broken = true;
    pthread_mutex_lock(&src->lock);
    if (!src->broken) {
        snprintf(src->broken_why, sizeof(src->broken_why), "%s", mt_last_error());
        src->broken = true;
    }
    pthread_mutex_unlock(&src->lock);
    for (unsigned c = 0; c < th->depth; c++) {
        struct chunk *ch = &th->chunks[c];

        if (ch->busy) {
            const struct job *jb = &th->jobs[ch->job];
            const struct src_read *r = &src->reads[src->experts[jb->key].first_read + ch->read_i];

            atomic_fetch_sub(&src->file_in_flight[r->file], 1);
            ch->busy = false;
        }
    }
    for (unsigned j = 0; j < th->depth; j++) {
        if (th->jobs[j].active) {
            fail_on_broken(th, &th->jobs[j]);
            th->jobs[j].pending = 0;
            finish_job(th, (int)j);
        }
    }
}

static void *
io_thread_main(void *arg)
{
    struct io_thread *th = arg;
    struct mt_io_source *src = th->src;

    for (;;) {
        bool work;
        bool broken;
        struct mt_io_queue_done d;

        pthread_mutex_lock(&src->lock);
        for (;;) {
            work = take_jobs_locked(th);
            if (work || thread_in_flight(th) > 0 || src->stop) {
                break;
            }
            pthread_cond_wait(&src->cv_work, &src->lock);
        }
        if (!work && thread_in_flight(th) == 0 && src->stop) {
            pthread_mutex_unlock(&src->lock);
            return NULL;
        }
        broken = src->broken; /* set once: a snapshot is enough */
        pthread_mutex_unlock(&src->lock);
        /* Fill the queue: oldest job first, so experts complete in the order asked (on a
         * broken source, fail them instead; this thread's reads in flight, if its ring works,
         * still complete below). */
        for (unsigned j = 0; j < th->depth && thread_in_flight(th) < th->depth; j++) {
            struct job *jb = &th->jobs[j];

            if (!jb->active) {
                continue;
            }
            if (broken) {
                fail_on_broken(th, jb);
            }
            while (!broken && mt_io_queue_in_flight(th->q) < th->depth &&
                   issue_chunk(th, (int)j)) {
            }
            if (jb->pending == 0 && jb->all_issued) {
                finish_job(th, (int)j); /* failed before any read went out */
            }
        }
        if (thread_in_flight(th) > 0) {
            if (mt_io_queue_wait(th->q, &d) == MT_OK) {
                complete_chunk(th, &d);
            } else {
                break_thread(th);
            }
        }
    }
}

/* ---- the cache ------------------------------------------------------------------------------ */

/* Put slot v (its key set) on the I/O threads' FIFO. Lock held. */
static void
queue_load_locked(struct mt_io_source *src, int v)
{
    src->slots[v].state = SLOT_LOADING;
    MT_ASSERT(src->q_len < src->n_slots);
    src->queue[(src->q_head + src->q_len) % src->n_slots] = v;
    src->q_len++;
    pthread_cond_signal(&src->cv_work);
}

/*
 * A slot for key, evicting what the policy picks; -1 when every slot is busy. Lock held.
 * Experts prefetched but not yet acquired are kept: evicting them would throw away a read that
 * is about to be used. Only an acquire (may_take_fresh) takes one, when nothing else is free.
 */
static int
claim_slot_locked(struct mt_io_source *src, unsigned key, bool may_take_fresh, bool prefetch)
{
    int v;
    struct slot *s;

    for (int pass = 0; pass < (may_take_fresh ? 2 : 1); pass++) {
        for (unsigned i = 0; i < src->n_slots; i++) {
            src->evictable[i] = src->slots[i].refs == 0 && src->slots[i].state != SLOT_LOADING &&
                                (pass == 1 || !src->slots[i].fresh);
        }
        v = mt_cache_policy_victim(&src->policy, src->slot_key, src->evictable, src->n_slots);
        if (v >= 0) {
            break;
        }
    }
    if (v < 0) {
        return -1;
    }
    s = &src->slots[v];
    if (s->key >= 0) {
        src->key_slot[s->key] = -1;
        src->st.evictions++;
    } else {
        src->used_slots++;
        src->st.peak_used_bytes =
            MT_MAX(src->st.peak_used_bytes, (uint64_t)src->used_slots * src->slot_bytes);
    }
    s->key = (int)key;
    src->slot_key[v] = (int)key;
    s->fresh = prefetch;
    s->tries = 0;
    src->key_slot[key] = v;
    queue_load_locked(src, v);
    return v;
}

/* Give slot v back to the free pool (a failed read). Lock held, no refs. */
static void
free_slot_locked(struct mt_io_source *src, int v)
{
    struct slot *s = &src->slots[v];

    src->key_slot[s->key] = -1;
    s->key = -1;
    src->slot_key[v] = -1;
    s->state = SLOT_FREE;
    s->fresh = false; /* a failed prefetch's: else the free slot is kept like an unused prefetch */
    src->used_slots--;
}

static mt_status_t
check_key(const struct mt_io_source *src, int layer, int expert, unsigned *key_out)
{
    unsigned key;

    if (layer < 0 || layer >= src->n_layers || expert < 0 || expert >= src->n_experts) {
        return mt_fail(MT_ERR_INVAL, 0, "layer %d expert %d is out of range (%d layers x %d)",
                       layer, expert, src->n_layers, src->n_experts);
    }
    key = (unsigned)(layer * src->n_experts + expert);
    if (src->experts[key].n_reads == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "layer %d has no routed expert %d", layer, expert);
    }
    *key_out = key;
    return MT_OK;
}

/*
 * Hold (layer, expert) in a loaded slot: the common part of acquire, wait and pin. On success
 * the slot's refs count this holder; returns the slot in *slot_out.
 */
static mt_status_t
hold(struct mt_io_source *src, int layer, int expert, bool count, int *slot_out)
{
    unsigned key;
    double t0 = 0;
    bool waited = false;
    mt_status_t st;
    int v;
    char msg[384];

    st = check_key(src, layer, expert, &key);
    if (st != MT_OK) {
        return st;
    }
    pthread_mutex_lock(&src->lock);
    v = src->key_slot[key];
    if (count) {
        /* a slot whose read failed (a prefetch's) is no hit: read again below, a miss */
        if (v < 0 || src->slots[v].state == SLOT_FAILED) {
            src->st.misses++;
        } else if (src->slots[v].state == SLOT_LOADING) {
            src->st.late_hits++;
        } else {
            src->st.hits++;
        }
    }
    while (v < 0) {
        v = claim_slot_locked(src, key, true, false);
        if (v < 0) {
            if (!waited) {
                t0 = mt_clock_now();
                waited = true;
            }
            pthread_cond_wait(&src->cv_ready, &src->lock);
            v = src->key_slot[key];
        }
    }
    src->slots[v].refs++;
    for (;;) {
        struct slot *s = &src->slots[v];

        while (s->state == SLOT_LOADING) {
            if (!waited) {
                t0 = mt_clock_now();
                waited = true;
            }
            pthread_cond_wait(&src->cv_ready, &src->lock);
        }
        if (s->state != SLOT_FAILED || s->tries >= MT_IO_READ_RETRIES || src->broken) {
            break; /* a broken source reads nothing again (struct mt_io_source) */
        }
        /* whoever sees the failure first starts the read again; the others wait on it */
        s->tries++;
        src->st.retries++;
        mt_log_warn("%s; reading it again (retry %d of %d)", s->err, s->tries,
                    MT_IO_READ_RETRIES);
        queue_load_locked(src, v);
    }
    if (waited) {
        src->st.stall_s += mt_clock_now() - t0;
    }
    if (src->slots[v].state == SLOT_FAILED) {
        st = src->slots[v].err_st;
        memcpy(msg, src->slots[v].err, sizeof(msg));
        if (--src->slots[v].refs == 0) {
            free_slot_locked(src, v);
        }
        bool broken = src->broken;
        pthread_cond_broadcast(&src->cv_ready);
        pthread_mutex_unlock(&src->lock);
        return broken ? mt_fail(st, 0, "%s", msg)
                      : mt_fail(st, 0, "%s (read %d times)", msg, MT_IO_READ_RETRIES + 1);
    }
    src->slots[v].fresh = false;
    if (count) {
        mt_cache_policy_touch(&src->policy, key);
    }
    pthread_mutex_unlock(&src->lock);
    *slot_out = v;
    return MT_OK;
}

static void
unhold(struct mt_io_source *src, unsigned key)
{
    int v;

    pthread_mutex_lock(&src->lock);
    v = src->key_slot[key];
    MT_ASSERT(v >= 0 && src->slots[v].refs > 0);
    src->slots[v].refs--;
    pthread_cond_broadcast(&src->cv_ready);
    pthread_mutex_unlock(&src->lock);
}

mt_status_t
mt_io_source_acquire(struct mt_io_source *src, int layer, int expert,
                     struct mt_io_expert_view *view_out)
{
    const struct src_expert *e;
    const char *slot;
    mt_status_t st;
    int v;

    st = hold(src, layer, expert, true, &v);
    if (st != MT_OK) {
        return st;
    }
    e = &src->experts[layer * src->n_experts + expert];
    slot = src->staging + (size_t)v * src->slot_bytes;
    for (int p = 0; p < MT_IO_N_PARTS; p++) {
        view_out->part[p] = e->part_len[p] > 0 ? slot + e->part_off[p] : NULL;
        view_out->len[p] = e->part_len[p];
    }
    return MT_OK;
}

void
mt_io_source_release(struct mt_io_source *src, int layer, int expert)
{
    MT_ASSERT(layer >= 0 && layer < src->n_layers && expert >= 0 && expert < src->n_experts);
    unhold(src, (unsigned)(layer * src->n_experts + expert));
}

mt_status_t
mt_io_source_wait(struct mt_io_source *src, int layer, int expert)
{
    mt_status_t st;
    int v;

    st = hold(src, layer, expert, false, &v);
    if (st == MT_OK) {
        unhold(src, (unsigned)(layer * src->n_experts + expert));
    }
    return st;
}

void
mt_io_source_prefetch(struct mt_io_source *src, int layer, const int *experts, int n)
{
    pthread_mutex_lock(&src->lock);
    for (int i = 0; i < n; i++) {
        unsigned key;

        if (layer < 0 || layer >= src->n_layers || experts[i] < 0 ||
            experts[i] >= src->n_experts) {
            continue;
        }
        key = (unsigned)(layer * src->n_experts + experts[i]);
        if (src->experts[key].n_reads == 0 || src->key_slot[key] >= 0) {
            continue;
        }
        if (claim_slot_locked(src, key, false, true) < 0) {
            src->st.prefetch_dropped++;
        } else {
            src->st.prefetches++;
        }
    }
    pthread_mutex_unlock(&src->lock);
}

mt_status_t
mt_io_source_pin(struct mt_io_source *src, int layer, int expert, bool pin)
{
    unsigned key;
    mt_status_t st;
    int v;

    st = check_key(src, layer, expert, &key);
    if (st != MT_OK) {
        return st;
    }
    pthread_mutex_lock(&src->lock);
    if (mt_cache_policy_is_pinned(&src->policy, key) == pin) {
        pthread_mutex_unlock(&src->lock);
        return MT_OK;
    }
    if (!pin) {
        mt_cache_policy_pin(&src->policy, key, false);
        src->n_pinned--;
        pthread_mutex_unlock(&src->lock);
        return MT_OK;
    }
    if (src->n_pinned + 3 > src->n_slots) {
        pthread_mutex_unlock(&src->lock);
        return mt_fail(MT_ERR_NOMEM, 0,
                       "cannot pin layer %d expert %d: %u of %u expert slots are pinned and two "
                       "must stay for streaming; raise the cache budget",
                       layer, expert, src->n_pinned, src->n_slots);
    }
    src->n_pinned++;
    mt_cache_policy_pin(&src->policy, key, true);
    pthread_mutex_unlock(&src->lock);
    st = hold(src, layer, expert, false, &v);
    if (st != MT_OK) {
        pthread_mutex_lock(&src->lock);
        mt_cache_policy_pin(&src->policy, key, false);
        src->n_pinned--;
        pthread_mutex_unlock(&src->lock);
        return st;
    }
    unhold(src, key);
    return MT_OK;
}

void
mt_io_source_stats(struct mt_io_source *src, struct mt_io_source_stats *out)
{
    pthread_mutex_lock(&src->lock);
    *out = src->st;
    out->pinned = src->n_pinned;
    if (src->jobs_active > 0) {
        out->io_busy_s += mt_clock_now() - src->busy_t0;
    }
    out->gbps = out->io_busy_s > 0 ? (double)out->bytes_read / out->io_busy_s / 1e9 : 0;
    for (int i = 0; i < src->n_files; i++) {
        out->file_peak_in_flight[i] = atomic_load(&src->file_peak[i]);
    }
    pthread_mutex_unlock(&src->lock);
}

void
mt_io_source_stats_reset(struct mt_io_source *src)
{
    pthread_mutex_lock(&src->lock);
    memset(&src->st.hits, 0, offsetof(struct mt_io_source_stats, budget_bytes));
    src->st.peak_used_bytes = (uint64_t)src->used_slots * src->slot_bytes;
    memset(src->st.file_bytes, 0, sizeof(src->st.file_bytes));
    for (int i = 0; i < src->n_files; i++) {
        atomic_store(&src->file_peak[i], 0);
    }
    if (src->jobs_active > 0) {
        src->busy_t0 = mt_clock_now();
    }
    pthread_mutex_unlock(&src->lock);
}

void
mt_io_source_staging(const struct mt_io_source *src, void **base_out, size_t *bytes_out)
{
    *base_out = src->staging;
    *bytes_out = src->staging_bytes;
}

uint64_t
mt_io_source_slot_bytes(const struct mt_io_source *src)
{
    return src->slot_bytes;
}

int
mt_io_source_layers(const struct mt_io_source *src)
{
    return src->n_layers;
}

int
mt_io_source_experts(const struct mt_io_source *src)
{
    return src->n_experts;
}

uint64_t
mt_io_source_part_len(const struct mt_io_source *src, int layer, int expert, int part)
{
    if (layer < 0 || layer >= src->n_layers || expert < 0 || expert >= src->n_experts ||
        part < 0 || part >= MT_IO_N_PARTS) {
        return 0;
    }
    return src->experts[(size_t)layer * (size_t)src->n_experts + (size_t)expert].part_len[part];
}
