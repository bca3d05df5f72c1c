// Attention: float64 backward vs finite differences (self, cross, causal), fast
// float32 vs reference on random shapes (D in {1, 8, 40}, M in {1, 7, 77}, odd N,
// several query blocks), NULL gradients, assigned gradients, the scale argument.
#include <math.h>

#include "kernels/attention.h"
#include "tests/kernel_check.h"

typedef struct {
    double *q, *k, *v, *out, *lse, *g;
    int B, N, M, H, D, causal;
    double scale;
} at_ctx;

static double at_loss(void *p) {
    at_ctx *c = p;
    attention_forward_ref(c->out, c->lse, c->q, c->k, c->v, c->B, c->N, c->M, c->H, c->D,
                          c->scale, c->causal);
    return dot_d(c->out, c->g, (size_t)c->B * c->N * c->H * c->D);
}

static void check_fd(int B, int N, int M, int H, int D, int causal, double scale, uint64_t seed) {
    size_t nq = (size_t)B * N * H * D, nk = (size_t)B * M * H * D;
    at_ctx c = {randn_d(nq, seed, 0), randn_d(nk, seed, 1), randn_d(nk, seed, 2), zeros_d(nq),
                zeros_d((size_t)B * H * N), randn_d(nq, seed, 3), B, N, M, H, D, causal, scale};
    double *dq = zeros_d(nq), *dk = zeros_d(nk), *dv = zeros_d(nk);
    at_loss(&c);
    attention_backward_ref(dq, dk, dv, c.g, c.q, c.k, c.v, c.lse, B, N, M, H, D, scale, causal);
    char what[96];
    snprintf(what, sizeof what, "attention fd B=%d N=%d M=%d H=%d D=%d causal=%d", B, N, M, H,
             D, causal);
    EXPECT_FD(at_loss, &c, c.q, nq, dq, what);
    EXPECT_FD(at_loss, &c, c.k, nk, dk, what);
    EXPECT_FD(at_loss, &c, c.v, nk, dv, what);
    free(c.q); free(c.k); free(c.v); free(c.out); free(c.lse); free(c.g);
    free(dq); free(dk); free(dv);
}

static float *nan_f(size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

// qscale widens the scores so the softmax is peaked (the stable-exp path matters).
static void check_fast(int B, int N, int M, int H, int D, int causal, float scale,
                       double qscale, uint64_t seed) {
    size_t nq = (size_t)B * N * H * D, nk = (size_t)B * M * H * D, nl = (size_t)B * H * N;
    double *q = randn_d(nq, seed, 0), *k = randn_d(nk, seed, 1), *v = randn_d(nk, seed, 2);
    double *dout = randn_d(nq, seed, 3);
    for (size_t i = 0; i < nq; i++) q[i] *= qscale;
    double *out = zeros_d(nq), *lse = zeros_d(nl), *dq = zeros_d(nq), *dk = zeros_d(nk),
           *dv = zeros_d(nk);
    attention_forward_ref(out, lse, q, k, v, B, N, M, H, D, scale, causal);
    attention_backward_ref(dq, dk, dv, dout, q, k, v, lse, B, N, M, H, D, scale, causal);

    float *fq = to_f32(q, nq), *fk = to_f32(k, nk), *fv = to_f32(v, nk), *fdout = to_f32(dout, nq);
    float *scratch = nan_f(attention_scratch_floats(N, M));
    // Outputs start as NaN: anything not assigned shows up.
    float *fout = nan_f(nq), *flse = nan_f(nl), *fdq = nan_f(nq), *fdk = nan_f(nk), *fdv = nan_f(nk);
    attention_forward(fout, flse, scratch, fq, fk, fv, B, N, M, H, D, scale, causal);
    attention_backward(fdq, fdk, fdv, scratch, fdout, fq, fk, fv, fout, flse, B, N, M, H, D,
                       scale, causal);
    char what[112];
    snprintf(what, sizeof what, "attention B=%d N=%d M=%d H=%d D=%d causal=%d scale=%g", B, N,
             M, H, D, causal, scale);
    EXPECT_CLOSE_ARRAY(fout, out, nq, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(flse, lse, nl, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdq, dq, nq, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdk, dk, nk, TOL_F32_REDUCTION, what);
    EXPECT_CLOSE_ARRAY(fdv, dv, nk, TOL_F32_REDUCTION, what);

    // Each gradient alone equals the one computed with all three; forward without lse
    // gives the same output.
    float *gq = nan_f(nq), *gk = nan_f(nk), *gv = nan_f(nk), *o2 = nan_f(nq);
    attention_backward(gq, NULL, NULL, scratch, fdout, fq, fk, fv, fout, flse, B, N, M, H, D, scale, causal);
    attention_backward(NULL, gk, NULL, scratch, fdout, fq, fk, fv, fout, flse, B, N, M, H, D, scale, causal);
    attention_backward(NULL, NULL, gv, scratch, fdout, fq, fk, fv, fout, flse, B, N, M, H, D, scale, causal);
    attention_forward(o2, NULL, scratch, fq, fk, fv, B, N, M, H, D, scale, causal);
    EXPECT(memcmp(gq, fdq, nq * sizeof *gq) == 0, "%s: dq alone", what);
    EXPECT(memcmp(gk, fdk, nk * sizeof *gk) == 0, "%s: dk alone", what);
    EXPECT(memcmp(gv, fdv, nk * sizeof *gv) == 0, "%s: dv alone", what);
    EXPECT(memcmp(o2, fout, nq * sizeof *o2) == 0, "%s: forward without lse", what);

    free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
    free(fq); free(fk); free(fv); free(fdout); free(scratch); free(fout); free(flse);
    free(fdq); free(fdk); free(fdv); free(gq); free(gk); free(gv); free(o2);
}

// Query 0 of a causal attention sees only key 0: out = v_0 and lse = score_00.
// Non-causal with identical keys: uniform weights, out = mean of v, lse = s + log M.
static void check_known(void) {
    double q[2 * 2] = {0.5, -1, 2, 1}, k[2 * 2] = {1, 2, -1, 0.5}, v[2 * 2] = {3, 4, 5, 6};
    double out[4], lse[2];
    attention_forward_ref(out, lse, q, k, v, 1, 2, 2, 1, 2, 0, 1);
    EXPECT_NEAR(out[0], 3, 1e-15, 0);
    EXPECT_NEAR(out[1], 4, 1e-15, 0);
    EXPECT_NEAR(lse[0], (0.5 * 1 - 1 * 2) / sqrt(2.0), 1e-15, 0);
    double kk[3 * 2] = {1, 2, 1, 2, 1, 2}, vv[3 * 2] = {1, 0, 2, 0, 6, 3};
    attention_forward_ref(out, lse, q, kk, vv, 1, 1, 3, 1, 2, 0.25, 0);
    EXPECT_NEAR(out[0], 3, 1e-15, 0);
    EXPECT_NEAR(out[1], 1, 1e-15, 0);
    EXPECT_NEAR(lse[0], 0.25 * (0.5 - 2) + log(3.0), 1e-15, 0);
}

int main(void) {
    check_known();
    check_fd(2, 3, 3, 2, 2, 0, 0, 1);
    check_fd(1, 4, 4, 2, 3, 1, 0, 2);   // causal
    check_fd(2, 3, 5, 1, 2, 0, 0, 3);   // cross
    check_fd(1, 3, 1, 2, 2, 0, 0, 4);   // one key: out = v, dq = dk = 0
    check_fd(1, 2, 3, 1, 1, 0, 0.7, 5); // D = 1, caller scale
    check_fd(1, 1, 1, 1, 1, 1, 0, 6);

    const int Ds[] = {1, 8, 40}, Ms[] = {1, 7, 77};
    uint64_t seed = 100;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) check_fast(2, 5 + 8 * b, Ms[b], 2, Ds[a], 0, 0, 1.0, seed++);
    for (int a = 0; a < 3; a++) check_fast(1, 77, 77, 3, Ds[a], 1, 0, 1.0, seed++);
    check_fast(1, 1, 1, 1, 1, 1, 0, 1.0, seed++);
    check_fast(1, 1, 77, 4, 8, 0, 0, 1.0, seed++);
    check_fast(1, 301, 301, 2, 8, 1, 0, 1.0, seed++);  // three query blocks, causal
    check_fast(2, 257, 77, 2, 40, 0, 0, 1.0, seed++);  // cross, last block of one row
    check_fast(1, 129, 129, 1, 8, 0, 0, 4.0, seed++);  // peaked softmax
    check_fast(1, 33, 16, 2, 8, 0, 0.05f, 1.0, seed++);
    rng r = rng_make(7, 0);
    for (int t = 0; t < 6; t++) {
        int N = 1 + (int)rng_below(&r, 150), causal = t % 2;
        int M = causal ? N : 1 + (int)rng_below(&r, 100);
        check_fast(1 + (int)rng_below(&r, 2), N, M, 1 + (int)rng_below(&r, 3),
                   1 + (int)rng_below(&r, 48), causal, 0, 1.0, seed++);
    }
    return check_report("test_attention");
}
