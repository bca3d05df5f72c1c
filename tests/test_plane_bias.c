// Per-plane bias: reference backward vs finite differences, float vs reference.
#include "kernels/plane_bias.h"
#include "tests/kernel_check.h"

typedef struct { double *x0, *x, *t, *g; int B, C, HW; } pb_ctx;

static double pb_loss(void *p) {
    pb_ctx *c = p;
    size_t n = (size_t)c->B * c->C * c->HW;
    for (size_t i = 0; i < n; i++) c->x[i] = c->x0[i];
    plane_bias_forward_ref(c->x, c->t, c->B, c->C, c->HW);
    return dot_d(c->x, c->g, n);
}

static void check_shape(int B, int C, int HW, uint64_t seed) {
    size_t n = (size_t)B * C * HW, nt = (size_t)B * C;
    pb_ctx c = {randn_d(n, seed, 0), zeros_d(n), randn_d(nt, seed, 1), randn_d(n, seed, 2), B, C, HW};
    double *dt = zeros_d(nt);
    plane_bias_backward_ref(dt, c.g, B, C, HW);
    EXPECT_FD(pb_loss, &c, c.t, nt, dt, "plane_bias dt");

    pb_loss(&c);  // c.x = reference forward
    float *x = to_f32(c.x0, n), *t = to_f32(c.t, nt), *g = to_f32(c.g, n), *dtf = zeros_f(nt);
    plane_bias_forward(x, t, B, C, HW);
    EXPECT_CLOSE_ARRAY(x, c.x, n, TOL_F32_ELEMENTWISE, "plane_bias forward");
    for (size_t i = 0; i < nt; i++) dtf[i] = 1e30f;  // assigned, not accumulated
    plane_bias_backward(dtf, g, B, C, HW);
    EXPECT_CLOSE_ARRAY(dtf, dt, nt, TOL_F32_REDUCTION, "plane_bias backward");
    free(c.x0); free(c.x); free(c.t); free(c.g); free(dt);
    free(x); free(t); free(g); free(dtf);
}

int main(void) {
    check_shape(1, 1, 1, 10);
    check_shape(2, 3, 7, 11);
    check_shape(3, 8, 64, 12);
    return check_report("test_plane_bias");
}
