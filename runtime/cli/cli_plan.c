/* SPDX-License-Identifier: MIT */
/*
 * cli_plan.c - `moetier plan`: where each expert should live on a machine, and the tok/s to expect.
 *
 * The one idea: the planner needs only the model's sizes (from config.json, so --config-only plans
 * the full 671B model without its weights), a hardware profile (measured by `moetier bench --json`
 * or a what-if file), the memory budgets, and optionally an activation trace. It prints per tier
 * the experts, GB, bytes and time per token, the bottleneck and the predicted decode and prefill
 * speed, and writes the plan file a heterogeneous runtime loads (format in runtime/planner.h).
 *
 * With no -m (or -m deepseek-v3.2 where no such directory exists) it plans the full
 * DeepSeek-V3.2 from the config built into the binary (mt_config_default_v32, which
 * tests/test_config checks against the published config.json), so a fresh build can answer "how
 * fast would V3.2 run here?" with no download. Without --hw it uses the profile cached for this
 * host, or measures one (cli_autoplan.h); without --gpu-mem/--cpu-mem the budgets are what the
 * profiled machine has free.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/cli/cli_autoplan.h"
#include "runtime/model/config.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#include "runtime/plan/trace.h"

#include "runtime/base/file_util.h"
#include "runtime/base/json_kind.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: moetier plan [-m DIR] [--hw PROFILE] [--gpu-mem SIZE] [--cpu-mem SIZE] [options]\n"
        "\n"
        "With no -m: the full DeepSeek-V3.2 (its config is built in; no download).\n"
        "\n"
        "Place every routed expert on the GPU, in DRAM (computed by the CPU, or copied over\n"
        "PCIe to the GPU) or on NVMe so that the predicted time per token is smallest, print\n"
        "per tier the experts, GB, bytes and time per token, the bottleneck and the predicted\n"
        "decode and prefill tok/s, and write the plan (-o).\n"
        "\n"
        "Model: time per token = always-on bytes / HBM bandwidth + per MoE layer the slowest of\n"
        "the concurrent sources (GPU HBM, CPU DRAM x efficiency, the DRAM bus that CPU experts\n"
        "and copies share, PCIe, disk), each loaded with activation probability x expert\n"
        "bytes. The GPU first holds the always-on weights, the KV cache for --ctx tokens and\n"
        "--gpu-reserve; experts get the rest. DRAM first holds --cpu-reserve, the embedding\n"
        "table and the GPU engine's prompt buffers for host experts (1.75 GiB at 4,096-token\n"
        "chunks; when the profile has no GPU, all the always-on weights and the KV).\n"
        "\n"
        "options:\n"
        "  -m, --model DIR         checkpoint directory (opened and checked unless\n"
        "                          --config-only); default, or 'deepseek-v3.2': the\n"
        "                          built-in DeepSeek-V3.2 config\n"
        "      --config-only       read DIR/config.json only (the full model without weights)\n"
        "      --config FILE       use this config.json (implies --config-only)\n"
        "      --hw PROFILE        hardware profile JSON (moetier bench --json, or what-if);\n"
        "                          default: this host's cached profile, else a quick bench\n"
        "                          (cached in $MOETIER_CACHE_DIR, $XDG_CACHE_HOME/moetier or\n"
        "                          ~/.cache/moetier)\n"
        "      --gpu-mem SIZE      GPU memory to use, e.g. 24G (K, M, G, T: powers of 1024);\n"
        "                          default: the profile's GPU (free memory on this host)\n"
        "                          minus max(512M, 5%%)\n"
        "      --cpu-mem SIZE      DRAM to use, e.g. 128G; default: MemAvailable on this\n"
        "                          host, else 90%% of the profile's DRAM\n"
        "      --trace FILE        expert activation trace (moetier run --trace); default:\n"
        "                          uniform, each expert k/E; repeat it to plan for the\n"
        "                          routing of several runs together (a workload)\n"
        "      --ctx N             context the KV cache must hold (default 32768)\n"
        "      --kv-dtype T, --indexer M\n"
        "                          the GPU engine's cache the plan budgets, as `run` takes\n"
        "                          them (defaults bf16, exact; fp8 and fp8 need half)\n"
        "      --prefill-batch N   tokens per prefill step for the prefill prediction\n"
        "                          (default: the GPU engine's prompt chunk: where routed\n"
        "                          experts live off the GPU the longest of 4096, 2048,\n"
        "                          1024 whose work space fits, else 512)\n"
        "      --cpu-eff X         fraction of the DRAM read rate and FLOPs that CPU expert\n"
        "                          kernels reach (default: the profile's measured\n"
        "                          cpu.expert_eff, else 0.6)\n"
        "      --gpu-reserve SIZE  GPU workspace kept free (default 1.5G, grown to the GPU\n"
        "                          engine's work space for the longest prompt chunks\n"
        "                          --gpu-mem allows where experts live off the GPU)\n"
        "      --cpu-reserve SIZE  DRAM kept free: staging ring, OS (default 4G)\n"
        "  -o, --output FILE       write the plan JSON here\n"
        "      --check PLAN        only load PLAN and check it against the model\n"
        "      --learn REPORT      learn from a run report (moetier run --plan P --json\n"
        "                          REPORT; repeatable, averaged): the measured CPU expert,\n"
        "                          disk and GPU efficiencies (the GPU's prompt FLOPs from\n"
        "                          runs with every expert on the GPU) are written into the\n"
        "                          --hw profile's \"learned\" section and replace the\n"
        "                          planner's assumptions; then plans with them when -o,\n"
        "                          --gpu-mem or --cpu-mem asks for a plan (else only the\n"
        "                          profile); with --trace, the plans of those runs are\n"
        "                          predicted again with it to learn the GPU engine's host\n"
        "                          wait\n"
        "      --disk-from PROFILE the disks of this profile replace --hw's (e.g. moetier\n"
        "                          bench --only disk just before the run: a drive reads\n"
        "                          differently from minute to minute)\n"
        "      --dram-from PROFILE the DRAM read rates of this profile replace --hw's (e.g.\n"
        "                          moetier bench --quick --only dram just before the run:\n"
        "                          learned CPU efficiencies are ratios to that ceiling)\n"
        "  -h, --help              print this help\n");
}

static const struct mt_cli cli = {"plan", usage};

/* ---- --learn: efficiencies from run reports ------------------------------------------------ */

#define MAX_LEARN 16
#define MAX_TRACE 16
/* The fewest decoded tokens the GPU's rate and wait are learned from: the GPU engine's first
 * steps record CUDA graphs (a 2-layer model's one decoded token ran at 590-770 tok/s where its
 * steady steps run at ~1,150, and taught an HBM efficiency of 0.43; hetero-h200.md, session 38) */
#define LEARN_MIN_DECODE 16

/*
 * What the reports measured, per source: bytes, seconds, and seconds x the rate each report's
 * plan used (summed, so a long run counts more than a short one). The plans' rates differ where
 * they were made with --dram-from or --disk-from (the ceiling of that minute), so the efficiency
 * is the bytes over what the plans' rates would have read in the same time, not a ratio to the
 * last report's rate (2026-11-30: a dram run's CPU experts at 67.2 GB/s of a 133.6 GB/s minute
 * and a gpu run's few at 62.0 of 84.9 gave 0.791 of 84.9 that way, where the two say 0.505).
 */
struct learned_sum {
    double cpu_b, cpu_s, cpu_ref;
    double disk_b, disk_s, disk_ref;
    double gpu_b, gpu_s, gpu_ref;
    double pre_model_s, pre_s; /* the CPU's prefill runs: their time by the model, measured */
    double gpre_model_s, gpre_s; /* GPU prompts: their time by the model at efficiency 1,
                                    measured */
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

/* ---- what a report may hold -------------------------------------------------------------- */

/*
 * The bounds of the numbers the learner reads. A report is written by `moetier run --json`, but
 * read back after it sat on disk, was copied between machines or was edited (the tests make
 * theirs with jq), and every number goes into a rate that replaces the planner's assumption in
 * the profile: a string where an object belongs, a negative byte count or 2^62 tokens was learned
 * as an efficiency of 0.007 or 2 (capped) and saved. None is near a real run: a trillion tokens
 * is 30 years of one run at 1,000 tok/s; DeepSeek-V3.2 decoding all its 163,840 positions with
 * every expert on the GPU reads 3.3 PB of experts, a third of REPORT_MAX_BYTES; rates share the
 * profile's bound (hwprofile.c NUMBER_MAX).
 */
#define REPORT_MAX_TOKENS 1e12 /* tokens, forwards, engine_tokens */
#define REPORT_MAX_COUNT 1e15  /* runs and (token, expert) pairs: k x MoE layers x tokens */
#define REPORT_MAX_BYTES 1e16  /* bytes of one phase, or always-on bytes a token */
#define REPORT_MAX_SECONDS 1e9 /* 30 years */
#define REPORT_MAX_RATE 1e9    /* GB/s, GFLOP/s, TFLOPS, efficiencies, busy fractions */
#define REPORT_MAX_FLOPS 1e27  /* a phase's FLOPs, or one expert's a token */
/* The fastest read the learner believes: 100 TB/s, 20x an H200's HBM. Each number may be in its
 * range while their ratio is not: 1e-300 s for a tier's bytes (or 1e16 bytes in a second) made
 * a rate that printed 300 digits and was learned as the capped efficiency 2. */
#define REPORT_MAX_READ_GBPS 1e5

struct report_check {
    const char *path;
    mt_status_t st; /* the first failure; later checks stay quiet */
};

/* Fail c (once) for where.key, which is v (NULL: absent) where `want` was wanted. */
static void
report_bad(struct report_check *c, const char *where, const char *key, const char *want,
           const json_t *v)
{
    char got[64];

    if (c->st != MT_OK) {
        return;
    }
    if (v == NULL) {
        c->st = mt_fail(MT_ERR_FORMAT, 0,
                        "run report '%s': field '%s%s%s' is missing (it must be %s; write the "
                        "report again with moetier run --plan PLAN --json REPORT)",
                        c->path, where, *where ? "." : "", key, want);
        return;
    }
    if (json_is_integer(v)) {
        snprintf(got, sizeof(got), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_number(v)) {
        snprintf(got, sizeof(got), "%g", json_number_value(v));
    } else {
        snprintf(got, sizeof(got), "%s", mt_json_kind(v));
    }
    c->st = mt_fail(MT_ERR_FORMAT, 0,
                    "run report '%s': field '%s%s%s' must be %s, got %s (moetier run --json "
                    "writes no such value: was the report edited? nothing was learned)",
                    c->path, where, *where ? "." : "", key, want, got);
}

/*
 * obj[key], a number in [lo, hi] (integral where integer). Absent is allowed: the learner takes
 * it as 0, "not measured", as reports from before the field was added need.
 */
static void
report_num(struct report_check *c, json_t *obj, const char *where, const char *key, double lo,
           double hi, bool integer)
{
    json_t *v = json_object_get(obj, key);
    char want[96];
    double x;

    if (v == NULL || c->st != MT_OK) {
        return;
    }
    x = json_is_number(v) ? json_number_value(v) : NAN;
    if (isfinite(x) && x >= lo && x <= hi && (!integer || x == floor(x))) {
        return;
    }
    snprintf(want, sizeof(want), "%s in [%g, %g]", integer ? "an integer" : "a number", lo, hi);
    report_bad(c, where, key, want, v);
}

/* obj[key] as an object (NULL when absent, or when it is null and null_ok); anything else fails. */
static json_t *
report_obj(struct report_check *c, json_t *obj, const char *where, const char *key, bool null_ok)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_object(v) || (null_ok && json_is_null(v))) {
        return json_is_object(v) ? v : NULL;
    }
    report_bad(c, where, key, null_ok ? "an object or null" : "an object", v);
    return NULL;
}

/* bytes read in secs, where both are there, at most REPORT_MAX_READ_GBPS (where.what: the key
 * of the time, which the message names). */
static void
report_rate(struct report_check *c, const char *where, const char *what, double bytes, double secs)
{
    if (c->st != MT_OK || !(bytes > 0 && secs > 0) || bytes / secs * 1e-9 <= REPORT_MAX_READ_GBPS) {
        return;
    }
    c->st = mt_fail(MT_ERR_FORMAT, 0,
                    "run report '%s': '%s.%s' is %g s for %g bytes, a read faster than the %g "
                    "GB/s any tier reads (moetier run --json writes no such pair: was the "
                    "report edited? nothing was learned)",
                    c->path, where, what, secs, bytes, REPORT_MAX_READ_GBPS);
}

static void
report_phase(struct report_check *c, json_t *root, const char *name)
{
    json_t *ph = json_object_get(root, name);
    json_t *tiers;
    json_t *stream;
    char where[64];

    if (!json_is_object(ph)) {
        report_bad(c, "", name, "an object", ph);
        return;
    }
    report_num(c, ph, name, "tokens", 0, REPORT_MAX_TOKENS, true);
    report_num(c, ph, name, "forwards", 0, REPORT_MAX_TOKENS, true);
    report_num(c, ph, name, "engine_tokens", 0, REPORT_MAX_TOKENS, true);
    report_num(c, ph, name, "seconds", 0, REPORT_MAX_SECONDS, false);
    report_num(c, ph, name, "tok_s", 0, REPORT_MAX_RATE, false);
    report_num(c, ph, name, "forward_s", 0, REPORT_MAX_SECONDS, false);
    report_num(c, ph, name, "moe_wait_s", 0, REPORT_MAX_SECONDS, false);
    report_num(c, ph, name, "prompt_flops", 0, REPORT_MAX_FLOPS, false);
    /* several host executors may be busy at once: a fraction of the forward, not capped at 1 */
    report_num(c, ph, name, "cpu_busy", 0, REPORT_MAX_RATE, false);
    tiers = report_obj(c, ph, name, "tiers", false);
    for (int t = 0; t < MT_TIER_COUNT && tiers != NULL; t++) {
        const char *tier = mt_tier_name((enum mt_tier)t);
        json_t *to;

        snprintf(where, sizeof(where), "%s.tiers", name);
        to = report_obj(c, tiers, where, tier, false);
        snprintf(where, sizeof(where), "%s.tiers.%s", name, tier);
        report_num(c, to, where, "runs", 0, REPORT_MAX_COUNT, true);
        report_num(c, to, where, "pairs", 0, REPORT_MAX_COUNT, true);
        report_num(c, to, where, "bytes", 0, REPORT_MAX_BYTES, false);
        report_num(c, to, where, "seconds", 0, REPORT_MAX_SECONDS, false);
        report_rate(c, where, "seconds", num_at(to, "bytes", NULL, NULL),
                    num_at(to, "seconds", NULL, NULL));
    }
    stream = report_obj(c, ph, name, "stream", true);
    snprintf(where, sizeof(where), "%s.stream", name);
    report_num(c, stream, where, "bytes_read", 0, REPORT_MAX_BYTES, false);
    report_num(c, stream, where, "read_s", 0, REPORT_MAX_SECONDS, false);
    report_rate(c, where, "read_s", num_at(stream, "bytes_read", NULL, NULL),
                num_at(stream, "read_s", NULL, NULL));
    /* the GPU's weight reads a forward (learn_report): the always-on weights and its experts */
    report_rate(c, name, "forward_s",
                num_at(root, "always_on_bytes_per_token", NULL, NULL) *
                        num_at(ph, "forwards", NULL, NULL) +
                    num_at(tiers, "gpu", "bytes", NULL),
                num_at(ph, "forward_s", NULL, NULL));
}

/*
 * Load the report at path and check every field the learner reads (learn_report,
 * learn_prefill, learn_gpu_prefill, learn_host_wait) for its type and range, so that one bad
 * field refuses the whole report with one message naming it and the file, before anything is
 * learned or the profile written. The report's "plan" must be a path or null, but the file need
 * not exist: only the GPU's host wait re-predicts that plan (learn_host_wait), and where it is
 * gone (or the path was relative to where `run` ran) the efficiencies are still learned and
 * the wait is not, with a warning that says so; a CPU run's report never reads it.
 */
static mt_status_t
check_report(const char *path)
{
    struct report_check c = {path, MT_OK};
    static const char *const hw_rates[] = {
        "hbm_gbps",           "dram_gbps",       "disk_gbps",  "cpu_prefill_gbps",
        "cpu_prefill_gflops", "cpu_prefill_eff", "gpu_tflops", "gpu_prefill_eff",
    };
    json_t *root;
    json_t *v;
    json_t *pred;
    json_t *hw;

    c.st = mt_json_load_versioned(path, "run report", "moetier-report", 1, &root);
    if (c.st != MT_OK) {
        return c.st;
    }
    if (!json_is_object(json_object_get(root, "predicted"))) {
        json_decref(root);
        return mt_fail(MT_ERR_INVAL, 0,
                       "run report '%s' is of a run without --plan: it has no predicted rates to "
                       "learn against (run with --plan FILE --json REPORT)",
                       path);
    }
    /* the engine that ran: the GPU's rates are learned from "gpu" runs only */
    v = json_object_get(root, "device");
    if (json_is_string(v) && strcmp(json_string_value(v), "cpu") != 0 &&
        strcmp(json_string_value(v), "gpu") != 0) {
        c.st = mt_fail(MT_ERR_FORMAT, 0,
                       "run report '%s': field 'device' must be \"cpu\" or \"gpu\", got "
                       "\"%.32s\" (moetier run --json writes no such value: was the report "
                       "edited? nothing was learned)",
                       path, json_string_value(v));
    } else if (!json_is_string(v)) {
        report_bad(&c, "", "device", "\"cpu\" or \"gpu\"", v);
    }
    v = json_object_get(root, "plan");
    if (v != NULL && !json_is_string(v) && !json_is_null(v)) {
        report_bad(&c, "", "plan", "a path or null", v);
    }
    /* not read by the learner, but a report of an MoE run has them: 0 says it is not one */
    report_num(&c, root, "", "expert_bytes", 1, REPORT_MAX_BYTES, true);
    report_num(&c, root, "", "moe_layers", 1, MT_MAX_LAYERS, true);
    report_num(&c, root, "", "k", 1, 65536, true);
    report_num(&c, root, "", "always_on_bytes_per_token", 0, REPORT_MAX_BYTES, false);
    report_phase(&c, root, "prefill");
    report_phase(&c, root, "decode");
    pred = json_object_get(root, "predicted");
    report_num(&c, pred, "predicted", "expert_flops", 0, REPORT_MAX_FLOPS, false);
    hw = report_obj(&c, pred, "predicted", "hardware", false);
    for (size_t i = 0; i < sizeof(hw_rates) / sizeof(hw_rates[0]); i++) {
        report_num(&c, hw, "predicted.hardware", hw_rates[i], 0, REPORT_MAX_RATE, false);
    }
    json_decref(root);
    return c.st;
}

/*
 * An efficiency as the planner takes it: the measured rate over the rate the plan used, i.e. the
 * ceiling the same profile measured. It may exceed 1 (the machine's real kernels beat a quick
 * ceiling; capping at 1 made the CPU look slower than it was, hetero-h200.md run 2), up to
 * MT_PLAN_LEARNED_EFF_MAX (a tiny model's experts that fit in a cache say nothing about DRAM).
 */
static double
eff_of(double measured_gbps, double rate_gbps, const char *what, const char *path)
{
    double eff = measured_gbps / rate_gbps;
    bool cap = eff > MT_PLAN_LEARNED_EFF_MAX;

    printf("learned    : %s %.3f GB/s of %.3f GB/s = %.3f%s (%s)\n", what, measured_gbps,
           rate_gbps, eff, cap ? ", capped" : "", path);
    return cap ? MT_PLAN_LEARNED_EFF_MAX : eff;
}

/*
 * Did the GPU's own weight reads set this phase's time? Not where DRAM experts were copied over
 * PCIe into GPU slots (the stream then waits for the copies, which the host does not count as a
 * wait: a dram plan's run taught 0.043 of HBM that way, 2026-11-30), nor where the CPU experts
 * were busy for more than a quarter of the forward (the engine starts them before the device's
 * launches, which hide part of their wait; and the host wait's residual there is the CPU's rate).
 * DRAM_CPU experts copied into slots (a step's balance, engine_gpu_moe.c mark_device) are
 * counted under dram-pcie too (eng_moe_count).
 */
static bool
gpu_limited(json_t *ph)
{
    return num_at(json_object_get(ph, "tiers"), "dram-pcie", "bytes", NULL) == 0 &&
           num_at(ph, "cpu_busy", NULL, NULL) <= 0.25;
}

/*
 * The CPU's expert runs in prefill, where the plan modelled them (mt_plan_problem.cpu_run_rate):
 * the time its rates give the prefill's dram-cpu runs (their weight bytes at the run rate, their
 * token-expert pairs' FLOPs at the token rate) over the time they took, in runs that streamed
 * nothing (a DRAM expert the GPU engine copies into a slot for a chunk's many tokens is counted
 * under dram-pcie: eng_moe_count). On the H200 host a run of the all-DRAM plan taught 0.883,
 * and the plan made with it predicted the next run's prefill to 0.99 (bench/results/
 * hetero-h200.md, session 28).
 */
static void
learn_prefill(json_t *root, double streamed, const char *path, struct learned_sum *sum)
{
    json_t *cpu = json_object_get(json_object_get(json_object_get(root, "prefill"), "tiers"),
                                  "dram-cpu");
    double gbps = num_at(root, "predicted", "hardware", "cpu_prefill_gbps");
    double gflops = num_at(root, "predicted", "hardware", "cpu_prefill_gflops");
    double eff = num_at(root, "predicted", "hardware", "cpu_prefill_eff");
    double flops = num_at(root, "predicted", "expert_flops", NULL);
    double bytes = num_at(cpu, "bytes", NULL, NULL);
    double pairs = num_at(cpu, "pairs", NULL, NULL);
    double secs = num_at(cpu, "seconds", NULL, NULL);

    if (!(gbps > 0 && gflops > 0 && flops > 0 && bytes > 0 && secs > 0) || streamed > 0) {
        return;
    }
    /* the raw rates: the efficiency the plan already applied is learned again, not compounded */
    double model_s = bytes / (gbps * 1e9) + pairs * flops / (gflops * 1e9);
    printf("learned    : CPU prefill runs %.3f s by the profile's model, %.3f s measured = %.3f "
           "(the plan's %.3f; %s)\n", model_s, secs, model_s / secs, eff > 0 ? eff : 1.0, path);
    sum->pre_model_s += model_s;
    sum->pre_s += secs;
}

/*
 * The GPU engine's prompts, where every routed expert was on the GPU (nothing in DRAM or
 * streamed: the engine then waits for nothing else) and the model says the products, not the
 * weight reads, bound them: the FLOPs the planner counts (the report's prompt_flops and the GPU
 * experts' pairs, MT_PLAN_GPU_PASSES bf16 products each) at the profile's BF16 rate, over the
 * forward time. A host with experts off the GPU cannot teach it (its prompts wait for them);
 * a small model that fits, such as `moetier synth --preset v32-shape --layers 2`, can.
 */
static void
learn_gpu_prefill(json_t *root, double streamed, const char *path, struct learned_sum *sum)
{
    json_t *ph = json_object_get(root, "prefill");
    json_t *tiers = json_object_get(ph, "tiers");
    const char *dev = json_string_value(json_object_get(root, "device"));
    double tflops = num_at(root, "predicted", "hardware", "gpu_tflops");
    double eff = num_at(root, "predicted", "hardware", "gpu_prefill_eff");
    double hbm = num_at(root, "predicted", "hardware", "hbm_gbps");
    double flops = num_at(ph, "prompt_flops", NULL, NULL) +
                   num_at(tiers, "gpu", "pairs", NULL) * num_at(root, "predicted", "expert_flops",
                                                                NULL);
    double bytes = num_at(root, "always_on_bytes_per_token", NULL, NULL) *
                       num_at(ph, "forwards", NULL, NULL) +
                   num_at(tiers, "gpu", "bytes", NULL);
    double secs = num_at(ph, "forward_s", NULL, NULL);
    double off_gpu = num_at(tiers, "dram-cpu", "bytes", NULL) +
                     num_at(tiers, "dram-pcie", "bytes", NULL) +
                     num_at(tiers, "nvme", "bytes", NULL);

    if (dev == NULL || strcmp(dev, "gpu") != 0 ||
        !(tflops > 0 && hbm > 0 && flops > 0 && secs > 0) || off_gpu > 0 || streamed > 0) {
        return;
    }
    double model_s = flops * MT_PLAN_GPU_PASSES / (tflops * 1e12); /* at efficiency 1 */
    if (model_s / (eff > 0 ? eff : MT_PLAN_GPU_PREFILL_EFF) < bytes / (hbm * 1e9)) {
        return; /* too short a prompt: its weight reads bound it */
    }
    printf("learned    : GPU prefill %.1f TFLOP x %d products in %.3f s = %.3f of %.0f TFLOPS "
           "(the plan's %.3f; %s)\n", flops * 1e-12, MT_PLAN_GPU_PASSES, secs, model_s / secs,
           tflops, eff > 0 ? eff : MT_PLAN_GPU_PREFILL_EFF, path);
    sum->gpre_model_s += model_s;
    sum->gpre_s += secs;
}

/*
 * Add what one report measured: the CPU's expert reads (the dram-cpu tier's bytes over its time,
 * decode when the run decoded, in runs that streamed nothing) over the plan's DRAM rate; the
 * streamed bytes over the time reads were in flight, over the plan's disk rate; and on the GPU
 * engine, the weight bytes a decode step reads (routed experts on the GPU and the always-on
 * weights) over the forward time less the waits for host experts, over the plan's HBM rate. A
 * report of a run without a plan has no rates to compare with.
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

    /* check_report has read it already: a report with predicted rates, every number in range */
    st = mt_json_load_versioned(path, "run report", "moetier-report", 1, &root);
    if (st != MT_OK) {
        return st;
    }
    ph = json_object_get(root, num_at(root, "decode", "tokens", NULL) > 0 ? "decode" : "prefill");
    double streamed = num_at(root, "prefill", "stream", "bytes_read") +
                      num_at(root, "decode", "stream", "bytes_read");
    /* the CPU's time where it also waited for the disk says nothing about its kernels. DRAM
       experts copied into GPU slots beside them (the GPU engine balances the two, in decode
       too) read the same bus; the planner charges those copies to the bus (MT_SRC_DRAM_BUS),
       not to the CPU's kernels, so the CPU's rate is learned as it ran. Where the CPU's and the
       copies' bytes together came over 10% faster than the profile's DRAM rate, that rate is
       below what the bus gives (a profile measured while something else ran,
       or an old one), and the plans made with it will be too slow: say so */
    rate = num_at(root, "predicted", "hardware", "dram_gbps");
    bytes = num_at(json_object_get(ph, "tiers"), "dram-cpu", "bytes", NULL);
    secs = num_at(json_object_get(ph, "tiers"), "dram-cpu", "seconds", NULL);
    double copied = num_at(json_object_get(ph, "tiers"), "dram-pcie", "bytes", NULL);
    if (rate > 0 && bytes > 0 && secs > 0 && streamed == 0) {
        double bus = (bytes + copied) / secs / 1e9;

        eff_of(bytes / secs / 1e9, rate, "CPU expert reads", path);
        sum->cpu_b += bytes, sum->cpu_s += secs, sum->cpu_ref += secs * rate;
        if (bus > 1.1 * rate) {
            mt_log_warn("run report '%s': the CPU experts%s read %.1f GB/s of DRAM, more than "
                        "the profile's %.1f GB/s; plans with that profile underrate this host's "
                        "memory (measure it again: moetier bench)",
                        path, copied > 0 ? " and the copies into GPU slots beside them" : "",
                        bus, rate);
        }
    }
    learn_prefill(root, streamed, path, sum);
    learn_gpu_prefill(root, streamed, path, sum);
    rate = num_at(root, "predicted", "hardware", "disk_gbps");
    secs = num_at(root, "prefill", "stream", "read_s") + num_at(root, "decode", "stream", "read_s");
    if (rate > 0 && streamed > 0 && secs > 0) {
        eff_of(streamed / secs / 1e9, rate, "NVMe reads", path);
        sum->disk_b += streamed, sum->disk_s += secs, sum->disk_ref += secs * rate;
    }
    rate = num_at(root, "predicted", "hardware", "hbm_gbps");
    ph = json_object_get(root, "decode");
    bytes = num_at(json_object_get(ph, "tiers"), "gpu", "bytes", NULL) +
            num_at(root, "always_on_bytes_per_token", NULL, NULL) *
                num_at(ph, "forwards", NULL, NULL);
    /* the GPU's own time: the forward pass less the host's waits for CPU and disk experts; only
       where those waits are small (a run the GPU limited), or what is left is mostly launches
       and synchronisation that the host experts caused; and only in a run the GPU's reads
       limited (gpu_limited) */
    double fwd = num_at(ph, "forward_s", NULL, NULL);
    secs = fwd - num_at(ph, "moe_wait_s", NULL, NULL);
    dev = json_string_value(json_object_get(root, "device"));
    bool gpu = dev != NULL && strcmp(dev, "gpu") == 0;
    double steps = num_at(ph, "forwards", NULL, NULL);
    if (gpu && steps > 0 && steps < LEARN_MIN_DECODE) {
        printf("learned    : nothing of the GPU from %s: %.0f decoded token%s, fewer than %d\n",
               path, steps, steps == 1 ? "" : "s", LEARN_MIN_DECODE);
    } else if (gpu && rate > 0 && bytes > 0 && secs > 0 && secs >= 0.75 * fwd &&
               gpu_limited(ph) && streamed == 0) {
        eff_of(bytes / secs / 1e9, rate, "GPU weight reads", path);
        sum->gpu_b += bytes, sum->gpu_s += secs, sum->gpu_ref += secs * rate;
    }
    json_decref(root);
    return MT_OK;
}

/*
 * The GPU engine's wait per MoE layer that uses a host expert (hwprofile.h, host_layer_ms): in
 * a report of a GPU run of a plan, the decode time per token measured less the same plan
 * predicted again at the efficiencies just learned (l) and no wait, over the layers per token
 * that waited (mt_plan_repredict_decode, with the --trace given, else the plan's uniform
 * activation). Runs that streamed are left out: there the disk's own variation would be taken
 * for the wait, and decodes of fewer than LEARN_MIN_DECODE tokens; so are runs the GPU's reads
 * did not limit (gpu_limited): there the residual is
 * the CPU's or the PCIe's rate against its model (a dram plan's run measured 5 ms a token under
 * its re-prediction and cancelled a GPU-limited run's 0.56 ms a waiting layer, 2026-11-30,
 * bench/results/hetero-h200.md). Adds to *res_s and *layers (per token, one report counting
 * once).
 */
static mt_status_t
learn_host_wait(const char *path, const struct mt_hw_learned *l, const struct mt_trace *trace,
                double *res_s, double *layers)
{
    json_t *root;
    struct mt_plan *plan = NULL;
    const char *dev;
    const char *plan_path;
    mt_status_t st;

    if ((st = mt_json_load_versioned(path, "run report", "moetier-report", 1, &root)) != MT_OK) {
        return st;
    }
    dev = json_string_value(json_object_get(root, "device"));
    plan_path = json_string_value(json_object_get(root, "plan"));
    double tok_s = num_at(root, "decode", "tok_s", NULL);
    double streamed = num_at(root, "prefill", "stream", "bytes_read") +
                      num_at(root, "decode", "stream", "bytes_read");
    if (dev == NULL || strcmp(dev, "gpu") != 0 || plan_path == NULL || tok_s <= 0 ||
        streamed > 0 || !gpu_limited(json_object_get(root, "decode")) ||
        num_at(root, "decode", "forwards", NULL) < LEARN_MIN_DECODE) {
        json_decref(root);
        return MT_OK;
    }
    if (mt_plan_load(plan_path, &plan) != MT_OK) {
        /* the efficiencies are learned without it: only the host wait needs the plan */
        mt_log_warn("run report '%s': its plan '%s' cannot be read, so the host wait is not "
                    "learned from it (keep the plan file where the run read it)", path, plan_path);
        json_decref(root);
        return MT_OK;
    }
    struct mt_plan_rates r = {
        .cpu_eff = l->cpu_expert_eff > 0 ? l->cpu_expert_eff : plan->budget.cpu_eff,
        .gpu_eff = l->gpu_eff > 0 ? l->gpu_eff : plan->gpu_eff,
        .disk_eff = l->disk_eff > 0 ? l->disk_eff : plan->disk_eff,
        .host_layer_ms = 0.0,
    };
    double model_s = 0.0, hl = 0.0;
    st = mt_plan_repredict_decode(plan, trace, &r, &model_s, &hl);
    if (st == MT_OK && hl >= 0.05) {
        printf("learned    : host wait: decode %.3f ms/token measured, %.3f predicted at the "
               "learned rates, %.2f layers/token wait (%s)\n",
               1e3 / tok_s, model_s * 1e3, hl, path);
        *res_s += 1.0 / tok_s - model_s;
        *layers += hl;
    }
    mt_plan_destroy(plan);
    json_decref(root);
    return st;
}

/* Learn from every report, write the averages into the profile hw (and its file hw_path). */
static mt_status_t
learn(const char *const *reports, int n, const struct mt_trace *trace, struct mt_hwprofile *hw,
      const char *hw_path)
{
    struct learned_sum sum = {0};
    struct mt_hw_learned *l = &hw->learned;
    mt_status_t st;

    /* every report is checked before any is learned from: one bad report refuses them all,
       with nothing printed as learned and the profile untouched */
    for (int i = 0; i < n; i++) {
        if ((st = check_report(reports[i])) != MT_OK) {
            return st;
        }
    }
    for (int i = 0; i < n; i++) {
        if ((st = learn_report(reports[i], &sum)) != MT_OK) {
            return st;
        }
    }
    if (sum.cpu_s + sum.disk_s + sum.gpu_s + sum.pre_s + sum.gpre_s == 0) {
        return mt_fail(MT_ERR_INVAL, 0,
                       "the run report%s measured no tier the planner models "
                       "(CPU experts without streaming, streamed reads, a GPU-limited "
                       "decode, or a prompt with every expert on the GPU)",
                       n > 1 ? "s" : "");
    }
    /* the newest measurements replace what was learned before, source by source; several
       reports count by their bytes and seconds together */
    l->reports = n;
    if (sum.cpu_s > 0) {
        l->cpu_expert_eff = eff_of(sum.cpu_b / sum.cpu_s / 1e9, sum.cpu_ref / sum.cpu_s, "CPU, all",
                                   "sum");
    }
    if (sum.disk_s > 0) {
        l->disk_eff = eff_of(sum.disk_b / sum.disk_s / 1e9, sum.disk_ref / sum.disk_s, "NVMe, all",
                             "sum");
    }
    if (sum.gpu_s > 0) {
        l->gpu_eff = eff_of(sum.gpu_b / sum.gpu_s / 1e9, sum.gpu_ref / sum.gpu_s, "GPU, all",
                            "sum");
    }
    if (sum.pre_s > 0) {
        l->cpu_prefill_eff = MT_MIN(sum.pre_model_s / sum.pre_s, MT_PLAN_LEARNED_EFF_MAX);
        printf("learned    : CPU prefill runs, all: %.3f\n", l->cpu_prefill_eff);
    }
    if (sum.gpre_s > 0) {
        l->gpu_prefill_eff = MT_MIN(sum.gpre_model_s / sum.gpre_s, MT_PLAN_LEARNED_EFF_MAX);
        printf("learned    : GPU prefill, all: %.3f\n", l->gpu_prefill_eff);
    }
    /* then, at those rates, what the plans do not explain: the host wait per layer */
    double res_s = 0.0, layers = 0.0;
    for (int i = 0; i < n; i++) {
        if ((st = learn_host_wait(reports[i], l, trace, &res_s, &layers)) != MT_OK) {
            return st;
        }
    }
    if (layers > 0) {
        l->host_layer_ms = MT_MAX(res_s / layers * 1e3, 0.0);
        printf("learned    : host wait, all: %.3f ms per layer that waits\n", l->host_layer_ms);
    }
    /* an efficiency below the profile's floor would be saved and then refuse to load (a CPU
       that read a millionth of its plan's rate ran something else than its experts) */
    const double learned[] = {l->cpu_expert_eff, l->disk_eff, l->gpu_eff, l->cpu_prefill_eff,
                              l->gpu_prefill_eff};
    for (size_t i = 0; i < sizeof(learned) / sizeof(learned[0]); i++) {
        if (learned[i] > 0 && learned[i] < MT_HW_RATE_MIN) {
            return mt_fail(MT_ERR_INVAL, 0,
                           "the run report%s taught an efficiency of %g, below the %g a "
                           "profile holds; nothing was learned and '%s' is unchanged (were the "
                           "reports edited, or did something else run?)",
                           n > 1 ? "s" : "", learned[i], MT_HW_RATE_MIN, hw_path);
        }
    }
    snprintf(l->from, sizeof(l->from), "%.*s", (int)sizeof(l->from) - 1, reports[n - 1]);
    if ((st = mt_hwprofile_save(hw, hw_path)) != MT_OK) {
        return st;
    }
    printf("learned    : written to %s (cpu_expert_eff %.3f, disk_eff %.3f, gpu_eff %.3f, "
           "cpu_prefill_eff %.3f, gpu_prefill_eff %.3f, host_layer_ms %.3f; 0: not measured)\n",
           hw_path, l->cpu_expert_eff, l->disk_eff, l->gpu_eff, l->cpu_prefill_eff,
           l->gpu_prefill_eff, l->host_layer_ms);
    return MT_OK;
}

/*
 * --disk-from, --dram-from: the disk, or the DRAM read rates, measured just before the run
 * replace the profile's, for this plan only (after --learn saved the profile without them). A
 * drive reads 1.1-2.2 GB/s from minute to minute on the H200 box, its DRAM ceiling 100-117 GB/s
 * from call to call, and in session 3 the CPU experts followed the ceiling (0.62-0.64 of it in
 * two calls). Later calls did not bear that out: quick ceilings of 85-151 GB/s within minutes
 * while the experts read 62-72 (hetero-h200.md, session 7), so a learned efficiency times the
 * minute's ceiling carried the sweep's noise into the prediction; bench/hetero_h200.sh plans
 * without it unless DRAM_FROM=1.
 */
static mt_status_t
minute_from(const char *path, bool dram, struct mt_hwprofile *hw)
{
    struct mt_hwprofile *d = calloc(1, sizeof(*d));
    mt_status_t st;

    if (d == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "out of memory");
    }
    if ((st = mt_hwprofile_load(path, d)) != MT_OK) {
        free(d);
        return st;
    }
    if (!dram && d->n_disks == 0) {
        st = mt_fail(MT_ERR_INVAL, 0, "--disk-from '%s' has no disk (moetier bench --only disk "
                     "--disk PATH --json FILE measures one)", path);
    } else if (dram && !(d->cpu.read_ceiling_gbps > 0 || d->cpu.read_gbps > 0)) {
        st = mt_fail(MT_ERR_INVAL, 0, "--dram-from '%s' has no DRAM read rate (moetier bench "
                     "--quick --only dram --json FILE measures one)", path);
    } else if (!dram) {
        hw->n_disks = d->n_disks;
        memcpy(hw->disks, d->disks, sizeof(hw->disks));
    } else {
        hw->cpu.read_gbps = d->cpu.read_gbps;
        hw->cpu.read_ceiling_gbps = d->cpu.read_ceiling_gbps;
        hw->cpu.triad_gbps = d->cpu.triad_gbps;
        hw->cpu.n_nodes = d->cpu.n_nodes;
        memcpy(hw->cpu.nodes, d->cpu.nodes, sizeof(hw->cpu.nodes));
    }
    free(d);
    return st;
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
        OPT_LEARN,
        OPT_DISK_FROM,
        OPT_DRAM_FROM,
        OPT_KV_DTYPE,
        OPT_INDEXER
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
        {"disk-from", required_argument, NULL, OPT_DISK_FROM},
        {"dram-from", required_argument, NULL, OPT_DRAM_FROM},
        {"kv-dtype", required_argument, NULL, OPT_KV_DTYPE},
        {"indexer", required_argument, NULL, OPT_INDEXER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model_dir = NULL;
    const char *config_path = NULL;
    const char *hw_path = NULL;
    char trace_name[512] = "";
    const char *disk_path = NULL;
    const char *dram_path = NULL;
    const char *out_path = NULL;
    const char *check_path = NULL;
    const char *learn_paths[MAX_LEARN];
    const char *trace_paths[MAX_TRACE];
    int n_trace = 0;
    int n_learn = 0;
    bool config_only = false;
    bool have_gpu = false;
    bool have_cpu = false;
    struct mt_plan_budget budget;
    bool ctx_given = false;
    const char *planning_flag = NULL; /* the last flag given that only planning reads */
    enum mt_dtype kv_dtype = MT_DTYPE_BF16;         /* the GPU engine's defaults */
    enum mt_indexer_mode indexer = MT_INDEXER_EXACT;
    struct mt_model_config cfg;
    struct mt_model_sizes sizes;
    struct mt_hwprofile *hw = NULL;
    struct mt_trace *trace = NULL;
    struct mt_model *model = NULL;
    struct mt_plan *plan = NULL;
    char cfg_buf[4096];
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
            planning_flag = "--hw";
            hw_path = optarg;
            break;
        case OPT_TRACE:
            planning_flag = "--trace";
            if (n_trace == MAX_TRACE) {
                mt_cli_error(&cli, "at most %d --trace files", MAX_TRACE);
                return 2;
            }
            trace_paths[n_trace++] = optarg;
            break;
        case 'o':
            planning_flag = "-o";
            out_path = optarg;
            break;
        case OPT_CHECK:
            check_path = optarg;
            break;
        case OPT_DISK_FROM:
            planning_flag = "--disk-from";
            disk_path = optarg;
            break;
        case OPT_DRAM_FROM:
            planning_flag = "--dram-from";
            dram_path = optarg;
            break;
        case OPT_LEARN:
            planning_flag = "--learn";
            if (n_learn == MAX_LEARN) {
                mt_cli_error(&cli, "at most %d --learn reports", MAX_LEARN);
                return 2;
            }
            learn_paths[n_learn++] = optarg;
            break;
        case OPT_GPU_MEM:
            planning_flag = "--gpu-mem";
            if (!mt_cli_parse_size(&cli, "--gpu-mem", "24G", optarg, &budget.gpu_mem)) {
                return 2;
            }
            have_gpu = true;
            break;
        case OPT_CPU_MEM:
            planning_flag = "--cpu-mem";
            if (!mt_cli_parse_size(&cli, "--cpu-mem", "128G", optarg, &budget.cpu_mem)) {
                return 2;
            }
            have_cpu = true;
            break;
        case OPT_GPU_RES:
            planning_flag = "--gpu-reserve";
            if (!mt_cli_parse_size(&cli, "--gpu-reserve", "1.5G", optarg, &budget.gpu_reserve)) {
                return 2;
            }
            budget.gpu_reserve_auto = false;
            break;
        case OPT_CPU_RES:
            planning_flag = "--cpu-reserve";
            if (!mt_cli_parse_size(&cli, "--cpu-reserve", "4G", optarg, &budget.cpu_reserve)) {
                return 2;
            }
            break;
        case OPT_CTX:
            planning_flag = "--ctx";
            if (!mt_cli_parse_int(&cli, "--ctx", optarg, 1, 1 << 24, &budget.ctx)) {
                return 2;
            }
            ctx_given = true;
            break;
        case OPT_KV_DTYPE:
            planning_flag = "--kv-dtype";
            if (strcmp(optarg, "bf16") == 0 || strcmp(optarg, "fp8") == 0) {
                kv_dtype = optarg[0] == 'b' ? MT_DTYPE_BF16 : MT_DTYPE_F8_E4M3;
            } else if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "fp32") == 0) {
                kv_dtype = MT_DTYPE_F32;
            } else {
                mt_cli_error(&cli, "unknown --kv-dtype '%s' (f32, bf16 or fp8)", optarg);
                return 2;
            }
            break;
        case OPT_INDEXER:
            planning_flag = "--indexer";
            if (strcmp(optarg, "exact") == 0 || strcmp(optarg, "fp8") == 0) {
                indexer = optarg[0] == 'e' ? MT_INDEXER_EXACT : MT_INDEXER_FP8;
            } else {
                mt_cli_error(&cli, "unknown --indexer '%s' (exact or fp8)", optarg);
                return 2;
            }
            break;
        case OPT_PREFILL:
            planning_flag = "--prefill-batch";
            if (!mt_cli_parse_int(&cli, "--prefill-batch", optarg, 1, 1 << 20,
                                  &budget.prefill_batch)) {
                return 2;
            }
            break;
        case OPT_CPU_EFF:
            planning_flag = "--cpu-eff";
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
    if (check_path != NULL && planning_flag != NULL) {
        return mt_cli_usage_error(&cli,
                                  "--check reads a plan and the model only: it takes no %s "
                                  "(make a plan with it, without --check)",
                                  planning_flag);
    }
    if (n_learn > 0 && hw_path == NULL) {
        return mt_cli_usage_error(&cli, "--learn needs --hw PROFILE (the profile it updates)");
    }
    /* no model named, or the built-in one's name: DeepSeek-V3.2 from the binary */
    bool builtin = config_path == NULL &&
                   (model_dir == NULL || (strcmp(model_dir, "deepseek-v3.2") == 0 &&
                                          access(model_dir, F_OK) != 0));
    bool named = builtin && model_dir != NULL;
    if (builtin) {
        model_dir = NULL;
        config_only = false;
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
    /* An output over one of the inputs would destroy it: refuse before reading anything. The
       model's own files (a shard, the index, the tokenizer) count too, not only config.json:
       -o over a shard would lose the weights. --learn rewrites the --hw profile in place. */
    if (mt_cli_output_is_input(&cli, "-o", out_path, "--hw", hw_path) ||
        mt_cli_output_is_input(&cli, "-o", out_path, config_path != NULL ? "--config" : "-m",
                               config_path != NULL ? config_path
                                                   : model_dir != NULL ? cfg_buf : NULL) ||
        mt_cli_output_is_input(&cli, "-o", out_path, "--check", check_path) ||
        mt_cli_output_is_input(&cli, "-o", out_path, "--disk-from", disk_path) ||
        mt_cli_output_is_input(&cli, "-o", out_path, "--dram-from", dram_path) ||
        mt_cli_output_is_model_file(&cli, "-o", out_path, model_dir) ||
        (n_learn > 0 && mt_cli_output_is_model_file(&cli, "--hw", hw_path, model_dir))) {
        return 2;
    }
    for (int i = 0; i < n_learn; i++) {
        if (mt_cli_output_is_input(&cli, "-o", out_path, "--learn", learn_paths[i])) {
            return 2;
        }
    }
    for (int i = 0; i < n_trace; i++) {
        if (mt_cli_output_is_input(&cli, "-o", out_path, "--trace", trace_paths[i])) {
            return 2;
        }
    }
    /* The outputs can be written: checked before the model is read and the plan computed and
       printed, not found unwritable after it (as `run` checks its outputs). --learn rewrites
       the --hw profile in place. */
    if ((out_path != NULL && !mt_cli_check_output(&cli, "-o", out_path)) ||
        (n_learn > 0 && !mt_cli_check_output(&cli, "--hw", hw_path))) {
        return 1;
    }
    if (config_only && config_path == NULL) {
        config_path = cfg_buf;
    }

    /* The model: built in, config.json alone, or the opened and checked checkpoint. */
    if (builtin) {
        mt_config_default_v32(&cfg);
        fprintf(stderr, "moetier plan: %s: the full DeepSeek-V3.2 (built-in config)\n",
                named ? "-m deepseek-v3.2" : "no -m given");
    } else if (config_only) {
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
    if (budget.ctx > cfg.max_position_embeddings) { /* no KV for positions it cannot have */
        if (ctx_given) {
            mt_log_warn("--ctx %d is more than the model's %d positions: planning for %d",
                        budget.ctx, cfg.max_position_embeddings, cfg.max_position_embeddings);
        }
        budget.ctx = cfg.max_position_embeddings;
    }
    if (budget.prefill_batch > budget.ctx) { /* a prompt step never holds more than the context */
        mt_log_warn("--prefill-batch %d is more than the context (%d tokens): predicting "
                    "prompt steps of %d",
                    budget.prefill_batch, budget.ctx, budget.ctx);
        budget.prefill_batch = budget.ctx;
    }
    /* an opened checkpoint: the bytes its tensors really hold, as `run --plan` checks them (the
     * estimate from torch_dtype differs where the stored dtype does not match it) */
    if ((model != NULL ? mt_model_sizes_of(model, &sizes)
                       : mt_model_sizes_compute(&cfg, cfg.fp8, &sizes)) != MT_OK) {
        goto out;
    }

    if (check_path != NULL) {
        if (mt_plan_load(check_path, &plan) != MT_OK ||
            mt_plan_check_model(plan, check_path, &cfg, sizes.routed_expert_bytes) != MT_OK) {
            goto out;
        }
        if (plan->decode_tok_s > 0) {
            printf("plan '%s' matches the model; it predicted %.2f tok/s decode on %s\n",
                   check_path, plan->decode_tok_s, plan->hw_source);
        } else {
            /* 0 is a hand-made plan's "not predicted" (plan_file.c), not a speed of 0 */
            printf("plan '%s' matches the model; it has no decode prediction "
                   "(prediction.decode_tok_s 0)\n",
                   check_path);
        }
        rc = 0;
        goto out;
    }

    hw = malloc(sizeof(*hw));
    if (hw == NULL) {
        mt_cli_error(&cli, "out of memory");
        goto out;
    }
    /* a quick bench measures disk reads on the checkpoint's disk (as run does), else where the
       profile cache lives */
    if (mt_cli_profile_get(hw_path, model != NULL ? mt_st_set_file_path(model->set, 0) : NULL,
                           hw) != MT_OK) {
        goto out;
    }
    /* several traces: their sum, the routing of all those runs */
    for (int i = 0; i < n_trace; i++) {
        struct mt_trace *one = NULL;
        mt_status_t ts = mt_trace_load(trace_paths[i], i == 0 ? &trace : &one);
        if (ts == MT_OK && one != NULL) {
            ts = mt_trace_merge(trace, one, trace_paths[i]);
        }
        mt_trace_destroy(one);
        if (ts != MT_OK) {
            goto out;
        }
    }
    if (n_learn > 0 && learn(learn_paths, n_learn, trace, hw, hw_path) != MT_OK) {
        goto out;
    }
    if ((disk_path != NULL && minute_from(disk_path, false, hw) != MT_OK) ||
        (dram_path != NULL && minute_from(dram_path, true, hw) != MT_OK)) {
        goto out;
    }
    if (n_learn > 0 && !have_gpu && !have_cpu && out_path == NULL) {
        rc = 0; /* only the profile was asked for: no budget, no -o */
        goto out;
    }
    if (hw->source[0] == '\0') {
        /* What the plan and the planner's messages call the profile. */
        snprintf(hw->source, sizeof(hw->source), "%.255s", hw->file);
    }
    mt_cli_default_budgets(hw, have_gpu, have_cpu, &budget);
    budget.gpu_mem_default = !have_gpu; /* the planner's messages name the profile, not a flag */
    if (hw->gpu.present) {
        /* the GPU engine's cache (by default BF16 latents and exact index keys: ~30% more than
           the reference layout, which a plan filling --gpu-mem would otherwise overrun) */
        sizes.kv_bytes_per_token = mt_cli_gpu_kv_bytes(&cfg, kv_dtype, true, indexer);
    }
    if (n_trace > 0) {
        snprintf(trace_name, sizeof(trace_name), "%.400s", trace_paths[0]);
        if (n_trace > 1) {
            snprintf(trace_name + strlen(trace_name), 64, " and %d more", n_trace - 1);
        }
    }
    if (mt_plan_build(&cfg, &sizes, hw, &budget, trace, n_trace > 0 ? trace_name : NULL,
                      &plan) != MT_OK) {
        goto out;
    }
    mt_cli_plan_print(stdout, plan);
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
