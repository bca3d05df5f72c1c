// gpu suite: linear (cuBLAS) and lora_linear (fused bf16 tensor-core GEMM + cuBLAS)
// on the GPU against the CPU float32 versions (kernels/cpu/linear.c, lora.c, checked
// against float64 by test_linear / test_lora). Skipped (77) without a CUDA device.
//
// Inputs are fresh Philox draws with the same seeds on both sides; GPU outputs are
// poisoned with NaN before each call; parameter gradients start from the same
// non-zero values on both sides and their increments are compared (an overwrite
// fails). SELMA_GPU_QUICK=1 keeps the shapes of up to 1024 tokens (compute-sanitizer). Criterion: relative L2 error ||gpu - cpu|| / ||cpu|| (NaN fails):
//   cuBLAS TF32 (linear, h, dh, dlora_a, dlora_b, unfused forward)  <= 1e-3
//   bf16 tensor-core GEMM (fused lora forward, lora dinp, R = 0)    <= 1e-2
//   float32 reductions (linear db)                                  <= 1e-4
// and 4x these for outputs of under 256 elements (no averaging over elements).
#include "kernels/linear.h"
#include "kernels/lora.h"
#include "tests/gpu_check.h"

#define TOL_TF32 1e-3
#define TOL_BF16 1e-2
#define TOL_F32 1e-4

// Downloads d and compares with cpu; returns the error for the summary line.
static double cmp(const char *shape, const char *what, const float *d, const float *cpu, const float *base,
                  size_t n, double tol) {
    float *g = gpu_download(d, n);
    double e = rel_l2_base(g, cpu, base, n);
    if (n < 256) tol *= 4;  // a handful of elements: no averaging, one cancellation shows
    EXPECT(e <= tol, "%s %s: rel L2 %.3g > %.1g", shape, what, e, tol);
    free(g);
    return e;
}

static void check_linear(int N, int C, int OC, int with_bias, uint64_t seed) {
    char shape[96];
    snprintf(shape, sizeof shape, "linear N=%d C=%d OC=%d bias=%d", N, C, OC, with_bias);
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    gpu_buf x = gpu_buf_randn(ni, seed, 0), w = gpu_buf_randn(nw, seed, 1), b = gpu_buf_randn(OC, seed, 2);
    // Earlier sums as large as the increments (~sqrt(N)): an overwrite fails clearly.
    gpu_buf g = gpu_buf_randn(no, seed, 3), w0 = gpu_buf_randn_std(nw, seed, 4, sqrtf((float)N)),
            b0 = gpu_buf_randn_std(OC, seed, 5, sqrtf((float)N));
    float *out_c = malloc(no * sizeof(float)), *dinp_c = malloc(ni * sizeof(float));
    float *dw_c = host_dup(w0.h, nw), *db_c = host_dup(b0.h, OC);
    linear_forward(out_c, x.h, w.h, with_bias ? b.h : NULL, N, C, OC);
    linear_backward(dinp_c, dw_c, db_c, g.h, x.h, w.h, N, C, OC);

    float *out_d = gpu_nan(no), *dinp_d = gpu_nan(ni), *dw_d = gpu_dup(w0.d, nw), *db_d = gpu_dup(b0.d, OC);
    linear_forward_cuda(out_d, x.d, w.d, with_bias ? b.d : NULL, N, C, OC);
    linear_backward_cuda(dinp_d, dw_d, db_d, g.d, x.d, w.d, N, C, OC);
    double e0 = cmp(shape, "out", out_d, out_c, NULL, no, TOL_TF32);
    double e1 = cmp(shape, "dinp", dinp_d, dinp_c, NULL, ni, TOL_TF32);
    double e2 = cmp(shape, "dw", dw_d, dw_c, w0.h, nw, TOL_TF32);
    double e3 = cmp(shape, "db", db_d, db_c, b0.h, OC, TOL_F32);
    printf("%-44s out %.2e dinp %.2e dw %.2e db %.2e\n", shape, e0, e1, e2, e3);

    // NULL gradients are skipped: dw alone accumulates once more.
    device_copy(DEVICE_CUDA, dw_d, DEVICE_CUDA, w0.d, nw * sizeof(float));
    linear_backward_cuda(NULL, dw_d, NULL, g.d, x.d, w.d, N, C, OC);
    cmp(shape, "dw alone", dw_d, dw_c, w0.h, nw, TOL_TF32);

    device_free(DEVICE_CUDA, out_d);
    device_free(DEVICE_CUDA, dinp_d);
    device_free(DEVICE_CUDA, dw_d);
    device_free(DEVICE_CUDA, db_d);
    free(out_c);
    free(dinp_c);
    free(dw_c);
    free(db_c);
    gpu_buf_free(&x);
    gpu_buf_free(&w);
    gpu_buf_free(&b);
    gpu_buf_free(&g);
    gpu_buf_free(&w0);
    gpu_buf_free(&b0);
}

static void check_lora(int N, int C, int OC, int R, int with_bias, uint64_t seed) {
    char shape[96];
    snprintf(shape, sizeof shape, "lora N=%d C=%d OC=%d R=%d bias=%d", N, C, OC, R, with_bias);
    // LoRA path about as large as the base path: |h B^T| ~ sqrt(R C), |x W^T| ~ sqrt(C).
    const float scale = 1.0f / sqrtf((float)R);
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    const size_t na = (size_t)R * C, nb = (size_t)OC * R, nh = (size_t)N * R;
    gpu_buf x = gpu_buf_randn(ni, seed, 0), w = gpu_buf_randn(nw, seed, 1), b = gpu_buf_randn(OC, seed, 2);
    gpu_buf A = gpu_buf_randn(na, seed, 3), Bm = gpu_buf_randn(nb, seed, 4), g = gpu_buf_randn(no, seed, 5);
    gpu_buf h_in = gpu_buf_randn(nh, seed, 6);  // the backward's h: an input of its own
    gpu_buf a0 = gpu_buf_randn_std(na, seed, 7, sqrtf((float)N));
    gpu_buf b0 = gpu_buf_randn_std(nb, seed, 8, sqrtf((float)N));
    const float *bias_h = with_bias ? b.h : NULL, *bias_d = with_bias ? b.d : NULL;

    // CPU float32.
    float *out_c = malloc(no * sizeof(float)), *h_c = malloc(nh * sizeof(float));
    float *dinp_c = malloc(ni * sizeof(float)), *dh_c = malloc(nh * sizeof(float));
    float *da_c = host_dup(a0.h, na), *dbm_c = host_dup(b0.h, nb);
    lora_linear_forward(out_c, h_c, x.h, w.h, bias_h, A.h, Bm.h, scale, N, C, OC, R);
    lora_linear_backward(dinp_c, da_c, dbm_c, dh_c, g.h, x.h, h_in.h, w.h, A.h, Bm.h, scale, N, C, OC, R);

    // Fused forward.
    float *out_d = gpu_nan(no), *h_d = gpu_nan(nh);
    lora_linear_forward_cuda(out_d, h_d, x.d, w.d, bias_d, A.d, Bm.d, scale, N, C, OC, R);
    double e_out = cmp(shape, "fused out", out_d, out_c, NULL, no, TOL_BF16);
    double e_h = cmp(shape, "fused h", h_d, h_c, NULL, nh, TOL_TF32);
    // Unfused baseline.
    gpu_poison(out_d, no);
    gpu_poison(h_d, nh);
    lora_linear_forward_cuda_unfused(out_d, h_d, x.d, w.d, bias_d, A.d, Bm.d, scale, N, C, OC, R);
    double e_unf = cmp(shape, "unfused out", out_d, out_c, NULL, no, TOL_TF32);
    cmp(shape, "unfused h", h_d, h_c, NULL, nh, TOL_TF32);
    // R = 0 through the fused kernel: the base layer alone.
    {
        float *base_c = malloc(no * sizeof(float));
        linear_forward(base_c, x.h, w.h, bias_h, N, C, OC);
        gpu_poison(out_d, no);
        lora_linear_forward_cuda(out_d, NULL, x.d, w.d, bias_d, NULL, NULL, scale, N, C, OC, 0);
        cmp(shape, "R=0 out", out_d, base_c, NULL, no, TOL_BF16);
        free(base_c);
    }

    // Backward, all gradients.
    float *dinp_d = gpu_nan(ni), *dh_d = gpu_nan(nh), *da_d = gpu_dup(a0.d, na), *dbm_d = gpu_dup(b0.d, nb);
    lora_linear_backward_cuda(dinp_d, da_d, dbm_d, dh_d, g.d, x.d, h_in.d, w.d, A.d, Bm.d, scale, N, C, OC, R);
    double e_dinp = cmp(shape, "dinp", dinp_d, dinp_c, NULL, ni, TOL_BF16);
    double e_dh = cmp(shape, "dh", dh_d, dh_c, NULL, nh, TOL_TF32);
    double e_da = cmp(shape, "dlora_a", da_d, da_c, a0.h, na, TOL_TF32);
    double e_db = cmp(shape, "dlora_b", dbm_d, dbm_c, b0.h, nb, TOL_TF32);
    printf("%-44s out %.2e (unfused %.2e) h %.2e dinp %.2e dh %.2e dA %.2e dB %.2e\n", shape, e_out, e_unf,
           e_h, e_dinp, e_dh, e_da, e_db);

    // NULL gradients: dlora_b alone, then dinp alone (dh still needed).
    device_copy(DEVICE_CUDA, dbm_d, DEVICE_CUDA, b0.d, nb * sizeof(float));
    lora_linear_backward_cuda(NULL, NULL, dbm_d, NULL, g.d, x.d, h_in.d, w.d, A.d, Bm.d, scale, N, C, OC, R);
    cmp(shape, "dlora_b alone", dbm_d, dbm_c, b0.h, nb, TOL_TF32);
    gpu_poison(dinp_d, ni);
    gpu_poison(dh_d, nh);
    lora_linear_backward_cuda(dinp_d, NULL, NULL, dh_d, g.d, x.d, h_in.d, w.d, A.d, Bm.d, scale, N, C, OC, R);
    cmp(shape, "dinp alone", dinp_d, dinp_c, NULL, ni, TOL_BF16);

    device_free(DEVICE_CUDA, out_d);
    device_free(DEVICE_CUDA, h_d);
    device_free(DEVICE_CUDA, dinp_d);
    device_free(DEVICE_CUDA, dh_d);
    device_free(DEVICE_CUDA, da_d);
    device_free(DEVICE_CUDA, dbm_d);
    free(out_c);
    free(h_c);
    free(dinp_c);
    free(dh_c);
    free(da_c);
    free(dbm_c);
    gpu_buf_free(&x);
    gpu_buf_free(&w);
    gpu_buf_free(&b);
    gpu_buf_free(&A);
    gpu_buf_free(&Bm);
    gpu_buf_free(&g);
    gpu_buf_free(&h_in);
    gpu_buf_free(&a0);
    gpu_buf_free(&b0);
}

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    printf("%s\n", cuda_device_describe());
    // SELMA_GPU_QUICK=1 (bench/gpu/check.sh's compute-sanitizer pass): the shapes with
    // up to 1024 tokens only.
    const int quick = getenv("SELMA_GPU_QUICK") != NULL;
    if (!quick) {
        check_linear(4096, 320, 1280, 1, 1);
        check_linear(4096, 1280, 320, 0, 2);
    }
    check_linear(77, 768, 320, 1, 3);
    check_linear(33, 45, 29, 1, 4);
    check_linear(1, 1, 1, 1, 5);

    const struct { int N, C, OC, R; } lora[] = {
        {4096, 320, 320, 4},    {4096, 640, 640, 16},  {4096, 1280, 1280, 64}, {4096, 320, 1280, 16},
        {4096, 1280, 320, 16},  {1024, 640, 640, 128}, {77, 768, 320, 16},     // split-K path (few rows)
        {130, 129, 131, 7},     {33, 45, 29, 3},       {1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof lora / sizeof lora[0]; i++)
        if (!quick || lora[i].N <= 1024)
            check_lora(lora[i].N, lora[i].C, lora[i].OC, lora[i].R, (int)(i % 3 != 1), 100 + (uint64_t)i);
    return check_report("test_lora_gpu");
}
