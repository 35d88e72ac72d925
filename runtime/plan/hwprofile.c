/* SPDX-License-Identifier: MIT */
/*
 * hwprofile.c - saving and loading the hardware profile (runtime/hwprofile.h) as JSON.
 *
 * The one idea: each JSON object is described by a table of (key, type, offset) rows, and one
 * loop reads any object through its table. That keeps saving and loading symmetric, makes an
 * unknown key (a typo in a what-if file) an error rather than a silently ignored number, and lets
 * a new field cost one table row.
 */
#include <config.h>

#include "runtime/plan/hwprofile.h"

#include "runtime/base/file_util.h"
#include "runtime/base/json_num.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* ---- field tables ------------------------------------------------------------------------- */

/*
 * The largest number an F_DOUBLE field (a GB/s, TFLOPS, GFLOPS, efficiency or ms) may hold. No
 * machine comes near it, and a rate far beyond it (a what-if file's 1e308) overflows the
 * planner's bytes/s to infinity: every time it gives is then 0, decode "inf tok/s", and the plan
 * cannot be written.
 */
#define NUMBER_MAX 1e9

enum field_type {
    F_INT,    /* int, >= 0 */
    F_U64,    /* uint64_t, >= 0 */
    F_DOUBLE, /* double: 0 (not measured) or a rate in [MT_HW_RATE_MIN, NUMBER_MAX] */
    F_MS,     /* double in [0, NUMBER_MAX]: a time, which may be as short as it is */
    F_BOOL,   /* bool */
    F_STR,    /* char[size] */
};

struct field {
    const char *key;
    enum field_type type;
    size_t offset;
    size_t size; /* F_STR: capacity of the char array */
};

#define FLD(st, key, type, member)                                                                 \
    {                                                                                              \
        (key), (type), offsetof(st, member), sizeof(((st *)0)->member)                             \
    }

static const struct field top_fields[] = {
    FLD(struct mt_hwprofile, "version", F_INT, version),
    FLD(struct mt_hwprofile, "source", F_STR, source),
    FLD(struct mt_hwprofile, "host", F_STR, host),
    FLD(struct mt_hwprofile, "date", F_STR, date),
    FLD(struct mt_hwprofile, "dram_bytes", F_U64, dram_bytes),
    {NULL, F_INT, 0, 0},
};

static const struct field gpu_fields[] = {
    FLD(struct mt_hw_gpu, "present", F_BOOL, present),
    FLD(struct mt_hw_gpu, "name", F_STR, name),
    FLD(struct mt_hw_gpu, "count", F_INT, count),
    FLD(struct mt_hw_gpu, "mem_bytes", F_U64, mem_bytes),
    FLD(struct mt_hw_gpu, "sm_count", F_INT, sm_count),
    FLD(struct mt_hw_gpu, "hbm_read_gbps", F_DOUBLE, hbm_read_gbps),
    FLD(struct mt_hw_gpu, "copy_gbps", F_DOUBLE, copy_gbps),
    FLD(struct mt_hw_gpu, "bf16_tflops", F_DOUBLE, bf16_tflops),
    {NULL, F_INT, 0, 0},
};

static const struct field pcie_fields[] = {
    FLD(struct mt_hw_pcie, "h2d_gbps", F_DOUBLE, h2d_gbps),
    FLD(struct mt_hw_pcie, "d2h_gbps", F_DOUBLE, d2h_gbps),
    FLD(struct mt_hw_pcie, "bidir_gbps", F_DOUBLE, bidir_gbps),
    FLD(struct mt_hw_pcie, "large_bytes", F_U64, large_bytes),
    {NULL, F_INT, 0, 0},
};

static const struct field cpu_fields[] = {
    FLD(struct mt_hw_cpu, "model", F_STR, model),
    FLD(struct mt_hw_cpu, "cores", F_INT, cores),
    FLD(struct mt_hw_cpu, "threads", F_INT, threads),
    FLD(struct mt_hw_cpu, "numa_nodes", F_INT, n_nodes),
    FLD(struct mt_hw_cpu, "read_gbps", F_DOUBLE, read_gbps),
    FLD(struct mt_hw_cpu, "triad_gbps", F_DOUBLE, triad_gbps),
    FLD(struct mt_hw_cpu, "read_ceiling_gbps", F_DOUBLE, read_ceiling_gbps),
    FLD(struct mt_hw_cpu, "expert_eff", F_DOUBLE, expert_eff),
    FLD(struct mt_hw_cpu, "expert_prefill_gbps", F_DOUBLE, expert_prefill_gbps),
    FLD(struct mt_hw_cpu, "expert_prefill_gflops", F_DOUBLE, expert_prefill_gflops),
    FLD(struct mt_hw_cpu, "fma_gflops", F_DOUBLE, fma_gflops),
    FLD(struct mt_hw_cpu, "amx_bf16_gflops", F_DOUBLE, amx_bf16_gflops),
    {NULL, F_INT, 0, 0},
};

static const struct field node_fields[] = {
    FLD(struct mt_hw_numa_node, "id", F_INT, id),
    FLD(struct mt_hw_numa_node, "cores", F_INT, cores),
    FLD(struct mt_hw_numa_node, "mem_bytes", F_U64, mem_bytes),
    FLD(struct mt_hw_numa_node, "read_gbps", F_DOUBLE, read_gbps),
    FLD(struct mt_hw_numa_node, "triad_gbps", F_DOUBLE, triad_gbps),
    {NULL, F_INT, 0, 0},
};

static const struct field disk_fields[] = {
    FLD(struct mt_hw_disk, "path", F_STR, path),
    FLD(struct mt_hw_disk, "best_gbps", F_DOUBLE, best_gbps),
    FLD(struct mt_hw_disk, "best_qd", F_INT, best_qd),
    FLD(struct mt_hw_disk, "best_block_bytes", F_U64, best_block_bytes),
    {NULL, F_INT, 0, 0},
};

static const struct field point_fields[] = {
    FLD(struct mt_hw_disk_point, "qd", F_INT, qd),
    FLD(struct mt_hw_disk_point, "block_bytes", F_U64, block_bytes),
    FLD(struct mt_hw_disk_point, "gbps", F_DOUBLE, gbps),
    {NULL, F_INT, 0, 0},
};

/* "learned": written only when reports > 0 (learned_to_json / learned_from_json). */
static const struct field learned_fields[] = {
    FLD(struct mt_hw_learned, "reports", F_INT, reports),
    FLD(struct mt_hw_learned, "cpu_expert_eff", F_DOUBLE, cpu_expert_eff),
    FLD(struct mt_hw_learned, "disk_eff", F_DOUBLE, disk_eff),
    FLD(struct mt_hw_learned, "gpu_eff", F_DOUBLE, gpu_eff),
    FLD(struct mt_hw_learned, "cpu_prefill_eff", F_DOUBLE, cpu_prefill_eff),
    FLD(struct mt_hw_learned, "gpu_prefill_eff", F_DOUBLE, gpu_prefill_eff),
    FLD(struct mt_hw_learned, "host_layer_ms", F_MS, host_layer_ms),
    FLD(struct mt_hw_learned, "from", F_STR, from),
    {NULL, F_INT, 0, 0},
};

static const char *const isa_names[] = {
    "avx2",        "fma",      "avx512f",  "avx512bw", "avx512_bf16", "avx512_fp16",
    "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
};
#define N_ISA (sizeof(isa_names) / sizeof(isa_names[0]))

const char *
mt_hw_isa_name(unsigned bit)
{
    for (unsigned i = 0; i < N_ISA; i++) {
        if (bit == (1u << i)) {
            return isa_names[i];
        }
    }
    return NULL;
}

void
mt_hwprofile_init(struct mt_hwprofile *p)
{
    memset(p, 0, sizeof(*p));
    p->version = MT_HWPROFILE_VERSION;
}

double
mt_hwprofile_disk_total_gbps(const struct mt_hwprofile *p)
{
    double sum = 0.0;

    for (int i = 0; i < p->n_disks; i++) {
        sum += p->disks[i].best_gbps;
    }
    return sum;
}

/* ---- saving ------------------------------------------------------------------------------- */

/* Add the fields of `table` read from struct `base` to JSON object o. NULL on allocation failure.
 */
static json_t *
fields_to_json(json_t *o, const struct field *table, const void *base)
{
    const char *b = base;

    if (o == NULL) {
        return NULL;
    }
    for (const struct field *f = table; f->key != NULL; f++) {
        json_t *v = NULL;

        switch (f->type) {
        case F_INT:
            v = json_integer(*(const int *)(b + f->offset));
            break;
        case F_U64:
            v = json_integer((json_int_t) * (const uint64_t *)(b + f->offset));
            break;
        case F_DOUBLE:
        case F_MS:
            v = json_real(*(const double *)(b + f->offset));
            break;
        case F_BOOL:
            v = json_boolean(*(const bool *)(b + f->offset));
            break;
        case F_STR:
            v = json_string(b + f->offset);
            break;
        }
        if (v == NULL || json_object_set_new(o, f->key, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *
curve_to_json(const struct mt_hw_curve_point *pts, int n)
{
    json_t *a = json_array();

    for (int i = 0; a != NULL && i < n; i++) {
        json_t *pt = json_pack("[I, f]", (json_int_t)pts[i].bytes, pts[i].gbps);

        if (pt == NULL || json_array_append_new(a, pt) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Set o[key] = v. Always takes v's reference (released on failure); false if o or v is NULL or
 * on allocation failure. */
static bool
put(json_t *o, const char *key, json_t *v)
{
    if (o == NULL || v == NULL) {
        json_decref(v);
        return false;
    }
    return json_object_set_new(o, key, v) == 0;
}

/* Append v to array a; takes v's reference like put(). */
static bool
append(json_t *a, json_t *v)
{
    if (a == NULL || v == NULL) {
        json_decref(v);
        return false;
    }
    return json_array_append_new(a, v) == 0;
}

/* The "learned" section, only when something was learned: a profile that never learned is
 * written exactly as before. */
static bool
learned_to_json(json_t *root, const struct mt_hw_learned *l)
{
    if (l->reports <= 0) {
        return true;
    }
    return put(root, "learned", fields_to_json(json_object(), learned_fields, l));
}

/* The whole profile as one JSON tree; every child is attached as soon as it is made, so the
 * root is the only thing to release on failure. */
static json_t *
profile_to_json(const struct mt_hwprofile *p)
{
    json_t *root = fields_to_json(json_object(), top_fields, p);
    json_t *pcie = fields_to_json(json_object(), pcie_fields, &p->pcie);
    json_t *cpu = fields_to_json(json_object(), cpu_fields, &p->cpu);
    json_t *isa = json_array();
    json_t *nodes = json_array();
    json_t *disks = json_array();
    bool ok;

    /* put() takes each reference whether or not it succeeds, so none leaks past this block;
     * grandchildren are attached before their parents so a failed parent frees them too. */
    ok = put(cpu, "isa", isa);
    ok = put(cpu, "nodes", nodes) && ok;
    ok = put(pcie, "h2d_curve", curve_to_json(p->pcie.h2d_curve, p->pcie.n_h2d)) && ok;
    ok = put(pcie, "d2h_curve", curve_to_json(p->pcie.d2h_curve, p->pcie.n_d2h)) && ok;
    ok = put(root, "gpu", fields_to_json(json_object(), gpu_fields, &p->gpu)) && ok;
    ok = put(root, "pcie", pcie) && ok;
    ok = put(root, "cpu", cpu) && ok;
    ok = put(root, "disks", disks) && ok;
    for (unsigned i = 0; ok && i < N_ISA; i++) {
        if (p->cpu.isa & (1u << i)) {
            ok = append(isa, json_string(isa_names[i]));
        }
    }
    for (int i = 0; ok && i < p->cpu.n_nodes && i < MT_HWPROFILE_MAX_NODES; i++) {
        ok = append(nodes, fields_to_json(json_object(), node_fields, &p->cpu.nodes[i]));
    }
    for (int i = 0; ok && i < p->n_disks && i < MT_HWPROFILE_MAX_DISKS; i++) {
        const struct mt_hw_disk *d = &p->disks[i];
        json_t *dj = fields_to_json(json_object(), disk_fields, d);
        json_t *pts = json_array();

        ok = put(dj, "points", pts);
        ok = append(disks, dj) && ok;
        for (int k = 0; ok && k < d->n_points && k < MT_HWPROFILE_MAX_POINTS; k++) {
            ok = append(pts, fields_to_json(json_object(), point_fields, &d->points[k]));
        }
    }
    ok = ok && learned_to_json(root, &p->learned);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

mt_status_t
mt_hwprofile_save(const struct mt_hwprofile *p, const char *path)
{
    json_t *root;
    mt_status_t st;

    if (p->version != MT_HWPROFILE_VERSION) {
        return mt_fail(MT_ERR_INVAL, 0, "hardware profile has version %d, expected %d", p->version,
                       MT_HWPROFILE_VERSION);
    }
    root = profile_to_json(p);
    if (root == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build JSON for hardware profile '%s'", path);
    }
    st = mt_json_save_file(root, path, "hardware profile",
                           JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(root);
    return st;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Read JSON object o into base through table; `where` is the key path for messages ("gpu"). */
static mt_status_t
fields_from_json(json_t *o, const struct field *table, void *base, const char *what,
                 const char *where, const char *const *extra_keys)
{
    char *b = base;
    const char *key;
    json_t *v;

    if (!json_is_object(o)) {
        return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': '%s' must be an object", what,
                       where);
    }
    json_object_foreach (o, key, v) {
        const struct field *f;
        bool extra = false;

        for (const char *const *k = extra_keys; k != NULL && *k != NULL; k++) {
            extra = extra || strcmp(*k, key) == 0;
        }
        if (extra) {
            continue; /* an array or object the caller reads itself */
        }
        for (f = table; f->key != NULL && strcmp(f->key, key) != 0; f++) {
        }
        if (f->key == NULL) {
            return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': unknown key '%s%s%s'", what,
                           where, *where ? "." : "", key);
        }
        switch (f->type) {
        case F_INT:
        case F_U64: {
            long long x;

            if (!mt_json_is_int(v, &x) || x < 0 || (f->type == F_INT && x > 0x7fffffff)) {
                goto out_bad;
            }
            if (f->type == F_INT) {
                *(int *)(b + f->offset) = (int)x;
            } else {
                *(uint64_t *)(b + f->offset) = (uint64_t)x;
            }
            break;
        }
        case F_DOUBLE:
        case F_MS:
            if (!json_is_number(v) || json_number_value(v) < 0.0 ||
                json_number_value(v) > NUMBER_MAX ||
                (f->type == F_DOUBLE && json_number_value(v) > 0.0 &&
                 json_number_value(v) < MT_HW_RATE_MIN)) {
                goto out_bad;
            }
            *(double *)(b + f->offset) = json_number_value(v);
            break;
        case F_BOOL:
            if (!json_is_boolean(v)) {
                goto out_bad;
            }
            *(bool *)(b + f->offset) = json_is_true(v);
            break;
        case F_STR:
            if (!json_is_string(v) || strlen(json_string_value(v)) >= f->size) {
                goto out_bad;
            }
            memcpy(b + f->offset, json_string_value(v), strlen(json_string_value(v)) + 1);
            break;
        }
        continue;
    out_bad:
        return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': '%s%s%s' must be %s", what, where,
                       *where ? "." : "", key,
                       f->type == F_BOOL     ? "true or false"
                       : f->type == F_STR    ? "a string (shorter than its limit)"
                       : f->type == F_DOUBLE ? "a non-negative number (at most 1e9), either 0 "
                                               "(not measured) or at least 1e-06"
                       : f->type == F_MS     ? "a non-negative number (at most 1e9)"
                                             : "a non-negative integer");
    }
    return MT_OK;
}

static mt_status_t
curve_from_json(json_t *a, struct mt_hw_curve_point *pts, int *n_out, const char *what,
                const char *key)
{
    size_t i;
    json_t *pt;

    if (a == NULL) {
        *n_out = 0;
        return MT_OK;
    }
    if (!json_is_array(a) || json_array_size(a) > MT_HWPROFILE_MAX_CURVE) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'pcie.%s' must be an array of at most %d points",
                       what, key, MT_HWPROFILE_MAX_CURVE);
    }
    json_array_foreach (a, i, pt) {
        json_t *b = json_array_get(pt, 0);
        json_t *g = json_array_get(pt, 1);
        long long bytes = 0;

        if (!json_is_array(pt) || json_array_size(pt) != 2 || !mt_json_is_int(b, &bytes) ||
            bytes <= 0 || !json_is_number(g) || json_number_value(g) < 0 ||
            json_number_value(g) > NUMBER_MAX ||
            (json_number_value(g) > 0 && json_number_value(g) < MT_HW_RATE_MIN)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "hardware profile '%s': 'pcie.%s[%zu]' must be [bytes, gbps]", what, key,
                           i);
        }
        pts[i].bytes = (uint64_t)bytes;
        pts[i].gbps = json_number_value(g);
    }
    *n_out = (int)json_array_size(a);
    return MT_OK;
}

static mt_status_t
cpu_from_json(json_t *o, struct mt_hw_cpu *cpu, const char *what)
{
    static const char *const extra[] = {"isa", "nodes", NULL};
    json_t *isa;
    json_t *nodes;
    json_t *v;
    size_t i;
    mt_status_t st;
    int declared;

    st = fields_from_json(o, cpu_fields, cpu, what, "cpu", extra);
    if (st != MT_OK) {
        return st;
    }
    /* a fraction of read_ceiling_gbps: moetier bench writes at most 1 (cli_bench.c caps the
       kernels' rate at the ceiling), and 0 where it did not time the experts (--only dram).
       Above 1 the planner took it as 1 and still called it "measured" */
    if (cpu->expert_eff > 1.0) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'cpu.expert_eff' is %g; it must be in [0, 1] (a "
                       "fraction of cpu.read_ceiling_gbps, 0: not measured; measure it again "
                       "with moetier bench)",
                       what, cpu->expert_eff);
    }
    declared = cpu->n_nodes;
    if (declared > MT_HWPROFILE_MAX_NODES) { /* n_nodes counts entries of nodes[] */
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'cpu.numa_nodes' is %d; a profile holds at most %d "
                       "NUMA nodes",
                       what, declared, MT_HWPROFILE_MAX_NODES);
    }
    isa = json_object_get(o, "isa");
    if (isa != NULL && !json_is_array(isa)) {
        return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': 'cpu.isa' must be an array", what);
    }
    json_array_foreach (isa, i, v) {
        unsigned k;

        for (k = 0; k < N_ISA; k++) {
            if (json_is_string(v) && strcmp(json_string_value(v), isa_names[k]) == 0) {
                break;
            }
        }
        if (k == N_ISA) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "hardware profile '%s': 'cpu.isa[%zu]' is not a known ISA name "
                           "(avx2, fma, avx512f, avx512bw, avx512_bf16, avx512_fp16, "
                           "avx512_vnni, amx_tile, amx_bf16, amx_int8, amx_fp16)",
                           what, i);
        }
        cpu->isa |= 1u << k;
    }
    nodes = json_object_get(o, "nodes");
    if (nodes == NULL) {
        return MT_OK; /* a what-if file may give only the totals */
    }
    if (!json_is_array(nodes) || json_array_size(nodes) > MT_HWPROFILE_MAX_NODES) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'cpu.nodes' must be an array of at most %d nodes",
                       what, MT_HWPROFILE_MAX_NODES);
    }
    json_array_foreach (nodes, i, v) {
        char where[32];

        snprintf(where, sizeof(where), "cpu.nodes[%zu]", i);
        st = fields_from_json(v, node_fields, &cpu->nodes[i], what, where, NULL);
        if (st != MT_OK) {
            return st;
        }
    }
    cpu->n_nodes = (int)json_array_size(nodes);
    if (declared != 0 && declared != cpu->n_nodes) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'cpu.numa_nodes' is %d but 'cpu.nodes' lists %d",
                       what, declared, cpu->n_nodes);
    }
    return MT_OK;
}

/*
 * A disk's best_gbps is what the planner streams at; moetier bench writes its best point's
 * rate. One that disagrees with its points (0 beside points at 3 GB/s) was edited, and which
 * of the two is meant cannot be told: refused. A disk without points (a what-if) is taken as
 * given. The tolerance covers the 6 digits a profile is written with.
 */
static mt_status_t
disk_best_check(const struct mt_hw_disk *d, const char *what, const char *where)
{
    double best = 0.0;

    for (int k = 0; k < d->n_points; k++) {
        best = MT_MAX(best, d->points[k].gbps);
    }
    if (d->n_points == 0 || fabs(d->best_gbps - best) <= 1e-5 * best) {
        return MT_OK;
    }
    return mt_fail(MT_ERR_FORMAT, 0,
                   "hardware profile '%s': '%s.best_gbps' is %g but its best point reads %g "
                   "GB/s (best_gbps is the best of 'points'; correct one, or measure again with "
                   "moetier bench --disk)",
                   what, where, d->best_gbps, best);
}

static mt_status_t
disks_from_json(json_t *a, struct mt_hwprofile *p, const char *what)
{
    static const char *const extra[] = {"points", NULL};
    size_t i;
    json_t *d;

    if (a == NULL) {
        return MT_OK;
    }
    if (!json_is_array(a) || json_array_size(a) > MT_HWPROFILE_MAX_DISKS) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': 'disks' must be an array of at most %d disks", what,
                       MT_HWPROFILE_MAX_DISKS);
    }
    json_array_foreach (a, i, d) {
        struct mt_hw_disk *disk = &p->disks[i];
        char where[48];
        json_t *pts;
        json_t *pt;
        size_t k;
        mt_status_t st;

        snprintf(where, sizeof(where), "disks[%zu]", i);
        st = fields_from_json(d, disk_fields, disk, what, where, extra);
        if (st != MT_OK) {
            return st;
        }
        pts = json_object_get(d, "points");
        if (pts != NULL &&
            (!json_is_array(pts) || json_array_size(pts) > MT_HWPROFILE_MAX_POINTS)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "hardware profile '%s': '%s.points' must be an array of at most %d",
                           what, where, MT_HWPROFILE_MAX_POINTS);
        }
        json_array_foreach (pts, k, pt) {
            char pwhere[80];

            snprintf(pwhere, sizeof(pwhere), "%s.points[%zu]", where, k);
            st = fields_from_json(pt, point_fields, &disk->points[k], what, pwhere, NULL);
            if (st != MT_OK) {
                return st;
            }
        }
        disk->n_points = pts == NULL ? 0 : (int)json_array_size(pts);
        if ((st = disk_best_check(disk, what, where)) != MT_OK) {
            return st;
        }
    }
    p->n_disks = (int)json_array_size(a);
    return MT_OK;
}

/* The optional "learned" section (o NULL: absent). Efficiencies above MT_HW_LEARNED_EFF_MAX are
 * refused: real kernels beat a quick ceiling (the H200 box's CPU experts read 1.17x its quick
 * read sweep), but not by twice. */
static mt_status_t
learned_from_json(json_t *o, struct mt_hw_learned *l, const char *what)
{
    mt_status_t st;
    const double *eff[] = {&l->cpu_expert_eff, &l->disk_eff, &l->gpu_eff, &l->cpu_prefill_eff,
                           &l->gpu_prefill_eff};
    static const char *const names[] = {"cpu_expert_eff", "disk_eff", "gpu_eff",
                                        "cpu_prefill_eff", "gpu_prefill_eff"};

    if (o == NULL) {
        return MT_OK;
    }
    if ((st = fields_from_json(o, learned_fields, l, what, "learned", NULL)) != MT_OK) {
        return st;
    }
    for (size_t i = 0; i < sizeof(eff) / sizeof(eff[0]); i++) {
        if (*eff[i] > MT_HW_LEARNED_EFF_MAX) {
            return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': 'learned.%s' is %g, above %g "
                           "(an efficiency is a ratio to a rate this profile measured)", what,
                           names[i], *eff[i], MT_HW_LEARNED_EFF_MAX);
        }
    }
    /* the planner uses the section only where reports > 0 (and saving drops it otherwise): a
       section with values and no reports would load, be ignored without a word, and vanish */
    if (l->reports == 0 && json_object_size(o) > 0) {
        const char *key = NULL;
        json_t *v;

        json_object_foreach (o, key, v) {
            if (strcmp(key, "reports") != 0) {
                break;
            }
        }
        if (key != NULL && strcmp(key, "reports") != 0) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "hardware profile '%s': 'learned.%s' is given but 'learned.reports' "
                           "is %s; the section is used only when reports >= 1 (what moetier "
                           "plan --learn writes): set it, or remove the section",
                           what, key, json_object_get(o, "reports") == NULL ? "missing" : "0");
        }
    }
    return MT_OK;
}

static mt_status_t
profile_from_json(json_t *root, const char *what, struct mt_hwprofile *p)
{
    static const char *const top_extra[] = {"gpu", "pcie", "cpu", "disks", "learned", NULL};
    static const char *const pcie_extra[] = {"h2d_curve", "d2h_curve", NULL};
    json_t *version;
    long long vers = 0;
    json_t *o;
    mt_status_t st;

    if (!json_is_object(root)) {
        return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': top level must be an object",
                       what);
    }
    /* The version first: a file of another version may legitimately have other keys. */
    version = json_object_get(root, "version");
    if (version == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': no \"version\" key (expected \"version\": %d)", what,
                       MT_HWPROFILE_VERSION);
    }
    if (!mt_json_is_int(version, &vers) || vers != MT_HWPROFILE_VERSION) {
        if (!mt_json_is_int(version, &vers)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "hardware profile '%s': \"version\" must be an integer", what);
        }
        return mt_fail(MT_ERR_FORMAT, 0,
                       "hardware profile '%s': version %lld is not supported (this moetier reads "
                       "version %d; run moetier bench --json again)",
                       what, vers, MT_HWPROFILE_VERSION);
    }
    st = fields_from_json(root, top_fields, p, what, "", top_extra);
    if (st != MT_OK) {
        return st;
    }
    if ((o = json_object_get(root, "gpu")) != NULL) {
        struct mt_hw_gpu *g = &p->gpu;

        st = fields_from_json(o, gpu_fields, g, what, "gpu", NULL);
        if (st != MT_OK) {
            return st;
        }
        if (json_object_get(o, "present") == NULL) {
            /* A what-if file may describe its GPU by numbers only. */
            g->present = g->name[0] != '\0' || g->count > 0 || g->mem_bytes > 0 ||
                         g->sm_count > 0 || g->hbm_read_gbps > 0 || g->copy_gbps > 0 ||
                         g->bf16_tflops > 0;
        }
    }
    if ((o = json_object_get(root, "pcie")) != NULL) {
        st = fields_from_json(o, pcie_fields, &p->pcie, what, "pcie", pcie_extra);
        if (st == MT_OK) {
            st = curve_from_json(json_object_get(o, "h2d_curve"), p->pcie.h2d_curve, &p->pcie.n_h2d,
                                 what, "h2d_curve");
        }
        if (st == MT_OK) {
            st = curve_from_json(json_object_get(o, "d2h_curve"), p->pcie.d2h_curve, &p->pcie.n_d2h,
                                 what, "d2h_curve");
        }
        if (st != MT_OK) {
            return st;
        }
    }
    if ((o = json_object_get(root, "cpu")) != NULL &&
        (st = cpu_from_json(o, &p->cpu, what)) != MT_OK) {
        return st;
    }
    if ((st = learned_from_json(json_object_get(root, "learned"), &p->learned, what)) != MT_OK) {
        return st;
    }
    return disks_from_json(json_object_get(root, "disks"), p, what);
}

mt_status_t
mt_hwprofile_parse(const char *text, const char *what, struct mt_hwprofile *p_out)
{
    struct mt_hwprofile *p;
    json_error_t jerr;
    json_t *root;
    mt_status_t st;

    root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "hardware profile '%s': not JSON: %s (line %d)", what,
                       jerr.text, jerr.line);
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        json_decref(root);
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate hardware profile for '%s'", what);
    }
    st = profile_from_json(root, what, p);
    json_decref(root);
    if (st == MT_OK) {
        *p_out = *p;
    }
    free(p);
    return st;
}

mt_status_t
mt_hwprofile_load(const char *path, struct mt_hwprofile *p_out)
{
    char *text;
    size_t len;
    mt_status_t st;

    st = mt_file_read_all(path, "hardware profile", MT_FILE_MAX_PROFILE, &text, &len);
    if (st != MT_OK) {
        return st;
    }
    st = mt_hwprofile_parse(text, path, p_out);
    free(text);
    if (st == MT_OK) {
        snprintf(p_out->file, sizeof(p_out->file), "%s", path);
    }
    return st;
}

/* ---- the profile cache ---------------------------------------------------------------------- */

/* An environment variable's value, NULL when unset or empty. */
static const char *
env_nonempty(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

mt_status_t
mt_hwprofile_cache_dir(char *buf, size_t size)
{
    const char *v;
    int n;

    if ((v = env_nonempty("MOETIER_CACHE_DIR")) != NULL) {
        n = snprintf(buf, size, "%s", v);
    } else if ((v = env_nonempty("XDG_CACHE_HOME")) != NULL) {
        n = snprintf(buf, size, "%s/moetier", v);
    } else if ((v = env_nonempty("HOME")) != NULL) {
        n = snprintf(buf, size, "%s/.cache/moetier", v);
    } else {
        return mt_fail(MT_ERR_INVAL, 0, "no cache directory for the hardware profile: HOME, "
                       "XDG_CACHE_HOME and MOETIER_CACHE_DIR are unset (set MOETIER_CACHE_DIR, or "
                       "give a profile with --hw)");
    }
    if (n < 0 || (size_t)n >= size) {
        return mt_fail(MT_ERR_INVAL, 0, "the cache directory '%s...' is too long (set "
                       "MOETIER_CACHE_DIR to a shorter path)", v);
    }
    return MT_OK;
}

mt_status_t
mt_hwprofile_cache_path(char *buf, size_t size)
{
    char host[256] = "";
    mt_status_t st;
    size_t len;

    if ((st = mt_hwprofile_cache_dir(buf, size)) != MT_OK) {
        return st;
    }
    /* one profile per machine: a shared home directory may serve several */
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0' || strchr(host, '/')) {
        snprintf(host, sizeof(host), "localhost");
    }
    len = strlen(buf);
    if ((size_t)snprintf(buf + len, size - len, "/profile-%s.json", host) >= size - len) {
        return mt_fail(MT_ERR_INVAL, 0, "the cached profile's path in '%s' is too long (set "
                       "MOETIER_CACHE_DIR to a shorter path)", buf);
    }
    return MT_OK;
}

/* mkdir -p of every directory in path (the last component too when whole). */
static mt_status_t
mkdir_parents(const char *path, bool whole)
{
    char dir[4096];
    size_t len = strlen(path);

    if (len >= sizeof(dir)) {
        return mt_fail(MT_ERR_INVAL, 0, "path '%.64s...' is too long", path);
    }
    memcpy(dir, path, len + 1);
    for (char *s = dir + 1; *s != '\0' || whole; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end) {
            continue;
        }
        *s = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            return mt_fail(MT_ERR_IO, errno, "cannot create the profile cache directory '%s'",
                           dir);
        }
        if (end) {
            break;
        }
        *s = '/';
    }
    return MT_OK;
}

mt_status_t
mt_hwprofile_cache_dir_make(char *buf, size_t size)
{
    mt_status_t st = mt_hwprofile_cache_dir(buf, size);

    return st != MT_OK ? st : mkdir_parents(buf, true);
}

mt_status_t
mt_hwprofile_cache_save(const struct mt_hwprofile *p, const char *path)
{
    mt_status_t st = mkdir_parents(path, false);

    return st != MT_OK ? st : mt_hwprofile_save(p, path);
}

bool
mt_hw_fit_expert_prefill(double s1, int m1, double s2, int m2, double bytes, double flops,
                         double decode_gbps, double *gbps, double *gflops)
{
    double per_token = m2 > m1 ? (s2 - s1) / (m2 - m1) : 0.0;
    double fixed = s1 - m1 * per_token;

    *gbps = 0.0;
    *gflops = 0.0;
    if (!(bytes > 0 && flops > 0 && per_token > 0)) {
        return false;
    }
    if (!(fixed > 0)) {
        /* products-bound from the smaller batch: the weights' read as the decode kernels do it */
        if (!(decode_gbps > 0)) {
            return false;
        }
        fixed = bytes / (decode_gbps * 1e9);
        per_token = (s2 - fixed) / m2;
        if (!(per_token > 0)) {
            return false;
        }
    }
    *gbps = bytes / fixed * 1e-9;
    *gflops = flops / per_token * 1e-9;
    return true;
}
