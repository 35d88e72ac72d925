/* SPDX-License-Identifier: MIT */
/*
 * test_expert_source.c - the expert source, its cache and the expert store, linked with io/ and
 * runtime/base alone (no model, no runtime library: io/ must stand on its own).
 *
 * A fake checkpoint (two files of known random bytes, experts as six parts at odd offsets, some
 * experts without scales as in BF16, two whose parts share 4 KiB pages) is read back through
 * every I/O mode; then packed into a two-file store and read back; then broken: short reads and
 * EIO injected, a shard cut short after open, a bit flipped, a store for another model, a
 * truncated one, an interrupted pack; and the cache is hammered by threads.
 */
#include <config.h>

#include "io/cache_policy.h"
#include "io/crc32c.h"
#include "io/expert_source.h"
#include "io/store.h"
#include "runtime/base/clock.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_FILES 2
#define N_LAYERS 3 /* layer 0 has no routed experts, as a dense layer */
#define N_EXPERTS 8
#define N_KEYS (N_LAYERS * N_EXPERTS)

static const char *dir;
static char paths[N_FILES][512];
static const char *path_ptrs[N_FILES];
static unsigned char *file_data[N_FILES];
static uint64_t file_size[N_FILES] = {(3u << 20) + 777u, (2u << 20) + 4321u};
static struct mt_io_expert_desc descs[N_KEYS];
static uint64_t slot_bytes; /* of a checkpoint source over descs */

static bool
write_file(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    bool ok = fd >= 0 && write(fd, data, n) == (ssize_t)n;

    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* Two files of random bytes; experts of layers 1..2 as parts at random unaligned offsets. */
static bool
make_checkpoint(void)
{
    struct mt_rng rng;

    mt_rng_init(&rng, 11);
    for (int f = 0; f < N_FILES; f++) {
        snprintf(paths[f], sizeof(paths[f]), "%s/shard-%d.safetensors", dir, f);
        path_ptrs[f] = paths[f];
        file_data[f] = malloc(file_size[f]);
        if (file_data[f] == NULL) {
            return false;
        }
        for (uint64_t i = 0; i < file_size[f]; i++) {
            file_data[f][i] = (unsigned char)mt_rng_next(&rng);
        }
        if (!write_file(paths[f], file_data[f], file_size[f])) {
            return false;
        }
    }
    for (int l = 1; l < N_LAYERS; l++) {
        for (int e = 0; e < N_EXPERTS; e++) {
            struct mt_io_expert_desc *d = &descs[l * N_EXPERTS + e];
            int file = (l + e) % N_FILES;
            uint64_t pos = 8 + mt_rng_next(&rng) % 200000;
            bool bf16 = e % 3 == 2; /* no scales */

            for (int p = 0; p < MT_IO_N_PARTS; p++) {
                uint64_t len =
                    p % 2 == 1 ? 64 + mt_rng_next(&rng) % 300 : 20000 + mt_rng_next(&rng) % 150000;

                if (p % 2 == 1 && bf16) {
                    continue;
                }
                if (pos + len > file_size[file]) {
                    pos = mt_rng_next(&rng) % 1000; /* wrap: parts need not be in order */
                }
                d->part[p] = (struct mt_io_extent){.file = file, .off = pos, .len = len};
                pos += len + (mt_rng_next(&rng) % 4 == 0 ? 5000 : 0);
            }
        }
    }
    /* One expert's last part ends exactly at the end of a file: its aligned range runs past it. */
    descs[2 * N_EXPERTS + 7].part[MT_IO_PART_DOWN_SCALE] =
        (struct mt_io_extent){.file = 1, .off = file_size[1] - 300, .len = 300};
    /* Expert 1:0 shares 4 KiB pages between parts, as tensors packed in a shard do: the down
     * scale sits at the start of the gate's first page (the gate's aligned range holds the whole
     * aligned range of the scale), and the gate scale ends exactly on a 4 KiB boundary, the end
     * of the merged read. Its up part makes it the largest expert, and not the last one. */
    descs[1 * N_EXPERTS + 0] = (struct mt_io_expert_desc){.part = {
        [MT_IO_PART_GATE] = {.file = 1, .off = 10 * 4096 + 100, .len = 20000},
        [MT_IO_PART_GATE_SCALE] = {.file = 1, .off = 10 * 4096 + 20100, .len = 380},
        [MT_IO_PART_UP] = {.file = 1, .off = 100000, .len = 400000},
        [MT_IO_PART_UP_SCALE] = {.file = 1, .off = 510000, .len = 200},
        [MT_IO_PART_DOWN] = {.file = 1, .off = 520000, .len = 25000},
        [MT_IO_PART_DOWN_SCALE] = {.file = 1, .off = 10 * 4096, .len = 100},
    }};
    /* Expert 1:1 likewise, but its other parts lie below the gate's page, and the read the gate
     * and down scale share is its last: its bytes must run to the gate's end, not the scale's
     * (test_cut_after_open). */
    descs[1 * N_EXPERTS + 1] = (struct mt_io_expert_desc){.part = {
        [MT_IO_PART_GATE] = {.file = 0, .off = 10 * 4096 + 100, .len = 20000},
        [MT_IO_PART_GATE_SCALE] = {.file = 0, .off = 2000, .len = 300},
        [MT_IO_PART_UP] = {.file = 0, .off = 4200, .len = 15000},
        [MT_IO_PART_UP_SCALE] = {.file = 0, .off = 1000, .len = 200},
        [MT_IO_PART_DOWN] = {.file = 0, .off = 20000, .len = 15000},
        [MT_IO_PART_DOWN_SCALE] = {.file = 0, .off = 10 * 4096, .len = 100},
    }};
    return true;
}

/* Does view hold exactly the checkpoint bytes of key? */
static bool
view_matches(int key, const struct mt_io_expert_view *v)
{
    for (int p = 0; p < MT_IO_N_PARTS; p++) {
        const struct mt_io_extent *x = &descs[key].part[p];

        if (x->len == 0) {
            if (v->part[p] != NULL || v->len[p] != 0) {
                return false;
            }
            continue;
        }
        if (v->part[p] == NULL || v->len[p] != x->len ||
            memcmp(v->part[p], file_data[x->file] + x->off, x->len) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * Acquire and release layer l expert e, with the stats just before (*before) and just after the
 * acquire (*after): whether it was a hit or a miss. True when the view held the expert's bytes.
 */
static bool
acquire_counted(struct mt_io_source *src, int l, int e, struct mt_io_source_stats *before,
                struct mt_io_source_stats *after)
{
    struct mt_io_expert_view v;
    bool ok;

    mt_io_source_stats(src, before);
    ok = mt_io_source_acquire(src, l, e, &v) == MT_OK && view_matches(l * N_EXPERTS + e, &v);
    mt_io_source_stats(src, after);
    if (ok) {
        mt_io_source_release(src, l, e);
    }
    return ok;
}

/* Acquire every expert (in a scrambled order), compare, release. Returns the mismatches. */
static int
check_all(struct mt_io_source *src)
{
    int bad = 0;

    for (int i = 0; i < (N_LAYERS - 1) * N_EXPERTS; i++) {
        int key = N_EXPERTS + (i * 5) % ((N_LAYERS - 1) * N_EXPERTS);
        struct mt_io_expert_view v;

        if (mt_io_source_acquire(src, key / N_EXPERTS, key % N_EXPERTS, &v) != MT_OK) {
            bad++;
            continue;
        }
        bad += !view_matches(key, &v);
        mt_io_source_release(src, key / N_EXPERTS, key % N_EXPERTS);
    }
    return bad;
}

static struct mt_io_source_options
small_opts(enum mt_io_queue_mode mode, unsigned slots)
{
    return (struct mt_io_source_options){
        .io_threads = 2,
        .queue_depth = 4,
        .chunk_bytes = 64u << 10, /* several chunks per expert */
        .cache_bytes = (uint64_t)slots * slot_bytes,
        .mode = mode,
    };
}

static void
test_modes(void)
{
    static const enum mt_io_queue_mode modes[] = {MT_IO_QUEUE_URING_FIXED, MT_IO_QUEUE_URING,
                                                  MT_IO_QUEUE_PREAD};

    for (size_t m = 0; m < 3; m++) {
        struct mt_io_source_options o = small_opts(modes[m], 3);
        struct mt_io_source_stats s;
        struct mt_io_source *src;

        if (!tap_ok(mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o,
                                        &src) == MT_OK,
                    "checkpoint source opens (%s asked)", mt_io_queue_mode_str(modes[m]))) {
            continue;
        }
        tap_ok(check_all(src) == 0, "%s: every expert equals the checkpoint's bytes, through a "
                                    "3-slot cache", mt_io_queue_mode_str(modes[m]));
        mt_io_source_stats(src, &s);
        tap_ok(s.mode == modes[m], "%s: the queue runs in the mode asked (got %s)",
               mt_io_queue_mode_str(modes[m]), mt_io_queue_mode_str(s.mode));
        tap_ok(s.peak_used_bytes <= s.budget_bytes && s.n_slots == 3 && s.evictions > 0,
               "%s: peak %llu bytes within the budget %llu, %llu evictions",
               mt_io_queue_mode_str(modes[m]), (unsigned long long)s.peak_used_bytes,
               (unsigned long long)s.budget_bytes, (unsigned long long)s.evictions);
        mt_io_source_destroy(src);
    }
    setenv("MT_IO_MODE", "pread", 1);
    {
        struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING_FIXED, 2);
        struct mt_io_source_stats s;
        struct mt_io_source *src;

        if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) ==
            MT_OK) {
            mt_io_source_stats(src, &s);
            tap_ok(s.mode == MT_IO_QUEUE_PREAD && check_all(src) == 0,
                   "MT_IO_MODE=pread forces the pread fallback, which reads the same bytes");
            mt_io_source_destroy(src);
        } else {
            tap_ok(false, "MT_IO_MODE=pread source opens");
        }
    }
    unsetenv("MT_IO_MODE");
    {
        /* a budget beyond every expert: one slot per expert, the rest of the budget unmapped */
        struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, N_LAYERS * N_EXPERTS + 7);
        struct mt_io_source_stats s;
        struct mt_io_source *src;

        if (tap_ok(mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o,
                                       &src) == MT_OK,
                   "a cache larger than all the experts opens")) {
            mt_io_source_stats(src, &s);
            tap_ok(s.n_slots == N_LAYERS * N_EXPERTS && check_all(src) == 0 && s.evictions == 0,
                   "... with one slot per expert (%u for %d), no eviction", s.n_slots,
                   N_LAYERS * N_EXPERTS);
            /* (layer, expert) pairs just outside the source: no such expert, nothing held (an
             * expert one past the last of a layer is not the next layer's first) */
            static const int bad[][2] = {{1, N_EXPERTS}, {N_LAYERS - 1, N_EXPERTS}, {N_LAYERS, 0},
                                         {-1, 0}, {1, -1}};
            int refused = 0;

            mt_log_set_quiet(true);
            for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct mt_io_expert_view v;
                mt_status_t st = mt_io_source_acquire(src, bad[i][0], bad[i][1], &v);

                refused += st == MT_ERR_INVAL;
                if (st == MT_OK) {
                    mt_io_source_release(src, bad[i][0], bad[i][1]);
                }
            }
            mt_log_set_quiet(false);
            tap_ok(refused == 5, "experts outside %d layers x %d are refused (%d of 5)", N_LAYERS,
                   N_EXPERTS, refused);
            mt_io_source_destroy(src);
        }
    }
    {
        /* descs without a single routed expert: nothing to read, refused at create */
        static struct mt_io_expert_desc none[N_KEYS];
        struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
        struct mt_io_source *src = NULL;

        o.cache_bytes = 0; /* the default budget, counted in slots */
        mt_log_set_quiet(true);
        mt_status_t st =
            mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, none, &o, &src);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "no routed expert to read") != NULL,
               "a checkpoint without routed experts is refused at create: %s",
               st == MT_OK ? "opened" : mt_last_error());
        if (st == MT_OK) {
            mt_io_source_destroy(src);
        }
    }
    {
        /* a part naming a file the source was not given: refused at create */
        struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
        struct mt_io_extent keep = descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP];
        struct mt_io_source *src = NULL;

        descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP].file = N_FILES;
        mt_log_set_quiet(true);
        mt_status_t st =
            mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "names file 2, but the source has files 0 to 1"),
               "a part in file %d (counted from 0) of %d is refused: %s", N_FILES, N_FILES,
               st == MT_OK ? "opened" : mt_last_error());
        if (st == MT_OK) {
            mt_io_source_destroy(src);
        }
        descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP] = keep;
    }
    {
        /* a part past its file's end (a checkpoint cut short after the model was read): one
         * error naming the expert, the file and its size */
        struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
        struct mt_io_extent keep = descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP];
        struct mt_io_source *src = NULL;
        char size[32];

        descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP].off = file_size[keep.file] - 10;
        snprintf(size, sizeof(size), "(%llu bytes)", (unsigned long long)file_size[keep.file]);
        mt_log_set_quiet(true);
        mt_status_t st =
            mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "layer 1 expert 2") != NULL &&
                   strstr(mt_last_error(), path_ptrs[keep.file]) != NULL &&
                   strstr(mt_last_error(), size) != NULL,
               "a part past its file's end is refused: %s", mt_last_error());
        if (st == MT_OK) {
            mt_io_source_destroy(src);
        }
        descs[1 * N_EXPERTS + 2].part[MT_IO_PART_UP] = keep;
    }
}

/*
 * The sizing options at their edges (io/expert_source.h): chunk_bytes that is not a 4 KiB
 * multiple (rounded down, at least 4 KiB: O_DIRECT reads stay aligned), a budget of exactly one
 * slot ("at least one slot"), one byte less (refused), and max_slots capping the slots.
 */
static void
test_sizing(void)
{
    static const size_t chunks[] = {3 * 4096 + 100, 100};
    struct mt_io_source_options o;
    struct mt_io_source_stats s;
    struct mt_io_source *src;
    mt_status_t st;

    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        o = small_opts(MT_IO_QUEUE_URING, 3);
        o.chunk_bytes = chunks[i];
        st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
        tap_ok(st == MT_OK && check_all(src) == 0,
               "chunk_bytes %zu (not a 4 KiB multiple): every expert reads back equal", chunks[i]);
        if (st == MT_OK) {
            mt_io_source_destroy(src);
        }
    }
    o = small_opts(MT_IO_QUEUE_URING, 1);
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    if (st == MT_OK) {
        mt_io_source_stats(src, &s);
        tap_ok(s.n_slots == 1 && check_all(src) == 0,
               "a budget of exactly one slot (%llu bytes) opens with 1 slot (%u) and reads all",
               (unsigned long long)o.cache_bytes, s.n_slots);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a budget of exactly one slot opens: %s", mt_last_error());
    }
    o.cache_bytes--;
    mt_log_set_quiet(true);
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "cannot hold one streamed expert") != NULL,
           "a budget one byte below a slot is refused: %s",
           st == MT_OK ? "opened" : mt_last_error());
    if (st == MT_OK) {
        mt_io_source_destroy(src);
    }
    /* chunk_bytes is the largest single read: expert 1:0's up part alone (400000 bytes, file
     * 1) is 7 chunks of 64 KiB, issued together by the one thread (depth 16); whole-range
     * reads would be only its 4 merged ranges */
    o = small_opts(MT_IO_QUEUE_URING, 3);
    o.io_threads = 1;
    o.queue_depth = 16;
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    if (st == MT_OK) {
        struct mt_io_expert_view v;
        bool ok = mt_io_source_acquire(src, 1, 0, &v) == MT_OK && view_matches(N_EXPERTS, &v);

        if (ok) {
            mt_io_source_release(src, 1, 0);
        }
        mt_io_source_stats(src, &s);
        tap_ok(ok && s.file_peak_in_flight[1] >= 7,
               "reads are cut into chunk_bytes pieces: %u reads of file 2 in flight at once",
               s.file_peak_in_flight[1]);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a one-thread source opens: %s", mt_last_error());
    }
    o = small_opts(MT_IO_QUEUE_URING, 0); /* cache_bytes 0: 4 slots */
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    if (st == MT_OK) {
        mt_io_source_stats(src, &s);
        tap_ok(s.n_slots == 4 && s.budget_bytes == 4 * s.slot_bytes,
               "cache_bytes 0 gives 4 slots (%u, a budget of %llu bytes)", s.n_slots,
               (unsigned long long)s.budget_bytes);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source with the default budget opens: %s", mt_last_error());
    }
    /* max_slots past the experts there are: still one slot per expert at most */
    o = small_opts(MT_IO_QUEUE_URING, N_KEYS + 7);
    o.max_slots = N_KEYS + 5;
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    if (st == MT_OK) {
        mt_io_source_stats(src, &s);
        tap_ok(s.n_slots == N_KEYS, "max_slots %u over %d experts and a larger budget: %u slots",
               o.max_slots, N_KEYS, s.n_slots);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source with max_slots past the experts opens: %s", mt_last_error());
    }
    {
        /* MT_IO_MAX_FILES files are allowed (refused here for its 0 layers, checked after the
         * files), one more is refused for the files; no file is opened by either */
        static const char *many[MT_IO_MAX_FILES + 1];

        for (int i = 0; i <= MT_IO_MAX_FILES; i++) {
            many[i] = path_ptrs[0];
        }
        mt_log_set_quiet(true);
        st = mt_io_source_create(many, MT_IO_MAX_FILES, 0, N_EXPERTS, descs, &o, &src);
        bool at_max = st == MT_ERR_INVAL && strstr(mt_last_error(), "out of range") != NULL;
        st = mt_io_source_create(many, MT_IO_MAX_FILES + 1, 0, N_EXPERTS, descs, &o, &src);
        mt_log_set_quiet(false);
        tap_ok(at_max && st == MT_ERR_INVAL &&
                   strstr(mt_last_error(), "can be read from at once") != NULL,
               "%d files pass the file check, %d do not: %s", MT_IO_MAX_FILES,
               MT_IO_MAX_FILES + 1, mt_last_error());
    }
    o = small_opts(MT_IO_QUEUE_URING, 10);
    o.max_slots = 2;
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    if (st == MT_OK) {
        mt_io_source_stats(src, &s);
        tap_ok(s.n_slots == 2 && check_all(src) == 0,
               "max_slots 2 under a 10-slot budget: 2 slots (%u), every expert reads", s.n_slots);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source with max_slots 2 opens: %s", mt_last_error());
    }
}

/*
 * Pinning and prefetch hints by their contract (io/expert_source.h) on a 6-slot source: a pin
 * is counted once however often it is asked, an unpin of an unpinned expert changes nothing; 4
 * pins fit (two slots stay for streaming), a 5th is refused; a pin whose read fails pins
 * nothing, so a second pin reads again; a prefetch hint with every slot held is dropped and
 * counted.
 */
static void
test_pin_rules(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 6);
    const struct mt_io_extent *x = &descs[2 * N_EXPERTS + 5].part[MT_IO_PART_DOWN];
    struct mt_io_source_stats s;
    struct mt_io_source_stats s0;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st[4];
    int held = 0;
    int other = 0;

    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the pin test's source");
    }
    st[0] = mt_io_source_pin(src, 1, 2, true);
    st[1] = mt_io_source_pin(src, 1, 2, true);
    mt_io_source_stats(src, &s0);
    st[2] = mt_io_source_pin(src, 1, 3, false);
    mt_io_source_stats(src, &s);
    tap_ok(st[0] == MT_OK && st[1] == MT_OK && st[2] == MT_OK && s0.pinned == 1 && s.pinned == 1,
           "a pin asked twice counts once (%u pinned), an unpin of an unpinned expert is a "
           "no-op (%u pinned)",
           s0.pinned, s.pinned);
    st[0] = mt_io_source_pin(src, 1, 3, true);
    st[1] = mt_io_source_pin(src, 1, 4, true);
    st[2] = mt_io_source_pin(src, 1, 5, true);
    mt_log_set_quiet(true);
    st[3] = mt_io_source_pin(src, 1, 6, true);
    mt_log_set_quiet(false);
    mt_io_source_stats(src, &s);
    tap_ok(st[0] == MT_OK && st[1] == MT_OK && st[2] == MT_OK && st[3] == MT_ERR_NOMEM &&
               s.pinned == 4,
           "6 slots take 4 pins, leaving two for streaming; the 5th is refused (%u pinned): %s",
           s.pinned, mt_last_error());
    for (int e = 2; e <= 5; e++) {
        mt_io_source_pin(src, 1, e, false);
    }
    /* a lasting EIO on 2:5: each pin reads it 1 + MT_IO_READ_RETRIES times and fails */
    mt_io_fault_set(MT_IO_FAULT_EIO, x->file, x->off + 100, 2 * (1 + MT_IO_READ_RETRIES));
    mt_log_set_quiet(true);
    st[0] = mt_io_source_pin(src, 2, 5, true);
    st[1] = mt_io_source_pin(src, 2, 5, true);
    mt_log_set_quiet(false);
    mt_io_source_stats(src, &s);
    tap_ok(st[0] == MT_ERR_IO && st[1] == MT_ERR_IO &&
               mt_io_fault_fired() == 2 * (1 + MT_IO_READ_RETRIES) && s.pinned == 0,
           "a pin whose read fails pins nothing: a second pin reads again and fails too (%d "
           "reads failed, %u pinned)",
           mt_io_fault_fired(), s.pinned);
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    /* a hint for an expert past the layer's last is no expert (not the next layer's first) */
    mt_io_source_stats(src, &s0);
    other = N_EXPERTS;
    mt_io_source_prefetch(src, 1, &other, 1);
    other = -1;
    mt_io_source_prefetch(src, 1, &other, 1);
    mt_io_source_stats(src, &s);
    tap_ok(s.prefetches == s0.prefetches && s.prefetch_dropped == s0.prefetch_dropped,
           "prefetch hints for experts %d and -1 of a layer are ignored (%llu prefetches more)",
           N_EXPERTS, (unsigned long long)(s.prefetches - s0.prefetches));
    /* nor is an expert of a layer without routed experts, or of the layer past the last */
    other = 0;
    mt_io_source_prefetch(src, 0, &other, 1);
    mt_io_source_prefetch(src, N_LAYERS, &other, 1);
    mt_io_source_stats(src, &s);
    tap_ok(s.prefetches == s0.prefetches && s.prefetch_dropped == s0.prefetch_dropped,
           "prefetch hints for layer 0 (no routed experts) and layer %d are ignored (%llu "
           "prefetches more)",
           N_LAYERS, (unsigned long long)(s.prefetches - s0.prefetches));
    /* every slot held by an acquire: a prefetch hint cannot be given a slot */
    for (int e = 0; e < 6; e++) {
        held += mt_io_source_acquire(src, 1, e, &v) == MT_OK;
    }
    mt_io_source_stats(src, &s0);
    other = 7;
    mt_io_source_prefetch(src, 2, &other, 1);
    mt_io_source_stats(src, &s);
    tap_ok(held == 6 && s.prefetch_dropped == s0.prefetch_dropped + 1 &&
               s.prefetches == s0.prefetches,
           "with every slot held, a prefetch hint is dropped and counted (%llu dropped)",
           (unsigned long long)(s.prefetch_dropped - s0.prefetch_dropped));
    for (int e = 0; e < held; e++) {
        mt_io_source_release(src, 1, e);
    }
    mt_io_source_destroy(src);

    /* an unpinned expert can be evicted again: in a 3-slot cache (one pin allowed), A = 1:2
     * pinned and unpinned (never acquired, the lowest score), then B, C, D acquired: D evicts
     * A, so A's next acquire is a miss */
    o = small_opts(MT_IO_QUEUE_URING, 3);
    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the unpin test's source");
    }
    bool ok = mt_io_source_pin(src, 1, 2, true) == MT_OK &&
              mt_io_source_pin(src, 1, 2, false) == MT_OK;
    for (int e = 3; e <= 5 && ok; e++) {
        ok = mt_io_source_acquire(src, 1, e, &v) == MT_OK;
        if (ok) {
            mt_io_source_release(src, 1, e);
        }
    }
    ok = acquire_counted(src, 1, 2, &s0, &s) && ok;
    tap_ok(ok && s.misses == s0.misses + 1 && s.pinned == 0,
           "an unpinned expert is evicted like any other (%llu misses more, %u pinned)",
           (unsigned long long)(s.misses - s0.misses), s.pinned);
    mt_io_source_destroy(src);
}

/*
 * Only an acquire counts an activation for the eviction policy (io/expert_source.h), not a
 * wait: in a 3-slot cache that acquired A, B, C once each, A is the oldest and lowest, and
 * five waits on A do not save it from the next eviction.
 */
static void
test_wait_not_counted(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 3);
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    bool ok = true;

    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the wait test's source");
    }
    for (int e = 2; e <= 4 && ok; e++) { /* A = 1:2, B = 1:3, C = 1:4 */
        ok = mt_io_source_acquire(src, 1, e, &v) == MT_OK;
        if (ok) {
            mt_io_source_release(src, 1, e);
        }
    }
    for (int i = 0; i < 5 && ok; i++) {
        ok = mt_io_source_wait(src, 1, 2) == MT_OK;
    }
    ok = ok && mt_io_source_acquire(src, 1, 5, &v) == MT_OK; /* D evicts the lowest */
    if (ok) {
        mt_io_source_release(src, 1, 5);
    }
    ok = acquire_counted(src, 1, 2, &s0, &s1) && ok;
    tap_ok(ok && s1.misses == s0.misses + 1 && s1.hits == s0.hits,
           "waits count no activation: the oldest acquired expert is evicted all the same (%llu "
           "misses, %llu hits more)",
           (unsigned long long)(s1.misses - s0.misses), (unsigned long long)(s1.hits - s0.hits));
    mt_io_source_destroy(src);
}

/*
 * The source's policy halves a score every 4 x n_slots activations (io/expert_source.c): in a
 * 2-slot cache, A acquired 3 times and then B twice, the next miss evicts B, the less used
 * though more recent (scores 2.13 and 1.76 at a half life of 8; a half life of 2 would give
 * 0.78 and 1.21, evicting A). So A's next acquire is a hit.
 */
static void
test_frequency_kept(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
    static const int order[6] = {2, 2, 2, 3, 3, 4}; /* A = 1:2, B = 1:3, C = 1:4 */
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    bool ok = true;

    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the frequency test's source");
    }
    for (int i = 0; i < 6 && ok; i++) {
        ok = mt_io_source_acquire(src, 1, order[i], &v) == MT_OK;
        if (ok) {
            mt_io_source_release(src, 1, order[i]);
        }
    }
    ok = acquire_counted(src, 1, 2, &s0, &s1) && ok;
    tap_ok(ok && s1.hits == s0.hits + 1 && s1.misses == s0.misses,
           "an expert used 3 times is kept over one used twice since: its acquire is a hit (%llu "
           "hits, %llu misses more)",
           (unsigned long long)(s1.hits - s0.hits), (unsigned long long)(s1.misses - s0.misses));
    mt_io_source_destroy(src);
}

/*
 * MT_IO_FAULT (io/expert_source.h, read at create): "L:E" fails every read of layer L expert E
 * and no other expert; "L:*:N" binds to the first expert of layer L that is read, not to an
 * expert of another layer read before it, and fails its first N reads.
 */
static void
test_fault_env(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 4);
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st[2];

    setenv("MT_IO_FAULT", "2:5", 1);
    mt_log_set_quiet(true);
    st[0] = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    if (st[0] == MT_OK) {
        st[0] = mt_io_source_acquire(src, 2, 0, &v);
        if (st[0] == MT_OK) {
            mt_io_source_release(src, 2, 0);
        }
        mt_log_set_quiet(true);
        st[1] = mt_io_source_acquire(src, 2, 5, &v);
        mt_log_set_quiet(false);
        tap_ok(st[0] == MT_OK && st[1] == MT_ERR_IO &&
                   strstr(mt_last_error(), "layer 2 expert 5") != NULL &&
                   strstr(mt_last_error(), "injected by MT_IO_FAULT") != NULL,
               "MT_IO_FAULT=2:5 fails expert 2:5 only (2:0 reads): %s", mt_last_error());
        if (st[1] == MT_OK) {
            mt_io_source_release(src, 2, 5);
        }
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source under MT_IO_FAULT=2:5 opens: %s", mt_last_error());
    }
    setenv("MT_IO_FAULT", "2:*:1", 1);
    mt_log_set_quiet(true);
    st[0] = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    if (st[0] == MT_OK) {
        bool ok = mt_io_source_acquire(src, 1, 3, &v) == MT_OK; /* layer 1: not bound */

        if (ok) {
            mt_io_source_release(src, 1, 3);
        }
        mt_io_source_stats(src, &s0);
        mt_log_set_quiet(true);
        ok = ok && mt_io_source_acquire(src, 2, 6, &v) == MT_OK;
        ok = ok && view_matches(2 * N_EXPERTS + 6, &v);
        mt_log_set_quiet(false);
        mt_io_source_stats(src, &s1);
        if (ok) {
            mt_io_source_release(src, 2, 6);
        }
        tap_ok(ok && s0.retries == 0 && s1.retries == 1,
               "MT_IO_FAULT=2:*:1 binds to layer 2's first expert read (1:3 before it reads "
               "clean: %llu retries), failing its first read once (%llu retries)",
               (unsigned long long)s0.retries, (unsigned long long)s1.retries);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source under MT_IO_FAULT=2:*:1 opens: %s", mt_last_error());
    }
    /* a layer or expert one past the last is no fault spec: ignored, and said so */
    {
        static const char *outside[2] = {"3:0", "2:8"};
        char log[600];
        int warned = 0;

        snprintf(log, sizeof(log), "%s/fault-range.log", dir);
        for (int i = 0; i < 2; i++) {
            setenv("MT_IO_FAULT", outside[i], 1);
            int saved = tap_stderr_to(log);
            st[0] = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
            tap_stderr_restore(saved);
            warned += tap_count_lines(log, "ignoring MT_IO_FAULT") == 1;
            if (st[0] == MT_OK) {
                mt_io_source_destroy(src);
            }
        }
        tap_ok(warned == 2, "MT_IO_FAULT=3:0 and 2:8 (one past %d layers x %d) are ignored with a "
               "warning (%d of 2)", N_LAYERS, N_EXPERTS, warned);
    }
    /* a negative count is no fault spec: ignored with a warning, every expert reads */
    setenv("MT_IO_FAULT", "2:5:-1", 1);
    mt_log_set_quiet(true);
    st[0] = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    if (st[0] == MT_OK) {
        st[1] = mt_io_source_acquire(src, 2, 5, &v);
        tap_ok(st[1] == MT_OK && view_matches(2 * N_EXPERTS + 5, &v),
               "MT_IO_FAULT=2:5:-1 is ignored: 2:5 reads (%s)",
               st[1] == MT_OK ? "ok" : mt_last_error());
        if (st[1] == MT_OK) {
            mt_io_source_release(src, 2, 5);
        }
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "a source under MT_IO_FAULT=2:5:-1 opens: %s", mt_last_error());
    }
    unsetenv("MT_IO_FAULT");
}

static void
test_faults(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING_FIXED, 2);
    const struct mt_io_extent *x = &descs[1 * N_EXPERTS + 3].part[MT_IO_PART_UP];
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st;

    o.verify = true; /* second read compared: also proves a completed short read is whole */
    if (!tap_ok(mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) ==
                    MT_OK,
                "source with --verify opens")) {
        return;
    }
    mt_io_fault_set(MT_IO_FAULT_SHORT, x->file, x->off + 5000, 3);
    st = mt_io_source_acquire(src, 1, 3, &v);
    tap_ok(st == MT_OK && mt_io_fault_fired() > 0 && view_matches(1 * N_EXPERTS + 3, &v),
           "injected short reads (%d) are resubmitted and the expert is complete",
           mt_io_fault_fired());
    if (st == MT_OK) {
        mt_io_source_release(src, 1, 3);
    }
    {
        /* one EIO: the read is started again and the expert arrives whole */
        struct mt_io_source_stats s0;
        struct mt_io_source_stats s1;

        mt_io_source_stats(src, &s0);
        x = &descs[2 * N_EXPERTS + 4].part[MT_IO_PART_DOWN];
        mt_io_fault_set(MT_IO_FAULT_EIO, x->file, x->off + 100, 1);
        st = mt_io_source_acquire(src, 2, 4, &v);
        mt_io_source_stats(src, &s1);
        tap_ok(st == MT_OK && mt_io_fault_fired() == 1 && view_matches(2 * N_EXPERTS + 4, &v) &&
                   s1.retries - s0.retries == 1 && s1.read_errors - s0.read_errors == 1,
               "one injected EIO: the expert is read again (one retry) and arrives whole");
        if (st == MT_OK) {
            mt_io_source_release(src, 2, 4);
        }
    }
    {
        /* EINVAL, as from a filesystem that refuses O_DIRECT only at read time: the chunk is
           read again through the page cache, no retry of the expert, no error; a second EINVAL
           (now buffered) is a real error, which the expert's retry then covers */
        struct mt_io_source_stats s0;
        struct mt_io_source_stats s1;

        mt_io_source_stats(src, &s0);
        x = &descs[1 * N_EXPERTS + 2].part[MT_IO_PART_GATE];
        mt_io_fault_set(MT_IO_FAULT_EINVAL, x->file, x->off + 100, 1);
        st = mt_io_source_acquire(src, 1, 2, &v);
        mt_io_source_stats(src, &s1);
        tap_ok(st == MT_OK && mt_io_fault_fired() == 1 && view_matches(1 * N_EXPERTS + 2, &v) &&
                   s1.retries == s0.retries && s1.read_errors == s0.read_errors,
               "one EINVAL (O_DIRECT refused at read): the chunk is read again buffered, the "
               "expert arrives whole without a retry");
        if (st == MT_OK) {
            mt_io_source_release(src, 1, 2);
        }
        mt_io_source_stats(src, &s0);
        x = &descs[2 * N_EXPERTS + 2].part[MT_IO_PART_UP];
        mt_io_fault_set(MT_IO_FAULT_EINVAL, x->file, x->off + 100, 2);
        mt_log_set_quiet(true);
        st = mt_io_source_acquire(src, 2, 2, &v);
        mt_log_set_quiet(false);
        mt_io_source_stats(src, &s1);
        tap_ok(st == MT_OK && mt_io_fault_fired() == 2 && view_matches(2 * N_EXPERTS + 2, &v) &&
                   s1.retries - s0.retries == 1 && s1.read_errors - s0.read_errors == 1,
               "an EINVAL again after the buffered read again is an error, not a loop (%llu "
               "errors, %llu retries)",
               (unsigned long long)(s1.read_errors - s0.read_errors),
               (unsigned long long)(s1.retries - s0.retries));
        if (st == MT_OK) {
            mt_io_source_release(src, 2, 2);
        }
        /* that file is read through the page cache now, where a read may stop short anywhere:
         * an off-grid stop is read on, not taken for the end of the file (the old queue did,
         * and the expert failed as truncated) */
        mt_io_source_stats(src, &s0);
        x = &descs[2 * N_EXPERTS + 6].part[MT_IO_PART_UP]; /* file 0, as expert (2, 2)'s */
        mt_io_fault_set(MT_IO_FAULT_SHORT_ODD, x->file, x->off + 100, 3);
        st = mt_io_source_acquire(src, 2, 6, &v);
        mt_io_source_stats(src, &s1);
        tap_ok(st == MT_OK && mt_io_fault_fired() > 0 && view_matches(2 * N_EXPERTS + 6, &v) &&
                   s1.retries == s0.retries && s1.read_errors == s0.read_errors,
               "short reads off the 4 KiB grid on a buffered file (%d) are read on: the expert "
               "arrives whole, no error, no retry (%llu errors)",
               mt_io_fault_fired(), (unsigned long long)(s1.read_errors - s0.read_errors));
        if (st == MT_OK) {
            mt_io_source_release(src, 2, 6);
        }
        mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    }
    /* an EIO on every read: after MT_IO_READ_RETRIES more reads, acquire fails */
    x = &descs[2 * N_EXPERTS + 5].part[MT_IO_PART_DOWN];
    mt_io_fault_set(MT_IO_FAULT_EIO, x->file, x->off + 100, 1 + MT_IO_READ_RETRIES);
    mt_log_set_quiet(true);
    st = mt_io_source_acquire(src, 2, 5, &v);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_IO && mt_io_fault_fired() == 1 + MT_IO_READ_RETRIES &&
               strstr(mt_last_error(), "layer 2 expert 5") != NULL &&
               strstr(mt_last_error(), paths[x->file]) != NULL &&
               strstr(mt_last_error(), strerror(EIO)) != NULL &&
               strstr(mt_last_error(), "read 3 times") != NULL,
           "a lasting EIO fails acquire after the retries, naming layer, expert, file and "
           "reason: %s",
           mt_last_error());
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    st = mt_io_source_acquire(src, 2, 5, &v);
    tap_ok(st == MT_OK && view_matches(2 * N_EXPERTS + 5, &v),
           "the failed expert was not kept: the next acquire reads it again, correctly");
    if (st == MT_OK) {
        mt_io_source_release(src, 2, 5);
    }
    {
        /* a prefetch whose read failed: the acquire reads the expert again, a miss, not a hit */
        struct mt_io_source_stats s0;
        struct mt_io_source_stats s1;
        int one = 6;

        mt_io_source_stats(src, &s0);
        x = &descs[1 * N_EXPERTS + 6].part[MT_IO_PART_GATE];
        mt_io_fault_set(MT_IO_FAULT_EIO, x->file, x->off + 100, 1);
        mt_io_source_prefetch(src, 1, &one, 1);
        s1 = s0;
        for (int i = 0; i < 2000 && s1.read_errors == s0.read_errors; i++) {
            usleep(5000); /* until the prefetch's read has failed (no time is asserted) */
            mt_io_source_stats(src, &s1);
        }
        st = mt_io_source_acquire(src, 1, 6, &v);
        mt_io_source_stats(src, &s1);
        tap_ok(st == MT_OK && view_matches(1 * N_EXPERTS + 6, &v) &&
                   s1.prefetches - s0.prefetches == 1 && s1.retries - s0.retries == 1 &&
                   s1.misses - s0.misses == 1 && s1.hits == s0.hits,
               "an acquire that finds its prefetch failed reads it again and counts a miss "
               "(%llu hits, %llu misses, %llu retries more)",
               (unsigned long long)(s1.hits - s0.hits), (unsigned long long)(s1.misses - s0.misses),
               (unsigned long long)(s1.retries - s0.retries));
        if (st == MT_OK) {
            mt_io_source_release(src, 1, 6);
        }
        mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    }
    tap_ok(check_all(src) == 0, "with --verify every expert reads back equal");
    mt_log_set_quiet(true);
    st = mt_io_source_acquire(src, 0, 1, &v);
    tap_ok(st == MT_ERR_INVAL, "a layer without routed experts is refused: %s", mt_last_error());
    mt_log_set_quiet(false);
    mt_io_source_destroy(src);
}

/*
 * The queue's wait itself fails, as on a broken io_uring (not a failed read: completions lost
 * to an overflow, a ring in a bad state): the reads in flight fail with that reason, the source
 * reads nothing more (a late write from the broken ring must not meet a new expert), and every
 * acquire fails at once with the reason. The old code called the wait again and again (here
 * through the million injected failures, on a real broken ring for ever); the alarm guards
 * against a hang.
 */
static void
test_broken_wait(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st;

    if (!tap_ok(mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) ==
                    MT_OK,
                "source with two I/O threads opens")) {
        return;
    }
    mt_io_fault_set(MT_IO_FAULT_WAIT, 0, 0, 1000000); /* every wait fails: a broken ring */
    mt_log_set_quiet(true);
    alarm(60);
    st = mt_io_source_acquire(src, 2, 7, &v);
    alarm(0);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_IO && mt_io_fault_fired() == 1 &&
               strstr(mt_last_error(), "layer 2 expert 7") != NULL &&
               strstr(mt_last_error(), "io_uring wait failed") != NULL,
           "a failing wait fails the acquire with its reason, and is not tried again (%d "
           "waits): %s",
           mt_io_fault_fired(), mt_last_error());
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;

    mt_io_source_stats(src, &s0);
    mt_log_set_quiet(true);
    alarm(60);
    st = mt_io_source_acquire(src, 1, 1, &v);
    alarm(0);
    mt_log_set_quiet(false);
    mt_io_source_stats(src, &s1);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "layer 1 expert 1") != NULL &&
               strstr(mt_last_error(), "io_uring wait failed") != NULL &&
               strstr(mt_last_error(), "read 3 times") == NULL,
           "the broken source fails the next expert at once, with the same reason: %s",
           mt_last_error());
    /* stats: bytes_read counts bytes that came from the files; none did for this expert */
    tap_ok(s1.bytes_read == s0.bytes_read && s1.read_errors == s0.read_errors + 1,
           "... reading no byte (bytes_read %llu -> %llu), one read error (%llu -> %llu)",
           (unsigned long long)s0.bytes_read, (unsigned long long)s1.bytes_read,
           (unsigned long long)s0.read_errors, (unsigned long long)s1.read_errors);
    alarm(60);
    mt_io_source_destroy(src); /* waits for the read the broken wait left in the ring */
    alarm(0);
    tap_ok(true, "the source is destroyed after a broken wait");
}

/* Part lengths of every key, for the store writer. */
static void
part_lens(uint64_t *lens)
{
    for (int k = 0; k < N_KEYS; k++) {
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            lens[k * MT_IO_N_PARTS + p] = descs[k].part[p].len;
        }
    }
}

static mt_status_t
pack(const char *const *out, int n, uint64_t hash, int stop_after)
{
    uint64_t lens[N_KEYS * MT_IO_N_PARTS];
    struct mt_io_store_writer *w;
    mt_status_t st;
    int put = 0;

    part_lens(lens);
    st = mt_io_store_writer_create(out, n, hash, N_LAYERS, N_EXPERTS, lens, &w);
    if (st != MT_OK) {
        return st;
    }
    for (int k = N_EXPERTS; k < N_KEYS && st == MT_OK; k++) {
        const void *parts[MT_IO_N_PARTS];

        if (put++ == stop_after) {
            mt_io_store_writer_destroy(w); /* the "crash": abandoned mid-pack */
            return MT_ERR_INTERNAL;
        }
        for (int p = 0; p < MT_IO_N_PARTS; p++) {
            const struct mt_io_extent *x = &descs[k].part[p];

            parts[p] = x->len > 0 ? file_data[x->file] + x->off : NULL;
        }
        st = mt_io_store_writer_put(w, k / N_EXPERTS, k % N_EXPERTS, parts);
    }
    if (st != MT_OK) {
        mt_io_store_writer_destroy(w);
        return st;
    }
    return mt_io_store_writer_finish(w);
}

/*
 * A prefetched expert not yet acquired is kept while another slot can be given up: with 2 slots,
 * A acquired and released, B prefetched and read, an acquire of C evicts A, and B is then a hit.
 */
static void
test_prefetch_kept(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    int b = 3;
    bool ok;

    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the prefetch test's source");
    }
    ok = mt_io_source_acquire(src, 1, 2, &v) == MT_OK;
    if (ok) {
        mt_io_source_release(src, 1, 2);
    }
    mt_io_source_stats(src, &s0);
    mt_io_source_prefetch(src, 1, &b, 1);
    s1 = s0;
    for (int i = 0; i < 2000 && s1.experts_read == s0.experts_read; i++) {
        usleep(5000); /* until the prefetch's read is in (no time is asserted) */
        mt_io_source_stats(src, &s1);
    }
    ok = ok && s1.experts_read == s0.experts_read + 1 &&
         mt_io_source_acquire(src, 1, 4, &v) == MT_OK;
    if (ok) {
        mt_io_source_release(src, 1, 4);
    }
    ok = acquire_counted(src, 1, 3, &s0, &s1) && ok;
    tap_ok(ok && s1.hits == s0.hits + 1 && s1.misses == s0.misses,
           "a prefetched expert is kept over one already used: its acquire is a hit (%llu hits, "
           "%llu misses more)",
           (unsigned long long)(s1.hits - s0.hits), (unsigned long long)(s1.misses - s0.misses));
    mt_io_source_destroy(src);

    /* nor does a prefetch hint evict a prefetch not yet acquired: with both slots holding one,
     * read in, the next hint is dropped, and both earlier ones are hits */
    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the prefetch test's source");
    }
    {
        static const int ab[2] = {2, 3};

        mt_io_source_stats(src, &s0);
        mt_io_source_prefetch(src, 1, ab, 2);
        s1 = s0;
        for (int i = 0; i < 2000 && s1.experts_read < s0.experts_read + 2; i++) {
            usleep(5000); /* until both reads are in (no time is asserted) */
            mt_io_source_stats(src, &s1);
        }
        b = 4;
        mt_io_source_prefetch(src, 1, &b, 1);
        mt_io_source_stats(src, &s1);
        ok = s1.prefetches == s0.prefetches + 2 && s1.prefetch_dropped == s0.prefetch_dropped + 1;
        for (int i = 0; i < 2 && ok; i++) {
            ok = mt_io_source_acquire(src, 1, ab[i], &v) == MT_OK &&
                 view_matches(1 * N_EXPERTS + ab[i], &v);
            if (ok) {
                mt_io_source_release(src, 1, ab[i]);
            }
        }
        mt_io_source_stats(src, &s1);
        tap_ok(ok && s1.hits == s0.hits + 2 && s1.misses == s0.misses,
               "a prefetch hint with every slot holding an unused prefetch is dropped (%llu "
               "dropped, %llu prefetches), the two kept are hits (%llu hits, %llu misses)",
               (unsigned long long)(s1.prefetch_dropped - s0.prefetch_dropped),
               (unsigned long long)(s1.prefetches - s0.prefetches),
               (unsigned long long)(s1.hits - s0.hits),
               (unsigned long long)(s1.misses - s0.misses));
    }
    mt_io_source_destroy(src);

    /* once acquired, a prefetched expert is an ordinary one: in a fresh 2-slot cache, A
     * prefetched then acquired once, B acquired once after it, C's acquire evicts A (the
     * lower score), so A's next acquire is a miss */
    if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) != MT_OK) {
        tap_bail_out("cannot open the prefetch test's second source");
    }
    b = 2; /* A = 1:2, B = 1:5, C = 1:6 */
    mt_io_source_prefetch(src, 1, &b, 1);
    ok = mt_io_source_wait(src, 1, 2) == MT_OK;
    for (int i = 0; i < 3 && ok; i++) {
        static const int abc[3] = {2, 5, 6};

        ok = mt_io_source_acquire(src, 1, abc[i], &v) == MT_OK;
        if (ok) {
            mt_io_source_release(src, 1, abc[i]);
        }
    }
    ok = acquire_counted(src, 1, 2, &s0, &s1) && ok;
    tap_ok(ok && s1.misses == s0.misses + 1,
           "an acquired prefetch is no longer kept over others: evicted by its score (%llu misses, "
           "%llu hits more)",
           (unsigned long long)(s1.misses - s0.misses), (unsigned long long)(s1.hits - s0.hits));
    mt_io_source_destroy(src);
}

/*
 * The time counters and the reset (io/expert_source.h). A miss waits for its read, so stall_s
 * and io_busy_s grow; neither can exceed the wall time around the source (a bound, not a
 * timing), and gbps is bytes_read over io_busy_s. A reset zeroes every counter, keeps the sizing,
 * and the peak starts again from the slots in use. Nothing is prefetched, so no read is left
 * running when an acquire returns.
 */
static void
test_counters(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 3);
    struct mt_io_source_stats s;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    double t0 = mt_clock_now();
    double wall;
    bool ok = true;

    setenv("MT_IO_FAULT", "1:5", 1); /* every read of 1:5 fails */
    mt_log_set_quiet(true);
    mt_status_t st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    unsetenv("MT_IO_FAULT");
    if (st != MT_OK) {
        tap_bail_out("cannot open the counter test's source");
    }
    for (int e = 2; e <= 3 && ok; e++) {
        ok = mt_io_source_acquire(src, 1, e, &v) == MT_OK && view_matches(1 * N_EXPERTS + e, &v);
        if (ok) {
            mt_io_source_release(src, 1, e);
        }
    }
    mt_io_source_stats(src, &s);
    wall = mt_clock_now() - t0;
    tap_ok(ok && s.misses == 2 && s.experts_read == 2 && s.stall_s > 0 && s.stall_s <= wall &&
               s.io_busy_s > 0 && s.io_busy_s <= wall &&
               fabs(s.gbps * 1e9 * s.io_busy_s - (double)s.bytes_read) <= 1e-6 * s.bytes_read,
           "two misses: stall %g s and I/O busy %g s within the %g s wall, %g GB/s for %llu "
           "bytes", s.stall_s, s.io_busy_s, wall, s.gbps, (unsigned long long)s.bytes_read);
    /* the peak is the most slots ever in use: 3 held, then two prefetches that fail (1:5 by
     * MT_IO_FAULT, 1:6 by an EIO for its 3 reads) each keep a slot until their acquires fail
     * and give both back; the slot taken next leaves the peak at 3 */
    ok = ok && mt_io_source_acquire(src, 1, 4, &v) == MT_OK;
    if (ok) {
        mt_io_source_release(src, 1, 4);
    }
    {
        const struct mt_io_extent *x = &descs[1 * N_EXPERTS + 6].part[MT_IO_PART_DOWN];
        static const int bad[2] = {5, 6};
        struct mt_io_source_stats s0;

        mt_io_source_stats(src, &s0);
        mt_io_fault_set(MT_IO_FAULT_EIO, x->file, x->off + 100, 1 + MT_IO_READ_RETRIES);
        mt_io_source_prefetch(src, 1, bad, 2);
        s = s0;
        for (int i = 0; i < 2000 && s.read_errors < s0.read_errors + 2; i++) {
            usleep(5000); /* until both prefetches have failed (no time is asserted) */
            mt_io_source_stats(src, &s);
        }
        mt_log_set_quiet(true);
        ok = ok && s.prefetches == s0.prefetches + 2 &&
             mt_io_source_acquire(src, 1, 5, &v) == MT_ERR_IO &&
             mt_io_source_acquire(src, 1, 6, &v) == MT_ERR_IO;
        mt_log_set_quiet(false);
        mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    }
    ok = ok && mt_io_source_acquire(src, 1, 7, &v) == MT_OK && view_matches(1 * N_EXPERTS + 7, &v);
    if (ok) {
        mt_io_source_release(src, 1, 7);
    }
    mt_io_source_stats(src, &s);
    tap_ok(ok && s.peak_used_bytes == 3 * slot_bytes,
           "the peak stays at the 3 slots once used after failed reads gave 2 back (%llu bytes)",
           (unsigned long long)s.peak_used_bytes);
    /* 1:7 took a slot the failed prefetches gave back, not the one still holding 1:4 (the
     * prefetches evicted 1:2 and 1:3, the lowest): the freed slots were kept as if they held
     * unused prefetches, and 1:4 was evicted */
    {
        struct mt_io_source_stats s0;

        mt_io_source_stats(src, &s0);
        ok = mt_io_source_acquire(src, 1, 4, &v) == MT_OK && view_matches(1 * N_EXPERTS + 4, &v);
        if (ok) {
            mt_io_source_release(src, 1, 4);
        }
        mt_io_source_stats(src, &s);
        tap_ok(ok && s.hits == s0.hits + 1 && s.misses == s0.misses,
               "a slot freed by a failed prefetch is taken before an expert is evicted: 1:4 is "
               "still a hit (%llu hits, %llu misses more)",
               (unsigned long long)(s.hits - s0.hits), (unsigned long long)(s.misses - s0.misses));
    }
    mt_io_source_stats_reset(src);
    mt_io_source_stats(src, &s);
    bool zero = s.hits == 0 && s.late_hits == 0 && s.misses == 0 && s.prefetches == 0 &&
                s.prefetch_dropped == 0 && s.evictions == 0 && s.experts_read == 0 &&
                s.bytes_read == 0 && s.read_errors == 0 && s.verify_failures == 0 &&
                s.retries == 0 && s.stall_s == 0 && s.io_busy_s == 0 && s.gbps == 0;

    for (int f = 0; f < N_FILES; f++) {
        zero = zero && s.file_bytes[f] == 0 && s.file_peak_in_flight[f] == 0;
    }
    tap_ok(zero && s.n_slots == 3 && s.budget_bytes == 3 * slot_bytes &&
               s.slot_bytes == slot_bytes && s.peak_used_bytes == 2 * slot_bytes,
           "a reset zeroes the counters, keeps the sizing (%u slots) and restarts the peak from "
           "the 2 slots in use (%llu bytes)",
           s.n_slots, (unsigned long long)s.peak_used_bytes);
    ok = mt_io_source_acquire(src, 1, 4, &v) == MT_OK && view_matches(1 * N_EXPERTS + 4, &v);
    if (ok) {
        mt_io_source_release(src, 1, 4);
    }
    mt_io_source_stats(src, &s);
    tap_ok(ok && s.hits == 1 && s.misses == 0 && s.bytes_read == 0 && s.stall_s == 0,
           "after the reset, an expert kept is a hit without a read or a stall (%llu hits, %llu "
           "bytes)", (unsigned long long)s.hits, (unsigned long long)s.bytes_read);
    mt_io_source_destroy(src);
}

/*
 * A failed read issues no more of its expert: one thread, two reads in flight, expert 1:0 in
 * many chunks. MT_IO_FAULT fails its first read at the first completion; an EIO is armed on its
 * last range, which that read never reaches, so it fires on the retry, and a second retry reads
 * the expert. Reading on after the failure would spend the EIO on the failed read, and the
 * expert would need one retry only.
 */
static void
test_failed_read_stops(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 3);
    const struct mt_io_extent *down = &descs[1 * N_EXPERTS + 0].part[MT_IO_PART_DOWN];
    struct mt_io_source_stats s0;
    struct mt_io_source_stats s1;
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st;

    o.io_threads = 1;
    o.queue_depth = 2;
    setenv("MT_IO_FAULT", "1:0:1", 1);
    mt_log_set_quiet(true);
    st = mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src);
    mt_log_set_quiet(false);
    unsetenv("MT_IO_FAULT");
    if (st != MT_OK) {
        tap_ok(false, "a source under MT_IO_FAULT=1:0:1 opens: %s", mt_last_error());
        return;
    }
    mt_io_source_stats(src, &s0);
    mt_io_fault_set(MT_IO_FAULT_EIO, down->file, down->off + down->len - 100, 1);
    mt_log_set_quiet(true);
    st = mt_io_source_acquire(src, 1, 0, &v);
    mt_log_set_quiet(false);
    mt_io_source_stats(src, &s1);
    tap_ok(st == MT_OK && view_matches(1 * N_EXPERTS + 0, &v) && mt_io_fault_fired() == 1 &&
               s1.retries - s0.retries == 2 && s1.read_errors - s0.read_errors == 2,
           "a failed read stops issuing its expert's chunks: the EIO on its last range fires "
           "on the retry (%llu retries, %llu errors, %d fired)",
           (unsigned long long)(s1.retries - s0.retries),
           (unsigned long long)(s1.read_errors - s0.read_errors), mt_io_fault_fired());
    if (st == MT_OK) {
        mt_io_source_release(src, 1, 0);
    }
    mt_io_fault_set(MT_IO_FAULT_NONE, 0, 0, 0);
    mt_io_source_destroy(src);
}

/*
 * A shard cut short after the source opened it, inside expert 1:1's gate but past its down scale
 * (the two share their first 4 KiB page): the acquire fails as truncated, never handing out the
 * missing gate bytes.
 */
static void
test_cut_after_open(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING, 2);
    const struct mt_io_extent *gate = &descs[1 * N_EXPERTS + 1].part[MT_IO_PART_GATE];
    char cut[N_FILES][512];
    const char *cut_ptrs[N_FILES];
    struct mt_io_expert_view v;
    struct mt_io_source *src;
    mt_status_t st = MT_ERR_INTERNAL;
    bool ok = true;

    for (int f = 0; f < N_FILES; f++) {
        snprintf(cut[f], sizeof(cut[f]), "%s/cut-%d.safetensors", dir, f);
        cut_ptrs[f] = cut[f];
        ok = ok && tap_copy_file(paths[f], cut[f], 0);
    }
    if (!ok || mt_io_source_create(cut_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) !=
                   MT_OK) {
        tap_bail_out("cannot set up the cut-after-open test");
    }
    if (truncate(cut[gate->file], (off_t)(gate->off + 8000)) == 0) {
        mt_log_set_quiet(true);
        st = mt_io_source_acquire(src, 1, 1, &v);
        mt_log_set_quiet(false);
    }
    tap_ok(st != MT_OK && strstr(mt_last_error(), "truncated") != NULL,
           "a shard cut inside a gate after open fails its expert: %s", mt_last_error());
    if (st == MT_OK) {
        mt_io_source_release(src, 1, 1);
    }
    mt_io_source_destroy(src);
    for (int f = 0; f < N_FILES; f++) {
        unlink(cut[f]);
    }
}

static mt_status_t
open_store_quiet(const char *const *p, int n, uint64_t hash, bool verify,
                 struct mt_io_source **src_out)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING_FIXED, 4);
    mt_status_t st;

    o.cache_bytes = 4 * slot_bytes + (1u << 20); /* store extents pad each part to 4 KiB */
    o.verify = verify;
    mt_log_set_quiet(true);
    st = mt_io_source_create_store(p, n, hash, &o, src_out);
    mt_log_set_quiet(false);
    return st;
}

static void
test_store(void)
{
    const uint64_t hash = 0x1234abcd5678ef00ull;
    char store[N_FILES][512];
    char other[N_FILES][512];
    const char *sp[N_FILES];
    const char *op[N_FILES];
    const char *swapped[N_FILES];
    struct mt_io_source *src;
    struct mt_io_source_stats s;
    struct mt_io_store_header h;
    mt_status_t st;
    int fd;

    for (int f = 0; f < N_FILES; f++) {
        snprintf(store[f], sizeof(store[f]), "%s/experts-%d.mts", dir, f);
        snprintf(other[f], sizeof(other[f]), "%s/broken-%d.mts", dir, f);
        sp[f] = store[f];
        op[f] = other[f];
        swapped[N_FILES - 1 - f] = store[f];
    }
    tap_ok(pack(sp, N_FILES, hash, -1) == MT_OK, "a two-file store is packed");
    if (open_store_quiet(sp, N_FILES, hash, true, &src) == MT_OK) {
        int bad = 0;

        for (int k = N_EXPERTS; k < N_KEYS; k++) {
            struct mt_io_expert_view v;

            if (mt_io_source_acquire(src, k / N_EXPERTS, k % N_EXPERTS, &v) != MT_OK) {
                bad++;
                continue;
            }
            bad += !view_matches(k, &v);
            /* each part starts on a 4 KiB boundary of its slot: kernels get aligned data */
            for (int p = 0; p < MT_IO_N_PARTS; p++) {
                bad += v.part[p] != NULL && (uintptr_t)v.part[p] % 4096 != 0;
            }
            mt_io_source_release(src, k / N_EXPERTS, k % N_EXPERTS);
        }
        mt_io_source_stats(src, &s);
        tap_ok(bad == 0, "every expert read from the store (CRCs checked) equals the checkpoint's "
                         "bytes, each part 4 KiB aligned");
        {
            /* io/store.h: each part starts on a 4 KiB boundary of its extent; a slot holds the
             * largest extent, wherever that expert lies in the index */
            uint64_t largest = 0;

            for (int k = 0; k < N_KEYS; k++) {
                uint64_t ext = 0;

                for (int p = 0; p < MT_IO_N_PARTS; p++) {
                    ext += (descs[k].part[p].len + 4095) / 4096 * 4096;
                }
                largest = MT_MAX(largest, ext);
            }
            tap_ok(mt_io_source_slot_bytes(src) == largest,
                   "a store slot holds the largest extent (%llu bytes, want %llu)",
                   (unsigned long long)mt_io_source_slot_bytes(src),
                   (unsigned long long)largest);
        }
        tap_ok(s.file_bytes[0] > 0 && s.file_bytes[1] > 0,
               "both store files were read (%llu and %llu bytes)",
               (unsigned long long)s.file_bytes[0], (unsigned long long)s.file_bytes[1]);
        /* part_len: the part's bytes, 0 for an absent expert and for any index out of range */
        tap_ok(mt_io_source_part_len(src, 1, 0, MT_IO_PART_UP) ==
                       descs[N_EXPERTS].part[MT_IO_PART_UP].len &&
                   mt_io_source_part_len(src, 0, 0, MT_IO_PART_UP) == 0 &&
                   mt_io_source_part_len(src, 1, 0, MT_IO_N_PARTS) == 0 &&
                   mt_io_source_part_len(src, 1, 0, -1) == 0 &&
                   mt_io_source_part_len(src, 1, N_EXPERTS, 0) == 0 &&
                   mt_io_source_part_len(src, N_LAYERS, 0, 0) == 0,
               "part_len gives a part's bytes, 0 for an absent expert or an index out of range");
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "the store opens: %s", mt_last_error());
        tap_ok(false, "a store slot holds the largest extent");
        tap_ok(false, "both store files were read");
    }
    st = open_store_quiet(sp, N_FILES, hash + 1, false, &src);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "another model") != NULL,
           "a store for another model is refused: %s", mt_last_error());
    st = open_store_quiet(swapped, N_FILES, hash, false, &src);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "in the order") != NULL,
           "store files given in the wrong order are refused: %s", mt_last_error());
    st = open_store_quiet(sp, 1, hash, false, &src);
    tap_ok(st == MT_ERR_FORMAT &&
               strstr(mt_last_error(), "is file 1 of 2, given as file 1 of 1") != NULL &&
               strstr(mt_last_error(), "give every file of the store") != NULL,
           "one file of a two-file store is refused, naming the count: %s", mt_last_error());
    {
        /* io/store.c: a store has 1..MT_IO_MAX_FILES files; the count is checked before any */
        static const char *many[MT_IO_MAX_FILES + 1];
        struct mt_io_store *s0 = NULL;

        for (int i = 0; i <= MT_IO_MAX_FILES; i++) {
            many[i] = "/nonexistent-moetier-store";
        }
        st = mt_io_store_open(sp, 0, hash, &s0);
        tap_ok(st == MT_ERR_INVAL && s0 == NULL, "a store of 0 files is refused: %s",
               st == MT_OK ? "opened" : mt_last_error());
        st = mt_io_store_open(many, MT_IO_MAX_FILES + 1, hash, &s0);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "1..1024 files") != NULL,
               "a store of %d files is refused by count: %s", MT_IO_MAX_FILES + 1,
               mt_last_error());
    }

    /* truncated: the last 4 KiB of file 1 cut off */
    tap_copy_file(store[0], other[0], 0);
    tap_copy_file(store[1], other[1], 4096);
    st = open_store_quiet(op, N_FILES, hash, false, &src);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "truncated") != NULL,
           "a truncated store is refused at open: %s", mt_last_error());

    /* interrupted pack: abandoned after 5 experts */
    unlink(other[0]);
    unlink(other[1]);
    mt_log_set_quiet(true);
    pack(op, N_FILES, hash, 5);
    mt_log_set_quiet(false);
    st = open_store_quiet(op, N_FILES, hash, false, &src);
    tap_ok(st != MT_OK && access(other[0], F_OK) != 0 && strstr(mt_last_error(), "interrupted"),
           "an interrupted pack leaves no store under the final names: %s", mt_last_error());
    /* a .partial from a pack killed before its header: not a store */
    {
        uint64_t lens[N_KEYS * MT_IO_N_PARTS];
        struct mt_io_store_writer *w;
        char partial[2][600];
        const char *pp[2] = {partial[0], partial[1]};

        part_lens(lens);
        if (mt_io_store_writer_create(op, N_FILES, hash, N_LAYERS, N_EXPERTS, lens, &w) == MT_OK) {
            snprintf(partial[0], sizeof(partial[0]), "%s.partial", other[0]);
            snprintf(partial[1], sizeof(partial[1]), "%s.partial", other[1]);
            st = open_store_quiet(pp, N_FILES, hash, false, &src);
            tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "not a moetier expert store"),
                   "a half-written .partial file does not open as a store: %s", mt_last_error());
            mt_io_store_writer_destroy(w);
        } else {
            tap_ok(false, "writer for the .partial test");
        }
    }

    /* a flipped bit inside an extent: caught by its CRC, the other experts still read */
    tap_copy_file(store[0], other[0], 0);
    tap_copy_file(store[1], other[1], 0);
    fd = open(other[1], O_RDWR);
    if (fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h)) {
        unsigned char b;
        uint64_t at = h.data_off + 12345; /* the first extent of file 1 */

        if (pread(fd, &b, 1, (off_t)at) == 1) {
            b ^= 0x10;
            (void)!pwrite(fd, &b, 1, (off_t)at);
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    /* ... and without verify: a store's CRC32C is always checked (io/expert_source.h) */
    if (open_store_quiet(op, N_FILES, hash, false, &src) == MT_OK) {
        int corrupt = 0;

        mt_log_set_quiet(true);
        for (int k = N_EXPERTS; k < N_KEYS; k++) {
            struct mt_io_expert_view v;

            st = mt_io_source_acquire(src, k / N_EXPERTS, k % N_EXPERTS, &v);
            corrupt += st == MT_ERR_FORMAT && strstr(mt_last_error(), "CRC32C mismatch") != NULL;
            if (st == MT_OK) {
                mt_io_source_release(src, k / N_EXPERTS, k % N_EXPERTS);
            }
        }
        mt_log_set_quiet(false);
        tap_ok(corrupt == 1, "without verify, the flipped bit is caught by the CRC32C too (%d "
                             "caught)", corrupt);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "the bit-flipped store opens without verify");
    }
    if (open_store_quiet(op, N_FILES, hash, true, &src) == MT_OK) {
        int corrupt = 0;
        int good = 0;

        mt_log_set_quiet(true);
        for (int k = N_EXPERTS; k < N_KEYS; k++) {
            struct mt_io_expert_view v;

            st = mt_io_source_acquire(src, k / N_EXPERTS, k % N_EXPERTS, &v);
            if (st == MT_ERR_FORMAT && strstr(mt_last_error(), "CRC32C mismatch") != NULL) {
                corrupt++;
            } else if (st == MT_OK) {
                good += view_matches(k, &v);
                mt_io_source_release(src, k / N_EXPERTS, k % N_EXPERTS);
            }
        }
        mt_log_set_quiet(false);
        mt_io_source_stats(src, &s);
        tap_ok(corrupt == 1 && good == N_KEYS - N_EXPERTS - 1 &&
                   s.verify_failures == 1 + MT_IO_READ_RETRIES && s.retries == MT_IO_READ_RETRIES,
               "a flipped bit is caught by the extent's CRC32C, read %d times (%d caught, %d "
               "good)", (int)s.verify_failures, corrupt, good);
        mt_io_source_destroy(src);
    } else {
        tap_ok(false, "the bit-flipped store opens (header intact)");
    }
    for (int f = 0; f < N_FILES; f++) {
        unlink(other[f]);
    }
}

/* ---- forged stores: every header and index check ------------------------------------------- */

/*
 * A copy of the packed store with one field changed, then resealed: the index CRC in both headers
 * and each header's CRC recomputed (unless the case is the CRC itself), so only the check under
 * test can refuse it. Cases 0..99 change header fields, 100.. an index entry (in both files).
 */
enum {
    F_VERSION, F_HEADER_CRC, F_INDEX_OFF, F_DATA_OFF_LOW, F_DATA_OFF_ODD, F_TOO_LONG, F_STORE_ID,
    F_INDEX_CRC, F_MAGIC, F_HEADER_BYTES, F_INDEX_BYTES, F_NO_LAYERS, F_HUGE, F_INDEX_CUT,
    F_INDEX_FLIP, F_SHAPE,
    F_ENTRY = 100, E_FILE = F_ENTRY, E_FILE_HUGE, E_OFF_ODD, E_LEN_ODD, E_OFF_LOW,
    E_PAST_END,
    E_PART_ODD, E_PART_PAST, E_SHORT_FILE, E_WRAP, E_PART_BEYOND, E_LAST_KEY, E_PART_FULL
};

static const struct {
    int what;
    const char *name;
    const char *phrase;
} forged[] = {
    {F_VERSION, "format version 2", "has format version 2"},
    {F_HEADER_CRC, "a header CRC off by one", "corrupt header"},
    {F_INDEX_OFF, "index_off 5120", "corrupt header"},
    {F_DATA_OFF_LOW, "data_off inside the index", "corrupt header"},
    {F_DATA_OFF_ODD, "data_off not 4 KiB aligned", "corrupt header"},
    {F_TOO_LONG, "4 KiB appended to file 2", "is too long"},
    {F_STORE_ID, "file 2 from another pack (store_id)", "different packs; give the files of"},
    {F_INDEX_CRC, "file 2 with another index CRC", "different packs; give the files of"},
    {F_MAGIC, "magic MTSTORE2", "no MTSTORE1 header"},
    {F_HEADER_BYTES, "header_bytes 8192", "corrupt header"},
    {F_INDEX_BYTES, "index_bytes one entry short", "corrupt header"},
    {F_NO_LAYERS, "0 layers (and an empty index)", "corrupt header"},
    {F_HUGE, "2^24 + 2 experts (a 2 GB index)", "corrupt header"},
    {F_INDEX_CUT, "file 1 cut inside its index (file_bytes too)", "is truncated: it ends at 4196"},
    {F_INDEX_FLIP, "a flipped bit in the index (its CRC not updated)", "corrupt index"},
    {F_SHAPE, "file 2 with 6 layers x 4 experts (same index size)", "different packs"},
    {E_FILE, "an entry in file 3 of 2", "out of bounds"},
    {E_FILE_HUGE, "an entry in file 2^32 of 2", "out of bounds"},
    {E_OFF_ODD, "an entry offset off 4 KiB alignment", "out of bounds"},
    {E_LEN_ODD, "an entry length off 4 KiB alignment", "out of bounds"},
    {E_OFF_LOW, "an entry inside the header", "out of bounds"},
    {E_PAST_END, "the last extent 4 KiB past the end", "out of bounds"},
    {E_PART_ODD, "a part offset off 4 KiB alignment", "out of bounds"},
    {E_PART_PAST, "a part one byte longer than its extent", "out of bounds"},
    {E_SHORT_FILE, "a 4 KiB extent in file 3 of 2", "out of bounds"},
    {E_WRAP, "an extent whose end wraps past 2^64", "out of bounds"},
    {E_PART_BEYOND, "a part starting 4 KiB past its extent's end", "out of bounds"},
    {E_LAST_KEY, "the last key's entry (2:7) in file 3 of 2", "layer 2 expert 7 is out"},
    /* phrase NULL: still valid, opens (the bound is inclusive: a part may end at its extent's) */
    {E_PART_FULL, "the last part grown to end exactly at its extent's end", NULL},
};

static bool
read_whole(const char *path, unsigned char **buf, size_t *n)
{
    FILE *f = fopen(path, "rb");
    long len;

    *buf = NULL;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (*buf = malloc((size_t)len + 4096)) == NULL ||
        fread(*buf, 1, (size_t)len, f) != (size_t)len) {
        if (f != NULL) {
            fclose(f);
        }
        free(*buf);
        return false;
    }
    fclose(f);
    *n = (size_t)len;
    return true;
}

/* The present entry with the highest (last) or lowest (first) offset in file 0. */
static struct mt_io_store_entry *
extent_in_file0(struct mt_io_store_entry *ix, int n, bool last)
{
    struct mt_io_store_entry *best = NULL;

    for (int k = 0; k < n; k++) {
        if (ix[k].len > 0 && ix[k].file == 0 &&
            (best == NULL || (last ? ix[k].off > best->off : ix[k].off < best->off))) {
            best = &ix[k];
        }
    }
    return best;
}

static void
forge(int what, unsigned char **b, size_t *n)
{
    struct mt_io_store_header *h[N_FILES];
    uint64_t iw = 0;

    for (int f = 0; f < N_FILES; f++) {
        h[f] = (struct mt_io_store_header *)b[f];
    }
    switch (what) {
    case F_VERSION: h[0]->version = 2; break;
    case F_INDEX_OFF: h[0]->index_off = 5120; break; /* still ends before data_off 8192 */
    case F_DATA_OFF_LOW: h[0]->data_off = 4096; break;
    case F_DATA_OFF_ODD: h[0]->data_off += 512; break;
    case F_TOO_LONG: memset(b[1] + n[1], 0, 4096); n[1] += 4096; break;
    case F_STORE_ID: h[1]->store_id ^= 1; break;
    case F_MAGIC: h[0]->magic[7] = '2'; break;
    case F_HEADER_BYTES: h[0]->header_bytes = 8192; break;
    case F_INDEX_BYTES: /* in both files, each index CRC taken over the shorter index */
        h[0]->index_bytes -= sizeof(struct mt_io_store_entry);
        h[1]->index_bytes = h[0]->index_bytes;
        break;
    case F_NO_LAYERS: /* consistent otherwise: no index, whose CRC is that of no bytes */
        h[0]->n_layers = h[1]->n_layers = 0;
        h[0]->index_bytes = h[1]->index_bytes = 0;
        break;
    case F_HUGE: /* the index size and data_off agree with the count: only the limit refuses it */
        h[0]->n_experts = (1u << 24) / N_LAYERS + 1;
        h[0]->index_bytes = (uint64_t)N_LAYERS * h[0]->n_experts * sizeof(struct mt_io_store_entry);
        h[0]->data_off = (h[0]->index_off + h[0]->index_bytes + 4095) / 4096 * 4096;
        break;
    case F_INDEX_CUT: n[0] = 4096 + 100; h[0]->file_bytes = n[0]; break; /* size matches header */
    case F_INDEX_FLIP: /* entry 0's CRC field, in both files: the files still agree */
        b[0][h[0]->index_off + 4] ^= 1;
        b[1][h[1]->index_off + 4] ^= 1;
        break;
    case F_SHAPE: h[1]->n_layers = 2 * N_LAYERS; h[1]->n_experts = N_EXPERTS / 2; break;
    default: break;
    }
    for (int f = 0; f < N_FILES && what >= F_ENTRY; f++) {
        struct mt_io_store_entry *ix = (struct mt_io_store_entry *)(b[f] + h[f]->index_off);
        /* the first extent where moving it must stay inside the file, else the last */
        struct mt_io_store_entry *e = extent_in_file0(ix, N_KEYS, what != E_OFF_ODD);
        int p = 0;

        while (p < MT_IO_N_PARTS - 1 && e->part_len[p + 1] > 0) {
            p++; /* the last present part */
        }
        switch (what) {
        case E_FILE: e->file = N_FILES; break;
        case E_FILE_HUGE: e->file = UINT32_MAX; break;
        case E_OFF_ODD: e->off += 512; break;
        case E_LEN_ODD: e->len -= 512; break;
        case E_OFF_LOW: e->off = 4096; break;
        case E_PAST_END: e->len += 4096; break;
        case E_PART_ODD: e->part_off[p] += 512; e->part_len[p] = 1; break;
        case E_PART_PAST: e->part_len[p] = e->len - e->part_off[p] + 1; break;
        case E_SHORT_FILE: e->len = 4096; e->file = N_FILES; break;
        case E_WRAP: e->off = UINT64_MAX - 4095; break; /* 4 KiB aligned; off + len wraps */
        case E_PART_BEYOND: e->part_off[p] = e->len + 4096; e->part_len[p] = 1; break;
        case E_LAST_KEY: ix[N_KEYS - 1].file = N_FILES; break;
        case E_PART_FULL: e->part_len[p] = e->len - e->part_off[p]; break;
        default: break;
        }
        iw = h[f]->index_bytes;
    }
    for (int f = 0; f < N_FILES; f++) {
        if (what >= F_ENTRY) {
            h[f]->index_crc = mt_crc32c(0, b[f] + h[f]->index_off, iw);
        }
        if (what == F_INDEX_BYTES || what == F_NO_LAYERS) {
            h[f]->index_crc = mt_crc32c(0, b[f] + h[f]->index_off, h[f]->index_bytes);
        }
        if (what == F_INDEX_CRC && f == 1) {
            h[f]->index_crc ^= 1;
        }
        h[f]->header_crc =
            mt_crc32c(0, h[f], offsetof(struct mt_io_store_header, header_crc)) +
            (what == F_HEADER_CRC && f == 0);
    }
}

/* Pack to out[] (two files), but first move out[1]'s name aside and put link in its place. */
static mt_status_t
pack_late_link(const char *const *out, uint64_t hash, const char *link)
{
    char aside[600];
    mt_status_t st;

    snprintf(aside, sizeof(aside), "%s.aside", link);
    /* the link exists now: create refuses a link to nothing, so hide it until the pack runs */
    if (rename(link, aside) != 0) {
        return MT_ERR_INTERNAL;
    }
    {
        uint64_t lens[N_KEYS * MT_IO_N_PARTS];
        struct mt_io_store_writer *w;

        part_lens(lens);
        st = mt_io_store_writer_create(out, N_FILES, hash, N_LAYERS, N_EXPERTS, lens, &w);
        if (st != MT_OK) {
            return st;
        }
        for (int k = N_EXPERTS; k < N_KEYS && st == MT_OK; k++) {
            const void *parts[MT_IO_N_PARTS];

            for (int p = 0; p < MT_IO_N_PARTS; p++) {
                const struct mt_io_extent *x = &descs[k].part[p];

                parts[p] = x->len > 0 ? file_data[x->file] + x->off : NULL;
            }
            st = mt_io_store_writer_put(w, k / N_EXPERTS, k % N_EXPERTS, parts);
        }
        if (rename(aside, link) != 0) {
            st = MT_ERR_INTERNAL;
        }
        if (st != MT_OK) {
            mt_io_store_writer_destroy(w);
            return st;
        }
        return mt_io_store_writer_finish(w);
    }
}

static void
test_store_forged(void)
{
    const uint64_t hash = 0x1234abcd5678ef00ull;
    char store[N_FILES][512];
    char other[N_FILES][512];
    const char *op[N_FILES];
    unsigned char *orig[N_FILES] = {NULL};
    size_t orig_n[N_FILES];
    struct mt_io_store *s = NULL;
    mt_status_t st;
    bool ok = true;

    for (int f = 0; f < N_FILES; f++) {
        snprintf(store[f], sizeof(store[f]), "%s/experts-%d.mts", dir, f);
        snprintf(other[f], sizeof(other[f]), "%s/forged-%d.mts", dir, f);
        op[f] = other[f];
        ok = ok && read_whole(store[f], &orig[f], &orig_n[f]);
    }
    if (!ok) {
        tap_ok(false, "read the packed store back");
        return;
    }
    {
        /* the writer reuses one extent buffer: the bytes between and after the parts must be
         * zeros, not the previous expert's (the CRC covers them; a pack is reproducible) */
        const struct mt_io_store_header *h = (const struct mt_io_store_header *)orig[0];
        const struct mt_io_store_entry *ix =
            (const struct mt_io_store_entry *)(orig[0] + h->index_off);
        size_t dirty = 0;

        for (int k = 0; k < N_KEYS; k++) {
            const unsigned char *x = orig[ix[k].file] + ix[k].off;

            for (uint64_t i = 0; ix[k].len > 0 && i < ix[k].len; i++) {
                bool in_part = false;

                for (int q = 0; q < MT_IO_N_PARTS; q++) {
                    in_part = in_part || (ix[k].part_len[q] > 0 && i >= ix[k].part_off[q] &&
                                          i - ix[k].part_off[q] < ix[k].part_len[q]);
                }
                dirty += !in_part && x[i] != 0;
            }
        }
        tap_ok(dirty == 0, "the padding of every extent is zeros (%zu bytes not)", dirty);
    }
    {
        /* io/store.h: the present experts, layer-major, are striped from file 0 on */
        const struct mt_io_store_header *h = (const struct mt_io_store_header *)orig[0];
        const struct mt_io_store_entry *ix =
            (const struct mt_io_store_entry *)(orig[0] + h->index_off);
        int present = 0;
        int misplaced = 0;

        for (int k = 0; k < N_KEYS; k++) {
            if (ix[k].len > 0) {
                misplaced += ix[k].file != (uint32_t)(present % N_FILES);
                present++;
            }
        }
        tap_ok(present > N_FILES && misplaced == 0,
               "present expert i lies in file i mod %d (%d of %d elsewhere)", N_FILES, misplaced,
               present);
    }
    /* the resealed but unchanged copy opens: the forging itself changes nothing */
    for (size_t c = 0; c <= sizeof(forged) / sizeof(forged[0]); c++) {
        int what = c == 0 ? -1 : forged[c - 1].what;
        unsigned char *b[N_FILES];
        size_t n[N_FILES];

        for (int f = 0; f < N_FILES; f++) {
            b[f] = malloc(orig_n[f] + 4096);
            memcpy(b[f], orig[f], orig_n[f]);
            n[f] = orig_n[f];
        }
        forge(what, b, n);
        for (int f = 0; f < N_FILES; f++) {
            write_file(other[f], b[f], n[f]);
            free(b[f]);
        }
        st = mt_io_store_open(op, N_FILES, hash, &s);
        if (c == 0) {
            tap_ok(st == MT_OK, "forged store, nothing changed: opens: %s",
                   st == MT_OK ? "ok" : mt_last_error());
        } else if (forged[c - 1].phrase == NULL) {
            tap_ok(st == MT_OK, "forged store, %s: opens: %s", forged[c - 1].name,
                   st == MT_OK ? "ok" : mt_last_error());
        } else {
            /* each message names the reason and what to do ("repack", or "give the files") */
            tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), forged[c - 1].phrase) != NULL &&
                       (strstr(mt_last_error(), "repack with moetier pack") != NULL ||
                        strstr(mt_last_error(), "make one with moetier pack") != NULL ||
                        strstr(mt_last_error(), "give the files") != NULL),
                   "forged store, %s: refused: %s", forged[c - 1].name,
                   st == MT_OK ? "opened" : mt_last_error());
        }
        mt_io_store_close(s);
        s = NULL;
    }
    /* writer misuse: each refused, and no store left under the final names */
    {
        uint64_t lens[N_KEYS * MT_IO_N_PARTS];
        uint64_t none[N_KEYS * MT_IO_N_PARTS] = {0};
        struct mt_io_store_writer *w = NULL;
        const void *parts[MT_IO_N_PARTS] = {NULL};
        char clash[600];
        const char *cp[2] = {other[0], clash};

        part_lens(lens);
        unlink(other[0]);
        unlink(other[1]);
        snprintf(clash, sizeof(clash), "%s.partial", other[0]);
        st = mt_io_store_writer_create(cp, 2, hash, N_LAYERS, N_EXPERTS, lens, &w);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "is the name") != NULL,
               "writer: a file named like another's .partial is refused: %s", mt_last_error());
        st = mt_io_store_writer_create(op, N_FILES, hash, N_LAYERS, N_EXPERTS, none, &w);
        tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "no routed expert") != NULL,
               "writer: a store with no expert is refused: %s", mt_last_error());
        {
            /* only "<name>.partial" clashes: a name that merely extends another is fine */
            char longer[600];
            const char *lp[2] = {other[0], longer};

            snprintf(longer, sizeof(longer), "%s1", other[0]);
            st = mt_io_store_writer_create(lp, 2, hash, N_LAYERS, N_EXPERTS, lens, &w);
            tap_ok(st == MT_OK, "writer: files named X and X1 are accepted: %s",
                   st == MT_OK ? "ok" : mt_last_error());
            if (st == MT_OK) {
                mt_io_store_writer_destroy(w);
            }
        }
        {
            /* io/store.h: a name that is a directory, or a link to one, is refused before
             * anything is created (rename would fail only at the very end) */
            char dlink[600];
            const char *dp[2] = {dir, other[1]};
            const char *lp[2] = {dlink, other[1]};
            mt_status_t st0;
            bool msg0;

            st0 = mt_io_store_writer_create(dp, 2, hash, N_LAYERS, N_EXPERTS, lens, &w);
            msg0 = strstr(mt_last_error(), "is a directory, not a regular file") != NULL;
            if (st0 == MT_OK) {
                mt_io_store_writer_destroy(w);
            }
            snprintf(dlink, sizeof(dlink), "%s.dirlink", other[0]);
            unlink(dlink);
            if (symlink(dir, dlink) == 0) {
                st = mt_io_store_writer_create(lp, 2, hash, N_LAYERS, N_EXPERTS, lens, &w);
                tap_ok(st0 == MT_ERR_INVAL && msg0 && st == MT_ERR_INVAL &&
                           strstr(mt_last_error(), "symbolic link to a directory") != NULL,
                       "writer: a directory, or a link to one, is refused as a store name: %s",
                       mt_last_error());
                if (st == MT_OK) {
                    mt_io_store_writer_destroy(w);
                }
                unlink(dlink);
            } else {
                tap_ok(false, "symlink %s", dlink);
            }
        }
        {
            /* io/store.c: "a store needs 1..N files and at least one expert", checked first */
            mt_status_t st0 = mt_io_store_writer_create(op, N_FILES, hash, 0, N_EXPERTS, lens, &w);
            const bool msg0 = strstr(mt_last_error(), "at least one expert") != NULL;
            mt_status_t st1 = mt_io_store_writer_create(op, N_FILES, hash, -1, N_EXPERTS, lens, &w);

            tap_ok(st0 == MT_ERR_INVAL && msg0 && st1 == MT_ERR_INVAL &&
                       strstr(mt_last_error(), "at least one expert") != NULL,
                   "writer: 0 or -1 layers are refused as such: %s", mt_last_error());
        }
        {
            /* space is reserved up front (io/store.h), so no room fails create, not a later
             * put: a file size limit below the store makes posix_fallocate fail with EFBIG */
            struct rlimit old;
            struct rlimit small;
            char partial[600];

            getrlimit(RLIMIT_FSIZE, &old);
            small = old;
            small.rlim_cur = 64 << 10;
            signal(SIGXFSZ, SIG_IGN);
            setrlimit(RLIMIT_FSIZE, &small);
            mt_log_set_quiet(true);
            st = mt_io_store_writer_create(op, N_FILES, hash, N_LAYERS, N_EXPERTS, lens, &w);
            mt_log_set_quiet(false);
            setrlimit(RLIMIT_FSIZE, &old);
            signal(SIGXFSZ, SIG_DFL);
            snprintf(partial, sizeof(partial), "%s.partial", other[0]);
            tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "cannot reserve") != NULL &&
                       access(partial, F_OK) != 0,
                   "writer: no room for the store fails create, leaving no .partial: %s",
                   st == MT_OK ? "created" : mt_last_error());
            if (st == MT_OK) {
                mt_io_store_writer_destroy(w);
            }
        }
        st = mt_io_store_writer_create(op, N_FILES, hash, N_LAYERS, N_EXPERTS, lens, &w);
        if (st == MT_OK) {
            /* layer 0 holds no routed expert; layer N_LAYERS does not exist */
            tap_ok(mt_io_store_writer_put(w, 0, 1, parts) == MT_ERR_INVAL &&
                       mt_io_store_writer_put(w, N_LAYERS, 1, parts) == MT_ERR_INVAL &&
                       mt_io_store_writer_put(w, 1, N_EXPERTS, parts) == MT_ERR_INVAL &&
                       strstr(mt_last_error(), "no slot") != NULL,
                   "writer: put for an absent expert or past the last layer/expert is refused");
            st = mt_io_store_writer_finish(w);
            tap_ok(st == MT_ERR_INVAL && strstr(mt_last_error(), "incomplete") != NULL &&
                       access(other[0], F_OK) != 0 && access(clash, F_OK) != 0,
                   "writer: finish before every expert is put fails, leaving no file: %s",
                   mt_last_error());
        } else {
            tap_ok(false, "writer for the misuse checks: %s", mt_last_error());
            tap_ok(false, "writer: finish before every expert is put");
        }
    }
    /* io/store.h: a symbolic link to a regular file is followed (the file it names becomes the
     * store, the link stays); a "<path>.partial" that is a symbolic link is refused, left alone */
    {
        char target[600];
        char partial[600];
        char tgt[600] = "";
        struct stat sb;
        const char *tp[N_FILES] = {target, other[1]};
        bool ok;

        unlink(other[0]);
        unlink(other[1]);
        snprintf(target, sizeof(target), "%s.target", other[0]);
        write_file(target, "old", 3);
        ok = symlink(target, other[0]) == 0;
        st = ok ? pack(op, N_FILES, hash, -1) : MT_ERR_INTERNAL;
        ok = ok && st == MT_OK && lstat(other[0], &sb) == 0 && S_ISLNK(sb.st_mode) &&
             readlink(other[0], tgt, sizeof(tgt) - 1) == (ssize_t)strlen(target) &&
             strcmp(tgt, target) == 0 && mt_io_store_open(tp, N_FILES, hash, &s) == MT_OK;
        tap_ok(ok, "writer: a name that is a link to a regular file: the file becomes the store, "
                   "the link stays: %s", st == MT_OK ? "ok" : mt_last_error());
        mt_io_store_close(s);
        s = NULL;
        unlink(other[0]);
        unlink(other[1]);
        unlink(target);
        snprintf(partial, sizeof(partial), "%s.partial", other[0]);
        ok = symlink("/nonexistent-moetier-partial", partial) == 0;
        {
            uint64_t lens[N_KEYS * MT_IO_N_PARTS];
            struct mt_io_store_writer *w = NULL;

            part_lens(lens);
            st = mt_io_store_writer_create(op, N_FILES, hash, N_LAYERS, N_EXPERTS, lens, &w);
            if (st == MT_OK) {
                mt_io_store_writer_destroy(w);
            }
        }
        tap_ok(ok && st == MT_ERR_INVAL && strstr(mt_last_error(), "not replacing it") != NULL &&
                   lstat(partial, &sb) == 0 && S_ISLNK(sb.st_mode),
               "writer: a .partial that is a symbolic link is refused and left alone: %s",
               st == MT_OK ? "created" : mt_last_error());
        unlink(partial);
    }
    /* the final name turned into a symbolic link during the pack: not replaced */
    unlink(other[0]);
    unlink(other[1]);
    if (symlink("/nonexistent-moetier-target", other[1]) == 0) {
        mt_log_set_quiet(true);
        st = pack_late_link(op, hash, other[1]);
        mt_log_set_quiet(false);
        {
            char tgt[64] = "";
            ssize_t tn = readlink(other[1], tgt, sizeof(tgt) - 1);

            tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "became a symbolic link") != NULL &&
                       tn > 0 && strncmp(tgt, "/nonexistent-moetier-target", (size_t)tn) == 0,
                   "writer: a name that became a symbolic link mid-pack is not replaced: %s",
                   mt_last_error());
        }
    } else {
        tap_ok(false, "symlink %s", other[1]);
    }
    /* a file too short to hold a header, whatever its first bytes */
    write_file(other[0], "MTSTORE1", 8);
    st = mt_io_store_open(op, N_FILES, hash, &s);
    tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "too short for a header") != NULL,
           "an 8-byte file is refused as too short for a header: %s", mt_last_error());
    /* a FIFO is refused at once for what it is (io/store.c: an open would block on it) */
    unlink(other[0]);
    if (mkfifo(other[0], 0600) == 0) {
        st = mt_io_store_open(op, N_FILES, hash, &s);
        tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "is a FIFO (named pipe), not a regular "
                                                          "file") != NULL,
               "a FIFO given as a store file is refused as not a regular file: %s",
               st == MT_OK ? "opened" : mt_last_error());
        mt_io_store_close(st == MT_OK ? s : NULL);
    } else {
        tap_ok(false, "mkfifo %s", other[0]);
    }
    for (int f = 0; f < N_FILES; f++) {
        free(orig[f]);
        unlink(other[f]);
    }
}

/* ---- the cache under threads ---------------------------------------------------------------- */

struct hammer {
    struct mt_io_source *src;
    unsigned seed;
    int bad;
    int acquires;
};

static void *
hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct mt_rng rng;

    mt_rng_init(&rng, h->seed);
    for (int it = 0; it < 150; it++) {
        int layer = 1 + (int)(mt_rng_next(&rng) % (N_LAYERS - 1));
        int ex[3];
        int a = (int)(mt_rng_next(&rng) % N_EXPERTS);
        struct mt_io_expert_view v;

        for (int i = 0; i < 3; i++) {
            ex[i] = (int)(mt_rng_next(&rng) % N_EXPERTS);
        }
        mt_io_source_prefetch(h->src, layer, ex, 3);
        if (mt_io_source_acquire(h->src, layer, a, &v) != MT_OK) {
            h->bad++;
            continue;
        }
        h->acquires++;
        if (it % 7 == 0) {
            usleep(200); /* hold it while others evict around it */
        }
        h->bad += !view_matches(layer * N_EXPERTS + a, &v);
        mt_io_source_release(h->src, layer, a);
    }
    return NULL;
}

static void
test_cache_threads(void)
{
    struct mt_io_source_options o = small_opts(MT_IO_QUEUE_URING_FIXED, 6);
    struct mt_io_source_stats s;
    struct mt_io_source *src;
    struct hammer h[4];
    pthread_t tid[4];
    int bad = 0;
    int acquires = 0;
    mt_status_t st;

    if (!tap_ok(mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) ==
                    MT_OK,
                "6-slot source for the thread test opens")) {
        return;
    }
    tap_ok(mt_io_source_pin(src, 1, 0, true) == MT_OK && mt_io_source_pin(src, 2, 1, true) ==
               MT_OK,
           "two experts pinned (the plan's resident set)");
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){.src = src, .seed = 100u + (unsigned)i};
        pthread_create(&tid[i], NULL, hammer_main, &h[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        bad += h[i].bad;
        acquires += h[i].acquires;
    }
    mt_io_source_stats(src, &s);
    tap_ok(bad == 0 && acquires == 600,
           "4 threads x 150 random prefetch+acquire+release: every expert held is intact");
    tap_ok(s.peak_used_bytes <= s.budget_bytes &&
               (uint64_t)s.n_slots * s.slot_bytes <= s.budget_bytes,
           "the cache never held more than its budget (peak %llu of %llu bytes, %u slots)",
           (unsigned long long)s.peak_used_bytes, (unsigned long long)s.budget_bytes, s.n_slots);
    tap_ok(s.hits + s.late_hits + s.misses == 600 && s.prefetches > 0 && s.evictions > 0,
           "counters add up: %llu hits, %llu late hits, %llu misses, %llu prefetches, %llu "
           "evictions",
           (unsigned long long)s.hits, (unsigned long long)s.late_hits,
           (unsigned long long)s.misses, (unsigned long long)s.prefetches,
           (unsigned long long)s.evictions);
    mt_io_source_stats_reset(src);
    {
        struct mt_io_expert_view v;

        /* a hit: found loaded, no read of its own. (Not bytes_read == 0: the threads' last
           prefetches may still complete on the I/O thread after the reset, as under ASan.) */
        st = mt_io_source_acquire(src, 1, 0, &v);
        mt_io_source_stats(src, &s);
        tap_ok(st == MT_OK && s.hits == 1 && s.late_hits == 0 && s.misses == 0,
               "a pinned expert survived the storm: acquired without a read (%llu hits, %llu "
               "late, %llu misses)",
               (unsigned long long)s.hits, (unsigned long long)s.late_hits,
               (unsigned long long)s.misses);
        /* reset: the peak starts again from the slots in use now (all 6, after the storm) */
        tap_ok(s.peak_used_bytes == (uint64_t)s.n_slots * s.slot_bytes,
               "after a stats reset the peak is the slots in use (%llu bytes, %u slots)",
               (unsigned long long)s.peak_used_bytes, s.n_slots);
        if (st == MT_OK) {
            mt_io_source_release(src, 1, 0);
        }
    }
    mt_io_source_pin(src, 1, 2, true);
    mt_io_source_pin(src, 1, 3, true);
    mt_log_set_quiet(true);
    st = mt_io_source_pin(src, 1, 4, true);
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_NOMEM, "pinning beyond the budget is refused: %s", mt_last_error());
    mt_io_source_destroy(src);
}

static void
test_policy_and_crc(void)
{
    struct mt_cache_policy p;
    int keys[3] = {0, 1, 2};
    bool ev[3] = {true, true, true};

    tap_ok(mt_crc32c(0, "123456789", 9) == 0xe3069283u &&
               mt_crc32c(mt_crc32c(0, "1234", 4), "56789", 5) == 0xe3069283u,
           "CRC32C of \"123456789\" is e3069283, also in two pieces");
    if (mt_cache_policy_init(&p, 3, 8.0) != MT_OK) {
        tap_ok(false, "policy init");
        return;
    }
    for (int i = 0; i < 10; i++) {
        mt_cache_policy_touch(&p, 0);
    }
    mt_cache_policy_touch(&p, 2);
    mt_cache_policy_touch(&p, 1);
    tap_ok(mt_cache_policy_victim(&p, keys, ev, 3) == 2,
           "a recently used but rare expert goes before a frequent one");
    for (int i = 0; i < 100; i++) {
        mt_cache_policy_touch(&p, i % 2 == 0 ? 1 : 2);
    }
    tap_ok(mt_cache_policy_victim(&p, keys, ev, 3) == 0,
           "a frequent expert no longer used decays and goes");
    mt_cache_policy_pin(&p, 0, true);
    ev[1] = false;
    tap_ok(mt_cache_policy_victim(&p, keys, ev, 3) == 2, "pinned and busy slots are never chosen");
    keys[1] = -1;
    ev[1] = true;
    tap_ok(mt_cache_policy_victim(&p, keys, ev, 3) == 1, "an empty slot is taken first");
    keys[1] = 1;
    mt_cache_policy_pin(&p, 0, false);
    bool unpinned = !mt_cache_policy_is_pinned(&p, 0);
    mt_cache_policy_pin(&p, 2, true);
    tap_ok(unpinned && mt_cache_policy_is_pinned(&p, 2) && !mt_cache_policy_is_pinned(&p, 1) &&
               mt_cache_policy_victim(&p, keys, ev, 3) == 0,
           "is_pinned follows pin; an unpinned key can be chosen again");
    mt_cache_policy_fini(&p);

    /* a tie goes to the first slot: three keys never used score 0 each, in any slot order */
    if (mt_cache_policy_init(&p, 3, 8.0) == MT_OK) {
        int rev[3] = {2, 1, 0};

        tap_ok(mt_cache_policy_victim(&p, keys, ev, 3) == 0 &&
                   mt_cache_policy_victim(&p, rev, ev, 3) == 0 &&
                   mt_cache_policy_victim(&p, rev + 1, ev + 1, 2) == 0,
               "equal scores: the first evictable slot goes");
        mt_cache_policy_fini(&p);
    }

    /*
     * The score: +1 per activation, halved every half_life activations of the whole cache. Key 0
     * fires at ticks 0 and 4, key 1 at ticks 1, 2 and 3; read at tick 5 (half_life 4), whatever
     * the decay of the read itself: score(0) / score(1) = (2^-5/4 + 2^-1/4) / (2^-4/4 + 2^-3/4 +
     * 2^-2/4). With a half life past any count, nothing decays: 3 activations score 3.
     */
    bool ok = mt_cache_policy_init(&p, 3, 4.0) == MT_OK;
    if (ok) {
        static const unsigned order[5] = {0, 1, 1, 1, 0};
        for (int i = 0; i < 5; i++) {
            mt_cache_policy_touch(&p, order[i]);
        }
        double want = (exp2(-5 / 4.0) + exp2(-1 / 4.0)) / (exp2(-1.0) + exp2(-0.75) + exp2(-0.5));
        double got = mt_cache_policy_score(&p, 0) / mt_cache_policy_score(&p, 1);
        ok = fabs(got - want) < 1e-12 && mt_cache_policy_score(&p, 2) == 0.0;
        if (!ok) {
            tap_diag("score ratio %.15g, want %.15g", got, want);
        }
        mt_cache_policy_fini(&p);
    }
    ok = ok && mt_cache_policy_init(&p, 2, 1e300) == MT_OK;
    if (ok) {
        for (int i = 0; i < 3; i++) {
            mt_cache_policy_touch(&p, 1);
        }
        ok = mt_cache_policy_score(&p, 1) == 3.0 && mt_cache_policy_score(&p, 0) == 0.0;
        mt_cache_policy_fini(&p);
    }
    tap_ok(ok, "a score adds 1 per activation and halves every half_life activations");

    mt_log_set_quiet(true);
    tap_ok(mt_cache_policy_init(&p, 0, 4.0) == MT_ERR_INVAL &&
               mt_cache_policy_init(&p, 3, 0.0) == MT_ERR_INVAL &&
               mt_cache_policy_init(&p, 3, -1.0) == MT_ERR_INVAL &&
               mt_cache_policy_init(&p, 3, NAN) == MT_ERR_INVAL,
           "init refuses 0 keys and a half life of 0, below 0 or NaN");
    mt_log_set_quiet(false);
}

int
main(void)
{
    tap_plan(0);
    dir = tap_tmpdir();
    if (dir == NULL || !make_checkpoint()) {
        printf("Bail out! cannot write the test checkpoint under $TMPDIR\n");
        return 1;
    }
    test_policy_and_crc();
    {
        struct mt_io_source_options o = {.cache_bytes = 64u << 20};
        struct mt_io_source *src;

        if (mt_io_source_create(path_ptrs, N_FILES, N_LAYERS, N_EXPERTS, descs, &o, &src) !=
            MT_OK) {
            printf("Bail out! cannot open the test checkpoint: %s\n", mt_last_error());
            return 1;
        }
        slot_bytes = mt_io_source_slot_bytes(src);
        mt_io_source_destroy(src);
    }
    test_modes();
    test_sizing();
    test_pin_rules();
    test_wait_not_counted();
    test_frequency_kept();
    test_fault_env();
    test_faults();
    test_broken_wait();
    test_cut_after_open();
    test_prefetch_kept();
    test_counters();
    test_failed_read_stops();
    test_store();
    test_store_forged();
    test_cache_threads();
    for (int f = 0; f < N_FILES; f++) {
        free(file_data[f]);
    }
    tap_rmtree(dir);
    return tap_done();
}
