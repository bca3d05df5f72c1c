// MSE loss: float64 backward vs finite differences, the float version vs the
// reference (loss and dpred), dpred assigned and scaled by dloss.
#include "kernels/mse.h"
#include "tests/kernel_check.h"

typedef struct { double *pred, *target, dloss; size_t n; } mse_ctx;

static double mse_loss(void *p) {
    mse_ctx *c = p;
    return c->dloss * mse_loss_forward_ref(c->pred, c->target, c->n);
}

static void check_size(size_t n, double dloss, uint64_t seed) {
    mse_ctx c = {randn_d(n, seed, 0), randn_d(n, seed, 1), dloss, n};
    double *dpred = randn_d(n, seed, 2);  // junk: must be overwritten
    mse_loss_backward_ref(dpred, c.pred, c.target, dloss, n);
    if (n <= 512) EXPECT_FD(mse_loss, &c, c.pred, n, dpred, "mse fd dpred");

    float *pred = to_f32(c.pred, n), *target = to_f32(c.target, n), *fdpred = to_f32(c.target, n);
    double ref = mse_loss_forward_ref(c.pred, c.target, n);
    // The float inputs equal the double ones and the sum is in double: near exact.
    EXPECT_NEAR(mse_loss_forward(pred, target, n), ref, 0, 1e-12);
    mse_loss_backward(fdpred, pred, target, (float)dloss, n);
    EXPECT_CLOSE_ARRAY(fdpred, dpred, n, TOL_F32_ELEMENTWISE, "mse dpred");
    free(c.pred); free(c.target); free(dpred); free(pred); free(target); free(fdpred);
}

static void test_known_value(void) {
    const float p[3] = {1, 2, 3}, t[3] = {0, 2, 5};
    EXPECT_NEAR(mse_loss_forward(p, t, 3), 5.0 / 3.0, 0, 1e-15);
    float d[3];
    mse_loss_backward(d, p, t, 1.0f, 3);
    EXPECT_NEAR(d[0], 2.0 / 3.0, 1e-7, 0);
    EXPECT_NEAR(d[1], 0.0, 0, 0);
    EXPECT_NEAR(d[2], -4.0 / 3.0, 1e-7, 0);
}

int main(void) {
    test_known_value();
    static const size_t sizes[] = {1, 7, 8, 9, 255, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_size(sizes[i], i % 2 ? 0.5 : 1.0, 10 + i);
    rng r = rng_make(12, 0);
    for (int i = 0; i < 4; i++) check_size(1 + rng_below(&r, 5000), 1.0, 20 + i);
    return check_report("test_mse");
}
