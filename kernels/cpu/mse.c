#include "kernels/mse.h"

double mse_loss_forward_ref(const double *pred, const double *target, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (pred[i] - target[i]) * (pred[i] - target[i]);
    return s / (double)n;
}

void mse_loss_backward_ref(double *dpred, const double *pred, const double *target,
                           double dloss, size_t n) {
    for (size_t i = 0; i < n; i++) dpred[i] = 2.0 * (pred[i] - target[i]) / (double)n * dloss;
}

double mse_loss_forward(const float *pred, const float *target, size_t n) {
    // Eight independent partial sums let the compiler vectorise without reassociating.
    double part[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            double d = (double)pred[i + j] - (double)target[i + j];
            part[j] += d * d;
        }
    for (; i < n; i++) {
        double d = (double)pred[i] - (double)target[i];
        part[0] += d * d;
    }
    double s = 0;
    for (int j = 0; j < 8; j++) s += part[j];
    return s / (double)n;
}

void mse_loss_backward(float *dpred, const float *pred, const float *target,
                       float dloss, size_t n) {
    const float k = (float)(2.0 * dloss / (double)n);
    for (size_t i = 0; i < n; i++) dpred[i] = k * (pred[i] - target[i]);
}
