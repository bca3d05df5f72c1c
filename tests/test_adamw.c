// AdamW: the float version vs the float64 reference over several steps, and two
// properties of torch.optim.AdamW: the first step without weight decay moves each
// parameter by lr * g / (|g| + eps); weight decay alone scales p by (1 - lr * wd).
#include "kernels/adamw.h"
#include "tests/kernel_check.h"

static void check_steps(size_t n, adamw_hparams hp, int steps, uint64_t seed) {
    double *p = randn_d(n, seed, 0), *m = zeros_d(n), *v = zeros_d(n);
    float *fp = to_f32(p, n), *fm = zeros_f(n), *fv = zeros_f(n);
    for (int t = 1; t <= steps; t++) {
        double *g = randn_d(n, seed, 100 + t);
        float *fg = to_f32(g, n);
        adamw_update_ref(p, g, m, v, n, &hp, t);
        adamw_update(fp, fg, fm, fv, n, &hp, t);
        free(g);
        free(fg);
    }
    char what[96];
    snprintf(what, sizeof what, "adamw n=%zu lr=%g wd=%g after %d steps", n, hp.lr, hp.weight_decay, steps);
    EXPECT_CLOSE_ARRAY(fp, p, n, TOL_F32_ELEMENTWISE, what);
    EXPECT_CLOSE_ARRAY(fm, m, n, TOL_F32_ELEMENTWISE, what);
    EXPECT_CLOSE_ARRAY(fv, v, n, TOL_F32_ELEMENTWISE, what);
    free(p); free(m); free(v); free(fp); free(fm); free(fv);
}

// Both versions from p = p0 with gradient g (double and float copies) at step 1.
static void first_step(double *p, float *fp, const double *g, size_t n, const adamw_hparams *hp) {
    double *m = zeros_d(n), *v = zeros_d(n);
    float *fm = zeros_f(n), *fv = zeros_f(n), *fg = to_f32(g, n);
    adamw_update_ref(p, g, m, v, n, hp, 1);
    adamw_update(fp, fg, fm, fv, n, hp, 1);
    free(m); free(v); free(fm); free(fv); free(fg);
}

// The reference within ref_tol of `want` (absolute), the float version within the
// elementwise tolerance.
static void expect_params(const double *p, const float *fp, const double *want, size_t n,
                          double ref_tol, const char *what) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(p[i] - want[i]));
    EXPECT(worst <= ref_tol, "%s: reference off by %.3g", what, worst);
    EXPECT_CLOSE_ARRAY(fp, want, n, TOL_F32_ELEMENTWISE, what);
}

static void test_first_step(void) {
    enum { N = 1000 };
    const adamw_hparams hp = {0.1, 0.9, 0.999, 1e-8, 0.0};
    double *g = randn_d(N, 3, 1), *p0 = randn_d(N, 3, 0), *p = randn_d(N, 3, 0);
    for (int i = 0; i < 4; i++) g[i] = (i % 2 ? -1 : 1) * 1e-9;  // where eps matters
    float *fp = to_f32(p0, N);
    first_step(p, fp, g, N, &hp);
    double *want = zeros_d(N);
    for (int i = 0; i < N; i++) want[i] = p0[i] - hp.lr * g[i] / (fabs(g[i]) + hp.eps);
    expect_params(p, fp, want, N, 1e-12, "first step");
    free(want);
    free(g); free(p0); free(p); free(fp);
}

static void test_decay_alone(void) {
    enum { N = 257 };
    const adamw_hparams hp = {0.01, 0.9, 0.999, 1e-8, 0.1};
    double *g = zeros_d(N), *p0 = randn_d(N, 4, 0), *p = randn_d(N, 4, 0);
    float *fp = to_f32(p0, N);
    first_step(p, fp, g, N, &hp);
    double *want = zeros_d(N);
    for (int i = 0; i < N; i++) want[i] = p0[i] * (1 - hp.lr * hp.weight_decay);
    expect_params(p, fp, want, N, 1e-15, "weight decay alone");
    free(want);
    free(g); free(p0); free(p); free(fp);
}

int main(void) {
    test_first_step();
    test_decay_alone();
    const adamw_hparams torch_default = {1e-3, 0.9, 0.999, 1e-8, 1e-2};
    const adamw_hparams selma_lora = {3e-4, 0.9, 0.999, 1e-8, 0.0};
    const adamw_hparams large = {0.1, 0.8, 0.99, 1e-6, 0.3};
    static const size_t sizes[] = {1, 7, 1000, 4099};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_steps(sizes[i], torch_default, 10, 10 + i);
        check_steps(sizes[i], selma_lora, 5, 20 + i);
        check_steps(sizes[i], large, 20, 30 + i);
    }
    return check_report("test_adamw");
}
