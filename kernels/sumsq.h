// Sum of squares of a float array, sum_i x_i^2, accumulated in double: the trainer's
// global gradient norm is sqrt of the sum over its arenas. No backward (the norm is
// only measured, never differentiated).
#ifndef SELMA_KERNELS_SUMSQ_H
#define SELMA_KERNELS_SUMSQ_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference.
double sumsq_ref(const double *x, size_t n);
// Float32 input, double sum in index order (the trainer's CPU loop does the same).
double sumsq(const float *x, size_t n);

// CUDA (kernels/cuda/sumsq.cu): x is a device pointer, on selma_cuda_stream()
// Returns the sum to the host: it synchronizes the stream (a blocking copy of one
// double). The order is fixed (per-block partials added in block order), so the result
// is deterministic for a given n, though not equal bit for bit to the CPU's order.
double sumsq_cuda(const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
