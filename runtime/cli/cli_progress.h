/* SPDX-License-Identifier: MIT */
/*
 * cli_progress.h - a progress bar on stderr while an engine loads its weights.
 *
 * The one idea: the bar counts bytes at the one place every engine reads a tensor
 * (mt_st_set_read's progress hook, runtime/model/safetensors.h), so the CPU and the GPU engine
 * get it without knowing. The bar is drawn only when stderr is a terminal (redrawn at most ten
 * times a second, from whichever reading thread gets there first); the closing summary line
 * ("mt: loaded 15.8 GB of weights in 6.1 s (2.6 GB/s)") is printed on a terminal or not, so
 * logs and tests see it too (unless the command says nothing at start: chat without -v).
 *
 * The total is what the caller expects the engine to read at creation: the always-on weights
 * plus the experts an engine keeps resident from the start (on the GPU engine, those the plan
 * puts on the GPU). Experts read later (the CPU engine reads DRAM experts on first use, streamed
 * ones through io/) are not part of it; a total that is low is only a bar that fills early, as
 * the bar never shows more than 100%.
 */
#ifndef MT_CLI_PROGRESS_H
#define MT_CLI_PROGRESS_H

#include "runtime/model/model.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct mt_cli_progress {
    struct mt_model *model;  /* borrowed: the model whose set carries the hook */
    uint64_t total;          /* bytes expected */
    _Atomic uint64_t done;   /* bytes read so far */
    _Atomic double next_draw; /* clock time of the next redraw */
    atomic_flag drawing;     /* held by the thread drawing */
    double start;
    bool tty;                /* draw the bar (stderr is a terminal) */
    bool say;                /* print the bar and the summary at all */
};

/*
 * Hook p onto model's safetensors set; total as above. Prints nothing yet; with say false
 * nothing at all (chat without -v on a pipe keeps stderr quiet).
 */
void mt_cli_progress_start(struct mt_cli_progress *p, struct mt_model *model, uint64_t total,
                           bool say);

/*
 * Unhook, erase the bar, and when ok print the summary line (on failure the error says enough).
 * A p never started (model NULL) is a no-op.
 */
void mt_cli_progress_finish(struct mt_cli_progress *p, bool ok);

#endif /* MT_CLI_PROGRESS_H */
