// Residual add: fast vs reference, backward vs finite differences.
#include "kernels/add.h"
#include "tests/kernel_check.h"

typedef struct { double *a, *b, *out, *g; size_t n; } add_ctx;

static double add_loss(void *p) {
    add_ctx *c = p;
    add_forward_ref(c->out, c->a, c->b, c->n);
    return dot_d(c->out, c->g, c->n);
}

static void check_size(size_t n, uint64_t seed) {
    add_ctx c = {randn_d(n, seed, 0), randn_d(n, seed, 1), zeros_d(n), randn_d(n, seed, 2), n};
    double *da = zeros_d(n), *db = zeros_d(n);
    add_backward_ref(da, db, c.g, n);
    EXPECT_FD(add_loss, &c, c.a, n, da, "add da");
    EXPECT_FD(add_loss, &c, c.b, n, db, "add db");

    float *a = to_f32(c.a, n), *b = to_f32(c.b, n), *out = zeros_f(n), *g = to_f32(c.g, n);
    float *fa = zeros_f(n), *fb = zeros_f(n);
    add_forward_ref(c.out, c.a, c.b, n);
    add_forward(out, a, b, n);
    EXPECT_CLOSE_ARRAY(out, c.out, n, TOL_F32_ELEMENTWISE, "add forward");
    add_backward(fa, fb, g, n);
    EXPECT_CLOSE_ARRAY(fa, da, n, TOL_F32_ELEMENTWISE, "add backward da");
    EXPECT_CLOSE_ARRAY(fb, db, n, TOL_F32_ELEMENTWISE, "add backward db");
    free(c.a); free(c.b); free(c.out); free(c.g); free(da); free(db);
    free(a); free(b); free(out); free(g); free(fa); free(fb);
}

int main(void) {
    size_t sizes[] = {1, 7, 64, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_size(sizes[i], 100 + i);
    return check_report("test_add");
}
