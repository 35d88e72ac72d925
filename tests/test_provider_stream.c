/* SPDX-License-Identifier: MIT */
/*
 * test_provider_stream.c - the streaming expert provider hands out exactly the checkpoint's
 * bytes: every routed expert of FP8 and BF16 `synth --preset tiny` checkpoints, read from the
 * shards and from a two-file store written by `moetier pack`, compared with the safetensors
 * reader's pread of each tensor; dtype and shape of each weight as the model says; a store packed
 * from another model (another shape, or the same shape with other weights), one whose index cuts
 * a part short or makes the last part longer, and one of another expert count, are refused; the
 * extents it describes; a prefetch starts the reads it names; its capacity is its slots.
 */
#include <config.h>

#include "io/expert_source.h"
#include "io/store.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/model/model.h"
#include "runtime/model/safetensors.h"
#include "runtime/synth/synth.h"
#include "tests/tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Does w hold tensor t's bytes (and scale s's), with t's dtype and shape? */
static bool
weight_matches(const struct mt_model *m, const struct mt_cpu_weight *w, const struct mt_weight *mw)
{
    bool ok;
    void *buf = malloc(mw->w->nbytes);

    ok = buf != NULL && mt_st_set_read(m->set, mw->w, buf, mw->w->nbytes) == MT_OK &&
         w->dtype == mw->w->dtype && w->rows == mw->w->shape[0] && w->cols == mw->w->shape[1] &&
         memcmp(buf, w->data, mw->w->nbytes) == 0;
    free(buf);
    if (mw->scale == NULL) {
        return ok && w->scale == NULL;
    }
    buf = malloc(mw->scale->nbytes);
    ok = ok && buf != NULL && w->scale != NULL &&
         mt_st_set_read(m->set, mw->scale, buf, mw->scale->nbytes) == MT_OK &&
         memcmp(buf, w->scale, mw->scale->nbytes) == 0;
    free(buf);
    return ok;
}

/* Acquire every routed expert (twice over a small cache), compare. Returns mismatches+errors. */
static int
check_provider(const struct mt_model *m, struct mt_expert_provider *p, int *n_out)
{
    int bad = 0;

    *n_out = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            if (!m->layers[l].is_moe) {
                continue;
            }
            for (int e = 0; e < m->cfg.n_routed_experts; e++) {
                const struct mt_expert_weights *x = &m->layers[l].experts[e];
                struct mt_expert ex;

                if (p->ops->acquire(p->self, l, e, &ex) != MT_OK) {
                    bad++;
                    continue;
                }
                bad += !weight_matches(m, &ex.gate, &x->gate) + !weight_matches(m, &ex.up, &x->up) +
                       !weight_matches(m, &ex.down, &x->down);
                p->ops->release(p->self, l, e);
                (*n_out)++;
            }
        }
    }
    return bad;
}

/* The files this process has open now (-1 when /proc cannot say). */
static int
open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

/*
 * A store of this model (its hash, CRCs right) whose index gives one part a length other than
 * its tensor's: refused when the provider opens, before any read (the kernels would read rows x
 * cols bytes from the part). With longer false, the first down part > 16 bytes is cut to 16;
 * with longer true, the last part of the index (the last expert of the last layer, its last
 * part that has bytes) is given 16 bytes more: every part is checked, both ways.
 */
static void
check_bad_part(const struct mt_model *m, const char *tmp, const char *name,
               const struct mt_io_source_options *io, bool longer)
{
    const size_t n_keys = (size_t)m->cfg.num_hidden_layers * m->cfg.n_routed_experts;
    struct mt_io_expert_desc *descs = NULL;
    const char **paths = NULL;
    int n_files = 0;
    uint64_t hash = 0;
    uint64_t *lens = calloc(n_keys * MT_IO_N_PARTS, sizeof(*lens));
    uint64_t biggest = 0;
    size_t victim = SIZE_MAX;
    struct mt_io_store_writer *w = NULL;
    struct mt_expert_provider *p;
    char path[600];
    const char *out[1] = {path};
    void *data = NULL;
    mt_status_t st;

    snprintf(path, sizeof(path), "%s/%s-%s.mts", tmp, name, longer ? "long" : "short");
    st = lens == NULL ? MT_ERR_NOMEM : mt_stream_describe(m, &descs, &paths, &n_files);
    if (st == MT_OK) {
        st = mt_stream_model_hash(m, &hash);
    }
    for (size_t i = 0; st == MT_OK && i < n_keys * MT_IO_N_PARTS; i++) {
        lens[i] = descs[i / MT_IO_N_PARTS].part[i % MT_IO_N_PARTS].len;
        biggest = lens[i] > biggest ? lens[i] : biggest;
        if (longer ? lens[i] > 0
                   : victim == SIZE_MAX && i % MT_IO_N_PARTS == MT_IO_PART_DOWN && lens[i] > 16) {
            victim = i;
        }
    }
    if (st == MT_OK && victim != SIZE_MAX && (data = calloc(1, biggest + 16)) != NULL) {
        lens[victim] = longer ? lens[victim] + 16 : 16;
        st = mt_io_store_writer_create(out, 1, hash, m->cfg.num_hidden_layers,
                                       m->cfg.n_routed_experts, lens, &w);
        for (size_t k = 0; st == MT_OK && k < n_keys; k++) {
            const void *parts[MT_IO_N_PARTS];
            bool any = false;

            for (int q = 0; q < MT_IO_N_PARTS; q++) {
                parts[q] = lens[k * MT_IO_N_PARTS + q] > 0 ? data : NULL;
                any = any || parts[q] != NULL;
            }
            if (any) {
                st = mt_io_store_writer_put(w, (int)(k / m->cfg.n_routed_experts),
                                            (int)(k % m->cfg.n_routed_experts), parts);
            }
        }
        if (st == MT_OK) {
            st = mt_io_store_writer_finish(w);
        } else {
            mt_io_store_writer_destroy(w);
        }
    } else if (st == MT_OK) {
        st = MT_ERR_NOMEM;
    }
    if (tap_ok(st == MT_OK, "%s: a store with one part %s is written", name,
               longer ? "16 bytes longer (the index's last)" : "cut to 16 bytes")) {
        char want[128];

        /* the message names the victim: layer, expert, part and the length the index gives */
        snprintf(want, sizeof(want), "layer %d expert %d part %d holds %llu bytes",
                 (int)(victim / MT_IO_N_PARTS / m->cfg.n_routed_experts),
                 (int)(victim / MT_IO_N_PARTS % m->cfg.n_routed_experts),
                 (int)(victim % MT_IO_N_PARTS), (unsigned long long)lens[victim]);
        int fds = open_fds();

        mt_log_set_quiet(true);
        st = mt_expert_provider_stream_create(m, io, out, 1, &p);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), want) != NULL,
               "%s: it is refused before any read: %s", name, mt_last_error());
        /* the source it opened to check the parts is closed again: nothing leaked */
        tap_ok(fds >= 0 && open_fds() == fds,
               "%s: the refused store leaves no file open (%d open before, %d after)", name, fds,
               open_fds());
        if (st == MT_OK) {
            mt_expert_provider_destroy(p);
        }
    }
    free(data);
    free(descs);
    free(paths);
    free(lens);
}

/* Is e the extent of tensor t in the model's table ({0} when there is no tensor)? */
static bool
extent_is(const struct mt_io_extent *e, const struct mt_st_tensor *t)
{
    if (t == NULL) {
        return e->file == 0 && e->off == 0 && e->len == 0;
    }
    return e->file == t->file && e->off == t->offset && e->len == t->nbytes;
}

/*
 * mt_stream_describe (provider_stream.h): each routed expert as six extents, gate, gate scale,
 * up, up scale, down, down scale, from the safetensors table; dense layers all zero; the shard
 * paths. Checked against the table itself: the byte comparison of check_provider cannot tell a
 * gate scale from an up scale where the two hold the same values (synth's power-of-two scales of
 * a one-block expert often do).
 */
static void
check_describe(const struct mt_model *m, const char *name)
{
    struct mt_io_expert_desc *descs = NULL;
    const char **paths = NULL;
    int n_files = 0;
    int wrong = 0;
    int n_moe = 0;
    int E = m->cfg.n_routed_experts;

    if (!tap_ok(mt_stream_describe(m, &descs, &paths, &n_files) == MT_OK, "%s: describe", name)) {
        return;
    }
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        n_moe += m->layers[l].is_moe;
        for (int e = 0; e < E; e++) {
            const struct mt_io_expert_desc *d = &descs[(size_t)l * E + e];
            const struct mt_expert_weights *x = m->layers[l].is_moe ? &m->layers[l].experts[e]
                                                                    : NULL;

            if (x == NULL) {
                for (int p = 0; p < MT_IO_N_PARTS; p++) {
                    wrong += !extent_is(&d->part[p], NULL);
                }
                continue;
            }
            wrong += !extent_is(&d->part[MT_IO_PART_GATE], x->gate.w) +
                     !extent_is(&d->part[MT_IO_PART_GATE_SCALE], x->gate.scale) +
                     !extent_is(&d->part[MT_IO_PART_UP], x->up.w) +
                     !extent_is(&d->part[MT_IO_PART_UP_SCALE], x->up.scale) +
                     !extent_is(&d->part[MT_IO_PART_DOWN], x->down.w) +
                     !extent_is(&d->part[MT_IO_PART_DOWN_SCALE], x->down.scale);
        }
    }
    bool paths_ok = n_files == mt_st_set_file_count(m->set);
    for (int f = 0; paths_ok && f < n_files; f++) {
        paths_ok = strcmp(paths[f], mt_st_set_file_path(m->set, f)) == 0;
    }
    tap_ok(wrong == 0 && n_moe > 0 && n_moe < m->cfg.num_hidden_layers && paths_ok,
           "%s: describe gives each expert's six extents from the tensor table, dense layers "
           "zero, the %d shard paths (%d extents wrong)", name, n_files, wrong);
    free(descs);
    free(paths);
}

/*
 * A store with the model's hash but one expert a layer fewer, or one layer fewer (an index
 * edited, or a packer bug): refused when the provider opens, naming both shapes.
 */
static void
check_other_dims(const struct mt_model *m, const char *tmp, const char *name,
                 const struct mt_io_source_options *io, int fewer_layers, int fewer_experts)
{
    int L = m->cfg.num_hidden_layers - fewer_layers;
    int E = m->cfg.n_routed_experts - fewer_experts;
    uint64_t *lens = calloc((size_t)L * E * MT_IO_N_PARTS, sizeof(*lens));
    struct mt_io_store_writer *w = NULL;
    struct mt_expert_provider *p;
    uint64_t hash = 0;
    char path[600];
    const char *out[1] = {path};
    char want[128];
    mt_status_t st;

    snprintf(path, sizeof(path), "%s/%s-dims-%d-%d.mts", tmp, name, L, E);
    st = lens == NULL ? MT_ERR_NOMEM : mt_stream_model_hash(m, &hash);
    if (st == MT_OK) {
        /* one expert of 16 bytes: a store holds at least one */
        static const char bytes[16];
        const void *parts[MT_IO_N_PARTS] = {bytes};

        lens[0] = sizeof(bytes);
        st = mt_io_store_writer_create(out, 1, hash, L, E, lens, &w);
        if (st == MT_OK && (st = mt_io_store_writer_put(w, 0, 0, parts)) != MT_OK) {
            mt_io_store_writer_destroy(w);
        }
    }
    if (st == MT_OK) {
        st = mt_io_store_writer_finish(w);
    }
    if (tap_ok(st == MT_OK, "%s: a store of %d x %d experts with the model's hash is written",
               name, L, E)) {
        snprintf(want, sizeof(want), "holds %d layers x %d experts, the model %d x %d", L, E,
                 m->cfg.num_hidden_layers, m->cfg.n_routed_experts);
        mt_log_set_quiet(true);
        st = mt_expert_provider_stream_create(m, io, out, 1, &p);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), want) != NULL,
               "%s: it is refused: %s", name, mt_last_error());
        if (st == MT_OK) {
            mt_expert_provider_destroy(p);
        }
    }
    free(lens);
}

/*
 * A prefetch starts the reads of the experts it names (io stats: reads started by prefetch),
 * and their acquires then find them read or on their way; the capacity is the source's slots.
 */
static void
check_prefetch(const struct mt_model *m, struct mt_expert_provider *p, const char *name)
{
    struct mt_io_source *src = mt_expert_provider_stream_source(p);
    struct mt_io_source_stats s;
    int l = 0;
    int ids[2] = {0, 1};
    int got = 0;

    while (l < m->cfg.num_hidden_layers && !m->layers[l].is_moe) {
        l++;
    }
    mt_io_source_stats(src, &s);
    tap_ok(s.n_slots > 0 && mt_expert_provider_capacity(p) == (int)s.n_slots,
           "%s: the streaming provider's capacity is its %u slots (%d)", name, s.n_slots,
           mt_expert_provider_capacity(p));
    mt_io_source_stats_reset(src);
    p->ops->prefetch(p->self, l, ids, 2);
    for (int i = 0; i < 2; i++) {
        struct mt_expert x;

        if (p->ops->acquire(p->self, l, ids[i], &x) == MT_OK) {
            got++;
            p->ops->release(p->self, l, ids[i]);
        }
    }
    mt_io_source_stats(src, &s);
    tap_ok(got == 2 && s.prefetches == 2 && s.misses == 0 && s.hits + s.late_hits == 2,
           "%s: a prefetch of 2 experts starts both reads, and their acquires find them (%llu "
           "prefetches, %llu misses)", name, (unsigned long long)s.prefetches,
           (unsigned long long)s.misses);
}

/*
 * The weights an acquire hands out point at the io/ source's parts of that expert, each at its
 * own: the byte comparison of check_provider cannot tell a gate scale from an up scale where the
 * two hold the same values (see check_describe), a pointer can.
 */
static void
check_views(const struct mt_model *m, struct mt_expert_provider *p, const char *name)
{
    struct mt_io_source *src = mt_expert_provider_stream_source(p);
    struct mt_io_expert_view v;
    struct mt_expert x;
    int l = 0;
    int e = m->cfg.n_routed_experts - 1;

    while (l < m->cfg.num_hidden_layers && !m->layers[l].is_moe) {
        l++;
    }
    if (!tap_ok(p->ops->acquire(p->self, l, e, &x) == MT_OK &&
                    mt_io_source_acquire(src, l, e, &v) == MT_OK,
                "%s: layer %d expert %d acquired through the provider and the source", name, l,
                e)) {
        return;
    }
    tap_ok(x.gate.data == v.part[MT_IO_PART_GATE] &&
               x.gate.scale == v.part[MT_IO_PART_GATE_SCALE] &&
               x.up.data == v.part[MT_IO_PART_UP] && x.up.scale == v.part[MT_IO_PART_UP_SCALE] &&
               x.down.data == v.part[MT_IO_PART_DOWN] &&
               x.down.scale == v.part[MT_IO_PART_DOWN_SCALE],
           "%s: gate, up, down and their scales are the source's six parts (gate scale %p, the "
           "source's %p; up scale %p, the source's %p)", name, (const void *)x.gate.scale,
           v.part[MT_IO_PART_GATE_SCALE], (const void *)x.up.scale, v.part[MT_IO_PART_UP_SCALE]);
    /* its bytes are the source's slots: the checkpoint provider's count answers 0 for it, even
     * with an expert held (the guard of mt_expert_provider_checkpoint_bytes) */
    tap_ok(mt_expert_provider_checkpoint_bytes(p) == 0,
           "%s: a streaming provider holds no checkpoint provider bytes (%llu)", name,
           (unsigned long long)mt_expert_provider_checkpoint_bytes(p));
    mt_io_source_release(src, l, e);
    p->ops->release(p->self, l, e);
}

/* Read one byte of file path at off, flip it with x, write it back. */
static bool
flip_byte(const char *path, uint64_t off, unsigned char x)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    bool ok = fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1;

    b ^= x;
    ok = ok && pwrite(fd, &b, 1, (off_t)off) == 1;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/*
 * mt_stream_model_hash on a second copy of the checkpoint (the same seed, so the same bytes): the
 * same hash as the first; one byte of the last MoE layer's last expert's gate changed gives
 * another (every expert of the tiny model is among the sampled ones, the last one too); that byte
 * put back gives the first hash again; config.json's bytes count (one more newline: another
 * hash); a shard cut short after the model opened is an I/O error, not a hash of what could be
 * read.
 */
static void
check_hash(const char *tmp, const char *name, struct mt_synth_options so, uint64_t want)
{
    char dir[600];
    char cfg[700];
    struct mt_model *m;
    uint64_t h[4] = {0, 0, 0, 0};
    int l;

    snprintf(dir, sizeof(dir), "%s/%s-copy", tmp, name);
    so.out_dir = dir;
    if (!tap_ok(mt_synth_write(&so, NULL) == MT_OK && mt_model_open(dir, &m) == MT_OK,
                "%s: a second copy of the checkpoint opens", name)) {
        return;
    }
    for (l = m->cfg.num_hidden_layers - 1; l > 0 && !m->layers[l].is_moe; l--) {
    }
    const struct mt_st_tensor *t = m->layers[l].experts[m->cfg.n_routed_experts - 1].gate.w;
    const char *shard = mt_st_set_file_path(m->set, t->file);
    bool ok = mt_stream_model_hash(m, &h[0]) == MT_OK && flip_byte(shard, t->offset + 1, 0x5a) &&
              mt_stream_model_hash(m, &h[1]) == MT_OK && flip_byte(shard, t->offset + 1, 0x5a) &&
              mt_stream_model_hash(m, &h[2]) == MT_OK;
    tap_ok(ok && h[0] == want && h[1] != want && h[2] == want,
           "%s: hash of a copy %s the original's; one byte of layer %d's last expert changed: %s; "
           "put back: %s", name, h[0] == want ? "is" : "is NOT", l,
           h[1] != want ? "another" : "the SAME", h[2] == want ? "the same" : "ANOTHER");
    /* the tensor table is in the hash: a 2-D tensor's name, dtype and shape each changed in the
     * set's table in memory (as another checkpoint's header would give them), then put back;
     * no file has to be edited for it and the model is not asked to open the odd table */
    struct mt_st_tensor *tt = NULL;
    for (size_t i = 0; i < mt_st_set_count(m->set) && tt == NULL; i++) {
        const struct mt_st_tensor *c = mt_st_set_tensor(m->set, i);
        tt = c->ndim == 2 && c->shape[0] != c->shape[1] ? (struct mt_st_tensor *)c : NULL;
    }
    if (tap_ok(tt != NULL, "%s: a 2-D tensor that is not square", name)) {
        enum mt_dtype dt = tt->dtype;
        int64_t rows = tt->shape[0];
        uint64_t th[4] = {0, 0, 0, 0};

        tt->name[0] ^= 1;
        ok = mt_stream_model_hash(m, &th[0]) == MT_OK;
        tt->name[0] ^= 1;
        tt->dtype = dt == MT_DTYPE_F32 ? MT_DTYPE_BF16 : MT_DTYPE_F32;
        ok = mt_stream_model_hash(m, &th[1]) == MT_OK && ok;
        tt->dtype = dt;
        tt->shape[0] = tt->shape[1];
        tt->shape[1] = rows;
        ok = mt_stream_model_hash(m, &th[2]) == MT_OK && ok;
        tt->shape[1] = tt->shape[0];
        tt->shape[0] = rows;
        ok = mt_stream_model_hash(m, &th[3]) == MT_OK && ok;
        tap_ok(ok && th[0] != want && th[1] != want && th[2] != want && th[3] == want,
               "%s: tensor '%s' renamed: %s; another dtype: %s; its shape transposed: %s; put "
               "back: %s", name, tt->name, th[0] != want ? "another hash" : "the SAME",
               th[1] != want ? "another" : "the SAME", th[2] != want ? "another" : "the SAME",
               th[3] == want ? "the same" : "ANOTHER");
    }
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
    FILE *f = fopen(cfg, "a");
    ok = f != NULL && fputc('\n', f) == '\n';
    if (f != NULL) {
        ok = fclose(f) == 0 && ok;
    }
    ok = ok && mt_stream_model_hash(m, &h[3]) == MT_OK;
    tap_ok(ok && h[3] != want, "%s: config.json's bytes are in the hash (one more newline: %s)",
           name, h[3] != want ? "another hash" : "the SAME hash");
    /* a streaming provider over the shards, opened before the cut (its source checks the
     * extents against the files' sizes when it opens) */
    struct mt_io_source_options io = {.queue_depth = 4, .chunk_bytes = 16384};
    struct mt_expert_provider *p = NULL;
    int E = m->cfg.n_routed_experts;

    io.cache_bytes = 3 * 3 * 2 * (uint64_t)m->cfg.hidden_size * m->cfg.moe_intermediate_size;
    ok = mt_expert_provider_stream_create(m, &io, NULL, 0, &p) == MT_OK;
    mt_log_set_quiet(true);
    mt_status_t st = truncate(shard, (off_t)t->offset) == 0 ? mt_stream_model_hash(m, &h[3])
                                                              : MT_ERR_INVAL;
    mt_log_set_quiet(false);
    tap_ok(st == MT_ERR_IO && strstr(mt_last_error(), "for the model hash") != NULL,
           "%s: a shard cut short before a sampled expert: no hash, an I/O error: %s", name,
           mt_last_error());
    /* the read error comes back from acquire naming the expert, and nothing stays held: the
     * next acquire fails again; experts out of range are refused before any read */
    if (tap_ok(ok, "%s: a streaming provider over the copy opens", name)) {
        struct mt_expert x;
        char want[64];
        char msg[512];
        mt_status_t a[4];

        snprintf(want, sizeof(want), "layer %d expert %d", l, E - 1);
        mt_log_set_quiet(true);
        a[0] = p->ops->acquire(p->self, l, E - 1, &x);
        snprintf(msg, sizeof(msg), "%s", mt_last_error());
        a[1] = p->ops->acquire(p->self, l, E - 1, &x);
        a[2] = p->ops->acquire(p->self, l, E, &x);
        a[3] = p->ops->acquire(p->self, -1, 0, &x);
        mt_log_set_quiet(false);
        tap_ok(a[0] == MT_ERR_IO && strstr(msg, want) != NULL && a[1] == MT_ERR_IO,
               "%s: acquire of the expert cut off: MT_ERR_IO naming %s (%s), twice (%d)", name,
               want, msg, a[1]);
        tap_ok(a[2] == MT_ERR_INVAL && a[3] == MT_ERR_INVAL,
               "%s: acquire of expert %d, and of layer -1: MT_ERR_INVAL (%d, %d)", name, E, a[2],
               a[3]);
        mt_expert_provider_destroy(p);
    }
    mt_model_destroy(m);
}

static void
run_dtype(const char *tmp, bool bf16, const char *other_store)
{
    const char *name = bf16 ? "bf16" : "fp8";
    const char *bdir = getenv("MT_BUILDDIR");
    char dir[600];
    char st0[600];
    char st1[600];
    char cmd[2400];
    struct mt_synth_options so = {.preset = "tiny", .layers = -1, .dense_layers = -1, .mtp = -1};
    struct mt_io_source_options io = {.queue_depth = 4, .chunk_bytes = 16384};
    struct mt_model *m;
    struct mt_expert_provider *p;
    const char *stores[2] = {st0, st1};
    int n = 0;
    mt_status_t st;

    snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
    snprintf(st0, sizeof(st0), "%s/%s-0.mts", tmp, name);
    snprintf(st1, sizeof(st1), "%s/%s-1.mts", tmp, name);
    so.out_dir = dir;
    so.bf16 = bf16;
    if (mt_synth_write(&so, NULL) != MT_OK || mt_model_open(dir, &m) != MT_OK) {
        printf("Bail out! cannot synthesize and open a tiny %s checkpoint: %s\n", name,
               mt_last_error());
        exit(1);
    }
    tap_ok(m->fp8 == !bf16, "%s: the tiny checkpoint is %s", name, bf16 ? "BF16" : "FP8");
    check_describe(m, name);
    uint64_t hash = 0;
    if (tap_ok(mt_stream_model_hash(m, &hash) == MT_OK, "%s: the model hash", name)) {
        check_hash(tmp, name, so, hash);
    }
    /* a budget of 3 experts: every expert is evicted and read again in the second pass */
    io.cache_bytes = 3 * 3 * 2 * (uint64_t)m->cfg.hidden_size * m->cfg.moe_intermediate_size;
    st = mt_expert_provider_stream_create(m, &io, NULL, 0, &p);
    if (tap_ok(st == MT_OK, "%s: streaming provider over the shards opens", name)) {
        check_prefetch(m, p, name);
        check_views(m, p, name);
        int bad = check_provider(m, p, &n);

        tap_ok(bad == 0 && n > 0,
               "%s: %d acquires from the shards equal the checkpoint's bytes, dtypes and shapes",
               name, n);
        mt_expert_provider_destroy(p);
    }
    if (bdir == NULL) {
        printf("Bail out! MT_BUILDDIR is not set (run under make check)\n");
        exit(1);
    }
    snprintf(cmd, sizeof(cmd), "'%s/moetier' pack -q -m '%s' -o '%s' -o '%s'", bdir, dir, st0, st1);
    tap_ok(system(cmd) == 0, "%s: moetier pack writes a two-file store", name);
    io.verify = true;
    st = mt_expert_provider_stream_create(m, &io, stores, 2, &p);
    if (tap_ok(st == MT_OK, "%s: streaming provider over the store opens", name)) {
        check_views(m, p, name);
        int bad = check_provider(m, p, &n);

        tap_ok(bad == 0 && n > 0,
               "%s: %d acquires from the store (CRCs checked) equal the checkpoint's bytes", name,
               n);
        mt_expert_provider_destroy(p);
    }
    if (other_store != NULL) {
        const char *o[2];
        char o1[600];

        snprintf(o1, sizeof(o1), "%s", other_store);
        o[0] = o1;
        snprintf(cmd, sizeof(cmd), "%.*s1.mts", (int)strlen(other_store) - 5, other_store);
        o[1] = cmd;
        mt_log_set_quiet(true);
        st = mt_expert_provider_stream_create(m, &io, o, 2, &p);
        mt_log_set_quiet(false);
        tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "another model") != NULL,
               "%s: the FP8 model's store is refused: %s", name, mt_last_error());
        if (st == MT_OK) {
            mt_expert_provider_destroy(p);
        }
    }
    check_bad_part(m, tmp, name, &io, false);
    check_bad_part(m, tmp, name, &io, true);
    check_other_dims(m, tmp, name, &io, 0, 1);
    check_other_dims(m, tmp, name, &io, 1, 0);
    /* the same shape with other weights (another seed): the store of one is refused by the other,
     * which would otherwise run with the other checkpoint's experts */
    {
        char odir[600];
        char ost[600];
        const char *o[1] = {ost};

        snprintf(odir, sizeof(odir), "%s/%s-seed2", tmp, name);
        snprintf(ost, sizeof(ost), "%s/%s-seed2.mts", tmp, name);
        so.out_dir = odir;
        so.seed = 2;
        snprintf(cmd, sizeof(cmd), "'%s/moetier' pack -q -m '%s' -o '%s'", bdir, odir, ost);
        if (mt_synth_write(&so, NULL) == MT_OK && system(cmd) == 0) {
            mt_log_set_quiet(true);
            st = mt_expert_provider_stream_create(m, &io, o, 1, &p);
            mt_log_set_quiet(false);
            tap_ok(st == MT_ERR_FORMAT && strstr(mt_last_error(), "another model") != NULL,
                   "%s: a store of a checkpoint of the same shape, other weights, is refused: %s",
                   name, mt_last_error());
            if (st == MT_OK) {
                mt_expert_provider_destroy(p);
            }
        } else {
            tap_ok(false, "%s: synth and pack of a second seed: %s", name, mt_last_error());
        }
    }
    mt_model_destroy(m);
}

int
main(void)
{
    const char *tmp;
    char fp8_store[700];

    tap_plan(0);
    tmp = tap_tmpdir();
    if (tmp == NULL) {
        printf("Bail out! no temporary directory\n");
        return 1;
    }
    run_dtype(tmp, false, NULL);
    snprintf(fp8_store, sizeof(fp8_store), "%s/fp8-0.mts", tmp);
    run_dtype(tmp, true, fp8_store);
    tap_rmtree(tmp);
    return tap_done();
}
