// conv2d on the GPU: the bf16 implicit GEMM of kernels/cuda/conv2d.cu (forward,
// backward data, backward weight) next to cuDNN (float32 tensors, TF32 tensor cores,
// when the build has cuDNN) on Stable Diffusion 1.5's UNet convolutions at B = 2.
//
// Timing: gpu_bench.h (CUDA events, 3 warm-ups, the median of REPS calls, default 30,
// L2 flushed before each). FLOPs: 2 B OC Ho Wo C K K per direction (the useful products; the
// implicit-GEMM backward data of a stride-2 convolution multiplies 4x as many, zeros
// included). Peak: H100 SXM dense bf16, 989 TFLOP/s. wgrad includes the bias grad.
//
// Before timing, each shape's implicit-GEMM results are checked against cuDNN's
// (relative L2 <= 1e-2) or, without cuDNN, for non-finite values.
//
// One line per shape: per direction, igemm ms, TFLOP/s, % of peak, cuDNN ms and the
// ratio igemm/cuDNN time. Usage: bench_conv2d [reps]. Exits 0 with a message without
// a GPU.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/conv2d.h"
#include "kernels/rng_fill.h"
#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "gpu_bench.h"

typedef struct {
    const char *name;
    conv2d_shape s;
} shape;

static const shape shapes[] = {
    {"sd15 320 64x64", {2, 320, 64, 64, 320, 3, 1, 1}},
    {"sd15 640 32x32", {2, 640, 32, 32, 640, 3, 1, 1}},
    {"sd15 1280 16x16", {2, 1280, 16, 16, 1280, 3, 1, 1}},
    {"sd15 1280 8x8", {2, 1280, 8, 8, 1280, 3, 1, 1}},
    {"sd15 320 64->32 s2", {2, 320, 64, 64, 320, 3, 2, 1}},
    {"sd15 640->1280 16x16", {2, 640, 16, 16, 1280, 3, 1, 1}},
    {"sd15 1x1 960->640 32", {2, 960, 32, 32, 640, 1, 1, 0}},
};

typedef struct {
    const conv2d_shape *s;
    float *x, *w, *b, *g, *out, *dinp, *dw, *db, *out2, *dinp2, *dw2, *db2;
} ctx;

typedef void (*fn_t)(void *c);

static void fwd_ig(void *p) {
    const ctx *c = p;
    conv2d_forward_igemm(c->out, c->x, c->w, c->b, c->s);
}
static void dgrad_ig(void *p) {
    const ctx *c = p;
    conv2d_backward_data_igemm(c->dinp, c->g, c->w, c->s);
}
static void wgrad_ig(void *p) {
    const ctx *c = p;
    conv2d_backward_weight_igemm(c->dw, c->db, c->g, c->x, c->s);
}
static void fwd_dnn(void *p) {
    const ctx *c = p;
    conv2d_forward_cudnn(c->out2, c->x, c->w, c->b, c->s);
}
static void dgrad_dnn(void *p) {
    const ctx *c = p;
    conv2d_backward_data_cudnn(c->dinp2, c->g, c->w, c->s);
}
static void wgrad_dnn(void *p) {
    const ctx *c = p;
    conv2d_backward_weight_cudnn(c->dw2, c->db2, c->g, c->x, c->s);
}

int main(int argc, char **argv) {
    const int dnn = conv2d_cuda_have_cudnn();
    const int reps =
        gpu_bench_begin("bench_conv2d", argc, argv, dnn ? "cuDNN float32/TF32" : "cuDNN not built");
    if (!reps) return 0;
    printf("# %-20s | %-35s | %-35s | %-35s | %s\n", "shape (B=2)", "fwd: igemm ms TFLOP/s peak, cudnn ms ratio",
           "dgrad: same", "wgrad: same", "check");
    int failed = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const conv2d_shape *s = &shapes[si].s;
        const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
        const size_t ni = (size_t)s->B * s->C * s->H * s->W, nw = (size_t)s->OC * s->C * s->K * s->K,
                     no = (size_t)s->B * s->OC * Ho * Wo;
        float *(*da)(size_t) = gpu_bench_alloc;
        ctx c = {s,      da(ni), da(nw),    da(s->OC), da(no), da(no),    da(ni),
                 da(nw), da(s->OC), da(no), da(ni),    da(nw), da(s->OC)};
        rng_fill_normal_cuda(c.x, ni, 21 + si, 0, 0, 0, 1);
        rng_fill_normal_cuda(c.w, nw, 21 + si, 1, 0, 0, 0.05f);
        rng_fill_normal_cuda(c.b, s->OC, 21 + si, 2, 0, 0, 1);
        rng_fill_normal_cuda(c.g, no, 21 + si, 3, 0, 0, 1);
        CUDA_CHECK(cudaMemsetAsync(c.dw, 0, nw * sizeof(float), (cudaStream_t)selma_cuda_stream()));
        CUDA_CHECK(cudaMemsetAsync(c.db, 0, s->OC * sizeof(float), (cudaStream_t)selma_cuda_stream()));
        CUDA_CHECK(cudaMemsetAsync(c.dw2, 0, nw * sizeof(float), (cudaStream_t)selma_cuda_stream()));
        CUDA_CHECK(cudaMemsetAsync(c.db2, 0, s->OC * sizeof(float), (cudaStream_t)selma_cuda_stream()));

        // Validate once (dw, db from zero), then time.
        fwd_ig(&c);
        dgrad_ig(&c);
        wgrad_ig(&c);
        size_t bad[4] = {0};
        double e[4] = {0};
        if (dnn) {
            fwd_dnn(&c);
            dgrad_dnn(&c);
            wgrad_dnn(&c);
        }
        e[0] = gpu_bench_rel_l2(c.out, dnn ? c.out2 : NULL, no, &bad[0]);
        e[1] = gpu_bench_rel_l2(c.dinp, dnn ? c.dinp2 : NULL, ni, &bad[1]);
        e[2] = gpu_bench_rel_l2(c.dw, dnn ? c.dw2 : NULL, nw, &bad[2]);
        e[3] = gpu_bench_rel_l2(c.db, dnn ? c.db2 : NULL, s->OC, &bad[3]);
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= e[i] <= 1e-2 && !bad[i];
        failed += !ok;

        const double fl = 2.0 * s->B * s->OC * (double)Ho * Wo * s->C * s->K * s->K;
        fn_t ig[3] = {fwd_ig, dgrad_ig, wgrad_ig}, dn[3] = {fwd_dnn, dgrad_dnn, wgrad_dnn};
        char col[3][64];
        for (int d = 0; d < 3; d++) {
            double t = gpu_bench_time_ms(ig[d], &c, reps), r = fl / t * 1e-9;
            double td = dnn ? gpu_bench_time_ms(dn[d], &c, reps) : NAN;
            snprintf(col[d], sizeof col[d], "%7.3f %6.1f %4.1f%%, %7.3f %5.2fx", t, r,
                     100 * r / GPU_BENCH_PEAK_TFLOPS, td, t / td);
        }
        printf("%-22s | %-35s | %-35s | %-35s | %s (%.1e %.1e %.1e %.1e)\n", shapes[si].name, col[0], col[1],
               col[2], ok ? "ok" : "FAILED", e[0], e[1], e[2], e[3]);
        fflush(stdout);
        float *all[] = {c.x, c.w, c.b, c.g, c.out, c.dinp, c.dw, c.db, c.out2, c.dinp2, c.dw2, c.db2};
        gpu_bench_free(all, sizeof all / sizeof *all);
    }
    return gpu_bench_end("bench_conv2d", failed);
}
