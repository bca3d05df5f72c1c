#include "kernels/layernorm.h"

#include <math.h>
#include <stddef.h>

void layernorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;  // biased, as PyTorch
        double r = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (x[c] - m) * r * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
        mean[n] = m;
        rstd[n] = r;
    }
}

// With xhat = (x - mean) * rstd and g = dout * w over a row of C values:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
void layernorm_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        double gm = 0, gx = 0;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - mean[n]) * rstd[n];
            double g = dy[c] * (w ? w[c] : 1.0);
            gm += g;
            gx += g * xhat;
            if (dw) dw[c] += dy[c] * xhat;
            if (db) db[c] += dy[c];
        }
        gm /= C;
        gx /= C;
        if (dinp)
            for (int c = 0; c < C; c++) {
                double xhat = (x[c] - mean[n]) * rstd[n];
                dinp[(size_t)n * C + c] = rstd[n] * (dy[c] * (w ? w[c] : 1.0) - gm - xhat * gx);
            }
    }
}

// Four independent double lanes: vectorizable without reassociation flags.
static double sum_f(const float *x, int n) {
    double acc[4] = {0, 0, 0, 0};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[0] += x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static double sumsq_dev_f(const float *x, int n, double m) {
    double acc[4] = {0, 0, 0, 0};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += (x[i + l] - m) * (x[i + l] - m);
    for (; i < n; i++) acc[0] += (x[i] - m) * (x[i] - m);
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double m = sum_f(x, C) / C;
        double r = 1.0 / sqrt(sumsq_dev_f(x, C, m) / C + eps);
        float mf = (float)m, rf = (float)r;
        if (w && b)
            for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * rf * w[c] + b[c];
        else
            for (int c = 0; c < C; c++)
                y[c] = (x[c] - mf) * rf * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
        mean[n] = mf;
        rstd[n] = rf;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float mf = mean[n], rf = rstd[n];
        // Row sums of g and g * xhat; double lanes as in sum_f.
        double gm[4] = {0, 0, 0, 0}, gx[4] = {0, 0, 0, 0};
        int c = 0;
        for (; c + 4 <= C; c += 4)
            for (int l = 0; l < 4; l++) {
                float xhat = (x[c + l] - mf) * rf, g = dy[c + l] * (w ? w[c + l] : 1.0f);
                gm[l] += g;
                gx[l] += (double)g * xhat;
            }
        for (; c < C; c++) {
            float xhat = (x[c] - mf) * rf, g = dy[c] * (w ? w[c] : 1.0f);
            gm[0] += g;
            gx[0] += (double)g * xhat;
        }
        if (dw)
            for (c = 0; c < C; c++) dw[c] += dy[c] * ((x[c] - mf) * rf);
        if (db)
            for (c = 0; c < C; c++) db[c] += dy[c];
        if (!dinp) continue;
        float a = (float)((gm[0] + gm[1] + gm[2] + gm[3]) / C);
        float k = (float)((gx[0] + gx[1] + gx[2] + gx[3]) / C);
        float *dx = dinp + (size_t)n * C;
        for (c = 0; c < C; c++) {
            float xhat = (x[c] - mf) * rf;
            dx[c] = rf * (dy[c] * (w ? w[c] : 1.0f) - a - xhat * k);
        }
    }
}
