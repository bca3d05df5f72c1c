// Softmax: float64 backward vs finite differences, fast float32 vs reference on
// random shapes (M = 1, odd M, large logits), rows sum to 1, in place.
#include "kernels/softmax.h"
#include "tests/kernel_check.h"

// Activation-gradient buffers start as NaN: an output not assigned shows up.
static float *nan_f(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

typedef struct { double *inp, *out, *g; int N, M; } sm_ctx;

static double sm_loss(void *p) {
    sm_ctx *c = p;
    softmax_forward_ref(c->out, c->inp, c->N, c->M);
    return dot_d(c->out, c->g, (size_t)c->N * c->M);
}

// offset shifts whole rows (softmax is shift-invariant); +-1000 overflows or
// underflows exp unless the row maximum is subtracted.
static void check_shape(int N, int M, double scale, double offset, uint64_t seed, int fd) {
    size_t n = (size_t)N * M;
    sm_ctx c = {randn_d(n, seed, 0), zeros_d(n), randn_d(n, seed, 1), N, M};
    for (size_t i = 0; i < n; i++) c.inp[i] = c.inp[i] * scale + offset;
    double *dinp = zeros_d(n);
    sm_loss(&c);
    softmax_backward_ref(dinp, c.g, c.out, N, M);
    char what[96];
    snprintf(what, sizeof what, "softmax N=%d M=%d scale=%g offset=%g", N, M, scale, offset);
    if (fd) EXPECT_FD(sm_loss, &c, c.inp, n, dinp, what);

    float *inp = to_f32(c.inp, n), *g = to_f32(c.g, n), *out = zeros_f(n), *fdinp = nan_f(n);
    softmax_forward_ref(c.out, c.inp, N, M);
    softmax_forward(out, inp, N, M);
    softmax_backward(fdinp, g, out, N, M);
    EXPECT_CLOSE_ARRAY(out, c.out, n, TOL_F32_ELEMENTWISE, what);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, n, TOL_F32_REDUCTION, what);
    double worst = 0;
    for (int r = 0; r < N; r++) {
        double s = 0;
        for (int j = 0; j < M; j++) s += out[(size_t)r * M + j];
        worst = fabs(s - 1) > worst ? fabs(s - 1) : worst;
    }
    EXPECT(worst <= 1e-5, "%s: row sum off by %.3g", what, worst);
    softmax_forward(inp, inp, N, M);
    EXPECT(memcmp(inp, out, n * sizeof *out) == 0, "%s: forward in place", what);
    softmax_backward(g, g, out, N, M);
    EXPECT(memcmp(g, fdinp, n * sizeof *g) == 0, "%s: backward in place", what);
    free(c.inp); free(c.out); free(c.g); free(dinp); free(inp); free(g); free(out); free(fdinp);
}

int main(void) {
    check_shape(3, 7, 1.0, 0, 1, 1);
    check_shape(2, 1, 1.0, 0, 2, 1);  // M = 1: out = 1, dinp = 0
    check_shape(1, 5, 10.0, 0, 3, 1);
    check_shape(1, 1, 1.0, 0, 4, 0);
    check_shape(16, 4096, 5.0, 0, 5, 0);
    check_shape(77, 77, 1.0, 0, 6, 0);
    check_shape(4, 33, 200.0, 0, 7, 0);
    check_shape(3, 9, 1.0, -1000, 8, 0);
    check_shape(3, 9, 1.0, 1000, 9, 0);
    rng r = rng_make(8, 0);
    for (int t = 0; t < 10; t++)
        check_shape(1 + (int)rng_below(&r, 9), 1 + (int)rng_below(&r, 300), 3.0, 0, 100 + t, 0);
    return check_report("test_softmax");
}
