// The timing harness the GPU benchmarks (bench_conv2d, bench_lora, bench_attention)
// share: the device check and the reps argument, the L2 flush buffer, CUDA-event
// timing of the median call and the validation of device arrays.
//
// Timing: CUDA events around each call on selma_cuda_stream(), 3 warm-up calls, the
// median of reps timed calls; before each timed call a 2 x L2-sized buffer is written
// (cudaMemsetAsync, outside the events) so that no call finds its inputs in L2.
#ifndef SELMA_BENCH_GPU_BENCH_H
#define SELMA_BENCH_GPU_BENCH_H

#include <stddef.h>

#define GPU_BENCH_PEAK_TFLOPS 989.0  // H100 SXM dense bf16
#define GPU_BENCH_MAX_REPS 1000

// Without a CUDA device: prints "<name>: no CUDA device (...); nothing to time" and
// returns 0 (the benchmark exits 0). Else the reps from argv[1] (default 30, clamped to
// 1..GPU_BENCH_MAX_REPS), with the flush buffer allocated and the header line printed:
// device, L2 size, reps, peak, then "; <note>" when note is not NULL.
int gpu_bench_begin(const char *name, int argc, char **argv, const char *note);

// Median milliseconds of reps calls of fn(ctx) (after 3 warm-up calls).
double gpu_bench_time_ms(void (*fn)(void *ctx), void *ctx, int reps);

// n floats of device memory (aborts when it fails).
float *gpu_bench_alloc(size_t n);
// Frees n device arrays.
void gpu_bench_free(float *const *p, size_t n);

// Relative L2 error of device array a against device array b (b NULL: 0) and, in
// *nonfinite, the count of non-finite values of a.
double gpu_bench_rel_l2(const float *a, const float *b, size_t n, size_t *nonfinite);

// Frees the flush buffer and the CUDA context; prints "<name>: <failed> shape(s)
// FAILED validation" when failed > 0. Returns the exit status (1 when failed > 0).
int gpu_bench_end(const char *name, int failed);

#endif
