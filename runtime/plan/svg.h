/* SPDX-License-Identifier: MIT */
/*
 * svg.h - a horizontal bar chart on a log scale, as a standalone SVG file.
 *
 * The one idea: memory tiers span four orders of magnitude (a disk at 2 GB/s, HBM at 4000), so
 * only a log axis shows them all; each bar carries its value as text, so the chart reads without
 * the axis. Used by `moetier bench --svg`.
 */
#ifndef MT_SVG_H
#define MT_SVG_H

#include "runtime/base/status.h"

struct mt_svg_bar {
    const char *label; /* left of the bar: "HBM read" */
    const char *group; /* tier, picks the colour: "gpu", "pcie", "dram", "disk", other */
    double value;      /* > 0; bars with value <= 0 are drawn as "not measured" */
};

/*
 * Write the chart to path: title and subtitle on top, one bar per entry, value axis `unit` on a
 * log10 scale covering all values. MT_ERR_IO when the file cannot be written, MT_ERR_INVAL
 * when there are no bars.
 */
mt_status_t mt_svg_bars_write(const char *path, const char *title, const char *subtitle,
                              const char *unit, const struct mt_svg_bar *bars, int n_bars);

#endif /* MT_SVG_H */
