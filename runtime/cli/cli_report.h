/* SPDX-License-Identifier: MIT */
/*
 * cli_report.h - the run report: what a generation really did, beside what the plan predicted.
 *
 * The one idea: a run is two phases that the planner predicts apart (prefill at a batch, decode
 * one token at a time), so the report snapshots the engine's counters (mt_engine_stats) and the
 * streamed experts' counters (mt_io_source_stats) where prefill ends and again at the end: the
 * engine's are reset at each snapshot, the stream's subtracted (they also feed the whole-run
 * "streamed experts" line). The caller marks that point: the session's token callback runs first
 * right after the prompt's forward pass, so `run` calls mt_cli_report_prefill_done() there.
 * Each phase then gives tok/s; per tier (gpu, dram-cpu, dram-pcie, nvme) the experts computed,
 * bytes and milliseconds per token; busy fractions; cache and prefetch hit rates and the NVMe
 * read rate. With a plan, its prediction (struct mt_plan) stands beside the measured decode
 * numbers with measured / predicted ratios: `moetier plan --learn` reads the JSON form back.
 *
 * Per-tier time: the engine charges an executor's time to the first tier it serves (in the order
 * DRAM-CPU, DRAM-PCIe, NVMe, GPU), and one executor often serves several tiers (the CPU engine
 * computes all four on one CPU team). The report splits such an executor's time over the tiers
 * it served in proportion to their bytes: a tier with experts but no time of its own is taken to
 * share the executor of the nearest tier before it, in that order, that has time. The GPU
 * engine's GPU tier has its own time (device events), and its DRAM-PCIe experts share that time:
 * the device computes them in GPU slots (cli_report.c, tier_seconds).
 *
 * JSON ("format": "moetier-report", "version": 1), written whole or not at all (out_file):
 *   { "format": "moetier-report", "version": 1, "model": DIR, "device": "cpu"|"gpu",
 *     "plan": PATH|null, "expert_bytes": N, "moe_layers": n, "k": n,
 *     "always_on_bytes_per_token": N,
 *     "prefill": PHASE, "decode": PHASE,
 *     "predicted": null | { "decode_tok_s": x, "prefill_tok_s": x|null, "prefill_batch": n,
 *                           "prompt_tok_s": x|null,   (this run's prompt, below)
 *                           "bottleneck": "...", "hardware": { "source": "...",
 *                           "hbm_gbps": x, "dram_gbps": x, "cpu_eff": x, "pcie_gbps": x,
 *                           "disk_gbps": x, "gpu_eff": x, "disk_eff": x, "host_layer_ms": x,
 *                           "cpu_prefill_gbps": x, "cpu_prefill_gflops": x,
 *                           "cpu_prefill_eff": x, "gpu_tflops": x,
 *                           "gpu_prefill_eff": x (0: a plan from before it) },
 *                           "expert_flops": x,     (one token through one routed expert)
 *                           "tiers": { "gpu": {"experts": n, "experts_per_token": x,
 *                                      "bytes_per_token": x, "ms_per_token": x}, ... } },
 *     "ratio": null | { "decode_tok_s": x|null, "prefill_tok_s": x|null,
 *                       "tiers": { "gpu": {"ms_per_token": x|null}, ... } } }
 *   PHASE = { "tokens": n, "seconds": x, "tok_s": x, "forwards": n, "engine_tokens": n,
 *             "forward_s": x, "prompt_flops": x,
 *             "moe_s": x, "moe_wait_s": x, "moe_host_s": x, "slot_copies": n, "graph_steps": n, "graph_gpu_s": x,
 *             "cpu_busy": x, "gpu_busy": x|null,
 *             "tiers": { "gpu": {"runs": n, "pairs": n, "bytes": N, "seconds": x,
 *                                "experts_per_token": x, "bytes_per_token": x,
 *                                "ms_per_token": x}, "dram-cpu": ..., "dram-pcie": ...,
 *                        "nvme": ... },
 *             "prefetch": { "guessed": n, "hits": n, "hit_rate": x|null },
 *             "stream": null | { "hits": n, "late_hits": n, "misses": n, "hit_rate": x|null,
 *                                "prefetches": n, "bytes_read": N, "read_s": x,
 *                                "read_gbps": x, "stall_s": x, "read_errors": n,
 *                                "verify_failures": n, "retries": n } }
 * "graph_steps" are forwards replayed as CUDA graphs (GPU engine), "graph_gpu_s" their GPU time.
 * "prompt_flops" are the phase's FLOPs outside routed experts as the planner counts them
 * (planner.h mt_plan_gpu_prompt_flops). The plan's "prefill_tok_s" is one prompt chunk from
 * position 0; "prompt_tok_s" is its prediction for this run's prompt as the engine ran it (its
 * chunks, their MoE steps at their sizes, their rows' attention at their positions, uniform
 * routing: planner.h mt_plan_predict_prompt), and the prefill ratio is measured over it.
 * "runs" are (layer step, expert) computations, "pairs" (token, expert) pairs: the pairs of all
 * tiers sum to k x MoE layers x engine_tokens (the tokens the engine ran in the phase), and
 * bytes = runs x expert_bytes. A ratio is measured over predicted: a tier's is null unless both
 * its measured and its predicted ms per token are above 0 (a tier the plan gives no time, or one
 * that ran nothing in the phase, has no ratio to compare).
 */
#ifndef MT_CLI_REPORT_H
#define MT_CLI_REPORT_H

#include "io/expert_source.h"
#include "runtime/base/status.h"
#include "runtime/cli/cli_common.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/session.h"

#include <stdbool.h>
#include <stdio.h>

/* What one phase did. */
struct mt_cli_report_phase {
    long tokens;    /* prompt tokens run (prefill) or tokens decoded */
    double seconds; /* the session's wall time of the phase */
    struct mt_engine_stats eng;
    bool have_io; /* experts were streamed: io holds their counters */
    struct mt_io_source_stats io;
};

struct mt_cli_report {
    struct mt_cli_engine *e; /* borrowed */
    const char *plan_path;   /* borrowed, NULL without a plan */
    bool gpu;                /* the GPU engine (--device gpu) */
    bool split;              /* prefill_done was called */
    struct mt_cli_report_phase prefill;
    struct mt_cli_report_phase decode;
    struct mt_io_source_stats io_base; /* the stream's counters where the phase began */
};

/* Start a report over e (borrowed): zero the engine's counters, note the stream's. */
void mt_cli_report_begin(struct mt_cli_report *r, struct mt_cli_engine *e, const char *plan_path,
                         bool gpu);

/* Prefill has ended (the first token callback): snapshot its counters. */
void mt_cli_report_prefill_done(struct mt_cli_report *r);

/* The generation has ended with res: snapshot what is left (all of it prefill if never split). */
void mt_cli_report_end(struct mt_cli_report *r, const struct mt_gen_result *res);

/* The report as text, a few lines beginning "mt: ". */
void mt_cli_report_print(const struct mt_cli_report *r, FILE *f);

/* One line for `chat --verbose`: decode tok/s, per-tier ms per token, hit rates, busy. */
void mt_cli_report_print_line(const struct mt_cli_report *r, FILE *f);

/*
 * Write the report as JSON (format above) to path, atomically; "-" writes it to stdout.
 * MT_ERR_IO naming the path, MT_ERR_NOMEM.
 */
mt_status_t mt_cli_report_save_json(const struct mt_cli_report *r, const char *path);

#endif /* MT_CLI_REPORT_H */
