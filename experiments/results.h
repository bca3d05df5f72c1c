// What a `selma run` measured, handed from the pipeline (experiments/pipeline*.c) to
// the report writer (experiments/report*.c): results.json, results.md, report.html.
// Scores are in [0, 1]; each metric is a mean over seeds with a 95% interval.
#ifndef SELMA_EXPERIMENTS_RESULTS_H
#define SELMA_EXPERIMENTS_RESULTS_H

#include "data/shapes.h"

#define RESULTS_MAX_METHODS 64
#define RESULTS_MAX_SEEDS 16
#define RESULTS_MAX_CURVES 64
#define RESULTS_MAX_GRIDS 16

// mean and the 95% interval [lo, hi] of the mean over n seeds (Student's t with n-1
// degrees of freedom; lo = hi = mean when n == 1).
typedef struct metric_ci {
    double mean, lo, hi;
    int n;
} metric_ci;

metric_ci metric_ci_from(const double *samples, int n);

typedef struct method_result {
    char name[64];       // "base", "expert-count", "mixed", "selma", "moe", "gt-images", ...
    char label[128];     // what the table shows, e.g. "SELMA (merge: sum of 5 experts)"
    metric_ci dsg, tifa;                  // held-out test prompts, all five skills
    metric_ci quality;                    // image-quality distance to ground truth (lower is better)
    metric_ci skill_dsg[SKILL_KINDS];     // per skill (n == 0: not evaluated)
    metric_ci skill_tifa[SKILL_KINDS];
    int n_seeds;
    double seed_dsg[RESULTS_MAX_SEEDS], seed_tifa[RESULTS_MAX_SEEDS];  // the raw samples
    // 1: the test images and their questions are in the run directory's
    // export/<name>/seed<k>/ (experiments/stage_export.c); a world without the exact
    // evaluator (sd) has only these, and dsg/tifa with n == 0
    int exported;
} method_result;

typedef struct loss_curve {
    char name[96];       // "expert-count seed 0"
    int n;
    float *step, *loss;  // (n) owned by the results
} loss_curve;

typedef struct report_grid {
    char path[512];      // a PNG next to the report (relative to the run directory)
    char caption[256];   // "the same 8 test prompts and seeds, one row per method"
} report_grid;

typedef struct run_results {
    char title[128];           // the config's name
    char run_dir[512];
    char note[1024];           // e.g. what the quick config scales down, and why
    char quality_metric[512];  // one line naming the image-quality figure and its features
    int n_methods;
    method_result methods[RESULTS_MAX_METHODS];
    int n_curves;
    loss_curve curves[RESULTS_MAX_CURVES];
    int n_grids;
    report_grid grids[RESULTS_MAX_GRIDS];
} run_results;

void run_results_free(run_results *r);  // the curves' arrays

#endif
