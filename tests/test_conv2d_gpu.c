// gpu suite: conv2d on the GPU (kernels/cuda/conv2d.cu) against the CPU float32
// version (kernels/cpu/conv2d.c, itself checked against the float64 reference by
// test_conv2d), for both implementations behind conv2d_forward_cuda & co: the bf16
// implicit GEMM (split-K by the heuristic, forced off and forced on; by-4 and scalar
// loaders) and cuDNN when the build has it. Skipped (77) without a CUDA device.
//
// Inputs are fresh Philox draws, the same seeds on both sides (rng_fill_normal and
// rng_fill_normal_cuda); every GPU output is poisoned with NaN before each call; dw
// and db start from the same non-zero values on both sides and the comparison is of
// the increments (accumulate semantics: an overwrite fails). SELMA_GPU_QUICK=1 leaves
// out the SD 1.5 shapes (for compute-sanitizer). Criterion: relative L2
// error ||gpu - cpu|| / ||cpu|| (NaN fails):
//   bf16 implicit GEMM (operands rounded to bf16, float accumulation)  <= 1e-2
//   cuDNN, float32 tensors with TF32 tensor cores (default math)        <= 2e-3
//   bias gradient (a float32 reduction on both sides)                   <= 1e-4
// and 4x these for outputs of under 256 elements (no averaging over elements).
#include "kernels/conv2d.h"
#include "tests/gpu_check.h"

#define TOL_BF16 1e-2
#define TOL_CUDNN 2e-3
#define TOL_BIAS 1e-4

// A handful of elements: no averaging over elements, one cancellation shows.
static double tol_n(double tol, size_t n) { return n < 256 ? 4 * tol : tol; }

static const char *impl_name(int impl, int splitk, int vec) {
    static char s[64];
    if (impl == CONV2D_CUDA_CUDNN) return "cudnn";
    snprintf(s, sizeof s, "igemm split=%d vec=%d", splitk, vec);
    return s;
}

static void check_shape(conv2d_shape s, int with_bias, uint64_t seed) {
    CHECK(conv2d_shape_check(&s) == 0);
    const int Ho = conv2d_out_h(&s), Wo = conv2d_out_w(&s);
    const size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K,
                 no = (size_t)s.B * s.OC * Ho * Wo;
    char shape[160];
    snprintf(shape, sizeof shape, "B=%d C=%d %dx%d OC=%d K=%d S=%d P=%d bias=%d", s.B, s.C, s.H, s.W, s.OC,
             s.K, s.stride, s.pad, with_bias);
    gpu_buf x = gpu_buf_randn(ni, seed, 0), w = gpu_buf_randn(nw, seed, 1), b = gpu_buf_randn(s.OC, seed, 2);
    gpu_buf g = gpu_buf_randn(no, seed, 3);
    // Earlier sums, as large as the increments (~sqrt(B Ho Wo)): an overwrite fails
    // far above the tolerance.
    const float pre = sqrtf((float)s.B * Ho * Wo);
    gpu_buf w0 = gpu_buf_randn_std(nw, seed, 5, pre), b0 = gpu_buf_randn_std(s.OC, seed, 6, pre);
    const float *bias_h = with_bias ? b.h : NULL, *bias_d = with_bias ? b.d : NULL;

    // CPU float32.
    size_t nscr = conv2d_scratch_floats(&s);
    float *scr = nscr ? malloc(nscr * sizeof(float)) : NULL;
    float *out_c = malloc(no * sizeof(float)), *dinp_c = malloc(ni * sizeof(float));
    float *dw_c = malloc(nw * sizeof(float)), *db_c = malloc(s.OC * sizeof(float));
    memcpy(dw_c, w0.h, nw * sizeof(float));
    memcpy(db_c, b0.h, s.OC * sizeof(float));
    conv2d_forward(out_c, x.h, w.h, bias_h, &s, scr);
    conv2d_backward(dinp_c, dw_c, db_c, g.h, x.h, w.h, &s, scr);

    float *out_d = device_alloc(DEVICE_CUDA, no * sizeof(float));
    float *dinp_d = device_alloc(DEVICE_CUDA, ni * sizeof(float));
    float *dw_d = device_alloc(DEVICE_CUDA, nw * sizeof(float));
    float *db_d = device_alloc(DEVICE_CUDA, s.OC * sizeof(float));

    // The implicit GEMM with split-K by the heuristic, forced off and forced to 3, with
    // the by-4 loaders where the shape allows them and with the scalar ones; cuDNN.
    struct { int impl, splitk, vec; } variants[] = {
        {CONV2D_CUDA_IGEMM, 0, 1}, {CONV2D_CUDA_IGEMM, 1, 1}, {CONV2D_CUDA_IGEMM, 3, 1},
        {CONV2D_CUDA_IGEMM, 1, 0}, {CONV2D_CUDA_IGEMM, 3, 0}, {CONV2D_CUDA_CUDNN, 0, 1}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        if (variants[v].impl == CONV2D_CUDA_CUDNN && !conv2d_cuda_have_cudnn()) continue;
        conv2d_cuda_impl = variants[v].impl;
        conv2d_cuda_splitk = variants[v].splitk;
        conv2d_cuda_vec = variants[v].vec;
        const double tol = variants[v].impl == CONV2D_CUDA_CUDNN ? TOL_CUDNN : TOL_BF16;
        const char *name = impl_name(variants[v].impl, variants[v].splitk, variants[v].vec);

        gpu_poison(out_d, no);
        conv2d_forward_cuda(out_d, x.d, w.d, bias_d, &s);
        float *o = gpu_download(out_d, no);
        double e_out = rel_l2_base(o, out_c, NULL, no);
        EXPECT(e_out <= tol_n(tol, no), "%s %s forward: rel L2 %.3g > %.1g", shape, name, e_out, tol_n(tol, no));

        gpu_poison(dinp_d, ni);
        conv2d_backward_data_cuda(dinp_d, g.d, w.d, &s);
        float *di = gpu_download(dinp_d, ni);
        double e_dinp = rel_l2_base(di, dinp_c, NULL, ni);
        EXPECT(e_dinp <= tol_n(tol, ni), "%s %s dinp: rel L2 %.3g > %.1g", shape, name, e_dinp, tol_n(tol, ni));

        device_copy(DEVICE_CUDA, dw_d, DEVICE_CUDA, w0.d, nw * sizeof(float));
        device_copy(DEVICE_CUDA, db_d, DEVICE_CUDA, b0.d, s.OC * sizeof(float));
        conv2d_backward_weight_cuda(dw_d, db_d, g.d, x.d, &s);
        float *dwh = gpu_download(dw_d, nw), *dbh = gpu_download(db_d, s.OC);
        double e_dw = rel_l2_base(dwh, dw_c, w0.h, nw), e_db = rel_l2_base(dbh, db_c, b0.h, s.OC);
        EXPECT(e_dw <= tol_n(tol, nw), "%s %s dw: rel L2 %.3g > %.1g", shape, name, e_dw, tol_n(tol, nw));
        EXPECT(e_db <= tol_n(TOL_BIAS, s.OC), "%s %s db: rel L2 %.3g > %.1g", shape, name, e_db, tol_n(TOL_BIAS, s.OC));
        printf("%-48s %-20s out %.2e dinp %.2e dw %.2e db %.2e\n", shape, name, e_out, e_dinp, e_dw, e_db);
        free(o);
        free(di);
        free(dwh);
        free(dbh);
    }

    // The combined call with NULLs skipped: dw alone accumulates once, dinp alone is
    // assigned (bf16 implementation, heuristic split).
    conv2d_cuda_impl = CONV2D_CUDA_IGEMM;
    conv2d_cuda_splitk = 0;
    conv2d_cuda_vec = 1;
    device_copy(DEVICE_CUDA, dw_d, DEVICE_CUDA, w0.d, nw * sizeof(float));
    gpu_poison(dinp_d, ni);
    conv2d_backward_cuda(NULL, dw_d, NULL, g.d, x.d, w.d, &s);
    conv2d_backward_cuda(dinp_d, NULL, NULL, g.d, x.d, w.d, &s);
    float *dwh = gpu_download(dw_d, nw), *di = gpu_download(dinp_d, ni);
    double e_dw = rel_l2_base(dwh, dw_c, w0.h, nw), e_di = rel_l2_base(di, dinp_c, NULL, ni);
    EXPECT(e_dw <= tol_n(TOL_BF16, nw), "%s backward(NULL, dw, NULL): rel L2 %.3g", shape, e_dw);
    EXPECT(e_di <= tol_n(TOL_BF16, ni), "%s backward(dinp, NULL, NULL): rel L2 %.3g", shape, e_di);
    free(dwh);
    free(di);

    device_free(DEVICE_CUDA, out_d);
    device_free(DEVICE_CUDA, dinp_d);
    device_free(DEVICE_CUDA, dw_d);
    device_free(DEVICE_CUDA, db_d);
    free(scr);
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

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    printf("%s; cuDNN %s\n", cuda_device_describe(), conv2d_cuda_have_cudnn() ? "built" : "not built");
    const conv2d_shape shapes[] = {
        // shapes-world UNet: C 32-128 at 32x32 / 16x16 / 8x8
        {2, 32, 32, 32, 32, 3, 1, 1},
        {2, 64, 16, 16, 64, 3, 1, 1},
        {2, 128, 8, 8, 128, 3, 1, 1},
        {2, 32, 32, 32, 64, 3, 2, 1},    // downsample, stride 2
        {2, 64, 16, 16, 128, 1, 1, 0},   // 1x1 shortcut
        {2, 128, 8, 8, 64, 3, 1, 1},
        {2, 3, 32, 32, 32, 3, 1, 1},     // RGB stem: K = 27, one partial K tile
        // odd sizes, partial tiles everywhere, size 1, the generic (run-time K, S) path
        {3, 5, 7, 9, 11, 3, 1, 1},
        {1, 3, 17, 13, 7, 3, 2, 1},
        {2, 33, 15, 15, 65, 1, 1, 0},
        {2, 130, 9, 9, 129, 3, 1, 1},
        {1, 1, 1, 1, 1, 1, 1, 0},
        {1, 4, 6, 5, 3, 5, 1, 2},        // K = 5: generic path
        {1, 7, 9, 9, 5, 1, 2, 0},        // 1x1 stride 2: generic path
        {2, 16, 10, 10, 24, 3, 2, 0},    // stride 2 without padding
        {2, 8, 8, 12, 20, 3, 2, 1},      // by-4 loaders with Wo = 6: only dgrad's (W % 4 == 0)
        {1, 12, 16, 16, 132, 3, 1, 1},   // OC just over one tile, by-4 loaders
        // SD 1.5 at B = 1 (a few: the CPU side costs ~20 GFLOP each)
        {1, 4, 64, 64, 320, 3, 1, 1},    // conv_in
        {1, 320, 64, 64, 320, 3, 1, 1},
        {1, 320, 64, 64, 320, 3, 2, 1},  // downsample
        {1, 640, 32, 32, 640, 3, 1, 1},
        {1, 1280, 16, 16, 1280, 3, 1, 1},
        {1, 1280, 8, 8, 1280, 3, 1, 1},
        {1, 960, 32, 32, 640, 1, 1, 0},  // resnet shortcut after the skip concat
    };
    // SELMA_GPU_QUICK=1 (bench/gpu/check.sh's compute-sanitizer pass) keeps the shapes
    // before the SD 1.5 ones.
    const int quick = getenv("SELMA_GPU_QUICK") != NULL;
    const int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n; i++) {
        if (quick && (long)shapes[i].C * shapes[i].H * shapes[i].W >= 65536) continue;
        check_shape(shapes[i], i % 3 != 2, 1000 + (uint64_t)i);
    }
    conv2d_cuda_impl = CONV2D_CUDA_IGEMM;
    conv2d_cuda_splitk = 0;
    return check_report("test_conv2d_gpu");
}
