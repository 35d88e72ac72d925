/* SPDX-License-Identifier: MIT */
/*
 * svg.c - log-scale horizontal bar charts (runtime/svg.h).
 *
 * Layout is fixed arithmetic: a label column, a plot area whose x is log10(value) between
 * decades that bracket every value, one 26-pixel row per bar, gridlines at 1-2-5 steps.
 */
#include <config.h>

#include "runtime/plan/svg.h"

#include "runtime/base/out_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 960
#define LABEL_W 300
#define RIGHT_PAD 90
#define TOP 78
#define ROW_H 26
#define BAR_H 18
#define BOTTOM 56

static const char *
colour(const char *group)
{
    if (group == NULL) {
        return "#888888";
    }
    if (strcmp(group, "gpu") == 0) {
        return "#76b900"; /* green */
    }
    if (strcmp(group, "pcie") == 0) {
        return "#2f7ed8";
    }
    if (strcmp(group, "dram") == 0) {
        return "#e8a33d";
    }
    if (strcmp(group, "disk") == 0) {
        return "#b5487a";
    }
    return "#888888";
}

/* Write s with XML's special characters escaped. */
static void
put_text(FILE *f, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static void
fmt_value(char *buf, size_t cap, double v)
{
    if (v >= 100) {
        snprintf(buf, cap, "%.0f", v);
    } else if (v >= 10) {
        snprintf(buf, cap, "%.1f", v);
    } else {
        snprintf(buf, cap, "%.2f", v);
    }
}

mt_status_t
mt_svg_bars_write(const char *path, const char *title, const char *subtitle, const char *unit,
                  const struct mt_svg_bar *bars, int n_bars)
{
    double lo = INFINITY;
    double hi = 0.0;
    int plot_w = W - LABEL_W - RIGHT_PAD;
    int h;
    int d_lo;
    int d_hi;
    struct mt_out_file o;
    mt_status_t st;
    FILE *f;

    if (n_bars <= 0) {
        return mt_fail(MT_ERR_INVAL, 0, "chart '%s' has no bars", path);
    }
    for (int i = 0; i < n_bars; i++) {
        if (bars[i].value > 0) {
            lo = fmin(lo, bars[i].value);
            hi = fmax(hi, bars[i].value);
        }
    }
    if (hi <= 0) {
        lo = 1;
        hi = 10;
    }
    d_lo = (int)floor(log10(lo)) - 1; /* a decade of room: the smallest bar stays visible */
    d_hi = (int)ceil(log10(hi));
    if (d_hi <= d_lo) {
        d_hi = d_lo + 1;
    }
    h = TOP + n_bars * ROW_H + BOTTOM;
    if ((st = mt_out_file_open(path, "chart", &o)) != MT_OK) {
        return st;
    }
    f = o.f;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            W, h, W, h);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, h);
    fprintf(f, "<text x=\"20\" y=\"30\" font-size=\"20\" font-weight=\"bold\">");
    put_text(f, title);
    fprintf(f, "</text>\n<text x=\"20\" y=\"52\" font-size=\"13\" fill=\"#555\">");
    put_text(f, subtitle);
    fprintf(f, "</text>\n");

    /* Gridlines at 1, 2, 5 x 10^d; labels on the decades. */
    for (int d = d_lo; d <= d_hi; d++) {
        static const double steps[3] = {1, 2, 5};

        for (int k = 0; k < 3 && (d < d_hi || k == 0); k++) {
            double v = steps[k] * pow(10, d);
            double x = LABEL_W + plot_w * (log10(v) - d_lo) / (d_hi - d_lo);

            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
                    "stroke-width=\"1\"/>\n",
                    x, TOP - 6, x, TOP + n_bars * ROW_H, k == 0 ? "#bbb" : "#e6e6e6");
            if (k == 0) {
                char buf[32];

                snprintf(buf, sizeof(buf), "%g", v);
                fprintf(f,
                        "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
                        "fill=\"#444\">%s</text>\n",
                        x, TOP + n_bars * ROW_H + 18, buf);
            }
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\" fill=\"#444\">",
            LABEL_W + plot_w / 2, TOP + n_bars * ROW_H + 40);
    put_text(f, unit);
    fprintf(f, " (log scale)</text>\n");

    for (int i = 0; i < n_bars; i++) {
        int y = TOP + i * ROW_H;
        char buf[32];

        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" text-anchor=\"end\">", LABEL_W - 10,
                y + BAR_H - 4);
        put_text(f, bars[i].label);
        fprintf(f, "</text>\n");
        if (bars[i].value <= 0) {
            fprintf(f,
                    "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#999\">not measured"
                    "</text>\n",
                    LABEL_W + 6, y + BAR_H - 4);
            continue;
        }
        /* A value below the first decade still gets a sliver, so it is visible. */
        double w = plot_w * (log10(bars[i].value) - d_lo) / (d_hi - d_lo);

        w = fmax(w, 2.0);
        fmt_value(buf, sizeof(buf), bars[i].value);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", LABEL_W,
                y, w, BAR_H, colour(bars[i].group));
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
                LABEL_W + w + 6, y + BAR_H - 4, buf);
    }
    fprintf(f, "</svg>\n");
    return mt_out_file_commit(&o); /* (checks every fprintf above) */
}
