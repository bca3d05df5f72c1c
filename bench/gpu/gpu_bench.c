// See gpu_bench.h.
#include "gpu_bench.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"

static void *g_flush;
static size_t g_flush_bytes;

int gpu_bench_begin(const char *name, int argc, char **argv, const char *note) {
    if (cuda_device_count() == 0) {
        printf("%s: no CUDA device (%s); nothing to time\n", name, cuda_device_describe());
        return 0;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 30;
    if (reps < 1) reps = 1;
    if (reps > GPU_BENCH_MAX_REPS) reps = GPU_BENCH_MAX_REPS;
    int dev = 0, l2 = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    g_flush_bytes = 2 * (size_t)(l2 > 0 ? l2 : 64 << 20);
    g_flush = device_alloc(DEVICE_CUDA, g_flush_bytes);
    CHECK(g_flush);
    printf("# %s, L2 %d MB, median of %d after 3 warm-ups, L2 flushed; TFLOP/s and %% of %.0f "
           "(H100 dense bf16)%s%s\n",
           cuda_device_describe(), l2 >> 20, reps, GPU_BENCH_PEAK_TFLOPS, note ? "; " : "",
           note ? note : "");
    return reps;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double gpu_bench_time_ms(void (*fn)(void *ctx), void *ctx, int reps) {
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) fn(ctx);
    float ms[GPU_BENCH_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        CUDA_CHECK(cudaMemsetAsync(g_flush, r & 0xff, g_flush_bytes, st));
        CUDA_CHECK(cudaEventRecord(e0, st));
        fn(ctx);
        CUDA_CHECK(cudaEventRecord(e1, st));
        CUDA_CHECK(cudaEventSynchronize(e1));
        CUDA_CHECK(cudaEventElapsedTime(&ms[r], e0, e1));
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    qsort(ms, (size_t)reps, sizeof *ms, cmp_float);
    return reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
}

float *gpu_bench_alloc(size_t n) {
    float *p = device_alloc(DEVICE_CUDA, n * sizeof(float));
    CHECK(p);
    return p;
}

void gpu_bench_free(float *const *p, size_t n) {
    for (size_t i = 0; i < n; i++) device_free(DEVICE_CUDA, p[i]);
}

double gpu_bench_rel_l2(const float *a, const float *b, size_t n, size_t *nonfinite) {
    float *x = malloc(n * sizeof *x), *y = b ? malloc(n * sizeof *y) : NULL;
    CHECK(x && (!b || y));
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

int gpu_bench_end(const char *name, int failed) {
    device_free(DEVICE_CUDA, g_flush);
    selma_cuda_context_free();
    if (failed) printf("%s: %d shape(s) FAILED validation\n", name, failed);
    return failed ? 1 : 0;
}
