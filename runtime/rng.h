// Random numbers for everything selma does: a Philox stream plus a position, so the
// whole state is three integers (saved in checkpoints, restored exactly).
#ifndef SELMA_RUNTIME_RNG_H
#define SELMA_RUNTIME_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/philox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t pos;  // next element of the stream
} rng;

rng rng_make(uint64_t seed, uint64_t stream);
uint32_t rng_u32(rng *r);
uint64_t rng_u64(rng *r);
float rng_uniform(rng *r);            // [0, 1)
float rng_normal(rng *r);             // N(0, 1); consumes an aligned word pair
uint32_t rng_below(rng *r, uint32_t n);  // uniform integer in [0, n), unbiased
void rng_shuffle(rng *r, int *a, int n);

// Element-indexed fills: x[i] = f(seed, stream, offset + i). The CUDA version in
// kernels/cuda/rng_fill.cu writes the same values.
void rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                      float lo, float hi);
void rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                     float mean, float std);

#ifdef __cplusplus
}
#endif
#endif
