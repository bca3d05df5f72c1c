// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11),
// the counter-based generator curand and JAX use. Header-only and usable from host
// and device code, so that a CUDA kernel and the CPU produce the same stream:
// element i of a stream is a pure function of (seed, stream, i).
//
// Layout of a stream: element i takes word i%4 of philox(counter = {i/4 (64 bit),
// stream (64 bit)}, key = seed (64 bit)).
//   uniform(i) = (word >> 8) * 2^-24            in [0, 1)
//   normal(i)  = Box-Muller on the word pair (i & ~1, i | 1), cos for even i, sin
//                for odd i, computed in double and rounded to float.
#ifndef SELMA_RUNTIME_PHILOX_H
#define SELMA_RUNTIME_PHILOX_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PHILOX_FN static __host__ __device__ __forceinline__
#else
#define PHILOX_FN static inline
#endif

PHILOX_FN uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

PHILOX_FN void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// The four words of block `block` of (seed, stream).
PHILOX_FN void philox_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(ctr, key, out);
}

PHILOX_FN uint32_t philox_u32(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w[4];
    philox_block(seed, stream, i >> 2, w);
    return w[i & 3];
}

PHILOX_FN float philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    return (float)(philox_u32(seed, stream, i) >> 8) * (1.0f / 16777216.0f);
}

PHILOX_FN float philox_normal(uint64_t seed, uint64_t stream, uint64_t i) {
    uint32_t w[4];
    philox_block(seed, stream, i >> 2, w);
    int p = (int)(i & 2);
    double u1 = ((double)(w[p] >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]: log is finite
    double u2 = (double)(w[p + 1] >> 8) * (1.0 / 16777216.0);
    double r = sqrt(-2.0 * log(u1));
    double a = 6.283185307179586 * u2;
    return (float)((i & 1) ? r * sin(a) : r * cos(a));
}

#endif
