// The kernel calls of the models, each sent to the CPU or the CUDA version by the
// device its memory lives on (a module's `dev`, fixed when the model is built). One
// inline wrapper per op, so a call site reads like the CPU code it was and the CPU
// path pays one predictable branch. Every pointer must live on `dev`; scratch
// arguments are the CPU versions' (the CUDA versions take none, except attention's
// backward, whose row terms go into attn_scratch on either device).
//
// Builds without CUDA compile only the CPU branch: a DEVICE_CUDA model cannot be
// built there (unet_build_device refuses), so reaching one is a broken invariant.
#ifndef SELMA_MODELS_DEVICE_OPS_H
#define SELMA_MODELS_DEVICE_OPS_H

#include <stddef.h>

#include "kernels/activation.h"
#include "kernels/adamw.h"
#include "kernels/add.h"
#include "kernels/attention.h"
#include "kernels/axpby.h"
#include "kernels/concat.h"
#include "kernels/conv2d.h"
#include "kernels/groupnorm.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "kernels/lora.h"
#include "kernels/mse.h"
#include "kernels/plane_bias.h"
#include "kernels/sumsq.h"
#include "kernels/timestep_embedding.h"
#include "kernels/tokens.h"
#include "kernels/upsample.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/tensor.h"

#ifdef SELMA_CUDA
#define DEV_CUDA(dev, call)                 \
    do {                                    \
        if ((dev) == DEVICE_CUDA) {         \
            call;                           \
            return;                         \
        }                                   \
    } while (0)
#else
#define DEV_CUDA(dev, call) CHECK((dev) == DEVICE_CPU)
#endif

static inline void dev_conv2d_forward(device_kind dev, float *out, const float *inp, const float *w,
                                      const float *b, const conv2d_shape *s, float *scratch) {
    DEV_CUDA(dev, conv2d_forward_cuda(out, inp, w, b, s));
    conv2d_forward(out, inp, w, b, s, scratch);
}
static inline void dev_conv2d_backward(device_kind dev, float *dinp, float *dw, float *db,
                                       const float *dout, const float *inp, const float *w,
                                       const conv2d_shape *s, float *scratch) {
    DEV_CUDA(dev, conv2d_backward_cuda(dinp, dw, db, dout, inp, w, s));
    conv2d_backward(dinp, dw, db, dout, inp, w, s, scratch);
}
// conv2d scratch on `dev`: the CUDA convolutions need none (cuDNN's workspace comes
// from selma_cuda_workspace).
static inline size_t dev_conv2d_scratch_floats(device_kind dev, const conv2d_shape *s) {
    return dev == DEVICE_CUDA ? 0 : conv2d_scratch_floats(s);
}

static inline void dev_linear_forward(device_kind dev, float *out, const float *inp, const float *w,
                                      const float *b, int N, int C, int OC) {
    DEV_CUDA(dev, linear_forward_cuda(out, inp, w, b, N, C, OC));
    linear_forward(out, inp, w, b, N, C, OC);
}
static inline void dev_linear_backward(device_kind dev, float *dinp, float *dw, float *db,
                                       const float *dout, const float *inp, const float *w, int N,
                                       int C, int OC) {
    DEV_CUDA(dev, linear_backward_cuda(dinp, dw, db, dout, inp, w, N, C, OC));
    linear_backward(dinp, dw, db, dout, inp, w, N, C, OC);
}

static inline void dev_lora_linear_forward(device_kind dev, float *out, float *h, const float *inp,
                                           const float *w, const float *b, const float *lora_a,
                                           const float *lora_b, float scale, int N, int C, int OC,
                                           int R) {
    DEV_CUDA(dev, lora_linear_forward_cuda(out, h, inp, w, b, lora_a, lora_b, scale, N, C, OC, R));
    lora_linear_forward(out, h, inp, w, b, lora_a, lora_b, scale, N, C, OC, R);
}
static inline void dev_lora_linear_backward(device_kind dev, float *dinp, float *dlora_a,
                                            float *dlora_b, float *dh, const float *dout,
                                            const float *inp, const float *h, const float *w,
                                            const float *lora_a, const float *lora_b, float scale,
                                            int N, int C, int OC, int R) {
    DEV_CUDA(dev, lora_linear_backward_cuda(dinp, dlora_a, dlora_b, dh, dout, inp, h, w, lora_a,
                                            lora_b, scale, N, C, OC, R));
    lora_linear_backward(dinp, dlora_a, dlora_b, dh, dout, inp, h, w, lora_a, lora_b, scale, N, C,
                         OC, R);
}

static inline void dev_groupnorm_forward(device_kind dev, float *out, float *mean, float *rstd,
                                         const float *inp, const float *w, const float *b, int B,
                                         int C, int HW, int G, float eps) {
    DEV_CUDA(dev, groupnorm_forward_cuda(out, mean, rstd, inp, w, b, B, C, HW, G, eps));
    groupnorm_forward(out, mean, rstd, inp, w, b, B, C, HW, G, eps);
}
static inline void dev_groupnorm_backward(device_kind dev, float *dinp, float *dw, float *db,
                                          const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int B, int C,
                                          int HW, int G) {
    DEV_CUDA(dev, groupnorm_backward_cuda(dinp, dw, db, dout, inp, w, mean, rstd, B, C, HW, G));
    groupnorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, B, C, HW, G);
}

static inline void dev_layernorm_forward(device_kind dev, float *out, float *mean, float *rstd,
                                         const float *inp, const float *w, const float *b, int N,
                                         int C, float eps) {
    DEV_CUDA(dev, layernorm_forward_cuda(out, mean, rstd, inp, w, b, N, C, eps));
    layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
}
static inline void dev_layernorm_backward(device_kind dev, float *dinp, float *dw, float *db,
                                          const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int N, int C) {
    DEV_CUDA(dev, layernorm_backward_cuda(dinp, dw, db, dout, inp, w, mean, rstd, N, C));
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}

static inline void dev_silu_forward(device_kind dev, float *out, const float *inp, size_t n) {
    DEV_CUDA(dev, silu_forward_cuda(out, inp, n));
    silu_forward(out, inp, n);
}
static inline void dev_silu_backward(device_kind dev, float *dinp, const float *dout,
                                     const float *inp, size_t n) {
    DEV_CUDA(dev, silu_backward_cuda(dinp, dout, inp, n));
    silu_backward(dinp, dout, inp, n);
}
static inline void dev_geglu_forward(device_kind dev, float *out, const float *inp, int N, int C) {
    DEV_CUDA(dev, geglu_forward_cuda(out, inp, N, C));
    geglu_forward(out, inp, N, C);
}
static inline void dev_geglu_backward(device_kind dev, float *dinp, const float *dout,
                                      const float *inp, int N, int C) {
    DEV_CUDA(dev, geglu_backward_cuda(dinp, dout, inp, N, C));
    geglu_backward(dinp, dout, inp, N, C);
}

// Non-causal, default scale (1/sqrt(D)), as the UNet uses it. scratch: the CPU
// version's attention_scratch_floats(N, M), or on CUDA the backward's
// dev_attention_scratch_floats (the CUDA forward needs none).
static inline size_t dev_attention_scratch_floats(device_kind dev, int B, int N, int M, int H) {
#ifdef SELMA_CUDA
    if (dev == DEVICE_CUDA) return attention_cuda_scratch_floats(B, N, H);
#endif
    return attention_scratch_floats(N, M);
}
static inline void dev_attention_forward(device_kind dev, float *out, float *lse, float *scratch,
                                         const float *q, const float *k, const float *v, int B,
                                         int N, int M, int H, int D) {
    DEV_CUDA(dev, attention_forward_cuda(out, lse, q, k, v, B, N, M, H, D, 0.0f, 0));
    attention_forward(out, lse, scratch, q, k, v, B, N, M, H, D, 0.0f, 0);
}
static inline void dev_attention_backward(device_kind dev, float *dq, float *dk, float *dv,
                                          float *scratch, const float *dout, const float *q,
                                          const float *k, const float *v, const float *out,
                                          const float *lse, int B, int N, int M, int H, int D) {
    DEV_CUDA(dev, attention_backward_cuda(dq, dk, dv, scratch, dout, q, k, v, out, lse, B, N, M, H,
                                          D, 0.0f, 0));
    attention_backward(dq, dk, dv, scratch, dout, q, k, v, out, lse, B, N, M, H, D, 0.0f, 0);
}

static inline void dev_concat_channels_forward(device_kind dev, float *out, const float *a,
                                               const float *b, int B, int C1, int C2, int HW) {
    DEV_CUDA(dev, concat_channels_forward_cuda(out, a, b, B, C1, C2, HW));
    concat_channels_forward(out, a, b, B, C1, C2, HW);
}
static inline void dev_concat_channels_backward(device_kind dev, float *da, float *db,
                                                const float *dout, int B, int C1, int C2, int HW) {
    DEV_CUDA(dev, concat_channels_backward_cuda(da, db, dout, B, C1, C2, HW));
    concat_channels_backward(da, db, dout, B, C1, C2, HW);
}

static inline void dev_upsample_nearest2x_forward(device_kind dev, float *out, const float *inp,
                                                  int B, int C, int H, int W) {
    DEV_CUDA(dev, upsample_nearest2x_forward_cuda(out, inp, B, C, H, W));
    upsample_nearest2x_forward(out, inp, B, C, H, W);
}
static inline void dev_upsample_nearest2x_backward(device_kind dev, float *dinp, const float *dout,
                                                   int B, int C, int H, int W) {
    DEV_CUDA(dev, upsample_nearest2x_backward_cuda(dinp, dout, B, C, H, W));
    upsample_nearest2x_backward(dinp, dout, B, C, H, W);
}

// t (B) lives on `dev` too: a CUDA model copies the host timesteps over first.
static inline void dev_timestep_embedding_forward(device_kind dev, float *out, const float *t,
                                                  int B, int dim, int flip_sin_to_cos,
                                                  float shift, float max_period) {
    DEV_CUDA(dev, timestep_embedding_forward_cuda(out, t, B, dim, flip_sin_to_cos, shift, max_period));
    timestep_embedding_forward(out, t, B, dim, flip_sin_to_cos, shift, max_period);
}

static inline void dev_channels_to_tokens(device_kind dev, float *out, const float *inp, int B,
                                          int C, int N) {
    DEV_CUDA(dev, channels_to_tokens_cuda(out, inp, B, C, N));
    channels_to_tokens(out, inp, B, C, N);
}
static inline void dev_tokens_to_channels(device_kind dev, float *out, const float *inp, int B,
                                          int C, int N) {
    DEV_CUDA(dev, tokens_to_channels_cuda(out, inp, B, C, N));
    tokens_to_channels(out, inp, B, C, N);
}

static inline void dev_plane_bias_forward(device_kind dev, float *x, const float *t, int B, int C,
                                          int HW) {
    DEV_CUDA(dev, plane_bias_forward_cuda(x, t, B, C, HW));
    plane_bias_forward(x, t, B, C, HW);
}
static inline void dev_plane_bias_backward(device_kind dev, float *dt, const float *dout, int B,
                                           int C, int HW) {
    DEV_CUDA(dev, plane_bias_backward_cuda(dt, dout, B, C, HW));
    plane_bias_backward(dt, dout, B, C, HW);
}

// y += x, elementwise (add's out may alias an input: each element is read before it
// is written, by the same thread on the GPU). The CPU keeps its plain loop, which
// gcc vectorizes.
static inline void dev_add_into(device_kind dev, float *y, const float *x, size_t n) {
    DEV_CUDA(dev, add_forward_cuda(y, y, x, n));
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static inline void dev_zero(device_kind dev, void *p, size_t bytes) {
    device_memset(dev, p, 0, bytes);
}

// The trainer's ops (models/train.c): the loss, the gradient norm's sum of squares, the
// clip's rescale and the EMA (y = a y + b x).
static inline double dev_mse_loss_forward(device_kind dev, const float *pred, const float *target,
                                          size_t n) {
#ifdef SELMA_CUDA
    if (dev == DEVICE_CUDA) return mse_loss_forward_cuda(pred, target, n);
#endif
    CHECK(dev == DEVICE_CPU);
    return mse_loss_forward(pred, target, n);
}
static inline void dev_mse_loss_backward(device_kind dev, float *dpred, const float *pred,
                                         const float *target, float dloss, size_t n) {
    DEV_CUDA(dev, mse_loss_backward_cuda(dpred, pred, target, dloss, n));
    mse_loss_backward(dpred, pred, target, dloss, n);
}
static inline double dev_sumsq(device_kind dev, const float *x, size_t n) {
#ifdef SELMA_CUDA
    if (dev == DEVICE_CUDA) return sumsq_cuda(x, n);
#endif
    CHECK(dev == DEVICE_CPU);
    return sumsq(x, n);
}
static inline void dev_axpby(device_kind dev, float *y, float a, const float *x, float b, size_t n) {
    DEV_CUDA(dev, axpby_cuda(y, a, x, b, n));
    axpby(y, a, x, b, n);
}

static inline void dev_adamw_update(device_kind dev, float *p, const float *g, float *m, float *v,
                                    size_t n, const adamw_hparams *hp, int t) {
    DEV_CUDA(dev, adamw_update_cuda(p, g, m, v, n, hp, t));
    adamw_update(p, g, m, v, n, hp, t);
}

#endif
