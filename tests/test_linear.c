// Linear: float64 backward vs finite differences, sgemm version vs the reference,
// and the gradient rule (dinp assigned, dw/db accumulated).
#include "kernels/linear.h"
#include "tests/kernel_check.h"

// "<shape> <name>" for failure messages (one at a time).
static const char *label(const char *shape, const char *name) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s %s", shape, name);
    return buf;
}

typedef struct { double *inp, *w, *b, *out, *g; int N, C, OC; } lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    linear_forward_ref(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dot_d(c->out, c->g, (size_t)c->N * c->OC);
}

// Gradient buffers start the way the rule expects to find them: dinp full of junk
// (it must be overwritten), dw and db holding earlier contributions `acc_*` (they
// must be added to). Streams 0-3 draw the inputs, 4-6 the junk and earlier sums.
static void check_shape(int N, int C, int OC, int with_bias, int do_fd, uint64_t seed) {
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    lin_ctx c = {randn_d(ni, seed, 0), randn_d(nw, seed, 1), with_bias ? randn_d(OC, seed, 2) : NULL,
                 zeros_d(no), randn_d(no, seed, 3), N, C, OC};
    double *dinp = randn_d(ni, seed, 4), *dw = randn_d(nw, seed, 5), *db = randn_d(OC, seed, 6);
    double *junk = randn_d(ni, seed, 4), *acc_w = randn_d(nw, seed, 5), *acc_b = randn_d(OC, seed, 6);
    char shape[96];
    snprintf(shape, sizeof shape, "linear N=%d C=%d OC=%d bias=%d", N, C, OC, with_bias);

    linear_backward_ref(dinp, dw, with_bias ? db : NULL, c.g, c.inp, c.w, N, C, OC);

    float *inp = to_f32(c.inp, ni), *w = to_f32(c.w, nw), *b = with_bias ? to_f32(c.b, OC) : NULL;
    float *g = to_f32(c.g, no), *out = zeros_f(no);
    float *fdinp = to_f32(junk, ni), *fdw = to_f32(acc_w, nw), *fdb = to_f32(acc_b, OC);
    linear_forward(out, inp, w, b, N, C, OC);
    lin_loss(&c);
    EXPECT_CLOSE_ARRAY(out, c.out, no, TOL_F32_REDUCTION, label(shape, "forward"));
    linear_backward(fdinp, fdw, with_bias ? fdb : NULL, g, inp, w, N, C, OC);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, ni, TOL_F32_REDUCTION, label(shape, "dinp"));
    EXPECT_CLOSE_ARRAY(fdw, dw, nw, TOL_F32_REDUCTION, label(shape, "dw"));
    EXPECT_CLOSE_ARRAY(fdb, db, OC, TOL_F32_REDUCTION, label(shape, "db"));
    // NULL gradients are skipped: dw alone equals dw from the full call.
    float *fdw_alone = to_f32(acc_w, nw);
    linear_backward(NULL, fdw_alone, NULL, g, inp, w, N, C, OC);
    EXPECT_CLOSE_ARRAY(fdw_alone, dw, nw, TOL_F32_REDUCTION, label(shape, "dw alone"));

    if (do_fd) {
        for (size_t i = 0; i < nw; i++) dw[i] -= acc_w[i];
        for (int i = 0; i < OC; i++) db[i] -= acc_b[i];
        EXPECT_FD(lin_loss, &c, c.inp, ni, dinp, label(shape, "fd dinp"));
        EXPECT_FD(lin_loss, &c, c.w, nw, dw, label(shape, "fd dw"));
        if (with_bias) EXPECT_FD(lin_loss, &c, c.b, OC, db, label(shape, "fd db"));
    }

    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.g);
    free(dinp); free(dw); free(db); free(junk); free(acc_w); free(acc_b);
    free(inp); free(w); free(b); free(g); free(out); free(fdinp); free(fdw); free(fdb); free(fdw_alone);
}

int main(void) {
    // Small shapes get the finite-difference check too; size 1 and odd sizes on
    // every axis.
    static const int fd_shapes[][3] = {{1, 1, 1}, {3, 5, 2}, {2, 1, 7}, {5, 4, 1}};
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++)
        for (int bias = 0; bias < 2; bias++)
            check_shape(fd_shapes[i][0], fd_shapes[i][1], fd_shapes[i][2], bias, 1, 10 + i);
    static const int shapes[][3] = {{1, 64, 64}, {33, 17, 65}, {256, 64, 256}, {129, 320, 7}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], 1, 0, 20 + i);
    rng r = rng_make(7, 0);  // a few random shapes
    for (int i = 0; i < 4; i++)
        check_shape(1 + rng_below(&r, 97), 1 + rng_below(&r, 97), 1 + rng_below(&r, 97), i & 1, 0, 30 + i);
    return check_report("test_linear");
}
