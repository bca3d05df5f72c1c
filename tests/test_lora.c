// LoRA linear: float64 backward vs finite differences for inp, lora_a and lora_b
// (w and b are frozen), sgemm version vs the reference, and the gradient rule.
#include "kernels/lora.h"
#include "tests/kernel_check.h"

// "<shape> <name>" for failure messages (one at a time).
static const char *label(const char *shape, const char *name) {
    static char buf[160];
    snprintf(buf, sizeof buf, "%s %s", shape, name);
    return buf;
}

typedef struct {
    double *inp, *w, *b, *a, *bm, *out, *h, *g, scale;
    int N, C, OC, R;
} lora_ctx;

static double lora_loss(void *p) {
    lora_ctx *c = p;
    lora_linear_forward_ref(c->out, c->h, c->inp, c->w, c->b, c->a, c->bm, c->scale,
                            c->N, c->C, c->OC, c->R);
    return dot_d(c->out, c->g, (size_t)c->N * c->OC);
}

// dinp starts as junk (must be overwritten), dlora_a / dlora_b as earlier sums
// acc_a / acc_b (must be added to): streams 6-8 draw both, so they start equal.
static void check_shape(int N, int C, int OC, int R, int with_bias, int do_fd, uint64_t seed) {
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, na = (size_t)R * C,
                 nb = (size_t)OC * R, no = (size_t)N * OC, nh = (size_t)N * R;
    lora_ctx c = {randn_d(ni, seed, 0), randn_d(nw, seed, 1), with_bias ? randn_d(OC, seed, 2) : NULL,
                  randn_d(na, seed, 3), randn_d(nb, seed, 4), zeros_d(no), zeros_d(nh),
                  randn_d(no, seed, 5), 0.75, N, C, OC, R};
    double *dinp = randn_d(ni, seed, 6), *da = randn_d(na, seed, 7), *db = randn_d(nb, seed, 8);
    double *junk = randn_d(ni, seed, 6), *acc_a = randn_d(na, seed, 7), *acc_b = randn_d(nb, seed, 8);
    double *dh = zeros_d(nh);
    char shape[96];
    snprintf(shape, sizeof shape, "lora N=%d C=%d OC=%d R=%d bias=%d", N, C, OC, R, with_bias);

    lora_loss(&c);
    lora_linear_backward_ref(dinp, da, db, dh, c.g, c.inp, c.h, c.w, c.a, c.bm, c.scale, N, C, OC, R);

    float *inp = to_f32(c.inp, ni), *w = to_f32(c.w, nw), *b = with_bias ? to_f32(c.b, OC) : NULL;
    float *a = to_f32(c.a, na), *bm = to_f32(c.bm, nb), *g = to_f32(c.g, no);
    float *out = zeros_f(no), *h = zeros_f(nh), *fdh = zeros_f(nh);
    float *fdinp = to_f32(junk, ni), *fda = to_f32(acc_a, na), *fdb = to_f32(acc_b, nb);
    lora_linear_forward(out, h, inp, w, b, a, bm, (float)c.scale, N, C, OC, R);
    EXPECT_CLOSE_ARRAY(out, c.out, no, TOL_F32_REDUCTION, label(shape, "forward"));
    EXPECT_CLOSE_ARRAY(h, c.h, nh, TOL_F32_REDUCTION, label(shape, "h"));
    lora_linear_backward(fdinp, fda, fdb, fdh, g, inp, h, w, a, bm, (float)c.scale, N, C, OC, R);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, ni, TOL_F32_REDUCTION, label(shape, "dinp"));
    EXPECT_CLOSE_ARRAY(fda, da, na, TOL_F32_REDUCTION, label(shape, "dlora_a"));
    EXPECT_CLOSE_ARRAY(fdb, db, nb, TOL_F32_REDUCTION, label(shape, "dlora_b"));
    EXPECT_CLOSE_ARRAY(fdh, dh, nh, TOL_F32_REDUCTION, label(shape, "dh"));
    // NULL gradients are skipped: dlora_b alone needs no scratch and matches.
    float *fdb_alone = to_f32(acc_b, nb);
    lora_linear_backward(NULL, NULL, fdb_alone, NULL, g, inp, h, w, a, bm, (float)c.scale, N, C, OC, R);
    EXPECT_CLOSE_ARRAY(fdb_alone, db, nb, TOL_F32_REDUCTION, label(shape, "dlora_b alone"));

    if (do_fd) {
        for (size_t i = 0; i < na; i++) da[i] -= acc_a[i];
        for (size_t i = 0; i < nb; i++) db[i] -= acc_b[i];
        EXPECT_FD(lora_loss, &c, c.inp, ni, dinp, label(shape, "fd dinp"));
        EXPECT_FD(lora_loss, &c, c.a, na, da, label(shape, "fd dlora_a"));
        EXPECT_FD(lora_loss, &c, c.bm, nb, db, label(shape, "fd dlora_b"));
    }

    free(c.inp); free(c.w); free(c.b); free(c.a); free(c.bm); free(c.out); free(c.h); free(c.g);
    free(dinp); free(da); free(db); free(junk); free(acc_a); free(acc_b); free(dh);
    free(inp); free(w); free(b); free(a); free(bm); free(g); free(out); free(h); free(fdh);
    free(fdinp); free(fda); free(fdb); free(fdb_alone);
}

int main(void) {
    static const int fd_shapes[][4] = {{1, 1, 1, 1}, {3, 5, 4, 2}, {2, 6, 3, 1}, {4, 3, 5, 3}};
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++)
        for (int bias = 0; bias < 2; bias++)
            check_shape(fd_shapes[i][0], fd_shapes[i][1], fd_shapes[i][2], fd_shapes[i][3], bias, 1, 10 + i);
    static const int shapes[][4] = {{1, 64, 64, 16}, {33, 17, 65, 4}, {256, 64, 64, 128}, {129, 320, 7, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], 1, 0, 20 + i);
    rng r = rng_make(8, 0);
    for (int i = 0; i < 4; i++)
        check_shape(1 + rng_below(&r, 97), 1 + rng_below(&r, 97), 1 + rng_below(&r, 97),
                    1 + rng_below(&r, 9), i & 1, 0, 30 + i);
    return check_report("test_lora");
}
