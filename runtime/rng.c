#include "runtime/rng.h"

rng rng_make(uint64_t seed, uint64_t stream) { return (rng){seed, stream, 0}; }

uint32_t rng_u32(rng *r) { return philox_u32(r->seed, r->stream, r->pos++); }

uint64_t rng_u64(rng *r) {
    uint64_t lo = rng_u32(r);
    return lo | (uint64_t)rng_u32(r) << 32;
}

float rng_uniform(rng *r) { return philox_uniform(r->seed, r->stream, r->pos++); }

float rng_normal(rng *r) {
    r->pos = (r->pos + 1) & ~(uint64_t)1;  // start of a pair: never share words with a uniform
    float z = philox_normal(r->seed, r->stream, r->pos);
    r->pos += 2;
    return z;
}

uint32_t rng_below(rng *r, uint32_t n) {
    if (n <= 1) return 0;
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;  // reject the biased tail
    uint32_t x;
    do x = rng_u32(r); while (x >= limit);
    return x % n;
}

void rng_shuffle(rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint32_t)i + 1);
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

void rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                      float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * philox_uniform(seed, stream, offset + i);
}

void rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                     float mean, float std) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * philox_normal(seed, stream, offset + i);
}
