/* SPDX-License-Identifier: MIT */
/*
 * cli_plan.c - `moetier plan`: where each expert should live on a machine, and the tok/s to expect.
 *
 * The one idea: the planner needs only the model's sizes (from config.json, so --config-only plans
 * the full 671B model without its weights), a hardware profile (measured by `moetier bench --json`
 * or a what-if file), the memory budgets, and optionally an activation trace. It prints per tier
 * the experts, GB, bytes and time per token, the bottleneck and the predicted decode and prefill
 * speed, and writes the plan file a heterogeneous runtime loads (format in runtime/planner.h).
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/model/config.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#include "runtime/plan/trace.h"

#include "runtime/base/file_util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: moetier plan -m DIR --hw PROFILE --gpu-mem SIZE --cpu-mem SIZE [options]\n"
        "\n"
        "Place every routed expert on the GPU, in DRAM (computed by the CPU, or copied over\n"
        "PCIe to the GPU) or on NVMe so that the predicted time per token is smallest, print\n"
        "per tier the experts, GB, bytes and time per token, the bottleneck and the predicted\n"
        "decode and prefill tok/s, and write the plan (-o).\n"
        "\n"
        "Model: time per token = always-on bytes / HBM bandwidth + per MoE layer the slowest of\n"
        "the concurrent sources (GPU HBM, CPU DRAM x efficiency, PCIe, disk), each loaded with\n"
        "activation probability x expert bytes. The GPU first holds the always-on weights, the\n"
        "KV cache for --ctx tokens and --gpu-reserve; experts get the rest. DRAM first holds\n"
        "--cpu-reserve (and, when the profile has no GPU, the always-on weights and the KV).\n"
        "\n"
        "options:\n"
        "  -m, --model DIR         checkpoint directory (opened and checked unless\n"
        "                          --config-only)\n"
        "      --config-only       read DIR/config.json only (the full model without weights)\n"
        "      --config FILE       use this config.json (implies --config-only)\n"
        "      --hw PROFILE        hardware profile JSON (moetier bench --json, or what-if)\n"
        "      --gpu-mem SIZE      GPU memory to use, e.g. 24G (K, M, G, T: powers of 1024)\n"
        "      --cpu-mem SIZE      DRAM to use, e.g. 128G\n"
        "      --trace FILE        expert activation trace (moetier run --trace); default:\n"
        "                          uniform, each expert k/E\n"
        "      --ctx N             context the KV cache must hold (default 32768)\n"
        "      --prefill-batch N   tokens per prefill step for the prefill prediction\n"
        "                          (default 512)\n"
        "      --cpu-eff X         fraction of the DRAM read rate and FLOPs that CPU expert\n"
        "                          kernels reach (default: the profile's measured\n"
        "                          cpu.expert_eff, else 0.6)\n"
        "      --gpu-reserve SIZE  GPU workspace kept free (default 1.5G)\n"
        "      --cpu-reserve SIZE  DRAM kept free: staging ring, OS (default 4G)\n"
        "  -o, --output FILE       write the plan JSON here\n"
        "      --check PLAN        only load PLAN and check it against the model\n"
        "      --learn REPORT      learn from a run report (moetier run --plan P --json\n"
        "                          REPORT; repeatable, averaged): the measured CPU expert,\n"
        "                          disk and GPU efficiencies are written into the --hw\n"
        "                          profile's \"learned\" section and replace the planner's\n"
        "                          assumptions; without --gpu-mem/--cpu-mem only the\n"
        "                          profile is updated\n"
        "  -h, --help              print this help\n");
}

static const struct mt_cli cli = {"plan", usage};

static double
gib(double v)
{
    return v / 1073741824.0;
}

static void
print_plan(const struct mt_plan *p, const struct mt_model_config *cfg, int n_moe)
{
    static const char *what[MT_TIER_COUNT] = {"GPU-resident (HBM)", "DRAM, CPU computes",
                                              "DRAM -> GPU over PCIe", "NVMe (streamed)"};
    double pk = (double)p->k / p->n_experts;
    bool have_gpu = p->hbm_gbps > 0; /* the planner refuses a GPU without an HBM rate */

    printf("model      : %d layers (%d MoE x %d experts, k %d), expert %.2f MiB (%s), "
           "always-on %.2f GiB\n",
           p->n_layers, n_moe, p->n_experts, p->k, p->expert_bytes / 1048576.0,
           p->fp8 ? "FP8" : "BF16", gib((double)p->always_on_bytes));
    printf("hardware   : %s\n", p->hw_source);
    printf("rates      : HBM %.0f GB/s, GPU %.0f TFLOPS, DRAM %.0f GB/s (%s) x %.2f, CPU %.0f "
           "GFLOPS x %.2f, PCIe H2D %.1f GB/s, disk %.1f GB/s\n",
           p->hbm_gbps, p->gpu_tflops, p->dram_gbps, p->dram_source, p->budget.cpu_eff,
           p->cpu_gflops, p->budget.cpu_eff, p->pcie_gbps, p->disk_gbps);
    printf("CPU eff    : %.3f (%s)\n", p->budget.cpu_eff, p->cpu_eff_source);
    if ((p->gpu_eff > 0 && p->gpu_eff != 1) || (p->disk_eff > 0 && p->disk_eff != 1)) {
        printf("learned    : HBM x %.3f, disk x %.3f (the profile's learned section)\n",
               p->gpu_eff > 0 ? p->gpu_eff : 1, p->disk_eff > 0 ? p->disk_eff : 1);
    }
    if (have_gpu) {
        printf("GPU budget : %.1f GiB = always-on %.2f + KV %d tok %.2f + workspace %.2f + "
               "experts %.2f GiB\n",
               gib((double)p->budget.gpu_mem), gib((double)p->always_on_bytes), p->budget.ctx,
               gib((double)p->kv_bytes), gib((double)p->budget.gpu_reserve),
               gib((double)p->gpu_expert_bytes));
        printf("DRAM budget: %.1f GiB = reserve %.2f + experts %.2f GiB\n",
               gib((double)p->budget.cpu_mem), gib((double)p->budget.cpu_reserve),
               gib((double)p->dram_expert_bytes));
    } else {
        printf("GPU budget : none, the profile has no GPU (--gpu-mem is ignored)\n");
        printf("DRAM budget: %.1f GiB = reserve %.2f + always-on %.2f + KV %d tok %.2f + experts "
               "%.2f GiB\n",
               gib((double)p->budget.cpu_mem), gib((double)p->budget.cpu_reserve),
               gib((double)p->always_on_bytes), p->budget.ctx, gib((double)p->kv_bytes),
               gib((double)p->dram_expert_bytes));
    }
    if (p->trace_tokens > 0) {
        printf("activation : %s (%llu tokens)\n", p->activation,
               (unsigned long long)p->trace_tokens);
    } else {
        printf("activation : uniform, p = k/E = %.4f per expert per token\n", pk);
    }
    printf("\n%-22s %8s %9s %12s %12s\n", "tier (decode)", "experts", "GiB", "GB/token",
           "ms/token*");
    for (int k = 0; k < MT_TIER_COUNT; k++) {
        const struct mt_plan_tier_stats *ts = &p->tier[k];
        printf("%-22s %8d %9.2f %12.3f %12.2f\n", what[k], ts->experts, gib(ts->bytes),
               ts->bytes_per_token / 1e9, ts->ms_per_token);
    }
    printf("%-22s %8s %9.2f %12s %12.2f\n", have_gpu ? "always-on (GPU)" : "always-on (CPU)", "-",
           gib((double)p->always_on_bytes), "", p->always_on_ms);
    printf("  * each tier's bytes at its own rate; tiers of one layer overlap, so a layer costs\n"
           "    the slowest of them\n\n");
    printf("bottleneck : %s\n", p->bottleneck);
    printf("decode     : %.2f tok/s (%.1f ms/token, of which always-on %.1f ms; averaged over "
           "sampled\n             expert choices; the expected-load bound is %.1f ms = %.2f "
           "tok/s)\n",
           p->decode_tok_s, p->decode_ms, p->always_on_ms, p->decode_ms_mean_load,
           1e3 / p->decode_ms_mean_load);
    {
        int moved = 0;
        int dram = 0;
        for (size_t i = 0; i < (size_t)p->n_layers * p->n_experts; i++) {
            dram += p->tiers[i] == MT_TIER_DRAM_CPU || p->tiers[i] == MT_TIER_DRAM_PCIE;
            moved += p->prefill_tiers[i] == MT_TIER_DRAM_PCIE;
        }
        if (p->prefill_not_modelled[0] != '\0') {
            printf("prefill    : not modelled: %s\n", p->prefill_not_modelled);
        } else {
            printf("prefill    : %.1f tok/s at batch %d (%.1f ms per batch of %d tokens)\n",
                   p->prefill_tok_s, p->budget.prefill_batch, p->prefill_ms,
                   p->budget.prefill_batch);
        }
        printf("             in prefill %d of %d DRAM experts are copied to the GPU, NVMe experts "
               "are computed\n             on the %s; attention FLOPs beyond 2 x params per token "
               "are not modeled\n",
               moved, dram, have_gpu && p->pcie_gbps > 0 ? "GPU" : "CPU");
    }
    (void)cfg;
}

/* ---- --learn: efficiencies from run reports ------------------------------------------------ */

#define MAX_LEARN 16

/* Sums of the efficiencies the reports measured, per source. */
struct learned_sum {
    double cpu, disk, gpu;
    int n_cpu, n_disk, n_gpu;
};

/* report[a][b][c] as a number, 0 when absent or not a number. */
static double
num_at(json_t *o, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(o, a);

    if (b != NULL) {
        v = json_object_get(v, b);
    }
    if (c != NULL) {
        v = json_object_get(v, c);
    }
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* An efficiency as the planner takes it: capped at 1 (a small model's experts fit in a cache). */
static double
eff_of(double measured_gbps, double rate_gbps, const char *what, const char *path)
{
    double eff = measured_gbps / rate_gbps;

    printf("learned    : %s %.3f GB/s of %.3f GB/s = %.3f%s (%s)\n", what, measured_gbps,
           rate_gbps, eff, eff > 1 ? ", capped at 1" : "", path);
    return eff > 1 ? 1.0 : eff;
}

/*
 * Add what one report measured: the CPU's expert reads (the dram-cpu tier's bytes over its time,
 * decode when the run decoded) over the plan's DRAM rate; the streamed bytes over the time reads
 * were in flight, over the plan's disk rate; and on the GPU engine, the weight bytes a decode
 * step reads (routed experts on the GPU and the always-on weights) over the forward time less the
 * waits for host experts, over the plan's HBM rate. A report of a run without a plan has no rates to compare with.
 */
static mt_status_t
learn_report(const char *path, struct learned_sum *sum)
{
    json_t *root;
    json_t *ph;
    const char *dev;
    double rate;
    double bytes;
    double secs;
    mt_status_t st;

    st = mt_json_load_versioned(path, "run report", "moetier-report", 1, &root);
    if (st != MT_OK) {
        return st;
    }
    if (!json_is_object(json_object_get(root, "predicted"))) {
        json_decref(root);
        return mt_fail(MT_ERR_INVAL, 0, "run report '%s' is of a run without --plan: it has no "
                       "predicted rates to learn against (run with --plan FILE --json REPORT)",
                       path);
    }
    ph = json_object_get(root, num_at(root, "decode", "tokens", NULL) > 0 ? "decode" : "prefill");
    rate = num_at(root, "predicted", "hardware", "dram_gbps");
    bytes = num_at(json_object_get(ph, "tiers"), "dram-cpu", "bytes", NULL);
    secs = num_at(json_object_get(ph, "tiers"), "dram-cpu", "seconds", NULL);
    if (rate > 0 && bytes > 0 && secs > 0) {
        sum->cpu += eff_of(bytes / secs / 1e9, rate, "CPU expert reads", path);
        sum->n_cpu++;
    }
    rate = num_at(root, "predicted", "hardware", "disk_gbps");
    bytes = num_at(root, "prefill", "stream", "bytes_read") +
            num_at(root, "decode", "stream", "bytes_read");
    secs = num_at(root, "prefill", "stream", "read_s") + num_at(root, "decode", "stream", "read_s");
    if (rate > 0 && bytes > 0 && secs > 0) {
        sum->disk += eff_of(bytes / secs / 1e9, rate, "NVMe reads", path);
        sum->n_disk++;
    }
    rate = num_at(root, "predicted", "hardware", "hbm_gbps");
    ph = json_object_get(root, "decode");
    bytes = num_at(json_object_get(ph, "tiers"), "gpu", "bytes", NULL) +
            num_at(root, "always_on_bytes_per_token", NULL, NULL) *
                num_at(ph, "forwards", NULL, NULL);
    /* the GPU's own time: the forward pass less the host's waits for CPU and disk experts
       (the GPU's experts run meanwhile, so this leans high, never low, on mixed plans) */
    secs = num_at(ph, "forward_s", NULL, NULL) - num_at(ph, "moe_wait_s", NULL, NULL);
    dev = json_string_value(json_object_get(root, "device"));
    if (dev != NULL && strcmp(dev, "gpu") == 0 && rate > 0 && bytes > 0 && secs > 0) {
        sum->gpu += eff_of(bytes / secs / 1e9, rate, "GPU weight reads", path);
        sum->n_gpu++;
    }
    json_decref(root);
    return MT_OK;
}

/* Learn from every report, write the averages into the profile hw (and its file hw_path). */
static mt_status_t
learn(const char *const *reports, int n, struct mt_hwprofile *hw, const char *hw_path)
{
    struct learned_sum sum = {0};
    struct mt_hw_learned *l = &hw->learned;
    mt_status_t st;

    for (int i = 0; i < n; i++) {
        if ((st = learn_report(reports[i], &sum)) != MT_OK) {
            return st;
        }
    }
    if (sum.n_cpu + sum.n_disk + sum.n_gpu == 0) {
        return mt_fail(MT_ERR_INVAL, 0, "the run report%s measured no tier the planner models "
                       "(no CPU experts, no streamed reads, no GPU decode)", n > 1 ? "s" : "");
    }
    /* the newest measurements replace what was learned before, source by source */
    l->reports = n;
    l->cpu_expert_eff = sum.n_cpu > 0 ? sum.cpu / sum.n_cpu : l->cpu_expert_eff;
    l->disk_eff = sum.n_disk > 0 ? sum.disk / sum.n_disk : l->disk_eff;
    l->gpu_eff = sum.n_gpu > 0 ? sum.gpu / sum.n_gpu : l->gpu_eff;
    snprintf(l->from, sizeof(l->from), "%.*s", (int)sizeof(l->from) - 1, reports[n - 1]);
    if ((st = mt_hwprofile_save(hw, hw_path)) != MT_OK) {
        return st;
    }
    printf("learned    : written to %s (cpu_expert_eff %.3f, disk_eff %.3f, gpu_eff %.3f; 0: "
           "not measured)\n", hw_path, l->cpu_expert_eff, l->disk_eff, l->gpu_eff);
    return MT_OK;
}

int
mt_cli_plan(int argc, char **argv)
{
    enum {
        OPT_CONFIG_ONLY = 256,
        OPT_CONFIG,
        OPT_HW,
        OPT_GPU_MEM,
        OPT_CPU_MEM,
        OPT_TRACE,
        OPT_CTX,
        OPT_PREFILL,
        OPT_CPU_EFF,
        OPT_GPU_RES,
        OPT_CPU_RES,
        OPT_CHECK,
        OPT_LEARN
    };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"config-only", no_argument, NULL, OPT_CONFIG_ONLY},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"hw", required_argument, NULL, OPT_HW},
        {"gpu-mem", required_argument, NULL, OPT_GPU_MEM},
        {"cpu-mem", required_argument, NULL, OPT_CPU_MEM},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"ctx", required_argument, NULL, OPT_CTX},
        {"prefill-batch", required_argument, NULL, OPT_PREFILL},
        {"cpu-eff", required_argument, NULL, OPT_CPU_EFF},
        {"gpu-reserve", required_argument, NULL, OPT_GPU_RES},
        {"cpu-reserve", required_argument, NULL, OPT_CPU_RES},
        {"output", required_argument, NULL, 'o'},
        {"check", required_argument, NULL, OPT_CHECK},
        {"learn", required_argument, NULL, OPT_LEARN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model_dir = NULL;
    const char *config_path = NULL;
    const char *hw_path = NULL;
    const char *trace_path = NULL;
    const char *out_path = NULL;
    const char *check_path = NULL;
    const char *learn_paths[MAX_LEARN];
    int n_learn = 0;
    bool config_only = false;
    bool have_gpu = false;
    bool have_cpu = false;
    struct mt_plan_budget budget;
    struct mt_model_config cfg;
    struct mt_model_sizes sizes;
    struct mt_hwprofile *hw = NULL;
    struct mt_trace *trace = NULL;
    struct mt_model *model = NULL;
    struct mt_plan *plan = NULL;
    char cfg_buf[4096];
    int n_moe = 0;
    int c;
    int rc = 1;

    mt_plan_budget_default(&budget);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_dir = optarg;
            break;
        case OPT_CONFIG_ONLY:
            config_only = true;
            break;
        case OPT_CONFIG:
            config_path = optarg;
            config_only = true;
            break;
        case OPT_HW:
            hw_path = optarg;
            break;
        case OPT_TRACE:
            trace_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case OPT_CHECK:
            check_path = optarg;
            break;
        case OPT_LEARN:
            if (n_learn == MAX_LEARN) {
                mt_cli_error(&cli, "at most %d --learn reports", MAX_LEARN);
                return 2;
            }
            learn_paths[n_learn++] = optarg;
            break;
        case OPT_GPU_MEM:
            if (!mt_cli_parse_size(&cli, "--gpu-mem", "24G", optarg, &budget.gpu_mem)) {
                return 2;
            }
            have_gpu = true;
            break;
        case OPT_CPU_MEM:
            if (!mt_cli_parse_size(&cli, "--cpu-mem", "128G", optarg, &budget.cpu_mem)) {
                return 2;
            }
            have_cpu = true;
            break;
        case OPT_GPU_RES:
            if (!mt_cli_parse_size(&cli, "--gpu-reserve", "1.5G", optarg, &budget.gpu_reserve)) {
                return 2;
            }
            break;
        case OPT_CPU_RES:
            if (!mt_cli_parse_size(&cli, "--cpu-reserve", "4G", optarg, &budget.cpu_reserve)) {
                return 2;
            }
            break;
        case OPT_CTX:
            if (!mt_cli_parse_int(&cli, "--ctx", optarg, 0, 1 << 24, &budget.ctx)) {
                return 2;
            }
            break;
        case OPT_PREFILL:
            if (!mt_cli_parse_int(&cli, "--prefill-batch", optarg, 1, 1 << 20,
                                  &budget.prefill_batch)) {
                return 2;
            }
            break;
        case OPT_CPU_EFF:
            if (!mt_cli_parse_double(&cli, "--cpu-eff", optarg, &budget.cpu_eff)) {
                return 2;
            }
            /* Below 1% the CPU is as good as absent, and the times overflow any sane print. */
            if (!(budget.cpu_eff >= 0.01 && budget.cpu_eff <= 1)) {
                mt_cli_error(&cli, "--cpu-eff must be in [0.01, 1], got '%s'", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return mt_cli_bad_option(&cli, c, argv);
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    }
    if (model_dir == NULL && config_path == NULL) {
        return mt_cli_usage_error(&cli, "-m DIR (or --config FILE) is required");
    }
    if (n_learn > 0 && hw_path == NULL) {
        return mt_cli_usage_error(&cli, "--learn needs --hw PROFILE (the profile it updates)");
    }
    if (check_path == NULL && n_learn == 0 && (hw_path == NULL || !have_gpu || !have_cpu)) {
        return mt_cli_usage_error(&cli, "--hw, --gpu-mem and --cpu-mem are required");
    }
    for (int i = 0; i < n_learn; i++) {
        if (mt_cli_output_is_input(&cli, "--hw", hw_path, "--learn", learn_paths[i])) {
            return 2;
        }
    }
    if (model_dir != NULL && (size_t)snprintf(cfg_buf, sizeof(cfg_buf), "%s/config.json",
                                              model_dir) >= sizeof(cfg_buf)) {
        return mt_cli_usage_error(&cli, "-m '%s' is too long", model_dir);
    }
    /* An output over one of the inputs would destroy it: refuse before reading anything. */
    if (mt_cli_output_is_input(&cli, "-o", out_path, "--hw", hw_path) ||
        mt_cli_output_is_input(&cli, "-o", out_path, config_path != NULL ? "--config" : "-m",
                               config_path != NULL ? config_path : cfg_buf) ||
        mt_cli_output_is_input(&cli, "-o", out_path, "--trace", trace_path) ||
        mt_cli_output_is_input(&cli, "-o", out_path, "--check", check_path)) {
        return 2;
    }
    if (config_only && config_path == NULL) {
        config_path = cfg_buf;
    }

    /* The model: config.json alone, or the opened and checked checkpoint. */
    if (config_only) {
        if (mt_config_load(config_path, &cfg) != MT_OK) {
            goto out;
        }
    } else {
        if (mt_model_open(model_dir, &model) != MT_OK) {
            goto out;
        }
        cfg = model->cfg;
        cfg.fp8 = model->fp8;
    }
    if (mt_model_sizes_compute(&cfg, cfg.fp8, &sizes) != MT_OK) {
        goto out;
    }
    for (int l = 0; l < cfg.num_hidden_layers; l++) {
        n_moe += mt_config_layer_is_moe(&cfg, l);
    }

    if (check_path != NULL) {
        if (mt_plan_load(check_path, &plan) != MT_OK ||
            mt_plan_check_model(plan, check_path, &cfg, sizes.routed_expert_bytes) != MT_OK) {
            goto out;
        }
        printf("plan '%s' matches the model; it predicted %.2f tok/s decode on %s\n", check_path,
               plan->decode_tok_s, plan->hw_source);
        rc = 0;
        goto out;
    }

    hw = malloc(sizeof(*hw));
    if (hw == NULL) {
        mt_cli_error(&cli, "out of memory");
        goto out;
    }
    if (mt_hwprofile_load(hw_path, hw) != MT_OK) {
        goto out;
    }
    if (n_learn > 0 && learn(learn_paths, n_learn, hw, hw_path) != MT_OK) {
        goto out;
    }
    if (n_learn > 0 && (!have_gpu || !have_cpu)) {
        rc = 0; /* only the profile was asked for */
        goto out;
    }
    if (hw->source[0] == '\0') {
        /* What the plan and the planner's messages call the profile. */
        snprintf(hw->source, sizeof(hw->source), "%s", hw_path);
    }
    if (trace_path != NULL && mt_trace_load(trace_path, &trace) != MT_OK) {
        goto out;
    }
    if (mt_plan_build(&cfg, &sizes, hw, &budget, trace, trace_path, &plan) != MT_OK) {
        goto out;
    }
    print_plan(plan, &cfg, n_moe);
    if (out_path != NULL) {
        if (mt_plan_save(plan, out_path) != MT_OK) {
            goto out;
        }
        printf("plan       : written to %s\n", out_path);
    }
    rc = 0;
out:
    mt_plan_destroy(plan);
    mt_trace_destroy(trace);
    free(hw);
    mt_model_destroy(model);
    return rc;
}
