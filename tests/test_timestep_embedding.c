// Timestep embedding: written-out values for small cases, the general formula in
// another form (pow instead of exp/log), fast float32 vs reference on random
// dims (odd, 1, 2) and timesteps up to 1000.
#include "kernels/timestep_embedding.h"
#include "tests/kernel_check.h"

static void check_written_out(void) {
    // dim 8, SD convention (flip, shift 0, 10000): freqs 1, 0.1, 0.01, 0.001.
    double t = 3, out[8];
    const double want8[8] = {cos(3), cos(0.3), cos(0.03), cos(0.003),
                             sin(3), sin(0.3), sin(0.03), sin(0.003)};
    timestep_embedding_forward_ref(out, &t, 1, 8, 1, 0, 10000);
    for (int i = 0; i < 8; i++) EXPECT_NEAR(out[i], want8[i], 1e-15, 1e-14);
    // dim 5, diffusers defaults (no flip, shift 1): half 2, freqs 1, 1e-4, zero pad.
    t = 250;
    const double want5[5] = {sin(250), sin(0.025), cos(250), cos(0.025), 0};
    timestep_embedding_forward_ref(out, &t, 1, 5, 0, 1, 10000);
    for (int i = 0; i < 5; i++) EXPECT_NEAR(out[i], want5[i], 1e-15, 1e-14);
    // dim 2 with shift 1: the 0/0 exponent is taken as 0, freq 1.
    timestep_embedding_forward_ref(out, &t, 1, 2, 0, 1, 10000);
    EXPECT_NEAR(out[0], sin(250), 1e-15, 0);
    EXPECT_NEAR(out[1], cos(250), 1e-15, 0);
    float tf = 250, of[2];
    timestep_embedding_forward(of, &tf, 1, 2, 0, 1, 10000);
    EXPECT_NEAR(of[0], sin(250), 1e-7, 0);
    // dim 1: only the pad column.
    out[0] = 7;
    timestep_embedding_forward_ref(out, &t, 1, 1, 1, 0, 10000);
    EXPECT_NEAR(out[0], 0, 0, 0);
    // t = 0: sin terms 0, cos terms 1.
    t = 0;
    timestep_embedding_forward_ref(out, &t, 1, 8, 1, 0, 10000);
    for (int i = 0; i < 8; i++) EXPECT_NEAR(out[i], i < 4 ? 1 : 0, 0, 0);
}

static void check_dim(int B, int dim, int flip, double shift, double max_period, uint64_t seed) {
    size_t n = (size_t)B * dim;
    double *t = zeros_d(B), *out = zeros_d(n);
    float *ft = zeros_f(B), *fout = zeros_f(n);
    rng r = rng_make(seed, 0);
    for (int b = 0; b < B; b++) ft[b] = (float)(int)rng_below(&r, 1000) + (b % 2 ? 0.5f : 0.0f);
    for (int b = 0; b < B; b++) t[b] = ft[b];
    timestep_embedding_forward_ref(out, t, B, dim, flip, shift, max_period);
    timestep_embedding_forward(fout, ft, B, dim, flip, (float)shift, (float)max_period);
    char what[96];
    snprintf(what, sizeof what, "timestep_embedding B=%d dim=%d flip=%d shift=%g", B, dim, flip,
             shift);
    EXPECT_CLOSE_ARRAY(fout, out, n, TOL_F32_ELEMENTWISE, what);
    int half = dim / 2;
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            double e = i ? i / (half - shift) : 0;
            double a = t[b] * pow(max_period, -e);
            double s = out[(size_t)b * dim + (flip ? half : 0) + i];
            double c = out[(size_t)b * dim + (flip ? 0 : half) + i];
            worst = fmax(worst, fmax(fabs(s - sin(a)), fabs(c - cos(a))));
        }
    EXPECT(worst <= 1e-12, "%s: formula off by %.3g", what, worst);
    if (dim % 2)
        for (int b = 0; b < B; b++) EXPECT(fout[(size_t)b * dim + dim - 1] == 0, "%s: pad", what);
    free(t); free(out); free(ft); free(fout);
}

int main(void) {
    check_written_out();
    check_dim(4, 320, 1, 0, 10000, 1);   // SD 1.x
    check_dim(3, 64, 0, 1, 10000, 2);    // diffusers defaults
    check_dim(2, 33, 1, 0, 10000, 3);
    check_dim(1, 1, 0, 1, 10000, 4);
    check_dim(5, 2, 1, 0, 10000, 5);
    check_dim(2, 7, 0, 1, 100, 6);
    rng r = rng_make(7, 0);
    for (int k = 0; k < 8; k++)
        check_dim(1 + (int)rng_below(&r, 6), 1 + (int)rng_below(&r, 400), k % 2, k % 3 == 0, 10000,
                  10 + k);
    return check_report("test_timestep_embedding");
}
