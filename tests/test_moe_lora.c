// Mixture of LoRA experts op (kernels/moe_lora.h): float64 backward vs finite
// differences for inp, the router weight and bias (w, b and the experts are frozen),
// sgemm version vs the reference on several shapes (one expert, one token, rank-1
// experts, unequal ranks), the gradient rule, and zero routers = the uniform merge.
#include "kernels/moe_lora.h"
#include "tests/kernel_check.h"

static const char *label(const char *shape, const char *name) {
    static char buf[192];
    snprintf(buf, sizeof buf, "%s %s", shape, name);
    return buf;
}

typedef struct {
    double *inp, *w, *b, *a, *bb, *wr, *br, *out, *h, *g, *go, scale[8], temp;
    int roff[9], N, C, OC, E;
} moe_ctx;

static double moe_loss(void *p) {
    moe_ctx *c = p;
    moe_lora_forward_ref(c->out, c->h, c->g, c->inp, c->w, c->b, c->a, c->bb, c->wr, c->br,
                         c->scale, c->roff, c->temp, c->N, c->C, c->OC, c->E);
    return dot_d(c->out, c->go, (size_t)c->N * c->OC);
}

// ranks[E]; router_scale 0 gives zero routers (uniform gates).
static void check_shape(int N, int C, int OC, int E, const int *ranks, double temp,
                        double router_scale, int with_bias, int do_fd, uint64_t seed) {
    moe_ctx c = {.temp = temp, .N = N, .C = C, .OC = OC, .E = E};
    for (int e = 0; e < E; e++) {
        c.roff[e + 1] = c.roff[e] + ranks[e];
        c.scale[e] = 0.5 + 0.25 * e;
    }
    int R = c.roff[E];
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, na = (size_t)R * C, nbb = (size_t)OC * R,
           nr = (size_t)E * C, no = (size_t)N * OC;
    c.inp = randn_d(ni, seed, 0), c.w = randn_d(nw, seed, 1);
    c.b = with_bias ? randn_d(OC, seed, 2) : NULL;
    c.a = randn_d(na, seed, 3), c.bb = randn_d(nbb, seed, 4);
    c.wr = randn_d(nr, seed, 5), c.br = randn_d(E, seed, 6);
    for (size_t i = 0; i < nr; i++) c.wr[i] *= router_scale;
    for (int e = 0; e < E; e++) c.br[e] *= router_scale;
    c.out = zeros_d(no), c.h = zeros_d((size_t)N * R), c.g = zeros_d((size_t)N * E);
    c.go = randn_d(no, seed, 7);
    // dinp starts as junk (must be overwritten), dwr / dbr as earlier sums (added to).
    double *dinp = randn_d(ni, seed, 8), *dwr = randn_d(nr, seed, 9), *dbr = randn_d(E, seed, 10);
    double *junk = randn_d(ni, seed, 8), *acc_w = randn_d(nr, seed, 9), *acc_b = randn_d(E, seed, 10);
    char shape[128];
    snprintf(shape, sizeof shape, "moe N=%d C=%d OC=%d E=%d R=%d T=%g bias=%d", N, C, OC, E, R,
             temp, with_bias);

    moe_loss(&c);
    moe_lora_backward_ref(dinp, dwr, dbr, c.go, c.inp, c.h, c.g, c.w, c.a, c.bb, c.wr, c.scale,
                          c.roff, temp, N, C, OC, E);
    if (router_scale == 0) {  // every gate 1/E: out = w x + b + sum_e s_e/E B_e A_e x
        double *ref = zeros_d(no), worst = 0;
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                double s = c.b ? c.b[o] : 0;
                for (int k = 0; k < C; k++) s += c.w[(size_t)o * C + k] * c.inp[(size_t)n * C + k];
                for (int e = 0; e < E; e++)
                    for (int r = c.roff[e]; r < c.roff[e + 1]; r++)
                        for (int k = 0; k < C; k++)
                            s += c.scale[e] / E * c.bb[(size_t)o * R + r] * c.a[(size_t)r * C + k] *
                                 c.inp[(size_t)n * C + k];
                ref[(size_t)n * OC + o] = s;
                double d = fabs(s - c.out[(size_t)n * OC + o]);
                worst = d > worst ? d : worst;
            }
        EXPECT(worst < 1e-12, "%s: zero routers differ from the uniform merge by %.3g", shape, worst);
        free(ref);
    }

    float *inp = to_f32(c.inp, ni), *w = to_f32(c.w, nw), *b = with_bias ? to_f32(c.b, OC) : NULL;
    float *a = to_f32(c.a, na), *bb = to_f32(c.bb, nbb), *wr = to_f32(c.wr, nr);
    float *br = to_f32(c.br, E), *go = to_f32(c.go, no), scale[8];
    for (int e = 0; e < E; e++) scale[e] = (float)c.scale[e];
    float *out = zeros_f(no), *h = zeros_f((size_t)N * R), *g = zeros_f((size_t)N * E);
    float *ws = zeros_f(moe_lora_scratch_floats(N, R, E));
    float *fdinp = to_f32(junk, ni), *fdwr = to_f32(acc_w, nr), *fdbr = to_f32(acc_b, E);
    moe_lora_forward(out, h, g, ws, inp, w, b, a, bb, wr, br, scale, c.roff, (float)temp, N, C,
                     OC, E);
    EXPECT_CLOSE_ARRAY(out, c.out, no, TOL_F32_REDUCTION, label(shape, "forward"));
    EXPECT_CLOSE_ARRAY(h, c.h, (size_t)N * R, TOL_F32_REDUCTION, label(shape, "h"));
    EXPECT_CLOSE_ARRAY(g, c.g, (size_t)N * E, TOL_F32_REDUCTION, label(shape, "gates"));
    moe_lora_backward(fdinp, fdwr, fdbr, ws, go, inp, h, g, w, a, bb, wr, scale, c.roff,
                      (float)temp, N, C, OC, E);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, ni, TOL_F32_REDUCTION, label(shape, "dinp"));
    EXPECT_CLOSE_ARRAY(fdwr, dwr, nr, TOL_F32_REDUCTION, label(shape, "drouter_w"));
    EXPECT_CLOSE_ARRAY(fdbr, dbr, E, TOL_F32_REDUCTION, label(shape, "drouter_b"));
    // NULL gradients are skipped: the router gradients alone match.
    float *fdwr2 = to_f32(acc_w, nr);
    moe_lora_backward(NULL, fdwr2, NULL, ws, go, inp, h, g, w, a, bb, wr, scale, c.roff,
                      (float)temp, N, C, OC, E);
    EXPECT_CLOSE_ARRAY(fdwr2, dwr, nr, TOL_F32_REDUCTION, label(shape, "drouter_w alone"));

    if (do_fd) {
        for (size_t i = 0; i < nr; i++) dwr[i] -= acc_w[i];
        for (int e = 0; e < E; e++) dbr[e] -= acc_b[e];
        EXPECT_FD(moe_loss, &c, c.inp, ni, dinp, label(shape, "fd dinp"));
        EXPECT_FD(moe_loss, &c, c.wr, nr, dwr, label(shape, "fd drouter_w"));
        EXPECT_FD(moe_loss, &c, c.br, (size_t)E, dbr, label(shape, "fd drouter_b"));
    }
    free(c.inp), free(c.w), free(c.b), free(c.a), free(c.bb), free(c.wr), free(c.br);
    free(c.out), free(c.h), free(c.g), free(c.go), free(dinp), free(dwr), free(dbr);
    free(junk), free(acc_w), free(acc_b), free(inp), free(w), free(b), free(a), free(bb);
    free(wr), free(br), free(go), free(out), free(h), free(g), free(ws), free(fdinp);
    free(fdwr), free(fdbr), free(fdwr2);
}

int main(void) {
    static const int r1[] = {1}, r221[] = {2, 2, 1}, r3[] = {3, 1, 2, 4}, r8[] = {8, 8, 8, 8, 8};
    check_shape(1, 1, 1, 1, r1, 1.0, 1.0, 0, 1, 1);   // one expert: gate 1, no router gradient
    check_shape(3, 5, 4, 3, r221, 1.0, 1.0, 1, 1, 2);
    check_shape(4, 3, 6, 4, r3, 0.7, 1.0, 0, 1, 3);   // temperature, unequal ranks
    check_shape(2, 6, 5, 3, r221, 2.0, 1.0, 1, 1, 4);
    check_shape(3, 5, 4, 3, r221, 1.0, 0.0, 1, 1, 5); // zero routers: the uniform merge
    check_shape(1, 64, 64, 5, r8, 1.0, 0.3, 1, 0, 6);
    check_shape(257, 40, 40, 5, r8, 1.0, 0.3, 1, 0, 7);
    check_shape(33, 17, 65, 4, r3, 0.5, 1.0, 0, 0, 8);
    rng r = rng_make(9, 0);
    for (int i = 0; i < 4; i++) {
        int E = 1 + (int)rng_below(&r, 5), ranks[8];
        for (int e = 0; e < E; e++) ranks[e] = 1 + (int)rng_below(&r, 9);
        check_shape(1 + (int)rng_below(&r, 97), 1 + (int)rng_below(&r, 97),
                    1 + (int)rng_below(&r, 97), E, ranks, 1.0, 1.0, i & 1, 0, 30 + i);
    }
    return check_report("test_moe_lora");
}
