// Inline SVG charts for report.html: a line chart (loss curves) and grouped bars with
// error bars (scores per skill and method). Plain SVG 1.1 that browsers draw without
// scripts; every string goes through html_escape.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/report.h"
#include "runtime/error.h"

#define CHART_W 900
#define PLOT_H 300
#define MARGIN_L 70
#define MARGIN_R 20
#define MARGIN_T 36
#define AXIS_H 46      // below the plot: tick labels and the axis label
#define LEGEND_ITEM_W 215
#define LEGEND_ROW_H 18

// Tableau 10: distinct for the colour-blind and in grey print, in this order.
static const char *const palette[10] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

static const char *series_color(int i) { return palette[i % 10]; }
// past ten series the colours repeat; a dash pattern tells the repeats apart
static const char *series_dash(int i) { return i < 10 ? "" : i < 20 ? "6,3" : "2,2"; }

typedef struct axis {
    double lo, hi, step;  // lo and hi are multiples of step
    int decimals;
} axis;

// ticks at 1, 2 or 5 x 10^k, about five of them, covering [lo, hi]
static axis axis_make(double lo, double hi) {
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * fmax(1, fabs(hi))) {
        double pad = fabs(hi) > 0 ? 0.5 * fabs(hi) : 1;
        lo -= pad, hi += pad;
    }
    double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step, 0};
    int d = (int)-floor(log10(step) + 1e-9);
    a.decimals = d > 0 ? d : 0;
    return a;
}

static double ax_map(const axis *a, double v, double p0, double p1) {
    return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static void svg_open(FILE *f, const char *title, int height) {
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\" font-family=\"Helvetica, Arial, sans-serif\" "
               "font-size=\"12\">\n<title>", CHART_W, height, CHART_W, height);
    html_escape(f, title);
    fprintf(f, "</title>\n<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", MARGIN_L);
    html_escape(f, title);
    fputs("</text>\n", f);
}

// horizontal grid lines with labels on the left, the y axis label, the plot frame
static void y_axis(FILE *f, const axis *a, const char *label) {
    int x0 = MARGIN_L, x1 = CHART_W - MARGIN_R, y0 = MARGIN_T + PLOT_H, y1 = MARGIN_T;
    for (int k = 0;; k++) {
        double v = a->lo + k * a->step;
        if (v > a->hi + 1e-9 * a->step) break;
        double y = ax_map(a, v, y0, y1);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", x0, y, x1, y);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#444\">%.*f</text>\n", x0 - 6,
                y + 4, a->decimals, v);
    }
    fprintf(f, "<text transform=\"translate(16 %d) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">",
            MARGIN_T + PLOT_H / 2);
    html_escape(f, label);
    fputs("</text>\n", f);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n",
            x0, y1, x1 - x0, PLOT_H);
}

static int legend_height(int n) {
    int cols = (CHART_W - MARGIN_L) / LEGEND_ITEM_W;
    return ((n + cols - 1) / cols) * LEGEND_ROW_H + 8;
}

// swatches in rows under the axis; `line`: a line sample (curves) instead of a square
static void legend(FILE *f, const char *const *names, int n, int line) {
    int cols = (CHART_W - MARGIN_L) / LEGEND_ITEM_W, top = MARGIN_T + PLOT_H + AXIS_H;
    for (int i = 0; i < n; i++) {
        int x = MARGIN_L + (i % cols) * LEGEND_ITEM_W, y = top + (i / cols) * LEGEND_ROW_H;
        if (line)
            fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\" "
                       "stroke-dasharray=\"%s\"/>\n", x, y + 6, x + 18, y + 6, series_color(i), series_dash(i));
        else
            fprintf(f, "<rect class=\"swatch\" x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>\n",
                    x + 3, y, series_color(i));
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#222\">", x + 24, y + 10);
        // a legend column holds ~32 characters; longer names are cut (at a UTF-8
        // character boundary) with an ellipsis, the full name is the tooltip
        const char *s = names[i] ? names[i] : "";
        char cut[40];
        size_t len = strlen(s);
        if (len <= 32) {
            html_escape(f, s);
        } else {
            size_t k = 30;
            while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            snprintf(cut, sizeof cut, "%.*s...", (int)k, s);
            html_escape(f, cut);
        }
        fputs("<title>", f);
        html_escape(f, s);
        fputs("</title></text>\n", f);
    }
}

void svg_line_chart(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *s, int n_series) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n_series; i++)
        for (int k = 0; k < s[i].n; k++) {
            if (!isfinite(s[i].x[k]) || !isfinite(s[i].y[k])) continue;
            xlo = fmin(xlo, s[i].x[k]), xhi = fmax(xhi, s[i].x[k]);
            ylo = fmin(ylo, s[i].y[k]), yhi = fmax(yhi, s[i].y[k]);
        }
    axis ax = axis_make(xlo, xhi), ay = axis_make(ylo, yhi);
    int height = MARGIN_T + PLOT_H + AXIS_H + legend_height(n_series);
    int x0 = MARGIN_L, x1 = CHART_W - MARGIN_R, y0 = MARGIN_T + PLOT_H, y1 = MARGIN_T;
    svg_open(f, title, height);
    y_axis(f, &ay, ylabel);
    for (int k = 0;; k++) {
        double v = ax.lo + k * ax.step;
        if (v > ax.hi + 1e-9 * ax.step) break;
        double x = ax_map(&ax, v, x0, x1);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#888\"/>\n", x, y0, x, y0 + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#444\">%.*f</text>\n", x,
                y0 + 18, ax.decimals, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#222\">", (x0 + x1) / 2, y0 + 36);
    html_escape(f, xlabel);
    fputs("</text>\n", f);
    const char **names = malloc((size_t)(n_series > 0 ? n_series : 1) * sizeof(*names));
    CHECK(names);
    for (int i = 0; i < n_series; i++) {
        fprintf(f, "<polyline class=\"curve\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                   "stroke-dasharray=\"%s\" stroke-linejoin=\"round\" points=\"",
                series_color(i), series_dash(i));
        for (int k = 0; k < s[i].n; k++)
            if (isfinite(s[i].x[k]) && isfinite(s[i].y[k]))
                fprintf(f, "%s%.1f,%.1f", k ? " " : "", ax_map(&ax, s[i].x[k], x0, x1),
                        ax_map(&ay, s[i].y[k], y0, y1));
        fputs("\"><title>", f);
        html_escape(f, s[i].name ? s[i].name : "");
        fputs("</title></polyline>\n", f);
        names[i] = s[i].name;
    }
    legend(f, names, n_series, 1);
    free(names);
    fputs("</svg>\n", f);
}

void svg_bar_chart(FILE *f, const char *title, const char *ylabel,
                   const char *const *group_names, int n_groups,
                   const char *const *bar_names, int n_bars, const metric_ci *v, double scale,
                   int bounded) {
    double lo = 0, hi = -INFINITY;
    for (int i = 0; i < n_groups * n_bars; i++) {
        if (v[i].n <= 0) continue;
        lo = fmin(lo, scale * fmin(v[i].mean, v[i].lo));
        hi = fmax(hi, scale * fmax(v[i].mean, v[i].hi));
    }
    if (!isfinite(hi)) hi = scale;
    if (bounded) lo = 0, hi = fmin(hi, scale);
    axis ay = axis_make(lo, fmax(hi, lo));
    if (bounded) ay.hi = fmin(ay.hi, scale);
    int height = MARGIN_T + PLOT_H + AXIS_H + legend_height(n_bars);
    int x0 = MARGIN_L, x1 = CHART_W - MARGIN_R, y0 = MARGIN_T + PLOT_H, y1 = MARGIN_T;
    svg_open(f, title, height);
    y_axis(f, &ay, ylabel);
    double gw = (double)(x1 - x0) / (n_groups > 0 ? n_groups : 1);
    // bars share 80% of a group's width, at most 56 px each, centred in the group
    double bw = fmin(gw * 0.8 / (n_bars > 0 ? n_bars : 1), 56), yz = ax_map(&ay, 0, y0, y1);
    double pad = (gw - bw * n_bars) / 2;
    for (int g = 0; g < n_groups; g++) {
        double gx = x0 + g * gw;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#222\">", gx + gw / 2, y0 + 18);
        html_escape(f, group_names[g]);
        fputs("</text>\n", f);
        for (int b = 0; b < n_bars; b++) {
            metric_ci m = v[g * n_bars + b];
            if (m.n <= 0) continue;
            double x = gx + pad + b * bw, y = ax_map(&ay, scale * m.mean, y0, y1);
            fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"%s\"><title>", x + 1, fmin(y, yz), fmax(bw - 2, 1), fabs(yz - y),
                    series_color(b));
            char val[96];
            if (m.n > 1) snprintf(val, sizeof val, ": %.4g [%.4g, %.4g], %d seeds", scale * m.mean,
                                  scale * m.lo, scale * m.hi, m.n);
            else snprintf(val, sizeof val, ": %.4g, 1 seed", scale * m.mean);
            html_escape(f, bar_names[b]);
            fputs(", ", f);
            html_escape(f, group_names[g]);
            html_escape(f, val);
            fputs("</title></rect>\n", f);
            if (m.n > 1) {
                // a bounded score's interval is cut at the axis (two seeds give t = 12.7)
                double elo = scale * m.lo, ehi = scale * m.hi;
                if (bounded) elo = fmax(elo, ay.lo), ehi = fmin(ehi, ay.hi);
                double cx = x + bw / 2, ylo = ax_map(&ay, elo, y0, y1),
                       yhi = ax_map(&ay, ehi, y0, y1), cap = fmin(4, bw / 4);
                fprintf(f, "<path class=\"err\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" "
                           "stroke=\"#222\" stroke-width=\"1.2\" fill=\"none\"/>\n", cx, ylo, yhi,
                        cx - cap, ylo, cx + cap, cx - cap, yhi, cx + cap);
            }
        }
    }
    if (lo < 0)
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#555\"/>\n", x0, yz, x1, yz);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", x0, y0, x1, y0);
    legend(f, bar_names, n_bars, 0);
    fputs("</svg>\n", f);
}
