#include "kernels/concat.h"

#include <stddef.h>
#include <string.h>

void concat_channels_forward_ref(double *out, const double *a, const double *b,
                                 int B, int C1, int C2, int HW) {
    const int C = C1 + C2;
    for (int n = 0; n < B; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++)
                out[((size_t)n * C + c) * HW + i] = c < C1 ? a[((size_t)n * C1 + c) * HW + i]
                                                           : b[((size_t)n * C2 + c - C1) * HW + i];
}

void concat_channels_backward_ref(double *da, double *db, const double *dout,
                                  int B, int C1, int C2, int HW) {
    const int C = C1 + C2;
    for (int n = 0; n < B; n++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++) {
                double g = dout[((size_t)n * C + c) * HW + i];
                if (c < C1 && da) da[((size_t)n * C1 + c) * HW + i] = g;
                if (c >= C1 && db) db[((size_t)n * C2 + c - C1) * HW + i] = g;
            }
}

void concat_channels_forward(float *out, const float *a, const float *b,
                             int B, int C1, int C2, int HW) {
    const size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
    for (int n = 0; n < B; n++) {
        float *o = out + n * (na + nb);
        memcpy(o, a + n * na, na * sizeof *o);
        memcpy(o + na, b + n * nb, nb * sizeof *o);
    }
}

void concat_channels_backward(float *da, float *db, const float *dout,
                              int B, int C1, int C2, int HW) {
    const size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
    for (int n = 0; n < B; n++) {
        const float *g = dout + n * (na + nb);
        if (da) memcpy(da + n * na, g, na * sizeof *da);
        if (db) memcpy(db + n * nb, g + na, nb * sizeof *db);
    }
}
