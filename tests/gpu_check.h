// Helpers shared by the gpu-suite tests (tests/test_*_gpu.c): the skip without a CUDA
// device, device buffers (poisoned with NaN, copied to and from the host), host/device
// twins filled with the same Philox draws on both sides, and the relative L2 error.
#ifndef SELMA_TESTS_GPU_CHECK_H
#define SELMA_TESTS_GPU_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rng_fill.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "tests/check.h"

// Without a CUDA device: prints "skipped: <why>" and returns 1 (the test returns
// TEST_SKIP).
static inline int gpu_check_skip(void) {
    if (cuda_device_count() > 0) return 0;
    printf("skipped: %s\n", cuda_device_describe());
    return 1;
}

// All-ones bytes: NaN in every float, so an element a kernel leaves unwritten fails.
static inline void gpu_poison(float *d, size_t n) { device_memset(DEVICE_CUDA, d, 0xff, n * sizeof(float)); }

// n floats of device memory (at least one).
static inline float *gpu_alloc(size_t n) {
    float *d = device_alloc(DEVICE_CUDA, (n ? n : 1) * sizeof(float));
    CHECK(d);
    return d;
}

// A device buffer poisoned with NaN.
static inline float *gpu_nan(size_t n) {
    float *d = gpu_alloc(n);
    gpu_poison(d, n);
    return d;
}

// A device copy of the device array d.
static inline float *gpu_dup(const float *d, size_t n) {
    float *c = gpu_alloc(n);
    device_copy(DEVICE_CUDA, c, DEVICE_CUDA, d, n * sizeof(float));
    return c;
}

// A host copy of the host array h.
static inline float *host_dup(const float *h, size_t n) {
    float *c = malloc((n ? n : 1) * sizeof(float));
    CHECK(c);
    memcpy(c, h, n * sizeof(float));
    return c;
}

static inline void gpu_to_host(float *h, const float *d, size_t n) {
    device_sync();
    device_copy(DEVICE_CPU, h, DEVICE_CUDA, d, n * sizeof(float));
}

static inline void gpu_from_host(float *d, const float *h, size_t n) {
    device_copy(DEVICE_CUDA, d, DEVICE_CPU, h, n * sizeof(float));
}

// A new host array with the values of the device array d (free() it).
static inline float *gpu_download(const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    CHECK(h);
    gpu_to_host(h, d, n);
    return h;
}

// The same Philox draws into a host array h and a device array d (bit-identical for
// uniform, tests/test_rng_gpu.c).
static inline void fill_normal_both(float *h, float *d, size_t n, uint64_t seed, uint64_t stream,
                                    float std) {
    rng_fill_normal(h, n, seed, stream, 0, 0, std);
    rng_fill_normal_cuda(d, n, seed, stream, 0, 0, std);
}
static inline void fill_uniform_both(float *h, float *d, size_t n, uint64_t seed, uint64_t stream,
                                     float lo, float hi) {
    rng_fill_uniform(h, n, seed, stream, 0, lo, hi);
    rng_fill_uniform_cuda(d, n, seed, stream, 0, lo, hi);
}

// A host array and its device twin.
typedef struct {
    float *h, *d;
    size_t n;
} gpu_buf;

static inline gpu_buf gpu_buf_new(size_t n) {
    gpu_buf b = {malloc((n ? n : 1) * sizeof(float)), gpu_alloc(n), n};
    CHECK(b.h);
    return b;
}
// N(0, std^2) draws, the same on both sides.
static inline gpu_buf gpu_buf_randn_std(size_t n, uint64_t seed, uint64_t stream, float std) {
    gpu_buf b = gpu_buf_new(n);
    fill_normal_both(b.h, b.d, n, seed, stream, std);
    return b;
}
static inline gpu_buf gpu_buf_randn(size_t n, uint64_t seed, uint64_t stream) {
    return gpu_buf_randn_std(n, seed, stream, 1);
}
static inline void gpu_buf_free(gpu_buf *b) {
    free(b->h);
    device_free(DEVICE_CUDA, b->d);
}

// ||(gpu - base) - (cpu - base)|| / ||cpu - base|| (base NULL = 0; ||gpu - cpu|| where
// cpu - base is 0); INFINITY as soon as a gpu value is not finite.
static inline double rel_l2_base(const float *gpu, const float *cpu, const float *base, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double b = base ? base[i] : 0.0, g = (double)gpu[i] - b, c = (double)cpu[i] - b;
        if (!isfinite(g)) return INFINITY;
        num += (g - c) * (g - c);
        den += c * c;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// ||x - ref|| / ||ref|| (||x - ref|| where ref is 0), adding the count of non-finite
// x to *nonfinite.
static inline double rel_l2_count(const float *x, const float *ref, size_t n, size_t *nonfinite) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) (*nonfinite)++;
        double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
