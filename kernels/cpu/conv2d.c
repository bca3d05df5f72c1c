#include "kernels/conv2d.h"

#include <cblas.h>
#include <string.h>

#include "runtime/error.h"

int conv2d_shape_check(const conv2d_shape *s) {
    const struct { const char *name; int v, min; } f[] = {
        {"B", s->B, 1}, {"C", s->C, 1}, {"H", s->H, 1}, {"W", s->W, 1}, {"OC", s->OC, 1},
        {"K", s->K, 1}, {"stride", s->stride, 1}, {"pad", s->pad, 0}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].min) return err_set("conv2d: %s = %d, must be >= %d", f[i].name, f[i].v, f[i].min);
    if (s->H + 2 * s->pad < s->K || s->W + 2 * s->pad < s->K)
        return err_set("conv2d: kernel %d larger than the padded input %dx%d (pad %d)",
                       s->K, s->H, s->W, s->pad);
    return 0;
}

void conv2d_forward_ref(double *out, const double *inp, const double *w, const double *b,
                        const conv2d_shape *s) {
    const int C = s->C, H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    for (int n = 0; n < s->B; n++)
        for (int o = 0; o < s->OC; o++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * S - P + ki, iw = ow * S - P + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += inp[(((size_t)n * C + c) * H + ih) * W + iw] *
                                       w[(((size_t)o * C + c) * K + ki) * K + kj];
                            }
                    out[(((size_t)n * s->OC + o) * Ho + oh) * Wo + ow] = acc;
                }
}

void conv2d_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                         const double *inp, const double *w, const conv2d_shape *s) {
    const int C = s->C, H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    if (dinp) memset(dinp, 0, (size_t)s->B * C * H * W * sizeof *dinp);
    for (int n = 0; n < s->B; n++)
        for (int o = 0; o < s->OC; o++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double g = dout[(((size_t)n * s->OC + o) * Ho + oh) * Wo + ow];
                    if (db) db[o] += g;
                    for (int c = 0; c < C; c++)
                        for (int ki = 0; ki < K; ki++)
                            for (int kj = 0; kj < K; kj++) {
                                int ih = oh * S - P + ki, iw = ow * S - P + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                size_t xi = (((size_t)n * C + c) * H + ih) * W + iw;
                                size_t wi = (((size_t)o * C + c) * K + ki) * K + kj;
                                if (dw) dw[wi] += g * inp[xi];
                                if (dinp) dinp[xi] += g * w[wi];
                            }
                }
}

static int is_pointwise(const conv2d_shape *s) { return s->K == 1 && s->stride == 1 && s->pad == 0; }

size_t conv2d_scratch_floats(const conv2d_shape *s) {
    if (is_pointwise(s)) return 0;
    return (size_t)s->C * s->K * s->K * conv2d_out_h(s) * conv2d_out_w(s);
}

// Outputs o in [*lo, *hi) read an input inside [0, n) at o*S - P + k.
static void valid_range(int k, int n, int S, int P, int out_n, int *lo, int *hi) {
    int first = P - k, end = n + P - k;  // need first <= o*S < end
    *lo = first > 0 ? (first + S - 1) / S : 0;
    *hi = end > 0 ? (end + S - 1) / S : 0;
    if (*hi > out_n) *hi = out_n;
    if (*lo > *hi) *lo = *hi;
}

// One image (C, H, W) -> col (C*K*K, Ho*Wo): row (c, ki, kj), column (oh, ow) holds
// x[c, oh*S - P + ki, ow*S - P + kj], or 0 in the padding.
static void im2col(float *col, const float *img, const conv2d_shape *s) {
    const int H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    for (int c = 0; c < s->C; c++) {
        const float *x = img + (size_t)c * H * W;
        for (int ki = 0; ki < K; ki++) {
            int oh_lo, oh_hi;
            valid_range(ki, H, S, P, Ho, &oh_lo, &oh_hi);
            for (int kj = 0; kj < K; kj++, col += (size_t)Ho * Wo) {
                int ow_lo, ow_hi;
                valid_range(kj, W, S, P, Wo, &ow_lo, &ow_hi);
                memset(col, 0, (size_t)oh_lo * Wo * sizeof *col);
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    float *r = col + (size_t)oh * Wo;
                    const float *xr = x + (size_t)(oh * S - P + ki) * W;
                    memset(r, 0, (size_t)ow_lo * sizeof *r);
                    for (int ow = ow_lo; ow < ow_hi; ow++) r[ow] = xr[ow * S - P + kj];
                    memset(r + ow_hi, 0, (size_t)(Wo - ow_hi) * sizeof *r);
                }
                memset(col + (size_t)oh_hi * Wo, 0, (size_t)(Ho - oh_hi) * Wo * sizeof *col);
            }
        }
    }
}

// The adjoint of im2col: img (C, H, W) = sum of the col entries read from each pixel.
static void col2im(float *img, const float *col, const conv2d_shape *s) {
    const int H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    memset(img, 0, (size_t)s->C * H * W * sizeof *img);
    for (int c = 0; c < s->C; c++) {
        float *x = img + (size_t)c * H * W;
        for (int ki = 0; ki < K; ki++) {
            int oh_lo, oh_hi;
            valid_range(ki, H, S, P, Ho, &oh_lo, &oh_hi);
            for (int kj = 0; kj < K; kj++, col += (size_t)Ho * Wo) {
                int ow_lo, ow_hi;
                valid_range(kj, W, S, P, Wo, &ow_lo, &ow_hi);
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    const float *r = col + (size_t)oh * Wo;
                    float *xr = x + (size_t)(oh * S - P + ki) * W;
                    for (int ow = ow_lo; ow < ow_hi; ow++) xr[ow * S - P + kj] += r[ow];
                }
            }
        }
    }
}

void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch) {
    const int C = s->C, OC = s->OC, CKK = s->C * s->K * s->K;
    const int HWo = conv2d_out_h(s) * conv2d_out_w(s);
    for (int n = 0; n < s->B; n++) {
        const float *x = inp + (size_t)n * C * s->H * s->W;
        float *y = out + (size_t)n * OC * HWo;
        if (b)
            for (int o = 0; o < OC; o++)
                for (int i = 0; i < HWo; i++) y[(size_t)o * HWo + i] = b[o];
        const float *col = x;
        if (!is_pointwise(s)) {
            im2col(scratch, x, s);
            col = scratch;
        }
        // y (OC, HWo) (+)= w (OC, CKK) @ col (CKK, HWo)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, HWo, CKK,
                    1.0f, w, CKK, col, HWo, b ? 1.0f : 0.0f, y, HWo);
    }
}

void conv2d_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, const conv2d_shape *s, float *scratch) {
    const int C = s->C, OC = s->OC, CKK = s->C * s->K * s->K;
    const int HWo = conv2d_out_h(s) * conv2d_out_w(s);
    const size_t HW = (size_t)s->H * s->W;
    const int pointwise = is_pointwise(s);
    for (int n = 0; n < s->B; n++) {
        const float *g = dout + (size_t)n * OC * HWo;
        if (db)
            for (int o = 0; o < OC; o++) {
                float acc = 0;
                for (int i = 0; i < HWo; i++) acc += g[(size_t)o * HWo + i];
                db[o] += acc;
            }
        if (dw) {
            const float *col = inp + (size_t)n * C * HW;
            if (!pointwise) {
                im2col(scratch, col, s);
                col = scratch;
            }
            // dw (OC, CKK) += g (OC, HWo) @ col^T (HWo, CKK)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, HWo,
                        1.0f, g, HWo, col, HWo, 1.0f, dw, CKK);
        }
        if (dinp) {
            float *dx = dinp + (size_t)n * C * HW;
            float *dcol = pointwise ? dx : scratch;
            // dcol (CKK, HWo) = w^T (CKK, OC) @ g (OC, HWo)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, HWo, OC,
                        1.0f, w, CKK, g, HWo, 0.0f, dcol, HWo);
            if (!pointwise) col2im(dx, dcol, s);
        }
    }
}
