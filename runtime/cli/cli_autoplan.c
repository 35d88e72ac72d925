/* SPDX-License-Identifier: MIT */
/*
 * cli_autoplan.c - the device, the budgets, the profile and the plan of run, chat and serve
 * (see cli_autoplan.h for the rules).
 *
 * The order of the decisions matters: the device first (it decides which memory is the
 * experts' first home), then the budgets, then the cheap question "does everything fit in the
 * first home?", and only when the answer is no the profile and the planner. The plan is then
 * checked the same way whether it came from a file or was made here: against the model, the
 * budgets of this run and the memory free now.
 */
#include <config.h>

#include "runtime/cli/cli_autoplan.h"

#include "io/expert_source.h"
#include "io/uring_reader.h" /* MT_IO_ALIGN */
#include "kernels/kernels.h"
#include "runtime/base/mem_available.h"
#include "runtime/base/size_text.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/model/model.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double
gib(double v)
{
    return v / 1073741824.0;
}

/* ---- the device --------------------------------------------------------------------------- */

mt_status_t
mt_cli_device_pick(enum mt_cli_device want, const char *from, bool say,
                   enum mt_device *device_out)
{
    struct mt_gpu_info info;
    mt_status_t st;
    int n = 0;

    *device_out = MT_DEVICE_CPU;
    if (want == MT_CLI_DEVICE_CPU) {
        if (say) {
            mt_log_info("device: CPU (%s)", from);
        }
        return MT_OK;
    }
    st = mt_gpu_device_count(&n);
    if (want == MT_CLI_DEVICE_GPU && (st != MT_OK || n == 0)) {
        char why[256]; /* a copy: mt_fail writes the buffer mt_last_error() returns */

        snprintf(why, sizeof(why), "%s",
                 st != MT_OK ? mt_last_error() : mt_gpu_device_none_reason());
        return mt_fail(MT_ERR_UNSUPPORTED, 0, "%s: no CUDA device (%s); use --device cpu",
                       strcmp(from, "--device") == 0 ? "--device gpu" : "MOETIER_DEVICE=gpu", why);
    }
    if (want == MT_CLI_DEVICE_GPU) {
        if (say) {
            mt_log_info("device: GPU (%s)", from);
        }
        *device_out = MT_DEVICE_GPU;
        return MT_OK;
    }
    if (st != MT_OK || n == 0) {
        if (say) {
            mt_log_info("device: CPU (auto: %s)", st != MT_OK ? mt_last_error()
                                                               : mt_gpu_device_none_reason());
        }
        return MT_OK;
    }
    if (say) {
        if (mt_gpu_device_info(0, &info) == MT_OK) {
            mt_log_info("device: GPU 0, %s, %.1f GiB free (auto; --device cpu for the CPU)",
                        info.name, gib((double)info.free_mem));
        } else {
            mt_log_info("device: GPU 0 (auto; --device cpu for the CPU)");
        }
    }
    *device_out = MT_DEVICE_GPU;
    return MT_OK;
}

/* ---- memory and the profile --------------------------------------------------------------- */

/* The GPU engine's default budget: free device memory minus max(512 MiB, 5%); 0 if unknown. */
static uint64_t
gpu_free_budget(void)
{
    struct mt_gpu_info info = {0};
    uint64_t margin;

    if (mt_gpu_device_info(0, &info) != MT_OK) {
        return 0;
    }
    margin = MT_MAX((uint64_t)512 << 20, (uint64_t)info.free_mem / 20);
    return info.free_mem > margin ? info.free_mem - margin : 0;
}

mt_status_t
mt_cli_profile_get(const char *hw_path, const char *disk, struct mt_hwprofile *out)
{
    char path[4096];
    char dir[4096];
    bool cache;
    mt_status_t st;

    if (hw_path != NULL) {
        return mt_hwprofile_load(hw_path, out);
    }
    /*
     * The cache only saves the bench next time: no cache directory (HOME unset), or one that
     * cannot be written, costs a warning, not the run. mt_fail stays quiet for those calls so
     * that the one warning is all the user sees.
     */
    mt_log_set_quiet(true);
    cache = mt_hwprofile_cache_path(path, sizeof(path)) == MT_OK;
    mt_log_set_quiet(false);
    if (!cache) {
        mt_log_warn("%s; the profile measured now is not cached", mt_last_error());
    } else if (access(path, F_OK) == 0) {
        mt_log_set_quiet(true);
        st = mt_hwprofile_load(path, out);
        mt_log_set_quiet(false);
        if (st != MT_OK) {
            /* not measured over: it may hold rates `plan --learn` taught it */
            char why[512];
            snprintf(why, sizeof(why), "%s", mt_last_error());
            return mt_fail(st, 0, "the cached hardware profile cannot be used: %s (move it away "
                           "to measure again, or give --hw)", why);
        } else {
            mt_log_info("hardware profile: %s (cached; delete it to measure again)", path);
        }
        return st;
    }
    if (cache) {
        fprintf(stderr, "mt: no hardware profile of this machine yet: measuring one (up to a "
                "minute, cached in '%s')\n", path);
    } else {
        fprintf(stderr, "mt: no hardware profile of this machine: measuring one (up to a "
                "minute)\n");
    }
    /* no disk named, or a file too small to time: the one the cache is on (the bench writes
       its test file there) */
    mt_log_set_quiet(true);
    bool have_dir = cache && mt_hwprofile_cache_dir_make(dir, sizeof(dir)) == MT_OK;
    mt_log_set_quiet(false);
    if (disk == NULL && have_dir) {
        disk = dir;
    }
    bool disk_failed;
    st = mt_cli_bench_quick_profile(disk, have_dir ? dir : NULL, out, &disk_failed);
    if (st != MT_OK || !cache) {
        return st;
    }
    if (disk_failed) {
        /* cached, it would keep every later plan off the disk after the disk is fixed */
        mt_log_warn("the profile is not cached, as its disk rate is missing");
        return MT_OK;
    }
    mt_log_set_quiet(true);
    st = mt_hwprofile_cache_save(out, path);
    mt_log_set_quiet(false);
    if (st != MT_OK) {
        /* a read-only home should not stop the run: it only costs the bench again next time */
        mt_log_warn("the profile is not cached: %s", mt_last_error());
    } else {
        snprintf(out->file, sizeof(out->file), "%.511s", path);
    }
    return MT_OK;
}

void
mt_cli_default_budgets(const struct mt_hwprofile *hw, bool gpu_set, bool cpu_set,
                       struct mt_plan_budget *b)
{
    char host[256] = "";
    bool here;
    int n = 0;

    gethostname(host, sizeof(host) - 1);
    here = hw->host[0] != '\0' && strcmp(hw->host, host) == 0;
    if (!gpu_set && hw->gpu.present) {
        uint64_t total = hw->gpu.mem_bytes;
        uint64_t margin = MT_MAX((uint64_t)512 << 20, total / 20);
        if (here && mt_gpu_device_count(&n) == MT_OK && n > 0) {
            b->gpu_mem = gpu_free_budget();
        } else {
            b->gpu_mem = total > margin ? total - margin : 0;
        }
    }
    if (!cpu_set) {
        uint64_t avail = here ? mt_mem_available() : 0;
        b->cpu_mem = avail > 0 ? avail : hw->dram_bytes / 10 * 9;
    }
}

/* ---- the plan from a file ----------------------------------------------------------------- */

/* DRAM and GPU memory a placement needs on an engine (experts by tier, always-on where it is). */
struct need {
    uint64_t dram_experts;
    uint64_t dram;
    uint64_t gpu;
    int count[MT_TIER_COUNT];
};

static void
placement_need(const struct mt_model_config *cfg, const struct mt_model_sizes *sz,
               const uint8_t *tiers, uint8_t own, bool gpu, uint64_t kv, struct need *n)
{
    memset(n, 0, sizeof(*n));
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        for (int x = 0; x < cfg->n_routed_experts && cfg->layer_is_moe[l]; x++) {
            /* own: where the experts go without tiers */
            uint8_t t = tiers != NULL ? tiers[(size_t)l * cfg->n_routed_experts + x] : own;
            n->count[t < MT_TIER_COUNT ? t : MT_TIER_DRAM_CPU]++;
        }
    }
    /* the CPU engine computes GPU-tier experts from DRAM */
    int in_dram = n->count[MT_TIER_DRAM_CPU] + n->count[MT_TIER_DRAM_PCIE] +
                  (gpu ? 0 : n->count[MT_TIER_GPU]);
    n->dram_experts = (uint64_t)in_dram * sz->routed_expert_bytes;
    /* the GPU engine keeps the embedding table in host memory */
    n->dram =
        n->dram_experts + (gpu ? sz->other_bytes - sz->gpu_other_bytes : sz->other_bytes + kv);
    n->gpu =
        gpu ? (uint64_t)n->count[MT_TIER_GPU] * sz->routed_expert_bytes + sz->gpu_other_bytes + kv
            : 0;
}

/*
 * The GPU engine's KV cache a token, all layers: its latent dtype and its indexer's keys, not
 * the planner's reference layout (bf16 latent, FP8 index key: 1,284 B a layer of V3.2), which
 * the GPU outgrows by ~30% with its exact keys (512 B a layer); the FP8 latent adds the BF16
 * rows it is widened into, once for all layers. (The GPU holds the whole context from the start;
 * the CPU engine's cache grows with the positions used, which the reference layout budgets.)
 */
uint64_t
mt_cli_gpu_kv_bytes(const struct mt_model_config *cfg, enum mt_dtype latent, bool sparse,
                    enum mt_indexer_mode indexer)
{
    struct mt_kv_layout l = {
        .latent = latent,
        .index_exact = sparse && indexer == MT_INDEXER_EXACT,
        .index_fp8 = sparse && indexer == MT_INDEXER_FP8,
    };
    uint64_t b = mt_kv_bytes_per_token_layer(cfg, &l) * (uint64_t)cfg->num_hidden_layers;

    return b + (latent == MT_DTYPE_F8_E4M3 ? 2 * (uint64_t)cfg->kv_lora_rank : 0);
}

static uint64_t
gpu_kv_bytes_per_token(const struct mt_cli_engine_flags *f, const struct mt_model_config *cfg)
{
    return mt_cli_gpu_kv_bytes(cfg, f->kv_dtype_set ? f->engine.kv_dtype : MT_DTYPE_BF16,
                               f->engine.attention == MT_ATTN_SPARSE, f->engine.indexer);
}

/* The budgets of this run: the flags, else the machine's free memory. */
static void
run_budget(const struct mt_cli_engine_flags *f, const struct mt_model_config *cfg, bool gpu,
           struct mt_plan_budget *b)
{
    mt_plan_budget_default(b);
    if (f->cpu_reserve_set) {
        b->cpu_reserve = f->cpu_reserve;
    }
    b->cpu_mem = f->cpu_mem > 0 ? f->cpu_mem : mt_mem_available();
    b->gpu_mem = !gpu ? 0 : f->engine.gpu_mem > 0 ? f->engine.gpu_mem : gpu_free_budget();
    b->gpu_mem_default = gpu && f->engine.gpu_mem == 0;
    /* the context the engine will hold (--ctx, a long prompt's, else the default) */
    b->ctx = (int)MT_MIN(mt_cli_ctx(f, cfg), INT32_MAX);
    if (f->engine.ctx > cfg->max_position_embeddings) {
        mt_log_warn("--ctx %lld is more than the model's %d positions: %d are held",
                    (long long)f->engine.ctx, cfg->max_position_embeddings,
                    cfg->max_position_embeddings);
    }
}

/*
 * Whether a placement fits this run: the budgets given (--cpu-mem, --gpu-mem) and the memory
 * free now. MT_ERR_INVAL naming the plan, what it needs and what there is.
 */
static mt_status_t
check_fits(const char *what, const struct need *n, const struct mt_cli_engine_flags *f, bool gpu)
{
    uint64_t avail = mt_mem_available();
    uint64_t gpu_free = gpu ? gpu_free_budget() : 0;

    if (f->cpu_mem > 0 && n->dram > f->cpu_mem) {
        return mt_fail(MT_ERR_INVAL, 0, "%s needs %s of DRAM for its experts%s, more than "
                       "--cpu-mem %s (make a plan for this budget, or raise --cpu-mem)", what,
                       mt_size_text(n->dram).s,
                       gpu ? " and the embedding table" : ", always-on weights and KV cache",
                       mt_size_text(f->cpu_mem).s);
    }
    if (avail > 0 && n->dram > avail) {
        return mt_fail(MT_ERR_INVAL, 0, "%s needs %s of DRAM, but only %s are available now "
                       "(MemAvailable): it no longer fits this machine (plan again, or give a "
                       "smaller --cpu-mem to plan with)", what, mt_size_text(n->dram).s,
                       mt_size_text(avail).s);
    }
    if (gpu && f->engine.gpu_mem > 0 && n->gpu > f->engine.gpu_mem) {
        return mt_fail(MT_ERR_INVAL, 0, "%s needs %s on the GPU, more than --gpu-mem %s (make "
                       "a plan for this budget, or raise --gpu-mem)", what, mt_size_text(n->gpu).s,
                       mt_size_text(f->engine.gpu_mem).s);
    }
    if (gpu && gpu_free > 0 && n->gpu > gpu_free) {
        return mt_fail(MT_ERR_INVAL, 0, "%s needs %s on the GPU, but %s are free there now "
                       "(less a margin): it no longer fits this machine (plan again)", what,
                       mt_size_text(n->gpu).s, mt_size_text(gpu_free).s);
    }
    return MT_OK;
}

/* ---- reporting ---------------------------------------------------------------------------- */

static void
say_where(const struct need *n, const struct mt_plan *p, const char *why)
{
    char pcie[64] = "";
    char pred[96] = "";

    if (n->count[MT_TIER_DRAM_PCIE] > 0) {
        snprintf(pcie, sizeof(pcie), ", %d in DRAM (to the GPU over PCIe)",
                 n->count[MT_TIER_DRAM_PCIE]);
    }
    if (p != NULL && p->decode_tok_s > 0) { /* 0: a hand-made or edited plan predicts nothing */
        snprintf(pred, sizeof(pred), "; predicted %.2f tok/s decode", p->decode_tok_s);
    } else if (p != NULL) {
        snprintf(pred, sizeof(pred), "; no decode prediction");
    }
    mt_log_info("experts: %d on GPU, %d in DRAM (CPU)%s, %d on NVMe%s%s%s",
                n->count[MT_TIER_GPU], n->count[MT_TIER_DRAM_CPU], pcie, n->count[MT_TIER_NVME],
                pred, why[0] != '\0' ? " " : "", why);
}

/* Why each tier holds what it holds: which budget filled, and what spilled where. */
static void
print_why(FILE *out, const struct mt_plan *p)
{
    bool have_gpu = p->hbm_gbps > 0;
    double eb = (double)p->expert_bytes;
    int n_all = 0;

    for (int k = 0; k < MT_TIER_COUNT; k++) {
        n_all += p->tier[k].experts;
    }
    fprintf(out, "why        : ");
    if (have_gpu) {
        bool full = p->tier[MT_TIER_GPU].bytes + eb > (double)p->gpu_expert_bytes;
        fprintf(out, "the GPU holds %d experts in the %s --gpu-mem leaves for them%s;\n"
                "             ", p->tier[MT_TIER_GPU].experts, mt_size_text(p->gpu_expert_bytes).s,
                full ? " (full)" : " (room left: the rest are faster elsewhere)");
    }
    int dram = p->tier[MT_TIER_DRAM_CPU].experts + p->tier[MT_TIER_DRAM_PCIE].experts;
    bool dram_full = (double)dram * eb + eb > (double)p->dram_expert_bytes;
    fprintf(out, "DRAM holds %d in the %s --cpu-mem leaves for experts%s", dram,
            mt_size_text(p->dram_expert_bytes).s, dram_full ? " (full)" : "");
    if (p->tier[MT_TIER_NVME].experts > 0) {
        fprintf(out, ";\n             %d of %d did not fit %s and stream from disk at %.1f GB/s",
                p->tier[MT_TIER_NVME].experts, n_all,
                have_gpu ? "the GPU and DRAM budgets" : "the DRAM budget", p->disk_gbps);
    }
    fprintf(out, "\n             the slowest source per layer sets the speed: here %s\n",
            p->bottleneck);
}

void
mt_cli_plan_print(FILE *out, const struct mt_plan *p)
{
    static const char *what[MT_TIER_COUNT] = {"GPU-resident (HBM)", "DRAM, CPU computes",
                                              "DRAM -> GPU over PCIe", "NVMe (streamed)"};
    double pk = (double)p->k / p->n_experts;
    bool have_gpu = p->hbm_gbps > 0; /* the planner refuses a GPU without an HBM rate */
    int n_moe = 0;

    for (int l = 0; l < p->n_layers; l++) {
        n_moe += p->tiers[(size_t)l * p->n_experts] != MT_TIER_NONE;
    }
    fprintf(out, "model      : %d layers (%d MoE x %d experts, k %d), expert %.2f MiB (%s), "
            "always-on %.2f GiB\n",
            p->n_layers, n_moe, p->n_experts, p->k, p->expert_bytes / 1048576.0,
            p->fp8 ? "FP8" : "BF16", gib((double)p->always_on_bytes));
    fprintf(out, "hardware   : %s\n", p->hw_source);
    fprintf(out, "rates      : HBM %.0f GB/s, GPU %.0f TFLOPS, DRAM %.0f GB/s (%s) x %.2f, CPU "
            "%.0f GFLOPS x %.2f, PCIe H2D %.1f GB/s, disk %.1f GB/s\n",
            p->hbm_gbps, p->gpu_tflops, p->dram_gbps, p->dram_source, p->budget.cpu_eff,
            p->cpu_gflops, p->budget.cpu_eff, p->pcie_gbps, p->disk_gbps);
    fprintf(out, "CPU eff    : %.3f (%s)\n", p->budget.cpu_eff, p->cpu_eff_source);
    if (p->cpu_prefill_gbps > 0) {
        fprintf(out, "CPU prefill: each expert run %.1f GB/s of its weights, then %.0f GFLOPS of "
                "its tokens (measured: profile cpu.expert_prefill_*)", p->cpu_prefill_gbps,
                p->cpu_prefill_gflops);
        if (p->cpu_prefill_eff > 0 && p->cpu_prefill_eff != 1) {
            fprintf(out, " x %.3f (learned)", p->cpu_prefill_eff);
        }
        fprintf(out, "\n");
    }
    if (have_gpu && p->gpu_prefill_eff > 0) {
        fprintf(out, "GPU prefill: a prompt's products, attention and indexer x %d (BF16X3) at "
                "%.0f TFLOPS x %.3f (%s)\n", MT_PLAN_GPU_PASSES, p->gpu_tflops,
                p->gpu_prefill_eff,
                p->gpu_prefill_eff != MT_PLAN_GPU_PREFILL_EFF ? "learned" : "assumed: the H200's");
    }
    if ((p->gpu_eff > 0 && p->gpu_eff != 1) || (p->disk_eff > 0 && p->disk_eff != 1)) {
        fprintf(out, "learned    : HBM x %.3f, disk x %.3f (the profile's learned section)\n",
                p->gpu_eff > 0 ? p->gpu_eff : 1, p->disk_eff > 0 ? p->disk_eff : 1);
    }
    if (p->host_layer_ms > 0) {
        fprintf(out, "host wait  : %.3f ms per MoE layer that uses an expert off the GPU "
                "(learned); %.2f such layers per token\n",
                p->host_layer_ms, p->host_layers_per_token);
    }
    if (have_gpu) {
        struct mt_plan_budget dflt;
        /* what the budgets leave beside the experts: the embedding table and the prompt
           buffers (a plan file from before session 37 did not keep the latter out) */
        uint64_t rest = p->budget.cpu_mem - p->budget.cpu_reserve - p->dram_expert_bytes;
        uint64_t work = MT_MIN(p->host_work_bytes, rest);
        uint64_t host = rest - work;

        mt_plan_budget_default(&dflt);
        char why[48] = "";

        if (p->budget.gpu_reserve_auto && p->budget.gpu_reserve > dflt.gpu_reserve &&
            p->reserve_chunk > 0) {
            snprintf(why, sizeof(why), " (for %d-token prompt chunks)", p->reserve_chunk);
        }
        fprintf(out, "GPU budget : %.1f GiB = always-on %.2f + KV %d tok %.2f + workspace %.2f%s + "
                "experts %.2f GiB\n",
                gib((double)p->budget.gpu_mem), gib((double)p->always_on_bytes), p->budget.ctx,
                gib((double)p->kv_bytes), gib((double)p->budget.gpu_reserve), why,
                gib((double)p->gpu_expert_bytes));
        fprintf(out, "DRAM budget: %.1f GiB = reserve %.2f + embedding table %.2f + prompt "
                "buffers %.2f + experts %.2f GiB\n",
                gib((double)p->budget.cpu_mem), gib((double)p->budget.cpu_reserve),
                gib((double)host), gib((double)work), gib((double)p->dram_expert_bytes));
    } else {
        fprintf(out, "GPU budget : none, the profile has no GPU (--gpu-mem is ignored)\n");
        fprintf(out, "DRAM budget: %.1f GiB = reserve %.2f + always-on %.2f + KV %d tok %.2f + "
                "experts %.2f GiB\n",
                gib((double)p->budget.cpu_mem), gib((double)p->budget.cpu_reserve),
                gib((double)p->always_on_bytes), p->budget.ctx, gib((double)p->kv_bytes),
                gib((double)p->dram_expert_bytes));
        uint64_t first = p->budget.cpu_reserve + p->always_on_bytes + p->kv_bytes;
        if (first > p->budget.cpu_mem) {
            /* the planner leaves the experts 0 then, and the sum above no longer adds up */
            fprintf(out, "             short by %s: the reserve, the always-on weights and the "
                    "KV do not\n             fit the DRAM budget, so this machine cannot run "
                    "the model as planned\n", mt_size_text(first - p->budget.cpu_mem).s);
        }
    }
    if (p->trace_tokens > 0) {
        fprintf(out, "activation : %s (%llu tokens)\n", p->activation,
                (unsigned long long)p->trace_tokens);
    } else {
        fprintf(out, "activation : uniform, p = k/E = %.4f per expert per token\n", pk);
    }
    fprintf(out, "\n%-22s %8s %9s %12s %12s\n", "tier (decode)", "experts", "GiB", "GB/token",
            "ms/token*");
    for (int k = 0; k < MT_TIER_COUNT; k++) {
        const struct mt_plan_tier_stats *ts = &p->tier[k];
        fprintf(out, "%-22s %8d %9.2f %12.3f %12.2f\n", what[k], ts->experts, gib(ts->bytes),
                ts->bytes_per_token / 1e9, ts->ms_per_token);
    }
    fprintf(out, "%-22s %8s %9.2f %12s %12.2f\n",
            have_gpu ? "always-on (GPU)" : "always-on (CPU)", "-",
            gib((double)p->always_on_bytes), "", p->always_on_ms);
    fprintf(out, "  * each tier's bytes at its own rate; tiers of one layer overlap, so a layer "
            "costs\n    the slowest of them\n\n");
    fprintf(out, "bottleneck : %s\n", p->bottleneck);
    if (p->decode_tok_s == 0) { /* a hand-made or edited plan's "not predicted" (plan_file.c) */
        fprintf(out, "decode     : not predicted (the plan records no decode prediction)\n");
    } else {
        fprintf(out, "decode     : %.2f tok/s (%.1f ms/token, of which always-on %.1f ms; "
                "averaged over sampled\n             expert choices; ",
                p->decode_tok_s, p->decode_ms, p->always_on_ms);
        if (p->decode_ms_mean_load > 0) {
            fprintf(out, "the expected-load bound is %.1f ms = %.2f tok/s)\n",
                    p->decode_ms_mean_load, 1e3 / p->decode_ms_mean_load);
        } else {
            /* the planner's bound includes the always-on time, never 0: a plan edited by hand
               without one (mt_plan_load takes 0 as "not predicted") */
            fprintf(out, "the plan records no expected-load bound)\n");
        }
    }
    if (p->decode_copies >= 0.05) {
        fprintf(out, "             %.1f of the DRAM experts a token uses are copied to the GPU "
                "over PCIe while\n             the CPU computes the rest (the GPU engine's "
                "balance of its slots)\n", p->decode_copies);
    }
    int moved = 0;
    int dram = 0;
    for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts; i++) {
        dram += p->tiers[i] == MT_TIER_DRAM_CPU || p->tiers[i] == MT_TIER_DRAM_PCIE;
        moved += p->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
    }
    if (p->prefill_not_modelled[0] != '\0') {
        fprintf(out, "prefill    : not modelled: %s\n", p->prefill_not_modelled);
    } else {
        fprintf(out, "prefill    : %.1f tok/s at batch %d (%.1f ms per batch of %d tokens)\n",
                p->prefill_tok_s, p->budget.prefill_batch, p->prefill_ms,
                p->budget.prefill_batch);
    }
    if (p->host_chunk_short > 0) {
        /* the chunk's whole work space (planner.c: the room beside the GPU's experts and the
           always-on weights and KV, plus what it lacks), not the reserve plus the shortfall: the
           room is the reserve and what the experts' budget leaves short of a whole expert, so a
           reserve grown by less than an expert keeps the same experts and the same room */
        double used = (double)p->always_on_bytes + (double)p->kv_bytes + p->tier[MT_TIER_GPU].bytes;
        double room = MT_MAX((double)p->budget.gpu_mem - used, 0.0);
        uint64_t mib = ((uint64_t)room + p->host_chunk_short + (1u << 20) - 1) >> 20;

        fprintf(out,
                "             the GPU engine's %d-token prompt chunks (faster with experts off "
                "the GPU) need\n             %s more GPU memory than this placement leaves: "
                "--gpu-reserve %lluM gives them\n",
                MT_MIN(MT_PLAN_CHUNK_HOST, p->budget.ctx), mt_size_text(p->host_chunk_short).s,
                (unsigned long long)mib);
    }
    fprintf(out, "             in prefill %d of %d DRAM experts are copied to the GPU, NVMe "
            "experts are computed\n             on the %s; %s\n",
            moved, dram, have_gpu && p->pcie_gbps > 0 && p->dram_gbps <= 0 ? "GPU" : "CPU",
            have_gpu && p->gpu_prefill_eff > 0
                ? "a prompt of one batch from position 0"
                : "attention FLOPs beyond 2 x params per token are not modeled");
    print_why(out, p);
}

/* ---- the automatic placement -------------------------------------------------------------- */

/* A profile for this engine: the CPU engine plans as if the machine had no GPU. */
static void
profile_for_device(struct mt_hwprofile *hw, bool gpu)
{
    if (!gpu) {
        memset(&hw->gpu, 0, sizeof(hw->gpu));
        memset(&hw->pcie, 0, sizeof(hw->pcie));
    }
}

/*
 * Everything in the first home, without a profile: returns true and fills n when the routed
 * experts, the always-on weights and the KV fit the device's budget (DRAM minus the reserve on
 * the CPU; the GPU budget minus the workspace on the GPU).
 */
static bool
all_fit(const struct mt_model_sizes *sz, const struct mt_plan_budget *b, bool gpu, uint64_t kv)
{
    uint64_t need = sz->routed_bytes + (gpu ? sz->gpu_other_bytes : sz->other_bytes) + kv;

    if (gpu) {
        return b->gpu_mem > b->gpu_reserve && need <= b->gpu_mem - b->gpu_reserve;
    }
    return b->cpu_mem > b->cpu_reserve && need <= b->cpu_mem - b->cpu_reserve;
}

/* The profile, then the plan; the CPU engine's DRAM must hold the always-on weights first. */
static mt_status_t
auto_plan(struct mt_cli_engine *e, const struct mt_cli_engine_flags *f, bool gpu,
          const struct mt_model_sizes *sz, const struct mt_plan_budget *b, uint64_t kv)
{
    struct mt_model_config cfg = e->model->cfg;
    struct mt_hwprofile *hw;
    mt_status_t st;

    if (!gpu && b->cpu_mem < b->cpu_reserve + sz->other_bytes + kv) {
        return mt_fail(MT_ERR_INVAL, 0, "--cpu-mem %s is too small for '%s': the CPU engine "
                       "needs --cpu-reserve %s + always-on weights %s + KV for %d tokens %s = %s "
                       "before any expert (raise --cpu-mem, or lower --cpu-reserve or --ctx)",
                       mt_size_text(b->cpu_mem).s, e->model->dir, mt_size_text(b->cpu_reserve).s,
                       mt_size_text(sz->other_bytes).s, b->ctx, mt_size_text(kv).s,
                       mt_size_text(b->cpu_reserve + sz->other_bytes + kv).s);
    }
    if (gpu && f->engine.gpu_mem > 0 && b->gpu_mem < b->gpu_reserve + sz->gpu_other_bytes + kv) {
        /*
         * no plan can help, so say so before measuring the machine for one (only for a --gpu-mem
         * given: without a device the budget is 0 and the engine says why there is none)
         */
        return mt_fail(MT_ERR_INVAL, 0,
                       "'%s' needs %s on the GPU before any expert (workspace "
                       "%s + always-on weights %s + KV for %d tokens %s), more than --gpu-mem %s "
                       "(raise --gpu-mem, lower --ctx, or run with --device cpu)",
                       e->model->dir, mt_size_text(b->gpu_reserve + sz->gpu_other_bytes + kv).s,
                       mt_size_text(b->gpu_reserve).s, mt_size_text(sz->gpu_other_bytes).s, b->ctx,
                       mt_size_text(kv).s, mt_size_text(b->gpu_mem).s);
    }
    hw = malloc(sizeof(*hw));
    if (hw == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a hardware profile");
    }
    st = mt_cli_profile_get(f->hw_path, mt_st_set_file_path(e->model->set, 0), hw);
    if (st == MT_OK && gpu && !hw->gpu.present) {
        st = mt_fail(MT_ERR_INVAL, 0, "the hardware profile '%s' has no GPU but this run uses "
                     "one (give a profile with a GPU, or --device cpu)",
                     hw->file[0] != '\0' ? hw->file : hw->source);
    }
    if (st == MT_OK) {
        if (hw->source[0] == '\0') {
            snprintf(hw->source, sizeof(hw->source), "%.255s", hw->file);
        }
        profile_for_device(hw, gpu);
        cfg.fp8 = e->model->fp8;
        st = mt_plan_build(&cfg, sz, hw, b, NULL, NULL, &e->plan);
    }
    free(hw);
    return st;
}

/* The stream cache: what the plan leaves of the experts' DRAM, at least 2 x k experts, and
 * never less than one slot (an expert with each part 4 KiB-aligned), which the source needs. */
static uint64_t
stream_cache_bytes(const struct mt_cli_engine *e, const struct mt_cli_engine_flags *f,
                   const struct need *n, const struct mt_model_sizes *sz)
{
    uint64_t slot = sz->routed_expert_bytes + (uint64_t)MT_IO_N_PARTS * MT_IO_ALIGN;
    uint64_t floor = 2 * (uint64_t)e->model->cfg.num_experts_per_tok * slot;
    uint64_t left = 0;

    if (f->cache_bytes > 0) {
        return f->cache_bytes;
    }
    if (e->plan != NULL && (f->plan_path == NULL || f->cpu_mem > 0)) {
        uint64_t cap = e->plan->dram_expert_bytes;
        left = cap > n->dram_experts ? cap - n->dram_experts : 0;
        /* a plan file's DRAM budget may be another machine's: no more than this run's --cpu-mem
         * leaves beyond the plan's DRAM experts and always-on weights (check_fits) */
        if (f->cpu_mem > 0) {
            left = MT_MIN(left, f->cpu_mem > n->dram ? f->cpu_mem - n->dram : 0);
        }
        /* the floor comes out of the reserve, which exists for staging */
        return MT_MAX(MT_MAX(left, MT_MIN(floor, e->plan->budget.cpu_reserve)), slot);
    }
    return 0; /* a plan file without --cpu-mem: the provider's default (4 slots) */
}

/*
 * Whether a --cache the user gave fits the memory free now beside the DRAM the placement needs:
 * the staging is mapped and touched at start (MAP_POPULATE), so a cache past MemAvailable would
 * push the machine into swap or the OOM killer instead of failing. Only what the streamed experts
 * can fill counts (the source keeps at most one slot per expert).
 */
static mt_status_t
check_cache_fits(const struct need *n, const struct mt_model_sizes *sz, uint64_t cache)
{
    uint64_t slot = sz->routed_expert_bytes + (uint64_t)MT_IO_N_PARTS * MT_IO_ALIGN;
    uint64_t used = MT_MIN(cache, (uint64_t)n->count[MT_TIER_NVME] * slot);
    uint64_t avail = mt_mem_available();

    if (avail > 0 && used + n->dram > avail) {
        return mt_fail(MT_ERR_INVAL, 0, "--cache %s does not fit: %s of DRAM are available now "
                       "(MemAvailable)%s%s (give a smaller --cache)", mt_size_text(cache).s,
                       mt_size_text(avail).s, n->dram > 0 ? ", and the experts and weights kept in "
                       "DRAM take " : "", n->dram > 0 ? mt_size_text(n->dram).s : "");
    }
    return MT_OK;
}

/* The streaming provider for the experts on NVMe (all of them with --store alone). */
static mt_status_t
attach_stream(struct mt_cli_engine *e, const struct mt_cli_engine_flags *f,
              struct mt_engine_opts *eo, uint64_t cache_bytes, int n_streamed)
{
    /* no more slots than experts it streams (one, where --store meets a plan without any) */
    struct mt_io_source_options io = {.cache_bytes = cache_bytes,
                                      .max_slots = (unsigned)MT_MAX(n_streamed, 1),
                                      .verify = f->verify};
    size_t n = (size_t)e->model->cfg.num_hidden_layers * e->model->cfg.n_routed_experts;
    mt_status_t st;

    st = mt_expert_provider_stream_create(e->model, &io, f->store, f->n_store, &e->stream);
    if (st != MT_OK) {
        return st;
    }
    if (eo->expert_tiers == NULL) {
        e->uniform_tiers = malloc(n > 0 ? n : 1);
        if (e->uniform_tiers == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the expert tiers");
        }
        memset(e->uniform_tiers, MT_TIER_NVME, n);
        eo->expert_tiers = e->uniform_tiers;
    }
    eo->nvme_provider = e->stream;
    return MT_OK;
}

mt_status_t
mt_cli_placement(struct mt_cli_engine *e, const struct mt_cli_engine_flags *f,
                 enum mt_device device, struct mt_engine_opts *eo)
{
    const struct mt_model_config *cfg = &e->model->cfg;
    bool gpu = device == MT_DEVICE_GPU;
    struct mt_model_sizes sz;
    struct mt_plan_budget b;
    struct need n;
    char why[200] = "";
    mt_status_t st;

    if ((st = mt_model_sizes_of(e->model, &sz)) != MT_OK) {
        return st;
    }
    run_budget(f, cfg, gpu, &b);
    if (gpu) {
        sz.kv_bytes_per_token = gpu_kv_bytes_per_token(f, cfg); /* the planner budgets it too */
    }
    uint64_t kv = (uint64_t)b.ctx * sz.kv_bytes_per_token;
    if (f->hw_path != NULL && f->plan_path == NULL && !f->no_plan) {
        /* a profile the user named is checked now, even when this run needs no plan */
        struct mt_hwprofile *hw = malloc(sizeof(*hw));
        if (hw == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate a hardware profile");
        }
        st = mt_hwprofile_load(f->hw_path, hw);
        free(hw);
        if (st != MT_OK) {
            return st;
        }
    }

    const char *fixed = f->plan_path != NULL ? "--plan"
                        : f->no_plan         ? "--no-plan"
                        : f->n_store > 0     ? "--store"
                                             : NULL;
    if (fixed != NULL && (f->hw_path != NULL || f->cpu_reserve_set)) {
        /* a plan file holds the rates and budgets it was made with; the others plan nothing */
        bool both = f->hw_path != NULL && f->cpu_reserve_set;
        mt_log_warn("%s %s not used with %s: only the automatic placement plans with %s",
                    both ? "--hw and --cpu-reserve" : f->hw_path != NULL ? "--hw" : "--cpu-reserve",
                    both ? "are" : "is", fixed, both ? "them" : "it");
    }
    if (f->plan_path != NULL) {
        if ((st = mt_plan_load(f->plan_path, &e->plan)) != MT_OK ||
            (st = mt_plan_check_model(e->plan, f->plan_path, cfg, sz.routed_expert_bytes)) !=
                MT_OK) {
            return st;
        }
        snprintf(why, sizeof(why), "(plan '%s')", f->plan_path);
    } else if (f->no_plan || f->n_store > 0) {
        snprintf(why, sizeof(why), "(%s)", f->no_plan ? "--no-plan" : "--store");
    } else if (all_fit(&sz, &b, gpu, kv)) {
        /* no choice to make: the engine's own device holds everything (tiers NULL) */
        snprintf(why, sizeof(why), "(all fit in the %s budget, %s: nothing to plan)",
                 gpu ? "GPU" : "DRAM",
                 mt_size_text(gpu ? b.gpu_mem - b.gpu_reserve : b.cpu_mem - b.cpu_reserve).s);
    } else if ((st = auto_plan(e, f, gpu, &sz, &b, kv)) != MT_OK) {
        return st;
    }
    if (e->plan != NULL) {
        eo->expert_tiers = e->plan->tiers;
    }
    /* without tiers: --store streams them all (attach_stream), else the engine's device */
    uint8_t own = f->n_store > 0 ? MT_TIER_NVME : gpu ? MT_TIER_GPU : MT_TIER_DRAM_CPU;
    placement_need(cfg, &sz, eo->expert_tiers, own, gpu, kv, &n);
    if (e->plan != NULL &&
        (st = check_fits(f->plan_path != NULL ? f->plan_path : "the plan", &n, f, gpu)) != MT_OK) {
        return st;
    }
    if (f->verbose && e->plan != NULL) {
        mt_cli_plan_print(stderr, e->plan);
    }
    if (f->report || f->verbose) {
        say_where(&n, e->plan, why);
        if (!gpu && n.count[MT_TIER_GPU] + n.count[MT_TIER_DRAM_PCIE] > 0) {
            mt_log_info("this CPU engine computes the plan's %d GPU-tier and %d PCIe-tier "
                        "experts from DRAM (the plan's predictions assume its GPU)",
                        n.count[MT_TIER_GPU], n.count[MT_TIER_DRAM_PCIE]);
        }
    }
    if (n.count[MT_TIER_NVME] > 0 || f->n_store > 0) {
        uint64_t cache = stream_cache_bytes(e, f, &n, &sz);
        if (f->cache_bytes > 0 && (st = check_cache_fits(&n, &sz, cache)) != MT_OK) {
            return st;
        }
        st = attach_stream(e, f, eo, cache, n.count[MT_TIER_NVME]);
    }
    return st;
}

uint64_t
mt_cli_placement_load_bytes(const struct mt_cli_engine *e, const struct mt_engine_opts *eo)
{
    const struct mt_model_config *cfg = &e->model->cfg;
    struct mt_model_sizes sz;
    uint64_t n_read = 0;

    if (mt_model_sizes_of(e->model, &sz) != MT_OK) {
        return 0;
    }
    bool gpu = eo->device == MT_DEVICE_GPU;
    if (eo->expert_tiers == NULL) {
        /* no plan: the GPU engine reads every expert now, the CPU engine each on first use */
        return sz.other_bytes + (gpu ? sz.routed_bytes : 0);
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        for (int x = 0; x < cfg->n_routed_experts && cfg->layer_is_moe[l]; x++) {
            uint8_t t = eo->expert_tiers[(size_t)l * cfg->n_routed_experts + x];
            /* GPU experts on the GPU engine; a plan's DRAM experts are preloaded */
            n_read += (t == MT_TIER_GPU && gpu) ||
                      (e->plan != NULL && (t == MT_TIER_DRAM_CPU || t == MT_TIER_DRAM_PCIE));
        }
    }
    return sz.other_bytes + n_read * sz.routed_expert_bytes;
}
