// The VAE's blocks, forward only (the VAE is frozen): ResnetBlock2D without a time
// embedding, the mid block's single-head self-attention, and convolutions run in bands
// of output rows. Parameters come from models/unet_modules.h's table and leaf modules
// (the ResNet's from unet_resnet_setup with temb_dim 0), so names are diffusers' keys.
//
// Memory: there is no backward, so nothing is kept between blocks. Every block reads
// the current tensor from one of three equal stream buffers and leaves its result in
// another (vae_work.cur says which); the largest activation of the pass sizes them.
// At SD's 512x512 the decoder's largest tensor is (256, 512, 512), 268 MB an image. A
// 3x3 convolution's im2col matrix is 9x its input (2.4 GB there), so convolutions run
// band by band of output rows within a fixed workspace (vae.h's band_budget). The
// log for SD's VAE, 1 x 512x512: 3 stream buffers of 268.4 MB, convolution bands of
// 67.0 MB, attention 29.4 MB; 860 MiB of activations in all.
//
// Planning: with w->plan set, every function only records the sizes it needs in
// w->need and computes nothing, so the arena is sized by the same code that runs.
#ifndef SELMA_MODELS_VAE_MODULES_H
#define SELMA_MODELS_VAE_MODULES_H

#include <stddef.h>

#include "models/unet_modules.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VAE_EPS 1e-6f  // diffusers' Encoder and Decoder hard-code every GroupNorm's eps

typedef struct vae_sizes {  // floats, B images included
    size_t stream, stats, qkv, attn, conv;
} vae_sizes;

typedef struct vae_work {
    int plan;             // 1: record sizes in need, compute nothing
    vae_sizes need;
    float *buf[3];        // stream buffers, need.stream floats each
    int cur;              // the buffer holding the current tensor
    float *mean, *rstd;   // (B, groups) group-norm statistics
    float *q, *k, *v;     // (B, N, C) the mid block's attention projections
    float *attn_ws;       // attention_scratch_floats(N, N)
    float *conv_ws;       // one band of a convolution
    size_t band_budget;   // floats a convolution band may use (it takes at least one row)
} vae_work;

typedef struct vae_attention {  // diffusers' Attention with group_norm, one head of C
    int C;
    unet_norm group_norm;
    unet_linear to_q, to_k, to_v, to_out;  // all with bias; to_out is "to_out.0"
} vae_attention;

// The buffer after the current one, k = 1 or 2 steps on.
static inline float *vae_buf(const vae_work *w, int k) { return w->buf[(w->cur + k) % 3]; }

// Convolution (B, in, H, W) -> (B, out, Ho, Wo) with zero padding pad_lo rows/columns
// before and pad_hi after (the encoder's downsampler pads (0, 1, 0, 1) and its conv
// itself none); the conv's own pad field is ignored. out must not alias inp.
void vae_conv_forward(const unet_conv *c, vae_work *w, float *out, const float *inp, int B,
                      int H, int W, int pad_lo, int pad_hi);
// ResnetBlock2D (r set up with temb_dim 0) on the current tensor (B, cin, H, W):
// out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x)))))). Advances w->cur.
void vae_resnet_forward(const unet_resnet *r, vae_work *w, int B, int H, int W);
void vae_attention_setup(vae_attention *a, param_table *t, const char *prefix, int C,
                         int groups);
// out = x + to_out(attention(q, k, v)) over the H*W pixels of the current tensor,
// q, k, v = to_q/k/v(group_norm(x)) as tokens, scale 1/sqrt(C). Advances w->cur.
void vae_attention_forward(const vae_attention *a, vae_work *w, int B, int H, int W);
// silu(norm(x)) of the current tensor (B, C, HW). Advances w->cur.
void vae_norm_silu_forward(const unet_norm *n, vae_work *w, int B, int HW);

#ifdef __cplusplus
}
#endif
#endif
