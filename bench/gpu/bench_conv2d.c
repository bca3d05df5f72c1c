// conv2d on the GPU: the bf16 implicit GEMM of kernels/cuda/conv2d.cu (forward,
// backward data, backward weight) next to cuDNN (float32 tensors, TF32 tensor cores,
// when the build has cuDNN) on Stable Diffusion 1.5's UNet convolutions at B = 2.
//
// Timing: CUDA events around each call on selma_cuda_stream(), 3 warm-up calls, the
// median of REPS timed calls (default 30); before each timed call a 2 x L2-sized
// buffer is written (cudaMemsetAsync, outside the events) so that no call finds its
// inputs in L2. FLOPs: 2 B OC Ho Wo C K K per direction (the useful products; the
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
#include <string.h>

#include "kernels/conv2d.h"
#include "kernels/rng_fill.h"
#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"

#define PEAK_TFLOPS 989.0
#define MAX_REPS 1000

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

typedef void (*fn_t)(ctx *c);

static void fwd_ig(ctx *c) { conv2d_forward_igemm(c->out, c->x, c->w, c->b, c->s); }
static void dgrad_ig(ctx *c) { conv2d_backward_data_igemm(c->dinp, c->g, c->w, c->s); }
static void wgrad_ig(ctx *c) { conv2d_backward_weight_igemm(c->dw, c->db, c->g, c->x, c->s); }
static void fwd_dnn(ctx *c) { conv2d_forward_cudnn(c->out2, c->x, c->w, c->b, c->s); }
static void dgrad_dnn(ctx *c) { conv2d_backward_data_cudnn(c->dinp2, c->g, c->w, c->s); }
static void wgrad_dnn(ctx *c) { conv2d_backward_weight_cudnn(c->dw2, c->db2, c->g, c->x, c->s); }

static void *g_flush;
static size_t g_flush_bytes;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median milliseconds of reps calls.
static double time_ms(fn_t fn, ctx *c, int reps) {
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) fn(c);
    float ms[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        CUDA_CHECK(cudaMemsetAsync(g_flush, r & 0xff, g_flush_bytes, st));
        CUDA_CHECK(cudaEventRecord(e0, st));
        fn(c);
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    qsort(ms, (size_t)reps, sizeof *ms, cmp_float);
    return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

static float *dalloc(size_t n) {
    float *p = device_alloc(DEVICE_CUDA, n * sizeof(float));
    CHECK(p);
    return p;
}

// Relative L2 of a against b (device arrays, b may be NULL) and the count of
// non-finite a.
static double rel_l2_dev(const float *a, const float *b, size_t n, size_t *nonfinite) {
    float *x = malloc(n * sizeof *x), *y = b ? malloc(n * sizeof *y) : NULL;
    CHECK(x);
    device_sync();
    device_copy(DEVICE_CPU, x, DEVICE_CUDA, a, n * sizeof *x);
    if (y) device_copy(DEVICE_CPU, y, DEVICE_CUDA, b, n * sizeof *y);
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) (*nonfinite)++;
        if (y) {
            double d = (double)x[i] - y[i];
            num += d * d;
            den += (double)y[i] * y[i];
        }
    }
    free(x);
    free(y);
    return den > 0 ? sqrt(num / den) : 0;
}

int main(int argc, char **argv) {
    if (cuda_device_count() == 0) {
        printf("bench_conv2d: no CUDA device (%s); nothing to time\n", cuda_device_describe());
        return 0;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    const int dnn = conv2d_cuda_have_cudnn();
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    g_flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : 64 << 20);
    g_flush = device_alloc(DEVICE_CUDA, g_flush_bytes);
    CHECK(g_flush);
    printf("# %s, L2 %d MB, median of %d after 3 warm-ups, L2 flushed; TFLOP/s and %% of %.0f "
           "(H100 dense bf16); cuDNN %s\n",
           cuda_device_describe(), l2 >> 20, reps, PEAK_TFLOPS, dnn ? "float32/TF32" : "not built");
    printf("# %-20s | %-35s | %-35s | %-35s | %s\n", "shape (B=2)", "fwd: igemm ms TFLOP/s peak, cudnn ms ratio",
           "dgrad: same", "wgrad: same", "check");
    int failed = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const conv2d_shape *s = &shapes[si].s;
        const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
        const size_t ni = (size_t)s->B * s->C * s->H * s->W, nw = (size_t)s->OC * s->C * s->K * s->K,
                     no = (size_t)s->B * s->OC * Ho * Wo;
        ctx c = {s,          dalloc(ni), dalloc(nw), dalloc(s->OC), dalloc(no), dalloc(no), dalloc(ni),
                 dalloc(nw), dalloc(s->OC), dalloc(no), dalloc(ni), dalloc(nw), dalloc(s->OC)};
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
        e[0] = rel_l2_dev(c.out, dnn ? c.out2 : NULL, no, &bad[0]);
        e[1] = rel_l2_dev(c.dinp, dnn ? c.dinp2 : NULL, ni, &bad[1]);
        e[2] = rel_l2_dev(c.dw, dnn ? c.dw2 : NULL, nw, &bad[2]);
        e[3] = rel_l2_dev(c.db, dnn ? c.db2 : NULL, s->OC, &bad[3]);
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= e[i] <= 1e-2 && !bad[i];
        failed += !ok;

        const double fl = 2.0 * s->B * s->OC * (double)Ho * Wo * s->C * s->K * s->K;
        fn_t ig[3] = {fwd_ig, dgrad_ig, wgrad_ig}, dn[3] = {fwd_dnn, dgrad_dnn, wgrad_dnn};
        char col[3][64];
        for (int d = 0; d < 3; d++) {
            double t = time_ms(ig[d], &c, reps), r = fl / t * 1e-9;
            double td = dnn ? time_ms(dn[d], &c, reps) : NAN;
            snprintf(col[d], sizeof col[d], "%7.3f %6.1f %4.1f%%, %7.3f %5.2fx", t, r, 100 * r / PEAK_TFLOPS,
                     td, t / td);
        }
        printf("%-22s | %-35s | %-35s | %-35s | %s (%.1e %.1e %.1e %.1e)\n", shapes[si].name, col[0], col[1],
               col[2], ok ? "ok" : "FAILED", e[0], e[1], e[2], e[3]);
        fflush(stdout);
        float *all[] = {c.x, c.w, c.b, c.g, c.out, c.dinp, c.dw, c.db, c.out2, c.dinp2, c.dw2, c.db2};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) device_free(DEVICE_CUDA, all[i]);
    }
    device_free(DEVICE_CUDA, g_flush);
    selma_cuda_context_free();
    if (failed) printf("bench_conv2d: %d shape(s) FAILED validation\n", failed);
    return failed ? 1 : 0;
}
