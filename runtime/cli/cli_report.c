/* SPDX-License-Identifier: MIT */
/*
 * cli_report.c - the run report (cli_report.h): gather the counters of prefill and decode, print
 * them beside the plan's prediction, write them as JSON.
 */
#include <config.h>

#include "runtime/cli/cli_report.h"

#include "runtime/base/file_util.h"
#include "runtime/base/json_text.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#ifdef MT_HAVE_CUDA
#include "kernels/launch_times.h"
#endif

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- gathering ------------------------------------------------------------------------------ */

static struct mt_io_source *
stream_source(const struct mt_cli_report *r)
{
    return r->e->stream != NULL ? mt_expert_provider_stream_source(r->e->stream) : NULL;
}

/*
 * The streamed experts' counters since base (the source's counters are not reset: the
 * whole-run line of mt_cli_engine_report_stream reads them too).
 */
static void
io_delta(const struct mt_io_source_stats *now, const struct mt_io_source_stats *base,
         struct mt_io_source_stats *out)
{
    *out = *now;
    out->hits -= base->hits;
    out->late_hits -= base->late_hits;
    out->misses -= base->misses;
    out->prefetches -= base->prefetches;
    out->prefetch_dropped -= base->prefetch_dropped;
    out->evictions -= base->evictions;
    out->experts_read -= base->experts_read;
    out->bytes_read -= base->bytes_read;
    out->read_errors -= base->read_errors;
    out->verify_failures -= base->verify_failures;
    out->retries -= base->retries;
    out->stall_s -= base->stall_s;
    out->io_busy_s -= base->io_busy_s;
    out->gbps = out->io_busy_s > 0 ? (double)out->bytes_read / out->io_busy_s / 1e9 : 0;
}

/* The phase's counters: the engine's since their last reset, the stream's since io_base. */
static void
snapshot(struct mt_cli_report *r, struct mt_cli_report_phase *ph)
{
    struct mt_io_source *src = stream_source(r);

    mt_engine_stats_get(r->e->engine, &ph->eng);
    mt_engine_stats_reset(r->e->engine);
    ph->have_io = src != NULL;
    if (src != NULL) {
        struct mt_io_source_stats now;

        mt_io_source_stats(src, &now);
        io_delta(&now, &r->io_base, &ph->io);
        r->io_base = now;
    }
}

void
mt_cli_report_begin(struct mt_cli_report *r, struct mt_cli_engine *e, const char *plan_path,
                    bool gpu)
{
    struct mt_io_source *src;

    memset(r, 0, sizeof(*r));
    r->e = e;
    r->gpu = gpu;
    r->plan_path = e->plan != NULL ? plan_path : NULL;
    mt_engine_stats_reset(e->engine);
    if ((src = stream_source(r)) != NULL) {
        mt_io_source_stats(src, &r->io_base);
    }
}

void
mt_cli_report_prefill_done(struct mt_cli_report *r)
{
    if (r->split) {
        return;
    }
    snapshot(r, &r->prefill);
    r->split = true;
#ifdef MT_HAVE_CUDA
    if (mt_gpu_launch_times_on()) { /* the end table covers the decode phase only */
        const char *ev = getenv("MT_GPU_KERNEL_TIMES");

        if (mt_gpu_launch_times_flush() != MT_OK) {
            mt_log_warn("kernel times: %s", mt_last_error());
        }
        if (ev != NULL && strcmp(ev, "prefill") == 0) { /* and the prompt's, here */
            fprintf(stderr, "mt: report: GPU time by kernel, prefill phase:\n");
            mt_gpu_launch_times_print(stderr);
        }
        mt_gpu_launch_times_reset();
    }
#endif
}

void
mt_cli_report_end(struct mt_cli_report *r, const struct mt_gen_result *res)
{
    r->prefill.tokens = (long)(res->n_prompt - res->n_reused);
    r->prefill.seconds = res->prefill_s;
    r->decode.tokens = res->n_decoded;
    r->decode.seconds = res->decode_s;
    snapshot(r, r->split ? &r->decode : &r->prefill);
}

/* ---- derived numbers ------------------------------------------------------------------------ */

static double
ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

/*
 * Seconds of the tiers in order[0..n): an executor's time is charged to the first tier of the
 * chain it serves (engine/moe.c), so a tier with work but no time shares the nearest earlier
 * tier's time, split by the bytes each read (cli_report.h).
 */
static void
split_chain(const struct mt_engine_stats *s, const enum mt_tier *order, int n,
            double out[MT_TIER_COUNT])
{
    int i = 0;

    while (i < n) {
        int end = i + 1;
        double secs = s->tier_s[order[i]];
        double bytes = (double)s->expert_bytes[order[i]];

        while (end < n && s->tier_s[order[end]] <= 0) {
            bytes += (double)s->expert_bytes[order[end]];
            end++;
        }
        for (int k = i; k < end; k++) {
            if (bytes > 0) {
                out[order[k]] = secs * (double)s->expert_bytes[order[k]] / bytes;
            } else if (k == i) {
                out[order[k]] = secs;
            }
        }
        i = end;
    }
}

/*
 * Seconds of each tier's experts. The CPU engine charges an executor's time to the first tier
 * it serves in the order DRAM-CPU, DRAM-PCIe, NVMe, GPU, and one CPU team often serves all four.
 * The GPU engine computes DRAM-PCIe experts on the device, after their copy into a GPU slot:
 * their time is inside the GPU tier's device events (which span the slot copies), never the CPU
 * team's. Chaining them to DRAM-CPU, as the CPU engine's order does, gave the CPU's time to the
 * slot experts by their bytes: on the H200 a DRAM plan's CPU experts "read" 118.9 GB/s where the
 * team really read 65, `plan --learn` took that for the CPU's speed, and the next plan predicted
 * twice the CPU it had (hetero-h200.md, session 4). So on the GPU engine the host chain is
 * DRAM-CPU, NVMe and the device chain GPU, DRAM-PCIe (split by bytes: the slot copies, at PCIe
 * rate, dominate that interval whenever there are slot experts).
 */
static void
tier_seconds(const struct mt_cli_report *r, const struct mt_engine_stats *s,
             double out[MT_TIER_COUNT])
{
    static const enum mt_tier cpu_order[MT_TIER_COUNT] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE,
                                                          MT_TIER_NVME, MT_TIER_GPU};
    static const enum mt_tier host[2] = {MT_TIER_DRAM_CPU, MT_TIER_NVME};
    static const enum mt_tier device[2] = {MT_TIER_GPU, MT_TIER_DRAM_PCIE};
    /* an engine without slots (experts whose dtype or shape the device GEMV refuses) computes
       its DRAM-PCIe experts on the CPU team: they share the host chain then */
    static const enum mt_tier host_all[3] = {MT_TIER_DRAM_CPU, MT_TIER_DRAM_PCIE, MT_TIER_NVME};
    static const enum mt_tier gpu_only[1] = {MT_TIER_GPU};

    memset(out, 0, MT_TIER_COUNT * sizeof(out[0]));
    if (!r->gpu) {
        split_chain(s, cpu_order, MT_TIER_COUNT, out);
        return;
    }
    if (s->slot_copies == 0) {
        split_chain(s, host_all, 3, out);
        split_chain(s, gpu_only, 1, out);
        return;
    }
    split_chain(s, host, 2, out);
    split_chain(s, device, 2, out);
}

/* Fraction of the forward time the CPU experts / the GPU worked (gpu < 0: no GPU). */
static void
busy(const struct mt_cli_report *r, const struct mt_engine_stats *s, double *cpu, double *gpu)
{
    double on_cpu = 0;

    /* on the GPU engine the GPU tier has the GPU's executor; every other executor is the CPU's */
    for (int t = r->gpu ? MT_TIER_DRAM_CPU : MT_TIER_GPU; t < MT_TIER_COUNT; t++) {
        on_cpu += s->tier_s[t];
    }
    *gpu = r->gpu ? ratio(s->tier_s[MT_TIER_GPU], s->forward_s) : -1;
    *cpu = ratio(on_cpu, s->forward_s);
}

/* Per tier, what a phase did per token. */
struct tier_num {
    uint64_t runs, pairs, bytes;
    double seconds;
    double experts_per_token; /* (token, expert) pairs per token */
    double bytes_per_token;
    double ms_per_token;
};

struct phase_num {
    double tok_s;
    double cpu_busy, gpu_busy; /* gpu_busy < 0: no GPU */
    struct tier_num tier[MT_TIER_COUNT];
    double prefetch_hit; /* < 0: no guesses */
    double cache_hit;    /* streamed experts found ready or loading; < 0: none */
    uint64_t acquires;
};

static void
phase_numbers(const struct mt_cli_report *r, const struct mt_cli_report_phase *ph,
              struct phase_num *n)
{
    const struct mt_engine_stats *s = &ph->eng;
    double per = s->tokens > 0 ? 1.0 / (double)s->tokens : 0.0;
    double sec[MT_TIER_COUNT];

    memset(n, 0, sizeof(*n));
    n->tok_s = mt_cli_tok_per_s((double)ph->tokens, ph->seconds);
    busy(r, s, &n->cpu_busy, &n->gpu_busy);
    tier_seconds(r, s, sec);
    for (int t = 0; t < MT_TIER_COUNT; t++) {
        struct tier_num *tn = &n->tier[t];

        tn->runs = s->expert_runs[t];
        tn->pairs = s->expert_pairs[t];
        tn->bytes = s->expert_bytes[t];
        tn->seconds = sec[t];
        tn->experts_per_token = (double)tn->pairs * per;
        tn->bytes_per_token = (double)tn->bytes * per;
        tn->ms_per_token = sec[t] * 1e3 * per;
    }
    n->prefetch_hit =
        s->prefetch_guessed > 0 ? ratio((double)s->prefetch_hits, (double)s->prefetch_guessed) : -1;
    n->cache_hit = -1;
    if (ph->have_io) {
        n->acquires = ph->io.hits + ph->io.late_hits + ph->io.misses;
        if (n->acquires > 0) {
            n->cache_hit = (double)(ph->io.hits + ph->io.late_hits) / (double)n->acquires;
        }
    }
}

/* The phase the plan's tier prediction is compared with: decode when there was one. */
static const struct mt_cli_report_phase *
main_phase(const struct mt_cli_report *r)
{
    return r->decode.tokens > 0 ? &r->decode : &r->prefill;
}

/*
 * The plan's prediction for this run's prompt as the engine ran it, tok/s (0: none): its tokens
 * from position 0 in the GPU engine's prompt chunks (the CPU engine takes a prompt in one step),
 * each chunk's MoE step at its own size and its rows' attention at their positions
 * (mt_plan_predict_prompt). The plan's own prefill_tok_s is one chunk from position 0: a
 * 1,024-token prompt on a plan predicted at 2,048-token chunks ran at 0.40-0.46 of it, and at
 * 0.66-0.76 of its own prediction (hetero-h200.md, session 38).
 */
static double
prompt_tok_s(const struct mt_cli_report *r, const struct mt_plan *p)
{
    struct mt_model_sizes sz;
    int chunk = 0;
    double s = 0.0;

    if (p == NULL || r->prefill.tokens <= 0 || mt_model_sizes_of(r->e->model, &sz) != MT_OK) {
        return 0.0;
    }
    (void)mt_engine_device_work_bytes(r->e->engine, &chunk);
    if (chunk <= 0) {
        chunk = (int)MT_MIN(r->prefill.tokens, (long)INT_MAX);
    }
    /* a plan made for a GPU, run on the CPU engine, has tiers this cost model refuses: then the
     * plan file's own prefill rate stands, with no message inside the report's line */
    mt_log_set_quiet(true);
    mt_status_t st = mt_plan_predict_prompt(p, &r->e->model->cfg, &sz, r->prefill.tokens, chunk,
                                            &s);
    mt_log_set_quiet(false);
    if (st != MT_OK || !(s > 0)) {
        return 0.0;
    }
    return (double)r->prefill.tokens / s;
}

/* ---- text ----------------------------------------------------------------------------------- */

static void
print_ratio(FILE *f, double measured, double predicted)
{
    if (predicted > 0) {
        fprintf(f, " (plan %.2f, ratio %.2f)", predicted, measured / predicted);
    }
}

void
mt_cli_report_print(const struct mt_cli_report *r, FILE *f)
{
    const struct mt_plan *p = r->plan_path != NULL ? r->e->plan : NULL;
    const struct mt_cli_report_phase *mph = main_phase(r);
    struct phase_num pre;
    struct phase_num dec;
    struct phase_num *m;

    phase_numbers(r, &r->prefill, &pre);
    phase_numbers(r, &r->decode, &dec);
    m = mph == &r->decode ? &dec : &pre;
    fprintf(f, "mt: report: prefill %ld tokens, %.2f tok/s", r->prefill.tokens, pre.tok_s);
    if (p != NULL) {
        double pt = prompt_tok_s(r, p);

        print_ratio(f, pre.tok_s, pt > 0 ? pt : p->prefill_tok_s);
    }
    fprintf(f, "; decode %ld tokens, %.2f tok/s", r->decode.tokens, dec.tok_s);
    if (p != NULL && r->decode.tokens > 0) { /* nothing decoded: no ratio (the JSON's null) */
        print_ratio(f, dec.tok_s, p->decode_tok_s);
    }
    fprintf(f, "\n");
    fprintf(f, "mt: report: %-10s %12s %10s %9s", mph == &r->decode ? "decode" : "prefill",
            "experts/tok", "MB/tok", "ms/tok");
    if (p != NULL) {
        fprintf(f, "   plan: %11s %8s %8s %6s", "experts/tok", "MB/tok", "ms/tok", "ratio");
    }
    fprintf(f, "\n");
    for (int t = 0; t < MT_TIER_COUNT; t++) {
        const struct tier_num *tn = &m->tier[t];

        fprintf(f, "mt: report: %-10s %12.2f %10.2f %9.3f", mt_tier_name((enum mt_tier)t),
                tn->experts_per_token, tn->bytes_per_token / 1e6, tn->ms_per_token);
        if (p != NULL) {
            const struct mt_plan_tier_stats *ps = &p->tier[t];
            double pe = p->expert_bytes > 0 ? ps->bytes_per_token / (double)p->expert_bytes : 0;

            fprintf(f, "         %11.2f %8.2f %8.3f", pe, ps->bytes_per_token / 1e6,
                    ps->ms_per_token);
            if (ps->ms_per_token > 0 && tn->ms_per_token > 0) {
                fprintf(f, " %6.2f", tn->ms_per_token / ps->ms_per_token);
            } else {
                fprintf(f, " %6s", "-");
            }
        }
        fprintf(f, "\n");
    }
    fprintf(f, "mt: report: busy (of forward time): CPU experts %.2f, GPU ", m->cpu_busy);
    if (m->gpu_busy >= 0) {
        fprintf(f, "%.2f", m->gpu_busy);
    } else {
        fprintf(f, "-");
    }
    fprintf(f, "; MoE wait %.4f s, copies and sums %.4f s, of %.4f s forward",
            mph->eng.moe_wait_s, mph->eng.moe_host_s, mph->eng.forward_s);
    if (m->prefetch_hit >= 0) {
        fprintf(f, "; prefetch guesses %.2f right", m->prefetch_hit);
    }
    if (p != NULL) {
        fprintf(f, "; plan bottleneck %s", p->bottleneck);
    }
    fprintf(f, "\n");
    if (mph->eng.graph_steps > 0) {
        /* the rest of a recorded step's forward time is the host's: the launch, the embeddings
         * in and the logits out */
        double n = (double)mph->eng.graph_steps;

        fprintf(f, "mt: report: %llu of %llu forwards as CUDA graphs, GPU %.3f ms a step (events)",
                (unsigned long long)mph->eng.graph_steps, (unsigned long long)mph->eng.forwards,
                1e3 * mph->eng.graph_gpu_s / n);
        if (mph->eng.graph_steps == mph->eng.forwards) {
            fprintf(f, ", forward %.3f ms a step", 1e3 * mph->eng.forward_s / n);
        }
        fprintf(f, "\n");
    }
    if (mph->have_io) {
        const struct mt_io_source_stats *io = &mph->io;

        fprintf(f, "mt: report: streamed experts: cache hits ");
        if (m->cache_hit >= 0) {
            fprintf(f, "%.2f", m->cache_hit);
        } else {
            fprintf(f, "-");
        }
        fprintf(f,
                " of %llu acquires, NVMe read %.2f GB/s (%.1f MB), stall %.3f s, retries "
                "%llu\n",
                (unsigned long long)m->acquires, io->gbps, (double)io->bytes_read / 1e6,
                io->stall_s, (unsigned long long)io->retries);
    }
#ifdef MT_HAVE_CUDA
    if (mt_gpu_launch_times_on()) {
        fprintf(f, "mt: report: GPU time by kernel, %s phase:\n", r->split ? "decode" : "whole");
        mt_gpu_launch_times_print(f);
    }
#endif
}

void
mt_cli_report_print_line(const struct mt_cli_report *r, FILE *f)
{
    const struct mt_cli_report_phase *mph = main_phase(r);
    struct phase_num n;

    phase_numbers(r, mph, &n);
    fprintf(f, "mt: %s %.2f tok/s; ms/token", mph == &r->decode ? "decode" : "prefill", n.tok_s);
    for (int t = 0; t < MT_TIER_COUNT; t++) {
        fprintf(f, " %s %.2f", mt_tier_name((enum mt_tier)t), n.tier[t].ms_per_token);
    }
    fprintf(f, "; CPU busy %.2f", n.cpu_busy);
    if (n.gpu_busy >= 0) {
        fprintf(f, ", GPU busy %.2f", n.gpu_busy);
    }
    if (n.cache_hit >= 0) {
        fprintf(f, "; cache hits %.2f, NVMe %.2f GB/s", n.cache_hit, mph->io.gbps);
    }
    if (n.prefetch_hit >= 0) {
        fprintf(f, "; prefetch %.2f", n.prefetch_hit);
    }
    fprintf(f, "\n");
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* x, or null when it is negative (not applicable). */
static json_t *
real_or_null(double x)
{
    return x >= 0 ? json_real(x) : json_null();
}

/*
 * o[key] = v, taking v's reference whatever happens, so that a failed allocation anywhere (a NULL
 * o or v) only turns the result false and the caller frees the one root.
 */
static bool
set(json_t *o, const char *key, json_t *v)
{
    if (v == NULL) {
        return false;
    }
    if (o == NULL) {
        json_decref(v);
        return false;
    }
    return json_object_set_new(o, key, v) == 0;
}

/*
 * The phase's FLOPs outside routed experts as the planner counts the GPU engine's (planner.h
 * mt_plan_gpu_prompt_flops: its products, attention and indexer over the keys its rows saw,
 * lm_head once a forward); `moetier plan --learn` divides them by the time they took. 0 where
 * the sizes cannot be had (they can for every model that loaded).
 */
static double
prompt_flops(const struct mt_cli_report *r, const struct mt_cli_report_phase *ph)
{
    struct mt_model_sizes sz;

    if (mt_model_sizes_of(r->e->model, &sz) != MT_OK) {
        return 0.0;
    }
    return mt_plan_gpu_prompt_flops(&r->e->model->cfg, &sz, (double)ph->eng.tokens,
                                    ph->eng.attn_keys, ph->eng.index_keys,
                                    (double)ph->eng.forwards);
}

static json_t *
phase_json(const struct mt_cli_report *r, const struct mt_cli_report_phase *ph)
{
    struct phase_num n;
    json_t *o = json_object();
    json_t *tiers = json_object();
    json_t *pf = json_object();
    bool ok;

    phase_numbers(r, ph, &n);
    ok = set(o, "tokens", json_integer(ph->tokens));
    ok = set(o, "seconds", json_real(ph->seconds)) && ok;
    ok = set(o, "tok_s", json_real(n.tok_s)) && ok;
    ok = set(o, "forwards", json_integer((json_int_t)ph->eng.forwards)) && ok;
    ok = set(o, "engine_tokens", json_integer((json_int_t)ph->eng.tokens)) && ok;
    ok = set(o, "forward_s", json_real(ph->eng.forward_s)) && ok;
    ok = set(o, "prompt_flops", json_real(prompt_flops(r, ph))) && ok;
    ok = set(o, "moe_s", json_real(ph->eng.moe_s)) && ok;
    ok = set(o, "moe_wait_s", json_real(ph->eng.moe_wait_s)) && ok;
    ok = set(o, "moe_host_s", json_real(ph->eng.moe_host_s)) && ok;
    ok = set(o, "slot_copies", json_integer((json_int_t)ph->eng.slot_copies)) && ok;
    ok = set(o, "graph_steps", json_integer((json_int_t)ph->eng.graph_steps)) && ok;
    ok = set(o, "graph_gpu_s", json_real(ph->eng.graph_gpu_s)) && ok;
    ok = set(o, "cpu_busy", json_real(n.cpu_busy)) && ok;
    ok = set(o, "gpu_busy", real_or_null(n.gpu_busy)) && ok;
    ok = set(o, "tiers", tiers) && ok;
    for (int t = 0; ok && t < MT_TIER_COUNT; t++) {
        const struct tier_num *tn = &n.tier[t];
        json_t *to = json_object();

        ok = set(tiers, mt_tier_name((enum mt_tier)t), to);
        ok = set(to, "runs", json_integer((json_int_t)tn->runs)) && ok;
        ok = set(to, "pairs", json_integer((json_int_t)tn->pairs)) && ok;
        ok = set(to, "bytes", json_integer((json_int_t)tn->bytes)) && ok;
        ok = set(to, "seconds", json_real(tn->seconds)) && ok;
        ok = set(to, "experts_per_token", json_real(tn->experts_per_token)) && ok;
        ok = set(to, "bytes_per_token", json_real(tn->bytes_per_token)) && ok;
        ok = set(to, "ms_per_token", json_real(tn->ms_per_token)) && ok;
    }
    ok = set(o, "prefetch", pf) && ok;
    ok = set(pf, "guessed", json_integer((json_int_t)ph->eng.prefetch_guessed)) && ok;
    ok = set(pf, "hits", json_integer((json_int_t)ph->eng.prefetch_hits)) && ok;
    ok = set(pf, "hit_rate", real_or_null(n.prefetch_hit)) && ok;
    if (ph->have_io) {
        const struct mt_io_source_stats *io = &ph->io;
        json_t *so = json_object();

        ok = set(o, "stream", so) && ok;
        ok = set(so, "hits", json_integer((json_int_t)io->hits)) && ok;
        ok = set(so, "late_hits", json_integer((json_int_t)io->late_hits)) && ok;
        ok = set(so, "misses", json_integer((json_int_t)io->misses)) && ok;
        ok = set(so, "hit_rate", real_or_null(n.cache_hit)) && ok;
        ok = set(so, "prefetches", json_integer((json_int_t)io->prefetches)) && ok;
        ok = set(so, "bytes_read", json_integer((json_int_t)io->bytes_read)) && ok;
        ok = set(so, "read_s", json_real(io->io_busy_s)) && ok;
        ok = set(so, "read_gbps", json_real(io->gbps)) && ok;
        ok = set(so, "stall_s", json_real(io->stall_s)) && ok;
        ok = set(so, "read_errors", json_integer((json_int_t)io->read_errors)) && ok;
        ok = set(so, "verify_failures", json_integer((json_int_t)io->verify_failures)) && ok;
        ok = set(so, "retries", json_integer((json_int_t)io->retries)) && ok;
    } else {
        ok = set(o, "stream", json_null()) && ok;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
predicted_json(const struct mt_cli_report *r, const struct mt_plan *p)
{
    double pt = prompt_tok_s(r, p);
    json_t *o = json_object();
    json_t *hw = json_object();
    json_t *tiers = json_object();
    bool ok;

    ok = set(o, "decode_tok_s", json_real(p->decode_tok_s));
    ok = set(o, "prefill_tok_s",
             p->prefill_not_modelled[0] == '\0' ? json_real(p->prefill_tok_s) : json_null()) &&
         ok;
    ok = set(o, "prefill_batch", json_integer(p->budget.prefill_batch)) && ok;
    ok = set(o, "prompt_tok_s", pt > 0 ? json_real(pt) : json_null()) && ok;
    ok = set(o, "bottleneck", json_string(p->bottleneck)) && ok;
    ok = set(o, "hardware", hw) && ok;
    ok = set(hw, "source", mt_json_text(p->hw_source)) && ok;
    ok = set(hw, "hbm_gbps", json_real(p->hbm_gbps)) && ok;
    ok = set(hw, "dram_gbps", json_real(p->dram_gbps)) && ok;
    ok = set(hw, "cpu_eff", json_real(p->budget.cpu_eff)) && ok;
    ok = set(hw, "pcie_gbps", json_real(p->pcie_gbps)) && ok;
    ok = set(hw, "disk_gbps", json_real(p->disk_gbps)) && ok;
    ok = set(hw, "gpu_eff", json_real(p->gpu_eff > 0 ? p->gpu_eff : 1.0)) && ok;
    ok = set(hw, "disk_eff", json_real(p->disk_eff > 0 ? p->disk_eff : 1.0)) && ok;
    ok = set(hw, "host_layer_ms", json_real(p->host_layer_ms)) && ok;
    ok = set(hw, "cpu_prefill_gbps", json_real(p->cpu_prefill_gbps)) && ok;
    ok = set(hw, "cpu_prefill_gflops", json_real(p->cpu_prefill_gflops)) && ok;
    ok = set(hw, "cpu_prefill_eff", json_real(p->cpu_prefill_eff > 0 ? p->cpu_prefill_eff : 1.0)) &&
         ok;
    ok = set(hw, "gpu_tflops", json_real(p->gpu_tflops)) && ok;
    ok = set(hw, "gpu_prefill_eff", json_real(p->gpu_prefill_eff)) && ok;
    /* FLOPs of one token through one routed expert (gate, up, down) */
    ok = set(o, "expert_flops",
             json_real(6.0 * p->hidden_size * (double)p->moe_intermediate_size)) && ok;
    ok = set(o, "host_layers_per_token", json_real(p->host_layers_per_token)) && ok;
    ok = set(o, "tiers", tiers) && ok;
    for (int t = 0; ok && t < MT_TIER_COUNT; t++) {
        const struct mt_plan_tier_stats *ps = &p->tier[t];
        json_t *to = json_object();

        ok = set(tiers, mt_tier_name((enum mt_tier)t), to);
        ok = set(to, "experts", json_integer(ps->experts)) && ok;
        ok = set(to, "experts_per_token",
                 json_real(ratio(ps->bytes_per_token, (double)p->expert_bytes))) &&
             ok;
        ok = set(to, "bytes_per_token", json_real(ps->bytes_per_token)) && ok;
        ok = set(to, "ms_per_token", json_real(ps->ms_per_token)) && ok;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
ratio_json(const struct mt_cli_report *r, const struct mt_plan *p)
{
    struct phase_num pre;
    struct phase_num m;
    json_t *o = json_object();
    json_t *tiers = json_object();
    bool ok;

    phase_numbers(r, &r->prefill, &pre);
    phase_numbers(r, main_phase(r), &m);
    ok =
        set(o, "decode_tok_s",
            r->decode.tokens > 0 && p->decode_tok_s > 0 ? json_real(ratio(m.tok_s, p->decode_tok_s))
                                                        : json_null());
    double pt = prompt_tok_s(r, p);
    ok = set(o, "prefill_tok_s",
             pt > 0 ? json_real(ratio(pre.tok_s, pt)) : json_null()) && ok;
    ok = set(o, "tiers", tiers) && ok;
    for (int t = 0; ok && t < MT_TIER_COUNT; t++) {
        double pm = p->tier[t].ms_per_token;
        double mm = m.tier[t].ms_per_token;
        json_t *to = json_object();

        ok = set(tiers, mt_tier_name((enum mt_tier)t), to);
        ok = set(to, "ms_per_token", pm > 0 && mm > 0 ? json_real(mm / pm) : json_null()) && ok;
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
report_json(const struct mt_cli_report *r)
{
    const struct mt_plan *p = r->plan_path != NULL ? r->e->plan : NULL;
    const struct mt_model_config *cfg = &r->e->model->cfg;
    struct mt_model_sizes sz;
    json_t *o = json_object();
    int n_moe = 0;
    bool ok;

    if (mt_model_sizes_of(r->e->model, &sz) != MT_OK) {
        memset(&sz, 0, sizeof(sz));
    }
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        n_moe += cfg->layer_is_moe[l] ? 1 : 0;
    }
    ok = set(o, "format", json_string("moetier-report"));
    ok = set(o, "version", json_integer(1)) && ok;
    ok = set(o, "model", mt_json_text(r->e->model->dir)) && ok;
    ok = set(o, "device", json_string(r->gpu ? "gpu" : "cpu")) && ok;
    ok = set(o, "plan", p != NULL ? mt_json_text(r->plan_path) : json_null()) && ok;
    ok = set(o, "expert_bytes", json_integer((json_int_t)sz.routed_expert_bytes)) && ok;
    ok = set(o, "moe_layers", json_integer(n_moe)) && ok;
    ok = set(o, "k", json_integer(cfg->num_experts_per_tok)) && ok;
    ok = set(o, "always_on_bytes_per_token", json_integer((json_int_t)sz.token_bytes_always)) && ok;
    ok = set(o, "prefill", phase_json(r, &r->prefill)) && ok;
    ok = set(o, "decode", phase_json(r, &r->decode)) && ok;
    ok = set(o, "predicted", p != NULL ? predicted_json(r, p) : json_null()) && ok;
    ok = set(o, "ratio", p != NULL ? ratio_json(r, p) : json_null()) && ok;
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

mt_status_t
mt_cli_report_save_json(const struct mt_cli_report *r, const char *path)
{
    size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8);
    json_t *root = report_json(r);
    mt_status_t st = MT_OK;

    if (root == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot build the run report for '%s'", path);
    }
    if (strcmp(path, "-") == 0) {
        if (json_dumpf(root, stdout, flags) != 0 || fputc('\n', stdout) == EOF ||
            fflush(stdout) != 0) {
            st = mt_fail(MT_ERR_IO, errno, "cannot write the run report to stdout");
        }
    } else {
        st = mt_json_save_file(root, path, "run report", flags);
    }
    json_decref(root);
    return st;
}
