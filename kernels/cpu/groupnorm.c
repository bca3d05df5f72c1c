#include "kernels/groupnorm.h"

#include <math.h>
#include <stddef.h>

void groupnorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, int B, int C, int HW, int G,
                           double eps) {
    int Cg = C / G;
    size_t n = (size_t)Cg * HW;
    for (int bi = 0; bi < B; bi++)
        for (int g = 0; g < G; g++) {
            size_t base = ((size_t)bi * C + (size_t)g * Cg) * HW;  // group is contiguous
            double m = 0, v = 0;
            for (size_t i = 0; i < n; i++) m += inp[base + i];
            m /= (double)n;
            for (size_t i = 0; i < n; i++) v += (inp[base + i] - m) * (inp[base + i] - m);
            v /= (double)n;  // biased, as PyTorch
            double r = 1.0 / sqrt(v + eps);
            for (int c = g * Cg; c < (g + 1) * Cg; c++)
                for (int s = 0; s < HW; s++) {
                    size_t i = ((size_t)bi * C + c) * HW + s;
                    double y = (inp[i] - m) * r;
                    out[i] = y * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
                }
            mean[bi * G + g] = m;
            rstd[bi * G + g] = r;
        }
}

// With xhat = (x - mean) * rstd and g = dout * w, per group of n values:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
void groupnorm_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, int B, int C, int HW, int G) {
    int Cg = C / G;
    size_t n = (size_t)Cg * HW;
    for (int bi = 0; bi < B; bi++)
        for (int g = 0; g < G; g++) {
            double m = mean[bi * G + g], r = rstd[bi * G + g];
            double gm = 0, gx = 0;
            for (int c = g * Cg; c < (g + 1) * Cg; c++)
                for (int s = 0; s < HW; s++) {
                    size_t i = ((size_t)bi * C + c) * HW + s;
                    double xhat = (inp[i] - m) * r;
                    double gi = dout[i] * (w ? w[c] : 1.0);
                    gm += gi;
                    gx += gi * xhat;
                    if (dw) dw[c] += dout[i] * xhat;
                    if (db) db[c] += dout[i];
                }
            gm /= (double)n;
            gx /= (double)n;
            if (!dinp) continue;
            for (int c = g * Cg; c < (g + 1) * Cg; c++)
                for (int s = 0; s < HW; s++) {
                    size_t i = ((size_t)bi * C + c) * HW + s;
                    double xhat = (inp[i] - m) * r;
                    dinp[i] = r * (dout[i] * (w ? w[c] : 1.0) - gm - xhat * gx);
                }
        }
}

// Sums with four independent double lanes so that the compiler can vectorize without
// reassociation flags; double because a group may hold ~10^5 values.
static double sum_f(const float *x, size_t n) {
    double acc[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[0] += x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static double sumsq_dev_f(const float *x, size_t n, double m) {
    double acc[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += (x[i + l] - m) * (x[i + l] - m);
    for (; i < n; i++) acc[0] += (x[i] - m) * (x[i] - m);
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static double dot_f(const float *x, const float *y, size_t n) {
    double acc[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) acc[l] += (double)x[i + l] * y[i + l];
    for (; i < n; i++) acc[0] += (double)x[i] * y[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

void groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int B, int C, int HW, int G,
                       float eps) {
    int Cg = C / G;
    size_t n = (size_t)Cg * HW;
    for (int bi = 0; bi < B; bi++)
        for (int g = 0; g < G; g++) {
            const float *x = inp + ((size_t)bi * C + (size_t)g * Cg) * HW;
            float *y = out + ((size_t)bi * C + (size_t)g * Cg) * HW;
            double m = sum_f(x, n) / (double)n;
            double r = 1.0 / sqrt(sumsq_dev_f(x, n, m) / (double)n + eps);
            for (int c = 0; c < Cg; c++) {
                // (x - mean) is formed first: folding mean into the bias term would
                // cancel catastrophically when |mean| >> std.
                float mf = (float)m, a = (float)(r * (w ? w[g * Cg + c] : 1.0f));
                float s = b ? b[g * Cg + c] : 0.0f;
                const float *xc = x + (size_t)c * HW;
                float *yc = y + (size_t)c * HW;
                for (int i = 0; i < HW; i++) yc[i] = (xc[i] - mf) * a + s;
            }
            mean[bi * G + g] = (float)m;
            rstd[bi * G + g] = (float)r;
        }
}

// Per channel only two sums are needed, s1 = sum(dout) and s2 = sum(dout * x); the
// group terms of the reference follow from them, and dx is one more pass:
//   dx = dout * (rstd w_c) + (x - mean) * k + s,  k = -rstd^2 mean(g xhat),
//   s = -rstd mean(g).
void groupnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int B, int C, int HW, int G) {
    int Cg = C / G;
    double n = (double)Cg * HW;
    for (int bi = 0; bi < B; bi++)
        for (int g = 0; g < G; g++) {
            double m = mean[bi * G + g], r = rstd[bi * G + g];
            double gm = 0, gx = 0;
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                const float *x = inp + ((size_t)bi * C + c) * HW;
                const float *dy = dout + ((size_t)bi * C + c) * HW;
                double s1 = sum_f(dy, HW), s2 = dot_f(dy, x, HW);
                double sx = r * (s2 - m * s1);  // sum(dout * xhat) over the channel
                double wc = w ? w[c] : 1.0;
                gm += wc * s1;
                gx += wc * sx;
                if (dw) dw[c] += (float)sx;
                if (db) db[c] += (float)s1;
            }
            if (!dinp) continue;
            gm /= n;
            gx /= n;
            float kf = (float)(-r * r * gx), s = (float)(-r * gm), mf = (float)m;
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                const float *x = inp + ((size_t)bi * C + c) * HW;
                const float *dy = dout + ((size_t)bi * C + c) * HW;
                float *dx = dinp + ((size_t)bi * C + c) * HW;
                float a = (float)(r * (w ? w[c] : 1.0f));
                for (int i = 0; i < HW; i++) dx[i] = dy[i] * a + (x[i] - mf) * kf + s;
            }
        }
}
