// Nearest 2x upsampling: float64 backward vs finite differences, the fast version
// vs the reference, dinp assigned.
#include "kernels/upsample.h"
#include "tests/kernel_check.h"

typedef struct { double *inp, *out, *g; int B, C, H, W; } up_ctx;

static double up_loss(void *p) {
    up_ctx *c = p;
    upsample_nearest2x_forward_ref(c->out, c->inp, c->B, c->C, c->H, c->W);
    return dot_d(c->out, c->g, (size_t)c->B * c->C * 4 * c->H * c->W);
}

static void check_shape(int B, int C, int H, int W, uint64_t seed) {
    const size_t ni = (size_t)B * C * H * W, no = 4 * ni;
    up_ctx c = {randn_d(ni, seed, 0), zeros_d(no), randn_d(no, seed, 1), B, C, H, W};
    double *dinp = randn_d(ni, seed, 2);  // junk: must be overwritten
    up_loss(&c);
    upsample_nearest2x_backward_ref(dinp, c.g, B, C, H, W);
    if (ni <= 256) EXPECT_FD(up_loss, &c, c.inp, ni, dinp, "upsample fd dinp");

    float *inp = to_f32(c.inp, ni), *out = zeros_f(no), *g = to_f32(c.g, no);
    float *fdinp = to_f32(c.g, ni);  // junk
    up_loss(&c);  // the finite differences left out at x - eps
    upsample_nearest2x_forward(out, inp, B, C, H, W);
    EXPECT(max_rel_err(out, c.out, no) == 0, "upsample forward %dx%dx%dx%d is a copy", B, C, H, W);
    upsample_nearest2x_backward(fdinp, g, B, C, H, W);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, ni, TOL_F32_ELEMENTWISE, "upsample dinp");
    free(c.inp); free(c.out); free(c.g); free(dinp); free(inp); free(out); free(g); free(fdinp);
}

int main(void) {
    static const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 5, 4}, {1, 2, 1, 7}, {3, 1, 6, 1},
                                    {2, 64, 16, 16}, {4, 5, 33, 9}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 10 + i);
    rng r = rng_make(10, 0);
    for (int i = 0; i < 4; i++)
        check_shape(1 + rng_below(&r, 4), 1 + rng_below(&r, 9), 1 + rng_below(&r, 20),
                    1 + rng_below(&r, 20), 20 + i);
    return check_report("test_upsample");
}
