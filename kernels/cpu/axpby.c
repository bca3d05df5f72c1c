#include "kernels/axpby.h"

void axpby_ref(double *y, double a, const double *x, double b, size_t n) {
    if (!x) {
        for (size_t i = 0; i < n; i++) y[i] = a * y[i];
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = a * y[i] + b * x[i];
}

void axpby(float *y, float a, const float *x, float b, size_t n) {
    if (!x) {
        for (size_t i = 0; i < n; i++) y[i] *= a;
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = a * y[i] + b * x[i];
}
