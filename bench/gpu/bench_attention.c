// Attention on the GPU: the flash kernels of kernels/cuda/attention.cu (forward and
// backward) next to the naive cuBLAS path (scores materialized, softmax kernel,
// second GEMM; attention_forward_cuda_naive), on Stable Diffusion 1.5's UNet shapes
// and the target shapes.
//
// Timing: gpu_bench.h (CUDA events, 3 warm-ups, the median of REPS calls, L2 flushed
// before each). FLOPs: 4 B H N M D forward (two GEMMs), 2.5x that backward
// (FlashAttention's convention: 5 GEMMs; the two-pass backward actually runs 7), halved
// for causal.
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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/attention.h"
#include "kernels/rng_fill.h"
#include "runtime/device.h"
#include "gpu_bench.h"

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

static void run_fwd(void *p) {
    const ctx *c = p;
    const shape *s = c->s;
    attention_forward_cuda(c->out, c->lse, c->q, c->k, c->v, s->B, s->N, s->M, s->H, s->D, 0,
                           s->causal);
}
static void run_bwd(void *p) {
    const ctx *c = p;
    const shape *s = c->s;
    attention_backward_cuda(c->dq, c->dk, c->dv, c->scr, c->g, c->q, c->k, c->v, c->out, c->lse,
                            s->B, s->N, s->M, s->H, s->D, 0, s->causal);
}
static void run_naive(void *p) {
    const ctx *c = p;
    const shape *s = c->s;
    attention_forward_cuda_naive(c->out2, c->lse2, c->q, c->k, c->v, s->B, s->N, s->M, s->H, s->D,
                                 0, s->causal);
}

int main(int argc, char **argv) {
    const int reps = gpu_bench_begin("bench_attention", argc, argv, NULL);
    if (!reps) return 0;
    printf("# %-19s %2s %2s %5s %5s %3s | %15s %7s %5s | %8s %7s %7s | %15s %7s %5s | %s\n",
           "shape", "B", "H", "N", "M", "D", "fwd ms W4/W8", "TFLOP/s", "peak", "naive ms",
           "TFLOP/s", "speedup", "bwd ms W4/W8", "TFLOP/s", "peak", "check");
    int failed = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const shape *s = &shapes[si];
        size_t nq = (size_t)s->B * s->N * s->H * s->D, nk = (size_t)s->B * s->M * s->H * s->D;
        size_t nl = (size_t)s->B * s->H * s->N;
        float *(*da)(size_t) = gpu_bench_alloc;
        ctx c = {s,      da(nq), da(nk), da(nk), da(nq), da(nq), da(nl), da(nq), da(nk), da(nk),
                 da(attention_cuda_scratch_floats(s->B, s->N, s->H)), da(nq), da(nl)};
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
            double eo = gpu_bench_rel_l2(c.out, c.out2, nq, &bad_o);
            double el = gpu_bench_rel_l2(c.lse, c.lse2, nl, &bad_l);
            gpu_bench_rel_l2(c.dq, NULL, nq, &bad_q);
            gpu_bench_rel_l2(c.dk, NULL, nk, &bad_k);
            gpu_bench_rel_l2(c.dv, NULL, nk, &bad_v);
            ok &= eo <= 1e-2 && el <= 1e-2 && !bad_o && !bad_l && !bad_q && !bad_k && !bad_v;
            e_out = eo > e_out ? eo : e_out;
            e_lse = el > e_lse ? el : e_lse;
        }
        failed += !ok;

        double fl = 4.0 * s->B * s->H * (double)s->N * s->M * s->D * (s->causal ? 0.5 : 1.0);
        setenv("SELMA_ATTN_WARPS", "4", 1);
        double tf4 = gpu_bench_time_ms(run_fwd, &c, reps);
        double tb4 = gpu_bench_time_ms(run_bwd, &c, reps);
        setenv("SELMA_ATTN_WARPS", "8", 1);
        double tf8 = gpu_bench_time_ms(run_fwd, &c, reps);
        double tb8 = gpu_bench_time_ms(run_bwd, &c, reps);
        unsetenv("SELMA_ATTN_WARPS");
        double tn = gpu_bench_time_ms(run_naive, &c, reps);
        double tf = tf4 < tf8 ? tf4 : tf8, tb = tb4 < tb8 ? tb4 : tb8;
        double rf = fl / tf * 1e-9, rn = fl / tn * 1e-9, rb = 2.5 * fl / tb * 1e-9;
        printf("%-21s %2d %2d %5d %5d %3d | %7.3f/%7.3f %7.1f %4.1f%% | %8.3f %7.1f %6.2fx | "
               "%7.3f/%7.3f %7.1f %4.1f%% | %s (out %.1e lse %.1e)\n",
               s->name, s->B, s->H, s->N, s->M, s->D, tf4, tf8, rf,
               100 * rf / GPU_BENCH_PEAK_TFLOPS, tn, rn, tn / tf, tb4, tb8, rb,
               100 * rb / GPU_BENCH_PEAK_TFLOPS, ok ? "ok" : "FAILED", e_out, e_lse);
        fflush(stdout);
        float *all[] = {c.q, c.k, c.v, c.g, c.out, c.lse, c.dq, c.dk, c.dv, c.scr, c.out2, c.lse2};
        gpu_bench_free(all, sizeof all / sizeof *all);
    }
    return gpu_bench_end("bench_attention", failed);
}
