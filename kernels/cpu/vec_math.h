// exp and erf in float, branch-free so that gcc vectorizes the loops that call them
// (libm's expf and erff are scalar calls: a third of the activation kernels' time).
//
// exp_fast: Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-7 polynomial
// for e^r, 2^n put into the exponent bits; about 1.5 ulp. x is clamped to [-87, 88]
// (2^n stays a normal float; below -87 the result is e^-87 ~ 1.6e-38 instead of
// smaller, which no caller notices: sigmoid tails, Gaussian tails, softmax row sums).
// NaN passes through. Also the attention kernel's exp (attention.c).
// erf_fast: Abramowitz and Stegun 7.1.26, |error| <= 1.5e-7 absolute, the same
// approximation PyTorch's vectorized CPU erf uses.
#ifndef SELMA_VEC_MATH_H
#define SELMA_VEC_MATH_H

#include <stdint.h>
#include <string.h>

static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // Round to nearest by adding and subtracting 1.5 * 2^23 (no floorf call); t's low
    // mantissa bits then hold n as an integer.
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    // 2^n from t's bits in unsigned arithmetic: a NaN x (clamping keeps it) stays a
    // NaN result without the undefined (int32_t)NaN and negative left shift.
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t bits = (tb - 0x4B400000u + 127u) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return y * two_n;
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
