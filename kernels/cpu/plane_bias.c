// Per-plane bias (kernels/plane_bias.h).
#include "kernels/plane_bias.h"

#include <stddef.h>

void plane_bias_forward_ref(double *x, const double *t, int B, int C, int HW) {
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int i = 0; i < HW; i++) x[p * HW + i] += t[p];
}

void plane_bias_backward_ref(double *dt, const double *dout, int B, int C, int HW) {
    for (size_t p = 0; p < (size_t)B * C; p++) {
        double s = 0;
        for (int i = 0; i < HW; i++) s += dout[p * HW + i];
        dt[p] = s;
    }
}

void plane_bias_forward(float *x, const float *t, int B, int C, int HW) {
    for (size_t p = 0; p < (size_t)B * C; p++) {
        float tv = t[p], *h = x + p * HW;
        for (int i = 0; i < HW; i++) h[i] += tv;
    }
}

void plane_bias_backward(float *dt, const float *dout, int B, int C, int HW) {
    for (size_t p = 0; p < (size_t)B * C; p++) {
        const float *g = dout + p * HW;
        double s = 0;
        for (int i = 0; i < HW; i++) s += g[i];
        dt[p] = (float)s;
    }
}
