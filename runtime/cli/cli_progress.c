/* SPDX-License-Identifier: MIT */
/*
 * cli_progress.c - the weight-loading progress bar (see cli_progress.h).
 */
#include <config.h>

#include "runtime/cli/cli_progress.h"

#include "runtime/base/clock.h"
#include "runtime/base/status.h"
#include "runtime/model/safetensors.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define REDRAW_S 0.1

static void
draw(struct mt_cli_progress *p, uint64_t done)
{
    char bar[BAR_WIDTH + 1];
    double frac = p->total > 0 ? (double)done / (double)p->total : 1.0;
    double dt = mt_clock_now() - p->start;
    int fill;

    frac = frac > 1.0 ? 1.0 : frac;
    fill = (int)(frac * BAR_WIDTH);
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(BAR_WIDTH - fill));
    bar[BAR_WIDTH] = '\0';
    /* \r and erase-to-end: the line is rewritten in place */
    fprintf(stderr, "\rloading weights [%s] %5.1f%%  %.2f of %.2f GB  %.1f s\033[K", bar,
            100.0 * frac, (double)done / 1e9, (double)p->total / 1e9, dt);
    fflush(stderr);
}

/* The safetensors hook: count, and redraw when due and nobody else is drawing. */
static void
on_read(void *ctx, uint64_t nbytes)
{
    struct mt_cli_progress *p = ctx;
    uint64_t done = atomic_fetch_add(&p->done, nbytes) + nbytes;
    double now;

    if (!p->tty) {
        return;
    }
    now = mt_clock_now();
    if (now < atomic_load(&p->next_draw) || atomic_flag_test_and_set(&p->drawing)) {
        return;
    }
    atomic_store(&p->next_draw, now + REDRAW_S);
    draw(p, done);
    atomic_flag_clear(&p->drawing);
}

void
mt_cli_progress_start(struct mt_cli_progress *p, struct mt_model *model, uint64_t total,
                      bool say)
{
    memset(p, 0, sizeof(*p));
    p->model = model;
    p->total = total;
    atomic_init(&p->done, 0);
    atomic_init(&p->next_draw, 0.0);
    atomic_flag_clear(&p->drawing);
    p->start = mt_clock_now();
    p->say = say;
    p->tty = say && isatty(STDERR_FILENO) == 1;
    mt_st_set_set_progress(model->set, on_read, p);
}

void
mt_cli_progress_finish(struct mt_cli_progress *p, bool ok)
{
    uint64_t done;
    double dt;

    if (p->model == NULL) {
        return;
    }
    mt_st_set_set_progress(p->model->set, NULL, NULL);
    done = atomic_load(&p->done);
    dt = mt_clock_now() - p->start;
    if (p->tty) {
        fprintf(stderr, "\r\033[K");
    }
    if (ok && p->say) {
        mt_log_info("loaded %.2f GB of weights in %.1f s (%.2f GB/s)", (double)done / 1e9, dt,
                    dt > 0 ? (double)done / 1e9 / dt : 0.0);
    }
    p->model = NULL;
}
