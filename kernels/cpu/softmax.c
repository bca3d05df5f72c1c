#include "kernels/softmax.h"

#include <math.h>
#include <stddef.h>

void softmax_forward_ref(double *out, const double *inp, int N, int M) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * M;
        double *y = out + (size_t)n * M;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < M; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < M; j++) s += exp(x[j] - mx);
        for (int j = 0; j < M; j++) y[j] = exp(x[j] - mx) / s;
    }
}

void softmax_backward_ref(double *dinp, const double *dout, const double *out, int N, int M) {
    if (!dinp) return;
    for (int n = 0; n < N; n++) {
        const double *y = out + (size_t)n * M, *dy = dout + (size_t)n * M;
        double s = 0;
        for (int j = 0; j < M; j++) s += dy[j] * y[j];
        for (int j = 0; j < M; j++) dinp[(size_t)n * M + j] = y[j] * (dy[j] - s);
    }
}

// exp is written to out first, then scaled by 1/sum: two passes over the row, with
// the sum in double (rows may be long, e.g. 4096 keys).
void softmax_forward(float *out, const float *inp, int N, int M) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * M;
        float *y = out + (size_t)n * M;
        float mx = -INFINITY;
        for (int j = 0; j < M; j++) mx = x[j] > mx ? x[j] : mx;
        double s = 0;
        for (int j = 0; j < M; j++) {
            y[j] = expf(x[j] - mx);
            s += y[j];
        }
        float inv = (float)(1.0 / s);
        for (int j = 0; j < M; j++) y[j] *= inv;
    }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int N, int M) {
    if (!dinp) return;
    for (int n = 0; n < N; n++) {
        const float *y = out + (size_t)n * M, *dy = dout + (size_t)n * M;
        float *dx = dinp + (size_t)n * M;
        double s = 0;
        for (int j = 0; j < M; j++) s += (double)dy[j] * y[j];
        float sf = (float)s;
        for (int j = 0; j < M; j++) dx[j] = y[j] * (dy[j] - sf);
    }
}
