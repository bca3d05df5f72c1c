#include "kernels/activation.h"

#include <math.h>

#include "kernels/cpu/vec_math.h"

#define SQRT_1_2 0.70710678118654752440   // 1/sqrt(2)
#define INV_SQRT_2PI 0.39894228040143267794  // 1/sqrt(2 pi)
#define SQRT_2_PI 0.79788456080286535588  // sqrt(2/pi)
#define GELU_TANH_C 0.044715
#define GELU_QUICK_C 1.702

// ---- float64 reference: value and derivative of each function --------------------

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

static double gelu_d(double x, gelu_kind kind) {
    switch (kind) {
    case GELU_ERF: return 0.5 * x * (1.0 + erf(x * SQRT_1_2));
    case GELU_TANH: return 0.5 * x * (1.0 + tanh(SQRT_2_PI * (x + GELU_TANH_C * x * x * x)));
    case GELU_QUICK: return x * sigmoid_d(GELU_QUICK_C * x);
    }
    return NAN;
}

static double gelu_grad_d(double x, gelu_kind kind) {
    switch (kind) {
    case GELU_ERF:  // Phi(x) + x phi(x)
        return 0.5 * (1.0 + erf(x * SQRT_1_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    case GELU_TANH: {
        double t = tanh(SQRT_2_PI * (x + GELU_TANH_C * x * x * x));
        return 0.5 * (1.0 + t) +
               0.5 * x * (1.0 - t * t) * SQRT_2_PI * (1.0 + 3.0 * GELU_TANH_C * x * x);
    }
    case GELU_QUICK: {
        double s = sigmoid_d(GELU_QUICK_C * x);
        return s + GELU_QUICK_C * x * s * (1.0 - s);
    }
    }
    return NAN;
}

void silu_forward_ref(double *out, const double *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid_d(inp[i]);
}

void silu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) {
        double s = sigmoid_d(inp[i]);
        dinp[i] = dout[i] * s * (1.0 + inp[i] * (1.0 - s));
    }
}

void gelu_forward_ref(double *out, const double *inp, size_t n, gelu_kind kind) {
    for (size_t i = 0; i < n; i++) out[i] = gelu_d(inp[i], kind);
}

void gelu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n,
                       gelu_kind kind) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_grad_d(inp[i], kind);
}

void geglu_forward_ref(double *out, const double *inp, int N, int C) {
    for (int r = 0; r < N; r++)
        for (int c = 0; c < C; c++) {
            const double *row = inp + (size_t)r * 2 * C;
            out[(size_t)r * C + c] = row[c] * gelu_d(row[C + c], GELU_ERF);
        }
}

void geglu_backward_ref(double *dinp, const double *dout, const double *inp, int N, int C) {
    if (!dinp) return;
    for (int r = 0; r < N; r++)
        for (int c = 0; c < C; c++) {
            const double *row = inp + (size_t)r * 2 * C;
            double g = dout[(size_t)r * C + c];
            dinp[(size_t)r * 2 * C + c] = g * gelu_d(row[C + c], GELU_ERF);
            dinp[(size_t)r * 2 * C + C + c] = g * row[c] * gelu_grad_d(row[C + c], GELU_ERF);
        }
}

// ---- float32 ----------------------------------------------------------------------
// The same formulas in float with vec_math.h's exp and erf, which gcc vectorizes
// (libm's expf and erff cost a scalar call per element). tanhf stays libm's: GELU_TANH
// is in no model here. The kind switch sits outside the loops so each loop is a
// straight pointwise pass.

static inline float sigmoid_f(float x) { return sigmoid_fast(x); }

static inline float gelu_erf_f(float x) { return 0.5f * x * (1.0f + erf_fast(x * (float)SQRT_1_2)); }

static inline float gelu_erf_grad_f(float x) {
    return 0.5f * (1.0f + erf_fast(x * (float)SQRT_1_2)) +
           x * (float)INV_SQRT_2PI * exp_fast(-0.5f * x * x);
}

void silu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid_f(inp[i]);
}

void silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    if (!dinp) return;
    for (size_t i = 0; i < n; i++) {
        float s = sigmoid_f(inp[i]);
        dinp[i] = dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}

void gelu_forward(float *out, const float *inp, size_t n, gelu_kind kind) {
    const float c = (float)SQRT_2_PI, a = (float)GELU_TANH_C, q = (float)GELU_QUICK_C;
    switch (kind) {
    case GELU_ERF:
        for (size_t i = 0; i < n; i++) out[i] = gelu_erf_f(inp[i]);
        break;
    case GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + tanhf(c * (x + a * x * x * x)));
        }
        break;
    case GELU_QUICK:
        for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoid_f(q * inp[i]);
        break;
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                   gelu_kind kind) {
    if (!dinp) return;
    const float c = (float)SQRT_2_PI, a = (float)GELU_TANH_C, q = (float)GELU_QUICK_C;
    switch (kind) {
    case GELU_ERF:
        for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_erf_grad_f(inp[i]);
        break;
    case GELU_TANH:
        for (size_t i = 0; i < n; i++) {
            float x = inp[i], t = tanhf(c * (x + a * x * x * x));
            dinp[i] = dout[i] * (0.5f * (1.0f + t) +
                                 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * a * x * x));
        }
        break;
    case GELU_QUICK:
        for (size_t i = 0; i < n; i++) {
            float x = inp[i], s = sigmoid_f(q * x);
            dinp[i] = dout[i] * (s + q * x * s * (1.0f - s));
        }
        break;
    }
}

void geglu_forward(float *out, const float *inp, int N, int C) {
    for (int r = 0; r < N; r++) {
        const float *h = inp + (size_t)r * 2 * C, *g = h + C;
        float *y = out + (size_t)r * C;
        for (int c = 0; c < C; c++) y[c] = h[c] * gelu_erf_f(g[c]);
    }
}

void geglu_backward(float *dinp, const float *dout, const float *inp, int N, int C) {
    if (!dinp) return;
    for (int r = 0; r < N; r++) {
        const float *h = inp + (size_t)r * 2 * C, *g = h + C, *dy = dout + (size_t)r * C;
        float *dh = dinp + (size_t)r * 2 * C, *dg = dh + C;
        for (int c = 0; c < C; c++) {
            dh[c] = dy[c] * gelu_erf_f(g[c]);
            dg[c] = dy[c] * h[c] * gelu_erf_grad_f(g[c]);
        }
    }
}
