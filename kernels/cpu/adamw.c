#include "kernels/adamw.h"

#include <math.h>

void adamw_update_ref(double *p, const double *g, double *m, double *v, size_t n,
                      const adamw_hparams *hp, int t) {
    const double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
    for (size_t i = 0; i < n; i++) {
        p[i] -= hp->lr * hp->weight_decay * p[i];
        m[i] = hp->beta1 * m[i] + (1.0 - hp->beta1) * g[i];
        v[i] = hp->beta2 * v[i] + (1.0 - hp->beta2) * g[i] * g[i];
        p[i] -= hp->lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + hp->eps);
    }
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const adamw_hparams *hp, int t) {
    const float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    const float decay = (float)(1.0 - hp->lr * hp->weight_decay);
    // PyTorch's arrangement: p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
    const float step = (float)(hp->lr / (1.0 - pow(hp->beta1, t)));
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(hp->beta2, t)));
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = decay * p[i] - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}
