// LayerNorm: float64 backward vs finite differences, fast float32 vs reference on
// random shapes (odd C, C = 1, N = 1), gradient accumulation rule, NULL pointers.
#include "kernels/layernorm.h"
#include "tests/kernel_check.h"

// Activation-gradient buffers start as NaN: an output not assigned shows up.
static float *nan_f(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

typedef struct {
    double *inp, *w, *b, *out, *mean, *rstd, *g;
    int N, C, affine;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_forward_ref(c->out, c->mean, c->rstd, c->inp, c->affine ? c->w : NULL,
                          c->affine ? c->b : NULL, c->N, c->C, 1e-5);
    return dot_d(c->out, c->g, (size_t)c->N * c->C);
}

static void check_fd(int N, int C, int affine, uint64_t seed) {
    size_t n = (size_t)N * C;
    ln_ctx c = {randn_d(n, seed, 0), randn_d(C, seed, 1), randn_d(C, seed, 2), zeros_d(n),
                zeros_d(N), zeros_d(N), randn_d(n, seed, 3), N, C, affine};
    double *dinp = zeros_d(n), *dw = zeros_d(C), *db = zeros_d(C);
    ln_loss(&c);
    layernorm_backward_ref(dinp, affine ? dw : NULL, affine ? db : NULL, c.g, c.inp,
                           affine ? c.w : NULL, c.mean, c.rstd, N, C);
    EXPECT_FD(ln_loss, &c, c.inp, n, dinp, "layernorm dinp");
    if (affine) {
        EXPECT_FD(ln_loss, &c, c.w, C, dw, "layernorm dw");
        EXPECT_FD(ln_loss, &c, c.b, C, db, "layernorm db");
    }
    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.g);
    free(dinp); free(dw); free(db);
}

static void check_fast(int N, int C, double offset, uint64_t seed) {
    size_t n = (size_t)N * C;
    double *inp = randn_d(n, seed, 0), *w = randn_d(C, seed, 1), *b = randn_d(C, seed, 2);
    double *dout = randn_d(n, seed, 3), *dw0 = randn_d(C, seed, 4), *db0 = randn_d(C, seed, 5);
    for (size_t i = 0; i < n; i++) inp[i] += offset;
    double *out = zeros_d(n), *mean = zeros_d(N), *rstd = zeros_d(N);
    double *dinp = zeros_d(n), *dw = zeros_d(C), *db = zeros_d(C);
    for (int i = 0; i < C; i++) dw[i] = dw0[i], db[i] = db0[i];
    layernorm_forward_ref(out, mean, rstd, inp, w, b, N, C, 1e-5);
    layernorm_backward_ref(dinp, dw, db, dout, inp, w, mean, rstd, N, C);

    float *finp = to_f32(inp, n), *fw = to_f32(w, C), *fb = to_f32(b, C), *fdout = to_f32(dout, n);
    float *fout = zeros_f(n), *fmean = zeros_f(N), *frstd = zeros_f(N);
    float *fdinp = nan_f(n), *fdw = to_f32(dw0, C), *fdb = to_f32(db0, C);
    layernorm_forward(fout, fmean, frstd, finp, fw, fb, N, C, 1e-5f);
    layernorm_backward(fdinp, fdw, fdb, fdout, finp, fw, fmean, frstd, N, C);
    char what[96];
    snprintf(what, sizeof what, "layernorm N=%d C=%d off=%g", N, C, offset);
    EXPECT_CLOSE_ARRAY(fout, out, n, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fmean, mean, N, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, n, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdw, dw, C, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdb, db, C, TOL_F32_REDUCTION, what);
    for (int i = 0; i < N; i++) EXPECT_NEAR(frstd[i], rstd[i], 0, TOL_F32_REDUCTION);

    float *fdw2 = to_f32(dw0, C);
    layernorm_backward(NULL, fdw2, NULL, fdout, finp, fw, fmean, frstd, N, C);
    EXPECT(memcmp(fdw2, fdw, C * sizeof *fdw) == 0, "%s: dw with dinp = NULL", what);
    for (int i = 0; i < C; i++) fw[i] = 1, fb[i] = 0;
    float *fout2 = zeros_f(n);
    layernorm_forward(fout, fmean, frstd, finp, fw, fb, N, C, 1e-5f);
    layernorm_forward(fout2, fmean, frstd, finp, NULL, NULL, N, C, 1e-5f);
    EXPECT(memcmp(fout, fout2, n * sizeof *fout) == 0, "%s: non-affine", what);

    free(inp); free(w); free(b); free(dout); free(dw0); free(db0); free(out); free(mean);
    free(rstd); free(dinp); free(dw); free(db); free(finp); free(fw); free(fb); free(fdout);
    free(fout); free(fmean); free(frstd); free(fdinp); free(fdw); free(fdb); free(fdw2);
    free(fout2);
}

int main(void) {
    check_fd(3, 7, 1, 1);
    check_fd(1, 2, 1, 2);
    check_fd(2, 1, 1, 3);  // C = 1: out = bias, dinp = 0
    check_fd(4, 5, 0, 4);

    check_fast(1, 1, 0, 10);
    check_fast(77, 768, 0, 11);
    check_fast(5, 320, 30, 12);
    rng r = rng_make(13, 0);
    for (int t = 0; t < 12; t++) {
        int N = 1 + (int)rng_below(&r, 20), C = 1 + (int)rng_below(&r, 130);
        check_fast(N, C, t % 4 == 0 ? -10.0 : 0.0, 100 + t);
    }
    return check_report("test_layernorm");
}
