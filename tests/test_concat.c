// Channel concatenation: float64 backward vs finite differences for both inputs,
// the memcpy version vs the reference, da/db assigned, NULL skipped.
#include "kernels/concat.h"
#include "tests/kernel_check.h"

typedef struct { double *a, *b, *out, *g; int B, C1, C2, HW; } cat_ctx;

static double cat_loss(void *p) {
    cat_ctx *c = p;
    concat_channels_forward_ref(c->out, c->a, c->b, c->B, c->C1, c->C2, c->HW);
    return dot_d(c->out, c->g, (size_t)c->B * (c->C1 + c->C2) * c->HW);
}

static void check_shape(int B, int C1, int C2, int HW, uint64_t seed) {
    const size_t na = (size_t)B * C1 * HW, nb = (size_t)B * C2 * HW, no = na + nb;
    cat_ctx c = {randn_d(na, seed, 0), randn_d(nb, seed, 1), zeros_d(no), randn_d(no, seed, 2), B, C1, C2, HW};
    double *da = randn_d(na, seed, 3), *db = randn_d(nb, seed, 4);  // junk: must be overwritten
    cat_loss(&c);
    concat_channels_backward_ref(da, db, c.g, B, C1, C2, HW);
    if (no <= 256) {
        EXPECT_FD(cat_loss, &c, c.a, na, da, "concat fd da");
        EXPECT_FD(cat_loss, &c, c.b, nb, db, "concat fd db");
    }

    float *a = to_f32(c.a, na), *b = to_f32(c.b, nb), *out = zeros_f(no), *g = to_f32(c.g, no);
    float *fda = to_f32(c.g, na), *fdb = to_f32(c.g, nb);  // junk
    cat_loss(&c);  // the finite differences left out at x - eps
    concat_channels_forward(out, a, b, B, C1, C2, HW);
    EXPECT(max_rel_err(out, c.out, no) == 0, "concat forward B=%d C1=%d C2=%d HW=%d", B, C1, C2, HW);
    concat_channels_backward(fda, NULL, g, B, C1, C2, HW);
    concat_channels_backward(NULL, fdb, g, B, C1, C2, HW);
    EXPECT(max_rel_err(fda, da, na) == 0, "concat da B=%d C1=%d C2=%d HW=%d", B, C1, C2, HW);
    EXPECT(max_rel_err(fdb, db, nb) == 0, "concat db B=%d C1=%d C2=%d HW=%d", B, C1, C2, HW);
    free(c.a); free(c.b); free(c.out); free(c.g); free(da); free(db);
    free(a); free(b); free(out); free(g); free(fda); free(fdb);
}

int main(void) {
    static const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 1, 5}, {3, 1, 4, 7}, {2, 2, 3, 12},
                                    {4, 64, 32, 256}, {3, 17, 5, 33}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 10 + i);
    rng r = rng_make(11, 0);
    for (int i = 0; i < 4; i++)
        check_shape(1 + rng_below(&r, 4), 1 + rng_below(&r, 9), 1 + rng_below(&r, 9),
                    1 + rng_below(&r, 40), 20 + i);
    return check_report("test_concat");
}
