#include "kernels/lora.h"

#include <cblas.h>
#include <stddef.h>

#include "kernels/linear.h"

void lora_linear_forward_ref(double *out, double *h, const double *inp, const double *w,
                             const double *b, const double *lora_a, const double *lora_b,
                             double scale, int N, int C, int OC, int R) {
    linear_forward_ref(h, inp, lora_a, NULL, N, C, R);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double base = b ? b[o] : 0.0, low = 0.0;
            for (int c = 0; c < C; c++) base += inp[(size_t)n * C + c] * w[(size_t)o * C + c];
            for (int r = 0; r < R; r++) low += h[(size_t)n * R + r] * lora_b[(size_t)o * R + r];
            out[(size_t)n * OC + o] = base + scale * low;
        }
}

void lora_linear_backward_ref(double *dinp, double *dlora_a, double *dlora_b, double *dh,
                              const double *dout, const double *inp, const double *h,
                              const double *w, const double *lora_a, const double *lora_b,
                              double scale, int N, int C, int OC, int R) {
    for (int n = 0; n < N; n++) {
        const double *g = dout + (size_t)n * OC;
        if (dlora_b)
            for (int o = 0; o < OC; o++)
                for (int r = 0; r < R; r++)
                    dlora_b[(size_t)o * R + r] += scale * g[o] * h[(size_t)n * R + r];
        if (!dinp && !dlora_a) continue;
        for (int r = 0; r < R; r++) {
            double s = 0;
            for (int o = 0; o < OC; o++) s += g[o] * lora_b[(size_t)o * R + r];
            dh[(size_t)n * R + r] = scale * s;
        }
        if (dlora_a)
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++)
                    dlora_a[(size_t)r * C + c] += dh[(size_t)n * R + r] * inp[(size_t)n * C + c];
        if (dinp)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int o = 0; o < OC; o++) s += g[o] * w[(size_t)o * C + c];
                for (int r = 0; r < R; r++) s += dh[(size_t)n * R + r] * lora_a[(size_t)r * C + c];
                dinp[(size_t)n * C + c] = s;
            }
    }
}

void lora_linear_forward(float *out, float *h, const float *inp, const float *w,
                         const float *b, const float *lora_a, const float *lora_b,
                         float scale, int N, int C, int OC, int R) {
    linear_forward(out, inp, w, b, N, C, OC);
    linear_forward(h, inp, lora_a, NULL, N, C, R);
    // out (N, OC) += scale * h (N, R) @ lora_b^T (R, OC)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, R,
                scale, h, R, lora_b, R, 1.0f, out, OC);
}

void lora_linear_backward(float *dinp, float *dlora_a, float *dlora_b, float *dh,
                          const float *dout, const float *inp, const float *h,
                          const float *w, const float *lora_a, const float *lora_b,
                          float scale, int N, int C, int OC, int R) {
    if (dlora_b)  // (OC, R) += scale * dout^T (OC, N) @ h (N, R)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, R, N,
                    scale, dout, OC, h, R, 1.0f, dlora_b, R);
    if (!dinp && !dlora_a) return;
    // dh (N, R) = scale * dout (N, OC) @ lora_b (OC, R)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, R, OC,
                scale, dout, OC, lora_b, R, 0.0f, dh, R);
    // dlora_a (R, C) += dh^T (R, N) @ inp (N, C): linear's weight gradient with h as out.
    linear_backward(NULL, dlora_a, NULL, dh, inp, lora_a, N, C, R);
    if (dinp) {
        linear_backward(dinp, NULL, NULL, dout, inp, w, N, C, OC);
        // dinp (N, C) += dh (N, R) @ lora_a (R, C)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, R,
                    1.0f, dh, R, lora_a, C, 1.0f, dinp, C);
    }
}
