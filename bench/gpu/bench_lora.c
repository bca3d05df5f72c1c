// lora_linear on the GPU (kernels/cuda/lora.cu) at rank 16, T = 8192 tokens,
// in = out = 320 / 640 / 1280 (SD 1.5's attention projections):
//   fused     lora_linear_forward_cuda: h = inp A^T (cuBLAS) + ONE bf16 GEMM over
//             K = C + R, out = [inp | scale h] [W | B]^T + b
//   base      the same bf16 kernel with R = 0 (the base layer alone)
//   cublas    linear_forward_cuda: the base layer alone, cuBLAS TF32
//   unfused   lora_linear_forward_cuda_unfused: three cuBLAS TF32 GEMMs
//   bwd       lora_linear_backward_cuda, all gradients (dinp fused, the rest cuBLAS)
// and the ratio fused / base (target <= 1.3: the rank-R path costs little on top of
// the base GEMM) and fused / cublas.
//
// Timing: CUDA events around each call on selma_cuda_stream(), 3 warm-up calls, the
// median of REPS timed calls (default 30), a 2 x L2-sized buffer written before each
// (outside the events). TFLOP/s count 2 T (C OC + C R + R OC) for the forward; peak
// 989 TFLOP/s (H100 dense bf16). The fused output is checked against the unfused one
// (relative L2 <= 1e-2) before timing.
//
// Usage: bench_lora [reps]. Exits 0 with a message without a GPU.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/linear.h"
#include "kernels/lora.h"
#include "kernels/rng_fill.h"
#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"

#define PEAK_TFLOPS 989.0
#define MAX_REPS 1000

typedef struct {
    int T, C, OC, R;
    float scale;
    float *x, *w, *b, *A, *B, *out, *h, *out2, *h2, *g, *dinp, *dA, *dB, *dh;
} ctx;

typedef void (*fn_t)(ctx *c);

static void run_fused(ctx *c) {
    lora_linear_forward_cuda(c->out, c->h, c->x, c->w, c->b, c->A, c->B, c->scale, c->T, c->C, c->OC, c->R);
}
static void run_base(ctx *c) {
    lora_linear_forward_cuda(c->out, NULL, c->x, c->w, c->b, NULL, NULL, c->scale, c->T, c->C, c->OC, 0);
}
static void run_cublas(ctx *c) { linear_forward_cuda(c->out2, c->x, c->w, c->b, c->T, c->C, c->OC); }
static void run_unfused(ctx *c) {
    lora_linear_forward_cuda_unfused(c->out2, c->h2, c->x, c->w, c->b, c->A, c->B, c->scale, c->T, c->C, c->OC,
                                     c->R);
}
static void run_bwd(ctx *c) {
    lora_linear_backward_cuda(c->dinp, c->dA, c->dB, c->dh, c->g, c->x, c->h, c->w, c->A, c->B, c->scale, c->T,
                              c->C, c->OC, c->R);
}

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

static double rel_l2_dev(const float *a, const float *b, size_t n, size_t *nonfinite) {
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    CHECK(x && y);
    device_sync();
    device_copy(DEVICE_CPU, x, DEVICE_CUDA, a, n * sizeof *x);
    device_copy(DEVICE_CPU, y, DEVICE_CUDA, b, n * sizeof *y);
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) (*nonfinite)++;
        double d = (double)x[i] - y[i];
        num += d * d;
        den += (double)y[i] * y[i];
    }
    free(x);
    free(y);
    return den > 0 ? sqrt(num / den) : 0;
}

int main(int argc, char **argv) {
    if (cuda_device_count() == 0) {
        printf("bench_lora: no CUDA device (%s); nothing to time\n", cuda_device_describe());
        return 0;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    g_flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : 64 << 20);
    g_flush = device_alloc(DEVICE_CUDA, g_flush_bytes);
    CHECK(g_flush);
    printf("# %s, L2 %d MB, median of %d after 3 warm-ups, L2 flushed; TFLOP/s and %% of %.0f "
           "(H100 dense bf16)\n",
           cuda_device_describe(), l2 >> 20, reps, PEAK_TFLOPS);
    printf("# %-4s %5s %5s %3s | %8s %7s %5s | %8s %8s %8s %8s | %10s %12s | %8s | %s\n", "T", "C", "OC", "R",
           "fused ms", "TFLOP/s", "peak", "base ms", "cublas", "unfused", "bwd ms", "fused/base",
           "fused/cublas", "unf/cub", "check");
    const int dims[] = {320, 640, 1280};
    int failed = 0;
    for (int di = 0; di < 3; di++) {
        ctx c = {0};
        c.T = 8192, c.C = c.OC = dims[di], c.R = 16, c.scale = 1.0f;
        const size_t ni = (size_t)c.T * c.C, nw = (size_t)c.OC * c.C, no = (size_t)c.T * c.OC;
        const size_t na = (size_t)c.R * c.C, nb = (size_t)c.OC * c.R, nh = (size_t)c.T * c.R;
        c.x = dalloc(ni), c.w = dalloc(nw), c.b = dalloc(c.OC), c.A = dalloc(na), c.B = dalloc(nb);
        c.out = dalloc(no), c.h = dalloc(nh), c.out2 = dalloc(no), c.h2 = dalloc(nh), c.g = dalloc(no);
        c.dinp = dalloc(ni), c.dA = dalloc(na), c.dB = dalloc(nb), c.dh = dalloc(nh);
        rng_fill_normal_cuda(c.x, ni, 51 + di, 0, 0, 0, 1);
        rng_fill_normal_cuda(c.w, nw, 51 + di, 1, 0, 0, 0.05f);
        rng_fill_normal_cuda(c.b, c.OC, 51 + di, 2, 0, 0, 1);
        rng_fill_normal_cuda(c.A, na, 51 + di, 3, 0, 0, 0.05f);
        rng_fill_normal_cuda(c.B, nb, 51 + di, 4, 0, 0, 0.05f);
        rng_fill_normal_cuda(c.g, no, 51 + di, 5, 0, 0, 1);
        device_memset(DEVICE_CUDA, c.dA, 0, na * sizeof(float));
        device_memset(DEVICE_CUDA, c.dB, 0, nb * sizeof(float));

        run_fused(&c);
        run_unfused(&c);
        run_bwd(&c);
        size_t bad = 0, bad2 = 0;
        double e = rel_l2_dev(c.out, c.out2, no, &bad);
        rel_l2_dev(c.dinp, c.dinp, ni, &bad2);
        int ok = e <= 1e-2 && !bad && !bad2;
        failed += !ok;

        const double fl = 2.0 * c.T * ((double)c.C * c.OC + (double)c.C * c.R + (double)c.R * c.OC);
        double tf = time_ms(run_fused, &c, reps), tb = time_ms(run_base, &c, reps);
        double tc = time_ms(run_cublas, &c, reps), tu = time_ms(run_unfused, &c, reps);
        double tw = time_ms(run_bwd, &c, reps);
        double rf = fl / tf * 1e-9;
        printf("%-6d %5d %5d %3d | %8.3f %7.1f %4.1f%% | %8.3f %8.3f %8.3f %8.3f | %10.2f %12.2f | %8.2f | %s "
               "(%.1e)\n",
               c.T, c.C, c.OC, c.R, tf, rf, 100 * rf / PEAK_TFLOPS, tb, tc, tu, tw, tf / tb, tf / tc, tu / tc,
               ok ? "ok" : "FAILED", e);
        fflush(stdout);
        float *all[] = {c.x, c.w, c.b, c.A, c.B, c.out, c.h, c.out2, c.h2, c.g, c.dinp, c.dA, c.dB, c.dh};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) device_free(DEVICE_CUDA, all[i]);
    }
    device_free(DEVICE_CUDA, g_flush);
    selma_cuda_context_free();
    if (failed) printf("bench_lora: %d shape(s) FAILED validation\n", failed);
    return failed ? 1 : 0;
}
