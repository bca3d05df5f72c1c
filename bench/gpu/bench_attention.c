// Attention on the GPU: the flash kernels of kernels/cuda/attention.cu (forward and
// backward) next to the naive cuBLAS path (scores materialized, softmax kernel,
// second GEMM; attention_forward_cuda_naive), on Stable Diffusion 1.5's UNet shapes
// and the target shapes.
//
// Timing: CUDA events around each call on selma_cuda_stream(), 3 warm-up calls, the
// median of REPS timed calls; before each timed call a 2 x L2-sized buffer is written
// (cudaMemsetAsync, outside the events) so that no call finds its inputs in L2.
// FLOPs: 4 B H N M D forward (two GEMMs), 2.5x that backward (FlashAttention's
// convention: 5 GEMMs; the two-pass backward actually runs 7), halved for causal.
// Peak: H100 SXM dense bf16, 989 TFLOP/s.
//
// Two variants of the flash kernels are timed, W = 4 and W = 8 warps per block (64 or
// 128 rows of a tile; SELMA_ATTN_WARPS, read by attention.cu at each call); "ms" columns
// show both, the TFLOP/s columns the faster.
//
// Before timing, each shape's flash output (both variants) is checked against the
// naive path (relative L2, bf16 tolerance 1e-2) and the backward for non-finite values.
//
// Usage: bench_attention [reps]   (default 30). Exits 0 with a message without a GPU.
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/rng_fill.h"
#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"

#define PEAK_TFLOPS 989.0
#define MAX_REPS 1000

typedef struct {
    const char *name;
    int B, H, N, M, D, causal;
} shape;

static const shape shapes[] = {
    // SD 1.5 UNet: self-attention at 64x64, 32x32, 16x16 latents; cross-attention to 77 tokens
    {"sd15 self 64x64", 2, 8, 4096, 4096, 40, 0},
    {"sd15 self 32x32", 2, 8, 1024, 1024, 80, 0},
    {"sd15 self 16x16", 2, 8, 256, 256, 160, 0},
    {"sd15 cross 64x64", 2, 8, 4096, 77, 40, 0},
    {"sd15 cross 32x32", 2, 8, 1024, 77, 80, 0},
    {"sd15 cross 16x16", 2, 8, 256, 77, 160, 0},
    // target shapes: H = 16, N = M = 4096
    {"target d64", 1, 16, 4096, 4096, 64, 0},
    {"target d64", 2, 16, 4096, 4096, 64, 0},
    {"target d64", 4, 16, 4096, 4096, 64, 0},
    {"target d64 causal", 4, 16, 4096, 4096, 64, 1},
    {"target d128", 1, 16, 4096, 4096, 128, 0},
    {"target d128", 2, 16, 4096, 4096, 128, 0},
    {"target d128", 4, 16, 4096, 4096, 128, 0},
    {"target d128 causal", 4, 16, 4096, 4096, 128, 1},
};

typedef struct {
    const shape *s;
    float *q, *k, *v, *g, *out, *lse, *dq, *dk, *dv, *scr, *out2, *lse2;
} ctx;

typedef void (*fn_t)(ctx *c);

static void run_fwd(ctx *c) {
    const shape *s = c->s;
    attention_forward_cuda(c->out, c->lse, c->q, c->k, c->v, s->B, s->N, s->M, s->H, s->D, 0,
                           s->causal);
}
static void run_bwd(ctx *c) {
    const shape *s = c->s;
    attention_backward_cuda(c->dq, c->dk, c->dv, c->scr, c->g, c->q, c->k, c->v, c->out, c->lse,
                            s->B, s->N, s->M, s->H, s->D, 0, s->causal);
}
static void run_naive(ctx *c) {
    const shape *s = c->s;
    attention_forward_cuda_naive(c->out2, c->lse2, c->q, c->k, c->v, s->B, s->N, s->M, s->H, s->D,
                                 0, s->causal);
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

// Relative L2 of a against b (device arrays) and the count of non-finite a.
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
        printf("bench_attention: no CUDA device (%s); nothing to time\n", cuda_device_describe());
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
    printf("# %-19s %2s %2s %5s %5s %3s | %15s %7s %5s | %8s %7s %7s | %15s %7s %5s | %s\n",
           "shape", "B", "H", "N", "M", "D", "fwd ms W4/W8", "TFLOP/s", "peak", "naive ms",
           "TFLOP/s", "speedup", "bwd ms W4/W8", "TFLOP/s", "peak", "check");
    int failed = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        size_t nq = (size_t)s->B * s->N * s->H * s->D, nk = (size_t)s->B * s->M * s->H * s->D;
        size_t nl = (size_t)s->B * s->H * s->N;
        ctx c = {s,         dalloc(nq), dalloc(nk), dalloc(nk), dalloc(nq), dalloc(nq), dalloc(nl),
                 dalloc(nq), dalloc(nk), dalloc(nk),
                 dalloc(attention_cuda_scratch_floats(s->B, s->N, s->H)), dalloc(nq), dalloc(nl)};
        rng_fill_uniform_cuda(c.q, nq, 7 + si, 0, 0, -2, 2);
        rng_fill_uniform_cuda(c.k, nk, 7 + si, 1, 0, -2, 2);
        rng_fill_uniform_cuda(c.v, nk, 7 + si, 2, 0, -1, 1);
        rng_fill_uniform_cuda(c.g, nq, 7 + si, 3, 0, -1, 1);

        // Validate: flash (both variants) vs naive forward, finite backward.
        run_naive(&c);
        double e_out = 0, e_lse = 0;
        int ok = 1;
        for (int w = 4; w <= 8; w += 4) {
            setenv("SELMA_ATTN_WARPS", w == 4 ? "4" : "8", 1);
            device_memset(DEVICE_CUDA, c.out, 0xFF, nq * sizeof(float));
            run_fwd(&c);
            run_bwd(&c);
            size_t bad_o = 0, bad_l = 0, bad_q = 0, bad_k = 0, bad_v = 0;
            double eo = rel_l2_dev(c.out, c.out2, nq, &bad_o);
            double el = rel_l2_dev(c.lse, c.lse2, nl, &bad_l);
            rel_l2_dev(c.dq, NULL, nq, &bad_q);
            rel_l2_dev(c.dk, NULL, nk, &bad_k);
            rel_l2_dev(c.dv, NULL, nk, &bad_v);
            ok &= eo <= 1e-2 && el <= 1e-2 && !bad_o && !bad_l && !bad_q && !bad_k && !bad_v;
            e_out = eo > e_out ? eo : e_out;
            e_lse = el > e_lse ? el : e_lse;
        }
        failed += !ok;

        double fl = 4.0 * s->B * s->H * (double)s->N * s->M * s->D * (s->causal ? 0.5 : 1.0);
        setenv("SELMA_ATTN_WARPS", "4", 1);
        double tf4 = time_ms(run_fwd, &c, reps), tb4 = time_ms(run_bwd, &c, reps);
        setenv("SELMA_ATTN_WARPS", "8", 1);
        double tf8 = time_ms(run_fwd, &c, reps), tb8 = time_ms(run_bwd, &c, reps);
        unsetenv("SELMA_ATTN_WARPS");
        double tn = time_ms(run_naive, &c, reps);
        double tf = tf4 < tf8 ? tf4 : tf8, tb = tb4 < tb8 ? tb4 : tb8;
        double rf = fl / tf * 1e-9, rn = fl / tn * 1e-9, rb = 2.5 * fl / tb * 1e-9;
        printf("%-21s %2d %2d %5d %5d %3d | %7.3f/%7.3f %7.1f %4.1f%% | %8.3f %7.1f %6.2fx | "
               "%7.3f/%7.3f %7.1f %4.1f%% | %s (out %.1e lse %.1e)\n",
               s->name, s->B, s->H, s->N, s->M, s->D, tf4, tf8, rf, 100 * rf / PEAK_TFLOPS, tn, rn,
               tn / tf, tb4, tb8, rb, 100 * rb / PEAK_TFLOPS, ok ? "ok" : "FAILED", e_out, e_lse);
        fflush(stdout);
        float *all[] = {c.q, c.k, c.v, c.g, c.out, c.lse, c.dq, c.dk, c.dv, c.scr, c.out2, c.lse2};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) device_free(DEVICE_CUDA, all[i]);
    }
    device_free(DEVICE_CUDA, g_flush);
    selma_cuda_context_free();
    if (failed) printf("bench_attention: %d shape(s) FAILED validation\n", failed);
    return failed ? 1 : 0;
}
