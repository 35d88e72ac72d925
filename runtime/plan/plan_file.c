/* SPDX-License-Identifier: MIT */
/*
 * plan_file.c - plan JSON save and load (the format is documented in planner.h).
 *
 * The placement is stored as one string of tier codes per MoE layer ("GGCCP...N"): 256 experts
 * read as one line, and a runtime rebuilds its per-layer dispatch tables from it. Loading is
 * strict (format, version, lengths, codes, number ranges, a placement within its own budgets)
 * because a wrong plan silently misplaces experts; the model identity is checked separately
 * against the checkpoint (mt_plan_check_model).
 */
#include <config.h>

#include "runtime/plan/planner.h"

#include "runtime/plan/planner_int.h"
#include "runtime/base/file_util.h"
#include "runtime/base/json_kind.h"
#include "runtime/base/json_num.h"
#include "runtime/base/json_text.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *
tier_string(const uint8_t *tiers, int n)
{
    char *buf = malloc((size_t)n + 1);
    json_t *s;

    if (buf == NULL) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        buf[i] = mt_tier_code((enum mt_tier)tiers[i]);
    }
    buf[n] = '\0';
    s = json_string(buf);
    free(buf);
    return s;
}

mt_status_t
mt_plan_save(const struct mt_plan *p, const char *path)
{
    json_t *root = NULL;
    json_t *layers;
    json_t *tiers;
    char hash[20];
    mt_status_t st = MT_OK;
    int E = p->n_experts;

    snprintf(hash, sizeof(hash), "%016" PRIx64, p->dims_hash);
    layers = json_array();
    tiers = json_object();
    root = json_pack(
        "{s:s, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:I, s:s}, "
        "s:{s:I, s:I, s:I, s:I, s:i, s:i, s:f, s:I, s:I, s:I, s:I}, "
        "s:{s:o, s:f, s:f, s:f, s:f, s:f, s:f}, s:{s:o, s:I}, s:o, "
        "s:{s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:o}}",
        "format", "moetier-plan", "version", MT_PLAN_VERSION, "model", "num_hidden_layers",
        p->n_layers, "n_routed_experts", E, "num_experts_per_tok", p->k, "hidden_size",
        p->hidden_size, "moe_intermediate_size", p->moe_intermediate_size, "first_k_dense_replace",
        p->first_k_dense_replace, "fp8", p->fp8, "expert_bytes", (json_int_t)p->expert_bytes,
        "dims_hash", hash, "budgets", "gpu_mem_bytes", (json_int_t)p->budget.gpu_mem,
        "cpu_mem_bytes", (json_int_t)p->budget.cpu_mem, "gpu_reserve_bytes",
        (json_int_t)p->budget.gpu_reserve, "cpu_reserve_bytes", (json_int_t)p->budget.cpu_reserve,
        "ctx", p->budget.ctx, "prefill_batch", p->budget.prefill_batch, "cpu_eff",
        p->budget.cpu_eff, "always_on_bytes", (json_int_t)p->always_on_bytes, "kv_bytes",
        (json_int_t)p->kv_bytes, "gpu_expert_bytes", (json_int_t)p->gpu_expert_bytes,
        "dram_expert_bytes", (json_int_t)p->dram_expert_bytes, "hardware", "source",
        mt_json_text(p->hw_source), "hbm_gbps", p->hbm_gbps, "gpu_tflops", p->gpu_tflops,
        "dram_gbps", p->dram_gbps, "cpu_gflops", p->cpu_gflops, "pcie_gbps", p->pcie_gbps,
        "disk_gbps", p->disk_gbps, "activation", "source", mt_json_text(p->activation), "tokens",
        (json_int_t)p->trace_tokens, "layers", layers, "prediction", "decode_tok_s",
        p->decode_tok_s, "prefill_tok_s", p->prefill_tok_s, "decode_ms", p->decode_ms,
        "decode_ms_mean_load", p->decode_ms_mean_load, "always_on_ms", p->always_on_ms,
        "prefill_ms_per_batch", p->prefill_ms, "bottleneck", p->bottleneck, "tiers", tiers);
    if (root == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build plan JSON for '%s'", path);
    }
    {
        /* learned efficiencies (optional on load: a plan without them assumed 1) and the host
           wait per layer (optional: 0) */
        json_t *hw = json_object_get(root, "hardware");

        json_t *pr = json_object_get(root, "prediction");

        if (json_object_set_new(hw, "gpu_eff", json_real(p->gpu_eff > 0 ? p->gpu_eff : 1)) != 0 ||
            json_object_set_new(hw, "disk_eff", json_real(p->disk_eff > 0 ? p->disk_eff : 1)) !=
                0 ||
            json_object_set_new(hw, "host_layer_ms", json_real(p->host_layer_ms)) != 0 ||
            json_object_set_new(hw, "cpu_prefill_gbps", json_real(p->cpu_prefill_gbps)) != 0 ||
            json_object_set_new(hw, "cpu_prefill_gflops", json_real(p->cpu_prefill_gflops)) !=
                0 ||
            json_object_set_new(hw, "cpu_prefill_eff",
                                json_real(p->cpu_prefill_eff > 0 ? p->cpu_prefill_eff : 1)) != 0 ||
            (p->gpu_prefill_eff > 0 && p->hbm_gbps > 0 &&
             json_object_set_new(hw, "gpu_prefill_eff", json_real(p->gpu_prefill_eff)) != 0) ||
            json_object_set_new(pr, "host_layers_per_token",
                                json_real(p->host_layers_per_token)) != 0) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot build plan JSON for '%s'", path);
            goto out_decref;
        }
    }
    if (p->prefill_not_modelled[0] != '\0') {
        /* (null, not 0: a reader must not take "not modelled" for "infinitely slow") */
        json_t *pr = json_object_get(root, "prediction");

        if (json_object_set_new(pr, "prefill_tok_s", json_null()) != 0 ||
            json_object_set_new(pr, "prefill_ms_per_batch", json_null()) != 0 ||
            json_object_set_new(pr, "prefill_not_modelled",
                                json_string(p->prefill_not_modelled)) != 0) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot build plan JSON for '%s'", path);
            goto out_decref;
        }
    }
    for (int l = 0; l < p->n_layers; l++) {
        const uint8_t *t = p->tiers + (size_t)l * E;
        if (t[0] == MT_TIER_NONE) {
            continue;
        }
        json_t *o = json_pack("{s:i, s:o, s:o}", "layer", l, "tiers", tier_string(t, E), "prefill",
                              tier_string(p->prefill_tiers + (size_t)l * E, E));
        if (o == NULL || json_array_append_new(layers, o) != 0) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot build plan JSON for '%s'", path);
            goto out_decref;
        }
    }
    for (int k = 0; k < MT_TIER_COUNT; k++) {
        const struct mt_plan_tier_stats *ts = &p->tier[k];
        json_t *o = json_pack("{s:i, s:I, s:f, s:f}", "experts", ts->experts, "bytes",
                              (json_int_t)ts->bytes, "bytes_per_token", ts->bytes_per_token,
                              "ms_per_token", ts->ms_per_token);
        if (o == NULL || json_object_set_new(tiers, mt_tier_name((enum mt_tier)k), o) != 0) {
            st = mt_fail(MT_ERR_NOMEM, 0, "cannot build plan JSON for '%s'", path);
            goto out_decref;
        }
    }
    st = mt_json_save_file(root, path, "plan",
                           JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
out_decref:
    json_decref(root);
    return st;
}

/* ---- load ------------------------------------------------------------------------------------ */

struct reader {
    const char *path;
    mt_status_t st;
};

static json_t *
member(struct reader *r, json_t *obj, const char *section, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (v == NULL && r->st == MT_OK) {
        r->st = mt_fail(MT_ERR_FORMAT, 0, "plan '%s': missing field '%s%s%s'", r->path, section,
                        *section ? "." : "", key);
    }
    return v;
}

/*
 * Refuse a key of obj that `known` does not list (NULL-terminated): a misspelt optional field
 * ("gpu_eff") would otherwise load as its default without a word, as hwprofile.c refuses them.
 */
static void
only_keys(struct reader *r, json_t *obj, const char *section, const char *const *known)
{
    const char *key = json_is_object(obj) ? mt_json_unknown_key(obj, known) : NULL;

    if (key != NULL && r->st == MT_OK) {
        r->st = mt_fail(MT_ERR_FORMAT, 0,
                        "plan '%s': unknown key '%s%s%s' (a typo, or a plan of another "
                        "moetier: make it again with moetier plan)",
                        r->path, section, *section ? "." : "", key);
    }
}

/* The keys mt_plan_save writes (some optional on load), per object. */
static const char *const top_keys[] = {"format", "version",  "model",      "budgets",
                                       "hardware", "activation", "layers", "prediction", NULL};
static const char *const model_keys[] = {
    "num_hidden_layers", "n_routed_experts", "num_experts_per_tok", "hidden_size",
    "moe_intermediate_size", "first_k_dense_replace", "fp8", "expert_bytes", "dims_hash", NULL};
static const char *const budget_keys[] = {
    "gpu_mem_bytes", "cpu_mem_bytes", "gpu_reserve_bytes", "cpu_reserve_bytes",
    "ctx", "prefill_batch", "cpu_eff", "always_on_bytes", "kv_bytes", "gpu_expert_bytes",
    "dram_expert_bytes", NULL};
static const char *const hardware_keys[] = {
    "source", "hbm_gbps", "gpu_tflops", "dram_gbps", "cpu_gflops", "pcie_gbps", "disk_gbps",
    "gpu_eff", "disk_eff", "host_layer_ms", "cpu_prefill_gbps", "cpu_prefill_gflops",
    "cpu_prefill_eff", "gpu_prefill_eff", NULL};
static const char *const activation_keys[] = {"source", "tokens", NULL};
static const char *const prediction_keys[] = {
    "decode_tok_s", "prefill_tok_s", "decode_ms", "decode_ms_mean_load", "always_on_ms",
    "prefill_ms_per_batch", "bottleneck", "tiers", "host_layers_per_token", "prefill_not_modelled",
    NULL};
static const char *const tier_stat_keys[] = {"experts", "bytes", "bytes_per_token", "ms_per_token",
                                             NULL};
static const char *const layer_keys[] = {"layer", "tiers", "prefill", NULL};

static long long
get_int(struct reader *r, json_t *obj, const char *section, const char *key, long long lo,
        long long hi)
{
    json_t *v = member(r, obj, section, key);
    long long x = 0;

    if (v == NULL) {
        return 0;
    }
    if (!mt_json_is_int(v, &x) || x < lo || x > hi) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0,
                            "plan '%s': field '%s.%s' must be an integer in [%lld, %lld]", r->path,
                            section, key, lo, hi);
        }
        return 0;
    }
    return x;
}

/*
 * What a number of the plan may be. Rates, times, bytes and predictions are >= 0: 0 is how the
 * planner writes "no such hardware" (hbm_gbps of a plan without a GPU), "not measured"
 * (cpu_prefill_gbps, host_layer_ms) and an empty tier, and a hand-made plan's "not predicted"
 * (the printouts and the run report show no ratio against it; decode_tok_s 0 is that too, which
 * is why it is not refused). A rate of 0 that the placement needs is refused after the layers
 * are read (check_tier_rates). An efficiency scales a rate and divides a re-prediction
 * (mt_plan_repredict_decode). Its range is what the planner writes: --cpu-eff's [0.01, 1] (below
 * 1% the CPU is as good as absent, and the times overflow any sane print) widened to
 * MT_PLAN_LEARNED_EFF_MAX above, because an efficiency learned from run reports is a ratio to the
 * profile's quick ceiling, which the real kernels beat (planner_cost.c, mt_plan_apply_learned,
 * which clamps every learned efficiency into the same range; tests/test_run_report.sh plans with
 * a learned 1.5). JSON cannot spell NaN or infinity (jansson refuses 1e999), but a plan may come
 * from elsewhere: finite is checked too. A negative rate would be divided into the cost model's
 * seconds and printed as a negative speed.
 */
#define PLAN_EFF_MIN 0.01

enum num_range {
    NUM_NONNEG, /* finite, >= 0 */
    NUM_EFF,    /* finite, in [PLAN_EFF_MIN, MT_PLAN_LEARNED_EFF_MAX] */
};

static double
get_num(struct reader *r, json_t *obj, const char *section, const char *key, enum num_range range)
{
    json_t *v = member(r, obj, section, key);
    double x;

    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0, "plan '%s': field '%s.%s' must be a number", r->path,
                            section, key);
        }
        return 0;
    }
    x = json_number_value(v);
    if (range == NUM_EFF && !(isfinite(x) && x >= PLAN_EFF_MIN && x <= MT_PLAN_LEARNED_EFF_MAX)) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0,
                            "plan '%s': field '%s.%s' must be an efficiency in [%g, %g] (got %g; "
                            "make the plan again with moetier plan)",
                            r->path, section, key, PLAN_EFF_MIN, MT_PLAN_LEARNED_EFF_MAX, x);
        }
        return 0;
    }
    if (range == NUM_NONNEG && !(isfinite(x) && x >= 0)) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0,
                            "plan '%s': field '%s.%s' must be a finite number >= 0 (got %g)",
                            r->path, section, key, x);
        }
        return 0;
    }
    return x;
}

/* A number the plan may leave out (older plans have no learned fields): dflt when absent. */
static double
opt_num(struct reader *r, json_t *obj, const char *section, const char *key, double dflt,
        enum num_range range)
{
    return json_object_get(obj, key) != NULL ? get_num(r, obj, section, key, range) : dflt;
}

static void
get_str(struct reader *r, json_t *obj, const char *section, const char *key, char *dst, size_t size)
{
    json_t *v = member(r, obj, section, key);

    if (v == NULL) {
        return;
    }
    if (!json_is_string(v)) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0, "plan '%s': field '%s.%s' must be a string", r->path,
                            section, key);
        }
        return;
    }
    snprintf(dst, size, "%s", json_string_value(v));
}

static void
get_tiers(struct reader *r, json_t *lo, const char *key, int layer, int E, uint8_t *dst)
{
    json_t *v = member(r, lo, "layers[]", key);
    const char *s;

    if (v == NULL) {
        return;
    }
    if (!json_is_string(v) || json_string_length(v) != (size_t)E) {
        if (r->st == MT_OK) {
            r->st = mt_fail(MT_ERR_FORMAT, 0,
                            "plan '%s': layer %d '%s' must be a string of %d tier codes", r->path,
                            layer, key, E);
        }
        return;
    }
    s = json_string_value(v);
    for (int e = 0; e < E; e++) {
        enum mt_tier t = mt_tier_from_code(s[e]);
        if (t == MT_TIER_COUNT || t == MT_TIER_NONE) {
            if (r->st == MT_OK) {
                r->st = mt_fail(MT_ERR_FORMAT, 0,
                                "plan '%s': layer %d '%s' has code '%c' for expert %d (want one "
                                "of G C P N)",
                                r->path, layer, key, s[e], e);
            }
            return;
        }
        dst[e] = (uint8_t)t;
    }
}

/*
 * The model fields and the dims_hash written beside them must agree: a plan whose numbers were
 * edited by hand (or damaged) would otherwise place experts for a model it does not describe.
 */
static mt_status_t
check_dims_hash(const struct mt_plan *p, const char *path, json_t *m)
{
    const char *text = json_string_value(json_object_get(m, "dims_hash"));
    struct mt_model_config cfg;
    uint64_t want;
    size_t n = text != NULL ? strlen(text) : 0;

    if (n != 16 || strspn(text, "0123456789abcdef") != 16) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': field 'model.dims_hash' must be 16 lowercase hex digits", path);
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.num_hidden_layers = p->n_layers;
    cfg.n_routed_experts = p->n_experts;
    cfg.num_experts_per_tok = p->k;
    cfg.hidden_size = p->hidden_size;
    cfg.moe_intermediate_size = p->moe_intermediate_size;
    cfg.first_k_dense_replace = p->first_k_dense_replace;
    want = mt_plan_dims_hash(&cfg, p->fp8, p->expert_bytes);
    if (p->dims_hash != want) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': dims_hash %s does not match its model fields (which hash to "
                       "%016" PRIx64 "): the plan was edited or damaged (make it again with "
                       "moetier plan)",
                       path, text, want);
    }
    return MT_OK;
}

/*
 * The placement must fit the budgets the plan records, in the planner's own accounting: the
 * experts' bytes within what the budgets leave (mt_plan_expert_room), and the experts the layers
 * put on the GPU and in DRAM within those bytes (counted as mt_plan_problem_evaluate counts
 * them). A plan edited by hand past them would print budgets that do not add up and predict for
 * memory it does not have; `plan --learn` would fail on it later with a planner message. Whether
 * the plan fits the machine it runs on is the run's check (cli_autoplan.c, check_fits).
 */
static mt_status_t
check_budgets(const struct mt_plan *p, const char *path)
{
    bool gpu = p->hbm_gbps > 0; /* the planner refuses a GPU without an HBM rate */
    uint64_t gpu_room;
    uint64_t dram_room;
    int n_gpu = 0;
    int n_dram = 0;
    int fit;

    mt_plan_expert_room(p, gpu, &gpu_room, &dram_room);
    if (p->gpu_expert_bytes > gpu_room) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': field 'budgets.gpu_expert_bytes' is %" PRIu64 ", more than "
                       "the %" PRIu64 " bytes %s (edit the budgets consistently, or make the "
                       "plan again with moetier plan)",
                       path, p->gpu_expert_bytes, gpu_room,
                       gpu ? "gpu_mem_bytes leaves after always_on_bytes, kv_bytes and "
                             "gpu_reserve_bytes"
                           : "of a plan without a GPU (hardware.hbm_gbps 0)");
    }
    if (p->dram_expert_bytes > dram_room) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': field 'budgets.dram_expert_bytes' is %" PRIu64 ", more than "
                       "the %" PRIu64 " bytes cpu_mem_bytes leaves after cpu_reserve_bytes%s "
                       "(edit the budgets consistently, or make the plan again with moetier "
                       "plan)",
                       path, p->dram_expert_bytes, dram_room,
                       gpu ? "" : ", always_on_bytes and kv_bytes (a plan without a GPU)");
    }
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts; i++) {
        n_gpu += p->tiers[i] == MT_TIER_GPU;
        n_dram += mt_plan_tier_is_dram(p->tiers[i]);
    }
    fit = mt_plan_slots((double)p->gpu_expert_bytes, (double)p->expert_bytes);
    if (n_gpu > fit) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': its layers put %d expert%s on the GPU ('G'), but "
                       "budgets.gpu_expert_bytes %" PRIu64 " holds %d of %" PRIu64 " bytes (move "
                       "experts off the GPU, or make the plan again with moetier plan)",
                       path, n_gpu, n_gpu == 1 ? "" : "s", p->gpu_expert_bytes, fit,
                       p->expert_bytes);
    }
    fit = mt_plan_slots((double)p->dram_expert_bytes, (double)p->expert_bytes);
    if (n_dram > fit) {
        return mt_fail(MT_ERR_FORMAT, 0,
                       "plan '%s': its layers put %d expert%s in DRAM ('C', 'P'), but "
                       "budgets.dram_expert_bytes %" PRIu64 " holds %d of %" PRIu64 " bytes (move "
                       "experts to NVMe ('N'), or make the plan again with moetier plan)",
                       path, n_dram, n_dram == 1 ? "" : "s", p->dram_expert_bytes, fit,
                       p->expert_bytes);
    }
    return MT_OK;
}

/*
 * Every tier the layers use must have the rates that compute it in the plan's own hardware
 * section, as the cost model reads them back (planner.c replan_problem, planner_cost.c
 * mt_plan_tiers_feasible, one decode token at a time): 'C' the CPU's DRAM rate, 'P' PCIe and
 * the GPU, 'N' the disk and, in decode, the CPU that computes what it streams. 0 there is the
 * planner's "no such hardware", so a plan with 'C' experts and hardware.dram_gbps 0 was edited:
 * it loaded, and the run's report then failed to predict it ("expert 0 of layer 0 has tier 1,
 * impossible here", twice). 'G' experts without a GPU are check_budgets' (no GPU room).
 */
static mt_status_t
check_tier_rates(const struct mt_plan *p, const char *path)
{
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts; i++) {
        const uint8_t codes[2] = {p->tiers[i], p->prefill_tiers[i]};

        for (int k = 0; k < 2; k++) {
            const char *field = NULL;

            switch (codes[k]) {
            case MT_TIER_GPU:
                field = p->hbm_gbps > 0 ? NULL : "hbm_gbps";
                break;
            case MT_TIER_DRAM_CPU:
                field = p->dram_gbps > 0 ? NULL : "dram_gbps";
                break;
            case MT_TIER_DRAM_PCIE:
                field = p->pcie_gbps > 0 ? p->hbm_gbps > 0 ? NULL : "hbm_gbps" : "pcie_gbps";
                break;
            case MT_TIER_NVME:
                field = p->disk_gbps > 0 ? p->dram_gbps > 0 ? NULL : "dram_gbps" : "disk_gbps";
                break;
            default:
                break; /* a dense layer's MT_TIER_NONE */
            }
            if (field != NULL) {
                return mt_fail(MT_ERR_FORMAT, 0,
                               "plan '%s': layer %zu puts expert %zu on '%c' in '%s', but "
                               "field 'hardware.%s' is 0: the plan has no rate to compute it "
                               "with (make the plan again with moetier plan)",
                               path, i / (size_t)p->n_experts, i % (size_t)p->n_experts,
                               mt_tier_code((enum mt_tier)codes[k]), k == 0 ? "tiers" : "prefill",
                               field);
            }
        }
    }
    return MT_OK;
}

/*
 * The prediction is the one of the placement the layers held when the plan was made. A plan
 * whose placement was edited by hand (the tests make all-DRAM and all-NVMe plans so) or whose
 * numbers were changed no longer has one: each tier's experts and bytes are counted again from
 * the layers, and the times, which need the routing the plan was made with, become 0, a
 * hand-made plan's "not predicted" (run prints and divides by none). One warning says so.
 */
static void
reconcile_prediction(struct mt_plan *p, const char *path)
{
    int count[MT_TIER_COUNT] = {0};
    /* decode_ms is 1000 / decode_tok_s: both 0 (no prediction) or neither */
    bool stale = (p->decode_tok_s > 0) != (p->decode_ms > 0) ||
                 (p->decode_tok_s > 0 && fabs(p->decode_tok_s * p->decode_ms / 1e3 - 1) > 1e-6);

    for (size_t i = 0; i < (size_t)p->n_layers * (size_t)p->n_experts; i++) {
        if (p->tiers[i] < MT_TIER_COUNT) {
            count[p->tiers[i]]++;
        }
    }
    for (int k = 0; k < MT_TIER_COUNT; k++) {
        const struct mt_plan_tier_stats *ts = &p->tier[k];
        stale = stale || ts->experts != count[k] ||
                fabs(ts->bytes - (double)count[k] * (double)p->expert_bytes) > 0.5 ||
                ts->bytes_per_token > ts->bytes * (1 + 1e-9);
    }
    if (!stale) {
        return;
    }
    mt_log_warn("plan '%s': its prediction is not that of its layers (edited?): it predicts "
                "nothing now (moetier plan makes a plan with a prediction)",
                path);
    for (int k = 0; k < MT_TIER_COUNT; k++) {
        p->tier[k] = (struct mt_plan_tier_stats){
            .experts = count[k], .bytes = (double)count[k] * (double)p->expert_bytes};
    }
    p->decode_tok_s = p->decode_ms = p->decode_ms_mean_load = p->always_on_ms = 0;
    p->prefill_tok_s = p->prefill_ms = 0;
    p->host_layers_per_token = 0;
    snprintf(p->bottleneck, sizeof(p->bottleneck), "not predicted");
    snprintf(p->prefill_not_modelled, sizeof(p->prefill_not_modelled),
             "the plan was edited after it was made");
}

mt_status_t
mt_plan_load(const char *path, struct mt_plan **plan_out)
{
    struct reader r = {path, MT_OK};
    json_t *root;
    json_t *v;
    json_t *m;
    json_t *b;
    json_t *h;
    json_t *a;
    json_t *pr;
    json_t *layers;
    struct mt_plan *p = NULL;
    int E;
    int L;

    r.st = mt_json_load_versioned(path, "plan", "moetier-plan", MT_PLAN_VERSION, &root);
    if (r.st != MT_OK) {
        return r.st;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        r.st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan");
        goto out_decref;
    }
    m = member(&r, root, "", "model");
    b = member(&r, root, "", "budgets");
    h = member(&r, root, "", "hardware");
    a = member(&r, root, "", "activation");
    pr = member(&r, root, "", "prediction");
    layers = member(&r, root, "", "layers");
    only_keys(&r, root, "", top_keys);
    only_keys(&r, m, "model", model_keys);
    only_keys(&r, b, "budgets", budget_keys);
    only_keys(&r, h, "hardware", hardware_keys);
    only_keys(&r, a, "activation", activation_keys);
    only_keys(&r, pr, "prediction", prediction_keys);
    if (r.st != MT_OK) {
        goto out_destroy;
    }
    p->n_layers = (int)get_int(&r, m, "model", "num_hidden_layers", 1, MT_MAX_LAYERS);
    p->n_experts = (int)get_int(&r, m, "model", "n_routed_experts", 1, 65536);
    p->k = (int)get_int(&r, m, "model", "num_experts_per_tok", 1, 65536);
    p->hidden_size = (int)get_int(&r, m, "model", "hidden_size", 1, INT32_MAX);
    p->moe_intermediate_size = (int)get_int(&r, m, "model", "moe_intermediate_size", 1, INT32_MAX);
    p->first_k_dense_replace =
        (int)get_int(&r, m, "model", "first_k_dense_replace", 0, MT_MAX_LAYERS);
    v = member(&r, m, "model", "fp8");
    if (v != NULL && !json_is_boolean(v) && r.st == MT_OK) {
        r.st =
            mt_fail(MT_ERR_FORMAT, 0, "plan '%s': field 'model.fp8' must be true or false", path);
    }
    p->fp8 = json_is_true(v);
    p->expert_bytes = (uint64_t)get_int(&r, m, "model", "expert_bytes", 1, INT64_MAX);
    {
        char hash[32] = "";
        get_str(&r, m, "model", "dims_hash", hash, sizeof(hash));
        p->dims_hash = strtoull(hash, NULL, 16);
    }
    p->budget.gpu_mem = (uint64_t)get_int(&r, b, "budgets", "gpu_mem_bytes", 0, INT64_MAX);
    p->budget.cpu_mem = (uint64_t)get_int(&r, b, "budgets", "cpu_mem_bytes", 0, INT64_MAX);
    p->budget.gpu_reserve = (uint64_t)get_int(&r, b, "budgets", "gpu_reserve_bytes", 0, INT64_MAX);
    p->budget.cpu_reserve = (uint64_t)get_int(&r, b, "budgets", "cpu_reserve_bytes", 0, INT64_MAX);
    /* at least one token: the planner never writes 0 (--ctx and the model's positions are
       >= 1), and a plan for no KV cache budgets GPU memory the run's cache then overruns */
    p->budget.ctx = (int)get_int(&r, b, "budgets", "ctx", 1, INT32_MAX);
    p->budget.prefill_batch = (int)get_int(&r, b, "budgets", "prefill_batch", 1, INT32_MAX);
    p->budget.cpu_eff = get_num(&r, b, "budgets", "cpu_eff", NUM_EFF);
    p->always_on_bytes = (uint64_t)get_int(&r, b, "budgets", "always_on_bytes", 0, INT64_MAX);
    p->kv_bytes = (uint64_t)get_int(&r, b, "budgets", "kv_bytes", 0, INT64_MAX);
    p->gpu_expert_bytes = (uint64_t)get_int(&r, b, "budgets", "gpu_expert_bytes", 0, INT64_MAX);
    p->dram_expert_bytes = (uint64_t)get_int(&r, b, "budgets", "dram_expert_bytes", 0, INT64_MAX);
    get_str(&r, h, "hardware", "source", p->hw_source, sizeof(p->hw_source));
    p->hbm_gbps = get_num(&r, h, "hardware", "hbm_gbps", NUM_NONNEG);
    p->gpu_tflops = get_num(&r, h, "hardware", "gpu_tflops", NUM_NONNEG);
    p->dram_gbps = get_num(&r, h, "hardware", "dram_gbps", NUM_NONNEG);
    p->cpu_gflops = get_num(&r, h, "hardware", "cpu_gflops", NUM_NONNEG);
    p->pcie_gbps = get_num(&r, h, "hardware", "pcie_gbps", NUM_NONNEG);
    p->disk_gbps = get_num(&r, h, "hardware", "disk_gbps", NUM_NONNEG);
    /* what mt_plan_build kept out of the experts' DRAM for the GPU engine's prompt buffers */
    p->host_work_bytes = p->hbm_gbps > 0 ? mt_plan_host_work_bytes(p->k, p->hidden_size,
                                                                   p->budget.ctx)
                                         : 0;
    p->gpu_eff = opt_num(&r, h, "hardware", "gpu_eff", 1, NUM_EFF);
    p->disk_eff = opt_num(&r, h, "hardware", "disk_eff", 1, NUM_EFF);
    p->host_layer_ms = opt_num(&r, h, "hardware", "host_layer_ms", 0, NUM_NONNEG);
    p->cpu_prefill_gbps = opt_num(&r, h, "hardware", "cpu_prefill_gbps", 0, NUM_NONNEG);
    p->cpu_prefill_gflops = opt_num(&r, h, "hardware", "cpu_prefill_gflops", 0, NUM_NONNEG);
    p->cpu_prefill_eff = opt_num(&r, h, "hardware", "cpu_prefill_eff", 1, NUM_EFF);
    /* absent from plans written before the GPU's prompt arithmetic was modelled: 0 */
    p->gpu_prefill_eff = opt_num(&r, h, "hardware", "gpu_prefill_eff", 0, NUM_EFF);
    p->host_layers_per_token =
        opt_num(&r, pr, "prediction", "host_layers_per_token", 0, NUM_NONNEG);
    get_str(&r, a, "activation", "source", p->activation, sizeof(p->activation));
    p->trace_tokens = (uint64_t)get_int(&r, a, "activation", "tokens", 0, INT64_MAX);
    p->decode_tok_s = get_num(&r, pr, "prediction", "decode_tok_s", NUM_NONNEG);
    if (json_is_null(json_object_get(pr, "prefill_tok_s"))) {
        get_str(&r, pr, "prediction", "prefill_not_modelled", p->prefill_not_modelled,
                sizeof(p->prefill_not_modelled));
        if (r.st == MT_OK && p->prefill_not_modelled[0] == '\0') {
            snprintf(p->prefill_not_modelled, sizeof(p->prefill_not_modelled), "?");
        }
    } else {
        p->prefill_tok_s = get_num(&r, pr, "prediction", "prefill_tok_s", NUM_NONNEG);
    }
    p->decode_ms = get_num(&r, pr, "prediction", "decode_ms", NUM_NONNEG);
    p->decode_ms_mean_load = get_num(&r, pr, "prediction", "decode_ms_mean_load", NUM_NONNEG);
    p->always_on_ms = get_num(&r, pr, "prediction", "always_on_ms", NUM_NONNEG);
    if (p->prefill_not_modelled[0] == '\0') {
        p->prefill_ms = get_num(&r, pr, "prediction", "prefill_ms_per_batch", NUM_NONNEG);
    }
    get_str(&r, pr, "prediction", "bottleneck", p->bottleneck, sizeof(p->bottleneck));
    v = member(&r, pr, "prediction", "tiers");
    {
        const char *names[MT_TIER_COUNT + 1];
        for (int k = 0; k < MT_TIER_COUNT; k++) {
            names[k] = mt_tier_name((enum mt_tier)k);
        }
        names[MT_TIER_COUNT] = NULL;
        only_keys(&r, v, "prediction.tiers", names);
    }
    for (int k = 0; k < MT_TIER_COUNT && r.st == MT_OK; k++) {
        const char *name = mt_tier_name((enum mt_tier)k);
        json_t *o = member(&r, v, "prediction.tiers", name);
        struct mt_plan_tier_stats *ts = &p->tier[k];
        char sec[40];

        snprintf(sec, sizeof(sec), "prediction.tiers.%s", name);
        only_keys(&r, o, sec, tier_stat_keys);
        ts->experts = (int)get_int(&r, o, sec, "experts", 0, INT32_MAX);
        ts->bytes = get_num(&r, o, sec, "bytes", NUM_NONNEG);
        ts->bytes_per_token = get_num(&r, o, sec, "bytes_per_token", NUM_NONNEG);
        ts->ms_per_token = get_num(&r, o, sec, "ms_per_token", NUM_NONNEG);
    }
    if (r.st != MT_OK) {
        goto out_destroy;
    }
    if ((r.st = check_dims_hash(p, path, m)) != MT_OK) {
        goto out_destroy;
    }
    L = p->n_layers;
    E = p->n_experts;
    p->tiers = malloc((size_t)L * E);
    p->prefill_tiers = malloc((size_t)L * E);
    if (p->tiers == NULL || p->prefill_tiers == NULL) {
        r.st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate plan of %d x %d experts", L, E);
        goto out_destroy;
    }
    memset(p->tiers, MT_TIER_NONE, (size_t)L * E);
    memset(p->prefill_tiers, MT_TIER_NONE, (size_t)L * E);
    if (!json_is_array(layers)) {
        r.st = mt_fail(MT_ERR_FORMAT, 0, "plan '%s': 'layers' must be an array", path);
        goto out_destroy;
    }
    for (size_t i = 0; i < json_array_size(layers) && r.st == MT_OK; i++) {
        json_t *lo = json_array_get(layers, i);
        only_keys(&r, lo, "layers[]", layer_keys);
        int l = (int)get_int(&r, lo, "layers[]", "layer", 0, L - 1);
        if (r.st != MT_OK) {
            break;
        }
        if (p->tiers[(size_t)l * E] != MT_TIER_NONE) {
            r.st = mt_fail(MT_ERR_FORMAT, 0, "plan '%s': layer %d listed twice", path, l);
            break;
        }
        get_tiers(&r, lo, "tiers", l, E, p->tiers + (size_t)l * E);
        get_tiers(&r, lo, "prefill", l, E, p->prefill_tiers + (size_t)l * E);
        for (int e = 0; e < E && r.st == MT_OK; e++) {
            int t = p->tiers[(size_t)l * E + e];
            int pt = p->prefill_tiers[(size_t)l * E + e];
            if (t != pt && !(mt_plan_tier_is_dram(t) && mt_plan_tier_is_dram(pt))) {
                r.st = mt_fail(MT_ERR_FORMAT, 0,
                               "plan '%s': layer %d expert %d is '%c' in 'tiers' but '%c' in "
                               "'prefill': prefill may only change how a DRAM expert is "
                               "computed (C or P), not where it is stored",
                               path, l, e, mt_tier_code((enum mt_tier)t),
                               mt_tier_code((enum mt_tier)pt));
            }
        }
    }
    if (r.st != MT_OK || (r.st = check_budgets(p, path)) != MT_OK ||
        (r.st = check_tier_rates(p, path)) != MT_OK) {
        goto out_destroy;
    }
    reconcile_prediction(p, path);
    json_decref(root);
    *plan_out = p;
    return MT_OK;

out_destroy:
    mt_plan_destroy(p);
out_decref:
    json_decref(root);
    return r.st;
}

mt_status_t
mt_plan_check_model(const struct mt_plan *p, const char *what, const struct mt_model_config *cfg,
                    uint64_t expert_bytes)
{
    struct {
        const char *name;
        long long plan;
        long long model;
    } f[] = {
        {"num_hidden_layers", p->n_layers, cfg->num_hidden_layers},
        {"n_routed_experts", p->n_experts, cfg->n_routed_experts},
        {"num_experts_per_tok", p->k, cfg->num_experts_per_tok},
        {"hidden_size", p->hidden_size, cfg->hidden_size},
        {"moe_intermediate_size", p->moe_intermediate_size, cfg->moe_intermediate_size},
        {"first_k_dense_replace", p->first_k_dense_replace, cfg->first_k_dense_replace},
        {"expert_bytes", (long long)p->expert_bytes, (long long)expert_bytes},
    };

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (f[i].plan != f[i].model) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "plan '%s' was made for another model: %s is %lld in the plan, %lld in "
                           "the model",
                           what, f[i].name, f[i].plan, f[i].model);
        }
    }
    for (int l = 0; l < p->n_layers; l++) {
        bool planned = p->tiers[(size_t)l * p->n_experts] != MT_TIER_NONE;
        if (planned != mt_config_layer_is_moe(cfg, l)) {
            return mt_fail(MT_ERR_FORMAT, 0,
                           "plan '%s' was made for another model: layer %d is %s in the plan but "
                           "%s in the model",
                           what, l, planned ? "MoE" : "dense",
                           mt_config_layer_is_moe(cfg, l) ? "MoE" : "dense");
        }
    }
    return MT_OK;
}
