// Helpers for kernel tests: random inputs (Philox), float<->double copies, the
// normalized comparison of a fast kernel with its float64 reference, and the
// finite-difference check of a float64 backward.
//
// Tolerances (fast f32 kernel vs f64 reference), one table for the whole suite:
// every f32 figure is max |fast - ref| / max(1, max |ref|) over the whole output:
//   f32 elementwise ops                                          <= 1e-5
//   f32 reductions / GEMM / conv / attention (K terms summed)    <= 1e-4
//   bf16 (GPU, later)           5e-3, f16 1e-3, same normalization
//   f64 backward vs finite differences (central, eps 1e-6)
//                               max |err| / max(1, max|fd|) <= 1e-6
#ifndef SELMA_TESTS_KERNEL_CHECK_H
#define SELMA_TESTS_KERNEL_CHECK_H

#include <stdlib.h>

#include "runtime/rng.h"
#include "tests/check.h"

#define TOL_F32_ELEMENTWISE 1e-5
#define TOL_F32_REDUCTION 1e-4
#define TOL_FD 1e-6
#define FD_EPS 1e-6

static inline double *randn_d(size_t n, uint64_t seed, uint64_t stream) {
    float *f = malloc((n ? n : 1) * sizeof *f);
    double *d = malloc((n ? n : 1) * sizeof *d);
    rng_fill_normal(f, n, seed, stream, 0, 0, 1);
    for (size_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static inline float *to_f32(const double *d, size_t n) {
    float *f = malloc((n ? n : 1) * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)d[i];
    return f;
}

static inline double *zeros_d(size_t n) { return calloc(n ? n : 1, sizeof(double)); }
static inline float *zeros_f(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

// max |fast - ref| / max(1, max |ref|)
static inline double max_rel_err(const float *fast, const double *ref, size_t n) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++) scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)fast[i] - ref[i]);
        if (e != e) return INFINITY;  // NaN
        worst = e > worst ? e : worst;
    }
    return worst / scale;
}

#define EXPECT_CLOSE_ARRAY(fast, ref, n, tol, what)                             \
    do {                                                                       \
        double e_ = max_rel_err((fast), (ref), (n));                            \
        EXPECT(e_ <= (tol), "%s: max rel err %.3g > %.1g", (what), e_, (double)(tol)); \
    } while (0)

// Finite differences. `fwd` recomputes the scalar loss L = sum(out * g) from the
// current inputs held in ctx; the check perturbs x[i] in place (restoring it) and
// compares dL/dx[i] with `analytic[i]`. Returns max |err| / max(1, max |fd|).
typedef double (*fd_loss_fn)(void *ctx);

static inline double fd_check(fd_loss_fn fwd, void *ctx, double *x, size_t n, const double *analytic) {
    double worst = 0, scale = 1;
    double *fd = malloc((n ? n : 1) * sizeof *fd);
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_EPS;
        double lp = fwd(ctx);
        x[i] = x0 - FD_EPS;
        double lm = fwd(ctx);
        x[i] = x0;
        fd[i] = (lp - lm) / (2 * FD_EPS);
        scale = fabs(fd[i]) > scale ? fabs(fd[i]) : scale;
    }
    for (size_t i = 0; i < n; i++) {
        double e = fabs(fd[i] - analytic[i]);
        worst = e > worst || e != e ? e : worst;
    }
    free(fd);
    return worst / scale;
}

static inline double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#define EXPECT_FD(fwd, ctx, x, n, analytic, what)                               \
    do {                                                                       \
        double e_ = fd_check((fwd), (ctx), (x), (n), (analytic));               \
        EXPECT(e_ <= TOL_FD, "%s: finite-difference rel err %.3g", (what), e_); \
    } while (0)

#endif
