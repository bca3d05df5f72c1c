// exp and erf in float, branch-free so that gcc vectorizes the loops that call them
// (libm's expf and erff are scalar calls: a third of the activation kernels' time).
//
// exp_fast: Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial
// for e^r, 2^n put into the exponent bits. Within 2 ulp of expf over [-87.3, 88.0];
// inputs are clamped there (e^-87.3 is the smallest normal float),
// NaN passes through (a NaN fails both comparisons of the clamp). The top is 88.0,
// not 88.7, so that 2^n stays a normal float (n <= 127): the callers only need e^x
// as a large number there (sigmoid, Gaussian tails).
// erf_fast: Abramowitz and Stegun 7.1.26, |error| <= 1.5e-7 absolute, the same
// approximation PyTorch's vectorized CPU erf uses.
#ifndef SELMA_VEC_MATH_H
#define SELMA_VEC_MATH_H

#include <stdint.h>
#include <string.h>

static inline float exp_fast(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.3f ? -87.3f : x;
    // round(x / ln2) by the 1.5 * 2^23 trick: exact for |x / ln2| < 2^22
    const float shift = 12582912.0f;
    float n = (x * 1.44269504088896341f + shift) - shift;
    float r = x - n * 0.693359375f;  // ln2 in two parts: the first is exact in 9 bits
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

static inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

static inline float erf_fast(float x) {
    float a = x < 0 ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 1.061405429f;
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * exp_fast(-a * a);
    return x < 0 ? -y : y;
}

#endif
