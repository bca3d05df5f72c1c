// The VAE's blocks, forward only (see vae_modules.h).
#include "models/vae_modules.h"

#include <stdio.h>
#include <string.h>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/conv2d.h"
#include "kernels/groupnorm.h"
#include "kernels/linear.h"
#include "runtime/error.h"

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static void need_stream(vae_work *w, size_t floats) { w->need.stream = zmax(w->need.stream, floats); }

// ---- convolution in bands of output rows ----

// A band: `rows` output rows from rows_in = (rows - 1) * stride + K input rows, copied
// with their zero padding into `in` (C, rows_in, Wp), im2col'd into `col`, computed
// into `out` (OC, rows, Wo), then copied into place.
typedef struct conv_band {
    int Ho, Wo, Wp, rows;
    size_t in, col, out;  // floats of each part of the workspace
} conv_band;

static conv_band band_plan(const unet_conv *c, int H, int W, int lo, int hi, size_t budget) {
    conv_band b = {.Ho = (H + lo + hi - c->k) / c->stride + 1, .Wo = (W + lo + hi - c->k) / c->stride + 1,
                   .Wp = W + lo + hi};
    size_t C = (size_t)c->in, KK = (size_t)c->k * c->k;
    size_t per_row = C * KK * b.Wo + C * c->stride * b.Wp + (size_t)c->out * b.Wo;
    size_t fixed = C * c->k * b.Wp;
    size_t rows = budget > fixed ? (budget - fixed) / per_row : 1;
    b.rows = rows < 1 ? 1 : rows > (size_t)b.Ho ? b.Ho : (int)rows;
    b.in = C * ((size_t)(b.rows - 1) * c->stride + c->k) * b.Wp;
    b.col = C * KK * b.rows * b.Wo;
    b.out = (size_t)c->out * b.rows * b.Wo;
    return b;
}

static int pointwise(const unet_conv *c, int lo, int hi) {
    return c->k == 1 && c->stride == 1 && lo == 0 && hi == 0;
}

void vae_conv_forward(const unet_conv *c, vae_work *w, float *out, const float *inp, int B,
                      int H, int W, int pad_lo, int pad_hi) {
    conv_band band = band_plan(c, H, W, pad_lo, pad_hi, w->band_budget);
    if (w->plan) {
        need_stream(w, zmax((size_t)B * c->in * H * W, (size_t)B * c->out * band.Ho * band.Wo));
        if (!pointwise(c, pad_lo, pad_hi))
            w->need.conv = zmax(w->need.conv, band.in + band.col + band.out);
        return;
    }
    if (pointwise(c, pad_lo, pad_hi)) {  // a plain GEMM over each image: no workspace
        conv2d_shape s = {.B = 1, .C = c->in, .H = H, .W = W, .OC = c->out, .K = 1, .stride = 1};
        for (int n = 0; n < B; n++)
            conv2d_forward(out + (size_t)n * c->out * H * W, inp + (size_t)n * c->in * H * W,
                           c->w, c->b, &s, NULL);
        return;
    }
    const int S = c->stride, K = c->k, Ho = band.Ho, Wo = band.Wo, Wp = band.Wp;
    float *bin = w->conv_ws, *col = bin + band.in, *bout = col + band.col;
    for (int n = 0; n < B; n++) {
        const float *x = inp + (size_t)n * c->in * H * W;
        float *y = out + (size_t)n * c->out * Ho * Wo;
        for (int r0 = 0; r0 < Ho; r0 += band.rows) {
            int nr = Ho - r0 < band.rows ? Ho - r0 : band.rows;
            int rin = (nr - 1) * S + K, ir0 = r0 * S - pad_lo;
            memset(bin, 0, (size_t)c->in * rin * Wp * sizeof *bin);
            for (int ch = 0; ch < c->in; ch++)
                for (int i = 0; i < rin; i++) {
                    int ir = ir0 + i;
                    if (ir < 0 || ir >= H) continue;  // a padding row
                    memcpy(bin + ((size_t)ch * rin + i) * Wp + pad_lo, x + ((size_t)ch * H + ir) * W,
                           (size_t)W * sizeof *bin);
                }
            conv2d_shape s = {.B = 1, .C = c->in, .H = rin, .W = Wp, .OC = c->out, .K = K,
                              .stride = S, .pad = 0};
            conv2d_forward(bout, bin, c->w, c->b, &s, col);
            for (int o = 0; o < c->out; o++)
                memcpy(y + ((size_t)o * Ho + r0) * Wo, bout + (size_t)o * nr * Wo,
                       (size_t)nr * Wo * sizeof *y);
        }
    }
}

// ---- norms ----

static void need_stats(vae_work *w, int B, const unet_norm *n) {
    w->need.stats = zmax(w->need.stats, (size_t)B * n->groups);
}

static void norm_forward(const unet_norm *n, vae_work *w, float *out, const float *x, int B,
                         int HW) {
    groupnorm_forward(out, w->mean, w->rstd, x, n->w, n->b, B, n->C, HW, n->groups, n->eps);
}

void vae_norm_silu_forward(const unet_norm *n, vae_work *w, int B, int HW) {
    size_t X = (size_t)B * n->C * HW;
    if (w->plan) {
        need_stats(w, B, n);
        need_stream(w, X);
        return;
    }
    float *out = vae_buf(w, 1);
    norm_forward(n, w, out, vae_buf(w, 0), B, HW);
    silu_forward(out, out, X);
    w->cur = (w->cur + 1) % 3;
}

// ---- ResnetBlock2D ----

void vae_resnet_forward(const unet_resnet *r, vae_work *w, int B, int H, int W) {
    int HW = H * W;
    size_t Y = (size_t)B * r->cout * HW;
    float *x = vae_buf(w, 0), *t1 = vae_buf(w, 1), *t2 = vae_buf(w, 2);
    if (w->plan) {
        need_stats(w, B, &r->norm1);
        need_stream(w, (size_t)B * r->cin * HW);
        need_stream(w, Y);
        vae_conv_forward(&r->conv1, w, NULL, NULL, B, H, W, 1, 1);
        vae_conv_forward(&r->conv2, w, NULL, NULL, B, H, W, 1, 1);
        return;
    }
    // x stays intact for the shortcut; t1 and t2 take turns.
    norm_forward(&r->norm1, w, t1, x, B, HW);
    silu_forward(t1, t1, (size_t)B * r->cin * HW);
    vae_conv_forward(&r->conv1, w, t2, t1, B, H, W, 1, 1);
    norm_forward(&r->norm2, w, t1, t2, B, HW);
    silu_forward(t1, t1, Y);
    vae_conv_forward(&r->conv2, w, t2, t1, B, H, W, 1, 1);
    const float *sc = x;
    if (r->conv_shortcut.w) {
        vae_conv_forward(&r->conv_shortcut, w, t1, x, B, H, W, 0, 0);
        sc = t1;
    }
    for (size_t i = 0; i < Y; i++) t2[i] += sc[i];
    w->cur = (w->cur + 2) % 3;
}

// ---- the mid block's attention ----

static void name2(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, UNET_NAME_MAX, "%s.%s", a, b);
    CHECK(n > 0 && n < UNET_NAME_MAX);
}

void vae_attention_setup(vae_attention *a, param_table *t, const char *prefix, int C,
                         int groups) {
    char buf[UNET_NAME_MAX];
    memset(a, 0, sizeof *a);
    a->C = C;
    name2(buf, prefix, "group_norm");
    unet_norm_setup(&a->group_norm, t, buf, C, groups, VAE_EPS);
    static const char *const names[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    unet_linear *lins[4] = {&a->to_q, &a->to_k, &a->to_v, &a->to_out};
    for (int i = 0; i < 4; i++) {  // all with bias, unlike the UNet's to_q/k/v
        name2(buf, prefix, names[i]);
        unet_linear_setup(lins[i], t, buf, C, C, 1, 0);
    }
}

void vae_attention_forward(const vae_attention *a, vae_work *w, int B, int H, int W) {
    const int C = a->C, N = H * W;
    size_t X = (size_t)B * C * N;
    if (w->plan) {
        need_stats(w, B, &a->group_norm);
        need_stream(w, X);
        w->need.qkv = zmax(w->need.qkv, X);
        w->need.attn = zmax(w->need.attn, attention_scratch_floats(N, N));
        return;
    }
    const float *x = vae_buf(w, 0);
    float *gn = vae_buf(w, 1), *tok = vae_buf(w, 2);
    norm_forward(&a->group_norm, w, gn, x, B, N);
    for (int b = 0; b < B; b++)  // (C, N) -> (N, C) per image
        for (int c = 0; c < C; c++)
            for (int i = 0; i < N; i++)
                tok[((size_t)b * N + i) * C + c] = gn[((size_t)b * C + c) * N + i];
    linear_forward(w->q, tok, a->to_q.w, a->to_q.b, B * N, C, C);
    linear_forward(w->k, tok, a->to_k.w, a->to_k.b, B * N, C, C);
    linear_forward(w->v, tok, a->to_v.w, a->to_v.b, B * N, C, C);
    attention_forward(gn, NULL, w->attn_ws, w->q, w->k, w->v, B, N, N, 1, C, 0, 0);
    linear_forward(tok, gn, a->to_out.w, a->to_out.b, B * N, C, C);
    for (int b = 0; b < B; b++)  // back to (C, N), plus the residual
        for (int c = 0; c < C; c++)
            for (int i = 0; i < N; i++) {
                size_t o = ((size_t)b * C + c) * N + i;
                gn[o] = tok[((size_t)b * N + i) * C + c] + x[o];
            }
    w->cur = (w->cur + 1) % 3;
}
