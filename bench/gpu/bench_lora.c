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
// Timing: gpu_bench.h (CUDA events, 3 warm-ups, the median of REPS calls, default 30,
// L2 flushed before each). TFLOP/s count 2 T (C OC + C R + R OC) for the forward; peak
// 989 TFLOP/s (H100 dense bf16). The fused output is checked against the unfused one
// (relative L2 <= 1e-2) before timing.
//
// Usage: bench_lora [reps]. Exits 0 with a message without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/linear.h"
#include "kernels/lora.h"
#include "kernels/rng_fill.h"
#include "runtime/device.h"
#include "gpu_bench.h"

typedef struct {
    int T, C, OC, R;
    float scale;
    float *x, *w, *b, *A, *B, *out, *h, *out2, *h2, *g, *dinp, *dA, *dB, *dh;
} ctx;

static void run_fused(void *p) {
    const ctx *c = p;
    lora_linear_forward_cuda(c->out, c->h, c->x, c->w, c->b, c->A, c->B, c->scale, c->T, c->C, c->OC, c->R);
}
static void run_base(void *p) {
    const ctx *c = p;
    lora_linear_forward_cuda(c->out, NULL, c->x, c->w, c->b, NULL, NULL, c->scale, c->T, c->C, c->OC, 0);
}
static void run_cublas(void *p) {
    const ctx *c = p;
    linear_forward_cuda(c->out2, c->x, c->w, c->b, c->T, c->C, c->OC);
}
static void run_unfused(void *p) {
    const ctx *c = p;
    lora_linear_forward_cuda_unfused(c->out2, c->h2, c->x, c->w, c->b, c->A, c->B, c->scale, c->T, c->C, c->OC,
                                     c->R);
}
static void run_bwd(void *p) {
    const ctx *c = p;
    lora_linear_backward_cuda(c->dinp, c->dA, c->dB, c->dh, c->g, c->x, c->h, c->w, c->A, c->B, c->scale, c->T,
                              c->C, c->OC, c->R);
}

int main(int argc, char **argv) {
    const int reps = gpu_bench_begin("bench_lora", argc, argv, NULL);
    if (!reps) return 0;
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
        float *(*da)(size_t) = gpu_bench_alloc;
        c.x = da(ni), c.w = da(nw), c.b = da(c.OC), c.A = da(na), c.B = da(nb);
        c.out = da(no), c.h = da(nh), c.out2 = da(no), c.h2 = da(nh), c.g = da(no);
        c.dinp = da(ni), c.dA = da(na), c.dB = da(nb), c.dh = da(nh);
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
        double e = gpu_bench_rel_l2(c.out, c.out2, no, &bad);
        gpu_bench_rel_l2(c.dinp, NULL, ni, &bad2);
        int ok = e <= 1e-2 && !bad && !bad2;
        failed += !ok;

        const double fl = 2.0 * c.T * ((double)c.C * c.OC + (double)c.C * c.R + (double)c.R * c.OC);
        double tf = gpu_bench_time_ms(run_fused, &c, reps), tb = gpu_bench_time_ms(run_base, &c, reps);
        double tc = gpu_bench_time_ms(run_cublas, &c, reps);
        double tu = gpu_bench_time_ms(run_unfused, &c, reps), tw = gpu_bench_time_ms(run_bwd, &c, reps);
        double rf = fl / tf * 1e-9;
        printf("%-6d %5d %5d %3d | %8.3f %7.1f %4.1f%% | %8.3f %8.3f %8.3f %8.3f | %10.2f %12.2f | %8.2f | %s "
               "(%.1e)\n",
               c.T, c.C, c.OC, c.R, tf, rf, 100 * rf / GPU_BENCH_PEAK_TFLOPS, tb, tc, tu, tw, tf / tb,
               tf / tc, tu / tc, ok ? "ok" : "FAILED", e);
        fflush(stdout);
        float *all[] = {c.x, c.w, c.b, c.A, c.B, c.out, c.h, c.out2, c.h2, c.g, c.dinp, c.dA, c.dB, c.dh};
        gpu_bench_free(all, sizeof all / sizeof *all);
    }
    return gpu_bench_end("bench_lora", failed);
}
