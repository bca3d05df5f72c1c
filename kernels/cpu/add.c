#include "kernels/add.h"

#include <string.h>

void add_forward_ref(double *out, const double *a, const double *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void add_backward_ref(double *da, double *db, const double *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] = dout[i];
        if (db) db[i] = dout[i];
    }
}

void add_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];  // vectorised by the compiler
}

void add_backward(float *da, float *db, const float *dout, size_t n) {
    if (da && da != dout) memcpy(da, dout, n * sizeof *da);
    if (db && db != dout) memcpy(db, dout, n * sizeof *db);
}
