#include "kernels/linear.h"

#include <cblas.h>
#include <stddef.h>

void linear_forward_ref(double *out, const double *inp, const double *w, const double *b,
                        int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) s += inp[(size_t)n * C + c] * w[(size_t)o * C + c];
            out[(size_t)n * OC + o] = s;
        }
}

void linear_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                         const double *inp, const double *w, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        const double *g = dout + (size_t)n * OC;
        if (dinp)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int o = 0; o < OC; o++) s += g[o] * w[(size_t)o * C + c];
                dinp[(size_t)n * C + c] = s;
            }
        for (int o = 0; o < OC; o++) {
            if (db) db[o] += g[o];
            if (dw)
                for (int c = 0; c < C; c++) dw[(size_t)o * C + c] += g[o] * inp[(size_t)n * C + c];
        }
    }
}

// out[n, :] = b for every row; the GEMM then adds onto it (beta = 1).
static void broadcast_rows(float *out, const float *b, int N, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) out[(size_t)n * OC + o] = b[o];
}

void linear_forward(float *out, const float *inp, const float *w, const float *b,
                    int N, int C, int OC) {
    if (b) broadcast_rows(out, b, N, OC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C,
                1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)  // (N, C) = dout (N, OC) @ w (OC, C)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
                    1.0f, dout, OC, w, C, 0.0f, dinp, C);
    if (dw)  // (OC, C) += dout^T (OC, N) @ inp (N, C)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N,
                    1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) db[o] += dout[(size_t)n * OC + o];
}
