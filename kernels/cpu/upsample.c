#include "kernels/upsample.h"

#include <stddef.h>
#include <string.h>

void upsample_nearest2x_forward_ref(double *out, const double *inp, int B, int C, int H, int W) {
    const int Ho = 2 * H, Wo = 2 * W;
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int y = 0; y < Ho; y++)
            for (int x = 0; x < Wo; x++)
                out[(p * Ho + y) * Wo + x] = inp[(p * H + y / 2) * W + x / 2];
}

void upsample_nearest2x_backward_ref(double *dinp, const double *dout, int B, int C, int H, int W) {
    const int Ho = 2 * H, Wo = 2 * W;
    memset(dinp, 0, (size_t)B * C * H * W * sizeof *dinp);
    for (size_t p = 0; p < (size_t)B * C; p++)
        for (int y = 0; y < Ho; y++)
            for (int x = 0; x < Wo; x++)
                dinp[(p * H + y / 2) * W + x / 2] += dout[(p * Ho + y) * Wo + x];
}

void upsample_nearest2x_forward(float *out, const float *inp, int B, int C, int H, int W) {
    const size_t rows = (size_t)B * C * H;
    for (size_t r = 0; r < rows; r++) {
        const float *x = inp + r * W;
        float *y = out + r * 4 * W;  // output rows 2r and 2r+1, each 2W wide
        for (int i = 0; i < W; i++) y[2 * i] = y[2 * i + 1] = x[i];
        memcpy(y + 2 * W, y, (size_t)2 * W * sizeof *y);
    }
}

void upsample_nearest2x_backward(float *dinp, const float *dout, int B, int C, int H, int W) {
    const size_t rows = (size_t)B * C * H;
    for (size_t r = 0; r < rows; r++) {
        const float *g0 = dout + r * 4 * W, *g1 = g0 + 2 * W;
        float *dx = dinp + r * W;
        for (int i = 0; i < W; i++) dx[i] = (g0[2 * i] + g0[2 * i + 1]) + (g1[2 * i] + g1[2 * i + 1]);
    }
}
