#include "kernels/conv2d.h"

#include <cblas.h>
#include <string.h>

#include "kernels/cpu/conv2d_direct.h"
#include "runtime/error.h"

int conv2d_cpu_direct = 1;

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

// A stride-1 "same" convolution (odd K, pad (K-1)/2) has a backward-data pass that is
// itself a forward convolution: dinp = conv(dout, w flipped in space, C and OC
// swapped). That gathers (im2col of dout, then one GEMM with K = OC*K*K) instead of
// scattering (GEMM to a K*K-times larger buffer, then col2im's read-add-write).
static int is_same(const conv2d_shape *s) { return s->stride == 1 && 2 * s->pad == s->K - 1 && s->K > 1; }

// Images per GEMM: small images (8x8 = 64 columns) make OpenBLAS's GEMMs too thin, so
// a group of G images shares one GEMM with G*Ho*Wo columns (about 1024).
static int group_size(const conv2d_shape *s) {
    int hw = conv2d_out_h(s) * conv2d_out_w(s), g = (1024 + hw - 1) / hw;
    return g < s->B ? g : s->B;
}

// Scratch layout: col | tmp | wflip.
//   col   (C*K*K, G*HWo): im2col of a group of inp; for is_same (OC*K*K, G*HWo) too,
//         im2col of dout (none for a single pointwise image: the GEMM reads inp)
//   tmp   (max(C, OC), G*HWo): the group's GEMM output or gathered dout (only G > 1)
//   wflip (C, OC*K*K): the flipped weights (only is_same)
typedef struct { float *col, *tmp, *wflip; } conv_scratch;

static size_t scratch_parts(const conv2d_shape *s, size_t *col, size_t *tmp) {
    const size_t G = (size_t)group_size(s), HWo = (size_t)conv2d_out_h(s) * conv2d_out_w(s);
    const size_t CM = (size_t)(s->C > s->OC ? s->C : s->OC), KK = (size_t)s->K * s->K;
    *col = is_pointwise(s) && G == 1 ? 0 : (is_same(s) ? CM : (size_t)s->C) * KK * G * HWo;
    *tmp = G > 1 ? CM * G * HWo : 0;
    return *col + *tmp + (is_same(s) ? (size_t)s->C * s->OC * KK : 0);
}

static conv_scratch scratch_split(const conv2d_shape *s, float *base) {
    size_t col, tmp;
    scratch_parts(s, &col, &tmp);
    return (conv_scratch){base, tmp ? base + col : NULL, is_same(s) ? base + col + tmp : NULL};
}

static int use_direct(const conv2d_shape *s) { return conv2d_cpu_direct && conv2d_direct_ok(s); }

// The direct kernel's scratch, then the flipped weights for backward data.
size_t conv2d_scratch_floats(const conv2d_shape *s) {
    size_t col, tmp;
    if (use_direct(s)) return conv2d_direct_scratch_floats(s) + (size_t)s->C * s->OC * 9;
    return scratch_parts(s, &col, &tmp);
}

// Outputs o in [*lo, *hi) read an input inside [0, n) at o*S - P + k.
static void valid_range(int k, int n, int S, int P, int out_n, int *lo, int *hi) {
    int first = P - k, end = n + P - k;  // need first <= o*S < end
    *lo = first > 0 ? (first + S - 1) / S : 0;
    *hi = end > 0 ? (end + S - 1) / S : 0;
    if (*hi > out_n) *hi = out_n;
    if (*lo > *hi) *lo = *hi;
}

// One image (C, H, W) -> col (C*K*K, Ho*Wo) with rows `ld` floats apart: row
// (c, ki, kj), column (oh, ow) holds x[c, oh*S - P + ki, ow*S - P + kj], or 0 in the
// padding. Plain loops rather than memcpy/memset: the rows are short (8-64 floats),
// where a library call costs more than the copy.
static void im2col(float *col, size_t ld, const float *img, const conv2d_shape *s) {
    const int H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    for (int c = 0; c < s->C; c++) {
        const float *x = img + (size_t)c * H * W;
        for (int ki = 0; ki < K; ki++) {
            int oh_lo, oh_hi;
            valid_range(ki, H, S, P, Ho, &oh_lo, &oh_hi);
            for (int kj = 0; kj < K; kj++, col += ld) {
                int ow_lo, ow_hi;
                valid_range(kj, W, S, P, Wo, &ow_lo, &ow_hi);
                for (int i = 0; i < oh_lo * Wo; i++) col[i] = 0;
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    float *r = col + (size_t)oh * Wo;
                    const float *xr = x + (size_t)(oh * S - P + ki) * W;
                    const int off = kj - P;
                    for (int ow = 0; ow < ow_lo; ow++) r[ow] = 0;
                    if (S == 1)
                        for (int ow = ow_lo; ow < ow_hi; ow++) r[ow] = xr[ow + off];
                    else
                        for (int ow = ow_lo; ow < ow_hi; ow++) r[ow] = xr[ow * S + off];
                    for (int ow = ow_hi; ow < Wo; ow++) r[ow] = 0;
                }
                for (size_t i = (size_t)oh_hi * Wo; i < (size_t)Ho * Wo; i++) col[i] = 0;
            }
        }
    }
}

// The adjoint of im2col: img (C, H, W) = sum of the col entries read from each pixel.
static void col2im(float *img, const float *col, size_t ld, const conv2d_shape *s) {
    const int H = s->H, W = s->W, K = s->K, S = s->stride, P = s->pad;
    const int Ho = conv2d_out_h(s), Wo = conv2d_out_w(s);
    memset(img, 0, (size_t)s->C * H * W * sizeof *img);
    for (int c = 0; c < s->C; c++) {
        float *x = img + (size_t)c * H * W;
        for (int ki = 0; ki < K; ki++) {
            int oh_lo, oh_hi;
            valid_range(ki, H, S, P, Ho, &oh_lo, &oh_hi);
            for (int kj = 0; kj < K; kj++, col += ld) {
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

// Images n0..n0+g-1 of x (rows of `rows` x `hw` each) side by side: dst (rows, g*hw).
static void gather(float *dst, const float *x, int n0, int g, int rows, size_t hw) {
    for (int j = 0; j < g; j++)
        for (int r = 0; r < rows; r++)
            memcpy(dst + (size_t)r * g * hw + j * hw, x + ((size_t)(n0 + j) * rows + r) * hw, hw * sizeof *dst);
}

// The inverse of gather.
static void scatter(float *x, const float *src, int n0, int g, int rows, size_t hw) {
    for (int j = 0; j < g; j++)
        for (int r = 0; r < rows; r++)
            memcpy(x + ((size_t)(n0 + j) * rows + r) * hw, src + (size_t)r * g * hw + j * hw, hw * sizeof *x);
}

// col (C*K*K, g*HWo) for images n0..n0+g-1 of x, or x itself for a single pointwise image.
static const float *group_col(float *col, const float *x, int n0, int g, const conv2d_shape *s) {
    const size_t HWo = (size_t)conv2d_out_h(s) * conv2d_out_w(s), HW = (size_t)s->H * s->W;
    if (is_pointwise(s) && g == 1) return x + (size_t)n0 * s->C * HW;
    for (int j = 0; j < g; j++) im2col(col + j * HWo, g * HWo, x + (size_t)(n0 + j) * s->C * HW, s);
    return col;
}

void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch) {
    const int OC = s->OC, CKK = s->C * s->K * s->K, G = group_size(s);
    const size_t HWo = (size_t)conv2d_out_h(s) * conv2d_out_w(s);
    if (use_direct(s)) {
        conv2d_direct_forward(out, inp, w, b, s, scratch);
        return;
    }
    conv_scratch sc = scratch_split(s, scratch);
    for (int n0 = 0; n0 < s->B; n0 += G) {
        const int g = s->B - n0 < G ? s->B - n0 : G;
        const size_t N = g * HWo;
        float *y = g > 1 ? sc.tmp : out + (size_t)n0 * OC * HWo;
        if (b)
            for (int o = 0; o < OC; o++)
                for (size_t i = 0; i < N; i++) y[o * N + i] = b[o];
        const float *col = group_col(sc.col, inp, n0, g, s);
        // y (OC, N) (+)= w (OC, CKK) @ col (CKK, N)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, (int)N, CKK,
                    1.0f, w, CKK, col, (int)N, b ? 1.0f : 0.0f, y, (int)N);
        if (g > 1) scatter(out, y, n0, g, OC, HWo);
    }
}

// db (OC) += the sum of dout (B, OC, HW) over images and pixels.
static void add_bias_grad(float *db, const float *dout, int B, int OC, size_t HW) {
    for (int o = 0; o < OC; o++) {
        float acc = 0;
        for (int n = 0; n < B; n++)
            for (size_t i = 0; i < HW; i++) acc += dout[((size_t)n * OC + o) * HW + i];
        db[o] += acc;
    }
}

// wflip (C, OC, K, K)[c, o, i, j] = w (OC, C, K, K)[o, c, K-1-i, K-1-j]
static void flip_weights(float *wflip, const float *w, const conv2d_shape *s) {
    const int C = s->C, OC = s->OC, K = s->K, KK = K * K;
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++)
            for (int k = 0; k < KK; k++)
                wflip[((size_t)c * OC + o) * KK + k] = w[((size_t)o * C + c) * KK + (KK - 1 - k)];
}

void conv2d_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, const conv2d_shape *s, float *scratch) {
    const int C = s->C, OC = s->OC, CKK = s->C * s->K * s->K, G = group_size(s);
    const size_t HWo = (size_t)conv2d_out_h(s) * conv2d_out_w(s), HW = (size_t)s->H * s->W;
    // The transposed problem for is_same: dout (B, OC, H, W) in, dinp (B, C, H, W) out.
    const conv2d_shape st = {s->B, OC, s->H, s->W, C, s->K, 1, s->pad};
    if (db) add_bias_grad(db, dout, s->B, OC, HWo);
    if (use_direct(s)) {
        if (dw) conv2d_direct_backward_weight(dw, dout, inp, s, scratch);
        if (!dinp) return;
        float *wflip = scratch + conv2d_direct_scratch_floats(s);
        flip_weights(wflip, w, s);
        conv2d_direct_forward(dinp, dout, wflip, NULL, &st, scratch);
        return;
    }
    conv_scratch sc = scratch_split(s, scratch);
    if (dinp && is_same(s)) flip_weights(sc.wflip, w, s);
    for (int n0 = 0; n0 < s->B; n0 += G) {
        const int g = s->B - n0 < G ? s->B - n0 : G;
        const size_t N = g * HWo;
        const float *gy = dout + (size_t)n0 * OC * HWo;  // dout of the group, (OC, N)
        if (g > 1) gather(sc.tmp, dout, n0, g, OC, HWo), gy = sc.tmp;
        if (dw) {
            const float *col = group_col(sc.col, inp, n0, g, s);
            // dw (OC, CKK) += gy (OC, N) @ col^T (N, CKK)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, CKK, (int)N,
                        1.0f, gy, (int)N, col, (int)N, 1.0f, dw, CKK);
        }
        if (!dinp) continue;
        float *dx = g > 1 ? sc.tmp : dinp + (size_t)n0 * C * HW;  // (C, g*HW)
        if (is_same(s)) {
            const float *col = group_col(sc.col, dout, n0, g, &st);
            // dx (C, N) = wflip (C, OC*K*K) @ col (OC*K*K, N); N = g*HW here
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int)N, OC * s->K * s->K,
                        1.0f, sc.wflip, OC * s->K * s->K, col, (int)N, 0.0f, dx, (int)N);
            if (g > 1) scatter(dinp, dx, n0, g, C, HW);
            continue;
        }
        // dcol (CKK, N) = w^T (CKK, OC) @ gy (OC, N), then col2im image by image; a
        // single pointwise image's dcol is dx itself.
        const int direct = is_pointwise(s) && g == 1;
        float *dcol = direct ? dx : sc.col;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, CKK, (int)N, OC,
                    1.0f, w, CKK, gy, (int)N, 0.0f, dcol, (int)N);
        if (direct) continue;
        for (int j = 0; j < g; j++) col2im(dinp + (size_t)(n0 + j) * C * HW, dcol + j * HWo, N, s);
    }
}
