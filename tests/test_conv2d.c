// Conv2d: float64 backward vs finite differences for inp, w and b, the
// im2col/sgemm version vs the reference (3x3, 1x1, strides 1 and 2, odd sizes,
// size 1), and the gradient rule (dinp assigned, dw/db accumulated).
#include "kernels/conv2d.h"
#include "runtime/error.h"
#include "tests/kernel_check.h"

// "<shape> <name>" for failure messages (one at a time).
static const char *label(const char *shape, const char *name) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s %s", shape, name);
    return buf;
}

typedef struct { double *inp, *w, *b, *out, *g; conv2d_shape s; } conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    conv2d_forward_ref(c->out, c->inp, c->w, c->b, &c->s);
    return dot_d(c->out, c->g, (size_t)c->s.B * c->s.OC * conv2d_out_h(&c->s) * conv2d_out_w(&c->s));
}

// dinp starts as junk (must be overwritten), dw / db as earlier sums acc_w / acc_b
// (must be added to): streams 4-6 draw both, so they start equal.
static void check_shape(conv2d_shape s, int with_bias, int do_fd, uint64_t seed) {
    EXPECT(conv2d_shape_check(&s) == 0, "%s", err_msg());
    const size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K,
                 no = (size_t)s.B * s.OC * conv2d_out_h(&s) * conv2d_out_w(&s);
    conv_ctx c = {randn_d(ni, seed, 0), randn_d(nw, seed, 1), with_bias ? randn_d(s.OC, seed, 2) : NULL,
                  zeros_d(no), randn_d(no, seed, 3), s};
    double *dinp = randn_d(ni, seed, 4), *dw = randn_d(nw, seed, 5), *db = randn_d(s.OC, seed, 6);
    double *junk = randn_d(ni, seed, 4), *acc_w = randn_d(nw, seed, 5), *acc_b = randn_d(s.OC, seed, 6);
    char shape[128];
    snprintf(shape, sizeof shape, "conv2d B=%d C=%d %dx%d OC=%d K=%d S=%d P=%d bias=%d",
             s.B, s.C, s.H, s.W, s.OC, s.K, s.stride, s.pad, with_bias);

    conv_loss(&c);
    conv2d_backward_ref(dinp, dw, with_bias ? db : NULL, c.g, c.inp, c.w, &s);

    size_t nscratch = conv2d_scratch_floats(&s);
    float *scratch = nscratch ? malloc(nscratch * sizeof *scratch) : NULL;
    float *inp = to_f32(c.inp, ni), *w = to_f32(c.w, nw), *b = with_bias ? to_f32(c.b, s.OC) : NULL;
    float *g = to_f32(c.g, no), *out = zeros_f(no);
    float *fdinp = to_f32(junk, ni), *fdw = to_f32(acc_w, nw), *fdb = to_f32(acc_b, s.OC);
    conv2d_forward(out, inp, w, b, &s, scratch);
    EXPECT_CLOSE_ARRAY(out, c.out, no, TOL_F32_REDUCTION, label(shape, "forward"));
    conv2d_backward(fdinp, fdw, with_bias ? fdb : NULL, g, inp, w, &s, scratch);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, ni, TOL_F32_REDUCTION, label(shape, "dinp"));
    EXPECT_CLOSE_ARRAY(fdw, dw, nw, TOL_F32_REDUCTION, label(shape, "dw"));
    EXPECT_CLOSE_ARRAY(fdb, db, s.OC, TOL_F32_REDUCTION, label(shape, "db"));
    // NULL gradients are skipped: dinp alone and dw alone match the full call.
    float *fdinp_alone = to_f32(junk, ni), *fdw_alone = to_f32(acc_w, nw);
    conv2d_backward(fdinp_alone, NULL, NULL, g, inp, w, &s, scratch);
    conv2d_backward(NULL, fdw_alone, NULL, g, inp, w, &s, scratch);
    EXPECT_CLOSE_ARRAY(fdinp_alone, dinp, ni, TOL_F32_REDUCTION, label(shape, "dinp alone"));
    EXPECT_CLOSE_ARRAY(fdw_alone, dw, nw, TOL_F32_REDUCTION, label(shape, "dw alone"));

    if (do_fd) {
        for (size_t i = 0; i < nw; i++) dw[i] -= acc_w[i];
        for (int i = 0; i < s.OC; i++) db[i] -= acc_b[i];
        EXPECT_FD(conv_loss, &c, c.inp, ni, dinp, label(shape, "fd dinp"));
        EXPECT_FD(conv_loss, &c, c.w, nw, dw, label(shape, "fd dw"));
        if (with_bias) EXPECT_FD(conv_loss, &c, c.b, s.OC, db, label(shape, "fd db"));
    }

    free(c.inp); free(c.w); free(c.b); free(c.out); free(c.g);
    free(dinp); free(dw); free(db); free(junk); free(acc_w); free(acc_b);
    free(scratch); free(inp); free(w); free(b); free(g); free(out);
    free(fdinp); free(fdw); free(fdb); free(fdinp_alone); free(fdw_alone);
}

static void test_shape_check(void) {
    conv2d_shape ok = {1, 1, 1, 1, 1, 3, 1, 1}, big_k = {1, 1, 2, 2, 1, 5, 1, 1},
                 no_stride = {1, 1, 4, 4, 1, 3, 0, 1};
    EXPECT_TRUE(conv2d_shape_check(&ok) == 0);
    EXPECT_TRUE(conv2d_out_h(&ok) == 1 && conv2d_out_w(&ok) == 1);
    EXPECT(conv2d_shape_check(&big_k) == -1 && strstr(err_msg(), "kernel 5"), "%s", err_msg());
    EXPECT(conv2d_shape_check(&no_stride) == -1 && strstr(err_msg(), "stride"), "%s", err_msg());
    conv2d_shape down = {1, 1, 7, 8, 1, 3, 2, 1};  // PyTorch: floor((7 + 2 - 3) / 2) + 1
    EXPECT_TRUE(conv2d_out_h(&down) == 4 && conv2d_out_w(&down) == 4);
    // A pointwise convolution whose images each fill a GEMM (1024 columns) needs none.
    EXPECT_TRUE(conv2d_scratch_floats(&(conv2d_shape){2, 8, 32, 32, 4, 1, 1, 0}) == 0);
    EXPECT_TRUE(conv2d_scratch_floats(&(conv2d_shape){2, 8, 5, 5, 4, 1, 1, 0}) > 0);
}

// Every shape twice: 3x3 stride-1 pad-1 ones through the direct AVX-512 kernel
// (where built with AVX-512), then everything through im2col + sgemm.
static void check_all(uint64_t seed_base);

int main(void) {
    test_shape_check();
    for (int direct = 1; direct >= 0; direct--) {
        conv2d_cpu_direct = direct;
        check_all(direct ? 0 : 1000);
    }
    return check_report("test_conv2d");
}

static void check_all(uint64_t seed_base) {
    // {B, C, H, W, OC, K, stride, pad}. Small enough for finite differences.
    static const conv2d_shape fd_shapes[] = {
        {1, 1, 1, 1, 1, 1, 1, 0}, {1, 1, 1, 1, 2, 3, 1, 1}, {2, 3, 5, 4, 2, 3, 1, 1},
        {1, 2, 6, 7, 3, 3, 2, 1}, {2, 2, 4, 5, 3, 1, 1, 0}, {1, 2, 5, 5, 2, 1, 2, 0},
        {1, 1, 7, 5, 2, 5, 2, 2}, {1, 2, 3, 4, 1, 3, 1, 0}, {1, 3, 5, 5, 2, 3, 2, 0},
    };
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++)
        for (int bias = 0; bias < 2; bias++) check_shape(fd_shapes[i], bias, 1, seed_base + 10 + i);
    static const conv2d_shape shapes[] = {
        {2, 16, 17, 15, 24, 3, 1, 1}, {3, 32, 16, 16, 32, 3, 2, 1}, {2, 64, 9, 9, 32, 1, 1, 0},
        {4, 5, 8, 8, 7, 3, 2, 0},     {1, 1, 32, 32, 3, 3, 1, 1},   {5, 3, 1, 1, 4, 3, 1, 1},
        // Images grouped into one GEMM (groups of 1024 output pixels), the last group
        // partial, down to a single image: same 3x3, stride 2, pointwise, 5x5.
        {6, 4, 16, 16, 5, 3, 1, 1},   {18, 3, 16, 16, 4, 3, 2, 1},  {6, 5, 16, 16, 3, 1, 1, 0},
        {5, 5, 16, 16, 3, 1, 1, 0},   {9, 3, 16, 16, 6, 3, 1, 1},   {3, 2, 9, 9, 3, 5, 1, 2},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_shape(shapes[i], 1, 0, seed_base + 30 + i);
    rng r = rng_make(9, 0);
    for (int i = 0; i < 6; i++) {
        int K = (int)rng_below(&r, 2) * 2 + 1, S = 1 + (int)rng_below(&r, 2);
        conv2d_shape s = {1 + (int)rng_below(&r, 3), 1 + (int)rng_below(&r, 20), K + (int)rng_below(&r, 14),
                          K + (int)rng_below(&r, 14), 1 + (int)rng_below(&r, 20), K, S, (int)rng_below(&r, 2) * (K / 2)};
        check_shape(s, i & 1, 0, seed_base + 50 + i);
    }
}
