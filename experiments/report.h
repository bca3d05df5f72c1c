// The run report: what a `selma run` measured (results.h), written into its run
// directory as three files, each atomically (temporary name, fsync, rename):
//
//   results.json  {"title", "note", "quality_metric",
//                  "methods": {<name>: {"label", "n_seeds",
//                                       "dsg"|"tifa"|"quality": {"mean","lo","hi","n"},
//                                       "seeds": {"dsg": [...], "tifa": [...]},
//                                       "skills": {<skill>: {"dsg": {...}, "tifa": {...}}}}},
//                  "curves": [{"name", "step": [...], "loss": [...]}],
//                  "grids": [{"path", "caption"}]}
//                 scores in [0, 1]; skills with n == 0 (not evaluated) are left out.
//   results.md    the tables: faithfulness overall (DSG, TIFA and quality per method, as
//                 SELMA's Table 1), DSG per skill, TIFA per skill, and the merging
//                 ablation (the merge-related methods, see report_is_merge_method);
//                 scores in percent with one decimal as "mean [lo, hi]" (95% interval
//                 over seeds; the mean alone for one seed; "-" when not evaluated).
//   report.html   one self-contained page: the same tables, the loss curves (inline SVG
//                 line chart), DSG and TIFA per skill and method (inline SVG grouped bars
//                 with 95% error bars), quality per method, and the image grids (the PNGs
//                 embedded as base64 data URIs). No scripts; every string HTML-escaped.
#ifndef SELMA_EXPERIMENTS_REPORT_H
#define SELMA_EXPERIMENTS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "experiments/results.h"

// All three files; -1 with a message naming the file on an I/O error, a duplicate or
// empty method name, or an image grid that is missing or not a PNG.
int report_write(const run_results *r);
int report_write_json(const run_results *r, const char *path);
int report_write_md(const run_results *r, const char *path);
int report_write_html(const run_results *r, const char *path);

// Rows of the merging ablation: "base" (the reference), "mixed" (one LoRA on all
// skills' data), "moe" (mixture of LoRA experts), "selma" and names starting with
// "merge" or "selma-" (merges of the skill experts).
int report_is_merge_method(const char *name);

// Checks shared by the writers: unique, non-empty names; counts within bounds; every
// image grid readable and a PNG.
int report_check(const run_results *r);
// A grid's file: its path when absolute, else relative to the run directory.
void report_grid_path(const run_results *r, const report_grid *g, char *buf, size_t n);

// "71.3 [69.0, 73.6]" (percent of a [0, 1] score), "71.3" for n == 1, "-" for n == 0.
void report_fmt_pct(char *buf, size_t n, metric_ci m);
// The same for the quality figure, in its own units with three decimals.
void report_fmt_quality(char *buf, size_t n, metric_ci m);
const char *report_label(const method_result *m);  // label, or name when empty
// The skills any method was evaluated on (n > 0), in skill order, into skills[SKILL_KINDS].
int report_skills(const run_results *r, int *skills);

// base64 (RFC 4648, with padding) of n bytes into out, which must hold
// 4 * ((n + 2) / 3) + 1 bytes; returns the length written (NUL not counted).
size_t base64_encode(const uint8_t *in, size_t n, char *out);
// s with & < > " ' replaced by entities.
void html_escape(FILE *f, const char *s);

// Inline SVG charts (report_svg.c), written into an HTML page.
typedef struct svg_series {
    const char *name;
    int n;
    const float *x, *y;  // (n)
} svg_series;
// One polyline (class "curve") per series, axes with ticks and labels, a legend.
void svg_line_chart(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                    const svg_series *s, int n_series);

// Grouped bars: n_groups groups (e.g. skills) of n_bars bars (e.g. methods), one rect
// of class "bar" per value with n > 0 and an error bar over [lo, hi] when n > 1.
// v[g * n_bars + b] is group g, bar b; scale multiplies every value (100 for percent).
// bounded: the values are scores in [0, 1], so the axis stops at [0, scale] and error
// bars are cut there.
void svg_bar_chart(FILE *f, const char *title, const char *ylabel,
                   const char *const *group_names, int n_groups,
                   const char *const *bar_names, int n_bars, const metric_ci *v, double scale,
                   int bounded);

#endif
