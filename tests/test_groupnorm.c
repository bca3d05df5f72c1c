// GroupNorm: float64 backward vs finite differences, fast float32 vs reference on
// random shapes (odd sizes, size 1, G = 1 and G = C), gradient accumulation rule.
#include "kernels/groupnorm.h"
#include "tests/kernel_check.h"

// Activation-gradient buffers start as NaN: an output not assigned shows up.
static float *nan_f(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

typedef struct {
    double *inp, *w, *b, *out, *mean, *rstd, *g;
    int B, C, HW, G;
    int affine;
} gn_ctx;

static double gn_loss(void *p) {
    gn_ctx *c = p;
    groupnorm_forward_ref(c->out, c->mean, c->rstd, c->inp, c->affine ? c->w : NULL,
                          c->affine ? c->b : NULL, c->B, c->C, c->HW, c->G, 1e-5);
    return dot_d(c->out, c->g, (size_t)c->B * c->C * c->HW);
}

static void check_fd(int B, int C, int HW, int G, int affine, uint64_t seed) {
    size_t n = (size_t)B * C * HW;
    gn_ctx c = {randn_d(n, seed, 0), randn_d(C, seed, 1), randn_d(C, seed, 2), zeros_d(n),
                zeros_d(B * G), zeros_d(B * G), randn_d(n, seed, 3), B, C, HW, G, affine};
    double *dinp = zeros_d(n), *dw = zeros_d(C), *db = zeros_d(C);
    gn_loss(&c);
    groupnorm_backward_ref(dinp, affine ? dw : NULL, affine ? db : NULL, c.g, c.inp,
                           affine ? c.w : NULL, c.mean, c.rstd, B, C, HW, G);
    EXPECT_FD(gn_loss, &c, c.inp, n, dinp, "groupnorm dinp");
    if (affine) {
        EXPECT_FD(gn_loss, &c, c.w, C, dw, "groupnorm dw");
        EXPECT_FD(gn_loss, &c, c.b, C, db, "groupnorm db");
    }
    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.g);
    free(dinp); free(dw); free(db);
}

// offset shifts the input mean away from zero: the fast kernel must not lose
// precision to cancellation when |mean| >> std.
static void check_fast(int B, int C, int HW, int G, double offset, uint64_t seed) {
    size_t n = (size_t)B * C * HW;
    double *inp = randn_d(n, seed, 0), *w = randn_d(C, seed, 1), *b = randn_d(C, seed, 2);
    double *dout = randn_d(n, seed, 3), *dw0 = randn_d(C, seed, 4), *db0 = randn_d(C, seed, 5);
    for (size_t i = 0; i < n; i++) inp[i] += offset;
    double *out = zeros_d(n), *mean = zeros_d(B * G), *rstd = zeros_d(B * G);
    double *dinp = zeros_d(n), *dw = zeros_d(C), *db = zeros_d(C);
    for (int i = 0; i < C; i++) dw[i] = dw0[i], db[i] = db0[i];
    groupnorm_forward_ref(out, mean, rstd, inp, w, b, B, C, HW, G, 1e-5);
    groupnorm_backward_ref(dinp, dw, db, dout, inp, w, mean, rstd, B, C, HW, G);

    float *finp = to_f32(inp, n), *fw = to_f32(w, C), *fb = to_f32(b, C), *fdout = to_f32(dout, n);
    float *fout = zeros_f(n), *fmean = zeros_f(B * G), *frstd = zeros_f(B * G);
    float *fdinp = nan_f(n), *fdw = to_f32(dw0, C), *fdb = to_f32(db0, C);
    groupnorm_forward(fout, fmean, frstd, finp, fw, fb, B, C, HW, G, 1e-5f);
    groupnorm_backward(fdinp, fdw, fdb, fdout, finp, fw, fmean, frstd, B, C, HW, G);
    char what[128];
    snprintf(what, sizeof what, "groupnorm B=%d C=%d HW=%d G=%d off=%g", B, C, HW, G, offset);
    EXPECT_CLOSE_ARRAY(fout, out, n, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fmean, mean, (size_t)B * G, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, n, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdw, dw, C, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdb, db, C, TOL_F32_REDUCTION, what);
    // rstd is compared relatively: it is large when a group is near constant.
    for (int i = 0; i < B * G; i++)
        EXPECT_NEAR(frstd[i], rstd[i], 0, TOL_F32_REDUCTION);

    // NULL gradients are skipped, and the others do not depend on them.
    float *fdw2 = to_f32(dw0, C);
    groupnorm_backward(NULL, fdw2, NULL, fdout, finp, fw, fmean, frstd, B, C, HW, G);
    EXPECT(memcmp(fdw2, fdw, C * sizeof *fdw) == 0, "%s: dw with dinp = NULL", what);
    // Non-affine forward equals affine with w = 1, b = 0.
    for (int i = 0; i < C; i++) fw[i] = 1, fb[i] = 0;
    float *fout2 = zeros_f(n);
    groupnorm_forward(fout, fmean, frstd, finp, fw, fb, B, C, HW, G, 1e-5f);
    groupnorm_forward(fout2, fmean, frstd, finp, NULL, NULL, B, C, HW, G, 1e-5f);
    EXPECT(memcmp(fout, fout2, n * sizeof *fout) == 0, "%s: non-affine", what);

    free(inp); free(w); free(b); free(dout); free(dw0); free(db0); free(out); free(mean);
    free(rstd); free(dinp); free(dw); free(db); free(finp); free(fw); free(fb); free(fdout);
    free(fout); free(fmean); free(frstd); free(fdinp); free(fdw); free(fdb); free(fdw2);
    free(fout2);
}

int main(void) {
    check_fd(2, 6, 5, 3, 1, 1);
    check_fd(1, 4, 3, 1, 1, 2);
    check_fd(2, 3, 1, 3, 1, 3);  // groups of a single value: out = bias, dinp = 0
    check_fd(1, 4, 7, 2, 0, 4);

    check_fast(1, 1, 1, 1, 0, 10);
    check_fast(2, 64, 16 * 16, 32, 0, 11);
    check_fast(3, 6, 7 * 5, 3, 0, 12);
    check_fast(1, 32, 9, 32, 0, 13);
    check_fast(2, 40, 33, 8, 50, 14);
    rng r = rng_make(15, 0);
    for (int t = 0; t < 10; t++) {
        int G = 1 + (int)rng_below(&r, 8), C = G * (1 + (int)rng_below(&r, 5));
        int B = 1 + (int)rng_below(&r, 3), HW = 1 + (int)rng_below(&r, 70);
        check_fast(B, C, HW, G, t % 3 == 0 ? -20.0 : 0.0, 100 + t);
    }
    return check_report("test_groupnorm");
}
