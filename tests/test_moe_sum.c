/* SPDX-License-Identifier: MIT */
/*
 * test_moe_sum.c - the MoE layer's host-side bookkeeping (runtime/engine/moe.c): the copies of
 * the tokens into their experts' groups and the weighted sum of the experts' outputs, on the
 * engine thread and on a host team.
 *
 * The sum must add each token's outputs in ascending expert id (moe.c's file comment: every
 * placement of the experts then gives the same bits), whichever thread adds which tokens. The
 * want here is that loop written out plainly, one expert after another; the outputs span many
 * binades, so an order that differs shows in the bits.
 */
#include <config.h>

#include "cpu/team.h"
#include "runtime/base/rng.h"
#include "runtime/engine/engine_impl.h"
#include "tests/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { E = 64, K = 8, D = 1024, N = 72 }; /* 576 pairs: 2.25 MiB of copies */

/* The sum as the engine computed it before it used a team: experts by ascending id, each
 * expert's rows (tokens ascending) added into out. */
static void
want_sum(const struct eng_work *w, const uint8_t *on_gpu, float *out)
{
    for (int x = 0; x < E; x++) {
        if (on_gpu[x]) {
            continue;
        }
        for (int row = w->group_start[x]; row < w->group_start[x + 1]; row++) {
            for (int d = 0; d < D; d++) {
                out[(size_t)w->row_tok[row] * D + d] += w->row_w[row] * w->ys[(size_t)row * D + d];
            }
        }
    }
}

int
main(void)
{
    static struct mt_engine e; /* only cfg, host_team and stats are read */
    static struct eng_work w;
    static int32_t ids[N * K], group_start[E + 1], group_fill[E], row_tok[N * K],
        pair_row[N * K];
    static float wts[N * K], row_w[N * K], x[N * D], xs[N * K * D], ys[N * K * D];
    static float got[N * D], want[N * D], shared[N * D];
    static uint8_t on_gpu[E];
    struct mt_rng rng;
    struct mt_cpu_team *team = NULL;

    tap_plan(0);
    tap_ok((size_t)N * K * D * sizeof(float) >= ENG_MOE_TEAM_BYTES,
           "the step copies %zu bytes, enough for the team (from %zu)",
           (size_t)N * K * D * sizeof(float), ENG_MOE_TEAM_BYTES);
    mt_rng_init(&rng, 7);
    e.cfg.n_routed_experts = E;
    e.cfg.num_experts_per_tok = K;
    e.cfg.hidden_size = D;
    w = (struct eng_work){.ids = ids, .moe_wts = wts, .xs = xs, .ys = ys, .row_tok = row_tok,
                          .pair_row = pair_row, .row_w = row_w, .group_start = group_start,
                          .group_fill = group_fill};
    /* K distinct experts a token, in router order (not sorted by id) */
    for (int t = 0; t < N; t++) {
        for (int j = 0; j < K; j++) {
            int x_id, dup;
            do {
                x_id = (int)(mt_rng_uniform(&rng) * E) % E;
                dup = 0;
                for (int i = 0; i < j; i++) {
                    dup |= ids[t * K + i] == x_id;
                }
            } while (dup);
            ids[t * K + j] = x_id;
            wts[t * K + j] = (float)mt_rng_uniform(&rng);
        }
    }
    for (size_t i = 0; i < N * D; i++) {
        x[i] = (float)(mt_rng_uniform(&rng) - 0.5);
        shared[i] = (float)(mt_rng_uniform(&rng) - 0.5);
    }
    for (int x_id = 0; x_id < E; x_id += 5) {
        on_gpu[x_id] = 1; /* the GPU engine's device experts: neither copied nor summed */
    }
    mt_status_t st = mt_cpu_team_create(-1, 0, &team);
    tap_ok(st == MT_OK, "a host team of %d threads", st == MT_OK ? mt_cpu_team_size(team) : 0);

    for (int pass = 0; pass < 4; pass++) {
        bool with_team = pass & 1;
        bool gpu = pass & 2;
        int bad_copy = 0;

        e.host_team = with_team ? team : NULL;
        w.on_gpu = gpu ? on_gpu : NULL;
        memset(xs, 0, sizeof(xs));
        memset(&e.stats, 0, sizeof(e.stats));
        eng_moe_group(&e, 0, x, N, &w);
        /* each group holds its tokens ascending, each row a copy of its token's input */
        for (int x_id = 0; x_id < E; x_id++) {
            for (int row = group_start[x_id]; row < group_start[x_id + 1]; row++) {
                static const float zero[D];
                const float *src = gpu && on_gpu[x_id] ? zero : x + (size_t)row_tok[row] * D;
                bad_copy += row > group_start[x_id] && row_tok[row] <= row_tok[row - 1];
                bad_copy += memcmp(xs + (size_t)row * D, src, D * sizeof(float)) != 0;
            }
        }
        tap_ok(group_start[E] == N * K && bad_copy == 0,
               "%s%s: %d pairs grouped by expert, inputs copied (%d wrong)",
               with_team ? "host team" : "engine thread", gpu ? ", device experts skipped" : "",
               group_start[E], bad_copy);

        /* outputs over many binades, so that an order of the sum that differs shows */
        for (size_t i = 0; i < (size_t)N * K * D; i++) {
            ys[i] = ldexpf((float)(mt_rng_uniform(&rng) - 0.5), (int)(i % 41) - 20);
        }
        memcpy(got, shared, sizeof(got));
        memcpy(want, shared, sizeof(want));
        eng_moe_sum(&e, 0, &w, got, N, false);
        static const uint8_t none[E];
        want_sum(&w, gpu ? on_gpu : none, want);
        tap_ok(memcmp(got, want, sizeof(got)) == 0 && e.stats.moe_host_s > 0,
               "%s%s: the weighted sum has the bits of the experts-ascending loop",
               with_team ? "host team" : "engine thread", gpu ? ", device experts skipped" : "");
        /* from zero (the GPU engine's host sum): every row cleared first, whatever it held */
        memcpy(got, shared, sizeof(got));
        memset(want, 0, sizeof(want));
        eng_moe_sum(&e, 0, &w, got, N, true);
        want_sum(&w, gpu ? on_gpu : none, want);
        tap_ok(memcmp(got, want, sizeof(got)) == 0,
               "%s%s: the weighted sum from zero has the same bits",
               with_team ? "host team" : "engine thread", gpu ? ", device experts skipped" : "");
    }
    mt_cpu_team_destroy(team);
    return tap_done();
}
