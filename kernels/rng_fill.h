// Random fills on the GPU that equal runtime/rng.h's CPU fills element for element
// (the parity tests draw their inputs this way on both sides).
#ifndef SELMA_KERNELS_RNG_FILL_H
#define SELMA_KERNELS_RNG_FILL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// x is device memory.
void rng_fill_uniform_cuda(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                           float lo, float hi);
void rng_fill_normal_cuda(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                          float mean, float std);

#ifdef __cplusplus
}
#endif
#endif
